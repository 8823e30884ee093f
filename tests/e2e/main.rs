//! Confer end-to-end tests: one binary, a module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bad_input;
mod e2ee;
mod flow;
mod media;
mod refusals;
mod resume;

use confer_e2e::{AGREEMENT_HASH, Event, TestServer, WsClient};
use confer_proto::{ChannelId, ParticipantId, Role, ServerMessage, Side};
use serde_json::json;

/// The participant id and resume token of a welcome.
pub fn welcome(m: &ServerMessage) -> (ParticipantId, String) {
    match m {
        ServerMessage::Welcome {
            participant_id,
            resume_token,
            ..
        } => (participant_id.clone(), resume_token.clone()),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// The channel a `channel` message puts us in.
pub fn channel_of(m: &ServerMessage) -> Option<ChannelId> {
    match m {
        ServerMessage::Channel { channel } => Some(channel.id.clone()),
        _ => None,
    }
}

pub fn is_error(code: &str) -> impl Fn(&ServerMessage) -> bool + '_ {
    move |m| matches!(m, ServerMessage::Error { code: c, .. } if c.as_str() == code)
}

pub fn error_code(m: &ServerMessage) -> &'static str {
    match m {
        ServerMessage::Error { code, .. } => code.as_str(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A participant: its client and id.
#[allow(missing_debug_implementations)]
pub struct Who {
    pub c: WsClient,
    pub id: ParticipantId,
    pub resume: String,
    /// Media slot announcements read while waiting for something else.
    pub early_slots: Option<Vec<confer_proto::MediaSlot>>,
}

/// Mediator joins (creating the session).
pub async fn mediator(ts: &TestServer) -> Who {
    let (c, w) = ts.join(Role::Mediator, None).await;
    let (id, resume) = welcome(&w);
    Who {
        c,
        id,
        resume,
        early_slots: None,
    }
}

/// Someone arrives, consents, and is admitted by `m`; everything up to their joint channel is read.
pub async fn admitted(ts: &TestServer, m: &mut Who, role: Role, side: Option<Side>) -> Who {
    let (mut c, w) = ts.join(role, side).await;
    let (id, resume) = welcome(&w);
    c.send(json!({"type": "consent", "agreement_hash": AGREEMENT_HASH}))
        .await;
    assert_eq!(c.recv().await, ServerMessage::ConsentRecorded);
    m.c.send(json!({"type": "admit", "participant_id": id.as_str()}))
        .await;
    let ch = c.recv_until(|x| channel_of(x).is_some()).await;
    assert_eq!(channel_of(&ch), Some(ChannelId::joint()));
    Who {
        c,
        id,
        resume,
        early_slots: None,
    }
}

pub async fn relay(w: &mut Who, to: serde_json::Value, data: &str) {
    w.c.send(json!({"type": "relay", "to": to, "data": data}))
        .await;
}

/// The next relayed payload this client receives (skipping membership updates).
pub async fn next_relayed(c: &mut WsClient) -> (ParticipantId, Option<ChannelId>, String) {
    match c
        .recv_until(|m| matches!(m, ServerMessage::Relayed { .. }))
        .await
    {
        ServerMessage::Relayed {
            from,
            channel,
            data,
        } => (from, channel, data),
        _ => unreachable!(),
    }
}
