//! Idle participants held by one Confer server, and what each costs it in memory.
//!
//! A `confer serve --dev` process of the benchmark's own ([`ConferProcess`]; SFU off, default
//! limits) is filled with sessions of a mediator and three parties. Every participant is what
//! a quiet call leaves behind: a WebSocket that connected, said `hello`, and (parties) gave
//! consent and was admitted into joint by the mediator; then nothing more is said. The
//! clients are real WebSockets in this process, bound to several 127.0.0.x source addresses
//! (one destination admits ~28k ephemeral ports per source address), with a small read buffer
//! so that the clients' own memory stays modest; they are not polled while they wait.
//!
//! The server's resident memory (`VmRSS`) is read at rest, with half the participants held and
//! with all of them, each after the server has settled; per connection is the growth divided
//! by the connections (all-in: sessions, tasks, buffers, allocator growth), and the growth of
//! the second half alone (marginal). The kernel's TCP buffers are not in RSS: the growth of
//! `/proc/net/sockstat`'s TCP memory (both ends of each connection) is shown beside it.
//!
//! While they are held, a new session is started and its parties join and relay a message
//! (the server still admits and relays), then every held connection sends a `ping` and must
//! get its `pong` (all still open).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use confer_proto::{Role, ServerMessage, SessionId, Side};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::process::{ConferProcess, Invites, raise_nofile};
use super::{Ws, admit_with, recv, send};
use crate::report::{Cell, Table};

/// Connections held, unless `BENCH_IDLE_CONNECTIONS` says otherwise, and as far as the
/// open-file limit allows (each process needs a descriptor per connection; where the hard
/// limit cannot be raised, as on the 2-core box of docs/benchmarks.md with 20,000, that is
/// what bounds it). At ~1,200 joins/s this many take ~17 s to fill.
const DEFAULT_CONNECTIONS: usize = 20_000;
/// A session: a mediator and three parties.
const SESSION: usize = 4;
/// Connections per source address, below the ~28k ephemeral ports of one.
const PER_SOURCE: usize = 16_000;
/// Sessions being filled at once (each has at most one connection before its `hello`, well
/// under the server's 64 per address).
const JOINERS: usize = 32;
/// File descriptors beyond the connections (the runtime, listeners, logs, the data
/// directory; the server uses a few dozen).
const SPARE_FDS: u64 = 1024;
/// The clients' read buffer (tungstenite's default, 128 KiB, is for bulk transfer).
const CLIENT_READ_BUFFER: usize = 4096;
/// How long one join or one ping may take before the benchmark gives up on it.
const PATIENCE: Duration = Duration::from_secs(20);

/// What one run measured.
#[derive(Debug)]
struct Held {
    connections: usize,
    sources: usize,
    rest_kib: u64,
    half_kib: u64,
    full_kib: u64,
    after_pings_kib: u64,
    kernel_kib: f64,
    fill: Duration,
    fill_cpu: Duration,
    join_ms: f64,
    relay_ms: f64,
    answered: usize,
}

