// Twin of crates/e2ee/src/roster.rs: signed rosters, one hash chain per channel (joint, each
// caucus, each breakout).
//
//   roster = "confer/1 roster" || lp(session_id) || lp(channel_id) || u8(kind) || u64(epoch)
//          || prev_hash[32] || u16(n) || n x ( lp(participant_id) || IK_pub[32] || EK_pub[32]
//          || u8(role) || u8(side) || u8(flags) || name_commit[32] )
//   signature = Ed25519(IK_signer, roster)
//   hash      = SHA256("confer/1 roster-hash" || roster || signature)

import { sha256 } from "@noble/hashes/sha2.js";

import { Reader, Truncated, Writer, asciiBytes, bytesEqual, compareBytes, concat } from "./enc.js";
import { SCOPE_ROSTERS, delegationBytes, roleFromCode, verify } from "./identity.js";
import type { Identity } from "./identity.js";
import type { Id16 } from "./lib.js";

const LABEL = "confer/1 roster";

/** Sides are 0 (none) or 1..=26 (A..Z). */
export const MAX_SIDE = 26;

/** Flag bit 0: the member is away (in another channel). */
export const FLAG_AWAY = 1;

/** The kind of channel a roster describes. */
export const Kind = {
  /** Everyone admitted. */
  Joint: 0,
  /** One side's private room. */
  Caucus: 1,
  /** Any membership. */
  Breakout: 2,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/** From the wire code; `undefined` for an unknown kind (which is rejected). */
export function kindFromCode(c: number): Kind | undefined {
  switch (c) {
    case 0:
    case 1:
    case 2:
      return c;
    default:
      return undefined;
  }
}

/** One member. */
export interface Member {
  /** 16 bytes. */
  participantId: Id16;
  /** Ed25519 public key. */
  ikPub: Uint8Array;
  /** X25519 public key. */
  ekPub: Uint8Array;
  /** Role code (0 mediator .. 4 observer). */
  role: number;
  /** 0 none, 1 side A, 2 side B, ... */
  side: number;
  /** Bit 0: away. */
  flags: number;
  /** Commitment to the display name. */
  nameCommit: Uint8Array;
}

/** True when flagged away (in another channel). */
export function isAway(m: Member): boolean {
  return (m.flags & FLAG_AWAY) !== 0;
}

/** The refusals, named as the vectors name them (Rust: the variants of `RosterError`). */
export const ROSTER_ERRORS = [
  "malformed",
  "bad_signature",
  "signer_not_member",
  "rollback",
  "fork",
  "gap",
  "wrong_channel",
] as const;
export type RosterErrorKind = (typeof ROSTER_ERRORS)[number];

const ROSTER_ERROR_TEXT: Record<RosterErrorKind, string> = {
  malformed: "malformed roster",
  bad_signature: "roster signature does not verify",
  signer_not_member: "roster signer is not a member",
  rollback: "roster rollback",
  fork: "roster fork",
  gap: "rosters withheld",
  wrong_channel: "roster for another channel",
};

/**
 * Why a roster was refused. Fork, rollback and gap are alarms the UI must show.
 * - `malformed`: not a well-formed roster (unsorted or duplicate ids, unknown values,
 *   trailing bytes);
 * - `bad_signature`: the signature does not verify under the mediator's key or a delegate's;
 * - `signer_not_member`: the signer is not a member with the signer's role;
 * - `rollback`: an older epoch than the one we hold (a replay or rollback);
 * - `fork`: same or next epoch, but a different history (the chain forked);
 * - `gap`: an epoch beyond the next one: rosters were withheld;
 * - `wrong_channel`: a roster for another session or channel.
 */
export class RosterError extends Error {
  constructor(readonly kind: RosterErrorKind) {
    super(ROSTER_ERROR_TEXT[kind]);
    this.name = "RosterError";
  }
}

/** A roster's contents, as plain data. */
export interface RosterFields {
  /** Session id bytes (1 to 64). */
  sessionId: Uint8Array;
  /** Channel id (16 random bytes chosen by the mediator's client). */
  channelId: Id16;
  /** Kind. */
  kind: Kind;
  /** 1 for a channel's first roster, then +1 each change. */
  epoch: bigint;
  /**
   * Hash of the previous roster of this channel. At epoch 1: zeros for a room's first chain,
   * or the hash of the last roster of the room's previous chain (a successor chain, §7.6).
   */
  prevHash: Uint8Array;
  /** Members in ascending order of participant id. */
  members: Member[];
}

const U64_LIMIT = 1n << 64n;

/** A roster's contents. */
export class Roster implements RosterFields {
  sessionId: Uint8Array;
  channelId: Id16;
  kind: Kind;
  epoch: bigint;
  prevHash: Uint8Array;
  members: Member[];

  constructor(f: RosterFields) {
    this.sessionId = f.sessionId;
    this.channelId = f.channelId;
    this.kind = f.kind;
    this.epoch = f.epoch;
    this.prevHash = f.prevHash;
    this.members = f.members;
  }

  /** The canonical encoding; refuses unsorted or duplicate members and unknown values. */
  encode(): Uint8Array {
    this.check();
    const w = Writer.label(LABEL)
      .lp(this.sessionId)
      .lp(this.channelId)
      .u8(this.kind)
      .u64(this.epoch)
      .raw(this.prevHash)
      .u16(this.members.length);
    for (const m of this.members) {
      w.lp(m.participantId)
        .raw(m.ikPub)
        .raw(m.ekPub)
        .u8(m.role)
        .u8(m.side)
        .u8(m.flags)
        .raw(m.nameCommit);
    }
    return w.intoBytes();
  }

  // Rust's types fix the sizes of ids, keys and hashes; here they are checked with the rest.
  private check(): void {
    const malformed = new RosterError("malformed");
    if (
      this.sessionId.length === 0 ||
      this.sessionId.length > 64 ||
      this.epoch === 0n ||
      this.epoch < 0n ||
      this.epoch >= U64_LIMIT ||
      this.channelId.length !== 16 ||
      this.prevHash.length !== 32 ||
      kindFromCode(this.kind) === undefined ||
      this.members.length > 0xffff
    ) {
      throw malformed;
    }
    for (let i = 1; i < this.members.length; i++) {
      const a = this.members[i - 1];
      const b = this.members[i];
      if (a === undefined || b === undefined || compareBytes(a.participantId, b.participantId) >= 0) {
        throw malformed;
      }
    }
    for (const m of this.members) {
      if (
        roleFromCode(m.role) === undefined ||
        !Number.isInteger(m.flags) ||
        (m.flags & ~FLAG_AWAY) !== 0 ||
        !Number.isInteger(m.side) ||
        m.side < 0 ||
        m.side > MAX_SIDE ||
        m.participantId.length !== 16 ||
        m.ikPub.length !== 32 ||
        m.ekPub.length !== 32 ||
        m.nameCommit.length !== 32
      ) {
        throw malformed;
      }
    }
  }

  /** Strict decoding of `encode`'s output; throws `RosterError("malformed")`. */
  static decode(bytes: Uint8Array): Roster {
    let roster: Roster;
    try {
      const r = new Reader(bytes);
      r.expect(LABEL);
      const sessionId = r.lp().slice();
      const channelId = r.lp().slice();
      if (channelId.length !== 16) {
        throw new Truncated();
      }
      const kind = kindFromCode(r.u8());
      if (kind === undefined) {
        throw new Truncated();
      }
      const epoch = r.u64();
      const prevHash = r.array(32);
      const n = r.u16();
      const members: Member[] = [];
      for (let i = 0; i < n; i++) {
        const participantId = r.lp().slice();
        if (participantId.length !== 16) {
          throw new Truncated();
        }
        members.push({
          participantId,
          ikPub: r.array(32),
          ekPub: r.array(32),
          role: r.u8(),
          side: r.u8(),
          flags: r.u8(),
          nameCommit: r.array(32),
        });
      }
      if (r.remaining() !== 0) {
        throw new Truncated();
      }
      roster = new Roster({ sessionId, channelId, kind, epoch, prevHash, members });
    } catch {
      throw new RosterError("malformed");
    }
    roster.check();
    return roster;
  }

  /** Signs with the mediator's (or a delegate's) identity. */
  sign(signer: Identity): SignedRoster {
    const encoded = this.encode();
    const signature = signer.sign(encoded);
    return new SignedRoster(this, encoded, signature, rosterHash(encoded, signature));
  }

  /** The member with this id. */
  member(id: Id16): Member | undefined {
    return this.members.find((m) => bytesEqual(m.participantId, id));
  }
}

/** `SHA256("confer/1 roster-hash" || roster || signature)`. */
export function rosterHash(encoded: Uint8Array, signature: Uint8Array): Uint8Array {
  return sha256(concat(asciiBytes("confer/1 roster-hash"), encoded, signature));
}

/** A roster with its encoding, signature and hash. */
export class SignedRoster {
  constructor(
    /** Decoded contents. */
    readonly roster: Roster,
    /** Canonical bytes (what was signed). */
    readonly encoded: Uint8Array,
    /** Signature. */
    readonly signature: Uint8Array,
    /** Chain hash. */
    readonly hash: Uint8Array,
  ) {}

  /** Decodes received bytes (does not verify the signature; `Chain.accept` does). */
  static fromParts(encoded: Uint8Array, signature: Uint8Array): SignedRoster {
    const roster = Roster.decode(encoded);
    if (signature.length !== 64) {
      throw new RosterError("malformed");
    }
    return new SignedRoster(roster, encoded.slice(), signature.slice(), rosterHash(encoded, signature));
  }
}

/** What accepting a roster did. */
export const Accepted = {
  /** A new head. */
  Advanced: "advanced",
  /** The same roster again; nothing changed. */
  Unchanged: "unchanged",
} as const;
export type Accepted = (typeof Accepted)[keyof typeof Accepted];

function verifies(ik: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    verify(ik, msg, sig);
    return true;
  } catch {
    return false;
  }
}

