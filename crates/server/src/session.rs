//! The session task: one tokio task per session, a thin loop around [`confer_room::Room`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use confer_proto::{ErrorCode, ParticipantId, Role, ServerMessage, SessionId, Side, encode_server};
use confer_room::{AuditEvent, Command, Input, Output, Room, RoomConfig, RoutingTable};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The close code that tells a client to resume (the session moved to another node):
/// 1012, "service restart".
pub(crate) const MOVED: u16 = 1012;
/// Its reason text.
pub(crate) const MOVED_REASON: &str = "the session moved to another node; resume";

use crate::audit::NewEvent;
use crate::cluster::{Cluster, Lease, MemberState, Renewed, SessionState};
use crate::conn::{Conn, Outbound};
use crate::docs::DocRefused;
use crate::messages::{
    DocRequest, InviteRefused, MediaCmd, OfferRefused, SessionCmd, SessionHandle,
};
use crate::metrics as m;
use crate::state::AppState;
use crate::token::{random_id, unix_now};

struct Member {
    conn: Option<Conn>,
    resume_jti: String,
    /// The expiry of that resume token (later tokens expire later).
    resume_exp: u64,
    /// Cluster mode: taken over from another node and not resumed here yet. The state in
    /// Redis may lag the newest resume token that node gave out (it is written after the
    /// welcome that carries it), so a token minted no earlier than the one recorded is taken
    /// once; from then on only the newest works again.
    restored: bool,
    role: Role,
    /// When the session task last took a `media_offer` from this participant.
    last_offer: Option<Instant>,
    /// An offer made in the waiting room, held until admission: until then the SFU does no
    /// work for this participant. A newer offer replaces it.
    parked_offer: Option<MediaCmd>,
}

fn room_config(state: &AppState) -> RoomConfig {
    RoomConfig::default()
        .resume_grace(Duration::from_secs(state.config.resume_grace_secs))
        .waiting_relay_budget(
            state.config.waiting_relay_bytes_per_sec,
            state.config.waiting_relay_burst_bytes,
        )
}

/// Starts a new session (in cluster mode, under the lease this node just claimed for it).
pub(crate) fn spawn(
    state: Arc<AppState>,
    session: SessionId,
    generation: u64,
    lease: Option<Lease>,
) -> SessionHandle {
    let room = Room::new(
        session.clone(),
        room_config(&state),
        Instant::now().into_std(),
    );
    let instance = random_id();
    // A session started in the console keeps the retention its mediator chose.
    let chosen = state.sessions.take_plan(&session).map(|p| p.docs_retention);
    let docs_retention_secs = state.docs.limits().retention_secs(chosen);
    start(
        state,
        session,
        generation,
        instance,
        room,
        HashMap::new(),
        docs_retention_secs,
        lease,
    )
}

/// Cluster mode: takes over a session another node owned, from the state it wrote, under the
/// lease this node just claimed. Everyone in it starts disconnected, within their grace period.
pub(crate) fn restore(
    state: Arc<AppState>,
    generation: u64,
    lease: Lease,
    saved: SessionState,
) -> Result<SessionHandle, confer_room::RestoreError> {
    let session = lease.session.clone();
    let room = Room::restore(saved.room, room_config(&state), Instant::now().into_std())?;
    let members = saved
        .members
        .into_iter()
        .filter(|(p, _)| room.contains(p))
        .map(|(p, m)| {
            let member = Member {
                conn: None,
                resume_jti: m.resume_jti,
                resume_exp: m.resume_exp,
                restored: true,
                role: m.role,
                last_offer: None,
                parked_offer: None,
            };
            (p, member)
        })
        .collect();
    m::session_restored();
    Ok(start(
        state,
        session,
        generation,
        saved.instance,
        room,
        members,
        saved.docs_retention_secs,
        Some(lease),
    ))
}

#[allow(clippy::too_many_arguments)]
fn start(
    state: Arc<AppState>,
    session: SessionId,
    generation: u64,
    instance: String,
    room: Room,
    members: HashMap<ParticipantId, Member>,
    docs_retention_secs: u64,
    lease: Option<Lease>,
) -> SessionHandle {
    let (tx, rx) = mpsc::channel(1024);
    let owned = match (lease, state.cluster.clone()) {
        (Some(lease), Some(cluster)) => Some(Owned::start(cluster, lease)),
        _ => None,
    };
    let task = SessionTask {
        state,
        session,
        generation,
        instance: instance.clone(),
        room,
        members,
        docs_retention_secs,
        ended_waiters: Vec::new(),
        owned,
        handover: false,
        dirty: true,
    };
    tokio::spawn(task.run(rx));
    SessionHandle {
        tx,
        generation,
        instance,
    }
}

