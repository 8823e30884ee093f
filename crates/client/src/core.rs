//! The client's sans-IO core: signalling messages in, signalling messages and events out,
//! confer/1 in between. The caller owns the socket and the clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use confer_e2ee::code::session_code;
use confer_e2ee::frame::{
    Codec, FrameCtx, Opener, STREAM_AUDIO, STREAM_CAMERA, STREAM_DATA, STREAM_SCREEN, Sealer,
    SenderKeyMsg,
};
use confer_e2ee::identity::{Announcement, Identity, role_code, role_from_code, verify};
use confer_e2ee::pairwise::{self, MsgType, Pair, Sequences};
use confer_e2ee::roster::{
    Accepted, Chain, FLAG_AWAY, Kind, Member, Roster, RosterError, SignedRoster,
};
use confer_e2ee::secret::Secret32;
use confer_e2ee::{CryptoRng, Id16};
use confer_proto::{
    AgreementHash, ChannelId, ChannelKind, ChannelView, ClientMessage, ParticipantId, RelayTarget,
    Role, ServerMessage, SessionView,
};
use sha2::{Digest, Sha256};

use crate::envelope::{Bytes, Envelope};
use crate::link::Invite;

/// How long a member of my channel may go without a roster signature before it is an alarm.
pub const UNSIGNED_GRACE: Duration = Duration::from_secs(5);
/// How long after a roster change a member may take to send its new sender key.
pub const STALE_KEY_AFTER: Duration = Duration::from_secs(10);
/// How long old generations are kept for frames in flight.
pub const KEEP_OLD_KEYS: Duration = Duration::from_secs(10);
/// Mediators: at most this many announced participants are remembered.
pub const MAX_PEERS: usize = 512;
/// A sender moves its keys one ratchet step this often (confer/1 §10).
pub const RATCHET_EVERY: Duration = Duration::from_secs(60);
/// How long a chat frame waits for the key it names before it counts as a failure.
pub const HOLD_FOR_KEY: Duration = Duration::from_secs(2);
/// Chat frames waiting for their key, at most (more fail at once).
const MAX_EARLY_CHATS: usize = 256;
/// The largest chat frame held for its key: a padded 64 KiB message plus header and tag.
const MAX_HELD_CHAT_BYTES: usize = 66 * 1024;
/// At most one keyframe request per publisher this often.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_secs(1);
/// Consent attestation bits: "I will not record", "nobody else is present".
pub const ATTEST_NO_RECORDING: u8 = 1;
/// See [`ATTEST_NO_RECORDING`].
pub const ATTEST_NOBODY_ELSE: u8 = 2;

/// Something the user must see: the protocol detected misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// A roster did not verify or did not extend the chain.
    Roster(RosterError),
    /// Someone is in my channel (per the server) but in no roster the mediator signed.
    UnsignedMember(ParticipantId),
    /// A roster changed but this member sent no new key in time.
    StaleKey(ParticipantId),
    /// The mediator's key differs from the one the invite link pinned.
    MediatorKeyMismatch,
    /// A roster arrived from someone other than the mediator.
    RosterFromNonMediator,
    /// The server said I am someone else (another participant or role) than I joined as.
    IdentityMismatch,
    /// Someone left my channel (per the server) but no new roster came: I stop sending there.
    RosterWithheld,
}

impl Alarm {
    /// A stable short code for summaries.
    pub fn code(&self) -> &'static str {
        match self {
            Alarm::Roster(RosterError::Fork) => "roster_fork",
            Alarm::Roster(RosterError::Rollback) => "roster_rollback",
            Alarm::Roster(RosterError::Gap) => "roster_gap",
            Alarm::Roster(RosterError::BadSignature) => "roster_bad_signature",
            Alarm::Roster(RosterError::WrongChannel) => "roster_wrong_channel",
            Alarm::Roster(_) => "roster_invalid",
            Alarm::UnsignedMember(_) => "unsigned_member",
            Alarm::StaleKey(_) => "stale_key",
            Alarm::MediatorKeyMismatch => "mediator_key_mismatch",
            Alarm::RosterFromNonMediator => "roster_from_non_mediator",
            Alarm::IdentityMismatch => "identity_mismatch",
            Alarm::RosterWithheld => "roster_withheld",
        }
    }
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Joined (or resumed); `channel` is `None` in the waiting room.
    Welcome {
        /// My pseudonymous id.
        participant_id: ParticipantId,
        /// Where I am.
        channel: Option<ChannelId>,
    },
    /// My current channel has a signed roster listing me and my sender key is out: I may talk.
    Secured(ChannelId),
    /// A chat message that decrypted.
    Chat {
        /// Sender.
        from: ParticipantId,
        /// Server channel.
        channel: ChannelId,
        /// Text.
        text: String,
    },
    /// The session code changed (JOINT roster identities changed).
    SessionCode(String),
    /// An alarm.
    Alarm(Alarm),
    /// A server error frame.
    ServerError(String),
    /// The session ended (or I was removed); every key is deleted.
    Ended,
}

/// Counters for summaries and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Chat messages sealed and sent.
    pub messages_sent: u64,
    /// Chat messages that decrypted.
    pub messages_received: u64,
    /// Frames or pairwise messages that failed to open.
    pub decrypt_failures: u64,
    /// Alarm codes, in order.
    pub alarms: Vec<String>,
    /// Sender keys received and installed.
    pub keys_received: u64,
    /// True after the end: every key was deleted.
    pub keys_deleted: bool,
    /// Mediators: consent acknowledgments that did not verify (never admitted).
    pub consents_rejected: u64,
    /// Mediators: consent acknowledgments that verified.
    pub consents_verified: u64,
    /// Mediators: verified acknowledgments without an invite secret, left for a person to admit.
    pub consents_held: u64,
    /// Acknowledgments received for the sender keys I sent.
    pub acks_received: u64,
    /// Media frames sealed.
    pub frames_sealed: u64,
    /// Media frames that opened.
    pub frames_opened: u64,
    /// Media frames that did not open (also counted in `decrypt_failures`).
    pub media_decrypt_failures: u64,
    /// `decrypt_failures` by reason (`chat_open`, `pairwise_replay`, `media`, ...).
    pub failure_reasons: BTreeMap<&'static str, u64>,
    /// Chat and media frames under a generation older than every key I hold of that sender
    /// for that stream: sealed before I joined the room (a sender that had not seen the new
    /// roster yet), or whose key I already deleted. Dropped unopened; not failures.
    pub stale_frames: u64,
}

/// Not in a secured channel yet ("securing channel"): nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSecured;

/// Why a media frame did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRejected {
    /// I hold no key of that publisher for the generation the frame names. Media travels over
    /// UDP and keys over signalling, so a frame under a new generation can arrive before its
    /// key: hold it briefly and try again after the next server message. Not counted as a
    /// failure (see [`Core::media_frame_expired`]).
    NoKey,
    /// It does not open (malformed, a replay, a forgery): dropped and counted.
    Invalid,
    /// The session is over for me and every key is deleted: dropped, not counted.
    Ended,
    /// Sealed under a generation older than every key I hold of that publisher for that
    /// stream (from before I was in the room, or already deleted): dropped, counted apart.
    Stale,
}

/// The codec of a media stream (confer/1 §8.2); `None` for stream 3 and above.
pub fn media_codec(stream: u8) -> Option<Codec> {
    match stream {
        STREAM_AUDIO => Some(Codec::Opus),
        STREAM_CAMERA | STREAM_SCREEN => Some(Codec::Vp8),
        _ => None,
    }
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// SHA-256 of the agreement to mediate this client presents (mediator) or acknowledges.
    pub agreement_hash: [u8; 32],
    /// Invite secrets (psk, pinned mediator key), if the client joined through a link.
    pub invite: Option<Invite>,
    /// Mediators: invite secrets of links they made, by hint.
    pub issued_psks: Vec<Secret32>,
    /// Mediators: admit every arrival whose consent verifies.
    pub auto_admit: bool,
    /// How long a member of my channel may go unsigned before the alarm.
    pub unsigned_grace: Duration,
    /// How long after a roster change a member may take to send its new key.
    pub stale_key_after: Duration,
    /// How long old generations are kept for frames in flight.
    pub keep_old_keys: Duration,
    /// The role I was invited as, if known: a welcome for another role is refused.
    pub expected_role: Option<Role>,
    /// Mediators: also admit arrivals whose acknowledgment was not bound to an invite secret
    /// (a bare token from `confer token create`). The server can mint such tokens itself, so
    /// this is off by default: those arrivals wait for a person to admit them.
    pub admit_without_invite_secret: bool,
    /// The media streams I send (0 microphone, 1 camera, 2 screen): each gets its own sender
    /// key in every channel I am present in. Stream 3 (chat) is always keyed.
    pub media_streams: Vec<u8>,
    /// I receive media: ask a publisher for a keyframe when its new video key arrives.
    pub media_receive: bool,
}

