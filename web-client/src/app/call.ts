// The call screen (the first one; the mediation app builds on it): who can hear me now (the
// signed roster of the room I am secured in, never the server's list), the session code, and a
// tile per publisher in my room. A slot is shown only when its publisher is present in my
// signed roster, and never once the watchdog blocked it.

import type { View } from "../sdk.js";

import { roomName } from "./board.js";
import { button, el } from "./dom.js";
import { WAITING_MESSAGE_MAX, withWaitingMessage } from "./waiting.js";

/** What the call screen's buttons do (the SDK's session). */
export interface CallActions {
  shareScreen(): Promise<void>;
  stopScreen(): Promise<void>;
  sendChat(text: string): Promise<void>;
  leave(): Promise<void>;
  createInvite(role: "party" | "counsel" | "co_mediator", side: "A" | "B" | undefined): Promise<string>;
}

/** What the page brings from before the call. */
export interface CallOptions {
  /** The mediator's message from the invite link (waiting.ts), shown while the person waits. */
  waitingMessage?: string | undefined;
  /** The sound output chosen on the pre-join screen (a device id); the default otherwise. */
  speaker?: string | undefined;
}

/** Whom a mediator can invite from the call screen (the link is bound to that role and side). */
const INVITES = [
  { value: "party:A", label: "Party A", role: "party", side: "A" },
  { value: "party:B", label: "Party B", role: "party", side: "B" },
  { value: "counsel:A", label: "Counsel for party A", role: "counsel", side: "A" },
  { value: "counsel:B", label: "Counsel for party B", role: "counsel", side: "B" },
  // A co-mediator joins in the joint session and may run caucuses once the mediator's page has
  // checked its acknowledgment under this link's secret (it then delegates roster signing).
  { value: "co_mediator", label: "Co-mediator", role: "co_mediator", side: undefined },
] as const;

export class CallView {
  readonly #doc: Document;
  readonly #room: HTMLElement;
  readonly #hear: HTMLElement;
  readonly #code: HTMLElement;
  readonly #tiles: HTMLElement;
  readonly #audio: HTMLElement;
  readonly #alarm: HTMLElement;
  readonly #waitingNote: HTMLElement;
  readonly #speaker: string | undefined;
  readonly #media = new Map<string, { el: HTMLMediaElement; box: HTMLElement; label: HTMLElement; shown: boolean }>();
  readonly #share: HTMLButtonElement;
  readonly #invite: HTMLFormElement;
  readonly #badge: HTMLElement;
  readonly #lockState: HTMLElement;
  readonly #chatTitle: HTMLElement;
  readonly #chatLog: HTMLElement;
  readonly #chatForm: HTMLFormElement;
  readonly #leave: HTMLButtonElement;
  #chatShown = "";
  readonly #dialog: HTMLDialogElement;
  readonly #dialogText: HTMLElement;
  readonly #alarmsShown = new Set<string>();
  #banner = "";
  #sharing = false;

  readonly #announce: (text: string) => void;

