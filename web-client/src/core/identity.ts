// Twin of crates/e2ee/src/identity.rs: identity keys (Ed25519, `IK`), session keys (X25519,
// `EK`), announcements, delegation and name commitments.

import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { sha256, sha512 } from "@noble/hashes/sha2.js";

import { Writer, bytesEqual, concat, utf8Encode } from "./enc.js";
import { OpenError } from "./lib.js";
import type { Id16, Rng } from "./lib.js";

/** A participant's role, as crates/proto's `Role` spells it (snake_case on the wire). */
export type Role = "mediator" | "co_mediator" | "party" | "counsel" | "observer";

/** The wire code of a role in rosters and announcements. */
export function roleCode(r: Role): number {
  switch (r) {
    case "mediator":
      return 0;
    case "co_mediator":
      return 1;
    case "party":
      return 2;
    case "counsel":
      return 3;
    case "observer":
      return 4;
  }
}

/** The role of a wire code; `undefined` for unknown codes (which are rejected). */
export function roleFromCode(c: number): Role | undefined {
  switch (c) {
    case 0:
      return "mediator";
    case 1:
      return "co_mediator";
    case 2:
      return "party";
    case 3:
      return "counsel";
    case 4:
      return "observer";
    default:
      return undefined;
  }
}

/**
 * RFC 7748 `decodeScalar25519`: X25519 secrets are stored clamped (§15.3). The
 * Diffie-Hellman result is the same as with the unclamped bytes.
 */
export function clampX25519(secret: Uint8Array): Uint8Array {
  const s = secret.slice();
  s[0] = (s[0] ?? 0) & 248;
  s[31] = ((s[31] ?? 0) & 127) | 64;
  return s;
}

/** A participant's keys for one session: `IK` signs, `EK` receives pairwise messages. */
export class Identity {
  readonly #ikSeed: Uint8Array;
  readonly #ikPub: Uint8Array;
  readonly #ekSecret: Uint8Array;
  readonly #ekPub: Uint8Array;

  private constructor(ikSeed: Uint8Array, ekSecret: Uint8Array) {
    this.#ikSeed = ikSeed.slice();
    this.#ikPub = ed25519.getPublicKey(this.#ikSeed);
    this.#ekSecret = clampX25519(ekSecret);
    this.#ekPub = x25519.getPublicKey(this.#ekSecret);
  }

  /** Fresh keys. */
  static generate(rng: Rng): Identity {
    const ik = new Uint8Array(32);
    const ek = new Uint8Array(32);
    rng.fill(ik);
    rng.fill(ek);
    const id = new Identity(ik, ek);
    ik.fill(0);
    ek.fill(0);
    return id;
  }

  /** From an Ed25519 seed and an X25519 secret (test vectors, key restore). */
  static fromSecrets(ikSeed: Uint8Array, ekSecret: Uint8Array): Identity {
    if (ikSeed.length !== 32 || ekSecret.length !== 32) {
      throw new OpenError();
    }
    return new Identity(ikSeed, ekSecret);
  }

  /** The Ed25519 public key. */
  ikPub(): Uint8Array {
    return this.#ikPub.slice();
  }

  /** The X25519 public key. */
  ekPub(): Uint8Array {
    return this.#ekPub.slice();
  }

  /** The X25519 secret, clamped (for pairwise.ts; Rust: `pub(crate)`). */
  ekSecret(): Uint8Array {
    return this.#ekSecret.slice();
  }

  /** Signs bytes (deterministic, RFC 8032). */
  sign(msg: Uint8Array): Uint8Array {
    return ed25519.sign(msg, this.#ikSeed);
  }

  /** A signed announcement of this identity for `participantId` in `sessionId`. */
  announce(sessionId: Uint8Array, participantId: Id16, role: Role): Announcement {
    const a = new Announcement(participantId, role, this.ikPub(), this.ekPub(), new Uint8Array(64));
    a.signature = this.sign(a.signedBytes(sessionId));
    return a;
  }

  /** The mediator delegates roster signing to a co-mediator's identity key. */
  delegate(sessionId: Uint8Array, coIk: Uint8Array, scope: number): Uint8Array {
    return this.sign(delegationBytes(sessionId, coIk, scope));
  }

  /** Wipes the secrets (Rust: zeroized on drop). */
  zeroize(): void {
    this.#ikSeed.fill(0);
    this.#ekSecret.fill(0);
  }

  toString(): string {
    return "Identity([redacted])";
  }

  toJSON(): string {
    return "Identity([redacted])";
  }
}

const Point = ed25519.Point;
const L = Point.CURVE().n;

function scalarLE(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) {
    v = (v << 8n) | BigInt(b[i] ?? 0);
  }
  return v;
}

