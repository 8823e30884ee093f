#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `confer user add|disable|reset-mfa|list` against a data dir, and `confer serve --dev`
//! printing an enrolment link for a first mediator (with the raw token still there for shells
//! and bots).

mod common;

use common::*;
use confer_server::accounts::{Accounts, Name};

fn user(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["user"];
    all.extend_from_slice(&args[..1]);
    all.extend(["--dev", "--data-dir", dir.to_str().unwrap()]);
    all.extend_from_slice(&args[1..]);
    run(&all)
}

fn read_in_child(path: &std::path::Path) -> Vec<u8> {
    std::process::Command::new("cat")
        .arg(path)
        .output()
        .unwrap()
        .stdout
}

fn token_of(link: &str) -> String {
    link.trim()
        .strip_prefix("http://127.0.0.1:7880/console#enrol=")
        .unwrap_or_else(|| panic!("an enrolment link: {link}"))
        .to_owned()
}

#[test]
fn add_reset_mfa_disable_and_list() {
    let dir = temp_dir("user-cli");
    let (code, out, err) = user(&dir, &["add", "Ann@Example.org"]);
    assert_eq!(code, 0, "{err}");
    let first = token_of(&out);
    assert!(err.contains("works once, within 24 hours"), "{err}");
    let (code, _, err) = user(&dir, &["add", "ann@example.org", "--role", "co_mediator"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("exists already") && err.contains("reset-mfa"),
        "{err}"
    );
    let (code, out, err) = user(&dir, &["add", "ben", "--role", "co_mediator"]);
    assert_eq!(code, 0, "{err}");
    let ben = token_of(&out);

    // The links are the accounts' own: the database knows them by hash only.
    let now = confer_server::token::unix_now();
    let db = Accounts::open(&dir.join("accounts.db"), now).unwrap();
    let pending = db.enrolment(&first, now).unwrap().unwrap();
    assert_eq!(pending.name.as_str(), "ann@example.org");
    assert!(db.enrolment(&ben, now).unwrap().is_some());
    // (Read by another process: closing a descriptor of the file in this one would drop
    // SQLite's POSIX locks of `db`.)
    let stored = read_in_child(&dir.join("accounts.db"));
    assert!(!String::from_utf8_lossy(&stored).contains(&first));

    // reset-mfa: a new link; the old one stops working.
    let (code, out, err) = user(&dir, &["reset-mfa", "ann@example.org"]);
    assert_eq!(code, 0, "{err}");
    let second = token_of(&out);
    assert_ne!(first, second);
    assert!(db.enrolment(&first, now).unwrap().is_none());
    assert!(db.enrolment(&second, now).unwrap().is_some());

    let (code, out, _) = user(&dir, &["disable", "ben"]);
    assert_eq!(code, 0);
    assert!(out.contains("ben is disabled"), "{out}");
    assert!(db.enrolment(&ben, now).unwrap().is_none());
    assert!(
        db.credentials(&Name::new("ben").unwrap())
            .unwrap()
            .unwrap()
            .disabled
    );

    let (code, out, _) = user(&dir, &["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("name"), "{out}");
    assert!(
        lines[1].starts_with("ann@example.org")
            && lines[1].contains("mediator")
            && lines[1].contains("enrolling"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("ben")
            && lines[2].contains("co_mediator")
            && lines[2].contains("disabled"),
        "{out}"
    );
    for secret in [&first, &second, &ben] {
        assert!(!out.contains(secret.as_str()));
    }
    let (_, json, _) = user(&dir, &["list", "--json"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[1]["state"], "disabled");
    assert_eq!(rows[0]["totp"], false);

    // Mistakes say what to do, and never echo a secret.
    let (code, _, err) = user(&dir, &["disable", "nobody"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no account of that name") && err.contains("confer user list"),
        "{err}"
    );
    let (code, _, err) = user(&dir, &["add", "not a name"]);
    assert_eq!(code, 1);
    assert!(err.contains("1 to 64 characters"), "{err}");
    let (code, _, err) = user(&dir, &["add", "cy", "--role", "party"]);
    assert_eq!(code, 2, "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dev_prints_an_enrolment_link_for_a_first_mediator_and_still_a_token() {
    let base = temp_dir("user-dev");
    let dist = base.join("web-client/dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>x</title>").unwrap();
    let data = base.join("data");
    let serve = Serve::start_in(&data, Some(&base)).await;
    let out = serve.stdout.clone();
    let link = out
        .lines()
        .map(str::trim)
        .find(|l| l.contains("/console#enrol="))
        .unwrap_or_else(|| panic!("no enrolment link in\n{out}"));
    assert_eq!(
        link,
        format!(
            "http://{}/console#enrol={}",
            serve.addr,
            link.rsplit('=').next().unwrap()
        )
    );
    assert!(out.contains("Start here"), "{out}");
    assert!(
        out.contains("authenticator app") && out.contains("recovery codes"),
        "{out}"
    );
    // Shells and bots keep their raw mediator token.
    assert!(out.contains("A new session is ready: demo-"), "{out}");
    assert!(out.contains("confer-bot --url"), "{out}");
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    let (_, list, _) = user(&data, &["list"]);
    assert!(
        list.contains("mediator") && list.contains("enrolling"),
        "{list}"
    );

    // Not enrolled yet: the next start prints a new link, and the old one stops working.
    let old = link.rsplit('=').next().unwrap().to_owned();
    let serve = Serve::start_in(&data, Some(&base)).await;
    assert!(serve.stdout.contains("/console#enrol="), "{}", serve.stdout);
    assert!(!serve.stdout.contains(&old));
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    let now = confer_server::token::unix_now();
    let db = Accounts::open(&data.join("accounts.db"), now).unwrap();
    assert!(db.enrolment(&old, now).unwrap().is_none());
    std::fs::remove_dir_all(base).unwrap();
}
