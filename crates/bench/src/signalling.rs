//! Signalling over real WebSockets on loopback: relay fan-out through a `confer serve` process
//! against a bare WebSocket fan-out server written here (no auth, no rooms, same client code),
//! per second and per CPU-second of each server; the time from connecting to being admitted;
//! and how many idle participants one server holds at what memory each ([`scale`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use confer_proto::{Role, ServerMessage, SessionId, Side};
use confer_server::{Config, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::median;
use crate::report::{Cell, Table};

mod process;
mod scale;

use process::{ConferProcess, ThreadCpu};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Peers = Arc<Mutex<Vec<(u64, mpsc::Sender<String>)>>>;

const RECEIVERS: usize = 3;
const MESSAGES: u64 = 20_000;
const PAYLOAD: usize = 200;
const RUNS: usize = 5;
/// The name of the baseline server's threads (its CPU time is theirs).
const BASELINE_THREADS: &str = "bench-baseline";

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Ws> {
    Ok(tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await?
        .0)
}

/// Like a browser's WebSocket: Nagle's algorithm off (`TCP_NODELAY`), so a frame written
/// while an earlier one is unacknowledged does not wait for a delayed ACK (up to 40 ms).
pub(crate) async fn connect_nodelay(addr: SocketAddr) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}/ws");
    Ok(
        tokio_tungstenite::connect_async_with_config(url, None, true)
            .await?
            .0,
    )
}

pub(crate) async fn recv(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(_)) => continue,
            _ => anyhow::bail!("connection closed"),
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, v: serde_json::Value) -> anyhow::Result<()> {
    ws.send(Message::text(v.to_string())).await?;
    Ok(())
}

/// The `--dev` configuration on ephemeral 127.0.0.1 ports, the rate limits out of the
/// benchmark's way, in a new data directory (returned: the caller removes it).
pub(crate) fn bench_config() -> anyhow::Result<(Config, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!(
        "confer-bench-{}",
        confer_server::token::random_id()
    ));
    let mut c = Config::dev(dir.clone());
    c.listen = "127.0.0.1:0".parse()?;
    c.metrics_listen = "127.0.0.1:0".parse()?;
    c.media_listen = "127.0.0.1:0".parse()?;
    c.rate_limit_msgs_per_sec = 10_000_000;
    c.rate_limit_burst = 10_000_000;
    c.rate_limit_bytes_per_sec = u32::MAX;
    c.rate_limit_burst_bytes = u32::MAX;
    Ok((c, dir))
}

async fn start_confer() -> anyhow::Result<(Server, std::path::PathBuf)> {
    let (c, dir) = bench_config()?;
    Ok((Server::start(c).await?, dir))
}

/// Joins through `via` (the server itself, or in cluster mode any node) with an invite of
/// `server`, and is admitted to joint; returns the connection.
pub(crate) async fn admitted(
    server: &Server,
    via: SocketAddr,
    session: &SessionId,
    mediator: &mut Ws,
    side: Side,
) -> anyhow::Result<Ws> {
    let ws = connect(via).await?;
    admit(server, session, mediator, side, ws).await
}

/// Joins on a connection made by the caller and is admitted to joint; returns the connection.
pub(crate) async fn admit(
    server: &Server,
    session: &SessionId,
    mediator: &mut Ws,
    side: Side,
    ws: Ws,
) -> anyhow::Result<Ws> {
    let token = server.invite(session, Role::Party, Some(side), 600);
    admit_with(&token, mediator, ws).await
}

/// Joins with `token` (a party's invite) on a connection made by the caller, consents, and is
/// admitted into joint by `mediator`; returns the connection.
pub(crate) async fn admit_with(token: &str, mediator: &mut Ws, mut ws: Ws) -> anyhow::Result<Ws> {
    send(
        &mut ws,
        json!({"type": "hello", "version": 1, "token": token}),
    )
    .await?;
    let ServerMessage::Welcome { participant_id, .. } = recv(&mut ws).await? else {
        anyhow::bail!("no welcome")
    };
    send(
        &mut ws,
        json!({"type": "consent", "agreement_hash": "00".repeat(32)}),
    )
    .await?;
    // Admission needs the recorded consent: wait for it, or the admit could overtake it.
    while !matches!(recv(&mut ws).await?, ServerMessage::ConsentRecorded) {}
    send(
        mediator,
        json!({"type": "admit", "participant_id": participant_id.as_str()}),
    )
    .await?;
    while !matches!(recv(&mut ws).await?, ServerMessage::Channel { .. }) {}
    Ok(ws)
}

