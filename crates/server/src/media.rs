//! The media thread: one UDP socket, the sans-IO [`confer_sfu::Sfu`], and the glue to
//! signalling (offers, slot announcements, routing from every session's room).
//!
//! An OS thread of its own, out of tokio: it waits in `poll` on the socket and on a wake-up
//! pipe (commands from the session tasks), takes datagrams in batches (`recvmmsg`, one `now`
//! per batch), hands the whole batch to the SFU, then sends everything the SFU has to send in
//! one `sendmmsg`, so a subscriber gets one flush per batch, not one per datagram. Counters
//! are plain integers; after each batch the thread copies them into [`MediaMetrics`]
//! (relaxed atomic stores, no registry), which `/metrics` reads when it is scraped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use confer_proto::{ChannelId, MediaSlot, ParticipantId, ServerMessage};
use confer_room::RoutingTable;
use confer_sfu::forward::{DropReason, Routing};
use confer_sfu::{Output, Sfu, SfuConfig, SfuStats};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::conn::Conn;
use crate::messages::{MediaCmd, MediaHandle, MediaShard, OfferRefused};
use crate::udp_batch::{Receiver, Sender};

/// The media thread's counters as `/metrics` shows them: written by the thread after each
/// batch, read when the page is scraped. Per server (tests run several in one process).
#[derive(Debug, Default)]
pub(crate) struct MediaMetrics {
    peers: AtomicU64,
    forwarded_packets: AtomicU64,
    forwarded_bytes: AtomicU64,
    keyframe_requests: AtomicU64,
    receive_calls: AtomicU64,
    datagrams_received: AtomicU64,
    send_calls: AtomicU64,
    datagrams_sent: AtomicU64,
    send_drops: AtomicU64,
    /// By `DropReason::ALL`'s order.
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl MediaMetrics {
    fn publish(&self, c: &Counters, s: &SfuStats, peers: usize) {
        self.peers.store(peers as u64, Relaxed);
        self.forwarded_packets.store(s.forwarded_packets, Relaxed);
        self.forwarded_bytes.store(s.forwarded_bytes, Relaxed);
        self.keyframe_requests.store(s.keyframe_requests, Relaxed);
        self.receive_calls.store(c.receive_calls, Relaxed);
        self.datagrams_received.store(c.datagrams_in, Relaxed);
        self.send_calls.store(c.send_calls, Relaxed);
        self.datagrams_sent.store(c.datagrams_out, Relaxed);
        self.send_drops.store(c.send_dropped, Relaxed);
        for (slot, reason) in self.drops.iter().zip(DropReason::ALL) {
            slot.store(s.drops.get(reason.as_str()).copied().unwrap_or(0), Relaxed);
        }
    }
}

/// One counter of a shard's.
type Field = fn(&MediaMetrics) -> &AtomicU64;

/// The Prometheus text of every shard's counters, summed (appended to the registry's page).
pub(crate) fn render(shards: &[Arc<MediaMetrics>]) -> String {
    let sum = |f: Field| -> u64 { shards.iter().map(|m| f(m).load(Relaxed)).sum() };
    let mut out = String::new();
    let lines: [(&str, &str, Field); 9] = [
        ("confer_media_peers", "gauge", |m| &m.peers),
        ("confer_media_forwarded_packets_total", "counter", |m| {
            &m.forwarded_packets
        }),
        ("confer_media_forwarded_bytes_total", "counter", |m| {
            &m.forwarded_bytes
        }),
        ("confer_media_keyframe_requests_total", "counter", |m| {
            &m.keyframe_requests
        }),
        ("confer_media_receive_calls_total", "counter", |m| {
            &m.receive_calls
        }),
        ("confer_media_datagrams_received_total", "counter", |m| {
            &m.datagrams_received
        }),
        ("confer_media_send_calls_total", "counter", |m| {
            &m.send_calls
        }),
        ("confer_media_datagrams_sent_total", "counter", |m| {
            &m.datagrams_sent
        }),
        ("confer_media_send_drops_total", "counter", |m| {
            &m.send_drops
        }),
    ];
    for (name, kind, f) in lines {
        let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {}", sum(f));
    }
    let _ = writeln!(out, "# TYPE confer_media_drops_total counter");
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        let n: u64 = shards.iter().map(|m| m.drops[i].load(Relaxed)).sum();
        let _ = writeln!(
            out,
            "confer_media_drops_total{{reason=\"{}\"}} {n}",
            reason.as_str()
        );
    }
    out
}

/// The running media shards.
#[derive(Debug)]
pub(crate) struct Media {
    pub(crate) handle: MediaHandle,
    /// Each shard's bound address, in shard order.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) metrics: Vec<Arc<MediaMetrics>>,
}

