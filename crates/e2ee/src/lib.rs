//! confer/1: Confer's end-to-end encryption, the reference implementation.
//!
//! Sans-IO: no sockets, no clock, no global RNG. Every function that needs randomness takes
//! `&mut impl CryptoRng`. Secrets are zeroized on drop and print as `[redacted]`. Every failed
//! open returns the one opaque [`OpenError`]. The normative spec is `docs/protocol/e2ee.md`.
//!
//! The pieces:
//! - [`identity`]: identity (Ed25519) and session (X25519) keys, signed announcements,
//!   co-mediator delegation, name commitments;
//! - [`pairwise`]: HPKE (auth / auth_psk) messages between two participants, with sequence numbers;
//! - [`roster`]: signed channel rosters and their hash chains (fork, rollback, bad signature);
//! - [`frame`]: sender keys, the ratchet, SFrame-style frames, the replay window, padding;
//! - [`code`]: the session security code;
//! - [`codes`]: the client rules' constants, alarm codes and failure reasons;
//! - [`doc`]: documents shared into a room, in chunks under a per-file key;
//! - [`messages`]: consent, sender-key acknowledgment and display-name plaintexts, the psk hint.
//!
//! ```
//! use confer_e2ee::frame::{Codec, FrameCtx, Sealer, Opener};
//! let ctx = FrameCtx::new(b"session-1", [1; 16], [2; 16], 3).unwrap();
//! let mut sealer = Sealer::new(ctx.clone(), [7; 32], 0);
//! let frame = sealer.seal(Codec::Data, b"hello").unwrap();
//! let mut opener = Opener::new(ctx);
//! opener.add_generation(0, [7; 32]);
//! assert_eq!(opener.open(Codec::Data, &frame).unwrap(), b"hello");
//! ```

pub mod code;
pub mod codes;
pub mod doc;
pub mod enc;
pub mod frame;
pub mod identity;
pub mod messages;
pub mod pairwise;
pub mod roster;
pub mod secret;

pub use rand_core::CryptoRng;

/// The one error every failed decryption or verification of received data returns: it says
/// nothing about why (no oracle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("could not open")
    }
}

impl std::error::Error for OpenError {}

/// A participant id or channel id: exactly 16 bytes.
pub type Id16 = [u8; 16];
