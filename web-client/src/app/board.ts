// The mediator's board: who is waiting, who is in which room, and the moves. Moves go through
// the SDK's `command` (the mediator's client signs the rosters that follow); the lists come
// from the server's session view, the only source for who is waiting, and name people by their
// verified display names. Each person has a "Move to" menu (WEB.md: moves by menu first, the
// keyboard's and screen reader's way); a person's row can also be dragged onto a room, which
// makes the same move. A party's counsel moves with the party unless the mediator unticks it,
// whichever way the party is moved. A breakout is made from a list of checkboxes. Re-rendered
// only when the session changes, keeping focus where it was.

import type { ChannelView, SessionView } from "../proto/message.js";
import type { View } from "../sdk.js";

import { button } from "./dom.js";

export interface BoardActions {
  admit(participant: string): Promise<boolean>;
  setAutoAdmit(on: boolean): Promise<void>;
  move(participant: string, channel: string): Promise<void>;
  breakout(members: string[]): Promise<void>;
  returnAll(): Promise<void>;
  lock(locked: boolean): Promise<void>;
  kick(participant: string): Promise<void>;
  end(): Promise<void>;
}

interface Person {
  id: string;
  role: string;
  side: string | undefined;
  channel: string;
}

export function roomName(ch: string | undefined): string {
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

function roleName(role: string, side: string | undefined): string {
  const s = side === undefined ? "" : ` ${side}`;
  switch (role) {
    case "party":
      return `Party${s}`;
    case "counsel":
      return `Counsel for party${s}`;
    case "co_mediator":
      return "Co-mediator";
    case "observer":
      return "Observer";
    default:
      return "Mediator";
  }
}

export class Board {
  readonly #doc: Document;
  readonly #root: HTMLElement;
  readonly #actions: BoardActions;
  readonly #announce: (text: string) => void;
  #last = "";
  #withCounsel = true;
  /** The person being dragged, if any (set on `dragstart`, cleared on `dragend` or drop). */
  #dragging: { person: Person; view: View; people: Person[] } | undefined;
  /** Room timers (caucuses and breakouts), by channel: time left when paused, or when it ends. */
  readonly #timers = new Map<string, { endsAt: number | undefined; leftMs: number; told: boolean }>();

  constructor(doc: Document, parent: HTMLElement, actions: BoardActions, announce: (text: string) => void) {
    this.#doc = doc;
    this.#actions = actions;
    this.#announce = announce;
    this.#root = doc.createElement("section");
    this.#root.id = "board";
    this.#root.setAttribute("aria-labelledby", "board-title");
    this.#root.hidden = true;
    parent.append(this.#root);
    setInterval(() => {
      this.#tickTimers();
    }, 1_000);
  }

  // Updates each timer's text; says once, politely, when a room's time is up.
  #tickTimers(): void {
    const now = performance.now();
    for (const [ch, t] of this.#timers) {
      const left = t.endsAt === undefined ? t.leftMs : Math.max(0, t.endsAt - now);
      const el = this.#doc.getElementById(`timer-${ch}`);
      if (el !== null) {
        el.textContent = timerText(left, t.endsAt !== undefined);
      }
      if (t.endsAt !== undefined && left === 0 && !t.told) {
        t.told = true;
        this.#announce(`Time is up in ${roomName(ch)}.`);
      }
    }
  }

  #timerControls(ch: string): HTMLElement {
    const doc = this.#doc;
    const box = doc.createElement("p");
    box.className = "timer";
    const text = doc.createElement("span");
    text.id = `timer-${ch}`;
    const t = this.#timers.get(ch);
    const left = t === undefined ? 0 : t.endsAt === undefined ? t.leftMs : Math.max(0, t.endsAt - performance.now());
    text.textContent = t === undefined ? "No timer" : timerText(left, t.endsAt !== undefined);
    const start = (ms: number): void => {
      this.#timers.set(ch, { endsAt: performance.now() + ms, leftMs: ms, told: false });
      this.#tickTimers();
      this.#announce(`Timer for ${roomName(ch)}: ${String(Math.round(ms / 60_000))} minutes.`);
    };
    const b = (id: string, label: string, f: () => void): HTMLButtonElement => button(doc, `${id}-${ch}`, label, f, `${label}: ${roomName(ch)}`);
    box.append(
      text,
      b("timer-start", "Start 15 minutes", () => {
        start(15 * 60_000);
      }),
      b("timer-pause", "Pause or resume", () => {
        const cur = this.#timers.get(ch);
        if (cur === undefined) {
          return;
        }
        if (cur.endsAt === undefined) {
          cur.endsAt = performance.now() + cur.leftMs;
          this.#announce(`Timer for ${roomName(ch)} resumed.`);
        } else {
          cur.leftMs = Math.max(0, cur.endsAt - performance.now());
          cur.endsAt = undefined;
          this.#announce(`Timer for ${roomName(ch)} paused.`);
        }
        this.#tickTimers();
      }),
      b("timer-extend", "Add 5 minutes", () => {
        const cur = this.#timers.get(ch);
        if (cur === undefined) {
          start(5 * 60_000);
          return;
        }
        if (cur.endsAt === undefined) {
          cur.leftMs += 5 * 60_000;
        } else {
          cur.endsAt = Math.max(cur.endsAt, performance.now()) + 5 * 60_000;
        }
        cur.told = false;
        this.#tickTimers();
        this.#announce(`Five minutes added in ${roomName(ch)}.`);
      }),
    );
    return box;
  }

  render(v: View): void {
    // The mediator's board; a co-mediator's once the mediator delegated roster signing to it
    // (moves, caucuses, breakouts, bringing everyone back and the lock: no admissions or end,
    // which only the mediator's client can verify and decide).
    const show = (v.role === "mediator" || (v.role === "co_mediator" && v.signsRosters)) && v.phase === "secured" && v.session !== undefined;
    this.#root.hidden = !show;
    if (!show || v.session === undefined) {
      return;
    }
    const key = JSON.stringify({ s: v.session, n: v.names, me: v.participantId, l: v.locked, a: v.arrivals, auto: v.autoAdmit, r: v.role });
    if (key === this.#last) {
      return;
    }
    this.#last = key;
    const focused = this.#doc.activeElement?.id;
    this.#root.replaceChildren(...this.#build(v, v.session));
    if (focused !== undefined && focused !== "") {
      this.#doc.getElementById(focused)?.focus();
    }
  }

  #label(v: View, p: { id: string; role: string; side: string | undefined }): string {
    const name = v.names[p.id];
    const role = roleName(p.role, p.side);
    if (p.id === v.participantId) {
      return `You (${role})`;
    }
    return name === undefined ? role : `${name} (${role})`;
  }

  #build(v: View, s: SessionView): HTMLElement[] {
    const doc = this.#doc;
    const out: HTMLElement[] = [];
    const h = doc.createElement("h2");
    h.id = "board-title";
    h.textContent = v.role === "mediator" ? "Your mediation" : "Your mediation (as co-mediator)";
    out.push(h);
    if (v.role === "mediator") {
      out.push(...this.#arrivals(v, s));
    }
    out.push(...this.#rooms(v, s));
    return out;
  }

  #arrivals(v: View, s: SessionView): HTMLElement[] {
    const doc = this.#doc;
    const out: HTMLElement[] = [];

    // Waiting room.
    const wh = doc.createElement("h3");
    wh.textContent = "Waiting room";
    const auto = doc.createElement("label");
    const autoBox = doc.createElement("input");
    autoBox.type = "checkbox";
    autoBox.id = "auto-admit";
    autoBox.checked = v.autoAdmit;
    autoBox.addEventListener("change", () => {
      void this.#actions.setAutoAdmit(autoBox.checked).then(() => {
        this.#announce(autoBox.checked ? "People are let in as soon as they accept the agreement." : "You let each person in yourself.");
      });
    });
    auto.append(autoBox, " Let people in as soon as they accept the agreement");
    const wl = doc.createElement("ul");
    wl.id = "waiting";
    for (const w of v.arrivals.filter((a) => !a.rekeyed)) {
      const li = doc.createElement("li");
      li.dataset["participant"] = w.participantId;
      const who = this.#label(v, { id: w.participantId, role: w.role, side: w.side });
      const state = !w.connected
        ? "connection lost"
        : w.ready
          ? "accepted the agreement; ready"
          : w.consented
            ? "accepted the agreement; checking"
            : "reading the agreement";
      const text = doc.createElement("span");
      text.textContent = `${who}: ${state}`;
      li.append(text);
      if (w.fingerprint !== undefined) {
        const fp = doc.createElement("span");
        fp.className = "code";
        fp.id = `fingerprint-${w.participantId}`;
        fp.textContent = ` key ${w.fingerprint}`;
        li.append(fp);
      }
      if (w.ready && !v.autoAdmit) {
        const letIn = button(
          doc,
          `admit-${w.participantId}`,
          "Let in",
          () => {
            void this.#actions.admit(w.participantId).then((ok) => {
              this.#announce(ok ? `${who} is being let in.` : `${who} cannot be let in now.`);
            });
          },
          `Let ${who} in`,
        );
        li.append(letIn);
      }
      const away = button(
        doc,
        `deny-${w.participantId}`,
        "Turn away",
        () => {
          void this.#actions.kick(w.participantId).then(() => {
            this.#announce(`${who} was turned away.`);
          });
        },
        `Turn ${who} away`,
      );
      li.append(away);
      wl.append(li);
    }
    if (s.waiting.length === 0) {
      const li = doc.createElement("li");
      li.textContent = s.locked ? "Nobody is waiting. The session is locked: new arrivals wait here." : "Nobody is waiting.";
      wl.append(li);
    }
    out.push(wh, auto, wl);
    out.push(...this.#back(v));
    return out;
  }

  // People whose page reloaded and who came back with new keys (e2ee §15.12): held until the
  // mediator compares the new fingerprint with the one the person reads out.
  #back(v: View): HTMLElement[] {
    const doc = this.#doc;
    const back = v.arrivals.filter((a) => a.rekeyed);
    if (back.length === 0) {
      return [];
    }
    const h = doc.createElement("h3");
    h.textContent = "Back after a reload";
    const p = doc.createElement("p");
    p.id = "back-help";
    p.textContent =
      "Their page reloaded, so their encryption keys are new. Ask each to read out the key their screen shows, and let them back in only if it matches the one here. Until then they see and hear nothing, and nobody hears them.";
    const ul = doc.createElement("ul");
    ul.id = "back";
    for (const w of back) {
      const li = doc.createElement("li");
      li.dataset["participant"] = w.participantId;
      const who = this.#label(v, { id: w.participantId, role: w.role, side: w.side });
      const text = doc.createElement("span");
      text.textContent = `${who}, in ${roomName(w.channel)}: ${!w.connected ? "connection lost" : w.ready ? "new key" : "reconnecting"}`;
      li.append(text);
      if (w.fingerprint !== undefined) {
        const fp = doc.createElement("span");
        fp.className = "code";
        fp.id = `fingerprint-${w.participantId}`;
        fp.textContent = ` key ${w.fingerprint}`;
        li.append(fp);
      }
      if (w.ready) {
        const letIn = button(
          doc,
          `let-back-${w.participantId}`,
          "Let back in",
          () => {
            void this.#actions.admit(w.participantId).then((ok) => {
              this.#announce(ok ? `${who} is back in ${roomName(w.channel)}.` : `${who} cannot be let back in now.`);
            });
          },
          `Let ${who} back in`,
        );
        letIn.setAttribute("aria-describedby", "back-help");
        li.append(letIn);
      }
      li.append(
        button(
          doc,
          `remove-back-${w.participantId}`,
          "Remove",
          () => {
            void this.#actions.kick(w.participantId).then(() => {
              this.#announce(`${who} was removed.`);
            });
          },
          `Remove ${who}`,
        ),
      );
      ul.append(li);
    }
    return [h, p, ul];
  }

  #rooms(v: View, s: SessionView): HTMLElement[] {
    const doc = this.#doc;
    const out: HTMLElement[] = [];
    // Rooms and people.
    const people: Person[] = s.channels.flatMap((c: ChannelView) =>
      c.members.map((m) => ({ id: m.participant_id, role: m.role, side: m.side, channel: c.id })),
    );
    const targets = ["joint", "caucus-A", "caucus-B", ...s.channels.filter((c) => c.kind === "breakout").map((c) => c.id)];
    const rh = doc.createElement("h3");
    rh.textContent = "Rooms";
    const hint = doc.createElement("p");
    hint.className = "help";
    hint.textContent = "Move someone with the Move menu beside their name, or drag their row onto a room.";
    out.push(rh, hint);
    // Every room one can move to (empty ones too, so they can take a drop), then any other.
    const rooms = [...targets, ...s.channels.map((c) => c.id).filter((id) => !targets.includes(id))];
    for (const id of rooms) {
      const c = s.channels.find((x) => x.id === id);
      const section = doc.createElement("div");
      section.className = "room";
      section.dataset["channel"] = id;
      const ch = doc.createElement("h4");
      ch.textContent = roomName(id);
      section.append(ch);
      if (c === undefined || c.members.length === 0) {
        const empty = doc.createElement("p");
        empty.textContent = "Nobody is in this room.";
        section.append(empty);
      } else {
        const ul = doc.createElement("ul");
        for (const m of c.members) {
          const p: Person = { id: m.participant_id, role: m.role, side: m.side, channel: c.id };
          ul.append(this.#personRow(v, p, targets, people));
        }
        section.append(ul);
        if (c.kind !== "joint") {
          section.append(this.#timerControls(c.id));
        }
      }
      this.#dropTarget(section, id);
      out.push(section);
    }

    // Counsel moves with the party.
    const cl = doc.createElement("label");
    const cb = doc.createElement("input");
    cb.type = "checkbox";
    cb.id = "with-counsel";
    cb.checked = this.#withCounsel;
    cb.addEventListener("change", () => {
      this.#withCounsel = cb.checked;
    });
    cl.append(cb, " When I move a party, move their counsel too");
    out.push(cl);

    // Breakout.
    const bf = doc.createElement("form");
    bf.id = "breakout";
    const fs = doc.createElement("fieldset");
    const lg = doc.createElement("legend");
    lg.textContent = "Open a breakout room with";
    fs.append(lg);
    for (const p of people) {
      if (p.id === v.participantId) {
        continue;
      }
      const l = doc.createElement("label");
      const c = doc.createElement("input");
      c.type = "checkbox";
      c.value = p.id;
      c.id = `breakout-${p.id}`;
      l.append(c, ` ${this.#label(v, p)}`);
      fs.append(l);
    }
    const bb = doc.createElement("button");
    bb.type = "submit";
    bb.textContent = "Open breakout room";
    bf.append(fs, bb);
    bf.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const members = Array.from(bf.querySelectorAll<HTMLInputElement>("input[type=checkbox]:checked"), (x) => x.value);
      if (members.length < 2) {
        this.#announce("Choose at least two people for a breakout room.");
        return;
      }
      void this.#actions.breakout(members).then(() => {
        this.#announce("Breakout room opened.");
      });
    });
    out.push(bf);

    // Session controls.
    const controls = doc.createElement("div");
    controls.className = "controls";
    const back = this.#button("return-all", "Bring everyone back to the joint session", () => this.#actions.returnAll(), "Everyone is back in the joint session.");
    const lock = this.#button(
      "lock",
      s.locked ? "Unlock the session" : "Lock the session",
      () => this.#actions.lock(!s.locked),
      s.locked ? "The session is unlocked." : "The session is locked: new arrivals wait.",
    );
    controls.append(back, lock);
    if (v.role === "mediator") {
      controls.append(this.#button("end", "End the session for everyone", () => this.#actions.end(), "The session has ended."));
    }
    out.push(controls);
    return out;
  }

  #button(id: string, text: string, f: () => Promise<void>, done: string): HTMLButtonElement {
    return button(this.#doc, id, text, () => {
      void f().then(() => {
        this.#announce(done);
      });
    });
  }

  /**
   * Moves `p` to `to`, and a party's counsel in the same room with them when "move their
   * counsel too" is ticked; says so in the live region. The menu and a drop both come here.
   */
  #move(v: View, p: Person, to: string, people: Person[]): void {
    if (to === p.channel) {
      return;
    }
    const moving = [p.id];
    if (this.#withCounsel && p.role === "party") {
      moving.push(...people.filter((q) => q.role === "counsel" && q.side === p.side && q.channel === p.channel).map((q) => q.id));
    }
    void (async () => {
      for (const id of moving) {
        await this.#actions.move(id, to);
      }
      this.#announce(`${this.#label(v, p)} ${moving.length > 1 ? "and their counsel " : ""}moved to ${roomName(to)}.`);
    })();
  }

  /** A room's section takes a dragged person (not one already in it) and moves them there. */
  #dropTarget(section: HTMLElement, channel: string): void {
    const wanted = (ev: DragEvent): boolean => {
      const d = this.#dragging;
      return d !== undefined && d.person.channel !== channel && (ev.dataTransfer?.types.includes(DRAG_TYPE) ?? true);
    };
    const over = (ev: DragEvent): void => {
      if (!wanted(ev)) {
        return;
      }
      ev.preventDefault();
      if (ev.dataTransfer !== null) {
        ev.dataTransfer.dropEffect = "move";
      }
      section.classList.add("drop-target");
    };
    section.addEventListener("dragenter", over);
    section.addEventListener("dragover", over);
    section.addEventListener("dragleave", (ev) => {
      if (!(ev.relatedTarget instanceof Node && section.contains(ev.relatedTarget))) {
        section.classList.remove("drop-target");
      }
    });
    section.addEventListener("drop", (ev) => {
      const d = this.#dragging;
      section.classList.remove("drop-target");
      if (d === undefined || !wanted(ev)) {
        return;
      }
      ev.preventDefault();
      this.#dragging = undefined;
      this.#move(d.view, d.person, channel, d.people);
      // Focus follows the moved person: their menu, where the keyboard path goes on.
      this.#doc.getElementById(`move-${d.person.id}`)?.focus();
    });
  }

  #personRow(v: View, p: Person, targets: string[], people: Person[]): HTMLElement {
    const doc = this.#doc;
    const li = doc.createElement("li");
    li.dataset["participant"] = p.id;
    const name = doc.createElement("span");
    name.textContent = this.#label(v, p);
    const selId = `move-${p.id}`;
    const l = doc.createElement("label");
    l.htmlFor = selId;
    l.className = "visually-hidden";
    l.textContent = `Move ${this.#label(v, p)} to`;
    const sel = doc.createElement("select");
    sel.id = selId;
    for (const t of targets) {
      const o = doc.createElement("option");
      o.value = t;
      o.textContent = roomName(t);
      o.selected = t === p.channel;
      sel.append(o);
    }
    const go = doc.createElement("button");
    go.type = "button";
    go.id = `go-${p.id}`;
    go.textContent = "Move";
    go.addEventListener("click", () => {
      this.#move(v, p, sel.value, people);
    });
    li.append(name, l, sel, go);
    // Dragging: an addition for pointer users (WCAG 2.5.7); the menu above does the same.
    li.draggable = true;
    li.addEventListener("dragstart", (ev) => {
      this.#dragging = { person: p, view: v, people };
      if (ev.dataTransfer !== null) {
        ev.dataTransfer.effectAllowed = "move";
        ev.dataTransfer.setData(DRAG_TYPE, p.id);
      }
      li.classList.add("dragging");
    });
    li.addEventListener("dragend", () => {
      this.#dragging = undefined;
      li.classList.remove("dragging");
      for (const t of this.#root.querySelectorAll(".drop-target")) {
        t.classList.remove("drop-target");
      }
    });
    if (p.id !== v.participantId) {
      const kick = button(
        doc,
        `kick-${p.id}`,
        "Remove",
        () => {
          void this.#actions.kick(p.id).then(() => {
            this.#announce(`${this.#label(v, p)} was removed.`);
          });
        },
        `Remove ${this.#label(v, p)} from the session`,
      );
      li.append(kick);
    }
    return li;
  }
}

/** The drag data type of a person's row (their participant id). */
const DRAG_TYPE = "application/x-confer-participant";

/** "12:34 left", "paused, 12:34 left", "time is up". */
function timerText(leftMs: number, running: boolean): string {
  if (running && leftMs === 0) {
    return "Time is up";
  }
  const secs = Math.ceil(leftMs / 1000);
  const mm = Math.floor(secs / 60);
  const ss = String(secs % 60).padStart(2, "0");
  return `${running ? "" : "Paused, "}${String(mm)}:${ss} left`;
}
