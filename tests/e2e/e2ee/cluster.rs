//! Cluster mode with real parts: a real `redis-server` (installed by scripts/install-deps.sh)
//! and real `confer serve` processes on 127.0.0.1 ports, each with its own data directory and
//! SFU, sharing one signing key. Rust clients (confer-client's core, webrtc-rs media peers)
//! resume on the other nodes in turn when their connection drops, as clients behind a load
//! balancer do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confer_e2e::temp_dir;
use confer_proto::{ChannelId, Role, SessionId, Side};
use confer_server::token::Tokens;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use super::harness::{Behaviour, MEDIA_STREAMS, Peer, PeerRng, PeerState, config};

/// The lease the nodes use here: short, so a dead owner's sessions move within the test.
const LEASE_MS: u64 = 2000;
/// How long a failover may take, from the owner's death to the session going on.
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Waits (bounded) until `check` holds, looking every 20 ms.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A redis-server of our own, with an append-only file so a restart keeps its data.
pub(super) struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    pub(super) async fn start() -> Self {
        let mut r = Self {
            child: None,
            port: free_port().await,
            dir: temp_dir("redis"),
        };
        r.run().await;
        r
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/install-deps.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        eventually("redis-server", Duration::from_secs(10), || async move {
            ping(port).await
        })
        .await;
    }

    /// Stops it hard and starts it again on the same port and files.
    async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
        self.run().await;
    }

    async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// `node fence` of the session's owner, as Redis holds it.
    pub(super) async fn owner(&self, session: &SessionId) -> Option<(String, u64)> {
        let mut c = self.client().await;
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("confer:owner:{}", session.as_str()))
            .query_async(&mut c)
            .await
            .unwrap();
        let (node, fence) = v?
            .split_once(' ')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))?;
        Some((node, fence.parse().unwrap()))
    }

    /// The URL a node registered under its id.
    pub(super) async fn node_url(&self, id: &str) -> Option<String> {
        let mut c = self.client().await;
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("confer:node:{id}"))
            .query_async(&mut c)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&v?).unwrap();
        v["url"].as_str().map(str::to_owned)
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}

/// A `confer serve` process (the binary cargo built next to this test).
pub(super) struct Node {
    child: Child,
    pub(super) addr: SocketAddr,
    metrics: SocketAddr,
    _dir: PathBuf,
}

fn confer_bin() -> PathBuf {
    // target/debug/deps/e2e-… → target/debug/confer
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("confer");
    assert!(
        bin.exists(),
        "{} missing: build the workspace's binaries",
        bin.display()
    );
    bin
}

impl Node {
    pub(super) async fn start(redis_url: &str, key_file: &Path) -> Self {
        let dir = temp_dir("node");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port().await).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port().await).parse().unwrap();
        let config = format!(
            "listen = \"{addr}\"\nmetrics_listen = \"{metrics}\"\ndata_dir = \"{}\"\n\
             signing_key_file = \"{}\"\nmedia_listen = \"127.0.0.1:0\"\nweb_root = \"\"\n\
             resume_grace_secs = 30\n\
             [cluster]\nredis_url = \"{redis_url}\"\nlease_ms = {LEASE_MS}\nredis_timeout_ms = 300\n",
            dir.display(),
            key_file.display()
        );
        let file = dir.join("confer.toml");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(confer_bin())
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let node = Self {
            child,
            addr,
            metrics,
            _dir: dir,
        };
        eventually("a node to be ready", Duration::from_secs(20), || {
            get(addr, "/readyz")
        })
        .await;
        node
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the process outright (SIGKILL): no handover, no goodbye.
    pub(super) async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Asks the process to stop (SIGTERM): it drains, handing its sessions over.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a drained node exits by itself")
            .unwrap()
    }

    /// A metric's value on this node (0 when absent).
    async fn metric(&self, name: &str) -> f64 {
        let page = http_get(self.metrics, "/metrics").await.unwrap_or_default();
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

async fn get(addr: SocketAddr, path: &'static str) -> bool {
    http_get(addr, path).await.is_some()
}

/// The cluster's signing key, shared by every node (and the test, which mints invites).
fn signing_key(dir: &Path) -> (PathBuf, Tokens) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    let file = dir.join("signing.key");
    std::fs::write(&file, hex(&secret)).unwrap();
    (file, Tokens::new(&secret))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn session_id() -> SessionId {
    SessionId::new(format!("c-{}", &confer_server::token::random_id()[..8])).unwrap()
}

/// A cluster for one test: a data folder, Redis, the shared signing key (and the test's
/// `Tokens` to mint invites with), nodes, and a session id. The folder goes when dropped.
pub(super) struct Cluster {
    pub(super) dir: PathBuf,
    pub(super) redis: Redis,
    pub(super) key: PathBuf,
    pub(super) tokens: Tokens,
    pub(super) nodes: Vec<Node>,
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) session: SessionId,
}

