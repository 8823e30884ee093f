#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The SFU with str0m client peers on a simulated network, in virtual time.

use std::time::Duration;

use confer_proto::ParticipantId;
use confer_testkit::media::MediaNet;

fn pid(s: &str) -> ParticipantId {
    ParticipantId::new(s).unwrap()
}

/// A self-describing frame: publisher byte, counter, deterministic body.
fn frame(who: u8, n: u32, video: bool) -> Vec<u8> {
    let len = if video { 1800 } else { 120 };
    let mut f = vec![if video { 0x10 } else { 0x01 }, who];
    f.extend_from_slice(&n.to_be_bytes());
    f.extend((0..len).map(|i| (i as u32 * 31 + n * 7 + u32::from(who)) as u8));
    f
}

fn three() -> MediaNet {
    let mut net = MediaNet::new(7, 0.0, Duration::from_millis(5));
    for p in ["m", "a", "b"] {
        net.add_client(p, 3);
    }
    net.route(&[("joint", &["m", "a", "b"])]);
    net.connect();
    warm_up(&mut net);
    net
}

/// The first RTP packet of each new stream does not come out of the SFU's str0m (seen in
/// RTP mode: the packet that creates the receive stream is not emitted as `RtpPacket`; to be
/// investigated). Each publisher sends one frame per track before the counted ones.
fn warm_up(net: &mut MediaNet) {
    for i in 0..net.clients.len() {
        net.publish(i, true, &[0x10, 0xff, 0, 0]);
        net.publish(i, false, &[0x01, 0xff, 0, 0]);
    }
    net.run(Duration::from_millis(200));
    for c in net.clients.iter_mut() {
        c.received.clear();
    }
}

fn publish_round(net: &mut MediaNet, who: &[usize], frames: u32) {
    for n in 0..frames {
        for &i in who {
            net.publish(i, true, &frame(i as u8, n, true));
            net.publish(i, false, &frame(i as u8, n, false));
        }
        net.run(Duration::from_millis(33));
    }
    net.run(Duration::from_millis(500));
}

#[test]
fn a_joint_session_of_three_receives_every_frame_of_every_other_member() {
    let mut net = three();
    // Every datagram of the three found its peer by address or ICE user fragment, without
    // asking every peer.
    assert_eq!(net.sfu.stats().demux_scans, 0);
    publish_round(&mut net, &[0, 1, 2], 30);
    let names = ["m", "a", "b"];
    for (i, c) in net.clients.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            if i == j {
                continue;
            }
            let got = c.frames_from(&pid(name));
            let want: Vec<Vec<u8>> = (0..30)
                .flat_map(|n| [frame(j as u8, n, true), frame(j as u8, n, false)])
                .collect();
            for w in &want {
                assert!(
                    got.contains(&w.as_slice()),
                    "{} missed a frame of {name}",
                    names[i]
                );
            }
            assert_eq!(
                got.len(),
                want.len(),
                "{} got {} frames of {name}",
                names[i],
                got.len()
            );
        }
    }
    assert!(net.sfu.stats().forwarded_packets > 0);
}

#[test]
fn in_caucus_the_other_party_receives_nothing_and_a_return_restores_joint() {
    let mut net = three();
    // m and a in caucus-A, b alone in joint.
    net.route(&[("joint", &["b"]), ("caucus-A", &["m", "a"])]);
    net.run(Duration::from_millis(50));
    let b_before = net.clients[2].received.len();
    publish_round(&mut net, &[1], 20);
    assert_eq!(
        net.clients[2].received.len(),
        b_before,
        "B received none of A's caucus media"
    );
    assert_eq!(
        net.clients[0].frames_from(&pid("a")).len(),
        40,
        "the mediator received all of it"
    );
    assert!(
        net.clients[2]
            .slots
            .iter()
            .all(|s| s.publisher.as_ref() != Some(&pid("a")))
    );
    // Nothing of A was even addressed to B: the SFU never had B as a subscriber of A.
    assert!(!net.sfu.stats().drops.contains_key("no_slot"));
    // Back to joint: B receives A again.
    net.route(&[("joint", &["m", "a", "b"])]);
    net.run(Duration::from_millis(50));
    publish_round(&mut net, &[1], 10);
    assert!(
        net.clients[2].frames_from(&pid("a")).len() >= 18,
        "B hears A again after the return"
    );
}

