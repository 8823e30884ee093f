//! The SFU state machine.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_proto::ParticipantId;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc};

use crate::forward::{self, DropReason, KeyframeThrottle, Routing};

/// SFU settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SfuConfig {
    /// The address peers send media to (advertised as the one ICE candidate).
    pub public_addr: SocketAddr,
    /// At most one keyframe request per publisher track per this interval.
    pub keyframe_interval: Duration,
}

impl SfuConfig {
    /// Defaults for this public address.
    pub fn new(public_addr: SocketAddr) -> Self {
        Self {
            public_addr,
            keyframe_interval: Duration::from_millis(500),
        }
    }
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuError {
    /// The SDP does not parse.
    BadSdp(String),
    /// The offer parses but cannot be answered (no usable media, no ICE credentials, ...).
    Refused(String),
}

impl std::fmt::Display for SfuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SfuError::BadSdp(e) => write!(f, "the SDP offer does not parse: {e}"),
            SfuError::Refused(e) => write!(f, "the SDP offer cannot be answered: {e}"),
        }
    }
}

impl std::error::Error for SfuError {}

/// Which publisher a subscriber's receive slot carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotView {
    /// The subscriber's m-line.
    pub mid: String,
    /// Audio or video.
    pub video: bool,
    /// The publisher now in it, if any.
    pub publisher: Option<ParticipantId>,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram from the media socket.
    Transmit {
        /// Where to.
        destination: SocketAddr,
        /// The bytes.
        contents: Vec<u8>,
    },
    /// Tell a subscriber (over signalling) who is in which of its receive slots.
    Slots {
        /// The subscriber.
        participant: ParticipantId,
        /// Its slots.
        slots: Vec<SlotView>,
    },
    /// A peer is gone (ICE failed, closed, or its state broke).
    PeerGone(ParticipantId),
    /// Nothing to do until then.
    Timeout(Instant),
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct SfuStats {
    /// RTP packets forwarded (one per subscriber copy).
    pub forwarded_packets: u64,
    /// Payload bytes forwarded.
    pub forwarded_bytes: u64,
    /// Packets or datagrams dropped, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Keyframe requests passed to publishers.
    pub keyframe_requests: u64,
    /// Keyframe requests swallowed by the throttle.
    pub keyframe_requests_throttled: u64,
    /// Datagrams neither the address map nor the ICE user-fragment map placed, so every peer
    /// was asked (none, for well-behaved peers; junk and strangers land here). A STUN message
    /// naming a user fragment no peer has is dropped without asking anyone.
    pub demux_scans: u64,
    /// Times a peer's str0m was polled for output (work per input: an input should drain the
    /// peers it touched, not every peer).
    pub peer_drains: u64,
    /// Times a subscriber's slots were recomputed (a routing change recomputes the peers of
    /// the session that changed, not every peer).
    pub slot_recomputes: u64,
}

impl SfuStats {
    fn drop(&mut self, r: DropReason) {
        *self.drops.entry(r.as_str()).or_default() += 1;
    }
}

#[derive(Debug)]
struct Slot {
    mid: Mid,
    kind: MediaKind,
    /// (publisher, publisher's mid)
    source: Option<(ParticipantId, Mid)>,
    /// Outgoing sequence = incoming + offset (wrapping), reset when the source changes.
    seq_offset: Option<i64>,
    last_seq: u64,
    /// Outgoing RTP timestamp = incoming + offset (wrapping), reset when the source changes:
    /// the subscriber's receiver sees one stream per slot, so a new source must continue the
    /// slot's clock (a jump to another publisher's clock leaves frames decoded but scheduled
    /// for display far away).
    ts_offset: Option<u32>,
    /// The last outgoing RTP timestamp and when its packet arrived.
    last_ts: Option<(u32, Instant)>,
    /// When its last publisher left it.
    freed_at: Option<Instant>,
}

/// A slot emptied by a routing change stays empty this long when another slot is free.
pub const SLOT_REUSE_AFTER: Duration = Duration::from_secs(2);

