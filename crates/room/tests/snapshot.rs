#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Snapshot and restore: another node takes a session over from what its owner last wrote,
//! everyone resumes where they were, and nobody hears more than before. Virtual time.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use confer_proto::{DocHash, LeaveReason, ParticipantId, RelayTarget, Role, ServerMessage, Side};
use confer_room::{
    AuditKind, Command, Input, Output, ParticipantSnapshot, RestoreError, Room, RoomConfig,
    RoomError, RoomSnapshot,
};
use confer_testkit::RoomHarness;
use proptest::prelude::*;

const GRACE: Duration = Duration::from_secs(30);
const DOC: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

fn config() -> RoomConfig {
    RoomConfig::default().resume_grace(GRACE)
}

/// Who is where in [`scene`].
struct Scene {
    h: RoomHarness,
    /// Mediator, in joint.
    m: ParticipantId,
    /// Party A, alone in caucus-A, with a document acknowledged.
    a: ParticipantId,
    /// Party B, in breakout-1 with `ca`.
    b: ParticipantId,
    /// Counsel for A, in breakout-1 with `b`.
    ca: ParticipantId,
    /// An observer, in joint.
    o: ParticipantId,
    /// Party B's second person, in the waiting room with consent given.
    w: ParticipantId,
}

impl Scene {
    fn everyone(&self) -> [&ParticipantId; 6] {
        [&self.m, &self.a, &self.b, &self.ca, &self.o, &self.w]
    }
}

/// A locked session with someone in every kind of place.
fn scene() -> Scene {
    let mut h = RoomHarness::new(config());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    let b = h.join(Role::Party, Some(Side::B)).unwrap();
    let ca = h.join(Role::Counsel, Some(Side::A)).unwrap();
    let o = h.join(Role::Observer, None).unwrap();
    for p in [&a, &b, &ca, &o] {
        h.cmd(p, consent()).unwrap();
        h.cmd(&m, Command::Admit(p.clone())).unwrap();
    }
    let w = h.join(Role::Party, Some(Side::B)).unwrap();
    h.cmd(&w, consent()).unwrap();
    h.cmd(&m, Command::Move(a.clone(), ch("caucus-A"))).unwrap();
    h.cmd(&m, Command::CreateBreakout(vec![b.clone(), ca.clone()]))
        .unwrap();
    h.cmd(&m, Command::Lock).unwrap();
    h.cmd(&a, Command::AcknowledgeDoc(DocHash::new(DOC).unwrap()))
        .unwrap();
    h.inbox.clear();
    Scene {
        h,
        m,
        a,
        b,
        ca,
        o,
        w,
    }
}

/// The owner dies: what it last wrote goes through JSON, and a new room takes the session over
/// at the harness's `now`. Returns every output the new room queued, its final `Timeout` too.
fn take_over(h: &mut RoomHarness) -> Vec<Output> {
    let stored = serde_json::to_string(&h.room.snapshot()).unwrap();
    let snapshot: RoomSnapshot = serde_json::from_str(&stored).unwrap();
    h.room = Room::restore(snapshot, config(), h.clock.now()).unwrap();
    h.inbox.clear();
    let mut outputs = Vec::new();
    loop {
        let o = h.room.poll_output();
        let done = matches!(o, Output::Timeout(_));
        if let Output::Timeout(at) = o {
            h.wake_at = Some(at);
        }
        outputs.push(o);
        if done {
            return outputs;
        }
    }
}

/// One relay, fed to the room directly: the recipients of each `Deliver` it queued.
fn relay(
    h: &mut RoomHarness,
    from: &ParticipantId,
    target: RelayTarget,
) -> Result<Vec<Vec<ParticipantId>>, RoomError> {
    let now = h.clock.now();
    let r = h.room.handle_input(Input::Command {
        from: from.clone(),
        command: Command::Relay(target, "ciphertext".into()),
        now,
    });
    let mut recipients = Vec::new();
    loop {
        match h.room.poll_output() {
            Output::Timeout(_) => break,
            Output::Deliver {
                to,
                message: ServerMessage::Relayed { .. },
            } => recipients.push(to),
            other => panic!("a relay queued {other:?}"),
        }
    }
    r.map(|()| recipients)
}

