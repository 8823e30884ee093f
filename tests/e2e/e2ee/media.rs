//! Encrypted media through the real server and SFU: Rust clients with webrtc-rs peers publish
//! self-describing frames sealed in confer/1 (Opus and VP8 clear-prefix rules), and every
//! receiver opens them and checks them byte for byte.

use std::collections::BTreeSet;

use confer_e2e::TestServer;
use confer_proto::{ChannelId, ClientMessage, ParticipantId, Role, Side};

use super::harness::{Behaviour, MEDIA_STREAMS, Peer, PeerRng, PeerState, config};

/// Frames each publisher sends per stream in a round.
const ROUND: u64 = 40;

async fn join_media(ts: &TestServer, role: Role, side: Option<Side>) -> Peer {
    join_media_with(ts, role, side, 3, false).await
}

/// A client with a media peer (publishing streams 0 and 1 when told to, `slots` of each kind,
/// through TURN only if `relay_only`).
pub(super) async fn join_media_with(
    ts: &TestServer,
    role: Role,
    side: Option<Side>,
    slots: usize,
    relay_only: bool,
) -> Peer {
    let mut cfg = config();
    cfg.media_streams = MEDIA_STREAMS.to_vec();
    cfg.media_receive = true;
    Peer::join_with(
        ts.server.addr(),
        &ts.invite(role, side),
        cfg,
        PeerRng {
            canary: false,
            stamped: Default::default(),
        },
        Behaviour {
            media_slots: Some(slots),
            relay_only,
            ..Behaviour::default()
        },
    )
    .await
}

/// Mediator, party A, party B, each with a media peer, secured in joint, every slot filled.
async fn three(ts: &TestServer) -> Vec<Peer> {
    let mut m = join_media(ts, Role::Mediator, None).await;
    m.secured_in("joint").await;
    let mut peers = vec![m];
    for side in [Side::A, Side::B] {
        let mut p = join_media(ts, Role::Party, Some(side)).await;
        p.secured_in("joint").await;
        peers.push(p);
    }
    for p in &mut peers {
        p.until_true(|s| {
            s.core.roster_members(&ChannelId::joint()).len() == 3
                && s.media_connected
                && s.media.slot_publishers().len() == 4
        })
        .await;
    }
    peers
}

fn sent(s: &PeerState, stream: u8) -> u64 {
    s.media
        .stats
        .sent_per_stream
        .get(&stream)
        .copied()
        .unwrap_or(0)
}

/// Publishes until `who` has sent at least `until` frames per stream in total, then stops.
async fn publish_to(p: &mut Peer, until: u64) {
    p.publish(true);
    p.until_true(|s| MEDIA_STREAMS.iter().all(|st| sent(s, *st) >= until))
        .await;
    p.publish(false);
}

/// The counters of `publisher`'s `stream` that `s` verified.
fn verified(s: &PeerState, publisher: &ParticipantId, stream: u8) -> BTreeSet<u64> {
    s.media
        .stats
        .from
        .get(publisher)
        .and_then(|f| f.counters.get(&stream))
        .cloned()
        .unwrap_or_default()
}

/// Waits until `r` has verified every frame `publisher` sent, counters `from..to` of each stream.
async fn until_all(r: &mut Peer, publisher: &ParticipantId, from: &[u64; 2], to: &[u64; 2]) {
    let p2 = publisher.clone();
    let (from, to) = (*from, *to);
    let done = move |s: &PeerState| {
        (0..2).all(|i| {
            let v = verified(s, &p2, MEDIA_STREAMS[i]);
            (from[i]..to[i]).all(|c| v.contains(&c))
        })
    };
    let wait = tokio::time::timeout(super::harness::PATIENCE / 2, r.until_true(done));
    if wait.await.is_err() {
        let missing: Vec<Vec<u64>> = r.with(|s| {
            (0..2)
                .map(|i| {
                    let v = verified(s, publisher, MEDIA_STREAMS[i]);
                    (from[i]..to[i]).filter(|c| !v.contains(c)).collect()
                })
                .collect()
        });
        let stats = r.with(|s| {
            format!(
                "{:?} {:?}",
                s.media
                    .stats
                    .from
                    .get(publisher)
                    .map(|f| (f.received, f.verified)),
                s.core.stats()
            )
        });
        panic!("frames of {publisher:?} never verified, per stream: {missing:?}; {stats}");
    }
}

fn sent_counts(p: &Peer) -> [u64; 2] {
    p.with(|s| [sent(s, MEDIA_STREAMS[0]), sent(s, MEDIA_STREAMS[1])])
}

fn assert_clean(p: &Peer) {
    p.with(|s| {
        let m = &s.media.stats;
        assert_eq!(s.core.stats().decrypt_failures, 0, "{m:?}");
        assert_eq!(m.frames_corrupt, 0, "{m:?}");
        assert_eq!(m.frames_unattributed, 0, "{m:?}");
        assert_eq!(m.frames_received, m.frames_verified, "{m:?}");
        assert!(s.alarms().is_empty(), "{:?}", s.alarms());
    });
}

