//! The encrypted document store: sealed chunks of the documents participants share
//! (e2ee.md §8.7), kept as files under `DATA_DIR/docs` while their session lives.
//!
//! The server never sees a document's key, name or type: a client seals the file in 64 KiB
//! chunks and asks, over signalling, to store it (`doc_upload`) or to read it
//! (`doc_download`). The session task checks that the participant is admitted and that the
//! document fits the limits, notes it here ([`DocStore::upload`], [`DocStore::download`]) and
//! answers with a short-lived ticket ([`crate::token::DocClaims`]). The chunks then travel
//! over HTTP ([`router`]): `PUT` and `GET /docs/{doc_id}/{index}` with
//! `Authorization: Bearer <ticket>`. Chunk bodies are stored and served byte for byte: never
//! parsed, transformed or logged.
//!
//! ```text
//! DATA_DIR/docs/<session id>/<instance>/<doc id>/<index>
//! ```
//!
//! A chunk is written to a temporary file beside it and published with a hard link, which
//! fails if the chunk exists: a chunk is written once, readers never see half of one, and two
//! racing writers cannot both win. Its size is bounded before anything is written (the
//! document's declared size fixes every chunk's largest sealed length).
//!
//! **Lifetime.** A document is deleted when its session instance ends, its session's retention
//! after it was shared (a sweep on the server's [`Clock`]), and at every start of the server
//! (no session outlives its process). A session's retention is what its mediator chose in the
//! console ([`DocRetention`]), or `docs_retention_hours`, never more than
//! `docs_max_retention_hours`; each document keeps the deadline it was given when its upload
//! was first accepted. Deletions take the instance's I/O lock for writing and
//! chunk writes take it for reading, after checking that their document is still listed: no
//! chunk is written into a document that was just deleted. `confer session purge ID` removes
//! `DATA_DIR/docs/<ID>` from outside the server ([`purge_session`]).
//!
//! **Cluster mode.** A document lives on the disk of the node that owns its session when it is
//! shared, and its tickets name that node ([`mint_ticket`]). A chunk request that reaches
//! another node, as behind a load balancer, is passed on to the node its ticket names, one hop
//! at most ([`relay`]). Documents do not follow their session to another node: a node deletes
//! them when it lets the session go (hand-over, lost lease), like at its end, and a node that
//! dies takes them with it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use confer_proto::{
    DocId, DocOp, ErrorCode, ParticipantId, SessionId, doc_chunk_max_body, doc_chunks,
};
use futures_util::StreamExt;

use crate::clock::Clock;
use crate::state::AppState;
use crate::token::{DocClaims, TicketError, TokenKind};

mod relay;

/// The ticket for `claims`, as the session task hands it out. In cluster mode it names this
/// node, which holds the document, so any node can pass its chunk requests on ([`relay`]).
pub(crate) fn mint_ticket(state: &AppState, claims: &DocClaims) -> String {
    let claims = DocClaims {
        node: state.cluster.as_ref().map(|c| c.node_id.clone()),
        ..claims.clone()
    };
    state.tokens.mint_doc(&claims)
}

/// What the store is told by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DocLimits {
    /// `docs_max_bytes`.
    pub(crate) max_bytes: u64,
    /// `docs_max_session_bytes`.
    pub(crate) max_session_bytes: u64,
    /// `docs_retention_hours`, in seconds: sessions whose mediator chose nothing.
    pub(crate) retention_secs: u64,
    /// `docs_max_retention_hours`, in seconds: no document is kept longer.
    pub(crate) max_retention_secs: u64,
    /// `docs_ticket_ttl_secs`.
    pub(crate) ticket_ttl_secs: u64,
}

impl DocLimits {
    pub(crate) fn from_config(c: &crate::Config) -> Self {
        Self {
            max_bytes: c.docs_max_bytes,
            max_session_bytes: c.docs_max_session_bytes,
            retention_secs: c.docs_retention_hours.saturating_mul(3600),
            max_retention_secs: c.docs_max_retention_hours.saturating_mul(3600),
            ticket_ttl_secs: c.docs_ticket_ttl_secs,
        }
    }

    /// How long after sharing a session's documents are kept, for the retention its mediator
    /// chose (`None`: none was, the session did not start in the console): never longer than
    /// `docs_max_retention_hours`.
    pub(crate) fn retention_secs(&self, chosen: Option<DocRetention>) -> u64 {
        let secs = match chosen {
            None => self.retention_secs,
            Some(DocRetention::SessionEnd) => self.max_retention_secs,
            Some(DocRetention::Hours(h)) => h.saturating_mul(3600),
        };
        secs.min(self.max_retention_secs)
    }
}

