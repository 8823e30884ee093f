//! Runs a [`Core`] over a real WebSocket: the loop `confer-bot` and demos use.

use std::time::Duration;

use confer_proto::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::OsRng;
use crate::core::{Core, CoreConfig, Event};
use crate::media::{MediaBook, MediaEvent, MediaOptions, MediaPeer};

/// The largest server message the bot accepts (the server's default frame limit is 64 KiB;
/// a relayed one adds its envelope).
const MAX_SERVER_MESSAGE: usize = 256 * 1024;

/// Close codes after which resuming is pointless (the web client's signalling has the same
/// set, plus 4410 "left").
pub const FINAL_CLOSES: [u16; 8] = [1000, 4000, 4400, 4401, 4403, 4409, 4410, 4429];

/// A client WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long to wait before resuming after the `n`th drop in a row (from 1): 250 ms, doubling,
/// at most 4 s (as the web client does). A node that answers 1013 ("try again") while a
/// session moves is not hammered.
pub fn resume_backoff(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << n.saturating_sub(1).min(4)))
}

/// After a dropped connection: connects to one of `urls`, in turn from `*next`, and sends
/// `hello` (a resume); gives up after a bounded number of refused connections. Returns the
/// socket and the index of the URL that answered. In cluster mode the URLs are other nodes (or
/// the load balancer's one URL again).
pub async fn reconnect(urls: &[String], next: &mut usize, hello: &str) -> Option<(Ws, usize)> {
    if urls.is_empty() {
        return None;
    }
    for _ in 0..urls.len() * 20 {
        let i = *next % urls.len();
        *next += 1;
        let connect = tokio_tungstenite::connect_async(urls[i].as_str());
        if let Ok(Ok((mut ws, _))) = tokio::time::timeout(Duration::from_secs(2), connect).await
            && ws.send(Message::text(hello)).await.is_ok()
        {
            return Some((ws, i));
        }
        // A node that is gone refuses at once: back off a little before the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// What the bot does.
#[derive(Debug, Clone)]
pub struct BotOptions {
    /// `ws://host:port/ws`.
    pub url: String,
    /// Where else to resume when the connection drops without a final close (cluster mode:
    /// other nodes); `url` is tried first.
    pub failover: Vec<String>,
    /// The token (bare) or invite link.
    pub token: String,
    /// Core configuration.
    pub config: CoreConfig,
    /// How long to run.
    pub seconds: u64,
    /// Interval between chat messages once secured.
    pub chat_every: Duration,
    /// Mediators: invites to mint and print (`(role, side)`).
    pub invites: Vec<(confer_proto::Role, Option<confer_proto::Side>)>,
    /// Base URL for printed links.
    pub link_base: String,
    /// Media: a WebRTC peer to the SFU (publishing if `publish` is set).
    pub media: Option<crate::media::MediaOptions>,
    /// Interval between media frames on each published stream.
    pub frame_every: Duration,
}

/// The JSON line `confer-bot` prints on exit.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Role.
    pub role: String,
    /// Chat messages sealed and sent.
    pub messages_sent: u64,
    /// Chat messages that decrypted.
    pub messages_received: u64,
    /// Received messages whose self-check matched.
    pub messages_verified: u64,
    /// Frames or pairwise messages that did not open.
    pub decrypt_failures: u64,
    /// The same, by reason (omitted when there are none).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub decrypt_failure_reasons: std::collections::BTreeMap<String, u64>,
    /// Alarm codes.
    pub alarms: Vec<String>,
    /// The session code at the end.
    pub session_code: Option<String>,
    /// Whether every key was deleted at the end.
    pub keys_deleted: bool,
    /// Acknowledgments received for the sender keys this bot sent.
    pub acks_received: u64,
    /// Display names received that matched their sender's commitment in a signed roster.
    pub names_verified: u64,
    /// Display names received that did not match (never shown).
    pub names_rejected: u64,
    /// The verified names (other participants'), sorted.
    pub names: Vec<String>,
    /// Mediators: arrivals whose acknowledgment verified but had no invite secret (not admitted).
    pub consents_held: u64,
    /// Media frames sealed and sent (microphone and camera).
    pub frames_sent: u64,
    /// Media packets that arrived in a receive slot.
    pub frames_received: u64,
    /// Media frames that opened and matched what their publisher would have built, byte for byte.
    pub frames_verified: u64,
    /// Media frames that did not open (also in `decrypt_failures`).
    pub media_decrypt_failures: u64,
    /// Chat and media frames sealed under a key from before this bot joined their room (or
    /// already deleted): dropped unopened, not failures.
    pub stale_frames: u64,
    /// How many publishers this bot verified frames of.
    pub publishers_verified: u64,
    /// Media frames that opened (decrypted and authenticated), whether or not they were a
    /// bot's synthetic frames (a browser's are real Opus and VP8).
    pub frames_opened: u64,
    /// How many publishers this bot opened frames of (bots and browsers alike).
    pub publishers_opened: u64,
    /// Media frames not sent because the room was still being secured (muted).
    pub frames_muted: u64,
    /// Media packets dropped because no `media_slots` ever named their publisher.
    pub frames_unattributed: u64,
    /// Media frames still waiting (under 2 s) for their key when the bot stopped.
    pub frames_dropped_at_exit: u64,
    /// Median one-way latency of verified frames, in milliseconds.
    pub frame_latency_ms_p50: Option<u64>,
    /// Connections that dropped without a final close and were resumed.
    pub resumes: u64,
    /// Why the bot stopped.
    pub stopped: String,
}

/// A self-describing chat text a receiver can check.
pub fn bot_text(sender: &str, n: u64) -> String {
    format!("confer-bot {sender} #{n} {}", bot_check(sender, n))
}

fn bot_check(sender: &str, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"confer-bot");
    h.update(sender.as_bytes());
    h.update(n.to_be_bytes());
    hex::encode(&h.finalize()[..4])
}

