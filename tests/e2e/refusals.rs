//! Every refusal over the wire: the error code comes back and nothing changes for anyone.

use confer_e2e::TestServer;
use confer_proto::{ChannelId, Role, ServerMessage, Side};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn a_party_cannot_run_the_session() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    let (mut w, ww) = ts.join(Role::Party, Some("C".parse().unwrap())).await;
    let (w_id, _) = welcome(&ww);
    w.send(json!({"type": "consent", "agreement_hash": AGREEMENT_HASH}))
        .await;
    w.recv().await;
    m.c.sync().await;
    a.c.sync().await;
    b.c.sync().await;

    let attempts = [
        (
            json!({"type": "admit", "participant_id": w_id.as_str()}),
            "forbidden",
        ),
        (
            json!({"type": "move", "participant_id": a.id.as_str(), "channel_id": "caucus-A"}),
            "forbidden",
        ),
        (
            json!({"type": "move", "participant_id": a.id.as_str(), "channel_id": "caucus-B"}),
            "forbidden",
        ),
        (
            json!({"type": "create_breakout", "members": [a.id.as_str()]}),
            "forbidden",
        ),
        (json!({"type": "return_all"}), "forbidden"),
        (json!({"type": "lock"}), "forbidden"),
        (
            json!({"type": "kick", "participant_id": b.id.as_str()}),
            "forbidden",
        ),
        (json!({"type": "end"}), "forbidden"),
        (
            json!({"type": "create_invite", "role": "party", "side": "A"}),
            "forbidden",
        ),
        (
            json!({"type": "relay", "to": {"channel": "caucus-B"}, "data": "x"}),
            "relay_not_allowed",
        ),
        (
            json!({"type": "relay", "to": {"participant": w_id.as_str()}, "data": "x"}),
            "relay_not_allowed",
        ),
        (
            json!({"type": "relay", "to": {"channel": "breakout-7"}, "data": "x"}),
            "not_found",
        ),
    ];
    for (msg, code) in attempts {
        let ty = msg["type"].as_str().unwrap().to_owned();
        a.c.send(msg).await;
        let e =
            a.c.recv_until(|x| matches!(x, ServerMessage::Error { .. }))
                .await;
        assert_eq!(error_code(&e), code, "{ty}");
        assert!(
            matches!(&e, ServerMessage::Error { in_reply_to: Some(t), .. } if *t == ty),
            "{e:?}"
        );
    }
    // Nothing changed: nobody else heard a thing, W is still waiting, the session still runs.
    assert_eq!(b.c.sync().await, vec![]);
    assert_eq!(w.sync().await, vec![]);
    assert_eq!(m.c.sync().await, vec![]);
    relay(&mut b, json!({"channel": "joint"}), "still-here").await;
    assert_eq!(next_relayed(&mut a.c).await.2, "still-here");
}

#[tokio::test]
async fn mediator_moves_that_break_channel_rules_are_refused() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    let (_w, ww) = ts.join(Role::Party, Some(Side::A)).await;
    let (w_id, _) = welcome(&ww);
    m.c.sync().await;
    let cases = [
        (
            json!({"type": "move", "participant_id": b.id.as_str(), "channel_id": "caucus-A"}),
            "invalid_move",
        ),
        (
            json!({"type": "move", "participant_id": w_id.as_str(), "channel_id": "joint"}),
            "not_admitted",
        ),
        (
            json!({"type": "admit", "participant_id": w_id.as_str()}),
            "consent_required",
        ),
        (
            json!({"type": "move", "participant_id": b.id.as_str(), "channel_id": "breakout-1"}),
            "not_found",
        ),
        (
            json!({"type": "kick", "participant_id": m.id.as_str()}),
            "forbidden",
        ),
        (
            json!({"type": "create_invite", "role": "party"}),
            "invalid_message",
        ),
        (
            json!({"type": "create_invite", "role": "mediator"}),
            "forbidden",
        ),
    ];
    for (msg, code) in cases {
        m.c.send(msg).await;
        assert_eq!(
            error_code(
                &m.c.recv_until(|x| matches!(x, ServerMessage::Error { .. }))
                    .await
            ),
            code
        );
    }
    assert_eq!(b.c.sync().await, vec![], "B was not moved");
    relay(&mut m, json!({"channel": "joint"}), "ok").await;
    assert_eq!(next_relayed(&mut b.c).await.2, "ok");
    let _ = ChannelId::joint();
}

#[tokio::test]
async fn kick_closes_with_4403_and_the_token_cannot_come_back() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    m.c.send(json!({"type": "kick", "participant_id": b.id.as_str()}))
        .await;
    b.c.recv_until(|x| *x == ServerMessage::Kicked).await;
    assert_eq!(b.c.closed().await, 4403);
    let left =
        a.c.recv_until(|x| matches!(x, ServerMessage::ParticipantLeft { .. }))
            .await;
    assert!(
        matches!(left, ServerMessage::ParticipantLeft { participant_id, reason: confer_proto::LeaveReason::Kicked } if participant_id == b.id)
    );
    // The kicked participant's resume token is dead.
    let (mut again, first) = WsClient::join(ts.server.addr(), &b.resume).await;
    assert_eq!(error_code(&first), "unauthorized");
    assert_eq!(again.closed().await, 4401);
}
