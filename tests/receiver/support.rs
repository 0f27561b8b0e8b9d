//! Shared test setup: a test PKI made with rcgen at test time, a real receiver on a real
//! socket, and HTTPS clients that trust it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use alertray::alerts::Event;
use alertray::app::{self, Running};
use alertray::config::Config;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use crate::common::TestCa;

/// A receiver running in this process on 127.0.0.1 with its own data dir.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
    pub events: broadcast::Sender<Event>,
    #[allow(dead_code)]
    pub config: Arc<Config>,
    shutdown: CancellationToken,
    running: Option<Running>,
    _tmp: Option<tempfile::TempDir>,
}

/// `[auth]` settings that most tests use: a bearer token and a challenge secret.
pub const BEARER: &str = "[auth]\nclient_certificate = \"off\"\nmethod = \"bearer\"\ntoken = \"test-token\"\nchallenge_secret = \"secret\"\n";

impl TestServer {
    /// Starts a receiver with `toml` (its `server.listen` is replaced by a free port).
    pub async fn start(toml: &str) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = TestServer::start_in(toml, &dir).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a receiver keeping its data in `dir` (for restarts).
    pub async fn start_in(toml: &str, dir: &Path) -> TestServer {
        let toml = toml.replace("$DIR", &dir.display().to_string());
        let config = Arc::new(Config::from_toml(&format!("{toml}\n")).unwrap_or_else(|e| panic!("{e}")));
        let mut config_local = (*config).clone();
        config_local.server.listen = "127.0.0.1:0".parse().unwrap();
        let config = Arc::new(config_local);
        let (events, _) = broadcast::channel(1024);
        let shutdown = CancellationToken::new();
        let running = app::start(config.clone(), dir, events.clone(), shutdown.clone()).await.unwrap();
        TestServer {
            addr: running.addr,
            data_dir: dir.to_path_buf(),
            events,
            config,
            shutdown,
            running: Some(running),
            _tmp: None,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), path_and_query)
    }

    /// The receiver's self-signed certificate, to trust.
    pub fn server_cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("tls/cert.pem")).unwrap()
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.server_cert_pem()).unwrap())
            .resolve("localhost", self.addr)
            .timeout(std::time::Duration::from_secs(20))
    }

    /// An HTTPS client that trusts the receiver.
    pub fn client(&self) -> reqwest::Client {
        self.builder().build().unwrap()
    }

    /// An HTTPS client presenting a client certificate (`pem` holds cert and key).
    pub fn client_with_cert(&self, pem: &str) -> reqwest::Client {
        self.builder().identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap()).build().unwrap()
    }

    /// POSTs `body` with the test bearer token.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client()
            .post(self.url("/"))
            .bearer_auth("test-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The running receiver's store.
    #[allow(dead_code)]
    pub fn store(&self) -> &alertray::store::Store {
        &self.running.as_ref().expect("running").store
    }

    /// A read-only connection to the store.
    pub fn reader(&self) -> rusqlite::Connection {
        alertray::store::open_reader(&alertray::store::db_path(&self.data_dir)).unwrap()
    }

    pub fn active(&self) -> Vec<alertray::alerts::Alert> {
        alertray::store::active(&self.reader()).unwrap()
    }

    pub fn history(&self) -> Vec<alertray::store::HistoryEntry> {
        alertray::store::history(&self.reader(), &Default::default()).unwrap()
    }

    /// Stops the receiver and waits for it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.stopped().await;
        }
        self._tmp.take()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A captured body from the contract's folder.
pub use crate::common::captured;

pub const CAPTURED: [&str; 6] = [
    "netdata-alert-critical.json",
    "netdata-alert-recovered.json",
    "netdata-alert-warning.json",
    "netdata-reachability-reachable.json",
    "netdata-reachability-unreachable.json",
    "netdata-token.json",
];

/// The JSON body of a response.
pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A warning alert body that no other call returns (its own transition id and node).
pub fn unique_alert() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    serde_json::json!({
        "message": format!("Raised to Warning, load = {n}, on node-{n}"),
        "node": {"id": format!("node-id-{n}"), "hostname": format!("node-{n}")},
        "alert": {"name": "load", "state": {"status": "Warning", "value_str": n.to_string()}, "transition_id": format!("unique-{n}-{}", std::process::id())}
    })
    .to_string()
}

/// A TLS client trusting the PEM certificates in `roots_pem`, speaking HTTP/1.1.
pub fn client_config(roots_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Connects to `addr` over TLS as `localhost`.
pub async fn connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await
}
