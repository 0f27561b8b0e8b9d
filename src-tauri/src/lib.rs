//! Alertray's desktop shell: the tray, the windows and the commands they call, over the
//! `alertray` core, which it hosts in-process. Logic that needs no window lives in the core;
//! this crate forwards.
//!
//! - `tray`: draws the core's tray model and turns menu clicks into core calls.
//! - `windows`: the Alerts, Settings and Connect guide windows, created on demand.
//! - `commands`: what the windows' pages may invoke.

mod commands;
mod tray;
/// What a click on the tray menu's item `id` does; public for the tests, which run without a tray.
pub use tray::on_menu;
mod windows;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alertray::alerts::Event;
use alertray::app::{env_path, Alertray, Paths, ReceiverStatus};
use alertray::notify::DesktopNotifier;
use tauri::{Emitter, Manager, RunEvent, Runtime};
use tokio_util::sync::CancellationToken;

pub use commands::CommandError;

/// The event the windows listen to: something they show may have changed.
pub const CHANGED_EVENT: &str = "alertray://changed";

/// What the shell keeps for its commands and its tray.
pub struct Shell {
    /// The core, running.
    pub core: Arc<Alertray>,
    /// Cancelled when the app quits.
    pub shutdown: CancellationToken,
    /// Where the log files are.
    pub log_dir: PathBuf,
    /// The tray model the current menu was built from (menu ids index into it).
    pub tray_model: std::sync::Mutex<Option<alertray::tray::TrayModel>>,
    /// Coalesces refresh requests from bursts of events.
    pub refresh: tokio::sync::Notify,
}

/// `true` when a window can be shown (on Linux: an X11 or Wayland display is set).
pub fn has_display() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

fn paths_from_env() -> Paths {
    Paths::resolve(env_path("ALERTRAY_CONFIG"), env_path("ALERTRAY_DATA_DIR"))
}

/// Logs to stderr and to a file in `<data dir>/logs` that rotates daily (7 kept).
fn init_logging(log_dir: &std::path::Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // One filter per layer (a filter serves one); the warning, if any, is said once.
    let (stderr_filter, warning) = alertray::headless::log_filter();
    let _ = alertray::store::create_private_dir(log_dir);
    let file = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("alertray")
        .filename_suffix("log")
        .max_log_files(7)
        .build(log_dir);
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter_boxed(stderr_filter);
    let guard = match file {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let file_layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter_boxed(alertray::headless::log_filter().0);
            let _ = tracing_subscriber::registry().with(stderr).with(file_layer).try_init();
            Some(guard)
        }
        Err(e) => {
            let _ = tracing_subscriber::registry().with(stderr).try_init();
            tracing::warn!("cannot write logs to {}: {e}", log_dir.display());
            None
        }
    };
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    guard
}

/// A small extension so both layers can take a boxed filter without naming its type.
trait BoxedFilter<S> {
    fn with_filter_boxed(self, f: tracing_subscriber::EnvFilter)
        -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>;
}

impl<S, L> BoxedFilter<S> for L
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    L: tracing_subscriber::Layer<S> + Send + Sync + 'static,
{
    fn with_filter_boxed(
        self,
        f: tracing_subscriber::EnvFilter,
    ) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync> {
        Box::new(self.with_filter(f))
    }
}

/// What a click on the tray menu item `id` does (for tests: the mock runtime draws no tray).
pub fn tray_menu_click<R: Runtime>(app: &tauri::AppHandle<R>, id: &str) {
    tray::on_menu(app, id);
}

/// Set when this start wrote the first config: the Connect guide opens.
static FIRST_RUN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What `alertray-app --help` prints.
const USAGE: &str = "Usage: alertray-app [--show alerts|settings|guide] [--version]

Runs Alertray in the tray (or, with no display, the receiver alone). With --show, opens
that window, in the Alertray already running if there is one.
Environment: ALERTRAY_CONFIG (the config file), ALERTRAY_DATA_DIR (the data folder),
ALERTRAY_LOG (the log filter), ALERTRAY_NO_POPUPS (set: no desktop popups).";

