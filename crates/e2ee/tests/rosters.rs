#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rosters: canonical encoding, signatures, chains, forks, rollbacks, delegation.

mod common;

use common::{TestRng, add_l};
use confer_e2ee::identity::{Identity, SCOPE_ROSTERS};
use confer_e2ee::roster::*;

fn member(id: u8, who: &Identity, role: u8, side: u8, flags: u8) -> Member {
    Member {
        participant_id: [id; 16],
        ik_pub: who.ik_pub(),
        ek_pub: who.ek_pub(),
        role,
        side,
        flags,
        name_commit: [id; 32],
    }
}

struct World {
    m: Identity,
    a: Identity,
    b: Identity,
}

fn world() -> World {
    let mut rng = TestRng::new("rosters");
    World {
        m: Identity::generate(&mut rng),
        a: Identity::generate(&mut rng),
        b: Identity::generate(&mut rng),
    }
}

fn roster(w: &World, epoch: u64, prev: [u8; 32], with_b: bool) -> Roster {
    let mut members = vec![member(1, &w.m, 0, 0, 0), member(2, &w.a, 2, 1, 0)];
    if with_b {
        members.push(member(3, &w.b, 2, 2, 0));
    }
    Roster {
        session_id: b"s1".to_vec(),
        channel_id: [9; 16],
        kind: Kind::Joint,
        epoch,
        prev_hash: prev,
        members,
    }
}

#[test]
fn a_chain_advances_one_epoch_at_a_time() {
    let w = world();
    let mut chain = Chain::new(b"s1", w.m.ik_pub());
    let r1 = roster(&w, 1, [0; 32], false).sign(&w.m).unwrap();
    assert_eq!(chain.accept(r1.clone()), Ok(Accepted::Advanced));
    assert_eq!(chain.accept(r1.clone()), Ok(Accepted::Unchanged));
    let r2 = roster(&w, 2, r1.hash, true).sign(&w.m).unwrap();
    assert_eq!(chain.accept(r2.clone()), Ok(Accepted::Advanced));
    // Replaying the older roster is a rollback.
    assert_eq!(chain.accept(r1.clone()), Err(RosterError::Rollback));
    // A different epoch-2 roster is a fork; a next roster not linked to the head too.
    let other2 = roster(&w, 2, r1.hash, false).sign(&w.m).unwrap();
    assert_eq!(chain.accept(other2), Err(RosterError::Fork));
    let unlinked3 = roster(&w, 3, [1; 32], true).sign(&w.m).unwrap();
    assert_eq!(chain.accept(unlinked3), Err(RosterError::Fork));
    let skipped = roster(&w, 4, r2.hash, true).sign(&w.m).unwrap();
    assert_eq!(chain.accept(skipped), Err(RosterError::Gap));
    assert_eq!(
        chain.head().unwrap().hash,
        r2.hash,
        "refusals change nothing"
    );
}

#[test]
fn only_the_mediator_or_a_delegate_signs() {
    let w = world();
    let mut chain = Chain::new(b"s1", w.m.ik_pub());
    let forged = roster(&w, 1, [0; 32], true).sign(&w.a).unwrap();
    assert_eq!(chain.accept(forged), Err(RosterError::BadSignature));
    // A co-mediator signs after delegation, and must be listed with role 1.
    let mut r = roster(&w, 1, [0; 32], false);
    r.members.push(member(4, &w.b, 1, 0, 0));
    let by_co = r.clone().sign(&w.b).unwrap();
    assert_eq!(
        chain.clone().accept(by_co.clone()),
        Err(RosterError::BadSignature)
    );
    let sig = w.m.delegate(b"s1", &w.b.ik_pub(), SCOPE_ROSTERS);
    chain
        .add_delegate(w.b.ik_pub(), SCOPE_ROSTERS, &sig)
        .unwrap();
    assert_eq!(chain.accept(by_co), Ok(Accepted::Advanced));
    // A delegation the mediator did not sign is refused.
    let bad = w.a.delegate(b"s1", &w.a.ik_pub(), SCOPE_ROSTERS);
    assert_eq!(
        chain.add_delegate(w.a.ik_pub(), SCOPE_ROSTERS, &bad),
        Err(RosterError::BadSignature)
    );
}

