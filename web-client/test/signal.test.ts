// The signalling transport's resume rules (src/signal/connection.ts), on a scripted socket and
// timers the test drives: which closes resume, with which token, and the cluster's 1013.

import { describe, expect, it } from "vitest";

import { MAX_HELLO_RETRIES, Signal, TRY_AGAIN } from "../src/signal/connection.js";
import type { SocketLike } from "../src/signal/connection.js";

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: string[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  send(data: string): void {
    this.sent.push(data);
  }
  closedByClient = false;
  close(): void {
    this.closedByClient = true;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  closeWith(code: number): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  message(m: object): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
}

function harness(): { signal: Signal; sockets: FakeSocket[]; sock: (i: number) => FakeSocket; fire: () => void } {
  const sockets: FakeSocket[] = [];
  const pending: (() => void)[] = [];
  const now = { t: 0 };
  const signal = new Signal(
    "ws://node/ws",
    () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    {
      setInterval: () => 0,
      clearInterval: () => undefined,
      setTimeout: (f) => {
        pending.push(f);
        return 0;
      },
    },
    () => now.t,
  );
  const fire = (): void => {
    for (const f of pending.splice(0)) {
      f();
    }
  };
  const sock = (i: number): FakeSocket => {
    const s = sockets.at(i);
    if (s === undefined) {
      throw new Error(`no socket ${String(i)}`);
    }
    return s;
  };
  return { signal, sockets, sock, fire };
}

const hello = (s: FakeSocket): string => (JSON.parse(s.sent[0] ?? "{}") as { token: string }).token;

const welcome = (token: string) => ({
  type: "welcome",
  participant_id: "0123456789abcdef0123456789abcdef",
  session_id: "s",
  role: "party",
  side: "A",
  resume_token: token,
  resume_grace_secs: 30,
  channel: null,
  resumed: false,
  locked: false,
  ice_servers: [],
});

describe("Signal", () => {
  it("sends the same invite again when a cluster node answers the first hello with 1013, a bounded number of times", () => {
    const { signal, sockets, sock, fire } = harness();
    signal.connect("invite-1");
    for (let i = 0; i < MAX_HELLO_RETRIES; i += 1) {
      const s = sock(-1);
      s.open();
      expect(hello(s)).toBe("invite-1");
      s.closeWith(TRY_AGAIN);
      fire();
    }
    expect(sockets.length).toBe(MAX_HELLO_RETRIES + 1);
    const last = sock(-1);
    last.open();
    last.closeWith(TRY_AGAIN);
    fire();
    expect(sockets.length).toBe(MAX_HELLO_RETRIES + 1);
  });

  it("resumes with the newest resume token after 1012, and never after 4410", () => {
    const { signal, sockets, sock, fire } = harness();
    signal.connect("invite-1");
    const first = sock(0);
    first.open();
    first.message(welcome("resume-1"));
    first.closeWith(1012);
    fire();
    const second = sock(1);
    second.open();
    expect(hello(second)).toBe("resume-1");
    second.message(welcome("resume-2"));
    second.closeWith(4410);
    fire();
    expect(sockets.length).toBe(2);
  });
});
