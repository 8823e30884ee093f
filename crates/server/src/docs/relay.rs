//! Cluster mode: a chunk request for a document another node holds, passed on to that node
//! (docs/operations.md#what-is-per-node).
//!
//! A document lives on the disk of the node that owned its session when it was shared, and a
//! ticket minted in cluster mode names that node ([`DocClaims::node`]). Behind a load
//! balancer the chunk request may reach any node. One that gets a request with a good ticket
//! naming another node looks that node's `cluster.node_url` up in the registry and repeats
//! the request there over plain HTTP/1.1, one request per connection: the same method, path,
//! ticket and body, plus [`RELAY_PROOF`], a proof over the ticket and the chunk made with the
//! key every node derives from the shared signing secret. The holder's status, content type
//! and body come back unchanged.
//!
//! **One hop.** A request carrying a valid proof is served where it lands, never passed on
//! again, whatever its ticket names ([`serve`]): a registry that points at the wrong node
//! gives `doc_not_found`, not a loop. A missing or wrong proof makes a request a client's like
//! any other, so it cannot make a node serve from its own disk what the ticket places on
//! another. A proof is bound to one ticket and one chunk, and only lets a node skip passing
//! the request on: the holder still checks the ticket and every limit itself.
//!
//! **Bounds.** The relaying node checks the ticket before anything else and a `PUT` body
//! against the chunk's sealed length before passing it on ([`super`]); it reads at most that
//! length plus [`HEADROOM`] of answer, and gives up after [`RELAY_TIMEOUT`]. A holder that is
//! gone from the registry, cannot be reached, or answers in a way this reader does not take
//! is `503 doc_node_unavailable` ([`RelayError`], logged; the client sees only the code).

use std::time::Duration;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confer_proto::{DocId, DocOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::HttpRefusal;
use crate::state::AppState;
use crate::token::DocClaims;

/// The proof header, as on a relayed WebSocket ([`crate::ws::RELAY_PROOF`]).
pub(super) use crate::ws::RELAY_PROOF;

/// How long passing one chunk request on may take, connection to last byte.
pub(super) const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// Room for the holder's status line, headers and a refusal's JSON, beyond the chunk.
pub(super) const HEADROOM: u64 = 16 * 1024;

/// Where a chunk request with a good ticket is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serve<'a> {
    /// From this node's store (which answers `doc_not_found` when it holds no such document).
    Here,
    /// By the node with this id, which holds the document.
    There(&'a str),
}

/// The rule: a request is served here when its ticket names no node (a server on its own) or
/// this node, when another node relayed it (`proven`: one hop at most), and on a server not
/// in cluster mode; otherwise by the node its ticket names.
pub(super) fn serve<'a>(
    ticket_node: Option<&'a str>,
    this_node: Option<&str>,
    proven: bool,
) -> Serve<'a> {
    match (ticket_node, this_node) {
        (Some(named), Some(this)) if named != this && !proven => Serve::There(named),
        _ => Serve::Here,
    }
}

/// What [`RELAY_PROOF`] proves: this ticket, for this chunk, in this direction. Never an IP
/// address, so it cannot stand in for a relayed WebSocket's proof, nor that for this.
pub(super) fn proof_message(op: DocOp, doc_id: &DocId, index: u32, ticket: &str) -> String {
    format!(
        "doc relay {} {} {index} {ticket}",
        op.as_str(),
        doc_id.as_str()
    )
}

/// Why a request could not be passed on (for the log; the client gets
/// `doc_node_unavailable`).
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    /// Not in cluster mode, or the node left the registry (it died, was drained, or
    /// restarted under a new id).
    #[error("the node holding the document is not in the registry")]
    Gone,
    /// Redis did not answer in time.
    #[error("the registry did not answer")]
    Registry,
    /// Its `cluster.node_url` is not `http://HOST[:PORT][/PREFIX]`.
    #[error("the node's cluster.node_url is not a plain http:// URL")]
    NotHttp,
    /// Connecting, writing or reading failed.
    #[error("cannot reach the node holding the document: {0}")]
    Io(#[from] std::io::Error),
    /// It did not answer within [`RELAY_TIMEOUT`].
    #[error("the node holding the document did not answer in time")]
    Timeout,
    /// Its answer is not an HTTP/1.x response with a whole body.
    #[error("the node holding the document answered something that is not a whole response")]
    Malformed,
    /// Its answer is longer than the chunk can be.
    #[error("the node holding the document answered more than a chunk")]
    TooLarge,
}

/// A chunk request to pass on, checked by this node already. (No `Debug`: it holds a ticket.)
pub(super) struct Passed<'a> {
    pub(super) op: DocOp,
    pub(super) claims: &'a DocClaims,
    pub(super) index: u32,
    /// The ticket as the client sent it (verified: base64url and dots only).
    pub(super) ticket: &'a str,
    /// The `PUT` body (empty for a `GET`), within the chunk's sealed length.
    pub(super) body: &'a [u8],
    /// The chunk's largest sealed length.
    pub(super) chunk_max: u64,
}

