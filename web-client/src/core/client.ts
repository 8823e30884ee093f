// Twin of crates/client/src/core/mod.rs: the client's sans-IO core: signalling messages in,
// signalling messages and events out, confer/1 in between. The caller owns the socket, the
// clock and the RNG: nothing here touches a socket, a clock or a global RNG.
//
// One concern per file, each the twin of a file of the Rust core (crates/client/src/core):
// - client.ts (mod.rs): the `Core` state, its public surface, dispatch of server messages, the end;
// - admission.ts: arrivals, announcements, consent, bound invites, delegation;
// - chains.ts: roster chains per room, acceptance, successor links, what rosters mean for me;
// - manager.ts: what the mediator and co-mediators sign: placements, removals, breakouts;
// - keys.ts: pairwise messages, sender keys in and out, bounded key state, the ratchet;
// - chat.ts, media.ts, names.ts: what travels under the room keys, and display names;
// - alarms.ts, timers.ts: what a person must be shown, and the checks that wait.
//
// Rust spreads `impl Core` over those files; here each file exports a table of methods
// (`this: Core`) that this file puts on `Core.prototype`, and the interface merged with the
// class below declares them. The methods keep the Rust names in camelCase.
//
// Differences that come from the languages (the rules are the same, in the same order):
// - Time is an input: `now` is a number of milliseconds on any monotonic clock the caller
//   chooses (`performance.now()` in a browser); durations are `_MS` numbers. Rust's
//   `duration_since` saturates at zero, and so does `durationSince`.
// - Randomness is an input: the `Rng` of lib.ts.
// - pairwise.ts is asynchronous (@hpke runs on Web Crypto), so everything that may seal or
//   open a pairwise message returns a promise: `handle`, `tick`, `command`, `sendChat`,
//   `admitHeld`, `leave`. They run one at a time in the order they were called (an internal
//   queue), so no call ever sees another half done, as Rust's `&mut self` guarantees. Await
//   each one before reading `pollSend`/`pollEvent` or the getters.
// - `sealMedia` is synchronous; while a queued call is in flight it refuses (`NotSecured`):
//   a roster may have been accepted whose new keys are not out yet (fail closed).
// - A Rust `Result` is a thrown typed error (`NotSecured`, `ChatRefused`, `MediaRejected`);
//   an `Option` is `undefined`. u64 protocol fields (epochs, generations, seqs) are bigints.
// - Fields are public (other files of core/ use them, as Rust's `pub(super)`); read the
//   state through the methods. The three fields whose Rust name is also a method's carry a
//   leading underscore: `_identity`, `_stats`, `_secured`.
// - JavaScript cannot zeroize on drop: key material is wiped where Rust would drop it.

import { sha256 } from "@noble/hashes/sha2.js";

import type { Envelope } from "../proto/envelope.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import { envelopeFromData, envelopeToData } from "../proto/envelope.js"; // eslint-disable-line no-restricted-imports -- as above
import type { ChannelView, ClientMessage, RelayTarget, ServerMessage } from "../proto/message.js"; // eslint-disable-line no-restricted-imports -- as above
import { PROTOCOL_VERSION } from "../proto/message.js"; // eslint-disable-line no-restricted-imports -- as above
import { ChannelId, ParticipantId, Role } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import { admissionMethods } from "./admission.js";
import type { AdmissionMethods, Peer } from "./admission.js";
import { alarmsMethods } from "./alarms.js";
import type { Alarm, AlarmsMethods } from "./alarms.js";
import { chainsMethods } from "./chains.js";
import type { ChainsMethods } from "./chains.js";
import { chatMethods } from "./chat.js";
import type { ChatMethods } from "./chat.js";
import { FailureReason, KEEP_OLD_KEYS_MS, STALE_KEY_AFTER_MS, UNSIGNED_GRACE_MS } from "./codes.js";
import { fromHex, toHex, utf8Encode } from "./enc.js";
import { STREAM_AUDIO, STREAM_CAMERA, STREAM_SCREEN } from "./frame.js";
import type { Codec } from "./frame.js";
import { Identity } from "./identity.js";
import { KeyState, keysMethods, zeroizeOpener } from "./keys.js";
import type { KeysMethods } from "./keys.js";
import type { Id16, Rng } from "./lib.js";
import { ManagerState, intentIn, managerMethods } from "./manager.js";
import type { ManagerMethods } from "./manager.js";
import { mediaMethods } from "./media.js";
import type { MediaMethods } from "./media.js";
import { NameMsg } from "./messages.js";
import { docsMethods } from "./docs.js";
import type { DocInfo, DocsMethods, HeldDoc } from "./docs.js";
import { namesMethods } from "./names.js";
import type { NamesMethods } from "./names.js";
import { Sequences } from "./pairwise.js";
import type { Chain, SignedRoster } from "./roster.js";
import type { Secret32 } from "./secret.js";
import { timersMethods } from "./timers.js";
import type { TimersMethods } from "./timers.js";

