//! A noisy participant (issue "Server hardening", bounded cost): one session's relay latency
//! while a participant of another session sends at its full message and byte budget, against
//! the same run without it. Goal: p99 under 2x. The server runs with its default budgets.
//!
//! The quiet session: a mediator and two parties; one party relays a small message to joint
//! every 20 ms, the other reads them; latency is send to receipt. The noisy session: a mediator
//! and two parties; one party relays 2.5 KiB every 20 ms (50 messages/s, about 125 KiB/s: the
//! default `rate_limit_msgs_per_sec` and `rate_limit_bytes_per_sec`), the other reads them.

use std::time::{Duration, Instant};

use confer_proto::{Role, ServerMessage, SessionId, Side};
use confer_server::Server;
use confer_server::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::signalling::{Ws, admitted, connect, recv, send};

const QUIET_MESSAGES: usize = 400;
const EVERY: Duration = Duration::from_millis(20);
const NOISY_BYTES: usize = 2_500;

async fn session(server: &Server, name: &str) -> anyhow::Result<(Ws, Ws, Ws)> {
    let session = SessionId::new(name)?;
    let mut m = connect(server.addr()).await?;
    send(&mut m, json!({"type": "hello", "version": 1, "token": server.invite(&session, Role::Mediator, None, 600)})).await?;
    recv(&mut m).await?;
    let a = admitted(server, &session, &mut m, Side::new(1)?).await?;
    let b = admitted(server, &session, &mut m, Side::new(2)?).await?;
    Ok((m, a, b))
}

/// Drains a connection until it closes (a receiver that keeps up).
fn drain(mut ws: Ws) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// p50 and p99 of the quiet session's relay latency (ms), with or without the noisy one.
async fn one_run(noisy: bool) -> anyhow::Result<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!(
        "confer-bench-noisy-{}",
        confer_server::token::random_id()
    ));
    let mut c = Config::dev(dir.clone());
    c.listen = "127.0.0.1:0".parse()?;
    c.metrics_listen = "127.0.0.1:0".parse()?;
    c.media_listen = "127.0.0.1:0".parse()?;
    let server = Server::start(c).await?;
    let (qm, mut qa, mut qb) = session(&server, "quiet").await?;
    let mut noise = None;
    if noisy {
        let (nm, mut na, nb) = session(&server, "noisy").await?;
        let reader = drain(nb);
        let frame =
            json!({"type": "relay", "to": {"channel": "joint"}, "data": "x".repeat(NOISY_BYTES)})
                .to_string();
        let writer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                if na.send(Message::text(frame.clone())).await.is_err() {
                    break;
                }
            }
        });
        noise = Some((nm, reader, writer));
    }
    let mut sent = Vec::with_capacity(QUIET_MESSAGES);
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
    let mut tick = tokio::time::interval(EVERY);
    for _ in 0..QUIET_MESSAGES {
        tick.tick().await;
        sent.push(Instant::now());
        send(
            &mut qa,
            json!({"type": "relay", "to": {"channel": "joint"}, "data": "hello"}),
        )
        .await?;
    }
    let got = tokio::time::timeout(Duration::from_secs(30), receiver).await??;
    anyhow::ensure!(
        got.len() == QUIET_MESSAGES,
        "the quiet session lost messages: {}",
        got.len()
    );
    let mut lat: Vec<f64> = sent
        .iter()
        .zip(&got)
        .map(|(s, r)| r.duration_since(*s).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    if let Some((nm, reader, writer)) = noise {
        writer.abort();
        reader.abort();
        drop(nm);
    }
    drop(qm);
    let _ = std::fs::remove_dir_all(dir);
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    Ok((p(0.5), p(0.99)))
}

pub(crate) async fn run() -> anyhow::Result<()> {
    println!();
    println!(
        "Noisy participant: another session's relay latency (1 message / 20 ms, {QUIET_MESSAGES} messages) while a participant sends {NOISY_BYTES} B every 20 ms (its full default budget), against the same run without it"
    );
    let mut quiet = Vec::new();
    let mut loud = Vec::new();
    for _ in 0..3 {
        quiet.push(one_run(false).await?);
        loud.push(one_run(true).await?);
    }
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let (q50, q99) = (med(&quiet, |x| x.0), med(&quiet, |x| x.1));
    let (l50, l99) = (med(&loud, |x| x.0), med(&loud, |x| x.1));
    println!(
        "{:>22} {:>10} {:>10}   (medians of 3 runs)",
        "", "p50 ms", "p99 ms"
    );
    println!(
        "{:>22} {:>10.3} {:>10.3}",
        "without the noisy one", q50, q99
    );
    println!("{:>22} {:>10.3} {:>10.3}", "with the noisy one", l50, l99);
    println!(
        "{:>22} {:>10.2} {:>10.2}   (goal: p99 < 2x)",
        "ratio",
        l50 / q50,
        l99 / q99
    );
    Ok(())
}
