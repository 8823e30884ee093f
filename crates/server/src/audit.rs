//! The audit log: content-free events in SQLite, each row chained to the previous by SHA-256.
//!
//! Rows hold a time, the session id, an event name, a pseudonymous participant id, a role,
//! and at most a consent hash or a channel id: never names, never content. A `chain` table
//! keeps the anchor (where the chain starts after retention purges) and the head (the last
//! row), so that editing, removing or truncating rows is detected by [`verify`].

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unix seconds.
    pub at: u64,
    /// Session id.
    pub session: String,
    /// Event name (`admitted`, `moved`, ...).
    pub event: String,
    /// Pseudonymous participant id.
    pub participant: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// Consent hash or channel id.
    pub detail: Option<String>,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Position in the chain.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Session id.
    pub session: String,
    /// Event name.
    pub event: String,
    /// Pseudonymous participant id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// Role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Consent hash or channel id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Hash of the previous row (hex).
    pub prev_hash: String,
    /// This row's hash (hex).
    pub hash: String,
}

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite failed.
    #[error("audit database {path}: {source}")]
    Db {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The writer thread is gone.
    #[error("the audit writer stopped")]
    WriterGone,
}

/// Why verification failed: the first bad row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at row {seq}: {problem}")]
pub struct ChainBroken {
    /// The row (seq) where the chain breaks.
    pub seq: i64,
    /// What is wrong there.
    pub problem: String,
}

fn lp(h: &mut Sha256, s: &str) {
    h.update((s.len() as u32).to_be_bytes());
    h.update(s.as_bytes());
}

fn row_hash(prev_hash: &str, seq: i64, at: i64, e: &RowFields<'_>) -> String {
    let mut h = Sha256::new();
    h.update(b"confer audit v1");
    lp(&mut h, prev_hash);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    lp(&mut h, e.session);
    lp(&mut h, e.event);
    // Absent and empty are told apart by a presence byte.
    for f in [e.participant, e.role, e.detail] {
        match f {
            Some(s) => {
                h.update([1]);
                lp(&mut h, s);
            }
            None => h.update([0]),
        }
    }
    hex::encode(h.finalize())
}

struct RowFields<'a> {
    session: &'a str,
    event: &'a str,
    participant: Option<&'a str>,
    role: Option<&'a str>,
    detail: Option<&'a str>,
}

/// Opens (and creates) the audit database.
pub fn open(path: &Path) -> Result<Connection, AuditError> {
    let db = |source| AuditError::Db {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path).map_err(db)?;
    restrict_permissions(path);
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS events (
             seq INTEGER PRIMARY KEY,
             at INTEGER NOT NULL,
             session TEXT NOT NULL,
             event TEXT NOT NULL,
             participant TEXT,
             role TEXT,
             detail TEXT,
             prev_hash TEXT NOT NULL,
             hash TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS events_session ON events(session);
         CREATE INDEX IF NOT EXISTS events_at ON events(at);
         CREATE TABLE IF NOT EXISTS chain (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             anchor_seq INTEGER NOT NULL,
             anchor_hash TEXT NOT NULL,
             head_seq INTEGER NOT NULL,
             head_hash TEXT NOT NULL
         );",
    )
    .map_err(db)?;
    conn.execute(
        "INSERT OR IGNORE INTO chain (id, anchor_seq, anchor_hash, head_seq, head_hash) VALUES (1, 0, ?1, 0, ?1)",
        params![ZERO_HASH],
    )
    .map_err(db)?;
    Ok(conn)
}

// The audit log is for the operator only, whatever the process umask.
#[cfg(unix)]
pub(crate) fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
pub(crate) fn restrict_permissions(_: &Path) {}

