// Rosters: canonical encoding, signatures, chains, forks, rollbacks, delegation (the
// behaviours of crates/e2ee/tests/rosters.rs).

import { describe, expect, it } from "vitest";

import { toHex } from "../src/core/enc.js";
import { Identity, SCOPE_ROSTERS } from "../src/core/identity.js";
import {
  Accepted,
  Chain,
  Kind,
  MAX_SIDE,
  Roster,
  RosterError,
  SignedRoster,
  isAway,
} from "../src/core/roster.js";
import type { Member, RosterErrorKind } from "../src/core/roster.js";
import { TestRng, addL, filled, utf8 } from "./helpers.js";

function member(id: number, who: Identity, role: number, side: number, flags: number): Member {
  return {
    participantId: filled(16, id),
    ikPub: who.ikPub(),
    ekPub: who.ekPub(),
    role,
    side,
    flags,
    nameCommit: filled(32, id),
  };
}

interface World {
  m: Identity;
  a: Identity;
  b: Identity;
}

function world(): World {
  const rng = new TestRng("rosters");
  return { m: Identity.generate(rng), a: Identity.generate(rng), b: Identity.generate(rng) };
}

function roster(w: World, epoch: bigint, prev: Uint8Array, withB: boolean): Roster {
  const members = [member(1, w.m, 0, 0, 0), member(2, w.a, 2, 1, 0)];
  if (withB) {
    members.push(member(3, w.b, 2, 2, 0));
  }
  return new Roster({
    sessionId: utf8("s1"),
    channelId: filled(16, 9),
    kind: Kind.Joint,
    epoch,
    prevHash: prev,
    members,
  });
}

/** The refusal `f` throws, by name. */
function refusal(f: () => unknown): RosterErrorKind {
  try {
    f();
  } catch (e) {
    if (e instanceof RosterError) {
      return e.kind;
    }
    throw e;
  }
  throw new Error("accepted");
}

const ZERO = new Uint8Array(32);

describe("a chain", () => {
  it("advances one epoch at a time, and refuses rollback, fork and gap", () => {
    const w = world();
    const chain = new Chain(utf8("s1"), w.m.ikPub());
    const r1 = roster(w, 1n, ZERO, false).sign(w.m);
    expect(chain.accept(r1)).toBe(Accepted.Advanced);
    expect(chain.accept(r1)).toBe(Accepted.Unchanged);
    const r2 = roster(w, 2n, r1.hash, true).sign(w.m);
    expect(chain.accept(r2)).toBe(Accepted.Advanced);
    // Replaying the older roster is a rollback.
    expect(refusal(() => chain.accept(r1))).toBe("rollback");
    // A different epoch-2 roster is a fork; a next roster not linked to the head too.
    expect(refusal(() => chain.accept(roster(w, 2n, r1.hash, false).sign(w.m)))).toBe("fork");
    expect(refusal(() => chain.accept(roster(w, 3n, filled(32, 1), true).sign(w.m)))).toBe("fork");
    expect(refusal(() => chain.accept(roster(w, 4n, r2.hash, true).sign(w.m)))).toBe("gap");
    expect(toHex(chain.head()?.hash ?? ZERO), "refusals change nothing").toBe(toHex(r2.hash));
  });

  it("takes any epoch first (a late joiner), and a linked epoch 1 (§7.1)", () => {
    const w = world();
    const late = new Chain(utf8("s1"), w.m.ikPub());
    expect(late.accept(roster(w, 7n, filled(32, 5), true).sign(w.m))).toBe(Accepted.Advanced);
    const successor = new Chain(utf8("s1"), w.m.ikPub());
    expect(successor.accept(roster(w, 1n, filled(32, 6), true).sign(w.m))).toBe(Accepted.Advanced);
  });

  it("refuses another session's roster", () => {
    const w = world();
    const chain = new Chain(utf8("s2"), w.m.ikPub());
    expect(refusal(() => chain.accept(roster(w, 1n, ZERO, false).sign(w.m)))).toBe("wrong_channel");
  });

  it("keeps its channel and its kind", () => {
    const w = world();
    const chain = new Chain(utf8("s1"), w.m.ikPub());
    const r1 = roster(w, 1n, ZERO, false).sign(w.m);
    chain.accept(r1);
    const caucus = roster(w, 2n, r1.hash, true);
    caucus.kind = Kind.Caucus;
    expect(refusal(() => chain.accept(caucus.sign(w.m)))).toBe("wrong_channel");
    const elsewhere = roster(w, 2n, r1.hash, true);
    elsewhere.channelId = filled(16, 8);
    expect(refusal(() => chain.accept(elsewhere.sign(w.m)))).toBe("wrong_channel");
  });

  it("clones without sharing later changes", () => {
    const w = world();
    const chain = new Chain(utf8("s1"), w.m.ikPub());
    const r1 = roster(w, 1n, ZERO, false).sign(w.m);
    chain.accept(r1);
    const copy = chain.clone();
    copy.accept(roster(w, 2n, r1.hash, true).sign(w.m));
    expect(chain.head()?.roster.epoch).toBe(1n);
    expect(copy.head()?.roster.epoch).toBe(2n);
  });
});

