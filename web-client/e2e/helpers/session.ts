// Driving the page's SDK from a test (the e2e build's hook, src/main.ts): join through the
// page's own form, read the view, wait for a condition, call the session's commands.

import { vi } from "vitest";

import type { MediaCounters } from "../../src/sdk.js";

import type { E2EPage } from "./browsers.js";

/** The part of the SDK's view a test reads (tracks left out: they do not cross to Node). */
export interface SeenView {
  phase: string;
  participantId: string | undefined;
  channel: string | undefined;
  secured: string | undefined;
  sessionCode: string | undefined;
  present: { participantId: string; name: string | undefined; me: boolean }[];
  slots: { mid: string; kind: string; publisher: string | undefined; blocked: boolean; trackState: string }[];
  alarms: string[];
  transformPath: string | undefined;
  sharingScreen: boolean;
  keysDeleted: boolean;
  ended: string | undefined;
  myFingerprint: string | undefined;
  autoAdmit: boolean;
  arrivals: { participantId: string; ready: boolean; fingerprint: string | undefined; rekeyed: boolean }[];
  locked: boolean;
  rejoining: boolean;
  signsRosters: boolean;
}

/** The SDK's media counters (src/sdk.ts). */
export type SeenCounters = MediaCounters;

export interface JoinHook {
  transformPath?: "insertable" | "script";
  audioProcessing?: boolean;
  publish?: { audio: boolean; video: boolean };
  test?: { skipSenderTransform?: "microphone" | "camera" };
}

/** Opens `link`, fills the join form (name, agreement) and joins with the hook's options. */
export async function joinThroughPage(page: E2EPage, link: string, name: string, hook: JoinHook = {}): Promise<void> {
  await page.goto(link);
  await page.waitFor("#join button[type=submit]");
  await page.evaluate(
    ({ name, hook }) => {
      const g = globalThis as unknown as { __conferE2E: { join?: unknown } };
      g.__conferE2E.join = hook;
      const input = document.getElementById("name") as HTMLInputElement;
      input.value = name;
      for (const box of document.querySelectorAll<HTMLInputElement>("#join input[type=checkbox]")) {
        box.checked = true;
      }
      (document.getElementById("join") as HTMLFormElement).requestSubmit();
    },
    { name, hook },
  );
}

/** The session's view now. */
export function viewOf(page: E2EPage): Promise<SeenView> {
  return page.evaluate(() => {
    interface Slot {
      mid: string;
      kind: string;
      publisher: string | undefined;
      blocked: boolean;
      track: MediaStreamTrack;
    }
    const g = globalThis as unknown as { __conferE2E: { session?: { view(): Omit<SeenView, "slots"> & { slots: Slot[] } } } };
    const s = g.__conferE2E.session;
    if (s === undefined) {
      throw new Error("the page has not joined");
    }
    const v = s.view();
    return {
      ...v,
      slots: v.slots.map((x) => ({ mid: x.mid, kind: x.kind, publisher: x.publisher, blocked: x.blocked, trackState: x.track.readyState })),
    };
  }, undefined);
}

/** The gate's counters. */
export function countersOf(page: E2EPage): Promise<SeenCounters> {
  return page.evaluate(() => {
    const g = globalThis as unknown as { __conferE2E: { session?: { mediaCounters(): SeenCounters } } };
    const s = g.__conferE2E.session;
    if (s === undefined) {
      throw new Error("the page has not joined");
    }
    return s.mediaCounters();
  }, undefined);
}

/**
 * Waits for a condition: `probe` until `ok` holds (returns that value), through Vitest's
 * `vi.waitUntil`; after `timeoutMs` it throws with the last value seen.
 */
export async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  let last: T | undefined;
  try {
    return await vi.waitUntil(
      async () => {
        last = await probe();
        return ok(last) ? { value: last } : false;
      },
      { timeout: timeoutMs, interval: 50 },
    ).then((r) => r.value);
  } catch (e) {
    throw new Error(`${what}: not within ${String(timeoutMs)} ms; last ${JSON.stringify(last)}`, { cause: e });
  }
}

/** Mediators: an invite link bound to `role` and `side`. */
export function inviteFrom(page: E2EPage, role: string, side: string | undefined): Promise<string> {
  return page.evaluate(
    ({ role, side }) => {
      const g = globalThis as unknown as { __conferE2E: { session?: { createInvite(r: string, s: string | undefined): Promise<string> } } };
      const s = g.__conferE2E.session;
      if (s === undefined) {
        throw new Error("the page has not joined");
      }
      return s.createInvite(role, side);
    },
    { role, side },
  );
}

/** Mediators: a manager command (`move`, `return_all`, ...). */
export function commandFrom(page: E2EPage, m: Record<string, unknown>): Promise<void> {
  return page.evaluate((m) => {
    const g = globalThis as unknown as { __conferE2E: { session?: { command(m: unknown): Promise<void> } } };
    const s = g.__conferE2E.session;
    if (s === undefined) {
      throw new Error("the page has not joined");
    }
    return s.command(m);
  }, m);
}

