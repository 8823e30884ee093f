// The console in Chromium against a real `confer serve --dev`: the first mediator enrols from
// the link the server printed (a password, the TOTP secret, a code computed here from that
// secret, the recovery codes), logs in with a later code, starts a session choosing how long
// its documents are kept, opens the mediator link it gets, reaching the mediator's call
// screen, shares a document there, and back in the console deletes everything about the
// session (a confirmation first; Escape backs out): it leaves the list and the server's data
// dir has no documents folder for it. By keyboard where a person types; axe on every console
// screen; no CSP violation; nothing secret in the console log.

import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { PARTICIPANTS, axeViolations, launchChromium, press, startServer, tabTo, textOf, typeText, until } from "./helpers/index.js";
import type { ConferServer, E2EPage } from "./helpers/index.js";

const PASSWORD = "a long console password 42";

/** RFC 4648 base32 (no padding) to bytes. */
function base32(text: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of text.replace(/[\s=]/g, "").toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) {
      throw new Error(`not base32: ${c}`);
    }
    bits += v.toString(2).padStart(5, "0");
  }
  const out: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) {
    out.push(parseInt(bits.slice(i, i + 8), 2));
  }
  return Buffer.from(out);
}

/** RFC 6238: HMAC-SHA1, 30 s steps, 6 digits, computed independently of the server. */
function totp(secret: Buffer, unixSecs: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSecs / 30)));
  const mac = createHmac("sha1", secret).update(counter).digest();
  const offset = (mac[mac.length - 1] ?? 0) & 0x0f;
  const value = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(value % 1_000_000).padStart(6, "0");
}

async function noAxe(page: E2EPage, screen: string): Promise<void> {
  const found = await axeViolations(page);
  expect(found.map((v) => `${v.id}: ${v.help}`), screen).toEqual([]);
}

let server: ConferServer;
let page: E2EPage;

beforeAll(async () => {
  // A long resume grace: the mediator's page, left for the console, keeps its session live.
  server = await startServer({ env: { CONFER_RESUME_GRACE_SECS: "600" } });
  page = await launchChromium(PARTICIPANTS.red);
});

afterAll(async () => {
  await page.close();
  await server.stop();
});

