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
use confer_e2ee::messages::{
    ATTEST_ALL, ConsentAck, NameMsg, SenderKeyAck, consent_signed_bytes, psk_hint,
};
use confer_e2ee::pairwise::{self, MsgType, Pair, Sequences};
use confer_e2ee::roster::{
    Accepted, Chain, FLAG_AWAY, Kind, Member, Roster, RosterError, SignedRoster,
};
use confer_e2ee::secret::Secret32;
use confer_e2ee::{CryptoRng, Id16};
use confer_proto::{
    AgreementHash, ChannelId, ChannelKind, ChannelView, ClientMessage, ParticipantId, RelayTarget,
    Role, ServerMessage, SessionView, Side,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::envelope::{Bytes, Envelope};
use crate::link::Invite;

pub use confer_e2ee::codes::{
    HOLD_FOR_KEY, KEEP_OLD_KEYS, MAX_PEERS, RATCHET_EVERY, STALE_KEY_AFTER, UNSIGNED_GRACE,
};
use confer_e2ee::codes::{
    AlarmCode, FailureReason, KEYFRAME_REQUEST_EVERY, MAX_ALARMS, MAX_CHAIN_HISTORY,
    MAX_EARLY_CHATS, MAX_HELD_CHAT_BYTES, MAX_HELD_KEYS, MAX_OLD_GENERATIONS,
};
pub use confer_e2ee::messages::{ATTEST_NO_RECORDING, ATTEST_NOBODY_ELSE};

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
    /// A roster of a chain that a newer chain of the same room replaced (an old chain
    /// delivered late).
    ChainRevived,
    /// A new chain for a room that does not link to the chain I hold for that room.
    ChainUnlinked,
    /// A roster lists my participant id with keys that are not mine: I am not in it.
    WrongSelfKey,
    /// Mediators: a participant that left, timed out or was kicked is listed again.
    RemovedRelisted(ParticipantId),
    /// Mediators: a second, different announcement for a participant already announced.
    AnnouncementChanged(ParticipantId),
    /// Mediators: an arrival announced another role than its invite was made for.
    InviteRoleMismatch(ParticipantId),
    /// Mediators: a second arrival under an invite secret that already admitted someone.
    InviteReused(ParticipantId),
    /// Mediators: the server's breakouts do not match the breakout commands sent.
    BreakoutMismatch,
    /// A delegation that does not verify under the mediator's key.
    DelegationInvalid,
}

impl Alarm {
    /// The alarm's kind, one of the codes every implementation shares.
    pub fn kind(&self) -> AlarmCode {
        match self {
            Alarm::Roster(RosterError::Fork) => AlarmCode::RosterFork,
            Alarm::Roster(RosterError::Rollback) => AlarmCode::RosterRollback,
            Alarm::Roster(RosterError::Gap) => AlarmCode::RosterGap,
            Alarm::Roster(RosterError::BadSignature) => AlarmCode::RosterBadSignature,
            Alarm::Roster(RosterError::WrongChannel) => AlarmCode::RosterWrongChannel,
            Alarm::Roster(RosterError::Malformed | RosterError::SignerNotMember) => {
                AlarmCode::RosterInvalid
            }
            Alarm::UnsignedMember(_) => AlarmCode::UnsignedMember,
            Alarm::StaleKey(_) => AlarmCode::StaleKey,
            Alarm::MediatorKeyMismatch => AlarmCode::MediatorKeyMismatch,
            Alarm::RosterFromNonMediator => AlarmCode::RosterFromNonMediator,
            Alarm::IdentityMismatch => AlarmCode::IdentityMismatch,
            Alarm::RosterWithheld => AlarmCode::RosterWithheld,
            Alarm::ChainRevived => AlarmCode::RosterChainRevived,
            Alarm::ChainUnlinked => AlarmCode::RosterChainUnlinked,
            Alarm::WrongSelfKey => AlarmCode::RosterWrongSelfKey,
            Alarm::RemovedRelisted(_) => AlarmCode::RemovedRelisted,
            Alarm::AnnouncementChanged(_) => AlarmCode::AnnouncementChanged,
            Alarm::InviteRoleMismatch(_) => AlarmCode::InviteRoleMismatch,
            Alarm::InviteReused(_) => AlarmCode::InviteReused,
            Alarm::BreakoutMismatch => AlarmCode::BreakoutMismatch,
            Alarm::DelegationInvalid => AlarmCode::DelegationInvalid,
        }
    }

    /// A stable short code for summaries.
    pub fn code(&self) -> &'static str {
        self.kind().code()
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
    /// A participant's display name, verified against its name commitment in a signed roster
    /// (mediators: as the participant sent it, before they commit to it in a roster).
    Name {
        /// Who.
        participant_id: ParticipantId,
        /// The name.
        name: String,
    },
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
    /// Display names received that matched the sender's roster commitment.
    pub names_verified: u64,
    /// Display names received that did not match the sender's roster commitment.
    pub names_rejected: u64,
    /// Alarms beyond the distinct ones remembered (`MAX_ALARMS`): counted only.
    pub alarms_dropped: u64,
    /// Chat and media frames under a generation older than every key I hold of that sender
    /// for that stream: sealed before I joined the room (a sender that had not seen the new
    /// roster yet), or whose key I already deleted. Dropped unopened; not failures.
    pub stale_frames: u64,
}

/// Why [`Core::try_open_chat`] did not open a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRefused {
    /// I hold no key of that sender for that channel at all.
    NoKey,
    /// I hold that sender's keys for that channel, and the frame does not open under them.
    DoesNotOpen,
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
    /// My display name, if I give one: sent only end to end (pairwise type 4), committed to
    /// in rosters. At most `MAX_NAME_BYTES` of UTF-8; a longer one is not sent.
    pub display_name: Option<String>,
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
    /// this is off by default: those arrivals wait for a person to admit them. With it on, such
    /// an arrival's side is the one the server reports (there is no invite to bind it).
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
            display_name: None,
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

/// An invite secret this (mediator's) client made, bound to the role and side it was made
/// for, and to the one arrival it admitted.
struct IssuedInvite {
    psk: Secret32,
    hint: [u8; 8],
    role: Role,
    side: u8,
    used_by: Option<ParticipantId>,
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
    /// A breakout the server is creating for the `create_breakout` command with this index
    /// (its name is not known yet).
    NewBreakout(usize),
}

/// A `create_breakout` the mediator's client sent: satisfied only by one breakout that did
/// not exist before the command, the same for all its members, claimed by no other command.
struct BreakoutCmd {
    members: Vec<ParticipantId>,
    /// Every breakout seen before the command.
    known_before: BTreeSet<ChannelId>,
    /// The breakout it created, once every member was seen in it.
    room: Option<ChannelId>,
    /// The server's breakouts did not match: never satisfied.
    failed: bool,
}

/// Why the mediator's client holds a participant out of every roster for good.
struct Removal {
    at: Instant,
    /// How many session views had arrived then: only a later view can list it "again".
    view: u64,
    /// By this client's own `kick` (the server may list it for a moment longer).
    by_me: bool,
}

