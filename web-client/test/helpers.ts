// Test helpers; twin of crates/e2ee/tests/common/mod.rs (TestRng, hex, add_l) plus a strict
// reader of JSON values for the vector runner.

import { sha256 } from "@noble/hashes/sha2.js";

import { concat, fromHex, toHex, u64Bytes } from "../src/core/enc.js";
import type { Rng } from "../src/core/lib.js";

export { fromHex as unhex, toHex as hex };

/** A deterministic RNG for tests: SHA-256 in counter mode over a seed label (as Rust's). */
export class TestRng implements Rng {
  private readonly seed: Uint8Array;
  private counter = 0n;
  private buf: number[] = [];

  constructor(label: string) {
    this.seed = sha256(new TextEncoder().encode(label));
  }

  fill(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      if (this.buf.length === 0) {
        this.buf = [...sha256(concat(this.seed, u64Bytes(this.counter)))];
        this.counter += 1n;
      }
      bytes[i] = this.buf.shift() ?? 0;
    }
  }

  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    this.fill(b);
    return b;
  }
}

/** An Rng that hands out fixed bytes (for RFC vectors), then fails. */
export class FixedRng implements Rng {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  fill(out: Uint8Array): void {
    if (this.at + out.length > this.bytes.length) {
      throw new Error("FixedRng exhausted");
    }
    out.set(this.bytes.subarray(this.at, this.at + out.length));
    this.at += out.length;
  }
}

/** `n` copies of byte `b`. */
export function filled(n: number, b: number): Uint8Array {
  return new Uint8Array(n).fill(b);
}

const L_BYTES = fromHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

/** Adds the group order L to a little-endian scalar (turns a canonical Ed25519 S into S + L). */
export function addL(s: Uint8Array): void {
  let carry = 0;
  for (let i = 0; i < 32; i++) {
    const v = (s[i] ?? 0) + (L_BYTES[i] ?? 0) + carry;
    s[i] = v & 0xff;
    carry = v >> 8;
  }
}

/** UTF-8 bytes of a test string. */
export function utf8(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

// A strict reader of the vectors' JSON: every field has the type §14 gives it, or the test
// fails naming the field and the case.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Obj = Record<string, Json>;

export function isObj(v: Json | undefined): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function where(c: Obj): string {
  const n = c["name"];
  return typeof n === "string" ? n : JSON.stringify(c).slice(0, 80);
}

/** A string field. */
export function str(c: Obj, k: string): string {
  const v = c[k];
  if (typeof v !== "string") {
    throw new Error(`${k} missing or not a string in ${where(c)}`);
  }
  return v;
}

/** A hex field, decoded; with `n`, it must be exactly `n` bytes. */
export function bytes(c: Obj, k: string, n?: number): Uint8Array {
  const b = fromHex(str(c, k));
  if (n !== undefined && b.length !== n) {
    throw new Error(`${k} of ${where(c)} is ${b.length.toString()} bytes, not ${n.toString()}`);
  }
  return b;
}

/** A u64: a decimal string without leading zeros (§14). */
export function u64(c: Obj, k: string): bigint {
  const t = str(c, k);
  if (!/^(0|[1-9][0-9]*)$/.test(t)) {
    throw new Error(`${k} of ${where(c)} is not a canonical u64`);
  }
  const v = BigInt(t);
  if (v >= 1n << 64n) {
    throw new Error(`${k} of ${where(c)} is above 2^64 - 1`);
  }
  return v;
}

/** A u8: a JSON number. */
export function byte(c: Obj, k: string): number {
  const v = c[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 255) {
    throw new Error(`${k} of ${where(c)} is not a u8`);
  }
  return v;
}

/** An array field. */
export function arr(c: Obj, k: string): Json[] {
  const v = c[k];
  if (!Array.isArray(v)) {
    throw new Error(`${k} missing or not an array in ${where(c)}`);
  }
  return v;
}

/** An array of objects. */
export function objs(c: Obj, k: string): Obj[] {
  return arr(c, k).map((v) => {
    if (!isObj(v)) {
      throw new Error(`${k} of ${where(c)} holds a non-object`);
    }
    return v;
  });
}

/** Runs `f` and returns what it threw (failing when it did not throw). */
export async function thrown(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a refusal, got success");
}
