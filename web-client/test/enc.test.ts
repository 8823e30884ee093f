// The byte encoding (crates/e2ee/src/enc.rs) and the helpers TypeScript needs besides it.

import { describe, expect, it } from "vitest";

import {
  Reader,
  Truncated,
  Writer,
  compareBytes,
  fromHex,
  toHex,
  u64Bytes,
  utf8Decode,
  utf8Encode,
} from "../src/core/enc.js";
import { TestRng } from "./helpers.js";

describe("Writer and Reader", () => {
  it("write and read labels, u8, u16, u64 big-endian and lp()", () => {
    const b = Writer.label("confer/1 x")
      .u8(7)
      .u16(0x0102)
      .u64(0x0102030405060708n)
      .lp(Uint8Array.of(9, 9))
      .intoBytes();
    expect(toHex(b)).toBe(toHex(new TextEncoder().encode("confer/1 x")) + "07" + "0102" + "0102030405060708" + "00020909");
    const r = new Reader(b);
    r.expect("confer/1 x");
    expect(r.u8()).toBe(7);
    expect(r.u16()).toBe(0x0102);
    expect(r.u64()).toBe(0x0102030405060708n);
    expect(toHex(r.lp())).toBe("0909");
    expect(r.remaining()).toBe(0);
    expect(() => r.u8()).toThrow(Truncated);
  });

  it("refuse short input, a wrong label and lp() over 65,535 bytes", () => {
    expect(() => new Reader(Uint8Array.of(0, 3, 1)).lp()).toThrow(Truncated);
    expect(() => {
      new Reader(new TextEncoder().encode("confer/1 y")).expect("confer/1 x");
    }).toThrow(Truncated);
    expect(() => new Writer().lp(new Uint8Array(65536))).toThrow(RangeError);
    expect(new Writer().lp(new Uint8Array(65535)).intoBytes().length).toBe(65537);
  });

  it("keep u64 in range: 2^64 - 1 is the largest", () => {
    expect(toHex(u64Bytes((1n << 64n) - 1n))).toBe("ff".repeat(8));
    expect(() => u64Bytes(1n << 64n)).toThrow(RangeError);
    expect(() => u64Bytes(-1n)).toThrow(RangeError);
    expect(new Reader(fromHex("ff".repeat(8))).u64()).toBe((1n << 64n) - 1n);
  });

  it("order byte strings as Rust does", () => {
    expect(compareBytes(Uint8Array.of(1, 2), Uint8Array.of(1, 3))).toBeLessThan(0);
    expect(compareBytes(Uint8Array.of(2), Uint8Array.of(1, 9))).toBeGreaterThan(0);
    expect(compareBytes(Uint8Array.of(1), Uint8Array.of(1, 0))).toBeLessThan(0);
    expect(compareBytes(Uint8Array.of(1, 0), Uint8Array.of(1, 0))).toBe(0);
  });
});

describe("strict UTF-8 (ES2022 has no TextEncoder)", () => {
  const fatal = new TextDecoder("utf-8", { fatal: true });

  it("encodes as TextEncoder does, and refuses lone surrogates", () => {
    for (const s of ["", "a", "Ana María", "Zoë Łukasiewicz-Ørsted 李明", "😀 \u{10ffff}", "\u0000\u007f\u0080\u07ff\u0800\uffff"]) {
      expect(toHex(utf8Encode(s) ?? new Uint8Array()), s).toBe(toHex(new TextEncoder().encode(s)));
    }
    expect(utf8Encode("\ud800")).toBeUndefined();
    expect(utf8Encode("a\udc00b")).toBeUndefined();
    expect(utf8Encode("\ud83d")).toBeUndefined();
  });

  it("decodes exactly what a fatal TextDecoder accepts", () => {
    const samples = [
      "", "61", "c3a9", "e282ac", "f09f9880", "f48fbfbf",
      // refused: overlong, surrogates, above U+10FFFF, truncated, stray continuation, bad lead
      "c0af", "c1bf", "e080af", "eda080", "edbfbf", "f08f8080", "f4908080", "f5808080",
      "c3", "e282", "f09f98", "80", "bf", "ff", "fe", "c328", "e228a1",
    ];
    for (const h of samples) {
      let expected: string | undefined;
      try {
        expected = fatal.decode(fromHex(h));
      } catch {
        expected = undefined;
      }
      expect(utf8Decode(fromHex(h)), h).toBe(expected);
    }
  });

  it("agrees with TextDecoder on every 2-byte input", () => {
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) {
        const bytes = Uint8Array.of(a, b);
        let expected: string | undefined;
        try {
          expected = fatal.decode(bytes);
        } catch {
          expected = undefined;
        }
        if (utf8Decode(bytes) !== expected) {
          expect(utf8Decode(bytes), toHex(bytes)).toBe(expected);
        }
      }
    }
  });

  it("agrees with TextDecoder on 20,000 short inputs around the edges", () => {
    const edges = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xff];
    const rng = new TestRng("utf8");
    for (let i = 0; i < 20_000; i++) {
      const r = rng.bytes(7);
      const bytes = Uint8Array.from(r.subarray(1, 1 + ((r[0] ?? 0) % 6) + 1), (x) => edges[x % edges.length] ?? 0);
      let expected: string | undefined;
      try {
        expected = fatal.decode(bytes);
      } catch {
        expected = undefined;
      }
      if (utf8Decode(bytes) !== expected) {
        expect(utf8Decode(bytes), toHex(bytes)).toBe(expected);
      }
    }
  });
});
