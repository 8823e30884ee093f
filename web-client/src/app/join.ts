// The join screen: the agreement to mediate, the person's name, one button. Joining happens
// only when the person asks (no automatic consent).

export interface JoinChoice {
  name: string;
}

/** Shows the form in `main` and resolves when the person joins. */
export function askToJoin(doc: Document, main: HTMLElement, agreement: string): Promise<JoinChoice> {
  const form = doc.createElement("form");
  form.id = "join";
  form.noValidate = false;
  const h = doc.createElement("h2");
  h.textContent = "Join the mediation";
  const ag = doc.createElement("p");
  ag.id = "agreement";
  ag.textContent = agreement;
  const nameLabel = doc.createElement("label");
  nameLabel.htmlFor = "name";
  nameLabel.textContent = "Your name (only the people in the session see it)";
  const name = doc.createElement("input");
  name.id = "name";
  name.autocomplete = "name";
  name.maxLength = 64;
  const agreeLabel = doc.createElement("label");
  const agree = doc.createElement("input");
  agree.type = "checkbox";
  agree.id = "agree";
  agree.required = true;
  agreeLabel.append(agree, " I have read the agreement to mediate and accept it");
  const button = doc.createElement("button");
  button.type = "submit";
  button.textContent = "Join";
  form.append(h, ag, nameLabel, name, agreeLabel, button);
  main.append(form);
  return new Promise((resolve) => {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!agree.checked) {
        agree.focus();
        return;
      }
      form.remove();
      resolve({ name: name.value.trim() });
    });
  });
}
