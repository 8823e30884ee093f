//! docs.rs: documents shared into a room (e2ee §8.7; TS twin: core/docs.ts). The sharer seals
//! the file in chunks under a fresh key and sends the key (pairwise type 5) to the present
//! members of the room's current roster only; the shell uploads the chunks, which the server
//! stores without the key. A manager may carry a document into another room: re-keyed (a new
//! id and key), sent to that room's present members.

use confer_e2ee::OpenError;
use confer_e2ee::doc::{
    DocAck, DocCipher, DocKeyMsg, MAX_DOC_NAME_BYTES, MAX_DOC_TYPE_BYTES, doc_ack_signed_bytes,
};

use super::*;

/// Documents whose key a client holds at most (bounded like the other per-room state).
pub const MAX_DOCS: usize = 256;

/// A document sealed for upload: its id and its chunks, in order.
#[derive(Debug)]
pub struct SealedDoc {
    /// The document's id.
    pub doc_id: Id16,
    /// The ciphertext chunks (upload them under `doc_id`, index by index).
    pub chunks: Vec<Vec<u8>>,
}

/// Why a document could not be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareRefused {
    /// I am not secured in that room (or, carrying, I am not a manager or it has no roster).
    NotSecured,
    /// The name is empty or too long, or the media type is not plain ASCII of at most 127 bytes.
    BadName,
}

impl std::fmt::Display for ShareRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotSecured => "not secured in that room",
            Self::BadName => "a document needs a name of 1 to 255 bytes and a plain media type",
        })
    }
}

impl std::error::Error for ShareRefused {}

/// A document whose key I hold.
#[derive(Clone)]
pub(super) struct HeldDoc {
    pub(super) from: ParticipantId,
    pub(super) room: ChannelId,
    pub(super) msg: DocKeyMsg,
}

impl HeldDoc {
    fn info(&self) -> DocInfo {
        DocInfo {
            doc_id: self.msg.doc_id,
            from: self.from.clone(),
            room: self.room.clone(),
            name: self.msg.name.clone(),
            media_type: self.msg.media_type.clone(),
            size: self.msg.size,
            sha256: self.msg.sha256,
        }
    }
}

/// The present members of a roster other than me, with their session keys: who gets a room's
/// keys (sender keys, document keys).
pub(super) fn present_others(roster: &Roster, my_id: Id16) -> Vec<(Id16, [u8; 32])> {
    roster
        .members
        .iter()
        .filter(|m| !m.is_away() && m.participant_id != my_id)
        .map(|m| (m.participant_id, m.ek_pub))
        .collect()
}

impl<R: CryptoRng> Core<R> {
    /// Seals `file` for the room I am secured in (`into: None`), or, for managers, for another
    /// room whose roster I signed (`Some(room)`: carrying a document, re-keyed for that room's
    /// members). Returns the chunks to upload; once they are, [`Core::publish_document`] sends
    /// the key to the people then present in that room (so nobody is told of a file that cannot
    /// be fetched yet).
    pub fn share_document(
        &mut self,
        into: Option<&ChannelId>,
        name: &str,
        media_type: &str,
        file: &[u8],
    ) -> Result<SealedDoc, ShareRefused> {
        if name.is_empty()
            || name.len() > MAX_DOC_NAME_BYTES
            || media_type.len() > MAX_DOC_TYPE_BYTES
            || !media_type.bytes().all(|c| (0x21..0x7f).contains(&c))
        {
            return Err(ShareRefused::BadName);
        }
        let room = match into {
            None => self.secured.clone().ok_or(ShareRefused::NotSecured)?,
            Some(r) if self.is_manager() => r.clone(),
            Some(_) => return Err(ShareRefused::NotSecured),
        };
        let (cid, head) = self
            .current_chain(&room)
            .and_then(|(c, s)| Some((*c, s.chain.head()?.roster.clone())))
            .ok_or(ShareRefused::NotSecured)?;
        let me = self.me.as_ref().ok_or(ShareRefused::NotSecured)?;
        let pid = me.pid.clone();
        // Sharing into my own room needs my present entry; a manager carrying a document may
        // be away from the room (every roster lists it).
        let mine = self.my_entry(&head).ok_or(ShareRefused::NotSecured)?;
        if into.is_none() && mine.is_away() {
            return Err(ShareRefused::NotSecured);
        }
        let mut doc_id = [0u8; 16];
        self.rng.fill_bytes(&mut doc_id);
        let msg = DocKeyMsg {
            channel_id: cid,
            doc_id,
            file_key: Secret32::random(&mut self.rng),
            size: file.len() as u64,
            sha256: Sha256::digest(file).into(),
            name: name.to_owned(),
            media_type: media_type.to_owned(),
        };
        let chunks = DocCipher::new(&msg.file_key, doc_id).seal_all(file);
        if self.docs_sealed.len() >= MAX_DOCS {
            return Err(ShareRefused::NotSecured);
        }
        self.docs_sealed.insert(
            doc_id,
            HeldDoc {
                from: pid,
                room,
                msg,
            },
        );
        Ok(SealedDoc { doc_id, chunks })
    }

