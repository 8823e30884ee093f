// Who is seen and who is heard: decoded video frames sampled from a canvas, tones found by FFT.
// Later tests assert identity and absence with these (while A is in caucus, B's page shows no
// A colour and plays no A tone), rather than "bitrate > 0".
//
// A target is either a CSS selector of a <video> or <audio> element in the page (a remote
// tile), or `{ stream: name }`, a stream the test captured with `captureUserMedia`.
//
// Tones: where the page's AudioContext runs (Chromium), an AnalyserNode FFT of the live
// track. Where it cannot (Firefox headless on a machine without a sound device: no audio
// output, so an AudioContext never leaves "suspended"), the track is recorded for a moment
// (MediaRecorder), decoded (OfflineAudioContext.decodeAudioData needs no device) and the same
// spectrum is computed in the page (Hann window, FFT). `method` says which ran.

import type { E2EPage } from "./browsers.js";
import type { Rgb } from "./media.js";

export type MediaTarget = string | { readonly stream: string };

export interface TrackInfo {
  readonly kind: string;
  readonly label: string;
  readonly readyState: string;
  readonly settings: Readonly<Record<string, unknown>>;
}

/**
 * Calls `navigator.mediaDevices.getUserMedia(constraints)` in the page (as the app would) and
 * keeps the stream under `name` for the probes. Returns its tracks.
 */
export async function captureUserMedia(
  page: E2EPage,
  name: string,
  constraints: MediaStreamConstraints = { audio: true, video: true },
): Promise<TrackInfo[]> {
  return page.evaluate(
    async ({ name, constraints }) => {
      const state = globalThis.__conferE2E;
      if (state === undefined) {
        throw new Error("the page is not instrumented");
      }
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      state.streams[name] = stream;
      return stream.getTracks().map((t) => ({
        kind: t.kind,
        label: t.label,
        readyState: t.readyState,
        settings: { ...t.getSettings() },
      }));
    },
    { name, constraints },
  );
}

/** Stops and forgets every stream `captureUserMedia` kept. */
export async function stopCapturedMedia(page: E2EPage): Promise<void> {
  await page.evaluate(() => {
    const streams = globalThis.__conferE2E?.streams ?? {};
    for (const [name, stream] of Object.entries(streams)) {
      for (const t of stream.getTracks()) {
        t.stop();
      }
      Reflect.deleteProperty(streams, name);
    }
  }, undefined);
}

export interface ColourSample {
  /** Per-channel median over a 5x5 grid of the frame's inner 80%. */
  readonly rgb: Rgb;
  /** Largest distance (max over channels) of a grid point from the median: 0 for a solid frame. */
  readonly spread: number;
  readonly width: number;
  readonly height: number;
}

/**
 * Samples the current decoded frame of a video target: waits (up to `timeoutMs`) for a
 * decoded frame, draws it to a canvas, reads a 5x5 grid of pixels.
 */
