// Twin of crates/client/src/core/docs.rs: documents shared into a room (e2ee §8.7). The sharer
// seals the file in chunks under a fresh key and sends the key (pairwise type 5) to the present
// members of the room's current roster only; the shell uploads the chunks, which the server
// stores without the key. A manager may carry a document into another room: re-keyed (a new id
// and key), sent to that room's present members.

import { sha256 } from "@noble/hashes/sha2.js";

import { Role } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { ChannelId, ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import type { Core } from "./client.js";
import { id16 } from "./client.js";
import { FailureReason } from "./codes.js";
import { DocAck, DocCipher, DocKeyMsg, MAX_DOC_NAME_BYTES, MAX_DOC_TYPE_BYTES, docAckSignedBytes } from "./doc.js";
import { bytesEqual, toHex, utf8Encode } from "./enc.js";
import { roleFromCode, verify } from "./identity.js";
import { OpenError } from "./lib.js";
import type { Id16 } from "./lib.js";
import { MsgType } from "./pairwise.js";
import { isAway } from "./roster.js";
import type { Roster } from "./roster.js";
import { Secret32 } from "./secret.js";

/** Documents whose key a client holds at most (bounded like the other per-room state). */
export const MAX_DOCS = 256;

/** A document sealed for upload: its id and its chunks, in order. */
export interface SealedDoc {
  docId: Id16;
  chunks: Uint8Array[];
}

/** Why a document could not be shared (Rust: `ShareRefused`). */
export class ShareRefused extends Error {
  constructor(readonly reason: "not_secured" | "bad_name") {
    super(reason === "not_secured" ? "not secured in that room" : "a document needs a name of 1 to 255 bytes and a plain media type");
    this.name = "ShareRefused";
  }
}

/** What a client shows of a document whose key it holds. */
export interface DocInfo {
  docId: Id16;
  from: ParticipantId;
  room: ChannelId;
  name: string;
  mediaType: string;
  size: bigint;
  /** The SHA-256 of its content (what an acknowledgment of this version names). */
  sha256: Uint8Array;
}

/** A document whose key I hold. */
export interface HeldDoc {
  from: ParticipantId;
  room: ChannelId;
  msg: DocKeyMsg;
}

/**
 * The present members of a roster other than me, with their session keys: who gets a room's
 * keys (sender keys, document keys).
 */
export function presentOthers(roster: Roster, myId: Id16): (readonly [Id16, Uint8Array])[] {
  return roster.members.filter((m) => !isAway(m) && !bytesEqual(m.participantId, myId)).map((m) => [m.participantId, m.ekPub] as const);
}

function infoOf(d: HeldDoc): DocInfo {
  return { docId: d.msg.docId.slice(), from: d.from, room: d.room, name: d.msg.name, mediaType: d.msg.mediaType, size: d.msg.size, sha256: d.msg.sha256.slice() };
}

/**
 * Seals `file` for the room I am secured in (`into` undefined), or, for managers, for another
 * room whose roster I signed (carrying a document, re-keyed for that room's members). Resolves
 * to the chunks to upload; once they are, `publishDocument` sends the key to the people then
 * present in that room (so nobody is told of a file that cannot be fetched yet). Rejects with
 * `ShareRefused`.
 */
function shareDocument(this: Core, into: ChannelId | undefined, name: string, mediaType: string, file: Uint8Array): Promise<SealedDoc> {
  return this.serial(() => {
    const n = utf8Encode(name);
    const t = utf8Encode(mediaType);
    if (
      n === undefined ||
      t === undefined ||
      n.length === 0 ||
      n.length > MAX_DOC_NAME_BYTES ||
      t.length > MAX_DOC_TYPE_BYTES ||
      !t.every((c) => c >= 0x21 && c < 0x7f)
    ) {
      throw new ShareRefused("bad_name");
    }
    let room: ChannelId;
    if (into === undefined) {
      const s = this.secured();
      if (s === undefined) {
        throw new ShareRefused("not_secured");
      }
      room = s;
    } else if (this.isManager()) {
      room = into;
    } else {
      throw new ShareRefused("not_secured");
    }
    const cur = this.currentChain(room);
    const head = cur?.[1].chain.head()?.roster;
    const me = this.me;
    if (cur === undefined || head === undefined || me === undefined) {
      throw new ShareRefused("not_secured");
    }
    // Sharing into my own room needs my present entry; a manager carrying a document may be
    // away from the room (every roster lists it).
    const mine = this.myEntry(head);
    if (mine === undefined || (into === undefined && isAway(mine))) {
      throw new ShareRefused("not_secured");
    }
    const docId = new Uint8Array(16);
    this.rng.fill(docId);
    const msg = new DocKeyMsg(cur[0].slice(), docId, Secret32.random(this.rng), BigInt(file.length), sha256(file), name, mediaType);
    const chunks = new DocCipher(msg.fileKey, docId).sealAll(file);
    if (this.docsSealed.size >= MAX_DOCS) {
      throw new ShareRefused("not_secured");
    }
    this.docsSealed.set(toHex(docId), { from: me.pid, room, msg });
    return Promise.resolve({ docId, chunks });
  });
}

/**
 * Sends the key of a document I sealed (its chunks are uploaded) to the people present in its
 * room now (pairwise type 5), under the room's current chain. Rejects with `ShareRefused` when I
 * am no longer secured there (or, carrying, no longer a manager): the key goes nowhere.
 */
function publishDocument(this: Core, docId: Id16): Promise<void> {
  return this.serial(async () => {
    const k = toHex(docId);
    const d = this.docsSealed.get(k);
    if (d === undefined) {
      throw new ShareRefused("not_secured");
    }
    this.docsSealed.delete(k);
    const carrying = this.secured() !== d.room;
    if (carrying && !this.isManager()) {
      throw new ShareRefused("not_secured");
    }
    const cur = this.currentChain(d.room);
    const head = cur?.[1].chain.head()?.roster;
    const me = this.me;
    if (cur === undefined || head === undefined || me === undefined) {
      throw new ShareRefused("not_secured");
    }
    const mine = this.myEntry(head);
    if (mine === undefined || (!carrying && isAway(mine))) {
      throw new ShareRefused("not_secured");
    }
    const m0 = d.msg;
    const msg = new DocKeyMsg(cur[0].slice(), m0.docId, m0.fileKey, m0.size, m0.sha256, m0.name, m0.mediaType);
    const pt = msg.encode();
    try {
      for (const [id, ek] of presentOthers(head, me.id)) {
        await this.sendPairwise(id, ek, MsgType.DocKey, pt, undefined);
      }
    } finally {
      pt.fill(0);
    }
    this.keepDoc({ from: d.from, room: d.room, msg });
  });
}

/**
 * Keeps a document I sealed for myself only: its key goes to nobody (the mediator's notes; the
 * server stores the chunks, and the key dies with this client at the end). Throws `ShareRefused`.
 */
function keepDocumentPrivate(this: Core, docId: Id16): void {
  const k = toHex(docId);
  const d = this.docsSealed.get(k);
  if (d === undefined) {
    throw new ShareRefused("not_secured");
  }
  this.docsSealed.delete(k);
  this.keepDoc(d);
}

/** Opens a document whose key I hold from its chunks, in order; checks its size and hash. Throws `OpenError`. */
function openDocument(this: Core, docId: Id16, chunks: readonly Uint8Array[]): Uint8Array {
  const d = this.docs.get(toHex(docId));
  if (d === undefined) {
    throw new OpenError();
  }
  return new DocCipher(d.msg.fileKey, d.msg.docId).openAll(chunks, d.msg);
}

/** The documents whose key I hold. */
function documents(this: Core): DocInfo[] {
  return [...this.docs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, d]) => infoOf(d));
}

