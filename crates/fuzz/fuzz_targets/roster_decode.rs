//! Rosters: strict decoding (which must be canonical) and the signed chain. Input: a bare
//! encoded roster, or an encoded roster followed by its 64-byte signature.
#![no_main]

use confer_e2ee::identity::Identity;
use confer_e2ee::roster::{Accepted, Chain, Roster, SignedRoster};
use libfuzzer_sys::fuzz_target;

/// Mirrored in `crates/e2ee/tests/fuzz_corpus.rs`. (decoded bare, accepted as signed).
fn run(data: &[u8]) -> (bool, bool) {
    let decoded = Roster::decode(data).is_ok_and(|r| {
        assert_eq!(r.encode().expect("a decoded roster encodes"), data);
        true
    });
    let mut accepted = false;
    if data.len() >= 64 {
        let (rest, sig) = data.split_at(data.len() - 64);
        let sig: [u8; 64] = sig.try_into().expect("64 bytes");
        if let Ok(signed) = SignedRoster::from_parts(rest, sig) {
            // The mediator's identity key is the one of the Ed25519 seed [9; 32].
            let mediator = Identity::from_secrets(&[9; 32], &[10; 32]).expect("valid secrets");
            let mut chain = Chain::new(b"fuzz-session", mediator.ik_pub());
            accepted = chain.accept(signed.clone()).is_ok();
            if accepted {
                assert_eq!(chain.accept(signed), Ok(Accepted::Unchanged));
            }
        }
    }
    (decoded, accepted)
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
