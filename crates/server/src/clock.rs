//! The wall clock of the console (login lockouts, enrolment links, login sessions), in Unix
//! seconds. The server reads the system clock; a test holds a manual one and moves it, so a
//! 15-minute lockout expires without a 15-minute wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix seconds, from the system or from a test's hand.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that stands at `start` until [`advance`](Self::advance)d.
    pub fn manual(start: u64) -> Self {
        Self(Some(Arc::new(AtomicU64::new(start))))
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> u64 {
        match &self.0 {
            None => crate::token::unix_now(),
            Some(t) => t.load(Ordering::Acquire),
        }
    }

    /// Moves a manual clock forward (a system clock ignores it).
    pub fn advance(&self, secs: u64) {
        if let Some(t) = &self.0 {
            t.fetch_add(secs, Ordering::AcqRel);
        }
    }
}