/// Sends MESSAGES from one client and waits until every receiver has them; messages/s relayed.
/// The sender keeps at most WINDOW messages ahead of the slowest receiver, as a real client
/// paced by its application would (a sender that floods faster than receivers read gets its
/// receivers dropped as slow consumers, by design).
async fn fan_out(
    mut sender: Ws,
    receivers: Vec<Ws>,
    frame: String,
    is_data: fn(&str) -> bool,
) -> anyhow::Result<f64> {
    const WINDOW: u64 = 512;
    let progress: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..receivers.len()).map(|_| Default::default()).collect());
    let moved = Arc::new(tokio::sync::Notify::new());
    let start = Instant::now();
    let tasks: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let progress = progress.clone();
            let moved = moved.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while n < MESSAGES {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if is_data(t.as_str()) => {
                            n += 1;
                            if n.is_multiple_of(64) || n == MESSAGES {
                                progress[i].store(n, std::sync::atomic::Ordering::Release);
                                moved.notify_one();
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                n
            })
        })
        .collect();
    let slowest = || {
        progress
            .iter()
            .map(|p| p.load(std::sync::atomic::Ordering::Acquire))
            .min()
            .unwrap_or(0)
    };
    for sent in 0..MESSAGES {
        while sent >= slowest() + WINDOW {
            moved.notified().await;
        }
        sender.send(Message::text(frame.clone())).await?;
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    let d = start.elapsed();
    anyhow::ensure!(
        total == MESSAGES * RECEIVERS as u64,
        "lost messages: {total}"
    );
    Ok(MESSAGES as f64 / d.as_secs_f64())
}

/// One relay run: messages relayed per second, and the CPU time the server spent meanwhile.
#[derive(Debug, Clone, Copy)]
struct Relayed {
    per_sec: f64,
    cpu: Duration,
}

/// One figure of a run (a row of the relay table).
type Figure = fn(&Relayed) -> f64;

impl Relayed {
    fn per_cpu_sec(&self) -> f64 {
        MESSAGES as f64 / self.cpu.as_secs_f64()
    }
}

/// The `confer` process relaying one party's messages to the rest of joint: the mediator and
/// two other parties, three receivers as in the baseline (a session's mediator is in joint
/// and gets every relay there, so it reads and counts like the others).
async fn confer_relay(server: &ConferProcess, run: usize) -> anyhow::Result<Relayed> {
    let invites = server.invites();
    let session = SessionId::new(format!("bench-{run}"))?;
    let mut m = connect(invites.addr).await?;
    send(&mut m, json!({"type": "hello", "version": 1, "token": invites.invite(&session, Role::Mediator, None)})).await?;
    recv(&mut m).await?;
    let mut parties = Vec::new();
    for i in 0..RECEIVERS as u8 {
        let ws = connect(invites.addr).await?;
        let token = invites.invite(&session, Role::Party, Some(Side::new(i + 1)?));
        parties.push(admit_with(&token, &mut m, ws).await?);
    }
    let sender = parties.remove(0);
    parties.push(m);
    let frame = json!({"type": "relay", "to": {"channel": "joint"}, "data": "x".repeat(PAYLOAD)})
        .to_string();
    let before = server.cpu()?;
    let per_sec = fan_out(sender, parties, frame, |t| t.contains("\"relayed\"")).await?;
    let cpu = server.cpu()?.since(&before);
    Ok(Relayed { per_sec, cpu })
}

/// The baseline's own runtime: one worker thread per core like the `confer` process's, named
/// [`BASELINE_THREADS`] so that their CPU time can be told from the clients'.
fn baseline_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(BASELINE_THREADS)
        .enable_all()
        .build()
}

fn baseline_cpu() -> anyhow::Result<ThreadCpu> {
    ThreadCpu::read(Path::new("/proc/self/task"), Some(BASELINE_THREADS))
}

