//! The store: every accepted notification with its raw body, the active state derived from
//! them, and the latest verification token, in one SQLite file.
//!
//! Writes go through one writer thread that commits in groups: it takes every delivery that is
//! waiting, records them all in one transaction, commits (WAL with `synchronous = FULL`, so
//! the commit is fsync'ed), and only then answers each caller. A delivery is acknowledged to
//! Netdata only after that answer, so a 2xx always means "on disk", while one fsync serves
//! many concurrent deliveries. Readers use their own connections; WAL lets them read while
//! the writer writes, from this process or another (`alertray alerts` while `serve` runs).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{broadcast, oneshot};

use crate::alerts::{self, Alert, Event, StateUpdate};
use crate::payload::Notification;

/// A body seen again within this window (and without a transition id) is a duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(300);
/// The most deliveries waiting for the writer; beyond it the receiver answers 503.
const QUEUE_CAPACITY: usize = 4096;
/// The most deliveries committed in one transaction.
const MAX_BATCH: usize = 512;
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
    /// The writer has stopped or is overloaded.
    #[error("the store is not accepting writes: {0}")]
    Unavailable(&'static str),
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
    /// Only this status word (critical, warning, clear, unreachable, reachable).
    pub status: Option<String>,
    /// Only this node (hostname, any case).
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
    Acknowledge(String, bool, oneshot::Sender<Result<bool, StoreError>>),
}

/// A handle to the store's writer. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: SyncSender<Job>,
    path: PathBuf,
}

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
    body_sha256   BLOB NOT NULL,
    parsed        TEXT NOT NULL,
    body          BLOB NOT NULL,
    deliveries    INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS notifications_transition
    ON notifications(transition_id) WHERE transition_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_sha ON notifications(body_sha256);
CREATE INDEX IF NOT EXISTS notifications_received ON notifications(received_at);
CREATE TABLE IF NOT EXISTS active (
    key             TEXT PRIMARY KEY,
    level           TEXT NOT NULL,
    notification_id INTEGER NOT NULL,
    json            TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verification (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    token       TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

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
        let conn = Connection::open(path).map_err(sqlite(path))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite(path))?;
        // FULL: the WAL is fsync'ed at every commit, so a committed delivery survives power loss.
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite(path))?;
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        restrict_permissions(path);
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writer = Writer { conn, path: path.to_path_buf(), events, retention_days, last_prune: None };
        std::thread::Builder::new()
            .name("alertray-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        Ok(Store { jobs: tx, path: path.to_path_buf() })
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
        self.send(Job::Acknowledge(key.to_string(), acknowledged, tx))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer stopped"))?
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Unavailable("too many deliveries are waiting"),
            TrySendError::Disconnected(_) => StoreError::Unavailable("the writer stopped"),
        })
    }
}

/// Creates a folder readable by its owner only (0700 on Unix) if it does not exist yet.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
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

