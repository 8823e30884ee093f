// The page's shell: the status line (what is happening, shown) and the polite live region (each
// change announced once to screen readers). The only module that writes the page's text.

export class Shell {
  readonly #status: HTMLElement;
  readonly #announcer: HTMLElement;

  private constructor(status: HTMLElement, announcer: HTMLElement) {
    this.#status = status;
    this.#announcer = announcer;
  }

  /** Finds the shell's elements in index.html. */
  static mount(doc: Document): Shell {
    const status = doc.getElementById("status");
    const announcer = doc.getElementById("announcer");
    if (status === null || announcer === null) {
      throw new Error("index.html lacks #status or #announcer");
    }
    return new Shell(status, announcer);
  }

  /** Shows `text` on the status line and announces it once (unless it is unchanged). */
  setStatus(text: string): void {
    if (this.#status.textContent === text) {
      return;
    }
    this.#status.textContent = text;
    this.announce(text);
  }

  /** Says `text` in the polite live region. */
  announce(text: string): void {
    this.#announcer.textContent = text;
  }
}