describe("the console", () => {
  test("enrol from the printed link, log in with TOTP, start a session, open it as mediator", async () => {
    const link = server.enrolmentLink;
    expect(link, "confer serve --dev printed an enrolment link").toMatch(/^http:\/\/127\.0\.0\.1:\d+\/console#enrol=[A-Za-z0-9_-]{43}$/);
    const token = (link ?? "").split("#enrol=")[1] ?? "";

    // Enrolment: the token leaves the address bar at once.
    await page.goto(link ?? "");
    await page.waitFor("#enrol-secret");
    expect(await page.evaluate(() => location.href, undefined)).toBe(`${server.url}console`);
    expect(await textOf(page, "h1")).toBe("Set up your account");
    const shownSecret = (await textOf(page, "#enrol-secret")).replace(/\s/g, "");
    const uri = await page.evaluate(() => document.querySelector<HTMLAnchorElement>("#enrol-otpauth")?.href ?? "", undefined);
    expect(uri).toBe(`otpauth://totp/Confer:mediator?secret=${shownSecret}&issuer=Confer&algorithm=SHA1&digits=6&period=30`);
    await noAxe(page, "enrolment");
    const secret = base32(shownSecret);
    expect(secret.length).toBe(20);

    // A wrong code is refused, in the alert, and nothing is set.
    await tabTo(page, "#enrol-password");
    await typeText(page, PASSWORD);
    await tabTo(page, "#enrol-password-again");
    await typeText(page, PASSWORD);
    await tabTo(page, "#enrol-code");
    const enrolAt = Math.floor(Date.now() / 1000);
    const right = totp(secret, enrolAt);
    await typeText(page, right === "000000" ? "111111" : "000000");
    await press(page, "Enter");
    await until("the wrong code is refused", () => textOf(page, "#enrol-error"), (t) => t.startsWith("That code does not match"));
    await page.evaluate(() => {
      (document.getElementById("enrol-code") as HTMLInputElement).value = "";
    }, undefined);
    await tabTo(page, "#enrol-code");
    await typeText(page, right);
    await press(page, "Enter");
    await page.waitFor("#recovery-codes li");
    const codes = await page.evaluate(() => [...document.querySelectorAll("#recovery-codes li")].map((li) => li.textContent), undefined);
    expect(codes).toHaveLength(10);
    for (const c of codes) {
      expect(c).toMatch(/^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/);
    }
    await noAxe(page, "recovery codes");
    await page.screenshot("console", "recovery-codes");

    // Log in: name and password, then the code of the next 30 s step (the enrolment's own
    // code is spent: a code works once).
    await tabTo(page, "#recovery-done");
    await press(page, "Enter");
    await page.waitFor("#login-name");
    await noAxe(page, "login");
    await tabTo(page, "#login-name");
    await typeText(page, "mediator");
    await tabTo(page, "#login-password");
    await typeText(page, PASSWORD);
    await press(page, "Enter");
    await page.waitFor("#login-code");
    await noAxe(page, "second step");
    await tabTo(page, "#login-code");
    await typeText(page, totp(secret, enrolAt + 30));
    await press(page, "Enter");
    await page.waitFor("#console-start");
    expect(await textOf(page, "#console-account")).toBe("Logged in as mediator (mediator).");
    const cookies = (await page.playwright?.context().cookies()) ?? [];
    const session = cookies.find((c) => c.name === "confer_session");
    expect(session).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" });
    expect(await page.evaluate(() => document.cookie, undefined), "no cookie is readable by script").toBe("");

    // Start a session, its documents kept until it ends: a link to the mediator's page with
    // its invite in the fragment.
    const choices = await page.evaluate(
      () => [...document.querySelectorAll<HTMLOptionElement>("#console-retention option")].map((o) => [o.value, o.selected]),
      undefined,
    );
    expect(choices, "the --dev limits: 24 hours at most, 24 by default").toEqual([
      ["0", false],
      ["1", false],
      ["24", true],
    ]);
    await tabTo(page, "#console-retention");
    await press(page, "Home");
    expect(await page.evaluate(() => (document.getElementById("console-retention") as HTMLSelectElement).value, undefined)).toBe("0");
    await tabTo(page, "#console-start");
    await press(page, "Enter");
    await page.waitFor("#console-open");
    const open = await page.evaluate(() => document.querySelector<HTMLAnchorElement>("#console-open")?.href ?? "", undefined);
    expect(open).toMatch(new RegExp(`^${server.url}join#t=[A-Za-z0-9_.-]+$`));
    const sessionId = /^Session (s-[0-9a-f]{16}) is ready$/.exec(await textOf(page, "#console-started h2"))?.[1] ?? "";
    expect(sessionId).not.toBe("");
    await until("the list shows the session", () => textOf(page, "#console-sessions"), (t) => t.includes("not opened yet"));
    expect(await textOf(page, "#console-sessions")).toContain("Documents kept until the session ends (at most 24 hours after sharing).");
    await noAxe(page, "console");
    await page.screenshot("console", "sessions");
    expect(await page.violations()).toEqual([]);
    const secretsLogged = page.console.filter((line) => line.includes(token) || line.includes(shownSecret) || line.includes(PASSWORD));
    expect(secretsLogged).toEqual([]);

    // The mediator's page, opened from that link, joins as the mediator: the call screen with
    // the invitation form only a mediator has.
    await page.goto(open);
    await page.waitFor("#join button[type=submit]");
    await page.evaluate(() => {
      (document.getElementById("name") as HTMLInputElement).value = "Mediator Mo";
      for (const box of document.querySelectorAll<HTMLInputElement>("#join input[type=checkbox]")) {
        box.checked = true;
      }
      (document.getElementById("join") as HTMLFormElement).requestSubmit();
    }, undefined);
    await page.waitFor("#invite:not([hidden]) #invite-who", 30_000);
    // A document shared there: the server holds its sealed chunks under the session's id.
    await until(
      "the documents panel is shown",
      () => page.evaluate(() => document.getElementById("documents")?.hidden === false, undefined),
      (shown) => shown,
    );
    await page.playwright?.setInputFiles("#doc-file", { name: "draft.txt", mimeType: "text/plain", buffer: Buffer.from("a settlement draft") });
    await page.playwright?.click("#doc-share");
    await until("the document is shared", () => textOf(page, "#doc-status"), (t) => t === "draft.txt is shared with the people in this room.");
    const docsDir = path.join(server.dataDir, "docs", sessionId);
    expect(existsSync(docsDir), "the server holds the document").toBe(true);

    // Back in the console, the session is live.
    await page.goto(`${server.url}console`);
    await page.waitFor("#console-sessions li");
    await until("the session is live", () => textOf(page, "#console-sessions"), (t) => t.includes(": live"));

    // Delete everything about it, by keyboard: a confirmation first, which Escape backs out of.
    const purge = `#console-purge-${sessionId}`;
    await tabTo(page, purge);
    await press(page, "Enter");
    await page.waitFor("#console-purge-confirm");
    expect(await page.evaluate(() => document.activeElement?.id, undefined), "focus on the question").toBe("console-purge-question");
    expect(await textOf(page, "#console-purge-question")).toContain("It ends now for everyone in it");
    await noAxe(page, "confirm deletion");
    await page.screenshot("console", "confirm-deletion");
    await press(page, "Escape");
    expect(await page.evaluate(() => document.getElementById("console-purge-confirm") === null, undefined)).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.id, undefined), "focus back on the button").toBe(purge.slice(1));
    expect(existsSync(docsDir), "backing out deleted nothing").toBe(true);
    await press(page, "Enter");
    await page.waitFor("#console-purge-confirm");
    await tabTo(page, "#console-purge-confirm");
    await press(page, "Enter");
    await until("the list no longer lists it", () => textOf(page, "#console-sessions"), (t) => t === "None yet.");
    expect(await page.evaluate(() => document.activeElement?.id, undefined)).toBe("console-sessions-heading");
    expect(await textOf(page, "#announcer")).toBe(`Session ${sessionId} is ended and everything the server held about it is deleted.`);
    expect(existsSync(docsDir), "no documents folder for the session").toBe(false);
    expect(existsSync(path.join(server.dataDir, "docs")) ? (await readdir(path.join(server.dataDir, "docs"))).filter((d) => d.includes(sessionId)) : []).toEqual([]);
    // The one refusal asked for (the wrong enrolment code: its 400, and Chromium's console line
    // for it) is the only problem.
    const expected = (p: { text: string }): boolean => p.text.includes("400") && (p.text.includes("/console/api/enrol/finish") || p.text.includes("Failed to load resource"));
    expect(page.problems.filter((p) => !expected(p))).toEqual([]);
    expect(page.problems.filter(expected).length).toBeGreaterThan(0);
  });
});
