//! An invite minted in a session (`create_invite`) opens that session only: once it has
//! ended, a new session under the same id does not take it. An invite from
//! `confer token create` carries no instance and opens whichever session of its id is live.

mod common;

use common::*;
use confer_proto::ServerMessage;
use confer_testkit::ws::WsClient;
use serde_json::json;

async fn mint(m: &mut WsClient, side: &str) -> String {
    m.send(json!({"type": "create_invite", "role": "party", "side": side}))
        .await;
    match m
        .recv_until(|x| matches!(x, ServerMessage::Invite { .. }))
        .await
    {
        ServerMessage::Invite { token, .. } => token,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn an_invite_from_an_ended_session_does_not_open_its_successor() {
    let dir = temp_dir("instance");
    let serve = Serve::start(&dir).await;
    let session = "s-reused";
    // Minted before either session exists: good for whichever is live when used.
    let cli_party = serve.token(session, "party", Some("A"));

    let (mut m1, _) = WsClient::join(serve.addr, &serve.token(session, "mediator", None)).await;
    let leftover = mint(&mut m1, "B").await;
    m1.send(json!({"type": "end"})).await;
    assert_eq!(m1.closed().await, 4000);

    let (mut m2, w) = WsClient::join(serve.addr, &serve.token(session, "mediator", None)).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");
    let (mut c, first) = WsClient::join(serve.addr, &leftover).await;
    assert!(
        matches!(&first, ServerMessage::Error { code, .. } if code.as_str() == "unauthorized"),
        "{first:?}"
    );
    assert_eq!(c.closed().await, 4401);

    // The controls: an invite of this session, and the CLI invite, are let in.
    let current = mint(&mut m2, "B").await;
    let (_b, w) = WsClient::join(serve.addr, &current).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");
    let (_a, w) = WsClient::join(serve.addr, &cli_party).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }), "{w:?}");

    m2.send(json!({"type": "end"})).await;
    assert_eq!(m2.closed().await, 4000);
    serve.signal_term();
    let (code, logs) = serve.wait().await;
    assert_eq!(code, 0);
    assert!(logs.contains("invite from an ended session"), "{logs}");
    std::fs::remove_dir_all(dir).unwrap();
}
