//! `alertray`: the headless receiver and the store's command-line view.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use alertray::alerts::{Alert, Summary};
use alertray::app::Paths;
use alertray::config::{self, Config, ConfigError};
use alertray::store::{self, HistoryQuery};
use alertray::text::{one_line, one_line_within as column};

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
    /// The config file (default: ALERTRAY_CONFIG, else the platform config dir's alertray/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data dir holding the store and the generated certificate (default: ALERTRAY_DATA_DIR, else the platform data dir).
    #[arg(long, global = true, value_name = "DIR")]
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
        /// At most this many, 1 or more (history).
        #[arg(long, value_name = "N", requires = "history", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Only since this long ago (45s, 30m, 12h, 7d, 2w) or this RFC 3339 time (history).
        #[arg(long, value_name = "WHEN", requires = "history")]
        since: Option<String>,
        /// Only this status (history).
        #[arg(long, requires = "history", value_parser = ["critical", "warning", "clear", "other", "unreachable", "reachable", "test", "unknown"])]
        status: Option<String>,
        /// Only this node: its name or its beginning, any case (history).
        #[arg(long, requires = "history")]
        host: Option<String>,
        /// Only notifications whose message, host or alert contains this text (history).
        #[arg(long, value_name = "TEXT", requires = "history")]
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
    /// Check the public URL as Netdata would reach it: DNS, connection, TLS, certificate,
    /// challenge and credentials. Exits 1 when Netdata could not deliver.
    Check {
        /// The webhook URL to check (default: the running tunnel's URL, else server.public_url).
        #[arg(long)]
        url: Option<String>,
        /// Also trust this CA (PEM) when judging the certificate, e.g. a private CA.
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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

/// Writes `text` to stdout. A reader that went away (`alertray alerts | head -1`) ends the
/// command quietly, as in any Unix tool, rather than with a panic.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("alertray: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`emit`].
macro_rules! out {
    ($($arg:tt)*) => {
        emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Exit code for a bad config or bad arguments.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // The environment's, unless the command line names them (an empty variable names nothing).
    cli.config = cli.config.or_else(|| alertray::app::env_path("ALERTRAY_CONFIG"));
    cli.data_dir = cli.data_dir.or_else(|| alertray::app::env_path("ALERTRAY_DATA_DIR"));
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
        Err(Failure::Quiet) => ExitCode::FAILURE,
    }
}

enum Failure {
    Config(String),
    Other(String),
    /// Already reported (on stdout, or logged to stderr).
    Quiet,
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
        Command::Serve { no_popups } => {
            alertray::headless::init_logging();
            alertray::headless::serve(paths, cli.config.is_some(), no_popups).map_err(|e| match e {
                alertray::headless::HeadlessError::Config(c) => Failure::Config(c),
                alertray::headless::HeadlessError::Other(o) => Failure::Other(o),
                alertray::headless::HeadlessError::Logged => Failure::Quiet,
            })
        }
        Command::Alerts { history, json, limit, since, status, host, search } => {
            // A wrong argument is named before the store is looked for.
            let since_ms = since.as_deref().map(parse_since).transpose()?;
            let conn = store::open_reader(&paths.db()).map_err(other)?;
            if history {
                let limit = limit.map(|n| n as usize);
                let filtered = since_ms.is_some() || status.is_some() || host.is_some() || search.is_some();
                let q = HistoryQuery { since_ms, status, host, text: search, limit, ..Default::default() };
                let rows = store::history(&conn, &q).map_err(other)?;
                if json {
                    out!("{}", serde_json::to_string_pretty(&rows).map_err(other)?);
                } else if rows.is_empty() && filtered {
                    out!("No stored notification matches.");
                } else if rows.is_empty() {
                    out!("No notifications stored.");
                } else {
                    for r in rows {
                        out!(
                            "{}  {:<11} {:<20} {:<24} {}",
                            local_time(r.received_ms),
                            r.status.as_deref().unwrap_or(&r.kind),
                            column(r.host.as_deref().unwrap_or("-"), 40),
                            column(r.name.as_deref().unwrap_or("-"), 60),
                            column(&r.message, 200)
                        );
                    }
                }
            } else {
                let active = store::active(&conn).map_err(other)?;
                if json {
                    out!("{}", serde_json::to_string_pretty(&active).map_err(other)?);
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
                (Some(t), true) => out!("{}", serde_json::to_string_pretty(&t).map_err(other)?),
                (None, true) => out!("null"),
                (Some(t), false) => {
                    out!("{}  (received {}, {} ago)", one_line(&t.token), local_time(t.received_ms), ago(t.received_ms))
                }
                (None, false) => {
                    out!("No Test notification has arrived yet. Press Test in Netdata Cloud's webhook form.")
                }
            }
            Ok(())
        }
        Command::Guide => {
            let cfg = Config::load(&paths.config_file)?;
            let url = alertray::check::current_webhook_url(&cfg, &paths.data_dir);
            let guide = alertray::guide::ConnectGuide::of(&cfg).with_webhook_url(url).text();
            // The form's last field, once Netdata's Test notification has brought it.
            let token = store::open_reader(&paths.db()).ok().and_then(|c| store::latest_token(&c).ok().flatten());
            let token = match token {
                Some(t) => format!(
                    "Verification token: {}  (from the Test notification received {} ago)\n",
                    one_line(&t.token),
                    ago(t.received_ms)
                ),
                None => "Verification token: (press Test in Netdata's form, then run this again)\n".to_string(),
            };
            emit(&format!("{guide}{token}"));
            Ok(())
        }
        Command::Check { url, ca, json } => {
            let cfg = Config::load(&paths.config_file)?;
            let extra_roots = match &ca {
                Some(p) => alertray::tls::read_pem_certs(p).map_err(|e| Failure::Config(e.to_string()))?,
                None => Vec::new(),
            };
            let opts = alertray::check::CheckOptions {
                webhook_url: url.or_else(|| alertray::check::current_webhook_url(&cfg, &paths.data_dir)),
                local_fingerprint: alertray::tls::local_fingerprint(&cfg, &paths.data_dir),
                extra_roots,
                timeout: None,
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(other)?;
            let report = rt.block_on(alertray::check::run(&cfg, opts));
            if json {
                out!("{}", serde_json::to_string_pretty(&report).map_err(other)?);
            } else {
                emit(&report.text());
            }
            if report.passed {
                Ok(())
            } else {
                Err(Failure::Quiet)
            }
        }
        Command::Config { action } => match action {
            ConfigAction::Init => {
                config::init(&paths.config_file)?;
                out!("Wrote {} with fresh secrets (readable by you only).", paths.config_file.display());
                out!("Run `alertray guide` to see what to paste into Netdata Cloud.");
                Ok(())
            }
            ConfigAction::Check { file } => {
                let file = file.unwrap_or_else(|| paths.config_file.clone());
                let cfg = Config::load(&file)?;
                alertray::tls::check_files(&cfg).map_err(|e| Failure::Config(e.to_string()))?;
                out!("{} is valid.", file.display());
                if cfg.auth.challenge_secret.is_none() {
                    out!("Note: auth.challenge_secret is not set; Netdata's challenge will be refused until it is.");
                }
                Ok(())
            }
            ConfigAction::Path => {
                out!("config: {}", paths.config_file.display());
                out!("data:   {}", paths.data_dir.display());
                Ok(())
            }
        },
    }
}

fn print_active(active: &[Alert]) {
    if active.is_empty() {
        out!("All clear: no active alerts.");
        return;
    }
    out!("{}", Summary::of(active).describe());
    for a in active {
        out!(
            "{:<11} {:<20} {:<28} {:<10} since {}{}",
            a.level.label(),
            column(&a.host, 40),
            column(&a.name, 60),
            column(a.value.as_deref().unwrap_or(""), 40),
            local_time(a.since_ms),
            if a.acknowledged { "  (acknowledged)" } else { "" }
        );
    }
}

/// "30m", "12h", "7d", "45s" or an RFC 3339 time, to Unix ms.
fn parse_since(s: &str) -> Result<i64, Failure> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let bad = || {
        Failure::Config(format!("--since {s:?} is not accepted: a number of s, m, h, d or w (like 45s, 30m, 12h, 7d or 2w), or an RFC 3339 time like 2026-11-30T08:00:00Z"))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    // More digits than an i64 holds is still a number: longer ago than the epoch.
    let n: i64 = match num.parse() {
        Ok(n) => n,
        Err(_) if !num.is_empty() => i64::MAX,
        Err(_) => return Err(bad()),
    };
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    // Anything longer than since the epoch means "everything"; no overflow either way.
    let ms = n.checked_mul(unit_secs).and_then(|secs| secs.checked_mul(1000)).unwrap_or(i64::MAX);
    Ok(store::now_ms().saturating_sub(ms).max(0))
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
