//! Relay of opaque data along allowed paths only.

mod common;

use common::*;
use confer_proto::{RelayTarget, Role, ServerMessage, Side};
use confer_room::{Command, RoomError};

fn to_ch(s: &str) -> RelayTarget {
    RelayTarget::Channel(ch(s))
}

#[test]
fn joint_relay_reaches_every_other_member() {
    let Cast { mut h, m, a, b, ca } = cast();
    h.cmd(&a, Command::Relay(to_ch("joint"), "hello".into()))
        .unwrap();
    for p in [&m, &b, &ca] {
        assert_eq!(relayed(&h.take(p)), vec!["hello".to_string()]);
    }
    assert!(relayed(&h.take(&a)).is_empty(), "no echo to the sender");
}

#[test]
fn caucus_relay_reaches_only_caucus_members() {
    let Cast { mut h, m, a, b, ca } = cast();
    for p in [&m, &a, &ca] {
        h.cmd(&m, Command::Move(p.clone(), ch("caucus-A"))).unwrap();
    }
    h.take(&b);
    h.cmd(&a, Command::Relay(to_ch("caucus-A"), "offer".into()))
        .unwrap();
    assert_eq!(relayed(&h.take(&m)), vec!["offer".to_string()]);
    assert_eq!(relayed(&h.take(&ca)), vec!["offer".to_string()]);
    assert!(h.take(&b).is_empty());
}

#[test]
fn a_party_cannot_relay_into_the_other_sides_caucus() {
    let Cast { mut h, m, a, b, ca } = cast();
    for p in [&m, &a, &ca] {
        h.cmd(&m, Command::Move(p.clone(), ch("caucus-A"))).unwrap();
    }
    for p in [&m, &a, &ca] {
        h.take(p);
    }
    assert_eq!(
        h.cmd(&b, Command::Relay(to_ch("caucus-A"), "x".into())),
        Err(RoomError::RelayNotAllowed)
    );
    assert_eq!(
        h.cmd(
            &b,
            Command::Relay(RelayTarget::Participant(a.clone()), "x".into())
        ),
        Err(RoomError::RelayNotAllowed)
    );
    for p in [&m, &a, &ca] {
        assert!(h.take(p).is_empty());
    }
    // B may still reach the mediator directly, wherever the mediator is.
    h.cmd(
        &b,
        Command::Relay(RelayTarget::Participant(m.clone()), "to-m".into()),
    )
    .unwrap();
    assert_eq!(relayed(&h.take(&m)), vec!["to-m".to_string()]);
}

#[test]
fn nothing_reaches_the_waiting_room_except_from_mediators() {
    let Cast { mut h, m, a, .. } = cast();
    let w = h.join(Role::Party, Some(Side::B)).unwrap();
    h.take(&w);
    assert_eq!(
        h.cmd(
            &a,
            Command::Relay(RelayTarget::Participant(w.clone()), "x".into())
        ),
        Err(RoomError::RelayNotAllowed)
    );
    h.cmd(&a, Command::Relay(to_ch("joint"), "joint-msg".into()))
        .unwrap();
    assert!(h.take(&w).is_empty());
    h.cmd(
        &m,
        Command::Relay(RelayTarget::Participant(w.clone()), "welcome-note".into()),
    )
    .unwrap();
    assert_eq!(relayed(&h.take(&w)), vec!["welcome-note".to_string()]);
    // From the waiting room: to a mediator (the encrypted acknowledgment), nowhere else.
    h.take(&m);
    h.cmd(
        &w,
        Command::Relay(RelayTarget::Participant(m.clone()), "ack".into()),
    )
    .unwrap();
    assert_eq!(relayed(&h.take(&m)), vec!["ack".to_string()]);
    assert_eq!(
        h.cmd(&w, Command::Relay(to_ch("joint"), "x".into())),
        Err(RoomError::RelayNotAllowed)
    );
}

#[test]
fn relay_names_the_channel_or_none_for_direct() {
    let Cast { mut h, m, a, .. } = cast();
    h.cmd(
        &a,
        Command::Relay(RelayTarget::Participant(m.clone()), "d".into()),
    )
    .unwrap();
    h.cmd(&a, Command::Relay(to_ch("joint"), "c".into()))
        .unwrap();
    let msgs: Vec<_> = h
        .take(&m)
        .into_iter()
        .filter(|x| matches!(x, ServerMessage::Relayed { .. }))
        .collect();
    assert!(matches!(&msgs[0], ServerMessage::Relayed { channel: None, from, .. } if from == &a));
    assert!(
        matches!(&msgs[1], ServerMessage::Relayed { channel: Some(c), .. } if c == &ch("joint"))
    );
}

#[test]
fn relay_to_unknown_targets_is_refused() {
    let Cast { mut h, a, .. } = cast();
    assert_eq!(
        h.cmd(&a, Command::Relay(to_ch("breakout-4"), "x".into())),
        Err(RoomError::NotFound)
    );
    let ghost = confer_proto::ParticipantId::new("ghost").unwrap();
    assert_eq!(
        h.cmd(
            &a,
            Command::Relay(RelayTarget::Participant(ghost), "x".into())
        ),
        Err(RoomError::NotFound)
    );
}
