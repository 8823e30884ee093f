//! `confer-bot`: a headless Confer participant for demos, tests and load.
//!
//! It joins with a token or invite link, speaks confer/1, sends a self-checking encrypted chat
//! message every so often once its channel is secured, and on exit prints one JSON line:
//! `messages_sent`, `messages_received`, `messages_verified`, `decrypt_failures`, `alarms`, ...

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use confer_client::driver::{BotOptions, run_bot};
use confer_client::media::MediaOptions;
use confer_client::{CoreConfig, agreement_hash};
use confer_proto::{Role, Side};

/// The agreement text bots acknowledge unless told otherwise.
const DEFAULT_AGREEMENT: &str =
    "Confer demo agreement to mediate: confidential; no recording by anyone; nobody else present.";

#[derive(Debug, Parser)]
#[command(
    name = "confer-bot",
    version,
    about = "A headless Confer participant (signalling + confer/1 end-to-end encryption)."
)]
struct Args {
    /// Signalling URL, e.g. ws://127.0.0.1:7880/ws.
    #[arg(long)]
    url: String,
    /// Cluster mode: another node's signalling URL to resume on when the connection drops
    /// without a final close (repeat for more; `--url` is tried first). Behind a load balancer
    /// none is needed: the bot resumes on `--url`.
    #[arg(long, value_name = "URL")]
    failover: Vec<String>,
    /// An invite token, or an invite link (`.../join#t=...&k=...&m=...`). A link holds
    /// secrets: prefer `--token-file`, which keeps it out of the process list.
    #[arg(
        long,
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// Read the token or invite link from this file (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
    /// The display name to give (sent only end to end; the server sees a commitment).
    #[arg(long)]
    name: Option<String>,
    /// The role the token is for: mediator, party or counsel (the token decides; this checks it).
    #[arg(long)]
    role: Role,
    /// How long to run before leaving (parties) or ending the session (mediators).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Milliseconds between chat messages once the channel is secured.
    #[arg(long, default_value_t = 500)]
    chat_every_ms: u64,
    /// The agreement text to present (mediator) or acknowledge (others); its SHA-256 is what counts.
    #[arg(long, default_value = DEFAULT_AGREEMENT)]
    agreement: String,
    /// Mediators: mint an invite link for ROLE[:SIDE] (repeatable), printed on stderr.
    #[arg(long = "invite", value_name = "ROLE[:SIDE]")]
    invites: Vec<String>,
    /// Mediators: also admit arrivals with a bare token (no invite secret, e.g. from
    /// `confer token create`). Off by default: the server could have minted such a token.
    #[arg(long)]
    admit_bare_tokens: bool,
    /// Media: connect to the SFU and publish a microphone and a camera track of synthetic,
    /// self-describing frames sealed in confer/1, and receive and verify everyone else's.
    #[arg(long)]
    publish: bool,
    /// Media: connect to the SFU and receive and verify, without publishing.
    #[arg(long, conflicts_with = "publish")]
    receive: bool,
    /// Media: milliseconds between frames on each published track.
    #[arg(long, default_value_t = 50)]
    frame_every_ms: u64,
    /// Media: receive slots per kind (audio and video); the most publishers heard at once.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Media: use only the TURN relay the server hands out (as a participant whose network
    /// blocks direct UDP to the SFU would); fails to connect if the server offers none.
    #[arg(long)]
    relay_only: bool,
}

fn parse_invite(s: &str) -> Result<(Role, Option<Side>), String> {
    match s.split_once(':') {
        Some((r, side)) => Ok((r.parse()?, Some(side.parse()?))),
        None => Ok((s.parse()?, None)),
    }
}

/// The local address for media: loopback when the server is on this machine, else any.
fn media_bind(url: &str) -> std::net::IpAddr {
    let local = [
        "ws://127.0.0.1",
        "ws://localhost",
        "wss://127.0.0.1",
        "wss://localhost",
    ];
    if local.iter().any(|p| url.starts_with(p)) {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        std::net::IpAddr::from([0, 0, 0, 0])
    }
}

fn read_token(args: &Args) -> Result<String, String> {
    if let Some(t) = &args.token {
        return Ok(t.clone());
    }
    let Some(path) = &args.token_file else {
        return Err("give --token or --token-file".into());
    };
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
    };
    let t = text.trim().to_owned();
    if t.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(t)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let token = match read_token(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("confer-bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let invites: Result<Vec<_>, _> = args.invites.iter().map(|s| parse_invite(s)).collect();
    let invites = match invites {
        Ok(i) => i,
        Err(e) => {
            eprintln!("confer-bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = CoreConfig::new(agreement_hash(&args.agreement));
    config.auto_admit = args.role == Role::Mediator;
    config.admit_without_invite_secret = args.admit_bare_tokens;
    config.expected_role = Some(args.role);
    config.display_name = Some(
        args.name
            .clone()
            .unwrap_or_else(|| format!("{} bot", args.role.as_str())),
    );
    let link_base = args
        .url
        .replace("ws://", "http://")
        .replace("wss://", "https://")
        .trim_end_matches("/ws")
        .to_owned();
    let bind = media_bind(&args.url);
    let opts = BotOptions {
        url: args.url,
        failover: args.failover,
        token,
        config,
        seconds: args.seconds,
        chat_every: Duration::from_millis(args.chat_every_ms.max(10)),
        invites,
        link_base,
        media: (args.publish || args.receive).then_some(MediaOptions {
            publish: args.publish,
            audio_slots: args.slots,
            video_slots: args.slots,
            bind,
            ice_servers: Vec::new(),
            relay_only: args.relay_only,
        }),
        frame_every: Duration::from_millis(args.frame_every_ms.max(5)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confer-bot: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_bot(opts)) {
        Ok(summary) => {
            if !summary.role.is_empty() && summary.role != args.role.as_str() {
                eprintln!(
                    "confer-bot: the token is for a {}, not a {}",
                    summary.role,
                    args.role.as_str()
                );
            }
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("confer-bot: {e:#}");
            ExitCode::FAILURE
        }
    }
}
