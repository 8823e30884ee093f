// Identity and absence, the assertions every media test makes: a page shows a participant's
// colour and plays their tone in that participant's tile, or no video element of the page
// presents a colour at all.

import { expect } from "vitest";

import type { E2EPage } from "./browsers.js";
import { PARTICIPANTS } from "./media.js";
import type { Participant, Rgb } from "./media.js";
import { COLOUR_TOLERANCE, colourDistance, dominantTone, isTone, sampleVideoColour, waitForVideoColour } from "./probes.js";
import { until } from "./session.js";

/** Every participant's tone, for absence checks. */
export const TONES = Object.values(PARTICIPANTS).map((p) => p.toneHz);

/** `viewer` shows `who`'s colour in the camera tile of participant `id`. */
export async function sees(viewer: E2EPage, id: string, who: Participant, timeoutMs = 15_000): Promise<void> {
  await viewer.waitFor(`video[data-participant="${id}"]`, timeoutMs);
  // The tile's own stream, played in the probe's element: what the tile labelled `id` carries,
  // whether or not the tile is scrolled into view (an element off screen presents no frames).
  const stream = `tile-${id}`;
  await viewer.evaluate(
    ({ id, stream }) => {
      const g = globalThis as unknown as { __conferE2E: { streams: Record<string, MediaStream> } };
      const el = document.querySelector(`video[data-participant="${id}"]`);
      if (!(el instanceof HTMLVideoElement) || !(el.srcObject instanceof MediaStream)) {
        throw new Error(`no tile with a stream for ${id}`);
      }
      g.__conferE2E.streams[stream] = el.srcObject;
    },
    { id, stream },
  );
  await waitForVideoColour(viewer, { stream }, who.colour, timeoutMs);
}

/**
 * `viewer` plays `who`'s tone from the audio of participant `id`. Audio restarts after a slot
 * changes hands (a new stream in the jitter buffer): listen until the tone is there.
 */
export async function hears(viewer: E2EPage, id: string, who: Participant, timeoutMs = 15_000): Promise<void> {
  await viewer.waitFor(`audio[data-participant="${id}"]`, timeoutMs);
  await until(
    `${viewer.participant.name} hears ${who.name}`,
    () => dominantTone(viewer, `audio[data-participant="${id}"]`, { frequencies: TONES }),
    (tone) => isTone(tone, who.toneHz),
    timeoutMs,
  );
}

/**
 * No receive slot of the page presents a frame of `colour`. Each slot's track is played in a
 * fresh element of the probe's own (hidden tiles present nothing, so sampling them would prove
 * nothing): it either presents no new frame within 1.5 s or presents another colour.
 */
export async function showsNowhere(page: E2EPage, colour: Rgb): Promise<void> {
  const names = await page.evaluate(() => {
    interface Slot {
      mid: string;
      kind: string;
      track: MediaStreamTrack;
    }
    const g = globalThis as unknown as {
      __conferE2E: { streams: Record<string, MediaStream>; session?: { view(): { slots: Slot[] } } };
    };
    const slots = g.__conferE2E.session?.view().slots ?? [];
    const out: string[] = [];
    for (const s of slots) {
      if (s.kind === "video") {
        g.__conferE2E.streams[`slot-${s.mid}`] = new MediaStream([s.track]);
        out.push(`slot-${s.mid}`);
      }
    }
    return out;
  }, undefined);
  expect(names.length, `${page.participant.name} has receive slots`).toBeGreaterThan(0);
  const samples = await Promise.all(
    names.map((stream) =>
      sampleVideoColour(page, { stream }, 1_500).catch((e: unknown) => {
        expect(String(e)).toMatch(/no decoded video frame/);
        return undefined;
      }),
    ),
  );
  samples.forEach((sample, i) => {
    if (sample !== undefined) {
      const where = `${page.participant.name}'s ${names[i] ?? ""}: ${JSON.stringify(sample)}`;
      expect(colourDistance(sample.rgb, colour), where).toBeGreaterThan(COLOUR_TOLERANCE);
    }
  });
}

/** No audio element of the page, shown or not, carries `hz`. */
export async function hearsNowhere(page: E2EPage, hz: number): Promise<void> {
  const mids = await page.evaluate(() => Array.from(document.querySelectorAll("audio[data-mid]"), (x) => (x as HTMLElement).dataset["mid"] ?? ""), undefined);
  for (const mid of mids) {
    const tone = await dominantTone(page, `audio[data-mid="${mid}"]`, { frequencies: TONES });
    expect(isTone(tone, hz), `${page.participant.name}'s audio slot ${mid}: ${JSON.stringify(tone)}`).toBe(false);
  }
}
