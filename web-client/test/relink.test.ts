// A new link to the SFU (src/media/enrol.ts, used by link.ts, after a resume, in cluster mode on another
// node) re-makes the gate's entries under the same names: frames held for the old link's slots
// are dropped (their transforms are gone), not left counted against the hold bound; counters
// start at zero; the new slots wait for the new SFU's slot map, then open with the same keys
// (the keys are the core's, unchanged by a new peer connection).
import { describe, expect, it } from "vitest";

import { SENDERS, enrol } from "../src/media/enrol.js";
import { Gate, HOLD_MAX } from "../src/worker/gate.js";
import type { FrameCrypto, Opened } from "../src/worker/gate.js";

/** A toy cipher: a frame is [publisher byte, key byte, payload...]; it opens with that key. */
class ToyCrypto implements FrameCrypto {
  keys = new Map<string, number>();
  expiredCount = 0;

  seal(_stream: number, data: Uint8Array): Uint8Array | undefined {
    return Uint8Array.from([9, ...data]);
  }

  open(publisher: string, stream: number, data: Uint8Array): Opened {
    const [who, key] = data;
    if (this.keys.get(publisher) !== key) {
      return { kind: "no_key" };
    }
    return who === publisher.charCodeAt(0) ? { kind: "ok", data: data.slice(2), stream } : { kind: "drop" };
  }

  expired(): void {
    this.expiredCount += 1;
  }
}

function frame(publisher: string, key: number, ...payload: number[]): Uint8Array {
  return Uint8Array.from([publisher.charCodeAt(0), key, ...payload]);
}

const KINDS = ["audio", "video", "video"] as const;

function bind(gate: Gate, ids: string[]): void {
  ids.forEach((id, i) => {
    gate.bindMid(id, String(i + 3));
  });
}

describe("the gate across a new link", () => {
  it("names the senders and slots as every link does, with counters from zero", () => {
    const gate = new Gate(new ToyCrypto(), () => 0);
    const first = enrol(gate, KINDS);
    expect(first).toEqual(["slot0", "slot1", "slot2"]);
    expect(gate.seal("camera", Uint8Array.from([1]))).toBeDefined();
    expect(gate.sendCounters("camera")?.sealed).toBe(1);
    const second = enrol(gate, KINDS);
    expect(second).toEqual(first);
    for (const s of SENDERS) {
      expect(gate.sendCounters(s.id)?.seen, s.id).toBe(0);
    }
    expect(gate.seal("camera", Uint8Array.from([1]))).toBeDefined(); // the same name seals on
  });

  it("drops the old link's held frames, keeps the hold bound exact, and opens the new slots once the new SFU names their publishers", () => {
    const crypto = new ToyCrypto();
    const gate = new Gate(crypto, () => 0);
    bind(gate, enrol(gate, KINDS));
    gate.setSlots(new Map([["4", "A"]]));
    const old: (number[] | undefined)[] = [];
    const keep = (o: Uint8Array | undefined): void => {
      old.push(o === undefined ? undefined : [...o]);
    };
    // Frames waiting for A's key, and frames in a slot that names nobody yet.
    for (let i = 0; i < HOLD_MAX / 2; i++) {
      gate.open("slot1", frame("A", 1, i & 0xff), keep);
      gate.open("slot2", frame("B", 1, i & 0xff), keep);
    }
    expect(gate.held()).toBe(HOLD_MAX);

    // The session moved: a new link, its slots named afresh (the slot map is left as it was:
    // the names alone must let the old frames go).
    const ids = enrol(gate, KINDS);
    expect(gate.held()).toBe(0);
    expect(old.length).toBe(HOLD_MAX);
    expect(old.every((o) => o === undefined)).toBe(true); // dropped, never passed on
    expect(crypto.expiredCount).toBe(0); // not decrypt failures: nothing failed to decrypt
    expect(gate.receiveCounters("slot1")?.seen).toBe(0);

    // The new SFU has not said yet who is where.
    gate.setSlots(new Map());
    bind(gate, ids);
    const out: (number[] | undefined)[] = [];
    crypto.keys.set("B", 2);
    gate.open("slot2", frame("B", 2, 7), (o) => out.push(o === undefined ? undefined : [...o]));
    expect(out).toEqual([]); // no publisher named for that slot yet: held
    expect(gate.held()).toBe(1);
    gate.setSlots(new Map([["5", "B"]]));
    expect(out).toEqual([[7]]);
    expect(gate.held()).toBe(0);
    expect(gate.lastPublisher("slot2")).toBe("B");
    // The bound still holds: HOLD_MAX more frames without a key leave HOLD_MAX held, not more.
    for (let i = 0; i < HOLD_MAX + 5; i++) {
      gate.open("slot2", frame("B", 3, i & 0xff), () => undefined);
    }
    expect(gate.held()).toBe(HOLD_MAX);
  });
});
