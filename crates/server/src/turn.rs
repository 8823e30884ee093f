//! TURN credentials for clients whose networks block direct UDP to the SFU.
//!
//! The server runs no TURN server: an operator runs coturn (or any TURN server that speaks
//! the "TURN REST API" convention) with a shared secret, and Confer hands each participant, in
//! its `welcome`, short-lived credentials derived from that secret:
//!
//! ```text
//! username   = "<expiry unix seconds>:<8 random hex>"      (no id: unlinkable across joins)
//! credential = base64(HMAC-SHA1(secret, username))
//! ```
//!
//! coturn (`use-auth-secret`, `static-auth-secret = <secret>`) recomputes the credential and
//! refuses it after the expiry. The secret never leaves the server and the TURN server, and
//! TURN sees only DTLS-SRTP packets carrying frames sealed end to end.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use confer_proto::IceServer;

/// The shortest credential lifetime handed out.
pub const MIN_TTL_SECS: u64 = 60;
/// The longest: a day, so that a participant who was removed cannot use the relay for long.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

/// The configured TURN servers and their secret.
pub struct Turn {
    urls: Vec<String>,
    key: hmac::Key,
    ttl: Duration,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("secret", &"[redacted]")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Why the TURN settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// URLs without a secret, or the reverse.
    #[error(
        "turn_urls and turn_secret_file go together: set both (see docs/operations.md#turn) or neither"
    )]
    Incomplete,
    /// A URL that is not `turn:` or `turns:`.
    #[error(
        "turn_urls entry {0:?} is not a turn: or turns: URL, e.g. \"turn:turn.example.org:3478\""
    )]
    BadUrl(String),
    /// The secret file could not be read or is empty.
    #[error("cannot read the TURN secret from {path}: {why}")]
    Secret {
        /// Which file.
        path: String,
        /// Why.
        why: String,
    },
}

impl Turn {
    /// From the config keys; `None` when TURN is not configured.
    pub fn from_config(
        urls: &[String],
        secret_file: &Path,
        ttl_secs: u64,
    ) -> Result<Option<Self>, TurnError> {
        let no_secret = secret_file.as_os_str().is_empty();
        match (urls.is_empty(), no_secret) {
            (true, true) => return Ok(None),
            (false, false) => {}
            _ => return Err(TurnError::Incomplete),
        }
        if let Some(bad) = urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return Err(TurnError::BadUrl(bad.clone()));
        }
        let secret = std::fs::read_to_string(secret_file).map_err(|e| TurnError::Secret {
            path: secret_file.display().to_string(),
            why: e.to_string(),
        })?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(TurnError::Secret {
                path: secret_file.display().to_string(),
                why: "the file is empty".into(),
            });
        }
        Ok(Some(Self::new(urls.to_vec(), secret.as_bytes(), ttl_secs)))
    }

    /// TURN servers with this shared secret; credentials last `ttl_secs`, clamped to
    /// [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
    pub fn new(urls: Vec<String>, secret: &[u8], ttl_secs: u64) -> Self {
        Self {
            urls,
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret),
            ttl: Duration::from_secs(ttl_secs.clamp(MIN_TTL_SECS, MAX_TTL_SECS)),
        }
    }

    /// Credentials valid from `now` for the configured lifetime.
    pub fn credentials(&self, now: SystemTime, nonce: [u8; 4]) -> IceServer {
        let expiry = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let username = format!("{expiry}:{}", hex::encode(nonce));
        IceServer {
            urls: self.urls.clone(),
            credential: self.credential(&username),
            username,
        }
    }

    fn credential(&self, username: &str) -> String {
        let tag = hmac::sign(&self.key, username.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 §3, test case 2: key "Jefe", data "what do ya want for nothing?".
        let t = Turn::new(vec![], b"Jefe", 60);
        let tag = base64::engine::general_purpose::STANDARD
            .decode(t.credential("what do ya want for nothing?"))
            .unwrap();
        assert_eq!(hex::encode(tag), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn credentials_expire_after_the_ttl_and_name_no_one() {
        let t = Turn::new(vec!["turn:127.0.0.1:3478".into()], b"s3cret", 600);
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = t.credentials(now, [1, 2, 3, 4]);
        assert_eq!(c.username, "1000600:01020304");
        assert!(!format!("{c:?}").contains(&c.credential), "Debug hides it");
        // Lifetimes are clamped to a minute .. a day.
        let long = Turn::new(vec![], b"s", 10 * 24 * 3600).credentials(now, [0; 4]);
        assert!(
            long.username
                .starts_with(&format!("{}:", 1_000_000 + MAX_TTL_SECS))
        );
        let short = Turn::new(vec![], b"s", 1).credentials(now, [0; 4]);
        assert!(
            short
                .username
                .starts_with(&format!("{}:", 1_000_000 + MIN_TTL_SECS))
        );
        assert_eq!(c.credential, t.credential("1000600:01020304"));
        assert_ne!(c.credential, t.credential("1000600:01020305"));
        assert_eq!(c.urls, vec!["turn:127.0.0.1:3478".to_string()]);
    }

    #[test]
    fn half_a_configuration_is_refused() {
        let none = Turn::from_config(&[], Path::new(""), 60).unwrap();
        assert!(none.is_none());
        assert!(matches!(
            Turn::from_config(&["turn:x:3478".into()], Path::new(""), 60),
            Err(TurnError::Incomplete)
        ));
        assert!(matches!(
            Turn::from_config(&["stun:x:3478".into()], Path::new("/nonexistent"), 60),
            Err(TurnError::BadUrl(_))
        ));
        assert!(matches!(
            Turn::from_config(&["turn:x:3478".into()], Path::new("/nonexistent"), 60),
            Err(TurnError::Secret { .. })
        ));
    }
}
