//! The plaintexts of pairwise messages other than sender keys, and the other small encodings
//! a client needs (confer/1 §6.4, §12, §13, §15.6). Each has one `encode` and one strict
//! `decode`; the bytes are pinned by `tests/vectors/v1/messages.json`.
//!
//! ```text
//! consent signed = "confer/1 consent" || lp(session_id) || lp(participant_id)
//!                  || agreement_hash[32] || u8(attestations)
//! type 3 (consent acknowledgment) = agreement_hash[32] || u8(attestations) || consent_sig[64]
//! type 2 (sender-key ack) = "confer/1 sender-key-ack" || lp(channel_id) || u64(epoch)
//!                           || u8(stream) || u64(generation)
//! type 4 (display name)   = lp(salt[16]) || lp(UTF-8 name)           name_commit = SHA-256(
//!                           "confer/1 name" || type 4 plaintext)
//! psk hint = SHA-256("confer/1 psk-hint" || invite secret)[..8]
//! ```

use sha2::{Digest, Sha256};

use crate::enc::{Reader, Writer};
use crate::frame::{STREAM_DATA, read_key_ref, write_key_ref};
use crate::identity::MAX_NAME_BYTES;
use crate::secret::Secret32;
use crate::{Id16, OpenError};

/// Consent attestation bit 0: "I will not record".
pub const ATTEST_NO_RECORDING: u8 = 1;
/// Consent attestation bit 1: "nobody else is present".
pub const ATTEST_NOBODY_ELSE: u8 = 2;
/// Every attestation confer/1 defines; a consent must carry all of them and no other bit.
pub const ATTEST_ALL: u8 = ATTEST_NO_RECORDING | ATTEST_NOBODY_ELSE;

/// What a participant signs when it acknowledges the agreement to mediate.
pub fn consent_signed_bytes(
    session_id: &[u8],
    participant_id: &Id16,
    agreement_hash: &[u8; 32],
    attestations: u8,
) -> Vec<u8> {
    let mut w = Writer::label(b"confer/1 consent");
    w.lp(session_id)
        .lp(participant_id)
        .raw(agreement_hash)
        .u8(attestations);
    w.into_bytes()
}

/// The plaintext of a consent acknowledgment (pairwise type 3), 97 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentAck {
    /// SHA-256 of the agreement text the participant was shown.
    pub agreement_hash: [u8; 32],
    /// Attestation bits ([`ATTEST_ALL`] for a valid consent).
    pub attestations: u8,
    /// The participant's signature over [`consent_signed_bytes`].
    pub signature: [u8; 64],
}

impl ConsentAck {
    /// The 97 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(97));
        w.raw(&self.agreement_hash)
            .u8(self.attestations)
            .raw(&self.signature);
        w.into_bytes()
    }

    /// Exactly 97 bytes; any other length is refused.
    pub fn decode(b: &[u8]) -> Result<Self, OpenError> {
        let e = |_| OpenError;
        let mut r = Reader::new(b);
        let agreement_hash = r.array().map_err(e)?;
        let attestations = r.u8().map_err(e)?;
        let signature = r.array().map_err(e)?;
        if r.remaining() != 0 {
            return Err(OpenError);
        }
        Ok(Self {
            agreement_hash,
            attestations,
            signature,
        })
    }
}

/// The plaintext of a sender-key acknowledgment (pairwise type 2): the fields of the type 1
/// it acknowledges, without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderKeyAck {
    /// Channel.
    pub channel_id: Id16,
    /// Roster epoch of the key.
    pub epoch: u64,
    /// Stream.
    pub stream: u8,
    /// Generation.
    pub generation: u64,
}

