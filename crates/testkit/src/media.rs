//! An SFU and str0m client peers on a simulated network, in virtual time: seeded loss and
//! latency per datagram, no sockets, no sleeping. A 10-second call runs in milliseconds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use confer_proto::{ChannelId, ParticipantId};
use confer_sfu::forward::Routing;
use confer_sfu::{Output, Sfu, SfuConfig, SlotView};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

use crate::VirtualClock;

/// A deterministic RNG for loss decisions (xorshift64*).
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// From a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A client peer: its own camera and microphone, and receive slots.
pub struct MediaClient {
    /// Its participant id.
    pub pid: ParticipantId,
    /// Its str0m instance (frame mode: str0m packetizes what it publishes).
    pub rtc: Rtc,
    addr: SocketAddr,
    /// Its send m-lines: (audio, video).
    pub send: (Mid, Mid),
    /// Every frame received: (slot mid, payload).
    pub received: Vec<(Mid, Vec<u8>)>,
    /// The RTP time of each frame received, in its clock's ticks (90 kHz video, 48 kHz audio).
    pub received_times: Vec<(Mid, u64)>,
    /// Added to the RTP time of every frame this client publishes: each real sender's RTP clock
    /// starts at a random point.
    pub clock_offset: u64,
    /// Keyframe requests that reached this client as a publisher.
    pub keyframe_requests: u64,
    /// The SFU's latest slot announcement for it.
    pub slots: Vec<SlotView>,
    timeout: Instant,
    /// Gone without a word (a laptop lid closed, a network lost): sends and receives nothing.
    vanished: bool,
}

impl std::fmt::Debug for MediaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaClient")
            .field("received", &self.received.len())
            .finish()
    }
}

impl MediaClient {
    /// Frames received in slots that the SFU says carry `publisher`.
    pub fn frames_from(&self, publisher: &ParticipantId) -> Vec<&[u8]> {
        self.received
            .iter()
            .filter(|(mid, _)| {
                self.slots
                    .iter()
                    .any(|s| s.mid == mid.to_string() && s.publisher.as_ref() == Some(publisher))
            })
            .map(|(_, d)| d.as_slice())
            .collect()
    }
}

struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    contents: Vec<u8>,
}

/// A str0m client peer as the SFU expects one: Opus and VP8, one host candidate, a microphone
/// and a camera it sends, and `slots` receive slots of each kind; its offer made, not yet
/// answered.
pub struct ClientOffer {
    /// The peer.
    pub rtc: Rtc,
    /// Its offer, for `Sfu::accept_offer`.
    pub offer: SdpOffer,
    /// What `accept_answer` needs.
    pub pending: SdpPendingOffer,
    /// Its microphone's m-line.
    pub audio: Mid,
    /// Its camera's m-line.
    pub video: Mid,
}

impl std::fmt::Debug for ClientOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOffer")
            .field("audio", &self.audio)
            .field("video", &self.video)
            .finish()
    }
}

impl ClientOffer {
    /// A peer at `addr`.
    pub fn new(addr: SocketAddr, slots: usize, now: Instant) -> Self {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        for _ in 0..slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().expect("an offer");
        Self {
            rtc,
            offer,
            pending,
            audio,
            video,
        }
    }
}

/// The simulated network.
pub struct MediaNet {
    /// The clock.
    pub clock: VirtualClock,
    /// The SFU under test.
    pub sfu: Sfu,
    sfu_addr: SocketAddr,
    /// The clients.
    pub clients: Vec<MediaClient>,
    in_flight: BinaryHeap<(Reverse<Instant>, u64, usize)>,
    packets: BTreeMap<usize, Packet>,
    next_packet: usize,
    rng: SeededRng,
    /// Probability that a datagram is lost, each way.
    pub loss: f64,
    /// One-way latency.
    pub latency: Duration,
    /// Peers the SFU reported gone.
    pub gone: Vec<ParticipantId>,
    /// Datagrams dropped by the simulated network.
    pub lost: u64,
}

impl std::fmt::Debug for MediaNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaNet")
            .field("clients", &self.clients.len())
            .finish()
    }
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, last), port))
}

