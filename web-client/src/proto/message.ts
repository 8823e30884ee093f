// Twin of crates/proto/src/message.rs: signalling messages, client to server and server to
// client (docs/protocol/signalling.md), as discriminated unions on the wire's snake_case
// `type`, with the wire's snake_case field names.
//
// Decoding follows the Rust twin's serde rules:
// - server messages (`decodeServer`, `parseServerMessage`): `type` must name a known message,
//   every field must be present with its type (ids by their grammar, roles, sides, kinds,
//   error codes and leave reasons by their names), optional fields may be absent or null,
//   unknown fields are ignored (serde without `deny_unknown_fields`);
// - client messages (`decodeClient`, `parseClientMessage`): the same, and an unknown field is
//   refused (`deny_unknown_fields`, also for the messages without fields).
// Failures throw `DecodeError` (bad_json, unknown_type, invalid_message, invalid_consent),
// whose detail is static text: never a value from the frame. Rust's per-field details
// (`classify`, `field_detail`) are the server's concern and are not twinned.
//
// u64 fields (`resume_grace_secs`, `expires_at`, `ttl_secs`, `size`) are bigints; a JSON number
// above 2^53 - 1 is refused, since `JSON.parse` has already lost its precision. JSON.parse keeps
// the last of repeated keys, where serde refuses the frame.

import { DecodeError, ERROR_CODES } from "./error.js";
import type { ErrorCode } from "./error.js";
import { ChannelId, ChannelKind, ParticipantId, Role, SessionId, Side } from "./ids.js";

declare const brand: unique symbol;

/** The signalling protocol version this client speaks (`hello.version`). */
export const PROTOCOL_VERSION = 1;

/**
 * Rust's `lower_hex_string!`: a branded string of exactly `len` lowercase hex characters;
 * `create` throws `DecodeError` (`code`, naming `field`), `parse` is `new(s).ok()`.
 */
function lowerHexString<T extends string>(len: number, code: ErrorCode, field: string): { create(s: string): T; parse(s: string): T | undefined } {
  const re = new RegExp(`^[0-9a-f]{${String(len)}}$`);
  return {
    create: (s: string): T => {
      if (!re.test(s)) {
        throw new DecodeError(code, field);
      }
      return s as T;
    },
    parse: (s: string): T | undefined => (re.test(s) ? (s as T) : undefined),
  };
}

/**
 * The SHA-256 of the agreement to mediate that a participant acknowledged, as 64 lowercase
 * hex characters. The server records only this hash, never the text.
 */
export type AgreementHash = string & { readonly [brand]: "AgreementHash" };
/** Rust: `AgreementHash::new` (invalid_consent). */
export const AgreementHash = lowerHexString<AgreementHash>(64, "invalid_consent", "agreement_hash");

/**
 * The SHA-256 of one version of a document (a settlement draft) that a participant
 * acknowledged (e2ee.md §8.7), as 64 lowercase hex characters. The server records only this
 * hash: never the document, its name or its id.
 */
export type DocHash = string & { readonly [brand]: "DocHash" };
/** Rust: `DocHash::new` (invalid_message). */
export const DocHash = lowerHexString<DocHash>(64, "invalid_message", "sha256");

/**
 * A document's id: the 16 random bytes its sharer's client drew (e2ee.md §8.7), as 32
 * lowercase hex characters. It names the document's chunks on the server and nothing else.
 */
export type DocId = string & { readonly [brand]: "DocId" };
/** Rust: `DocId::new` (invalid_message). */
export const DocId = lowerHexString<DocId>(32, "invalid_message", "doc_id");

/** What a document ticket allows: writing the document's chunks (`up`), or reading them (`down`). */
export type DocOp = "up" | "down";

/** Bytes of the file in every chunk of a document but the last (e2ee.md §8.7, `CHUNK_BYTES`). */
export const DOC_CHUNK_BYTES = 65_536n;

/** Bytes a sealed chunk adds to the file's bytes it carries (the AEAD tag). */
export const DOC_TAG_BYTES = 16n;

/** The largest chunk body the server takes: a full chunk and its tag, 65,552 bytes. */
export const DOC_MAX_CHUNK_BODY = DOC_CHUNK_BYTES + DOC_TAG_BYTES;

/** How many chunks a document of `size` bytes is sealed in: `max(1, ceil(size / 65536))`. */
export function docChunks(size: bigint): bigint {
  const n = (size + DOC_CHUNK_BYTES - 1n) / DOC_CHUNK_BYTES;
  return n > 1n ? n : 1n;
}

