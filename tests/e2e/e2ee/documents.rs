//! A document sealed with confer/1 (e2ee §8.7) through the real server's document store:
//! party A seals a file holding a plaintext canary under a fresh file key, uploads the
//! chunks, party B downloads and opens them. The server stores exactly the sealed bytes, and
//! neither the canary nor the file key appears in any file of its data directory; the end of
//! the session deletes the chunks.

use confer_e2e::{AGREEMENT_HASH, TestServer, WsClient};
use confer_e2ee::doc::DocCipher;
use confer_e2ee::secret::Secret32;
use confer_proto::{Role, ServerMessage, Side};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CANARY: &[u8] = b"DOCUMENT-CANARY settlement: B pays A 40,000 by 1 March. ";

fn pid(m: &ServerMessage) -> String {
    match m {
        ServerMessage::Welcome { participant_id, .. } => participant_id.as_str().to_owned(),
        other => panic!("expected welcome, got {other:?}"),
    }
}

async fn ticket(c: &mut WsClient, request: serde_json::Value) -> (String, u32) {
    c.send(request).await;
    match c
        .recv_until(|m| {
            matches!(
                m,
                ServerMessage::DocTicket { .. } | ServerMessage::Error { .. }
            )
        })
        .await
    {
        ServerMessage::DocTicket { token, chunks, .. } => (token, chunks),
        other => panic!("expected a ticket, got {other:?}"),
    }
}

/// One HTTP/1.1 request: (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    ticket: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {ticket}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(&[head.as_bytes(), body].concat())
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(confer_testkit::ws::PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let status = String::from_utf8_lossy(&buf[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, buf[end + 4..].to_vec())
}

fn files(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_sealed_document_crosses_the_server_unreadable_and_byte_for_byte() {
    let ts = TestServer::start(|c| c.media_enabled = false).await;
    let addr = ts.server.addr();
    let (mut m, _) = ts.join(Role::Mediator, None).await;
    let mut parties = Vec::new();
    for side in [Side::A, Side::B] {
        let (mut c, w) = ts.join(Role::Party, Some(side)).await;
        c.send(json!({"type": "consent", "agreement_hash": AGREEMENT_HASH}))
            .await;
        m.send(json!({"type": "admit", "participant_id": pid(&w)}))
            .await;
        c.recv_until(|x| matches!(x, ServerMessage::Channel { .. }))
            .await;
        parties.push(c);
    }
    let (mut b, mut a) = (parties.pop().expect("b"), parties.pop().expect("a"));

    // A seals a file of three chunks under a fresh key.
    let file: Vec<u8> = CANARY.iter().copied().cycle().take(150_000).collect();
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("random");
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).expect("random");
    let doc_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let cipher = DocCipher::new(&Secret32::new(key), id);
    let sealed = cipher.seal_all(&file);
    assert_eq!(sealed.len(), 3);

    let size = u64::try_from(file.len()).expect("size");
    let (up, chunks) = ticket(
        &mut a,
        json!({"type": "doc_upload", "doc_id": doc_id, "size": size, "chunks": 3}),
    )
    .await;
    assert_eq!(chunks, 3);
    for (i, chunk) in sealed.iter().enumerate() {
        let (status, _) = http(addr, "PUT", &format!("/docs/{doc_id}/{i}"), &up, chunk).await;
        assert_eq!(status, 201);
    }

    // B downloads and opens it.
    let (down, chunks) = ticket(&mut b, json!({"type": "doc_download", "doc_id": doc_id})).await;
    let mut opened = Vec::new();
    for i in 0..chunks {
        let (status, body) = http(addr, "GET", &format!("/docs/{doc_id}/{i}"), &down, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body, sealed[i as usize], "served byte for byte");
        let last = i + 1 == chunks;
        opened.extend(cipher.open_chunk(u64::from(i), last, &body).expect("opens"));
    }
    assert_eq!(opened, file);

    // On the server's disk: exactly the sealed chunks, and neither the canary nor the key.
    ts.server.flush_audit().await.expect("flush");
    let mut stored = Vec::new();
    files(&ts.dir, &mut stored);
    let chunks_on_disk: Vec<&Vec<u8>> = stored
        .iter()
        .filter(|(p, _)| p.contains(&doc_id))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(chunks_on_disk.len(), 3);
    for chunk in &sealed {
        assert!(chunks_on_disk.contains(&chunk), "a chunk stored as sent");
    }
    for (path, bytes) in &stored {
        assert!(
            !contains(bytes, &CANARY[..24]),
            "{path} holds the plaintext"
        );
        assert!(!contains(bytes, &key), "{path} holds the file key");
    }

    m.send(json!({"type": "end"})).await;
    assert_eq!(a.closed().await, 4000);
    ts.server.drained().await;
    let mut after = Vec::new();
    files(&ts.dir, &mut after);
    assert!(
        after.iter().all(|(p, _)| !p.contains(&doc_id)),
        "deleted at the end"
    );
}
