//! Client signalling frames: decoding any text never panics, and what decodes survives a
//! serialize/decode round trip unchanged.
#![no_main]

use confer_proto::decode_client;
use libfuzzer_sys::fuzz_target;

/// Mirrored in `crates/proto/tests/fuzz_corpus.rs`. True when the frame decoded.
fn run(data: &[u8]) -> bool {
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

fuzz_target!(|data: &[u8]| {
    run(data);
});
