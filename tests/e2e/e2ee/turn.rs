//! TURN: a participant whose network allows only the TURN relay still gets its media through.
//! A real coturn (`turnserver`, installed by `scripts/install-deps.sh`) on 127.0.0.1 shares a
//! secret with the server; the server hands short-lived credentials out in `welcome`; the
//! clients' webrtc-rs peers use relay candidates only.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use confer_e2e::{TestServer, temp_dir};
use confer_proto::{ChannelId, Role, ServerMessage, Side};
use tokio::net::UdpSocket;
use tokio::process::{Child, Command};

use super::harness::{Peer, PeerState};

struct Coturn {
    _child: Child,
    port: u16,
    relay_ports: (u16, u16),
}

async fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.local_addr().unwrap().port()
}

/// A STUN binding request: answered once coturn listens.
async fn stun_answers(port: u16) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(b"confer-probe");
    if s.send_to(&req, ("127.0.0.1", port)).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(
        tokio::time::timeout(Duration::from_millis(200), s.recv_from(&mut buf)).await,
        Ok(Ok((n, _))) if n >= 20 && buf[..2] == [0x01, 0x01]
    )
}

async fn start_coturn(secret: &str, dir: &Path) -> Coturn {
    let port = free_udp_port().await;
    // A relay port range of our own, away from the ephemeral ports the rest use.
    let base = 40_000 + (port % 1000) * 20;
    let relay_ports = (base, base + 19);
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            &format!("--min-port={}", relay_ports.0),
            &format!("--max-port={}", relay_ports.1),
            "--use-auth-secret",
            &format!("--static-auth-secret={secret}"),
            "--realm=confer.test",
            "--allow-loopback-peers",
            "--no-tcp",
            "--no-tls",
            "--no-dtls",
            "--no-tcp-relay",
            "--no-cli",
            "--fingerprint",
            &format!("--pidfile={}", dir.join("turnserver.pid").display()),
            &format!("--log-file={}", dir.join("turn.log").display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start coturn's turnserver ({e}); run `make deps` (scripts/install-deps.sh installs coturn)")
        });
    let ready = async {
        while !stun_answers(port).await {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .expect("coturn answers STUN within 10 s");
    Coturn {
        _child: child,
        port,
        relay_ports,
    }
}

async fn join_relay_only(ts: &TestServer, role: Role, side: Option<Side>) -> Peer {
    super::media::join_media_with(ts, role, side, 2, true).await
}

/// The candidates in the media offer this peer sent: (type, port).
fn offered_candidates(s: &PeerState) -> Vec<(String, u16)> {
    let offer = s
        .outbound
        .iter()
        .find(|m| m.contains("\"media_offer\""))
        .expect("a media offer was sent");
    let v: serde_json::Value = serde_json::from_str(offer).unwrap();
    v["sdp"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            let typ = f.iter().position(|x| *x == "typ").map(|i| f[i + 1]);
            (typ.unwrap_or("").to_owned(), f[5].parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn media_reaches_the_sfu_through_coturn_with_credentials_from_welcome() {
    let dir = temp_dir("turn");
    let secret = format!("turn-secret-{}", confer_server::token::random_id());
    let turn = start_coturn(&secret, &dir).await;
    let secret_file = dir.join("turn.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let url = format!("turn:127.0.0.1:{}?transport=udp", turn.port);
    let ts = TestServer::start(|c| {
        c.turn_urls = vec![url.clone()];
        c.turn_secret_file = secret_file.clone();
        c.turn_credential_ttl_secs = 600;
    })
    .await;

    let mut m = join_relay_only(&ts, Role::Mediator, None).await;
    m.secured_in("joint").await;
    let mut a = join_relay_only(&ts, Role::Party, Some(Side::A)).await;
    a.secured_in("joint").await;
    for p in [&mut m, &mut a] {
        p.until_true(|s| {
            s.core.roster_members(&ChannelId::joint()).len() == 2
                && s.media_connected
                && s.media.slot_publishers().len() == 2
        })
        .await;
        p.with(|s| {
            // The welcome carried the TURN server, with a credential that is not the secret.
            let servers = s
                .inbound
                .iter()
                .find_map(|m| match m {
                    ServerMessage::Welcome { ice_servers, .. } => Some(ice_servers.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(servers.len(), 1);
            assert_eq!(servers[0].urls, vec![url.clone()]);
            // user name = expiry (now + the configured 600 s) : random.
            let expiry: u64 = servers[0]
                .username
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert!(
                (now + 540..=now + 600).contains(&expiry),
                "{expiry} vs {now}"
            );
            // Only relay candidates, on coturn's relay ports: the SFU was reached through TURN.
            let cands = offered_candidates(s);
            assert!(!cands.is_empty());
            for (typ, port) in cands {
                assert_eq!(typ, "relay");
                assert!(
                    (turn.relay_ports.0..=turn.relay_ports.1).contains(&port),
                    "{port}"
                );
            }
        });
    }

    for p in [&m, &a] {
        p.publish(true);
    }
    for p in [&mut m, &mut a] {
        p.until_true(|s| s.media.stats.frames_verified >= 40).await;
    }
    for p in [&m, &a] {
        p.publish(false);
        p.with(|s| {
            assert_eq!(s.core.stats().decrypt_failures, 0);
            assert_eq!(s.media.stats.frames_corrupt, 0);
        });
    }

    // A server whose secret coturn does not share: its credentials are refused, so a
    // relay-only client gathers no candidate at all (and could not reach the SFU).
    let wrong_file = dir.join("wrong.secret");
    std::fs::write(&wrong_file, "not-the-secret").unwrap();
    let ts2 = TestServer::start(|c| {
        c.turn_urls = vec![url.clone()];
        c.turn_secret_file = wrong_file.clone();
    })
    .await;
    let mut x = join_relay_only(&ts2, Role::Mediator, None).await;
    x.until_true(|s| s.outbound.iter().any(|m| m.contains("\"media_offer\"")))
        .await;
    x.with(|s| assert_eq!(offered_candidates(s), vec![]));
    let _ = std::fs::remove_dir_all(&dir);
}
