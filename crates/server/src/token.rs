//! Tokens: HS256 JWTs signed with a secret kept in the data directory.
//!
//! Invite tokens are single use (their `jti` is spent when the holder joins, and the spent ids
//! are kept on disk by [`crate::spent`]); a participant who joined gets a resume token bound to
//! its participant id, replaced at every resume.
//!
//! An invite minted inside a session (`create_invite`) names the session's *instance*, a random
//! id drawn when the session was created: it opens only that instance, never a later session
//! that reuses the id. An invite without an instance (`confer token create`, which can mint
//! before the session exists) opens whichever instance of its session is live, or, for a
//! mediator, creates one.
//!
//! A document ticket ([`DocClaims`], kind `doc`) is the third kind: minted by a session task
//! for an admitted participant's `doc_upload` or `doc_download`, it authorises the HTTP reads
//! or writes of one document's chunks for a few minutes. Its expiry is checked against the
//! server's [`crate::clock::Clock`], not inside the JWT library, so tests move time by hand.
//! It never passes [`Tokens::verify`] (it has no role), and invites and resume tokens never
//! pass [`Tokens::verify_doc`].

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use confer_proto::{DocId, DocOp, ParticipantId, Role, SessionId, Side};
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
    /// Reads or writes one document's chunks over HTTP ([`DocClaims`]); never says hello.
    Doc,
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

/// What is signed: the claims and, for invites minted inside a session, the `instance` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Signed {
    #[serde(flatten)]
    claims: Claims,
    /// The instance of the session the invite opens (32 hex characters). Absent: whichever
    /// instance is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
}

/// A token that passed [`Tokens::verify`], by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// An invite: joins the session as a new participant (once).
    Invite {
        /// Its claims.
        claims: Claims,
        /// The session instance it was minted in (`create_invite`); `None`: whichever is live.
        instance: Option<String>,
    },
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
    /// An invite minted in a session instance that is no longer live (it ended, or the server
    /// restarted): it never opens a later session that reuses the id.
    #[error("invite from an ended session")]
    EndedInstance,
    /// Role and side do not fit (party and counsel need a side; others have none).
    #[error("role and side do not fit")]
    BadRole,
}

/// The claims of a document ticket: who may do what with which document, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocClaims {
    /// Always [`TokenKind::Doc`].
    pub kind: TokenKind,
    /// The session.
    pub session: SessionId,
    /// The session's instance (the document lives and dies with it).
    pub instance: String,
    /// The participant the ticket was given to.
    pub pid: ParticipantId,
    /// The document.
    pub doc_id: DocId,
    /// Write (`up`) or read (`down`).
    pub op: DocOp,
    /// The document's size in bytes, as its sharer declared it.
    pub size: u64,
    /// Its number of chunks.
    pub chunks: u32,
    /// Expiry, Unix seconds of the server's clock: valid while `now < exp`.
    pub exp: u64,
    /// Cluster mode: the id of the node that holds the document (the node that owned the
    /// session when the ticket was minted). Another node relays the chunk request there.
    /// Absent on a server on its own, whose tickets are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Why a document ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Bad signature, encoding or algorithm, or not the claims of a ticket.
    #[error("invalid ticket")]
    Invalid,
    /// Past its `exp`.
    #[error("expired ticket")]
    Expired,
    /// A token of this server, of another kind (an invite or a resume token).
    #[error("not a document ticket")]
    WrongKind,
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

