// Twin of crates/client/src/core/admission.rs: arrivals, announcements, consent, bound
// invites, delegation.

import type { Envelope } from "../proto/envelope.js"; // eslint-disable-line no-restricted-imports -- the client core speaks crates/proto's wire types (sans-IO, ES2022)
import { AgreementHash } from "../proto/message.js"; // eslint-disable-line no-restricted-imports -- as above
import { ChannelId, Role, Side } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import type { ParticipantId } from "../proto/ids.js"; // eslint-disable-line no-restricted-imports -- as above
import type { Core } from "./client.js";
import { id16 } from "./client.js";
import { FailureReason, MAX_PEERS } from "./codes.js";
import { bytesEqual, toHex } from "./enc.js";
import { SCOPE_ROSTERS, delegationBytes, roleCode, roleFromCode, verify } from "./identity.js";
import { Announcement } from "./identity.js";
import { intentIn } from "./manager.js";
import { ATTEST_ALL, ConsentAck, consentSignedBytes, pskHint } from "./messages.js";
import { MsgType } from "./pairwise.js";
import { Secret32 } from "./secret.js";

/**
 * An invite secret this (mediator's) client made, bound to the role and side it was made
 * for, and to the one arrival it admitted.
 */
export interface IssuedInvite {
  psk: Secret32;
  hint: Uint8Array;
  role: Role;
  side: number;
  usedBy: ParticipantId | undefined;
}

/** A verified announcement (mediator side: candidates for rosters). */
export interface Peer {
  ann: Announcement;
  consentOk: boolean;
  /**
   * The acknowledgment verified but came without an invite secret (or under one already
   * used, or for another role): a person decides.
   */
  held: boolean;
  /**
   * The side this participant was bound to: by its invite, or by the person who admitted it.
   * Never taken from the server (except with `admitWithoutInviteSecret`).
   */
  side: number | undefined;
  /** Its display name as it sent it (committed to in the rosters). */
  name: Uint8Array | undefined;
  /**
   * New keys announced after it was admitted and placed (§15.12: a client that resumed after
   * losing its keys, e.g. a page reload; or someone else claiming its id). The rosters keep the
   * old keys until a person lets the new ones in.
   */
  rekey: Rekey | undefined;
}

/** A placed participant's new announcement, waiting for a person's decision. */
export interface Rekey {
  ann: Announcement;
  /** Its acknowledgment verified under the new identity key. */
  consentOk: boolean;
  name: Uint8Array | undefined;
}

/** Rust derives `PartialEq` for `Announcement`. */
function sameAnnouncement(a: Announcement, b: Announcement): boolean {
  return (
    bytesEqual(a.participantId, b.participantId) &&
    a.role === b.role &&
    bytesEqual(a.ikPub, b.ikPub) &&
    bytesEqual(a.ekPub, b.ekPub) &&
    bytesEqual(a.signature, b.signature)
  );
}

