//! Signed rosters: one hash chain per channel (joint, each caucus, each breakout).
//!
//! ```text
//! roster = "confer/1 roster" || lp(session_id) || lp(channel_id) || u8(kind) || u64(epoch)
//!        || prev_hash[32] || u16(n) || n x ( lp(participant_id) || IK_pub[32] || EK_pub[32]
//!        || u8(role) || u8(side) || u8(flags) || name_commit[32] )
//! signature = Ed25519(IK_signer, roster)
//! hash      = SHA256("confer/1 roster-hash" || roster || signature)
//! ```

use sha2::{Digest, Sha256};

use crate::Id16;
use crate::enc::{Reader, Writer};
use crate::identity::{self, Identity, role_from_code};

const LABEL: &[u8] = b"confer/1 roster";

/// Sides are 0 (none) or 1..=26 (A..Z).
pub const MAX_SIDE: u8 = 26;

/// Flag bit 0: the member is away (in another channel).
pub const FLAG_AWAY: u8 = 1;

/// The kind of channel a roster describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Everyone admitted.
    Joint = 0,
    /// One side's private room.
    Caucus = 1,
    /// Any membership.
    Breakout = 2,
}

impl Kind {
    /// From the wire code.
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Kind::Joint,
            1 => Kind::Caucus,
            2 => Kind::Breakout,
            _ => return None,
        })
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// 16 bytes.
    pub participant_id: Id16,
    /// Ed25519 public key.
    pub ik_pub: [u8; 32],
    /// X25519 public key.
    pub ek_pub: [u8; 32],
    /// Role code (0 mediator .. 4 observer).
    pub role: u8,
    /// 0 none, 1 side A, 2 side B, ...
    pub side: u8,
    /// Bit 0: away.
    pub flags: u8,
    /// Commitment to the display name.
    pub name_commit: [u8; 32],
}

impl Member {
    /// True when flagged away (in another channel).
    pub fn is_away(&self) -> bool {
        self.flags & FLAG_AWAY != 0
    }
}

/// A roster's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// Session id bytes (1 to 64).
    pub session_id: Vec<u8>,
    /// Channel id (16 random bytes chosen by the mediator's client).
    pub channel_id: Id16,
    /// Kind.
    pub kind: Kind,
    /// 1 for a channel's first roster, then +1 each change.
    pub epoch: u64,
    /// Hash of the previous roster of this channel. At epoch 1: zeros for a room's first chain,
    /// or the hash of the last roster of the room's previous chain (a successor chain, §7.6).
    pub prev_hash: [u8; 32],
    /// Members in ascending order of participant id.
    pub members: Vec<Member>,
}

/// Why a roster was refused. Fork, rollback and gap are alarms the UI must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterError {
    /// Not a well-formed roster (unsorted or duplicate ids, unknown values, trailing bytes).
    Malformed,
    /// The signature does not verify under the mediator's key or a delegate's.
    BadSignature,
    /// The signer is not a member with the signer's role.
    SignerNotMember,
    /// An older epoch than the one we hold (a replay or rollback).
    Rollback,
    /// Same or next epoch, but a different history (the chain forked).
    Fork,
    /// An epoch beyond the next one: rosters were withheld.
    Gap,
    /// A roster for another session or channel.
    WrongChannel,
}

impl std::fmt::Display for RosterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RosterError::Malformed => "malformed roster",
            RosterError::BadSignature => "roster signature does not verify",
            RosterError::SignerNotMember => "roster signer is not a member",
            RosterError::Rollback => "roster rollback",
            RosterError::Fork => "roster fork",
            RosterError::Gap => "rosters withheld",
            RosterError::WrongChannel => "roster for another channel",
        })
    }
}

impl std::error::Error for RosterError {}