impl CoreConfig {
    /// Defaults for this agreement.
    pub fn new(agreement_hash: [u8; 32]) -> Self {
        Self {
            agreement_hash,
            invite: None,
            issued_psks: Vec::new(),
            auto_admit: true,
            unsigned_grace: UNSIGNED_GRACE,
            stale_key_after: STALE_KEY_AFTER,
            keep_old_keys: KEEP_OLD_KEYS,
            admit_without_invite_secret: false,
            expected_role: None,
            media_streams: Vec::new(),
            media_receive: false,
        }
    }
}

/// SHA-256 of an agreement text.
pub fn agreement_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn psk_hint(psk: &Secret32) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"confer/1 psk-hint");
    h.update(psk.expose());
    h.finalize()[..8].to_vec()
}

fn id16(p: &ParticipantId) -> Option<Id16> {
    // Exactly 32 lowercase hex characters, so one participant has one spelling.
    let s = p.as_str();
    if s.len() != 32
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

fn pid_of(id: &Id16) -> Option<ParticipantId> {
    ParticipantId::new(hex::encode(id)).ok()
}

/// Where the mediator's client sent someone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Intent {
    In(ChannelId),
    /// A breakout the server is creating (its name is not known yet).
    NewBreakout,
}

struct Me {
    pid: ParticipantId,
    id: Id16,
    role: Role,
    session: Vec<u8>,
}

/// A verified announcement (mediator side: candidates for rosters).
#[derive(Clone)]
struct Peer {
    ann: Announcement,
    consent_ok: bool,
    /// The acknowledgment verified but came without an invite secret: a person decides.
    held: bool,
}

struct ChainState {
    chain: Chain,
    server_channel: ChannelId,
    advanced_at: Instant,
}

/// The confer/1 client state machine.
pub struct Core<R: CryptoRng> {
    rng: R,
    cfg: CoreConfig,
    identity: Option<Identity>,
    me: Option<Me>,
    mediator: Option<(ParticipantId, [u8; 32], [u8; 32])>,
    consent_sent: bool,
    // Mediator side.
    peers: BTreeMap<ParticipantId, Peer>,
    contacted: BTreeSet<ParticipantId>,
    admit_sent: BTreeSet<ParticipantId>,
    /// Mediators: where this client told the server to put each participant. The server's
    /// views are only believed where they agree with it.
    intents: BTreeMap<ParticipantId, Intent>,
    /// Mediators: the last location where view and intent agreed.
    confirmed: BTreeMap<ParticipantId, ChannelId>,
    channel_ids: BTreeMap<ChannelId, Id16>,
    last_session: Option<SessionView>,
    // Everyone.
    my_channel: Option<ChannelView>,
    chains: BTreeMap<Id16, ChainState>,
    /// (channel, stream) -> my current generation, its sealer, and when it last stepped.
    sealers: BTreeMap<(Id16, u8), (u64, Sealer, Option<Instant>)>,
    next_generation: u64,
    /// (channel, sender, stream) -> receive keys.
    openers: BTreeMap<(Id16, Id16, u8), Opener>,
    key_epochs: BTreeMap<(Id16, Id16), u64>,
    expiries: Vec<(Instant, Id16, Id16, Option<u64>)>,
    pending: VecDeque<(ParticipantId, Envelope)>,
    early_keys: Vec<(Instant, Id16, SenderKeyMsg)>,
    /// Chat frames that came before the key they name (its sender saw a roster before I did):
    /// (since, from, cid, frame), opened once the key is installed.
    early_chats: Vec<(Instant, ParticipantId, Bytes, Bytes)>,
    /// When I last asked each publisher for a keyframe.
    keyframe_asked: BTreeMap<Id16, Instant>,
    channel_expiries: Vec<(Instant, Id16, ChannelId)>,
    seqs: Sequences,
    unsigned_since: BTreeMap<ParticipantId, Instant>,
    /// Since when someone in my roster has been missing from the server's view of my room.
    departed_since: Option<Instant>,
    /// Sending is stopped: the roster that should follow a departure did not come.
    withheld: bool,
    alarmed: BTreeSet<(String, String)>,
    secured: Option<ChannelId>,
    code: Option<String>,
    now: Option<Instant>,
    out: VecDeque<ClientMessage>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl<R: CryptoRng> std::fmt::Debug for Core<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("stats", &self.stats)
            .field("secured", &self.secured)
            .finish()
    }
}