impl Cluster {
    /// Redis and the key, no node yet.
    pub(super) async fn new() -> Self {
        let dir = temp_dir("cluster");
        let redis = Redis::start().await;
        let (key, tokens) = signing_key(&dir);
        Self {
            dir,
            redis,
            key,
            tokens,
            nodes: Vec::new(),
            addrs: Vec::new(),
            session: session_id(),
        }
    }

    /// `n` nodes on this Redis.
    pub(super) async fn start(n: usize) -> Self {
        let mut c = Self::new().await;
        for _ in 0..n {
            let url = c.redis.url();
            c.add_node(&url).await;
        }
        c
    }

    /// A node that reaches Redis at `redis_url` (a test may put a relay it can cut between).
    pub(super) async fn add_node(&mut self, redis_url: &str) {
        let node = Node::start(redis_url, &self.key).await;
        self.addrs.push(node.addr);
        self.nodes.push(node);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client with a media peer that resumes on `failover` when its connection drops.
pub(super) async fn member(
    first: SocketAddr,
    failover: &[SocketAddr],
    tokens: &Tokens,
    session: &SessionId,
    role: Role,
    side: Option<Side>,
) -> Peer {
    let mut cfg = config();
    cfg.media_streams = MEDIA_STREAMS.to_vec();
    cfg.media_receive = true;
    let invite = tokens.invite(session, role, side, 600).0;
    Peer::join_with(
        first,
        &invite,
        cfg,
        PeerRng {
            canary: false,
            stamped: Default::default(),
        },
        Behaviour {
            media_slots: Some(2),
            failover: failover.to_vec(),
            ..Behaviour::default()
        },
    )
    .await
}

fn verified_from(s: &PeerState, p: &confer_proto::ParticipantId) -> u64 {
    s.media.stats.from.get(p).map_or(0, |f| f.verified)
}

/// How many times this client was welcomed back (a resume the server accepted), as opposed to
/// `resumes`, which counts connections made again (a node may still answer "try again").
fn resumed(s: &PeerState) -> usize {
    s.inbound
        .iter()
        .filter(|m| {
            matches!(
                m,
                confer_proto::ServerMessage::Welcome { resumed: true, .. }
            )
        })
        .count()
}

fn failures(s: &PeerState) -> (u64, u64) {
    let st = s.core.stats();
    (st.decrypt_failures, st.media_decrypt_failures)
}

/// Everyone secured in joint, with media from both others verified beyond `base` frames.
async fn all_see_and_hear(peers: &mut [Peer], base: &[Vec<u64>]) {
    let ids: Vec<_> = peers.iter().map(|p| p.pid.clone()).collect();
    for (i, p) in peers.iter_mut().enumerate() {
        let others: Vec<(usize, confer_proto::ParticipantId)> = ids
            .iter()
            .cloned()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .collect();
        let base = base[i].clone();
        p.until_true(|s| {
            s.core.secured() == Some(&ChannelId::joint())
                && others
                    .iter()
                    .all(|(j, id)| verified_from(s, id) > base[*j] + 10)
        })
        .await;
    }
}

fn snapshot(peers: &[Peer]) -> Vec<Vec<u64>> {
    let ids: Vec<_> = peers.iter().map(|p| p.pid.clone()).collect();
    peers
        .iter()
        .map(|p| p.with(|s| ids.iter().map(|id| verified_from(s, id)).collect()))
        .collect()
}

#[tokio::test]
async fn a_session_spans_nodes_and_survives_the_death_of_its_owner() {
    let mut c = Cluster::start(3).await;
    let (redis, tokens, nodes, addrs, session) =
        (&c.redis, &c.tokens, &mut c.nodes, &c.addrs, &c.session);

    // The mediator starts the session on node 0 (every node idle: the one asked takes it);
    // the parties arrive through nodes 1 and 2, which relay them to the owner.
    let mut peers = vec![member(addrs[0], addrs, tokens, session, Role::Mediator, None).await];
    for (i, side) in [(1, Side::A), (2, Side::B)] {
        peers.push(member(addrs[i], addrs, tokens, session, Role::Party, Some(side)).await);
    }
    for p in &mut peers {
        p.secured_in("joint").await;
        p.publish(true);
    }
    let (owner, fence) = redis.owner(session).await.expect("an owner");
    assert_eq!(redis.node_url(&owner).await, Some(nodes[0].url()));
    assert!(nodes[1].metric("confer_cluster_relayed_connections").await >= 1.0);
    assert!(nodes[2].metric("confer_cluster_relayed_connections").await >= 1.0);
    all_see_and_hear(&mut peers, &[vec![0; 3], vec![0; 3], vec![0; 3]]).await;
    peers[1].chat("before the failover").await.unwrap();
    peers[0]
        .until_true(|s| s.has_chat("before the failover"))
        .await;

    // The owner dies. Its lease runs out, the clients resume on the other nodes, one of them
    // takes the session over from the state in Redis, and media flows again through its SFU.
    let epoch = peers[1].with(|s| s.core.roster_epoch(&ChannelId::joint()).unwrap());
    let before = snapshot(&peers);
    nodes[0].kill().await;
    let died = Instant::now();
    all_see_and_hear(&mut peers, &before).await;
    let took = died.elapsed();
    assert!(took < FAILOVER_LIMIT, "the session went on after {took:?}");
    let (new_owner, new_fence) = redis.owner(session).await.expect("a new owner");
    assert_ne!(new_owner, owner);
    assert!(new_fence > fence, "a new claim has a larger fencing token");
    let new_url = redis.node_url(&new_owner).await;
    assert!(new_url == Some(nodes[1].url()) || new_url == Some(nodes[2].url()));
    for p in &peers {
        p.with(|s| {
            assert!(s.resumes >= 1, "each client resumed");
            assert!(
                s.drops.iter().all(|c| [1006, 1012, 1013].contains(c)),
                "{:?}",
                s.drops
            );
            assert_ne!(s.addr, addrs[0]);
        });
    }

    // Once everyone is back the mediator signs joint anew (e2ee §15.13): everyone holds the
    // new epoch, and every sender rotated its keys.
    for p in &mut peers {
        p.until_true(|s| s.core.roster_epoch(&ChannelId::joint()) > Some(epoch))
            .await;
    }
    // Chat and keys go on: the same rosters, messages open, nothing failed to decrypt.
    peers[2].chat("after the failover").await.unwrap();
    for p in &mut peers[..2] {
        p.until_true(|s| s.has_chat("after the failover")).await;
    }
    for p in &peers {
        p.with(|s| {
            assert_eq!(failures(s), (0, 0), "decrypt failures");
            assert!(s.alarms().is_empty(), "{:?}", s.alarms());
            assert_eq!(s.core.roster_members(&ChannelId::joint()).len(), 3);
        });
    }
}

/// A TCP relay to Redis that a test can cut (bytes are held, not lost: they arrive late when
/// the partition heals, as after a real one).
struct Partition {
    port: u16,
    cut: Arc<AtomicBool>,
    healed: Arc<tokio::sync::Notify>,
}

impl Partition {
    async fn start(to: u16) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let healed = Arc::new(tokio::sync::Notify::new());
        let (c, h) = (cut.clone(), healed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, c.clone(), h.clone()));
                tokio::spawn(pump(sr, cw, c.clone(), h.clone()));
            }
        });
        Self { port, cut, healed }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.healed.notify_waiters();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
    healed: Arc<tokio::sync::Notify>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while cut.load(Ordering::SeqCst) {
            let h = healed.notified();
            if !cut.load(Ordering::SeqCst) {
                break;
            }
            h.await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_node_cut_off_from_redis_stops_before_another_takes_its_sessions() {
    let mut c = Cluster::new().await;
    let partition = Partition::start(c.redis.port).await;
    c.add_node(&format!("redis://127.0.0.1:{}/0", partition.port))
        .await;
    let url = c.redis.url();
    c.add_node(&url).await;
    let (redis, tokens, nodes, session) = (&c.redis, &c.tokens, &c.nodes, &c.session);
    let to_b = [nodes[1].addr];
    // Everyone on node 0, which owns the session; the mediator and A resume on node 1 when
    // dropped; B never resumes (it shows what node 0 does after it lost the lease).
    let mut m = member(nodes[0].addr, &to_b, tokens, session, Role::Mediator, None).await;
    m.secured_in("joint").await;
    // A resumes on node 0 first when dropped (then node 1): see below.
    let a_failover = [nodes[1].addr, nodes[0].addr];
    let mut a = member(
        nodes[0].addr,
        &a_failover,
        tokens,
        session,
        Role::Party,
        Some(Side::A),
    )
    .await;
    a.secured_in("joint").await;
    let mut b = member(
        nodes[0].addr,
        &[],
        tokens,
        session,
        Role::Party,
        Some(Side::B),
    )
    .await;
    b.secured_in("joint").await;
    let (first, fence) = redis.owner(session).await.expect("an owner");
    assert_eq!(redis.node_url(&first).await, Some(nodes[0].url()));

    partition.cut();
    // During the cut A's connection drops and it resumes on node 0, which still acts for the
    // session (its lease holds a while yet): node 0 gives A a new resume token it cannot write
    // to Redis. When A then moves to node 1, that newest token must still work there.
    a.drop_connection();
    a.until_true(|s| resumed(s) >= 1).await;
    // Watch both nodes and Redis through the move: never do both nodes own the session.
    let mut fenced_at = None;
    let mut claimed_at = None;
    let started = Instant::now();
    while claimed_at.is_none() {
        assert!(
            started.elapsed() < FAILOVER_LIMIT,
            "no node took the session over"
        );
        let owned = (
            nodes[0].metric("confer_cluster_sessions_owned").await,
            nodes[1].metric("confer_cluster_sessions_owned").await,
        );
        assert!(owned.0 + owned.1 <= 1.0, "two owners at once: {owned:?}");
        if fenced_at.is_none() && b.with(|s| s.closed.is_some()) {
            fenced_at = Some(Instant::now());
        }
        if let Some((node, f)) = redis.owner(session).await
            && node != first
        {
            assert!(f > fence);
            claimed_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fenced_at = fenced_at.expect("node 0 stopped acting for the session before node 1 took it");
    assert!(fenced_at < claimed_at.unwrap());
    // Node 0 told its clients to resume elsewhere (B has nowhere to go).
    assert_eq!(b.with(|s| s.closed), Some(1012));
    m.until_true(|s| resumed(s) >= 1 && s.addr == nodes[1].addr)
        .await;
    a.until_true(|s| resumed(s) >= 2 && s.addr == nodes[1].addr)
        .await;
    a.secured_in("joint").await;
    assert_eq!(
        a.with(|s| s.closed),
        None,
        "A's newest resume token worked on node 1"
    );

    // The partition heals: node 0's held renewals and writes arrive late and are refused by
    // the fencing checks; node 1 keeps the session and its state.
    partition.heal();
    a.chat("after the partition").await.unwrap();
    m.until_true(|s| s.has_chat("after the partition")).await;
    let renewals_refused = nodes[0].metric("confer_cluster_leases_lost_total").await;
    assert!(renewals_refused >= 1.0, "node 0 saw its lease lost");
    assert_eq!(nodes[0].metric("confer_cluster_sessions_owned").await, 0.0);
    let (owner, _) = redis.owner(session).await.unwrap();
    assert_eq!(redis.node_url(&owner).await, Some(nodes[1].url()));
    for p in [&m, &a] {
        p.with(|s| assert_eq!(failures(s), (0, 0)));
    }
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_invites_stay_spent_cluster_wide() {
    let mut c = Cluster::start(2).await;
    let (redis, tokens, addrs, session) = (&mut c.redis, &c.tokens, &c.addrs, &c.session);
    let mut m = member(addrs[0], addrs, tokens, session, Role::Mediator, None).await;
    m.secured_in("joint").await;
    let invite = tokens.invite(session, Role::Party, Some(Side::A), 600).0;
    let mut a = Peer::join(addrs[1], &invite, config()).await;
    a.secured_in("joint").await;
    let (owner, fence) = redis.owner(session).await.expect("an owner");

    redis.restart().await;
    a.chat("after the restart").await.unwrap();
    m.until_true(|s| s.has_chat("after the restart")).await;
    assert_eq!(
        redis.owner(session).await,
        Some((owner, fence)),
        "same owner"
    );

    // A spent invite stays spent after the restart, on every node.
    for &addr in addrs {
        let (mut again, first) = confer_e2e::WsClient::join(addr, &invite).await;
        assert!(
            matches!(&first, confer_proto::ServerMessage::Error { code, .. } if code.as_str() == "unauthorized"),
            "{first:?}"
        );
        assert_eq!(again.closed().await, 4401);
    }
    // A new party joins through the other node after the restart.
    let mut b = member(addrs[1], addrs, tokens, session, Role::Party, Some(Side::B)).await;
    b.secured_in("joint").await;
    b.chat("a newcomer").await.unwrap();
    m.until_true(|s| s.has_chat("a newcomer")).await;

    // Redis loses everything (a restart without persistence). The owner takes its lease back
    // and writes the state again at its next renewal; meanwhile a participant who resumes
    // elsewhere is told to try again, then resumes.
    let mut c = redis.client().await;
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    b.drop_connection();
    b.until_true(|s| resumed(s) >= 1).await;
    b.secured_in("joint").await;
    b.chat("after the data loss").await.unwrap();
    m.until_true(|s| s.has_chat("after the data loss")).await;
    assert_eq!(
        redis.owner(session).await.map(|(_, f)| f),
        Some(fence),
        "the same owner, with its own fence"
    );
    assert_eq!(b.with(|s| s.closed), None);
}

#[tokio::test]
async fn a_draining_node_hands_its_sessions_over_without_dropping_anyone() {
    let mut c = Cluster::start(2).await;
    let (redis, tokens, nodes, addrs, session) =
        (&c.redis, &c.tokens, &mut c.nodes, &c.addrs, &c.session);
    let mut peers = vec![member(addrs[0], addrs, tokens, session, Role::Mediator, None).await];
    peers.push(member(addrs[0], addrs, tokens, session, Role::Party, Some(Side::A)).await);
    for p in &mut peers {
        p.secured_in("joint").await;
        p.publish(true);
    }
    all_see_and_hear(&mut peers, &[vec![0; 2], vec![0; 2]]).await;
    let (first, fence) = redis.owner(session).await.expect("an owner");
    assert_eq!(redis.node_url(&first).await, Some(nodes[0].url()));

    // SIGTERM: node 0 writes the session's state, gives its lease up and tells everyone to
    // resume; node 1 takes the session over at once (no lease to wait out); node 0 exits.
    let before = snapshot(&peers);
    let status = nodes[0].terminate().await;
    assert!(status.success(), "{status:?}");
    all_see_and_hear(&mut peers, &before).await;
    let (owner, new_fence) = redis.owner(session).await.expect("a new owner");
    assert_eq!(redis.node_url(&owner).await, Some(nodes[1].url()));
    // Handed over, not run out: node 0 released its lease (which moves the fence on), then
    // node 1 claimed it (once more). A lease that ran out would give fence + 1.
    assert_eq!(
        new_fence,
        fence + 2,
        "node 0 released the lease; node 1 claimed it"
    );
    // Nobody was dropped from the session: no one left, the rosters are whole, nothing failed.
    for p in &peers {
        p.with(|s| {
            assert!(s.resumes >= 1);
            // 1012 from the draining node; 1013 while the move is under way; 1006 when a
            // client that resumed through the draining node is cut as that node exits.
            assert!(
                s.drops.iter().all(|c| [1006, 1012, 1013].contains(c)),
                "{:?}",
                s.drops
            );
            assert!(
                !s.inbound
                    .iter()
                    .any(|m| matches!(m, confer_proto::ServerMessage::ParticipantLeft { .. })),
                "someone was dropped"
            );
            assert_eq!(s.core.roster_members(&ChannelId::joint()).len(), 2);
            assert_eq!(failures(s), (0, 0));
        });
    }
    // The drained node left the registry.
    let mut c = redis.client().await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("confer:nodes")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
}

#[tokio::test]
async fn confer_bot_resumes_on_another_node_when_the_owner_dies() {
    let mut c = Cluster::start(2).await;
    let (tokens, nodes, addrs, session) = (&c.tokens, &mut c.nodes, &c.addrs, &c.session);
    let mut m = member(addrs[0], addrs, tokens, session, Role::Mediator, None).await;
    m.secured_in("joint").await;
    m.publish(true);

    // confer-bot (the shell operators use) as party A, through node 1, with node 0 to fail over
    // to: what `confer-bot --url ws://node1/ws --failover ws://node0/ws --publish` runs.
    let mut cfg = config();
    cfg.expected_role = Some(Role::Party);
    let opts = confer_client::driver::BotOptions {
        url: format!("ws://{}/ws", addrs[1]),
        failover: vec![format!("ws://{}/ws", addrs[0])],
        token: tokens.invite(session, Role::Party, Some(Side::A), 600).0,
        config: cfg,
        // Until the mediator ends the session (below).
        seconds: 60,
        chat_every: Duration::from_millis(200),
        invites: Vec::new(),
        link_base: String::new(),
        media: Some(confer_client::media::MediaOptions {
            publish: true,
            audio_slots: 1,
            video_slots: 1,
            bind: [127, 0, 0, 1].into(),
            ice_servers: Vec::new(),
            relay_only: false,
        }),
        frame_every: Duration::from_millis(20),
    };
    let bot = tokio::spawn(confer_client::driver::run_bot(opts));
    let bot_id = m
        .until(|s| {
            let members = s.core.roster_members(&ChannelId::joint());
            (members.len() == 2).then(|| {
                members
                    .into_iter()
                    .find(|p| *p != s.core.participant_id().cloned().unwrap())
            })
        })
        .await
        .unwrap();
    m.until_true(|s| verified_from(s, &bot_id) > 10).await;

    // The owner (node 0, where the mediator started the session) dies.
    let base = m.with(|s| verified_from(s, &bot_id));
    nodes[0].kill().await;
    let went_on = tokio::time::timeout(
        FAILOVER_LIMIT,
        m.until_true(|s| verified_from(s, &bot_id) > base + 10),
    )
    .await;
    m.send(confer_proto::ClientMessage::End);
    if went_on.is_err() {
        let summary = tokio::time::timeout(Duration::from_secs(10), bot).await;
        panic!("the bot's media did not come back: {summary:?}");
    }
    let summary = tokio::time::timeout(Duration::from_secs(10), bot)
        .await
        .expect("the bot stops when the session ends")
        .unwrap()
        .unwrap();
    assert_eq!(summary.stopped, "closed 4000", "{summary:?}");
    assert!(summary.resumes >= 1, "{summary:?}");
    assert_eq!(summary.decrypt_failures, 0, "{summary:?}");
    assert!(summary.alarms.is_empty(), "{summary:?}");
    assert!(
        summary.frames_verified > 0 && summary.publishers_verified == 1,
        "{summary:?}"
    );
    assert_eq!(summary.media_decrypt_failures, 0, "{summary:?}");
    m.with(|s| assert_eq!(failures(s), (0, 0)));
}