    /// Sends the key of a document I sealed (its chunks are uploaded) to the people present in
    /// its room now (pairwise type 5), under the room's current chain. Refused when I am no
    /// longer secured there (or, carrying, no longer a manager): the key goes nowhere.
    pub fn publish_document(&mut self, doc_id: &Id16) -> Result<(), ShareRefused> {
        let mut d = self
            .docs_sealed
            .remove(doc_id)
            .ok_or(ShareRefused::NotSecured)?;
        let carrying = self.secured.as_ref() != Some(&d.room);
        if carrying && !self.is_manager() {
            return Err(ShareRefused::NotSecured);
        }
        let (cid, head) = self
            .current_chain(&d.room)
            .and_then(|(c, s)| Some((*c, s.chain.head()?.roster.clone())))
            .ok_or(ShareRefused::NotSecured)?;
        let my_id = self.me.as_ref().ok_or(ShareRefused::NotSecured)?.id;
        let mine = self.my_entry(&head).ok_or(ShareRefused::NotSecured)?;
        if !carrying && mine.is_away() {
            return Err(ShareRefused::NotSecured);
        }
        d.msg.channel_id = cid;
        let pt = Zeroizing::new(d.msg.encode());
        for (id, ek) in present_others(&head, my_id) {
            self.send_pairwise(id, &ek, MsgType::DocKey, &pt, None);
        }
        self.keep_doc(d);
        Ok(())
    }

    /// Keeps a document I sealed for myself only: its key goes to nobody (the mediator's notes;
    /// the server stores the chunks, and the key dies with this client at the end).
    pub fn keep_document_private(&mut self, doc_id: &Id16) -> Result<(), ShareRefused> {
        let d = self
            .docs_sealed
            .remove(doc_id)
            .ok_or(ShareRefused::NotSecured)?;
        self.keep_doc(d);
        Ok(())
    }

    /// Opens a document whose key I hold from its chunks, in order; checks its size and hash.
    pub fn open_document(&self, doc_id: &Id16, chunks: &[Vec<u8>]) -> Result<Vec<u8>, OpenError> {
        let d = self.docs.get(doc_id).ok_or(OpenError)?;
        DocCipher::new(&d.msg.file_key, d.msg.doc_id).open_all(chunks, &d.msg)
    }

    /// The documents whose key I hold: (id, who shared it, the room, name, media type, size).
    pub fn documents(&self) -> Vec<DocInfo> {
        self.docs.values().map(HeldDoc::info).collect()
    }

