//! Cluster mode (crates/server/src/cluster.rs, docs/operations.md#cluster-mode): what relaying a
//! connection node to node adds to a message, and what a session costs a node in cluster mode
//! against the embedded default (no Redis).
//!
//! A real `redis-server` of the bench's own (a free 127.0.0.1 port, no persistence, killed at
//! the end) and in-process servers, the cluster nodes sharing one signing key; SFU off. Each
//! part runs in its own Tokio runtime, dropped at its end (which stops its servers), and its
//! own Redis database, so no part sees another's nodes.
//!
//! 1. Relay: a session owned by node A; one party connected to A, one to node B (which relays
//!    its connection to A), one on an embedded server for context. Each relays a message to its
//!    mediator, whose client echoes it back to the sender; the round trip, the three parties
//!    interleaved. Also the join (connect to admitted) through A and through B.
//! 2. Session start: mediator hello → welcome on an embedded server and on a lone cluster node,
//!    interleaved one at a time, then with several at once.
//! 3. Idle sessions: both servers at rest, then N sessions (a mediator connected, nothing said)
//!    on the embedded one, then N more on the cluster node: the process's CPU (it holds the
//!    servers and their idle clients) and Redis's commands, per idle session.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use confer_proto::{ParticipantId, Role, ServerMessage, SessionId, Side};
use confer_server::Server;
use serde_json::json;

use crate::report::{Cell, Table};
use crate::signalling::{Ws, admit, bench_config, connect_nodelay, join_ms, recv, send};

/// Round trips per party.
const ROUND_TRIPS: usize = 2_000;
const WARM_UP_TRIPS: usize = 100;
const PAYLOAD: usize = 200;
/// Joins per path (direct, relayed).
const JOINS: usize = 50;
/// Sessions started one at a time, then again with `AT_ONCE` in flight, on each server.
const STARTS: usize = 200;
const AT_ONCE: usize = 16;
/// Idle sessions held on each server.
const IDLE: usize = 500;
/// One measuring window: a multiple of the renewal period (a third of the default 6 s lease),
/// so every session renews the same number of times in every window.
const WINDOW: Duration = Duration::from_secs(2);
const WINDOWS: usize = 3;

pub(crate) fn run() -> anyhow::Result<Vec<Table>> {
    let redis = RedisServer::start()?;
    let key = KeyFile::new()?;
    let mut dirs = Dirs::default();
    let mut tables = in_runtime(relay(&redis, &key.0, &mut dirs))?;
    tables.push(in_runtime(starts(&redis, &key.0, &mut dirs))?);
    tables.push(in_runtime(idle(&redis, &key.0, &mut dirs))?);
    Ok(tables)
}

/// Runs one part in a runtime of its own; dropping it at the end stops that part's servers.
fn in_runtime<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(f);
    rt.shutdown_timeout(Duration::from_secs(2));
    r
}

/// A cluster node (`redis` set) or an embedded server, on 127.0.0.1 ephemeral ports.
async fn start(key: &Path, redis: Option<String>, dirs: &mut Dirs) -> anyhow::Result<Server> {
    let (mut c, dir) = bench_config()?;
    dirs.0.push(dir);
    c.media_enabled = false;
    c.signing_key_file = key.to_owned();
    if let Some(url) = redis {
        c.cluster.redis_url = url;
    }
    Ok(Server::start(c).await?)
}

/// A mediator's hello through `via` (an invite of `server`); its connection and id.
async fn mediator(
    server: &Server,
    via: SocketAddr,
    session: &SessionId,
) -> anyhow::Result<(Ws, ParticipantId)> {
    let mut m = connect_nodelay(via).await?;
    send(&mut m, json!({"type": "hello", "version": 1, "token": server.invite(session, Role::Mediator, None, 600)})).await?;
    let ServerMessage::Welcome { participant_id, .. } = recv(&mut m).await? else {
        anyhow::bail!("the mediator got no welcome")
    };
    Ok((m, participant_id))
}

