//! The room state machine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use confer_proto::{
    AgreementHash, ChannelId, ChannelKind, ChannelMember, ChannelView, CloseCode, DocHash,
    ErrorCode, LeaveReason, ParticipantId, RelayTarget, Role, ServerMessage, SessionId,
    SessionView, Side, WaitingView,
};

use crate::policy::{Location, RelayDecision, RelayTo, may_enter, may_relay};

/// The most distinct document versions one participant may acknowledge in a session: as many
/// documents as its client may hold (e2ee.md §8.7, `MAX_DOCS`).
pub const MAX_ACKNOWLEDGED_DOCS: usize = 256;

/// Tunables of one room.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoomConfig {
    /// How long a dropped participant may take to resume before it is removed.
    pub resume_grace: Duration,
    /// Relay bytes (of `data`) a participant in the waiting room may send per second.
    pub waiting_relay_bytes_per_sec: u32,
    /// Relay bytes a participant in the waiting room may send at once (its bucket's size).
    pub waiting_relay_burst_bytes: u32,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            resume_grace: Duration::from_secs(30),
            waiting_relay_bytes_per_sec: 1024,
            waiting_relay_burst_bytes: 16 * 1024,
        }
    }
}

impl RoomConfig {
    /// Sets the resume grace period.
    pub fn resume_grace(mut self, d: Duration) -> Self {
        self.resume_grace = d;
        self
    }

    /// Sets the waiting room's relay budget: `per_sec` bytes a second, `burst` at once.
    pub fn waiting_relay_budget(mut self, per_sec: u32, burst: u32) -> Self {
        self.waiting_relay_bytes_per_sec = per_sec;
        self.waiting_relay_burst_bytes = burst;
        self
    }
}

/// What happens to a room.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input {
    /// A participant authenticated with an invite token.
    Join {
        /// The id the shell assigned (random, fresh per join).
        participant: ParticipantId,
        /// From the token.
        role: Role,
        /// From the token.
        side: Option<Side>,
        /// Handed back to the participant in `welcome`.
        resume_token: String,
        /// Now.
        now: Instant,
    },
    /// A participant came back with its resume token.
    Resume {
        /// Who.
        participant: ParticipantId,
        /// The fresh resume token for the next drop.
        resume_token: String,
        /// Now.
        now: Instant,
    },
    /// A participant's connection dropped.
    Disconnected {
        /// Who.
        participant: ParticipantId,
        /// Now.
        now: Instant,
    },
    /// A participant asked for something.
    Command {
        /// Who.
        from: ParticipantId,
        /// What.
        command: Command,
        /// Now.
        now: Instant,
    },
    /// The session is ended from outside it (the console's purge): as if a manager sent
    /// `end`, every connected participant gets `session_ended` and is closed.
    End {
        /// Now.
        now: Instant,
    },
    /// Time passed (the deadline of the last [`Output::Timeout`] was reached, or any time).
    Timeout {
        /// Now.
        now: Instant,
    },
}

/// A participant's request, decoded from its signalling message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// Record the hash of the acknowledged agreement.
    Consent(AgreementHash),
    /// Admit a waiting participant.
    Admit(ParticipantId),
    /// Move a participant into a channel.
    Move(ParticipantId, ChannelId),
    /// Open a breakout with these members.
    CreateBreakout(Vec<ParticipantId>),
    /// Everyone back to joint.
    ReturnAll,
    /// No new arrivals.
    Lock,
    /// New arrivals again.
    Unlock,
    /// Remove a participant.
    Kick(ParticipantId),
    /// End the session.
    End,
    /// Leave.
    Leave,
    /// Relay opaque data.
    Relay(RelayTarget, String),
    /// Record that the sender acknowledged this version of a document (its SHA-256).
    AcknowledgeDoc(DocHash),
}

/// What the room asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Send this message to each of these (connected) participants.
    Deliver {
        /// Recipients.
        to: Vec<ParticipantId>,
        /// The message.
        message: ServerMessage,
    },
    /// Close this participant's connection with this code (after delivering what came before).
    Close {
        /// Who.
        participant: ParticipantId,
        /// Why.
        code: CloseCode,
    },
    /// Append a content-free event to the audit log.
    Audit(AuditEvent),
    /// Who receives which channel's traffic changed (for the SFU).
    Routing(RoutingTable),
    /// The session is over; the shell drops the room.
    Ended,
    /// Nothing more to do until this instant (or the next input).
    Timeout(Instant),
}

