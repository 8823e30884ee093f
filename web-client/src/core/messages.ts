// Twin of crates/e2ee/src/messages.rs: the plaintexts of pairwise messages other than sender
// keys, and the other small encodings a client needs (confer/1 §6.4, §12, §13, §15.6). Each
// has one `encode` and one strict `decode`; the bytes are pinned by
// tests/vectors/v1/messages.json.
//
//   consent signed = "confer/1 consent" || lp(session_id) || lp(participant_id)
//                    || agreement_hash[32] || u8(attestations)
//   type 3 (consent acknowledgment) = agreement_hash[32] || u8(attestations) || consent_sig[64]
//   type 2 (sender-key ack) = "confer/1 sender-key-ack" || lp(channel_id) || u64(epoch)
//                             || u8(stream) || u64(generation)
//   type 4 (display name)   = lp(salt[16]) || lp(UTF-8 name)           name_commit = SHA-256(
//                             "confer/1 name" || type 4 plaintext)
//   psk hint = SHA-256("confer/1 psk-hint" || invite secret)[..8]

import { sha256 } from "@noble/hashes/sha2.js";

import { Reader, Writer, asciiBytes, concat, utf8Decode, utf8Encode } from "./enc.js";
import { STREAM_DATA } from "./frame.js";
import { MAX_NAME_BYTES } from "./identity.js";
import { OpenError } from "./lib.js";
import type { Id16, Rng } from "./lib.js";
import type { Secret32 } from "./secret.js";

/** Consent attestation bit 0: "I will not record". */
export const ATTEST_NO_RECORDING = 1;
/** Consent attestation bit 1: "nobody else is present". */
export const ATTEST_NOBODY_ELSE = 2;
/** Every attestation confer/1 defines; a consent must carry all of them and no other bit. */
export const ATTEST_ALL = ATTEST_NO_RECORDING | ATTEST_NOBODY_ELSE;

/** What a participant signs when it acknowledges the agreement to mediate. */
export function consentSignedBytes(
  sessionId: Uint8Array,
  participantId: Id16,
  agreementHash: Uint8Array,
  attestations: number,
): Uint8Array {
  return Writer.label("confer/1 consent")
    .lp(sessionId)
    .lp(participantId)
    .raw(agreementHash)
    .u8(attestations)
    .intoBytes();
}

/** The plaintext of a consent acknowledgment (pairwise type 3), 97 bytes. */
export class ConsentAck {
  constructor(
    /** SHA-256 of the agreement text the participant was shown. */
    readonly agreementHash: Uint8Array,
    /** Attestation bits (`ATTEST_ALL` for a valid consent). */
    readonly attestations: number,
    /** The participant's signature over `consentSignedBytes`. */
    readonly signature: Uint8Array,
  ) {}

  /** The 97 bytes. */
  encode(): Uint8Array {
    if (this.agreementHash.length !== 32 || this.signature.length !== 64) {
      throw new RangeError("a consent carries a 32-byte hash and a 64-byte signature");
    }
    return new Writer().raw(this.agreementHash).u8(this.attestations).raw(this.signature).intoBytes();
  }

  /** Exactly 97 bytes; any other length is refused with `OpenError`. */
  static decode(b: Uint8Array): ConsentAck {
    try {
      const r = new Reader(b);
      const agreementHash = r.array(32);
      const attestations = r.u8();
      const signature = r.array(64);
      if (r.remaining() !== 0) {
        throw new OpenError();
      }
      return new ConsentAck(agreementHash, attestations, signature);
    } catch {
      throw new OpenError();
    }
  }
}

/**
 * The plaintext of a sender-key acknowledgment (pairwise type 2): the fields of the type 1
 * it acknowledges, without the key.
 */
export class SenderKeyAck {
  constructor(
    /** Channel. */
    readonly channelId: Id16,
    /** Roster epoch of the key. */
    readonly epoch: bigint,
    /** Stream. */
    readonly stream: number,
    /** Generation. */
    readonly generation: bigint,
  ) {}

  /** Encodes. */
  encode(): Uint8Array {
    return Writer.label("confer/1 sender-key-ack")
      .lp(this.channelId)
      .u64(this.epoch)
      .u8(this.stream)
      .u64(this.generation)
      .intoBytes();
  }

  /**
   * Strict decode: the label, a 16-byte channel id, a stream of at most 3, nothing after.
   * Throws `OpenError`.
   */
  static decode(b: Uint8Array): SenderKeyAck {
    try {
      const r = new Reader(b);
      r.expect("confer/1 sender-key-ack");
      const channelId = r.lp().slice();
      const epoch = r.u64();
      const stream = r.u8();
      const generation = r.u64();
      if (channelId.length !== 16 || r.remaining() !== 0 || stream > STREAM_DATA) {
        throw new OpenError();
      }
      return new SenderKeyAck(channelId, epoch, stream, generation);
    } catch {
      throw new OpenError();
    }
  }
}

/** A display name and its salt (pairwise type 4). The roster carries only its commitment. */
export class NameMsg {
  constructor(
    /** Fresh random salt, 16 bytes. */
    readonly salt: Uint8Array,
    /** The name, at most `MAX_NAME_BYTES` of UTF-8. */
    readonly name: string,
  ) {}

  /**
   * Rust: `NameMsg::new`. A name with a fresh salt; `undefined` for an empty name or one over
   * `MAX_NAME_BYTES` (or not a Unicode string).
   */
  static create(name: string, rng: Rng): NameMsg | undefined {
    const bytes = utf8Encode(name);
    if (bytes === undefined || bytes.length === 0 || bytes.length > MAX_NAME_BYTES) {
      return undefined;
    }
    const salt = new Uint8Array(16);
    rng.fill(salt);
    return new NameMsg(salt, name);
  }

  /** `lp(salt) || lp(name)`. */
  encode(): Uint8Array {
    const bytes = utf8Encode(this.name);
    if (bytes === undefined) {
      throw new RangeError("a display name is a Unicode string");
    }
    return new Writer().lp(this.salt).lp(bytes).intoBytes();
  }

  /**
   * Strict decode: a 16-byte salt, 1 to `MAX_NAME_BYTES` bytes of UTF-8, nothing after.
   * Throws `OpenError`.
   */
  static decode(b: Uint8Array): NameMsg {
    let salt: Uint8Array;
    let name: Uint8Array;
    try {
      const r = new Reader(b);
      salt = r.lp().slice();
      name = r.lp();
      if (salt.length !== 16 || r.remaining() !== 0 || name.length === 0 || name.length > MAX_NAME_BYTES) {
        throw new OpenError();
      }
    } catch {
      throw new OpenError();
    }
    const text = utf8Decode(name);
    if (text === undefined) {
      throw new OpenError();
    }
    return new NameMsg(salt, text);
  }

  /** The roster's `name_commit` for this name: `SHA-256("confer/1 name" || encode())`. */
  commit(): Uint8Array {
    return sha256(concat(asciiBytes("confer/1 name"), this.encode()));
  }

  // A name is personal data: never in logs.
  toString(): string {
    return "NameMsg([redacted])";
  }

  toJSON(): string {
    return "NameMsg([redacted])";
  }
}

/**
 * Which invite secret a pairwise message uses (the relay envelope's `hint`), so the
 * mediator's client picks it without trial decryption.
 */
export function pskHint(psk: Secret32): Uint8Array {
  return sha256(concat(asciiBytes("confer/1 psk-hint"), psk.expose())).slice(0, 8);
}
