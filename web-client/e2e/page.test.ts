// The built page, served by a real `confer serve --dev`, in Chromium and in Firefox: it loads
// under the server's CSP with no violation, console error or failed request; it takes the
// invite fragment out of the address bar without logging it; the CSP holds (the same-origin
// WebSocket connects, other origins and inline script are refused); getUserMedia gives each
// participant's own colour and tone; axe finds no WCAG 2.2 AA violation.

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  PARTICIPANTS,
  axeViolations,
  captureUserMedia,
  colourDistance,
  dominantTone,
  isColour,
  isTone,
  launch,
  sampleVideoColour,
  startServer,
  stopCapturedMedia,
} from "./helpers/index.js";
import type { ConferServer, E2EPage, Engine, Participant } from "./helpers/index.js";

/** The policy the server must send (crates/server/src/web.rs), spelled out independently. */
const CSP =
  "default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; img-src 'self'; " +
  "style-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const ALL_TONES = Object.values(PARTICIPANTS).map((p) => p.toneHz);

/** Microphone processing off: a steady sine is what a noise suppressor removes. */
const RAW_AUDIO: MediaTrackConstraints = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

let server: ConferServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.stop();
});

const cases: [Engine, Participant][] = [
  ["chromium", PARTICIPANTS.red],
  ["firefox", PARTICIPANTS.green],
];