/// A content-free audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// To whom (pseudonymous).
    pub participant: Option<ParticipantId>,
    /// Their role.
    pub role: Option<Role>,
}

/// Kinds of audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// The session was created.
    SessionCreated,
    /// Someone arrived (mediators go straight in; others to the waiting room).
    Arrived,
    /// The agreement hash someone acknowledged.
    Consent(AgreementHash),
    /// Admitted into the joint session.
    Admitted,
    /// Moved into a channel.
    Moved(ChannelId),
    /// Locked.
    Locked,
    /// Unlocked.
    Unlocked,
    /// Gone, and why.
    Left(LeaveReason),
    /// The session ended.
    SessionEnded,
    /// A version of a document (its SHA-256) someone acknowledged.
    DocAcknowledged(DocHash),
}

impl AuditKind {
    /// The event's stable name in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            AuditKind::SessionCreated => "session_created",
            AuditKind::Arrived => "arrived",
            AuditKind::Consent(_) => "consent",
            AuditKind::Admitted => "admitted",
            AuditKind::Moved(_) => "moved",
            AuditKind::Locked => "locked",
            AuditKind::Unlocked => "unlocked",
            AuditKind::Left(LeaveReason::Kicked) => "kicked",
            AuditKind::Left(LeaveReason::Left) => "left",
            AuditKind::Left(LeaveReason::Timeout) => "timed_out",
            AuditKind::SessionEnded => "session_ended",
            AuditKind::DocAcknowledged(_) => "doc_acknowledged",
        }
    }

    /// The event's content-free detail: a consent hash, a channel id, or the SHA-256 of an
    /// acknowledged document version.
    pub fn detail(&self) -> Option<&str> {
        match self {
            AuditKind::Consent(h) => Some(h.as_str()),
            AuditKind::DocAcknowledged(h) => Some(h.as_str()),
            AuditKind::Moved(c) => Some(c.as_str()),
            _ => None,
        }
    }
}

/// For each channel, who is in it (connected or within the grace period).
pub type RoutingTable = BTreeMap<ChannelId, Vec<ParticipantId>>;

/// Why the room refused an input. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoomError {
    /// The sender's role may not do this.
    Forbidden,
    /// No such participant or channel.
    NotFound,
    /// Admission without a consent hash.
    ConsentRequired,
    /// Already admitted.
    AlreadyAdmitted,
    /// Still in the waiting room.
    NotAdmitted,
    /// The move breaks a channel rule.
    InvalidMove,
    /// The relay path is not allowed.
    RelayNotAllowed,
    /// Locked: no new arrivals.
    Locked,
    /// The session has ended.
    Ended,
    /// The token's role and side do not fit together.
    BadCredentials,
    /// The shell reused a participant id.
    DuplicateParticipant,
    /// A relay from the waiting room over the waiting room's byte budget.
    RateLimited,
}

impl RoomError {
    /// The wire error code.
    pub fn code(self) -> ErrorCode {
        match self {
            RoomError::Forbidden => ErrorCode::Forbidden,
            RoomError::NotFound => ErrorCode::NotFound,
            RoomError::ConsentRequired => ErrorCode::ConsentRequired,
            RoomError::AlreadyAdmitted => ErrorCode::AlreadyAdmitted,
            RoomError::NotAdmitted => ErrorCode::NotAdmitted,
            RoomError::InvalidMove => ErrorCode::InvalidMove,
            RoomError::RelayNotAllowed => ErrorCode::RelayNotAllowed,
            RoomError::Locked => ErrorCode::SessionLocked,
            RoomError::Ended => ErrorCode::SessionEnded,
            RoomError::BadCredentials => ErrorCode::Unauthorized,
            RoomError::DuplicateParticipant => ErrorCode::Internal,
            RoomError::RateLimited => ErrorCode::RateLimited,
        }
    }
}

impl std::fmt::Display for RoomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code().message())
    }
}

impl std::error::Error for RoomError {}

// The fields below are `pub(crate)` for `snapshot.rs` alone, which writes and rebuilds the
// decision state; everything else goes through `Room`'s methods.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    Waiting,
    In(ChannelId),
}

