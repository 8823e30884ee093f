//! Cluster mode: several nodes behind one name, coordinated through Redis
//! (docs/operations.md#cluster-mode).
//!
//! - A session lives on one node, its owner, which holds a lease in Redis (`SET NX PX`,
//!   renewed every third of `lease_ms`). Every claim takes a new fencing token (`INCR`); the
//!   owner's writes (the session's state, renewals, the end) go through scripts that check the
//!   lease still names this node and this token, so a node that lost its lease cannot write.
//!   The owner also fences itself: it stops acting for a session once its last confirmed
//!   renewal is older than the lease (less a margin), whether or not it can reach Redis.
//! - Any node accepts a WebSocket; when the session lives elsewhere it relays the connection to
//!   the owner node to node ([`crate::ws`]), with a proof made from the signing secret every
//!   node shares.
//! - The owner writes the session's content-free state (who is in which room, consents, the
//!   newest resume-token id of each participant: [`SessionState`]) after every change. When it
//!   dies, its lease runs out; the next participant to resume on any node makes that node
//!   claim the session and restore it from that state; the others resume there too.
//! - Spent invites are kept in Redis, so an invite opens one seat in the whole cluster.
//! - A registry of live nodes with their load: a new session starts on the least loaded.
//!
//! Redis never holds a key, a message, a name or a file: only ids, roles, rooms and hashes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use confer_proto::{ParticipantId, Role, SessionId};
use confer_room::RoomSnapshot;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not a Redis URL.
    #[error(
        "cluster.redis_url {url:?} is not a Redis URL ({error}); write it like redis://10.0.0.9:6379/0"
    )]
    Url {
        /// What was configured.
        url: String,
        /// Why it does not parse.
        error: String,
    },
    /// The timings cannot keep one owner per session.
    #[error(
        "cluster.redis_timeout_ms ({timeout_ms}) must be at most a fifth of cluster.lease_ms ({lease_ms}): a renewal must be confirmed well within the lease"
    )]
    Timing {
        /// The Redis timeout.
        timeout_ms: u64,
        /// The lease.
        lease_ms: u64,
    },
    /// Other nodes could not reach this one.
    #[error(
        "cluster.node_url is empty and listen ({listen}) is not an address other nodes can reach; set cluster.node_url to this node's http://IP:port on the private network"
    )]
    NodeUrl {
        /// The listen address.
        listen: std::net::SocketAddr,
    },
    /// Redis did not answer.
    #[error(
        "cannot reach Redis at {url}: {error}; start Redis (deploy/cluster/compose.yaml runs one) or fix cluster.redis_url"
    )]
    Unreachable {
        /// Which (without a password).
        url: String,
        /// Why.
        error: String,
    },
}

/// A session's state as the owner writes it to Redis: enough for another node to take the
/// session over, and nothing a participant said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionState {
    /// Format version.
    pub(crate) v: u32,
    /// The session instance invites minted in it are bound to.
    pub(crate) instance: String,
    /// The room: participants, roles, rooms, consents.
    pub(crate) room: RoomSnapshot,
    /// Each participant's role and the id of its newest resume token (only that one resumes).
    pub(crate) members: BTreeMap<ParticipantId, MemberState>,
    /// How long after sharing the session's documents are kept.
    pub(crate) docs_retention_secs: u64,
}

/// One participant in [`SessionState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberState {
    pub(crate) role: Role,
    pub(crate) resume_jti: String,
    /// That token's expiry: tokens minted later expire later (all nodes use one lifetime).
    pub(crate) resume_exp: u64,
}

/// A lease this node holds on a session.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) session: SessionId,
    /// What the owner key holds: `node fence`.
    value: String,
    /// The fencing token of this claim; a later claim always has a larger one.
    pub(crate) fence: u64,
    /// When the claim was sent: the lease holds from then at the latest.
    pub(crate) claimed_at: tokio::time::Instant,
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// Still ours.
    Held,
    /// Ours again after Redis lost it (a restart without persistence): write the state anew.
    Recreated,
    /// Another node holds it, or a newer claim was made: stop acting for the session.
    Lost,
}

/// Who owns a session, as Redis says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) node: String,
    pub(crate) fence: u64,
}

/// What the node registry holds about a live node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeInfo {
    pub(crate) url: String,
    pub(crate) sessions: u64,
    pub(crate) draining: bool,
}

// Claim a free session: a new fencing token, and the lease naming this node and that token.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local f = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. f, 'PX', ARGV[2])
return f
";

// Renew: 1 while the lease is ours; 2 when Redis had lost it and no newer claim was made (it is
// ours again); 0 when it is someone else's. The state's expiry is pushed on with it.
const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  return 1
end
if v then return 0 end
local f = tonumber(redis.call('GET', KEYS[2]) or '0')
if f > tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[5])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
";