export {
  HOLD_FOR_KEY_MS,
  KEEP_OLD_KEYS_MS,
  MAX_PEERS,
  RATCHET_EVERY_MS,
  STALE_KEY_AFTER_MS,
  UNSIGNED_GRACE_MS,
} from "./codes.js";
export { ATTEST_NOBODY_ELSE, ATTEST_NO_RECORDING } from "./messages.js";
export type { Alarm } from "./alarms.js";
export { alarmCode, alarmKind } from "./alarms.js";

/** What happened, for the application. */
export type Event =
  /** Joined (or resumed); `channel` is `undefined` in the waiting room. */
  | { type: "welcome"; participantId: ParticipantId; channel: ChannelId | undefined }
  /** My current channel has a signed roster listing me and my sender key is out: I may talk. */
  | { type: "secured"; channel: ChannelId }
  /** A chat message that decrypted. */
  | { type: "chat"; from: ParticipantId; channel: ChannelId; text: string }
  /** The session code changed (JOINT roster identities changed). */
  | { type: "session_code"; code: string }
  /**
   * A participant's display name, verified against its name commitment in a signed roster
   * (mediators: as the participant sent it, before they commit to it in a roster).
   */
  | { type: "name"; participantId: ParticipantId; name: string }
  /** A document whose key arrived (or that I shared): fetch its chunks and open it with `openDocument`. */
  | { type: "document"; doc: DocInfo }
  /** Mediators: a participant acknowledged one version of a document (its SHA-256), signed with its identity key. */
  | { type: "document_acknowledged"; participantId: ParticipantId; sha256: Uint8Array }
  /** An alarm. */
  | { type: "alarm"; alarm: Alarm }
  /** A server error frame. */
  | { type: "server_error"; code: string }
  /** The session ended (or I was removed); every key is deleted. */
  | { type: "ended" };

/** Counters for summaries and tests. */
export class Stats {
  /** Chat messages sealed and sent. */
  messagesSent = 0;
  /** Chat messages that decrypted. */
  messagesReceived = 0;
  /** Frames or pairwise messages that failed to open. */
  decryptFailures = 0;
  /** Alarm codes, in order. */
  alarms: string[] = [];
  /** Sender keys received and installed. */
  keysReceived = 0;
  /** True after the end: every key was deleted. */
  keysDeleted = false;
  /** Mediators: consent acknowledgments that did not verify (never admitted). */
  consentsRejected = 0;
  /** Mediators: consent acknowledgments that verified. */
  consentsVerified = 0;
  /** Mediators: verified acknowledgments without an invite secret, left for a person to admit. */
  consentsHeld = 0;
  /** Acknowledgments received for the sender keys I sent. */
  acksReceived = 0;
  /** Media frames sealed. */
  framesSealed = 0;
  /** Media frames that opened. */
  framesOpened = 0;
  /** Media frames that did not open (also counted in `decryptFailures`). */
  mediaDecryptFailures = 0;
  /** `decryptFailures` by reason (`chat_open`, `pairwise_replay`, `media`, ...). */
  failureReasons = new Map<FailureReason, number>();
  /** Display names received that matched the sender's roster commitment. */
  namesVerified = 0;
  /** Display names received that did not match the sender's roster commitment. */
  namesRejected = 0;
  /** Alarms beyond the distinct ones remembered (`MAX_ALARMS`): counted only. */
  alarmsDropped = 0;
  /**
   * Chat and media frames under a generation older than every key I hold of that sender for
   * that stream: sealed before I joined the room (a sender that had not seen the new roster
   * yet), or whose key I already deleted. Dropped unopened; not failures.
   */
  staleFrames = 0;
}

