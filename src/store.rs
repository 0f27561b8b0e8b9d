//! The store: every accepted notification with its raw body, the active state derived from
//! them, and the latest verification token, in one SQLite file.
//!
//! Writes go through one writer thread that commits in groups: it takes every delivery that is
//! waiting and records them all in one transaction. A commit writes the group to the WAL; a
//! second thread, the syncer, then flushes the WAL to disk (`fdatasync`) and only after that
//! answers each caller of every group the flush covered. A delivery is acknowledged to
//! Netdata only after that answer, so a 2xx always means "on disk", while one flush serves
//! many concurrent deliveries and the writer is already committing the next group while the
//! disk works. (This is SQLite's `synchronous = FULL` guarantee, with the flush moved off the
//! writer: the writer runs `synchronous = NORMAL`, and SQLite still syncs the WAL and the
//! database around every checkpoint.) A disk that fails a flush stops the store: what it
//! reported lost cannot be trusted to be on disk, so nothing more is acknowledged.
//!
//! The writer also copies the WAL into the database once it holds about 8 MB, and empties it
//! after a second without writes, so the database file alone is whole while Alertray is idle.
//! Readers use their own connections; WAL lets them read while the writer writes, from this
//! process or another (`alertray alerts` while `serve` runs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{broadcast, oneshot};

use crate::alerts::{self, Alert, Event, StateUpdate};
use crate::payload::{node_name, Notification};
use crate::policy::{Snooze, SnoozeScope};

/// The error of the store's read queries.
pub use rusqlite::Error as QueryError;

/// A body seen again within this window (and without a transition id) is a duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(300);
/// The most deliveries waiting for the writer; beyond it the receiver answers 503.
const QUEUE_CAPACITY: usize = 4096;
/// The most deliveries committed in one transaction.
const MAX_BATCH: usize = 512;
/// The page size of new databases. A stored alert (a 2.4 KB body plus its fields, about
/// 3 KB) takes a whole 4 KiB page to itself; an 8 KiB page holds two.
const PAGE_SIZE: i64 = 8192;
/// The WAL is copied into the database (by the writer, after a commit) once it holds this many
/// pages, and then reused from its start, so it stays small and in the page cache.
const WAL_CHECKPOINT_PAGES: i64 = 1000;
/// A WAL left larger than this by a burst is cut back to it when it is next reused.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// After this long without a write, the WAL is copied into the database and emptied.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);
/// How often old history is pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// What went wrong with the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by another version of Alertray.
    #[error("database {path} has schema version {found}, but this Alertray reads version {SCHEMA_VERSION}; move it aside to start a new store")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// The writer has stopped or is overloaded.
    #[error("the store is not accepting writes: {0}")]
    Unavailable(&'static str),
    /// The store could not be opened at start; nothing can be stored until it can.
    #[error("the store could not be opened: {0}")]
    NotOpen(Arc<String>),
    /// The disk failed to save committed deliveries; the store accepts nothing more until
    /// Alertray is restarted.
    #[error("the store stopped after a disk error: {0}")]
    Failed(Arc<String>),
    /// The database cannot be opened for writing (permissions, a read-only file system).
    #[error("cannot write the database {path}: {source}")]
    Access {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A folder is where the database file should be.
    #[error("{} is a folder, not a database file: move it aside", .path.display())]
    Folder {
        /// The path.
        path: PathBuf,
    },
    /// The data dir is a file.
    #[error("the data dir {} is a file, not a folder: name a folder with --data-dir or ALERTRAY_DATA_DIR", .path.display())]
    DataDirIsAFile {
        /// The data dir.
        path: PathBuf,
    },
    /// There is no store at the path yet.
    #[error("there is no store at {} yet: `alertray serve` or the app makes it when first run with this data dir", .path.display())]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// A file or folder could not be made.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One delivery to record.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The raw body as received.
    pub body: Vec<u8>,
    /// What the parser made of it.
    pub notification: Notification,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// The peer's address.
    pub peer: String,
    /// How it authenticated.
    pub auth: String,
}

/// What recording a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The stored notification's id (the earlier one's, for a duplicate).
    pub id: i64,
    /// `true` when this delivery had already been recorded.
    pub duplicate: bool,
}

/// The latest verification token from a Test notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationToken {
    /// The token.
    pub token: String,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
}

/// One stored notification, as history lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Its id.
    pub id: i64,
    /// When it arrived (Unix ms).
    pub received_ms: i64,
    /// alert, reachability, test or unknown.
    pub kind: String,
    /// critical, warning, clear, unreachable, reachable, other; none for test/unknown.
    pub status: Option<String>,
    /// The node's hostname.
    pub host: Option<String>,
    /// The alert's name.
    pub name: Option<String>,
    /// Netdata's message.
    pub message: String,
    /// Where to open it.
    pub url: Option<String>,
    /// When Netdata says it happened.
    pub triggered_at: Option<String>,
    /// The peer that delivered it.
    pub peer: String,
    /// How it authenticated.
    pub auth: String,
    /// How many times it was delivered (repeats and retries counted once in history).
    pub deliveries: i64,
}

/// Filters for [`history`].
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only notifications received at or after this (Unix ms).
    pub since_ms: Option<i64>,
    /// Only notifications received before this (Unix ms).
    pub until_ms: Option<i64>,
    /// Only this status word (critical, warning, clear, other, unreachable, reachable), or
    /// only Test notifications (`test`) or notifications of no known shape (`unknown`).
    pub status: Option<String>,
    /// Only this node: its hostname or its beginning, any case.
    pub host: Option<String>,
    /// Only notifications whose message, host or alert name contains this text.
    pub text: Option<String>,
    /// Only notifications older than this id (for paging).
    pub before_id: Option<i64>,
    /// At most this many (newest first); `None` for all.
    pub limit: Option<usize>,
}

type Reply = oneshot::Sender<Result<Recorded, StoreError>>;

