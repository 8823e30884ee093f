// Two things a real mediation needs beyond the main flow, in four Chromium processes (each with
// its own colour and tone) on a real `confer serve --dev`:
// - a party whose page reloads in its caucus comes back into that caucus (e2ee §15.12): its
//   keys are new, so it sees and hears nothing, and nobody hears it, until the mediator compares
//   its new key on the board and lets it back in; the other party never sees it;
// - a co-mediator invited from the mediator's page gets the mediator's delegation and runs a
//   caucus from its own board.
// At the end no page holds keys, and no tab keeps anything for a reload.

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  DIST_E2E,
  PARTICIPANTS,
  axeViolations,
  commandFrom,
  hears,
  hearsNowhere,
  inRoom,
  joinThroughPage,
  launchChromium,
  mediationInJoint,
  playwrightOf,
  sees,
  showsNowhere,
  startServer,
  textOf,
  until,
  viewOf,
} from "./helpers/index.js";
import type { ConferServer, E2EPage } from "./helpers/index.js";

let server: ConferServer;
let m: E2EPage;
let a: E2EPage;
let b: E2EPage;
let co: E2EPage;
const id: Record<string, string> = {};
const quiet = { audioProcessing: false } as const;

beforeAll(async () => {
  server = await startServer({ webRoot: DIST_E2E });
  [m, a, b, co] = await Promise.all([
    launchChromium(PARTICIPANTS.red),
    launchChromium(PARTICIPANTS.green),
    launchChromium(PARTICIPANTS.blue),
    launchChromium(PARTICIPANTS.yellow),
  ]);
});

afterAll(async () => {
  await Promise.all([m, a, b, co].map((p) => p.close()));
  await server.stop();
});

function kept(p: E2EPage): Promise<string | null> {
  return p.evaluate(() => sessionStorage.getItem("confer.resume"), undefined);
}

const pw = playwrightOf;

