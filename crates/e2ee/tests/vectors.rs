#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The shared confer/1 test vectors (tests/vectors/v1/*.json at the workspace root).
//!
//! `generate()` is deterministic. The test fails when the checked-in files differ from a fresh
//! generation; `CONFER_WRITE_VECTORS=1 cargo test -p confer-e2ee --test vectors` rewrites them.
//! A second test reads the files back as an independent implementation would and checks every
//! case, so the TypeScript client can run the same checks. It reads the directory named by
//! `CONFER_VECTORS_DIR` (default: the checked-in `tests/vectors/v1`), so any vector set can be
//! checked, and fails on a file or a case it does not recognise.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestRng, add_l, hex, unhex, unhex_n};
use confer_e2ee::OpenError;
use confer_e2ee::code::session_code;
use confer_e2ee::codes::{self, AlarmCode, FailureReason};
use confer_e2ee::frame::{self, Codec, FrameCtx, ReplayWindow, SenderKeyMsg};
use confer_e2ee::identity::{
    self, Announcement, Identity, SCOPE_ROSTERS, name_commit, role_code, role_from_code,
};
use confer_e2ee::messages::{
    self, ATTEST_ALL, ConsentAck, NameMsg, SenderKeyAck, consent_signed_bytes, psk_hint,
};
use confer_e2ee::pairwise::{self, MsgType, PSK_ID, Pair};
use confer_e2ee::roster::{
    self, Chain, Kind, Member, Roster, RosterError, SignedRoster, roster_hash,
};
use confer_e2ee::secret::Secret32;
use confer_proto::{ErrorCode, Role};
use serde_json::{Value, json};

/// Where the generator writes, and what the first test compares with.
fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/v1")
}

/// What the reader checks: `CONFER_VECTORS_DIR`, else the checked-in vectors.
fn vectors_dir() -> PathBuf {
    std::env::var_os("CONFER_VECTORS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(dir, PathBuf::from)
}

/// Every file of a vector set; the reader refuses a directory with any other.
const FILES: [&str; 8] = [
    "code.json",
    "constants.json",
    "frame.json",
    "messages.json",
    "negative.json",
    "pairwise.json",
    "replay.json",
    "roster.json",
];

/// The refusals a negative roster case may name in `error`.
const ROSTER_ERRORS: [&str; 7] = [
    "rollback",
    "fork",
    "gap",
    "bad_signature",
    "signer_not_member",
    "malformed",
    "wrong_channel",
];

fn roster_error_name(e: RosterError) -> &'static str {
    match e {
        RosterError::Rollback => "rollback",
        RosterError::Fork => "fork",
        RosterError::Gap => "gap",
        RosterError::BadSignature => "bad_signature",
        RosterError::SignerNotMember => "signer_not_member",
        RosterError::Malformed => "malformed",
        RosterError::WrongChannel => "wrong_channel",
    }
}

fn file(cases: Vec<Value>) -> Value {
    json!({"suite": "confer/1", "cases": cases})
}

fn u64s(v: u64) -> String {
    v.to_string()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap()
}

const SESSION: &str = "mediation-42";

fn frame_case(
    name: &str,
    rng: &mut TestRng,
    stream: u8,
    codec: Codec,
    kid: u64,
    ctr: u64,
    plaintext: &[u8],
) -> (Value, Vec<u8>) {
    let channel: [u8; 16] = rng.bytes();
    let sender: [u8; 16] = rng.bytes();
    let step_key = Secret32::new(rng.bytes());
    let ctx = FrameCtx::new(SESSION.as_bytes(), channel, sender, stream).unwrap();
    let keys = frame::derive(&step_key, kid, &ctx);
    let f = frame::seal_with(&keys, kid, ctr, codec, plaintext).unwrap();
    let v = json!({
        "name": name, "session_id": SESSION, "channel_id": hex(&channel), "sender_id": hex(&sender),
        "stream": stream, "codec": codec.name(), "step_key": hex(step_key.expose()),
        "kid": u64s(kid), "ctr": u64s(ctr), "plaintext": hex(plaintext),
        "key": hex(keys.key.expose()), "salt": hex(&keys.salt), "nonce": hex(&frame::nonce(&keys.salt, ctr)),
        "header": hex(&frame::encode_header(kid, ctr)), "frame": hex(&f),
    });
    (v, f)
}

fn member_json(m: &Member) -> Value {
    json!({"participant_id": hex(&m.participant_id), "ik_pub": hex(&m.ik_pub), "ek_pub": hex(&m.ek_pub),
           "role": m.role, "side": m.side, "flags": m.flags, "name_commit": hex(&m.name_commit)})
}