impl MediaNet {
    /// An SFU at 10.0.0.1:7882 on a network with this loss and latency.
    pub fn new(seed: u64, loss: f64, latency: Duration) -> Self {
        let clock = VirtualClock::new();
        let sfu_addr = addr(1, 7882);
        Self {
            sfu: Sfu::new(SfuConfig::new(sfu_addr), clock.now()),
            clock,
            sfu_addr,
            clients: Vec::new(),
            in_flight: BinaryHeap::new(),
            packets: BTreeMap::new(),
            next_packet: 0,
            rng: SeededRng::new(seed),
            loss,
            latency,
            gone: Vec::new(),
            lost: 0,
        }
    }

    /// Adds a client that publishes audio and video and has `slots` receive slots of each kind;
    /// returns its index.
    pub fn add_client(&mut self, pid: &str, slots: usize) -> usize {
        let now = self.clock.now();
        let i = self.clients.len();
        let a = addr(10 + i as u8, 5000);
        let ClientOffer {
            mut rtc,
            offer,
            pending,
            audio,
            video,
        } = ClientOffer::new(a, slots, now);
        let pid = ParticipantId::new(pid).expect("id");
        let answer = self
            .sfu
            .accept_offer(pid.clone(), &offer.to_sdp_string(), now)
            .expect("the SFU answers");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        self.clients.push(MediaClient {
            pid,
            rtc,
            addr: a,
            send: (audio, video),
            received: Vec::new(),
            received_times: Vec::new(),
            clock_offset: 0,
            keyframe_requests: 0,
            slots: Vec::new(),
            timeout: now,
            vanished: false,
        });
        self.drain();
        i
    }

    /// Sets the routing table: `[("joint", ["m", "a"]), ...]`.
    pub fn route(&mut self, table: &[(&str, &[&str])]) {
        let t = table
            .iter()
            .map(|(c, ms)| {
                (
                    ChannelId::new(*c).expect("id"),
                    ms.iter()
                        .map(|m| ParticipantId::new(*m).expect("id"))
                        .collect(),
                )
            })
            .collect();
        self.sfu.set_routing(Routing::new(t), self.clock.now());
        self.drain();
    }

