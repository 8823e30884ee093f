//! Documents (e2ee.md §8.7): a file shared into a room, encrypted in chunks under a fresh
//! per-file key that is sent pairwise (type 5) to the room's present members only. The server
//! stores the chunks and never sees the key.
//!
//! ```text
//! doc_key   = HKDF-SHA256(ikm = file_key, salt = "", info = "confer/1 doc" || lp(doc_id))  (32 bytes)
//! nonce(i)  = u32(0) || u64(i)
//! aad(i)    = "confer/1 doc-chunk" || lp(doc_id) || u64(i) || u8(last)
//! chunk(i)  = ChaCha20-Poly1305(doc_key, nonce(i), aad(i), plaintext[i*CHUNK .. (i+1)*CHUNK])
//! ```
//!
//! Every chunk but the last holds exactly [`CHUNK_BYTES`] of plaintext; the last (flag 1) holds
//! 0 to [`CHUNK_BYTES`]; an empty file is one empty last chunk. A reader opens chunks in order
//! and takes the file only when the last one opened and the SHA-256 of everything matches the
//! type 5 message: reordered, dropped, duplicated or truncated chunks do not open.

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::enc::{Reader, Writer};
use crate::secret::Secret32;
use crate::{Id16, OpenError};

/// Plaintext bytes per chunk (the last may hold fewer).
pub const CHUNK_BYTES: usize = 65_536;
/// The AEAD tag each chunk adds.
pub const CHUNK_TAG: usize = 16;
/// The longest document name, in UTF-8 bytes.
pub const MAX_DOC_NAME_BYTES: usize = 255;
/// The longest media type, in bytes (ASCII).
pub const MAX_DOC_TYPE_BYTES: usize = 127;

/// A document's key, bound to its id.
pub struct DocCipher {
    doc_id: Id16,
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for DocCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocCipher([redacted])")
    }
}

fn aad(doc_id: &Id16, index: u64, last: bool) -> Vec<u8> {
    let mut w = Writer::label(b"confer/1 doc-chunk");
    w.lp(doc_id).u64(index).u8(u8::from(last));
    w.into_bytes()
}

