//! The server's configuration: one typed struct, strict TOML, `CONFER_*` environment
//! overrides, secrets from files. Every key, its default and its meaning is listed in
//! `deploy/confer.sample.toml`; a test keeps the two in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the server can be told. Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// HTTP and WebSocket listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics listen address; keep it on localhost or a private network.
    pub metrics_listen: SocketAddr,
    /// Where the signing key and the audit log live.
    pub data_dir: PathBuf,
    /// The base URL people use to reach this server (printed in links).
    pub public_url: String,
    /// File holding the token signing secret (hex, 32 bytes or more). Empty: `DATA_DIR/signing.key`,
    /// created on first start.
    pub signing_key_file: PathBuf,
    /// Largest signalling frame accepted, in bytes; larger ones get `frame_too_large`.
    pub max_frame_bytes: usize,
    /// Sustained signalling messages per second per connection.
    pub rate_limit_msgs_per_sec: u32,
    /// Bucket size: messages a connection may send at once before the sustained rate applies.
    pub rate_limit_burst: u32,
    /// Sustained signalling bytes (text frames, as sent) per second per connection.
    pub rate_limit_bytes_per_sec: u32,
    /// Bytes a connection may send at once before the sustained byte rate applies (at least
    /// `max_frame_bytes` is used, so that every frame the server accepts can pass).
    pub rate_limit_burst_bytes: u32,
    /// Consecutive rate-limited messages after which the connection is closed (4429).
    pub rate_limit_strikes: u32,
    /// Relay bytes (`data`) a participant in the waiting room may send per second.
    pub waiting_relay_bytes_per_sec: u32,
    /// Relay bytes a participant in the waiting room may send at once.
    pub waiting_relay_burst_bytes: u32,
    /// WebSocket connections that have not completed `hello`, in all; more are refused (503).
    pub max_unauthenticated_connections: u32,
    /// WebSocket connections that have not completed `hello`, per client IP address.
    pub max_unauthenticated_per_address: u32,
    /// Shortest interval between two `media_offer`s the SFU takes from one participant, in ms.
    pub media_offer_interval_ms: u64,
    /// Protocol errors after which the connection is closed (4400).
    pub max_errors_per_connection: u32,
    /// Seconds a new connection has to complete `hello`.
    pub hello_timeout_secs: u64,
    /// Seconds a dropped participant may take to resume.
    pub resume_grace_secs: u64,
    /// Lifetime of resume tokens, in seconds.
    pub resume_token_ttl_secs: u64,
    /// Default lifetime of invite tokens, in seconds.
    pub invite_ttl_secs: u64,
    /// Longest lifetime an invite token may be given, in seconds.
    pub invite_max_ttl_secs: u64,
    /// Audit events older than this are deleted, at start-up and daily.
    pub audit_retention_days: u32,
    /// After SIGTERM, seconds to wait for sessions to end before exiting anyway.
    pub drain_timeout_secs: u64,
    /// Log filter (`info`, `debug`, or a tracing directive list). Info never logs personal data.
    pub log_level: String,
    /// Run the SFU (audio and video). Off: chat and signalling only.
    pub media_enabled: bool,
    /// The UDP address the SFU binds (one port for every peer).
    pub media_listen: SocketAddr,
    /// The address clients send media to, announced as the ICE candidate. Empty: the bound
    /// address (right for `--dev` and for hosts with a public IP; set it behind NAT).
    pub media_public_addr: String,
    /// Media threads (shards), each on a core of its own with its own UDP port: shard `i`
    /// binds `media_listen`'s port + `i` and announces `media_public_addr`'s port + `i`. A
    /// session's media lives on one shard. 1 to 64.
    pub media_shards: usize,
    /// TURN servers handed to clients in `welcome` (`turn:host:port`, `turns:host:443?transport=tcp`),
    /// for participants whose networks block UDP to the SFU. Empty: none.
    pub turn_urls: Vec<String>,
    /// File holding the secret shared with the TURN server (coturn's `static-auth-secret`).
    pub turn_secret_file: PathBuf,
    /// Lifetime of the TURN credentials given to a participant, in seconds.
    pub turn_credential_ttl_secs: u64,
    /// The built web client (the folder holding `index.html`, e.g. `web-client/dist`), served
    /// at `/`. Empty: no web client, `/` shows a short landing page. `--dev` uses
    /// `web-client/dist` when that folder holds an `index.html`.
    pub web_root: PathBuf,
    /// Console accounts must set up a TOTP authenticator at enrolment and give a code (or a
    /// recovery code) at every login. Off: the authenticator is optional.
    pub accounts_require_totp: bool,
    /// Lifetime of an enrolment link (`confer user add`, `confer user reset-mfa`), in seconds.
    pub enrolment_ttl_secs: u64,
    /// Failed console logins of one account name, within `login_lockout_secs`, that lock it
    /// for `login_lockout_secs`. 0: no lockout per account.
    pub login_max_failures: u32,
    /// Failed console logins from one client address that lock that address. 0: none.
    pub login_max_failures_per_address: u32,
    /// How long a login lockout lasts, and the window failures are counted in, in seconds.
    pub login_lockout_secs: u64,
    /// Lifetime of a console login (its session cookie), in seconds.
    pub console_session_ttl_secs: u64,
    /// Largest document a participant may share, in bytes of the file (its sealed chunks add
    /// 16 bytes per 64 KiB). 0: no documents.
    pub docs_max_bytes: u64,
    /// Bytes of documents one session may hold at once (files deleted by retention no longer
    /// count).
    pub docs_max_session_bytes: u64,
    /// Hours a document is kept after it was shared, even while its session goes on, in a
    /// session whose mediator chose no retention (one not started in the console); a
    /// session's documents are deleted when it ends in any case.
    pub docs_retention_hours: u64,
    /// The longest retention, in hours after sharing, a mediator may choose for a session's
    /// documents in the console ("until the session ends" included); it also caps
    /// `docs_retention_hours`.
    pub docs_max_retention_hours: u64,
    /// Lifetime of a document ticket (the HTTP authorisation for one document's chunks), in
    /// seconds.
    pub docs_ticket_ttl_secs: u64,
    /// Cluster mode: several nodes coordinated through Redis (docs/operations.md#cluster-mode).
    pub cluster: ClusterConfig,
}

