#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the committed fuzz seed corpus `crates/fuzz/corpus/signalling_decode/` through the
//! same logic as `crates/fuzz/fuzz_targets/signalling_decode.rs`, on stable: no seed panics,
//! `valid-*` seeds decode (and round-trip), `invalid-*` seeds are refused.

use confer_proto::decode_client;

/// `fuzz_targets/signalling_decode.rs`. True when the frame decoded.
fn signalling_decode(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(msg) = decode_client(text) else {
        return false;
    };
    let json = serde_json::to_string(&msg).expect("a client message serializes");
    assert_eq!(
        decode_client(&json).expect("a serialized message decodes"),
        msg
    );
    true
}

#[test]
fn signalling_decode_corpus() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/signalling_decode"
    );
    let mut seeds: Vec<_> = std::fs::read_dir(dir)
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
        "no valid- seed"
    );
    assert!(
        seeds.iter().any(|(n, _)| n.starts_with("invalid-")),
        "no invalid- seed"
    );
    let wrong: Vec<&str> = seeds
        .iter()
        .filter(|(name, data)| {
            let want = match name.split('-').next() {
                Some("valid") => true,
                Some("invalid") => false,
                _ => panic!("{name}: seed names start with valid- or invalid-"),
            };
            signalling_decode(data) != want
        })
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(wrong.is_empty(), "seeds with the wrong outcome: {wrong:?}");
}