/**
 * The largest body chunk `index` of a document of `size` bytes can have once sealed: the
 * file's bytes it carries (65,536 but in the last chunk) and the tag. `undefined` past the
 * last chunk.
 */
export function docChunkMaxBody(size: bigint, index: bigint): bigint | undefined {
  const chunks = docChunks(size);
  if (index < 0n || index >= chunks) {
    return undefined;
  }
  const carried = index + 1n < chunks ? DOC_CHUNK_BYTES : size - index * DOC_CHUNK_BYTES;
  return carried + DOC_TAG_BYTES;
}

/** Where a relayed message goes: every current member of a channel, or one participant. */
export type RelayTarget =
  /** `{"channel": "joint"}` */
  | { channel: ChannelId }
  /** `{"participant": "<id>"}` */
  | { participant: ParticipantId };

export const RelayTarget = {
  /** Every current member of a channel. */
  channel: (c: ChannelId): RelayTarget => {
    return { channel: c };
  },
  /** One participant. */
  participant: (p: ParticipantId): RelayTarget => {
    return { participant: p };
  },
};

/** A message from a client. */
export type ClientMessage =
  /** The first message on every connection. */
  | { type: "hello"; version: number; token: string }
  /** The hash of the agreement to mediate the participant acknowledged. */
  | { type: "consent"; agreement_hash: AgreementHash }
  /** Mediators: admit a waiting participant into the joint session. */
  | { type: "admit"; participant_id: ParticipantId }
  /** Mediators: move an admitted participant (or themselves) into a channel. */
  | { type: "move"; participant_id: ParticipantId; channel_id: ChannelId }
  /** Mediators: open a breakout room with these members and move them into it. */
  | { type: "create_breakout"; members: ParticipantId[] }
  /** Mediators: bring every admitted participant back to the joint session. */
  | { type: "return_all" }
  /** Mediators: lock the session; nobody new may arrive. */
  | { type: "lock" }
  /** Mediators: unlock the session. */
  | { type: "unlock" }
  /** Mediators: remove a participant. */
  | { type: "kick"; participant_id: ParticipantId }
  /** Mediators: end the session for everyone. */
  | { type: "end" }
  /** Leave the session. */
  | { type: "leave" }
  /** Send opaque bytes (the relay envelope of confer/1 §13). */
  | { type: "relay"; to: RelayTarget; data: string }
  /** Mediators: mint an invite token for someone new. */
  | { type: "create_invite"; role: Role; side?: Side | undefined; ttl_secs?: bigint | undefined }
  /** Keep-alive; answered with `pong`. */
  | { type: "ping" }
  /** Media: an SDP offer for the one peer connection to the SFU. */
  | { type: "media_offer"; sdp: string }
  /** Media: ask a publisher in my channel for a keyframe (after switching keys). */
  | { type: "keyframe_request"; publisher: ParticipantId }
  /** Documents: ask to store a sealed document's chunks (answered with a `doc_ticket` of op `up`). */
  | { type: "doc_upload"; doc_id: DocId; size: bigint; chunks: number }
  /** Documents: ask to read a document of this session (answered with a `doc_ticket` of op `down`). */
  | { type: "doc_download"; doc_id: DocId }
  /**
   * Documents: the sender acknowledged this version of a document (its client signed the
   * pairwise acknowledgment); recorded as a content-free audit row. No answer unless refused.
   */
  | { type: "doc_ack"; sha256: DocHash };

/** The wire name of every client message type. */
export const CLIENT_TYPES: readonly ClientMessage["type"][] = [
  "hello",
  "consent",
  "admit",
  "move",
  "create_breakout",
  "return_all",
  "lock",
  "unlock",
  "kick",
  "end",
  "leave",
  "relay",
  "create_invite",
  "ping",
  "media_offer",
  "keyframe_request",
  "doc_upload",
  "doc_download",
  "doc_ack",
];

/** One member of a channel as the server knows it (the routing view, not a signed roster). */
export interface ChannelMember {
  /** Pseudonymous id. */
  participant_id: ParticipantId;
  /** Role. */
  role: Role;
  /** Side, for party and counsel. */
  side?: Side | undefined;
  /** False while the participant's connection is down (within its grace period). */
  connected: boolean;
}

/** A channel and who is in it. */
export interface ChannelView {
  /** The channel. */
  id: ChannelId;
  /** Joint, caucus or breakout. */
  kind: ChannelKind;
  /** Members, ordered by participant id. */
  members: ChannelMember[];
}

