//! Confer's media core (work in progress): the pure forwarding decision in [`forward`].
//!
//! The SFU forwards end-to-end encrypted media it cannot decrypt: each publisher's packets go
//! only to the current members of the publisher's channel, taken from the room's routing table.

pub mod forward;
