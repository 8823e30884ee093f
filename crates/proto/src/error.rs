//! Stable error codes and WebSocket close codes.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $message:literal;)*) => {
        /// A stable, machine-readable error code. Clients switch on the code; the message is
        /// for people. Codes are never renamed or reused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire and in metrics labels.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// A human explanation that tells the user what to do.
            pub fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $message,)* }
            }
        }
    };
}

error_codes! {
    /// The frame is not valid JSON, or not a JSON object.
    BadJson = "bad_json", "The message is not a valid JSON object.";
    /// The `type` field is missing or names no known message.
    UnknownType = "unknown_type", "The message type is unknown; see docs/protocol/signalling.md.";
    /// The message type is known but a field is missing or malformed.
    InvalidMessage = "invalid_message", "A field of the message is missing or malformed.";
    /// The frame exceeds the server's configured size limit.
    FrameTooLarge = "frame_too_large", "The message is larger than this server accepts.";
    /// Binary frames are not part of the protocol.
    BinaryNotSupported = "binary_not_supported", "Send JSON text frames, not binary frames.";
    /// `hello.version` is not a version this server speaks.
    UnsupportedVersion = "unsupported_version", "This client speaks a protocol version the server does not; update the client.";
    /// A message other than `hello` arrived before `hello`.
    HelloRequired = "hello_required", "Send hello with your token first.";
    /// A second `hello` on the same connection.
    DuplicateHello = "duplicate_hello", "This connection has already said hello.";
    /// The token is missing, invalid, expired or already used.
    Unauthorized = "unauthorized", "The invitation is invalid, expired or already used; ask the mediator for a new link.";
    /// The participant's role may not do this.
    Forbidden = "forbidden", "Your role in this session does not allow that.";
    /// The named participant or channel does not exist in this session.
    NotFound = "not_found", "No such participant or room in this session.";
    /// Admission was asked for someone who has not acknowledged the agreement.
    ConsentRequired = "consent_required", "This person has not yet acknowledged the agreement to mediate.";
    /// The consent hash is not 64 lowercase hexadecimal characters.
    InvalidConsent = "invalid_consent", "The agreement hash must be 64 lowercase hexadecimal characters (SHA-256).";
    /// The participant is already admitted (for `admit` or `consent`).
    AlreadyAdmitted = "already_admitted", "This person is already in the session.";
    /// The action needs an admitted participant but the target is in the waiting room.
    NotAdmitted = "not_admitted", "This person is still in the waiting room.";
    /// The move breaks a channel rule (e.g. a party into the other side's caucus).
    InvalidMove = "invalid_move", "That person cannot be moved into that room.";
    /// The relay target is outside the paths the sender may use.
    RelayNotAllowed = "relay_not_allowed", "You cannot send to that room or person from where you are.";
    /// The session is locked: no new arrivals.
    SessionLocked = "session_locked", "The session is locked; the mediator is not admitting anyone new.";
    /// The token names a session that does not exist (yet).
    SessionNotFound = "session_not_found", "This session has not started or has ended; check the link or wait for the mediator.";
    /// The session has ended.
    SessionEnded = "session_ended", "The session has ended.";
    /// Too many messages too fast; the message was dropped.
    RateLimited = "rate_limited", "Too many messages; slow down.";
    /// The server is shutting down and takes no new sessions or participants.
    ServerDraining = "server_draining", "The server is restarting; try again in a minute.";
    /// This server runs no media (SFU), or it is not reachable.
    MediaUnavailable = "media_unavailable", "Audio and video are not available on this server; chat still works.";
    /// The SDP offer does not parse or cannot be answered.
    BadSdp = "bad_sdp", "The media offer could not be accepted; reload and try again.";
    /// `doc_upload` of a document larger than the server's `docs_max_bytes`.
    DocTooLarge = "doc_too_large", "This document is larger than this server accepts.";
    /// `doc_upload` that would take the session's documents past `docs_max_session_bytes`.
    DocQuota = "doc_quota", "This session has no room for another document of that size.";
    /// Something failed inside the server; nothing the client did.
    Internal = "internal", "Something went wrong on the server; try again.";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server uses (4000-4999 is the application range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// 4000: the mediator ended the session.
    SessionEnded,
    /// 4400: too many protocol errors on this connection.
    ProtocolAbuse,
    /// 4401: the token was refused.
    Unauthorized,
    /// 4403: a mediator removed this participant.
    Kicked,
    /// 4408: no `hello` within the allowed time.
    HelloTimeout,
    /// 4409: the participant resumed on another connection.
    Replaced,
    /// 4429: rate limit exceeded again and again.
    RateLimited,
    /// 4410: the participant left, or was removed after its grace period.
    Left,
}

impl CloseCode {
    /// Every close code.
    pub const ALL: &'static [CloseCode] = &[
        CloseCode::SessionEnded,
        CloseCode::ProtocolAbuse,
        CloseCode::Unauthorized,
        CloseCode::Kicked,
        CloseCode::HelloTimeout,
        CloseCode::Replaced,
        CloseCode::RateLimited,
        CloseCode::Left,
    ];

    /// The numeric close code.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::SessionEnded => 4000,
            CloseCode::ProtocolAbuse => 4400,
            CloseCode::Unauthorized => 4401,
            CloseCode::Kicked => 4403,
            CloseCode::HelloTimeout => 4408,
            CloseCode::Replaced => 4409,
            CloseCode::Left => 4410,
            CloseCode::RateLimited => 4429,
        }
    }

    /// The close reason sent with the code (at most 123 bytes, as WebSocket requires).
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::SessionEnded => "session ended",
            CloseCode::ProtocolAbuse => "too many invalid messages",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::Kicked => "removed by the mediator",
            CloseCode::HelloTimeout => "no hello in time",
            CloseCode::Replaced => "resumed on another connection",
            CloseCode::Left => "left the session",
            CloseCode::RateLimited => "too many messages",
        }
    }
}

/// Why a client frame could not be decoded; maps to an [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The stable code.
    pub code: ErrorCode,
    /// Detail for the human message (which field, which type); never echoes the frame.
    pub detail: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for DecodeError {}

#[cfg(test)]
mod tests {
    use super::CloseCode;

    #[test]
    fn every_close_code_is_listed_once() {
        // Exhaustive: a new variant fails to compile here until it is listed.
        let listed = |c: CloseCode| match c {
            CloseCode::SessionEnded
            | CloseCode::ProtocolAbuse
            | CloseCode::Unauthorized
            | CloseCode::Kicked
            | CloseCode::HelloTimeout
            | CloseCode::Replaced
            | CloseCode::RateLimited
            | CloseCode::Left => CloseCode::ALL.iter().filter(|x| **x == c).count(),
        };
        assert!(CloseCode::ALL.iter().all(|c| listed(*c) == 1));
        assert_eq!(CloseCode::ALL.len(), 8);
    }
}