export async function sampleVideoColour(
  page: E2EPage,
  target: MediaTarget,
  timeoutMs = 10_000,
): Promise<ColourSample> {
  return page.evaluate(
    async ({ target, timeoutMs }) => {
      // The next frame the element presents, or an error once the deadline has passed.
      const nextFrame = (v: HTMLVideoElement, deadline: number) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => {
            reject(new Error(`no decoded video frame within ${String(timeoutMs)} ms`));
          }, Math.max(0, deadline - performance.now()));
          v.requestVideoFrameCallback(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      let video: HTMLVideoElement;
      let made = false;
      if (typeof target === "string") {
        const el = document.querySelector(target);
        if (!(el instanceof HTMLVideoElement)) {
          throw new Error(`${target} is not a <video> element`);
        }
        video = el;
      } else {
        const stream = globalThis.__conferE2E?.streams[target.stream];
        if (stream === undefined || stream.getVideoTracks().length === 0) {
          throw new Error(`no captured stream ${target.stream} with a video track`);
        }
        video = document.createElement("video");
        video.muted = true;
        video.playsInline = true;
        video.srcObject = new MediaStream(stream.getVideoTracks());
        made = true;
        // Not awaited: a track that never had a frame never starts playing; the deadline below ends the wait.
        void video.play().catch(() => undefined);
      }
      try {
        const deadline = performance.now() + timeoutMs;
        // A first decoded frame, then one more, so the sample is of a frame presented now.
        await nextFrame(video, deadline);
        await nextFrame(video, deadline);
        const w = video.videoWidth;
        const h = video.videoHeight;
        const canvas = document.createElement("canvas");
        canvas.width = w;
        canvas.height = h;
        const g = canvas.getContext("2d", { willReadFrequently: true });
        if (g === null) {
          throw new Error("no 2d canvas");
        }
        g.drawImage(video, 0, 0, w, h);
        const data = g.getImageData(0, 0, w, h).data;
        const points: [number, number, number][] = [];
        for (let i = 0; i < 5; i++) {
          for (let j = 0; j < 5; j++) {
            const x = Math.floor(w * (0.1 + 0.2 * i));
            const y = Math.floor(h * (0.1 + 0.2 * j));
            const at = (y * w + x) * 4;
            points.push([data[at] ?? 0, data[at + 1] ?? 0, data[at + 2] ?? 0]);
          }
        }
        const median = (c: 0 | 1 | 2): number => {
          const v = points.map((p) => p[c]).sort((a, b) => a - b);
          return v[Math.floor(v.length / 2)] ?? 0;
        };
        const rgb: [number, number, number] = [median(0), median(1), median(2)];
        const spread = Math.max(...points.map((p) => Math.max(...p.map((v, c) => Math.abs(v - (rgb[c] ?? 0))))));
        return { rgb, spread, width: w, height: h };
      } finally {
        if (made) {
          video.srcObject = null;
        }
      }
    },
    { target, timeoutMs },
  );
}

/** Largest per-channel difference between two colours. */
export function colourDistance(a: Rgb, b: Rgb): number {
  return Math.max(Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]), Math.abs(a[2] - b[2]));
}

/**
 * The tolerance for a colour that went RGB to YUV 4:2:0 (and maybe through VP8) and back: the
 * conversions are not exact (limited range, rounding), and an encoder shifts a flat colour by a
 * few steps. The participants' colours are over 100 apart in some channel.
 */
export const COLOUR_TOLERANCE = 30;

/** Whether a sample is a solid frame of `colour`. */
export function isColour(sample: ColourSample, colour: Rgb, tolerance = COLOUR_TOLERANCE): boolean {
  return sample.spread <= tolerance && colourDistance(sample.rgb, colour) <= tolerance;
}

/** Samples until the target shows `colour` (returns the matching sample) or `timeoutMs` passes (throws). */
export async function waitForVideoColour(
  page: E2EPage,
  target: MediaTarget,
  colour: Rgb,
  timeoutMs = 10_000,
): Promise<ColourSample> {
  const deadline = Date.now() + timeoutMs;
  let last: ColourSample | undefined;
  for (;;) {
    last = await sampleVideoColour(page, target, Math.max(1, deadline - Date.now()));
    if (isColour(last, colour)) {
      return last;
    }
    // No pause between samples: each one waits for a frame presented after the last.
    if (Date.now() > deadline) {
      throw new Error(`${JSON.stringify(target)} shows ${JSON.stringify(last)}, not ${JSON.stringify(colour)}`);
    }
  }
}

export interface ToneReading {
  /** The strongest frequency between 50 Hz and 8 kHz, in Hz (interpolated between bins). */
  readonly hz: number;
  /** Its level, in dB (relative; only differences matter). */
  readonly db: number;
  /** The median level of all bins between 50 Hz and 8 kHz: the noise floor. */
  readonly floorDb: number;
  /** The strongest level within 15 Hz of each asked frequency, by frequency. */
  readonly levels: Readonly<Record<string, number>>;
  readonly method: "analyser" | "recording";
  readonly sampleRate: number;
}

export interface ToneOptions {
  /** How long to listen, in ms (default 800). */
  readonly durationMs?: number;
  /** Frequencies whose levels to report (e.g. every participant's tone, for absence checks). */
  readonly frequencies?: readonly number[];
  /** `auto` (default): the AnalyserNode if the page's AudioContext runs, else a recording. */
  readonly method?: "auto" | "analyser" | "recording";
}