struct Peer {
    pid: ParticipantId,
    rtc: Rtc,
    /// The client's own tracks (its send m-lines).
    publishes: Vec<(Mid, MediaKind)>,
    slots: Vec<Slot>,
    alive: bool,
    /// When str0m next wants to be woken for this peer.
    timeout: Instant,
    /// Written to since its last flush (it is in `Sfu::pending`).
    pending: bool,
    /// The slot view last announced.
    view: Vec<SlotView>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("publishes", &self.publishes.len())
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// The SFU.
#[derive(Debug)]
pub struct Sfu {
    cfg: SfuConfig,
    peers: Vec<Peer>,
    routing: Routing,
    throttle: KeyframeThrottle,
    out: VecDeque<Output>,
    stats: SfuStats,
    now: Instant,
    /// Forwarded payload observer (tests scan what the SFU handles in clear).
    tap: Option<Tap>,
    /// Remote address -> index in `peers` of the peer that last accepted a datagram from it.
    /// Cleared whenever `peers` changes shape; a miss falls back to asking every peer (ICE
    /// credentials in STUN), which then refills it.
    by_addr: HashMap<SocketAddr, usize>,
    /// Local ICE user fragment -> index in `peers`: where a STUN check from an address not
    /// seen yet goes. Rebuilt whenever `peers` changes shape.
    by_ufrag: HashMap<String, usize>,
    /// The SFU's DTLS certificate, made once (str0m draws the key) and shared by every peer.
    /// `None` only if the crypto provider cannot make one; then str0m makes one per peer.
    dtls_cert: Option<DtlsCert>,
    /// Per index in `peers`: where its packets go, computed from `routing` and `peers`.
    /// Rebuilt whenever either changes shape (`reindex`, `set_routing*`), so it always has
    /// one entry per peer; whether a subscriber is alive is read when forwarding.
    routes: Vec<Route>,
    /// Peers written to (RTP copies, keyframe requests) since the last flush: each gets one
    /// timeout and one drain per flush, however many packets it was given (str0m sends
    /// written packets only after a timeout).
    pending: Vec<usize>,
    /// Every peer's `timeout` with its index, earliest first. Entries go stale when a peer's
    /// timeout moves or `peers` changes shape; a stale entry (its peer's timeout differs) is
    /// skipped and dropped when it reaches the top. Rebuilt by `reindex`.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Scratch, reused so that a datagram allocates none: the peers a drain touched, the
    /// peers being flushed, the timers due.
    touched: Vec<usize>,
    flushing: Vec<usize>,
    due: Vec<usize>,
    /// Scratch for `drain`: what a peer's str0m said, reused.
    happened: Vec<Happened>,
}

/// Where a publisher peer's packets go: the other members of its channel, in the routing
/// table's order, each as the index in `peers` of its peer (`None`: no peer), or why none.
#[derive(Debug)]
struct Route {
    /// The publisher (what a subscriber's slot names as its source).
    publisher: ParticipantId,
    subscribers: Result<Vec<Option<usize>>, DropReason>,
}

/// Observer of forwarded payloads.
pub(crate) struct Tap(Box<TapFn>);

type TapFn = dyn FnMut(&[u8]) + Send;

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

fn extensions() -> ExtensionMap {
    // Only what forwarding needs. Never the audio level (RFC 6464): it would tell the server
    // who is speaking.
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::RtpMid);
    exts.set(3, Extension::AbsoluteSendTime);
    exts.set(4, Extension::TransportSequenceNumber);
    exts
}

impl Sfu {
    /// An SFU with no peers.
    pub fn new(cfg: SfuConfig, now: Instant) -> Self {
        let throttle = KeyframeThrottle::new(cfg.keyframe_interval);
        Self {
            cfg,
            peers: Vec::new(),
            routing: Routing::default(),
            throttle,
            out: VecDeque::new(),
            stats: SfuStats::default(),
            now,
            tap: None,
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            dtls_cert: str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate(),
            routes: Vec::new(),
            pending: Vec::new(),
            timers: BinaryHeap::new(),
            touched: Vec::new(),
            flushing: Vec::new(),
            due: Vec::new(),
            happened: Vec::new(),
        }
    }

