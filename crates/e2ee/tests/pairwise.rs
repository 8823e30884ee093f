#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Pairwise HPKE messages: auth and auth_psk, binding to ids, type and sequence.

mod common;

use common::TestRng;
use confer_e2ee::identity::Identity;
use confer_e2ee::pairwise::*;
use confer_e2ee::secret::Secret32;

#[test]
fn auth_and_auth_psk_round_trip_and_bind_everything() {
    let mut rng = TestRng::new("pairwise");
    let x = Identity::generate(&mut rng);
    let y = Identity::generate(&mut rng);
    let z = Identity::generate(&mut rng);
    let pair = Pair {
        session_id: b"s1",
        from: [1; 16],
        to: [2; 16],
    };
    let psk = Secret32::new([9; 32]);
    for psk in [None, Some(&psk)] {
        let s = seal(
            &mut rng,
            &x,
            &y.ek_pub(),
            pair,
            MsgType::Consent,
            4,
            b"I agree",
            psk,
        )
        .unwrap();
        assert_eq!(
            open(&y, &x.ek_pub(), pair, MsgType::Consent, 4, &s, psk).unwrap(),
            b"I agree"
        );
        // Any change of context fails, with the same opaque error.
        assert!(
            open(&y, &x.ek_pub(), pair, MsgType::Consent, 5, &s, psk).is_err(),
            "seq"
        );
        assert!(
            open(&y, &x.ek_pub(), pair, MsgType::Name, 4, &s, psk).is_err(),
            "type"
        );
        let swapped = Pair {
            from: [2; 16],
            to: [1; 16],
            ..pair
        };
        assert!(
            open(&y, &x.ek_pub(), swapped, MsgType::Consent, 4, &s, psk).is_err(),
            "ids"
        );
        assert!(
            open(&y, &z.ek_pub(), pair, MsgType::Consent, 4, &s, psk).is_err(),
            "sender key"
        );
        assert!(
            open(&z, &x.ek_pub(), pair, MsgType::Consent, 4, &s, psk).is_err(),
            "recipient"
        );
    }
    // auth_psk needs the invite secret.
    let s = seal(
        &mut rng,
        &x,
        &y.ek_pub(),
        pair,
        MsgType::Consent,
        0,
        b"m",
        Some(&psk),
    )
    .unwrap();
    assert!(open(&y, &x.ek_pub(), pair, MsgType::Consent, 0, &s, None).is_err());
    assert!(
        open(
            &y,
            &x.ek_pub(),
            pair,
            MsgType::Consent,
            0,
            &s,
            Some(&Secret32::new([8; 32]))
        )
        .is_err()
    );
}

#[test]
fn small_order_keys_are_refused() {
    let mut rng = TestRng::new("pairwise-zero");
    let x = Identity::generate(&mut rng);
    let pair = Pair {
        session_id: b"s1",
        from: [1; 16],
        to: [2; 16],
    };
    // The all-zero point gives an all-zero DH output.
    assert!(seal(&mut rng, &x, &[0; 32], pair, MsgType::Name, 0, b"m", None).is_err());
}

#[test]
fn sequences_strictly_increase() {
    let mut s = Sequences::default();
    assert_eq!(s.next_send([1; 16]), 0);
    assert_eq!(s.next_send([1; 16]), 1);
    assert_eq!(s.next_send([2; 16]), 0);
    assert!(s.is_fresh(&[3; 16], 0));
    s.accept([3; 16], 5);
    assert!(!s.is_fresh(&[3; 16], 5));
    assert!(!s.is_fresh(&[3; 16], 2));
    assert!(s.is_fresh(&[3; 16], 6));
}
