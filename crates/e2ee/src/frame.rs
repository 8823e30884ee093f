//! Sender keys, the per-generation ratchet, frames, the replay window and data padding.
//!
//! ```text
//! ctx    = lp(session_id) || lp(channel_id) || lp(sender_id) || u8(stream)
//! secret = HKDF-Extract(salt = "", ikm = step_key)          # step_key(0) = base_key
//! key    = HKDF-Expand(secret, "confer/1 frame key "  || u64(KID) || u16(0xF001) || ctx, 32)
//! salt   = HKDF-Expand(secret, "confer/1 frame salt " || u64(KID) || u16(0xF001) || ctx, 12)
//! step_key(i+1) = HKDF-Expand(secret, "confer/1 ratchet" || ctx, 32)
//! nonce  = salt XOR (0x00000000 || u64(CTR))
//! frame  = clear_prefix || AEAD(key, nonce, aad = header || clear_prefix, body) || header || u8(len(header))
//! ```

use std::collections::BTreeMap;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::enc::{Reader, Writer};
use crate::secret::Secret32;
use crate::{Id16, OpenError};

/// SFrame cipher suite id of ChaCha20-Poly1305 with a 16-byte tag (private range).
pub const SUITE: u16 = 0xF001;
/// Ratchet steps per generation: 0..=15.
pub const MAX_STEP: u8 = 15;
/// How far ahead of the highest seen CTR a frame may be.
pub const MAX_CTR_JUMP: u64 = 1 << 16;
/// The replay window.
pub const WINDOW: u64 = 128;
/// Stream numbers.
pub const STREAM_AUDIO: u8 = 0;
/// Camera.
pub const STREAM_CAMERA: u8 = 1;
/// Screen share.
pub const STREAM_SCREEN: u8 = 2;
/// Chat, notes.
pub const STREAM_DATA: u8 = 3;

/// How the payload's clear prefix is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// VP8: 10 clear bytes for a key frame, 1 for a delta frame.
    Vp8,
    /// Opus: nothing in clear.
    Opus,
    /// Data (stream 3): nothing in clear; padded to a multiple of 256 bytes.
    Data,
}

impl Codec {
    /// The name used in vectors.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "vp8",
            Codec::Opus => "opus",
            Codec::Data => "data",
        }
    }

    /// From the vector name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "vp8" => Codec::Vp8,
            "opus" => Codec::Opus,
            "data" => Codec::Data,
            _ => return None,
        })
    }

    /// The clear prefix length for a payload starting with `first` (None: the payload is
    /// too short to carry one, which is never sent and always rejected).
    fn prefix_len(self, payload: &[u8]) -> Option<usize> {
        match self {
            Codec::Opus | Codec::Data => Some(0),
            Codec::Vp8 => {
                let first = *payload.first()?;
                let n = if first & 1 == 0 { 10 } else { 1 };
                (payload.len() >= n).then_some(n)
            }
        }
    }
}

/// Stream 3 carries data and nothing else; streams 0-2 carry media and never data, so a frame
/// can never be opened as another kind than it was sealed as.
fn codec_fits(codec: Codec, stream: u8) -> bool {
    (codec == Codec::Data) == (stream == STREAM_DATA)
}

/// Generations are below 2^60 so that `generation << 4` fits a KID.
pub const MAX_GENERATION: u64 = (1 << 60) - 1;

/// The context every key of one (session, channel, sender, stream) is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameCtx {
    bytes: Vec<u8>,
    /// The stream.
    pub stream: u8,
}

impl FrameCtx {
    /// `None` when the session id is empty or over 64 bytes, or the stream is not 0..=3.
    pub fn new(session_id: &[u8], channel_id: Id16, sender_id: Id16, stream: u8) -> Option<Self> {
        if session_id.is_empty() || session_id.len() > 64 || stream > STREAM_DATA {
            return None;
        }
        let mut w = Writer::default();
        w.lp(session_id).lp(&channel_id).lp(&sender_id).u8(stream);
        Some(Self {
            bytes: w.into_bytes(),
            stream,
        })
    }

    /// The encoded ctx.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// KID of (generation, step).
pub fn kid(generation: u64, step: u8) -> u64 {
    (generation << 4) | u64(step & 0x0f)
}

fn u64(x: u8) -> u64 {
    u64::from(x)
}

/// The frame key and salt of one step key.
pub struct StepKeys {
    /// ChaCha20-Poly1305 key.
    pub key: Secret32,
    /// Nonce salt.
    pub salt: [u8; 12],
    /// The cipher, keyed once rather than per frame.
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for StepKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepKeys([redacted])")
    }
}

