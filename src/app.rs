//! Wiring: where files live, and starting the receiver with its store and event channel.
//! Both the headless CLI and the desktop shell start Alertray through here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::alerts::Event;
use crate::config::{Config, ConfigError, TlsConfig};
use crate::lock::MutexExt as _;
use crate::server::{self, ReceiverState};
use crate::store::{self, Store, StoreError};
use crate::tls::{self, ServerCertInfo, TlsError};
use crate::tunnel::{Tunnel, TunnelStatus};

/// How many events a slow subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 1024;

/// How often the config file is looked at for an edit made by hand.
pub const CONFIG_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a changed config file must stay the same before it is read as an edit: an editor
/// that writes in place may be caught halfway.
const CONFIG_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Where Alertray keeps its config and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config file.
    pub config_file: PathBuf,
    /// The data dir: store, generated certificate, logs.
    pub data_dir: PathBuf,
}

/// The path an environment variable names (`ALERTRAY_CONFIG`); unset or empty: none.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

impl Paths {
    /// The platform's config and data dirs, unless overridden.
    pub fn resolve(config_file: Option<PathBuf>, data_dir: Option<PathBuf>) -> Paths {
        let dirs = directories::ProjectDirs::from("", "", "alertray");
        let config_file = config_file.unwrap_or_else(|| match &dirs {
            Some(d) => d.config_dir().join("config.toml"),
            None => PathBuf::from("alertray.toml"),
        });
        let data_dir = data_dir.unwrap_or_else(|| match &dirs {
            Some(d) => d.data_dir().to_path_buf(),
            None => PathBuf::from("alertray-data"),
        });
        Paths { config_file, data_dir }
    }

    /// The store's database file.
    pub fn db(&self) -> PathBuf {
        store::db_path(&self.data_dir)
    }
}

/// Raises this process's open-file limit to the most it may have, so that a flood of
/// connections meets the receiver's own bounds rather than the system's default of 1024.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("open file limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
}

/// Why the receiver did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} (server.listen): {}", bind_problem(*addr, source))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (often: another program uses the port).
        source: std::io::Error,
    },
}

/// Why an address cannot be listened on, in plain words (not "os error 98").
pub fn bind_problem(addr: SocketAddr, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        AddrInUse => "another program (or another Alertray) is already listening there".into(),
        AddrNotAvailable => "no network interface of this machine has that address".into(),
        PermissionDenied if addr.port() < 1024 => {
            "ports below 1024 need administrator rights; choose 1024 or above".into()
        }
        PermissionDenied => "the system does not allow Alertray to listen there".into(),
        // "Cannot assign requested address (os error 99)": the words, without the number.
        _ => {
            let text = e.to_string();
            match text.split_once(" (os error ") {
                Some((words, _)) => words.to_string(),
                None => text,
            }
        }
    }
}

/// A running receiver.
pub struct Running {
    /// The bound address (useful when the config said port 0).
    pub addr: SocketAddr,
    /// The server certificate in use.
    pub cert: ServerCertInfo,
    /// The store it writes to.
    pub store: Store,
    task: JoinHandle<()>,
    /// Gives its listener back once it no longer accepts, after its shutdown token is
    /// cancelled.
    released: tokio::sync::oneshot::Receiver<TcpListener>,
}

impl Running {
    /// The event that says it listens.
    fn listening(&self) -> Event {
        Event::Listening { addr: self.addr.to_string(), fingerprint: self.cert.fingerprint.clone() }
    }

    /// Waits until the receiver has stopped (after its shutdown token is cancelled): it
    /// listens no more, and the requests it was answering are answered.
    pub async fn stopped(self) {
        // Nobody takes the listener over: the port is free as soon as it stops accepting.
        let Running { task, released, .. } = self;
        drop(released);
        let _ = task.await;
    }

    /// Waits until the receiver no longer accepts (after its shutdown token is cancelled),
    /// leaving the requests it was answering to finish on their own: what a restart waits
    /// for, so that a slow client cannot keep the new receiver from listening. Returns the
    /// listener, still bound: dropped, the port is free.
    pub async fn released(self) -> Option<TcpListener> {
        self.released.await.ok()
    }
}

