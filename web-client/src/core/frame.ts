// Twin of crates/e2ee/src/frame.rs: sender keys, the per-generation ratchet, frames, the
// replay window and data padding.
//
//   ctx    = lp(session_id) || lp(channel_id) || lp(sender_id) || u8(stream)
//   secret = HKDF-Extract(salt = "", ikm = step_key)          # step_key(0) = base_key
//   key    = HKDF-Expand(secret, "confer/1 frame key "  || u64(KID) || u16(0xF001) || ctx, 32)
//   salt   = HKDF-Expand(secret, "confer/1 frame salt " || u64(KID) || u16(0xF001) || ctx, 12)
//   step_key(i+1) = HKDF-Expand(secret, "confer/1 ratchet" || ctx, 32)
//   nonce  = salt XOR (0x00000000 || u64(CTR))
//   frame  = clear_prefix || AEAD(key, nonce, aad = header || clear_prefix, body) || header || u8(len(header))

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { Reader, Writer, asciiBytes, assertU64, bytesToU64, concat, u64Bytes } from "./enc.js";
import { OpenError } from "./lib.js";
import type { Id16 } from "./lib.js";
import { Secret32 } from "./secret.js";

/** SFrame cipher suite id of ChaCha20-Poly1305 with a 16-byte tag (private range). */
export const SUITE = 0xf001;
/** Ratchet steps per generation: 0..=15. */
export const MAX_STEP = 15;
/** How far ahead of the highest seen CTR a frame may be. */
export const MAX_CTR_JUMP: bigint = 1n << 16n;
/** The replay window. */
export const WINDOW = 128n;
/** Stream numbers: microphone. */
export const STREAM_AUDIO = 0;
/** Camera. */
export const STREAM_CAMERA = 1;
/** Screen share. */
export const STREAM_SCREEN = 2;
/** Chat, notes. */
export const STREAM_DATA = 3;

const U64_MAX = (1n << 64n) - 1n;
const TAG_LEN = 16;
const MAX_HEADER_LEN = 17;

/**
 * How the payload's clear prefix is chosen: `vp8` (10 clear bytes for a key frame, 1 for a
 * delta frame), `opus` (nothing in clear), `data` (stream 3: nothing in clear; padded to a
 * multiple of 256 bytes). The names are the vectors' names.
 */
export type Codec = "vp8" | "opus" | "data";

/** From the vector name. */
export function codecFromName(s: string): Codec | undefined {
  return s === "vp8" || s === "opus" || s === "data" ? s : undefined;
}

/**
 * The clear prefix length for a payload (undefined: the payload is too short to carry one,
 * which is never sent and always rejected).
 */
function prefixLen(codec: Codec, payload: Uint8Array): number | undefined {
  if (codec !== "vp8") {
    return 0;
  }
  const first = payload[0];
  if (first === undefined) {
    return undefined;
  }
  const n = (first & 1) === 0 ? 10 : 1;
  return payload.length >= n ? n : undefined;
}

/**
 * Stream 3 carries data and nothing else; streams 0-2 carry media and never data, so a frame
 * can never be opened as another kind than it was sealed as.
 */
function codecFits(codec: Codec, stream: number): boolean {
  return (codec === "data") === (stream === STREAM_DATA);
}

/** Generations are below 2^60 so that `generation << 4` fits a KID. */
export const MAX_GENERATION: bigint = (1n << 60n) - 1n;

/** The context every key of one (session, channel, sender, stream) is bound to. */
export class FrameCtx {
  private constructor(
    private readonly bytes: Uint8Array,
    /** The stream. */
    readonly stream: number,
  ) {}

  /**
   * Rust: `FrameCtx::new`. `undefined` when the session id is empty or over 64 bytes, an id
   * is not 16 bytes, or the stream is not 0..=3.
   */
  static create(sessionId: Uint8Array, channelId: Id16, senderId: Id16, stream: number): FrameCtx | undefined {
    if (
      sessionId.length === 0 ||
      sessionId.length > 64 ||
      channelId.length !== 16 ||
      senderId.length !== 16 ||
      !Number.isInteger(stream) ||
      stream < 0 ||
      stream > STREAM_DATA
    ) {
      return undefined;
    }
    const bytes = new Writer().lp(sessionId).lp(channelId).lp(senderId).u8(stream).intoBytes();
    return new FrameCtx(bytes, stream);
  }

  /** The encoded ctx. */
  asBytes(): Uint8Array {
    return this.bytes;
  }
}

