// Cluster mode for the browser tests (docs/operations.md, "Cluster mode"): a `redis-server` of
// the test's own, `confer serve --config FILE` nodes that share it and one signing key, and a
// TCP forwarder in front of them, switchable from one node to another, as a load balancer whose
// backend died would be. The pages load from the forwarder and connect through it, so a page
// never knows which node answers; the session's media goes straight to its owner's SFU (each
// node has its own UDP port).
//
// Everything started here is stopped by its `stop()`, and killed if the test process exits.

import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { CONFER_BIN, DIST_E2E } from "./paths.js";
import type { Role } from "./server.js";

const run = promisify(execFile);

/** How long a node may take to answer /readyz, and redis-server PING. */
const START_TIMEOUT_MS = 20_000;

// Every process started and not yet stopped, killed if the test process exits early.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) {
    child.kill("SIGKILL");
  }
});

/** A port the kernel gives out now (redis-server and the nodes' config need numbers). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const addr = s.address();
  await new Promise<void>((resolve) => s.close(() => {
    resolve();
  }));
  if (addr === null || typeof addr === "string") {
    throw new Error("no port");
  }
  return addr.port;
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = START_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${String(timeoutMs)} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Spawns a process whose stderr is kept (bounded); resolves `exited` with its exit code. */
function spawnKept(bin: string, args: string[], cwd: string): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(bin, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-1_000_000);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return { child, exited, stderr: () => stderr };
}

/** SIGTERM, then SIGKILL if it lingers; resolves once it exited. */
async function terminate(child: ChildProcess, exited: Promise<number | null>, graceMs: number): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

export interface Redis {
  readonly url: string;
  stop(): Promise<void>;
}

/** `redis-server` on 127.0.0.1, no persistence (scripts/install-deps.sh installs it). */
export async function startRedis(): Promise<Redis> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), "confer-e2e-redis-"));
  const p = spawnKept("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], dir);
  try {
    await eventually("redis-server answers PING", () => redisPing(port));
  } catch (e) {
    p.child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw new Error(`redis-server did not start: ${p.stderr()}`, { cause: e });
  }
  return {
    url: `redis://127.0.0.1:${String(port)}/0`,
    async stop() {
      await terminate(p.child, p.exited, 3_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1_000, () => {
      done(false);
    });
    s.once("error", () => {
      done(false);
    });
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => {
      done(d.toString().startsWith("+PONG"));
    });
  });
}

/** A signing key file for every node of a cluster (64 hex digits), in `dir`. */
export async function writeSigningKey(dir: string): Promise<string> {
  const file = path.join(dir, "signing.key");
  await writeFile(file, randomBytes(32).toString("hex"), { mode: 0o600 });
  return file;
}

export interface ClusterNode {
  /** `127.0.0.1:PORT` of its HTTP and WebSocket listener. */
  readonly addr: string;
  readonly port: number;
  readonly config: string;
  /** Resolves with the exit code once the process exited. */
  readonly exited: Promise<number | null>;
  /**
   * A metric's value from its /metrics (0 when absent), or `undefined` if it does not answer.
   * `name` is the bare name (its first series) or a series as printed, labels and all
   * (`confer_errors_total{code="rate_limited"}`).
   */
  metric(name: string): Promise<number | undefined>;
  /** Mints a single-use invite token with `confer token create --config` (the shared key). */
  token(session: string, role: Role, side?: string): Promise<string>;
  /** SIGTERM only: the node drains, hands its sessions over and exits by itself. */
  drain(): void;
  logs(): string;
  /** SIGTERM (then SIGKILL after 5 s) and removes its data directory. */
  stop(): Promise<void>;
}

export interface NodeOptions {
  readonly redisUrl: string;
  readonly signingKeyFile: string;
  /** The web root (default: the e2e build, dist-e2e/). */
  readonly webRoot?: string;
  readonly leaseMs?: number;
}

