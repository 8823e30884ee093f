// The body of the `signalling_decode` fuzz target, shared with its corpus replay test
// (crates/proto/tests/fuzz_corpus.rs).

use confer_proto::decode_client;

/// The target body: true when the frame decoded.
pub(crate) fn run(data: &[u8]) -> bool {
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