fn roster_json(name: &str, seed: &[u8; 32], sr: &SignedRoster) -> Value {
    let r = &sr.roster;
    json!({"name": name, "mediator_seed": hex(seed), "session_id": String::from_utf8(r.session_id.clone()).unwrap(),
           "channel_id": hex(&r.channel_id), "kind": r.kind as u8, "epoch": u64s(r.epoch), "prev_hash": hex(&r.prev_hash),
           "members": r.members.iter().map(member_json).collect::<Vec<_>>(),
           "encoded": hex(&sr.encoded), "signature": hex(&sr.signature), "hash": hex(&sr.hash)})
}

/// A roster case of `negative.json` that the receiver refuses with `error`.
fn negative_roster(name: &str, seed: &[u8; 32], sr: &SignedRoster, error: &str) -> Value {
    assert!(ROSTER_ERRORS.contains(&error), "{error}");
    let mut v = roster_json(name, seed, sr);
    v["shape"] = json!("roster");
    v["expect"] = json!("reject");
    v["error"] = json!(error);
    v["hash"] = json!(hex(&roster_hash(&sr.encoded, &sr.signature)));
    v
}

/// Signs bytes that `Roster::encode` would refuse to produce (malformed vectors).
fn sign_raw(roster: Roster, encoded: Vec<u8>, signer: &Identity) -> SignedRoster {
    let signature = signer.sign(&encoded);
    let hash = roster_hash(&encoded, &signature);
    SignedRoster {
        roster,
        encoded,
        signature,
        hash,
    }
}

struct People {
    seeds: Vec<([u8; 32], [u8; 32])>,
    ids: Vec<Identity>,
    pids: Vec<[u8; 16]>,
}

fn people(rng: &mut TestRng, n: usize) -> People {
    let mut p = People {
        seeds: vec![],
        ids: vec![],
        pids: vec![],
    };
    for _ in 0..n {
        let s = (rng.bytes(), rng.bytes());
        p.ids.push(Identity::from_secrets(&s.0, &s.1).unwrap());
        p.seeds.push(s);
        p.pids.push(rng.bytes());
    }
    p
}

fn member(p: &People, i: usize, role: u8, side: u8, flags: u8) -> Member {
    Member {
        participant_id: p.pids[i],
        ik_pub: p.ids[i].ik_pub(),
        ek_pub: p.ids[i].ek_pub(),
        role,
        side,
        flags,
        name_commit: name_commit(&[i as u8; 16], &format!("person {i}")).unwrap(),
    }
}

fn roster(
    _p: &People,
    channel: [u8; 16],
    kind: Kind,
    epoch: u64,
    prev: [u8; 32],
    members: Vec<Member>,
) -> Roster {
    let mut members = members;
    members.sort_by_key(|m| m.participant_id);
    Roster {
        session_id: SESSION.as_bytes().to_vec(),
        channel_id: channel,
        kind,
        epoch,
        prev_hash: prev,
        members,
    }
}


/// `constants.json`: the numbers and codes every implementation must share. Constants of Rust
/// type u64 are decimal strings (§14); durations are milliseconds, named `<name>_ms`.
fn constants() -> Value {
    json!({
        "suite": "confer/1",
        "constants": {
            // frame
            "suite": frame::SUITE,
            "max_step": frame::MAX_STEP,
            "window": u64s(frame::WINDOW),
            "max_ctr_jump": u64s(frame::MAX_CTR_JUMP),
            "max_generation": u64s(frame::MAX_GENERATION),
            "stream_audio": frame::STREAM_AUDIO,
            "stream_camera": frame::STREAM_CAMERA,
            "stream_screen": frame::STREAM_SCREEN,
            "stream_data": frame::STREAM_DATA,
            // identity
            "scope_rosters": SCOPE_ROSTERS,
            "max_name_bytes": identity::MAX_NAME_BYTES,
            // roster
            "flag_away": roster::FLAG_AWAY,
            "max_side": roster::MAX_SIDE,
            "kind_joint": Kind::Joint as u8,
            "kind_caucus": Kind::Caucus as u8,
            "kind_breakout": Kind::Breakout as u8,
            "role_mediator": role_code(Role::Mediator),
            "role_co_mediator": role_code(Role::CoMediator),
            "role_party": role_code(Role::Party),
            "role_counsel": role_code(Role::Counsel),
            "role_observer": role_code(Role::Observer),
            // messages
            "attest_no_recording": messages::ATTEST_NO_RECORDING,
            "attest_nobody_else": messages::ATTEST_NOBODY_ELSE,
            "attest_all": ATTEST_ALL,
            // pairwise
            "msg_type_sender_key": MsgType::SenderKey as u8,
            "msg_type_sender_key_ack": MsgType::SenderKeyAck as u8,
            "msg_type_consent": MsgType::Consent as u8,
            "msg_type_name": MsgType::Name as u8,
            "psk_id": hex(PSK_ID),
            // codes: the client rules
            "unsigned_grace_ms": ms(codes::UNSIGNED_GRACE),
            "stale_key_after_ms": ms(codes::STALE_KEY_AFTER),
            "keep_old_keys_ms": ms(codes::KEEP_OLD_KEYS),
            "ratchet_every_ms": ms(codes::RATCHET_EVERY),
            "hold_for_key_ms": ms(codes::HOLD_FOR_KEY),
            "keyframe_request_every_ms": ms(codes::KEYFRAME_REQUEST_EVERY),
            "max_peers": codes::MAX_PEERS,
            "max_early_chats": codes::MAX_EARLY_CHATS,
            "max_held_chat_bytes": codes::MAX_HELD_CHAT_BYTES,
            "max_held_keys": codes::MAX_HELD_KEYS,
            "max_old_generations": codes::MAX_OLD_GENERATIONS,
            "max_chain_history": codes::MAX_CHAIN_HISTORY,
            "max_alarms": codes::MAX_ALARMS,
        },
        "alarm_codes": AlarmCode::ALL.iter().map(|a| a.code()).collect::<Vec<_>>(),
        "failure_reasons": FailureReason::ALL.iter().map(|f| f.code()).collect::<Vec<_>>(),
        "error_codes": ErrorCode::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
    })
}