describe("a reload and a co-mediator", () => {
  test("everyone joins; A goes into caucus with the mediator", async () => {
    Object.assign(id, await mediationInJoint(`${server.url}join#t=${server.mediatorToken}`, m, a, b, quiet));
    expect(await kept(a), "a party keeps its resume link").toMatch(/^\{.*"link":"#t=/);
    expect(await kept(m), "the mediator keeps nothing").toBeNull();
    await commandFrom(m, { type: "move", participant_id: id["a"], channel_id: "caucus-A" });
    await commandFrom(m, { type: "move", participant_id: id["m"], channel_id: "caucus-A" });
    await until("A is in its caucus with the mediator", () => viewOf(a), (v) => inRoom(v, "caucus-A", 2));
    await sees(a, id["m"] ?? "", PARTICIPANTS.red);
  });

  test("A's page reloads: it waits, out of every key, until the mediator compares its new key", async () => {
    const before = await viewOf(a);
    // The reloaded page joins again with the same test options (the e2e build reads them at start).
    await pw(a).addInitScript(() => {
      const g = globalThis as unknown as { __conferE2E?: { join?: unknown } };
      g.__conferE2E ??= {};
      g.__conferE2E.join = { audioProcessing: false };
    });
    await pw(a).reload();
    const back = await until("A is back, new keys, waiting", () => viewOf(a), (v) => v.rejoining && v.phase === "securing");
    expect(back.participantId, "the same participant").toBe(id["a"]);
    expect(back.myFingerprint).toBeDefined();
    expect(back.myFingerprint, "new keys").not.toBe(before.myFingerprint);
    expect(await textOf(a, "#status")).toContain(`your key is ${back.myFingerprint ?? ""}`);
    // The mediator's board lists A as back with a new key: the one A's screen shows.
    await m.waitFor(`#let-back-${id["a"] ?? ""}`);
    expect(await textOf(m, `#fingerprint-${id["a"] ?? ""}`)).toContain(back.myFingerprint ?? "");
    expect(await textOf(m, "#back")).toContain("Private caucus A");
    expect(await axeViolations(m), "the board with someone back").toEqual([]);
    await m.screenshot("reload", "mediator-back-after-reload");
    // Nothing flows to or from A's new keys yet; B never sees or hears A.
    expect((await viewOf(a)).present).toEqual([]);
    expect((await viewOf(m)).present.map((p) => p.participantId).sort()).toEqual([id["a"], id["m"]].sort());
    await showsNowhere(b, PARTICIPANTS.green.colour);

    await pw(m).click(`#let-back-${id["a"] ?? ""}`);
    await until("A is back in its caucus", () => viewOf(a), (v) => inRoom(v, "caucus-A", 2));
    await sees(a, id["m"] ?? "", PARTICIPANTS.red);
    await hears(a, id["m"] ?? "", PARTICIPANTS.red);
    await sees(m, id["a"] ?? "", PARTICIPANTS.green);
    await hears(m, id["a"] ?? "", PARTICIPANTS.green);
    expect(await textOf(a, "#hear")).toBe("Who can hear you now: Mediator Mo.");
    const [va, vm] = [await viewOf(a), await viewOf(m)];
    expect(va.alarms).toEqual([]);
    expect(va.sessionCode, "one session code again").toBe(vm.sessionCode);
    await showsNowhere(b, PARTICIPANTS.green.colour);
    await hearsNowhere(b, PARTICIPANTS.green.toneHz);
    expect(await kept(a), "the reloaded page keeps its newest resume link").toMatch(/"link":"#t=/);
  });

  test("a co-mediator, once delegated, runs a caucus from its own board", async () => {
    // Invited from the mediator's form (the last option), by mouse.
    await pw(m).selectOption("#invite-who", "co_mediator");
    await pw(m).click("#invite button[type=submit]");
    const link = await until(
      "a co-mediator link",
      () => m.evaluate(() => (document.getElementById("invite-link") as HTMLInputElement).value, undefined),
      (l) => l.startsWith(server.url),
    );
    await joinThroughPage(co, link, "Cora", quiet);
    const v = await until("the co-mediator signs rosters", () => viewOf(co), (x) => x.phase === "secured" && x.signsRosters);
    id["co"] = v.participantId ?? "";
    await co.waitFor("#board:not([hidden])");
    expect(await textOf(co, "#board-title")).toBe("Your mediation (as co-mediator)");
    expect(await co.evaluate(() => document.getElementById("end") === null && document.getElementById("auto-admit") === null, undefined)).toBe(true);
    expect(await axeViolations(co), "the co-mediator's board").toEqual([]);
    // The co-mediator takes B and itself into B's caucus, by its own menus.
    for (const who of [id["co"] ?? "", id["b"] ?? ""]) {
      await pw(co).selectOption(`#move-${who}`, "caucus-B");
      await pw(co).click(`#go-${who}`);
    }
    await until("B is in its caucus with the co-mediator", () => viewOf(b), (x) => inRoom(x, "caucus-B", 2));
    await sees(b, id["co"] ?? "", PARTICIPANTS.yellow);
    await hears(b, id["co"] ?? "", PARTICIPANTS.yellow);
    expect(await textOf(b, "#hear")).toBe("Who can hear you now: Cora.");
    await co.screenshot("reload", "co-mediator-board");
    // A, with the mediator in its own caucus, sees and hears nothing of B or the co-mediator.
    await showsNowhere(a, PARTICIPANTS.blue.colour);
    await hearsNowhere(a, PARTICIPANTS.blue.toneHz);
    await showsNowhere(a, PARTICIPANTS.yellow.colour);
    for (const p of [m, a, b, co]) {
      expect((await viewOf(p)).alarms, p.participant.name).toEqual([]);
    }
  });

  test("the end: no page holds keys, and no tab keeps a resume link", async () => {
    await pw(m).click("#end");
    for (const p of [m, a, b, co]) {
      await until(`${p.participant.name} deleted its keys`, () => viewOf(p), (v) => v.keysDeleted && v.phase === "ended");
      expect(await kept(p), p.participant.name).toBeNull();
    }
  });
});
