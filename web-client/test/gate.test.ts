// The frame gate (src/worker/gate.ts) with made-up frames, keys and clock: no key, no output;
// a held frame opens when its key arrives, in order; holding is bounded in time and count; a
// slot re-pointed from A to B opens B's frames with B's keys and A's held ones with A's; the
// counters the watchdog reads add up.
import { describe, expect, it } from "vitest";

import { Gate, HOLD_MAX, HOLD_MS } from "../src/worker/gate.js";
import type { FrameCrypto, Opened } from "../src/worker/gate.js";

/** A toy cipher: a frame is [publisher byte, key byte, payload...]; it opens with that key. */
class ToyCrypto implements FrameCrypto {
  /** publisher -> key byte it holds. */
  keys = new Map<string, number>();
  secured = true;
  myKey = 7;
  expiredCount = 0;
  lostFrom: (string | undefined)[] = [];

  lost(publisher: string | undefined): void {
    this.lostFrom.push(publisher);
  }

  seal(_stream: number, data: Uint8Array): Uint8Array | undefined {
    if (!this.secured) {
      return undefined;
    }
    return Uint8Array.from([this.myKey, ...data].map((x) => x ^ 0x55));
  }

  open(publisher: string, _stream: number, data: Uint8Array): Opened {
    const [who, key] = data;
    const held = this.keys.get(publisher);
    if (held === undefined || held !== key) {
      return { kind: "no_key" }; // no key of this publisher for that generation
    }
    if (who !== publisher.charCodeAt(0)) {
      return { kind: "drop" }; // sealed by someone else: does not authenticate
    }
    return { kind: "ok", data: data.slice(2), stream: 1 };
  }

  expired(): void {
    this.expiredCount += 1;
  }
}

function frame(publisher: string, key: number, ...payload: number[]): Uint8Array {
  return Uint8Array.from([publisher.charCodeAt(0), key, ...payload]);
}

function setup(): { gate: Gate; crypto: ToyCrypto; clock: { now: number }; out: (number[] | undefined)[] } {
  const crypto = new ToyCrypto();
  const clock = { now: 0 };
  const gate = new Gate(crypto, () => clock.now);
  gate.addReceiver("slot0", 1);
  gate.bindMid("slot0", "6");
  gate.addSender("camera", 1);
  return { gate, crypto, clock, out: [] };
}

const keep = (out: (number[] | undefined)[]) => (o: Uint8Array | undefined) => {
  out.push(o === undefined ? undefined : [...o]);
};

