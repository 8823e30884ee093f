//! Rotation at membership changes, and a participant the server slips in.

use confer_client::envelope::Envelope;
use confer_e2e::{TestServer, WsClient};
use confer_proto::{ChannelId, ClientMessage, Role, ServerMessage, Side};

use super::cast;
use super::harness::{Behaviour, Peer, PeerRng, config};

#[tokio::test]
async fn a_departed_member_cannot_read_after_rotation_nor_a_newcomer_before_joining() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(&ts, &[(Role::Party, Some(Side::A))]).await;
    // B is malicious: it ignores its removal and keeps every key it had.
    let mut b = Peer::join_with(
        ts.server.addr(),
        &ts.invite(Role::Party, Some(Side::B)),
        config(),
        PeerRng {
            canary: false,
            stamped: Default::default(),
        },
        Behaviour {
            keep_keys: true,
            ..Default::default()
        },
    )
    .await;
    b.secured_in("joint").await;
    for q in p.iter_mut() {
        q.until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 3)
            .await;
    }
    let a_pid = p[1].pid.clone();
    p[1].chat("before").await.unwrap();
    b.until_true(|s| s.has_chat("before")).await;
    p[0].until_true(|s| s.has_chat("before")).await;
    let (cid, before) = p[0].with(|s| s.chat_frames_from(&a_pid).last().cloned().unwrap());

    let epoch = p[1].with(|s| s.core.roster_epoch(&ChannelId::joint()).unwrap());
    p[0].send(ClientMessage::Kick {
        participant_id: b.pid.clone(),
    });
    p[1].until_true(|s| s.core.roster_epoch(&ChannelId::joint()) > Some(epoch))
        .await;
    assert!(!p[1].with(|s| s.core.roster_members(&ChannelId::joint()).contains(&b.pid)));
    p[1].chat("after").await.unwrap();
    p[0].until_true(|s| s.has_chat("after")).await;
    let (cid2, after) = p[0].with(|s| s.chat_frames_from(&a_pid).last().cloned().unwrap());
    assert_eq!(cid, cid2, "same channel, new generation");
    b.until_true(|s| s.closed == Some(4403)).await;
    b.with(|s| {
        assert!(
            !s.core.stats().keys_deleted,
            "the malicious client kept its keys"
        );
        assert_eq!(
            s.core.try_open_chat(&a_pid, &cid, &after),
            Err(confer_client::ChatRefused::DoesNotOpen),
            "old keys (still held) do not open post-rotation frames"
        );
    });

    // A newcomer cannot read what was said before it arrived.
    let mut c = Peer::join(ts.server.addr(), &ts.invite(Role::Observer, None), config()).await;
    c.secured_in("joint").await;
    p[1].until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 3)
        .await;
    c.until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 3)
        .await;
    p[1].chat("welcome").await.unwrap();
    c.until_true(|s| s.has_chat("welcome")).await;
    c.with(|s| {
        // The newcomer holds A's current joint key; it opens neither earlier frame.
        let refused = Err(confer_client::ChatRefused::DoesNotOpen);
        assert_eq!(s.core.try_open_chat(&a_pid, &cid, &before), refused);
        assert_eq!(s.core.try_open_chat(&a_pid, &cid, &after), refused);
    });
}

#[tokio::test]
async fn a_participant_injected_by_the_server_gets_no_keys_and_every_client_raises_an_alarm() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(
        &ts,
        &[(Role::Party, Some(Side::A)), (Role::Party, Some(Side::B))],
    )
    .await;
    // A compromised server mints itself a token (it holds the signing key) and joins as a
    // co-mediator: the room puts it straight into joint.
    let (mut intruder, w) =
        WsClient::join(ts.server.addr(), &ts.invite(Role::CoMediator, None)).await;
    let ServerMessage::Welcome {
        participant_id: intruder_id,
        ..
    } = w
    else {
        panic!("{w:?}")
    };
    for q in p.iter_mut() {
        let id = intruder_id.clone();
        q.until_true(move |s| s.events.iter().any(|e| matches!(e, confer_client::Event::Alarm(confer_client::Alarm::UnsignedMember(x)) if *x == id))).await;
    }
    p[1].chat("not for the intruder").await.unwrap();
    p[2].until_true(|s| s.has_chat("not for the intruder"))
        .await;
    // Everything the intruder was sent: chat ciphertext, but never a key.
    let got = intruder.sync().await;
    let envelopes: Vec<Envelope> = got
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Relayed { data, .. } => Envelope::from_data(data),
            _ => None,
        })
        .collect();
    assert!(
        envelopes.iter().any(|e| matches!(e, Envelope::Chat { .. })),
        "the server routed chat to it: {envelopes:?}"
    );
    assert!(
        !envelopes.iter().any(|e| matches!(e, Envelope::Pw { .. })),
        "no pairwise message (no sender key) ever reached it"
    );
    assert!(
        !envelopes
            .iter()
            .any(|e| matches!(e, Envelope::Roster { .. }))
    );
    for q in &p {
        assert_eq!(
            q.with(|s| s.core.roster_members(&ChannelId::joint()).len()),
            3,
            "no signed roster lists it"
        );
    }
}

#[tokio::test]
async fn a_member_that_never_sends_its_new_key_raises_a_stale_key_alarm() {
    let ts = TestServer::start(|_| {}).await;
    let mut cfg = config();
    cfg.stale_key_after = std::time::Duration::from_millis(400);
    let mut m = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Mediator, None),
        cfg.clone(),
    )
    .await;
    m.secured_in("joint").await;
    let mut a = Peer::join(
        ts.server.addr(),
        &ts.invite(Role::Party, Some(Side::A)),
        cfg.clone(),
    )
    .await;
    a.secured_in("joint").await;
    let rng = PeerRng {
        canary: false,
        stamped: Default::default(),
    };
    let withhold = Behaviour {
        withhold_keys: true,
        ..Default::default()
    };
    let mut b = Peer::join_with(
        ts.server.addr(),
        &ts.invite(Role::Party, Some(Side::B)),
        cfg,
        rng,
        withhold,
    )
    .await;
    b.secured_in("joint").await;
    let b_id = b.pid.clone();
    for q in [&mut m, &mut a] {
        let id = b_id.clone();
        q.until_true(move |s| s.events.iter().any(|e| matches!(e, confer_client::Event::Alarm(confer_client::Alarm::StaleKey(x)) if *x == id))).await;
    }
    // Nobody else is reported stale.
    let a_id = a.pid.clone();
    assert!(!m.with(|s| s.events.iter().any(|e| matches!(e, confer_client::Event::Alarm(confer_client::Alarm::StaleKey(x)) if *x == a_id))));
}
