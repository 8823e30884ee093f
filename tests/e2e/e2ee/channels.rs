//! Every member of a channel decrypts its chat; non-members are never sent it and cannot
//! decrypt it when handed the ciphertext.

use confer_e2e::TestServer;
use confer_proto::{ChannelId, ClientMessage, Role, Side};

use super::cast;

#[tokio::test]
async fn joint_and_caucus_chat_reach_exactly_their_members() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(
        &ts,
        &[
            (Role::Party, Some(Side::A)),
            (Role::Party, Some(Side::B)),
            (Role::Counsel, Some(Side::A)),
        ],
    )
    .await;
    let (a_pid, ca_pid, m_pid) = (p[1].pid.clone(), p[3].pid.clone(), p[0].pid.clone());

    // Joint: all four.
    p[1].chat("joint: good morning").await.unwrap();
    for i in [0, 2, 3] {
        p[i].until_true(|s| s.has_chat("joint: good morning")).await;
    }

    // Caucus A: mediator, party A, counsel A. B stays in joint.
    for who in [&a_pid, &ca_pid, &m_pid] {
        p[0].send(ClientMessage::Move {
            participant_id: who.clone(),
            channel_id: ChannelId::caucus(Side::A),
        });
    }
    for i in [0, 1, 3] {
        p[i].secured_in("caucus-A").await;
    }
    for i in [0, 1, 3] {
        p[i].until_true(|s| s.core.roster_present(&ChannelId::caucus(Side::A)).len() == 3)
            .await;
    }
    p[1].chat("caucus: our bottom line is 40").await.unwrap();
    p[0].until_true(|s| s.has_chat("caucus: our bottom line is 40"))
        .await;
    p[3].until_true(|s| s.has_chat("caucus: our bottom line is 40"))
        .await;

    // After the mediator heard it, a direct message from the mediator to B: B reads it only
    // after anything the server would have routed to B before, so B's record is complete.
    p[0].relay_raw(&p[2].pid, "marker".into());
    p[2].until_true(|s| {
        s.inbound.iter().any(
            |m| matches!(m, confer_proto::ServerMessage::Relayed { data, .. } if data == "marker"),
        )
    })
    .await;
    let (cid, frame) = p[3].with(|s| s.chat_frames_from(&a_pid).last().cloned().unwrap());
    p[2].with(|s| {
        assert!(!s.has_chat("caucus: our bottom line is 40"));
        assert!(
            s.chat_frames_from(&a_pid).iter().all(|(c, _)| *c != cid),
            "B was never sent a caucus frame"
        );
        // Handed the ciphertext anyway, B cannot open it: it never held a caucus key of A's,
        assert_eq!(
            s.core.try_open_chat(&a_pid, &cid, &frame),
            Err(confer_client::ChatRefused::NoKey)
        );
        // and relabelled as a joint frame, A's joint keys (which B holds) do not open it.
        let (joint_cid, _) = s.chat_frames_from(&a_pid).first().cloned().unwrap();
        assert_ne!(joint_cid, cid);
        assert_eq!(
            s.core.try_open_chat(&a_pid, &joint_cid, &frame),
            Err(confer_client::ChatRefused::DoesNotOpen)
        );
    });
    // The plain-text marker is the only thing B could not open: no frame failed.
    assert_eq!(p[2].with(|s| s.core.stats().decrypt_failures), 1);
    // Keys were acknowledged (counted, not waited for).
    assert!(p[1].with(|s| s.core.stats().acks_received) > 0);

    // Back to joint: the caucus keys are forgotten once frames in flight have had their time.
    p[0].send(ClientMessage::ReturnAll);
    for i in [0, 1, 3] {
        p[i].secured_in("joint").await;
        p[i].until_true(|s| s.core.receive_keys_for(&ChannelId::caucus(Side::A)) == 0)
            .await;
    }
    p[1].chat("joint again").await.unwrap();
    p[2].until_true(|s| s.has_chat("joint again")).await;

    // A second visit to the caucus: a new chain and new keys, and it works again.
    for who in [&a_pid, &ca_pid, &m_pid] {
        p[0].send(ClientMessage::Move {
            participant_id: who.clone(),
            channel_id: ChannelId::caucus(Side::A),
        });
    }
    for i in [0, 1, 3] {
        p[i].secured_in("caucus-A").await;
        p[i].until_true(|s| s.core.roster_present(&ChannelId::caucus(Side::A)).len() == 3)
            .await;
    }
    p[1].chat("caucus again").await.unwrap();
    p[0].until_true(|s| s.has_chat("caucus again")).await;
    p[3].until_true(|s| s.has_chat("caucus again")).await;
}

#[tokio::test]
async fn a_breakout_has_its_own_keys_and_only_its_members_read_it() {
    let ts = TestServer::start(|_| {}).await;
    let mut p = cast(
        &ts,
        &[
            (Role::Party, Some(Side::A)),
            (Role::Party, Some(Side::B)),
            (Role::Counsel, Some(Side::A)),
        ],
    )
    .await;
    let (b_pid, ca_pid) = (p[2].pid.clone(), p[3].pid.clone());
    // Counsel A and party B talk alone (e.g. to settle a figure); the mediator and A stay in joint.
    p[0].send(ClientMessage::CreateBreakout {
        members: vec![b_pid.clone(), ca_pid.clone()],
    });
    for i in [2, 3] {
        p[i].secured_in("breakout-1").await;
        // B and counsel A present (the mediator, who signs it, is listed away).
        p[i].until_true(|s| {
            s.core
                .roster_present(&ChannelId::new("breakout-1").unwrap())
                .len()
                == 2
        })
        .await;
    }
    p[3].chat("breakout: 40 is fine").await.unwrap();
    p[2].until_true(|s| s.has_chat("breakout: 40 is fine"))
        .await;
    // Joint goes on without them, and nobody in joint was sent the breakout's frames.
    p[1].until_true(|s| s.core.roster_members(&ChannelId::joint()).len() == 4)
        .await;
    p[1].chat("joint: meanwhile").await.unwrap();
    p[0].until_true(|s| s.has_chat("joint: meanwhile")).await;
    let (cid, frame) = p[2].with(|s| s.chat_frames_from(&ca_pid).last().cloned().unwrap());
    for i in [0, 1] {
        p[i].with(|s| {
            assert!(!s.has_chat("breakout: 40 is fine"));
            assert!(s.chat_frames_from(&ca_pid).iter().all(|(c, _)| *c != cid));
            assert_eq!(
                s.core.try_open_chat(&ca_pid, &cid, &frame),
                Err(confer_client::ChatRefused::NoKey)
            );
            // The refusal is the precise one: no key of the counsel's for that room at all.
        });
    }
}
