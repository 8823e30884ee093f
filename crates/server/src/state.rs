//! State shared by every connection and session task of one server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::messages::MediaHandle;
use crate::sessions::Sessions;
use crate::spent::SpentInvites;
use crate::token::Tokens;

/// Everything a connection or session task needs.
#[derive(Debug)]
pub struct AppState {
    pub(crate) config: Config,
    pub(crate) tokens: Tokens,
    /// Spent invite ids, on disk.
    pub(crate) spent: Arc<SpentInvites>,
    pub(crate) audit: AuditLog,
    /// Sealed document chunks, on disk.
    pub(crate) docs: Arc<crate::docs::DocStore>,
    /// The SFU, when media is enabled.
    pub(crate) media: Option<MediaHandle>,
    /// TURN credentials for clients, when configured.
    pub(crate) turn: Option<crate::turn::Turn>,
    pub(crate) sessions: Sessions,
    /// Caps on connections that have not completed `hello`.
    pub(crate) gate: Arc<crate::gate::Gate>,
    pub(crate) next_generation: AtomicU64,
    pub(crate) next_conn: AtomicU64,
    pub(crate) draining: AtomicBool,
    /// Woken whenever a session ends, for the drain.
    pub(crate) sessions_changed: Notify,
    /// Cluster mode: this node's view of the cluster (`None`: a server on its own).
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Per-process salt for log pseudonyms, so log lines cannot be joined to ids offline.
    log_salt: [u8; 16],
}

impl AppState {
    pub(crate) fn new(
        config: Config,
        tokens: Tokens,
        spent: SpentInvites,
        audit: AuditLog,
        docs: crate::docs::DocStore,
        media: Option<MediaHandle>,
        turn: Option<crate::turn::Turn>,
    ) -> Self {
        let mut log_salt = [0u8; 16];
        getrandom::fill(&mut log_salt)
            .expect("the operating system's random number generator failed");
        let gate = Arc::new(crate::gate::Gate::new(
            config.max_unauthenticated_connections,
            config.max_unauthenticated_per_address,
        ));
        Self {
            gate,
            config,
            tokens,
            spent: Arc::new(spent),
            audit,
            docs: Arc::new(docs),
            media,
            turn,
            sessions: Sessions::default(),
            next_generation: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            sessions_changed: Notify::new(),
            cluster: None,
            log_salt,
        }
    }

    /// A short salted pseudonym of an id, for logs.
    pub(crate) fn loggable(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.log_salt);
        h.update(id.as_bytes());
        hex::encode(&h.finalize()[..6])
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
