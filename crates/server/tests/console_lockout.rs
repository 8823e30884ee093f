#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Login lockout: five failures of one name lock it for 15 minutes (the right password and code
//! included), whether or not the name has an account, wrong second factors count too, and the
//! lock ends when the (manual) clock has moved 15 minutes; twenty failures from one address lock
//! the address for every name.

mod console_common;
mod manual_server;

use confer_server::accounts::AccountRole;
use console_common::*;
use serde_json::json;

#[tokio::test]
async fn five_wrong_passwords_lock_the_name_for_fifteen_minutes() {
    let c = Console::start("lockout-name", |_| {}).await;
    let (secret, _) = c.enrolled("kim", AccountRole::Mediator).await;
    let mut b = c.browser();
    for _ in 0..5 {
        assert_eq!(
            b.login("kim", "not the password", None).await.code(),
            "login_failed"
        );
    }
    // Locked: the right password is refused before it is checked.
    let r = b.login("kim", PASSWORD, None).await;
    assert_eq!((r.status, r.code().as_str()), (429, "login_locked"));
    assert_eq!(r.header("retry-after"), Some("900"));
    assert!(!b.has("confer_login"));

    // A name without an account locks the same way: a lock tells nothing about accounts.
    let mut n = c.browser();
    for _ in 0..5 {
        assert_eq!(
            n.login("nobody", "whatever it is", None).await.code(),
            "login_failed"
        );
    }
    let r = n.login("nobody", "whatever it is", None).await;
    assert_eq!((r.status, r.code().as_str()), (429, "login_locked"));

    c.clock.advance(899);
    assert_eq!(b.login("kim", PASSWORD, None).await.code(), "login_locked");
    assert_eq!(
        b.login("kim", PASSWORD, None).await.header("retry-after"),
        Some("1")
    );
    c.clock.advance(1);
    let r = b.login("kim", PASSWORD, Some(&c.totp(&secret))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(b.has("confer_session"));
}

#[tokio::test]
async fn wrong_second_factors_count_and_a_success_clears_the_count() {
    let c = Console::start("lockout-totp", |_| {}).await;
    let (secret, _) = c.enrolled("lou", AccountRole::Mediator).await;
    let mut b = c.browser();
    // Four failures, then a success: the count starts again.
    for _ in 0..4 {
        assert_eq!(
            b.login("lou", "wrong password", None).await.code(),
            "login_failed"
        );
    }
    assert_eq!(
        b.login("lou", PASSWORD, Some(&c.totp(&secret)))
            .await
            .status,
        200
    );
    c.clock.advance(30);
    for _ in 0..4 {
        assert_eq!(
            b.login("lou", "wrong password", None).await.code(),
            "login_failed"
        );
    }
    // The password is right, the codes are not: the fifth failure locks.
    let mut b = c.browser();
    assert_eq!(
        b.login("lou", PASSWORD, None).await.json()["next"],
        "second_factor"
    );
    let r = b
        .post(
            "/console/api/login/second-factor",
            json!({"code": "000000"}),
        )
        .await;
    assert_eq!(r.code(), "second_factor_failed");
    let r = b
        .post(
            "/console/api/login/second-factor",
            json!({"code": c.totp(&secret)}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (429, "login_locked"));
    assert!(!b.has("confer_session"));
}

#[tokio::test]
async fn twenty_failures_from_one_address_lock_it_for_every_name() {
    let c = Console::start("lockout-address", |_| {}).await;
    let (secret, _) = c.enrolled("max", AccountRole::Mediator).await;
    let mut b = c.browser();
    for i in 0..20 {
        // Four names, five tries each would lock each name; spread over twenty names instead.
        let r = b.login(&format!("guess{i}"), "password123456", None).await;
        assert_eq!(r.code(), "login_failed", "{i}");
    }
    let r = b.login("max", PASSWORD, None).await;
    assert_eq!((r.status, r.code().as_str()), (429, "login_locked"));
    c.clock.advance(900);
    let r = b.login("max", PASSWORD, Some(&c.totp(&secret))).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