/// How long a session's documents are kept, as its mediator chose when starting it in the
/// console. Every document is deleted when its session ends in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocRetention {
    /// Until the session ends (and at most `docs_max_retention_hours` after sharing).
    SessionEnd,
    /// This many hours after sharing, or the end of the session if sooner.
    Hours(u64),
}

impl DocRetention {
    /// The console's wire form: `0` is "until the session ends", `N` hours otherwise. `None`
    /// when it is longer than `max_hours` allows.
    pub(crate) fn from_hours(hours: u64, max_hours: u64) -> Option<Self> {
        match hours {
            0 => Some(DocRetention::SessionEnd),
            h if h <= max_hours => Some(DocRetention::Hours(h)),
            _ => None,
        }
    }

    /// The inverse of [`DocRetention::from_hours`].
    pub(crate) fn hours(self) -> u64 {
        match self {
            DocRetention::SessionEnd => 0,
            DocRetention::Hours(h) => h,
        }
    }
}

/// Why a `doc_upload` or `doc_download` got no ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocRefused {
    /// Larger than `docs_max_bytes`.
    TooLarge,
    /// The session's documents would pass `docs_max_session_bytes`.
    Quota,
    /// No such document in this session instance (never shared, or deleted).
    NotFound,
    /// The id is another participant's document, or the same one declared otherwise.
    Forbidden,
}

impl DocRefused {
    pub(crate) fn code(self) -> ErrorCode {
        match self {
            DocRefused::TooLarge => ErrorCode::DocTooLarge,
            DocRefused::Quota => ErrorCode::DocQuota,
            DocRefused::NotFound => ErrorCode::NotFound,
            DocRefused::Forbidden => ErrorCode::Forbidden,
        }
    }
}

/// The documents of every live session instance.
pub(crate) struct DocStore {
    root: PathBuf,
    limits: DocLimits,
    clock: Clock,
    instances: Mutex<HashMap<String, Arc<Instance>>>,
}

impl std::fmt::Debug for DocStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("root", &self.root)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One session instance's documents.
struct Instance {
    dir: PathBuf,
    /// Read by every chunk write and read, written by every deletion (see the module doc).
    io: RwLock<()>,
    docs: Mutex<HashMap<DocId, Doc>>,
}

/// A document as the server knows it: never its name, type or key.
#[derive(Debug, Clone)]
struct Doc {
    size: u64,
    chunks: u32,
    uploader: ParticipantId,
    /// Unix seconds of the store's clock: when its retention runs out (its upload was first
    /// accepted, plus its session's retention).
    expires_at: u64,
}

