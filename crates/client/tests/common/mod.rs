#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]
//! Shared by the lying-server tests: in-process cores, and the test playing the server.

use std::time::Instant;

use confer_client::envelope::Envelope;
use confer_client::{Core, CoreConfig, OsRng, agreement_hash, os_rng};
use confer_proto::{
    ChannelId, ChannelKind, ChannelMember, ChannelView, ClientMessage, ParticipantId, RelayTarget,
    Role, ServerMessage, SessionView, Side, WaitingView,
};

pub const AGREEMENT: &str = "agreement";

pub fn core(mediator: bool) -> Core<OsRng> {
    let mut c = CoreConfig::new(agreement_hash(AGREEMENT));
    c.admit_without_invite_secret = true;
    c.auto_admit = mediator;
    Core::new(os_rng(), c)
}

pub fn pid(n: u8) -> ParticipantId {
    ParticipantId::new(format!("{n:02x}").repeat(16)).unwrap()
}

pub fn welcome(
    p: &ParticipantId,
    role: Role,
    side: Option<Side>,
    channel: Option<ChannelView>,
) -> ServerMessage {
    let v = serde_json::json!({"type": "welcome", "participant_id": p.as_str(), "session_id": "s1", "role": role,
        "side": side, "resume_token": "r", "resume_grace_secs": 30, "channel": channel, "resumed": false, "locked": false});
    serde_json::from_value(v).unwrap()
}

pub fn member(p: &ParticipantId, role: Role, side: Option<Side>) -> ChannelMember {
    ChannelMember {
        participant_id: p.clone(),
        role,
        side,
        connected: true,
    }
}

/// Delivers everything `from` queued for `to` as the server would (relays addressed to `to`).
pub fn relay(
    from: &mut Core<OsRng>,
    from_pid: &ParticipantId,
    to: &mut Core<OsRng>,
    to_pid: &ParticipantId,
) {
    let mut keep = Vec::new();
    while let Some(m) = from.poll_send() {
        match &m {
            ClientMessage::Relay {
                to: RelayTarget::Participant(p),
                data,
            } if p == to_pid => {
                to.handle(
                    ServerMessage::Relayed {
                        from: from_pid.clone(),
                        channel: None,
                        data: data.clone(),
                    },
                    Instant::now(),
                );
            }
            _ => keep.push(m),
        }
    }
    for m in keep {
        from.command(m);
    }
}

pub fn sent_keys_to(c: &mut Core<OsRng>, to: &ParticipantId) -> usize {
    let mut n = 0;
    let mut keep = Vec::new();
    while let Some(m) = c.poll_send() {
        if let ClientMessage::Relay {
            to: RelayTarget::Participant(p),
            data,
        } = &m
            && p == to
            && matches!(Envelope::from_data(data), Some(Envelope::Pw { t: 1, .. }))
        {
            n += 1;
        }
        keep.push(m);
    }
    for m in keep {
        c.command(m);
    }
    n
}

/// Everything a core queued, as the server received it.
pub fn drain(c: &mut Core<OsRng>) -> Vec<ClientMessage> {
    std::iter::from_fn(|| c.poll_send()).collect()
}

/// Delivers to `to` the relays among `out` that the server would route to it.
pub fn deliver(out: &[ClientMessage], from: &ParticipantId, to: &mut Core<OsRng>, now: Instant) {
    let to_pid = to.participant_id().cloned().unwrap();
    for m in out {
        if let ClientMessage::Relay { to: target, data } = m {
            let (mine, channel) = match target {
                RelayTarget::Participant(p) => (*p == to_pid, None),
                RelayTarget::Channel(c) => (true, Some(c.clone())),
            };
            if mine {
                let msg = ServerMessage::Relayed {
                    from: from.clone(),
                    channel,
                    data: data.clone(),
                };
                to.handle(msg, now);
            }
        }
    }
}

pub fn joint_view(members: Vec<ChannelMember>) -> ChannelView {
    ChannelView {
        id: ChannelId::joint(),
        kind: ChannelKind::Joint,
        members,
    }
}

