//! Documents in cluster mode, with real parts (a real `redis-server`, real `confer serve`
//! processes, [`super::cluster`]). A document lives on the disk of the node that owns its
//! session; its chunk requests may reach any node, as behind a load balancer, and that node
//! passes them on to the one its ticket names, one hop at most. When that node is gone, the
//! request is refused with `503 doc_node_unavailable`, and the document with it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use confer_e2ee::doc::DocCipher;
use confer_e2ee::secret::Secret32;
use confer_proto::{ClientMessage, DocId, DocOp, ErrorCode, Role, ServerMessage, Side, doc_chunks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cluster::{Cluster, member};
use super::harness::{Peer, PeerState};

const CANARY: &[u8] = b"CLUSTER-DOCUMENT-CANARY: B pays A 40,000 by 1 March. ";

/// A sealed document: its id, its file, its chunks, and the key that opens them.
struct Sealed {
    id: DocId,
    file: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    cipher: DocCipher,
}

fn seal(size: usize) -> Sealed {
    let file: Vec<u8> = CANARY.iter().copied().cycle().take(size).collect();
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).unwrap();
    let cipher = DocCipher::new(&Secret32::new(key), id);
    let chunks = cipher.seal_all(&file);
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    Sealed {
        id: DocId::new(hex).unwrap(),
        file,
        chunks,
        cipher,
    }
}

/// Asks for a ticket over signalling (through whichever node the peer is connected to).
async fn ticket(p: &mut Peer, ask: ClientMessage, doc: &DocId, op: DocOp) -> String {
    let seen = p.with(|s| s.inbound.len());
    p.send(ask);
    p.until(|s| {
        s.inbound[seen..].iter().find_map(|m| match m {
            ServerMessage::DocTicket {
                doc_id,
                op: o,
                token,
                ..
            } if doc_id == doc && *o == op => Some(token.clone()),
            ServerMessage::Error { code, message, .. } => {
                panic!("no ticket: {code:?} {message}")
            }
            _ => None,
        })
    })
    .await
}

/// The node a ticket names (its `node` claim).
fn node_of(ticket: &str) -> Option<String> {
    let payload = ticket.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    claims["node"].as_str().map(str::to_owned)
}

/// One HTTP/1.1 chunk request: (status, body). `proof` sends an `x-confer-relay-proof`.
async fn chunk(
    addr: SocketAddr,
    method: &str,
    doc: &DocId,
    index: usize,
    ticket: &str,
    proof: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let proof = proof.map_or(String::new(), |p| format!("x-confer-relay-proof: {p}\r\n"));
    let head = format!(
        "{method} /docs/{}/{index} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {ticket}\r\n{proof}Content-Length: {}\r\n\r\n",
        doc.as_str(),
        body.len()
    );
    s.write_all(&[head.as_bytes(), body].concat())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&buf[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, buf[end + 4..].to_vec())
}

/// Asserts that a chunk request was refused with `status` and the stable `code`.
fn refused(reply: &(u16, Vec<u8>), status: u16, code: &str) {
    let v: serde_json::Value = serde_json::from_slice(&reply.1).unwrap();
    assert_eq!((reply.0, v["code"].as_str()), (status, Some(code)));
}

/// Two nodes; the mediator on node 0, which owns the session; party A relayed through
/// node 1. Both resume on either node when their connection drops, as behind a load
/// balancer.
struct TwoNodes {
    c: Cluster,
    /// The id of node 0, the session's owner.
    owner: String,
    m: Peer,
    a: Peer,
}

async fn two_nodes() -> TwoNodes {
    let c = Cluster::start(2).await;
    let (redis, tokens, nodes, addrs, session) =
        (&c.redis, &c.tokens, &c.nodes, &c.addrs, &c.session);
    let mut m = member(addrs[0], addrs, tokens, session, Role::Mediator, None).await;
    m.secured_in("joint").await;
    let mut a = member(addrs[1], addrs, tokens, session, Role::Party, Some(Side::A)).await;
    a.secured_in("joint").await;
    let (owner, _) = redis.owner(session).await.expect("an owner");
    assert_eq!(redis.node_url(&owner).await, Some(nodes[0].url()));
    TwoNodes { c, owner, m, a }
}

fn welcomes(s: &PeerState) -> usize {
    s.inbound
        .iter()
        .filter(|m| matches!(m, ServerMessage::Welcome { .. }))
        .count()
}

