// The published vectors of every primitive core/ wraps, through the libraries and code paths
// core/ uses (twin of crates/e2ee/tests/rfc.rs). test/rfc/vectors.json is a copy of
// crates/e2ee/tests/rfc/vectors.json; its `sources` say where each vector comes from.

import { readFileSync } from "node:fs";

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { describe, expect, it } from "vitest";

import { toHex } from "../src/core/enc.js";
import { decodeHeader, encodeHeader } from "../src/core/frame.js";
import { Identity, clampX25519, verify } from "../src/core/identity.js";
import { OpenError } from "../src/core/lib.js";
import { PSK_ID, openRaw, sealRaw } from "../src/core/pairwise.js";
import type { Psk } from "../src/core/pairwise.js";
import { FixedRng, bytes, isObj, objs, str, thrown } from "./helpers.js";
import type { Json, Obj } from "./helpers.js";

const file = JSON.parse(readFileSync(new URL("./rfc/vectors.json", import.meta.url), "utf8")) as Json;
if (!isObj(file)) {
  throw new Error("rfc/vectors.json is an object");
}
const V: Obj = file;

function num(c: Obj, k: string): number {
  const v = c[k];
  if (typeof v !== "number") {
    throw new Error(`${k} is not a number`);
  }
  return v;
}

describe("X25519 (RFC 7748)", () => {
  const cases = objs(V, "x25519_rfc7748");
  it("§5.2 and §6.1, including our clamped key import", () => {
    expect(cases).toHaveLength(3);
    for (const c of cases) {
      if (c["scalar"] !== undefined) {
        expect(toHex(x25519.scalarMult(bytes(c, "scalar", 32), bytes(c, "u", 32))), str(c, "name")).toBe(
          str(c, "output"),
        );
      } else {
        const alice = Identity.fromSecrets(new Uint8Array(32), bytes(c, "alice_sk", 32));
        const bob = Identity.fromSecrets(new Uint8Array(32), bytes(c, "bob_sk", 32));
        expect(toHex(alice.ekPub())).toBe(str(c, "alice_pk"));
        expect(toHex(bob.ekPub())).toBe(str(c, "bob_pk"));
        expect(toHex(x25519.scalarMult(alice.ekSecret(), bob.ekPub()))).toBe(str(c, "shared"));
        expect(toHex(x25519.scalarMult(bob.ekSecret(), alice.ekPub()))).toBe(str(c, "shared"));
      }
    }
  });
});

describe("Ed25519 (RFC 8032 §7.1)", () => {
  it("through our sign and strict verify", () => {
    const cases = objs(V, "ed25519_rfc8032");
    expect(cases.map((c) => str(c, "name"))).toContain("TEST 1");
    for (const c of cases) {
      const id = Identity.fromSecrets(bytes(c, "secret_key", 32), new Uint8Array(32).fill(1));
      expect(toHex(id.ikPub()), str(c, "name")).toBe(str(c, "public_key"));
      const msg = bytes(c, "message");
      const sig = id.sign(msg);
      expect(toHex(sig), str(c, "name")).toBe(str(c, "signature"));
      verify(id.ikPub(), msg, sig);
      const bad = sig.slice();
      bad[0] = (bad[0] ?? 0) ^ 1;
      expect(() => {
        verify(id.ikPub(), msg, bad);
      }).toThrow(OpenError);
    }
  });
});

describe("HKDF-SHA256 (RFC 5869 A.1-A.3)", () => {
  it("through noble's extract and expand (frame.ts)", () => {
    for (const c of objs(V, "hkdf_sha256_rfc5869")) {
      const prk = extract(sha256, bytes(c, "ikm"), bytes(c, "salt"));
      expect(toHex(prk), str(c, "name")).toBe(str(c, "prk"));
      expect(toHex(expand(sha256, prk, bytes(c, "info"), num(c, "l")))).toBe(str(c, "okm"));
    }
  });
});

describe("ChaCha20-Poly1305 (RFC 8439)", () => {
  it("through noble (frame.ts)", () => {
    for (const c of objs(V, "chacha20poly1305_rfc8439")) {
      const cipher = chacha20poly1305(bytes(c, "key", 32), bytes(c, "nonce", 12), bytes(c, "aad"));
      const ct = cipher.encrypt(bytes(c, "plaintext"));
      expect(toHex(ct), str(c, "name")).toBe(str(c, "ciphertext") + str(c, "tag"));
      const again = chacha20poly1305(bytes(c, "key", 32), bytes(c, "nonce", 12), bytes(c, "aad"));
      expect(toHex(again.decrypt(ct))).toBe(str(c, "plaintext"));
    }
  });
});

