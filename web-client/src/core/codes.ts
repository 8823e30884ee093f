// Twin of crates/e2ee/src/codes.rs: the client rules' constants, alarm codes and
// decrypt-failure reasons (confer/1 §7.4, §9, §10, §15, §18). One list for every
// implementation: the Rust vector generator writes them to tests/vectors/v1/constants.json,
// and test/vectors.test.ts asserts these against it. Rust's `Duration`s are milliseconds here,
// named with `_MS`.

/**
 * How long a member of my channel may go without a roster signature before it is an alarm;
 * also how long a departure may go without a new roster, and a kicked participant may stay
 * listed by the server.
 */
export const UNSIGNED_GRACE_MS = 5_000;
/** How long after a roster change a member may take to send its new sender key. */
export const STALE_KEY_AFTER_MS = 10_000;
/** How long replaced generations are kept for frames in flight. */
export const KEEP_OLD_KEYS_MS = 10_000;
/** A sender moves its keys one ratchet step this often (§10). */
export const RATCHET_EVERY_MS = 60_000;
/** How long a frame waits for the key it names before it counts as a failure. */
export const HOLD_FOR_KEY_MS = 2_000;
/** At most one keyframe request per publisher this often. */
export const KEYFRAME_REQUEST_EVERY_MS = 1_000;
/** Mediators: at most this many announced participants are remembered. */
export const MAX_PEERS = 512;
/** Frames (chat) waiting for their key, at most; more fail at once. */
export const MAX_EARLY_CHATS = 256;
/** The largest chat frame held for its key: a padded 64 KiB message plus header and tag. */
export const MAX_HELD_CHAT_BYTES = 66 * 1024;
/** Sender keys (and other pairwise messages) held for a roster that has not arrived, at most. */
export const MAX_HELD_KEYS = 256;
/** Per (room, sender, stream): replaced generations kept besides the current one (§6.4). */
export const MAX_OLD_GENERATIONS = 2;
/**
 * Rosters a manager keeps per room (every chain, newest kept) to hand a newcomer the room's
 * history; also the hashes a client remembers per chain (§7.5, §7.6).
 */
export const MAX_CHAIN_HISTORY = 1024;
/** Distinct alarms remembered (each is raised once); more are counted, not stored. */
export const MAX_ALARMS = 1024;

/** What an alarm is about: the protocol caught misbehaviour a person must see (§18). */
export const AlarmCode = {
  /** A roster whose epoch is older than the head. */
  RosterRollback: "roster_rollback",
  /** Two rosters for one epoch, or a next epoch that does not link to the head. */
  RosterFork: "roster_fork",
  /** A roster beyond the next epoch: rosters were withheld. */
  RosterGap: "roster_gap",
  /** A roster whose signature does not verify under the mediator's or a delegate's key. */
  RosterBadSignature: "roster_bad_signature",
  /** A roster whose signed kind does not fit its room, or for a chain bound elsewhere. */
  RosterWrongChannel: "roster_wrong_channel",
  /** A malformed roster, or one whose signer is not a member. */
  RosterInvalid: "roster_invalid",
  /** A roster relayed by someone who may not sign rosters. */
  RosterFromNonMediator: "roster_from_non_mediator",
  /** A roster of a chain that a newer chain of the same room replaced. */
  RosterChainRevived: "roster_chain_revived",
  /** A new chain for a room that does not link to the chain the client holds for it. */
  RosterChainUnlinked: "roster_chain_unlinked",
  /** A roster lists my participant id with keys that are not mine. */
  RosterWrongSelfKey: "roster_wrong_self_key",
  /** The server routes my room to someone no roster lists. */
  UnsignedMember: "unsigned_member",
  /** Someone left my room (per the server) and no new roster followed. */
  RosterWithheld: "roster_withheld",
  /** A roster changed but a member sent no new key in time. */
  StaleKey: "stale_key",
  /** The mediator's key differs from the one the invite link pinned. */
  MediatorKeyMismatch: "mediator_key_mismatch",
  /** The server said I am someone else than I joined as. */
  IdentityMismatch: "identity_mismatch",
  /** Mediators: a participant that left or was removed is listed by the server again. */
  RemovedRelisted: "removed_relisted",
  /** Mediators: a second, different announcement for a participant id already held. */
  AnnouncementChanged: "announcement_changed",
  /** Mediators: an arrival announced another role than its invite was made for. */
  InviteRoleMismatch: "invite_role_mismatch",
  /** Mediators: a second arrival under an invite secret that already admitted someone. */
  InviteReused: "invite_reused",
  /** Mediators: the server's breakouts do not match the breakout commands sent. */
  BreakoutMismatch: "breakout_mismatch",
  /** A delegation that does not verify under the mediator's key. */
  DelegationInvalid: "delegation_invalid",
} as const;
export type AlarmCode = (typeof AlarmCode)[keyof typeof AlarmCode];

/** Every alarm code, in documentation order (Rust: `AlarmCode::ALL`). */
export const ALARM_CODES: readonly AlarmCode[] = Object.values(AlarmCode);

/** Why something received did not open (counted, never shown as content). */
export const FailureReason = {
  /** A relay payload that is not a valid envelope. */
  Envelope: "envelope",
  /** An announcement that does not verify, or is not the sender's own. */
  Announcement: "announcement",
  /** A pairwise envelope with an unknown type or a malformed `enc`. */
  PairwiseHeader: "pairwise_header",
  /** A pairwise `seq` not above the last accepted one. */
  PairwiseReplay: "pairwise_replay",
  /** A pairwise hint naming no invite secret this client issued. */
  PairwiseUnknownPsk: "pairwise_unknown_psk",
  /** A pairwise message that does not open. */
  PairwiseOpen: "pairwise_open",
  /** A pairwise plaintext that does not decode for its type. */
  PairwiseDecode: "pairwise_decode",
  /** A chat envelope with a malformed channel or sender id. */
  ChatHeader: "chat_header",
  /** A chat frame whose trailer or header does not parse. */
  ChatMalformed: "chat_malformed",
  /** A chat frame for a room with no chain. */
  ChatNoRoom: "chat_no_room",
  /** A chat frame that does not open under the key its KID names. */
  ChatOpen: "chat_open",
  /** A chat frame whose key never arrived. */
  ChatNoKey: "chat_no_key",
  /** A media frame that did not open. */
  Media: "media",
} as const;
export type FailureReason = (typeof FailureReason)[keyof typeof FailureReason];

/** Every failure reason, in documentation order (Rust: `FailureReason::ALL`). */
export const FAILURE_REASONS: readonly FailureReason[] = Object.values(FailureReason);
