// Making the page's elements: a tag, and optionally its id, text and class.

export interface Props {
  id?: string | undefined;
  text?: string | undefined;
  className?: string | undefined;
}

export function el<K extends keyof HTMLElementTagNameMap>(doc: Document, tag: K, props: Props = {}): HTMLElementTagNameMap[K] {
  const e = doc.createElement(tag);
  if (props.id !== undefined) {
    e.id = props.id;
  }
  if (props.text !== undefined) {
    e.textContent = props.text;
  }
  if (props.className !== undefined) {
    e.className = props.className;
  }
  return e;
}

/** A `type="button"` button; `label` is its accessible name when the text alone is ambiguous. */
export function button(doc: Document, id: string, text: string, onClick: () => void, label?: string): HTMLButtonElement {
  const b = el(doc, "button", { id, text });
  b.type = "button";
  if (label !== undefined) {
    b.setAttribute("aria-label", label);
  }
  b.addEventListener("click", onClick);
  return b;
}