/// Every vector file, deterministically.
fn generate() -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let mut rng = TestRng::new("confer/1 vectors v1");

    // frame.json
    let mut frames = Vec::new();
    let key_frame: Vec<u8> = [
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01],
        vec![0xab; 50],
    ]
    .concat();
    let delta: Vec<u8> = [vec![0x31], vec![0xcd; 40]].concat();
    for (name, stream, codec, kid, ctr, pt) in [
        ("vp8 key frame", 1, Codec::Vp8, 0u64, 0u64, key_frame),
        ("vp8 delta frame", 1, Codec::Vp8, 3, 7, delta),
        (
            "vp8 screen, extended kid and ctr",
            2,
            Codec::Vp8,
            (5 << 4) | 2,
            300,
            [vec![0x00; 10], vec![0x11; 20]].concat(),
        ),
        ("opus audio", 0, Codec::Opus, 1, 1, vec![0x78; 80]),
        (
            "opus audio, large ctr",
            0,
            Codec::Opus,
            (1000 << 4) | 15,
            u64::from(u32::MAX) + 5,
            vec![0x42; 60],
        ),
        (
            "data chat",
            3,
            Codec::Data,
            0,
            0,
            b"Let's take a short break.".to_vec(),
        ),
        ("data empty message", 3, Codec::Data, 16, 9, vec![]),
        (
            "data 254 bytes fills one block",
            3,
            Codec::Data,
            2,
            2,
            vec![0x61; 254],
        ),
        (
            "data 255 bytes needs two blocks",
            3,
            Codec::Data,
            2,
            3,
            vec![0x62; 255],
        ),
    ] {
        frames.push(frame_case(name, &mut rng, stream, codec, kid, ctr, &pt).0);
    }
    for (name, stream) in [("ratchet camera", 1u8), ("ratchet data", 3u8)] {
        let channel: [u8; 16] = rng.bytes();
        let sender: [u8; 16] = rng.bytes();
        let base = Secret32::new(rng.bytes());
        let ctx = FrameCtx::new(SESSION.as_bytes(), channel, sender, stream).unwrap();
        let mut steps = vec![hex(base.expose())];
        let mut k = base.clone();
        for _ in 1..20 {
            k = frame::ratchet(&k, &ctx);
            steps.push(hex(k.expose()));
        }
        frames.push(json!({"name": name, "base_key": hex(base.expose()), "session_id": SESSION,
            "channel_id": hex(&channel), "sender_id": hex(&sender), "stream": stream, "steps": steps}));
    }
    out.insert("frame.json", file(frames));

    // roster.json: a joint chain of three, a caucus chain of two (with away flags in joint).
    let p = people(&mut rng, 4); // 0 mediator, 1 party A, 2 party B, 3 counsel A
    let m_seed = p.seeds[0].0;
    let joint: [u8; 16] = rng.bytes();
    let caucus: [u8; 16] = rng.bytes();
    let m = &p.ids[0];
    let j1 = roster(
        &p,
        joint,
        Kind::Joint,
        1,
        [0; 32],
        vec![member(&p, 0, 0, 0, 0), member(&p, 1, 2, 1, 0)],
    )
    .sign(m)
    .unwrap();
    let j2 = roster(
        &p,
        joint,
        Kind::Joint,
        2,
        j1.hash,
        vec![
            member(&p, 0, 0, 0, 0),
            member(&p, 1, 2, 1, 0),
            member(&p, 2, 2, 2, 0),
            member(&p, 3, 3, 1, 0),
        ],
    )
    .sign(m)
    .unwrap();
    let j3 = roster(
        &p,
        joint,
        Kind::Joint,
        3,
        j2.hash,
        vec![
            member(&p, 0, 0, 0, 1),
            member(&p, 1, 2, 1, 1),
            member(&p, 2, 2, 2, 0),
            member(&p, 3, 3, 1, 1),
        ],
    )
    .sign(m)
    .unwrap();
    let c1 = roster(
        &p,
        caucus,
        Kind::Caucus,
        1,
        [0; 32],
        vec![
            member(&p, 0, 0, 0, 0),
            member(&p, 1, 2, 1, 0),
            member(&p, 3, 3, 1, 0),
        ],
    )
    .sign(m)
    .unwrap();
    let c2 = roster(
        &p,
        caucus,
        Kind::Caucus,
        2,
        c1.hash,
        vec![member(&p, 0, 0, 0, 0), member(&p, 1, 2, 1, 0)],
    )
    .sign(m)
    .unwrap();
    // Written at the end: the successor chain below draws from `rng` after everything else.
    let mut rosters = vec![
        roster_json("joint epoch 1: mediator and party A", &m_seed, &j1),
        roster_json(
            "joint epoch 2: party B and counsel A admitted",
            &m_seed,
            &j2,
        ),
        roster_json(
            "joint epoch 3: side A in caucus (flagged away)",
            &m_seed,
            &j3,
        ),
        roster_json("caucus A epoch 1", &m_seed, &c1),
        roster_json("caucus A epoch 2: counsel leaves", &m_seed, &c2),
    ];

    // pairwise.json: open-only vectors (sealing is randomised).
    let mut pw = Vec::new();
    for (name, mode, msg_type, seq, psk, pt) in [
        (
            "sender key, auth",
            "auth",
            MsgType::SenderKey,
            0u64,
            None,
            SenderKeyMsg {
                channel_id: joint,
                epoch: 2,
                stream: 3,
                generation: 1,
                base_key: Secret32::new([0x5a; 32]),
            }
            .encode(),
        ),
        (
            "consent, auth_psk",
            "auth_psk",
            MsgType::Consent,
            0,
            Some(Secret32::new(rng.bytes())),
            b"consent acknowledgment".to_vec(),
        ),
        (
            "display name, auth, seq 7",
            "auth",
            MsgType::Name,
            7,
            None,
            b"name and salt".to_vec(),
        ),
    ] {
        let pair = Pair {
            session_id: SESSION.as_bytes(),
            from: p.pids[1],
            to: p.pids[0],
        };
        let sealed = pairwise::seal(
            &mut rng,
            &p.ids[1],
            &p.ids[0].ek_pub(),
            pair,
            msg_type,
            seq,
            &pt,
            psk.as_ref(),
        )
        .unwrap();
        pw.push(json!({"name": name, "mode": mode, "msg_type": msg_type as u8, "seq": u64s(seq),
            "recipient_sk": hex(&p.seeds[0].1), "sender_pk": hex(&p.ids[1].ek_pub()),
            "enc": hex(&sealed.enc), "info": hex(&pair.info()), "aad": hex(&pair.aad(msg_type, seq)),
            "ciphertext": hex(&sealed.ct), "psk": psk.as_ref().map(|s| hex(s.expose())).unwrap_or_default(),
            "psk_id": if psk.is_some() { hex(PSK_ID) } else { String::new() }, "plaintext": hex(&pt)}));
    }
    out.insert("pairwise.json", file(pw));

    // code.json
    let mut codes = Vec::new();
    for (name, n) in [("two members", 2usize), ("four members", 4)] {
        let members: Vec<([u8; 16], [u8; 32])> =
            (0..n).map(|i| (p.pids[i], p.ids[i].ik_pub())).collect();
        let (digest, code) = session_code(SESSION.as_bytes(), &members);
        codes.push(json!({"name": name, "session_id": SESSION,
            "members": members.iter().map(|(id, ik)| json!({"participant_id": hex(id), "ik_pub": hex(ik)})).collect::<Vec<_>>(),
            "digest": hex(&digest), "code": code}));
    }
    out.insert("code.json", file(codes));

    // replay.json: the window's decisions, committing every accepted ctr.
    let mut replays = Vec::new();
    for (name, ctrs) in [
        ("in order, then a replay", vec![0u64, 1, 2, 2, 3]),
        (
            "reordering inside the window",
            vec![100, 90, 99, 100, 27, 28, 101, 200, 73, 72],
        ),
        (
            "jumps",
            vec![
                5,
                5 + 65_536,
                5 + 65_536 + 65_537,
                5 + 65_536 + 65_536,
                70_000,
            ],
        ),
    ] {
        let mut w = ReplayWindow::default();
        let steps: Vec<Value> = ctrs
            .iter()
            .map(|&c| {
                let ok = w.check(c);
                if ok {
                    w.commit(c);
                }
                json!({"ctr": u64s(c), "accept": ok})
            })
            .collect();
        replays.push(json!({"name": name, "window": frame::WINDOW, "steps": steps}));
    }
    out.insert("replay.json", file(replays));

    // negative.json
    let mut neg = Vec::new();
    let (good, f) = frame_case(
        "base",
        &mut rng,
        1,
        Codec::Vp8,
        4,
        4,
        &[vec![0x00; 10], vec![0x33; 30]].concat(),
    );
    let with = |name: &str, frame: Vec<u8>, tweak: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        v["name"] = json!(name);
        v["frame"] = json!(hex(&frame));
        v["shape"] = json!("frame");
        v["expect"] = json!("reject");
        tweak(&mut v);
        v
    };
    let mut t = f.clone();
    let hlen = usize::from(*f.last().unwrap());
    let tag_at = f.len() - 1 - hlen - 1; // the last byte of the tag, just before the header
    t[tag_at] ^= 0x80;
    neg.push(with("tampered tag", t, &|_| {}));
    let mut t = f.clone();
    t[3] ^= 0x01;
    neg.push(with("flipped clear prefix byte", t, &|_| {}));
    let other_channel: [u8; 16] = rng.bytes();
    neg.push(with("wrong channel in ctx", f.clone(), &|v| {
        v["channel_id"] = json!(hex(&other_channel))
    }));
    let mut t = f.clone();
    *t.last_mut().unwrap() = 18;
    neg.push(with("header length over 17", t, &|_| {}));
    let mut t = f;
    *t.last_mut().unwrap() = 0;
    neg.push(with("header length 0", t, &|_| {}));
    neg.push(json!({"name": "non-minimal header (kid 5 extended)", "shape": "header", "header": "8005", "expect": "reject"}));
    neg.push(json!({"name": "non-minimal header (leading zero ctr byte)", "shape": "header", "header": "090010", "expect": "reject"}));
    let j2_rolled = roster(
        &p,
        joint,
        Kind::Joint,
        2,
        j1.hash,
        vec![member(&p, 0, 0, 0, 0), member(&p, 2, 2, 2, 0)],
    )
    .sign(m)
    .unwrap();
    let mut v = roster_json("rolled-back epoch (2 after 3)", &m_seed, &j2_rolled);
    v["shape"] = json!("roster");
    v["expect"] = json!("reject");
    v["error"] = json!("rollback");
    neg.push(v);
    let j4_fork = roster(
        &p,
        joint,
        Kind::Joint,
        4,
        j2.hash,
        vec![member(&p, 0, 0, 0, 0), member(&p, 2, 2, 2, 0)],
    )
    .sign(m)
    .unwrap();
    let mut v = roster_json(
        "broken prev_hash (epoch 4 links to epoch 2)",
        &m_seed,
        &j4_fork,
    );
    v["shape"] = json!("roster");
    v["expect"] = json!("reject");
    v["error"] = json!("fork");
    neg.push(v);
    let j4 = roster(
        &p,
        joint,
        Kind::Joint,
        4,
        j3.hash,
        vec![member(&p, 0, 0, 0, 0), member(&p, 2, 2, 2, 0)],
    );
    let mut bad_sig = j4.clone().sign(m).unwrap();
    bad_sig.signature[10] ^= 1;
    let mut v = roster_json("bad signature", &m_seed, &bad_sig);
    v["shape"] = json!("roster");
    v["expect"] = json!("reject");
    v["error"] = json!("bad_signature");
    v["hash"] = json!(hex(&confer_e2ee::roster::roster_hash(
        &bad_sig.encoded,
        &bad_sig.signature
    )));
    neg.push(v);
    let mut nc = j4.sign(m).unwrap();
    add_l(&mut nc.signature[32..]);
    let mut v = roster_json("non-canonical signature (S + L)", &m_seed, &nc);
    v["shape"] = json!("roster");
    v["expect"] = json!("reject");
    v["error"] = json!("bad_signature");
    v["hash"] = json!(hex(&confer_e2ee::roster::roster_hash(
        &nc.encoded,
        &nc.signature
    )));
    neg.push(v);
    let msg = b"confer/1 announce test".to_vec();
    let mut sig = p.ids[2].sign(&msg);
    add_l(&mut sig[32..]);
    neg.push(json!({"name": "non-canonical Ed25519 signature on a message", "shape": "signature",
        "ik_pub": hex(&p.ids[2].ik_pub()), "message": hex(&msg), "signature": hex(&sig), "expect": "reject"}));
    // An all-zero X25519 output: the sender's public key is the zero point.
    let pair = Pair {
        session_id: SESSION.as_bytes(),
        from: p.pids[1],
        to: p.pids[0],
    };
    let ok = pairwise::seal(
        &mut rng,
        &p.ids[1],
        &p.ids[0].ek_pub(),
        pair,
        MsgType::Name,
        0,
        b"x",
        None,
    )
    .unwrap();
    neg.push(json!({"name": "all-zero X25519 output (sender_pk is the zero point)", "shape": "pairwise", "mode": "auth",
        "msg_type": 4, "seq": "0", "recipient_sk": hex(&p.seeds[0].1), "sender_pk": hex(&[0u8; 32]), "enc": hex(&ok.enc),
        "info": hex(&pair.info()), "aad": hex(&pair.aad(MsgType::Name, 0)), "ciphertext": hex(&ok.ct),
        "psk": "", "psk_id": "", "plaintext": hex(b"x"), "expect": "reject"}));
    neg.push(json!({"name": "pairwise: wrong seq in aad", "shape": "pairwise", "mode": "auth",
        "msg_type": 4, "seq": "1", "recipient_sk": hex(&p.seeds[0].1), "sender_pk": hex(&p.ids[1].ek_pub()), "enc": hex(&ok.enc),
        "info": hex(&pair.info()), "aad": hex(&pair.aad(MsgType::Name, 1)), "ciphertext": hex(&ok.ct),
        "psk": "", "psk_id": "", "plaintext": hex(b"x"), "expect": "reject"}));
    out.insert("negative.json", file(neg));

    // messages.json: announcement, delegation, sender-key message, name commitment encodings.
    let mut msgs = Vec::new();
    let a = p.ids[1].announce(SESSION.as_bytes(), p.pids[1], Role::Party);
    msgs.push(json!({"name": "announcement of party A", "type": "announcement", "ik_seed": hex(&p.seeds[1].0),
        "ek_secret": hex(&p.seeds[1].1), "session_id": SESSION, "participant_id": hex(&p.pids[1]), "role": 2,
        "ik_pub": hex(&a.ik_pub), "ek_pub": hex(&a.ek_pub), "encoded": hex(&a.signed_bytes(SESSION.as_bytes())), "signature": hex(&a.signature)}));
    let d = m.delegate(SESSION.as_bytes(), &p.ids[3].ik_pub(), SCOPE_ROSTERS);
    msgs.push(json!({"name": "delegation to a co-mediator", "type": "delegation", "mediator_seed": hex(&m_seed),
        "session_id": SESSION, "co_ik_pub": hex(&p.ids[3].ik_pub()), "scope": SCOPE_ROSTERS,
        "encoded": hex(&identity::delegation_bytes(SESSION.as_bytes(), &p.ids[3].ik_pub(), SCOPE_ROSTERS)), "signature": hex(&d)}));
    let sk = SenderKeyMsg {
        channel_id: caucus,
        epoch: 2,
        stream: 0,
        generation: 7,
        base_key: Secret32::new(rng.bytes()),
    };
    msgs.push(json!({"name": "sender key for caucus audio", "type": "sender_key", "channel_id": hex(&caucus), "epoch": "2",
        "stream": 0, "generation": "7", "base_key": hex(sk.base_key.expose()), "encoded": hex(&sk.encode())}));
    let salt: [u8; 16] = rng.bytes();
    msgs.push(json!({"name": "name commitment", "type": "name_commit", "salt": hex(&salt), "display_name": "Ana María",
        "name_commit": hex(&name_commit(&salt, "Ana María").unwrap())}));
    out.insert("messages.json", file(msgs));
    out
}

