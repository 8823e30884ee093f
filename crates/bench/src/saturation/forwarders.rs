//! The forwarders under test, each a loop on one UDP socket, in the thread that measures it:
//! - **Confer**: `confer_sfu::Sfu` (str0m per peer: SRTP, RTP mode, NACK buffers, RTCP), fed
//!   by the same batched shell as R1 (`recvmmsg`, every datagram of the batch handed in with
//!   one `now`, what it has to send out in one `sendmmsg`, its timers run when due);
//! - **R0**: one `recv_from` and one `send_to` per datagram, the source looked up in a table;
//! - **R1**: R0's lookup with `recvmmsg` and `sendmmsg` (copies point at the received buffer);
//! - **R2**: R1 plus the SRTP work of an SFU that terminates SRTP per hop: AES-128-GCM open
//!   once (RFC 7714: the IV from SSRC and sequence number, the header as AAD), then per
//!   subscriber a copy with SSRC, sequence number and RTP timestamp rewritten, sealed under
//!   that subscriber's key. Its trace is the same datagrams sealed under its own keys
//!   ([`Srtp::reseal`]): same headers, same lengths.
//!
//! R0, R1 and R2 know nothing of ICE, DTLS or RTCP.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use confer_sfu::{Output, Sfu};

use super::io::{self, BATCH, Receiver, SLOT, Sender};
use super::latency::Timing;
use crate::alloc_count::Allocs;

/// The largest fan-out measured (room of 6).
pub(crate) const MAX_FANOUT: usize = 5;
/// How long a blocking receive waits before looking at `stop` (and timers).
const READ_TIMEOUT: Duration = Duration::from_millis(5);
const TAG: usize = 16;

/// What a forwarder did, measured in its own thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    /// Datagrams read.
    pub(crate) received: u64,
    /// Copies forwarded (RTP packets for Confer).
    pub(crate) forwarded: u64,
    /// Bytes of every datagram sent.
    pub(crate) bytes_out: u64,
    /// Receive calls that returned datagrams.
    pub(crate) batches: u64,
    /// The thread's CPU time over the whole loop (blocked time is not CPU time).
    pub(crate) cpu: Duration,
    /// Its time runnable but waiting for its core (taken by another thread) over the loop.
    pub(crate) waited: Duration,
    /// Receive system calls (`recvmmsg`, or `recv_from` for R0), whatever they returned.
    pub(crate) recv_calls: u64,
    /// Send system calls (`sendmmsg`, or `send_to` for R0).
    pub(crate) send_calls: u64,
    /// Datagrams sent (RTP copies, and for Confer RTCP and STUN too).
    pub(crate) sent: u64,
    /// The thread's allocations over the loop (the shell's and the forwarder's).
    pub(crate) allocs: Allocs,
}

/// Who is in the room: addresses by index, and each participant's subscribers.
#[derive(Debug)]
pub(crate) struct Routes {
    index: HashMap<SocketAddrV4, usize>,
    addrs: Vec<SocketAddrV4>,
}

impl Routes {
    pub(crate) fn new(addrs: &[SocketAddrV4]) -> Self {
        Self {
            index: addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
            addrs: addrs.to_vec(),
        }
    }

    /// The other members of the sender's room (everyone else: one room per run).
    fn subscribers(&self, from: SocketAddrV4) -> Option<impl Iterator<Item = usize> + '_> {
        let i = *self.index.get(&from)?;
        Some((0..self.addrs.len()).filter(move |&j| j != i))
    }
}

