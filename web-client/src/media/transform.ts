// Encoded transforms on Chromium's legacy API (WEB.md "Media path", rules 2 and 4): with
// `encodedInsertableStreams: true`, `createEncodedStreams()` on each sender and receiver, and
// every frame goes through `seal` or `open`. Fail closed: a frame that does not seal or open is
// dropped (never passed through), and so is a zero-length frame (Opus DTX). The functions that
// seal and open are injected (the SDK's Core, or a worker later), so this file holds no key.
//
// Not wired into the page yet (see peer.ts).

/** Counters the watchdog and the tests read. */
export class TransformStats {
  sealed = 0;
  opened = 0;
  /** Frames dropped on the way out: no key yet, or empty. Never sent in clear. */
  dropSend = 0;
  /** Frames dropped on the way in: no key, no publisher for the slot, or did not open. */
  dropReceive = 0;
  /** Always 0: no code path passes a frame through unchanged. */
  passedInClear = 0;
}

/** Seals a frame's payload, or `undefined` (then it is dropped). */
export type SealFn = (data: Uint8Array) => Uint8Array | undefined;
/** Opens a frame's payload, or `undefined` (then it is dropped). */
export type OpenFn = (data: Uint8Array) => Uint8Array | undefined;

interface EncodedFrame {
  data: ArrayBuffer;
}

interface EncodedStreams {
  readable: ReadableStream<EncodedFrame>;
  writable: WritableStream<EncodedFrame>;
}

interface Insertable {
  createEncodedStreams?: () => EncodedStreams;
}

function pipe(
  streams: EncodedStreams,
  f: (data: Uint8Array) => Uint8Array | undefined,
  ok: () => void,
  dropped: () => void,
): void {
  const t = new TransformStream<EncodedFrame, EncodedFrame>({
    transform(frame, controller) {
      const data = new Uint8Array(frame.data);
      if (data.length === 0) {
        dropped();
        return;
      }
      const out = f(data);
      if (out === undefined || out.length === 0) {
        dropped();
        return;
      }
      frame.data = out.slice().buffer;
      ok();
      controller.enqueue(frame);
    },
  });
  void streams.readable.pipeThrough(t).pipeTo(streams.writable);
}

/** Attaches the sealing transform to a sender; false if the legacy API is absent. */
export function attachSender(sender: RTCRtpSender, seal: SealFn, stats: TransformStats): boolean {
  const s = sender as unknown as Insertable;
  if (s.createEncodedStreams === undefined) {
    return false;
  }
  pipe(
    s.createEncodedStreams(),
    seal,
    () => {
      stats.sealed += 1;
    },
    () => {
      stats.dropSend += 1;
    },
  );
  return true;
}

/** Attaches the opening transform to a receiver; false if the legacy API is absent. */
export function attachReceiver(receiver: RTCRtpReceiver, open: OpenFn, stats: TransformStats): boolean {
  const r = receiver as unknown as Insertable;
  if (r.createEncodedStreams === undefined) {
    return false;
  }
  pipe(
    r.createEncodedStreams(),
    open,
    () => {
      stats.opened += 1;
    },
    () => {
      stats.dropReceive += 1;
    },
  );
  return true;
}
