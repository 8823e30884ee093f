//! The console's HTTP API, `/console/api/*`: enrolment, login with a second factor, and, for a
//! logged-in mediator, starting sessions and listing them. The page is `console.html` of the
//! web root, served at `/console` ([`crate::web`]).
//!
//! | call | what |
//! |---|---|
//! | `GET /console/api/me` | the CSRF token (and its cookie), the account logged in or `null`, whether TOTP is required |
//! | `POST /console/api/enrol/start` `{token}` | the enrolment link's account and TOTP secret (base32 and `otpauth://`) |
//! | `POST /console/api/enrol/finish` `{token, password, code?}` | sets the password and authenticator; answers the ten recovery codes, once |
//! | `POST /console/api/login` `{name, password}` | `{"next":"second_factor"}` and a 5-minute login cookie, or `{"next":"done"}` for an account without TOTP where none is required |
//! | `POST /console/api/login/second-factor` `{code}` or `{recovery_code}` | the session cookie |
//! | `POST /console/api/logout` | ends the session |
//! | `GET /console/api/sessions` | the account's sessions: live, or not opened yet, each with its documents' retention; the retention choices |
//! | `POST /console/api/sessions` `{docs_retention_hours?}` | a new session and its mediator invite, `/join#t=…` (mediators only); `0` keeps documents until the session ends, `N` for N hours, at most `docs_max_retention_hours` |
//! | `POST /console/api/sessions/{id}/purge` | one of the account's own sessions: ended if live (everyone in it gets `session_ended`), its invite spent, then purged as `confer session purge` does |
//!
//! **CSRF: double-submit token plus an Origin check.** `GET /console/api/me` sets an
//! `HttpOnly`, `SameSite=Strict` cookie holding a random token and answers the same token in
//! its JSON body (another origin cannot read that body). Every `POST` must carry it in the
//! `X-Confer-Csrf` header, equal to the cookie; must be `Content-Type: application/json`
//! (which a cross-origin form cannot send, and which cross-origin `fetch` cannot send without
//! a preflight this server never grants); and, when it has an `Origin` header, that origin
//! must be the server's (`public_url`, or the request's `Host`). Otherwise: 403 `csrf_failed`.
//!
//! **Cookies** are `HttpOnly; SameSite=Strict; Path=/`, and with an `https://` `public_url`
//! also `Secure` and named with the `__Host-` prefix. The session cookie's value is random
//! (256 bits), stored only as its SHA-256, and expires after `console_session_ttl_secs`.
//!
//! **Errors** are JSON `{"code", "message"}` with stable codes; no message repeats what was
//! sent. A name that has no account, a wrong password, an account not enrolled and a disabled
//! account all get the same `login_failed` after the same argon2 work; lockouts
//! ([`crate::accounts::lockout`]) count names whether or not they exist.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, ORIGIN, RETRY_AFTER, SET_COOKIE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use confer_proto::{Role, SessionId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::accounts::lockout::Throttle;
use crate::accounts::{self, AccountRole, Accounts, Name, SessionUser};
use crate::clock::Clock;
use crate::docs::DocRetention;
use crate::messages::SessionCmd;
use crate::sessions::SessionPlan;
use crate::state::AppState;

/// How long the step between password and second factor may take.
pub(crate) const LOGIN_STEP_SECS: u64 = 300;
/// Sessions one account may have started and not finished (live or not opened yet).
pub(crate) const MAX_SESSIONS_PER_ACCOUNT: usize = 20;
/// Largest request body the console takes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-confer-csrf";

/// The console's state: the accounts, the login throttle, logins between their two steps,
/// and the sessions each account started (in memory, like the sessions themselves).
#[derive(Debug)]
pub(crate) struct Console {
    app: Arc<AppState>,
    accounts: Arc<Accounts>,
    throttle: Throttle,
    clock: Clock,
    pending: Mutex<HashMap<String, PendingLogin>>,
    started: Mutex<HashMap<i64, Vec<Started>>>,
}