// Runs `batch` on every batch received and `idle` after every read timeout, until `stop`.
// With `timing`, notes when each batch was read and when the sends it caused ended.
fn batched_loop(
    socket: &UdpSocket,
    stop: &AtomicBool,
    got: &AtomicU64,
    mut timing: Option<&mut Timing>,
    mut batch: impl FnMut(&mut Receiver, &mut Sender, &mut Counts),
    mut idle: impl FnMut(&mut Sender, &mut Counts),
) -> Counts {
    // Read timeout on a fresh socket: cannot fail for a nonzero duration.
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("a read timeout");
    let mut rx = if timing.is_some() {
        Receiver::timestamped()
    } else {
        Receiver::new()
    };
    let mut tx = Sender::new();
    tx.count_rtp = timing.is_some();
    let mut c = Counts::default();
    let (cpu0, waited0) = io::sched("/proc/thread-self/schedstat");
    let allocs0 = Allocs::now();
    while !stop.load(Ordering::Relaxed) {
        let n = rx.recv(socket, true);
        if let Some(t) = timing.as_deref_mut() {
            t.received(&rx);
        }
        let rtp0 = tx.rtp;
        if n == 0 {
            idle(&mut tx, &mut c);
        } else {
            got.fetch_add(n as u64, Ordering::Relaxed);
            c.received += n as u64;
            c.batches += 1;
            batch(&mut rx, &mut tx, &mut c);
        }
        if let Some(t) = timing.as_deref_mut() {
            t.sent(tx.rtp - rtp0);
        }
    }
    let (cpu1, waited1) = io::sched("/proc/thread-self/schedstat");
    c.cpu = cpu1 - cpu0;
    c.waited = waited1 - waited0;
    c.allocs = Allocs::since(allocs0);
    c.recv_calls = rx.calls;
    c.send_calls = tx.calls;
    c.sent = tx.datagrams;
    c
}

/// R0: one system call per datagram in and per copy out.
pub(crate) fn r0(
    socket: &UdpSocket,
    routes: &Routes,
    stop: &AtomicBool,
    got: &AtomicU64,
) -> Counts {
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("a read timeout");
    let mut buf = vec![0u8; SLOT];
    let mut c = Counts::default();
    let (cpu0, waited0) = io::sched("/proc/thread-self/schedstat");
    let allocs0 = Allocs::now();
    while !stop.load(Ordering::Relaxed) {
        c.recv_calls += 1;
        let Ok((n, SocketAddr::V4(from))) = socket.recv_from(&mut buf) else {
            continue;
        };
        got.fetch_add(1, Ordering::Relaxed);
        c.received += 1;
        c.batches += 1;
        let Some(subs) = routes.subscribers(from) else {
            continue;
        };
        for j in subs {
            c.send_calls += 1;
            if socket.send_to(&buf[..n], routes.addrs[j]).is_ok() {
                c.forwarded += 1;
                c.sent += 1;
                c.bytes_out += n as u64;
            }
        }
    }
    let (cpu1, waited1) = io::sched("/proc/thread-self/schedstat");
    c.cpu = cpu1 - cpu0;
    c.waited = waited1 - waited0;
    c.allocs = Allocs::since(allocs0);
    c
}

/// R1: R0 in batches.
pub(crate) fn r1(
    socket: &UdpSocket,
    routes: &Routes,
    stop: &AtomicBool,
    got: &AtomicU64,
) -> Counts {
    r1_timed(socket, routes, stop, got, None)
}

/// R1, timed with `timing` if given.
pub(crate) fn r1_timed(
    socket: &UdpSocket,
    routes: &Routes,
    stop: &AtomicBool,
    got: &AtomicU64,
    timing: Option<&mut Timing>,
) -> Counts {
    batched_loop(
        socket,
        stop,
        got,
        timing,
        |rx, tx, c| {
            let mut out = Vec::with_capacity(BATCH * MAX_FANOUT);
            for i in 0..rx.got.len() {
                let Some(subs) = routes.subscribers(rx.source(i)) else {
                    continue;
                };
                let d = rx.datagram(i);
                out.extend(subs.map(|j| (d, routes.addrs[j])));
            }
            let (n, bytes) = tx.send(socket, &out);
            c.forwarded += n;
            c.bytes_out += bytes;
        },
        |_, _| {},
    )
}

/// Keys and salts for R2: one inbound context per publisher, one outbound per subscriber.
pub(crate) struct Srtp {
    inbound: Vec<(LessSafeKey, [u8; 12])>,
    outbound: Vec<(LessSafeKey, [u8; 12])>,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Srtp([redacted])")
    }
}

