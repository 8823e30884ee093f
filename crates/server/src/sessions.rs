//! The registry of live sessions: session id to the handle of its session task. Connections
//! look sessions up here; a mediator's `hello` starts one; a session task removes its own entry
//! when it ends (and only its own: the id may be live again under a newer task).
//!
//! It also holds the settings of sessions started in the console and not opened yet
//! ([`SessionPlan`]): the session task takes its plan when the mediator's `hello` starts it.

use confer_proto::SessionId;
use dashmap::DashMap;

use crate::docs::DocRetention;
use crate::messages::SessionHandle;

/// Live sessions by id, and the plans of sessions the console started.
#[derive(Debug, Default)]
pub(crate) struct Sessions(
    DashMap<SessionId, SessionHandle>,
    DashMap<SessionId, SessionPlan>,
);

/// What a mediator chose for a session when starting it in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionPlan {
    /// How long its documents are kept.
    pub(crate) docs_retention: DocRetention,
}

impl Sessions {
    /// The live session of this id.
    pub(crate) fn get(&self, id: &SessionId) -> Option<SessionHandle> {
        self.0.get(id).map(|h| h.clone())
    }

    /// Notes the settings of a session the console started, for when it starts.
    pub(crate) fn plan(&self, id: SessionId, plan: SessionPlan) {
        self.1.insert(id, plan);
    }

    /// The settings the console noted for `id`, taken (its session task is starting).
    pub(crate) fn take_plan(&self, id: &SessionId) -> Option<SessionPlan> {
        self.1.remove(id).map(|(_, p)| p)
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