/// Every relay path in [`scene`] worth checking, with what the room did with it.
fn relay_outcomes(s: &mut Scene) -> Vec<Result<Vec<Vec<ParticipantId>>, RoomError>> {
    let to_ch = |c: &str| RelayTarget::Channel(ch(c));
    let to = |p: &ParticipantId| RelayTarget::Participant(p.clone());
    let cases = [
        (s.m.clone(), to_ch("caucus-A")),
        (s.m.clone(), to_ch("joint")),
        (s.m.clone(), to_ch("breakout-1")),
        (s.m.clone(), to(&s.w)),
        (s.a.clone(), to_ch("caucus-A")),
        (s.a.clone(), to(&s.m)),
        (s.a.clone(), to(&s.w)),
        (s.a.clone(), to(&s.b)),
        (s.b.clone(), to_ch("breakout-1")),
        (s.b.clone(), to_ch("caucus-A")),
        (s.b.clone(), to(&s.a)),
        (s.ca.clone(), to_ch("caucus-A")),
        (s.o.clone(), to_ch("joint")),
        (s.o.clone(), to_ch("breakout-1")),
        (s.w.clone(), to(&s.m)),
        (s.w.clone(), to_ch("joint")),
        (s.w.clone(), to(&s.b)),
    ];
    cases
        .into_iter()
        .map(|(from, target)| relay(&mut s.h, &from, target))
        .collect()
}

#[test]
fn json_round_trip_is_lossless_and_restore_gives_back_the_same_snapshot() {
    let s = scene();
    let snapshot = s.h.room.snapshot();
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: RoomSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    assert_eq!(serde_json::to_string(&back).unwrap(), json, "same bytes");
    let restored = Room::restore(back, config(), s.h.clock.now()).unwrap();
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.routing(), s.h.room.routing());
    assert!(restored.is_locked());
    assert_eq!(restored.participant_count(), 6);
}

#[test]
fn the_json_shape_is_pinned() {
    let mut h = RoomHarness::new(config());
    let m = h.join(Role::Mediator, None).unwrap();
    let a = h.join(Role::Party, Some(Side::A)).unwrap();
    h.cmd(&a, consent()).unwrap();
    let json = serde_json::to_value(h.room.snapshot()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "v": 1,
            "session": "s1",
            "participants": [
                {"id": m.as_str(), "role": "mediator", "side": null, "place": "joint",
                 "consent": null, "acknowledged_docs": [], "arrival": 1},
                {"id": a.as_str(), "role": "party", "side": "A", "place": null,
                 "consent": HASH, "acknowledged_docs": [], "arrival": 2},
            ],
            "breakouts": [],
            "next_breakout": 1,
            "next_arrival": 2,
            "locked": false,
        })
    );
}

#[test]
fn unknown_fields_are_refused() {
    let s = scene();
    let mut json = serde_json::to_value(s.h.room.snapshot()).unwrap();
    json["connected"] = serde_json::json!(true);
    assert!(serde_json::from_value::<RoomSnapshot>(json.clone()).is_err());
    json.as_object_mut().unwrap().remove("connected");
    json["participants"][0]["deadline"] = serde_json::json!(0);
    assert!(serde_json::from_value::<RoomSnapshot>(json).is_err());
}

#[test]
fn restore_queues_only_the_routing_table_and_a_wakeup_at_the_grace_deadline() {
    let mut s = scene();
    let routing = s.h.room.routing().clone();
    assert_eq!(routing.len(), 3, "joint, caucus-A, breakout-1: {routing:?}");
    s.h.skip(Duration::from_secs(5));
    let now = s.h.clock.now();
    let outputs = take_over(&mut s.h);
    assert_eq!(
        outputs,
        vec![Output::Routing(routing), Output::Timeout(now + GRACE)],
        "no session_created, no deliveries: nobody is connected"
    );
}

