// Media follows a session to its new node (cluster mode, docs/operations.md "Cluster mode"): a
// redis-server and two `confer serve --config` nodes of the test's own, sharing one signing key,
// each with its own SFU on its own UDP port; three Chromium processes (each its own colour and
// tone) whose pages load from, and connect through, a TCP forwarder in front of node 0, as
// behind a load balancer.
//
// - The session starts on node 0: the mediator and party A in joint see and hear each other;
//   party B is alone in its caucus. A's page uses RTCRtpScriptTransform, the others Chromium's
//   encoded insertable streams: both transform paths are made anew.
// - Node 0 drains (SIGTERM): it hands the session over and closes every page's connection
//   (1012); the forwarder now sends new connections to node 1, as a load balancer that took the
//   draining backend out would. Each page resumes there and, its session's SFU being another
//   one, makes a new peer connection with the same tracks (no new getUserMedia) and offers it.
//   Within 10 s of the SIGTERM the mediator and A see and hear each other again, through new
//   receive tracks, while node 0 has exited: node 1's SFU carries it. One session code, no
//   alarm, the same rooms; B, still in its caucus, is seen and heard by nobody, and sees and
//   hears nobody.
// - Every connection drops twice in a row (the forwarder cuts them): the offer made after the
//   second drop comes sooner than media_offer_interval_ms after the first, is refused
//   (`rate_limited`), and goes again after the interval: media comes back, nobody is left
//   without it.
// - B comes back to joint on node 1: seen and heard there.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { startForwarder, startNode, startRedis, writeSigningKey } from "./helpers/cluster.js";
import type { ClusterNode, Forwarder, Redis } from "./helpers/cluster.js";
import {
  PARTICIPANTS,
  commandFrom,
  hears,
  hearsNowhere,
  inRoom,
  inviteFrom,
  joinThroughPage,
  launchChromium,
  sees,
  showsNowhere,
  until,
  viewOf,
} from "./helpers/index.js";
import type { E2EPage } from "./helpers/index.js";

/** How long the session may take to go on, from the SIGTERM to seeing and hearing again. */
const FAILOVER_LIMIT_MS = 10_000;

let dir: string;
let redis: Redis;
let nodes: ClusterNode[] = [];
let lb: Forwarder;
let m: E2EPage;
let a: E2EPage;
let b: E2EPage;
const id: Record<string, string> = {};
const quiet = { audioProcessing: false } as const;
const session = `c-${Math.random().toString(36).slice(2, 10)}`;
let codeBefore: string | undefined;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "confer-e2e-cluster-"));
  redis = await startRedis();
  const key = await writeSigningKey(dir);
  nodes = [await startNode({ redisUrl: redis.url, signingKeyFile: key }), await startNode({ redisUrl: redis.url, signingKeyFile: key })];
  lb = await startForwarder(nodes[0]?.port ?? 0);
  [m, a, b] = await Promise.all([launchChromium(PARTICIPANTS.red), launchChromium(PARTICIPANTS.green), launchChromium(PARTICIPANTS.blue)]);
});

afterAll(async () => {
  // Whatever started (a failed start leaves some unset): each stop on its own.
  await Promise.allSettled([m, a, b].map(async (p) => p.close()));
  await Promise.allSettled([async () => lb.stop(), ...nodes.map((n) => async () => n.stop())].map((f) => f()));
  await Promise.allSettled([(async () => redis.stop())(), (async () => rm(dir, { recursive: true, force: true }))()]);
});

const node = (i: number): ClusterNode => {
  const n = nodes[i];
  if (n === undefined) {
    throw new Error(`no node ${String(i)}`);
  }
  return n;
};

/** The page's receive tracks: ids, and whether each is live. */
function tracksOf(p: E2EPage): Promise<{ id: string; live: boolean }[]> {
  return p.evaluate(() => {
    const g = globalThis as unknown as { __conferE2E: { session?: { view(): { slots: { track: MediaStreamTrack }[] } } } };
    return (g.__conferE2E.session?.view().slots ?? []).map((s) => ({ id: s.track.id, live: s.track.readyState === "live" }));
  }, undefined);
}

/** The track the tile of participant `who` plays (a video or an audio element). */
function tileTrack(p: E2EPage, kind: "video" | "audio", who: string): Promise<string | undefined> {
  return p.evaluate(
    ({ kind, who }) => {
      const el = document.querySelector(`${kind}[data-participant="${who}"]`);
      return el instanceof HTMLMediaElement && el.srcObject instanceof MediaStream ? el.srcObject.getTracks()[0]?.id : undefined;
    },
    { kind, who },
  );
}

