// The body of the `frame_open` fuzz target, shared with its corpus replay test
// (crates/e2ee/tests/fuzz_corpus.rs) through `#[path]`: one copy of the logic.

use confer_e2ee::frame::{Codec, FrameCtx, Opener, decode_header, encode_header, unpad};

/// The target body: true when the frame opened.
pub(crate) fn run(data: &[u8]) -> bool {
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
