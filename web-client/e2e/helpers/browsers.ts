// One browser process per participant (fake-media settings are per process), Debian's builds
// only: Chromium through playwright-core (CDP), Firefox ESR through puppeteer-core (WebDriver
// BiDi). Both are wrapped as an `E2EPage`, so a test reads the same for either engine.
//
// Every page is instrumented before its own scripts run: `securitypolicyviolation` reports are
// kept (globalThis.__conferE2E.violations), and console errors and warnings, uncaught
// exceptions and HTTP errors are collected in `problems`. A test asserts none occurred.
//
// Fake media:
// - Chromium plays the participant's Y4M and WAV (media.ts) through its fake capture devices.
// - Firefox's fake microphone plays the participant's tone (media.navigator.audio.fake_frequency).
//   Its fake camera cannot be given a colour (it draws one solid frame whose chroma walks
//   around the CbCr square, a step per frame), so the driver paints one: a preload script
//   replaces the video track getUserMedia returns (still Firefox's fake device underneath, which
//   is stopped) with a 160x120 canvas track of the participant's colour at 10 fps.
//   `paintCamera: false` keeps Firefox's own.

import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { chromium } from "playwright-core";
import type { Page as PlaywrightPage } from "playwright-core";
import puppeteer from "puppeteer-core";
import type { Page as PuppeteerPage } from "puppeteer-core";

import type { ViolationReport } from "./globals.js";
import { FPS, HEIGHT, WIDTH, writeMediaFiles } from "./media.js";
import type { Participant } from "./media.js";
import { ARTIFACTS, CHROMIUM, FIREFOX } from "./paths.js";

export type Engine = "chromium" | "firefox";

export interface Problem {
  readonly kind: "console-error" | "console-warning" | "page-error" | "http";
  readonly text: string;
}

