// A real `confer serve --dev` for the browser tests: on 127.0.0.1, every port chosen by the
// kernel (port 0, read back from the banner: no race for "free" ports), a fresh data directory,
// the built page (dist/) as its web root; stopped, and its data removed, by `stop()`.
// Tokens are minted with `confer token create` against the same data directory, as an operator
// would (docs/operations.md, Tokens).

import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

import { CONFER_BIN, DIST } from "./paths.js";

const run = promisify(execFile);

/** How long the server may take to print its banner. */
const START_TIMEOUT_MS = 15_000;
/** How long a drain may take after SIGTERM before the second SIGTERM (exit now), then SIGKILL. */
const STOP_GRACE_MS = 3_000;

export type Role = "mediator" | "co_mediator" | "party" | "counsel" | "observer";

export interface ConferServer {
  /** The page's origin with a trailing slash, e.g. `http://127.0.0.1:41234/`. */
  readonly url: string;
  /** `ws://127.0.0.1:PORT/ws`. */
  readonly wsUrl: string;
  /** The SFU's UDP address, `127.0.0.1:PORT`. */
  readonly mediaAddr: string | undefined;
  readonly dataDir: string;
  /** The demo session `--dev` created, and its mediator's single-use invite token. */
  readonly demoSession: string;
  readonly mediatorToken: string;
  /**
   * The one-time enrolment link `--dev` prints for the first mediator account (`mediator`),
   * `http://127.0.0.1:PORT/console#enrol=…`, when it printed one (a web root to open it in).
   */
  readonly enrolmentLink: string | undefined;
  /** Mints a single-use invite token with `confer token create`. */
  token(session: string, role: Role, side?: string): Promise<string>;
  /** What the server logged on stderr so far (JSON lines). */
  logs(): string;
  /** SIGTERM (then again, then SIGKILL if it lingers), and removes the data directory. */
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** The web root (default: dist/). */
  readonly webRoot?: string;
  /** Extra `CONFER_*` settings. */
  readonly env?: Readonly<Record<string, string>>;
}

// Every server started and not yet stopped, killed if the test process exits early.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

export async function startServer(options: ServerOptions = {}): Promise<ConferServer> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "confer-e2e-server-"));
  const child = spawn(
    CONFER_BIN,
    [
      "serve",
      "--dev",
      "--listen",
      "127.0.0.1:0",
      "--metrics-listen",
      "127.0.0.1:0",
      "--media-listen",
      "127.0.0.1:0",
      "--data-dir",
      dataDir,
    ],
    {
      cwd: dataDir,
      env: {
        ...process.env,
        CONFER_WEB_ROOT: options.webRoot ?? DIST,
        CONFER_LOG_LEVEL: "info",
        ...options.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  running.add(child);
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    // Bounded: a test that runs long must not grow this without end.
    stderr = (stderr + chunk).slice(-1_000_000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => {
    running.delete(child);
    resolve(code);
  }));

  let banner: Banner;
  try {
    banner = await readBanner(child, exited);
  } catch (e) {
    child.kill("SIGKILL");
    await exited;
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`confer serve did not start: ${String(e)}\n${stderr}`, { cause: e });
  }

  let stopped: Promise<void> | undefined;
  return {
    url: `http://${banner.addr}/`,
    wsUrl: `ws://${banner.addr}/ws`,
    mediaAddr: banner.media,
    dataDir,
    demoSession: banner.session,
    mediatorToken: banner.token,
    enrolmentLink: banner.enrolment,
    async token(session, role, side) {
      const args = ["token", "create", "--dev", "--data-dir", dataDir, "--session", session, "--role", role];
      if (side !== undefined) {
        args.push("--side", side);
      }
      const { stdout } = await run(CONFER_BIN, args, { cwd: dataDir });
      return stdout.trim();
    },
    logs: () => stderr,
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          if (!(await settles(exited, STOP_GRACE_MS))) {
            child.kill("SIGTERM"); // the second signal exits at once, sessions or not
            if (!(await settles(exited, STOP_GRACE_MS))) {
              child.kill("SIGKILL");
            }
          }
        }
        await exited;
        await rm(dataDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

interface Banner {
  addr: string;
  media: string | undefined;
  session: string;
  token: string;
  enrolment: string | undefined;
}

/** Reads the start-up banner (crates/server/src/main.rs) up to "Press Ctrl-C". */
async function readBanner(child: ChildProcess, exited: Promise<number | null>): Promise<Banner> {
  const stdout = child.stdout;
  if (stdout === null) {
    throw new Error("no stdout");
  }
  const lines = createInterface({ input: stdout });
  const found: Partial<Banner> = {};
  let tokenNext = false;
  const read = (async () => {
    for await (const raw of lines) {
      const line = raw.trim();
      if (tokenNext) {
        found.token = line;
        tokenNext = false;
      }
      const ws = /^Signalling: ws:\/\/(\S+)\/ws$/.exec(line);
      if (ws?.[1] !== undefined) {
        found.addr = ws[1];
      }
      const media = /^Media: +udp (\S+)/.exec(line);
      if (media?.[1] !== undefined) {
        found.media = media[1];
      }
      const enrolment = /^(http:\/\/\S+\/console#enrol=\S+)$/.exec(line);
      if (enrolment?.[1] !== undefined) {
        found.enrolment = enrolment[1];
      }
      const session = /^A new session is ready: ([A-Za-z0-9_-]+)\./.exec(line);
      if (session?.[1] !== undefined) {
        found.session = session[1];
        tokenNext = true;
      }
      if (line.startsWith("Press Ctrl-C")) {
        break;
      }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    stdout.resume();
    const { addr, session, token } = found;
    if (addr === undefined || session === undefined || token === undefined) {
      throw new Error("the banner lacks the address, the demo session or its token");
    }
    return { addr, media: found.media, session, token, enrolment: found.enrolment };
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no banner within ${String(START_TIMEOUT_MS)} ms`));
    }, START_TIMEOUT_MS);
  });
  const died = exited.then((code) => {
    throw new Error(`exited with ${String(code)} before its banner`);
  });
  // The losers of the race settle later: handled here, not as unhandled rejections.
  read.catch(() => undefined);
  died.catch(() => undefined);
  try {
    return await Promise.race([read, timeout, died]);
  } finally {
    clearTimeout(timer);
  }
}

async function settles(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => {
      resolve(false);
    }, ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
