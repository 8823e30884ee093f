//! An invite (a mediator's included) used once is refused after a restart too: spent invite
//! ids live in `DATA_DIR/tokens.db`. Invites minted inside a session stay bound to that
//! instance of it, across the restart as well.

mod common;

use common::*;
use confer_proto::ServerMessage;
use confer_testkit::ws::WsClient;
use serde_json::json;

fn is_error(m: &ServerMessage, code: &str) -> bool {
    matches!(m, ServerMessage::Error { code: c, .. } if c.as_str() == code)
}

/// Says hello with `token` and expects `unauthorized`, then close 4401.
async fn refused(addr: std::net::SocketAddr, token: &str) {
    let (mut c, first) = WsClient::join(addr, token).await;
    assert!(is_error(&first, "unauthorized"), "{first:?}");
    assert_eq!(c.closed().await, 4401);
}

#[tokio::test]
async fn spent_invites_stay_spent_after_a_restart() {
    let dir = temp_dir("spent-restart");
    let serve = Serve::start(&dir).await;
    let session = "s-restart";
    let mediator = serve.token(session, "mediator", None);
    let party = serve.token(session, "party", Some("A"));
    let (mut m, w) = WsClient::join(serve.addr, &mediator).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");
    let (_a, w) = WsClient::join(serve.addr, &party).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");
    // Minted in this session, never used.
    m.send(json!({"type": "create_invite", "role": "party", "side": "B"}))
        .await;
    let ServerMessage::Invite { token: minted, .. } = m
        .recv_until(|x| matches!(x, ServerMessage::Invite { .. }))
        .await
    else {
        unreachable!()
    };
    // Used once, before the restart: refused in the same process.
    refused(serve.addr, &party).await;

    serve.signal_term();
    m.recv_until(|x| *x == ServerMessage::Draining).await;
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    assert!(dir.join("tokens.db").exists());

    let serve = Serve::start(&dir).await;
    // The spent mediator token would otherwise create the session afresh; the party's would
    // join it.
    refused(serve.addr, &mediator).await;
    let fresh = serve.token(session, "mediator", None);
    let (mut m2, w) = WsClient::join(serve.addr, &fresh).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");
    refused(serve.addr, &party).await;
    // Unused, but minted in the session that ended with the old process.
    refused(serve.addr, &minted).await;
    // The control: an unused invite of the live session is let in.
    let (_b, w) = WsClient::join(serve.addr, &serve.token(session, "party", Some("B"))).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");

    m2.send(json!({"type": "end"})).await;
    assert_eq!(m2.closed().await, 4000);
    serve.signal_term();
    let (code, logs) = serve.wait().await;
    assert_eq!(code, 0);
    assert_eq!(logs.matches("token already used").count(), 2, "{logs}");
    assert_eq!(
        logs.matches("invite from an ended session").count(),
        1,
        "{logs}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
