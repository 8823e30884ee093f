#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

//! A console test's browser: raw HTTP/1.1 to an in-process server whose console reads a
//! manual clock, with a cookie jar and the CSRF token, as the console page would send.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use confer_server::accounts::{self, AccountRole, Name};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The Set-Cookie header that sets `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

#[allow(unused_imports)]
pub use crate::manual_server::{ManualServer as Console, T0};

impl Console {
    pub fn browser(&self) -> Browser {
        Browser::new(self.addr())
    }

    /// `confer user add` done in-process: the enrolment link's token.
    pub fn add(&self, name: &str, role: AccountRole) -> String {
        let e = self
            .server
            .accounts()
            .add(&Name::new(name).unwrap(), role, self.clock.now(), 3600)
            .unwrap();
        e.token.expose().to_owned()
    }

    /// Adds an account and enrols it through the API with TOTP: (TOTP secret in base32,
    /// recovery codes).
    pub async fn enrolled(&self, name: &str, role: AccountRole) -> (String, Vec<String>) {
        let token = self.add(name, role);
        let mut b = self.browser();
        b.me().await;
        let start = b
            .post("/console/api/enrol/start", json!({ "token": token }))
            .await;
        assert_eq!(start.status, 200, "{}", start.body);
        let secret = start.json()["totp_secret"].as_str().unwrap().to_owned();
        let code = accounts::totp_code_base32(&secret, self.clock.now()).unwrap();
        let done = b
            .post(
                "/console/api/enrol/finish",
                json!({ "token": token, "password": PASSWORD, "code": code }),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
        let codes = done.json()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        // The code confirmed at enrolment is spent: later logins use later steps.
        self.clock.advance(30);
        (secret, codes)
    }

    pub fn totp(&self, secret: &str) -> String {
        accounts::totp_code_base32(secret, self.clock.now()).unwrap()
    }
}

/// A browser of the console page: cookies, the CSRF token, the Origin it sends.
pub struct Browser {
    pub addr: SocketAddr,
    pub cookies: BTreeMap<String, String>,
    pub csrf: Option<String>,
    pub origin: Option<String>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cookies: BTreeMap::new(),
            csrf: None,
            origin: Some(format!("http://{addr}")),
        }
    }

    /// What the page does first: GET /console/api/me, keeping the CSRF token.
    pub async fn me(&mut self) -> Reply {
        let r = self.get("/console/api/me").await;
        if let Some(t) = r.json()["csrf"].as_str() {
            self.csrf = Some(t.to_owned());
        }
        r
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, None, &[]).await
    }

    /// A POST as the page makes it: JSON, the CSRF header, the page's Origin.
    pub async fn post(&mut self, path: &str, body: Value) -> Reply {
        let csrf = self.csrf.clone();
        let mut extra = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        if let Some(t) = csrf {
            extra.push(("X-Confer-Csrf".to_owned(), t));
        }
        self.request("POST", path, Some(body.to_string()), &extra)
            .await
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        extra: &[(String, String)],
    ) -> Reply {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(o) = &self.origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
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
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let reply = Reply {
            status,
            headers,
            body: body.to_owned(),
        };
        for c in reply.set_cookies() {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        reply
    }

    /// Password, then (when asked) the second factor: the final reply.
    pub async fn login(&mut self, name: &str, password: &str, code: Option<&str>) -> Reply {
        if self.csrf.is_none() {
            self.me().await;
        }
        let r = self
            .post(
                "/console/api/login",
                json!({ "name": name, "password": password }),
            )
            .await;
        if r.status != 200 || r.json()["next"] != "second_factor" {
            return r;
        }
        let Some(code) = code else { return r };
        self.post("/console/api/login/second-factor", json!({ "code": code }))
            .await
    }

    pub fn has(&self, cookie: &str) -> bool {
        self.cookies.contains_key(cookie)
    }
}

/// Every file of the data dir, read by another process: closing a descriptor of a database
/// file in this one would drop the server's SQLite locks on it (POSIX locks are per process).
pub fn data_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let out = std::process::Command::new("cat").arg(&p).output().unwrap();
            (p, out.stdout)
        })
        .collect()
}
