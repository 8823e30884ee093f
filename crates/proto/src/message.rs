//! Signalling messages, client to server and server to client.

use serde::{Deserialize, Serialize};

use crate::{ChannelId, ChannelKind, DecodeError, ErrorCode, ParticipantId, Role, SessionId, Side};

/// The signalling protocol version this crate speaks (`hello.version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Whether `s` is exactly `len` lowercase hex characters.
fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A string of exactly `$len` lowercase hex characters (a hash or an id the protocol carries
/// as text), refused with `$code` otherwise; `$msg` is what serde says of a wrong one.
macro_rules! lower_hex_string {
    ($(#[$meta:meta])* $name:ident, $len:expr, $code:expr, $msg:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Accepts exactly ", stringify!($len), " lowercase hex characters.")]
            pub fn new(s: impl Into<String>) -> Result<Self, ErrorCode> {
                let s = s.into();
                if is_lower_hex(&s, $len) {
                    Ok(Self(s))
                } else {
                    Err($code)
                }
            }

            /// The hex string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = &'static str;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s).map_err(|_| $msg)
            }
        }

        impl From<$name> for String {
            fn from(h: $name) -> String {
                h.0
            }
        }
    };
}

lower_hex_string!(
    /// The SHA-256 of the agreement to mediate that a participant acknowledged, as 64 lowercase
    /// hex characters. The server records only this hash, never the text.
    AgreementHash,
    64,
    ErrorCode::InvalidConsent,
    "agreement_hash must be 64 lowercase hex characters"
);

lower_hex_string!(
    /// The SHA-256 of one version of a document (a settlement draft) that a participant
    /// acknowledged (e2ee.md §8.7), as 64 lowercase hex characters. The server records only
    /// this hash: never the document, its name or its id.
    DocHash,
    64,
    ErrorCode::InvalidMessage,
    "sha256 must be 64 lowercase hex characters"
);

lower_hex_string!(
    /// A document's id: the 16 random bytes its sharer's client drew (e2ee.md §8.7), as 32
    /// lowercase hex characters. It names the document's chunks on the server (its folder
    /// name there) and nothing else.
    DocId,
    32,
    ErrorCode::InvalidMessage,
    "doc_id must be 32 lowercase hex characters"
);

/// What a document ticket allows: writing the document's chunks, or reading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocOp {
    /// `PUT /docs/{doc_id}/{index}`.
    Up,
    /// `GET /docs/{doc_id}/{index}`.
    Down,
}

impl DocOp {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DocOp::Up => "up",
            DocOp::Down => "down",
        }
    }
}

/// Bytes of the file in every chunk of a document but the last (e2ee.md §8.7, `CHUNK_BYTES`).
pub const DOC_CHUNK_BYTES: u64 = 65_536;

/// Bytes a sealed chunk adds to the file's bytes it carries (the AEAD tag).
pub const DOC_TAG_BYTES: u64 = 16;

/// The largest chunk body the server takes: a full chunk and its tag, 65,552 bytes.
pub const DOC_MAX_CHUNK_BODY: u64 = DOC_CHUNK_BYTES + DOC_TAG_BYTES;

/// How many chunks a document of `size` bytes is sealed in: `max(1, ceil(size / 65536))`
/// (an empty file is one empty last chunk).
pub fn doc_chunks(size: u64) -> u64 {
    size.div_ceil(DOC_CHUNK_BYTES).max(1)
}

/// The largest body chunk `index` of a document of `size` bytes can have once sealed: the
/// file's bytes it carries (65,536 but in the last chunk) and the tag. `None` past the last
/// chunk.
pub fn doc_chunk_max_body(size: u64, index: u64) -> Option<u64> {
    let chunks = doc_chunks(size);
    if index >= chunks {
        return None;
    }
    let carried = if index + 1 < chunks {
        DOC_CHUNK_BYTES
    } else {
        size - index * DOC_CHUNK_BYTES
    };
    Some(carried + DOC_TAG_BYTES)
}

