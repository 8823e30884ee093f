//! Confer's media core: a selective forwarding unit on str0m, sans-IO.
//!
//! One UDP port serves every peer: ICE-lite, DTLS-SRTP, RTP mode (packets are forwarded as
//! they are, never depacketized: the media is end-to-end encrypted and the SFU could not read
//! it anyway). Each publisher's packets go only to the current members of its channel, per the
//! room's routing table ([`forward`] decides, [`Sfu`] applies). Subscribers receive through a
//! fixed number of receive slots negotiated once; the SFU maps publishers onto slots and
//! tells each subscriber who is in which slot, so membership changes need no renegotiation.
//!
//! The shell feeds [`Sfu::handle_datagram`] and [`Sfu::handle_timeout`] with `now`, and drains
//! [`Sfu::poll_output`] until [`Output::Timeout`].

pub mod forward;
mod sfu;

pub use sfu::{Output, SLOT_REUSE_AFTER, Sfu, SfuConfig, SfuError, SfuStats, SlotView};
