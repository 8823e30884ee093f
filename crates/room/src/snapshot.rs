//! A room's decision state as data ([`RoomSnapshot`]), and a room rebuilt from it
//! ([`Room::restore`]), for a node that takes over a session whose owner died.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Instant;

use confer_proto::{AgreementHash, ChannelId, DocHash, ParticipantId, Role, SessionId, Side};
use serde::{Deserialize, Serialize};

use crate::policy::may_enter;
use crate::room::{MAX_ACKNOWLEDGED_DOCS, Participant, Place, Room, RoomConfig, channel_kind};

/// The version of the [`RoomSnapshot`] format this crate writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// What a room's decisions depend on, as data.
///
/// In cluster mode a session is owned by one node. When that node dies, another takes the
/// session over from the snapshot the owner last wrote to Redis. It holds who is who, who is
/// where, who agreed to what, which breakouts are open, the counters and the lock, and
/// nothing else:
///
/// - no connections, deadlines, views already sent or waiting-room relay budgets: they belong to
///   the connections of the dead node. [`Room::restore`] treats everyone as having just dropped
///   their connection, so each either resumes within the grace period or times out, exactly as
///   after a drop on the original node;
/// - no clock: `Instant`s mean nothing on another machine; time restarts at the `now` given to
///   [`Room::restore`];
/// - no outputs: whatever the dead node had not yet applied is lost with it;
/// - no `ended` flag: the shell deletes an ended session's state instead of writing it, so a
///   snapshot always describes a live session.
///
/// Like everything the server keeps, it is content-free: pseudonymous ids, roles, sides,
/// channel ids, and the hashes of the agreement and of acknowledged documents.
///
/// The format is JSON through serde, `v` its version ([`SNAPSHOT_VERSION`]). Unknown fields are
/// refused rather than ignored, so an older build refuses a newer format either while parsing
/// (a field it does not know) or in [`Room::restore`] (a `v` it does not read). Participants
/// are listed in id order and sets in sorted order, so the same room always gives the same
/// bytes:
///
/// ```json
/// {"v":1,"session":"s1",
///  "participants":[
///   {"id":"p1","role":"mediator","side":null,"place":"joint","consent":null,
///    "acknowledged_docs":[],"arrival":1},
///   {"id":"p2","role":"party","side":"A","place":null,
///    "consent":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
///    "acknowledged_docs":[],"arrival":2}],
///  "breakouts":[],"next_breakout":1,"next_arrival":2,"locked":false}
/// ```
///
/// `place: null` is the waiting room. `tests/snapshot.rs` pins this shape.
///
/// Made by [`Room::snapshot`], turned back into a room by [`Room::restore`], which checks it
/// first. The fields are public to read and to test with; a snapshot is not meant to be
/// written by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RoomSnapshot {
    /// The format version, [`SNAPSHOT_VERSION`].
    pub v: u32,
    /// The session.
    pub session: SessionId,
    /// Everyone in the session (waiting, admitted, or within a grace period), in id order.
    pub participants: Vec<ParticipantSnapshot>,
    /// The open breakouts (each has at least one member).
    pub breakouts: BTreeSet<ChannelId>,
    /// The number the next breakout gets.
    pub next_breakout: u32,
    /// The last arrival number handed out (0 before anyone arrived).
    pub next_arrival: u64,
    /// No new arrivals.
    pub locked: bool,
}

/// One participant in a [`RoomSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ParticipantSnapshot {
    /// Its pseudonym.
    pub id: ParticipantId,
    /// Its role.
    pub role: Role,
    /// Its side: parties and counsel have one, nobody else does.
    pub side: Option<Side>,
    /// The channel it is in; `None` is the waiting room.
    pub place: Option<ChannelId>,
    /// The hash of the agreement it acknowledged, if it did.
    pub consent: Option<AgreementHash>,
    /// The document versions it acknowledged.
    pub acknowledged_docs: BTreeSet<DocHash>,
    /// Its arrival number (orders the waiting room), from 1.
    pub arrival: u64,
}