enum Job {
    Record(Box<Delivery>, Reply),
    Active(String, ActiveChange, oneshot::Sender<Result<bool, StoreError>>),
    Snooze(SnoozeChange, oneshot::Sender<Result<bool, StoreError>>),
}

/// A change the user makes to one active alert.
#[derive(Debug, Clone, Copy)]
enum ActiveChange {
    /// Acknowledge it, or take the acknowledgement back.
    Acknowledge(bool),
    /// Take it off the active list (it stays in history).
    Dismiss,
}

/// A change to the stored snoozes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnoozeChange {
    /// Add or replace a snooze.
    Set(Snooze),
    /// Remove the snooze of one scope.
    Clear(SnoozeScope),
    /// Remove every snooze.
    ClearAll,
}

/// A handle to the store's writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: SyncSender<Job>,
    path: PathBuf,
    retention: Arc<AtomicU32>,
    /// Why the store could not be opened, when it could not: every write fails with it.
    broken: Option<Arc<String>>,
    /// Set by the syncer when the disk failed a flush: every write fails with it from then on.
    failed: Arc<OnceLock<String>>,
}

/// The schema version this build reads and writes (SQLite's `user_version`).
const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id            INTEGER PRIMARY KEY,
    received_at   INTEGER NOT NULL,
    peer          TEXT NOT NULL,
    auth          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    status        TEXT,
    raw_status    TEXT,
    alert_key     TEXT,
    host          TEXT,
    node_id       TEXT,
    space         TEXT,
    name          TEXT,
    message       TEXT NOT NULL,
    url           TEXT,
    transition_id TEXT,
    triggered_at  TEXT,
    triggered_ms  INTEGER,
    body_sha256   BLOB,
    body          BLOB NOT NULL,
    deliveries    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS notifications_sha
    ON notifications(body_sha256) WHERE body_sha256 IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_received ON notifications(received_at);
CREATE TABLE IF NOT EXISTS active (
    notification_id INTEGER NOT NULL,
    part            INTEGER NOT NULL DEFAULT 0,
    since_ms        INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    acknowledged    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snoozes (
    scope    TEXT NOT NULL,
    target   TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, target)
);
CREATE TABLE IF NOT EXISTS verification (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    token       TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
PRAGMA user_version = 5;
";

/// Updates the active table of a database of schema `version` (2 or 3) to this one's.
///
/// Version 2 kept the active set under its alert keys (about 110 bytes each), so a group of
/// deliveries rewrote most of the table's pages. Version 3 keeps each active entry under the
/// id of the notification that set it: the key is that notification's, and the table fits in
/// a page or two. The writer knows each key's notification id from its in-memory active set.
/// Version 4 adds the entry's `part`, which of the notification's nodes it is, since one
/// reachability notification can name several; every earlier entry is its notification's
/// first (part 0).
/// The update renames the old table, lets [`SCHEMA`] create the new one, and moves the rows.
fn migrate_active(version: i64) -> String {
    format!(
        "ALTER TABLE active RENAME TO active_v{version};
         {SCHEMA}
         INSERT INTO active (notification_id, part, since_ms, updated_ms, acknowledged)
             SELECT notification_id, 0, since_ms, updated_ms, acknowledged FROM active_v{version};
         DROP TABLE active_v{version};"
    )
}

/// Updates a database of schema `version` (2, 3 or 4) to this one's, in one transaction.
///
/// Version 5 escapes the keys' separators inside their parts (an alert named `b|c` on chart
/// `a` no longer shares its key with alert `c` on chart `a|b`). Version 4 changed them too:
/// a node is named by its id alone where it has one (the space's id was part of the key,
/// and the flat shape does not carry it, so the same alert had two keys). Every stored key,
/// and every snooze of one alert, is recomputed from its body, so that what arrives next
/// finds what came before. Two entries that now
/// share a key (one alert, raised once in each shape) become one: the newest stays active,
/// and the longer snooze stays.
fn migrate(conn: &mut Connection, version: i64) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if version < 4 {
        tx.execute_batch(&migrate_active(version))?;
    } else {
        tx.execute_batch(SCHEMA)?;
    }
    let mut rekeyed: Vec<(i64, String)> = Vec::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    {
        let mut rows = tx.prepare("SELECT id, alert_key, body FROM notifications WHERE alert_key IS NOT NULL")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let (id, old, body): (i64, String, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let Some(new) = crate::payload::parse(&body).ok().and_then(|n| n.key().map(str::to_owned)) else {
                continue;
            };
            if new != old {
                rekeyed.push((id, new.clone()));
                renamed.insert(old, new);
            }
        }
    }
    for (id, new) in &rekeyed {
        tx.execute("UPDATE notifications SET alert_key = ?2 WHERE id = ?1", params![id, new])?;
    }
    // Every snooze is read before any moves: one key's old name can be another's new one.
    let mut moved: Vec<(&String, i64)> = Vec::new();
    for (old, new) in &renamed {
        let until: Option<i64> = tx
            .query_row("SELECT until_ms FROM snoozes WHERE scope = 'alert' AND target = ?1", params![old], |r| r.get(0))
            .optional()?;
        moved.extend(until.map(|u| (new, u)));
    }
    for old in renamed.keys() {
        tx.execute("DELETE FROM snoozes WHERE scope = 'alert' AND target = ?1", params![old])?;
    }
    for (new, until) in moved {
        tx.execute(
            "INSERT INTO snoozes (scope, target, until_ms) VALUES ('alert', ?1, ?2)
             ON CONFLICT (scope, target) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms)",
            params![new, until],
        )?;
    }
    let (_, superseded) = newest_per_key(load_active_rows(&tx)?);
    for (id, part) in superseded {
        tx.execute("DELETE FROM active WHERE notification_id = ?1 AND part = ?2", params![id, part])?;
    }
    tx.commit()
}

