#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `confer session purge ID` against the real binary's data directory: a server killed with
//! two live sessions' documents on disk (a crash leaves them until the next start), then the
//! purge of one session. Afterwards no file in the data directory holds that session's id
//! (but the audit log, whose rows about it are content-free and stay, with a
//! `session_purged` row, and still verify), its document ids, or any of its uploaded bytes;
//! the other session's documents are untouched.

mod common;
mod docs_common;
mod manual_server;

use common::{Serve, audit_events, run, temp_dir};
use docs_common::*;

const CONTENT_FREE: &[&str] = &[
    "session_created",
    "arrived",
    "consent",
    "admitted",
    "moved",
    "doc_shared",
    "session_purged",
];

// Samples of every chunk: its start, middle and end, 32 bytes each.
fn samples(chunks: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for c in chunks {
        for at in [0, c.len() / 2 - 16, c.len() - 32] {
            out.push(c[at..at + 32].to_vec());
        }
    }
    out
}

#[tokio::test]
async fn a_purge_leaves_no_file_with_the_sessions_id_or_content() {
    let dir = temp_dir("purge");
    let mut serve = Serve::start(&dir).await;
    let session = format!("s-purge-{}", &confer_server::token::random_id()[..8]);
    let kept = format!("s-kept-{}", &confer_server::token::random_id()[..8]);
    let tokens = |s: &str| {
        [
            serve.token(s, "mediator", None),
            serve.token(s, "party", Some("A")),
            serve.token(s, "party", Some("B")),
        ]
    };
    let mut r = admitted(serve.addr, tokens(&session)).await;
    let mut k = admitted(serve.addr, tokens(&kept)).await;

    let mut uploaded = Vec::new();
    let mut doc_ids = Vec::new();
    for (c, size) in [(&mut r.a, 100_000), (&mut r.b, 5_000)] {
        let doc = random_doc_id();
        let chunks = sealed_chunks(size);
        let up = ask(c, upload(&doc, size)).await.unwrap();
        for (i, chunk) in chunks.iter().enumerate() {
            let reply = put(
                serve.addr,
                &doc,
                u32::try_from(i).unwrap(),
                &up.token,
                chunk,
            )
            .await;
            assert_eq!(reply.status, 201);
        }
        uploaded.extend(chunks);
        doc_ids.push(doc);
    }
    let kept_doc = random_doc_id();
    let kept_chunks = sealed_chunks(1_000);
    let up = ask(&mut k.a, upload(&kept_doc, 1_000)).await.unwrap();
    assert_eq!(
        put(serve.addr, &kept_doc, 0, &up.token, &kept_chunks[0])
            .await
            .status,
        201
    );

    // A crash: the sessions never end, their documents stay on disk.
    serve.child.start_kill().unwrap();
    let _ = serve.child.wait().await;
    let docs = files_under(&dir.join("docs"));
    assert_eq!(docs.len(), 2 + 1 + 1, "{docs:?}");

    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&["session", "purge", "--dev", "--data-dir", d, &session]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 document files removed"), "{out}");

    // Walk the whole data directory.
    let needles = samples(&uploaded);
    for rel in files_under(&dir) {
        let bytes = std::fs::read(dir.join(&rel)).unwrap();
        let name = rel.to_str().unwrap();
        assert!(
            !name.contains(&session),
            "{name} is named after the session"
        );
        for n in &needles {
            assert!(!contains(&bytes, n), "{name} holds uploaded bytes");
        }
        for doc in &doc_ids {
            assert!(
                !contains(&bytes, doc.as_bytes()),
                "{name} holds a document id"
            );
        }
        if !name.starts_with("audit.db") {
            assert!(
                !contains(&bytes, session.as_bytes()),
                "{name} holds the session id"
            );
        }
    }
    assert!(
        !dir.join("docs").join(&session).exists(),
        "no folder is named after it"
    );
    // The other session's document is untouched.
    let left = files_under(&dir.join("docs"));
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with(&kept));
    assert_eq!(
        std::fs::read(dir.join("docs").join(&left[0])).unwrap(),
        kept_chunks[0]
    );

    // What stays in the audit log about the session is content-free, the purge recorded.
    let rows = audit_events(&dir, &session);
    let events: Vec<&str> = rows.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events.last(), Some(&"session_purged"), "{events:?}");
    for e in &events {
        assert!(CONTENT_FREE.contains(e), "{e}");
    }
    let (code, out, err) = run(&["audit", "verify", "--dev", "--data-dir", d]);
    assert_eq!(code, 0, "{out}{err}");

    // Purging again finds nothing more; a malformed id is refused without touching anything.
    let (code, out, _) = run(&["session", "purge", "--dev", "--data-dir", d, &session]);
    assert_eq!(code, 0);
    assert!(out.contains(" 0 document files removed"), "{out}");
    let (code, _, err) = run(&["session", "purge", "--dev", "--data-dir", d, "../docs"]);
    assert_eq!(code, 1);
    assert!(err.contains("session id must be"), "{err}");
    assert!(
        !err.contains("../docs"),
        "the error does not echo the input: {err}"
    );
    assert_eq!(files_under(&dir.join("docs")).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
