// Frames: seal/open for every codec, clear prefixes, tampering, wrong context, the replay
// window, ratchet steps, held generations, header encoding, padding (the behaviours of
// crates/e2ee/tests/frames.rs).

import { describe, expect, it } from "vitest";

import { toHex } from "../src/core/enc.js";
import {
  FrameCtx,
  MAX_GENERATION,
  NeedNewGeneration,
  Opener,
  ReplayWindow,
  SealError,
  Sealer,
  SenderKeyMsg,
  STREAM_CAMERA,
  STREAM_DATA,
  decodeHeader,
  derive,
  encodeHeader,
  frameGeneration,
  kid,
  pad,
  sealWith,
  unpad,
} from "../src/core/frame.js";
import type { Codec } from "../src/core/frame.js";
import { OpenError } from "../src/core/lib.js";
import { Secret32 } from "../src/core/secret.js";
import { filled, utf8 } from "./helpers.js";

function ctxOf(channel: number, stream = STREAM_CAMERA): FrameCtx {
  const ctx = FrameCtx.create(utf8("session-1"), filled(16, channel), filled(16, 2), stream);
  if (ctx === undefined) {
    throw new Error("a valid ctx");
  }
  return ctx;
}

function pair(base: Uint8Array, stream = STREAM_CAMERA): [Sealer, Opener] {
  const s = new Sealer(ctxOf(1, stream), base, 0n);
  const o = new Opener(ctxOf(1, stream));
  o.addGeneration(0n, base);
  return [s, o];
}

const keyFrame = Uint8Array.from({ length: 40 }, (_, i) => (i * 2) & 0xff); // byte 0 even
const delta = Uint8Array.from({ length: 40 }, (_, i) => (i * 2 + 1) & 0xff); // byte 0 odd

function hexOf(b: Uint8Array): string {
  return toHex(b);
}

describe("the frame context", () => {
  it("refuses empty or long session ids, short ids and unknown streams", () => {
    const id = filled(16, 1);
    expect(FrameCtx.create(new Uint8Array(0), id, id, 0)).toBeUndefined();
    expect(FrameCtx.create(filled(65, 0x61), id, id, 0)).toBeUndefined();
    expect(FrameCtx.create(filled(64, 0x61), id, id, 0)).toBeDefined();
    expect(FrameCtx.create(utf8("s"), filled(15, 1), id, 0)).toBeUndefined();
    expect(FrameCtx.create(utf8("s"), id, id, 4)).toBeUndefined();
  });
});

