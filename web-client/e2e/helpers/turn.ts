// A real coturn on 127.0.0.1 for the browser tests (the Rust twin: tests/e2e/e2ee/turn.rs).
//
// Why: Firefox pairs a loopback remote candidate only with a loopback local one, and it
// gathers no loopback candidate (media.peerconnection.ice.loopback notwithstanding), so it
// cannot reach an SFU that listens on 127.0.0.1 directly. Through TURN its local candidate is
// the relayed address, 127.0.0.1 on coturn, and the pair forms: the Firefox party reaches the
// SFU as a participant behind a strict network would, with credentials from `welcome`.

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export interface Coturn {
  /** `turn:127.0.0.1:PORT?transport=udp`. */
  readonly url: string;
  /** The file holding the shared secret (the server's `turn_secret_file`). */
  readonly secretFile: string;
  /** The settings `confer serve` needs to hand these out in `welcome`. */
  readonly serverEnv: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    s.once("error", reject);
    s.bind(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

/** True when something on `port` answers a STUN binding request. */
function stunAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      s.close();
      resolve(ok);
    };
    const timer = setTimeout(() => {
      done(false);
    }, 200);
    s.on("message", (m) => {
      done(m.length >= 20 && m[0] === 0x01 && m[1] === 0x01);
    });
    const req = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), Buffer.from("confer-probe")]);
    s.send(req, port, "127.0.0.1");
  });
}

export async function startCoturn(): Promise<Coturn> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "confer-e2e-turn-"));
  const secret = randomBytes(16).toString("hex");
  const secretFile = path.join(dir, "turn.secret");
  await writeFile(secretFile, `${secret}\n`);
  const port = await freeUdpPort();
  const base = 41_000 + (port % 1000) * 20;
  const child: ChildProcess = spawn(
    "turnserver",
    [
      "-n",
      "--listening-ip=127.0.0.1",
      "--relay-ip=127.0.0.1",
      `--listening-port=${String(port)}`,
      `--min-port=${String(base)}`,
      `--max-port=${String(base + 19)}`,
      "--use-auth-secret",
      `--static-auth-secret=${secret}`,
      "--realm=confer.test",
      "--allow-loopback-peers",
      "--no-tcp",
      "--no-tls",
      "--no-dtls",
      "--no-tcp-relay",
      "--no-cli",
      "--fingerprint",
      `--pidfile=${path.join(dir, "turnserver.pid")}`,
      `--log-file=${path.join(dir, "turn.log")}`,
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      resolve();
    });
  });
  let spawnError: Error | undefined;
  child.once("error", (e) => {
    spawnError = e;
  });
  const deadline = Date.now() + 10_000;
  while (!(await stunAnswers(port))) {
    if (spawnError !== undefined || Date.now() > deadline) {
      child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
      throw new Error(`coturn did not answer on 127.0.0.1:${String(port)} (${String(spawnError)}); run \`make deps\` (it installs coturn)`);
    }
  }
  const url = `turn:127.0.0.1:${String(port)}?transport=udp`;
  return {
    url,
    secretFile,
    serverEnv: { CONFER_TURN_URLS: url, CONFER_TURN_SECRET_FILE: secretFile },
    async stop() {
      child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
