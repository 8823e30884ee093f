//! Pairwise HPKE opens (auth and auth_psk) and sender-key messages. Input: recipient secret,
//! sender public key and enc (32 bytes each), then the ciphertext; the whole input is also
//! decoded as a sender-key message.
#![no_main]

use libfuzzer_sys::fuzz_target;

// One copy of the logic, shared with the corpus replay test.
#[path = "../bodies/pairwise_open.rs"]
mod body;

fuzz_target!(|data: &[u8]| {
    body::run(data);
});