/**
 * Acknowledges one version of a document I hold (a settlement draft): signs its SHA-256 with my
 * identity key and sends that to the mediator (pairwise type 6). Rejects with `ShareRefused`.
 */
function acknowledgeDocument(this: Core, docId: Id16): Promise<void> {
  return this.serial(async () => {
    const d = this.docs.get(toHex(docId));
    const me = this.me;
    const identity = this._identity;
    const m = this.mediator;
    if (d === undefined || me === undefined || identity === undefined || m === undefined || m.pid === me.pid) {
      throw new ShareRefused("not_secured");
    }
    const mId = id16(m.pid);
    if (mId === undefined) {
      throw new ShareRefused("not_secured");
    }
    const sha = d.msg.sha256;
    const ack = new DocAck(sha.slice(), identity.sign(docAckSignedBytes(me.session, me.id, sha)));
    await this.sendPairwise(mId, m.ek, MsgType.DocAck, ack.encode(), undefined);
  });
}

/** Mediators: who acknowledged which document I hold (verified signatures), by document. */
function documentAcks(this: Core): [Id16, ParticipantId][] {
  const out: [Id16, ParticipantId][] = [];
  for (const a of this.docAcks.values()) {
    for (const d of this.docs.values()) {
      if (bytesEqual(d.msg.sha256, a.sha256)) {
        out.push([d.msg.docId.slice(), a.from]);
      }
    }
  }
  return out.sort(([x, p], [y, q]) => {
    const c = toHex(x).localeCompare(toHex(y));
    return c !== 0 ? c : p < q ? -1 : p > q ? 1 : 0;
  });
}