/// Where a relayed message goes: every current member of a channel, or one participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayTarget {
    /// `{"channel": "joint"}`
    Channel(ChannelId),
    /// `{"participant": "<id>"}`
    Participant(ParticipantId),
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMessage {
    /// The first message on every connection.
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// An invite token or a resume token (a JWT). Never in the URL.
        token: String,
    },
    /// The hash of the agreement to mediate the participant acknowledged.
    Consent {
        /// SHA-256, 64 lowercase hex characters.
        agreement_hash: AgreementHash,
    },
    /// Mediators: admit a waiting participant into the joint session.
    Admit {
        /// Who.
        participant_id: ParticipantId,
    },
    /// Mediators: move an admitted participant (or themselves) into a channel.
    Move {
        /// Who.
        participant_id: ParticipantId,
        /// `joint`, `caucus-A`, or an existing breakout.
        channel_id: ChannelId,
    },
    /// Mediators: open a breakout room with these members and move them into it.
    CreateBreakout {
        /// Admitted participants to move into the new room.
        members: Vec<ParticipantId>,
    },
    /// Mediators: bring every admitted participant back to the joint session.
    ReturnAll,
    /// Mediators: lock the session; nobody new may arrive.
    Lock,
    /// Mediators: unlock the session.
    Unlock,
    /// Mediators: remove a participant.
    Kick {
        /// Who.
        participant_id: ParticipantId,
    },
    /// Mediators: end the session for everyone.
    End,
    /// Leave the session.
    Leave,
    /// Send opaque bytes (ciphertext, base64 or any text the clients agree on).
    Relay {
        /// A channel or a participant.
        to: RelayTarget,
        /// The opaque payload, relayed unchanged.
        data: String,
    },
    /// Mediators: mint an invite token for someone new.
    CreateInvite {
        /// The invitee's role.
        role: Role,
        /// The invitee's side (party and counsel only).
        #[serde(default)]
        side: Option<Side>,
        /// Lifetime in seconds; the server caps it.
        #[serde(default)]
        ttl_secs: Option<u64>,
    },
    /// Keep-alive; answered with `pong`.
    Ping,
    /// Media: an SDP offer for the one peer connection to the SFU (answered with `media_answer`).
    MediaOffer {
        /// The SDP offer.
        sdp: String,
    },
    /// Media: ask a publisher in my channel for a keyframe (after switching keys).
    KeyframeRequest {
        /// The publisher.
        publisher: ParticipantId,
    },
    /// Documents: ask to store a sealed document's chunks (answered with a `doc_ticket` of
    /// op `up`). Admitted participants only.
    DocUpload {
        /// The document, named by its sharer's client.
        doc_id: DocId,
        /// The file's size in bytes (before sealing).
        size: u64,
        /// How many chunks: must be [`doc_chunks`]`(size)`.
        chunks: u32,
    },
    /// Documents: ask to read a document of this session (answered with a `doc_ticket` of op
    /// `down`). Admitted participants only.
    DocDownload {
        /// The document.
        doc_id: DocId,
    },
    /// Documents: the sender acknowledged this version of a document (its client signed the
    /// pairwise acknowledgment, e2ee.md §8.7); recorded as a content-free audit row. Admitted
    /// participants only; no answer unless refused.
    DocAck {
        /// The version's SHA-256, 64 lowercase hex characters.
        sha256: DocHash,
    },
}

impl ClientMessage {
    /// The wire name of the message type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "hello",
            ClientMessage::Consent { .. } => "consent",
            ClientMessage::Admit { .. } => "admit",
            ClientMessage::Move { .. } => "move",
            ClientMessage::CreateBreakout { .. } => "create_breakout",
            ClientMessage::ReturnAll => "return_all",
            ClientMessage::Lock => "lock",
            ClientMessage::Unlock => "unlock",
            ClientMessage::Kick { .. } => "kick",
            ClientMessage::End => "end",
            ClientMessage::Leave => "leave",
            ClientMessage::Relay { .. } => "relay",
            ClientMessage::CreateInvite { .. } => "create_invite",
            ClientMessage::Ping => "ping",
            ClientMessage::MediaOffer { .. } => "media_offer",
            ClientMessage::KeyframeRequest { .. } => "keyframe_request",
            ClientMessage::DocUpload { .. } => "doc_upload",
            ClientMessage::DocDownload { .. } => "doc_download",
            ClientMessage::DocAck { .. } => "doc_ack",
        }
    }
}

/// The wire name of every client message type.
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "consent",
    "admit",
    "move",
    "create_breakout",
    "return_all",
    "lock",
    "unlock",
    "kick",
    "end",
    "leave",
    "relay",
    "create_invite",
    "ping",
    "media_offer",
    "keyframe_request",
    "doc_upload",
    "doc_download",
    "doc_ack",
];