describe("media follows a session to its new node", () => {
  test("on node 0: the mediator and A see and hear each other; B is in its caucus", async () => {
    const token = await node(0).token(session, "mediator");
    // Both transform paths through the move: A's page RTCRtpScriptTransform (a new relay worker
    // for its new peer connection), the others Chromium's encoded insertable streams.
    await joinThroughPage(m, `${lb.url}join#t=${token}`, "Mediator Mo", quiet);
    await until("the mediator is in joint", () => viewOf(m), (v) => inRoom(v, "joint", 1));
    await joinThroughPage(a, await inviteFrom(m, "party", "A"), "Ada", { ...quiet, transformPath: "script" });
    await joinThroughPage(b, await inviteFrom(m, "party", "B"), "Bo", quiet);
    for (const [k, p] of [["m", m], ["a", a], ["b", b]] as const) {
      id[k] = (await until(`${p.participant.name} is in joint with three`, () => viewOf(p), (v) => inRoom(v, "joint", 3))).participantId ?? "";
    }
    expect((await viewOf(a)).transformPath).toBe("script");
    expect((await viewOf(m)).transformPath).toBe("insertable");
    await commandFrom(m, { type: "move", participant_id: id["b"], channel_id: "caucus-B" });
    await until("B is alone in its caucus", () => viewOf(b), (v) => inRoom(v, "caucus-B", 1));
    await until("the mediator and A are in joint", () => viewOf(m), (v) => inRoom(v, "joint", 2));
    await sees(m, id["a"] ?? "", PARTICIPANTS.green);
    await sees(a, id["m"] ?? "", PARTICIPANTS.red);
    await hears(m, id["a"] ?? "", PARTICIPANTS.green);
    await hears(a, id["m"] ?? "", PARTICIPANTS.red);
    expect(await node(0).metric("confer_cluster_sessions_owned"), "node 0 runs the session").toBe(1);
    expect(await node(1).metric("confer_cluster_sessions_owned")).toBe(0);
    expect(lb.forwarded.get(node(1).port) ?? 0, "nothing went to node 1 yet").toBe(0);
    codeBefore = (await viewOf(m)).sessionCode;
    expect(codeBefore).toBeDefined();
  });

  test("node 0 drains: within 10 s both see and hear each other again through node 1's SFU, B through nobody", async () => {
    const before = new Map<E2EPage, Set<string>>();
    for (const p of [m, a, b]) {
      before.set(p, new Set((await tracksOf(p)).map((t) => t.id)));
    }
    const peersBefore = (await node(1).metric("confer_media_peers")) ?? 0;
    expect(peersBefore).toBe(0);

    // The load balancer takes node 0 out, and node 0 is told to stop.
    lb.switchTo(node(1).port);
    const t0 = Date.now();
    node(0).drain();

    // Each page resumes on node 1 and makes a new peer connection: every receive track is new.
    await Promise.all(
      [m, a, b].map((p) =>
        until(
          `${p.participant.name} has a new peer connection`,
          () => tracksOf(p),
          (ts) => ts.length > 0 && ts.every((t) => t.live && !(before.get(p)?.has(t.id) ?? true)),
          FAILOVER_LIMIT_MS,
        ),
      ),
    );
    const rebuilt = Date.now() - t0;
    // Seen and heard again, each in the tile of the right person, from the new tracks.
    const left = (): number => Math.max(1_000, FAILOVER_LIMIT_MS - (Date.now() - t0));
    await Promise.all([
      sees(m, id["a"] ?? "", PARTICIPANTS.green, left()),
      sees(a, id["m"] ?? "", PARTICIPANTS.red, left()),
      hears(m, id["a"] ?? "", PARTICIPANTS.green, left()),
      hears(a, id["m"] ?? "", PARTICIPANTS.red, left()),
    ]);
    const took = Date.now() - t0;
    console.log(`cluster failover: new peer connections ${String(rebuilt)} ms, seen and heard ${String(took)} ms after SIGTERM`);
    expect(took, "seen and heard again within the limit").toBeLessThan(FAILOVER_LIMIT_MS);
    for (const [p, who] of [
      [m, id["a"] ?? ""],
      [a, id["m"] ?? ""],
    ] as const) {
      const now = new Set((await tracksOf(p)).map((t) => t.id));
      for (const kind of ["video", "audio"] as const) {
        const t = await tileTrack(p, kind, who);
        expect(t !== undefined && now.has(t), `${p.participant.name}'s ${kind} tile plays a track of the new peer connection`).toBe(true);
      }
    }

    // Node 0 is gone (its SFU with it): node 1 runs the session and carries everyone's media.
    expect(await Promise.race([node(0).exited.then(() => "exited"), new Promise((r) => setTimeout(() => {
      r("running");
    }, 5_000))])).toBe("exited");
    expect(await node(1).metric("confer_cluster_sessions_owned"), "node 1 runs the session").toBe(1);
    expect(await node(1).metric("confer_media_peers"), "every page has a peer on node 1's SFU").toBe(3);
    expect(lb.forwarded.get(node(1).port) ?? 0, "the pages came back through the forwarder").toBeGreaterThanOrEqual(3);

    // The same session, the same rooms, the same code, no alarm.
    const [vm, va, vb] = [await viewOf(m), await viewOf(a), await viewOf(b)];
    expect(inRoom(vm, "joint", 2) && inRoom(va, "joint", 2), "the mediator and A in joint").toBe(true);
    expect(inRoom(vb, "caucus-B", 1), "B alone in its caucus").toBe(true);
    expect(vm.sessionCode, "one session code").toBe(codeBefore);
    expect(va.sessionCode).toBe(codeBefore);
    expect(vb.sessionCode).toBe(codeBefore);
    for (const v of [vm, va, vb]) {
      expect(v.alarms).toEqual([]);
      expect(v.ended).toBeUndefined();
    }

    // Who is not seen or heard: B, in its caucus, by the mediator and A; and B sees and hears neither.
    // (One probe at a time per page, the pages at once: each is a browser process of its own.)
    await Promise.all([
      (async () => {
        await showsNowhere(m, PARTICIPANTS.blue.colour);
        await hearsNowhere(m, PARTICIPANTS.blue.toneHz);
      })(),
      (async () => {
        await showsNowhere(a, PARTICIPANTS.blue.colour);
        await hearsNowhere(a, PARTICIPANTS.blue.toneHz);
      })(),
      (async () => {
        await showsNowhere(b, PARTICIPANTS.red.colour);
        await showsNowhere(b, PARTICIPANTS.green.colour);
        await hearsNowhere(b, PARTICIPANTS.red.toneHz);
        await hearsNowhere(b, PARTICIPANTS.green.toneHz);
      })(),
    ]);
  });

  test("every connection drops twice in a row: the offer refused as too soon goes again, and media comes back", async () => {
    const refusals = async (): Promise<number> => (await node(1).metric('confer_errors_total{code="rate_limited"}')) ?? 0;
    const refusedBefore = await refusals();
    const rebuilt = async (what: string): Promise<void> => {
      const before = new Map<E2EPage, Set<string>>();
      for (const p of [m, a, b]) {
        before.set(p, new Set((await tracksOf(p)).map((t) => t.id)));
      }
      lb.cut();
      await Promise.all(
        [m, a, b].map((p) =>
          until(
            `${p.participant.name} has a new peer connection (${what})`,
            () => tracksOf(p),
            (ts) => ts.length > 0 && ts.every((t) => t.live && !(before.get(p)?.has(t.id) ?? true)),
            FAILOVER_LIMIT_MS,
          ),
        ),
      );
    };
    // The first drop: each page resumes on node 1 (the same node) and offers a new peer
    // connection. The second, at once: the next offer comes sooner than the server's
    // media_offer_interval_ms (2 s) after that one, and is refused.
    await rebuilt("first drop");
    const t0 = Date.now();
    await rebuilt("second drop");
    await until("node 1 refused offers as too soon", refusals, (n) => n > refusedBefore, FAILOVER_LIMIT_MS);
    const left = (): number => Math.max(1_000, FAILOVER_LIMIT_MS - (Date.now() - t0));
    await Promise.all([
      sees(m, id["a"] ?? "", PARTICIPANTS.green, left()),
      sees(a, id["m"] ?? "", PARTICIPANTS.red, left()),
      hears(m, id["a"] ?? "", PARTICIPANTS.green, left()),
      hears(a, id["m"] ?? "", PARTICIPANTS.red, left()),
    ]);
    console.log(`second drop: ${String((await refusals()) - refusedBefore)} offers refused as too soon; seen and heard ${String(Date.now() - t0)} ms after the drop`);
    expect(await node(1).metric("confer_media_peers"), "every page has one peer on node 1's SFU").toBe(3);
    for (const p of [m, a, b]) {
      const v = await viewOf(p);
      expect(v.alarms, p.participant.name).toEqual([]);
      expect(v.sessionCode, p.participant.name).toBe(codeBefore);
    }
  });

  test("B comes back to joint on node 1 and is seen and heard there", async () => {
    await commandFrom(m, { type: "move", participant_id: id["b"], channel_id: "joint" });
    await until("B is in joint with three", () => viewOf(b), (v) => inRoom(v, "joint", 3));
    await sees(m, id["b"] ?? "", PARTICIPANTS.blue);
    await hears(a, id["b"] ?? "", PARTICIPANTS.blue);
    await sees(b, id["a"] ?? "", PARTICIPANTS.green);
    for (const p of [m, a, b]) {
      expect((await viewOf(p)).alarms, p.participant.name).toEqual([]);
    }
  });

  test("no page logged an error or failed a request", () => {
    for (const p of [m, a, b]) {
      expect(p.problems.filter((x) => x.kind !== "console-warning"), p.participant.name).toEqual([]);
    }
  });
});