fn expand(prk: &Hkdf<Sha256>, info: &[&[u8]], out: &mut [u8]) {
    // Lengths of 12 and 32 bytes are far below HKDF-SHA256's limit.
    prk.expand_multi_info(info, out)
        .expect("HKDF output length within bounds");
}

/// Derives the frame key and salt for `kid` from `step_key`.
pub fn derive(step_key: &Secret32, kid: u64, ctx: &FrameCtx) -> StepKeys {
    let prk = Hkdf::<Sha256>::new(Some(&[]), step_key.expose());
    let kid_b = kid.to_be_bytes();
    let suite = SUITE.to_be_bytes();
    let mut key = [0u8; 32];
    expand(
        &prk,
        &[b"confer/1 frame key ", &kid_b, &suite, ctx.as_bytes()],
        &mut key,
    );
    let mut salt = [0u8; 12];
    expand(
        &prk,
        &[b"confer/1 frame salt ", &kid_b, &suite, ctx.as_bytes()],
        &mut salt,
    );
    // A 32-byte key always fits ChaCha20-Poly1305.
    let cipher = ChaCha20Poly1305::new_from_slice(&key).expect("a 32-byte key");
    let out = StepKeys {
        key: Secret32::new(key),
        salt,
        cipher,
    };
    key.zeroize();
    out
}

/// `step_key(i+1)` from `step_key(i)`.
pub fn ratchet(step_key: &Secret32, ctx: &FrameCtx) -> Secret32 {
    let prk = Hkdf::<Sha256>::new(Some(&[]), step_key.expose());
    let mut next = [0u8; 32];
    expand(&prk, &[b"confer/1 ratchet", ctx.as_bytes()], &mut next);
    let out = Secret32::new(next);
    next.zeroize();
    out
}

/// `salt XOR (0x00000000 || u64(ctr))`.
pub fn nonce(salt: &[u8; 12], ctr: u64) -> [u8; 12] {
    let mut n = *salt;
    for (i, b) in ctr.to_be_bytes().iter().enumerate() {
        n[4 + i] ^= b;
    }
    n
}

fn min_len(v: u64) -> usize {
    (8 - (v.leading_zeros() / 8) as usize).max(1)
}

/// RFC 9605 §4.3 header of (KID, CTR): `X|K|Y|C` then the extended KID and CTR bytes.
pub fn encode_header(kid: u64, ctr: u64) -> Vec<u8> {
    let mut out = vec![0u8];
    if kid < 8 {
        out[0] |= (kid as u8) << 4;
    } else {
        let n = min_len(kid);
        out[0] |= 0x80 | (((n - 1) as u8) << 4);
        out.extend_from_slice(&kid.to_be_bytes()[8 - n..]);
    }
    if ctr < 8 {
        out[0] |= ctr as u8;
    } else {
        let n = min_len(ctr);
        out[0] |= 0x08 | ((n - 1) as u8);
        out.extend_from_slice(&ctr.to_be_bytes()[8 - n..]);
    }
    out
}

/// Parses a header that must fill `bytes` exactly and be minimally encoded.
pub fn decode_header(bytes: &[u8]) -> Result<(u64, u64), OpenError> {
    let mut r = Reader::new(bytes);
    let cfg = r.u8().map_err(|_| OpenError)?;
    let mut field = |ext: bool, small: u8| -> Result<u64, OpenError> {
        if !ext {
            return Ok(u64::from(small));
        }
        let n = usize::from(small) + 1;
        let b = r.take(n).map_err(|_| OpenError)?;
        let v = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        // Minimal: an extended field holds 8 or more, in the fewest bytes.
        if v < 8 || min_len(v) != n {
            return Err(OpenError);
        }
        Ok(v)
    };
    let kid = field(cfg & 0x80 != 0, (cfg >> 4) & 0x07)?;
    let ctr = field(cfg & 0x08 != 0, cfg & 0x07)?;
    if r.remaining() != 0 {
        return Err(OpenError);
    }
    Ok((kid, ctr))
}

/// `u16(len) || message || zeros` to a multiple of 256 bytes.
pub fn pad(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let total = (message.len() + 2).div_ceil(256) * 256;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out.resize(total, 0);
    Some(out)
}