/// The command line, checked: `Err` with what is wrong, `Ok(true)` when it asked for help or
/// the version (printed), `Ok(false)` to run.
fn check_args(args: &[String]) -> Result<bool, String> {
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(true);
            }
            "--version" | "-V" => {
                println!("alertray-app {}", env!("CARGO_PKG_VERSION"));
                return Ok(true);
            }
            "--show" => match rest.next() {
                Some(page) if windows::Page::named(page).is_some() => {}
                other => {
                    return Err(format!(
                        "--show takes alerts, settings or guide, not {}",
                        other.map_or("nothing".to_string(), |p| format!("{p:?}"))
                    ))
                }
            },
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(false)
}

/// Runs the desktop app; returns the process exit code.
pub fn run() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match check_args(&args) {
        Ok(true) => return 0,
        Ok(false) => {}
        Err(e) => {
            eprintln!("alertray-app: {e}\n\n{USAGE}");
            return 2;
        }
    }
    let paths = paths_from_env();
    if !has_display() {
        eprintln!("alertray-app: no display (neither DISPLAY nor WAYLAND_DISPLAY is set); running the receiver without a window.");
        alertray::headless::init_logging();
        return match alertray::headless::serve(&paths, env_path("ALERTRAY_CONFIG").is_some(), false) {
            Ok(()) => 0,
            Err(alertray::headless::HeadlessError::Config(e)) => {
                eprintln!("alertray-app: {e}");
                2
            }
            Err(alertray::headless::HeadlessError::Other(e)) => {
                eprintln!("alertray-app: {e}");
                1
            }
            Err(alertray::headless::HeadlessError::Logged) => 1,
        };
    }
    let log_dir = paths.data_dir.join("logs");
    let _guard = init_logging(&log_dir);
    if env_path("ALERTRAY_CONFIG").is_none() {
        match alertray::config::init_if_missing(&paths.config_file) {
            Ok(true) => {
                tracing::info!("first run: wrote {} with fresh secrets", paths.config_file.display());
                // Nothing else would show that Alertray runs, where the tray is hidden.
                FIRST_RUN.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }
    alertray::app::raise_open_file_limit();
    let core = Arc::new(Alertray::open(paths));
    if let Some(why) = core.data_dir_taken() {
        tracing::error!("deliveries are answered 503 until the other Alertray stops and this one is restarted: {why}");
    }
    let builder = tauri::Builder::default()
        // First, so that a second start only opens the Alerts window of the first.
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            let page = windows::Page::from_args(args.into_iter()).unwrap_or(windows::Page::Alerts);
            windows::open(app, page);
        }))
        .plugin(tauri_plugin_autostart::init(tauri_plugin_autostart::MacosLauncher::LaunchAgent, None))
        .plugin(tauri_plugin_clipboard_manager::init());
    run_app(builder, tauri::generate_context!(), core, log_dir)
}

/// What to build besides the core wiring.
#[derive(Debug, Clone, Copy)]
pub struct ShellOptions {
    /// Create the tray icon (GTK menus need a real display; Tauri's mock runtime has none).
    pub tray: bool,
}

/// Builds and runs the app on `builder` (the real runtime, or Tauri's mock runtime in tests).
pub fn run_app<R: Runtime>(
    builder: tauri::Builder<R>,
    context: tauri::Context<R>,
    core: Arc<Alertray>,
    log_dir: PathBuf,
) -> i32 {
    let app = match build_app(builder, context, core, log_dir, ShellOptions { tray: true }) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("alertray-app: {e}");
            return 1;
        }
    };
    app.run(|handle, event| match event {
        // Closing the last window leaves the app in the tray; only Quit (an explicit exit
        // code) ends it.
        RunEvent::ExitRequested { api, code: None, .. } => api.prevent_exit(),
        RunEvent::Exit => {
            let shell = handle.state::<Shell>();
            shell.shutdown.cancel();
            let core = shell.core.clone();
            let started = std::time::Instant::now();
            tauri::async_runtime::block_on(async move {
                if tokio::time::timeout(Duration::from_secs(5), core.stop()).await.is_err() {
                    tracing::warn!("the receiver did not stop within 5 s; quitting without waiting for it");
                }
            });
            tracing::debug!("stopped in {} ms", started.elapsed().as_millis());
        }
        _ => {}
    });
    0
}

