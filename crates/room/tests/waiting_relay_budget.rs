//! The waiting room's relay budget: a person there can send what admission needs (an
//! announcement and a consent, each under 1 KiB) and no more; over it, `rate_limited`, nothing
//! delivered, and everyone else unaffected. Virtual time refills it.

mod common;

use std::time::Duration;

use common::*;
use confer_proto::{ParticipantId, RelayTarget, Role, ServerMessage, Side};
use confer_room::{Command, RoomConfig, RoomError};
use confer_testkit::RoomHarness;

fn direct(to: &ParticipantId, bytes: usize) -> Command {
    Command::Relay(RelayTarget::Participant(to.clone()), "x".repeat(bytes))
}

fn relayed(msgs: &[ServerMessage]) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, ServerMessage::Relayed { .. }))
        .count()
}

#[test]
fn a_waiting_participant_gets_its_burst_then_rate_limited_then_refills() {
    // 4 KiB at once, 1 KiB a second.
    let mut h = RoomHarness::new(RoomConfig::default().waiting_relay_budget(1024, 4096));
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    h.take(&m);

    for _ in 0..4 {
        h.cmd(&a, direct(&m, 1024)).unwrap();
    }
    assert_eq!(relayed(&h.take(&m)), 4, "the burst arrives");
    assert_eq!(h.cmd(&a, direct(&m, 1)), Err(RoomError::RateLimited));
    assert_eq!(
        RoomError::RateLimited.code().as_str(),
        "rate_limited",
        "a stable code with a human message"
    );
    assert!(h.take(&m).is_empty(), "a refused relay delivers nothing");

    // Half a second refills 512 bytes: 512 passes, 513 does not.
    h.advance(Duration::from_millis(500));
    assert_eq!(h.cmd(&a, direct(&m, 513)), Err(RoomError::RateLimited));
    h.cmd(&a, direct(&m, 512)).unwrap();
    assert_eq!(relayed(&h.take(&m)), 1);

    // The budget never grows past the burst, however long one waits.
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.cmd(&a, direct(&m, 4097)), Err(RoomError::RateLimited));
    h.cmd(&a, direct(&m, 4096)).unwrap();
}

#[test]
fn a_refused_path_spends_no_budget() {
    let mut h = RoomHarness::new(RoomConfig::default().waiting_relay_budget(0, 1000));
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    for _ in 0..5 {
        assert_eq!(h.cmd(&a, direct(&b, 1000)), Err(RoomError::RelayNotAllowed));
    }
    h.cmd(&a, direct(&m, 1000)).unwrap();
}

#[test]
fn the_budget_binds_only_the_waiting_room() {
    let mut h = RoomHarness::new(RoomConfig::default().waiting_relay_budget(0, 1000));
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    h.cmd(&a, direct(&m, 1000)).unwrap();
    assert_eq!(h.cmd(&a, direct(&m, 1)), Err(RoomError::RateLimited));
    // B, waiting beside A, has its own budget.
    h.cmd(&b, direct(&m, 1000)).unwrap();
    // Managers and admitted participants are bound by their connection's budget only.
    h.cmd(&m, direct(&a, 100_000)).unwrap();
    h.cmd(&a, consent()).unwrap();
    h.cmd(&m, Command::Admit(a.clone())).unwrap();
    h.take(&m);
    h.cmd(&a, direct(&m, 100_000)).unwrap();
    h.cmd(
        &a,
        Command::Relay(RelayTarget::Channel(ch("joint")), "y".repeat(100_000)),
    )
    .unwrap();
    assert_eq!(relayed(&h.take(&m)), 2);
}
