#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the committed fuzz seed corpus `crates/fuzz/corpus/media_offer/` through the very
//! body of the fuzz target (`crates/fuzz/bodies/media_offer.rs`), on stable: no seed panics,
//! `valid-*` seeds are answered (and replaced by a re-offer), `invalid-*` seeds are refused
//! and leave no peer.

use confer_testkit::VirtualClock;

#[path = "../../fuzz/bodies/media_offer.rs"]
mod media_offer;
#[path = "../../fuzz/bodies/replay.rs"]
mod replay;

#[test]
fn media_offer_corpus() {
    let clock = VirtualClock::new();
    replay::replay("media_offer", |_, data| media_offer::run(data, clock.now()));
}
