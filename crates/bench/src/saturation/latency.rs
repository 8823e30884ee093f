//! Added latency at half load (../shared/design/BENCHMARKS.md, "Half load"): the trace replayed
//! at half of Confer's saturated rate (measured in the same run), Confer and R1 timed inside
//! their loops.
//!
//! The generator paces the trace: datagram `i` of publisher `p` (of `P`) leaves at
//! `(i × P + p) / rate` seconds from the start, from that publisher's socket, `rate` being half
//! of Confer's copies per CPU-second at this fan-out over the fan-out (datagrams per second).
//! Inside the forwarder's thread, each RTP datagram is stamped when the `recvmmsg` that
//! returned it returned, and is done when the `sendmmsg` that sent the last of its `fan-out`
//! RTP copies ended (copies are matched to datagrams in order: the first `fan-out` RTP copies
//! sent belong to the first datagram read, and so on). Two figures per datagram:
//! - **from `recvmmsg`**: done less read: the forwarder's processing, and its own queueing
//!   behind earlier datagrams of the batch and behind timers;
//! - **from arrival**: done less the kernel's receive timestamp (`SO_TIMESTAMPNS`, when the
//!   datagram reached the forwarder's socket): the above plus the wait in the socket's queue
//!   while the forwarder was busy, or off its core. Neither includes the kernel's loopback.
//!
//! Copies sent and datagrams read are compared at the end: if the SFU had dropped or added RTP
//! copies, the matching would be off, and the table says so.
//!
//! The forwarder's and the generator's threads run with real-time priority (`chrt -f`,
//! `SCHED_FIFO` 10) when the system allows it, so that other processes on this shared machine
//! take neither's core: the figures are then the forwarder's own, as on a media server that
//! has its core, fed on time. Without it, runs on the busy development machine measured its
//! other load: the forwarder waiting for its core most of the time (p99 in tens of
//! milliseconds), or, with only the forwarder real-time, the generator sending in bursts after
//! waiting for its own core (a burst is one large batch, and every datagram in it waits for the
//! whole batch). Between sends the generator sleeps ([`TICK`]) instead of spinning, so that it
//! does not hold its core for the whole replay.

use std::collections::VecDeque;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{setsockopt, sockopt};

use super::io::{self, BATCH, Receiver};
use super::{Load, forwarders, trace};
use crate::report::{Cell, Table};

/// Seconds of paced replay per forwarder and run.
const REPLAY_SECS: f64 = 1.0;
/// Runs per fan-out.
const RUNS: usize = 3;
/// The longest a paced replay may take.
const LIMIT: Duration = Duration::from_secs(10);
/// The target for the p99, in microseconds.
const TARGET_P99_US: f64 = 1000.0;
/// The forwarder's and the generator's `SCHED_FIFO` priority.
const RT_PRIORITY: &str = "10";
/// The generator's sleep when nothing is due.
const TICK: Duration = Duration::from_micros(30);

/// Gives the calling thread real-time priority; false if the system refused.
fn real_time() -> bool {
    let tid = nix::unistd::gettid().to_string();
    std::process::Command::new("chrt")
        .args(["-f", "-p", RT_PRIORITY, &tid])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Per-datagram timing inside a forwarder's loop.
#[derive(Debug)]
pub(crate) struct Timing {
    fanout: u64,
    /// Datagrams read whose copies are not all sent: when their batch was read, copies to go,
    /// and how long they had waited in the socket (nanoseconds), if the kernel said.
    queue: VecDeque<(Instant, u64, Option<u64>)>,
    /// Added latency of each datagram whose copies were all sent, in nanoseconds: from the
    /// `recvmmsg`, and from arrival in the socket.
    samples: Vec<u64>,
    from_arrival: Vec<u64>,
    /// RTP datagrams read, and RTP copies sent.
    rtp_in: u64,
    rtp_out: u64,
}

impl Timing {
    fn new(fanout: usize, expected: usize) -> Self {
        Self {
            fanout: fanout as u64,
            queue: VecDeque::with_capacity(4096),
            samples: Vec::with_capacity(expected + 1024),
            from_arrival: Vec::with_capacity(expected + 1024),
            rtp_in: 0,
            rtp_out: 0,
        }
    }

    /// A receive call returned `rx`'s batch (possibly empty).
    pub(crate) fn received(&mut self, rx: &Receiver) {
        if rx.got.is_empty() {
            return;
        }
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        for i in 0..rx.got.len() {
            if trace::is_rtp(rx.datagram(i)) {
                let waited = rx
                    .stamps
                    .get(i)
                    .copied()
                    .flatten()
                    .map(|at| wall.saturating_sub(at).as_nanos() as u64);
                self.queue.push_back((now, self.fanout, waited));
                self.rtp_in += 1;
            }
        }
    }

    /// The sends made after the last receive ended; `copies` RTP copies went out in them.
    pub(crate) fn sent(&mut self, mut copies: u64) {
        if copies == 0 {
            return;
        }
        let now = Instant::now();
        self.rtp_out += copies;
        while copies > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let take = front.1.min(copies);
            front.1 -= take;
            copies -= take;
            if front.1 == 0 {
                let inside = (now - front.0).as_nanos() as u64;
                self.samples.push(inside);
                if let Some(w) = front.2 {
                    self.from_arrival.push(inside + w);
                }
                self.queue.pop_front();
            }
        }
    }
}