#[cfg(unix)]
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    events: broadcast::Sender<Event>,
    retention_days: u32,
    last_prune: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        self.prune_if_due();
        while let Ok(first) = rx.recv() {
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
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let path = self.path.clone();
        let result = (|| -> Result<Vec<(Result<Recorded, ()>, Vec<Event>)>, rusqlite::Error> {
            let tx = self.conn.transaction()?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in &batch {
                outcomes.push(match job {
                    Job::Record(d, _) => {
                        let (rec, events) = record(&tx, d)?;
                        (Ok(rec), events)
                    }
                    Job::Acknowledge(key, ack, _) => {
                        let changed = acknowledge(&tx, key, *ack)?;
                        let events = if changed { vec![Event::StateChanged] } else { vec![] };
                        (if changed { Ok(Recorded { id: 0, duplicate: false }) } else { Err(()) }, events)
                    }
                });
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        match result {
            Ok(outcomes) => {
                for (job, (outcome, events)) in batch.into_iter().zip(outcomes) {
                    // Events go out before the caller hears back, so that anyone told "stored"
                    // can already see what it caused.
                    for e in events {
                        // No subscriber is fine: the state is on disk either way.
                        let _ = self.events.send(e);
                    }
                    match job {
                        Job::Record(_, reply) => {
                            let _ = reply.send(Ok(outcome.expect("record never yields Err(())")));
                        }
                        Job::Acknowledge(_, _, reply) => {
                            let _ = reply.send(Ok(outcome.is_ok()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(db = %path.display(), "could not commit {} deliveries: {e}", batch.len());
                for job in batch {
                    let err = || StoreError::Sqlite { path: path.clone(), source: clone_error(&e) };
                    match job {
                        Job::Record(_, reply) => {
                            let _ = reply.send(Err(err()));
                        }
                        Job::Acknowledge(_, _, reply) => {
                            let _ = reply.send(Err(err()));
                        }
                    }
                }
            }
        }
    }

    fn prune_if_due(&mut self) {
        if self.retention_days == 0 || self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_INTERVAL) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let cutoff = now_ms() - i64::from(self.retention_days) * 86_400_000;
        match self.conn.execute(
            "DELETE FROM notifications WHERE received_at < ?1
             AND id NOT IN (SELECT notification_id FROM active)",
            params![cutoff],
        ) {
            Ok(0) => {}
            Ok(n) => tracing::info!("pruned {n} notifications older than {} days", self.retention_days),
            Err(e) => tracing::warn!("pruning old notifications failed: {e}"),
        }
    }
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

fn record(tx: &Transaction<'_>, d: &Delivery) -> Result<(Recorded, Vec<Event>), rusqlite::Error> {
    let sha = Sha256::digest(&d.body).to_vec();
    let n = &d.notification;
    let existing: Option<i64> = match n.transition_id() {
        Some(tid) => tx
            .query_row("SELECT id FROM notifications WHERE transition_id = ?1", params![tid], |r| r.get(0))
            .optional()?,
        None => tx
            .query_row(
                "SELECT id FROM notifications WHERE body_sha256 = ?1 AND received_at >= ?2 ORDER BY id DESC LIMIT 1",
                params![sha, d.received_ms - DUPLICATE_WINDOW.as_millis() as i64],
                |r| r.get(0),
            )
            .optional()?,
    };
    if let Some(id) = existing {
        tx.execute("UPDATE notifications SET deliveries = deliveries + 1 WHERE id = ?1", params![id])?;
        return Ok((Recorded { id, duplicate: true }, Vec::new()));
    }
    let f = Fields::of(n);
    let parsed = serde_json::to_string(n).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "INSERT INTO notifications (received_at, peer, auth, kind, status, raw_status, alert_key, host, node_id,
            space, name, message, url, transition_id, triggered_at, body_sha256, parsed, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            d.received_ms, d.peer, d.auth, n.kind(), f.status, f.raw_status, f.key, f.host, f.node_id,
            f.space, f.name, n.message(), f.url, n.transition_id(), f.triggered_at, sha, parsed, d.body
        ],
    )?;
    let id = tx.last_insert_rowid();
    let prev = match &f.key {
        Some(k) => active_entry(tx, k)?,
        None => None,
    };
    let t = alerts::transition(prev.as_ref(), n, id, d.received_ms);
    match &t.update {
        StateUpdate::Upsert(a) => {
            let json = serde_json::to_string(a).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tx.execute(
                "INSERT INTO active (key, level, notification_id, json) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET level = excluded.level, notification_id = excluded.notification_id, json = excluded.json",
                params![a.key, a.level.label(), id, json],
            )?;
        }
        StateUpdate::Remove(key) => {
            tx.execute("DELETE FROM active WHERE key = ?1", params![key])?;
        }
        StateUpdate::Keep => {}
    }
    if let Notification::Test(t) = n {
        if let Some(token) = &t.token {
            tx.execute(
                "INSERT INTO verification (id, token, received_at) VALUES (1, ?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET token = excluded.token, received_at = excluded.received_at",
                params![token, d.received_ms],
            )?;
        }
    }
    Ok((Recorded { id, duplicate: false }, t.event.into_iter().collect()))
}

fn acknowledge(tx: &Transaction<'_>, key: &str, ack: bool) -> Result<bool, rusqlite::Error> {
    let Some(mut a) = active_entry(tx, key)? else { return Ok(false) };
    if a.acknowledged == ack {
        return Ok(true);
    }
    a.acknowledged = ack;
    let json = serde_json::to_string(&a).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute("UPDATE active SET json = ?2 WHERE key = ?1", params![key, json])?;
    Ok(true)
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
}

impl Fields {
    fn of(n: &Notification) -> Fields {
        match n {
            Notification::Alert(a) => Fields {
                key: Some(a.key.clone()),
                status: Some(a.status.as_str().into()),
                raw_status: Some(a.raw_status.clone()),
                host: a.host.clone(),
                node_id: a.node_id.clone(),
                space: a.space.clone(),
                name: Some(a.name.clone()),
                url: a.url.clone(),
                triggered_at: a.triggered_at.map(|t| t.to_rfc3339()),
            },
            Notification::Reachability(r) => Fields {
                key: Some(r.key.clone()),
                status: Some(if r.reachable { "reachable" } else { "unreachable" }.into()),
                raw_status: r.severity.clone(),
                host: r.host.clone(),
                node_id: r.node_id.clone(),
                space: r.space.clone(),
                name: None,
                url: r.url.clone(),
                triggered_at: None,
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
            },
        }
    }
}

fn active_entry(conn: &Connection, key: &str) -> Result<Option<Alert>, rusqlite::Error> {
    let json: Option<String> = conn
        .query_row("SELECT json FROM active WHERE key = ?1", params![key], |r| r.get(0))
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Opens a read-only connection to the store, for queries.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no store here yet (has `alertray serve` run with this data dir?)"),
        });
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite(path))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite(path))?;
    Ok(conn)
}

/// The active alerts, worst first, then newest.
pub fn active(conn: &Connection) -> Result<Vec<Alert>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT json FROM active")?;
    let mut out: Vec<Alert> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .filter_map(|j| j.ok().and_then(|j| serde_json::from_str(&j).ok()))
        .collect();
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
    let mut sql = String::from(
        "SELECT id, received_at, kind, status, host, name, message, url, triggered_at, peer, auth, deliveries
         FROM notifications WHERE 1 = 1",
    );
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
        push(" AND status = ?", s.to_ascii_lowercase().into());
    }
    if let Some(h) = &q.host {
        push(" AND host = ? COLLATE NOCASE", h.clone().into());
    }
    if let Some(b) = q.before_id {
        push(" AND id < ?", b.into());
    }
    if let Some(t) = &q.text {
        let pattern = format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        args.push(pattern.into());
        let n = args.len();
        sql.push_str(&format!(
            " AND (message LIKE ?{n} ESCAPE '\\' OR host LIKE ?{n} ESCAPE '\\' OR name LIKE ?{n} ESCAPE '\\')"
        ));
    }
    sql.push_str(" ORDER BY id DESC");
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

/// The raw body of a stored notification, exactly as received.
pub fn raw_body(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>, rusqlite::Error> {
    conn.query_row("SELECT body FROM notifications WHERE id = ?1", params![id], |r| r.get(0))
        .optional()
}
