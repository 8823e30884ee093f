//! Janus VideoRoom on the saturation workload (../shared/design/BENCHMARKS.md, "Baselines"):
//! `confer-bench janus`, run through `scripts/bench-netns.sh` (root), which makes two network
//! namespaces joined by a veth pair and runs the benchmark in one of them. Janus's ICE gathers
//! no candidate on a loopback interface, so 127.0.0.1 cannot carry its media: it runs in the
//! other namespace ([`janus_server`]) and every datagram crosses the veth pair.
//!
//! Per fan-out (rooms of 2, 4 and 6, everyone publishing to everyone else), the same load
//! client as the saturation section: str0m client peers (Opus and VP8, a microphone and a
//! camera) on UDP sockets of their own. For Janus each participant has a publisher handle
//! (its offer through `joinandconfigure`, Janus's answer back) and one subscriber handle for
//! every other publisher's feed (Janus's offer through `join`, the peer's answer through
//! `start`), all with `"trickle": false`; ICE and DTLS then run over the real sockets. Each
//! publisher then writes the frames of every run at once (the same two 1,000 B video frames
//! to one 160 B audio frame as [`trace::frames`] makes for Confer): SRTP under the keys Janus
//! negotiated, replayed in one slice per run, so no datagram reaches Janus twice. The
//! generator (pinned to core 0) replays a slice with `sendmmsg` from each publisher's socket
//! to Janus's port for it, keeping up to [`IN_FLIGHT`] datagrams not yet delivered, and
//! counts the RTP copies reaching the subscribers' sockets.
//!
//! Confer, then R1 (the saturation section's batched raw forwarder, the kernel's ceiling on this
//! path), are measured beside it in each run, alternating, on the same number of copies: the
//! saturation section's [`trace::room`] with its forwarder socket opened inside Janus's
//! namespace, so its datagrams cross the same veth pair, and its thread pinned to the core
//! Janus is pinned to. Confer runs in the saturation section's batched shell (`recvmmsg`,
//! `sendmmsg`), the same design as the server's media thread: this compares Confer's SFU core
//! with the whole of Janus.
//!
//! Figures: copies per CPU-second. Confer's CPU is its forwarder thread's; Janus's the sum
//! over all its threads (the event loop that receives, decrypts, relays, encrypts and sends;
//! the HTTP transport's and housekeeping threads, idle during a run). Janus's copies are those
//! its subscribers received (loss is shown beside them). Each figure is the median of
//! [`RUNS`] runs; each ratio the median of the per-run ratios.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

use super::janus_server::{Janus, ROOM, Session};
use super::{FANOUTS, Load, Measure, Net, Progress, cores, forwarders, io, measure, median, trace};
use crate::report::{Cell, Table};

/// Copies each forwarder sends per run (half the saturation section's: Janus is slower).
const COPIES: usize = 60_000;
/// Runs per fan-out.
const RUNS: usize = 3;
/// Datagrams the generator keeps on their way to Janus. Fewer than the saturation section's
/// 256: Janus's sockets keep the kernel's default receive buffer (`net.core.rmem_default`,
/// about 90 datagrams of 1 KB on each publisher's port), and this counts only what its
/// subscribers have not yet received.
const IN_FLIGHT: u64 = 64;
/// Frames each publisher sends through Janus to check the path before its trace.
const CHECK_FRAMES: usize = 30;
/// ICE and DTLS over the veth pair take tens of milliseconds; this bounds a broken run.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Where scripts/bench-netns.sh put things.
#[derive(Debug)]
struct Namespaces {
    janus_netns: String,
    janus_addr: Ipv4Addr,
    load_addr: Ipv4Addr,
}

impl Namespaces {
    fn from_env() -> anyhow::Result<Self> {
        let var = |k: &str| {
            std::env::var(k).with_context(|| {
                format!("{k} is not set: run `scripts/bench-netns.sh confer-bench janus` (as root)")
            })
        };
        Ok(Self {
            janus_netns: var("CONFER_BENCH_JANUS_NETNS")?,
            janus_addr: var("CONFER_BENCH_JANUS_ADDR")?.parse()?,
            load_addr: var("CONFER_BENCH_LOAD_ADDR")?.parse()?,
        })
    }

    /// A socket (4 MiB buffers) on Janus's address, inside Janus's namespace: opened by a
    /// thread that enters that namespace (a socket stays in the namespace it was made in).
    fn forwarder_socket(&self) -> anyhow::Result<(UdpSocket, SocketAddrV4)> {
        let path = format!("/var/run/netns/{}", self.janus_netns);
        let ip = self.janus_addr;
        std::thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<(UdpSocket, SocketAddrV4)> {
                let ns = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                Ok(io::socket_on(ip)?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
        })
    }
}

