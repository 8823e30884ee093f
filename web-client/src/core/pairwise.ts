// Twin of crates/e2ee/src/pairwise.rs: pairwise messages X -> Y over HPKE (RFC 9180):
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305; mode auth_psk with the invite
// secret, else auth.
//
// @hpke/* is asynchronous (it runs HKDF on Web Crypto), so `seal`, `open` and `openRaw`
// return promises; everything else in core/ is synchronous.

// eslint-disable-next-line @typescript-eslint/triple-slash-reference -- a types-only shim, see the file
/// <reference path="./webcrypto-types.d.ts" />

import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { x25519 } from "@noble/curves/ed25519.js";

import { Writer, asciiBytes, isAllZero, toHex } from "./enc.js";
import type { Identity } from "./identity.js";
import { OpenError } from "./lib.js";
import type { Id16, Rng } from "./lib.js";
import type { Secret32 } from "./secret.js";

/** The psk_id used with invite secrets. */
export const PSK_ID: Uint8Array = asciiBytes("confer/1 invite");

/** What a pairwise message carries. */
export const MsgType = {
  /** A sender key. */
  SenderKey: 1,
  /** Acknowledgment of a sender key. */
  SenderKeyAck: 2,
  /** The consent acknowledgment (party -> mediator). */
  Consent: 3,
  /** Display name and its salt. */
  Name: 4,
  /** A document's key and what it is. */
  DocKey: 5,
  /** A participant's acknowledgment of one version of a document. */
  DocAck: 6,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

/** From the wire code; `undefined` for an unknown type (which is rejected). */
export function msgTypeFromCode(c: number): MsgType | undefined {
  switch (c) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
      return c;
    default:
      return undefined;
  }
}

/** Who sends to whom, in which session. */
export class Pair {
  constructor(
    /** The session id bytes. */
    readonly sessionId: Uint8Array,
    /** Sender participant id. */
    readonly from: Id16,
    /** Recipient participant id. */
    readonly to: Id16,
  ) {}

  /** `"confer/1 hpke" || lp(session_id) || lp(X_id) || lp(Y_id)`. */
  info(): Uint8Array {
    return Writer.label("confer/1 hpke").lp(this.sessionId).lp(this.from).lp(this.to).intoBytes();
  }

  /**
   * `"confer/1 pairwise" || lp(session_id) || lp(X_id) || lp(Y_id) || u8(msg_type) ||
   * u64(seq)`.
   */
  aad(msgType: MsgType, seq: bigint): Uint8Array {
    return Writer.label("confer/1 pairwise")
      .lp(this.sessionId)
      .lp(this.from)
      .lp(this.to)
      .u8(msgType)
      .u64(seq)
      .intoBytes();
  }
}

/** A sealed pairwise message. */
export interface Sealed {
  /** The encapsulated key, 32 bytes. */
  enc: Uint8Array;
  /** Ciphertext with tag. */
  ct: Uint8Array;
}

/** Sealing failed (a bad recipient key, e.g. a small-order point). */
export class SealError extends Error {
  constructor() {
    super("could not seal");
    this.name = "SealError";
  }
}

/** An HPKE pre-shared key and its id (mode auth_psk). */
export interface Psk {
  psk: Uint8Array;
  pskId: Uint8Array;
}

let suiteInstance: CipherSuite | undefined;

function suite(): CipherSuite {
  suiteInstance ??= new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Chacha20Poly1305(),
  });
  return suiteInstance;
}

function buffer(b: Uint8Array): ArrayBuffer {
  return b.slice().buffer;
}

/**
 * Refuses an all-zero X25519 shared secret (RFC 9180 §7.1.4): false when `pk` is of small
 * order, so the DH of `sk` and `pk` would be zero. noble refuses such points itself; the
 * explicit check keeps the rule visible and independent of the library.
 */
function dhIsNonZero(sk: Uint8Array, pk: Uint8Array): boolean {
  try {
    return !isAllZero(x25519.scalarMult(sk, pk));
  } catch {
    return false;
  }
}

/**
 * The HPKE seal underneath `seal`, on raw bytes. Not in the Rust twin (whose `hpke` crate
 * draws the ephemeral key itself); here the ephemeral key is `DeriveKeyPair` of 32 bytes from
 * `rng`, which lets the RFC 9180 vectors check this path too.
 */
