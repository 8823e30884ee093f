// The relay worker of the script transform path (RTCRtpScriptTransform): it holds no key. Each
// encoded frame goes to the page's gate (src/worker/gate.ts, run by the SDK next to the core
// that holds the keys) and comes back sealed or opened, or does not come back: then it is
// dropped. A frame is never written out unchanged; a transform announces itself (`ready`) so
// the page gives a sender its track only once its frames pass through here.

/** The options of each `RTCRtpScriptTransform` (`s:<sender>` or `r:<mid>`). */
export interface TransformOptions {
  id: string;
  side: "send" | "receive";
}

/** Worker to page. */
export type FromWorker = { t: "ready"; id: string } | { t: "frame"; id: string; seq: number; data: ArrayBuffer };
/** Page to worker: the frame to write, or `null` to drop it. */
export interface ToWorker {
  t: "out";
  id: string;
  seq: number;
  data: ArrayBuffer | null;
}

interface EncodedFrame {
  data: ArrayBuffer;
}

interface Transformer {
  readable: ReadableStream<EncodedFrame>;
  writable: WritableStream<EncodedFrame>;
  options: TransformOptions;
}

interface WorkerScope {
  postMessage(m: FromWorker, transfer?: Transferable[]): void;
  onmessage: ((ev: MessageEvent<ToWorker>) => void) | null;
  onrtctransform: ((ev: { transformer: Transformer }) => void) | null;
}

const scope = globalThis as unknown as WorkerScope;

interface Pending {
  frame: EncodedFrame;
  controller: TransformStreamDefaultController<EncodedFrame>;
}

/** Frames of one transform out to the page at most; beyond it, frames are dropped. */
const MAX_IN_FLIGHT = 256;

/** Frames out to the page, by transform id and sequence number. */
const pending = new Map<string, Map<number, Pending>>();
let nextSeq = 0;

scope.onrtctransform = (ev) => {
  const t = ev.transformer;
  const id = t.options.id;
  const mine = new Map<number, Pending>();
  pending.set(id, mine);
  const stream = new TransformStream<EncodedFrame, EncodedFrame>({
    transform(frame, controller) {
      if (mine.size >= MAX_IN_FLIGHT) {
        return; // the page is not keeping up: drop (never pass) the frame
      }
      const seq = nextSeq++;
      mine.set(seq, { frame, controller });
      const data = frame.data.slice(0);
      scope.postMessage({ t: "frame", id, seq, data }, [data]);
    },
  });
  void t.readable
    .pipeThrough(stream)
    .pipeTo(t.writable)
    .catch(() => undefined);
  scope.postMessage({ t: "ready", id });
};

scope.onmessage = (ev) => {
  const m = ev.data;
  const mine = pending.get(m.id);
  const p = mine?.get(m.seq);
  if (mine === undefined || p === undefined) {
    return;
  }
  mine.delete(m.seq);
  if (m.data === null) {
    return;
  }
  p.frame.data = m.data;
  try {
    p.controller.enqueue(p.frame);
  } catch {
    // The transform's stream is closed.
  }
};
