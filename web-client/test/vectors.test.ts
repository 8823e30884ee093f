// The shared confer/1 test vectors, judged as the Rust reader judges them
// (crates/e2ee/tests/vectors.rs, `every_vector_checks_out_as_a_reader_would_check_it`).
//
// The directory is CONFER_VECTORS_DIR (relative paths from where npm was started), else
// ../tests/vectors/v1 from web-client/. The run fails when the directory holds a file that is
// not a vector file, lacks one, or when any case of any file is not recognised and judged:
// each case is one test, and each file ends with a test that counts the judged cases.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import * as codeMod from "../src/core/code.js";
import * as codes from "../src/core/codes.js";
import * as doc from "../src/core/doc.js";
import { asciiBytes, bytesEqual, concat, toHex, u64Bytes, utf8Encode } from "../src/core/enc.js";
import * as frame from "../src/core/frame.js";
import * as identity from "../src/core/identity.js";
import { OpenError } from "../src/core/lib.js";
import * as messages from "../src/core/messages.js";
import * as pairwise from "../src/core/pairwise.js";
import * as roster from "../src/core/roster.js";
import { Secret32 } from "../src/core/secret.js";
import { envelopeFromData, envelopeToData } from "../src/proto/envelope.js";
import type { Envelope } from "../src/proto/envelope.js";
import { ERROR_CODES } from "../src/proto/error.js";
import { arr, byte, bytes, isObj, objs, str, thrown, u64 } from "./helpers.js";
import type { Json, Obj } from "./helpers.js";

const WEB_CLIENT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** CONFER_VECTORS_DIR (relative to where `npm` was started), else the checked-in vectors. */
function vectorsDir(): string {
  const env = process.env["CONFER_VECTORS_DIR"];
  if (env !== undefined && env !== "") {
    return path.resolve(process.env["INIT_CWD"] ?? process.cwd(), env);
  }
  return path.resolve(WEB_CLIENT, "../tests/vectors/v1");
}

/** Every file of a vector set; the reader refuses a directory with any other. */
const FILES = [
  "code.json",
  "constants.json",
  "doc.json",
  "frame.json",
  "messages.json",
  "negative.json",
  "pairwise.json",
  "replay.json",
  "roster.json",
] as const;

const DIR = vectorsDir();

function load(name: string): Obj {
  const v = JSON.parse(readFileSync(path.join(DIR, name), "utf8")) as Json;
  if (!isObj(v) || v["suite"] !== "confer/1") {
    throw new Error(`${name}: not a confer/1 vector file`);
  }
  return v;
}

/** What judging a case found: `false` when the case is of no kind this reader knows. */
type Judge = (c: Obj) => boolean | Promise<boolean>;

/** Per file, how many cases it has and how many were judged (for the report and the count). */
const tally = new Map<string, { cases: number; judged: number }>();

/**
 * Registers one test per case of a case file, in file order, and a last test that fails
 * unless every case was recognised and judged.
 */
function judgeCases(name: string, judge: Judge): void {
  describe(name, () => {
    let file: Obj;
    try {
      file = load(name);
    } catch (e) {
      it("loads", () => {
        throw e;
      });
      return;
    }
    const cases = Array.isArray(file["cases"]) ? file["cases"] : [];
    const t = { cases: cases.length, judged: 0 };
    tally.set(name, t);
    const unjudged: string[] = [];
    it("has `suite` and `cases` only, and case names are unique", () => {
      expect(Object.keys(file).sort()).toEqual(["cases", "suite"]);
      expect(cases.length).toBeGreaterThan(0);
      const names = cases.map((c) => (isObj(c) ? c["name"] : undefined));
      expect(new Set(names).size).toBe(names.length);
    });
    cases.forEach((c, i) => {
      const label = isObj(c) && typeof c["name"] === "string" ? c["name"] : `case ${i.toString()}`;
      it(label, async () => {
        if (!isObj(c)) {
          throw new Error(`${name}: case ${i.toString()} is not an object`);
        }
        if (await judge(c)) {
          t.judged += 1;
        } else {
          unjudged.push(label);
        }
      });
    });
    it(`judged every case of ${name}`, () => {
      expect(unjudged, `${name}: cases not recognised`).toEqual([]);
      expect(t.judged, `${name}: judged cases`).toBe(cases.length);
    });
  });
}

