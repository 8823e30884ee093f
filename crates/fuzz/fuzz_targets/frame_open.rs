//! Frames: header parsing, padding and the stateful opener (generations 0 and 1, the ratchet,
//! the replay window). Input: one codec-selector byte, then the frame.
#![no_main]

use confer_e2ee::frame::{Codec, FrameCtx, Opener, decode_header, encode_header, unpad};
use libfuzzer_sys::fuzz_target;

/// Mirrored in `crates/e2ee/tests/fuzz_corpus.rs`. True when the frame opened.
fn run(data: &[u8]) -> bool {
    if let Ok((kid, ctr)) = decode_header(data) {
        // Headers are minimal, so a parsed header re-encodes to the same bytes.
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
        // The replay window refuses the same frame a second time.
        assert!(
            opener.open(codec, frame).is_err(),
            "a replayed frame opened"
        );
    }
    opened
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
