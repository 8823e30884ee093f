//! Tokens: HS256 JWTs signed with a secret kept in the data directory.
//!
//! Invite tokens are single use (their `jti` is spent when the holder joins); a participant
//! who joined gets a resume token bound to its participant id, replaced at every resume.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use confer_proto::{ParticipantId, Role, SessionId, Side};
use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Joins a session once.
    Invite,
    /// Comes back to a session after a dropped connection.
    Resume,
}

/// The claims of every Confer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The session.
    pub session: SessionId,
    /// The holder's role.
    pub role: Role,
    /// The holder's side (party and counsel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Unique token id (single use for invites).
    pub jti: String,
    /// Invite or resume.
    pub kind: TokenKind,
    /// Resume tokens: the participant they resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<ParticipantId>,
}

/// A token that passed [`Tokens::verify`], by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// An invite: joins the session as a new participant (once).
    Invite(Claims),
    /// A resume token: comes back as this participant.
    Resume {
        /// Its claims.
        claims: Claims,
        /// The participant it resumes.
        pid: ParticipantId,
    },
}

/// Why a token was refused. All of these reach the client as `unauthorized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, bad encoding, or wrong algorithm.
    #[error("invalid token")]
    Invalid,
    /// Past its `exp`.
    #[error("expired token")]
    Expired,
    /// An invite already used, or a resume token superseded.
    #[error("token already used")]
    Used,
    /// Role and side do not fit (party and counsel need a side; others have none).
    #[error("role and side do not fit")]
    BadRole,
}

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or creating the key file failed.
    #[error("cannot read or create the signing key {path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold at least 32 bytes of hex.
    #[error("the signing key {path} must hold at least 64 hex characters (32 bytes)")]
    Malformed {
        /// Which file.
        path: String,
    },
}

/// Mints and checks tokens; remembers spent invites.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Spent invite ids, with their expiry so the set can be pruned.
    spent: DashMap<String, u64>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("key", &"[redacted]")
            .field("spent", &self.spent.len())
            .finish()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 16 random bytes as 32 lowercase hex characters.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    // The OS RNG failing is unrecoverable for a server that mints secrets.
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    hex::encode(b)
}

impl Tokens {
    /// From a raw secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            spent: DashMap::new(),
        }
    }

    /// Loads the secret from `path`, creating a fresh random one (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .expect("the operating system's random number generator failed");
            write_private(path, &hex::encode(secret)).map_err(io)?;
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let secret = hex::decode(text.trim())
            .ok()
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| KeyError::Malformed {
                path: path.display().to_string(),
            })?;
        Ok(Self::new(&secret))
    }

    /// Mints a token.
    pub fn mint(&self, claims: &Claims) -> String {
        // HS256 over serde-serializable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 encoding of plain claims")
    }

    /// Mints an invite token.
    pub fn invite(
        &self,
        session: &SessionId,
        role: Role,
        side: Option<Side>,
        ttl_secs: u64,
    ) -> (String, Claims) {
        let claims = Claims {
            session: session.clone(),
            role,
            side,
            exp: unix_now() + ttl_secs,
            jti: random_id(),
            kind: TokenKind::Invite,
            pid: None,
        };
        (self.mint(&claims), claims)
    }

    /// Checks a token of either kind: its algorithm (HS256 only: `none`, the other HMAC sizes
    /// and every public-key algorithm are refused), signature, expiry (no leeway) and the
    /// role/side fit, and that its kind and participant agree (a resume token names one, an
    /// invite none). Does not spend it.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let c = data.claims;
        if c.role.needs_side() != c.side.is_some() {
            return Err(TokenError::BadRole);
        }
        match (c.kind, c.pid.clone()) {
            (TokenKind::Invite, None) => Ok(Verified::Invite(c)),
            (TokenKind::Resume, Some(pid)) => Ok(Verified::Resume { claims: c, pid }),
            _ => Err(TokenError::Invalid),
        }
    }

    /// An invite token, checked as by [`verify`](Self::verify). A resume token is refused
    /// (`Invalid`): it can never join anyone anew.
    pub fn verify_invite(&self, token: &str) -> Result<Claims, TokenError> {
        match self.verify(token)? {
            Verified::Invite(c) => Ok(c),
            Verified::Resume { .. } => Err(TokenError::Invalid),
        }
    }

    /// A resume token, checked as by [`verify`](Self::verify), and the participant it resumes.
    /// An invite is refused (`Invalid`): it can never take over a participant.
    pub fn verify_resume(&self, token: &str) -> Result<(Claims, ParticipantId), TokenError> {
        match self.verify(token)? {
            Verified::Resume { claims, pid } => Ok((claims, pid)),
            Verified::Invite(_) => Err(TokenError::Invalid),
        }
    }

    /// Reserves an invite's `jti`; `Err(Used)` if it was spent or is being used right now.
    pub fn reserve(&self, claims: &Claims) -> Result<(), TokenError> {
        self.prune();
        match self.spent.entry(claims.jti.clone()) {
            dashmap::Entry::Occupied(_) => Err(TokenError::Used),
            dashmap::Entry::Vacant(v) => {
                v.insert(claims.exp);
                Ok(())
            }
        }
    }

    /// Gives a reservation back (the join failed for a reason the holder can fix).
    pub fn release(&self, claims: &Claims) {
        self.spent.remove(&claims.jti);
    }

    fn prune(&self) {
        // Expired tokens fail validation anyway; forget them so the set stays small.
        if self.spent.len() > 1024 {
            let now = unix_now();
            // A margin past expiry: validation accepts `exp == now`.
            self.spent.retain(|_, exp| *exp + 60 > now);
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid() -> SessionId {
        SessionId::new("s1").unwrap()
    }

    #[test]
    fn mint_verify_and_spend_once() {
        let t = Tokens::new(&[7; 32]);
        let (tok, claims) = t.invite(&sid(), Role::Party, Some(Side::A), 60);
        let c = t.verify_invite(&tok).unwrap();
        assert_eq!(c, claims);
        t.reserve(&c).unwrap();
        assert_eq!(t.reserve(&c), Err(TokenError::Used));
        t.release(&c);
        t.reserve(&c).unwrap();
    }

    #[test]
    fn wrong_key_expired_and_bad_role_are_refused() {
        let t = Tokens::new(&[7; 32]);
        let other = Tokens::new(&[8; 32]);
        let (tok, _) = other.invite(&sid(), Role::Mediator, None, 60);
        assert_eq!(t.verify(&tok), Err(TokenError::Invalid));
        let mut c = t.invite(&sid(), Role::Mediator, None, 60).1;
        c.exp = unix_now() - 1;
        assert_eq!(t.verify(&t.mint(&c)), Err(TokenError::Expired));
        c.exp = unix_now() + 60;
        c.role = Role::Party;
        assert_eq!(t.verify(&t.mint(&c)), Err(TokenError::BadRole));
        assert_eq!(t.verify("not.a.token"), Err(TokenError::Invalid));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("confer-key-{}", random_id()));
        let path = dir.join("signing.key");
        let a = Tokens::load_or_create(&path).unwrap();
        let b = Tokens::load_or_create(&path).unwrap();
        let (tok, _) = a.invite(&sid(), Role::Mediator, None, 60);
        assert!(b.verify(&tok).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