/// Opens the store, sets up TLS, binds `server.listen`, and serves until `shutdown`.
/// Publishes [`Event::Listening`] once it accepts connections.
pub async fn start(
    config: Arc<Config>,
    data_dir: &Path,
    events: broadcast::Sender<Event>,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let store = Store::open(&store::db_path(data_dir), events.clone(), config.store.retention_days)?;
    let running = start_with(config, data_dir, store, shutdown, None).await?;
    let _ = events.send(running.listening());
    Ok(running)
}

/// Like [`start`], with a store that is already open (so that restarts keep it), and
/// without publishing [`Event::Listening`]: the caller does, once it has noted the new state.
/// `previous` is the listener of the receiver this one replaces: kept when it is bound to
/// `server.listen`, so that no connection is refused during the restart, else closed first.
pub async fn start_with(
    config: Arc<Config>,
    data_dir: &Path,
    store: Store,
    shutdown: CancellationToken,
    previous: Option<TcpListener>,
) -> Result<Running, StartError> {
    let want = config.server.listen;
    let same = |l: &TcpListener| {
        l.local_addr().is_ok_and(|a| a.ip() == want.ip() && (want.port() == 0 || a.port() == want.port()))
    };
    let previous = previous.filter(same);
    let tls = tls::receiver_tls(&config, data_dir)?;
    let listener = match previous {
        Some(listener) => listener,
        None => TcpListener::bind(want).await.map_err(|source| StartError::Bind { addr: want, source })?,
    };
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: want, source })?;
    let router = server::router(ReceiverState::new(config.clone(), store.clone()));
    let acceptor = TlsAcceptor::from(tls.config.clone());
    if let (Some(resolver), TlsConfig::Acme(acme)) = (&tls.acme, &config.tls) {
        let files = crate::acme::AcmeFiles::in_data_dir(data_dir);
        tokio::spawn(crate::acme::run(acme.clone(), files, resolver.clone(), shutdown.clone()));
    }
    let (release, released) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::serve(listener, acceptor, router, config, shutdown, release));
    Ok(Running { addr, cert: tls.cert, store, task, released })
}

/// Whether the receiver runs, as the tray and the Settings window show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReceiverStatus {
    /// It accepts deliveries.
    Running {
        /// The bound address.
        addr: String,
        /// The server certificate's SHA-256 fingerprint.
        fingerprint: String,
        /// The certificate file.
        cert_path: String,
        /// Whether Alertray generated the certificate.
        self_signed: bool,
    },
    /// It does not run.
    Stopped {
        /// Why, for the user.
        reason: String,
        /// The config key at fault, when one is.
        key: Option<String>,
    },
}

impl ReceiverStatus {
    /// Why it is not running, if it is not.
    pub fn error(&self) -> Option<&str> {
        match self {
            ReceiverStatus::Running { .. } => None,
            ReceiverStatus::Stopped { reason, .. } => Some(reason),
        }
    }
}

/// What the watcher of the config file knows of it.
#[derive(Debug, Clone, Default)]
struct FileState {
    /// What the file held when it was last applied; `None` before, or when it could not be read.
    applied: Option<Vec<u8>>,
    /// An edit by hand left unapplied while the receiver runs on, and why.
    refused: Option<(Vec<u8>, String)>,
}

struct ReceiverSlot {
    config: Option<Arc<Config>>,
    running: Option<(Running, CancellationToken)>,
    status: ReceiverStatus,
    tunnel: Option<(Tunnel, u16)>,
}

