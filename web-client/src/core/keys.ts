// Twin of crates/client/src/core/keys.rs: pairwise messages, sender keys in and out, bounded
// key state, the ratchet.

import type { ChannelId, ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { Core } from "./client.js";
import { durationSince, id16, pidOf, sortedEntries } from "./client.js";
import { FailureReason, KEYFRAME_REQUEST_EVERY_MS, MAX_HELD_KEYS, MAX_OLD_GENERATIONS, MAX_PEERS, RATCHET_EVERY_MS } from "./codes.js";
import { bytesEqual, fromHex, toHex } from "./enc.js";
import {
  FrameCtx,
  MAX_GENERATION,
  NeedNewGeneration,
  Opener,
  STREAM_CAMERA,
  STREAM_DATA,
  STREAM_SCREEN,
  Sealer,
  SenderKeyMsg,
} from "./frame.js";
import type { Id16 } from "./lib.js";
import { SenderKeyAck, pskHint } from "./messages.js";
import * as pairwise from "./pairwise.js";
import { presentOthers } from "./docs.js";
import { MsgType, Pair, msgTypeFromCode } from "./pairwise.js";
import { isAway } from "./roster.js";
import type { Roster } from "./roster.js";
import { Secret32 } from "./secret.js";

// Rust keys these maps by tuples of `Id16`s and stream numbers; here by strings made of their
// hex and decimal forms, which sort as the tuples do (fixed-width hex, one-digit streams).

/** Sender keys held for a roster that has not arrived, per sender. */
const HELD_KEYS_PER_SENDER = 16;

/** (channel, stream): a key of `sealers`. */
export function streamKey(cid: Id16, stream: number): string {
  return `${toHex(cid)}:${stream.toString()}`;
}

/** The (channel, stream) of a `streamKey`. */
export function parseStreamKey(k: string): [Id16, number] {
  const [c = "", s = ""] = k.split(":");
  return [fromHex(c), Number(s)];
}

/** (channel, sender, stream): a key of `openers` and `acked`. */
export function openerKey(cid: Id16, sender: Id16, stream: number): string {
  return `${toHex(cid)}:${toHex(sender)}:${stream.toString()}`;
}

/** The (channel, sender, stream) of an `openerKey`. */
export function parseOpenerKey(k: string): [Id16, Id16, number] {
  const [c = "", s = "", st = ""] = k.split(":");
  return [fromHex(c), fromHex(s), Number(st)];
}

/** (channel, sender): a key of `keyEpochs`. */
export function pairKey(cid: Id16, sender: Id16): string {
  return `${toHex(cid)}:${toHex(sender)}`;
}

/** Wipes every generation an opener holds (Rust: zeroized when dropped). */
export function zeroizeOpener(o: Opener): void {
  for (const g of o.generations()) {
    o.removeGeneration(g);
  }
}

/** My current generation for one (channel, stream), its sealer, and when it last stepped. */
export interface SealerState {
  generation: bigint;
  sealer: Sealer;
  at: number | undefined;
}

/** Sender keys: my sealers per (room, stream), others' openers, and what expires when. */
export class KeyState {
  /** Per (channel, sender, stream): the newest epoch I acknowledged a key for. */
  acked = new Map<string, bigint>();
  /** (channel, stream) -> my current generation, its sealer, and when it last stepped. */
  sealers = new Map<string, SealerState>();
  nextGeneration = 0n;
  /** (channel, sender, stream) -> receive keys. */
  openers = new Map<string, Opener>();
  /** (channel, sender) -> the epoch of the newest key installed. */
  keyEpochs = new Map<string, bigint>();
  /** When, which channel and sender, and which generation (`undefined`: all of them). */
  expiries: { at: number; cid: Id16; sender: Id16; generation: bigint | undefined }[] = [];
  earlyKeys: { at: number; fromId: Id16; msg: SenderKeyMsg }[] = [];
  /** When I last asked each publisher (id hex) for a keyframe. */
  keyframeAsked = new Map<string, number>();
  channelExpiries: { at: number; cid: Id16; ch: ChannelId }[] = [];
  /** The EK each member (id hex) was last listed with (bounded like the other per-member state). */
  ekSeen = new Map<string, Uint8Array>();
}

/** How many senders' receive keys I hold for a server channel. */
function receiveKeysFor(this: Core, ch: ChannelId): number {
  const cids = new Set<string>(
    [...this.chains.entries()].filter(([, s]) => s.serverChannel === ch).map(([c]) => c),
  );
  return [...this.keys.openers.keys()].filter((k) => {
    const [c, , s] = parseOpenerKey(k);
    return cids.has(toHex(c)) && s === STREAM_DATA;
  }).length;
}

/**
 * How many generations of `from`'s key for `stream` I hold in the current chain of a server
 * channel (bounded: the current one and `MAX_OLD_GENERATIONS` replaced ones).
 */
function heldGenerations(this: Core, ch: ChannelId, from: ParticipantId, stream: number): number {
  const cur = this.currentChain(ch);
  const sender = id16(from);
  if (cur === undefined || sender === undefined) {
    return 0;
  }
  return this.keys.openers.get(openerKey(cur[0], sender, stream))?.generations().length ?? 0;
}

// Seals `pt` to `to` (pairwise, §6) and relays it; with an invite secret in auth_psk.
async function sendPairwise(
  this: Core,
  toId: Id16,
  toEk: Uint8Array,
  msgType: MsgType,
  pt: Uint8Array,
  psk: Secret32 | undefined,
): Promise<void> {
  const me = this.me;
  const to = pidOf(toId);
  if (me === undefined || to === undefined) {
    return;
  }
  const identity = this._identity;
  if (identity === undefined) {
    return;
  }
  const seq = this.seqs.nextSend(toId);
  const pair = new Pair(me.session, me.id, toId);
  let sealed: pairwise.Sealed;
  try {
    sealed = await pairwise.seal(this.rng, identity, toEk, pair, msgType, seq, pt, psk);
  } catch {
    return;
  }
  this.relay(
    { participant: to },
    {
      k: "pw",
      t: msgType,
      seq,
      enc: sealed.enc,
      ct: sealed.ct,
      ...(psk === undefined ? {} : { hint: pskHint(psk) }),
    },
  );
}

/**
 * The sender's EK: from its announcement (mediator side: new keys a placed participant
 * announced, once announced: it seals with those), else the EK the newest roster I accepted
 * lists for it.
 */
function ekOf(this: Core, p: ParticipantId): Uint8Array | undefined {
  const peer = this.manager.peers.get(p);
  if (peer !== undefined) {
    return (peer.rekey?.ann ?? peer.ann).ekPub;
  }
  if (this.mediator?.pid === p) {
    return this.mediator.ek;
  }
  const id = id16(p);
  if (id === undefined) {
    return undefined;
  }
  const seen = this.keys.ekSeen.get(toHex(id));
  if (seen !== undefined) {
    return seen;
  }
  for (const [, s] of sortedEntries(this.chains)) {
    const m = s.chain.head()?.roster.member(id);
    if (m !== undefined) {
      return m.ekPub;
    }
  }
  return undefined;
}

// A roster advanced: a member listed with another EK than before lost its keys and announced
// new ones (§15.12). Everything held from its old keys goes at once (a replaced generation would
// refuse its new generations, numbered afresh), and its pairwise sequence numbers count from 0
// again.
function noteMemberKeys(this: Core, roster: Roster): void {
  const myId = this.me?.id;
  for (const m of roster.members) {
    if (myId !== undefined && bytesEqual(m.participantId, myId)) {
      continue;
    }
    const k = toHex(m.participantId);
    const before = this.keys.ekSeen.get(k);
    if (before !== undefined && bytesEqual(before, m.ekPub)) {
      continue;
    }
    if (before !== undefined) {
      for (const [key, o] of [...this.keys.openers.entries()]) {
        if (key.split(":")[1] === k) {
          zeroizeOpener(o);
          this.keys.openers.delete(key);
        }
      }
      for (const key of [...this.keys.acked.keys()]) {
        if (key.split(":")[1] === k) {
          this.keys.acked.delete(key);
        }
      }
      for (const key of [...this.keys.keyEpochs.keys()]) {
        if (key.split(":")[1] === k) {
          this.keys.keyEpochs.delete(key);
        }
      }
      this.keys.expiries = this.keys.expiries.filter((e) => toHex(e.sender) !== k);
      this.keys.earlyKeys = this.keys.earlyKeys.filter((e) => {
        const mine = toHex(e.fromId) === k;
        if (mine) {
          e.msg.baseKey.zeroize();
        }
        return !mine;
      });
      this.seqs.forgetReceived(m.participantId);
      // It lost my name with its keys.
      this.named.delete(k);
    }
    if (this.keys.ekSeen.size < 4 * MAX_PEERS || before !== undefined) {
      this.keys.ekSeen.set(k, m.ekPub.slice());
    }
  }
}

async function onPairwise(
  this: Core,
  from: ParticipantId,
  t: number,
  seq: bigint,
  enc: Uint8Array,
  ct: Uint8Array,
  hint: Uint8Array | undefined,
  now: number,
): Promise<void> {
  const msgType = msgTypeFromCode(t);
  if (msgType === undefined || enc.length !== 32) {
    this.failed(FailureReason.PairwiseHeader);
    return;
  }
  const ek = this.ekOf(from);
  if (ek === undefined) {
    // A key may arrive before the roster that names its sender.
    if (this.pending.length < MAX_HELD_KEYS) {
      this.pending.push({ from, env: { k: "pw", t, seq, enc, ct, ...(hint === undefined ? {} : { hint }) } });
    }
    return;
  }
  const me = this.me;
  const fromId = id16(from);
  if (me === undefined || fromId === undefined) {
    return;
  }
  if (!this.seqs.isFresh(fromId, seq)) {
    this.failed(FailureReason.PairwiseReplay);
    return;
  }
  // The hint names the invite secret; no trial decryption.
  let invite: number | undefined;
  if (hint !== undefined) {
    const i = this.manager.invites.findIndex((x) => bytesEqual(x.hint, hint));
    if (i < 0) {
      this.failed(FailureReason.PairwiseUnknownPsk);
      return;
    }
    invite = i;
  }
  const pair = new Pair(me.session, fromId, me.id);
  const identity = this._identity;
  if (identity === undefined) {
    return;
  }
  const psk = invite === undefined ? undefined : this.manager.invites[invite]?.psk;
  let pt: Uint8Array;
  try {
    pt = await pairwise.open(identity, ek, pair, msgType, seq, { enc, ct }, psk);
  } catch {
    this.failed(FailureReason.PairwiseOpen);
    return;
  }
  // Plaintexts may hold keys: wiped when done.
  try {
    this.seqs.accept(fromId, seq);
    switch (msgType) {
      case MsgType.Consent:
        await this.onConsent(from, pt, invite);
        break;
      case MsgType.SenderKey:
        await this.onSenderKey(fromId, pt, now);
        break;
      case MsgType.SenderKeyAck:
        try {
          SenderKeyAck.decode(pt);
          this._stats.acksReceived += 1;
        } catch {
          this.failed(FailureReason.PairwiseDecode);
        }
        break;
      case MsgType.Name:
        this.onName(from, fromId, pt);
        break;
      case MsgType.DocKey:
        this.onDocKey(from, fromId, pt);
        break;
      case MsgType.DocAck:
        this.onDocAck(from, fromId, pt);
        break;
    }
  } finally {
    pt.fill(0);
  }
}

async function onSenderKey(this: Core, fromId: Id16, pt: Uint8Array, now: number): Promise<void> {
  let msg: SenderKeyMsg;
  try {
    msg = SenderKeyMsg.decode(pt);
  } catch {
    this.failed(FailureReason.PairwiseDecode);
    return;
  }
  // The sender saw the roster before I did (rosters and keys come from different senders, so
  // their order is not guaranteed): keep the key until my roster arrives; at most a few per
  // sender, so one member cannot crowd out everyone else's.
  const mine = this.keys.earlyKeys.filter((e) => bytesEqual(e.fromId, fromId)).length;
  if (
    !(await this.installKey(fromId, msg, now)) &&
    this.keys.earlyKeys.length < MAX_HELD_KEYS &&
    mine < HELD_KEYS_PER_SENDER
  ) {
    this.keys.earlyKeys.push({ at: now, fromId, msg });
  } else {
    msg.baseKey.zeroize();
  }
}

/** Installs a sender key; `false` if it is for an epoch I have not seen yet. */
async function installKey(this: Core, fromId: Id16, msg: SenderKeyMsg, now: number): Promise<boolean> {
  if (this.me === undefined) {
    return true;
  }
  const head = this.chains.get(toHex(msg.channelId))?.chain.head();
  if (head === undefined) {
    return false;
  }
  if (msg.epoch > head.roster.epoch) {
    return false;
  }
  // Keys only under a room's current chain: a chain a newer one replaced keys nobody.
  if (![...this.rooms.values()].some((r) => r.current !== undefined && bytesEqual(r.current, msg.channelId))) {
    return true;
  }
  // Only members the mediator signed into the current epoch get to key this channel, and
  // only if I am in it too (with my own keys). A key for an older epoch from a sender still
  // present comes from a sender that had not seen the newest roster yet (rosters and keys
  // come from different senders): frames under it are in flight, so it is kept like a
  // replaced generation (KEEP_OLD_KEYS), never as the sender's current one.
  const sender = head.roster.member(fromId);
  const senderOk = sender !== undefined && !isAway(sender);
  const meOk = this.myEntry(head.roster) !== undefined;
  const headEpoch = head.roster.epoch;
  if (!senderOk || !meOk) {
    return true;
  }
  const superseded = msg.epoch < headEpoch;
  const me = this.me;
  const ctx = FrameCtx.create(me.session, msg.channelId, fromId, msg.stream);
  if (ctx === undefined) {
    return true;
  }
  // A generation beyond the KID range, one already held, or one older than the newest held
  // is refused without an acknowledgment: a sender numbers its generations from one rising
  // counter and the relay keeps its order, so such a key could never be used (and installing
  // one again would reset its replay windows).
  const key = openerKey(msg.channelId, fromId, msg.stream);
  const existing = this.keys.openers.get(key);
  const stale =
    existing !== undefined && (existing.holds(msg.generation) || existing.generations().some((g) => g > msg.generation));
  if (msg.generation > MAX_GENERATION || stale) {
    return true;
  }
  const keep = this.cfg.keepOldKeysMs;
  let opener = existing;
  if (opener === undefined) {
    opener = new Opener(ctx);
    this.keys.openers.set(key, opener);
  }
  opener.addGeneration(msg.generation, msg.baseKey.expose());
  // Bounded: the current generation and at most MAX_OLD_GENERATIONS replaced ones.
  const held = opener.generations();
  const excess = Math.max(0, held.length - (1 + MAX_OLD_GENERATIONS));
  const dropped = held.slice(0, excess);
  for (const g of dropped) {
    opener.removeGeneration(g);
  }
  const older = held.slice(excess).filter((g) => g < msg.generation);
  this.keys.expiries = this.keys.expiries.filter(
    (e) =>
      !(
        bytesEqual(e.cid, msg.channelId) &&
        bytesEqual(e.sender, fromId) &&
        e.generation !== undefined &&
        dropped.includes(e.generation)
      ),
  );
  for (const g of older) {
    const e = { at: now + keep, cid: msg.channelId, sender: fromId, generation: g };
    if (
      !this.keys.expiries.some(
        (x) => bytesEqual(x.cid, e.cid) && bytesEqual(x.sender, e.sender) && x.generation === e.generation,
      )
    ) {
      this.keys.expiries.push(e);
    }
  }
  this._stats.keysReceived += 1;
  // At most one acknowledgment per sender, room, stream and epoch: a member that floods me
  // with keys cannot make me flood it back.
  const ackedEpoch = this.keys.acked.get(key);
  const acked = ackedEpoch !== undefined && ackedEpoch >= msg.epoch;
  if (!acked) {
    this.keys.acked.set(key, msg.epoch);
    await this.sendAck(fromId, msg);
  }
  if (superseded) {
    this.keys.expiries.push({ at: now + keep, cid: msg.channelId, sender: fromId, generation: msg.generation });
    return true;
  }
  this.keys.keyEpochs.set(pairKey(msg.channelId, fromId), msg.epoch);
  // A receiver that switched to a publisher's new video key for the room it is in asks for a
  // keyframe, so its picture restarts under the new key without waiting for the next periodic
  // one; at most once a second per publisher, however many keys arrive.
  const hereCid = this.myChannel === undefined ? undefined : this.channelIdOf(this.myChannel.id);
  const here = hereCid !== undefined && bytesEqual(hereCid, msg.channelId);
  const asked = this.keys.keyframeAsked.get(toHex(fromId));
  const due = asked === undefined || durationSince(now, asked) >= KEYFRAME_REQUEST_EVERY_MS;
  const publisher = pidOf(fromId);
  if (
    this.cfg.mediaReceive &&
    here &&
    due &&
    (msg.stream === STREAM_CAMERA || msg.stream === STREAM_SCREEN) &&
    publisher !== undefined
  ) {
    this.keys.keyframeAsked.set(toHex(fromId), now);
    this.out.push({ type: "keyframe_request", publisher });
  }
  return true;
}

// Acknowledges a sender key (msg type 2): counted by the sender, not waited for.
async function sendAck(this: Core, toId: Id16, msg: SenderKeyMsg): Promise<void> {
  const ek = this.ekOfId(toId);
  if (ek === undefined) {
    return;
  }
  const pt = new SenderKeyAck(msg.channelId, msg.epoch, msg.stream, msg.generation).encode();
  await this.sendPairwise(toId, ek, MsgType.SenderKeyAck, pt, undefined);
}

function ekOfId(this: Core, id: Id16): Uint8Array | undefined {
  const p = pidOf(id);
  return p === undefined ? undefined : this.ekOf(p);
}

// A fresh generation for each stream I send in `cid` (chat, and my media streams), sent to
// every other present member.
async function rekey(this: Core, cid: Id16, roster: Roster): Promise<void> {
  const streams = [STREAM_DATA, ...this.cfg.mediaStreams.filter((s) => s < STREAM_DATA)];
  const sorted = [...new Set(streams)].sort((a, b) => a - b);
  for (const stream of sorted) {
    await this.rekeyStream(cid, roster, stream);
  }
}

async function rekeyStream(this: Core, cid: Id16, roster: Roster, stream: number): Promise<void> {
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const ctx = FrameCtx.create(me.session, cid, me.id, stream);
  if (ctx === undefined) {
    return;
  }
  // One counter for every (channel, stream): a generation names one key of mine.
  const generation = this.keys.nextGeneration;
  this.keys.nextGeneration += 1n;
  const base = Secret32.random(this.rng);
  const msg = new SenderKeyMsg(cid, roster.epoch, stream, generation, base);
  const pt = msg.encode();
  for (const [id, ek] of presentOthers(roster, me.id)) {
    await this.sendPairwise(id, ek, MsgType.SenderKey, pt, undefined);
  }
  pt.fill(0);
  // Switch at once: the relay keeps each sender's messages in order, so every recipient holds
  // the key before the first frame under it.
  const k = streamKey(cid, stream);
  this.keys.sealers.get(k)?.sealer.zeroize();
  this.keys.sealers.set(k, { generation, sealer: new Sealer(ctx, base.expose(), generation), at: this.now });
  base.zeroize();
}

// The 60 s timer (§10): each of my sealers moves one ratchet step, so what its current key
// reveals about earlier frames is bounded; after step 15 it starts a new generation.
async function ratchetSealers(this: Core, now: number): Promise<void> {
  const due = sortedEntries(this.keys.sealers)
    .filter(([, s]) => s.at === undefined || durationSince(now, s.at) >= RATCHET_EVERY_MS)
    .map(([k]) => k);
  for (const k of due) {
    const s = this.keys.sealers.get(k);
    if (s === undefined) {
      continue;
    }
    if (s.at === undefined) {
      s.at = now;
      continue;
    }
    try {
      s.sealer.ratchet();
      s.at = now;
      continue;
    } catch (e) {
      if (!(e instanceof NeedNewGeneration)) {
        throw e;
      }
    }
    const [cid, stream] = parseStreamKey(k);
    const roster = this.chains.get(toHex(cid))?.chain.head()?.roster;
    if (roster !== undefined) {
      await this.rekeyStream(cid, roster, stream);
    } else {
      s.sealer.zeroize();
      this.keys.sealers.delete(k);
    }
  }
}

// Never encrypt to `cid` again under any of my current keys for it.
function dropSealers(this: Core, cid: Id16): void {
  for (const [k, s] of [...this.keys.sealers.entries()]) {
    if (bytesEqual(parseStreamKey(k)[0], cid)) {
      s.sealer.zeroize();
      this.keys.sealers.delete(k);
    }
  }
}

/** The methods of keys.rs's `impl Core`. */
export function keysMethods() {
  return {
    receiveKeysFor,
    heldGenerations,
    sendPairwise,
    ekOf,
    noteMemberKeys,
    onPairwise,
    onSenderKey,
    installKey,
    sendAck,
    ekOfId,
    rekey,
    rekeyStream,
    ratchetSealers,
    dropSealers,
  };
}
export type KeysMethods = ReturnType<typeof keysMethods>;