/// The most shards a server runs.
pub(crate) const MAX_SHARDS: usize = 64;

/// Binds one UDP port per shard (`listen`'s port + i, or any free port when it is 0) and
/// starts one thread each; shard i announces `public`'s port + i (or its bound address).
/// The error names the address that failed.
pub(crate) async fn start(
    listen: SocketAddr,
    public: Option<SocketAddr>,
    shards: usize,
) -> Result<Media, (SocketAddr, std::io::Error)> {
    let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_owned());
    if !(1..=MAX_SHARDS).contains(&shards) {
        return Err((listen, invalid("media_shards must be 1 to 64")));
    }
    let nth = |a: SocketAddr, i: usize| -> Option<SocketAddr> {
        if a.port() == 0 {
            return Some(a);
        }
        let port = u16::try_from(usize::from(a.port()) + i).ok()?;
        Some(SocketAddr::new(a.ip(), port))
    };
    let mut media = Media {
        handle: MediaHandle {
            shards: Vec::new().into(),
        },
        addrs: Vec::new(),
        metrics: Vec::new(),
    };
    // Every address first, so nothing is bound when one is out of range.
    let mut addrs = Vec::new();
    for i in 0..shards {
        let Some(listen_i) = nth(listen, i) else {
            return Err((
                listen,
                invalid("media_listen's port + media_shards passes 65535"),
            ));
        };
        let public_i = match public {
            Some(p) => Some(nth(p, i).ok_or_else(|| {
                (
                    p,
                    invalid("media_public_addr's port + media_shards passes 65535"),
                )
            })?),
            None => None,
        };
        addrs.push((listen_i, public_i));
    }
    let mut inboxes = Vec::new();
    for (i, (listen_i, public_i)) in addrs.into_iter().enumerate() {
        let (shard, local, metrics) =
            start_shard(i, listen_i, public_i).map_err(|e| (listen_i, e))?;
        inboxes.push(shard);
        media.addrs.push(local);
        media.metrics.push(metrics);
    }
    media.handle.shards = inboxes.into();
    Ok(media)
}

fn start_shard(
    i: usize,
    listen: SocketAddr,
    public: Option<SocketAddr>,
) -> std::io::Result<(MediaShard, SocketAddr, Arc<MediaMetrics>)> {
    let socket = UdpSocket::bind(listen)?;
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    let public = public.unwrap_or(local);
    if public.ip().is_unspecified() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the SFU listens on a wildcard address; set media_public_addr to the address clients reach it at",
        ));
    }
    let (wake_tx, wake_rx) = UnixStream::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let sfu = Sfu::new(SfuConfig::new(public), Instant::now());
    let metrics = Arc::new(MediaMetrics::default());
    let shared = metrics.clone();
    std::thread::Builder::new()
        .name(format!("confer-media-{i}"))
        .spawn(move || MediaLoop::new(socket, public, sfu, rx, wake_rx, shared).run())?;
    Ok((
        MediaShard {
            tx,
            wake: Some(wake_tx),
        },
        local,
        metrics,
    ))
}

// Channel names repeat across sessions ("joint"): the SFU sees them qualified by session.
fn merged(tables: &BTreeMap<u64, RoutingTable>) -> Routing {
    let mut all = BTreeMap::new();
    for (s, t) in tables {
        for (ch, members) in t {
            if let Ok(id) = ChannelId::new(format!("s{s}-{}", ch.as_str())) {
                all.insert(id, members.clone());
            }
        }
    }
    Routing::new(all)
}

// `public` is the destination str0m's ICE expects: the one candidate it announced, even when a
// NAT translates it to the bound address.
struct MediaLoop {
    socket: UdpSocket,
    public: SocketAddr,
    sfu: Sfu,
    rx: mpsc::UnboundedReceiver<MediaCmd>,
    wake: UnixStream,
    conns: HashMap<ParticipantId, Conn>,
    tables: BTreeMap<u64, RoutingTable>,
    receiver: Receiver,
    sender: Sender,
    /// What the SFU has to send, reused from flush to flush.
    out: Vec<(Vec<u8>, SocketAddr)>,
    counters: Counters,
    metrics: Arc<MediaMetrics>,
}

/// The thread's own counters, exported once a second.
#[derive(Debug, Default, Clone)]
struct Counters {
    receive_calls: u64,
    datagrams_in: u64,
    send_calls: u64,
    datagrams_out: u64,
    send_dropped: u64,
}

