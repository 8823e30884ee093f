//! Identity keys (Ed25519, `IK`), session keys (X25519, `EK`), announcements, delegation and
//! name commitments.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _, Serializable};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use crate::enc::Writer;
use crate::{Id16, OpenError};
use confer_proto::Role;

pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
pub(crate) type EkSecret = <Kem as hpke::Kem>::PrivateKey;
pub(crate) type EkPublic = <Kem as hpke::Kem>::PublicKey;

/// The wire code of a role in rosters and announcements.
pub fn role_code(r: Role) -> u8 {
    match r {
        Role::Mediator => 0,
        Role::CoMediator => 1,
        Role::Party => 2,
        Role::Counsel => 3,
        Role::Observer => 4,
    }
}

/// The role of a wire code; `None` for unknown codes (which are rejected).
pub fn role_from_code(c: u8) -> Option<Role> {
    Some(match c {
        0 => Role::Mediator,
        1 => Role::CoMediator,
        2 => Role::Party,
        3 => Role::Counsel,
        4 => Role::Observer,
        _ => return None,
    })
}

/// A participant's keys for one session: `IK` signs, `EK` receives pairwise messages.
pub struct Identity {
    ik: SigningKey,
    ek_sk: EkSecret,
    ek_pk: EkPublic,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("ik_pub", &hex(&self.ik_pub()))
            .field("secrets", &"[redacted]")
            .finish()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Identity {
    /// Fresh keys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let ik = SigningKey::generate(rng);
        let (ek_sk, ek_pk) = Kem::gen_keypair_with_rng(rng);
        Self { ik, ek_sk, ek_pk }
    }

    /// From an Ed25519 seed and an X25519 secret (test vectors, key restore).
    pub fn from_secrets(ik_seed: &[u8; 32], ek_secret: &[u8; 32]) -> Result<Self, OpenError> {
        let ik = SigningKey::from_bytes(ik_seed);
        let ek_sk = EkSecret::from_bytes(ek_secret).map_err(|_| OpenError)?;
        let ek_pk = Kem::sk_to_pk(&ek_sk);
        Ok(Self { ik, ek_sk, ek_pk })
    }

    /// The Ed25519 public key.
    pub fn ik_pub(&self) -> [u8; 32] {
        self.ik.verifying_key().to_bytes()
    }

    /// The X25519 public key.
    pub fn ek_pub(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.ek_pk.to_bytes());
        out
    }

    pub(crate) fn ek_secret(&self) -> &EkSecret {
        &self.ek_sk
    }

    pub(crate) fn ek_public(&self) -> &EkPublic {
        &self.ek_pk
    }

    /// Signs bytes (deterministic, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.ik.sign(msg).to_bytes()
    }

    /// A signed announcement of this identity for `participant_id` in `session_id`.
    pub fn announce(&self, session_id: &[u8], participant_id: Id16, role: Role) -> Announcement {
        let mut a = Announcement {
            participant_id,
            role,
            ik_pub: self.ik_pub(),
            ek_pub: self.ek_pub(),
            signature: [0; 64],
        };
        a.signature = self.sign(&a.signed_bytes(session_id));
        a
    }

    /// The mediator delegates roster signing to a co-mediator's identity key.
    pub fn delegate(&self, session_id: &[u8], co_ik: &[u8; 32], scope: u8) -> [u8; 64] {
        self.sign(&delegation_bytes(session_id, co_ik, scope))
    }
}

/// Verifies an Ed25519 signature strictly: canonical S and A, no small-order A or R,
/// cofactorless equation.
pub fn verify(ik_pub: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<(), OpenError> {
    let vk = VerifyingKey::from_bytes(ik_pub).map_err(|_| OpenError)?;
    // Canonical encodings only (y < p): the decoded point must compress back to the input,
    // as noble's `zip215: false` requires, so both implementations accept the same keys.
    if vk.is_weak() || vk.to_edwards().compress().to_bytes() != *ik_pub {
        return Err(OpenError);
    }
    let sig = Signature::from_bytes(sig);
    vk.verify_strict(msg, &sig).map_err(|_| OpenError)
}

/// `Sign(IK, "confer/1 announce" || lp(session_id) || lp(participant_id) || u8(role) || IK_pub || EK_pub)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// 16 bytes.
    pub participant_id: Id16,
    /// Claimed role.
    pub role: Role,
    /// Ed25519 public key.
    pub ik_pub: [u8; 32],
    /// X25519 public key.
    pub ek_pub: [u8; 32],
    /// Signature by `ik_pub`.
    pub signature: [u8; 64],
}

impl Announcement {
    /// The signed bytes.
    pub fn signed_bytes(&self, session_id: &[u8]) -> Vec<u8> {
        let mut w = Writer::label(b"confer/1 announce");
        w.lp(session_id)
            .lp(&self.participant_id)
            .u8(role_code(self.role))
            .raw(&self.ik_pub)
            .raw(&self.ek_pub);
        w.into_bytes()
    }

    /// Checks the self-signature.
    pub fn verify(&self, session_id: &[u8]) -> Result<(), OpenError> {
        verify(
            &self.ik_pub,
            &self.signed_bytes(session_id),
            &self.signature,
        )
    }
}

/// `"confer/1 delegate" || lp(session_id) || IK_co || u8(scope)`.
pub fn delegation_bytes(session_id: &[u8], co_ik: &[u8; 32], scope: u8) -> Vec<u8> {
    let mut w = Writer::label(b"confer/1 delegate");
    w.lp(session_id).raw(co_ik).u8(scope);
    w.into_bytes()
}

/// Delegation scope: may sign rosters.
pub const SCOPE_ROSTERS: u8 = 1;

/// Longest display name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 1024;

/// `SHA256("confer/1 name" || lp(salt16) || lp(utf8 name))`; `None` for a name over
/// [`MAX_NAME_BYTES`].
pub fn name_commit(salt: &[u8; 16], name: &str) -> Option<[u8; 32]> {
    if name.len() > MAX_NAME_BYTES {
        return None;
    }
    let mut w = Writer::label(b"confer/1 name");
    w.lp(salt).lp(name.as_bytes());
    Some(Sha256::digest(w.into_bytes()).into())
}
