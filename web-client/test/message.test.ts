// proto/message.ts and proto/ids.ts: strict decoding of signalling messages, as serde decodes
// crates/proto's `ServerMessage` and `ClientMessage` (crates/proto/src/message.rs tests).

import { describe, expect, it } from "vitest";

import { DecodeError } from "../src/proto/error.js";
import { ChannelId, IdError, ParticipantId, Role, Side } from "../src/proto/ids.js";
import {
  CLIENT_TYPES,
  DOC_MAX_CHUNK_BODY,
  DocHash,
  DocId,
  SERVER_TYPES,
  decodeClient,
  decodeServer,
  docChunkMaxBody,
  docChunks,
  encodeClient,
  encodeServer,
  parseServerMessage,
} from "../src/proto/message.js";
import type { ClientMessage, ServerMessage } from "../src/proto/message.js";

const P = "0a".repeat(16);

function refusal(f: () => unknown): DecodeError {
  try {
    f();
  } catch (e) {
    if (e instanceof DecodeError) {
      return e;
    }
    throw e;
  }
  throw new Error("expected a DecodeError");
}

const welcome = {
  type: "welcome",
  participant_id: P,
  session_id: "s1",
  role: "party",
  side: "A",
  resume_token: "r",
  resume_grace_secs: 30,
  channel: { id: "joint", kind: "joint", members: [{ participant_id: P, role: "party", side: "A", connected: true }] },
  resumed: false,
  locked: false,
};

describe("server messages", () => {
  it("decode every type", () => {
    const samples: Record<ServerMessage["type"], object> = {
      welcome,
      consent_recorded: { type: "consent_recorded" },
      channel: { type: "channel", channel: welcome.channel },
      session: {
        type: "session",
        session: {
          locked: false,
          waiting: [{ participant_id: P, role: "counsel", side: "B", consented: true, connected: false }],
          channels: [welcome.channel],
        },
      },
      participant_left: { type: "participant_left", participant_id: P, reason: "timeout" },
      lock_changed: { type: "lock_changed", locked: true },
      relayed: { type: "relayed", from: P, channel: "caucus-A", data: "{}" },
      invite: { type: "invite", token: "t", role: "observer", expires_at: 1_700_000_000 },
      kicked: { type: "kicked" },
      session_ended: { type: "session_ended" },
      draining: { type: "draining" },
      pong: { type: "pong" },
      media_answer: { type: "media_answer", sdp: "v=0" },
      media_slots: { type: "media_slots", slots: [{ mid: "1", kind: "video" }, { mid: "2", kind: "audio", participant_id: P }] },
      doc_ticket: { type: "doc_ticket", doc_id: "ab".repeat(16), op: "up", token: "t", chunks: 3, expires_at: 1_800_000_600 },
      error: { type: "error", code: "forbidden", message: "no", in_reply_to: "admit" },
    };
    expect(Object.keys(samples).sort()).toEqual([...SERVER_TYPES].sort());
    for (const [ty, v] of Object.entries(samples)) {
      const m = decodeServer(JSON.stringify(v));
      expect(m.type).toBe(ty);
      // Round trip through the encoder.
      expect(decodeServer(encodeServer(m))).toEqual(m);
    }
  });

  it("read u64s as bigints, absent and null options as undefined, a missing list as empty", () => {
    const m = decodeServer(JSON.stringify({ ...welcome, side: null, channel: null }));
    expect(m).toMatchObject({ type: "welcome", resume_grace_secs: 30n, side: undefined, channel: undefined, ice_servers: [] });
    const bare: Record<string, unknown> = { ...welcome };
    delete bare["side"];
    delete bare["channel"];
    expect(parseServerMessage(bare)).toMatchObject({ side: undefined, channel: undefined });
  });

  it("ignore unknown fields (no deny_unknown_fields on server messages)", () => {
    expect(decodeServer('{"type":"pong","extra":1}')).toEqual({ type: "pong" });
    expect(decodeServer(JSON.stringify({ ...welcome, future: [1, 2] })).type).toBe("welcome");
  });

  it.each([
    ["not json", "{", "bad_json"],
    ["not an object", "[1]", "bad_json"],
    ["no type", '{"a":1}', "unknown_type"],
    ["an unknown type", '{"type":"teleport"}', "unknown_type"],
    ["a missing field", '{"type":"channel"}', "invalid_message"],
    ["a bad participant id", JSON.stringify({ ...welcome, participant_id: "../x" }), "invalid_message"],
    ["a role by its other spelling", JSON.stringify({ ...welcome, role: "co-mediator" }), "invalid_message"],
    ["a lowercase side", JSON.stringify({ ...welcome, side: "a" }), "invalid_message"],
    ["two letters of side", JSON.stringify({ ...welcome, side: "AB" }), "invalid_message"],
    ["an unknown kind", JSON.stringify({ type: "channel", channel: { ...welcome.channel, kind: "lobby" } }), "invalid_message"],
    ["an unknown error code", '{"type":"error","code":"oops","message":"m"}', "invalid_message"],
    ["an unknown leave reason", `{"type":"participant_left","participant_id":"${P}","reason":"bored"}`, "invalid_message"],
    ["a u64 beyond 2^53", JSON.stringify({ ...welcome, resume_grace_secs: 2 ** 60 }), "invalid_message"],
    ["a negative u64", JSON.stringify({ ...welcome, resume_grace_secs: -1 }), "invalid_message"],
    ["a string for a bool", JSON.stringify({ ...welcome, locked: "false" }), "invalid_message"],
    ["a null list", JSON.stringify({ ...welcome, ice_servers: null }), "invalid_message"],
    ["a bad member in a list", JSON.stringify({ type: "channel", channel: { ...welcome.channel, members: [{}] } }), "invalid_message"],
  ])("refuse %s", (_what, text, code) => {
    expect(refusal(() => decodeServer(text)).code).toBe(code);
  });
});