impl Roster {
    /// The canonical encoding; refuses unsorted or duplicate members and unknown values.
    pub fn encode(&self) -> Result<Vec<u8>, RosterError> {
        self.check()?;
        let n = u16::try_from(self.members.len()).map_err(|_| RosterError::Malformed)?;
        let mut w = Writer::label(LABEL);
        w.lp(&self.session_id)
            .lp(&self.channel_id)
            .u8(self.kind as u8)
            .u64(self.epoch)
            .raw(&self.prev_hash)
            .u16(n);
        for m in &self.members {
            w.lp(&m.participant_id)
                .raw(&m.ik_pub)
                .raw(&m.ek_pub)
                .u8(m.role)
                .u8(m.side)
                .u8(m.flags)
                .raw(&m.name_commit);
        }
        Ok(w.into_bytes())
    }

    fn check(&self) -> Result<(), RosterError> {
        if self.session_id.is_empty() || self.session_id.len() > 64 || self.epoch == 0 {
            return Err(RosterError::Malformed);
        }
        for w in self.members.windows(2) {
            if w[0].participant_id >= w[1].participant_id {
                return Err(RosterError::Malformed);
            }
        }
        for m in &self.members {
            if role_from_code(m.role).is_none() || m.flags & !FLAG_AWAY != 0 || m.side > MAX_SIDE {
                return Err(RosterError::Malformed);
            }
        }
        Ok(())
    }

    /// Strict decoding of [`Roster::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, RosterError> {
        let m = |_| RosterError::Malformed;
        let mut r = Reader::new(bytes);
        r.expect(LABEL).map_err(m)?;
        let session_id = r.lp().map_err(m)?.to_vec();
        let channel_id: Id16 = r
            .lp()
            .map_err(m)?
            .try_into()
            .map_err(|_| RosterError::Malformed)?;
        let kind = Kind::from_code(r.u8().map_err(m)?).ok_or(RosterError::Malformed)?;
        let epoch = r.u64().map_err(m)?;
        let prev_hash = r.array().map_err(m)?;
        let n = r.u16().map_err(m)?;
        let mut members = Vec::with_capacity(usize::from(n).min(1024));
        for _ in 0..n {
            let participant_id: Id16 = r
                .lp()
                .map_err(m)?
                .try_into()
                .map_err(|_| RosterError::Malformed)?;
            members.push(Member {
                participant_id,
                ik_pub: r.array().map_err(m)?,
                ek_pub: r.array().map_err(m)?,
                role: r.u8().map_err(m)?,
                side: r.u8().map_err(m)?,
                flags: r.u8().map_err(m)?,
                name_commit: r.array().map_err(m)?,
            });
        }
        if r.remaining() != 0 {
            return Err(RosterError::Malformed);
        }
        let roster = Roster {
            session_id,
            channel_id,
            kind,
            epoch,
            prev_hash,
            members,
        };
        roster.check()?;
        Ok(roster)
    }

    /// Signs with the mediator's (or a delegate's) identity.
    pub fn sign(self, signer: &Identity) -> Result<SignedRoster, RosterError> {
        let encoded = self.encode()?;
        let signature = signer.sign(&encoded);
        let hash = roster_hash(&encoded, &signature);
        Ok(SignedRoster {
            roster: self,
            encoded,
            signature,
            hash,
        })
    }

    /// The member with this id.
    pub fn member(&self, id: &Id16) -> Option<&Member> {
        self.members.iter().find(|m| &m.participant_id == id)
    }
}

/// `SHA256("confer/1 roster-hash" || roster || signature)`.
pub fn roster_hash(encoded: &[u8], signature: &[u8; 64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confer/1 roster-hash");
    h.update(encoded);
    h.update(signature);
    h.finalize().into()
}

/// A roster with its encoding, signature and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRoster {
    /// Decoded contents.
    pub roster: Roster,
    /// Canonical bytes (what was signed).
    pub encoded: Vec<u8>,
    /// Signature.
    pub signature: [u8; 64],
    /// Chain hash.
    pub hash: [u8; 32],
}