/// Strict inverse of [`pad`].
pub fn unpad(padded: &[u8]) -> Result<Vec<u8>, OpenError> {
    if padded.len() < 256 || !padded.len().is_multiple_of(256) {
        return Err(OpenError);
    }
    let len = usize::from(u16::from_be_bytes([padded[0], padded[1]]));
    // Exactly the length `pad` produces: no extra zero blocks.
    if padded.len() != (len + 2).div_ceil(256) * 256 {
        return Err(OpenError);
    }
    let body = padded.get(2..2 + len).ok_or(OpenError)?;
    if padded[2 + len..].iter().any(|b| *b != 0) {
        return Err(OpenError);
    }
    Ok(body.to_vec())
}

/// Sealing was refused (payload too short for its codec, or too long to pad).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealError;

/// Seals one payload under explicit keys (the core of [`Sealer::seal`], used by vectors).
pub fn seal_with(
    keys: &StepKeys,
    kid: u64,
    ctr: u64,
    codec: Codec,
    payload: &[u8],
) -> Result<Vec<u8>, SealError> {
    let padded;
    let (prefix, body): (&[u8], &[u8]) = match codec {
        Codec::Data => {
            padded = pad(payload).ok_or(SealError)?;
            (&[], &padded)
        }
        _ => {
            let n = codec.prefix_len(payload).ok_or(SealError)?;
            payload.split_at(n)
        }
    };
    let header = encode_header(kid, ctr);
    let mut aad = header.clone();
    aad.extend_from_slice(prefix);
    let cipher = &keys.cipher;
    let n = nonce(&keys.salt, ctr);
    let ct = cipher
        .encrypt(
            &n.into(),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| SealError)?;
    let mut frame = Vec::with_capacity(prefix.len() + ct.len() + header.len() + 1);
    frame.extend_from_slice(prefix);
    frame.extend_from_slice(&ct);
    frame.extend_from_slice(&header);
    frame.push(header.len() as u8);
    Ok(frame)
}

/// A parsed frame: its KID, CTR and the pieces to decrypt.
struct Parsed<'a> {
    kid: u64,
    ctr: u64,
    header: &'a [u8],
    prefix: &'a [u8],
    ct: &'a [u8],
}

fn parse(codec: Codec, frame: &[u8]) -> Result<Parsed<'_>, OpenError> {
    let (&hlen, rest) = frame.split_last().ok_or(OpenError)?;
    let hlen = usize::from(hlen);
    if hlen == 0 || hlen > 17 || hlen > rest.len() {
        return Err(OpenError);
    }
    let (body, header) = rest.split_at(rest.len() - hlen);
    let (kid, ctr) = decode_header(header)?;
    let n = codec.prefix_len(body).ok_or(OpenError)?;
    let (prefix, ct) = body.split_at(n);
    if ct.len() < 16 {
        return Err(OpenError);
    }
    Ok(Parsed {
        kid,
        ctr,
        header,
        prefix,
        ct,
    })
}

/// The generation a frame's KID names, after the structural checks of steps 1-3 of receiving
/// (trailer, minimal header, clear prefix, ciphertext length for `codec`); nothing is
/// decrypted. A receiver uses it to find the one key that can open the frame (no trial
/// decryption), and to hold a well-formed frame whose key has not arrived yet while dropping
/// a malformed one at once.
pub fn frame_generation(codec: Codec, frame: &[u8]) -> Result<u64, OpenError> {
    Ok(parse(codec, frame)?.kid >> 4)
}