describe("client messages", () => {
  const samples: ClientMessage[] = [
    { type: "hello", version: 1, token: "abc" },
    { type: "consent", agreement_hash: "ab".repeat(32) as never },
    { type: "admit", participant_id: ParticipantId.create(P) },
    { type: "move", participant_id: ParticipantId.create(P), channel_id: ChannelId.caucus(Side.A) },
    { type: "create_breakout", members: [ParticipantId.create(P)] },
    { type: "return_all" },
    { type: "lock" },
    { type: "unlock" },
    { type: "kick", participant_id: ParticipantId.create(P) },
    { type: "end" },
    { type: "leave" },
    { type: "relay", to: { channel: ChannelId.joint() }, data: "x" },
    { type: "create_invite", role: "party", side: Side.B, ttl_secs: 600n },
    { type: "ping" },
    { type: "media_offer", sdp: "v=0" },
    { type: "keyframe_request", publisher: ParticipantId.create(P) },
    { type: "doc_upload", doc_id: DocId.create("ab".repeat(16)), size: 65_537n, chunks: 2 },
    { type: "doc_download", doc_id: DocId.create("ab".repeat(16)) },
    { type: "doc_ack", sha256: DocHash.create("cd".repeat(32)) },
  ];

  it("round trip every type through encodeClient and decodeClient", () => {
    expect(samples.map((m) => m.type)).toEqual([...CLIENT_TYPES]);
    for (const m of samples) {
      expect(decodeClient(encodeClient(m))).toEqual(m);
    }
    expect(encodeClient({ type: "create_invite", role: "observer" })).toBe(
      '{"type":"create_invite","role":"observer","side":null,"ttl_secs":null}',
    );
    expect(encodeClient({ type: "relay", to: { participant: ParticipantId.create(P) }, data: "d" })).toBe(
      `{"type":"relay","to":{"participant":"${P}"},"data":"d"}`,
    );
  });

  it("refuse unknown fields, also on the messages without fields", () => {
    for (const ty of ["ping", "return_all", "lock", "unlock", "end", "leave"]) {
      expect(decodeClient(`{"type":"${ty}"}`).type).toBe(ty);
      const e = refusal(() => decodeClient(`{"type":"${ty}","secret":"eyJtoken"}`));
      expect(e.code).toBe("invalid_message");
      expect(e.detail).not.toMatch(/secret|eyJ/);
    }
    expect(refusal(() => decodeClient(`{"type":"kick","participant_id":"${P}","extra":1}`)).code).toBe("invalid_message");
  });

  it("classify as the Rust decoder does", () => {
    expect(refusal(() => decodeClient("{")).code).toBe("bad_json");
    expect(refusal(() => decodeClient('{"type":"nope"}')).code).toBe("unknown_type");
    expect(refusal(() => decodeClient('{"type":"admit"}')).code).toBe("invalid_message");
    expect(refusal(() => decodeClient('{"type":"consent","agreement_hash":"xyz"}')).code).toBe("invalid_consent");
    expect(refusal(() => decodeClient('{"type":"consent"}')).code).toBe("invalid_message");
    expect(refusal(() => decodeClient('{"type":"relay","to":{"channel":"../x"},"data":"x"}')).code).toBe(
      "invalid_message",
    );
    expect(refusal(() => decodeClient('{"type":"relay","to":{"channel":"a","participant":"b"},"data":"x"}')).code).toBe(
      "invalid_message",
    );
  });

  it("never echo a value in an error detail", () => {
    const secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.Sig-7f3a9c";
    const s = JSON.stringify(secret);
    for (const frame of [
      `{"type":"hello","version":${s},"token":"t"}`,
      `{"type":"admit","participant_id":${s}}`,
      `{"type":"relay","to":{${s}:"x"},"data":"x"}`,
      `{"type":"create_invite","role":${s}}`,
      `{"type":"kick","participant_id":"p1",${s}:1}`,
      `{"type":"consent","agreement_hash":${s}}`,
      `{"type":"doc_ack","sha256":${s}}`,
      `{"type":${s}}`,
    ]) {
      const e = refusal(() => decodeClient(frame));
      for (const part of secret.split(".")) {
        expect(e.message, frame).not.toContain(part);
      }
    }
  });
});

