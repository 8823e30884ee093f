// Twin of crates/proto/src/envelope.rs: what clients put in `relay.data`, a small JSON
// envelope with a kind `k` and base64url fields (confer/1 §13). The server sees the kind and
// the sizes; every secret inside is encrypted. The bytes are pinned by the `envelope` cases of
// tests/vectors/v1/messages.json.
//
// Parsing follows the Rust twin's serde rules: the kind `k` picks the variant, every field of
// the variant must be present with its type (bytes as unpadded, canonical base64url), optional
// fields may be absent or null, unknown fields are ignored. `toData` writes `k` first, then the
// fields in the order of §13's table, leaving out absent optional fields.
//
// Where JSON numbers meet JavaScript: `seq` is a u64 in Rust; here a `seq` above 2^53 - 1 is
// refused (it would have lost precision in JSON.parse), and a number written with a fraction
// or exponent that equals an integer (`2.0`) reads as that integer, which serde would refuse.
// Neither is ever sent (§13: sequence numbers stay far below 2^53).

/** The relayed payload. */
export type Envelope =
  | {
      /** A signed announcement of identity and session keys. */
      k: "announce";
      /** Participant id (16 bytes). */
      pid: Uint8Array;
      /** Role code. */
      role: number;
      /** Ed25519 public key. */
      ik: Uint8Array;
      /** X25519 public key. */
      ek: Uint8Array;
      /** Signature. */
      sig: Uint8Array;
    }
  | {
      /** A pairwise HPKE message. */
      k: "pw";
      /** Message type (1 sender key, 2 ack, 3 consent, 4 name). */
      t: number;
      /** Sequence number for this ordered pair. */
      seq: bigint;
      /** HPKE encapsulated key. */
      enc: Uint8Array;
      /** Ciphertext. */
      ct: Uint8Array;
      /**
       * For auth_psk: which invite secret (8 bytes of its hash), so the mediator picks the
       * right one without trial decryption.
       */
      hint?: Uint8Array;
    }
  | {
      /** A signed roster and the server channel it is for. */
      k: "roster";
      /** The server channel (`joint`, `caucus-A`, ...). */
      ch: string;
      /** Canonical roster bytes. */
      enc: Uint8Array;
      /** Signature. */
      sig: Uint8Array;
      /** A co-mediator's roster: its identity key, delegated by the mediator (§5.3). */
      dik?: Uint8Array;
      /** The mediator's delegation signature over `dik` (scope 1). */
      dsig?: Uint8Array;
    }
  | {
      /** The mediator's delegation of roster signing to a co-mediator (§5.3), sent to it. */
      k: "delegate";
      /** The co-mediator's identity key. */
      ik: Uint8Array;
      /** The delegation signature (scope 1). */
      sig: Uint8Array;
    }
  | {
      /** A chat frame (stream 3). */
      k: "chat";
      /** Channel id (16 bytes). */
      cid: Uint8Array;
      /** The frame. */
      f: Uint8Array;
    };

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64_INDEX = new Map<string, number>(Array.from({ length: 64 }, (_, i) => [B64.charAt(i), i]));

/** Unpadded base64url (RFC 4648 §5). */
export function base64urlEncode(b: Uint8Array): string {
  let out = "";
  for (let i = 0; i < b.length; i += 3) {
    const n = ((b[i] ?? 0) << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    const chars = b.length - i >= 3 ? 4 : b.length - i + 1;
    for (let k = 0; k < chars; k++) {
      out += B64[(n >> (18 - 6 * k)) & 0x3f] ?? "";
    }
  }
  return out;
}

/**
 * Strict unpadded base64url, as Rust's `URL_SAFE_NO_PAD`: no padding, no other characters,
 * no impossible length, and the unused bits of the last character must be zero (one spelling
 * per byte string). `undefined` otherwise.
 */
export function base64urlDecode(s: string): Uint8Array | undefined {
  if (s.length % 4 === 1) {
    return undefined;
  }
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let at = 0;
  for (let i = 0; i < s.length; i += 4) {
    const chunk = s.slice(i, i + 4);
    let n = 0;
    for (let k = 0; k < 4; k++) {
      const c = chunk[k];
      const v = c === undefined ? 0 : B64_INDEX.get(c);
      if (v === undefined) {
        return undefined;
      }
      n = (n << 6) | v;
    }
    const bytes = chunk.length - 1;
    // The bits below the last whole byte must be zero (canonical encoding).
    if ((chunk.length === 2 && (n & 0xffff) !== 0) || (chunk.length === 3 && (n & 0xff) !== 0)) {
      return undefined;
    }
    for (let k = 0; k < bytes; k++) {
      out[at++] = (n >> (16 - 8 * k)) & 0xff;
    }
  }
  return out;
}

type Fields = Record<string, unknown>;

function isFields(v: unknown): v is Fields {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class Malformed extends Error {}

function bytesField(o: Fields, k: string): Uint8Array {
  const v = o[k];
  const b = typeof v === "string" ? base64urlDecode(v) : undefined;
  if (b === undefined) {
    throw new Malformed();
  }
  return b;
}

function optionalBytes(o: Fields, k: string): Uint8Array | undefined {
  return o[k] === undefined || o[k] === null ? undefined : bytesField(o, k);
}

function u8Field(o: Fields, k: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 255) {
    throw new Malformed();
  }
  return v;
}

function seqField(o: Fields, k: string): bigint {
  const v = o[k];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new Malformed();
  }
  return BigInt(v);
}

