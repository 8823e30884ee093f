//! The sans-IO signalling core of Confer: one [`Room`] per mediation session.
//!
//! A room holds participants, the waiting room, consent hashes, channels (joint, one caucus
//! per side, breakouts), the lock, and the relay policy. It never reads the clock, never draws
//! randomness and never touches a socket: the shell feeds it [`Input`]s with `now`, then drains
//! [`Room::poll_output`] until it returns [`Output::Timeout`], and applies each output.
//!
//! In cluster mode the shell also keeps [`Room::snapshot`] in Redis, so that another node can
//! take the session over with [`Room::restore`] (see [`RoomSnapshot`]).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use confer_proto::{ParticipantId, Role, SessionId};
//! use confer_room::{Input, Output, Room, RoomConfig};
//!
//! let now = Instant::now();
//! let mut room = Room::new(SessionId::new("s1").unwrap(), RoomConfig::default(), now);
//! let m = ParticipantId::new("m1").unwrap();
//! let resume_token = "minted by the shell".to_string();
//! room.handle_input(Input::Join { participant: m, role: Role::Mediator, side: None, resume_token, now })
//!     .unwrap();
//! let next_wakeup = loop {
//!     match room.poll_output() {
//!         Output::Timeout(at) => break at,
//!         _other => { /* deliver messages, write audit rows, update routing ... */ }
//!     }
//! };
//! assert!(next_wakeup > now);
//! ```

mod policy;
mod room;
mod snapshot;

pub use policy::{Location, RelayDecision, RelayTo, may_enter, may_relay};
pub use room::{
    AuditEvent, AuditKind, Command, Input, MAX_ACKNOWLEDGED_DOCS, Output, Room, RoomConfig,
    RoomError, RoutingTable,
};
pub use snapshot::{ParticipantSnapshot, RestoreError, RoomSnapshot, SNAPSHOT_VERSION};