/// A ticket granted by [`DocStore::upload`].
#[derive(Debug)]
pub(crate) struct Granted {
    pub(crate) claims: DocClaims,
    /// False when the uploader asked again for a document it had already declared (a new
    /// ticket, no new audit row, nothing charged twice).
    pub(crate) new: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here can be left half-done by a panic: a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DocStore {
    /// Opens the store at `root` (created, mode 0700) and deletes whatever an earlier process
    /// left there: its sessions ended with it. Returns the store and how many document
    /// folders were deleted.
    pub(crate) fn open(
        root: &Path,
        limits: DocLimits,
        clock: Clock,
    ) -> std::io::Result<(Self, usize)> {
        std::fs::create_dir_all(root)?;
        restrict_dir(root);
        let mut removed = 0;
        for entry in std::fs::read_dir(root)? {
            let path = entry?.path();
            removed += count_docs(&path);
            remove_any(&path)?;
        }
        let store = Self {
            root: root.to_owned(),
            limits,
            clock,
            instances: Mutex::new(HashMap::new()),
        };
        Ok((store, removed))
    }

    /// The limits the store was opened with.
    pub(crate) fn limits(&self) -> &DocLimits {
        &self.limits
    }

    fn claims(
        &self,
        session: &SessionId,
        instance: &str,
        pid: &ParticipantId,
        doc_id: &DocId,
        op: DocOp,
        doc: &Doc,
    ) -> DocClaims {
        DocClaims {
            kind: TokenKind::Doc,
            session: session.clone(),
            instance: instance.to_owned(),
            pid: pid.clone(),
            doc_id: doc_id.clone(),
            op,
            size: doc.size,
            chunks: doc.chunks,
            exp: self.clock.now().saturating_add(self.limits.ticket_ttl_secs),
            // Cluster mode names the node when the ticket is minted ([`mint_ticket`]).
            node: None,
        }
    }

    /// Notes a document an admitted participant is about to upload, within the limits, and
    /// grants it an `up` ticket. `chunks` has been checked against `size` by the caller. A new
    /// document is kept `retention_secs` (its session's, [`DocLimits::retention_secs`]).
    #[allow(clippy::too_many_arguments)] // the ids that place a document, its shape, its lifetime
    pub(crate) fn upload(
        &self,
        session: &SessionId,
        instance: &str,
        pid: &ParticipantId,
        doc_id: &DocId,
        size: u64,
        chunks: u32,
        retention_secs: u64,
    ) -> Result<Granted, DocRefused> {
        if size > self.limits.max_bytes || self.limits.max_bytes == 0 {
            return Err(DocRefused::TooLarge);
        }
        let inst = {
            let mut all = lock(&self.instances);
            all.entry(instance.to_owned())
                .or_insert_with(|| {
                    Arc::new(Instance {
                        dir: self.root.join(session.as_str()).join(instance),
                        io: RwLock::new(()),
                        docs: Mutex::new(HashMap::new()),
                    })
                })
                .clone()
        };
        let mut docs = lock(&inst.docs);
        if let Some(doc) = docs.get(doc_id) {
            if doc.uploader != *pid || doc.size != size || doc.chunks != chunks {
                return Err(DocRefused::Forbidden);
            }
            let claims = self.claims(session, instance, pid, doc_id, DocOp::Up, doc);
            return Ok(Granted { claims, new: false });
        }
        let held: u64 = docs.values().map(|d| d.size).sum();
        if held.saturating_add(size) > self.limits.max_session_bytes {
            return Err(DocRefused::Quota);
        }
        let doc = Doc {
            size,
            chunks,
            uploader: pid.clone(),
            expires_at: self.clock.now().saturating_add(retention_secs),
        };
        let claims = self.claims(session, instance, pid, doc_id, DocOp::Up, &doc);
        docs.insert(doc_id.clone(), doc);
        Ok(Granted { claims, new: true })
    }

    /// A `down` ticket for a document of this instance.
    pub(crate) fn download(
        &self,
        session: &SessionId,
        instance: &str,
        pid: &ParticipantId,
        doc_id: &DocId,
    ) -> Result<DocClaims, DocRefused> {
        let inst = lock(&self.instances)
            .get(instance)
            .cloned()
            .ok_or(DocRefused::NotFound)?;
        let docs = lock(&inst.docs);
        let doc = docs.get(doc_id).ok_or(DocRefused::NotFound)?;
        Ok(self.claims(session, instance, pid, doc_id, DocOp::Down, doc))
    }

    /// The instance a ticket names, if it is live and still lists the ticket's document as
    /// the ticket describes it.
    fn live(&self, t: &DocClaims) -> Option<Arc<Instance>> {
        let inst = lock(&self.instances).get(&t.instance).cloned()?;
        let listed = lock(&inst.docs)
            .get(&t.doc_id)
            .is_some_and(|d| d.size == t.size && d.chunks == t.chunks);
        listed.then_some(inst)
    }

    /// Stores chunk `index` of the ticket's document, once. Blocking.
    pub(crate) fn put_chunk(
        &self,
        t: &DocClaims,
        index: u32,
        body: &[u8],
    ) -> Result<(), ChunkRefused> {
        let inst = self.live(t).ok_or(ChunkRefused::DocNotFound)?;
        let _io = inst.io.read().unwrap_or_else(PoisonError::into_inner);
        // Listed again under the lock: a deletion between the check and the lock wins.
        if !lock(&inst.docs).contains_key(&t.doc_id) {
            return Err(ChunkRefused::DocNotFound);
        }
        let dir = inst.dir.join(t.doc_id.as_str());
        let target = dir.join(index.to_string());
        if target.exists() {
            return Err(ChunkRefused::Exists);
        }
        create_private_dirs(&self.root, &dir).map_err(ChunkRefused::Io)?;
        let tmp = dir.join(format!(".{index}.{}", crate::token::random_id()));
        let written = write_new(&tmp, body).and_then(|()| std::fs::hard_link(&tmp, &target));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(ChunkRefused::Exists),
            Err(e) => Err(ChunkRefused::Io(e)),
        }
    }

    /// Reads chunk `index` of the ticket's document. Blocking.
    pub(crate) fn get_chunk(&self, t: &DocClaims, index: u32) -> Result<Vec<u8>, ChunkRefused> {
        let inst = self.live(t).ok_or(ChunkRefused::DocNotFound)?;
        let _io = inst.io.read().unwrap_or_else(PoisonError::into_inner);
        let path = inst.dir.join(t.doc_id.as_str()).join(index.to_string());
        match std::fs::read(path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ChunkRefused::ChunkNotFound),
            Err(e) => Err(ChunkRefused::Io(e)),
        }
    }

    /// Forgets an instance (its session ended); returns what must be deleted from disk, or
    /// `None` when it never held a document.
    pub(crate) fn close(&self, instance: &str) -> Option<Closed> {
        let inst = lock(&self.instances).remove(instance)?;
        Some(Closed {
            inst,
            root: self.root.clone(),
        })
    }

    /// Deletes every document whose retention has run out (by the store's clock), in every
    /// live instance. Returns how many. Blocking.
    pub(crate) fn sweep(&self) -> usize {
        let now = self.clock.now();
        let all: Vec<Arc<Instance>> = lock(&self.instances).values().cloned().collect();
        let mut deleted = 0;
        for inst in all {
            let expired: Vec<DocId> = lock(&inst.docs)
                .iter()
                .filter(|(_, d)| d.expires_at <= now)
                .map(|(id, _)| id.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let _io = inst.io.write().unwrap_or_else(PoisonError::into_inner);
            let mut docs = lock(&inst.docs);
            for id in expired {
                docs.remove(&id);
                if let Err(e) = remove_any(&inst.dir.join(id.as_str())) {
                    tracing::error!(error = %e, "cannot delete a document past its retention");
                }
                deleted += 1;
            }
        }
        deleted
    }
}

