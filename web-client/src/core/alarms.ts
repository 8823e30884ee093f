// Twin of crates/client/src/core/alarms.rs: what a person must be shown, and the checks that
// raise it.

import type { ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { Core } from "./client.js";
import { durationSince, id16, pidOf, sortedEntries } from "./client.js";
import { AlarmCode, MAX_ALARMS } from "./codes.js";
import { fromHex, toHex } from "./enc.js";
import { pairKey } from "./keys.js";
import type { Id16 } from "./lib.js";
import { isAway } from "./roster.js";
import type { RosterErrorKind } from "./roster.js";

/** Something the user must see: the protocol detected misbehaviour. */
export type Alarm =
  /** A roster did not verify or did not extend the chain. */
  | { type: "roster"; error: RosterErrorKind }
  /** Someone is in my channel (per the server) but in no roster the mediator signed. */
  | { type: "unsigned_member"; participantId: ParticipantId }
  /** A roster changed but this member sent no new key in time. */
  | { type: "stale_key"; participantId: ParticipantId }
  /** The mediator's key differs from the one the invite link pinned. */
  | { type: "mediator_key_mismatch" }
  /** A roster arrived from someone other than the mediator. */
  | { type: "roster_from_non_mediator" }
  /** The server said I am someone else (another participant or role) than I joined as. */
  | { type: "identity_mismatch" }
  /** Someone left my channel (per the server) but no new roster came: I stop sending there. */
  | { type: "roster_withheld" }
  /** A roster of a chain that a newer chain of the same room replaced (an old chain delivered late). */
  | { type: "chain_revived" }
  /** A new chain for a room that does not link to the chain I hold for that room. */
  | { type: "chain_unlinked" }
  /** A roster lists my participant id with keys that are not mine: I am not in it. */
  | { type: "wrong_self_key" }
  /** Mediators: a participant that left, timed out or was kicked is listed again. */
  | { type: "removed_relisted"; participantId: ParticipantId }
  /** Mediators: a second, different announcement for a participant already announced. */
  | { type: "announcement_changed"; participantId: ParticipantId }
  /** Mediators: an arrival announced another role than its invite was made for. */
  | { type: "invite_role_mismatch"; participantId: ParticipantId }
  /** Mediators: a second arrival under an invite secret that already admitted someone. */
  | { type: "invite_reused"; participantId: ParticipantId }
  /** Mediators: the server's breakouts do not match the breakout commands sent. */
  | { type: "breakout_mismatch" }
  /** A delegation that does not verify under the mediator's key. */
  | { type: "delegation_invalid" };

/** The alarm's kind, one of the codes every implementation shares (Rust: `Alarm::kind`). */
export function alarmKind(a: Alarm): AlarmCode {
  switch (a.type) {
    case "roster":
      switch (a.error) {
        case "fork":
          return AlarmCode.RosterFork;
        case "rollback":
          return AlarmCode.RosterRollback;
        case "gap":
          return AlarmCode.RosterGap;
        case "bad_signature":
          return AlarmCode.RosterBadSignature;
        case "wrong_channel":
          return AlarmCode.RosterWrongChannel;
        case "malformed":
        case "signer_not_member":
          return AlarmCode.RosterInvalid;
      }
      break;
    case "unsigned_member":
      return AlarmCode.UnsignedMember;
    case "stale_key":
      return AlarmCode.StaleKey;
    case "mediator_key_mismatch":
      return AlarmCode.MediatorKeyMismatch;
    case "roster_from_non_mediator":
      return AlarmCode.RosterFromNonMediator;
    case "identity_mismatch":
      return AlarmCode.IdentityMismatch;
    case "roster_withheld":
      return AlarmCode.RosterWithheld;
    case "chain_revived":
      return AlarmCode.RosterChainRevived;
    case "chain_unlinked":
      return AlarmCode.RosterChainUnlinked;
    case "wrong_self_key":
      return AlarmCode.RosterWrongSelfKey;
    case "removed_relisted":
      return AlarmCode.RemovedRelisted;
    case "announcement_changed":
      return AlarmCode.AnnouncementChanged;
    case "invite_role_mismatch":
      return AlarmCode.InviteRoleMismatch;
    case "invite_reused":
      return AlarmCode.InviteReused;
    case "breakout_mismatch":
      return AlarmCode.BreakoutMismatch;
    case "delegation_invalid":
      return AlarmCode.DelegationInvalid;
  }
}

/** A stable short code for summaries (Rust: `Alarm::code`; the same string as the kind). */
export function alarmCode(a: Alarm): string {
  return alarmKind(a);
}

function alarm(this: Core, a: Alarm, key: string): void {
  // Each distinct alarm once; a server that invents ids cannot grow this without bound.
  if (this.alarmed.size >= MAX_ALARMS) {
    this._stats.alarmsDropped += 1;
    return;
  }
  const k = JSON.stringify([alarmCode(a), key]);
  if (!this.alarmed.has(k)) {
    this.alarmed.add(k);
    this._stats.alarms.push(alarmCode(a));
    this.events.push({ type: "alarm", alarm: a });
  }
}

function checkUnsigned(this: Core, now: number): void {
  const view = this.myChannel;
  if (view === undefined) {
    return;
  }
  // Resumed after losing my keys: until the mediator lets my new keys into this room, I hold
  // none of its rosters, and wait as in the waiting room.
  if (this.rejoined && !this.listedRooms.has(view.id)) {
    return;
  }
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const myPid = me.pid;
  const signed = new Set<string>((this.headFor(view.id)?.roster.members ?? []).map((m) => toHex(m.participantId)));
  const seen = new Set<ParticipantId>();
  for (const m of view.members) {
    const i = id16(m.participant_id);
    if (m.participant_id === myPid || (i !== undefined && signed.has(toHex(i)))) {
      continue;
    }
    seen.add(m.participant_id);
    let since = this.unsignedSince.get(m.participant_id);
    if (since === undefined) {
      since = now;
      this.unsignedSince.set(m.participant_id, now);
    }
    if (durationSince(now, since) >= this.cfg.unsignedGraceMs) {
      this.alarm({ type: "unsigned_member", participantId: m.participant_id }, m.participant_id);
    }
  }
  for (const p of [...this.unsignedSince.keys()]) {
    if (!seen.has(p)) {
      this.unsignedSince.delete(p);
    }
  }

  // The other way round: someone my roster says is present has left the room (per the
  // server) and no new roster came. If it is withheld, the departed may still hold my current
  // key: stop sending until a roster arrives.
  const inView = new Set<ParticipantId>(view.members.map((m) => m.participant_id));
  const gone = this.rosterPresent(view.id).filter((p) => p !== myPid && !inView.has(p));
  if (gone.length === 0) {
    this.departedSince = undefined;
    this.withheld = false;
    return;
  }
  this.departedSince ??= now;
  const since = this.departedSince;
  if (durationSince(now, since) >= this.cfg.unsignedGraceMs) {
    this.withheld = true;
    this.alarm({ type: "roster_withheld" }, view.id);
  }
}

function checkStale(this: Core, now: number): void {
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const myId = me.id;
  const stale: [Id16, string][] = [];
  for (const [cidHex, s] of sortedEntries(this.chains)) {
    const head = s.chain.head();
    if (head === undefined) {
      continue;
    }
    const mine = head.roster.member(myId);
    if (mine === undefined || isAway(mine) || durationSince(now, s.advancedAt) < this.cfg.staleKeyAfterMs) {
      continue;
    }
    const cid = fromHex(cidHex);
    for (const m of head.roster.members.filter((x) => !isAway(x) && toHex(x.participantId) !== toHex(myId))) {
      const e = this.keys.keyEpochs.get(pairKey(cid, m.participantId));
      const fresh = e !== undefined && e >= head.roster.epoch;
      if (!fresh) {
        stale.push([m.participantId, `${cidHex}:${head.roster.epoch.toString()}`]);
      }
    }
  }
  for (const [id, key] of stale) {
    const p = pidOf(id);
    if (p !== undefined) {
      this.alarm({ type: "stale_key", participantId: p }, `${key}:${toHex(id)}`);
    }
  }
}

/** The methods of alarms.rs's `impl Core`. */
export function alarmsMethods() {
  return { alarm, checkUnsigned, checkStale };
}
export type AlarmsMethods = ReturnType<typeof alarmsMethods>;
