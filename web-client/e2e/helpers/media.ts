// Per-participant fake media, so a test can tell *who* is seen and heard (WEB.md, Tests): each
// participant has its own solid video colour and its own sine tone. The tones are not
// harmonics of each other (no tone is 2x or 3x another), so codec distortion of one cannot pass
// for another.
//
// Chromium reads them from files (--use-file-for-fake-video-capture, a Y4M of 10 frames that
// it loops; --use-file-for-fake-audio-capture, a WAV it loops). Firefox takes the tone from a
// pref (media.navigator.audio.fake_frequency) and its camera is painted (browsers.ts).

import { writeFile } from "node:fs/promises";
import path from "node:path";

export type Rgb = readonly [number, number, number];

export interface Participant {
  /** A name for logs and files (`red`, ...). */
  readonly name: string;
  /** The solid colour of every video frame, in sRGB. */
  readonly colour: Rgb;
  /** The sine tone of the microphone, in Hz. */
  readonly toneHz: number;
}

export const PARTICIPANTS = {
  red: { name: "red", colour: [220, 40, 40], toneHz: 440 },
  green: { name: "green", colour: [40, 180, 70], toneHz: 660 },
  blue: { name: "blue", colour: [40, 90, 220], toneHz: 1100 },
  yellow: { name: "yellow", colour: [230, 200, 30], toneHz: 1500 },
} as const satisfies Record<string, Participant>;

export const WIDTH = 160;
export const HEIGHT = 120;
export const FPS = 10;
export const SAMPLE_RATE = 48_000;

/** The files Chromium's fake devices read for one participant. */
export interface MediaFiles {
  readonly y4m: string;
  readonly wav: string;
}

/** Writes `<name>.y4m` and `<name>.wav` into `dir`. */
export async function writeMediaFiles(dir: string, p: Participant): Promise<MediaFiles> {
  const files = { y4m: path.join(dir, `${p.name}.y4m`), wav: path.join(dir, `${p.name}.wav`) };
  await writeFile(files.y4m, y4m(p.colour));
  await writeFile(files.wav, wav(p.toneHz));
  return files;
}

/** sRGB to Y'CbCr, BT.601 limited range: what Chromium's capture path assumes for I420. */
export function rgbToYuv([r, g, b]: Rgb): Rgb {
  const [R, G, B] = [r / 255, g / 255, b / 255];
  const clamp = (v: number): number => Math.min(255, Math.max(0, Math.round(v)));
  return [
    clamp(16 + 65.481 * R + 128.553 * G + 24.966 * B),
    clamp(128 - 37.797 * R - 74.203 * G + 112.0 * B),
    clamp(128 + 112.0 * R - 93.786 * G - 18.214 * B),
  ];
}

/** A 160x120 Y4M (4:2:0, the `C420` header) of `frames` frames of one solid colour. */
export function y4m(colour: Rgb, frames = FPS): Buffer {
  const [y, u, v] = rgbToYuv(colour);
  const header = Buffer.from(`YUV4MPEG2 W${String(WIDTH)} H${String(HEIGHT)} F${String(FPS)}:1 Ip A1:1 C420\n`, "ascii");
  const luma = WIDTH * HEIGHT;
  const chroma = luma / 4;
  const frame = Buffer.concat([
    Buffer.from("FRAME\n", "ascii"),
    Buffer.alloc(luma, y),
    Buffer.alloc(chroma, u),
    Buffer.alloc(chroma, v),
  ]);
  return Buffer.concat([header, ...Array.from({ length: frames }, () => frame)]);
}

/**
 * A mono 16-bit PCM WAV of a sine at `hz`, `seconds` long (an integer number of cycles for
 * whole-Hz tones over whole seconds, so Chromium's loop has no click), at half full scale.
 */
export function wav(hz: number, seconds = 2, rate = SAMPLE_RATE): Buffer {
  const n = Math.round(seconds * rate);
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    data.writeInt16LE(Math.round(0.5 * 32767 * Math.sin((2 * Math.PI * hz * i) / rate)), i * 2);
  }
  const head = Buffer.alloc(44);
  head.write("RIFF", 0, "ascii");
  head.writeUInt32LE(36 + data.length, 4);
  head.write("WAVE", 8, "ascii");
  head.write("fmt ", 12, "ascii");
  head.writeUInt32LE(16, 16); // fmt chunk size
  head.writeUInt16LE(1, 20); // PCM
  head.writeUInt16LE(1, 22); // mono
  head.writeUInt32LE(rate, 24);
  head.writeUInt32LE(rate * 2, 28); // bytes per second
  head.writeUInt16LE(2, 32); // block align
  head.writeUInt16LE(16, 34); // bits per sample
  head.write("data", 36, "ascii");
  head.writeUInt32LE(data.length, 40);
  return Buffer.concat([head, data]);
}
