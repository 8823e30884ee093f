//! The web client's files (`web_root`, e.g. `web-client/dist`): `/` and `/join` (the path of
//! invite links, whose fragment carries the secrets and never reaches the server) serve
//! `index.html`; `/console` (enrolment links carry their token in the fragment too) serves
//! `console.html`; any other path names one file of the web root. Every response of the public
//! port gets the strict headers of [`security_headers`].
//!
//! What is refused (404): a path that is not plain segments of `A-Z a-z 0-9 . _ -` (so no
//! `..`, no percent-encoding, no backslash, no empty segment), a segment starting with `.`
//! (hidden files), a directory (no listing), a file whose type is not in [`content_type`],
//! and anything that resolves outside the web root (a symlink out of it).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every response. `connect-src 'self'` covers the same-origin
/// WebSocket (`ws:` from an `http:` page, `wss:` from `https:`) in Chromium and Firefox (CSP
/// Level 3); the browser tests check it. `media-src blob:` is for decoded remote tracks.
pub const CSP: &str = "default-src 'none'; script-src 'self'; worker-src 'self'; \
connect-src 'self'; img-src 'self'; style-src 'self'; media-src 'self' blob:; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
const CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");

/// Hashed build output (`assets/NAME-HASH.js`) never changes under its name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (`index.html`) is revalidated, so a new build is picked up at once.
const REVALIDATE: &str = "no-cache";

/// Longest request path considered, and deepest folder nesting.
const MAX_PATH: usize = 512;
const MAX_SEGMENTS: usize = 8;

/// A folder holding `index.html`, resolved once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct WebRoot {
    dir: Arc<PathBuf>,
}

impl WebRoot {
    /// Resolves `dir` (symlinks and `..` included) and checks that it holds `index.html`.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        let dir = std::fs::canonicalize(dir)?;
        if !dir.join("index.html").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the folder holds no index.html",
            ));
        }
        Ok(Self { dir: Arc::new(dir) })
    }

    /// The resolved folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    async fn serve(&self, relative: &Path) -> Response {
        let Some(content_type) = relative
            .extension()
            .and_then(|e| e.to_str())
            .and_then(content_type)
        else {
            return not_found();
        };
        let path = match tokio::fs::canonicalize(self.dir.join(relative)).await {
            Ok(p) if p.starts_with(&*self.dir) => p,
            Ok(_) => return not_found(),
            Err(e) => return io_error(&e),
        };
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => {}
            Ok(_) => return not_found(),
            Err(e) => return io_error(&e),
        }
        let body = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => return io_error(&e),
        };
        let cache = if relative.starts_with("assets") {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        (
            [
                (CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
            body,
        )
            .into_response()
    }
}

/// The routes of the page: the web client when there is one, else the landing page.
pub(crate) fn router(root: Option<WebRoot>) -> Router {
    match root {
        Some(root) => Router::new()
            .route("/", get(index))
            .route("/join", get(index))
            .route("/console", get(console))
            .fallback(get(file))
            .with_state(root),
        None => Router::new()
            .route("/", get(landing))
            .route("/join", get(landing)),
    }
}

/// Adds the strict headers to a response of the public port (pages, files, errors, health).
pub(crate) async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(COOP, HeaderValue::from_static("same-origin"));
    h.insert(CORP, HeaderValue::from_static("same-origin"));
    res
}

/// The types served; any other file is not.
fn content_type(extension: &str) -> Option<&'static str> {
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/vnd.microsoft.icon",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// The file a request path names, relative to the web root; `None` for anything but plain
/// segments of `A-Z a-z 0-9 . _ -` that do not start with a dot.
fn relative_path(path: &str) -> Option<PathBuf> {
    if path.len() > MAX_PATH {
        return None;
    }
    let rest = path.strip_prefix('/')?;
    let mut out = PathBuf::new();
    for (i, segment) in rest.split('/').enumerate() {
        let plain = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if i >= MAX_SEGMENTS || segment.is_empty() || segment.starts_with('.') || !plain {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

async fn index(State(root): State<WebRoot>) -> Response {
    root.serve(Path::new("index.html")).await
}

async fn console(State(root): State<WebRoot>) -> Response {
    root.serve(Path::new("console.html")).await
}

async fn file(State(root): State<WebRoot>, uri: Uri) -> Response {
    match relative_path(uri.path()) {
        Some(relative) => root.serve(&relative).await,
        None => not_found(),
    }
}

async fn landing() -> Html<&'static str> {
    Html(include_str!("landing.html"))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn io_error(e: &io::Error) -> Response {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => not_found(),
        _ => {
            tracing::warn!(error = %e, "cannot read a file of the web root");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments_name_a_file() {
        assert_eq!(
            relative_path("/assets/index-Ch2r5Vcb.js"),
            Some(PathBuf::from("assets/index-Ch2r5Vcb.js"))
        );
        assert_eq!(
            relative_path("/favicon.svg"),
            Some(PathBuf::from("favicon.svg"))
        );
        for bad in [
            "",
            "/",
            "assets/a.js",
            "/../Cargo.toml",
            "/assets/../index.html",
            "/./index.html",
            "/%2e%2e/Cargo.toml",
            "/..%2fCargo.toml",
            "/assets%2f..%2f..%2fCargo.toml",
            "/assets//a.js",
            "/assets/",
            "/.env",
            "/assets/.hidden.js",
            "/a\\b.js",
            "/a b.js",
            "/\u{e9}.js",
            "/a/b/c/d/e/f/g/h/i.js",
        ] {
            assert_eq!(relative_path(bad), None, "{bad:?}");
        }
        assert_eq!(relative_path(&format!("/{}.js", "a".repeat(600))), None);
    }

    #[test]
    fn types_are_explicit() {
        assert_eq!(content_type("js"), Some("text/javascript; charset=utf-8"));
        assert_eq!(content_type("html"), Some("text/html; charset=utf-8"));
        assert_eq!(content_type("css"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type("json"), Some("application/json"));
        assert_eq!(content_type("svg"), Some("image/svg+xml"));
        assert_eq!(content_type("toml"), None);
        assert_eq!(content_type("JS"), None);
    }
}
