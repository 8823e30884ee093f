//! Lock, kick, leave, end, and resume within the grace period, all in virtual time.

mod common;

use std::time::Duration;

use common::*;
use confer_proto::{CloseCode, LeaveReason, Role, ServerMessage, Side};
use confer_room::{AuditKind, Command, RoomConfig, RoomError};
use confer_testkit::RoomHarness;

#[test]
fn lock_stops_new_arrivals_but_not_mediators() {
    let Cast { mut h, m, a, .. } = cast();
    assert_eq!(h.cmd(&a, Command::Lock), Err(RoomError::Forbidden));
    assert!(!h.room.is_locked());
    h.cmd(&m, Command::Lock).unwrap();
    assert!(
        h.take(&a)
            .contains(&ServerMessage::LockChanged { locked: true })
    );
    assert_eq!(h.join(Role::Party, Some(Side::B)), Err(RoomError::Locked));
    assert!(h.join(Role::CoMediator, None).is_ok());
    assert_eq!(h.cmd(&a, Command::Unlock), Err(RoomError::Forbidden));
    h.cmd(&m, Command::Unlock).unwrap();
    assert!(h.join(Role::Party, Some(Side::B)).is_ok());
    let kinds: Vec<_> = h.audit.iter().map(|e| e.kind.name()).collect();
    assert!(kinds.contains(&"locked") && kinds.contains(&"unlocked"));
}

#[test]
fn kick_removes_and_tells_the_channel() {
    let Cast { mut h, m, a, b, ca } = cast();
    assert_eq!(
        h.cmd(&a, Command::Kick(b.clone())),
        Err(RoomError::Forbidden)
    );
    assert!(h.room.contains(&b));
    assert_eq!(
        h.cmd(&m, Command::Kick(m.clone())),
        Err(RoomError::Forbidden)
    );
    h.cmd(&m, Command::Kick(b.clone())).unwrap();
    assert!(!h.room.contains(&b));
    assert!(h.take(&b).contains(&ServerMessage::Kicked));
    assert!(h.closed.contains(&(b.clone(), CloseCode::Kicked)));
    for p in [&a, &ca] {
        assert!(h.take(p).contains(&ServerMessage::ParticipantLeft {
            participant_id: b.clone(),
            reason: LeaveReason::Kicked
        }));
    }
    assert!(
        h.audit
            .iter()
            .any(|e| e.kind == AuditKind::Left(LeaveReason::Kicked))
    );
    assert!(
        !h.last_routing()
            .unwrap()
            .values()
            .flatten()
            .any(|p| p == &b)
    );
}

#[test]
fn co_mediator_cannot_kick_the_mediator() {
    let Cast { mut h, m, .. } = cast();
    let co = h.join(Role::CoMediator, None).unwrap();
    assert_eq!(
        h.cmd(&co, Command::Kick(m.clone())),
        Err(RoomError::Forbidden)
    );
    assert!(h.room.contains(&m));
}

#[test]
fn end_closes_everyone_and_refuses_everything_after() {
    let Cast { mut h, m, a, b, ca } = cast();
    assert_eq!(h.cmd(&a, Command::End), Err(RoomError::Forbidden));
    h.cmd(&m, Command::End).unwrap();
    assert!(h.ended);
    for p in [&m, &a, &b, &ca] {
        assert!(h.take(p).contains(&ServerMessage::SessionEnded));
        assert!(h.closed.contains(&(p.clone(), CloseCode::SessionEnded)));
    }
    assert_eq!(h.last_routing().unwrap().len(), 0);
    assert_eq!(h.join(Role::Mediator, None), Err(RoomError::Ended));
    assert_eq!(h.audit.last().unwrap().kind, AuditKind::SessionEnded);
}