function ctxOf(c: Obj): frame.FrameCtx {
  const ctx = frame.FrameCtx.create(
    utf8(str(c, "session_id")),
    bytes(c, "channel_id", 16),
    bytes(c, "sender_id", 16),
    byte(c, "stream"),
  );
  if (ctx === undefined) {
    throw new Error(`${str(c, "name")}: no ctx`);
  }
  return ctx;
}

function utf8(s: string): Uint8Array {
  const b = utf8Encode(s);
  if (b === undefined) {
    throw new Error("not a Unicode string");
  }
  return b;
}

/** The codec a receiver expects on a stream (§8.2): 0 Opus, 1 and 2 VP8, 3 data. */
function codecOfStream(stream: number): frame.Codec | undefined {
  switch (stream) {
    case frame.STREAM_AUDIO:
      return "opus";
    case frame.STREAM_CAMERA:
    case frame.STREAM_SCREEN:
      return "vp8";
    case frame.STREAM_DATA:
      return "data";
    default:
      return undefined;
  }
}

function codecOf(c: Obj): frame.Codec {
  const codec = frame.codecFromName(str(c, "codec"));
  if (codec === undefined) {
    throw new Error(`unknown codec in ${str(c, "name")}`);
  }
  return codec;
}

/**
 * Receives a frame as a receiver does (§9) that holds one key: the case's step key for its
 * `kid`, in its ctx. The codec must fit the stream; the trailer and header must parse; the
 * header's KID must name the key held (generation and step: no other key is ever tried); the
 * counter must pass the (fresh) replay window; then the frame must open. Throws `OpenError`.
 */
function receiveFrame(c: Obj): Uint8Array {
  const ctx = ctxOf(c);
  const codec = codecOf(c);
  if (codecOfStream(ctx.stream) !== codec) {
    throw new OpenError();
  }
  const f = bytes(c, "frame");
  const hlen = f[f.length - 1];
  if (hlen === undefined || hlen === 0 || hlen > 17 || hlen > f.length - 1) {
    throw new OpenError();
  }
  const [kid, ctr] = frame.decodeHeader(f.subarray(f.length - 1 - hlen, f.length - 1));
  if (kid !== u64(c, "kid") || !new frame.ReplayWindow().check(ctr)) {
    throw new OpenError();
  }
  const keys = frame.derive(new Secret32(bytes(c, "step_key", 32)), kid, ctx);
  return frame.openWith(keys, codec, f);
}

/** A frame case: the derivations, then a receive that yields the plaintext. */
function judgeFrame(c: Obj): boolean {
  if (c["frame"] === undefined) {
    return false;
  }
  const name = str(c, "name");
  const kid = u64(c, "kid");
  const ctr = u64(c, "ctr");
  const stepKey = new Secret32(bytes(c, "step_key", 32));
  const keys = frame.derive(stepKey, kid, ctxOf(c));
  expect(toHex(keys.key.expose()), name).toBe(str(c, "key"));
  expect(toHex(keys.salt), name).toBe(str(c, "salt"));
  expect(toHex(frame.nonce(keys.salt, ctr)), name).toBe(str(c, "nonce"));
  const header = frame.encodeHeader(kid, ctr);
  expect(toHex(header), name).toBe(str(c, "header"));
  const f = bytes(c, "frame");
  expect(toHex(f.subarray(f.length - header.length - 1)), name).toBe(
    toHex(concat(header, Uint8Array.of(header.length))),
  );
  expect(toHex(receiveFrame(c)), name).toBe(str(c, "plaintext"));
  // Beyond the Rust reader: sealing the plaintext under the same key and counter gives the
  // frame byte for byte, and a step-0 frame opens through an `Opener` holding its generation.
  expect(toHex(frame.sealWith(keys, kid, ctr, codecOf(c), bytes(c, "plaintext"))), name).toBe(toHex(f));
  if ((kid & 0x0fn) === 0n) {
    const opener = new frame.Opener(ctxOf(c));
    opener.addGeneration(kid >> 4n, stepKey.expose());
    expect(toHex(opener.open(codecOf(c), f)), name).toBe(str(c, "plaintext"));
  }
  return true;
}