/**
 * Verifies an Ed25519 signature strictly (§5.4), as `ed25519-dalek`'s `verify_strict` plus
 * the weak-key and canonical-key checks of the Rust twin: canonical S and A, no small-order
 * A or R, canonical R, and the cofactorless equation `[S]B = R + [k]A`. Throws `OpenError`.
 *
 * noble's `verify` with `zip215: false` checks canonical encodings, `S < L` and a small-order
 * A, but uses the cofactored equation and lets a small-order R through; the two explicit
 * checks below close that gap, so both twins accept exactly the same signatures.
 */
export function verify(ikPub: Uint8Array, msg: Uint8Array, sig: Uint8Array): void {
  if (ikPub.length !== 32 || sig.length !== 64) {
    throw new OpenError();
  }
  const rBytes = sig.subarray(0, 32);
  const s = scalarLE(sig.subarray(32));
  let a;
  let r;
  try {
    a = Point.fromBytes(ikPub, false);
    r = Point.fromBytes(rBytes, false);
  } catch {
    throw new OpenError();
  }
  // A: a canonical encoding of a point that is not of small order.
  if (a.isSmallOrder() || !bytesEqual(a.toBytes(), ikPub)) {
    throw new OpenError();
  }
  // R: not of small order (noble does not check this), S canonical.
  if (r.isSmallOrder() || s >= L) {
    throw new OpenError();
  }
  if (!ed25519.verify(sig, msg, ikPub, { zip215: false })) {
    throw new OpenError();
  }
  // The cofactorless equation, comparing encodings byte for byte: R = [S]B - [k]A.
  const k = scalarLE(sha512(concat(rBytes, ikPub, msg))) % L;
  const expected = Point.BASE.multiplyUnsafe(s).subtract(a.multiplyUnsafe(k));
  if (!bytesEqual(expected.toBytes(), rBytes)) {
    throw new OpenError();
  }
}

/**
 * `Sign(IK, "confer/1 announce" || lp(session_id) || lp(participant_id) || u8(role) ||
 * IK_pub || EK_pub)`.
 */
export class Announcement {
  constructor(
    /** 16 bytes. */
    public participantId: Id16,
    /** Claimed role. */
    public role: Role,
    /** Ed25519 public key. */
    public ikPub: Uint8Array,
    /** X25519 public key. */
    public ekPub: Uint8Array,
    /** Signature by `ikPub`. */
    public signature: Uint8Array,
  ) {}

  /** The signed bytes. */
  signedBytes(sessionId: Uint8Array): Uint8Array {
    return Writer.label("confer/1 announce")
      .lp(sessionId)
      .lp(this.participantId)
      .u8(roleCode(this.role))
      .raw(this.ikPub)
      .raw(this.ekPub)
      .intoBytes();
  }

  /** Checks the self-signature; throws `OpenError`. */
  verify(sessionId: Uint8Array): void {
    if (this.participantId.length !== 16 || this.ekPub.length !== 32) {
      throw new OpenError();
    }
    verify(this.ikPub, this.signedBytes(sessionId), this.signature);
  }
}

/** `"confer/1 delegate" || lp(session_id) || IK_co || u8(scope)`. */
export function delegationBytes(sessionId: Uint8Array, coIk: Uint8Array, scope: number): Uint8Array {
  return Writer.label("confer/1 delegate").lp(sessionId).raw(coIk).u8(scope).intoBytes();
}

/** Delegation scope: may sign rosters. */
export const SCOPE_ROSTERS = 1;

/** Longest display name, in bytes of UTF-8. */
export const MAX_NAME_BYTES = 1024;

/**
 * `SHA256("confer/1 name" || lp(salt16) || lp(utf8 name))`; `undefined` for a name over
 * `MAX_NAME_BYTES` (or one that is not a Unicode string: a lone surrogate).
 */
export function nameCommit(salt: Uint8Array, name: string): Uint8Array | undefined {
  const bytes = utf8Encode(name);
  if (bytes === undefined || bytes.length > MAX_NAME_BYTES || salt.length !== 16) {
    return undefined;
  }
  return sha256(Writer.label("confer/1 name").lp(salt).lp(bytes).intoBytes());
}
