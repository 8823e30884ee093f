//! The registry of live sessions: session id to the handle of its session task. Connections
//! look sessions up here; a mediator's `hello` starts one; a session task removes its own entry
//! when it ends (and only its own: the id may be live again under a newer task).

use confer_proto::SessionId;
use dashmap::DashMap;

use crate::messages::SessionHandle;

/// Live sessions by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions(DashMap<SessionId, SessionHandle>);

impl Sessions {
    /// The live session of this id.
    pub(crate) fn get(&self, id: &SessionId) -> Option<SessionHandle> {
        self.0.get(id).map(|h| h.clone())
    }

    /// The live session of this id, or a new one started by `start` (at most one wins a race).
    pub(crate) fn get_or_start(
        &self,
        id: &SessionId,
        start: impl FnOnce() -> SessionHandle,
    ) -> SessionHandle {
        self.0.entry(id.clone()).or_insert_with(start).clone()
    }

    /// Registers a session (tests start tasks directly).
    #[cfg(test)]
    pub(crate) fn insert(&self, id: SessionId, handle: SessionHandle) {
        self.0.insert(id, handle);
    }

    /// Forgets `id` if its entry is still the session task of this generation.
    pub(crate) fn remove(&self, id: &SessionId, generation: u64) {
        self.0.remove_if(id, |_, h| h.generation == generation);
    }

    /// How many sessions are live.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every live session's handle (a snapshot).
    pub(crate) fn handles(&self) -> Vec<SessionHandle> {
        self.0.iter().map(|h| h.clone()).collect()
    }
}
