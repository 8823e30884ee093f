//! Signalling messages, client to server and server to client.

use serde::{Deserialize, Serialize};

use crate::{ChannelId, ChannelKind, DecodeError, ErrorCode, ParticipantId, Role, SessionId, Side};

/// The signalling protocol version this crate speaks (`hello.version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The SHA-256 of the agreement to mediate that a participant acknowledged, as 64 lowercase
/// hex characters. The server records only this hash, never the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgreementHash(String);

impl AgreementHash {
    /// Accepts exactly 64 lowercase hex characters.
    pub fn new(s: impl Into<String>) -> Result<Self, ErrorCode> {
        let s = s.into();
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s))
        } else {
            Err(ErrorCode::InvalidConsent)
        }
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgreementHash {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s).map_err(|_| "agreement_hash must be 64 lowercase hex characters")
    }
}

impl From<AgreementHash> for String {
    fn from(h: AgreementHash) -> String {
        h.0
    }
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
];

/// Decodes one client text frame, classifying failures into stable codes.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(msg) => Ok(msg),
        Err(err) => Err(classify(text, &err)),
    }
}

// Only on the error path: find out whether the frame was bad JSON, an unknown type, or a
// known type with bad fields. Never echo the frame itself (it may hold a token).
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
        Ok(Envelope { ty: Some(ty) }) if !CLIENT_TYPES.contains(&ty.as_ref()) => DecodeError {
            code: ErrorCode::UnknownType,
            detail: "this server knows no message of that type".to_owned(),
        },
        Ok(Envelope { ty: Some(ty) })
            if ty == "consent" && field_error(err).contains("agreement_hash must") =>
        {
            DecodeError {
                code: ErrorCode::InvalidConsent,
                detail: "agreement_hash".to_owned(),
            }
        }
        Ok(Envelope { ty: Some(ty) }) => DecodeError {
            code: ErrorCode::InvalidMessage,
            // serde's message names the field and the expectation, not the value.
            detail: format!("{ty}: {}", field_error(err)),
        },
    }
}

fn field_error(err: &serde_json::Error) -> String {
    let s = err.to_string();
    // Drop serde_json's " at line X column Y" suffix; keep the field description.
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
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
