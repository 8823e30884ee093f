// The Node bot: a headless Confer participant on the TypeScript core, the twin of
// `confer-bot` (crates/client/src/bin/confer-bot.rs, crates/client/src/driver.rs) for chat:
// it joins with a token or invite link, acknowledges the agreement, is admitted by a signed
// roster, sends a self-checking encrypted chat message every so often once its room is
// secured, checks every one it receives (from Rust bots too: the text format is the same),
// and on exit prints one JSON line with the same fields as `confer-bot`'s summary.
//
//   npm --prefix web-client run bot -- --url ws://127.0.0.1:7880/ws --role party --seconds 10 \
//       --token-file link.txt

import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { parseArgs } from "node:util";

import WebSocket from "ws";

import { sha256 } from "@noble/hashes/sha2.js";

import { alarmCode } from "../src/core/alarms.js";
import { Core, CoreConfig, agreementHash } from "../src/core/client.js";
import type { Event } from "../src/core/client.js";
import { Role, Side } from "../src/proto/ids.js";
import type { ClientMessage } from "../src/proto/message.js";
import { Signal } from "../src/signal/connection.js";
import type { SocketLike } from "../src/signal/connection.js";
import { parseInvite } from "../src/signal/link.js";

/** The agreement text bots acknowledge unless told otherwise (the Rust bot's default). */
const DEFAULT_AGREEMENT =
  "Confer demo agreement to mediate: confidential; no recording by anyone; nobody else present.";

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** `confer-bot {sender} #{n} {check}`: anyone can recompute `check` (driver.rs `bot_text`). */
export function botCheck(sender: string, n: bigint): string {
  const s = new TextEncoder().encode(sender);
  const buf = new Uint8Array(10 + s.length + 8);
  buf.set(new TextEncoder().encode("confer-bot"), 0);
  buf.set(s, 10);
  new DataView(buf.buffer).setBigUint64(10 + s.length, n, false);
  return toHex(sha256(buf).slice(0, 4));
}

export function botText(sender: string, n: bigint): string {
  return `confer-bot ${sender} #${n.toString()} ${botCheck(sender, n)}`;
}

export function checkBotText(text: string): boolean {
  const parts = text.split(" ");
  if (parts.length !== 4 || parts[0] !== "confer-bot") {
    return false;
  }
  const [, sender, num, check] = parts as [string, string, string, string];
  if (!/^#\d{1,20}$/.test(num)) {
    return false;
  }
  return botCheck(sender, BigInt(num.slice(1))) === check;
}

interface Summary {
  role: string;
  messages_sent: number;
  messages_received: number;
  messages_verified: number;
  decrypt_failures: number;
  decrypt_failure_reasons?: Record<string, number>;
  alarms: string[];
  session_code: string | null;
  keys_deleted: boolean;
  acks_received: number;
  consents_held: number;
  names_verified: number;
  names_rejected: number;
  names: string[];
  stopped: string;
}

