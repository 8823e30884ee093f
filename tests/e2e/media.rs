//! Media through the real server: str0m client peers on real UDP sockets, offers and answers
//! over the signalling WebSocket, forwarding by the room's routing table.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_e2e::TestServer;
use confer_proto::{ChannelId, MediaSlot, ParticipantId, Role, ServerMessage, SessionId, Side};
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::*;

#[derive(Default)]
struct Seen {
    frames: Vec<(Mid, Vec<u8>)>,
    connected: bool,
    /// Where the SFU's datagrams came from (its shard's port).
    sfu: Option<std::net::SocketAddr>,
}

struct UdpPeer {
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    publish: mpsc::UnboundedSender<Vec<u8>>,
}

impl UdpPeer {
    /// Offers over `who`'s signalling connection and runs the peer on a real UDP socket.
    async fn start(who: &mut Who, slots: usize) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let start = tokio::time::Instant::now();
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(start.into_std());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        for _ in 0..slots {
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        who.c
            .send(json!({"type": "media_offer", "sdp": offer.to_sdp_string()}))
            .await;
        // Slot announcements may overtake the answer (they come from the media thread, the
        // answer from the connection): keep the newest.
        let mut early_slots = None;
        let answer = loop {
            match who.c.recv().await {
                ServerMessage::MediaAnswer { sdp } => break sdp,
                ServerMessage::MediaSlots { slots } => early_slots = Some(slots),
                ServerMessage::Error { code, message, .. } => panic!("no answer: {code} {message}"),
                _ => {}
            }
        };
        who.early_slots = early_slots;
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (bump, changed) = watch::channel(0u64);
        let (publish, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
        let st = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut n = 0u64;
            loop {
                let timeout = loop {
                    match rtc.poll_output() {
                        Ok(Output::Timeout(t)) => break t,
                        Ok(Output::Transmit(t)) => {
                            let _ = socket.send_to(&t.contents, t.destination).await;
                        }
                        Ok(Output::Event(Event::MediaData(m))) => {
                            st.lock().unwrap().frames.push((m.mid, m.data.to_vec()));
                            n += 1;
                            let _ = bump.send(n);
                        }
                        Ok(Output::Event(Event::Connected)) => {
                            st.lock().unwrap().connected = true;
                            n += 1;
                            let _ = bump.send(n);
                        }
                        Ok(Output::Event(_)) => {}
                        Err(_) => return,
                    }
                };
                tokio::select! {
                    r = socket.recv_from(&mut buf) => {
                        let Ok((len, from)) = r else { return };
                        st.lock().unwrap().sfu.get_or_insert(from);
                        let Ok(contents) = buf[..len].try_into() else { continue };
                        let now = tokio::time::Instant::now().into_std();
                        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source: from, destination: local, contents });
                        let _ = rtc.handle_input(input);
                    }
                    f = frames.recv() => {
                        let Some(f) = f else { return };
                        let now = tokio::time::Instant::now();
                        if let Some(w) = rtc.writer(video) {
                            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt());
                            let t = MediaTime::from_micros((now - start).as_micros() as u64).rebase(str0m::media::Frequency::new(90_000).unwrap());
                            if let Some(pt) = pt {
                                let _ = w.write(pt, now.into_std(), t, f);
                            }
                        }
                    }
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(timeout)) => {
                        let _ = rtc.handle_input(Input::Timeout(tokio::time::Instant::now().into_std()));
                    }
                }
            }
        });
        Self {
            seen,
            changed,
            publish,
        }
    }

    async fn until(&mut self, f: impl Fn(&Seen) -> bool) {
        let wait = async {
            while !f(&self.seen.lock().unwrap()) {
                self.changed.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .expect("media condition");
    }

    fn frames_in(&self, mids: &[String]) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .unwrap()
            .frames
            .iter()
            .filter(|(m, _)| mids.contains(&m.to_string()))
            .map(|(_, d)| d.clone())
            .collect()
    }
}

fn frame(who: u8, n: u32) -> Vec<u8> {
    let mut f = vec![0x10, who];
    f.extend_from_slice(&n.to_be_bytes());
    f.extend((0..1500u32).map(|i| (i * 31 + n) as u8));
    f
}

async fn slots_of(w: &mut Who, publisher: &ParticipantId) -> Vec<String> {
    let has = |slots: &[MediaSlot]| {
        slots
            .iter()
            .any(|s| s.participant_id.as_ref() == Some(publisher))
    };
    if let Some(slots) = w.early_slots.take().filter(|s| has(s)) {
        return slots
            .into_iter()
            .filter(|s| s.participant_id.as_ref() == Some(publisher))
            .map(|s| s.mid)
            .collect();
    }
    let m = w.c.recv_until(|m| matches!(m, ServerMessage::MediaSlots { slots } if slots.iter().any(|s| s.participant_id.as_ref() == Some(publisher)))).await;
    let ServerMessage::MediaSlots { slots } = m else {
        unreachable!()
    };
    slots
        .into_iter()
        .filter(|s: &MediaSlot| s.participant_id.as_ref() == Some(publisher))
        .map(|s| s.mid)
        .collect()
}