describe("HPKE (RFC 9180 A.2, our suite, all four modes)", () => {
  const cases = objs(V, "hpke_rfc9180");
  const suite = new CipherSuite({
    kem: new DhkemX25519HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Chacha20Poly1305(),
  });

  it("has one case per mode", () => {
    expect(cases.map((c) => num(c, "mode"))).toEqual([0, 1, 2, 3]);
  });

  for (const c of cases) {
    const name = str(c, "name");
    const mode = num(c, "mode");
    const psk: Psk | undefined =
      mode === 1 || mode === 3 ? { psk: bytes(c, "psk"), pskId: bytes(c, "psk_id") } : undefined;
    const encs = objs(c, "encryptions");

    it(`${name}: the key pair, and consecutive opens through @hpke`, async () => {
      expect([num(c, "kem_id"), num(c, "kdf_id"), num(c, "aead_id")]).toEqual([32, 1, 3]);
      const kp = await suite.kem.deriveKeyPair(bytes(c, "ikmR").slice().buffer);
      const pkR = new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey));
      expect(toHex(pkR)).toBe(str(c, "pkRm"));
      // Stored clamped (§15.3): the same scalar as the RFC's unclamped skRm.
      const skR = new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey));
      expect(toHex(clampX25519(skR))).toBe(toHex(clampX25519(bytes(c, "skRm", 32))));
      const ctx = await suite.createRecipientContext({
        recipientKey: await suite.kem.importKey("raw", bytes(c, "skRm").slice().buffer, false),
        enc: bytes(c, "enc"),
        info: bytes(c, "info"),
        ...(c["pkSm"] === undefined
          ? {}
          : { senderPublicKey: await suite.kem.importKey("raw", bytes(c, "pkSm").slice().buffer, true) }),
        ...(psk === undefined ? {} : { psk: { key: psk.psk, id: psk.pskId } }),
      });
      const consecutive = encs.filter((e, i) => num(e, "seq") === i).slice(0, 3);
      expect(consecutive).toHaveLength(3);
      for (const e of consecutive) {
        const pt = new Uint8Array(await ctx.open(bytes(e, "ct"), bytes(e, "aad")));
        expect(toHex(pt), `${name} seq ${num(e, "seq").toString()}`).toBe(str(e, "pt"));
      }
    });

    if (mode >= 2) {
      it(`${name}: our openRaw and sealRaw (seq 0)`, async () => {
        const e = encs[0];
        if (e === undefined) {
          throw new Error("an encryption");
        }
        const pt = await openRaw(
          bytes(c, "skRm", 32),
          bytes(c, "pkSm", 32),
          bytes(c, "enc", 32),
          bytes(c, "info"),
          bytes(e, "aad"),
          bytes(e, "ct"),
          psk,
        );
        expect(toHex(pt)).toBe(str(e, "pt"));
        // With the RFC's ephemeral ikm as the randomness, sealing gives the RFC's enc and ct.
        const sealed = await sealRaw(
          new FixedRng(bytes(c, "ikmE", 32)),
          bytes(c, "skSm", 32),
          bytes(c, "pkRm", 32),
          bytes(c, "info"),
          bytes(e, "aad"),
          bytes(e, "pt"),
          psk,
        );
        expect([toHex(sealed.enc), toHex(sealed.ct)]).toEqual([str(c, "enc"), str(e, "ct")]);
        // The other mode does not open it.
        const other = psk === undefined ? { psk: new Uint8Array(32).fill(7), pskId: PSK_ID } : undefined;
        expect(
          await thrown(() =>
            openRaw(bytes(c, "skRm", 32), bytes(c, "pkSm", 32), bytes(c, "enc", 32), bytes(c, "info"), bytes(e, "aad"), bytes(e, "ct"), other),
          ),
        ).toBeInstanceOf(OpenError);
      });
    }
  }
});

describe("SFrame headers (RFC 9605 Appendix C.1)", () => {
  it("all 289 encode byte for byte and decode back", () => {
    const cases = objs(V, "sframe_header_rfc9605");
    expect(cases).toHaveLength(289);
    for (const c of cases) {
      const kid = BigInt(str(c, "kid"));
      const ctr = BigInt(str(c, "ctr"));
      const h = encodeHeader(kid, ctr);
      expect(toHex(h), `kid ${kid.toString()} ctr ${ctr.toString()}`).toBe(str(c, "header"));
      expect(decodeHeader(h)).toEqual([kid, ctr]);
    }
  });
});

