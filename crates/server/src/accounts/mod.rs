//! Mediator and co-mediator accounts: who may log in to the console and start sessions.
//! Parties never have one; they keep single-use invites.
//!
//! `DATA_DIR/accounts.db` is a SQLite database (WAL, `synchronous = FULL`, mode 0600):
//!
//! | table | a row | secrets, and how they are kept |
//! |---|---|---|
//! | `users` | name, role, created, enrolled, disabled | the password as an argon2id PHC string (salted, m=19 MiB, t=2, p=1); the TOTP secret (20 bytes, in clear: the server must compute codes) and the last TOTP step accepted |
//! | `enrolments` | one open enrolment link per user, its expiry | the link's token as SHA-256; the TOTP secret it offers |
//! | `recovery_codes` | a user's unused recovery codes | SHA-256 of (user id, code); a code is deleted when used |
//! | `login_sessions` | a logged-in browser: its user, creation, expiry | the cookie's value as SHA-256 |
//!
//! An account is made by `confer user add` (or `confer serve --dev` for a first mediator): it
//! gets an enrolment link, valid `enrolment_ttl_secs`, with which its person sets a password and
//! a TOTP authenticator and receives ten recovery codes, shown once. `confer user reset-mfa`
//! removes the authenticator, the recovery codes and every login session and makes a new link;
//! `confer user disable` refuses the account's logins and ends its sessions.
//!
//! The account is an HTTP credential only: it never enters confer/1 or the audit log. A
//! session it starts is joined with an ordinary mediator invite, and E2EE keys stay per session.
//!
//! Every method takes `now` (Unix seconds) and blocks on SQLite; argon2 runs outside it
//! ([`hash_password`], [`verify_password`]), so call both from a blocking context.

pub mod lockout;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes (argon2 hashes any length; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The issuer authenticator apps show next to the account name.
pub const TOTP_ISSUER: &str = "Confer";
/// TOTP secret length in bytes (160 bits, RFC 4226's recommendation).
const TOTP_SECRET_BYTES: usize = 20;

/// What an account may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRole {
    /// Starts sessions (the console mints the session's mediator invite).
    Mediator,
    /// Logs in; joins sessions through the invite a mediator makes in the session.
    CoMediator,
}

impl AccountRole {
    /// `mediator` or `co_mediator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mediator => "mediator",
            Self::CoMediator => "co_mediator",
        }
    }
}

/// A role that is neither `mediator` nor `co_mediator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an account's role is mediator or co_mediator")]
pub struct RoleSyntax;

impl std::str::FromStr for AccountRole {
    type Err = RoleSyntax;

    fn from_str(s: &str) -> Result<Self, RoleSyntax> {
        match s {
            "mediator" => Ok(Self::Mediator),
            "co_mediator" | "co-mediator" => Ok(Self::CoMediator),
            _ => Err(RoleSyntax),
        }
    }
}

/// A login name: 1 to 64 characters of `a-z 0-9 . _ - @`, compared in lower case.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    /// The name in lower case, or `None` when it has other characters or a wrong length.
    pub fn new(s: &str) -> Option<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let ok = (1..=64).contains(&lower.len())
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        ok.then_some(Self(lower))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Name {
    // A login name may be a person's e-mail address: not in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Name([redacted])")
    }
}

/// A secret string (a token, a code, a password) whose `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself, for where it must go (a link printed once, a response body).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why an account operation failed. Messages never hold a password, code or token.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// SQLite failed.
    #[error("accounts database {path}: {source}")]
    Db {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// `add` of a name that exists.
    #[error("an account of that name exists already")]
    Exists,
    /// No account of that name.
    #[error("no account of that name; `confer user list` shows them")]
    NotFound,
}

/// An enrolment link's secret part, and when it expires.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The token (goes in the link's fragment, `#enrol=`).
    pub token: Secret,
    /// Unix seconds.
    pub expires_at: u64,
}