/// Mints and checks tokens. Which invites were spent is [`crate::spent`]'s business.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// HS256 and a required `exp`, whose value [`Tokens::verify_doc`] checks itself.
    doc_validation: Validation,
    /// Cluster mode: the key nodes prove to each other that a relayed connection comes from a
    /// node (derived from the signing secret every node of a cluster shares).
    node_key: [u8; 32],
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("key", &"[redacted]")
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
        let mut doc_validation = Validation::new(Algorithm::HS256);
        doc_validation.leeway = 0;
        doc_validation.set_required_spec_claims(&["exp"]);
        doc_validation.validate_exp = false;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, b"confer cluster node-to-node v1\0");
        sha2::Digest::update(&mut h, secret);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            doc_validation,
            node_key: sha2::Digest::finalize(h).into(),
        }
    }

    /// Cluster mode: a node's proof over `msg` (what another node relays with a connection),
    /// as hex. Only nodes holding the signing secret can make it.
    pub(crate) fn node_mac(&self, msg: &str) -> String {
        // The key has a fixed length and `msg` is framed by its length: no extension applies.
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, self.node_key);
        sha2::Digest::update(&mut h, (msg.len() as u64).to_be_bytes());
        sha2::Digest::update(&mut h, msg.as_bytes());
        hex::encode(sha2::Digest::finalize(h))
    }

    /// Whether `mac` is [`Tokens::node_mac`] of `msg` (compared in constant time).
    pub(crate) fn check_node_mac(&self, msg: &str, mac: &str) -> bool {
        let want = self.node_mac(msg);
        want.len() == mac.len()
            && want
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
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

    /// Mints a token (with no `instance` claim).
    pub fn mint(&self, claims: &Claims) -> String {
        self.mint_signed(&Signed {
            claims: claims.clone(),
            instance: None,
        })
    }

    fn mint_signed(&self, signed: &Signed) -> String {
        // HS256 over serde-serializable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), signed, &self.encoding)
            .expect("HS256 encoding of plain claims")
    }

    /// Mints an invite token for whichever instance of `session` is live when it is used.
    pub fn invite(
        &self,
        session: &SessionId,
        role: Role,
        side: Option<Side>,
        ttl_secs: u64,
    ) -> (String, Claims) {
        self.invite_for(session, None, role, side, ttl_secs)
    }

    /// Mints an invite token, bound to one instance of the session when `instance` is given.
    pub fn invite_for(
        &self,
        session: &SessionId,
        instance: Option<&str>,
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
        let token = self.mint_signed(&Signed {
            claims: claims.clone(),
            instance: instance.map(str::to_owned),
        });
        (token, claims)
    }

    /// Checks a token of either kind: its algorithm (HS256 only: `none`, the other HMAC sizes
    /// and every public-key algorithm are refused), signature, expiry (no leeway) and the
    /// role/side fit, and that its kind and participant agree (a resume token names one, an
    /// invite none). Does not spend it.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let data = jsonwebtoken::decode::<Signed>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let Signed {
            claims: c,
            instance,
        } = data.claims;
        if c.role.needs_side() != c.side.is_some() {
            return Err(TokenError::BadRole);
        }
        match (c.kind, c.pid.clone()) {
            (TokenKind::Invite, None) => Ok(Verified::Invite {
                claims: c,
                instance,
            }),
            // Only invites are bound to an instance.
            (TokenKind::Resume, Some(_)) if instance.is_some() => Err(TokenError::Invalid),
            (TokenKind::Resume, Some(pid)) => Ok(Verified::Resume { claims: c, pid }),
            _ => Err(TokenError::Invalid),
        }
    }

    /// Mints a document ticket.
    pub fn mint_doc(&self, claims: &DocClaims) -> String {
        // HS256 over serde-serializable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 encoding of plain claims")
    }

    /// Checks a document ticket: HS256 only, its signature, its kind (an invite or a resume
    /// token of this server is [`TicketError::WrongKind`]), its claims, and `now < exp` (`now`
    /// from the server's clock, no leeway).
    pub fn verify_doc(&self, token: &str, now: u64) -> Result<DocClaims, TicketError> {
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &self.doc_validation)
                .map_err(|_| TicketError::Invalid)?;
        let kind = data.claims.get("kind").and_then(serde_json::Value::as_str);
        if kind != Some("doc") {
            // Signed by this server: an invite or a resume token, or a kind it never mints.
            return Err(if kind.is_some() {
                TicketError::WrongKind
            } else {
                TicketError::Invalid
            });
        }
        let claims: DocClaims =
            serde_json::from_value(data.claims).map_err(|_| TicketError::Invalid)?;
        if claims.kind != TokenKind::Doc {
            return Err(TicketError::Invalid);
        }
        if now >= claims.exp {
            return Err(TicketError::Expired);
        }
        Ok(claims)
    }

    /// An invite token, checked as by [`verify`](Self::verify). A resume token is refused
    /// (`Invalid`): it can never join anyone anew.
    pub fn verify_invite(&self, token: &str) -> Result<Claims, TokenError> {
        match self.verify(token)? {
            Verified::Invite { claims, .. } => Ok(claims),
            Verified::Resume { .. } => Err(TokenError::Invalid),
        }
    }

    /// A resume token, checked as by [`verify`](Self::verify), and the participant it resumes.
    /// An invite is refused (`Invalid`): it can never take over a participant.
    pub fn verify_resume(&self, token: &str) -> Result<(Claims, ParticipantId), TokenError> {
        match self.verify(token)? {
            Verified::Resume { claims, pid } => Ok((claims, pid)),
            Verified::Invite { .. } => Err(TokenError::Invalid),
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
    fn mint_and_verify_with_and_without_an_instance() {
        let t = Tokens::new(&[7; 32]);
        let (tok, claims) = t.invite(&sid(), Role::Party, Some(Side::A), 60);
        assert_eq!(
            t.verify(&tok),
            Ok(Verified::Invite {
                claims,
                instance: None
            })
        );
        let (tok, claims) = t.invite_for(&sid(), Some("i1"), Role::Party, Some(Side::A), 60);
        assert_eq!(t.verify_invite(&tok), Ok(claims.clone()));
        assert_eq!(
            t.verify(&tok),
            Ok(Verified::Invite {
                claims,
                instance: Some("i1".into())
            })
        );
        // An instance cannot be added or changed under the signature.
        let [header, payload, sig] = tok.split('.').collect::<Vec<_>>()[..] else {
            panic!("three parts")
        };
        let text = String::from_utf8(unb64(payload)).unwrap();
        let edited = text.replace(r#""instance":"i1""#, r#""instance":"i2""#);
        assert_ne!(edited, text);
        let forged = format!("{header}.{}.{sig}", b64(edited.as_bytes()));
        assert_eq!(t.verify(&forged), Err(TokenError::Invalid));
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

    const SECRET: [u8; 32] = [7; 32];

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn unb64(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap()
    }

    /// A JWT with any header and payload, its signature an HMAC under `SECRET` (the server's
    /// own key): only what the test changes can make it fail.
    fn signed(
        header: &serde_json::Value,
        payload: &serde_json::Value,
        mac: hmac::Algorithm,
    ) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let tag = hmac::sign(&hmac::Key::new(mac, &SECRET), message.as_bytes());
        format!("{message}.{}", b64(tag.as_ref()))
    }

    fn party_invite(t: &Tokens) -> (String, Claims) {
        t.invite(&sid(), Role::Party, Some(Side::A), 60)
    }

    fn resume_claims() -> Claims {
        Claims {
            session: sid(),
            role: Role::Party,
            side: Some(Side::A),
            exp: unix_now() + 60,
            jti: random_id(),
            kind: TokenKind::Resume,
            pid: Some(ParticipantId::new("p1").unwrap()),
        }
    }

    use aws_lc_rs::hmac;
    use serde_json::json;

    #[test]
    fn the_test_signer_makes_tokens_the_server_accepts() {
        // The control for the refusals below: HS256 through `signed` is accepted.
        let t = Tokens::new(&SECRET);
        let (_, claims) = party_invite(&t);
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let tok = signed(&header, &json!(claims), hmac::HMAC_SHA256);
        assert_eq!(t.verify_invite(&tok), Ok(claims));
    }

    #[test]
    fn alg_none_is_refused() {
        let t = Tokens::new(&SECRET);
        let (_, claims) = t.invite(&sid(), Role::Mediator, None, 60);
        let payload = b64(json!(claims).to_string().as_bytes());
        for alg in ["none", "None", "NONE", "nOnE", ""] {
            let header = json!({"alg": alg, "typ": "JWT"});
            let unsigned = format!("{}.{payload}.", b64(header.to_string().as_bytes()));
            assert_eq!(t.verify(&unsigned), Err(TokenError::Invalid), "{alg}");
            assert_eq!(
                t.verify_invite(&unsigned),
                Err(TokenError::Invalid),
                "{alg}"
            );
            // Even carrying a signature the key really made.
            let with_sig = signed(&header, &json!(claims), hmac::HMAC_SHA256);
            assert_eq!(t.verify(&with_sig), Err(TokenError::Invalid), "{alg}");
        }
        // No header algorithm at all.
        let tok = signed(&json!({"typ": "JWT"}), &json!(claims), hmac::HMAC_SHA256);
        assert_eq!(t.verify(&tok), Err(TokenError::Invalid));
    }

    #[test]
    fn hs512_hs384_and_rs256_headers_are_refused_even_signed_with_the_key() {
        let t = Tokens::new(&SECRET);
        let (_, claims) = party_invite(&t);
        for (alg, mac) in [
            (Algorithm::HS512, hmac::HMAC_SHA512),
            (Algorithm::HS384, hmac::HMAC_SHA384),
        ] {
            // Through jsonwebtoken itself, and through our own signer.
            let tok = jsonwebtoken::encode(
                &Header::new(alg),
                &claims,
                &EncodingKey::from_secret(&SECRET),
            )
            .unwrap();
            assert_eq!(t.verify(&tok), Err(TokenError::Invalid), "{alg:?}");
            let header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
            let tok = signed(&header, &json!(claims), mac);
            assert_eq!(t.verify(&tok), Err(TokenError::Invalid), "{alg:?}");
        }
        // Public-key algorithms, with an HMAC under the shared secret as their "signature"
        // (the key-confusion attack), and the HS256 header over an HS512 tag.
        for alg in ["RS256", "RS512", "PS256", "ES256", "EdDSA"] {
            let header = json!({"alg": alg, "typ": "JWT"});
            for mac in [hmac::HMAC_SHA256, hmac::HMAC_SHA512] {
                let tok = signed(&header, &json!(claims), mac);
                assert_eq!(t.verify(&tok), Err(TokenError::Invalid), "{alg}");
            }
        }
        let tok = signed(&json!({"alg": "HS256"}), &json!(claims), hmac::HMAC_SHA512);
        assert_eq!(t.verify(&tok), Err(TokenError::Invalid));
    }

    #[test]
    fn a_payload_edited_under_the_old_signature_is_refused() {
        let t = Tokens::new(&SECRET);
        let (tok, claims) = party_invite(&t);
        let parts: Vec<&str> = tok.split('.').collect();
        let [header, payload, sig] = parts[..] else {
            panic!("three parts")
        };
        let original = String::from_utf8(unb64(payload)).unwrap();
        let edit = |from: &str, to: &str| {
            assert!(original.contains(from), "{original} lacks {from}");
            let edited = original.replacen(from, to, 1);
            format!("{header}.{}.{sig}", b64(edited.as_bytes()))
        };
        // The unedited payload, re-encoded, still verifies: only the edits below fail.
        assert!(t.verify(&edit("{", "{")).is_ok());
        let exp = format!("\"exp\":{}", claims.exp);
        let later = format!("\"exp\":{}", unix_now() + 10 * 365 * 86400);
        let edits = [
            (r#""role":"party","side":"A""#, r#""role":"mediator""#),
            (r#""side":"A""#, r#""side":"B""#),
            (r#""session":"s1""#, r#""session":"s2""#),
            (exp.as_str(), later.as_str()),
            (r#""kind":"invite""#, r#""kind":"resume","pid":"p1""#),
            // The same JSON, other bytes.
            ("{", "{ "),
        ];
        for (from, to) in edits {
            assert_eq!(t.verify(&edit(from, to)), Err(TokenError::Invalid), "{to}");
        }
        // The signature of another token of the same key does not fit either.
        let (other, _) = party_invite(&t);
        let other_sig = other.rsplit('.').next().unwrap();
        assert_eq!(
            t.verify(&format!("{header}.{payload}.{other_sig}")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_of_the_other_kind_is_refused() {
        let t = Tokens::new(&SECRET);
        let resume = t.mint(&resume_claims());
        let (invite, invite_claims) = party_invite(&t);
        // A resume token used as an invite, and an invite used as a resume token.
        assert_eq!(t.verify_invite(&resume), Err(TokenError::Invalid));
        assert_eq!(t.verify_resume(&invite), Err(TokenError::Invalid));
        // Each is good for its own kind.
        assert_eq!(t.verify_invite(&invite), Ok(invite_claims.clone()));
        let (c, pid) = t.verify_resume(&resume).unwrap();
        assert_eq!((c.kind, pid.as_str()), (TokenKind::Resume, "p1"));
        assert_eq!(
            t.verify(&invite),
            Ok(Verified::Invite {
                claims: invite_claims.clone(),
                instance: None
            })
        );
        // Signed by the key but with kind and participant at odds: an invite naming a
        // participant, a resume token naming none.
        let mut invite_with_pid = invite_claims.clone();
        invite_with_pid.pid = Some(ParticipantId::new("p1").unwrap());
        assert_eq!(
            t.verify(&t.mint(&invite_with_pid)),
            Err(TokenError::Invalid)
        );
        let mut resume_without_pid = resume_claims();
        resume_without_pid.pid = None;
        assert_eq!(
            t.verify(&t.mint(&resume_without_pid)),
            Err(TokenError::Invalid)
        );
        // A kind that does not exist, or none at all.
        let header = json!({"alg": "HS256", "typ": "JWT"});
        for kind in [json!("admin"), json!(null), json!(["invite"])] {
            let mut p = json!(invite_claims);
            p["kind"] = kind.clone();
            let tok = signed(&header, &p, hmac::HMAC_SHA256);
            assert_eq!(t.verify(&tok), Err(TokenError::Invalid), "{kind}");
        }
        let mut p = json!(invite_claims);
        p.as_object_mut().unwrap().remove("kind");
        assert_eq!(
            t.verify(&signed(&header, &p, hmac::HMAC_SHA256)),
            Err(TokenError::Invalid)
        );
    }

    fn doc_claims(op: DocOp, exp: u64) -> DocClaims {
        DocClaims {
            kind: TokenKind::Doc,
            session: sid(),
            instance: "0a".repeat(16),
            pid: ParticipantId::new("p1").unwrap(),
            doc_id: DocId::new("ab".repeat(16)).unwrap(),
            op,
            size: 10,
            chunks: 1,
            exp,
            node: None,
        }
    }

    #[test]
    fn doc_tickets_verify_until_their_expiry_on_the_given_clock() {
        let t = Tokens::new(&SECRET);
        let c = doc_claims(DocOp::Up, 1_000);
        let tok = t.mint_doc(&c);
        assert_eq!(t.verify_doc(&tok, 999), Ok(c.clone()));
        assert_eq!(t.verify_doc(&tok, 1_000), Err(TicketError::Expired));
        // Another key, an edited payload, no signature.
        let other = Tokens::new(&[8; 32]).mint_doc(&c);
        assert_eq!(t.verify_doc(&other, 0), Err(TicketError::Invalid));
        let [header, payload, sig] = tok.split('.').collect::<Vec<_>>()[..] else {
            panic!("three parts")
        };
        let text = String::from_utf8(unb64(payload)).unwrap();
        let edited = text.replace(r#""op":"up""#, r#""op":"down""#);
        assert_ne!(edited, text);
        let forged = format!("{header}.{}.{sig}", b64(edited.as_bytes()));
        assert_eq!(t.verify_doc(&forged, 0), Err(TicketError::Invalid));
        let none = format!(
            "{}.{payload}.",
            b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes())
        );
        assert_eq!(t.verify_doc(&none, 0), Err(TicketError::Invalid));
        assert_eq!(t.verify_doc("", 0), Err(TicketError::Invalid));
    }

    #[test]
    fn only_cluster_tickets_name_a_node_and_the_name_is_signed() {
        let t = Tokens::new(&SECRET);
        let alone = t.mint_doc(&doc_claims(DocOp::Down, 1_000));
        let payload = String::from_utf8(unb64(alone.split('.').nth(1).unwrap())).unwrap();
        assert!(!payload.contains("node"), "{payload}");
        assert_eq!(t.verify_doc(&alone, 0).unwrap().node, None);
        let c = DocClaims {
            node: Some("n0de1d".to_owned()),
            ..doc_claims(DocOp::Down, 1_000)
        };
        let tok = t.mint_doc(&c);
        assert_eq!(t.verify_doc(&tok, 0), Ok(c));
        let [header, payload, sig] = tok.split('.').collect::<Vec<_>>()[..] else {
            panic!("three parts")
        };
        let text = String::from_utf8(unb64(payload)).unwrap();
        let moved = text.replace("n0de1d", "other");
        assert_ne!(moved, text);
        let forged = format!("{header}.{}.{sig}", b64(moved.as_bytes()));
        assert_eq!(t.verify_doc(&forged, 0), Err(TicketError::Invalid));
    }

    #[test]
    fn doc_tickets_and_session_tokens_never_stand_in_for_each_other() {
        let t = Tokens::new(&SECRET);
        let (invite, _) = party_invite(&t);
        let resume = t.mint(&resume_claims());
        assert_eq!(t.verify_doc(&invite, 0), Err(TicketError::WrongKind));
        assert_eq!(t.verify_doc(&resume, 0), Err(TicketError::WrongKind));
        let ticket = t.mint_doc(&doc_claims(DocOp::Down, unix_now() + 60));
        assert_eq!(t.verify(&ticket), Err(TokenError::Invalid));
        // Session claims of kind doc (never minted so): neither a session token nor a ticket.
        let mut c = resume_claims();
        c.kind = TokenKind::Doc;
        let odd = t.mint(&c);
        assert_eq!(t.verify(&odd), Err(TokenError::Invalid));
        assert_eq!(t.verify_doc(&odd, 0), Err(TicketError::Invalid));
        // A kind the server never mints, signed with its key.
        let mut p = json!(doc_claims(DocOp::Up, 1_000));
        p["kind"] = json!("admin");
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let tok = signed(&header, &p, hmac::HMAC_SHA256);
        assert_eq!(t.verify_doc(&tok, 0), Err(TicketError::WrongKind));
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
