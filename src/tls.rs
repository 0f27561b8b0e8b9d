//! TLS for the receiver: the server certificate (self-signed once, or PEM files reloaded when
//! they change), the client-certificate verifier against the Netdata Root CA, and the rustls
//! `ServerConfig` built from them. TLS 1.2 and 1.3 only, with the ring provider's suites,
//! which are all AEAD with forward secrecy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::{ClientCa, ClientCertMode, Config, TlsConfig};
use crate::lock::MutexExt as _;

/// The Netdata Root CA, which issues the client certificate Netdata Cloud presents.
pub const NETDATA_ROOT_CA_PEM: &str = include_str!("../assets/netdata-root-ca.pem");

/// How often, at most, the certificate files are checked for a renewal.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// What went wrong setting up TLS.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{setting} = {path}: {reason}")]
    Pem {
        /// The setting that names the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls or rcgen refused something.
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server certificate in use, with what the user needs to know about it.
#[derive(Debug, Clone)]
pub struct ServerCertInfo {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate, as colon-separated hex.
    pub fingerprint: String,
    /// Whether Alertray generated it.
    pub self_signed: bool,
}

/// SHA-256 of a DER certificate as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn read_chain(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Pem {
        setting,
        path: path.into(),
        reason: format!("cannot be read ({e})"),
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|e| {
        TlsError::Pem { setting, path: path.into(), reason: format!("not a PEM certificate file ({e})") }
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { setting, path: path.into(), reason: "holds no CERTIFICATE block".into() });
    }
    Ok(certs)
}

/// What Alertray looks at in a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// Its DNS and IP SANs.
    pub names: Vec<String>,
    /// Subject and issuer are the same.
    pub self_signed: bool,
    /// Valid from, Unix seconds.
    pub not_before: i64,
    /// Valid until, Unix seconds.
    pub not_after: i64,
}

/// The facts of a DER certificate, or `None` when it does not parse.
pub(crate) fn cert_facts(der: &[u8]) -> Option<CertFacts> {
    let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(CertFacts {
        names: san_names(der),
        self_signed: x.subject() == x.issuer(),
        not_before: x.validity().not_before.timestamp(),
        not_after: x.validity().not_after.timestamp(),
    })
}

/// The facts of the first certificate in a PEM file.
pub(crate) fn leaf_facts(path: &Path) -> Option<CertFacts> {
    read_chain("tls.cert", path).ok().and_then(|c| cert_facts(&c[0]))
}

/// Reads the certificates of a PEM file (`alertray check --ca`).
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_chain("--ca", path)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Pem {
        setting: "tls.key",
        path: path.into(),
        reason: format!("cannot be read ({e})"),
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        setting: "tls.key",
        path: path.into(),
        reason: format!("holds no usable PEM private key ({e})"),
    })
}

fn certified_key(cert: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = match (read_chain("tls.cert", cert), read_key(key_path)) {
        (Ok(chain), Ok(key)) => (chain, key),
        // Both wrong (often both missing): both said, under the first one's setting.
        (Err(TlsError::Pem { setting, path, reason }), Err(key)) => {
            return Err(TlsError::Pem { setting, path, reason: format!("{reason}; and {key}") })
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let signing = provider().key_provider.load_private_key(key).map_err(|e| TlsError::Pem {
        setting: "tls.key",
        path: key_path.into(),
        reason: format!("a kind of key that cannot sign here (RSA, ECDSA P-256 or P-384, and Ed25519 can): {e}"),
    })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        // Unknown: the key cannot say its public half, so there is nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::Pem {
                setting: "tls.key",
                path: key_path.into(),
                reason: format!("is not the key of the certificate in tls.cert = {}", cert.display()),
            })
        }
    }
    Ok(Arc::new(ck))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Serves the certificate from two PEM files and swaps in a renewed pair when the files
/// change, without a restart. A renewed pair that does not load is logged and the old one
/// is kept.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    state: Mutex<ReloadState>,
}

#[derive(Debug)]
struct ReloadState {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl ReloadingCert {
    /// Loads the pair now; fails if it does not load.
    pub fn new(cert: &Path, key: &Path) -> Result<ReloadingCert, TlsError> {
        let ck = certified_key(cert, key)?;
        Ok(ReloadingCert {
            cert_path: cert.into(),
            key_path: key.into(),
            state: Mutex::new(ReloadState { key: ck, stamps: (mtime(cert), mtime(key)), checked: Instant::now() }),
        })
    }

