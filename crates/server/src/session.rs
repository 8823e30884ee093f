//! The session task: one tokio task per session, a thin loop around [`confer_room::Room`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use confer_proto::{ErrorCode, ParticipantId, Role, ServerMessage, SessionId, Side, encode_server};
use confer_room::{AuditEvent, Command, Input, Output, Room, RoomConfig, RoutingTable};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::audit::NewEvent;
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
    role: Role,
    /// When the session task last took a `media_offer` from this participant.
    last_offer: Option<Instant>,
    /// An offer made in the waiting room, held until admission: until then the SFU does no
    /// work for this participant. A newer offer replaces it.
    parked_offer: Option<MediaCmd>,
}

pub(crate) fn spawn(state: Arc<AppState>, session: SessionId, generation: u64) -> SessionHandle {
    let (tx, rx) = mpsc::channel(1024);
    let config = RoomConfig::default()
        .resume_grace(Duration::from_secs(state.config.resume_grace_secs))
        .waiting_relay_budget(
            state.config.waiting_relay_bytes_per_sec,
            state.config.waiting_relay_burst_bytes,
        );
    let room = Room::new(session.clone(), config, Instant::now().into_std());
    let instance = random_id();
    // A session started in the console keeps the retention its mediator chose.
    let chosen = state.sessions.take_plan(&session).map(|p| p.docs_retention);
    let docs_retention_secs = state.docs.limits().retention_secs(chosen);
    let task = SessionTask {
        state,
        session,
        generation,
        instance: instance.clone(),
        room,
        members: HashMap::new(),
        docs_retention_secs,
        ended_waiters: Vec::new(),
    };
    tokio::spawn(task.run(rx));
    SessionHandle {
        tx,
        generation,
        instance,
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
}

impl SessionTask {
    async fn run(mut self, mut rx: mpsc::Receiver<SessionCmd>) {
        m::session_opened();
        tracing::info!(session = %self.state.loggable(self.session.as_str()), "session created");
        loop {
            let wake = self.apply_outputs();
            if self.room.is_ended() {
                break;
            }
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    // Every sender is gone: the registry dropped us.
                    None => break,
                },
                () = tokio::time::sleep_until(Instant::from_std(wake)) => {
                    let now = Instant::now().into_std();
                    let _ = self.room.handle_input(Input::Timeout { now });
                }
            }
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
        match cmd {
            SessionCmd::Join {
                pid,
                role,
                side,
                resume_jti,
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
                resume_jti,
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
                // Only the newest resume token works; an older one was superseded.
                if member.resume_jti != presented_jti {
                    let _ = reply.send(Err(ErrorCode::Unauthorized));
                    return;
                }
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
            token: self.state.tokens.mint_doc(&claims),
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
            let _ = media.tx.send(cmd);
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
                        let _ = media.tx.send(MediaCmd::Gone {
                            pid: participant.clone(),
                        });
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
                let _ = media.tx.send(MediaCmd::Gone { pid });
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
            if media.tx.send(cmd).is_err() {
                tracing::error!("the media task is gone; a routing change was not applied");
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
        let handle = spawn(state.clone(), session.clone(), 1);
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
                resume_jti: random_id(),
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

    /// The channel stands where the media task reads: what arrives there is work for the SFU.
    #[tokio::test(start_paused = true)]
    async fn offers_reach_the_sfu_only_after_admission_and_at_most_one_per_interval() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let f = fixture_with(Some(crate::messages::MediaHandle { tx }));
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