// Mediators: a participant's acknowledgment of a version (type 6), verified under the identity
// key this client holds for it, of a version this client holds.
function onDocAck(this: Core, from: ParticipantId, fromId: Id16, pt: Uint8Array): void {
  let ack: DocAck;
  try {
    ack = DocAck.decode(pt);
  } catch {
    this.failed(FailureReason.PairwiseDecode);
    return;
  }
  if (!this.isMediator() || ![...this.docs.values()].some((d) => bytesEqual(d.msg.sha256, ack.sha256))) {
    return;
  }
  const me = this.me;
  const peer = this.manager.peers.get(from);
  if (me === undefined || !peer?.consentOk) {
    return;
  }
  try {
    verify(peer.ann.ikPub, docAckSignedBytes(me.session, fromId, ack.sha256), ack.signature);
  } catch {
    return;
  }
  const k = `${from}:${toHex(ack.sha256)}`;
  if (this.docAcks.size < MAX_DOCS * 4 && !this.docAcks.has(k)) {
    this.docAcks.set(k, { from, sha256: ack.sha256.slice() });
    this.events.push({ type: "document_acknowledged", participantId: from, sha256: ack.sha256.slice() });
  }
}

function keepDoc(this: Core, d: HeldDoc): void {
  const k = toHex(d.msg.docId);
  if (this.docs.size >= MAX_DOCS && !this.docs.has(k)) {
    return;
  }
  this.docs.set(k, d);
  this.events.push({ type: "document", doc: infoOf(d) });
}

// A document's key (type 5): taken only for a room's current chain whose roster lists the
// sender (present, or a manager carrying it in) and me as present; never a second time.
function onDocKey(this: Core, from: ParticipantId, fromId: Id16, pt: Uint8Array): void {
  let msg: DocKeyMsg;
  try {
    msg = DocKeyMsg.decode(pt);
  } catch {
    this.failed(FailureReason.PairwiseDecode);
    return;
  }
  const room = [...this.rooms.entries()].find(([, r]) => r.current !== undefined && bytesEqual(r.current, msg.channelId))?.[0];
  if (room === undefined) {
    return;
  }
  const head = this.chains.get(toHex(msg.channelId))?.chain.head()?.roster;
  if (head === undefined) {
    return;
  }
  const sender = head.member(fromId);
  const role = sender === undefined ? undefined : roleFromCode(sender.role);
  const senderOk = sender !== undefined && (!isAway(sender) || (role !== undefined && Role.isManager(role)));
  const mine = this.myEntry(head);
  const mePresent = mine !== undefined && !isAway(mine);
  if (!senderOk || !mePresent || this.docs.has(toHex(msg.docId))) {
    msg.fileKey.zeroize();
    return;
  }
  this.keepDoc({ from, room, msg });
}

/** The methods of docs.rs's `impl Core`. */
export function docsMethods() {
  return { shareDocument, publishDocument, keepDocumentPrivate, openDocument, documents, acknowledgeDocument, documentAcks, onDocAck, keepDoc, onDocKey };
}
export type DocsMethods = ReturnType<typeof docsMethods>;