/// Whether `text` is a well-formed bot message.
pub fn check_bot_text(text: &str) -> bool {
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["confer-bot", sender, n, check] => n
            .strip_prefix('#')
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| bot_check(sender, n) == *check),
        _ => false,
    }
}

/// One server frame, strictly parsed: `None` for anything that is not a server message.
pub fn parse_server(text: &str) -> Option<ServerMessage> {
    serde_json::from_str(text).ok()
}

/// Everything the core queued for the server, as JSON text frames. `keep` decides per
/// message (tests hold some back to play a broken client; `confer-bot` keeps all).
pub fn drain_outgoing<R: rand_core::CryptoRng>(
    core: &mut Core<R>,
    mut keep: impl FnMut(&ClientMessage) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = core.poll_send() {
        if keep(&m) {
            // Plain data structures always serialize.
            out.push(serde_json::to_string(&m).expect("client messages serialize"));
        }
    }
    out
}

/// Hands one server message to the core and the media bookkeeping, in the order every shell
/// needs: new slots first (held packets learn their publisher), then the core (keys may
/// arrive), then the frames that were waiting for either.
pub fn apply<R: rand_core::CryptoRng>(
    core: &mut Core<R>,
    book: &mut MediaBook,
    msg: ServerMessage,
    now: std::time::Instant,
) {
    if let ServerMessage::MediaSlots { slots } = &msg {
        book.set_slots(core, slots, crate::media::now_us());
    }
    core.handle(msg, now);
    book.retry(core, crate::media::now_us());
}

/// The media peer a welcome calls for, offered with the ICE servers (TURN) the welcome
/// handed out: the peer, and the `media_offer` to send.
pub async fn offer_media(
    opts: &MediaOptions,
    ice_servers: Vec<confer_proto::IceServer>,
) -> anyhow::Result<(MediaPeer, ClientMessage)> {
    let mut opts = opts.clone();
    opts.ice_servers = ice_servers;
    let (peer, sdp) = MediaPeer::offer(&opts).await?;
    Ok((peer, ClientMessage::MediaOffer { sdp }))
}