#[tokio::test]
async fn media_follows_the_room_through_the_real_server() {
    let ts = TestServer::start(|_| {}).await;
    assert!(ts.server.media_addr().is_some());
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    let mut pm = UdpPeer::start(&mut m, 2).await;
    let pa = UdpPeer::start(&mut a, 2).await;
    let mut pb = UdpPeer::start(&mut b, 2).await;
    let m_slots = slots_of(&mut m, &a.id).await;
    let b_slots = slots_of(&mut b, &a.id).await;
    pm.until(|s| s.connected).await;
    pb.until(|s| s.connected).await;

    // Warm-up (the SFU's str0m swallows a new stream's first packet), then 20 frames.
    pa.publish.send(vec![0x10, 0xff, 0, 0]).unwrap();
    pm.until(|s| !s.frames.is_empty()).await;
    for n in 0..20 {
        pa.publish.send(frame(1, n)).unwrap();
    }
    let want: Vec<Vec<u8>> = (0..20).map(|n| frame(1, n)).collect();
    for (p, mids) in [(&mut pm, &m_slots), (&mut pb, &b_slots)] {
        let w = want.clone();
        p.until(move |s| w.iter().all(|f| s.frames.iter().any(|(_, d)| d == f)))
            .await;
        // They arrived in the slots the SFU announced for A.
        let in_slots = p.frames_in(mids);
        assert!(want.iter().all(|f| in_slots.contains(f)));
    }

    // Caucus: A and the mediator; B stays in joint and receives nothing more from A.
    for who in [&a.id, &m.id] {
        m.c.send(json!({"type": "move", "participant_id": who.as_str(), "channel_id": "caucus-A"}))
            .await;
    }
    a.c.recv_until(|x| channel_of(x) == Some(ChannelId::caucus(Side::A)))
        .await;
    m.c.recv_until(|x| channel_of(x) == Some(ChannelId::caucus(Side::A)))
        .await;
    b.c.recv_until(|x| matches!(x, ServerMessage::MediaSlots { slots } if slots.iter().all(|s| s.participant_id.as_ref() != Some(&a.id)))).await;
    let b_before = pb.seen.lock().unwrap().frames.len();
    for n in 100..120 {
        pa.publish.send(frame(1, n)).unwrap();
    }
    let last = frame(1, 119);
    pm.until(move |s| s.frames.iter().any(|(_, d)| *d == last))
        .await;
    assert_eq!(
        pb.seen.lock().unwrap().frames.len(),
        b_before,
        "B received nothing of the caucus"
    );

    // The SFU's work shows in the metrics (no ids in them).
    let (status, body) = confer_testkit::ws::http_get(ts.server.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 { confer_testkit::ws::metric(&body, name).unwrap_or(0.0) };
    assert!(
        value("confer_media_forwarded_packets_total") >= 40.0,
        "{body}"
    );
    assert!(value("confer_media_forwarded_bytes_total") > 0.0);
    assert_eq!(value("confer_media_peers"), 3.0);
    // The media thread's batches: every datagram came in through a counted receive call and
    // went out through a counted send call, batched (never more calls than datagrams).
    let (calls_in, got) = (
        value("confer_media_receive_calls_total"),
        value("confer_media_datagrams_received_total"),
    );
    let (calls_out, sent) = (
        value("confer_media_send_calls_total"),
        value("confer_media_datagrams_sent_total"),
    );
    assert!(calls_in > 0.0 && got >= calls_in, "{body}");
    assert!(calls_out > 0.0 && sent >= calls_out, "{body}");
    assert!(
        sent >= value("confer_media_forwarded_packets_total"),
        "every forwarded copy is a datagram sent: {body}"
    );
    assert_eq!(
        value("confer_media_drops_total{reason=\"unknown_source\"}"),
        0.0
    );
    assert!(!body.contains(a.id.as_str()));
}

/// With two media shards, two sessions land on different threads and ports (a session's
/// media lives on one shard); each carries its own media, and neither sees the other's.
#[tokio::test]
async fn two_sessions_on_two_media_shards_each_carry_their_own_media() {
    let mut ts = TestServer::start(|c| c.media_shards = 2).await;
    let shards = ts.server.media_addrs().to_vec();
    assert_eq!(shards.len(), 2);
    assert_ne!(shards[0], shards[1]);
    let mut used = Vec::new();
    let mut listeners = Vec::new();
    for s in 0..2u8 {
        ts.session = SessionId::new(format!("s-shard-{s}")).unwrap();
        let mut m = mediator(&ts).await;
        let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
        let mut pm = UdpPeer::start(&mut m, 2).await;
        let pa = UdpPeer::start(&mut a, 2).await;
        pm.until(|x| x.connected).await;
        pa.publish.send(vec![0x10, 0xff, 0, s]).unwrap();
        pm.until(|x| !x.frames.is_empty()).await;
        for n in 0..10 {
            pa.publish.send(frame(10 + s, n)).unwrap();
        }
        let want: Vec<Vec<u8>> = (0..10).map(|n| frame(10 + s, n)).collect();
        pm.until(move |x| want.iter().all(|f| x.frames.iter().any(|(_, d)| d == f)))
            .await;
        let sfu = pm.seen.lock().unwrap().sfu.unwrap();
        assert!(shards.contains(&sfu), "{sfu} is a shard's port");
        used.push(sfu);
        // Keep the session's connections and peers alive until the end.
        listeners.push((m, a, pm, pa));
    }
    assert_ne!(
        used[0], used[1],
        "consecutive sessions are on different shards"
    );
    // Neither mediator received the other session's frames.
    for (s, (_, _, pm, _)) in listeners.iter().enumerate() {
        let other = frame(10 + (1 - s as u8), 0);
        assert!(
            !pm.seen
                .lock()
                .unwrap()
                .frames
                .iter()
                .any(|(_, d)| *d == other)
        );
    }
    let (status, body) = confer_testkit::ws::http_get(ts.server.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        confer_testkit::ws::metric(&body, "confer_media_peers"),
        Some(4.0),
        "summed over both shards: {body}"
    );
}

#[test]
fn the_sfu_forwards_sealed_frames_it_cannot_read() {
    use confer_e2ee::frame::{Codec, FrameCtx, Opener, STREAM_CAMERA, Sealer};
    use confer_testkit::media::MediaNet;
    const CANARY: &[u8] = b"MEDIA-CANARY-face-of-party-A";
    let mut net = MediaNet::new(3, 0.0, Duration::from_millis(5));
    net.add_client("aaaa", 1);
    net.add_client("bbbb", 1);
    net.route(&[("joint", &["aaaa", "bbbb"])]);
    net.connect();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let tap = seen.clone();
    net.sfu
        .set_tap(move |p| tap.lock().unwrap().push(p.to_vec()));
    // Warm-up: the first packet of a new stream does not come out of the SFU (see forwarding.rs).
    net.publish(0, true, &[0x10, 0, 0, 0]);
    net.run(Duration::from_millis(200));
    net.clients[1].received.clear();

    let ctx = FrameCtx::new(b"s", [1; 16], [2; 16], STREAM_CAMERA).unwrap();
    let mut sealer = Sealer::new(ctx.clone(), [9; 32], 0);
    let mut opener = Opener::new(ctx);
    opener.add_generation(0, [9; 32]);
    let mut plain = Vec::new();
    for n in 0..10u8 {
        // A VP8 key frame: its 10-byte header stays in clear, the picture does not.
        let mut p = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, n];
        p.extend_from_slice(CANARY);
        p.extend((0..900u32).map(|i| i as u8));
        net.publish(0, true, &sealer.seal(Codec::Vp8, &p).unwrap());
        net.run(Duration::from_millis(33));
        plain.push(p);
    }
    net.run(Duration::from_millis(300));
    let got: Vec<Vec<u8>> = net.clients[1]
        .received
        .iter()
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(got.len(), 10);
    for (frame, want) in got.iter().zip(&plain) {
        assert_eq!(
            &opener.open(Codec::Vp8, frame).unwrap(),
            want,
            "the receiver opens every frame byte for byte"
        );
    }
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    for payload in seen.iter() {
        assert!(
            !payload.windows(CANARY.len()).any(|w| w == CANARY),
            "the SFU handled the canary in clear"
        );
    }
}

#[tokio::test]
async fn a_resumed_participant_is_told_its_slots_again() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let _pm = UdpPeer::start(&mut m, 1).await;
    let _pa = UdpPeer::start(&mut a, 1).await;
    let m_id = m.id.clone();
    let before = slots_of(&mut a, &m_id).await;
    // A's signalling connection drops; the media peer lives on. A resumes.
    let Who { c, resume, .. } = a;
    c.kill();
    let (mut c2, w) = confer_e2e::WsClient::join(ts.server.addr(), &resume).await;
    assert!(matches!(w, ServerMessage::Welcome { resumed: true, .. }));
    let again = c2
        .recv_until(|x| matches!(x, ServerMessage::MediaSlots { .. }))
        .await;
    let ServerMessage::MediaSlots { slots } = again else {
        unreachable!()
    };
    let mids: Vec<String> = slots
        .into_iter()
        .filter(|s| s.participant_id.as_ref() == Some(&m_id))
        .map(|s| s.mid)
        .collect();
    assert_eq!(
        mids, before,
        "the same mapping, repeated on the new connection"
    );
}