/** One channel's chain, verified against the mediator's key and its delegates. */
export class Chain {
  private readonly sessionId: Uint8Array;
  private readonly mediatorIk: Uint8Array;
  private delegates: Uint8Array[] = [];
  private headRoster: SignedRoster | undefined = undefined;

  /** A chain for a session whose mediator key the client verified. */
  constructor(sessionId: Uint8Array, mediatorIk: Uint8Array) {
    this.sessionId = sessionId.slice();
    this.mediatorIk = mediatorIk.slice();
  }

  /** A copy whose later changes do not touch this one (Rust derives `Clone`). */
  clone(): Chain {
    const c = new Chain(this.sessionId, this.mediatorIk);
    c.delegates = [...this.delegates];
    c.headRoster = this.headRoster;
    return c;
  }

  /**
   * Adds a co-mediator allowed to sign, after checking the mediator's delegation signature.
   * Throws `RosterError("bad_signature")`.
   */
  addDelegate(coIk: Uint8Array, scope: number, sig: Uint8Array): void {
    if (coIk.length !== 32) {
      throw new RosterError("bad_signature");
    }
    const msg = delegationBytes(this.sessionId, coIk, scope);
    if (!verifies(this.mediatorIk, msg, sig)) {
      throw new RosterError("bad_signature");
    }
    // Only the scope this version defines; unknown bits are refused, not ignored.
    if (scope !== SCOPE_ROSTERS) {
      throw new RosterError("bad_signature");
    }
    if (!this.delegates.some((d) => bytesEqual(d, coIk))) {
      this.delegates.push(coIk.slice());
    }
  }

