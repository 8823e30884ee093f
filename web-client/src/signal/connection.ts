// The signalling transport (a platform shell, no Rust twin: crates/client/src/driver.rs does
// the same over tokio-tungstenite). One WebSocket to `/ws`: `hello` with an invite or resume
// token, strict decoding of every server frame, a `ping` keep-alive, and a resume with the
// newest resume token when the connection drops within the grace period the server gave.
// It holds no key and logs nothing: tokens and relay payloads never leave this object except
// on the socket.

import { decodeServer, encodeClient, PROTOCOL_VERSION } from "../proto/message.js";
import type { ClientMessage, ServerMessage } from "../proto/message.js";

/** The part of the WebSocket API this uses (the browser's `WebSocket`, or `ws` in Node). */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Opens a socket to a URL. */
export type SocketFactory = (url: string) => SocketLike;

/** The largest server frame accepted (the protocol's largest relay is well below). */
export const MAX_SERVER_FRAME = 256 * 1024;
/** How often a `ping` goes out while connected. */
export const PING_EVERY_MS = 20_000;

/** What the connection reports. */
export type SignalEvent =
  /** A strictly decoded server message. */
  | { kind: "message"; message: ServerMessage }
  /** A frame that is not a server message (too large, not JSON, unknown type): dropped. */
  | { kind: "invalid" }
  /** Reconnected and sent `hello` with the resume token. */
  | { kind: "resuming"; attempt: number }
  /** Closed for good (after the server closed it, a refused resume, or `close()`). */
  | { kind: "closed"; code: number; reason: string };

/** Close codes after which a resume is pointless (signalling.md "Close codes"). */
const FINAL_CLOSES = new Set([1000, 4000, 4400, 4401, 4403, 4409, 4410, 4429]);
/** Cluster mode: "the session is moving to another node; try again" (signalling.md). */
export const TRY_AGAIN = 1013;
/** How many times a first `hello` answered with 1013 is sent again. */
export const MAX_HELLO_RETRIES = 8;

/** Timers are the shell's: injected so tests drive them. */
export interface Timers {
  setInterval(f: () => void, ms: number): unknown;
  clearInterval(h: unknown): void;
  setTimeout(f: () => void, ms: number): unknown;
}

export class Signal {
  private socket: SocketLike | undefined;
  private readonly queue: SignalEvent[] = [];
  private waiter: ((e: SignalEvent) => void) | undefined;
  private resumeToken: string | undefined;
  /** The invite of the first `hello`, sent again if a cluster node says "try again". */
  private inviteToken: string | undefined;
  private graceMs = 0;
  private droppedAt: number | undefined;
  private attempts = 0;
  private pinger: unknown;
  private closedForGood = false;
  private readonly outbox: string[] = [];

  constructor(
    private readonly url: string,
    private readonly open: SocketFactory,
    private readonly timers: Timers,
    private readonly clock: () => number,
  ) {}

  /** Connects and sends `hello` with an invite token. */
  connect(token: string): void {
    this.inviteToken = token;
    this.dial(token);
  }

  /** Sends a message now, or as soon as the socket is open. */
  send(m: ClientMessage): void {
    const text = encodeClient(m);
    const s = this.socket;
    if (s?.readyState === 1) {
      s.send(text);
    } else {
      this.outbox.push(text);
    }
  }

  /** The next event (messages in order). */
  next(): Promise<SignalEvent> {
    const e = this.queue.shift();
    if (e !== undefined) {
      return Promise.resolve(e);
    }
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Closes for good (no resume). */
  close(code = 1000): void {
    this.closedForGood = true;
    this.stopPinging();
    this.socket?.close(code);
  }

  private emit(e: SignalEvent): void {
    const w = this.waiter;
    if (w !== undefined) {
      this.waiter = undefined;
      w(e);
    } else {
      this.queue.push(e);
    }
  }

  private dial(token: string): void {
    const s = this.open(this.url);
    this.socket = s;
    s.onopen = () => {
      s.send(encodeClient({ type: "hello", version: PROTOCOL_VERSION, token }));
      for (const t of this.outbox.splice(0)) {
        s.send(t);
      }
      this.startPinging();
    };
    s.onmessage = (ev) => {
      this.onFrame(ev.data);
    };
    s.onerror = () => {
      // The close event follows and decides.
    };
    s.onclose = (ev) => {
      this.onClose(s, ev.code, ev.reason);
    };
  }

  private onFrame(data: unknown): void {
    if (typeof data !== "string" || data.length > MAX_SERVER_FRAME) {
      this.emit({ kind: "invalid" });
      return;
    }
    let message: ServerMessage;
    try {
      message = decodeServer(data);
    } catch {
      this.emit({ kind: "invalid" });
      return;
    }
    if (message.type === "welcome") {
      // Every welcome issues a new resume token; the previous one stops working.
      this.resumeToken = message.resume_token;
      this.graceMs = Number(message.resume_grace_secs) * 1000;
      this.droppedAt = undefined;
      this.attempts = 0;
    }
    if (message.type === "session_ended" || message.type === "kicked") {
      this.closedForGood = true;
    }
    this.emit({ kind: "message", message });
  }

  private onClose(s: SocketLike, code: number, reason: string): void {
    if (s !== this.socket) {
      return;
    }
    this.stopPinging();
    const now = this.clock();
    this.droppedAt ??= now;
    // Cluster mode: the first hello reached a node while the session was moving. Before any
    // welcome there is no resume token: the same invite goes again (it was not spent).
    const invite = this.inviteToken;
    if (code === TRY_AGAIN && this.resumeToken === undefined && invite !== undefined && !this.closedForGood && this.attempts < MAX_HELLO_RETRIES) {
      this.attempts += 1;
      const wait = Math.min(4000, 250 * 2 ** (this.attempts - 1));
      this.timers.setTimeout(() => {
        if (!this.closedForGood) {
          this.dial(invite);
        }
      }, wait);
      return;
    }
    const token = this.resumeToken;
    const inGrace = now - this.droppedAt < this.graceMs;
    if (this.closedForGood || FINAL_CLOSES.has(code) || token === undefined || !inGrace) {
      this.closedForGood = true;
      this.emit({ kind: "closed", code, reason });
      return;
    }
    // Back off a little (250 ms, 500 ms, ... at most 4 s) and resume with the newest token.
    this.attempts += 1;
    const wait = Math.min(4000, 250 * 2 ** (this.attempts - 1));
    this.timers.setTimeout(() => {
      if (!this.closedForGood) {
        this.emit({ kind: "resuming", attempt: this.attempts });
        this.dial(token);
      }
    }, wait);
  }

  private startPinging(): void {
    this.stopPinging();
    this.pinger = this.timers.setInterval(() => {
      if (this.socket?.readyState === 1) {
        this.socket.send(encodeClient({ type: "ping" }));
      }
    }, PING_EVERY_MS);
  }

  private stopPinging(): void {
    if (this.pinger !== undefined) {
      this.timers.clearInterval(this.pinger);
      this.pinger = undefined;
    }
  }
}