fn nonce(index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

impl DocCipher {
    /// The chunk cipher of document `doc_id` under `file_key`.
    pub fn new(file_key: &Secret32, doc_id: Id16) -> Self {
        let prk = Hkdf::<Sha256>::new(Some(&[]), file_key.expose());
        let mut key = [0u8; 32];
        let info = {
            let mut w = Writer::label(b"confer/1 doc");
            w.lp(&doc_id);
            w.into_bytes()
        };
        prk.expand(&info, &mut key)
            .expect("a 32-byte HKDF output is within bounds");
        let cipher = ChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key");
        key.zeroize();
        Self { doc_id, cipher }
    }

    /// How many chunks a file of `size` bytes has (at least one).
    pub fn chunks_for(size: u64) -> u64 {
        let chunk = CHUNK_BYTES as u64;
        if size == 0 { 1 } else { size.div_ceil(chunk) }
    }

    /// Seals chunk `index` (`last` for the final one).
    pub fn seal_chunk(&self, index: u64, last: bool, plaintext: &[u8]) -> Vec<u8> {
        let aad = aad(&self.doc_id, index, last);
        self.cipher
            .encrypt(
                &nonce(index).into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("ChaCha20-Poly1305 seals any chunk under 256 GiB")
    }

    /// Opens chunk `index` (`last` for the final one).
    pub fn open_chunk(&self, index: u64, last: bool, chunk: &[u8]) -> Result<Vec<u8>, OpenError> {
        if chunk.len() < CHUNK_TAG || chunk.len() > CHUNK_BYTES + CHUNK_TAG {
            return Err(OpenError);
        }
        let aad = aad(&self.doc_id, index, last);
        self.cipher
            .decrypt(
                &nonce(index).into(),
                Payload {
                    msg: chunk,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError)
    }

    /// Seals a whole file into its chunks.
    pub fn seal_all(&self, file: &[u8]) -> Vec<Vec<u8>> {
        let n = Self::chunks_for(file.len() as u64);
        (0..n)
            .map(|i| {
                let at = usize::try_from(i)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(CHUNK_BYTES);
                let end = at.saturating_add(CHUNK_BYTES).min(file.len());
                self.seal_chunk(i, i + 1 == n, file.get(at..end).unwrap_or(&[]))
            })
            .collect()
    }

    /// Opens every chunk in order and checks the file against its announced size and hash.
    pub fn open_all(&self, chunks: &[Vec<u8>], meta: &DocKeyMsg) -> Result<Vec<u8>, OpenError> {
        let n = Self::chunks_for(meta.size);
        if chunks.len() as u64 != n {
            return Err(OpenError);
        }
        let mut out = Vec::with_capacity(usize::try_from(meta.size).map_err(|_| OpenError)?);
        for (i, c) in (0u64..).zip(chunks) {
            let last = i + 1 == n;
            let pt = self.open_chunk(i, last, c)?;
            if !last && pt.len() != CHUNK_BYTES {
                return Err(OpenError);
            }
            out.extend_from_slice(&pt);
        }
        if out.len() as u64 != meta.size || <[u8; 32]>::from(Sha256::digest(&out)) != meta.sha256 {
            out.zeroize();
            return Err(OpenError);
        }
        Ok(out)
    }
}

/// Pairwise type 5: a document's key and what it is, sent to each present member of the room
/// it is shared into.
#[derive(Clone, PartialEq, Eq)]
pub struct DocKeyMsg {
    /// The chain (room) it is shared into.
    pub channel_id: Id16,
    /// The document's random id.
    pub doc_id: Id16,
    /// The file key.
    pub file_key: Secret32,
    /// The file's size in bytes.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
    /// Its name (1 to [`MAX_DOC_NAME_BYTES`] bytes of UTF-8).
    pub name: String,
    /// Its media type (0 to [`MAX_DOC_TYPE_BYTES`] bytes of printable ASCII).
    pub media_type: String,
}

impl std::fmt::Debug for DocKeyMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is secret, and a document's name is personal data: neither goes to logs.
        f.debug_struct("DocKeyMsg")
            .field("size", &self.size)
            .field("file_key", &"[redacted]")
            .field("name", &"[redacted]")
            .finish()
    }
}

impl DocKeyMsg {
    /// `"confer/1 doc-key" || lp(channel_id) || lp(doc_id) || file_key[32] || u64(size) ||
    /// sha256[32] || lp(name) || lp(media_type)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::label(b"confer/1 doc-key");
        w.lp(&self.channel_id)
            .lp(&self.doc_id)
            .raw(self.file_key.expose())
            .u64(self.size)
            .raw(&self.sha256)
            .lp(self.name.as_bytes())
            .lp(self.media_type.as_bytes());
        w.into_bytes()
    }

    /// Strict decode: 16-byte ids, a name of 1 to 255 bytes of UTF-8, a media type of at most
    /// 127 printable ASCII bytes, nothing after.
    pub fn decode(b: &[u8]) -> Result<Self, OpenError> {
        let e = |_| OpenError;
        let mut r = Reader::new(b);
        r.expect(b"confer/1 doc-key").map_err(e)?;
        let channel_id: Id16 = r.lp().map_err(e)?.try_into().map_err(|_| OpenError)?;
        let doc_id: Id16 = r.lp().map_err(e)?.try_into().map_err(|_| OpenError)?;
        let file_key = Secret32::new(r.array().map_err(e)?);
        let size = r.u64().map_err(e)?;
        let sha256 = r.array().map_err(e)?;
        let name = r.lp().map_err(e)?;
        let media_type = r.lp().map_err(e)?;
        if r.remaining() != 0
            || name.is_empty()
            || name.len() > MAX_DOC_NAME_BYTES
            || media_type.len() > MAX_DOC_TYPE_BYTES
            || !media_type.iter().all(|c| (0x21..0x7f).contains(c))
        {
            return Err(OpenError);
        }
        let name = std::str::from_utf8(name).map_err(|_| OpenError)?.to_owned();
        let media_type = std::str::from_utf8(media_type)
            .map_err(|_| OpenError)?
            .to_owned();
        Ok(Self {
            channel_id,
            doc_id,
            file_key,
            size,
            sha256,
            name,
            media_type,
        })
    }
}