/// Splits active entries into the newest of each key and the (notification id, part) of
/// the others, which a newer entry of their key supersedes.
fn newest_per_key(entries: Vec<Alert>) -> (Vec<Alert>, Vec<(i64, u32)>) {
    let mut newest: HashMap<String, Alert> = HashMap::new();
    let mut superseded = Vec::new();
    for a in entries {
        let entry = (a.notification_id, a.part);
        match newest.get(&a.key) {
            Some(kept) if (kept.notification_id, kept.part) > entry => superseded.push(entry),
            _ => {
                if let Some(old) = newest.insert(a.key.clone(), a) {
                    superseded.push((old.notification_id, old.part));
                }
            }
        }
    }
    (newest.into_values().collect(), superseded)
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite { path: path.to_path_buf(), source }
}

/// The database file inside a data dir.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("alertray.db")
}

impl Store {
    /// Opens (or creates) the database and starts its writer thread, which publishes events
    /// on `events` after each commit. History older than `retention_days` (0: never) is
    /// pruned at start and hourly.
    pub fn open(path: &Path, events: broadcast::Sender<Event>, retention_days: u32) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir).map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        }
        let mut conn = match open_writer(path) {
            Err(StoreError::Sqlite { source, .. }) if is_corrupt(&source) => {
                // Keep the damaged file for inspection or recovery; never overwrite it.
                let aside = move_aside(path)?;
                tracing::error!(
                    "the database {} is damaged ({source}); moved it to {} and started a new one",
                    path.display(),
                    aside.display()
                );
                open_writer(path)?
            }
            Err(StoreError::Sqlite { source, .. }) if cannot_write(&source) => {
                // SQLite only says "unable to open database file"; the system says why.
                return Err(match access_problem(path) {
                    Some(io) => StoreError::Access { path: path.to_path_buf(), source: io },
                    None => StoreError::Sqlite { path: path.to_path_buf(), source },
                });
            }
            other => other?,
        };
        // FULL while the schema is set up; the writer then runs NORMAL and the syncer flushes.
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite(path))?;
        // 32 MiB of page cache keeps the indexes' hot pages in memory under load.
        conn.pragma_update(None, "cache_size", -32768).map_err(sqlite(path))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sqlite(path))?;
        match version {
            0 | SCHEMA_VERSION => {}
            2..=4 => {
                migrate(&mut conn, version).map_err(sqlite(path))?;
                tracing::info!("updated the database {} to schema version {SCHEMA_VERSION}", path.display());
            }
            found => return Err(StoreError::Schema { path: path.to_path_buf(), found }),
        }
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES).map_err(sqlite(path))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT).map_err(sqlite(path))?;
        // The commit only writes the WAL; the syncer flushes it before anyone is answered.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite(path))?;
        restrict_permissions(path);
        // The WAL exists now and lives as long as the writer's connection; its name in the
        // folder must survive a power loss too.
        sync_dir(path);
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let failed = Arc::new(OnceLock::new());
        let retention = Arc::new(AtomicU32::new(retention_days));
        let active = load_active(&conn).map_err(sqlite(path))?.into_iter().map(|a| (a.key.clone(), a)).collect();
        let transitions = load_transitions(&conn).map_err(sqlite(path))?;
        let seen = load_seen(&conn).map_err(sqlite(path))?;
        let (settled, to_sync) = mpsc::channel::<Vec<Settled>>();
        let syncer = Syncer { wal: with_suffix(path, "-wal"), events, failed: failed.clone() };
        let syncer = std::thread::Builder::new()
            .name("alertray-sync".into())
            .spawn(move || syncer.run(to_sync))
            .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        let writer = Writer {
            conn,
            path: path.to_path_buf(),
            settled,
            retention: retention.clone(),
            last_prune: None,
            active,
            transitions,
            seen,
        };
        std::thread::Builder::new()
            .name("alertray-store".into())
            .spawn(move || writer.run(rx, syncer))
            .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        Ok(Store { jobs: tx, path: path.to_path_buf(), retention, broken: None, failed })
    }

    /// A store that could not be opened (`reason`): every write fails with
    /// [`StoreError::NotOpen`], so the receiver answers 503 and Netdata retries later. Nothing
    /// on disk is touched.
    pub fn unavailable(path: &Path, reason: String) -> Store {
        let (tx, _) = mpsc::sync_channel(1);
        Store {
            jobs: tx,
            path: path.to_path_buf(),
            retention: Arc::new(AtomicU32::new(0)),
            broken: Some(Arc::new(reason)),
            failed: Arc::new(OnceLock::new()),
        }
    }

    /// Why the store cannot store anything: it could not be opened, or the disk failed.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref().or_else(|| self.failed.get()).map(String::as_str)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a delivery durably; returns once it is committed to disk.
    pub async fn record(&self, delivery: Delivery) -> Result<Recorded, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Record(Box::new(delivery), tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer stopped"))?
    }

    /// Marks an active alert acknowledged (or not); `false` if no such alert is active.
    pub async fn acknowledge(&self, key: &str, acknowledged: bool) -> Result<bool, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Active(key.to_string(), ActiveChange::Acknowledge(acknowledged), tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer stopped"))?
    }

    /// Takes an alert off the active list by hand (one Netdata will never clear: its node was
    /// removed, say); it stays in history, and a later raise makes it active again. `false` if
    /// no such alert is active.
    pub async fn dismiss(&self, key: &str) -> Result<bool, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Active(key.to_string(), ActiveChange::Dismiss, tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer stopped"))?
    }

    /// Stores a snooze change (snoozes survive a restart).
    pub async fn snooze(&self, change: SnoozeChange) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Snooze(change, tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer stopped"))?.map(|_| ())
    }

    /// Changes how many days of history are kept (0: all), from the next pruning on.
    pub fn set_retention_days(&self, days: u32) {
        self.retention.store(days, Ordering::Relaxed);
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        if let Some(reason) = &self.broken {
            return Err(StoreError::NotOpen(reason.clone()));
        }
        if let Some(reason) = self.failed.get() {
            return Err(StoreError::Failed(Arc::new(reason.clone())));
        }
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Unavailable("too many deliveries are waiting"),
            TrySendError::Disconnected(_) => StoreError::Unavailable("the writer stopped"),
        })
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sqlite(path))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
    // Only takes effect when the file is created: an existing database keeps its page size.
    conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(sqlite(path))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite(path))?;
    // A damaged file can open and still fail on its first real read.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(sqlite(path))?;
    Ok(conn)
}