#[test]
fn the_signer_must_be_listed() {
    let w = world();
    let mut chain = Chain::new(b"s1", w.m.ik_pub());
    let mut r = roster(&w, 1, [0; 32], true);
    r.members.remove(0);
    let sr = r.sign(&w.m).unwrap();
    assert_eq!(chain.accept(sr), Err(RosterError::SignerNotMember));
}

#[test]
fn tampering_with_bytes_or_signature_fails() {
    let w = world();
    let r1 = roster(&w, 1, [0; 32], true).sign(&w.m).unwrap();
    let mut sig = r1.signature;
    sig[5] ^= 1;
    let bad = SignedRoster::from_parts(&r1.encoded, sig).unwrap();
    assert_eq!(
        Chain::new(b"s1", w.m.ik_pub()).accept(bad),
        Err(RosterError::BadSignature)
    );
    // Non-canonical S (S + L) is rejected by strict verification.
    let mut s_plus_l = r1.signature;
    add_l(&mut s_plus_l[32..]);
    let nc = SignedRoster::from_parts(&r1.encoded, s_plus_l).unwrap();
    assert_eq!(
        Chain::new(b"s1", w.m.ik_pub()).accept(nc),
        Err(RosterError::BadSignature)
    );
}

#[test]
fn decoding_is_strict() {
    let w = world();
    let r = roster(&w, 1, [0; 32], true);
    let bytes = r.encode().unwrap();
    assert_eq!(Roster::decode(&bytes).unwrap(), r);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(Roster::decode(&trailing), Err(RosterError::Malformed));
    assert_eq!(
        Roster::decode(&bytes[..bytes.len() - 1]),
        Err(RosterError::Malformed)
    );
    let mut unsorted = r.clone();
    unsorted.members.swap(0, 1);
    assert_eq!(unsorted.encode(), Err(RosterError::Malformed));
    let mut dup = r.clone();
    dup.members[1].participant_id = dup.members[0].participant_id;
    assert_eq!(dup.encode(), Err(RosterError::Malformed));
    let mut flags = r.clone();
    flags.members[0].flags = 2;
    assert_eq!(flags.encode(), Err(RosterError::Malformed));
    let mut role = r.clone();
    role.members[0].role = 5;
    assert_eq!(role.encode(), Err(RosterError::Malformed));
    // A successor chain's first roster links to the last roster of the room's previous chain.
    let mut genesis = r;
    genesis.prev_hash = [1; 32];
    assert!(genesis.encode().is_ok());
}

#[test]
fn a_delegate_signs_only_for_itself_and_chains_keep_their_kind() {
    let w = world();
    let mut rng = TestRng::new("rosters-2");
    let co1 = Identity::generate(&mut rng);
    let co2 = Identity::generate(&mut rng);
    let mut chain = Chain::new(b"s1", w.m.ik_pub());
    for co in [&co1, &co2] {
        let sig = w.m.delegate(b"s1", &co.ik_pub(), SCOPE_ROSTERS);
        chain
            .add_delegate(co.ik_pub(), SCOPE_ROSTERS, &sig)
            .unwrap();
    }
    // co1 signs a roster that lists co2 (role 1) but not co1: refused.
    let mut r = roster(&w, 1, [0; 32], false);
    r.members.push(member(5, &co2, 1, 0, 0));
    assert_eq!(
        chain.clone().accept(r.sign(&co1).unwrap()),
        Err(RosterError::SignerNotMember)
    );
    // Unknown scope bits are refused.
    let sig = w.m.delegate(b"s1", &w.a.ik_pub(), 3);
    assert_eq!(
        chain.add_delegate(w.a.ik_pub(), 3, &sig),
        Err(RosterError::BadSignature)
    );
    // A channel's chain keeps its kind.
    let r1 = roster(&w, 1, [0; 32], false).sign(&w.m).unwrap();
    chain.accept(r1.clone()).unwrap();
    let mut r2 = roster(&w, 2, r1.hash, true);
    r2.kind = Kind::Caucus;
    assert_eq!(
        chain.accept(r2.sign(&w.m).unwrap()),
        Err(RosterError::WrongChannel)
    );
}

#[test]
fn sides_beyond_z_are_malformed() {
    let w = world();
    let mut r = roster(&w, 1, [0; 32], true);
    r.members[1].side = MAX_SIDE;
    assert!(r.encode().is_ok());
    r.members[1].side = MAX_SIDE + 1;
    assert_eq!(r.encode(), Err(RosterError::Malformed));
}