// The baseline: every text frame from one connection goes to every other connection. It runs
// on `rt` (its listener, connections and tasks), apart from the clients.
async fn baseline_server(rt: &tokio::runtime::Handle) -> anyhow::Result<SocketAddr> {
    let peers: Peers = Arc::default();
    let app = axum::Router::new().route(
        "/ws",
        get(move |up: WebSocketUpgrade| {
            let peers = peers.clone();
            async move { up.on_upgrade(move |ws| baseline_conn(ws, peers)) }
        }),
    );
    let (bound, addr) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                let _ = bound.send(Err(e));
                return;
            }
        };
        let _ = bound.send(listener.local_addr());
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr.await??)
}

async fn baseline_conn(ws: WebSocket, peers: Peers) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    peers.lock().await.push((id, tx));
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            if sink.send(AxMessage::Text(t.into())).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(AxMessage::Text(t))) = stream.next().await {
        let text = t.to_string();
        for (pid, p) in peers.lock().await.iter() {
            if *pid != id {
                let _ = p.send(text.clone()).await;
            }
        }
    }
}

async fn baseline_relay(rt: &tokio::runtime::Handle) -> anyhow::Result<Relayed> {
    let addr = baseline_server(rt).await?;
    let sender = connect(addr).await?;
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        receivers.push(connect(addr).await?);
    }
    // Let the server register every connection before the first frame.
    let mut probe = connect(addr).await?;
    probe.send(Message::text("ready")).await?;
    for r in receivers.iter_mut() {
        while !matches!(r.next().await, Some(Ok(Message::Text(t))) if t.as_str() == "ready") {}
    }
    drop(probe);
    let frame = json!({"type": "relay", "to": {"channel": "joint"}, "data": "x".repeat(PAYLOAD)})
        .to_string();
    let before = baseline_cpu()?;
    let per_sec = fan_out(sender, receivers, frame, |_| true).await?;
    let cpu = baseline_cpu()?.since(&before);
    Ok(Relayed { per_sec, cpu })
}

/// One join through `via` (see [`admitted`]), in ms; then the participant leaves again.
pub(crate) async fn join_ms(
    server: &Server,
    via: SocketAddr,
    session: &SessionId,
    m: &mut Ws,
    i: u8,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut ws = admitted(server, via, session, m, Side::new(i % 26 + 1)?).await?;
    let d = t.elapsed();
    // Leave, and let the mediator read everything up to the departure, so every join
    // starts from the same small room and an empty queue.
    send(&mut ws, json!({"type": "leave"})).await?;
    while !matches!(recv(m).await?, ServerMessage::ParticipantLeft { .. }) {}
    Ok(d.as_secs_f64() * 1000.0)
}