describe("signers", () => {
  it("are the mediator, or a delegate listed with role 1", () => {
    const w = world();
    const chain = new Chain(utf8("s1"), w.m.ikPub());
    expect(refusal(() => chain.accept(roster(w, 1n, ZERO, true).sign(w.a)))).toBe("bad_signature");
    const r = roster(w, 1n, ZERO, false);
    r.members.push(member(4, w.b, 1, 0, 0));
    const byCo = r.sign(w.b);
    expect(refusal(() => chain.clone().accept(byCo))).toBe("bad_signature");
    chain.addDelegate(w.b.ikPub(), SCOPE_ROSTERS, w.m.delegate(utf8("s1"), w.b.ikPub(), SCOPE_ROSTERS));
    expect(chain.accept(byCo)).toBe(Accepted.Advanced);
    // A delegation the mediator did not sign is refused.
    const bad = w.a.delegate(utf8("s1"), w.a.ikPub(), SCOPE_ROSTERS);
    expect(
      refusal(() => {
        chain.addDelegate(w.a.ikPub(), SCOPE_ROSTERS, bad);
      }),
    ).toBe("bad_signature");
  });

  it("must be listed as themselves", () => {
    const w = world();
    const chain = new Chain(utf8("s1"), w.m.ikPub());
    const r = roster(w, 1n, ZERO, true);
    r.members.shift();
    expect(refusal(() => chain.accept(r.sign(w.m)))).toBe("signer_not_member");
    const asCo = roster(w, 1n, ZERO, true);
    const first = asCo.members[0];
    if (first === undefined) {
      throw new Error("a mediator");
    }
    first.role = 1;
    expect(refusal(() => chain.accept(asCo.sign(w.m))), "the mediator with role 1").toBe("signer_not_member");
  });

  it("sign only for themselves: another delegate's entry does not do, unknown scopes fail", () => {
    const w = world();
    const rng = new TestRng("rosters-2");
    const co1 = Identity.generate(rng);
    const co2 = Identity.generate(rng);
    const chain = new Chain(utf8("s1"), w.m.ikPub());
    for (const co of [co1, co2]) {
      chain.addDelegate(co.ikPub(), SCOPE_ROSTERS, w.m.delegate(utf8("s1"), co.ikPub(), SCOPE_ROSTERS));
    }
    const r = roster(w, 1n, ZERO, false);
    r.members.push(member(5, co2, 1, 0, 0));
    expect(refusal(() => chain.clone().accept(r.sign(co1)))).toBe("signer_not_member");
    const sig = w.m.delegate(utf8("s1"), w.a.ikPub(), 3);
    expect(
      refusal(() => {
        chain.addDelegate(w.a.ikPub(), 3, sig);
      }),
    ).toBe("bad_signature");
  });

  it("cannot be forged by tampering with the signature or adding L to S", () => {
    const w = world();
    const r1 = roster(w, 1n, ZERO, true).sign(w.m);
    const sig = r1.signature.slice();
    sig[5] = (sig[5] ?? 0) ^ 1;
    expect(refusal(() => new Chain(utf8("s1"), w.m.ikPub()).accept(SignedRoster.fromParts(r1.encoded, sig)))).toBe(
      "bad_signature",
    );
    const sPlusL = r1.signature.slice();
    addL(sPlusL.subarray(32));
    expect(
      refusal(() => new Chain(utf8("s1"), w.m.ikPub()).accept(SignedRoster.fromParts(r1.encoded, sPlusL))),
    ).toBe("bad_signature");
  });
});

