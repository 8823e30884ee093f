// core/client.ts and the files of its `impl Core`: what the scenarios do not reach (media
// frames, keyframe requests) and what only the TypeScript twin has (the call queue, the
// refusal to seal media while a call is half done), on real cores through the scenario runner.

import { describe, expect, it } from "vitest";

import { Core, CoreConfig, MediaRejected, NotSecured, agreementHash, alarmCode, mediaCodec } from "../src/core/client.js";
import type { Event } from "../src/core/client.js";
import { STREAM_AUDIO, STREAM_CAMERA, STREAM_DATA, STREAM_SCREEN } from "../src/core/frame.js";
import { ChannelId, ParticipantId } from "../src/proto/ids.js";
import type { ServerMessage } from "../src/proto/message.js";
import { Run, SeededRng, load } from "./scenario-run.js";
import type { Obj } from "./helpers.js";

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** The welcomed trio (m, a, b in joint, each secured), its cores publishing microphone and camera. */
async function trio(): Promise<Run> {
  const v = load("welcomed_trio.json");
  const run = new Run("media", v, (_n, cfg) => {
    cfg.mediaStreams = [STREAM_AUDIO, STREAM_CAMERA];
    cfg.mediaReceive = true;
  });
  for (const [i, st] of (v["steps"] as Obj[]).entries()) {
    await run.step(st, i);
  }
  return run;
}

function rejection(f: () => unknown): MediaRejected {
  try {
    f();
  } catch (e) {
    if (e instanceof MediaRejected) {
      return e;
    }
    throw e;
  }
  throw new Error("expected a MediaRejected");
}

describe("the core", () => {
  it("is sans-IO: hello first, time and randomness are inputs", async () => {
    const core = new Core(new SeededRng(utf8("doc")), CoreConfig.create(agreementHash("the agreement")));
    expect(core.hello("token")).toEqual({ type: "hello", version: 1, token: "token" });
    await core.tick(0);
    expect(core.pollEvent()).toBeUndefined();
    expect(core.pollSend()).toBeUndefined();
    expect(core.secured()).toBeUndefined();
  });

  it("names each media stream's codec", () => {
    expect([STREAM_AUDIO, STREAM_CAMERA, STREAM_SCREEN, STREAM_DATA].map(mediaCodec)).toEqual([
      "opus",
      "vp8",
      "vp8",
      undefined,
    ]);
  });

  it("refuses a welcome for another role than it was invited as, and a mediator welcome on a pinned link", async () => {
    const welcome = (role: "party" | "mediator"): ServerMessage => ({
      type: "welcome",
      participant_id: ParticipantId.create("01".repeat(16)),
      session_id: "s" as never,
      role,
      resume_token: "r",
      resume_grace_secs: 30n,
      resumed: false,
      locked: false,
      ice_servers: [],
    });
    const cfg = CoreConfig.create(agreementHash("a"));
    cfg.expectedRole = "party";
    const c1 = new Core(new SeededRng(utf8("1")), cfg);
    await c1.handle(welcome("mediator"), 0);
    expect(c1.stats().alarms).toEqual(["identity_mismatch"]);
    expect(c1.role()).toBeUndefined();

    const pinned = CoreConfig.create(agreementHash("a"));
    pinned.invite = { token: "t", psk: undefined, mediatorIk: new Uint8Array(32).fill(7) };
    const c2 = new Core(new SeededRng(utf8("2")), pinned);
    await c2.handle(welcome("mediator"), 0);
    const e = c2.pollEvent();
    expect(e?.type === "alarm" ? alarmCode(e.alarm) : e?.type).toBe("identity_mismatch");
    await c2.handle(welcome("party"), 0);
    expect(c2.role()).toBe("party");
  });
});