/** Test builds: the page forgets every receive key of `publisher`. */
export function dropReceiveKeys(page: E2EPage, publisher: string): Promise<void> {
  return page.evaluate((publisher) => {
    const g = globalThis as unknown as { __conferE2E: { session?: { testHooks?: { dropReceiveKeysOf(p: string): void } } } };
    const hooks = g.__conferE2E.session?.testHooks;
    if (hooks === undefined) {
      throw new Error("not a test build");
    }
    hooks.dropReceiveKeysOf(publisher);
  }, publisher);
}

/** Starts keeping the chat messages the page's session opens (`chatsOf` reads them). */
export function recordChats(page: E2EPage): Promise<void> {
  return page.evaluate(() => {
    interface Chat {
      type: string;
      from?: string;
      text?: string;
    }
    const g = globalThis as unknown as {
      __conferE2E: { session?: { onEvent(f: (e: Chat) => void): void }; chats?: { from: string; text: string }[] };
    };
    const chats: { from: string; text: string }[] = [];
    g.__conferE2E.chats = chats;
    g.__conferE2E.session?.onEvent((e) => {
      if (e.type === "chat") {
        chats.push({ from: e.from ?? "", text: e.text ?? "" });
      }
    });
  }, undefined);
}

/** The chat messages opened since `recordChats`. */
export function chatsOf(page: E2EPage): Promise<{ from: string; text: string }[]> {
  return page.evaluate(() => {
    const g = globalThis as unknown as { __conferE2E: { chats?: { from: string; text: string }[] } };
    return [...(g.__conferE2E.chats ?? [])];
  }, undefined);
}

/** Sends an encrypted chat message from the page. */
export function sendChat(page: E2EPage, text: string): Promise<void> {
  return page.evaluate((text) => {
    const g = globalThis as unknown as { __conferE2E: { session?: { sendChat(t: string): Promise<void> } } };
    return g.__conferE2E.session?.sendChat(text);
  }, text);
}

/**
 * Keyboard only: presses Tab (at most `max` times) until the focused element matches
 * `selector`, as a person who does not use a mouse would reach it.
 */
export async function tabTo(page: E2EPage, selector: string, max = 80): Promise<void> {
  const kb = page.playwright?.keyboard;
  if (kb === undefined) {
    throw new Error("keyboard driving needs a Chromium page");
  }
  for (let i = 0; i < max; i++) {
    const there = await page.evaluate((sel) => document.activeElement?.matches(sel) ?? false, selector);
    if (there) {
      return;
    }
    await kb.press("Tab");
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** Keyboard only: presses a key on the focused element. */
export async function press(page: E2EPage, key: string): Promise<void> {
  const kb = page.playwright?.keyboard;
  if (kb === undefined) {
    throw new Error("keyboard driving needs a Chromium page");
  }
  await kb.press(key);
}

/** Keyboard only: types text into the focused element. */
export async function typeText(page: E2EPage, text: string): Promise<void> {
  const kb = page.playwright?.keyboard;
  if (kb === undefined) {
    throw new Error("keyboard driving needs a Chromium page");
  }
  await kb.type(text);
}

/** The text of an element (empty when absent). */
export function textOf(page: E2EPage, selector: string): Promise<string> {
  return page.evaluate((sel) => document.querySelector(sel)?.textContent ?? "", selector);
}

/** The page's view shows it secured in `ch` with `n` people present (itself included). */
export function inRoom(v: SeenView, ch: string, n: number): boolean {
  return v.phase === "secured" && v.secured === ch && v.present.length === n;
}

/** The underlying Playwright page (Chromium pages only). */
export function playwrightOf(p: E2EPage): NonNullable<E2EPage["playwright"]> {
  const page = p.playwright;
  if (page === undefined) {
    throw new Error("Chromium pages only");
  }
  return page;
}

/**
 * A mediation in joint: the mediator joins from `mediatorLink` as "Mediator Mo", makes party
 * links for A ("Ada") and B ("Bo"), who join; waits until all three are secured in joint.
 * Returns their participant ids.
 */
export async function mediationInJoint(mediatorLink: string, m: E2EPage, a: E2EPage, b: E2EPage, hook: JoinHook = {}): Promise<{ m: string; a: string; b: string }> {
  await joinThroughPage(m, mediatorLink, "Mediator Mo", hook);
  await until("the mediator is in joint", () => viewOf(m), (v) => inRoom(v, "joint", 1));
  const [linkA, linkB] = [await inviteFrom(m, "party", "A"), await inviteFrom(m, "party", "B")];
  await joinThroughPage(a, linkA, "Ada", hook);
  await joinThroughPage(b, linkB, "Bo", hook);
  const ids: string[] = [];
  for (const p of [m, a, b]) {
    const v = await until(`${p.participant.name} is in joint with three`, () => viewOf(p), (x) => inRoom(x, "joint", 3));
    ids.push(v.participantId ?? "");
  }
  return { m: ids[0] ?? "", a: ids[1] ?? "", b: ids[2] ?? "" };
}
