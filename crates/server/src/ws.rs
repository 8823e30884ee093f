//! One WebSocket connection: hello and authentication, size and rate limits, decoding, and
//! hand-off of commands to the session task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use confer_proto::{
    ClientMessage, CloseCode, ErrorCode, PROTOCOL_VERSION, ParticipantId, Role, ServerMessage,
    SessionId, decode_client,
};
use confer_room::Command;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::conn::{Conn, Outbound};
use crate::messages::{
    DocRequest, InviteRefused, MediaCmd, OfferRefused, SessionCmd, SessionHandle,
};
use crate::metrics as m;
use crate::session;
use crate::spent::Reservation;
use crate::state::AppState;
use crate::token::{Claims, TokenError, TokenKind, Verified, random_id, unix_now};

const OUTBOUND_QUEUE: usize = 1024;

struct Joined {
    handle: SessionHandle,
    pid: ParticipantId,
}

/// Why a join with a valid invite did not happen.
enum JoinRefused {
    /// Cluster mode: another node started the session at the same moment; the client tries
    /// again and is relayed there.
    TryAgain,
    /// Refused with this code; the holder may try again (the invite is not spent).
    Code(ErrorCode),
    /// The invite can never work here (closed with 4401).
    Token(TokenError),
}

struct Connection {
    state: Arc<AppState>,
    conn: Conn,
    joined: Option<Joined>,
    errors: u32,
    /// Messages, and bytes: a connection is held to both budgets.
    bucket: TokenBucket,
    bytes: TokenBucket,
    strikes: u32,
    /// A place among the connections that have not completed hello; given back at hello.
    pass: Option<crate::gate::Pass>,
    /// The answer to this connection's latest `media_offer`, awaited beside the socket (an
    /// offer from the waiting room is answered only after admission).
    pending_offer: Option<oneshot::Receiver<Result<String, OfferRefused>>>,
    peer: Peer,
    /// Cluster mode: the hello as received, for the owner node when it is relayed there.
    hello_text: Option<Utf8Bytes>,
}

/// What woke a connection's loop.
enum Woke {
    Frame(Option<Result<Message, axum::Error>>),
    Answer(Result<Result<String, OfferRefused>, oneshot::error::RecvError>),
}

enum Flow {
    Continue,
    Close(CloseCode),
    Stop,
    /// Cluster mode: the session lives on another node; relay this connection there (its
    /// base URL).
    Relay(String),
}

/// Where a hello's session is.
enum Route {
    /// On this node.
    Here(SessionHandle),
    /// Nowhere yet, and this hello may start it here (once its invite is spent).
    New,
    /// Cluster mode: on the node at this URL.
    There(String),
    /// Nowhere: never started, or over.
    Missing,
    /// Cluster mode: being moved (its owner is unreachable and its lease not run out yet), or
    /// Redis did not answer: the client should try again shortly.
    Busy,
    /// This node is draining and no other can start it.
    Draining,
}

/// Close code for [`Route::Busy`]: 1013, "try again later".
const TRY_AGAIN: u16 = 1013;
/// Its reason text.
const TRY_AGAIN_REASON: &str = "the session is moving to another node; try again";

/// Who is at the other end of a socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The client's address (as the relaying node saw it, for a relayed connection).
    pub(crate) ip: std::net::IpAddr,
    /// Cluster mode: relayed here by another node (so never relayed on again).
    pub(crate) relayed: bool,
}

