#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the committed fuzz seed corpora (`crates/fuzz/corpus/<target>/`) through the same
//! logic as the fuzz targets in `crates/fuzz/fuzz_targets/`, on stable: no seed panics,
//! `valid-*` seeds open or decode, `invalid-*` seeds are refused.

use confer_e2ee::frame::{
    Codec, FrameCtx, Opener, SenderKeyMsg, decode_header, encode_header, unpad,
};
use confer_e2ee::identity::Identity;
use confer_e2ee::pairwise::open_raw;
use confer_e2ee::roster::{Accepted, Chain, Roster, SignedRoster};

/// Every seed of `target` as (file name, bytes), sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(
        seeds.iter().any(|(n, _)| n.starts_with("valid-")),
        "{dir}: no valid- seed"
    );
    assert!(
        seeds.iter().any(|(n, _)| n.starts_with("invalid-")),
        "{dir}: no invalid- seed"
    );
    seeds
}

/// Runs `accepted` (the target body, reporting whether the seed was accepted the way its name
/// says) over every seed and fails listing every seed whose outcome contradicts its name.
fn replay(target: &str, accepted: impl Fn(&str, &[u8]) -> bool) {
    let wrong: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(name, data)| {
            let want = match name.split('-').next() {
                Some("valid") => true,
                Some("invalid") => false,
                _ => panic!("{target}/{name}: seed names start with valid- or invalid-"),
            };
            accepted(name, data) != want
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        wrong.is_empty(),
        "{target}: seeds with the wrong outcome: {wrong:?}"
    );
}

/// `fuzz_targets/frame_open.rs`. True when the frame opened.
fn frame_open(data: &[u8]) -> bool {
    if let Ok((kid, ctr)) = decode_header(data) {
        assert_eq!(encode_header(kid, ctr), data);
    }
    let _ = unpad(data);
    let Some((&sel, frame)) = data.split_first() else {
        return false;
    };
    let codec = [Codec::Vp8, Codec::Opus, Codec::Data][usize::from(sel % 3)];
    // Each codec on the stream that carries it: camera VP8, audio Opus, data on stream 3.
    let stream = [1, 0, 3][usize::from(sel % 3)];
    let ctx = FrameCtx::new(b"fuzz-session", [1; 16], [2; 16], stream).expect("a valid ctx");
    let mut opener = Opener::new(ctx);
    opener.add_generation(0, [7; 32]);
    opener.add_generation(1, [8; 32]);
    let opened = opener.open(codec, frame).is_ok();
    if opened {
        assert!(
            opener.open(codec, frame).is_err(),
            "a replayed frame opened"
        );
    }
    opened
}

/// `fuzz_targets/roster_decode.rs`. (decoded bare, accepted as signed).
fn roster_decode(data: &[u8]) -> (bool, bool) {
    let decoded = Roster::decode(data).is_ok_and(|r| {
        assert_eq!(r.encode().expect("a decoded roster encodes"), data);
        true
    });
    let mut accepted = false;
    if data.len() >= 64 {
        let (rest, sig) = data.split_at(data.len() - 64);
        let sig: [u8; 64] = sig.try_into().expect("64 bytes");
        if let Ok(signed) = SignedRoster::from_parts(rest, sig) {
            let mediator = Identity::from_secrets(&[9; 32], &[10; 32]).expect("valid secrets");
            let mut chain = Chain::new(b"fuzz-session", mediator.ik_pub());
            accepted = chain.accept(signed.clone()).is_ok();
            if accepted {
                assert_eq!(chain.accept(signed), Ok(Accepted::Unchanged));
            }
        }
    }
    (decoded, accepted)
}

const PSK: &[u8] = b"psk-0123456789abcdef0123456789abc";
const PSK_ID: &[u8] = b"confer/1 invite";

/// `fuzz_targets/pairwise_open.rs`. (opened in auth, in auth_psk, decoded as a sender key).
fn pairwise_open(data: &[u8]) -> (bool, bool, bool) {
    let (mut auth, mut psk) = (false, false);
    if data.len() >= 96 {
        let key = |i: usize| -> [u8; 32] { data[i..i + 32].try_into().expect("32 bytes") };
        let (sk, pk, enc, ct) = (key(0), key(32), key(64), &data[96..]);
        auth = open_raw(&sk, &pk, &enc, b"info", b"aad", ct, None).is_ok();
        psk = open_raw(&sk, &pk, &enc, b"info", b"aad", ct, Some((PSK, PSK_ID))).is_ok();
        assert!(!(auth && psk), "one ciphertext opened in two modes");
    }
    let skm = SenderKeyMsg::decode(data).is_ok_and(|m| {
        assert_eq!(m.encode(), data);
        true
    });
    (auth, psk, skm)
}

#[test]
fn frame_open_corpus() {
    replay("frame_open", |_, data| frame_open(data));
}

#[test]
fn roster_decode_corpus() {
    replay("roster_decode", |name, data| match roster_decode(data) {
        (decoded, accepted) if name.starts_with("valid-bare-") => decoded && !accepted,
        (decoded, accepted) if name.starts_with("valid-signed-") => accepted && !decoded,
        (decoded, accepted) => decoded || accepted,
    });
}

#[test]
fn pairwise_open_corpus() {
    replay("pairwise_open", |name, data| match pairwise_open(data) {
        (auth, psk, skm) if name.starts_with("valid-auth-") => auth && !psk && !skm,
        (auth, psk, skm) if name.starts_with("valid-psk-") => psk && !auth && !skm,
        (auth, psk, skm) if name.starts_with("valid-senderkey-") => skm && !auth && !psk,
        (auth, psk, skm) => auth || psk || skm,
    });
}