/** KID of (generation, step). Like Rust's `u64` shift, bits above 64 are dropped. */
export function kid(generation: bigint, step: number): bigint {
  return BigInt.asUintN(64, generation << 4n) | BigInt(step & 0x0f);
}

/** The frame key and salt of one step key. */
export interface StepKeys {
  /** ChaCha20-Poly1305 key. */
  key: Secret32;
  /** Nonce salt, 12 bytes. */
  salt: Uint8Array;
}

function hkdfPrk(stepKey: Secret32): Uint8Array {
  return extract(sha256, stepKey.expose(), new Uint8Array(0));
}

/** Derives the frame key and salt for `kid` from `stepKey`. */
export function derive(stepKey: Secret32, kidValue: bigint, ctx: FrameCtx): StepKeys {
  const prk = hkdfPrk(stepKey);
  const kidB = u64Bytes(kidValue);
  const suite = new Writer().u16(SUITE).intoBytes();
  const key = expand(sha256, prk, concat(asciiBytes("confer/1 frame key "), kidB, suite, ctx.asBytes()), 32);
  const salt = expand(sha256, prk, concat(asciiBytes("confer/1 frame salt "), kidB, suite, ctx.asBytes()), 12);
  const out = { key: new Secret32(key), salt };
  key.fill(0);
  prk.fill(0);
  return out;
}

/** `step_key(i+1)` from `step_key(i)`. */
export function ratchet(stepKey: Secret32, ctx: FrameCtx): Secret32 {
  const prk = hkdfPrk(stepKey);
  const next = expand(sha256, prk, concat(asciiBytes("confer/1 ratchet"), ctx.asBytes()), 32);
  const out = new Secret32(next);
  next.fill(0);
  prk.fill(0);
  return out;
}

/** `salt XOR (0x00000000 || u64(ctr))`. */
export function nonce(salt: Uint8Array, ctr: bigint): Uint8Array {
  const n = salt.slice();
  u64Bytes(ctr).forEach((b, i) => {
    n[4 + i] = (n[4 + i] ?? 0) ^ b;
  });
  return n;
}

function minLen(v: bigint): number {
  let n = 1;
  while (v >> BigInt(8 * n) !== 0n) {
    n++;
  }
  return n;
}

function extended(v: bigint, n: number): Uint8Array {
  return u64Bytes(v).subarray(8 - n);
}

/** RFC 9605 §4.3 header of (KID, CTR): `X|K|Y|C` then the extended KID and CTR bytes. */
export function encodeHeader(kidValue: bigint, ctr: bigint): Uint8Array {
  assertU64(kidValue, "kid");
  assertU64(ctr, "ctr");
  let cfg = 0;
  const tail: Uint8Array[] = [];
  if (kidValue < 8n) {
    cfg |= Number(kidValue) << 4;
  } else {
    const n = minLen(kidValue);
    cfg |= 0x80 | ((n - 1) << 4);
    tail.push(extended(kidValue, n));
  }
  if (ctr < 8n) {
    cfg |= Number(ctr);
  } else {
    const n = minLen(ctr);
    cfg |= 0x08 | (n - 1);
    tail.push(extended(ctr, n));
  }
  return concat(Uint8Array.of(cfg), ...tail);
}

/**
 * Parses a header that must fill `bytes` exactly and be minimally encoded: `[kid, ctr]`.
 * Throws `OpenError`.
 */
export function decodeHeader(bytes: Uint8Array): [bigint, bigint] {
  try {
    const r = new Reader(bytes);
    const cfg = r.u8();
    const field = (ext: boolean, small: number): bigint => {
      if (!ext) {
        return BigInt(small);
      }
      const n = small + 1;
      const v = bytesToU64(r.take(n));
      // Minimal: an extended field holds 8 or more, in the fewest bytes.
      if (v < 8n || minLen(v) !== n) {
        throw new OpenError();
      }
      return v;
    };
    const kidValue = field((cfg & 0x80) !== 0, (cfg >> 4) & 0x07);
    const ctr = field((cfg & 0x08) !== 0, cfg & 0x07);
    if (r.remaining() !== 0) {
      throw new OpenError();
    }
    return [kidValue, ctr];
  } catch {
    throw new OpenError();
  }
}

/** `u16(len) || message || zeros` to a multiple of 256 bytes; `undefined` over 65,535 bytes. */
export function pad(message: Uint8Array): Uint8Array | undefined {
  if (message.length > 0xffff) {
    return undefined;
  }
  const total = Math.ceil((message.length + 2) / 256) * 256;
  const out = new Uint8Array(total);
  out[0] = message.length >> 8;
  out[1] = message.length & 0xff;
  out.set(message, 2);
  return out;
}