/// An ended instance's documents, to delete off the async runtime.
pub(crate) struct Closed {
    inst: Arc<Instance>,
    root: PathBuf,
}

impl Closed {
    /// Deletes the instance's folder (and its session's, when that is left empty). Waits for
    /// chunk writes in flight. Blocking.
    pub(crate) fn delete(self) {
        let _io = self.inst.io.write().unwrap_or_else(PoisonError::into_inner);
        lock(&self.inst.docs).clear();
        if let Err(e) = remove_any(&self.inst.dir) {
            tracing::error!(error = %e, "cannot delete an ended session's documents");
        }
        if let Some(session_dir) = self.inst.dir.parent()
            && session_dir != self.root
        {
            // Fails harmlessly while another instance of the session id holds documents.
            let _ = std::fs::remove_dir(session_dir);
        }
    }
}

/// Removes every document file of a session id (all its instances) from a store at `root`:
/// `confer session purge`. Returns how many chunk files were removed.
pub fn purge_session(root: &Path, session: &SessionId) -> std::io::Result<usize> {
    let dir = root.join(session.as_str());
    if !dir.exists() {
        return Ok(0);
    }
    let files = count_files(&dir);
    remove_any(&dir)?;
    Ok(files)
}

/// Why a chunk was not read or written.
#[derive(Debug)]
pub(crate) enum ChunkRefused {
    /// The instance ended, or the document was deleted.
    DocNotFound,
    /// That chunk has not been written.
    ChunkNotFound,
    /// That chunk is written already.
    Exists,
    /// The disk failed.
    Io(std::io::Error),
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    let r = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn count_files(path: &Path) -> usize {
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| {
                let p = e.path();
                if p.is_dir() { count_files(&p) } else { 1 }
            })
            .sum(),
        Err(_) => 0,
    }
}

