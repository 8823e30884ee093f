#![allow(clippy::unwrap_used, clippy::expect_used)]

//! A document shared into a session: party A uploads random bytes in chunks, party B and the
//! mediator download them, byte for byte. The server stores exactly the bytes it was sent
//! (it never transforms or inspects them), under `DATA_DIR/docs/<session>/<instance>/<doc>/`,
//! answers with `Cache-Control: no-store`, and audits the upload once with its size only.
//! The server crate does not depend on confer-e2ee: it holds no code that could open them.

mod docs_common;
mod manual_server;

use confer_proto::DocOp;
use docs_common::*;

#[tokio::test]
async fn two_participants_download_exactly_what_a_third_uploaded() {
    let d = Docs::start("docs-round-trip", |_| {}).await;
    let mut r = d.session("s-docs").await;
    // Three chunks: two full, one short; the file size as e2ee §8.7 counts it.
    let size = 2 * 65_536 + 1_000;
    let chunks = sealed_chunks(size);
    assert_eq!(chunks.len(), 3);
    let doc = random_doc_id();

    let up = ask(&mut r.a, upload(&doc, size)).await.unwrap();
    assert_eq!((up.op, up.chunks), (DocOp::Up, 3));
    assert_eq!(
        up.expires_at,
        T0 + 600,
        "the ticket's life is docs_ticket_ttl_secs"
    );
    // Chunks in any order.
    for i in [2, 0, 1] {
        let reply = put(d.addr(), &doc, i, &up.token, &chunks[i as usize]).await;
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }

    for c in [&mut r.b, &mut r.m] {
        let down = ask(c, download(&doc)).await.unwrap();
        assert_eq!((down.op, down.chunks), (DocOp::Down, 3));
        let mut got = Vec::new();
        for i in 0..down.chunks {
            let reply = get(d.addr(), &doc, i, &down.token).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.header("cache-control"), Some("no-store"));
            assert_eq!(
                reply.header("content-type"),
                Some("application/octet-stream")
            );
            got.push(reply.body);
        }
        assert_eq!(got, chunks, "the bytes downloaded are the bytes uploaded");
    }

    // On disk: one file per chunk, each exactly the bytes uploaded; nothing else.
    let stored = d.stored();
    assert_eq!(stored.len(), 3, "{stored:?}");
    for (i, chunk) in chunks.iter().enumerate() {
        let path = stored
            .iter()
            .find(|p| p.ends_with(format!("{doc}/{i}")))
            .unwrap();
        let parts: Vec<_> = path.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(parts[0], "s-docs");
        assert_eq!(parts[1].len(), 32, "the session instance");
        assert_eq!(
            &std::fs::read(d.dir.join("docs").join(path)).unwrap(),
            chunk
        );
    }

    // The uploader may ask again (a ticket ran out mid-upload): a new ticket, no new row.
    let again = ask(&mut r.a, upload(&doc, size)).await.unwrap();
    assert_eq!(again.op, DocOp::Up);
    d.server.flush_audit().await.unwrap();
    let conn = confer_server::audit::open(&d.dir.join("audit.db")).unwrap();
    let rows = confer_server::audit::export(&conn, "s-docs").unwrap();
    let shared: Vec<_> = rows.iter().filter(|r| r.event == "doc_shared").collect();
    assert_eq!(shared.len(), 1, "one row per document shared");
    assert_eq!(shared[0].participant.as_deref(), Some(r.a_id.as_str()));
    assert_eq!(shared[0].role.as_deref(), Some("party"));
    assert_eq!(shared[0].detail.as_deref(), Some(size.to_string().as_str()));
    let raw = std::fs::read(d.dir.join("audit.db")).unwrap();
    assert!(
        !contains(&raw, doc.as_bytes()),
        "no document id in the audit log"
    );
}

/// The server holds no code that could open a document: confer-e2ee is not among its
/// dependencies (scripts/check-deps.sh checks the whole tree with `cargo tree`).
#[test]
fn the_server_crate_does_not_depend_on_confer_e2ee() {
    let manifest = include_str!("../Cargo.toml");
    assert!(
        manifest.contains("confer-proto.workspace"),
        "the manifest read"
    );
    assert!(!manifest.contains("confer-e2ee"), "{manifest}");
    let lock = include_str!("../../../Cargo.lock");
    let server = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"confer-server\""))
        .expect("confer-server in Cargo.lock");
    assert!(!server.contains("confer-e2ee"), "{server}");
}
