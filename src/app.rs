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
use crate::config::{Config, ConfigError};
use crate::server::{self, ReceiverState};
use crate::store::{self, Store, StoreError};
use crate::tls::{self, ServerCertInfo, TlsError};

/// How many events a slow subscriber may fall behind before it misses some.
pub const EVENT_BUFFER: usize = 1024;

/// Where Alertray keeps its config and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config file.
    pub config_file: PathBuf,
    /// The data dir: store, generated certificate, logs.
    pub data_dir: PathBuf,
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
        Paths {
            config_file,
            data_dir,
        }
    }

    /// The store's database file.
    pub fn db(&self) -> PathBuf {
        store::db_path(&self.data_dir)
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
    #[error("cannot listen on {addr} (server.listen): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (often: another program uses the port).
        source: std::io::Error,
    },
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
}

impl Running {
    /// Waits until the receiver has stopped (after its shutdown token is cancelled).
    pub async fn stopped(self) {
        let _ = self.task.await;
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
    let store = Store::open(
        &store::db_path(data_dir),
        events.clone(),
        config.store.retention_days,
    )?;
    let tls = tls::receiver_tls(&config, data_dir)?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let router = server::router(ReceiverState::new(config.clone(), store.clone()));
    let acceptor = TlsAcceptor::from(tls.config.clone());
    let task = tokio::spawn(server::serve(listener, acceptor, router, config, shutdown));
    let _ = events.send(Event::Listening {
        addr: addr.to_string(),
        fingerprint: tls.cert.fingerprint.clone(),
    });
    Ok(Running {
        addr,
        cert: tls.cert,
        store,
        task,
    })
}
