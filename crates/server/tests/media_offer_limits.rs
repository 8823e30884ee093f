//! `media_offer` through the real binary: an offer from the waiting room is answered only once
//! its sender is admitted (the SFU does no work for the waiting room, and the connection goes
//! on meanwhile), and a participant's offers sooner than `media_offer_interval_ms` apart get
//! `rate_limited` (the unit test in `session.rs` pins the timing in paused time).

mod common;

use common::*;
use confer_proto::{ErrorCode, ServerMessage};
use confer_testkit::media::ClientOffer;
use confer_testkit::ws::WsClient;
use serde_json::json;

fn offer() -> serde_json::Value {
    let peer = ClientOffer::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        1,
        std::time::Instant::now(),
    );
    json!({"type": "media_offer", "sdp": peer.offer.to_sdp_string()})
}

#[tokio::test]
async fn an_offer_from_the_waiting_room_is_answered_after_admission_and_offers_are_spaced() {
    let dir = temp_dir("offer-limits");
    // Long enough that the second offer below is always too soon.
    let serve = Serve::start_env(&dir, &[("CONFER_MEDIA_OFFER_INTERVAL_MS", "600000")]).await;
    let s = "s-offers";
    let (mut m, _) = WsClient::join(serve.addr, &serve.token(s, "mediator", None)).await;
    let (mut a, wa) = WsClient::join(serve.addr, &serve.token(s, "party", Some("A"))).await;
    let pa = pid(&wa);

    a.send(offer()).await;
    // The connection is not held up by its parked offer.
    let meanwhile = a.sync().await;
    assert!(
        !meanwhile
            .iter()
            .any(|x| matches!(x, ServerMessage::MediaAnswer { .. })),
        "{meanwhile:?}"
    );
    a.send(json!({"type": "consent", "agreement_hash": HASH}))
        .await;
    a.recv_until(|x| *x == ServerMessage::ConsentRecorded).await;
    m.send(json!({"type": "admit", "participant_id": pa.as_str()}))
        .await;
    let answer = a
        .recv_until(|x| {
            matches!(
                x,
                ServerMessage::MediaAnswer { .. } | ServerMessage::Error { .. }
            )
        })
        .await;
    assert!(
        matches!(answer, ServerMessage::MediaAnswer { ref sdp } if sdp.contains("a=ice-lite")),
        "{answer:?}"
    );

    // A second offer within the interval: refused with a stable code, the connection open.
    a.send(offer()).await;
    let refused = a
        .recv_until(|x| {
            matches!(
                x,
                ServerMessage::MediaAnswer { .. } | ServerMessage::Error { .. }
            )
        })
        .await;
    assert!(
        matches!(refused, ServerMessage::Error { code: ErrorCode::RateLimited, in_reply_to: Some(ref r), .. } if r == "media_offer"),
        "{refused:?}"
    );
    assert!(
        a.sync()
            .await
            .iter()
            .all(|x| !matches!(x, ServerMessage::Error { .. }))
    );
    // The mediator's offers are its own.
    m.send(offer()).await;
    assert!(matches!(
        m.recv_until(|x| matches!(
            x,
            ServerMessage::MediaAnswer { .. } | ServerMessage::Error { .. }
        ))
        .await,
        ServerMessage::MediaAnswer { .. }
    ));
    serve.signal_term();
    m.recv_until(|x| *x == ServerMessage::Draining).await;
    serve.signal_term();
    serve.wait().await;
    std::fs::remove_dir_all(dir).unwrap();
}
