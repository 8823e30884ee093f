//! A Confer server of the benchmark's own in a separate process: the release `confer` binary
//! (built here with cargo if it is missing or stale), `serve --dev` on 127.0.0.1 ephemeral
//! ports, in a fresh data directory; so its memory (`/proc/PID/status`) and CPU time
//! (`/proc/PID/task/*/schedstat`) are its own, not the load clients'.
//!
//! The benchmark writes the signing key before the server starts and mints the invites with
//! it ([`Invites`]), as `confer token create` would. The child is killed when the
//! [`ConferProcess`] is dropped (every exit path of the benchmark, panics included) and, where
//! util-linux's `setpriv` exists, also when the benchmark's main thread dies
//! (`--pdeathsig KILL`), so a killed benchmark leaves no server behind.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use confer_proto::{Role, SessionId, Side};
use confer_server::token::{Tokens, random_id};

/// How long the server may take to print its banner.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long building the server may take (from scratch, on a busy 2-core box, a few minutes).
const BUILD_PATIENCE: Duration = Duration::from_secs(900);

/// A running `confer serve --dev`; killed, and its data directory removed, on drop.
#[derive(Debug)]
pub(crate) struct ConferProcess {
    child: Child,
    invites: Invites,
    dir: PathBuf,
}

/// Where the server listens, and the key its invites are signed with.
#[derive(Debug, Clone)]
pub(crate) struct Invites {
    pub(crate) addr: SocketAddr,
    tokens: Arc<Tokens>,
}

impl Invites {
    /// A single-use invite of `role` (and `side`) to `session`, valid for 10 minutes.
    pub(crate) fn invite(&self, session: &SessionId, role: Role, side: Option<Side>) -> String {
        self.tokens.invite(session, role, side, 600).0
    }
}

impl ConferProcess {
    /// Starts the server with these `CONFER_*` configuration overrides (the benchmark's own
    /// `CONFER_*` variables are not passed on: the child binds 127.0.0.1 only, whatever they
    /// say). The child inherits this process's file limit (see [`raise_nofile`]).
    pub(crate) fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = binary()?;
        let dir = std::env::temp_dir().join(format!("confer-bench-server-{}", random_id()));
        std::fs::create_dir_all(&dir)?;
        let started = Self::spawn(&bin, &dir, env);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn spawn(bin: &Path, dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let tokens = Arc::new(Tokens::load_or_create(&dir.join("signing.key"))?);
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CONFER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied())
            .args(["serve", "--dev", "--data-dir"])
            .arg(dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--media-listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take();
        // From here on, drop kills it.
        let mut server = Self {
            child,
            invites: Invites {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                tokens,
            },
            dir: dir.to_owned(),
        };
        let stdout = stdout.context("no stdout")?;
        let (found, addr) = std::sync::mpsc::channel();
        // Reads the banner for the address, then drains stdout until the server exits.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("Signalling: ws://")
                    && let Some(a) = rest.strip_suffix("/ws")
                {
                    let _ = found.send(a.to_owned());
                }
            }
        });
        let addr = addr
            .recv_timeout(START_PATIENCE)
            .map_err(|_| anyhow::anyhow!("the server did not start: {}", server.log_tail()))?;
        server.invites.addr = addr.parse()?;
        Ok(server)
    }

    pub(crate) fn invites(&self) -> Invites {
        self.invites.clone()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory now, KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// CPU time of each of the server's threads so far.
    pub(crate) fn cpu(&self) -> anyhow::Result<ThreadCpu> {
        ThreadCpu::read(Path::new(&format!("/proc/{}/task", self.pid())), None)
    }

    /// The end of the server's log (for an error message).
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for ConferProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU time per thread (ns on CPU, from `schedstat`), to take differences of.
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadCpu(HashMap<String, u64>);

impl ThreadCpu {
    /// The threads under `tasks` (a `/proc/PID/task` directory), or only those named `name`.
    pub(crate) fn read(tasks: &Path, name: Option<&str>) -> anyhow::Result<Self> {
        let mut by_thread = HashMap::new();
        for entry in std::fs::read_dir(tasks)? {
            let path = entry?.path();
            if let Some(name) = name {
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                if comm.trim() != name {
                    continue;
                }
            }
            // A thread that ended meanwhile has no file any more: it has nothing to add.
            let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else {
                continue;
            };
            if let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) {
                by_thread.insert(path.to_string_lossy().into_owned(), ns);
            }
        }
        Ok(Self(by_thread))
    }

    /// CPU time used since `before` by the threads alive now (a thread born meanwhile counts
    /// whole; one that ended meanwhile is lost, which for an idle pool thread is nothing).
    pub(crate) fn since(&self, before: &Self) -> Duration {
        let ns = self
            .0
            .iter()
            .map(|(t, ns)| ns.saturating_sub(before.0.get(t).copied().unwrap_or(0)))
            .sum();
        Duration::from_nanos(ns)
    }
}

/// Raises this process's open-file limit (soft, and hard if needed and allowed) to at least
/// `want`; returns the soft limit now in force, which may be lower (children inherit it).
pub(crate) fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok(soft);
    }
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as far as the hard limit.
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard)?;
    Ok(want.min(hard))
}

/// The release `confer` binary, built (once per run) by `cargo build --release --locked -p
/// confer-server --bin confer`, which does nothing when it is up to date. If cargo cannot
/// build it (or is still at it after [`BUILD_PATIENCE`], e.g. waiting for another build's
/// lock), an existing binary is used, with a warning.
fn binary() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "confer-server",
            "--bin",
            "confer",
        ])
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut cargo| {
            let deadline = std::time::Instant::now() + BUILD_PATIENCE;
            loop {
                if let Some(status) = cargo.try_wait()? {
                    return Ok(status.success());
                }
                if std::time::Instant::now() > deadline {
                    let _ = cargo.kill();
                    let _ = cargo.wait();
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .unwrap_or(false);
    // Cargo puts it beside this binary when both were built into the same target directory.
    let candidates = [
        std::env::current_exe()?.with_file_name("confer"),
        root.join("target/release/confer"),
    ];
    let found = candidates.into_iter().find(|p| p.is_file());
    match (built, found) {
        (true, Some(bin)) => Ok(bin),
        (false, Some(bin)) => {
            eprintln!(
                "warning: cargo could not build confer; using {}, which may be stale",
                bin.display()
            );
            Ok(bin)
        }
        (_, None) => anyhow::bail!(
            "no release confer binary: run `cargo build --release -p confer-server --bin confer`"
        ),
    }
}