#[test]
fn keyframe_requests_reach_the_publisher_throttled() {
    let mut net = three();
    publish_round(&mut net, &[1], 3);
    let before = net.clients[1].keyframe_requests;
    let slot = net.clients[0]
        .slots
        .iter()
        .find(|s| s.video && s.publisher == Some(pid("a")))
        .unwrap()
        .mid
        .clone();
    for _ in 0..10 {
        net.request_keyframe(0, slot.as_str().into());
        net.run(Duration::from_millis(20));
    }
    let during = net.clients[1].keyframe_requests - before;
    assert!(during >= 1, "a request reached the publisher");
    assert!(
        during <= 2,
        "ten requests in 200 ms are throttled to one per 500 ms: {during}"
    );
    assert!(net.sfu.stats().keyframe_requests_throttled > 0);
}

#[test]
fn nack_recovers_video_under_five_percent_loss() {
    let mut net = MediaNet::new(42, 0.05, Duration::from_millis(10));
    net.add_client("a", 1);
    net.add_client("b", 1);
    net.route(&[("joint", &["a", "b"])]);
    net.connect();
    warm_up(&mut net);
    for n in 0..100 {
        net.publish(0, true, &frame(0, n, true));
        net.run(Duration::from_millis(33));
    }
    net.run(Duration::from_secs(2));
    assert!(net.lost > 0, "the network did lose packets");
    let got = net.clients[1].frames_from(&pid("a"));
    let complete = (0..100)
        .filter(|n| got.contains(&frame(0, *n, true).as_slice()))
        .count();
    assert!(
        complete >= 97,
        "NACK/RTX recovered {complete} of 100 frames"
    );
}

#[test]
fn a_leaving_publisher_frees_its_subscribers_slots() {
    let mut net = three();
    publish_round(&mut net, &[1], 2);
    assert!(
        net.clients[2]
            .slots
            .iter()
            .any(|s| s.publisher == Some(pid("a")))
    );
    net.sfu.remove_peer(&pid("a"));
    net.route(&[("joint", &["m", "b"])]);
    net.run(Duration::from_millis(20));
    assert!(
        net.clients[2]
            .slots
            .iter()
            .all(|s| s.publisher != Some(pid("a")))
    );
    assert_eq!(net.sfu.peer_count(), 2);
}

#[test]
fn junk_datagrams_and_bad_sdp_are_refused_and_others_unaffected() {
    let mut net = three();
    let stranger = "10.0.0.99:4000".parse().unwrap();
    for i in 0..500u32 {
        let junk: Vec<u8> = (0..(i % 200)).map(|j| (i * 13 + j) as u8).collect();
        net.inject(stranger, junk);
    }
    // STUN-looking bytes with an unknown username.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([0u8; 12]);
    net.inject(stranger, stun);
    net.run(Duration::from_millis(50));
    let drops = &net.sfu.stats().drops;
    let refused = drops.get("unknown_source").copied().unwrap_or(0)
        + drops.get("malformed").copied().unwrap_or(0);
    assert_eq!(refused, 501, "every junk datagram was refused: {drops:?}");
    assert!(net.gone.is_empty(), "no peer was harmed");
    let now = net.clock.now();
    assert!(matches!(
        net.sfu.accept_offer(pid("x"), "v=0 garbage", now),
        Err(confer_sfu::SfuError::BadSdp(_))
    ));
    publish_round(&mut net, &[0], 5);
    assert_eq!(
        net.clients[1].frames_from(&pid("m")).len(),
        10,
        "the session carried on"
    );
}

/// m with three slots of each kind, a and b in joint with it (filling two), c in a breakout.
fn m_with_three_slots(seed: u64) -> MediaNet {
    let mut net = MediaNet::new(seed, 0.0, Duration::from_millis(5));
    net.add_client("m", 3);
    for p in ["a", "b", "c"] {
        net.add_client(p, 1);
    }
    net.route(&[("joint", &["m", "a", "b"]), ("breakout-1", &["c"])]);
    net.connect();
    net.run(Duration::from_millis(50));
    net
}