/** Why `tryOpenChat` did not open a frame. */
export class ChatRefused extends Error {
  constructor(
    /**
     * `no_key`: I hold no key of that sender for that channel at all; `does_not_open`: I hold
     * that sender's keys for that channel, and the frame does not open under them.
     */
    readonly kind: "no_key" | "does_not_open",
  ) {
    super(`chat refused: ${kind}`);
    this.name = "ChatRefused";
  }
}

/** Not in a secured channel yet ("securing channel"): nothing was sent. */
export class NotSecured extends Error {
  constructor() {
    super("not secured");
    this.name = "NotSecured";
  }
}

/** Why a media frame did not open. */
export class MediaRejected extends Error {
  constructor(
    /**
     * - `no_key`: I hold no key of that publisher for the generation the frame names. Media
     *   travels over UDP and keys over signalling, so a frame under a new generation can
     *   arrive before its key: hold it briefly and try again after the next server message.
     *   Not counted as a failure (see `mediaFrameExpired`).
     * - `invalid`: it does not open (malformed, a replay, a forgery): dropped and counted.
     * - `ended`: the session is over for me and every key is deleted: dropped, not counted.
     * - `stale`: sealed under a generation older than every key I hold of that publisher for
     *   that stream (from before I was in the room, or already deleted): counted apart.
     */
    readonly kind: "no_key" | "invalid" | "ended" | "stale",
  ) {
    super(`media rejected: ${kind}`);
    this.name = "MediaRejected";
  }
}

/** The codec of a media stream (confer/1 §8.2); `undefined` for stream 3 and above. */
export function mediaCodec(stream: number): Codec | undefined {
  switch (stream) {
    case STREAM_AUDIO:
      return "opus";
    case STREAM_CAMERA:
    case STREAM_SCREEN:
      return "vp8";
    default:
      return undefined;
  }
}

/**
 * What the core reads of an invite link (crates/client/src/link.rs, `Invite`; parsing links
 * is the shell's).
 */
export interface Invite {
  /** The signalling token. */
  token: string;
  /** The invite secret (HPKE PSK with the mediator), if the link has one. */
  psk: Secret32 | undefined;
  /** The mediator's identity key, pinned by the link. */
  mediatorIk: Uint8Array | undefined;
}

/** Client configuration. */
export class CoreConfig {
  /** SHA-256 of the agreement to mediate this client presents (mediator) or acknowledges. */
  agreementHash: Uint8Array;
  /** Invite secrets (psk, pinned mediator key), if the client joined through a link. */
  invite: Invite | undefined = undefined;
  /**
   * My display name, if I give one: sent only end to end (pairwise type 4), committed to in
   * rosters. At most `MAX_NAME_BYTES` of UTF-8; a longer one is not sent.
   */
  displayName: string | undefined = undefined;
  /** Mediators: admit every arrival whose consent verifies. */
  autoAdmit = true;
  /** How long a member of my channel may go unsigned before the alarm (ms). */
  unsignedGraceMs: number = UNSIGNED_GRACE_MS;
  /** How long after a roster change a member may take to send its new key (ms). */
  staleKeyAfterMs: number = STALE_KEY_AFTER_MS;
  /** How long old generations are kept for frames in flight (ms). */
  keepOldKeysMs: number = KEEP_OLD_KEYS_MS;
  /** The role I was invited as, if known: a welcome for another role is refused. */
  expectedRole: Role | undefined = undefined;
  /**
   * Mediators: also admit arrivals whose acknowledgment was not bound to an invite secret (a
   * bare token). The server can mint such tokens itself, so this is off by default: those
   * arrivals wait for a person to admit them. With it on, such an arrival's side is the one
   * the server reports (there is no invite to bind it).
   */
  admitWithoutInviteSecret = false;
  /**
   * The media streams I send (0 microphone, 1 camera, 2 screen): each gets its own sender key
   * in every channel I am present in. Stream 3 (chat) is always keyed.
   */
  mediaStreams: number[] = [];
  /** I receive media: ask a publisher for a keyframe when its new video key arrives. */
  mediaReceive = false;

  private constructor(agreementHash: Uint8Array) {
    this.agreementHash = agreementHash;
  }