fn cannot_write(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::CannotOpen) | Some(rusqlite::ErrorCode::ReadOnly))
}

/// Why the database file cannot be opened for writing, as the system puts it.
fn access_problem(path: &Path) -> Option<std::io::Error> {
    match std::fs::metadata(path) {
        Ok(_) => std::fs::OpenOptions::new().read(true).write(true).open(path).err(),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Some(e),
        Err(_) => {
            let dir = path.parent()?;
            let probe = dir.join(".alertray-write-test");
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                    None
                }
                Err(e) => Some(e),
            }
        }
    }
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Renames the database (and its WAL and shared-memory files) to `<name>.corrupt-<unix ms>`.
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = now_ms();
    let aside = with_suffix(path, &format!(".corrupt-{stamp}"));
    for (from, to) in [
        (path.to_path_buf(), aside.clone()),
        (with_suffix(path, "-wal"), with_suffix(&aside, "-wal")),
        (with_suffix(path, "-shm"), with_suffix(&aside, "-shm")),
    ] {
        if from.exists() {
            std::fs::rename(&from, &to).map_err(|source| StoreError::Io { path: from.clone(), source })?;
        }
    }
    Ok(aside)
}

/// Creates a folder readable by its owner only (0700 on Unix) if it does not exist yet.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it is a file, not a folder"));
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Makes the database readable by its owner only: it holds whatever Netdata sent.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for p in [path.to_path_buf(), with_suffix(path, "-wal"), with_suffix(path, "-shm")] {
            if p.exists() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    /// Committed groups go to the syncer, which answers them once they are on disk.
    settled: Sender<Vec<Settled>>,
    retention: Arc<AtomicU32>,
    last_prune: Option<Instant>,
    /// The active set, as committed: the writer is its only author, so it keeps it in memory
    /// rather than reading it back for every delivery.
    active: HashMap<String, Alert>,
    /// Every stored transition (its [`transition_key`]) and its notification's id, for
    /// duplicate detection.
    transitions: HashMap<String, i64>,
    /// What has been stored under each alert key, active or cleared.
    seen: HashMap<String, Seen>,
}

/// What the writer remembers of the notifications stored under one alert key.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The id of the newest one: a body seen before is the same delivery again only while
    /// nothing about its alert or node has come since.
    last_id: i64,
    /// The newest `triggered_at` (Unix ms), so that a late, older notification cannot change
    /// the state.
    newest_ms: Option<i64>,
}

/// A job committed to the WAL, waiting for the flush that puts it on disk.
struct Settled {
    /// What it changed, published just before its caller is answered.
    events: Vec<Event>,
    answer: Answer,
}

/// A committed job's answer to its caller.
enum Answer {
    Recorded(Reply, Recorded),
    Done(oneshot::Sender<Result<bool, StoreError>>, bool),
}

impl Answer {
    fn send(self) {
        // A caller that went away (its connection closed) no longer needs the answer.
        match self {
            Answer::Recorded(reply, rec) => {
                let _ = reply.send(Ok(rec));
            }
            Answer::Done(reply, done) => {
                let _ = reply.send(Ok(done));
            }
        }
    }

