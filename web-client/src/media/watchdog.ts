// The stats watchdog (WEB.md "Media path", rule 5): every second it compares what the browser
// says it encoded, sent, received and decoded (`getStats`) with what the gate saw, sealed and
// opened, per sender and per slot. A mismatch means frames take a path around the transform:
// the caller stops that sender's track (or blocks that slot) and raises a blocking alarm. None
// of the anchors checks this (WEB.md).
//
// Two kinds of evidence:
// - a leak, at once: more frames sent than sealed (video `framesSent`, audio `packetsSent`:
//   one Opus frame a packet), or more video frames decoded than opened;
// - a bypass, on two checks in a row: the browser encoded (sending) or received (receiving)
//   frames while not one reached the gate. A busy page delays frames, it does not make them
//   vanish, so a slow gate is not mistaken for a bypass.
// Counts are taken per stats report (each RTP stream), from the first time that report is
// seen, so a slot that changes hands starts afresh.

import type { ReceiveCounters, SendCounters } from "../worker/gate.js";

/** Frames (video) or packets (audio) the browser's count may run ahead of the gate's. */
export const WATCHDOG_SLACK = { video: 10, audio: 25 } as const;
/** Frames the browser must have encoded or received in one check, with none at the gate, to count as a strike. */
const MIN_ACTIVITY = 5;
/** Strikes in a row that make a bypass. */
const STRIKES = 2;

/** What the watchdog found: a sender or a slot whose frames do not go through the gate. */
export interface Bypass {
  side: "send" | "receive";
  /** The sender's name (`microphone`, `camera`, `screen`) or the slot's name in the gate. */
  id: string;
  /** What the browser counted and what the gate counted, since the stream began. */
  browser: number;
  gate: number;
}

export interface WatchedSender {
  id: string;
  kind: "audio" | "video";
  sender: RTCRtpSender;
  counters: SendCounters;
}

export interface WatchedReceiver {
  /** The slot's name in the gate. */
  id: string;
  kind: "audio" | "video";
  receiver: RTCRtpReceiver;
  counters: ReceiveCounters;
}

function numberField(r: Record<string, unknown>, k: string): number {
  const v = r[k];
  return typeof v === "number" ? v : 0;
}

async function reports(stats: Promise<RTCStatsReport>, type: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  (await stats).forEach((r: Record<string, unknown>) => {
    if (r["type"] === type) {
      out.push(r);
    }
  });
  return out;
}

interface Track {
  /** The browser's counters and the gate's when this report was first seen. */
  base: Record<string, number>;
  /** The last check's values (for the per-check activity). */
  last: Record<string, number>;
  strikes: number;
}

export class Watchdog {
  readonly #tracks = new Map<string, Track>();
  readonly #decoding = new Map<string, { opened: number; decoded: number }>();
  #running = false;
  /**
   * Video slots (by gate name) whose frames opened since the last check while the decoder
   * produced nothing: it waits for a key frame it missed (sent while the publisher was still
   * securing, say). The caller asks the slot's publisher for one.
   */
  stuck: string[] = [];

  /** One check of every sender and slot (a check still running makes this one a no-op). */
  async check(senders: readonly WatchedSender[], receivers: readonly WatchedReceiver[]): Promise<Bypass[]> {
    if (this.#running) {
      return [];
    }
    this.#running = true;
    try {
      const found: Bypass[] = [];
      this.stuck = [];
      for (const s of senders) {
        if (s.sender.track === null) {
          continue;
        }
        for (const r of await reports(s.sender.getStats(), "outbound-rtp")) {
          const b = this.#send(s, r);
          if (b !== undefined) {
            found.push(b);
          }
        }
      }
      for (const w of receivers) {
        for (const r of await reports(w.receiver.getStats(), "inbound-rtp")) {
          const b = this.#receive(w, r);
          if (b !== undefined) {
            found.push(b);
          }
        }
      }
      return found;
    } finally {
      this.#running = false;
    }
  }

  // Deltas since this report was first seen; the strike count of "busy browser, idle gate".
  #step(key: string, now: Record<string, number>, busyKey: string, gateKey: string): { d: Record<string, number>; strikes: number } {
    let t = this.#tracks.get(key);
    if (t === undefined) {
      t = { base: { ...now }, last: { ...now }, strikes: 0 };
      this.#tracks.set(key, t);
    }
    const d: Record<string, number> = {};
    for (const [k, v] of Object.entries(now)) {
      d[k] = v - (t.base[k] ?? 0);
    }
    const busy = (now[busyKey] ?? 0) - (t.last[busyKey] ?? 0);
    const gate = (now[gateKey] ?? 0) - (t.last[gateKey] ?? 0);
    t.strikes = busy >= MIN_ACTIVITY && gate === 0 ? t.strikes + 1 : 0;
    t.last = { ...now };
    return { d, strikes: t.strikes };
  }

  #send(s: WatchedSender, r: Record<string, unknown>): Bypass | undefined {
    const key = `s:${s.id}:${String(r["id"])}`;
    if (s.kind === "video") {
      const now = {
        encoded: numberField(r, "framesEncoded"),
        sent: numberField(r, "framesSent"),
        seen: s.counters.seen,
        sealed: s.counters.sealed,
      };
      const { d, strikes } = this.#step(key, now, "encoded", "seen");
      if ((d["sent"] ?? 0) > (d["sealed"] ?? 0) + WATCHDOG_SLACK.video) {
        return { side: "send", id: s.id, browser: d["sent"] ?? 0, gate: d["sealed"] ?? 0 };
      }
      if (strikes >= STRIKES) {
        return { side: "send", id: s.id, browser: d["encoded"] ?? 0, gate: d["seen"] ?? 0 };
      }
      return undefined;
    }
    const now = { sent: numberField(r, "packetsSent"), sealed: s.counters.sealed, seen: s.counters.seen };
    const { d } = this.#step(key, now, "sent", "seen");
    if ((d["sent"] ?? 0) > (d["sealed"] ?? 0) + WATCHDOG_SLACK.audio) {
      return { side: "send", id: s.id, browser: d["sent"] ?? 0, gate: d["sealed"] ?? 0 };
    }
    return undefined;
  }

  #receive(w: WatchedReceiver, r: Record<string, unknown>): Bypass | undefined {
    const key = `r:${w.id}:${String(r["id"])}`;
    const received = w.kind === "video" ? numberField(r, "framesReceived") : numberField(r, "packetsReceived");
    const now = {
      received,
      decoded: numberField(r, "framesDecoded"),
      seen: w.counters.seen,
      opened: w.counters.opened,
    };
    const { d, strikes } = this.#step(key, now, "received", "seen");
    if (w.kind === "video") {
      const last = this.#decoding.get(key);
      if (last !== undefined && now.opened > last.opened && now.decoded === last.decoded) {
        this.stuck.push(w.id);
      }
      this.#decoding.set(key, { opened: now.opened, decoded: now.decoded });
    }
    if (w.kind === "video" && (d["decoded"] ?? 0) > (d["opened"] ?? 0) + WATCHDOG_SLACK.video) {
      return { side: "receive", id: w.id, browser: d["decoded"] ?? 0, gate: d["opened"] ?? 0 };
    }
    if (strikes >= STRIKES) {
      return { side: "receive", id: w.id, browser: d["received"] ?? 0, gate: d["seen"] ?? 0 };
    }
    return undefined;
  }
}
