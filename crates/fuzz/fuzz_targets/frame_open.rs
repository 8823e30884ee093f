//! Frames: header parsing, padding and the stateful opener (generations 0 and 1, the ratchet,
//! the replay window). Input: one codec-selector byte, then the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

// One copy of the logic, shared with the corpus replay test.
#[path = "../bodies/frame_open.rs"]
mod body;

fuzz_target!(|data: &[u8]| {
    body::run(data);
});