    /// Publishes one frame from client `i` (video or audio).
    pub fn publish(&mut self, i: usize, video: bool, frame: &[u8]) {
        let now = self.clock.now();
        let c = &mut self.clients[i];
        let mid = if video { c.send.1 } else { c.send.0 };
        let codec = if video { Codec::Vp8 } else { Codec::Opus };
        let elapsed = self.clock.elapsed();
        let Some(w) = c.rtc.writer(mid) else { return };
        let Some(pt) = w
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return;
        };
        let rate = if video { 90_000 } else { 48_000 };
        let time = MediaTime::from_micros(elapsed.as_micros() as u64)
            .rebase(str0m::media::Frequency::new(rate).expect("rate"));
        let time = MediaTime::new(time.numer() + c.clock_offset, time.frequency());
        let _ = w.write(pt, now, time, frame.to_vec());
        self.drain();
    }

    /// Client `i` asks for a keyframe in its slot `mid`.
    pub fn request_keyframe(&mut self, i: usize, mid: Mid) {
        if let Some(rx) = self.clients[i].rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        self.drain();
    }

    /// Client `i` disappears mid-stream: from now on nothing reaches it and it sends nothing,
    /// not even a goodbye.
    pub fn vanish(&mut self, i: usize) {
        self.clients[i].vanished = true;
    }

    /// Whether every client's ICE and DTLS are up.
    pub fn all_connected(&self) -> bool {
        self.clients.iter().all(|c| c.rtc.is_connected())
    }

    /// Runs the network for `d` of virtual time.
    pub fn run(&mut self, d: Duration) {
        let end = self.clock.now() + d;
        loop {
            let sfu_timeout = match self.sfu.poll_output() {
                Output::Timeout(t) => t,
                other => {
                    self.apply_sfu(other);
                    continue;
                }
            };
            let mut next = sfu_timeout.min(end);
            for c in self.clients.iter().filter(|c| !c.vanished) {
                next = next.min(c.timeout);
            }
            if let Some((Reverse(t), _, _)) = self.in_flight.peek() {
                next = next.min(*t);
            }
            let now = next.max(self.clock.now());
            if now > self.clock.now() {
                self.clock.advance(now - self.clock.now());
            }
            // Deliver what is due.
            while let Some((Reverse(t), _, id)) = self.in_flight.peek().copied() {
                if t > now {
                    break;
                }
                self.in_flight.pop();
                let Some(p) = self.packets.remove(&id) else {
                    continue;
                };
                self.deliver(p, now);
            }
            if sfu_timeout <= now {
                self.sfu.handle_timeout(now);
            }
            for c in self.clients.iter_mut().filter(|c| !c.vanished) {
                if c.timeout <= now {
                    let _ = c.rtc.handle_input(Input::Timeout(now));
                }
            }
            self.drain();
            if now >= end {
                break;
            }
        }
    }

    /// Runs until every client is connected (or 10 s of virtual time).
    pub fn connect(&mut self) {
        for _ in 0..1000 {
            if self.all_connected() {
                return;
            }
            self.run(Duration::from_millis(10));
        }
        panic!("peers did not connect within 10 s of virtual time");
    }

    fn deliver(&mut self, p: Packet, now: Instant) {
        if p.to == self.sfu_addr {
            self.sfu.handle_datagram(now, p.from, p.to, &p.contents);
            return;
        }
        let Some(c) = self
            .clients
            .iter_mut()
            .find(|c| c.addr == p.to && !c.vanished)
        else {
            return;
        };
        let Ok(contents) = p.contents.as_slice().try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: p.from,
                destination: p.to,
                contents,
            },
        );
        let _ = c.rtc.handle_input(input);
    }

    /// Sends a raw datagram to the SFU (bad-input tests).
    pub fn inject(&mut self, from: SocketAddr, contents: Vec<u8>) {
        let to = self.sfu_addr;
        self.send(from, to, contents);
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, contents: Vec<u8>) {
        if self.rng.next_f64() < self.loss {
            self.lost += 1;
            return;
        }
        let id = self.next_packet;
        self.next_packet += 1;
        self.packets.insert(id, Packet { from, to, contents });
        self.in_flight
            .push((Reverse(self.clock.now() + self.latency), id as u64, id));
    }

    fn apply_sfu(&mut self, o: Output) {
        match o {
            Output::Transmit {
                destination,
                contents,
            } => {
                let from = self.sfu_addr;
                self.send(from, destination, contents);
            }
            Output::Slots { participant, slots } => {
                if let Some(c) = self.clients.iter_mut().find(|c| c.pid == participant) {
                    c.slots = slots;
                }
            }
            Output::PeerGone(p) => self.gone.push(p),
            Output::Timeout(_) => {}
        }
    }

    // Drains every client's outputs (the SFU's are drained by `run`).
    fn drain(&mut self) {
        let mut sends = Vec::new();
        for c in self.clients.iter_mut().filter(|c| !c.vanished) {
            loop {
                match c.rtc.poll_output() {
                    Ok(RtcOutput::Timeout(t)) => {
                        c.timeout = t;
                        break;
                    }
                    Ok(RtcOutput::Transmit(t)) => {
                        sends.push((c.addr, t.destination, t.contents.to_vec()))
                    }
                    Ok(RtcOutput::Event(Event::MediaData(m))) => {
                        c.received_times.push((m.mid, m.time.numer()));
                        c.received.push((m.mid, m.data.to_vec()))
                    }
                    Ok(RtcOutput::Event(Event::KeyframeRequest(_))) => c.keyframe_requests += 1,
                    Ok(RtcOutput::Event(_)) => {}
                    Err(_) => break,
                }
            }
        }
        for (from, to, contents) in sends {
            self.send(from, to, contents);
        }
        loop {
            let o = self.sfu.poll_output();
            if matches!(o, Output::Timeout(_)) {
                break;
            }
            self.apply_sfu(o);
        }
    }
}