pub(crate) async fn run() -> anyhow::Result<Table> {
    let wanted = std::env::var("BENCH_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CONNECTIONS);
    // This process holds the client ends, the server the other ends: each needs a descriptor
    // per connection (the child inherits the limit).
    let limit = raise_nofile(wanted as u64 + SPARE_FDS)?;
    let fit = usize::try_from(limit.saturating_sub(SPARE_FDS)).unwrap_or(usize::MAX);
    let connections = wanted.min(fit) / (2 * SESSION) * (2 * SESSION);
    anyhow::ensure!(
        connections > 0,
        "the open-file limit ({limit}) leaves no room for idle connections"
    );
    if connections < wanted {
        println!(
            "(the open-file limit {limit} allows {connections} idle connections, not {wanted})"
        );
    }
    let server = ConferProcess::start(&[("CONFER_MEDIA_ENABLED", "false")])?;
    let held = hold(&server, connections).await;
    drop(server);
    Ok(table(held?))
}

async fn hold(server: &ConferProcess, connections: usize) -> anyhow::Result<Held> {
    let invites = server.invites();
    let sources: Vec<Ipv4Addr> = (0..connections.div_ceil(PER_SOURCE))
        .map(|i| Ipv4Addr::new(127, 0, 0, 1 + i as u8))
        .collect();
    let rest_kib = settled_rss(server).await?;
    let kernel_rest = tcp_kernel_kib();
    let sessions = connections / SESSION;
    let (t, cpu) = (Instant::now(), server.cpu()?);
    let mut clients = fill(&invites, 0..sessions / 2, &sources).await?;
    let (mut fill_time, mut fill_cpu) = (t.elapsed(), server.cpu()?.since(&cpu));
    let half_kib = settled_rss(server).await?;
    let (t, cpu) = (Instant::now(), server.cpu()?);
    clients.extend(fill(&invites, sessions / 2..sessions, &sources).await?);
    fill_time += t.elapsed();
    fill_cpu += server.cpu()?.since(&cpu);
    let full_kib = settled_rss(server).await?;
    let kernel_kib = (tcp_kernel_kib() - kernel_rest) / connections as f64;

    let (join_ms, relay_ms) = tokio::time::timeout(PATIENCE, live(&invites, &sources))
        .await
        .context("the join and relay while held took too long")??;
    let answered = ping_all(clients).await;
    let after_pings_kib = settled_rss(server).await?;
    Ok(Held {
        connections,
        sources: sources.len(),
        rest_kib,
        half_kib,
        full_kib,
        after_pings_kib,
        kernel_kib,
        fill: fill_time,
        fill_cpu,
        join_ms,
        relay_ms,
        answered,
    })
}

fn table(h: Held) -> Table {
    let n = h.connections as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let all_in = h.full_kib.saturating_sub(h.rest_kib) as f64 / n;
    let marginal = h.full_kib.saturating_sub(h.half_kib) as f64 / (n / 2.0);
    let mut t = Table::new(
        format!(
            "Idle signalling connections on one `confer serve --dev` process (SFU off): sessions of a mediator and 3 parties, each connected, said hello, consented and was admitted, then quiet; clients from {} loopback source addresses",
            h.sources
        ),
        &["", "value", "target"],
    );
    let row = |t: &mut Table, label: &str, v: f64, decimals: usize, target: &str| {
        t.row(vec![
            Cell::text(label),
            Cell::num(v, decimals),
            Cell::text(target),
        ]);
    };
    row(&mut t, "connections held", n, 0, "≥ 50,000");
    row(
        &mut t,
        "of them answering a ping at the end",
        h.answered as f64,
        0,
        "all",
    );
    row(&mut t, "server RSS at rest, MiB", mib(h.rest_kib), 1, "");
    row(
        &mut t,
        "server RSS with half of them, MiB",
        mib(h.half_kib),
        1,
        "",
    );
    row(
        &mut t,
        "server RSS with all of them, MiB",
        mib(h.full_kib),
        1,
        "",
    );
    row(
        &mut t,
        "server RSS per connection, KiB (all-in: growth from rest / connections)",
        all_in,
        1,
        "≤ 30",
    );
    row(
        &mut t,
        "server RSS per connection, KiB (marginal: the second half)",
        marginal,
        1,
        "≤ 30",
    );
    row(
        &mut t,
        "server RSS after every connection pinged, MiB",
        mib(h.after_pings_kib),
        1,
        "",
    );
    row(
        &mut t,
        "kernel TCP buffers per connection, KiB (both ends; not in RSS)",
        h.kernel_kib,
        1,
        "",
    );
    row(
        &mut t,
        "joins/s while filling (connect to admitted, 32 sessions at a time)",
        n / h.fill.as_secs_f64(),
        0,
        "",
    );
    row(
        &mut t,
        "server CPU per connection joined while filling, ms",
        h.fill_cpu.as_secs_f64() * 1000.0 / n,
        3,
        "",
    );
    row(
        &mut t,
        "a new party's join while all are held, ms",
        h.join_ms,
        2,
        "< 50",
    );
    row(
        &mut t,
        "a relay party to party in joint while all are held, ms",
        h.relay_ms,
        2,
        "",
    );
    t.print();
    if h.answered < h.connections {
        println!(
            "WARNING: {} of {} idle connections did not answer a ping",
            h.connections - h.answered,
            h.connections
        );
    }
    t
}

/// Fills the sessions numbered `range`, JOINERS at a time; returns every connection.
async fn fill(
    invites: &Invites,
    range: std::ops::Range<usize>,
    sources: &[Ipv4Addr],
) -> anyhow::Result<Vec<Ws>> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let workers: Vec<_> = (0..JOINERS)
        .map(|_| {
            let (invites, next, sources) = (invites.clone(), next.clone(), sources.to_vec());
            let end = range.end;
            tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= end {
                        return anyhow::Ok(held);
                    }
                    let from = sources[k % sources.len()];
                    let joined = tokio::time::timeout(PATIENCE, session(&invites, k, from))
                        .await
                        .context("a join took too long")?
                        .with_context(|| format!("session {k}"))?;
                    held.extend(joined);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(range.len() * SESSION);
    for w in workers {
        all.extend(w.await??);
    }
    Ok(all)
}

/// Session `k`: its mediator, then three parties admitted into joint.
async fn session(invites: &Invites, k: usize, from: Ipv4Addr) -> anyhow::Result<Vec<Ws>> {
    let id = SessionId::new(format!("idle-{k}"))?;
    let mut m = connect_from(from, invites.addr).await?;
    hello(&mut m, &invites.invite(&id, Role::Mediator, None)).await?;
    let mut held = Vec::with_capacity(SESSION);
    for side in 1..SESSION as u8 {
        let ws = connect_from(from, invites.addr).await?;
        let token = invites.invite(&id, Role::Party, Some(Side::new(side)?));
        held.push(admit_with(&token, &mut m, ws).await?);
    }
    held.push(m);
    Ok(held)
}

async fn hello(ws: &mut Ws, token: &str) -> anyhow::Result<()> {
    send(ws, json!({"type": "hello", "version": 1, "token": token})).await?;
    match recv(ws).await? {
        ServerMessage::Welcome { .. } => Ok(()),
        other => anyhow::bail!("no welcome: {other:?}"),
    }
}

/// A WebSocket to `to` from `from` (any free port: chosen at connect time, so a port is only
/// taken for this one destination), Nagle off as in a browser.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(from, 0)))?;
    let tcp = socket.connect(to).await?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{to}/ws"),
        MaybeTlsStream::Plain(tcp),
        Some(config),
    )
    .await?;
    Ok(ws)
}

