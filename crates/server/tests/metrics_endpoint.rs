//! Metrics on their own port: connections, sessions, relays, errors by code; no personal data.

mod common;

use common::*;
use confer_testkit::ws::http_get;

#[tokio::test]
async fn metrics_count_relays_and_errors_without_ids() {
    let dir = temp_dir("metrics");
    let serve = Serve::start(&dir).await;
    let session = "s-metrics";
    let tokens = serve.trio(session);
    let trace = short_session(serve.addr, tokens, "payload").await;
    // One refused token for an error count.
    let (mut c, _) = confer_testkit::ws::WsClient::join(serve.addr, "bogus").await;
    assert_eq!(c.closed().await, 4401);
    let (status, body) = http_get(serve.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        confer_testkit::ws::metric(&body, name)
            .unwrap_or_else(|| panic!("{name} missing in\n{body}"))
    };
    assert_eq!(value("confer_relayed_messages_total"), 1.0);
    assert_eq!(value("confer_relayed_bytes_total"), 7.0);
    assert_eq!(value("confer_sessions_total"), 1.0);
    assert_eq!(value("confer_errors_total{code=\"unauthorized\"}"), 1.0);
    assert!(value("confer_connections_total") >= 4.0);
    for id in &trace.participant_ids {
        assert!(!body.contains(id.as_str()));
    }
    assert!(!body.contains(session));
    // Metrics are not served on the public port.
    assert_eq!(http_get(serve.addr, "/metrics").await.0, 404);
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    std::fs::remove_dir_all(dir).unwrap();
}
