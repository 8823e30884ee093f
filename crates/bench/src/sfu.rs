//! The SFU against a raw UDP forwarder, on the same fan-out over loopback.
//!
//! Rooms of P participants; each publishes audio (50 packets/s, 160 B) and video (100
//! packets/s, 1,000 B: about 0.8 Mbit/s) and receives everyone else in its room. Both
//! forwarders run in a thread of their own with one UDP socket and one syscall per datagram
//! in and out (`recv_from`, `send_to`), as the server's media task did before it became a
//! batched thread (`recvmmsg`/`sendmmsg`, like the saturation section's shell):
//! - **raw**: looks the source address up in a table and sends the datagram to the other
//!   members' addresses; no ICE, no DTLS, no SRTP, no RTCP (the physical limit of this design);
//! - **Confer**: `confer_sfu::Sfu` with str0m peers (ICE-lite, DTLS-SRTP, RTP mode, NACK
//!   buffers, RTCP), routed by a routing table of one channel per room.
//!
//! The load clients run in another thread (str0m peers for the SFU, plain sockets for the raw
//! forwarder). After a warm-up, each forwarder measures its own thread's CPU time
//! (`/proc/thread-self/schedstat`) over a fixed window, so the figure is forwarded packets per
//! CPU-second of the forwarder, whatever the clients cost. It also records, per datagram that
//! was forwarded, the time from `recv_from` returning to the last `send_to` (added latency).

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confer_proto::{ChannelId, ParticipantId};
use confer_sfu::forward::Routing;
use confer_sfu::{Output, Sfu, SfuConfig};
use confer_testkit::media::ClientOffer;
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output as RtcOutput, Rtc};

use crate::report::{Cell, Table};

const AUDIO_EVERY: Duration = Duration::from_millis(20);
const VIDEO_EVERY: Duration = Duration::from_millis(10);
const AUDIO_BYTES: usize = 160;
const VIDEO_BYTES: usize = 1000;
const WARM_UP: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(4);

/// What a forwarder did in the measurement window.
struct Measured {
    forwarded: u64,
    cpu: Duration,
    /// Microseconds from receive to the last send, per forwarded datagram.
    added_us: Vec<u64>,
}

impl Measured {
    fn per_cpu_sec(&self) -> f64 {
        self.forwarded as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
    fn pct(&mut self, p: f64) -> u64 {
        self.added_us.sort_unstable();
        let i = ((self.added_us.len() as f64 - 1.0) * p).round() as usize;
        self.added_us.get(i).copied().unwrap_or(0)
    }
}

fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Runs `forward_one` (one datagram in, its copies out; returns how many went out) until
/// `stop`, measuring the window after the warm-up; `tick` runs after every datagram and every
/// 1 ms read timeout (timers).
fn measure(
    socket: &UdpSocket,
    stop: &AtomicBool,
    mut forward_one: impl FnMut(&UdpSocket, SocketAddr, &[u8], Instant) -> u64,
    mut tick: impl FnMut(&UdpSocket, Instant),
) -> Measured {
    socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut window: Option<(Duration, u64)> = None;
    let mut forwarded = 0u64;
    let mut added_us = Vec::new();
    let mut result = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if window.is_none() && now - start >= WARM_UP {
            window = Some((thread_cpu(), forwarded));
            added_us.clear();
        }
        if let Some((cpu0, f0)) = window
            && result.is_none()
            && now - start >= WARM_UP + WINDOW
        {
            result = Some(Measured {
                forwarded: forwarded - f0,
                cpu: thread_cpu() - cpu0,
                added_us: std::mem::take(&mut added_us),
            });
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let t = Instant::now();
            let out = forward_one(socket, from, &buf[..n], t);
            if out > 0 {
                forwarded += out;
                if window.is_some() && result.is_none() {
                    added_us.push(t.elapsed().as_micros() as u64);
                }
            }
        }
        tick(socket, Instant::now());
    }
    result.unwrap_or(Measured {
        forwarded: 0,
        cpu: Duration::ZERO,
        added_us: Vec::new(),
    })
}

fn room_members(rooms: usize, size: usize) -> Vec<Vec<usize>> {
    (0..rooms)
        .map(|r| (r * size..(r + 1) * size).collect())
        .collect()
}

fn frame(kind: u8, n: u64, len: usize) -> Vec<u8> {
    // VP8 delta-frame tag for video (bit 0 set), then a counter and filler.
    let mut f = vec![if kind == 1 { 0x11 } else { 0x01 }];
    f.extend_from_slice(&n.to_be_bytes());
    f.resize(len, 0xa5);
    f
}

// ---- raw forwarder ----

