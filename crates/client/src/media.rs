//! Media over WebRTC with the `webrtc` crate (webrtc-rs): one peer connection to the SFU that
//! publishes a microphone and a camera track and receives in fixed slots (signalling.md §10).
//!
//! This module moves opaque payloads only: what goes in has already been sealed by
//! [`crate::Core::seal_media`], and what comes out still has to be opened by
//! [`crate::Core::open_media`]. Each payload is one RTP packet (the bots' frames are small);
//! video payloads get a one-byte VP8 payload descriptor (RFC 7741 §4.2, start of partition),
//! which is all the packetizing VP8 needs for a frame in one packet.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use confer_e2ee::frame::{STREAM_AUDIO, STREAM_CAMERA};
use confer_proto::{IceServer, MediaSlot, ParticipantId};
use rtc::rtp;
use tokio::sync::mpsc;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry, SettingEngineBuilder,
    crypto, register_default_interceptors,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpTransceiver};

use crate::frames;
use crate::{Core, MediaRejected};

use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};

const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
/// VP8 payload descriptor: no extensions, start of a partition, partition 0.
const VP8_DESCRIPTOR: u8 = 0x10;

/// What the peer connection offers.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    /// Publish a microphone (stream 0) and a camera (stream 1) track.
    pub publish: bool,
    /// Receive slots for audio.
    pub audio_slots: usize,
    /// Receive slots for video.
    pub video_slots: usize,
    /// The local address to bind the UDP socket to.
    pub bind: IpAddr,
    /// TURN servers (from `welcome`).
    pub ice_servers: Vec<IceServer>,
    /// Use only TURN relay candidates: what a participant behind a network that blocks direct
    /// UDP to the SFU ends up with (and how the tests prove TURN works).
    pub relay_only: bool,
}

/// One RTP packet that arrived in a receive slot.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The slot's mid (map it to a publisher with the latest `media_slots`).
    pub mid: String,
    /// The stream it carries: 0 audio, 1 video (the camera; the bots publish no screen).
    pub stream: u8,
    /// The sealed frame, VP8 descriptor removed.
    pub frame: Vec<u8>,
}

/// What the peer connection reports.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// A packet in a receive slot.
    Arrival(Arrival),
    /// The connection's state changed.
    State(RTCPeerConnectionState),
}

struct Handler {
    gathered: mpsc::UnboundedSender<()>,
    events: mpsc::Sender<MediaEvent>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(MediaEvent::State(state)).await;
    }

    // A receive slot's first packet arrived (webrtc-rs creates the remote track then).
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

struct Sender {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    seq: u16,
    /// RTP clock ticks per frame.
    step: u32,
    ts: u32,
}

/// A peer connection to the SFU.
pub struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    senders: BTreeMap<u8, Sender>,
    events: mpsc::Receiver<MediaEvent>,
    events_tx: mpsc::Sender<MediaEvent>,
    /// Packets dropped because the application did not keep up (the queue was full).
    overflowed: Arc<std::sync::atomic::AtomicU64>,
    recv_slots: Vec<(Arc<dyn RtpTransceiver>, u8)>,
    tracks: Option<mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>>,
    connected: bool,
}