/// Cluster mode: this node's ownership of a session. A keeper task renews the lease and
/// moves `valid` on; a writer task writes the newest state under the lease.
struct Owned {
    cluster: Arc<Cluster>,
    lease: Lease,
    /// Until when this node may act for the session.
    valid: watch::Receiver<Instant>,
    /// The newest state, for the writer.
    state_tx: watch::Sender<Option<String>>,
    last_state: String,
}

impl Owned {
    fn start(cluster: Arc<Cluster>, lease: Lease) -> Self {
        // The lease holds from when the claim was sent, at the latest.
        let first = lease.claimed_at + cluster.lease - cluster.margin();
        let (valid_tx, valid) = watch::channel(first);
        let valid_tx = Arc::new(valid_tx);
        let (state_tx, state_rx) = watch::channel(None);
        tokio::spawn(keep_lease(
            cluster.clone(),
            lease.clone(),
            valid_tx.clone(),
            state_tx.clone(),
        ));
        tokio::spawn(write_states(
            cluster.clone(),
            lease.clone(),
            valid_tx,
            state_rx,
        ));
        m::cluster_owned(1.0);
        Self {
            cluster,
            lease,
            valid,
            state_tx,
            last_state: String::new(),
        }
    }

    fn valid_until(&self) -> Instant {
        *self.valid.borrow()
    }

    /// Whether this node may still act for the session.
    fn holds(&self) -> bool {
        Instant::now() < self.valid_until()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        m::cluster_owned(-1.0);
    }
}

// Renews every third of the lease until the session task is gone; each confirmed renewal moves
// `valid` to (when it was sent + lease - margin). A lease found lost ends validity at once.
async fn keep_lease(
    cluster: Arc<Cluster>,
    lease: Lease,
    valid: Arc<watch::Sender<Instant>>,
    state: watch::Sender<Option<String>>,
) {
    let every = cluster.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        if valid.is_closed() {
            return;
        }
        let sent = Instant::now();
        match tokio::time::timeout(cluster.timeout(), cluster.renew(&lease)).await {
            Ok(Ok(Renewed::Held)) => {
                let _ = valid.send(sent + cluster.lease - cluster.margin());
            }
            Ok(Ok(Renewed::Recreated)) => {
                tracing::warn!(
                    "Redis had lost a session's lease; claimed again and rewriting its state"
                );
                let _ = valid.send(sent + cluster.lease - cluster.margin());
                // Write the newest state again, even if unchanged.
                state.send_modify(|_| {});
            }
            Ok(Ok(Renewed::Lost)) => {
                tracing::warn!(
                    fence = lease.fence,
                    "a session's lease was lost to another node"
                );
                let _ = valid.send(sent);
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew a session's lease"),
            Err(_) => {
                tracing::warn!("cannot renew a session's lease: Redis did not answer in time")
            }
        }
    }
}