export interface Loaded {
  readonly status: number;
  /** Response headers, names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
}

/** A page in a participant's own browser process. */
export interface E2EPage {
  readonly engine: Engine;
  readonly participant: Participant;
  /** Console errors and warnings, uncaught exceptions and HTTP errors, in order. */
  readonly problems: readonly Problem[];
  /** Every console message's text, in order (to check that nothing secret is logged). */
  readonly console: readonly string[];
  /** Navigates and waits for the load event; the main document's response. */
  goto(url: string): Promise<Loaded>;
  /**
   * Runs `fn(arg)` in the page and returns its (JSON-like) result. `fn` is sent as source
   * text: it must not use anything from its enclosing scope. The page's CSP does not apply to
   * it (the driver injects it), but it does apply to what it does (an inline script it adds).
   */
  evaluate<A, R>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  /** Waits until `selector` matches an element. */
  waitFor(selector: string, timeoutMs?: number): Promise<void>;
  /** The CSP violations reported in the page since it loaded. */
  violations(): Promise<ViolationReport[]>;
  /** Saves a PNG as `ARTIFACTS/<folder>/<name>.png`; returns the path. */
  screenshot(folder: string, name: string): Promise<string>;
  /** The underlying page, for tools made for one driver (@axe-core/playwright). */
  readonly playwright: PlaywrightPage | undefined;
  readonly puppeteer: PuppeteerPage | undefined;
  /** Closes the browser process and removes its temporary files. */
  close(): Promise<void>;
}

export interface LaunchOptions {
  /** Firefox: replace the fake camera's frames by the participant's colour (default true). */
  readonly paintCamera?: boolean;
}

/** Chromium's switches (WEB.md, Tests): headless, no background traffic, fake devices from files. */
export function chromiumArgs(y4m: string, wavFile: string): string[] {
  return [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${y4m}`,
    `--use-file-for-fake-audio-capture=${wavFile}`,
    // Remote media may start without a click (an <audio> of a party who speaks first).
    "--autoplay-policy=no-user-gesture-required",
  ];
}

/** Firefox's prefs: fake devices without a prompt, the participant's tone, media may autoplay. */
export function firefoxPrefs(p: Participant): Record<string, unknown> {
  return {
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    "media.navigator.audio.fake_frequency": p.toneHz,
    "media.autoplay.default": 0,
    "media.autoplay.block-webaudio": false,
    // The SFU under test listens on 127.0.0.1. Firefox pairs a loopback remote candidate only
    // with a loopback local one and gathers none itself: it gets there through coturn
    // (helpers/turn.ts), whose relayed address is on 127.0.0.1, which this lets it use.
    "media.peerconnection.ice.loopback": true,
  };
}

export async function launchChromium(p: Participant): Promise<E2EPage> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `confer-e2e-chromium-${p.name}-`));
  try {
    const files = await writeMediaFiles(dir, p);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: chromiumArgs(files.y4m, files.wav),
      timeout: 30_000,
    });
    // A context of its own (not browser.newPage()): @axe-core/playwright needs one.
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems: Problem[] = [];
    const messages: string[] = [];
    page.on("console", (m) => {
      messages.push(m.text());
      if (m.type() === "error" || m.type() === "warning") {
        const where = m.location().url === "" ? "" : ` (${m.location().url}:${String(m.location().lineNumber)})`;
        problems.push({ kind: m.type() === "error" ? "console-error" : "console-warning", text: m.text() + where });
      }
    });
    page.on("pageerror", (e) => problems.push({ kind: "page-error", text: e.message }));
    page.on("response", (r) => {
      if (r.status() >= 400) {
        problems.push({ kind: "http", text: `${String(r.status())} ${r.url()}` });
      }
    });
    await page.addInitScript(instrument);
    return {
      engine: "chromium",
      participant: p,
      problems,
      console: messages,
      async goto(url) {
        const res = await page.goto(url, { waitUntil: "load" });
        if (res === null) {
          throw new Error(`no response for ${url}`);
        }
        return { status: res.status(), headers: res.headers() };
      },
      evaluate: <A, R>(fn: (arg: A) => R | Promise<R>, arg: A) => page.evaluate(erase(fn), arg),
      async waitFor(selector, timeoutMs = 10_000) {
        await page.waitForSelector(selector, { timeout: timeoutMs, state: "attached" });
      },
      violations: () => page.evaluate(() => globalThis.__conferE2E?.violations ?? []),
      async screenshot(folder, name) {
        const file = await artifactPath(folder, `${name}.png`);
        await page.screenshot({ path: file, fullPage: true });
        return file;
      },
      playwright: page,
      puppeteer: undefined,
      async close() {
        await browser.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

export async function launchFirefox(p: Participant, options: LaunchOptions = {}): Promise<E2EPage> {
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    extraPrefsFirefox: firefoxPrefs(p),
    timeout: 30_000,
  });
  try {
    const page = await browser.newPage();
    const problems: Problem[] = [];
    const messages: string[] = [];
    page.on("console", (m) => {
      messages.push(m.text());
      if (m.type() === "error" || m.type() === "warn") {
        const loc = m.location();
        const where = loc.url === undefined || loc.url === "" ? "" : ` (${loc.url}:${String(loc.lineNumber ?? 0)})`;
        problems.push({ kind: m.type() === "error" ? "console-error" : "console-warning", text: m.text() + where });
      }
    });
    // Firefox reports CSP violations (and uncaught exceptions) to the driver as page errors.
    page.on("pageerror", (e) => problems.push({ kind: "page-error", text: e instanceof Error ? e.message : String(e) }));
    page.on("response", (r) => {
      if (r.status() >= 400) {
        problems.push({ kind: "http", text: `${String(r.status())} ${r.url()}` });
      }
    });
    await page.evaluateOnNewDocument(instrument);
    if (options.paintCamera ?? true) {
      await page.evaluateOnNewDocument(paintCamera, { colour: [...p.colour], width: WIDTH, height: HEIGHT, fps: FPS });
    }
    return {
      engine: "firefox",
      participant: p,
      problems,
      console: messages,
      async goto(url) {
        const res = await page.goto(url, { waitUntil: "load" });
        if (res === null) {
          throw new Error(`no response for ${url}`);
        }
        return { status: res.status(), headers: res.headers() };
      },
      evaluate: <A, R>(fn: (arg: A) => R | Promise<R>, arg: A) => page.evaluate(erase(fn), arg),
      async waitFor(selector, timeoutMs = 10_000) {
        await page.waitForSelector(selector, { timeout: timeoutMs });
      },
      violations: () => page.evaluate(() => globalThis.__conferE2E?.violations ?? []),
      async screenshot(folder, name) {
        const file = await artifactPath(folder, `${name}.png`);
        await page.screenshot({ path: file, fullPage: true });
        return file;
      },
      playwright: undefined,
      puppeteer: page,
      async close() {
        await browser.close();
      },
    };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

export async function launch(engine: Engine, p: Participant, options: LaunchOptions = {}): Promise<E2EPage> {
  return engine === "chromium" ? launchChromium(p) : launchFirefox(p, options);
}

/**
 * The drivers type a page function's argument as what crosses the wire (handles unboxed); ours
 * are plain JSON-like values, the same on both sides.
 */
function erase<R>(fn: (arg: never) => R | Promise<R>): (arg: unknown) => R | Promise<R> {
  return fn as (arg: unknown) => R | Promise<R>;
}

async function artifactPath(folder: string, file: string): Promise<string> {
  const dir = path.join(ARTIFACTS, folder);
  await mkdir(dir, { recursive: true });
  return path.join(dir, file);
}

// ---- In the page (sent as source text: nothing from this module's scope may be used) ----

/** Keeps CSP violation reports and a place for captured streams. */
function instrument(): void {
  if (globalThis.__conferE2E !== undefined) {
    return;
  }
  const state = { violations: [] as ViolationReport[], streams: {} as Record<string, MediaStream> };
  globalThis.__conferE2E = state;
  document.addEventListener("securitypolicyviolation", (e) => {
    state.violations.push({
      directive: e.effectiveDirective,
      blocked: e.blockedURI,
      source: e.sourceFile,
      line: e.lineNumber,
      sample: e.sample,
    });
  });
}

/** Firefox: getUserMedia's video tracks become canvas tracks of one solid colour. */
function paintCamera(o: { colour: number[]; width: number; height: number; fps: number }): void {
  const devices = navigator.mediaDevices as MediaDevices | undefined;
  if (devices === undefined) {
    return; // not a secure context: getUserMedia does not exist
  }
  const original = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints?: MediaStreamConstraints): Promise<MediaStream> => {
    const stream = await original(constraints);
    for (const device of stream.getVideoTracks()) {
      const canvas = document.createElement("canvas");
      canvas.width = o.width;
      canvas.height = o.height;
      const g = canvas.getContext("2d");
      if (g === null) {
        throw new Error("no 2d canvas for the painted camera");
      }
      const [r, gr, b] = o.colour;
      const paint = (): void => {
        g.fillStyle = `rgb(${String(r)}, ${String(gr)}, ${String(b)})`;
        g.fillRect(0, 0, o.width, o.height);
      };
      paint();
      const painted = canvas.captureStream(o.fps).getVideoTracks()[0];
      if (painted === undefined) {
        throw new Error("canvas.captureStream gave no video track");
      }
      // A canvas track only has frames when the canvas is drawn: keep drawing.
      const timer = setInterval(paint, 1000 / o.fps);
      const stop = painted.stop.bind(painted);
      painted.stop = () => {
        clearInterval(timer);
        stop();
      };
      stream.removeTrack(device);
      device.stop();
      stream.addTrack(painted);
    }
    return stream;
  };
}