impl<R: CryptoRng> Core<R> {
    /// A client that has not connected yet.
    pub fn new(mut rng: R, cfg: CoreConfig) -> Self {
        let identity = Identity::generate(&mut rng);
        Self {
            rng,
            cfg,
            identity: Some(identity),
            me: None,
            mediator: None,
            consent_sent: false,
            peers: BTreeMap::new(),
            contacted: BTreeSet::new(),
            admit_sent: BTreeSet::new(),
            intents: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            channel_ids: BTreeMap::new(),
            last_session: None,
            my_channel: None,
            chains: BTreeMap::new(),
            sealers: BTreeMap::new(),
            next_generation: 0,
            openers: BTreeMap::new(),
            key_epochs: BTreeMap::new(),
            expiries: Vec::new(),
            pending: VecDeque::new(),
            early_keys: Vec::new(),
            early_chats: Vec::new(),
            keyframe_asked: BTreeMap::new(),
            channel_expiries: Vec::new(),
            seqs: Sequences::default(),
            unsigned_since: BTreeMap::new(),
            departed_since: None,
            withheld: false,
            alarmed: BTreeSet::new(),
            secured: None,
            code: None,
            now: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The `hello` to send first.
    pub fn hello(&self, token: &str) -> ClientMessage {
        ClientMessage::Hello {
            version: confer_proto::PROTOCOL_VERSION,
            token: token.to_owned(),
        }
    }

    /// Mediators: arrivals whose acknowledgment verified without an invite secret, waiting for
    /// a person's decision.
    pub fn held(&self) -> Vec<ParticipantId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.held)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Mediators: a person admits a held arrival (after checking who it is, e.g. by voice).
    /// Returns false if nobody with that id is held.
    pub fn admit_held(&mut self, p: &ParticipantId) -> bool {
        let Some(peer) = self.peers.get_mut(p).filter(|x| x.held) else {
            return false;
        };
        peer.held = false;
        peer.consent_ok = true;
        self.admit_ready();
        true
    }

    /// Mediators: remember the invite secret of a link just made.
    pub fn add_issued_psk(&mut self, psk: Secret32) {
        self.cfg.issued_psks.push(psk);
    }

    /// My identity (to sign things in tests of the mediator's own misbehaviour).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The current session code, once a JOINT roster is held.
    pub fn session_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The channel I may talk in, if secured.
    pub fn secured(&self) -> Option<&ChannelId> {
        self.secured.as_ref()
    }

    /// The epoch of the newest signed roster I hold for a server channel.
    pub fn roster_epoch(&self, ch: &ChannelId) -> Option<u64> {
        self.head_for(ch).map(|h| h.roster.epoch)
    }

    /// The members of the newest signed roster I hold for a server channel (present or away).
    pub fn roster_members(&self, ch: &ChannelId) -> Vec<ParticipantId> {
        self.members_for(ch, |_| true)
    }

    /// The members present (not flagged away) in the newest signed roster of a server channel.
    pub fn roster_present(&self, ch: &ChannelId) -> Vec<ParticipantId> {
        self.members_for(ch, |m| !m.is_away())
    }

    // The roster of a server channel: the head of its current chain. Every reader (sealing,
    // the withheld and unsigned checks, the rosters shown) uses this one chain, so a room
    // that emptied and filled again (a new chain, from epoch 1) is never judged by its old
    // roster.
    fn head_for(&self, ch: &ChannelId) -> Option<&SignedRoster> {
        self.current_chain(ch).and_then(|(_, s)| s.chain.head())
    }

    // The newest chain for this server channel.
    fn current_chain(&self, ch: &ChannelId) -> Option<(&Id16, &ChainState)> {
        self.chains
            .iter()
            .filter(|(_, s)| &s.server_channel == ch)
            .max_by_key(|(_, s)| s.advanced_at)
    }

    fn members_for(&self, ch: &ChannelId, keep: impl Fn(&Member) -> bool) -> Vec<ParticipantId> {
        self.head_for(ch)
            .map(|h| {
                h.roster
                    .members
                    .iter()
                    .filter(|m| keep(m))
                    .filter_map(|m| pid_of(&m.participant_id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many senders' receive keys I hold for a server channel.
    pub fn receive_keys_for(&self, ch: &ChannelId) -> usize {
        let cids: BTreeSet<Id16> = self
            .chains
            .iter()
            .filter(|(_, s)| &s.server_channel == ch)
            .map(|(c, _)| *c)
            .collect();
        self.openers
            .keys()
            .filter(|(c, _, s)| cids.contains(c) && *s == STREAM_DATA)
            .count()
    }

    /// My role, once a welcome was accepted.
    pub fn role(&self) -> Option<Role> {
        self.me.as_ref().map(|m| m.role)
    }

    /// My participant id.
    pub fn participant_id(&self) -> Option<&ParticipantId> {
        self.me.as_ref().map(|m| &m.pid)
    }

    /// Next message to send to the server.
    pub fn poll_send(&mut self) -> Option<ClientMessage> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn alarm(&mut self, a: Alarm, key: String) {
        if self.alarmed.insert((a.code().to_owned(), key)) {
            self.stats.alarms.push(a.code().to_owned());
            self.events.push_back(Event::Alarm(a));
        }
    }

    fn relay(&mut self, to: RelayTarget, env: &Envelope) {
        self.out.push_back(ClientMessage::Relay {
            to,
            data: env.to_data(),
        });
    }

    /// Seals a chat message for my current channel.
    pub fn send_chat(&mut self, text: &str) -> Result<(), NotSecured> {
        if self.withheld {
            return Err(NotSecured);
        }
        let ch = self.secured.clone().ok_or(NotSecured)?;
        let cid = *self.channel_id_of(&ch).ok_or(NotSecured)?;
        let (_, sealer, _) = self
            .sealers
            .get_mut(&(cid, STREAM_DATA))
            .ok_or(NotSecured)?;
        let frame = sealer
            .seal(Codec::Data, text.as_bytes())
            .map_err(|_| NotSecured)?;
        self.relay(
            RelayTarget::Channel(ch),
            &Envelope::Chat {
                cid: Bytes(cid.to_vec()),
                f: Bytes(frame),
            },
        );
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Decrypts a chat frame as if it came from `from` in channel `cid` (for tests that hand a
    /// non-member a ciphertext it was never sent).
    pub fn try_open_chat(
        &mut self,
        from: &ParticipantId,
        cid: &Id16,
        frame: &[u8],
    ) -> Option<String> {
        let sender = id16(from)?;
        let opener = self.openers.get_mut(&(*cid, sender, STREAM_DATA))?;
        let pt = opener.open(Codec::Data, frame).ok()?;
        String::from_utf8(pt).ok()
    }

    /// Seals one media frame (the whole payload, VP8 frame tag included) for the room I am in,
    /// under my current key for `stream`. Refused ("securing channel": stay muted) until that
    /// room's roster lists me and my new generation for it is out, so no frame of a caucus is
    /// ever sealed under a key a non-member holds.
    pub fn seal_media(&mut self, stream: u8, payload: &[u8]) -> Result<Vec<u8>, NotSecured> {
        let codec = media_codec(stream).ok_or(NotSecured)?;
        if self.withheld {
            return Err(NotSecured);
        }
        let ch = self.secured.clone().ok_or(NotSecured)?;
        let cid = *self.channel_id_of(&ch).ok_or(NotSecured)?;
        let (_, sealer, _) = self.sealers.get_mut(&(cid, stream)).ok_or(NotSecured)?;
        let frame = sealer.seal(codec, payload).map_err(|_| NotSecured)?;
        self.stats.frames_sealed += 1;
        Ok(frame)
    }

    /// My current generation for `stream` in the room I am in (a change means new keys: the
    /// next video frame should be a key frame).
    pub fn media_generation(&self, stream: u8) -> Option<u64> {
        let ch = self.secured.as_ref()?;
        let cid = self.channel_id_of(ch)?;
        self.sealers.get(&(*cid, stream)).map(|(g, _, _)| *g)
    }

    /// Opens a media frame that arrived from `publisher` on `stream` (the SFU slot it came in
    /// says who). The key is the one the frame's KID names among `publisher`'s keys for that
    /// stream in my rooms: normally the room I am in; during a move, the room the frame was
    /// sealed for, if I still hold its keys (kept 10 s). Any failure is counted and nothing is
    /// returned.
    pub fn open_media(
        &mut self,
        publisher: &ParticipantId,
        stream: u8,
        frame: &[u8],
    ) -> Result<Vec<u8>, MediaRejected> {
        if self.stats.keys_deleted {
            return Err(MediaRejected::Ended);
        }
        let r = self.try_open_media(publisher, stream, frame);
        match r {
            Ok(_) => self.stats.frames_opened += 1,
            Err(MediaRejected::NoKey | MediaRejected::Ended) => {}
            Err(MediaRejected::Stale) => self.stats.stale_frames += 1,
            Err(MediaRejected::Invalid) => self.media_failed(),
        }
        r
    }

    /// A frame held for want of its key never opened: counted as a decrypt failure.
    pub fn media_frame_expired(&mut self) {
        self.media_failed();
    }

    // A message or frame that did not open, counted by why (for diagnostics; no content).
    fn failed(&mut self, why: &'static str) {
        self.stats.decrypt_failures += 1;
        *self.stats.failure_reasons.entry(why).or_default() += 1;
    }

    fn media_failed(&mut self) {
        // After the end every key is gone on purpose: what still arrives is not a failure.
        if self.stats.keys_deleted {
            return;
        }
        self.stats.media_decrypt_failures += 1;
        self.failed("media");
    }

    fn try_open_media(
        &mut self,
        publisher: &ParticipantId,
        stream: u8,
        frame: &[u8],
    ) -> Result<Vec<u8>, MediaRejected> {
        let codec = media_codec(stream).ok_or(MediaRejected::Invalid)?;
        let sender = id16(publisher).ok_or(MediaRejected::Invalid)?;
        let generation = confer_e2ee::frame::frame_generation(codec, frame)
            .map_err(|_| MediaRejected::Invalid)?;
        let here = self
            .my_channel
            .as_ref()
            .and_then(|c| self.channel_id_of(&c.id))
            .copied();
        let holds = |o: &Opener| o.holds(generation);
        let key = match here
            .map(|c| (c, sender, stream))
            .filter(|k| self.openers.get(k).is_some_and(holds))
        {
            Some(k) => k,
            None => {
                let mine = || {
                    self.openers
                        .iter()
                        .filter(|((_, s, st), _)| *s == sender && *st == stream)
                };
                if let Some((k, _)) = mine().find(|(_, o)| holds(o)) {
                    *k
                } else if mine().next().is_some()
                    && mine().all(|(_, o)| o.oldest().is_some_and(|m| generation < m))
                {
                    return Err(MediaRejected::Stale);
                } else {
                    return Err(MediaRejected::NoKey);
                }
            }
        };
        let opener = self.openers.get_mut(&key).ok_or(MediaRejected::NoKey)?;
        opener
            .open(codec, frame)
            .map_err(|_| MediaRejected::Invalid)
    }

    fn channel_id_of(&self, ch: &ChannelId) -> Option<&Id16> {
        // The newest chain for this server channel (a room that emptied and filled again gets
        // a new chain), if it lists me as present.
        let me = self.me.as_ref()?;
        let (cid, s) = self.current_chain(ch)?;
        s.chain
            .head()?
            .roster
            .member(&me.id)
            .filter(|m| !m.is_away())
            .map(|_| cid)
    }

    /// Feeds one server message.
    pub fn handle(&mut self, msg: ServerMessage, now: Instant) {
        self.handle_message(msg, now);
        self.retry_early_chats(now);
    }

    fn retry_early_chats(&mut self, now: Instant) {
        if self.stats.keys_deleted {
            self.early_chats.clear();
            return;
        }
        for (at, from, cid, f) in std::mem::take(&mut self.early_chats) {
            self.open_chat(at, from, cid, f, now);
        }
    }

    fn handle_message(&mut self, msg: ServerMessage, now: Instant) {
        self.now = Some(now);
        // After the end every key is gone; nothing the server says can revive the session.
        if self.stats.keys_deleted {
            return;
        }
        match msg {
            ServerMessage::Welcome {
                participant_id,
                session_id,
                role,
                channel,
                ..
            } => {
                let Some(id) = id16(&participant_id) else {
                    return;
                };
                // Who I am is settled by the first welcome (and, if configured, by what I was
                // invited as): a later welcome may only resume the same participant.
                let expected = self
                    .me
                    .as_ref()
                    .map(|m| (m.pid.clone(), m.role))
                    .or(self.cfg.expected_role.map(|r| (participant_id.clone(), r)));
                if let Some((pid, r)) = expected
                    && (pid != participant_id || r != role)
                {
                    self.alarm(Alarm::IdentityMismatch, String::new());
                    return;
                }
                // A link that pins a mediator key was made for someone other than the mediator.
                if role == Role::Mediator
                    && self
                        .cfg
                        .invite
                        .as_ref()
                        .is_some_and(|i| i.mediator_ik.is_some())
                {
                    self.alarm(Alarm::IdentityMismatch, String::new());
                    return;
                }
                if self.me.is_some() {
                    // A resume: same participant, same keys. If I was moved while away, I left
                    // the old room as surely as after a `channel` message.
                    let left = self
                        .my_channel
                        .as_ref()
                        .map(|c| c.id.clone())
                        .filter(|old| channel.as_ref().is_none_or(|c| c.id != *old));
                    self.my_channel = channel;
                    if let Some(old) = left {
                        self.left_channel(&old, now);
                    }
                    self.update_secured();
                    return;
                }
                self.me = Some(Me {
                    pid: participant_id.clone(),
                    id,
                    role,
                    session: session_id.as_str().as_bytes().to_vec(),
                });
                self.events.push_back(Event::Welcome {
                    participant_id: participant_id.clone(),
                    channel: channel.as_ref().map(|c| c.id.clone()),
                });
                if role == Role::Mediator {
                    self.intents
                        .insert(participant_id.clone(), Intent::In(ChannelId::joint()));
                    let (ik, ek) = self.keys();
                    self.mediator = Some((participant_id, ik, ek));
                    let ann = self.announcement();
                    self.peers.insert(
                        self.me_pid(),
                        Peer {
                            ann,
                            consent_ok: true,
                            held: false,
                        },
                    );
                }
                self.my_channel = channel;
                self.reconcile(now);
            }
            ServerMessage::Session { session } => {
                self.last_session = Some(session);
                self.contact_waiting();
                self.admit_ready();
                self.reconcile(now);
            }
            ServerMessage::Channel { channel } => {
                let left = self
                    .my_channel
                    .as_ref()
                    .map(|c| c.id.clone())
                    .filter(|old| *old != channel.id);
                self.my_channel = Some(channel);
                if let Some(old) = left {
                    self.left_channel(&old, now);
                }
                self.update_secured();
            }
            // After the end every key is gone on purpose: what still arrives is not a failure.
            ServerMessage::Relayed { .. } if self.stats.keys_deleted => {}
            ServerMessage::Relayed {
                from,
                data,
                channel,
            } => {
                self.stats_relayed(&from, channel.as_ref(), &data, now);
            }
            ServerMessage::ParticipantLeft { .. }
            | ServerMessage::ConsentRecorded
            | ServerMessage::Pong => {}
            ServerMessage::Error { code, .. } => self
                .events
                .push_back(Event::ServerError(code.as_str().to_owned())),
            ServerMessage::SessionEnded | ServerMessage::Kicked => self.end(),
            _ => {}
        }
        self.tick(now);
    }

    fn me_pid(&self) -> ParticipantId {
        self.me
            .as_ref()
            .map(|m| m.pid.clone())
            .unwrap_or_else(|| ParticipantId::new("unknown").expect("valid id"))
    }

    fn keys(&self) -> ([u8; 32], [u8; 32]) {
        self.identity
            .as_ref()
            .map(|i| (i.ik_pub(), i.ek_pub()))
            .unwrap_or(([0; 32], [0; 32]))
    }

    fn announcement(&self) -> Announcement {
        let me = self.me.as_ref().expect("announce after welcome");
        self.identity
            .as_ref()
            .expect("identity until the end")
            .announce(&me.session, me.id, me.role)
    }

    fn announce_envelope(&self) -> Envelope {
        let a = self.announcement();
        Envelope::Announce {
            pid: Bytes(a.participant_id.to_vec()),
            role: role_code(a.role),
            ik: Bytes(a.ik_pub.to_vec()),
            ek: Bytes(a.ek_pub.to_vec()),
            sig: Bytes(a.signature.to_vec()),
        }
    }

    fn is_mediator(&self) -> bool {
        self.me.as_ref().is_some_and(|m| m.role == Role::Mediator)
    }

    // Mediator: introduce myself to everyone in the waiting room (once each).
    fn contact_waiting(&mut self) {
        if !self.is_mediator() {
            return;
        }
        let Some(session) = &self.last_session else {
            return;
        };
        let new: Vec<ParticipantId> = session
            .waiting
            .iter()
            .map(|w| w.participant_id.clone())
            .filter(|p| !self.contacted.contains(p))
            .collect();
        for p in new {
            let env = self.announce_envelope();
            self.relay(RelayTarget::Participant(p.clone()), &env);
            self.contacted.insert(p);
        }
    }

    // Mediator: admit each waiting participant whose consent verified and whose hash the
    // server recorded.
    fn admit_ready(&mut self) {
        if !self.is_mediator() || !self.cfg.auto_admit {
            return;
        }
        let Some(session) = &self.last_session else {
            return;
        };
        let ready: Vec<ParticipantId> = session
            .waiting
            .iter()
            .filter(|w| {
                w.consented
                    && self
                        .peers
                        .get(&w.participant_id)
                        .is_some_and(|p| p.consent_ok)
            })
            .map(|w| w.participant_id.clone())
            .filter(|p| !self.admit_sent.contains(p))
            .collect();
        for p in ready {
            self.intents
                .insert(p.clone(), Intent::In(ChannelId::joint()));
            self.out.push_back(ClientMessage::Admit {
                participant_id: p.clone(),
            });
            self.admit_sent.insert(p);
        }
    }

    /// Sends a signalling command. Mediators must send admissions and moves through here: the
    /// client signs rosters only for placements it asked for, never for what the server merely
    /// reports.
    pub fn command(&mut self, m: ClientMessage) {
        match &m {
            ClientMessage::Admit { participant_id } => {
                self.intents
                    .insert(participant_id.clone(), Intent::In(ChannelId::joint()));
            }
            ClientMessage::Move {
                participant_id,
                channel_id,
            } => {
                self.intents
                    .insert(participant_id.clone(), Intent::In(channel_id.clone()));
            }
            ClientMessage::CreateBreakout { members } => {
                for p in members {
                    self.intents.insert(p.clone(), Intent::NewBreakout);
                }
            }
            ClientMessage::ReturnAll => {
                for i in self.intents.values_mut() {
                    *i = Intent::In(ChannelId::joint());
                }
            }
            _ => {}
        }
        self.out.push_back(m);
    }

    fn stats_relayed(
        &mut self,
        from: &ParticipantId,
        _channel: Option<&ChannelId>,
        data: &str,
        now: Instant,
    ) {
        let Some(env) = Envelope::from_data(data) else {
            self.failed("envelope");
            return;
        };
        self.on_envelope(from.clone(), env, now);
    }

    fn on_envelope(&mut self, from: ParticipantId, env: Envelope, now: Instant) {
        match env {
            Envelope::Announce {
                pid,
                role,
                ik,
                ek,
                sig,
            } => self.on_announce(from, pid, role, ik, ek, sig),
            Envelope::Pw {
                t,
                seq,
                enc,
                ct,
                hint,
            } => self.on_pairwise(from, t, seq, enc, ct, hint, now),
            Envelope::Roster { ch, enc, sig } => self.on_roster(from, ch, enc, sig, now),
            Envelope::Chat { cid, f } => self.on_chat(from, cid, f, now),
        }
    }

    fn on_announce(
        &mut self,
        from: ParticipantId,
        pid: Bytes,
        role: u8,
        ik: Bytes,
        ek: Bytes,
        sig: Bytes,
    ) {
        let (Some(me), Some(pid16), Some(role), Some(ik), Some(ek), Some(sig)) = (
            self.me.as_ref(),
            pid.array::<16>(),
            role_from_code(role),
            ik.array::<32>(),
            ek.array::<32>(),
            sig.array::<64>(),
        ) else {
            return;
        };
        let ann = Announcement {
            participant_id: pid16,
            role,
            ik_pub: ik,
            ek_pub: ek,
            signature: sig,
        };
        // The announcement must be for the sender's own pseudonym in this session.
        if id16(&from) != Some(pid16) || ann.verify(&me.session).is_err() {
            self.failed("announcement");
            return;
        }
        if self.is_mediator() {
            // Only someone the server lists in this session (bounded), not any id it invents.
            let listed = self.last_session.as_ref().is_some_and(|v| {
                v.waiting.iter().any(|w| w.participant_id == from)
                    || v.channels
                        .iter()
                        .any(|c| c.members.iter().any(|m| m.participant_id == from))
            });
            if !listed || self.peers.len() >= MAX_PEERS {
                return;
            }
            self.peers.entry(from).or_insert(Peer {
                ann,
                consent_ok: false,
                held: false,
            });
            return;
        }
        if role != Role::Mediator {
            return;
        }
        if let Some(pinned) = self.cfg.invite.as_ref().and_then(|i| i.mediator_ik)
            && pinned != ik
        {
            self.alarm(Alarm::MediatorKeyMismatch, String::new());
            return;
        }
        if self.mediator.is_none() {
            self.mediator = Some((from.clone(), ik, ek));
        }
        if !self.consent_sent && self.mediator.as_ref().is_some_and(|m| m.0 == from) {
            self.consent_sent = true;
            self.send_consent(&from, ek);
        }
    }

    fn send_consent(&mut self, mediator: &ParticipantId, mediator_ek: [u8; 32]) {
        let env = self.announce_envelope();
        self.relay(RelayTarget::Participant(mediator.clone()), &env);
        let Some(me) = self.me.as_ref() else { return };
        let Some(m_id) = id16(mediator) else { return };
        let attest = ATTEST_NO_RECORDING | ATTEST_NOBODY_ELSE;
        let hash = self.cfg.agreement_hash;
        let signed = consent_bytes(&me.session, &me.id, &hash, attest);
        let identity = self.identity.as_ref().expect("identity until the end");
        let sig = identity.sign(&signed);
        let mut pt = hash.to_vec();
        pt.push(attest);
        pt.extend_from_slice(&sig);
        let pair = Pair {
            session_id: &me.session,
            from: me.id,
            to: m_id,
        };
        let seq = self.seqs.next_send(m_id);
        let psk = self.cfg.invite.as_ref().and_then(|i| i.psk.clone());
        let Ok(sealed) = pairwise::seal(
            &mut self.rng,
            identity,
            &mediator_ek,
            pair,
            MsgType::Consent,
            seq,
            &pt,
            psk.as_ref(),
        ) else {
            return;
        };
        let env = Envelope::Pw {
            t: MsgType::Consent as u8,
            seq,
            enc: Bytes(sealed.enc.to_vec()),
            ct: Bytes(sealed.ct),
            hint: psk.as_ref().map(|p| Bytes(psk_hint(p))),
        };
        self.relay(RelayTarget::Participant(mediator.clone()), &env);
        if let Ok(h) = AgreementHash::new(hex::encode(hash)) {
            self.out
                .push_back(ClientMessage::Consent { agreement_hash: h });
        }
    }

    /// The sender's EK: from its announcement (mediator side) or from any roster I hold.
    fn ek_of(&self, p: &ParticipantId) -> Option<[u8; 32]> {
        if let Some(peer) = self.peers.get(p) {
            return Some(peer.ann.ek_pub);
        }
        if let Some((m, _, ek)) = &self.mediator
            && m == p
        {
            return Some(*ek);
        }
        let id = id16(p)?;
        self.chains
            .values()
            .find_map(|s| s.chain.head()?.roster.member(&id).map(|m| m.ek_pub))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_pairwise(
        &mut self,
        from: ParticipantId,
        t: u8,
        seq: u64,
        enc: Bytes,
        ct: Bytes,
        hint: Option<Bytes>,
        now: Instant,
    ) {
        let (Some(msg_type), Some(enc)) = (MsgType::from_code(t), enc.array::<32>()) else {
            self.failed("pairwise_header");
            return;
        };
        let Some(ek) = self.ek_of(&from) else {
            // A key may arrive before the roster that names its sender.
            if self.pending.len() < 256 {
                self.pending.push_back((
                    from,
                    Envelope::Pw {
                        t,
                        seq,
                        enc: Bytes(enc.to_vec()),
                        ct,
                        hint,
                    },
                ));
            }
            return;
        };
        let (Some(me), Some(from_id)) = (self.me.as_ref(), id16(&from)) else {
            return;
        };
        if !self.seqs.is_fresh(&from_id, seq) {
            self.failed("pairwise_replay");
            return;
        }
        let psk = match &hint {
            Some(h) => self
                .cfg
                .issued_psks
                .iter()
                .find(|p| psk_hint(p) == h.0)
                .cloned(),
            None => None,
        };
        if hint.is_some() && psk.is_none() {
            self.failed("pairwise_unknown_psk");
            return;
        }
        let pair = Pair {
            session_id: &me.session,
            from: from_id,
            to: me.id,
        };
        let sealed = pairwise::Sealed { enc, ct: ct.0 };
        let identity = self.identity.as_ref().expect("identity until the end");
        let Ok(pt) = pairwise::open(identity, &ek, pair, msg_type, seq, &sealed, psk.as_ref())
        else {
            self.failed("pairwise_open");
            return;
        };
        self.seqs.accept(from_id, seq);
        match msg_type {
            MsgType::Consent => self.on_consent(from, &pt, psk.is_some()),
            MsgType::SenderKey => self.on_sender_key(from, from_id, &pt, now),
            MsgType::SenderKeyAck => self.stats.acks_received += 1,
            MsgType::Name => {}
        }
    }

    fn on_consent(&mut self, from: ParticipantId, pt: &[u8], with_invite_secret: bool) {
        if !self.is_mediator() || pt.len() != 32 + 1 + 64 {
            return;
        }
        let Some(me) = self.me.as_ref() else { return };
        let Some(peer) = self.peers.get(&from) else {
            return;
        };
        let hash: [u8; 32] = pt[..32].try_into().expect("length checked");
        let attest = pt[32];
        let sig: [u8; 64] = pt[33..].try_into().expect("length checked");
        let signed = consent_bytes(&me.session, &peer.ann.participant_id, &hash, attest);
        let ok = hash == self.cfg.agreement_hash
            && attest & (ATTEST_NO_RECORDING | ATTEST_NOBODY_ELSE)
                == (ATTEST_NO_RECORDING | ATTEST_NOBODY_ELSE)
            && verify(&peer.ann.ik_pub, &signed, &sig).is_ok();
        if !ok {
            self.stats.consents_rejected += 1;
            return;
        }
        self.stats.consents_verified += 1;
        if !with_invite_secret && !self.cfg.admit_without_invite_secret {
            self.stats.consents_held += 1;
            if let Some(p) = self.peers.get_mut(&from) {
                p.held = true;
            }
            return;
        }
        if let Some(p) = self.peers.get_mut(&from) {
            p.consent_ok = true;
        }
        self.admit_ready();
    }

    fn on_sender_key(&mut self, from: ParticipantId, from_id: Id16, pt: &[u8], now: Instant) {
        let Ok(msg) = SenderKeyMsg::decode(pt) else {
            self.failed("sender_key_decode");
            return;
        };
        let _ = from;
        if !self.install_key(from_id, &msg, now) && self.early_keys.len() < 256 {
            // The sender saw the roster before I did (rosters and keys come from different
            // senders, so their order is not guaranteed): keep the key until my roster arrives.
            self.early_keys.push((now, from_id, msg));
        }
    }

    /// Installs a sender key; `false` if it is for an epoch I have not seen yet.
    fn install_key(&mut self, from_id: Id16, msg: &SenderKeyMsg, now: Instant) -> bool {
        let Some(me) = self.me.as_ref() else {
            return true;
        };
        let Some(head) = self
            .chains
            .get(&msg.channel_id)
            .and_then(|s| s.chain.head())
        else {
            return false;
        };
        if msg.epoch > head.roster.epoch {
            return false;
        }
        // Only members the mediator signed into the current epoch get to key this channel, and
        // only if I am in it too. A key for an older epoch from a sender still present comes
        // from a sender that had not seen the newest roster yet (rosters and keys come from
        // different senders): frames under it are in flight, so it is kept like a replaced
        // generation (KEEP_OLD_KEYS), never as the sender's current one.
        let sender_ok = head.roster.member(&from_id).is_some_and(|m| !m.is_away());
        let me_ok = head.roster.member(&me.id).is_some();
        if !sender_ok || !me_ok {
            return true;
        }
        let superseded = msg.epoch < head.roster.epoch;
        let Some(ctx) = FrameCtx::new(&me.session, msg.channel_id, from_id, msg.stream) else {
            return true;
        };
        // A generation beyond the KID range, or one already held, is refused: installing it
        // again would reset its replay windows.
        let key = (msg.channel_id, from_id, msg.stream);
        let held = self
            .openers
            .get(&key)
            .is_some_and(|o| o.holds(msg.generation));
        if msg.generation > confer_e2ee::frame::MAX_GENERATION || held {
            return true;
        }
        let opener = self.openers.entry(key).or_insert_with(|| Opener::new(ctx));
        for g in opener.generations() {
            if g < msg.generation {
                self.expiries.push((
                    now + self.cfg.keep_old_keys,
                    msg.channel_id,
                    from_id,
                    Some(g),
                ));
            }
        }
        opener.add_generation(msg.generation, *msg.base_key.expose());
        self.stats.keys_received += 1;
        self.send_ack(from_id, msg);
        if superseded {
            self.expiries.push((
                now + self.cfg.keep_old_keys,
                msg.channel_id,
                from_id,
                Some(msg.generation),
            ));
            return true;
        }
        self.key_epochs.insert((msg.channel_id, from_id), msg.epoch);
        // A receiver that switched to a publisher's new video key for the room it is in asks
        // for a keyframe, so its picture restarts under the new key without waiting for the
        // next periodic one; at most once a second per publisher, however many keys arrive.
        let here = self
            .my_channel
            .as_ref()
            .and_then(|c| self.channel_id_of(&c.id))
            .is_some_and(|c| *c == msg.channel_id);
        let due = self
            .keyframe_asked
            .get(&from_id)
            .is_none_or(|t| now.saturating_duration_since(*t) >= KEYFRAME_REQUEST_EVERY);
        if self.cfg.media_receive
            && here
            && due
            && (msg.stream == STREAM_CAMERA || msg.stream == STREAM_SCREEN)
            && let Some(publisher) = pid_of(&from_id)
        {
            self.keyframe_asked.insert(from_id, now);
            self.out
                .push_back(ClientMessage::KeyframeRequest { publisher });
        }
        true
    }

    // Acknowledges a sender key (msg type 2): counted by the sender, not waited for.
    fn send_ack(&mut self, to_id: Id16, msg: &SenderKeyMsg) {
        let (Some(me), Some(to), Some(ek)) =
            (self.me.as_ref(), pid_of(&to_id), self.ek_of_id(&to_id))
        else {
            return;
        };
        let mut w = confer_e2ee::enc::Writer::label(b"confer/1 sender-key-ack");
        w.lp(&msg.channel_id)
            .u64(msg.epoch)
            .u8(msg.stream)
            .u64(msg.generation);
        let pt = w.into_bytes();
        let session = me.session.clone();
        let my_id = me.id;
        let seq = self.seqs.next_send(to_id);
        let pair = Pair {
            session_id: &session,
            from: my_id,
            to: to_id,
        };
        let identity = self.identity.as_ref().expect("identity until the end");
        if let Ok(sealed) = pairwise::seal(
            &mut self.rng,
            identity,
            &ek,
            pair,
            MsgType::SenderKeyAck,
            seq,
            &pt,
            None,
        ) {
            let env = Envelope::Pw {
                t: MsgType::SenderKeyAck as u8,
                seq,
                enc: Bytes(sealed.enc.to_vec()),
                ct: Bytes(sealed.ct),
                hint: None,
            };
            self.relay(RelayTarget::Participant(to), &env);
        }
    }

    fn ek_of_id(&self, id: &Id16) -> Option<[u8; 32]> {
        pid_of(id).and_then(|p| self.ek_of(&p))
    }

    fn on_roster(&mut self, from: ParticipantId, ch: String, enc: Bytes, sig: Bytes, now: Instant) {
        let Some((m_pid, m_ik, _)) = self.mediator.clone() else {
            return;
        };
        if from != m_pid {
            self.alarm(Alarm::RosterFromNonMediator, from.as_str().to_owned());
            return;
        }
        let (Some(sig), Ok(server_channel)) = (sig.array::<64>(), ChannelId::new(ch)) else {
            return;
        };
        let Ok(sr) = SignedRoster::from_parts(&enc.0, sig) else {
            self.alarm(
                Alarm::Roster(RosterError::Malformed),
                hex::encode(&enc.0[..enc.0.len().min(8)]),
            );
            return;
        };
        let Some(me) = self.me.as_ref() else { return };
        let cid = sr.roster.channel_id;
        // The envelope's room label is not signed: the signed kind must fit it, and a chain
        // stays bound to the room it was first seen for.
        let fits = match sr.roster.kind {
            Kind::Joint => server_channel.as_str() == "joint",
            Kind::Caucus => server_channel.as_str().starts_with("caucus-"),
            Kind::Breakout => server_channel.as_str().starts_with("breakout-"),
        };
        let rebound = self
            .chains
            .get(&cid)
            .is_some_and(|s| s.server_channel != server_channel);
        if !fits || rebound {
            self.alarm(Alarm::Roster(RosterError::WrongChannel), hex::encode(cid));
            return;
        }
        // A chain (and its room binding) exists only once a roster for it was accepted: a
        // refused first roster binds nothing.
        let mut chain = match self.chains.get(&cid) {
            Some(st) => st.chain.clone(),
            None => Chain::new(&me.session, m_ik),
        };
        match chain.accept(sr) {
            Ok(Accepted::Advanced) => {
                self.chains.insert(
                    cid,
                    ChainState {
                        chain,
                        server_channel,
                        advanced_at: now,
                    },
                );
                self.after_roster(cid, now);
            }
            Ok(Accepted::Unchanged) => {}
            Err(e) => {
                let key = format!("{}:{e:?}", hex::encode(cid));
                self.alarm(Alarm::Roster(e), key);
            }
        }
    }

    // A roster advanced: rekey if I am present, drop keys of members who left, retry keys that
    // arrived early, refresh the session code.
    fn after_roster(&mut self, cid: Id16, now: Instant) {
        let Some(me) = self.me.as_ref() else { return };
        let my_id = me.id;
        let Some(head) = self.chains.get(&cid).and_then(|s| s.chain.head()).cloned() else {
            return;
        };
        let present: BTreeSet<Id16> = head
            .roster
            .members
            .iter()
            .filter(|m| !m.is_away())
            .map(|m| m.participant_id)
            .collect();
        let senders: BTreeSet<(Id16, Id16)> =
            self.openers.keys().map(|(c, s, _)| (*c, *s)).collect();
        for (c, sender) in senders {
            if c == cid && !present.contains(&sender) {
                self.expiries
                    .push((now + self.cfg.keep_old_keys, c, sender, None));
            }
        }
        if present.contains(&my_id) {
            self.rekey(cid, &head.roster);
        } else {
            // Away or gone from this channel: never encrypt to it again under an old key.
            self.drop_sealers(cid);
        }
        let pending: Vec<(ParticipantId, Envelope)> = self.pending.drain(..).collect();
        for (from, env) in pending {
            self.on_envelope(from, env, now);
        }
        let early = std::mem::take(&mut self.early_keys);
        for (at, from_id, msg) in early {
            if !self.install_key(from_id, &msg, now)
                && now.duration_since(at) < self.cfg.stale_key_after
            {
                self.early_keys.push((at, from_id, msg));
            }
        }
        if head.roster.kind == Kind::Joint {
            let members: Vec<(Id16, [u8; 32])> = head
                .roster
                .members
                .iter()
                .map(|m| (m.participant_id, m.ik_pub))
                .collect();
            let (_, code) = session_code(&head.roster.session_id, &members);
            if self.code.as_deref() != Some(code.as_str()) {
                self.code = Some(code.clone());
                self.events.push_back(Event::SessionCode(code));
            }
        }
        self.update_secured();
    }

    // A fresh generation for each stream I send in `cid` (chat, and my media streams), sent
    // to every other present member.
    fn rekey(&mut self, cid: Id16, roster: &Roster) {
        let mut streams = vec![STREAM_DATA];
        streams.extend(
            self.cfg
                .media_streams
                .iter()
                .copied()
                .filter(|s| *s < STREAM_DATA),
        );
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            self.rekey_stream(cid, roster, stream);
        }
    }

    fn rekey_stream(&mut self, cid: Id16, roster: &Roster, stream: u8) {
        let Some(me) = self.me.as_ref() else { return };
        let Some(ctx) = FrameCtx::new(&me.session, cid, me.id, stream) else {
            return;
        };
        // One counter for every (channel, stream): a generation names one key of mine.
        let generation = self.next_generation;
        self.next_generation += 1;
        let base = Secret32::random(&mut self.rng);
        let msg = SenderKeyMsg {
            channel_id: cid,
            epoch: roster.epoch,
            stream,
            generation,
            base_key: base.clone(),
        };
        let pt = msg.encode();
        let session = me.session.clone();
        let my_id = me.id;
        let recipients: Vec<Member> = roster
            .members
            .iter()
            .filter(|m| !m.is_away() && m.participant_id != my_id)
            .cloned()
            .collect();
        for m in recipients {
            let Some(to) = pid_of(&m.participant_id) else {
                continue;
            };
            let seq = self.seqs.next_send(m.participant_id);
            let pair = Pair {
                session_id: &session,
                from: my_id,
                to: m.participant_id,
            };
            let identity = self.identity.as_ref().expect("identity until the end");
            let Ok(sealed) = pairwise::seal(
                &mut self.rng,
                identity,
                &m.ek_pub,
                pair,
                MsgType::SenderKey,
                seq,
                &pt,
                None,
            ) else {
                continue;
            };
            let env = Envelope::Pw {
                t: MsgType::SenderKey as u8,
                seq,
                enc: Bytes(sealed.enc.to_vec()),
                ct: Bytes(sealed.ct),
                hint: None,
            };
            self.relay(RelayTarget::Participant(to), &env);
        }
        // Switch at once: the relay keeps each sender's messages in order, so every recipient
        // holds the key before the first frame under it.
        self.sealers.insert(
            (cid, stream),
            (
                generation,
                Sealer::new(ctx, *base.expose(), generation),
                self.now,
            ),
        );
    }

    // The 60 s timer (§10): each of my sealers moves one ratchet step, so what its current key
    // reveals about earlier frames is bounded; after step 15 it starts a new generation.
    fn ratchet_sealers(&mut self, now: Instant) {
        let due: Vec<(Id16, u8)> = self
            .sealers
            .iter()
            .filter(|(_, (_, _, at))| {
                at.is_none_or(|at| now.saturating_duration_since(at) >= RATCHET_EVERY)
            })
            .map(|(k, _)| *k)
            .collect();
        for (cid, stream) in due {
            let Some((_, sealer, at)) = self.sealers.get_mut(&(cid, stream)) else {
                continue;
            };
            if at.is_none() {
                *at = Some(now);
                continue;
            }
            if sealer.ratchet().is_ok() {
                *at = Some(now);
                continue;
            }
            let roster = self
                .chains
                .get(&cid)
                .and_then(|s| s.chain.head())
                .map(|h| h.roster.clone());
            match roster {
                Some(r) => self.rekey_stream(cid, &r, stream),
                None => {
                    self.sealers.remove(&(cid, stream));
                }
            }
        }
    }

    // Never encrypt to `cid` again under any of my current keys for it.
    fn drop_sealers(&mut self, cid: Id16) {
        self.sealers.retain(|(c, _), _| *c != cid);
    }

    fn update_secured(&mut self) {
        let now_secured = self.my_channel.as_ref().map(|c| c.id.clone()).filter(|ch| {
            self.channel_id_of(ch)
                .is_some_and(|cid| self.sealers.contains_key(&(*cid, STREAM_DATA)))
        });
        if now_secured != self.secured {
            self.secured = now_secured.clone();
            if let Some(ch) = now_secured {
                self.events.push_back(Event::Secured(ch));
            }
        }
    }

    fn on_chat(&mut self, from: ParticipantId, cid: Bytes, f: Bytes, now: Instant) {
        self.open_chat(now, from, cid, f, now);
    }

    // Opens a chat frame; one whose key has not arrived yet (its sender rekeyed on a roster
    // I have not seen: rosters and keys come from different senders) waits up to
    // HOLD_FOR_KEY, and fails only then.
    fn open_chat(
        &mut self,
        since: Instant,
        from: ParticipantId,
        cid_b: Bytes,
        f: Bytes,
        now: Instant,
    ) {
        let (Some(cid), Some(sender)) = (cid_b.array::<16>(), id16(&from)) else {
            self.failed("chat_header");
            return;
        };
        // Malformed or oversized frames fail at once; only a well-formed one may wait.
        let Ok(g) = confer_e2ee::frame::frame_generation(Codec::Data, &f.0) else {
            self.failed("chat_malformed");
            return;
        };
        let opener = self.openers.get(&(cid, sender, STREAM_DATA));
        let key_held = opener.is_some_and(|o| o.holds(g));
        if opener.is_some_and(|o| o.oldest().is_some_and(|m| g < m)) {
            // Sealed before I joined (or under a key already deleted): never mine to read.
            self.stats.stale_frames += 1;
            return;
        }
        if !key_held
            && f.0.len() <= MAX_HELD_CHAT_BYTES
            && now.duration_since(since) < HOLD_FOR_KEY
            && self.early_chats.len() < MAX_EARLY_CHATS
        {
            self.early_chats.push((since, from, cid_b, f));
            return;
        }
        let channel = self.chains.get(&cid).map(|s| s.server_channel.clone());
        let opened = self
            .openers
            .get_mut(&(cid, sender, STREAM_DATA))
            .map(|o| o.open(Codec::Data, &f.0));
        match (opened, channel) {
            (Some(Ok(pt)), Some(channel)) => {
                self.stats.messages_received += 1;
                let text = String::from_utf8_lossy(&pt).into_owned();
                self.events.push_back(Event::Chat {
                    from,
                    channel,
                    text,
                });
            }
            (Some(Ok(_)), None) => self.failed("chat_no_room"),
            (Some(Err(_)), _) => self.failed("chat_open"),
            (None, _) if key_held => self.failed("chat_open"),
            (None, _) => self.failed("chat_no_key"),
        }
    }

    /// Mediator: make the signed rosters match who is where, as far as the mediator verified them.
    fn reconcile(&mut self, now: Instant) {
        if !self.is_mediator() {
            return;
        }
        let Some(session) = self.last_session.clone() else {
            return;
        };
        let Some(me) = self.me.as_ref() else { return };
        let my_pid = me.pid.clone();
        // Where each admitted, verified participant is.
        // Only where the server's view agrees with what this client asked for; elsewhere the
        // last agreed place stands (a move in flight, or a server that lies).
        let mut location: BTreeMap<ParticipantId, (ChannelId, Role, u8)> = BTreeMap::new();
        for ch in &session.channels {
            for m in &ch.members {
                let Some(peer) = self.peers.get(&m.participant_id) else {
                    continue;
                };
                let verified = peer.consent_ok || m.participant_id == my_pid;
                // The role the server reports must be the one the participant announced.
                if !verified || peer.ann.role != m.role {
                    continue;
                }
                let side = m.side.map(|s| s.number()).unwrap_or(0);
                // A caucus holds only its own side (and the mediators).
                let fits = match ch.id.as_str().strip_prefix("caucus-") {
                    Some(x) => m.role.is_manager() || m.side.is_some_and(|s| s.to_string() == x),
                    None => true,
                };
                let agreed = fits
                    && match self.intents.get(&m.participant_id) {
                        Some(Intent::In(c)) => *c == ch.id,
                        Some(Intent::NewBreakout) => ch.kind == ChannelKind::Breakout,
                        None => false,
                    };
                if agreed {
                    if self.intents.get(&m.participant_id) == Some(&Intent::NewBreakout) {
                        self.intents
                            .insert(m.participant_id.clone(), Intent::In(ch.id.clone()));
                    }
                    self.confirmed
                        .insert(m.participant_id.clone(), ch.id.clone());
                }
                if let Some(c) = self.confirmed.get(&m.participant_id) {
                    location.insert(m.participant_id.clone(), (c.clone(), m.role, side));
                }
            }
        }
        // Whoever the server no longer lists is gone.
        let listed: BTreeSet<ParticipantId> = session
            .channels
            .iter()
            .flat_map(|c| c.members.iter().map(|m| m.participant_id.clone()))
            .collect();
        self.confirmed.retain(|p, _| listed.contains(p));
        let mut channels: Vec<(ChannelId, ChannelKind)> = session
            .channels
            .iter()
            .map(|c| (c.id.clone(), c.kind))
            .collect();
        if !channels.iter().any(|(c, _)| c.as_str() == "joint") {
            channels.push((ChannelId::joint(), ChannelKind::Joint));
        }
        // A room that emptied is gone: if it fills again it gets a new chain and new keys
        // (its last roster is stale, and everyone deleted its keys when they left).
        let live: Vec<ChannelId> = channels.iter().map(|(c, _)| c.clone()).collect();
        let gone: Vec<Id16> = self
            .channel_ids
            .iter()
            .filter(|(c, _)| !live.contains(c))
            .map(|(_, id)| *id)
            .collect();
        self.channel_ids.retain(|c, _| live.contains(c));
        for cid in gone {
            self.chains.remove(&cid);
            self.drop_sealers(cid);
        }
        for (ch, kind) in channels {
            let joint = kind == ChannelKind::Joint;
            // The mediator signs every roster, so it is listed in every one: present where it
            // is, flagged away elsewhere (and then sent no keys there).
            let mut members: Vec<Member> = location
                .iter()
                .filter(|(pid, (at, _, _))| joint || at == &ch || **pid == my_pid)
                .filter_map(|(pid, (at, role, side))| {
                    let peer = self.peers.get(pid)?;
                    Some(Member {
                        participant_id: peer.ann.participant_id,
                        ik_pub: peer.ann.ik_pub,
                        ek_pub: peer.ann.ek_pub,
                        role: role_code(*role),
                        side: *side,
                        flags: if at == &ch { 0 } else { FLAG_AWAY },
                        name_commit: [0; 32],
                    })
                })
                .collect();
            members.sort_by_key(|m| m.participant_id);
            // A room with nobody verified present in it gets no roster (and no keys).
            if members.iter().all(Member::is_away) {
                continue;
            }
            self.publish_roster(&ch, kind, members, now);
        }
    }

    fn publish_roster(
        &mut self,
        ch: &ChannelId,
        kind: ChannelKind,
        members: Vec<Member>,
        now: Instant,
    ) {
        let cid = *self.channel_ids.entry(ch.clone()).or_insert_with(|| {
            let mut c = [0u8; 16];
            self.rng.fill_bytes(&mut c);
            c
        });
        let head = self.chains.get(&cid).and_then(|s| s.chain.head()).cloned();
        if head.as_ref().is_some_and(|h| h.roster.members == members) {
            return;
        }
        let Some(me) = self.me.as_ref() else { return };
        let roster = Roster {
            session_id: me.session.clone(),
            channel_id: cid,
            kind: match kind {
                ChannelKind::Joint => Kind::Joint,
                ChannelKind::Caucus => Kind::Caucus,
                ChannelKind::Breakout => Kind::Breakout,
            },
            epoch: head.as_ref().map_or(1, |h| h.roster.epoch + 1),
            prev_hash: head.as_ref().map_or([0; 32], |h| h.hash),
            members,
        };
        let identity = self.identity.as_ref().expect("identity until the end");
        let Ok(signed) = roster.sign(identity) else {
            return;
        };
        let env = Envelope::Roster {
            ch: ch.as_str().to_owned(),
            enc: Bytes(signed.encoded.clone()),
            sig: Bytes(signed.signature.to_vec()),
        };
        let my_id = me.id;
        let m_ik = identity.ik_pub();
        let session = me.session.clone();
        let recipients: Vec<Id16> = signed
            .roster
            .members
            .iter()
            .map(|m| m.participant_id)
            .filter(|p| *p != my_id)
            .collect();
        for r in recipients {
            if let Some(to) = pid_of(&r) {
                self.relay(RelayTarget::Participant(to), &env);
            }
        }
        let state = self.chains.entry(cid).or_insert_with(|| ChainState {
            chain: Chain::new(&session, m_ik),
            server_channel: ch.clone(),
            advanced_at: now,
        });
        if state.chain.accept(signed).is_ok() {
            state.advanced_at = now;
            state.server_channel = ch.clone();
            self.after_roster(cid, now);
        }
    }

    // I am no longer in `ch`: stop sending under its keys now, and forget its receive keys once
    // frames in flight have had time to arrive (unless I am back by then).
    fn left_channel(&mut self, ch: &ChannelId, now: Instant) {
        let cids: Vec<Id16> = self
            .chains
            .iter()
            .filter(|(_, s)| &s.server_channel == ch)
            .map(|(c, _)| *c)
            .collect();
        for cid in cids {
            self.drop_sealers(cid);
            self.channel_expiries
                .push((now + self.cfg.keep_old_keys, cid, ch.clone()));
        }
    }

    /// Timers: expire old keys, raise unsigned-member and stale-key alarms.
    pub fn tick(&mut self, now: Instant) {
        self.now = Some(now);
        self.ratchet_sealers(now);
        let due: Vec<_> = self
            .expiries
            .iter()
            .filter(|e| e.0 <= now)
            .cloned()
            .collect();
        self.expiries.retain(|e| e.0 > now);
        for (_, cid, sender, g) in due {
            match g {
                Some(g) => {
                    for ((c, s, _), o) in self.openers.iter_mut() {
                        if *c == cid && *s == sender {
                            o.remove_generation(g);
                        }
                    }
                }
                None => {
                    // Gone from the channel: only if still absent from its roster.
                    let absent = self
                        .chains
                        .get(&cid)
                        .and_then(|s| s.chain.head())
                        .is_none_or(|h| h.roster.member(&sender).is_none_or(Member::is_away));
                    if absent {
                        self.openers
                            .retain(|(c, s, _), _| !(*c == cid && *s == sender));
                    }
                }
            }
        }
        let keep = self.cfg.stale_key_after;
        self.early_keys
            .retain(|(at, _, _)| now.duration_since(*at) < keep);
        let due: Vec<_> = self
            .channel_expiries
            .iter()
            .filter(|e| e.0 <= now)
            .cloned()
            .collect();
        self.channel_expiries.retain(|e| e.0 > now);
        for (_, cid, ch) in due {
            if self.my_channel.as_ref().map(|c| &c.id) != Some(&ch) {
                self.openers.retain(|(c, _, _), _| *c != cid);
                self.drop_sealers(cid);
            }
        }
        self.retry_early_chats(now);
        self.check_unsigned(now);
        self.check_stale(now);
    }

    fn check_unsigned(&mut self, now: Instant) {
        let Some(view) = self.my_channel.clone() else {
            return;
        };
        let Some(me) = self.me.as_ref() else { return };
        let my_pid = me.pid.clone();
        let signed: BTreeSet<Id16> = self
            .head_for(&view.id)
            .map(|h| h.roster.members.iter().map(|m| m.participant_id).collect())
            .unwrap_or_default();
        let mut seen = BTreeSet::new();
        for m in &view.members {
            if m.participant_id == my_pid
                || id16(&m.participant_id).is_some_and(|i| signed.contains(&i))
            {
                continue;
            }
            seen.insert(m.participant_id.clone());
            let since = *self
                .unsigned_since
                .entry(m.participant_id.clone())
                .or_insert(now);
            if now.duration_since(since) >= self.cfg.unsigned_grace {
                self.alarm(
                    Alarm::UnsignedMember(m.participant_id.clone()),
                    m.participant_id.as_str().to_owned(),
                );
            }
        }
        self.unsigned_since.retain(|p, _| seen.contains(p));

        // The other way round: someone my roster says is present has left the room (per the
        // server) and no new roster came. If it is withheld, the departed may still hold my
        // current key: stop sending until a roster arrives.
        let in_view: BTreeSet<ParticipantId> = view
            .members
            .iter()
            .map(|m| m.participant_id.clone())
            .collect();
        let gone: Vec<ParticipantId> = self
            .roster_present(&view.id)
            .into_iter()
            .filter(|p| *p != my_pid && !in_view.contains(p))
            .collect();
        if gone.is_empty() {
            self.departed_since = None;
            self.withheld = false;
            return;
        }
        let since = *self.departed_since.get_or_insert(now);
        if now.duration_since(since) >= self.cfg.unsigned_grace {
            self.withheld = true;
            self.alarm(Alarm::RosterWithheld, view.id.as_str().to_owned());
        }
    }

    fn check_stale(&mut self, now: Instant) {
        let Some(me) = self.me.as_ref() else { return };
        let my_id = me.id;
        let mut stale = Vec::new();
        for (cid, s) in &self.chains {
            let Some(head) = s.chain.head() else { continue };
            if head.roster.member(&my_id).is_none_or(Member::is_away)
                || now.duration_since(s.advanced_at) < self.cfg.stale_key_after
            {
                continue;
            }
            for m in head
                .roster
                .members
                .iter()
                .filter(|m| !m.is_away() && m.participant_id != my_id)
            {
                let fresh = self
                    .key_epochs
                    .get(&(*cid, m.participant_id))
                    .is_some_and(|e| *e >= head.roster.epoch);
                if !fresh {
                    stale.push((
                        m.participant_id,
                        format!("{}:{}", hex::encode(cid), head.roster.epoch),
                    ));
                }
            }
        }
        for (id, key) in stale {
            if let Some(p) = pid_of(&id) {
                self.alarm(Alarm::StaleKey(p), format!("{key}:{}", hex::encode(id)));
            }
        }
    }

    /// Leaves: deletes every key and returns the `leave` to send.
    pub fn leave(&mut self) -> ClientMessage {
        self.end();
        ClientMessage::Leave
    }

    fn end(&mut self) {
        // Drop every key: senders, receivers, chains, and the identity itself (all zeroize).
        self.sealers.clear();
        self.openers.clear();
        self.chains.clear();
        self.pending.clear();
        self.early_keys.clear();
        self.early_chats.clear();
        self.identity = None;
        self.secured = None;
        self.cfg.issued_psks.clear();
        if let Some(i) = self.cfg.invite.as_mut() {
            i.psk = None;
        }
        self.stats.keys_deleted = true;
        self.events.push_back(Event::Ended);
    }
}

/// `"confer/1 consent" || lp(session_id) || lp(participant_id) || agreement_hash || u8(attestations)`.
pub fn consent_bytes(session: &[u8], participant: &Id16, hash: &[u8; 32], attest: u8) -> Vec<u8> {
    let mut w = confer_e2ee::enc::Writer::label(b"confer/1 consent");
    w.lp(session).lp(participant).raw(hash).u8(attest);
    w.into_bytes()
}