impl MediaLoop {
    fn new(
        socket: UdpSocket,
        public: SocketAddr,
        sfu: Sfu,
        rx: mpsc::UnboundedReceiver<MediaCmd>,
        wake: UnixStream,
        metrics: Arc<MediaMetrics>,
    ) -> Self {
        Self {
            socket,
            public,
            sfu,
            rx,
            wake,
            conns: HashMap::new(),
            tables: BTreeMap::new(),
            receiver: Receiver::default(),
            sender: Sender::default(),
            out: Vec::new(),
            counters: Counters::default(),
            metrics,
        }
    }

    fn run(mut self) {
        loop {
            // Commands first: a routing change applies before the next datagram.
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                    // Every handle is gone: the server is shutting down.
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let wake_at = self.flush();
            self.metrics
                .publish(&self.counters, self.sfu.stats(), self.conns.len());
            let now = Instant::now();
            let (socket_ready, woken) = self.wait(wake_at.saturating_duration_since(now));
            if woken && !self.drain_wake() {
                // The last handle was dropped; what it queued was read above.
                while let Ok(cmd) = self.rx.try_recv() {
                    self.command(cmd);
                }
                return;
            }
            if socket_ready {
                let n = self.receiver.recv(&self.socket);
                self.counters.receive_calls += 1;
                self.counters.datagrams_in += n as u64;
                // One `now` for the batch.
                let now = Instant::now();
                for (from, datagram) in self.receiver.datagrams() {
                    self.sfu.handle_datagram(now, from, self.public, datagram);
                }
            }
            let now = Instant::now();
            if now >= wake_at {
                self.sfu.handle_timeout(now);
            }
        }
    }

    // Waits up to `timeout` for a datagram or a wake-up: (datagrams ready, woken).
    fn wait(&self, timeout: Duration) -> (bool, bool) {
        // Rounded up to the millisecond: never wake before the SFU's timer.
        let ms = timeout.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, timeout).is_err() {
            // EINTR: go round again.
            return (false, false);
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        (ready(&fds[0]), ready(&fds[1]))
    }