describe("sealing and opening", () => {
  it("round-trips every codec, with the clear prefix each codec keeps", () => {
    const [s, o] = pair(filled(32, 7));
    for (const [codec, payload] of [
      ["vp8", keyFrame],
      ["vp8", delta],
      ["opus", filled(80, 9)],
    ] as [Codec, Uint8Array][]) {
      const f = s.seal(codec, payload);
      expect(hexOf(o.open(codec, f))).toBe(hexOf(payload));
    }
    let f = s.seal("vp8", keyFrame);
    expect(hexOf(f.subarray(0, 10)), "a VP8 key frame keeps its 10-byte header in clear").toBe(
      hexOf(keyFrame.subarray(0, 10)),
    );
    expect(hexOf(f.subarray(10, 20))).not.toBe(hexOf(keyFrame.subarray(10, 20)));
    f = s.seal("vp8", delta);
    expect(f[0]).toBe(delta[0]);
    expect(hexOf(f.subarray(1, 10)), "a delta frame keeps only 1 byte in clear").not.toBe(
      hexOf(delta.subarray(1, 10)),
    );
    const [ds, dop] = pair(filled(32, 7), STREAM_DATA);
    const d = ds.seal("data", utf8("chat message"));
    expect(d.length, "one padded block, the tag, a 1-byte header, its length").toBe(256 + 16 + 1 + 1);
    expect(new TextDecoder().decode(dop.open("data", d))).toBe("chat message");
  });

  it("never sends a VP8 payload shorter than its prefix", () => {
    const [s] = pair(filled(32, 7));
    expect(() => s.seal("vp8", Uint8Array.of(0, 1, 2))).toThrow(SealError);
    expect(() => s.seal("vp8", new Uint8Array(0))).toThrow(SealError);
  });

  it("detects every flipped byte and counts each failure", () => {
    const [s, o] = pair(filled(32, 7));
    const f = s.seal("vp8", keyFrame);
    for (let i = 0; i < f.length - 1; i++) {
      const t = f.slice();
      t[i] = (t[i] ?? 0) ^ 0x01;
      expect(() => o.open("vp8", t), `flipping byte ${i.toString()}`).toThrow(OpenError);
    }
    expect(o.failures).toBe(f.length - 1);
    expect(hexOf(o.open("vp8", f))).toBe(hexOf(keyFrame));
  });

  it("opens only in its own channel, under its own key and generation", () => {
    const [s] = pair(filled(32, 7));
    const f = s.seal("opus", utf8("caucus audio"));
    const other = new Opener(ctxOf(9));
    other.addGeneration(0n, filled(32, 7));
    expect(() => other.open("opus", f)).toThrow(OpenError);
    const wrongKey = new Opener(ctxOf(1));
    wrongKey.addGeneration(0n, filled(32, 8));
    expect(() => wrongKey.open("opus", f)).toThrow(OpenError);
    const noGen = new Opener(ctxOf(1));
    noGen.addGeneration(1n, filled(32, 7));
    expect(() => noGen.open("opus", f)).toThrow(OpenError);
  });

  it("opens a frame only as the codec its stream carries", () => {
    const [s, o] = pair(filled(32, 7), STREAM_DATA);
    expect(() => s.seal("opus", utf8("x")), "no media on the data stream").toThrow(SealError);
    const f = s.seal("data", utf8("chat"));
    expect(() => o.open("opus", f), "a data frame never opens as audio").toThrow(OpenError);
    expect(new TextDecoder().decode(o.open("data", f))).toBe("chat");
    const [media] = pair(filled(32, 7));
    expect(() => media.seal("data", utf8("x")), "no data on a media stream").toThrow(SealError);
  });

  it("refuses generations above the KID range", () => {
    const s = new Sealer(ctxOf(1), filled(32, 7), MAX_GENERATION + 1n);
    expect(() => s.seal("opus", utf8("x"))).toThrow(SealError);
    const o = new Opener(ctxOf(1));
    o.addGeneration(MAX_GENERATION + 2n, filled(32, 7));
    expect(o.generations()).toEqual([]);
    expect(kid(MAX_GENERATION, 15)).toBe((1n << 64n) - 1n);
    expect(kid(1n << 60n, 3), "bits above 64 are dropped, as in Rust").toBe(3n);
  });

  it("counts frames from 0 per key and restarts at 0 on each ratchet step", () => {
    const [s] = pair(filled(32, 7));
    const ctrOf = (f: Uint8Array): bigint => {
      const hlen = f[f.length - 1] ?? 0;
      return decodeHeader(f.subarray(f.length - 1 - hlen, f.length - 1))[1];
    };
    expect(ctrOf(s.seal("opus", utf8("a")))).toBe(0n);
    expect(ctrOf(s.seal("opus", utf8("b")))).toBe(1n);
    s.ratchet();
    const f = s.seal("opus", utf8("c"));
    expect(ctrOf(f)).toBe(0n);
    expect(frameGeneration("opus", f)).toBe(0n);
  });
});

describe("the replay window", () => {
  it("refuses replays and frames older than 128, and allows reordering inside it", () => {
    const [s, o] = pair(filled(32, 7));
    const frames = Array.from({ length: 200 }, (_, i) => s.seal("opus", filled(20, i)));
    const at = (i: number): Uint8Array => frames[i] ?? new Uint8Array(0);
    expect(() => o.open("opus", at(150))).not.toThrow();
    expect(() => o.open("opus", at(150)), "replay").toThrow(OpenError);
    expect(() => o.open("opus", at(100)), "late but within 128").not.toThrow();
    expect(() => o.open("opus", at(22)), "older than the window").toThrow(OpenError);
    expect(() => o.open("opus", at(199))).not.toThrow();
    expect(() => o.open("opus", at(100))).toThrow(OpenError);
  });

  it("follows the §9 rules at their edges", () => {
    const w = new ReplayWindow();
    expect(w.check(1000n)).toBe(true);
    w.commit(1000n);
    expect(w.check(1000n)).toBe(false);
    expect(w.check(999n)).toBe(true);
    expect(w.check(873n), "highest - 127").toBe(true);
    expect(w.check(872n), "highest - 128").toBe(false);
    expect(w.check(1000n + (1n << 16n))).toBe(true);
    expect(w.check(1000n + (1n << 16n) + 1n), "too far ahead").toBe(false);
    w.commit(1200n);
    expect(w.check(1100n)).toBe(true);
    expect(w.check(1000n)).toBe(false);
    w.commit(1100n);
    expect(w.check(1100n)).toBe(false);
    w.commit(1200n + 500n);
    expect(w.check(1200n + 499n), "a jump of 128 or more forgets the old bits").toBe(true);
  });

  it("takes any first counter, up to 2^64 - 1", () => {
    const w = new ReplayWindow();
    const max = (1n << 64n) - 1n;
    expect(w.check(max)).toBe(true);
    w.commit(max);
    expect(w.check(max)).toBe(false);
    expect(w.check(max - 1n)).toBe(true);
  });
});

