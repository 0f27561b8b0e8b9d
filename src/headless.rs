//! The receiver without a window: `alertray serve`, and the desktop app when there is no
//! display. Runs until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::alerts::Event;
use crate::app::{Alertray, Paths, ReceiverStatus};
use crate::config::{self, Config};
use crate::notify::DesktopNotifier;
use crate::text::for_log;

/// Why the headless receiver stopped with an error.
#[derive(Debug)]
pub enum HeadlessError {
    /// The config is invalid (exit code 2).
    Config(String),
    /// Anything else (exit code 1).
    Other(String),
    /// Already logged to stderr (exit code 1).
    Logged,
}

impl From<config::ConfigError> for HeadlessError {
    fn from(e: config::ConfigError) -> HeadlessError {
        HeadlessError::Config(e.to_string())
    }
}

fn other(e: impl std::fmt::Display) -> HeadlessError {
    HeadlessError::Other(e.to_string())
}

/// `true` when a desktop notification service can plausibly be reached.
pub fn desktop_session() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| PathBuf::from(d).join("bus").exists())
}

/// Runs the receiver until SIGINT or SIGTERM, writing a config with fresh secrets first when
/// none exists and `config_given` is false.
pub fn serve(paths: &Paths, config_given: bool, no_popups: bool) -> Result<(), HeadlessError> {
    if !config_given && config::init_if_missing(&paths.config_file)? {
        eprintln!(
            "First run: wrote {} with a fresh bearer token and challenge secret.\nRun `alertray guide` to see what to paste into Netdata Cloud.",
            paths.config_file.display()
        );
    }
    // A bad config is refused before anything else happens, with exit code 2: the files it
    // names for TLS too.
    let text = std::fs::read(&paths.config_file).map_err(|e| config::ConfigError::reading(&paths.config_file, e))?;
    let cfg = Config::from_file_bytes(&paths.config_file, &text)?;
    crate::tls::check_files(&cfg).map_err(|e| HeadlessError::Config(e.to_string()))?;
    crate::app::raise_open_file_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(other)?;
    rt.block_on(async move {
        // Listening for the signals begins now: one sent while the receiver starts (a service
        // manager stopping it, a script that saw "Listening on") is a shutdown, not a kill.
        let stop = shutdown_signal();
        let core = Arc::new(Alertray::open(paths.clone()));
        // Two receivers on one store would each keep their own idea of the active alerts.
        if let Some(why) = core.data_dir_taken() {
            return Err(HeadlessError::Other(why.to_string()));
        }
        let shutdown = CancellationToken::new();
        let log_events = core.events.subscribe();
        let status = core.apply_file(text, cfg).await;
        let ReceiverStatus::Running { addr, fingerprint, cert_path, self_signed } = status else {
            // Said once: by the log line ("receiver not running: ..."), unless the log filter
            // leaves it out.
            if tracing::enabled!(target: "alertray::app", tracing::Level::ERROR) {
                return Err(HeadlessError::Logged);
            }
            return Err(HeadlessError::Other(status.error().unwrap_or("the receiver did not start").to_string()));
        };
        let cfg = core.config().await.expect("a running receiver has a config");
        eprintln!("Listening on https://{addr}{}", cfg.server.path);
        eprintln!(
            "Certificate: {cert_path} ({}), SHA-256 {fingerprint}",
            match (&cfg.tls, self_signed) {
                (config::TlsConfig::Acme(_), true) => "self-signed until the ACME certificate arrives",
                (config::TlsConfig::Acme(_), false) => "from ACME",
                (_, true) => "self-signed",
                (_, false) => "from tls.cert",
            }
        );
        match core.store_error() {
            None => eprintln!("Store: {}", core.store.path().display()),
            Some(e) => eprintln!(
                "Degraded: {e}.\nThe receiver still runs and answers deliveries 503, so Netdata retries them; fix the store's file or folder and restart."
            ),
        }
        if let Some(url) = cfg.server.webhook_url() {
            eprintln!("Webhook URL for Netdata Cloud: {url}");
        }
        // Listening even while notifications.enabled is false: the popup policy reads it at each
        // event, so an edit of the config file that turns popups on applies at once.
        if !no_popups {
            if desktop_session() {
                core.spawn_popups(
                    Arc::new(DesktopNotifier::new("Alertray", Some("dialog-warning".into()))),
                    shutdown.clone(),
                );
            } else if cfg.notifications.enabled {
                let stored = if core.store_error().is_none() { " (alerts are still stored)" } else { "" };
                tracing::warn!("no desktop session bus found: desktop notifications are off{stored}");
            }
        }
        tokio::spawn(log_events_until(log_events, core.clone(), shutdown.clone()));
        tokio::spawn(core.clone().watch_config_file(shutdown.clone()));
        stop.await;
        eprintln!("Shutting down...");
        shutdown.cancel();
        core.stop().await;
        Ok(())
    })
}

