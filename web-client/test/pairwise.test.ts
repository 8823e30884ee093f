// Pairwise HPKE messages: auth and auth_psk, binding to ids, type and sequence (the
// behaviours of crates/e2ee/tests/pairwise.rs).

import { describe, expect, it } from "vitest";

import { toHex } from "../src/core/enc.js";
import { Identity } from "../src/core/identity.js";
import { OpenError } from "../src/core/lib.js";
import { MsgType, Pair, SealError, Sequences, msgTypeFromCode, open, openRaw, seal } from "../src/core/pairwise.js";
import { Secret32 } from "../src/core/secret.js";
import { TestRng, filled, thrown, utf8 } from "./helpers.js";

const pair = new Pair(utf8("s1"), filled(16, 1), filled(16, 2));

describe("pairwise messages", () => {
  it("round-trip in auth and auth_psk, and bind seq, type, ids and both keys", async () => {
    const rng = new TestRng("pairwise");
    const x = Identity.generate(rng);
    const y = Identity.generate(rng);
    const z = Identity.generate(rng);
    const psk = new Secret32(filled(32, 9));
    for (const p of [undefined, psk]) {
      const s = await seal(rng, x, y.ekPub(), pair, MsgType.Consent, 4n, utf8("I agree"), p);
      expect(s.enc.length).toBe(32);
      expect(new TextDecoder().decode(await open(y, x.ekPub(), pair, MsgType.Consent, 4n, s, p))).toBe("I agree");
      // Any change of context fails, with the same opaque error.
      const swapped = new Pair(utf8("s1"), filled(16, 2), filled(16, 1));
      for (const [what, attempt] of [
        ["seq", () => open(y, x.ekPub(), pair, MsgType.Consent, 5n, s, p)],
        ["type", () => open(y, x.ekPub(), pair, MsgType.Name, 4n, s, p)],
        ["ids", () => open(y, x.ekPub(), swapped, MsgType.Consent, 4n, s, p)],
        ["session", () => open(y, x.ekPub(), new Pair(utf8("s2"), pair.from, pair.to), MsgType.Consent, 4n, s, p)],
        ["sender key", () => open(y, z.ekPub(), pair, MsgType.Consent, 4n, s, p)],
        ["recipient", () => open(z, x.ekPub(), pair, MsgType.Consent, 4n, s, p)],
      ] as const) {
        expect(await thrown(attempt), what).toBeInstanceOf(OpenError);
      }
    }
  });

  it("in auth_psk need the invite secret", async () => {
    const rng = new TestRng("pairwise-psk");
    const x = Identity.generate(rng);
    const y = Identity.generate(rng);
    const psk = new Secret32(filled(32, 9));
    const s = await seal(rng, x, y.ekPub(), pair, MsgType.Consent, 0n, utf8("m"), psk);
    expect(await thrown(() => open(y, x.ekPub(), pair, MsgType.Consent, 0n, s, undefined))).toBeInstanceOf(OpenError);
    expect(
      await thrown(() => open(y, x.ekPub(), pair, MsgType.Consent, 0n, s, new Secret32(filled(32, 8)))),
    ).toBeInstanceOf(OpenError);
    // And an auth message does not open in auth_psk.
    const a = await seal(rng, x, y.ekPub(), pair, MsgType.Consent, 1n, utf8("m"));
    expect(await thrown(() => open(y, x.ekPub(), pair, MsgType.Consent, 1n, a, psk))).toBeInstanceOf(OpenError);
  });

  it("refuse small-order keys: the all-zero DH output (RFC 9180 §7.1.4)", async () => {
    const rng = new TestRng("pairwise-zero");
    const x = Identity.generate(rng);
    const y = Identity.generate(rng);
    expect(await thrown(() => seal(rng, x, new Uint8Array(32), pair, MsgType.Name, 0n, utf8("m")))).toBeInstanceOf(
      SealError,
    );
    // u = 1 is a point of order 4: its DH output is zero too.
    const one = new Uint8Array(32);
    one[0] = 1;
    expect(await thrown(() => seal(rng, x, one, pair, MsgType.Name, 0n, utf8("m")))).toBeInstanceOf(SealError);
    const s = await seal(rng, x, y.ekPub(), pair, MsgType.Name, 0n, utf8("m"));
    expect(
      await thrown(() => openRaw(y.ekSecret(), new Uint8Array(32), s.enc, pair.info(), pair.aad(MsgType.Name, 0n), s.ct)),
      "a zero-point sender",
    ).toBeInstanceOf(OpenError);
    expect(
      await thrown(() => openRaw(y.ekSecret(), x.ekPub(), new Uint8Array(32), pair.info(), pair.aad(MsgType.Name, 0n), s.ct)),
      "a zero-point enc",
    ).toBeInstanceOf(OpenError);
  });

  it("build info and aad exactly as §6.1 says", () => {
    expect(toHex(pair.info())).toBe(
      toHex(utf8("confer/1 hpke")) + "0002" + "7331" + "0010" + "01".repeat(16) + "0010" + "02".repeat(16),
    );
    expect(toHex(pair.aad(MsgType.Name, 258n))).toBe(
      toHex(utf8("confer/1 pairwise")) +
        "0002" +
        "7331" +
        "0010" +
        "01".repeat(16) +
        "0010" +
        "02".repeat(16) +
        "04" +
        "0000000000000102",
    );
  });

  it("know exactly six types", () => {
    expect([1, 2, 3, 4, 5, 6].map(msgTypeFromCode)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(msgTypeFromCode(0)).toBeUndefined();
    expect(msgTypeFromCode(7)).toBeUndefined();
  });
});

describe("sequences", () => {
  it("count sends from 0 per peer and accept only strictly increasing receives", () => {
    const s = new Sequences();
    expect(s.nextSend(filled(16, 1))).toBe(0n);
    expect(s.nextSend(filled(16, 1))).toBe(1n);
    expect(s.nextSend(filled(16, 2))).toBe(0n);
    expect(s.isFresh(filled(16, 3), 0n)).toBe(true);
    s.accept(filled(16, 3), 5n);
    expect(s.isFresh(filled(16, 3), 5n)).toBe(false);
    expect(s.isFresh(filled(16, 3), 2n)).toBe(false);
    expect(s.isFresh(filled(16, 3), 6n)).toBe(true);
    expect(s.isFresh(filled(16, 4), 0n), "another peer").toBe(true);
  });
});