    // Reads the wake-up bytes; false when the other end is closed (every handle dropped).
    fn drain_wake(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.wake.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    // Everything the SFU has to do now, its datagrams in one `sendmmsg`; when to wake next.
    fn flush(&mut self) -> Instant {
        self.out.clear();
        let wake = loop {
            match self.sfu.poll_output() {
                Output::Timeout(t) => break t,
                Output::Transmit {
                    destination,
                    contents,
                } => self.out.push((contents, destination)),
                Output::Slots { participant, slots } => {
                    if let Some(c) = self.conns.get(&participant) {
                        c.send_msg(&ServerMessage::MediaSlots {
                            slots: to_wire(slots),
                        });
                    }
                }
                Output::PeerGone(p) => {
                    self.conns.remove(&p);
                }
            }
        };
        if !self.out.is_empty() {
            let sent = self.sender.send(&self.socket, &self.out);
            self.counters.send_calls += sent.calls;
            self.counters.datagrams_out += sent.datagrams;
            self.counters.send_dropped += sent.dropped;
        }
        wake
    }

    fn command(&mut self, cmd: MediaCmd) {
        let now = Instant::now();
        match cmd {
            MediaCmd::Offer {
                pid,
                sdp,
                conn,
                reply,
            } => {
                let r = self
                    .sfu
                    .accept_offer(pid.clone(), &sdp, now)
                    .map_err(|e| OfferRefused::Sdp(e.to_string()));
                if r.is_ok() {
                    self.conns.insert(pid, conn);
                }
                let _ = reply.send(r);
            }
            MediaCmd::Routing { session, table } => {
                let members = |t: Option<&RoutingTable>| -> Vec<ParticipantId> {
                    t.map(|t| t.values().flatten().cloned().collect())
                        .unwrap_or_default()
                };
                let before = members(self.tables.get(&session));
                if table.is_empty() {
                    self.tables.remove(&session);
                } else {
                    self.tables.insert(session, table);
                }
                // Whoever left the session loses its peer at once.
                let still = members(self.tables.get(&session));
                for p in before.iter().filter(|p| !still.contains(p)) {
                    self.sfu.remove_peer(p);
                    self.conns.remove(p);
                }
                // Only this session's peers can have changed slots.
                let mut changed = before;
                changed.extend(still);
                self.sfu
                    .set_routing_for(merged(&self.tables), &changed, now);
            }
            MediaCmd::Keyframe {
                subscriber,
                publisher,
            } => self.sfu.request_keyframe(&subscriber, &publisher, now),
            MediaCmd::Gone { pid } => {
                self.sfu.remove_peer(&pid);
                self.conns.remove(&pid);
            }
            MediaCmd::Reconnected { pid, conn } => {
                if let Some(c) = self.conns.get_mut(&pid) {
                    // Announcements made while it was away went to the old connection.
                    if let Some(slots) = self.sfu.slots_of(&pid) {
                        conn.send_msg(&ServerMessage::MediaSlots {
                            slots: to_wire(slots),
                        });
                    }
                    *c = conn;
                }
            }
        }
    }
}

fn to_wire(slots: Vec<confer_sfu::SlotView>) -> Vec<MediaSlot> {
    slots
        .into_iter()
        .map(|s| MediaSlot {
            mid: s.mid,
            kind: if s.video { "video" } else { "audio" }.into(),
            participant_id: s.publisher,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The thread answers commands, and stops (closing its socket) when the last handle goes.
    #[tokio::test]
    async fn the_thread_answers_and_stops_with_its_last_handle() {
        let m = start("127.0.0.1:0".parse().unwrap(), None, 1)
            .await
            .unwrap();
        let (handle, addr) = (m.handle, m.addrs[0]);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let conn = Conn {
            id: 1,
            tx,
            shutdown: Arc::default(),
        };
        handle
            .send(
                7,
                MediaCmd::Offer {
                    pid: ParticipantId::new("p1").unwrap(),
                    sdp: "not sdp".into(),
                    conn,
                    reply,
                },
            )
            .unwrap();
        assert!(matches!(answer.await.unwrap(), Err(OfferRefused::Sdp(_))));
        assert!(render(&m.metrics).contains("confer_media_peers 0\n"));
        assert!(render(&m.metrics).contains("confer_media_drops_total{reason=\"no_slot\"} 0\n"));
        // While the thread runs, the port is taken.
        assert!(UdpSocket::bind(addr).is_err());
        let copy = handle.clone();
        drop(handle);
        assert!(UdpSocket::bind(addr).is_err(), "a handle is left");
        drop(copy);
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(addr).is_err() {
            assert!(Instant::now() < deadline, "the media thread did not stop");
            tokio::task::yield_now().await;
        }
    }

    /// Shards take consecutive ports from the configured one, and announce consecutive
    /// public ports; a count out of range or past the last port is refused with a reason.
    #[tokio::test]
    async fn shards_take_consecutive_ports() {
        let free = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // Any free port whose next two are free too: retry a few.
        let mut started = None;
        for base in (free.port()..free.port().saturating_add(300)).step_by(7) {
            let listen = SocketAddr::new(free.ip(), base);
            let public = SocketAddr::new("192.0.2.7".parse().unwrap(), 40_000);
            if let Ok(m) = start(listen, Some(public), 3).await {
                started = Some((m, base));
                break;
            }
        }
        let (m, base) = started.expect("three consecutive free ports");
        assert_eq!(
            m.addrs.iter().map(SocketAddr::port).collect::<Vec<_>>(),
            vec![base, base + 1, base + 2]
        );
        assert_eq!(m.handle.shards.len(), 3);
        // A session's offer goes to its shard (generation modulo 3), whose answer announces
        // that shard's public port.
        for (session, port) in [(3u64, "40000"), (4, "40001"), (5, "40002")] {
            let offer = confer_testkit::media::ClientOffer::new(
                "127.0.0.1:50000".parse().unwrap(),
                1,
                Instant::now(),
            );
            let (reply, answer) = tokio::sync::oneshot::channel();
            let (tx, _rx) = tokio::sync::mpsc::channel(1);
            let conn = Conn {
                id: session,
                tx,
                shutdown: Arc::default(),
            };
            m.handle
                .send(
                    session,
                    MediaCmd::Offer {
                        pid: ParticipantId::new(format!("p{session}")).unwrap(),
                        sdp: offer.offer.to_sdp_string(),
                        conn,
                        reply,
                    },
                )
                .unwrap();
            let sdp = answer.await.unwrap().unwrap();
            let candidate = sdp.lines().find(|l| l.starts_with("a=candidate")).unwrap();
            assert!(
                candidate.contains(&format!("192.0.2.7 {port} ")),
                "session {session}: {candidate}"
            );
        }
        // Published by each thread after it handled the offer (the answer may come first).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !render(&m.metrics).contains("confer_media_peers 3\n") {
            assert!(
                Instant::now() < deadline,
                "summed over shards: {}",
                render(&m.metrics)
            );
            tokio::task::yield_now().await;
        }
        let (e_addr, e) = start("127.0.0.1:0".parse().unwrap(), None, 0)
            .await
            .unwrap_err();
        assert_eq!(e_addr.port(), 0);
        assert!(e.to_string().contains("media_shards must be 1 to 64"));
        let (_, e) = start("127.0.0.1:65535".parse().unwrap(), None, 2)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("passes 65535"), "{e}");
    }
}
