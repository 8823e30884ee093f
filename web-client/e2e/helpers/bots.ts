// The Rust bot (`confer-bot`, crates/client) in browser tests: start it, read the invite links
// a mediator bot prints, and its one-line JSON summary at the end.

import type { ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";

import { REPO } from "./paths.js";

export const RUST_BOT = process.env["CONFER_BOT_BIN"] ?? path.join(REPO, "target/debug/confer-bot");

/** The fields of a bot's summary the tests read (crates/client/src/driver.rs, `Summary`). */
export interface BotSummary {
  role: string;
  messages_sent: number;
  messages_received: number;
  messages_verified: number;
  decrypt_failures: number;
  alarms: string[];
  session_code: string | null;
  keys_deleted: boolean;
  names: string[];
  names_rejected: number;
  frames_sent?: number;
  frames_received?: number;
  frames_opened?: number;
  publishers_opened?: number;
  media_decrypt_failures?: number;
}

/** Runs a bot to its end; resolves with its summary line. */
export function botSummary(child: ChildProcess): Promise<BotSummary> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (c: string) => {
      out += c;
    });
    child.once("exit", (code) => {
      if (code !== 0) {
        reject(new Error(`bot exited ${String(code)}: ${out}`));
        return;
      }
      try {
        resolve(JSON.parse(out.trim()) as BotSummary);
      } catch (e) {
        reject(new Error(`no summary: ${out}`, { cause: e }));
      }
    });
  });
}

/** The first `n` invite links a mediator bot prints on stderr (one per `--invite`). */
export function inviteLinks(child: ChildProcess, n: number, timeoutMs = 15_000): Promise<string[]> {
  const stderr = child.stderr;
  if (stderr === null) {
    return Promise.reject(new Error("the bot's stderr is not piped"));
  }
  const links: string[] = [];
  const lines = createInterface({ input: stderr });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${String(links.length)} of ${String(n)} invite links`));
    }, timeoutMs);
    lines.on("line", (l) => {
      const at = l.indexOf(": http://");
      if (at >= 0 && links.length < n) {
        links.push(l.slice(at + 2));
        if (links.length === n) {
          clearTimeout(timer);
          resolve(links);
        }
      }
    });
  });
}