/// What the holder answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) content_type: Option<String>,
    pub(super) body: Vec<u8>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let Ok(status) = StatusCode::from_u16(self.status) else {
            // `parse_answer` takes 200 to 599 only.
            return HttpRefusal::NodeUnavailable.into_response();
        };
        // A `Body`, not the bytes: those would get a content type the holder did not send.
        let mut r = (
            status,
            [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            axum::body::Body::from(self.body),
        )
            .into_response();
        if let Some(v) = self
            .content_type
            .and_then(|t| HeaderValue::from_str(&t).ok())
        {
            r.headers_mut().insert(CONTENT_TYPE, v);
        }
        r
    }
}

/// Passes `req` on to the node `node`: its answer, or `doc_node_unavailable`.
pub(super) async fn pass_on(state: &AppState, node: &str, req: &Passed<'_>) -> Response {
    match forward(state, node, req).await {
        Ok(answer) => answer.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot pass a document chunk request on");
            HttpRefusal::NodeUnavailable.into_response()
        }
    }
}

async fn forward(state: &AppState, node: &str, req: &Passed<'_>) -> Result<Answer, RelayError> {
    let cluster = state.cluster.as_ref().ok_or(RelayError::Gone)?;
    let url = match tokio::time::timeout(cluster.timeout(), cluster.node(node)).await {
        Ok(Ok(Some(info))) => info.url,
        Ok(Ok(None)) => return Err(RelayError::Gone),
        Ok(Err(_)) | Err(_) => return Err(RelayError::Registry),
    };
    let (authority, prefix) = split_url(&url).ok_or(RelayError::NotHttp)?;
    let proof = state.tokens.node_mac(&proof_message(
        req.op,
        &req.claims.doc_id,
        req.index,
        req.ticket,
    ));
    let request = request_bytes(authority, prefix, req, &proof);
    let limit = req.chunk_max.saturating_add(HEADROOM);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(socket_addr(authority)).await?;
        stream.write_all(&request).await?;
        let mut answer = Vec::new();
        // One byte past the limit tells a long answer from one exactly at it.
        (&mut stream)
            .take(limit.saturating_add(1))
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(RELAY_TIMEOUT, exchange)
        .await
        .map_err(|_| RelayError::Timeout)??;
    if answer.len() as u64 > limit {
        return Err(RelayError::TooLarge);
    }
    parse_answer(&answer)
}

/// `http://HOST[:PORT][/PREFIX]` as (authority, prefix without a trailing `/`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    // Nothing that could end a line of the request, or split it.
    let clean = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    (!authority.is_empty() && clean(authority) && clean(prefix)).then_some((authority, prefix))
}

/// Where to connect: the authority, with port 80 when it names none.
fn socket_addr(authority: &str) -> String {
    let has_port = match authority.rfind(']') {
        // `[v6]` or `[v6]:port`.
        Some(end) => authority[end..].starts_with("]:"),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    }
}

