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
  axeViolations,
  commandFrom,
  countersOf,
  dropReceiveKeys,
  hears,
  hearsNowhere,
  inviteFrom,
  joinThroughPage,
  launchChromium,
  sampleVideoColour,
  sees,
  showsNowhere,
  startServer,
  until,
  viewOf,
  waitForVideoColour,
} from "./helpers/index.js";
import type { ConferServer, E2EPage, SeenView } from "./helpers/index.js";


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

async function seesPage(viewer: E2EPage, who: E2EPage): Promise<void> {
  await sees(viewer, pid[who.participant.name] ?? "", who.participant);
}

async function hearsPage(viewer: E2EPage, who: E2EPage): Promise<void> {
  await hears(viewer, pid[who.participant.name] ?? "", who.participant);
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
    // Party A's link from the mediator's page, as a person makes it; party B's through the SDK.
    await m.waitFor("#invite:not([hidden]) #invite-who");
    await m.playwright?.selectOption("#invite-who", "party:A");
    await m.playwright?.click("#invite button[type=submit]");
    const linkA = await until(
      "the invitation link",
      () => m.evaluate(() => (document.getElementById("invite-link") as HTMLInputElement).value, undefined),
      (l) => l.startsWith(server.url),
    );
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
          await seesPage(viewer, who);
          await hearsPage(viewer, who);
        }
      }
    }
    // The call screens (the mediator's with its invite form) pass axe.
    for (const p of [m, a]) {
      expect(await axeViolations(p), p.participant.name).toEqual([]);
    }
    await m.screenshot("media", "mediator-call");
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
    await seesPage(m, a);
    await hearsPage(m, a);
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
    // And no audio element of B's, shown or not, carries A's tone.
    await hearsNowhere(b, PARTICIPANTS.green.toneHz);
    await showsNowhere(b, PARTICIPANTS.green.colour);

    await commandFrom(m, { type: "return_all" });
    for (const p of [m, a, b]) {
      await until(`${p.participant.name} is back in joint with three`, () => viewOf(p), (v) => secured(v, "joint", 3));
    }
    await seesPage(b, a);
    await hearsPage(b, a);
  });

  test("A shares a screen: B decodes it in a tile of its own, A's camera tile unchanged", async () => {
    const ida = pid["green"] ?? "";
    const click = a.playwright?.click("#share-screen");
    expect(click).toBeDefined();
    await click;
    await until("A's page says it shares", () => viewOf(a), (v) => v.sharingScreen);
    await b.waitFor(`video[data-participant="${ida}"][data-source="screen"]`, 15_000);
    const screen = await sampleVideoColour(b, `video[data-participant="${ida}"][data-source="screen"]`, 10_000);
    expect(screen.width).toBeGreaterThan(0);
    await waitForVideoColour(b, `video[data-participant="${ida}"][data-source="camera"]`, PARTICIPANTS.green.colour, 10_000);
    const label = await b.evaluate(
      (id) => document.querySelector(`video[data-participant="${id}"][data-source="screen"]`)?.parentElement?.textContent ?? "",
      ida,
    );
    expect(label).toBe("Ada's screen");
    await a.playwright?.click("#share-screen");
    await until("A's page stopped sharing", () => viewOf(a), (v) => !v.sharingScreen);
  });

  test("a page without A's receive keys decodes nothing of A while A's frames keep arriving", async () => {
    const ida = pid["green"] ?? "";
    await dropReceiveKeys(b, ida);
    const [m0, b0] = await openedFrom([m, b], ida);
    const before = await countersOf(b);
    // A's frames still arrive at B: each is held for a key that never comes, then dropped.
    const after = await until("B drops A's frames unopened", () => countersOf(b), (c) => c.expired >= before.expired + 20);
    expect(after.openedFrom[ida] ?? 0, JSON.stringify(after)).toBe(b0);
    const [m1] = await openedFrom([m], ida);
    expect(m1).toBeGreaterThan((m0 ?? 0) + 10);
    // No video element of B's presents A's colour any more, and A's tile is gone (nothing of A's opens).
    await showsNowhere(b, PARTICIPANTS.green.colour);
    await until(
      "A's tile leaves B's page",
      () => b.evaluate((id) => document.querySelectorAll(`[data-participant="${id}"]`).length, ida),
      (n) => n === 0,
    );
  });
});

describe("the watchdog", () => {
  let c: E2EPage;

  afterAll(async () => {
    await c.close();
  });

  test("a camera whose frames skip the transform is stopped, with an alarm; nobody sees its colour", async () => {
    c = await launchChromium(PARTICIPANTS.yellow);
    const link = await inviteFrom(m, "counsel", "A");
    // The script path: without its transform, counsel's camera frames really go out in clear
    // (on the insertable path Chromium would drop them), until the watchdog stops the track.
    await joinThroughPage(c, link, "Cy", { transformPath: "script", test: { skipSenderTransform: "camera" } });
    const v = await until("counsel is secured", () => viewOf(c), (v) => v.phase === "secured" && v.present.length === 4);
    pid["yellow"] = v.participantId ?? "";
    const after = await until("the watchdog raises transform_bypassed", () => viewOf(c), (v) => v.alarms.includes("transform_bypassed"));
    expect(after.alarms).toEqual(["transform_bypassed"]);
    const alert = await c.evaluate(() => document.getElementById("alarm")?.textContent ?? "", undefined);
    expect(alert).toContain("Confer stopped it");
    // And a blocking dialog says it in plain words until the person has read it.
    const dialog = await c.evaluate(() => {
      const d = document.getElementById("alarm-dialog") as HTMLDialogElement | null;
      return { open: d?.open ?? false, text: d?.textContent ?? "", focused: document.activeElement?.id ?? "" };
    }, undefined);
    expect(dialog.open).toBe(true);
    expect(dialog.text).toContain("Confer stopped it");
    expect(dialog.focused).toBe("alarm-dialog-ok");
    expect(await axeViolations(c)).toEqual([]);
    await c.playwright?.keyboard.press("Enter");
    expect(await c.evaluate(() => (document.getElementById("alarm-dialog") as HTMLDialogElement).open, undefined)).toBe(false);
    // Its camera track is stopped and taken off the sender; its microphone still goes out sealed.
    const counters = await countersOf(c);
    expect(counters.sealed["camera"]).toBe(0);
    expect(counters.sealed["microphone"] ?? 0).toBeGreaterThan(0);
    const camera = await c.evaluate(() => {
      const g = globalThis as unknown as { __conferE2E: { session?: { cameraTrackState(): string } } };
      return g.__conferE2E.session?.cameraTrackState();
    }, undefined);
    expect(camera).toBe("none");
    // The others hear counsel (sealed audio) and never decode a frame of counsel's camera.
    await hearsPage(m, c);
    await Promise.all([m, a, b].map((p) => showsNowhere(p, PARTICIPANTS.yellow.colour)));
    // The alarm is counsel's own page's: the others raised none.
    for (const p of [m, a, b]) {
      expect((await viewOf(p)).alarms, p.participant.name).toEqual([]);
    }
  });

  test("no page logged an error or failed a request", () => {
    for (const p of [m, a, b, c]) {
      expect(p.problems.filter((x) => x.kind !== "console-warning"), p.participant.name).toEqual([]);
    }
  });
});
