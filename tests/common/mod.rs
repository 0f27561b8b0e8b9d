//! Helpers for tests that run the real `alertray` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

pub const BIN: &str = env!("CARGO_BIN_EXE_alertray");

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes `text` to `path` as an editor saves: a new file beside it, put in place, so that a
/// watcher never reads it half written.
pub fn save_as_an_editor_does(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".edit");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs `alertray` with `args` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("ALERTRAY_CONFIG").env_remove("ALERTRAY_DATA_DIR");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `alertray serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub config: PathBuf,
}

/// Writes a config listening on a free port with bearer `test-token` plus `extra` TOML.
pub fn write_config(dir: &Path, extra: &str) -> (PathBuf, u16) {
    let port = free_port();
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nclient_certificate = \"off\"\nmethod = \"bearer\"\ntoken = \"test-token\"\nchallenge_secret = \"secret\"\n{extra}"
        ),
    )
    .unwrap();
    (p, port)
}

impl Serve {
    /// Starts `alertray serve --no-popups` with [`write_config`]'s config (plus `extra`) in
    /// `dir` and its data in `dir/data`.
    pub fn in_dir(dir: &Path, extra: &str, env: &[(&str, &str)]) -> Serve {
        let (config, port) = write_config(dir, extra);
        Serve::start(&config, &dir.join("data"), port, env, &["--no-popups"])
    }

    /// Starts `alertray serve` with `config` and `data_dir` and waits until it listens. Logs at
    /// debug level unless `env` sets `ALERTRAY_LOG`.
    pub fn start(config: &Path, data_dir: &Path, port: u16, env: &[(&str, &str)], extra_args: &[&str]) -> Serve {
        let mut c = Command::new(BIN);
        c.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("ALERTRAY_LOG", "alertray=debug,warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            // An empty value unsets the variable (`ALERTRAY_LOG`: the default filter).
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        let mut child = c.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let s = Serve { child, lines: rx, port, data_dir: data_dir.into(), config: config.into() };
        s.wait_for_line("Listening on", Duration::from_secs(30));
        s
    }

    /// Waits for a stderr line containing `needle`; panics with everything seen if none.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> String {
        self.lines_until(needle, within).pop().expect("the line found")
    }

    /// The stderr lines up to the first containing `needle`, that one last; panics with
    /// everything seen if none comes `within`.
    pub fn lines_until(&self, needle: &str, within: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let found = l.contains(needle);
                    seen.push(l);
                    if found {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line containing {needle:?}; stderr so far:\n{}", seen.join("\n"));
    }

    /// The process id of `alertray serve`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An HTTPS client trusting this receiver's self-signed certificate.
    pub fn client(&self) -> reqwest::blocking::Client {
        https_client(&std::fs::read(self.data_dir.join("tls/cert.pem")).unwrap())
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }

    /// POSTs a body with the test token; returns the status.
    pub fn post(&self, body: impl Into<Vec<u8>>) -> u16 {
        self.client().post(self.url()).bearer_auth("test-token").body(body.into()).send().unwrap().status().as_u16()
    }

    /// Sends SIGTERM, waits for the exit, and returns every stderr line not read yet.
    pub fn terminate_and_read_log(mut self) -> Vec<String> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        // Read to the end of stderr (the reader thread then hangs up), however long a loaded
        // machine takes to get there; the bound is for a grandchild holding the pipe open.
        let mut log = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            log.push(l);
        }
        log
    }

    /// Sends SIGTERM and returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting only the certificates in `roots_pem`.
pub fn https_client(roots_pem: &[u8]) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(roots_pem).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

impl Serve {
    /// Sends `raw` bytes as one HTTP/1.1 exchange over TLS, the way a client that misbehaves
    /// on purpose would, and returns what the receiver sent back before closing (or within
    /// `within`).
    pub fn raw_http1(&self, raw: &[u8], within: Duration) -> String {
        use std::io::{Read as _, Write as _};
        let mut tls = self.raw_tls(within);
        // The receiver may answer and close before it has read everything.
        let _ = tls.write_all(raw).and_then(|_| tls.flush());
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    }

    /// A TLS connection to the receiver speaking HTTP/1.1, reads timing out after `within`.
    pub fn raw_tls(&self, within: Duration) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(self.data_dir.join("tls/cert.pem")).unwrap();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut cfg =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(within)).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A captured body from the contract's folder.
pub fn captured(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captured").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A certificate authority standing in for Netdata's.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.as_ref().pem()
    }

    /// A client certificate with subject CN `cn` (and `sans` as DNS SANs), as one PEM with
    /// its key, valid now unless `expired`.
    pub fn client_pem(&self, cn: &str, sans: &[&str], expired: bool) -> String {
        self.leaf_pem(cn, sans, expired, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A server certificate for `sans`, as one PEM with its key.
    pub fn server_pem(&self, cn: &str, sans: &[&str]) -> String {
        self.leaf_pem(cn, sans, false, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn leaf_pem(&self, cn: &str, sans: &[&str], expired: bool, eku: rcgen::ExtendedKeyUsagePurpose) -> String {
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![eku];
        let now = time::OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(30);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("test-ca.pem");
        std::fs::write(&p, self.pem()).unwrap();
        p
    }
}