async fn metric(ts: &TestServer, name: &str) -> u64 {
    let (status, body) = confer_testkit::ws::http_get(ts.server.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    confer_testkit::ws::metric(&body, name).unwrap_or(0.0) as u64
}

#[tokio::test]
async fn a_joint_session_of_three_receives_every_frame_of_every_other_member() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = three(&ts).await;
    for q in &p {
        q.publish(true);
    }
    for q in &mut p {
        q.until_true(|s| MEDIA_STREAMS.iter().all(|st| sent(s, *st) >= ROUND))
            .await;
    }
    for q in &p {
        q.publish(false);
    }
    let counts: Vec<[u64; 2]> = p.iter().map(sent_counts).collect();
    let pids: Vec<ParticipantId> = p.iter().map(|q| q.pid.clone()).collect();
    for (r, receiver) in p.iter_mut().enumerate() {
        for (i, publisher) in pids.iter().enumerate() {
            if i != r {
                // Every frame, from the first: counters 0..n of both streams.
                until_all(receiver, publisher, &[0, 0], &counts[i]).await;
            }
        }
    }
    for q in &p {
        assert_clean(q);
        // Video key frames (10 clear bytes) and delta frames (1) both went through.
        let v = q.with(|s| s.media.stats.frames_verified);
        assert!(v >= 4 * ROUND, "{v}");
    }
}

#[tokio::test]
async fn in_caucus_the_other_party_receives_none_of_it_and_a_return_restores_joint() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = three(&ts).await;
    let (m_pid, a_pid, b_pid) = (p[0].pid.clone(), p[1].pid.clone(), p[2].pid.clone());
    publish_to(&mut p[1], 10).await;
    let joint = sent_counts(&p[1]);
    until_all(&mut p[2], &a_pid, &[0, 0], &joint).await;

    // A and the mediator go to caucus A; B stays in joint, alone.
    for who in [&a_pid, &m_pid] {
        p[0].send(ClientMessage::Move {
            participant_id: who.clone(),
            channel_id: ChannelId::caucus(Side::A),
        });
    }
    for i in [0, 1] {
        p[i].secured_in("caucus-A").await;
    }
    let a2 = a_pid.clone();
    p[0].until_true(move |s| s.media.slot_publishers() == vec![a2.clone(), a2.clone()])
        .await;
    p[2].until_true(|s| s.media.slot_publishers().is_empty())
        .await;
    let forwarded_before = metric(&ts, "confer_media_forwarded_packets_total").await;
    let (b_received, b_from_a) = p[2].with(|s| {
        (
            s.media.stats.frames_received,
            s.media.stats.from.get(&a_pid).map(|f| f.received),
        )
    });

    // A speaks in caucus: only the mediator receives it.
    publish_to(&mut p[1], joint[0] + ROUND).await;
    let caucus = sent_counts(&p[1]);
    let in_caucus = p[1].with(|s| s.media.stats.sent_in.get("caucus-A").copied().unwrap_or(0));
    assert_eq!(in_caucus, caucus[0] + caucus[1] - joint[0] - joint[1]);
    until_all(&mut p[0], &a_pid, &joint, &caucus).await;
    // B was told of nothing and received nothing: no packet of A's, no packet at all.
    p[2].with(|s| {
        assert_eq!(s.media.stats.frames_received, b_received);
        assert_eq!(s.media.stats.from.get(&a_pid).map(|f| f.received), b_from_a);
        assert!(
            verified(s, &a_pid, MEDIA_STREAMS[1])
                .iter()
                .all(|c| *c < joint[1])
        );
    });
    // Handed A's caucus frames anyway, B cannot open them: it holds no key they name.
    let caucus_frames: Vec<(u8, Vec<u8>)> = p[1].with(|s| {
        s.sent_frames
            .iter()
            .filter(|(room, _, _)| room.as_ref() == Some(&ChannelId::caucus(Side::A)))
            .map(|(_, st, f)| (*st, f.clone()))
            .collect()
    });
    assert!(!caucus_frames.is_empty());
    p[2].with(|s| {
        for (st, f) in &caucus_frames {
            assert_eq!(
                s.core.open_media(&a_pid, *st, f),
                Err(confer_client::MediaRejected::NoKey)
            );
        }
    });
    // The SFU forwarded each of A's caucus packets once: to the mediator, never to B.
    let forwarded = metric(&ts, "confer_media_forwarded_packets_total").await - forwarded_before;
    assert_eq!(forwarded, in_caucus, "one copy per caucus packet");

    // Return: B hears A again, under the new joint keys.
    p[0].send(ClientMessage::ReturnAll);
    for q in &mut p {
        q.secured_in("joint").await;
    }
    let a3 = a_pid.clone();
    p[2].until_true(move |s| {
        s.media
            .slot_publishers()
            .iter()
            .filter(|x| **x == a3)
            .count()
            == 2
    })
    .await;
    publish_to(&mut p[1], caucus[0] + ROUND).await;
    let back = sent_counts(&p[1]);
    until_all(&mut p[2], &a_pid, &caucus, &back).await;
    until_all(&mut p[0], &a_pid, &caucus, &back).await;
    for q in &p {
        assert_clean(q);
    }

    // A leaves: its slots at the mediator and at B are freed, and its peer is gone.
    p[1].send(ClientMessage::Leave);
    for i in [0, 2] {
        let a4 = a_pid.clone();
        p[i].until_true(move |s| !s.media.slot_publishers().contains(&a4))
            .await;
    }
    assert_eq!(
        p[2].with(|s| s.media.slot_publishers()),
        vec![m_pid.clone(), m_pid.clone()]
    );
    assert_eq!(
        p[0].with(|s| s.media.slot_publishers()),
        vec![b_pid.clone(), b_pid]
    );
    assert_eq!(metric(&ts, "confer_media_peers").await, 2);
}