fn codec(kind: RtpCodecKind) -> RTCRtpCodecParameters {
    let (mime, clock_rate, channels, pt) = match kind {
        RtpCodecKind::Audio => ("audio/opus", 48_000, 2, OPUS_PT),
        _ => ("video/VP8", 90_000, 0, VP8_PT),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

fn configuration(opts: &MediaOptions) -> webrtc::peer_connection::RTCConfiguration {
    let servers = opts
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    let policy = if opts.relay_only {
        RTCIceTransportPolicy::Relay
    } else {
        RTCIceTransportPolicy::All
    };
    RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(policy)
        .build()
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // The OS RNG; an SSRC only needs to be unlikely to collide.
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b)
}

impl MediaPeer {
    /// Builds the peer connection and its offer (ICE gathered, nothing trickled).
    pub async fn offer(opts: &MediaOptions) -> anyhow::Result<(Self, String)> {
        let mut engine = MediaEngine::default();
        engine.register_codec(codec(RtpCodecKind::Audio), RtpCodecKind::Audio)?;
        engine.register_codec(codec(RtpCodecKind::Video), RtpCodecKind::Video)?;
        let registry = register_default_interceptors(Registry::new(), &mut engine)?;
        let settings = SettingEngineBuilder::default()
            .with_crypto_provider(Arc::new(crypto::providers::AwsLcRsProvider::new()))
            .build();
        let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
        // Bounded: a flood of packets costs dropped packets, not memory.
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (tracks_tx, tracks) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            events: events_tx.clone(),
            tracks: tracks_tx,
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(configuration(opts))
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(handler)
            .with_udp_addrs(vec![std::net::SocketAddr::new(opts.bind, 0)])
            .build()
            .await
            .context("cannot create the WebRTC peer connection")?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let mut senders = BTreeMap::new();
        if opts.publish {
            for (stream, kind, step) in [
                (STREAM_AUDIO, RtpCodecKind::Audio, 960),
                (STREAM_CAMERA, RtpCodecKind::Video, 3000),
            ] {
                let ssrc = random_u32();
                let c = codec(kind);
                let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                    "confer".to_owned(),
                    format!("confer-{stream}"),
                    format!("stream {stream}"),
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: c.rtp_codec.clone(),
                        ..Default::default()
                    }],
                )));
                pc.add_transceiver_from_track(
                    Arc::clone(&track) as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await
                .context("cannot add a track")?;
                senders.insert(
                    stream,
                    Sender {
                        track,
                        ssrc,
                        pt: c.payload_type,
                        seq: random_u32() as u16,
                        step,
                        ts: random_u32(),
                    },
                );
            }
        }
        let mut recv_slots = Vec::new();
        for (kind, n, stream) in [
            (RtpCodecKind::Audio, opts.audio_slots, STREAM_AUDIO),
            (RtpCodecKind::Video, opts.video_slots, STREAM_CAMERA),
        ] {
            for _ in 0..n {
                let t = pc
                    .add_transceiver_from_kind(
                        kind,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            streams: vec![],
                            send_encodings: vec![],
                        }),
                    )
                    .await
                    .context("cannot add a receive slot")?;
                recv_slots.push((t, stream));
            }
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        tokio::time::timeout(Duration::from_secs(5), gathered.recv())
            .await
            .context("ICE gathering did not complete in 5 s")?;
        let sdp = pc
            .local_description()
            .await
            .context("no local description")?
            .sdp;
        Ok((
            Self {
                pc,
                senders,
                events,
                events_tx,
                recv_slots,
                overflowed: Arc::default(),
                tracks: Some(tracks),
                connected: false,
            },
            sdp,
        ))
    }

    /// Applies the SFU's answer and starts reading every receive slot.
    pub async fn accept_answer(&mut self, sdp: String) -> anyhow::Result<()> {
        let mut answer = RTCSessionDescription::default();
        answer.sdp_type = RTCSdpType::Answer;
        answer.sdp = sdp;
        self.pc
            .set_remote_description(answer)
            .await
            .context("the SFU's answer was not accepted")?;
        let mut slots = Vec::new();
        for (t, stream) in std::mem::take(&mut self.recv_slots) {
            let mid = t.mid().await?.context("a receive slot has no mid")?;
            slots.push((t, mid, stream));
        }
        let Some(mut tracks) = self.tracks.take() else {
            anyhow::bail!("the answer was already applied");
        };
        let tx = self.events_tx.clone();
        let overflowed = self.overflowed.clone();
        tokio::spawn(async move {
            while let Some(track) = tracks.recv().await {
                // Which slot: the transceiver whose receiver now holds this track.
                let mut found = None;
                for (t, mid, stream) in &slots {
                    if let Ok(Some(r)) = t.receiver().await
                        && same(r.track(), &track)
                    {
                        found = Some((mid.clone(), *stream));
                    }
                }
                if let Some((mid, stream)) = found {
                    read_slot(track, mid, stream, tx.clone(), overflowed.clone());
                }
            }
        });
        Ok(())
    }

    /// Sends one sealed frame on `stream` (0 microphone, 1 camera) as one RTP packet.
    pub async fn send(&mut self, stream: u8, frame: &[u8]) -> anyhow::Result<()> {
        let s = self
            .senders
            .get_mut(&stream)
            .context("this peer does not publish that stream")?;
        let mut payload = Vec::with_capacity(frame.len() + 1);
        if stream != STREAM_AUDIO {
            payload.push(VP8_DESCRIPTOR);
        }
        payload.extend_from_slice(frame);
        s.seq = s.seq.wrapping_add(1);
        s.ts = s.ts.wrapping_add(s.step);
        let packet = rtp::packet::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: s.pt,
                sequence_number: s.seq,
                timestamp: s.ts,
                ssrc: s.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        s.track.write_rtp(packet).await?;
        Ok(())
    }

    /// The next thing that happened (`None` once the connection is gone).
    pub async fn next(&mut self) -> Option<MediaEvent> {
        let ev = self.events.recv().await;
        if let Some(MediaEvent::State(s)) = &ev {
            self.connected = *s == RTCPeerConnectionState::Connected;
        }
        ev
    }

    /// Packets dropped because [`Self::next`] was not called often enough.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// ICE and DTLS are up (as of the last event [`Self::next`] returned): packets written
    /// before that are lost, so publishers wait for it.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

