// A whole mediation as people hold it, in four Chromium processes (each with its own colour and
// tone) on a real `confer serve --dev`: the mediator (by keyboard only), parties A and B, and
// counsel for A. Pre-join with its speaker check and the agreement's acknowledgments;
// invitation links made on the mediator's page, carrying the mediator's waiting-room message
// (which the parties read while they wait); joint; a lock that keeps a newcomer out until it is
// lifted; caucus A by the "Move to" menu, counsel moving with the party (B sees and hears
// nothing of A or counsel; A's banner names only the mediator and counsel, and the live region
// says so); B dragged into caucus B; a breakout; chat; everyone back; a removal; the end, after
// which no page holds keys. axe scans every screen; screenshots of each land in
// e2e/artifacts/mediation/.

import { spawn } from "node:child_process";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import {
  DIST_E2E,
  PARTICIPANTS,
  RUST_BOT,
  axeViolations,
  botSummary,
  countersOf,
  hears,
  hearsNowhere,
  launchChromium,
  press,
  sees,
  showsNowhere,
  startServer,
  tabTo,
  textOf,
  typeText,
  until,
  viewOf,
} from "./helpers/index.js";
import type { ConferServer, E2EPage, Participant, SeenView } from "./helpers/index.js";

let server: ConferServer;
let m: E2EPage;
let a: E2EPage;
let b: E2EPage;
let c: E2EPage;
const id: Record<string, string> = {};
/** The mediator's waiting-room message, typed before the invitations are made. */
const MESSAGE = "Welcome. I will let you in shortly; please have your documents ready.";

beforeAll(async () => {
  server = await startServer({ webRoot: DIST_E2E });
  [m, a, b, c] = await Promise.all([
    launchChromium(PARTICIPANTS.red),
    launchChromium(PARTICIPANTS.green),
    launchChromium(PARTICIPANTS.blue),
    launchChromium(PARTICIPANTS.yellow),
  ]);
});

afterAll(async () => {
  await Promise.all([m, a, b, c].map((p) => p.close()));
  await server.stop();
});

const inRoom = (v: SeenView, ch: string, n: number): boolean => v.phase === "secured" && v.secured === ch && v.present.length === n;

async function noAxe(p: E2EPage, screen: string): Promise<void> {
  expect(await axeViolations(p), `${p.participant.name}: ${screen}`).toEqual([]);
  await p.screenshot("mediation", screen);
}

/** A party's pre-join, by mouse: the acknowledgments are required; then name and Join. */
async function joinAsParty(p: E2EPage, link: string, name: string): Promise<void> {
  await p.goto(link);
  await p.waitFor("#join button[type=submit]");
  const pw = p.playwright;
  if (pw === undefined) {
    throw new Error("Chromium pages only");
  }
  await pw.click("#join button[type=submit]");
  expect(await textOf(p, "#join-problem")).toBe("Tick each statement of the agreement to join.");
  for (const box of ["#ack-confidential", "#ack-recording", "#ack-alone", "#agree"]) {
    await pw.check(box);
  }
  await pw.fill("#name", name);
  await pw.evaluate(() => {
    const g = globalThis as unknown as { __conferE2E: { join?: unknown } };
    g.__conferE2E.join = { audioProcessing: false };
  });
  await pw.click("#join button[type=submit]");
}

/** The mediator makes an invitation link on the page, by keyboard: choose whom, create, read. */
async function inviteByKeyboard(arrowDowns: number): Promise<string> {
  await tabTo(m, "#invite-who");
  // Back to the first option, then down to the one wanted.
  for (let i = 0; i < 4; i++) {
    await press(m, "ArrowUp");
  }
  for (let i = 0; i < arrowDowns; i++) {
    await press(m, "ArrowDown");
  }
  await tabTo(m, "#invite button[type=submit]");
  const before = await m.evaluate(() => (document.getElementById("invite-link") as HTMLInputElement).value, undefined);
  await press(m, "Enter");
  return until(
    "a new invitation link",
    () => m.evaluate(() => (document.getElementById("invite-link") as HTMLInputElement).value, undefined),
    (l) => l !== before && l.startsWith(server.url),
  );
}

