#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Console logins against a real server and a real accounts.db: the password and then a TOTP
//! code; a password alone where TOTP is not required; a wrong code; a recovery code, once; one
//! answer for unknown names, wrong passwords, unenrolled and disabled accounts; the session
//! cookie's flags.

mod console_common;
mod manual_server;

use confer_server::accounts::{AccountRole, Name};
use console_common::*;
use serde_json::json;

#[tokio::test]
async fn a_login_needs_the_password_and_then_a_totp_code() {
    let c = Console::start("login-totp", |_| {}).await;
    let (secret, _) = c.enrolled("ann", AccountRole::Mediator).await;
    let mut b = c.browser();

    let first = b.login("ann", PASSWORD, None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["next"], "second_factor");
    assert!(
        !b.has("confer_session"),
        "no session before the second factor"
    );
    assert!(b.has("confer_login"));
    assert_eq!(b.get("/console/api/sessions").await.code(), "not_logged_in");

    // A wrong code, then a code of long ago: refused, the login step stays open.
    for wrong in ["000000".to_owned(), accounts_code_at(&secret, T0 - 3600)] {
        let r = b
            .post("/console/api/login/second-factor", json!({ "code": wrong }))
            .await;
        assert_eq!((r.status, r.code().as_str()), (401, "second_factor_failed"));
    }
    assert!(!b.has("confer_session"));

    let code = c.totp(&secret);
    let r = b
        .post("/console/api/login/second-factor", json!({ "code": code }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["account"],
        json!({"name": "ann", "role": "mediator"})
    );
    assert!(b.has("confer_session"));
    assert!(!b.has("confer_login"), "the login step's cookie is cleared");
    assert_eq!(b.me().await.json()["account"]["name"], "ann");
    assert_eq!(b.get("/console/api/sessions").await.status, 200);

    // The same code does not log in a second browser (a code works once).
    let mut other = c.browser();
    let r = other.login("ann", PASSWORD, Some(&code)).await;
    assert_eq!(r.code(), "second_factor_failed");
    // The next step's code does.
    c.clock.advance(30);
    let r = other.login("ANN", PASSWORD, Some(&c.totp(&secret))).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Logging out ends the session server-side, not only in the browser.
    let cookie = b.cookies["confer_session"].clone();
    assert_eq!(b.post("/console/api/logout", json!({})).await.status, 200);
    assert!(!b.has("confer_session"));
    b.cookies.insert("confer_session".into(), cookie);
    assert_eq!(b.get("/console/api/sessions").await.code(), "not_logged_in");
}

fn accounts_code_at(secret: &str, t: u64) -> String {
    confer_server::accounts::totp_code_base32(secret, t).unwrap()
}

#[tokio::test]
async fn where_totp_is_not_required_a_password_alone_logs_in_an_account_without_one() {
    let c = Console::start("login-no-totp", |c| c.accounts_require_totp = false).await;
    let token = c.add("bob", AccountRole::Mediator);
    let mut b = c.browser();
    b.me().await;
    let start = b
        .post("/console/api/enrol/start", json!({ "token": token }))
        .await;
    assert_eq!(start.json()["totp_required"], false);
    let done = b
        .post(
            "/console/api/enrol/finish",
            json!({ "token": token, "password": PASSWORD }),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["totp"], false);

    let r = b.login("bob", PASSWORD, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["next"], "done");
    assert!(b.has("confer_session"));

    // An account that did set up TOTP still needs it there.
    let (_, _) = c.enrolled("cat", AccountRole::Mediator).await;
    let mut b = c.browser();
    assert_eq!(
        b.login("cat", PASSWORD, None).await.json()["next"],
        "second_factor"
    );
    assert!(!b.has("confer_session"));
}

#[tokio::test]
async fn where_totp_is_required_enrolment_needs_a_right_code() {
    let c = Console::start("enrol-needs-totp", |_| {}).await;
    let token = c.add("dan", AccountRole::Mediator);
    let mut b = c.browser();
    b.me().await;
    let start = b
        .post("/console/api/enrol/start", json!({ "token": token }))
        .await;
    let body = start.json();
    let secret = body["totp_secret"].as_str().unwrap();
    assert_eq!(
        body["otpauth_uri"],
        format!(
            "otpauth://totp/Confer:dan?secret={secret}&issuer=Confer&algorithm=SHA1&digits=6&period=30"
        )
    );
    for (extra, code) in [
        (json!({}), "totp_code_wrong"),
        (json!({ "code": "123456" }), "totp_code_wrong"),
    ] {
        let mut req = json!({ "token": token, "password": PASSWORD });
        req.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = b.post("/console/api/enrol/finish", req).await;
        assert_eq!((r.status, r.code().as_str()), (400, code));
    }
    let short = b
        .post(
            "/console/api/enrol/finish",
            json!({ "token": token, "password": "Xq7#short", "code": c.totp(secret) }),
        )
        .await;
    assert_eq!(short.code(), "password_too_short");
    assert!(
        !short.body.contains("Xq7#short"),
        "the password is not echoed"
    );
    // Nothing was set by the refusals: the link still works, once.
    let ok = b
        .post(
            "/console/api/enrol/finish",
            json!({ "token": token, "password": PASSWORD, "code": c.totp(secret) }),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["recovery_codes"].as_array().unwrap().len(), 10);
    let again = b
        .post("/console/api/enrol/start", json!({ "token": token }))
        .await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (404, "enrolment_invalid")
    );
}