impl Place {
    // Compares without building a `Place` (no id clone on the relay path).
    fn is_in(&self, c: &ChannelId) -> bool {
        matches!(self, Place::In(x) if x == c)
    }
}

#[derive(Debug)]
pub(crate) struct Participant {
    pub(crate) role: Role,
    pub(crate) side: Option<Side>,
    pub(crate) place: Place,
    pub(crate) consent: Option<AgreementHash>,
    /// The document versions it acknowledged (at most [`MAX_ACKNOWLEDGED_DOCS`]).
    pub(crate) acknowledged: BTreeSet<DocHash>,
    connected: bool,
    /// When a dropped participant is removed.
    deadline: Option<Instant>,
    /// Arrival order, for the waiting-room list.
    pub(crate) arrival: u64,
    /// The last channel view sent, so that unchanged views are not resent (a party learns
    /// nothing from traffic about arrivals elsewhere).
    seen_channel: Option<ChannelView>,
    /// Managers only: the last session view sent.
    seen_session: Option<SessionView>,
    /// Relay bytes left to a participant in the waiting room, and when it was last topped up.
    waiting_budget: (f64, Instant),
}

impl Participant {
    // Someone who just arrived (connected, nothing agreed or acknowledged yet), with a full
    // waiting-room relay budget.
    pub(crate) fn arriving(
        role: Role,
        side: Option<Side>,
        place: Place,
        arrival: u64,
        config: &RoomConfig,
        now: Instant,
    ) -> Self {
        Self {
            role,
            side,
            place,
            consent: None,
            acknowledged: BTreeSet::new(),
            connected: true,
            deadline: None,
            arrival,
            seen_channel: None,
            seen_session: None,
            waiting_budget: (f64::from(config.waiting_relay_burst_bytes), now),
        }
    }

    // The connection dropped: removed at `deadline` unless it resumes first. The views it was
    // sent go with the connection (a resume's welcome carries the full picture again).
    pub(crate) fn drop_connection(&mut self, deadline: Instant) {
        self.connected = false;
        self.deadline = Some(deadline);
        self.seen_channel = None;
        self.seen_session = None;
    }
}

/// One mediation session's signalling state.
#[derive(Debug)]
pub struct Room {
    pub(crate) session: SessionId,
    pub(crate) config: RoomConfig,
    pub(crate) participants: BTreeMap<ParticipantId, Participant>,
    pub(crate) breakouts: BTreeSet<ChannelId>,
    pub(crate) next_breakout: u32,
    pub(crate) next_arrival: u64,
    pub(crate) locked: bool,
    ended: bool,
    now: Instant,
    routing: RoutingTable,
    out: VecDeque<Output>,
}

// How far ahead an idle room asks to be woken: it has nothing to do, but a finite deadline
// keeps the shell's loop simple.
const IDLE: Duration = Duration::from_secs(3600);

impl Room {
    /// A new, empty, unlocked session. Emits the `session_created` audit event.
    pub fn new(session: SessionId, config: RoomConfig, now: Instant) -> Self {
        let mut room = Self::blank(session, config, now);
        room.audit(AuditKind::SessionCreated, None);
        room
    }

    // A room with no participants, no outputs queued and no audit row written.
    pub(crate) fn blank(session: SessionId, config: RoomConfig, now: Instant) -> Self {
        Self {
            session,
            config,
            participants: BTreeMap::new(),
            breakouts: BTreeSet::new(),
            next_breakout: 1,
            next_arrival: 0,
            locked: false,
            ended: false,
            now,
            routing: RoutingTable::new(),
            out: VecDeque::new(),
        }
    }

    /// The session id.
    pub fn session_id(&self) -> &SessionId {
        &self.session
    }

    /// True once the session ended (by a mediator, or because everyone left).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True while locked.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Number of participants (waiting, admitted, or within their grace period).
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Whether this participant is still part of the session.
    pub fn contains(&self, p: &ParticipantId) -> bool {
        self.participants.contains_key(p)
    }

    /// Whether this participant has been admitted (is in a channel, not the waiting room).
    pub fn is_admitted(&self, p: &ParticipantId) -> bool {
        self.participants
            .get(p)
            .is_some_and(|x| matches!(x.place, Place::In(_)))
    }

