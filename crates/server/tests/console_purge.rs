#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Purging a session from the console (`POST /console/api/sessions/{id}/purge`), on a real
//! accounts.db and data dir: only the account's own sessions (another account's is
//! `session_not_found`), CSRF as every console POST; a live session is ended as `end` ends it
//! (everyone connected gets `session_ended` and close 4000), then purged as `confer session
//! purge` does: its documents gone, a content-free `session_purged` row, the audit chain
//! intact. It leaves the console's list. A session not opened yet is purged too, and its
//! invite no longer opens it.

mod common;
mod console_common;
mod docs_common;
mod manual_server;

use common::audit_events;
use confer_proto::ServerMessage;
use confer_server::accounts::AccountRole;
use confer_testkit::ws::{Event, WsClient};
use console_common::{Browser, Console, PASSWORD};
use docs_common::{ask, files_under, put, random_doc_id, sealed_chunks, upload};
use serde_json::json;

async fn logged_in(c: &Console, name: &str) -> Browser {
    let (secret, _) = c.enrolled(name, AccountRole::Mediator).await;
    let mut b = c.browser();
    let r = b.login(name, PASSWORD, Some(&c.totp(&secret))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    b
}

/// (id, mediator invite token) of a session started in the console.
async fn start(b: &mut Browser) -> (String, String) {
    let r = b.post("/console/api/sessions", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["link"]
        .as_str()
        .unwrap()
        .strip_prefix("/join#t=")
        .unwrap()
        .to_owned();
    (r.json()["id"].as_str().unwrap().to_owned(), token)
}

async fn listed(b: &mut Browser) -> Vec<String> {
    b.get("/console/api/sessions").await.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether `session_ended` came before the close, and the close code.
async fn end_seen(c: &mut WsClient) -> (bool, u16) {
    let mut told = false;
    loop {
        match c.next_event().await {
            Event::Msg(ServerMessage::SessionEnded) => told = true,
            Event::Msg(_) => {}
            Event::Closed(code, _) => return (told, code),
            Event::Gone => return (told, 1006),
        }
    }
}

#[tokio::test]
async fn a_mediator_purges_its_live_session_and_only_its_own() {
    let c = Console::start("console-purge", |_| {}).await;
    let mut olga = logged_in(&c, "olga").await;
    let mut pat = logged_in(&c, "pat").await;
    let (id, token) = start(&mut olga).await;

    // The session runs: the mediator shares a document, a party waits.
    let (mut m, _) = WsClient::join(c.addr(), &token).await;
    let doc = random_doc_id();
    let up = ask(&mut m, upload(&doc, 70_000)).await.unwrap();
    for (i, chunk) in sealed_chunks(70_000).iter().enumerate() {
        let i = u32::try_from(i).unwrap();
        assert_eq!(put(c.addr(), &doc, i, &up.token, chunk).await.status, 201);
    }
    m.send(json!({"type": "create_invite", "role": "party", "side": "A"}))
        .await;
    let ServerMessage::Invite { token: party, .. } = m
        .recv_until(|x| matches!(x, ServerMessage::Invite { .. }))
        .await
    else {
        unreachable!("matched above")
    };
    let (mut a, _) = WsClient::join(c.addr(), &party).await;
    let docs = c.dir.join("docs").join(&id);
    assert_eq!(files_under(&docs).len(), 2);
    let path = format!("/console/api/sessions/{id}/purge");

    // Another account: refused, as if there were no such session.
    let r = pat.post(&path, json!({})).await;
    assert_eq!((r.status, r.code().as_str()), (404, "session_not_found"));
    assert!(!r.body.contains(&id), "the refusal does not echo the id");
    // Without the CSRF token, or from another origin: refused.
    let csrf = olga.csrf.take();
    let r = olga.post(&path, json!({})).await;
    assert_eq!((r.status, r.code().as_str()), (403, "csrf_failed"));
    olga.csrf = csrf;
    olga.origin = Some("http://evil.example".into());
    let r = olga.post(&path, json!({})).await;
    assert_eq!((r.status, r.code().as_str()), (403, "csrf_failed"));
    olga.origin = Some(format!("http://{}", c.addr()));
    // None of these touched it.
    m.sync().await;
    assert_eq!(files_under(&docs).len(), 2);
    assert_eq!(listed(&mut olga).await, std::slice::from_ref(&id));

    // Its mediator purges it: ended for everyone in it, through the ordinary end.
    let r = olga.post(&path, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["files_removed"], 0, "the end deleted them already");
    assert_eq!(end_seen(&mut m).await, (true, 4000));
    assert_eq!(end_seen(&mut a).await, (true, 4000));
    assert!(!docs.exists(), "{:?}", files_under(&docs));
    assert_eq!(c.server.session_count(), 0);
    assert!(listed(&mut olga).await.is_empty(), "it left the list");
    let r = olga.post(&path, json!({})).await;
    assert_eq!((r.status, r.code().as_str()), (404, "session_not_found"));
    let r = olga
        .post("/console/api/sessions/..%2Fdocs/purge", json!({}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "session_not_found"));

    c.server.flush_audit().await.unwrap();
    let events = audit_events(&c.dir, &id);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names.last(), Some(&"session_purged"), "{names:?}");
    assert!(names.contains(&"session_ended"), "{names:?}");
    let purged = events.last().unwrap();
    assert!(purged["participant"].is_null() && purged["detail"].is_null());
    let (code, out, err) = common::run(&[
        "audit",
        "verify",
        "--dev",
        "--data-dir",
        c.dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_session_not_opened_yet_is_purged_and_its_invite_never_opens_it() {
    let c = Console::start("console-purge-unopened", |_| {}).await;
    let mut olga = logged_in(&c, "olga").await;
    let (id, token) = start(&mut olga).await;
    let r = olga
        .post(&format!("/console/api/sessions/{id}/purge"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["files_removed"], 0);
    assert!(listed(&mut olga).await.is_empty());

    let (mut m, first) = WsClient::join(c.addr(), &token).await;
    assert!(
        matches!(&first, ServerMessage::Error { code, .. } if code.as_str() == "unauthorized"),
        "{first:?}"
    );
    assert_eq!(m.closed().await, 4401);
    assert_eq!(c.server.session_count(), 0);
    c.server.flush_audit().await.unwrap();
    let names: Vec<String> = audit_events(&c.dir, &id)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["session_purged"]);
}