/** A ratchet case: `steps[i] = step_key(i)` for i = 0..19. */
function judgeRatchet(c: Obj): boolean {
  const ctx = ctxOf(c);
  const steps = arr(c, "steps");
  expect(steps.length).toBe(20);
  let k = new Secret32(bytes(c, "base_key", 32));
  steps.forEach((st, i) => {
    expect(toHex(k.expose()), `${str(c, "name")} step ${i.toString()}`).toBe(st);
    k = frame.ratchet(k, ctx);
  });
  return true;
}

// Chains per (session_id, channel_id) in file order; negative rosters are judged against
// their last rosters.
const chains = new Map<string, roster.Chain>();

function chainKey(session: string, channel: string): string {
  return `${session} ${channel}`;
}

function memberOf(m: Obj): roster.Member {
  return {
    participantId: bytes(m, "participant_id", 16),
    ikPub: bytes(m, "ik_pub", 32),
    ekPub: bytes(m, "ek_pub", 32),
    role: byte(m, "role"),
    side: byte(m, "side"),
    flags: byte(m, "flags"),
    nameCommit: bytes(m, "name_commit", 32),
  };
}

/** A plain, comparable view of a roster. */
function plain(r: roster.RosterFields): object {
  return {
    sessionId: toHex(r.sessionId),
    channelId: toHex(r.channelId),
    kind: r.kind,
    epoch: r.epoch,
    prevHash: toHex(r.prevHash),
    members: r.members.map((m) => ({
      participantId: toHex(m.participantId),
      ikPub: toHex(m.ikPub),
      ekPub: toHex(m.ekPub),
      role: m.role,
      side: m.side,
      flags: m.flags,
      nameCommit: toHex(m.nameCommit),
    })),
  };
}

/**
 * A roster case: its fields encode to `encoded`, which decodes back to them, and it extends
 * the chain of its (session_id, channel_id), in file order. A case with `links_to` starts a
 * successor chain: epoch 1, linked to the head of the chain `links_to` names (same session
 * and kind); it is accepted as a fresh chain.
 */
function judgeRoster(c: Obj): boolean {
  if (!Array.isArray(c["members"])) {
    return false;
  }
  const name = str(c, "name");
  const kind = roster.kindFromCode(byte(c, "kind"));
  if (kind === undefined) {
    throw new Error(`${name}: unknown kind`);
  }
  const r = new roster.Roster({
    sessionId: utf8(str(c, "session_id")),
    channelId: bytes(c, "channel_id", 16),
    kind,
    epoch: u64(c, "epoch"),
    prevHash: bytes(c, "prev_hash", 32),
    members: objs(c, "members").map(memberOf),
  });
  expect(toHex(r.encode()), name).toBe(str(c, "encoded"));
  const sr = roster.SignedRoster.fromParts(bytes(c, "encoded"), bytes(c, "signature", 64));
  expect(plain(sr.roster), name).toEqual(plain(r));
  expect(toHex(sr.hash), name).toBe(str(c, "hash"));
  const key = chainKey(str(c, "session_id"), str(c, "channel_id"));
  const first = !chains.has(key);
  const linksTo = c["links_to"];
  if (linksTo !== undefined) {
    if (typeof linksTo !== "string") {
      throw new Error(`${name}: links_to is not a string`);
    }
    expect(first && r.epoch === 1n, `${name}: links_to starts a chain`).toBe(true);
    const earlier = chains.get(chainKey(str(c, "session_id"), linksTo))?.head();
    if (earlier === undefined) {
      throw new Error(`${name}: links_to names no earlier chain`);
    }
    expect(earlier.roster.kind, name).toBe(r.kind);
    expect(toHex(r.prevHash), `${name}: prev_hash`).toBe(toHex(earlier.hash));
  } else {
    expect(
      first && r.epoch === 1n && r.prevHash.some((b) => b !== 0),
      `${name}: a chain linked to another names it in links_to`,
    ).toBe(false);
  }
  const m = identity.Identity.fromSecrets(bytes(c, "mediator_seed", 32), new Uint8Array(32).fill(1));
  let chain = chains.get(key);
  if (chain === undefined) {
    chain = new roster.Chain(utf8(str(c, "session_id")), m.ikPub());
    chains.set(key, chain);
  }
  expect(Object.values(roster.Accepted), name).toContain(chain.accept(sr));
  return true;
}