#[test]
fn everyone_resumes_into_the_same_place_with_the_welcome_the_old_node_would_give() {
    // Two identical sessions: on one, everyone drops and resumes on the same node; the other
    // is taken over by a new node first. Each participant must hear exactly the same.
    let mut same_node = scene();
    let mut new_node = scene();
    for p in same_node.everyone().map(Clone::clone) {
        same_node.h.disconnect(&p).unwrap();
    }
    same_node.h.inbox.clear();
    new_node.h.skip(Duration::from_secs(5));
    take_over(&mut new_node.h);
    for s in [&mut same_node, &mut new_node] {
        for p in s.everyone().map(Clone::clone) {
            s.h.resume(&p).unwrap();
        }
    }
    assert_eq!(new_node.h.inbox, same_node.h.inbox);

    let expected = [
        (&new_node.m, Some("joint")),
        (&new_node.a, Some("caucus-A")),
        (&new_node.b, Some("breakout-1")),
        (&new_node.ca, Some("breakout-1")),
        (&new_node.o, Some("joint")),
        (&new_node.w, None),
    ];
    for (p, place) in expected {
        let ServerMessage::Welcome {
            resumed,
            locked,
            channel,
            participant_id,
            ..
        } = &new_node.h.inbox[p][0]
        else {
            panic!("a resume starts with a welcome")
        };
        assert!(*resumed && *locked);
        assert_eq!(participant_id, p);
        assert_eq!(channel.as_ref().map(|c| c.id.clone()), place.map(ch));
    }
    assert!(!new_node.h.room.is_admitted(&new_node.w));
    assert!(new_node.h.room.is_locked());
    assert_eq!(
        new_node.h.join(Role::Party, Some(Side::A)),
        Err(RoomError::Locked),
        "still locked"
    );
}

#[test]
fn relays_keep_the_same_isolation_after_a_take_over() {
    let mut s = scene();
    let before = relay_outcomes(&mut s);
    take_over(&mut s.h);
    for p in s.everyone().map(Clone::clone) {
        s.h.resume(&p).unwrap();
    }
    s.h.inbox.clear();
    let after = relay_outcomes(&mut s);
    assert_eq!(after, before);

    // And what "the same" is, path by path.
    let (m, a, b, ca, o) = (&s.m, &s.a, &s.b, &s.ca, &s.o);
    let only = |p: &ParticipantId| Ok(vec![vec![p.clone()]]);
    assert_eq!(after[0], only(a), "caucus-A reaches A only, never B");
    assert_eq!(after[1], only(o), "joint: the observer");
    let mut breakout = vec![b.clone(), ca.clone()];
    breakout.sort();
    assert_eq!(after[2], Ok(vec![breakout]));
    assert_eq!(
        after[3],
        only(&s.w),
        "the mediator reaches the waiting room"
    );
    assert_eq!(after[4], Ok(vec![]), "A is alone in caucus-A");
    assert_eq!(after[5], only(m));
    assert_eq!(after[6], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[7], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[8], only(ca));
    assert_eq!(after[9], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[10], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[11], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[12], only(m));
    assert_eq!(after[13], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[14], only(m), "the waiting room reaches the mediator");
    assert_eq!(after[15], Err(RoomError::RelayNotAllowed));
    assert_eq!(after[16], Err(RoomError::RelayNotAllowed));
    for (i, outcome) in after.iter().enumerate() {
        if i != 3 {
            let reached = outcome.iter().flatten().flatten();
            assert!(
                reached.into_iter().all(|p| p != &s.w),
                "case {i}: only the mediator reaches the waiting room"
            );
        }
    }
}