/// The `q` quantile of `v` (sorted here), in microseconds.
fn percentile_us(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64 / 1000.0
}

/// One forwarder's paced replay.
#[derive(Debug, Clone, Copy)]
struct Paced {
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    arrival_p50_us: f64,
    arrival_p99_us: f64,
    /// Datagrams with a kernel timestamp, of those timed, in %.
    stamped_pct: f64,
    /// RTP copies sent over RTP datagrams read × fan-out, in %.
    matched_pct: f64,
    loss_pct: f64,
    /// The forwarder's CPU time over its loop's wall time, in %.
    cpu_pct: f64,
    /// Its time runnable but waiting for its core (another thread had it), in %.
    waited_pct: f64,
    /// 1 if it and the generator ran with real-time priority.
    real_time: f64,
    per_receive: f64,
    /// Datagrams offered per second (achieved by the generator).
    offered: f64,
}

/// Replays `load` paced at `rate` datagrams per second; waits until the forwarder read them
/// all (`got`), drains the receivers, sets `stop`. Returns datagrams sent, RTP copies
/// delivered, and the wall time of the replay.
fn pace(load: &Load<'_>, rate: f64, got: &AtomicU64, stop: &AtomicBool) -> (u64, u64, Duration) {
    let start = Instant::now();
    let publishers = load.senders.len();
    let mut tx = io::Sender::new();
    let mut rx = io::Receiver::new();
    let mut pos = vec![0usize; publishers];
    let total: usize = load.senders.iter().map(|(_, t, _)| t.len()).sum();
    let (mut sent, mut delivered) = (0u64, 0u64);
    let drain = |rx: &mut io::Receiver, delivered: &mut u64| {
        for c in &load.receivers {
            while rx.recv(c, false) > 0 {
                for i in 0..rx.got.len() {
                    if trace::is_rtp(rx.datagram(i)) {
                        *delivered += 1;
                    }
                }
            }
        }
    };
    while (sent as usize) < total && start.elapsed() < LIMIT {
        // Datagrams whose global index (i × publishers + p) is below `due` are due.
        let due = (start.elapsed().as_secs_f64() * rate) as usize;
        let before = sent;
        for (p, (c, trace, to)) in load.senders.iter().enumerate() {
            let upto = if due > p {
                (due - p).div_ceil(publishers).min(trace.len())
            } else {
                0
            };
            while pos[p] < upto {
                let end = upto.min(pos[p] + BATCH);
                let out: Vec<(&[u8], SocketAddrV4)> = trace[pos[p]..end]
                    .iter()
                    .map(|d| (d.as_slice(), *to))
                    .collect();
                let (n, _) = tx.send(c, &out);
                sent += n;
                pos[p] = end;
            }
        }
        drain(&mut rx, &mut delivered);
        if sent == before {
            // Nothing was due: sleep a little (exact enough with real-time priority) rather
            // than spin, so a real-time generator leaves its core to others between sends.
            std::thread::sleep(TICK);
        }
    }
    let wall = start.elapsed();
    // Until the forwarder has read everything and no copy has arrived for 100 ms (1 s at most).
    let wait = Instant::now();
    let mut last = (delivered, Instant::now());
    while wait.elapsed() < Duration::from_secs(1) {
        drain(&mut rx, &mut delivered);
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if got.load(Ordering::Relaxed) >= sent
            && last.1.elapsed() > Duration::from_millis(100)
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    (sent, delivered, wall)
}

type Forward<'a> = Box<
    dyn FnOnce(&UdpSocket, &AtomicBool, &AtomicU64, &mut Timing) -> forwarders::Counts + Send + 'a,
>;

/// Runs `forward` (pinned to the last core, timed) while the generator (pinned to the first)
/// paces the trace at `rate` datagrams per second.
fn paced(
    clients: &[UdpSocket],
    forwarder: &UdpSocket,
    to: SocketAddrV4,
    trace: &[Vec<Vec<u8>>],
    fanout: usize,
    rate: f64,
    forward: Forward<'_>,
) -> Paced {
    let mut rx = io::Receiver::new();
    for s in clients.iter().chain([forwarder]) {
        while rx.recv(s, false) > 0 {}
    }
    // Arrival times for the forwarder's receives; without them only the first figure is given.
    if let Err(e) = setsockopt(forwarder, sockopt::ReceiveTimestampns, &true) {
        eprintln!("no SO_TIMESTAMPNS on the forwarder's socket: {e}");
    }
    let stop = AtomicBool::new(false);
    let got = AtomicU64::new(0);
    let n = super::cores();
    let expected: usize = trace.iter().map(Vec::len).sum();
    std::thread::scope(|s| {
        let spawn = |name: &str| std::thread::Builder::new().name(name.to_owned());
        // Spawning fails only when the system is out of threads: no benchmark then.
        let fwd = spawn("fwd-half-load")
            .spawn_scoped(s, || {
                io::pin_to(n - 1);
                let rt = real_time();
                let mut timing = Timing::new(fanout, expected);
                let t = Instant::now();
                let counts = forward(forwarder, &stop, &got, &mut timing);
                (counts, timing, t.elapsed(), rt)
            })
            .expect("a forwarder thread");
        let generator = spawn("generator")
            .spawn_scoped(s, || {
                if n > 1 {
                    io::pin_to(0);
                }
                let rt = real_time();
                std::thread::sleep(Duration::from_millis(20));
                let load = Load {
                    senders: clients
                        .iter()
                        .zip(trace)
                        .map(|(c, t)| (c, t.as_slice(), to))
                        .collect(),
                    receivers: clients.iter().collect(),
                };
                (pace(&load, rate, &got, &stop), rt)
            })
            .expect("a generator thread");
        // A panicking thread is a broken benchmark: say so loudly.
        let ((sent, delivered, wall), generator_rt) =
            generator.join().expect("the generator panicked");
        let (counts, mut timing, looped, rt) = fwd.join().expect("the forwarder panicked");
        // The socket goes on to other forwarders: no timestamps for them.
        setsockopt(forwarder, sockopt::ReceiveTimestampns, &false).ok();
        let expected_copies = (timing.rtp_in * timing.fanout).max(1) as f64;
        let timed = timing.samples.len().max(1) as f64;
        Paced {
            p50_us: percentile_us(&mut timing.samples, 0.5),
            p99_us: percentile_us(&mut timing.samples, 0.99),
            max_us: percentile_us(&mut timing.samples, 1.0),
            arrival_p50_us: percentile_us(&mut timing.from_arrival, 0.5),
            arrival_p99_us: percentile_us(&mut timing.from_arrival, 0.99),
            stamped_pct: 100.0 * timing.from_arrival.len() as f64 / timed,
            matched_pct: 100.0 * timing.rtp_out as f64 / expected_copies,
            loss_pct: 100.0 * (1.0 - delivered as f64 / (sent * fanout as u64).max(1) as f64),
            cpu_pct: 100.0 * counts.cpu.as_secs_f64() / looped.as_secs_f64().max(1e-9),
            waited_pct: 100.0 * counts.waited.as_secs_f64() / looped.as_secs_f64().max(1e-9),
            real_time: f64::from(u8::from(rt && generator_rt)),
            per_receive: counts.received as f64 / counts.batches.max(1) as f64,
            offered: sent as f64 / wall.as_secs_f64().max(1e-9),
        }
    })
}

/// One run at one fan-out: a fresh room and trace, Confer then R1, both paced at `rate`.
fn one_run(fanout: usize, rate: f64) -> anyhow::Result<[Paced; 2]> {
    let participants = fanout + 1;
    let per_publisher = ((rate * REPLAY_SECS) as usize / participants).max(100);
    let trace::Room {
        mut sfu,
        forwarder,
        forwarder_addr,
        clients,
        addrs,
        trace,
    } = trace::room(participants, per_publisher)?;
    let routes = forwarders::Routes::new(&addrs);
    let sfu = &mut sfu;
    let confer = paced(
        &clients,
        &forwarder,
        forwarder_addr,
        &trace,
        fanout,
        rate,
        Box::new(move |s, stop, got, t| {
            forwarders::confer_timed(s, forwarder_addr, sfu, stop, got, Some(t))
        }),
    );
    let r1 = paced(
        &clients,
        &forwarder,
        forwarder_addr,
        &trace,
        fanout,
        rate,
        Box::new(|s, stop, got, t| forwarders::r1_timed(s, &routes, stop, got, Some(t))),
    );
    Ok([confer, r1])
}

/// The half-load table: for each `(fan-out, Confer's copies per CPU-second at saturation)`.
pub(super) fn run(saturated: &[(usize, f64)]) -> anyhow::Result<Table> {
    let mut table = Table::new(
        format!(
            "SFU at half load: the trace paced at 50 % of Confer's saturated rate (this run's), added latency inside the forwarder per RTP datagram, until the end of the sendmmsg that sent its last copy: from the return of the recvmmsg that read it, and from its arrival in the socket (kernel timestamp); medians of {RUNS} runs of {REPLAY_SECS} s"
        ),
        &[
            "fan-out",
            "forwarder",
            "datagrams/s offered",
            "p50 µs from recvmmsg",
            "p99 µs from recvmmsg",
            "max µs from recvmmsg",
            "p50 µs from arrival",
            "p99 µs from arrival",
            "target p99",
            "met (from arrival)",
            "priority (forwarder and generator)",
            "forwarder CPU %",
            "forwarder waiting for its core %",
            "datagrams per receive",
            "copies matched %",
            "timestamped %",
            "loss %",
        ],
    );
    for &(fanout, copies_per_cpu_s) in saturated {
        let rate = 0.5 * copies_per_cpu_s / fanout as f64;
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.push(one_run(fanout, rate)?);
        }
        for (k, name) in ["Confer", "R1"].iter().enumerate() {
            let col = |f: fn(&Paced) -> f64| super::median(runs.iter().map(|r| f(&r[k])).collect());
            let p99 = col(|p| p.arrival_p99_us);
            let (target, met) = if k == 0 {
                (
                    format!("< {TARGET_P99_US:.0}"),
                    if p99 < TARGET_P99_US { "yes" } else { "no" },
                )
            } else {
                ("-".to_owned(), "-")
            };
            table.row(vec![
                Cell::num(fanout as f64, 0),
                Cell::text(*name),
                Cell::num(col(|p| p.offered), 0),
                Cell::num(col(|p| p.p50_us), 1),
                Cell::num(col(|p| p.p99_us), 1),
                Cell::num(col(|p| p.max_us), 0),
                Cell::num(col(|p| p.arrival_p50_us), 1),
                Cell::num(p99, 1),
                Cell::text(target),
                Cell::text(met),
                Cell::text(if col(|p| p.real_time) > 0.5 {
                    "SCHED_FIFO"
                } else {
                    "normal"
                }),
                Cell::num(col(|p| p.cpu_pct), 1),
                Cell::num(col(|p| p.waited_pct), 1),
                Cell::num(col(|p| p.per_receive), 2),
                Cell::num(col(|p| p.matched_pct), 2),
                Cell::num(col(|p| p.stamped_pct), 1),
                Cell::num(col(|p| p.loss_pct), 2),
            ]);
        }
    }
    table.print();
    Ok(table)
}
