#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The mediator's client signs only what a person decided (confer/1 §7.5, §7.6, §15.9): each
//! test plays a server that lies, alone or helped by the other party, against real cores with
//! real crypto, and checks the attack is refused or raises its alarm.

mod common;

use std::time::{Duration, Instant};

use common::*;
use confer_client::envelope::{Bytes, Envelope};
use confer_client::link::Invite;
use confer_client::{Core, CoreConfig, OsRng, agreement_hash, os_rng};
use confer_e2ee::frame::{STREAM_DATA, SenderKeyMsg};
use confer_e2ee::pairwise::{self, MsgType, Pair};
use confer_e2ee::roster::SignedRoster;
use confer_e2ee::secret::Secret32;
use confer_proto::{
    ChannelId, ChannelKind, ChannelMember, ChannelView, ClientMessage, LeaveReason, ParticipantId,
    RelayTarget, Role, ServerMessage, SessionView, Side, WaitingView,
};

fn joint() -> ChannelId {
    ChannelId::joint()
}

fn alarmed(c: &Core<OsRng>, code: &str) -> bool {
    c.stats().alarms.iter().any(|a| a == code)
}

/// Pairwise messages of type `t` among `out` addressed to `to`.
fn pairwise_to(out: &[ClientMessage], to: &ParticipantId, t: u8) -> usize {
    out.iter()
        .filter(|m| {
            matches!(m, ClientMessage::Relay { to: RelayTarget::Participant(p), data }
                if p == to && matches!(Envelope::from_data(data), Some(Envelope::Pw { t: x, .. }) if x == t))
        })
        .count()
}

/// The signed rosters among `out` (each once), with the room each was sent for.
fn rosters(out: &[ClientMessage]) -> Vec<(String, SignedRoster)> {
    let mut v: Vec<(String, SignedRoster)> = Vec::new();
    for m in out {
        if let ClientMessage::Relay { data, .. } = m
            && let Some(Envelope::Roster { ch, enc, sig, .. }) = Envelope::from_data(data)
        {
            let sr = SignedRoster::from_parts(&enc.0, sig.array().unwrap()).unwrap();
            if !v.iter().any(|(_, x)| x.hash == sr.hash) {
                v.push((ch, sr));
            }
        }
    }
    v
}

fn view(channels: Vec<ChannelView>) -> ServerMessage {
    ServerMessage::Session {
        session: SessionView {
            locked: false,
            waiting: vec![],
            channels,
        },
    }
}

fn room(id: ChannelId, kind: ChannelKind, members: Vec<ChannelMember>) -> ChannelView {
    ChannelView { id, kind, members }
}

#[test]
fn a_participant_that_left_is_never_signed_again_and_relisting_it_is_an_alarm() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    // B leaves; the mediator re-signs joint without it.
    t.m.handle(
        ServerMessage::ParticipantLeft {
            participant_id: t.bp.clone(),
            reason: LeaveReason::Left,
        },
        now,
    );
    t.m.handle(session_msg(vec![], t.members(&['m', 'a'])), now);
    assert!(!t.m.roster_members(&joint()).contains(&t.bp));
    let epoch = t.m.roster_epoch(&joint());
    assert!(!alarmed(&t.m, "removed_relisted"));
    drain(&mut t.m);
    // The server lists B in joint again, as if it never left.
    t.m.handle(session_msg(vec![], t.members(&['m', 'a', 'b'])), now);
    assert!(alarmed(&t.m, "removed_relisted"));
    assert!(
        !t.m.roster_members(&joint()).contains(&t.bp),
        "never signed again"
    );
    assert_eq!(t.m.roster_epoch(&joint()), epoch, "no new roster at all");
    // Nor admitted again from the waiting room.
    t.m.handle(
        session_msg(vec![waiting_party(&t.bp, Side::B)], t.members(&['m', 'a'])),
        now,
    );
    let out = drain(&mut t.m);
    assert!(
        !out.iter().any(|m| matches!(m, ClientMessage::Admit { .. })),
        "{out:?}"
    );
    assert_eq!(pairwise_to(&out, &t.bp, 1), 0, "and never keyed");
}

#[test]
fn a_participant_the_server_silently_drops_and_brings_back_stays_out() {
    let (mut t, _) = Trio::all_in_joint();
    let now = t.now;
    // The server's views stop listing A (no `participant_left`): A is gone for good.
    t.m.handle(session_msg(vec![], t.members(&['m', 'b'])), now);
    assert!(!t.m.roster_members(&joint()).contains(&t.ap));
    t.m.handle(session_msg(vec![], t.members(&['m', 'a', 'b'])), now);
    assert!(alarmed(&t.m, "removed_relisted"));
    assert!(!t.m.roster_members(&joint()).contains(&t.ap));
}

#[test]
fn a_kick_is_final_at_once_and_a_server_that_ignores_it_raises_an_alarm() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    drain(&mut t.a);
    let before = t.m.roster_epoch(&joint()).unwrap();
    drain(&mut t.m);
    t.m.command(ClientMessage::Kick {
        participant_id: t.bp.clone(),
    });
    // Re-signed without B at once, before the server said anything.
    assert_eq!(t.m.roster_epoch(&joint()), Some(before + 1));
    assert!(!t.m.roster_members(&joint()).contains(&t.bp));
    let out = drain(&mut t.m);
    assert!(
        out.iter().any(
            |m| matches!(m, ClientMessage::Kick { participant_id } if *participant_id == t.bp)
        )
    );
    assert_eq!(pairwise_to(&out, &t.bp, 1), 0, "no new key for B");
    assert!(pairwise_to(&out, &t.ap, 1) > 0, "A gets the new keys");
    // A takes the new roster: B is not in it, and A rekeys to the mediator only.
    deliver(&out, &t.mp, &mut t.a, now);
    assert!(!t.a.roster_members(&joint()).contains(&t.bp));
    let from_a = drain(&mut t.a);
    assert_eq!(pairwise_to(&from_a, &t.bp, 1), 0);
    // The server ignores the kick and keeps listing B. A view sent before the kick was
    // processed may list it for a moment: no alarm yet.
    let later = now + Duration::from_secs(1);
    t.m.handle(session_msg(vec![], t.members(&['m', 'a', 'b'])), later);
    assert!(!alarmed(&t.m, "removed_relisted"));
    assert!(!t.m.roster_members(&joint()).contains(&t.bp));
    // Past the grace it is an alarm.
    t.m.tick(now + confer_client::core::UNSIGNED_GRACE + Duration::from_secs(1));
    assert!(alarmed(&t.m, "removed_relisted"));
    assert!(!t.m.roster_members(&joint()).contains(&t.bp));
}

