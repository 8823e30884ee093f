// Twin of crates/client/src/core/manager.rs: what the mediator and co-mediators sign:
// placements, removals, breakouts, rosters.

import type { Envelope } from "../proto/envelope.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { ClientMessage, SessionView } from "../proto/message.js"; // eslint-disable-line no-restricted-imports -- as above
import { ChannelId, Role, Side } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import type { ChannelKind, ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import type { IssuedInvite, Peer } from "./admission.js";
import type { Core, Delegation } from "./client.js";
import { RoomChains, durationSince, id16, pidOf, sortedEntries } from "./client.js";
import { MAX_CHAIN_HISTORY, MAX_PEERS } from "./codes.js";
import { bytesEqual, compareBytes, fromHex, toHex } from "./enc.js";
import { roleCode } from "./identity.js";
import type { Id16 } from "./lib.js";
import { Accepted, FLAG_AWAY, Kind, Roster, isAway } from "./roster.js";
import type { Member, SignedRoster } from "./roster.js";

const U64_MAX = (1n << 64n) - 1n;

/** Where the mediator's client sent someone. */
export type Intent =
  /** A room the server knows. */
  | { type: "in"; channel: ChannelId }
  /**
   * A breakout the server is creating for the `create_breakout` command with this index (its
   * name is not known yet).
   */
  | { type: "new_breakout"; index: number };

/** `Intent::In(channel)`. */
export function intentIn(channel: ChannelId): Intent {
  return { type: "in", channel };
}

/** Rust derives `PartialEq` for `Intent`. */
function sameIntent(a: Intent | undefined, b: Intent): boolean {
  if (a === undefined) {
    return false;
  }
  return a.type === "in" ? b.type === "in" && a.channel === b.channel : b.type === "new_breakout" && a.index === b.index;
}

/**
 * A `create_breakout` the mediator's client sent: satisfied only by one breakout that did
 * not exist before the command, the same for all its members, claimed by no other command.
 */
export interface BreakoutCmd {
  members: ParticipantId[];
  /** Every breakout seen before the command. */
  knownBefore: Set<ChannelId>;
  /** The breakout it created, once every member was seen in it. */
  room: ChannelId | undefined;
  /** The server's breakouts did not match: never satisfied. */
  failed: boolean;
}

/** Why the mediator's client holds a participant out of every roster for good. */
export interface Removal {
  at: number;
  /** How many session views had arrived then: only a later view can list it "again". */
  view: number;
  /** By this client's own `kick` (the server may list it for a moment longer). */
  byMe: boolean;
}

/**
 * What the managers (the mediator and delegated co-mediators) keep to place people and sign
 * rosters.
 */
export class ManagerState {
  /**
   * Participants whose placement my own commands changed and the server's view has not
   * confirmed yet: a co-mediator signs only for these (§15.11).
   */
  ownPending = new Set<ParticipantId>();
  // Mediator side.
  peers = new Map<ParticipantId, Peer>();
  contacted = new Set<ParticipantId>();
  /** Placed participants whose connection is down (per the server's view). */
  offline = new Set<ParticipantId>();
  admitSent = new Set<ParticipantId>();
  /** Mediators: invite secrets made, bound to role and side, single use. */
  invites: IssuedInvite[] = [];
  /** Mediators: participants that left, timed out or were kicked: never signed again. */
  removed = new Map<ParticipantId, Removal>();
  /**
   * Mediators: where this client told the server to put each participant. The server's views
   * are only believed where they agree with it.
   */
  intents = new Map<ParticipantId, Intent>();
  /** Mediators: the last location where view and intent agreed. */
  confirmed = new Map<ParticipantId, ChannelId>();
  /** Mediators: the `create_breakout` commands sent, in order. */
  breakouts: BreakoutCmd[] = [];
  /** Mediators: every breakout the server ever listed. */
  seenBreakouts = new Set<ChannelId>();
  lastSession: SessionView | undefined = undefined;
  /** Mediators: session views received so far. */
  views = 0;
  /**
   * Mediators: my own connection dropped and I resumed (in cluster mode, perhaps on another
   * node that took the session over): once everyone placed is connected again, every room is
   * signed anew (a new epoch) and so every sender's keys rotate (e2ee §15.13).
   */
  resignAfterResume = false;
}

/** Rust derives `PartialEq` for `Member`. */
function sameMembers(a: readonly Member[], b: readonly Member[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => {
      const y = b[i];
      return (
        y !== undefined &&
        compareBytes(x.participantId, y.participantId) === 0 &&
        compareBytes(x.ikPub, y.ikPub) === 0 &&
        compareBytes(x.ekPub, y.ekPub) === 0 &&
        x.role === y.role &&
        x.side === y.side &&
        x.flags === y.flags &&
        compareBytes(x.nameCommit, y.nameCommit) === 0
      );
    })
  );
}