/// Why [`Room::restore`] refused a snapshot: it describes a room that could never have been
/// reached. Nothing was built.
///
/// Content-free on purpose (no ids), so that it may be logged as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreError {
    /// A format version this build does not read.
    UnsupportedVersion(u32),
    /// Two participants with the same id.
    DuplicateParticipant,
    /// A participant whose role and side do not fit together (a party or counsel without a
    /// side, anyone else with one).
    SideMismatch,
    /// A mediator or co-mediator in the waiting room (managers go straight in).
    ManagerWaiting,
    /// A participant in a channel the room does not have: a breakout that is not open, or a
    /// name no channel has.
    UnknownChannel,
    /// A participant in a channel its role and side may never enter (the other side's caucus,
    /// an observer in a caucus).
    PlaceNotAllowed,
    /// A party, counsel or observer admitted without a consent hash.
    AdmittedWithoutConsent,
    /// Acknowledged documents in the waiting room, where nobody holds a document.
    DocumentsWhileWaiting,
    /// More acknowledged documents than [`MAX_ACKNOWLEDGED_DOCS`](crate::MAX_ACKNOWLEDGED_DOCS).
    TooManyDocuments,
    /// An arrival number of 0 or past `next_arrival`.
    ArrivalOutOfRange,
    /// Two participants with the same arrival number.
    DuplicateArrival,
    /// A breakout that is not `breakout-N` with `1 <= N < next_breakout` (or a `next_breakout`
    /// of 0: breakouts are numbered from 1).
    BreakoutOutOfRange,
    /// An open breakout nobody is in (the room closes a breakout when its last member goes).
    EmptyBreakout,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::UnsupportedVersion(v) => write!(
                f,
                "room snapshot version {v} is not supported (this build reads {SNAPSHOT_VERSION})"
            ),
            RestoreError::DuplicateParticipant => {
                f.write_str("room snapshot lists a participant twice")
            }
            RestoreError::SideMismatch => {
                f.write_str("room snapshot has a participant whose role and side do not fit")
            }
            RestoreError::ManagerWaiting => {
                f.write_str("room snapshot has a mediator in the waiting room")
            }
            RestoreError::UnknownChannel => {
                f.write_str("room snapshot places a participant in a channel the room lacks")
            }
            RestoreError::PlaceNotAllowed => {
                f.write_str("room snapshot places a participant in a channel it may not enter")
            }
            RestoreError::AdmittedWithoutConsent => {
                f.write_str("room snapshot has a participant admitted without consent")
            }
            RestoreError::DocumentsWhileWaiting => f.write_str(
                "room snapshot has acknowledged documents for someone in the waiting room",
            ),
            RestoreError::TooManyDocuments => {
                f.write_str("room snapshot has more acknowledged documents than allowed")
            }
            RestoreError::ArrivalOutOfRange => {
                f.write_str("room snapshot has an arrival number out of range")
            }
            RestoreError::DuplicateArrival => {
                f.write_str("room snapshot has two participants with one arrival number")
            }
            RestoreError::BreakoutOutOfRange => {
                f.write_str("room snapshot has a breakout number out of range")
            }
            RestoreError::EmptyBreakout => f.write_str("room snapshot has an empty breakout"),
        }
    }
}

impl std::error::Error for RestoreError {}

impl Room {
    /// The room's decision state as data (see [`RoomSnapshot`]), in a deterministic order.
    ///
    /// Queues no output and changes nothing. The shell writes it after each change and never
    /// for an ended room (it deletes the session's state then).
    pub fn snapshot(&self) -> RoomSnapshot {
        RoomSnapshot {
            v: SNAPSHOT_VERSION,
            session: self.session.clone(),
            participants: self
                .participants
                .iter()
                .map(|(id, p)| ParticipantSnapshot {
                    id: id.clone(),
                    role: p.role,
                    side: p.side,
                    place: match &p.place {
                        Place::Waiting => None,
                        Place::In(c) => Some(c.clone()),
                    },
                    consent: p.consent.clone(),
                    acknowledged_docs: p.acknowledged.clone(),
                    arrival: p.arrival,
                })
                .collect(),
            breakouts: self.breakouts.clone(),
            next_breakout: self.next_breakout,
            next_arrival: self.next_arrival,
            locked: self.locked,
        }
    }

    /// Rebuilds a room from a snapshot, on a node taking the session over.
    ///
    /// The snapshot is checked first; one the room could never have reached is refused (see
    /// [`RestoreError`]). Everyone starts disconnected, as if each had just dropped its
    /// connection at `now`: [`Input::Resume`](crate::Input::Resume) brings a participant back
    /// to where it was with the usual resumed welcome, and whoever has not resumed by
    /// `now + config.resume_grace` is removed with [`LeaveReason::Timeout`] and the others are
    /// told.
    ///
    /// The only output queued is an [`Output::Routing`](crate::Output::Routing) with the whole
    /// routing table (the new node's SFU knows nothing of the session yet): no audit event (the
    /// session was created once, on its first node) and no delivery (nobody is connected).
    ///
    /// [`LeaveReason::Timeout`]: confer_proto::LeaveReason::Timeout
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use confer_proto::{ParticipantId, Role, SessionId};
    /// use confer_room::{Input, Output, Room, RoomConfig, RoomSnapshot};
    ///
    /// let now = Instant::now();
    /// let mut room = Room::new(SessionId::new("s1").unwrap(), RoomConfig::default(), now);
    /// let m = ParticipantId::new("m1").unwrap();
    /// let resume_token = "minted by the shell".to_string();
    /// room.handle_input(Input::Join { participant: m.clone(), role: Role::Mediator, side: None, resume_token, now })
    ///     .unwrap();
    ///
    /// // The owning node writes this after every change...
    /// let stored = serde_json::to_string(&room.snapshot()).unwrap();
    /// // ...and another node takes over after it died.
    /// let later = now + Duration::from_secs(5);
    /// let snapshot: RoomSnapshot = serde_json::from_str(&stored).unwrap();
    /// let mut taken_over = Room::restore(snapshot, RoomConfig::default(), later).unwrap();
    /// assert_eq!(taken_over.poll_output(), Output::Routing(room.routing().clone()));
    /// // The mediator has the grace period to resume.
    /// assert_eq!(taken_over.poll_output(), Output::Timeout(later + Duration::from_secs(30)));
    /// ```
    pub fn restore(
        snapshot: RoomSnapshot,
        config: RoomConfig,
        now: Instant,
    ) -> Result<Room, RestoreError> {
        validate(&snapshot)?;
        let mut room = Room::blank(snapshot.session, config, now);
        room.breakouts = snapshot.breakouts;
        room.next_breakout = snapshot.next_breakout;
        room.next_arrival = snapshot.next_arrival;
        room.locked = snapshot.locked;
        let deadline = room.resume_deadline();
        for s in snapshot.participants {
            let place = s.place.map_or(Place::Waiting, Place::In);
            let mut p = Participant::arriving(s.role, s.side, place, s.arrival, &room.config, now);
            p.consent = s.consent;
            p.acknowledged = s.acknowledged_docs;
            // Their connections died with the old node: the same state a drop leaves, so a
            // resume or a timeout takes the same path as on the original node.
            p.drop_connection(deadline);
            room.participants.insert(s.id, p);
        }
        room.announce_routing();
        Ok(room)
    }
}

