//! Connections that have not completed `hello` are capped in all
//! (`max_unauthenticated_connections`) and per client address
//! (`max_unauthenticated_per_address`): past a cap the WebSocket upgrade gets HTTP 503, and a
//! place comes back when a connection completes hello or is closed. Real sockets, the real
//! binary; clients on 127.0.0.2 and 127.0.0.3 are other addresses.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use confer_proto::ServerMessage;
use confer_testkit::ws::{WsClient, http_get};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `ws://server/ws` from `from`: the socket, or the HTTP status of a refused upgrade.
async fn open_from(from: [u8; 4], server: SocketAddr) -> Result<Ws, u16> {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::from(from), 0))
        .expect("bind a loopback address");
    let tcp = socket.connect(server).await.expect("connect");
    match tokio_tungstenite::client_async(format!("ws://{server}/ws"), MaybeTlsStream::Plain(tcp))
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

#[tokio::test]
async fn caps_in_all_and_per_address_and_places_come_back() {
    let dir = temp_dir("unauth-caps");
    let serve = Serve::start_env(
        &dir,
        &[
            ("CONFER_MAX_UNAUTHENTICATED_CONNECTIONS", "3"),
            ("CONFER_MAX_UNAUTHENTICATED_PER_ADDRESS", "2"),
        ],
    )
    .await;
    let addr = serve.addr;

    // Two from 127.0.0.1 fill its share; a third is refused before any upgrade.
    let _one = WsClient::connect(addr).await;
    let mut two = WsClient::connect(addr).await;
    assert_eq!(open_from([127, 0, 0, 1], addr).await.err(), Some(503));
    // Another address still gets in, up to the cap in all.
    let _other = open_from([127, 0, 0, 2], addr).await.unwrap();
    assert_eq!(open_from([127, 0, 0, 3], addr).await.err(), Some(503));

    // Completing hello gives the place back (the pong comes after the join was handled).
    let token = serve.token("s-caps", "mediator", None);
    two.hello(&token).await;
    assert!(matches!(two.recv().await, ServerMessage::Welcome { .. }));
    two.sync().await;
    let mut third = open_from([127, 0, 0, 3], addr).await.unwrap();
    assert_eq!(open_from([127, 0, 0, 3], addr).await.err(), Some(503));

    // So does a connection the server closes (here: a bad token, 4401).
    use futures_util::{SinkExt, StreamExt};
    third
        .send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"hello","version":1,"token":"bogus"}"#,
        ))
        .await
        .unwrap();
    loop {
        match third.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4401));
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected close 4401, got {other:?}"),
        }
    }
    let _fourth = open_from([127, 0, 0, 3], addr).await.unwrap();

    // A joined participant is unaffected by the caps: the session answers.
    assert!(two.sync().await.is_empty());

    let (_, body) = http_get(serve.metrics, "/metrics").await;
    let refused = |reason: &str| {
        confer_testkit::ws::metric(
            &body,
            &format!("confer_connections_refused_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refused("unauthenticated_per_address"), Some(1.0));
    assert_eq!(refused("unauthenticated_total"), Some(2.0));
    serve.signal_term();
    two.recv_until(|x| *x == ServerMessage::Draining).await;
    serve.signal_term();
    let (_, logs) = serve.wait().await;
    for ip in ["127.0.0.2", "127.0.0.3"] {
        assert!(!logs.contains(ip), "an address in the logs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
