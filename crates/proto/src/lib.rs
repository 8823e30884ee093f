//! Confer's wire types: identifiers, roles, signalling messages and error codes.
//!
//! Signalling is JSON text frames over one WebSocket (`GET /ws`); every frame is an object
//! with a `"type"` field. The full protocol is documented in `docs/protocol/signalling.md`.
//!
//! ```
//! use confer_proto::{decode_client, ClientMessage};
//! let msg = decode_client(r#"{"type":"ping"}"#).unwrap();
//! assert!(matches!(msg, ClientMessage::Ping));
//! ```

mod error;
mod ids;
mod message;

pub use error::{CloseCode, DecodeError, ErrorCode};
pub use ids::{ChannelId, ChannelKind, IdError, ParticipantId, Role, SessionId, Side};
pub use message::{
    AgreementHash, CLIENT_TYPES, ChannelMember, ChannelView, ClientMessage, IceServer, LeaveReason,
    MediaSlot, PROTOCOL_VERSION, RelayTarget, ServerMessage, SessionView, WaitingView,
    decode_client, encode_server,
};
