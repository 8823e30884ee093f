// The console's screen helpers: a screen replaces <main>'s content and moves focus to its
// heading; form fields are labelled inputs; errors are an alert; changes are announced once
// in the polite live region.

import { el } from "../app/dom.js";

export interface Screen {
  readonly doc: Document;
  readonly main: HTMLElement;
}

/** Clears <main>, puts a heading first and focuses it (screen readers start there). */
export function screen(s: Screen, title: string): HTMLElement {
  s.main.replaceChildren();
  const h1 = el(s.doc, "h1", { text: title });
  h1.tabIndex = -1;
  s.main.append(h1);
  s.doc.title = `${title} – Confer console`;
  h1.focus();
  return h1;
}

export function announce(doc: Document, text: string): void {
  const region = doc.getElementById("announcer");
  if (region !== null) {
    region.textContent = text;
  }
}

/** A `<label>` holding its text and input. */
export function field(
  doc: Document,
  id: string,
  label: string,
  type: "text" | "password",
  autocomplete: string,
): { label: HTMLLabelElement; input: HTMLInputElement } {
  const l = el(doc, "label", { text: label });
  l.htmlFor = id;
  const input = el(doc, "input", { id });
  input.type = type;
  input.name = id;
  input.autocomplete = autocomplete as AutoFill;
  input.required = true;
  l.append(input);
  return { label: l, input };
}

/** A six-digit code field (numeric keyboard, one-time-code autofill). */
export function codeField(doc: Document, id: string, label: string): { label: HTMLLabelElement; input: HTMLInputElement } {
  const f = field(doc, id, label, "text", "one-time-code");
  f.input.inputMode = "numeric";
  f.input.pattern = "[0-9 ]{6,7}";
  f.input.maxLength = 7;
  return f;
}

/** The place a form's error goes: empty until `show`, then an alert. */
export function errorBox(doc: Document, id: string): { box: HTMLParagraphElement; show: (text: string) => void; clear: () => void } {
  const box = el(doc, "p", { id, className: "error" });
  box.setAttribute("role", "alert");
  return {
    box,
    show: (text) => {
      box.textContent = text;
    },
    clear: () => {
      box.textContent = "";
    },
  };
}

export function submit(doc: Document, id: string, text: string): HTMLButtonElement {
  const b = el(doc, "button", { id, text });
  b.type = "submit";
  return b;
}

/** A form whose submission is handled here (the CSP's form-action 'none' forbids real ones). */
export function form(doc: Document, id: string, onSubmit: () => Promise<void>): HTMLFormElement {
  const f = el(doc, "form", { id, className: "console-form" });
  f.noValidate = false;
  let busy = false;
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    if (busy) {
      return;
    }
    busy = true;
    void onSubmit().finally(() => {
      busy = false;
    });
  });
  return f;
}