// Documents under `DATA_DIR/docs/<session>`: the folders two levels down.
fn count_docs(session_dir: &Path) -> usize {
    std::fs::read_dir(session_dir)
        .map(|instances| {
            instances
                .filter_map(Result::ok)
                .map(|i| {
                    std::fs::read_dir(i.path())
                        .map(Iterator::count)
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0)
}

// Every folder from the store's root down to `dir`, mode 0700 (whatever the umask).
fn create_private_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut d = dir;
    while d != root {
        restrict_dir(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    Ok(())
}

#[cfg(unix)]
fn restrict_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_dir(_: &Path) {}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

// ---------------------------------------------------------------------------------------------
// HTTP: the chunks.

/// `PUT` and `GET /docs/{doc_id}/{index}`.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/docs/{doc_id}/{index}", put(put_chunk).get(get_chunk))
        .with_state(state)
}

/// A refusal over HTTP: a status and a stable code, as JSON `{"code", "message"}`. Never
/// repeats what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpRefusal {
    TicketMissing,
    TicketInvalid,
    TicketExpired,
    TicketWrongKind,
    TicketWrongDoc,
    TicketWrongOp,
    BadRequest,
    BadIndex,
    DocNotFound,
    ChunkNotFound,
    ChunkExists,
    ChunkTooLarge,
    Internal,
    NodeUnavailable,
}

impl HttpRefusal {
    /// Every refusal, in documentation order.
    #[cfg(test)]
    pub(crate) const ALL: &'static [HttpRefusal] = &[
        HttpRefusal::TicketMissing,
        HttpRefusal::TicketInvalid,
        HttpRefusal::TicketExpired,
        HttpRefusal::TicketWrongKind,
        HttpRefusal::TicketWrongDoc,
        HttpRefusal::TicketWrongOp,
        HttpRefusal::BadRequest,
        HttpRefusal::BadIndex,
        HttpRefusal::DocNotFound,
        HttpRefusal::ChunkNotFound,
        HttpRefusal::ChunkExists,
        HttpRefusal::ChunkTooLarge,
        HttpRefusal::Internal,
        HttpRefusal::NodeUnavailable,
    ];

    pub(crate) fn status(self) -> StatusCode {
        match self {
            HttpRefusal::TicketMissing
            | HttpRefusal::TicketInvalid
            | HttpRefusal::TicketExpired => StatusCode::UNAUTHORIZED,
            HttpRefusal::TicketWrongKind
            | HttpRefusal::TicketWrongDoc
            | HttpRefusal::TicketWrongOp => StatusCode::FORBIDDEN,
            HttpRefusal::BadRequest | HttpRefusal::BadIndex => StatusCode::BAD_REQUEST,
            HttpRefusal::DocNotFound | HttpRefusal::ChunkNotFound => StatusCode::NOT_FOUND,
            HttpRefusal::ChunkExists => StatusCode::CONFLICT,
            HttpRefusal::ChunkTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpRefusal::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            HttpRefusal::NodeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            HttpRefusal::TicketMissing => "ticket_missing",
            HttpRefusal::TicketInvalid => "ticket_invalid",
            HttpRefusal::TicketExpired => "ticket_expired",
            HttpRefusal::TicketWrongKind => "ticket_wrong_kind",
            HttpRefusal::TicketWrongDoc => "ticket_wrong_doc",
            HttpRefusal::TicketWrongOp => "ticket_wrong_op",
            HttpRefusal::BadRequest => "bad_request",
            HttpRefusal::BadIndex => "bad_chunk_index",
            HttpRefusal::DocNotFound => "doc_not_found",
            HttpRefusal::ChunkNotFound => "chunk_not_found",
            HttpRefusal::ChunkExists => "chunk_exists",
            HttpRefusal::ChunkTooLarge => "chunk_too_large",
            HttpRefusal::Internal => "internal",
            HttpRefusal::NodeUnavailable => "doc_node_unavailable",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            HttpRefusal::TicketMissing => {
                "Send the document ticket as Authorization: Bearer <ticket>."
            }
            HttpRefusal::TicketInvalid => "The document ticket is not valid here.",
            HttpRefusal::TicketExpired => "The document ticket has expired; ask for a new one.",
            HttpRefusal::TicketWrongKind => "That token is not a document ticket.",
            HttpRefusal::TicketWrongDoc => "The document ticket is for another document.",
            HttpRefusal::TicketWrongOp => {
                "The document ticket does not allow this (upload or download)."
            }
            HttpRefusal::BadRequest => "The path must be /docs/<32 lowercase hex>/<chunk index>.",
            HttpRefusal::BadIndex => "The document has no chunk of that index.",
            HttpRefusal::DocNotFound => {
                "The document is gone: its session ended or its retention ran out."
            }
            HttpRefusal::ChunkNotFound => "That chunk has not been uploaded.",
            HttpRefusal::ChunkExists => {
                "That chunk has been uploaded already; chunks are never replaced."
            }
            HttpRefusal::ChunkTooLarge => "The chunk is larger than its sealed size can be.",
            HttpRefusal::Internal => "Something went wrong on the server; try again.",
            HttpRefusal::NodeUnavailable => {
                "The server that holds this document cannot be reached; try again. If its \
                 session moved to another server, the document is gone: share it again."
            }
        }
    }
}

impl IntoResponse for HttpRefusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code(), "message": self.message()});
        (
            self.status(),
            [
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<ChunkRefused> for HttpRefusal {
    fn from(r: ChunkRefused) -> Self {
        match r {
            ChunkRefused::DocNotFound => HttpRefusal::DocNotFound,
            ChunkRefused::ChunkNotFound => HttpRefusal::ChunkNotFound,
            ChunkRefused::Exists => HttpRefusal::ChunkExists,
            ChunkRefused::Io(e) => {
                tracing::error!(error = %e, "document store I/O failed");
                HttpRefusal::Internal
            }
        }
    }
}

/// A chunk request whose ticket passed [`authorise`]. (No `Debug`: it holds the ticket.)
struct Authorised<'h> {
    claims: DocClaims,
    index: u32,
    /// The ticket as sent (it verified, so it is base64url and dots).
    ticket: &'h str,
}

/// The ticket of a request for `(doc_id, index)` with `op`, checked: signature, kind, expiry,
/// document, operation, index. The path is parsed after the ticket, so a request without a
/// good ticket learns nothing about paths.
fn authorise<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
    doc_id: &str,
    index: &str,
    op: DocOp,
) -> Result<Authorised<'h>, HttpRefusal> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(HttpRefusal::TicketMissing)?
        .trim();
    let claims = state
        .tokens
        .verify_doc(bearer, state.docs.clock.now())
        .map_err(|e| match e {
            TicketError::Invalid => HttpRefusal::TicketInvalid,
            TicketError::Expired => HttpRefusal::TicketExpired,
            TicketError::WrongKind => HttpRefusal::TicketWrongKind,
        })?;
    let doc_id = DocId::new(doc_id).map_err(|_| HttpRefusal::BadRequest)?;
    // Canonical decimal only: one path per chunk.
    let index: u32 = index
        .parse()
        .ok()
        .filter(|i: &u32| i.to_string() == index)
        .ok_or(HttpRefusal::BadRequest)?;
    if claims.doc_id != doc_id {
        return Err(HttpRefusal::TicketWrongDoc);
    }
    if claims.op != op {
        return Err(HttpRefusal::TicketWrongOp);
    }
    if index >= claims.chunks || u64::from(claims.chunks) != doc_chunks(claims.size) {
        return Err(HttpRefusal::BadIndex);
    }
    Ok(Authorised {
        claims,
        index,
        ticket: bearer,
    })
}