    /// Reloads the pair at once if the files changed (after Alertray wrote a renewed pair).
    pub fn reload_now(&self) {
        let mut st = self.state.locked();
        st.checked = Instant::now() - RELOAD_CHECK_INTERVAL;
        drop(st);
        self.current();
    }

    /// The certificate in use now, reloading it first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still whole.
        let mut st = self.state.locked();
        if st.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            st.checked = Instant::now();
            let stamps = (mtime(&self.cert_path), mtime(&self.key_path));
            if stamps != st.stamps {
                match certified_key(&self.cert_path, &self.key_path) {
                    Ok(k) => {
                        tracing::info!(cert = %self.cert_path.display(), fingerprint = %fingerprint(&k.cert[0]), "reloaded renewed TLS certificate");
                        st.key = k;
                        st.stamps = stamps;
                    }
                    // Half-written renewals are common (cert written before key): retry later.
                    Err(e) => tracing::warn!("renewed TLS certificate not loaded yet, keeping the old one: {e}"),
                }
            }
        }
        st.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The names the self-signed certificate must cover.
fn self_signed_names(public_host: Option<&str>) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Some(h) = public_host {
        let h = h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        // An address in its one canonical spelling ("2001:DB8:0:0::1" is "2001:db8::1"), as
        // the certificate's names are read back, or every start would make a new certificate.
        let h = h.parse::<std::net::IpAddr>().map_or(h, |ip| ip.to_string());
        if !names.contains(&h) {
            names.push(h);
        }
    }
    names
}