/** Strict inverse of `pad`; throws `OpenError`. */
export function unpad(padded: Uint8Array): Uint8Array {
  if (padded.length < 256 || padded.length % 256 !== 0) {
    throw new OpenError();
  }
  const len = ((padded[0] ?? 0) << 8) | (padded[1] ?? 0);
  // Exactly the length `pad` produces: no extra zero blocks.
  if (padded.length !== Math.ceil((len + 2) / 256) * 256) {
    throw new OpenError();
  }
  if (2 + len > padded.length) {
    throw new OpenError();
  }
  if (padded.subarray(2 + len).some((b) => b !== 0)) {
    throw new OpenError();
  }
  return padded.slice(2, 2 + len);
}

/** Sealing was refused (payload too short for its codec, or too long to pad). */
export class SealError extends Error {
  constructor() {
    super("could not seal");
    this.name = "SealError";
  }
}

/** Seals one payload under explicit keys (the core of `Sealer.seal`, used by vectors). */
export function sealWith(keys: StepKeys, kidValue: bigint, ctr: bigint, codec: Codec, payload: Uint8Array): Uint8Array {
  let prefix: Uint8Array;
  let body: Uint8Array;
  if (codec === "data") {
    const padded = pad(payload);
    if (padded === undefined) {
      throw new SealError();
    }
    prefix = new Uint8Array(0);
    body = padded;
  } else {
    const n = prefixLen(codec, payload);
    if (n === undefined) {
      throw new SealError();
    }
    prefix = payload.subarray(0, n);
    body = payload.subarray(n);
  }
  const header = encodeHeader(kidValue, ctr);
  const aad = concat(header, prefix);
  const ct = chacha20poly1305(keys.key.expose(), nonce(keys.salt, ctr), aad).encrypt(body);
  return concat(prefix, ct, header, Uint8Array.of(header.length));
}

/** A parsed frame: its KID, CTR and the pieces to decrypt. */
interface Parsed {
  kid: bigint;
  ctr: bigint;
  header: Uint8Array;
  prefix: Uint8Array;
  ct: Uint8Array;
}

function parse(codec: Codec, frame: Uint8Array): Parsed {
  const hlen = frame[frame.length - 1];
  if (hlen === undefined) {
    throw new OpenError();
  }
  const rest = frame.subarray(0, frame.length - 1);
  if (hlen === 0 || hlen > MAX_HEADER_LEN || hlen > rest.length) {
    throw new OpenError();
  }
  const body = rest.subarray(0, rest.length - hlen);
  const header = rest.subarray(rest.length - hlen);
  const [kidValue, ctr] = decodeHeader(header);
  const n = prefixLen(codec, body);
  if (n === undefined) {
    throw new OpenError();
  }
  const prefix = body.subarray(0, n);
  const ct = body.subarray(n);
  if (ct.length < TAG_LEN) {
    throw new OpenError();
  }
  return { kid: kidValue, ctr, header, prefix, ct };
}

/**
 * The generation a frame's KID names, after the structural checks of steps 1-3 of receiving
 * (trailer, minimal header, clear prefix, ciphertext length for `codec`); nothing is
 * decrypted. A receiver uses it to find the one key that can open the frame (no trial
 * decryption), and to hold a well-formed frame whose key has not arrived yet while dropping
 * a malformed one at once. Throws `OpenError`.
 */
export function frameGeneration(codec: Codec, frame: Uint8Array): bigint {
  return parse(codec, frame).kid >> 4n;
}

function decrypt(keys: StepKeys, p: Parsed, codec: Codec): Uint8Array {
  let body: Uint8Array;
  try {
    body = chacha20poly1305(keys.key.expose(), nonce(keys.salt, p.ctr), concat(p.header, p.prefix)).decrypt(p.ct);
  } catch {
    throw new OpenError();
  }
  return codec === "data" ? unpad(body) : concat(p.prefix, body);
}

/**
 * Opens one frame under explicit keys (vectors; the KID and CTR in the header are not
 * checked against a window). Throws `OpenError`.
 */
export function openWith(keys: StepKeys, codec: Codec, frame: Uint8Array): Uint8Array {
  return decrypt(keys, parse(codec, frame), codec);
}

/** The generation is used up (step 15 reached, or the counter wrapped): make a new one. */
export class NeedNewGeneration extends Error {
  constructor() {
    super("need a new generation");
    this.name = "NeedNewGeneration";
  }
}