/// Decodes one client text frame, classifying failures into stable codes.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(msg) => {
            // serde's `deny_unknown_fields` does not reach the variants without fields of an
            // internally tagged enum: `{"type":"ping","x":1}` would pass. Those take `type`
            // alone.
            let bare = matches!(
                msg,
                ClientMessage::Ping
                    | ClientMessage::ReturnAll
                    | ClientMessage::Lock
                    | ClientMessage::Unlock
                    | ClientMessage::End
                    | ClientMessage::Leave
            );
            if bare
                && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                    .is_ok_and(|m| m.len() != 1)
            {
                return Err(DecodeError {
                    code: ErrorCode::InvalidMessage,
                    detail: format!(
                        "{}: unknown field (this message has no fields)",
                        msg.type_name()
                    ),
                });
            }
            Ok(msg)
        }
        Err(err) => Err(classify(text, &err)),
    }
}

// Only on the error path: find out whether the frame was bad JSON, an unknown type, or a
// known type with bad fields. Never echo the frame itself (it may hold a token): every detail
// below is built from this file's static strings only, never from serde's message (which
// quotes the value: `invalid type: string "eyJ…", expected u32`) nor from the frame's keys.
fn classify(text: &str, err: &serde_json::Error) -> DecodeError {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow)]
        ty: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Envelope<'_>>(text) {
        Err(_) => DecodeError {
            code: ErrorCode::BadJson,
            detail: "expected one JSON object".to_owned(),
        },
        Ok(Envelope { ty: None }) => DecodeError {
            code: ErrorCode::UnknownType,
            detail: "the \"type\" field is missing".to_owned(),
        },
        Ok(Envelope { ty: Some(ty) }) => match FIELDS.iter().find(|(t, _)| *t == ty) {
            None => DecodeError {
                code: ErrorCode::UnknownType,
                detail: "this server knows no message of that type".to_owned(),
            },
            // serde's message is only inspected here, never passed on.
            Some(("consent", _)) if err.to_string().contains("agreement_hash must") => {
                DecodeError {
                    code: ErrorCode::InvalidConsent,
                    detail: "agreement_hash".to_owned(),
                }
            }
            Some((ty, fields)) => DecodeError {
                code: ErrorCode::InvalidMessage,
                detail: format!("{ty}: {}", field_detail(text, fields)),
            },
        },
    }
}

/// What each field of a client message must hold, as told to a client whose message was
/// refused. One entry per [`CLIENT_TYPES`] entry, in the same order; tests keep it in step with
/// [`ClientMessage`].
const FIELDS: &[(&str, &[(&str, &str)])] = &[
    (
        "hello",
        &[("version", "a whole number"), ("token", "a string")],
    ),
    ("consent", &[("agreement_hash", HASH)]),
    ("admit", &[("participant_id", ID)]),
    ("move", &[("participant_id", ID), ("channel_id", ID)]),
    (
        "create_breakout",
        &[("members", "an array of participant ids")],
    ),
    ("return_all", &[]),
    ("lock", &[]),
    ("unlock", &[]),
    ("kick", &[("participant_id", ID)]),
    ("end", &[]),
    ("leave", &[]),
    (
        "relay",
        &[
            ("to", "an object {\"channel\": id} or {\"participant\": id}"),
            ("data", "a string"),
        ],
    ),
    (
        "create_invite",
        &[
            (
                "role",
                "one of mediator, co_mediator, party, counsel, observer",
            ),
            ("side", "one letter A to Z"),
            ("ttl_secs", "a whole number"),
        ],
    ),
    ("ping", &[]),
    ("media_offer", &[("sdp", "a string")]),
    ("keyframe_request", &[("publisher", ID)]),
    (
        "doc_upload",
        &[
            ("doc_id", DOC_ID),
            ("size", "a whole number"),
            ("chunks", "a whole number"),
        ],
    ),
    ("doc_download", &[("doc_id", DOC_ID)]),
    ("doc_ack", &[("sha256", HASH)]),
];

const ID: &str = "a string of 1 to 64 characters A-Z a-z 0-9 _ -";
const HASH: &str = "a string of 64 lowercase hex characters";
const DOC_ID: &str = "a string of 32 lowercase hex characters";

