//! `alertray`: the headless receiver and the store's command-line view.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use alertray::alerts::{Alert, Event, Summary};
use alertray::app::{Alertray, Paths, ReceiverStatus};
use alertray::config::{self, Config, ConfigError};
use alertray::notify::DesktopNotifier;
use alertray::store::{self, HistoryQuery};

// The receiver allocates and frees a body, a JSON tree and a response per request from many
// threads at once; mimalloc measured about 10% cheaper than glibc's allocator at load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "alertray",
    version,
    about = "Receives Netdata Cloud alert webhooks over HTTPS and shows them on the desktop"
)]
struct Cli {
    /// The config file (default: the platform config dir's alertray/config.toml).
    #[arg(long, global = true, value_name = "FILE", env = "ALERTRAY_CONFIG")]
    config: Option<PathBuf>,
    /// The data dir holding the store and the generated certificate (default: the platform data dir).
    #[arg(long, global = true, value_name = "DIR", env = "ALERTRAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the receiver (Ctrl-C or SIGTERM stops it). Creates a config with fresh secrets on first run.
    Serve {
        /// Do not show desktop notifications.
        #[arg(long)]
        no_popups: bool,
    },
    /// List the active alerts, or with --history every stored notification, newest first.
    Alerts {
        /// Every stored notification instead of the active alerts.
        #[arg(long)]
        history: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// At most this many (history).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only since this long ago (30m, 12h, 7d) or this RFC 3339 time (history).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only this status: critical, warning, clear, unreachable, reachable (history).
        #[arg(long)]
        status: Option<String>,
        /// Only this node (history).
        #[arg(long)]
        host: Option<String>,
        /// Only notifications whose message, host or alert contains this text (history).
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
    },
    /// Show the latest verification token from a Netdata Test notification.
    Token {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what to paste into Netdata Cloud's webhook form.
    Guide,
    /// Create or check the config file.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Write a commented config with fresh secrets (mode 0600); refuses to overwrite.
    Init,
    /// Validate a config file (default: the one --config or the platform dir names).
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Print where the config file and the data dir are.
    Path,
}

/// Exit code for a bad config or bad arguments.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = Paths::resolve(cli.config.clone(), cli.data_dir.clone());
    match run(cli, &paths) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("alertray: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("alertray: {e}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(String),
    Other(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::Config(e.to_string())
    }
}

fn other(e: impl std::fmt::Display) -> Failure {
    Failure::Other(e.to_string())
}

fn run(cli: Cli, paths: &Paths) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { no_popups } => serve(paths, cli.config.is_some(), no_popups),
        Command::Alerts { history, json, limit, since, status, host, search } => {
            let conn = store::open_reader(&paths.db()).map_err(other)?;
            if history {
                let since_ms = since.as_deref().map(parse_since).transpose()?;
                let q = HistoryQuery { since_ms, status, host, text: search, limit, ..Default::default() };
                let rows = store::history(&conn, &q).map_err(other)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows).map_err(other)?);
                } else if rows.is_empty() {
                    println!("No notifications stored.");
                } else {
                    for r in rows {
                        println!(
                            "{}  {:<11} {:<20} {}",
                            local_time(r.received_ms),
                            r.status.as_deref().unwrap_or(&r.kind),
                            r.host.as_deref().unwrap_or("-"),
                            r.message
                        );
                    }
                }
            } else {
                let active = store::active(&conn).map_err(other)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&active).map_err(other)?);
                } else {
                    print_active(&active);
                }
            }
            Ok(())
        }
        Command::Token { json } => {
            let conn = store::open_reader(&paths.db()).map_err(other)?;
            let token = store::latest_token(&conn).map_err(other)?;
            match (token, json) {
                (Some(t), true) => println!("{}", serde_json::to_string_pretty(&t).map_err(other)?),
                (None, true) => println!("null"),
                (Some(t), false) => {
                    println!("{}  (received {}, {} ago)", t.token, local_time(t.received_ms), ago(t.received_ms))
                }
                (None, false) => {
                    println!("No Test notification has arrived yet. Press Test in Netdata Cloud's webhook form.")
                }
            }
            Ok(())
        }
        Command::Guide => {
            let cfg = Config::load(&paths.config_file)?;
            print!("{}", guide(&cfg));
            Ok(())
        }
        Command::Config { action } => match action {
            ConfigAction::Init => {
                config::init(&paths.config_file)?;
                println!("Wrote {} with fresh secrets (readable by you only).", paths.config_file.display());
                println!("Run `alertray guide` to see what to paste into Netdata Cloud.");
                Ok(())
            }
            ConfigAction::Check { file } => {
                let file = file.unwrap_or_else(|| paths.config_file.clone());
                let cfg = Config::load(&file)?;
                println!("{} is valid.", file.display());
                if cfg.auth.challenge_secret.is_none() {
                    println!(
                        "Note: auth.challenge_secret is not set; Netdata's challenge will be refused until it is."
                    );
                }
                Ok(())
            }
            ConfigAction::Path => {
                println!("config: {}", paths.config_file.display());
                println!("data:   {}", paths.data_dir.display());
                Ok(())
            }
        },
    }
}

