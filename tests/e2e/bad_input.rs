//! Bad input: a clear error code, the connection handled deliberately, others unaffected.

use confer_e2e::TestServer;
use confer_proto::{CloseCode, ParticipantId, Role, ServerMessage, Side};
use confer_server::token::{Claims, TokenKind};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::*;

async fn first_error(c: &mut WsClient) -> &'static str {
    error_code(
        &c.recv_until(|x| matches!(x, ServerMessage::Error { .. }))
            .await,
    )
}

#[tokio::test]
async fn malformed_frames_get_codes_and_the_connection_stays_usable() {
    let ts = TestServer::start(|c| c.max_frame_bytes = 1024).await;
    let mut c = WsClient::connect(ts.server.addr()).await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "bad_json"),
        (Message::text("[]"), "bad_json"),
        (Message::text(r#"{"type":"teleport"}"#), "unknown_type"),
        (Message::text(r#"{"no_type":1}"#), "unknown_type"),
        (Message::text(r#"{"type":"ping"}"#), "hello_required"),
        (
            Message::text(r#"{"type":"admit","participant_id":"x"}"#),
            "hello_required",
        ),
        (
            Message::text(r#"{"type":"hello","version":2,"token":"t"}"#),
            "unsupported_version",
        ),
        (
            Message::text(r#"{"type":"hello","version":1}"#),
            "invalid_message",
        ),
        (Message::binary(vec![1, 2, 3]), "binary_not_supported"),
        (
            Message::text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000))),
            "frame_too_large",
        ),
    ];
    for (frame, code) in cases {
        assert!(c.send_raw(frame).await);
        assert_eq!(first_error(&mut c).await, code);
    }
    // Still the same connection: a valid hello works.
    c.hello(&ts.invite(Role::Mediator, None)).await;
    assert!(matches!(c.recv().await, ServerMessage::Welcome { .. }));
    assert_eq!(c.sync().await.len(), 1, "the session view, then the pong");
}

#[tokio::test]
async fn repeated_errors_close_with_4400() {
    let ts = TestServer::start(|c| c.max_errors_per_connection = 5).await;
    let mut c = WsClient::connect(ts.server.addr()).await;
    for _ in 0..5 {
        c.send_text("nope".into()).await;
    }
    assert_eq!(c.closed().await, CloseCode::ProtocolAbuse.code());
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_and_others_are_unaffected() {
    let ts = TestServer::start(|c| {
        c.rate_limit_msgs_per_sec = 5;
        c.rate_limit_burst = 10;
        c.rate_limit_strikes = 20;
    })
    .await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let mut b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    for i in 0..200 {
        if !b
            .c
            .send_raw(Message::text(
                json!({"type": "relay", "to": {"channel": "joint"}, "data": format!("f{i}")})
                    .to_string(),
            ))
            .await
        {
            break;
        }
    }
    let mut limited = 0;
    let code = loop {
        match b.c.next_event().await {
            Event::Msg(ServerMessage::Error { code, .. }) if code.as_str() == "rate_limited" => {
                limited += 1
            }
            Event::Msg(_) => {}
            Event::Closed(code, _) => break code,
            Event::Gone => break 1006,
        }
    };
    assert_eq!(code, CloseCode::RateLimited.code());
    assert!(limited >= 1);
    // A and the mediator got at most the burst, and the session works for them.
    relay(&mut a, json!({"channel": "joint"}), "after-flood").await;
    loop {
        let (_, _, data) = next_relayed(&mut m.c).await;
        if data == "after-flood" {
            break;
        }
        assert!(data.starts_with('f'));
    }
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_closes_only_that_connection() {
    let ts = TestServer::start(|c| c.max_frame_bytes = 1024).await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let (mut evil, _) = ts.join(Role::Mediator, None).await;
    let _ = evil.send_raw(Message::text("x".repeat(64 * 1024))).await;
    assert_eq!(evil.closed().await, 1009, "message too big");
    relay(&mut a, json!({"channel": "joint"}), "fine").await;
    assert_eq!(next_relayed(&mut m.c).await.2, "fine");
}

#[tokio::test]
async fn invalid_expired_and_reused_tokens_get_unauthorized_and_4401() {
    let ts = TestServer::start(|_| {}).await;
    let _m = mediator(&ts).await;
    let forged = {
        let other = confer_server::token::Tokens::new(&[9; 32]);
        other.invite(&ts.session, Role::Mediator, None, 60).0
    };
    let expired = {
        let tokens =
            confer_server::token::Tokens::load_or_create(&ts.server.config().signing_key_path())
                .unwrap();
        let claims = Claims {
            session: ts.session.clone(),
            role: Role::Party,
            side: Some(Side::A),
            exp: confer_server::token::unix_now() - 5,
            jti: "j".into(),
            kind: TokenKind::Invite,
            pid: None,
        };
        tokens.mint(&claims)
    };
    let used = ts.invite(Role::Party, Some(Side::B));
    let (_first_use, w) = WsClient::join(ts.server.addr(), &used).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }));
    for token in [
        forged.as_str(),
        expired.as_str(),
        used.as_str(),
        "garbage",
        "",
    ] {
        let (mut c, first) = WsClient::join(ts.server.addr(), token).await;
        assert_eq!(error_code(&first), "unauthorized");
        assert_eq!(c.closed().await, 4401);
    }
}

#[tokio::test]
async fn no_hello_in_time_closes_with_4408() {
    let ts = TestServer::start(|c| c.hello_timeout_secs = 1).await;
    let mut c = WsClient::connect(ts.server.addr()).await;
    assert_eq!(c.closed().await, CloseCode::HelloTimeout.code());
}

#[tokio::test]
async fn a_member_that_stops_reading_is_dropped_and_then_removed_like_any_lost_connection() {
    let ts = TestServer::start(|c| {
        c.resume_grace_secs = 1;
        c.rate_limit_msgs_per_sec = 100_000;
        c.rate_limit_burst = 100_000;
        // The flood is 90 MB: far over the default byte budget.
        c.rate_limit_bytes_per_sec = u32::MAX;
        c.rate_limit_burst_bytes = u32::MAX;
    })
    .await;
    let mut m = mediator(&ts).await;
    let mut a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    let b = admitted(&ts, &mut m, Role::Party, Some(Side::B)).await;
    // The mediator steps out to A's caucus so that only B receives the flood.
    m.c.send(json!({"type": "move", "participant_id": m.id.as_str(), "channel_id": "caucus-A"}))
        .await;
    m.c.recv_until(|x| channel_of(x) == Some(confer_proto::ChannelId::caucus(Side::A)))
        .await;
    // B never reads again. A floods the joint channel until B's queue overflows.
    let big = "x".repeat(60_000);
    for _ in 0..1500 {
        a.c.send(json!({"type": "relay", "to": {"channel": "joint"}, "data": big}))
            .await;
    }
    let left = m
        .c
        .recv_until(|x| matches!(x, ServerMessage::ParticipantLeft { participant_id, .. } if *participant_id == b.id))
        .await;
    assert!(matches!(
        left,
        ServerMessage::ParticipantLeft {
            reason: confer_proto::LeaveReason::Timeout,
            ..
        }
    ));
    // A and the mediator carry on.
    relay(&mut a, json!({"participant": m.id.as_str()}), "still here").await;
    loop {
        let (_, _, data) = next_relayed(&mut m.c).await;
        if data == "still here" {
            break;
        }
    }
    drop(b);
}

/// Unsigned tokens and tokens of the wrong kind: each gets `unauthorized` and 4401, and lets
/// nobody in or back. (Algorithms and edits are unit-tested in the server's `token.rs`.)
#[tokio::test]
async fn alg_none_and_tokens_of_the_wrong_kind_get_unauthorized_and_4401() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let unb64 = |s: &str| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap();
        String::from_utf8(bytes).unwrap()
    };
    let ts = TestServer::start(|_| {}).await;
    let mut m = mediator(&ts).await;
    let a = admitted(&ts, &mut m, Role::Party, Some(Side::A)).await;
    // B joins with an invite we keep, then its connection drops: B may resume, within grace.
    let b_invite = ts.invite(Role::Party, Some(Side::B));
    let (b, w) = WsClient::join(ts.server.addr(), &b_invite).await;
    let (b_id, b_resume) = welcome(&w);
    b.kill();
    m.c.recv_until(|x| matches!(x, ServerMessage::Session { session } if session.waiting.iter().any(|p| p.participant_id == b_id && !p.connected)))
        .await;
    m.c.sync().await;

    let key = confer_server::token::Tokens::load_or_create(&ts.server.config().signing_key_path())
        .unwrap();
    let claims = |session: &confer_proto::SessionId, kind, pid: Option<&ParticipantId>| Claims {
        session: session.clone(),
        role: if pid.is_some() {
            Role::Party
        } else {
            Role::Mediator
        },
        side: pid.map(|_| Side::A),
        exp: confer_server::token::unix_now() + 600,
        jti: confer_server::token::random_id(),
        kind,
        pid: pid.cloned(),
    };
    let unsigned = |c: &Claims| {
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&serde_json::to_string(c).unwrap())
        )
    };
    let new_session = confer_proto::SessionId::new("s-never-started").unwrap();
    // A's resume token, relabelled an invite under its old signature.
    let relabelled = {
        let [h, p, s] = a.resume.split('.').collect::<Vec<_>>()[..] else {
            panic!("a JWT")
        };
        let from = format!(r#""kind":"resume","pid":"{}""#, a.id.as_str());
        let payload = unb64(p);
        assert!(payload.contains(&from), "{payload}");
        format!(
            "{h}.{}.{s}",
            b64(&payload.replace(&from, r#""kind":"invite""#))
        )
    };
    let cases = [
        // alg none: a mediator invite that would start a session, and a resume of A.
        (
            "alg none invite",
            unsigned(&claims(&new_session, TokenKind::Invite, None)),
        ),
        (
            "alg none resume",
            unsigned(&claims(&ts.session, TokenKind::Resume, Some(&a.id))),
        ),
        ("resume token relabelled as an invite", relabelled),
        // Signed with the server's own key, kind and participant at odds.
        (
            "invite naming a participant",
            key.mint(&claims(&ts.session, TokenKind::Invite, Some(&a.id))),
        ),
        (
            "resume token naming nobody",
            key.mint(&claims(&ts.session, TokenKind::Resume, None)),
        ),
        // B's spent invite, used to come back instead of B's resume token.
        ("invite used as a resume token", b_invite.clone()),
    ];
    for (what, token) in cases {
        let (mut c, first) = WsClient::join(ts.server.addr(), &token).await;
        assert_eq!(error_code(&first), "unauthorized", "{what}");
        assert_eq!(c.closed().await, 4401, "{what}");
    }
    // Nobody arrived, nobody came back, no session started.
    assert_eq!(m.c.sync().await, vec![]);
    assert_eq!(ts.server.session_count(), 1);
    // B's own resume token still brings B back: the refusals did not touch B.
    let (_b2, w) = WsClient::join(ts.server.addr(), &b_resume).await;
    assert!(
        matches!(&w, ServerMessage::Welcome { participant_id, resumed: true, .. } if *participant_id == b_id),
        "{w:?}"
    );

    // A resume token is never an invite: the mediator's, once the session ended, does not
    // start it again.
    m.c.send(json!({"type": "end"})).await;
    assert_eq!(m.c.closed().await, 4000);
    while ts.server.session_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (mut c, first) = WsClient::join(ts.server.addr(), &m.resume).await;
    assert_eq!(error_code(&first), "unauthorized");
    assert_eq!(c.closed().await, 4401);
    assert_eq!(ts.server.session_count(), 0);
}

/// A token pasted into a field of the wrong type does not come back in the error.
#[tokio::test]
async fn invalid_message_errors_do_not_echo_what_was_sent() {
    const SECRET: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.Sig-7f3a9c";
    let ts = TestServer::start(|_| {}).await;
    let mut c = WsClient::connect(ts.server.addr()).await;
    c.send(json!({"type": "hello", "version": SECRET, "token": "t"}))
        .await;
    let mut m = mediator(&ts).await;
    m.c.send(json!({"type": "create_invite", "role": SECRET}))
        .await;
    for (client, field) in [(&mut c, "`version`"), (&mut m.c, "`role`")] {
        let e = client
            .recv_until(|x| matches!(x, ServerMessage::Error { .. }))
            .await;
        let ServerMessage::Error { code, message, .. } = &e else {
            unreachable!()
        };
        assert_eq!(code.as_str(), "invalid_message");
        assert!(message.contains(field), "{message}");
        let frame = confer_proto::encode_server(&e);
        for part in SECRET.split('.') {
            assert!(!frame.contains(part), "{frame}");
        }
    }
}
