//! The audit log: content-free events in SQLite, each row chained to the previous by SHA-256.
//!
//! Rows hold a time, the session id, an event name, a pseudonymous participant id, a role,
//! and at most a consent hash, a channel id, a document's size or the SHA-256 of an
//! acknowledged document version: never names, never content. A `chain` table keeps the
//! anchor (where the chain starts after retention purges, and the time of the last row
//! purged) and the head (the last row), so that editing, removing or truncating rows is
//! detected by [`verify`].
//!
//! Someone who can write the file can also rewrite the `chain` table. The head, `SEQ:HASH`
//! ([`Head`]), is therefore meant to be copied elsewhere (the server logs it after every
//! batch; `confer audit head` prints it): [`check`] with an expected head fails when the log
//! no longer reaches that row with that hash, and when the anchor moved past rows younger than
//! the retention period.
//!
//! The writer thread keeps a batch that failed to append and retries it (after 1 s, doubling
//! up to 30 s, and at every flush). While it fails it holds at most `max_pending` events;
//! what it had to drop is recorded, once writing works again, as one `gap` event whose detail
//! is the number of events lost.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The event that records how many events the writer could not write.
pub const GAP: &str = "gap";

/// A participant shared a document: its upload was accepted. The detail is the file's size
/// in bytes; never its name, type or id.
pub const DOC_SHARED: &str = "doc_shared";

/// `confer session purge`, or the console's purge, removed a session's files; its
/// content-free rows stay.
pub const SESSION_PURGED: &str = "session_purged";

/// The `session_purged` row of a session id: content-free, no participant.
pub fn session_purged(session: &str, at: u64) -> NewEvent {
    NewEvent {
        at,
        session: session.to_owned(),
        event: SESSION_PURGED.to_owned(),
        participant: None,
        role: None,
        detail: None,
    }
}

/// A participant acknowledged a version of a document (`doc_ack`). The detail is the
/// version's SHA-256; never the document, its name or its id. Written by the room
/// (`confer_room::AuditKind::DocAcknowledged`).
pub const DOC_ACKNOWLEDGED: &str = "doc_acknowledged";

/// Events the writer holds while the database fails, by default.
pub const MAX_PENDING: usize = 100_000;

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
    /// Consent hash, channel id, or a document's size.
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
    /// Consent hash, channel id, or a document's size.
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
    /// Events are queued but could not be written (the writer keeps retrying).
    #[error(
        "{pending} audit events are not written yet: the audit database keeps failing (see `audit write failed` in the log)"
    )]
    Unwritten {
        /// How many events wait.
        pending: usize,
    },
}

/// A position in the chain: a row's `seq` and `hash`, written `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The row (0: before the first row).
    pub seq: i64,
    /// Its hash, 64 lowercase hex characters.
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// A `SEQ:HASH` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected SEQ:HASH as printed by `confer audit head` (a row number, a colon, 64 lowercase hex characters)"
)]
pub struct HeadSyntax;

impl std::str::FromStr for Head {
    type Err = HeadSyntax;

    fn from_str(s: &str) -> Result<Self, HeadSyntax> {
        let (seq, hash) = s.trim().split_once(':').ok_or(HeadSyntax)?;
        let seq: i64 = seq.parse().map_err(|_| HeadSyntax)?;
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if seq < 0 || hash.len() != 64 || !hash.chars().all(hex) {
            return Err(HeadSyntax);
        }
        Ok(Self {
            seq,
            hash: hash.to_owned(),
        })
    }
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
             head_hash TEXT NOT NULL,
             anchor_at INTEGER
         );",
    )
    .map_err(db)?;
    // Logs made before the anchor's time was kept: add the column (NULL: unknown).
    let has_anchor_at: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('chain') WHERE name = 'anchor_at'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(db)?
        > 0;
    if !has_anchor_at {
        conn.execute_batch("ALTER TABLE chain ADD COLUMN anchor_at INTEGER")
            .map_err(db)?;
    }
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