fn print_active(active: &[Alert]) {
    if active.is_empty() {
        println!("All clear: no active alerts.");
        return;
    }
    println!("{}", Summary::of(active).describe());
    for a in active {
        println!(
            "{:<11} {:<20} {:<28} {:<10} since {}{}",
            a.level.label(),
            a.host,
            a.name,
            a.value.as_deref().unwrap_or(""),
            local_time(a.since_ms),
            if a.acknowledged { "  (acknowledged)" } else { "" }
        );
    }
}

fn guide(cfg: &Config) -> String {
    use alertray::config::{AuthMethod, ClientCertMode};
    let mut s = String::new();
    let url =
        cfg.server.webhook_url().unwrap_or_else(|| "(set server.public_url to your tunnel's https:// URL)".into());
    s.push_str(&format!("Webhook URL:        {url}\n"));
    match &cfg.auth.method {
        AuthMethod::None => s.push_str("Authentication:     Mutual TLS (no Basic/Bearer)\n"),
        AuthMethod::Basic { username, password } => s.push_str(&format!(
            "Authentication:     Basic\nUsername:           {username}\nPassword:           {}\n",
            password.expose()
        )),
        AuthMethod::Bearer { token } => {
            s.push_str(&format!("Authentication:     Bearer\nToken:              {}\n", token.expose()))
        }
    }
    for (name, value) in &cfg.auth.headers {
        s.push_str(&format!("Extra header:       {name}: {}\n", value.expose()));
    }
    match &cfg.auth.challenge_secret {
        Some(c) => s.push_str(&format!("Challenge secret:   {}\n", c.expose())),
        None => s.push_str("Challenge secret:   (not set: add auth.challenge_secret)\n"),
    }
    s.push_str(match cfg.auth.client_certificate {
        ClientCertMode::Required => "Client certificate: required (needs a tunnel that passes TLS through)\n",
        ClientCertMode::Optional => "Client certificate: checked when presented\n",
        ClientCertMode::Off => "Client certificate: not asked for\n",
    });
    s
}

/// "30m", "12h", "7d", "45s" or an RFC 3339 time, to Unix ms.
fn parse_since(s: &str) -> Result<i64, Failure> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let bad = || {
        Failure::Config(format!("--since {s:?} is not accepted: a duration like 30m, 12h or 7d, or an RFC 3339 time"))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(store::now_ms() - secs * 1000)
}

fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn ago(ms: i64) -> String {
    let secs = ((store::now_ms() - ms) / 1000).max(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `true` when a desktop notification service can plausibly be reached.
fn desktop_session() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| PathBuf::from(d).join("bus").exists())
}

fn serve(paths: &Paths, config_given: bool, no_popups: bool) -> Result<(), Failure> {
    init_logging();
    if !config_given && !paths.config_file.exists() {
        config::init(&paths.config_file)?;
        eprintln!(
            "First run: wrote {} with a fresh bearer token and challenge secret.\nRun `alertray guide` to see what to paste into Netdata Cloud.",
            paths.config_file.display()
        );
    }
    // A bad config is refused before anything else happens, with exit code 2.
    let cfg = Config::load(&paths.config_file)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(other)?;
    rt.block_on(async move {
        let core = Alertray::open(paths.clone()).map_err(other)?;
        let shutdown = CancellationToken::new();
        let log_events = core.events.subscribe();
        let status = core.apply(Ok(cfg)).await;
        let ReceiverStatus::Running { addr, fingerprint, cert_path, self_signed } = status else {
            return Err(Failure::Other(status.error().unwrap_or("the receiver did not start").to_string()));
        };
        let cfg = core.config().await.expect("a running receiver has a config");
        eprintln!("Listening on https://{addr}{}", cfg.server.path);
        eprintln!(
            "Certificate: {cert_path} ({}), SHA-256 {fingerprint}",
            if self_signed { "self-signed" } else { "from tls.cert" }
        );
        eprintln!("Store: {}", core.store.path().display());
        if let Some(url) = cfg.server.webhook_url() {
            eprintln!("Webhook URL for Netdata Cloud: {url}");
        }
        if cfg.notifications.enabled && !no_popups {
            if desktop_session() {
                core.spawn_popups(
                    Arc::new(DesktopNotifier::new("Alertray", Some("dialog-warning".into()))),
                    shutdown.clone(),
                );
            } else {
                tracing::warn!("no desktop session bus found: desktop notifications are off (alerts are still stored)");
            }
        }
        tokio::spawn(log_events_until(log_events, shutdown.clone()));
        wait_for_signal().await;
        eprintln!("Shutting down...");
        shutdown.cancel();
        core.stop().await;
        Ok(())
    })
}

/// Logs to stderr, filtered by `ALERTRAY_LOG` (default: Alertray's info lines and others' warnings).
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALERTRAY_LOG").unwrap_or_else(|_| "alertray=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// One log line per alert event, for whoever watches the terminal.
async fn log_events_until(mut events: broadcast::Receiver<Event>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = events.recv() => match ev {
                Ok(Event::Alert { change, alert, .. }) => {
                    tracing::info!(host = %alert.host, alert = %alert.name, level = alert.level.label(), "{change:?}");
                }
                Ok(Event::TestReceived { .. }) => {
                    tracing::info!("Test notification received; `alertray token` shows its verification token")
                }
                Ok(Event::Unknown { message, notification_id }) => {
                    tracing::info!(id = notification_id, "notification of unknown shape: {message}")
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