/**
 * Opens a pairwise case in the mode it names, with the aad a receiver builds itself from the
 * pair (the ids in `info`), `msg_type` and `seq`.
 */
async function openPairwise(c: Obj): Promise<Uint8Array> {
  const name = str(c, "name");
  const psk = bytes(c, "psk");
  const pskId = bytes(c, "psk_id");
  let mode: pairwise.Psk | undefined;
  switch (str(c, "mode")) {
    case "auth":
      expect(psk.length + pskId.length, name).toBe(0);
      mode = undefined;
      break;
    case "auth_psk":
      expect(psk.length, name).toBe(32);
      expect(toHex(pskId), name).toBe(toHex(pairwise.PSK_ID));
      mode = { psk, pskId };
      break;
    default:
      throw new Error(`${name}: unknown mode ${str(c, "mode")}`);
  }
  const msgType = pairwise.msgTypeFromCode(byte(c, "msg_type"));
  if (msgType === undefined) {
    throw new Error(`${name}: unknown msg_type`);
  }
  const info = bytes(c, "info");
  const label = asciiBytes("confer/1 hpke");
  expect(bytesEqual(info.subarray(0, label.length), label), `${name}: info`).toBe(true);
  const ids = info.subarray(label.length);
  const seq = u64(c, "seq");
  const aad = concat(asciiBytes("confer/1 pairwise"), ids, Uint8Array.of(msgType), u64Bytes(seq));
  expect(toHex(aad), name).toBe(str(c, "aad"));
  return pairwise.openRaw(
    bytes(c, "recipient_sk", 32),
    bytes(c, "sender_pk", 32),
    bytes(c, "enc", 32),
    info,
    aad,
    bytes(c, "ciphertext"),
    mode,
  );
}

async function judgePairwise(c: Obj): Promise<boolean> {
  expect(toHex(await openPairwise(c)), str(c, "name")).toBe(str(c, "plaintext"));
  return true;
}

function judgeCode(c: Obj): boolean {
  const members = objs(c, "members").map(
    (m) => [bytes(m, "participant_id", 16), bytes(m, "ik_pub", 32)] as const,
  );
  const [digest, code] = codeMod.sessionCode(utf8(str(c, "session_id")), members);
  expect([toHex(digest), code]).toEqual([str(c, "digest"), str(c, "code")]);
  return true;
}

