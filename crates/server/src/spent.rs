//! Spent invites, kept on disk so that an invite stays single use across restarts.
//!
//! `DATA_DIR/tokens.db` is a SQLite database (WAL, `synchronous = FULL`) with one table,
//! `spent_invites (jti TEXT PRIMARY KEY, exp INTEGER)`: the id of every invite that was used
//! (or is being used right now) and its expiry. An invite is reserved *before* its holder
//! joins and the reservation is committed to disk first, so a crash at any point leaves the
//! invite spent rather than reusable (fail closed: the holder asks for a new link). A join
//! refused for a reason the holder can fix (the session has not started, is locked, the server
//! drains) gives the reservation back.
//!
//! A row is useless once its invite has expired (the signature check refuses it anyway), so
//! rows more than [`PRUNE_MARGIN_SECS`] past their expiry are deleted at start-up and with
//! every reservation. The margin covers a clock stepped back a little after a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};

/// Rows are kept this long past their invite's expiry.
pub const PRUNE_MARGIN_SECS: u64 = 60;

/// Why the spent-invite store failed.
#[derive(Debug, thiserror::Error)]
pub enum SpentError {
    /// SQLite failed (the file is unreadable, the disk is full, ...).
    #[error("spent-invite store {path}: {source}")]
    Db {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
}

/// The outcome of [`SpentInvites::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved now: the invite is spent unless [`SpentInvites::release`] gives it back.
    Reserved,
    /// Spent before (or being used by a concurrent `hello`).
    AlreadyUsed,
}

/// The durable set of spent invite ids.
pub struct SpentInvites {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SpentInvites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpentInvites")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SpentInvites {
    /// Opens (and creates) the store and prunes expired rows. Returns the store and how many
    /// rows were pruned.
    pub fn open(path: &Path, now: u64) -> Result<(Self, usize), SpentError> {
        let db = |source| SpentError::Db {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(db)?;
        crate::audit::restrict_permissions(path);
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        // FULL: a reservation is on disk before the holder is let in, even across a power cut.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS spent_invites (
                 jti TEXT PRIMARY KEY,
                 exp INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS spent_invites_exp ON spent_invites(exp);",
        )
        .map_err(db)?;
        let pruned = prune(&conn, now).map_err(db)?;
        Ok((
            Self {
                path: path.to_owned(),
                conn: Mutex::new(conn),
            },
            pruned,
        ))
    }

    /// Marks an invite spent, on disk, unless it already was. Blocking: call it from a
    /// blocking context.
    pub fn reserve(&self, jti: &str, exp: u64, now: u64) -> Result<Reservation, SpentError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        prune(&tx, now).map_err(|e| self.db(e))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO spent_invites (jti, exp) VALUES (?1, ?2)",
                params![jti, i64::try_from(exp).unwrap_or(i64::MAX)],
            )
            .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(if inserted == 1 {
            Reservation::Reserved
        } else {
            Reservation::AlreadyUsed
        })
    }

    /// Gives a reservation back (the join failed for a reason the holder can fix).
    pub fn release(&self, jti: &str) -> Result<(), SpentError> {
        self.lock()
            .execute("DELETE FROM spent_invites WHERE jti = ?1", params![jti])
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Whether an invite id is spent (or being used right now).
    pub fn is_spent(&self, jti: &str) -> Result<bool, SpentError> {
        self.lock()
            .query_row(
                "SELECT COUNT(*) FROM spent_invites WHERE jti = ?1",
                params![jti],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.db(e))
    }

    /// How many ids are stored.
    pub fn len(&self) -> Result<usize, SpentError> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM spent_invites", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| self.db(e))
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> Result<bool, SpentError> {
        Ok(self.len()? == 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn db(&self, source: rusqlite::Error) -> SpentError {
        SpentError::Db {
            path: self.path.clone(),
            source,
        }
    }
}

fn prune(conn: &Connection, now: u64) -> rusqlite::Result<usize> {
    let cutoff = i64::try_from(now.saturating_sub(PRUNE_MARGIN_SECS)).unwrap_or(i64::MAX);
    conn.execute("DELETE FROM spent_invites WHERE exp < ?1", params![cutoff])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        std::env::temp_dir()
            .join(format!("confer-spent-{}", crate::token::random_id()))
            .join("tokens.db")
    }

    #[test]
    fn a_reservation_is_refused_twice_survives_reopening_and_can_be_given_back() {
        let p = path();
        let now = 1_000_000;
        let (s, _) = SpentInvites::open(&p, now).unwrap();
        assert_eq!(
            s.reserve("a", now + 60, now).unwrap(),
            Reservation::Reserved
        );
        assert_eq!(
            s.reserve("a", now + 60, now).unwrap(),
            Reservation::AlreadyUsed
        );
        assert_eq!(
            s.reserve("b", now + 60, now).unwrap(),
            Reservation::Reserved
        );
        s.release("b").unwrap();
        drop(s);

        // A new process: what was spent stays spent, what was given back is free.
        let (s, pruned) = SpentInvites::open(&p, now).unwrap();
        assert_eq!(pruned, 0);
        assert_eq!(
            s.reserve("a", now + 60, now).unwrap(),
            Reservation::AlreadyUsed
        );
        assert_eq!(
            s.reserve("b", now + 60, now).unwrap(),
            Reservation::Reserved
        );
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn expired_rows_are_pruned_at_open_and_on_insert() {
        let p = path();
        let now = 1_000_000;
        let (s, _) = SpentInvites::open(&p, now).unwrap();
        s.reserve("old", now + 10, now).unwrap();
        s.reserve("fresh", now + 1_000, now).unwrap();
        assert_eq!(s.len().unwrap(), 2);

        // Within the margin past expiry the row stays.
        let later = now + 10 + PRUNE_MARGIN_SECS;
        s.reserve("x", later + 1_000, later).unwrap();
        assert_eq!(s.len().unwrap(), 3, "old is within its margin");
        // One second past it, an insert prunes it.
        let later = now + 11 + PRUNE_MARGIN_SECS;
        s.reserve("y", later + 1_000, later).unwrap();
        assert_eq!(s.len().unwrap(), 3, "old is gone, y is in");
        assert_eq!(
            s.reserve("old", now + 10, later).unwrap(),
            Reservation::Reserved,
            "forgotten (its token is refused as expired anyway)"
        );
        drop(s);

        // Opening prunes: fresh (exp now+1000) is past its margin, x and y are not.
        let (s, pruned) = SpentInvites::open(&p, now + 1_100).unwrap();
        assert_eq!(pruned, 2, "fresh and the second old");
        assert_eq!(s.len().unwrap(), 2);
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}
