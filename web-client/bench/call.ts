// A 4-person call in headless Chromium (160x120 at 10 fps, microphone and camera each): how
// much of a core each page spends sealing and opening frames (the gate's crypto time, which
// WEB.md's worker would carry), measured over 10 s once everyone sees everyone. Target (BENCHMARKS.md):
// under 10 % of a core per page. Needs the e2e build (`npm run build -- --mode e2e`) and
// target/debug/confer.
//
//   npm --prefix web-client run bench:call   (run by Vitest, whose vi.waitUntil the e2e helpers wait with)

import os from "node:os";

import { expect, test } from "vitest";

import { DIST_E2E, PARTICIPANTS, countersOf, inviteFrom, joinThroughPage, launchChromium, startServer, until, viewOf } from "../e2e/helpers/index.js";
import type { SeenCounters } from "../e2e/helpers/index.js";

const WINDOW_MS = 10_000;

test("a 4-person call: the share of a core spent sealing and opening", { timeout: 180_000 }, async () => {
  const server = await startServer({ webRoot: DIST_E2E });
  const people = [PARTICIPANTS.red, PARTICIPANTS.green, PARTICIPANTS.blue, PARTICIPANTS.yellow];
  const pages = await Promise.all(people.map((p) => launchChromium(p)));
  try {
    const [m, ...others] = pages;
    if (m === undefined) {
      throw new Error("no mediator page");
    }
    await joinThroughPage(m, `${server.url}join#t=${server.mediatorToken}`, "Mediator");
    await until("the mediator is secured", () => viewOf(m), (v) => v.phase === "secured");
    const invites = [
      ["party", "A"],
      ["party", "B"],
      ["counsel", "A"],
    ] as const;
    for (const [i, p] of others.entries()) {
      const [role, side] = invites[i] ?? ["party", "A"];
      await joinThroughPage(p, await inviteFrom(m, role, side), `Person ${String(i + 1)}`);
    }
    for (const p of pages) {
      await until("everyone is secured with four", () => viewOf(p), (v) => v.phase === "secured" && v.present.length === 4, 30_000);
    }
    // Everyone opens everyone's frames before the window starts.
    for (const p of pages) {
      await until("frames from three others", () => countersOf(p), (c) => Object.values(c.openedFrom).filter((n) => n > 50).length === 3, 30_000);
    }
    const before = await Promise.all(pages.map((p) => countersOf(p)));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const after = await Promise.all(pages.map((p) => countersOf(p)));
    const secs = (performance.now() - t0) / 1000;
    const sum = (c: SeenCounters, k: "sealed" | "opened"): number => Object.values(c[k]).reduce((a, b) => a + b, 0);
    process.stdout.write(`4-person call, headless Chromium (160x120, 10 fps), ${String(os.cpus().length)} cores, ${secs.toFixed(1)} s window\n\n`);
    process.stdout.write("| page | frames sealed/s | frames opened/s | µs per seal or open | % of a core | target |\n|---|---:|---:|---:|---:|---|\n");
    pages.forEach((p, i) => {
      const a = after[i];
      const b = before[i];
      // Every page has a row, measured over a window in which it really sealed and opened.
      if (a === undefined || b === undefined) {
        throw new Error(`no counters for ${p.participant.name}`);
      }
      const sealed = (sum(a, "sealed") - sum(b, "sealed")) / secs;
      const opened = (sum(a, "opened") - sum(b, "opened")) / secs;
      expect(sealed, `${p.participant.name} sealed frames in the window`).toBeGreaterThan(0);
      expect(opened, `${p.participant.name} opened frames in the window`).toBeGreaterThan(0);
      const calls = a.cryptoCalls - b.cryptoCalls;
      const ms = a.cryptoMs - b.cryptoMs;
      const perCall = calls === 0 ? 0 : (ms * 1000) / calls;
      const share = (ms / (secs * 1000)) * 100;
      process.stdout.write(`| ${p.participant.name} | ${sealed.toFixed(0)} | ${opened.toFixed(0)} | ${perCall.toFixed(0)} | ${share.toFixed(2)} % | < 10 % |\n`);
    });
  } finally {
    await Promise.all(pages.map((p) => p.close()));
    await server.stop();
  }
});
