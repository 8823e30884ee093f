#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `doc_ack {sha256}` against the real binary: an admitted participant's acknowledgment of a
//! document version is one content-free audit row (`doc_acknowledged`, the hash as its
//! detail), written once however often it is repeated; a waiting participant gets `forbidden`
//! and writes nothing; a malformed hash is `invalid_message`, its value not echoed. The chain
//! still verifies.

mod common;
mod docs_common;
mod manual_server;

use common::{Serve, audit_events, run, temp_dir};
use confer_proto::ServerMessage;
use confer_testkit::ws::WsClient;
use docs_common::*;
use serde_json::json;

const VERSION: &str = "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7";

/// The next error the server sends this client: (code, in_reply_to).
async fn refusal(c: &mut WsClient) -> (String, Option<String>) {
    match c
        .recv_until(|m| matches!(m, ServerMessage::Error { .. }))
        .await
    {
        ServerMessage::Error {
            code,
            in_reply_to,
            message,
        } => {
            assert!(!message.contains("zz"), "{message}");
            (code.as_str().to_owned(), in_reply_to)
        }
        _ => unreachable!("matched above"),
    }
}

#[tokio::test]
async fn an_acknowledged_version_is_one_audit_row_with_its_hash() {
    let dir = temp_dir("doc-ack");
    let serve = Serve::start(&dir).await;
    let session = "s-doc-ack";
    let tokens = serve.trio(session);
    let mut r = admitted(serve.addr, tokens).await;

    for _ in 0..3 {
        r.a.send(json!({"type": "doc_ack", "sha256": VERSION}))
            .await;
    }
    r.b.send(json!({"type": "doc_ack", "sha256": VERSION}))
        .await;
    // The session answers a download on the same connection after the acks: they were taken.
    for c in [&mut r.a, &mut r.b] {
        let unknown = random_doc_id();
        assert_eq!(ask(c, download(&unknown)).await.unwrap_err().0, "not_found");
    }

    // Malformed: refused by the connection, the value not echoed.
    r.a.send(json!({"type": "doc_ack", "sha256": "zz".repeat(32)}))
        .await;
    assert_eq!(refusal(&mut r.a).await, ("invalid_message".into(), None));

    // The waiting room holds no document: forbidden, nothing written.
    let waiting = serve.token(session, "counsel", Some("A"));
    let (mut w, welcome) = WsClient::join(serve.addr, &waiting).await;
    let w_id = pid(&welcome);
    w.send(json!({"type": "doc_ack", "sha256": VERSION})).await;
    assert_eq!(
        refusal(&mut w).await,
        ("forbidden".into(), Some("doc_ack".into()))
    );

    r.m.send(json!({"type": "end"})).await;
    assert_eq!(r.a.closed().await, 4000);
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);

    let d = dir.to_str().unwrap();
    let mut acks: Vec<(String, String, String)> = audit_events(&dir, session)
        .iter()
        .filter(|e| e["event"] == confer_server::audit::DOC_ACKNOWLEDGED)
        .map(|e| {
            (
                e["participant"].as_str().unwrap().to_owned(),
                e["role"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // A and B acknowledge on their own connections: the rows' order is the order they arrived.
    acks.sort();
    let mut want: Vec<(String, String, String)> = vec![
        (r.a_id.as_str().to_owned(), "party".into(), VERSION.into()),
        (r.b_id.as_str().to_owned(), "party".into(), VERSION.into()),
    ];
    want.sort();
    assert_eq!(acks, want);
    assert!(acks.iter().all(|(p, _, _)| p != w_id.as_str()));
    let (code, out, err) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("audit log intact"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