    fn fail(self, err: StoreError) {
        match self {
            Answer::Recorded(reply, _) => {
                let _ = reply.send(Err(err));
            }
            Answer::Done(reply, _) => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// What one batch changes before it is committed; merged into the writer's maps only after
/// the commit succeeds.
struct Batch<'a> {
    tx: Transaction<'a>,
    active: &'a HashMap<String, Alert>,
    transitions: &'a HashMap<String, i64>,
    seen: &'a HashMap<String, Seen>,
    new_active: HashMap<String, Option<Alert>>,
    new_transitions: HashMap<String, i64>,
    new_seen: HashMap<String, Seen>,
}

impl Batch<'_> {
    fn active(&self, key: &str) -> Option<&Alert> {
        match self.new_active.get(key) {
            Some(pending) => pending.as_ref(),
            None => self.active.get(key),
        }
    }

    fn transition(&self, id: &str) -> Option<i64> {
        self.new_transitions.get(id).or_else(|| self.transitions.get(id)).copied()
    }

    fn seen(&self, key: &str) -> Option<Seen> {
        self.new_seen.get(key).or_else(|| self.seen.get(key)).copied()
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>, syncer: std::thread::JoinHandle<()>) {
        self.prune_if_due();
        let mut written = false;
        loop {
            let first = match rx.recv_timeout(IDLE_CHECKPOINT) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if std::mem::take(&mut written) {
                        self.checkpoint_when_idle();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            written = true;
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
            self.prune_if_due();
        }
        // Everything committed is flushed and answered before the connection closes (and
        // checkpoints the WAL into the database).
        let Writer { conn, settled, .. } = self;
        drop(settled);
        let _ = syncer.join();
        drop(conn);
    }

    /// Copies the whole WAL into the database and empties it, so that the database file
    /// alone holds everything while nothing is arriving (a backup of it is whole).
    fn checkpoint_when_idle(&self) {
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::debug!("idle WAL checkpoint did not complete: {e}");
        }
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let path = &self.path;
        let error = |e: &rusqlite::Error| StoreError::Sqlite { path: path.clone(), source: clone_error(e) };
        let mut settled = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        let result = (|| -> Result<_, rusqlite::Error> {
            let mut b = Batch {
                tx: self.conn.transaction()?,
                active: &self.active,
                transitions: &self.transitions,
                seen: &self.seen,
                new_active: HashMap::new(),
                new_transitions: HashMap::new(),
                new_seen: HashMap::new(),
            };
            for job in jobs.by_ref() {
                let done = match job {
                    Job::Record(d, reply) => match record(&mut b, &d) {
                        Ok((rec, events)) => Settled { events, answer: Answer::Recorded(reply, rec) },
                        Err(e) => {
                            let _ = reply.send(Err(error(&e)));
                            return Err(e);
                        }
                    },
                    Job::Snooze(change, reply) => match snooze(&b.tx, &change) {
                        Ok(()) => Settled { events: vec![Event::StateChanged], answer: Answer::Done(reply, true) },
                        Err(e) => {
                            let _ = reply.send(Err(error(&e)));
                            return Err(e);
                        }
                    },
                    Job::Active(key, change, reply) => match change_active(&mut b, &key, change) {
                        Ok(changed) => Settled {
                            events: if changed { vec![Event::StateChanged] } else { vec![] },
                            answer: Answer::Done(reply, changed),
                        },
                        Err(e) => {
                            let _ = reply.send(Err(error(&e)));
                            return Err(e);
                        }
                    },
                };
                settled.push(done);
            }
            let Batch { tx, new_active, new_transitions, new_seen, .. } = b;
            tx.commit()?;
            Ok((new_active, new_transitions, new_seen))
        })();
        match result {
            Ok((new_active, new_transitions, new_seen)) => {
                for (key, a) in new_active {
                    match a {
                        Some(a) => self.active.insert(key, a),
                        None => self.active.remove(&key),
                    };
                }
                self.transitions.extend(new_transitions);
                self.seen.extend(new_seen);
                // If the syncer is gone, the answers are dropped and the callers hear that the
                // writer stopped.
                let _ = self.settled.send(settled);
            }
            Err(e) => {
                tracing::error!(db = %path.display(), "could not commit a group of deliveries: {e}");
                for s in settled {
                    s.answer.fail(error(&e));
                }
                for job in jobs {
                    match job {
                        Job::Record(_, reply) => {
                            let _ = reply.send(Err(error(&e)));
                        }
                        Job::Active(_, _, reply) | Job::Snooze(_, reply) => {
                            let _ = reply.send(Err(error(&e)));
                        }
                    }
                }
            }
        }
    }

    fn prune_if_due(&mut self) {
        let days = self.retention.load(Ordering::Relaxed);
        if days == 0 || self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_INTERVAL) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let cutoff = now_ms() - i64::from(days) * 86_400_000;
        match self.conn.execute(
            "DELETE FROM notifications WHERE received_at < ?1
             AND id NOT IN (SELECT notification_id FROM active)",
            params![cutoff],
        ) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("pruned {n} notifications older than {days} days");
                match load_transitions(&self.conn) {
                    Ok(t) => self.transitions = t,
                    Err(e) => tracing::warn!("reloading transition ids after pruning failed: {e}"),
                }
            }
            Err(e) => tracing::warn!("pruning old notifications failed: {e}"),
        }
    }
}

/// Flushes the WAL for the groups the writer committed, then answers their callers.
struct Syncer {
    wal: PathBuf,
    events: broadcast::Sender<Event>,
    failed: Arc<OnceLock<String>>,
}

impl Syncer {
    fn run(self, groups: Receiver<Vec<Settled>>) {
        while let Ok(first) = groups.recv() {
            // Every group committed so far is in the WAL: one flush covers them all.
            let mut ready = first;
            for more in groups.try_iter() {
                ready.extend(more);
            }
            let flushed = match self.failed.get() {
                // After a failed flush the kernel may have dropped what it could not write
                // and report the next flush as fine: nothing is trusted any more.
                Some(reason) => Err(reason.clone()),
                None => flush(&self.wal).map_err(|e| {
                    let reason = format!(
                        "writing {} to disk failed ({e}); restart Alertray once the disk is fixed",
                        self.wal.display()
                    );
                    tracing::error!("the store stopped: {reason}");
                    let _ = self.failed.set(reason.clone());
                    // The tray and the window show the store as broken from now on.
                    let _ = self.events.send(Event::StateChanged);
                    reason
                }),
            };
            match flushed {
                Ok(()) => {
                    for s in ready {
                        // Events go out before the caller hears back, so that anyone told
                        // "stored" can already see what it caused. No subscriber is fine.
                        for e in s.events {
                            let _ = self.events.send(e);
                        }
                        s.answer.send();
                    }
                }
                Err(reason) => {
                    let reason = Arc::new(reason);
                    for s in ready {
                        s.answer.fail(StoreError::Failed(reason.clone()));
                    }
                }
            }
        }
    }
}

/// `fdatasync` of the WAL: its frames (and its size) are on disk when this returns. Opened
/// anew each time, so it is always the file SQLite writes.
fn flush(wal: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(wal)?.sync_data()
}