/// Alertray's core, running: the store, the event channel, the popup policy and a receiver
/// that can be restarted with a new config. The CLI and the desktop shell each hold one.
pub struct Alertray {
    /// Where the config and data live.
    pub paths: Paths,
    /// Every event the core publishes.
    pub events: broadcast::Sender<Event>,
    /// The store, shared by every receiver this runs.
    pub store: Store,
    /// The popup policy (snoozes, quiet hours, minimum severity).
    pub policy: crate::policy::SharedPolicy,
    /// Popups beyond this many a minute fold into a summary (from the config).
    pub max_popups_per_minute: Arc<std::sync::atomic::AtomicU32>,
    slot: tokio::sync::Mutex<ReceiverSlot>,
    status: std::sync::Mutex<ReceiverStatus>,
    tunnel: std::sync::Mutex<Option<tokio::sync::watch::Receiver<TunnelStatus>>>,
    /// What the config file held when last applied, and an edit of it left unapplied; to
    /// tell an edit by hand.
    config_text: std::sync::Mutex<FileState>,
    /// Held by whoever reads the config file to apply it, or writes it: Settings' Save, the
    /// watcher of edits by hand, and stopping. One at a time, so that what was applied last
    /// is what the file holds.
    config_io: tokio::sync::Mutex<()>,
    /// Why the data dir is not this Alertray's: another one uses it.
    data_dir_taken: Option<String>,
}

/// The lock on the data dir of this process's Alertray, held until the process ends (a
/// second [`Alertray::open`] of the same dir in one process, as tests do after dropping the
/// first, takes it over).
static DATA_DIR_LOCK: std::sync::Mutex<Option<DataDirLock>> = std::sync::Mutex::new(None);

/// An exclusive lock on `alertray.lock` in a data dir (released by the system when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    dir: PathBuf,
}

/// Why a data dir could not be locked.
#[derive(Debug)]
pub enum DataDirLockError {
    /// Another process holds it (said in words, with its process id when known).
    Taken(String),
    /// Locking failed (a file system without locks): going on is better than not starting.
    Other(std::io::Error),
}

