// Twin of crates/e2ee/src/lib.rs: the shared error, id and randomness types.
//
// confer/1, the TypeScript twin of the reference implementation `crates/e2ee`. Sans-IO: no
// sockets, no clock, no global RNG. Every function that needs randomness takes an `Rng`.
// Every failed open throws the one opaque `OpenError`. The normative spec is
// docs/protocol/e2ee.md.
//
// The pieces, file for file with the Rust crate:
// - identity.ts: identity (Ed25519) and session (X25519) keys, signed announcements,
//   co-mediator delegation, name commitments;
// - pairwise.ts: HPKE (auth / auth_psk) messages between two participants, with sequences;
// - roster.ts: signed channel rosters and their hash chains (fork, rollback, bad signature);
// - frame.ts: sender keys, the ratchet, SFrame-style frames, the replay window, padding;
// - code.ts: the session security code;
// - codes.ts: the client rules' constants, alarm codes and failure reasons;
// - messages.ts: consent, sender-key acknowledgment and display-name plaintexts, the psk hint;
// - enc.ts: the byte encoding everything above is built from;
// - secret.ts: secret bytes that can be wiped and never print.

/**
 * The one error every failed decryption or verification of received data throws: it says
 * nothing about why (no oracle).
 */
export class OpenError extends Error {
  constructor() {
    super("could not open");
    this.name = "OpenError";
  }
}

/** A participant id or channel id: exactly 16 bytes (checked where bytes are decoded). */
export type Id16 = Uint8Array;

/**
 * Randomness is an input of the core (Rust: `&mut impl CryptoRng`). The browser shell passes
 * one backed by `crypto.getRandomValues`; tests pass a deterministic one.
 */
export interface Rng {
  /** Fills `bytes` with random bytes. */
  fill(bytes: Uint8Array): void;
}