    /// The current routing table.
    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    /// Feeds one input. On `Err`, nothing changed and no output was queued, with one
    /// exception: time passes first, so grace periods that ran out by `now` expire, and if
    /// that ended the session the input is refused with [`RoomError::Ended`] after the end's
    /// outputs were queued.
    pub fn handle_input(&mut self, input: Input) -> Result<(), RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        let now = match &input {
            Input::Join { now, .. }
            | Input::Resume { now, .. }
            | Input::Disconnected { now, .. }
            | Input::Command { now, .. }
            | Input::End { now }
            | Input::Timeout { now } => *now,
        };
        self.advance(now);
        // The session's own timer may just have ended it: nothing joins or acts in it then.
        if self.ended {
            return match input {
                Input::Timeout { .. } => Ok(()),
                _ => Err(RoomError::Ended),
            };
        }
        match input {
            Input::Join {
                participant,
                role,
                side,
                resume_token,
                ..
            } => self.join(participant, role, side, resume_token),
            Input::Resume {
                participant,
                resume_token,
                ..
            } => self.resume(&participant, resume_token),
            Input::Disconnected { participant, .. } => self.disconnected(&participant),
            Input::Command { from, command, .. } => self.command(&from, command),
            Input::End { .. } => {
                self.end();
                Ok(())
            }
            Input::Timeout { .. } => Ok(()),
        }
    }

    /// The next thing for the shell to do; [`Output::Timeout`] when there is nothing until then.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let next = self.participants.values().filter_map(|p| p.deadline).min();
        Output::Timeout(next.unwrap_or(self.now + IDLE))
    }

    // Time moves forward only; expire participants whose grace period is over.
    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        let expired: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= self.now))
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in expired {
            self.remove(&id, LeaveReason::Timeout);
        }
        self.sync();
    }

    fn join(
        &mut self,
        id: ParticipantId,
        role: Role,
        side: Option<Side>,
        resume_token: String,
    ) -> Result<(), RoomError> {
        if role.needs_side() != side.is_some() {
            return Err(RoomError::BadCredentials);
        }
        if self.participants.contains_key(&id) {
            return Err(RoomError::DuplicateParticipant);
        }
        // A lock stops new arrivals, not the people who run the session.
        if self.locked && !role.is_manager() {
            return Err(RoomError::Locked);
        }
        let place = if role.is_manager() {
            Place::In(ChannelId::joint())
        } else {
            Place::Waiting
        };
        self.next_arrival += 1;
        self.participants.insert(
            id.clone(),
            Participant::arriving(role, side, place, self.next_arrival, &self.config, self.now),
        );
        self.audit(AuditKind::Arrived, Some(&id));
        if role.is_manager() {
            self.audit(AuditKind::Admitted, Some(&id));
        }
        self.welcome(&id, resume_token, false);
        self.sync();
        Ok(())
    }

    fn resume(&mut self, id: &ParticipantId, resume_token: String) -> Result<(), RoomError> {
        let p = self.participants.get_mut(id).ok_or(RoomError::NotFound)?;
        p.connected = true;
        p.deadline = None;
        // The welcome carries the full picture again; start the dedup afresh.
        p.seen_channel = None;
        p.seen_session = None;
        self.welcome(id, resume_token, true);
        self.sync();
        Ok(())
    }

    fn welcome(&mut self, id: &ParticipantId, resume_token: String, resumed: bool) {
        let Some(p) = self.participants.get(id) else {
            return;
        };
        let channel = match &p.place {
            Place::Waiting => None,
            Place::In(c) => self.channel_view(c),
        };
        let message = ServerMessage::Welcome {
            participant_id: id.clone(),
            session_id: self.session.clone(),
            role: p.role,
            side: p.side,
            resume_token,
            resume_grace_secs: self.config.resume_grace.as_secs(),
            channel: channel.clone(),
            resumed,
            locked: self.locked,
            // The shell adds TURN credentials (they depend on time and a secret).
            ice_servers: Vec::new(),
        };
        if let Some(p) = self.participants.get_mut(id) {
            p.seen_channel = channel;
        }
        self.deliver(vec![id.clone()], message);
    }

    fn disconnected(&mut self, id: &ParticipantId) -> Result<(), RoomError> {
        let deadline = self.resume_deadline();
        let p = self.participants.get_mut(id).ok_or(RoomError::NotFound)?;
        p.drop_connection(deadline);
        self.sync();
        Ok(())
    }

    // When a participant whose connection drops now is removed, unless it resumes first.
    pub(crate) fn resume_deadline(&self) -> Instant {
        self.now + self.config.resume_grace
    }

    fn command(&mut self, from: &ParticipantId, command: Command) -> Result<(), RoomError> {
        let sender = self.participants.get(from).ok_or(RoomError::NotFound)?;
        let manager = sender.role.is_manager();
        let need_manager = || {
            if manager {
                Ok(())
            } else {
                Err(RoomError::Forbidden)
            }
        };
        match command {
            Command::Consent(hash) => self.consent(from, hash),
            Command::Admit(target) => {
                need_manager()?;
                self.admit(&target)
            }
            Command::Move(target, channel) => {
                need_manager()?;
                self.check_move(&target, &channel)?;
                self.place(&target, channel);
                self.sync();
                Ok(())
            }
            Command::CreateBreakout(members) => {
                need_manager()?;
                self.create_breakout(members)
            }
            Command::ReturnAll => {
                need_manager()?;
                let admitted: Vec<ParticipantId> = self
                    .participants
                    .iter()
                    .filter(|(_, p)| matches!(p.place, Place::In(_)))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in admitted {
                    self.place(&id, ChannelId::joint());
                }
                self.sync();
                Ok(())
            }
            Command::Lock | Command::Unlock => {
                need_manager()?;
                let lock = matches!(command, Command::Lock);
                if self.locked != lock {
                    self.locked = lock;
                    self.audit(
                        if lock {
                            AuditKind::Locked
                        } else {
                            AuditKind::Unlocked
                        },
                        None,
                    );
                    let to = self.admitted_connected();
                    self.deliver(to, ServerMessage::LockChanged { locked: lock });
                    self.sync();
                }
                Ok(())
            }
            Command::Kick(target) => {
                need_manager()?;
                let t = self.participants.get(&target).ok_or(RoomError::NotFound)?;
                // Nobody removes the mediator, and nobody removes themselves this way.
                if t.role == Role::Mediator || &target == from {
                    return Err(RoomError::Forbidden);
                }
                if t.connected {
                    self.deliver(vec![target.clone()], ServerMessage::Kicked);
                    self.out.push_back(Output::Close {
                        participant: target.clone(),
                        code: CloseCode::Kicked,
                    });
                }
                self.remove(&target, LeaveReason::Kicked);
                self.sync();
                Ok(())
            }
            Command::End => {
                need_manager()?;
                self.end();
                Ok(())
            }
            Command::Leave => {
                self.out.push_back(Output::Close {
                    participant: from.clone(),
                    code: CloseCode::Left,
                });
                self.remove(from, LeaveReason::Left);
                self.sync();
                Ok(())
            }
            Command::Relay(target, data) => self.relay(from, target, data),
            Command::AcknowledgeDoc(hash) => self.acknowledge_doc(from, hash),
        }
    }

    // Admitted participants only: in the waiting room nobody holds a document. A repeated
    // acknowledgment of the same version writes no second row; a participant's distinct
    // versions are bounded like the documents its client may hold.
    fn acknowledge_doc(&mut self, from: &ParticipantId, hash: DocHash) -> Result<(), RoomError> {
        let p = self.participants.get_mut(from).ok_or(RoomError::NotFound)?;
        if p.place == Place::Waiting {
            return Err(RoomError::Forbidden);
        }
        if p.acknowledged.contains(&hash) {
            return Ok(());
        }
        if p.acknowledged.len() >= MAX_ACKNOWLEDGED_DOCS {
            return Err(RoomError::Forbidden);
        }
        p.acknowledged.insert(hash.clone());
        self.audit(AuditKind::DocAcknowledged(hash), Some(from));
        Ok(())
    }

    fn consent(&mut self, from: &ParticipantId, hash: AgreementHash) -> Result<(), RoomError> {
        let p = self.participants.get_mut(from).ok_or(RoomError::NotFound)?;
        if p.place != Place::Waiting {
            return Err(RoomError::AlreadyAdmitted);
        }
        // A repeated identical consent is answered but writes no audit row: the log records
        // what a participant agreed to, not how often it said so.
        if p.consent.as_ref() != Some(&hash) {
            p.consent = Some(hash.clone());
            self.audit(AuditKind::Consent(hash), Some(from));
        }
        self.deliver(vec![from.clone()], ServerMessage::ConsentRecorded);
        self.sync();
        Ok(())
    }

    fn admit(&mut self, target: &ParticipantId) -> Result<(), RoomError> {
        let t = self.participants.get(target).ok_or(RoomError::NotFound)?;
        if t.place != Place::Waiting {
            return Err(RoomError::AlreadyAdmitted);
        }
        if t.consent.is_none() {
            return Err(RoomError::ConsentRequired);
        }
        self.audit(AuditKind::Admitted, Some(target));
        self.place(target, ChannelId::joint());
        self.sync();
        Ok(())
    }

    fn check_move(&self, target: &ParticipantId, channel: &ChannelId) -> Result<(), RoomError> {
        let t = self.participants.get(target).ok_or(RoomError::NotFound)?;
        if t.place == Place::Waiting {
            return Err(RoomError::NotAdmitted);
        }
        let (kind, caucus_side) = self.channel_kind(channel).ok_or(RoomError::NotFound)?;
        if !may_enter(t.role, t.side, kind, caucus_side) {
            return Err(RoomError::InvalidMove);
        }
        Ok(())
    }

    fn create_breakout(&mut self, members: Vec<ParticipantId>) -> Result<(), RoomError> {
        let members: BTreeSet<ParticipantId> = members.into_iter().collect();
        if members.is_empty() {
            return Err(RoomError::InvalidMove);
        }
        for m in &members {
            let p = self.participants.get(m).ok_or(RoomError::NotFound)?;
            if p.place == Place::Waiting {
                return Err(RoomError::NotAdmitted);
            }
        }
        let id = ChannelId::breakout(self.next_breakout);
        self.next_breakout += 1;
        self.breakouts.insert(id.clone());
        for m in &members {
            self.place(m, id.clone());
        }
        self.sync();
        Ok(())
    }

    fn relay(
        &mut self,
        from: &ParticipantId,
        target: RelayTarget,
        data: String,
    ) -> Result<(), RoomError> {
        let sender = self.participants.get(from).ok_or(RoomError::NotFound)?;
        let waiting = sender.place == Place::Waiting;
        // Path first: a refused relay spends no budget.
        let to = self.relay_recipients(from, &target)?;
        if waiting {
            self.spend_waiting_budget(from, data.len())?;
        }
        let channel = match target {
            RelayTarget::Channel(channel) => Some(channel),
            RelayTarget::Participant(_) => None,
        };
        self.deliver(
            to,
            ServerMessage::Relayed {
                from: from.clone(),
                channel,
                data,
            },
        );
        Ok(())
    }

    // Who a relay goes to (connected recipients only), or why it may not go.
    fn relay_recipients(
        &self,
        from: &ParticipantId,
        target: &RelayTarget,
    ) -> Result<Vec<ParticipantId>, RoomError> {
        let sender = self.participants.get(from).ok_or(RoomError::NotFound)?;
        let sender_at = location(&sender.place);
        match target {
            RelayTarget::Channel(channel) => {
                if self.channel_kind(channel).is_none() {
                    return Err(RoomError::NotFound);
                }
                if may_relay(sender.role, sender_at, RelayTo::Channel(channel))
                    == RelayDecision::Deny
                {
                    return Err(RoomError::RelayNotAllowed);
                }
                Ok(self
                    .participants
                    .iter()
                    .filter(|(id, p)| *id != from && p.connected && p.place.is_in(channel))
                    .map(|(id, _)| id.clone())
                    .collect())
            }
            RelayTarget::Participant(to) => {
                let r = self.participants.get(to).ok_or(RoomError::NotFound)?;
                let decision = may_relay(
                    sender.role,
                    sender_at,
                    RelayTo::Participant {
                        role: r.role,
                        at: location(&r.place),
                    },
                );
                if decision == RelayDecision::Deny {
                    return Err(RoomError::RelayNotAllowed);
                }
                Ok(if r.connected {
                    vec![to.clone()]
                } else {
                    Vec::new()
                })
            }
        }
    }

    // The waiting room's own, much smaller relay budget (a token bucket in bytes): what a
    // person there needs to send is an announcement and a consent, each under 1 KiB. Over it,
    // the relay is refused and nothing is spent.
    fn spend_waiting_budget(
        &mut self,
        from: &ParticipantId,
        bytes: usize,
    ) -> Result<(), RoomError> {
        let (rate, burst) = (
            f64::from(self.config.waiting_relay_bytes_per_sec),
            f64::from(self.config.waiting_relay_burst_bytes),
        );
        let now = self.now;
        let p = self.participants.get_mut(from).ok_or(RoomError::NotFound)?;
        let (left, at) = p.waiting_budget;
        let left = (left + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst);
        p.waiting_budget = (left, now);
        let cost = bytes as f64;
        if cost > left {
            return Err(RoomError::RateLimited);
        }
        p.waiting_budget.0 = left - cost;
        Ok(())
    }

    fn end(&mut self) {
        let everyone: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.connected)
            .map(|(id, _)| id.clone())
            .collect();
        self.deliver(everyone.clone(), ServerMessage::SessionEnded);
        for participant in everyone {
            self.out.push_back(Output::Close {
                participant,
                code: CloseCode::SessionEnded,
            });
        }
        self.finish();
    }

    fn finish(&mut self) {
        self.participants.clear();
        self.breakouts.clear();
        self.ended = true;
        self.audit(AuditKind::SessionEnded, None);
        if !self.routing.is_empty() {
            self.routing.clear();
            self.out.push_back(Output::Routing(RoutingTable::new()));
        }
        self.out.push_back(Output::Ended);
    }

    // Moves a participant and records it; the caller syncs views.
    fn place(&mut self, id: &ParticipantId, channel: ChannelId) {
        let Some(p) = self.participants.get_mut(id) else {
            return;
        };
        if p.place.is_in(&channel) {
            return;
        }
        p.place = Place::In(channel.clone());
        self.audit(AuditKind::Moved(channel), Some(id));
    }

    fn remove(&mut self, id: &ParticipantId, reason: LeaveReason) {
        // Audit first, while the role is still known.
        self.audit(AuditKind::Left(reason), Some(id));
        let Some(p) = self.participants.remove(id) else {
            return;
        };
        // Tell the people who could see this participant: its channel's members and the
        // mediators. Nobody in the waiting room hears of it.
        let to: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(_, q)| {
                q.connected
                    && (q.role.is_manager() || (p.place != Place::Waiting && q.place == p.place))
            })
            .map(|(qid, _)| qid.clone())
            .collect();
        self.deliver(
            to,
            ServerMessage::ParticipantLeft {
                participant_id: id.clone(),
                reason,
            },
        );
        if self.participants.is_empty() {
            self.finish();
        }
    }

    fn channel_kind(&self, c: &ChannelId) -> Option<(ChannelKind, Option<Side>)> {
        channel_kind(c, &self.breakouts)
    }

    fn channel_view(&self, c: &ChannelId) -> Option<ChannelView> {
        let (kind, _) = self.channel_kind(c)?;
        let members = self
            .participants
            .iter()
            .filter(|(_, p)| p.place.is_in(c))
            .map(|(id, p)| ChannelMember {
                participant_id: id.clone(),
                role: p.role,
                side: p.side,
                connected: p.connected,
            })
            .collect();
        Some(ChannelView {
            id: c.clone(),
            kind,
            members,
        })
    }

    fn session_view(&self) -> SessionView {
        let mut waiting: Vec<(&u64, WaitingView)> = self
            .participants
            .iter()
            .filter(|(_, p)| p.place == Place::Waiting)
            .map(|(id, p)| {
                (
                    &p.arrival,
                    WaitingView {
                        participant_id: id.clone(),
                        role: p.role,
                        side: p.side,
                        consented: p.consent.is_some(),
                        connected: p.connected,
                    },
                )
            })
            .collect();
        waiting.sort_by_key(|(a, _)| **a);
        let mut channels = vec![ChannelId::joint()];
        channels.extend(
            self.occupied_channels()
                .into_iter()
                .filter(|c| c.as_str() != "joint"),
        );
        SessionView {
            locked: self.locked,
            waiting: waiting.into_iter().map(|(_, w)| w).collect(),
            channels: channels
                .iter()
                .filter_map(|c| self.channel_view(c))
                .collect(),
        }
    }

    fn occupied_channels(&self) -> BTreeSet<ChannelId> {
        self.participants
            .values()
            .filter_map(|p| match &p.place {
                Place::In(c) => Some(c.clone()),
                Place::Waiting => None,
            })
            .collect()
    }

    fn admitted_connected(&self) -> Vec<ParticipantId> {
        self.participants
            .iter()
            .filter(|(_, p)| p.connected && p.place != Place::Waiting)
            .map(|(id, _)| id.clone())
            .collect()
    }

    // After every change: drop empty breakouts, then tell each participant what changed in
    // what they may see, and the SFU what changed in routing.
    fn sync(&mut self) {
        if self.ended {
            return;
        }
        let occupied = self.occupied_channels();
        self.breakouts.retain(|b| occupied.contains(b));

        let views = self.channel_views(&occupied);
        let session = self.session_view();
        let mut sends = Vec::new();
        for (id, p) in self.participants.iter_mut() {
            if !p.connected {
                continue;
            }
            if let Place::In(c) = &p.place {
                let view = views.get(c);
                if view.is_some() && p.seen_channel.as_ref() != view {
                    p.seen_channel = view.cloned();
                    if let Some(v) = view {
                        sends.push((id.clone(), ServerMessage::Channel { channel: v.clone() }));
                    }
                }
            }
            if p.role.is_manager() && p.seen_session.as_ref() != Some(&session) {
                p.seen_session = Some(session.clone());
                sends.push((
                    id.clone(),
                    ServerMessage::Session {
                        session: session.clone(),
                    },
                ));
            }
        }
        for (id, m) in sends {
            self.deliver(vec![id], m);
        }

        let routing = routing_of(views);
        if routing != self.routing {
            self.routing = routing.clone();
            self.out.push_back(Output::Routing(routing));
        }
    }

    // Tells the shell the whole routing table, changed or not: a room rebuilt from a snapshot
    // starts beside an SFU that knows nothing of it.
    pub(crate) fn announce_routing(&mut self) {
        let routing = routing_of(self.channel_views(&self.occupied_channels()));
        self.routing = routing.clone();
        self.out.push_back(Output::Routing(routing));
    }

    fn channel_views(&self, occupied: &BTreeSet<ChannelId>) -> BTreeMap<ChannelId, ChannelView> {
        occupied
            .iter()
            .filter_map(|c| Some((c.clone(), self.channel_view(c)?)))
            .collect()
    }

    fn deliver(&mut self, to: Vec<ParticipantId>, message: ServerMessage) {
        if !to.is_empty() {
            self.out.push_back(Output::Deliver { to, message });
        }
    }

    fn audit(&mut self, kind: AuditKind, participant: Option<&ParticipantId>) {
        let role = participant
            .and_then(|id| self.participants.get(id))
            .map(|p| p.role);
        self.out.push_back(Output::Audit(AuditEvent {
            kind,
            participant: participant.cloned(),
            role,
        }));
    }
}

/// What kind of channel `c` is in a room whose open breakouts are `breakouts` (and, for a
/// caucus, whose), or `None` if the room has no such channel.
pub(crate) fn channel_kind(
    c: &ChannelId,
    breakouts: &BTreeSet<ChannelId>,
) -> Option<(ChannelKind, Option<Side>)> {
    let s = c.as_str();
    if s == "joint" {
        return Some((ChannelKind::Joint, None));
    }
    if let Some(side) = s.strip_prefix("caucus-") {
        return side
            .parse::<Side>()
            .ok()
            .filter(|x| x.to_string() == side)
            .map(|x| (ChannelKind::Caucus, Some(x)));
    }
    if breakouts.contains(c) {
        return Some((ChannelKind::Breakout, None));
    }
    None
}

// Who receives each channel's traffic: every member, connected or within its grace period.
fn routing_of(views: BTreeMap<ChannelId, ChannelView>) -> RoutingTable {
    views
        .into_iter()
        .map(|(c, v)| (c, v.members.into_iter().map(|m| m.participant_id).collect()))
        .collect()
}

fn location(place: &Place) -> Location<'_, ChannelId> {
    match place {
        Place::Waiting => Location::Waiting,
        Place::In(c) => Location::In(c),
    }
}