fn decrypt(keys: &StepKeys, p: &Parsed<'_>, codec: Codec) -> Result<Vec<u8>, OpenError> {
    let mut aad = p.header.to_vec();
    aad.extend_from_slice(p.prefix);
    let cipher = &keys.cipher;
    let body = cipher
        .decrypt(
            &nonce(&keys.salt, p.ctr).into(),
            Payload {
                msg: p.ct,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError)?;
    match codec {
        Codec::Data => unpad(&body),
        _ => {
            let mut out = p.prefix.to_vec();
            out.extend_from_slice(&body);
            Ok(out)
        }
    }
}

/// Opens one frame under explicit keys (vectors; the KID and CTR in the header are not checked
/// against a window).
pub fn open_with(keys: &StepKeys, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
    let p = parse(codec, frame)?;
    decrypt(keys, &p, codec)
}

/// The sending side of one (channel, sender, stream): current generation, step and counter.
#[derive(Debug)]
pub struct Sealer {
    ctx: FrameCtx,
    generation: u64,
    step: u8,
    step_key: Secret32,
    keys: StepKeys,
    ctr: u64,
}

/// The generation is used up (step 15 reached, or the counter wrapped): make a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedNewGeneration;

impl Sealer {
    /// Starts generation `generation` at step 0 with `base_key`.
    pub fn new(ctx: FrameCtx, base_key: [u8; 32], generation: u64) -> Self {
        Self::with_key(ctx, &Secret32::new(base_key), generation)
    }

    /// [`Sealer::new`] from a key held as a secret (no plain copy of it is made).
    pub fn with_key(ctx: FrameCtx, base_key: &Secret32, generation: u64) -> Self {
        let step_key = base_key.clone();
        let keys = derive(&step_key, kid(generation, 0), &ctx);
        Self {
            ctx,
            generation,
            step: 0,
            step_key,
            keys,
            ctr: 0,
        }
    }

    /// The generation in use.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ratchet step in use.
    pub fn step(&self) -> u8 {
        self.step
    }

    /// Moves to the next ratchet step (the 60 s timer); the old step key is forgotten.
    pub fn ratchet(&mut self) -> Result<(), NeedNewGeneration> {
        if self.step >= MAX_STEP {
            return Err(NeedNewGeneration);
        }
        self.step_key = ratchet(&self.step_key, &self.ctx);
        self.step += 1;
        self.keys = derive(&self.step_key, kid(self.generation, self.step), &self.ctx);
        self.ctr = 0;
        Ok(())
    }

    /// Seals a payload (for [`Codec::Data`], the message before padding). The codec must fit
    /// the stream (data on stream 3 only), and the generation must be at most [`MAX_GENERATION`].
    pub fn seal(&mut self, codec: Codec, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        if !codec_fits(codec, self.ctx.stream) || self.generation > MAX_GENERATION {
            return Err(SealError);
        }
        let frame = seal_with(
            &self.keys,
            kid(self.generation, self.step),
            self.ctr,
            codec,
            payload,
        )?;
        self.ctr = self.ctr.checked_add(1).ok_or(SealError)?;
        Ok(frame)
    }
}

/// A 128-frame sliding window over counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit i set: `highest - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Would `ctr` be accepted?
    pub fn check(&self, ctr: u64) -> bool {
        let Some(h) = self.highest else { return true };
        if ctr > h {
            return ctr - h <= MAX_CTR_JUMP;
        }
        let back = h - ctr;
        back < WINDOW && self.seen & (1u128 << back) == 0
    }

    /// Records an accepted `ctr` (call only after [`ReplayWindow::check`] and a successful open).
    pub fn commit(&mut self, ctr: u64) {
        match self.highest {
            None => {
                self.highest = Some(ctr);
                self.seen = 1;
            }
            Some(h) if ctr > h => {
                let shift = ctr - h;
                self.seen = if shift >= 128 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.highest = Some(ctr);
            }
            Some(h) => self.seen |= 1u128 << (h - ctr),
        }
    }
}

struct Generation {
    /// step_key(i) for i = 0..=highest step derived so far, with its frame keys.
    steps: Vec<(Secret32, StepKeys)>,
    windows: BTreeMap<u8, ReplayWindow>,
}

