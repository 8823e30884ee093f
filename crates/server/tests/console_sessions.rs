#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The console's sessions: a logged-in mediator starts one and gets its mediator invite, which
//! joins as the mediator over the ordinary confer/1 signalling and names no account; the list
//! shows it not opened, then live, then drops it when it ends. A co-mediator's account, and
//! nobody logged in, start none.

mod console_common;
mod manual_server;

use base64::Engine as _;
use confer_proto::{Role, ServerMessage};
use confer_server::accounts::AccountRole;
use confer_testkit::ws::WsClient;
use console_common::*;
use serde_json::json;

#[tokio::test]
async fn a_mediator_starts_a_session_and_its_invite_joins_as_the_mediator() {
    let c = Console::start("console-sessions", |_| {}).await;
    let (secret, _) = c.enrolled("olga@example.org", AccountRole::Mediator).await;
    let mut b = c.browser();
    assert_eq!(
        b.login("olga@example.org", PASSWORD, Some(&c.totp(&secret)))
            .await
            .status,
        200
    );

    let r = b.post("/console/api/sessions", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let link = r.json()["link"].as_str().unwrap().to_owned();
    let token = link
        .strip_prefix("/join#t=")
        .expect("a link to the mediator page")
        .to_owned();
    let list = b.get("/console/api/sessions").await.json();
    assert_eq!(list["sessions"][0]["id"], id.as_str());
    assert_eq!(list["sessions"][0]["state"], "not_opened");

    // The account is an HTTP credential only: the invite's claims name no account.
    let payload = token.split('.').nth(1).unwrap();
    let claims = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(!claims.contains("olga"), "{claims}");

    let (mut m, welcome) = WsClient::join(c.addr(), &token).await;
    match &welcome {
        ServerMessage::Welcome {
            role, session_id, ..
        } => {
            assert_eq!(*role, Role::Mediator);
            assert_eq!(session_id.as_str(), id);
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    let list = b.get("/console/api/sessions").await.json();
    assert_eq!(list["sessions"][0]["state"], "live");

    m.send(json!({"type": "end"})).await;
    assert_eq!(m.closed().await, 4000);
    // Ended: gone from the list (the invite is spent and the session is not live).
    c.server.drained().await;
    let list = b.get("/console/api/sessions").await.json();
    assert_eq!(
        list["sessions"],
        json!([]),
        "the ended session left the list"
    );

    // Another session; unopened, it stays listed.
    assert_eq!(b.post("/console/api/sessions", json!({})).await.status, 200);
    let list = b.get("/console/api/sessions").await.json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn co_mediators_and_strangers_start_no_session() {
    let c = Console::start("console-roles", |_| {}).await;
    let (secret, _) = c.enrolled("pat", AccountRole::CoMediator).await;
    let mut b = c.browser();
    let r = b.login("pat", PASSWORD, Some(&c.totp(&secret))).await;
    assert_eq!(r.json()["account"]["role"], "co_mediator");
    let r = b.post("/console/api/sessions", json!({})).await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden_role"));

    let mut s = c.browser();
    s.me().await;
    let r = s.post("/console/api/sessions", json!({})).await;
    assert_eq!((r.status, r.code().as_str()), (401, "not_logged_in"));
    // A forged session cookie is nobody.
    s.cookies.insert("confer_session".into(), "A".repeat(43));
    assert_eq!(s.get("/console/api/sessions").await.code(), "not_logged_in");
}