/// A mediator that admits only arrivals under its own invite secrets.
fn strict_mediator() -> Core<OsRng> {
    let mut c = CoreConfig::new(agreement_hash(AGREEMENT));
    c.admit_without_invite_secret = false;
    Core::new(os_rng(), c)
}

/// A participant joining through a link with `psk` that pins `m_ik`.
fn invited(psk: &Secret32, m_ik: [u8; 32]) -> Core<OsRng> {
    let mut c = CoreConfig::new(agreement_hash(AGREEMENT));
    c.auto_admit = false;
    c.invite = Some(Invite {
        token: "t".into(),
        psk: Some(psk.clone()),
        mediator_ik: Some(m_ik),
    });
    Core::new(os_rng(), c)
}

fn waiting(p: &ParticipantId, role: Role, side: Side) -> WaitingView {
    WaitingView {
        participant_id: p.clone(),
        role,
        side: Some(side),
        consented: true,
        connected: true,
    }
}

/// One arrival: the mediator introduces itself, the arrival announces and consents.
fn arrive(
    m: &mut Core<OsRng>,
    mp: &ParticipantId,
    p: &mut Core<OsRng>,
    pp: &ParticipantId,
    w: &[WaitingView],
    seated: &[ChannelMember],
    now: Instant,
) -> Vec<ClientMessage> {
    let session = ServerMessage::Session {
        session: SessionView {
            locked: false,
            waiting: w.to_vec(),
            channels: vec![joint_view(seated.to_vec())],
        },
    };
    m.handle(session.clone(), now);
    relay(m, mp, p, pp);
    relay(p, pp, m, mp);
    m.handle(session, now);
    drain(m)
}

