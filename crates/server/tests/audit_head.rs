//! `confer audit head` and `confer audit verify --expect-head` against a real server's audit
//! log: the server logs the head after each batch; a truncated tail hidden by an updated
//! chain table passes a plain `verify` and fails against the head kept elsewhere; so does an
//! anchor moved past rows younger than the retention period.

mod common;

use common::*;
use confer_server::audit;
use rusqlite::params;

/// The head the server logged last (the `audit head` info line).
fn last_logged_head(logs: &str) -> String {
    logs.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "audit head" && v["level"] == "INFO")
        .filter_map(|v| v["fields"]["head"].as_str().map(str::to_owned))
        .next()
        .unwrap_or_else(|| panic!("no audit head in the log:\n{logs}"))
}

async fn one_session(dir: &std::path::Path, session: &str) -> String {
    let serve = Serve::start(dir).await;
    let tokens = serve.trio(session);
    short_session(serve.addr, tokens, "CANARY").await;
    serve.signal_term();
    let (code, logs) = serve.wait().await;
    assert_eq!(code, 0, "{logs}");
    last_logged_head(&logs)
}

#[tokio::test]
async fn a_truncated_tail_with_an_updated_head_table_fails_against_the_kept_head() {
    let dir = temp_dir("audit-head");
    let d = dir.to_str().unwrap();

    let logged = one_session(&dir, "s-one").await;
    let (code, out, err) = run(&["audit", "head", "--dev", "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let h1 = out.trim().to_owned();
    assert_eq!(h1, logged, "the CLI and the server's log agree");
    let h1_parsed: audit::Head = h1.parse().unwrap();
    assert!(h1_parsed.seq > 5, "{h1}");

    let logged = one_session(&dir, "s-two").await;
    let (_, out, _) = run(&["audit", "head", "--dev", "--data-dir", d]);
    let h2 = out.trim().to_owned();
    assert_eq!(h2, logged);

    // Both heads are reached while the log is whole.
    for h in [&h1, &h2] {
        let (code, out, err) = run(&[
            "audit",
            "verify",
            "--dev",
            "--data-dir",
            d,
            "--expect-head",
            h,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("intact") && out.contains(&format!("expected head {h}: found")),
            "{out}"
        );
        assert!(out.contains("anchor: row 0 (nothing purged)"), "{out}");
    }

    // Someone removes the second session and makes the chain table agree.
    let conn = audit::open(&dir.join("audit.db")).unwrap();
    conn.execute("DELETE FROM events WHERE seq > ?1", params![h1_parsed.seq])
        .unwrap();
    conn.execute(
        "UPDATE chain SET head_seq = ?1, head_hash = ?2",
        params![h1_parsed.seq, h1_parsed.hash],
    )
    .unwrap();
    drop(conn);
    let (code, out, err) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 0, "without the kept head the cut is invisible: {err}");
    assert!(out.contains(&format!("head: {h1}")), "{out}");
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--dev",
        "--data-dir",
        d,
        "--expect-head",
        &h2,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("audit head moved backwards"), "{err}");
    assert!(
        err.contains(&format!(
            "before the expected head row {}",
            h2.split(':').next().unwrap()
        )),
        "{err}"
    );

    // Someone removes the first rows too, moving the anchor as a purge would: they are
    // younger than the retention period (365 days), so verify fails even without a head.
    let conn = audit::open(&dir.join("audit.db")).unwrap();
    let (seq, hash, at): (i64, String, i64) = conn
        .query_row("SELECT seq, hash, at FROM events WHERE seq = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    conn.execute("DELETE FROM events WHERE seq <= 3", [])
        .unwrap();
    conn.execute(
        "UPDATE chain SET anchor_seq = ?1, anchor_hash = ?2, anchor_at = ?3",
        params![seq, hash, at],
    )
    .unwrap();
    drop(conn);
    let (code, _, err) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 1);
    assert!(
        err.contains("anchor moved past rows younger than the retention period"),
        "{err}"
    );
    assert!(err.contains("row 3, an event 0 days old"), "{err}");

    // A head that is not SEQ:HASH is refused as a usage error, saying what it must look like.
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--dev",
        "--data-dir",
        d,
        "--expect-head",
        "12",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("SEQ:HASH"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn head_refuses_to_print_the_head_of_a_broken_chain() {
    let dir = temp_dir("audit-head-broken");
    let d = dir.to_str().unwrap();
    let mut conn = audit::open(&dir.join("audit.db")).unwrap();
    let ev = |event: &str| audit::NewEvent {
        at: confer_server::token::unix_now(),
        session: "s".into(),
        event: event.into(),
        participant: None,
        role: None,
        detail: None,
    };
    let head = audit::append(&mut conn, &[ev("session_created"), ev("session_ended")]).unwrap();
    let (code, out, _) = run(&["audit", "head", "--dev", "--data-dir", d]);
    assert_eq!((code, out.trim()), (0, head.to_string().as_str()));
    conn.execute("UPDATE events SET event = 'locked' WHERE seq = 1", [])
        .unwrap();
    drop(conn);
    let (code, out, err) = run(&["audit", "head", "--dev", "--data-dir", d]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("row 1") && err.contains("no head printed"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