/// Appends events in one transaction, extending the chain; returns the new head.
pub fn append(conn: &mut Connection, events: &[NewEvent]) -> rusqlite::Result<Head> {
    append_all(conn, events)
}

fn append_all<'a>(
    conn: &mut Connection,
    events: impl IntoIterator<Item = &'a NewEvent>,
) -> rusqlite::Result<Head> {
    // Immediate: the write lock is taken before the head is read, so another process
    // appending at the same time (`confer session purge` beside the server) waits for it
    // instead of failing on a head that moved.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
    tx.commit()?;
    Ok(Head { seq, hash: prev })
}

/// The head as the `chain` table records it (not checked: see [`check`]).
pub fn head(conn: &Connection) -> rusqlite::Result<Head> {
    conn.query_row(
        "SELECT head_seq, head_hash FROM chain WHERE id = 1",
        [],
        |r| {
            Ok(Head {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        },
    )
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

/// The `chain` table.
struct ChainRow {
    anchor_seq: i64,
    anchor_hash: String,
    anchor_at: Option<i64>,
    head_seq: i64,
    head_hash: String,
}

fn read_chain(conn: &Connection) -> rusqlite::Result<ChainRow> {
    conn.query_row(
        "SELECT anchor_seq, anchor_hash, anchor_at, head_seq, head_hash FROM chain WHERE id = 1",
        [],
        |r| {
            Ok(ChainRow {
                anchor_seq: r.get(0)?,
                anchor_hash: r.get(1)?,
                anchor_at: r.get(2)?,
                head_seq: r.get(3)?,
                head_hash: r.get(4)?,
            })
        },
    )
}

/// What a walk along the chain found.
struct Walk {
    rows: usize,
    /// The hash of the row asked for, if the chain holds it.
    hash_at: Option<String>,
    /// Events lost, by the `gap` rows.
    lost: u64,
}

// Walks from the anchor to the head, checking every link and hash.
fn walk(
    conn: &Connection,
    chain: &ChainRow,
    want: Option<i64>,
) -> rusqlite::Result<Result<Walk, ChainBroken>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM events ORDER BY seq"))?;
    let rows = stmt.query_map([], read_row)?;
    let mut expect_seq = chain.anchor_seq + 1;
    let mut prev = chain.anchor_hash.clone();
    let mut walked = Walk {
        rows: 0,
        hash_at: None,
        lost: 0,
    };
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
        if row.event == GAP {
            walked.lost += row
                .detail
                .as_deref()
                .and_then(|d| d.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if want == Some(row.seq) {
            walked.hash_at = Some(row.hash.clone());
        }
        prev = row.hash;
        expect_seq += 1;
        walked.rows += 1;
    }
    if expect_seq - 1 != chain.head_seq || prev != chain.head_hash {
        return Ok(Err(ChainBroken {
            seq: expect_seq,
            problem: format!(
                "the chain should end at row {}; rows at the end were removed",
                chain.head_seq
            ),
        }));
    }
    Ok(Ok(walked))
}

/// Checks the whole chain. `Ok(n)` is the number of rows verified.
pub fn verify(conn: &Connection) -> Result<Result<usize, ChainBroken>, rusqlite::Error> {
    let chain = read_chain(conn)?;
    Ok(walk(conn, &chain, None)?.map(|w| w.rows))
}

/// What [`check`] is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Unix seconds.
    pub now: u64,
    /// The retention period in force (`audit_retention_days`).
    pub retention_days: u32,
    /// A head recorded earlier (`confer audit head`, or the server's `audit head` log line).
    pub expect_head: Option<Head>,
}

/// The anchor: where the chain starts after purges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The last row purged (0: nothing was purged).
    pub seq: i64,
    /// That row's time, Unix seconds; `None` when nothing was purged or the purge predates
    /// this record.
    pub at: Option<i64>,
}

/// Where the expected head was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The log holds that row with that hash (or it is the anchor's).
    Found(Head),
    /// That row was purged under the retention period: its hash cannot be compared.
    Purged(Head),
}

