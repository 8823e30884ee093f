// Identities, announcements, strict Ed25519 verification, the session code, name commitments
// (the behaviours of crates/e2ee/tests/identity.rs, and the §5.4 checks noble leaves to us).

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { describe, expect, it } from "vitest";

import { sessionCode } from "../src/core/code.js";
import { concat, toHex } from "../src/core/enc.js";
import { Identity, MAX_NAME_BYTES, nameCommit, roleCode, roleFromCode, verify } from "../src/core/identity.js";
import { OpenError } from "../src/core/lib.js";
import { TestRng, addL, filled, utf8 } from "./helpers.js";

const Point = ed25519.Point;
const L = Point.CURVE().n;

function scalarLE(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) {
    v = (v << 8n) | BigInt(b[i] ?? 0);
  }
  return v;
}

function scalarBytes(v: bigint): Uint8Array {
  const out = new Uint8Array(32);
  let x = v;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** k = SHA-512(R || A || M) mod L. */
function challenge(r: Uint8Array, a: Uint8Array, m: Uint8Array): bigint {
  return scalarLE(sha512(concat(r, a, m))) % L;
}

describe("announcements", () => {
  it("verify, and bind the session id, the role and both keys", () => {
    const id = Identity.generate(new TestRng("identity"));
    const a = id.announce(utf8("s1"), filled(16, 1), "party");
    a.verify(utf8("s1"));
    expect(() => {
      a.verify(utf8("s2"));
    }).toThrow(OpenError);
    a.role = "mediator";
    expect(() => {
      a.verify(utf8("s1"));
    }).toThrow(OpenError);
    a.role = "party";
    a.ekPub = filled(32, 3);
    expect(() => {
      a.verify(utf8("s1"));
    }).toThrow(OpenError);
  });

  it("never print secrets", () => {
    const id = Identity.generate(new TestRng("identity"));
    expect(String(id)).toBe("Identity([redacted])");
    expect(JSON.stringify({ id })).toBe('{"id":"Identity([redacted])"}');
  });

  it("store the X25519 secret clamped (§15.3)", () => {
    const id = Identity.fromSecrets(filled(32, 0xff), filled(32, 0xff));
    const sk = id.ekSecret();
    expect(sk[0]).toBe(0xf8);
    expect(sk[31]).toBe(0x7f);
    expect(toHex(Identity.fromSecrets(filled(32, 0xff), sk).ekPub())).toBe(toHex(id.ekPub()));
  });
});

describe("role codes", () => {
  it("are 0..4 both ways and nothing else", () => {
    for (let c = 0; c <= 4; c++) {
      const r = roleFromCode(c);
      expect(r).toBeDefined();
      expect(r && roleCode(r)).toBe(c);
    }
    expect(roleFromCode(5)).toBeUndefined();
  });
});

describe("strict Ed25519 verification (§5.4)", () => {
  const rng = new TestRng("strict");
  const a = scalarLE(rng.bytes(32)) % L;
  const msg = utf8("confer/1 strictness");

  it("refuses S + L, which only the canonical-S rule catches", () => {
    const id = Identity.generate(rng);
    const sig = id.sign(msg);
    verify(id.ikPub(), msg, sig);
    const bad = sig.slice();
    addL(bad.subarray(32));
    expect(() => {
      verify(id.ikPub(), msg, bad);
    }).toThrow(OpenError);
  });

  it("refuses a key with a torsion component when only the cofactored equation holds", () => {
    // A' = aB + T2 (T2 of order 2) is canonical and not of small order. A signature made with
    // a for A' satisfies [8][S]B = [8]R + [8][k]A' (noble accepts it) but not the
    // cofactorless [S]B = R + [k]A' whenever k is odd. dalek's verify_strict refuses it.
    const t2 = Point.fromBytes(Uint8Array.from([0xec, ...new Array<number>(30).fill(0xff), 0x7f]));
    expect(t2.isSmallOrder()).toBe(true);
    const aPrime = Point.BASE.multiply(a).add(t2);
    const aBytes = aPrime.toBytes();
    expect(aPrime.isSmallOrder()).toBe(false);
    let found = false;
    for (let i = 0; i < 64 && !found; i++) {
      const m = concat(msg, Uint8Array.of(i));
      const r = scalarLE(sha512(concat(rng.bytes(32), m))) % L;
      const rBytes = Point.BASE.multiply(r).toBytes();
      const k = challenge(rBytes, aBytes, m);
      if (k % 2n === 0n) {
        continue;
      }
      const sig = concat(rBytes, scalarBytes((r + k * a) % L));
      expect(ed25519.verify(sig, m, aBytes, { zip215: false }), "noble accepts (cofactored)").toBe(true);
      expect(() => {
        verify(aBytes, m, sig);
      }).toThrow(OpenError);
      found = true;
    }
    expect(found).toBe(true);
  });

  it("refuses a small-order R (the identity), which noble accepts", () => {
    // R = identity, S = k·a: both equations hold; only the small-order R check refuses it.
    const aBytes = Point.BASE.multiply(a).toBytes();
    const rBytes = Point.ZERO.toBytes();
    const k = challenge(rBytes, aBytes, msg);
    const sig = concat(rBytes, scalarBytes((k * a) % L));
    expect(ed25519.verify(sig, msg, aBytes, { zip215: false }), "noble accepts").toBe(true);
    expect(() => {
      verify(aBytes, msg, sig);
    }).toThrow(OpenError);
  });

  it("refuses a small-order public key", () => {
    const identity = Point.ZERO.toBytes();
    expect(() => {
      verify(identity, msg, new Uint8Array(64));
    }).toThrow(OpenError);
  });

  it("refuses a non-canonical public key (y >= p)", () => {
    // y = 3 + p: ZIP-215 decoding reads it as a point of full order; §5.4 refuses the
    // encoding. (No valid signature under it can be made, so this shows refusal only.)
    const nonCanonical = Uint8Array.from([0xf0, ...new Array<number>(30).fill(0xff), 0x7f]);
    expect(Point.fromBytes(nonCanonical, true).isSmallOrder()).toBe(false);
    expect(() => Point.fromBytes(nonCanonical, false)).toThrow();
    expect(() => {
      verify(nonCanonical, msg, new Uint8Array(64));
    }).toThrow(OpenError);
  });

  it("refuses wrong lengths without throwing anything else", () => {
    expect(() => {
      verify(new Uint8Array(31), msg, new Uint8Array(64));
    }).toThrow(OpenError);
    expect(() => {
      verify(new Uint8Array(32), msg, new Uint8Array(63));
    }).toThrow(OpenError);
  });
});

describe("the session code", () => {
  it("is order independent and changes with any key or session", () => {
    const members: [Uint8Array, Uint8Array][] = [
      [filled(16, 2), filled(32, 20)],
      [filled(16, 1), filled(32, 10)],
      [filled(16, 3), filled(32, 30)],
    ];
    const [d1, c1] = sessionCode(utf8("s1"), members);
    const [d2, c2] = sessionCode(utf8("s1"), [...members].reverse());
    expect([toHex(d2), c2]).toEqual([toHex(d1), c1]);
    const groups = c1.split(" ");
    expect(groups).toHaveLength(6);
    for (const g of groups) {
      expect(g).toMatch(/^[0-9]{5}$/);
    }
    const changed = members.map(([id, ik]) => [id, ik.slice()] as [Uint8Array, Uint8Array]);
    const ik = changed[1]?.[1];
    if (ik === undefined) {
      throw new Error("three members");
    }
    ik[0] = (ik[0] ?? 0) ^ 1;
    expect(sessionCode(utf8("s1"), changed)[1]).not.toBe(c1);
    expect(sessionCode(utf8("s2"), members)[1]).not.toBe(c1);
  });

  it("matches the spec's worked example (§11)", () => {
    const [d, code] = sessionCode(utf8("s1"), [
      [filled(16, 1), filled(32, 0x0a)],
      [filled(16, 2), filled(32, 0x14)],
    ]);
    expect(toHex(d)).toBe("8a8743fecfbbf6ac4cb1dd8953d7e389451f492f62123309109252f42d7086eb");
    expect(code).toBe("67151 71313 45763 97807 29552 59344");
  });
});

describe("name commitments", () => {
  it("hide and bind, and refuse names over MAX_NAME_BYTES of UTF-8", () => {
    const c = nameCommit(filled(16, 1), "Alice");
    expect(c).toBeDefined();
    const hex = c && toHex(c);
    expect(nameCommit(filled(16, 2), "Alice") && toHex(nameCommit(filled(16, 2), "Alice") ?? new Uint8Array())).not.toBe(hex);
    expect(toHex(nameCommit(filled(16, 1), "Alicf") ?? new Uint8Array())).not.toBe(hex);
    expect(nameCommit(filled(16, 1), "x".repeat(MAX_NAME_BYTES))).toBeDefined();
    expect(nameCommit(filled(16, 1), "x".repeat(MAX_NAME_BYTES + 1))).toBeUndefined();
    // Bytes, not UTF-16 units: 512 two-byte characters fit, 513 do not.
    expect(nameCommit(filled(16, 1), "é".repeat(512))).toBeDefined();
    expect(nameCommit(filled(16, 1), "é".repeat(513))).toBeUndefined();
    expect(nameCommit(filled(16, 1), "\ud800"), "a lone surrogate is no name").toBeUndefined();
  });
});