/** Someone in the waiting room, as mediators see them. */
export interface WaitingView {
  /** Pseudonymous id. */
  participant_id: ParticipantId;
  /** Role. */
  role: Role;
  /** Side, for party and counsel. */
  side?: Side | undefined;
  /** Whether the agreement hash has been reported. */
  consented: boolean;
  /** False while the participant's connection is down. */
  connected: boolean;
}

/** The whole session as mediators see it. */
export interface SessionView {
  /** No new arrivals while locked. */
  locked: boolean;
  /** The waiting room, in arrival order. */
  waiting: WaitingView[];
  /** Every non-empty channel (and always `joint`). */
  channels: ChannelView[];
}

/** One receive slot of a subscriber's peer connection. */
export interface MediaSlot {
  /** The m-line's mid. */
  mid: string;
  /** `audio` or `video`. */
  kind: string;
  /** The publisher in it, if any. */
  participant_id?: ParticipantId | undefined;
}

/** A TURN server and the credentials to use it (the `RTCIceServer` of WebRTC). */
export interface IceServer {
  /** `turn:` / `turns:` URLs. */
  urls: string[];
  /** Time-limited user name. */
  username: string;
  /** Its password (never log it). */
  credential: string;
}

/** Why a participant is no longer in the session. */
export type LeaveReason = "left" | "kicked" | "timeout";

/** A message from the server. */
export type ServerMessage =
  /** The answer to a successful `hello`. */
  | {
      type: "welcome";
      participant_id: ParticipantId;
      session_id: SessionId;
      role: Role;
      side?: Side | undefined;
      resume_token: string;
      resume_grace_secs: bigint;
      /** Where you are: absent while in the waiting room. */
      channel?: ChannelView | undefined;
      resumed: boolean;
      locked: boolean;
      ice_servers: IceServer[];
    }
  /** The agreement hash was recorded. */
  | { type: "consent_recorded" }
  /** You are now in this channel, or its membership changed. */
  | { type: "channel"; channel: ChannelView }
  /** Mediators: the whole session changed. */
  | { type: "session"; session: SessionView }
  /** Someone in your channel (or, for mediators, anyone) is gone. */
  | { type: "participant_left"; participant_id: ParticipantId; reason: LeaveReason }
  /** The session was locked or unlocked. */
  | { type: "lock_changed"; locked: boolean }
  /** Opaque bytes from another participant. */
  | { type: "relayed"; from: ParticipantId; channel?: ChannelId | undefined; data: string }
  /** An invite token the mediator asked for. */
  | { type: "invite"; token: string; role: Role; side?: Side | undefined; expires_at: bigint }
  /** A mediator removed you; the connection closes next. */
  | { type: "kicked" }
  /** The session ended; the connection closes next. */
  | { type: "session_ended" }
  /** The server is shutting down. */
  | { type: "draining" }
  /** Answer to `ping`. */
  | { type: "pong" }
  /** The SFU's SDP answer to `media_offer`. */
  | { type: "media_answer"; sdp: string }
  /** Which publisher each of my receive slots carries now. */
  | { type: "media_slots"; slots: MediaSlot[] }
  /**
   * The answer to `doc_upload` (`up`) or `doc_download` (`down`): a ticket for the document's
   * chunks, `Authorization: Bearer <token>` on `/docs/{doc_id}/{index}` (signalling.md §11),
   * until `expires_at` (Unix seconds).
   */
  | { type: "doc_ticket"; doc_id: DocId; op: DocOp; token: string; chunks: number; expires_at: bigint }
  /** Something you sent was refused; nothing changed. */
  | { type: "error"; code: ErrorCode; message: string; in_reply_to?: string | undefined };

/** The wire name of every server message type. */
export const SERVER_TYPES: readonly ServerMessage["type"][] = [
  "welcome",
  "consent_recorded",
  "channel",
  "session",
  "participant_left",
  "lock_changed",
  "relayed",
  "invite",
  "kicked",
  "session_ended",
  "draining",
  "pong",
  "media_answer",
  "media_slots",
  "doc_ticket",
  "error",
];

// ---------------------------------------------------------------------------------------------
// Strict decoding.

type Fields = Record<string, unknown>;