/// Which field of a message of a known type is wrong, and what it must hold. Only static text.
fn field_detail(text: &str, fields: &[(&'static str, &'static str)]) -> String {
    let names = || {
        let list: Vec<String> = fields.iter().map(|(f, _)| format!("`{f}`")).collect();
        if list.is_empty() {
            "this message has no other fields".to_owned()
        } else {
            format!("its fields are {}", list.join(", "))
        }
    };
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) else {
        return format!("expected one JSON object ({})", names());
    };
    // A key this message does not have: say so without repeating it.
    if map
        .keys()
        .any(|k| k != "type" && !fields.iter().any(|(f, _)| f == k))
    {
        return format!("unknown field ({})", names());
    }
    let decode = |m: serde_json::Map<String, serde_json::Value>| {
        serde_json::from_value::<ClientMessage>(serde_json::Value::Object(m))
            .map_err(|e| e.to_string())
    };
    // The map keeps one value per key: if it decodes, the frame repeated a key.
    let Err(baseline) = decode(map.clone()) else {
        return format!("a field appears more than once ({})", names());
    };
    for (f, _) in fields {
        if baseline == format!("missing field `{f}`") {
            return format!("missing field `{f}`");
        }
    }
    // serde stops at the first bad field: the field whose removal changes the outcome is it.
    // At most three decodes (the most fields of any message), whatever the frame holds.
    for (f, expected) in fields {
        if map.contains_key(*f) {
            let mut without = map.clone();
            without.remove(*f);
            if decode(without).err().as_ref() != Some(&baseline) {
                return format!("`{f}` must be {expected}");
            }
        }
    }
    format!("a field is malformed ({})", names())
}

/// One member of a channel as the server knows it (the routing view, not a signed roster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMember {
    /// Pseudonymous id.
    pub participant_id: ParticipantId,
    /// Role.
    pub role: Role,
    /// Side, for party and counsel.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub side: Option<Side>,
    /// False while the participant's connection is down (within its grace period).
    pub connected: bool,
}

/// A channel and who is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    /// The channel.
    pub id: ChannelId,
    /// Joint, caucus or breakout.
    pub kind: ChannelKind,
    /// Members, ordered by participant id.
    pub members: Vec<ChannelMember>,
}

/// Someone in the waiting room, as mediators see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingView {
    /// Pseudonymous id.
    pub participant_id: ParticipantId,
    /// Role.
    pub role: Role,
    /// Side, for party and counsel.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub side: Option<Side>,
    /// Whether the agreement hash has been reported.
    pub consented: bool,
    /// False while the participant's connection is down.
    pub connected: bool,
}

/// The whole session as mediators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// No new arrivals while locked.
    pub locked: bool,
    /// The waiting room, in arrival order.
    pub waiting: Vec<WaitingView>,
    /// Every non-empty channel (and always `joint`).
    pub channels: Vec<ChannelView>,
}

/// One receive slot of a subscriber's peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaSlot {
    /// The m-line's mid.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: String,
    /// The publisher in it, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub participant_id: Option<ParticipantId>,
}

/// A TURN server and the credentials to use it (the `RTCIceServer` of WebRTC).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// Time-limited user name (`EXPIRY:RANDOM`, the TURN REST convention).
    pub username: String,
    /// Its password.
    pub credential: String,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"[redacted]")
            .finish()
    }
}

