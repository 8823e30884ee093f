// The body of the `media_offer` fuzz target, shared with its corpus replay test
// (crates/sfu/tests/fuzz_corpus.rs).

use std::time::Instant;

use confer_proto::ParticipantId;
use confer_sfu::{Sfu, SfuConfig};

/// The target body: true when the SFU answered the offer. `now` comes from the caller (the
/// SFU is a sans-IO core and reads no clock).
pub(crate) fn run(data: &[u8], now: Instant) -> bool {
    // `media_offer.sdp` is a JSON string: always UTF-8 by the time it reaches the SFU.
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut sfu = Sfu::new(SfuConfig::new(([10, 0, 0, 1], 7882).into()), now);
    let pid = ParticipantId::new("fuzz").expect("a valid id");
    match sfu.accept_offer(pid.clone(), text, now) {
        Ok(answer) => {
            assert_eq!(sfu.peer_count(), 1, "an answered offer holds one peer");
            assert!(answer.contains("a=ice-lite"), "the SFU is ICE-lite");
            // The same offer again replaces the peer, never adds one.
            sfu.accept_offer(pid, text, now)
                .expect("an offer answered once is answered again");
            assert_eq!(sfu.peer_count(), 1, "a re-offer replaces the peer");
            true
        }
        Err(_) => {
            assert_eq!(sfu.peer_count(), 0, "a refused offer leaves nothing behind");
            false
        }
    }
}
