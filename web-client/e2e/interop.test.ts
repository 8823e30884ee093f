// Two engines and two implementations in one session each:
// - A Firefox party (RTCRtpScriptTransform) and a Chromium party (insertable streams) decrypt
//   each other's media and chat, with a Rust mediator bot admitting both: each page shows the
//   other's colour, plays its tone, and opens its chat.
// - A Chromium party and a Rust `confer-bot --publish` mediator decrypt each other's media:
//   the page opens the bot's frames (synthetic, so they open but show nothing), and the bot
//   opens the page's real Opus and VP8 frames (decrypted and authenticated, not "verified":
//   they are not synthetic).

import { spawn } from "node:child_process";

import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";

import {
  DIST_E2E,
  PARTICIPANTS,
  RUST_BOT,
  botSummary,
  chatsOf,
  countersOf,
  dominantTone,
  inviteLinks,
  isTone,
  joinThroughPage,
  launch,
  recordChats,
  sendChat,
  startCoturn,
  startServer,
  until,
  viewOf,
  waitForVideoColour,
} from "./helpers/index.js";
import type { ConferServer, Coturn, E2EPage } from "./helpers/index.js";

const TONES = Object.values(PARTICIPANTS).map((p) => p.toneHz);

// A server per session (the demo session's mediator token is single use), handing out a real
// coturn on 127.0.0.1: Firefox reaches a loopback SFU only through it (helpers/turn.ts).
let server: ConferServer;
let turn: Coturn;

beforeEach(async () => {
  turn = await startCoturn();
  server = await startServer({ webRoot: DIST_E2E, env: turn.serverEnv });
});

afterEach(async () => {
  await server.stop();
  await turn.stop();
});

function mediatorBot(seconds: number, invites: string[], publish: boolean): ReturnType<typeof spawn> {
  const args = ["--url", server.wsUrl, "--token", server.mediatorToken, "--role", "mediator", "--seconds", String(seconds), "--name", "Mediator Mo"];
  for (const i of invites) {
    args.push("--invite", i);
  }
  if (publish) {
    args.push("--publish", "--frame-every-ms", "100");
  }
  return spawn(RUST_BOT, args, { stdio: ["ignore", "pipe", "pipe"] });
}

describe("a Firefox party and a Chromium party", () => {
  let fx: E2EPage;
  let cr: E2EPage;

  afterAll(async () => {
    await Promise.all([fx.close(), cr.close()]);
  });

  test("decrypt each other's media and chat", async () => {
    [fx, cr] = await Promise.all([launch("firefox", PARTICIPANTS.green), launch("chromium", PARTICIPANTS.blue)]);
    const bot = mediatorBot(120, ["party:A", "party:B"], false);
    const summary = botSummary(bot);
    const [linkA, linkB] = await inviteLinks(bot, 2);
    await Promise.all([
      joinThroughPage(fx, linkA ?? "", "Fen", { audioProcessing: false }),
      joinThroughPage(cr, linkB ?? "", "Cam", { audioProcessing: false }),
    ]);
    const ids: string[] = [];
    for (const p of [fx, cr]) {
      const v = await until(`${p.participant.name} is secured with three`, () => viewOf(p), (v) => v.phase === "secured" && v.present.length === 3, 30_000);
      ids.push(v.participantId ?? "");
      await recordChats(p);
    }
    expect((await viewOf(fx)).transformPath).toBe("script");
    expect((await viewOf(cr)).transformPath).toBe("insertable");
    const [idf, idc] = ids as [string, string];
    for (const [viewer, who, id] of [[fx, cr, idc], [cr, fx, idf]] as const) {
      await viewer.waitFor(`video[data-participant="${id}"]`, 20_000);
      await waitForVideoColour(viewer, `video[data-participant="${id}"]`, who.participant.colour, 20_000).catch(async (e: unknown) => {
        throw new Error(`${viewer.engine}: ${JSON.stringify(await countersOf(viewer))} ${JSON.stringify(await viewOf(viewer))} ${JSON.stringify(viewer.problems)}`, { cause: e });
      });
      await viewer.waitFor(`audio[data-participant="${id}"]`);
      await until(
        `${viewer.engine} hears ${who.engine}`,
        () => dominantTone(viewer, `audio[data-participant="${id}"]`, { frequencies: TONES }),
        (t) => isTone(t, who.participant.toneHz),
        20_000,
      );
    }
    await sendChat(fx, "from Firefox: hello");
    await sendChat(cr, "from Chromium: hello");
    await until("Chromium opens Firefox's chat", () => chatsOf(cr), (c) => c.some((x) => x.from === idf && x.text === "from Firefox: hello"));
    await until("Firefox opens Chromium's chat", () => chatsOf(fx), (c) => c.some((x) => x.from === idc && x.text === "from Chromium: hello"));
    for (const p of [fx, cr]) {
      const v = await viewOf(p);
      expect(v.alarms, p.engine).toEqual([]);
      expect(p.problems.filter((x) => x.kind !== "console-warning"), p.engine).toEqual([]);
    }
    bot.kill("SIGTERM");
    await summary.catch(() => undefined);
  });
});

describe("a Chromium party and a confer-bot --publish mediator", () => {
  let page: E2EPage;

  afterAll(async () => {
    await page.close();
  });

  test("decrypt each other's media", async () => {
    page = await launch("chromium", PARTICIPANTS.red);
    const bot = mediatorBot(12, ["party:A"], true);
    const summary = botSummary(bot);
    const [link] = await inviteLinks(bot, 1);
    await joinThroughPage(page, link ?? "", "Ray", { audioProcessing: false });
    const v = await until("the page is secured with the bot", () => viewOf(page), (v) => v.phase === "secured" && v.present.length === 2, 30_000);
    const botId = v.present.find((p) => !p.me)?.participantId ?? "";
    await until("the page opens the bot's frames", () => countersOf(page), (c) => (c.openedFrom[botId] ?? 0) >= 50);
    const s = await summary;
    const line = JSON.stringify(s);
    expect(s.publishers_opened, line).toBe(1);
    expect(s.frames_opened ?? 0, line).toBeGreaterThan(50);
    expect(s.media_decrypt_failures, line).toBe(0);
    expect(s.alarms, line).toEqual([]);
    expect((await viewOf(page)).alarms).toEqual([]);
  });
});
