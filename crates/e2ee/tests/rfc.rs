#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The published test vectors of every primitive confer/1 uses, run through the exact crates
//! and code paths we use (tests/rfc/vectors.json; sources listed in that file).

mod common;

use common::{unhex, unhex_n};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("rfc/vectors.json")).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing"))
}

#[test]
fn x25519_rfc7748() {
    let v = vectors();
    let cases = v["x25519_rfc7748"].as_array().unwrap();
    let mut n = 0;
    for c in cases {
        if c.get("scalar").is_some() {
            let out = x25519_dalek::x25519(unhex_n(s(c, "scalar")), unhex_n(s(c, "u")));
            assert_eq!(hex::encode(out), s(c, "output"), "{}", s(c, "name"));
        } else {
            let a = x25519_dalek::StaticSecret::from(unhex_n::<32>(s(c, "alice_sk")));
            let b = x25519_dalek::StaticSecret::from(unhex_n::<32>(s(c, "bob_sk")));
            let a_pk = x25519_dalek::PublicKey::from(&a);
            let b_pk = x25519_dalek::PublicKey::from(&b);
            assert_eq!(hex::encode(a_pk.as_bytes()), s(c, "alice_pk"));
            assert_eq!(hex::encode(b_pk.as_bytes()), s(c, "bob_pk"));
            assert_eq!(
                hex::encode(a.diffie_hellman(&b_pk).as_bytes()),
                s(c, "shared")
            );
            assert_eq!(
                hex::encode(b.diffie_hellman(&a_pk).as_bytes()),
                s(c, "shared")
            );
        }
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn ed25519_rfc8032_through_our_sign_and_strict_verify() {
    let v = vectors();
    for c in v["ed25519_rfc8032"].as_array().unwrap() {
        let seed: [u8; 32] = unhex_n(s(c, "secret_key"));
        let id = confer_e2ee::identity::Identity::from_secrets(&seed, &[1; 32]).unwrap();
        assert_eq!(
            hex::encode(id.ik_pub()),
            s(c, "public_key"),
            "{}",
            s(c, "name")
        );
        let msg = unhex(s(c, "message"));
        let sig = id.sign(&msg);
        assert_eq!(hex::encode(sig), s(c, "signature"), "{}", s(c, "name"));
        assert!(confer_e2ee::identity::verify(&id.ik_pub(), &msg, &sig).is_ok());
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(confer_e2ee::identity::verify(&id.ik_pub(), &msg, &bad).is_err());
    }
}

#[test]
fn hkdf_sha256_rfc5869() {
    let v = vectors();
    for c in v["hkdf_sha256_rfc5869"].as_array().unwrap() {
        let salt = unhex(s(c, "salt"));
        let (prk, hk) = hkdf::Hkdf::<sha2::Sha256>::extract(Some(&salt), &unhex(s(c, "ikm")));
        assert_eq!(hex::encode(prk), s(c, "prk"), "{}", s(c, "name"));
        let mut okm = vec![0u8; c["l"].as_u64().unwrap() as usize];
        hk.expand(&unhex(s(c, "info")), &mut okm).unwrap();
        assert_eq!(hex::encode(okm), s(c, "okm"));
    }
}

#[test]
fn chacha20poly1305_rfc8439() {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let v = vectors();
    for c in v["chacha20poly1305_rfc8439"].as_array().unwrap() {
        let cipher =
            chacha20poly1305::ChaCha20Poly1305::new_from_slice(&unhex(s(c, "key"))).unwrap();
        let nonce: [u8; 12] = unhex_n(s(c, "nonce"));
        let aad = unhex(s(c, "aad"));
        let pt = unhex(s(c, "plaintext"));
        let ct = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: &pt,
                    aad: &aad,
                },
            )
            .unwrap();
        let expect = format!("{}{}", s(c, "ciphertext"), s(c, "tag"));
        assert_eq!(hex::encode(&ct), expect, "{}", s(c, "name"));
        assert_eq!(
            cipher
                .decrypt(
                    &nonce.into(),
                    Payload {
                        msg: &ct,
                        aad: &aad
                    }
                )
                .unwrap(),
            pt
        );
    }
}