#[tokio::test]
async fn a_recovery_code_replaces_the_totp_code_once() {
    let c = Console::start("login-recovery", |_| {}).await;
    let (_, codes) = c.enrolled("eve", AccountRole::Mediator).await;
    let recovery = |b: &mut Browser, code: &str| {
        let code = code.to_owned();
        let mut b2 = std::mem::replace(b, Browser::new(b.addr));
        async move {
            let r = b2.login("eve", PASSWORD, None).await;
            assert_eq!(r.json()["next"], "second_factor");
            let r = b2
                .post(
                    "/console/api/login/second-factor",
                    json!({ "recovery_code": code }),
                )
                .await;
            (b2, r)
        }
    };
    let mut b = c.browser();
    let (b1, r) = recovery(&mut b, &codes[0].to_uppercase()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recovery_codes_left"], 9);
    assert!(b1.has("confer_session"));

    let mut b = c.browser();
    let (b2, r) = recovery(&mut b, &codes[0]).await;
    assert_eq!((r.status, r.code().as_str()), (401, "second_factor_failed"));
    assert!(!b2.has("confer_session"));
}

#[tokio::test]
async fn unknown_names_wrong_passwords_unenrolled_and_disabled_accounts_get_one_answer() {
    let c = Console::start("login-enumeration", |_| {}).await;
    let (secret, _) = c.enrolled("fay", AccountRole::Mediator).await;
    c.enrolled("gus", AccountRole::CoMediator).await;
    c.add("hal", AccountRole::Mediator); // not enrolled
    let mut logged_in = c.browser();
    let r = logged_in
        .login("gus", PASSWORD, Some(&c.totp(&secret)))
        .await;
    // gus's own code is needed, not fay's.
    assert_eq!(r.code(), "second_factor_failed");

    c.server
        .accounts()
        .disable(&Name::new("fay").unwrap())
        .unwrap();
    let answers: Vec<(u16, String)> = {
        let mut out = Vec::new();
        for (name, password) in [
            ("nobody", PASSWORD),
            ("gus", "a wrong password!"),
            ("hal", PASSWORD),
            ("fay", PASSWORD),
            ("not a valid name/", PASSWORD),
        ] {
            let mut b = c.browser();
            let r = b.login(name, password, None).await;
            assert!(!b.has("confer_login") && !b.has("confer_session"), "{name}");
            assert!(!r.body.contains(password), "{name}: the password is echoed");
            out.push((r.status, r.body));
        }
        out
    };
    assert_eq!(answers[0].0, 401);
    assert!(answers[0].1.contains("\"code\":\"login_failed\""));
    for a in &answers {
        assert_eq!(a, &answers[0]);
    }
}

#[tokio::test]
async fn a_disabled_account_loses_its_sessions() {
    let c = Console::start("login-disabled", |_| {}).await;
    let (secret, _) = c.enrolled("ida", AccountRole::Mediator).await;
    let mut b = c.browser();
    assert_eq!(
        b.login("ida", PASSWORD, Some(&c.totp(&secret)))
            .await
            .status,
        200
    );
    assert_eq!(b.get("/console/api/sessions").await.status, 200);
    c.server
        .accounts()
        .disable(&Name::new("ida").unwrap())
        .unwrap();
    assert_eq!(b.get("/console/api/sessions").await.code(), "not_logged_in");
    assert_eq!(b.me().await.json()["account"], serde_json::Value::Null);
}

#[tokio::test]
async fn session_cookies_are_http_only_same_site_strict_path_root_and_secure_under_tls() {
    let c = Console::start("cookies-http", |_| {}).await;
    let (secret, _) = c.enrolled("jo", AccountRole::Mediator).await;
    let mut b = c.browser();
    let me = b.me().await;
    assert_eq!(
        me.set_cookie("confer_csrf").unwrap(),
        format!(
            "confer_csrf={}; HttpOnly; SameSite=Strict; Path=/",
            me.json()["csrf"].as_str().unwrap()
        )
    );
    let r = b.login("jo", PASSWORD, Some(&c.totp(&secret))).await;
    let set = r.set_cookie("confer_session").unwrap();
    let value = &b.cookies["confer_session"];
    assert_eq!(value.len(), 43, "256 random bits, base64url");
    assert_eq!(
        set,
        format!("confer_session={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The cookie is stored only as its hash.
    for (f, bytes) in data_files(&c.dir) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(value.as_str()),
            "{}",
            f.display()
        );
    }

    // Behind TLS (an https public_url): Secure, and the __Host- prefix.
    let c = Console::start("cookies-tls", |c| {
        c.public_url = "https://confer.example.org".into();
    })
    .await;
    let (secret, _) = c.enrolled("jo", AccountRole::Mediator).await;
    let mut b = c.browser();
    b.origin = Some("https://confer.example.org".into());
    let me = b.me().await;
    assert!(
        me.set_cookie("__Host-confer_csrf")
            .unwrap()
            .ends_with("; HttpOnly; SameSite=Strict; Path=/; Secure"),
        "{:?}",
        me.set_cookies()
    );
    let first = b
        .post(
            "/console/api/login",
            json!({"name": "jo", "password": PASSWORD}),
        )
        .await;
    let login = first.set_cookie("__Host-confer_login").unwrap();
    assert!(
        login.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=300; Secure"),
        "{login}"
    );
    let r = b
        .post(
            "/console/api/login/second-factor",
            json!({ "code": c.totp(&secret) }),
        )
        .await;
    let value = &b.cookies["__Host-confer_session"];
    assert_eq!(
        r.set_cookie("__Host-confer_session").unwrap(),
        format!(
            "__Host-confer_session={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200; Secure"
        )
    );
    assert_eq!(b.get("/console/api/sessions").await.status, 200);
}
