#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The shared confer/1 test vectors (tests/vectors/v1/*.json at the workspace root).
//!
//! `generate()` is deterministic. The test fails when the checked-in files differ from a fresh
//! generation; `CONFER_WRITE_VECTORS=1 cargo test -p confer-e2ee --test vectors` rewrites them.
//! A second test reads the files back as an independent implementation would and checks every
//! case, so the TypeScript client can run the same checks. It reads the directory named by
//! `CONFER_VECTORS_DIR` (default: the checked-in `tests/vectors/v1`), so any vector set can be
//! checked, and fails on a file or a case it does not recognise. (A run that writes may let the
//! reader see a file being written; run it again without `CONFER_WRITE_VECTORS`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestRng, add_l, hex, unhex, unhex_n};
use confer_e2ee::OpenError;
use confer_e2ee::code::session_code;
use confer_e2ee::codes::{self, AlarmCode, FailureReason};
use confer_e2ee::doc::{CHUNK_BYTES, DocCipher, DocKeyMsg};
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
use confer_proto::envelope::{Bytes, Envelope};
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
const FILES: [&str; 9] = [
    "code.json",
    "constants.json",
    "doc.json",
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
    // One group per module (a single `json!` this large exceeds the macro recursion limit).
    let groups = [
        json!({
            "suite": frame::SUITE,
            "max_step": frame::MAX_STEP,
            "window": u64s(frame::WINDOW),
            "max_ctr_jump": u64s(frame::MAX_CTR_JUMP),
            "max_generation": u64s(frame::MAX_GENERATION),
            "stream_audio": frame::STREAM_AUDIO,
            "stream_camera": frame::STREAM_CAMERA,
            "stream_screen": frame::STREAM_SCREEN,
            "stream_data": frame::STREAM_DATA,
        }),
        json!({
            "scope_rosters": SCOPE_ROSTERS,
            "max_name_bytes": identity::MAX_NAME_BYTES,
        }),
        json!({
            "chunk_bytes": confer_e2ee::doc::CHUNK_BYTES,
            "chunk_tag": confer_e2ee::doc::CHUNK_TAG,
            "max_doc_name_bytes": confer_e2ee::doc::MAX_DOC_NAME_BYTES,
            "max_doc_type_bytes": confer_e2ee::doc::MAX_DOC_TYPE_BYTES,
        }),
        json!({
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
        }),
        json!({
            "attest_no_recording": messages::ATTEST_NO_RECORDING,
            "attest_nobody_else": messages::ATTEST_NOBODY_ELSE,
            "attest_all": ATTEST_ALL,
        }),
        json!({
            "msg_type_sender_key": MsgType::SenderKey as u8,
            "msg_type_sender_key_ack": MsgType::SenderKeyAck as u8,
            "msg_type_consent": MsgType::Consent as u8,
            "msg_type_name": MsgType::Name as u8,
            "msg_type_doc_key": MsgType::DocKey as u8,
            "msg_type_doc_ack": MsgType::DocAck as u8,
            "psk_id": hex(PSK_ID),
        }),
        json!({
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
        }),
    ];
    let mut all = serde_json::Map::new();
    for g in groups {
        for (k, v) in g.as_object().unwrap() {
            assert!(all.insert(k.clone(), v.clone()).is_none(), "{k} twice");
        }
    }
    json!({
        "suite": "confer/1",
        "constants": all,
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

    // doc.json: documents (§8.7): a file sealed in chunks, and its type 5 key message.
    // (A random stream of its own, so the other files' bytes do not move.)
    let mut rng_doc = TestRng::new("confer/1 vectors v1 doc");
    let mut docs = Vec::new();
    for (name, len) in [
        ("empty file", 0usize),
        ("short text", 27),
        ("two chunks, the second short", CHUNK_BYTES + 3),
    ] {
        let file: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let msg = DocKeyMsg {
            channel_id: rng_doc.bytes(),
            doc_id: rng_doc.bytes(),
            file_key: Secret32::new(rng_doc.bytes()),
            size: len as u64,
            sha256: <sha2::Sha256 as sha2::Digest>::digest(&file).into(),
            name: "Offer — draft 2.txt".into(),
            media_type: "text/plain".into(),
        };
        let chunks = DocCipher::new(&msg.file_key, msg.doc_id).seal_all(&file);
        docs.push(json!({"name": name, "channel_id": hex(&msg.channel_id), "doc_id": hex(&msg.doc_id),
            "file_key": hex(msg.file_key.expose()), "size": msg.size.to_string(), "sha256": hex(&msg.sha256),
            "doc_name": msg.name, "media_type": msg.media_type, "encoded": hex(&msg.encode()),
            "plaintext": hex(&file), "chunks": chunks.iter().map(|c| hex(c)).collect::<Vec<_>>()}));
    }
    // An acknowledgment of a version (type 6), signed by a fixed identity.
    let ik_seed: [u8; 32] = rng_doc.bytes();
    let id = Identity::from_secrets(&ik_seed, &[1; 32]).unwrap();
    let pid: [u8; 16] = rng_doc.bytes();
    let sha256: [u8; 32] = rng_doc.bytes();
    let signed = confer_e2ee::doc::doc_ack_signed_bytes(SESSION.as_bytes(), &pid, &sha256);
    let ack = confer_e2ee::doc::DocAck {
        sha256,
        signature: id.sign(&signed),
    };
    docs.push(json!({"name": "acknowledgment of a version", "ik_seed": hex(&ik_seed), "ik_pub": hex(&id.ik_pub()),
        "session_id": SESSION, "participant_id": hex(&pid), "sha256": hex(&sha256), "encoded": hex(&signed),
        "signature": hex(&ack.signature), "plaintext": hex(&ack.encode())}));
    out.insert("doc.json", file(docs));

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
    // The next two open under the held key with `open_with` alone: only the receive checks
    // refuse them (the codec must fit the stream). The third names a key not held.
    let held = Secret32::new(unhex_n(s(&good, "step_key")));
    let keys = frame::derive(&held, 4, &ctx_of(&good));
    let data = frame::seal_with(&keys, 4, 4, Codec::Data, b"chat on the camera stream").unwrap();
    neg.push(with("data frame on the camera stream", data, &|v| {
        v["codec"] = json!("data");
        v["plaintext"] = json!(hex(b"chat on the camera stream"));
    }));
    let opus = frame::seal_with(&keys, 4, 4, Codec::Opus, &[0x78; 40]).unwrap();
    neg.push(with("opus frame on the camera stream", opus, &|v| {
        v["codec"] = json!("opus");
        v["plaintext"] = json!(hex(&[0x78; 40]));
    }));
    let other_gen = frame::kid(1, 4);
    let unheld = frame::seal_with(
        &frame::derive(&held, other_gen, &ctx_of(&good)),
        other_gen,
        4,
        Codec::Vp8,
        &[vec![0x00; 10], vec![0x33; 30]].concat(),
    )
    .unwrap();
    neg.push(with(
        "kid names a generation the receiver does not hold",
        unheld,
        &|_| {},
    ));
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
    neg.push(negative_roster(
        "rolled-back epoch (2 after 3)",
        &m_seed,
        &j2_rolled,
        "rollback",
    ));
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
    neg.push(negative_roster(
        "broken prev_hash (epoch 4 links to epoch 2)",
        &m_seed,
        &j4_fork,
        "fork",
    ));
    // Epoch 4 of the joint chain, linked to its head: each case below spoils one thing.
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
    neg.push(negative_roster(
        "bad signature",
        &m_seed,
        &bad_sig,
        "bad_signature",
    ));
    let mut nc = j4.clone().sign(m).unwrap();
    add_l(&mut nc.signature[32..]);
    neg.push(negative_roster(
        "non-canonical signature (S + L)",
        &m_seed,
        &nc,
        "bad_signature",
    ));
    neg.push(negative_roster(
        "signed by party B, not the mediator",
        &m_seed,
        &j4.clone().sign(&p.ids[2]).unwrap(),
        "bad_signature",
    ));
    let j4_signed = j4.clone().sign(m).unwrap();
    let j5 = roster(
        &p,
        joint,
        Kind::Joint,
        5,
        j4_signed.hash,
        vec![member(&p, 0, 0, 0, 0), member(&p, 2, 2, 2, 0)],
    )
    .sign(m)
    .unwrap();
    neg.push(negative_roster(
        "gap (epoch 5 after 3, epoch 4 withheld)",
        &m_seed,
        &j5,
        "gap",
    ));
    let as_co = roster(
        &p,
        joint,
        Kind::Joint,
        4,
        j3.hash,
        vec![member(&p, 0, 1, 0, 0), member(&p, 2, 2, 2, 0)],
    )
    .sign(m)
    .unwrap();
    neg.push(negative_roster(
        "signer not a member (mediator listed with role 1)",
        &m_seed,
        &as_co,
        "signer_not_member",
    ));
    let without_m = roster(
        &p,
        joint,
        Kind::Joint,
        4,
        j3.hash,
        vec![member(&p, 2, 2, 2, 0), member(&p, 3, 3, 1, 0)],
    )
    .sign(m)
    .unwrap();
    neg.push(negative_roster(
        "signer not a member (mediator left out)",
        &m_seed,
        &without_m,
        "signer_not_member",
    ));
    // Malformed encodings, validly signed by the mediator: members swapped, a byte appended.
    let record = 2 + 16 + 32 + 32 + 3 + 32;
    let mut unsorted = j4.encode().unwrap();
    let at = unsorted.len() - 2 * record;
    unsorted[at..].rotate_left(record);
    let mut swapped = j4.clone();
    swapped.members.swap(0, 1);
    neg.push(negative_roster(
        "malformed: members not in ascending order",
        &m_seed,
        &sign_raw(swapped, unsorted, m),
        "malformed",
    ));
    let mut trailing = j4.encode().unwrap();
    trailing.push(0);
    neg.push(negative_roster(
        "malformed: a byte after the last member",
        &m_seed,
        &sign_raw(j4.clone(), trailing, m),
        "malformed",
    ));
    let mut other_session = j4.clone();
    other_session.session_id = b"mediation-43".to_vec();
    let mut v = negative_roster(
        "wrong channel: a roster of another session",
        &m_seed,
        &other_session.sign(m).unwrap(),
        "wrong_channel",
    );
    // Judged against the joint chain of this session, not a chain of its own session.
    v["chain"] = json!({"session_id": SESSION, "channel_id": hex(&joint)});
    neg.push(v);
    let mut other_kind = j4;
    other_kind.kind = Kind::Caucus;
    neg.push(negative_roster(
        "wrong channel: the joint channel_id with kind caucus",
        &m_seed,
        &other_kind.sign(m).unwrap(),
        "wrong_channel",
    ));
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

    // messages.json: announcement, delegation, sender-key message, name commitment encodings.
    let mut msgs = Vec::new();
    let a = p.ids[1].announce(SESSION.as_bytes(), p.pids[1], Role::Party);
    msgs.push(json!({"name": "announcement of party A", "type": "announcement", "ik_seed": hex(&p.seeds[1].0),
        "ek_secret": hex(&p.seeds[1].1), "session_id": SESSION, "participant_id": hex(&p.pids[1]), "role": 2,
        "ik_pub": hex(&a.ik_pub), "ek_pub": hex(&a.ek_pub), "encoded": hex(&a.signed_bytes(SESSION.as_bytes())), "signature": hex(&a.signature)}));
    for (name, i, role) in [
        ("announcement of the mediator", 0, Role::Mediator),
        ("announcement of counsel A", 3, Role::Counsel),
    ] {
        let a = p.ids[i].announce(SESSION.as_bytes(), p.pids[i], role);
        msgs.push(json!({"name": name, "type": "announcement", "ik_seed": hex(&p.seeds[i].0),
            "ek_secret": hex(&p.seeds[i].1), "session_id": SESSION, "participant_id": hex(&p.pids[i]), "role": role_code(role),
            "ik_pub": hex(&a.ik_pub), "ek_pub": hex(&a.ek_pub), "encoded": hex(&a.signed_bytes(SESSION.as_bytes())), "signature": hex(&a.signature)}));
    }
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

    // Additions drawn from `rng` after everything above, so the earlier cases keep their bytes.

    // roster.json: a successor chain. Caucus A empties and fills again: its new chain starts
    // at epoch 1 and links to the last roster of the first caucus A chain.
    let caucus2: [u8; 16] = rng.bytes();
    let s1 = roster(
        &p,
        caucus2,
        Kind::Caucus,
        1,
        c2.hash,
        vec![member(&p, 0, 0, 0, 0), member(&p, 1, 2, 1, 0)],
    )
    .sign(m)
    .unwrap();
    let s2 = roster(
        &p,
        caucus2,
        Kind::Caucus,
        2,
        s1.hash,
        vec![
            member(&p, 0, 0, 0, 0),
            member(&p, 1, 2, 1, 0),
            member(&p, 3, 3, 1, 0),
        ],
    )
    .sign(m)
    .unwrap();
    let mut v = roster_json(
        "caucus A, second chain, epoch 1: links to the first chain's last roster",
        &m_seed,
        &s1,
    );
    v["links_to"] = json!(hex(&caucus));
    rosters.push(v);
    rosters.push(roster_json(
        "caucus A, second chain, epoch 2: counsel joins",
        &m_seed,
        &s2,
    ));

    // negative.json: a pairwise message opened in a mode or under a secret it was not sealed in.
    let invite = Secret32::new(rng.bytes());
    let other_invite = Secret32::new(rng.bytes());
    let sealed = pairwise::seal(
        &mut rng,
        &p.ids[1],
        &p.ids[0].ek_pub(),
        pair,
        MsgType::Consent,
        0,
        b"consent",
        Some(&invite),
    )
    .unwrap();
    for (name, mode, psk) in [
        (
            "pairwise: auth_psk message opened in mode auth",
            "auth",
            None,
        ),
        (
            "pairwise: auth_psk message opened under another invite secret",
            "auth_psk",
            Some(&other_invite),
        ),
    ] {
        neg.push(json!({"name": name, "shape": "pairwise", "mode": mode,
            "msg_type": 3, "seq": "0", "recipient_sk": hex(&p.seeds[0].1), "sender_pk": hex(&p.ids[1].ek_pub()), "enc": hex(&sealed.enc),
            "info": hex(&pair.info()), "aad": hex(&pair.aad(MsgType::Consent, 0)), "ciphertext": hex(&sealed.ct),
            "psk": psk.map(|s| hex(s.expose())).unwrap_or_default(),
            "psk_id": if psk.is_some() { hex(PSK_ID) } else { String::new() }, "plaintext": hex(b"consent"), "expect": "reject"}));
    }

    // messages.json: consent, sender-key acknowledgment, display name, psk hint.
    let agreement_hash: [u8; 32] = rng.bytes();
    let signed = consent_signed_bytes(SESSION.as_bytes(), &p.pids[1], &agreement_hash, ATTEST_ALL);
    let consent = ConsentAck {
        agreement_hash,
        attestations: ATTEST_ALL,
        signature: p.ids[1].sign(&signed),
    };
    msgs.push(
        json!({"name": "consent of party A", "type": "consent", "ik_seed": hex(&p.seeds[1].0),
        "ik_pub": hex(&p.ids[1].ik_pub()), "session_id": SESSION, "participant_id": hex(&p.pids[1]),
        "agreement_hash": hex(&agreement_hash), "attestations": ATTEST_ALL, "encoded": hex(&signed),
        "signature": hex(&consent.signature), "plaintext": hex(&consent.encode())}),
    );
    let ack = SenderKeyAck {
        channel_id: joint,
        epoch: 3,
        stream: 1,
        generation: (1 << 53) + 1,
    };
    msgs.push(json!({"name": "sender-key ack for joint camera, generation 2^53 + 1", "type": "sender_key_ack",
        "channel_id": hex(&ack.channel_id), "epoch": u64s(ack.epoch), "stream": ack.stream,
        "generation": u64s(ack.generation), "encoded": hex(&ack.encode())}));
    let name = NameMsg {
        salt: rng.bytes(),
        name: "Zoë Łukasiewicz-Ørsted 李明".to_owned(),
    };
    msgs.push(json!({"name": "display name, non-ASCII", "type": "name", "salt": hex(&name.salt),
        "display_name": name.name, "encoded": hex(&name.encode()), "name_commit": hex(&name.commit())}));
    let psk = Secret32::new(rng.bytes());
    msgs.push(
        json!({"name": "psk hint of an invite secret", "type": "psk_hint", "psk": hex(psk.expose()),
        "hint": hex(&psk_hint(&psk))}),
    );

    for (name, env) in sample_envelopes(&mut rng) {
        msgs.push(
            json!({"name": name, "type": "envelope", "envelope": envelope_fields(&env),
            "data": env.to_data()}),
        );
    }

    out.insert("roster.json", file(rosters));
    out.insert("negative.json", file(neg));
    out.insert("messages.json", file(msgs));
    out.insert("constants.json", constants());
    out
}

#[test]
fn checked_in_vectors_match_a_fresh_generation() {
    let fresh = generate();
    assert_eq!(generate(), fresh, "the generator is deterministic");
    assert_eq!(fresh.keys().copied().collect::<Vec<_>>(), FILES);
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

/// Every top-level `pub const` of the crate is in `constants.json`, under its lowercase name
/// (with `_ms` for a Duration), so a new constant cannot be left out of the shared list.
#[test]
fn constants_json_lists_every_public_constant() {
    let c = constants();
    let listed = c["constants"].as_object().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = 0;
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Some(rest) = line.strip_prefix("pub const ") else {
                continue;
            };
            let (name, ty) = rest.split_once(':').unwrap();
            let key = if ty.trim_start().starts_with("Duration") {
                format!("{}_ms", name.to_lowercase())
            } else {
                name.to_lowercase()
            };
            assert!(
                listed.contains_key(&key),
                "constants.json lacks {key} ({})",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 30, "only {seen} constants found");
}

fn load(dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(v["suite"], "confer/1", "{name}");
    v
}

/// Judges every case of a case file; fails unless the judge recognised and judged each one.
fn judge_cases(dir: &Path, name: &str, mut judge: impl FnMut(&Value) -> bool) {
    let v = load(dir, name);
    assert_eq!(
        v.as_object().unwrap().len(),
        2,
        "{name}: a case file has `suite` and `cases` only"
    );
    let cases = v["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no cases"));
    let mut names = BTreeSet::new();
    let mut unjudged = Vec::new();
    let mut judged = 0;
    for c in cases {
        let n = s(c, "name");
        assert!(names.insert(n), "{name}: two cases named {n}");
        if judge(c) {
            judged += 1;
        } else {
            unjudged.push(n);
        }
    }
    assert_eq!(
        judged,
        cases.len(),
        "{name}: cases not recognised: {unjudged:?}"
    );
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {}", v["name"]))
}

/// A u64: a decimal string without leading zeros (§14).
fn num(v: &Value, k: &str) -> u64 {
    let t = s(v, k);
    let n: u64 = t
        .parse()
        .unwrap_or_else(|_| panic!("{k} of {} is not a u64", v["name"]));
    assert_eq!(n.to_string(), t, "{k} of {}: not canonical", v["name"]);
    n
}

/// A u8: a JSON number.
fn byte(v: &Value, k: &str) -> u8 {
    v[k].as_u64()
        .and_then(|n| u8::try_from(n).ok())
        .unwrap_or_else(|| panic!("{k} of {} is not a u8", v["name"]))
}

fn ctx_of(c: &Value) -> FrameCtx {
    FrameCtx::new(
        s(c, "session_id").as_bytes(),
        unhex_n(s(c, "channel_id")),
        unhex_n(s(c, "sender_id")),
        byte(c, "stream"),
    )
    .unwrap()
}

fn member_of(m: &Value) -> Member {
    Member {
        participant_id: unhex_n(s(m, "participant_id")),
        ik_pub: unhex_n(s(m, "ik_pub")),
        ek_pub: unhex_n(s(m, "ek_pub")),
        role: byte(m, "role"),
        side: byte(m, "side"),
        flags: byte(m, "flags"),
        name_commit: unhex_n(s(m, "name_commit")),
    }
}

/// The codec a receiver expects on a stream (§8.2): 0 Opus, 1 and 2 VP8, 3 data.
fn codec_of_stream(stream: u8) -> Option<Codec> {
    match stream {
        frame::STREAM_AUDIO => Some(Codec::Opus),
        frame::STREAM_CAMERA | frame::STREAM_SCREEN => Some(Codec::Vp8),
        frame::STREAM_DATA => Some(Codec::Data),
        _ => None,
    }
}

/// Receives a frame as a receiver does (§9) that holds one key: the case's step key for its
/// `kid`, in its ctx. The codec must fit the stream; the trailer and header must parse; the
/// header's KID must name the key held (generation and step: no other key is ever tried); the
/// counter must pass the (fresh) replay window; then the frame must open.
fn receive_frame(c: &Value) -> Result<Vec<u8>, OpenError> {
    let ctx = ctx_of(c);
    let codec =
        Codec::from_name(s(c, "codec")).unwrap_or_else(|| panic!("unknown codec in {}", c["name"]));
    if codec_of_stream(ctx.stream) != Some(codec) {
        return Err(OpenError);
    }
    let f = unhex(s(c, "frame"));
    let (&hlen, rest) = f.split_last().ok_or(OpenError)?;
    let hlen = usize::from(hlen);
    if hlen == 0 || hlen > 17 || hlen > rest.len() {
        return Err(OpenError);
    }
    let (kid, ctr) = frame::decode_header(&rest[rest.len() - hlen..])?;
    if kid != num(c, "kid") || !ReplayWindow::default().check(ctr) {
        return Err(OpenError);
    }
    let keys = frame::derive(&Secret32::new(unhex_n(s(c, "step_key"))), kid, &ctx);
    frame::open_with(&keys, codec, &f)
}

/// A `frame.json` frame case: the derivations, then a receive that yields the plaintext.
fn judge_frame(c: &Value) -> bool {
    if c.get("frame").is_none() {
        return false;
    }
    let (kid, ctr) = (num(c, "kid"), num(c, "ctr"));
    let keys = frame::derive(&Secret32::new(unhex_n(s(c, "step_key"))), kid, &ctx_of(c));
    assert_eq!(hex(keys.key.expose()), s(c, "key"), "{}", c["name"]);
    assert_eq!(hex(&keys.salt), s(c, "salt"), "{}", c["name"]);
    assert_eq!(hex(&frame::nonce(&keys.salt, ctr)), s(c, "nonce"));
    let header = frame::encode_header(kid, ctr);
    assert_eq!(hex(&header), s(c, "header"), "{}", c["name"]);
    let trailer = [header.clone(), vec![header.len() as u8]].concat();
    assert!(unhex(s(c, "frame")).ends_with(&trailer), "{}", c["name"]);
    let pt = receive_frame(c).unwrap_or_else(|_| panic!("{} does not open", c["name"]));
    assert_eq!(hex(&pt), s(c, "plaintext"), "{}", c["name"]);
    true
}

/// A `frame.json` ratchet case: `steps[i] = step_key(i)` for i = 0..19.
fn judge_ratchet(c: &Value) -> bool {
    let ctx = ctx_of(c);
    let steps = c["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 20, "{}", c["name"]);
    let mut k = Secret32::new(unhex_n(s(c, "base_key")));
    for (i, st) in steps.iter().enumerate() {
        assert_eq!(
            hex(k.expose()),
            st.as_str().unwrap(),
            "{} step {i}",
            c["name"]
        );
        k = frame::ratchet(&k, &ctx);
    }
    true
}

/// Chains are keyed by (session_id, channel_id).
fn chain_key(c: &Value) -> (String, String) {
    (s(c, "session_id").to_owned(), s(c, "channel_id").to_owned())
}

/// A `roster.json` case: its fields encode to `encoded`, which decodes back to them, and it
/// extends the chain of its (session_id, channel_id), in file order. A case with `links_to`
/// starts a successor chain: epoch 1, linked to the head of the chain `links_to` names (same
/// session and kind); it is accepted as a fresh chain.
fn judge_roster(c: &Value, chains: &mut BTreeMap<(String, String), Chain>) -> bool {
    let Some(members) = c["members"].as_array() else {
        return false;
    };
    let name = &c["name"];
    let r = Roster {
        session_id: s(c, "session_id").as_bytes().to_vec(),
        channel_id: unhex_n(s(c, "channel_id")),
        kind: Kind::from_code(byte(c, "kind")).unwrap(),
        epoch: num(c, "epoch"),
        prev_hash: unhex_n(s(c, "prev_hash")),
        members: members.iter().map(member_of).collect(),
    };
    assert_eq!(hex(&r.encode().unwrap()), s(c, "encoded"), "{name}");
    let sr = SignedRoster::from_parts(&unhex(s(c, "encoded")), unhex_n(s(c, "signature"))).unwrap();
    assert_eq!(sr.roster, r, "{name}");
    assert_eq!(hex(&sr.hash), s(c, "hash"), "{name}");
    let key = chain_key(c);
    let first = !chains.contains_key(&key);
    match c.get("links_to") {
        Some(l) => {
            let l = l.as_str().unwrap().to_owned();
            assert!(first && r.epoch == 1, "{name}: links_to starts a chain");
            let earlier = chains
                .get(&(key.0.clone(), l))
                .unwrap_or_else(|| panic!("{name}: links_to names no earlier chain"))
                .head()
                .unwrap();
            assert_eq!(earlier.roster.kind, r.kind, "{name}");
            assert_eq!(r.prev_hash, earlier.hash, "{name}: prev_hash");
        }
        None => assert!(
            !(first && r.epoch == 1 && r.prev_hash != [0; 32]),
            "{name}: a chain linked to another names it in links_to"
        ),
    }
    let seed: [u8; 32] = unhex_n(s(c, "mediator_seed"));
    let m = Identity::from_secrets(&seed, &[1; 32]).unwrap();
    chains
        .entry(key)
        .or_insert_with(|| Chain::new(s(c, "session_id").as_bytes(), m.ik_pub()))
        .accept(sr)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    true
}

/// Opens a pairwise case in the mode it names, with the aad a receiver builds itself from the
/// pair (the ids in `info`), `msg_type` and `seq`.
fn open_pairwise(c: &Value) -> Result<Vec<u8>, OpenError> {
    let name = &c["name"];
    let psk = unhex(s(c, "psk"));
    let psk_id = unhex(s(c, "psk_id"));
    let mode = match s(c, "mode") {
        "auth" => {
            assert!(psk.is_empty() && psk_id.is_empty(), "{name}");
            None
        }
        "auth_psk" => {
            assert_eq!((psk.len(), psk_id.as_slice()), (32, PSK_ID), "{name}");
            Some((psk.as_slice(), psk_id.as_slice()))
        }
        other => panic!("{name}: unknown mode {other}"),
    };
    let msg_type = byte(c, "msg_type");
    assert!(MsgType::from_code(msg_type).is_some(), "{name}");
    let info = unhex(s(c, "info"));
    let ids = info
        .strip_prefix(b"confer/1 hpke".as_slice())
        .unwrap_or_else(|| panic!("{name}: info"));
    let aad = [
        b"confer/1 pairwise".as_slice(),
        ids,
        &[msg_type],
        &num(c, "seq").to_be_bytes(),
    ]
    .concat();
    assert_eq!(hex(&aad), s(c, "aad"), "{name}");
    pairwise::open_raw(
        &unhex_n(s(c, "recipient_sk")),
        &unhex_n(s(c, "sender_pk")),
        &unhex_n(s(c, "enc")),
        &info,
        &aad,
        &unhex(s(c, "ciphertext")),
        mode,
    )
}

fn judge_pairwise(c: &Value) -> bool {
    let pt = open_pairwise(c).unwrap_or_else(|_| panic!("{} does not open", c["name"]));
    assert_eq!(hex(&pt), s(c, "plaintext"), "{}", c["name"]);
    true
}

fn judge_code(c: &Value) -> bool {
    let members: Vec<([u8; 16], [u8; 32])> = c["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (unhex_n(s(m, "participant_id")), unhex_n(s(m, "ik_pub"))))
        .collect();
    let (d, code) = session_code(s(c, "session_id").as_bytes(), &members);
    assert_eq!(
        (hex(&d), code.as_str()),
        (s(c, "digest").to_owned(), s(c, "code"))
    );
    true
}

fn judge_doc(c: &Value) -> bool {
    if c.get("ik_seed").is_some() {
        let sha256 = unhex_n(s(c, "sha256"));
        let signed = confer_e2ee::doc::doc_ack_signed_bytes(
            s(c, "session_id").as_bytes(),
            &unhex_n(s(c, "participant_id")),
            &sha256,
        );
        assert_eq!(hex(&signed), s(c, "encoded"));
        let ik_pub: [u8; 32] = unhex_n(s(c, "ik_pub"));
        let signature = unhex_n(s(c, "signature"));
        identity::verify(&ik_pub, &signed, &signature).unwrap();
        let id = Identity::from_secrets(&unhex_n(s(c, "ik_seed")), &[1; 32]).unwrap();
        assert_eq!((id.ik_pub(), id.sign(&signed)), (ik_pub, signature));
        let ack = confer_e2ee::doc::DocAck::decode(&unhex(s(c, "plaintext"))).unwrap();
        assert_eq!((ack.sha256, ack.signature), (sha256, signature));
        return true;
    }
    let msg = DocKeyMsg::decode(&unhex(s(c, "encoded"))).unwrap();
    assert_eq!(hex(&msg.channel_id), s(c, "channel_id"));
    assert_eq!(hex(&msg.doc_id), s(c, "doc_id"));
    assert_eq!(hex(msg.file_key.expose()), s(c, "file_key"));
    assert_eq!(msg.size, num(c, "size"));
    assert_eq!(hex(&msg.sha256), s(c, "sha256"));
    assert_eq!(
        (msg.name.as_str(), msg.media_type.as_str()),
        (s(c, "doc_name"), s(c, "media_type"))
    );
    assert_eq!(hex(&msg.encode()), s(c, "encoded"));
    let chunks: Vec<Vec<u8>> = c["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| unhex(x.as_str().unwrap()))
        .collect();
    let cipher = DocCipher::new(&msg.file_key, msg.doc_id);
    assert_eq!(
        hex(&cipher.open_all(&chunks, &msg).unwrap()),
        s(c, "plaintext")
    );
    // Sealing is deterministic: the same chunks again.
    assert_eq!(cipher.seal_all(&unhex(s(c, "plaintext"))), chunks);
    true
}

fn judge_replay(c: &Value) -> bool {
    assert_eq!(c["window"], frame::WINDOW);
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
    true
}

/// A negative roster case: refused, by the chain of its (session_id, channel_id) in
/// `roster.json` (or the chain `chain` names), with exactly the refusal `error` names.
fn judge_negative_roster(c: &Value, chains: &BTreeMap<(String, String), Chain>) -> bool {
    let name = &c["name"];
    let error = s(c, "error");
    assert!(
        ROSTER_ERRORS.contains(&error),
        "{name}: unknown error {error}"
    );
    let key = c.get("chain").map_or_else(|| chain_key(c), chain_key);
    let chain = chains
        .get(&key)
        .unwrap_or_else(|| panic!("{name}: no chain {key:?} in roster.json"));
    let encoded = unhex(s(c, "encoded"));
    let signature = unhex_n(s(c, "signature"));
    assert_eq!(
        hex(&roster_hash(&encoded, &signature)),
        s(c, "hash"),
        "{name}"
    );
    let refusal = SignedRoster::from_parts(&encoded, signature)
        .and_then(|sr| chain.clone().accept(sr))
        .expect_err(&format!("{name} was accepted"));
    assert_eq!(roster_error_name(refusal), error, "{name}");
    true
}

/// A `negative.json` case: judged by its `shape` as a receiver would, and refused.
fn judge_negative(c: &Value, chains: &BTreeMap<(String, String), Chain>) -> bool {
    assert_eq!(c["expect"], "reject", "{}", c["name"]);
    let rejected = match s(c, "shape") {
        "frame" => receive_frame(c).is_err(),
        "header" => frame::decode_header(&unhex(s(c, "header"))).is_err(),
        "signature" => identity::verify(
            &unhex_n(s(c, "ik_pub")),
            &unhex(s(c, "message")),
            &unhex_n(s(c, "signature")),
        )
        .is_err(),
        "pairwise" => open_pairwise(c).is_err(),
        "roster" => judge_negative_roster(c, chains),
        _ => return false,
    };
    assert!(rejected, "{} was accepted", c["name"]);
    true
}

/// An announcement, verified with the role the case names, as a receiver reads it from its
/// fields; the secrets give the same keys and signature.
fn judge_announcement(c: &Value) {
    let sid = s(c, "session_id").as_bytes();
    let code = byte(c, "role");
    let a = Announcement {
        participant_id: unhex_n(s(c, "participant_id")),
        role: role_from_code(code).unwrap(),
        ik_pub: unhex_n(s(c, "ik_pub")),
        ek_pub: unhex_n(s(c, "ek_pub")),
        signature: unhex_n(s(c, "signature")),
    };
    assert_eq!(hex(&a.signed_bytes(sid)), s(c, "encoded"), "{}", c["name"]);
    assert!(a.verify(sid).is_ok(), "{}", c["name"]);
    // The role is signed: read with any other role, the announcement does not verify.
    for other in (0..=4).filter(|r| *r != code) {
        let mut b = a.clone();
        b.role = role_from_code(other).unwrap();
        assert!(b.verify(sid).is_err(), "{} as role {other}", c["name"]);
    }
    let id =
        Identity::from_secrets(&unhex_n(s(c, "ik_seed")), &unhex_n(s(c, "ek_secret"))).unwrap();
    assert_eq!(id.announce(sid, a.participant_id, a.role), a);
}

fn judge_delegation(c: &Value) {
    let sid = s(c, "session_id").as_bytes();
    let co_ik = unhex_n(s(c, "co_ik_pub"));
    let scope = byte(c, "scope");
    let signature = unhex_n(s(c, "signature"));
    let m = Identity::from_secrets(&unhex_n(s(c, "mediator_seed")), &[1; 32]).unwrap();
    assert_eq!(
        hex(&identity::delegation_bytes(sid, &co_ik, scope)),
        s(c, "encoded")
    );
    assert_eq!(m.delegate(sid, &co_ik, scope), signature);
    Chain::new(sid, m.ik_pub())
        .add_delegate(co_ik, scope, &signature)
        .unwrap();
}

fn judge_sender_key(c: &Value) {
    let encoded = unhex(s(c, "encoded"));
    let m = SenderKeyMsg::decode(&encoded).unwrap();
    assert_eq!(
        (
            hex(&m.channel_id),
            m.epoch,
            m.stream,
            m.generation,
            hex(m.base_key.expose())
        ),
        (
            s(c, "channel_id").to_owned(),
            num(c, "epoch"),
            byte(c, "stream"),
            num(c, "generation"),
            s(c, "base_key").to_owned()
        )
    );
    assert_eq!(m.encode(), encoded);
}

fn judge_name_commit(c: &Value) {
    assert_eq!(
        hex(&name_commit(&unhex_n(s(c, "salt")), s(c, "display_name")).unwrap()),
        s(c, "name_commit")
    );
}

/// A consent: the signed bytes, the signature (verified under `ik_pub`, and re-made from the
/// seed), and the 97-byte type 3 plaintext, encoded and decoded.
fn judge_consent(c: &Value) {
    let ik_pub: [u8; 32] = unhex_n(s(c, "ik_pub"));
    let agreement_hash = unhex_n(s(c, "agreement_hash"));
    let attestations = byte(c, "attestations");
    let signed = consent_signed_bytes(
        s(c, "session_id").as_bytes(),
        &unhex_n(s(c, "participant_id")),
        &agreement_hash,
        attestations,
    );
    assert_eq!(hex(&signed), s(c, "encoded"));
    let signature = unhex_n(s(c, "signature"));
    identity::verify(&ik_pub, &signed, &signature).unwrap();
    let id = Identity::from_secrets(&unhex_n(s(c, "ik_seed")), &[1; 32]).unwrap();
    assert_eq!((id.ik_pub(), id.sign(&signed)), (ik_pub, signature));
    let ack = ConsentAck {
        agreement_hash,
        attestations,
        signature,
    };
    let plaintext = unhex(s(c, "plaintext"));
    assert_eq!(plaintext.len(), 97);
    assert_eq!(ack.encode(), plaintext);
    assert_eq!(ConsentAck::decode(&plaintext).unwrap(), ack);
}

fn judge_sender_key_ack(c: &Value) {
    let ack = SenderKeyAck {
        channel_id: unhex_n(s(c, "channel_id")),
        epoch: num(c, "epoch"),
        stream: byte(c, "stream"),
        generation: num(c, "generation"),
    };
    let encoded = unhex(s(c, "encoded"));
    assert_eq!(ack.encode(), encoded);
    assert_eq!(SenderKeyAck::decode(&encoded).unwrap(), ack);
}

/// A display name: the type 4 plaintext, encoded and decoded, and its roster commitment.
fn judge_name(c: &Value) {
    let msg = NameMsg {
        salt: unhex_n(s(c, "salt")),
        name: s(c, "display_name").to_owned(),
    };
    let encoded = unhex(s(c, "encoded"));
    assert_eq!(msg.encode(), encoded);
    assert_eq!(NameMsg::decode(&encoded).unwrap(), msg);
    assert_eq!(hex(&msg.commit()), s(c, "name_commit"));
    assert_eq!(
        name_commit(&msg.salt, &msg.name),
        Some(msg.commit()),
        "the roster's commitment"
    );
}

fn judge_psk_hint(c: &Value) {
    let psk = Secret32::new(unhex_n(s(c, "psk")));
    assert_eq!(hex(&psk_hint(&psk)), s(c, "hint"));
}

/// One of each relay envelope kind (confer/1 §13), with bytes from the generator's RNG.
fn sample_envelopes(rng: &mut TestRng) -> Vec<(&'static str, Envelope)> {
    let mut b = |n: usize| {
        let mut v = vec![0u8; n];
        for x in v.chunks_mut(32) {
            let r: [u8; 32] = rng.bytes();
            x.copy_from_slice(&r[..x.len()]);
        }
        Bytes(v)
    };
    vec![
        (
            "envelope: announce",
            Envelope::Announce {
                pid: b(16),
                role: 2,
                ik: b(32),
                ek: b(32),
                sig: b(64),
            },
        ),
        (
            "envelope: pairwise, auth",
            Envelope::Pw {
                t: 1,
                seq: 7,
                enc: b(32),
                ct: b(101),
                hint: None,
            },
        ),
        (
            "envelope: pairwise, auth_psk with its hint",
            Envelope::Pw {
                t: 3,
                seq: 0,
                enc: b(32),
                ct: b(113),
                hint: Some(b(8)),
            },
        ),
        (
            "envelope: roster from the mediator",
            Envelope::Roster {
                ch: "caucus-A".into(),
                enc: b(150),
                sig: b(64),
                dik: None,
                dsig: None,
            },
        ),
        (
            "envelope: roster from a co-mediator",
            Envelope::Roster {
                ch: "joint".into(),
                enc: b(150),
                sig: b(64),
                dik: Some(b(32)),
                dsig: Some(b(64)),
            },
        ),
        (
            "envelope: delegation",
            Envelope::Delegate {
                ik: b(32),
                sig: b(64),
            },
        ),
        (
            "envelope: chat",
            Envelope::Chat {
                cid: b(16),
                f: b(275),
            },
        ),
    ]
}

/// An envelope's fields as the vectors write them: bytes in hex, `seq` as a u64 string.
fn envelope_fields(e: &Envelope) -> Value {
    let mut v: Value = serde_json::from_str(&e.to_data()).unwrap();
    let o = v.as_object_mut().unwrap();
    for (k, x) in o.iter_mut() {
        if k == "k" || k == "ch" || k == "t" || k == "role" {
            continue;
        }
        if k == "seq" {
            *x = json!(x.as_u64().unwrap().to_string());
            continue;
        }
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            x.as_str().unwrap(),
        )
        .unwrap();
        *x = json!(hex(&raw));
    }
    v
}

fn judge_envelope(c: &Value) {
    // The data string parses to an envelope whose fields are the case's, and the fields
    // serialize to exactly that string.
    let data = s(c, "data");
    let parsed = Envelope::from_data(data).expect("the data parses");
    assert_eq!(
        &envelope_fields(&parsed),
        &c["envelope"],
        "{}",
        s(c, "name")
    );
    assert_eq!(parsed.to_data(), data, "{}: canonical form", s(c, "name"));
}

fn judge_message(c: &Value) -> bool {
    match s(c, "type") {
        "envelope" => judge_envelope(c),
        "announcement" => judge_announcement(c),
        "delegation" => judge_delegation(c),
        "sender_key" => judge_sender_key(c),
        "name_commit" => judge_name_commit(c),
        "consent" => judge_consent(c),
        "sender_key_ack" => judge_sender_key_ack(c),
        "name" => judge_name(c),
        "psk_hint" => judge_psk_hint(c),
        _ => return false,
    }
    true
}

#[test]
fn every_vector_checks_out_as_a_reader_would_check_it() {
    let dir = vectors_dir();
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            entry.file_type().unwrap().is_file() && FILES.contains(&name.as_str()),
            "{}: {name} is not a vector file",
            dir.display()
        );
        present.insert(name);
    }
    let missing: Vec<_> = FILES.iter().filter(|f| !present.contains(**f)).collect();
    assert!(missing.is_empty(), "{}: missing {missing:?}", dir.display());

    judge_cases(&dir, "frame.json", |c| {
        if c.get("steps").is_some() {
            judge_ratchet(c)
        } else {
            judge_frame(c)
        }
    });
    // Chains per (session_id, channel_id) in file order; negative rosters are judged against
    // their last rosters.
    let mut chains = BTreeMap::new();
    judge_cases(&dir, "roster.json", |c| judge_roster(c, &mut chains));
    judge_cases(&dir, "pairwise.json", judge_pairwise);
    judge_cases(&dir, "code.json", judge_code);
    judge_cases(&dir, "doc.json", judge_doc);
    judge_cases(&dir, "replay.json", judge_replay);
    judge_cases(&dir, "negative.json", |c| judge_negative(c, &chains));
    judge_cases(&dir, "messages.json", judge_message);
    assert_eq!(
        load(&dir, "constants.json"),
        constants(),
        "constants.json differs from confer_e2ee's constants"
    );
}