/// The log filter when `ALERTRAY_LOG` is not set: Alertray's info lines and other crates'
/// warnings, except rustls's. rustls warns of every client that names an IP address in its
/// TLS server name (wrk and other OpenSSL clients do), once per connection; the receiver itself
/// logs each handshake that fails, with the peer.
pub const DEFAULT_LOG_FILTER: &str = "alertray=info,alertray_app=info,rustls=error,warn";

/// The log filter `ALERTRAY_LOG` sets ([`DEFAULT_LOG_FILTER`] when it is unset or empty),
/// and, when it is set to a filter that is none, a warning saying so (to log once logging
/// runs: the default filter is used then).
pub fn log_filter() -> (tracing_subscriber::EnvFilter, Option<String>) {
    use tracing_subscriber::EnvFilter;
    match std::env::var("ALERTRAY_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_LOG_FILTER),
                Some(format!(
                    "ALERTRAY_LOG = {:?} is not accepted ({e}): a filter like \"alertray=debug\" or \"info\" is; using \"{DEFAULT_LOG_FILTER}\"",
                    for_log(&v)
                )),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_LOG_FILTER), None),
    }
}

/// Logs to stderr, filtered by `ALERTRAY_LOG` (default: [`DEFAULT_LOG_FILTER`]).
pub fn init_logging() {
    let (filter, warning) = log_filter();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
}

/// One log line per alert event, for whoever watches the terminal.
async fn log_events_until(mut events: broadcast::Receiver<Event>, core: Arc<Alertray>, shutdown: CancellationToken) {
    let mut shown_url = None;
    loop {
        tokio::select! {
            // What arrived before the shutdown is still logged.
            biased;
            ev = events.recv() => match ev {
                Ok(Event::Alert { change, alert, .. }) => {
                    let (host, name) = (for_log(&alert.host), for_log(&alert.name));
                    tracing::info!(?host, alert = ?name, level = alert.level.label(), "{change:?}");
                }
                Ok(Event::TestReceived { .. }) => {
                    tracing::info!("Test notification received; `alertray token` shows its verification token")
                }
                Ok(Event::Unknown { message, notification_id }) => {
                    tracing::info!(id = notification_id, "notification of unknown shape: {:?}", for_log(&message))
                }
                Ok(Event::ConfigFileApplied) => tracing::info!("the edited config file is in use"),
                Ok(Event::TunnelChanged) => {
                    let url = match core.config().await {
                        Some(cfg) if core.tunnel_status().url.is_some() => core.webhook_url(&cfg),
                        _ => None,
                    };
                    if url.is_some() && url != shown_url {
                        eprintln!("Webhook URL for Netdata Cloud (through the tunnel): {}", url.as_deref().unwrap_or_default());
                    }
                    shown_url = url;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = shutdown.cancelled() => break,
        }
    }
}

/// Starts listening for SIGINT and SIGTERM at once; the future it returns ends at the first
/// one, even one that came before it was awaited. (On Windows: Ctrl-C, Ctrl-Break, the
/// console closing and the system shutting down.)
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        async fn next(kind: &str, stream: std::io::Result<tokio::signal::unix::Signal>) {
            match stream {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!("cannot listen for {kind}: {e}");
                    std::future::pending::<()>().await;
                }
            }
        }
        let (term, int) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            tokio::select! {
                _ = next("SIGTERM", term) => {}
                _ = next("SIGINT", int) => {}
            }
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows;
        let (mut c, mut brk, mut close, mut shutdown) =
            (windows::ctrl_c(), windows::ctrl_break(), windows::ctrl_close(), windows::ctrl_shutdown());
        for (kind, failed) in [
            ("Ctrl-C", c.as_ref().err()),
            ("Ctrl-Break", brk.as_ref().err()),
            ("the console closing", close.as_ref().err()),
            ("the system shutting down", shutdown.as_ref().err()),
        ] {
            if let Some(e) = failed {
                tracing::warn!("cannot listen for {kind}: {e}");
            }
        }
        async move {
            // A listener that could not be made never ends its branch.
            tokio::select! {
                Some(()) = async { c.as_mut().ok()?.recv().await } => {}
                Some(()) = async { brk.as_mut().ok()?.recv().await } => {}
                Some(()) = async { close.as_mut().ok()?.recv().await } => {}
                Some(()) = async { shutdown.as_mut().ok()?.recv().await } => {}
                else => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            let _ = ctrl_c.await;
        }
    }
}