    // The peer tables keyed by address and by ICE user fragment, and the routes, after
    // `peers` changed.
    fn reindex(&mut self) {
        self.by_addr.clear();
        self.pending = (0..self.peers.len())
            .filter(|&i| self.peers[i].pending)
            .collect();
        self.rebuild_timers();
        self.by_ufrag = self
            .peers
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (p.rtc.direct_api().local_ice_credentials().ufrag, i))
            .collect();
        self.reroute();
    }

    // Every peer's route, after `routing` or `peers` changed.
    fn reroute(&mut self) {
        let index: HashMap<&ParticipantId, usize> = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| (&p.pid, i))
            .collect();
        self.routes = self
            .peers
            .iter()
            .map(|p| Route {
                publisher: p.pid.clone(),
                subscribers: forward::subscribers(&self.routing, &p.pid)
                    .map(|subs| subs.into_iter().map(|s| index.get(s).copied()).collect()),
            })
            .collect();
    }

    /// Observes every payload forwarded (for canary tests).
    pub fn set_tap(&mut self, tap: impl FnMut(&[u8]) + Send + 'static) {
        self.tap = Some(Tap(Box::new(tap)));
    }

    /// Counters.
    pub fn stats(&self) -> &SfuStats {
        &self.stats
    }

    /// The slot view last announced to a participant (to repeat it after a reconnect).
    pub fn slots_of(&self, pid: &ParticipantId) -> Option<Vec<SlotView>> {
        self.peers
            .iter()
            .find(|p| &p.pid == pid)
            .map(|p| p.view.clone())
    }

    /// Peers connected or connecting.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Answers a participant's offer; replaces any earlier peer of the same participant.
    pub fn accept_offer(
        &mut self,
        pid: ParticipantId,
        offer: &str,
        now: Instant,
    ) -> Result<String, SfuError> {
        self.now = now;
        // Everything that reads the client's SDP runs inside the panic guard: a parser bug
        // refuses this offer and touches no other peer.
        let (rtc, answer, publishes, slots) =
            catch_unwind(AssertUnwindSafe(|| self.answer(offer, now)))
                .map_err(|_| SfuError::Refused("internal error".into()))??;
        if publishes.is_empty() && slots.is_empty() {
            return Err(SfuError::Refused("no audio or video m-line".into()));
        }
        self.remove_peer(&pid);
        let affected = self.channel_mates(&pid);
        self.peers.push(Peer {
            pid,
            rtc,
            publishes,
            slots,
            alive: true,
            timeout: now,
            pending: false,
            view: Vec::new(),
        });
        self.reindex();
        self.assign_slots(Some(&affected));
        self.drain_some(&affected);
        Ok(answer)
    }

    // Parses an offer and answers it with a new peer's state (not yet added).
    #[allow(clippy::type_complexity)]
    fn answer(
        &self,
        offer_text: &str,
        now: Instant,
    ) -> Result<(Rtc, String, Vec<(Mid, MediaKind)>, Vec<Slot>), SfuError> {
        let offer =
            SdpOffer::from_sdp_string(offer_text).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let mut builder = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_extension_map(extensions());
        // One certificate for every peer: generating a key pair per offer is the costliest
        // part of an offer, and a peer learns nothing from sharing the fingerprint.
        if let Some(cert) = &self.dtls_cert {
            builder = builder.set_dtls_cert(cert.clone());
        }
        let mut rtc = builder.build(now);
        let candidate = Candidate::host(self.cfg.public_addr, "udp")
            .map_err(|e| SfuError::Refused(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Refused(e.to_string()))?;
        let mut publishes = Vec::new();
        let mut slots = Vec::new();
        for (mid, kind) in offered_mids(offer_text) {
            let Some(m) = rtc.media(mid) else { continue };
            let kind = if kind {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            // Directions as the SFU sees them: the client's send m-lines are our receive.
            match m.direction() {
                Direction::RecvOnly | Direction::SendRecv => publishes.push((mid, kind)),
                Direction::SendOnly => slots.push(Slot {
                    mid,
                    kind,
                    source: None,
                    seq_offset: None,
                    last_seq: 0,
                    ts_offset: None,
                    last_ts: None,
                    freed_at: None,
                }),
                Direction::Inactive => {}
            }
        }
        Ok((rtc, answer.to_sdp_string(), publishes, slots))
    }

    /// Forgets a participant's peer (left, kicked, or reconnecting).
    pub fn remove_peer(&mut self, pid: &ParticipantId) {
        let before = self.peers.len();
        self.peers.retain(|p| &p.pid != pid);
        if self.peers.len() != before {
            self.reindex();
            self.throttle.forget(pid);
            // Only the peers that shared its channel had it in a slot.
            let affected = self.channel_mates(pid);
            self.assign_slots(Some(&affected));
        }
    }

    /// A new routing table from the room: takes effect with the next packet. Recomputes every
    /// peer's slots; see [`Sfu::set_routing_for`] when the change is known to be local.
    pub fn set_routing(&mut self, routing: Routing, now: Instant) {
        self.now = now;
        self.routing = routing;
        self.reroute();
        self.assign_slots(None);
        self.drain_all();
    }

    /// A new routing table in which only the channels of `changed` differ (one session's
    /// members, before and after the change): only their slots are recomputed and only their
    /// peers drained, so one session's moves cost nothing in the others.
    pub fn set_routing_for(&mut self, routing: Routing, changed: &[ParticipantId], now: Instant) {
        self.now = now;
        self.routing = routing;
        self.reroute();
        let affected: HashSet<ParticipantId> = changed.iter().cloned().collect();
        self.assign_slots(Some(&affected));
        self.drain_some(&affected);
    }

    // A participant and the other members of its channel: the peers whose slots it can be in.
    fn channel_mates(&self, pid: &ParticipantId) -> HashSet<ParticipantId> {
        let mut mates: HashSet<ParticipantId> = self
            .routing
            .channel_of(pid)
            .map(|ch| self.routing.members(ch).iter().cloned().collect())
            .unwrap_or_default();
        mates.insert(pid.clone());
        mates
    }

    /// A subscriber asks for a keyframe from a publisher (after it switched keys).
    pub fn request_keyframe(
        &mut self,
        subscriber: &ParticipantId,
        publisher: &ParticipantId,
        now: Instant,
    ) {
        self.now = now;
        let allowed = self.routing.channel_of(subscriber).is_some()
            && self.routing.channel_of(subscriber) == self.routing.channel_of(publisher);
        if !allowed {
            return;
        }
        let mids: Vec<Mid> = self
            .peers
            .iter()
            .find(|p| &p.pid == publisher)
            .map(|p| {
                p.publishes
                    .iter()
                    .filter(|(_, k)| *k == MediaKind::Video)
                    .map(|(m, _)| *m)
                    .collect()
            })
            .unwrap_or_default();
        let mut asked = false;
        for mid in mids {
            asked |= self.keyframe(publisher, mid, KeyframeRequestKind::Pli);
        }
        // Only the publisher has something to send now, and only if it was asked.
        if asked && let Some(i) = self.peers.iter().position(|p| &p.pid == publisher) {
            self.drain_from(i);
        }
    }

    /// A datagram arrived on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.now = now;
        let contents_bytes = contents;
        let Ok(contents) = contents.try_into() else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        // Demultiplex: the peer this address belongs to (a hash lookup), else the peer whose
        // ICE credentials (STUN) or remote address match.
        let cached = self.by_addr.get(&source).copied().filter(|&i| {
            self.peers
                .get(i)
                .is_some_and(|p| p.alive && p.rtc.accepts(&input))
        });
        // A STUN check names the peer in its USERNAME (`<our ufrag>:<theirs>`).
        let ufrag = forward::stun_local_ufrag(contents_bytes);
        let by_name = || {
            ufrag
                .and_then(|u| self.by_ufrag.get(u).copied())
                .filter(|&i| {
                    self.peers
                        .get(i)
                        .is_some_and(|p| p.alive && p.rtc.accepts(&input))
                })
        };
        let found = cached.or_else(by_name);
        // A check naming a user fragment no live peer has is for nobody here: asking every
        // peer would only cost time.
        if found.is_none() && ufrag.is_some() {
            self.stats.drop(DropReason::UnknownSource);
            return;
        }
        if found.is_none() {
            self.stats.demux_scans += 1;
        }
        let Some(i) = found.or_else(|| {
            self.peers
                .iter()
                .position(|p| p.alive && p.rtc.accepts(&input))
        }) else {
            self.stats.drop(DropReason::UnknownSource);
            return;
        };
        if cached.is_none() {
            self.by_addr.insert(source, i);
        }
        let peer = &mut self.peers[i];
        let ok = catch_unwind(AssertUnwindSafe(|| peer.rtc.handle_input(input)));
        if !matches!(ok, Ok(Ok(()))) {
            self.stats.drop(DropReason::Malformed);
            // A broken peer is cut off; the others never notice.
            if ok.is_err() {
                self.peers[i].alive = false;
            }
        }
        self.drain_from(i);
    }

    // Drains peer `i` and marks the peers it wrote to (subscribers of its packets, publishers
    // asked for a keyframe) as pending: they are flushed, each once, by the next `poll_output`,
    // so a batch of datagrams costs each subscriber one timeout and one drain.
    fn drain_from(&mut self, i: usize) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.clear();
        self.drain(i, &mut touched);
        for &j in &touched {
            self.mark_pending(j);
        }
        self.touched = touched;
    }

    fn mark_pending(&mut self, j: usize) {
        if let Some(p) = self.peers.get_mut(j)
            && !p.pending
        {
            p.pending = true;
            self.pending.push(j);
        }
    }

    // Every pending peer: one timeout (str0m sends what was written only then) and one drain.
    // Peers touched by these drains are pending again for the next round.
    fn flush(&mut self) {
        let now = self.now;
        let mut list = std::mem::take(&mut self.flushing);
        list.clear();
        std::mem::swap(&mut list, &mut self.pending);
        for &k in &list {
            self.peers[k].pending = false;
        }
        for &k in &list {
            let peer = &mut self.peers[k];
            if !peer.alive {
                continue;
            }
            let ok = catch_unwind(AssertUnwindSafe(|| {
                peer.rtc.handle_input(Input::Timeout(now))
            }));
            if !matches!(ok, Ok(Ok(()))) {
                peer.alive = false;
                continue;
            }
            self.drain_from(k);
        }
        self.flushing = list;
    }

    fn rebuild_timers(&mut self) {
        self.timers.clear();
        self.timers.extend(
            self.peers
                .iter()
                .enumerate()
                .map(|(i, p)| Reverse((p.timeout, i))),
        );
    }

    // The earliest timeout of any peer, dropping stale entries on the way.
    fn next_timer(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if self.peers.get(i).is_some_and(|p| p.timeout == t) {
                return Some(t);
            }
            self.timers.pop();
        }
        None
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        // Only the peers whose own timer is due, from the heap; each once.
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.peers.get(i).is_some_and(|p| p.timeout == t) {
                due.push(i);
            }
        }
        due.sort_unstable();
        due.dedup();
        for &i in &due {
            let peer = &mut self.peers[i];
            let ok = catch_unwind(AssertUnwindSafe(|| {
                peer.rtc.handle_input(Input::Timeout(now))
            }));
            if !matches!(ok, Ok(Ok(()))) {
                peer.alive = false;
            }
            self.drain_from(i);
            // A drain that leaves its timeout where it was (or a dead peer) keeps its entry.
            let t = self.peers[i].timeout;
            if t <= now {
                self.timers.push(Reverse((t, i)));
            }
        }
        self.due = due;
    }

    /// The next thing to do. Datagrams and timeouts handed in since the last call are
    /// flushed first: the copies they produced leave now.
    pub fn poll_output(&mut self) -> Output {
        // Flushing can touch other peers (a keyframe request passed on): a few rounds at most.
        for _ in 0..4 {
            if self.pending.is_empty() {
                break;
            }
            self.flush();
        }
        self.reap();
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        if !self.pending.is_empty() {
            return Output::Timeout(self.now);
        }
        // Stale timer entries pile up only as fast as timeouts move; past a bound, start over.
        if self.timers.len() > 4 * self.peers.len() + 64 {
            self.rebuild_timers();
        }
        let next = self.next_timer();
        Output::Timeout(next.unwrap_or(self.now + Duration::from_millis(100)))
    }
}