/// Where an authorised request is served ([`relay::serve`]): here, or by the node its ticket
/// names. Only a valid proof from another node counts as relayed.
fn served_by<'a>(
    state: &AppState,
    headers: &HeaderMap,
    a: &'a Authorised<'_>,
    op: DocOp,
) -> relay::Serve<'a> {
    let this = state.cluster.as_ref().map(|c| c.node_id.as_str());
    let named = a.claims.node.as_deref();
    // The proof is checked only for a request that would go on; one served here needs none.
    let elsewhere = relay::serve(named, this, false) != relay::Serve::Here;
    let proven = elsewhere
        && headers
            .get(relay::RELAY_PROOF)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proof| {
                let msg = relay::proof_message(op, &a.claims.doc_id, a.index, a.ticket);
                state.tokens.check_node_mac(&msg, proof)
            });
    relay::serve(named, this, proven)
}

async fn put_chunk(
    State(state): State<Arc<AppState>>,
    UrlPath((doc_id, index)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match put_chunk_inner(state, &doc_id, &index, &headers, body).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn put_chunk_inner(
    state: Arc<AppState>,
    doc_id: &str,
    index: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpRefusal> {
    let a = authorise(&state, headers, doc_id, index, DocOp::Up)?;
    // `authorise` checked the index against the document's chunks.
    let limit =
        doc_chunk_max_body(a.claims.size, u64::from(a.index)).ok_or(HttpRefusal::BadIndex)?;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HttpRefusal::ChunkTooLarge);
    }
    // Read at most `limit` bytes; a longer body is refused before anything is written (or
    // passed on).
    let mut bytes =
        Vec::with_capacity(usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|_| HttpRefusal::BadRequest)?;
        if (bytes.len() + frame.len()) as u64 > limit {
            return Err(HttpRefusal::ChunkTooLarge);
        }
        bytes.extend_from_slice(&frame);
    }
    if let relay::Serve::There(node) = served_by(&state, headers, &a, DocOp::Up) {
        let passed = relay::Passed {
            op: DocOp::Up,
            claims: &a.claims,
            index: a.index,
            ticket: a.ticket,
            body: &bytes,
            chunk_max: limit,
        };
        return Ok(relay::pass_on(&state, node, &passed).await);
    }
    let (claims, index) = (a.claims, a.index);
    let docs = state.clone();
    tokio::task::spawn_blocking(move || docs.docs.put_chunk(&claims, index, &bytes))
        .await
        .map_err(|_| HttpRefusal::Internal)?
        .map_err(HttpRefusal::from)?;
    Ok((
        StatusCode::CREATED,
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response())
}

async fn get_chunk(
    State(state): State<Arc<AppState>>,
    UrlPath((doc_id, index)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match get_chunk_inner(state, &doc_id, &index, &headers).await {
        Ok(r) => r,
        Err(r) => r.into_response(),
    }
}

async fn get_chunk_inner(
    state: Arc<AppState>,
    doc_id: &str,
    index: &str,
    headers: &HeaderMap,
) -> Result<Response, HttpRefusal> {
    let a = authorise(&state, headers, doc_id, index, DocOp::Down)?;
    if let relay::Serve::There(node) = served_by(&state, headers, &a, DocOp::Down) {
        let passed = relay::Passed {
            op: DocOp::Down,
            claims: &a.claims,
            index: a.index,
            ticket: a.ticket,
            body: &[],
            // `authorise` checked the index against the document's chunks.
            chunk_max: doc_chunk_max_body(a.claims.size, u64::from(a.index))
                .ok_or(HttpRefusal::BadIndex)?,
        };
        return Ok(relay::pass_on(&state, node, &passed).await);
    }
    let (claims, index) = (a.claims, a.index);
    let docs = state.clone();
    let bytes = tokio::task::spawn_blocking(move || docs.docs.get_chunk(&claims, index))
        .await
        .map_err(|_| HttpRefusal::Internal)?
        .map_err(HttpRefusal::from)?;
    Ok((
        StatusCode::OK,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    const RET: u64 = 3600;

    fn limits() -> DocLimits {
        DocLimits {
            max_bytes: 200_000,
            max_session_bytes: 300_000,
            retention_secs: RET,
            max_retention_secs: 7200,
            ticket_ttl_secs: 600,
        }
    }

    fn store(tag: &str) -> (DocStore, Clock, PathBuf) {
        let root = std::env::temp_dir()
            .join(format!("confer-docs-{tag}-{}", crate::token::random_id()))
            .join("docs");
        let clock = Clock::manual(T0);
        let (s, _) = DocStore::open(&root, limits(), clock.clone()).unwrap();
        (s, clock, root)
    }

    fn ids() -> (SessionId, String, ParticipantId, ParticipantId) {
        (
            SessionId::new("s1").unwrap(),
            "0a".repeat(16),
            ParticipantId::new("pa").unwrap(),
            ParticipantId::new("pb").unwrap(),
        )
    }

    fn doc(n: u8) -> DocId {
        DocId::new(format!("{n:02x}").repeat(16)).unwrap()
    }

    #[test]
    fn limits_and_quota_are_checked_before_anything_is_noted() {
        let (s, _, root) = store("limits");
        let (sid, inst, a, b) = ids();
        assert_eq!(
            s.upload(&sid, &inst, &a, &doc(1), 200_001, 4, RET)
                .unwrap_err(),
            DocRefused::TooLarge
        );
        let g = s.upload(&sid, &inst, &a, &doc(1), 200_000, 4, RET).unwrap();
        assert!(g.new);
        assert_eq!((g.claims.op, g.claims.exp), (DocOp::Up, T0 + 600));
        // Asked again by its uploader with the same shape: a new ticket, nothing charged.
        assert!(
            !s.upload(&sid, &inst, &a, &doc(1), 200_000, 4, RET)
                .unwrap()
                .new
        );
        // Another participant, or another shape: refused.
        assert_eq!(
            s.upload(&sid, &inst, &b, &doc(1), 200_000, 4, RET)
                .unwrap_err(),
            DocRefused::Forbidden
        );
        assert_eq!(
            s.upload(&sid, &inst, &a, &doc(1), 10, 1, RET).unwrap_err(),
            DocRefused::Forbidden
        );
        assert_eq!(
            s.upload(&sid, &inst, &b, &doc(2), 100_001, 2, RET)
                .unwrap_err(),
            DocRefused::Quota
        );
        assert!(
            s.upload(&sid, &inst, &b, &doc(2), 100_000, 2, RET)
                .unwrap()
                .new
        );
        // Another instance has its own quota.
        assert!(
            s.upload(&sid, &"0b".repeat(16), &b, &doc(3), 200_000, 4, RET)
                .unwrap()
                .new
        );
        assert_eq!(
            s.download(&sid, &inst, &b, &doc(3)).unwrap_err(),
            DocRefused::NotFound
        );
        assert_eq!(
            s.download(&sid, &inst, &b, &doc(1)).unwrap().op,
            DocOp::Down
        );
        assert!(
            !root.join("s1").exists(),
            "noting a document writes nothing"
        );
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }

    #[test]
    fn a_chunk_is_written_once_and_deleted_with_its_instance() {
        let (s, _, root) = store("once");
        let (sid, inst, a, b) = ids();
        let up = s
            .upload(&sid, &inst, &a, &doc(1), 70_000, 2, RET)
            .unwrap()
            .claims;
        s.put_chunk(&up, 1, b"second").unwrap();
        assert!(matches!(
            s.put_chunk(&up, 1, b"other"),
            Err(ChunkRefused::Exists)
        ));
        let down = s.download(&sid, &inst, &b, &doc(1)).unwrap();
        assert_eq!(s.get_chunk(&down, 1).unwrap(), b"second");
        assert!(matches!(
            s.get_chunk(&down, 0),
            Err(ChunkRefused::ChunkNotFound)
        ));
        let dir = root.join("s1").join(&inst).join(doc(1).as_str());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["1"], "no temporary file is left");

        s.close(&inst).unwrap().delete();
        assert!(!root.join("s1").exists());
        assert!(matches!(
            s.put_chunk(&up, 0, b"late"),
            Err(ChunkRefused::DocNotFound)
        ));
        assert!(matches!(
            s.get_chunk(&down, 1),
            Err(ChunkRefused::DocNotFound)
        ));
        assert!(!root.join("s1").exists(), "nothing written after the end");
        assert!(s.close(&inst).is_none());
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }

    #[test]
    fn the_sweep_deletes_documents_past_retention_on_the_clock() {
        let (s, clock, root) = store("sweep");
        let (sid, inst, a, _) = ids();
        let first = s
            .upload(&sid, &inst, &a, &doc(1), 10, 1, RET)
            .unwrap()
            .claims;
        s.put_chunk(&first, 0, b"one").unwrap();
        clock.advance(1800);
        let second = s
            .upload(&sid, &inst, &a, &doc(2), 10, 1, RET)
            .unwrap()
            .claims;
        s.put_chunk(&second, 0, b"two").unwrap();
        clock.advance(1799);
        assert_eq!(s.sweep(), 0);
        clock.advance(1);
        assert_eq!(s.sweep(), 1);
        let base = root.join("s1").join(&inst);
        assert!(!base.join(doc(1).as_str()).exists());
        assert!(base.join(doc(2).as_str()).join("0").exists());
        // Its bytes no longer count against the session.
        assert!(s.upload(&sid, &inst, &a, &doc(3), 200_000, 4, RET).is_ok());
        clock.advance(1800);
        assert_eq!(s.sweep(), 1);
        assert!(!base.join(doc(2).as_str()).exists());
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }

    #[test]
    fn a_sessions_retention_is_its_choice_capped_by_the_maximum() {
        let l = limits();
        assert_eq!(l.retention_secs(None), 3600, "docs_retention_hours");
        assert_eq!(l.retention_secs(Some(DocRetention::Hours(1))), 3600);
        assert_eq!(l.retention_secs(Some(DocRetention::Hours(2))), 7200);
        assert_eq!(l.retention_secs(Some(DocRetention::SessionEnd)), 7200);
        let over = DocLimits {
            retention_secs: 10 * 3600,
            ..l
        };
        assert_eq!(
            over.retention_secs(None),
            7200,
            "the maximum caps the default"
        );
        assert_eq!(
            over.retention_secs(Some(DocRetention::Hours(u64::MAX))),
            7200
        );
        assert_eq!(
            DocRetention::from_hours(0, 2),
            Some(DocRetention::SessionEnd)
        );
        assert_eq!(DocRetention::from_hours(2, 2), Some(DocRetention::Hours(2)));
        assert_eq!(DocRetention::from_hours(3, 2), None);
        assert_eq!(DocRetention::SessionEnd.hours(), 0);
    }

    #[test]
    fn each_document_keeps_the_retention_it_was_shared_under() {
        let (s, clock, root) = store("per-doc");
        let (sid, inst, a, _) = ids();
        let short = s
            .upload(&sid, &inst, &a, &doc(1), 10, 1, 600)
            .unwrap()
            .claims;
        s.put_chunk(&short, 0, b"short").unwrap();
        let long = s
            .upload(&sid, &inst, &a, &doc(2), 10, 1, 7200)
            .unwrap()
            .claims;
        s.put_chunk(&long, 0, b"long").unwrap();
        clock.advance(600);
        assert_eq!(s.sweep(), 1);
        let base = root.join("s1").join(&inst);
        assert!(!base.join(doc(1).as_str()).exists());
        assert!(base.join(doc(2).as_str()).join("0").exists());
        clock.advance(6600);
        assert_eq!(s.sweep(), 1);
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }

    #[test]
    fn opening_deletes_what_an_earlier_process_left_and_purge_removes_one_session() {
        let (s, _, root) = store("open");
        let (sid, inst, a, _) = ids();
        let up = s
            .upload(&sid, &inst, &a, &doc(1), 10, 1, RET)
            .unwrap()
            .claims;
        s.put_chunk(&up, 0, b"left behind").unwrap();
        let other = SessionId::new("s2").unwrap();
        let up2 = s
            .upload(&other, &"0c".repeat(16), &a, &doc(2), 10, 1, RET)
            .unwrap()
            .claims;
        s.put_chunk(&up2, 0, b"kept").unwrap();
        assert_eq!(purge_session(&root, &sid).unwrap(), 1);
        assert!(!root.join("s1").exists());
        assert!(root.join("s2").exists());
        assert_eq!(purge_session(&root, &sid).unwrap(), 0);
        drop(s);
        let (_, removed) = DocStore::open(&root, limits(), Clock::manual(T0)).unwrap();
        assert_eq!(removed, 1);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(root.parent().unwrap());
    }

    #[test]
    fn every_refusal_has_a_distinct_code_and_is_documented() {
        const DOC: &str = include_str!("../../../docs/protocol/signalling.md");
        let mut codes: Vec<&str> = HttpRefusal::ALL.iter().map(|r| r.code()).collect();
        for r in HttpRefusal::ALL {
            let row = format!("| {} | `{}` |", r.status().as_u16(), r.code());
            assert!(DOC.contains(&row), "signalling.md lacks the row {row}");
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), HttpRefusal::ALL.len());
    }
}
