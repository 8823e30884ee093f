//! SDP offers as a `media_offer` carries them: the SFU answers or refuses any text without
//! panicking, a refused offer leaves no peer, an answered one is ICE-lite and replaced (not
//! added to) by the same offer again.
#![no_main]

use libfuzzer_sys::fuzz_target;

// One copy of the logic, shared with the corpus replay test.
#[path = "../bodies/media_offer.rs"]
mod body;

fuzz_target!(|data: &[u8]| {
    body::run(data, std::time::Instant::now());
});