fn run_raw(rooms: usize, size: usize) -> Measured {
    let fwd = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let fwd_addr = fwd.local_addr().expect("addr");
    let clients: Vec<UdpSocket> = (0..rooms * size)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_nonblocking(true).ok();
            s
        })
        .collect();
    let addrs: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().expect("a")).collect();
    let mut table: HashMap<SocketAddr, Vec<SocketAddr>> = HashMap::new();
    for members in room_members(rooms, size) {
        for &i in &members {
            let others = members.iter().filter(|&&j| j != i).map(|&j| addrs[j]);
            table.insert(addrs[i], others.collect());
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let forwarder = std::thread::spawn(move || {
        measure(
            &fwd,
            &st,
            |sock, from, data, _| {
                let Some(dests) = table.get(&from) else {
                    return 0;
                };
                for d in dests {
                    let _ = sock.send_to(data, d);
                }
                dests.len() as u64
            },
            |_, _| {},
        )
    });
    drive_plain_clients(&clients, fwd_addr, &stop);
    forwarder.join().expect("forwarder")
}

fn drive_plain_clients(clients: &[UdpSocket], to: SocketAddr, stop: &AtomicBool) {
    let start = Instant::now();
    let mut next_audio = vec![start; clients.len()];
    let mut next_video = vec![start; clients.len()];
    let mut buf = vec![0u8; 2048];
    let mut n = 0u64;
    while start.elapsed() < WARM_UP + WINDOW + Duration::from_millis(200) {
        let now = Instant::now();
        for (i, c) in clients.iter().enumerate() {
            if now >= next_audio[i] {
                let _ = c.send_to(&frame(0, n, AUDIO_BYTES + 12), to);
                next_audio[i] += AUDIO_EVERY;
                n += 1;
            }
            if now >= next_video[i] {
                let _ = c.send_to(&frame(1, n, VIDEO_BYTES + 13), to);
                next_video[i] += VIDEO_EVERY;
                n += 1;
            }
            while c.recv_from(&mut buf).is_ok() {}
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    stop.store(true, Ordering::Relaxed);
}

// ---- the SFU ----

struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    audio: Mid,
    video: Mid,
    next_audio: Instant,
    next_video: Instant,
    received: u64,
}

fn run_sfu(rooms: usize, size: usize) -> (Measured, u64) {
    let fwd = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let fwd_addr = fwd.local_addr().expect("addr");
    let start = Instant::now();
    let mut sfu = Sfu::new(SfuConfig::new(fwd_addr), start);
    let mut clients = Vec::new();
    for i in 0..rooms * size {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).ok();
        let addr = socket.local_addr().expect("addr");
        let ClientOffer {
            mut rtc,
            offer,
            pending,
            audio,
            video,
        } = ClientOffer::new(addr, size - 1, start);
        let answer = sfu
            .accept_offer(pid(i), &offer.to_sdp_string(), start)
            .expect("answer");
        rtc.sdp_api()
            .accept_answer(
                pending,
                SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
            )
            .expect("answer applies");
        clients.push(Client {
            rtc,
            socket,
            addr,
            audio,
            video,
            next_audio: start + WARM_UP / 2,
            next_video: start + WARM_UP / 2,
            received: 0,
        });
    }
    let table: BTreeMap<ChannelId, Vec<ParticipantId>> = room_members(rooms, size)
        .into_iter()
        .enumerate()
        .map(|(r, m)| {
            (
                ChannelId::breakout(r as u32 + 1),
                m.into_iter().map(pid).collect(),
            )
        })
        .collect();
    sfu.set_routing(Routing::new(table), start);

    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let forwarder = std::thread::spawn(move || {
        // Sends what the SFU has to send; returns when it next wants `handle_timeout`.
        let flush = |sfu: &mut Sfu, sock: &UdpSocket| -> Instant {
            loop {
                match sfu.poll_output() {
                    Output::Transmit {
                        destination,
                        contents,
                    } => {
                        let _ = sock.send_to(&contents, destination);
                    }
                    Output::Timeout(t) => return t,
                    _ => {}
                }
            }
        };
        let sfu = std::cell::RefCell::new(sfu);
        let due = std::cell::Cell::new(Instant::now());
        measure(
            &fwd,
            &st,
            |sock, from, data, now| {
                let mut s = sfu.borrow_mut();
                let before = s.stats().forwarded_packets;
                s.handle_datagram(now, from, fwd_addr, data);
                due.set(flush(&mut s, sock));
                s.stats().forwarded_packets - before
            },
            |sock, now| {
                if now >= due.get() {
                    let mut s = sfu.borrow_mut();
                    s.handle_timeout(now);
                    due.set(flush(&mut s, sock));
                }
            },
        )
    });
    let received = drive_rtc_clients(&mut clients, fwd_addr, &stop);
    (forwarder.join().expect("forwarder"), received)
}

fn pid(i: usize) -> ParticipantId {
    ParticipantId::new(format!("{i:032x}")).expect("id")
}

fn drive_rtc_clients(clients: &mut [Client], sfu: SocketAddr, stop: &AtomicBool) -> u64 {
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut n = 0u64;
    while start.elapsed() < WARM_UP + WINDOW + Duration::from_millis(200) {
        let now = Instant::now();
        for c in clients.iter_mut() {
            // Publish what is due (once connected).
            if c.rtc.is_connected() {
                for (video, mid, every, bytes) in [
                    (false, c.audio, AUDIO_EVERY, AUDIO_BYTES),
                    (true, c.video, VIDEO_EVERY, VIDEO_BYTES),
                ] {
                    let next = if video { c.next_video } else { c.next_audio };
                    if now < next {
                        continue;
                    }
                    let codec = if video { Codec::Vp8 } else { Codec::Opus };
                    let pt = c.rtc.writer(mid).and_then(|w| {
                        w.payload_params()
                            .find(|p| p.spec().codec == codec)
                            .map(|p| p.pt())
                    });
                    if let (Some(pt), Some(w)) = (pt, c.rtc.writer(mid)) {
                        let rate = if video { 90_000 } else { 48_000 };
                        let t = MediaTime::from_micros(start.elapsed().as_micros() as u64)
                            .rebase(str0m::media::Frequency::new(rate).expect("rate"));
                        let _ = w.write(pt, now, t, frame(u8::from(video), n, bytes));
                        n += 1;
                    }
                    if video {
                        c.next_video = next.max(now - every) + every;
                    } else {
                        c.next_audio = next.max(now - every) + every;
                    }
                }
            }
            while let Ok((len, from)) = c.socket.recv_from(&mut buf) {
                if let Ok(contents) = buf[..len].try_into() {
                    let _ = c.rtc.handle_input(Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source: from,
                            destination: c.addr,
                            contents,
                        },
                    ));
                }
            }
            let _ = c.rtc.handle_input(Input::Timeout(Instant::now()));
            loop {
                match c.rtc.poll_output() {
                    Ok(RtcOutput::Transmit(t)) => {
                        let _ = c.socket.send_to(&t.contents, sfu);
                    }
                    Ok(RtcOutput::Event(Event::MediaData(_))) => c.received += 1,
                    Ok(RtcOutput::Event(_)) => {}
                    Ok(RtcOutput::Timeout(_)) | Err(_) => break,
                }
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    stop.store(true, Ordering::Relaxed);
    clients.iter().map(|c| c.received).sum()
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

/// Memory of idle peers: offers accepted, nothing connected.
fn idle_memory(peers: usize) -> f64 {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let now = Instant::now();
    let mut sfu = Sfu::new(SfuConfig::new(addr), now);
    let before = rss_kib();
    for i in 0..peers {
        let offer = ClientOffer::new(addr, 5, now).offer;
        sfu.accept_offer(pid(i), &offer.to_sdp_string(), now)
            .expect("answer");
    }
    let after = rss_kib();
    drop(sfu);
    (after.saturating_sub(before)) as f64 / peers as f64
}

pub(crate) fn run() -> Vec<Table> {
    let mut table = Table::new(
        format!(
            "SFU vs raw UDP forwarder at a trickle (one thread, one socket, loopback; audio 50/s x 160 B + video 100/s x 1,000 B per publisher; one {}-s window per row, not a median)",
            WINDOW.as_secs()
        ),
        &[
            "room size",
            "rooms",
            "raw pkts/CPU-s",
            "Confer pkts/CPU-s",
            "ratio",
            "raw added p50 µs",
            "raw added p99 µs",
            "Confer added p50 µs",
            "Confer added p99 µs",
            "Confer frames received",
        ],
    );
    for (size, rooms) in [(2, 12), (4, 6), (6, 4)] {
        let mut raw = run_raw(rooms, size);
        let (mut sfu, received) = run_sfu(rooms, size);
        let (r50, r99, s50, s99) = (raw.pct(0.5), raw.pct(0.99), sfu.pct(0.5), sfu.pct(0.99));
        table.row(vec![
            Cell::num(size as f64, 0),
            Cell::num(rooms as f64, 0),
            Cell::num(raw.per_cpu_sec(), 0),
            Cell::num(sfu.per_cpu_sec(), 0),
            Cell::num(sfu.per_cpu_sec() / raw.per_cpu_sec().max(1.0), 2),
            Cell::num(r50 as f64, 0),
            Cell::num(r99 as f64, 0),
            Cell::num(s50 as f64, 0),
            Cell::num(s99 as f64, 0),
            Cell::num(received as f64, 0),
        ]);
    }
    table.print();
    let mut memory = Table::new(
        "Idle peer memory (offer accepted, 2 send + 10 receive m-lines, not connected; 200 peers)",
        &["", "KiB per peer", "target"],
    );
    memory.row(vec![
        Cell::text("Confer"),
        Cell::num(idle_memory(200), 0),
        Cell::text("< 200 KB"),
    ]);
    memory.print();
    vec![table, memory]
}
