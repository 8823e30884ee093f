//! A Janus of the benchmark's own (Debian's `janus`, scripts/install-bench-deps.sh) and the
//! few calls of its HTTP API the benchmark makes.
//!
//! [`Janus::start`] writes a minimal configuration into a fresh temporary folder: only the
//! VideoRoom plugin and the HTTP transport are loadable (the plugin and transport folders hold
//! links to those two libraries alone; no event handler, no logger), one room for up to six
//! publishers (Opus, VP8, no recording, no bitrate cap, no periodic keyframe request), no
//! STUN or TURN, no IPv6, ICE on the one interface of its network namespace, RTP ports
//! 20000–20999, one event loop for every handle (`event_loops = 1`: one core's worth, as
//! Confer's forwarder gets), no session timeout, errors only in its log. Janus then runs in
//! that namespace (`ip netns exec`) pinned to one core (`taskset`, inherited by every thread it
//! starts), and is killed when the [`Janus`] is dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The room every run joins.
pub(crate) const ROOM: u64 = 1234;
const HTTP_PORT: u16 = 8088;
/// A Janus that does not answer its API in this long did not start.
const START_LIMIT: Duration = Duration::from_secs(15);
/// The longest the benchmark waits for one reply of Janus's.
const REPLY_LIMIT: Duration = Duration::from_secs(10);

/// A running Janus.
pub(crate) struct Janus {
    child: Child,
    dir: PathBuf,
    api: SocketAddrV4,
}

impl std::fmt::Debug for Janus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Janus").field("api", &self.api).finish()
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        // Ours, by its id: `ip netns exec` and `taskset` both exec, so the child is Janus.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where Debian (or a build with the default prefix) puts Janus's plugins and transports.
fn library_dir() -> anyhow::Result<PathBuf> {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/janus"),
        "/usr/lib/janus".to_owned(),
        "/usr/local/lib/janus".to_owned(),
        "/opt/janus/lib/janus".to_owned(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| d.join("plugins/libjanus_videoroom.so").exists())
    .context("Janus's VideoRoom plugin not found: run scripts/install-bench-deps.sh")
}

fn config(dir: &Path, addr: Ipv4Addr) -> [(&'static str, String); 3] {
    let d = dir.display();
    [
        (
            "janus.jcfg",
            format!(
                r#"general: {{
	configs_folder = "{d}/conf"
	plugins_folder = "{d}/plugins"
	transports_folder = "{d}/transports"
	events_folder = "{d}/events"
	loggers_folder = "{d}/loggers"
	debug_level = 2
	session_timeout = 0
	event_loops = 1
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "20000-20999"
}}
nat: {{
	nice_debug = false
	ice_lite = false
	ice_tcp = false
	full_trickle = false
	ignore_mdns = true
	ice_enforce_list = "{addr}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
"#
            ),
        ),
        (
            "janus.transport.http.jcfg",
            format!(
                r#"general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {HTTP_PORT}
	ip = "{addr}"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"#
            ),
        ),
        (
            "janus.plugin.videoroom.jcfg",
            format!(
                r#"general: {{
}}
room-{ROOM}: {{
	description = "confer-bench"
	publishers = 6
	bitrate = 0
	fir_freq = 0
	audiocodec = "opus"
	videocodec = "vp8"
	record = false
}}
"#
            ),
        ),
    ]
}

impl Janus {
    /// Starts Janus in network namespace `netns`, its API and ICE on `addr`, pinned to `core`;
    /// returns once its API answers.
    pub(crate) fn start(netns: &str, addr: Ipv4Addr, core: usize) -> anyhow::Result<Self> {
        let lib = library_dir()?;
        let dir = std::env::temp_dir().join(format!("confer-bench-janus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["conf", "plugins", "transports", "events", "loggers"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for so in [
            "plugins/libjanus_videoroom.so",
            "transports/libjanus_http.so",
        ] {
            std::os::unix::fs::symlink(lib.join(so), dir.join(so))?;
        }
        for (name, text) in config(&dir, addr) {
            std::fs::write(dir.join("conf").join(name), text)?;
        }
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "taskset", "-c", &core.to_string()])
            .arg("janus")
            .arg("--configs-folder")
            .arg(dir.join("conf"))
            .arg("--config")
            .arg(dir.join("conf/janus.jcfg"))
            .arg("--log-file")
            .arg(dir.join("janus.log"))
            .arg("--disable-stdout")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("could not start `ip netns exec ... janus`")?;
        let mut janus = Self {
            child,
            dir,
            api: SocketAddrV4::new(addr, HTTP_PORT),
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = janus.child.try_wait()? {
                bail!("Janus exited at start ({status}): {}", janus.log_tail());
            }
            if http(janus.api, "GET", "/janus/info", None).is_ok() {
                return Ok(janus);
            }
            if Instant::now() > deadline {
                bail!(
                    "Janus's API did not answer in {START_LIMIT:?}: {}",
                    janus.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of Janus's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join(" / ")
    }

    /// Janus's threads so far (the sums of `/proc/PID/task/*/schedstat`): time on a CPU and
    /// time runnable but waiting for one. A thread that ended is no longer counted; none
    /// ends while a trace is replayed (its threads live as long as the process).
    pub(crate) fn sched(&self) -> (Duration, Duration) {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()));
        tasks
            .into_iter()
            .flatten()
            .flatten()
            .map(|t| super::io::sched(t.path().join("schedstat")))
            .fold((Duration::ZERO, Duration::ZERO), |(c, w), (c1, w1)| {
                (c + c1, w + w1)
            })
    }

