#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use confer_proto::{AgreementHash, ChannelId, ParticipantId, Role, ServerMessage, Side};
use confer_room::{Command, RoomConfig};
use confer_testkit::RoomHarness;

pub const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

pub fn consent() -> Command {
    Command::Consent(AgreementHash::new(HASH).unwrap())
}

/// A session with a mediator, party A, party B and counsel for A, all admitted to joint.
pub struct Cast {
    pub h: RoomHarness,
    pub m: ParticipantId,
    pub a: ParticipantId,
    pub b: ParticipantId,
    pub ca: ParticipantId,
}

pub fn cast() -> Cast {
    let mut h = RoomHarness::new(RoomConfig::default());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    let ca = h.join(Role::Counsel, Some(Side::A)).unwrap();
    for p in [&a, &b, &ca] {
        h.cmd(p, consent()).unwrap();
        h.cmd(&m, Command::Admit(p.clone())).unwrap();
    }
    for p in [&m, &a, &b, &ca] {
        h.take(p);
    }
    Cast { h, m, a, b, ca }
}

pub fn ch(s: &str) -> ChannelId {
    ChannelId::new(s).unwrap()
}

/// The channel a participant was last told it is in.
pub fn last_channel(msgs: &[ServerMessage]) -> Option<ChannelId> {
    msgs.iter().rev().find_map(|m| match m {
        ServerMessage::Channel { channel } => Some(channel.id.clone()),
        ServerMessage::Welcome { channel, .. } => channel.as_ref().map(|c| c.id.clone()),
        _ => None,
    })
}

pub fn relayed(msgs: &[ServerMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::Relayed { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect()
}
