// Twin of crates/client/src/core/names.rs: display names, end to end, checked against roster
// commitments.

import type { ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import type { Core } from "./client.js";
import { pidOf, sortedEntries } from "./client.js";
import { FailureReason, MAX_PEERS } from "./codes.js";
import { bytesEqual, fromHex, toHex } from "./enc.js";
import type { Id16 } from "./lib.js";
import { NameMsg } from "./messages.js";
import { MsgType } from "./pairwise.js";
import { isAway } from "./roster.js";
import type { Roster } from "./roster.js";

// A display name (type 4): shown only when it matches the sender's commitment in a signed
// roster; kept (one per sender) until such a roster arrives.
function onName(this: Core, from: ParticipantId, fromId: Id16, pt: Uint8Array): void {
  let n: NameMsg;
  try {
    n = NameMsg.decode(pt);
  } catch {
    this.failed(FailureReason.PairwiseDecode);
    return;
  }
  if (this.isMediator()) {
    // The mediator commits to what the participant sent before it was admitted, once: a later
    // rename would make the mediator re-sign every room (and everyone rekey) at the
    // participant's will.
    const p = this.manager.peers.get(from);
    const r = p?.rekey;
    if (r !== undefined) {
      // New keys after a lost page: the name before their acknowledgment.
      if (r.name === undefined && !r.consentOk) {
        r.name = n.commit();
      } else {
        return;
      }
    } else if (p !== undefined && p.name === undefined && !p.consentOk) {
      p.name = n.commit();
    } else {
      return;
    }
  }
  const k = toHex(fromId);
  if (this.nameClaims.size < MAX_PEERS || this.nameClaims.has(k)) {
    this.nameClaims.set(k, n);
  }
  this.checkNames();
}

// Shows each claimed name that the newest roster listing its sender commits to.
function checkNames(this: Core): void {
  const shown: [string, Uint8Array, boolean, string][] = [];
  const myId = this.me === undefined ? undefined : toHex(this.me.id);
  for (const [id, n] of sortedEntries(this.nameClaims)) {
    const commit = n.commit();
    if (id === myId) {
      continue;
    }
    const was = this.namesShown.get(id);
    if (was !== undefined && bytesEqual(was, commit)) {
      continue;
    }
    const listed: Uint8Array[] = [];
    for (const [, r] of sortedEntries(this.rooms)) {
      if (r.current === undefined) {
        continue;
      }
      const m = this.chains.get(toHex(r.current))?.chain.head()?.roster.member(fromHex(id));
      if (m !== undefined) {
        listed.push(m.nameCommit);
      }
    }
    if (listed.length === 0) {
      continue;
    }
    shown.push([id, commit, listed.some((c) => bytesEqual(c, commit)), n.name]);
  }
  for (const [id, commit, ok, name] of shown) {
    if (!ok) {
      this._stats.namesRejected += 1;
      this.nameClaims.delete(id);
      continue;
    }
    this.namesShown.set(id, commit);
    this._stats.namesVerified += 1;
    const participantId = pidOf(fromHex(id));
    if (participantId !== undefined) {
      this.events.push({ type: "name", participantId, name });
    }
  }
}

/** The display names verified so far (against signed rosters), by participant. */
function names(this: Core): [ParticipantId, string][] {
  const out: [ParticipantId, string][] = [];
  for (const [id, c] of sortedEntries(this.namesShown)) {
    const n = this.nameClaims.get(id);
    const p = pidOf(fromHex(id));
    if (n === undefined || !bytesEqual(n.commit(), c) || p === undefined) {
      continue;
    }
    out.push([p, n.name]);
  }
  return out;
}

// My display name, once, to each other present member of a roster I am present in.
async function sendName(this: Core, roster: Roster): Promise<void> {
  const pt = this.myName?.encode();
  if (pt === undefined) {
    return;
  }
  const myId = this.me?.id;
  const to = roster.members
    .filter((m) => !isAway(m) && (myId === undefined || !bytesEqual(m.participantId, myId)))
    .filter((m) => !this.named.has(toHex(m.participantId)))
    .map((m) => [m.participantId, m.ekPub] as const);
  for (const [id, ek] of to) {
    await this.sendPairwise(id, ek, MsgType.Name, pt, undefined);
    this.named.add(toHex(id));
  }
  pt.fill(0);
}

/** The methods of names.rs's `impl Core`. */
export function namesMethods() {
  return { onName, checkNames, names, sendName };
}
export type NamesMethods = ReturnType<typeof namesMethods>;
