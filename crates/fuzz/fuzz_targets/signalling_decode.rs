//! Client signalling frames: decoding any text never panics, and what decodes survives a
//! serialize/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

// One copy of the logic, shared with the corpus replay test.
#[path = "../bodies/signalling_decode.rs"]
mod body;

fuzz_target!(|data: &[u8]| {
    body::run(data);
});
