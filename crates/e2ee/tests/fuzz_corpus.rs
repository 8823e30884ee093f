#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the committed fuzz seed corpora (`crates/fuzz/corpus/<target>/`) through the very
//! bodies of the fuzz targets (`crates/fuzz/bodies/`, shared with `crates/fuzz/fuzz_targets/`),
//! on stable: no seed panics, `valid-*` seeds open or decode, `invalid-*` seeds are refused.

#[path = "../../fuzz/bodies/frame_open.rs"]
mod frame_open;
#[path = "../../fuzz/bodies/pairwise_open.rs"]
mod pairwise_open;
#[path = "../../fuzz/bodies/replay.rs"]
mod replay;
#[path = "../../fuzz/bodies/roster_decode.rs"]
mod roster_decode;

use replay::replay;

#[test]
fn frame_open_corpus() {
    replay("frame_open", |_, data| frame_open::run(data));
}

#[test]
fn roster_decode_corpus() {
    replay("roster_decode", |name, data| {
        match roster_decode::run(data) {
            (decoded, accepted) if name.starts_with("valid-bare-") => decoded && !accepted,
            (decoded, accepted) if name.starts_with("valid-signed-") => accepted && !decoded,
            (decoded, accepted) => decoded || accepted,
        }
    });
}

#[test]
fn pairwise_open_corpus() {
    replay("pairwise_open", |name, data| {
        match pairwise_open::run(data) {
            (auth, psk, skm) if name.starts_with("valid-auth-") => auth && !psk && !skm,
            (auth, psk, skm) if name.starts_with("valid-psk-") => psk && !auth && !skm,
            (auth, psk, skm) if name.starts_with("valid-senderkey-") => skm && !auth && !psk,
            (auth, psk, skm) => auth || psk || skm,
        }
    });
}