// Refuses what no sequence of inputs could have produced, rule by rule as the room enforces
// it: a restored room must never let anyone be somewhere, or hear something, that the
// original could not have.
fn validate(s: &RoomSnapshot) -> Result<(), RestoreError> {
    if s.v != SNAPSHOT_VERSION {
        return Err(RestoreError::UnsupportedVersion(s.v));
    }
    for b in &s.breakouts {
        // Breakouts are numbered from 1 and `next_breakout` is the next number to hand out.
        match breakout_number(b) {
            Some(n) if n >= 1 && n < s.next_breakout => {}
            _ => return Err(RestoreError::BreakoutOutOfRange),
        }
    }
    if s.next_breakout == 0 {
        return Err(RestoreError::BreakoutOutOfRange);
    }
    let mut ids = BTreeSet::new();
    let mut arrivals = BTreeSet::new();
    for p in &s.participants {
        if !ids.insert(&p.id) {
            return Err(RestoreError::DuplicateParticipant);
        }
        // A join increments `next_arrival`, then takes it: arrivals run 1..=next_arrival.
        if p.arrival == 0 || p.arrival > s.next_arrival {
            return Err(RestoreError::ArrivalOutOfRange);
        }
        if !arrivals.insert(p.arrival) {
            return Err(RestoreError::DuplicateArrival);
        }
        if p.role.needs_side() != p.side.is_some() {
            return Err(RestoreError::SideMismatch);
        }
        if p.acknowledged_docs.len() > MAX_ACKNOWLEDGED_DOCS {
            return Err(RestoreError::TooManyDocuments);
        }
        match &p.place {
            None => {
                if p.role.is_manager() {
                    return Err(RestoreError::ManagerWaiting);
                }
                if !p.acknowledged_docs.is_empty() {
                    return Err(RestoreError::DocumentsWhileWaiting);
                }
            }
            Some(c) => {
                let (kind, caucus_side) =
                    channel_kind(c, &s.breakouts).ok_or(RestoreError::UnknownChannel)?;
                if !may_enter(p.role, p.side, kind, caucus_side) {
                    return Err(RestoreError::PlaceNotAllowed);
                }
                // Admission needs a consent hash; only managers go in without one.
                if !p.role.is_manager() && p.consent.is_none() {
                    return Err(RestoreError::AdmittedWithoutConsent);
                }
            }
        }
    }
    for b in &s.breakouts {
        if !s.participants.iter().any(|p| p.place.as_ref() == Some(b)) {
            return Err(RestoreError::EmptyBreakout);
        }
    }
    Ok(())
}

// `breakout-N` in the form the room writes it (no sign, no leading zero), or `None`.
fn breakout_number(c: &ChannelId) -> Option<u32> {
    let n: u32 = c.as_str().strip_prefix("breakout-")?.parse().ok()?;
    (ChannelId::breakout(n) == *c).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakout_numbers_in_the_rooms_own_form_only() {
        let c = |s: &str| ChannelId::new(s).unwrap();
        assert_eq!(breakout_number(&c("breakout-1")), Some(1));
        assert_eq!(breakout_number(&c("breakout-12")), Some(12));
        assert_eq!(breakout_number(&c("breakout-01")), None);
        assert_eq!(breakout_number(&c("breakout-")), None);
        assert_eq!(breakout_number(&c("breakout-x")), None);
        assert_eq!(breakout_number(&c("joint")), None);
        assert_eq!(breakout_number(&c("caucus-A")), None);
    }
}
