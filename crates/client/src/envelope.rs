//! The relay envelope (confer/1 §13) lives in `confer-proto`, beside the other wire types;
//! re-exported here for the client's users.

pub use confer_proto::envelope::{Bytes, Envelope};