#[derive(Debug)]
struct PendingLogin {
    user_id: i64,
    name: Name,
    expires_at: u64,
}

#[derive(Debug, Clone)]
struct Started {
    session: SessionId,
    jti: String,
    /// The invite's own `exp` (the system clock's), for marking it spent.
    invite_exp: u64,
    created_at: u64,
    expires_at: u64,
    /// What the mediator chose; `None`: `docs_retention_hours`.
    docs_retention: Option<DocRetention>,
}

impl Console {
    pub(crate) fn new(app: Arc<AppState>, accounts: Arc<Accounts>, clock: Clock) -> Self {
        // The decoy hash is made once; made now, the first login for an unknown name takes
        // no longer than the others.
        tokio::task::spawn_blocking(|| {
            accounts::decoy_hash();
        });
        let c = &app.config;
        let throttle = Throttle::new(accounts::lockout::Policy {
            per_account: c.login_max_failures,
            per_address: c.login_max_failures_per_address,
            lockout_secs: c.login_lockout_secs,
        });
        Self {
            app,
            accounts,
            throttle,
            clock,
            pending: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
        }
    }

    fn cookie_name(&self, base: &'static str) -> String {
        if self.app.config.cookies_secure() {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// `NAME=VALUE; HttpOnly; SameSite=Strict; Path=/[; Max-Age=…][; Secure]`.
    fn set_cookie(&self, base: &'static str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut c = format!(
            "{}={value}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name(base)
        );
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.app.config.cookies_secure() {
            c.push_str("; Secure");
        }
        // Names and values are base64url or fixed ASCII: always a valid header value.
        HeaderValue::from_str(&c).expect("cookie of ASCII")
    }

    fn clear_cookie(&self, base: &'static str) -> HeaderValue {
        self.set_cookie(base, "", Some(0))
    }

    fn cookie<'h>(&self, headers: &'h HeaderMap, base: &'static str) -> Option<&'h str> {
        let name = self.cookie_name(base);
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }

    /// The CSRF rule of every POST (module doc).
    fn check_csrf(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return Err(ApiError::CSRF);
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("null");
            let public = self.app.config.public_url.trim_end_matches('/');
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            let same_host = host.is_some_and(|h| {
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    == Some(h)
            });
            if origin != public && !same_host {
                return Err(ApiError::CSRF);
            }
        }
        let cookie = self.cookie(headers, "confer_csrf");
        let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        match (cookie, header) {
            (Some(c), Some(h))
                if aws_lc_rs::constant_time::verify_slices_are_equal(
                    c.as_bytes(),
                    h.as_bytes(),
                )
                .is_ok() =>
            {
                Ok(())
            }
            _ => Err(ApiError::CSRF),
        }
    }

