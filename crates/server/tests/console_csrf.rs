#![allow(clippy::unwrap_used, clippy::expect_used)]

//! CSRF: every state-changing console call needs the double-submit token (the `X-Confer-Csrf`
//! header equal to the `confer_csrf` cookie), a JSON body, and, when an Origin is sent, the
//! server's own origin; otherwise 403 `csrf_failed`, and nothing happens.

mod console_common;
mod manual_server;

use confer_server::accounts::AccountRole;
use console_common::*;
use serde_json::json;

#[tokio::test]
async fn posts_without_the_token_or_from_another_origin_are_refused() {
    let c = Console::start("csrf", |_| {}).await;
    let (secret, _) = c.enrolled("ned", AccountRole::Mediator).await;
    let mut b = c.browser();
    assert_eq!(
        b.login("ned", PASSWORD, Some(&c.totp(&secret)))
            .await
            .status,
        200
    );
    let good = b.csrf.clone().unwrap();

    let refused = |r: &Reply, what: &str| {
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "csrf_failed"),
            "{what}: {}",
            r.body
        );
        assert!(!r.body.contains(&good), "{what}: the token is echoed");
    };
    // No header.
    b.csrf = None;
    let r = b.post("/console/api/sessions", json!({})).await;
    refused(&r, "no header");
    // A wrong token.
    b.csrf = Some("A".repeat(43));
    refused(
        &b.post("/console/api/sessions", json!({})).await,
        "wrong token",
    );
    // The right header but no cookie (another site's page cannot send the cookie... nor read it).
    b.csrf = Some(good.clone());
    let cookie = b.cookies.remove("confer_csrf").unwrap();
    refused(
        &b.post("/console/api/sessions", json!({})).await,
        "no cookie",
    );
    b.cookies.insert("confer_csrf".into(), cookie);
    // Another origin, with everything else right.
    b.origin = Some("http://evil.example".into());
    refused(
        &b.post("/console/api/sessions", json!({})).await,
        "other origin",
    );
    refused(
        &b.post("/console/api/logout", json!({})).await,
        "other origin",
    );
    b.origin = Some("null".into());
    refused(
        &b.post("/console/api/sessions", json!({})).await,
        "null origin",
    );
    b.origin = Some(format!("http://{}", c.addr()));
    // A form's content type.
    let r = b
        .request(
            "POST",
            "/console/api/sessions",
            Some("{}".into()),
            &[
                ("Content-Type".into(), "text/plain".into()),
                ("X-Confer-Csrf".into(), good.clone()),
            ],
        )
        .await;
    refused(&r, "text/plain");
    // The login itself, and enrolment, are covered too.
    let mut stranger = Browser::new(c.addr());
    let r = stranger
        .post(
            "/console/api/login",
            json!({"name": "ned", "password": PASSWORD}),
        )
        .await;
    refused(&r, "login without a token");
    let r = stranger
        .post("/console/api/enrol/start", json!({"token": "x"}))
        .await;
    refused(&r, "enrolment without a token");

    // Nothing happened: no session was started, the login still stands.
    let list = b.get("/console/api/sessions").await;
    assert_eq!(list.json()["sessions"], json!([]));
    // With everything right it works (and without an Origin, as a non-browser client sends).
    assert_eq!(b.post("/console/api/sessions", json!({})).await.status, 200);
    b.origin = None;
    assert_eq!(b.post("/console/api/sessions", json!({})).await.status, 200);
    assert_eq!(b.post("/console/api/logout", json!({})).await.status, 200);
}
