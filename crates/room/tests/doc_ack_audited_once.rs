#![allow(clippy::unwrap_used)]

//! An acknowledged document version is audited once per participant and version, only from
//! admitted participants; the room can also be ended from outside (the console's purge),
//! which tells everyone connected exactly as a manager's `end` does.

mod common;

use common::*;
use confer_proto::{CloseCode, DocHash, Role, ServerMessage, Side};
use confer_room::{AuditKind, Command, Input, MAX_ACKNOWLEDGED_DOCS, RoomError};
use confer_testkit::RoomHarness;

const V1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const V2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn ack(h: &str) -> Command {
    Command::AcknowledgeDoc(DocHash::new(h).unwrap())
}

fn ack_rows(h: &RoomHarness) -> Vec<(String, String)> {
    h.audit
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::DocAcknowledged(x) => Some((
                e.participant.as_ref().unwrap().as_str().to_owned(),
                x.as_str().to_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn each_version_is_audited_once_per_participant_and_never_from_the_waiting_room() {
    let mut c = cast();
    for _ in 0..10 {
        c.h.cmd(&c.a, ack(V1)).unwrap();
    }
    c.h.cmd(&c.b, ack(V1)).unwrap();
    c.h.cmd(&c.a, ack(V2)).unwrap();
    c.h.cmd(&c.a, ack(V1)).unwrap();
    let (a, b) = (c.a.as_str().to_owned(), c.b.as_str().to_owned());
    assert_eq!(
        ack_rows(&c.h),
        [(a.clone(), V1.into()), (b, V1.into()), (a, V2.into())]
    );
    assert_eq!(
        AuditKind::DocAcknowledged(DocHash::new(V1).unwrap()).name(),
        "doc_acknowledged"
    );
    assert!(c.h.take(&c.a).is_empty(), "no answer to an accepted ack");

    let w = c.h.join(Role::Party, Some(Side::B)).unwrap();
    assert_eq!(c.h.cmd(&w, ack(V1)), Err(RoomError::Forbidden));
    assert_eq!(ack_rows(&c.h).len(), 3);
}

#[test]
fn a_participants_distinct_versions_are_bounded() {
    let mut c = cast();
    for i in 0..MAX_ACKNOWLEDGED_DOCS {
        c.h.cmd(&c.a, ack(&format!("{i:064x}"))).unwrap();
    }
    let next = format!("{MAX_ACKNOWLEDGED_DOCS:064x}");
    assert_eq!(c.h.cmd(&c.a, ack(&next)), Err(RoomError::Forbidden));
    // One already recorded is still taken (and still not audited twice).
    c.h.cmd(&c.a, ack(&format!("{:064x}", 0))).unwrap();
    assert_eq!(ack_rows(&c.h).len(), MAX_ACKNOWLEDGED_DOCS);
    // Another participant has its own bound.
    c.h.cmd(&c.b, ack(&next)).unwrap();
}

#[test]
fn ending_from_outside_tells_everyone_connected() {
    let mut c = cast();
    let w = c.h.join(Role::Party, Some(Side::B)).unwrap();
    for p in [&c.m, &c.a, &c.b, &c.ca, &w] {
        c.h.take(p);
    }
    let now = c.h.clock.now();
    c.h.room.handle_input(Input::End { now }).unwrap();
    c.h.drain();
    assert!(c.h.ended);
    for p in [&c.m, &c.a, &c.b, &c.ca, &w] {
        assert_eq!(c.h.take(p), [ServerMessage::SessionEnded]);
        assert!(c.h.closed.contains(&(p.clone(), CloseCode::SessionEnded)));
    }
    assert!(matches!(
        c.h.audit.last().map(|e| &e.kind),
        Some(AuditKind::SessionEnded)
    ));
    assert_eq!(
        c.h.room.handle_input(Input::End { now }),
        Err(RoomError::Ended)
    );
}
