//! Pairwise messages X -> Y over HPKE (RFC 9180): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305; mode auth_psk with the invite secret, else auth.

use std::collections::BTreeMap;

use hpke::{Deserializable, OpModeR, OpModeS, PskBundle, Serializable};
use rand_core::CryptoRng;

use crate::enc::Writer;
use crate::identity::{EkPublic, EkSecret, Identity, Kem};
use crate::secret::Secret32;
use crate::{Id16, OpenError};

type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// The psk_id used with invite secrets.
pub const PSK_ID: &[u8] = b"confer/1 invite";

/// What a pairwise message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgType {
    /// A sender key.
    SenderKey = 1,
    /// Acknowledgment of a sender key.
    SenderKeyAck = 2,
    /// The consent acknowledgment (party -> mediator).
    Consent = 3,
    /// Display name and its salt.
    Name = 4,
    /// A document's key and what it is.
    DocKey = 5,
    /// A participant's acknowledgment of one version of a document.
    DocAck = 6,
}

impl MsgType {
    /// From the wire code.
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::SenderKey,
            2 => Self::SenderKeyAck,
            3 => Self::Consent,
            4 => Self::Name,
            5 => Self::DocKey,
            6 => Self::DocAck,
            _ => return None,
        })
    }
}

/// Who sends to whom, in which session.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    /// The session id bytes.
    pub session_id: &'a [u8],
    /// Sender participant id.
    pub from: Id16,
    /// Recipient participant id.
    pub to: Id16,
}

impl Pair<'_> {
    /// `"confer/1 hpke" || lp(session_id) || lp(X_id) || lp(Y_id)`.
    pub fn info(&self) -> Vec<u8> {
        let mut w = Writer::label(b"confer/1 hpke");
        w.lp(self.session_id).lp(&self.from).lp(&self.to);
        w.into_bytes()
    }

    /// `"confer/1 pairwise" || lp(session_id) || lp(X_id) || lp(Y_id) || u8(msg_type) || u64(seq)`.
    pub fn aad(&self, msg_type: MsgType, seq: u64) -> Vec<u8> {
        let mut w = Writer::label(b"confer/1 pairwise");
        w.lp(self.session_id)
            .lp(&self.from)
            .lp(&self.to)
            .u8(msg_type as u8)
            .u64(seq);
        w.into_bytes()
    }
}

/// A sealed pairwise message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The encapsulated key.
    pub enc: [u8; 32],
    /// Ciphertext with tag.
    pub ct: Vec<u8>,
}

/// Sealing failed (a bad recipient key, e.g. a small-order point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealError;

/// Seals `plaintext` from `sender` to the holder of `recipient_ek`.
#[allow(clippy::too_many_arguments)]
pub fn seal(
    rng: &mut impl CryptoRng,
    sender: &Identity,
    recipient_ek: &[u8; 32],
    pair: Pair<'_>,
    msg_type: MsgType,
    seq: u64,
    plaintext: &[u8],
    psk: Option<&Secret32>,
) -> Result<Sealed, SealError> {
    let pk_r = EkPublic::from_bytes(recipient_ek).map_err(|_| SealError)?;
    let keypair = (clone_sk(sender.ek_secret()), sender.ek_public().clone());
    let bundle;
    let mode = match psk {
        Some(p) => {
            bundle = PskBundle::new(p.expose(), PSK_ID).map_err(|_| SealError)?;
            OpModeS::AuthPsk(keypair, bundle)
        }
        None => OpModeS::Auth(keypair),
    };
    let (enc, ct) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &mode,
        &pk_r,
        &pair.info(),
        plaintext,
        &pair.aad(msg_type, seq),
        rng,
    )
    .map_err(|_| SealError)?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    Ok(Sealed { enc: e, ct })
}

fn clone_sk(sk: &EkSecret) -> EkSecret {
    // Serialization round trip of a valid key cannot fail.
    EkSecret::from_bytes(&sk.to_bytes()).expect("a valid X25519 secret re-parses")
}

/// Opens a message sealed by the holder of `sender_ek` to `recipient`.
#[allow(clippy::too_many_arguments)]
pub fn open(
    recipient: &Identity,
    sender_ek: &[u8; 32],
    pair: Pair<'_>,
    msg_type: MsgType,
    seq: u64,
    sealed: &Sealed,
    psk: Option<&Secret32>,
) -> Result<Vec<u8>, OpenError> {
    let psk_bytes = psk.map(|p| (p.expose().as_slice(), PSK_ID));
    // The secret's bytes for the raw call, wiped when it returns.
    let sk: zeroize::Zeroizing<[u8; 32]> =
        zeroize::Zeroizing::new(recipient.ek_secret().to_bytes().into());
    open_raw(
        &sk,
        sender_ek,
        &sealed.enc,
        &pair.info(),
        &pair.aad(msg_type, seq),
        &sealed.ct,
        psk_bytes,
    )
}

/// The HPKE open underneath [`open`], on raw bytes (for test vectors): mode auth, or
/// auth_psk when `psk` gives `(psk, psk_id)`.
pub fn open_raw(
    recipient_sk: &[u8; 32],
    sender_pk: &[u8; 32],
    enc: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    ct: &[u8],
    psk: Option<(&[u8], &[u8])>,
) -> Result<Vec<u8>, OpenError> {
    let sk = EkSecret::from_bytes(recipient_sk).map_err(|_| OpenError)?;
    let pk_s = EkPublic::from_bytes(sender_pk).map_err(|_| OpenError)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| OpenError)?;
    let bundle;
    let mode = match psk {
        Some((p, id)) => {
            bundle = PskBundle::new(p, id).map_err(|_| OpenError)?;
            OpModeR::AuthPsk(pk_s, bundle)
        }
        None => OpModeR::Auth(pk_s),
    };
    hpke::single_shot_open::<Aead, Kdf, Kem>(&mode, &sk, &enc, info, ct, aad).map_err(|_| OpenError)
}

/// Per-pair sequence numbers: sends count from 0; receives must strictly increase.
#[derive(Debug, Default, Clone)]
pub struct Sequences {
    next_send: BTreeMap<Id16, u64>,
    last_recv: BTreeMap<Id16, u64>,
}

impl Sequences {
    /// The sequence number for the next message to `peer`.
    pub fn next_send(&mut self, peer: Id16) -> u64 {
        let n = self.next_send.entry(peer).or_insert(0);
        let seq = *n;
        *n += 1;
        seq
    }

    /// Whether `seq` from `peer` is new (strictly above the last accepted); does not record it.
    pub fn is_fresh(&self, peer: &Id16, seq: u64) -> bool {
        self.last_recv.get(peer).is_none_or(|last| seq > *last)
    }

    /// Records an accepted `seq` (after the message opened).
    pub fn accept(&mut self, peer: Id16, seq: u64) {
        self.last_recv.insert(peer, seq);
    }

    /// Forgets what `peer` sent: it announced new keys (a client that lost its keys counts
    /// from 0 again). Messages sealed under its old keys no longer open, so nothing replays.
    pub fn forget_received(&mut self, peer: &Id16) {
        self.last_recv.remove(peer);
    }
}