function fail(message: string): never {
  process.stderr.write(`confer-bot (ts): ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      token: { type: "string" },
      "token-file": { type: "string" },
      role: { type: "string" },
      seconds: { type: "string", default: "10" },
      "chat-every-ms": { type: "string", default: "500" },
      agreement: { type: "string", default: DEFAULT_AGREEMENT },
      name: { type: "string" },
      invite: { type: "string", multiple: true, default: [] },
      "admit-bare-tokens": { type: "boolean", default: false },
    },
    strict: true,
  });
  const url = values.url ?? fail("give --url, e.g. ws://127.0.0.1:7880/ws");
  let tokenText = values.token;
  if (tokenText === undefined) {
    const file = values["token-file"] ?? fail("give --token or --token-file");
    tokenText = readFileSync(file === "-" ? 0 : file, "utf8").trim();
    if (tokenText === "") {
      fail(`the token file ${file} is empty`);
    }
  }
  const role = Role.fromStr(values.role ?? "") ?? fail("give --role (mediator, party, counsel, ...)");
  const seconds = Number(values.seconds);
  const chatEvery = Math.max(10, Number(values["chat-every-ms"]));
  const invites = values.invite.map((s) => {
    const [r, side] = s.split(":");
    const inviteRole = Role.fromStr(r ?? "") ?? fail(`--invite ${s}: unknown role`);
    const inviteSide = side === undefined ? undefined : (Side.fromStr(side) ?? fail(`--invite ${s}: bad side`));
    return { role: inviteRole, side: inviteSide };
  });

  const link = parseInvite(tokenText);
  const cfg = CoreConfig.create(agreementHash(values.agreement));
  cfg.autoAdmit = role === "mediator";
  cfg.admitWithoutInviteSecret = values["admit-bare-tokens"];
  cfg.expectedRole = role;
  cfg.displayName = values.name ?? `${role} bot`;
  cfg.invite = { token: link.token, psk: link.psk, mediatorIk: link.mediatorIk };
  const rng = { fill: (b: Uint8Array) => void webcrypto.getRandomValues(b) };
  const core = new Core(rng, cfg);
  const start = performance.now();
  const now = (): number => performance.now() - start;
  const signal = new Signal(
    url,
    (u) => new WebSocket(u, { maxPayload: 256 * 1024 }) as unknown as SocketLike,
    { setInterval, clearInterval, setTimeout },
    now,
  );
  const summary: Summary = {
    role: "",
    messages_sent: 0,
    messages_received: 0,
    messages_verified: 0,
    decrypt_failures: 0,
    alarms: [],
    session_code: null,
    keys_deleted: false,
    acks_received: 0,
    consents_held: 0,
    names_verified: 0,
    names_rejected: 0,
    names: [],
    stopped: "",
  };
  const requested: { role: Role; side: Side | undefined }[] = [];
  let sentN = 0n;
  let windingDown = false;
  let welcomed = false;
  const linkBase = url.replace(/^ws/, "http").replace(/\/ws$/, "");

  const flush = (): void => {
    for (let m = core.pollSend(); m !== undefined; m = core.pollSend()) {
      signal.send(m);
    }
    for (let e: Event | undefined = core.pollEvent(); e !== undefined; e = core.pollEvent()) {
      if (e.type === "chat" && checkBotText(e.text)) {
        summary.messages_verified += 1;
      } else if (e.type === "alarm") {
        process.stderr.write(`confer-bot (ts): ALARM ${alarmCode(e.alarm)}\n`);
      } else if (e.type === "name") {
        summary.names.push(e.name);
      }
    }
  };

  // One thing at a time: the core's async calls run in the order they are made.
  let busy: Promise<void> = Promise.resolve();
  const run = (f: () => Promise<void> | void): void => {
    busy = busy.then(async () => {
      await f();
      flush();
    });
  };

  signal.connect(link.token);
  const chat = setInterval(() => {
    run(async () => {
      const pid = core.participantId();
      if (pid === undefined || windingDown) {
        return;
      }
      try {
        await core.sendChat(botText(pid.slice(0, 8), sentN));
        sentN += 1n;
      } catch {
        // Not secured yet: nothing was sent.
      }
    });
  }, chatEvery);
  const tick = setInterval(() => {
    run(() => core.tick(now()));
  }, 250);
  const stopAt = setTimeout(() => {
    windingDown = true;
    run(async () => {
      const bye: ClientMessage = core.role() === "mediator" ? { type: "end" } : await core.leave();
      signal.send(bye);
    });
  }, seconds * 1000);
  const hardStop = setTimeout(() => {
    summary.stopped = "timeout";
    signal.close();
  }, (seconds + 5) * 1000);

  for (;;) {
    const ev = await signal.next();
    if (ev.kind === "closed") {
      summary.stopped ||= `closed ${String(ev.code)}`;
      break;
    }
    if (ev.kind !== "message") {
      continue;
    }
    const msg = ev.message;
    if (msg.type === "invite") {
      const want = requested.shift();
      if (want?.role !== msg.role || want.side !== msg.side) {
        process.stderr.write("confer-bot (ts): an invite nobody asked for; ignored\n");
        continue;
      }
      const psk = core.issueInvite(want.role, want.side);
      const ik = core.identity()?.ikPub();
      const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64url");
      let l = `${linkBase}/join#t=${msg.token}&k=${b64(psk.expose())}`;
      if (ik !== undefined) {
        l += `&m=${b64(ik)}`;
      }
      const side = msg.side === undefined ? "" : ` ${msg.side}`;
      process.stderr.write(`confer-bot (ts): invite ${msg.role}${side}: ${l}\n`);
      continue;
    }
    run(() => core.handle(msg, now()));
    if (msg.type === "welcome" && !welcomed) {
      welcomed = true;
      run(() => {
        if (core.role() === "mediator") {
          for (const i of invites) {
            requested.push(i);
            signal.send({ type: "create_invite", role: i.role, side: i.side, ttl_secs: undefined });
          }
        }
      });
    }
  }
  clearInterval(chat);
  clearInterval(tick);
  clearTimeout(stopAt);
  clearTimeout(hardStop);
  await busy;
  flush();
  const s = core.stats();
  summary.role = core.role() ?? "";
  summary.messages_sent = s.messagesSent;
  summary.messages_received = s.messagesReceived;
  summary.decrypt_failures = s.decryptFailures;
  if (s.failureReasons.size > 0) {
    summary.decrypt_failure_reasons = Object.fromEntries(s.failureReasons);
  }
  summary.alarms = [...s.alarms];
  summary.session_code = core.sessionCode() ?? null;
  summary.keys_deleted = s.keysDeleted;
  summary.acks_received = s.acksReceived;
  summary.consents_held = s.consentsHeld;
  summary.names_verified = s.namesVerified;
  summary.names_rejected = s.namesRejected;
  summary.names = [...new Set(summary.names)].sort();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

await main();