impl std::fmt::Debug for MediaPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPeer")
            .field("publishes", &self.senders.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Counts of one publisher's frames as one receiver saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromPublisher {
    /// Packets that arrived in a slot the SFU said carried this publisher.
    pub received: u64,
    /// Of those, frames that opened (decrypted and authenticated), whatever they carry: a
    /// browser's real Opus and VP8 open but are not this bot's synthetic frames.
    pub opened: u64,
    /// Of those, frames that opened and verified byte for byte.
    pub verified: u64,
    /// Verified counters, per stream.
    pub counters: BTreeMap<u8, std::collections::BTreeSet<u64>>,
}

/// What a participant's media did, for summaries and tests.
#[derive(Debug, Clone, Default)]
pub struct MediaStats {
    /// Frames sealed and sent.
    pub frames_sent: u64,
    /// Frames sent, per stream (the counters used were 0..n).
    pub sent_per_stream: BTreeMap<u8, u64>,
    /// Frames sent per room (server channel id) I was in when sealing them.
    pub sent_in: BTreeMap<String, u64>,
    /// Frames not sent because the room was not secured yet ("securing channel").
    pub frames_muted: u64,
    /// Packets that arrived in any receive slot.
    pub frames_received: u64,
    /// Frames that opened (decrypted and authenticated), verified or not.
    pub frames_opened: u64,
    /// Frames that opened and verified byte for byte.
    pub frames_verified: u64,
    /// Packets held in a slot the SFU had not told me the publisher of, then dropped because
    /// no announcement named one (more than [`HOLD_PER_SLOT`] waiting, or still held at the end).
    pub frames_unattributed: u64,
    /// Frames that opened but are not a bot's synthetic frame: a bug between bots, expected
    /// from a browser (its frames are real Opus and VP8).
    pub frames_corrupt: u64,
    /// Frames still waiting for their key when the client stopped (under [`HOLD_US`]).
    pub frames_dropped_at_exit: u64,
    /// Per publisher.
    pub from: BTreeMap<ParticipantId, FromPublisher>,
    /// One-way latency of verified frames, in microseconds (send time to opened).
    pub latencies_us: Vec<u64>,
}

/// The bookkeeping around a [`MediaPeer`]: which publisher each slot carries, the frame
/// counters, what to seal next and what arrived. No I/O, so it can sit next to a [`Core`]
/// under one lock.
#[derive(Debug, Default)]
pub struct MediaBook {
    slots: BTreeMap<String, ParticipantId>,
    /// Packets that arrived in a slot I believe empty, by mid, until `media_slots` names
    /// their publisher.
    held: BTreeMap<String, VecDeque<(u64, Arrival)>>,
    /// Attributed frames whose key has not arrived yet: (since, publisher, arrival).
    waiting: VecDeque<(u64, ParticipantId, Arrival)>,
    next: BTreeMap<u8, u64>,
    generation: BTreeMap<u8, u64>,
    since_key: u64,
    /// Counters.
    pub stats: MediaStats,
}