/// Makes the names in the database's folder durable (the WAL's, once it exists).
fn sync_dir(db: &Path) {
    #[cfg(unix)]
    {
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!("could not flush the folder {}: {e}", dir.display());
        }
    }
    // Elsewhere (NTFS, APFS) the file system journals names itself.
    #[cfg(not(unix))]
    let _ = db;
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => rusqlite::Error::SqliteFailure(*code, msg.clone()),
        other => rusqlite::Error::InvalidParameterName(other.to_string()),
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn record(b: &mut Batch<'_>, d: &Delivery) -> Result<(Recorded, Vec<Event>), rusqlite::Error> {
    let n = &d.notification;
    let f = Fields::of(n);
    // Deliveries with a transition id are identified by it; others by their body's hash
    // within a window, so only those need the hash and its index. A Test notification is
    // never folded: each press of Netdata's Test button is news to the user.
    let sha =
        (n.transition_id().is_none() && !matches!(n, Notification::Test(_))).then(|| Sha256::digest(&d.body).to_vec());
    // One state per node the notification names (one for anything else).
    let states = n.each_state();
    let transition = n.transition_id().map(|tid| transition_key(tid, n.key()));
    let existing: Option<i64> = match (&transition, &sha) {
        (Some(t), _) => b.transition(t),
        (None, None) => None,
        (None, Some(sha)) => {
            let same_body: Option<i64> = b
                .tx
                .prepare_cached(
                    "SELECT id FROM notifications WHERE body_sha256 = ?1 AND received_at >= ?2 ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![sha, d.received_ms - DUPLICATE_WINDOW.as_millis() as i64], |r| r.get(0))
                .optional()?;
            // Reachability bodies carry no time: a node that goes down, comes back and goes
            // down again sends the first body again, and that one is news, not a retry.
            same_body
                .filter(|&id| states.iter().all(|s| s.key().and_then(|k| b.seen(k)).is_none_or(|s| s.last_id == id)))
        }
    };
    if let Some(id) = existing {
        b.tx.prepare_cached("UPDATE notifications SET deliveries = deliveries + 1 WHERE id = ?1")?
            .execute(params![id])?;
        return Ok((Recorded { id, duplicate: true }, Vec::new()));
    }
    b.tx.prepare_cached(
        "INSERT INTO notifications (received_at, peer, auth, kind, status, raw_status, alert_key, host, node_id,
            space, name, message, url, transition_id, triggered_at, triggered_ms, body_sha256, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?
    .execute(params![
        d.received_ms,
        d.peer,
        d.auth,
        n.kind(),
        f.status,
        f.raw_status,
        f.key,
        f.host,
        f.node_id,
        f.space,
        f.name,
        n.message(),
        f.url,
        n.transition_id(),
        f.triggered_at,
        f.triggered_ms,
        sha,
        d.body
    ])?;
    let id = b.tx.last_insert_rowid();
    if let Some(t) = transition {
        b.new_transitions.insert(t, id);
    }
    let mut events = Vec::new();
    for (part, single) in (0u32..).zip(states) {
        let key = single.key();
        let prev = key.and_then(|k| b.active(k));
        // An active entry is stored under the id of the notification that set it (and which
        // of its nodes it is); a change replaces the previous entry.
        let prev_entry = prev.map(|a| (a.notification_id, a.part));
        let newest = key.and_then(|k| b.seen(k)).and_then(|s| s.newest_ms);
        let t = alerts::transition(prev, &single, id, d.received_ms, newest);
        if let Some(k) = key {
            let newest_ms = newest.max(alerts::ordering_ms(f.triggered_ms, d.received_ms));
            b.new_seen.insert(k.to_string(), Seen { last_id: id, newest_ms });
        }
        if let (Some((old, old_part)), StateUpdate::Upsert(_) | StateUpdate::Remove(_)) = (prev_entry, &t.update) {
            b.tx.prepare_cached("DELETE FROM active WHERE notification_id = ?1 AND part = ?2")?
                .execute(params![old, old_part])?;
        }
        match t.update {
            StateUpdate::Upsert(mut a) => {
                a.part = part;
                b.tx.prepare_cached(
                    "INSERT INTO active (notification_id, part, since_ms, updated_ms, acknowledged)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, part, a.since_ms, a.updated_ms, a.acknowledged])?;
                b.new_active.insert(a.key.clone(), Some(a));
            }
            StateUpdate::Remove(key) => {
                b.new_active.insert(key, None);
            }
            StateUpdate::Keep => {}
        }
        events.extend(t.event);
    }
    if let Notification::Test(t) = n {
        if let Some(token) = &t.token {
            b.tx.prepare_cached(
                "INSERT INTO verification (id, token, received_at) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET token = excluded.token, received_at = excluded.received_at",
            )?
            .execute(params![token, d.received_ms])?;
        }
    }
    Ok((Recorded { id, duplicate: false }, events))
}

fn change_active(b: &mut Batch<'_>, key: &str, change: ActiveChange) -> Result<bool, rusqlite::Error> {
    match change {
        ActiveChange::Acknowledge(ack) => acknowledge(b, key, ack),
        ActiveChange::Dismiss => {
            let Some(a) = b.active(key) else {
                return Ok(false);
            };
            b.tx.prepare_cached("DELETE FROM active WHERE notification_id = ?1 AND part = ?2")?
                .execute(params![a.notification_id, a.part])?;
            b.new_active.insert(key.to_string(), None);
            Ok(true)
        }
    }
}

fn acknowledge(b: &mut Batch<'_>, key: &str, ack: bool) -> Result<bool, rusqlite::Error> {
    let Some(mut a) = b.active(key).cloned() else {
        return Ok(false);
    };
    if a.acknowledged == ack {
        return Ok(true);
    }
    a.acknowledged = ack;
    b.tx.prepare_cached("UPDATE active SET acknowledged = ?3 WHERE notification_id = ?1 AND part = ?2")?
        .execute(params![a.notification_id, a.part, ack])?;
    b.new_active.insert(key.to_string(), Some(a));
    Ok(true)
}

fn snooze(tx: &Transaction<'_>, change: &SnoozeChange) -> Result<(), rusqlite::Error> {
    match change {
        SnoozeChange::Set(s) => {
            let (scope, target) = s.scope.parts();
            tx.execute(
                "INSERT INTO snoozes (scope, target, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(scope, target) DO UPDATE SET until_ms = excluded.until_ms",
                params![scope, target, s.until_ms],
            )?;
        }
        SnoozeChange::Clear(scope) => {
            let (scope, target) = scope.parts();
            tx.execute("DELETE FROM snoozes WHERE scope = ?1 AND target = ?2", params![scope, target])?;
        }
        SnoozeChange::ClearAll => {
            tx.execute("DELETE FROM snoozes", [])?;
        }
    }
    tx.execute("DELETE FROM snoozes WHERE until_ms <= ?1", params![now_ms()])?;
    Ok(())
}

/// The snoozes in force.
pub fn snoozes(conn: &Connection) -> Result<Vec<Snooze>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT scope, target, until_ms FROM snoozes WHERE until_ms > ?1")?;
    let rows = stmt
        .query_map(params![now_ms()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (scope, target, until_ms) = row?;
        if let Some(scope) = SnoozeScope::from_parts(&scope, &target) {
            out.push(Snooze { scope, until_ms });
        }
    }
    Ok(out)
}

/// The fields of a notification kept in their own columns, for queries.
struct Fields {
    key: Option<String>,
    status: Option<String>,
    raw_status: Option<String>,
    host: Option<String>,
    node_id: Option<String>,
    space: Option<String>,
    name: Option<String>,
    url: Option<String>,
    triggered_at: Option<String>,
    triggered_ms: Option<i64>,
}

impl Fields {
    fn of(n: &Notification) -> Fields {
        match n {
            Notification::Alert(a) => Fields {
                key: Some(a.key.clone()),
                status: Some(a.status.as_str().into()),
                raw_status: Some(a.raw_status.clone()),
                host: node_name(&a.host, &a.node_id).map(str::to_string),
                node_id: a.node_id.clone(),
                space: a.space.clone(),
                name: Some(a.name.clone()),
                url: a.url.clone(),
                triggered_at: a.triggered_at.map(|t| t.to_rfc3339()),
                triggered_ms: a.triggered_at.map(|t| t.timestamp_millis()),
            },
            Notification::Reachability(r) => Fields {
                key: Some(r.key.clone()),
                status: Some(if r.reachable { "reachable" } else { "unreachable" }.into()),
                raw_status: r.severity.clone(),
                host: node_hosts(r),
                node_id: r.node_id.clone(),
                space: r.space.clone(),
                name: None,
                url: r.url.clone(),
                triggered_at: None,
                triggered_ms: None,
            },
            Notification::Test(_) | Notification::Unknown(_) => Fields {
                key: None,
                status: None,
                raw_status: None,
                host: None,
                node_id: None,
                space: None,
                name: None,
                url: None,
                triggered_at: None,
                triggered_ms: None,
            },
        }
    }
}

/// The hostnames (else ids) of the nodes a reachability notification names, each once, the
/// first node's first, joined with ", ": what history lists and finds it by.
fn node_hosts(r: &crate::payload::ReachabilityNotification) -> Option<String> {
    let mut hosts: Vec<&str> = Vec::new();
    let first = node_name(&r.host, &r.node_id);
    for host in std::iter::once(first).chain(r.other_nodes.iter().map(|n| node_name(&n.host, &n.node_id))).flatten() {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    (!hosts.is_empty()).then(|| hosts.join(", "))
}

/// The active set as committed: each entry rebuilt from the notification that set it.
/// The active set: one entry per key, the newest where a store not yet updated to schema 4
/// holds two (one alert raised once in each shape).
fn load_active(conn: &Connection) -> Result<Vec<Alert>, rusqlite::Error> {
    Ok(newest_per_key(load_active_rows(conn)?).0)
}

/// Every row of the active table, as alerts. Reads stores of schema 2 and 3 too (every entry
/// there is its notification's first part), so that `alertray alerts` works before `serve`
/// has updated the store.
fn load_active_rows(conn: &Connection) -> Result<Vec<Alert>, rusqlite::Error> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let part = if version >= 4 { "a.part" } else { "0" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT a.since_ms, a.updated_ms, a.acknowledged, n.id, n.received_at, n.body, {part}
         FROM active a JOIN notifications n ON n.id = a.notification_id"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Vec<u8>>(5)?,
            r.get::<_, u32>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (since, updated, acknowledged, id, received, body, part) = row?;
        // The body was parsed when it arrived; a parser that changed since still reads it.
        let Ok(n) = crate::payload::parse(&body) else {
            continue;
        };
        let Some(single) = n.each_state().into_iter().nth(part as usize) else {
            continue;
        };
        if let Some(mut a) = alerts::describe(&single, id, received) {
            a.part = part;
            a.since_ms = since;
            a.updated_ms = updated;
            a.acknowledged = acknowledged;
            if a.host_is_id && a.kind == alerts::AlertKind::Alert {
                // As before the restart: the hostname an earlier notification of it gave.
                let named: Option<String> = conn
                    .prepare_cached(
                        "SELECT host FROM notifications WHERE alert_key = ?1 AND id < ?2 AND host IS NOT NULL
                         AND host <> coalesce(node_id, '') ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row(params![a.key, id], |r| r.get(0))
                    .optional()?;
                if let Some(host) = named {
                    a.host = host;
                    a.host_is_id = false;
                }
            }
            out.push(a);
        }
    }
    Ok(out)
}

fn load_seen(conn: &Connection) -> Result<HashMap<String, Seen>, rusqlite::Error> {
    // As alerts::ordering_ms: a time too far after the arrival counts as the arrival.
    let mut stmt = conn.prepare(&format!(
        "SELECT alert_key, MAX(id),
                MAX(CASE WHEN triggered_ms > received_at + {slack} THEN received_at ELSE triggered_ms END)
         FROM notifications WHERE alert_key IS NOT NULL GROUP BY alert_key",
        slack = alerts::FUTURE_SLACK_MS
    ))?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, Seen { last_id: r.get(1)?, newest_ms: r.get(2)? })))?;
    let mut seen: HashMap<String, Seen> = rows.collect::<Result<_, _>>()?;
    // Only a notification's first node has its key stored. The others matter while a body
    // can still be taken for a repeat (the duplicate window): read them from those bodies.
    let since = now_ms() - DUPLICATE_WINDOW.as_millis() as i64;
    let mut stmt = conn
        .prepare("SELECT id, body FROM notifications WHERE kind = 'reachability' AND received_at >= ?1 ORDER BY id")?;
    let mut rows = stmt.query(params![since])?;
    while let Some(row) = rows.next()? {
        let (id, body): (i64, Vec<u8>) = (row.get(0)?, row.get(1)?);
        let Ok(n) = crate::payload::parse(&body) else {
            continue;
        };
        for node in n.each_state().iter().skip(1) {
            if let Some(key) = node.key() {
                let s = seen.entry(key.to_string()).or_insert(Seen { last_id: id, newest_ms: None });
                s.last_id = s.last_id.max(id);
            }
        }
    }
    Ok(seen)
}

fn load_transitions(conn: &Connection) -> Result<HashMap<String, i64>, rusqlite::Error> {
    let mut stmt =
        conn.prepare("SELECT transition_id, alert_key, id FROM notifications WHERE transition_id IS NOT NULL")?;
    let rows = stmt.query_map([], |r| {
        let (tid, key): (String, Option<String>) = (r.get(0)?, r.get(1)?);
        Ok((transition_key(&tid, key.as_deref()), r.get::<_, i64>(2)?))
    })?;
    rows.collect()
}

/// What identifies one delivery of a transition: its id and the alert it is about. A body
/// that reuses a stored transition id for another alert (another node, another name) is not
/// that delivery again, so it is stored rather than answered as a duplicate.
fn transition_key(tid: &str, key: Option<&str>) -> String {
    format!("{tid}\n{}", key.unwrap_or(""))
}

/// `text` with LIKE's wildcards (and the escape character) escaped by `\`.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Opens a read-only connection to the store, for queries.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(match path.parent().filter(|dir| dir.is_file()) {
            Some(dir) => StoreError::DataDirIsAFile { path: dir.to_path_buf() },
            None => StoreError::Missing { path: path.to_path_buf() },
        });
    }
    if path.is_dir() {
        return Err(StoreError::Folder { path: path.to_path_buf() });
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite(path))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
    // An older store reads as it is (the writer updates it when it next opens it); a newer
    // one may hold what this build cannot read.
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sqlite(path))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Schema { path: path.to_path_buf(), found });
    }
    Ok(conn)
}