fn key(seed: u8) -> (LessSafeKey, [u8; 12]) {
    // 16 bytes is AES-128's key length: cannot fail.
    let k = UnboundKey::new(&AES_128_GCM, &[seed; 16]).expect("a 16-byte key");
    (LessSafeKey::new(k), [seed ^ 0x5a; 12])
}

/// RFC 7714 §8.1: IV = salt XOR (00 00 || SSRC || ROC || SEQ); the ROC stays 0 here.
fn nonce(salt: &[u8; 12], header: &[u8]) -> Nonce {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&header[8..12]);
    iv[10..12].copy_from_slice(&header[2..4]);
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    Nonce::assume_unique_for_key(iv)
}

/// Length of the RTP header (fixed part, CSRCs, extension), if the datagram holds a header
/// and a tag.
fn header_len(d: &[u8]) -> Option<usize> {
    let mut h = 12 + 4 * usize::from(d.first()? & 0x0f);
    if d[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*d.get(h + 2)?, *d.get(h + 3)?]);
        h += 4 + 4 * usize::from(words);
    }
    (h + TAG <= d.len()).then_some(h)
}

impl Srtp {
    pub(crate) fn new(participants: usize) -> Self {
        Self {
            inbound: (0..participants).map(|i| key(i as u8 + 1)).collect(),
            outbound: (0..participants).map(|i| key(i as u8 + 101)).collect(),
        }
    }

    /// The trace sealed under R2's inbound keys: same headers, same lengths.
    pub(crate) fn reseal(&self, trace: &[Vec<Vec<u8>>]) -> Vec<Vec<Vec<u8>>> {
        trace
            .iter()
            .enumerate()
            .map(|(i, ds)| {
                let (k, salt) = &self.inbound[i];
                ds.iter()
                    .map(|d| {
                        let mut d = d.clone();
                        if let Some(h) = header_len(&d) {
                            let end = d.len() - TAG;
                            let (head, body) = d.split_at_mut(h);
                            if let Ok(tag) = k.seal_in_place_separate_tag(
                                nonce(salt, head),
                                Aad::from(&*head),
                                &mut body[..end - h],
                            ) {
                                body[end - h..].copy_from_slice(tag.as_ref());
                            }
                        }
                        d
                    })
                    .collect()
            })
            .collect()
    }
}

/// R2: R1 with SRTP opened once and sealed per subscriber.
pub(crate) fn r2(
    socket: &UdpSocket,
    routes: &Routes,
    srtp: &Srtp,
    stop: &AtomicBool,
    got: &AtomicU64,
) -> Counts {
    let mut scratch = vec![0u8; SLOT];
    let mut outbufs = vec![0u8; BATCH * MAX_FANOUT * SLOT];
    let mut lens: Vec<(usize, SocketAddrV4)> = Vec::with_capacity(BATCH * MAX_FANOUT);
    batched_loop(
        socket,
        stop,
        got,
        None,
        |rx, tx, c| {
            lens.clear();
            let mut slots = outbufs.chunks_mut(SLOT);
            for i in 0..rx.got.len() {
                let from = rx.source(i);
                let (Some(&p), Some(h)) = (routes.index.get(&from), header_len(rx.datagram(i)))
                else {
                    continue;
                };
                let d = rx.datagram(i);
                let len = d.len();
                scratch[..len].copy_from_slice(d);
                let (head, body) = scratch[..len].split_at_mut(h);
                let (key_in, salt_in) = &srtp.inbound[p];
                let Ok(plain) = key_in.open_in_place(nonce(salt_in, head), Aad::from(&*head), body)
                else {
                    continue;
                };
                let plain_len = plain.len();
                for j in (0..routes.addrs.len()).filter(|&j| j != p) {
                    let Some(out) = slots.next() else { break };
                    out[..h].copy_from_slice(head);
                    rewrite(&mut out[..h], j);
                    out[h..h + plain_len].copy_from_slice(&body[..plain_len]);
                    let (key_out, salt_out) = &srtp.outbound[j];
                    let (oh, ob) = out.split_at_mut(h);
                    let sealed: Result<Tag, _> = key_out.seal_in_place_separate_tag(
                        nonce(salt_out, oh),
                        Aad::from(&*oh),
                        &mut ob[..plain_len],
                    );
                    let Ok(tag) = sealed else { continue };
                    ob[plain_len..plain_len + TAG].copy_from_slice(tag.as_ref());
                    lens.push((h + plain_len + TAG, routes.addrs[j]));
                }
            }
            let out: Vec<(&[u8], SocketAddrV4)> = outbufs
                .chunks(SLOT)
                .zip(&lens)
                .map(|(b, (len, a))| (&b[..*len], *a))
                .collect();
            let (n, bytes) = tx.send(socket, &out);
            c.forwarded += n;
            c.bytes_out += bytes;
        },
        |_, _| {},
    )
}

