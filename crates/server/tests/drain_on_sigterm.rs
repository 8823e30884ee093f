//! SIGTERM drains: readiness goes false, newcomers are refused, sessions go on until they
//! end; a second SIGTERM exits at once.

mod common;

use common::*;
use confer_proto::ServerMessage;
use confer_testkit::ws::{WsClient, http_get};
use serde_json::json;

#[tokio::test]
async fn first_sigterm_drains_until_the_last_session_ends() {
    let dir = temp_dir("drain");
    let mut serve = Serve::start(&dir).await;
    assert_eq!(http_get(serve.addr, "/readyz").await.0, 200);
    let (mut m, w) = WsClient::join(serve.addr, &serve.token("s1", "mediator", None)).await;
    assert!(matches!(w, ServerMessage::Welcome { .. }));

    serve.signal_term();
    m.recv_until(|x| *x == ServerMessage::Draining).await;
    assert_eq!(http_get(serve.addr, "/readyz").await.0, 503);
    assert_eq!(http_get(serve.addr, "/healthz").await.0, 200);
    // A newcomer is told to come back later.
    let (_p, first) = WsClient::join(serve.addr, &serve.token("s1", "party", Some("A"))).await;
    assert!(
        matches!(first, ServerMessage::Error { code, .. } if code.as_str() == "server_draining")
    );
    // The session goes on.
    m.send(json!({"type": "ping"})).await;
    m.recv_until(|x| *x == ServerMessage::Pong).await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "still running while a session lives"
    );

    m.send(json!({"type": "end"})).await;
    assert_eq!(m.closed().await, 4000);
    let (code, _) = serve.wait().await;
    assert_eq!(code, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn second_sigterm_exits_with_sessions_still_open() {
    let dir = temp_dir("drain2");
    let serve = Serve::start(&dir).await;
    let (mut m, _) = WsClient::join(serve.addr, &serve.token("s1", "mediator", None)).await;
    serve.signal_term();
    m.recv_until(|x| *x == ServerMessage::Draining).await;
    serve.signal_term();
    let (code, _) = serve.wait().await;
    assert_eq!(code, 0);
    std::fs::remove_dir_all(dir).unwrap();
}