/// A str0m peer on its own socket, talking to Janus for real.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddrV4,
    /// Where Janus's datagrams for this peer come from (its port for this handle).
    remote: Option<SocketAddrV4>,
    /// Media frames str0m handed up (decrypted and depacketized).
    frames_in: u64,
}

impl Peer {
    fn new(ip: Ipv4Addr) -> anyhow::Result<Self> {
        let (socket, local) = io::socket_on(ip)?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(SocketAddr::V4(local), "udp")?);
        Ok(Self {
            rtc,
            socket,
            local,
            remote: None,
            frames_in: 0,
        })
    }

    /// Sends what str0m has to send, then hands it what arrived; `false` once it failed.
    fn step(&mut self, buf: &mut [u8]) -> bool {
        let now = Instant::now();
        if self.rtc.handle_input(Input::Timeout(now)).is_err() {
            return false;
        }
        loop {
            match self.rtc.poll_output() {
                Ok(RtcOutput::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(RtcOutput::Timeout(_)) => break,
                Ok(RtcOutput::Event(Event::MediaData(_))) => self.frames_in += 1,
                Ok(RtcOutput::Event(_)) => {}
                Err(_) => return false,
            }
        }
        while let Ok((n, SocketAddr::V4(source))) = self.socket.recv_from(buf) {
            self.remote = Some(source);
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source: SocketAddr::V4(source),
                    destination: SocketAddr::V4(self.local),
                    contents,
                },
            );
            if self.rtc.handle_input(input).is_err() {
                return false;
            }
        }
        true
    }
}

