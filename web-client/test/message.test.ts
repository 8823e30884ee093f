// proto/message.ts and proto/ids.ts: strict decoding of signalling messages, as serde decodes
// crates/proto's `ServerMessage` and `ClientMessage` (crates/proto/src/message.rs tests).

import { describe, expect, it } from "vitest";

import { DecodeError } from "../src/proto/error.js";
import { ChannelId, IdError, ParticipantId, Role, Side } from "../src/proto/ids.js";
import {
  CLIENT_TYPES,
  SERVER_TYPES,
  decodeClient,
  decodeServer,
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
      `{"type":${s}}`,
    ]) {
      const e = refusal(() => decodeClient(frame));
      for (const part of secret.split(".")) {
        expect(e.message, frame).not.toContain(part);
      }
    }
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
