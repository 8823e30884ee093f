#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the committed fuzz seed corpus `crates/fuzz/corpus/signalling_decode/` through the
//! very body of the fuzz target (`crates/fuzz/bodies/signalling_decode.rs`), on stable: no seed
//! panics, `valid-*` seeds decode (and round-trip), `invalid-*` seeds are refused.

#[path = "../../fuzz/bodies/replay.rs"]
mod replay;
#[path = "../../fuzz/bodies/signalling_decode.rs"]
mod signalling_decode;

#[test]
fn signalling_decode_corpus() {
    replay::replay("signalling_decode", |_, data| signalling_decode::run(data));
}