impl Enrolment {
    /// The console link that enrols with this token: `{base}/console#enrol={token}`.
    pub fn link(&self, base: &str) -> String {
        format!(
            "{}/console#enrol={}",
            base.trim_end_matches('/'),
            self.token.expose()
        )
    }
}

/// An open enrolment, as its link's holder sees it.
#[derive(Debug, Clone)]
pub struct PendingEnrolment {
    /// The account.
    pub name: Name,
    /// Its role.
    pub role: AccountRole,
    /// The TOTP secret offered (20 bytes).
    pub totp_secret: Vec<u8>,
}

impl PendingEnrolment {
    /// The secret in base32 (RFC 4648, no padding), as authenticator apps take it typed in.
    pub fn totp_base32(&self) -> Secret {
        Secret(totp_rs::Secret::from(self.totp_secret.clone()).to_base32())
    }

    /// `otpauth://totp/Confer:NAME?secret=…&issuer=Confer&algorithm=SHA1&digits=6&period=30`.
    pub fn otpauth_uri(&self) -> Secret {
        // Names hold only a-z 0-9 . _ - @, none of which needs escaping in a URI path but '@'.
        let label = self.name.as_str().replace('@', "%40");
        Secret(format!(
            "otpauth://totp/{TOTP_ISSUER}:{label}?secret={}&issuer={TOTP_ISSUER}&algorithm=SHA1&digits=6&period=30",
            self.totp_base32().expose()
        ))
    }
}

/// What a login checks, for one account.
#[derive(Clone)]
pub struct Credentials {
    /// Row id.
    pub user_id: i64,
    /// The account.
    pub name: Name,
    /// Its role.
    pub role: AccountRole,
    /// argon2id PHC string; `None` until enrolled.
    pub password_hash: Option<String>,
    /// Whether a TOTP authenticator is set.
    pub has_totp: bool,
    /// Refused logins.
    pub disabled: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("role", &self.role)
            .field("has_totp", &self.has_totp)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A logged-in browser's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    /// Row id.
    pub user_id: i64,
    /// The account.
    pub name: Name,
    /// Its role.
    pub role: AccountRole,
}

/// One line of `confer user list`: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// `mediator` or `co_mediator`.
    pub role: &'static str,
    /// `active`, `enrolling` (a link is open), `not enrolled` (its link expired) or `disabled`.
    pub state: &'static str,
    /// Whether a TOTP authenticator is set.
    pub totp: bool,
    /// Unused recovery codes.
    pub recovery_codes: u32,
    /// Unix seconds.
    pub created_at: i64,
}

/// The accounts database.
pub struct Accounts {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Opens (and creates) `accounts.db`, and deletes expired login sessions and enrolment links.
    pub fn open(path: &Path, now: u64) -> Result<Self, AccountError> {
        let db = |source| AccountError::Db {
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
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS users (
                 id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 role TEXT NOT NULL,
                 password_hash TEXT,
                 totp_secret BLOB,
                 totp_last_step INTEGER NOT NULL DEFAULT 0,
                 disabled INTEGER NOT NULL DEFAULT 0,
                 created_at INTEGER NOT NULL,
                 enrolled_at INTEGER
             );
             CREATE TABLE IF NOT EXISTS enrolments (
                 token_hash TEXT PRIMARY KEY,
                 user_id INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
                 expires_at INTEGER NOT NULL,
                 totp_secret BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS recovery_codes (
                 user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                 code_hash TEXT NOT NULL,
                 PRIMARY KEY (user_id, code_hash)
             );
             CREATE TABLE IF NOT EXISTS login_sessions (
                 id_hash TEXT PRIMARY KEY,
                 user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL
             );",
        )
        .map_err(db)?;
        let accounts = Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        };
        accounts.prune(now)?;
        Ok(accounts)
    }