/**
 * Sends a signalling command. Mediators must send admissions and moves through here: the
 * client signs rosters only for placements it asked for, never for what the server merely
 * reports.
 */
function command(this: Core, m: ClientMessage): Promise<void> {
  return this.serial(() => this.commandNow(m));
}

async function commandNow(this: Core, m: ClientMessage): Promise<void> {
  const now = this.now;
  switch (m.type) {
    case "admit":
      this.manager.intents.set(m.participant_id, intentIn(ChannelId.joint()));
      this.manager.ownPending.add(m.participant_id);
      break;
    case "kick":
      if (this.isManager()) {
        // Final at once for me: never signed again. The mediator re-signs every room without
        // the target at once; a co-mediator leaves that to the mediator (one signer per
        // change, §15.11) and alarms if the server keeps listing it.
        if (now !== undefined) {
          this.remove(m.participant_id, now, true);
          this.out.push(m);
          await this.reconcile(now);
          return;
        }
      }
      break;
    case "move":
      this.manager.intents.set(m.participant_id, intentIn(m.channel_id));
      this.manager.ownPending.add(m.participant_id);
      break;
    case "create_breakout": {
      const idx = this.manager.breakouts.length;
      const knownBefore = new Set(this.manager.seenBreakouts);
      const v = this.manager.lastSession;
      if (v !== undefined) {
        for (const c of v.channels.filter((x) => x.kind === "breakout")) {
          knownBefore.add(c.id);
        }
      }
      this.manager.breakouts.push({ members: [...m.members], knownBefore, room: undefined, failed: false });
      for (const p of m.members) {
        this.manager.intents.set(p, { type: "new_breakout", index: idx });
        this.manager.ownPending.add(p);
      }
      break;
    }
    case "return_all":
      for (const p of sortedEntries(this.manager.intents).map(([x]) => x)) {
        this.manager.intents.set(p, intentIn(ChannelId.joint()));
        this.manager.ownPending.add(p);
      }
      break;
    case "hello":
    case "consent":
    case "lock":
    case "unlock":
    case "end":
    case "leave":
    case "relay":
    case "create_invite":
    case "ping":
    case "media_offer":
    case "keyframe_request":
    case "doc_upload":
    case "doc_download":
    case "doc_ack":
      break;
  }
  this.out.push(m);
}

// Managers: a roster another manager signed is a placement decision, taken as if I had asked
// for it (so two managers never undo each other's moves).
function adoptPlacements(this: Core, cid: Id16): void {
  if (!this.isManager()) {
    return;
  }
  const s = this.chains.get(toHex(cid));
  if (s === undefined) {
    return;
  }
  const head = s.chain.head();
  if (head === undefined) {
    return;
  }
  const room = s.serverChannel;
  const me = this.me?.pid;
  // Never my own placement (my commands decide it), never one of my moves still in flight (an
  // older roster of the other manager's must not cancel it).
  const present: ParticipantId[] = [];
  for (const m of head.roster.members.filter((x) => !isAway(x))) {
    const p = pidOf(m.participantId);
    if (p !== undefined && !this.manager.removed.has(p) && p !== me && !this.manager.ownPending.has(p)) {
      present.push(p);
    }
  }
  for (const p of present) {
    this.manager.intents.set(p, intentIn(room));
    this.manager.confirmed.set(p, room);
  }
}