    /// The logged-in account of the request, if any.
    async fn account(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<Option<SessionUser>, ApiError> {
        let Some(cookie) = self.cookie(headers, "confer_session").map(str::to_owned) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let accounts = self.accounts.clone();
        blocking(move || accounts.session(&cookie, now)).await
    }

    async fn require_account(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<SessionUser, ApiError> {
        self.account(headers).await?.ok_or(ApiError::NOT_LOGGED_IN)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingLogin>> {
        // Plain maps; a panic elsewhere cannot leave them half-written.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn started(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Started>>> {
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs `user` in: a new session cookie, the account's failures forgotten.
    async fn log_in(
        self: &Arc<Self>,
        user_id: i64,
        name: &Name,
        role: AccountRole,
    ) -> Result<Response, ApiError> {
        let (now, ttl) = (self.clock.now(), self.app.config.console_session_ttl_secs);
        let accounts = self.accounts.clone();
        let cookie = blocking(move || accounts.start_session(user_id, now, ttl)).await?;
        self.throttle.succeed(name.as_str());
        let accounts = self.accounts.clone();
        let left = blocking(move || accounts.recovery_codes_left(user_id)).await?;
        let mut res = ok(json!({
            "next": "done",
            "account": {"name": name.as_str(), "role": role.as_str()},
            "recovery_codes_left": left,
        }));
        let h = res.headers_mut();
        h.append(
            SET_COOKIE,
            self.set_cookie("confer_session", cookie.expose(), Some(ttl)),
        );
        h.append(SET_COOKIE, self.clear_cookie("confer_login"));
        Ok(res)
    }
}

/// The console's routes (state applied; merged into the public router).
pub(crate) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console/api/me", get(me))
        .route("/console/api/enrol/start", post(enrol_start))
        .route("/console/api/enrol/finish", post(enrol_finish))
        .route("/console/api/login", post(login))
        .route("/console/api/login/second-factor", post(second_factor))
        .route("/console/api/logout", post(logout))
        .route("/console/api/sessions", get(sessions).post(start_session))
        .route("/console/api/sessions/{id}/purge", post(purge_session))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(console)
}

/// A refusal: status, stable code, a human message (never holding what was sent).
#[derive(Debug, Clone, Copy)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    retry_after: Option<u64>,
}

impl ApiError {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            retry_after: None,
        }
    }

    const CSRF: Self = Self::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "This request did not come from the console page. Reload the page and try again.",
    );
    const BAD_REQUEST: Self = Self::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "The request is not one the console page sends.",
    );
    const NOT_LOGGED_IN: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "not_logged_in",
        "You are not logged in, or your login has expired. Log in again.",
    );
    const LOGIN_FAILED: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "login_failed",
        "The name or the password is wrong, or this account cannot log in.",
    );
    const SECOND_FACTOR_FAILED: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "second_factor_failed",
        "That code is wrong or was used already. Enter the code your authenticator app shows now, or an unused recovery code.",
    );
    const LOGIN_EXPIRED: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "login_expired",
        "This login took too long. Start again with your name and password.",
    );
    const MFA_NOT_SET_UP: Self = Self::new(
        StatusCode::FORBIDDEN,
        "mfa_not_set_up",
        "This account has no authenticator app set up, and this server requires one. Ask your administrator for a new enrolment link (confer user reset-mfa).",
    );
    const ENROLMENT_INVALID: Self = Self::new(
        StatusCode::NOT_FOUND,
        "enrolment_invalid",
        "This enrolment link does not work: it was used, replaced by a newer one, or has expired. Ask your administrator for a new link.",
    );
    const PASSWORD_TOO_SHORT: Self = Self::new(
        StatusCode::BAD_REQUEST,
        "password_too_short",
        "Choose a password of at least 10 characters.",
    );
    const PASSWORD_TOO_LONG: Self = Self::new(
        StatusCode::BAD_REQUEST,
        "password_too_long",
        "Choose a password of at most 1024 bytes.",
    );
    const TOTP_CODE_WRONG: Self = Self::new(
        StatusCode::BAD_REQUEST,
        "totp_code_wrong",
        "That code does not match. Check that the app shows the code for this account, and enter the code it shows now.",
    );
    const FORBIDDEN_ROLE: Self = Self::new(
        StatusCode::FORBIDDEN,
        "forbidden_role",
        "Only a mediator's account starts sessions. A co-mediator joins with the invite link the mediator makes in the session.",
    );
    const TOO_MANY_SESSIONS: Self = Self::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_sessions",
        "You have 20 sessions that are live or not opened yet. End one, or let unopened ones expire.",
    );
    const DRAINING: Self = Self::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_draining",
        "The server is shutting down and starts no new sessions. Try again in a few minutes.",
    );
    const RETENTION_NOT_ALLOWED: Self = Self::new(
        StatusCode::BAD_REQUEST,
        "retention_not_allowed",
        "Documents cannot be kept that long on this server. Choose one of the periods the console offers.",
    );
    const SESSION_NOT_FOUND: Self = Self::new(
        StatusCode::NOT_FOUND,
        "session_not_found",
        "None of your sessions has that id: it ended, was deleted already, or another account started it. Refresh the list.",
    );
    const INTERNAL: Self = Self::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "The server could not do this. Try again; if it keeps failing, tell your administrator.",
    );

    fn locked(until: u64, now: u64) -> Self {
        Self {
            retry_after: Some(until.saturating_sub(now).max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "login_locked",
                "Too many failed logins. Wait 15 minutes, then try again.",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = json_response(
            self.status,
            &json!({"code": self.code, "message": self.message}),
        );
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

fn ok(body: serde_json::Value) -> Response {
    json_response(StatusCode::OK, &body)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response()
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::BAD_REQUEST)
}

/// Runs SQLite or argon2 work off the async threads; a failure is logged (without secrets:
/// the errors name files and SQLite's reason) and answered `internal`.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, accounts::AccountError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "accounts database failed");
            Err(ApiError::INTERNAL)
        }
        Err(_) => {
            tracing::error!("an accounts task failed");
            Err(ApiError::INTERNAL)
        }
    }
}