    /// Acknowledges one version of a document I hold (a settlement draft): signs its SHA-256
    /// with my identity key and sends that to the mediator (pairwise type 6), who verifies it.
    pub fn acknowledge_document(&mut self, doc_id: &Id16) -> Result<(), ShareRefused> {
        let sha256 = self
            .docs
            .get(doc_id)
            .map(|d| d.msg.sha256)
            .ok_or(ShareRefused::NotSecured)?;
        let (Some(me), Some(identity), Some((m_pid, _, m_ek))) = (
            self.me.as_ref(),
            self.identity.as_ref(),
            self.mediator.as_ref(),
        ) else {
            return Err(ShareRefused::NotSecured);
        };
        if *m_pid == me.pid {
            return Err(ShareRefused::NotSecured);
        }
        let ack = DocAck {
            sha256,
            signature: identity.sign(&doc_ack_signed_bytes(&me.session, &me.id, &sha256)),
        };
        let (Some(m_id), m_ek) = (id16(m_pid), *m_ek) else {
            return Err(ShareRefused::NotSecured);
        };
        self.send_pairwise(m_id, &m_ek, MsgType::DocAck, &ack.encode(), None);
        Ok(())
    }

    /// Mediators: who acknowledged which document I hold (verified signatures), by document.
    pub fn document_acks(&self) -> Vec<(Id16, ParticipantId)> {
        let mut out = Vec::new();
        for (p, sha) in &self.doc_acks {
            for d in self.docs.values().filter(|d| d.msg.sha256 == *sha) {
                out.push((d.msg.doc_id, p.clone()));
            }
        }
        out.sort();
        out
    }

    // Mediators: a participant's acknowledgment of a version (type 6), verified under the
    // identity key this client holds for it, of a version this client holds.
    pub(super) fn on_doc_ack(&mut self, from: ParticipantId, from_id: Id16, pt: &[u8]) {
        let Ok(ack) = DocAck::decode(pt) else {
            self.failed(FailureReason::PairwiseDecode);
            return;
        };
        if !self.is_mediator() || !self.docs.values().any(|d| d.msg.sha256 == ack.sha256) {
            return;
        }
        let (Some(me), Some(peer)) = (self.me.as_ref(), self.manager.peers.get(&from)) else {
            return;
        };
        if !peer.consent_ok
            || verify(
                &peer.ann.ik_pub,
                &doc_ack_signed_bytes(&me.session, &from_id, &ack.sha256),
                &ack.signature,
            )
            .is_err()
        {
            return;
        }
        if self.doc_acks.len() < MAX_DOCS * 4 && self.doc_acks.insert((from.clone(), ack.sha256)) {
            self.events.push_back(Event::DocumentAcknowledged {
                participant_id: from,
                sha256: ack.sha256,
            });
        }
    }

    fn keep_doc(&mut self, d: HeldDoc) {
        if self.docs.len() >= MAX_DOCS && !self.docs.contains_key(&d.msg.doc_id) {
            return;
        }
        let info = d.info();
        self.docs.insert(d.msg.doc_id, d);
        self.events.push_back(Event::Document(info));
    }

    // A document's key (type 5): taken only for a room's current chain whose roster lists the
    // sender (present, or a manager carrying it in) and me as present; never a second time.
    pub(super) fn on_doc_key(&mut self, from: ParticipantId, from_id: Id16, pt: &[u8]) {
        let Ok(msg) = DocKeyMsg::decode(pt) else {
            self.failed(FailureReason::PairwiseDecode);
            return;
        };
        let Some(room) = self
            .rooms
            .iter()
            .find(|(_, r)| r.current == Some(msg.channel_id))
            .map(|(ch, _)| ch.clone())
        else {
            return;
        };
        let Some(head) = self
            .chains
            .get(&msg.channel_id)
            .and_then(|s| s.chain.head())
        else {
            return;
        };
        let sender_ok = head.roster.member(&from_id).is_some_and(|m| {
            !m.is_away() || role_from_code(m.role).is_some_and(|r| r.is_manager())
        });
        let me_present = self.my_entry(&head.roster).is_some_and(|m| !m.is_away());
        if !sender_ok || !me_present || self.docs.contains_key(&msg.doc_id) {
            return;
        }
        self.keep_doc(HeldDoc { from, room, msg });
    }
}

/// What a client shows of a document whose key it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocInfo {
    /// The document's id (the server stores its chunks under it).
    pub doc_id: Id16,
    /// Who shared it.
    pub from: ParticipantId,
    /// The room it was shared into.
    pub room: ChannelId,
    /// Its name.
    pub name: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its content (what an acknowledgment of this version names).
    pub sha256: [u8; 32],
}
