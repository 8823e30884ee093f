// The body of the `pairwise_open` fuzz target, shared with its corpus replay test.

use confer_e2ee::frame::SenderKeyMsg;
use confer_e2ee::pairwise::open_raw;

const PSK: &[u8] = b"psk-0123456789abcdef0123456789abc";
const PSK_ID: &[u8] = b"confer/1 invite";

/// The target body. (opened in auth, in auth_psk, decoded as a sender key).
pub(crate) fn run(data: &[u8]) -> (bool, bool, bool) {
    let (mut auth, mut psk) = (false, false);
    if data.len() >= 96 {
        let key = |i: usize| -> [u8; 32] { data[i..i + 32].try_into().expect("32 bytes") };
        let (sk, pk, enc, ct) = (key(0), key(32), key(64), &data[96..]);
        auth = open_raw(&sk, &pk, &enc, b"info", b"aad", ct, None).is_ok();
        psk = open_raw(&sk, &pk, &enc, b"info", b"aad", ct, Some((PSK, PSK_ID))).is_ok();
        assert!(!(auth && psk), "one ciphertext opened in two modes");
    }
    let skm = SenderKeyMsg::decode(data).is_ok_and(|m| {
        assert_eq!(m.encode(), data);
        true
    });
    (auth, psk, skm)
}
