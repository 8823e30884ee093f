// Encoded transforms on both paths (WEB.md "Media path", rules 2 to 4). Every frame goes
// through the gate (src/worker/gate.ts): sealed on the way out, opened (or held, or dropped)
// on the way in. Nothing here passes a frame through unchanged.
//
// - `insertable`: Chromium's `encodedInsertableStreams: true` with `createEncodedStreams()`,
//   run on the page. Fail closed by construction: Chromium drops every frame of a sender or
//   receiver until its streams are taken.
// - `script`: `RTCRtpScriptTransform` (Firefox; Chromium where it has it), run in the relay
//   worker (src/worker/relay.ts), which hands each frame to the page's gate and back. The
//   worker says when a transform is in place; a sender gets its track only after that (rule
//   3), and the watchdog (watchdog.ts) catches a sender whose frames go out without it.

import type { Gate } from "../worker/gate.js";
import type { FromWorker, ToWorker, TransformOptions } from "../worker/relay.js";

/** Which API carries the transforms. */
export type TransformPath = "insertable" | "script";

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

type ScriptTransformCtor = new (worker: Worker, options: TransformOptions) => unknown;

function scriptTransformCtor(): ScriptTransformCtor | undefined {
  return (globalThis as { RTCRtpScriptTransform?: ScriptTransformCtor }).RTCRtpScriptTransform;
}

/** The transform paths this browser offers, preferred first (WEB.md rule 2). */
export function transformPaths(): TransformPath[] {
  const out: TransformPath[] = [];
  const proto = (globalThis as { RTCRtpSender?: { prototype: object } }).RTCRtpSender?.prototype;
  if (proto !== undefined && "createEncodedStreams" in proto) {
    out.push("insertable");
  }
  if (scriptTransformCtor() !== undefined) {
    out.push("script");
  }
  return out;
}

function piped(streams: EncodedStreams, step: (frame: EncodedFrame, pass: (out: Uint8Array | undefined) => void) => void): void {
  const t = new TransformStream<EncodedFrame, EncodedFrame>({
    transform(frame, controller) {
      step(frame, (out) => {
        if (out === undefined) {
          return;
        }
        frame.data = out.slice().buffer;
        try {
          controller.enqueue(frame);
        } catch {
          // The stream closed while the frame was held: nothing to do.
        }
      });
    },
  });
  void streams.readable
    .pipeThrough(t)
    .pipeTo(streams.writable)
    .catch(() => undefined);
}

/** The legacy path: takes the sender's encoded streams and seals every frame; false if absent. */
export function insertableSender(sender: RTCRtpSender, id: string, gate: Gate): boolean {
  const s = sender as unknown as Insertable;
  if (s.createEncodedStreams === undefined) {
    return false;
  }
  piped(s.createEncodedStreams(), (frame, pass) => {
    pass(gate.seal(id, new Uint8Array(frame.data)));
  });
  return true;
}

/** The legacy path: takes the receiver's encoded streams and opens every frame; false if absent. */
export function insertableReceiver(receiver: RTCRtpReceiver, mid: string, gate: Gate): boolean {
  const r = receiver as unknown as Insertable;
  if (r.createEncodedStreams === undefined) {
    return false;
  }
  piped(r.createEncodedStreams(), (frame, pass) => {
    gate.open(mid, new Uint8Array(frame.data), pass);
  });
  return true;
}

/** The script path: one relay worker for every sender and receiver of the peer connection. */
export class ScriptTransforms {
  readonly #worker: Worker;
  readonly #gate: Gate;
  readonly #ready = new Map<string, () => void>();

  constructor(gate: Gate) {
    this.#gate = gate;
    this.#worker = new Worker(new URL("../worker/relay.ts", import.meta.url), { type: "module", name: "confer-frames" });
    this.#worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      this.#onMessage(ev.data);
    };
  }

  /** Puts a sealing transform on `sender`; resolves when the worker has it in place. */
  sender(sender: RTCRtpSender, id: string): Promise<void> {
    return this.#attach(sender, { id: `s:${id}`, side: "send" });
  }

  /** Puts an opening transform on `receiver` (slot `mid`); resolves when it is in place. */
  receiver(receiver: RTCRtpReceiver, mid: string): Promise<void> {
    return this.#attach(receiver, { id: `r:${mid}`, side: "receive" });
  }

  close(): void {
    this.#worker.terminate();
  }

  #attach(target: { transform: unknown }, options: TransformOptions): Promise<void> {
    const Ctor = scriptTransformCtor();
    if (Ctor === undefined) {
      return Promise.reject(new Error("this browser has no RTCRtpScriptTransform"));
    }
    const ready = new Promise<void>((resolve) => {
      this.#ready.set(options.id, resolve);
    });
    target.transform = new Ctor(this.#worker, options);
    return ready;
  }

  #onMessage(m: FromWorker): void {
    if (m.t === "ready") {
      this.#ready.get(m.id)?.();
      this.#ready.delete(m.id);
      return;
    }
    const reply = (out: Uint8Array | undefined): void => {
      const data = out?.slice().buffer ?? null;
      const msg: ToWorker = { t: "out", id: m.id, seq: m.seq, data };
      this.#worker.postMessage(msg, data === null ? [] : [data]);
    };
    const frame = new Uint8Array(m.data);
    if (m.id.startsWith("s:")) {
      reply(this.#gate.seal(m.id.slice(2), frame));
    } else {
      this.#gate.open(m.id.slice(2), frame, reply);
    }
  }
}