/// Two connects and one frame from the first to the second, in ms. The bare server adds a
/// connection to its peers only after the upgrade's response has gone out, so the frame can
/// overtake the second connection's arrival and reach nobody: such a sample is taken again.
async fn connect_rtt_ms(addr: SocketAddr) -> anyhow::Result<f64> {
    for _ in 0..3 {
        let t = Instant::now();
        let mut a = connect(addr).await?;
        let mut b = connect(addr).await?;
        a.send(Message::text("x")).await?;
        let arrived = tokio::time::timeout(Duration::from_secs(1), async {
            while !matches!(b.next().await, Some(Ok(Message::Text(_)))) {}
        })
        .await;
        if arrived.is_ok() {
            return Ok(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    anyhow::bail!("the bare server relayed nothing in three tries")
}

pub(crate) async fn run() -> anyhow::Result<Vec<Table>> {
    let base_rt = baseline_runtime()?;
    let measured = async {
        let relay = relay_table(base_rt.handle()).await?;
        anyhow::Ok(vec![relay, join_table(base_rt.handle()).await?])
    }
    .await;
    // Not dropped in place: this is async context, where a runtime may not block to stop.
    base_rt.shutdown_background();
    let mut tables = measured?;
    tables.push(scale::run().await?);
    Ok(tables)
}

/// Relays through a `confer` process and through the baseline, runs interleaved.
async fn relay_table(base_rt: &tokio::runtime::Handle) -> anyhow::Result<Table> {
    let server = ConferProcess::start(&[
        ("CONFER_MEDIA_ENABLED", "false"),
        ("CONFER_RATE_LIMIT_MSGS_PER_SEC", "10000000"),
        ("CONFER_RATE_LIMIT_BURST", "10000000"),
        ("CONFER_RATE_LIMIT_BYTES_PER_SEC", "4294967295"),
        ("CONFER_RATE_LIMIT_BURST_BYTES", "4294967295"),
    ])?;
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for run in 0..RUNS {
        ours.push(confer_relay(&server, run).await?);
        base.push(baseline_relay(base_rt).await?);
    }
    drop(server);
    let med = |v: &[Relayed], f: Figure| {
        let mut it = v.iter();
        median(v.len(), || it.next().map_or(0.0, f))
    };
    let busy = |r: &Relayed| r.cpu.as_secs_f64() * r.per_sec / MESSAGES as f64;
    let mut relay = Table::new(
        format!(
            "Signalling relay: 1 sender, {RECEIVERS} receivers in joint (Confer: a mediator and 2 parties), {MESSAGES} messages of {PAYLOAD} B, loopback; Confer is a `confer serve --dev` process (SFU off, rate limits lifted), the baseline a bare axum WebSocket fan-out on a runtime of its own with as many threads; CPU is the server's threads' (medians of {RUNS})"
        ),
        &["", "Confer", "bare WebSocket", "ratio", "target"],
    );
    let rows: [(&str, Figure, usize, &str); 5] = [
        ("relays/s", |r| r.per_sec, 0, ""),
        ("deliveries/s", |r| r.per_sec * RECEIVERS as f64, 0, ""),
        ("server CPU, cores busy", busy, 2, ""),
        (
            "relays per server CPU-second",
            Relayed::per_cpu_sec,
            0,
            "≥ 100,000",
        ),
        (
            "deliveries per server CPU-second",
            |r| r.per_cpu_sec() * RECEIVERS as f64,
            0,
            "",
        ),
    ];
    for (label, f, decimals, target) in rows {
        let (o, b) = (med(&ours, f), med(&base, f));
        relay.row(vec![
            Cell::text(label),
            Cell::num(o, decimals),
            Cell::num(b, decimals),
            Cell::num(o / b, 2),
            Cell::text(target),
        ]);
    }
    relay.print();
    Ok(relay)
}

/// Joins on an embedded server against connects on the baseline.
async fn join_table(base_rt: &tokio::runtime::Handle) -> anyhow::Result<Table> {
    let (server, dir) = start_confer().await?;
    let session = SessionId::new("bench-join")?;
    let mut m = connect(server.addr()).await?;
    send(&mut m, json!({"type": "hello", "version": 1, "token": server.invite(&session, Role::Mediator, None, 600)})).await?;
    recv(&mut m).await?;
    let mut joins = Vec::new();
    for i in 0..200u8 {
        joins.push(join_ms(&server, server.addr(), &session, &mut m, i).await?);
    }
    joins.sort_by(f64::total_cmp);
    let addr = baseline_server(base_rt).await?;
    let mut bases = Vec::new();
    for _ in 0..200 {
        bases.push(connect_rtt_ms(addr).await?);
    }
    bases.sort_by(f64::total_cmp);
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    let mut join = Table::new(
        "Join: connect, hello, consent, admitted into joint, 200 joins; baseline: two connects and one relayed frame on the bare server",
        &["", "p50 ms", "p99 ms", "target"],
    );
    join.row(vec![
        Cell::text("Confer"),
        Cell::num(p(&joins, 0.5), 2),
        Cell::num(p(&joins, 0.99), 2),
        Cell::text("< 50"),
    ]);
    join.row(vec![
        Cell::text("bare connect + one relayed frame"),
        Cell::num(p(&bases, 0.5), 2),
        Cell::num(p(&bases, 0.99), 2),
        Cell::text(""),
    ]);
    join.row(vec![
        Cell::text("ratio"),
        Cell::num(p(&joins, 0.5) / p(&bases, 0.5), 2),
        Cell::num(p(&joins, 0.99) / p(&bases, 0.99), 2),
        Cell::text(""),
    ]);
    join.print();
    let _ = std::fs::remove_dir_all(dir);
    Ok(join)
}
