#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Who gets a document ticket: admitted participants of the document's session instance. The
//! waiting room gets `forbidden` for uploads and downloads alike; a participant of another
//! session gets `not_found` for this one's documents, and its tickets open none of them.

mod docs_common;
mod manual_server;

use confer_proto::{Role, ServerMessage, Side};
use confer_testkit::ws::WsClient;
use docs_common::*;

#[tokio::test]
async fn the_waiting_room_gets_no_ticket() {
    let d = Docs::start("docs-waiting", |_| {}).await;
    let mut r = d.session("s-wait").await;
    let doc = random_doc_id();
    let up = ask(&mut r.a, upload(&doc, 10)).await.unwrap();
    assert_eq!(
        put(d.addr(), &doc, 0, &up.token, &[7; 26]).await.status,
        201
    );

    // Counsel for A arrives and waits (consent sent, not admitted).
    let (mut w, _) =
        WsClient::join(d.addr(), &d.invite("s-wait", Role::Counsel, Some(Side::A))).await;
    w.send(serde_json::json!({"type": "consent", "agreement_hash": HASH}))
        .await;
    assert_eq!(w.recv().await, ServerMessage::ConsentRecorded);
    assert_eq!(
        ask(&mut w, download(&doc)).await.unwrap_err(),
        ("forbidden".into(), Some("doc_download".into()))
    );
    let other = random_doc_id();
    assert_eq!(
        ask(&mut w, upload(&other, 10)).await.unwrap_err(),
        ("forbidden".into(), Some("doc_upload".into()))
    );
    // Refusals are the session's decisions: the connection stays, and nothing was noted.
    w.sync().await;
    assert_eq!(
        ask(&mut r.b, download(&other)).await.unwrap_err().0,
        "not_found"
    );
    assert_eq!(d.stored().len(), 1);
}

#[tokio::test]
async fn another_session_gets_nothing_of_this_ones_documents() {
    let d = Docs::start("docs-other-session", |_| {}).await;
    let mut one = d.session("s-one").await;
    let mut two = d.session("s-two").await;
    let doc = random_doc_id();
    let up = ask(&mut one.a, upload(&doc, 100)).await.unwrap();
    let sealed = random_bytes(116);
    assert_eq!(put(d.addr(), &doc, 0, &up.token, &sealed).await.status, 201);

    // Session two's participants: no ticket for session one's document.
    for c in [&mut two.a, &mut two.b, &mut two.m] {
        assert_eq!(
            ask(c, download(&doc)).await.unwrap_err(),
            ("not_found".into(), Some("doc_download".into()))
        );
    }
    // The same document id declared in session two is another document, in another folder:
    // its ticket neither reads session one's chunk nor replaces it.
    let theirs = ask(&mut two.a, upload(&doc, 100)).await.unwrap();
    let down2 = ask(&mut two.b, download(&doc)).await.unwrap();
    assert_eq!(
        get(d.addr(), &doc, 0, &down2.token).await.code(),
        "chunk_not_found"
    );
    let other = random_bytes(116);
    assert_eq!(
        put(d.addr(), &doc, 0, &theirs.token, &other).await.status,
        201
    );
    let down1 = ask(&mut one.b, download(&doc)).await.unwrap();
    assert_eq!(get(d.addr(), &doc, 0, &down1.token).await.body, sealed);
    assert_eq!(get(d.addr(), &doc, 0, &down2.token).await.body, other);
    let stored = d.stored();
    assert_eq!(stored.len(), 2);
    assert!(
        stored[0].starts_with("s-one") && stored[1].starts_with("s-two"),
        "{stored:?}"
    );
}