#[test]
fn whoever_does_not_resume_times_out_and_the_others_are_told() {
    let mut s = scene();
    s.h.skip(Duration::from_secs(5));
    let restored_at = s.h.clock.now();
    take_over(&mut s.h);
    assert_eq!(s.h.wake_at, Some(restored_at + GRACE));
    for p in [&s.m, &s.b, &s.ca, &s.o, &s.w] {
        s.h.resume(p).unwrap();
    }
    s.h.inbox.clear();
    assert_eq!(s.h.wake_at, Some(restored_at + GRACE), "A is still due");

    s.h.advance(GRACE - Duration::from_millis(1));
    assert!(s.h.room.contains(&s.a));
    s.h.advance(Duration::from_millis(1));
    assert!(!s.h.room.contains(&s.a));
    let left = ServerMessage::ParticipantLeft {
        participant_id: s.a.clone(),
        reason: LeaveReason::Timeout,
    };
    assert!(s.h.take(&s.m).contains(&left), "the mediator is told");
    for p in [&s.b, &s.ca, &s.o, &s.w] {
        assert!(
            !s.h.take(p).contains(&left),
            "nobody outside caucus-A is told"
        );
    }
    assert!(
        s.h.audit
            .iter()
            .any(|e| e.kind == AuditKind::Left(LeaveReason::Timeout)
                && e.participant.as_ref() == Some(&s.a))
    );
    assert!(!s.h.room.routing().contains_key(&ch("caucus-A")));
    assert_eq!(s.h.resume(&s.a), Err(RoomError::NotFound));
    // The others resumed: nothing else is due.
    s.h.advance(GRACE * 4);
    assert_eq!(s.h.room.participant_count(), 5);
}

#[test]
fn a_taken_over_session_nobody_resumes_ends() {
    let mut s = scene();
    take_over(&mut s.h);
    s.h.advance(GRACE);
    assert!(s.h.ended && s.h.room.is_ended());
    assert_eq!(s.h.last_routing().map(|r| r.len()), Some(0));
}

// Each invalid snapshot breaks one rule of the room, starting from the valid `scene()`.
#[test]
fn a_snapshot_the_room_could_never_have_reached_is_refused() {
    type Edit = fn(&mut RoomSnapshot, &Scene);
    fn who<'s>(snap: &'s mut RoomSnapshot, id: &ParticipantId) -> &'s mut ParticipantSnapshot {
        snap.participants.iter_mut().find(|p| &p.id == id).unwrap()
    }
    let cases: Vec<(&str, Edit, RestoreError)> = vec![
        (
            "a newer format",
            |snap, _| snap.v = 2,
            RestoreError::UnsupportedVersion(2),
        ),
        (
            "a participant listed twice",
            |snap, s| {
                let twin = who(snap, &s.o).clone();
                snap.participants.push(twin);
            },
            RestoreError::DuplicateParticipant,
        ),
        (
            "a party without a side",
            |snap, s| who(snap, &s.a).side = None,
            RestoreError::SideMismatch,
        ),
        (
            "an observer with a side",
            |snap, s| who(snap, &s.o).side = Some(Side::A),
            RestoreError::SideMismatch,
        ),
        (
            "the mediator in the waiting room",
            |snap, s| who(snap, &s.m).place = None,
            RestoreError::ManagerWaiting,
        ),
        (
            "a member of a breakout that is not open",
            |snap, _| {
                snap.breakouts.clear();
            },
            RestoreError::UnknownChannel,
        ),
        (
            "a place no channel has",
            |snap, s| who(snap, &s.o).place = Some(ch("lobby")),
            RestoreError::UnknownChannel,
        ),
        (
            "party B in caucus-A",
            |snap, s| who(snap, &s.b).place = Some(ch("caucus-A")),
            RestoreError::PlaceNotAllowed,
        ),
        (
            "an observer in a caucus",
            |snap, s| who(snap, &s.o).place = Some(ch("caucus-B")),
            RestoreError::PlaceNotAllowed,
        ),
        (
            "admitted without consent",
            |snap, s| who(snap, &s.o).consent = None,
            RestoreError::AdmittedWithoutConsent,
        ),
        (
            "a document acknowledged in the waiting room",
            |snap, s| {
                who(snap, &s.w)
                    .acknowledged_docs
                    .insert(DocHash::new(DOC).unwrap());
            },
            RestoreError::DocumentsWhileWaiting,
        ),
        (
            "more documents than a client may hold",
            |snap, s| {
                who(snap, &s.a).acknowledged_docs = (0..=confer_room::MAX_ACKNOWLEDGED_DOCS)
                    .map(|i| DocHash::new(format!("{i:064x}")).unwrap())
                    .collect();
            },
            RestoreError::TooManyDocuments,
        ),
        (
            "an arrival past next_arrival",
            |snap, s| who(snap, &s.a).arrival = snap.next_arrival + 1,
            RestoreError::ArrivalOutOfRange,
        ),
        (
            "an arrival of 0",
            |snap, s| who(snap, &s.a).arrival = 0,
            RestoreError::ArrivalOutOfRange,
        ),
        (
            "two arrivals alike",
            |snap, s| who(snap, &s.a).arrival = who(snap, &s.b).arrival,
            RestoreError::DuplicateArrival,
        ),
        (
            "a breakout not handed out yet",
            |snap, _| snap.next_breakout = 1,
            RestoreError::BreakoutOutOfRange,
        ),
        (
            "a breakout counter of 0",
            |snap, s| {
                snap.breakouts.clear();
                for p in [&s.b, &s.ca] {
                    who(snap, p).place = Some(ch("joint"));
                }
                snap.next_breakout = 0;
            },
            RestoreError::BreakoutOutOfRange,
        ),
        (
            "a breakout the room could not have named",
            |snap, s| {
                snap.breakouts.insert(ch("breakout-01"));
                who(snap, &s.o).place = Some(ch("breakout-01"));
            },
            RestoreError::BreakoutOutOfRange,
        ),
        (
            "an empty breakout",
            |snap, _| {
                snap.breakouts.insert(ch("breakout-2"));
                snap.next_breakout = 3;
            },
            RestoreError::EmptyBreakout,
        ),
    ];
    let s = scene();
    let valid = s.h.room.snapshot();
    assert!(Room::restore(valid.clone(), config(), s.h.clock.now()).is_ok());
    let mut messages = BTreeMap::new();
    for (what, edit, expected) in cases {
        let mut snap = valid.clone();
        edit(&mut snap, &s);
        let got = Room::restore(snap, config(), s.h.clock.now()).map(|_| ());
        assert_eq!(got, Err(expected), "{what}");
        messages.insert(format!("{expected:?}"), expected.to_string());
    }
    // One message per error, none mentioning an id.
    let distinct: std::collections::BTreeSet<_> = messages.values().collect();
    assert_eq!(distinct.len(), messages.len(), "{messages:?}");
    for m in messages.values() {
        assert!(!m.contains("p1") && !m.contains("s1"), "{m}");
    }
}