/// Why a participant is no longer in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Said `leave`.
    Left,
    /// Removed by a mediator.
    Kicked,
    /// Connection lost and not resumed within the grace period.
    Timeout,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// The answer to a successful `hello`.
    Welcome {
        /// Your pseudonymous id for this join.
        participant_id: ParticipantId,
        /// The session.
        session_id: SessionId,
        /// Your role.
        role: Role,
        /// Your side, for party and counsel.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        side: Option<Side>,
        /// Present this (in a new `hello`) to come back after a dropped connection.
        resume_token: String,
        /// How long a dropped connection may stay away.
        resume_grace_secs: u64,
        /// Where you are: `None` while in the waiting room.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        channel: Option<ChannelView>,
        /// True when this hello resumed an earlier connection.
        resumed: bool,
        /// True when the session is locked.
        locked: bool,
        /// TURN servers for the media peer connection, with short-lived credentials (empty
        /// when the server has none configured). Pass them as the peer connection's
        /// `iceServers`.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        ice_servers: Vec<IceServer>,
    },
    /// The agreement hash was recorded.
    ConsentRecorded,
    /// You are now in this channel, or its membership changed. Never silent: every move of
    /// yours produces one.
    Channel {
        /// The channel you are in and who is in it.
        channel: ChannelView,
    },
    /// Mediators: the whole session changed.
    Session {
        /// The session.
        session: SessionView,
    },
    /// Someone in your channel (or, for mediators, anyone) is gone.
    ParticipantLeft {
        /// Who.
        participant_id: ParticipantId,
        /// Why.
        reason: LeaveReason,
    },
    /// The session was locked or unlocked.
    LockChanged {
        /// The new state.
        locked: bool,
    },
    /// Opaque bytes from another participant.
    Relayed {
        /// Sender.
        from: ParticipantId,
        /// The channel it was addressed to, or absent for a direct message.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        channel: Option<ChannelId>,
        /// The payload, unchanged.
        data: String,
    },
    /// An invite token the mediator asked for.
    Invite {
        /// The JWT to put in the invite link.
        token: String,
        /// Role it admits.
        role: Role,
        /// Side, for party and counsel.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        side: Option<Side>,
        /// Expiry, Unix seconds.
        expires_at: u64,
    },
    /// A mediator removed you; the connection closes next.
    Kicked,
    /// The session ended; the connection closes next.
    SessionEnded,
    /// The server is shutting down: finish up, the session will be closed.
    Draining,
    /// Answer to `ping`.
    Pong,
    /// The SFU's SDP answer to `media_offer`.
    MediaAnswer {
        /// The SDP answer.
        sdp: String,
    },
    /// Which publisher each of my receive slots carries now.
    MediaSlots {
        /// One entry per receive m-line.
        slots: Vec<MediaSlot>,
    },
    /// The answer to `doc_upload` or `doc_download`: a short-lived ticket for the document's
    /// chunks over HTTP (`Authorization: Bearer <token>`).
    DocTicket {
        /// The document.
        doc_id: DocId,
        /// `up` (PUT the chunks) or `down` (GET them).
        op: DocOp,
        /// The ticket.
        token: String,
        /// How many chunks the document has (indices 0 to `chunks - 1`).
        chunks: u32,
        /// When the ticket stops working, Unix seconds; ask again for a new one.
        expires_at: u64,
    },
    /// Something you sent was refused; nothing changed.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// For people.
        message: String,
        /// The type of the message refused, when known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        in_reply_to: Option<String>,
    },
}

impl ServerMessage {
    /// An error frame with the code's standard message.
    pub fn error(code: ErrorCode, in_reply_to: Option<&str>) -> Self {
        ServerMessage::Error {
            code,
            message: code.message().to_owned(),
            in_reply_to: in_reply_to.map(str::to_owned),
        }
    }
}