  /** Rust: `CoreConfig::new`: defaults for this agreement. */
  static create(agreementHash: Uint8Array): CoreConfig {
    return new CoreConfig(agreementHash);
  }

  /** A copy the core owns (the invite secret copied too: the end wipes it). */
  clone(): CoreConfig {
    const c = new CoreConfig(this.agreementHash.slice());
    Object.assign(c, this);
    c.agreementHash = this.agreementHash.slice();
    c.mediaStreams = [...this.mediaStreams];
    if (this.invite !== undefined) {
      c.invite = {
        token: this.invite.token,
        psk: this.invite.psk?.clone(),
        mediatorIk: this.invite.mediatorIk?.slice(),
      };
    }
    return c;
  }
}

/** SHA-256 of an agreement text. */
export function agreementHash(text: string): Uint8Array {
  const b = utf8Encode(text);
  if (b === undefined) {
    throw new RangeError("an agreement is a Unicode string");
  }
  return sha256(b);
}

/** A participant id as confer/1 bytes: exactly 32 lowercase hex characters, so one participant has one spelling. */
export function id16(p: ParticipantId): Id16 | undefined {
  if (!/^[0-9a-f]{32}$/.test(p)) {
    return undefined;
  }
  return fromHex(p);
}

/** The participant id of confer/1 bytes. */
export function pidOf(id: Id16): ParticipantId | undefined {
  return ParticipantId.parse(toHex(id));
}

/** Rust's `Instant::duration_since` (saturating): milliseconds from `earlier` to `now`, at least 0. */
export function durationSince(now: number, earlier: number): number {
  return Math.max(0, now - earlier);
}

