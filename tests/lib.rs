//! Shared set-up for Confer's end-to-end tests: a real server on 127.0.0.1:0 in this process,
//! with its own temporary data directory.

use std::path::PathBuf;

use confer_proto::{Role, SessionId, Side};
use confer_server::{Config, Server};

pub use confer_testkit::ws::{Event, WsClient};

/// A SHA-256 as a client would report for the agreement it acknowledged.
pub const AGREEMENT_HASH: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

/// A running server and its data directory (removed on drop).
#[derive(Debug)]
pub struct TestServer {
    /// The server.
    pub server: Server,
    /// Its data directory.
    pub dir: PathBuf,
    /// The session the helpers mint tokens for.
    pub session: SessionId,
}

/// A fresh, unique temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "confer-{tag}-{}",
        confer_server::token::random_id()
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl TestServer {
    /// Starts a server with the dev defaults on ephemeral ports, after `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = temp_dir("e2e");
        let mut config = Config::dev(dir.clone());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.metrics_listen = "127.0.0.1:0".parse().expect("addr");
        config.media_listen = "127.0.0.1:0".parse().expect("addr");
        tweak(&mut config);
        let server = Server::start(config).await.expect("server starts");
        let session =
            SessionId::new(format!("s-{}", &confer_server::token::random_id()[..8])).expect("id");
        Self {
            server,
            dir,
            session,
        }
    }

    /// An invite for this test's session.
    pub fn invite(&self, role: Role, side: Option<Side>) -> String {
        self.server.invite(&self.session, role, side, 600)
    }

    /// Connects and says hello with a fresh invite.
    pub async fn join(
        &self,
        role: Role,
        side: Option<Side>,
    ) -> (WsClient, confer_proto::ServerMessage) {
        WsClient::join(self.server.addr(), &self.invite(role, side)).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
