// Twin of crates/proto/src/error.rs (`ErrorCode`): the signalling server's stable error codes.
// Clients switch on the code; tests/vectors/v1/constants.json carries the list
// (`error_codes`) and test/vectors.test.ts asserts this one against it.

/** A stable, machine-readable error code of the signalling protocol. */
export const ErrorCode = {
  BadJson: "bad_json",
  UnknownType: "unknown_type",
  InvalidMessage: "invalid_message",
  FrameTooLarge: "frame_too_large",
  BinaryNotSupported: "binary_not_supported",
  UnsupportedVersion: "unsupported_version",
  HelloRequired: "hello_required",
  DuplicateHello: "duplicate_hello",
  Unauthorized: "unauthorized",
  Forbidden: "forbidden",
  NotFound: "not_found",
  ConsentRequired: "consent_required",
  InvalidConsent: "invalid_consent",
  AlreadyAdmitted: "already_admitted",
  NotAdmitted: "not_admitted",
  InvalidMove: "invalid_move",
  RelayNotAllowed: "relay_not_allowed",
  SessionLocked: "session_locked",
  SessionNotFound: "session_not_found",
  SessionEnded: "session_ended",
  RateLimited: "rate_limited",
  ServerDraining: "server_draining",
  MediaUnavailable: "media_unavailable",
  BadSdp: "bad_sdp",
  DocTooLarge: "doc_too_large",
  DocQuota: "doc_quota",
  Internal: "internal",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Every code, in documentation order (Rust: `ErrorCode::ALL`). */
export const ERROR_CODES: readonly ErrorCode[] = Object.values(ErrorCode);

/**
 * Why a frame could not be decoded, with the stable code it maps to. `detail` names the
 * message type and field from static text only: it never echoes the frame (which may hold a
 * token).
 */
export class DecodeError extends Error {
  constructor(
    /** The stable code. */
    readonly code: ErrorCode,
    /** Which message type or field, from static text only. */
    readonly detail: string,
  ) {
    super(`${code}: ${detail}`);
    this.name = "DecodeError";
  }
}