/// The `[cluster]` table. Without `redis_url` the server runs alone, as always.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// `redis://host:6379/0`: turns cluster mode on. Every node of one cluster names the same
    /// Redis and reads the same signing key. Empty: no cluster.
    pub redis_url: String,
    /// The URL other nodes reach this node's `listen` address at (`http://10.0.0.5:7880`), to
    /// relay connections to the sessions this node owns. Empty: `http://` + `listen`.
    pub node_url: String,
    /// A session's ownership lease, in ms: a node that dies loses its sessions to another node
    /// this long after its last renewal (renewed every third of it).
    pub lease_ms: u64,
    /// How long a Redis request may take before it counts as failed, in ms.
    pub redis_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            node_url: String::new(),
            lease_ms: 6000,
            redis_timeout_ms: 1000,
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7880)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 7881)),
            data_dir: PathBuf::from("/var/lib/confer"),
            public_url: "http://127.0.0.1:7880".to_owned(),
            signing_key_file: PathBuf::new(),
            max_frame_bytes: 64 * 1024,
            rate_limit_msgs_per_sec: 50,
            rate_limit_burst: 200,
            rate_limit_bytes_per_sec: 128 * 1024,
            rate_limit_burst_bytes: 1024 * 1024,
            rate_limit_strikes: 20,
            waiting_relay_bytes_per_sec: 1024,
            waiting_relay_burst_bytes: 16 * 1024,
            max_unauthenticated_connections: 1024,
            max_unauthenticated_per_address: 64,
            media_offer_interval_ms: 2000,
            max_errors_per_connection: 20,
            hello_timeout_secs: 10,
            resume_grace_secs: 30,
            resume_token_ttl_secs: 24 * 3600,
            invite_ttl_secs: 24 * 3600,
            invite_max_ttl_secs: 7 * 24 * 3600,
            audit_retention_days: 365,
            drain_timeout_secs: 3600,
            log_level: "info".to_owned(),
            media_enabled: true,
            media_listen: SocketAddr::from(([127, 0, 0, 1], 7882)),
            media_public_addr: String::new(),
            media_shards: 1,
            turn_urls: Vec::new(),
            turn_secret_file: PathBuf::new(),
            turn_credential_ttl_secs: 12 * 3600,
            web_root: PathBuf::new(),
            accounts_require_totp: true,
            enrolment_ttl_secs: 24 * 3600,
            login_max_failures: 5,
            login_max_failures_per_address: 20,
            login_lockout_secs: 15 * 60,
            console_session_ttl_secs: 12 * 3600,
            docs_max_bytes: 25 * 1024 * 1024,
            docs_max_session_bytes: 200 * 1024 * 1024,
            docs_retention_hours: 24,
            docs_max_retention_hours: 24,
            docs_ticket_ttl_secs: 600,
            cluster: ClusterConfig::default(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid, has an unknown key, or a value of the wrong type.
    #[error("invalid config {origin}: {message}")]
    Invalid {
        /// The file or environment variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// The embedded default for `--dev`: everything on localhost, data in `data_dir`.
    pub fn dev(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            ..Self::default()
        }
    }

    /// Parses strict TOML (unknown keys are errors) on top of the defaults.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            origin: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Applies `CONFER_<KEY>` overrides (e.g. `CONFER_LISTEN=0.0.0.0:7880`) from `vars`.
    /// Unknown `CONFER_*` variables are errors, like unknown keys in the file.
    pub fn with_env(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let toml::Value::Table(mut table) =
            toml::Value::try_from(&self).map_err(|e| ConfigError::Invalid {
                origin: "defaults".into(),
                message: e.to_string(),
            })?
        else {
            return Err(ConfigError::Invalid {
                origin: "defaults".into(),
                message: "not a table".into(),
            });
        };
        let mut touched = false;
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("CONFER_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // A key of a table (`[cluster] redis_url`) is `CONFER_CLUSTER_REDIS_URL`.
            let nested = key.split_once('_').filter(|(t, k)| {
                !table.contains_key(&key)
                    && table
                        .get(*t)
                        .and_then(toml::Value::as_table)
                        .is_some_and(|t| t.contains_key(*k))
            });
            let (target, key) = match nested {
                Some((t, k)) => (
                    table
                        .get_mut(t)
                        .and_then(toml::Value::as_table_mut)
                        .expect("checked above"),
                    k.to_owned(),
                ),
                None => (&mut table, key),
            };
            let Some(current) = target.get(&key) else {
                return Err(ConfigError::Invalid {
                    origin: name.clone(),
                    message: format!("no config key {key:?}; see deploy/confer.sample.toml"),
                });
            };
            // Keep the type of the key: numbers stay numbers, strings stay strings.
            let parsed =
                match current {
                    toml::Value::Boolean(_) => value
                        .parse::<bool>()
                        .map(toml::Value::Boolean)
                        .map_err(|_| ConfigError::Invalid {
                            origin: name.clone(),
                            message: "expected true or false".into(),
                        })?,
                    toml::Value::Integer(_) => value
                        .parse::<i64>()
                        .map(toml::Value::Integer)
                        .map_err(|_| ConfigError::Invalid {
                            origin: name.clone(),
                            message: "expected a whole number".into(),
                        })?,
                    // Lists: comma-separated.
                    toml::Value::Array(_) => toml::Value::Array(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(|v| toml::Value::String(v.to_owned()))
                            .collect(),
                    ),
                    _ => toml::Value::String(value),
                };
            target.insert(key, parsed);
            touched = true;
        }
        if !touched {
            return Ok(self);
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                origin: "environment".into(),
                message: e.to_string(),
            })
    }

    /// The signing key file, defaulting to `DATA_DIR/signing.key`.
    pub fn signing_key_path(&self) -> PathBuf {
        if self.signing_key_file.as_os_str().is_empty() {
            self.data_dir.join("signing.key")
        } else {
            self.signing_key_file.clone()
        }
    }

    /// The audit database.
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.db")
    }

    /// The accounts database: `DATA_DIR/accounts.db`.
    pub fn accounts_path(&self) -> PathBuf {
        self.data_dir.join("accounts.db")
    }

    /// Whether people reach the server over TLS (`public_url` is `https://`): the console's
    /// cookies are then `Secure` and `__Host-` prefixed.
    pub fn cookies_secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The document store: `DATA_DIR/docs`.
    pub fn docs_path(&self) -> PathBuf {
        self.data_dir.join("docs")
    }

    /// The spent-invite store: `DATA_DIR/tokens.db`.
    pub fn tokens_path(&self) -> PathBuf {
        self.data_dir.join("tokens.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::from_toml("listne = \"127.0.0.1:1\"", "t").unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
    }

    #[test]
    fn env_overrides_keep_types() {
        let c = Config::default()
            .with_env([
                ("CONFER_RESUME_GRACE_SECS".to_string(), "5".to_string()),
                ("CONFER_LISTEN".to_string(), "127.0.0.1:9999".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ])
            .unwrap();
        assert_eq!(c.resume_grace_secs, 5);
        assert_eq!(c.listen.port(), 9999);
        let off = Config::default()
            .with_env([("CONFER_MEDIA_ENABLED".to_string(), "false".to_string())])
            .unwrap();
        assert!(!off.media_enabled);
        let turn = Config::default()
            .with_env([(
                "CONFER_TURN_URLS".to_string(),
                "turn:a:3478, turns:a:443?transport=tcp".to_string(),
            )])
            .unwrap();
        assert_eq!(turn.turn_urls, ["turn:a:3478", "turns:a:443?transport=tcp"]);
        let cluster = Config::default()
            .with_env([
                (
                    "CONFER_CLUSTER_REDIS_URL".to_string(),
                    "redis://10.0.0.9:6379/0".to_string(),
                ),
                ("CONFER_CLUSTER_LEASE_MS".to_string(), "3000".to_string()),
            ])
            .unwrap();
        assert_eq!(cluster.cluster.redis_url, "redis://10.0.0.9:6379/0");
        assert_eq!(cluster.cluster.lease_ms, 3000);
        assert!(cluster.cluster.enabled());
        assert!(
            Config::default()
                .with_env([("CONFER_CLUSTER_NOPE".into(), "1".into())])
                .is_err()
        );
        assert!(
            Config::default()
                .with_env([("CONFER_NOPE".into(), "1".into())])
                .is_err()
        );
        assert!(
            Config::default()
                .with_env([("CONFER_HELLO_TIMEOUT_SECS".into(), "x".into())])
                .is_err()
        );
    }
}