#[test]
fn checked_in_vectors_match_a_fresh_generation() {
    let fresh = generate();
    assert_eq!(generate(), fresh, "the generator is deterministic");
    let write = std::env::var("CONFER_WRITE_VECTORS").is_ok_and(|v| v == "1");
    if write {
        std::fs::create_dir_all(dir()).unwrap();
    }
    for (name, value) in &fresh {
        let path = dir().join(name);
        let text = serde_json::to_string_pretty(value).unwrap() + "\n";
        if write {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} missing; run CONFER_WRITE_VECTORS=1 cargo test -p confer-e2ee --test vectors",
                path.display()
            )
        });
        assert!(
            on_disk == text,
            "{name} differs from a fresh generation; regenerate with CONFER_WRITE_VECTORS=1"
        );
    }
}

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["suite"], "confer/1");
    v["cases"].as_array().unwrap().clone()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {}", v["name"]))
}

fn num(v: &Value, k: &str) -> u64 {
    s(v, k).parse().unwrap()
}

fn ctx_of(c: &Value) -> FrameCtx {
    FrameCtx::new(
        s(c, "session_id").as_bytes(),
        unhex_n(s(c, "channel_id")),
        unhex_n(s(c, "sender_id")),
        c["stream"].as_u64().unwrap() as u8,
    )
    .unwrap()
}