/// The mid of m's slot that carries `who`'s audio or video.
fn slot_of(net: &MediaNet, who: &str, video: bool) -> Option<String> {
    net.clients[0]
        .slots
        .iter()
        .find(|s| s.video == video && s.publisher == Some(pid(who)))
        .map(|s| s.mid.clone())
}

#[test]
fn a_slot_emptied_by_a_move_is_refilled_only_when_no_other_slot_is_free() {
    let mut net = m_with_three_slots(11);
    let mid_of = |net: &MediaNet, who: &str, video: bool| slot_of(net, who, video);
    let empty_before: Vec<String> = net.clients[0]
        .slots
        .iter()
        .filter(|s| s.publisher.is_none())
        .map(|s| s.mid.clone())
        .collect();
    assert_eq!(empty_before.len(), 2, "one empty slot per kind");
    let a_video = mid_of(&net, "a", true).unwrap();
    // a leaves m's room as c arrives: c gets the slot that was already empty, so a packet of
    // c's can never arrive in a slot m still believes is a's.
    net.route(&[("joint", &["m", "b", "c"]), ("breakout-1", &["a"])]);
    net.run(Duration::from_millis(50));
    let c_video = mid_of(&net, "c", true).unwrap();
    assert!(
        empty_before.contains(&c_video),
        "{c_video} was empty before"
    );
    assert_ne!(c_video, a_video);
    assert!(mid_of(&net, "a", true).is_none());
}

#[test]
fn a_peer_that_vanishes_mid_stream_is_dropped_and_the_others_carry_on() {
    let mut net = three();
    publish_round(&mut net, &[0, 1, 2], 5);
    // a goes silent: no more media, no ICE consent checks, no goodbye.
    net.vanish(1);
    let mut waited = Duration::ZERO;
    while !net.gone.contains(&pid("a")) {
        assert!(
            waited < Duration::from_secs(60),
            "the SFU noticed within 60 s"
        );
        publish_round(&mut net, &[0, 2], 1);
        waited += Duration::from_millis(533);
    }
    assert_eq!(net.sfu.peer_count(), 2);
    for i in [0, 2] {
        assert!(
            net.clients[i]
                .slots
                .iter()
                .all(|s| s.publisher != Some(pid("a"))),
            "a's slots freed"
        );
    }
    // m and b never noticed anything but a's absence.
    let (m_before, b_before) = (
        net.clients[0].frames_from(&pid("b")).len(),
        net.clients[2].frames_from(&pid("m")).len(),
    );
    publish_round(&mut net, &[0, 2], 10);
    assert_eq!(net.clients[0].frames_from(&pid("b")).len(), m_before + 20);
    assert_eq!(net.clients[2].frames_from(&pid("m")).len(), b_before + 20);
}

#[test]
fn a_slot_emptied_by_an_earlier_change_stays_empty_for_a_while_if_another_is_free() {
    let mut net = m_with_three_slots(12);
    let video_mid = |net: &MediaNet, who: &str| slot_of(net, who, true);
    let a_slot = video_mid(&net, "a").unwrap();
    // a leaves m's room; 100 ms later c arrives: c gets the never-used slot, not a's.
    net.route(&[("joint", &["m", "b"]), ("breakout-1", &["c", "a"])]);
    net.run(Duration::from_millis(100));
    net.route(&[("joint", &["m", "b", "c"]), ("breakout-1", &["a"])]);
    net.run(Duration::from_millis(50));
    assert_ne!(video_mid(&net, "c").unwrap(), a_slot);
    // Once SLOT_REUSE_AFTER has passed, the old slot is as good as any: when b leaves and a
    // comes back, a gets the slot emptied longest ago (its own), not b's fresh one.
    net.run(confer_sfu::SLOT_REUSE_AFTER);
    let b_slot = video_mid(&net, "b").unwrap();
    net.route(&[("joint", &["m", "a", "c"]), ("breakout-1", &["b"])]);
    net.run(Duration::from_millis(50));
    assert_eq!(video_mid(&net, "a").unwrap(), a_slot);
    assert_ne!(video_mid(&net, "a").unwrap(), b_slot);
}