/// Serves one upgraded socket until it closes.
pub(crate) async fn serve(
    socket: WebSocket,
    state: Arc<AppState>,
    pass: crate::gate::Pass,
    peer: Peer,
) {
    m::connection_opened();
    tracing::info!("connection opened");
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let shutdown = Arc::new(Notify::new());
    let writer_shutdown = shutdown.clone();
    let writer = tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            match o {
                Outbound::Text(t) => {
                    if sink.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
                Outbound::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break;
                }
            }
        }
        // The socket is done for writing (closed, failed, or dropped by the room for being
        // too slow): stop reading too.
        writer_shutdown.notify_one();
    });

    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let config = &state.config;
    let bucket = TokenBucket::new(config.rate_limit_msgs_per_sec, config.rate_limit_burst);
    // Every frame the server accepts must be able to pass.
    let burst_bytes = config
        .rate_limit_burst_bytes
        .max(u32::try_from(config.max_frame_bytes).unwrap_or(u32::MAX));
    let bytes = TokenBucket::new(config.rate_limit_bytes_per_sec, burst_bytes);
    let hello_deadline = Instant::now() + Duration::from_secs(config.hello_timeout_secs);
    let mut c = Connection {
        conn: Conn {
            id,
            tx,
            shutdown: shutdown.clone(),
        },
        state: state.clone(),
        joined: None,
        errors: 0,
        bucket,
        bytes,
        strikes: 0,
        pass: Some(pass),
        pending_offer: None,
        peer,
        hello_text: None,
    };
    let mut relay_to = None;

    loop {
        let mut pending = c.pending_offer.take();
        let woke = tokio::select! {
            m = stream.next() => Woke::Frame(m),
            () = shutdown.notified() => break,
            () = tokio::time::sleep_until(hello_deadline), if c.joined.is_none() => {
                c.close(CloseCode::HelloTimeout);
                break;
            }
            r = async { pending.as_mut().expect("guarded by the branch condition").await },
                if pending.is_some() => Woke::Answer(r),
        };
        let next = match woke {
            Woke::Answer(r) => match c.offer_answered(r) {
                Flow::Continue => continue,
                Flow::Close(code) => {
                    c.close(code);
                    break;
                }
                Flow::Stop | Flow::Relay(_) => break,
            },
            Woke::Frame(m) => {
                // Still waiting for the answer (a new offer replaces it).
                c.pending_offer = pending;
                m
            }
        };
        let flow = match next {
            Some(Ok(msg)) => c.on_message(msg).await,
            // A frame over the hard limit, or broken framing: nothing more can be read; say
            // why with the standard close code. (axum hides tungstenite's error type, so the
            // capacity case is recognised by its message.)
            Some(Err(e)) => {
                let too_big = e.to_string().contains("Message too long");
                if too_big {
                    m::error(ErrorCode::FrameTooLarge);
                }
                let code = if too_big { 1009 } else { 1002 };
                let reason = if code == 1009 {
                    "message too big"
                } else {
                    "protocol error"
                };
                c.pass = None;
                c.conn.send(Outbound::Close(code, reason));
                break;
            }
            None => Flow::Stop,
        };
        match flow {
            Flow::Continue => {}
            Flow::Close(code) => {
                c.close(code);
                break;
            }
            Flow::Stop => break,
            Flow::Relay(url) => {
                relay_to = Some(url);
                break;
            }
        }
    }
    if let (Some(url), Some(hello)) = (relay_to, c.hello_text.take()) {
        c.pass = None;
        relay(&state, &url, hello, peer, &mut stream, &c.conn, &shutdown).await;
    }

    if let Some(j) = c.joined.take() {
        let _ = j
            .handle
            .tx
            .send(SessionCmd::Disconnected {
                pid: j.pid,
                conn_id: id,
            })
            .await;
    }
    drop(c);
    // Let the writer flush a close frame; it ends when every sender is gone.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        // A peer that stopped reading would keep the writer (and its queue) alive: end it.
        writer.abort();
    }
    m::connection_closed();
    tracing::info!("connection closed");
}

impl Connection {
    fn send(&self, msg: &ServerMessage) {
        self.conn.send_msg(msg);
    }

    // The place among unauthenticated connections is given back before the close frame is
    // queued, so a client that sees the close can count on it.
    fn close(&mut self, code: CloseCode) {
        self.pass = None;
        self.conn.send(Outbound::Close(code.code(), code.reason()));
    }

    /// Sends an error frame; after too many errors the connection is closed.
    fn error(&mut self, code: ErrorCode, detail: Option<&str>, in_reply_to: Option<&str>) -> Flow {
        m::error(code);
        let message = match detail {
            Some(d) => format!("{} ({d})", code.message()),
            None => code.message().to_owned(),
        };
        self.send(&ServerMessage::Error {
            code,
            message,
            in_reply_to: in_reply_to.map(str::to_owned),
        });
        self.errors += 1;
        if self.errors >= self.state.config.max_errors_per_connection {
            return Flow::Close(CloseCode::ProtocolAbuse);
        }
        Flow::Continue
    }