pub fn waiting_party(p: &ParticipantId, side: Side) -> WaitingView {
    WaitingView {
        participant_id: p.clone(),
        role: Role::Party,
        side: Some(side),
        consented: true,
        connected: true,
    }
}

pub fn session_msg(waiting: Vec<WaitingView>, members: Vec<ChannelMember>) -> ServerMessage {
    ServerMessage::Session {
        session: SessionView {
            locked: false,
            waiting,
            channels: vec![joint_view(members)],
        },
    }
}

/// A mediator (alone in joint) and parties A and B (waiting), each welcomed.
pub struct Trio {
    pub m: Core<OsRng>,
    pub a: Core<OsRng>,
    pub b: Core<OsRng>,
    pub mp: ParticipantId,
    pub ap: ParticipantId,
    pub bp: ParticipantId,
    pub now: Instant,
}

impl Trio {
    pub fn welcomed() -> Self {
        let (mp, ap, bp) = (pid(1), pid(2), pid(3));
        let (mut m, mut a, mut b) = (core(true), core(false), core(false));
        let now = Instant::now();
        let alone = joint_view(vec![member(&mp, Role::Mediator, None)]);
        m.handle(welcome(&mp, Role::Mediator, None, Some(alone)), now);
        a.handle(welcome(&ap, Role::Party, Some(Side::A), None), now);
        b.handle(welcome(&bp, Role::Party, Some(Side::B), None), now);
        Self {
            m,
            a,
            b,
            mp,
            ap,
            bp,
            now,
        }
    }

    pub fn members(&self, who: &[char]) -> Vec<ChannelMember> {
        who.iter()
            .map(|w| match w {
                'm' => member(&self.mp, Role::Mediator, None),
                'a' => member(&self.ap, Role::Party, Some(Side::A)),
                _ => member(&self.bp, Role::Party, Some(Side::B)),
            })
            .collect()
    }

    /// Party `who` ('a' or 'b') introduces itself and consents while `in_joint` sit in joint;
    /// the mediator admits it (its admit goes to the server, here nowhere).
    pub fn admit(&mut self, who: char, in_joint: &[char]) {
        let members = self.members(in_joint);
        let Self {
            m,
            a,
            b,
            mp,
            ap,
            bp,
            now,
            ..
        } = self;
        let (p, pp, side) = if who == 'a' {
            (a, &*ap, Side::A)
        } else {
            (b, &*bp, Side::B)
        };
        let w = vec![waiting_party(pp, side)];
        m.handle(session_msg(w.clone(), members.clone()), *now);
        relay(m, mp, p, pp);
        relay(p, pp, m, mp);
        m.handle(session_msg(w, members), *now);
        drain(m);
    }

    /// The server seats `who` in joint and tells everyone; returns what the mediator sent
    /// (the signed roster and its keys), delivered to nobody yet.
    pub fn seat(&mut self, who: &[char]) -> Vec<ClientMessage> {
        let members = self.members(who);
        self.m
            .handle(session_msg(vec![], members.clone()), self.now);
        for (c, w) in [(&mut self.a, 'a'), (&mut self.b, 'b')] {
            if who.contains(&w) {
                let channel = joint_view(members.clone());
                c.handle(ServerMessage::Channel { channel }, self.now);
            }
        }
        drain(&mut self.m)
    }
}

impl Trio {
    /// Both parties admitted and seated in joint with the mediator; returns what the mediator
    /// sent (the signed roster and its keys), delivered to nobody yet.
    pub fn all_in_joint() -> (Self, Vec<ClientMessage>) {
        let mut t = Self::welcomed();
        t.admit('a', &['m']);
        t.admit('b', &['m']);
        let from_m = t.seat(&['m', 'a', 'b']);
        (t, from_m)
    }
}

pub fn chats(c: &mut Core<OsRng>) -> usize {
    std::iter::from_fn(|| c.poll_event())
        .filter(|e| matches!(e, confer_client::Event::Chat { .. }))
        .count()
}