  /** The current roster. */
  head(): SignedRoster | undefined {
    return this.headRoster;
  }

  /**
   * Verifies and, if it extends the chain, adopts `next`. The first roster a client sees
   * may have any epoch (a late joiner); after that each must be exactly the next. Throws
   * `RosterError`; a refusal changes nothing.
   */
  accept(next: SignedRoster): Accepted {
    const r = next.roster;
    if (!bytesEqual(r.sessionId, this.sessionId)) {
      throw new RosterError("wrong_channel");
    }
    const head = this.headRoster;
    if (head !== undefined && (!bytesEqual(head.roster.channelId, r.channelId) || head.roster.kind !== r.kind)) {
      throw new RosterError("wrong_channel");
    }
    // The signer must be the mediator (listed with role 0) or a delegate (listed with
    // role 1): the very key that signed, not any key of that kind.
    let signer: Uint8Array;
    let signerRole: number;
    if (verifies(this.mediatorIk, next.encoded, next.signature)) {
      signer = this.mediatorIk;
      signerRole = 0;
    } else {
      const d = this.delegates.find((k) => verifies(k, next.encoded, next.signature));
      if (d === undefined) {
        throw new RosterError("bad_signature");
      }
      signer = d;
      signerRole = 1;
    }
    if (!r.members.some((m) => m.role === signerRole && bytesEqual(m.ikPub, signer))) {
      throw new RosterError("signer_not_member");
    }
    if (head === undefined) {
      this.headRoster = next;
      return Accepted.Advanced;
    }
    const cur = head.roster.epoch;
    if (r.epoch < cur) {
      throw new RosterError("rollback");
    }
    if (r.epoch === cur) {
      if (bytesEqual(next.hash, head.hash)) {
        return Accepted.Unchanged;
      }
      throw new RosterError("fork");
    }
    if (r.epoch > cur + 1n) {
      throw new RosterError("gap");
    }
    if (!bytesEqual(r.prevHash, head.hash)) {
      throw new RosterError("fork");
    }
    this.headRoster = next;
    return Accepted.Advanced;
  }
}