/// Encodes a server message as a JSON text frame.
pub fn encode_server(msg: &ServerMessage) -> String {
    // Serializing these types cannot fail: all keys are strings, no maps with non-string keys.
    serde_json::to_string(msg).unwrap_or_else(|_| {
        r#"{"type":"error","code":"internal","message":"encoding failed"}"#.to_owned()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_without_fields_refuse_extra_ones() {
        for ty in ["ping", "return_all", "lock", "unlock", "end", "leave"] {
            assert!(super::decode_client(&format!(r#"{{"type":"{ty}"}}"#)).is_ok());
            let e = super::decode_client(&format!(r#"{{"type":"{ty}","secret":"eyJtoken"}}"#))
                .unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::InvalidMessage, "{ty}");
            assert!(
                !e.detail.contains("secret") && !e.detail.contains("eyJ"),
                "{}",
                e.detail
            );
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_hello() {
        let m = decode_client(r#"{"type":"hello","version":1,"token":"abc"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello {
                version: 1,
                token: "abc".into()
            }
        );
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(decode_client("{").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(decode_client("[1]").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(
            decode_client(r#"{"a":1}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            decode_client(r#"{"type":"nope"}"#).unwrap_err().code,
            ErrorCode::UnknownType
        );
        let e = decode_client(r#"{"type":"admit"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        assert!(e.detail.contains("participant_id"), "{}", e.detail);
        let e = decode_client(r#"{"type":"consent","agreement_hash":"xyz"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConsent);
        let e = decode_client(r#"{"type":"consent"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
        let e = decode_client(r#"{"type":"kick","participant_id":"p1","extra":1}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidMessage);
    }

    #[test]
    fn decode_error_never_echoes_the_token() {
        let e =
            decode_client(r#"{"type":"hello","version":"x","token":"SECRET-TOKEN"}"#).unwrap_err();
        assert!(!e.detail.contains("SECRET-TOKEN"));
    }

    #[test]
    fn invalid_message_details_name_the_field_and_type() {
        let cases = [
            (
                r#"{"type":"admit"}"#,
                "admit: missing field `participant_id`",
            ),
            (
                r#"{"type":"hello","version":"1","token":"t"}"#,
                "hello: `version` must be a whole number",
            ),
            (
                r#"{"type":"hello","version":1,"token":7}"#,
                "hello: `token` must be a string",
            ),
            (
                r#"{"type":"create_invite","role":"judge"}"#,
                "create_invite: `role` must be one of mediator, co_mediator, party, counsel, observer",
            ),
            (
                r#"{"type":"create_invite","role":"party","side":"AB"}"#,
                "create_invite: `side` must be one letter A to Z",
            ),
            (
                r#"{"type":"move","participant_id":"p1","channel_id":"../x"}"#,
                "move: `channel_id` must be a string of 1 to 64 characters A-Z a-z 0-9 _ -",
            ),
            (
                r#"{"type":"kick","participant_id":"p1","extra":1}"#,
                "kick: unknown field (its fields are `participant_id`)",
            ),
            (
                r#"{"type":"hello","version":1,"version":1,"token":"t"}"#,
                "hello: a field appears more than once (its fields are `version`, `token`)",
            ),
            (
                r#"{"type":"consent","agreement_hash":5}"#,
                "consent: `agreement_hash` must be a string of 64 lowercase hex characters",
            ),
        ];
        for (frame, detail) in cases {
            let e = decode_client(frame).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{frame}");
            assert_eq!(e.detail, detail, "{frame}");
        }
    }

    /// A token pasted into the wrong field, of whatever type, never comes back in the error.
    #[test]
    fn a_secret_in_a_wrongly_typed_field_is_not_echoed() {
        const SECRET: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.Sig-7f3a9c";
        let s = format!("{SECRET:?}");
        let frames = [
            format!(r#"{{"type":"hello","version":{s},"token":"t"}}"#),
            format!(r#"{{"type":"hello","version":1,"token":[{s}]}}"#),
            format!(r#"{{"type":"admit","participant_id":{s}}}"#),
            format!(r#"{{"type":"move","participant_id":"p1","channel_id":{s}}}"#),
            format!(r#"{{"type":"create_breakout","members":{s}}}"#),
            format!(r#"{{"type":"create_breakout","members":["p1",{s}]}}"#),
            format!(r#"{{"type":"relay","to":{s},"data":"x"}}"#),
            format!(r#"{{"type":"relay","to":{{{s}:"x"}},"data":"x"}}"#),
            format!(r#"{{"type":"relay","to":{{"channel":{s}}},"data":"x"}}"#),
            format!(r#"{{"type":"create_invite","role":{s}}}"#),
            format!(r#"{{"type":"create_invite","role":"party","side":{s}}}"#),
            format!(r#"{{"type":"create_invite","role":"observer","ttl_secs":{s}}}"#),
            format!(r#"{{"type":"keyframe_request","publisher":{s}}}"#),
            format!(r#"{{"type":"media_offer","sdp":{{"v":{s}}}}}"#),
            format!(r#"{{"type":"kick","participant_id":"p1",{s}:1}}"#),
            format!(r#"{{"type":"consent","agreement_hash":{s}}}"#),
            format!(r#"{{"type":"consent","agreement_hash":[{s}]}}"#),
            format!(r#"{{"type":"doc_upload","doc_id":{s},"size":1,"chunks":1}}"#),
            format!(r#"{{"type":"doc_upload","doc_id":"{D}","size":{s},"chunks":1}}"#),
            format!(r#"{{"type":"doc_download","doc_id":{s}}}"#),
            format!(r#"{{"type":"doc_ack","sha256":{s}}}"#),
        ];
        for frame in &frames {
            let e = decode_client(frame).unwrap_err();
            let shown = e.to_string();
            for part in SECRET.split('.') {
                assert!(!shown.contains(part), "{frame} gave {shown}");
            }
        }
        // Numbers too (a PIN, a card number): serde would print `integer 4111111111111111`.
        for frame in [
            r#"{"type":"create_invite","role":"observer","ttl_secs":-4111111111111111}"#,
            r#"{"type":"hello","version":4111111111111111,"token":"t"}"#,
            r#"{"type":"admit","participant_id":4111111111111111}"#,
        ] {
            let e = decode_client(frame).unwrap_err();
            assert!(!e.to_string().contains("4111111111111111"), "{frame}: {e}");
        }
    }

    /// FIELDS lists every client type, in CLIENT_TYPES order, with exactly the fields serde
    /// knows for it.
    #[test]
    fn the_field_table_matches_the_message_types() {
        let types: Vec<&str> = FIELDS.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, CLIENT_TYPES);
        for (ty, fields) in FIELDS {
            let mut ours: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
            ours.sort_unstable();
            let probe = format!(r#"{{"type":"{ty}","\u0001":0}}"#);
            match serde_json::from_str::<ClientMessage>(&probe) {
                // A message without fields ignores unknown keys.
                Ok(_) => assert!(ours.is_empty(), "{ty}"),
                Err(e) => {
                    let e = e.to_string();
                    let expected = &e[e.find("expected").expect("serde names the fields")..];
                    let mut theirs: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
                    theirs.sort_unstable();
                    assert_eq!(ours, theirs, "{ty}");
                }
            }
        }
    }

    const D: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn doc_messages_decode_and_refuse_malformed_ids() {
        let m = decode_client(&format!(
            r#"{{"type":"doc_upload","doc_id":"{D}","size":65537,"chunks":2}}"#
        ))
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::DocUpload {
                doc_id: DocId::new(D).unwrap(),
                size: 65537,
                chunks: 2
            }
        );
        assert_eq!(m.type_name(), "doc_upload");
        let m = decode_client(&format!(r#"{{"type":"doc_download","doc_id":"{D}"}}"#)).unwrap();
        assert_eq!(m.type_name(), "doc_download");
        for bad in [
            &D[1..],
            &D.to_uppercase(),
            "0123456789abcdef0123456789abcdeg",
            "../../etc/passwd0123456789abcdef",
        ] {
            assert!(DocId::new(bad).is_err(), "{bad}");
            let e = decode_client(&format!(r#"{{"type":"doc_download","doc_id":"{bad}"}}"#))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessage);
            assert_eq!(
                e.detail,
                "doc_download: `doc_id` must be a string of 32 lowercase hex characters"
            );
        }
        for frame in [
            format!(r#"{{"type":"doc_upload","doc_id":"{D}","size":-1,"chunks":1}}"#),
            format!(r#"{{"type":"doc_upload","doc_id":"{D}","size":1,"chunks":4294967296}}"#),
            format!(r#"{{"type":"doc_upload","doc_id":"{D}","size":1}}"#),
        ] {
            let e = decode_client(&frame).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{frame}");
        }
    }

    #[test]
    fn doc_ack_takes_a_sha256_and_nothing_else() {
        const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let m = decode_client(&format!(r#"{{"type":"doc_ack","sha256":"{H}"}}"#)).unwrap();
        assert_eq!(
            m,
            ClientMessage::DocAck {
                sha256: DocHash::new(H).unwrap()
            }
        );
        assert_eq!(m.type_name(), "doc_ack");
        let upper = H.to_uppercase();
        for (bad, detail) in [
            (
                format!(r#"{{"type":"doc_ack","sha256":"{}"}}"#, &H[1..]),
                "doc_ack: `sha256` must be a string of 64 lowercase hex characters",
            ),
            (
                format!(r#"{{"type":"doc_ack","sha256":"{upper}"}}"#),
                "doc_ack: `sha256` must be a string of 64 lowercase hex characters",
            ),
            (
                r#"{"type":"doc_ack"}"#.to_owned(),
                "doc_ack: missing field `sha256`",
            ),
            (
                format!(r#"{{"type":"doc_ack","sha256":"{H}","name":"draft.pdf"}}"#),
                "doc_ack: unknown field (its fields are `sha256`)",
            ),
        ] {
            let e = decode_client(&bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidMessage, "{bad}");
            assert_eq!(e.detail, detail, "{bad}");
            assert!(!e.to_string().contains("draft.pdf"));
        }
        assert!(DocHash::new(&H[..63]).is_err());
    }

    #[test]
    fn doc_tickets_encode_with_their_op() {
        let m = ServerMessage::DocTicket {
            doc_id: DocId::new(D).unwrap(),
            op: DocOp::Down,
            token: "t".into(),
            chunks: 3,
            expires_at: 1_800_000_600,
        };
        let s = encode_server(&m);
        assert_eq!(
            s,
            format!(
                r#"{{"type":"doc_ticket","doc_id":"{D}","op":"down","token":"t","chunks":3,"expires_at":1800000600}}"#
            )
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&s).unwrap(), m);
    }

    #[test]
    fn chunk_counts_and_bodies_follow_e2ee_8_7() {
        assert_eq!(doc_chunks(0), 1);
        assert_eq!(doc_chunks(1), 1);
        assert_eq!(doc_chunks(65_536), 1);
        assert_eq!(doc_chunks(65_537), 2);
        assert_eq!(doc_chunks(25 * 1024 * 1024), 400);
        assert_eq!(doc_chunk_max_body(0, 0), Some(16));
        assert_eq!(doc_chunk_max_body(0, 1), None);
        assert_eq!(doc_chunk_max_body(65_536, 0), Some(65_552));
        assert_eq!(doc_chunk_max_body(65_537, 0), Some(65_552));
        assert_eq!(doc_chunk_max_body(65_537, 1), Some(17));
        assert_eq!(doc_chunk_max_body(65_537, 2), None);
        assert_eq!(DOC_MAX_CHUNK_BODY, 65_552);
        // A document's chunks hold at most its size and one tag per chunk.
        for size in [0, 1, 65_535, 65_536, 65_537, 200_000, 3 * 65_536] {
            let total: u64 = (0..doc_chunks(size))
                .map(|i| doc_chunk_max_body(size, i).unwrap())
                .sum();
            assert_eq!(total, size + DOC_TAG_BYTES * doc_chunks(size), "{size}");
        }
    }

    #[test]
    fn relay_target_forms() {
        let m = decode_client(r#"{"type":"relay","to":{"channel":"joint"},"data":"x"}"#).unwrap();
        assert!(matches!(
            m,
            ClientMessage::Relay {
                to: RelayTarget::Channel(_),
                ..
            }
        ));
        let m = decode_client(r#"{"type":"relay","to":{"participant":"p1"},"data":"x"}"#).unwrap();
        assert!(matches!(
            m,
            ClientMessage::Relay {
                to: RelayTarget::Participant(_),
                ..
            }
        ));
        assert!(decode_client(r#"{"type":"relay","to":{"channel":"../x"},"data":"x"}"#).is_err());
    }

    #[test]
    fn every_error_code_has_a_distinct_wire_name_and_message() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert!(!c.message().is_empty());
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let m = ServerMessage::error(ErrorCode::Forbidden, Some("admit"));
        let s = encode_server(&m);
        assert_eq!(serde_json::from_str::<ServerMessage>(&s).unwrap(), m);
        assert!(s.contains(r#""code":"forbidden""#));
    }

    proptest! {
        // The decoder is total: any text yields a message or a classified error, never a panic.
        #[test]
        fn decoder_never_panics(s in ".{0,200}") {
            let _ = decode_client(&s);
        }

        #[test]
        fn decoder_never_panics_on_json_like_input(
            ty in prop::sample::select(CLIENT_TYPES),
            body in r#"[ -~]{0,80}"#,
        ) {
            let _ = decode_client(&format!(r#"{{"type":"{ty}",{body}}}"#));
        }

        // Whatever value lands in whatever field (or as a key), the error never repeats it.
        #[test]
        fn error_details_never_contain_the_value_sent(
            i in 0..FIELDS.len(),
            j in 0usize..3,
            v in "[A-Za-z0-9]{16,40}",
            shape in 0u8..4,
        ) {
            let (ty, fields) = FIELDS[i];
            let field = fields.get(j % fields.len().max(1)).map_or("x", |(f, _)| *f);
            let frame = match shape {
                0 => format!(r#"{{"type":"{ty}","{field}":"{v}"}}"#),
                1 => format!(r#"{{"type":"{ty}","{field}":["{v}"]}}"#),
                2 => format!(r#"{{"type":"{ty}","{field}":{{"{v}":"{v}"}}}}"#),
                _ => format!(r#"{{"type":"{ty}","{v}":1}}"#),
            };
            if let Err(e) = decode_client(&frame) {
                prop_assert!(!e.to_string().contains(&v), "{} gave {}", frame, e);
            }
        }

        #[test]
        fn relay_round_trips(data in ".{0,100}", ch in "[a-z0-9-]{1,20}") {
            let m = ClientMessage::Relay {
                to: RelayTarget::Channel(ChannelId::new(ch).unwrap()),
                data,
            };
            let s = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(decode_client(&s).unwrap(), m);
        }
    }
}