/// The mediator's client: sends every relayed message back to its sender.
async fn echo(mut m: Ws) -> anyhow::Result<()> {
    loop {
        if let ServerMessage::Relayed { from, data, .. } = recv(&mut m).await? {
            send(
                &mut m,
                json!({"type": "relay", "to": {"participant": from.as_str()}, "data": data}),
            )
            .await?;
        }
    }
}

/// One relay to the mediator and its echo, in ms.
async fn round_trip(ws: &mut Ws, to: &ParticipantId, i: usize) -> anyhow::Result<f64> {
    let data = format!("{i:08}{}", "x".repeat(PAYLOAD - 8));
    let t = Instant::now();
    send(
        ws,
        json!({"type": "relay", "to": {"participant": to.as_str()}, "data": data}),
    )
    .await?;
    loop {
        if let ServerMessage::Relayed { data: back, .. } = recv(ws).await? {
            anyhow::ensure!(back == data, "an echo out of order");
            return Ok(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
}

fn pct(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q) as usize]
}

async fn relay(redis: &RedisServer, key: &Path, dirs: &mut Dirs) -> anyhow::Result<Vec<Table>> {
    let a = start(key, Some(redis.url(0)), dirs).await?;
    let b = start(key, Some(redis.url(0)), dirs).await?;
    let e = start(key, None, dirs).await?;
    let session = SessionId::new("bench-cluster")?;
    // Both nodes have no session: A, asked first, keeps it (a tie stays on the node asked).
    let (mut m, mid) = mediator(&a, a.addr(), &session).await?;
    anyhow::ensure!(
        a.session_count() == 1 && b.session_count() == 0,
        "the session did not start on node A"
    );

    // Joins, each followed by a leave, alternating the two paths.
    let mut joins = [Vec::new(), Vec::new()];
    for i in 0..JOINS {
        for (k, via) in [a.addr(), b.addr()].into_iter().enumerate() {
            joins[k].push(join_ms(&a, via, &session, &mut m, (2 * i + k) as u8).await?);
        }
    }
    anyhow::ensure!(b.session_count() == 0, "node B started the session");

    let mut direct = admit(
        &a,
        &session,
        &mut m,
        Side::new(1)?,
        connect_nodelay(a.addr()).await?,
    )
    .await?;
    let mut relayed = admit(
        &a,
        &session,
        &mut m,
        Side::new(2)?,
        connect_nodelay(b.addr()).await?,
    )
    .await?;
    let echo_a = tokio::spawn(echo(m));
    let plain_session = SessionId::new("bench-embedded")?;
    let (mut em, emid) = mediator(&e, e.addr(), &plain_session).await?;
    let mut plain = admit(
        &e,
        &plain_session,
        &mut em,
        Side::new(1)?,
        connect_nodelay(e.addr()).await?,
    )
    .await?;
    let echo_e = tokio::spawn(echo(em));

    let mut rtt = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..WARM_UP_TRIPS + ROUND_TRIPS {
        let d = round_trip(&mut direct, &mid, i).await?;
        let r = round_trip(&mut relayed, &mid, i).await?;
        let p = round_trip(&mut plain, &emid, i).await?;
        if i >= WARM_UP_TRIPS {
            rtt[0].push(d);
            rtt[1].push(r);
            rtt[2].push(p);
        }
    }
    echo_a.abort();
    echo_e.abort();
    for v in rtt.iter_mut().chain(joins.iter_mut()) {
        v.sort_by(f64::total_cmp);
    }

    let mut t = Table::new(
        format!(
            "Cluster relay: relay round trip (party → mediator → party, {PAYLOAD} B, {ROUND_TRIPS} each, interleaved), session owned by node A, Redis and nodes on loopback; baseline: the party connected to node A"
        ),
        &["", "p50 ms", "p99 ms", "p50 / direct", "p99 / direct"],
    );
    let rows = [
        ("party on node A (direct)", &rtt[0]),
        ("party on node B, relayed to A", &rtt[1]),
        ("party on an embedded server (no cluster)", &rtt[2]),
    ];
    for (label, v) in rows {
        t.row(vec![
            Cell::text(label),
            Cell::num(pct(v, 0.5), 3),
            Cell::num(pct(v, 0.99), 3),
            Cell::num(pct(v, 0.5) / pct(&rtt[0], 0.5), 2),
            Cell::num(pct(v, 0.99) / pct(&rtt[0], 0.99), 2),
        ]);
    }
    t.row(vec![
        Cell::text("added by the relay (B − A)"),
        Cell::num(pct(&rtt[1], 0.5) - pct(&rtt[0], 0.5), 3),
        Cell::num(pct(&rtt[1], 0.99) - pct(&rtt[0], 0.99), 3),
        Cell::text(""),
        Cell::text(""),
    ]);

    let mut j = Table::new(
        format!(
            "Cluster join: connect, hello, consent, admitted into joint ({JOINS} each, alternating), session owned by node A; baseline: connecting to node A"
        ),
        &["", "p50 ms", "p99 ms", "p50 / direct", "p99 / direct"],
    );
    for (label, v) in [
        ("through node A (direct)", &joins[0]),
        ("through node B (relayed)", &joins[1]),
    ] {
        j.row(vec![
            Cell::text(label),
            Cell::num(pct(v, 0.5), 2),
            Cell::num(pct(v, 0.99), 2),
            Cell::num(pct(v, 0.5) / pct(&joins[0], 0.5), 2),
            Cell::num(pct(v, 0.99) / pct(&joins[0], 0.99), 2),
        ]);
    }
    t.print();
    j.print();
    Ok(vec![t, j])
}

async fn starts(redis: &RedisServer, key: &Path, dirs: &mut Dirs) -> anyhow::Result<Table> {
    let e = start(key, None, dirs).await?;
    let c = start(key, Some(redis.url(1)), dirs).await?;
    let servers = [&e, &c];
    let mut held = Vec::new();
    // Warm-up, then one at a time, the two servers interleaved.
    let mut hello = [Vec::new(), Vec::new()];
    let mut whole = [Duration::ZERO; 2];
    let before = redis.stats()?;
    let began = Instant::now();
    for i in 0..10 + STARTS {
        for (k, s) in servers.iter().enumerate() {
            let session = SessionId::new(format!("one-{k}-{i}"))?;
            let token = s.invite(&session, Role::Mediator, None, 600);
            let t0 = Instant::now();
            let mut ws = connect_nodelay(s.addr()).await?;
            let t1 = Instant::now();
            send(
                &mut ws,
                json!({"type": "hello", "version": 1, "token": token}),
            )
            .await?;
            let ServerMessage::Welcome { .. } = recv(&mut ws).await? else {
                anyhow::bail!("a mediator got no welcome")
            };
            let t2 = Instant::now();
            if i >= 10 {
                hello[k].push((t2 - t1).as_secs_f64() * 1000.0);
                whole[k] += t2 - t0;
            }
            held.push(ws);
        }
    }
    let after = redis.stats()?;
    let took = began.elapsed();
    anyhow::ensure!(
        e.session_count() == 10 + STARTS && c.session_count() == 10 + STARTS,
        "sessions missing: {} embedded, {} cluster",
        e.session_count(),
        c.session_count()
    );
    // Heartbeats (2 commands a second) and INFO itself are taken out; no lease is renewed yet
    // when the starts take less than the renewal period.
    let commands =
        after.commands.saturating_sub(before.commands + 1) as f64 - 2.0 * took.as_secs_f64();
    let per_start = commands / (10 + STARTS) as f64;
    let lease_note = if took < WINDOW {
        ""
    } else {
        " (renewals included)"
    };

    // Several at once.
    let mut rate = [0.0; 2];
    let mut loaded = [Vec::new(), Vec::new()];
    for (k, s) in servers.iter().enumerate() {
        let mut tokens: Vec<Vec<String>> = vec![Vec::new(); AT_ONCE];
        for i in 0..STARTS {
            let session = SessionId::new(format!("many-{k}-{i}"))?;
            tokens[i % AT_ONCE].push(s.invite(&session, Role::Mediator, None, 600));
        }
        let addr = s.addr();
        let t = Instant::now();
        let tasks: Vec<_> = tokens
            .into_iter()
            .map(|mine| {
                tokio::spawn(async move {
                    let (mut out, mut ms) = (Vec::new(), Vec::new());
                    for token in mine {
                        let mut ws = connect_nodelay(addr).await?;
                        let t = Instant::now();
                        send(
                            &mut ws,
                            json!({"type": "hello", "version": 1, "token": token}),
                        )
                        .await?;
                        let ServerMessage::Welcome { .. } = recv(&mut ws).await? else {
                            anyhow::bail!("a mediator got no welcome")
                        };
                        ms.push(t.elapsed().as_secs_f64() * 1000.0);
                        out.push(ws);
                    }
                    anyhow::Ok((out, ms))
                })
            })
            .collect();
        for task in tasks {
            let (ws, ms) = task.await??;
            held.extend(ws);
            loaded[k].extend(ms);
        }
        rate[k] = STARTS as f64 / t.elapsed().as_secs_f64();
    }
    for v in hello.iter_mut().chain(loaded.iter_mut()) {
        v.sort_by(f64::total_cmp);
    }
    let mut t = Table::new(
        format!(
            "Cluster session start: mediator hello → welcome, {STARTS} sessions one at a time (interleaved), then {STARTS} with {AT_ONCE} at once; cluster: one node + Redis on loopback; baseline: the embedded default (it spends each invite in SQLite with synchronous = FULL, the cluster node in Redis, here without persistence)"
        ),
        &["", "embedded", "cluster", "cluster / embedded"],
    );
    let row = |label: &str, e: f64, c: f64, d: usize| {
        vec![
            Cell::text(label),
            Cell::num(e, d),
            Cell::num(c, d),
            Cell::num(c / e, 2),
        ]
    };
    t.row(row(
        "hello → welcome p50 ms",
        pct(&hello[0], 0.5),
        pct(&hello[1], 0.5),
        3,
    ));
    t.row(row(
        "hello → welcome p99 ms",
        pct(&hello[0], 0.99),
        pct(&hello[1], 0.99),
        3,
    ));
    t.row(row(
        "sessions/s, one at a time (connect + hello → welcome)",
        STARTS as f64 / whole[0].as_secs_f64(),
        STARTS as f64 / whole[1].as_secs_f64(),
        0,
    ));
    t.row(row(
        &format!("hello → welcome p50 ms, {AT_ONCE} at once"),
        pct(&loaded[0], 0.5),
        pct(&loaded[1], 0.5),
        3,
    ));
    t.row(row(
        &format!("sessions/s, {AT_ONCE} at once"),
        rate[0],
        rate[1],
        0,
    ));
    t.row(vec![
        Cell::text(format!("Redis commands per session start{lease_note}")),
        Cell::num(0.0, 1),
        Cell::num(per_start, 1),
        Cell::text(""),
    ]);
    drop(held);
    t.print();
    Ok(t)
}

/// What one window measured.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The bench process's CPU, ms per second.
    cpu: f64,
    /// Redis: commands processed a second (those run by scripts included), scripts run a
    /// second, and redis-server's CPU in ms per second.
    commands: f64,
    scripts: f64,
    redis_cpu: f64,
}