/// ICE and DTLS between Janus and every peer of `peers`, over their sockets.
fn connect(peers: &mut [Peer]) -> anyhow::Result<()> {
    for p in peers.iter() {
        p.socket.set_nonblocking(true)?;
    }
    let start = Instant::now();
    let mut buf = vec![0u8; io::SLOT];
    // Rounds after every peer reports connected: Janus may need the last flight.
    let mut settle = 0;
    while settle < 20 {
        if start.elapsed() > HANDSHAKE_LIMIT {
            let up = peers.iter().filter(|p| p.rtc.is_connected()).count();
            bail!(
                "ICE and DTLS with Janus: {up} of {} peers connected in {HANDSHAKE_LIMIT:?}",
                peers.len()
            );
        }
        for p in peers.iter_mut() {
            if !p.step(&mut buf) {
                bail!("a peer failed while connecting to Janus");
            }
        }
        if peers.iter().all(|p| p.rtc.is_connected()) {
            settle += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The generator's sends block when a buffer is full rather than fail.
    for p in peers.iter() {
        p.socket.set_nonblocking(false)?;
    }
    Ok(())
}

/// Checks that what the publishers send, made as the trace is, reaches every subscriber
/// through Janus as media str0m decrypts: each publisher sends [`CHECK_FRAMES`] frames live
/// (before its trace, so their SRTP indices come first), then the subscribers are driven until
/// each has its share or [`HANDSHAKE_LIMIT`] passes.
fn check(
    publishers: &mut [Peer],
    subscribers: &mut [Peer],
    mids: &[(Mid, Mid)],
    fanout: usize,
) -> anyhow::Result<()> {
    for (p, &(audio, video)) in publishers.iter_mut().zip(mids) {
        let to = p.remote.context("a publisher never heard from Janus")?;
        for d in trace::frames(&mut p.rtc, audio, video, CHECK_FRAMES)? {
            p.socket.send_to(&d, to)?;
        }
    }
    for s in subscribers.iter() {
        s.socket.set_nonblocking(true)?;
    }
    let want = (CHECK_FRAMES * fanout) as u64;
    let start = Instant::now();
    let mut buf = vec![0u8; io::SLOT];
    while subscribers.iter().any(|s| s.frames_in < want) && start.elapsed() < HANDSHAKE_LIMIT {
        for s in subscribers.iter_mut() {
            s.step(&mut buf);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for s in subscribers.iter() {
        s.socket.set_nonblocking(false)?;
    }
    let got: Vec<u64> = subscribers.iter().map(|s| s.frames_in).collect();
    if got.iter().any(|&n| n < want) {
        bail!("Janus relayed too few frames that str0m could open: {got:?} of {want} each");
    }
    Ok(())
}

/// One room in Janus, connected, and every run's trace.
struct Room {
    session: Session,
    publishers: Vec<Peer>,
    subscribers: Vec<Peer>,
    /// Per publisher: its datagrams for all runs, [`RUNS`] slices of `per_run`.
    trace: Vec<Vec<Vec<u8>>>,
    per_run: usize,
    fanout: usize,
}

impl Room {
    fn new(janus: &Janus, ip: Ipv4Addr, fanout: usize) -> anyhow::Result<Self> {
        let participants = fanout + 1;
        let per_run = COPIES / (fanout * participants);
        let mut session = janus.session()?;
        let mut publishers = Vec::new();
        let mut mids: Vec<(Mid, Mid)> = Vec::new();
        for i in 0..participants {
            let mut p = Peer::new(ip)?;
            let mut api = p.rtc.sdp_api();
            let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            let (offer, pending) = api.apply().context("a publisher's offer")?;
            let handle = session.attach()?;
            let reply = session.message(
                handle,
                json!({"request": "joinandconfigure", "room": ROOM, "ptype": "publisher",
                       "id": i + 1, "display": format!("p{i}")}),
                Some(json!({"type": "offer", "sdp": offer.to_sdp_string(), "trickle": false})),
            )?;
            let sdp = reply.jsep.as_ref().and_then(|j| j["sdp"].as_str());
            let sdp = sdp.with_context(|| format!("no answer from Janus: {}", reply.data))?;
            p.rtc
                .sdp_api()
                .accept_answer(pending, SdpAnswer::from_sdp_string(sdp)?)?;
            publishers.push(p);
            mids.push((audio, video));
        }
        // Janus offers a feed to subscribers only once its publisher's connection is up.
        connect(&mut publishers)?;
        let mut subscribers = Vec::new();
        for i in 0..participants {
            let mut p = Peer::new(ip)?;
            let handle = session.attach()?;
            let streams: Vec<_> = (0..participants)
                .filter(|&j| j != i)
                .map(|j| json!({"feed": j + 1}))
                .collect();
            let reply = session.message(
                handle,
                json!({"request": "join", "room": ROOM, "ptype": "subscriber", "streams": streams}),
                None,
            )?;
            let sdp = reply.jsep.as_ref().and_then(|j| j["sdp"].as_str());
            let sdp = sdp.with_context(|| format!("no offer from Janus: {}", reply.data))?;
            let answer = p
                .rtc
                .sdp_api()
                .accept_offer(SdpOffer::from_sdp_string(sdp)?)?;
            session.message(
                handle,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer.to_sdp_string(), "trickle": false})),
            )?;
            subscribers.push(p);
        }
        connect(&mut subscribers)?;
        check(&mut publishers, &mut subscribers, &mids, fanout)?;
        let trace = publishers
            .iter_mut()
            .zip(&mids)
            .map(|(p, &(audio, video))| trace::frames(&mut p.rtc, audio, video, per_run * RUNS))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            session,
            publishers,
            subscribers,
            trace,
            per_run,
            fanout,
        })
    }

    /// Replays slice `run` of the trace at Janus; its CPU over the replay.
    fn run(&self, janus: &Janus, run: usize) -> Measure {
        let slice = run * self.per_run..(run + 1) * self.per_run;
        let load = Load {
            senders: self
                .publishers
                .iter()
                .zip(&self.trace)
                .filter_map(|(p, t)| Some((&p.socket, &t[slice.clone()], p.remote?)))
                .collect(),
            receivers: self.subscribers.iter().map(|p| &p.socket).collect(),
        };
        // Leftovers of the previous run (RTCP, late copies).
        let mut rx = io::Receiver::new();
        for s in &load.receivers {
            while rx.recv(s, false) > 0 {}
        }
        let stop = AtomicBool::new(false);
        let generator = std::thread::scope(|s| {
            s.spawn(|| {
                if cores() > 1 {
                    io::pin_to(0);
                }
                let (cpu0, waited0) = janus.sched();
                let r = super::blast(
                    &load,
                    IN_FLIGHT,
                    Progress::Delivered {
                        fanout: self.fanout as u64,
                    },
                    &stop,
                );
                let (cpu1, waited1) = janus.sched();
                (r, cpu1 - cpu0, waited1 - waited0)
            })
            .join()
            .expect("the generator panicked")
        });
        let (r, cpu, waited) = generator;
        Measure {
            counts: forwarders::Counts {
                received: r.sent,
                forwarded: r.delivered,
                bytes_out: r.delivered_bytes,
                batches: 0,
                cpu,
                waited,
                ..forwarders::Counts::default()
            },
            delivered: r.delivered,
            sent: r.sent,
            fanout: self.fanout,
            wall: r.wall,
        }
    }
}