/// A room's chains, as this client knows them: the current one and those it replaced.
#[derive(Default)]
struct RoomChains {
    current: Option<Id16>,
    retired: BTreeSet<Id16>,
    /// Mediators: the last hash of the room's previous chain, for the next chain's genesis.
    link: Option<[u8; 32]>,
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
    /// The acknowledgment verified but came without an invite secret (or under one already
    /// used, or for another role): a person decides.
    held: bool,
    /// The side this participant was bound to: by its invite, or by the person who admitted
    /// it. Never taken from the server (except with `admit_without_invite_secret`).
    side: Option<u8>,
    /// Its display name as it sent it (committed to in the rosters).
    name: Option<[u8; 32]>,
}

struct ChainState {
    chain: Chain,
    server_channel: ChannelId,
    advanced_at: Instant,
    /// Managers: every roster of this chain (at most `MAX_CHAIN_HISTORY`), to hand a
    /// newcomer the chain from its genesis.
    history: Vec<SignedRoster>,
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
    /// Mediators: invite secrets made, bound to role and side, single use.
    invites: Vec<IssuedInvite>,
    /// Mediators: participants that left, timed out or were kicked: never signed again.
    removed: BTreeMap<ParticipantId, Removal>,
    /// Mediators: where this client told the server to put each participant. The server's
    /// views are only believed where they agree with it.
    intents: BTreeMap<ParticipantId, Intent>,
    /// Mediators: the last location where view and intent agreed.
    confirmed: BTreeMap<ParticipantId, ChannelId>,
    /// Mediators: the `create_breakout` commands sent, in order.
    breakouts: Vec<BreakoutCmd>,
    /// Mediators: every breakout the server ever listed.
    seen_breakouts: BTreeSet<ChannelId>,
    last_session: Option<SessionView>,
    /// Mediators: session views received so far.
    views: u64,
    // Everyone.
    my_channel: Option<ChannelView>,
    chains: BTreeMap<Id16, ChainState>,
    /// Per server room: its current chain and the chains it replaced.
    rooms: BTreeMap<ChannelId, RoomChains>,
    /// Display names received, before or after the roster that commits to them.
    name_claims: BTreeMap<Id16, NameMsg>,
    /// Names shown (verified), so each is announced once.
    names_shown: BTreeMap<Id16, [u8; 32]>,
    /// My name message (fresh salt), if I give a name.
    my_name: Option<NameMsg>,
    /// Whom I sent my name to.
    named: BTreeSet<Id16>,
    /// Delegations of roster signing verified under the mediator's key: (co-mediator IK,
    /// signature). Applied to every chain.
    delegations: Vec<([u8; 32], [u8; 64])>,
    /// Co-mediators: the mediator's delegation of my own identity key, once received.
    my_delegation: Option<[u8; 64]>,
    /// Per (channel, sender, stream): the newest epoch I acknowledged a key for.
    acked: BTreeMap<(Id16, Id16, u8), u64>,
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
        let my_name = cfg
            .display_name
            .as_deref()
            .and_then(|n| NameMsg::new(n, &mut rng));
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
            invites: Vec::new(),
            removed: BTreeMap::new(),
            intents: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            breakouts: Vec::new(),
            seen_breakouts: BTreeSet::new(),
            last_session: None,
            views: 0,
            my_channel: None,
            chains: BTreeMap::new(),
            rooms: BTreeMap::new(),
            name_claims: BTreeMap::new(),
            names_shown: BTreeMap::new(),
            my_name,
            named: BTreeSet::new(),
            acked: BTreeMap::new(),
            delegations: Vec::new(),
            my_delegation: None,
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

    /// Mediators: a person admits a held arrival (after checking who it is, e.g. by voice),
    /// choosing the role and side it is admitted as: the announced role must be that role.
    /// Returns false if nobody with that id is held, it was removed, or the role differs.
    pub fn admit_held(&mut self, p: &ParticipantId, role: Role, side: Option<Side>) -> bool {
        if self.removed.contains_key(p) {
            return false;
        }
        let Some(peer) = self
            .peers
            .get_mut(p)
            .filter(|x| x.held && x.ann.role == role)
        else {
            return false;
        };
        peer.held = false;
        peer.consent_ok = true;
        peer.side = Some(side.map_or(0, |s| s.number()));
        self.admit_ready();
        true
    }

    /// Mediators: makes the invite secret for a link to be sent to someone invited as
    /// `role` (and `side`). The secret admits one arrival only, and only as that role; its
    /// side comes from here, never from the server. Put it in the link's `k=`.
    pub fn issue_invite(&mut self, role: Role, side: Option<Side>) -> Secret32 {
        let psk = Secret32::random(&mut self.rng);
        self.invites.push(IssuedInvite {
            hint: psk_hint(&psk),
            psk: psk.clone(),
            role,
            side: side.map_or(0, |s| s.number()),
            used_by: None,
        });
        psk
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

    // The current chain of this server channel: the one that replaced every other chain of
    // that room (§7.6), never merely the one that advanced last.
    fn current_chain(&self, ch: &ChannelId) -> Option<(&Id16, &ChainState)> {
        let cid = self.rooms.get(ch)?.current.as_ref()?;
        self.chains.get_key_value(cid)
    }

    // My entry in a roster, only if it carries my own keys: an entry under my id with other
    // keys is someone else's, and I am not in that roster (§7.5).
    fn my_entry<'a>(&self, roster: &'a Roster) -> Option<&'a Member> {
        let me = self.me.as_ref()?;
        let id = self.identity.as_ref()?;
        roster
            .member(&me.id)
            .filter(|m| m.ik_pub == id.ik_pub() && m.ek_pub == id.ek_pub())
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

    /// How many generations of `from`'s key for `stream` I hold in the current chain of a
    /// server channel (bounded: the current one and `MAX_OLD_GENERATIONS` replaced ones).
    pub fn held_generations(&self, ch: &ChannelId, from: &ParticipantId, stream: u8) -> usize {
        let (Some((cid, _)), Some(sender)) = (self.current_chain(ch), id16(from)) else {
            return 0;
        };
        self.openers
            .get(&(*cid, sender, stream))
            .map_or(0, |o| o.generations().len())
    }

