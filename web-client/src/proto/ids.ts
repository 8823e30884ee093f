// Twin of crates/proto/src/ids.rs: identifiers, roles, sides and channel kinds of the
// signalling protocol (docs/protocol/signalling.md §1, "Common value types").
//
// Rust's id newtypes are branded strings here: a `ParticipantId` is a `string` that passed
// the id grammar (1 to 64 characters of `A-Z a-z 0-9 _ -`). `create` is Rust's `new` (it
// throws `IdError`); `parse` is `new(..).ok()` (`undefined` when refused). A `Side` is its
// wire form, one uppercase letter; `Side.number` is the confer/1 side code (1 for A).

declare const brand: unique symbol;

/** Why an id or side was refused. */
export class IdError extends Error {
  constructor() {
    super("identifier must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'");
    this.name = "IdError";
  }
}

const ID = /^[A-Za-z0-9_-]{1,64}$/;

function validId(s: string): boolean {
  return ID.test(s);
}

/**
 * A session, chosen by whoever mints the mediator's token. Not personal, but it links
 * everyone in one mediation.
 */
export type SessionId = string & { readonly [brand]: "SessionId" };
/** A participant's pseudonym for one join: random, assigned by the server, never reused. */
export type ParticipantId = string & { readonly [brand]: "ParticipantId" };
/** A channel of a session: `joint`, `caucus-A`, `breakout-1`, ... Assigned by the server. */
export type ChannelId = string & { readonly [brand]: "ChannelId" };

export const SessionId = {
  /** Rust: `SessionId::new`; throws `IdError`. */
  create: (s: string): SessionId => {
    if (!validId(s)) {
      throw new IdError();
    }
    return s as SessionId;
  },
  /** `SessionId::new(s).ok()`. */
  parse: (s: string): SessionId | undefined => {
    return validId(s) ? (s as SessionId) : undefined;
  },
};

export const ParticipantId = {
  /** Rust: `ParticipantId::new`; throws `IdError`. */
  create: (s: string): ParticipantId => {
    if (!validId(s)) {
      throw new IdError();
    }
    return s as ParticipantId;
  },
  /** `ParticipantId::new(s).ok()`. */
  parse: (s: string): ParticipantId | undefined => {
    return validId(s) ? (s as ParticipantId) : undefined;
  },
};

export const ChannelId = {
  /** Rust: `ChannelId::new`; throws `IdError`. */
  create: (s: string): ChannelId => {
    if (!validId(s)) {
      throw new IdError();
    }
    return s as ChannelId;
  },
  /** `ChannelId::new(s).ok()`. */
  parse: (s: string): ChannelId | undefined => {
    return validId(s) ? (s as ChannelId) : undefined;
  },
  /** The joint session every admitted participant starts in. */
  joint: (): ChannelId => {
    return "joint" as ChannelId;
  },
  /** The caucus of one side: that side's parties and counsel, with the mediators. */
  caucus: (side: Side): ChannelId => {
    return `caucus-${side}` as ChannelId;
  },
  /** The n-th breakout room of a session. */
  breakout: (n: number): ChannelId => {
    return `breakout-${n.toString()}` as ChannelId;
  },
};

/** What a participant is in the session (snake_case on the wire). */
export type Role = "mediator" | "co_mediator" | "party" | "counsel" | "observer";

/** Every role, in declaration order. */
export const ROLES: readonly Role[] = ["mediator", "co_mediator", "party", "counsel", "observer"];

export const Role = {
  /** Mediator or co-mediator: the roles that run the session. */
  isManager: (r: Role): boolean => {
    return r === "mediator" || r === "co_mediator";
  },
  /** Party and counsel belong to a side; nobody else does. */
  needsSide: (r: Role): boolean => {
    return r === "party" || r === "counsel";
  },
  /** The wire name. */
  asStr: (r: Role): string => {
    return r;
  },
  /** Rust: `FromStr` (also accepts `co-mediator`); `undefined` for anything else. */
  fromStr: (s: string): Role | undefined => {
    if (s === "co-mediator") {
      return "co_mediator";
    }
    return (ROLES as readonly string[]).includes(s) ? (s as Role) : undefined;
  },
  /** Rust: serde's decoding (exactly the wire names); `undefined` for anything else. */
  fromWire: (v: unknown): Role | undefined => {
    return typeof v === "string" && (ROLES as readonly string[]).includes(v) ? (v as Role) : undefined;
  },
};

/** A side of the dispute: one uppercase letter `A` to `Z` on the wire (1 to 26 inside). */
export type Side = string & { readonly [brand]: "Side" };

const A = "A".charCodeAt(0);

export const Side = {
  /** Side A. */
  A: "A" as Side,
  /** Side B. */
  B: "B" as Side,
  /** Rust: `Side::new(n)` for n in 1..=26; throws `IdError`. */
  create: (n: number): Side => {
    if (!Number.isInteger(n) || n < 1 || n > 26) {
      throw new IdError();
    }
    return String.fromCharCode(A + n - 1) as Side;
  },
  /** The number of the side, 1 for A (as in confer/1 rosters). */
  number: (s: Side): number => {
    return s.charCodeAt(0) - A + 1;
  },
  /** Rust: `FromStr`: one letter, either case; `undefined` for anything else. */
  fromStr: (s: string): Side | undefined => {
    return /^[A-Za-z]$/.test(s) ? (s.toUpperCase() as Side) : undefined;
  },
  /** Rust: serde's decoding: exactly one uppercase letter; `undefined` for anything else. */
  fromWire: (v: unknown): Side | undefined => {
    return typeof v === "string" && /^[A-Z]$/.test(v) ? (v as Side) : undefined;
  },
};

/** The kind of a channel. */
export type ChannelKind = "joint" | "caucus" | "breakout";

export const ChannelKind = {
  /** Rust: serde's decoding; `undefined` for anything else. */
  fromWire: (v: unknown): ChannelKind | undefined => {
    return v === "joint" || v === "caucus" || v === "breakout" ? v : undefined;
  },
};