describe("encoding (§7.1, §7.3)", () => {
  it("decodes strictly", () => {
    const w = world();
    const r = roster(w, 1n, ZERO, true);
    const bytes = r.encode();
    expect(toHex(Roster.decode(bytes).encode())).toBe(toHex(bytes));
    const trailing = new Uint8Array(bytes.length + 1);
    trailing.set(bytes);
    expect(refusal(() => Roster.decode(trailing))).toBe("malformed");
    expect(refusal(() => Roster.decode(bytes.subarray(0, bytes.length - 1)))).toBe("malformed");
    expect(refusal(() => Roster.decode(new Uint8Array(0)))).toBe("malformed");
  });

  it("refuses to encode what a decoder refuses", () => {
    const w = world();
    const base = (): Roster => roster(w, 1n, ZERO, true);
    const at = (r: Roster, i: number): Member => {
      const m = r.members[i];
      if (m === undefined) {
        throw new Error("three members");
      }
      return m;
    };
    const unsorted = base();
    unsorted.members.reverse();
    expect(refusal(() => unsorted.encode())).toBe("malformed");
    const dup = base();
    at(dup, 1).participantId = at(dup, 0).participantId;
    expect(refusal(() => dup.encode())).toBe("malformed");
    const flags = base();
    at(flags, 0).flags = 2;
    expect(refusal(() => flags.encode())).toBe("malformed");
    const role = base();
    at(role, 0).role = 5;
    expect(refusal(() => role.encode())).toBe("malformed");
    const side = base();
    at(side, 1).side = MAX_SIDE;
    expect(() => side.encode()).not.toThrow();
    at(side, 1).side = MAX_SIDE + 1;
    expect(refusal(() => side.encode())).toBe("malformed");
    const epoch0 = roster(w, 0n, ZERO, true);
    expect(refusal(() => epoch0.encode())).toBe("malformed");
    const noSession = base();
    noSession.sessionId = new Uint8Array(0);
    expect(refusal(() => noSession.encode())).toBe("malformed");
    const longSession = base();
    longSession.sessionId = filled(65, 0x61);
    expect(refusal(() => longSession.encode())).toBe("malformed");
    const shortId = base();
    at(shortId, 2).participantId = filled(15, 9);
    expect(refusal(() => shortId.encode())).toBe("malformed");
    // A successor chain's first roster links to the last roster of the room's previous chain.
    const genesis = base();
    genesis.prevHash = filled(32, 1);
    expect(() => genesis.encode()).not.toThrow();
  });

  it("finds members and their away flag", () => {
    const w = world();
    const r = roster(w, 1n, ZERO, true);
    const b = r.member(filled(16, 3));
    expect(b && toHex(b.ikPub)).toBe(toHex(w.b.ikPub()));
    expect(r.member(filled(16, 4))).toBeUndefined();
    expect(isAway(member(1, w.m, 0, 0, 1))).toBe(true);
    expect(isAway(member(1, w.m, 0, 0, 0))).toBe(false);
  });
});