#[tokio::test]
async fn a_document_on_one_node_is_shared_and_opened_through_another() {
    // The cluster (Redis, nodes) lives to the end of the test (it stops when dropped).
    let TwoNodes {
        c,
        owner,
        mut m,
        mut a,
    } = two_nodes().await;
    let nodes = &c.nodes;
    let via = nodes[1].addr;

    // A, whose connection node 1 relays, shares a document of three chunks; its ticket names
    // node 0, where the session lives, and its chunks go up through node 1.
    let doc = seal(150_000);
    assert_eq!(doc.chunks.len(), 3);
    let size = doc.file.len() as u64;
    let ask = ClientMessage::DocUpload {
        doc_id: doc.id.clone(),
        size,
        chunks: u32::try_from(doc_chunks(size)).unwrap(),
    };
    let up = ticket(&mut a, ask, &doc.id, DocOp::Up).await;
    assert_eq!(node_of(&up), Some(owner.clone()));
    for (i, c) in doc.chunks.iter().enumerate() {
        assert_eq!(chunk(via, "PUT", &doc.id, i, &up, None, c).await.0, 201);
    }

    // The mediator, connected to node 0, reads them through node 1 and opens the same bytes.
    let ask = ClientMessage::DocDownload {
        doc_id: doc.id.clone(),
    };
    let down = ticket(&mut m, ask, &doc.id, DocOp::Down).await;
    assert_eq!(node_of(&down), Some(owner));
    let mut opened = Vec::new();
    for (i, sealed) in doc.chunks.iter().enumerate() {
        let (status, body) = chunk(via, "GET", &doc.id, i, &down, None, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(&body, sealed, "served byte for byte");
        let last = i + 1 == doc.chunks.len();
        opened.extend(doc.cipher.open_chunk(i as u64, last, &body).unwrap());
    }
    assert_eq!(opened, doc.file);

    // A proof that is not a node's does not make node 1 serve from its own disk (where it
    // would be `doc_not_found`): the requests still go to node 0, which answers for them.
    for proof in ["", "forged", &"0".repeat(64)] {
        let (status, body) = chunk(via, "GET", &doc.id, 1, &down, Some(proof), &[]).await;
        assert_eq!((status, &body), (200, &doc.chunks[1]), "proof {proof:?}");
        let put = chunk(via, "PUT", &doc.id, 1, &up, Some(proof), &doc.chunks[1]).await;
        refused(&put, 409, "chunk_exists");
    }
    // Node 1 checks a request before passing it on: a chunk longer than its sealed length, or
    // a ticket for the other direction, is refused there.
    let long = chunk(via, "PUT", &doc.id, 2, &up, None, &doc.chunks[0]).await;
    refused(&long, 413, "chunk_too_large");
    refused(
        &chunk(via, "GET", &doc.id, 0, &up, None, &[]).await,
        403,
        "ticket_wrong_op",
    );
}

#[tokio::test]
async fn a_document_whose_node_is_gone_is_refused_as_unavailable_and_lost() {
    let TwoNodes {
        mut c,
        owner,
        mut m,
        mut a,
    } = two_nodes().await;
    let (redis, nodes, session) = (&c.redis, &mut c.nodes, &c.session);
    let via = nodes[1].addr;
    let doc = seal(1_000);
    let ask = ClientMessage::DocUpload {
        doc_id: doc.id.clone(),
        size: doc.file.len() as u64,
        chunks: 1,
    };
    let up = ticket(&mut a, ask, &doc.id, DocOp::Up).await;
    let put = chunk(via, "PUT", &doc.id, 0, &up, None, &doc.chunks[0]).await;
    assert_eq!(put.0, 201);
    let ask = ClientMessage::DocDownload {
        doc_id: doc.id.clone(),
    };
    let down = ticket(&mut m, ask, &doc.id, DocOp::Down).await;

    // Node 0 dies. At once (still in the registry, refusing connections) and once it has
    // left the registry, node 1 answers for it: unavailable, never "not found" from its own
    // disk.
    nodes[0].kill().await;
    let get = chunk(via, "GET", &doc.id, 0, &down, None, &[]).await;
    refused(&get, 503, "doc_node_unavailable");
    let gone = Instant::now() + Duration::from_secs(10);
    while redis.node_url(&owner).await.is_some() {
        assert!(Instant::now() < gone, "node 0 stays in the registry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = chunk(via, "GET", &doc.id, 0, &down, None, &[]).await;
    refused(&get, 503, "doc_node_unavailable");
    let put = chunk(via, "PUT", &doc.id, 0, &up, None, &doc.chunks[0]).await;
    refused(&put, 503, "doc_node_unavailable");

    // A registry entry that gives node 0 a wrong address (here node 1's own) makes node 1
    // pass the request to itself, with its proof: it is served there (node 1 holds no such
    // document), one hop, not passed round until something times out.
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("confer:node:{owner}");
    let wrong = serde_json::json!({"url": nodes[1].url(), "sessions": 0, "draining": false});
    let () = redis::cmd("SET")
        .arg(&key)
        .arg(wrong.to_string())
        .arg("PX")
        .arg(10_000)
        .query_async(&mut c)
        .await
        .unwrap();
    let asked = Instant::now();
    let get = chunk(via, "GET", &doc.id, 0, &down, None, &[]).await;
    refused(&get, 404, "doc_not_found");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();

    // Node 1 takes the session over (the mediator is welcomed back there); the document
    // stayed behind with node 0, so asking for it again finds nothing.
    m.until_true(|s| welcomes(s) >= 2 && s.addr == via).await;
    let seen = m.with(|s| s.inbound.len());
    m.send(ClientMessage::DocDownload {
        doc_id: doc.id.clone(),
    });
    let answer = m
        .until(|s| {
            s.inbound[seen..].iter().find_map(|x| match x {
                ServerMessage::Error { code, .. } => Some(*code),
                ServerMessage::DocTicket { .. } => panic!("a ticket for a document that is gone"),
                _ => None,
            })
        })
        .await;
    assert_eq!(answer, ErrorCode::NotFound);
    let (new_owner, _) = redis.owner(session).await.expect("a new owner");
    assert_ne!(new_owner, owner);
}