/** The sending side of one (channel, sender, stream): current generation, step and counter. */
export class Sealer {
  private readonly ctx: FrameCtx;
  private readonly gen: bigint;
  private stepNo = 0;
  private stepKey: Secret32;
  private keys: StepKeys;
  private ctr = 0n;

  /** Starts generation `generation` at step 0 with `baseKey` (32 bytes). */
  constructor(ctx: FrameCtx, baseKey: Uint8Array, generation: bigint) {
    this.ctx = ctx;
    this.gen = generation;
    this.stepKey = new Secret32(baseKey);
    this.keys = derive(this.stepKey, kid(generation, 0), ctx);
  }

  /** The generation in use. */
  generation(): bigint {
    return this.gen;
  }

  /** The ratchet step in use. */
  step(): number {
    return this.stepNo;
  }

  /**
   * Moves to the next ratchet step (the 60 s timer); the old step key is forgotten. Throws
   * `NeedNewGeneration` at step 15.
   */
  ratchet(): void {
    if (this.stepNo >= MAX_STEP) {
      throw new NeedNewGeneration();
    }
    const next = ratchet(this.stepKey, this.ctx);
    this.stepKey.zeroize();
    this.keys.key.zeroize();
    this.stepKey = next;
    this.stepNo += 1;
    this.keys = derive(this.stepKey, kid(this.gen, this.stepNo), this.ctx);
    this.ctr = 0n;
  }

  /**
   * Seals a payload (for `data`, the message before padding). The codec must fit the stream
   * (data on stream 3 only), and the generation must be at most `MAX_GENERATION`. Throws
   * `SealError`.
   */
  seal(codec: Codec, payload: Uint8Array): Uint8Array {
    if (!codecFits(codec, this.ctx.stream) || this.gen > MAX_GENERATION || this.gen < 0n) {
      throw new SealError();
    }
    // Rust seals, then refuses when the counter cannot advance; nothing is output either way.
    if (this.ctr === U64_MAX) {
      throw new SealError();
    }
    const frame = sealWith(this.keys, kid(this.gen, this.stepNo), this.ctr, codec, payload);
    this.ctr += 1n;
    return frame;
  }

  /** Wipes the keys (Rust: zeroized on drop). */
  zeroize(): void {
    this.stepKey.zeroize();
    this.keys.key.zeroize();
  }
}

const MASK_128 = (1n << 128n) - 1n;

/** A 128-frame sliding window over counters. */
export class ReplayWindow {
  private highest: bigint | undefined = undefined;
  /** Bit i set: `highest - i` was seen. */
  private seen = 0n;

  /** Would `ctr` be accepted? */
  check(ctr: bigint): boolean {
    const h = this.highest;
    if (h === undefined) {
      return true;
    }
    if (ctr > h) {
      return ctr - h <= MAX_CTR_JUMP;
    }
    const back = h - ctr;
    return back < WINDOW && ((this.seen >> back) & 1n) === 0n;
  }

  /** Records an accepted `ctr` (call only after `check` and a successful open). */
  commit(ctr: bigint): void {
    const h = this.highest;
    if (h === undefined) {
      this.highest = ctr;
      this.seen = 1n;
    } else if (ctr > h) {
      const shift = ctr - h;
      this.seen = shift >= 128n ? 0n : (this.seen << shift) & MASK_128;
      this.seen |= 1n;
      this.highest = ctr;
    } else {
      this.seen |= 1n << (h - ctr);
    }
  }
}

interface Generation {
  /** step_key(i) for i = 0..=highest step derived so far, with its frame keys. */
  steps: { stepKey: Secret32; keys: StepKeys }[];
  windows: Map<number, ReplayWindow>;
}

/** The receiving side of one (channel, sender, stream). */
export class Opener {
  private readonly ctx: FrameCtx;
  private readonly held = new Map<bigint, Generation>();
  /** Frames dropped because they did not open (a count, not a protocol field). */
  failures = 0;

  /** No keys yet. */
  constructor(ctx: FrameCtx) {
    this.ctx = ctx;
  }

  /** Installs a generation's base key (ignored above `MAX_GENERATION`). */
  addGeneration(generation: bigint, baseKey: Uint8Array): void {
    if (generation > MAX_GENERATION || generation < 0n) {
      return;
    }
    this.removeGeneration(generation);
    const base = new Secret32(baseKey);
    const keys = derive(base, kid(generation, 0), this.ctx);
    this.held.set(generation, { steps: [{ stepKey: base, keys }], windows: new Map() });
  }

  /** Forgets (and zeroizes) a generation. */
  removeGeneration(generation: bigint): void {
    const g = this.held.get(generation);
    if (g !== undefined) {
      for (const s of g.steps) {
        s.stepKey.zeroize();
        s.keys.key.zeroize();
      }
      this.held.delete(generation);
    }
  }

