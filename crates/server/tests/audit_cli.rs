//! `confer audit verify | export | purge` against a real session's audit log.

mod common;

use common::*;
use confer_server::audit;

#[tokio::test]
async fn audit_log_records_a_session_verifies_exports_and_catches_an_edited_row() {
    let dir = temp_dir("audit");
    let serve = Serve::start(&dir).await;
    let session = "s-audit";
    let tokens = serve.trio(session);
    let canary = "CANARY-chat-text";
    let trace = short_session(serve.addr, tokens, canary).await;
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    let d = dir.to_str().unwrap();

    let (code, out, err) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("intact"), "{out}");

    let rows = audit_events(&dir, session);
    let events: Vec<&str> = rows.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for e in [
        "session_created",
        "arrived",
        "consent",
        "admitted",
        "moved",
        "session_ended",
    ] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    let consent = rows.iter().find(|e| e["event"] == "consent").unwrap();
    assert_eq!(
        consent["detail"], HASH,
        "only the hash of the agreement is kept"
    );
    let moved = rows.iter().find(|e| e["detail"] == "caucus-A").unwrap();
    assert_eq!(moved["participant"], trace.participant_ids[1].as_str());
    // Content never reaches the audit log.
    let raw = std::fs::read(dir.join("audit.db")).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains(canary));

    // Edit one row behind the chain's back: verify names it and fails.
    let conn = audit::open(&dir.join("audit.db")).unwrap();
    conn.execute("UPDATE events SET event = 'admitted' WHERE seq = 4", [])
        .unwrap();
    drop(conn);
    let (code, _, err) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 1);
    assert!(err.contains("row 4"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn purge_applies_the_retention_period_and_keeps_the_chain_valid() {
    let dir = temp_dir("purge");
    let d = dir.to_str().unwrap();
    let mut conn = audit::open(&dir.join("audit.db")).unwrap();
    let now = confer_server::token::unix_now();
    let ev = |at: u64, event: &str| audit::NewEvent {
        at,
        session: "old".into(),
        event: event.into(),
        participant: None,
        role: None,
        detail: None,
    };
    audit::append(
        &mut conn,
        &[
            ev(now - 400 * 86_400, "session_created"),
            ev(now - 10, "session_ended"),
        ],
    )
    .unwrap();
    drop(conn);
    let (code, out, err) = run(&["audit", "purge", "--dev", "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("purged 1"), "{out}");
    let (code, out, _) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.contains("1 rows"), "{out}");
    // A shorter retention from the environment purges the rest.
    let out = std::process::Command::new(BIN)
        .args(["audit", "purge", "--dev", "--data-dir", d])
        .env("CONFER_AUDIT_RETENTION_DAYS", "0")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("purged 1"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cli_errors_say_what_to_do() {
    let (code, _, err) = run(&["token", "create", "--session", "s", "--role", "mediator"]);
    assert_eq!(code, 1);
    assert!(err.contains("--dev") && err.contains("--config"), "{err}");
    let dir = temp_dir("cli");
    let d = dir.to_str().unwrap();
    let (code, _, err) = run(&[
        "token",
        "create",
        "--dev",
        "--data-dir",
        d,
        "--session",
        "s",
        "--role",
        "party",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--side"), "{err}");
    let (code, _, err) = run(&[
        "token",
        "create",
        "--dev",
        "--data-dir",
        d,
        "--session",
        "bad id!",
        "--role",
        "mediator",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("session id"), "{err}");
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--dev",
        "--data-dir",
        "/nonexistent/confer",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no audit log"), "{err}");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let (code, _, err) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("lisen"), "{err}");
    // A wildcard media address without the address clients reach: refused at start, with the fix.
    let (code, _, err) = run(&[
        "serve",
        "--dev",
        "--data-dir",
        d,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--media-listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("media_public_addr"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn retention_is_enforced_at_start_up() {
    let dir = temp_dir("retention");
    let mut conn = audit::open(&dir.join("audit.db")).unwrap();
    let now = confer_server::token::unix_now();
    let ev = |at: u64| audit::NewEvent {
        at,
        session: "ancient".into(),
        event: "session_created".into(),
        participant: None,
        role: None,
        detail: None,
    };
    audit::append(&mut conn, &[ev(now - 366 * 86_400), ev(now - 86_400)]).unwrap();
    drop(conn);
    let serve = Serve::start(&dir).await;
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    let conn = audit::open(&dir.join("audit.db")).unwrap();
    let rows = audit::export(&conn, "ancient").unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the row older than 365 days is gone, the recent one stays"
    );
    assert_eq!(audit::verify(&conn).unwrap(), Ok(1));
    std::fs::remove_dir_all(dir).unwrap();
}
