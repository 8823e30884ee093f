//! The session security code everyone reads aloud and compares.

use sha2::{Digest, Sha256};

use crate::Id16;
use crate::enc::Writer;

/// `SHA256("confer/1 session-code" || lp(session_id) || for members sorted by participant_id:
/// lp(participant_id) || IK_pub)`, and the six 5-digit groups made from its first 30 bytes.
pub fn session_code(session_id: &[u8], members: &[(Id16, [u8; 32])]) -> ([u8; 32], String) {
    let mut sorted: Vec<&(Id16, [u8; 32])> = members.iter().collect();
    sorted.sort_by_key(|a| a.0);
    let mut w = Writer::label(b"confer/1 session-code");
    w.lp(session_id);
    for (id, ik) in sorted {
        w.lp(id).raw(ik);
    }
    let digest: [u8; 32] = Sha256::digest(w.into_bytes()).into();
    let groups: Vec<String> = digest[..30]
        .chunks(5)
        .map(|c| {
            let v = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", v % 100_000)
        })
        .collect();
    (digest, groups.join(" "))
}
