//! A WebSocket test client speaking Confer's signalling protocol over a real socket.

use std::net::SocketAddr;
use std::time::Duration;

use confer_proto::ServerMessage;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected frame before failing. Generous: it bounds a hang,
/// it does not pace the test.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What a read produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A decoded server message.
    Msg(ServerMessage),
    /// The server closed with this code and reason.
    Closed(u16, String),
    /// The stream ended without a close frame.
    Gone,
}

/// A signalling client.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The client's own socket address (to prove it never reaches the logs).
    pub local_addr: SocketAddr,
}

impl WsClient {
    /// Connects to `ws://addr/ws`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("connect to the test server");
        let local_addr = match ws.get_ref() {
            MaybeTlsStream::Plain(s) => s.local_addr().expect("local addr"),
            _ => unreachable!("plain ws only"),
        };
        Self { ws, local_addr }
    }

    /// Connects and says hello; returns the first answer.
    pub async fn join(addr: SocketAddr, token: &str) -> (Self, ServerMessage) {
        let mut c = Self::connect(addr).await;
        c.hello(token).await;
        let first = c.recv().await;
        (c, first)
    }

    /// Sends `hello` with this token.
    pub async fn hello(&mut self, token: &str) {
        self.send(serde_json::json!({"type": "hello", "version": 1, "token": token}))
            .await;
    }

    /// Sends a JSON value as a text frame.
    pub async fn send(&mut self, v: serde_json::Value) {
        self.send_text(v.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, s: String) {
        self.ws.send(Message::text(s)).await.expect("send");
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, m: Message) -> bool {
        self.ws.send(m).await.is_ok()
    }

    /// The next event (message, close, or end).
    pub async fn next_event(&mut self) -> Event {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for the server");
            match next {
                Some(Ok(Message::Text(t))) => {
                    let msg = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("undecodable server frame {t}: {e}"));
                    return Event::Msg(msg);
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((u16::from(CloseCode::Status), String::new()));
                    return Event::Closed(code, reason);
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Gone,
            }
        }
    }

    /// The next message; panics on close.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next_event().await {
            Event::Msg(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Skips messages until one matches.
    pub async fn recv_until(
        &mut self,
        mut pred: impl FnMut(&ServerMessage) -> bool,
    ) -> ServerMessage {
        loop {
            let m = self.recv().await;
            if pred(&m) {
                return m;
            }
        }
    }

    /// Skips messages until the server closes; returns the close code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            match self.next_event().await {
                Event::Msg(_) => continue,
                Event::Closed(code, _) => return code,
                Event::Gone => return 1006,
            }
        }
    }

    /// Round-trips a ping: everything the server queued for us before is read first.
    pub async fn sync(&mut self) -> Vec<ServerMessage> {
        self.send(serde_json::json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                ServerMessage::Pong => return before,
                m => before.push(m),
            }
        }
    }

    /// Drops the TCP connection without a close handshake.
    pub fn kill(self) {
        drop(self.ws);
    }
}

/// A plain HTTP/1.1 GET over a fresh TCP connection: `(status, body)`.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("timed out reading the HTTP response")
        .expect("read response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of a Prometheus sample (`name` including any labels) in a `/metrics` body;
/// `None` when it is not there.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
