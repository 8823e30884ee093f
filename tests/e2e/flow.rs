//! The whole mediation flow with a mediator, two parties and counsel.

use confer_e2e::TestServer;
use confer_proto::{ChannelId, ChannelKind, CloseCode, Role, ServerMessage, Side};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn waiting_room_consent_admit_joint_caucus_breakout_return_lock_end() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;

    // Waiting room: A arrives; the mediator sees A waiting, without consent.
    let (mut a_c, w) = ts.join(Role::Party, Some(Side::A)).await;
    assert!(
        matches!(
            &w,
            ServerMessage::Welcome {
                channel: None,
                role: Role::Party,
                ..
            }
        ),
        "{w:?}"
    );
    let (a_id, a_resume) = welcome(&w);
    let s =
        m.c.recv_until(
            |x| matches!(x, ServerMessage::Session { session } if !session.waiting.is_empty()),
        )
        .await;
    let ServerMessage::Session { session } = s else {
        unreachable!()
    };
    assert_eq!(session.waiting[0].participant_id, a_id);
    assert!(!session.waiting[0].consented);

    // No admission without consent.
    m.c.send(json!({"type": "admit", "participant_id": a_id.as_str()}))
        .await;
    assert_eq!(
        error_code(
            &m.c.recv_until(|x| matches!(x, ServerMessage::Error { .. }))
                .await
        ),
        "consent_required"
    );
    a_c.send(json!({"type": "consent", "agreement_hash": AGREEMENT_HASH}))
        .await;
    assert_eq!(a_c.recv().await, ServerMessage::ConsentRecorded);
    m.c.send(json!({"type": "admit", "participant_id": a_id.as_str()}))
        .await;
    assert_eq!(
        channel_of(&a_c.recv_until(|x| channel_of(x).is_some()).await),
        Some(ChannelId::joint())
    );
    let mut a = Who {
        c: a_c,
        id: a_id,
        resume: a_resume,
        early_slots: None,
    };

    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    let mut ca = admitted(&ts, &mut m, Role::Counsel, Some(Side::A)).await;

    // Joint: everyone hears A.
    relay(&mut a, json!({"channel": "joint"}), "joint-1").await;
    for w in [&mut m, &mut b, &mut ca] {
        let (from, ch, data) = next_relayed(&mut w.c).await;
        assert_eq!(
            (from, ch, data.as_str()),
            (a.id.clone(), Some(ChannelId::joint()), "joint-1")
        );
    }

    // Caucus A: mediator, A and A's counsel.
    for who in [&m.id, &a.id, &ca.id] {
        m.c.send(json!({"type": "move", "participant_id": who.as_str(), "channel_id": "caucus-A"}))
            .await;
    }
    for w in [&mut a, &mut ca] {
        let ch =
            w.c.recv_until(|x| channel_of(x) == Some(ChannelId::caucus(Side::A)))
                .await;
        let ServerMessage::Channel { channel } = ch else {
            unreachable!()
        };
        assert_eq!(channel.kind, ChannelKind::Caucus);
    }
    // Wait until the caucus holds all three before anyone speaks in it.
    a.c.recv_until(
        |x| matches!(x, ServerMessage::Channel { channel } if channel.members.len() == 3),
    )
    .await;
    relay(&mut a, json!({"channel": "caucus-A"}), "caucus-secret").await;
    assert_eq!(next_relayed(&mut m.c).await.2, "caucus-secret");
    assert_eq!(next_relayed(&mut ca.c).await.2, "caucus-secret");
    // The mediator, having heard the caucus, speaks to joint: B's next relayed payload is that,
    // so the caucus message (sent earlier through the same room) never reached B.
    relay(&mut m, json!({"channel": "joint"}), "to-joint").await;
    assert_eq!(next_relayed(&mut b.c).await.2, "to-joint");
    // B cannot speak into the caucus.
    relay(&mut b, json!({"channel": "caucus-A"}), "intrude").await;
    assert_eq!(
        error_code(
            &b.c.recv_until(|x| matches!(x, ServerMessage::Error { .. }))
                .await
        ),
        "relay_not_allowed"
    );

    // Breakout: counsel A and party B (e.g. lawyers' talk), then everyone back.
    m.c.send(json!({"type": "create_breakout", "members": [ca.id.as_str(), b.id.as_str()]}))
        .await;
    let ch = b.c.recv_until(|x| matches!(x, ServerMessage::Channel { channel } if channel.kind == ChannelKind::Breakout)).await;
    let bo = channel_of(&ch).unwrap();
    relay(&mut ca, json!({"channel": bo.as_str()}), "breakout-talk").await;
    assert_eq!(next_relayed(&mut b.c).await.2, "breakout-talk");
    m.c.send(json!({"type": "return_all"})).await;
    for w in [&mut a, &mut b, &mut ca] {
        w.c.recv_until(|x| channel_of(x) == Some(ChannelId::joint()))
            .await;
    }
    m.c.recv_until(|x| channel_of(x) == Some(ChannelId::joint()))
        .await;

    // Lock: a newcomer is refused; unlock lets them in.
    m.c.send(json!({"type": "lock"})).await;
    assert_eq!(
        a.c.recv_until(|x| matches!(x, ServerMessage::LockChanged { .. }))
            .await,
        ServerMessage::LockChanged { locked: true }
    );
    let (mut late, first) = ts.join(Role::Observer, None).await;
    assert_eq!(error_code(&first), "session_locked");
    m.c.send(json!({"type": "unlock"})).await;
    a.c.recv_until(|x| matches!(x, ServerMessage::LockChanged { locked: false }))
        .await;
    late.hello(&ts.invite(Role::Observer, None)).await;
    assert!(matches!(
        late.recv().await,
        ServerMessage::Welcome { channel: None, .. }
    ));

    // Mediator invites through the server; the token works once.
    m.c.send(json!({"type": "create_invite", "role": "party", "side": "C"}))
        .await;
    let inv =
        m.c.recv_until(|x| matches!(x, ServerMessage::Invite { .. }))
            .await;
    let ServerMessage::Invite { token, side, .. } = inv else {
        unreachable!()
    };
    assert_eq!(side, Some("C".parse().unwrap()));
    let (_c1, w1) = WsClient::join(ts.server.addr(), &token).await;
    assert!(matches!(w1, ServerMessage::Welcome { side: Some(_), .. }));
    let (mut c2, w2) = WsClient::join(ts.server.addr(), &token).await;
    assert_eq!(error_code(&w2), "unauthorized");
    assert_eq!(c2.closed().await, CloseCode::Unauthorized.code());

    // End: everyone is told and closed with 4000; the session is gone.
    m.c.send(json!({"type": "end"})).await;
    for w in [&mut a, &mut b, &mut ca, &mut m] {
        w.c.recv_until(|x| *x == ServerMessage::SessionEnded).await;
        assert_eq!(w.c.closed().await, CloseCode::SessionEnded.code());
    }
    assert_eq!(late.closed().await, CloseCode::SessionEnded.code());
    // A party's fresh invite for the ended session finds nothing.
    let (_p, first) = ts.join(Role::Party, Some(Side::A)).await;
    assert_eq!(error_code(&first), "session_not_found");
}