describe.each(cases)("the page in %s", (engine, participant) => {
  let page: E2EPage;
  let token: string;
  // Stand-ins for the invite secret and the mediator key: 32 bytes, base64url.
  const secret = "c2VjcmV0LWludml0ZS1zZWNyZXQtMzItYnl0ZXMtISE";
  const mediatorKey = "bWVkaWF0b3Ita2V5LW1lZGlhdG9yLWtleS0zMi1ieXQ";

  beforeAll(async () => {
    page = await launch(engine, participant);
    token = await server.token(server.demoSession, "party", "A");
  });

  afterAll(async () => {
    await page.close();
  });

  it("loads from the server under its CSP with no violation, console error or failed request", async () => {
    const loaded = await page.goto(`${server.url}join#t=${token}&k=${secret}&m=${mediatorKey}`);
    expect(loaded.status).toBe(200);
    expect(loaded.headers["content-security-policy"]).toBe(CSP);
    expect(loaded.headers["x-content-type-options"]).toBe("nosniff");
    expect(loaded.headers["referrer-policy"]).toBe("no-referrer");
    expect(loaded.headers["cross-origin-opener-policy"]).toBe("same-origin");
    await page.waitFor('html[data-ready="true"]');

    const shell = await page.evaluate(() => {
      const live = document.getElementById("announcer");
      const skip = document.querySelector("a.skip-link");
      return {
        lang: document.documentElement.lang,
        title: document.title,
        h1: document.querySelector("main h1")?.textContent,
        mains: document.querySelectorAll("main").length,
        status: document.getElementById("status")?.textContent,
        live: live?.getAttribute("aria-live"),
        announced: live?.textContent,
        skipFirst: document.querySelector("a[href], button, input, select, textarea, [tabindex]") === skip,
        skipTarget: skip?.getAttribute("href"),
        // The stylesheet came through the CSP: the skip link is moved off screen.
        skipPosition: skip === null ? undefined : getComputedStyle(skip).position,
        invite: document.documentElement.dataset["invite"],
        href: location.href,
        hash: location.hash,
        html: document.documentElement.outerHTML,
        inlineScripts: [...document.scripts].filter((s) => s.src === "").length,
        inlineStyles: document.querySelectorAll("style, [style]").length,
      };
    }, undefined);
    expect(shell).toMatchObject({
      lang: "en",
      title: "Confer",
      h1: "Confer",
      mains: 1,
      live: "polite",
      skipFirst: true,
      skipTarget: "#main",
      skipPosition: "absolute",
      invite: "invite",
      href: `${server.url}join`,
      hash: "",
      inlineScripts: 0,
      inlineStyles: 0,
    });
    expect(shell.status).toMatch(/^Invitation received\./);
    expect(shell.announced).toBe(shell.status);
    // The fragment is gone from the address bar and is nowhere in the page or the console.
    for (const secretPart of [token, secret, mediatorKey]) {
      expect(shell.html).not.toContain(secretPart);
      expect(page.console.join("\n")).not.toContain(secretPart);
    }
    await page.screenshot("page", `${engine}-join`);
    expect(await page.violations()).toEqual([]);
    expect(page.problems).toEqual([]);
  });

  it(`getUserMedia gives ${participant.name}'s colour and ${String(participant.toneHz)} Hz tone`, async () => {
    const tracks = await captureUserMedia(page, "local", { video: true, audio: RAW_AUDIO });
    expect(tracks.map((t) => [t.kind, t.readyState]).sort()).toEqual([
      ["audio", "live"],
      ["video", "live"],
    ]);

    const colour = await sampleVideoColour(page, { stream: "local" });
    expect(isColour(colour, participant.colour), `${JSON.stringify(colour)} is not ${participant.name}`).toBe(true);
    for (const other of Object.values(PARTICIPANTS).filter((p) => p !== participant)) {
      expect(colourDistance(colour.rgb, other.colour)).toBeGreaterThan(60);
    }

    const tone = await dominantTone(page, { stream: "local" }, { frequencies: ALL_TONES });
    console.info(`${engine}: colour ${JSON.stringify(colour)}; tone ${JSON.stringify(tone)}`);
    expect(isTone(tone, participant.toneHz), JSON.stringify(tone)).toBe(true);
    for (const hz of ALL_TONES.filter((f) => f !== participant.toneHz)) {
      // Every other participant's tone is absent: far below this one.
      expect(tone.levels[String(hz)] ?? 0, `${String(hz)} Hz in ${JSON.stringify(tone)}`).toBeLessThan(tone.db - 30);
    }
    // Chromium's AudioContext runs headless; Firefox's has no output device here and the
    // probe records instead (probes.ts).
    expect(tone.method).toBe(engine === "chromium" ? "analyser" : "recording");
    if (engine === "chromium") {
      // The recording path (Firefox's) agrees with the AnalyserNode.
      const recorded = await dominantTone(page, { stream: "local" }, { method: "recording" });
      expect(isTone(recorded, participant.toneHz), JSON.stringify(recorded)).toBe(true);
    }
    await stopCapturedMedia(page);
    expect(await page.violations()).toEqual([]);
    expect(page.problems).toEqual([]);
  });

  // axe runs through @axe-core/playwright: Chromium pages.
  if (engine === "chromium") {
    it("has no WCAG 2.2 AA violation (axe) and a working skip link", async () => {
      expect(await axeViolations(page)).toEqual([]);
      const pw = page.playwright;
      if (pw === undefined) {
        throw new Error("a Chromium page");
      }
      await pw.keyboard.press("Tab");
      expect(await pw.evaluate(() => document.activeElement?.className)).toBe("skip-link");
      await page.screenshot("page", `${engine}-skip-link-focused`);
      await pw.keyboard.press("Enter");
      expect(await pw.evaluate(() => document.activeElement?.id)).toBe("main");
      expect(page.problems).toEqual([]);
    });
  }

  it("takes every fragment out of the address bar: none, an incomplete link, a second link in the same tab", async () => {
    // From /, then to /join (a new document), then a second link in the same tab: only the
    // fragment changes (no new document; a hashchange).
    const cases = [
      { path: "", invite: "none", status: /^To join a mediation, open the invitation link/, sameDocument: false },
      {
        path: `join#k=${secret}&m=${mediatorKey}`,
        invite: "invalid",
        status: /^This invitation link is incomplete\./,
        sameDocument: false,
      },
      { path: `join#t=${token}`, invite: "invite", status: /^Invitation received\./, sameDocument: true },
    ];
    for (const c of cases) {
      if (c.sameDocument) {
        await page.evaluate((url) => {
          location.assign(url);
        }, server.url + c.path);
      } else {
        await page.goto(server.url + c.path);
      }
      await page.waitFor(`html[data-ready="true"][data-invite="${c.invite}"]`);
      const seen = await page.evaluate(
        () => ({
          hash: location.hash,
          href: location.href,
          status: document.getElementById("status")?.textContent ?? "",
          html: document.documentElement.outerHTML,
        }),
        undefined,
      );
      expect(seen.hash, c.path).toBe("");
      expect(seen.href).toBe(server.url + (c.path.split("#")[0] ?? ""));
      expect(seen.status, c.path).toMatch(c.status);
      expect(seen.html).not.toContain(secret);
      expect(seen.html).not.toContain(token);
    }
    expect(page.console.join("\n")).not.toContain(secret);
    expect(await page.violations()).toEqual([]);
    expect(page.problems).toEqual([]);
  });

  it("enforces the CSP: the same-origin WebSocket connects; other origins and inline script are refused", async () => {
    const port = new URL(server.url).port;
    const outcome = await page.evaluate(async (port) => {
      const connect = (url: string) =>
        new Promise<string>((resolve) => {
          try {
            const ws = new WebSocket(url);
            ws.onopen = () => {
              ws.close();
              resolve("open");
            };
            ws.onerror = () => {
              resolve("error");
            };
          } catch {
            resolve("refused"); // Firefox throws for a CSP-blocked WebSocket
          }
        });
      const same = await connect(`ws://127.0.0.1:${port}/ws`);
      const other = await connect(`ws://localhost:${port}/ws`);
      // The browser reports the blocked inline script as a violation: wait for that report.
      const blocked = new Promise<void>((resolve) => {
        document.addEventListener("securitypolicyviolation", (e) => {
          if (e.effectiveDirective.startsWith("script-src")) {
            resolve();
          }
        });
      });
      const script = document.createElement("script");
      script.textContent = "document.documentElement.dataset.inline = 'ran'";
      document.body.append(script);
      await blocked;
      return { same, other, inline: document.documentElement.dataset["inline"] };
    }, port);
    expect(outcome.same).toBe("open");
    expect(["error", "refused"]).toContain(outcome.other);
    expect(outcome.inline).toBeUndefined();
    const violations = await page.violations();
    expect(violations.map((v) => v.directive).sort()).toEqual(["connect-src", "script-src-elem"]);
    expect(violations.find((v) => v.directive === "connect-src")?.blocked).toBe(`ws://localhost:${port}/ws`);
    // The driver sees them too, as console errors (Chromium) or page errors (Firefox).
    expect(page.problems.length).toBeGreaterThanOrEqual(2);
  });
});