function isFields(v: unknown): v is Fields {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The fields of one message type while it is decoded (for static error details). */
class Reading {
  constructor(
    readonly ty: string,
    readonly o: Fields,
  ) {}

  private bad(field: string): DecodeError {
    return new DecodeError("invalid_message", `${this.ty}: \`${field}\``);
  }

  private has(k: string): boolean {
    return Object.hasOwn(this.o, k);
  }

  /** A required field, decoded by `f` (`undefined` from `f` refuses it). */
  req<T>(k: string, f: (v: unknown) => T | undefined): T {
    const v = this.has(k) ? f(this.o[k]) : undefined;
    if (v === undefined) {
      throw this.bad(k);
    }
    return v;
  }

  /** An `Option` field: absent or null is `undefined`, anything else must decode. */
  opt<T>(k: string, f: (v: unknown) => T | undefined): T | undefined {
    const raw = this.has(k) ? this.o[k] : undefined;
    if (raw === undefined || raw === null) {
      return undefined;
    }
    const v = f(raw);
    if (v === undefined) {
      throw this.bad(k);
    }
    return v;
  }

  /** A `#[serde(default)] Vec` field: absent is empty. */
  list<T>(k: string, f: (v: unknown) => T | undefined): T[] {
    if (!this.has(k)) {
      return [];
    }
    return this.req(k, (v) => arrayOf(v, f));
  }

  /** `deny_unknown_fields`: every key is `type` or one of these. */
  noKeysBut(...keys: string[]): void {
    for (const k of Object.keys(this.o)) {
      if (k !== "type" && !keys.includes(k)) {
        throw new DecodeError("invalid_message", `${this.ty}: unknown field`);
      }
    }
  }
}

const string = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === "boolean" ? v : undefined);
const participant = (v: unknown): ParticipantId | undefined =>
  typeof v === "string" ? ParticipantId.parse(v) : undefined;
const channelId = (v: unknown): ChannelId | undefined => (typeof v === "string" ? ChannelId.parse(v) : undefined);
const sessionId = (v: unknown): SessionId | undefined => (typeof v === "string" ? SessionId.parse(v) : undefined);

function u64(v: unknown): bigint | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
}

function u32(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff ? v : undefined;
}

function arrayOf<T>(v: unknown, f: (x: unknown) => T | undefined): T[] | undefined {
  if (!Array.isArray(v)) {
    return undefined;
  }
  const out: T[] = [];
  for (const x of v as unknown[]) {
    const y = f(x);
    if (y === undefined) {
      return undefined;
    }
    out.push(y);
  }
  return out;
}

/** A nested struct: `undefined` (refused) when `f` throws. */
function struct<T>(ty: string, f: (r: Reading) => T): (v: unknown) => T | undefined {
  return (v) => {
    if (!isFields(v)) {
      return undefined;
    }
    try {
      return f(new Reading(ty, v));
    } catch (e) {
      if (e instanceof DecodeError) {
        return undefined;
      }
      throw e;
    }
  };
}

const channelMember = struct(
  "channel_member",
  (r): ChannelMember => ({
    participant_id: r.req("participant_id", participant),
    role: r.req("role", Role.fromWire),
    side: r.opt("side", Side.fromWire),
    connected: r.req("connected", bool),
  }),
);

const channelView = struct(
  "channel_view",
  (r): ChannelView => ({
    id: r.req("id", channelId),
    kind: r.req("kind", ChannelKind.fromWire),
    members: r.req("members", (v) => arrayOf(v, channelMember)),
  }),
);

const waitingView = struct(
  "waiting_view",
  (r): WaitingView => ({
    participant_id: r.req("participant_id", participant),
    role: r.req("role", Role.fromWire),
    side: r.opt("side", Side.fromWire),
    consented: r.req("consented", bool),
    connected: r.req("connected", bool),
  }),
);

const sessionView = struct(
  "session_view",
  (r): SessionView => ({
    locked: r.req("locked", bool),
    waiting: r.req("waiting", (v) => arrayOf(v, waitingView)),
    channels: r.req("channels", (v) => arrayOf(v, channelView)),
  }),
);

const mediaSlot = struct(
  "media_slot",
  (r): MediaSlot => ({
    mid: r.req("mid", string),
    kind: r.req("kind", string),
    participant_id: r.opt("participant_id", participant),
  }),
);

const iceServer = struct(
  "ice_server",
  (r): IceServer => ({
    urls: r.req("urls", (v) => arrayOf(v, string)),
    username: r.req("username", string),
    credential: r.req("credential", string),
  }),
);

const docId = (v: unknown): DocId | undefined => (typeof v === "string" ? DocId.parse(v) : undefined);
const docHash = (v: unknown): DocHash | undefined => (typeof v === "string" ? DocHash.parse(v) : undefined);

