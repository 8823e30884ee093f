//! The client's sans-IO core: signalling messages in, signalling messages and events out,
//! confer/1 in between. The caller owns the socket, the clock and the RNG: nothing under
//! `core/` touches tokio, a socket, `Instant::now` or the OS RNG (`tests/sans_io.rs` checks).
//!
//! One concern per file, each the twin of a file of the TypeScript core (`web-client/src/core`):
//! - `mod.rs`: the `Core` state, its public surface, dispatch of server messages, the end;
//! - [`admission`]: arrivals, announcements, consent, bound invites, delegation;
//! - [`chains`]: roster chains per room, acceptance, successor links, what rosters mean for me;
//! - [`manager`]: what the mediator and co-mediators sign: placements, removals, breakouts;
//! - [`keys`]: pairwise messages, sender keys in and out, bounded key state, the ratchet;
//! - [`chat`], [`media`], [`names`]: what travels under the room keys, and display names;
//! - [`alarms`], [`timers`]: what a person must be shown, and the checks that wait.
//!
//! ```
//! use std::time::Instant;
//! use confer_client::{Core, CoreConfig, agreement_hash, os_rng};
//! use confer_proto::ClientMessage;
//! let mut core = Core::new(os_rng(), CoreConfig::new(agreement_hash("the agreement")));
//! let hello = core.hello("token");
//! assert!(matches!(hello, ClientMessage::Hello { .. }));
//! core.tick(Instant::now());
//! assert!(core.poll_event().is_none());
//! ```

mod admission;
mod alarms;
mod chains;
mod chat;
mod docs;
mod keys;
mod manager;
mod media;
mod names;
mod timers;

use admission::{IssuedInvite, Peer};
pub use alarms::Alarm;
use docs::HeldDoc;
pub use docs::{DocInfo, MAX_DOCS, SealedDoc, ShareRefused};
use keys::KeyState;
use manager::{Intent, ManagerState};

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