// Write the state only under our lease: 1 written; 2 written after taking the lease back from
// a Redis that had lost it (no newer claim, release or end since: the fence says so); 0 not
// ours.
const WRITE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
if v then return 0 end
local f = tonumber(redis.call('GET', KEYS[3]) or '0')
if f > tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[6])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 2
";

// Give the lease up (the state stays, for the next owner). The fence moves on, so a renewal
// or write of ours that arrives late cannot take the lease back.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
return 1
";

// The session ended: its lease and state go, and the fence moves on (as for a release).
const END: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('INCR', KEYS[3])
return 1
";

const PREFIX: &str = "confer:";
/// How many locks claims and restores are spread over.
const CLAIM_STRIPES: usize = 64;
/// How often a node says it is alive (its registry entry lives three times as long).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a fencing counter outlives its last claim.
const FENCE_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// The cluster as one node sees it.
pub(crate) struct Cluster {
    redis: ConnectionManager,
    pub(crate) node_id: String,
    pub(crate) node_url: String,
    pub(crate) lease: Duration,
    timeout: Duration,
    /// How long a session's state outlives its owner's last renewal: long enough for every
    /// participant to resume elsewhere.
    state_ttl: Duration,
    /// Claims and restores on this node, one at a time per session (two hellos for one
    /// session): striped locks, so sessions rarely wait for each other.
    claiming: Vec<tokio::sync::Mutex<()>>,
    draining: AtomicBool,
    scripts: Scripts,
}

struct Scripts {
    claim: Script,
    renew: Script,
    write: Script,
    release: Script,
    end: Script,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("node_url", &self.node_url)
            .finish_non_exhaustive()
    }
}

fn owner_key(s: &SessionId) -> String {
    format!("{PREFIX}owner:{}", s.as_str())
}
fn fence_key(s: &SessionId) -> String {
    format!("{PREFIX}fence:{}", s.as_str())
}
fn state_key(s: &SessionId) -> String {
    format!("{PREFIX}state:{}", s.as_str())
}
fn node_key(id: &str) -> String {
    format!("{PREFIX}node:{id}")
}
const NODES: &str = "confer:nodes";

/// A Redis URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split("//").next().unwrap_or("redis:");
            format!("{scheme}//…@{host}")
        }
        None => url.to_owned(),
    }
}

