//! Confer's signalling server: axum serves HTTP and the signalling WebSocket on one port; each
//! session runs in its own task around the sans-IO [`confer_room::Room`]; an audit writer
//! thread appends content-free events to SQLite; Prometheus metrics listen on a second port.
//!
//! This crate never depends on `confer-e2ee`: the server holds no code that could hold a key.
//!
//! ```no_run
//! # async fn run() -> Result<(), confer_server::StartError> {
//! let config = confer_server::Config::dev("./.confer-dev".into());
//! let server = confer_server::Server::start(config).await?;
//! println!("listening on {}", server.addr());
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod audit;
pub mod client_hash;
pub mod clock;
pub mod cluster;
pub mod config;
mod conn;
mod console;
pub mod docs;
mod gate;
mod http;
mod media;
mod messages;
pub mod metrics;
mod session;
mod sessions;
pub mod spent;
mod state;
pub mod token;
pub mod turn;
mod udp_batch;
pub mod web;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use confer_proto::{Role, SessionId, Side};
pub use config::{Config, ConfigError};
pub use state::AppState;

/// Why the server could not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error(
        "cannot create the data directory {path}: {error}; pass --data-dir with a writable directory"
    )]
    DataDir {
        /// Which.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The signing key could not be loaded.
    #[error(transparent)]
    Key(#[from] token::KeyError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// The spent-invite store could not be opened.
    #[error(transparent)]
    Spent(#[from] spent::SpentError),
    /// The accounts database could not be opened.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    /// The document store could not be opened or emptied.
    #[error("cannot open the document store {path}: {error}; the data directory must be writable")]
    Docs {
        /// Which folder.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The SFU's UDP port could not be set up.
    #[error(
        "cannot run the SFU on udp {addr}: {error}; pick another address with --media-listen (or media_listen), or set media_enabled = false"
    )]
    Media {
        /// Which address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The TURN settings are incomplete or unreadable.
    #[error(transparent)]
    Turn(#[from] turn::TurnError),
    /// `media_public_addr` is not an IP:port.
    #[error("media_public_addr {0:?} is not an address like 203.0.113.7:7882")]
    MediaAddr(String),
    /// Cluster mode could not start.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// The web root is not a folder holding `index.html`.
    #[error(
        "cannot serve the web client from {path}: {error}; build it (`make build` writes web-client/dist) or point web_root at the folder holding index.html (empty: no web client)"
    )]
    WebRoot {
        /// Which folder.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A port could not be bound.
    #[error(
        "cannot listen on {addr}: {error}; is another Confer running? Pick another address with --listen (or `listen`/`metrics_listen` in the config)"
    )]
    Bind {
        /// Which address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    /// Each media shard's UDP address (empty without media).
    media_addrs: Vec<SocketAddr>,
    web_dir: Option<std::path::PathBuf>,
    state: Arc<AppState>,
    accounts: Arc<accounts::Accounts>,
    clock: clock::Clock,
}

impl Server {
    /// Opens the data directory, key and audit log, applies retention, binds both ports and
    /// starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, clock::Clock::system()).await
    }

    /// [`start`](Self::start), with the console (logins, lockouts, enrolment links, login
    /// sessions) reading `clock`: a test moves a manual clock instead of waiting.
    pub async fn start_with_clock(config: Config, clock: clock::Clock) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            error,
        })?;
        let web = if config.web_root.as_os_str().is_empty() {
            None
        } else {
            Some(
                web::WebRoot::open(&config.web_root).map_err(|error| StartError::WebRoot {
                    path: config.web_root.display().to_string(),
                    error,
                })?,
            )
        };
        let web_dir = web.as_ref().map(|w| w.dir().to_owned());
        let tokens = token::Tokens::load_or_create(&config.signing_key_path())?;
        let (spent, pruned) = spent::SpentInvites::open(&config.tokens_path(), token::unix_now())?;
        if pruned > 0 {
            tracing::info!(rows = pruned, "expired spent invites pruned");
        }
        let accounts = Arc::new(accounts::Accounts::open(
            &config.accounts_path(),
            clock.now(),
        )?);
        let audit = audit::AuditLog::start(&config.audit_path())?;
        let retention = config.audit_retention_days;
        let purge_log = audit.clone();
        let purged = tokio::task::spawn_blocking(move || purge_log.purge(retention))
            .await
            .unwrap_or(Err(audit::AuditError::WriterGone))?;
        if purged > 0 {
            tracing::info!(rows = purged, "audit retention applied");
        }

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|error| StartError::Bind {
                addr: config.listen,
                error,
            })?;
        let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
            .await
            .map_err(|error| StartError::Bind {
                addr: config.metrics_listen,
                error,
            })?;
        let addr = listener.local_addr().map_err(|error| StartError::Bind {
            addr: config.listen,
            error,
        })?;
        let metrics_addr = metrics_listener
            .local_addr()
            .map_err(|error| StartError::Bind {
                addr: config.metrics_listen,
                error,
            })?;

        let (media, media_addrs, media_metrics) = if config.media_enabled {
            let public = if config.media_public_addr.is_empty() {
                None
            } else {
                Some(
                    config
                        .media_public_addr
                        .parse()
                        .map_err(|_| StartError::MediaAddr(config.media_public_addr.clone()))?,
                )
            };
            let m = media::start(config.media_listen, public, config.media_shards)
                .await
                .map_err(|(addr, error)| StartError::Media { addr, error })?;
            (Some(m.handle), m.addrs, m.metrics)
        } else {
            (None, Vec::new(), Vec::new())
        };
        let turn = turn::Turn::from_config(
            &config.turn_urls,
            &config.turn_secret_file,
            config.turn_credential_ttl_secs,
        )?;
        let docs_path = config.docs_path();
        let (docs, removed) = docs::DocStore::open(
            &docs_path,
            docs::DocLimits::from_config(&config),
            clock.clone(),
        )
        .map_err(|error| StartError::Docs {
            path: docs_path.display().to_string(),
            error,
        })?;
        if removed > 0 {
            tracing::info!(documents = removed, "documents of ended sessions deleted");
        }
        let cluster = if config.cluster.enabled() {
            Some(cluster::Cluster::connect(&config.cluster, addr, config.resume_grace_secs).await?)
        } else {
            None
        };
        let mut app_state = AppState::new(config, tokens, spent, audit, docs, media, turn);
        app_state.cluster = cluster.clone();
        let state = Arc::new(app_state);
        if let Some(c) = cluster {
            tracing::info!(node = %c.node_id, url = %c.node_url, "cluster mode");
            if let Err(e) = c.heartbeat(0).await {
                tracing::warn!(error = %e, "cannot reach Redis for the first heartbeat");
            }
            tokio::spawn(cluster::heartbeats(c, Arc::downgrade(&state)));
        }
        let console = Arc::new(console::Console::new(
            state.clone(),
            accounts.clone(),
            clock.clone(),
        ));
        let app = http::router(state.clone(), web, console);
        // Signalling is many small messages: send each at once (no Nagle, no delayed-ACK stall).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // The peer address feeds the per-address cap on connections before hello.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        let metrics_app = http::metrics_router(metrics::handle(), media_metrics);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
        tokio::spawn(retention_daily(state.clone()));
        tokio::spawn(document_retention(state.clone()));
        tracing::info!(%addr, %metrics_addr, media = ?media_addrs, "confer listening");
        Ok(Self {
            addr,
            metrics_addr,
            media_addrs,
            web_dir,
            state,
            accounts,
            clock,
        })
    }

    /// The accounts database the console uses.
    pub fn accounts(&self) -> &accounts::Accounts {
        &self.accounts
    }

    /// The console's clock.
    pub fn clock(&self) -> &clock::Clock {
        &self.clock
    }

    /// For `--dev`: an enrolment link's token for the first mediator account (`mediator`),
    /// made when no account is enrolled yet (a new link each start until one is); `None` once
    /// an account exists that has enrolled.
    pub fn dev_enrolment(&self) -> Result<Option<accounts::Enrolment>, accounts::AccountError> {
        let now = self.clock.now();
        let ttl = self.state.config.enrolment_ttl_secs;
        let users = self.accounts.list(now)?;
        if users.iter().any(|u| u.state == "active") {
            return Ok(None);
        }
        // Names of `Name`'s alphabet: always valid.
        let name = accounts::Name::new(DEV_MEDIATOR).expect("a valid name");
        if users.iter().any(|u| u.name == DEV_MEDIATOR) {
            return self.accounts.reset_mfa(&name, now, ttl).map(Some);
        }
        self.accounts
            .add(&name, accounts::AccountRole::Mediator, now, ttl)
            .map(Some)
    }

    /// The HTTP/WebSocket address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SFU's UDP address (the first shard's), when media is enabled.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        self.media_addrs.first().copied()
    }

    /// Every media shard's UDP address, in shard order (empty without media).
    pub fn media_addrs(&self) -> &[SocketAddr] {
        &self.media_addrs
    }

    /// The web client's folder (resolved), when `web_root` is set.
    pub fn web_dir(&self) -> Option<&std::path::Path> {
        self.web_dir.as_deref()
    }

    /// The metrics address actually bound.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// Mints an invite token (what `confer token create` does).
    pub fn invite(
        &self,
        session: &SessionId,
        role: Role,
        side: Option<Side>,
        ttl_secs: u64,
    ) -> String {
        self.state.tokens.invite(session, role, side, ttl_secs).0
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.state.sessions.len()
    }

    /// Deletes, now, the documents shared `docs_retention_hours` or more ago by the server's
    /// clock (the server does this every minute); returns how many.
    pub async fn apply_document_retention(&self) -> usize {
        sweep_documents(&self.state).await
    }

    /// Waits until every queued audit event is on disk.
    pub async fn flush_audit(&self) -> Result<(), audit::AuditError> {
        let log = self.state.audit.clone();
        tokio::task::spawn_blocking(move || log.flush())
            .await
            .unwrap_or(Err(audit::AuditError::WriterGone))
    }

    /// Starts draining: readiness turns false, new arrivals are refused with `server_draining`,
    /// everyone connected is told; sessions go on until their mediators end them.
    /// In cluster mode each session is handed over to another node instead: its state is
    /// written, its lease given up, and everyone in it resumes on the node that takes it.
    pub fn begin_drain(&self) {
        if self.state.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(sessions = self.session_count(), "draining");
        let Some(cluster) = self.state.cluster.clone() else {
            for s in self.state.sessions.handles() {
                let _ = s.tx.try_send(messages::SessionCmd::Drain);
            }
            return;
        };
        cluster.set_draining();
        // Hand over only when another live node can take the sessions; otherwise drain as a
        // server on its own does (sessions go on until they end).
        let state = self.state.clone();
        tokio::spawn(async move {
            let others = tokio::time::timeout(cluster.timeout(), cluster.nodes())
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|nodes| {
                    nodes
                        .iter()
                        .any(|(id, n)| *id != cluster.node_id && !n.draining)
                });
            if !others {
                tracing::warn!("no other node to hand sessions over to; they stay until they end");
            }
            let cmd = || {
                if others {
                    messages::SessionCmd::Handover
                } else {
                    messages::SessionCmd::Drain
                }
            };
            for s in state.sessions.handles() {
                let _ = s.tx.send(cmd()).await;
            }
        });
    }

    /// Resolves once no session is left (in cluster mode, the node then leaves the registry).
    pub async fn drained(&self) {
        loop {
            let changed = self.state.sessions_changed.notified();
            if self.state.sessions.is_empty() {
                break;
            }
            changed.await;
        }
        if let Some(c) = &self.state.cluster {
            c.leave().await;
        }
    }

    /// Cluster mode: this node's id in the registry and in session leases.
    pub fn node_id(&self) -> Option<&str> {
        self.state.cluster.as_deref().map(|c| c.node_id.as_str())
    }
}

/// The name of the first mediator account `--dev` makes.
pub const DEV_MEDIATOR: &str = "mediator";

async fn sweep_documents(state: &Arc<AppState>) -> usize {
    let docs = state.docs.clone();
    let n = tokio::task::spawn_blocking(move || docs.sweep())
        .await
        .unwrap_or(0);
    if n > 0 {
        tracing::info!(documents = n, "document retention applied");
    }
    n
}

async fn document_retention(state: Arc<AppState>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        sweep_documents(&state).await;
    }
}

async fn retention_daily(state: Arc<AppState>) {
    let mut every = tokio::time::interval(Duration::from_secs(24 * 3600));
    every.tick().await; // the first tick is immediate; start-up already purged
    loop {
        every.tick().await;
        let log = state.audit.clone();
        let days = state.config.audit_retention_days;
        match tokio::task::spawn_blocking(move || log.purge(days)).await {
            Ok(Ok(n)) => tracing::info!(rows = n, "audit retention applied"),
            _ => tracing::error!("audit retention failed"),
        }
    }
}