/// Locks `dir` (made if missing) for this process: one Alertray at a time writes a data dir,
/// since two would each keep their own idea of the active alerts.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, DataDirLockError> {
    {
        let mut held = DATA_DIR_LOCK.locked();
        // This process holds it already: a new Alertray on the same dir replaces the old.
        if let Some(lock) = held.take_if(|l| l.dir == dir) {
            return Ok(lock);
        }
    }
    store::create_private_dir(dir).map_err(DataDirLockError::Other)?;
    let path = dir.join("alertray.lock");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(DataDirLockError::Other)?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::Write as _;
            let _ = file.set_len(0).and_then(|_| write!(file, "{}", std::process::id()));
            Ok(DataDirLock { _file: file, dir: dir.to_path_buf() })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).ok().filter(|p| !p.trim().is_empty());
            let who =
                pid.map_or("another Alertray".to_string(), |p| format!("another Alertray (process {})", p.trim()));
            Err(DataDirLockError::Taken(format!(
                "{who} already uses the data dir {}: stop it, or give this one another data dir (--data-dir, or ALERTRAY_DATA_DIR)",
                dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(DataDirLockError::Other(e)),
    }
}

impl Alertray {
    /// Opens the store in `paths.data_dir` and restores the stored snoozes. No receiver runs
    /// until [`Alertray::apply`]. A store that cannot be opened (no permission, read-only,
    /// newer schema) does not stop Alertray: it runs degraded, answering deliveries 503 so
    /// that Netdata retries, and [`Alertray::store_error`] says why.
    ///
    /// One Alertray at a time uses a data dir: another one (the app, or `alertray serve`)
    /// already there leaves this one degraded, and [`Alertray::data_dir_taken`] says by whom
    /// (not logged here: the caller says what it does about it).
    pub fn open(paths: Paths) -> Alertray {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let lock = lock_data_dir(&paths.data_dir);
        let opened = match &lock {
            Err(DataDirLockError::Taken(why)) => Err(why.clone()),
            _ => Store::open(&paths.db(), events.clone(), 90).map_err(|e| e.to_string()),
        };
        let store = opened.unwrap_or_else(|e| {
            // A data dir taken is the caller's to report: `alertray serve` stops there.
            if !matches!(lock, Err(DataDirLockError::Taken(_))) {
                tracing::error!(
                    "cannot open the store, so deliveries are answered 503 until this is fixed and Alertray restarted: {e}"
                );
            }
            Store::unavailable(&paths.db(), e)
        });
        let data_dir_taken = match lock {
            Ok(lock) => {
                *DATA_DIR_LOCK.locked() = Some(lock);
                None
            }
            Err(DataDirLockError::Taken(why)) => Some(why),
            Err(DataDirLockError::Other(e)) => {
                tracing::warn!(
                    "cannot lock the data dir ({e}); going on without making sure no other Alertray uses it"
                );
                None
            }
        };
        let snoozes = store::open_reader(&paths.db())
            .and_then(|c| store::snoozes(&c).map_err(|source| StoreError::Sqlite { path: paths.db(), source }))
            .unwrap_or_default();
        let policy = crate::policy::SharedPolicy::new(crate::policy::PopupPolicy { snoozes, ..Default::default() });
        let stopped = ReceiverStatus::Stopped { reason: "not started yet".into(), key: None };
        Alertray {
            paths,
            events,
            store,
            policy,
            max_popups_per_minute: Arc::new(std::sync::atomic::AtomicU32::new(10)),
            slot: tokio::sync::Mutex::new(ReceiverSlot {
                config: None,
                running: None,
                status: stopped.clone(),
                tunnel: None,
            }),
            status: std::sync::Mutex::new(stopped),
            tunnel: std::sync::Mutex::new(None),
            config_text: std::sync::Mutex::new(FileState::default()),
            config_io: tokio::sync::Mutex::new(()),
            data_dir_taken,
        }
    }

    /// Why nothing can be stored: the store could not be opened, or stopped after a disk error.
    pub fn store_error(&self) -> Option<String> {
        self.store.broken().map(|r| format!("cannot store alerts: {r}"))
    }

    /// Stops the running receiver (if any) and starts one with `config`. A config that did
    /// not load leaves the receiver stopped with the reason. Returns the new status and
    /// publishes it as [`Event::Listening`] or [`Event::ReceiverFailed`].
    pub async fn apply(&self, config: Result<Config, ConfigError>) -> ReceiverStatus {
        let mut slot = self.slot.lock().await;
        let mut previous = None;
        if let Some((running, token)) = slot.running.take() {
            token.cancel();
            previous = running.released().await;
        }
        let status = match config {
            Err(e) => {
                // Nothing listens now: the port is free at once.
                drop(previous.take());
                ReceiverStatus::Stopped { key: e.key().map(str::to_string), reason: e.to_string() }
            }
            Ok(cfg) => {
                let cfg = Arc::new(cfg);
                self.store.set_retention_days(cfg.store.retention_days);
                self.max_popups_per_minute
                    .store(cfg.notifications.max_popups_per_minute, std::sync::atomic::Ordering::Relaxed);
                self.policy.update(|p| {
                    p.off = !cfg.notifications.enabled;
                    p.min_severity = cfg.notifications.min_severity;
                    p.quiet_hours = cfg.notifications.quiet_hours;
                });
                slot.config = Some(cfg.clone());
                let token = CancellationToken::new();
                match start_with(cfg, &self.paths.data_dir, self.store.clone(), token.clone(), previous).await {
                    Ok(running) => {
                        let status = ReceiverStatus::Running {
                            addr: running.addr.to_string(),
                            fingerprint: running.cert.fingerprint.clone(),
                            cert_path: running.cert.cert_path.display().to_string(),
                            self_signed: running.cert.self_signed,
                        };
                        slot.running = Some((running, token));
                        status
                    }
                    Err(e) => {
                        let key = match &e {
                            StartError::Bind { .. } => Some("server.listen".to_string()),
                            StartError::Config(c) => c.key().map(str::to_string),
                            // A file named by a setting: Settings opens at that setting.
                            StartError::Tls(crate::tls::TlsError::Pem { setting, .. }) if setting.contains('.') => {
                                Some(setting.to_string())
                            }
                            _ => None,
                        };
                        ReceiverStatus::Stopped { reason: e.to_string(), key }
                    }
                }
            }
        };
        slot.status = status.clone();
        *self.status.locked() = status.clone();
        // Published once the status says so: whoever the event wakes reads the new status.
        match (&status, &slot.running) {
            (ReceiverStatus::Stopped { reason, .. }, _) => {
                tracing::error!("receiver not running: {reason}");
                let _ = self.events.send(Event::ReceiverFailed { reason: reason.clone() });
            }
            (_, Some((running, _))) => {
                tracing::info!(addr = %running.addr, fingerprint = %running.cert.fingerprint, "receiver listening");
                let _ = self.events.send(running.listening());
            }
            _ => {}
        }
        self.supervise_tunnel(&mut slot).await;
        status
    }

    /// Starts, keeps or stops the tunnel to match the config in use: it runs while the
    /// receiver does, and keeps running (with the same public URL) across config changes that
    /// leave `[tunnel]` and the port alone.
    async fn supervise_tunnel(&self, slot: &mut ReceiverSlot) {
        let want = match (&slot.config, &slot.running) {
            (Some(cfg), Some((running, _))) => cfg.tunnel.clone().map(|t| (t, running.addr.port())),
            _ => None,
        };
        let keep = matches!((&slot.tunnel, &want), (Some((t, p)), Some((w, wp))) if t.config == *w && p == wp);
        if keep {
            return;
        }
        if let Some((old, _)) = slot.tunnel.take() {
            old.stop().await;
        }
        let mut watch = self.tunnel.locked();
        *watch = None;
        if let Some((config, port)) = want {
            let tunnel = Tunnel::spawn(config, port, self.paths.data_dir.clone(), self.events.clone());
            *watch = Some(tunnel.watch());
            slot.tunnel = Some((tunnel, port));
        }
        drop(watch);
        let _ = self.events.send(Event::TunnelChanged);
    }

    /// "Check connection": goes through the webhook URL in use as Netdata would.
    pub async fn check(&self) -> crate::check::Report {
        let Some(cfg) = self.config().await else {
            let reason = self.status().error().unwrap_or("the config did not load").to_string();
            return crate::check::Report {
                url: None,
                steps: vec![crate::check::Step {
                    name: "Public URL",
                    status: crate::check::StepStatus::Failed,
                    detail: format!("the receiver is not running: {reason}"),
                    fix: Some("Fix the setting Settings points at, then check again.".into()),
                }],
                passed: false,
            };
        };
        // From the files, which the receiver reloads: an ACME or renewed certificate may have
        // replaced the one it started with.
        let local_fingerprint = crate::tls::local_fingerprint(&cfg, &self.paths.data_dir).or(match self.status() {
            ReceiverStatus::Running { fingerprint, .. } => Some(fingerprint),
            ReceiverStatus::Stopped { .. } => None,
        });
        let opts =
            crate::check::CheckOptions { webhook_url: self.webhook_url(&cfg), local_fingerprint, ..Default::default() };
        crate::check::run(&cfg, opts).await
    }

    /// The tunnel's state now.
    pub fn tunnel_status(&self) -> TunnelStatus {
        match &*self.tunnel.locked() {
            Some(w) => w.borrow().clone(),
            None => TunnelStatus::off(),
        }
    }

    /// The URL Netdata should post to: the tunnel's public URL while it is up, else
    /// `server.public_url`, joined with `server.path`.
    pub fn webhook_url(&self, cfg: &Config) -> Option<String> {
        cfg.server.webhook_url_via(self.tunnel_status().url.as_deref())
    }

    /// Reads the config file again and applies it.
    pub async fn reload(&self) -> ReceiverStatus {
        let _io = self.config_io.lock().await;
        let path = &self.paths.config_file;
        match std::fs::read(path) {
            Ok(text) => {
                let cfg = Config::from_file_bytes(path, &text);
                self.note_applied(Some(text));
                self.apply(cfg).await
            }
            Err(source) => {
                self.note_applied(None);
                self.apply(Err(ConfigError::reading(path, source))).await
            }
        }
    }

    /// Settings' Save: writes `raw` (which validated as `cfg`) as the config file and applies
    /// it. A new listen address that another program holds is refused first, with nothing
    /// written and the receiver left running.
    pub async fn save_config(
        &self,
        raw: &crate::config::RawConfig,
        cfg: Config,
    ) -> Result<ReceiverStatus, ConfigError> {
        let _io = self.config_io.lock().await;
        if let Some((problem, current)) = self.listen_problem(cfg.server.listen).await {
            return Err(ConfigError::Invalid {
                key: "server.listen".into(),
                value: format!("\"{}\"", cfg.server.listen),
                accepted: format!(
                    "an address Alertray can listen on ({problem}); nothing was saved, and the receiver keeps \
                     listening on {current}"
                ),
            });
        }
        let text = crate::config::write(&self.paths.config_file, raw)?;
        self.note_applied(Some(text.into_bytes()));
        Ok(self.apply(Ok(cfg)).await)
    }

    /// Applies the config file again whenever its content changes (an edit by hand), looking
    /// every [`CONFIG_POLL`] until `shutdown`. While the receiver runs, an edit that does not
    /// load, or names TLS files or a listen address that cannot be used, is left unapplied and
    /// announced ([`Event::ConfigFileRejected`]): the receiver keeps its settings rather than
    /// stop on a half-made edit. While it does not run, such an edit becomes the new reason why.
    pub async fn watch_config_file(self: Arc<Self>, shutdown: CancellationToken) {
        let path = self.paths.config_file.clone();
        let mut tick = tokio::time::interval(CONFIG_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Why the file could not be read at the last look, said once.
        let mut unreadable: Option<String> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let _io = self.config_io.lock().await;
            if shutdown.is_cancelled() {
                break;
            }
            let text = match tokio::fs::read(&path).await {
                Ok(text) => text,
                Err(e) => {
                    let reason = e.to_string();
                    if unreadable.as_ref() != Some(&reason) {
                        tracing::warn!(
                            "{} cannot be read ({reason}); the receiver keeps its settings until it can",
                            path.display()
                        );
                        unreadable = Some(reason);
                    }
                    continue;
                }
            };
            unreadable = None;
            let known = self.config_text.locked().clone();
            match (&known.applied, &known.refused) {
                // An edit left unapplied for a cause outside the file (TLS files not there
                // yet, a port held): applied, without a word more, once the cause is gone.
                (_, Some((refused, _))) if *refused == text => {
                    if let Ok(cfg) = Config::from_file_bytes(&path, &text) {
                        if self.usable(&cfg).await.is_ok() {
                            tracing::info!("{} can be applied now; applying it", path.display());
                            self.apply_edit(text, Ok(cfg)).await;
                        }
                    }
                    continue;
                }
                (Some(applied), None) if *applied == text => continue,
                _ => {
                    tokio::time::sleep(CONFIG_SETTLE).await;
                    if tokio::fs::read(&path).await.ok().as_ref() != Some(&text) {
                        continue;
                    }
                }
            }
            // Comments, spacing or order only, or a refused edit undone: nothing to restart.
            let settings_kept = known.applied.as_ref().is_some_and(|a| crate::config::same_settings(a, &text));
            if settings_kept && self.running() {
                self.note_applied(Some(text));
                if known.refused.is_some() {
                    tracing::info!("{} is back to the settings in use", path.display());
                    let _ = self.events.send(Event::ConfigFileApplied);
                } else {
                    tracing::info!("{} changed, but not its settings", path.display());
                }
                continue;
            }
            let cfg = Config::from_file_bytes(&path, &text);
            let problem = match &cfg {
                Err(e) => Some(e.to_string()),
                Ok(cfg) => self.usable(cfg).await.err(),
            };
            match problem {
                Some(reason) if self.running() => {
                    self.config_text.locked().refused = Some((text, reason.clone()));
                    tracing::warn!(
                        "{} changed, but the receiver keeps its settings until the file is fixed: {reason}",
                        path.display()
                    );
                    let _ = self.events.send(Event::ConfigFileRejected { reason });
                }
                _ => {
                    tracing::info!("{} changed; applying it", path.display());
                    self.apply_edit(text, cfg).await;
                }
            }
        }
    }

    /// Applies `cfg`, read from the config file's `text` edited by hand.
    async fn apply_edit(&self, text: Vec<u8>, cfg: Result<Config, ConfigError>) {
        self.note_applied(Some(text));
        self.apply(cfg).await;
        let _ = self.events.send(Event::ConfigFileApplied);
    }

    /// Applies `cfg`, read from the config file's `text` by the caller (`alertray serve`,
    /// which checks it before anything starts), so that an edit made since is told apart.
    pub async fn apply_file(&self, text: Vec<u8>, cfg: Config) -> ReceiverStatus {
        let _io = self.config_io.lock().await;
        self.note_applied(Some(text));
        self.apply(Ok(cfg)).await
    }

    /// Notes `text` as what the config file holds and the receiver applied (`None`: not
    /// known); no edit of it is left unapplied.
    fn note_applied(&self, text: Option<Vec<u8>>) {
        *self.config_text.locked() = FileState { applied: text, refused: None };
    }

    /// Why the config file's latest edit by hand is not applied, while the receiver keeps
    /// the settings it had ([`Event::ConfigFileRejected`]); `None` when nothing is held back.
    pub fn refused_edit(&self) -> Option<String> {
        self.config_text.locked().refused.as_ref().map(|(_, why)| why.clone())
    }

    /// Whether `cfg` can replace the running config: its TLS files load and its listen
    /// address is free.
    async fn usable(&self, cfg: &Config) -> Result<(), String> {
        tls::check_files(cfg).map_err(|e| e.to_string())?;
        match self.listen_problem(cfg.server.listen).await {
            Some((problem, _)) => Err(problem),
            None => Ok(()),
        }
    }

    /// Why a running receiver could not move to `addr`, with where it listens now: another
    /// program holds it. The running receiver's own port is taken to be free, whatever the
    /// interface (`127.0.0.1:8443` to `0.0.0.0:8443`). Nothing to say while none runs.
    async fn listen_problem(&self, addr: SocketAddr) -> Option<(String, SocketAddr)> {
        let current = self.slot.lock().await.running.as_ref().map(|(r, _)| r.addr)?;
        if addr.port() == 0 || addr.port() == current.port() {
            return None;
        }
        let e = std::net::TcpListener::bind(addr).err()?;
        Some((StartError::Bind { addr, source: e }.to_string(), current))
    }

    /// Why this Alertray does not have its data dir to itself: another Alertray (process)
    /// uses it, so it stores nothing.
    pub fn data_dir_taken(&self) -> Option<&str> {
        self.data_dir_taken.as_deref()
    }

    /// The receiver's status now.
    pub fn status(&self) -> ReceiverStatus {
        self.status.locked().clone()
    }

    /// Whether the receiver runs now.
    fn running(&self) -> bool {
        matches!(*self.status.locked(), ReceiverStatus::Running { .. })
    }

    /// The config in use, if one loaded.
    pub async fn config(&self) -> Option<Arc<Config>> {
        self.slot.lock().await.config.clone()
    }

    /// Stops the tunnel and the receiver, letting requests in flight finish. (Cancel the
    /// watcher of the config file first: an edit it applies later would start them again.)
    pub async fn stop(&self) {
        let _io = self.config_io.lock().await;
        let mut slot = self.slot.lock().await;
        if let Some((tunnel, _)) = slot.tunnel.take() {
            tunnel.stop().await;
        }
        if let Some((running, token)) = slot.running.take() {
            token.cancel();
            running.stopped().await;
        }
    }

    /// A read-only connection to the store.
    pub fn reader(&self) -> Result<rusqlite::Connection, StoreError> {
        store::open_reader(&self.paths.db())
    }

    /// Sets, clears or clears every snooze, in the policy and the store.
    pub async fn snooze(&self, change: store::SnoozeChange) -> Result<(), StoreError> {
        self.store.snooze(change.clone()).await?;
        let now = store::now_ms();
        self.policy.update(|p| {
            match change {
                store::SnoozeChange::Set(s) => {
                    p.snoozes.retain(|x| x.scope != s.scope);
                    p.snoozes.push(s);
                }
                store::SnoozeChange::Clear(scope) => p.snoozes.retain(|x| x.scope != scope),
                store::SnoozeChange::ClearAll => p.snoozes.clear(),
            }
            p.prune(now);
        });
        Ok(())
    }

    /// Shows desktop popups for events until `shutdown`, through `notifier`, under the policy.
    pub fn spawn_popups(&self, notifier: Arc<dyn crate::notify::Notifier>, shutdown: CancellationToken) {
        tokio::spawn(crate::notify::run_popups(
            self.events.subscribe(),
            notifier,
            Arc::new(self.policy.clone()),
            self.max_popups_per_minute.clone(),
            shutdown,
        ));
    }
}