describe("the frame gate", () => {
  it("seals only while secured, drops empty frames, and never passes a frame unchanged", () => {
    const { gate, crypto } = setup();
    const sealed = gate.seal("camera", Uint8Array.from([1, 2, 3]));
    expect(sealed).toBeDefined();
    expect([...(sealed ?? [])]).not.toEqual([1, 2, 3]);
    expect(gate.seal("camera", new Uint8Array(0))).toBeUndefined();
    crypto.secured = false;
    expect(gate.seal("camera", Uint8Array.from([1, 2, 3]))).toBeUndefined();
    expect(gate.seal("microphone", Uint8Array.from([1]))).toBeUndefined(); // no such sender
    const c = gate.sendCounters("camera");
    expect(c?.sealed).toBe(1);
    expect(c?.dropped).toBe(2);
    expect(c?.seen).toBe(3);
  });

  it("gives nothing out without a key, and a held frame opens once its key arrives, in order", () => {
    const { gate, crypto, out } = setup();
    gate.setSlots(new Map([["6", "A"]]));
    gate.open("slot0", frame("A", 1, 10), keep(out));
    gate.open("slot0", frame("A", 1, 11), keep(out));
    expect(out).toEqual([]);
    expect(gate.held()).toBe(2);
    crypto.keys.set("A", 1);
    gate.open("slot0", frame("A", 1, 12), keep(out)); // queued behind the held ones
    expect(out).toEqual([[10], [11], [12]]);
    expect(gate.held()).toBe(0);
    const c = gate.receiveCounters("slot0");
    expect(c?.opened).toBe(3);
    expect(c?.held).toBe(3);
  });

  it("drops a frame held longer than HOLD_MS, counted as expired", () => {
    const { gate, crypto, clock, out } = setup();
    gate.setSlots(new Map([["6", "A"]]));
    gate.open("slot0", frame("A", 2, 1), keep(out));
    clock.now = HOLD_MS - 1;
    gate.retry();
    expect(out).toEqual([]);
    clock.now = HOLD_MS;
    gate.retry();
    expect(out).toEqual([undefined]);
    expect(crypto.expiredCount).toBe(1);
    expect(gate.receiveCounters("slot0")?.expired).toBe(1);
    expect(crypto.lostFrom).toEqual(["A"]); // the decoder misses a frame of A's: ask A for a key frame
    crypto.keys.set("A", 2);
    gate.retry();
    expect(out).toEqual([undefined]); // gone for good
  });

  it("holds at most HOLD_MAX frames; the oldest go first", () => {
    const { gate, crypto, out } = setup();
    gate.setSlots(new Map([["6", "A"]]));
    for (let i = 0; i < HOLD_MAX + 10; i++) {
      gate.open("slot0", frame("A", 3, i & 0xff), keep(out));
    }
    expect(gate.held()).toBe(HOLD_MAX);
    expect(out.filter((x) => x === undefined)).toHaveLength(10);
    expect(crypto.expiredCount).toBe(10);
  });

  it("waits for media_slots to name a slot's publisher, and never opens a frame as someone else's", () => {
    const { gate, crypto, out } = setup();
    crypto.keys.set("A", 1);
    crypto.keys.set("B", 1);
    gate.open("slot0", frame("A", 1, 1), keep(out)); // the slot names nobody yet
    expect(out).toEqual([]);
    gate.setSlots(new Map([["6", "A"]]));
    expect(out).toEqual([[1]]);
    // Re-pointed to B: B's frames open with B's keys; an A frame in B's slot does not open.
    gate.setSlots(new Map([["6", "B"]]));
    gate.open("slot0", frame("B", 1, 2), keep(out));
    gate.open("slot0", frame("A", 1, 3), keep(out));
    expect(out).toEqual([[1], [2], undefined]);
    expect(gate.receiveCounters("slot0")?.dropped).toBe(1);
  });

  it("drops, uncounted, frames held under A that do not open when the slot moves on to B, so B's are not held up", () => {
    const { gate, crypto, out } = setup();
    crypto.keys.set("B", 1);
    gate.setSlots(new Map([["6", "A"]]));
    gate.open("slot0", frame("B", 1, 1), keep(out)); // B's frame, still under A's mapping: waits
    expect(out).toEqual([]);
    gate.setSlots(new Map([["6", "B"]]));
    gate.open("slot0", frame("B", 1, 2), keep(out));
    expect(out).toEqual([undefined, [2]]);
    expect(crypto.expiredCount).toBe(0);
    expect(gate.lastPublisher("slot0")).toBe("B");
  });

  it("holds at most HOLD_MAX frames over several slots, and frames of a slot leave in order behind a waiting one", () => {
    const { gate, crypto, out } = setup();
    gate.addReceiver("slot1", 1);
    gate.bindMid("slot1", "7");
    gate.setSlots(new Map([["6", "A"], ["7", "B"]]));
    crypto.keys.set("B", 1);
    gate.open("slot1", frame("B", 9, 1), keep(out)); // B's key 9 not here: waits
    gate.open("slot1", frame("B", 1, 2), keep(out)); // would open, but waits behind it
    expect(out).toEqual([]);
    for (let i = 0; i < HOLD_MAX; i++) {
      gate.open("slot0", frame("A", 3, i & 0xff), keep(out));
    }
    expect(gate.held()).toBe(HOLD_MAX);
    // The two oldest (slot1's) were pushed out first; the second one was never opened out of order.
    expect(out.slice(0, 2)).toEqual([undefined, undefined]);
  });

  it("opens nothing in a slot whose offer gave it no mid yet", () => {
    const crypto = new ToyCrypto();
    crypto.keys.set("A", 1);
    const gate = new Gate(crypto, () => 0);
    gate.addReceiver("slot0", 1);
    gate.setSlots(new Map([["6", "A"]]));
    const out: (number[] | undefined)[] = [];
    gate.open("slot0", frame("A", 1, 5), keep(out));
    expect(out).toEqual([]);
    gate.bindMid("slot0", "6");
    expect(out).toEqual([[5]]);
  });

  it("gives a frame held under A one more try with A's keys when the slot moves on to B", () => {
    const { gate, crypto, out } = setup();
    gate.setSlots(new Map([["6", "A"]]));
    gate.open("slot0", frame("A", 4, 9), keep(out)); // A's key 4 not here yet
    crypto.keys.set("A", 4);
    gate.setSlots(new Map([["6", "B"]]));
    expect(out).toEqual([[9]]);
    expect(gate.lastPublisher("slot0")).toBe("A");
  });

  it("drops frames of an unknown slot and empty ones, and clears what it holds at the end", () => {
    const { gate, crypto, out } = setup();
    gate.open("slot9", frame("A", 1, 1), keep(out));
    gate.open("slot0", new Uint8Array(0), keep(out));
    gate.setSlots(new Map([["6", "A"]]));
    gate.open("slot0", frame("A", 5, 1), keep(out));
    gate.clear();
    expect(out).toEqual([undefined, undefined, undefined]);
    expect(gate.held()).toBe(0);
    expect(crypto.expiredCount).toBe(0); // the end is not a decrypt failure
    expect(gate.receiveCounters("slot0")?.seen).toBe(2);
  });
});