/// What [`check`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Rows verified.
    pub rows: usize,
    /// The head.
    pub head: Head,
    /// The anchor.
    pub anchor: Anchor,
    /// The expected head, when one was given.
    pub expected: Option<Expected>,
    /// Events the writer lost, summed over the `gap` rows.
    pub lost_events: u64,
}

/// Why [`check`] failed. Each message says what was found and what it means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// A row was altered or removed, or the end does not match the `chain` table.
    #[error(transparent)]
    Chain(#[from] ChainBroken),
    /// The log ends before the expected head.
    #[error(
        "audit head moved backwards: the log ends at row {}, before the expected head row {}; rows after row {} were removed",
        head.seq, expected.seq, head.seq
    )]
    HeadMovedBack {
        /// What was expected.
        expected: Head,
        /// The log's head now.
        head: Head,
    },
    /// The row of the expected head has another hash.
    #[error(
        "audit head mismatch: row {} has hash {found}, not the expected {}; the log was rewritten at or before row {}",
        expected.seq, expected.hash, expected.seq
    )]
    HeadMismatch {
        /// What was expected.
        expected: Head,
        /// The hash that row has now.
        found: String,
    },
    /// The anchor moved past rows that retention would not have purged yet.
    #[error(
        "audit anchor moved past rows younger than the retention period: the anchor is row {anchor_seq}, an event {age_days} days old, and retention is {retention_days} days; rows were removed from the start of the log"
    )]
    AnchorTooYoung {
        /// The anchor row.
        anchor_seq: i64,
        /// Its age in whole days.
        age_days: i64,
        /// The retention period.
        retention_days: u32,
    },
    /// The expected head was purged, and the anchor's age was never recorded.
    #[error(
        "audit anchor moved past the expected head row {} to row {anchor_seq}, and the anchor's age is unknown (purged by an older version): cannot tell whether those rows were old enough to purge",
        expected.seq
    )]
    AnchorAgeUnknown {
        /// What was expected.
        expected: Head,
        /// The anchor row.
        anchor_seq: i64,
    },
}

impl CheckFailure {
    /// A stable code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            CheckFailure::Chain(_) => "chain_broken",
            CheckFailure::HeadMovedBack { .. } => "head_moved_back",
            CheckFailure::HeadMismatch { .. } => "head_mismatch",
            CheckFailure::AnchorTooYoung { .. } => "anchor_too_young",
            CheckFailure::AnchorAgeUnknown { .. } => "anchor_age_unknown",
        }
    }
}