/// The app, built and set up, not yet running.
pub fn build_app<R: Runtime>(
    builder: tauri::Builder<R>,
    context: tauri::Context<R>,
    core: Arc<Alertray>,
    log_dir: PathBuf,
    options: ShellOptions,
) -> tauri::Result<tauri::App<R>> {
    let shell = Shell {
        core,
        shutdown: CancellationToken::new(),
        log_dir,
        tray_model: std::sync::Mutex::new(None),
        refresh: tokio::sync::Notify::new(),
    };
    builder
        .manage(shell)
        // Here rather than with the other plugins: every window saves its place through it.
        .plugin(windows::state_plugin())
        .invoke_handler(commands::handler())
        .setup(move |app| {
            let handle = app.handle().clone();
            // Without a tray the app is still useful through its windows and popups.
            if options.tray {
                if let Err(e) = tray::create(&handle) {
                    tracing::error!("cannot create the tray icon: {e}");
                }
            }
            let first_run = FIRST_RUN.load(std::sync::atomic::Ordering::Relaxed).then_some(windows::Page::Guide);
            if let Some(page) = windows::Page::from_args(std::env::args()).or(first_run) {
                windows::open(&handle, page);
            }
            // SIGTERM (the session ending, `kill`) or SIGINT quits as the tray's Quit does: the
            // receiver lets the deliveries it is answering finish, rather than the app dying
            // mid-way.
            #[cfg(unix)]
            {
                let quitting = handle.clone();
                tauri::async_runtime::spawn(async move {
                    alertray::headless::shutdown_signal().await;
                    tracing::info!("asked to quit by a signal");
                    quitting.exit(0);
                });
            }
            tauri::async_runtime::spawn(start(handle));
            Ok(())
        })
        .build(context)
}

/// Starts the receiver, popups and the refresh loop; opens Settings at the problem when the
/// config does not load.
async fn start<R: Runtime>(app: tauri::AppHandle<R>) {
    let shell = app.state::<Shell>();
    let core = shell.core.clone();
    let shutdown = shell.shutdown.clone();
    let mut events = core.events.subscribe();
    let status = core.reload().await;
    if let ReceiverStatus::Stopped { reason, key } = &status {
        tracing::error!("the receiver is not running: {reason}");
        windows::open_at(&app, windows::Page::Settings, key.as_deref());
    }
    // Always listening: notifications.enabled is read by the popup policy at each event, so
    // turning popups off or on in Settings takes effect at once.
    if std::env::var_os("ALERTRAY_NO_POPUPS").is_none() {
        let icon = write_icon(&core.paths.data_dir);
        core.spawn_popups(Arc::new(DesktopNotifier::new("Alertray", icon)), shutdown.clone());
    }
    tauri::async_runtime::spawn(core.clone().watch_config_file(shutdown.clone()));
    let refresher = app.clone();
    tauri::async_runtime::spawn(async move { refresh_loop(refresher).await });
    request_refresh(&app, "started");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = events.recv() => match ev {
                Ok(Event::TestReceived { .. }) => request_refresh(&app, "token"),
                Ok(Event::Listening { .. }) | Ok(Event::ReceiverFailed { .. }) => request_refresh(&app, "receiver"),
                Ok(Event::TunnelChanged) => request_refresh(&app, "tunnel"),
                Ok(Event::ConfigFileApplied) => request_refresh(&app, "config"),
                Ok(Event::ConfigFileRejected { reason }) => {
                    request_refresh(&app, &format!("config-rejected:{reason}"))
                }
                // Missed events may have been a token or a tunnel change too.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => request_refresh(&app, "lagged"),
                Ok(_) => request_refresh(&app, "alerts"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

/// Asks for the tray and the windows to be brought up to date.
pub fn request_refresh<R: Runtime>(app: &tauri::AppHandle<R>, what: &str) {
    let _ = app.emit(CHANGED_EVENT, what);
    app.state::<Shell>().refresh.notify_one();
}

/// Redraws the tray when asked, at most every 100 ms, so a storm is not a redraw storm.
async fn refresh_loop<R: Runtime>(app: tauri::AppHandle<R>) {
    let shell = app.state::<Shell>();
    loop {
        tokio::select! {
            _ = shell.shutdown.cancelled() => break,
            _ = shell.refresh.notified() => {}
            // Snoozes expire on their own: redraw now and then even without events.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        tray::refresh(&app);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the app icon into the data dir for notification servers, which want a file path.
fn write_icon(data_dir: &std::path::Path) -> Option<String> {
    let path = data_dir.join("alertray.png");
    if !path.exists() {
        std::fs::write(&path, include_bytes!("../../icons/icon.png")).ok()?;
    }
    Some(path.display().to_string())
}
