// The public SDK (WEB.md "Layers"): a page joins a Confer session with an invite link and gets
// typed events and a view snapshot; commands go in as method calls. It runs the client `Core`
// (src/core/) over the signalling transport (src/signal/) and the one peer connection to the
// SFU (src/media/link.ts; made anew, with the same tracks, each time the connection resumes:
// in cluster mode the session may have moved to another node and its SFU), with every media
// frame going through the gate (src/worker/gate.ts): sealed under the core's keys on the way
// out, opened on the way in, never passed in clear.
//
// The twin of the Rust driver (crates/client/src/driver.rs) for a browser: the same loop as
// the Node bot (bot/bot.ts), plus media. Status comes from cryptography, never from the server:
// `present` is the signed roster of the room I am secured in, names are the verified ones.

import { sha256 } from "@noble/hashes/sha2.js";

import { alarmCode } from "./core/alarms.js";
import { Core, CoreConfig, MediaRejected, agreementHash } from "./core/client.js";
import type { Event } from "./core/client.js";
import { STREAM_AUDIO, STREAM_CAMERA, STREAM_SCREEN } from "./core/frame.js";
import { SENDERS } from "./media/enrol.js";
import type { SenderId } from "./media/enrol.js";
import { MediaLink } from "./media/link.js";
import type { TransformPath } from "./media/transform.js";
import { transformPaths } from "./media/transform.js";
import type { Bypass } from "./media/watchdog.js";
import { Role } from "./proto/ids.js";
import type { ChannelId, ParticipantId, Side } from "./proto/ids.js";
import { DocHash, DocId } from "./proto/message.js";
import type { ClientMessage, IceServer, ServerMessage, SessionView } from "./proto/message.js";
import { Signal } from "./signal/connection.js";
import type { SocketLike } from "./signal/connection.js";
import { parseInvite } from "./signal/link.js";
import { Gate } from "./worker/gate.js";
import type { Opened } from "./worker/gate.js";

export type { SenderId } from "./media/enrol.js";
export type { TransformPath } from "./media/transform.js";
export { transformPaths } from "./media/transform.js";
export type { Bypass } from "./media/watchdog.js";

/** Set by the e2e build only (vite.config.ts): enables `JoinOptions.test`. */
declare const __CONFER_TEST_BUILD__: boolean;

/** The agreement to mediate of the demo (the Rust bots' default). */
export const DEMO_AGREEMENT =
  "Confer demo agreement to mediate: confidential; no recording by anyone; nobody else present.";

/** How often the core's timers run and held frames are retried (ms). */
const TICK_MS = 250;

/** A slot is live while frames opened there within this long (ms). */
const LIVE_MS = 2_000;
/** How often the watchdog compares the browser's counters with the gate's (ms). */
const WATCHDOG_MS = 1_000;

export interface JoinOptions {
  /** `ws://host/ws` or `wss://host/ws`. */
  wsUrl: string;
  /** The invite link, its fragment (`#t=...&k=...&m=...`), or a bare token. */
  invite: string;
  /** The agreement to mediate the person acknowledged. */
  agreement: string;
  /** My display name (sent end to end only). */
  displayName?: string | undefined;
  /** Publish my microphone and camera (default both). */
  publish?: { audio: boolean; video: boolean } | undefined;
  /**
   * The browser's echo cancellation, noise suppression and gain control on the microphone
   * (default on; off for a steady test tone, which a noise suppressor removes).
   */
  audioProcessing?: boolean | undefined;
  /** Which transform API to use (default: the browser's first, `transformPaths()`). */
  transformPath?: TransformPath | undefined;
  /** The base of invite links I make (mediators), e.g. `https://confer.example`. */
  linkBase?: string | undefined;
  /** Test builds only: give this sender its track without its transform (the watchdog must catch it). */
  test?: { skipSenderTransform?: SenderId | undefined } | undefined;
}

/** A receive slot of my peer connection and whom it carries now. */
export interface RemoteSlot {
  mid: string;
  kind: "audio" | "video";
  /** The publisher in it, as `media_slots` says (the gate opens its frames with that publisher's keys). */
  publisher: ParticipantId | undefined;
  track: MediaStreamTrack;
  /** The watchdog found frames decoded there that the gate did not open: never shown. */
  blocked: boolean;
  /** What the last frame that opened there was: a microphone, a camera or a screen. */
  source?: "microphone" | "camera" | "screen" | undefined;
  /** Whose key opened the last frame there (a tile is labelled with this, never the slot map alone). */
  openedFrom?: ParticipantId | undefined;
  /** A frame opened there within the last `LIVE_MS` (a slot whose publisher sends nothing, e.g. a screen not shared, is not live). */
  live?: boolean | undefined;
}

function sourceName(stream: number | undefined): RemoteSlot["source"] {
  if (stream === STREAM_AUDIO) {
    return "microphone";
  }
  if (stream === STREAM_CAMERA) {
    return "camera";
  }
  return stream === STREAM_SCREEN ? "screen" : undefined;
}

export interface Person {
  participantId: ParticipantId;
  /** The verified display name, if one arrived. */
  name: string | undefined;
  me: boolean;
}

export type Phase = "connecting" | "waiting" | "securing" | "secured" | "ended";

/**
 * Mediators: someone in the waiting room, or someone placed whose page reloaded and who came
 * back with new keys (`rekeyed`: it is let back into the rooms it is in).
 */
export interface Arrival {
  participantId: ParticipantId;
  role: Role;
  side: Side | undefined;
  /** Placed already, back with new keys (a page reload): a person compares its new fingerprint. */
  rekeyed: boolean;
  /** Rekeyed: the room the server has it in. */
  channel: ChannelId | undefined;
  /** The server says the agreement was acknowledged. */
  consented: boolean;
  connected: boolean;
  /** My client verified the acknowledgment and its invite: a person may let it in. */
  ready: boolean;
  /** The fingerprint of the identity key it announced (compare it with what the person reads out). */
  fingerprint: string | undefined;
}

