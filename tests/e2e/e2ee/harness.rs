//! Rust clients (confer-client's Core) on real WebSockets, each pumped by its own task, with
//! everything they send and receive recorded for the assertions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confer_client::driver;
use confer_client::envelope::Envelope;
use confer_client::media::{MediaBook, MediaOptions, MediaPeer, now_us};
use confer_client::{Core, CoreConfig, Event, NotSecured};
use confer_e2ee::frame::{STREAM_AUDIO, STREAM_CAMERA};
use confer_proto::{ChannelId, ClientMessage, ParticipantId, Role, ServerMessage, Side};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

pub const PATIENCE: Duration = Duration::from_secs(15);
pub const AGREEMENT: &str =
    "Agreement to mediate: confidential, no recording, nobody else present.";
/// Marks every 32-byte secret a canary RNG draws (keys, seeds, invite secrets).
pub const KEY_MARKER: &[u8; 16] = b"KEY-CANARY-7f3a!";

/// The OS RNG, optionally stamping [`KEY_MARKER`] at the start of every 32-byte draw.
#[derive(Debug, Clone)]
/// A peer's RNG. With `canary`, every 32-byte draw starts with [`KEY_MARKER`]: in
/// `confer-client` and `confer-e2ee` exactly the secrets are drawn 32 bytes at a time, so the
/// marker is stamped into each identity seed (Ed25519, `IK`), each session secret (X25519,
/// `EK`), each HPKE ephemeral secret of a pairwise message, each sender base key (every stream,
/// room and generation) and each invite secret. Non-secret draws (16-byte channel ids and
/// name salts) are not stamped. `stamped` counts the stamped draws.
pub struct PeerRng {
    pub canary: bool,
    pub stamped: Arc<AtomicU64>,
}

