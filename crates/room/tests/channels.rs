//! Joint, caucuses, breakouts, moves, and the routing table.

mod common;

use common::*;
use confer_proto::{ChannelKind, Role, ServerMessage, Side};
use confer_room::{AuditKind, Command, RoomError};

#[test]
fn caucus_a_takes_party_a_and_counsel_with_the_mediator() {
    let Cast { mut h, m, a, b, ca } = cast();
    for p in [&m, &a, &ca] {
        h.cmd(&m, Command::Move(p.clone(), ch("caucus-A"))).unwrap();
    }
    assert_eq!(last_channel(&h.take(&a)), Some(ch("caucus-A")));
    assert_eq!(last_channel(&h.take(&ca)), Some(ch("caucus-A")));
    // B stays in joint and is told the joint membership changed (it is alone now).
    let b_msgs = h.take(&b);
    let ServerMessage::Channel { channel } = b_msgs.last().unwrap() else {
        panic!("{b_msgs:?}")
    };
    assert_eq!(channel.id, ch("joint"));
    assert_eq!(channel.members.len(), 1);
    let routing = h.last_routing().unwrap();
    assert_eq!(routing[&ch("caucus-A")], {
        let mut v = vec![m.clone(), a.clone(), ca.clone()];
        v.sort();
        v
    });
    assert_eq!(routing[&ch("joint")], vec![b.clone()]);
    assert!(
        h.audit
            .iter()
            .any(|e| e.kind == AuditKind::Moved(ch("caucus-A"))
                && e.participant.as_ref() == Some(&a))
    );
}

#[test]
fn the_other_side_cannot_enter_a_caucus() {
    let Cast { mut h, m, b, .. } = cast();
    let routing = h.last_routing().cloned();
    assert_eq!(
        h.cmd(&m, Command::Move(b.clone(), ch("caucus-A"))),
        Err(RoomError::InvalidMove)
    );
    assert_eq!(h.last_routing().cloned(), routing, "routing unchanged");
    assert!(
        h.take(&b).is_empty(),
        "nobody is moved silently, and nobody is told of a refusal"
    );
}

#[test]
fn observers_never_enter_a_caucus() {
    let Cast { mut h, m, .. } = cast();
    let o = h.join(Role::Observer, None).unwrap();
    h.cmd(&o, consent()).unwrap();
    h.cmd(&m, Command::Admit(o.clone())).unwrap();
    assert_eq!(
        h.cmd(&m, Command::Move(o.clone(), ch("caucus-A"))),
        Err(RoomError::InvalidMove)
    );
}

#[test]
fn parties_cannot_move_anyone() {
    let Cast { mut h, a, b, .. } = cast();
    let routing = h.last_routing().cloned();
    assert_eq!(
        h.cmd(&a, Command::Move(a.clone(), ch("caucus-A"))),
        Err(RoomError::Forbidden)
    );
    assert_eq!(
        h.cmd(&b, Command::Move(b.clone(), ch("caucus-A"))),
        Err(RoomError::Forbidden)
    );
    assert_eq!(
        h.cmd(&a, Command::CreateBreakout(vec![a.clone()])),
        Err(RoomError::Forbidden)
    );
    assert_eq!(h.cmd(&a, Command::ReturnAll), Err(RoomError::Forbidden));
    assert_eq!(h.last_routing().cloned(), routing);
}

#[test]
fn moves_need_an_admitted_target_and_an_existing_channel() {
    let Cast { mut h, m, a, .. } = cast();
    let w = h.join(Role::Party, Some(Side::B)).unwrap();
    assert_eq!(
        h.cmd(&m, Command::Move(w, ch("joint"))),
        Err(RoomError::NotAdmitted)
    );
    assert_eq!(
        h.cmd(&m, Command::Move(a.clone(), ch("breakout-9"))),
        Err(RoomError::NotFound)
    );
    assert_eq!(
        h.cmd(&m, Command::Move(a.clone(), ch("lobby"))),
        Err(RoomError::NotFound)
    );
    assert_eq!(
        h.cmd(&m, Command::Move(a, ch("caucus-a"))),
        Err(RoomError::NotFound)
    );
}

#[test]
fn breakout_of_any_membership_then_return() {
    let Cast { mut h, m, a, b, ca } = cast();
    h.cmd(&m, Command::CreateBreakout(vec![ca.clone(), b.clone()]))
        .unwrap();
    let routing = h.last_routing().unwrap().clone();
    let mut members = vec![b.clone(), ca];
    members.sort();
    assert_eq!(routing[&ch("breakout-1")], members);
    let ServerMessage::Channel { channel } = h.take(&b).pop().unwrap() else {
        panic!()
    };
    assert_eq!(channel.kind, ChannelKind::Breakout);

    h.cmd(&m, Command::ReturnAll).unwrap();
    let routing = h.last_routing().unwrap();
    assert_eq!(routing.len(), 1, "empty breakouts are closed: {routing:?}");
    assert_eq!(routing[&ch("joint")].len(), 4);
    assert_eq!(last_channel(&h.take(&a)), Some(ch("joint")));
    assert_eq!(last_channel(&h.take(&b)), Some(ch("joint")));
    // The closed breakout no longer exists.
    assert_eq!(
        h.cmd(&m, Command::Move(a, ch("breakout-1"))),
        Err(RoomError::NotFound)
    );
}

#[test]
fn each_participant_is_in_exactly_one_channel() {
    let Cast { mut h, m, a, b, ca } = cast();
    h.cmd(&m, Command::Move(a.clone(), ch("caucus-A"))).unwrap();
    h.cmd(&m, Command::CreateBreakout(vec![a, b])).unwrap();
    h.cmd(&m, Command::Move(ca, ch("caucus-A"))).unwrap();
    let routing = h.last_routing().unwrap();
    let mut all: Vec<_> = routing.values().flatten().cloned().collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "nobody in two channels: {routing:?}");
    assert_eq!(n, 4);
}

#[test]
fn a_move_is_never_silent() {
    let Cast { mut h, m, a, .. } = cast();
    h.cmd(&m, Command::Move(a.clone(), ch("caucus-A"))).unwrap();
    let msgs = h.take(&a);
    assert!(
        matches!(msgs.last(), Some(ServerMessage::Channel { channel }) if channel.id == ch("caucus-A"))
    );
    // The mediator follows into the caucus: A is told who can hear it now.
    h.cmd(&m, Command::Move(m.clone(), ch("caucus-A"))).unwrap();
    let ServerMessage::Channel { channel } = h.take(&a).pop().unwrap() else {
        panic!()
    };
    assert!(
        channel
            .members
            .iter()
            .any(|x| x.participant_id == m && x.role == Role::Mediator)
    );
    let _ = Side::A;
}
