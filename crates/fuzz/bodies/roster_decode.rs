// The body of the `roster_decode` fuzz target, shared with its corpus replay test.

use confer_e2ee::identity::Identity;
use confer_e2ee::roster::{Accepted, Chain, Roster, SignedRoster};

/// The target body. (decoded bare, accepted as signed).
pub(crate) fn run(data: &[u8]) -> (bool, bool) {
    let decoded = Roster::decode(data).is_ok_and(|r| {
        assert_eq!(r.encode().expect("a decoded roster encodes"), data);
        true
    });
    let mut accepted = false;
    if data.len() >= 64 {
        let (rest, sig) = data.split_at(data.len() - 64);
        let sig: [u8; 64] = sig.try_into().expect("64 bytes");
        if let Ok(signed) = SignedRoster::from_parts(rest, sig) {
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