function verifies(ik: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    verify(ik, msg, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Mediators: arrivals whose acknowledgment verified without an invite secret, waiting for a
 * person's decision.
 */
function held(this: Core): ParticipantId[] {
  return [...this.manager.peers.entries()]
    .filter(([, p]) => p.held || p.rekey?.consentOk === true)
    .map(([id]) => id)
    .sort();
}

/**
 * Mediators: whether `p` is held because it announced new keys after it was placed (a person
 * lets it back in with `admitHeld`, into the rooms it is in).
 */
function rekeyed(this: Core, p: ParticipantId): boolean {
  return this.manager.peers.get(p)?.rekey !== undefined;
}

/**
 * Mediators: a person admits a held arrival (after checking who it is, e.g. by voice),
 * choosing the role and side it is admitted as: the announced role must be that role.
 * Resolves false if nobody with that id is held, it was removed, or the role differs.
 */
function admitHeld(this: Core, p: ParticipantId, role: Role, side: Side | undefined): Promise<boolean> {
  return this.serial(() => {
    if (this.manager.removed.has(p)) {
      return Promise.resolve(false);
    }
    const peer = this.manager.peers.get(p);
    // New keys of someone already placed: they replace the old ones in every roster it is in
    // (its side stays the one it was bound to).
    const r = peer?.rekey;
    if (peer !== undefined && r !== undefined && r.consentOk && r.ann.role === role) {
      peer.rekey = undefined;
      peer.ann = r.ann;
      peer.name = r.name;
      return (this.now === undefined ? Promise.resolve() : this.reconcile(this.now)).then(() => true);
    }
    if (peer === undefined || !peer.held || peer.ann.role !== role) {
      return Promise.resolve(false);
    }
    peer.held = false;
    peer.consentOk = true;
    peer.side = side === undefined ? 0 : Side.number(side);
    if (role === "co_mediator") {
      // Seated in joint by the server already: a person's decision delegates to it.
      return this.delegateTo(p).then(() => true);
    }
    this.admitReady();
    return Promise.resolve(true);
  });
}

/**
 * Mediators: makes the invite secret for a link to be sent to someone invited as `role`
 * (and `side`). The secret admits one arrival only, and only as that role; its side comes
 * from here, never from the server. Put it in the link's `k=`.
 */
function issueInvite(this: Core, role: Role, side: Side | undefined): Secret32 {
  const psk = Secret32.random(this.rng);
  this.manager.invites.push({
    hint: pskHint(psk),
    psk: psk.clone(),
    role,
    side: side === undefined ? 0 : Side.number(side),
    usedBy: undefined,
  });
  return psk;
}

function announcement(this: Core): Announcement {
  const me = this.me;
  const identity = this._identity;
  if (me === undefined || identity === undefined) {
    // Rust: `expect("announce after welcome")`, `expect("identity until the end")`.
    throw new Error("announce after welcome, before the end");
  }
  return identity.announce(me.session, me.id, me.role);
}

function announceEnvelope(this: Core): Envelope {
  const a = this.announcement();
  return {
    k: "announce",
    pid: a.participantId.slice(),
    role: roleCode(a.role),
    ik: a.ikPub.slice(),
    ek: a.ekPub.slice(),
    sig: a.signature.slice(),
  };
}

// A delegation that verifies under the mediator's key: remembered, applied to every chain.
function addDelegation(this: Core, ik: Uint8Array, sig: Uint8Array): boolean {
  const m = this.mediator;
  if (m === undefined) {
    return false;
  }
  const me = this.me;
  if (me === undefined) {
    return false;
  }
  const msg = delegationBytes(me.session, ik, SCOPE_ROSTERS);
  if (!verifies(m.ik, msg, sig)) {
    return false;
  }
  if (!this.delegations.some((d) => bytesEqual(d.ik, ik))) {
    if (this.delegations.length >= MAX_PEERS) {
      return false;
    }
    this.delegations.push({ ik: ik.slice(), sig: sig.slice() });
    for (const s of this.chains.values()) {
      try {
        s.chain.addDelegate(ik, SCOPE_ROSTERS, sig);
      } catch {
        // Verified above under the same key: cannot fail (Rust ignores the result too).
      }
    }
  }
  return true;
}

// Co-mediators: the mediator delegated roster signing to me.
async function onDelegate(this: Core, from: ParticipantId, ik: Uint8Array, sig: Uint8Array, now: number): Promise<void> {
  const fromMediator = this.mediator?.pid === from;
  const mine = this._identity?.ikPub();
  if (ik.length !== 32 || sig.length !== 64) {
    return;
  }
  if (!fromMediator || mine === undefined || !bytesEqual(ik, mine) || this.me?.role !== "co_mediator") {
    return;
  }
  if (!this.addDelegation(ik, sig)) {
    this.alarm({ type: "delegation_invalid" }, "");
    return;
  }
  this.myDelegation = sig.slice();
  await this.reconcile(now);
}

// Mediator: introduce myself to everyone in the waiting room (once each).
function contactWaiting(this: Core): void {
  if (!this.isMediator()) {
    return;
  }
  const session = this.manager.lastSession;
  if (session === undefined) {
    return;
  }
  // Everyone in the waiting room, and co-mediators (the server seats managers in joint at
  // once; they still announce and consent before they are signed in).
  const me = this.me?.pid;
  const co = session.channels
    .flatMap((c) => c.members)
    .filter((m) => m.role === "co_mediator" && m.participant_id !== me)
    .map((m) => m.participant_id);
  const fresh = [...session.waiting.map((w) => w.participant_id), ...co].filter(
    (p) => !this.manager.contacted.has(p) && !this.manager.removed.has(p),
  );
  for (const p of fresh) {
    // Bounded: the server names the arrivals, and may not grow this without end.
    if (this.manager.contacted.size >= 4 * MAX_PEERS) {
      break;
    }
    const env = this.announceEnvelope();
    this.relay({ participant: p }, env);
    this.manager.contacted.add(p);
  }
  // Someone placed whose connection came back: introduce myself again. A client that kept its
  // keys ignores it; one that lost them (a page reload, §15.12) answers with its new announcement
  // and acknowledgment, as an arrival does.
  const back: ParticipantId[] = [];
  for (const m of session.channels.flatMap((c) => c.members)) {
    const p = m.participant_id;
    if (p === me || !this.manager.peers.has(p)) {
      continue;
    }
    if (!m.connected) {
      if (this.manager.offline.size < 4 * MAX_PEERS) {
        this.manager.offline.add(p);
      }
    } else if (this.manager.offline.delete(p)) {
      back.push(p);
    }
  }
  for (const p of back) {
    this.relay({ participant: p }, this.announceEnvelope());
  }
}

// Mediator: admit each waiting participant whose consent verified and whose hash the server
// recorded.
/**
 * Mediators: the arrivals ready to be let in (their acknowledgment verified under an invite
 * secret, or a person admitted them as held), not admitted yet, in arrival order.
 */
function ready(this: Core): ParticipantId[] {
  if (!this.isMediator()) {
    return [];
  }
  const session = this.manager.lastSession;
  if (session === undefined) {
    return [];
  }
  // The role the server shows must be the announced one (§5.2); the side is the invite's (or
  // the admitting person's), never the server's.
  return session.waiting
    .filter((w) => {
      const p = this.manager.peers.get(w.participant_id);
      return w.consented && p !== undefined && p.consentOk && p.side !== undefined && p.ann.role === w.role;
    })
    .map((w) => w.participant_id)
    .filter((p) => !this.manager.admitSent.has(p) && !this.manager.removed.has(p));
}

/**
 * Mediators who let people in one by one (`autoAdmit` off): a person admits one ready
 * arrival. False if it is not ready (see `ready`).
 */
function admit(this: Core, p: ParticipantId): boolean {
  if (!this.ready().includes(p)) {
    return false;
  }
  this.sendAdmit(p);
  return true;
}

/**
 * The identity key an arrival announced (its fingerprint is what a mediator compares with the
 * one the person reads out); for someone back with new keys, the new one.
 */
function announcedKey(this: Core, p: ParticipantId): Uint8Array | undefined {
  const peer = this.manager.peers.get(p);
  return (peer?.rekey?.ann ?? peer?.ann)?.ikPub.slice();
}

function admitReady(this: Core): void {
  if (!this.cfg.autoAdmit) {
    return;
  }
  for (const p of this.ready()) {
    this.sendAdmit(p);
  }
}

function sendAdmit(this: Core, p: ParticipantId): void {
  this.manager.intents.set(p, intentIn(ChannelId.joint()));
  this.out.push({ type: "admit", participant_id: p });
  this.manager.admitSent.add(p);
}

async function onAnnounce(
  this: Core,
  from: ParticipantId,
  pid: Uint8Array,
  roleNo: number,
  ik: Uint8Array,
  ek: Uint8Array,
  sig: Uint8Array,
): Promise<void> {
  const me = this.me;
  const role = roleFromCode(roleNo);
  if (
    me === undefined ||
    pid.length !== 16 ||
    role === undefined ||
    ik.length !== 32 ||
    ek.length !== 32 ||
    sig.length !== 64
  ) {
    return;
  }
  const ann = new Announcement(pid.slice(), role, ik.slice(), ek.slice(), sig.slice());
  // The announcement must be for the sender's own pseudonym in this session.
  const fromId = id16(from);
  let ok = fromId !== undefined && bytesEqual(fromId, pid);
  if (ok) {
    try {
      ann.verify(me.session);
    } catch {
      ok = false;
    }
  }
  if (!ok) {
    this.failed(FailureReason.Announcement);
    return;
  }
  if (this.isMediator()) {
    // Only someone the server lists in this session (bounded), not any id it invents, and
    // never someone removed for good.
    const v = this.manager.lastSession;
    const listed =
      v !== undefined &&
      (v.waiting.some((w) => w.participant_id === from) ||
        v.channels.some((c) => c.members.some((m) => m.participant_id === from)));
    // (Never an announcement under my own id: my keys are mine.)
    if (!listed || this.manager.removed.has(from) || me.pid === from) {
      return;
    }
    const known = this.manager.peers.get(from);
    if (known !== undefined) {
      if (sameAnnouncement(known.ann, ann) || (known.rekey !== undefined && sameAnnouncement(known.rekey.ann, ann))) {
        return;
      }
      // Someone placed in a room announces new keys: a client that resumed after losing its
      // keys (§15.12), or someone else claiming its id. Held for a person, who compares the new
      // fingerprint; the rosters keep the old keys meanwhile.
      const placed = known.consentOk && this.manager.confirmed.has(from);
      if (placed && known.ann.role === ann.role) {
        known.rekey = { ann, consentOk: false, name: undefined };
        // It counts its pairwise messages from 0 again. (It announced in answer to mine, sent
        // when its connection came back: see `contactWaiting`.)
        this.seqs.forgetReceived(ann.participantId);
        return;
      }
      // Before it is placed, one participant id has one set of keys: a second, different
      // announcement is someone else claiming that id. The first one stands.
      this.alarm({ type: "announcement_changed", participantId: from }, from);
      return;
    }
    if (this.manager.peers.size >= MAX_PEERS) {
      return;
    }
    this.manager.peers.set(from, { ann, consentOk: false, held: false, side: undefined, name: undefined, rekey: undefined });
    return;
  }
  if (role !== "mediator") {
    return;
  }
  const pinned = this.cfg.invite?.mediatorIk;
  if (pinned !== undefined && !bytesEqual(pinned, ik)) {
    this.alarm({ type: "mediator_key_mismatch" }, "");
    return;
  }
  this.mediator ??= { pid: from, ik: ik.slice(), ek: ek.slice() };
  if (!this.consentSent && this.mediator.pid === from) {
    this.consentSent = true;
    await this.sendConsent(from, ek);
  }
}

async function sendConsent(this: Core, mediator: ParticipantId, mediatorEk: Uint8Array): Promise<void> {
  const env = this.announceEnvelope();
  this.relay({ participant: mediator }, env);
  const me = this.me;
  const identity = this._identity;
  if (me === undefined || identity === undefined) {
    return;
  }
  const mId = id16(mediator);
  if (mId === undefined) {
    return;
  }
  const hash = this.cfg.agreementHash;
  const signed = consentSignedBytes(me.session, me.id, hash, ATTEST_ALL);
  const ack = new ConsentAck(hash, ATTEST_ALL, identity.sign(signed));
  const psk = this.cfg.invite?.psk?.clone();
  // My name goes to the mediator just before my consent (under the same invite secret): the
  // mediator takes a name only before the consent that admits me, and commits to it in the
  // roster that does.
  const n = this.myName?.encode();
  if (n !== undefined) {
    await this.sendPairwise(mId, mediatorEk, MsgType.Name, n, psk);
    n.fill(0);
    this.named.add(toHex(mId));
  }
  await this.sendPairwise(mId, mediatorEk, MsgType.Consent, ack.encode(), psk);
  psk?.zeroize();
  // Managers are seated by the server without a waiting room: the acknowledgment to the
  // mediator is all there is.
  // (Nor for someone placed already: a client that resumed into a room.)
  const manager = this.me !== undefined && Role.isManager(this.me.role);
  const h = AgreementHash.parse(toHex(hash));
  if (h !== undefined && !manager && !this.rejoined) {
    this.out.push({ type: "consent", agreement_hash: h });
  }
}

async function onConsent(this: Core, from: ParticipantId, pt: Uint8Array, invite: number | undefined): Promise<void> {
  if (!this.isMediator() || this.manager.removed.has(from)) {
    return;
  }
  const me = this.me;
  if (me === undefined) {
    return;
  }
  const peer = this.manager.peers.get(from);
  if (peer === undefined) {
    return;
  }
  // New keys of someone placed: their acknowledgment (under the new identity key) makes them
  // ready for a person's decision, never more.
  const r = peer.rekey;
  if (r !== undefined) {
    if (r.consentOk) {
      return;
    }
    let ok: boolean;
    try {
      const ack = ConsentAck.decode(pt);
      ok =
        bytesEqual(ack.agreementHash, this.cfg.agreementHash) &&
        ack.attestations === ATTEST_ALL &&
        verifies(r.ann.ikPub, consentSignedBytes(me.session, r.ann.participantId, ack.agreementHash, ack.attestations), ack.signature);
    } catch {
      ok = false;
    }
    if (ok) {
      this._stats.consentsVerified += 1;
      this._stats.consentsHeld += 1;
      r.consentOk = true;
    } else {
      this._stats.consentsRejected += 1;
    }
    return;
  }
  // One consent per arrival: a second one (bare, or under another invite) can neither hold an
  // admitted participant again nor rebind its side.
  if (peer.consentOk || peer.held) {
    return;
  }
  let ack: ConsentAck;
  try {
    ack = ConsentAck.decode(pt);
  } catch {
    this._stats.consentsRejected += 1;
    return;
  }
  const signed = consentSignedBytes(me.session, peer.ann.participantId, ack.agreementHash, ack.attestations);
  const ok =
    bytesEqual(ack.agreementHash, this.cfg.agreementHash) &&
    ack.attestations === ATTEST_ALL &&
    verifies(peer.ann.ikPub, signed, ack.signature);
  if (!ok) {
    this._stats.consentsRejected += 1;
    return;
  }
  this._stats.consentsVerified += 1;
  const announced = peer.ann.role;
  let bound: number | undefined;
  if (invite !== undefined) {
    // An invite secret admits one arrival, only as the role it was made for; its side comes
    // from the invite.
    const inv = this.manager.invites[invite];
    if (inv === undefined) {
      return;
    }
    if (inv.role !== announced) {
      this.alarm({ type: "invite_role_mismatch", participantId: from }, from);
      bound = undefined;
    } else if (inv.usedBy !== undefined && inv.usedBy !== from) {
      this.alarm({ type: "invite_reused", participantId: from }, from);
      bound = undefined;
    } else {
      const side = inv.side;
      inv.usedBy = from;
      bound = side;
    }
  } else if (this.cfg.admitWithoutInviteSecret && announced !== "co_mediator") {
    // A bare token: the server could have minted it. Held for a person, unless this client
    // was told to admit those too (then the server's side is all there is). Never a
    // co-mediator: roster signing is delegated only under an invite made for that role, or by
    // a person (`admitHeld`).
    const side = this.manager.lastSession?.waiting.find((w) => w.participant_id === from)?.side;
    bound = side === undefined ? 0 : Side.number(side);
  } else {
    bound = undefined;
  }
  const p = this.manager.peers.get(from);
  if (p === undefined) {
    return;
  }
  if (bound !== undefined) {
    p.consentOk = true;
    p.side = bound;
    if (announced === "co_mediator") {
      await this.delegateTo(from);
    } else {
      this.admitReady();
    }
  } else if (!p.held) {
    p.held = true;
    this._stats.consentsHeld += 1;
  }
}

// Mediators: a co-mediator whose consent verified under its invite is seated in joint by the
// server already: sign it in there, and delegate roster signing to its key (§5.3).
async function delegateTo(this: Core, co: ParticipantId): Promise<void> {
  const me = this.me;
  const identity = this._identity;
  const peer = this.manager.peers.get(co);
  if (me === undefined || identity === undefined || peer === undefined) {
    return;
  }
  const ik = peer.ann.ikPub;
  const sig = identity.delegate(me.session, ik, SCOPE_ROSTERS);
  this.manager.intents.set(co, intentIn(ChannelId.joint()));
  if (!this.addDelegation(ik, sig)) {
    return;
  }
  this.relay({ participant: co }, { k: "delegate", ik: ik.slice(), sig });
  if (this.now !== undefined) {
    await this.reconcile(this.now);
  }
}

/** The methods of admission.rs's `impl Core`. */
export function admissionMethods() {
  return {
    held,
    rekeyed,
    admitHeld,
    ready,
    admit,
    announcedKey,
    sendAdmit,
    issueInvite,
    announcement,
    announceEnvelope,
    addDelegation,
    onDelegate,
    contactWaiting,
    admitReady,
    onAnnounce,
    sendConsent,
    onConsent,
    delegateTo,
  };
}
export type AdmissionMethods = ReturnType<typeof admissionMethods>;