    async fn on_message(&mut self, msg: Message) -> Flow {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => return self.error(ErrorCode::BinaryNotSupported, None, None),
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Close(_) => return Flow::Stop,
        };
        // Both budgets are checked before either is spent: a refused frame costs nothing.
        // A frame over `max_frame_bytes` is refused on its own (and counted as an error).
        let now = Instant::now();
        let len = text.len();
        let oversize = len > self.state.config.max_frame_bytes;
        let cost = if oversize { 0.0 } else { len as f64 };
        if !self.bucket.has(now, 1.0) || !self.bytes.has(now, cost) {
            self.strikes += 1;
            m::error(ErrorCode::RateLimited);
            self.send(&ServerMessage::error(ErrorCode::RateLimited, None));
            if self.strikes >= self.state.config.rate_limit_strikes {
                return Flow::Close(CloseCode::RateLimited);
            }
            return Flow::Continue;
        }
        // Strikes count consecutive refusals: a client that slows down starts afresh.
        self.strikes = 0;
        self.bucket.spend(1.0);
        self.bytes.spend(cost);
        if oversize {
            return self.error(ErrorCode::FrameTooLarge, None, None);
        }
        if self.joined.is_none() {
            self.hello_text = Some(text.clone());
        }
        let msg = match decode_client(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                let detail = (e.code == ErrorCode::InvalidMessage).then_some(e.detail.as_str());
                return self.error(e.code, detail, None);
            }
        };
        match &self.joined {
            None => self.before_hello(msg).await,
            Some(_) => self.after_hello(msg).await,
        }
    }

    async fn before_hello(&mut self, msg: ClientMessage) -> Flow {
        let ClientMessage::Hello { version, token } = msg else {
            return self.error(ErrorCode::HelloRequired, None, Some(msg.type_name()));
        };
        if version != PROTOCOL_VERSION {
            return self.error(ErrorCode::UnsupportedVersion, None, Some("hello"));
        }
        // The token's own (signed) kind decides: a resume token never joins anyone anew, an
        // invite never takes over a participant.
        match self.state.tokens.verify(&token) {
            Ok(Verified::Invite { claims, instance }) => {
                // A mediator's invite not minted in a session starts one; nothing else does.
                let new_ok = claims.role == Role::Mediator && instance.is_none();
                match self.route(&claims.session, new_ok).await {
                    Route::Here(handle) => self.join(claims, instance, Some(handle)).await,
                    Route::New => self.join(claims, instance, None).await,
                    Route::There(url) => Flow::Relay(url),
                    // Minted in a session that is over (or in another server's).
                    Route::Missing if instance.is_some() => {
                        self.unauthorized(TokenError::EndedInstance)
                    }
                    Route::Missing => self.error(ErrorCode::SessionNotFound, None, Some("hello")),
                    Route::Draining => self.error(ErrorCode::ServerDraining, None, Some("hello")),
                    Route::Busy => self.try_again(),
                }
            }
            Ok(Verified::Resume { claims, pid }) => {
                match self.route(&claims.session, false).await {
                    Route::Here(handle) => self.resume(claims, pid, handle).await,
                    Route::There(url) => Flow::Relay(url),
                    // In cluster mode a session whose state Redis lost a moment ago comes back
                    // with its owner's next renewal, and a draining node with no other node
                    // still holds it: the client tries again (bounded by its grace period).
                    Route::Missing | Route::Draining if self.state.cluster.is_some() => {
                        self.try_again()
                    }
                    Route::Missing | Route::Draining | Route::New => {
                        self.unauthorized(TokenError::Used)
                    }
                    Route::Busy => self.try_again(),
                }
            }
            Err(e) => self.unauthorized(e),
        }
    }

    // Cluster mode: the session is moving, or Redis did not answer; the client tries again.
    fn try_again(&mut self) -> Flow {
        self.pass = None;
        self.conn.send(Outbound::Close(TRY_AGAIN, TRY_AGAIN_REASON));
        Flow::Stop
    }

    /// Finds the session of a hello: on this node, on another (cluster mode), or nowhere.
    /// With `new_ok`, a session that does not exist is started (on the least loaded node).
    async fn route(&self, session: &SessionId, new_ok: bool) -> Route {
        let state = &self.state;
        if let Some(h) = state.sessions.get(session) {
            return Route::Here(h);
        }
        let Some(cluster) = state.cluster.clone() else {
            if !new_ok {
                return Route::Missing;
            }
            if state.is_draining() {
                return Route::Draining;
            }
            return Route::New;
        };
        let wait = cluster.timeout();
        let Ok(Ok(owner)) = tokio::time::timeout(wait, cluster.owner(session)).await else {
            return Route::Busy;
        };
        if let Some(owner) = owner {
            // Ours, but not (or no longer) in the registry: a session starting or ending here.
            if owner.node == cluster.node_id || self.peer.relayed {
                return Route::Busy;
            }
            return match tokio::time::timeout(wait, cluster.node(&owner.node)).await {
                Ok(Ok(Some(node))) => Route::There(node.url),
                // The owner stopped saying it is alive: its lease runs out soon.
                _ => Route::Busy,
            };
        }
        // Nobody owns it: a session whose owner died (its state is in Redis), or a new one.
        let _one_at_a_time = cluster.claiming(session).await;
        if let Some(h) = state.sessions.get(session) {
            return Route::Here(h);
        }
        let Ok(Ok(saved)) = tokio::time::timeout(wait, cluster.state(session)).await else {
            return Route::Busy;
        };
        if saved.is_none() && !new_ok {
            return Route::Missing;
        }
        // A new session starts on the least loaded node; a session taken over stays on the node
        // its first returning participant reached, unless that node is draining (a draining
        // node starts and takes over nothing).
        if (saved.is_none() || cluster.is_draining()) && !self.peer.relayed {
            match tokio::time::timeout(wait, cluster.least_loaded(state.sessions.len() as u64))
                .await
            {
                Ok(Ok(Some((node, url)))) if node != cluster.node_id => return Route::There(url),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return Route::Draining,
                _ => return Route::Busy,
            }
        } else if cluster.is_draining() {
            // Relayed here to start a session, or a session to take over on a draining node.
            return Route::Draining;
        }
        // A new session starts once the hello's invite is spent ([`Connection::start`]).
        let Some(saved) = saved else {
            return Route::New;
        };
        // A room nobody is in would never end: nothing to take over.
        if saved.room.participants.is_empty() {
            return Route::Missing;
        }
        // Another node claimed it first: the client tries again and is relayed there.
        let Ok(Ok(Some(lease))) = tokio::time::timeout(wait, cluster.claim(session)).await else {
            return Route::Busy;
        };
        // Read again under the lease: a hand-over may have written a newer state between the
        // first read and the claim.
        let saved = match tokio::time::timeout(wait, cluster.state(session)).await {
            Ok(Ok(Some(s))) => s,
            // It ended meanwhile.
            Ok(Ok(None)) => {
                let _ = cluster.end(&lease).await;
                return Route::Missing;
            }
            _ => {
                let _ = cluster.release(&lease).await;
                return Route::Busy;
            }
        };
        let generation = state.next_generation.fetch_add(1, Ordering::Relaxed);
        let fence = lease.fence;
        match session::restore(state.clone(), generation, lease.clone(), saved) {
            Ok(handle) => {
                tracing::info!(session = %state.loggable(session.as_str()), fence, "session taken over");
                Route::Here(state.sessions.get_or_start(session, || handle))
            }
            Err(e) => {
                tracing::error!(error = %e, "a session's state in Redis cannot be restored");
                let _ = cluster.release(&lease).await;
                Route::Missing
            }
        }
    }

    /// Starts a new session here (in cluster mode, under a lease claimed now).
    async fn start(&self, session: &SessionId) -> Result<SessionHandle, JoinRefused> {
        let state = &self.state;
        let spawn = |lease| {
            let generation = state.next_generation.fetch_add(1, Ordering::Relaxed);
            session::spawn(state.clone(), session.clone(), generation, lease)
        };
        let Some(cluster) = state.cluster.clone() else {
            return Ok(state.sessions.get_or_start(session, || spawn(None)));
        };
        let _one_at_a_time = cluster.claiming(session).await;
        if let Some(h) = state.sessions.get(session) {
            return Ok(h);
        }
        match tokio::time::timeout(cluster.timeout(), cluster.claim(session)).await {
            Ok(Ok(Some(lease))) => Ok(state.sessions.get_or_start(session, || spawn(Some(lease)))),
            _ => Err(JoinRefused::TryAgain),
        }
    }

    fn unauthorized(&mut self, reason: TokenError) -> Flow {
        tracing::info!(reason = %reason, "token refused");
        m::error(ErrorCode::Unauthorized);
        self.send(&ServerMessage::error(
            ErrorCode::Unauthorized,
            Some("hello"),
        ));
        Flow::Close(CloseCode::Unauthorized)
    }

    fn mint_resume(&self, claims: &Claims, pid: &ParticipantId) -> (String, String, u64) {
        let resume = Claims {
            session: claims.session.clone(),
            role: claims.role,
            side: claims.side,
            exp: unix_now() + self.state.config.resume_token_ttl_secs,
            jti: random_id(),
            kind: TokenKind::Resume,
            pid: Some(pid.clone()),
        };
        (self.state.tokens.mint(&resume), resume.jti, resume.exp)
    }

    async fn join(
        &mut self,
        claims: Claims,
        instance: Option<String>,
        handle: Option<SessionHandle>,
    ) -> Flow {
        let state = self.state.clone();
        // Spent before the holder is let in (on disk, or in Redis for the whole cluster): a
        // crash from here on leaves it spent.
        let reserved = match &state.cluster {
            Some(cluster) => {
                match tokio::time::timeout(
                    cluster.timeout(),
                    cluster.reserve_invite(&claims.jti, claims.exp),
                )
                .await
                {
                    Ok(Ok(true)) => Ok(Reservation::Reserved),
                    Ok(Ok(false)) => Ok(Reservation::AlreadyUsed),
                    _ => Err(()),
                }
            }
            None => {
                let (spent, jti, exp) = (state.spent.clone(), claims.jti.clone(), claims.exp);
                match tokio::task::spawn_blocking(move || spent.reserve(&jti, exp, unix_now()))
                    .await
                {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot record a spent invite; join refused");
                        Err(())
                    }
                    Err(_) => Err(()),
                }
            }
        };
        match reserved {
            Ok(Reservation::Reserved) => {}
            Ok(Reservation::AlreadyUsed) => return self.unauthorized(TokenError::Used),
            Err(()) => return self.error(ErrorCode::Internal, None, Some("hello")),
        }
        let result = self.try_join(&claims, instance.as_deref(), handle).await;
        match result {
            Ok(joined) => {
                tracing::info!(session = %state.loggable(claims.session.as_str()), role = claims.role.as_str(), "participant joined");
                self.joined = Some(joined);
                self.pass = None;
                Flow::Continue
            }
            Err(refused) => {
                // The holder can try again (the session may start, or unlock); an invite of
                // an ended instance never works, spent or not.
                let released = match &state.cluster {
                    Some(cluster) => cluster.release_invite(&claims.jti).await.is_ok(),
                    None => {
                        let (spent, jti) = (state.spent.clone(), claims.jti.clone());
                        let r = tokio::task::spawn_blocking(move || spent.release(&jti)).await;
                        matches!(r, Ok(Ok(())))
                    }
                };
                if !released {
                    // Fail closed: the invite stays spent.
                    tracing::error!("cannot give a reserved invite back; it stays spent");
                }
                match refused {
                    JoinRefused::Token(e) => self.unauthorized(e),
                    JoinRefused::TryAgain => self.try_again(),
                    JoinRefused::Code(code) if code == ErrorCode::Unauthorized => {
                        self.send(&ServerMessage::error(code, Some("hello")));
                        Flow::Close(CloseCode::Unauthorized)
                    }
                    JoinRefused::Code(code) => self.error(code, None, Some("hello")),
                }
            }
        }
    }

    async fn try_join(
        &mut self,
        claims: &Claims,
        instance: Option<&str>,
        handle: Option<SessionHandle>,
    ) -> Result<Joined, JoinRefused> {
        use JoinRefused::Code;
        if self.state.is_draining() {
            return Err(Code(ErrorCode::ServerDraining));
        }
        let handle = match handle {
            Some(h) => h,
            None => self.start(&claims.session).await?,
        };
        // Minted in another instance of this session id: it ended (or the server restarted),
        // and this is a different session.
        if instance.is_some_and(|i| i != handle.instance) {
            return Err(JoinRefused::Token(TokenError::EndedInstance));
        }
        let pid = ParticipantId::new(random_id()).map_err(|_| Code(ErrorCode::Internal))?;
        let (resume_token, resume_jti, resume_exp) = self.mint_resume(claims, &pid);
        let (reply, answer) = oneshot::channel();
        let cmd = SessionCmd::Join {
            pid: pid.clone(),
            role: claims.role,
            side: claims.side,
            resume_jti,
            resume_exp,
            resume_token,
            conn: self.conn.clone(),
            reply,
        };
        handle
            .tx
            .send(cmd)
            .await
            .map_err(|_| Code(ErrorCode::SessionEnded))?;
        answer
            .await
            .map_err(|_| Code(ErrorCode::SessionEnded))?
            .map_err(Code)?;
        Ok(Joined { handle, pid })
    }

    async fn resume(&mut self, claims: Claims, pid: ParticipantId, handle: SessionHandle) -> Flow {
        let (resume_token, resume_jti, resume_exp) = self.mint_resume(&claims, &pid);
        let (reply, answer) = oneshot::channel();
        let cmd = SessionCmd::Resume {
            pid: pid.clone(),
            presented_jti: claims.jti.clone(),
            presented_exp: claims.exp,
            resume_jti,
            resume_exp,
            resume_token,
            conn: self.conn.clone(),
            reply,
        };
        // In cluster mode a session task that went away (handed over, fenced out) is not an
        // answer: the session lives on elsewhere; the client tries again.
        let gone = |c: &mut Self| {
            if c.state.cluster.is_some() {
                c.try_again()
            } else {
                c.unauthorized(TokenError::Used)
            }
        };
        if handle.tx.send(cmd).await.is_err() {
            return gone(self);
        }
        match answer.await {
            Ok(Ok(())) => {
                tracing::info!(session = %self.state.loggable(claims.session.as_str()), "participant resumed");
                if let Some(media) = &self.state.media {
                    let conn = self.conn.clone();
                    let _ = media.send(
                        handle.generation,
                        MediaCmd::Reconnected {
                            pid: pid.clone(),
                            conn,
                        },
                    );
                }
                self.joined = Some(Joined { handle, pid });
                self.pass = None;
                Flow::Continue
            }
            Ok(Err(_)) => self.unauthorized(TokenError::Used),
            Err(_) => gone(self),
        }
    }

    async fn after_hello(&mut self, msg: ClientMessage) -> Flow {
        let in_reply_to = msg.type_name();
        let (command, relay_bytes) = match msg {
            ClientMessage::Hello { .. } => {
                return self.error(ErrorCode::DuplicateHello, None, Some(in_reply_to));
            }
            ClientMessage::Ping => {
                self.send(&ServerMessage::Pong);
                return Flow::Continue;
            }
            ClientMessage::CreateInvite {
                role,
                side,
                ttl_secs,
            } => return self.create_invite(role, side, ttl_secs).await,
            ClientMessage::MediaOffer { sdp } => return self.media_offer(sdp).await,
            ClientMessage::DocUpload {
                doc_id,
                size,
                chunks,
            } => {
                if u64::from(chunks) != confer_proto::doc_chunks(size) {
                    return self.error(
                        ErrorCode::InvalidMessage,
                        Some("doc_upload: `chunks` must be max(1, ceil(size / 65536))"),
                        Some(in_reply_to),
                    );
                }
                let request = DocRequest::Upload {
                    doc_id,
                    size,
                    chunks,
                };
                return self.doc(request, in_reply_to).await;
            }
            ClientMessage::DocDownload { doc_id } => {
                return self.doc(DocRequest::Download { doc_id }, in_reply_to).await;
            }
            ClientMessage::KeyframeRequest { publisher } => {
                if let (Some(_), Some(j)) = (&self.state.media, &self.joined) {
                    let cmd = MediaCmd::Keyframe {
                        subscriber: j.pid.clone(),
                        publisher,
                    };
                    let via = SessionCmd::Media {
                        pid: j.pid.clone(),
                        conn_id: self.conn.id,
                        cmd,
                    };
                    let _ = j.handle.tx.send(via).await;
                }
                return Flow::Continue;
            }
            ClientMessage::Consent { agreement_hash } => (Command::Consent(agreement_hash), 0),
            ClientMessage::Admit { participant_id } => (Command::Admit(participant_id), 0),
            ClientMessage::Move {
                participant_id,
                channel_id,
            } => (Command::Move(participant_id, channel_id), 0),
            ClientMessage::CreateBreakout { members } => (Command::CreateBreakout(members), 0),
            ClientMessage::ReturnAll => (Command::ReturnAll, 0),
            ClientMessage::Lock => (Command::Lock, 0),
            ClientMessage::Unlock => (Command::Unlock, 0),
            ClientMessage::Kick { participant_id } => (Command::Kick(participant_id), 0),
            ClientMessage::End => (Command::End, 0),
            ClientMessage::Leave => (Command::Leave, 0),
            ClientMessage::DocAck { sha256 } => (Command::AcknowledgeDoc(sha256), 0),
            ClientMessage::Relay { to, data } => {
                let n = data.len();
                (Command::Relay(to, data), n)
            }
            _ => return self.error(ErrorCode::UnknownType, None, Some(in_reply_to)),
        };
        let Some(j) = &self.joined else {
            return Flow::Stop;
        };
        let cmd = SessionCmd::Command {
            pid: j.pid.clone(),
            conn_id: self.conn.id,
            command,
            in_reply_to,
            relay_bytes,
        };
        if j.handle.tx.send(cmd).await.is_err() {
            // The session is over.
            self.send(&ServerMessage::SessionEnded);
            return Flow::Close(CloseCode::SessionEnded);
        }
        Flow::Continue
    }

    async fn media_offer(&mut self, sdp: String) -> Flow {
        let (Some(_), Some(j)) = (self.state.media.clone(), &self.joined) else {
            return self.error(ErrorCode::MediaUnavailable, None, Some("media_offer"));
        };
        let (reply, answer) = oneshot::channel();
        let cmd = MediaCmd::Offer {
            pid: j.pid.clone(),
            sdp,
            conn: self.conn.clone(),
            reply,
        };
        // Through the session task, which checks this is still the current connection.
        let via = SessionCmd::Media {
            pid: j.pid.clone(),
            conn_id: self.conn.id,
            cmd,
        };
        if j.handle.tx.send(via).await.is_err() {
            return self.error(ErrorCode::MediaUnavailable, None, Some("media_offer"));
        }
        self.pending_offer = Some(answer);
        Flow::Continue
    }

    fn offer_answered(
        &mut self,
        r: Result<Result<String, OfferRefused>, oneshot::error::RecvError>,
    ) -> Flow {
        match r {
            Ok(Ok(sdp)) => {
                self.send(&ServerMessage::MediaAnswer { sdp });
                Flow::Continue
            }
            // Like the connection's own rate limit: refused, not counted as an error.
            Ok(Err(OfferRefused::TooSoon)) => {
                m::error(ErrorCode::RateLimited);
                self.send(&ServerMessage::error(
                    ErrorCode::RateLimited,
                    Some("media_offer"),
                ));
                Flow::Continue
            }
            Ok(Err(OfferRefused::Sdp(detail))) => {
                self.error(ErrorCode::BadSdp, Some(&detail), Some("media_offer"))
            }
            Err(_) => self.error(ErrorCode::MediaUnavailable, None, Some("media_offer")),
        }
    }

    /// Through the session task, which answers only an admitted participant's current
    /// connection. Its refusals are the session's decisions: not counted as errors.
    async fn doc(&mut self, request: DocRequest, in_reply_to: &'static str) -> Flow {
        let Some(j) = &self.joined else {
            return Flow::Stop;
        };
        let (reply, answer) = oneshot::channel();
        let cmd = SessionCmd::Doc {
            pid: j.pid.clone(),
            conn_id: self.conn.id,
            request,
            reply,
        };
        if j.handle.tx.send(cmd).await.is_err() {
            self.send(&ServerMessage::SessionEnded);
            return Flow::Close(CloseCode::SessionEnded);
        }
        match answer.await {
            Ok(Ok(ticket)) => self.send(&ticket),
            Ok(Err(code)) => {
                m::error(code);
                self.send(&ServerMessage::error(code, Some(in_reply_to)));
            }
            Err(_) => {
                self.send(&ServerMessage::SessionEnded);
                return Flow::Close(CloseCode::SessionEnded);
            }
        }
        Flow::Continue
    }

    /// Through the session task, which mints only for a manager's current connection and
    /// binds the invite to the session's instance.
    async fn create_invite(
        &mut self,
        role: Role,
        side: Option<confer_proto::Side>,
        ttl_secs: Option<u64>,
    ) -> Flow {
        let Some(j) = &self.joined else {
            return Flow::Stop;
        };
        let (reply, answer) = oneshot::channel();
        let cmd = SessionCmd::CreateInvite {
            pid: j.pid.clone(),
            conn_id: self.conn.id,
            role,
            side,
            ttl_secs,
            reply,
        };
        if j.handle.tx.send(cmd).await.is_err() {
            self.send(&ServerMessage::SessionEnded);
            return Flow::Close(CloseCode::SessionEnded);
        }
        match answer.await {
            Ok(Ok(invite)) => {
                self.send(&invite);
                Flow::Continue
            }
            Ok(Err(InviteRefused::SideRule)) => self.error(
                ErrorCode::InvalidMessage,
                Some("party and counsel need a side; others have none"),
                Some("create_invite"),
            ),
            Ok(Err(InviteRefused::Forbidden)) => {
                self.error(ErrorCode::Forbidden, None, Some("create_invite"))
            }
            // The session ended while the request waited.
            Err(_) => {
                self.send(&ServerMessage::SessionEnded);
                Flow::Close(CloseCode::SessionEnded)
            }
        }
    }
}