// Managers: the roster entry (keys, role, side, name commitment) for a participant I may
// sign: the mediator takes it from the verified announcement and the invite (or person) that
// bound it; a co-mediator from the current JOINT roster, which the mediator signed.
function knownMember(this: Core, p: ParticipantId): Member | undefined {
  const peer = this.manager.peers.get(p);
  if (peer !== undefined && (peer.consentOk || p === this.me?.pid) && peer.side !== undefined) {
    return {
      participantId: peer.ann.participantId,
      ikPub: peer.ann.ikPub,
      ekPub: peer.ann.ekPub,
      role: roleCode(peer.ann.role),
      side: peer.side,
      flags: 0,
      nameCommit: peer.name ?? new Uint8Array(32),
    };
  }
  if (this.isMediator()) {
    return undefined;
  }
  const id = id16(p);
  if (id === undefined) {
    return undefined;
  }
  const joint = this.currentChain(ChannelId.joint());
  if (joint === undefined) {
    return undefined;
  }
  const m = joint[1].chain.head()?.roster.member(id);
  if (m === undefined) {
    return undefined;
  }
  return { ...m, flags: 0 };
}

// Managers: the room's history, newest `MAX_CHAIN_HISTORY` rosters of all its chains.
function recordLineage(this: Core, room: ChannelId, sr: SignedRoster, del: Delegation | undefined): void {
  let r = this.rooms.get(room);
  if (r === undefined) {
    r = new RoomChains();
    this.rooms.set(room, r);
  }
  if (r.lineage.length >= MAX_CHAIN_HISTORY) {
    r.lineage.shift();
  }
  r.lineage.push({ sr, del });
}

// Mediators: `p` left, timed out or was kicked: out of every roster for good.
function remove(this: Core, p: ParticipantId, now: number, byMe: boolean): void {
  // Only someone this client knows of (an announcement, bounded by MAX_PEERS, or for a
  // co-mediator the JOINT roster): an id the server invents was never signed and costs nothing
  // to forget.
  const id = id16(p);
  const inJoint = id !== undefined && this.headFor(ChannelId.joint())?.roster.member(id) !== undefined;
  if (!this.manager.peers.has(p) && !inJoint) {
    return;
  }
  this.manager.ownPending.delete(p);
  this.manager.confirmed.delete(p);
  this.manager.intents.delete(p);
  const peer = this.manager.peers.get(p);
  if (peer !== undefined) {
    peer.consentOk = false;
    peer.held = false;
  }
  const view = this.manager.views;
  if (!this.manager.removed.has(p)) {
    this.manager.removed.set(p, { at: now, byMe, view });
  }
}

// Mediators: a removed participant that a view received after the removal still lists is an
// alarm (after my own kick, once the grace has passed: a view may have been in flight).
function checkRelisted(this: Core, now: number): void {
  const v = this.manager.lastSession;
  if (v === undefined) {
    return;
  }
  const listed = [
    ...v.waiting.map((w) => w.participant_id),
    ...v.channels.flatMap((c) => c.members.map((m) => m.participant_id)),
  ].filter((p) => {
    const r = this.manager.removed.get(p);
    return (
      r !== undefined &&
      this.manager.views > r.view &&
      (!r.byMe || durationSince(now, r.at) >= this.cfg.unsignedGraceMs)
    );
  });
  for (const p of listed) {
    const key: string = p;
    this.alarm({ type: "removed_relisted", participantId: p }, key);
  }
}

