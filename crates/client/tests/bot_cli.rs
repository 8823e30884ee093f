#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `confer-bot` from a shell, as the README describes: a mediator bot mints invite links, two
//! party bots join through them, and all three hold an encrypted chat and exchange encrypted
//! media (webrtc-rs peers through the server's SFU) through a real server.

use std::process::Stdio;

use confer_proto::{Role, SessionId};
use confer_server::{Config, Server};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BOT: &str = env!("CARGO_BIN_EXE_confer-bot");

#[tokio::test]
async fn a_mediator_bot_and_two_party_bots_chat_and_exchange_media_end_to_end() {
    let dir =
        std::env::temp_dir().join(format!("confer-bot-{}", confer_server::token::random_id()));
    let mut config = Config::dev(dir.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.media_listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(config).await.unwrap();
    let url = format!("ws://{}/ws", server.addr());
    let token = server.invite(
        &SessionId::new("bot-demo").unwrap(),
        Role::Mediator,
        None,
        600,
    );

    let mut mediator = Command::new(BOT)
        .args([
            "--url",
            &url,
            "--token",
            &token,
            "--role",
            "mediator",
            "--seconds",
            "6",
            "--chat-every-ms",
            "200",
        ])
        .args(["--invite", "party:A", "--invite", "party:B", "--publish"])
        .args(["--name", "Mediator Mo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(mediator.stderr.take().unwrap()).lines();
    let mut links = Vec::new();
    while links.len() < 2 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some((_, link)) = line.split_once(": http://") {
            links.push(format!("http://{link}"));
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The first party reads its link from a file (secrets stay out of `ps`).
    let link_file = dir.join("link-a");
    std::fs::write(&link_file, format!("{}\n", links[0])).unwrap();
    let names = ["Party Ada", "Party Bé"];
    let parties: Vec<_> = links
        .iter()
        .enumerate()
        .map(|(i, link)| {
            let token: [&str; 2] = if i == 0 {
                ["--token-file", link_file.to_str().unwrap()]
            } else {
                ["--token", link]
            };
            Command::new(BOT)
                .args(token)
                .args(["--name", names[i]])
                .args([
                    "--url",
                    &url,
                    "--role",
                    "party",
                    "--seconds",
                    "3",
                    "--chat-every-ms",
                    "200",
                    "--publish",
                ])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut summaries = Vec::new();
    for p in parties {
        summaries.push(p.wait_with_output().await.unwrap());
    }
    summaries.push(mediator.wait_with_output().await.unwrap());
    let all = ["Party Ada", "Party Bé", "Mediator Mo"];
    for (i, out) in summaries.iter().enumerate() {
        assert!(out.status.success());
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(v["decrypt_failures"], 0, "{v}");
        assert_eq!(v["alarms"], serde_json::json!([]), "{v}");
        assert!(v["messages_sent"].as_u64().unwrap() > 0, "{v}");
        assert!(v["messages_verified"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["messages_received"], v["messages_verified"], "{v}");
        assert_eq!(v["keys_deleted"], true, "{v}");
        // Display names: each bot saw the other two, each matching its roster commitment.
        let mut want: Vec<&str> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| *n)
            .collect();
        want.sort();
        assert_eq!(v["names"], serde_json::json!(want), "{v}");
        assert_eq!(v["names_rejected"], 0, "{v}");
        // Media: each bot sent frames and verified, byte for byte, frames of the other two.
        assert!(v["frames_sent"].as_u64().unwrap() > 20, "{v}");
        assert!(v["frames_verified"].as_u64().unwrap() > 20, "{v}");
        assert_eq!(v["publishers_verified"], 2, "frames of both others: {v}");
        assert_eq!(v["media_decrypt_failures"], 0, "{v}");
        let received = v["frames_received"].as_u64().unwrap();
        let accounted = v["frames_verified"].as_u64().unwrap()
            + v["frames_unattributed"].as_u64().unwrap()
            + v["frames_dropped_at_exit"].as_u64().unwrap();
        assert_eq!(
            received, accounted,
            "every packet verified or accounted for: {v}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