/// The active alerts, worst first, then newest.
pub fn active(conn: &Connection) -> Result<Vec<Alert>, rusqlite::Error> {
    let mut out = load_active(conn)?;
    alerts::sort_for_display(&mut out);
    Ok(out)
}

/// The latest verification token, if a Test notification has arrived.
pub fn latest_token(conn: &Connection) -> Result<Option<VerificationToken>, rusqlite::Error> {
    conn.query_row("SELECT token, received_at FROM verification WHERE id = 1", [], |r| {
        Ok(VerificationToken { token: r.get(0)?, received_ms: r.get(1)? })
    })
    .optional()
}

/// Stored notifications matching `q`, newest first.
pub fn history(conn: &Connection, q: &HistoryQuery) -> Result<Vec<HistoryEntry>, rusqlite::Error> {
    let (filter, args) = history_filter(q, true);
    let mut sql = format!(
        "SELECT id, received_at, kind, status, host, name, message, url, triggered_at, peer, auth, deliveries
         FROM notifications WHERE {filter} ORDER BY id DESC"
    );
    if let Some(l) = q.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(HistoryEntry {
            id: r.get(0)?,
            received_ms: r.get(1)?,
            kind: r.get(2)?,
            status: r.get(3)?,
            host: r.get(4)?,
            name: r.get(5)?,
            message: r.get(6)?,
            url: r.get(7)?,
            triggered_at: r.get(8)?,
            peer: r.get(9)?,
            auth: r.get(10)?,
            deliveries: r.get(11)?,
        })
    })?;
    rows.collect()
}