function stringField(o: Fields, k: string): string {
  const v = o[k];
  if (typeof v !== "string") {
    throw new Malformed();
  }
  return v;
}

function fromFields(o: Fields): Envelope | undefined {
  switch (o["k"]) {
    case "announce":
      return {
        k: "announce",
        pid: bytesField(o, "pid"),
        role: u8Field(o, "role"),
        ik: bytesField(o, "ik"),
        ek: bytesField(o, "ek"),
        sig: bytesField(o, "sig"),
      };
    case "pw": {
      const hint = optionalBytes(o, "hint");
      return {
        k: "pw",
        t: u8Field(o, "t"),
        seq: seqField(o, "seq"),
        enc: bytesField(o, "enc"),
        ct: bytesField(o, "ct"),
        ...(hint === undefined ? {} : { hint }),
      };
    }
    case "roster": {
      const dik = optionalBytes(o, "dik");
      const dsig = optionalBytes(o, "dsig");
      return {
        k: "roster",
        ch: stringField(o, "ch"),
        enc: bytesField(o, "enc"),
        sig: bytesField(o, "sig"),
        ...(dik === undefined ? {} : { dik }),
        ...(dsig === undefined ? {} : { dsig }),
      };
    }
    case "delegate":
      return { k: "delegate", ik: bytesField(o, "ik"), sig: bytesField(o, "sig") };
    case "chat":
      return { k: "chat", cid: bytesField(o, "cid"), f: bytesField(o, "f") };
    default:
      return undefined;
  }
}

/** From a `relay.data` string; `undefined` for anything that is not a valid envelope. */
export function envelopeFromData(s: string): Envelope | undefined {
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    return undefined;
  }
  if (!isFields(v)) {
    return undefined;
  }
  try {
    return fromFields(v);
  } catch (e) {
    if (e instanceof Malformed) {
      return undefined;
    }
    throw e;
  }
}

/** To the `relay.data` string. */
export function envelopeToData(e: Envelope): string {
  const b = base64urlEncode;
  let o: Record<string, string | number>;
  switch (e.k) {
    case "announce":
      o = { k: e.k, pid: b(e.pid), role: e.role, ik: b(e.ik), ek: b(e.ek), sig: b(e.sig) };
      break;
    case "pw":
      if (e.seq > BigInt(Number.MAX_SAFE_INTEGER) || e.seq < 0n) {
        throw new RangeError("a pairwise seq stays below 2^53");
      }
      o = { k: e.k, t: e.t, seq: Number(e.seq), enc: b(e.enc), ct: b(e.ct) };
      if (e.hint !== undefined) {
        o["hint"] = b(e.hint);
      }
      break;
    case "roster":
      o = { k: e.k, ch: e.ch, enc: b(e.enc), sig: b(e.sig) };
      if (e.dik !== undefined) {
        o["dik"] = b(e.dik);
      }
      if (e.dsig !== undefined) {
        o["dsig"] = b(e.dsig);
      }
      break;
    case "delegate":
      o = { k: e.k, ik: b(e.ik), sig: b(e.sig) };
      break;
    case "chat":
      o = { k: e.k, cid: b(e.cid), f: b(e.f) };
      break;
  }
  return JSON.stringify(o);
}
