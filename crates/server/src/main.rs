//! `confer`: the Confer server and its operator commands.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use confer_proto::{Role, SessionId, Side};
use confer_server::{Config, Server, accounts, audit, token};

/// Confer: end-to-end encrypted video mediation. This binary is the signalling server.
#[derive(Debug, Parser)]
#[command(name = "confer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server.
    Serve {
        #[command(flatten)]
        source: Source,
        /// Listen address for HTTP and the WebSocket (overrides the config).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Listen address for Prometheus metrics (overrides the config).
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// UDP address for the SFU (overrides the config).
        #[arg(long)]
        media_listen: Option<std::net::SocketAddr>,
    },
    /// Mint tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Inspect and maintain the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Administer mediator and co-mediator accounts (the console's logins).
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Erase what the data directory holds about a session.
    Session {
        #[command(subcommand)]
        command: SessionAdminCmd,
    },
    /// Print the web client's build hash (what its "About this client" screen shows), from the
    /// files on disk; fails when the folder's client-manifest.json states another one.
    ClientHash {
        #[command(flatten)]
        source: Source,
        /// The built web client (default: the config's web_root; with --dev, web-client/dist).
        #[arg(long, value_name = "DIR")]
        web_root: Option<PathBuf>,
        /// Also print every file's SHA-256, as sha256sum does.
        #[arg(long)]
        files: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Print one single-use invite token (a JWT) on stdout.
    Create {
        #[command(flatten)]
        source: Source,
        /// The session id (1-64 characters of A-Z a-z 0-9 _ -). A mediator's first hello creates it.
        #[arg(long)]
        session: String,
        /// mediator, co_mediator, party, counsel or observer.
        #[arg(long)]
        role: Role,
        /// The side (A, B, ...) for party and counsel.
        #[arg(long)]
        side: Option<Side>,
        /// Lifetime in seconds (default: the config's invite_ttl_secs).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Check the hash chain; exits non-zero and names the row when a row was altered or removed,
    /// or the anchor moved past rows younger than audit_retention_days.
    Verify {
        #[command(flatten)]
        source: Source,
        /// A head printed earlier by `confer audit head` (SEQ:HASH): fail unless the log still
        /// reaches that row with that hash.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<audit::Head>,
    },
    /// Verify the chain, then print its head as SEQ:HASH (keep it somewhere else).
    Head {
        #[command(flatten)]
        source: Source,
    },
    /// Print one session's events as JSON, or one participant's as JSON lines.
    Export {
        #[command(flatten)]
        source: Source,
        /// The session id: prints {"session": ID, "events": [...]}.
        #[arg(
            long,
            required_unless_present = "participant",
            conflicts_with = "participant"
        )]
        session: Option<String>,
        /// A participant id (a pseudonym from the log): prints that participant's rows, one
        /// JSON object per line (for a person's access request).
        #[arg(long)]
        participant: Option<String>,
    },
    /// Delete events older than audit_retention_days now.
    Purge {
        #[command(flatten)]
        source: Source,
    },
}

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Create an account and print its one-time enrolment link (the person sets a password and
    /// an authenticator app there, within enrolment_ttl_secs).
    Add {
        #[command(flatten)]
        source: Source,
        /// The login name: 1 to 64 characters of a-z 0-9 . _ - @ (compared in lower case).
        name: String,
        /// mediator (starts sessions) or co_mediator.
        #[arg(long, default_value = "mediator")]
        role: accounts::AccountRole,
    },
    /// Refuse the account's logins from now on and end its login sessions.
    Disable {
        #[command(flatten)]
        source: Source,
        /// The login name.
        name: String,
    },
    /// Remove the account's authenticator, recovery codes and logins, and print a new
    /// enrolment link (for a lost phone, or a stolen one).
    ResetMfa {
        #[command(flatten)]
        source: Source,
        /// The login name.
        name: String,
    },
    /// List the accounts: name, role, state, authenticator, recovery codes left. No secrets.
    List {
        #[command(flatten)]
        source: Source,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SessionAdminCmd {
    /// Remove every trace of a session from the data directory (its documents, all
    /// instances) but the audit log's content-free rows, and record the purge there. Run it
    /// once the session has ended.
    Purge {
        #[command(flatten)]
        source: Source,
        /// The session id.
        id: String,
    },
}

/// Where the configuration comes from: `--dev` (embedded defaults) or `--config FILE`.
#[derive(Debug, Args)]
struct Source {
    /// Development mode: everything on localhost, no external services, data in --data-dir.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// A TOML config file (see deploy/confer.sample.toml); CONFER_* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory (signing key, audit log); default ./.confer-dev with --dev.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl Source {
    fn load(&self) -> anyhow::Result<Config> {
        let config = match (&self.config, self.dev) {
            (Some(path), false) => Config::from_file(path)?,
            (None, true) => Config::dev(PathBuf::from(".confer-dev")),
            (None, false) => bail!(
                "say where the configuration comes from: --dev for a local development server, or --config FILE"
            ),
            (Some(_), true) => bail!("--dev and --config cannot be used together"),
        };
        let mut config = config.with_env(std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

/// The web client `--dev` serves when it has been built (`make build`) and `web_root` is empty.
const DEV_WEB_ROOT: &str = "web-client/dist";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("confer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Serve {
            source,
            listen,
            metrics_listen,
            media_listen,
        } => {
            let mut config = source.load()?;
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(l) = metrics_listen {
                config.metrics_listen = l;
            }
            if let Some(l) = media_listen {
                config.media_listen = l;
            }
            if source.dev && config.web_root.as_os_str().is_empty() {
                // `make run` builds the page here; without it `/` is the landing page.
                let built = PathBuf::from(DEV_WEB_ROOT);
                if built.join("index.html").is_file() {
                    config.web_root = built;
                }
            }
            init_logging(&config.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(config, source.dev))
        }
        Cmd::ClientHash {
            source,
            web_root,
            files,
        } => {
            let dir = match web_root {
                Some(d) => d,
                None => {
                    let config = source.load()?;
                    if !config.web_root.as_os_str().is_empty() {
                        config.web_root
                    } else if source.dev {
                        PathBuf::from(DEV_WEB_ROOT)
                    } else {
                        bail!(
                            "no web client to hash: give --web-root DIR (the built web-client/dist) or set web_root"
                        );
                    }
                }
            };
            if !dir.join("index.html").is_file() {
                bail!(
                    "{} holds no index.html: build the web client first (`make build`)",
                    dir.display()
                );
            }
            let h = confer_server::client_hash::compute(&dir)?;
            if files {
                for (path, sum) in &h.files {
                    println!("{sum}  {path}");
                }
            }
            println!("{}", h.build);
            match confer_server::client_hash::manifest_build(&dir) {
                Some(stated) if stated != h.build => {
                    eprintln!(
                        "confer: {} says the build is {stated}, but its files hash to {}: the folder was changed after the build",
                        confer_server::client_hash::MANIFEST,
                        h.build
                    );
                    Ok(ExitCode::FAILURE)
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Cmd::Token {
            command:
                TokenCmd::Create {
                    source,
                    session,
                    role,
                    side,
                    ttl,
                },
        } => {
            let config = source.load()?;
            let session = SessionId::new(session).context(
                "the session id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
            )?;
            if role.needs_side() && side.is_none() {
                bail!("a {} needs --side (A, B, ...)", role.as_str());
            }
            if !role.needs_side() && side.is_some() {
                bail!("a {} has no side; drop --side", role.as_str());
            }
            let tokens = token::Tokens::load_or_create(&config.signing_key_path())?;
            let ttl = ttl.unwrap_or(config.invite_ttl_secs);
            if ttl > config.invite_max_ttl_secs {
                bail!(
                    "--ttl {ttl} is longer than invite_max_ttl_secs ({}); pick a shorter lifetime",
                    config.invite_max_ttl_secs
                );
            }
            println!("{}", tokens.invite(&session, role, side, ttl).0);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Audit { command } => audit_cmd(command),
        Cmd::Session {
            command: SessionAdminCmd::Purge { source, id },
        } => session_purge(&source, &id),
        Cmd::User { command } => user_cmd(command),
    }
}

fn user_cmd(command: UserCmd) -> anyhow::Result<ExitCode> {
    let source = match &command {
        UserCmd::Add { source, .. }
        | UserCmd::Disable { source, .. }
        | UserCmd::ResetMfa { source, .. }
        | UserCmd::List { source, .. } => source,
    };
    let config = source.load()?;
    let now = token::unix_now();
    let db = accounts::Accounts::open(&config.accounts_path(), now)?;
    let name = |n: &str| {
        accounts::Name::new(n)
            .context("a login name is 1 to 64 characters of a-z, 0-9, '.', '_', '-' or '@'")
    };
    let base = config.public_url.trim_end_matches('/');
    let print_link = |e: &accounts::Enrolment, who: &accounts::Name| {
        println!("{}", e.link(base));
        eprintln!(
            "Send this link to {} privately; it works once, within {} hours. There they choose a password, set up an authenticator app, and keep ten recovery codes.",
            who.as_str(),
            config.enrolment_ttl_secs.div_ceil(3600)
        );
    };
    match command {
        UserCmd::Add { name: n, role, .. } => {
            let n = name(&n)?;
            match db.add(&n, role, now, config.enrolment_ttl_secs) {
                Ok(e) => print_link(&e, &n),
                Err(accounts::AccountError::Exists) => bail!(
                    "an account named {} exists already; `confer user reset-mfa {}` gives it a new enrolment link",
                    n.as_str(),
                    n.as_str()
                ),
                Err(e) => return Err(e.into()),
            }
        }
        UserCmd::ResetMfa { name: n, .. } => {
            let n = name(&n)?;
            let e = db.reset_mfa(&n, now, config.enrolment_ttl_secs)?;
            print_link(&e, &n);
        }
        UserCmd::Disable { name: n, .. } => {
            let n = name(&n)?;
            db.disable(&n)?;
            println!(
                "{} is disabled: its logins are refused and its login sessions ended",
                n.as_str()
            );
        }
        UserCmd::List { json, .. } => {
            let users = db.list(now)?;
            let mut out = std::io::stdout().lock();
            if json {
                for u in &users {
                    let _ = writeln!(out, "{}", serde_json::to_string(u)?);
                }
            } else {
                let _ = writeln!(
                    out,
                    "{:<24} {:<12} {:<13} {:<5} recovery codes",
                    "name", "role", "state", "totp"
                );
                for u in &users {
                    let _ = writeln!(
                        out,
                        "{:<24} {:<12} {:<13} {:<5} {}",
                        u.name,
                        u.role,
                        u.state,
                        if u.totp { "yes" } else { "no" },
                        u.recovery_codes
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_cmd(command: AuditCmd) -> anyhow::Result<ExitCode> {
    let source = match &command {
        AuditCmd::Verify { source, .. }
        | AuditCmd::Head { source }
        | AuditCmd::Export { source, .. }
        | AuditCmd::Purge { source } => source,
    };
    let config = source.load()?;
    let path = config.audit_path();
    if !path.exists() {
        bail!(
            "no audit log at {}; check --data-dir or the config's data_dir",
            path.display()
        );
    }
    let mut conn = audit::open(&path)?;
    match command {
        AuditCmd::Export {
            participant: Some(participant),
            ..
        } => {
            let mut out = std::io::stdout().lock();
            for row in audit::export_participant(&conn, &participant)? {
                // A closed pipe (`| head`) is not an error worth a panic.
                let _ = writeln!(out, "{}", serde_json::to_string(&row)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Export { session, .. } => {
            // clap requires one of the two.
            let session = session.unwrap_or_default();
            let rows = audit::export(&conn, &session)?;
            let out = serde_json::json!({ "session": session, "events": rows });
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify { expect_head, .. } => {
            let opts = audit::CheckOptions {
                now: token::unix_now(),
                retention_days: config.audit_retention_days,
                expect_head,
            };
            match audit::check(&conn, &opts)? {
                Ok(report) => {
                    print_report(&report, &opts);
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    eprintln!("confer: {failure}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCmd::Head { .. } => match audit::verify(&conn)? {
            // Only the head of an intact chain is worth keeping.
            Ok(_) => {
                println!("{}", audit::head(&conn)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(broken) => {
                eprintln!("confer: {broken}; no head printed");
                Ok(ExitCode::FAILURE)
            }
        },
        AuditCmd::Purge { .. } => {
            let n = audit::purge(&mut conn, config.audit_retention_days, token::unix_now())?;
            println!(
                "purged {n} audit rows older than {} days",
                config.audit_retention_days
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

// What the data directory holds about a session: its documents (`docs/<ID>/`, every
// instance) and its audit rows. `tokens.db` holds spent invite ids and expiries only, and
// `accounts.db` no session ids: nothing there names the session.
fn session_purge(source: &Source, id: &str) -> anyhow::Result<ExitCode> {
    let config = source.load()?;
    let session = SessionId::new(id)
        .context("the session id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")?;
    let files =
        confer_server::docs::purge_session(&config.docs_path(), &session).with_context(|| {
            format!(
                "cannot remove the session's documents under {}",
                config.docs_path().display()
            )
        })?;
    let path = config.audit_path();
    let recorded = if path.exists() {
        let mut conn = audit::open(&path)?;
        let event = audit::session_purged(session.as_str(), token::unix_now());
        audit::append(&mut conn, &[event]).context(
            "the documents are removed, but the purge could not be recorded in the audit log; run the command again",
        )?;
        true
    } else {
        false
    };
    println!(
        "purged session {}: {files} document files removed; its audit rows (content-free) are kept{}",
        session.as_str(),
        if recorded {
            ", with a session_purged row"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &audit::Report, opts: &audit::CheckOptions) {
    println!("audit log intact: {} rows verified", r.rows);
    println!("head: {}", r.head);
    let now = i64::try_from(opts.now).unwrap_or(i64::MAX);
    match (r.anchor.seq, r.anchor.at) {
        (0, _) => println!("anchor: row 0 (nothing purged)"),
        (seq, Some(at)) => println!(
            "anchor: row {seq}, an event {} days old (retention {} days)",
            now.saturating_sub(at).max(0) / 86_400,
            opts.retention_days
        ),
        (seq, None) => println!("anchor: row {seq}, age unknown (purged by an older version)"),
    }
    match &r.expected {
        Some(audit::Expected::Found(h)) => println!("expected head {h}: found"),
        Some(audit::Expected::Purged(h)) => println!(
            "expected head {h}: purged under the retention period (its hash cannot be compared)"
        ),
        None => {}
    }
    if r.lost_events > 0 {
        println!(
            "gaps: {} events could not be written (see the `gap` rows)",
            r.lost_events
        );
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: Config, dev: bool) -> anyhow::Result<ExitCode> {
    // Handlers first: a supervisor (or a test) that signals as soon as the banner is out must
    // get a drain, not the default action (killed before it could flush the audit log).
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let data_dir = config.data_dir.clone();
    let invite_ttl = config.invite_ttl_secs;
    let server = Server::start(config).await?;
    let addr = server.addr();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Confer is running{}.",
        if dev {
            " (development mode: no external services)"
        } else {
            ""
        }
    )?;
    writeln!(out)?;
    match server.web_dir() {
        Some(dir) => writeln!(
            out,
            "  Web:        http://{addr}/ (web client from {})",
            dir.display()
        )?,
        None => writeln!(
            out,
            "  Web:        http://{addr}/ (landing page only: no web_root{})",
            if dev {
                ", and no web-client/dist here; `make build` makes it"
            } else {
                ""
            }
        )?,
    }
    if !dev {
        writeln!(out, "  Public URL: {}", server.config().public_url)?;
    }
    writeln!(out, "  Signalling: ws://{addr}/ws")?;
    writeln!(out, "  Health:     http://{addr}/healthz")?;
    writeln!(
        out,
        "  Metrics:    http://{}/metrics",
        server.metrics_addr()
    )?;
    match server.media_addr() {
        Some(m) => writeln!(out, "  Media:      udp {m} (SFU)")?,
        None => writeln!(out, "  Media:      off (media_enabled = false)")?,
    }
    writeln!(out, "  Data:       {}", data_dir.display())?;
    if dev {
        let session = SessionId::new(format!("demo-{}", &token::random_id()[..8]))?;
        let token = server.invite(&session, Role::Mediator, None, invite_ttl);
        let dd = data_dir.display();
        writeln!(out)?;
        // The enrolment link is only worth making when there is a page to open it in.
        let enrolment = match server.web_dir() {
            Some(_) => server.dev_enrolment()?,
            None => None,
        };
        match (server.web_dir(), enrolment) {
            (Some(_), Some(enrolment)) => {
                writeln!(
                    out,
                    "Start here: open this link in your browser to set up the first mediator account, \"{}\"",
                    confer_server::DEV_MEDIATOR
                )?;
                writeln!(
                    out,
                    "(it works once, for {} hours; each start prints a new one until the account is set up):",
                    server.config().enrolment_ttl_secs.div_ceil(3600)
                )?;
                writeln!(out, "  {}", enrolment.link(&format!("http://{addr}")))?;
                writeln!(
                    out,
                    "There, choose a password, add the account to an authenticator app (scan or type the secret it shows),"
                )?;
                writeln!(
                    out,
                    "type the app's code, and keep the ten recovery codes. Then log in at http://{addr}/console,"
                )?;
                writeln!(
                    out,
                    "press \"Start a session\", open the mediator link it gives you, and invite the parties from that page."
                )?;
            }
            (Some(_), None) => {
                writeln!(
                    out,
                    "Mediate in your browser: log in at http://{addr}/console, press \"Start a session\" and open the link it gives you;"
                )?;
                writeln!(
                    out,
                    "invite the parties from that page. (Accounts: `target/debug/confer user list --dev --data-dir {dd}`.)"
                )?;
            }
            (None, _) => {
                writeln!(
                    out,
                    "No web client here: `make build` builds it; `make run` builds it and starts this server."
                )?;
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "Without an account, from a shell or with bots: a session is also ready, and its mediator needs no login."
        )?;
        writeln!(
            out,
            "A new session is ready: {}. The mediator's single-use invite token:",
            session.as_str()
        )?;
        writeln!(out, "  {token}")?;
        writeln!(out)?;
        writeln!(
            out,
            "Invite the parties of that session from a shell (in another terminal):"
        )?;
        for (role, side) in [
            ("party", " --side A"),
            ("party", " --side B"),
            ("counsel", " --side A"),
        ] {
            writeln!(
                out,
                "  target/debug/confer token create --dev --data-dir {dd} --session {} --role {role}{side}",
                session.as_str()
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "Or let bots hold an end-to-end encrypted session, chat and media (each in its own terminal):"
        )?;
        writeln!(
            out,
            "  target/debug/confer-bot --url ws://{addr}/ws --role mediator --seconds 120 --invite party:A --invite party:B --publish --token {token}"
        )?;
        writeln!(
            out,
            "  target/debug/confer-bot --url ws://{addr}/ws --role party --seconds 30 --publish --token '<an invite link the mediator bot printed>'"
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "Each client connects to ws://{addr}/ws and sends {{\"type\":\"hello\",\"version\":1,\"token\":\"…\"}} first."
        )?;
    }
    writeln!(out, "Press Ctrl-C to stop (once to drain, twice to exit).")?;
    drop(out);

    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    server.begin_drain();
    if server.session_count() == 0 {
        // (In cluster mode: leaves the node registry.)
        server.drained().await;
        server.flush_audit().await?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "confer: draining {} session(s); signal again to exit now",
        server.session_count()
    );
    let timeout = std::time::Duration::from_secs(server.config().drain_timeout_secs);
    tokio::select! {
        () = server.drained() => {},
        _ = term.recv() => {},
        _ = int.recv() => {},
        () = tokio::time::sleep(timeout) => {},
    }
    server.flush_audit().await?;
    Ok(ExitCode::SUCCESS)
}
