//! docs/protocol/signalling.md documents every error code and every message type.

use confer_proto::ErrorCode;

const DOC: &str = include_str!("../../../docs/protocol/signalling.md");

#[test]
fn every_error_code_is_documented() {
    for code in ErrorCode::ALL {
        assert!(
            DOC.contains(&format!("`{}`", code.as_str())),
            "{} is not in signalling.md",
            code.as_str()
        );
    }
}

#[test]
fn every_message_type_is_documented() {
    let client = confer_proto::CLIENT_TYPES;
    let server = [
        "welcome",
        "consent_recorded",
        "channel",
        "session",
        "participant_left",
        "lock_changed",
        "relayed",
        "invite",
        "kicked",
        "session_ended",
        "draining",
        "pong",
        "error",
        "media_answer",
        "media_slots",
        "doc_ticket",
    ];
    for t in client.iter().chain(server.iter()) {
        assert!(
            DOC.contains(&format!("`{t}`")),
            "message type {t} is not in signalling.md"
        );
        // Each is a real wire name: a frame of that type decodes or is classified as known.
    }
    for t in client {
        let e = confer_proto::decode_client(&format!(r#"{{"type":"{t}"}}"#));
        assert!(
            e.is_ok() || e.unwrap_err().code != ErrorCode::UnknownType,
            "{t}"
        );
    }
}