  /** Forgets every generation older than `generation`. */
  retainFrom(generation: bigint): void {
    for (const g of this.generations()) {
      if (g < generation) {
        this.removeGeneration(g);
      }
    }
  }

  /** Generations held, ascending. */
  generations(): bigint[] {
    return [...this.held.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Whether a generation is held. */
  holds(generation: bigint): boolean {
    return this.held.has(generation);
  }

  /** The oldest generation held. */
  oldest(): bigint | undefined {
    return this.generations()[0];
  }

  /**
   * Opens a frame: the key comes from the KID (never trial decryption), the counter must
   * pass the replay window, and on any failure the frame is dropped and counted. Throws
   * `OpenError`.
   */
  open(codec: Codec, frame: Uint8Array): Uint8Array {
    try {
      return this.tryOpen(codec, frame);
    } catch {
      this.failures += 1;
      throw new OpenError();
    }
  }

  private tryOpen(codec: Codec, frame: Uint8Array): Uint8Array {
    if (!codecFits(codec, this.ctx.stream)) {
      throw new OpenError();
    }
    const p = parse(codec, frame);
    const generation = p.kid >> 4n;
    const step = Number(p.kid & 0x0fn);
    const g = this.held.get(generation);
    if (g === undefined) {
      throw new OpenError();
    }
    const window = g.windows.get(step);
    if (window !== undefined && !window.check(p.ctr)) {
      throw new OpenError();
    }
    // Forward ratchet to the step the KID names (at most 15 steps from the base key). New
    // steps are kept only once a frame under them authenticates: an unauthenticated frame
    // changes no state.
    const fresh: { stepKey: Secret32; keys: StepKeys }[] = [];
    let out: Uint8Array;
    const known = g.steps[step];
    if (known !== undefined) {
      out = decrypt(known.keys, p, codec);
    } else {
      const last = g.steps[g.steps.length - 1];
      if (last === undefined) {
        throw new OpenError();
      }
      let prev = last.stepKey;
      for (let i = g.steps.length; i <= step; i++) {
        const next = ratchet(prev, this.ctx);
        fresh.push({ stepKey: next, keys: derive(next, kid(generation, i), this.ctx) });
        prev = next;
      }
      const target = fresh[fresh.length - 1];
      if (target === undefined) {
        throw new OpenError();
      }
      try {
        out = decrypt(target.keys, p, codec);
      } catch (e) {
        for (const s of fresh) {
          s.stepKey.zeroize();
          s.keys.key.zeroize();
        }
        throw e;
      }
    }
    g.steps.push(...fresh);
    let w = window;
    if (w === undefined) {
      w = new ReplayWindow();
      g.windows.set(step, w);
    }
    w.commit(p.ctr);
    return out;
  }
}

/**
 * `"confer/1 sender-key" || lp(channel_id) || u64(epoch) || u8(stream) || u64(generation) ||
 * base_key[32]`.
 */
export class SenderKeyMsg {
  constructor(
    /** Channel. */
    readonly channelId: Id16,
    /** Roster epoch the key belongs to. */
    readonly epoch: bigint,
    /** Stream. */
    readonly stream: number,
    /** Generation. */
    readonly generation: bigint,
    /** The base key. */
    readonly baseKey: Secret32,
  ) {}

  /** Encodes (the plaintext of a pairwise message of type 1). */
  encode(): Uint8Array {
    return Writer.label("confer/1 sender-key")
      .lp(this.channelId)
      .u64(this.epoch)
      .u8(this.stream)
      .u64(this.generation)
      .raw(this.baseKey.expose())
      .intoBytes();
  }

  /** Strict decode; throws `OpenError`. */
  static decode(b: Uint8Array): SenderKeyMsg {
    try {
      const r = new Reader(b);
      r.expect("confer/1 sender-key");
      const channelId = r.lp().slice();
      const epoch = r.u64();
      const stream = r.u8();
      const generation = r.u64();
      const key = r.take(32);
      if (channelId.length !== 16 || r.remaining() !== 0 || stream > STREAM_DATA) {
        throw new OpenError();
      }
      return new SenderKeyMsg(channelId, epoch, stream, generation, new Secret32(key));
    } catch {
      throw new OpenError();
    }
  }

  toString(): string {
    return `SenderKeyMsg(epoch ${this.epoch.toString()}, stream ${this.stream.toString()}, generation ${this.generation.toString()}, base_key [redacted])`;
  }
}