/// The per-subscriber header rewrite: SSRC, sequence number and timestamp of subscriber `j`'s
/// slot (fixed offsets here; an SFU keeps them per slot).
fn rewrite(header: &mut [u8], j: usize) {
    let j = j as u32 + 1;
    let seq = u16::from_be_bytes([header[2], header[3]]).wrapping_add(j as u16 * 1000);
    header[2..4].copy_from_slice(&seq.to_be_bytes());
    let ts =
        u32::from_be_bytes([header[4], header[5], header[6], header[7]]).wrapping_add(j * 90_000);
    header[4..8].copy_from_slice(&ts.to_be_bytes());
    let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) ^ (j << 24);
    header[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Confer's SFU in R1's shell.
pub(crate) fn confer(
    socket: &UdpSocket,
    local: SocketAddrV4,
    sfu: &mut Sfu,
    stop: &AtomicBool,
    got: &AtomicU64,
) -> Counts {
    confer_timed(socket, local, sfu, stop, got, None)
}

/// [`confer`], timed with `timing` if given.
pub(crate) fn confer_timed(
    socket: &UdpSocket,
    local: SocketAddrV4,
    sfu: &mut Sfu,
    stop: &AtomicBool,
    got: &AtomicU64,
    timing: Option<&mut Timing>,
) -> Counts {
    let local = SocketAddr::V4(local);
    let forwarded0 = sfu.stats().forwarded_packets;
    let sfu = std::cell::RefCell::new(sfu);
    let due = std::cell::Cell::new(Instant::now());
    // Everything the SFU has to send now (timers that are due run first), in one `sendmmsg`.
    let flush = |sfu: &mut Sfu, tx: &mut Sender, c: &mut Counts, now: Instant| {
        let mut out: Vec<(Vec<u8>, SocketAddrV4)> = Vec::new();
        // A timer due now may produce output that sets another due now: a few rounds at most.
        let mut rounds = 0;
        loop {
            match sfu.poll_output() {
                Output::Transmit {
                    destination: SocketAddr::V4(d),
                    contents,
                } => out.push((contents, d)),
                Output::Timeout(t) if t <= now && rounds < 4 => {
                    rounds += 1;
                    sfu.handle_timeout(now);
                }
                Output::Timeout(t) => {
                    due.set(t);
                    break;
                }
                _ => {}
            }
        }
        let refs: Vec<(&[u8], SocketAddrV4)> =
            out.iter().map(|(d, a)| (d.as_slice(), *a)).collect();
        let (_, bytes) = tx.send(socket, &refs);
        c.bytes_out += bytes;
    };
    let mut counts = batched_loop(
        socket,
        stop,
        got,
        timing,
        |rx, tx, c| {
            let now = Instant::now();
            let mut s = sfu.borrow_mut();
            for i in 0..rx.got.len() {
                s.handle_datagram(now, SocketAddr::V4(rx.source(i)), local, rx.datagram(i));
            }
            flush(&mut s, tx, c, now);
        },
        |tx, c| {
            let now = Instant::now();
            if now >= due.get() {
                let mut s = sfu.borrow_mut();
                s.handle_timeout(now);
                flush(&mut s, tx, c, now);
            }
        },
    );
    counts.forwarded = sfu.borrow().stats().forwarded_packets - forwarded0;
    counts
}