/** The mediator moves someone by the "Move to" menu, by keyboard (`downs` options down from Joint). */
async function moveByKeyboard(who: string, downs: number): Promise<void> {
  await tabTo(m, `#move-${who}`);
  for (let i = 0; i < 6; i++) {
    await press(m, "ArrowUp");
  }
  for (let i = 0; i < downs; i++) {
    await press(m, "ArrowDown");
  }
  await tabTo(m, `#go-${who}`);
  await press(m, "Enter");
}

async function seesAndHears(viewer: E2EPage, who: E2EPage): Promise<void> {
  const p: Participant = who.participant;
  await sees(viewer, id[p.name] ?? "", p).catch(async (e: unknown) => {
    const v = await viewOf(viewer);
    const cnt = await countersOf(viewer);
    const inbound = await viewer.evaluate(
      () => (globalThis as unknown as { __conferE2E: { session: { testHooks: { inbound(): Promise<unknown[]> } } } }).__conferE2E.session.testHooks.inbound(),
      undefined,
    );
    // What the page had, for whoever reads the failure: slots, the gate's counters, the decoders.
    const what = { slots: v.slots, counters: cnt, inbound, alarms: v.alarms, ids: id };
    throw new Error(`${viewer.participant.name} does not see ${p.name}: ${JSON.stringify(what)}`, { cause: e });
  });
  await hears(viewer, id[p.name] ?? "", p);
}