    /// A new API session.
    pub(crate) fn session(&self) -> anyhow::Result<Session> {
        let r = http(
            self.api,
            "POST",
            "/janus",
            Some(&json!({"janus": "create", "transaction": "create"})),
        )?;
        let id = r["data"]["id"]
            .as_u64()
            .with_context(|| format!("no session id in {r}"))?;
        Ok(Session {
            api: self.api,
            id,
            txn: 0,
        })
    }
}

/// A Janus API session, its handles attached to the VideoRoom plugin.
#[derive(Debug)]
pub(crate) struct Session {
    api: SocketAddrV4,
    id: u64,
    txn: u64,
}

/// The reply to a plugin message: the plugin's data and its JSEP, if any.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) data: Value,
    pub(crate) jsep: Option<Value>,
}

impl Session {
    fn transaction(&mut self) -> String {
        self.txn += 1;
        format!("t{}", self.txn)
    }

    /// A new handle on the VideoRoom plugin.
    pub(crate) fn attach(&mut self) -> anyhow::Result<u64> {
        let t = self.transaction();
        let r = http(
            self.api,
            "POST",
            &format!("/janus/{}", self.id),
            Some(&json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": t})),
        )?;
        r["data"]["id"]
            .as_u64()
            .with_context(|| format!("no handle id in {r}"))
    }

    /// Sends `body` (and `jsep`) to the plugin on `handle`; waits for the plugin's reply (an
    /// event with the same transaction, read by long polls) and fails on an error reply.
    pub(crate) fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> anyhow::Result<Reply> {
        let t = self.transaction();
        let mut msg = json!({"janus": "message", "body": body, "transaction": t});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let r = http(
            self.api,
            "POST",
            &format!("/janus/{}/{handle}", self.id),
            Some(&msg),
        )?;
        let reply = match r["janus"].as_str() {
            Some("success") => r,
            Some("ack") => self.event(&t)?,
            _ => bail!("Janus refused {body}: {r}"),
        };
        let data = reply["plugindata"]["data"].clone();
        if data.get("error").is_some() {
            bail!("VideoRoom refused {body}: {data}");
        }
        Ok(Reply {
            data,
            jsep: reply.get("jsep").cloned(),
        })
    }

    /// The event carrying transaction `t` (other events are dropped: nothing here waits for
    /// them).
    fn event(&mut self, t: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + REPLY_LIMIT;
        while Instant::now() < deadline {
            let r = http(
                self.api,
                "GET",
                &format!("/janus/{}?maxev=10", self.id),
                None,
            )?;
            let events = match r {
                Value::Array(v) => v,
                one => vec![one],
            };
            if let Some(e) = events.into_iter().find(|e| e["transaction"] == t) {
                return Ok(e);
            }
        }
        bail!("no reply from Janus to transaction {t} in {REPLY_LIMIT:?}")
    }

    /// Ends the session (Janus hangs up its handles' peer connections).
    pub(crate) fn destroy(mut self) -> anyhow::Result<()> {
        let t = self.transaction();
        http(
            self.api,
            "POST",
            &format!("/janus/{}", self.id),
            Some(&json!({"janus": "destroy", "transaction": t})),
        )?;
        Ok(())
    }
}

/// One HTTP/1.1 request with `Connection: close`; the reply's body as JSON.
fn http(to: SocketAddrV4, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(2))?;
    // Janus holds a long poll for up to 30 s when no event is queued.
    s.set_read_timeout(Some(Duration::from_secs(35)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("no end of HTTP header")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("HTTP {status} from Janus for {method} {path}");
    }
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_owned()
    };
    Ok(serde_json::from_str(&body)?)
}

/// The body of a chunked transfer (RFC 9112 §7.1), without extensions or trailers.
fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("a chunk size line")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("a whole chunk")?);
        s = rest.get(size + 2..).context("a chunk's end")?;
    }
}