/// The receiving side of one (channel, sender, stream).
pub struct Opener {
    ctx: FrameCtx,
    generations: BTreeMap<u64, Generation>,
    /// Frames dropped because they did not open.
    pub failures: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("generations", &self.generations.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Opener {
    /// No keys yet.
    pub fn new(ctx: FrameCtx) -> Self {
        Self {
            ctx,
            generations: BTreeMap::new(),
            failures: 0,
        }
    }

    /// Installs a generation's base key (ignored above [`MAX_GENERATION`]).
    pub fn add_generation(&mut self, generation: u64, base_key: [u8; 32]) {
        self.add_generation_key(generation, &Secret32::new(base_key));
    }

    /// [`Opener::add_generation`] from a key held as a secret (no plain copy of it is made).
    pub fn add_generation_key(&mut self, generation: u64, base_key: &Secret32) {
        if generation > MAX_GENERATION {
            return;
        }
        let base = base_key.clone();
        let keys = derive(&base, kid(generation, 0), &self.ctx);
        self.generations.insert(
            generation,
            Generation {
                steps: vec![(base, keys)],
                windows: BTreeMap::new(),
            },
        );
    }

    /// Forgets (and zeroizes) a generation.
    pub fn remove_generation(&mut self, generation: u64) {
        self.generations.remove(&generation);
    }

    /// Forgets every generation older than `generation`.
    pub fn retain_from(&mut self, generation: u64) {
        self.generations.retain(|g, _| *g >= generation);
    }

    /// Generations held.
    pub fn generations(&self) -> Vec<u64> {
        self.generations.keys().copied().collect()
    }

    /// Whether a generation is held.
    pub fn holds(&self, generation: u64) -> bool {
        self.generations.contains_key(&generation)
    }

    /// The oldest generation held.
    pub fn oldest(&self) -> Option<u64> {
        self.generations.keys().next().copied()
    }

    /// Opens a frame: the key comes from the KID (never trial decryption), the counter must
    /// pass the replay window, and on any failure the frame is dropped and counted.
    pub fn open(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        let r = self.try_open(codec, frame);
        if r.is_err() {
            self.failures += 1;
        }
        r
    }

    fn try_open(&mut self, codec: Codec, frame: &[u8]) -> Result<Vec<u8>, OpenError> {
        if !codec_fits(codec, self.ctx.stream) {
            return Err(OpenError);
        }
        let p = parse(codec, frame)?;
        let generation = p.kid >> 4;
        let step = (p.kid & 0x0f) as u8;
        let ctx = &self.ctx;
        let g = self.generations.get_mut(&generation).ok_or(OpenError)?;
        if g.windows.get(&step).is_some_and(|w| !w.check(p.ctr)) {
            return Err(OpenError);
        }
        // Forward ratchet to the step the KID names (at most 15 steps from the base key). New
        // steps are kept only once a frame under them authenticates: an unauthenticated frame
        // changes no state.
        let mut fresh: Vec<(Secret32, StepKeys)> = Vec::new();
        let out = if usize::from(step) < g.steps.len() {
            decrypt(&g.steps[usize::from(step)].1, &p, codec)?
        } else {
            let mut last = g.steps.last().ok_or(OpenError)?.0.clone();
            for i in g.steps.len()..=usize::from(step) {
                let next = ratchet(&last, ctx);
                let keys = derive(&next, kid(generation, i as u8), ctx);
                last = next.clone();
                fresh.push((next, keys));
            }
            decrypt(&fresh.last().ok_or(OpenError)?.1, &p, codec)?
        };
        g.steps.extend(fresh);
        g.windows.entry(step).or_default().commit(p.ctr);
        Ok(out)
    }
}

/// `"confer/1 sender-key" || lp(channel_id) || u64(epoch) || u8(stream) || u64(generation) || base_key[32]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyMsg {
    /// Channel.
    pub channel_id: Id16,
    /// Roster epoch the key belongs to.
    pub epoch: u64,
    /// Stream.
    pub stream: u8,
    /// Generation.
    pub generation: u64,
    /// The base key.
    pub base_key: Secret32,
}

impl std::fmt::Debug for SenderKeyMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyMsg")
            .field("epoch", &self.epoch)
            .field("stream", &self.stream)
            .field("generation", &self.generation)
            .field("base_key", &"[redacted]")
            .finish()
    }
}

impl SenderKeyMsg {
    /// Encodes (the plaintext of a pairwise message of type 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = write_key_ref(
            b"confer/1 sender-key",
            &self.channel_id,
            self.epoch,
            self.stream,
            self.generation,
        );
        w.raw(self.base_key.expose());
        w.into_bytes()
    }

    /// Strict decode.
    pub fn decode(b: &[u8]) -> Result<Self, OpenError> {
        let e = |_| OpenError;
        let mut r = Reader::new(b);
        let (channel_id, epoch, stream, generation) = read_key_ref(&mut r, b"confer/1 sender-key")?;
        let base_key = Secret32::new(r.array().map_err(e)?);
        if r.remaining() != 0 || stream > STREAM_DATA {
            return Err(OpenError);
        }
        Ok(Self {
            channel_id,
            epoch,
            stream,
            generation,
            base_key,
        })
    }
}

/// `label || lp(channel_id) || u64(epoch) || u8(stream) || u64(generation)`: how a sender key
/// (type 1) and its acknowledgment (type 2) name the key.
pub(crate) fn write_key_ref(
    label: &[u8],
    channel_id: &Id16,
    epoch: u64,
    stream: u8,
    generation: u64,
) -> Writer {
    let mut w = Writer::label(label);
    w.lp(channel_id).u64(epoch).u8(stream).u64(generation);
    w
}

/// Reads what [`write_key_ref`] wrote; the caller checks the stream and what follows.
pub(crate) fn read_key_ref(
    r: &mut Reader<'_>,
    label: &[u8],
) -> Result<(Id16, u64, u8, u64), OpenError> {
    let e = |_| OpenError;
    r.expect(label).map_err(e)?;
    let channel_id: Id16 = r.lp().map_err(e)?.try_into().map_err(|_| OpenError)?;
    Ok((
        channel_id,
        r.u64().map_err(e)?,
        r.u8().map_err(e)?,
        r.u64().map_err(e)?,
    ))
}