/// With everything held: a new session's party joins (connect to admitted, ms), then relays a
/// message into joint that the other party receives (ms).
async fn live(invites: &Invites, sources: &[Ipv4Addr]) -> anyhow::Result<(f64, f64)> {
    let from = sources[0];
    let id = SessionId::new("idle-live")?;
    let mut m = connect_from(from, invites.addr).await?;
    hello(&mut m, &invites.invite(&id, Role::Mediator, None)).await?;
    let ws = connect_from(from, invites.addr).await?;
    let token = invites.invite(&id, Role::Party, Some(Side::new(1)?));
    let mut a = admit_with(&token, &mut m, ws).await?;
    let t = Instant::now();
    let ws = connect_from(from, invites.addr).await?;
    let token = invites.invite(&id, Role::Party, Some(Side::new(2)?));
    let mut b = admit_with(&token, &mut m, ws).await?;
    let join_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    send(
        &mut a,
        json!({"type": "relay", "to": {"channel": "joint"}, "data": "still here"}),
    )
    .await?;
    tokio::time::timeout(PATIENCE, async {
        while !matches!(recv(&mut b).await?, ServerMessage::Relayed { .. }) {}
        anyhow::Ok(())
    })
    .await
    .context("the relay did not arrive")??;
    Ok((join_ms, t.elapsed().as_secs_f64() * 1000.0))
}

/// Every connection sends a `ping` and reads (past what the server sent it while it was
/// quiet) to its `pong`; how many got one.
async fn ping_all(clients: Vec<Ws>) -> usize {
    let per_task = clients.len().div_ceil(64).max(1);
    let mut clients = clients.into_iter();
    let mut tasks = Vec::new();
    loop {
        let chunk: Vec<Ws> = clients.by_ref().take(per_task).collect();
        if chunk.is_empty() {
            break;
        }
        tasks.push(tokio::spawn(async move {
            let mut answered = 0;
            for mut ws in chunk {
                let pong = tokio::time::timeout(PATIENCE, async {
                    send(&mut ws, json!({"type": "ping"})).await?;
                    while !matches!(recv(&mut ws).await?, ServerMessage::Pong) {}
                    anyhow::Ok(())
                });
                if matches!(pong.await, Ok(Ok(()))) {
                    answered += 1;
                }
            }
            answered
        }));
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap_or(0);
    }
    answered
}

/// The server's RSS once it has stopped moving (two reads 250 ms apart within 0.5 %, at
/// most 5 s), KiB.
async fn settled_rss(server: &ConferProcess) -> anyhow::Result<u64> {
    let mut last = server.rss_kib()?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = server.rss_kib()?;
        if now.abs_diff(last) * 200 <= last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// The kernel's memory for TCP buffers of the whole machine (`/proc/net/sockstat`), KiB.
fn tcp_kernel_kib() -> f64 {
    let page_kib = 4.0;
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_owned();
            let mut words = line.split_whitespace();
            words.position(|w| w == "mem")?;
            words.next()?.parse::<f64>().ok()
        })
        .map_or(0.0, |pages| pages * page_kib)
}
