// Twin of crates/client/src/core/timers.rs: the timer tick: key expiry, ratchet, alarms that
// wait.

import type { Core } from "./client.js";
import { durationSince } from "./client.js";
import { bytesEqual } from "./enc.js";
import { parseOpenerKey, zeroizeOpener } from "./keys.js";
import { isAway } from "./roster.js";
import { toHex } from "./enc.js";

/**
 * Timers: expire old keys, raise unsigned-member and stale-key alarms. `now` in milliseconds
 * (client.ts); queued behind the calls before it.
 */
function tick(this: Core, now: number): Promise<void> {
  return this.serial(() => this.tickNow(now));
}

// Rust's `tick`, as `handle` calls it from inside a queued call.
async function tickNow(this: Core, now: number): Promise<void> {
  this.now = now;
  await this.ratchetSealers(now);
  const due = this.keys.expiries.filter((e) => e.at <= now);
  this.keys.expiries = this.keys.expiries.filter((e) => e.at > now);
  for (const { cid, sender, generation } of due) {
    if (generation !== undefined) {
      for (const [k, o] of this.keys.openers) {
        const [c, s] = parseOpenerKey(k);
        if (bytesEqual(c, cid) && bytesEqual(s, sender)) {
          o.removeGeneration(generation);
        }
      }
    } else {
      // Gone from the channel: only if still absent from its roster.
      const head = this.chains.get(toHex(cid))?.chain.head();
      const m = head?.roster.member(sender);
      const absent = head === undefined || m === undefined || isAway(m);
      if (absent) {
        for (const [k, o] of [...this.keys.openers.entries()]) {
          const [c, s] = parseOpenerKey(k);
          if (bytesEqual(c, cid) && bytesEqual(s, sender)) {
            zeroizeOpener(o);
            this.keys.openers.delete(k);
          }
        }
      }
    }
  }
  const keep = this.cfg.staleKeyAfterMs;
  this.keys.earlyKeys = this.keys.earlyKeys.filter((e) => {
    const kept = durationSince(now, e.at) < keep;
    if (!kept) {
      e.msg.baseKey.zeroize();
    }
    return kept;
  });
  const dueChannels = this.keys.channelExpiries.filter((e) => e.at <= now);
  this.keys.channelExpiries = this.keys.channelExpiries.filter((e) => e.at > now);
  for (const { cid, ch } of dueChannels) {
    if (this.myChannel?.id !== ch) {
      for (const [k, o] of [...this.keys.openers.entries()]) {
        if (bytesEqual(parseOpenerKey(k)[0], cid)) {
          zeroizeOpener(o);
          this.keys.openers.delete(k);
        }
      }
      this.dropSealers(cid);
    }
  }
  this.retryEarlyChats(now);
  if (this.isMediator()) {
    this.checkRelisted(now);
  }
  this.checkUnsigned(now);
  this.checkStale(now);
}

/** The methods of timers.rs's `impl Core`. */
export function timersMethods() {
  return { tick, tickNow };
}
export type TimersMethods = ReturnType<typeof timersMethods>;