impl rand_core::TryRng for PeerRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        getrandom::fill(dst).expect("OS RNG");
        if self.canary && dst.len() == 32 {
            dst[..16].copy_from_slice(KEY_MARKER);
            self.stamped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for PeerRng {}

/// What a peer has seen.
pub struct PeerState {
    pub core: Core<PeerRng>,
    pub events: Vec<Event>,
    pub inbound: Vec<ServerMessage>,
    /// Every text frame this peer sent: exactly the bytes the server received from it.
    pub outbound: Vec<String>,
    pub closed: Option<u16>,
    /// A malicious client: ignores `kicked` and `session_ended` and keeps its keys.
    pub keep_keys: bool,
    /// A broken client: never sends the sender keys its core makes.
    pub withhold_keys: bool,
    /// Media (webrtc-rs peer to the SFU): what was sent, received, opened and verified.
    pub media: MediaBook,
    /// Whether the peer publishes frames now.
    pub publishing: bool,
    /// The SFU answered this peer's offer.
    pub media_answered: bool,
    /// The media peer connection is up.
    pub media_connected: bool,
    /// The last sealed frames this peer sent: (room it was in, stream, frame).
    pub sent_frames: std::collections::VecDeque<(Option<ChannelId>, u8, Vec<u8>)>,
    /// Connections dropped and resumed ([`Behaviour::failover`]), and the close codes seen.
    pub resumes: u32,
    pub drops: Vec<u16>,
    /// The address of the current connection.
    pub addr: SocketAddr,
}

impl PeerState {
    pub fn chats(&self) -> Vec<(ParticipantId, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Chat { from, text, .. } => Some((from.clone(), text.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn has_chat(&self, text: &str) -> bool {
        self.chats().iter().any(|(_, t)| t == text)
    }

    pub fn alarms(&self) -> Vec<String> {
        self.core.stats().alarms.clone()
    }

    /// Relayed envelopes received, with their sender.
    pub fn envelopes(&self) -> Vec<(ParticipantId, Envelope)> {
        self.inbound
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Relayed { from, data, .. } => {
                    Envelope::from_data(data).map(|e| (from.clone(), e))
                }
                _ => None,
            })
            .collect()
    }

    /// Chat frames received from `from`, as (cid, frame).
    pub fn chat_frames_from(&self, from: &ParticipantId) -> Vec<([u8; 16], Vec<u8>)> {
        self.envelopes()
            .into_iter()
            .filter(|(f, _)| f == from)
            .filter_map(|(_, e)| match e {
                Envelope::Chat { cid, f } => Some((cid.array::<16>()?, f.0)),
                _ => None,
            })
            .collect()
    }
}

/// How a test client misbehaves, from its first message on.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Cluster mode: when the connection drops without a final close (1012, 1013, a dead
    /// node), resume with the newest resume token on these addresses in turn, as a client
    /// behind a load balancer would; a media peer is made anew for the node that answers.
    /// Empty: a dropped connection stays closed.
    pub failover: Vec<SocketAddr>,
    pub keep_keys: bool,
    pub withhold_keys: bool,
    /// Connect a webrtc-rs peer to the SFU once welcomed, publishing a microphone and a
    /// camera (stream 0 and 1) while `publishing` is set, with this many slots of each kind.
    pub media_slots: Option<usize>,
    /// Media through the TURN server from `welcome` only (relay candidates).
    pub relay_only: bool,
}

/// The streams media peers publish.
pub const MEDIA_STREAMS: [u8; 2] = [STREAM_AUDIO, STREAM_CAMERA];
/// Frame interval per stream while publishing.
const FRAME_EVERY: Duration = Duration::from_millis(20);

enum Cmd {
    Publish(bool),
    AdmitHeld(ParticipantId, Role, Option<Side>),
    Send(ClientMessage),
    Chat(String, oneshot::Sender<Result<(), NotSecured>>),
    /// Drop the connection (as a network would), to resume per [`Behaviour::failover`].
    Drop,
}

pub struct Peer {
    pub state: Arc<Mutex<PeerState>>,
    changed: watch::Receiver<u64>,
    cmd: mpsc::UnboundedSender<Cmd>,
    pub pid: ParticipantId,
}

pub fn config() -> CoreConfig {
    let mut c = CoreConfig::new(confer_client::agreement_hash(AGREEMENT));
    c.unsigned_grace = Duration::from_millis(300);
    c.keep_old_keys = Duration::from_millis(300);
    c.stale_key_after = Duration::from_secs(5);
    // Test tokens are bare (minted by the server's helper), with no invite secret.
    c.admit_without_invite_secret = true;
    c
}

impl Peer {
    pub async fn join(addr: SocketAddr, token: &str, cfg: CoreConfig) -> Self {
        Self::join_with(
            addr,
            token,
            cfg,
            PeerRng {
                canary: false,
                stamped: Arc::default(),
            },
            Behaviour::default(),
        )
        .await
    }

    pub async fn join_with(
        addr: SocketAddr,
        token: &str,
        cfg: CoreConfig,
        rng: PeerRng,
        behaviour: Behaviour,
    ) -> Self {
        let core = Core::new(rng, cfg);
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("connect");
        let hello = serde_json::to_string(&core.hello(token)).expect("json");
        ws.send(Message::text(hello.clone()))
            .await
            .expect("send hello");
        let state = Arc::new(Mutex::new(PeerState {
            core,
            events: Vec::new(),
            inbound: Vec::new(),
            outbound: vec![hello],
            closed: None,
            keep_keys: behaviour.keep_keys,
            withhold_keys: behaviour.withhold_keys,
            media: MediaBook::default(),
            publishing: false,
            media_answered: false,
            media_connected: false,
            sent_frames: Default::default(),
            resumes: 0,
            drops: Vec::new(),
            addr,
        }));
        let (bump, changed) = watch::channel(0u64);
        let (cmd, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let st = state.clone();
        tokio::spawn(async move {
            let mut ws = ws;
            let mut resume_token: Option<String> = None;
            let mut next_addr = 1usize;
            // Drops in a row without a welcome: bounded, so a lost session ends the peer.
            let mut drops_in_a_row = 0u32;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut frames = tokio::time::interval(FRAME_EVERY);
            let mut media: Option<MediaPeer> = None;
            let mut n = 0u64;
            loop {
                // Send what the core queued, record its events, tell the waiters.
                let outgoing: Vec<String> = {
                    let mut s = st.lock().expect("lock");
                    let withhold = s.withhold_keys;
                    // The shell `confer-bot` runs (driver), with one test hook: a broken client
                    // that never sends its sender keys.
                    let out = driver::drain_outgoing(&mut s.core, |m| {
                        let is_key = matches!(m, ClientMessage::Relay { data, .. }
                            if matches!(Envelope::from_data(data), Some(Envelope::Pw { t: 1, .. })));
                        !(withhold && is_key)
                    });
                    while let Some(e) = s.core.poll_event() {
                        s.events.push(e);
                    }
                    s.outbound.extend(out.iter().cloned());
                    out
                };
                for o in outgoing {
                    if ws.send(Message::text(o)).await.is_err() {
                        break;
                    }
                }
                n += 1;
                let _ = bump.send(n);
                let mut dropped: Option<u16> = None;
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let Some(msg) = driver::parse_server(t.as_str()) else { continue };
                            if let ServerMessage::Welcome { resume_token: t, .. } = &msg {
                                resume_token = Some(t.clone());
                                drops_in_a_row = 0;
                            }
                            match (&msg, behaviour.media_slots, media.as_mut()) {
                                (ServerMessage::Welcome { ice_servers, .. }, Some(slots), None) => {
                                    let opts = MediaOptions {
                                        publish: true,
                                        audio_slots: slots,
                                        video_slots: slots,
                                        bind: [127, 0, 0, 1].into(),
                                        ice_servers: Vec::new(),
                                        relay_only: behaviour.relay_only,
                                    };
                                    let (peer, offer) = driver::offer_media(&opts, ice_servers.clone()).await.expect("media offer");
                                    media = Some(peer);
                                    let offer = serde_json::to_string(&offer).expect("json");
                                    st.lock().expect("lock").outbound.push(offer.clone());
                                    if ws.send(Message::text(offer)).await.is_err() {
                                        break;
                                    }
                                }
                                (ServerMessage::MediaAnswer { sdp }, _, Some(peer)) => {
                                    peer.accept_answer(sdp.clone()).await.expect("the SFU's answer applies");
                                    st.lock().expect("lock").media_answered = true;
                                }
                                _ => {}
                            }
                            let mut s = st.lock().expect("lock");
                            let s = &mut *s;
                            s.inbound.push(msg.clone());
                            // A malicious client (test hook) ignores its end and keeps its keys.
                            let ignore = s.keep_keys && matches!(msg, ServerMessage::SessionEnded | ServerMessage::Kicked);
                            if !ignore {
                                driver::apply(&mut s.core, &mut s.media, msg, tokio::time::Instant::now().into_std());
                            }
                        }
                        Some(Ok(Message::Close(f))) => {
                            dropped = Some(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => dropped = Some(1006),
                    },
                    c = rx.recv() => {
                        let mut s = st.lock().expect("lock");
                        match c {
                            // Through the core: a mediator signs only placements it asked for.
                            Some(Cmd::Send(m)) => s.core.command(m),
                            Some(Cmd::Publish(on)) => s.publishing = on,
                            Some(Cmd::AdmitHeld(p, role, side)) => {
                                s.core.admit_held(&p, role, side);
                            }
                            Some(Cmd::Chat(text, reply)) => {
                                let _ = reply.send(s.core.send_chat(&text));
                            }
                            Some(Cmd::Drop) => dropped = Some(1006),
                            None => break,
                        }
                    }
                    _ = tick.tick() => {
                        let mut s = st.lock().expect("lock");
                        let s = &mut *s;
                        s.core.tick(tokio::time::Instant::now().into_std());
                        s.media.retry(&mut s.core, now_us());
                    }
                    _ = frames.tick(), if media.is_some() => {
                        let out = {
                            let mut s = st.lock().expect("lock");
                            let s = &mut *s;
                            if s.publishing && s.media_connected {
                                let out = s.media.next_frames(&mut s.core, &MEDIA_STREAMS, now_us());
                                let room = s.core.secured().cloned();
                                for (stream, f) in &out {
                                    if s.sent_frames.len() == 32 {
                                        s.sent_frames.pop_front();
                                    }
                                    s.sent_frames.push_back((room.clone(), *stream, f.clone()));
                                }
                                out
                            } else {
                                Vec::new()
                            }
                        };
                        if let Some(peer) = media.as_mut() {
                            for (stream, f) in out {
                                peer.send(stream, &f).await.expect("media send");
                            }
                        }
                    }
                    ev = async {
                        match media.as_mut() {
                            Some(m) => m.next().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        {
                        let mut s = st.lock().expect("lock");
                        let s = &mut *s;
                        driver::on_media_event(&mut s.core, &mut s.media, ev);
                        s.media_connected = media.as_ref().is_some_and(|m| m.is_connected());
                        }
                        n += 1;
                        let _ = bump.send(n);
                    }
                }
                let Some(code) = dropped else { continue };
                drops_in_a_row += 1;
                let resumable = !behaviour.failover.is_empty()
                    && !driver::FINAL_CLOSES.contains(&code)
                    && drops_in_a_row <= 30;
                let again = match (&resume_token, resumable) {
                    (Some(token), true) => {
                        let hello = {
                            let mut s = st.lock().expect("lock");
                            s.drops.push(code);
                            let hello = serde_json::to_string(&s.core.hello(token)).expect("json");
                            s.outbound.push(hello.clone());
                            hello
                        };
                        tokio::time::sleep(driver::resume_backoff(drops_in_a_row)).await;
                        let urls: Vec<String> = behaviour
                            .failover
                            .iter()
                            .map(|a| format!("ws://{a}/ws"))
                            .collect();
                        driver::reconnect(&urls, &mut next_addr, &hello)
                            .await
                            .map(|(ws, i)| (ws, behaviour.failover[i]))
                    }
                    _ => None,
                };
                let Some((new_ws, addr)) = again else {
                    st.lock().expect("lock").closed = Some(code);
                    n += 1;
                    let _ = bump.send(n);
                    break;
                };
                ws = new_ws;
                // The next welcome comes from the session's (new) owner: its SFU gets a new peer.
                // Closed aside: closing a peer whose SFU is gone can take seconds.
                if let Some(old) = media.take() {
                    tokio::spawn(async move { old.close().await });
                }
                let mut s = st.lock().expect("lock");
                s.resumes += 1;
                s.addr = addr;
                s.media_answered = false;
                s.media_connected = false;
            }
        });
        let mut p = Self {
            state,
            changed,
            cmd,
            pid: ParticipantId::new("pending").expect("id"),
        };
        p.pid = p
            .until(|s| {
                s.events.iter().find_map(|e| match e {
                    Event::Welcome { participant_id, .. } => Some(participant_id.clone()),
                    _ => None,
                })
            })
            .await;
        p
    }

    /// Waits until `f` returns something (the peer's state changes drive the checks).
    pub async fn until<T>(&mut self, f: impl Fn(&PeerState) -> Option<T>) -> T {
        let wait = async {
            loop {
                if let Some(t) = f(&self.state.lock().expect("lock")) {
                    return t;
                }
                if self.changed.changed().await.is_err() {
                    if let Some(t) = f(&self.state.lock().expect("lock")) {
                        return t;
                    }
                    panic!("the peer's connection ended before the condition held");
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("timed out waiting for the peer")
    }

    pub async fn until_true(&mut self, f: impl Fn(&PeerState) -> bool) {
        self.until(|s| f(s).then_some(())).await;
    }

    pub async fn secured_in(&mut self, ch: &str) {
        let ch = ChannelId::new(ch).expect("channel");
        self.until_true(|s| s.core.secured() == Some(&ch)).await;
    }

    pub async fn chat(&self, text: &str) -> Result<(), NotSecured> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Chat(text.to_owned(), tx))
            .map_err(|_| NotSecured)?;
        rx.await.map_err(|_| NotSecured)?
    }

    /// Mediators: a person admits a held arrival.
    pub fn admit_held(&self, p: &ParticipantId, role: Role, side: Option<Side>) {
        let _ = self.cmd.send(Cmd::AdmitHeld(p.clone(), role, side));
    }

    /// Media peers: start or stop publishing frames.
    pub fn publish(&self, on: bool) {
        let _ = self.cmd.send(Cmd::Publish(on));
    }

    pub fn send(&self, m: ClientMessage) {
        let _ = self.cmd.send(Cmd::Send(m));
    }

    /// Drops the connection without a close, as a broken network does.
    pub fn drop_connection(&self) {
        let _ = self.cmd.send(Cmd::Drop);
    }

    pub fn relay_raw(&self, to: &ParticipantId, data: String) {
        self.send(ClientMessage::Relay {
            to: confer_proto::RelayTarget::Participant(to.clone()),
            data,
        });
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut PeerState) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }
}
