//! A connection as the session tasks and the media thread see it: where to send its frames,
//! and how to end it. A leaf: it knows no task.

use axum::extract::ws::Utf8Bytes;
use confer_proto::{ServerMessage, encode_server};
use tokio::sync::mpsc;

/// What a connection's writer sends on the socket.
#[derive(Debug)]
pub(crate) enum Outbound {
    Text(Utf8Bytes),
    Close(u16, &'static str),
}

/// A connection as the session task sees it.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<Outbound>,
    /// Ends the connection even when its queue is full.
    pub(crate) shutdown: std::sync::Arc<tokio::sync::Notify>,
}

impl Conn {
    /// Sends without waiting; a connection whose queue is full is too slow and is dropped.
    pub(crate) fn send(&self, o: Outbound) -> bool {
        self.tx.try_send(o).is_ok()
    }

    pub(crate) fn send_msg(&self, msg: &ServerMessage) -> bool {
        self.send(Outbound::Text(encode_server(msg).into()))
    }
}