/** A map's entries in key order (Rust's `BTreeMap` iterates in order; ids are ASCII). */
export function sortedEntries<K extends string, V>(m: ReadonlyMap<K, V>): [K, V][] {
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A room's chains, as this client knows them: the current one and those it replaced. */
export class RoomChains {
  current: Id16 | undefined = undefined;
  /** Hex of the chains it replaced. */
  retired = new Set<string>();
  /** Mediators: the last hash of the room's previous chain, for the next chain's genesis. */
  link: Uint8Array | undefined = undefined;
  /**
   * Managers: the room's rosters, every chain in order (the newest `MAX_CHAIN_HISTORY`), each
   * with the delegation it was sent with: a newcomer to a chain is sent all of them, so it can
   * follow the room's links from whatever chain it holds (§7.6).
   */
  lineage: { sr: SignedRoster; del: Delegation | undefined }[] = [];
}

/** A co-mediator's identity key and the mediator's delegation of it (scope 1). */
export interface Delegation {
  ik: Uint8Array;
  sig: Uint8Array;
}

/** Who I am, once the first welcome was accepted. */
export interface Me {
  pid: ParticipantId;
  id: Id16;
  role: Role;
  session: Uint8Array;
}

/** One chain and what the client knows about it. */
export interface ChainState {
  chain: Chain;
  serverChannel: ChannelId;
  advancedAt: number;
  /**
   * Hashes (hex) of every roster of this chain I accepted or signed (at most
   * `MAX_CHAIN_HISTORY`): a manager resending them to a newcomer is no rollback.
   */
  seen: Set<string>;
}

/** The confer/1 client state machine. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- see `interface Core` below
export class Core {
  rng: Rng;
  cfg: CoreConfig;
  _identity: Identity | undefined;
  me: Me | undefined = undefined;
  /** The mediator: its participant id, identity key and session key. */
  mediator: { pid: ParticipantId; ik: Uint8Array; ek: Uint8Array } | undefined = undefined;
  consentSent = false;
  // Everyone.
  myChannel: ChannelView | undefined = undefined;
  /**
   * My first welcome placed me in a room: I resumed after losing my keys (§15.12), and wait for
   * the mediator to let my new keys in.
   */
  rejoined = false;
  /** Rooms whose rosters have listed me with my own keys. */
  listedRooms = new Set<ChannelId>();
  /** By channel id (hex). */
  chains = new Map<string, ChainState>();
  /** Per server room: its current chain and the chains it replaced. */
  rooms = new Map<ChannelId, RoomChains>();
  /** Display names received, before or after the roster that commits to them (by id hex). */
  nameClaims = new Map<string, NameMsg>();
  /** Names shown (verified), so each is announced once (by id hex). */
  namesShown = new Map<string, Uint8Array>();
  /** My name message (fresh salt), if I give a name. */
  myName: NameMsg | undefined;
  /** Whom I sent my name to (id hex). */
  named = new Set<string>();
  /**
   * Delegations of roster signing verified under the mediator's key: (co-mediator IK,
   * signature). Applied to every chain.
   */
  delegations: { ik: Uint8Array; sig: Uint8Array }[] = [];
  /** Co-mediators: the mediator's delegation of my own identity key, once received. */
  myDelegation: Uint8Array | undefined = undefined;
  pending: { from: ParticipantId; env: Envelope }[] = [];
  /**
   * Chat frames that came before the key they name (its sender saw a roster before I did):
   * (since, from, cid, frame), opened once the key is installed.
   */
  earlyChats: { since: number; from: ParticipantId; cid: Uint8Array; f: Uint8Array }[] = [];
  /** Documents whose key I hold, by id hex (at most `MAX_DOCS`). */
  docs = new Map<string, HeldDoc>();
  /** Documents I sealed whose key I have not sent yet (their chunks are being uploaded). */
  docsSealed = new Map<string, HeldDoc>();
  /** Mediators: verified acknowledgments of a version, by `who:sha256hex` (Rust: a set). */
  docAcks = new Map<string, { from: ParticipantId; sha256: Uint8Array }>();
  seqs = new Sequences();
  unsignedSince = new Map<ParticipantId, number>();
  /** Since when someone in my roster has been missing from the server's view of my room. */
  departedSince: number | undefined = undefined;
  /** Sending is stopped: the roster that should follow a departure did not come. */
  withheld = false;
  /** (code, key) pairs, as JSON. */
  alarmed = new Set<string>();
  _secured: ChannelId | undefined = undefined;
  code: string | undefined = undefined;
  now: number | undefined = undefined;
  out: ClientMessage[] = [];
  events: Event[] = [];
  _stats = new Stats();
  /** Managers (mediator, delegated co-mediators): what they place and sign. */
  manager = new ManagerState();
  /** Sender keys, mine and others', and their timers. */
  keys = new KeyState();
  /** TypeScript only: the calls that return promises run one at a time, in order. */
  queue: Promise<void> = Promise.resolve();
  /** TypeScript only: a queued call is in flight. */
  busy = false;

  /** A client that has not connected yet (the config is copied: the core owns its copy). */
  constructor(rng: Rng, cfg: CoreConfig) {
    this.rng = rng;
    this.cfg = cfg.clone();
    this._identity = Identity.generate(rng);
    this.myName = this.cfg.displayName === undefined ? undefined : NameMsg.create(this.cfg.displayName, rng);
  }

  /** TypeScript only: runs `f` after every call queued before it (Rust's `&mut self`). */
  serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue
      .then(() => {
        this.busy = true;
        return f();
      })
      .finally(() => {
        this.busy = false;
      });
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** The `hello` to send first. */
  hello(token: string): ClientMessage {
    return { type: "hello", version: PROTOCOL_VERSION, token };
  }

  /** My identity (to sign things in tests of the mediator's own misbehaviour). */
  identity(): Identity | undefined {
    return this._identity;
  }

  /** Counters. */
  stats(): Readonly<Stats> {
    return this._stats;
  }

  /** The current session code, once a JOINT roster is held. */
  sessionCode(): string | undefined {
    return this.code;
  }

  /** The channel I may talk in, if secured. */
  secured(): ChannelId | undefined {
    return this._secured;
  }

  /** My role, once a welcome was accepted. */
  role(): Role | undefined {
    return this.me?.role;
  }

  /** My participant id. */
  participantId(): ParticipantId | undefined {
    return this.me?.pid;
  }

  /** Next message to send to the server. */
  pollSend(): ClientMessage | undefined {
    return this.out.shift();
  }

  /** Next event. */
  pollEvent(): Event | undefined {
    return this.events.shift();
  }

  relay(to: RelayTarget, env: Envelope): void {
    this.out.push({ type: "relay", to, data: envelopeToData(env) });
  }

  // A message or frame that did not open, counted by why (for diagnostics; no content).
  failed(why: FailureReason): void {
    this._stats.decryptFailures += 1;
    this._stats.failureReasons.set(why, (this._stats.failureReasons.get(why) ?? 0) + 1);
  }

  /** Feeds one server message; `now` in milliseconds (see the top of this file). */
  handle(msg: ServerMessage, now: number): Promise<void> {
    return this.serial(async () => {
      await this.handleMessage(msg, now);
      this.retryEarlyChats(now);
    });
  }

  async handleMessage(msg: ServerMessage, now: number): Promise<void> {
    this.now = now;
    // After the end every key is gone; nothing the server says can revive the session.
    if (this._stats.keysDeleted) {
      return;
    }
    switch (msg.type) {
      case "welcome": {
        const id = id16(msg.participant_id);
        if (id === undefined) {
          return;
        }
        // Who I am is settled by the first welcome (and, if configured, by what I was invited
        // as): a later welcome may only resume the same participant.
        const expected: [ParticipantId, Role] | undefined =
          this.me !== undefined
            ? [this.me.pid, this.me.role]
            : this.cfg.expectedRole !== undefined
              ? [msg.participant_id, this.cfg.expectedRole]
              : undefined;
        if (expected !== undefined && (expected[0] !== msg.participant_id || expected[1] !== msg.role)) {
          this.alarm({ type: "identity_mismatch" }, "");
          return;
        }
        // A link that pins a mediator key was made for someone other than the mediator.
        if (msg.role === "mediator" && this.cfg.invite?.mediatorIk !== undefined) {
          this.alarm({ type: "identity_mismatch" }, "");
          return;
        }
        if (this.me !== undefined) {
          // After my own resume the mediator signs every room anew once everyone is back
          // (§15.13).
          if (msg.resumed && msg.role === "mediator") {
            this.manager.resignAfterResume = true;
          }
          // A resume: same participant, same keys. If I was moved while away, I left the old
          // room as surely as after a `channel` message.
          const old = this.myChannel?.id;
          const left = old !== undefined && msg.channel?.id !== old ? old : undefined;
          this.myChannel = msg.channel;
          if (left !== undefined) {
            this.leftChannel(left, now);
          }
          this.updateSecured();
          return;
        }
        this.me = {
          pid: msg.participant_id,
          id,
          role: msg.role,
          session: utf8Encode(msg.session_id) ?? new Uint8Array(0),
        };
        this.events.push({ type: "welcome", participantId: msg.participant_id, channel: msg.channel?.id });
        if (msg.role === "mediator") {
          this.manager.intents.set(msg.participant_id, intentIn(ChannelId.joint()));
          const [ik, ek] = this.myKeys();
          this.mediator = { pid: msg.participant_id, ik, ek };
          const ann = this.announcement();
          const peer: Peer = {
            ann,
            consentOk: true,
            held: false,
            side: 0,
            name: this.myName?.commit(),
            rekey: undefined,
          };
          this.manager.peers.set(this.mePid(), peer);
          if (this.myName !== undefined) {
            this.nameClaims.set(toHex(id), this.myName);
          }
        }
        this.rejoined = msg.channel !== undefined && !Role.isManager(msg.role);
        this.myChannel = msg.channel;
        await this.reconcile(now);
        break;
      }
      case "session":
        this.manager.lastSession = msg.session;
        this.manager.views += 1;
        this.contactWaiting();
        this.admitReady();
        await this.reconcile(now);
        break;
      case "channel": {
        const old = this.myChannel?.id;
        const left = old !== undefined && old !== msg.channel.id ? old : undefined;
        this.myChannel = msg.channel;
        if (left !== undefined) {
          this.leftChannel(left, now);
        }
        this.updateSecured();
        break;
      }
      case "relayed":
        // (Rust: after the end every key is gone on purpose; the end returned above.)
        await this.statsRelayed(msg.from, msg.channel, msg.data, now);
        break;
      // The server's word that someone left is believed (it could stop routing them anyway);
      // its word that they are back is not: removals are final.
      case "participant_left":
        if (this.isMediator() && msg.participant_id !== this.me?.pid) {
          this.remove(msg.participant_id, now, false);
          await this.reconcile(now);
        }
        break;
      case "consent_recorded":
      case "pong":
        break;
      case "error":
        this.events.push({ type: "server_error", code: msg.code });
        break;
      case "session_ended":
      case "kicked":
        this.end();
        break;
      case "lock_changed":
      case "invite":
      case "draining":
      case "media_answer":
      case "media_slots":
      case "doc_ticket":
        break;
    }
    await this.tickNow(now);
  }

  mePid(): ParticipantId {
    return this.me?.pid ?? ParticipantId.create("unknown");
  }

  myKeys(): [Uint8Array, Uint8Array] {
    const i = this._identity;
    return i === undefined ? [new Uint8Array(32), new Uint8Array(32)] : [i.ikPub(), i.ekPub()];
  }

  isMediator(): boolean {
    return this.me?.role === "mediator";
  }

  // Mediators, and co-mediators holding the mediator's delegation: they sign rosters.
  isManager(): boolean {
    return this.isMediator() || (this.me?.role === "co_mediator" && this.myDelegation !== undefined);
  }

  async statsRelayed(from: ParticipantId, _channel: ChannelId | undefined, data: string, now: number): Promise<void> {
    const env = envelopeFromData(data);
    if (env === undefined) {
      this.failed(FailureReason.Envelope);
      return;
    }
    await this.onEnvelope(from, env, now);
  }

  async onEnvelope(from: ParticipantId, env: Envelope, now: number): Promise<void> {
    switch (env.k) {
      case "announce":
        await this.onAnnounce(from, env.pid, env.role, env.ik, env.ek, env.sig);
        break;
      case "pw":
        await this.onPairwise(from, env.t, env.seq, env.enc, env.ct, env.hint, now);
        break;
      case "roster": {
        const del =
          env.dik?.length === 32 && env.dsig?.length === 64 ? { ik: env.dik, sig: env.dsig } : undefined;
        await this.onRoster(from, env.ch, env.enc, env.sig, del, now);
        break;
      }
      case "delegate":
        await this.onDelegate(from, env.ik, env.sig, now);
        break;
      case "chat":
        this.onChat(from, env.cid, env.f, now);
        break;
    }
  }

  /** Leaves: deletes every key and returns the `leave` to send. */
  leave(): Promise<ClientMessage> {
    return this.serial(() => {
      this.end();
      return Promise.resolve<ClientMessage>({ type: "leave" });
    });
  }

  end(): void {
    // Drop every key: senders, receivers, chains, and the identity itself (all wiped).
    for (const s of this.keys.sealers.values()) {
      s.sealer.zeroize();
    }
    this.keys.sealers.clear();
    for (const o of this.keys.openers.values()) {
      zeroizeOpener(o);
    }
    this.keys.openers.clear();
    this.chains.clear();
    this.pending = [];
    for (const e of this.keys.earlyKeys) {
      e.msg.baseKey.zeroize();
    }
    this.keys.earlyKeys = [];
    this.earlyChats = [];
    for (const d of this.docs.values()) {
      d.msg.fileKey.zeroize();
    }
    this.docs.clear();
    for (const d of this.docsSealed.values()) {
      d.msg.fileKey.zeroize();
    }
    this.docsSealed.clear();
    this._identity?.zeroize();
    this._identity = undefined;
    this._secured = undefined;
    for (const i of this.manager.invites) {
      i.psk.zeroize();
    }
    this.manager.invites = [];
    this.nameClaims.clear();
    this.myName = undefined;
    if (this.cfg.invite !== undefined) {
      this.cfg.invite.psk?.zeroize();
      this.cfg.invite.psk = undefined;
    }
    this._stats.keysDeleted = true;
    this.events.push({ type: "ended" });
  }
}

// Rust's `impl Core` blocks in the other files of the core.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging -- the methods of admission.ts, chains.ts, ... (Rust: one `impl Core` per file)
export interface Core
  extends AdmissionMethods,
    AlarmsMethods,
    ChainsMethods,
    ChatMethods,
    DocsMethods,
    KeysMethods,
    ManagerMethods,
    MediaMethods,
    NamesMethods,
    TimersMethods {}

Object.assign(
  Core.prototype,
  admissionMethods(),
  alarmsMethods(),
  chainsMethods(),
  chatMethods(),
  docsMethods(),
  keysMethods(),
  managerMethods(),
  mediaMethods(),
  namesMethods(),
  timersMethods(),
);
