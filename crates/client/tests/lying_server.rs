#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The client against a server that lies: the test plays the server, feeding crafted
//! signalling messages to in-process cores.

mod common;

use std::time::Instant;

use common::*;

use confer_client::envelope::Envelope;
use confer_proto::{
    ChannelId, ChannelKind, ChannelView, ClientMessage, Role, ServerMessage, SessionId,
    SessionView, Side, WaitingView,
};

#[test]
fn the_mediator_signs_only_placements_it_asked_for() {
    let (mut t, _) = Trio::all_in_joint();
    let now = t.now;
    assert!(t.m.roster_present(&ChannelId::joint()).contains(&t.bp));
    drain(&mut t.m);
    // The server now claims B sits in A's caucus with A and the mediator, which nobody asked.
    let caucus = ChannelView {
        id: ChannelId::caucus(Side::A),
        kind: ChannelKind::Caucus,
        members: t.members(&['m', 'a', 'b']),
    };
    t.m.handle(
        ServerMessage::Session {
            session: SessionView {
                locked: false,
                waiting: vec![],
                channels: vec![joint_view(vec![]), caucus],
            },
        },
        now,
    );
    assert!(
        t.m.roster_members(&ChannelId::caucus(Side::A)).is_empty(),
        "no caucus roster for a move nobody asked for"
    );
    assert!(
        t.m.roster_present(&ChannelId::joint()).contains(&t.bp),
        "B stays present in joint, where the mediator put it"
    );
    assert_eq!(sent_keys_to(&mut t.m, &t.bp), 0, "and no caucus key for B");
}

#[test]
fn after_the_end_nothing_revives_the_client() {
    let mp = pid(1);
    let mut c = core(false);
    let now = Instant::now();
    c.handle(welcome(&pid(2), Role::Party, Some(Side::A), None), now);
    c.handle(ServerMessage::SessionEnded, now);
    assert!(c.stats().keys_deleted);
    // A server that then claims the client is the mediator gets nowhere, and nothing panics.
    c.handle(welcome(&mp, Role::Mediator, None, None), now);
    c.handle(
        ServerMessage::Session {
            session: SessionView {
                locked: false,
                waiting: vec![WaitingView {
                    participant_id: pid(9),
                    role: Role::Party,
                    side: Some(Side::B),
                    consented: true,
                    connected: true,
                }],
                channels: vec![],
            },
        },
        now,
    );
    assert!(c.poll_send().is_none());
    let _ = SessionId::new("s1");
}

#[test]
fn a_second_welcome_cannot_change_who_i_am() {
    let mut c = core(false);
    let now = Instant::now();
    c.handle(welcome(&pid(2), Role::Party, Some(Side::A), None), now);
    c.handle(welcome(&pid(2), Role::Mediator, None, None), now);
    assert!(c.stats().alarms.contains(&"identity_mismatch".to_string()));
    c.handle(welcome(&pid(3), Role::Party, Some(Side::A), None), now);
    assert_eq!(c.participant_id(), Some(&pid(2)));
}

#[test]
fn a_chat_that_overtakes_the_roster_its_key_needs_is_held_until_the_key_installs() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    // A sees the roster first, sends B its new key and then a chat under it; both reach B
    // before the mediator's roster does (they come from different senders).
    deliver(&from_m, &t.mp, &mut t.a, now);
    assert!(t.a.send_chat("said before B saw the roster").is_ok());
    let from_a = drain(&mut t.a);
    deliver(&from_a, &t.ap, &mut t.b, now);
    assert_eq!(chats(&mut t.b), 0, "B cannot open it yet");
    assert_eq!(
        t.b.stats().decrypt_failures,
        0,
        "and does not call it a failure"
    );
    // The roster arrives: the held key installs and the held chat opens.
    deliver(&from_m, &t.mp, &mut t.b, now);
    assert_eq!(chats(&mut t.b), 1);
    assert_eq!(t.b.stats().messages_received, 1);
    assert_eq!(t.b.stats().decrypt_failures, 0);

    // A chat whose key never comes fails once it has waited its time.
    let chat = from_a
        .iter()
        .find(|m| {
            matches!(m, ClientMessage::Relay { data, .. }
                if matches!(Envelope::from_data(data), Some(Envelope::Chat { .. })))
        })
        .unwrap();
    // Relayed as from someone B holds no key of at all: held, since the key may be on its way.
    deliver(std::slice::from_ref(chat), &pid(9), &mut t.b, now);
    assert_eq!(
        t.b.stats().decrypt_failures,
        0,
        "held: its key may be on its way"
    );
    t.b.tick(now + confer_client::core::HOLD_FOR_KEY + std::time::Duration::from_millis(1));
    assert_eq!(t.b.stats().decrypt_failures, 1);
    assert_eq!(t.b.stats().messages_received, 1);
}

