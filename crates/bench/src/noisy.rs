//! A noisy participant (issue "Server hardening", bounded cost): one session's relay latency and
//! forwarded media while a participant of another session sends at its full message and byte
//! budget and re-offers media as fast as `media_offer_interval_ms` allows, against the same run
//! without it. Goal: under 2x. The server runs with its default budgets and interval.
//!
//! The quiet session: a mediator and two parties; one party relays a small message to joint
//! every 20 ms, the other reads them; latency is send to receipt. Meanwhile the first party
//! publishes audio and video through the server's SFU and the second receives it (str0m peers
//! on loopback UDP, negotiated through signalling: see `peer.rs`): frames per second, loss, and
//! latency from written by the publisher to received by the subscriber.
//!
//! The noisy session: a mediator and two parties; one party relays 2.5 KiB every 20 ms (50
//! messages/s, about 125 KiB/s: the default `rate_limit_msgs_per_sec` and
//! `rate_limit_bytes_per_sec`), the other reads them. The same party sends a new offer (a new
//! str0m peer with a microphone, a camera and 10 receive slots of each kind) as soon as the
//! interval allows, and completes ICE and DTLS with each answer on one UDP socket, so the SFU
//! parses, answers, replaces and connects a peer each time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use confer_proto::{ErrorCode, ParticipantId, Role, ServerMessage, SessionId, Side};
use confer_server::Server;
use confer_server::config::Config;
use confer_sfu::{Sfu, SfuConfig};
use confer_testkit::media::ClientOffer;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use str0m::{Event, Rtc};
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{self, Probe, UdpPeer};
use crate::report::{Cell, Table};
use crate::signalling::{Ws, admit, connect_nodelay, recv, send};

const QUIET_MESSAGES: usize = 400;
const EVERY: Duration = Duration::from_millis(20);
const NOISY_BYTES: usize = 2_500;
/// Receive slots of each kind in the quiet session's offers.
const QUIET_SLOTS: usize = 5;
/// Receive slots of each kind in the noisy participant's offers (the web client offers 5
/// audio and 10 video slots).
const NOISY_SLOTS: usize = 10;
/// After the interval, before the next offer: the server times the interval from when its
/// session task takes an offer, which may be a little later for one offer than for the next.
const OFFER_MARGIN: Duration = Duration::from_millis(20);
const WARM_UP: Duration = Duration::from_secs(1);
/// After the window, for frames still on their way.
const SETTLE: Duration = Duration::from_millis(300);
const RUNS: usize = 3;

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    relay_p50_ms: f64,
    relay_p99_ms: f64,
    frames_per_sec: f64,
    loss_pct: f64,
    media_p50_ms: f64,
    media_p99_ms: f64,
    media_max_ms: f64,
    noise: Noise,
}

/// What the noisy participant did in a run.
#[derive(Debug, Clone, Copy, Default)]
struct Noise {
    relays: u64,
    answers: u64,
    /// Offers refused as too soon (`rate_limited`).
    refused: u64,
    /// Peers that completed ICE and DTLS with the SFU.
    connected: u64,
    /// Other errors the server sent it (a relay over budget would show here).
    errors: u64,
}

// Every connection with Nagle's algorithm off, as browsers have it: with it on, the noisy
// participant's offers waited up to 40 ms for a delayed ACK and reached the server irregularly.
async fn session(server: &Server, name: &str) -> anyhow::Result<(Ws, Ws, Ws)> {
    let session = SessionId::new(name)?;
    let mut m = connect_nodelay(server.addr()).await?;
    send(&mut m, json!({"type": "hello", "version": 1, "token": server.invite(&session, Role::Mediator, None, 600)})).await?;
    recv(&mut m).await?;
    let a = connect_nodelay(server.addr()).await?;
    let a = admit(server, &session, &mut m, Side::new(1)?, a).await?;
    let b = connect_nodelay(server.addr()).await?;
    let b = admit(server, &session, &mut m, Side::new(2)?, b).await?;
    Ok((m, a, b))
}