/// A video key frame at least this often (frames), besides one after every key change.
const KEYFRAME_EVERY: u64 = 60;
/// Packets held per slot while its publisher is not known yet.
pub const HOLD_PER_SLOT: usize = 64;
/// How long a packet is held for its slot's publisher or its key, in microseconds. Older
/// ones are not trusted to belong to whoever the slot carries next.
pub const HOLD_US: u64 = 2_000_000;
/// Frames waiting for their key, at most.
const WAITING_MAX: usize = 256;
/// Latency samples kept (the first ones).
const MAX_LATENCY_SAMPLES: usize = 100_000;
/// Publishers counted per id in the summary, at most (the server names them).
const MAX_PUBLISHERS: usize = 64;
/// Media events queued between the peer connection and the application.
const EVENT_QUEUE: usize = 4096;

impl MediaBook {
    /// The SFU's latest slot map (`media_slots`); packets held for a slot it now names a
    /// publisher of are opened.
    pub fn set_slots<R: rand_core::CryptoRng>(
        &mut self,
        core: &mut Core<R>,
        slots: &[MediaSlot],
        now_us: u64,
    ) {
        self.slots = slots
            .iter()
            .filter_map(|s| Some((s.mid.clone(), s.participant_id.clone()?)))
            .collect();
        let ready: Vec<String> = self
            .held
            .keys()
            .filter(|m| self.slots.contains_key(*m))
            .cloned()
            .collect();
        for mid in ready {
            for (at, a) in self.held.remove(&mid).unwrap_or_default() {
                if now_us.saturating_sub(at) <= HOLD_US {
                    self.attributed(core, &a, at, now_us);
                } else {
                    self.stats.frames_unattributed += 1;
                }
            }
        }
    }

    /// Tries the frames that were waiting for their key again (call after the core handled
    /// a server message, and now and then); those that waited too long count as failures.
    pub fn retry<R: rand_core::CryptoRng>(&mut self, core: &mut Core<R>, now_us: u64) {
        if self.waiting.is_empty() {
            return;
        }
        for (at, publisher, a) in std::mem::take(&mut self.waiting) {
            if now_us.saturating_sub(at) > HOLD_US {
                // One last try: the key may have come with the message that woke us.
                match core.open_media(&publisher, a.stream, &a.frame) {
                    Err(MediaRejected::NoKey) => core.media_frame_expired(),
                    Ok(plain) => self.verified(publisher, &a, &plain, now_us),
                    Err(_) => {}
                }
                continue;
            }
            self.open(core, at, publisher, &a, now_us);
        }
    }

    /// At the end: packets still held for want of a publisher count as unattributed; frames
    /// still waiting for a key that may have been on its way count as dropped at exit, those
    /// that waited longer than [`HOLD_US`] as decrypt failures.
    pub fn finish<R: rand_core::CryptoRng>(&mut self, core: &mut Core<R>, now_us: u64) {
        let n: usize = self.held.values().map(|q| q.len()).sum();
        self.stats.frames_unattributed += n as u64;
        self.held.clear();
        for (at, _, _) in self.waiting.drain(..) {
            if now_us.saturating_sub(at) > HOLD_US {
                core.media_frame_expired();
            } else {
                self.stats.frames_dropped_at_exit += 1;
            }
        }
    }

    /// Who the SFU says is in each of my slots now.
    pub fn slot_publishers(&self) -> Vec<ParticipantId> {
        self.slots.values().cloned().collect()
    }

