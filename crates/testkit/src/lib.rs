//! Test harnesses for Confer: a virtual clock and a room driver for the sans-IO cores, and a
//! WebSocket client ([`ws::WsClient`]) for tests against a real server.
//!
//! Tests never sleep: they move [`VirtualClock`] forward and feed the new `now` to the core.

pub mod media;
pub mod ws;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use confer_proto::{CloseCode, ParticipantId, Role, ServerMessage, SessionId, Side};
use confer_room::{AuditEvent, Command, Input, Output, Room, RoomConfig, RoomError, RoutingTable};

/// A clock that moves only when told to.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    start: Instant,
    now: Instant,
}

impl VirtualClock {
    /// A clock starting at an arbitrary fixed point.
    pub fn new() -> Self {
        // The only real clock read in the harness: a base for virtual offsets.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Self { start, now: start }
    }

    /// Now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Time since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// `start + ms`, Signal-style: `clock.at(1500)`.
    pub fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now += d;
        self.now
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Drives a [`Room`] in virtual time and sorts its outputs per participant.
#[derive(Debug)]
pub struct RoomHarness {
    /// The room under test.
    pub room: Room,
    /// Its clock.
    pub clock: VirtualClock,
    /// Messages delivered, per recipient, not yet taken.
    pub inbox: BTreeMap<ParticipantId, Vec<ServerMessage>>,
    /// Every audit event so far.
    pub audit: Vec<AuditEvent>,
    /// Every routing table emitted so far.
    pub routing: Vec<RoutingTable>,
    /// Every close asked for.
    pub closed: Vec<(ParticipantId, CloseCode)>,
    /// Whether the room said it ended.
    pub ended: bool,
    /// The last deadline the room asked to be woken at.
    pub wake_at: Option<Instant>,
    next_id: u32,
}

impl RoomHarness {
    /// A fresh session `s1` with the given config.
    pub fn new(config: RoomConfig) -> Self {
        let clock = VirtualClock::new();
        let room = Room::new(SessionId::new("s1").expect("valid id"), config, clock.now());
        let mut h = Self {
            room,
            clock,
            inbox: BTreeMap::new(),
            audit: Vec::new(),
            routing: Vec::new(),
            closed: Vec::new(),
            ended: false,
            wake_at: None,
            next_id: 0,
        };
        h.drain();
        h
    }

    /// Joins a new participant; returns its id.
    pub fn join(&mut self, role: Role, side: Option<Side>) -> Result<ParticipantId, RoomError> {
        self.next_id += 1;
        let id = ParticipantId::new(format!("p{}", self.next_id)).expect("valid id");
        let now = self.clock.now();
        let r = self.room.handle_input(Input::Join {
            participant: id.clone(),
            role,
            side,
            resume_token: format!("resume-{}", self.next_id),
            now,
        });
        self.drain();
        r.map(|()| id)
    }

    /// Sends a command.
    pub fn cmd(&mut self, from: &ParticipantId, command: Command) -> Result<(), RoomError> {
        let now = self.clock.now();
        let r = self.room.handle_input(Input::Command {
            from: from.clone(),
            command,
            now,
        });
        self.drain();
        r
    }

    /// The participant's connection drops.
    pub fn disconnect(&mut self, p: &ParticipantId) -> Result<(), RoomError> {
        let now = self.clock.now();
        let r = self.room.handle_input(Input::Disconnected {
            participant: p.clone(),
            now,
        });
        self.drain();
        r
    }

    /// The participant comes back.
    pub fn resume(&mut self, p: &ParticipantId) -> Result<(), RoomError> {
        let now = self.clock.now();
        let r = self.room.handle_input(Input::Resume {
            participant: p.clone(),
            resume_token: "resume-again".into(),
            now,
        });
        self.drain();
        r
    }

    /// Moves virtual time forward without telling the room: the next input is the first it
    /// hears of the time that passed (as when it races the shell's timer).
    pub fn skip(&mut self, d: Duration) {
        self.clock.advance(d);
    }

    /// Moves virtual time forward and lets the room act on it.
    pub fn advance(&mut self, d: Duration) {
        let now = self.clock.advance(d);
        let _ = self.room.handle_input(Input::Timeout { now });
        self.drain();
    }

    /// Takes (and clears) what a participant has received.
    pub fn take(&mut self, p: &ParticipantId) -> Vec<ServerMessage> {
        self.inbox.remove(p).unwrap_or_default()
    }

    /// The last routing table emitted.
    pub fn last_routing(&self) -> Option<&RoutingTable> {
        self.routing.last()
    }

    /// Drains the room's outputs into the harness.
    pub fn drain(&mut self) {
        loop {
            match self.room.poll_output() {
                Output::Timeout(at) => {
                    self.wake_at = Some(at);
                    break;
                }
                Output::Deliver { to, message } => {
                    for p in to {
                        self.inbox.entry(p).or_default().push(message.clone());
                    }
                }
                Output::Close { participant, code } => self.closed.push((participant, code)),
                Output::Audit(e) => self.audit.push(e),
                Output::Routing(r) => self.routing.push(r),
                Output::Ended => self.ended = true,
                _ => {}
            }
        }
    }
}
