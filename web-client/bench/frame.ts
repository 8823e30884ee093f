// The TypeScript frame code against raw @noble/ciphers ChaCha20-Poly1305 in Node, side by side
// in one run (../shared/design/BENCHMARKS.md: target ≥ 0.5). Each row: the same payload sealed
// and opened, as a confer/1 frame (Sealer.seal + Opener.open: header, clear prefix, AAD, replay
// window) and as a bare AEAD seal + open with a fresh nonce; the median of 5 runs.
//
//   npm --prefix web-client run bench

import { randomBytes } from "node:crypto";
import os from "node:os";

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

import { FrameCtx, Opener, Sealer } from "../src/core/frame.js";
import type { Codec } from "../src/core/frame.js";

const RUNS = 5;
const RUN_MS = 400;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Frames per second of `step` over one run of about RUN_MS. */
function rate(step: () => void): number {
  for (let i = 0; i < 200; i++) {
    step(); // warm up
  }
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < RUN_MS) {
    for (let i = 0; i < 100; i++) {
      step();
    }
    n += 100;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

function payload(codec: Codec, size: number): Uint8Array {
  const p = new Uint8Array(randomBytes(size));
  if (codec === "vp8") {
    p[0] = (p[0] ?? 0) | 1; // a delta frame: 1 byte of clear prefix
  }
  return p;
}

function conferStep(codec: Codec, size: number, stream: number): () => void {
  const ctx = FrameCtx.create(new Uint8Array(randomBytes(16)), new Uint8Array(randomBytes(16)), new Uint8Array(randomBytes(16)), stream);
  if (ctx === undefined) {
    throw new Error("no frame context");
  }
  const base = new Uint8Array(randomBytes(32));
  const sealer = new Sealer(ctx, base, 1n);
  const opener = new Opener(ctx);
  opener.addGeneration(1n, base);
  const p = payload(codec, size);
  return () => {
    const f = sealer.seal(codec, p);
    opener.open(codec, f);
  };
}

function rawStep(size: number): () => void {
  const key = new Uint8Array(randomBytes(32));
  const nonce = new Uint8Array(12);
  const view = new DataView(nonce.buffer);
  const p = new Uint8Array(randomBytes(size));
  let ctr = 0;
  return () => {
    ctr += 1;
    view.setUint32(8, ctr);
    const ct = chacha20poly1305(key, nonce).encrypt(p);
    chacha20poly1305(key, nonce).decrypt(ct);
  };
}

const rows: [string, Codec, number, number][] = [
  ["160 B (audio)", "opus", 160, 0],
  ["1,200 B (video packet)", "vp8", 1200, 1],
  ["8,000 B (video frame)", "vp8", 8000, 1],
];

const fmt = (x: number): string => Math.round(x).toLocaleString("en-US");
process.stdout.write(
  `TypeScript frame seal + open vs raw @noble ChaCha20-Poly1305 seal + open (Node ${process.version}, ${String(os.cpus().length)} cores, median of ${String(RUNS)})\n\n`,
);
process.stdout.write("| payload | confer/1 frames/s | raw frames/s | ratio | target |\n|---:|---:|---:|---:|---|\n");
for (const [name, codec, size, stream] of rows) {
  const conf: number[] = [];
  const raw: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const c = rate(conferStep(codec, size, stream));
    const b = rate(rawStep(size));
    conf.push(c);
    raw.push(b);
    ratios.push(c / b);
  }
  process.stdout.write(`| ${name} | ${fmt(median(conf))} | ${fmt(median(raw))} | ${median(ratios).toFixed(2)} | ≥ 0.50 |\n`);
}