    /// Seals the next frame of each stream in `streams`, or counts it muted when the room I
    /// am in is not secured. A video frame is a key frame after each key change and every
    /// [`KEYFRAME_EVERY`] frames.
    pub fn next_frames<R: rand_core::CryptoRng>(
        &mut self,
        core: &mut Core<R>,
        streams: &[u8],
        now_us: u64,
    ) -> Vec<(u8, Vec<u8>)> {
        let Some(me) = core.participant_id().cloned() else {
            return Vec::new();
        };
        let room = core.secured().map(|c| c.as_str().to_owned());
        let mut out = Vec::new();
        for &stream in streams {
            let Some(generation) = core.media_generation(stream) else {
                self.stats.frames_muted += 1;
                continue;
            };
            let video = stream != STREAM_AUDIO;
            let fresh = self.generation.insert(stream, generation) != Some(generation);
            let key = video && (fresh || self.since_key >= KEYFRAME_EVERY);
            let n = *self.next.get(&stream).unwrap_or(&0);
            let plain = frames::build(&me, stream, n, now_us, key);
            match core.seal_media(stream, &plain) {
                Ok(sealed) => {
                    self.next.insert(stream, n + 1);
                    if video {
                        self.since_key = if key { 0 } else { self.since_key + 1 };
                    }
                    self.stats.frames_sent += 1;
                    *self.stats.sent_per_stream.entry(stream).or_default() += 1;
                    if let Some(r) = &room {
                        *self.stats.sent_in.entry(r.clone()).or_default() += 1;
                    }
                    out.push((stream, sealed));
                }
                Err(_) => self.stats.frames_muted += 1,
            }
        }
        out
    }

    /// A packet arrived: attribute it by slot, open it, verify it.
    pub fn on_arrival<R: rand_core::CryptoRng>(
        &mut self,
        core: &mut Core<R>,
        a: &Arrival,
        now_us: u64,
    ) {
        self.stats.frames_received += 1;
        if !self.slots.contains_key(&a.mid) {
            let q = self.held.entry(a.mid.clone()).or_default();
            if q.len() == HOLD_PER_SLOT {
                q.pop_front();
                self.stats.frames_unattributed += 1;
            }
            q.push_back((now_us, a.clone()));
            return;
        }
        self.attributed(core, a, now_us, now_us);
    }

    fn attributed<R: rand_core::CryptoRng>(
        &mut self,
        core: &mut Core<R>,
        a: &Arrival,
        since: u64,
        now_us: u64,
    ) {
        let Some(publisher) = self.slots.get(&a.mid).cloned() else {
            return;
        };
        // Per-publisher counters for at most MAX_PUBLISHERS ids: the server names the
        // publishers, and may not grow this without bound.
        if self.stats.from.len() < MAX_PUBLISHERS || self.stats.from.contains_key(&publisher) {
            self.stats
                .from
                .entry(publisher.clone())
                .or_default()
                .received += 1;
        }
        self.open(core, since, publisher, a, now_us);
    }

    fn open<R: rand_core::CryptoRng>(
        &mut self,
        core: &mut Core<R>,
        since: u64,
        publisher: ParticipantId,
        a: &Arrival,
        now_us: u64,
    ) {
        let plain = match core.open_media(&publisher, a.stream, &a.frame) {
            Ok(p) => p,
            Err(MediaRejected::NoKey) => {
                if self.waiting.len() == WAITING_MAX {
                    self.waiting.pop_front();
                    core.media_frame_expired();
                }
                self.waiting.push_back((since, publisher, a.clone()));
                return;
            }
            Err(MediaRejected::Invalid) => return,
            Err(MediaRejected::Ended) => {
                self.stats.frames_dropped_at_exit += 1;
                return;
            }
            Err(MediaRejected::Stale) => return,
        };
        self.verified(publisher, a, &plain, now_us);
    }