/// Checks the chain, the expected head if given, and that the anchor moved only past rows
/// older than the retention period.
pub fn check(
    conn: &Connection,
    opts: &CheckOptions,
) -> rusqlite::Result<Result<Report, CheckFailure>> {
    let chain = read_chain(conn)?;
    let want = opts.expect_head.as_ref().map(|h| h.seq);
    let walked = match walk(conn, &chain, want)? {
        Ok(w) => w,
        Err(broken) => return Ok(Err(broken.into())),
    };
    let head = Head {
        seq: chain.head_seq,
        hash: chain.head_hash.clone(),
    };
    let anchor = Anchor {
        seq: chain.anchor_seq,
        at: chain.anchor_at.filter(|_| chain.anchor_seq > 0),
    };
    let expected = match opts.expect_head.clone() {
        None => None,
        Some(e) if e.seq > head.seq => {
            return Ok(Err(CheckFailure::HeadMovedBack { expected: e, head }));
        }
        Some(e) if e.seq < anchor.seq && anchor.at.is_none() => {
            return Ok(Err(CheckFailure::AnchorAgeUnknown {
                expected: e,
                anchor_seq: anchor.seq,
            }));
        }
        // Its age is checked below, as for every anchor.
        Some(e) if e.seq < anchor.seq => Some(Expected::Purged(e)),
        Some(e) => {
            let found = if e.seq == anchor.seq {
                Some(chain.anchor_hash)
            } else {
                walked.hash_at
            };
            match found {
                Some(h) if h == e.hash => Some(Expected::Found(e)),
                // The walk reached the head, so the row exists: `None` cannot happen.
                found => {
                    return Ok(Err(CheckFailure::HeadMismatch {
                        expected: e,
                        found: found.unwrap_or_default(),
                    }));
                }
            }
        }
    };
    if let Some(at) = anchor.at {
        let cutoff = opts
            .now
            .saturating_sub(u64::from(opts.retention_days) * 86_400);
        let cutoff = i64::try_from(cutoff).unwrap_or(i64::MAX);
        // A purge deletes rows older than its cutoff, and cutoffs only grow.
        if at >= cutoff {
            let now = i64::try_from(opts.now).unwrap_or(i64::MAX);
            return Ok(Err(CheckFailure::AnchorTooYoung {
                anchor_seq: anchor.seq,
                age_days: now.saturating_sub(at).max(0) / 86_400,
                retention_days: opts.retention_days,
            }));
        }
    }
    Ok(Ok(Report {
        rows: walked.rows,
        head,
        anchor,
        expected,
        lost_events: walked.lost,
    }))
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

/// Every row about one participant (as `participant`), in order: what an access request by
/// that person is answered with.
pub fn export_participant(conn: &Connection, participant: &str) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM events WHERE participant = ?1 ORDER BY seq"
    ))?;
    let rows = stmt
        .query_map(params![participant], read_row)?
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
    let last: Option<(i64, String, i64)> = tx
        .query_row(
            "SELECT seq, hash, at FROM events WHERE seq = (SELECT MAX(seq) FROM events WHERE at < ?1)",
            params![cutoff],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((seq, hash, at)) = last else {
        return Ok(0);
    };
    let n = tx.execute("DELETE FROM events WHERE seq <= ?1", params![seq])?;
    // The anchor's time lets `check` tell a retention purge from rows removed early.
    tx.execute(
        "UPDATE chain SET anchor_seq = ?1, anchor_hash = ?2, anchor_at = ?3 WHERE id = 1",
        params![seq, hash, at],
    )?;
    tx.commit()?;
    Ok(n)
}

enum Msg {
    Event(NewEvent),
    Flush(mpsc::Sender<Result<(), AuditError>>),
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
        Self::start_bounded(path, MAX_PENDING)
    }

    /// Like [`start`](Self::start), holding at most `max_pending` events while the database
    /// fails (beyond that, events are counted into a `gap`).
    pub fn start_bounded(path: &Path, max_pending: usize) -> Result<Self, AuditError> {
        let conn = open(path)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut writer = Writer {
            conn,
            path: path.to_owned(),
            pending: Vec::new(),
            max_pending: max_pending.max(1),
            lost: 0,
            lost_at: 0,
            retry: None,
        };
        std::thread::Builder::new()
            .name("confer-audit".into())
            .spawn(move || writer.run(&rx))
            .map_err(|_| AuditError::WriterGone)?;
        Ok(Self { tx })
    }

    /// Queues an event.
    pub fn record(&self, e: NewEvent) {
        if self.tx.send(Msg::Event(e)).is_err() {
            tracing::error!("audit writer is gone; an audit event was lost");
        }
    }

    /// Tries to write everything queued so far, now, and waits for the outcome:
    /// [`AuditError::Unwritten`] when the database still fails (the events stay queued).
    pub fn flush(&self) -> Result<(), AuditError> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| AuditError::WriterGone)?;
        rx.recv().map_err(|_| AuditError::WriterGone)?
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

