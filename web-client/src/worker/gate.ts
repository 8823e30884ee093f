// The frame gate (WEB.md "Media path", rules 4 and 5): every encoded frame of every sender and
// receive slot goes through here, on either transform path (Chromium's legacy encoded streams
// on the page, or RTCRtpScriptTransform through the relay worker). No passthrough state
// exists: a frame leaves only sealed (sending) or opened (receiving); anything else is
// dropped and counted. A received frame whose slot publisher or key is not known yet is held,
// at most `HOLD_MS` and `HOLD_MAX` frames in all, then dropped and counted.
//
// The gate holds no key: sealing and opening are the SDK's (its `Core`). It is plain ES2022
// so the unit tests drive it with made-up frames and a made-up clock.

/** How long a received frame may wait for its slot's publisher or its key (ms). */
export const HOLD_MS = 2_000;
/** Frames held at most, over all slots; the oldest goes first. */
export const HOLD_MAX = 256;

/** What opening a frame came to. */
export type Opened =
  | { kind: "ok"; data: Uint8Array; stream: number }
  /** No key of that publisher for the generation the frame names (yet): hold it. */
  | { kind: "no_key" }
  /** It will never open (malformed, forged, replayed, stale, after the end): drop it. */
  | { kind: "drop" };

/** Sealing and opening, by the SDK's core. */
export interface FrameCrypto {
  /** My frame of `stream`, sealed under my current key, or `undefined` (not secured: drop). */
  seal(stream: number, data: Uint8Array): Uint8Array | undefined;
  /** A frame from `publisher` on `stream`. */
  open(publisher: string, stream: number, data: Uint8Array): Opened;
  /** A held frame was dropped unopened (counted as a decrypt failure by the core). */
  expired(): void;
  /**
   * A frame of `publisher`'s on `stream` was dropped unopened: the decoder now misses it, and
   * a video decoder needs a key frame to go on (the SDK asks the publisher for one).
   */
  lost?(publisher: string | undefined, stream: number): void;
}

/** Per-sender counters (the watchdog compares them with the sender's `getStats`). */
export class SendCounters {
  sealed = 0;
  /** Not secured (no key), or empty (Opus DTX): never sent in clear. */
  dropped = 0;
  get seen(): number {
    return this.sealed + this.dropped;
  }
}

/** Per-slot counters. */
export class ReceiveCounters {
  /** Every frame that reached the gate in this slot (the watchdog compares it with the browser's count). */
  seen = 0;
  opened = 0;
  /** Frames that waited for a publisher or a key (opened later or not). */
  held = 0;
  /** Did not open, or arrived empty. */
  dropped = 0;
  /** Held too long (or pushed out by newer ones), never opened. */
  expired = 0;
}

/** Called once per frame with the frame to pass on, or `undefined`: drop it. */
export type Done = (out: Uint8Array | undefined) => void;

interface Held {
  since: number;
  /** The slot's publisher when the frame arrived; `undefined` if the slot named nobody yet. */
  publisher: string | undefined;
  data: Uint8Array;
  done: Done;
}

interface Receiver {
  /** Whose key opened the last frame here (the tile is labelled with that, not the slot map). */
  lastPublisher: string | undefined;
  /** When a frame last opened here (the gate's clock), if ever. */
  lastOpenedAt: number | undefined;
  /** The stream of the last frame that opened here (a video slot carries a camera or a screen). */
  lastStream: number | undefined;
  /** The slot's mid, once the offer gave it one. */
  mid: string | undefined;
  stream: number;
  counters: ReceiveCounters;
  queue: Held[];
}

export class Gate {
  readonly #crypto: FrameCrypto;
  readonly #clock: () => number;
  readonly #senders = new Map<string, { stream: number; counters: SendCounters }>();
  readonly #receivers = new Map<string, Receiver>();
  /** mid -> publisher, as the latest `media_slots` says. */
  readonly #slots = new Map<string, string>();
  #held = 0;

  constructor(crypto: FrameCrypto, clock: () => number) {
    this.#crypto = crypto;
    this.#clock = clock;
  }

  /** A sender of my `stream` (0 microphone, 1 camera, 2 screen), named `id`. */
  addSender(id: string, stream: number): SendCounters {
    const counters = new SendCounters();
    this.#senders.set(id, { stream, counters });
    return counters;
  }

  /**
   * A receive slot named `id` whose frames are of `stream`. Its transform goes on before the
   * offer, when the slot has no mid yet: `bindMid` says it later.
   */
  addReceiver(id: string, stream: number): ReceiveCounters {
    const counters = new ReceiveCounters();
    this.#receivers.set(id, { lastPublisher: undefined, lastOpenedAt: undefined, lastStream: undefined, mid: undefined, stream, counters, queue: [] });
    return counters;
  }

  /** Slot `id` is the m-line `mid` (the name `media_slots` uses). */
  bindMid(id: string, mid: string): void {
    const r = this.#receivers.get(id);
    if (r !== undefined) {
      r.mid = mid;
    }
    this.retry();
  }

  sendCounters(id: string): SendCounters | undefined {
    return this.#senders.get(id)?.counters;
  }

  receiveCounters(id: string): ReceiveCounters | undefined {
    return this.#receivers.get(id)?.counters;
  }

  /** Whose key opened the last frame in slot `id`. */
  lastPublisher(id: string): string | undefined {
    return this.#receivers.get(id)?.lastPublisher;
  }

  /** When a frame last opened in slot `id` (the gate's clock), if ever. */
  lastOpenedAt(id: string): number | undefined {
    return this.#receivers.get(id)?.lastOpenedAt;
  }

  /** The stream of the last frame that opened in slot `id`. */
  lastStream(id: string): number | undefined {
    return this.#receivers.get(id)?.lastStream;
  }

