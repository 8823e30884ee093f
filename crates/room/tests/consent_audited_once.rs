//! Consent is audited when its hash changes, not each time it is repeated: a participant
//! cannot grow the audit log by sending the same consent again and again.

mod common;

use common::*;
use confer_proto::{AgreementHash, Role, ServerMessage, Side};
use confer_room::{AuditKind, Command, RoomConfig};
use confer_testkit::RoomHarness;

const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn consent_rows(h: &RoomHarness) -> Vec<String> {
    h.audit
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::Consent(x) => Some(x.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_repeated_identical_consent_writes_no_audit_row_but_a_changed_one_does() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    for _ in 0..100 {
        h.cmd(&a, consent()).unwrap();
    }
    assert_eq!(consent_rows(&h), [HASH]);
    // Still answered every time: the client learns its consent is recorded.
    let answers = h
        .take(&a)
        .iter()
        .filter(|x| **x == ServerMessage::ConsentRecorded)
        .count();
    assert_eq!(answers, 100);

    // A different agreement is a new fact: audited, and the last one counts.
    h.cmd(&a, Command::Consent(AgreementHash::new(OTHER).unwrap()))
        .unwrap();
    h.cmd(&a, consent()).unwrap();
    h.cmd(&a, consent()).unwrap();
    assert_eq!(consent_rows(&h), [HASH, OTHER, HASH]);
    h.cmd(&m, Command::Admit(a.clone())).unwrap();
}
