#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `confer audit export --participant PID` (for a person's access request) prints that
//! participant's audit rows, one JSON object per line, and nobody else's: after a real
//! session in which that party also shared a document.

mod common;
mod docs_common;
mod manual_server;

use common::{Serve, audit_events, run, temp_dir};
use docs_common::*;

#[tokio::test]
async fn export_by_participant_prints_only_that_participants_rows() {
    let dir = temp_dir("export-participant");
    let serve = Serve::start(&dir).await;
    let session = "s-export";
    let tokens = serve.trio(session);
    let mut r = admitted(serve.addr, tokens).await;
    let doc = random_doc_id();
    ask(&mut r.a, upload(&doc, 4_321)).await.unwrap();
    r.m.send(serde_json::json!({"type": "move", "participant_id": r.a_id.as_str(), "channel_id": "caucus-A"}))
        .await;
    r.m.send(serde_json::json!({"type": "end"})).await;
    assert_eq!(r.a.closed().await, 4000);
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);

    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&[
        "audit",
        "export",
        "--dev",
        "--data-dir",
        d,
        "--participant",
        r.a_id.as_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let events: Vec<&str> = rows.iter().map(|r| r["event"].as_str().unwrap()).collect();
    for e in ["arrived", "consent", "admitted", "moved", "doc_shared"] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    for row in &rows {
        assert_eq!(row["participant"], r.a_id.as_str());
        assert_eq!(row["session"], session);
    }
    let shared = rows.iter().find(|r| r["event"] == "doc_shared").unwrap();
    assert_eq!(shared["detail"], "4321");
    assert!(!out.contains(r.b_id.as_str()) && !out.contains(r.m_id.as_str()));
    assert!(!out.contains(&doc), "no document id is ever audited");

    // Every row of the session about that participant, no more, no fewer.
    let theirs = audit_events(&dir, session)
        .iter()
        .filter(|e| e["participant"] == r.a_id.as_str())
        .count();
    assert_eq!(theirs, rows.len());

    // Someone the log never saw: nothing; both selectors at once: a usage error.
    let (code, out, _) = run(&[
        "audit",
        "export",
        "--dev",
        "--data-dir",
        d,
        "--participant",
        "nobody",
    ]);
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, _, _) = run(&[
        "audit",
        "export",
        "--dev",
        "--data-dir",
        d,
        "--participant",
        "x",
        "--session",
        session,
    ]);
    assert_eq!(code, 2);
    let _ = std::fs::remove_dir_all(&dir);
}