function judgeDoc(c: Obj): boolean {
  if (c["ik_seed"] !== undefined) {
    const sha = bytes(c, "sha256", 32);
    const signed = doc.docAckSignedBytes(utf8(str(c, "session_id")), bytes(c, "participant_id", 16), sha);
    expect(toHex(signed)).toBe(str(c, "encoded"));
    const ikPub = bytes(c, "ik_pub", 32);
    const signature = bytes(c, "signature", 64);
    identity.verify(ikPub, signed, signature);
    const id = identity.Identity.fromSecrets(bytes(c, "ik_seed", 32), ONES);
    expect([toHex(id.ikPub()), toHex(id.sign(signed))]).toEqual([toHex(ikPub), toHex(signature)]);
    const ack = doc.DocAck.decode(bytes(c, "plaintext", 96));
    expect([toHex(ack.sha256), toHex(ack.signature)]).toEqual([toHex(sha), toHex(signature)]);
    expect(toHex(new doc.DocAck(sha, signature).encode())).toBe(str(c, "plaintext"));
    return true;
  }
  const msg = doc.DocKeyMsg.decode(bytes(c, "encoded"));
  expect(toHex(msg.channelId)).toBe(str(c, "channel_id"));
  expect(toHex(msg.docId)).toBe(str(c, "doc_id"));
  expect(toHex(msg.fileKey.expose())).toBe(str(c, "file_key"));
  expect(msg.size).toBe(u64(c, "size"));
  expect(toHex(msg.sha256)).toBe(str(c, "sha256"));
  expect([msg.name, msg.mediaType]).toEqual([str(c, "doc_name"), str(c, "media_type")]);
  expect(toHex(msg.encode())).toBe(str(c, "encoded"));
  const chunks = arr(c, "chunks").map((x) => {
    if (typeof x !== "string") {
      throw new Error("a chunk is hex");
    }
    return Uint8Array.from(Buffer.from(x, "hex"));
  });
  const cipher = new doc.DocCipher(msg.fileKey, msg.docId);
  expect(toHex(cipher.openAll(chunks, msg)), str(c, "name")).toBe(str(c, "plaintext"));
  // Sealing is deterministic: the same chunks again.
  expect(cipher.sealAll(bytes(c, "plaintext")).map(toHex)).toEqual(chunks.map(toHex));
  return true;
}

function judgeReplay(c: Obj): boolean {
  expect(BigInt(byte(c, "window"))).toBe(frame.WINDOW);
  const w = new frame.ReplayWindow();
  for (const st of objs(c, "steps")) {
    const ctr = u64(st, "ctr");
    const ok = w.check(ctr);
    expect(ok, `${str(c, "name")} ctr ${ctr.toString()}`).toBe(st["accept"]);
    if (ok) {
      w.commit(ctr);
    }
  }
  return true;
}

/**
 * A negative roster case: refused, by the chain of its (session_id, channel_id) in
 * `roster.json` (or the chain `chain` names), with exactly the refusal `error` names.
 */
async function judgeNegativeRoster(c: Obj): Promise<void> {
  const name = str(c, "name");
  const error = str(c, "error");
  expect(roster.ROSTER_ERRORS, `${name}: unknown error ${error}`).toContain(error);
  const at = isObj(c["chain"]) ? c["chain"] : c;
  const chain = chains.get(chainKey(str(at, "session_id"), str(at, "channel_id")));
  if (chain === undefined) {
    throw new Error(`${name}: no chain for it in roster.json`);
  }
  const encoded = bytes(c, "encoded");
  const signature = bytes(c, "signature", 64);
  expect(toHex(roster.rosterHash(encoded, signature)), name).toBe(str(c, "hash"));
  const head = chain.head();
  const refusal = await thrown(() => chain.clone().accept(roster.SignedRoster.fromParts(encoded, signature)));
  expect(refusal, name).toBeInstanceOf(roster.RosterError);
  expect((refusal as roster.RosterError).kind, name).toBe(error);
  expect(chain.head(), `${name}: the chain is untouched`).toBe(head);
}

/** A negative case: judged by its `shape` as a receiver would, and refused precisely. */
async function judgeNegative(c: Obj): Promise<boolean> {
  expect(c["expect"], str(c, "name")).toBe("reject");
  const opaque = async (f: () => unknown): Promise<void> => {
    expect(await thrown(f), str(c, "name")).toBeInstanceOf(OpenError);
  };
  switch (str(c, "shape")) {
    case "frame":
      await opaque(() => receiveFrame(c));
      return true;
    case "header":
      await opaque(() => frame.decodeHeader(bytes(c, "header")));
      return true;
    case "signature":
      await opaque(() => {
        identity.verify(bytes(c, "ik_pub", 32), bytes(c, "message"), bytes(c, "signature", 64));
      });
      return true;
    case "pairwise":
      await opaque(() => openPairwise(c));
      return true;
    case "roster":
      await judgeNegativeRoster(c);
      return true;
    default:
      return false;
  }
}

