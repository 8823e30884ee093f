// The call screen (the first one; the mediation app builds on it): who can hear me now (the
// signed roster of the room I am secured in, never the server's list), the session code, and a
// tile per publisher in my room. A slot is shown only when its publisher is present in my
// signed roster, and never once the watchdog blocked it.

import type { View } from "../sdk.js";

/** What the call screen's buttons do (the SDK's session). */
export interface CallActions {
  shareScreen(): Promise<void>;
  stopScreen(): Promise<void>;
  createInvite(role: "party" | "counsel", side: "A" | "B"): Promise<string>;
}

/** Whom a mediator can invite from the call screen (the link is bound to that role and side). */
const INVITES = [
  { value: "party:A", label: "Party A", role: "party", side: "A" },
  { value: "party:B", label: "Party B", role: "party", side: "B" },
  { value: "counsel:A", label: "Counsel for party A", role: "counsel", side: "A" },
  { value: "counsel:B", label: "Counsel for party B", role: "counsel", side: "B" },
] as const;

export class CallView {
  readonly #doc: Document;
  readonly #room: HTMLElement;
  readonly #hear: HTMLElement;
  readonly #code: HTMLElement;
  readonly #tiles: HTMLElement;
  readonly #audio: HTMLElement;
  readonly #alarm: HTMLElement;
  readonly #media = new Map<string, { el: HTMLMediaElement; box: HTMLElement; label: HTMLElement }>();
  readonly #share: HTMLButtonElement;
  readonly #invite: HTMLFormElement;
  #sharing = false;

  readonly #announce: (text: string) => void;

  constructor(doc: Document, main: HTMLElement, actions: CallActions, announce: (text: string) => void) {
    this.#doc = doc;
    this.#announce = announce;
    const section = doc.createElement("section");
    section.id = "call";
    section.setAttribute("aria-labelledby", "room");
    this.#room = doc.createElement("h2");
    this.#room.id = "room";
    this.#hear = doc.createElement("p");
    this.#hear.id = "hear";
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
    section.append(this.#room, this.#hear, codeP, this.#alarm, this.#share, this.#invite, this.#tiles, this.#audio);
    main.append(section);
  }

  render(v: View): void {
    this.#room.textContent = roomName(v.secured ?? v.channel);
    const others = v.present.filter((p) => !p.me);
    this.#hear.textContent =
      v.phase === "secured"
        ? others.length === 0
          ? "Nobody else can hear you now."
          : `Who can hear you now: ${others.map((p) => p.name ?? "a participant").join(", ")}.`
        : v.phase === "ended"
          ? "The session has ended."
          : "Securing: your microphone and camera stay off until this room is secured.";
    this.#code.textContent = v.sessionCode ?? "not yet";
    this.#alarm.textContent = v.alarms.length === 0 ? "" : `Security alarm: ${v.alarms.join(", ")}.`;
    this.#sharing = v.sharingScreen;
    this.#invite.hidden = v.role !== "mediator" || v.phase !== "secured";
    this.#share.textContent = v.sharingScreen ? "Stop sharing your screen" : "Share your screen";
    this.#share.disabled = v.phase !== "secured" && !v.sharingScreen;
    const present = new Map(v.present.map((p) => [p.participantId, p]));
    for (const slot of v.slots) {
      const who = slot.publisher === undefined ? undefined : present.get(slot.publisher);
      const m = this.#tile(slot.mid, slot.kind, slot.track);
      // Shown: a publisher in my signed roster whose frames open here now.
      const show = who !== undefined && !who.me && !slot.blocked && slot.live === true;
      m.box.hidden = !show;
      m.el.muted = slot.kind === "video" || !show;
      if (show) {
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

  #tile(mid: string, kind: "audio" | "video", track: MediaStreamTrack): { el: HTMLMediaElement; box: HTMLElement; label: HTMLElement } {
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
    }
    const m = { el, box, label };
    this.#media.set(mid, m);
    return m;
  }
}

function roomName(ch: string | undefined): string {
  if (ch === undefined) {
    return "Waiting room";
  }
  if (ch === "joint") {
    return "Joint session";
  }
  const caucus = /^caucus-(.+)$/.exec(ch);
  if (caucus !== null) {
    return `Private caucus ${caucus[1] ?? ""}`;
  }
  const breakout = /^breakout-(.+)$/.exec(ch);
  return breakout !== null ? `Breakout room ${breakout[1] ?? ""}` : ch;
}

// Mediators: "Invite someone": choose whom, make the link, copy it from a read-only field. The
// link carries the invite secret in its fragment: it is shown here only, never logged.
function inviteForm(doc: Document, actions: CallActions, announce: (text: string) => void): HTMLFormElement {
  const form = doc.createElement("form");
  form.id = "invite";
  form.hidden = true;
  const h = doc.createElement("h3");
  h.textContent = "Invite someone";
  const whoLabel = doc.createElement("label");
  whoLabel.htmlFor = "invite-who";
  whoLabel.textContent = "Who";
  const who = doc.createElement("select");
  who.id = "invite-who";
  for (const i of INVITES) {
    const o = doc.createElement("option");
    o.value = i.value;
    o.textContent = i.label;
    who.append(o);
  }
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
  form.append(h, whoLabel, who, button, linkLabel, link);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const choice = INVITES.find((i) => i.value === who.value) ?? INVITES[0];
    button.disabled = true;
    void actions
      .createInvite(choice.role, choice.side)
      .then((l) => {
        link.value = l;
        link.focus();
        link.select();
        announce(`Invitation link for ${choice.label} created. Copy it and send it to them.`);
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
