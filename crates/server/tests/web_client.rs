#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The web client's files (`web_root`): `/` and `/join` serve index.html, assets by name with
//! their types, strict headers on every response, nothing outside the web root, no listing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::*;
use confer_server::{Config, Server, StartError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INDEX: &str = "<!doctype html><title>Confer</title><main><h1>Confer</h1></main>";
const CONSOLE: &str = "<!doctype html><title>Confer console</title>";
const OUTSIDE: &str = "outside-the-web-root-must-never-be-served";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The strict headers every response of the public port carries.
    fn assert_strict(&self, what: &str) {
        let want = [
            ("content-security-policy", confer_server::web::CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("cross-origin-opener-policy", "same-origin"),
        ];
        for (name, value) in want {
            assert_eq!(self.header(name), Some(value), "{name} of {what}");
        }
        let listed = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-security-policy"))
            .count();
        assert_eq!(listed, 1, "one CSP on {what}");
    }
}

/// One raw HTTP/1.1 request, the path sent exactly as given (no client normalises `..`).
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(confer_testkit::ws::PATIENCE, s.read_to_end(&mut buf))
        .await
        .expect("timed out reading the response")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

/// A built web client in `base/dist`, and a file beside it (outside the web root) that a
/// traversal would reach: `base/outside.js`, also linked from inside as `dist/link.js`.
fn web_root(base: &Path) -> PathBuf {
    let dist = base.join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::create_dir_all(dist.join("empty")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("console.html"), CONSOLE).unwrap();
    std::fs::write(dist.join("assets/index-AbC123.js"), "console.info(1);\n").unwrap();
    std::fs::write(dist.join("assets/index-AbC123.css"), "main{margin:0}\n").unwrap();
    std::fs::write(dist.join("hashes.json"), "{}\n").unwrap();
    std::fs::write(
        dist.join("icon.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    std::fs::write(dist.join("notes.toml"), "a = 1\n").unwrap();
    std::fs::write(dist.join(".hidden.js"), OUTSIDE).unwrap();
    std::fs::write(base.join("outside.js"), OUTSIDE).unwrap();
    std::fs::write(base.join("outside.html"), OUTSIDE).unwrap();
    std::os::unix::fs::symlink(base.join("outside.js"), dist.join("link.js")).unwrap();
    dist
}

async fn start(data: &Path, web_root: Option<&Path>) -> Server {
    let mut config = Config::dev(data.to_owned());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.media_enabled = false;
    if let Some(root) = web_root {
        config.web_root = root.to_owned();
    }
    Server::start(config).await.unwrap()
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_strict_headers() {
    let base = temp_dir("web");
    let dist = web_root(&base);
    let server = start(&base.join("data"), Some(&dist)).await;
    let addr = server.addr();

    for path in ["/", "/join", "/join?from=link", "/index.html"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, INDEX, "{path}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        r.assert_strict(path);
    }

    // The console's page, whose enrolment links carry their token in the fragment.
    for path in ["/console", "/console?x=1"] {
        let r = get(addr, path).await;
        assert_eq!((r.status, r.body.as_str()), (200, CONSOLE), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        r.assert_strict(path);
    }

    for (path, ty) in [
        ("/assets/index-AbC123.js", "text/javascript; charset=utf-8"),
        ("/assets/index-AbC123.css", "text/css; charset=utf-8"),
        ("/hashes.json", "application/json"),
        ("/icon.svg", "image/svg+xml"),
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        r.assert_strict(path);
    }
    let js = get(addr, "/assets/index-AbC123.js").await;
    assert_eq!(js.body, "console.info(1);\n");
    assert_eq!(
        js.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // HEAD answers like GET without a body; other methods are refused.
    let head = request(addr, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    head.assert_strict("HEAD /");
    assert_eq!(request(addr, "POST", "/").await.status, 405);
    assert_eq!(
        request(addr, "POST", "/assets/index-AbC123.js")
            .await
            .status,
        405
    );

    // The API routes keep working, with the same headers.
    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    health.assert_strict("/healthz");
    drop(server);
    std::fs::remove_dir_all(base).unwrap();
}

#[tokio::test]
async fn nothing_outside_the_web_root_nothing_hidden_no_listing() {
    let base = temp_dir("web-traversal");
    let dist = web_root(&base);
    let server = start(&base.join("data"), Some(&dist)).await;
    let addr = server.addr();
    for path in [
        // traversal, plain and encoded
        "/../outside.js",
        "/assets/../../outside.js",
        "/assets/../../outside.html",
        "/%2e%2e/outside.js",
        "/%2E%2E%2Foutside.js",
        "/assets/..%2f..%2foutside.js",
        "/assets%2f..%2f..%2foutside.js",
        "/..\\outside.js",
        "/assets/%00.js",
        // a symlink pointing out of the web root
        "/link.js",
        // hidden files, files of a type not served
        "/.hidden.js",
        "/notes.toml",
        // directories: no listing, no index
        "/assets",
        "/assets/",
        "/empty",
        "/empty/",
        "//",
        "//outside.js",
        // unknown assets and pages
        "/assets/missing.js",
        "/missing.html",
        "/join/",
        "/join/extra",
    ] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(!r.body.contains(OUTSIDE), "{path}");
        assert!(!r.body.contains("index-AbC123"), "{path}: a listing");
        r.assert_strict(path);
    }
    drop(server);
    std::fs::remove_dir_all(base).unwrap();
}

#[tokio::test]
async fn without_a_web_root_the_landing_page_has_the_same_policy() {
    let base = temp_dir("web-none");
    let server = start(&base, None).await;
    assert_eq!(server.web_dir(), None);
    for path in ["/", "/join"] {
        let r = get(server.addr(), path).await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("Confer is running"), "{}", r.body);
        // The CSP forbids inline script and style: the landing page has neither.
        for inline in ["<script", "<style", "style=", "onclick"] {
            assert!(!r.body.contains(inline), "{inline} on the landing page");
        }
        r.assert_strict(path);
    }
    assert_eq!(get(server.addr(), "/assets/index.js").await.status, 404);
    drop(server);
    std::fs::remove_dir_all(base).unwrap();
}

#[tokio::test]
async fn a_web_root_without_index_html_stops_the_start() {
    let base = temp_dir("web-bad");
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for root in [empty.clone(), base.join("missing")] {
        let mut config = Config::dev(base.join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics_listen = "127.0.0.1:0".parse().unwrap();
        config.media_enabled = false;
        config.web_root = root.clone();
        let e = Server::start(config).await.unwrap_err();
        assert!(matches!(e, StartError::WebRoot { .. }), "{e}");
        assert!(e.to_string().contains("web_root"), "{e}");
    }
    std::fs::remove_dir_all(base).unwrap();
}

/// `confer serve --dev` serves web-client/dist of the folder it starts in, when it was built;
/// else the landing page. CONFER_WEB_ROOT works as every other key does (sample_config.rs).
#[tokio::test]
async fn dev_serves_web_client_dist_when_built() {
    let base = temp_dir("web-dev");
    let built = base.join("built");
    let dist = built.join("web-client/dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    let serve = Serve::start_in(&base.join("data1"), Some(&built)).await;
    assert!(
        serve.stdout.contains("(web client from "),
        "{}",
        serve.stdout
    );
    let r = get(serve.addr, "/join").await;
    assert_eq!((r.status, r.body.as_str()), (200, INDEX));
    r.assert_strict("/join");
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);

    let bare = base.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let serve = Serve::start_in(&base.join("data2"), Some(&bare)).await;
    assert!(
        serve.stdout.contains("landing page only"),
        "{}",
        serve.stdout
    );
    let r = get(serve.addr, "/").await;
    assert!(r.body.contains("Confer is running"));
    serve.signal_term();
    assert_eq!(serve.wait().await.0, 0);
    std::fs::remove_dir_all(base).unwrap();
}
