#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

//! Documents against an in-process server whose clock is a manual one: a session of a mediator
//! and two admitted parties, their `doc_upload` / `doc_download` over the real WebSocket, and
//! raw HTTP/1.1 for the chunks (binary bodies, with and without Content-Length).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use confer_proto::{DocOp, ParticipantId, Role, ServerMessage, SessionId, Side};

use confer_testkit::ws::{PATIENCE, WsClient};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const HASH: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[allow(unused_imports)]
pub use crate::manual_server::{ManualServer as Docs, T0};

impl Docs {
    pub fn invite(&self, session: &str, role: Role, side: Option<Side>) -> String {
        self.server
            .invite(&SessionId::new(session).unwrap(), role, side, 600)
    }

    /// A mediator and parties A and B, both admitted into joint.
    pub async fn session(&self, session: &str) -> Room {
        let tokens = [
            self.invite(session, Role::Mediator, None),
            self.invite(session, Role::Party, Some(Side::A)),
            self.invite(session, Role::Party, Some(Side::B)),
        ];
        admitted(self.addr(), tokens).await
    }

    /// Every file under `DATA_DIR/docs`, relative to it.
    pub fn stored(&self) -> Vec<PathBuf> {
        files_under(&self.dir.join("docs"))
    }
}

/// A mediator and two parties joined with these invites, the parties admitted into joint.
pub async fn admitted(addr: SocketAddr, tokens: [String; 3]) -> Room {
    let [tm, ta, tb] = tokens;
    let (mut m, wm) = WsClient::join(addr, &tm).await;
    let mut parties = Vec::new();
    for token in [ta, tb] {
        let (mut c, w) = WsClient::join(addr, &token).await;
        let id = pid(&w);
        c.send(json!({"type": "consent", "agreement_hash": HASH}))
            .await;
        assert_eq!(c.recv().await, ServerMessage::ConsentRecorded);
        m.send(json!({"type": "admit", "participant_id": id.as_str()}))
            .await;
        c.recv_until(|x| matches!(x, ServerMessage::Channel { .. }))
            .await;
        parties.push((c, id));
    }
    let (b, b_id) = parties.pop().unwrap();
    let (a, a_id) = parties.pop().unwrap();
    Room {
        m,
        a,
        b,
        m_id: pid(&wm),
        a_id,
        b_id,
    }
}

pub struct Room {
    pub m: WsClient,
    pub a: WsClient,
    pub b: WsClient,
    pub m_id: ParticipantId,
    pub a_id: ParticipantId,
    pub b_id: ParticipantId,
}

pub fn pid(m: &ServerMessage) -> ParticipantId {
    match m {
        ServerMessage::Welcome { participant_id, .. } => participant_id.clone(),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// A ticket as the server gave it.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub token: String,
    pub op: DocOp,
    pub chunks: u32,
    pub expires_at: u64,
}

/// What a `doc_upload` / `doc_download` got: a ticket, or an error's code and `in_reply_to`.
pub async fn ask(c: &mut WsClient, request: Value) -> Result<Ticket, (String, Option<String>)> {
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
        ServerMessage::DocTicket {
            token,
            op,
            chunks,
            expires_at,
            ..
        } => Ok(Ticket {
            token,
            op,
            chunks,
            expires_at,
        }),
        ServerMessage::Error {
            code, in_reply_to, ..
        } => Err((code.as_str().to_owned(), in_reply_to)),
        _ => unreachable!("matched above"),
    }
}

pub fn upload(doc_id: &str, size: u64) -> Value {
    json!({
        "type": "doc_upload",
        "doc_id": doc_id,
        "size": size,
        "chunks": confer_proto::doc_chunks(size),
    })
}

pub fn download(doc_id: &str) -> Value {
    json!({"type": "doc_download", "doc_id": doc_id})
}

pub fn random_doc_id() -> String {
    confer_server::token::random_id()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A document of `size` bytes "sealed" into chunks of their sealed lengths: random bytes,
/// which is what ciphertext looks like to the server.
pub fn sealed_chunks(size: u64) -> Vec<Vec<u8>> {
    (0..confer_proto::doc_chunks(size))
        .map(|i| {
            let n = confer_proto::doc_chunk_max_body(size, i).unwrap();
            random_bytes(usize::try_from(n).unwrap())
        })
        .collect()
}

/// An HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    Chunked,
}

/// One raw HTTP/1.1 request over a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
    framing: Framing,
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let mut bytes = Vec::new();
    match framing {
        Framing::ContentLength => {
            req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            bytes.extend_from_slice(req.as_bytes());
            bytes.extend_from_slice(body);
        }
        Framing::Chunked => {
            req.push_str("Transfer-Encoding: chunked\r\n\r\n");
            bytes.extend_from_slice(req.as_bytes());
            for part in body.chunks(4096) {
                bytes.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                bytes.extend_from_slice(part);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The server may answer (and close) before it read the whole body: that is fine.
    let _ = s.write_all(&bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("timed out reading the response");
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    }
}

pub async fn put(addr: SocketAddr, doc_id: &str, index: u32, ticket: &str, body: &[u8]) -> Reply {
    http(
        addr,
        "PUT",
        &format!("/docs/{doc_id}/{index}"),
        Some(ticket),
        body,
        Framing::ContentLength,
    )
    .await
}

pub async fn get(addr: SocketAddr, doc_id: &str, index: u32, ticket: &str) -> Reply {
    http(
        addr,
        "GET",
        &format!("/docs/{doc_id}/{index}"),
        Some(ticket),
        &[],
        Framing::ContentLength,
    )
    .await
}

/// Every file under `root` (recursively), relative to it; empty when `root` is absent.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