use confer_e2ee::codes::{
    AlarmCode, FailureReason, KEYFRAME_REQUEST_EVERY, MAX_ALARMS, MAX_CHAIN_HISTORY,
    MAX_EARLY_CHATS, MAX_HELD_CHAT_BYTES, MAX_HELD_KEYS, MAX_OLD_GENERATIONS,
};
pub use confer_e2ee::codes::{
    HOLD_FOR_KEY, KEEP_OLD_KEYS, MAX_PEERS, RATCHET_EVERY, STALE_KEY_AFTER, UNSIGNED_GRACE,
};
pub use confer_e2ee::messages::{ATTEST_NO_RECORDING, ATTEST_NOBODY_ELSE};

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
    /// A document whose key arrived (or that I shared): fetch its chunks and open it with
    /// `open_document`.
    Document(DocInfo),
    /// Mediators: a participant acknowledged one version of a document (its SHA-256), signed
    /// with its identity key.
    DocumentAcknowledged {
        /// Who.
        participant_id: ParticipantId,
        /// The version's SHA-256.
        sha256: [u8; 32],
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

/// A co-mediator's identity key and the mediator's delegation of it.
type Delegation = ([u8; 32], [u8; 64]);

/// A room's chains, as this client knows them: the current one and those it replaced.
#[derive(Default)]
struct RoomChains {
    current: Option<Id16>,
    retired: BTreeSet<Id16>,
    /// Mediators: the last hash of the room's previous chain, for the next chain's genesis.
    link: Option<[u8; 32]>,
    /// Managers: the room's rosters, every chain in order (the newest `MAX_CHAIN_HISTORY`),
    /// each with the delegation it was sent with: a newcomer to a chain is sent all of them,
    /// so it can follow the room's links from whatever chain it holds (§7.6).
    lineage: Vec<(SignedRoster, Option<Delegation>)>,
}

struct Me {
    pid: ParticipantId,
    id: Id16,
    role: Role,
    session: Vec<u8>,
}

struct ChainState {
    chain: Chain,
    server_channel: ChannelId,
    advanced_at: Instant,
    /// Hashes of every roster of this chain I accepted or signed (at most
    /// `MAX_CHAIN_HISTORY`): a manager resending them to a newcomer is no rollback.
    seen: BTreeSet<[u8; 32]>,
}

/// The confer/1 client state machine.
pub struct Core<R: CryptoRng> {
    rng: R,
    cfg: CoreConfig,
    identity: Option<Identity>,
    me: Option<Me>,
    mediator: Option<(ParticipantId, [u8; 32], [u8; 32])>,
    consent_sent: bool,
    // Everyone.
    my_channel: Option<ChannelView>,
    /// My first welcome placed me in a room: I resumed after losing my keys (§15.12), and wait
    /// for the mediator to let my new keys in.
    rejoined: bool,
    /// Rooms whose rosters have listed me with my own keys.
    listed_rooms: BTreeSet<ChannelId>,
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
    pending: VecDeque<(ParticipantId, Envelope)>,
    /// Chat frames that came before the key they name (its sender saw a roster before I did):
    /// (since, from, cid, frame), opened once the key is installed.
    early_chats: Vec<(Instant, ParticipantId, Bytes, Bytes)>,
    /// Documents whose key I hold, by id (at most `MAX_DOCS`).
    docs: BTreeMap<Id16, HeldDoc>,
    /// Documents I sealed whose key I have not sent yet (their chunks are being uploaded).
    docs_sealed: BTreeMap<Id16, HeldDoc>,
    /// Mediators: verified acknowledgments of a version, (who, its SHA-256).
    doc_acks: BTreeSet<(ParticipantId, [u8; 32])>,
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
    /// Managers (mediator, delegated co-mediators): what they place and sign.
    manager: ManagerState,
    /// Sender keys, mine and others', and their timers.
    keys: KeyState,
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
            my_channel: None,
            rejoined: false,
            listed_rooms: BTreeSet::new(),
            chains: BTreeMap::new(),
            rooms: BTreeMap::new(),
            name_claims: BTreeMap::new(),
            names_shown: BTreeMap::new(),
            my_name,
            named: BTreeSet::new(),
            delegations: Vec::new(),
            my_delegation: None,
            pending: VecDeque::new(),
            early_chats: Vec::new(),
            docs: BTreeMap::new(),
            docs_sealed: BTreeMap::new(),
            doc_acks: BTreeSet::new(),
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
            manager: ManagerState::default(),
            keys: KeyState::default(),
        }
    }

    /// The `hello` to send first.
    pub fn hello(&self, token: &str) -> ClientMessage {
        ClientMessage::Hello {
            version: confer_proto::PROTOCOL_VERSION,
            token: token.to_owned(),
        }
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

    fn relay(&mut self, to: RelayTarget, env: &Envelope) {
        self.out.push_back(ClientMessage::Relay {
            to,
            data: env.to_data(),
        });
    }

    // A message or frame that did not open, counted by why (for diagnostics; no content).
    fn failed(&mut self, why: FailureReason) {
        self.stats.decrypt_failures += 1;
        *self.stats.failure_reasons.entry(why.code()).or_default() += 1;
    }

    /// Feeds one server message.
    pub fn handle(&mut self, msg: ServerMessage, now: Instant) {
        self.handle_message(msg, now);
        self.retry_early_chats(now);
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
                resumed,
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
                    // After my own resume the mediator signs every room anew once everyone is
                    // back (§15.13).
                    if resumed && role == Role::Mediator {
                        self.manager.resign_after_resume = true;
                    }
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
                    self.manager
                        .intents
                        .insert(participant_id.clone(), Intent::In(ChannelId::joint()));
                    let (ik, ek) = self.my_keys();
                    self.mediator = Some((participant_id, ik, ek));
                    let ann = self.announcement();
                    self.manager.peers.insert(
                        self.me_pid(),
                        Peer {
                            ann,
                            consent_ok: true,
                            held: false,
                            side: Some(0),
                            name: self.my_name.as_ref().map(NameMsg::commit),
                            rekey: None,
                        },
                    );
                    if let Some(n) = self.my_name.clone() {
                        self.name_claims.insert(id, n);
                    }
                }
                self.rejoined = channel.is_some() && !role.is_manager();
                self.my_channel = channel;
                self.reconcile(now);
            }
            ServerMessage::Session { session } => {
                self.manager.last_session = Some(session);
                self.manager.views += 1;
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

    fn my_keys(&self) -> ([u8; 32], [u8; 32]) {
        self.identity
            .as_ref()
            .map(|i| (i.ik_pub(), i.ek_pub()))
            .unwrap_or(([0; 32], [0; 32]))
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
                let del = dik
                    .and_then(|i| i.array::<32>())
                    .zip(dsig.and_then(|s| s.array::<64>()));
                self.on_roster(from, ch, enc, sig, del, now)
            }
            Envelope::Delegate { ik, sig } => self.on_delegate(&from, ik, sig, now),
            Envelope::Chat { cid, f } => self.on_chat(from, cid, f, now),
        }
    }

    /// Leaves: deletes every key and returns the `leave` to send.
    pub fn leave(&mut self) -> ClientMessage {
        self.end();
        ClientMessage::Leave
    }

    fn end(&mut self) {
        // Drop every key: senders, receivers, chains, and the identity itself (all zeroize).
        self.keys.sealers.clear();
        self.keys.openers.clear();
        self.chains.clear();
        self.pending.clear();
        self.keys.early_keys.clear();
        self.early_chats.clear();
        self.docs.clear();
        self.docs_sealed.clear();
        self.identity = None;
        self.secured = None;
        self.manager.invites.clear();
        self.name_claims.clear();
        self.my_name = None;
        if let Some(i) = self.cfg.invite.as_mut() {
            i.psk = None;
        }
        self.stats.keys_deleted = true;
        self.events.push_back(Event::Ended);
    }
}