/// Drains a connection until it closes (a receiver that keeps up).
fn drain(mut ws: Ws) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// The noisy participant: relays at its full budget and re-offers as soon as allowed, until
/// `stop`.
async fn noise(ws: Ws, interval: Duration, stop: Arc<AtomicBool>) -> anyhow::Result<Noise> {
    let (mut sink, mut stream) = ws.split();
    let (socket, local) = peer::bind()?;
    let (peers, new_peers) = std::sync::mpsc::channel::<Rtc>();
    let driver = std::thread::spawn(move || drive(socket, &new_peers));
    let frame =
        json!({"type": "relay", "to": {"channel": "joint"}, "data": "x".repeat(NOISY_BYTES)})
            .to_string();
    let mut n = Noise::default();
    let mut tick = tokio::time::interval(EVERY);
    let mut next_offer = tokio::time::Instant::now();
    let mut pending: Option<ClientOffer> = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                sink.send(Message::text(frame.clone())).await?;
                n.relays += 1;
            }
            () = tokio::time::sleep_until(next_offer), if pending.is_none() => {
                // Off the runtime's workers: a new peer generates its DTLS certificate.
                let offer = tokio::task::spawn_blocking(move || {
                    ClientOffer::new(local, NOISY_SLOTS, Instant::now())
                })
                .await?;
                next_offer = tokio::time::Instant::now() + interval + OFFER_MARGIN;
                sink.send(Message::text(peer::offer_frame(&offer))).await?;
                pending = Some(offer);
            }
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => anyhow::bail!("the noisy participant's connection closed"),
                };
                let Ok(msg) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                    continue;
                };
                match peer::offer_reply(&msg) {
                    Some(Ok(sdp)) => {
                        let offer = pending.take().context("an answer to no offer")?;
                        peers.send(peer::answered(offer, sdp)?)?;
                        n.answers += 1;
                    }
                    Some(Err(ErrorCode::RateLimited)) => {
                        pending = None;
                        n.refused += 1;
                        next_offer = tokio::time::Instant::now() + OFFER_MARGIN;
                    }
                    Some(Err(code)) => anyhow::bail!("media_offer refused: {code:?}"),
                    None if matches!(msg, ServerMessage::Error { .. }) => n.errors += 1,
                    None => {}
                }
            }
        }
    }
    drop(peers);
    n.connected = tokio::task::spawn_blocking(move || driver.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the noisy peer's thread panicked"))?;
    Ok(n)
}