// Writes each new state under the lease (a failed write is tried again with the next state or
// after a short pause); a write refused by the fence ends validity.
async fn write_states(
    cluster: Arc<Cluster>,
    lease: Lease,
    valid: Arc<watch::Sender<Instant>>,
    mut state: watch::Receiver<Option<String>>,
) {
    let mut pending = false;
    loop {
        if pending {
            tokio::select! {
                r = state.changed() => if r.is_err() { return },
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        } else if state.changed().await.is_err() {
            return;
        }
        let Some(json) = state.borrow_and_update().clone() else {
            continue;
        };
        match tokio::time::timeout(cluster.timeout(), cluster.write_state(&lease, &json)).await {
            Ok(Ok(true)) => pending = false,
            Ok(Ok(false)) => {
                tracing::warn!(
                    fence = lease.fence,
                    "a session's state write was fenced out"
                );
                let _ = valid.send(Instant::now());
                return;
            }
            _ => {
                pending = true;
                // Try this state again.
                state.mark_changed();
            }
        }
    }
}

struct SessionTask {
    state: Arc<AppState>,
    session: SessionId,
    generation: u64,
    instance: String,
    room: Room,
    members: HashMap<ParticipantId, Member>,
    /// How long after sharing this session's documents are kept.
    docs_retention_secs: u64,
    /// Told (by being dropped) once the session is over and gone from the registry.
    ended_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Cluster mode: the lease this node holds on the session.
    owned: Option<Owned>,
    /// Cluster mode, draining: hand the session over to another node.
    handover: bool,
    /// Cluster mode: something the state holds may have changed since it was last saved
    /// (anything but a relay).
    dirty: bool,
}

impl SessionTask {
    async fn run(mut self, mut rx: mpsc::Receiver<SessionCmd>) {
        m::session_opened();
        tracing::info!(session = %self.state.loggable(self.session.as_str()), "session created");
        let mut fenced = false;
        loop {
            let wake = self.apply_outputs();
            if !self.room.is_ended() {
                self.save_state();
            }
            if self.room.is_ended() || self.handover {
                break;
            }
            let valid = self.owned.as_ref().map(Owned::valid_until);
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    // A node that lost its lease does nothing more for the session.
                    Some(_) if self.owned.as_ref().is_some_and(|o| !o.holds()) => {
                        fenced = true;
                        break;
                    }
                    Some(cmd) => self.handle(cmd),
                    // Every sender is gone: the registry dropped us.
                    None => break,
                },
                () = tokio::time::sleep_until(Instant::from_std(wake)) => {
                    if self.owned.as_ref().is_some_and(|o| !o.holds()) {
                        fenced = true;
                        break;
                    }
                    let now = Instant::now().into_std();
                    // Grace periods may run out: people leave the state.
                    self.dirty = true;
                    let _ = self.room.handle_input(Input::Timeout { now });
                }
                () = async { tokio::time::sleep_until(valid.unwrap_or_else(Instant::now)).await },
                    if valid.is_some() => {
                    // The lease was not confirmed in time (or was lost): stop acting now.
                    if self.owned.as_ref().is_some_and(|o| !o.holds()) {
                        fenced = true;
                        break;
                    }
                }
            }
        }
        if let Some(own) = self.owned.take() {
            self.leave_node(own, fenced).await;
        }
        // The session's documents go before it leaves the registry: once it is gone (what
        // `Server::drained` waits for), so are they.
        if let Some(closed) = self.state.docs.close(&self.instance) {
            let _ = tokio::task::spawn_blocking(move || closed.delete()).await;
        }
        self.state.sessions.remove(&self.session, self.generation);
        self.state.sessions_changed.notify_waiters();
        self.ended_waiters.clear();
        m::session_closed();
        tracing::info!(session = %self.state.loggable(self.session.as_str()), "session ended");
    }

    fn handle(&mut self, cmd: SessionCmd) {
        let now = Instant::now().into_std();
        let relay = matches!(
            &cmd,
            SessionCmd::Command {
                command: Command::Relay(..),
                ..
            }
        );
        self.dirty |= !relay;
        match cmd {
            SessionCmd::Join {
                pid,
                role,
                side,
                resume_jti,
                resume_exp,
                resume_token,
                conn,
                reply,
            } => {
                // Register first: the welcome is the room's first output for this participant.
                self.members.insert(
                    pid.clone(),
                    Member {
                        conn: Some(conn),
                        resume_jti,
                        resume_exp,
                        restored: false,
                        role,
                        last_offer: None,
                        parked_offer: None,
                    },
                );
                let r = self.room.handle_input(Input::Join {
                    participant: pid.clone(),
                    role,
                    side,
                    resume_token,
                    now,
                });
                if r.is_err() {
                    self.members.remove(&pid);
                }
                let _ = reply.send(r.map_err(|e| e.code()));
            }
            SessionCmd::Resume {
                pid,
                presented_jti,
                presented_exp,
                resume_jti,
                resume_exp,
                resume_token,
                conn,
                reply,
            } => {
                let Some(member) = self
                    .members
                    .get_mut(&pid)
                    .filter(|_| self.room.contains(&pid))
                else {
                    let _ = reply.send(Err(ErrorCode::Unauthorized));
                    return;
                };
                // Only the newest resume token works; an older one was superseded. (Right
                // after a take-over, one no older than the newest recorded, see `restored`.)
                let newest = member.resume_jti == presented_jti
                    || (member.restored && presented_exp >= member.resume_exp);
                if !newest {
                    let _ = reply.send(Err(ErrorCode::Unauthorized));
                    return;
                }
                member.restored = false;
                member.resume_exp = resume_exp;
                if let Some(old) = member.conn.replace(conn) {
                    let c = confer_proto::CloseCode::Replaced;
                    old.send(Outbound::Close(c.code(), c.reason()));
                    // Even if its queue is full: the old connection ends.
                    old.shutdown.notify_one();
                }
                member.resume_jti = resume_jti;
                // Its answer would go to the connection just replaced.
                member.parked_offer = None;
                let r = self.room.handle_input(Input::Resume {
                    participant: pid,
                    resume_token,
                    now,
                });
                let _ = reply.send(r.map_err(|e| e.code()));
            }
            SessionCmd::Command {
                pid,
                conn_id,
                command,
                in_reply_to,
                relay_bytes,
            } => {
                if !self.is_current(&pid, conn_id) {
                    return;
                }
                let is_relay = matches!(command, Command::Relay(..));
                match self.room.handle_input(Input::Command {
                    from: pid.clone(),
                    command,
                    now,
                }) {
                    Ok(()) if is_relay => m::relayed(relay_bytes),
                    Ok(()) => {}
                    Err(e) => {
                        m::error(e.code());
                        if let Some(conn) = self.members.get(&pid).and_then(|x| x.conn.as_ref()) {
                            conn.send_msg(&ServerMessage::error(e.code(), Some(in_reply_to)));
                        }
                    }
                }
            }
            SessionCmd::Disconnected { pid, conn_id } => {
                if !self.is_current(&pid, conn_id) {
                    return;
                }
                if let Some(member) = self.members.get_mut(&pid) {
                    member.conn = None;
                }
                let _ = self.room.handle_input(Input::Disconnected {
                    participant: pid,
                    now,
                });
            }
            SessionCmd::End { reply } => {
                self.ended_waiters.push(reply);
                let _ = self.room.handle_input(Input::End { now });
            }
            // Cluster mode: the session moves to another node; everyone resumes there.
            SessionCmd::Handover if self.owned.is_some() => self.handover = true,
            SessionCmd::Handover => {}
            SessionCmd::Drain => {
                let msg = ServerMessage::Draining;
                for conn in self.members.values().filter_map(|x| x.conn.as_ref()) {
                    conn.send_msg(&msg);
                }
            }
            SessionCmd::CreateInvite {
                pid,
                conn_id,
                role,
                side,
                ttl_secs,
                reply,
            } => {
                let _ = reply.send(self.create_invite(&pid, conn_id, role, side, ttl_secs));
            }
            SessionCmd::Media { pid, conn_id, cmd } => {
                // A stale connection's command is dropped; an offer's reply channel closes,
                // which that connection reports as `media_unavailable`.
                if !self.is_current(&pid, conn_id) {
                    return;
                }
                match cmd {
                    MediaCmd::Offer { .. } => self.offer(&pid, cmd),
                    cmd => self.to_media(cmd),
                }
            }
            SessionCmd::Doc {
                pid,
                conn_id,
                request,
                reply,
            } => {
                let _ = reply.send(self.doc(&pid, conn_id, request));
            }
        }
    }

    // Cluster mode: the state another node would take the session over from, when it changed.
    fn save_state(&mut self) {
        let Some(own) = self.owned.as_mut() else {
            return;
        };
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let saved = SessionState {
            v: 1,
            instance: self.instance.clone(),
            room: self.room.snapshot(),
            members: self
                .members
                .iter()
                .map(|(p, m)| {
                    let member = MemberState {
                        role: m.role,
                        resume_jti: m.resume_jti.clone(),
                        resume_exp: m.resume_exp,
                    };
                    (p.clone(), member)
                })
                .collect(),
            docs_retention_secs: self.docs_retention_secs,
        };
        let Ok(json) = serde_json::to_string(&saved) else {
            return;
        };
        if json != own.last_state {
            own.last_state.clone_from(&json);
            let _ = own.state_tx.send(Some(json));
        }
    }

    // Cluster mode, the session leaving this node: ended (its state and lease go), handed
    // over (the final state written, the lease given up) or fenced out (nothing written). In the
    // last two, everyone connected is told to resume (1012), which lands them on the next
    // owner; the SFU forgets them here.
    async fn leave_node(&mut self, own: Owned, fenced: bool) {
        let cluster = &own.cluster;
        let wait = cluster.timeout();
        if self.room.is_ended() {
            let _ = tokio::time::timeout(wait, cluster.end(&own.lease)).await;
            return;
        }
        // Out of the registry first: a hello arriving now is routed by Redis (and told to try
        // again until the next owner has the session), never queued to this task.
        self.state.sessions.remove(&self.session, self.generation);
        if !fenced && own.holds() {
            let handed = tokio::time::timeout(wait, async {
                cluster.write_state(&own.lease, &own.last_state).await == Ok(true)
                    && cluster.release(&own.lease).await == Ok(true)
            })
            .await;
            if handed == Ok(true) {
                tracing::info!(session = %self.state.loggable(self.session.as_str()), "session handed over");
            } else {
                tracing::warn!(session = %self.state.loggable(self.session.as_str()), "session not handed over cleanly: its lease runs out instead");
            }
        } else {
            m::cluster_lease_lost();
            tracing::warn!(session = %self.state.loggable(self.session.as_str()), "session fenced out: this node no longer owns it");
        }
        for (pid, member) in self.members.drain() {
            if let Some(conn) = member.conn {
                conn.send(Outbound::Close(MOVED, MOVED_REASON));
                // Even if its queue is full: the connection ends, and the client resumes.
                conn.shutdown.notify_one();
            }
            if let Some(media) = &self.state.media {
                let _ = media.send(self.generation, MediaCmd::Gone { pid });
            }
        }
        if let Some(media) = &self.state.media {
            let _ = media.send(
                self.generation,
                MediaCmd::Routing {
                    session: self.generation,
                    table: RoutingTable::new(),
                },
            );
        }
    }

    // Documents: admitted participants only (not the waiting room), on their current
    // connection. The store checks the limits; an upload accepted for the first time is
    // audited with its size only.
    fn doc(
        &self,
        pid: &ParticipantId,
        conn_id: u64,
        request: DocRequest,
    ) -> Result<ServerMessage, ErrorCode> {
        if !self.is_current(pid, conn_id) || !self.room.is_admitted(pid) {
            return Err(ErrorCode::Forbidden);
        }
        let docs = &self.state.docs;
        let claims = match request {
            DocRequest::Upload {
                doc_id,
                size,
                chunks,
            } => {
                let granted = docs
                    .upload(
                        &self.session,
                        &self.instance,
                        pid,
                        &doc_id,
                        size,
                        chunks,
                        self.docs_retention_secs,
                    )
                    .map_err(DocRefused::code)?;
                if granted.new {
                    self.state.audit.record(NewEvent {
                        at: unix_now(),
                        session: self.session.as_str().to_owned(),
                        event: crate::audit::DOC_SHARED.to_owned(),
                        participant: Some(pid.as_str().to_owned()),
                        role: self.members.get(pid).map(|m| m.role.as_str().to_owned()),
                        detail: Some(size.to_string()),
                    });
                }
                granted.claims
            }
            DocRequest::Download { doc_id } => docs
                .download(&self.session, &self.instance, pid, &doc_id)
                .map_err(DocRefused::code)?,
        };
        Ok(ServerMessage::DocTicket {
            token: crate::docs::mint_ticket(&self.state, &claims),
            doc_id: claims.doc_id,
            op: claims.op,
            chunks: claims.chunks,
            expires_at: claims.exp,
        })
    }

    // At most one offer per `media_offer_interval_ms` per participant (whatever its
    // connection), and none reaches the SFU before admission: a waiting participant's latest
    // offer is parked and passed on with the routing change that admits it.
    fn offer(&mut self, pid: &ParticipantId, cmd: MediaCmd) {
        let now = Instant::now();
        let interval = Duration::from_millis(self.state.config.media_offer_interval_ms);
        let admitted = self.room.is_admitted(pid);
        let Some(member) = self.members.get_mut(pid) else {
            return;
        };
        if member
            .last_offer
            .is_some_and(|last| now.saturating_duration_since(last) < interval)
        {
            if let MediaCmd::Offer { reply, .. } = cmd {
                let _ = reply.send(Err(OfferRefused::TooSoon));
            }
            return;
        }
        member.last_offer = Some(now);
        if admitted {
            self.to_media(cmd);
        } else {
            member.parked_offer = Some(cmd);
        }
    }

    fn to_media(&self, cmd: MediaCmd) {
        if let Some(media) = &self.state.media {
            let _ = media.send(self.generation, cmd);
        }
    }

    fn create_invite(
        &self,
        pid: &ParticipantId,
        conn_id: u64,
        role: Role,
        side: Option<Side>,
        ttl_secs: Option<u64>,
    ) -> Result<ServerMessage, InviteRefused> {
        let manager = self.is_current(pid, conn_id)
            && self.room.contains(pid)
            && self.members.get(pid).is_some_and(|m| m.role.is_manager());
        if !manager || role == Role::Mediator {
            return Err(InviteRefused::Forbidden);
        }
        if role.needs_side() != side.is_some() {
            return Err(InviteRefused::SideRule);
        }
        let config = &self.state.config;
        let ttl = ttl_secs
            .unwrap_or(config.invite_ttl_secs)
            .min(config.invite_max_ttl_secs);
        let (token, claims) =
            self.state
                .tokens
                .invite_for(&self.session, Some(&self.instance), role, side, ttl);
        Ok(ServerMessage::Invite {
            token,
            role,
            side,
            expires_at: claims.exp,
        })
    }

    fn is_current(&self, pid: &ParticipantId, conn_id: u64) -> bool {
        self.members
            .get(pid)
            .and_then(|x| x.conn.as_ref())
            .is_some_and(|c| c.id == conn_id)
    }

    // Applies everything the room asked for; returns when to wake it next.
    fn apply_outputs(&mut self) -> std::time::Instant {
        loop {
            let mut overflowed: Vec<ParticipantId> = Vec::new();
            match self.room.poll_output() {
                Output::Timeout(at) => {
                    self.forget_departed();
                    return at;
                }
                Output::Deliver { to, mut message } => {
                    // A welcome carries TURN credentials, made here (they need the time and
                    // the secret the room does not have); none when there is no media.
                    if let (ServerMessage::Welcome { ice_servers, .. }, Some(turn), Some(_)) =
                        (&mut message, &self.state.turn, &self.state.media)
                    {
                        let mut nonce = [0u8; 4];
                        let _ = getrandom::fill(&mut nonce);
                        *ice_servers = vec![turn.credentials(std::time::SystemTime::now(), nonce)];
                    }
                    // Serialize once, share the bytes with every recipient.
                    let text: Utf8Bytes = encode_server(&message).into();
                    for pid in to {
                        let Some(member) = self.members.get_mut(&pid) else {
                            continue;
                        };
                        let Some(conn) = member.conn.as_ref() else {
                            continue;
                        };
                        if !conn.send(Outbound::Text(text.clone())) {
                            // Too slow to keep up: drop the connection; it may resume. The
                            // room learns it is disconnected (grace period, then removal).
                            tracing::info!("dropping a connection whose send queue is full");
                            conn.shutdown.notify_one();
                            member.conn = None;
                            m::slow_consumer();
                            overflowed.push(pid.clone());
                        }
                    }
                }
                Output::Close { participant, code } => {
                    if !self.room.contains(&participant)
                        && let Some(media) = &self.state.media
                    {
                        let _ = media.send(
                            self.generation,
                            MediaCmd::Gone {
                                pid: participant.clone(),
                            },
                        );
                    }
                    if let Some(conn) = self.members.remove(&participant).and_then(|x| x.conn) {
                        conn.send(Outbound::Close(code.code(), code.reason()));
                    }
                }
                Output::Audit(event) => self.audit(event),
                Output::Routing(table) => self.routing(&table),
                Output::Ended => {}
                _ => {}
            }
            let now = Instant::now().into_std();
            for participant in overflowed {
                let _ = self
                    .room
                    .handle_input(Input::Disconnected { participant, now });
            }
        }
    }

    // Participants the room no longer holds (left from the waiting room, timed out, ...):
    // forget their connection slot, and their media peer at once.
    fn forget_departed(&mut self) {
        let gone: Vec<ParticipantId> = self
            .members
            .keys()
            .filter(|p| !self.room.contains(p))
            .cloned()
            .collect();
        for pid in gone {
            self.members.remove(&pid);
            if let Some(media) = &self.state.media {
                let _ = media.send(self.generation, MediaCmd::Gone { pid });
            }
        }
    }

    fn audit(&self, e: AuditEvent) {
        self.state.audit.record(NewEvent {
            at: unix_now(),
            session: self.session.as_str().to_owned(),
            event: e.kind.name().to_owned(),
            participant: e.participant.map(|p| p.as_str().to_owned()),
            role: e.role.map(|r| r.as_str().to_owned()),
            detail: e.kind.detail().map(str::to_owned),
        });
    }

    fn routing(&mut self, table: &RoutingTable) {
        tracing::debug!(channels = table.len(), "routing changed");
        // The SFU forwards by the same table: a move takes effect for media at once.
        if let Some(media) = &self.state.media {
            let cmd = MediaCmd::Routing {
                session: self.generation,
                table: table.clone(),
            };
            if media.send(self.generation, cmd).is_err() {
                tracing::error!("the media thread is gone; a routing change was not applied");
            }
        }
        // Offers parked in the waiting room go to the SFU after the routing that admits them.
        let admitted: Vec<ParticipantId> = self
            .members
            .iter()
            .filter(|(p, m)| m.parked_offer.is_some() && self.room.is_admitted(p))
            .map(|(p, _)| p.clone())
            .collect();
        for pid in admitted {
            if let Some(cmd) = self
                .members
                .get_mut(&pid)
                .and_then(|m| m.parked_offer.take())
            {
                self.to_media(cmd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::spent::SpentInvites;
    use crate::token::Tokens;
    use tokio::sync::oneshot;

    struct Fixture {
        state: Arc<AppState>,
        handle: SessionHandle,
        dir: std::path::PathBuf,
    }

    fn fixture() -> Fixture {
        fixture_with(None)
    }

    fn fixture_with(media: Option<crate::messages::MediaHandle>) -> Fixture {
        let dir = std::env::temp_dir().join(format!("confer-session-{}", random_id()));
        let config = Config::dev(dir.clone());
        let (spent, _) = SpentInvites::open(&config.tokens_path(), unix_now()).unwrap();
        let audit = crate::audit::AuditLog::start(&config.audit_path()).unwrap();
        let (docs, _) = crate::docs::DocStore::open(
            &config.docs_path(),
            crate::docs::DocLimits::from_config(&config),
            crate::clock::Clock::system(),
        )
        .unwrap();
        let state = Arc::new(AppState::new(
            config,
            Tokens::new(&[7; 32]),
            spent,
            audit,
            docs,
            media,
            None,
        ));
        let session = SessionId::new("s1").unwrap();
        let handle = spawn(state.clone(), session.clone(), 1, None);
        state.sessions.insert(session, handle.clone());
        Fixture { state, handle, dir }
    }

    // A connection nobody reads: the test looks only at replies.
    fn conn(id: u64) -> Conn {
        let (tx, rx) = mpsc::channel(1024);
        std::mem::forget(rx);
        Conn {
            id,
            tx,
            shutdown: Arc::new(tokio::sync::Notify::new()),
        }
    }

    impl Fixture {
        async fn join(
            &self,
            role: Role,
            side: Option<Side>,
            conn_id: u64,
        ) -> (ParticipantId, String) {
            let pid = ParticipantId::new(random_id()).unwrap();
            let resume_jti = random_id();
            let (reply, answer) = oneshot::channel();
            let cmd = SessionCmd::Join {
                pid: pid.clone(),
                role,
                side,
                resume_jti: resume_jti.clone(),
                resume_exp: 0,
                resume_token: "r".into(),
                conn: conn(conn_id),
                reply,
            };
            self.handle.tx.send(cmd).await.unwrap();
            answer.await.unwrap().unwrap();
            (pid, resume_jti)
        }

        async fn invite(
            &self,
            pid: &ParticipantId,
            conn_id: u64,
        ) -> Result<ServerMessage, InviteRefused> {
            let (reply, answer) = oneshot::channel();
            let cmd = SessionCmd::CreateInvite {
                pid: pid.clone(),
                conn_id,
                role: Role::Party,
                side: Some(Side::A),
                ttl_secs: Some(60),
                reply,
            };
            self.handle.tx.send(cmd).await.unwrap();
            answer.await.unwrap()
        }
    }

    #[tokio::test]
    async fn only_a_managers_current_connection_mints_and_its_invites_name_the_instance() {
        let f = fixture();
        let (m, m_jti) = f.join(Role::Mediator, None, 1).await;
        let (c, _) = f.join(Role::CoMediator, None, 2).await;
        let (p, _) = f.join(Role::Party, Some(Side::B), 3).await;

        // A manager's current connection mints, bound to this instance of the session.
        let Ok(ServerMessage::Invite { token, .. }) = f.invite(&c, 2).await else {
            panic!("the co-mediator mints")
        };
        let Ok(crate::token::Verified::Invite { instance, .. }) = f.state.tokens.verify(&token)
        else {
            panic!("an invite")
        };
        assert_eq!(instance.as_deref(), Some(f.handle.instance.as_str()));
        assert_eq!(f.invite(&p, 3).await, Err(InviteRefused::Forbidden));

        // The mediator resumes on connection 4: connection 1 is replaced and cannot mint.
        let (reply, answer) = oneshot::channel();
        f.handle
            .tx
            .send(SessionCmd::Resume {
                pid: m.clone(),
                presented_jti: m_jti,
                presented_exp: 0,
                resume_jti: random_id(),
                resume_exp: 0,
                resume_token: "r2".into(),
                conn: conn(4),
                reply,
            })
            .await
            .unwrap();
        answer.await.unwrap().unwrap();
        assert_eq!(f.invite(&m, 1).await, Err(InviteRefused::Forbidden));
        assert!(f.invite(&m, 4).await.is_ok());

        // The co-mediator is kicked: its connection, still open on its side, cannot mint.
        f.handle
            .tx
            .send(SessionCmd::Command {
                pid: m.clone(),
                conn_id: 4,
                command: Command::Kick(c.clone()),
                in_reply_to: "kick",
                relay_bytes: 0,
            })
            .await
            .unwrap();
        assert_eq!(f.invite(&c, 2).await, Err(InviteRefused::Forbidden));
        assert!(f.invite(&m, 4).await.is_ok(), "the mediator still can");
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    impl Fixture {
        async fn command(&self, pid: &ParticipantId, conn_id: u64, command: Command) {
            let cmd = SessionCmd::Command {
                pid: pid.clone(),
                conn_id,
                command,
                in_reply_to: "t",
                relay_bytes: 0,
            };
            self.handle.tx.send(cmd).await.unwrap();
        }

        async fn offer(
            &self,
            pid: &ParticipantId,
            conn_id: u64,
        ) -> oneshot::Receiver<Result<String, OfferRefused>> {
            let (reply, answer) = oneshot::channel();
            let cmd = MediaCmd::Offer {
                pid: pid.clone(),
                sdp: "v=0".into(),
                conn: conn(conn_id),
                reply,
            };
            let via = SessionCmd::Media {
                pid: pid.clone(),
                conn_id,
                cmd,
            };
            self.handle.tx.send(via).await.unwrap();
            answer
        }
    }

    // Everything the session task has asked of the SFU so far: offers by participant.
    fn offers_to_sfu(rx: &mut mpsc::UnboundedReceiver<MediaCmd>) -> Vec<ParticipantId> {
        let mut out = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            if let MediaCmd::Offer { pid, .. } = cmd {
                out.push(pid);
            }
        }
        out
    }

    /// The channel stands where the media thread reads: what arrives there is work for the SFU.
    #[tokio::test(start_paused = true)]
    async fn offers_reach_the_sfu_only_after_admission_and_at_most_one_per_interval() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let f = fixture_with(Some(crate::messages::MediaHandle::detached(tx)));
        let interval = Duration::from_millis(f.state.config.media_offer_interval_ms);
        assert_eq!(interval, Duration::from_secs(2), "the default");
        let (m, _) = f.join(Role::Mediator, None, 1).await;
        let (p, _) = f.join(Role::Party, Some(Side::A), 2).await;

        // From the waiting room: parked, the SFU is not asked.
        let mut first = f.offer(&p, 2).await;
        f.invite(&m, 1).await.unwrap(); // a round trip: the offer was handled
        assert!(offers_to_sfu(&mut rx).is_empty());
        assert!(first.try_recv().is_err(), "no answer yet");

        // Another offer sooner than the interval is refused, whatever the room.
        let too_soon = f.offer(&p, 2).await;
        assert_eq!(too_soon.await.unwrap(), Err(OfferRefused::TooSoon));

        // Admission passes the parked offer on, after the routing that admits it.
        f.command(
            &p,
            2,
            Command::Consent(
                confer_proto::AgreementHash::new(
                    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                )
                .unwrap(),
            ),
        )
        .await;
        f.command(&m, 1, Command::Admit(p.clone())).await;
        f.invite(&m, 1).await.unwrap();
        let mut saw_routing = false;
        let mut order = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                MediaCmd::Routing { table, .. } => {
                    saw_routing |= table.values().flatten().any(|x| *x == p);
                    order.push("routing");
                }
                MediaCmd::Offer { pid, .. } => {
                    assert!(saw_routing, "the offer comes after the routing that admits");
                    assert_eq!(pid, p);
                    order.push("offer");
                }
                _ => {}
            }
        }
        assert_eq!(
            order.iter().filter(|x| **x == "offer").count(),
            1,
            "{order:?}"
        );

        // Admitted: one offer per interval, measured from the last one taken.
        tokio::time::advance(interval - Duration::from_millis(1)).await;
        assert_eq!(
            f.offer(&p, 2).await.await.unwrap(),
            Err(OfferRefused::TooSoon)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let _pending = f.offer(&p, 2).await;
        f.invite(&m, 1).await.unwrap();
        assert_eq!(offers_to_sfu(&mut rx), vec![p.clone()]);
        // The mediator's budget is its own.
        let _pending = f.offer(&m, 1).await;
        f.invite(&m, 1).await.unwrap();
        assert_eq!(offers_to_sfu(&mut rx), vec![m]);
        drop(first);
        let _ = std::fs::remove_dir_all(&f.dir);
    }
}