/// Appends events in one transaction, extending the chain.
pub fn append(conn: &mut Connection, events: &[NewEvent]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let (mut seq, mut prev): (i64, String) = tx.query_row(
        "SELECT head_seq, head_hash FROM chain WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for e in events {
        seq += 1;
        let at = i64::try_from(e.at).unwrap_or(i64::MAX);
        let fields = RowFields {
            session: &e.session,
            event: &e.event,
            participant: e.participant.as_deref(),
            role: e.role.as_deref(),
            detail: e.detail.as_deref(),
        };
        let hash = row_hash(&prev, seq, at, &fields);
        tx.execute(
            "INSERT INTO events (seq, at, session, event, participant, role, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![seq, at, e.session, e.event, e.participant, e.role, e.detail, prev, hash],
        )?;
        prev = hash;
    }
    tx.execute(
        "UPDATE chain SET head_seq = ?1, head_hash = ?2 WHERE id = 1",
        params![seq, prev],
    )?;
    tx.commit()
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        seq: r.get(0)?,
        at: r.get(1)?,
        session: r.get(2)?,
        event: r.get(3)?,
        participant: r.get(4)?,
        role: r.get(5)?,
        detail: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

const COLUMNS: &str = "seq, at, session, event, participant, role, detail, prev_hash, hash";

/// Checks the whole chain. `Ok(n)` is the number of rows verified.
pub fn verify(conn: &Connection) -> Result<Result<usize, ChainBroken>, rusqlite::Error> {
    let (anchor_seq, anchor_hash, head_seq, head_hash): (i64, String, i64, String) = conn
        .query_row(
            "SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM chain WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM events ORDER BY seq"))?;
    let rows = stmt.query_map([], read_row)?;
    let mut expect_seq = anchor_seq + 1;
    let mut prev = anchor_hash;
    let mut n = 0;
    for row in rows {
        let row = row?;
        let broken = |problem: String| {
            Ok(Err(ChainBroken {
                seq: row.seq,
                problem,
            }))
        };
        if row.seq != expect_seq {
            return broken(format!(
                "expected row {expect_seq} before it; rows were removed"
            ));
        }
        if row.prev_hash != prev {
            return broken("its link to the previous row does not match; a row before it was altered or removed".into());
        }
        let fields = RowFields {
            session: &row.session,
            event: &row.event,
            participant: row.participant.as_deref(),
            role: row.role.as_deref(),
            detail: row.detail.as_deref(),
        };
        if row_hash(&prev, row.seq, row.at, &fields) != row.hash {
            return broken("its contents do not match its hash; the row was altered".into());
        }
        prev = row.hash.clone();
        expect_seq += 1;
        n += 1;
    }
    if expect_seq - 1 != head_seq || prev != head_hash {
        return Ok(Err(ChainBroken {
            seq: expect_seq,
            problem: format!(
                "the chain should end at row {head_seq}; rows at the end were removed"
            ),
        }));
    }
    Ok(Ok(n))
}

/// Every row of one session, in order.
pub fn export(conn: &Connection, session: &str) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM events WHERE session = ?1 ORDER BY seq"
    ))?;
    let rows = stmt
        .query_map(params![session], read_row)?
        .collect::<rusqlite::Result<Vec<Row>>>()?;
    Ok(rows)
}

/// Deletes rows older than `retention_days` before `now` and moves the anchor past them.
/// Returns how many rows were deleted.
pub fn purge(conn: &mut Connection, retention_days: u32, now: u64) -> rusqlite::Result<usize> {
    let cutoff =
        i64::try_from(now.saturating_sub(u64::from(retention_days) * 86_400)).unwrap_or(i64::MAX);
    let tx = conn.transaction()?;
    // Rows are in time order, so the oldest rows form a prefix of the chain; delete that prefix.
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM events WHERE seq = (SELECT MAX(seq) FROM events WHERE at < ?1)",
            params![cutoff],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((seq, hash)) = last else {
        return Ok(0);
    };
    let n = tx.execute("DELETE FROM events WHERE seq <= ?1", params![seq])?;
    tx.execute(
        "UPDATE chain SET anchor_seq = ?1, anchor_hash = ?2 WHERE id = 1",
        params![seq, hash],
    )?;
    tx.commit()?;
    Ok(n)
}

enum Msg {
    Event(NewEvent),
    Flush(mpsc::Sender<()>),
    Purge(u32, mpsc::Sender<rusqlite::Result<usize>>),
}