#[test]
fn a_slot_that_changes_publisher_keeps_its_rtp_clock_running() {
    // One video slot for s: a publishes into it, then a moves out and b (whose RTP clock started
    // far from a's) takes the slot. The subscriber's receiver sees one stream per slot: b's
    // frames must continue the slot's clock, not jump to b's (a browser decodes frames that
    // jump, then schedules them for display far away).
    let mut net = MediaNet::new(11, 0.0, Duration::from_millis(5));
    for p in ["a", "b", "s"] {
        net.add_client(p, 1);
    }
    net.clients[1].clock_offset = 3_000_000_000;
    net.route(&[("joint", &["a", "s"]), ("caucus-B", &["b"])]);
    net.connect();
    warm_up(&mut net);
    publish_round(&mut net, &[0], 20);
    net.route(&[("joint", &["b", "s"]), ("caucus-A", &["a"])]);
    net.run(Duration::from_millis(100));
    publish_round(&mut net, &[1], 20);
    let s = &net.clients[2];
    let slot = s
        .slots
        .iter()
        .find(|x| x.video)
        .map(|x| x.mid.clone())
        .unwrap();
    let times: Vec<u64> = s
        .received_times
        .iter()
        .filter(|(m, _)| m.to_string() == slot)
        .map(|(_, t)| *t)
        .collect();
    let by = |who: u8| {
        s.received
            .iter()
            .filter(|(m, f)| m.to_string() == slot && f.len() > 1000 && f[1] == who)
            .count()
    };
    assert!(
        by(0) >= 15 && by(1) >= 15,
        "both published into the slot: {} and {}",
        by(0),
        by(1)
    );
    assert!(times.len() >= 30, "{} video frames", times.len());
    for w in times.windows(2) {
        let step = w[1].wrapping_sub(w[0]);
        assert!(step < 90_000 * 3, "the slot's clock jumped by {step} ticks");
    }
}

#[test]
fn routes_follow_a_peer_replacement_and_a_routing_change_between_two_packets() {
    // The SFU keeps each publisher's subscribers as indices into its peers, computed when the
    // routing table or the peers change. A route left stale by a reconnect (which moves the
    // peers after the old one down) or by a move would send m's media to the wrong peer.
    let mut net = MediaNet::new(13, 0.0, Duration::from_millis(5));
    for p in ["m", "a", "b", "c"] {
        net.add_client(p, 3);
    }
    net.route(&[("joint", &["m", "a", "b"]), ("breakout-1", &["c"])]);
    net.connect();
    warm_up(&mut net);
    let from_m = |net: &MediaNet, i: usize| net.clients[i].frames_from(&pid("m")).len();
    let no_slot = |net: &MediaNet| net.sfu.stats().drops.get("no_slot").copied();
    publish_round(&mut net, &[0], 3);
    assert_eq!(
        (from_m(&net, 1), from_m(&net, 2), from_m(&net, 3)),
        (6, 6, 0)
    );

    // a reconnects from another address: its new peer replaces the old one (b's and c's
    // peers move down one place). m's next packets reach the new a and b, never c.
    net.vanish(1);
    // The test network tells a participant's slots to its first client of that id: renamed,
    // the old client no longer takes the new one's.
    net.clients[1].pid = pid("a-old");
    let a2 = net.add_client("a", 3);
    net.connect();
    warm_up(&mut net);
    assert_eq!(net.sfu.peer_count(), 4);
    let drops_before = no_slot(&net);
    publish_round(&mut net, &[0], 3);
    assert_eq!(
        (from_m(&net, a2), from_m(&net, 2), from_m(&net, 3)),
        (6, 6, 0)
    );
    assert_eq!(
        no_slot(&net),
        drops_before,
        "no packet went to a peer without a slot"
    );

    // a moves out, c moves in: the next packets go to b and c only.
    net.route(&[("joint", &["m", "b", "c"]), ("breakout-1", &["a"])]);
    net.run(Duration::from_millis(50));
    let (a_before, b_before) = (from_m(&net, a2), from_m(&net, 2));
    publish_round(&mut net, &[0], 10);
    assert_eq!(
        from_m(&net, a2),
        a_before,
        "a, moved out, got nothing of m's"
    );
    assert_eq!(from_m(&net, 2), b_before + 20, "b got all of m's");
    assert!(
        from_m(&net, 3) >= 18,
        "c, moved in, got m's: {}",
        from_m(&net, 3)
    );
}