function roleOf(c: Obj): identity.Role {
  const role = identity.roleFromCode(byte(c, "role"));
  if (role === undefined) {
    throw new Error(`${str(c, "name")}: unknown role`);
  }
  return role;
}

const ONES = new Uint8Array(32).fill(1);

/**
 * An announcement, verified with the role the case names, as a receiver reads it from its
 * fields; the secrets give the same keys and signature.
 */
function judgeAnnouncement(c: Obj): void {
  const name = str(c, "name");
  const sid = utf8(str(c, "session_id"));
  const code = byte(c, "role");
  const a = new identity.Announcement(
    bytes(c, "participant_id", 16),
    roleOf(c),
    bytes(c, "ik_pub", 32),
    bytes(c, "ek_pub", 32),
    bytes(c, "signature", 64),
  );
  expect(toHex(a.signedBytes(sid)), name).toBe(str(c, "encoded"));
  a.verify(sid);
  // The role is signed: read with any other role, the announcement does not verify.
  for (let other = 0; other <= 4; other++) {
    if (other === code) {
      continue;
    }
    const role = identity.roleFromCode(other);
    if (role === undefined) {
      throw new Error("roles 0..4 exist");
    }
    const b = new identity.Announcement(a.participantId, role, a.ikPub, a.ekPub, a.signature);
    expect(() => {
      b.verify(sid);
    }, `${name} as role ${other.toString()}`).toThrow(OpenError);
  }
  const id = identity.Identity.fromSecrets(bytes(c, "ik_seed", 32), bytes(c, "ek_secret", 32));
  const again = id.announce(sid, a.participantId, a.role);
  expect([toHex(again.ikPub), toHex(again.ekPub), toHex(again.signature)], name).toEqual([
    toHex(a.ikPub),
    toHex(a.ekPub),
    toHex(a.signature),
  ]);
}

function judgeDelegation(c: Obj): void {
  const sid = utf8(str(c, "session_id"));
  const coIk = bytes(c, "co_ik_pub", 32);
  const scope = byte(c, "scope");
  const signature = bytes(c, "signature", 64);
  const m = identity.Identity.fromSecrets(bytes(c, "mediator_seed", 32), ONES);
  expect(toHex(identity.delegationBytes(sid, coIk, scope))).toBe(str(c, "encoded"));
  expect(toHex(m.delegate(sid, coIk, scope))).toBe(toHex(signature));
  new roster.Chain(sid, m.ikPub()).addDelegate(coIk, scope, signature);
}

function judgeSenderKey(c: Obj): void {
  const encoded = bytes(c, "encoded");
  const m = frame.SenderKeyMsg.decode(encoded);
  expect([toHex(m.channelId), m.epoch, m.stream, m.generation, toHex(m.baseKey.expose())]).toEqual([
    str(c, "channel_id"),
    u64(c, "epoch"),
    byte(c, "stream"),
    u64(c, "generation"),
    str(c, "base_key"),
  ]);
  expect(toHex(m.encode())).toBe(toHex(encoded));
}

function judgeNameCommit(c: Obj): void {
  const commit = identity.nameCommit(bytes(c, "salt", 16), str(c, "display_name"));
  expect(commit && toHex(commit)).toBe(str(c, "name_commit"));
}

/**
 * A consent: the signed bytes, the signature (verified under `ik_pub`, and re-made from the
 * seed), and the 97-byte type 3 plaintext, encoded and decoded.
 */
function judgeConsent(c: Obj): void {
  const ikPub = bytes(c, "ik_pub", 32);
  const agreementHash = bytes(c, "agreement_hash", 32);
  const attestations = byte(c, "attestations");
  const signed = messages.consentSignedBytes(
    utf8(str(c, "session_id")),
    bytes(c, "participant_id", 16),
    agreementHash,
    attestations,
  );
  expect(toHex(signed)).toBe(str(c, "encoded"));
  const signature = bytes(c, "signature", 64);
  identity.verify(ikPub, signed, signature);
  const id = identity.Identity.fromSecrets(bytes(c, "ik_seed", 32), ONES);
  expect([toHex(id.ikPub()), toHex(id.sign(signed))]).toEqual([toHex(ikPub), toHex(signature)]);
  const ack = new messages.ConsentAck(agreementHash, attestations, signature);
  const plaintext = bytes(c, "plaintext");
  expect(plaintext.length).toBe(97);
  expect(toHex(ack.encode())).toBe(toHex(plaintext));
  const back = messages.ConsentAck.decode(plaintext);
  expect([toHex(back.agreementHash), back.attestations, toHex(back.signature)]).toEqual([
    toHex(agreementHash),
    attestations,
    toHex(signature),
  ]);
}

