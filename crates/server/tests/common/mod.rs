#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

//! Runs the real `confer` binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_confer");

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "confer-{tag}-{}",
        confer_server::token::random_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `confer ARGS` to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run confer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `confer serve --dev` process on ephemeral ports.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub stdout: String,
    pub dir: PathBuf,
    stderr: Option<tokio::process::ChildStderr>,
}

impl Serve {
    pub async fn start(dir: &Path) -> Self {
        Self::start_in(dir, None).await
    }

    /// Like [`Serve::start`], with the process started in `cwd` (where `--dev` looks for
    /// `web-client/dist`) when given.
    pub async fn start_in(dir: &Path, cwd: Option<&Path>) -> Self {
        Self::start_with(dir, cwd, &[]).await
    }

    /// Like [`Serve::start`], with these `CONFER_*` variables set.
    pub async fn start_env(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with(dir, None, env).await
    }

    async fn start_with(dir: &Path, cwd: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command.envs(env.iter().copied());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args([
                "serve",
                "--dev",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--media-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir)
            .env("CONFER_LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn confer serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stdout = String::new();
        let (mut addr, mut metrics) = (None, None);
        while let Some(line) = tokio::time::timeout(confer_testkit::ws::PATIENCE, lines.next_line())
            .await
            .expect("confer serve printed nothing")
            .unwrap()
        {
            stdout.push_str(&line);
            stdout.push('\n');
            if let Some(rest) = line.trim().strip_prefix("Signalling: ws://") {
                addr = rest.strip_suffix("/ws").map(|a| a.parse().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("Metrics:    http://") {
                metrics = rest.strip_suffix("/metrics").map(|a| a.parse().unwrap());
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let stderr = child.stderr.take();
        Self {
            child,
            addr: addr.expect("ws address"),
            metrics: metrics.expect("metrics address"),
            stdout,
            dir: dir.to_owned(),
            stderr,
        }
    }

    pub fn signal_term(&self) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Waits for exit; returns (exit code, everything logged on stderr).
    pub async fn wait(mut self) -> (i32, String) {
        let status = tokio::time::timeout(confer_testkit::ws::PATIENCE, self.child.wait())
            .await
            .expect("confer did not exit")
            .unwrap();
        let mut logs = String::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut logs).await.unwrap();
        }
        (status.code().unwrap_or(-1), logs)
    }

    /// Tokens for a mediator, a party of side A and a party of side B of `session`.
    pub fn trio(&self, session: &str) -> [String; 3] {
        [
            self.token(session, "mediator", None),
            self.token(session, "party", Some("A")),
            self.token(session, "party", Some("B")),
        ]
    }

    /// Mints a token with the CLI against this server's data dir.
    pub fn token(&self, session: &str, role: &str, side: Option<&str>) -> String {
        let dir = self.dir.to_str().unwrap();
        let mut args = vec![
            "token",
            "create",
            "--dev",
            "--data-dir",
            dir,
            "--session",
            session,
            "--role",
            role,
        ];
        if let Some(s) = side {
            args.extend(["--side", s]);
        }
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        out.trim().to_owned()
    }
}

use confer_proto::{ParticipantId, ServerMessage};
use confer_testkit::ws::WsClient;
use serde_json::json;

pub const HASH: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

pub fn pid(m: &ServerMessage) -> ParticipantId {
    match m {
        ServerMessage::Welcome { participant_id, .. } => participant_id.clone(),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// What a short session leaves behind for a test to look for.
pub struct FlowTrace {
    pub participant_ids: Vec<String>,
    pub client_addrs: Vec<SocketAddr>,
    pub tokens: Vec<String>,
}

/// Mediator and two parties: consent, admit, a relayed `canary`, a caucus, then end.
pub async fn short_session(addr: SocketAddr, tokens: [String; 3], canary: &str) -> FlowTrace {
    let [tm, ta, tb] = tokens.clone();
    let (mut m, wm) = WsClient::join(addr, &tm).await;
    let (mut a, wa) = WsClient::join(addr, &ta).await;
    let (mut b, wb) = WsClient::join(addr, &tb).await;
    let ids = [pid(&wm), pid(&wa), pid(&wb)];
    for (c, id) in [(&mut a, &ids[1]), (&mut b, &ids[2])] {
        c.send(json!({"type": "consent", "agreement_hash": HASH}))
            .await;
        assert_eq!(c.recv().await, ServerMessage::ConsentRecorded);
        m.send(json!({"type": "admit", "participant_id": id.as_str()}))
            .await;
        c.recv_until(|x| matches!(x, ServerMessage::Channel { .. }))
            .await;
    }
    a.send(json!({"type": "relay", "to": {"channel": "joint"}, "data": canary}))
        .await;
    b.recv_until(|x| matches!(x, ServerMessage::Relayed { data, .. } if data == canary))
        .await;
    m.send(json!({"type": "move", "participant_id": ids[1].as_str(), "channel_id": "caucus-A"}))
        .await;
    a.recv_until(
        |x| matches!(x, ServerMessage::Channel { channel } if channel.id.as_str() == "caucus-A"),
    )
    .await;
    m.send(json!({"type": "end"})).await;
    for c in [&mut m, &mut a, &mut b] {
        assert_eq!(c.closed().await, 4000);
    }
    FlowTrace {
        participant_ids: ids.iter().map(|p| p.as_str().to_owned()).collect(),
        client_addrs: vec![m.local_addr, a.local_addr, b.local_addr],
        tokens: tokens.to_vec(),
    }
}

/// `confer audit export --session` of the data dir `dir` (its server stopped or flushed): the
/// session's events, the command having succeeded.
pub fn audit_events(dir: &Path, session: &str) -> Vec<serde_json::Value> {
    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&[
        "audit",
        "export",
        "--dev",
        "--data-dir",
        d,
        "--session",
        session,
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["events"].as_array().unwrap().clone()
}