/// (mid, is_video) of every audio or video m-section of an SDP, in order.
fn offered_mids(sdp: &str) -> Vec<(Mid, bool)> {
    let mut out = Vec::new();
    let mut kind: Option<bool> = None;
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            kind = match m.split(' ').next() {
                Some("audio") => Some(false),
                Some("video") => Some(true),
                _ => None,
            };
        } else if let (Some(k), Some(mid)) = (kind, line.strip_prefix("a=mid:")) {
            out.push((Mid::from(mid), k));
        }
    }
    out
}

// Kept in a reused `Vec`, so the large variant costs no allocation (a `Box` would, per packet).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Happened {
    Rtp(RtpPacket),
    KeyframeRequest(Mid, KeyframeRequestKind),
}

impl Sfu {
    fn drain_all(&mut self) {
        for i in 0..self.peers.len() {
            self.drain_from(i);
        }
    }

    fn drain_some(&mut self, which: &HashSet<ParticipantId>) {
        for i in 0..self.peers.len() {
            if which.contains(&self.peers[i].pid) {
                self.drain_from(i);
            }
        }
    }

    // Runs one peer's str0m until it has nothing more to say; forwards what it received.
    // Appends to `touched` the peers it wrote to (subscribers of its packets, publishers
    // asked for a keyframe), which have something to send now.
    fn drain(&mut self, i: usize, touched: &mut Vec<usize>) {
        let mut happened = std::mem::take(&mut self.happened);
        happened.clear();
        {
            let peer = &mut self.peers[i];
            if !peer.alive {
                self.happened = happened;
                return;
            }
            self.stats.peer_drains += 1;
            loop {
                let polled = catch_unwind(AssertUnwindSafe(|| peer.rtc.poll_output()));
                let Ok(Ok(output)) = polled else {
                    peer.alive = false;
                    break;
                };
                match output {
                    RtcOutput::Timeout(t) => {
                        if t != peer.timeout {
                            peer.timeout = t;
                            self.timers.push(Reverse((t, i)));
                        }
                        break;
                    }
                    // The datagram str0m made, moved (no copy).
                    RtcOutput::Transmit(t) => self.out.push_back(Output::Transmit {
                        destination: t.destination,
                        contents: t.contents.into(),
                    }),
                    RtcOutput::Event(e) => match e {
                        Event::RtpPacket(p) => happened.push(Happened::Rtp(p)),
                        Event::KeyframeRequest(r) => {
                            happened.push(Happened::KeyframeRequest(r.mid, r.kind))
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                        | Event::Closed => {
                            peer.alive = false;
                        }
                        _ => {}
                    },
                }
            }
        }
        for h in happened.drain(..) {
            match h {
                Happened::Rtp(p) => self.forward(i, p, touched),
                Happened::KeyframeRequest(mid, kind) => {
                    let source = self.peers[i]
                        .slots
                        .iter()
                        .find(|s| s.mid == mid)
                        .and_then(|s| s.source.clone());
                    if let Some((publisher, pub_mid)) = source
                        && self.keyframe(&publisher, pub_mid, kind)
                    {
                        touched.extend(self.peers.iter().position(|p| p.pid == publisher));
                    }
                }
            }
        }
        self.happened = happened;
    }

    // Writes the packet into the slot of every subscriber that should get it; appends their
    // indices to `written`.
    fn forward(&mut self, from: usize, packet: RtpPacket, written: &mut Vec<usize>) {
        let Some(mid) = self.peers[from]
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid())
        else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        let codec = self.peers[from]
            .rtc
            .codec_config()
            .find(|c| c.pt() == packet.header.payload_type)
            .map(|c| c.spec().codec);
        // The route precomputed from the routing table and the peers (see `reroute`).
        let route = &self.routes[from];
        let publisher = &route.publisher;
        let subscribers = match &route.subscribers {
            Ok(s) => s,
            Err(r) => {
                self.stats.drop(*r);
                return;
            }
        };
        if let Some(tap) = self.tap.as_mut() {
            (tap.0)(&packet.payload);
        }
        // One shared payload for every subscriber (an `Arc<[u8]>`: a copy is a count).
        let payload = packet.payload;
        for &sub in subscribers {
            // A member with no peer, or whose peer is dead (not reaped yet), has no slot.
            let Some((j, peer)) =
                sub.and_then(|j| self.peers.get_mut(j).filter(|p| p.alive).map(|p| (j, p)))
            else {
                self.stats.drop(DropReason::NoSlot);
                continue;
            };
            let Some(slot) = peer.slots.iter_mut().find(|s| {
                s.source
                    .as_ref()
                    .is_some_and(|(p, m)| p == publisher && *m == mid)
            }) else {
                self.stats.drop(DropReason::NoSlot);
                continue;
            };
            let Some(pt) = codec.and_then(|c| {
                peer.rtc
                    .codec_config()
                    .find(|p| p.spec().codec == c)
                    .map(|p| p.pt())
            }) else {
                self.stats.drop(DropReason::Malformed);
                continue;
            };
            // Continuous sequence numbers per slot, whoever publishes into it.
            let incoming = *packet.seq_no as i64;
            let offset = *slot
                .seq_offset
                .get_or_insert(slot.last_seq as i64 + 1 - incoming);
            let seq = (incoming + offset).max(0) as u64;
            slot.last_seq = slot.last_seq.max(seq);
            // Continuous RTP time per slot: a new source starts where the slot's clock is now.
            let ts_in = packet.header.timestamp;
            let ts_offset = *slot.ts_offset.get_or_insert_with(|| match slot.last_ts {
                Some((last, at)) => {
                    let rate: u64 = if slot.kind == MediaKind::Video {
                        90_000
                    } else {
                        48_000
                    };
                    let elapsed = packet.timestamp.saturating_duration_since(at);
                    let ticks = (elapsed.as_micros() as u64).saturating_mul(rate) / 1_000_000;
                    last.wrapping_add(ticks as u32).wrapping_sub(ts_in)
                }
                None => 0,
            });
            let ts_out = ts_in.wrapping_add(ts_offset);
            slot.last_ts = Some((ts_out, packet.timestamp));
            let slot_mid = slot.mid;
            let mut api = peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(slot_mid, None) else {
                self.stats.drop(DropReason::NoSlot);
                continue;
            };
            let write = RtpWrite::new(
                pt,
                SeqNo::from(seq),
                ts_out,
                packet.timestamp,
                Arc::clone(&payload),
            )
            .marker(packet.header.marker)
            .nackable(true);
            tx.write_rtp(write);
            written.push(j);
            self.stats.forwarded_packets += 1;
            self.stats.forwarded_bytes += payload.len() as u64;
        }
    }

