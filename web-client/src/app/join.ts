// The pre-join screen: what Confer is and is not, a camera and microphone check, a speaker
// check, the agreement to mediate with its three explicit acknowledgments, the person's name,
// one button. Joining happens only when the person asks (no automatic consent); the checks
// never hold it up.

import { el as make } from "./dom.js";
import { speakerCheck } from "./speakers.js";

export interface JoinChoice {
  name: string;
  /** The sound output chosen in the speaker check (a device id), if the person chose one. */
  speaker: string | undefined;
}

/** The acknowledgments a participant gives before joining (DOMAIN.md: the agreement to mediate). */
const ACKNOWLEDGMENTS = [
  {
    id: "ack-confidential",
    text: "What is said in this mediation is confidential, within the limits the agreement states (for example, a risk of harm).",
  },
  { id: "ack-recording", text: "Nobody records any part of it: not me, not anyone with me." },
  { id: "ack-alone", text: "Nobody else is with me or can hear me, unless the mediator knows and agreed." },
] as const;

function el<K extends keyof HTMLElementTagNameMap>(doc: Document, tag: K, text?: string): HTMLElementTagNameMap[K] {
  return make(doc, tag, { text });
}

/** Shows the form in `main` and resolves when the person joins. */
export function askToJoin(doc: Document, main: HTMLElement, agreement: string): Promise<JoinChoice> {
  const form = el(doc, "form");
  form.id = "join";
  // Our own check says which statement is missing, in the page and to screen readers.
  form.noValidate = true;
  const h = el(doc, "h2", "Join the mediation");
  const guide = el(doc, "ul");
  guide.id = "guidance";
  for (const t of [
    "Find a private room where nobody can overhear you, and use a network you trust.",
    "Everything you say, show and write is end-to-end encrypted: Confer's server passes it on but cannot read, hear or see it. It does see when you join and leave.",
  ]) {
    guide.append(el(doc, "li", t));
  }

  // Camera and microphone check.
  const check = el(doc, "fieldset");
  check.append(el(doc, "legend", "Camera and microphone"));
  const preview = el(doc, "video");
  preview.id = "preview";
  preview.muted = true;
  preview.autoplay = true;
  preview.playsInline = true;
  preview.width = 160;
  preview.height = 120;
  preview.hidden = true;
  const checkButton = el(doc, "button", "Check my camera and microphone");
  checkButton.type = "button";
  checkButton.id = "check-devices";
  const checkStatus = el(doc, "p");
  checkStatus.id = "device-status";
  let previewStream: MediaStream | undefined;
  checkButton.addEventListener("click", () => {
    navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 160, height: 120 } }).then(
      (stream) => {
        previewStream = stream;
        preview.srcObject = stream;
        preview.hidden = false;
        const cam = stream.getVideoTracks().length > 0 ? "Your camera works (you see yourself above)." : "No camera found.";
        const mic = stream.getAudioTracks().length > 0 ? "A microphone is connected." : "No microphone found.";
        checkStatus.textContent = `${cam} ${mic}`;
        // With the permission given, the browser names the sound outputs too.
        speakers.refresh();
      },
      () => {
        checkStatus.textContent =
          "The browser did not allow the camera and microphone. Allow them for this site in the browser's address bar, then try again.";
      },
    );
  });
  check.append(preview, checkButton, checkStatus);
  const speakers = speakerCheck(doc);

  // The agreement and the acknowledgments.
  const agreementBox = el(doc, "fieldset");
  agreementBox.append(el(doc, "legend", "The agreement to mediate"));
  const ag = el(doc, "p", agreement);
  ag.id = "agreement";
  agreementBox.append(ag);
  const boxes: HTMLInputElement[] = [];
  for (const a of ACKNOWLEDGMENTS) {
    const label = el(doc, "label");
    const box = el(doc, "input");
    box.type = "checkbox";
    box.id = a.id;
    box.required = true;
    label.append(box, ` ${a.text}`);
    agreementBox.append(label);
    boxes.push(box);
  }
  const agreeLabel = el(doc, "label");
  const agree = el(doc, "input");
  agree.type = "checkbox";
  agree.id = "agree";
  agree.required = true;
  agreeLabel.append(agree, " I have read the agreement to mediate and accept it");
  agreementBox.append(agreeLabel);
  boxes.push(agree);

  const nameLabel = el(doc, "label", "Your name (only the people in the session see it)");
  nameLabel.htmlFor = "name";
  const name = el(doc, "input");
  name.id = "name";
  name.autocomplete = "name";
  name.maxLength = 64;
  const problem = el(doc, "p");
  problem.id = "join-problem";
  problem.setAttribute("role", "alert");
  const button = el(doc, "button", "Join");
  button.type = "submit";
  form.append(h, guide, check, speakers.fieldset, agreementBox, nameLabel, name, problem, button);
  main.append(form);
  return new Promise((resolve) => {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const missing = boxes.find((b) => !b.checked);
      if (missing !== undefined) {
        problem.textContent = "Tick each statement of the agreement to join.";
        missing.focus();
        return;
      }
      for (const t of previewStream?.getTracks() ?? []) {
        t.stop();
      }
      const speaker = speakers.chosen();
      speakers.close();
      form.remove();
      resolve({ name: name.value.trim(), speaker });
    });
  });
}
