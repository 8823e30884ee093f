//! What the tasks of the server say to each other: requests to a session task and to the
//! media thread, their refusals, and the handles that carry them. A leaf: the tasks depend on it,
//! it depends on no task.

use confer_proto::{DocId, ErrorCode, ParticipantId, Role, ServerMessage, Side};
use confer_room::{Command, RoutingTable};
use tokio::sync::{mpsc, oneshot};

use crate::conn::Conn;

/// Requests to a session task.
#[derive(Debug)]
pub(crate) enum SessionCmd {
    Join {
        pid: ParticipantId,
        role: Role,
        side: Option<Side>,
        resume_jti: String,
        /// The expiry of the resume token minted with this join (its mint order).
        resume_exp: u64,
        resume_token: String,
        conn: Conn,
        reply: oneshot::Sender<Result<(), ErrorCode>>,
    },
    Resume {
        pid: ParticipantId,
        presented_jti: String,
        /// The presented token's expiry: later tokens expire later.
        presented_exp: u64,
        resume_jti: String,
        resume_exp: u64,
        resume_token: String,
        conn: Conn,
        reply: oneshot::Sender<Result<(), ErrorCode>>,
    },
    Command {
        pid: ParticipantId,
        conn_id: u64,
        command: Command,
        in_reply_to: &'static str,
        relay_bytes: usize,
    },
    Disconnected {
        pid: ParticipantId,
        conn_id: u64,
    },
    Drain,
    /// Cluster mode, draining: move the session to another node (everyone resumes there).
    Handover,
    /// End the session from outside it (the console's purge), as a manager's `end` does;
    /// `reply` is dropped once the session has left the registry and its documents are gone.
    End {
        reply: oneshot::Sender<()>,
    },
    /// A manager's `create_invite`: answered only for the participant's current connection
    /// while it is in the session (a kicked or replaced connection cannot mint).
    CreateInvite {
        pid: ParticipantId,
        conn_id: u64,
        role: Role,
        side: Option<Side>,
        ttl_secs: Option<u64>,
        reply: oneshot::Sender<Result<ServerMessage, InviteRefused>>,
    },
    /// A media command from a connection: passed on only if that connection is still the
    /// participant's current one (a late offer from a replaced tab must not win).
    Media {
        pid: ParticipantId,
        conn_id: u64,
        cmd: MediaCmd,
    },
    /// `doc_upload` or `doc_download`: answered with a `doc_ticket`, or a refusal's code, only
    /// for an admitted participant's current connection.
    Doc {
        pid: ParticipantId,
        conn_id: u64,
        request: DocRequest,
        reply: oneshot::Sender<Result<ServerMessage, ErrorCode>>,
    },
}

/// A participant's request about a document (`chunks` already checked against `size`).
#[derive(Debug)]
pub(crate) enum DocRequest {
    Upload {
        doc_id: DocId,
        size: u64,
        chunks: u32,
    },
    Download {
        doc_id: DocId,
    },
}

/// Why a `create_invite` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InviteRefused {
    /// Not a manager (any more), not the current connection, or asking for a mediator.
    Forbidden,
    /// Party and counsel need a side; others have none.
    SideRule,
}

/// A handle to a running session task.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub(crate) tx: mpsc::Sender<SessionCmd>,
    pub(crate) generation: u64,
    /// Random per session creation (unlike `generation`, which restarts with the process):
    /// invites minted in this session carry it and open no other instance of the same id.
    pub(crate) instance: String,
}

/// Requests to the media thread.
#[derive(Debug)]
pub(crate) enum MediaCmd {
    Offer {
        pid: ParticipantId,
        sdp: String,
        conn: Conn,
        reply: oneshot::Sender<Result<String, OfferRefused>>,
    },
    /// A session's routing table changed (an empty table: the session ended).
    Routing { session: u64, table: RoutingTable },
    Keyframe {
        subscriber: ParticipantId,
        publisher: ParticipantId,
    },
    /// The participant resumed on a new connection: slot announcements go there now.
    Reconnected { pid: ParticipantId, conn: Conn },
    /// The participant is no longer in its session (even if it never left the waiting room).
    Gone { pid: ParticipantId },
}

/// Why a `media_offer` got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OfferRefused {
    /// Sooner than `media_offer_interval_ms` after the participant's previous offer.
    TooSoon,
    /// The SFU refused the SDP (why, for the `bad_sdp` detail).
    Sdp(String),
}

/// A handle to the media threads (one per shard; a session's media lives on one).
#[derive(Debug, Clone)]
pub(crate) struct MediaHandle {
    pub(crate) shards: std::sync::Arc<[MediaShard]>,
}

/// One media thread's inbox.
#[derive(Debug)]
pub(crate) struct MediaShard {
    // Unbounded: a routing change must never be dropped (it would leave media flowing to
    // someone just moved out of a room); offers are bounded per participant by the session
    // task (admitted participants only, one per `media_offer_interval_ms`).
    pub(crate) tx: mpsc::UnboundedSender<MediaCmd>,
    /// Wakes the thread from its wait (`None` in tests that read `tx` themselves). When the
    /// last handle is dropped, the thread sees its end of the pair close and stops.
    pub(crate) wake: Option<std::os::unix::net::UnixStream>,
}

impl MediaHandle {
    /// One shard whose inbox a test reads itself.
    #[cfg(test)]
    pub(crate) fn detached(tx: mpsc::UnboundedSender<MediaCmd>) -> Self {
        Self {
            shards: vec![MediaShard { tx, wake: None }].into(),
        }
    }

    /// Queues a command for the shard of this session (by its generation) and wakes that
    /// thread; an error if the thread is gone.
    pub(crate) fn send(
        &self,
        session: u64,
        cmd: MediaCmd,
    ) -> Result<(), mpsc::error::SendError<MediaCmd>> {
        let n = self.shards.len().max(1) as u64;
        let Some(shard) = self.shards.get((session % n) as usize) else {
            return Err(mpsc::error::SendError(cmd));
        };
        shard.tx.send(cmd)?;
        if let Some(w) = &shard.wake {
            // Non-blocking: a full pipe already holds a wake-up the thread has not read.
            let _ = std::io::Write::write(&mut &*w, &[1]);
        }
        Ok(())
    }
}