fn result(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn me(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    result(
        async {
            let account = c.account(&headers).await?;
            // Keep a token the browser holds (its tabs share it); mint one otherwise.
            let (csrf, fresh) = match c.cookie(&headers, "confer_csrf") {
                Some(t) if t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
                    (t.to_owned(), false)
                }
                _ => (accounts::random_token().expose().to_owned(), true),
            };
            let mut res = ok(json!({
                "csrf": csrf,
                "account": account.map(|a| json!({"name": a.name.as_str(), "role": a.role.as_str()})),
                "totp_required": c.app.config.accounts_require_totp,
            }));
            if fresh {
                res.headers_mut()
                    .append(SET_COOKIE, c.set_cookie("confer_csrf", &csrf, None));
            }
            Ok(res)
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolStart {
    token: String,
}

async fn enrol_start(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            let req: EnrolStart = parse(&body)?;
            let now = c.clock.now();
            let accounts = c.accounts.clone();
            let pending = blocking(move || accounts.enrolment(&req.token, now))
                .await?
                .ok_or(ApiError::ENROLMENT_INVALID)?;
            Ok(ok(json!({
                "name": pending.name.as_str(),
                "role": pending.role.as_str(),
                "totp_secret": pending.totp_base32().expose(),
                "otpauth_uri": pending.otpauth_uri().expose(),
                "totp_required": c.app.config.accounts_require_totp,
            })))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolFinish {
    token: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

async fn enrol_finish(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            let req: EnrolFinish = parse(&body)?;
            if req.password.chars().count() < accounts::MIN_PASSWORD_CHARS {
                return Err(ApiError::PASSWORD_TOO_SHORT);
            }
            if req.password.len() > accounts::MAX_PASSWORD_BYTES {
                return Err(ApiError::PASSWORD_TOO_LONG);
            }
            let now = c.clock.now();
            let accounts = c.accounts.clone();
            let token = req.token.clone();
            let pending = blocking(move || accounts.enrolment(&token, now))
                .await?
                .ok_or(ApiError::ENROLMENT_INVALID)?;
            let code = req.code.as_deref().map(str::trim).filter(|s| !s.is_empty());
            let step = match code {
                Some(code) => Some(
                    accounts::totp_step(&pending.totp_secret, code, now)
                        .ok_or(ApiError::TOTP_CODE_WRONG)?,
                ),
                None if c.app.config.accounts_require_totp => {
                    return Err(ApiError::TOTP_CODE_WRONG);
                }
                None => None,
            };
            let accounts = c.accounts.clone();
            let codes = blocking(move || {
                let hash = accounts::hash_password(&req.password);
                accounts.complete_enrolment(&req.token, &hash, step, now)
            })
            .await?
            .ok_or(ApiError::ENROLMENT_INVALID)?;
            let codes: Vec<&str> = codes.iter().map(accounts::Secret::expose).collect();
            Ok(ok(json!({
                "name": pending.name.as_str(),
                "totp": step.is_some(),
                "recovery_codes": codes,
            })))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            let req: Login = parse(&body)?;
            let now = c.clock.now();
            // Lockouts count by the name as typed (lower case, bounded), account or not.
            let name = Name::new(&req.name);
            let key: String = name.as_ref().map_or_else(
                || {
                    req.name
                        .trim()
                        .to_ascii_lowercase()
                        .chars()
                        .take(64)
                        .collect()
                },
                |n| n.as_str().to_owned(),
            );
            if let Err(locked) = c.throttle.check(&key, peer.ip(), now) {
                return Err(ApiError::locked(locked.until, now));
            }
            let accounts = c.accounts.clone();
            let found = blocking(move || {
                let creds = match &name {
                    Some(n) => accounts.credentials(n)?,
                    None => None,
                };
                // The same argon2 work whether or not the account exists.
                let hash = creds
                    .as_ref()
                    .and_then(|c| c.password_hash.clone())
                    .unwrap_or_else(|| accounts::decoy_hash().to_owned());
                let long = req.password.len() > accounts::MAX_PASSWORD_BYTES;
                let right = !long && accounts::verify_password(&req.password, &hash);
                Ok(creds.filter(|c| right && c.password_hash.is_some() && !c.disabled))
            })
            .await?;
            let Some(creds) = found else {
                c.throttle.fail(&key, peer.ip(), now);
                return Err(ApiError::LOGIN_FAILED);
            };
            if !creds.has_totp {
                if c.app.config.accounts_require_totp {
                    return Err(ApiError::MFA_NOT_SET_UP);
                }
                return c.log_in(creds.user_id, &creds.name, creds.role).await;
            }
            let step = accounts::random_token();
            {
                let mut pending = c.pending();
                pending.retain(|_, p| p.expires_at > now);
                pending.insert(
                    accounts::digest(step.expose()),
                    PendingLogin {
                        user_id: creds.user_id,
                        name: creds.name.clone(),
                        expires_at: now + LOGIN_STEP_SECS,
                    },
                );
            }
            let mut res = ok(json!({"next": "second_factor"}));
            res.headers_mut().append(
                SET_COOKIE,
                c.set_cookie("confer_login", step.expose(), Some(LOGIN_STEP_SECS)),
            );
            Ok(res)
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondFactor {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

async fn second_factor(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            let req: SecondFactor = parse(&body)?;
            let now = c.clock.now();
            let step = c
                .cookie(&headers, "confer_login")
                .map(accounts::digest)
                .ok_or(ApiError::LOGIN_EXPIRED)?;
            let (user_id, name) = {
                let pending = c.pending();
                let p = pending
                    .get(&step)
                    .filter(|p| p.expires_at > now)
                    .ok_or(ApiError::LOGIN_EXPIRED)?;
                (p.user_id, p.name.clone())
            };
            if let Err(locked) = c.throttle.check(name.as_str(), peer.ip(), now) {
                return Err(ApiError::locked(locked.until, now));
            }
            let accounts = c.accounts.clone();
            let lookup = name.clone();
            let accepted = blocking(move || {
                let Some(creds) = accounts.credentials(&lookup)? else {
                    return Ok(None);
                };
                if creds.disabled || creds.user_id != user_id {
                    return Ok(None);
                }
                let ok = match (req.code, req.recovery_code) {
                    (Some(code), None) => accounts.accept_totp(user_id, &code, now)?,
                    (None, Some(code)) => accounts.accept_recovery_code(user_id, &code)?,
                    _ => false,
                };
                Ok(ok.then_some(creds.role))
            })
            .await?;
            let Some(role) = accepted else {
                c.throttle.fail(name.as_str(), peer.ip(), now);
                return Err(ApiError::SECOND_FACTOR_FAILED);
            };
            c.pending().remove(&step);
            c.log_in(user_id, &name, role).await
        }
        .await,
    )
}

async fn logout(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            if let Some(cookie) = c.cookie(&headers, "confer_session").map(str::to_owned) {
                let accounts = c.accounts.clone();
                blocking(move || accounts.end_session(&cookie)).await?;
            }
            let mut res = ok(json!({}));
            res.headers_mut()
                .append(SET_COOKIE, c.clear_cookie("confer_session"));
            Ok(res)
        }
        .await,
    )
}

/// The account's sessions, dropping those that ended or whose invite expired unopened.
async fn sessions(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    result(
        async {
            let account = c.require_account(&headers).await?;
            let list = current_sessions(&c, account.user_id).await?;
            let (default_hours, max_hours) = retention_hours(&c);
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|(s, live)| {
                    json!({
                        "id": s.session.as_str(),
                        "created_at": s.created_at,
                        "state": if *live { "live" } else { "not_opened" },
                        "docs_retention_hours": s.docs_retention.map_or(default_hours, DocRetention::hours),
                    })
                })
                .collect();
            Ok(ok(json!({
                "sessions": rows,
                "docs_retention": {"default_hours": default_hours, "max_hours": max_hours},
            })))
        }
        .await,
    )
}

async fn current_sessions(
    c: &Arc<Console>,
    user_id: i64,
) -> Result<Vec<(Started, bool)>, ApiError> {
    let now = c.clock.now();
    let mine = c.started().get(&user_id).cloned().unwrap_or_default();
    let app = c.app.clone();
    let checked = tokio::task::spawn_blocking(move || {
        mine.into_iter()
            .filter_map(|s| {
                let live = app.sessions.get(&s.session).is_some();
                // Opened once and gone now: it ended. Never opened and expired: it never will be.
                let spent = app.spent.is_spent(&s.jti).unwrap_or(true);
                let keep = live || (!spent && s.expires_at > now);
                keep.then_some((s, live))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| ApiError::INTERNAL)?;
    let kept: Vec<String> = checked.iter().map(|(s, _)| s.jti.clone()).collect();
    if let Some(list) = c.started().get_mut(&user_id) {
        // A session dropped unopened never takes its plan: forget it here.
        for s in list.iter().filter(|s| !kept.contains(&s.jti)) {
            c.app.sessions.take_plan(&s.session);
        }
        list.retain(|s| kept.contains(&s.jti));
    }
    Ok(checked)
}

/// The retention a session gets when its mediator chooses none, and the longest one may
/// choose, in hours (`docs_retention_hours` capped by `docs_max_retention_hours`).
fn retention_hours(c: &Console) -> (u64, u64) {
    let config = &c.app.config;
    let max = config.docs_max_retention_hours;
    (config.docs_retention_hours.min(max), max)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartSession {
    /// `0`: until the session ends; `N`: N hours after sharing. Absent: the default.
    #[serde(default)]
    docs_retention_hours: Option<u64>,
}

async fn start_session(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            let account = c.require_account(&headers).await?;
            if account.role != AccountRole::Mediator {
                return Err(ApiError::FORBIDDEN_ROLE);
            }
            let req: StartSession = if body.iter().all(u8::is_ascii_whitespace) {
                StartSession {
                    docs_retention_hours: None,
                }
            } else {
                parse(&body)?
            };
            let docs_retention = match req.docs_retention_hours {
                None => None,
                Some(h) => Some(
                    DocRetention::from_hours(h, c.app.config.docs_max_retention_hours)
                        .ok_or(ApiError::RETENTION_NOT_ALLOWED)?,
                ),
            };
            if c.app.is_draining() {
                return Err(ApiError::DRAINING);
            }
            if current_sessions(&c, account.user_id).await?.len() >= MAX_SESSIONS_PER_ACCOUNT {
                return Err(ApiError::TOO_MANY_SESSIONS);
            }
            let id = format!("s-{}", &crate::token::random_id()[..16]);
            // 16 hex characters after "s-": always a valid session id.
            let session = SessionId::new(id).expect("a valid session id");
            let ttl = c.app.config.invite_ttl_secs;
            let (token, claims) = c.app.tokens.invite(&session, Role::Mediator, None, ttl);
            // The invite's own `exp` is the system clock's; the list reads the console's.
            let now = c.clock.now();
            if let Some(docs_retention) = docs_retention {
                c.app
                    .sessions
                    .plan(session.clone(), SessionPlan { docs_retention });
            }
            c.started()
                .entry(account.user_id)
                .or_default()
                .push(Started {
                    session: session.clone(),
                    jti: claims.jti,
                    invite_exp: claims.exp,
                    created_at: now,
                    expires_at: now.saturating_add(ttl),
                    docs_retention,
                });
            Ok(ok(json!({
                "id": session.as_str(),
                "link": format!("/join#t={token}"),
            })))
        }
        .await,
    )
}

/// Deletes everything about one of the account's own sessions: its invite can no longer open
/// it, a live session is ended as a manager's `end` ends it (everyone connected gets
/// `session_ended`; its documents go with it), then the session id is purged as
/// `confer session purge` does (every document folder of the id, a `session_purged` audit
/// row). The audit log's content-free rows stay. Another account's session, or an id the
/// account has not (or no longer) listed, is `session_not_found`.
async fn purge_session(
    State(c): State<Arc<Console>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    result(
        async {
            c.check_csrf(&headers)?;
            let account = c.require_account(&headers).await?;
            let session = SessionId::new(id).map_err(|_| ApiError::SESSION_NOT_FOUND)?;
            let record = c
                .started()
                .get(&account.user_id)
                .and_then(|list| list.iter().find(|s| s.session == session).cloned())
                .ok_or(ApiError::SESSION_NOT_FOUND)?;
            let app = c.app.clone();
            let (jti, exp) = (record.jti.clone(), record.invite_exp);
            // First, so that the invite of a session not opened yet never opens it.
            tokio::task::spawn_blocking(move || {
                app.spent.reserve(&jti, exp, crate::token::unix_now())
            })
            .await
            .map_err(|_| ApiError::INTERNAL)?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot spend the invite of a session being purged");
                ApiError::INTERNAL
            })?;
            if let Some(live) = c.app.sessions.get(&session) {
                let (reply, ended) = tokio::sync::oneshot::channel();
                if live.tx.send(SessionCmd::End { reply }).await.is_ok() {
                    // Dropped once the session has left the registry, documents deleted.
                    let _ = ended.await;
                }
            }
            let app = c.app.clone();
            let purged = session.clone();
            let files = tokio::task::spawn_blocking(move || {
                let files = crate::docs::purge_session(&app.config.docs_path(), &purged)?;
                app.audit.record(crate::audit::session_purged(
                    purged.as_str(),
                    crate::token::unix_now(),
                ));
                if let Err(e) = app.audit.flush() {
                    // The row stays queued; the writer keeps trying.
                    tracing::error!(error = %e, "the session_purged audit row is not written yet");
                }
                Ok::<_, std::io::Error>(files)
            })
            .await
            .map_err(|_| ApiError::INTERNAL)?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot remove a purged session's documents");
                ApiError::INTERNAL
            })?;
            if let Some(list) = c.started().get_mut(&account.user_id) {
                list.retain(|s| s.session != session);
            }
            c.app.sessions.take_plan(&session);
            tracing::info!(
                session = %c.app.loggable(session.as_str()),
                files,
                "session purged from the console"
            );
            Ok(ok(json!({"id": session.as_str(), "files_removed": files})))
        }
        .await,
    )
}
