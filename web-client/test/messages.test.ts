// Consent, sender-key acknowledgment, display-name plaintexts and the psk hint (the unit tests
// of crates/e2ee/src/messages.rs).

import { describe, expect, it } from "vitest";

import { toHex } from "../src/core/enc.js";
import { MAX_NAME_BYTES, nameCommit } from "../src/core/identity.js";
import { OpenError } from "../src/core/lib.js";
import { ATTEST_ALL, ConsentAck, NameMsg, SenderKeyAck, pskHint } from "../src/core/messages.js";
import { Secret32 } from "../src/core/secret.js";
import { TestRng, filled } from "./helpers.js";

describe("display names", () => {
  it("commit to the identity module's commitment and round-trip", () => {
    const m = new NameMsg(filled(16, 9), "Ada Lovelace");
    expect(toHex(m.commit())).toBe(toHex(nameCommit(filled(16, 9), "Ada Lovelace") ?? new Uint8Array()));
    const back = NameMsg.decode(m.encode());
    expect([toHex(back.salt), back.name]).toEqual([toHex(m.salt), m.name]);
  });

  it("are made with a fresh salt, and refused when empty or too long", () => {
    const rng = new TestRng("names");
    const a = NameMsg.create("Ana", rng);
    const b = NameMsg.create("Ana", rng);
    expect(a && b && toHex(a.salt)).not.toBe(b && toHex(b.salt));
    expect(NameMsg.create("", rng)).toBeUndefined();
    expect(NameMsg.create("x".repeat(MAX_NAME_BYTES), rng)).toBeDefined();
    expect(NameMsg.create("x".repeat(MAX_NAME_BYTES + 1), rng)).toBeUndefined();
  });

  it("decode strictly: salt of 16, 1 to 1,024 bytes of UTF-8, nothing after", () => {
    const n = new NameMsg(filled(16, 1), "x").encode();
    const extra = new Uint8Array(n.length + 1);
    extra.set(n);
    expect(() => NameMsg.decode(extra)).toThrow(OpenError);
    expect(() => NameMsg.decode(Uint8Array.of(0, 16))).toThrow(OpenError);
    const empty = Uint8Array.of(0, 16, ...filled(16, 1), 0, 0);
    expect(() => NameMsg.decode(empty)).toThrow(OpenError);
    const invalid = Uint8Array.of(0, 16, ...filled(16, 1), 0, 2, 0xc3, 0x28);
    expect(() => NameMsg.decode(invalid), "not UTF-8").toThrow(OpenError);
    const shortSalt = Uint8Array.of(0, 15, ...filled(15, 1), 0, 1, 0x78);
    expect(() => NameMsg.decode(shortSalt)).toThrow(OpenError);
    const long = Uint8Array.of(0, 16, ...filled(16, 1), 0x04, 0x01, ...filled(1025, 0x78));
    expect(() => NameMsg.decode(long)).toThrow(OpenError);
  });

  it("never print the name", () => {
    const m = new NameMsg(filled(16, 1), "Ada Lovelace");
    expect(String(m)).toBe("NameMsg([redacted])");
    expect(JSON.stringify(m)).not.toContain("Ada");
  });
});

describe("sender-key acknowledgments", () => {
  it("round-trip and refuse trailing bytes and unknown streams", () => {
    const a = new SenderKeyAck(filled(16, 1), 3n, 1, 7n);
    const b = a.encode();
    const back = SenderKeyAck.decode(b);
    expect([toHex(back.channelId), back.epoch, back.stream, back.generation]).toEqual([toHex(a.channelId), 3n, 1, 7n]);
    const extra = new Uint8Array(b.length + 1);
    extra.set(b);
    expect(() => SenderKeyAck.decode(extra)).toThrow(OpenError);
    const stream4 = new SenderKeyAck(filled(16, 1), 3n, 4, 7n).encode();
    expect(() => SenderKeyAck.decode(stream4)).toThrow(OpenError);
    expect(() => SenderKeyAck.decode(b.subarray(0, b.length - 1))).toThrow(OpenError);
  });

  it("carry u64s above 2^53 exactly", () => {
    const g = (1n << 64n) - 1n;
    expect(SenderKeyAck.decode(new SenderKeyAck(filled(16, 1), g, 0, g).encode()).generation).toBe(g);
  });
});

describe("consent acknowledgments", () => {
  it("are exactly 97 bytes", () => {
    const c = new ConsentAck(filled(32, 2), ATTEST_ALL, filled(64, 3));
    const b = c.encode();
    expect(b.length).toBe(97);
    expect(toHex(ConsentAck.decode(b).signature)).toBe(toHex(c.signature));
    expect(() => ConsentAck.decode(b.subarray(0, 96))).toThrow(OpenError);
    const extra = new Uint8Array(98);
    extra.set(b);
    expect(() => ConsentAck.decode(extra)).toThrow(OpenError);
  });
});

describe("the psk hint", () => {
  it("is 8 bytes and differs per secret", () => {
    const a = pskHint(new Secret32(filled(32, 1)));
    expect(a.length).toBe(8);
    expect(toHex(a)).not.toBe(toHex(pskHint(new Secret32(filled(32, 2)))));
  });
});