/** The dominant frequency of an audio target. */
export async function dominantTone(page: E2EPage, target: MediaTarget, options: ToneOptions = {}): Promise<ToneReading> {
  return page.evaluate(
    async ({ target, durationMs, frequencies, method }) => {
      const FFT = 8192;
      const LOW = 50;
      const HIGH = 8000;
      // Waits until `cond` holds (checked every few ms), or rejects at the deadline.
      const until = (cond: () => boolean, deadline: number, what: string) =>
        new Promise<void>((resolve, reject) => {
          const check = () => {
            if (cond()) {
              resolve();
            } else if (performance.now() > deadline) {
              reject(new Error(`timed out waiting for ${what}`));
            } else {
              setTimeout(check, 5);
            }
          };
          check();
        });

      let stream: MediaStream | undefined;
      if (typeof target === "string") {
        const el = document.querySelector(target);
        if (!(el instanceof HTMLMediaElement)) {
          throw new Error(`${target} is not an <audio> or <video> element`);
        }
        stream = el.srcObject instanceof MediaStream ? el.srcObject : undefined;
        if (stream === undefined) {
          throw new Error(`${target} plays no MediaStream`);
        }
      } else {
        stream = globalThis.__conferE2E?.streams[target.stream];
      }
      const tracks = stream?.getAudioTracks() ?? [];
      if (tracks.length === 0) {
        throw new Error(`${JSON.stringify(target)} has no audio track`);
      }
      const audio = new MediaStream(tracks);

      // Mean power per bin (linear), bins of width sampleRate / FFT.
      const summarise = (power: Float64Array, rate: number, how: "analyser" | "recording") => {
        const binHz = rate / FFT;
        const db = (p: number) => (p > 0 ? 10 * Math.log10(p) : -300);
        const lo = Math.ceil(LOW / binHz);
        const hi = Math.min(power.length - 2, Math.floor(HIGH / binHz));
        let best = lo;
        for (let i = lo; i <= hi; i++) {
          if ((power[i] ?? 0) > (power[best] ?? 0)) {
            best = i;
          }
        }
        // Parabolic interpolation of the peak on the dB scale.
        const [a, b, c] = [db(power[best - 1] ?? 0), db(power[best] ?? 0), db(power[best + 1] ?? 0)];
        const denom = a - 2 * b + c;
        const shift = denom === 0 || !Number.isFinite(denom) ? 0 : (0.5 * (a - c)) / denom;
        const sorted = Array.from(power.slice(lo, hi + 1)).sort((x, y) => x - y);
        const levels: Record<string, number> = {};
        for (const f of frequencies) {
          let top = 0;
          for (let i = Math.max(0, Math.floor((f - 15) / binHz)); i <= Math.ceil((f + 15) / binHz); i++) {
            top = Math.max(top, power[i] ?? 0);
          }
          levels[String(f)] = db(top);
        }
        return {
          hz: (best + Math.max(-0.5, Math.min(0.5, shift))) * binHz,
          db: b,
          floorDb: db(sorted[Math.floor(sorted.length / 2)] ?? 0),
          levels,
          method: how,
          sampleRate: rate,
        };
      };

      const analyser = async () => {
        const ctx = new AudioContext();
        try {
          // Firefox without a sound device never starts it (and resume() never settles):
          // then the recording method runs instead.
          void ctx.resume();
          try {
            await until(() => ctx.state === "running", performance.now() + 1000, "the AudioContext");
          } catch {
            return undefined;
          }
          const source = ctx.createMediaStreamSource(audio);
          const node = ctx.createAnalyser();
          node.fftSize = FFT;
          node.smoothingTimeConstant = 0;
          const silent = ctx.createGain();
          silent.gain.value = 0;
          source.connect(node);
          node.connect(silent);
          silent.connect(ctx.destination);
          // On the audio clock: first one whole analyser window of signal, then a reading
          // every half window until `durationMs` of audio were read.
          const windowS = FFT / ctx.sampleRate;
          const limit = performance.now() + 5 * durationMs + 2000;
          const t0 = ctx.currentTime;
          await until(() => ctx.currentTime >= t0 + windowS, limit, "the analyser's first window");
          const bins = new Float32Array(node.frequencyBinCount);
          const power = new Float64Array(node.frequencyBinCount);
          const start = ctx.currentTime;
          let n = 0;
          let at = start;
          do {
            node.getFloatFrequencyData(bins);
            bins.forEach((v, i) => {
              power[i] = (power[i] ?? 0) + (Number.isFinite(v) ? 10 ** (v / 10) : 0);
            });
            n++;
            const next = at + windowS / 2;
            await until(() => ctx.currentTime >= next, limit, "the next analyser window");
            at = next;
          } while (ctx.currentTime - start < durationMs / 1000);
          return summarise(power.map((p) => p / n), ctx.sampleRate, "analyser");
        } finally {
          await ctx.close();
        }
      };

      const recording = async () => {
        const recorder = new MediaRecorder(audio);
        const chunks: Blob[] = [];
        const stopped = new Promise<void>((r) => {
          recorder.onstop = () => {
            r();
          };
        });
        // Chunks of 100 ms: stop once enough of them arrived.
        const want = Math.ceil(Math.max(durationMs, 400) / 100);
        const enough = new Promise<void>((r) => {
          recorder.ondataavailable = (e) => {
            chunks.push(e.data);
            if (chunks.length >= want) {
              r();
            }
          };
        });
        recorder.start(100);
        await enough;
        recorder.stop();
        await stopped;
        const blob = new Blob(chunks, { type: recorder.mimeType });
        const decoder = new OfflineAudioContext(1, 1, 48_000);
        const decoded = await decoder.decodeAudioData(await blob.arrayBuffer());
        const pcm = decoded.getChannelData(0);
        // Hann-windowed FFTs over every full window, half overlapping, skipping the first
        // 100 ms (encoder start-up); power averaged.
        const power = new Float64Array(FFT / 2 + 1);
        const re = new Float64Array(FFT);
        const im = new Float64Array(FFT);
        let windows = 0;
        for (let start = Math.floor(decoded.sampleRate / 10); start + FFT <= pcm.length; start += FFT / 2) {
          for (let i = 0; i < FFT; i++) {
            re[i] = (pcm[start + i] ?? 0) * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (FFT - 1)));
            im[i] = 0;
          }
          for (let i = 1, j = 0; i < FFT; i++) {
            let bit = FFT >> 1;
            for (; j & bit; bit >>= 1) {
              j ^= bit;
            }
            j ^= bit;
            if (i < j) {
              [re[i], re[j]] = [re[j] ?? 0, re[i] ?? 0];
            }
          }
          for (let len = 2; len <= FFT; len <<= 1) {
            const angle = (-2 * Math.PI) / len;
            for (let i = 0; i < FFT; i += len) {
              for (let k = 0; k < len / 2; k++) {
                const [cos, sin] = [Math.cos(angle * k), Math.sin(angle * k)];
                const [p, q] = [i + k, i + k + len / 2];
                const [qr, qi] = [re[q] ?? 0, im[q] ?? 0];
                const vr = qr * cos - qi * sin;
                const vi = qr * sin + qi * cos;
                const [ur, ui] = [re[p] ?? 0, im[p] ?? 0];
                re[p] = ur + vr;
                im[p] = ui + vi;
                re[q] = ur - vr;
                im[q] = ui - vi;
              }
            }
          }
          for (let i = 0; i <= FFT / 2; i++) {
            power[i] = (power[i] ?? 0) + (re[i] ?? 0) ** 2 + (im[i] ?? 0) ** 2;
          }
          windows++;
        }
        if (windows === 0) {
          throw new Error(`recorded only ${String(pcm.length)} samples`);
        }
        return summarise(power.map((p) => p / windows), decoded.sampleRate, "recording");
      };

      if (method === "recording") {
        return recording();
      }
      const live = await analyser();
      if (live !== undefined) {
        return live;
      }
      if (method === "analyser") {
        throw new Error("the page's AudioContext does not run (no audio output device?)");
      }
      return recording();
    },
    {
      target,
      durationMs: options.durationMs ?? 800,
      frequencies: [...(options.frequencies ?? [])],
      method: options.method ?? "auto",
    },
  );
}

/** Whether a reading is a clear tone at `hz`: the peak within `toleranceHz`, 20 dB over the floor. */
export function isTone(reading: ToneReading, hz: number, toleranceHz = 12): boolean {
  return Math.abs(reading.hz - hz) <= toleranceHz && reading.db - reading.floorDb >= 20;
}