describe("the ratchet", () => {
  it("opens steps up to 15, then needs a new generation", () => {
    const [s, o] = pair(filled(32, 3));
    for (let step = 0; step <= 15; step++) {
      expect(s.step()).toBe(step);
      const f = s.seal("opus", utf8("x"));
      expect(new TextDecoder().decode(o.open("opus", f))).toBe("x");
      if (step < 15) {
        s.ratchet();
      }
    }
    expect(() => {
      s.ratchet();
    }).toThrow(NeedNewGeneration);
  });

  it("lets a receiver jump straight to step 15 from the base key", () => {
    const [s, o] = pair(filled(32, 4));
    for (let i = 0; i < 15; i++) {
      s.ratchet();
    }
    expect(new TextDecoder().decode(o.open("opus", s.seal("opus", utf8("y"))))).toBe("y");
  });

  it("keeps no state from a frame that does not authenticate", () => {
    const [s, o] = pair(filled(32, 7));
    for (let i = 0; i < 5; i++) {
      s.ratchet();
    }
    const f = s.seal("opus", utf8("late step"));
    const forged = f.slice();
    forged[0] = (forged[0] ?? 0) ^ 1;
    expect(() => o.open("opus", forged)).toThrow(OpenError);
    // The genuine frame with the same counter still opens: the forgery consumed nothing.
    expect(new TextDecoder().decode(o.open("opus", f))).toBe("late step");
  });
});

describe("held generations", () => {
  it("open each generation's frames, and forget the ones removed", () => {
    const ctx = ctxOf(1);
    const s0 = new Sealer(ctx, filled(32, 1), 0n);
    const s5 = new Sealer(ctx, filled(32, 2), 5n);
    const s9 = new Sealer(ctx, filled(32, 3), 9n);
    const o = new Opener(ctx);
    o.addGeneration(9n, filled(32, 3));
    o.addGeneration(0n, filled(32, 1));
    o.addGeneration(5n, filled(32, 2));
    expect(o.generations()).toEqual([0n, 5n, 9n]);
    expect(o.oldest()).toBe(0n);
    const f0 = s0.seal("opus", utf8("zero"));
    const f5 = s5.seal("opus", utf8("five"));
    const f9 = s9.seal("opus", utf8("nine"));
    expect(new TextDecoder().decode(o.open("opus", f5))).toBe("five");
    o.retainFrom(5n);
    expect(o.generations()).toEqual([5n, 9n]);
    expect(o.holds(0n)).toBe(false);
    expect(() => o.open("opus", f0), "a forgotten generation").toThrow(OpenError);
    o.removeGeneration(9n);
    expect(() => o.open("opus", f9)).toThrow(OpenError);
    expect(o.oldest()).toBe(5n);
  });

  it("name the generation of a well-formed frame before any key is held", () => {
    const s = new Sealer(ctxOf(1), filled(32, 1), 42n);
    const f = s.seal("vp8", keyFrame);
    expect(frameGeneration("vp8", f)).toBe(42n);
    expect(() => frameGeneration("vp8", Uint8Array.of(5))).toThrow(OpenError);
  });
});

