// Documents in the room (e2ee §8.7): share a file, see the room's files, open one (decrypted in
// this page, then saved through a link the page makes), and, for the mediator (and a delegated
// co-mediator), carry one into another room, re-keyed for the people there. The server stores
// the sealed chunks and never a key; only the people in the room when a file is shared get its
// key.

import type { DocumentItem, View } from "../sdk.js";

import { roomName } from "./board.js";
import { button, el } from "./dom.js";

export interface DocumentActions {
  share(file: File): Promise<void>;
  open(docId: string): Promise<Uint8Array>;
  carry(docId: string, room: string): Promise<void>;
  acknowledge(docId: string): Promise<void>;
}

/** Larger files are refused here, before any work (the server's default limit is 25 MiB). */
const MAX_SHARE_BYTES = 25 * 1024 * 1024;

function sizeText(n: number): string {
  if (n < 1024) {
    return `${String(n)} bytes`;
  }
  if (n < 1024 * 1024) {
    return `${(n / 1024).toFixed(0)} KB`;
  }
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export class DocumentsView {
  readonly #doc: Document;
  readonly #root: HTMLElement;
  readonly #list: HTMLElement;
  readonly #status: HTMLElement;
  readonly #file: HTMLInputElement;
  readonly #actions: DocumentActions;
  readonly #announce: (text: string) => void;
  /** Files opened here: their object URLs (revoked when the page goes). */
  readonly #opened = new Map<string, string>();
  #last = "";
  #view: View | undefined;

  constructor(doc: Document, parent: HTMLElement, actions: DocumentActions, announce: (text: string) => void) {
    this.#doc = doc;
    this.#actions = actions;
    this.#announce = announce;
    this.#root = el(doc, "section", { id: "documents" });
    this.#root.setAttribute("aria-labelledby", "documents-title");
    this.#root.hidden = true;
    const h = el(doc, "h3", { id: "documents-title", text: "Documents in this room" });
    const help = el(doc, "p", {
      id: "documents-help",
      text: "A file you share is encrypted on this device. Only the people in this room now can open it; the server keeps it encrypted and deletes it when the session ends.",
    });
    const form = el(doc, "form", { id: "doc-form" });
    const label = el(doc, "label", { text: "File to share" });
    label.htmlFor = "doc-file";
    this.#file = el(doc, "input", { id: "doc-file" });
    this.#file.type = "file";
    this.#file.setAttribute("aria-describedby", "documents-help");
    const share = el(doc, "button", { id: "doc-share", text: "Share the file" });
    share.type = "submit";
    form.append(label, this.#file, share);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.#share();
    });
    this.#list = el(doc, "ul", { id: "doc-list" });
    this.#status = el(doc, "p", { id: "doc-status" });
    this.#status.setAttribute("role", "status");
    this.#root.append(h, help, form, this.#list, this.#status);
    parent.append(this.#root);
    doc.defaultView?.addEventListener("pagehide", () => {
      for (const u of this.#opened.values()) {
        URL.revokeObjectURL(u);
      }
    });
  }

  #say(text: string): void {
    this.#status.textContent = text;
  }

  #share(): void {
    const f = this.#file.files?.[0];
    if (f === undefined) {
      this.#say("Choose a file to share first.");
      return;
    }
    if (f.size > MAX_SHARE_BYTES) {
      this.#say("This file is larger than 25 MB. Share a smaller file, or split it.");
      return;
    }
    this.#say(`Encrypting and sharing ${f.name}…`);
    void this.#actions.share(f).then(
      () => {
        this.#file.value = "";
        this.#say(`${f.name} is shared with the people in this room.`);
        this.#announce(`${f.name} is shared with the people in this room.`);
      },
      (e: unknown) => {
        this.#say(`${f.name} could not be shared: ${e instanceof Error ? e.message : "try again"}.`);
      },
    );
  }

  render(v: View): void {
    this.#view = v;
    this.#root.hidden = v.phase !== "secured";
    const rooms = v.signsRosters ? (v.session?.channels.map((c) => c.id) ?? []) : [];
    const key = JSON.stringify({ d: v.documents, n: v.names, rooms, o: [...this.#opened.keys()] });
    if (key === this.#last) {
      return;
    }
    this.#last = key;
    const focused = this.#doc.activeElement?.id;
    this.#list.replaceChildren(...v.documents.map((d) => this.#item(v, d, rooms)));
    if (v.documents.length === 0) {
      this.#list.append(el(this.#doc, "li", { text: "No documents shared in this room yet." }));
    }
    if (focused !== undefined && focused !== "") {
      this.#doc.getElementById(focused)?.focus();
    }
  }

  #item(v: View, d: DocumentItem, rooms: string[]): HTMLElement {
    const doc = this.#doc;
    const li = el(doc, "li");
    li.dataset["doc"] = d.docId;
    const who = d.mine ? "you" : (v.names[d.from] ?? "a participant");
    const state = d.state === "uploading" ? `, uploading ${String(Math.round(d.progress * 100))}%` : d.state === "failed" ? ", not uploaded" : "";
    const where = v.signsRosters ? ` in ${roomName(d.room)}` : "";
    li.append(el(doc, "span", { text: `${d.name} (${sizeText(d.size)}), shared by ${who}${where}${state}` }));
    const saved = this.#opened.get(d.docId);
    if (saved !== undefined) {
      const a = el(doc, "a", { id: `doc-save-${d.docId}`, text: `Save ${d.name}` });
      a.href = saved;
      a.download = d.name;
      li.append(" ", a);
    } else if (d.state === "ready") {
      li.append(
        " ",
        button(doc, `doc-open-${d.docId}`, "Open", () => {
          this.#open(d);
        }, `Open ${d.name}`),
      );
    }
    // A version shared by someone else can be acknowledged (a settlement draft): signed here,
    // verified by the mediator's page. The mediator sees who acknowledged each version.
    if (!d.mine && d.state === "ready" && v.role !== "mediator") {
      if (d.acknowledged) {
        li.append(el(doc, "span", { text: " You acknowledged this version." }));
      } else {
        li.append(
          " ",
          button(doc, `doc-ack-${d.docId}`, "Acknowledge this version", () => {
            void this.#actions.acknowledge(d.docId).then(
              () => {
                this.#say(`You acknowledged this version of ${d.name}. The mediator's page and the session's audit log record it.`);
              },
              () => {
                this.#say(`${d.name} could not be acknowledged now.`);
              },
            );
          }, `Acknowledge this version of ${d.name}`),
        );
      }
    }
    if (v.role === "mediator" && d.acknowledgedBy.length > 0) {
      const names = d.acknowledgedBy.map((p) => v.names[p] ?? "a participant").join(", ");
      li.append(el(doc, "span", { id: `doc-acks-${d.docId}`, text: ` Acknowledged by ${names}.` }));
    }
    const targets = rooms.filter((r) => r !== d.room);
    if (d.state === "ready" && targets.length > 0) {
      const label = el(doc, "label", { text: "Carry to" });
      const sel = el(doc, "select", { id: `doc-to-${d.docId}` });
      label.htmlFor = sel.id;
      for (const r of targets) {
        const o = el(doc, "option", { text: roomName(r) });
        o.value = r;
        sel.append(o);
      }
      const go = button(doc, `doc-carry-${d.docId}`, "Carry", () => {
        const to = sel.value;
        this.#say(`Carrying ${d.name} to ${roomName(to)}…`);
        void this.#actions.carry(d.docId, to).then(
          () => {
            this.#say(`${d.name} is shared in ${roomName(to)}, with a new key for the people there.`);
          },
          (e: unknown) => {
            this.#say(`${d.name} could not be carried: ${e instanceof Error ? e.message : "try again"}.`);
          },
        );
      }, `Carry ${d.name} to the chosen room`);
      li.append(" ", label, sel, go);
    }
    return li;
  }

  #open(d: DocumentItem): void {
    this.#say(`Opening ${d.name}…`);
    void this.#actions.open(d.docId).then(
      (bytes) => {
        const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: d.mediaType === "" ? "application/octet-stream" : d.mediaType }));
        this.#opened.set(d.docId, url);
        if (this.#view !== undefined) {
          this.render(this.#view);
        }
        this.#say(`${d.name} is decrypted on this device. Choose "Save ${d.name}" to keep it.`);
        this.#doc.getElementById(`doc-save-${d.docId}`)?.focus();
      },
      (e: unknown) => {
        this.#say(e instanceof Error ? e.message : `${d.name} could not be opened.`);
      },
    );
  }
}