  constructor(doc: Document, main: HTMLElement, actions: CallActions, announce: (text: string) => void, options: CallOptions = {}) {
    this.#doc = doc;
    this.#announce = announce;
    this.#speaker = options.speaker;
    const section = doc.createElement("section");
    section.id = "call";
    section.setAttribute("aria-labelledby", "room");
    this.#room = doc.createElement("h2");
    this.#room.id = "room";
    this.#room.tabIndex = -1;
    this.#hear = doc.createElement("p");
    this.#hear.id = "hear";
    // The mediator's message, plain text (never markup), while the person waits.
    this.#waitingNote = el(doc, "section", { id: "waiting-note" });
    this.#waitingNote.setAttribute("aria-labelledby", "waiting-note-title");
    this.#waitingNote.hidden = true;
    if (options.waitingMessage !== undefined) {
      this.#waitingNote.append(
        el(doc, "h3", { id: "waiting-note-title", text: "A message from the mediator" }),
        el(doc, "p", { id: "waiting-message", text: options.waitingMessage }),
      );
    }
    const codeP = doc.createElement("p");
    codeP.append("Session code: ");
    this.#code = doc.createElement("span");
    this.#code.id = "session-code";
    this.#code.className = "code";
    codeP.append(this.#code);
    this.#alarm = doc.createElement("p");
    this.#alarm.id = "alarm";
    this.#alarm.setAttribute("role", "alert");
    this.#tiles = doc.createElement("ul");
    this.#tiles.id = "tiles";
    this.#tiles.setAttribute("aria-label", "People you see");
    this.#audio = doc.createElement("div");
    this.#audio.hidden = true;
    this.#share = doc.createElement("button");
    this.#share.type = "button";
    this.#share.id = "share-screen";
    this.#share.textContent = "Share your screen";
    this.#share.addEventListener("click", () => {
      void (this.#sharing ? actions.stopScreen() : actions.shareScreen()).catch(() => undefined);
    });
    this.#invite = inviteForm(doc, actions, (text) => {
      this.#announce(text);
    });
    this.#badge = el(doc, "p", { id: "badge" });
    const recording = el(doc, "p", { id: "recording", text: "Not recording: Confer records nothing, and nobody may record." });
    this.#lockState = el(doc, "p", { id: "lock-state" });
    const chat = el(doc, "section", { id: "chat" });
    chat.setAttribute("aria-labelledby", "chat-title");
    this.#chatTitle = el(doc, "h3", { id: "chat-title" });
    this.#chatLog = el(doc, "div", { id: "chat-log" });
    this.#chatLog.setAttribute("role", "log");
    this.#chatLog.setAttribute("aria-live", "polite");
    this.#chatForm = doc.createElement("form");
    this.#chatForm.id = "chat-form";
    const chatLabel = doc.createElement("label");
    chatLabel.htmlFor = "chat-input";
    chatLabel.textContent = "Message (end-to-end encrypted, only this room reads it)";
    const chatInput = doc.createElement("input");
    chatInput.id = "chat-input";
    chatInput.autocomplete = "off";
    chatInput.maxLength = 2000;
    const send = doc.createElement("button");
    send.type = "submit";
    send.textContent = "Send";
    this.#chatForm.append(chatLabel, chatInput, send);
    this.#chatForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = chatInput.value.trim();
      if (text === "") {
        return;
      }
      void actions.sendChat(text).then(
        () => {
          chatInput.value = "";
        },
        () => {
          announce("The message was not sent: this room is still being secured.");
        },
      );
    });
    chat.append(this.#chatTitle, this.#chatLog, this.#chatForm);
    this.#leave = button(doc, "leave", "Leave the session", () => {
      void actions.leave();
    });
    const exit = button(doc, "quick-exit", "Quick exit", () => {
      void actions.leave().finally(() => {
        location.replace("about:blank");
      });
      doc.body.replaceChildren();
    });
    exit.setAttribute("aria-describedby", "quick-exit-help");
    const exitHelp = doc.createElement("span");
    exitHelp.id = "quick-exit-help";
    exitHelp.className = "visually-hidden";
    exitHelp.textContent = "Leaves at once and clears this page.";
    const bar = doc.createElement("div");
    bar.className = "controls";
    bar.append(this.#share, this.#leave, exit, exitHelp);
    // A new alarm blocks the screen until the person says they read it (WEB.md).
    this.#dialog = el(doc, "dialog", { id: "alarm-dialog" });
    this.#dialog.setAttribute("aria-labelledby", "alarm-dialog-title");
    const dh = el(doc, "h2", { id: "alarm-dialog-title", text: "Security alarm" });
    this.#dialogText = el(doc, "p", { id: "alarm-dialog-text" });
    const ok = el(doc, "button", { id: "alarm-dialog-ok", text: "I have read this" });
    ok.type = "button";
    ok.addEventListener("click", () => {
      this.#dialog.close();
      this.#room.focus();
    });
    this.#dialog.append(dh, this.#dialogText, ok);
    section.append(this.#dialog);
    section.append(this.#room, this.#hear, this.#waitingNote, this.#badge, codeP, recording, this.#lockState, this.#alarm, bar, this.#invite, this.#tiles, chat, this.#audio);
    main.append(section);
  }

  render(v: View): void {
    const room = roomName(v.secured ?? v.channel);
    this.#room.textContent = room;
    const others = v.present.filter((p) => !p.me);
    this.#hear.textContent =
      v.phase === "secured"
        ? others.length === 0
          ? "Nobody else can hear you now."
          : `Who can hear you now: ${others.map((p) => p.name ?? "a participant").join(", ")}.`
        : v.phase === "ended"
          ? "The session has ended."
          : "Securing: your microphone and camera stay off until this room is secured.";
    this.#waitingNote.hidden = v.phase !== "waiting" || !this.#waitingNote.hasChildNodes();
    this.#code.textContent = v.sessionCode ?? "not yet";
    // Read digit by digit: "1 2 3 4 5, ..." rather than "twelve thousand ...".
    this.#code.setAttribute("aria-label", v.sessionCode === undefined ? "not yet" : v.sessionCode.split(" ").map((g) => g.split("").join(" ")).join(", "));
    this.#badge.textContent =
      v.phase === "secured" ? "End-to-end encrypted: only the people listed can hear and see you." : "Securing: not encrypted to this room yet, so nothing is sent.";
    this.#badge.className = v.phase === "secured" ? "badge secured" : "badge securing";
    this.#lockState.textContent = v.locked ? "The session is locked: nobody new can join." : "";
    this.#leave.hidden = v.role === "mediator" || v.phase === "ended";
    // The banner changes are announced once each (WEB.md: a polite live region).
    const banner = `${room}. ${this.#hear.textContent}`;
    if (v.phase === "secured" && banner !== this.#banner) {
      this.#banner = banner;
      this.#announce(`You are now in: ${banner}`);
    }
    this.#chatTitle.textContent = `Chat in ${room}`;
    this.#chatForm.hidden = v.phase !== "secured";
    const chatKey = JSON.stringify(v.chat.map((c) => [c.from, c.text]));
    if (chatKey !== this.#chatShown) {
      this.#chatShown = chatKey;
      this.#chatLog.replaceChildren(
        ...v.chat.map((c) => {
          const li = this.#doc.createElement("p");
          const who = c.mine ? "You" : (v.names[c.from] ?? "A participant");
          li.textContent = `${who}: ${c.text}`;
          return li;
        }),
      );
    }
    const fresh = v.alarms.filter((a) => !this.#alarmsShown.has(a));
    if (fresh.length > 0) {
      for (const a of fresh) {
        this.#alarmsShown.add(a);
      }
      this.#dialogText.textContent = fresh.map(alarmText).join(" ");
      if (!this.#dialog.open) {
        this.#dialog.showModal();
        focusFirstButton(this.#dialog);
      }
    }
    const alarm = v.alarms.map(alarmText).join(" ");
    if (this.#alarm.textContent !== alarm) {
      this.#alarm.textContent = alarm; // written on change only: role=alert announces each write
    }
    this.#sharing = v.sharingScreen;
    this.#invite.hidden = v.role !== "mediator" || v.phase !== "secured";
    this.#share.textContent = v.sharingScreen ? "Stop sharing your screen" : "Share your screen";
    this.#share.disabled = v.phase !== "secured" && !v.sharingScreen;
    const present = new Map(v.present.map((p) => [p.participantId, p]));
    for (const slot of v.slots) {
      // The person is the one whose key opened the frames shown, and the slot map must agree.
      const who = slot.publisher === undefined || slot.openedFrom !== slot.publisher ? undefined : present.get(slot.publisher);
      const m = this.#tile(slot.mid, slot.kind, slot.track);
      // Shown: a publisher in my signed roster whose frames open here now.
      const show = who !== undefined && !who.me && !slot.blocked && slot.live === true;
      m.box.hidden = !show;
      m.el.muted = slot.kind === "video" || !show;
      if (show && !m.shown) {
        // Shown again (after a move, or a new publisher in the slot): a fresh stream for the
        // element, so nothing of its pipeline from before (paused while hidden, a track that
        // was muted) keeps it from presenting.
        m.el.srcObject = new MediaStream([slot.track]);
      }
      m.shown = show;
      if (show) {
        if (m.el.paused) {
          void m.el.play().catch(() => undefined);
        }
        m.el.dataset["participant"] = who.participantId;
        m.el.dataset["source"] = slot.source ?? (slot.kind === "audio" ? "microphone" : "camera");
        const name = who.name ?? "A participant";
        m.label.textContent = slot.source === "screen" ? `${name}'s screen` : name;
      } else {
        delete m.el.dataset["participant"];
        delete m.el.dataset["source"];
      }
    }
  }

  #tile(mid: string, kind: "audio" | "video", track: MediaStreamTrack): { el: HTMLMediaElement; box: HTMLElement; label: HTMLElement; shown: boolean } {
    const have = this.#media.get(mid);
    if (have !== undefined) {
      return have;
    }
    const doc = this.#doc;
    const el = doc.createElement(kind);
    el.autoplay = true;
    el.dataset["mid"] = mid;
    el.srcObject = new MediaStream([track]);
    const label = doc.createElement("span");
    let box: HTMLElement;
    if (el instanceof HTMLVideoElement) {
      el.playsInline = true;
      el.muted = true;
      el.width = 160;
      el.height = 120;
      box = doc.createElement("li");
      box.append(el, label);
      this.#tiles.append(box);
    } else {
      box = doc.createElement("div");
      box.append(el, label);
      this.#audio.append(box);
      // The output chosen in the speaker check; the default if the browser refuses it.
      if (this.#speaker !== undefined && typeof el.setSinkId === "function") {
        void el.setSinkId(this.#speaker).catch(() => undefined);
      }
    }
    const m = { el, box, label, shown: false };
    this.#media.set(mid, m);
    return m;
  }
}

// Mediators: "Invite someone": choose whom, optionally write a message for the waiting room, make
// the link, copy it from a read-only field. The link carries the invite secret in its fragment,
// and the message too (`&w=`, waiting.ts), so the server never sees either: it is shown here
// only, never logged. The message goes into every link made while it is written.
function inviteForm(doc: Document, actions: CallActions, announce: (text: string) => void): HTMLFormElement {
  const form = el(doc, "form", { id: "invite" });
  form.hidden = true;
  const h = el(doc, "h3", { text: "Invite someone" });
  const whoLabel = el(doc, "label", { text: "Who" });
  whoLabel.htmlFor = "invite-who";
  const who = el(doc, "select", { id: "invite-who" });
  for (const i of INVITES) {
    const o = doc.createElement("option");
    o.value = i.value;
    o.textContent = i.label;
    who.append(o);
  }
  const messageLabel = el(doc, "label", { text: "Message for the waiting room (optional)" });
  messageLabel.htmlFor = "invite-message";
  const message = el(doc, "textarea", { id: "invite-message" });
  message.rows = 3;
  message.maxLength = WAITING_MESSAGE_MAX;
  message.setAttribute("aria-describedby", "invite-message-help invite-message-count");
  const messageHelp = el(doc, "p", {
    id: "invite-message-help",
    className: "help",
    text: "This person reads it while they wait to be let in. It travels inside the link only: Confer's server never sees it.",
  });
  const count = el(doc, "p", { id: "invite-message-count", className: "help" });
  const counted = (): void => {
    count.textContent = `${String(Array.from(message.value).length)} of ${String(WAITING_MESSAGE_MAX)} characters`;
  };
  counted();
  message.addEventListener("input", counted);
  const button = doc.createElement("button");
  button.type = "submit";
  button.textContent = "Create invitation link";
  const linkLabel = doc.createElement("label");
  linkLabel.htmlFor = "invite-link";
  linkLabel.textContent = "Invitation link (single use; send it to that person only)";
  const link = doc.createElement("input");
  link.id = "invite-link";
  link.readOnly = true;
  link.value = "";
  const copy = el(doc, "button", { id: "invite-copy", text: "Copy the link" });
  copy.type = "button";
  copy.addEventListener("click", () => {
    if (link.value === "") {
      announce("Create an invitation link first.");
      return;
    }
    navigator.clipboard.writeText(link.value).then(
      () => {
        announce("Invitation link copied.");
      },
      () => {
        link.focus();
        link.select();
        announce("The browser did not allow copying: the link is selected, copy it with your keyboard.");
      },
    );
  });
  form.append(h, whoLabel, who, messageLabel, message, messageHelp, count, button, linkLabel, link, copy);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const choice = INVITES.find((i) => i.value === who.value) ?? INVITES[0];
    button.disabled = true;
    void actions
      .createInvite(choice.role, choice.side)
      .then((l) => {
        const withMessage = withWaitingMessage(l, message.value);
        link.value = withMessage;
        link.focus();
        link.select();
        const note = withMessage === l ? "" : " It carries your message for the waiting room.";
        announce(`Invitation link for ${choice.label} created.${note} Copy it and send it to them.`);
      })
      .catch(() => {
        announce("The invitation link could not be created. Try again.");
      })
      .finally(() => {
        button.disabled = false;
      });
  });
  return form;
}

/** What an alarm means and what to do, in plain words (codes: docs/protocol/e2ee.md §18). */
export function alarmText(code: string): string {
  switch (code) {
    case "transform_bypassed":
      return "Security alarm: some of your video or sound was about to leave without encryption, so Confer stopped it. Leave the session and join again from a current browser; tell the mediator.";
    case "media_unsupported":
      return "Your camera and microphone are off: this browser could not encrypt them. Join from a current Chrome, Edge, Chromium or Firefox.";
    case "media_devices_refused":
      return "The browser did not allow your camera and microphone. Allow them for this site in the address bar, then join again.";
    default:
      return `Security alarm (${code}): someone may be listening who should not, or the server misbehaved. Do not say anything confidential; tell the mediator, and compare the session code with the others.`;
  }
}

function focusFirstButton(d: HTMLDialogElement): void {
  d.querySelector<HTMLButtonElement>("button")?.focus();
}
