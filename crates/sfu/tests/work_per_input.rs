#![allow(clippy::unwrap_used, clippy::expect_used)]
//! An input costs work in proportion to what it touches, counted by the SFU's own counters: a
//! keyframe request drains only the publisher it asked (and nothing when throttled), a routing
//! change in one session recomputes only that session's slots, and a STUN check naming a user
//! fragment no peer has is dropped without asking every peer.

use std::collections::BTreeMap;
use std::time::Duration;

use confer_proto::{ChannelId, ParticipantId};
use confer_sfu::forward::Routing;
use confer_testkit::media::MediaNet;

fn pid(s: &str) -> ParticipantId {
    ParticipantId::new(s).unwrap()
}

fn routing(table: &[(&str, &[&str])]) -> Routing {
    let t: BTreeMap<ChannelId, Vec<ParticipantId>> = table
        .iter()
        .map(|(c, ms)| {
            (
                ChannelId::new(*c).unwrap(),
                ms.iter().map(|m| pid(m)).collect(),
            )
        })
        .collect();
    Routing::new(t)
}

/// Two sessions of two, connected.
fn two_sessions() -> MediaNet {
    let mut net = MediaNet::new(3, 0.0, Duration::from_millis(5));
    for p in ["m", "a", "x", "y"] {
        net.add_client(p, 2);
    }
    net.route(&[("s1-joint", &["m", "a"]), ("s2-joint", &["x", "y"])]);
    net.connect();
    net.run(Duration::from_millis(200));
    net
}

#[test]
fn a_keyframe_request_drains_only_its_publisher_and_nothing_when_throttled() {
    let mut net = two_sessions();
    // Past the throttle of the SFU's own requests for the new video slots.
    net.run(Duration::from_secs(1));
    let now = net.clock.now();
    let before = net.sfu.stats().clone();
    net.sfu.request_keyframe(&pid("a"), &pid("m"), now);
    let after = net.sfu.stats().clone();
    assert_eq!(after.keyframe_requests, before.keyframe_requests + 1);
    assert_eq!(
        after.peer_drains,
        before.peer_drains + 1,
        "the publisher only"
    );

    // Within the throttle interval: swallowed, and no peer is polled.
    net.sfu.request_keyframe(&pid("a"), &pid("m"), now);
    let throttled = net.sfu.stats().clone();
    assert_eq!(
        throttled.keyframe_requests_throttled,
        after.keyframe_requests_throttled + 1
    );
    assert_eq!(throttled.peer_drains, after.peer_drains);
    // From another session: refused before anything is polled.
    net.sfu.request_keyframe(&pid("x"), &pid("m"), now);
    assert_eq!(net.sfu.stats().peer_drains, after.peer_drains);
}

#[test]
fn a_routing_change_recomputes_only_the_session_that_changed() {
    let mut net = two_sessions();
    assert!(
        net.sfu
            .slots_of(&pid("m"))
            .unwrap()
            .iter()
            .any(|s| s.publisher == Some(pid("a")))
    );
    let x_view = net.sfu.slots_of(&pid("x")).unwrap();
    let before = net.sfu.stats().clone();
    // Session 1 moves a into a caucus; session 2 is unchanged.
    let now = net.clock.now();
    net.sfu.set_routing_for(
        routing(&[
            ("s1-joint", &["m"]),
            ("s1-caucus-A", &["a"]),
            ("s2-joint", &["x", "y"]),
        ]),
        &[pid("m"), pid("a")],
        now,
    );
    let after = net.sfu.stats().clone();
    assert_eq!(
        after.slot_recomputes,
        before.slot_recomputes + 2,
        "m and a only"
    );
    assert!(after.peer_drains - before.peer_drains <= 2);
    // The change took effect for session 1, and session 2's slots are as they were.
    assert!(
        net.sfu
            .slots_of(&pid("m"))
            .unwrap()
            .iter()
            .all(|s| s.publisher.is_none())
    );
    assert_eq!(net.sfu.slots_of(&pid("x")).unwrap(), x_view);

    // The full recomputation, for comparison, touches every peer.
    net.sfu.set_routing(
        routing(&[("s1-joint", &["m", "a"]), ("s2-joint", &["x", "y"])]),
        now,
    );
    assert_eq!(net.sfu.stats().slot_recomputes, after.slot_recomputes + 4);
}

#[test]
fn stun_naming_an_unknown_user_fragment_is_dropped_without_a_scan() {
    let mut net = two_sessions();
    let before = net.sfu.stats().clone();
    // A well-formed binding request whose USERNAME names no ufrag of ours (its
    // MESSAGE-INTEGRITY cannot be checked without a peer's password).
    let mut stun = vec![0x00, 0x01, 0x00, 44, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([7u8; 12]);
    stun.extend([0x00, 0x06, 0x00, 8]);
    stun.extend(b"nobody:x");
    stun.extend([0x00, 0x24, 0x00, 4, 0x6e, 0x00, 0x01, 0xff]);
    stun.extend([0x00, 0x08, 0x00, 20]);
    stun.extend([0u8; 20]);
    assert_eq!(confer_sfu::forward::stun_local_ufrag(&stun), Some("nobody"));
    for port in 0..50u16 {
        net.inject(
            format!("10.0.0.99:{}", 4000 + port).parse().unwrap(),
            stun.clone(),
        );
    }
    net.run(Duration::from_millis(50));
    let after = net.sfu.stats();
    assert_eq!(after.demux_scans, before.demux_scans, "no peer was asked");
    assert_eq!(
        after.drops.get("unknown_source").copied().unwrap_or(0),
        before.drops.get("unknown_source").copied().unwrap_or(0) + 50
    );
    assert!(net.gone.is_empty());
}

/// A batch of datagrams from one publisher, handed in before the SFU is polled, costs each
/// subscriber one timeout and one drain (the copies leave together at the next poll), not one
/// per datagram: 10 audio packets to 2 subscribers are 10 drains of the publisher and 2 of
/// the subscribers (the old path drained each subscriber after every datagram: 30 or more).
#[test]
fn a_batch_of_datagrams_drains_each_subscriber_once() {
    let mut net = MediaNet::new(11, 0.0, Duration::from_millis(5));
    for p in ["m", "a", "b"] {
        net.add_client(p, 2);
    }
    net.route(&[("s1-joint", &["m", "a", "b"])]);
    net.connect();
    // The first packet of a stream is not emitted by the SFU's str0m (see forwarding.rs).
    for i in 0..3 {
        net.publish(i, false, &[0x01, 0xff, 0, 0]);
    }
    net.run(Duration::from_secs(1));
    for c in net.clients.iter_mut() {
        c.received.clear();
    }
    for n in 0..10u8 {
        net.publish(0, false, &[0x01, 0, n, 1, 2, 3, 4, 5]);
    }
    // The client sends them at once; they arrive together 5 ms later. Measure only around
    // that instant (other timers of the peers may fire within the window: a little slack).
    net.run(Duration::from_millis(4));
    let before = net.sfu.stats().clone();
    net.run(Duration::from_millis(2));
    let after = net.sfu.stats().clone();
    assert_eq!(after.forwarded_packets - before.forwarded_packets, 20);
    let drains = after.peer_drains - before.peer_drains;
    assert!(
        (12..=15).contains(&drains),
        "10 drains of the publisher, 1 of each subscriber (and at most 3 timers): {drains}"
    );
    net.run(Duration::from_millis(50));
    for sub in [1, 2] {
        assert_eq!(
            net.clients[sub].frames_from(&pid("m")).len(),
            10,
            "every copy reached subscriber {sub}"
        );
    }
}