/// The median of `WINDOWS` windows of `WINDOW`, figure by figure.
async fn measure(redis: &RedisServer) -> anyhow::Result<Window> {
    let mut ws = Vec::new();
    let mut r0 = redis.stats()?;
    let (mut c0, mut t0) = (process_cpu()?, Instant::now());
    for _ in 0..WINDOWS {
        tokio::time::sleep(WINDOW).await;
        let (c1, t1) = (process_cpu()?, Instant::now());
        let r1 = redis.stats()?;
        let secs = (t1 - t0).as_secs_f64();
        ws.push(Window {
            cpu: (c1 - c0).as_secs_f64() * 1000.0 / secs,
            // Less the INFO that read `r0`.
            commands: r1.commands.saturating_sub(r0.commands + 1) as f64 / secs,
            scripts: r1.scripts.saturating_sub(r0.scripts) as f64 / secs,
            redis_cpu: (r1.cpu - r0.cpu) * 1000.0 / secs,
        });
        (r0, c0, t0) = (r1, c1, t1);
    }
    let med = |f: fn(&Window) -> f64| {
        let mut v: Vec<f64> = ws.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Window {
        cpu: med(|w| w.cpu),
        commands: med(|w| w.commands),
        scripts: med(|w| w.scripts),
        redis_cpu: med(|w| w.redis_cpu),
    })
}