#[tokio::test]
async fn parties_never_learn_of_each_other_in_the_waiting_room() {
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let (mut a, _) = ts.join(Role::Party, Some(Side::A)).await;
    let (mut b, wb) = ts.join(Role::Party, Some(Side::B)).await;
    let (b_id, _) = welcome(&wb);
    b.send(json!({"type": "consent", "agreement_hash": AGREEMENT_HASH}))
        .await;
    b.recv().await;
    b.send(json!({"type": "leave"})).await;
    m.c.recv_until(|x| matches!(x, ServerMessage::ParticipantLeft { participant_id, .. } if participant_id == &b_id)).await;
    // Everything A was sent since its welcome: nothing.
    assert_eq!(a.sync().await, vec![]);
}

#[tokio::test]
async fn party_tokens_wait_for_the_mediator_to_open_the_session() {
    let ts = TestServer::start(|_| {}).await;
    let token = ts.invite(Role::Party, Some(Side::A));
    let (mut a, first) = WsClient::join(ts.server.addr(), &token).await;
    assert_eq!(error_code(&first), "session_not_found");
    // The refused attempt did not spend the invite: once the mediator is in, it works.
    let _m = mediator(&ts).await;
    a.hello(&token).await;
    assert!(matches!(a.recv().await, ServerMessage::Welcome { .. }));
}