/// The DNS and IP names in a certificate's SAN extension, as strings.
pub(crate) fn san_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Loads the self-signed certificate from `dir`, or generates one (key mode 0600) when it is
/// missing or does not cover `public_host`.
pub fn ensure_self_signed(dir: &Path, public_host: Option<&str>) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let wanted = self_signed_names(public_host);
    if cert_path.exists() && key_path.exists() {
        // Alertray's own pair: one that does not load (a file damaged, or the two from
        // different runs) is made again rather than refused, since nobody chose those files.
        match certified_key(&cert_path, &key_path) {
            Ok(ck) => {
                let have = san_names(&ck.cert[0]);
                if wanted.iter().all(|n| have.contains(n)) {
                    return Ok((cert_path, key_path));
                }
                tracing::info!(names = ?wanted, "the self-signed certificate does not cover the public host; generating a new one");
            }
            Err(e) => tracing::warn!(
                "the self-signed certificate in {} does not load ({e}); generating a new one",
                dir.display()
            ),
        }
    }
    let key = rcgen::KeyPair::generate().map_err(|e| TlsError::Setup(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(wanted).map_err(|e| TlsError::Setup(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "Alertray receiver");
    let now = time_now();
    params.not_before = now - rcgen_days(1);
    params.not_after = now + rcgen_days(5 * 365);
    let cert = params.self_signed(&key).map_err(|e| TlsError::Setup(e.to_string()))?;
    crate::store::create_private_dir(dir).map_err(|source| TlsError::Io {
        what: "cannot create",
        path: dir.into(),
        source,
    })?;
    // Write to temporary names then rename, so a crash never leaves a half pair.
    let tmp_key = dir.join("key.pem.tmp");
    let tmp_cert = dir.join("cert.pem.tmp");
    let _ = std::fs::remove_file(&tmp_key);
    let _ = std::fs::remove_file(&tmp_cert);
    crate::config::write_private_new(&tmp_key, &key.serialize_pem()).map_err(|source| TlsError::Io {
        what: "cannot write",
        path: tmp_key.clone(),
        source,
    })?;
    crate::config::write_private_new(&tmp_cert, &cert.pem()).map_err(|source| TlsError::Io {
        what: "cannot write",
        path: tmp_cert.clone(),
        source,
    })?;
    std::fs::rename(&tmp_key, &key_path).map_err(|source| TlsError::Io {
        what: "cannot write",
        path: key_path.clone(),
        source,
    })?;
    std::fs::rename(&tmp_cert, &cert_path).map_err(|source| TlsError::Io {
        what: "cannot write",
        path: cert_path.clone(),
        source,
    })?;
    Ok((cert_path, key_path))
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rcgen_days(d: i64) -> time::Duration {
    time::Duration::days(d)
}

/// The trusted roots for client certificates.
pub fn client_roots(ca: &ClientCa) -> Result<RootCertStore, TlsError> {
    let certs = match ca {
        ClientCa::Netdata => CertificateDer::pem_slice_iter(NETDATA_ROOT_CA_PEM.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Setup(format!("built-in Netdata Root CA: {e}")))?,
        ClientCa::File(p) => read_chain("auth.client_ca", p)?,
    };
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| TlsError::Setup(format!("auth.client_ca: a certificate is not a usable root: {e}")))?;
    }
    Ok(roots)
}

/// The fingerprint of the certificate the receiver serves with `cfg`, read from its file
/// (without generating one), or `None` when there is none yet.
pub fn local_fingerprint(cfg: &Config, data_dir: &Path) -> Option<String> {
    let path = match &cfg.tls {
        TlsConfig::Files { cert, .. } => cert.clone(),
        TlsConfig::SelfSigned => data_dir.join("tls").join("cert.pem"),
        TlsConfig::Acme(_) => crate::acme::AcmeFiles::in_data_dir(data_dir).cert,
    };
    read_chain("tls.cert", &path).ok().and_then(|c| c.first().map(|l| fingerprint(l)))
}

/// The receiver's TLS setup.
pub struct ReceiverTls {
    /// The rustls config to accept connections with.
    pub config: Arc<ServerConfig>,
    /// What certificate is served.
    pub cert: ServerCertInfo,
    /// With `[tls.acme]`: the resolver the ACME task answers challenges through.
    pub acme: Option<Arc<crate::acme::AcmeResolver>>,
}

/// Loads the files the config names for TLS (`tls.cert` and `tls.key`, an
/// `auth.client_ca` bundle, a `tls.acme.directory_ca`) without starting anything or writing
/// anything: what `alertray config check` and `serve` look at before they go on.
pub fn check_files(cfg: &Config) -> Result<(), TlsError> {
    match &cfg.tls {
        TlsConfig::Files { cert, key } => {
            certified_key(cert, key)?;
        }
        TlsConfig::Acme(acme) => {
            if let Some(ca) = &acme.directory_ca {
                read_chain("tls.acme.directory_ca", ca)?;
            }
        }
        TlsConfig::SelfSigned => {}
    }
    if cfg.auth.client_certificate != ClientCertMode::Off {
        client_roots(&cfg.auth.client_ca)?;
    }
    Ok(())
}

/// Builds the rustls config for `cfg`, generating the self-signed certificate under
/// `data_dir/tls` when no files are configured.
pub fn receiver_tls(cfg: &Config, data_dir: &Path) -> Result<ReceiverTls, TlsError> {
    let (cert_path, key_path, self_signed) = match &cfg.tls {
        TlsConfig::Files { cert, key } => (cert.clone(), key.clone(), false),
        TlsConfig::SelfSigned => {
            let host = cfg.server.public_url.as_ref().and_then(|u| u.host());
            let (c, k) = ensure_self_signed(&data_dir.join("tls"), host)?;
            (c, k, true)
        }
        TlsConfig::Acme(acme) => {
            // Until the first certificate arrives, a self-signed one for the domain is served.
            let files = crate::acme::AcmeFiles::in_data_dir(data_dir);
            let dir = files.cert.parent().unwrap_or(data_dir);
            if !(files.cert.exists() && files.key.exists()) {
                ensure_self_signed(dir, Some(&acme.domain))?;
            } else if let Err(e) = certified_key(&files.cert, &files.key) {
                // A pair that does not load (a crash between two renames) must not keep the
                // receiver down: keep it aside, serve a new bootstrap certificate, and order.
                tracing::warn!("the ACME certificate does not load ({e}); keeping it aside and ordering a new one");
                for f in [&files.cert, &files.key] {
                    let _ = std::fs::rename(f, f.with_extension("pem.broken"));
                }
                ensure_self_signed(dir, Some(&acme.domain))?;
            }
            let self_signed = leaf_facts(&files.cert).is_none_or(|f| f.self_signed);
            (files.cert, files.key, self_signed)
        }
    };
    let reloading = ReloadingCert::new(&cert_path, &key_path).map_err(|e| match (e, &cfg.tls) {
        // Files Alertray made itself are no setting of the user's.
        (TlsError::Pem { path, reason, .. }, TlsConfig::SelfSigned | TlsConfig::Acme(_)) => {
            TlsError::Pem { setting: "Alertray's own certificate", path, reason }
        }
        (e, _) => e,
    })?;
    let fp = fingerprint(&reloading.current().cert[0]);
    let (resolver, acme): (Arc<dyn rustls::server::ResolvesServerCert>, _) = match &cfg.tls {
        TlsConfig::Acme(_) => {
            let r = Arc::new(crate::acme::AcmeResolver::new(reloading));
            (r.clone(), Some(r))
        }
        _ => (Arc::new(reloading), None),
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match cfg.auth.client_certificate {
        ClientCertMode::Off => builder.with_no_client_auth(),
        // Even with "required", a handshake without a certificate is let through so that the
        // HTTP layer can answer the challenge GET and refuse a POST with a readable 403.
        // A certificate that is presented must chain to the roots, or the handshake fails.
        ClientCertMode::Required | ClientCertMode::Optional => {
            builder.with_client_cert_verifier(client_verifier(&cfg.auth.client_ca)?)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    // HTTP/1.0 too: a client that offers only it (curl --http1.0) must not fail the handshake.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    if acme.is_some() {
        // Offered last, so only ACME validation connections (which offer nothing else) get it.
        config.alpn_protocols.push(crate::acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(ReceiverTls { config: Arc::new(config), cert: ServerCertInfo { cert_path, fingerprint: fp, self_signed }, acme })
}

/// The most intermediate certificates a client's chain may carry. Netdata's has one; each
/// more lets a client that presents certificates of one name (to no trusted root) make the
/// path search try more paths, each a signature check, all while the handshake holds a
/// worker thread: ten such certificates cost over a second of CPU per handshake.
pub const MAX_CLIENT_INTERMEDIATES: usize = 3;

/// The client-certificate verifier for `ca`: webpki's, for chains of at most
/// [`MAX_CLIENT_INTERMEDIATES`] intermediates; a handshake without a certificate is let
/// through (the HTTP layer refuses a POST without one, readably, when one is required).
pub fn client_verifier(ca: &ClientCa) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots(ca)?), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Setup(format!("client certificate verifier: {e}")))?;
    Ok(Arc::new(ShortChains(webpki)))
}

/// A chain longer than [`MAX_CLIENT_INTERMEDIATES`] intermediates, refused before any of it
/// is checked.
#[derive(Error)]
#[error(
    "the client certificate chain has {0} intermediate certificates; at most {MAX_CLIENT_INTERMEDIATES} are accepted"
)]
struct ChainTooLong(usize);