/** A key's fingerprint: the first 10 bytes of its SHA-256, in groups of four hex digits. */
export function fingerprint(key: Uint8Array): string {
  const hex = Array.from(sha256(key).slice(0, 10), (b) => b.toString(16).padStart(2, "0")).join("");
  return (hex.match(/.{4}/g) ?? []).join(" ").toUpperCase();
}

/** A chat message that opened. */
export interface ChatLine {
  from: ParticipantId;
  channel: ChannelId;
  text: string;
  mine: boolean;
}

/**
 * A document whose key I hold (shared into a room I was in, or by me). The file is sealed end
 * to end (e2ee §8.7); the server stores its chunks and never the key.
 */
export interface DocumentItem {
  /** 32 hex digits. */
  docId: string;
  name: string;
  mediaType: string;
  size: number;
  from: ParticipantId;
  room: ChannelId;
  mine: boolean;
  /** Mine: `uploading` (with `progress` 0..1), `ready`, or `failed`. Others': `ready`. */
  state: "uploading" | "ready" | "failed";
  progress: number;
  /** I acknowledged this version (signed its SHA-256 and sent that to the mediator). */
  acknowledged: boolean;
  /** Mediators: who acknowledged this version (their signatures verified). */
  acknowledgedBy: ParticipantId[];
}

/** Chat messages kept per session (all rooms). */
const CHAT_KEPT = 200;

/** What the page shows: everything from local cryptographic facts, except `channel`. */
export interface View {
  phase: Phase;
  role: Role | undefined;
  participantId: ParticipantId | undefined;
  /** The room the server says I am in (shown as "moving" until it is secured). */
  channel: ChannelId | undefined;
  /** The room whose signed roster lists me and where my keys are out. */
  secured: ChannelId | undefined;
  sessionCode: string | undefined;
  /** Who can hear me now: the present members of the secured room's signed roster. */
  present: Person[];
  slots: RemoteSlot[];
  /** Alarm codes raised (core alarms and the watchdog's `transform_bypassed`). */
  alarms: string[];
  transformPath: TransformPath | undefined;
  /** My screen is being shared. */
  sharingScreen: boolean;
  /**
   * Mediators: the whole session as the server reports it (waiting room, rooms, lock). It is
   * the server's word, shown on the mediator's board to choose whom to move; what anyone can
   * hear is still decided by the rosters the mediator's client signs.
   */
  session: SessionView | undefined;
  /** Every verified display name I know (mediators: everyone's), by participant. */
  names: Record<string, string>;
  /** The chat of the room I am secured in, oldest first (at most `CHAT_KEPT`). */
  chat: ChatLine[];
  /** The documents of the room I am secured in (and, for managers, every room), oldest first. */
  documents: DocumentItem[];
  /** Mediators: my private notes, each saved version (sealed under a key only this page holds). */
  notes: { docId: string; savedAt: number; size: number }[];
  /** The session is locked (as the server last said). */
  locked: boolean;
  /** Every key of this session is deleted (after the end, a removal or leaving). */
  keysDeleted: boolean;
  /** My identity key's fingerprint, to read out to the mediator while I wait. */
  myFingerprint: string | undefined;
  /** Mediators: who is waiting, and whether each is ready to be let in (see `admit`). */
  arrivals: Arrival[];
  /** Mediators: arrivals are let in as soon as their acknowledgment verifies under an invite. */
  autoAdmit: boolean;
  /** Why the session ended, once it has. */
  ended: string | undefined;
  /**
   * My page reloaded and I resumed into a room with new keys: the mediator lets me back in
   * after comparing my new fingerprint (until then nothing is sent or opened).
   */
  rejoining: boolean;
  /**
   * I sign rosters: the mediator, or a co-mediator once the mediator's delegation verified (it
   * may then move people, split and bring back; `command`).
   */
  signsRosters: boolean;
}

/** What the SDK tells the page, besides view changes. */
export type SdkEvent =
  | Event
  | { type: "invite"; role: Role; side: Side | undefined; link: string }
  | { type: "transform_bypassed"; bypass: Bypass };

/** Media counters (tests, diagnostics): the gate's for the current link (a new link, after a resume, counts afresh), and frames opened per publisher. */
export interface MediaCounters {
  sealed: Record<string, number>;
  dropSend: Record<string, number>;
  opened: Record<string, number>;
  /** Received frames that waited for a publisher or key (so far), and those waiting now. */
  held: number;
  holding: number;
  expired: number;
  dropReceive: number;
  openedFrom: Record<string, number>;
  /** Milliseconds spent sealing and opening frames, and how many seal and open calls. */
  cryptoMs: number;
  cryptoCalls: number;
}

/** A document could not be shared or opened: a stable code and words for the person. */
export class DocumentError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "DocumentError";
  }
}