/** `confer serve --config FILE` in cluster mode, every port on 127.0.0.1, its SFU on a port of its own. */
export async function startNode(o: NodeOptions): Promise<ClusterNode> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "confer-e2e-node-"));
  const [port, metricsPort] = [await freePort(), await freePort()];
  const config = path.join(dir, "confer.toml");
  await writeFile(
    config,
    [
      `listen = "127.0.0.1:${String(port)}"`,
      `metrics_listen = "127.0.0.1:${String(metricsPort)}"`,
      `data_dir = "${dir}"`,
      `public_url = "http://127.0.0.1:${String(port)}"`,
      `signing_key_file = "${o.signingKeyFile}"`,
      `media_listen = "127.0.0.1:0"`,
      `web_root = "${o.webRoot ?? DIST_E2E}"`,
      `log_level = "info"`,
      "[cluster]",
      `redis_url = "${o.redisUrl}"`,
      `lease_ms = ${String(o.leaseMs ?? 2000)}`,
      "redis_timeout_ms = 300",
      "",
    ].join("\n"),
  );
  const p = spawnKept(CONFER_BIN, ["serve", "--config", config], dir);
  const ready = async (): Promise<boolean> => {
    try {
      return (await fetch(`http://127.0.0.1:${String(port)}/readyz`)).ok;
    } catch {
      return false;
    }
  };
  try {
    await Promise.race([
      eventually("a node answers /readyz", ready),
      p.exited.then((code) => {
        throw new Error(`exited with ${String(code)}`);
      }),
    ]);
  } catch (e) {
    p.child.kill("SIGKILL");
    await p.exited;
    await rm(dir, { recursive: true, force: true });
    throw new Error(`confer serve did not start: ${String(e)}\n${p.stderr()}`, { cause: e });
  }
  let stopped: Promise<void> | undefined;
  return {
    addr: `127.0.0.1:${String(port)}`,
    port,
    config,
    exited: p.exited,
    async metric(name) {
      try {
        const page = await (await fetch(`http://127.0.0.1:${String(metricsPort)}/metrics`)).text();
        for (const line of page.split("\n")) {
          const m = /^(\S+?)(\{[^}]*\})? (\S+)$/.exec(line);
          if (m !== null && (m[1] === name || `${m[1] ?? ""}${m[2] ?? ""}` === name)) {
            return Number(m[3]);
          }
        }
        return 0;
      } catch {
        return undefined;
      }
    },
    async token(session, role, side) {
      const args = ["token", "create", "--config", config, "--session", session, "--role", role];
      if (side !== undefined) {
        args.push("--side", side);
      }
      const { stdout } = await run(CONFER_BIN, args, { cwd: dir });
      return stdout.trim();
    },
    drain() {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill("SIGTERM");
      }
    },
    logs: p.stderr,
    stop() {
      stopped ??= (async () => {
        await terminate(p.child, p.exited, 5_000);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/**
 * A TCP forwarder on 127.0.0.1: each new connection goes to the backend port of the moment.
 * `switchTo` changes it for new connections only (those open stay with their backend until it
 * closes them), like a load balancer that took a dead backend out.
 */
export interface Forwarder {
  readonly port: number;
  /** `http://127.0.0.1:PORT/`: the pages' origin. */
  readonly url: string;
  switchTo(backendPort: number): void;
  /** Connections forwarded so far, per backend port. */
  readonly forwarded: ReadonlyMap<number, number>;
  /** Cuts every connection open now, without a close frame (the pages see 1006). */
  cut(): void;
  stop(): Promise<void>;
}

export async function startForwarder(backendPort: number): Promise<Forwarder> {
  let backend = backendPort;
  const forwarded = new Map<number, number>();
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const to = backend;
    forwarded.set(to, (forwarded.get(to) ?? 0) + 1);
    const up = net.connect(to, "127.0.0.1");
    for (const s of [client, up]) {
      open.add(s);
      s.once("close", () => open.delete(s));
      // A side that fails or closes takes the other with it (a refused backend: the page sees
      // its connection drop, as behind a real load balancer).
      s.once("error", () => {
        client.destroy();
        up.destroy();
      });
    }
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  if (addr === null || typeof addr === "string") {
    throw new Error("no port");
  }
  return {
    port: addr.port,
    url: `http://127.0.0.1:${String(addr.port)}/`,
    switchTo(p) {
      backend = p;
    },
    forwarded,
    cut() {
      for (const s of open) {
        s.destroy();
      }
    },
    async stop() {
      for (const s of open) {
        s.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => {
        resolve();
      }));
    },
  };
}
