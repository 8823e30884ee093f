//! HTTP routes: health, readiness, the WebSocket, document chunks ([`crate::docs`]), the
//! console's API ([`crate::console`]), the web client or landing page ([`crate::web`]), and
//! metrics.

use std::sync::Arc;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::state::AppState;
use crate::web::WebRoot;

// The WebSocket layer refuses frames over this many times the configured limit outright
// (close 1009); between the limit and this, the server answers `frame_too_large` and keeps
// the connection, so a client learns what went wrong.
const HARD_LIMIT_FACTOR: usize = 4;

/// The public port: the API routes, the page (`web` when there is a web root), and the strict
/// headers of [`crate::web::security_headers`] on every response.
pub(crate) fn router(
    state: Arc<AppState>,
    web: Option<WebRoot>,
    console: Arc<crate::console::Console>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/ws", get(ws))
        .with_state(state.clone())
        .merge(crate::docs::router(state))
        .merge(crate::console::router(console))
        .merge(crate::web::router(web))
        .layer(axum::middleware::map_response(crate::web::security_headers))
}

/// The registry's metrics, then this server's media thread's counters (read at each scrape).
pub(crate) fn metrics_router(
    handle: PrometheusHandle,
    media: Vec<Arc<crate::media::MediaMetrics>>,
) -> Router {
    Router::new().route(
        "/metrics",
        get(move || async move {
            let mut page = handle.render();
            if !media.is_empty() {
                page.push_str(&crate::media::render(&media));
            }
            page
        }),
    )
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn ws(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Cluster mode: a connection another node relays counts as its client's, when the node
    // proves it holds the cluster's signing secret. Anything else is taken as it comes.
    let relayed_for = state.cluster.as_ref().and_then(|_| {
        let ip = headers.get(crate::ws::RELAYED_FOR)?.to_str().ok()?;
        let proof = headers.get(crate::ws::RELAY_PROOF)?.to_str().ok()?;
        let parsed: std::net::IpAddr = ip.parse().ok()?;
        state.tokens.check_node_mac(ip, proof).then_some(parsed)
    });
    let peer = crate::ws::Peer {
        ip: relayed_for.unwrap_or(peer.ip()),
        relayed: relayed_for.is_some(),
    };
    // Before the upgrade: a refused stranger costs no WebSocket, task or queue.
    let pass = match state.gate.enter(peer.ip) {
        Ok(pass) => pass,
        Err(refused) => {
            crate::metrics::connection_refused(refused.as_str());
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "5")],
                "too many connections waiting for hello; try again shortly\n",
            )
                .into_response();
        }
    };
    let hard = state
        .config
        .max_frame_bytes
        .saturating_mul(HARD_LIMIT_FACTOR)
        .max(1024);
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| crate::ws::serve(socket, state, pass, peer))
}