fn admits(out: &[ClientMessage]) -> Vec<ParticipantId> {
    out.iter()
        .filter_map(|m| match m {
            ClientMessage::Admit { participant_id } => Some(participant_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_invite_secret_admits_one_arrival_only_as_its_role_and_binds_its_side() {
    let now = Instant::now();
    let (mp, ap, xp, yp, cp) = (pid(1), pid(2), pid(4), pid(5), pid(6));
    let mut m = strict_mediator();
    let alone = joint_view(vec![member(&mp, Role::Mediator, None)]);
    m.handle(welcome(&mp, Role::Mediator, None, Some(alone)), now);
    let m_ik = m.identity().unwrap().ik_pub();
    let psk_a = m.issue_invite(Role::Party, Some(Side::A));
    let psk_cb = m.issue_invite(Role::Counsel, Some(Side::B));
    let seated = vec![member(&mp, Role::Mediator, None)];

    // Party A arrives through its link: admitted.
    let mut a = invited(&psk_a, m_ik);
    a.handle(welcome(&ap, Role::Party, Some(Side::A), None), now);
    let w = [waiting(&ap, Role::Party, Side::A)];
    let out = arrive(&mut m, &mp, &mut a, &ap, &w, &seated, now);
    assert_eq!(admits(&out), vec![ap.clone()]);

    // A forged counsel of side B (the server minted its token; party A, or whoever saw A's
    // link, gave it A's invite secret): its announced role is not the invite's. Held, alarm.
    let mut x = invited(&psk_a, m_ik);
    x.handle(welcome(&xp, Role::Counsel, Some(Side::B), None), now);
    let w = [waiting(&xp, Role::Counsel, Side::B)];
    let out = arrive(&mut m, &mp, &mut x, &xp, &w, &seated, now);
    assert!(admits(&out).is_empty(), "{out:?}");
    assert!(alarmed(&m, "invite_role_mismatch"));
    assert!(m.held().contains(&xp));

    // A second "party" under A's secret: the secret was spent on A. Held, alarm.
    let mut y = invited(&psk_a, m_ik);
    y.handle(welcome(&yp, Role::Party, Some(Side::A), None), now);
    let w = [waiting(&yp, Role::Party, Side::A)];
    let out = arrive(&mut m, &mp, &mut y, &yp, &w, &seated, now);
    assert!(admits(&out).is_empty(), "{out:?}");
    assert!(alarmed(&m, "invite_reused"));
    assert!(m.held().contains(&yp));

    // B's counsel arrives through its own link, and is admitted as counsel of side B.
    let mut c = invited(&psk_cb, m_ik);
    c.handle(welcome(&cp, Role::Counsel, Some(Side::B), None), now);
    let w = [waiting(&cp, Role::Counsel, Side::B)];
    let out = arrive(&mut m, &mp, &mut c, &cp, &w, &seated, now);
    assert_eq!(admits(&out), vec![cp.clone()]);

    // Everyone admitted sits in joint; the server is honest so far.
    let in_joint = vec![
        member(&mp, Role::Mediator, None),
        member(&ap, Role::Party, Some(Side::A)),
        member(&cp, Role::Counsel, Some(Side::B)),
    ];
    m.handle(view(vec![joint_view(in_joint)]), now);
    assert_eq!(m.roster_present(&joint()).len(), 3);
    drain(&mut m);

    // The mediator takes A into A's caucus. The server adds B's counsel, reported as side A,
    // and the forged counsel, reported as side A too.
    m.command(ClientMessage::Move {
        participant_id: ap.clone(),
        channel_id: ChannelId::caucus(Side::A),
    });
    m.command(ClientMessage::Move {
        participant_id: mp.clone(),
        channel_id: ChannelId::caucus(Side::A),
    });
    drain(&mut m);
    let caucus = room(
        ChannelId::caucus(Side::A),
        ChannelKind::Caucus,
        vec![
            member(&mp, Role::Mediator, None),
            member(&ap, Role::Party, Some(Side::A)),
            member(&xp, Role::Counsel, Some(Side::A)),
            member(&cp, Role::Counsel, Some(Side::A)),
        ],
    );
    m.handle(view(vec![joint_view(vec![]), caucus]), now);
    let mut in_caucus = m.roster_present(&ChannelId::caucus(Side::A));
    in_caucus.sort();
    let mut want = vec![mp.clone(), ap.clone()];
    want.sort();
    assert_eq!(in_caucus, want, "only the mediator and party A");
    assert!(
        !m.roster_members(&ChannelId::caucus(Side::A)).contains(&cp)
            && !m.roster_members(&ChannelId::caucus(Side::A)).contains(&xp)
    );
    let out = drain(&mut m);
    assert_eq!(pairwise_to(&out, &cp, 1), 0);
    assert_eq!(pairwise_to(&out, &xp, 1), 0);
    assert!(pairwise_to(&out, &ap, 1) > 0, "A gets the caucus keys");
    // B's counsel stays a member of joint, as counsel of side B.
    assert!(m.roster_members(&joint()).contains(&cp));

    // A person may still admit a held arrival, choosing its role and side; not as a role it
    // did not announce.
    assert!(!m.admit_held(&xp, Role::Party, Some(Side::A)));
    assert!(m.admit_held(&xp, Role::Counsel, Some(Side::B)));
}

#[test]
fn two_breakouts_merged_by_the_server_are_refused() {
    let (mut t, _) = Trio::all_in_joint();
    let now = t.now;
    drain(&mut t.m);
    t.m.command(ClientMessage::CreateBreakout {
        members: vec![t.ap.clone()],
    });
    t.m.command(ClientMessage::CreateBreakout {
        members: vec![t.bp.clone()],
    });
    drain(&mut t.m);
    // The server puts both commands' members into one breakout.
    let merged = room(
        ChannelId::breakout(1),
        ChannelKind::Breakout,
        t.members(&['a', 'b']),
    );
    t.m.handle(view(vec![joint_view(t.members(&['m'])), merged]), now);
    assert!(alarmed(&t.m, "breakout_mismatch"));
    assert_eq!(
        t.m.roster_present(&ChannelId::breakout(1)),
        vec![t.ap.clone()],
        "the first command's member only"
    );
    assert!(
        t.m.roster_present(&joint()).contains(&t.bp),
        "B stays in joint"
    );
    let out = drain(&mut t.m);
    let sent_b: usize = rosters(&out)
        .iter()
        .filter(|(ch, r)| {
            ch == "breakout-1"
                && r.roster
                    .members
                    .iter()
                    .any(|m| hex::encode(m.participant_id) == t.bp.as_str())
        })
        .count();
    assert_eq!(sent_b, 0, "no breakout roster lists B");

    // A third command is not satisfied by a breakout that existed before it.
    t.m.command(ClientMessage::CreateBreakout {
        members: vec![t.bp.clone()],
    });
    let old = room(
        ChannelId::breakout(1),
        ChannelKind::Breakout,
        t.members(&['a', 'b']),
    );
    t.m.handle(view(vec![joint_view(t.members(&['m'])), old]), now);
    assert!(!t.m.roster_members(&ChannelId::breakout(1)).contains(&t.bp));
}

#[test]
fn a_roster_with_someone_elses_keys_under_my_id_does_not_list_me() {
    let mut t = Trio::welcomed();
    let now = t.now;
    // A client of the server's announces itself under A's id before A does.
    let mut fake = core(false);
    fake.handle(welcome(&t.ap, Role::Party, Some(Side::A), None), now);
    let w = vec![waiting_party(&t.ap, Side::A)];
    t.m.handle(session_msg(w.clone(), t.members(&['m'])), now);
    let hello = drain(&mut t.m);
    deliver(&hello, &t.mp, &mut fake, now);
    deliver(&hello, &t.mp, &mut t.a, now);
    let forged = drain(&mut fake);
    deliver(&forged, &t.ap, &mut t.m, now);
    let real = drain(&mut t.a);
    deliver(&real, &t.ap, &mut t.m, now);
    assert!(
        alarmed(&t.m, "announcement_changed"),
        "{:?}",
        t.m.stats().alarms
    );
    // The mediator admits the first announcement it saw (the forged one) and signs it.
    t.m.handle(session_msg(w, t.members(&['m'])), now);
    drain(&mut t.m);
    let from_m = t.seat(&['m', 'a']);
    deliver(&from_m, &t.mp, &mut t.a, now);
    assert!(alarmed(&t.a, "roster_wrong_self_key"));
    assert!(t.a.secured().is_none(), "A stays \"securing\"");
    assert!(t.a.send_chat("hello").is_err());
    let from_a = drain(&mut t.a);
    assert_eq!(pairwise_to(&from_a, &t.mp, 1), 0, "A sends no key into it");
}

#[test]
fn an_old_chain_delivered_late_is_refused() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    deliver(&from_m, &t.mp, &mut t.b, now);
    let caucus_a = ChannelId::caucus(Side::A);
    let to_caucus = |t: &mut Trio| {
        for p in [t.ap.clone(), t.mp.clone()] {
            t.m.command(ClientMessage::Move {
                participant_id: p,
                channel_id: ChannelId::caucus(Side::A),
            });
        }
        drain(&mut t.m);
        let c = room(
            ChannelId::caucus(Side::A),
            ChannelKind::Caucus,
            t.members(&['m', 'a']),
        );
        t.m.handle(view(vec![joint_view(t.members(&['b'])), c.clone()]), t.now);
        let out = drain(&mut t.m);
        deliver(&out, &t.mp, &mut t.a, t.now);
        t.a.handle(ServerMessage::Channel { channel: c }, t.now);
        out
    };
    // First caucus, then everyone back in joint: the caucus room is gone.
    let first = to_caucus(&mut t);
    let c1 = rosters(&first)
        .into_iter()
        .find(|(ch, _)| ch == caucus_a.as_str())
        .unwrap()
        .1;
    assert!(t.a.secured() == Some(&caucus_a));
    t.m.command(ClientMessage::ReturnAll);
    drain(&mut t.m);
    t.m.handle(session_msg(vec![], t.members(&['m', 'a', 'b'])), now);
    let back = drain(&mut t.m);
    deliver(&back, &t.mp, &mut t.a, now);
    t.a.handle(
        ServerMessage::Channel {
            channel: joint_view(t.members(&['m', 'a', 'b'])),
        },
        now,
    );
    // Second caucus: a new chain whose first roster links to the first chain's last one.
    let second = to_caucus(&mut t);
    // (A, new to this chain, is first sent the room's history: the first chain again.)
    let c2 = rosters(&second)
        .into_iter()
        .rfind(|(ch, _)| ch == caucus_a.as_str())
        .unwrap()
        .1;
    assert_ne!(c2.roster.channel_id, c1.roster.channel_id);
    assert_eq!(c2.roster.epoch, 1);
    assert_eq!(c2.roster.prev_hash, c1.hash, "linked to the first chain");
    assert!(t.a.secured() == Some(&caucus_a));
    assert!(!alarmed(&t.a, "roster_chain_unlinked"));
    // The server replays the first chain's roster, which A holds: nothing changes (a manager
    // resending a room's history is not an attack), and no alarm.
    deliver(&first, &t.mp, &mut t.a, now);
    assert!(!alarmed(&t.a, "roster_chain_revived"));
    assert!(t.a.secured() == Some(&caucus_a));
    // It delivers a roster of the first chain that A never saw (the mediator signed it, the
    // server withheld it until now): refused, the second chain stands.
    let mut late = c1.roster.clone();
    late.epoch += 1;
    late.prev_hash = c1.hash;
    let late = late.sign(t.m.identity().unwrap()).unwrap();
    let env = Envelope::Roster {
        ch: caucus_a.as_str().to_owned(),
        enc: Bytes(late.encoded.clone()),
        sig: Bytes(late.signature.to_vec()),
        dik: None,
        dsig: None,
    };
    t.a.handle(
        ServerMessage::Relayed {
            from: t.mp.clone(),
            channel: None,
            data: env.to_data(),
        },
        now,
    );
    assert!(alarmed(&t.a, "roster_chain_revived"));
    assert!(t.a.secured() == Some(&caucus_a));
    assert!(t.a.send_chat("still here").is_ok());
    let out = drain(&mut t.a);
    let cid = out
        .iter()
        .find_map(|m| match m {
            ClientMessage::Relay { data, .. } => match Envelope::from_data(data)? {
                Envelope::Chat { cid, .. } => Some(cid),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(
        cid,
        Bytes(c2.roster.channel_id.to_vec()),
        "sealed under the second chain"
    );
}

/// `n` sender keys from `from` to `to` for (joint `cid`, `epoch`, chat), generations in the
/// order `generation(i)` gives, pairwise-sealed for real.
fn key_flood(
    t: &mut Trio,
    cid: [u8; 16],
    epoch: u64,
    n: u64,
    seq0: u64,
    generation: impl Fn(u64) -> u64,
) {
    let (from_id, to_id): ([u8; 16], [u8; 16]) = (
        hex::decode(t.bp.as_str()).unwrap().try_into().unwrap(),
        hex::decode(t.ap.as_str()).unwrap().try_into().unwrap(),
    );
    let a_ek = t.a.identity().unwrap().ek_pub();
    let mut rng = os_rng();
    for i in 0..n {
        let msg = SenderKeyMsg {
            channel_id: cid,
            epoch,
            stream: STREAM_DATA,
            generation: generation(i),
            base_key: Secret32::new([(i % 251) as u8; 32]),
        };
        let seq = seq0 + i;
        let pair = Pair {
            session_id: b"s1",
            from: from_id,
            to: to_id,
        };
        let sealed = pairwise::seal(
            &mut rng,
            t.b.identity().unwrap(),
            &a_ek,
            pair,
            MsgType::SenderKey,
            seq,
            &msg.encode(),
            None,
        )
        .unwrap();
        let env = Envelope::Pw {
            t: 1,
            seq,
            enc: Bytes(sealed.enc.to_vec()),
            ct: Bytes(sealed.ct),
            hint: None,
        };
        t.a.handle(
            ServerMessage::Relayed {
                from: t.bp.clone(),
                channel: None,
                data: env.to_data(),
            },
            t.now,
        );
    }
}

#[test]
fn ten_thousand_keys_from_one_member_leave_bounded_state_and_acknowledgments() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    deliver(&from_m, &t.mp, &mut t.b, now);
    let from_b = drain(&mut t.b);
    deliver(&from_b, &t.bp, &mut t.a, now);
    drain(&mut t.a);
    let (_, joint_roster) = rosters(&from_m)
        .into_iter()
        .find(|(ch, _)| ch == "joint")
        .unwrap();
    let (cid, epoch) = (joint_roster.roster.channel_id, joint_roster.roster.epoch);
    assert_eq!(t.a.held_generations(&joint(), &t.bp, STREAM_DATA), 1);
    // B (a legitimate member, hostile) sends A 5,000 keys of descending generations, then
    // 5,000 of ascending ones.
    key_flood(&mut t, cid, epoch, 5_000, 1_000, |i| 1_000_000 - i);
    key_flood(&mut t, cid, epoch, 5_000, 10_000, |i| 2_000_000 + i);
    let held = t.a.held_generations(&joint(), &t.bp, STREAM_DATA);
    assert!(
        held <= 1 + confer_e2ee::codes::MAX_OLD_GENERATIONS,
        "{held} generations held"
    );
    let acks = pairwise_to(&drain(&mut t.a), &t.bp, 2);
    assert!(acks <= 1, "{acks} acknowledgments for one epoch");
    // Nothing failed to open on the way (every key was a well-formed message from B).
    assert_eq!(t.a.stats().decrypt_failures, 0);
}

/// Four in-process cores and a server that routes honestly: relays to a participant go to it,
/// relays to a room go to whoever the server has in that room.
struct Net {
    cores: Vec<(ParticipantId, Core<OsRng>)>,
    rooms: std::collections::BTreeMap<ParticipantId, ChannelId>,
    now: Instant,
}

impl Net {
    fn core(&mut self, p: &ParticipantId) -> &mut Core<OsRng> {
        &mut self.cores.iter_mut().find(|(q, _)| q == p).unwrap().1
    }

    /// Delivers every queued relay until nobody has anything more to say; returns the
    /// non-relay messages (commands to the server) each sent.
    fn pump(&mut self) -> Vec<(ParticipantId, ClientMessage)> {
        let mut commands = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..self.cores.len() {
                let from = self.cores[i].0.clone();
                let out = drain(&mut self.cores[i].1);
                for m in out {
                    let ClientMessage::Relay { to, data } = &m else {
                        commands.push((from.clone(), m));
                        continue;
                    };
                    moved = true;
                    let (targets, channel): (Vec<ParticipantId>, _) = match to {
                        RelayTarget::Participant(p) => (vec![p.clone()], None),
                        RelayTarget::Channel(c) => (
                            self.rooms
                                .iter()
                                .filter(|(p, r)| *r == c && **p != from)
                                .map(|(p, _)| p.clone())
                                .collect(),
                            Some(c.clone()),
                        ),
                    };
                    for t in targets {
                        let now = self.now;
                        let msg = ServerMessage::Relayed {
                            from: from.clone(),
                            channel: channel.clone(),
                            data: data.clone(),
                        };
                        if let Some((_, c)) = self.cores.iter_mut().find(|(q, _)| *q == t) {
                            c.handle(msg, now);
                        }
                    }
                }
            }
            if !moved {
                return commands;
            }
        }
    }
}

#[test]
fn a_co_mediator_runs_a_caucus_under_the_mediators_delegation() {
    let now = Instant::now();
    let (mp, ap, bp, cp) = (pid(1), pid(2), pid(3), pid(4));
    let managers = vec![
        member(&mp, Role::Mediator, None),
        member(&cp, Role::CoMediator, None),
    ];
    let mut m = core(true);
    m.handle(
        welcome(
            &mp,
            Role::Mediator,
            None,
            Some(joint_view(managers[..1].to_vec())),
        ),
        now,
    );
    // Roster signing is delegated only under an invite made for a co-mediator.
    let psk = m.issue_invite(Role::CoMediator, None);
    let mut c = invited(&psk, m.identity().unwrap().ik_pub());
    c.handle(
        welcome(
            &cp,
            Role::CoMediator,
            None,
            Some(joint_view(managers.clone())),
        ),
        now,
    );
    let mut a = core(false);
    let mut b = core(false);
    a.handle(welcome(&ap, Role::Party, Some(Side::A), None), now);
    b.handle(welcome(&bp, Role::Party, Some(Side::B), None), now);
    let mut net = Net {
        cores: vec![
            (mp.clone(), m),
            (cp.clone(), c),
            (ap.clone(), a),
            (bp.clone(), b),
        ],
        rooms: Default::default(),
        now,
    };
    // The server seats the co-mediator in joint at once; it still announces and consents to
    // the mediator, which signs it in and delegates roster signing to its key.
    net.core(&mp)
        .handle(view(vec![joint_view(managers.clone())]), now);
    net.pump();
    assert!(net.core(&cp).roster_present(&joint()).contains(&cp));
    // The parties arrive, consent and are admitted by the mediator.
    let w = vec![waiting_party(&ap, Side::A), waiting_party(&bp, Side::B)];
    let waiting_view = ServerMessage::Session {
        session: SessionView {
            locked: false,
            waiting: w,
            channels: vec![joint_view(managers)],
        },
    };
    net.core(&mp).handle(waiting_view.clone(), now);
    let mut admitted = net.pump();
    net.core(&mp).handle(waiting_view, now);
    admitted.extend(net.pump());
    assert_eq!(
        admitted
            .iter()
            .filter(|(_, m)| matches!(m, ClientMessage::Admit { .. }))
            .count(),
        2
    );
    let everyone = vec![
        member(&mp, Role::Mediator, None),
        member(&ap, Role::Party, Some(Side::A)),
        member(&bp, Role::Party, Some(Side::B)),
        member(&cp, Role::CoMediator, None),
    ];
    for p in [&mp, &ap, &bp, &cp] {
        net.rooms.insert(p.clone(), joint());
    }
    for p in [mp.clone(), cp.clone()] {
        net.core(&p)
            .handle(view(vec![joint_view(everyone.clone())]), now);
    }
    for p in [ap.clone(), bp.clone()] {
        let channel = joint_view(everyone.clone());
        net.core(&p).handle(ServerMessage::Channel { channel }, now);
    }
    net.pump();
    for p in [&mp, &ap, &bp, &cp] {
        assert_eq!(
            net.core(p).roster_present(&joint()).len(),
            4,
            "{p:?} sees the four of them"
        );
    }
    let code = net.core(&ap).session_code().unwrap().to_owned();
    let joint_epoch = net.core(&mp).roster_epoch(&joint()).unwrap();

    // The co-mediator takes party A into A's caucus; the mediator stays in joint with B.
    let caucus = ChannelId::caucus(Side::A);
    for p in [ap.clone(), cp.clone()] {
        net.core(&cp).command(ClientMessage::Move {
            participant_id: p,
            channel_id: caucus.clone(),
        });
    }
    net.pump();
    net.rooms.insert(ap.clone(), caucus.clone());
    net.rooms.insert(cp.clone(), caucus.clone());
    let in_caucus = vec![
        member(&ap, Role::Party, Some(Side::A)),
        member(&cp, Role::CoMediator, None),
    ];
    let after = view(vec![
        joint_view(vec![
            member(&mp, Role::Mediator, None),
            member(&bp, Role::Party, Some(Side::B)),
        ]),
        room(caucus.clone(), ChannelKind::Caucus, in_caucus.clone()),
    ]);
    // The mediator sees the server's view first (it asked for no such move: it does nothing),
    // then the co-mediator's rosters arrive.
    net.core(&mp).handle(after.clone(), now);
    net.core(&cp).handle(after, now);
    for p in [ap.clone(), cp.clone()] {
        let channel = room(caucus.clone(), ChannelKind::Caucus, in_caucus.clone());
        net.core(&p).handle(ServerMessage::Channel { channel }, now);
    }
    net.pump();
    let mut want = vec![ap.clone(), cp.clone()];
    want.sort();
    for p in [&mp, &ap, &cp] {
        let mut got = net.core(p).roster_present(&caucus);
        got.sort();
        assert_eq!(got, want, "{p:?}: the caucus holds the co-mediator and A");
    }
    assert!(net.core(&ap).secured() == Some(&caucus));
    assert!(net.core(&cp).secured() == Some(&caucus));
    assert_eq!(
        net.core(&mp).roster_epoch(&joint()),
        Some(joint_epoch + 1),
        "one joint roster (A and the co-mediator away), signed by the co-mediator; the \
         mediator took it as its own and signed nothing over it"
    );
    // A speaks in the caucus: the co-mediator reads it; B neither receives it nor could
    // open it.
    net.core(&ap)
        .send_chat("caucus: we could accept 40")
        .unwrap();
    net.pump();
    let heard = |c: &mut Core<OsRng>| {
        std::iter::from_fn(|| c.poll_event())
            .any(|e| matches!(e, confer_client::Event::Chat { text, .. } if text == "caucus: we could accept 40"))
    };
    assert!(heard(net.core(&cp)));
    assert!(!heard(net.core(&bp)));
    assert!(
        !heard(net.core(&mp)),
        "the mediator is away from the caucus"
    );
    // Nobody saw a fork, a bad signature or anything else: the two managers agree.
    for p in [&mp, &ap, &bp, &cp] {
        assert!(
            net.core(p).stats().alarms.is_empty(),
            "{p:?}: {:?}",
            net.core(p).stats().alarms
        );
        assert_eq!(net.core(p).session_code(), Some(code.as_str()));
    }

    // The mediator brings everyone back; the co-mediator follows the mediator's roster.
    net.core(&mp).command(ClientMessage::ReturnAll);
    net.pump();
    for p in [&ap, &cp] {
        net.rooms.insert(p.clone(), joint());
    }
    for p in [mp.clone(), cp.clone()] {
        net.core(&p)
            .handle(view(vec![joint_view(everyone.clone())]), now);
    }
    for p in [ap.clone(), cp.clone()] {
        let channel = joint_view(everyone.clone());
        net.core(&p).handle(ServerMessage::Channel { channel }, now);
    }
    net.pump();
    for p in [&mp, &ap, &bp, &cp] {
        assert_eq!(net.core(p).roster_present(&joint()).len(), 4, "{p:?}");
        assert!(net.core(p).stats().alarms.is_empty(), "{p:?}");
    }
}

#[test]
fn a_roster_from_a_co_mediator_without_a_valid_delegation_is_refused() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    // B signs a roster of its own and claims a delegation it made up.
    let (_, joint_roster) = rosters(&from_m)
        .into_iter()
        .find(|(ch, _)| ch == "joint")
        .unwrap();
    let mut next = joint_roster.roster.clone();
    next.epoch += 1;
    next.prev_hash = joint_roster.hash;
    let forged = next.sign(t.b.identity().unwrap()).unwrap();
    let env = Envelope::Roster {
        ch: "joint".into(),
        enc: Bytes(forged.encoded.clone()),
        sig: Bytes(forged.signature.to_vec()),
        dik: Some(Bytes(t.b.identity().unwrap().ik_pub().to_vec())),
        dsig: Some(Bytes(vec![7; 64])),
    };
    let epoch = t.a.roster_epoch(&joint());
    t.a.handle(
        ServerMessage::Relayed {
            from: t.bp.clone(),
            channel: None,
            data: env.to_data(),
        },
        now,
    );
    assert!(alarmed(&t.a, "delegation_invalid"));
    assert_eq!(t.a.roster_epoch(&joint()), epoch);
}

#[test]
fn a_display_name_that_does_not_match_the_roster_commitment_is_never_shown() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    // B gave no name (its roster entry commits to none); it now sends A a name anyway.
    let (from_id, to_id): ([u8; 16], [u8; 16]) = (
        hex::decode(t.bp.as_str()).unwrap().try_into().unwrap(),
        hex::decode(t.ap.as_str()).unwrap().try_into().unwrap(),
    );
    let name = confer_e2ee::messages::NameMsg {
        salt: [5; 16],
        name: "The Mediator".into(),
    };
    let pair = Pair {
        session_id: b"s1",
        from: from_id,
        to: to_id,
    };
    let a_ek = t.a.identity().unwrap().ek_pub();
    let sealed = pairwise::seal(
        &mut os_rng(),
        t.b.identity().unwrap(),
        &a_ek,
        pair,
        MsgType::Name,
        1_000,
        &name.encode(),
        None,
    )
    .unwrap();
    let env = Envelope::Pw {
        t: 4,
        seq: 1_000,
        enc: Bytes(sealed.enc.to_vec()),
        ct: Bytes(sealed.ct),
        hint: None,
    };
    t.a.handle(
        ServerMessage::Relayed {
            from: t.bp.clone(),
            channel: None,
            data: env.to_data(),
        },
        now,
    );
    assert!(t.a.names().is_empty(), "{:?}", t.a.names());
    assert_eq!(t.a.stats().names_rejected, 1);
    assert_eq!(t.a.stats().names_verified, 0);
}

#[test]
fn a_mediator_who_lets_people_in_one_by_one_admits_only_ready_arrivals_it_chose() {
    let now = Instant::now();
    let (mp, ap, bp) = (pid(1), pid(2), pid(3));
    let mut cfg = CoreConfig::new(agreement_hash(AGREEMENT));
    cfg.auto_admit = false;
    let mut m = Core::new(os_rng(), cfg);
    let alone = joint_view(vec![member(&mp, Role::Mediator, None)]);
    m.handle(welcome(&mp, Role::Mediator, None, Some(alone)), now);
    let m_ik = m.identity().unwrap().ik_pub();
    let psk_a = m.issue_invite(Role::Party, Some(Side::A));
    let psk_b = m.issue_invite(Role::Party, Some(Side::B));
    let seated = vec![member(&mp, Role::Mediator, None)];

    let mut a = invited(&psk_a, m_ik);
    a.handle(welcome(&ap, Role::Party, Some(Side::A), None), now);
    let mut b = invited(&psk_b, m_ik);
    b.handle(welcome(&bp, Role::Party, Some(Side::B), None), now);
    let w = [waiting(&ap, Role::Party, Side::A)];
    let out = arrive(&mut m, &mp, &mut a, &ap, &w, &seated, now);
    assert!(
        admits(&out).is_empty(),
        "nobody is let in without a person's decision: {out:?}"
    );
    let w = [
        waiting(&ap, Role::Party, Side::A),
        waiting(&bp, Role::Party, Side::B),
    ];
    let out = arrive(&mut m, &mp, &mut b, &bp, &w, &seated, now);
    assert!(admits(&out).is_empty(), "{out:?}");
    assert_eq!(m.ready(), vec![ap.clone(), bp.clone()]);
    // The fingerprint the mediator compares is of the key each arrival announced.
    assert_eq!(m.announced_key(&ap), Some(a.identity().unwrap().ik_pub()));

    // The mediator lets B in first, then A; nobody twice, and nobody who is not ready.
    assert!(m.admit(&bp));
    assert_eq!(admits(&drain(&mut m)), vec![bp.clone()]);
    assert!(!m.admit(&bp), "already admitted");
    assert!(!m.admit(&pid(9)), "not an arrival");
    assert_eq!(m.ready(), vec![ap.clone()]);
    assert!(m.admit(&ap));
    assert_eq!(admits(&drain(&mut m)), vec![ap]);
    assert!(m.ready().is_empty());
}

/// A party whose page reloaded resumes its participant id with new keys (§16). Nothing the
/// server says lets the new keys in: the mediator's client holds them, the rosters keep the old
/// keys, and only a person's decision re-signs the party's rooms with the new ones.
#[test]
fn a_party_that_lost_its_keys_is_let_back_into_its_caucus_only_by_a_person() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    deliver(&from_m, &t.mp, &mut t.b, now);
    let caucus_a = ChannelId::caucus(Side::A);
    for p in [t.ap.clone(), t.mp.clone()] {
        t.m.command(ClientMessage::Move {
            participant_id: p,
            channel_id: caucus_a.clone(),
        });
    }
    drain(&mut t.m);
    let with_a = |t: &Trio, connected: bool| {
        let mut members = t.members(&['m', 'a']);
        members[1].connected = connected;
        view(vec![
            joint_view(t.members(&['b'])),
            room(caucus_a.clone(), ChannelKind::Caucus, members),
        ])
    };
    t.m.handle(with_a(&t, true), now);
    let out = drain(&mut t.m);
    deliver(&out, &t.mp, &mut t.a, now);
    deliver(&out, &t.mp, &mut t.b, now);
    let caucus_view = room(
        caucus_a.clone(),
        ChannelKind::Caucus,
        t.members(&['m', 'a']),
    );
    for c in [&mut t.a, &mut t.m] {
        c.handle(
            ServerMessage::Channel {
                channel: caucus_view.clone(),
            },
            now,
        );
    }
    drain(&mut t.m);
    assert!(t.a.secured() == Some(&caucus_a));
    // A's keys (joint, then its caucus) reach the mediator, which opens A's chat.
    let keys_a = drain(&mut t.a);
    deliver(&keys_a, &t.ap, &mut t.m, now);
    t.a.send_chat("before").unwrap();
    let chat = drain(&mut t.a);
    deliver(&chat, &t.ap, &mut t.m, now);
    drain(&mut t.m);
    assert_eq!(chats(&mut t.m), 1);
    let old_code = t.m.session_code().map(str::to_owned);

    // A's page reloads: its connection drops, and a fresh client resumes A's id in the caucus.
    t.m.handle(with_a(&t, false), now);
    assert!(drain(&mut t.m).is_empty());
    let mut a2 = core(false);
    a2.handle(
        welcome(&t.ap, Role::Party, Some(Side::A), Some(caucus_view)),
        now,
    );
    t.m.handle(with_a(&t, true), now);
    let hello = drain(&mut t.m);
    assert_eq!(
        hello.len(),
        1,
        "the mediator introduces itself again, and signs nothing"
    );
    deliver(&hello, &t.mp, &mut a2, now);
    let from_a2 = drain(&mut a2);
    assert!(
        !from_a2
            .iter()
            .any(|m| matches!(m, ClientMessage::Consent { .. })),
        "placed already: no consent for the server"
    );
    deliver(&from_a2, &t.ap, &mut t.m, now);
    assert!(t.m.rekeyed(&t.ap));
    assert_eq!(t.m.held(), vec![t.ap.clone()]);
    let new_key = a2.identity().map(|i| i.ik_pub());
    assert!(new_key.is_some());
    assert_eq!(
        t.m.announced_key(&t.ap),
        new_key,
        "the fingerprint a person compares is the new key's"
    );
    let meanwhile = drain(&mut t.m);
    assert!(
        rosters(&meanwhile).is_empty(),
        "no roster with the new keys before a person decides: {meanwhile:?}"
    );
    assert!(!alarmed(&t.m, "announcement_changed"));
    // Meanwhile the fresh client waits: no keys, no chat, and no alarm about the room it cannot
    // verify yet, even long after the grace.
    let later = now + Duration::from_secs(60);
    a2.tick(later);
    assert!(a2.secured().is_none());
    assert!(a2.send_chat("too early").is_err());
    assert!(a2.stats().alarms.is_empty(), "{:?}", a2.stats().alarms);

    // A person compares the new fingerprint and lets A back in: its rooms are re-signed with
    // the new keys, and the fresh client gets each room's history.
    assert!(t.m.admit_held(&t.ap, Role::Party, Some(Side::A)));
    assert!(t.m.held().is_empty());
    let resigned = drain(&mut t.m);
    let signed = rosters(&resigned);
    assert!(signed.iter().any(|(ch, _)| ch == caucus_a.as_str()));
    assert!(signed.iter().any(|(ch, _)| ch == "joint"));
    deliver(&resigned, &t.mp, &mut a2, later);
    deliver(&resigned, &t.mp, &mut t.b, later);
    assert!(a2.secured() == Some(&caucus_a), "back in its caucus");
    assert!(a2.stats().alarms.is_empty(), "{:?}", a2.stats().alarms);
    assert!(t.b.stats().alarms.is_empty(), "{:?}", t.b.stats().alarms);
    assert_ne!(
        t.m.session_code().map(str::to_owned),
        old_code,
        "the session code changes: people compare again"
    );
    // Keys flow both ways under the new keys, and A's fresh generations are accepted.
    let keys_a2 = drain(&mut a2);
    deliver(&keys_a2, &t.ap, &mut t.m, later);
    a2.send_chat("back").unwrap();
    let chat = drain(&mut a2);
    deliver(&chat, &t.ap, &mut t.m, later);
    drain(&mut t.m);
    assert_eq!(chats(&mut t.m), 1, "the mediator opens A's chat");
    t.m.send_chat("welcome back").unwrap();
    let back = drain(&mut t.m);
    deliver(&back, &t.mp, &mut a2, later);
    assert_eq!(chats(&mut a2), 1, "A opens the mediator's chat");
    assert_eq!(
        t.b.receive_keys_for(&caucus_a),
        0,
        "B holds nothing of the caucus"
    );
    assert!(
        !t.m.stats().alarms.iter().any(|a| a != "stale_key"),
        "{:?}",
        t.m.stats().alarms
    );
}

/// The server relays, under the mediator's own id, an announcement with other keys: the
/// mediator's client takes nothing from it (its own keys are its own, never "back with new
/// keys" for a person to let in).
#[test]
fn an_announcement_under_the_mediators_own_id_changes_nothing() {
    let (mut t, from_m) = Trio::all_in_joint();
    let now = t.now;
    deliver(&from_m, &t.mp, &mut t.a, now);
    // A client of the server's, welcomed as the mediator, introduces itself to someone waiting.
    let mut fake = core(true);
    let alone = joint_view(vec![member(&t.mp, Role::Mediator, None)]);
    fake.handle(welcome(&t.mp, Role::Mediator, None, Some(alone)), now);
    fake.handle(
        session_msg(vec![waiting_party(&t.bp, Side::B)], t.members(&['m'])),
        now,
    );
    let forged = drain(&mut fake);
    assert!(
        forged
            .iter()
            .any(|m| matches!(m, ClientMessage::Relay { data, .. }
            if matches!(Envelope::from_data(data), Some(Envelope::Announce { .. })))),
        "the fake announces itself"
    );
    for m in &forged {
        if let ClientMessage::Relay { data, .. } = m {
            t.m.handle(
                ServerMessage::Relayed {
                    from: t.mp.clone(),
                    channel: None,
                    data: data.clone(),
                },
                now,
            );
        }
    }
    assert!(!t.m.rekeyed(&t.mp));
    assert!(t.m.held().is_empty());
    assert!(rosters(&drain(&mut t.m)).is_empty(), "nothing re-signed");
    assert!(t.m.stats().alarms.is_empty(), "{:?}", t.m.stats().alarms);
}
