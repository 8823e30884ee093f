#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The document limits: `doc_too_large` over `docs_max_bytes`, `doc_quota` over
//! `docs_max_session_bytes`, `invalid_message` when `chunks` does not fit `size`; a chunk
//! longer than its sealed length is refused (413) whether it declares its length or streams
//! it; a chunk written once is never replaced (409). None of them writes a byte.

mod docs_common;
mod manual_server;

use docs_common::*;

#[tokio::test]
async fn oversize_documents_and_chunks_and_duplicates_are_refused_without_writing() {
    let d = Docs::start("docs-limits", |c| {
        c.docs_max_bytes = 200_000;
        c.docs_max_session_bytes = 300_000;
    })
    .await;
    let mut r = d.session("s-limits").await;
    let addr = d.addr();

    // Declared sizes.
    let big = random_doc_id();
    assert_eq!(
        ask(&mut r.a, upload(&big, 200_001)).await.unwrap_err(),
        ("doc_too_large".into(), Some("doc_upload".into()))
    );
    let first = random_doc_id();
    let up = ask(&mut r.a, upload(&first, 200_000)).await.unwrap();
    let second = random_doc_id();
    assert_eq!(
        ask(&mut r.b, upload(&second, 100_001)).await.unwrap_err(),
        ("doc_quota".into(), Some("doc_upload".into()))
    );
    assert!(ask(&mut r.b, upload(&second, 100_000)).await.is_ok());
    // `chunks` must be max(1, ceil(size / 65536)).
    let odd = random_doc_id();
    for (size, chunks) in [(0, 0), (65_536, 2), (65_537, 1)] {
        let msg = serde_json::json!({"type": "doc_upload", "doc_id": odd, "size": size, "chunks": chunks});
        assert_eq!(
            ask(&mut r.a, msg).await.unwrap_err(),
            ("invalid_message".into(), Some("doc_upload".into()))
        );
    }
    assert_eq!(
        ask(&mut r.b, download(&big)).await.unwrap_err().0,
        "not_found"
    );
    assert_eq!(
        ask(&mut r.b, download(&odd)).await.unwrap_err().0,
        "not_found"
    );

    // Chunks: 200,000 bytes seal to chunks of 65,552, 65,552, 65,552 and 3,392 + 16 bytes.
    assert_eq!(up.chunks, 4);
    let too_long = random_bytes(65_553);
    for framing in [Framing::ContentLength, Framing::Chunked] {
        let reply = http(
            addr,
            "PUT",
            &format!("/docs/{first}/0"),
            Some(&up.token),
            &too_long,
            framing,
        )
        .await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (413, "chunk_too_large"),
            "{framing:?}"
        );
        let last = random_bytes(3_392 + 17);
        let reply = http(
            addr,
            "PUT",
            &format!("/docs/{first}/3"),
            Some(&up.token),
            &last,
            framing,
        )
        .await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (413, "chunk_too_large"),
            "{framing:?}"
        );
    }
    assert!(d.stored().is_empty(), "nothing was written");

    // At their sealed lengths they fit, once each.
    let chunk = random_bytes(65_552);
    let reply = http(
        addr,
        "PUT",
        &format!("/docs/{first}/0"),
        Some(&up.token),
        &chunk,
        Framing::Chunked,
    )
    .await;
    assert_eq!(reply.status, 201);
    let last = random_bytes(3_392 + 16);
    assert_eq!(put(addr, &first, 3, &up.token, &last).await.status, 201);
    let replay = put(addr, &first, 0, &up.token, &random_bytes(10)).await;
    assert_eq!(
        (replay.status, replay.code().as_str()),
        (409, "chunk_exists")
    );
    let replay = put(addr, &first, 3, &up.token, &last).await;
    assert_eq!(
        (replay.status, replay.code().as_str()),
        (409, "chunk_exists")
    );

    let down = ask(&mut r.m, download(&first)).await.unwrap();
    assert_eq!(
        get(addr, &first, 0, &down.token).await.body,
        chunk,
        "the first write stands"
    );
    assert_eq!(get(addr, &first, 3, &down.token).await.body, last);
    assert_eq!(
        get(addr, &first, 1, &down.token).await.code(),
        "chunk_not_found"
    );
    assert_eq!(d.stored().len(), 2);
}

#[tokio::test]
async fn zero_max_bytes_turns_documents_off() {
    let d = Docs::start("docs-off", |c| c.docs_max_bytes = 0).await;
    let mut r = d.session("s-off").await;
    assert_eq!(
        ask(&mut r.m, upload(&random_doc_id(), 0))
            .await
            .unwrap_err()
            .0,
        "doc_too_large"
    );
}