/// Drives the noisy participant's latest peer on its socket until no more come; how many
/// connected.
fn drive(socket: std::net::UdpSocket, new_peers: &std::sync::mpsc::Receiver<Rtc>) -> u64 {
    use std::sync::mpsc::TryRecvError;
    let mut socket = Some(socket);
    let mut current: Option<UdpPeer> = None;
    let mut connected = 0;
    loop {
        let next = match &current {
            None => match new_peers.recv() {
                Ok(rtc) => Some(rtc),
                Err(_) => break,
            },
            Some(_) => match new_peers.try_recv() {
                Ok(rtc) => Some(rtc),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            },
        };
        if let Some(rtc) = next {
            match (&mut current, socket.take()) {
                (Some(p), _) => p.replace(rtc),
                (None, Some(s)) => match UdpPeer::new(rtc, s) {
                    Ok(p) => current = Some(p),
                    Err(_) => break,
                },
                (None, None) => break,
            }
        }
        if let Some(p) = &mut current {
            p.step(Instant::now() + EVERY, |e| {
                connected += u64::from(matches!(e, Event::Connected));
            });
        }
    }
    connected
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q) as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// The quiet session's relay latency and forwarded media, with or without the noisy one.
async fn one_run(noisy: bool) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!(
        "confer-bench-noisy-{}",
        confer_server::token::random_id()
    ));
    let mut c = Config::dev(dir.clone());
    c.listen = "127.0.0.1:0".parse()?;
    c.metrics_listen = "127.0.0.1:0".parse()?;
    c.media_listen = "127.0.0.1:0".parse()?;
    let server = Server::start(c).await?;
    let interval = Duration::from_millis(server.config().media_offer_interval_ms);
    let (qm, mut qa, mut qb) = session(&server, "quiet").await?;

    let probe = Probe::new();
    let (publisher, audio, video) = UdpPeer::negotiate(&mut qa, QUIET_SLOTS).await?;
    let (subscriber, _, _) = UdpPeer::negotiate(&mut qb, QUIET_SLOTS).await?;
    let publisher = probe.publish(publisher, audio, video);
    let subscriber = probe.subscribe(subscriber);
    tokio::time::timeout(Duration::from_secs(10), probe.flowing.notified())
        .await
        .context("no media reached the quiet session's subscriber")?;

    let stop_noise = Arc::new(AtomicBool::new(false));
    let mut noise_task = None;
    if noisy {
        let (nm, na, nb) = session(&server, "noisy").await?;
        let reader = drain(nb);
        let task = tokio::spawn(noise(na, interval, stop_noise.clone()));
        noise_task = Some((nm, reader, task));
    }
    tokio::time::sleep(WARM_UP).await;

    let receiver = tokio::spawn(async move {
        let mut at = Vec::with_capacity(QUIET_MESSAGES);
        while at.len() < QUIET_MESSAGES {
            match recv(&mut qb).await {
                Ok(ServerMessage::Relayed { .. }) => at.push(Instant::now()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        at
    });
    let mut sent = Vec::with_capacity(QUIET_MESSAGES);
    let mut tick = tokio::time::interval(EVERY);
    probe.measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    for _ in 0..QUIET_MESSAGES {
        tick.tick().await;
        sent.push(Instant::now());
        send(
            &mut qa,
            json!({"type": "relay", "to": {"channel": "joint"}, "data": "hello"}),
        )
        .await?;
    }
    probe.measuring.store(false, Ordering::Relaxed);
    let window = window.elapsed();
    let got = tokio::time::timeout(Duration::from_secs(30), receiver).await??;
    anyhow::ensure!(
        got.len() == QUIET_MESSAGES,
        "the quiet session lost messages: {}",
        got.len()
    );
    tokio::time::sleep(SETTLE).await;
    probe.stop.store(true, Ordering::Relaxed);
    let (written, received) = tokio::task::spawn_blocking(move || {
        let written = publisher.join();
        let received = subscriber.join();
        (written, received)
    })
    .await?;
    let written = written.map_err(|_| anyhow::anyhow!("the publisher panicked"))?;
    let received = received.map_err(|_| anyhow::anyhow!("the subscriber panicked"))?;

    let mut run = Run::default();
    if let Some((nm, reader, task)) = noise_task {
        stop_noise.store(true, Ordering::Relaxed);
        run.noise = task.await??;
        reader.abort();
        drop(nm);
    }
    drop(qm);
    let _ = std::fs::remove_dir_all(dir);

    let mut relay: Vec<f64> = sent
        .iter()
        .zip(&got)
        .map(|(s, r)| r.duration_since(*s).as_secs_f64() * 1000.0)
        .collect();
    relay.sort_by(f64::total_cmp);
    let mut media: Vec<f64> = received
        .latency_us
        .iter()
        .map(|&us| us as f64 / 1000.0)
        .collect();
    media.sort_by(f64::total_cmp);
    run.relay_p50_ms = pct(&relay, 0.5);
    run.relay_p99_ms = pct(&relay, 0.99);
    run.frames_per_sec = media.len() as f64 / window.as_secs_f64();
    run.loss_pct = 100.0 * (1.0 - media.len() as f64 / written.max(1) as f64);
    run.media_p50_ms = pct(&media, 0.5);
    run.media_p99_ms = pct(&media, 0.99);
    run.media_max_ms = pct(&media, 1.0);
    Ok(run)
}

/// A column of the table.
struct Column {
    heading: &'static str,
    figure: fn(&Run) -> f64,
    decimals: usize,
}

const COLUMNS: [Column; 7] = [
    Column {
        heading: "relay p50 ms",
        figure: |r| r.relay_p50_ms,
        decimals: 3,
    },
    Column {
        heading: "relay p99 ms",
        figure: |r| r.relay_p99_ms,
        decimals: 3,
    },
    Column {
        heading: "media frames/s",
        figure: |r| r.frames_per_sec,
        decimals: 1,
    },
    Column {
        heading: "media loss %",
        figure: |r| r.loss_pct,
        decimals: 2,
    },
    Column {
        heading: "media p50 ms",
        figure: |r| r.media_p50_ms,
        decimals: 3,
    },
    Column {
        heading: "media p99 ms",
        figure: |r| r.media_p99_ms,
        decimals: 3,
    },
    // A stall of the media task during one offer reaches fewer than 1 % of the frames: the
    // p99 cannot show it, the maximum can.
    Column {
        heading: "media max ms",
        figure: |r| r.media_max_ms,
        decimals: 3,
    },
];

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut x: Vec<f64> = runs.iter().map(f).collect();
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

fn ratio(with: f64, without: f64) -> Cell {
    if without > 0.0 {
        Cell::num(with / without, 2)
    } else if with > 0.0 {
        Cell::text("inf")
    } else {
        Cell::text("- (both 0)")
    }
}

/// The SFU's own time to take one of the noisy participant's offers (parse, answer, replace
/// the peer, reassign slots), in-process and without the DTLS handshake that follows: the media
/// task forwards nothing meanwhile. Median of 50, in ms.
fn offer_cost_ms() -> anyhow::Result<f64> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut sfu = Sfu::new(SfuConfig::new(addr), Instant::now());
    let pid = ParticipantId::new(format!("{:032x}", 1))?;
    let mut offers = (0..50).map(|_| {
        ClientOffer::new(addr, NOISY_SLOTS, Instant::now())
            .offer
            .to_sdp_string()
    });
    let mut refused = 0;
    let ms = crate::median(50, || {
        let sdp = offers.next().unwrap_or_default();
        let t = Instant::now();
        refused += u32::from(sfu.accept_offer(pid.clone(), &sdp, t).is_err());
        t.elapsed().as_secs_f64() * 1000.0
    });
    anyhow::ensure!(refused == 0, "the SFU refused {refused} offers");
    Ok(ms)
}

pub(crate) async fn run() -> anyhow::Result<Vec<Table>> {
    let mut quiet = Vec::new();
    let mut loud = Vec::new();
    for _ in 0..RUNS {
        quiet.push(one_run(false).await?);
        loud.push(one_run(true).await?);
    }
    let mut head = vec![""];
    head.extend(COLUMNS.iter().map(|c| c.heading));
    let mut table = Table::new(
        format!(
            "Noisy participant: another session's relay latency (1 message / 20 ms, {QUIET_MESSAGES} messages) and forwarded media (audio 50/s x 160 B + video 100/s x 1,000 B, one publisher, one subscriber) while a participant sends {NOISY_BYTES} B every 20 ms (its full default budget) and re-offers media as soon as media_offer_interval_ms allows, against the same run without it (medians of {RUNS} runs)"
        ),
        &head,
    );
    let row =
        |runs: &[Run]| -> Vec<f64> { COLUMNS.iter().map(|c| median(runs, c.figure)).collect() };
    let (q, l) = (row(&quiet), row(&loud));
    let cells = |label: &str, v: &[f64]| -> Vec<Cell> {
        let mut cells = vec![Cell::text(label)];
        cells.extend(
            v.iter()
                .zip(&COLUMNS)
                .map(|(x, c)| Cell::num(*x, c.decimals)),
        );
        cells
    };
    table.row(cells("without the noisy participant", &q));
    table.row(cells("with the noisy participant", &l));
    let mut ratios = vec![Cell::text("ratio (goal < 2)")];
    ratios.extend(l.iter().zip(&q).map(|(l, q)| ratio(*l, *q)));
    table.row(ratios);
    table.print();
    let noise = |f: fn(&Noise) -> u64| median(&loud, |r| f(&r.noise) as f64);
    println!(
        "The noisy participant per run (medians): {:.0} relays, {:.0} offers answered, {:.0} refused as too soon, {:.0} new peers connected (ICE + DTLS), {:.0} other errors",
        noise(|n| n.relays),
        noise(|n| n.answers),
        noise(|n| n.refused),
        noise(|n| n.connected),
        noise(|n| n.errors),
    );
    println!(
        "The SFU's time to take one such offer (2 send + {} receive m-lines; in-process, without the DTLS handshake; median of 50): {:.2} ms",
        2 * NOISY_SLOTS,
        offer_cost_ms()?
    );
    Ok(vec![table])
}