#[test]
fn hpke_rfc9180_our_suite_all_modes() {
    use hpke::{Deserializable, Kem as _, OpModeR, PskBundle, Serializable};
    type Kem = hpke::kem::X25519HkdfSha256;
    type Kdf = hpke::kdf::HkdfSha256;
    type A = hpke::aead::ChaCha20Poly1305;
    let v = vectors();
    let cases = v["hpke_rfc9180"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let name = s(c, "name");
        assert_eq!(
            (
                c["kem_id"].as_u64(),
                c["kdf_id"].as_u64(),
                c["aead_id"].as_u64()
            ),
            (Some(32), Some(1), Some(3))
        );
        let (sk_r, pk_r) = Kem::derive_keypair(&unhex(s(c, "ikmR")));
        assert_eq!(hex::encode(pk_r.to_bytes()), s(c, "pkRm"), "{name}");
        // The crate stores X25519 secrets clamped (RFC 7748 decodeScalar25519), which the RFC
        // prints unclamped; the same scalar for Diffie-Hellman, so compare them clamped.
        let mut sk = unhex(s(c, "skRm"));
        sk[0] &= 248;
        sk[31] &= 127;
        sk[31] |= 64;
        assert_eq!(sk_r.to_bytes().to_vec(), sk, "{name}");
        let mode = c["mode"].as_u64().unwrap();
        let psk = unhex(c["psk"].as_str().unwrap_or(""));
        let psk_id = unhex(c["psk_id"].as_str().unwrap_or(""));
        let pk_s = c
            .get("pkSm")
            .and_then(Value::as_str)
            .map(|p| <Kem as hpke::Kem>::PublicKey::from_bytes(&unhex(p)).unwrap());
        let bundle = PskBundle::new(&psk, &psk_id).unwrap();
        let op = match mode {
            0 => OpModeR::Base,
            1 => OpModeR::Psk(bundle),
            2 => OpModeR::Auth(pk_s.clone().unwrap()),
            _ => OpModeR::AuthPsk(pk_s.clone().unwrap(), bundle),
        };
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&unhex(s(c, "enc"))).unwrap();
        let info = unhex(s(c, "info"));
        let mut ctx = hpke::setup_receiver::<A, Kdf, Kem>(&op, &sk_r, &enc, &info).unwrap();
        let encs = c["encryptions"].as_array().unwrap();
        // The context's sequence advances one per open: check the consecutive ones.
        for e in encs
            .iter()
            .take_while(|e| e["seq"].as_u64().is_some())
            .take(3)
        {
            let pt = ctx.open(&unhex(s(e, "ct")), &unhex(s(e, "aad"))).unwrap();
            assert_eq!(hex::encode(pt), s(e, "pt"), "{name} seq {}", e["seq"]);
        }
        // Our own open path for the authenticated modes, on the first encryption.
        if mode >= 2 {
            let e = &encs[0];
            let psk_arg = (mode == 3).then_some((psk.as_slice(), psk_id.as_slice()));
            let pt = confer_e2ee::pairwise::open_raw(
                &unhex_n(s(c, "skRm")),
                &unhex_n(s(c, "pkSm")),
                &unhex_n(s(c, "enc")),
                &info,
                &unhex(s(e, "aad")),
                &unhex(s(e, "ct")),
                psk_arg,
            )
            .unwrap();
            assert_eq!(hex::encode(pt), s(e, "pt"), "{name} via pairwise::open_raw");
        }
    }
}

#[test]
fn sframe_headers_rfc9605() {
    let v = vectors();
    let cases = v["sframe_header_rfc9605"].as_array().unwrap();
    assert!(cases.len() > 200);
    for c in cases {
        let kid: u64 = s(c, "kid").parse().unwrap();
        let ctr: u64 = s(c, "ctr").parse().unwrap();
        let h = confer_e2ee::frame::encode_header(kid, ctr);
        assert_eq!(hex::encode(&h), s(c, "header"), "kid {kid} ctr {ctr}");
        assert_eq!(confer_e2ee::frame::decode_header(&h).unwrap(), (kid, ctr));
    }
}
