//! Rosters: strict decoding (which must be canonical) and the signed chain. Input: a bare
//! encoded roster, or an encoded roster followed by its 64-byte signature.
#![no_main]

use libfuzzer_sys::fuzz_target;

// One copy of the logic, shared with the corpus replay test.
#[path = "../bodies/roster_decode.rs"]
mod body;

fuzz_target!(|data: &[u8]| {
    body::run(data);
});