// Mediators: a `create_breakout` is satisfied by exactly one breakout that did not exist
// before it, the same for all its members and claimed by no other command; anything else is
// refused with an alarm and its members stay where they were last agreed.
function resolveBreakouts(this: Core, session: SessionView): void {
  const roomOf = new Map<ParticipantId, ChannelId>();
  for (const c of session.channels.filter((x) => x.kind === "breakout")) {
    for (const m of c.members) {
      roomOf.set(m.participant_id, c.id);
    }
  }
  const breakouts = this.manager.breakouts;
  for (let idx = 0; idx < breakouts.length; idx++) {
    const cmd = breakouts[idx];
    if (cmd === undefined || cmd.room !== undefined || cmd.failed) {
      continue;
    }
    // Only new breakouts count: a member still in an old one is a move in flight.
    const rooms = [
      ...new Set(
        cmd.members
          .map((p) => roomOf.get(p))
          .filter((r): r is ChannelId => r !== undefined && !cmd.knownBefore.has(r)),
      ),
    ].sort();
    const claimed = rooms.some((r) => breakouts.some((b, j) => j !== idx && b.room === r));
    if (rooms.length > 1 || claimed) {
      cmd.failed = true;
      this.alarm({ type: "breakout_mismatch" }, idx.toString());
      continue;
    }
    const room = rooms[0];
    if (room === undefined) {
      continue;
    }
    if (!cmd.members.every((p) => roomOf.get(p) === room)) {
      continue;
    }
    for (const p of [...cmd.members]) {
      if (sameIntent(this.manager.intents.get(p), { type: "new_breakout", index: idx })) {
        this.manager.intents.set(p, intentIn(room));
      }
    }
    cmd.room = room;
  }
  // Bounded like the other server-named sets (breakout numbers are never reused, so a full set
  // only makes later commands wait, never accept an old room).
  for (const c of roomOf.values()) {
    if (this.manager.seenBreakouts.size < 4 * MAX_PEERS) {
      this.manager.seenBreakouts.add(c);
    }
  }
}