/// As its message: rustls shows the reason of a refused certificate by its `Debug`, in the
/// log line of the failed handshake.
impl std::fmt::Debug for ChainTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Refuses long client chains, then leaves the rest to webpki.
#[derive(Debug)]
struct ShortChains(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ShortChains {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if intermediates.len() > MAX_CLIENT_INTERMEDIATES {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(ChainTooLong(intermediates.len())),
            ))));
        }
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The names a verified client certificate carries: its subject CN and DNS SANs, lowercased.
pub fn client_cert_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> =
        cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_netdata_ca_loads() {
        let roots = client_roots(&ClientCa::Netdata).unwrap();
        assert_eq!(roots.len(), 1);
        let der = CertificateDer::pem_slice_iter(NETDATA_ROOT_CA_PEM.as_bytes()).next().unwrap().unwrap();
        assert!(fingerprint(&der).starts_with("61:E5:D8:D0"), "{}", fingerprint(&der));
        assert!(fingerprint(&der).ends_with("6D:61"));
    }

    #[test]
    fn self_signed_is_generated_once_and_covers_the_public_host() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _key) = ensure_self_signed(dir.path(), None).unwrap();
        let first = std::fs::read(&c).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&_key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        ensure_self_signed(dir.path(), None).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), first, "reused, not regenerated");
        ensure_self_signed(dir.path(), Some("x.example.net")).unwrap();
        let der = read_chain("tls.cert", &c).unwrap();
        let names = san_names(&der[0]);
        for n in ["localhost", "127.0.0.1", "::1", "x.example.net"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        // An IPv6 public host however it is spelled: covered, and kept from then on.
        ensure_self_signed(dir.path(), Some("[2001:DB8:0:0::1]")).unwrap();
        let v6 = std::fs::read(&c).unwrap();
        assert!(san_names(&read_chain("tls.cert", &c).unwrap()[0]).contains(&"2001:db8::1".to_string()));
        ensure_self_signed(dir.path(), Some("[2001:DB8:0:0::1]")).unwrap();
        ensure_self_signed(dir.path(), Some("2001:db8::1")).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), v6, "the same address is not a new certificate");
    }

    #[test]
    fn bad_pem_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        std::fs::write(&p, "not pem").unwrap();
        let e = ReloadingCert::new(&p, &p).unwrap_err().to_string();
        assert!(e.starts_with("tls.cert = "), "{e}");
    }

    #[test]
    fn a_broken_generated_certificate_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::from_toml("[auth]\nallow_unauthenticated = true").unwrap();
        let first = receiver_tls(&cfg, dir.path()).unwrap().cert.fingerprint;
        // A damaged key, then a key from another pair (two first runs at once): nobody chose
        // these files, so they are made again rather than refused.
        std::fs::write(dir.path().join("tls/key.pem"), "garbage").unwrap();
        let second = receiver_tls(&cfg, dir.path()).unwrap().cert.fingerprint;
        assert_ne!(first, second);
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = ensure_self_signed(other.path(), None).unwrap();
        std::fs::copy(other_key, dir.path().join("tls/key.pem")).unwrap();
        let third = receiver_tls(&cfg, dir.path()).unwrap().cert.fingerprint;
        assert!(third != second && third != first);
        assert_eq!(receiver_tls(&cfg, dir.path()).unwrap().cert.fingerprint, third, "and kept from then on");
    }

    #[test]
    fn a_key_from_another_pair_is_named_with_both_files() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (cert, _) = ensure_self_signed(a.path(), None).unwrap();
        let (_, other_key) = ensure_self_signed(b.path(), None).unwrap();
        let e = ReloadingCert::new(&cert, &other_key).unwrap_err().to_string();
        let expected = format!(
            "tls.key = {}: is not the key of the certificate in tls.cert = {}",
            other_key.display(),
            cert.display()
        );
        assert_eq!(e, expected);
    }
}

