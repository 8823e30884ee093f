// The mediator's private notes: written here, saved as versions sealed under a key only this page
// holds (nobody else ever gets it, e2ee §8.7), stored encrypted on the server until the session
// ends. A saved version can be opened back into the editor. Kept outside the board, which
// redraws, so what the mediator is typing is never lost.

import type { View } from "../sdk.js";

import { button, el } from "./dom.js";

export interface NotesActions {
  save(text: string): Promise<string>;
  open(docId: string): Promise<string>;
}

export class NotesView {
  readonly #doc: Document;
  readonly #root: HTMLElement;
  readonly #text: HTMLTextAreaElement;
  readonly #list: HTMLElement;
  readonly #status: HTMLElement;
  readonly #actions: NotesActions;
  #last = "";

  constructor(doc: Document, parent: HTMLElement, actions: NotesActions) {
    this.#doc = doc;
    this.#actions = actions;
    this.#root = el(doc, "section", { id: "notes" });
    this.#root.setAttribute("aria-labelledby", "notes-title");
    this.#root.hidden = true;
    const h = el(doc, "h3", { id: "notes-title", text: "Your notes" });
    const help = el(doc, "p", {
      id: "notes-help",
      text: "Only you can read these. Each save is encrypted on this device under a key that never leaves it; the server keeps only the encrypted copy and deletes it when the session ends. Copy out anything you need before you end the session.",
    });
    const label = el(doc, "label", { text: "Notes" });
    label.htmlFor = "notes-text";
    this.#text = el(doc, "textarea", { id: "notes-text" });
    this.#text.rows = 6;
    this.#text.setAttribute("aria-describedby", "notes-help");
    const save = button(doc, "notes-save", "Save notes", () => {
      this.#save();
    });
    this.#list = el(doc, "ul", { id: "notes-versions" });
    this.#status = el(doc, "p", { id: "notes-status" });
    this.#status.setAttribute("role", "status");
    this.#root.append(h, help, label, this.#text, save, this.#list, this.#status);
    parent.append(this.#root);
  }

  #save(): void {
    const text = this.#text.value;
    this.#status.textContent = "Saving your notes…";
    void this.#actions.save(text).then(
      () => {
        this.#status.textContent = `Notes saved, encrypted, at ${new Date().toLocaleTimeString()}.`;
      },
      () => {
        this.#status.textContent = "Your notes could not be saved. They are still here: try again.";
      },
    );
  }

  render(v: View): void {
    this.#root.hidden = v.role !== "mediator" || v.phase !== "secured";
    const key = JSON.stringify(v.notes);
    if (key === this.#last) {
      return;
    }
    this.#last = key;
    const doc = this.#doc;
    this.#list.replaceChildren(
      ...[...v.notes].reverse().map((n) => {
        const li = el(doc, "li");
        const when = new Date(n.savedAt).toLocaleTimeString();
        li.append(
          el(doc, "span", { text: `Saved at ${when} (${String(n.size)} bytes) ` }),
          button(doc, `notes-open-${n.docId}`, "Open", () => {
            void this.#actions.open(n.docId).then(
              (text) => {
                this.#text.value = text;
                this.#status.textContent = `The notes saved at ${when} are back in the editor.`;
                this.#text.focus();
              },
              () => {
                this.#status.textContent = "Those notes could not be opened.";
              },
            );
          }, `Open the notes saved at ${when}`),
        );
        return li;
      }),
    );
  }
}
