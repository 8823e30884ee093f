//! Confer's Rust client: the signalling protocol and confer/1 end to end.
//!
//! [`core::Core`] is sans-IO (feed it server messages and `now`, drain what to send and what
//! happened); [`driver`] runs it over a real WebSocket; `confer-bot` drives that from a shell.

pub mod core;
pub mod driver;
pub mod envelope;
pub mod frames;
pub mod link;
pub mod media;

pub use crate::core::{
    Alarm, ChatRefused, Core, CoreConfig, DocInfo, Event, MAX_DOCS, MediaRejected, NotSecured,
    SealedDoc, ShareRefused, Stats, agreement_hash, media_codec,
};

/// The operating system's RNG in the form confer-e2ee takes.
pub type OsRng = rand_core::UnwrapErr<getrandom::SysRng>;

/// A fresh OS RNG.
pub fn os_rng() -> OsRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}
