// End-to-end encrypted documents (e2ee §8.7) in three Chromium processes on a real
// `confer serve --dev`: party A shares a file in its caucus; the mediator opens it and gets the
// same bytes; party B, in joint, gets no key and nothing in its list, and what the server stores
// is not the file; the mediator carries it into joint, re-keyed, and B opens that copy and
// acknowledges that version, which the mediator's page verifies; after the end the server holds
// none of it.

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CONFER_BIN, DIST_E2E, PARTICIPANTS, axeViolations, commandFrom, inRoom, launchChromium, mediationInJoint, playwrightOf, startServer, textOf, until, viewOf } from "./helpers/index.js";
import type { ConferServer, E2EPage } from "./helpers/index.js";

let server: ConferServer;
let m: E2EPage;
let a: E2EPage;
let b: E2EPage;
const id: Record<string, string> = {};
const quiet = { audioProcessing: false, publish: { audio: false, video: false } } as const;

// A file of two chunks and a bit, with a recognisable text inside, and its hash.
const secretLine = "CONFIDENTIAL: A would settle for 40,000.";
const file = Buffer.concat([Buffer.from(`${secretLine}\n`), Buffer.alloc(140_000, 0x61), Buffer.from(secretLine)]);
const fileHash = createHash("sha256").update(file).digest("hex");

beforeAll(async () => {
  server = await startServer({ webRoot: DIST_E2E });
  [m, a, b] = await Promise.all([launchChromium(PARTICIPANTS.red), launchChromium(PARTICIPANTS.green), launchChromium(PARTICIPANTS.blue)]);
});

afterAll(async () => {
  await Promise.all([m, a, b].map((p) => p.close()));
  await server.stop();
});

const pw = playwrightOf;
const run = promisify(execFile);

interface DocSeen {
  docId: string;
  name: string;
  room: string;
  state: string;
}

function docsOf(p: E2EPage): Promise<DocSeen[]> {
  return p.evaluate(() => {
    const g = globalThis as unknown as { __conferE2E: { session?: { view(): { documents: DocSeen[] } } } };
    return (g.__conferE2E.session?.view().documents ?? []).map((d) => ({ docId: d.docId, name: d.name, room: d.room, state: d.state }));
  }, undefined);
}

/** Opens a document on the page (its Open button), saves it as a person would, and hashes the saved file. */
async function openAndHash(p: E2EPage, docId: string): Promise<string> {
  await pw(p).click(`#doc-open-${docId}`);
  await p.waitFor(`#doc-save-${docId}`);
  const [download] = await Promise.all([pw(p).waitForEvent("download"), pw(p).click(`#doc-save-${docId}`)]);
  expect(download.suggestedFilename()).toBe("offer.txt");
  const saved = await download.path();
  return createHash("sha256")
    .update(await readFile(saved))
    .digest("hex");
}

/** Every file under the server's data directory whose path mentions documents. */
async function storedDocFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        await walk(p);
      } else if (p.includes(`${path.sep}docs${path.sep}`) && (await stat(p)).isFile()) {
        out.push(p);
      }
    }
  }
  await walk(dir);
  return out;
}