/// How many stored notifications match `q`'s filters, whatever its page (`before_id`) and
/// `limit`: the total the History pager shows.
pub fn history_count(conn: &Connection, q: &HistoryQuery) -> Result<u64, rusqlite::Error> {
    let (filter, args) = history_filter(q, false);
    conn.query_row(
        &format!("SELECT count(*) FROM notifications WHERE {filter}"),
        rusqlite::params_from_iter(args),
        |r| r.get(0),
    )
}

/// The WHERE clause of `q`'s filters and its arguments; with `paged`, `before_id` too.
fn history_filter(q: &HistoryQuery, paged: bool) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::from("1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut push = |clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(s) = q.since_ms {
        push(" AND received_at >= ?", s.into());
    }
    if let Some(u) = q.until_ms {
        push(" AND received_at < ?", u.into());
    }
    if let Some(s) = &q.status {
        // Test and unknown notifications have no status; their kind is what lists show.
        let s = s.to_ascii_lowercase();
        let column = if matches!(s.as_str(), "test" | "unknown") { " AND kind = ?" } else { " AND status = ?" };
        push(column, s.into());
    }
    if let Some(h) = &q.host {
        // The node's name, or its beginning ("web1" finds "web1.example.com"), in any case;
        // for a delivery naming several nodes ("a, b, c"), any of them.
        push(" AND ', ' || host LIKE ? ESCAPE '\\'", format!("%, {}%", like_escape(h)).into());
    }
    if let Some(b) = q.before_id.filter(|_| paged) {
        push(" AND id < ?", b.into());
    }
    if let Some(t) = &q.text {
        let pattern = format!("%{}%", like_escape(t));
        args.push(pattern.into());
        let n = args.len();
        sql.push_str(&format!(
            " AND (message LIKE ?{n} ESCAPE '\\' OR host LIKE ?{n} ESCAPE '\\' OR name LIKE ?{n} ESCAPE '\\')"
        ));
    }
    (sql, args)
}

/// The raw body of a stored notification, exactly as received.
pub fn raw_body(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>, rusqlite::Error> {
    conn.query_row("SELECT body FROM notifications WHERE id = ?1", params![id], |r| r.get(0)).optional()
}