// Random sessions: whatever state a sequence of commands reaches, its snapshot survives JSON
// and a restore unchanged, and the restored room routes exactly as the original does.

#[derive(Debug, Clone)]
enum Op {
    Join(Role, u8),
    Consent(usize),
    Admit(usize),
    Move(usize, u8),
    Breakout(Vec<usize>),
    ReturnAll,
    Lock(bool),
    Kick(usize),
    Leave(usize),
    Acknowledge(usize, u8),
    Relay(usize, u8),
    Disconnect(usize),
    Resume(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let role = prop::sample::select(vec![
        Role::Mediator,
        Role::CoMediator,
        Role::Party,
        Role::Counsel,
        Role::Observer,
    ]);
    prop_oneof![
        4 => (role, 0u8..3).prop_map(|(r, s)| Op::Join(r, s)),
        3 => any::<usize>().prop_map(Op::Consent),
        3 => any::<usize>().prop_map(Op::Admit),
        3 => (any::<usize>(), 0u8..6).prop_map(|(p, c)| Op::Move(p, c)),
        2 => prop::collection::vec(any::<usize>(), 0..4).prop_map(Op::Breakout),
        1 => Just(Op::ReturnAll),
        1 => any::<bool>().prop_map(Op::Lock),
        1 => any::<usize>().prop_map(Op::Kick),
        1 => any::<usize>().prop_map(Op::Leave),
        2 => (any::<usize>(), 0u8..4).prop_map(|(p, d)| Op::Acknowledge(p, d)),
        1 => (any::<usize>(), 0u8..4).prop_map(|(p, c)| Op::Relay(p, c)),
        2 => any::<usize>().prop_map(Op::Disconnect),
        2 => any::<usize>().prop_map(Op::Resume),
        1 => (0u64..40).prop_map(Op::Advance),
    ]
}

const CHANNELS: [&str; 6] = [
    "joint",
    "caucus-A",
    "caucus-B",
    "caucus-C",
    "breakout-1",
    "breakout-2",
];

// Feeds one operation; refusals are part of the game (they change nothing). `cast` is
// everyone who ever joined, with their role.
fn apply(h: &mut RoomHarness, cast: &mut Vec<(ParticipantId, Role)>, op: Op) {
    if cast.is_empty() && !matches!(op, Op::Join(..)) {
        return;
    }
    let pick = |i: usize| cast[i % cast.len()].0.clone();
    // Manager commands come from the earliest-joined manager still in the session.
    let manager = cast
        .iter()
        .find(|(p, role)| role.is_manager() && h.room.contains(p))
        .map(|(p, _)| p.clone());
    let _ = match op {
        Op::Join(role, side) => {
            let side = role
                .needs_side()
                .then(|| Side::new(side + 1).expect("1..=3 is a side"));
            h.join(role, side).map(|p| cast.push((p, role)))
        }
        Op::Consent(i) => h.cmd(&pick(i), consent()),
        Op::Acknowledge(i, d) => {
            let hash = DocHash::new(format!("{d:064x}")).unwrap();
            h.cmd(&pick(i), Command::AcknowledgeDoc(hash))
        }
        Op::Relay(i, c) => {
            let target = RelayTarget::Channel(ch(CHANNELS[usize::from(c)]));
            h.cmd(&pick(i), Command::Relay(target, "x".into()))
        }
        Op::Leave(i) => h.cmd(&pick(i), Command::Leave),
        Op::Disconnect(i) => h.disconnect(&pick(i)),
        Op::Resume(i) => h.resume(&pick(i)),
        Op::Advance(secs) => {
            h.advance(Duration::from_secs(secs));
            Ok(())
        }
        Op::Admit(_)
        | Op::Move(..)
        | Op::Kick(_)
        | Op::Breakout(_)
        | Op::ReturnAll
        | Op::Lock(_) => {
            let Some(by) = manager else { return };
            let command = match op {
                Op::Admit(i) => Command::Admit(pick(i)),
                Op::Move(i, c) => Command::Move(pick(i), ch(CHANNELS[usize::from(c)])),
                Op::Kick(i) => Command::Kick(pick(i)),
                Op::Breakout(members) => {
                    Command::CreateBreakout(members.into_iter().map(pick).collect())
                }
                Op::ReturnAll => Command::ReturnAll,
                Op::Lock(true) => Command::Lock,
                _ => Command::Unlock,
            };
            h.cmd(&by, command)
        }
    };
}

proptest! {
    #[test]
    fn any_reachable_room_survives_snapshot_json_and_restore(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let mut h = RoomHarness::new(config());
        let mut cast = Vec::new();
        for o in ops {
            apply(&mut h, &mut cast, o);
        }
        // The shell never writes an ended session (it deletes its state instead).
        prop_assume!(!h.room.is_ended());

        let snapshot = h.room.snapshot();
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: RoomSnapshot = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &snapshot);

        let now = h.clock.now() + Duration::from_secs(3);
        let mut restored = Room::restore(back, config(), now)
            .expect("a snapshot of a reachable room is accepted");
        prop_assert_eq!(&restored.snapshot(), &snapshot);
        prop_assert_eq!(restored.routing(), h.room.routing());
        prop_assert_eq!(restored.poll_output(), Output::Routing(h.room.routing().clone()));
        if !snapshot.participants.is_empty() {
            prop_assert_eq!(restored.poll_output(), Output::Timeout(now + GRACE));
        }
        for p in &snapshot.participants {
            prop_assert_eq!(restored.is_admitted(&p.id), h.room.is_admitted(&p.id));
        }
    }
}
