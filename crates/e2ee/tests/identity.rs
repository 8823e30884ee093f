#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Identities, announcements, the session code.

mod common;

use common::TestRng;
use confer_e2ee::code::session_code;
use confer_e2ee::identity::*;
use confer_proto::Role;

#[test]
fn announcements_verify_and_bind_session_id_and_role() {
    let mut rng = TestRng::new("identity");
    let id = Identity::generate(&mut rng);
    let a = id.announce(b"s1", [1; 16], Role::Party);
    assert!(a.verify(b"s1").is_ok());
    assert!(a.verify(b"s2").is_err());
    let mut promoted = a.clone();
    promoted.role = Role::Mediator;
    assert!(promoted.verify(b"s1").is_err());
    let mut other_key = a;
    other_key.ek_pub = [3; 32];
    assert!(other_key.verify(b"s1").is_err());
    assert!(
        !format!("{id:?}").contains("secret_key"),
        "Debug never prints secrets"
    );
}

#[test]
fn session_code_is_order_independent_and_changes_with_any_key() {
    let members = [
        ([2; 16], [20; 32]),
        ([1; 16], [10; 32]),
        ([3; 16], [30; 32]),
    ];
    let (d1, c1) = session_code(b"s1", &members);
    let mut shuffled = members;
    shuffled.reverse();
    assert_eq!(session_code(b"s1", &shuffled), (d1, c1.clone()));
    let groups: Vec<&str> = c1.split(' ').collect();
    assert_eq!(groups.len(), 6);
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
    let mut changed = members;
    changed[1].1[0] ^= 1;
    assert_ne!(session_code(b"s1", &changed).1, c1);
    assert_ne!(session_code(b"s2", &members).1, c1);
}

#[test]
fn name_commitments_hide_and_bind() {
    let c = name_commit(&[1; 16], "Alice").unwrap();
    assert_ne!(c, name_commit(&[2; 16], "Alice").unwrap());
    assert_ne!(c, name_commit(&[1; 16], "Alicf").unwrap());
    assert!(name_commit(&[1; 16], &"x".repeat(MAX_NAME_BYTES)).is_some());
    assert!(
        name_commit(&[1; 16], &"x".repeat(MAX_NAME_BYTES + 1)).is_none(),
        "no panic on huge names"
    );
}