fn request_bytes(authority: &str, prefix: &str, req: &Passed<'_>, proof: &str) -> Vec<u8> {
    let method = match req.op {
        DocOp::Up => "PUT",
        DocOp::Down => "GET",
    };
    let head = format!(
        "{method} {prefix}/docs/{}/{} HTTP/1.1\r\nHost: {authority}\r\n\
         Authorization: Bearer {}\r\n{RELAY_PROOF}: {proof}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        req.claims.doc_id.as_str(),
        req.index,
        req.ticket,
        req.body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(req.body);
    bytes
}

/// Reads a whole HTTP/1.x answer: a final status (200 to 599), its content type, and a body
/// as long as its `Content-Length` says (or up to the end, when it says none). A chunked
/// answer is not taken (the holder never sends one: its bodies have a known length).
fn parse_answer(bytes: &[u8]) -> Result<Answer, RelayError> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(RelayError::Malformed)?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| RelayError::Malformed)?;
    let body = &bytes[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(RelayError::Malformed)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(RelayError::Malformed);
    }
    let status: u16 = code.parse().map_err(|_| RelayError::Malformed)?;
    if !(200..=599).contains(&status) {
        return Err(RelayError::Malformed);
    }
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(RelayError::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| RelayError::Malformed)?;
            if length.is_some_and(|m| m != n) {
                return Err(RelayError::Malformed);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RelayError::Malformed);
        }
    }
    if length.is_some_and(|n| n != body.len()) {
        // Cut short, or more than it said.
        return Err(RelayError::Malformed);
    }
    Ok(Answer {
        status,
        content_type,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKind;
    use confer_proto::{ParticipantId, SessionId};

    #[test]
    fn a_request_goes_on_only_to_the_other_node_its_ticket_names_and_never_twice() {
        use Serve::{Here, There};
        // (ticket names, this node, relayed with a valid proof) → where it is served.
        let table = [
            (None, None, false, Here),
            (None, Some("n1"), false, Here),
            (Some("n0"), None, false, Here),
            (Some("n1"), Some("n1"), false, Here),
            (Some("n0"), Some("n1"), false, There("n0")),
            (Some("n0"), Some("n1"), true, Here),
            (Some("n1"), Some("n1"), true, Here),
            (None, Some("n1"), true, Here),
        ];
        for (named, this, proven, want) in table {
            assert_eq!(
                serve(named, this, proven),
                want,
                "{named:?} {this:?} {proven}"
            );
        }
    }

    fn claims() -> DocClaims {
        DocClaims {
            kind: TokenKind::Doc,
            session: SessionId::new("s1").unwrap(),
            instance: "0a".repeat(16),
            pid: ParticipantId::new("p1").unwrap(),
            doc_id: DocId::new("ab".repeat(16)).unwrap(),
            op: DocOp::Up,
            size: 10,
            chunks: 1,
            exp: 1_000,
            node: Some("n0".to_owned()),
        }
    }

    #[test]
    fn a_proof_is_bound_to_its_ticket_chunk_and_direction() {
        let id = DocId::new("ab".repeat(16)).unwrap();
        let m = proof_message(DocOp::Up, &id, 1, "t.t.t");
        assert_eq!(m, format!("doc relay up {} 1 t.t.t", id.as_str()));
        for other in [
            proof_message(DocOp::Down, &id, 1, "t.t.t"),
            proof_message(DocOp::Up, &id, 2, "t.t.t"),
            proof_message(DocOp::Up, &id, 1, "t.t.u"),
        ] {
            assert_ne!(m, other);
        }
        assert!(m.parse::<std::net::IpAddr>().is_err());
    }

    #[test]
    fn the_request_repeats_method_path_ticket_and_body_with_the_proof() {
        let c = claims();
        let req = Passed {
            op: DocOp::Up,
            claims: &c,
            index: 0,
            ticket: "a.b.c",
            body: b"sealed",
            chunk_max: 26,
        };
        let bytes = request_bytes("10.0.0.5:7880", "/confer", &req, "f00d");
        let want = format!(
            "PUT /confer/docs/{}/0 HTTP/1.1\r\nHost: 10.0.0.5:7880\r\n\
             Authorization: Bearer a.b.c\r\nx-confer-relay-proof: f00d\r\n\
             Content-Length: 6\r\nConnection: close\r\n\r\nsealed",
            c.doc_id.as_str()
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), want);
        let get = Passed {
            op: DocOp::Down,
            body: b"",
            ..req
        };
        let bytes = String::from_utf8(request_bytes("h", "", &get, "f00d")).unwrap();
        assert!(bytes.starts_with(&format!("GET /docs/{}/0 HTTP/1.1\r\n", c.doc_id.as_str())));
        assert!(bytes.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn node_urls_are_plain_http_with_an_optional_port_and_prefix() {
        assert_eq!(
            split_url("http://10.0.0.5:7880"),
            Some(("10.0.0.5:7880", ""))
        );
        assert_eq!(split_url("http://h/confer/"), Some(("h", "/confer")));
        assert_eq!(split_url("https://h:443"), None);
        assert_eq!(split_url("h:7880"), None);
        assert_eq!(split_url("http://"), None);
        assert_eq!(split_url("http://h\r\nX: y"), None);
        assert_eq!(socket_addr("10.0.0.5:7880"), "10.0.0.5:7880");
        assert_eq!(socket_addr("h"), "h:80");
        assert_eq!(socket_addr("[::1]:7880"), "[::1]:7880");
        assert_eq!(socket_addr("[::1]"), "[::1]:80");
    }

    #[test]
    fn an_answer_is_taken_whole_or_not_at_all() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                   Content-Length: 3\r\ncache-control: no-store\r\n\r\nabc";
        assert_eq!(
            parse_answer(ok).unwrap(),
            Answer {
                status: 200,
                content_type: Some("application/octet-stream".to_owned()),
                body: b"abc".to_vec(),
            }
        );
        let created = b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_answer(created).unwrap().status, 201);
        let refused = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                        content-length: 17\r\n\r\n{\"code\":\"gone\"}\r\n";
        assert_eq!(parse_answer(refused).unwrap().status, 404);
        // Until the end when no length is given.
        let open = b"HTTP/1.0 200 OK\r\n\r\nabc";
        assert_eq!(parse_answer(open).unwrap().body, b"abc");
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 2\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 +20 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 \xff\r\n\r\n",
        ] {
            assert!(
                matches!(parse_answer(bad), Err(RelayError::Malformed)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