/// What a participant signs when it acknowledges one version of a document (a settlement
/// draft): its session, its own id and the SHA-256 of the file.
pub fn doc_ack_signed_bytes(
    session_id: &[u8],
    participant_id: &Id16,
    sha256: &[u8; 32],
) -> Vec<u8> {
    let mut w = Writer::label(b"confer/1 doc-ack");
    w.lp(session_id).lp(participant_id).raw(sha256);
    w.into_bytes()
}

/// Pairwise type 6: a participant's acknowledgment of one version of a document, to the
/// mediator: `sha256[32] || signature[64]`, the signature by its identity key over
/// [`doc_ack_signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocAck {
    /// SHA-256 of the version acknowledged.
    pub sha256: [u8; 32],
    /// The participant's signature.
    pub signature: [u8; 64],
}

impl DocAck {
    /// The 96 bytes.
    pub fn encode(&self) -> Vec<u8> {
        [&self.sha256[..], &self.signature[..]].concat()
    }

    /// Exactly 96 bytes.
    pub fn decode(b: &[u8]) -> Result<Self, OpenError> {
        let e = |_| OpenError;
        let mut r = Reader::new(b);
        let sha256 = r.array().map_err(e)?;
        let signature = r.array().map_err(e)?;
        if r.remaining() != 0 {
            return Err(OpenError);
        }
        Ok(Self { sha256, signature })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(file: &[u8]) -> DocKeyMsg {
        DocKeyMsg {
            channel_id: [1; 16],
            doc_id: [2; 16],
            file_key: Secret32::new([3; 32]),
            size: file.len() as u64,
            sha256: Sha256::digest(file).into(),
            name: "agreement draft.pdf".into(),
            media_type: "application/pdf".into(),
        }
    }

    #[test]
    fn a_file_round_trips_in_chunks_and_nothing_else_opens() {
        let file: Vec<u8> = (0..CHUNK_BYTES * 2 + 10).map(|i| (i % 251) as u8).collect();
        let m = meta(&file);
        let c = DocCipher::new(&m.file_key, m.doc_id);
        let chunks = c.seal_all(&file);
        assert_eq!(chunks.len(), 3);
        assert_eq!(c.open_all(&chunks, &m).unwrap(), file);
        // Reordered, truncated, a tampered byte, another document's id, another key.
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(c.open_all(&swapped, &m).is_err());
        assert!(c.open_all(&chunks[..2], &m).is_err());
        let mut short = m.clone();
        short.size = (CHUNK_BYTES * 2) as u64;
        assert!(
            c.open_all(&chunks[..2], &short).is_err(),
            "chunk 1 is not a last chunk"
        );
        let mut tampered = chunks.clone();
        tampered[2][0] ^= 1;
        assert!(c.open_all(&tampered, &m).is_err());
        let other = DocCipher::new(&m.file_key, [9; 16]);
        assert!(other.open_all(&chunks, &m).is_err());
        let wrong = DocCipher::new(&Secret32::new([4; 32]), m.doc_id);
        assert!(wrong.open_all(&chunks, &m).is_err());
        let mut lie = m;
        lie.sha256[0] ^= 1;
        assert!(c.open_all(&chunks, &lie).is_err(), "the hash is checked");
    }

    #[test]
    fn an_empty_file_is_one_empty_last_chunk() {
        let m = meta(b"");
        let c = DocCipher::new(&m.file_key, m.doc_id);
        let chunks = c.seal_all(b"");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].len(), CHUNK_TAG);
        assert_eq!(c.open_all(&chunks, &m).unwrap(), b"");
    }

    #[test]
    fn the_key_message_decodes_strictly() {
        let m = meta(b"x");
        let enc = m.encode();
        assert_eq!(DocKeyMsg::decode(&enc).unwrap(), m);
        let mut longer = enc.clone();
        longer.push(0);
        assert!(DocKeyMsg::decode(&longer).is_err());
        assert!(DocKeyMsg::decode(&enc[..enc.len() - 1]).is_err());
        let mut bad = m.clone();
        bad.media_type = "text/plain; x".into();
        assert!(
            DocKeyMsg::decode(&bad.encode()).is_err(),
            "a space is not allowed"
        );
        bad.media_type = String::new();
        bad.name = String::new();
        assert!(
            DocKeyMsg::decode(&bad.encode()).is_err(),
            "a name is required"
        );
        assert!(!format!("{m:?}").contains("agreement"));
    }
}