    // An opened frame: check it byte for byte and count it.
    fn verified(&mut self, publisher: ParticipantId, a: &Arrival, plain: &[u8], now_us: u64) {
        self.stats.frames_opened += 1;
        if let Some(f) = self.stats.from.get_mut(&publisher) {
            f.opened += 1;
        }
        match frames::verify(&publisher, a.stream, plain) {
            Some(info) => {
                if self.stats.from.len() >= MAX_PUBLISHERS
                    && !self.stats.from.contains_key(&publisher)
                {
                    self.stats.frames_verified += 1;
                    return;
                }
                let entry = self.stats.from.entry(publisher).or_default();
                entry.verified += 1;
                entry
                    .counters
                    .entry(a.stream)
                    .or_default()
                    .insert(info.counter);
                self.stats.frames_verified += 1;
                if self.stats.latencies_us.len() < MAX_LATENCY_SAMPLES {
                    self.stats
                        .latencies_us
                        .push(now_us.saturating_sub(info.sent_at_us));
                }
            }
            None => self.stats.frames_corrupt += 1,
        }
    }
}

/// Microseconds since the Unix epoch (the send time written into frames).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn same(a: &Arc<dyn TrackRemote>, b: &Arc<dyn TrackRemote>) -> bool {
    std::ptr::eq(Arc::as_ptr(a).cast::<()>(), Arc::as_ptr(b).cast::<()>())
}

// Reads one receive slot's packets until its track ends.
fn read_slot(
    track: Arc<dyn TrackRemote>,
    mid: String,
    stream: u8,
    tx: mpsc::Sender<MediaEvent>,
    overflowed: Arc<std::sync::atomic::AtomicU64>,
) {
    tokio::spawn(async move {
        while let Some(ev) = track.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                let mut frame = p.payload.to_vec();
                if stream != STREAM_AUDIO {
                    match vp8_payload(&frame) {
                        Some(n) => {
                            frame.drain(..n);
                        }
                        None => continue,
                    }
                }
                let a = Arrival {
                    mid: mid.clone(),
                    stream,
                    frame,
                };
                if let Err(e) = tx.try_send(MediaEvent::Arrival(a)) {
                    if matches!(e, mpsc::error::TrySendError::Full(_)) {
                        overflowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    break;
                }
            }
        }
    });
}