/// Headers a node relays a connection with: the client's address, and the node's proof over it.
pub(crate) const RELAYED_FOR: &str = "x-confer-relayed-for";
pub(crate) const RELAY_PROOF: &str = "x-confer-relay-proof";

/// Cluster mode: relays a connection whose session lives on another node, frame for frame,
/// until either side closes. The owner node sees the client's hello, applies every limit and
/// answers; this node only carries frames. When the owner goes away without a close (it
/// died), the client is told to resume (1012), which brings it to the session's next owner.
async fn relay(
    state: &Arc<AppState>,
    url: &str,
    hello: Utf8Bytes,
    peer: Peer,
    client: &mut futures_util::stream::SplitStream<WebSocket>,
    conn: &Conn,
    shutdown: &Notify,
) {
    use tokio_tungstenite::tungstenite::Message as Up;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_url = match url.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}/ws"),
        Some((_, rest)) => format!("ws://{rest}/ws"),
        None => format!("ws://{url}/ws"),
    };
    let ip = peer.ip.to_string();
    let proof = state.tokens.node_mac(&ip);
    let request = ws_url.into_client_request().map(|mut r| {
        let h = r.headers_mut();
        if let (Ok(ip), Ok(proof)) = (ip.parse(), proof.parse()) {
            h.insert(RELAYED_FOR, ip);
            h.insert(RELAY_PROOF, proof);
        }
        r
    });
    let hard = state.config.max_frame_bytes.saturating_mul(4).max(1024) + 64 * 1024;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard));
    let wait = state
        .cluster
        .as_ref()
        .map_or(Duration::from_secs(2), |c| c.timeout() * 2);
    let upstream = match request {
        Ok(request) => tokio::time::timeout(
            wait,
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await
        .ok()
        .and_then(Result::ok),
        Err(_) => None,
    };
    let Some((upstream, _)) = upstream else {
        tracing::warn!("cannot reach the node that owns a session; the client will try again");
        conn.send(Outbound::Close(TRY_AGAIN, TRY_AGAIN_REASON));
        return;
    };
    let (mut up_tx, mut up_rx) = upstream.split();
    if up_tx.send(Up::text(hello.as_str())).await.is_err() {
        conn.send(Outbound::Close(TRY_AGAIN, TRY_AGAIN_REASON));
        return;
    }
    m::cluster_relayed(1.0);
    loop {
        tokio::select! {
            m = client.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if up_tx.send(Up::text(t.as_str())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    if up_tx.send(Up::binary(b)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    let _ = up_tx.close().await;
                    break;
                }
            },
            m = up_rx.next() => match m {
                Some(Ok(Up::Text(t))) => {
                    if !conn.send(Outbound::Text(Utf8Bytes::from(t.as_str()))) {
                        let _ = up_tx.close().await;
                        break;
                    }
                }
                Some(Ok(Up::Close(frame))) => {
                    let code = frame.map_or(1000, |f| u16::from(f.code));
                    conn.send(Outbound::Close(code, close_reason(code)));
                    break;
                }
                Some(Ok(_)) => {}
                // The owner went away without a word: resume, on its next owner.
                Some(Err(_)) | None => {
                    conn.send(Outbound::Close(crate::session::MOVED, crate::session::MOVED_REASON));
                    break;
                }
            },
            () = shutdown.notified() => {
                let _ = up_tx.close().await;
                break;
            }
        }
    }
    m::cluster_relayed(-1.0);
}

// The reason of a close code the owner node sent (a relayed close keeps its code).
fn close_reason(code: u16) -> &'static str {
    match code {
        crate::session::MOVED => crate::session::MOVED_REASON,
        TRY_AGAIN => TRY_AGAIN_REASON,
        1009 => "message too big",
        1002 => "protocol error",
        _ => CloseCode::ALL
            .iter()
            .find(|c| c.code() == code)
            .map_or("closed", |c| c.reason()),
    }
}

/// A token bucket in tokio time (so paused-time tests drive it).
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Refills for the time passed; whether `cost` can be spent now.
    fn has(&mut self, now: Instant, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens >= cost
    }

    /// Spends `cost` (after [`TokenBucket::has`] said it can).
    fn spend(&mut self, cost: f64) {
        self.tokens -= cost;
    }
}