function judgeSenderKeyAck(c: Obj): void {
  const ack = new messages.SenderKeyAck(
    bytes(c, "channel_id", 16),
    u64(c, "epoch"),
    byte(c, "stream"),
    u64(c, "generation"),
  );
  const encoded = bytes(c, "encoded");
  expect(toHex(ack.encode())).toBe(toHex(encoded));
  const back = messages.SenderKeyAck.decode(encoded);
  expect([toHex(back.channelId), back.epoch, back.stream, back.generation]).toEqual([
    toHex(ack.channelId),
    ack.epoch,
    ack.stream,
    ack.generation,
  ]);
}

/** A display name: the type 4 plaintext, encoded and decoded, and its roster commitment. */
function judgeName(c: Obj): void {
  const msg = new messages.NameMsg(bytes(c, "salt", 16), str(c, "display_name"));
  const encoded = bytes(c, "encoded");
  expect(toHex(msg.encode())).toBe(toHex(encoded));
  const back = messages.NameMsg.decode(encoded);
  expect([toHex(back.salt), back.name]).toEqual([toHex(msg.salt), msg.name]);
  expect(toHex(msg.commit())).toBe(str(c, "name_commit"));
  const commit = identity.nameCommit(msg.salt, msg.name);
  expect(commit && toHex(commit), "the roster's commitment").toBe(toHex(msg.commit()));
}

function judgePskHint(c: Obj): void {
  expect(toHex(messages.pskHint(new Secret32(bytes(c, "psk", 32))))).toBe(str(c, "hint"));
}

/** An envelope's fields as the vectors write them: bytes in hex, `seq` as a u64 string. */
function envelopeFields(e: Envelope): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v instanceof Uint8Array) {
      out[k] = toHex(v);
    } else if (typeof v === "bigint") {
      out[k] = v.toString();
    } else if (typeof v === "string" || typeof v === "number") {
      out[k] = v;
    }
  }
  return out;
}

/**
 * An envelope: the data string parses to an envelope whose fields are the case's, and the
 * fields serialize to exactly that string.
 */
function judgeEnvelope(c: Obj): void {
  const data = str(c, "data");
  const parsed = envelopeFromData(data);
  if (parsed === undefined) {
    throw new Error(`${str(c, "name")}: the data does not parse`);
  }
  expect(envelopeFields(parsed), str(c, "name")).toStrictEqual(c["envelope"]);
  expect(envelopeToData(parsed), `${str(c, "name")}: canonical form`).toBe(data);
}

function judgeMessage(c: Obj): boolean {
  switch (str(c, "type")) {
    case "envelope":
      judgeEnvelope(c);
      return true;
    case "announcement":
      judgeAnnouncement(c);
      return true;
    case "delegation":
      judgeDelegation(c);
      return true;
    case "sender_key":
      judgeSenderKey(c);
      return true;
    case "name_commit":
      judgeNameCommit(c);
      return true;
    case "consent":
      judgeConsent(c);
      return true;
    case "sender_key_ack":
      judgeSenderKeyAck(c);
      return true;
    case "name":
      judgeName(c);
      return true;
    case "psk_hint":
      judgePskHint(c);
      return true;
    default:
      return false;
  }
}

/**
 * The TS twin's constants as constants.json writes them: every exported UPPER_SNAKE number,
 * bigint (a u64: a decimal string) or byte string (hex) of core/, under its lowercase name
 * (durations are `_MS` here and `_ms` there), plus the codes of kinds, roles and message
 * types. Collected, not listed, so a constant in either twin alone fails the comparison.
 */