function docOp(v: unknown): DocOp | undefined {
  return v === "up" || v === "down" ? v : undefined;
}

function leaveReason(v: unknown): LeaveReason | undefined {
  return v === "left" || v === "kicked" || v === "timeout" ? v : undefined;
}

function errorCode(v: unknown): ErrorCode | undefined {
  return typeof v === "string" && (ERROR_CODES as readonly string[]).includes(v) ? (v as ErrorCode) : undefined;
}

function typeOf(v: unknown): [Fields, string] {
  if (!isFields(v)) {
    throw new DecodeError("bad_json", "expected one JSON object");
  }
  const ty = v["type"];
  if (typeof ty !== "string") {
    throw new DecodeError("unknown_type", 'the "type" field is missing');
  }
  return [v, ty];
}

function unknownType(): DecodeError {
  return new DecodeError("unknown_type", "no message of that type");
}

/**
 * A server message from a parsed JSON value (serde's `ServerMessage` deserialization).
 * Throws `DecodeError`.
 */
export function parseServerMessage(v: unknown): ServerMessage {
  const [o, ty] = typeOf(v);
  const r = new Reading(ty, o);
  switch (ty as ServerMessage["type"]) {
    case "welcome":
      return {
        type: "welcome",
        participant_id: r.req("participant_id", participant),
        session_id: r.req("session_id", sessionId),
        role: r.req("role", Role.fromWire),
        side: r.opt("side", Side.fromWire),
        resume_token: r.req("resume_token", string),
        resume_grace_secs: r.req("resume_grace_secs", u64),
        channel: r.opt("channel", channelView),
        resumed: r.req("resumed", bool),
        locked: r.req("locked", bool),
        ice_servers: r.list("ice_servers", iceServer),
      };
    case "consent_recorded":
      return { type: "consent_recorded" };
    case "channel":
      return { type: "channel", channel: r.req("channel", channelView) };
    case "session":
      return { type: "session", session: r.req("session", sessionView) };
    case "participant_left":
      return {
        type: "participant_left",
        participant_id: r.req("participant_id", participant),
        reason: r.req("reason", leaveReason),
      };
    case "lock_changed":
      return { type: "lock_changed", locked: r.req("locked", bool) };
    case "relayed":
      return {
        type: "relayed",
        from: r.req("from", participant),
        channel: r.opt("channel", channelId),
        data: r.req("data", string),
      };
    case "invite":
      return {
        type: "invite",
        token: r.req("token", string),
        role: r.req("role", Role.fromWire),
        side: r.opt("side", Side.fromWire),
        expires_at: r.req("expires_at", u64),
      };
    case "kicked":
      return { type: "kicked" };
    case "session_ended":
      return { type: "session_ended" };
    case "draining":
      return { type: "draining" };
    case "pong":
      return { type: "pong" };
    case "media_answer":
      return { type: "media_answer", sdp: r.req("sdp", string) };
    case "media_slots":
      return { type: "media_slots", slots: r.req("slots", (x) => arrayOf(x, mediaSlot)) };
    case "doc_ticket":
      return {
        type: "doc_ticket",
        doc_id: r.req("doc_id", docId),
        op: r.req("op", docOp),
        token: r.req("token", string),
        chunks: r.req("chunks", u32),
        expires_at: r.req("expires_at", u64),
      };
    case "error":
      return {
        type: "error",
        code: r.req("code", errorCode),
        message: r.req("message", string),
        in_reply_to: r.opt("in_reply_to", string),
      };
    default:
      throw unknownType();
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new DecodeError("bad_json", "expected one JSON object");
  }
}

/** Decodes one server text frame; throws `DecodeError` (an unknown type is an error). */
export function decodeServer(text: string): ServerMessage {
  return parseServerMessage(parseJson(text));
}

function relayTarget(v: unknown): RelayTarget | undefined {
  if (!isFields(v)) {
    return undefined;
  }
  const keys = Object.keys(v);
  if (keys.length !== 1) {
    return undefined;
  }
  if (keys[0] === "channel") {
    const c = channelId(v["channel"]);
    return c === undefined ? undefined : { channel: c };
  }
  if (keys[0] === "participant") {
    const p = participant(v["participant"]);
    return p === undefined ? undefined : { participant: p };
  }
  return undefined;
}

function agreementHash(v: unknown): AgreementHash | undefined {
  if (typeof v !== "string") {
    return undefined;
  }
  const h = AgreementHash.parse(v);
  if (h === undefined) {
    // Rust: `classify` maps a malformed hash to its own code.
    throw new DecodeError("invalid_consent", "agreement_hash");
  }
  return h;
}

