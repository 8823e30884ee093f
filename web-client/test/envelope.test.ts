// The relay envelope (crates/proto/src/envelope.rs, confer/1 §13): strict parsing, canonical
// serialization, and base64url with one spelling per byte string.

import { describe, expect, it } from "vitest";

import { toHex } from "../src/core/enc.js";
import { base64urlDecode, base64urlEncode, envelopeFromData, envelopeToData } from "../src/proto/envelope.js";
import { TestRng } from "./helpers.js";

describe("base64url", () => {
  it("round-trips every length, as Node's base64url does", () => {
    const rng = new TestRng("b64");
    for (let n = 0; n < 70; n++) {
      const b = rng.bytes(n);
      const s = base64urlEncode(b);
      expect(s).toBe(Buffer.from(b).toString("base64url"));
      expect(toHex(base64urlDecode(s) ?? Uint8Array.of(1))).toBe(toHex(b));
    }
  });

  it("refuses padding, other alphabets, impossible lengths and non-zero trailing bits", () => {
    expect(base64urlDecode("AA==")).toBeUndefined();
    expect(base64urlDecode("+/8")).toBeUndefined();
    expect(base64urlDecode("A")).toBeUndefined();
    expect(base64urlDecode("AAAAA")).toBeUndefined();
    expect(base64urlDecode("AB"), "one byte with non-zero spare bits").toBeUndefined();
    expect(base64urlDecode("AAB"), "two bytes with non-zero spare bits").toBeUndefined();
    expect(base64urlDecode("AA")).toEqual(Uint8Array.of(0));
    expect(base64urlDecode("AAE")).toEqual(Uint8Array.of(0, 1));
    expect(base64urlDecode("")).toEqual(new Uint8Array(0));
    expect(base64urlDecode(" AA")).toBeUndefined();
  });
});

describe("envelopes", () => {
  const pw = '{"k":"pw","t":1,"seq":4,"enc":"AAEC","ct":"AwQF"}';

  it("parse each kind and write it back byte for byte", () => {
    for (const data of [
      pw,
      '{"k":"pw","t":3,"seq":0,"enc":"AAEC","ct":"AwQF","hint":"BgcI"}',
      '{"k":"announce","pid":"AQ","role":2,"ik":"Ag","ek":"Aw","sig":"BA"}',
      '{"k":"roster","ch":"caucus-A","enc":"AQ","sig":"Ag"}',
      '{"k":"roster","ch":"joint","enc":"AQ","sig":"Ag","dik":"Aw","dsig":"BA"}',
      '{"k":"delegate","ik":"AQ","sig":"Ag"}',
      '{"k":"chat","cid":"AQ","f":"Ag"}',
    ]) {
      const e = envelopeFromData(data);
      expect(e, data).toBeDefined();
      expect(e && envelopeToData(e)).toBe(data);
    }
  });

  it("read u64 seq as a bigint, and write k first with fields in §13's order", () => {
    const e = envelopeFromData('{"ct":"AwQF","seq":9007199254740991,"enc":"AAEC","t":1,"k":"pw"}');
    expect(e?.k === "pw" ? e.seq : undefined).toBe(9007199254740991n);
    expect(e && envelopeToData(e)).toBe('{"k":"pw","t":1,"seq":9007199254740991,"enc":"AAEC","ct":"AwQF"}');
  });

  it("ignore unknown fields and take null optionals as absent, as serde does", () => {
    expect(envelopeFromData('{"k":"pw","t":1,"seq":4,"enc":"AAEC","ct":"AwQF","x":[1]}')).toBeDefined();
    const e = envelopeFromData('{"k":"pw","t":1,"seq":4,"enc":"AAEC","ct":"AwQF","hint":null}');
    expect(e && envelopeToData(e)).toBe(pw);
  });

  it.each([
    ["an unknown kind", '{"k":"teleport"}'],
    ["no kind", '{"t":1}'],
    ["not an object", "[1]"],
    ["not JSON", "{"],
    ["a missing field", '{"k":"pw","t":1,"seq":4,"enc":"AAEC"}'],
    ["a field of the wrong type", '{"k":"pw","t":"1","seq":4,"enc":"AAEC","ct":"AwQF"}'],
    ["a u8 above 255", '{"k":"pw","t":256,"seq":4,"enc":"AAEC","ct":"AwQF"}'],
    ["a negative seq", '{"k":"pw","t":1,"seq":-1,"enc":"AAEC","ct":"AwQF"}'],
    ["a fractional seq", '{"k":"pw","t":1,"seq":1.5,"enc":"AAEC","ct":"AwQF"}'],
    ["a seq JSON cannot carry exactly", '{"k":"pw","t":1,"seq":9007199254740993,"enc":"AAEC","ct":"AwQF"}'],
    ["padded base64", '{"k":"chat","cid":"AQ==","f":"Ag"}'],
    ["standard base64", '{"k":"chat","cid":"+/8","f":"Ag"}'],
    ["a bad optional", '{"k":"roster","ch":"joint","enc":"AQ","sig":"Ag","dik":5}'],
    ["a channel that is not a string", '{"k":"roster","ch":1,"enc":"AQ","sig":"Ag"}'],
  ])("refuse %s", (_, data) => {
    expect(envelopeFromData(data)).toBeUndefined();
  });
});