describe("documents", () => {
  const D = "0123456789abcdef0123456789abcdef";

  it("encode requests as the Rust decoder reads them (size a u64, chunks a u32)", () => {
    expect(encodeClient({ type: "doc_upload", doc_id: DocId.create(D), size: 65_537n, chunks: 2 })).toBe(
      `{"type":"doc_upload","doc_id":"${D}","size":65537,"chunks":2}`,
    );
    expect(encodeClient({ type: "doc_download", doc_id: DocId.create(D) })).toBe(`{"type":"doc_download","doc_id":"${D}"}`);
  });

  it("decode the ticket as Rust's encode_server writes it", () => {
    const wire = `{"type":"doc_ticket","doc_id":"${D}","op":"down","token":"t","chunks":3,"expires_at":1800000600}`;
    const want: ServerMessage = {
      type: "doc_ticket",
      doc_id: DocId.create(D),
      op: "down",
      token: "t",
      chunks: 3,
      expires_at: 1_800_000_600n,
    };
    expect(decodeServer(wire)).toEqual(want);
    expect(encodeServer(want)).toBe(wire);
  });

  it.each([
    ["a short id", `{"type":"doc_download","doc_id":"${D.slice(1)}"}`],
    ["an uppercase id", `{"type":"doc_download","doc_id":"${D.toUpperCase()}"}`],
    ["a negative size", `{"type":"doc_upload","doc_id":"${D}","size":-1,"chunks":1}`],
    ["chunks beyond u32", `{"type":"doc_upload","doc_id":"${D}","size":1,"chunks":4294967296}`],
    ["a missing field", `{"type":"doc_upload","doc_id":"${D}","size":1}`],
    ["an unknown field", `{"type":"doc_download","doc_id":"${D}","name":"contract.pdf"}`],
  ])("refuse a request with %s", (_what, text) => {
    const e = refusal(() => decodeClient(text));
    expect(e.code).toBe("invalid_message");
    expect(e.message).not.toContain("contract");
  });

  it.each([
    ["an unknown op", "op", "sideways"],
    ["a null token", "token", null],
    ["a u64 beyond 2^53", "expires_at", 2 ** 60],
    ["a bad id", "doc_id", "nope"],
  ])("refuse a ticket with %s", (_what, field, value) => {
    const base = { type: "doc_ticket", doc_id: D, op: "up", token: "t", chunks: 1, expires_at: 1 };
    const text = JSON.stringify({ ...base, [field]: value });
    expect(refusal(() => decodeServer(text)).code).toBe("invalid_message");
  });

  it("encode and decode an acknowledgment as the Rust decoder reads it", () => {
    const H = "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7";
    const wire = `{"type":"doc_ack","sha256":"${H}"}`;
    expect(encodeClient({ type: "doc_ack", sha256: DocHash.create(H) })).toBe(wire);
    expect(decodeClient(wire)).toEqual({ type: "doc_ack", sha256: H });
    expect(DocHash.parse(H)).toBe(H);
    expect(DocHash.parse(H.toUpperCase())).toBeUndefined();
    expect(() => DocHash.create(H.slice(1))).toThrow(DecodeError);
  });

  it.each([
    ["a short hash", `{"type":"doc_ack","sha256":"${"a".repeat(63)}"}`],
    ["an uppercase hash", `{"type":"doc_ack","sha256":"${"A".repeat(64)}"}`],
    ["a number", `{"type":"doc_ack","sha256":7}`],
    ["a missing field", `{"type":"doc_ack"}`],
    ["an unknown field", `{"type":"doc_ack","sha256":"${"a".repeat(64)}","name":"contract.pdf"}`],
  ])("refuse an acknowledgment with %s (invalid_message, never invalid_consent)", (_what, text) => {
    const e = refusal(() => decodeClient(text));
    expect(e.code).toBe("invalid_message");
    expect(e.message).not.toContain("contract");
  });

  it("count chunks and sealed lengths as e2ee §8.7 does", () => {
    expect([0n, 1n, 65_536n, 65_537n, 25n * 1024n * 1024n].map(docChunks)).toEqual([1n, 1n, 1n, 2n, 400n]);
    expect(docChunkMaxBody(0n, 0n)).toBe(16n);
    expect(docChunkMaxBody(0n, 1n)).toBeUndefined();
    expect(docChunkMaxBody(65_537n, 0n)).toBe(DOC_MAX_CHUNK_BODY);
    expect(docChunkMaxBody(65_537n, 1n)).toBe(17n);
    expect(DOC_MAX_CHUNK_BODY).toBe(65_552n);
    expect(DocId.parse("ab".repeat(16))).toBe("ab".repeat(16));
    expect(DocId.parse("../".repeat(11).slice(0, 32))).toBeUndefined();
    expect(() => DocId.create("x")).toThrow(DecodeError);
  });
});

describe("ids", () => {
  it("follow the id grammar", () => {
    expect(ParticipantId.parse("a".repeat(64))).toBe("a".repeat(64));
    expect(ParticipantId.parse("a".repeat(65))).toBeUndefined();
    expect(ParticipantId.parse("")).toBeUndefined();
    expect(ChannelId.parse("caucus-A")).toBe("caucus-A");
    expect(() => ChannelId.create("a/b")).toThrow(IdError);
    expect(ChannelId.breakout(3)).toBe("breakout-3");
  });

  it("number sides as confer/1 does, and parse roles and sides as FromStr does", () => {
    expect(Side.number(Side.A)).toBe(1);
    expect(Side.number(Side.create(26))).toBe(26);
    expect(() => Side.create(27)).toThrow(IdError);
    expect(Side.fromStr("b")).toBe("B");
    expect(Side.fromWire("b")).toBeUndefined();
    expect(Role.fromStr("co-mediator")).toBe("co_mediator");
    expect(Role.fromWire("co-mediator")).toBeUndefined();
    expect(Role.isManager("co_mediator")).toBe(true);
    expect(Role.needsSide("observer")).toBe(false);
  });
});