describe("documents shared end to end", () => {
  test("A shares a file in its caucus: the mediator opens it, B gets nothing", async () => {
    Object.assign(id, await mediationInJoint(`${server.url}join#t=${server.mediatorToken}`, m, a, b, quiet));
    await commandFrom(m, { type: "move", participant_id: id["a"], channel_id: "caucus-A" });
    await commandFrom(m, { type: "move", participant_id: id["m"], channel_id: "caucus-A" });
    await until("A in caucus with the mediator", () => viewOf(a), (v) => inRoom(v, "caucus-A", 2));
    await until("the mediator in caucus A", () => viewOf(m), (v) => inRoom(v, "caucus-A", 2));

    await pw(a).setInputFiles("#doc-file", { name: "offer.txt", mimeType: "text/plain", buffer: file });
    await pw(a).click("#doc-share");
    const mine = await until("A's file is uploaded", () => docsOf(a), (d) => d.length === 1 && d[0]?.state === "ready");
    const docId = mine[0]?.docId ?? "";
    expect(docId).toMatch(/^[0-9a-f]{32}$/);
    expect(await textOf(a, "#doc-status")).toBe("offer.txt is shared with the people in this room.");
    await until("the mediator lists it", () => docsOf(m), (d) => d.some((x) => x.docId === docId));
    expect(await openAndHash(m, docId), "the mediator gets the same bytes").toBe(fileHash);
    expect(await axeViolations(m), "documents on the mediator's page").toEqual([]);
    await m.screenshot("documents", "mediator-documents");
    // B: nothing in its list, no key, and no Open button anywhere.
    expect(await docsOf(b)).toEqual([]);
    expect(await b.evaluate((docId) => document.getElementById(`doc-open-${docId}`) === null, docId)).toBe(true);
    const refused = await b.evaluate(async (docId) => {
      const g = globalThis as unknown as { __conferE2E: { session?: { openDocument(d: string): Promise<Uint8Array> } } };
      try {
        await g.__conferE2E.session?.openDocument(docId);
        return "opened";
      } catch (e) {
        return (e as { code?: string }).code ?? "error";
      }
    }, docId);
    expect(refused, "B holds no key for it").toBe("not_found");
    // The server holds the sealed chunks, never the file: no stored byte run carries its text.
    const stored = await storedDocFiles(server.dataDir);
    expect(stored.filter((p) => p.includes(docId)).length, "three chunks stored").toBe(3);
    for (const p of stored) {
      expect((await readFile(p)).includes(Buffer.from(secretLine)), p).toBe(false);
    }
  });

  test("the mediator carries the file into joint: B opens that copy, re-keyed", async () => {
    const [original] = await docsOf(m);
    const docId = original?.docId ?? "";
    await pw(m).selectOption(`#doc-to-${docId}`, "joint");
    await pw(m).click(`#doc-carry-${docId}`);
    const copy = await until("B lists the carried copy", () => docsOf(b), (d) => d.length === 1 && d[0]?.state === "ready");
    const copyId = copy[0]?.docId ?? "";
    expect(copyId).toMatch(/^[0-9a-f]{32}$/);
    expect(copyId, "a new document id (and key)").not.toBe(docId);
    expect(copy[0]?.room).toBe("joint");
    expect(await openAndHash(b, copyId), "B gets the same bytes").toBe(fileHash);
    // The copy's key went to joint's present members only: A, in its caucus, lists only its own.
    expect((await docsOf(a)).map((d) => d.docId)).toEqual([docId]);
    expect(await axeViolations(b), "documents on B's page").toEqual([]);
  });

  test("B acknowledges that version (a settlement draft): the mediator's page verifies and shows it", async () => {
    const [copy] = await docsOf(b);
    const copyId = copy?.docId ?? "";
    expect(copyId).toMatch(/^[0-9a-f]{32}$/);
    await pw(b).click(`#doc-ack-${copyId}`);
    await until("B's page says so", () => textOf(b, "#doc-status"), (t) => t.startsWith("You acknowledged this version of offer.txt"));
    await m.waitFor(`#doc-acks-${copyId}`);
    expect(await textOf(m, `#doc-acks-${copyId}`)).toBe(" Acknowledged by Bo.");
    // The server's audit log has one content-free row: B acknowledged the version with that hash.
    const rows = await until(
      "the audit row",
      async () => {
        const { stdout } = await run(CONFER_BIN, ["audit", "export", "--dev", "--data-dir", server.dataDir, "--participant", id["b"] ?? ""]);
        return stdout
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      },
      (r) => r.some((x) => JSON.stringify(x).includes("doc_acknowledged")),
    );
    const ack = rows.filter((x) => JSON.stringify(x).includes("doc_acknowledged"));
    expect(ack.length).toBe(1);
    expect(JSON.stringify(ack[0])).toContain(fileHash);
    expect(JSON.stringify(rows)).not.toContain("offer.txt");
    await m.screenshot("documents", "mediator-acknowledged");
  });

  test("the mediator's private notes: saved encrypted, opened back, nobody else gets them", async () => {
    const note = "Private: A may move on the dates if B moves on the amount.";
    const before = await storedDocFiles(server.dataDir);
    await pw(m).fill("#notes-text", note);
    await pw(m).click("#notes-save");
    await until("the notes are saved", () => textOf(m, "#notes-status"), (t) => t.startsWith("Notes saved, encrypted"));
    const added = (await storedDocFiles(server.dataDir)).filter((p) => !before.includes(p));
    expect(added.length, "one chunk stored").toBe(1);
    for (const p of added) {
      expect((await readFile(p)).includes(Buffer.from("Private:")), p).toBe(false);
    }
    await pw(m).fill("#notes-text", "");
    const versionId = await m.evaluate(() => document.querySelector("#notes-versions button")?.id ?? "", undefined);
    await pw(m).click(`#${versionId}`);
    await until("the notes are back", () => m.evaluate(() => (document.getElementById("notes-text") as HTMLTextAreaElement).value, undefined), (t) => t === note);
    // Nobody else is told of them: their lists are what they were.
    expect((await docsOf(a)).length).toBe(1);
    expect((await docsOf(b)).length).toBe(1);
    expect(await a.evaluate(() => document.getElementById("notes")?.hidden ?? true, undefined), "A has no notes panel").toBe(true);
    expect(await axeViolations(m), "the notes panel").toEqual([]);
  });

  test("after the end the server holds none of it", async () => {
    await pw(m).click("#end");
    for (const p of [m, a, b]) {
      await until(`${p.participant.name} deleted its keys`, () => viewOf(p), (v) => v.keysDeleted);
    }
    await until("the server deleted the documents", () => storedDocFiles(server.dataDir), (f) => f.length === 0);
  });
});
