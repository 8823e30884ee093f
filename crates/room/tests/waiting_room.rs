//! Arrival, the waiting room, consent and admission.

mod common;

use common::*;
use confer_proto::{ChannelKind, Role, ServerMessage, Side};
use confer_room::{AuditKind, Command, RoomConfig, RoomError};
use confer_testkit::RoomHarness;

#[test]
fn mediator_goes_straight_to_joint_and_parties_wait() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let m_msgs = h.take(&m);
    assert!(
        matches!(&m_msgs[0], ServerMessage::Welcome { channel: Some(c), .. } if c.kind == ChannelKind::Joint)
    );
    let a_msgs = h.take(&a);
    assert_eq!(
        a_msgs.len(),
        1,
        "a waiting party receives its welcome and nothing else"
    );
    assert!(matches!(
        &a_msgs[0],
        ServerMessage::Welcome { channel: None, .. }
    ));
    // The mediator sees the arrival in the waiting room.
    let h_view = h.room.participant_count();
    assert_eq!(h_view, 2);
}

#[test]
fn parties_in_the_waiting_room_never_see_each_other() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    h.take(&a);
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    h.cmd(&b, consent()).unwrap();
    h.cmd(&b, Command::Leave).unwrap();
    // A heard nothing of B's arrival, consent or departure.
    assert!(h.take(&a).is_empty());
    // The mediator saw all of it.
    let m_msgs = h.take(&m);
    assert!(m_msgs.iter().any(|x| matches!(x, ServerMessage::ParticipantLeft { participant_id, .. } if participant_id == &b)));
}

#[test]
fn admission_requires_consent() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let audit_before = h.audit.len();
    assert_eq!(
        h.cmd(&m, Command::Admit(a.clone())),
        Err(RoomError::ConsentRequired)
    );
    assert_eq!(h.audit.len(), audit_before, "a refusal changes nothing");
    assert_eq!(last_channel(&h.take(&a)), None);

    h.cmd(&a, consent()).unwrap();
    assert!(h.take(&a).contains(&ServerMessage::ConsentRecorded));
    assert!(
        h.audit
            .iter()
            .any(|e| matches!(&e.kind, AuditKind::Consent(x) if x.as_str() == HASH))
    );
    h.cmd(&m, Command::Admit(a.clone())).unwrap();
    assert_eq!(last_channel(&h.take(&a)), Some(ch("joint")));
    assert_eq!(
        h.cmd(&m, Command::Admit(a.clone())),
        Err(RoomError::AlreadyAdmitted)
    );
    assert_eq!(h.cmd(&a, consent()), Err(RoomError::AlreadyAdmitted));
}

#[test]
fn only_mediators_admit() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let _m = h.join(Role::Mediator, None).unwrap();
    let co = h.join(Role::CoMediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    h.cmd(&a, consent()).unwrap();
    h.cmd(&b, consent()).unwrap();
    // A party cannot admit, not even itself.
    assert_eq!(
        h.cmd(&a, Command::Admit(b.clone())),
        Err(RoomError::Forbidden)
    );
    assert_eq!(
        h.cmd(&a, Command::Admit(a.clone())),
        Err(RoomError::Forbidden)
    );
    assert_eq!(last_channel(&h.take(&b)), None);
    // The co-mediator can.
    h.cmd(&co, Command::Admit(b.clone())).unwrap();
    assert_eq!(last_channel(&h.take(&b)), Some(ch("joint")));
}

#[test]
fn token_role_and_side_must_fit() {
    let mut h = RoomHarness::new(RoomConfig::default());
    assert_eq!(h.join(Role::Party, None), Err(RoomError::BadCredentials));
    assert_eq!(
        h.join(Role::Mediator, Some(Side::A)),
        Err(RoomError::BadCredentials)
    );
    assert_eq!(h.room.participant_count(), 0);
}

#[test]
fn mediator_sees_waiting_room_in_arrival_order_with_consent() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    h.cmd(&a, consent()).unwrap();
    let session = h
        .take(&m)
        .into_iter()
        .rev()
        .find_map(|x| match x {
            ServerMessage::Session { session } => Some(session),
            _ => None,
        })
        .unwrap();
    let order: Vec<_> = session
        .waiting
        .iter()
        .map(|w| (w.participant_id.clone(), w.consented))
        .collect();
    assert_eq!(order, vec![(b, false), (a, true)]);
}