fn member_of(m: &Value) -> Member {
    Member {
        participant_id: unhex_n(s(m, "participant_id")),
        ik_pub: unhex_n(s(m, "ik_pub")),
        ek_pub: unhex_n(s(m, "ek_pub")),
        role: m["role"].as_u64().unwrap() as u8,
        side: m["side"].as_u64().unwrap() as u8,
        flags: m["flags"].as_u64().unwrap() as u8,
        name_commit: unhex_n(s(m, "name_commit")),
    }
}

#[test]
fn every_vector_checks_out_as_a_reader_would_check_it() {
    // frame.json
    for c in load("frame.json") {
        let ctx = ctx_of(&c);
        if let Some(steps) = c["steps"].as_array() {
            let mut k = Secret32::new(unhex_n(s(&c, "base_key")));
            for (i, st) in steps.iter().enumerate() {
                assert_eq!(
                    hex(k.expose()),
                    st.as_str().unwrap(),
                    "{} step {i}",
                    c["name"]
                );
                k = frame::ratchet(&k, &ctx);
            }
            continue;
        }
        let keys = frame::derive(
            &Secret32::new(unhex_n(s(&c, "step_key"))),
            num(&c, "kid"),
            &ctx,
        );
        assert_eq!(hex(keys.key.expose()), s(&c, "key"));
        assert_eq!(hex(&keys.salt), s(&c, "salt"));
        assert_eq!(
            hex(&frame::nonce(&keys.salt, num(&c, "ctr"))),
            s(&c, "nonce")
        );
        assert_eq!(
            hex(&frame::encode_header(num(&c, "kid"), num(&c, "ctr"))),
            s(&c, "header")
        );
        let codec = Codec::from_name(s(&c, "codec")).unwrap();
        let pt = frame::open_with(&keys, codec, &unhex(s(&c, "frame"))).unwrap();
        assert_eq!(hex(&pt), s(&c, "plaintext"), "{}", c["name"]);
    }
    // roster.json: chains per channel in file order.
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    for c in load("roster.json") {
        let seed: [u8; 32] = unhex_n(s(&c, "mediator_seed"));
        let m = Identity::from_secrets(&seed, &[1; 32]).unwrap();
        let r = Roster {
            session_id: s(&c, "session_id").as_bytes().to_vec(),
            channel_id: unhex_n(s(&c, "channel_id")),
            kind: Kind::from_code(c["kind"].as_u64().unwrap() as u8).unwrap(),
            epoch: num(&c, "epoch"),
            prev_hash: unhex_n(s(&c, "prev_hash")),
            members: c["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(member_of)
                .collect(),
        };
        assert_eq!(hex(&r.encode().unwrap()), s(&c, "encoded"), "{}", c["name"]);
        let sr = SignedRoster::from_parts(&unhex(s(&c, "encoded")), unhex_n(s(&c, "signature")))
            .unwrap();
        assert_eq!(hex(&sr.hash), s(&c, "hash"));
        let chain = chains
            .entry(s(&c, "channel_id").to_owned())
            .or_insert_with(|| Chain::new(s(&c, "session_id").as_bytes(), m.ik_pub()));
        chain
            .accept(sr)
            .unwrap_or_else(|e| panic!("{}: {e}", c["name"]));
    }
    // pairwise.json
    for c in load("pairwise.json") {
        let psk = unhex(s(&c, "psk"));
        let psk_id = unhex(s(&c, "psk_id"));
        let arg = (s(&c, "mode") == "auth_psk").then_some((psk.as_slice(), psk_id.as_slice()));
        let pt = pairwise::open_raw(
            &unhex_n(s(&c, "recipient_sk")),
            &unhex_n(s(&c, "sender_pk")),
            &unhex_n(s(&c, "enc")),
            &unhex(s(&c, "info")),
            &unhex(s(&c, "aad")),
            &unhex(s(&c, "ciphertext")),
            arg,
        )
        .unwrap();
        assert_eq!(hex(&pt), s(&c, "plaintext"), "{}", c["name"]);
    }
    // code.json
    for c in load("code.json") {
        let members: Vec<([u8; 16], [u8; 32])> = c["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (unhex_n(s(m, "participant_id")), unhex_n(s(m, "ik_pub"))))
            .collect();
        let (d, code) = session_code(s(&c, "session_id").as_bytes(), &members);
        assert_eq!(
            (hex(&d), code.as_str()),
            (s(&c, "digest").to_owned(), s(&c, "code"))
        );
    }
    // replay.json
    for c in load("replay.json") {
        assert_eq!(c["window"], 128);
        let mut w = ReplayWindow::default();
        for st in c["steps"].as_array().unwrap() {
            let ctr = num(st, "ctr");
            let ok = w.check(ctr);
            assert_eq!(
                ok,
                st["accept"].as_bool().unwrap(),
                "{} ctr {ctr}",
                c["name"]
            );
            if ok {
                w.commit(ctr);
            }
        }
    }
    // negative.json: every case is rejected.
    for c in load("negative.json") {
        assert_eq!(c["expect"], "reject");
        let rejected = match s(&c, "shape") {
            "frame" => {
                let keys = frame::derive(
                    &Secret32::new(unhex_n(s(&c, "step_key"))),
                    num(&c, "kid"),
                    &ctx_of(&c),
                );
                frame::open_with(
                    &keys,
                    Codec::from_name(s(&c, "codec")).unwrap(),
                    &unhex(s(&c, "frame")),
                )
                .is_err()
            }
            "header" => frame::decode_header(&unhex(s(&c, "header"))).is_err(),
            "signature" => identity::verify(
                &unhex_n(s(&c, "ik_pub")),
                &unhex(s(&c, "message")),
                &unhex_n(s(&c, "signature")),
            )
            .is_err(),
            "pairwise" => pairwise::open_raw(
                &unhex_n(s(&c, "recipient_sk")),
                &unhex_n(s(&c, "sender_pk")),
                &unhex_n(s(&c, "enc")),
                &unhex(s(&c, "info")),
                &unhex(s(&c, "aad")),
                &unhex(s(&c, "ciphertext")),
                None,
            )
            .is_err(),
            "roster" => {
                let chain = chains.get_mut(s(&c, "channel_id")).unwrap();
                let mut probe = chain.clone();
                match SignedRoster::from_parts(
                    &unhex(s(&c, "encoded")),
                    unhex_n(s(&c, "signature")),
                ) {
                    Err(_) => true,
                    Ok(sr) => probe.accept(sr).is_err(),
                }
            }
            other => panic!("unknown kind {other}"),
        };
        assert!(rejected, "{} was accepted", c["name"]);
    }
    // messages.json
    for c in load("messages.json") {
        match s(&c, "type") {
            "announcement" => {
                let id = Identity::from_secrets(
                    &unhex_n(s(&c, "ik_seed")),
                    &unhex_n(s(&c, "ek_secret")),
                )
                .unwrap();
                let a = id.announce(
                    s(&c, "session_id").as_bytes(),
                    unhex_n(s(&c, "participant_id")),
                    Role::Party,
                );
                assert_eq!(
                    hex(&a.signed_bytes(s(&c, "session_id").as_bytes())),
                    s(&c, "encoded")
                );
                assert_eq!(hex(&a.signature), s(&c, "signature"));
                assert_eq!(hex(&a.ek_pub), s(&c, "ek_pub"));
                assert!(a.verify(s(&c, "session_id").as_bytes()).is_ok());
            }
            "delegation" => {
                let m = Identity::from_secrets(&unhex_n(s(&c, "mediator_seed")), &[1; 32]).unwrap();
                let mut chain = Chain::new(s(&c, "session_id").as_bytes(), m.ik_pub());
                chain
                    .add_delegate(
                        unhex_n(s(&c, "co_ik_pub")),
                        c["scope"].as_u64().unwrap() as u8,
                        &unhex_n(s(&c, "signature")),
                    )
                    .unwrap();
                assert_eq!(
                    hex(&identity::delegation_bytes(
                        s(&c, "session_id").as_bytes(),
                        &unhex_n(s(&c, "co_ik_pub")),
                        SCOPE_ROSTERS
                    )),
                    s(&c, "encoded")
                );
            }
            "sender_key" => {
                let m = SenderKeyMsg::decode(&unhex(s(&c, "encoded"))).unwrap();
                assert_eq!(
                    (
                        hex(&m.channel_id),
                        m.epoch,
                        m.generation,
                        hex(m.base_key.expose())
                    ),
                    (
                        s(&c, "channel_id").to_owned(),
                        num(&c, "epoch"),
                        num(&c, "generation"),
                        s(&c, "base_key").to_owned()
                    )
                );
            }
            "name_commit" => assert_eq!(
                hex(&name_commit(&unhex_n(s(&c, "salt")), s(&c, "display_name")).unwrap()),
                s(&c, "name_commit")
            ),
            other => panic!("unknown message type {other}"),
        }
    }
}