/// Starts `n` sessions one at a time on `s`; their mediators' connections, held open.
async fn hold(s: &Server, prefix: &str, n: usize) -> anyhow::Result<Vec<Ws>> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let session = SessionId::new(format!("{prefix}-{i}"))?;
        held.push(mediator(s, s.addr(), &session).await?.0);
    }
    Ok(held)
}

async fn idle(redis: &RedisServer, key: &Path, dirs: &mut Dirs) -> anyhow::Result<Table> {
    let e = start(key, None, dirs).await?;
    let c = start(key, Some(redis.url(2)), dirs).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rest = measure(redis).await?;
    let held_e = hold(&e, "idle-e", IDLE).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_e = measure(redis).await?;
    let held_c = hold(&c, "idle-c", IDLE).await?;
    // Until every new session's lease has been renewed once: the steady state.
    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    let with_both = measure(redis).await?;
    anyhow::ensure!(
        e.session_count() == IDLE && c.session_count() == IDLE,
        "sessions missing: {} embedded, {} cluster",
        e.session_count(),
        c.session_count()
    );
    drop((held_e, held_c));

    let n = IDLE as f64;
    // Per idle session, each server's increment over the step before.
    let cpu_e = (with_e.cpu - rest.cpu) * 1000.0 / n;
    let cpu_c = (with_both.cpu - with_e.cpu) * 1000.0 / n;
    let mut t = Table::new(
        format!(
            "Cluster idle sessions: {IDLE} sessions (a mediator connected, nothing said) held on each server; CPU is the bench process's (it holds both in-process servers and their idle clients), medians of {WINDOWS} windows of {} s at each step; cluster: one node, 6 s lease (renewed every 2 s), Redis on loopback; baseline: the embedded default",
            WINDOW.as_secs()
        ),
        &["", "embedded", "cluster", "cluster / embedded"],
    );
    t.row(vec![
        Cell::text("process CPU ms/s, no session on either server"),
        Cell::num(rest.cpu, 2),
        Cell::num(rest.cpu, 2),
        Cell::text(""),
    ]);
    t.row(vec![
        Cell::text(format!(
            "process CPU ms/s, once this server holds {IDLE} (embedded first; its sessions stay)"
        )),
        Cell::num(with_e.cpu, 2),
        Cell::num(with_both.cpu, 2),
        Cell::text(""),
    ]);
    // An increment within the windows' noise (under 0.2 ms/s in all) has no meaningful ratio.
    let ratio = if cpu_e * n < 200.0 {
        Cell::text("embedded ≈ 0")
    } else {
        Cell::num(cpu_c / cpu_e, 1)
    };
    t.row(vec![
        Cell::text("CPU µs/s per idle session (the step's increment ÷ sessions)"),
        Cell::num(cpu_e, 2),
        Cell::num(cpu_c, 2),
        ratio,
    ]);
    let per = |f: fn(&Window) -> f64| (f(&with_both) - f(&with_e)) / n;
    t.row(vec![
        Cell::text("Redis commands/s, node at rest (heartbeat)"),
        Cell::num(0.0, 1),
        Cell::num(rest.commands, 1),
        Cell::text(""),
    ]);
    t.row(vec![
        Cell::text(format!(
            "Redis commands/s, {IDLE} sessions (scripts' own commands counted)"
        )),
        Cell::num(0.0, 1),
        Cell::num(with_both.commands, 1),
        Cell::text(""),
    ]);
    t.row(vec![
        Cell::text("Redis commands/s per idle session"),
        Cell::num(0.0, 2),
        Cell::num(per(|w| w.commands), 2),
        Cell::text(""),
    ]);
    t.row(vec![
        Cell::text("Redis scripts run/s per idle session (round trips)"),
        Cell::num(0.0, 2),
        Cell::num(per(|w| w.scripts), 2),
        Cell::text(""),
    ]);
    t.row(vec![
        Cell::text("redis-server CPU µs/s per idle session"),
        Cell::num(0.0, 2),
        Cell::num(per(|w| w.redis_cpu) * 1000.0, 2),
        Cell::text(""),
    ]);
    t.print();
    Ok(t)
}