export async function sealRaw(
  rng: Rng,
  senderSk: Uint8Array,
  recipientPk: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  psk?: Psk,
): Promise<Sealed> {
  if (senderSk.length !== 32 || recipientPk.length !== 32 || !dhIsNonZero(senderSk, recipientPk)) {
    throw new SealError();
  }
  const ikmE = new Uint8Array(32);
  rng.fill(ikmE);
  try {
    const s = suite();
    const sealed = await s.seal(
      {
        recipientPublicKey: await s.kem.importKey("raw", buffer(recipientPk), true),
        senderKey: await s.kem.importKey("raw", buffer(senderSk), false),
        ekm: ikmE,
        info,
        ...(psk === undefined ? {} : { psk: { key: psk.psk, id: psk.pskId } }),
      },
      plaintext,
      aad,
    );
    const enc = new Uint8Array(sealed.enc);
    if (enc.length !== 32) {
      throw new SealError();
    }
    return { enc, ct: new Uint8Array(sealed.ct) };
  } catch {
    throw new SealError();
  } finally {
    ikmE.fill(0);
  }
}

/** Seals `plaintext` from `sender` to the holder of `recipientEk`. */
export async function seal(
  rng: Rng,
  sender: Identity,
  recipientEk: Uint8Array,
  pair: Pair,
  msgType: MsgType,
  seq: bigint,
  plaintext: Uint8Array,
  psk?: Secret32,
): Promise<Sealed> {
  const sk = sender.ekSecret();
  try {
    return await sealRaw(
      rng,
      sk,
      recipientEk,
      pair.info(),
      pair.aad(msgType, seq),
      plaintext,
      psk === undefined ? undefined : { psk: psk.expose(), pskId: PSK_ID },
    );
  } finally {
    sk.fill(0);
  }
}

/** Opens a message sealed by the holder of `senderEk` to `recipient`; throws `OpenError`. */
export async function open(
  recipient: Identity,
  senderEk: Uint8Array,
  pair: Pair,
  msgType: MsgType,
  seq: bigint,
  sealed: Sealed,
  psk?: Secret32,
): Promise<Uint8Array> {
  const sk = recipient.ekSecret();
  try {
    return await openRaw(
      sk,
      senderEk,
      sealed.enc,
      pair.info(),
      pair.aad(msgType, seq),
      sealed.ct,
      psk === undefined ? undefined : { psk: psk.expose(), pskId: PSK_ID },
    );
  } finally {
    sk.fill(0);
  }
}

/**
 * The HPKE open underneath `open`, on raw bytes (for test vectors): mode auth, or auth_psk
 * when `psk` is given. Throws `OpenError`.
 */
export async function openRaw(
  recipientSk: Uint8Array,
  senderPk: Uint8Array,
  enc: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  ct: Uint8Array,
  psk?: Psk,
): Promise<Uint8Array> {
  if (recipientSk.length !== 32 || senderPk.length !== 32 || enc.length !== 32) {
    throw new OpenError();
  }
  // Both Diffie-Hellman outputs of auth mode: DH(skR, pkE) and DH(skR, pkS).
  if (!dhIsNonZero(recipientSk, enc) || !dhIsNonZero(recipientSk, senderPk)) {
    throw new OpenError();
  }
  try {
    const s = suite();
    const pt = await s.open(
      {
        recipientKey: await s.kem.importKey("raw", buffer(recipientSk), false),
        senderPublicKey: await s.kem.importKey("raw", buffer(senderPk), true),
        enc,
        info,
        ...(psk === undefined ? {} : { psk: { key: psk.psk, id: psk.pskId } }),
      },
      ct,
      aad,
    );
    return new Uint8Array(pt);
  } catch {
    throw new OpenError();
  }
}

/** Per-pair sequence numbers: sends count from 0; receives must strictly increase. */
export class Sequences {
  // Keyed by the peer id in hex (a Uint8Array is no map key).
  private readonly nextSendBy = new Map<string, bigint>();
  private readonly lastRecvBy = new Map<string, bigint>();

  /** The sequence number for the next message to `peer`. */
  nextSend(peer: Id16): bigint {
    const k = toHex(peer);
    const seq = this.nextSendBy.get(k) ?? 0n;
    this.nextSendBy.set(k, seq + 1n);
    return seq;
  }

  /** Whether `seq` from `peer` is new (strictly above the last accepted); does not record it. */
  isFresh(peer: Id16, seq: bigint): boolean {
    const last = this.lastRecvBy.get(toHex(peer));
    return last === undefined || seq > last;
  }

  /** Records an accepted `seq` (after the message opened). */
  accept(peer: Id16, seq: bigint): void {
    this.lastRecvBy.set(toHex(peer), seq);
  }

  /**
   * Forgets what `peer` sent: it announced new keys (a client that lost its keys counts from 0
   * again). Messages sealed under its old keys no longer open, so nothing replays.
   */
  forgetReceived(peer: Id16): void {
    this.lastRecvBy.delete(toHex(peer));
  }
}