    /// The confer/1 channel id of a server channel's current chain, if I hold one.
    pub fn channel_id(&self, ch: &ChannelId) -> Option<Id16> {
        self.current_chain(ch).map(|(c, _)| *c)
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
        // Each distinct alarm once; a server that invents ids cannot grow this without bound.
        if self.alarmed.len() >= MAX_ALARMS {
            self.stats.alarms_dropped += 1;
            return;
        }
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
    /// non-member a ciphertext it was never sent), saying precisely why it does not open.
    /// Nothing is counted.
    pub fn try_open_chat(
        &mut self,
        from: &ParticipantId,
        cid: &Id16,
        frame: &[u8],
    ) -> Result<String, ChatRefused> {
        let sender = id16(from).ok_or(ChatRefused::NoKey)?;
        let opener = self
            .openers
            .get_mut(&(*cid, sender, STREAM_DATA))
            .ok_or(ChatRefused::NoKey)?;
        let pt = opener
            .open(Codec::Data, frame)
            .map_err(|_| ChatRefused::DoesNotOpen)?;
        String::from_utf8(pt).map_err(|_| ChatRefused::DoesNotOpen)
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
    fn failed(&mut self, why: FailureReason) {
        self.stats.decrypt_failures += 1;
        *self.stats.failure_reasons.entry(why.code()).or_default() += 1;
    }

    fn media_failed(&mut self) {
        // After the end every key is gone on purpose: what still arrives is not a failure.
        if self.stats.keys_deleted {
            return;
        }
        self.stats.media_decrypt_failures += 1;
        self.failed(FailureReason::Media);
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
        // The current chain of this server channel (a room that emptied and filled again gets
        // a new chain), if it lists me, with my own keys, as present.
        let (cid, s) = self.current_chain(ch)?;
        self.my_entry(&s.chain.head()?.roster)
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
                            side: Some(0),
                            name: self.my_name.as_ref().map(NameMsg::commit),
                        },
                    );
                    if let Some(n) = self.my_name.clone() {
                        self.name_claims.insert(id, n);
                    }
                }
                self.my_channel = channel;
                self.reconcile(now);
            }
            ServerMessage::Session { session } => {
                self.last_session = Some(session);
                self.views += 1;
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
            // The server's word that someone left is believed (it could stop routing them
            // anyway); its word that they are back is not: removals are final.
            ServerMessage::ParticipantLeft { participant_id, .. }
                if self.is_mediator()
                    && Some(&participant_id) != self.me.as_ref().map(|m| &m.pid) =>
            {
                self.remove(participant_id, now, false);
                self.reconcile(now);
            }
            ServerMessage::ParticipantLeft { .. } => {}
            ServerMessage::ConsentRecorded | ServerMessage::Pong => {}
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

    // Mediators, and co-mediators holding the mediator's delegation: they sign rosters.
    fn is_manager(&self) -> bool {
        self.is_mediator()
            || (self.me.as_ref().is_some_and(|m| m.role == Role::CoMediator)
                && self.my_delegation.is_some())
    }

    // A chain verified against the mediator's key and every delegation I accepted.
    fn new_chain(&self, session: &[u8], m_ik: [u8; 32]) -> Chain {
        let mut c = Chain::new(session, m_ik);
        for (ik, sig) in &self.delegations {
            // Each was verified when it was added; adding it again cannot fail.
            let _ = c.add_delegate(*ik, confer_e2ee::identity::SCOPE_ROSTERS, sig);
        }
        c
    }

    // A delegation that verifies under the mediator's key: remembered, applied to every chain.
    fn add_delegation(&mut self, ik: [u8; 32], sig: [u8; 64]) -> bool {
        let Some((_, m_ik, _)) = self.mediator else {
            return false;
        };
        let Some(me) = self.me.as_ref() else {
            return false;
        };
        let msg = confer_e2ee::identity::delegation_bytes(
            &me.session,
            &ik,
            confer_e2ee::identity::SCOPE_ROSTERS,
        );
        if verify(&m_ik, &msg, &sig).is_err() {
            return false;
        }
        if !self.delegations.iter().any(|(i, _)| *i == ik) {
            if self.delegations.len() >= MAX_PEERS {
                return false;
            }
            self.delegations.push((ik, sig));
            for s in self.chains.values_mut() {
                let _ = s
                    .chain
                    .add_delegate(ik, confer_e2ee::identity::SCOPE_ROSTERS, &sig);
            }
        }
        true
    }

    // Co-mediators: the mediator delegated roster signing to me.
    fn on_delegate(&mut self, from: &ParticipantId, ik: Bytes, sig: Bytes, now: Instant) {
        let from_mediator = self.mediator.as_ref().is_some_and(|m| m.0 == *from);
        let mine = self.identity.as_ref().map(Identity::ik_pub);
        let (Some(ik), Some(sig)) = (ik.array::<32>(), sig.array::<64>()) else {
            return;
        };
        if !from_mediator || Some(ik) != mine || self.me.as_ref().map(|m| m.role) != Some(Role::CoMediator) {
            return;
        }
        if !self.add_delegation(ik, sig) {
            self.alarm(Alarm::DelegationInvalid, String::new());
            return;
        }
        self.my_delegation = Some(sig);
        self.reconcile(now);
    }

    // Mediator: introduce myself to everyone in the waiting room (once each).
    fn contact_waiting(&mut self) {
        if !self.is_mediator() {
            return;
        }
        let Some(session) = &self.last_session else {
            return;
        };
        // Everyone in the waiting room, and co-mediators (the server seats managers in joint
        // at once; they still announce and consent before they are signed in).
        let me = self.me.as_ref().map(|m| m.pid.clone());
        let co: Vec<ParticipantId> = session
            .channels
            .iter()
            .flat_map(|c| c.members.iter())
            .filter(|m| m.role == Role::CoMediator && Some(&m.participant_id) != me.as_ref())
            .map(|m| m.participant_id.clone())
            .collect();
        let new: Vec<ParticipantId> = session
            .waiting
            .iter()
            .map(|w| w.participant_id.clone())
            .chain(co)
            .filter(|p| !self.contacted.contains(p) && !self.removed.contains_key(p))
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
        // The role the server shows must be the announced one (§5.2); the side is the invite's
        // (or the admitting person's), never the server's.
        let ready: Vec<ParticipantId> = session
            .waiting
            .iter()
            .filter(|w| {
                w.consented
                    && self.peers.get(&w.participant_id).is_some_and(|p| {
                        p.consent_ok && p.side.is_some() && p.ann.role == w.role
                    })
            })
            .map(|w| w.participant_id.clone())
            .filter(|p| !self.admit_sent.contains(p) && !self.removed.contains_key(p))
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
        let now = self.now;
        match &m {
            ClientMessage::Admit { participant_id } => {
                self.intents
                    .insert(participant_id.clone(), Intent::In(ChannelId::joint()));
            }
            ClientMessage::Kick { participant_id } if self.is_manager() => {
                // Final at once: re-sign every room without the target, without waiting for
                // the server to agree.
                if let Some(now) = now {
                    self.remove(participant_id.clone(), now, true);
                    self.out.push_back(m);
                    self.reconcile(now);
                    return;
                }
            }
            ClientMessage::Move {
                participant_id,
                channel_id,
            } => {
                self.intents
                    .insert(participant_id.clone(), Intent::In(channel_id.clone()));
            }
            ClientMessage::CreateBreakout { members } => {
                let idx = self.breakouts.len();
                let mut known_before = self.seen_breakouts.clone();
                if let Some(v) = &self.last_session {
                    known_before.extend(
                        v.channels
                            .iter()
                            .filter(|c| c.kind == ChannelKind::Breakout)
                            .map(|c| c.id.clone()),
                    );
                }
                self.breakouts.push(BreakoutCmd {
                    members: members.clone(),
                    known_before,
                    room: None,
                    failed: false,
                });
                for p in members {
                    self.intents.insert(p.clone(), Intent::NewBreakout(idx));
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
            self.failed(FailureReason::Envelope);
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
            Envelope::Roster {
                ch,
                enc,
                sig,
                dik,
                dsig,
            } => {
                let del = dik.and_then(|i| i.array::<32>()).zip(dsig.and_then(|s| s.array::<64>()));
                self.on_roster(from, ch, enc, sig, del, now)
            }
            Envelope::Delegate { ik, sig } => self.on_delegate(&from, ik, sig, now),
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
            self.failed(FailureReason::Announcement);
            return;
        }
        if self.is_mediator() {
            // Only someone the server lists in this session (bounded), not any id it invents,
            // and never someone removed for good.
            let listed = self.last_session.as_ref().is_some_and(|v| {
                v.waiting.iter().any(|w| w.participant_id == from)
                    || v.channels
                        .iter()
                        .any(|c| c.members.iter().any(|m| m.participant_id == from))
            });
            if !listed || self.removed.contains_key(&from) {
                return;
            }
            if let Some(known) = self.peers.get(&from) {
                // One participant id, one set of keys: a second, different announcement is
                // someone else claiming that id. The first one stands.
                if known.ann != ann {
                    self.alarm(
                        Alarm::AnnouncementChanged(from.clone()),
                        from.as_str().to_owned(),
                    );
                }
                return;
            }
            if self.peers.len() >= MAX_PEERS {
                return;
            }
            self.peers.insert(
                from,
                Peer {
                    ann,
                    consent_ok: false,
                    held: false,
                    side: None,
                    name: None,
                },
            );
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

    // Seals `pt` to `to` (pairwise, §6) and relays it; with an invite secret in auth_psk.
    fn send_pairwise(
        &mut self,
        to_id: Id16,
        to_ek: &[u8; 32],
        msg_type: MsgType,
        pt: &[u8],
        psk: Option<&Secret32>,
    ) {
        let (Some(me), Some(to)) = (self.me.as_ref(), pid_of(&to_id)) else {
            return;
        };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let seq = self.seqs.next_send(to_id);
        let pair = Pair {
            session_id: &me.session,
            from: me.id,
            to: to_id,
        };
        let Ok(sealed) = pairwise::seal(
            &mut self.rng,
            identity,
            to_ek,
            pair,
            msg_type,
            seq,
            pt,
            psk,
        ) else {
            return;
        };
        let env = Envelope::Pw {
            t: msg_type as u8,
            seq,
            enc: Bytes(sealed.enc.to_vec()),
            ct: Bytes(sealed.ct),
            hint: psk.map(|p| Bytes(psk_hint(p).to_vec())),
        };
        self.relay(RelayTarget::Participant(to), &env);
    }

    fn send_consent(&mut self, mediator: &ParticipantId, mediator_ek: [u8; 32]) {
        let env = self.announce_envelope();
        self.relay(RelayTarget::Participant(mediator.clone()), &env);
        let (Some(me), Some(identity)) = (self.me.as_ref(), self.identity.as_ref()) else {
            return;
        };
        let Some(m_id) = id16(mediator) else { return };
        let hash = self.cfg.agreement_hash;
        let signed = consent_signed_bytes(&me.session, &me.id, &hash, ATTEST_ALL);
        let ack = ConsentAck {
            agreement_hash: hash,
            attestations: ATTEST_ALL,
            signature: identity.sign(&signed),
        };
        let psk = self.cfg.invite.as_ref().and_then(|i| i.psk.clone());
        self.send_pairwise(
            m_id,
            &mediator_ek,
            MsgType::Consent,
            &ack.encode(),
            psk.as_ref(),
        );
        // My name goes to the mediator with my consent (under the same invite secret), so
        // the mediator can commit to it in the roster that admits me.
        if let Some(n) = self.my_name.as_ref().map(NameMsg::encode) {
            self.send_pairwise(m_id, &mediator_ek, MsgType::Name, &n, psk.as_ref());
            self.named.insert(m_id);
        }
        // Managers are seated by the server without a waiting room: the acknowledgment to
        // the mediator is all there is.
        let manager = self.me.as_ref().is_some_and(|m| m.role.is_manager());
        if let Ok(h) = AgreementHash::new(hex::encode(hash))
            && !manager
        {
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
            self.failed(FailureReason::PairwiseHeader);
            return;
        };
        let Some(ek) = self.ek_of(&from) else {
            // A key may arrive before the roster that names its sender.
            if self.pending.len() < MAX_HELD_KEYS {
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
            self.failed(FailureReason::PairwiseReplay);
            return;
        }
        // The hint names the invite secret; no trial decryption.
        let invite = match &hint {
            Some(h) => match self.invites.iter().position(|i| i.hint[..] == h.0[..]) {
                Some(i) => Some(i),
                None => {
                    self.failed(FailureReason::PairwiseUnknownPsk);
                    return;
                }
            },
            None => None,
        };
        let pair = Pair {
            session_id: &me.session,
            from: from_id,
            to: me.id,
        };
        let sealed = pairwise::Sealed { enc, ct: ct.0 };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let psk = invite.map(|i| &self.invites[i].psk);
        let Ok(pt) = pairwise::open(identity, &ek, pair, msg_type, seq, &sealed, psk) else {
            self.failed(FailureReason::PairwiseOpen);
            return;
        };
        // Plaintexts may hold keys: wiped when dropped.
        let pt = Zeroizing::new(pt);
        self.seqs.accept(from_id, seq);
        match msg_type {
            MsgType::Consent => self.on_consent(from, &pt, invite),
            MsgType::SenderKey => self.on_sender_key(from_id, &pt, now),
            MsgType::SenderKeyAck => {
                if SenderKeyAck::decode(&pt).is_ok() {
                    self.stats.acks_received += 1;
                } else {
                    self.failed(FailureReason::PairwiseDecode);
                }
            }
            MsgType::Name => self.on_name(from, from_id, &pt),
        }
    }

    fn on_consent(&mut self, from: ParticipantId, pt: &[u8], invite: Option<usize>) {
        if !self.is_mediator() || self.removed.contains_key(&from) {
            return;
        }
        let Some(me) = self.me.as_ref() else { return };
        let Some(peer) = self.peers.get(&from) else {
            return;
        };
        let Ok(ack) = ConsentAck::decode(pt) else {
            self.stats.consents_rejected += 1;
            return;
        };
        let signed = consent_signed_bytes(
            &me.session,
            &peer.ann.participant_id,
            &ack.agreement_hash,
            ack.attestations,
        );
        let ok = ack.agreement_hash == self.cfg.agreement_hash
            && ack.attestations == ATTEST_ALL
            && verify(&peer.ann.ik_pub, &signed, &ack.signature).is_ok();
        if !ok {
            self.stats.consents_rejected += 1;
            return;
        }
        self.stats.consents_verified += 1;
        let announced = peer.ann.role;
        let bound = match invite {
            // An invite secret admits one arrival, only as the role it was made for; its
            // side comes from the invite.
            Some(i) => {
                let inv = &self.invites[i];
                if inv.role != announced {
                    self.alarm(
                        Alarm::InviteRoleMismatch(from.clone()),
                        from.as_str().to_owned(),
                    );
                    None
                } else if inv.used_by.as_ref().is_some_and(|u| *u != from) {
                    self.alarm(Alarm::InviteReused(from.clone()), from.as_str().to_owned());
                    None
                } else {
                    let side = inv.side;
                    self.invites[i].used_by = Some(from.clone());
                    Some(side)
                }
            }
            // A bare token: the server could have minted it. Held for a person, unless this
            // client was told to admit those too (then the server's side is all there is).
            None if self.cfg.admit_without_invite_secret => Some(
                self.last_session
                    .as_ref()
                    .and_then(|v| v.waiting.iter().find(|w| w.participant_id == from))
                    .and_then(|w| w.side)
                    .map_or(0, |s| s.number()),
            ),
            None => None,
        };
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        match bound {
            Some(side) => {
                p.consent_ok = true;
                p.side = Some(side);
                if announced == Role::CoMediator {
                    self.delegate_to(&from);
                } else {
                    self.admit_ready();
                }
            }
            None => {
                if !p.held {
                    p.held = true;
                    self.stats.consents_held += 1;
                }
            }
        }
    }

    // Mediators: a co-mediator whose consent verified under its invite is seated in joint by
    // the server already: sign it in there, and delegate roster signing to its key (§5.3).
    fn delegate_to(&mut self, co: &ParticipantId) {
        let (Some(me), Some(identity), Some(peer)) =
            (self.me.as_ref(), self.identity.as_ref(), self.peers.get(co))
        else {
            return;
        };
        let ik = peer.ann.ik_pub;
        let sig = identity.delegate(&me.session, &ik, confer_e2ee::identity::SCOPE_ROSTERS);
        self.intents
            .insert(co.clone(), Intent::In(ChannelId::joint()));
        if !self.add_delegation(ik, sig) {
            return;
        }
        self.relay(
            RelayTarget::Participant(co.clone()),
            &Envelope::Delegate {
                ik: Bytes(ik.to_vec()),
                sig: Bytes(sig.to_vec()),
            },
        );
        if let Some(now) = self.now {
            self.reconcile(now);
        }
    }

    fn on_sender_key(&mut self, from_id: Id16, pt: &[u8], now: Instant) {
        let Ok(msg) = SenderKeyMsg::decode(pt) else {
            self.failed(FailureReason::PairwiseDecode);
            return;
        };
        if !self.install_key(from_id, &msg, now) && self.early_keys.len() < MAX_HELD_KEYS {
            // The sender saw the roster before I did (rosters and keys come from different
            // senders, so their order is not guaranteed): keep the key until my roster arrives.
            self.early_keys.push((now, from_id, msg));
        }
    }

    // A display name (type 4): shown only when it matches the sender's commitment in a
    // signed roster; kept (one per sender) until such a roster arrives.
    fn on_name(&mut self, from: ParticipantId, from_id: Id16, pt: &[u8]) {
        let Ok(n) = NameMsg::decode(pt) else {
            self.failed(FailureReason::PairwiseDecode);
            return;
        };
        if self.is_mediator() {
            // The mediator commits to what the participant sent (in its next rosters).
            if let Some(p) = self.peers.get_mut(&from) {
                p.name = Some(n.commit());
            } else {
                return;
            }
        }
        if self.name_claims.len() < MAX_PEERS || self.name_claims.contains_key(&from_id) {
            self.name_claims.insert(from_id, n);
        }
        self.check_names();
    }

    // Shows each claimed name that the newest roster listing its sender commits to.
    fn check_names(&mut self) {
        let mut shown = Vec::new();
        let my_id = self.me.as_ref().map(|m| m.id);
        for (id, n) in &self.name_claims {
            let commit = n.commit();
            if Some(*id) == my_id {
                continue;
            }
            if self.names_shown.get(id) == Some(&commit) {
                continue;
            }
            let listed: Vec<[u8; 32]> = self
                .rooms
                .values()
                .filter_map(|r| r.current.as_ref())
                .filter_map(|c| self.chains.get(c)?.chain.head())
                .filter_map(|h| h.roster.member(id).map(|m| m.name_commit))
                .collect();
            if listed.is_empty() {
                continue;
            }
            shown.push((*id, commit, listed.contains(&commit), n.name.clone()));
        }
        for (id, commit, ok, name) in shown {
            if !ok {
                self.stats.names_rejected += 1;
                self.name_claims.remove(&id);
                continue;
            }
            self.names_shown.insert(id, commit);
            self.stats.names_verified += 1;
            if let Some(participant_id) = pid_of(&id) {
                self.events
                    .push_back(Event::Name { participant_id, name });
            }
        }
    }

    /// The display names verified so far (against signed rosters), by participant.
    pub fn names(&self) -> Vec<(ParticipantId, String)> {
        self.names_shown
            .iter()
            .filter_map(|(id, c)| {
                let n = self.name_claims.get(id).filter(|n| n.commit() == *c)?;
                Some((pid_of(id)?, n.name.clone()))
            })
            .collect()
    }

    /// Installs a sender key; `false` if it is for an epoch I have not seen yet.
    fn install_key(&mut self, from_id: Id16, msg: &SenderKeyMsg, now: Instant) -> bool {
        if self.me.is_none() {
            return true;
        }
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
        // only if I am in it too (with my own keys). A key for an older epoch from a sender
        // still present comes from a sender that had not seen the newest roster yet (rosters
        // and keys come from different senders): frames under it are in flight, so it is kept
        // like a replaced generation (KEEP_OLD_KEYS), never as the sender's current one.
        let sender_ok = head.roster.member(&from_id).is_some_and(|m| !m.is_away());
        let me_ok = self.my_entry(&head.roster).is_some();
        let head_epoch = head.roster.epoch;
        if !sender_ok || !me_ok {
            return true;
        }
        let superseded = msg.epoch < head_epoch;
        let Some(me) = self.me.as_ref() else {
            return true;
        };
        let Some(ctx) = FrameCtx::new(&me.session, msg.channel_id, from_id, msg.stream) else {
            return true;
        };
        // A generation beyond the KID range, one already held, or one older than the newest
        // held is refused without an acknowledgment: a sender numbers its generations from one
        // rising counter and the relay keeps its order, so such a key could never be used
        // (and installing one again would reset its replay windows).
        let key = (msg.channel_id, from_id, msg.stream);
        let stale = self.openers.get(&key).is_some_and(|o| {
            o.holds(msg.generation) || o.generations().iter().any(|g| *g > msg.generation)
        });
        if msg.generation > confer_e2ee::frame::MAX_GENERATION || stale {
            return true;
        }
        let keep = self.cfg.keep_old_keys;
        let opener = self.openers.entry(key).or_insert_with(|| Opener::new(ctx));
        opener.add_generation(msg.generation, *msg.base_key.expose());
        // Bounded: the current generation and at most MAX_OLD_GENERATIONS replaced ones.
        let mut held = opener.generations();
        held.sort_unstable();
        let excess = held.len().saturating_sub(1 + MAX_OLD_GENERATIONS);
        let dropped: Vec<u64> = held[..excess].to_vec();
        for g in &dropped {
            opener.remove_generation(*g);
        }
        let older: Vec<u64> = held[excess..]
            .iter()
            .copied()
            .filter(|g| *g < msg.generation)
            .collect();
        self.expiries.retain(|(_, c, s, g)| {
            !(*c == msg.channel_id && *s == from_id && g.is_some_and(|g| dropped.contains(&g)))
        });
        for g in older {
            let e = (now + keep, msg.channel_id, from_id, Some(g));
            if !self
                .expiries
                .iter()
                .any(|x| (x.1, x.2, x.3) == (e.1, e.2, e.3))
            {
                self.expiries.push(e);
            }
        }
        self.stats.keys_received += 1;
        // At most one acknowledgment per sender, room, stream and epoch: a member that floods
        // me with keys cannot make me flood it back.
        let acked = self.acked.get(&key).is_some_and(|e| *e >= msg.epoch);
        if !acked {
            self.acked.insert(key, msg.epoch);
            self.send_ack(from_id, msg);
        }
        if superseded {
            self.expiries.push((
                now + keep,
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
        let Some(ek) = self.ek_of_id(&to_id) else {
            return;
        };
        let pt = SenderKeyAck {
            channel_id: msg.channel_id,
            epoch: msg.epoch,
            stream: msg.stream,
            generation: msg.generation,
        }
        .encode();
        self.send_pairwise(to_id, &ek, MsgType::SenderKeyAck, &pt, None);
    }

    fn ek_of_id(&self, id: &Id16) -> Option<[u8; 32]> {
        pid_of(id).and_then(|p| self.ek_of(&p))
    }

    fn on_roster(
        &mut self,
        from: ParticipantId,
        ch: String,
        enc: Bytes,
        sig: Bytes,
        del: Option<([u8; 32], [u8; 64])>,
        now: Instant,
    ) {
        let Some((m_pid, m_ik, _)) = self.mediator.clone() else {
            return;
        };
        // From the mediator, or from a co-mediator whose delegation comes with the roster
        // (verified under the mediator's key; the chain then checks the roster is signed by
        // that very key, listed with role 1).
        if from != m_pid {
            let Some((dik, dsig)) = del else {
                self.alarm(Alarm::RosterFromNonMediator, from.as_str().to_owned());
                return;
            };
            if !self.add_delegation(dik, dsig) {
                self.alarm(Alarm::DelegationInvalid, from.as_str().to_owned());
                return;
            }
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
        // A chain that a newer chain of its room replaced stays closed (§7.6).
        if self
            .rooms
            .values()
            .any(|r| r.retired.contains(&cid))
        {
            self.alarm(Alarm::ChainRevived, hex::encode(cid));
            return;
        }
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
        let fresh = !self.chains.contains_key(&cid);
        let mut chain = match self.chains.get(&cid) {
            Some(st) => st.chain.clone(),
            None => self.new_chain(&me.session, m_ik),
        };
        let (epoch, prev_hash) = (sr.roster.epoch, sr.roster.prev_hash);
        match chain.accept(sr) {
            Ok(Accepted::Advanced) => {
                if fresh && !self.adopt_chain(&server_channel, cid, epoch, prev_hash) {
                    self.alarm(Alarm::ChainUnlinked, hex::encode(cid));
                    return;
                }
                // Managers keep every roster of a chain, to hand newcomers the whole chain.
                let mut history = self
                    .chains
                    .get(&cid)
                    .map(|s| s.history.clone())
                    .unwrap_or_default();
                if self.is_manager()
                    && history.len() < MAX_CHAIN_HISTORY
                    && let Some(h) = chain.head()
                {
                    history.push(h.clone());
                }
                self.chains.insert(
                    cid,
                    ChainState {
                        chain,
                        server_channel,
                        advanced_at: now,
                        history,
                    },
                );
                self.adopt_placements(cid);
                self.after_roster(cid, now);
            }
            Ok(Accepted::Unchanged) => {}
            Err(e) => {
                let key = format!("{}:{e:?}", hex::encode(cid));
                self.alarm(Alarm::Roster(e), key);
            }
        }
    }

    // Managers: a roster another manager signed is a placement decision, taken as if I had
    // asked for it (so two managers never undo each other's moves).
    fn adopt_placements(&mut self, cid: Id16) {
        if !self.is_manager() {
            return;
        }
        let Some(s) = self.chains.get(&cid) else { return };
        let Some(head) = s.chain.head() else { return };
        let room = s.server_channel.clone();
        let present: Vec<ParticipantId> = head
            .roster
            .members
            .iter()
            .filter(|m| !m.is_away())
            .filter_map(|m| pid_of(&m.participant_id))
            .filter(|p| !self.removed.contains_key(p))
            .collect();
        for p in present {
            self.intents.insert(p.clone(), Intent::In(room.clone()));
            self.confirmed.insert(p, room.clone());
        }
    }

    // Managers: the roster entry (keys, role, side, name commitment) for a participant I may
    // sign: the mediator takes it from the verified announcement and the invite (or person)
    // that bound it; a co-mediator from the current JOINT roster, which the mediator signed.
    fn known_member(&self, p: &ParticipantId) -> Option<Member> {
        if let Some(peer) = self.peers.get(p)
            && (peer.consent_ok || Some(p) == self.me.as_ref().map(|m| &m.pid))
            && let Some(side) = peer.side
        {
            return Some(Member {
                participant_id: peer.ann.participant_id,
                ik_pub: peer.ann.ik_pub,
                ek_pub: peer.ann.ek_pub,
                role: role_code(peer.ann.role),
                side,
                flags: 0,
                name_commit: peer.name.unwrap_or([0; 32]),
            });
        }
        if self.is_mediator() {
            return None;
        }
        let id = id16(p)?;
        let (_, joint) = self.current_chain(&ChannelId::joint())?;
        let mut m = joint.chain.head()?.roster.member(&id)?.clone();
        m.flags = 0;
        Some(m)
    }

    // A new chain `cid` for a room: it becomes the room's current chain if it links to the
    // chain I hold for that room (its first roster's prev_hash is that chain's head hash), or
    // if I hold none, or if I am not in the head I hold (I left that chain and cannot know its
    // later rosters; the new chain must still be a successor: epoch 1, non-zero link). The
    // chain it replaces is closed for good (§7.6).
    fn adopt_chain(&mut self, room: &ChannelId, cid: Id16, epoch: u64, prev: [u8; 32]) -> bool {
        let current = self.rooms.get(room).and_then(|r| r.current);
        if let Some(cur) = current {
            let head = self.chains.get(&cur).and_then(|s| s.chain.head());
            let linked = head.is_some_and(|h| epoch == 1 && prev == h.hash);
            let outside = head.is_none_or(|h| self.my_entry(&h.roster).is_none())
                && epoch == 1
                && prev != [0; 32];
            if !linked && !outside {
                return false;
            }
        }
        let r = self.rooms.entry(room.clone()).or_default();
        if let Some(cur) = current {
            r.retired.insert(cur);
        }
        r.current = Some(cid);
        true
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
        // My id with keys that are not mine: that entry is someone else, and I am not in this
        // roster (no keys sent, "securing" stays on).
        let mine = self.my_entry(&head.roster).is_some_and(|m| !m.is_away());
        if !mine && head.roster.member(&my_id).is_some() && self.my_entry(&head.roster).is_none()
        {
            self.alarm(
                Alarm::WrongSelfKey,
                format!("{}:{}", hex::encode(cid), head.roster.epoch),
            );
        }
        if mine && present.contains(&my_id) {
            self.rekey(cid, &head.roster);
            self.send_name(&head.roster);
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
        self.check_names();
        self.update_secured();
    }

    // My display name, once, to each other present member of a roster I am present in.
    fn send_name(&mut self, roster: &Roster) {
        let Some(pt) = self.my_name.as_ref().map(|n| Zeroizing::new(n.encode())) else {
            return;
        };
        let my_id = self.me.as_ref().map(|m| m.id);
        let to: Vec<(Id16, [u8; 32])> = roster
            .members
            .iter()
            .filter(|m| !m.is_away() && Some(m.participant_id) != my_id)
            .filter(|m| !self.named.contains(&m.participant_id))
            .map(|m| (m.participant_id, m.ek_pub))
            .collect();
        for (id, ek) in to {
            self.send_pairwise(id, &ek, MsgType::Name, &pt, None);
            self.named.insert(id);
        }
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
        let pt = Zeroizing::new(msg.encode());
        let my_id = me.id;
        let recipients: Vec<(Id16, [u8; 32])> = roster
            .members
            .iter()
            .filter(|m| !m.is_away() && m.participant_id != my_id)
            .map(|m| (m.participant_id, m.ek_pub))
            .collect();
        for (id, ek) in recipients {
            self.send_pairwise(id, &ek, MsgType::SenderKey, &pt, None);
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
            self.failed(FailureReason::ChatHeader);
            return;
        };
        // Malformed or oversized frames fail at once; only a well-formed one may wait.
        let Ok(g) = confer_e2ee::frame::frame_generation(Codec::Data, &f.0) else {
            self.failed(FailureReason::ChatMalformed);
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
            (Some(Ok(_)), None) => self.failed(FailureReason::ChatNoRoom),
            (Some(Err(_)), _) => self.failed(FailureReason::ChatOpen),
            (None, _) if key_held => self.failed(FailureReason::ChatOpen),
            (None, _) => self.failed(FailureReason::ChatNoKey),
        }
    }

    // Mediators: `p` left, timed out or was kicked: out of every roster for good.
    fn remove(&mut self, p: ParticipantId, now: Instant, by_me: bool) {
        // Only someone this client knows of (bounded by MAX_PEERS): an id the server invents
        // was never signed and costs nothing to forget.
        if !self.peers.contains_key(&p) {
            return;
        }
        self.confirmed.remove(&p);
        self.intents.remove(&p);
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.consent_ok = false;
            peer.held = false;
        }
        let view = self.views;
        self.removed.entry(p).or_insert(Removal {
            at: now,
            by_me,
            view,
        });
    }

    // Mediators: a removed participant that a view received after the removal still lists is
    // an alarm (after my own kick, once the grace has passed: a view may have been in flight).
    fn check_relisted(&mut self, now: Instant) {
        let Some(v) = &self.last_session else { return };
        let listed: Vec<ParticipantId> = v
            .waiting
            .iter()
            .map(|w| &w.participant_id)
            .chain(
                v.channels
                    .iter()
                    .flat_map(|c| c.members.iter().map(|m| &m.participant_id)),
            )
            .filter(|p| {
                self.removed.get(*p).is_some_and(|r| {
                    self.views > r.view
                        && (!r.by_me
                            || now.saturating_duration_since(r.at) >= self.cfg.unsigned_grace)
                })
            })
            .cloned()
            .collect();
        for p in listed {
            let key = p.as_str().to_owned();
            self.alarm(Alarm::RemovedRelisted(p), key);
        }
    }

    // Mediators: a `create_breakout` is satisfied by exactly one breakout that did not exist
    // before it, the same for all its members and claimed by no other command; anything else
    // is refused with an alarm and its members stay where they were last agreed.
    fn resolve_breakouts(&mut self, session: &SessionView) {
        let mut room_of: BTreeMap<&ParticipantId, &ChannelId> = BTreeMap::new();
        for c in session
            .channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Breakout)
        {
            for m in &c.members {
                room_of.insert(&m.participant_id, &c.id);
            }
        }
        for idx in 0..self.breakouts.len() {
            let cmd = &self.breakouts[idx];
            if cmd.room.is_some() || cmd.failed {
                continue;
            }
            // Only new breakouts count: a member still in an old one is a move in flight.
            let rooms: BTreeSet<&ChannelId> = cmd
                .members
                .iter()
                .filter_map(|p| room_of.get(p).copied())
                .filter(|r| !cmd.known_before.contains(*r))
                .collect();
            let claimed = rooms.iter().any(|r| {
                self.breakouts
                    .iter()
                    .enumerate()
                    .any(|(j, b)| j != idx && b.room.as_ref() == Some(*r))
            });
            if rooms.len() > 1 || claimed {
                self.breakouts[idx].failed = true;
                self.alarm(Alarm::BreakoutMismatch, idx.to_string());
                continue;
            }
            let Some(room) = rooms.first().map(|r| (*r).clone()) else {
                continue;
            };
            if !cmd.members.iter().all(|p| room_of.get(p) == Some(&&room)) {
                continue;
            }
            for p in cmd.members.clone() {
                if self.intents.get(&p) == Some(&Intent::NewBreakout(idx)) {
                    self.intents.insert(p, Intent::In(room.clone()));
                }
            }
            self.breakouts[idx].room = Some(room);
        }
        self.seen_breakouts
            .extend(room_of.values().map(|c| (*c).clone()));
    }

    /// Managers: make the signed rosters match who is where, as far as the manager verified
    /// them.
    fn reconcile(&mut self, now: Instant) {
        if !self.is_manager() {
            return;
        }
        let Some(session) = self.last_session.clone() else {
            return;
        };
        let Some(me) = self.me.as_ref() else { return };
        let my_pid = me.pid.clone();
        self.check_relisted(now);
        self.resolve_breakouts(&session);
        // Where each admitted, verified participant is.
        // Only where the server's view agrees with what this client asked for; elsewhere the
        // last agreed place stands (a move in flight, or a server that lies).
        let mut location: BTreeMap<ParticipantId, (ChannelId, Role, u8)> = BTreeMap::new();
        for ch in &session.channels {
            for m in &ch.members {
                if self.removed.contains_key(&m.participant_id) {
                    continue;
                }
                // The role the server reports must be the one the participant announced, and
                // the side the one its invite (or a person) bound it to; otherwise the view is
                // not believed.
                let Some(known) = self.known_member(&m.participant_id) else {
                    continue;
                };
                let side = known.side;
                if known.role != role_code(m.role) || m.side.map_or(0, |s| s.number()) != side {
                    continue;
                }
                // A caucus holds only its own side (and the mediators).
                let fits = match ch.id.as_str().strip_prefix("caucus-") {
                    Some(x) => m.role.is_manager() || m.side.is_some_and(|s| s.to_string() == x),
                    None => true,
                };
                let agreed = fits
                    && matches!(self.intents.get(&m.participant_id), Some(Intent::In(c)) if *c == ch.id);
                if agreed {
                    self.confirmed
                        .insert(m.participant_id.clone(), ch.id.clone());
                }
                if let Some(c) = self.confirmed.get(&m.participant_id) {
                    location.insert(m.participant_id.clone(), (c.clone(), m.role, side));
                }
            }
        }
        // Whoever the server no longer lists is gone for good; someone sent back to the waiting
        // room is only unplaced.
        let in_rooms: BTreeSet<ParticipantId> = session
            .channels
            .iter()
            .flat_map(|c| c.members.iter().map(|m| m.participant_id.clone()))
            .collect();
        let waiting: BTreeSet<ParticipantId> = session
            .waiting
            .iter()
            .map(|w| w.participant_id.clone())
            .collect();
        let unplaced: Vec<ParticipantId> = self
            .confirmed
            .keys()
            .filter(|p| !in_rooms.contains(*p) && **p != my_pid)
            .cloned()
            .collect();
        for p in unplaced {
            if waiting.contains(&p) {
                self.confirmed.remove(&p);
            } else {
                self.remove(p, now, false);
            }
        }
        let mut channels: Vec<(ChannelId, ChannelKind)> = session
            .channels
            .iter()
            .map(|c| (c.id.clone(), c.kind))
            .collect();
        if !channels.iter().any(|(c, _)| c.as_str() == "joint") {
            channels.push((ChannelId::joint(), ChannelKind::Joint));
        }
        // A room that emptied is gone: if it fills again it gets a new chain and new keys
        // (its last roster is stale, and everyone deleted its keys when they left). The new
        // chain's first roster links to the old chain's last roster (§7.6).
        let live: BTreeSet<ChannelId> = channels.iter().map(|(c, _)| c.clone()).collect();
        let gone: Vec<(ChannelId, Id16)> = self
            .rooms
            .iter()
            .filter(|(c, _)| !live.contains(*c))
            .filter_map(|(c, r)| Some((c.clone(), r.current?)))
            .collect();
        for (room, cid) in gone {
            let last = self
                .chains
                .get(&cid)
                .and_then(|s| s.chain.head())
                .map(|h| h.hash);
            if let Some(r) = self.rooms.get_mut(&room) {
                r.current = None;
                r.retired.insert(cid);
                r.link = last;
            }
            if let Some(s) = self.chains.get_mut(&cid) {
                s.history.clear();
            }
            self.drop_sealers(cid);
        }
        for (ch, kind) in channels {
            let joint = kind == ChannelKind::Joint;
            // Managers sign rosters, so every manager is listed in every one: present where
            // it is, flagged away elsewhere (and then sent no keys there). Every manager
            // computes the same list, so they never undo each other.
            let mut members: Vec<Member> = location
                .iter()
                .filter(|(pid, (at, role, _))| {
                    joint || at == &ch || role.is_manager() || **pid == my_pid
                })
                .filter_map(|(pid, (at, _, _))| {
                    let mut m = self.known_member(pid)?;
                    m.flags = if at == &ch { 0 } else { FLAG_AWAY };
                    Some(m)
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
        let (Some(me), Some(identity)) = (self.me.as_ref(), self.identity.as_ref()) else {
            return;
        };
        let (my_id, m_ik, session) = (me.id, identity.ik_pub(), me.session.clone());
        let room = self.rooms.entry(ch.clone()).or_default();
        let (cid, genesis_link) = match room.current {
            Some(c) => (c, [0; 32]),
            None => {
                let mut c = [0u8; 16];
                self.rng.fill_bytes(&mut c);
                (c, room.link.unwrap_or([0; 32]))
            }
        };
        let head = self.chains.get(&cid).and_then(|s| s.chain.head()).cloned();
        if head.as_ref().is_some_and(|h| h.roster.members == members) {
            return;
        }
        let epoch = match &head {
            Some(h) => match h.roster.epoch.checked_add(1) {
                Some(e) => e,
                None => return,
            },
            None => 1,
        };
        let roster = Roster {
            session_id: session.clone(),
            channel_id: cid,
            kind: match kind {
                ChannelKind::Joint => Kind::Joint,
                ChannelKind::Caucus => Kind::Caucus,
                ChannelKind::Breakout => Kind::Breakout,
            },
            epoch,
            prev_hash: head.as_ref().map_or(genesis_link, |h| h.hash),
            members,
        };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let Ok(signed) = roster.sign(identity) else {
            return;
        };
        // Checked as every member will check it before anyone is sent it.
        let mediator_ik = self.mediator.as_ref().map_or(m_ik, |m| m.1);
        let mut chain = self
            .chains
            .get(&cid)
            .map(|s| s.chain.clone())
            .unwrap_or_else(|| self.new_chain(&session, mediator_ik));
        if chain.accept(signed.clone()) != Ok(Accepted::Advanced) {
            return;
        }
        let room = self.rooms.entry(ch.clone()).or_default();
        room.current = Some(cid);
        let state = self.chains.entry(cid).or_insert_with(|| ChainState {
            chain: chain.clone(),
            server_channel: ch.clone(),
            advanced_at: now,
            history: Vec::new(),
        });
        state.chain = chain;
        state.advanced_at = now;
        if state.history.len() < MAX_CHAIN_HISTORY {
            state.history.push(signed.clone());
        }
        // Every member gets the new roster; a newcomer to the chain gets the chain from its
        // genesis (so it can check the link to the room's previous chain, §7.6); a member it
        // removes gets the roster that removed it.
        let before: BTreeSet<Id16> = head
            .as_ref()
            .map(|h| h.roster.members.iter().map(|m| m.participant_id).collect())
            .unwrap_or_default();
        let after: BTreeSet<Id16> = signed
            .roster
            .members
            .iter()
            .map(|m| m.participant_id)
            .collect();
        let history = state.history.clone();
        // A co-mediator's rosters carry the mediator's delegation of its key.
        let del = self
            .my_delegation
            .filter(|_| !self.is_mediator())
            .map(|d| (Bytes(m_ik.to_vec()), Bytes(d.to_vec())));
        let env = |s: &SignedRoster| Envelope::Roster {
            ch: ch.as_str().to_owned(),
            enc: Bytes(s.encoded.clone()),
            sig: Bytes(s.signature.to_vec()),
            dik: del.as_ref().map(|d| d.0.clone()),
            dsig: del.as_ref().map(|d| d.1.clone()),
        };
        for r in before.union(&after).filter(|r| **r != my_id) {
            let Some(to) = pid_of(r) else { continue };
            let send: &[SignedRoster] = if before.contains(r) {
                std::slice::from_ref(&signed)
            } else {
                &history
            };
            for s in send {
                self.relay(RelayTarget::Participant(to.clone()), &env(s));
            }
        }
        self.after_roster(cid, now);
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
        if self.is_mediator() {
            self.check_relisted(now);
        }
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
        self.invites.clear();
        self.name_claims.clear();
        self.my_name = None;
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
