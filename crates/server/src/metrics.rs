//! Prometheus metrics. Labels never carry personal data: only error codes.

use std::sync::OnceLock;

use confer_proto::ErrorCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding the server); then
            // this handle renders an empty page rather than failing the server.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub(crate) fn connection_opened() {
    metrics::gauge!("confer_connections").increment(1.0);
    metrics::counter!("confer_connections_total").increment(1);
}

pub(crate) fn connection_closed() {
    metrics::gauge!("confer_connections").decrement(1.0);
}

pub(crate) fn session_opened() {
    metrics::gauge!("confer_sessions").increment(1.0);
    metrics::counter!("confer_sessions_total").increment(1);
}

pub(crate) fn session_closed() {
    metrics::gauge!("confer_sessions").decrement(1.0);
}

pub(crate) fn relayed(bytes: usize) {
    metrics::counter!("confer_relayed_messages_total").increment(1);
    metrics::counter!("confer_relayed_bytes_total").increment(bytes as u64);
}

pub(crate) fn error(code: ErrorCode) {
    metrics::counter!("confer_errors_total", "code" => code.as_str()).increment(1);
}

pub(crate) fn slow_consumer() {
    metrics::counter!("confer_slow_consumer_drops_total").increment(1);
}

pub(crate) fn connection_refused(reason: &'static str) {
    metrics::counter!("confer_connections_refused_total", "reason" => reason).increment(1);
}

/// Cluster mode: a session taken over from the state another node wrote.
pub(crate) fn session_restored() {
    metrics::counter!("confer_cluster_sessions_restored_total").increment(1);
}

/// Cluster mode: sessions this node holds a lease on (+1 / -1).
pub(crate) fn cluster_owned(delta: f64) {
    metrics::gauge!("confer_cluster_sessions_owned").increment(delta);
}

/// Cluster mode: a lease lost (not renewed in time, or taken by another node).
pub(crate) fn cluster_lease_lost() {
    metrics::counter!("confer_cluster_leases_lost_total").increment(1);
}

/// Cluster mode: connections relayed to the node that owns their session (+1 / -1).
pub(crate) fn cluster_relayed(delta: f64) {
    metrics::gauge!("confer_cluster_relayed_connections").increment(delta);
    if delta > 0.0 {
        metrics::counter!("confer_cluster_relayed_connections_total").increment(1);
    }
}
