#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

//! An in-process server whose clock is a manual one, in a temp data dir removed on drop: what
//! the console and document tests start (their helpers add their own methods to it).

use std::net::SocketAddr;
use std::path::PathBuf;

use confer_server::clock::Clock;
use confer_server::{Config, Server};

/// Where the manual clock starts (a 30 s TOTP step boundary).
pub const T0: u64 = 1_800_000_000;

/// An in-process server with a manual clock and a temp data dir.
pub struct ManualServer {
    pub server: Server,
    pub clock: Clock,
    pub dir: PathBuf,
}

impl ManualServer {
    pub async fn start(tag: &str, edit: impl FnOnce(&mut Config)) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "confer-{tag}-{}",
            confer_server::token::random_id()
        ));
        let mut config = Config::dev(dir.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics_listen = "127.0.0.1:0".parse().unwrap();
        config.media_enabled = false;
        edit(&mut config);
        let clock = Clock::manual(T0);
        let server = Server::start_with_clock(config, clock.clone())
            .await
            .unwrap();
        Self { server, clock, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

impl Drop for ManualServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
