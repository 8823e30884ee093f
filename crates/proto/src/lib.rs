//! Confer's wire types: identifiers, roles, signalling messages, error codes, and the relay
//! envelope clients put in `relay.data` (its secrets encrypted; confer/1 §13).
//!
//! Signalling is JSON text frames over one WebSocket (`GET /ws`); every frame is an object
//! with a `"type"` field. The full protocol is documented in `docs/protocol/signalling.md`.
//!
//! ```
//! use confer_proto::{decode_client, ClientMessage};
//! let msg = decode_client(r#"{"type":"ping"}"#).unwrap();
//! assert!(matches!(msg, ClientMessage::Ping));
//! ```

pub mod envelope;
mod error;
mod ids;
mod message;

pub use error::{CloseCode, DecodeError, ErrorCode};
pub use ids::{ChannelId, ChannelKind, IdError, ParticipantId, Role, SessionId, Side};
pub use message::{
    AgreementHash, CLIENT_TYPES, ChannelMember, ChannelView, ClientMessage, DOC_CHUNK_BYTES,
    DOC_MAX_CHUNK_BODY, DOC_TAG_BYTES, DocHash, DocId, DocOp, IceServer, LeaveReason, MediaSlot,
    PROTOCOL_VERSION, RelayTarget, ServerMessage, SessionView, WaitingView, decode_client,
    doc_chunk_max_body, doc_chunks, encode_server,
};