/// The length of the VP8 payload descriptor (RFC 7741 §4.2) at the start of `p`.
fn vp8_payload(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    if b0 & 0x80 == 0 {
        return (p.len() > 1).then_some(1);
    }
    let x = *p.get(1)?;
    let mut n = 2;
    if x & 0x80 != 0 {
        // I: picture id, 1 or 2 bytes.
        n += if p.get(n)? & 0x80 != 0 { 2 } else { 1 };
    }
    if x & 0x40 != 0 {
        n += 1; // L: TL0PICIDX
    }
    if x & 0x30 != 0 {
        n += 1; // T or K: TID/KEYIDX
    }
    (p.len() > n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_e2ee::frame::{FrameCtx, Sealer};
    use confer_proto::ServerMessage;

    #[test]
    fn vp8_descriptor_lengths() {
        assert_eq!(vp8_payload(&[0x10, 0xaa]), Some(1));
        assert_eq!(vp8_payload(&[0x90, 0x80, 0x05, 0xaa]), Some(3));
        assert_eq!(vp8_payload(&[0x90, 0x80, 0x85, 0x05, 0xaa]), Some(4));
        assert_eq!(vp8_payload(&[0x90, 0xe0, 0x05, 0x01, 0x02, 0xaa]), Some(5));
        assert_eq!(vp8_payload(&[0x10]), None);
        assert_eq!(vp8_payload(&[0x90]), None);
        assert_eq!(vp8_payload(&[]), None);
    }

    fn pid(c: char) -> ParticipantId {
        ParticipantId::new(c.to_string().repeat(32)).unwrap()
    }

    /// A welcomed client that holds no media key yet.
    fn core() -> Core<crate::OsRng> {
        let mut c = Core::new(
            crate::os_rng(),
            crate::CoreConfig::new(crate::agreement_hash("a")),
        );
        let v = serde_json::json!({"type": "welcome", "participant_id": pid('b').as_str(),
            "session_id": "s1", "role": "party", "side": "B", "resume_token": "r",
            "resume_grace_secs": 30, "resumed": false, "locked": false});
        c.handle(
            serde_json::from_value::<ServerMessage>(v).unwrap(),
            std::time::Instant::now(),
        );
        c
    }

    /// A well-formed camera frame of `publisher`'s, sealed under a key nobody gave us.
    fn sealed(publisher: &ParticipantId, n: u64) -> Arrival {
        let id: [u8; 16] = hex::decode(publisher.as_str()).unwrap().try_into().unwrap();
        let ctx = FrameCtx::new(b"s1", [7; 16], id, STREAM_CAMERA).unwrap();
        let mut s = Sealer::new(ctx, [9; 32], 0);
        let frame = s
            .seal(
                confer_e2ee::frame::Codec::Vp8,
                &frames::build(publisher, STREAM_CAMERA, n, 0, n == 0),
            )
            .unwrap();
        Arrival {
            mid: "3".into(),
            stream: STREAM_CAMERA,
            frame,
        }
    }

    fn slot(publisher: Option<ParticipantId>) -> Vec<MediaSlot> {
        vec![MediaSlot {
            mid: "3".into(),
            kind: "video".into(),
            participant_id: publisher,
        }]
    }

    #[test]
    fn a_packet_waits_for_its_publisher_then_for_its_key_then_fails() {
        let (mut c, mut book) = (core(), MediaBook::default());
        let a = pid('a');
        book.on_arrival(&mut c, &sealed(&a, 0), 1_000);
        // Nobody named yet: held, not counted against anyone.
        assert_eq!(book.stats.frames_received, 1);
        assert!(book.stats.from.is_empty());
        // Named: attributed to a; no key for it yet, so it waits (not a failure).
        book.set_slots(&mut c, &slot(Some(a.clone())), 2_000);
        assert_eq!(book.stats.from[&a].received, 1);
        book.retry(&mut c, 2_000 + HOLD_US / 2);
        assert_eq!(c.stats().media_decrypt_failures, 0);
        // Its hold counts from its arrival, not from its attribution: at 1_000 + HOLD_US + 1
        // it has waited too long, and fails.
        book.retry(&mut c, 1_000 + HOLD_US + 1);
        assert_eq!(c.stats().media_decrypt_failures, 1);
        assert_eq!(c.stats().decrypt_failures, 1);
        assert_eq!(book.stats.frames_verified, 0);
    }

    #[test]
    fn held_packets_are_bounded_and_expire() {
        let (mut c, mut book) = (core(), MediaBook::default());
        let a = pid('a');
        for n in 0..(HOLD_PER_SLOT as u64 + 3) {
            book.on_arrival(&mut c, &sealed(&a, n), 1_000);
        }
        assert_eq!(
            book.stats.frames_unattributed, 3,
            "the oldest beyond the bound"
        );
        // Named only after they have waited too long: dropped, never attributed.
        book.set_slots(&mut c, &slot(Some(a.clone())), 1_000 + HOLD_US + 1);
        assert_eq!(book.stats.frames_unattributed, 3 + HOLD_PER_SLOT as u64);
        assert!(book.stats.from.is_empty());
        // A packet waiting for its key when the client stops is dropped, not failed.
        book.on_arrival(&mut c, &sealed(&a, 99), 5_000_000);
        book.finish(&mut c, 5_000_001);
        assert_eq!(book.stats.frames_dropped_at_exit, 1);
        assert_eq!(c.stats().decrypt_failures, 0);
    }

    #[test]
    fn a_malformed_frame_fails_at_once_and_after_the_end_nothing_counts() {
        let (mut c, mut book) = (core(), MediaBook::default());
        let a = pid('a');
        book.set_slots(&mut c, &slot(Some(a.clone())), 0);
        let mut bad = sealed(&a, 1);
        bad.frame.truncate(12);
        book.on_arrival(&mut c, &bad, 10);
        assert_eq!(
            c.stats().media_decrypt_failures,
            1,
            "not held: it can never open"
        );
        let _ = c.leave();
        book.on_arrival(&mut c, &sealed(&a, 2), 20);
        book.retry(&mut c, 20 + HOLD_US + 1);
        assert_eq!(c.stats().media_decrypt_failures, 1);
        assert_eq!(book.stats.frames_dropped_at_exit, 1);
    }
}