/**
 * A client message from a parsed JSON value (serde's `ClientMessage` deserialization with
 * `deny_unknown_fields`, also for the messages without fields). Throws `DecodeError`.
 */
export function parseClientMessage(v: unknown): ClientMessage {
  const [o, ty] = typeOf(v);
  const r = new Reading(ty, o);
  switch (ty as ClientMessage["type"]) {
    case "hello":
      r.noKeysBut("version", "token");
      return { type: "hello", version: r.req("version", u32), token: r.req("token", string) };
    case "consent":
      r.noKeysBut("agreement_hash");
      return { type: "consent", agreement_hash: r.req("agreement_hash", agreementHash) };
    case "admit":
      r.noKeysBut("participant_id");
      return { type: "admit", participant_id: r.req("participant_id", participant) };
    case "move":
      r.noKeysBut("participant_id", "channel_id");
      return {
        type: "move",
        participant_id: r.req("participant_id", participant),
        channel_id: r.req("channel_id", channelId),
      };
    case "create_breakout":
      r.noKeysBut("members");
      return { type: "create_breakout", members: r.req("members", (x) => arrayOf(x, participant)) };
    case "return_all":
      r.noKeysBut();
      return { type: "return_all" };
    case "lock":
      r.noKeysBut();
      return { type: "lock" };
    case "unlock":
      r.noKeysBut();
      return { type: "unlock" };
    case "kick":
      r.noKeysBut("participant_id");
      return { type: "kick", participant_id: r.req("participant_id", participant) };
    case "end":
      r.noKeysBut();
      return { type: "end" };
    case "leave":
      r.noKeysBut();
      return { type: "leave" };
    case "relay":
      r.noKeysBut("to", "data");
      return { type: "relay", to: r.req("to", relayTarget), data: r.req("data", string) };
    case "create_invite":
      r.noKeysBut("role", "side", "ttl_secs");
      return {
        type: "create_invite",
        role: r.req("role", Role.fromWire),
        side: r.opt("side", Side.fromWire),
        ttl_secs: r.opt("ttl_secs", u64),
      };
    case "ping":
      r.noKeysBut();
      return { type: "ping" };
    case "media_offer":
      r.noKeysBut("sdp");
      return { type: "media_offer", sdp: r.req("sdp", string) };
    case "keyframe_request":
      r.noKeysBut("publisher");
      return { type: "keyframe_request", publisher: r.req("publisher", participant) };
    case "doc_upload":
      r.noKeysBut("doc_id", "size", "chunks");
      return {
        type: "doc_upload",
        doc_id: r.req("doc_id", docId),
        size: r.req("size", u64),
        chunks: r.req("chunks", u32),
      };
    case "doc_download":
      r.noKeysBut("doc_id");
      return { type: "doc_download", doc_id: r.req("doc_id", docId) };
    case "doc_ack":
      r.noKeysBut("sha256");
      return { type: "doc_ack", sha256: r.req("sha256", docHash) };
    default:
      throw unknownType();
  }
}

/** Decodes one client text frame; throws `DecodeError`. */
export function decodeClient(text: string): ClientMessage {
  return parseClientMessage(parseJson(text));
}

function u64Json(v: bigint): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError("a u64 sent as JSON stays below 2^53");
  }
  return Number(v);
}

/** Encodes a client message as a JSON text frame (serde's field order, `type` first). */
export function encodeClient(m: ClientMessage): string {
  if (m.type === "create_invite") {
    return JSON.stringify({
      type: m.type,
      role: m.role,
      side: m.side ?? null,
      ttl_secs: m.ttl_secs === undefined ? null : u64Json(m.ttl_secs),
    });
  }
  if (m.type === "doc_upload") {
    return JSON.stringify({ type: m.type, doc_id: m.doc_id, size: u64Json(m.size), chunks: m.chunks });
  }
  return JSON.stringify(m);
}

/**
 * Encodes a server message as a JSON text frame (Rust: `encode_server`; for tests and tools:
 * absent optional fields are left out, as serde's `skip_serializing_if` does).
 */
export function encodeServer(m: ServerMessage): string {
  const skip = m.type === "welcome" && m.ice_servers.length === 0;
  return JSON.stringify(m, (k, v: unknown) =>
    skip && k === "ice_servers" ? undefined : typeof v === "bigint" ? u64Json(v) : v,
  );
}
