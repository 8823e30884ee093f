//! The SFU at saturation (../shared/design/BENCHMARKS.md, "Saturation"): Confer against the
//! raw forwarders R0, R1 and R2 on the same trace of real SRTP datagrams and the same sockets.
//!
//! For each fan-out (rooms of 2, 4 and 6, everyone publishing to everyone else) and each run,
//! [`trace::room`] connects str0m client peers to a fresh `Sfu` and records what they send.
//! Then each forwarder in turn gets the socket the peers were told about, in a thread pinned
//! to the last core, and the generator, in a thread pinned to the first, replays the trace
//! from each peer's own socket with `sendmmsg`, keeping up to [`IN_FLIGHT`] datagrams queued
//! in the forwarder's socket: the forwarder never waits for input unless the generator cannot
//! keep up, and nothing is lost at its door (its buffer holds several times that). The
//! generator also drains the peers' sockets and counts the RTP copies that arrive.
//!
//! Figures: copies forwarded per CPU-second of the forwarder's thread (its own CPU time,
//! `/proc/thread-self/schedstat`, not wall time), megabits sent per CPU-second, loss (RTP
//! copies that did not reach a peer, of trace × fan-out), and datagrams per receive call
//! (near [`io::BATCH`] when the forwarder is saturated). Each figure is the median over
//! [`RUNS`] runs; each ratio the median of the per-run ratios (side by side in one run).
//! Bounded: [`COPIES`] copies per forwarder and run, and [`RUN_LIMIT`] per forwarder.
//!
//! Janus VideoRoom on the same load client is the [`janus`] section (it needs root and
//! network namespaces, so it runs only when named).

pub(crate) mod callgrind;
mod forwarders;
mod io;
pub(crate) mod janus;
mod janus_server;
mod latency;
pub(crate) mod memory;
mod trace;

use std::net::{SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::report::{Cell, Table};
use forwarders::{Counts, Routes, Srtp};

/// Copies each forwarder sends per run, whatever the fan-out (the trace is this over fan-out).
const COPIES: usize = 120_000;
/// Datagrams the generator keeps queued at the forwarder.
const IN_FLIGHT: u64 = 256;
/// Runs per fan-out.
const RUNS: usize = 5;
/// The longest one forwarder may take on one trace.
const RUN_LIMIT: Duration = Duration::from_secs(20);
const FANOUTS: [usize; 3] = [1, 3, 5];
const NAMES: [&str; 4] = ["Confer", "R0", "R1", "R2"];

/// One forwarder on one trace.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    counts: Counts,
    /// RTP copies the peers received.
    delivered: u64,
    /// Trace datagrams sent by the generator.
    sent: u64,
    fanout: usize,
    /// The generator's replay, first send to last datagram read.
    wall: Duration,
}