/** Managers: make the signed rosters match who is where, as far as the manager verified them. */
async function reconcile(this: Core, now: number): Promise<void> {
  if (!this.isManager()) {
    return;
  }
  const session = this.manager.lastSession;
  if (session === undefined) {
    return;
  }
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const myPid = me.pid;
  this.checkRelisted(now);
  this.resolveBreakouts(session);
  const mine = new Set<ChannelId>();
  // Where each admitted, verified participant is.
  // Only where the server's view agrees with what this client asked for; elsewhere the last
  // agreed place stands (a move in flight, or a server that lies).
  const location = new Map<ParticipantId, { at: ChannelId; role: Role; side: number }>();
  for (const ch of session.channels) {
    for (const m of ch.members) {
      if (this.manager.removed.has(m.participant_id)) {
        continue;
      }
      // The role the server reports must be the one the participant announced, and the side
      // the one its invite (or a person) bound it to; otherwise the view is not believed.
      const known = this.knownMember(m.participant_id);
      if (known === undefined) {
        continue;
      }
      const side = known.side;
      if (known.role !== roleCode(m.role) || (m.side === undefined ? 0 : Side.number(m.side)) !== side) {
        continue;
      }
      // A caucus holds only its own side (and the mediators).
      const fits = ch.id.startsWith("caucus-")
        ? Role.isManager(m.role) || (m.side !== undefined && m.side === ch.id.slice("caucus-".length))
        : true;
      const intent = this.manager.intents.get(m.participant_id);
      const agreed = fits && intent?.type === "in" && intent.channel === ch.id;
      if (agreed) {
        const before = this.manager.confirmed.get(m.participant_id);
        this.manager.confirmed.set(m.participant_id, ch.id);
        // A placement of my own command, now confirmed: the rooms it touches are mine to sign
        // (a co-mediator signs nothing else).
        if (this.manager.ownPending.delete(m.participant_id)) {
          mine.add(ch.id);
          mine.add(ChannelId.joint());
          if (before !== undefined) {
            mine.add(before);
          }
        }
      }
      const c = this.manager.confirmed.get(m.participant_id);
      if (c !== undefined) {
        location.set(m.participant_id, { at: c, role: m.role, side });
      }
    }
  }
  // Whoever the server no longer lists is gone for good; someone sent back to the waiting
  // room is only unplaced.
  const inRooms = new Set<ParticipantId>(session.channels.flatMap((c) => c.members.map((m) => m.participant_id)));
  const waiting = new Set<ParticipantId>(session.waiting.map((w) => w.participant_id));
  const unplaced = sortedEntries(this.manager.confirmed)
    .map(([p]) => p)
    .filter((p) => !inRooms.has(p) && p !== myPid);
  for (const p of unplaced) {
    if (waiting.has(p)) {
      this.manager.confirmed.delete(p);
    } else {
      this.remove(p, now, false);
    }
  }
  const channels: [ChannelId, ChannelKind][] = session.channels.map((c) => [c.id, c.kind]);
  if (!channels.some(([c]) => c === "joint")) {
    channels.push([ChannelId.joint(), "joint"]);
  }
  // A room that emptied is gone: if it fills again it gets a new chain and new keys (its last
  // roster is stale, and everyone deleted its keys when they left). The new chain's first
  // roster links to the old chain's last roster (§7.6).
  const live = new Set<ChannelId>(channels.map(([c]) => c));
  const gone: [ChannelId, Id16][] = [];
  for (const [c, r] of sortedEntries(this.rooms)) {
    if (!live.has(c) && r.current !== undefined) {
      gone.push([c, r.current]);
    }
  }
  for (const [room, cid] of gone) {
    const last = this.chains.get(toHex(cid))?.chain.head()?.hash;
    const r = this.rooms.get(room);
    if (r !== undefined) {
      r.current = undefined;
      r.retired.add(toHex(cid));
      r.link = last;
    }
    this.dropSealers(cid);
  }
  // One signer per change (§15.11): the mediator signs whatever changed; a co-mediator only
  // the rooms its own commands just changed (never a departure the server reports, which the
  // mediator signs), so two managers do not sign one epoch twice.
  const coMediator = !this.isMediator();
  // After my own resume, once everyone placed is back: every room anew (§15.13).
  const allBack = session.channels.every((c) => c.members.every((m) => m.connected));
  const resign = !coMediator && this.manager.resignAfterResume && allBack;
  if (resign) {
    this.manager.resignAfterResume = false;
  }
  for (const [ch, kind] of channels) {
    if (coMediator && !mine.has(ch)) {
      continue;
    }
    const joint = kind === "joint";
    // Managers sign rosters, so every manager is listed in every one: present where it is,
    // flagged away elsewhere (and then sent no keys there). Every manager computes the same
    // list, so they never undo each other.
    const members: Member[] = [];
    for (const [pid, l] of sortedEntries(location)) {
      if (!(joint || l.at === ch || Role.isManager(l.role) || pid === myPid)) {
        continue;
      }
      const m = this.knownMember(pid);
      if (m === undefined) {
        continue;
      }
      m.flags = l.at === ch ? 0 : FLAG_AWAY;
      members.push(m);
    }
    members.sort((a, b) => compareBytes(a.participantId, b.participantId));
    // A room with nobody verified present in it gets no roster (and no keys).
    if (members.every(isAway)) {
      continue;
    }
    await this.publishRoster(ch, kind, members, now, resign);
  }
}