describe("a mediation with a mediator, two parties and counsel", () => {
  test("pre-join, invitations and the joint session", async () => {
    // Copying the invitation link needs the clipboard. Granted before the page loads, with the
    // camera and microphone: a grant replaces the origin's permissions, and Chromium ends the
    // capture tracks of a permission it no longer has.
    await m.playwright?.context().grantPermissions(["clipboard-read", "clipboard-write", "camera", "microphone"], { origin: server.url.replace(/\/$/, "") });
    // The mediator, by keyboard only: the pre-join screen, its acknowledgments, a name, Join.
    await m.goto(`${server.url}join#t=${server.mediatorToken}`);
    await m.waitFor("#join button[type=submit]");
    // The speaker check: a tone plays (the page's AudioContext ran), then "I did not hear it"
    // gives advice in the live region. It never holds up joining.
    await tabTo(m, "#speaker-test");
    await press(m, "Enter");
    const tone = await until(
      "the test sound has played",
      () =>
        m.evaluate(() => {
          const d = document.getElementById("speaker-check")?.dataset;
          return { tone: d?.["tone"], audioState: d?.["audioState"] };
        }, undefined),
      (d) => d.tone === "played" || d.tone === "failed",
    );
    expect(tone).toMatchObject({ tone: "played", audioState: "running" });
    await tabTo(m, "#speaker-not-heard");
    await press(m, "Enter");
    expect(await textOf(m, "#speaker-status")).toMatch(/^No sound reached you\. Things to try:.*switched on and connected.*You can join anyway/);
    expect(await m.evaluate(() => document.querySelector("#speaker-status")?.getAttribute("role"), undefined)).toBe("status");
    await noAxe(m, "pre-join");
    await m.evaluate(() => {
      const g = globalThis as unknown as { __conferE2E: { join?: unknown } };
      g.__conferE2E.join = { audioProcessing: false };
    }, undefined);
    for (const box of ["#ack-confidential", "#ack-recording", "#ack-alone", "#agree"]) {
      await tabTo(m, box);
      await press(m, "Space");
    }
    await tabTo(m, "#name");
    await typeText(m, "Mediator Mo");
    await tabTo(m, "#join button[type=submit]");
    await press(m, "Enter");
    const vm = await until("the mediator is secured", () => viewOf(m), (v) => inRoom(v, "joint", 1));
    id["red"] = vm.participantId ?? "";

    // The waiting-room message goes into every link made while it is written.
    await tabTo(m, "#invite-message");
    await typeText(m, MESSAGE);
    const linkA = await inviteByKeyboard(0);
    expect(new URL(linkA).hash).toMatch(/&w=[A-Za-z0-9_-]+$/);
    // "Copy the link" puts it on the clipboard (the browser's permission granted for the test).
    await m.playwright?.click("#invite-copy");
    await until("the link is on the clipboard", () => m.evaluate(() => navigator.clipboard.readText(), undefined), (t) => t === linkA);
    const linkB = await inviteByKeyboard(1);
    // The parties wait (the mediator lets each in), reading the mediator's message.
    await tabTo(m, "#auto-admit");
    await press(m, "Space");
    await until("the mediator lets people in one by one", () => viewOf(m), (v) => !v.autoAdmit);
    await Promise.all([joinAsParty(a, linkA, "Ada"), joinAsParty(b, linkB, "Bo")]);
    for (const [p, name] of [[a, "green"], [b, "blue"]] as const) {
      const v = await until(`${name} waits`, () => viewOf(p), (v) => v.phase === "waiting" && v.participantId !== undefined);
      id[name] = v.participantId ?? "";
      await until(`${name} reads the mediator's message`, () => textOf(p, "#waiting-message"), (t) => t === MESSAGE);
      expect(await p.evaluate(() => document.getElementById("waiting-note")?.hidden, undefined)).toBe(false);
      expect(await textOf(p, "#waiting-note-title")).toBe("A message from the mediator");
      expect(await textOf(p, "#status")).toContain("The mediator left you a message below.");
    }
    await noAxe(a, "party-waiting");
    for (const name of ["green", "blue"]) {
      const who = id[name] ?? "";
      await until(`the board offers to let ${name} in`, () => viewOf(m), (v) => v.arrivals.some((x) => x.participantId === who && x.ready));
      await tabTo(m, `#admit-${who}`);
      await press(m, "Enter");
    }
    for (const [p, name] of [[a, "green"], [b, "blue"]] as const) {
      await until(`${name} is in joint with three`, () => viewOf(p), (v) => inRoom(v, "joint", 3));
    }
    // Let in, the message is gone from the screen.
    expect(await a.evaluate(() => document.getElementById("waiting-note")?.hidden, undefined)).toBe(true);
    await tabTo(m, "#auto-admit");
    await press(m, "Space");
    await until("the mediator lets people in on their own again", () => viewOf(m), (v) => v.autoAdmit);
    await until("the mediator sees three", () => viewOf(m), (v) => inRoom(v, "joint", 3));
    for (const viewer of [m, a, b]) {
      for (const who of [m, a, b]) {
        if (viewer !== who) {
          await seesAndHears(viewer, who);
        }
      }
    }
    expect(await textOf(a, "#hear")).toMatch(/^Who can hear you now: (Mediator Mo, Bo|Bo, Mediator Mo)\.$/);
    expect(await textOf(a, "#recording")).toContain("Not recording");
    await noAxe(m, "mediator-joint");
    await noAxe(a, "party-joint");
  });

  test("a locked session keeps a newcomer out until the mediator unlocks it", async () => {
    const linkC = await inviteByKeyboard(2); // counsel for party A
    await tabTo(m, "#lock");
    await press(m, "Enter");
    await until("the session is locked", () => viewOf(m), (v) => v.locked);
    await joinAsParty(c, linkC, "Cy");
    await until("counsel is refused while locked", () => viewOf(c), (v) => v.phase === "ended" && v.ended === "locked");
    expect(await textOf(c, "#status")).toContain("locked this session");
    await noAxe(c, "locked-out");
    await tabTo(m, "#lock");
    await press(m, "Enter");
    await until("the session is unlocked", () => viewOf(m), (v) => !v.locked);
    // From now on the mediator lets each person in: counsel waits, sees nobody, and reads out
    // the key fingerprint the mediator's board shows for it.
    await tabTo(m, "#auto-admit");
    await press(m, "Space");
    await until("the mediator lets people in one by one", () => viewOf(m), (v) => !v.autoAdmit);
    await c.playwright?.click("#try-again");
    const waiting = await until("counsel waits", () => viewOf(c), (v) => v.phase === "waiting" && v.participantId !== undefined);
    const idc = waiting.participantId ?? "";
    id["yellow"] = idc;
    expect(waiting.present).toEqual([]);
    expect(await c.evaluate(() => document.querySelectorAll("video[data-participant], audio[data-participant]").length, undefined)).toBe(0);
    expect(await textOf(c, "#status")).toContain(`your key is ${waiting.myFingerprint ?? "?"}`);
    expect(await textOf(c, "#waiting-message")).toBe(MESSAGE);
    await until("the board offers to let counsel in", () => viewOf(m), (v) => v.arrivals.some((x) => x.participantId === idc && x.ready));
    expect(await textOf(m, `#fingerprint-${idc}`)).toBe(` key ${waiting.myFingerprint ?? "?"}`);
    await noAxe(m, "mediator-waiting-room");
    await tabTo(m, `#admit-${idc}`);
    await press(m, "Enter");
    await until("counsel is in joint with four", () => viewOf(c), (v) => inRoom(v, "joint", 4));
    await tabTo(m, "#auto-admit");
    await press(m, "Space");
    await until("the mediator lets people in on their own again", () => viewOf(m), (v) => v.autoAdmit);
    await seesAndHears(c, a);
  });

  test("caucus A by the Move menu: counsel goes along; B neither sees nor hears them", async () => {
    const ida = id["green"] ?? "";
    const idm = id["red"] ?? "";
    await moveByKeyboard(ida, 1); // Private caucus A; counsel moves with the party
    await moveByKeyboard(idm, 1);
    await until("A is in caucus A with the mediator and counsel", () => viewOf(a), (v) => inRoom(v, "caucus-A", 3));
    await until("counsel is in caucus A", () => viewOf(c), (v) => inRoom(v, "caucus-A", 3));
    await until("B is alone in joint", () => viewOf(b), (v) => inRoom(v, "joint", 1));
    const hear = await textOf(a, "#hear");
    expect(hear).toMatch(/^Who can hear you now: (Mediator Mo, Cy|Cy, Mediator Mo)\.$/);
    expect(await textOf(a, "#room")).toBe("Private caucus A");
    await until("A's live region says where A is", () => textOf(a, "#announcer"), (t) => t.startsWith("You are now in: Private caucus A."));
    await seesAndHears(m, a);
    await Promise.all([showsNowhere(b, PARTICIPANTS.green.colour), showsNowhere(b, PARTICIPANTS.yellow.colour)]);
    await hearsNowhere(b, PARTICIPANTS.green.toneHz);
    await hearsNowhere(b, PARTICIPANTS.yellow.toneHz);
    expect(await textOf(b, "#hear")).toBe("Nobody else can hear you now.");
    // A timer for the caucus: start, pause, add five minutes (by keyboard).
    await tabTo(m, "#timer-start-caucus-A");
    await press(m, "Enter");
    await until("the caucus timer runs", () => textOf(m, "#timer-caucus-A"), (t) => /^1[45]:\d\d left$/.test(t));
    await tabTo(m, "#timer-pause-caucus-A");
    await press(m, "Enter");
    expect(await textOf(m, "#timer-caucus-A")).toMatch(/^Paused, 1[45]:\d\d left$/);
    await tabTo(m, "#timer-extend-caucus-A");
    await press(m, "Enter");
    expect(await textOf(m, "#timer-caucus-A")).toMatch(/^Paused, (19|20):\d\d left$/);
    await noAxe(m, "mediator-caucus");
    await noAxe(b, "party-alone");

    // B dragged onto caucus B on the board: the same move as the menu's, said the same way.
    const idb = id["blue"] ?? "";
    const pw = m.playwright;
    if (pw === undefined) {
      throw new Error("Chromium pages only");
    }
    await pw.locator(`#board .room li[data-participant="${idb}"] > span`).first().dragTo(pw.locator('#board .room[data-channel="caucus-B"]'));
    await until("B is alone in caucus B", () => viewOf(b), (v) => inRoom(v, "caucus-B", 1));
    await until(
      "the mediator's board (the server's session view) has B in caucus B",
      () => m.evaluate((who) => document.querySelector(`#board .room[data-channel="caucus-B"] li[data-participant="${who}"]`) !== null, idb),
      (there) => there,
    );
    await until("the mediator's live region says so", () => textOf(m, "#announcer"), (t) => t === "Bo (Party B) moved to Private caucus B.");
    expect(await textOf(b, "#room")).toBe("Private caucus B");
    expect(await textOf(b, "#hear")).toBe("Nobody else can hear you now.");
    await until("A is still with the mediator and counsel only", () => viewOf(a), (v) => inRoom(v, "caucus-A", 3));
  });

  test("a breakout with A and B, chat in it, then everyone back", async () => {
    const ida = id["green"] ?? "";
    const idb = id["blue"] ?? "";
    const pw = m.playwright;
    if (pw === undefined) {
      throw new Error("Chromium pages only");
    }
    await pw.check(`#breakout-${ida}`);
    await pw.check(`#breakout-${idb}`);
    await pw.click("#breakout button[type=submit]");
    await until("A is in a breakout with B", () => viewOf(a), (v) => v.secured?.startsWith("breakout-") === true && v.present.length === 2);
    await until("B is in the breakout with A", () => viewOf(b), (v) => v.secured?.startsWith("breakout-") === true && v.present.length === 2);
    await seesAndHears(a, b);
    await seesAndHears(b, a);
    await a.playwright?.fill("#chat-input", "hello from A");
    await a.playwright?.click("#chat-form button[type=submit]");
    await until("B reads A's message", () => textOf(b, "#chat-log"), (t) => t.includes("Ada: hello from A"));
    await noAxe(b, "party-breakout");

    await tabTo(m, "#return-all");
    await press(m, "Enter");
    for (const p of [m, a, b, c]) {
      await until(`${p.participant.name} is back in joint`, () => viewOf(p), (v) => inRoom(v, "joint", 4));
    }
    await seesAndHears(b, a);
  });

  test("a confer-bot counsel joins from a link the mediator's page made, and everyone opens everyone", async () => {
    const link = await inviteByKeyboard(3); // counsel for party B
    const bot = spawn(RUST_BOT, ["--url", server.wsUrl, "--token", link, "--role", "counsel", "--seconds", "15", "--publish", "--frame-every-ms", "100", "--name", "Counsel bot"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const done = botSummary(bot);
    const v = await until("the mediator's roster has the bot", () => viewOf(m), (v) => inRoom(v, "joint", 5), 30_000);
    const botId = v.present.find((p) => p.name === "Counsel bot")?.participantId ?? "";
    expect(botId).not.toBe("");
    await until("A opens the bot's frames", () => countersOf(a), (c) => (c.openedFrom[botId] ?? 0) > 20);
    const s = await done;
    const line = JSON.stringify(s);
    expect(s.decrypt_failures, line).toBe(0);
    expect(s.alarms, line).toEqual([]);
    expect(s.publishers_opened, line).toBe(4); // the mediator, both parties and counsel A
    expect([...s.names].sort(), line).toEqual(["Ada", "Bo", "Cy", "Mediator Mo"]);
    await until("the bot has left", () => viewOf(m), (v) => inRoom(v, "joint", 4));
  });

  test("the mediator removes counsel, then ends the session: no page holds keys", async () => {
    const idc = id["yellow"] ?? "";
    await tabTo(m, `#kick-${idc}`);
    await press(m, "Enter");
    const vc = await until("counsel is removed", () => viewOf(c), (v) => v.phase === "ended");
    expect(vc.ended).toBe("removed");
    expect(vc.keysDeleted).toBe(true);
    expect(await textOf(c, "#status")).toBe("The mediator removed you from the session.");
    await until("the others are three", () => viewOf(a), (v) => inRoom(v, "joint", 3));

    await tabTo(m, "#end");
    await press(m, "Enter");
    for (const p of [a, b]) {
      const v = await until(`${p.participant.name}'s session ended`, () => viewOf(p), (v) => v.phase === "ended");
      expect(v.keysDeleted, p.participant.name).toBe(true);
      expect(await textOf(p, "#status")).toBe("The session has ended.");
    }
    await noAxe(a, "ended");
    for (const p of [m, a, b, c]) {
      expect(p.problems.filter((x) => x.kind !== "console-warning"), p.participant.name).toEqual([]);
    }
  });
});