describe("About this client", () => {
  it("shows the build hash `confer client-hash` prints for the served files", async () => {
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const { CONFER_BIN, DIST } = await import("./helpers/index.js");
    const { stdout } = await promisify(execFile)(CONFER_BIN, ["client-hash", "--web-root", DIST]);
    const expected = stdout.trim();
    expect(expected).toMatch(/^[0-9a-f]{64}$/);
    const page = await launch("chromium", PARTICIPANTS.blue);
    try {
      await page.goto(server.url);
      await page.waitFor("#about summary");
      await page.playwright?.click("#about summary");
      await page.waitFor("#build-hash:not(:empty)");
      expect(await page.evaluate(() => document.getElementById("build-hash")?.textContent ?? "", undefined)).toBe(expected);
      expect(await page.evaluate(() => document.getElementById("about-text")?.textContent ?? "", undefined)).toContain("it matches the build's manifest");
      expect(await axeViolations(page)).toEqual([]);
    } finally {
      await page.close();
    }
  });
});

describe("the production build", () => {
  it("carries none of the e2e build's test hooks", async () => {
    const { readdir, readFile } = await import("node:fs/promises");
    const { default: path } = await import("node:path");
    const { DIST } = await import("./helpers/index.js");
    const files = (await readdir(path.join(DIST, "assets"))).filter((f) => f.endsWith(".js"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const text = await readFile(path.join(DIST, "assets", f), "utf8");
      for (const hook of ["dropReceiveKeysOf", "skipSenderTransform", "__conferE2E"]) {
        expect(text.includes(hook), `${f} contains ${hook}`).toBe(false);
      }
    }
  });
});
