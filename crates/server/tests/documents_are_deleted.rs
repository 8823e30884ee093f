#![allow(clippy::unwrap_used, clippy::expect_used)]

//! A session's documents do not outlive it: they are deleted when it ends (before the server
//! forgets the session), and `docs_retention_hours` after they were shared even while it goes
//! on (time moved on the server's clock, the sweep run at once). A ticket of a deleted
//! document writes nothing back. A new server start deletes what an earlier process left.

mod docs_common;
mod manual_server;

use confer_server::clock::Clock;
use confer_server::{Config, Server};
use docs_common::*;

async fn shared(d: &Docs, r: &mut Room, size: u64) -> (String, Ticket) {
    let doc = random_doc_id();
    let up = ask(&mut r.a, upload(&doc, size)).await.unwrap();
    for (i, chunk) in sealed_chunks(size).iter().enumerate() {
        let i = u32::try_from(i).unwrap();
        assert_eq!(put(d.addr(), &doc, i, &up.token, chunk).await.status, 201);
    }
    (doc, up)
}

#[tokio::test]
async fn the_end_of_the_session_deletes_its_documents() {
    let d = Docs::start("docs-end", |_| {}).await;
    let mut r = d.session("s-end").await;
    let (doc, up) = shared(&d, &mut r, 70_000).await;
    let down = ask(&mut r.b, download(&doc)).await.unwrap();
    assert_eq!(d.stored().len(), 2);

    r.m.send(serde_json::json!({"type": "end"})).await;
    for c in [&mut r.m, &mut r.a, &mut r.b] {
        assert_eq!(c.closed().await, 4000);
    }
    // The ended session leaves the registry only after its documents are gone.
    d.server.drained().await;
    assert!(
        !d.dir.join("docs").join("s-end").exists(),
        "{:?}",
        d.stored()
    );
    // Its tickets are still signed and unexpired, but there is nothing to write into.
    let late = put(d.addr(), &doc, 1, &up.token, &[1; 20]).await;
    assert_eq!((late.status, late.code().as_str()), (404, "doc_not_found"));
    assert_eq!(
        get(d.addr(), &doc, 0, &down.token).await.code(),
        "doc_not_found"
    );
    assert!(d.stored().is_empty(), "{:?}", d.stored());
}

#[tokio::test]
async fn retention_deletes_documents_while_the_session_goes_on() {
    let d = Docs::start("docs-retention", |c| c.docs_retention_hours = 2).await;
    let mut r = d.session("s-retention").await;
    let (old, _) = shared(&d, &mut r, 100).await;
    d.clock.advance(3600);
    let (young, _) = shared(&d, &mut r, 100).await;

    d.clock.advance(3599);
    assert_eq!(d.server.apply_document_retention().await, 0);
    assert_eq!(d.stored().len(), 2);
    d.clock.advance(1);
    assert_eq!(d.server.apply_document_retention().await, 1);
    let left = d.stored();
    assert_eq!(left.len(), 1);
    assert!(left[0].to_str().unwrap().contains(&young), "{left:?}");
    assert_eq!(
        ask(&mut r.b, download(&old)).await.unwrap_err().0,
        "not_found"
    );
    let down = ask(&mut r.b, download(&young)).await.unwrap();
    assert_eq!(get(d.addr(), &young, 0, &down.token).await.status, 200);

    d.clock.advance(3600);
    assert_eq!(d.server.apply_document_retention().await, 1);
    assert!(d.stored().is_empty());
    // The session goes on, and may share again.
    shared(&d, &mut r, 100).await;
    assert_eq!(d.stored().len(), 1);
}

#[tokio::test]
async fn a_new_start_deletes_what_an_earlier_process_left() {
    let d = Docs::start("docs-restart", |_| {}).await;
    let mut r = d.session("s-restart").await;
    shared(&d, &mut r, 100).await;
    assert_eq!(d.stored().len(), 1);
    // Another server over the same data directory (the first one "crashed" for the files'
    // sake: its sessions are gone with its process).
    let mut config = Config::dev(d.dir.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.media_enabled = false;
    let _second = Server::start_with_clock(config, Clock::manual(T0))
        .await
        .unwrap();
    assert!(d.stored().is_empty(), "{:?}", d.stored());
}
