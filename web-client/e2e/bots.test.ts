// The TypeScript core and the Rust core in one session, over a real server: a Rust mediator
// bot (confer-bot), a TypeScript party bot (npm run bot, the Node shell around src/core) and
// a Rust party bot. Every chat message is verified by everyone else, nothing fails to open,
// nobody raises an alarm, all three show the same session code and each other's display
// names (verified against the roster commitments).
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { afterAll, beforeAll, expect, test } from "vitest";

import { REPO, RUST_BOT, botSummary, inviteLinks, startServer } from "./helpers/index.js";
import type { ConferServer } from "./helpers/index.js";

const run = promisify(execFile);
const TS_BOT = path.join(REPO, "web-client/dist-bot/bot.mjs");

let server: ConferServer;
let dir: string;

beforeAll(async () => {
  await run("npx", ["vite", "build", "--config", "bot/vite.config.ts"], {
    cwd: path.join(REPO, "web-client"),
  });
  server = await startServer();
  dir = await mkdtemp(path.join(os.tmpdir(), "confer-e2e-bots-"));
});

afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

test("a Rust mediator, a TypeScript party and a Rust party verify each other", async () => {
  const mediator = spawn(
    RUST_BOT,
    [
      "--url", server.wsUrl, "--token", server.mediatorToken, "--role", "mediator",
      "--seconds", "9", "--chat-every-ms", "200",
      "--invite", "party:A", "--invite", "party:B", "--name", "Mediator Mo",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const mediatorDone = botSummary(mediator);
  // The mediator bot prints one invite link per --invite on stderr.
  const links = await inviteLinks(mediator, 2);
  // The parties stay until the mediator ends the session (so all three hold the same last
  // joint roster). The TypeScript party reads its link from a file (secrets stay out of `ps`).
  const linkFile = path.join(dir, "link-a");
  await writeFile(linkFile, `${links[0] ?? ""}\n`);
  const tsParty = spawn(
    "node",
    [TS_BOT, "--url", server.wsUrl, "--token-file", linkFile, "--role", "party",
      "--seconds", "30", "--chat-every-ms", "200", "--name", "Ada (TypeScript)"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const rustParty = spawn(
    RUST_BOT,
    ["--url", server.wsUrl, "--token", links[1] ?? "", "--role", "party",
      "--seconds", "30", "--chat-every-ms", "200", "--name", "Bo (Rust)"],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  const [a, b, m] = await Promise.all([botSummary(tsParty), botSummary(rustParty), mediatorDone]);
  const all = [
    { s: a, others: ["Bo (Rust)", "Mediator Mo"] },
    { s: b, others: ["Ada (TypeScript)", "Mediator Mo"] },
    { s: m, others: ["Ada (TypeScript)", "Bo (Rust)"] },
  ];
  for (const { s, others } of all) {
    const line = JSON.stringify(s);
    expect(s.decrypt_failures, line).toBe(0);
    expect(s.alarms, line).toEqual([]);
    expect(s.messages_sent, line).toBeGreaterThan(0);
    expect(s.messages_verified, line).toBeGreaterThan(0);
    expect(s.messages_received, line).toBe(s.messages_verified);
    expect(s.keys_deleted, line).toBe(true);
    expect(s.names, line).toEqual(others);
    expect(s.names_rejected, line).toBe(0);
  }
  // Each party heard from the other two: more verified messages than one sender alone sent.
  expect(a.messages_verified).toBeGreaterThan(Math.min(b.messages_sent, m.messages_sent));
  expect(b.messages_verified).toBeGreaterThan(Math.min(a.messages_sent, m.messages_sent));
  // One session code for the three.
  expect(a.session_code).toMatch(/^\d{5}( \d{5}){5}$/);
  expect(b.session_code).toBe(a.session_code);
  expect(m.session_code).toBe(a.session_code);
});