#[test]
fn a_resume_into_another_room_leaves_the_old_one_like_a_move() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    deliver(&from_m, &t.mp, &mut t.b, now);
    let from_b = drain(&mut t.b);
    deliver(&from_b, &t.bp, &mut t.a, now);
    assert!(t.a.send_chat("in joint").is_ok());
    assert!(t.a.receive_keys_for(&ChannelId::joint()) > 0);

    // A drops, is moved to its caucus while away, and resumes there.
    let caucus = ChannelView {
        id: ChannelId::caucus(Side::A),
        kind: ChannelKind::Caucus,
        members: t.members(&['a']),
    };
    t.a.handle(
        welcome(&t.ap, Role::Party, Some(Side::A), Some(caucus)),
        now,
    );
    assert!(
        t.a.send_chat("still joint?").is_err(),
        "no longer sends in joint"
    );
    // Its joint receive keys go once frames in flight have had their time, as after a move.
    t.a.tick(now + std::time::Duration::from_secs(11));
    assert_eq!(t.a.receive_keys_for(&ChannelId::joint()), 0);
}

#[test]
fn a_chat_sealed_before_i_joined_is_stale_not_a_failure() {
    let mut t = Trio::welcomed();
    let now = t.now;
    // A is admitted first and speaks in joint.
    t.admit('a', &['m']);
    let from_m = t.seat(&['m', 'a']);
    deliver(&from_m, &t.mp, &mut t.a, now);
    assert!(t.a.send_chat("before B came").is_ok());
    let before = drain(&mut t.a);
    // B is admitted; the mediator signs the three of them.
    t.admit('b', &['m', 'a']);
    let from_m = t.seat(&['m', 'a', 'b']);
    deliver(&from_m, &t.mp, &mut t.b, now);
    // A's chat from before reaches B (the server relays it to joint, which B is now in):
    // B holds no key of A's yet, so it waits.
    deliver(&before, &t.ap, &mut t.b, now);
    assert_eq!(t.b.stats().decrypt_failures, 0);
    // A sees the new roster and keys B. The old chat is older than any key B holds of A's:
    // stale, dropped, not a failure; what A says now, B reads.
    deliver(&from_m, &t.mp, &mut t.a, now);
    assert!(t.a.send_chat("after B came").is_ok());
    let after = drain(&mut t.a);
    deliver(&after, &t.ap, &mut t.b, now);
    assert_eq!(t.b.stats().stale_frames, 1);
    assert_eq!(
        t.b.stats().decrypt_failures,
        0,
        "{:?}",
        t.b.stats().failure_reasons
    );
    assert_eq!(t.b.stats().messages_received, 1);
}

/// The ratchet step in a chat frame's KID, from the relay that carries it.
fn chat_steps(out: &[ClientMessage]) -> Vec<(u64, u8)> {
    out.iter()
        .filter_map(|m| match m {
            ClientMessage::Relay { data, .. } => match Envelope::from_data(data)? {
                Envelope::Chat { f, .. } => {
                    let (&hlen, rest) = f.0.split_last()?;
                    let header = &rest[rest.len() - usize::from(hlen)..];
                    let (kid, _) = confer_e2ee::frame::decode_header(header).ok()?;
                    Some((kid >> 4, (kid & 0x0f) as u8))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_sender_steps_its_key_every_minute_and_renews_it_after_fifteen_steps() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    deliver(&from_m, &t.mp, &mut t.b, now);
    let keys = drain(&mut t.a);
    deliver(&keys, &t.ap, &mut t.b, now);
    let minute = confer_client::core::RATCHET_EVERY;
    // The first tick starts the clock; each minute after it is one step.
    t.a.tick(now);
    assert!(t.a.send_chat("step 0").is_ok());
    let first = drain(&mut t.a);
    let (g0, s0) = chat_steps(&first)[0];
    assert_eq!(s0, 0);
    deliver(&first, &t.ap, &mut t.b, now);
    let mut at = now;
    for step in 1..=15u8 {
        at += minute;
        t.a.tick(at);
        assert!(t.a.send_chat(&format!("step {step}")).is_ok());
        let out = drain(&mut t.a);
        assert_eq!(chat_steps(&out), vec![(g0, step)], "one step a minute");
        deliver(&out, &t.ap, &mut t.b, at);
    }
    // After step 15 the next minute brings a new generation, sent to the others first.
    at += minute;
    t.a.tick(at);
    assert!(t.a.send_chat("new generation").is_ok());
    let out = drain(&mut t.a);
    let steps = chat_steps(&out);
    assert_eq!(steps.len(), 1);
    assert!(steps[0].0 > g0 && steps[0].1 == 0, "{steps:?}");
    deliver(&out, &t.ap, &mut t.b, at);
    // B read every one of them, whatever the step.
    assert_eq!(t.b.stats().messages_received, 17);
    assert_eq!(
        t.b.stats().decrypt_failures,
        0,
        "{:?}",
        t.b.stats().failure_reasons
    );
}
