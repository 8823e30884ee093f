// Twin of crates/client/src/core/chains.rs: roster chains per room, acceptance, successor
// links, what rosters mean for me.

import { ChannelId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import type { ChainState, Core, Delegation } from "./client.js";
import { RoomChains, durationSince, pidOf, sortedEntries } from "./client.js";
import { sessionCode } from "./code.js";
import { MAX_CHAIN_HISTORY, MAX_PEERS } from "./codes.js";
import { bytesEqual, fromHex, isAllZero, toHex } from "./enc.js";
import { SCOPE_ROSTERS } from "./identity.js";
import { STREAM_DATA } from "./frame.js";
import { parseOpenerKey, streamKey } from "./keys.js";
import type { Id16 } from "./lib.js";
import { Accepted, Chain, Kind, RosterError, SignedRoster, isAway } from "./roster.js";
import type { Member, Roster } from "./roster.js";

/** The epoch of the newest signed roster I hold for a server channel. */
function rosterEpoch(this: Core, ch: ChannelId): bigint | undefined {
  return this.headFor(ch)?.roster.epoch;
}

/** The members of the newest signed roster I hold for a server channel (present or away). */
function rosterMembers(this: Core, ch: ChannelId): ParticipantId[] {
  return this.membersFor(ch, () => true);
}

/** The members present (not flagged away) in the newest signed roster of a server channel. */
function rosterPresent(this: Core, ch: ChannelId): ParticipantId[] {
  return this.membersFor(ch, (m) => !isAway(m));
}

// The roster of a server channel: the head of its current chain. Every reader (sealing, the
// withheld and unsigned checks, the rosters shown) uses this one chain, so a room that
// emptied and filled again (a new chain, from epoch 1) is never judged by its old roster.
function headFor(this: Core, ch: ChannelId): SignedRoster | undefined {
  return this.currentChain(ch)?.[1].chain.head();
}

// The current chain of this server channel: the one that replaced every other chain of that
// room (§7.6), never merely the one that advanced last.
function currentChain(this: Core, ch: ChannelId): [Id16, ChainState] | undefined {
  const cid = this.rooms.get(ch)?.current;
  if (cid === undefined) {
    return undefined;
  }
  const s = this.chains.get(toHex(cid));
  return s === undefined ? undefined : [cid, s];
}

// My entry in a roster, only if it carries my own keys: an entry under my id with other keys
// is someone else's, and I am not in that roster (§7.5).
function myEntry(this: Core, roster: Roster): Member | undefined {
  const me = this.me;
  const id = this._identity;
  if (me === undefined || id === undefined) {
    return undefined;
  }
  const m = roster.member(me.id);
  return m !== undefined && bytesEqual(m.ikPub, id.ikPub()) && bytesEqual(m.ekPub, id.ekPub()) ? m : undefined;
}

function membersFor(this: Core, ch: ChannelId, keep: (m: Member) => boolean): ParticipantId[] {
  const h = this.headFor(ch);
  if (h === undefined) {
    return [];
  }
  const out: ParticipantId[] = [];
  for (const m of h.roster.members.filter(keep)) {
    const p = pidOf(m.participantId);
    if (p !== undefined) {
      out.push(p);
    }
  }
  return out;
}

/** The confer/1 channel id of a server channel's current chain, if I hold one. */
function channelId(this: Core, ch: ChannelId): Id16 | undefined {
  return this.currentChain(ch)?.[0];
}

function channelIdOf(this: Core, ch: ChannelId): Id16 | undefined {
  // The current chain of this server channel (a room that emptied and filled again gets a new
  // chain), if it lists me, with my own keys, as present.
  const cur = this.currentChain(ch);
  if (cur === undefined) {
    return undefined;
  }
  const head = cur[1].chain.head();
  if (head === undefined) {
    return undefined;
  }
  const m = this.myEntry(head.roster);
  return m !== undefined && !isAway(m) ? cur[0] : undefined;
}

// A chain verified against the mediator's key and every delegation I accepted.
function newChain(this: Core, session: Uint8Array, mIk: Uint8Array): Chain {
  const c = new Chain(session, mIk);
  for (const { ik, sig } of this.delegations) {
    // Each was verified when it was added; adding it again cannot fail.
    try {
      c.addDelegate(ik, SCOPE_ROSTERS, sig);
    } catch {
      // (Rust ignores the result too.)
    }
  }
  return c;
}

async function onRoster(
  this: Core,
  from: ParticipantId,
  ch: string,
  enc: Uint8Array,
  sig: Uint8Array,
  del: Delegation | undefined,
  now: number,
): Promise<void> {
  const m = this.mediator;
  if (m === undefined) {
    return;
  }
  const mPid = m.pid;
  const mIk = m.ik;
  // From the mediator, or from a co-mediator whose delegation comes with the roster (verified
  // under the mediator's key; the chain then checks the roster is signed by that very key,
  // listed with role 1).
  if (from !== mPid) {
    if (del === undefined) {
      this.alarm({ type: "roster_from_non_mediator" }, from);
      return;
    }
    if (!this.addDelegation(del.ik, del.sig)) {
      this.alarm({ type: "delegation_invalid" }, from);
      return;
    }
  }
  const serverChannel = ChannelId.parse(ch);
  if (sig.length !== 64 || serverChannel === undefined) {
    return;
  }
  let sr: SignedRoster;
  try {
    sr = SignedRoster.fromParts(enc, sig);
  } catch {
    this.alarm({ type: "roster", error: "malformed" }, toHex(enc.subarray(0, Math.min(enc.length, 8))));
    return;
  }
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const cid = sr.roster.channelId;
  const cidHex = toHex(cid);
  // A roster I already hold (a manager resending a room's history to someone new to a chain,
  // §7.5) changes nothing and is no rollback.
  const hash = toHex(sr.hash);
  if ([...this.chains.values()].some((s) => s.seen.has(hash))) {
    return;
  }
  // A chain that a newer chain of its room replaced stays closed (§7.6).
  if ([...this.rooms.values()].some((r) => r.retired.has(cidHex))) {
    this.alarm({ type: "chain_revived" }, cidHex);
    return;
  }
  // The envelope's room label is not signed: the signed kind must fit it, and a chain stays
  // bound to the room it was first seen for.
  let fits: boolean;
  switch (sr.roster.kind) {
    case Kind.Joint:
      fits = serverChannel === "joint";
      break;
    case Kind.Caucus:
      fits = serverChannel.startsWith("caucus-");
      break;
    case Kind.Breakout:
      fits = serverChannel.startsWith("breakout-");
      break;
  }
  const known = this.chains.get(cidHex);
  const rebound = known !== undefined && known.serverChannel !== serverChannel;
  if (!fits || rebound) {
    this.alarm({ type: "roster", error: "wrong_channel" }, cidHex);
    return;
  }
  // A chain (and its room binding) exists only once a roster for it was accepted: a refused
  // first roster binds nothing.
  const fresh = known === undefined;
  const chain = known !== undefined ? known.chain.clone() : this.newChain(me.session, mIk);
  const epoch = sr.roster.epoch;
  const prevHash = sr.roster.prevHash;
  let result: Accepted;
  try {
    result = chain.accept(sr);
  } catch (e) {
    if (!(e instanceof RosterError)) {
      throw e;
    }
    this.alarm({ type: "roster", error: e.kind }, `${cidHex}:${e.kind}`);
    return;
  }
  switch (result) {
    case Accepted.Advanced: {
      if (fresh && !this.adoptChain(serverChannel, cid, epoch, prevHash)) {
        this.alarm({ type: "chain_unlinked" }, cidHex);
        return;
      }
      const seen = new Set(this.chains.get(cidHex)?.seen ?? []);
      const h = chain.head();
      if (h !== undefined) {
        if (seen.size < MAX_CHAIN_HISTORY) {
          seen.add(toHex(h.hash));
        }
        // Managers keep the room's history, to hand newcomers (with the delegation it came
        // with, if a co-mediator signed it).
        if (this.isManager()) {
          const extra = from !== mPid ? del : undefined;
          this.recordLineage(serverChannel, h, extra);
        }
      }
      this.chains.set(cidHex, { chain, serverChannel, advancedAt: now, seen });
      this.adoptPlacements(cid);
      await this.afterRoster(cid, now);
      break;
    }
    case Accepted.Unchanged:
      break;
  }
}

// A new chain `cid` for a room: it becomes the room's current chain if it links to the chain
// I hold for that room (its first roster's prev_hash is that chain's head hash), or if I hold
// none, or if I am not in the head I hold (I left that chain and cannot know its later
// rosters; the new chain must still be a successor: epoch 1, non-zero link). The chain it
// replaces is closed for good (§7.6).
function adoptChain(this: Core, room: ChannelId, cid: Id16, epoch: bigint, prev: Uint8Array): boolean {
  const current = this.rooms.get(room)?.current;
  if (current !== undefined) {
    const head = this.chains.get(toHex(current))?.chain.head();
    const linked = head !== undefined && epoch === 1n && bytesEqual(prev, head.hash);
    const outside =
      (head === undefined || this.myEntry(head.roster) === undefined) && epoch === 1n && !isAllZero(prev);
    if (!linked && !outside) {
      return false;
    }
  }
  let r = this.rooms.get(room);
  if (r === undefined) {
    r = new RoomChains();
    this.rooms.set(room, r);
  }
  if (current !== undefined) {
    r.retired.add(toHex(current));
  }
  r.current = cid;
  return true;
}

// A roster advanced: rekey if I am present, drop keys of members who left, retry keys that
// arrived early, refresh the session code.
async function afterRoster(this: Core, cid: Id16, now: number): Promise<void> {
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const myId = me.id;
  const head = this.chains.get(toHex(cid))?.chain.head();
  if (head === undefined) {
    return;
  }
  this.noteMemberKeys(head.roster);
  const room = this.chains.get(toHex(cid))?.serverChannel;
  if (room !== undefined && this.myEntry(head.roster) !== undefined && this.listedRooms.size < 4 * MAX_PEERS) {
    this.listedRooms.add(room);
  }
  const present = new Set<string>(head.roster.members.filter((m) => !isAway(m)).map((m) => toHex(m.participantId)));
  const senders = new Set<string>();
  for (const k of [...this.keys.openers.keys()].sort()) {
    const [c, s] = parseOpenerKey(k);
    senders.add(`${toHex(c)}:${toHex(s)}`);
  }
  for (const pair of senders) {
    const [c = "", sender = ""] = pair.split(":");
    if (c === toHex(cid) && !present.has(sender)) {
      this.keys.expiries.push({
        at: now + this.cfg.keepOldKeysMs,
        cid: fromHex(c),
        sender: fromHex(sender),
        generation: undefined,
      });
    }
  }
  // My id with keys that are not mine: that entry is someone else, and I am not in this
  // roster (no keys sent, "securing" stays on).
  const entry = this.myEntry(head.roster);
  const mine = entry !== undefined && !isAway(entry);
  // (A client that resumed after losing its keys is first sent the room's history, which lists
  // its id with the keys it lost: that is no alarm until the room listed its new keys once.)
  const history = this.rejoined && !(room !== undefined && this.listedRooms.has(room));
  if (!mine && !history && head.roster.member(myId) !== undefined && this.myEntry(head.roster) === undefined) {
    this.alarm({ type: "wrong_self_key" }, `${toHex(cid)}:${head.roster.epoch.toString()}`);
  }
  if (mine && present.has(toHex(myId))) {
    await this.rekey(cid, head.roster);
    await this.sendName(head.roster);
  } else {
    // Away or gone from this channel: never encrypt to it again under an old key.
    this.dropSealers(cid);
  }
  const pending = this.pending;
  this.pending = [];
  for (const { from, env } of pending) {
    await this.onEnvelope(from, env, now);
  }
  const early = this.keys.earlyKeys;
  this.keys.earlyKeys = [];
  for (const e of early) {
    if (!(await this.installKey(e.fromId, e.msg, now)) && durationSince(now, e.at) < this.cfg.staleKeyAfterMs) {
      this.keys.earlyKeys.push(e);
    } else {
      e.msg.baseKey.zeroize();
    }
  }
  if (head.roster.kind === Kind.Joint) {
    const members = head.roster.members.map((m) => [m.participantId, m.ikPub] as const);
    const [, code] = sessionCode(head.roster.sessionId, members);
    if (this.code !== code) {
      this.code = code;
      this.events.push({ type: "session_code", code });
    }
  }
  this.checkNames();
  this.updateSecured();
}

function updateSecured(this: Core): void {
  const ch = this.myChannel?.id;
  let nowSecured: ChannelId | undefined;
  if (ch !== undefined) {
    const cid = this.channelIdOf(ch);
    if (cid !== undefined && this.keys.sealers.has(streamKey(cid, STREAM_DATA))) {
      nowSecured = ch;
    }
  }
  if (nowSecured !== this._secured) {
    this._secured = nowSecured;
    if (nowSecured !== undefined) {
      this.events.push({ type: "secured", channel: nowSecured });
    }
  }
}

// I am no longer in `ch`: stop sending under its keys now, and forget its receive keys once
// frames in flight have had time to arrive (unless I am back by then).
function leftChannel(this: Core, ch: ChannelId, now: number): void {
  const cids = sortedEntries(this.chains)
    .filter(([, s]) => s.serverChannel === ch)
    .map(([c]) => fromHex(c));
  for (const cid of cids) {
    this.dropSealers(cid);
    this.keys.channelExpiries.push({ at: now + this.cfg.keepOldKeysMs, cid, ch });
  }
}

/** The methods of chains.rs's `impl Core`. */
export function chainsMethods() {
  return {
    rosterEpoch,
    rosterMembers,
    rosterPresent,
    headFor,
    currentChain,
    myEntry,
    membersFor,
    channelId,
    channelIdOf,
    newChain,
    onRoster,
    adoptChain,
    afterRoster,
    updateSecured,
    leftChannel,
  };
}
export type ChainsMethods = ReturnType<typeof chainsMethods>;