/// Confer, then R1, on one fresh room and trace, the forwarder socket in Janus's namespace.
fn confer_run(ns: &Namespaces, fanout: usize) -> anyhow::Result<[Measure; 2]> {
    let participants = fanout + 1;
    let per_publisher = COPIES / (fanout * participants);
    let trace::Room {
        mut sfu,
        forwarder,
        forwarder_addr,
        clients,
        addrs,
        trace,
    } = trace::room_on(
        ns.forwarder_socket()?,
        ns.load_addr,
        participants,
        per_publisher,
    )?;
    let net = Net {
        clients: &clients,
        forwarder: &forwarder,
        forwarder_addr,
    };
    let confer = measure("Confer", &net, &trace, fanout, |s, stop, got| {
        forwarders::confer(s, forwarder_addr, &mut sfu, stop, got)
    });
    let routes = forwarders::Routes::new(&addrs);
    let r1 = measure("R1", &net, &trace, fanout, |s, stop, got| {
        forwarders::r1(s, &routes, stop, got)
    });
    Ok([confer, r1])
}

/// Runs the benchmark; prints and returns its two tables.
pub(crate) fn run() -> anyhow::Result<Vec<Table>> {
    let ns = Namespaces::from_env()?;
    let core = cores() - 1;
    println!();
    println!(
        "SFU at saturation, Confer against Janus VideoRoom: both pinned to core {core} of {}, generator to core 0; {COPIES} copies per forwarder and run; medians of {RUNS} runs",
        cores()
    );
    let janus = Janus::start(&ns.janus_netns, ns.janus_addr, core)?;
    let mut figures = Table::new(
        format!(
            "SFU at saturation against Janus 1.1.2 VideoRoom: the same load client (str0m peers, 2 video packets of 1,000 B to 1 audio packet of 160 B), over a veth pair between two network namespaces; both pinned to one core; medians of {RUNS} runs"
        ),
        &[
            "fan-out",
            "forwarder",
            "pkts/CPU-s",
            "Mbit/s per CPU-s",
            "loss %",
            "runnable %",
            "CPU s",
        ],
    );
    let mut ratios = Table::new(
        format!(
            "SFU at saturation against Janus: ratios (medians of the per-run ratios, {RUNS} runs)"
        ),
        &[
            "fan-out",
            "Confer/Janus",
            "R1/Janus",
            "Confer/R1 (veth)",
            "target Confer/Janus",
            "met",
        ],
    );
    for fanout in FANOUTS {
        let room = Room::new(&janus, ns.load_addr, fanout)
            .with_context(|| format!("Janus at fan-out {fanout} ({})", janus.log_tail()))?;
        let mut runs = Vec::new();
        for r in 0..RUNS {
            let [confer, r1] = confer_run(&ns, fanout)?;
            let j = room.run(&janus, r);
            runs.push([confer, r1, j]);
        }
        let Room { session, .. } = room;
        session.destroy()?;
        for (k, name) in ["Confer", "R1", "Janus"].iter().enumerate() {
            let col = |f: fn(&Measure) -> f64| median(runs.iter().map(|r| f(&r[k])).collect());
            figures.row(vec![
                Cell::num(fanout as f64, 0),
                Cell::text(*name),
                Cell::num(col(Measure::per_cpu_sec), 0),
                Cell::num(col(Measure::mbit_per_cpu_sec), 0),
                Cell::num(col(Measure::loss_pct), 2),
                Cell::num(col(Measure::runnable_pct), 0),
                Cell::num(col(|m| m.counts.cpu.as_secs_f64()), 2),
            ]);
        }
        let ratio_of = |a: usize, b: usize| {
            median(
                runs.iter()
                    .map(|r| r[a].per_cpu_sec() / r[b].per_cpu_sec().max(1e-9))
                    .collect(),
            )
        };
        let ratio = ratio_of(0, 2);
        let (target, met) = if fanout >= 3 {
            ("≥ 3", if ratio >= 3.0 { "yes" } else { "no" })
        } else {
            ("-", "-")
        };
        ratios.row(vec![
            Cell::num(fanout as f64, 0),
            Cell::num(ratio, 2),
            Cell::num(ratio_of(1, 2), 2),
            Cell::num(ratio_of(0, 1), 3),
            Cell::text(target),
            Cell::text(met),
        ]);
    }
    figures.print();
    ratios.print();
    Ok(vec![figures, ratios])
}
