// The stats watchdog (WEB.md "Media path", rule 5): every second it compares what the browser
// says it encoded, sent and decoded (`getStats`) with what the gate sealed and opened. A sender
// whose encoder produced more frames than the gate saw, or whose packets outnumber the frames
// the gate sealed, has a frame path that bypasses the transform: its track is stopped and a
// blocking alarm raised. A slot that decoded more frames than the gate opened likewise.
// None of the anchors checks this (WEB.md).

import type { ReceiveCounters, SendCounters } from "../worker/gate.js";

/** Frames (video) or packets (audio) a transform may lag behind the browser's own counters. */
export const WATCHDOG_SLACK = { video: 20, audio: 60 } as const;

/** What the watchdog found: a sender or a slot whose frames do not go through the gate. */
export interface Bypass {
  side: "send" | "receive";
  /** The sender's name (`microphone`, `camera`) or the slot's name in the gate. */
  id: string;
  /** What the browser counted and what the gate counted. */
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

/** One check of every sender and slot. */
export async function checkTransforms(senders: readonly WatchedSender[], receivers: readonly WatchedReceiver[]): Promise<Bypass[]> {
  const found: Bypass[] = [];
  for (const s of senders) {
    if (s.sender.track === null) {
      continue;
    }
    for (const r of await reports(s.sender.getStats(), "outbound-rtp")) {
      if (s.kind === "video") {
        const encoded = Math.max(numberField(r, "framesEncoded"), numberField(r, "framesSent"));
        if (encoded > s.counters.seen + WATCHDOG_SLACK.video) {
          found.push({ side: "send", id: s.id, browser: encoded, gate: s.counters.seen });
        }
      } else {
        const sent = numberField(r, "packetsSent");
        if (sent > s.counters.sealed + WATCHDOG_SLACK.audio) {
          found.push({ side: "send", id: s.id, browser: sent, gate: s.counters.sealed });
        }
      }
    }
  }
  for (const w of receivers) {
    if (w.kind !== "video") {
      continue;
    }
    for (const r of await reports(w.receiver.getStats(), "inbound-rtp")) {
      const decoded = numberField(r, "framesDecoded");
      if (decoded > w.counters.opened + WATCHDOG_SLACK.video) {
        found.push({ side: "receive", id: w.id, browser: decoded, gate: w.counters.opened });
      }
    }
  }
  return found;
}