#[test]
fn resume_within_grace_lands_in_the_same_channel() {
    let Cast {
        mut h, m, a, ca, ..
    } = cast();
    h.cmd(&m, Command::Move(a.clone(), ch("caucus-A"))).unwrap();
    h.take(&a);
    h.disconnect(&a).unwrap();
    // Caucus members see A's connection drop.
    let ServerMessage::Channel { channel } = h
        .take(&m)
        .into_iter()
        .rev()
        .find(|x| matches!(x, ServerMessage::Channel { .. }))
        .unwrap()
    else {
        panic!()
    };
    let _ = ca;
    assert!(
        channel.members.is_empty()
            || channel
                .members
                .iter()
                .all(|x| x.participant_id != a || !x.connected)
    );
    h.advance(Duration::from_secs(29));
    assert!(h.room.contains(&a));
    h.resume(&a).unwrap();
    let msgs = h.take(&a);
    match &msgs[0] {
        ServerMessage::Welcome {
            resumed: true,
            channel: Some(c),
            ..
        } => assert_eq!(c.id, ch("caucus-A")),
        other => panic!("expected a resumed welcome in caucus-A, got {other:?}"),
    }
    // Well past the original deadline, A is still there: the resume cancelled it.
    h.advance(Duration::from_secs(60));
    assert!(h.room.contains(&a));
}

#[test]
fn after_the_grace_period_the_participant_is_removed_and_others_told() {
    let mut h = RoomHarness::new(RoomConfig::default().resume_grace(Duration::from_secs(30)));
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    for p in [&a, &b] {
        h.cmd(p, consent()).unwrap();
        h.cmd(&m, Command::Admit(p.clone())).unwrap();
    }
    h.disconnect(&a).unwrap();
    assert_eq!(
        h.wake_at,
        Some(h.clock.now() + Duration::from_secs(30)),
        "the room asks to be woken at the deadline"
    );
    h.take(&b);
    h.advance(Duration::from_millis(29_999));
    assert!(h.room.contains(&a));
    h.advance(Duration::from_millis(1));
    assert!(!h.room.contains(&a));
    assert!(h.take(&b).contains(&ServerMessage::ParticipantLeft {
        participant_id: a.clone(),
        reason: LeaveReason::Timeout
    }));
    assert_eq!(h.resume(&a), Err(RoomError::NotFound));
    assert!(
        h.audit
            .iter()
            .any(|e| e.kind == AuditKind::Left(LeaveReason::Timeout))
    );
}

#[test]
fn the_session_ends_when_everyone_is_gone() {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    h.disconnect(&m).unwrap();
    h.advance(Duration::from_secs(31));
    assert!(h.ended);
    assert!(h.room.is_ended());
}

#[test]
fn an_input_that_arrives_after_the_rooms_own_timer_ended_it_is_refused() {
    // The mediator drops and its grace runs out; before the shell's timer fires, a join, a
    // command and a resume arrive. Time passes first, the session ends, and each is refused.
    let mut h = RoomHarness::new(RoomConfig::default().resume_grace(Duration::from_secs(30)));
    let m = h.join(Role::Mediator, None).unwrap();
    h.disconnect(&m).unwrap();
    h.skip(Duration::from_secs(31));
    assert!(!h.ended, "nothing told the room yet");
    assert_eq!(h.join(Role::Party, Some(Side::A)), Err(RoomError::Ended));
    assert!(h.ended && h.room.is_ended());
    assert!(!h.room.contains(&m));
    assert_eq!(h.cmd(&m, Command::Lock), Err(RoomError::Ended));
    assert_eq!(h.resume(&m), Err(RoomError::Ended));
    let joined = h
        .audit
        .iter()
        .filter(|e| e.kind == AuditKind::Arrived)
        .count();
    assert_eq!(joined, 1, "only the mediator ever arrived");
}

#[test]
fn a_command_racing_the_timer_of_a_live_session_still_counts() {
    // Time passing first only expires who was due: the others act as usual.
    let mut h = RoomHarness::new(RoomConfig::default().resume_grace(Duration::from_secs(30)));
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    h.disconnect(&a).unwrap();
    h.skip(Duration::from_secs(31));
    h.cmd(&m, Command::Lock).unwrap();
    assert!(!h.room.contains(&a), "A expired first");
    assert!(h.room.is_locked());
}

#[test]
fn leave_is_immediate() {
    let Cast { mut h, m, a, .. } = cast();
    h.cmd(&a, Command::Leave).unwrap();
    assert!(!h.room.contains(&a));
    assert!(h.closed.contains(&(a.clone(), CloseCode::Left)));
    assert!(h.take(&m).contains(&ServerMessage::ParticipantLeft {
        participant_id: a,
        reason: LeaveReason::Left
    }));
}