describe("media frames", () => {
  it("seal for the room I am in and open at its members, by the KID's key", async () => {
    const run = await trio();
    const a = run.core("a");
    const b = run.core("b");
    const pa = run.pid("a");
    const voice = utf8("opus frame from a");
    const frame = a.sealMedia(STREAM_AUDIO, voice);
    expect(b.openMedia(pa, STREAM_AUDIO, frame)).toEqual(voice);
    expect(run.core("m").openMedia(pa, STREAM_AUDIO, frame)).toEqual(voice);
    // A VP8 key frame keeps its 10-byte clear prefix.
    const picture = Uint8Array.from({ length: 40 }, (_, i) => (i === 0 ? 0x10 : i));
    const vf = a.sealMedia(STREAM_CAMERA, picture);
    expect(vf.subarray(0, 10)).toEqual(picture.subarray(0, 10));
    expect(b.openMedia(pa, STREAM_CAMERA, vf)).toEqual(picture);
    expect(a.mediaGeneration(STREAM_AUDIO)).toBeTypeOf("bigint");
    expect(a.stats().framesSealed).toBe(2);
    expect(b.stats().framesOpened).toBe(2);
    // b asked each publisher once for a keyframe when its new camera key arrived.
    const asked = run
      .who("b")
      .sent.flatMap((m) => (m.type === "keyframe_request" ? [run.nameOf(m.publisher)] : []))
      .sort();
    expect(asked).toEqual(["a", "m"]);
    // Not a stream I publish, not a media stream at all.
    expect(() => a.sealMedia(STREAM_SCREEN, picture)).toThrow(NotSecured);
    expect(() => a.sealMedia(STREAM_DATA, voice)).toThrow(NotSecured);
  }, 60_000);

  it("reject replays and forgeries (counted), hold for a missing key (not counted)", async () => {
    const run = await trio();
    const a = run.core("a");
    const b = run.core("b");
    const pa = run.pid("a");
    const frame = a.sealMedia(STREAM_AUDIO, utf8("once"));
    b.openMedia(pa, STREAM_AUDIO, frame);
    expect(rejection(() => b.openMedia(pa, STREAM_AUDIO, frame)).kind).toBe("invalid");
    const forged = a.sealMedia(STREAM_AUDIO, utf8("twice"));
    forged[0] = (forged[0] ?? 0) ^ 1;
    expect(rejection(() => b.openMedia(pa, STREAM_AUDIO, forged)).kind).toBe("invalid");
    expect(b.stats().mediaDecryptFailures).toBe(2);
    expect(b.stats().failureReasons.get("media")).toBe(2);
    // The screen is keyed by nobody: no key yet, not a failure until the shell gives up on it.
    const tag = a.sealMedia(STREAM_CAMERA, Uint8Array.of(1, 2, 3));
    expect(rejection(() => b.openMedia(pa, STREAM_SCREEN, tag)).kind).toBe("no_key");
    expect(b.stats().decryptFailures).toBe(2);
    b.mediaFrameExpired();
    expect(b.stats().decryptFailures).toBe(3);
    // A frame from someone who is not a participant id at all.
    expect(rejection(() => b.openMedia(ParticipantId.create("x"), STREAM_AUDIO, frame)).kind).toBe("invalid");
  }, 60_000);
});

describe("the call queue (TypeScript only)", () => {
  it("runs calls one at a time in order, and refuses to seal media while one is in flight", async () => {
    const run = await trio();
    const m = run.core("m");
    // B leaves: the mediator re-signs joint and sends new keys (HPKE seals: real suspensions).
    const left = m.handle({ type: "participant_left", participant_id: run.pid("b"), reason: "left" }, 1);
    const tick = m.tick(2);
    for (let i = 0; i < 100 && !m.busy; i++) {
      await Promise.resolve();
    }
    expect(m.busy).toBe(true);
    // The roster without B may be accepted already while the keys that replace B's are not out.
    expect(() => m.sealMedia(STREAM_AUDIO, utf8("mid-call"))).toThrow(NotSecured);
    await left;
    expect(m.now).toBe(1);
    await tick;
    expect(m.busy).toBe(false);
    expect(m.now).toBe(2);
    expect(m.rosterMembers(ChannelId.joint()).map((p) => run.nameOf(p)).sort()).toEqual(["a", "m"]);
    expect(m.sealMedia(STREAM_AUDIO, utf8("after"))).toBeInstanceOf(Uint8Array);
  }, 60_000);
});

describe("the end", () => {
  it("deletes every key and processes nothing the server sends afterwards", async () => {
    const run = await trio();
    const b = run.core("b");
    const frame = run.core("a").sealMedia(STREAM_AUDIO, utf8("late"));
    while (b.pollEvent() !== undefined) {
      // drain
    }
    expect(await b.leave()).toEqual({ type: "leave" });
    const events: Event[] = [];
    for (let e = b.pollEvent(); e !== undefined; e = b.pollEvent()) {
      events.push(e);
    }
    expect(events).toEqual([{ type: "ended" }]);
    expect(b.stats().keysDeleted).toBe(true);
    expect(b.identity()).toBeUndefined();
    expect(b.secured()).toBeUndefined();
    expect(b.receiveKeysFor(ChannelId.joint())).toBe(0);
    await expect(b.sendChat("anyone?")).rejects.toThrow(NotSecured);
    expect(rejection(() => b.openMedia(run.pid("a"), STREAM_AUDIO, frame)).kind).toBe("ended");
    await b.handle({ type: "session_ended" }, 5);
    expect(b.pollEvent()).toBeUndefined();
    expect(b.stats().decryptFailures).toBe(0);
  }, 60_000);
});