impl SenderKeyAck {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        write_key_ref(
            b"confer/1 sender-key-ack",
            &self.channel_id,
            self.epoch,
            self.stream,
            self.generation,
        )
        .into_bytes()
    }

    /// Strict decode: the label, a 16-byte channel id, a stream of at most 3, nothing after.
    pub fn decode(b: &[u8]) -> Result<Self, OpenError> {
        let mut r = Reader::new(b);
        let (channel_id, epoch, stream, generation) =
            read_key_ref(&mut r, b"confer/1 sender-key-ack")?;
        if r.remaining() != 0 || stream > STREAM_DATA {
            return Err(OpenError);
        }
        Ok(Self {
            channel_id,
            epoch,
            stream,
            generation,
        })
    }
}

/// A display name and its salt (pairwise type 4). The roster carries only its commitment.
#[derive(Clone, PartialEq, Eq)]
pub struct NameMsg {
    /// Fresh random salt.
    pub salt: [u8; 16],
    /// The name, at most [`MAX_NAME_BYTES`] of UTF-8.
    pub name: String,
}

impl std::fmt::Debug for NameMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A name is personal data: never in logs.
        f.write_str("NameMsg([redacted])")
    }
}

impl NameMsg {
    /// A name with a fresh salt; `None` for an empty name or one over [`MAX_NAME_BYTES`].
    pub fn new(name: &str, rng: &mut impl crate::CryptoRng) -> Option<Self> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return None;
        }
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        Some(Self {
            salt,
            name: name.to_owned(),
        })
    }

    /// `lp(salt) || lp(name)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(20 + self.name.len()));
        w.lp(&self.salt).lp(self.name.as_bytes());
        w.into_bytes()
    }

    /// Strict decode: a 16-byte salt, 1 to [`MAX_NAME_BYTES`] bytes of UTF-8, nothing after.
    pub fn decode(b: &[u8]) -> Result<Self, OpenError> {
        let e = |_| OpenError;
        let mut r = Reader::new(b);
        let salt: [u8; 16] = r.lp().map_err(e)?.try_into().map_err(|_| OpenError)?;
        let name = r.lp().map_err(e)?;
        if r.remaining() != 0 || name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(OpenError);
        }
        let name = std::str::from_utf8(name).map_err(|_| OpenError)?.to_owned();
        Ok(Self { salt, name })
    }

    /// The roster's `name_commit` for this name: `SHA-256("confer/1 name" || encode())`.
    pub fn commit(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"confer/1 name");
        h.update(self.encode());
        h.finalize().into()
    }
}

/// Which invite secret a pairwise message uses (the relay envelope's `hint`), so the
/// mediator's client picks it without trial decryption.
pub fn psk_hint(psk: &Secret32) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"confer/1 psk-hint");
    h.update(psk.expose());
    let d = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn name_commit_is_the_identity_modules_commitment() {
        let m = NameMsg {
            salt: [9; 16],
            name: "Ada Lovelace".into(),
        };
        assert_eq!(
            Some(m.commit()),
            crate::identity::name_commit(&[9; 16], "Ada Lovelace")
        );
        assert_eq!(NameMsg::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn decoders_refuse_trailing_bytes_and_bad_lengths() {
        let a = SenderKeyAck {
            channel_id: [1; 16],
            epoch: 3,
            stream: 1,
            generation: 7,
        };
        let mut b = a.encode();
        assert_eq!(SenderKeyAck::decode(&b).unwrap(), a);
        b.push(0);
        assert!(SenderKeyAck::decode(&b).is_err());
        let c = ConsentAck {
            agreement_hash: [2; 32],
            attestations: ATTEST_ALL,
            signature: [3; 64],
        };
        assert_eq!(ConsentAck::decode(&c.encode()).unwrap(), c);
        assert!(ConsentAck::decode(&c.encode()[..96]).is_err());
        let mut n = NameMsg {
            salt: [1; 16],
            name: "x".into(),
        }
        .encode();
        n.push(1);
        assert!(NameMsg::decode(&n).is_err());
        assert!(NameMsg::decode(&[0, 16]).is_err());
    }
}
