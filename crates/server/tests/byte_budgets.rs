//! Each connection has a byte budget besides its message budget, and a participant in the
//! waiting room a much smaller relay budget: over either, `rate_limited` with its human
//! message, the frame dropped, and everyone else unaffected. Real sockets, the real binary.

mod common;

use common::*;
use confer_proto::{ErrorCode, ServerMessage};
use confer_testkit::ws::WsClient;
use serde_json::json;

fn relay_to(c: serde_json::Value, data: &str) -> serde_json::Value {
    json!({"type": "relay", "to": c, "data": data})
}

fn is_rate_limited(m: &ServerMessage) -> bool {
    matches!(m, ServerMessage::Error { code, message, .. }
        if *code == ErrorCode::RateLimited && message == ErrorCode::RateLimited.message())
}

#[tokio::test]
async fn a_connection_over_its_byte_budget_is_refused_and_others_go_on() {
    let dir = temp_dir("byte-budget");
    // 8 KiB at once, then 1 byte a second: nothing refills during the test.
    let serve = Serve::start_env(
        &dir,
        &[
            ("CONFER_MAX_FRAME_BYTES", "4096"),
            ("CONFER_RATE_LIMIT_BYTES_PER_SEC", "1"),
            ("CONFER_RATE_LIMIT_BURST_BYTES", "8192"),
        ],
    )
    .await;
    let s = "s-bytes";
    let (mut m, wm) = WsClient::join(serve.addr, &serve.token(s, "mediator", None)).await;
    let (mut a, wa) = WsClient::join(serve.addr, &serve.token(s, "party", Some("A"))).await;
    let (ma, pa) = (pid(&wm), pid(&wa));
    a.send(json!({"type": "consent", "agreement_hash": HASH}))
        .await;
    assert_eq!(a.recv().await, ServerMessage::ConsentRecorded);
    m.send(json!({"type": "admit", "participant_id": pa.as_str()}))
        .await;
    a.recv_until(|x| matches!(x, ServerMessage::Channel { .. }))
        .await;

    // Three frames of about 3 KiB: the third goes over 8 KiB.
    let big = "b".repeat(3000);
    for _ in 0..3 {
        a.send(relay_to(json!({"channel": "joint"}), &big)).await;
    }
    assert!(is_rate_limited(
        &a.recv_until(|x| matches!(x, ServerMessage::Error { .. }))
            .await
    ));
    let got = m
        .recv_until(|x| matches!(x, ServerMessage::Relayed { .. }))
        .await;
    assert!(matches!(got, ServerMessage::Relayed { ref data, .. } if *data == big));
    m.recv_until(|x| matches!(x, ServerMessage::Relayed { .. }))
        .await;
    // The mediator's own budget is untouched: its relay reaches A, and A's third frame never
    // arrived.
    m.send(relay_to(json!({"participant": pa.as_str()}), "from-m"))
        .await;
    let next = a
        .recv_until(|x| matches!(x, ServerMessage::Relayed { .. }))
        .await;
    assert!(
        matches!(next, ServerMessage::Relayed { ref data, ref from, .. } if data == "from-m" && *from == ma)
    );
    assert!(
        m.sync()
            .await
            .iter()
            .all(|x| !matches!(x, ServerMessage::Relayed { .. })),
        "the refused frame was dropped"
    );
    serve.signal_term();
    m.recv_until(|x| *x == ServerMessage::Draining).await;
    serve.signal_term();
    serve.wait().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_waiting_room_has_a_much_smaller_relay_budget() {
    let dir = temp_dir("waiting-budget");
    let serve = Serve::start_env(
        &dir,
        &[
            ("CONFER_WAITING_RELAY_BYTES_PER_SEC", "1"),
            ("CONFER_WAITING_RELAY_BURST_BYTES", "2048"),
        ],
    )
    .await;
    let s = "s-waiting";
    let (mut m, wm) = WsClient::join(serve.addr, &serve.token(s, "mediator", None)).await;
    let (mut a, _) = WsClient::join(serve.addr, &serve.token(s, "party", Some("A"))).await;
    let (mut b, _) = WsClient::join(serve.addr, &serve.token(s, "party", Some("B"))).await;
    let ma = pid(&wm);
    let announce = "a".repeat(900);
    // Two announcements of 900 bytes fit; a third does not.
    for _ in 0..3 {
        a.send(relay_to(json!({"participant": ma.as_str()}), &announce))
            .await;
    }
    let refused = a
        .recv_until(|x| matches!(x, ServerMessage::Error { .. }))
        .await;
    assert!(is_rate_limited(&refused), "{refused:?}");
    assert!(
        matches!(refused, ServerMessage::Error { in_reply_to: Some(ref r), .. } if r == "relay")
    );
    // Its consent still goes through (consent is not a relay), and B, waiting beside it, has
    // its own budget.
    a.send(json!({"type": "consent", "agreement_hash": HASH}))
        .await;
    assert_eq!(
        a.recv_until(|x| *x == ServerMessage::ConsentRecorded).await,
        ServerMessage::ConsentRecorded
    );
    b.send(relay_to(
        json!({"participant": ma.as_str()}),
        "hello-from-b",
    ))
    .await;
    let mut from_waiting = Vec::new();
    loop {
        match m.recv().await {
            ServerMessage::Relayed { data, .. } if data == "hello-from-b" => break,
            ServerMessage::Relayed { data, .. } => from_waiting.push(data),
            _ => {}
        }
    }
    assert_eq!(from_waiting, [announce.clone(), announce]);
    serve.signal_term();
    m.recv_until(|x| *x == ServerMessage::Draining).await;
    serve.signal_term();
    serve.wait().await;
    std::fs::remove_dir_all(dir).unwrap();
}