  /** Frames held now, over all slots. */
  held(): number {
    return this.#held;
  }

  /** The slot map of `media_slots`: held frames of a slot that now names its publisher are tried. */
  setSlots(slots: ReadonlyMap<string, string>): void {
    const before = new Map(this.#slots);
    this.#slots.clear();
    for (const [mid, p] of slots) {
      this.#slots.set(mid, p);
    }
    // A slot that changed hands: frames held under its old publisher get one more try, then
    // go (RTP switches on its own schedule, so some may be the new publisher's, which would
    // never open under the old one's keys and would hold up the slot for HOLD_MS). Dropped,
    // not counted as decrypt failures: nothing failed to decrypt.
    for (const r of this.#receivers.values()) {
      if (r.mid === undefined || before.get(r.mid) === this.#slots.get(r.mid)) {
        continue;
      }
      const now = this.#slots.get(r.mid);
      const keep: Held[] = [];
      for (const h of r.queue) {
        if (h.publisher === undefined || h.publisher === now) {
          keep.push(h);
        } else if (!this.#try(r, h)) {
          r.counters.dropped += 1;
          this.#held -= 1;
          this.#crypto.lost?.(now, r.stream);
          h.done(undefined);
        } else {
          this.#held -= 1;
        }
      }
      r.queue = keep;
    }
    this.retry();
  }

  /** The publisher in slot `mid`, if known. */
  publisher(mid: string): string | undefined {
    return this.#slots.get(mid);
  }

  /** My frame on sender `id`: sealed, or `undefined` (dropped, counted). Unknown senders drop. */
  seal(id: string, data: Uint8Array): Uint8Array | undefined {
    const s = this.#senders.get(id);
    if (s === undefined) {
      return undefined;
    }
    const out = data.length === 0 ? undefined : this.#crypto.seal(s.stream, data);
    if (out === undefined || out.length === 0) {
      s.counters.dropped += 1;
      return undefined;
    }
    s.counters.sealed += 1;
    return out;
  }

  /**
   * A frame that arrived in slot `id`: `done` is called with the opened frame, or with
   * `undefined` (drop), now or once its publisher and key are known (within `HOLD_MS`).
   * Frames of one slot complete in arrival order.
   */
  open(id: string, data: Uint8Array, done: Done): void {
    const r = this.#receivers.get(id);
    if (r !== undefined) {
      r.counters.seen += 1;
    }
    if (r === undefined || data.length === 0) {
      if (r !== undefined) {
        r.counters.dropped += 1;
      }
      done(undefined);
      return;
    }
    const held: Held = { since: this.#clock(), publisher: this.#publisherOf(r), data, done };
    if (r.queue.length > 0) {
      this.#hold(r, held);
      this.#drain(r);
      return;
    }
    if (!this.#try(r, held)) {
      this.#hold(r, held);
    }
  }

  /** Tries every held frame again (after keys or slots arrived) and drops the expired ones. */
  retry(): void {
    for (const r of this.#receivers.values()) {
      this.#drain(r);
    }
  }

  /** Drops every held frame (the session ended, or the page closes): not decrypt failures. */
  clear(): void {
    for (const r of this.#receivers.values()) {
      for (const h of r.queue.splice(0)) {
        this.#held -= 1;
        r.counters.dropped += 1;
        h.done(undefined);
      }
    }
  }

  #hold(r: Receiver, h: Held): void {
    if (this.#held === HOLD_MAX) {
      this.#dropOldest();
    }
    r.queue.push(h);
    r.counters.held += 1;
    this.#held += 1;
  }

  #dropOldest(): void {
    let oldest: Receiver | undefined;
    for (const r of this.#receivers.values()) {
      const first = r.queue[0];
      if (first !== undefined && (oldest === undefined || first.since < (oldest.queue[0]?.since ?? Infinity))) {
        oldest = r;
      }
    }
    const h = oldest?.queue.shift();
    if (oldest !== undefined && h !== undefined) {
      this.#held -= 1;
      this.#expire(oldest, h);
    }
  }

  #expire(r: Receiver, h: Held): void {
    r.counters.expired += 1;
    this.#crypto.expired();
    this.#crypto.lost?.(h.publisher ?? this.#publisherOf(r), r.stream);
    h.done(undefined);
  }

  // Completes the head of the queue while it opens or is dropped; stops at one still waiting.
  #drain(r: Receiver): void {
    const now = this.#clock();
    for (let h = r.queue[0]; h !== undefined; h = r.queue[0]) {
      if (this.#try(r, h)) {
        r.queue.shift();
        this.#held -= 1;
        continue;
      }
      if (now - h.since >= HOLD_MS) {
        r.queue.shift();
        this.#held -= 1;
        this.#expire(r, h);
        continue;
      }
      return;
    }
  }

  // True when the frame is done (opened or dropped), false when it must wait.
  #try(r: Receiver, h: Held): boolean {
    // A frame that came while its slot named nobody belongs to the first publisher named
    // after it, within HOLD_MS; one that came under a publisher stays that publisher's.
    h.publisher ??= this.#publisherOf(r);
    if (h.publisher === undefined) {
      return false;
    }
    const res = this.#crypto.open(h.publisher, r.stream, h.data);
    switch (res.kind) {
      case "ok":
        r.counters.opened += 1;
        r.lastStream = res.stream;
        r.lastOpenedAt = this.#clock();
        r.lastPublisher = h.publisher;
        h.done(res.data);
        return true;
      case "drop":
        r.counters.dropped += 1;
        h.done(undefined);
        return true;
      case "no_key":
        return false;
    }
  }

  #publisherOf(r: Receiver): string | undefined {
    return r.mid === undefined ? undefined : this.#slots.get(r.mid);
  }
}