#[cfg(test)]
mod chain_tests {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

    use super::*;

    fn ca(name: &str, signer: Option<&CertifiedIssuer<'static, KeyPair>>) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        match signer {
            None => CertifiedIssuer::self_signed(params, key).unwrap(),
            Some(s) => CertifiedIssuer::signed_by(params, key, s).unwrap(),
        }
    }

    fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["app.netdata.cloud".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "app.netdata.cloud");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.signed_by(&KeyPair::generate().unwrap(), issuer).unwrap().der().clone()
    }

    #[test]
    fn a_client_chain_is_checked_only_when_it_is_short() {
        let dir = tempfile::tempdir().unwrap();
        let root = ca("Test Root", None);
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, root.as_ref().pem()).unwrap();
        let verifier = client_verifier(&ClientCa::File(path)).unwrap();
        let now = UnixTime::now();
        // A chain through intermediates to the trusted root, up to the cap: accepted.
        let mut chain = vec![ca("Intermediate 0", Some(&root))];
        for i in 1..MAX_CLIENT_INTERMEDIATES {
            let next = ca(&format!("Intermediate {i}"), Some(&chain[i - 1]));
            chain.push(next);
        }
        let ders: Vec<CertificateDer<'static>> = chain.iter().rev().map(|c| c.as_ref().der().clone()).collect();
        let end = leaf(chain.last().unwrap());
        assert!(verifier.verify_client_cert(&end, &ders, now).is_ok());
        // Certificates of one name, none trusted: refused by their number alone, past the cap.
        let same_name: Vec<_> = (0..10).map(|_| ca("L", None)).collect();
        let ders: Vec<CertificateDer<'static>> = same_name.iter().map(|c| c.as_ref().der().clone()).collect();
        let end = leaf(&same_name[0]);
        let e = verifier.verify_client_cert(&end, &ders, now).unwrap_err().to_string();
        assert!(e.contains("10 intermediate certificates"), "{e}");
        let e = verifier.verify_client_cert(&end, &ders[..MAX_CLIENT_INTERMEDIATES], now).unwrap_err().to_string();
        assert!(!e.contains("intermediate certificates"), "at the cap, the chain is checked: {e}");
    }
}