impl Cluster {
    /// Connects to Redis (failing start-up when it does not answer).
    pub(crate) async fn connect(
        config: &ClusterConfig,
        listen: std::net::SocketAddr,
        resume_grace_secs: u64,
    ) -> Result<Arc<Self>, ClusterError> {
        let client =
            redis::Client::open(config.redis_url.as_str()).map_err(|e| ClusterError::Url {
                url: redacted(&config.redis_url),
                error: e.to_string(),
            })?;
        let timeout = Duration::from_millis(config.redis_timeout_ms.max(1));
        if config.redis_timeout_ms.saturating_mul(5) > config.lease_ms {
            return Err(ClusterError::Timing {
                timeout_ms: config.redis_timeout_ms,
                lease_ms: config.lease_ms,
            });
        }
        if config.node_url.is_empty() && listen.ip().is_unspecified() {
            return Err(ClusterError::NodeUrl { listen });
        }
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        let redis = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(|e| ClusterError::Unreachable {
                url: redacted(&config.redis_url),
                error: e.to_string(),
            })?;
        let node_url = if config.node_url.is_empty() {
            format!("http://{listen}")
        } else {
            config.node_url.trim_end_matches('/').to_owned()
        };
        let lease = Duration::from_millis(config.lease_ms.max(300));
        Ok(Arc::new(Self {
            redis,
            node_id: crate::token::random_id()[..12].to_owned(),
            node_url,
            lease,
            timeout,
            state_ttl: lease + Duration::from_secs(resume_grace_secs + 60),
            claiming: (0..CLAIM_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            draining: AtomicBool::new(false),
            scripts: Scripts {
                claim: Script::new(CLAIM),
                renew: Script::new(RENEW),
                write: Script::new(WRITE),
                release: Script::new(RELEASE),
                end: Script::new(END),
            },
        }))
    }

    /// The lock that makes claims and restores of `session` on this node one at a time.
    pub(crate) async fn claiming(&self, session: &SessionId) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        session.as_str().hash(&mut h);
        let i = usize::try_from(h.finish() % CLAIM_STRIPES as u64).unwrap_or(0);
        self.claiming[i].lock().await
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// How long before the lease runs out in Redis the owner stops acting: covers the time a
    /// renewal takes to reach Redis and clocks that run a little apart.
    pub(crate) fn margin(&self) -> Duration {
        self.lease / 5
    }

    /// Claims a session nobody owns; `None` when another node holds it.
    pub(crate) async fn claim(&self, session: &SessionId) -> redis::RedisResult<Option<Lease>> {
        let claimed_at = tokio::time::Instant::now();
        // Not retried: a claim whose answer was lost leaves the lease to run out.
        let fence: Option<u64> = self
            .scripts
            .claim
            .key(owner_key(session))
            .key(fence_key(session))
            .arg(&self.node_id)
            .arg(ms(self.lease))
            .arg(FENCE_TTL_MS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(fence.map(|fence| Lease {
            session: session.clone(),
            value: format!("{} {fence}", self.node_id),
            fence,
            claimed_at,
        }))
    }

    /// Renews a lease.
    pub(crate) async fn renew(&self, lease: &Lease) -> redis::RedisResult<Renewed> {
        let r: i64 = retry(|| async {
            self.scripts
                .renew
                .key(owner_key(&lease.session))
                .key(fence_key(&lease.session))
                .key(state_key(&lease.session))
                .arg(&lease.value)
                .arg(ms(self.lease))
                .arg(lease.fence)
                .arg(ms(self.state_ttl))
                .arg(FENCE_TTL_MS)
                .invoke_async(&mut self.conn())
                .await
        })
        .await?;
        Ok(match r {
            1 => Renewed::Held,
            2 => Renewed::Recreated,
            _ => Renewed::Lost,
        })
    }

    /// Writes the session's state under the lease (taking the lease back from a Redis that
    /// lost it, as [`Cluster::renew`] does); `false` when the lease is not ours.
    pub(crate) async fn write_state(&self, lease: &Lease, state: &str) -> redis::RedisResult<bool> {
        let r: i64 = retry(|| async {
            self.scripts
                .write
                .key(owner_key(&lease.session))
                .key(state_key(&lease.session))
                .key(fence_key(&lease.session))
                .arg(&lease.value)
                .arg(state)
                .arg(ms(self.state_ttl))
                .arg(lease.fence)
                .arg(ms(self.lease))
                .arg(FENCE_TTL_MS)
                .invoke_async(&mut self.conn())
                .await
        })
        .await?;
        Ok(r != 0)
    }

    /// Gives a lease up, leaving the state for the next owner.
    pub(crate) async fn release(&self, lease: &Lease) -> redis::RedisResult<bool> {
        let r: i64 = retry(|| async {
            self.scripts
                .release
                .key(owner_key(&lease.session))
                .key(fence_key(&lease.session))
                .arg(&lease.value)
                .invoke_async(&mut self.conn())
                .await
        })
        .await?;
        Ok(r == 1)
    }

    /// The session ended: its lease and state go.
    pub(crate) async fn end(&self, lease: &Lease) -> redis::RedisResult<bool> {
        let r: i64 = retry(|| async {
            self.scripts
                .end
                .key(owner_key(&lease.session))
                .key(state_key(&lease.session))
                .key(fence_key(&lease.session))
                .arg(&lease.value)
                .invoke_async(&mut self.conn())
                .await
        })
        .await?;
        Ok(r == 1)
    }

    /// Who owns a session now.
    pub(crate) async fn owner(&self, session: &SessionId) -> redis::RedisResult<Option<Owner>> {
        let v: Option<String> =
            retry(|| async { self.conn().get(owner_key(session)).await }).await?;
        Ok(v.and_then(|v| {
            let (node, fence) = v.split_once(' ')?;
            Some(Owner {
                node: node.to_owned(),
                fence: fence.parse().ok()?,
            })
        }))
    }

    /// The state the session's last owner wrote.
    pub(crate) async fn state(
        &self,
        session: &SessionId,
    ) -> redis::RedisResult<Option<SessionState>> {
        let v: Option<String> =
            retry(|| async { self.conn().get(state_key(session)).await }).await?;
        Ok(v.and_then(|v| match serde_json::from_str(&v) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "a session state in Redis does not parse; ignored");
                None
            }
        }))
    }

    /// Marks an invite spent, cluster-wide, until its expiry; `false` if it already was.
    pub(crate) async fn reserve_invite(&self, jti: &str, exp: u64) -> redis::RedisResult<bool> {
        let key = format!("{PREFIX}spent:{jti}");
        // Marked with this attempt's own value: when a retry finds the mark, it tells whether
        // the first try (whose answer was lost) set it or someone else did.
        let mark = crate::token::random_id();
        let opts = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EXAT(exp.max(1)));
        let first: redis::RedisResult<Option<String>> =
            self.conn().set_options(&key, &mark, opts.clone()).await;
        match first {
            Ok(r) => Ok(r.is_some()),
            Err(e) if transient(&e) => {
                let again: Option<String> = self.conn().set_options(&key, &mark, opts).await?;
                if again.is_some() {
                    return Ok(true);
                }
                let held: Option<String> = self.conn().get(&key).await?;
                Ok(held.as_deref() == Some(mark.as_str()))
            }
            Err(e) => Err(e),
        }
    }

    /// Gives a reserved invite back (the join it was for did not happen).
    pub(crate) async fn release_invite(&self, jti: &str) -> redis::RedisResult<()> {
        let key = format!("{PREFIX}spent:{jti}");
        retry(|| async { self.conn().del::<_, ()>(&key).await }).await
    }

    /// Says this node is alive, with its load.
    pub(crate) async fn heartbeat(&self, sessions: u64) -> redis::RedisResult<()> {
        let info = NodeInfo {
            url: self.node_url.clone(),
            sessions,
            draining: self.is_draining(),
        };
        let json = serde_json::to_string(&info).unwrap_or_default();
        let mut c = self.conn();
        redis::pipe()
            .set_options(
                node_key(&self.node_id),
                json,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(ms(HEARTBEAT * 3))),
            )
            .ignore()
            .sadd(NODES, &self.node_id)
            .ignore()
            .query_async::<()>(&mut c)
            .await
    }

    /// Leaves the registry (a node shutting down).
    pub(crate) async fn leave(&self) {
        let mut c = self.conn();
        let _: redis::RedisResult<()> = redis::pipe()
            .del(node_key(&self.node_id))
            .ignore()
            .srem(NODES, &self.node_id)
            .ignore()
            .query_async(&mut c)
            .await;
    }

    /// A live node's registry entry.
    pub(crate) async fn node(&self, id: &str) -> redis::RedisResult<Option<NodeInfo>> {
        let v: Option<String> = retry(|| async { self.conn().get(node_key(id)).await }).await?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Every live node, by id (entries of dead nodes are swept from the set).
    pub(crate) async fn nodes(&self) -> redis::RedisResult<Vec<(String, NodeInfo)>> {
        let mut c = self.conn();
        let ids: Vec<String> = c.smembers(NODES).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| node_key(i)).collect();
        let infos: Vec<Option<String>> = c.mget(keys).await?;
        let mut live = Vec::new();
        for (id, info) in ids.into_iter().zip(infos) {
            match info.and_then(|i| serde_json::from_str::<NodeInfo>(&i).ok()) {
                Some(info) => live.push((id, info)),
                None => {
                    let _: redis::RedisResult<()> = c.srem(NODES, &id).await;
                }
            }
        }
        Ok(live)
    }

    /// Where a new session should start: the least loaded live node that is not draining
    /// (this one on a tie); `None` when there is none (this one is draining and alone).
    pub(crate) async fn least_loaded(
        &self,
        my_sessions: u64,
    ) -> redis::RedisResult<Option<(String, String)>> {
        let mut best: Option<(u64, bool, String, String)> = None;
        let me = (!self.is_draining()).then(|| {
            (
                my_sessions,
                false,
                self.node_id.clone(),
                self.node_url.clone(),
            )
        });
        for (id, info) in self.nodes().await? {
            if id == self.node_id || info.draining {
                continue;
            }
            let cand = (info.sessions, true, id, info.url);
            if best.as_ref().is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                best = Some(cand);
            }
        }
        if let Some(me) = me
            && best.as_ref().is_none_or(|b| (me.0, me.1) <= (b.0, b.1))
        {
            best = Some(me);
        }
        Ok(best.map(|(_, _, id, url)| (id, url)))
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The timeout for one Redis request.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Whether an error is the connection's (Redis restarted, a connection reset): the connection
/// manager reconnects, and the request is worth one more try.
fn transient(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal()
}

/// Runs a request, and once more if the connection had dropped (only idempotent requests).
async fn retry<T, F, Fut>(mut request: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    match request().await {
        Err(e) if transient(&e) => request().await,
        r => r,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Says this node is alive every second, with how many sessions it owns.
pub(crate) async fn heartbeats(cluster: Arc<Cluster>, state: std::sync::Weak<crate::AppState>) {
    let mut every = tokio::time::interval(HEARTBEAT);
    loop {
        every.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let sessions = state.sessions.len() as u64;
        drop(state);
        if let Err(e) = cluster.heartbeat(sessions).await {
            tracing::warn!(error = %e, "cannot reach Redis for the heartbeat");
        }
    }
}