    /// Deletes expired login sessions and enrolment links.
    pub fn prune(&self, now: u64) -> Result<(), AccountError> {
        let now = sql_time(now);
        let conn = self.lock();
        conn.execute(
            "DELETE FROM login_sessions WHERE expires_at <= ?1",
            params![now],
        )
        .map_err(|e| self.db(e))?;
        conn.execute(
            "DELETE FROM enrolments WHERE expires_at <= ?1",
            params![now],
        )
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Creates an account that is not enrolled yet, and its enrolment link.
    pub fn add(
        &self,
        name: &Name,
        role: AccountRole,
        now: u64,
        ttl_secs: u64,
    ) -> Result<Enrolment, AccountError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO users (name, role, created_at) VALUES (?1, ?2, ?3)",
                params![name.as_str(), role.as_str(), sql_time(now)],
            )
            .map_err(|e| self.db(e))?;
        if inserted == 0 {
            return Err(AccountError::Exists);
        }
        let user_id = tx.last_insert_rowid();
        let enrolment = open_enrolment(&tx, user_id, now, ttl_secs).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(enrolment)
    }

    /// Removes the account's authenticator, recovery codes and login sessions, and opens a new
    /// enrolment link (the previous one stops working). The password stays until the person
    /// enrols again, but cannot log in without the second factor it lost.
    pub fn reset_mfa(
        &self,
        name: &Name,
        now: u64,
        ttl_secs: u64,
    ) -> Result<Enrolment, AccountError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let user_id = user_id(&tx, name)
            .map_err(|e| self.db(e))?
            .ok_or(AccountError::NotFound)?;
        tx.execute(
            "UPDATE users SET totp_secret = NULL, totp_last_step = 0 WHERE id = ?1",
            params![user_id],
        )
        .map_err(|e| self.db(e))?;
        for table in ["recovery_codes", "login_sessions"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id = ?1"),
                params![user_id],
            )
            .map_err(|e| self.db(e))?;
        }
        let enrolment = open_enrolment(&tx, user_id, now, ttl_secs).map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(enrolment)
    }

    /// Refuses the account's logins from now on and ends its login sessions and open link.
    pub fn disable(&self, name: &Name) -> Result<(), AccountError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let user_id = user_id(&tx, name)
            .map_err(|e| self.db(e))?
            .ok_or(AccountError::NotFound)?;
        tx.execute(
            "UPDATE users SET disabled = 1 WHERE id = ?1",
            params![user_id],
        )
        .map_err(|e| self.db(e))?;
        for table in ["login_sessions", "enrolments"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id = ?1"),
                params![user_id],
            )
            .map_err(|e| self.db(e))?;
        }
        tx.commit().map_err(|e| self.db(e))
    }

    /// Every account, by name, without secrets.
    pub fn list(&self, now: u64) -> Result<Vec<UserInfo>, AccountError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT u.name, u.role, u.disabled, u.password_hash IS NOT NULL,
                        u.totp_secret IS NOT NULL, u.created_at,
                        (SELECT COUNT(*) FROM recovery_codes r WHERE r.user_id = u.id),
                        (SELECT COUNT(*) FROM enrolments e WHERE e.user_id = u.id AND e.expires_at > ?1)
                 FROM users u ORDER BY u.name",
            )
            .map_err(|e| self.db(e))?;
        let rows = stmt
            .query_map(params![sql_time(now)], |r| {
                let role: String = r.get(1)?;
                let disabled: bool = r.get(2)?;
                let has_password: bool = r.get(3)?;
                let totp: bool = r.get(4)?;
                let enrolling: i64 = r.get(7)?;
                let state = if disabled {
                    "disabled"
                } else if enrolling > 0 {
                    "enrolling"
                } else if has_password {
                    "active"
                } else {
                    "not enrolled"
                };
                Ok(UserInfo {
                    name: r.get(0)?,
                    role: role_str(&role),
                    state,
                    totp,
                    recovery_codes: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                    created_at: r.get(5)?,
                })
            })
            .map_err(|e| self.db(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db(e))
    }

    /// The open enrolment of this link's token, if it is valid at `now`.
    pub fn enrolment(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<PendingEnrolment>, AccountError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT u.name, u.role, e.totp_secret FROM enrolments e JOIN users u ON u.id = e.user_id
             WHERE e.token_hash = ?1 AND e.expires_at > ?2 AND u.disabled = 0",
            params![digest(token), sql_time(now)],
            |r| {
                let name: String = r.get(0)?;
                let role: String = r.get(1)?;
                Ok(PendingEnrolment {
                    name: Name(name),
                    role: parse_role(&role),
                    totp_secret: r.get(2)?,
                })
            },
        )
        .optional()
        .map_err(|e| self.db(e))
    }

    /// Completes the enrolment of `token`: sets the password (an argon2id hash from
    /// [`hash_password`]) and, with `totp_step` (the step of the code the person confirmed),
    /// the offered TOTP secret; replaces the recovery codes and ends every login session.
    /// Returns the ten new recovery codes, or `None` when the link is no longer valid.
    pub fn complete_enrolment(
        &self,
        token: &str,
        password_hash: &str,
        totp_step: Option<u64>,
        now: u64,
    ) -> Result<Option<Vec<Secret>>, AccountError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let found: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT e.user_id, e.totp_secret FROM enrolments e JOIN users u ON u.id = e.user_id
                 WHERE e.token_hash = ?1 AND e.expires_at > ?2 AND u.disabled = 0",
                params![digest(token), sql_time(now)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        let Some((user_id, secret)) = found else {
            return Ok(None);
        };
        let (secret, step) = match totp_step {
            Some(step) => (Some(secret), sql_time(step)),
            None => (None, 0),
        };
        tx.execute(
            "UPDATE users SET password_hash = ?2, totp_secret = ?3, totp_last_step = ?4,
                 enrolled_at = ?5 WHERE id = ?1",
            params![user_id, password_hash, secret, step, sql_time(now)],
        )
        .map_err(|e| self.db(e))?;
        for table in ["enrolments", "recovery_codes", "login_sessions"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id = ?1"),
                params![user_id],
            )
            .map_err(|e| self.db(e))?;
        }
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let code = recovery_code();
            tx.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
                params![user_id, recovery_hash(user_id, code.expose())],
            )
            .map_err(|e| self.db(e))?;
            codes.push(code);
        }
        tx.commit().map_err(|e| self.db(e))?;
        Ok(Some(codes))
    }

    /// What a login of `name` checks.
    pub fn credentials(&self, name: &Name) -> Result<Option<Credentials>, AccountError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT id, role, password_hash, totp_secret IS NOT NULL, disabled FROM users
             WHERE name = ?1",
            params![name.as_str()],
            |r| {
                let role: String = r.get(1)?;
                Ok(Credentials {
                    user_id: r.get(0)?,
                    name: name.clone(),
                    role: parse_role(&role),
                    password_hash: r.get(2)?,
                    has_totp: r.get(3)?,
                    disabled: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(|e| self.db(e))
    }

    /// Whether `code` is the account's TOTP code at `now` (one step of skew either way) for a
    /// step later than the last one accepted; the step is then recorded, so a code works once.
    pub fn accept_totp(&self, user_id: i64, code: &str, now: u64) -> Result<bool, AccountError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.db(e))?;
        let row: Option<(Option<Vec<u8>>, i64)> = tx
            .query_row(
                "SELECT totp_secret, totp_last_step FROM users WHERE id = ?1",
                params![user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        let Some((Some(secret), last)) = row else {
            return Ok(false);
        };
        let Some(step) = totp_step(&secret, code, now) else {
            return Ok(false);
        };
        if sql_time(step) <= last {
            return Ok(false);
        }
        tx.execute(
            "UPDATE users SET totp_last_step = ?2 WHERE id = ?1",
            params![user_id, sql_time(step)],
        )
        .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(true)
    }

    /// Whether `code` is one of the account's unused recovery codes; it is used up if so.
    pub fn accept_recovery_code(&self, user_id: i64, code: &str) -> Result<bool, AccountError> {
        let removed = self
            .lock()
            .execute(
                "DELETE FROM recovery_codes WHERE user_id = ?1 AND code_hash = ?2",
                params![user_id, recovery_hash(user_id, code)],
            )
            .map_err(|e| self.db(e))?;
        Ok(removed == 1)
    }

    /// Unused recovery codes of the account.
    pub fn recovery_codes_left(&self, user_id: i64) -> Result<u32, AccountError> {
        self.lock()
            .query_row(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1",
                params![user_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u32::try_from(n).unwrap_or(0))
            .map_err(|e| self.db(e))
    }

    /// Starts a login session; returns the cookie's value (stored only as its SHA-256).
    pub fn start_session(
        &self,
        user_id: i64,
        now: u64,
        ttl_secs: u64,
    ) -> Result<Secret, AccountError> {
        let id = random_token();
        self.lock()
            .execute(
                "INSERT INTO login_sessions (id_hash, user_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    digest(id.expose()),
                    user_id,
                    sql_time(now),
                    sql_time(now.saturating_add(ttl_secs))
                ],
            )
            .map_err(|e| self.db(e))?;
        Ok(id)
    }

    /// The account of a login session cookie, while the session is unexpired and the account
    /// enabled.
    pub fn session(&self, cookie: &str, now: u64) -> Result<Option<SessionUser>, AccountError> {
        self.lock()
            .query_row(
                "SELECT u.id, u.name, u.role FROM login_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2 AND u.disabled = 0",
                params![digest(cookie), sql_time(now)],
                |r| {
                    let name: String = r.get(1)?;
                    let role: String = r.get(2)?;
                    Ok(SessionUser {
                        user_id: r.get(0)?,
                        name: Name(name),
                        role: parse_role(&role),
                    })
                },
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// Ends a login session (log out).
    pub fn end_session(&self, cookie: &str) -> Result<(), AccountError> {
        self.lock()
            .execute(
                "DELETE FROM login_sessions WHERE id_hash = ?1",
                params![digest(cookie)],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // Transactions roll back on drop, so a panic while holding the lock leaves SQLite
        // consistent: a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn db(&self, source: rusqlite::Error) -> AccountError {
        AccountError::Db {
            path: self.path.clone(),
            source,
        }
    }
}

/// The argon2id hash (PHC string, fresh salt, the crate's default parameters: m=19 MiB, t=2,
/// p=1, OWASP's minimum) of a password.
pub fn hash_password(password: &str) -> String {
    // Hashing a bounded password with valid default parameters and the OS RNG cannot fail.
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2id with default parameters")
        .to_string()
}

/// Whether `password` matches `hash` (constant time in the password).
pub fn verify_password(password: &str, hash: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash of no password at all, verified against when a login names no account (or one not
/// enrolled), so that the answer takes as long as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token().0))
}

/// The step (`unix time / 30`) whose SHA-1, six-digit code `code` is, within one step of `now`.
pub fn totp_step(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    totp(secret)?.check(&code, now)
}

/// The TOTP code of `secret` at `time` (what an authenticator app shows).
pub fn totp_code(secret: &[u8], time: u64) -> Option<String> {
    Some(totp(secret)?.generate(time).to_string())
}

/// The TOTP code at `time` of a secret given in base32 (as the enrolment page shows it).
pub fn totp_code_base32(secret: &str, time: u64) -> Option<String> {
    let bytes = totp_rs::Secret::try_from_base32(secret).ok()?;
    totp_code(bytes.as_bytes(), time)
}

fn totp(secret: &[u8]) -> Option<totp_rs::Totp> {
    // SHA-1, 6 digits, 30 s, one step of skew: the defaults authenticator apps assume.
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> Secret {
    let mut b = [0u8; 32];
    // The OS RNG failing is unrecoverable for a server that mints secrets.
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    Secret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// SHA-256 in hex: how tokens and cookies are stored.
pub fn digest(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A recovery code: 80 random bits as 16 base32 characters in four groups, `abcd-efgh-…`.
fn recovery_code() -> Secret {
    let mut b = [0u8; 10];
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    let text = totp_rs::Secret::from(b.to_vec())
        .to_base32()
        .to_ascii_lowercase();
    let groups: Vec<&str> = (0..4).map(|i| &text[i * 4..i * 4 + 4]).collect();
    Secret(groups.join("-"))
}

/// A recovery code as stored: typed with or without dashes and spaces, in any case.
fn recovery_hash(user_id: i64, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    digest(&format!("confer recovery v1:{user_id}:{normal}"))
}

fn open_enrolment(
    tx: &rusqlite::Transaction<'_>,
    user_id: i64,
    now: u64,
    ttl_secs: u64,
) -> rusqlite::Result<Enrolment> {
    let token = random_token();
    let mut secret = vec![0u8; TOTP_SECRET_BYTES];
    getrandom::fill(&mut secret).expect("the operating system's random number generator failed");
    let expires_at = now.saturating_add(ttl_secs);
    tx.execute(
        "DELETE FROM enrolments WHERE user_id = ?1",
        params![user_id],
    )?;
    tx.execute(
        "INSERT INTO enrolments (token_hash, user_id, expires_at, totp_secret) VALUES (?1, ?2, ?3, ?4)",
        params![digest(token.expose()), user_id, sql_time(expires_at), secret],
    )?;
    Ok(Enrolment { token, expires_at })
}

fn user_id(tx: &rusqlite::Transaction<'_>, name: &Name) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT id FROM users WHERE name = ?1",
        params![name.as_str()],
        |r| r.get(0),
    )
    .optional()
}

fn parse_role(s: &str) -> AccountRole {
    // Only `add` writes roles, from the enum; anything else is read as the lesser role.
    s.parse().unwrap_or(AccountRole::CoMediator)
}

fn role_str(s: &str) -> &'static str {
    parse_role(s).as_str()
}

fn sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn open() -> (Accounts, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("confer-accounts-{}", crate::token::random_id()));
        (Accounts::open(&dir.join("accounts.db"), T0).unwrap(), dir)
    }

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn totp_is_rfc_6238_sha1_six_digits() {
        // RFC 6238 appendix B, SHA-1, the last six of the eight digits.
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(totp_code(secret, time).as_deref(), Some(code), "{time}");
        }
        let b32 = totp_rs::Secret::from(secret.to_vec()).to_base32();
        assert_eq!(totp_code_base32(&b32, 59).as_deref(), Some("287082"));
        assert_eq!(totp_step(secret, "287 082", 59), Some(1));
        assert_eq!(totp_step(secret, "287082", 59 + 60), None);
    }

    #[test]
    fn names_are_plain_and_lower_case() {
        assert_eq!(
            name(" Ann.Lee@Example.org ").as_str(),
            "ann.lee@example.org"
        );
        for bad in ["", "a b", "ann/1", "ä", &"a".repeat(65)] {
            assert!(Name::new(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn enrolment_sets_password_and_totp_and_the_link_works_once() {
        let (a, dir) = open();
        let e = a.add(&name("ann"), AccountRole::Mediator, T0, 60).unwrap();
        assert!(matches!(
            a.add(&name("ANN"), AccountRole::Mediator, T0, 60),
            Err(AccountError::Exists)
        ));
        let p = a.enrolment(e.token.expose(), T0).unwrap().unwrap();
        assert_eq!(p.role, AccountRole::Mediator);
        assert!(
            p.otpauth_uri()
                .expose()
                .starts_with("otpauth://totp/Confer:ann?secret=")
        );
        let code = totp_code(&p.totp_secret, T0).unwrap();
        let step = totp_step(&p.totp_secret, &code, T0).unwrap();
        let hash = hash_password("a long enough password");
        let codes = a
            .complete_enrolment(e.token.expose(), &hash, Some(step), T0)
            .unwrap()
            .unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(a.enrolment(e.token.expose(), T0).unwrap().is_none());
        assert!(
            a.complete_enrolment(e.token.expose(), &hash, Some(step), T0)
                .unwrap()
                .is_none()
        );
        let c = a.credentials(&name("ann")).unwrap().unwrap();
        assert!(c.has_totp && !c.disabled);
        assert!(verify_password(
            "a long enough password",
            c.password_hash.as_deref().unwrap()
        ));
        // The confirmed code's step is spent; the next step's code works once.
        assert!(!a.accept_totp(c.user_id, &code, T0).unwrap());
        let next = totp_code(&p.totp_secret, T0 + 30).unwrap();
        assert!(a.accept_totp(c.user_id, &next, T0 + 30).unwrap());
        assert!(!a.accept_totp(c.user_id, &next, T0 + 30).unwrap());
        // Recovery codes: any case, with or without dashes, once.
        let rc = codes[3].expose().to_ascii_uppercase().replace('-', " ");
        assert!(a.accept_recovery_code(c.user_id, &rc).unwrap());
        assert!(
            !a.accept_recovery_code(c.user_id, codes[3].expose())
                .unwrap()
        );
        assert_eq!(a.recovery_codes_left(c.user_id).unwrap(), 9);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn links_expire_sessions_expire_and_disable_ends_them() {
        let (a, dir) = open();
        let e = a
            .add(&name("bob"), AccountRole::CoMediator, T0, 60)
            .unwrap();
        assert!(a.enrolment(e.token.expose(), T0 + 60).unwrap().is_none());
        let e = a.reset_mfa(&name("bob"), T0, 60).unwrap();
        a.complete_enrolment(
            e.token.expose(),
            &hash_password("x".repeat(12).as_str()),
            None,
            T0,
        )
        .unwrap()
        .unwrap();
        let c = a.credentials(&name("bob")).unwrap().unwrap();
        let s = a.start_session(c.user_id, T0, 100).unwrap();
        assert_eq!(
            a.session(s.expose(), T0 + 99).unwrap().map(|u| u.role),
            Some(AccountRole::CoMediator)
        );
        assert!(a.session(s.expose(), T0 + 100).unwrap().is_none());
        let s = a.start_session(c.user_id, T0, 100).unwrap();
        a.disable(&name("bob")).unwrap();
        assert!(a.session(s.expose(), T0).unwrap().is_none());
        let list = a.list(T0).unwrap();
        assert_eq!((list[0].name.as_str(), list[0].state), ("bob", "disabled"));
        assert!(matches!(
            a.disable(&name("nobody")),
            Err(AccountError::NotFound)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nothing_secret_is_stored_in_clear_but_the_totp_secret() {
        let (a, dir) = open();
        let e = a.add(&name("cat"), AccountRole::Mediator, T0, 60).unwrap();
        let codes = a
            .complete_enrolment(
                e.token.expose(),
                &hash_password("correct horse battery"),
                None,
                T0,
            )
            .unwrap()
            .unwrap();
        let c = a.credentials(&name("cat")).unwrap().unwrap();
        let s = a.start_session(c.user_id, T0, 100).unwrap();
        drop(a);
        let mut bytes = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            bytes.extend(std::fs::read(f.unwrap().path()).unwrap());
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("$argon2id$"));
        for secret in [e.token.expose(), s.expose(), "correct horse battery"]
            .into_iter()
            .chain(codes.iter().map(Secret::expose))
        {
            assert!(!text.contains(secret));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
