//! What clients put in `relay.data`: a small JSON envelope with a kind `k` and base64url
//! fields (confer/1 §13). The server sees the kind and the sizes; every secret inside is
//! encrypted. The server never parses it; the bytes are pinned by the `envelope` cases of
//! `tests/vectors/v1/messages.json`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// Bytes as unpadded base64url in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes())
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

impl Bytes {
    /// Exactly N bytes, or `None`.
    pub fn array<const N: usize>(&self) -> Option<[u8; N]> {
        self.0.as_slice().try_into().ok()
    }
}

/// The relayed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Envelope {
    /// A signed announcement of identity and session keys.
    Announce {
        /// Participant id (16 bytes).
        pid: Bytes,
        /// Role code.
        role: u8,
        /// Ed25519 public key.
        ik: Bytes,
        /// X25519 public key.
        ek: Bytes,
        /// Signature.
        sig: Bytes,
    },
    /// A pairwise HPKE message.
    Pw {
        /// Message type (1 sender key, 2 ack, 3 consent, 4 name).
        t: u8,
        /// Sequence number for this ordered pair.
        seq: u64,
        /// HPKE encapsulated key.
        enc: Bytes,
        /// Ciphertext.
        ct: Bytes,
        /// For auth_psk: which invite secret (8 bytes of its hash), so the mediator picks the
        /// right one without trial decryption.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<Bytes>,
    },
    /// A signed roster and the server channel it is for.
    Roster {
        /// The server channel (`joint`, `caucus-A`, ...).
        ch: String,
        /// Canonical roster bytes.
        enc: Bytes,
        /// Signature.
        sig: Bytes,
        /// A co-mediator's roster: its identity key, delegated by the mediator (§5.3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dik: Option<Bytes>,
        /// The mediator's delegation signature over `dik` (scope 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dsig: Option<Bytes>,
    },
    /// The mediator's delegation of roster signing to a co-mediator (§5.3), sent to it.
    Delegate {
        /// The co-mediator's identity key.
        ik: Bytes,
        /// The delegation signature (scope 1).
        sig: Bytes,
    },
    /// A chat frame (stream 3).
    Chat {
        /// Channel id (16 bytes).
        cid: Bytes,
        /// The frame.
        f: Bytes,
    },
}

impl Envelope {
    /// To the `relay.data` string.
    pub fn to_data(&self) -> String {
        // Plain data structures always serialize.
        serde_json::to_string(self).expect("envelope serializes")
    }

    /// From a `relay.data` string.
    pub fn from_data(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}
