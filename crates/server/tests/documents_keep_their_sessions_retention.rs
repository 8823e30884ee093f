#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Each session keeps its documents as long as its mediator chose when starting it in the
//! console (`docs_retention_hours` in the start request: `0` until the session ends, `N`
//! hours), never longer than `docs_max_retention_hours`. Two live sessions with different
//! retentions: moving the server's clock past the shorter one deletes only that session's
//! document; "until the session ends" is still capped by the maximum.

mod console_common;
mod docs_common;
mod manual_server;

use confer_server::accounts::AccountRole;
use confer_testkit::ws::WsClient;
use console_common::{Browser, Console, PASSWORD};
use docs_common::{ask, files_under, put, random_doc_id, sealed_chunks, upload};
use serde_json::json;

/// Starts a session with this retention choice, opens it as its mediator and shares one
/// document there: (session id, the mediator's connection).
async fn session_with_a_document(c: &Console, b: &mut Browser, hours: u64) -> (String, WsClient) {
    let r = b
        .post(
            "/console/api/sessions",
            json!({ "docs_retention_hours": hours }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let token = r.json()["link"].as_str().unwrap()[8..].to_owned();
    let (mut m, _) = WsClient::join(c.addr(), &token).await;
    let doc = random_doc_id();
    let up = ask(&mut m, upload(&doc, 100)).await.unwrap();
    let chunk = &sealed_chunks(100)[0];
    assert_eq!(put(c.addr(), &doc, 0, &up.token, chunk).await.status, 201);
    (id, m)
}

#[tokio::test]
async fn only_the_shorter_retentions_documents_are_deleted() {
    let c = Console::start("docs-session-retention", |config| {
        config.docs_retention_hours = 24;
        config.docs_max_retention_hours = 7 * 24;
    })
    .await;
    let (secret, _) = c.enrolled("olga", AccountRole::Mediator).await;
    let mut b = c.browser();
    b.login("olga", PASSWORD, Some(&c.totp(&secret))).await;

    // Longer than the maximum: refused, nothing started.
    let r = b
        .post(
            "/console/api/sessions",
            json!({"docs_retention_hours": 169}),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "retention_not_allowed")
    );
    assert!(!r.body.contains("169"));
    let r = b
        .post("/console/api/sessions", json!({"docs_retention_hours": -1}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_request"));

    let (short, _m1) = session_with_a_document(&c, &mut b, 1).await;
    let (long, _m2) = session_with_a_document(&c, &mut b, 7 * 24).await;
    let (until_end, _m3) = session_with_a_document(&c, &mut b, 0).await;
    let list = b.get("/console/api/sessions").await.json();
    assert_eq!(
        list["docs_retention"],
        json!({"default_hours": 24, "max_hours": 168})
    );
    let hours: Vec<(String, u64)> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["docs_retention_hours"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hours,
        [
            (short.clone(), 1),
            (long.clone(), 168),
            (until_end.clone(), 0)
        ]
    );

    let docs = c.dir.join("docs");
    let held = |s: &str| files_under(&docs.join(s)).len();
    c.clock.advance(3600 - 1);
    assert_eq!(c.server.apply_document_retention().await, 0);
    c.clock.advance(1);
    assert_eq!(c.server.apply_document_retention().await, 1);
    assert_eq!((held(&short), held(&long), held(&until_end)), (0, 1, 1));

    // Seven days after sharing, the maximum: "until the session ends" is capped by it.
    c.clock.advance(167 * 3600);
    assert_eq!(c.server.apply_document_retention().await, 2);
    assert_eq!((held(&long), held(&until_end)), (0, 0));
}

#[tokio::test]
async fn a_session_started_without_a_choice_keeps_the_default() {
    let c = Console::start("docs-default-retention", |config| {
        config.docs_retention_hours = 2;
        config.docs_max_retention_hours = 48;
    })
    .await;
    let (secret, _) = c.enrolled("olga", AccountRole::Mediator).await;
    let mut b = c.browser();
    b.login("olga", PASSWORD, Some(&c.totp(&secret))).await;
    let r = b.post("/console/api/sessions", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = b.get("/console/api/sessions").await.json();
    assert_eq!(list["sessions"][0]["docs_retention_hours"], 2);
    let token = r.json()["link"].as_str().unwrap()[8..].to_owned();
    let (mut m, _) = WsClient::join(c.addr(), &token).await;
    let doc = random_doc_id();
    let up = ask(&mut m, upload(&doc, 10)).await.unwrap();
    assert_eq!(
        put(c.addr(), &doc, 0, &up.token, &[9; 26]).await.status,
        201
    );
    c.clock.advance(2 * 3600 - 1);
    assert_eq!(c.server.apply_document_retention().await, 0);
    c.clock.advance(1);
    assert_eq!(c.server.apply_document_retention().await, 1);
}