/// A handle to the writer thread: events are appended off the async runtime, in order.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl AuditLog {
    /// Opens the database and starts the writer thread.
    pub fn start(path: &Path) -> Result<Self, AuditError> {
        let mut conn = open(path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("confer-audit".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut pending = vec![first];
                    // Batch whatever else is queued into the same transaction.
                    pending.extend(rx.try_iter());
                    for m in pending {
                        match m {
                            Msg::Event(e) => batch.push(e),
                            Msg::Flush(done) => {
                                write_batch(&mut conn, &mut batch, &path);
                                let _ = done.send(());
                            }
                            Msg::Purge(days, done) => {
                                write_batch(&mut conn, &mut batch, &path);
                                let _ = done.send(purge(&mut conn, days, crate::token::unix_now()));
                            }
                        }
                    }
                    write_batch(&mut conn, &mut batch, &path);
                }
            })
            .map_err(|_| AuditError::WriterGone)?;
        Ok(Self { tx })
    }

    /// Queues an event.
    pub fn record(&self, e: NewEvent) {
        if self.tx.send(Msg::Event(e)).is_err() {
            tracing::error!("audit writer is gone; an audit event was lost");
        }
    }

    /// Waits until everything queued so far is written.
    pub fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| AuditError::WriterGone)?;
        rx.recv().map_err(|_| AuditError::WriterGone)
    }

    /// Applies the retention period now (blocking; call from a blocking context).
    pub fn purge(&self, days: u32) -> Result<usize, AuditError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Msg::Purge(days, tx))
            .map_err(|_| AuditError::WriterGone)?;
        rx.recv()
            .map_err(|_| AuditError::WriterGone)?
            .map_err(|source| AuditError::Db {
                path: PathBuf::from("audit.db"),
                source,
            })
    }
}

fn write_batch(conn: &mut Connection, batch: &mut Vec<NewEvent>, path: &Path) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = append(conn, batch) {
        tracing::error!(error = %e, path = %path.display(), "audit write failed");
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: u64, event: &str) -> NewEvent {
        NewEvent {
            at,
            session: "s1".into(),
            event: event.into(),
            participant: Some("p1".into()),
            role: Some("party".into()),
            detail: None,
        }
    }

    fn mem() -> Connection {
        let dir = std::env::temp_dir().join(format!("confer-audit-{}", crate::token::random_id()));
        open(&dir.join("audit.db")).unwrap()
    }

    #[test]
    fn chain_verifies_and_catches_edits_removals_and_truncation() {
        let mut c = mem();
        append(
            &mut c,
            &[
                ev(1, "arrived"),
                ev(2, "consent"),
                ev(3, "admitted"),
                ev(4, "left"),
            ],
        )
        .unwrap();
        assert_eq!(verify(&c).unwrap(), Ok(4));

        c.execute("UPDATE events SET role = 'mediator' WHERE seq = 2", [])
            .unwrap();
        assert_eq!(verify(&c).unwrap().unwrap_err().seq, 2);
        c.execute("UPDATE events SET role = 'party' WHERE seq = 2", [])
            .unwrap();
        assert!(verify(&c).unwrap().is_ok());

        c.execute("DELETE FROM events WHERE seq = 3", []).unwrap();
        assert_eq!(verify(&c).unwrap().unwrap_err().seq, 4);

        let mut c = mem();
        append(&mut c, &[ev(1, "arrived"), ev(2, "admitted")]).unwrap();
        c.execute("DELETE FROM events WHERE seq = 2", []).unwrap();
        let e = verify(&c).unwrap().unwrap_err();
        assert!(e.problem.contains("end"), "{e}");
    }

    #[test]
    fn purge_keeps_the_rest_verifiable() {
        let mut c = mem();
        let day = 86_400;
        append(&mut c, &[ev(day, "a"), ev(2 * day, "b"), ev(10 * day, "c")]).unwrap();
        let n = purge(&mut c, 5, 11 * day).unwrap();
        assert_eq!(n, 2);
        assert_eq!(verify(&c).unwrap(), Ok(1));
        append(&mut c, &[ev(12 * day, "d")]).unwrap();
        assert_eq!(verify(&c).unwrap(), Ok(2));
        assert_eq!(
            export(&c, "s1")
                .unwrap()
                .iter()
                .map(|r| r.event.as_str())
                .collect::<Vec<_>>(),
            ["c", "d"]
        );
    }
}