impl SignedRoster {
    /// Decodes received bytes (does not verify the signature; [`Chain::accept`] does).
    pub fn from_parts(encoded: &[u8], signature: [u8; 64]) -> Result<Self, RosterError> {
        let roster = Roster::decode(encoded)?;
        Ok(Self {
            roster,
            encoded: encoded.to_vec(),
            signature,
            hash: roster_hash(encoded, &signature),
        })
    }
}

/// What accepting a roster did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A new head.
    Advanced,
    /// The same roster again; nothing changed.
    Unchanged,
}

/// One channel's chain, verified against the mediator's key and its delegates.
#[derive(Debug, Clone)]
pub struct Chain {
    session_id: Vec<u8>,
    mediator_ik: [u8; 32],
    delegates: Vec<[u8; 32]>,
    head: Option<SignedRoster>,
}

impl Chain {
    /// A chain for a session whose mediator key the client verified.
    pub fn new(session_id: &[u8], mediator_ik: [u8; 32]) -> Self {
        Self {
            session_id: session_id.to_vec(),
            mediator_ik,
            delegates: Vec::new(),
            head: None,
        }
    }

    /// Adds a co-mediator allowed to sign, after checking the mediator's delegation signature.
    pub fn add_delegate(
        &mut self,
        co_ik: [u8; 32],
        scope: u8,
        sig: &[u8; 64],
    ) -> Result<(), RosterError> {
        let msg = identity::delegation_bytes(&self.session_id, &co_ik, scope);
        identity::verify(&self.mediator_ik, &msg, sig).map_err(|_| RosterError::BadSignature)?;
        // Only the scope this version defines; unknown bits are refused, not ignored.
        if scope != identity::SCOPE_ROSTERS {
            return Err(RosterError::BadSignature);
        }
        if !self.delegates.contains(&co_ik) {
            self.delegates.push(co_ik);
        }
        Ok(())
    }

    /// The current roster.
    pub fn head(&self) -> Option<&SignedRoster> {
        self.head.as_ref()
    }

    /// Verifies and, if it extends the chain, adopts `next`. The first roster a client sees
    /// may have any epoch (a late joiner); after that each must be exactly the next.
    pub fn accept(&mut self, next: SignedRoster) -> Result<Accepted, RosterError> {
        let r = &next.roster;
        if r.session_id != self.session_id {
            return Err(RosterError::WrongChannel);
        }
        if let Some(head) = &self.head
            && (head.roster.channel_id != r.channel_id || head.roster.kind != r.kind)
        {
            return Err(RosterError::WrongChannel);
        }
        // The signer must be the mediator (listed with role 0) or a delegate (listed with
        // role 1): the very key that signed, not any key of that kind.
        let (signer, signer_role) =
            if identity::verify(&self.mediator_ik, &next.encoded, &next.signature).is_ok() {
                (self.mediator_ik, 0)
            } else if let Some(d) = self
                .delegates
                .iter()
                .find(|d| identity::verify(d, &next.encoded, &next.signature).is_ok())
            {
                (*d, 1)
            } else {
                return Err(RosterError::BadSignature);
            };
        if !r
            .members
            .iter()
            .any(|m| m.role == signer_role && m.ik_pub == signer)
        {
            return Err(RosterError::SignerNotMember);
        }
        let Some(head) = &self.head else {
            self.head = Some(next);
            return Ok(Accepted::Advanced);
        };
        let cur = head.roster.epoch;
        if r.epoch < cur {
            return Err(RosterError::Rollback);
        }
        if r.epoch == cur {
            return if next.hash == head.hash {
                Ok(Accepted::Unchanged)
            } else {
                Err(RosterError::Fork)
            };
        }
        if r.epoch > cur + 1 {
            return Err(RosterError::Gap);
        }
        if r.prev_hash != head.hash {
            return Err(RosterError::Fork);
        }
        self.head = Some(next);
        Ok(Accepted::Advanced)
    }
}