function toHexString(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function fromHexString(h: string): Uint8Array {
  return Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
}

/** The stable code of an HTTP error answer (`{"code": ...}`), or the status. */
async function errorCode(r: Response): Promise<string> {
  try {
    const j = (await r.json()) as { code?: unknown };
    return typeof j.code === "string" ? j.code : `http_${String(r.status)}`;
  } catch {
    return `http_${String(r.status)}`;
  }
}

function b64url(b: Uint8Array): string {
  let s = "";
  for (const x of b) {
    s += String.fromCharCode(x);
  }
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class ConferSession {
  readonly #core: Core;
  readonly #signal: Signal;
  readonly #opts: JoinOptions;
  readonly #token: string;
  readonly #start = performance.now();
  readonly #gate: Gate;
  readonly #openedFrom = new Map<string, number>();
  #cryptoMs = 0;
  #cryptoCalls = 0;
  #busy: Promise<void> = Promise.resolve();
  #listeners = new Set<(v: View) => void>();
  #eventListeners = new Set<(e: SdkEvent) => void>();
  #iceServers: IceServer[] = [];
  #requested: { role: Role; side: Side | undefined; resolve: (link: string) => void; reject: (e: Error) => void }[] = [];
  #alarms: string[] = [];
  #phase: Phase = "connecting";
  #ended: string | undefined;
  #timers: ReturnType<typeof setInterval>[] = [];
  // Media: the current link to the SFU (media/link.ts), made anew after each resume; the slots
  // of the view (the current link's, or the old link's with nobody in them while the next is
  // made); the local tracks each sender should carry, whatever the link.
  #path: TransformPath | undefined;
  #link: MediaLink | undefined;
  /** Links begun so far: a link whose number is not the latest is closed, not used. */
  #linksBegun = 0;
  #building = false;
  #offerRetry: ReturnType<typeof setTimeout> | undefined;
  /** The latest `media_slots` of the current link (mid -> publisher). */
  readonly #slotMap = new Map<string, ParticipantId>();
  #slots: RemoteSlot[] = [];
  readonly #tracks = new Map<SenderId, MediaStreamTrack>();
  #localStream: MediaStream | undefined;
  #mediaStarted = false;
  readonly #keyframeAsked = new Map<string, number>();
  #session: SessionView | undefined;
  #resumeToken: string | undefined;
  /** Documents: what the page shows of each, and the tickets asked for (by doc id and op). */
  #docs = new Map<string, DocumentItem>();
  #notes = new Map<string, { docId: string; savedAt: number; size: number }>();
  #tickets: { docId: string; op: "up" | "down"; resolve: (t: { token: string; chunks: number }) => void; reject: (e: Error) => void }[] = [];
  #locked = false;
  #chat: ChatLine[] = [];

  private constructor(opts: JoinOptions) {
    this.#opts = opts;
    const invite = parseInvite(opts.invite);
    this.#token = invite.token;
    const publish = opts.publish ?? { audio: true, video: true };
    const cfg = CoreConfig.create(agreementHash(opts.agreement));
    cfg.invite = { token: invite.token, psk: invite.psk, mediatorIk: invite.mediatorIk };
    cfg.displayName = opts.displayName;
    cfg.mediaReceive = true;
    // The screen is keyed whether or not it is shared yet: sharing starts without a rekey.
    cfg.mediaStreams = [
      ...(publish.audio ? [STREAM_AUDIO] : []),
      ...(publish.video ? [STREAM_CAMERA] : []),
      STREAM_SCREEN,
    ];
    const rng = { fill: (b: Uint8Array) => void crypto.getRandomValues(b as Uint8Array<ArrayBuffer>) };
    this.#core = new Core(rng, cfg);
    this.#gate = new Gate(
      {
        seal: (stream, data) => this.#timed(() => this.#seal(stream, data)),
        open: (publisher, stream, data) => this.#timed(() => this.#open(publisher, stream, data)),
        expired: () => {
          this.#core.mediaFrameExpired();
        },
        lost: (publisher, stream) => {
          this.#keyframeAfterLoss(publisher, stream);
        },
      },
      () => this.#now(),
    );
    this.#signal = new Signal(
      opts.wsUrl,
      (u) => new WebSocket(u) as unknown as SocketLike,
      {
        setInterval: (f, ms) => setInterval(f, ms),
        clearInterval: (h) => {
          clearInterval(h as ReturnType<typeof setInterval>);
        },
        setTimeout: (f, ms) => setTimeout(f, ms),
      },
      () => this.#now(),
    );
  }

  /** Connects with the invite and runs until the session ends for me. */
  static join(opts: JoinOptions): ConferSession {
    const s = new ConferSession(opts);
    s.#signal.connect(s.#token);
    s.#timers.push(
      setInterval(() => {
        s.#run(() => s.#core.tick(s.#now()));
      }, TICK_MS),
      setInterval(() => {
        void s.#watch();
      }, WATCHDOG_MS),
    );
    void s.#loop();
    return s;
  }

  /** Calls `f` with every new view (and once now). Returns the unsubscribe function. */
  subscribe(f: (v: View) => void): () => void {
    this.#listeners.add(f);
    f(this.view());
    return () => this.#listeners.delete(f);
  }

  /** Calls `f` with every event. */
  onEvent(f: (e: SdkEvent) => void): () => void {
    this.#eventListeners.add(f);
    return () => this.#eventListeners.delete(f);
  }

  view(): View {
    const core = this.#core;
    const secured = core.secured();
    const me = core.participantId();
    const names = new Map(core.names());
    const present =
      secured === undefined
        ? []
        : core.rosterPresent(secured).map((p) => ({ participantId: p, name: names.get(p), me: p === me }));
    return {
      phase: this.#phase,
      role: core.role(),
      participantId: me,
      channel: core.myChannel?.id,
      secured,
      sessionCode: core.sessionCode(),
      present,
      slots: this.#slots.map((s, i) => {
        // No current link (the next is being made): nobody in the old slots, nothing live.
        const id = this.#link?.slots[i]?.id ?? "";
        const at = this.#gate.lastOpenedAt(id);
        const openedFrom = this.#gate.lastPublisher(id) as ParticipantId | undefined;
        return { ...s, source: sourceName(this.#gate.lastStream(id)), openedFrom, live: at !== undefined && this.#now() - at < LIVE_MS };
      }),
      session: this.#session,
      names: Object.fromEntries(names),
      chat: this.#chat.filter((c) => c.channel === secured),
      documents: this.#documents(secured),
      notes: [...this.#notes.values()],
      locked: this.#locked,
      keysDeleted: core.stats().keysDeleted,
      myFingerprint: ((k) => (k === undefined ? undefined : fingerprint(k)))(core.identity()?.ikPub()),
      arrivals: this.#arrivals(),
      autoAdmit: core.cfg.autoAdmit,
      sharingScreen: this.#tracks.get("screen")?.readyState === "live",
      alarms: [...this.#alarms],
      transformPath: this.#path,
      ended: this.#ended,
      rejoining: core.rejoined && secured === undefined && this.#ended === undefined,
      signsRosters: core.isManager(),
    };
  }

  /**
   * Parties, counsel and observers: the link that resumes this participant after a page
   * reload (the newest resume token, and the mediator's public key the invite pinned), or
   * `undefined` (managers: participants pin a mediator's key, so its page cannot resume; and
   * after the end). It holds no key: a resumed page makes new keys, and the mediator lets them
   * in after comparing their fingerprint.
   */
  resumeLink(): string | undefined {
    const role = this.#core.role();
    if (this.#resumeToken === undefined || role === undefined || Role.isManager(role) || this.#ended !== undefined) {
      return undefined;
    }
    const m = this.#core.cfg.invite?.mediatorIk;
    return `#t=${this.#resumeToken}${m === undefined ? "" : `&m=${b64url(m)}`}`;
  }

  /** Sends an encrypted chat message to the room I am secured in. */
  sendChat(text: string): Promise<void> {
    return this.#call(async () => {
      await this.#core.sendChat(text);
      const me = this.#core.participantId();
      const ch = this.#core.secured();
      if (me !== undefined && ch !== undefined) {
        this.#keepChat({ from: me, channel: ch, text, mine: true });
      }
    });
  }

  #keepChat(c: ChatLine): void {
    this.#chat.push(c);
    if (this.#chat.length > CHAT_KEPT) {
      this.#chat.shift();
    }
  }

  #arrivals(): Arrival[] {
    const core = this.#core;
    if (core.role() !== "mediator" || this.#session === undefined) {
      return [];
    }
    const ready = new Set(core.ready());
    const held = new Set(core.held());
    const waiting = this.#session.waiting.map((w) => {
      const key = core.announcedKey(w.participant_id);
      return {
        participantId: w.participant_id,
        role: w.role,
        side: w.side,
        rekeyed: false,
        channel: undefined,
        consented: w.consented,
        connected: w.connected,
        ready: ready.has(w.participant_id),
        fingerprint: key === undefined ? undefined : fingerprint(key),
      };
    });
    const back = this.#session.channels.flatMap((c) =>
      c.members
        .filter((m) => core.rekeyed(m.participant_id))
        .map((m) => {
          const key = core.announcedKey(m.participant_id);
          return {
            participantId: m.participant_id,
            role: m.role,
            side: m.side,
            rekeyed: true,
            channel: c.id,
            consented: held.has(m.participant_id),
            connected: m.connected,
            ready: held.has(m.participant_id),
            fingerprint: key === undefined ? undefined : fingerprint(key),
          };
        }),
    );
    return [...waiting, ...back];
  }

  /** Mediators: let arrivals in as soon as they are ready (on), or one by one with `admit` (off). */
  setAutoAdmit(on: boolean): Promise<void> {
    return this.#call(() => {
      this.#core.cfg.autoAdmit = on;
      if (on) {
        for (const p of this.#core.ready()) {
          this.#core.admit(p);
        }
      }
    });
  }

  /**
   * Mediators: lets one ready arrival in; false if it is not ready. For someone back with new
   * keys (`Arrival.rekeyed`), a person's decision after comparing the new fingerprint: its
   * rooms are re-signed with the new keys.
   */
  admit(p: ParticipantId): Promise<boolean> {
    const back = this.#arrivals().find((a) => a.participantId === p && a.rekeyed && a.ready);
    if (back !== undefined) {
      return this.#call(() => this.#core.admitHeld(p, back.role, back.side));
    }
    return this.#call(() => this.#core.admit(p));
  }

  /** Mediators: an invite link bound to `role` and `side` (the invite secret is made here). */
  createInvite(role: Role, side: Side | undefined): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#requested.push({ role, side, resolve, reject });
      this.#signal.send({ type: "create_invite", role, side, ttl_secs: undefined });
    });
  }

  /** Mediators (and delegated co-mediators): a command the core signs rosters for. */
  command(m: ClientMessage): Promise<void> {
    return this.#call(() => this.#core.command(m));
  }

  /** Closes the connection without leaving (a page that gives up, e.g. to join again). */
  close(): void {
    this.#signal.close();
    this.#end(this.#ended ?? "closed");
  }

  /** Leaves (parties) or ends the session (mediators). */
  async leave(): Promise<void> {
    await this.#call(async () => {
      const bye: ClientMessage = this.#core.role() === "mediator" ? { type: "end" } : await this.#core.leave();
      this.#signal.send(bye);
    });
  }

  /**
   * Shares a file into the room I am secured in: sealed here under a fresh key that only that
   * room's present members get (e2ee §8.7), then uploaded in chunks; `documents` shows the
   * progress. Managers may carry a document into another room (`into`): re-keyed for it.
   */
  async shareDocument(name: string, mediaType: string, bytes: Uint8Array, into?: ChannelId): Promise<string> {
    const type = /^[\x21-\x7e]{0,127}$/.test(mediaType) ? mediaType : "application/octet-stream";
    const sealed = await this.#call(() => this.#core.shareDocument(into, name, type, bytes));
    const id = toHexString(sealed.docId);
    // Listed here while it uploads; the others are told of it (its key) once it is all there.
    const me = this.#core.participantId();
    const item: DocumentItem | undefined =
      me === undefined
        ? undefined
        : {
            docId: id,
            name,
            mediaType: type,
            size: bytes.length,
            from: me,
            room: into ?? this.#core.secured() ?? ("joint" as ChannelId),
            mine: true,
            state: "uploading",
            progress: 0,
            acknowledged: false,
            acknowledgedBy: [],
          };
    if (item !== undefined) {
      this.#docs.set(id, item);
      this.#changed();
    }
    try {
      await this.#upload(id, bytes.length, sealed.chunks, (p) => {
        if (item !== undefined) {
          item.progress = p;
          this.#changed();
        }
      });
      await this.#call(() => this.#core.publishDocument(sealed.docId));
      if (item !== undefined) {
        item.state = "ready";
      }
      return id;
    } catch (e) {
      if (item !== undefined) {
        item.state = "failed";
      }
      throw e;
    } finally {
      this.#changed();
    }
  }

  /**
   * Downloads a document's chunks and opens them here: the file's bytes, or a `DocumentError`
   * (`not_ready` while its sharer is still uploading it).
   */
  async openDocument(docId: string): Promise<Uint8Array> {
    if (!this.#docs.has(docId)) {
      throw new DocumentError("not_found", "There is no such document here.");
    }
    return this.#fetchDocument(docId);
  }

  async #fetchDocument(docId: string): Promise<Uint8Array> {
    const t = await this.#ticket(docId, "down", { type: "doc_download", doc_id: DocId.create(docId) });
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < t.chunks; i++) {
      const r = await fetch(`${this.#httpBase()}/docs/${docId}/${String(i)}`, { headers: { authorization: `Bearer ${t.token}` } });
      if (r.status === 404) {
        throw new DocumentError("not_ready", "This file is still being uploaded. Try again in a moment.");
      }
      if (!r.ok) {
        throw new DocumentError(await errorCode(r), "The file could not be downloaded.");
      }
      chunks.push(new Uint8Array(await r.arrayBuffer()));
    }
    try {
      return this.#core.openDocument(fromHexString(docId), chunks);
    } catch {
      throw new DocumentError("does_not_open", "This file does not open with the key you were given: it was changed or is incomplete.");
    }
  }

  /**
   * Mediators: saves my notes as a new version, sealed under a key only this page holds (a
   * document whose key goes to nobody) and stored encrypted on the server until the session
   * ends. Resolves to the version's id.
   */
  async saveNotes(text: string): Promise<string> {
    const bytes = new TextEncoder().encode(text);
    const savedAt = Date.now();
    const sealed = await this.#call(() => this.#core.shareDocument(undefined, "notes.txt", "text/plain", bytes));
    const id = toHexString(sealed.docId);
    this.#notes.set(id, { docId: id, savedAt, size: bytes.length });
    try {
      await this.#upload(id, bytes.length, sealed.chunks, () => undefined);
      await this.#call(() => {
        this.#core.keepDocumentPrivate(sealed.docId);
      });
      return id;
    } catch (e) {
      this.#notes.delete(id);
      throw e;
    } finally {
      bytes.fill(0);
      this.#changed();
    }
  }

  /** Mediators: one saved version of my notes, downloaded and decrypted here. */
  async openNotes(docId: string): Promise<string> {
    return new TextDecoder().decode(await this.#fetchDocument(docId));
  }

  async #upload(id: string, size: number, chunks: Uint8Array[], progress: (p: number) => void): Promise<void> {
    const t = await this.#ticket(id, "up", { type: "doc_upload", doc_id: DocId.create(id), size: BigInt(size), chunks: chunks.length });
    for (const [i, chunk] of chunks.entries()) {
      const r = await fetch(`${this.#httpBase()}/docs/${id}/${String(i)}`, {
        method: "PUT",
        headers: { authorization: `Bearer ${t.token}`, "content-type": "application/octet-stream" },
        body: chunk as Uint8Array<ArrayBuffer>,
      });
      if (!r.ok) {
        throw new DocumentError(await errorCode(r), "The file could not be uploaded.");
      }
      progress((i + 1) / chunks.length);
    }
  }

  /**
   * Acknowledges the version of a document I hold (a settlement draft): my identity key signs
   * its SHA-256 and the mediator's page verifies it.
   */
  async acknowledgeDocument(docId: string): Promise<void> {
    const sha = this.#core.documents().find((d) => toHexString(d.docId) === docId)?.sha256;
    await this.#call(() => this.#core.acknowledgeDocument(fromHexString(docId)));
    // And a content-free row in the server's audit log: who acknowledged which version (its
    // hash), never the document.
    if (sha !== undefined) {
      this.#signal.send({ type: "doc_ack", sha256: DocHash.create(toHexString(sha)) });
    }
    const item = this.#docs.get(docId);
    if (item !== undefined) {
      item.acknowledged = true;
    }
    this.#changed();
  }

  #documents(secured: ChannelId | undefined): DocumentItem[] {
    const core = this.#core;
    const acks = core.role() === "mediator" ? core.documentAcks() : [];
    return [...this.#docs.values()]
      .filter((d) => d.room === secured || core.isManager())
      .map((d) => ({ ...d, acknowledgedBy: acks.filter(([id]) => toHexString(id) === d.docId).map(([, p]) => p) }));
  }

  #ticket(docId: string, op: "up" | "down", m: ClientMessage): Promise<{ token: string; chunks: number }> {
    return new Promise((resolve, reject) => {
      this.#tickets.push({ docId, op, resolve, reject });
      this.#signal.send(m);
    });
  }

  #httpBase(): string {
    return this.#opts.wsUrl.replace(/^ws/, "http").replace(/\/ws$/, "");
  }

  /** The gate's counters, and frames opened per publisher. */
  mediaCounters(): MediaCounters {
    const c: MediaCounters = {
      sealed: {},
      dropSend: {},
      opened: {},
      held: 0,
      holding: this.#gate.held(),
      expired: 0,
      dropReceive: 0,
      openedFrom: Object.fromEntries(this.#openedFrom),
      cryptoMs: this.#cryptoMs,
      cryptoCalls: this.#cryptoCalls,
    };
    // Per link: a new link (after a resume) counts afresh.
    for (const s of this.#link?.watchedSenders ?? []) {
      c.sealed[s.id] = s.counters.sealed;
      c.dropSend[s.id] = s.counters.dropped;
    }
    for (const r of this.#link?.watchedReceivers ?? []) {
      c.opened[r.id] = r.counters.opened;
      c.held += r.counters.held;
      c.expired += r.counters.expired;
      c.dropReceive += r.counters.dropped;
    }
    return c;
  }

  /** The camera sender's track: `live`, `ended`, or `none` (taken off, e.g. by the watchdog). */
  cameraTrackState(): string {
    return this.#link?.track("camera")?.readyState ?? "none";
  }

  /**
   * Test builds only (`undefined` in production builds, where the code is not even built in):
   * `dropReceiveKeysOf` forgets every receive key of a publisher (as a client that never got
   * them would be); its frames keep arriving and must open to nothing.
   */
  readonly testHooks: { dropReceiveKeysOf(publisher: ParticipantId): void; inbound(): Promise<unknown[]> } | undefined = __CONFER_TEST_BUILD__
    ? {
        inbound: async (): Promise<unknown[]> => {
          const out: unknown[] = [];
          for (const w of this.#link?.watchedReceivers ?? []) {
            (await w.receiver.getStats()).forEach((r: Record<string, unknown>) => {
              if (r["type"] === "inbound-rtp" && r["kind"] === "video") {
                out.push({ slot: w.id, mid: r["mid"], ssrc: r["ssrc"], recv: r["framesReceived"], dec: r["framesDecoded"], key: r["keyFramesDecoded"], drop: r["framesDropped"], pli: r["pliCount"], w: r["frameWidth"] });
              }
            });
          }
          return out;
        },
        dropReceiveKeysOf: (publisher: ParticipantId): void => {
          const keys = this.#core.keys.openers;
          for (const k of [...keys.keys()]) {
            if (k.includes(publisher)) {
              keys.delete(k);
            }
          }
          this.#core.cfg.mediaReceive = false;
        },
      }
    : undefined;

  // The session ended (checked again after each await: it can end meanwhile).
  #over(): boolean {
    return this.#phase === "ended";
  }

  #now(): number {
    return performance.now() - this.#start;
  }

  #emit(e: SdkEvent): void {
    for (const f of this.#eventListeners) {
      f(e);
    }
  }

  #changed(): void {
    const v = this.view();
    for (const f of this.#listeners) {
      f(v);
    }
  }

  // One core call at a time, in order; what it produced is sent and reported after it.
  #run(f: () => Promise<void> | void): void {
    void this.#call(f).catch(() => undefined);
  }

  #call<T>(f: () => Promise<T> | T): Promise<T> {
    const p = this.#busy.then(async () => {
      try {
        return await f();
      } finally {
        this.#flush();
      }
    });
    this.#busy = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  #flush(): void {
    const core = this.#core;
    for (let m = core.pollSend(); m !== undefined; m = core.pollSend()) {
      this.#signal.send(m);
    }
    for (let e = core.pollEvent(); e !== undefined; e = core.pollEvent()) {
      switch (e.type) {
        case "alarm": {
          const code = alarmCode(e.alarm);
          if (!this.#alarms.includes(code)) {
            this.#alarms.push(code);
          }
          break;
        }
        case "secured":
          this.#phase = "secured";
          void this.#startMedia().catch(() => {
            this.#raise("media_unsupported");
          });
          break;
        case "ended":
          this.#end("ended");
          break;
        case "welcome":
          this.#phase = e.channel === undefined ? "waiting" : "securing";
          break;
        case "chat":
          this.#keepChat({ from: e.from, channel: e.channel, text: e.text, mine: false });
          break;
        case "server_error":
          // A locked session refuses newcomers; the invite is not spent: join again later.
          if (e.code === "session_locked" && this.#core.participantId() === undefined) {
            this.#ended = "locked";
            this.#signal.close();
          }
          break;
        case "document": {
          const id = toHexString(e.doc.docId);
          if (!this.#docs.has(id) && !this.#notes.has(id)) {
            const mine = e.doc.from === core.participantId();
            this.#docs.set(id, {
              docId: id,
              name: e.doc.name,
              mediaType: e.doc.mediaType,
              size: Number(e.doc.size),
              from: e.doc.from,
              room: e.doc.room,
              mine,
              state: mine ? "uploading" : "ready",
              progress: 0,
              acknowledged: false,
              acknowledgedBy: [],
            });
          }
          break;
        }
        case "session_code":
        case "name":
        case "document_acknowledged":
          break;
      }
      this.#emit(e);
    }
    if (this.#phase === "secured" && core.secured() === undefined) {
      this.#phase = "securing";
    }
    this.#gate.retry();
    // Rosters, names and codes change without an event of their own: the view is re-read
    // after every core call (a tick at least every TICK_MS).
    this.#changed();
  }

  async #loop(): Promise<void> {
    for (;;) {
      const ev = await this.#signal.next();
      if (ev.kind === "closed") {
        this.#end(this.#ended ?? `closed ${String(ev.code)}`);
        return;
      }
      if (ev.kind !== "message") {
        continue;
      }
      this.#onServer(ev.message);
    }
  }

  #onServer(msg: ServerMessage): void {
    switch (msg.type) {
      case "invite": {
        const want = this.#requested.shift();
        if (want?.role !== msg.role || want.side !== msg.side) {
          // Not what was asked for (the link would be bound to another role): no link.
          want?.reject(new Error("the server answered with another invite"));
          return;
        }
        const psk = this.#core.issueInvite(want.role, want.side);
        const ik = this.#core.identity()?.ikPub();
        const base = this.#opts.linkBase ?? this.#opts.wsUrl.replace(/^ws/, "http").replace(/\/ws$/, "");
        let link = `${base}/join#t=${msg.token}&k=${b64url(psk.expose())}`;
        if (ik !== undefined) {
          link += `&m=${b64url(ik)}`;
        }
        want.resolve(link);
        this.#emit({ type: "invite", role: want.role, side: want.side, link });
        return;
      }
      case "welcome":
        this.#iceServers = msg.ice_servers;
        this.#locked = msg.locked;
        this.#resumeToken = msg.resume_token;
        if (msg.resumed) {
          // The session may run on another node now (cluster mode), whose SFU has its own
          // address and knows nothing of my peer connection; on the same node a new offer
          // replaces the old peer. Either way: a new link, the same tracks.
          this.#rebuildMedia();
        }
        break;
      case "media_answer":
        this.#onAnswer(msg.sdp);
        return;
      case "media_slots": {
        this.#slotMap.clear();
        for (const s of msg.slots) {
          if (s.participant_id !== undefined) {
            this.#slotMap.set(s.mid, s.participant_id);
          }
        }
        if (this.#link !== undefined) {
          for (const slot of this.#slots) {
            slot.publisher = this.#slotMap.get(slot.mid);
          }
        }
        this.#gate.setSlots(this.#slotMap);
        this.#changed();
        return;
      }
      case "session_ended":
        this.#ended = "ended";
        break;
      case "kicked":
        this.#ended = "removed";
        break;
      case "session":
        this.#session = msg.session;
        this.#locked = msg.session.locked;
        break;
      case "lock_changed":
        this.#locked = msg.locked;
        break;
      case "error":
        if (msg.in_reply_to === "media_offer" && msg.code === "rate_limited") {
          this.#onOfferRefused();
        }
        if (msg.in_reply_to === "create_invite") {
          this.#requested.shift()?.reject(new Error(msg.message));
        }
        if (msg.in_reply_to === "doc_upload" || msg.in_reply_to === "doc_download") {
          const op = msg.in_reply_to === "doc_upload" ? "up" : "down";
          const i = this.#tickets.findIndex((t) => t.op === op);
          if (i >= 0) {
            this.#tickets.splice(i, 1)[0]?.reject(new DocumentError(msg.code, msg.message));
          }
        }
        break;
      case "doc_ticket": {
        const i = this.#tickets.findIndex((t) => t.docId === msg.doc_id && t.op === msg.op);
        if (i >= 0) {
          this.#tickets.splice(i, 1)[0]?.resolve({ token: msg.token, chunks: msg.chunks });
        }
        return;
      }
      case "consent_recorded":
      case "channel":
      case "participant_left":
      case "relayed":
      case "draining":
      case "pong":
        break;
    }
    this.#run(() => this.#core.handle(msg, this.#now()));
  }

  // Time spent sealing and opening frames (the benchmark's "CPU per frame").
  #timed<T>(f: () => T): T {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      this.#cryptoMs += performance.now() - t0;
      this.#cryptoCalls += 1;
    }
  }

  #seal(stream: number, data: Uint8Array): Uint8Array | undefined {
    try {
      return this.#core.sealMedia(stream, data);
    } catch {
      return undefined; // not secured (yet, or any more): dropped, never sent in clear
    }
  }

  // A dropped video frame leaves the decoder without a reference: ask the publisher for a key
  // frame (the SFU turns it into a PLI), at most once a second per publisher.
  #keyframeAfterLoss(publisher: string | undefined, stream: number): void {
    if (publisher === undefined || stream === STREAM_AUDIO) {
      return;
    }
    const now = this.#now();
    const last = this.#keyframeAsked.get(publisher);
    if (last !== undefined && now - last < 1_000) {
      return;
    }
    this.#keyframeAsked.set(publisher, now);
    this.#signal.send({ type: "keyframe_request", publisher: publisher as ParticipantId });
  }

  // A video slot carries a publisher's camera or screen: the frame's generation says which
  // (every client numbers its generations from one counter across streams), so a camera key
  // that does not hold it means "not the camera", found without decrypting; then the screen.
  #open(publisher: string, stream: number, data: Uint8Array): Opened {
    const first = this.#openStream(publisher, stream, data);
    if (first.kind !== "ok" && stream === STREAM_CAMERA) {
      const screen = this.#openStream(publisher, STREAM_SCREEN, data);
      if (screen.kind !== "no_key") {
        return screen;
      }
    }
    return first;
  }

  #openStream(publisher: string, stream: number, data: Uint8Array): Opened {
    try {
      const out = this.#core.openMedia(publisher as ParticipantId, stream, data);
      this.#openedFrom.set(publisher, (this.#openedFrom.get(publisher) ?? 0) + 1);
      return { kind: "ok", data: out, stream };
    } catch (e) {
      return e instanceof MediaRejected && e.kind === "no_key" ? { kind: "no_key" } : { kind: "drop" };
    }
  }

  /** Shares my screen (call from a click: browsers ask for a user gesture). */
  async shareScreen(): Promise<void> {
    if (this.#link === undefined && !this.#building) {
      throw new Error("media is not connected yet");
    }
    const display = await navigator.mediaDevices.getDisplayMedia({ video: { width: 640, height: 360, frameRate: 5 }, audio: false });
    const track = display.getVideoTracks()[0];
    if (track === undefined || this.#over()) {
      for (const t of display.getTracks()) {
        t.stop();
      }
      return;
    }
    track.addEventListener("ended", () => {
      void this.stopScreen();
    });
    this.#tracks.get("screen")?.stop();
    this.#tracks.set("screen", track);
    // A link being made carries it once its transforms are in place.
    await this.#link?.carry(this.#tracks);
    this.#changed();
  }

  /** Stops sharing my screen. */
  async stopScreen(): Promise<void> {
    const track = this.#tracks.get("screen");
    if (track === undefined) {
      return;
    }
    this.#tracks.delete("screen");
    track.stop();
    await this.#link?.carry(this.#tracks);
    this.#changed();
  }

  // Media, once my first room is secured: the transform path, a link to the SFU (media/link.ts:
  // transceivers and transforms first, then the offer), then the microphone and camera, which
  // go only to senders whose transform is in place (WEB.md rules 1-3).
  async #startMedia(): Promise<void> {
    if (this.#mediaStarted) {
      return;
    }
    this.#mediaStarted = true;
    const paths = transformPaths();
    const path = this.#opts.transformPath ?? paths[0];
    if (path === undefined || !paths.includes(path)) {
      this.#raise("media_unsupported");
      return;
    }
    this.#path = path;
    if (await this.#buildLink()) {
      await this.#acquireLocal();
    }
  }

  // My connection resumed, or the server's replies to my offer did not add up: the current link
  // is closed and a new one made, for the SFU of the node that runs my session now, with the
  // same transforms rules and the same tracks (no new getUserMedia, no new permission prompt).
  // Until it is made the view lists the old slots with nobody in them: the page hides their
  // tiles, whose tracks have ended, and shows the new slots' tracks once frames open there.
  #rebuildMedia(): void {
    if (this.#path === undefined || this.#over()) {
      return; // media never started: it starts once I am secured
    }
    this.#link?.close();
    this.#link = undefined;
    clearTimeout(this.#offerRetry);
    this.#offerRetry = undefined;
    // The new SFU assigns slots afresh: until it says, no slot names a publisher.
    this.#slotMap.clear();
    this.#gate.setSlots(this.#slotMap);
    this.#slots = this.#slots.map((s) => ({ ...s, publisher: undefined }));
    this.#changed();
    void this.#buildLink().catch(() => {
      this.#raise("media_unsupported");
    });
  }

  // Makes a link and offers it. False if it could not be made (the browser lacks a transform);
  // true once offered, or when a newer link superseded it meanwhile (that one goes on).
  async #buildLink(): Promise<boolean> {
    const path = this.#path;
    if (path === undefined) {
      return false;
    }
    const n = ++this.#linksBegun;
    this.#building = true;
    const link = await MediaLink.open({
      path,
      iceServers: this.#iceServers.map((s) => ({ urls: s.urls, username: s.username, credential: s.credential })),
      gate: this.#gate,
      ...(__CONFER_TEST_BUILD__ ? { skipSenderTransform: this.#opts.test?.skipSenderTransform } : {}),
    });
    if (n !== this.#linksBegun || this.#over()) {
      link?.close();
      return !this.#over();
    }
    this.#building = false;
    if (link === undefined) {
      this.#raise("media_unsupported");
      return false;
    }
    this.#link = link;
    link.bind();
    this.#slots = link.slots.map((s) => ({ mid: s.mid, kind: s.kind, publisher: this.#slotMap.get(s.mid), track: s.track, blocked: false }));
    this.#signal.send({ type: "media_offer", sdp: link.offer });
    link.exchange.sent();
    this.#changed();
    await link.carry(this.#tracks);
    return true;
  }

  #onAnswer(sdp: string): void {
    const link = this.#link;
    if (link === undefined) {
      return; // a link is being made: not its answer (its offer has not gone out)
    }
    switch (link.exchange.answer()) {
      case "apply":
        void link.answer(sdp);
        return;
      case "ignore":
        return;
      case "rebuild":
        this.#rebuildMedia();
        return;
    }
  }

  // `rate_limited` in reply to `media_offer`: the offer was dropped unread; the same offer goes
  // again after the interval (media/offer.ts), so the page is not left without media.
  #onOfferRefused(): void {
    const link = this.#link;
    if (link === undefined) {
      return;
    }
    const v = link.exchange.refused();
    switch (v.kind) {
      case "ignore":
        return;
      case "rebuild":
        this.#rebuildMedia();
        return;
      case "retry":
        clearTimeout(this.#offerRetry);
        this.#offerRetry = setTimeout(() => {
          this.#offerRetry = undefined;
          if (link === this.#link && link.exchange.waiting() && !this.#over()) {
            this.#signal.send({ type: "media_offer", sdp: link.offer });
          }
        }, v.afterMs);
        return;
    }
  }

  // The microphone and camera, asked for once: every later link carries the same tracks.
  async #acquireLocal(): Promise<void> {
    const streams = this.#core.cfg.mediaStreams;
    const wantAudio = streams.includes(STREAM_AUDIO);
    const wantVideo = streams.includes(STREAM_CAMERA);
    if (!wantAudio && !wantVideo) {
      return;
    }
    let local: MediaStream;
    try {
      local = await navigator.mediaDevices.getUserMedia({
        audio: wantAudio && ((this.#opts.audioProcessing ?? true) ? true : { echoCancellation: false, noiseSuppression: false, autoGainControl: false }),
        video: wantVideo ? { width: 160, height: 120, frameRate: 10 } : false,
      });
    } catch {
      this.#raise("media_devices_refused");
      return;
    }
    if (this.#over()) {
      // The session ended while the browser asked for the devices: let them go at once.
      for (const t of local.getTracks()) {
        t.stop();
      }
      return;
    }
    this.#localStream = local;
    const audio = local.getAudioTracks()[0];
    const video = local.getVideoTracks()[0];
    if (audio !== undefined) {
      this.#tracks.set("microphone", audio);
    }
    if (video !== undefined) {
      this.#tracks.set("camera", video);
    }
    // The current link, if any (one being made carries them itself once offered).
    await this.#link?.carry(this.#tracks);
  }

  async #watch(): Promise<void> {
    const link = this.#link;
    if (link === undefined) {
      return;
    }
    let found: Bypass[];
    try {
      found = await link.watchdog.check(link.watchedSenders, link.watchedReceivers);
    } catch {
      return; // its peer connection closed during the check
    }
    if (link !== this.#link) {
      return; // evidence about a peer connection that is gone
    }
    // A decoder that opens frames but shows none missed its key frame: ask for another.
    for (const slotId of link.watchdog.stuck) {
      const i = link.slots.findIndex((s) => s.id === slotId);
      this.#keyframeAfterLoss(this.#slots[i]?.publisher, STREAM_CAMERA);
    }
    for (const b of found) {
      if (b.side === "send") {
        const id = SENDERS.find((s) => s.id === b.id)?.id;
        const track = id === undefined ? null : link.track(id);
        if (id === undefined || track === null) {
          continue;
        }
        // Stopped for good: no later link carries it either.
        track.stop();
        if (this.#tracks.get(id) === track) {
          this.#tracks.delete(id);
        }
        await link.takeOff(id);
      } else {
        const slot = this.#slots[link.slots.findIndex((s) => s.id === b.id)];
        if (slot === undefined || slot.blocked) {
          continue;
        }
        slot.blocked = true;
        slot.track.enabled = false;
      }
      this.#raise("transform_bypassed");
      this.#emit({ type: "transform_bypassed", bypass: b });
    }
  }

  #raise(code: string): void {
    if (!this.#alarms.includes(code)) {
      this.#alarms.push(code);
    }
    this.#changed();
  }

  #end(why: string): void {
    if (this.#phase === "ended") {
      return;
    }
    this.#phase = "ended";
    this.#ended ??= why; // the first reason stands (a kick is followed by the core's "ended")
    for (const t of this.#timers) {
      clearInterval(t);
    }
    clearTimeout(this.#offerRetry);
    this.#gate.clear();
    for (const t of [...(this.#localStream?.getTracks() ?? []), ...this.#tracks.values()]) {
      t.stop();
    }
    this.#link?.close();
    this.#changed();
  }
}