/// The bench process's CPU time so far (user + system, every thread).
fn process_cpu() -> anyhow::Result<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF)?;
    let d = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(d(u.user_time()) + d(u.system_time()))
}

/// The data directories of the servers started, removed at the end.
#[derive(Debug, Default)]
struct Dirs(Vec<PathBuf>);

impl Drop for Dirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The signing key every server here reads (64 hex characters), removed at the end.
#[derive(Debug)]
struct KeyFile(PathBuf);

impl KeyFile {
    fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!(
            "confer-bench-key-{}",
            confer_server::token::random_id()
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?
            .write_all(hex.as_bytes())?;
        Ok(Self(path))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Redis's counters at one moment.
#[derive(Debug, Clone, Copy)]
struct RedisStats {
    commands: u64,
    scripts: u64,
    /// redis-server's CPU time so far, seconds (user + system).
    cpu: f64,
}

/// A `redis-server` of our own on a free 127.0.0.1 port, without persistence; killed on drop.
#[derive(Debug)]
struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    fn start() -> anyhow::Result<Self> {
        // A free port can be taken between our probe and Redis's bind: try a few.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start() {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    fn try_start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "confer-bench-redis-{}",
            confer_server::token::random_id()
        ));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server (scripts/install-deps.sh installs it)")?;
        let mut r = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if r.command(&["PING"]).is_ok_and(|p| p == "PONG") {
                return Ok(r);
            }
            if r.child.try_wait()?.is_some() {
                anyhow::bail!("redis-server exited at start (port {port} taken?)");
            }
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// One command on a connection of its own; the reply as text.
    fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        anyhow::ensure!(!line.is_empty(), "no reply from Redis");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | ":" => Ok(rest.to_owned()),
            "$" => {
                let n: usize = rest.parse()?;
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                Ok(String::from_utf8(buf)?)
            }
            _ => anyhow::bail!("Redis: {line}"),
        }
    }

    /// `INFO all`: commands processed (a script's own commands included), scripts run
    /// (`EVALSHA` and `EVAL` calls) and the server's CPU time.
    fn stats(&self) -> anyhow::Result<RedisStats> {
        let info = self.command(&["INFO", "all"])?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let calls = |name: &str| {
            field(name)
                .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let secs = |name: &str| {
            field(name)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(RedisStats {
            commands: field("total_commands_processed")
                .and_then(|v| v.parse().ok())
                .context("INFO has no total_commands_processed")?,
            scripts: calls("cmdstat_evalsha") + calls("cmdstat_eval"),
            cpu: secs("used_cpu_user") + secs("used_cpu_sys"),
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