    // Asks a publisher's track for a keyframe, unless throttled; whether it was asked.
    fn keyframe(&mut self, publisher: &ParticipantId, mid: Mid, kind: KeyframeRequestKind) -> bool {
        let Some(peer) = self
            .peers
            .iter_mut()
            .find(|p| &p.pid == publisher && p.alive)
        else {
            return false;
        };
        let track = peer
            .publishes
            .iter()
            .position(|(m, _)| *m == mid)
            .unwrap_or(0) as u8;
        if !self.throttle.allow(publisher, track, self.now) {
            self.stats.keyframe_requests_throttled += 1;
            return false;
        }
        let mut api = peer.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        rx.request_keyframe(kind);
        self.stats.keyframe_requests += 1;
        true
    }

    // Maps subscribers' slots (every peer's, or `only` these) onto the publishers in their
    // channels; announces changes.
    fn assign_slots(&mut self, only: Option<&HashSet<ParticipantId>>) {
        let now = self.now;
        let publishes: HashMap<ParticipantId, Vec<(Mid, MediaKind)>> = self
            .peers
            .iter()
            .filter(|p| p.alive)
            .map(|p| (p.pid.clone(), p.publishes.clone()))
            .collect();
        let mut new_video = Vec::new();
        for peer in self.peers.iter_mut() {
            if only.is_some_and(|o| !o.contains(&peer.pid)) {
                continue;
            }
            self.stats.slot_recomputes += 1;
            let wanted: Vec<(ParticipantId, Mid, MediaKind)> =
                match self.routing.channel_of(&peer.pid) {
                    Some(ch) => self
                        .routing
                        .members(ch)
                        .iter()
                        .filter(|m| **m != peer.pid)
                        .flat_map(|m| {
                            publishes
                                .get(m)
                                .into_iter()
                                .flatten()
                                .map(move |(mid, k)| (m.clone(), *mid, *k))
                        })
                        .collect(),
                    None => Vec::new(),
                };
            // A slot emptied by a change is refilled only when no other slot of its kind is
            // free (then the one emptied longest ago): the subscriber learns of a slot's new
            // publisher over signalling, which can arrive after the first packets, so a slot
            // goes A -> empty -> B in two announcements at least SLOT_REUSE_AFTER apart
            // whenever there are slots enough, and late packets of A's (held by the client
            // at most as long) are never taken for B's.
            for slot in peer.slots.iter_mut() {
                let keep = slot
                    .source
                    .as_ref()
                    .is_some_and(|(p, m)| wanted.iter().any(|(wp, wm, _)| wp == p && wm == m));
                if !keep {
                    if slot.source.is_some() {
                        slot.freed_at = Some(now);
                    }
                    slot.source = None;
                    slot.seq_offset = None;
                    slot.ts_offset = None;
                }
            }
            for (p, mid, kind) in wanted {
                if peer
                    .slots
                    .iter()
                    .any(|s| s.source.as_ref() == Some(&(p.clone(), mid)))
                {
                    continue;
                }
                let pick = peer
                    .slots
                    .iter_mut()
                    .filter(|s| s.source.is_none() && s.kind == kind)
                    .min_by_key(|s| {
                        let recent = s
                            .freed_at
                            .is_some_and(|t| now.saturating_duration_since(t) < SLOT_REUSE_AFTER);
                        (recent, s.freed_at)
                    });
                match pick {
                    Some(slot) => {
                        slot.source = Some((p.clone(), mid));
                        slot.seq_offset = None;
                        slot.ts_offset = None;
                        if kind == MediaKind::Video {
                            new_video.push((p, mid));
                        }
                    }
                    None => self.stats.drop(DropReason::NoSlot),
                }
            }
            let view: Vec<SlotView> = peer
                .slots
                .iter()
                .map(|s| SlotView {
                    mid: s.mid.to_string(),
                    video: s.kind == MediaKind::Video,
                    publisher: s.source.as_ref().map(|(p, _)| p.clone()),
                })
                .collect();
            if view != peer.view {
                peer.view = view.clone();
                self.out.push_back(Output::Slots {
                    participant: peer.pid.clone(),
                    slots: view,
                });
            }
        }
        // A subscriber that starts receiving a video needs a keyframe to decode anything.
        for (p, mid) in new_video {
            self.keyframe(&p, mid, KeyframeRequestKind::Pli);
        }
    }

    fn reap(&mut self) {
        let gone: Vec<ParticipantId> = self
            .peers
            .iter()
            .filter(|p| !p.alive)
            .map(|p| p.pid.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        let mut affected = HashSet::new();
        for g in &gone {
            affected.extend(self.channel_mates(g));
        }
        self.peers.retain(|p| p.alive);
        self.reindex();
        for g in gone {
            self.throttle.forget(&g);
            self.out.push_back(Output::PeerGone(g));
        }
        self.assign_slots(Some(&affected));
    }
}
