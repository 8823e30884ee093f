// Twin of crates/e2ee/src/enc.rs: big-endian fixed-width integers and `lp(x) = u16(len(x)) || x`.
// Everything signed, hashed or used as AAD is built with these; never JSON.
//
// TypeScript has no fixed-size arrays, so this file also holds the byte helpers the Rust
// twin gets from the language: equality and ordering of byte strings, hex for map keys, and
// strict UTF-8 (ES2022 has no TextEncoder).

const U16_MAX = 0xffff;
const U64_LIMIT = 1n << 64n;

/** Throws a RangeError unless `v` is a u64. A caller's bug, never a property of received data. */
export function assertU64(v: bigint, what = "u64"): void {
  if (v < 0n || v >= U64_LIMIT) {
    throw new RangeError(`${what} out of the u64 range`);
  }
}

/** Appends big-endian integers and length-prefixed byte strings. */
export class Writer {
  private parts: number[] = [];

  /** Starts with a label (e.g. `"confer/1 roster"`). */
  static label(label: string): Writer {
    const w = new Writer();
    return w.raw(asciiBytes(label));
  }

  /** Raw bytes. */
  raw(b: Uint8Array): this {
    for (const x of b) {
      this.parts.push(x);
    }
    return this;
  }

  /** `u8`. */
  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) {
      throw new RangeError("u8 out of range");
    }
    this.parts.push(v);
    return this;
  }

  /** `u16` big-endian. */
  u16(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > U16_MAX) {
      throw new RangeError("u16 out of range");
    }
    this.parts.push(v >> 8, v & 0xff);
    return this;
  }

  /** `u64` big-endian. */
  u64(v: bigint): this {
    return this.raw(u64Bytes(v));
  }

  /**
   * `lp(x)`: throws only if `x` is over 65,535 bytes, which no caller allows (ids are 16
   * bytes, session ids at most 64, names are bounded by the caller).
   */
  lp(x: Uint8Array): this {
    if (x.length > U16_MAX) {
      throw new RangeError("lp() input over 65535 bytes");
    }
    return this.u16(x.length).raw(x);
  }

  /** The bytes. */
  intoBytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** The input ended early or had the wrong shape. */
export class Truncated extends Error {
  constructor() {
    super("truncated");
    this.name = "Truncated";
  }
}

/** Reads what `Writer` wrote; every read is bounds-checked. */
export class Reader {
  private buf: Uint8Array;

  /** Over `buf`. */
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }

  /** Bytes not yet read. */
  remaining(): number {
    return this.buf.length;
  }

  /** Exactly `n` bytes (a view into the input). */
  take(n: number): Uint8Array {
    if (this.buf.length < n) {
      throw new Truncated();
    }
    const a = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return a;
  }

  /** A fixed-size field of `n` bytes, copied out of the input. */
  array(n: number): Uint8Array {
    return this.take(n).slice();
  }

  /** Expects these exact bytes. */
  expect(label: string): void {
    if (!bytesEqual(this.take(label.length), asciiBytes(label))) {
      throw new Truncated();
    }
  }

  /** `u8`. */
  u8(): number {
    return this.take(1)[0] ?? 0;
  }

  /** `u16`. */
  u16(): number {
    const b = this.take(2);
    return ((b[0] ?? 0) << 8) | (b[1] ?? 0);
  }

  /** `u64`. */
  u64(): bigint {
    return bytesToU64(this.take(8));
  }

  /** `lp(x)`. */
  lp(): Uint8Array {
    return this.take(this.u16());
  }
}

/** `u64(v)`: eight bytes, big-endian. */
export function u64Bytes(v: bigint): Uint8Array {
  assertU64(v);
  const out = new Uint8Array(8);
  let x = v;
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** A big-endian unsigned integer of up to 8 bytes. */
export function bytesToU64(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) {
    v = (v << 8n) | BigInt(x);
  }
  return v;
}

/** The bytes of an ASCII label, exactly as written. */
export function asciiBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) {
      throw new RangeError("a label is ASCII");
    }
    out[i] = c;
  }
  return out;
}

/** Concatenation. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) {
    n += p.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Byte-for-byte equality (not constant-time; nothing here compares secrets). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

/** Lexicographic order of byte strings (Rust's `Ord` for `[u8; N]` and `Vec<u8>`). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) {
      return d;
    }
  }
  return a.length - b.length;
}

/** True when every byte is zero. */
export function isAllZero(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

/** Lowercase hex (map keys, vectors). */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) {
    s += x.toString(16).padStart(2, "0");
  }
  return s;
}

/** Strict lowercase-or-uppercase hex of even length; throws a RangeError otherwise. */
export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new RangeError("not hex");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/**
 * The UTF-8 bytes of a string, or `undefined` when it holds a lone surrogate (which no UTF-8
 * string, and no Rust `&str`, can carry).
 */
export function utf8Encode(s: string): Uint8Array | undefined {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const lo = s.charCodeAt(i + 1);
      if (!(lo >= 0xdc00 && lo <= 0xdfff)) {
        return undefined;
      }
      c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return undefined;
    }
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    } else {
      out.push(
        0xf0 | (c >> 18),
        0x80 | ((c >> 12) & 0x3f),
        0x80 | ((c >> 6) & 0x3f),
        0x80 | (c & 0x3f),
      );
    }
  }
  return Uint8Array.from(out);
}

/**
 * Strict UTF-8 decoding (Rust's `std::str::from_utf8`): overlong forms, surrogates, code
 * points above U+10FFFF and truncated sequences are refused with `undefined`.
 */
export function utf8Decode(b: Uint8Array): string | undefined {
  let s = "";
  let i = 0;
  while (i < b.length) {
    const x = b[i] ?? 0;
    let need: number;
    let c: number;
    let min: number;
    if (x < 0x80) {
      s += String.fromCharCode(x);
      i++;
      continue;
    } else if (x >= 0xc2 && x <= 0xdf) {
      need = 1;
      c = x & 0x1f;
      min = 0x80;
    } else if (x >= 0xe0 && x <= 0xef) {
      need = 2;
      c = x & 0x0f;
      min = 0x800;
    } else if (x >= 0xf0 && x <= 0xf4) {
      need = 3;
      c = x & 0x07;
      min = 0x10000;
    } else {
      return undefined;
    }
    if (i + need >= b.length) {
      return undefined;
    }
    for (let k = 1; k <= need; k++) {
      const y = b[i + k] ?? 0;
      if ((y & 0xc0) !== 0x80) {
        return undefined;
      }
      c = (c << 6) | (y & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
      return undefined;
    }
    s += String.fromCodePoint(c);
    i += need + 1;
  }
  return s;
}