impl Measure {
    fn per_cpu_sec(&self) -> f64 {
        self.counts.forwarded as f64 / self.counts.cpu.as_secs_f64().max(1e-9)
    }
    fn mbit_per_cpu_sec(&self) -> f64 {
        self.counts.bytes_out as f64 * 8.0 / 1e6 / self.counts.cpu.as_secs_f64().max(1e-9)
    }
    fn loss_pct(&self) -> f64 {
        let expected = (self.sent * self.fanout as u64).max(1) as f64;
        100.0 * (1.0 - self.delivered as f64 / expected)
    }
    /// The forwarder's time running or runnable (waiting for its core, which it shares with
    /// whatever else the machine runs) over the replay's wall time: near 100 % when it never
    /// waited for input, so it was saturated.
    fn runnable_pct(&self) -> f64 {
        let t = self.counts.cpu + self.counts.waited;
        100.0 * t.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
    fn per_batch(&self) -> f64 {
        self.counts.received as f64 / self.counts.batches.max(1) as f64
    }
    /// `x` per forwarded copy.
    fn per_copy(&self, x: u64) -> f64 {
        x as f64 / self.counts.forwarded.max(1) as f64
    }
    fn per_send(&self) -> f64 {
        self.counts.sent as f64 / self.counts.send_calls.max(1) as f64
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What the generator replays, and from where.
pub(super) struct Load<'a> {
    /// Per publisher: its socket, its datagrams in order, and where they go.
    pub(super) senders: Vec<(&'a UdpSocket, &'a [Vec<u8>], SocketAddrV4)>,
    /// The sockets whose RTP copies are counted as delivered.
    pub(super) receivers: Vec<&'a UdpSocket>,
}

/// How the generator knows how far the forwarder has got.
#[derive(Clone, Copy)]
pub(super) enum Progress<'a> {
    /// The forwarder counts the datagrams it read (our forwarders, in this process).
    Read(&'a AtomicU64),
    /// Another process: a datagram counts as read once its copies reach the peers
    /// (`fanout` RTP copies each), or once nothing has arrived for [`STALL`] (then it is lost).
    Delivered { fanout: u64 },
}

/// With [`Progress::Delivered`], how long without a copy arriving before what is queued is
/// written off as lost (so a forwarder that drops cannot stop the generator).
const STALL: Duration = Duration::from_millis(100);

/// What the generator saw of one replay.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Replayed {
    /// Trace datagrams sent.
    pub(super) sent: u64,
    /// RTP copies the peers received.
    pub(super) delivered: u64,
    /// Their bytes.
    pub(super) delivered_bytes: u64,
    /// From the first send until the forwarder had read the last datagram.
    pub(super) wall: Duration,
}

/// Replays `load` (per publisher, from its socket), at most `in_flight` ahead of what the
/// forwarder has read (`progress`); drains the receivers' sockets; sets `stop` when done.
pub(super) fn blast(
    load: &Load<'_>,
    in_flight: u64,
    progress: Progress<'_>,
    stop: &AtomicBool,
) -> Replayed {
    let start = Instant::now();
    let limit = start + RUN_LIMIT;
    let mut tx = io::Sender::new();
    let mut rx = io::Receiver::new();
    let mut pos = vec![0usize; load.senders.len()];
    let total: usize = load.senders.iter().map(|(_, t, _)| t.len()).sum();
    let mut r = Replayed::default();
    // Datagrams given up on (Progress::Delivered only), and when a copy last arrived.
    let mut written_off = 0u64;
    let mut last_arrival = Instant::now();
    let drain = |rx: &mut io::Receiver, r: &mut Replayed, last_arrival: &mut Instant| {
        for c in &load.receivers {
            while rx.recv(c, false) > 0 {
                for i in 0..rx.got.len() {
                    let d = rx.datagram(i);
                    if trace::is_rtp(d) {
                        r.delivered += 1;
                        r.delivered_bytes += d.len() as u64;
                        *last_arrival = Instant::now();
                    }
                }
            }
        }
    };
    let read = |r: &Replayed, written_off: u64| match progress {
        Progress::Read(got) => got.load(Ordering::Relaxed).min(r.sent),
        Progress::Delivered { fanout } => (r.delivered / fanout.max(1) + written_off).min(r.sent),
    };
    while (r.sent as usize) < total && Instant::now() < limit {
        for (i, (c, trace, to)) in load.senders.iter().enumerate() {
            let room = in_flight.saturating_sub(r.sent - read(&r, written_off));
            let k = (room as usize).min(io::BATCH).min(trace.len() - pos[i]);
            if k == 0 {
                continue;
            }
            let out: Vec<(&[u8], SocketAddrV4)> = trace[pos[i]..pos[i] + k]
                .iter()
                .map(|d| (d.as_slice(), *to))
                .collect();
            let (n, _) = tx.send(c, &out);
            r.sent += n;
            pos[i] += k;
        }
        drain(&mut rx, &mut r, &mut last_arrival);
        if matches!(progress, Progress::Delivered { .. })
            && last_arrival.elapsed() > STALL
            && read(&r, written_off) < r.sent
        {
            written_off = r.sent - read(&r, 0);
            last_arrival = Instant::now();
        }
    }
    // What is still queued: until the forwarder has read it all (or stalls), then the copies
    // still on their way.
    let mut last = (read(&r, written_off), Instant::now());
    while read(&r, written_off) < r.sent && Instant::now() < limit {
        drain(&mut rx, &mut r, &mut last_arrival);
        let g = read(&r, written_off);
        if g != last.0 {
            last = (g, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(500) {
            break;
        }
    }
    r.wall = start.elapsed();
    let tail = Instant::now();
    while tail.elapsed() < Duration::from_millis(50) {
        drain(&mut rx, &mut r, &mut last_arrival);
    }
    stop.store(true, Ordering::Relaxed);
    r
}

/// The sockets of a room.
struct Net<'a> {
    clients: &'a [UdpSocket],
    forwarder: &'a UdpSocket,
    forwarder_addr: SocketAddrV4,
}

/// Runs `forward` in a thread pinned to the last core while the generator (pinned to the
/// first) replays `trace`. The forwarder's thread is named `fwd-<name>` (for `perf report
/// --comm`), the generator's `generator`.
fn measure(
    name: &str,
    net: &Net<'_>,
    trace: &[Vec<Vec<u8>>],
    fanout: usize,
    forward: impl FnOnce(&UdpSocket, &AtomicBool, &AtomicU64) -> Counts + Send,
) -> Measure {
    // Leftovers of the previous forwarder, on every socket.
    let mut rx = io::Receiver::new();
    for s in net.clients.iter().chain([net.forwarder]) {
        while rx.recv(s, false) > 0 {}
    }
    let stop = AtomicBool::new(false);
    let got = AtomicU64::new(0);
    let n = cores();
    std::thread::scope(|s| {
        let spawn = |name: String| std::thread::Builder::new().name(name);
        // Spawning fails only when the system is out of threads: no benchmark then.
        let fwd = spawn(format!("fwd-{name}"))
            .spawn_scoped(s, || {
                io::pin_to(n - 1);
                forward(net.forwarder, &stop, &got)
            })
            .expect("a forwarder thread");
        let generator = spawn("generator".to_owned())
            .spawn_scoped(s, || {
                if n > 1 {
                    io::pin_to(0);
                }
                // Let the forwarder reach its first receive.
                std::thread::sleep(Duration::from_millis(20));
                let load = Load {
                    senders: net
                        .clients
                        .iter()
                        .zip(trace)
                        .map(|(c, t)| (c, t.as_slice(), net.forwarder_addr))
                        .collect(),
                    receivers: net.clients.iter().collect(),
                };
                blast(&load, IN_FLIGHT, Progress::Read(&got), &stop)
            })
            .expect("a generator thread");
        // A panicking thread is a broken benchmark: say so loudly.
        let replayed = generator.join().expect("the generator panicked");
        let counts = fwd.join().expect("the forwarder panicked");
        Measure {
            counts,
            delivered: replayed.delivered,
            sent: replayed.sent,
            fanout,
            wall: replayed.wall,
        }
    })
}

/// One run at one fan-out: a fresh room and trace, then Confer, R0, R1, R2 in turn. Also
/// returns the heap Confer's `Sfu` owned after forwarding.
fn one_run(fanout: usize) -> anyhow::Result<([Measure; 4], f64)> {
    let participants = fanout + 1;
    let per_publisher = COPIES / (fanout * participants);
    let trace::Room {
        mut sfu,
        forwarder,
        forwarder_addr,
        clients,
        addrs,
        trace,
    } = trace::room(participants, per_publisher)?;
    let routes = Routes::new(&addrs);
    let room = Net {
        clients: &clients,
        forwarder: &forwarder,
        forwarder_addr,
    };
    let confer = measure("Confer", &room, &trace, fanout, |s, stop, got| {
        forwarders::confer(s, forwarder_addr, &mut sfu, stop, got)
    });
    let r0 = measure("R0", &room, &trace, fanout, |s, stop, got| {
        forwarders::r0(s, &routes, stop, got)
    });
    let r1 = measure("R1", &room, &trace, fanout, |s, stop, got| {
        forwarders::r1(s, &routes, stop, got)
    });
    let srtp = Srtp::new(participants);
    let sealed = srtp.reseal(&trace);
    drop(trace);
    let r2 = measure("R2", &room, &sealed, fanout, |s, stop, got| {
        forwarders::r2(s, &routes, &srtp, stop, got)
    });
    Ok(([confer, r0, r1, r2], memory::owned(sfu)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark; prints and returns its tables: saturation figures and ratios, system
/// calls and allocations per copy, half-load latency, memory per participant.
pub(crate) fn run() -> anyhow::Result<Vec<Table>> {
    let started = Instant::now();
    let n = cores();
    println!();
    println!(
        "SFU at saturation: forwarder pinned to core {} of {n}, generator to core 0; {COPIES} copies per forwarder and run, {IN_FLIGHT} datagrams queued ahead; medians of {RUNS} runs",
        n - 1
    );
    let mut figures = Table::new(
        format!(
            "SFU at saturation: a trace of real SRTP datagrams (str0m peers; per publisher 2 video packets of 1,000 B to 1 audio packet of 160 B), replayed with sendmmsg; forwarder pinned to one core; medians of {RUNS} runs"
        ),
        &[
            "fan-out",
            "forwarder",
            "pkts/CPU-s",
            "Mbit/s per CPU-s",
            "loss %",
            "datagrams per receive",
            "CPU s",
        ],
    );
    let mut ratios = Table::new(
        format!("SFU at saturation: ratios (medians of the per-run ratios, {RUNS} runs)"),
        &[
            "fan-out",
            "Confer/R1",
            "Confer/R2",
            "R2/R1",
            "Confer/R0",
            "target Confer/R1",
            "met",
        ],
    );
    let mut calls = Table::new(
        format!(
            "SFU at saturation: system calls, batches and allocations of the forwarder's thread per forwarded copy (over its whole loop, shell included; medians of {RUNS} runs)"
        ),
        &[
            "fan-out",
            "forwarder",
            "receive calls per copy",
            "send calls per copy",
            "datagrams per receive",
            "datagrams per send",
            "allocations per copy",
            "allocated bytes per copy",
        ],
    );
    // Confer's copies per CPU-second at each fan-out (for the half-load rate), and the heap
    // of its `Sfu` after forwarding at the largest fan-out (for memory per participant).
    let mut saturated = Vec::new();
    let mut active = Vec::new();
    for fanout in FANOUTS {
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let (r, heap) = one_run(fanout)?;
            runs.push(r);
            if fanout == forwarders::MAX_FANOUT {
                active.push(heap);
            }
        }
        saturated.push((
            fanout,
            median(runs.iter().map(|r| r[0].per_cpu_sec()).collect()),
        ));
        for (k, name) in NAMES.iter().enumerate() {
            let col = |f: &dyn Fn(&Measure) -> f64| median(runs.iter().map(|r| f(&r[k])).collect());
            calls.row(vec![
                Cell::num(fanout as f64, 0),
                Cell::text(*name),
                Cell::num(col(&|m| m.per_copy(m.counts.recv_calls)), 4),
                Cell::num(col(&|m| m.per_copy(m.counts.send_calls)), 4),
                Cell::num(col(&Measure::per_batch), 1),
                Cell::num(col(&Measure::per_send), 1),
                Cell::num(col(&|m| m.per_copy(m.counts.allocs.calls)), 2),
                Cell::num(col(&|m| m.per_copy(m.counts.allocs.bytes)), 0),
            ]);
        }
        for (k, name) in NAMES.iter().enumerate() {
            let col = |f: fn(&Measure) -> f64| median(runs.iter().map(|r| f(&r[k])).collect());
            figures.row(vec![
                Cell::num(fanout as f64, 0),
                Cell::text(*name),
                Cell::num(col(Measure::per_cpu_sec), 0),
                Cell::num(col(Measure::mbit_per_cpu_sec), 0),
                Cell::num(col(Measure::loss_pct), 2),
                Cell::num(col(Measure::per_batch), 1),
                Cell::num(col(|m| m.counts.cpu.as_secs_f64()), 2),
            ]);
        }
        let ratio = |a: usize, b: usize| {
            median(
                runs.iter()
                    .map(|r| r[a].per_cpu_sec() / r[b].per_cpu_sec().max(1e-9))
                    .collect(),
            )
        };
        let c_r1 = ratio(0, 2);
        let (target, met) = if fanout >= 3 {
            let met = if c_r1 >= 0.7 {
                "yes"
            } else if c_r1 >= 0.4 {
                "no (first step ≥ 0.4 met)"
            } else {
                "no"
            };
            ("≥ 0.7", met)
        } else {
            ("-", "-")
        };
        ratios.row(vec![
            Cell::num(fanout as f64, 0),
            Cell::num(c_r1, 3),
            Cell::num(ratio(0, 3), 3),
            Cell::num(ratio(3, 2), 2),
            Cell::num(ratio(0, 1), 2),
            Cell::text(target),
            Cell::text(met),
        ]);
    }
    figures.print();
    ratios.print();
    calls.print();
    println!();
    println!(
        "(saturation runs: {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let half = latency::run(&saturated)?;
    println!();
    println!("(half load: {:.0} s)", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let memory = memory::run(median(active), forwarders::MAX_FANOUT + 1)?;
    println!();
    println!("(memory: {:.0} s)", t.elapsed().as_secs_f64());
    Ok(vec![figures, ratios, calls, half, memory])
}