/// First retry after a failed append; doubled after each failure, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The writer thread's state.
struct Writer {
    conn: Connection,
    path: PathBuf,
    /// Events not written yet, in order.
    pending: Vec<NewEvent>,
    max_pending: usize,
    /// Events dropped because `pending` was full while the database failed.
    lost: u64,
    /// The time of the first of them.
    lost_at: u64,
    /// While failing: when to try again, and the delay after that.
    retry: Option<(Instant, Duration)>,
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Msg>) {
        loop {
            let first = match self.retry {
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
                Some((at, _)) => {
                    match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                        Ok(m) => Some(m),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            // Batch whatever else is queued into the same transaction.
            for m in first.into_iter().chain(rx.try_iter()) {
                match m {
                    Msg::Event(e) => self.push(e),
                    Msg::Flush(done) => {
                        let _ = done.send(self.write());
                    }
                    Msg::Purge(days, done) => {
                        let _ = self.write();
                        let _ = done.send(purge(&mut self.conn, days, crate::token::unix_now()));
                    }
                }
            }
            if self.retry.is_none_or(|(at, _)| Instant::now() >= at) {
                let _ = self.write();
            }
        }
        // Every handle is gone: one last try.
        let _ = self.write();
    }

    fn push(&mut self, e: NewEvent) {
        if self.pending.len() >= self.max_pending {
            // Healthy: write the full batch now. Failing: count what cannot be held.
            if self.retry.is_some() || self.write().is_err() {
                if self.lost == 0 {
                    self.lost_at = e.at;
                }
                self.lost += 1;
                return;
            }
        }
        self.pending.push(e);
    }

    /// Appends what is pending, then a `gap` for what was dropped; keeps it all on failure.
    fn write(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() && self.lost == 0 {
            self.retry = None;
            return Ok(());
        }
        let gap = (self.lost > 0).then(|| NewEvent {
            at: self.lost_at,
            session: String::new(),
            event: GAP.to_owned(),
            participant: None,
            role: None,
            detail: Some(self.lost.to_string()),
        });
        match append_all(&mut self.conn, self.pending.iter().chain(gap.as_ref())) {
            Ok(head) => {
                // Not personal data: an operator copies it elsewhere to prove the log later.
                tracing::info!(head = %head, events = self.pending.len(), lost = self.lost, "audit head");
                self.pending.clear();
                self.lost = 0;
                self.retry = None;
                Ok(())
            }
            Err(e) => {
                let delay = self
                    .retry
                    .map_or(RETRY_FIRST, |(_, d)| (d * 2).min(RETRY_MAX));
                self.retry = Some((Instant::now() + delay, delay));
                tracing::error!(
                    error = %e,
                    path = %self.path.display(),
                    pending = self.pending.len(),
                    lost = self.lost,
                    retry_secs = delay.as_secs(),
                    "audit write failed"
                );
                Err(AuditError::Unwritten {
                    pending: self.pending.len() + usize::try_from(self.lost).unwrap_or(usize::MAX),
                })
            }
        }
    }
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

    const DAY: u64 = 86_400;

    fn opts(now: u64, retention_days: u32, expect_head: Option<&Head>) -> CheckOptions {
        CheckOptions {
            now,
            retention_days,
            expect_head: expect_head.cloned(),
        }
    }

    #[test]
    fn heads_print_and_parse_as_seq_colon_hash() {
        let h = Head {
            seq: 42,
            hash: "ab".repeat(32),
        };
        assert_eq!(h.to_string(), format!("42:{}", "ab".repeat(32)));
        assert_eq!(h.to_string().parse::<Head>(), Ok(h.clone()));
        assert_eq!(format!(" {h}\n").parse::<Head>(), Ok(h));
        let good = "ab".repeat(32);
        for bad in [
            String::new(),
            "42".into(),
            good.clone(),
            format!("-1:{good}"),
            format!("x:{good}"),
            format!("42:{}", &good[1..]),
            format!("42:{}", good.to_uppercase()),
            format!("42:{good}0"),
            format!("42:{}", "g".repeat(64)),
        ] {
            assert_eq!(bad.parse::<Head>(), Err(HeadSyntax), "{bad}");
        }
    }

    #[test]
    fn an_expected_head_catches_a_truncated_tail_even_with_the_chain_table_updated() {
        let now = 100 * DAY;
        let mut c = mem();
        let h2 = append(&mut c, &[ev(now, "arrived"), ev(now, "admitted")]).unwrap();
        assert_eq!(h2.seq, 2);
        assert_eq!(head(&c).unwrap(), h2);
        let h4 = append(&mut c, &[ev(now, "moved"), ev(now, "left")]).unwrap();
        let r = check(&c, &opts(now, 365, Some(&h2))).unwrap().unwrap();
        assert_eq!(r.expected, Some(Expected::Found(h2.clone())));
        assert_eq!((r.rows, r.head), (4, h4.clone()));
        assert!(check(&c, &opts(now, 365, Some(&h4))).unwrap().is_ok());

        // Remove rows 3 and 4 and make the chain table agree: the chain alone looks intact.
        c.execute("DELETE FROM events WHERE seq > 2", []).unwrap();
        c.execute(
            "UPDATE chain SET head_seq = ?1, head_hash = ?2",
            params![h2.seq, h2.hash],
        )
        .unwrap();
        assert_eq!(verify(&c).unwrap(), Ok(2));
        let f = check(&c, &opts(now, 365, Some(&h4))).unwrap().unwrap_err();
        assert_eq!(f.code(), "head_moved_back");
        assert!(f.to_string().contains("moved backwards"), "{f}");

        // Rows appended again under the same numbers do not bring the old head back.
        let h4b = append(&mut c, &[ev(now, "moved"), ev(now, "kicked")]).unwrap();
        assert_eq!(h4b.seq, 4);
        let f = check(&c, &opts(now, 365, Some(&h4))).unwrap().unwrap_err();
        assert_eq!(f.code(), "head_mismatch", "{f}");
        // Row 2 itself is untouched: that head is still found.
        assert!(check(&c, &opts(now, 365, Some(&h2))).unwrap().is_ok());
    }

    #[test]
    fn the_anchor_may_move_only_past_rows_older_than_the_retention_period() {
        let now = 100 * DAY;
        let mut c = mem();
        let h1 = append(&mut c, &[ev(now - 40 * DAY, "a")]).unwrap();
        let h2 = append(&mut c, &[ev(now - 20 * DAY, "b")]).unwrap();
        append(&mut c, &[ev(now - DAY, "c")]).unwrap();
        let r = check(&c, &opts(now, 30, None)).unwrap().unwrap();
        assert_eq!(r.anchor, Anchor { seq: 0, at: None });

        // Retention (30 days) purges row 1; the anchor keeps its time.
        assert_eq!(purge(&mut c, 30, now).unwrap(), 1);
        let r = check(&c, &opts(now, 30, Some(&h1))).unwrap().unwrap();
        assert_eq!(
            r.anchor,
            Anchor {
                seq: 1,
                at: Some(i64::try_from(now - 40 * DAY).unwrap())
            }
        );
        assert_eq!(r.expected, Some(Expected::Found(h1.clone())));

        // Purging row 2 (20 days old) under a 10-day retention is fine for that retention,
        // and is caught under the 30 days in force.
        assert_eq!(purge(&mut c, 10, now).unwrap(), 1);
        let r = check(&c, &opts(now, 10, Some(&h1))).unwrap().unwrap();
        assert_eq!(r.expected, Some(Expected::Purged(h1.clone())));
        let f = check(&c, &opts(now, 30, None)).unwrap().unwrap_err();
        assert_eq!(f.code(), "anchor_too_young");
        assert!(f.to_string().contains("20 days old"), "{f}");
        let f = check(&c, &opts(now, 30, Some(&h2))).unwrap().unwrap_err();
        assert_eq!(f.code(), "anchor_too_young");

        // An anchor whose time was never recorded (an older version purged): an expected head
        // before it cannot be vouched for.
        c.execute("UPDATE chain SET anchor_at = NULL", []).unwrap();
        let r = check(&c, &opts(now, 30, Some(&h2))).unwrap().unwrap();
        assert_eq!(r.anchor.at, None);
        let f = check(&c, &opts(now, 30, Some(&h1))).unwrap().unwrap_err();
        assert_eq!(f.code(), "anchor_age_unknown");
    }

    #[test]
    fn an_older_chain_table_gains_the_anchor_time() {
        let path = std::env::temp_dir()
            .join(format!("confer-audit-{}", crate::token::random_id()))
            .join("audit.db");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE chain (id INTEGER PRIMARY KEY CHECK (id = 1), anchor_seq INTEGER NOT NULL,
                 anchor_hash TEXT NOT NULL, head_seq INTEGER NOT NULL, head_hash TEXT NOT NULL);",
        )
        .unwrap();
        drop(old);
        let mut c = open(&path).unwrap();
        append(&mut c, &[ev(DAY, "a"), ev(50 * DAY, "b")]).unwrap();
        purge(&mut c, 10, 50 * DAY).unwrap();
        let r = check(&c, &opts(50 * DAY, 10, None)).unwrap().unwrap();
        assert_eq!(r.anchor.at, Some(i64::try_from(DAY).unwrap()));
        drop(c);
        // Opening again changes nothing.
        assert!(open(&path).is_ok());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    // A trigger makes real SQLite refuse every append until it is dropped.
    const BREAK: &str = "CREATE TRIGGER refuse BEFORE INSERT ON events
        BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;";
    const MEND: &str = "DROP TRIGGER refuse";

    fn rows(path: &Path) -> Vec<Row> {
        let c = open(path).unwrap();
        let mut stmt = c
            .prepare(&format!("SELECT {COLUMNS} FROM events ORDER BY seq"))
            .unwrap();
        stmt.query_map([], read_row)
            .unwrap()
            .collect::<rusqlite::Result<Vec<Row>>>()
            .unwrap()
    }

    #[test]
    fn a_failed_append_keeps_its_batch_and_a_full_queue_becomes_a_gap() {
        let dir = std::env::temp_dir().join(format!("confer-audit-{}", crate::token::random_id()));
        let path = dir.join("audit.db");
        let log = AuditLog::start_bounded(&path, 3).unwrap();
        log.record(ev(1, "session_created"));
        log.flush().unwrap();

        let side = open(&path).unwrap();
        side.execute_batch(BREAK).unwrap();
        for (at, e) in [(2, "arrived"), (3, "consent"), (4, "admitted")] {
            log.record(ev(at, e));
        }
        // Written nowhere, held: the flush says so.
        let err = log.flush().unwrap_err();
        assert!(matches!(err, AuditError::Unwritten { pending: 3 }), "{err}");
        assert_eq!(rows(&path).len(), 1);
        // The queue is full: these two are counted, not held.
        log.record(ev(5, "moved"));
        log.record(ev(6, "left"));
        assert!(matches!(
            log.flush().unwrap_err(),
            AuditError::Unwritten { pending: 5 }
        ));

        side.execute_batch(MEND).unwrap();
        log.flush().unwrap();
        log.record(ev(7, "session_ended"));
        log.flush().unwrap();
        let written = rows(&path);
        let events: Vec<(&str, Option<&str>)> = written
            .iter()
            .map(|r| (r.event.as_str(), r.detail.as_deref()))
            .collect();
        assert_eq!(
            events,
            [
                ("session_created", None),
                ("arrived", None),
                ("consent", None),
                ("admitted", None),
                (GAP, Some("2")),
                ("session_ended", None),
            ]
        );
        assert_eq!(written[4].at, 5, "the gap is dated by the first event lost");
        let c = open(&path).unwrap();
        let r = check(&c, &opts(10, 365, None)).unwrap().unwrap();
        assert_eq!((r.rows, r.lost_events), (6, 2));
        std::fs::remove_dir_all(dir).unwrap();
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
