//! Resume after a dropped connection, and removal after the grace period.

use confer_e2e::TestServer;
use confer_proto::{ChannelId, LeaveReason, Role, ServerMessage, Side};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn resume_lands_in_the_same_caucus_never_silently_in_joint() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    m.c.send(json!({"type": "move", "participant_id": a.id.as_str(), "channel_id": "caucus-A"}))
        .await;
    a.c.recv_until(|x| channel_of(x) == Some(ChannelId::caucus(Side::A)))
        .await;

    let Who {
        c,
        id: a_id,
        resume,
        ..
    } = a;
    c.kill();
    // The mediator sees A's connection drop (member marked disconnected).
    m.c.recv_until(|x| matches!(x, ServerMessage::Session { session } if session.channels.iter().flat_map(|c| &c.members).any(|mm| mm.participant_id == a_id && !mm.connected))).await;

    let (mut a2, w) = WsClient::join(ts.server.addr(), &resume).await;
    let ServerMessage::Welcome {
        participant_id,
        resumed,
        channel,
        resume_token,
        ..
    } = w
    else {
        panic!("{w:?}")
    };
    assert_eq!(participant_id, a_id);
    assert!(resumed);
    assert_eq!(channel.unwrap().id, ChannelId::caucus(Side::A));
    // The caucus still works for A; B still hears nothing of it.
    relay(&mut m, json!({"channel": "caucus-A"}), "welcome-back").await;
    assert_eq!(next_relayed(&mut a2).await.2, "welcome-back");
    relay(&mut m, json!({"channel": "joint"}), "joint").await;
    assert_eq!(next_relayed(&mut b.c).await.2, "joint");

    // The old resume token was superseded by the new one.
    let (mut stale, first) = WsClient::join(ts.server.addr(), &resume).await;
    assert_eq!(error_code(&first), "unauthorized");
    assert_eq!(stale.closed().await, 4401);
    // The new one replaces the live connection (e.g. a second tab), closing the old with 4409.
    let (_a3, w3) = WsClient::join(ts.server.addr(), &resume_token).await;
    assert!(matches!(w3, ServerMessage::Welcome { resumed: true, .. }));
    assert_eq!(a2.closed().await, 4409);
}

#[tokio::test]
async fn after_the_grace_period_the_participant_is_removed_and_others_told() {
    let ts = TestServer::start(|c| c.resume_grace_secs = 1).await;
    let mut m = mediator(&ts).await;
    let a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    let Who {
        c,
        id: a_id,
        resume,
        ..
    } = a;
    c.kill();
    let left =
        b.c.recv_until(|x| matches!(x, ServerMessage::ParticipantLeft { .. }))
            .await;
    assert_eq!(
        left,
        ServerMessage::ParticipantLeft {
            participant_id: a_id,
            reason: LeaveReason::Timeout
        }
    );
    let (mut late, first) = WsClient::join(ts.server.addr(), &resume).await;
    assert_eq!(error_code(&first), "unauthorized");
    assert_eq!(late.closed().await, 4401);
}