function tsConstants(): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  const modules: Record<string, unknown>[] = [codes, doc, frame, identity, messages, pairwise, roster];
  for (const mod of modules) {
    for (const [k, v] of Object.entries(mod)) {
      if (!/^[A-Z][A-Z0-9_]*$/.test(k)) {
        continue;
      }
      let value: number | string;
      if (typeof v === "number") {
        value = v;
      } else if (typeof v === "bigint") {
        value = v.toString();
      } else if (v instanceof Uint8Array) {
        value = toHex(v);
      } else {
        continue;
      }
      const key = k.toLowerCase();
      if (key in out) {
        throw new Error(`${key} exported twice`);
      }
      out[key] = value;
    }
  }
  const derived: Record<string, number> = {
    kind_joint: roster.Kind.Joint,
    kind_caucus: roster.Kind.Caucus,
    kind_breakout: roster.Kind.Breakout,
    role_mediator: identity.roleCode("mediator"),
    role_co_mediator: identity.roleCode("co_mediator"),
    role_party: identity.roleCode("party"),
    role_counsel: identity.roleCode("counsel"),
    role_observer: identity.roleCode("observer"),
    msg_type_sender_key: pairwise.MsgType.SenderKey,
    msg_type_sender_key_ack: pairwise.MsgType.SenderKeyAck,
    msg_type_consent: pairwise.MsgType.Consent,
    msg_type_name: pairwise.MsgType.Name,
    msg_type_doc_key: pairwise.MsgType.DocKey,
    msg_type_doc_ack: pairwise.MsgType.DocAck,
  };
  for (const [k, v] of Object.entries(derived)) {
    if (k in out) {
      throw new Error(`${k} twice`);
    }
    out[k] = v;
  }
  return out;
}

describe("the vector directory", () => {
  it(`${DIR} holds exactly the vector files`, () => {
    expect(existsSync(DIR), `${DIR} does not exist`).toBe(true);
    const present = readdirSync(DIR).sort();
    for (const name of present) {
      expect(FILES as readonly string[], `${name} is not a vector file`).toContain(name);
      expect(statSync(path.join(DIR, name)).isFile(), `${name} is not a file`).toBe(true);
    }
    expect(present).toEqual([...FILES]);
  });
});

judgeCases("frame.json", (c) => (c["steps"] !== undefined ? judgeRatchet(c) : judgeFrame(c)));
judgeCases("roster.json", judgeRoster);
judgeCases("pairwise.json", judgePairwise);
judgeCases("code.json", judgeCode);
judgeCases("doc.json", judgeDoc);
judgeCases("replay.json", judgeReplay);
judgeCases("negative.json", judgeNegative);
judgeCases("messages.json", judgeMessage);

describe("constants.json", () => {
  it("equals the TS twin's constants, alarm codes, failure reasons and error codes", () => {
    const file = load("constants.json");
    const mine = tsConstants();
    expect(file).toStrictEqual({
      suite: "confer/1",
      constants: mine,
      alarm_codes: [...codes.ALARM_CODES],
      failure_reasons: [...codes.FAILURE_REASONS],
      error_codes: [...ERROR_CODES],
    });
    tally.set("constants.json", {
      cases: Object.keys(mine).length + codes.ALARM_CODES.length + codes.FAILURE_REASONS.length + ERROR_CODES.length,
      judged: Object.keys(mine).length + codes.ALARM_CODES.length + codes.FAILURE_REASONS.length + ERROR_CODES.length,
    });
  });

  it("reports what was judged", () => {
    const lines = [...tally.entries()].map(
      ([f, t]) => `${f}: ${t.judged.toString()}/${t.cases.toString()}`,
    );
    console.log(`confer/1 vectors in ${DIR}\n  ${lines.join("\n  ")}`);
    expect(tally.size).toBe(FILES.length);
    for (const [f, t] of tally) {
      expect(t.judged, f).toBe(t.cases);
    }
  });
});