/// What a media peer reported, applied to the bookkeeping; `false` when the peer is gone.
pub fn on_media_event<R: rand_core::CryptoRng>(
    core: &mut Core<R>,
    book: &mut MediaBook,
    ev: Option<MediaEvent>,
) -> bool {
    match ev {
        Some(MediaEvent::Arrival(a)) => {
            book.on_arrival(core, &a, crate::media::now_us());
            true
        }
        Some(MediaEvent::State(_)) => true,
        None => false,
    }
}

/// Connects, runs for `seconds`, and returns the summary.
pub async fn run_bot(opts: BotOptions) -> anyhow::Result<Summary> {
    let invite = crate::link::Invite::parse(&opts.token).map_err(anyhow::Error::msg)?;
    let mut config = opts.config.clone();
    config.invite = Some(invite.clone());
    if let Some(m) = &opts.media {
        config.media_receive = true;
        if m.publish {
            config.media_streams = vec![
                confer_e2ee::frame::STREAM_AUDIO,
                confer_e2ee::frame::STREAM_CAMERA,
            ];
        }
    }
    let mut core: Core<OsRng> = Core::new(crate::os_rng(), config);
    // A server may not make this client buffer more than the protocol's largest frame.
    let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_SERVER_MESSAGE))
        .max_frame_size(Some(MAX_SERVER_MESSAGE));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(opts.url.as_str(), Some(ws_config), false)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to {}: {e}; is `confer serve` running?",
                    opts.url
                )
            })?;
    let hello = serde_json::to_string(&core.hello(&invite.token))?;
    ws.send(Message::text(hello)).await?;

    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let mut chat = tokio::time::interval(opts.chat_every);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut summary = Summary::default();
    let mut sent_n = 0u64;
    let mut winding_down = false;
    let mut role = None;
    let mut pending_invites = opts.invites.clone();
    // Invites asked for and not answered yet, in order: each link is bound to the role and
    // side this bot asked for, never to what the server's answer says.
    let mut requested: std::collections::VecDeque<(
        confer_proto::Role,
        Option<confer_proto::Side>,
    )> = std::collections::VecDeque::new();
    let mut media: Option<crate::media::MediaPeer> = None;
    let mut book = crate::media::MediaBook::default();
    let publish: Vec<u8> = match &opts.media {
        Some(m) if m.publish => vec![
            confer_e2ee::frame::STREAM_AUDIO,
            confer_e2ee::frame::STREAM_CAMERA,
        ],
        _ => Vec::new(),
    };
    let mut frames = tokio::time::interval(opts.frame_every);
    // Resuming after a drop (a node that died or drained, in cluster mode): the newest resume
    // token, where to go, and how many drops in a row went without a welcome (bounded).
    let urls: Vec<String> = std::iter::once(opts.url.clone())
        .chain(opts.failover.iter().cloned())
        .collect();
    let mut resume_token: Option<String> = None;
    let mut next_url = 0usize;
    let mut drops_in_a_row = 0u32;
    // What to send, in order: kept when the socket fails, and sent after the resume (the
    // failure itself shows as the socket's close or error below).
    let mut outbox: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    loop {
        outbox.extend(drain_outgoing(&mut core, |_| true));
        while let Some(m) = outbox.front() {
            if ws.send(Message::text(m.as_str())).await.is_err() {
                break;
            }
            outbox.pop_front();
        }
        while let Some(ev) = core.poll_event() {
            match ev {
                Event::Chat { text, .. } if check_bot_text(&text) => {
                    summary.messages_verified += 1;
                }
                Event::Alarm(a) => eprintln!("confer-bot: ALARM {}", a.code()),
                Event::Name { name, .. } => summary.names.push(name),
                Event::ServerError(code) => eprintln!("confer-bot: server error {code}"),
                Event::Welcome { .. } => {}
                _ => {}
            }
        }
        let next = tokio::select! {
            m = ws.next() => m,
            _ = chat.tick() => {
                if let (Some(pid), false) = (core.participant_id().cloned(), winding_down) {
                    let short = &pid.as_str()[..8];
                    if core.send_chat(&bot_text(short, sent_n)).is_ok() {
                        sent_n += 1;
                    }
                }
                continue;
            }
            _ = tick.tick() => {
                core.tick(Instant::now().into_std());
                book.retry(&mut core, crate::media::now_us());
                continue;
            }
            _ = frames.tick(), if !publish.is_empty() && !winding_down => {
                if let Some(peer) = media.as_mut().filter(|m| m.is_connected()) {
                    for (stream, frame) in book.next_frames(&mut core, &publish, crate::media::now_us()) {
                        if let Err(e) = peer.send(stream, &frame).await {
                            eprintln!("confer-bot: media send failed: {e:#}");
                        }
                    }
                }
                continue;
            }
            ev = async {
                match media.as_mut() {
                    Some(m) => m.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(MediaEvent::State(webrtc::peer_connection::RTCPeerConnectionState::Failed)) = &ev {
                    eprintln!("confer-bot: the media connection failed");
                }
                if !on_media_event(&mut core, &mut book, ev) {
                    media = None;
                }
                continue;
            }
            () = tokio::time::sleep_until(deadline), if !winding_down => {
                winding_down = true;
                // Mediators end the session; everyone else leaves.
                let bye = if role == Some(confer_proto::Role::Mediator) { ClientMessage::End } else { core.leave() };
                outbox.push_back(serde_json::to_string(&bye)?);
                continue;
            }
            () = tokio::time::sleep_until(deadline + Duration::from_secs(5)) => {
                summary.stopped = "timeout".into();
                break;
            }
        };
        let (code, why) = match next {
            Some(Ok(Message::Text(t))) => (None, t),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                let why = frame.map_or_else(
                    || "closed".into(),
                    |f| format!("closed {}", u16::from(f.code)),
                );
                (Some(code), why.into())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => (Some(1006), format!("connection error: {e}").into()),
            None => (Some(1006), "connection closed".into()),
        };
        if let Some(code) = code {
            // Dropped. Resume (the newest token, on `url` then the failover URLs in turn)
            // unless the close was final or we were winding down anyway.
            drops_in_a_row += 1;
            let again = match &resume_token {
                Some(token)
                    if !winding_down && !FINAL_CLOSES.contains(&code) && drops_in_a_row <= 30 =>
                {
                    tokio::time::sleep(resume_backoff(drops_in_a_row)).await;
                    let hello = serde_json::to_string(&core.hello(token))?;
                    reconnect(&urls, &mut next_url, &hello).await
                }
                _ => None,
            };
            let Some((new_ws, _)) = again else {
                summary.stopped = why.to_string();
                break;
            };
            eprintln!("confer-bot: connection dropped ({code}); resumed");
            summary.resumes += 1;
            ws = new_ws;
            // An offer from the old peer is no use to the node that answers now.
            outbox.retain(|m| !m.starts_with(r#"{"type":"media_offer""#));
            // The next welcome comes from the session's (new) owner: its SFU gets a new peer.
            // Closed aside: closing a peer whose SFU is gone can take seconds.
            if let Some(old) = media.take() {
                tokio::spawn(async move { old.close().await });
            }
            continue;
        }
        let text = why;
        let Some(msg) = parse_server(text.as_str()) else {
            continue;
        };
        if let ServerMessage::Welcome {
            resume_token: t, ..
        } = &msg
        {
            resume_token = Some(t.clone());
            drops_in_a_row = 0;
        }
        if let ServerMessage::MediaAnswer { sdp } = &msg
            && let Some(peer) = media.as_mut()
            && let Err(e) = peer.accept_answer(sdp.clone()).await
        {
            eprintln!("confer-bot: {e:#}");
        }
        let welcome_ice = match &msg {
            ServerMessage::Welcome { ice_servers, .. } => Some(ice_servers.clone()),
            _ => None,
        };
        if let ServerMessage::Invite {
            token,
            role: r,
            side,
            ..
        } = &msg
        {
            let Some((want_role, want_side)) = requested.pop_front() else {
                eprintln!("confer-bot: an invite nobody asked for; ignored");
                continue;
            };
            if (want_role, want_side) != (*r, *side) {
                eprintln!(
                    "confer-bot: the server answered an invite for another role or side; ignored"
                );
                continue;
            }
            let psk = core.issue_invite(want_role, want_side);
            let link = crate::link::Invite {
                token: token.clone(),
                psk: Some(psk),
                mediator_ik: core.identity().map(|i| i.ik_pub()),
            };
            let side = side.map(|s| format!(" {s}")).unwrap_or_default();
            eprintln!(
                "confer-bot: invite {}{side}: {}",
                r.as_str(),
                link.link(&opts.link_base)
            );
        }
        apply(&mut core, &mut book, msg, Instant::now().into_std());
        // A resume (after a drop, perhaps on another node): a new media peer for its SFU.
        if let (Some(ice_servers), Some(_), Some(mo), None) =
            (&welcome_ice, role, &opts.media, &media)
        {
            match offer_media(mo, ice_servers.clone()).await {
                Ok((peer, offer)) => {
                    media = Some(peer);
                    outbox.push_back(serde_json::to_string(&offer)?);
                }
                Err(e) => eprintln!("confer-bot: no media after resuming: {e:#}"),
            }
        }
        // The first welcome the core accepted (a later or refused one changes nothing).
        if let (Some(ice_servers), None, Some(r)) = (welcome_ice, role, core.role()) {
            role = Some(r);
            if let (Some(mo), None) = (&opts.media, &media) {
                match offer_media(mo, ice_servers).await {
                    Ok((peer, offer)) => {
                        media = Some(peer);
                        outbox.push_back(serde_json::to_string(&offer)?);
                    }
                    // Chat goes on without media.
                    Err(e) => eprintln!("confer-bot: no media: {e:#}"),
                }
            }
            if r == confer_proto::Role::Mediator {
                for (role, side) in pending_invites.drain(..) {
                    requested.push_back((role, side));
                    let m = ClientMessage::CreateInvite {
                        role,
                        side,
                        ttl_secs: None,
                    };
                    outbox.push_back(serde_json::to_string(&m)?);
                }
            }
        }
    }
    while let Some(ev) = core.poll_event() {
        if let Event::Chat { text, .. } = ev
            && check_bot_text(&text)
        {
            summary.messages_verified += 1;
        }
    }
    if let Some(peer) = media.take() {
        peer.close().await;
    }
    book.finish(&mut core, crate::media::now_us());
    let s = core.stats();
    let m = &book.stats;
    summary.frames_sent = m.frames_sent;
    summary.frames_received = m.frames_received;
    summary.frames_verified = m.frames_verified;
    summary.publishers_verified = m.from.values().filter(|f| f.verified > 0).count() as u64;
    summary.frames_opened = m.frames_opened;
    summary.publishers_opened = m.from.values().filter(|f| f.opened > 0).count() as u64;
    summary.frames_muted = m.frames_muted;
    summary.frames_unattributed = m.frames_unattributed;
    summary.frames_dropped_at_exit = m.frames_dropped_at_exit;
    summary.media_decrypt_failures = s.media_decrypt_failures;
    let mut lat = m.latencies_us.clone();
    lat.sort_unstable();
    summary.frame_latency_ms_p50 = lat.get(lat.len() / 2).map(|us| us / 1000);
    summary.role = role.map(|r| r.as_str().to_owned()).unwrap_or_default();
    summary.messages_sent = s.messages_sent;
    summary.messages_received = s.messages_received;
    summary.decrypt_failures = s.decrypt_failures;
    summary.stale_frames = s.stale_frames;
    summary.decrypt_failure_reasons = s
        .failure_reasons
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    summary.alarms = s.alarms.clone();
    summary.keys_deleted = s.keys_deleted;
    summary.acks_received = s.acks_received;
    summary.names_verified = s.names_verified;
    summary.names_rejected = s.names_rejected;
    summary.names.sort();
    summary.names.dedup();
    summary.consents_held = s.consents_held;
    summary.session_code = core.session_code().map(str::to_owned);
    Ok(summary)
}