async function publishRoster(
  this: Core,
  ch: ChannelId,
  kind: ChannelKind,
  members: Member[],
  now: number,
  anew = false,
): Promise<void> {
  const me = this.me;
  const identity = this._identity;
  if (me === undefined || identity === undefined) {
    return;
  }
  const myId = me.id;
  const mIk = identity.ikPub();
  const session = me.session;
  let room = this.rooms.get(ch);
  if (room === undefined) {
    room = new RoomChains();
    this.rooms.set(ch, room);
  }
  let cid: Id16;
  let genesisLink: Uint8Array;
  if (room.current !== undefined) {
    cid = room.current;
    genesisLink = new Uint8Array(32);
  } else {
    cid = new Uint8Array(16);
    this.rng.fill(cid);
    genesisLink = room.link ?? new Uint8Array(32);
  }
  const head = this.chains.get(toHex(cid))?.chain.head();
  if (!anew && head !== undefined && sameMembers(head.roster.members, members)) {
    return;
  }
  let epoch: bigint;
  if (head !== undefined) {
    if (head.roster.epoch >= U64_MAX) {
      return;
    }
    epoch = head.roster.epoch + 1n;
  } else {
    epoch = 1n;
  }
  const roster = new Roster({
    sessionId: session,
    channelId: cid,
    kind: kind === "joint" ? Kind.Joint : kind === "caucus" ? Kind.Caucus : Kind.Breakout,
    epoch,
    prevHash: head?.hash ?? genesisLink,
    members,
  });
  let signed: SignedRoster;
  try {
    signed = roster.sign(identity);
  } catch {
    return;
  }
  // Checked as every member will check it before anyone is sent it.
  const mediatorIk = this.mediator?.ik ?? mIk;
  const chain = this.chains.get(toHex(cid))?.chain.clone() ?? this.newChain(session, mediatorIk);
  try {
    if (chain.accept(signed) !== Accepted.Advanced) {
      return;
    }
  } catch {
    return;
  }
  room.current = cid;
  let state = this.chains.get(toHex(cid));
  if (state === undefined) {
    state = { chain: chain.clone(), serverChannel: ch, advancedAt: now, seen: new Set() };
    this.chains.set(toHex(cid), state);
  }
  state.chain = chain;
  state.advancedAt = now;
  if (state.seen.size < MAX_CHAIN_HISTORY) {
    state.seen.add(toHex(signed.hash));
  }
  // A co-mediator's rosters carry the mediator's delegation of its key.
  const own = this.myDelegation !== undefined && !this.isMediator() ? { ik: mIk, sig: this.myDelegation } : undefined;
  this.recordLineage(ch, signed, own);
  // Every member gets the new roster; a newcomer to the chain gets the chain from its genesis
  // (so it can check the link to the room's previous chain, §7.6); a member it removes gets
  // the roster that removed it.
  // (A member listed with new keys is new to the chain: it lost the old keys, and the state
  // that went with them, §15.12.)
  const before = new Map<string, Uint8Array>((head?.roster.members ?? []).map((m) => [toHex(m.participantId), m.ekPub]));
  const after = new Map<string, Uint8Array>(signed.roster.members.map((m) => [toHex(m.participantId), m.ekPub]));
  const lineage = [...(this.rooms.get(ch)?.lineage ?? [])];
  const env = ({ sr: s, del }: { sr: SignedRoster; del: Delegation | undefined }): Envelope => ({
    k: "roster",
    ch,
    enc: s.encoded,
    sig: s.signature,
    ...(del === undefined ? {} : { dik: del.ik, dsig: del.sig }),
  });
  const last = lineage[lineage.length - 1];
  if (last === undefined) {
    throw new Error("just recorded"); // Rust: `expect("just recorded")`
  }
  const newest = [last];
  for (const r of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    if (r === toHex(myId)) {
      continue;
    }
    const to = pidOf(fromHex(r));
    if (to === undefined) {
      continue;
    }
    const ekAfter = after.get(r);
    const ekBefore = before.get(r);
    const isNew = ekAfter !== undefined && (ekBefore === undefined || !bytesEqual(ekBefore, ekAfter));
    const send = isNew ? lineage : newest;
    for (const s of send) {
      this.relay({ participant: to }, env(s));
    }
  }
  await this.afterRoster(cid, now);
}

/** The methods of manager.rs's `impl Core`. */
export function managerMethods() {
  return {
    command,
    commandNow,
    adoptPlacements,
    knownMember,
    recordLineage,
    remove,
    checkRelisted,
    resolveBreakouts,
    reconcile,
    publishRoster,
  };
}
export type ManagerMethods = ReturnType<typeof managerMethods>;