describe("headers (RFC 9605 §4.3)", () => {
  it("are minimal and round-trip", () => {
    for (const [k, c] of [
      [0n, 0n],
      [7n, 7n],
      [8n, 8n],
      [0xffn, 0x100n],
      [(1n << 64n) - 1n, (1n << 64n) - 1n],
      [0x1234n, 3n],
    ] as [bigint, bigint][]) {
      const h = encodeHeader(k, c);
      expect(h.length).toBeLessThanOrEqual(17);
      expect(decodeHeader(h)).toEqual([k, c]);
    }
    expect(hexOf(encodeHeader(0n, 0n))).toBe("00");
    expect(hexOf(encodeHeader(8n, 0n))).toBe("8008");
    expect(hexOf(encodeHeader(82n, 300n))).toBe("8952012c");
  });

  it("refuse non-minimal encodings and trailing bytes", () => {
    expect(() => decodeHeader(Uint8Array.of(0x80, 0x05)), "extended value below 8").toThrow(OpenError);
    expect(() => decodeHeader(Uint8Array.of(0x90, 0x00, 0x10)), "leading zero").toThrow(OpenError);
    expect(() => decodeHeader(Uint8Array.of(0x08, 0x02))).toThrow(OpenError);
    expect(() => decodeHeader(Uint8Array.of(0x00, 0x00)), "trailing byte").toThrow(OpenError);
    expect(() => decodeHeader(new Uint8Array(0))).toThrow(OpenError);
  });

  it("refuse values outside u64 when encoding", () => {
    expect(() => encodeHeader(1n << 64n, 0n)).toThrow(RangeError);
    expect(() => encodeHeader(0n, -1n)).toThrow(RangeError);
  });
});

describe("the trailer", () => {
  it("refuses length 0, lengths over 17, and frames too short for it", () => {
    const [s, o] = pair(filled(32, 7), 0);
    const f = s.seal("opus", utf8("audio"));
    const zero = f.slice();
    zero[zero.length - 1] = 0;
    expect(() => o.open("opus", zero)).toThrow(OpenError);
    const big = f.slice();
    big[big.length - 1] = 18;
    expect(() => o.open("opus", big)).toThrow(OpenError);
    expect(() => o.open("opus", Uint8Array.of(5))).toThrow(OpenError);
    expect(() => o.open("opus", new Uint8Array(0))).toThrow(OpenError);
    expect(o.failures).toBe(4);
  });

  it("refuses a ciphertext shorter than the tag", () => {
    const keys = derive(new Secret32(filled(32, 1)), 0n, ctxOf(1, 0));
    const f = sealWith(keys, 0n, 0n, "opus", new Uint8Array(0));
    expect(f.length).toBe(16 + 1 + 1);
    const [, o] = pair(filled(32, 1), 0);
    expect(o.open("opus", f).length).toBe(0);
    expect(() => o.open("opus", f.subarray(1)), "15 bytes of tag").toThrow(OpenError);
  });
});

describe("data padding (§8.6)", () => {
  it("pads to the smallest multiple of 256 and unpads strictly", () => {
    const p = pad(utf8("hi"));
    if (p === undefined) {
      throw new Error("pads");
    }
    expect(p.length).toBe(256);
    expect(new TextDecoder().decode(unpad(p))).toBe("hi");
    expect(pad(filled(254, 1))?.length).toBe(256);
    expect(pad(filled(255, 1))?.length).toBe(512);
    expect(pad(filled(65535, 1))?.length).toBe(65536 + 256);
    expect(pad(filled(65536, 1))).toBeUndefined();
    const bad = p.slice();
    bad[100] = 1;
    expect(() => unpad(bad), "non-zero padding").toThrow(OpenError);
    const overrun = p.slice();
    overrun[0] = 0x01;
    expect(() => unpad(overrun), "length overruns").toThrow(OpenError);
    expect(() => unpad(p.subarray(0, 255))).toThrow(OpenError);
    expect(() => unpad(new Uint8Array(512)), "an extra zero block is not what pad produces").toThrow(OpenError);
  });
});

describe("sender-key messages", () => {
  it("round-trip strictly and never print the key", () => {
    const m = new SenderKeyMsg(filled(16, 1), 3n, 1, 9n, new Secret32(filled(32, 5)));
    const b = m.encode();
    const back = SenderKeyMsg.decode(b);
    expect([hexOf(back.channelId), back.epoch, back.stream, back.generation]).toEqual([
      hexOf(m.channelId),
      3n,
      1,
      9n,
    ]);
    expect(back.baseKey.equals(m.baseKey)).toBe(true);
    expect(() => SenderKeyMsg.decode(b.subarray(0, b.length - 1))).toThrow(OpenError);
    const extra = new Uint8Array(b.length + 1);
    extra.set(b);
    expect(() => SenderKeyMsg.decode(extra)).toThrow(OpenError);
    const stream4 = b.slice();
    stream4[19 + 2 + 16 + 8] = 4;
    expect(() => SenderKeyMsg.decode(stream4), "stream at most 3").toThrow(OpenError);
    expect(String(m)).not.toContain("5");
    expect(String(m)).toContain("[redacted]");
    expect(JSON.stringify(m.baseKey)).toBe('"Secret32([redacted])"');
  });
});
