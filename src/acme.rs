//! A certificate Netdata trusts (`[tls.acme]`): obtained and renewed from an ACME CA (Let's
//! Encrypt by default) with the TLS-ALPN-01 challenge, answered on the receiver's own port.
//! The certificate is kept in `<data>/acme` and swapped into the running receiver.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::lock::MutexExt as _;
use crate::tls::ReloadingCert;

/// The ALPN protocol of TLS-ALPN-01 validation connections (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The first pause after a failed attempt.
const FIRST_RETRY: Duration = Duration::from_secs(120);
/// The longest pause between failed attempts.
const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);

/// `[tls.acme]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
    /// The contact e-mail given to the CA, if any.
    pub email: Option<String>,
    /// The host name the certificate is for (the public URL's host by default).
    pub domain: String,
    /// A CA to trust for the directory's own HTTPS (test servers such as Pebble).
    pub directory_ca: Option<PathBuf>,
}

/// Where the ACME account and certificate are kept.
#[derive(Debug, Clone)]
pub struct AcmeFiles {
    /// The account's credentials (its private key), mode 0600.
    pub account: PathBuf,
    /// The certificate chain.
    pub cert: PathBuf,
    /// The certificate's private key, mode 0600.
    pub key: PathBuf,
}

impl AcmeFiles {
    /// The files under `<data_dir>/acme`.
    pub fn in_data_dir(data_dir: &Path) -> AcmeFiles {
        let dir = data_dir.join("acme");
        AcmeFiles { account: dir.join("account.json"), cert: dir.join("cert.pem"), key: dir.join("key.pem") }
    }
}

/// Serves the current certificate, and the TLS-ALPN-01 challenge certificate to validation
/// connections (ALPN `acme-tls/1`) while an order is pending.
#[derive(Debug)]
pub struct AcmeResolver {
    current: ReloadingCert,
    challenge: Mutex<Option<(String, Arc<CertifiedKey>)>>,
}

impl AcmeResolver {
    /// Serves the pair in `files` (reloaded when it changes).
    pub fn new(current: ReloadingCert) -> AcmeResolver {
        AcmeResolver { current, challenge: Mutex::new(None) }
    }

    /// The certificate served to ordinary clients.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.current()
    }

    fn set_challenge(&self, c: Option<(String, Arc<CertifiedKey>)>) {
        *self.challenge.locked() = c;
    }
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello.alpn().is_some_and(|mut a| a.any(|p| p == ACME_TLS_ALPN));
        if !validation {
            return Some(self.current.current());
        }
        let sni = hello.server_name()?;
        let c = self.challenge.locked();
        c.as_ref().filter(|(d, _)| d.eq_ignore_ascii_case(sni)).map(|(_, k)| k.clone())
    }
}

/// When the certificate in `cert` should be renewed: at once for Alertray's bootstrap
/// self-signed certificate, an unreadable file or one not for `domain` (the setting
/// changed), else when a third of its lifetime is left.
pub fn renewal_due(cert: &Path, domain: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let f = crate::tls::leaf_facts(cert)?;
    if f.self_signed || !f.names.iter().any(|n| n.eq_ignore_ascii_case(domain)) {
        return None;
    }
    chrono::DateTime::from_timestamp(f.not_after - (f.not_after - f.not_before) / 3, 0)
}

/// Obtains a certificate when none is there or the one there is due, then sleeps until the
/// next renewal; retries failures with a growing pause. Runs until `shutdown`.
pub async fn run(cfg: AcmeConfig, files: AcmeFiles, resolver: Arc<AcmeResolver>, shutdown: CancellationToken) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Let's Encrypt allows 5 failed validations per name an hour: 2, 4, 8, 16 minutes apart
    // stays under that while still recovering quickly once the path works.
    // The pause after failures is kept on disk, so that restarting the receiver (every Save
    // in Settings) does not set off a new order at once.
    let (mut next_try, mut retry) = load_retry(&files);
    let mut obtained = false;
    loop {
        let mut wait = match renewal_due(&files.cert, &cfg.domain) {
            Some(due) => (due - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => Duration::ZERO,
        };
        if wait.is_zero() && obtained {
            // Just obtained, yet already due: a clock far off, or a certificate that does
            // not read back. Do not order again and again.
            tracing::warn!(domain = %cfg.domain, "the new certificate already looks due for renewal; checking again in an hour");
            wait = Duration::from_secs(3600);
        }
        if let Some(at) = next_try {
            wait = wait.max((at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO));
        }
        if !wait.is_zero() {
            if next_try.is_some_and(|at| at > chrono::Utc::now()) {
                tracing::info!(domain = %cfg.domain, "next ACME attempt in {} s (after earlier failures)", wait.as_secs());
            } else {
                tracing::info!(domain = %cfg.domain, "ACME certificate is current; renewing in {} min", wait.as_secs() / 60);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Wake at least daily, so that a clock change or a replaced file is noticed.
                _ = tokio::time::sleep(wait.min(Duration::from_secs(24 * 3600))) => continue,
            }
        }
        tracing::info!(domain = %cfg.domain, directory = %cfg.directory, "requesting a certificate (ACME TLS-ALPN-01)");
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = obtain(&cfg, &files, &resolver) => r,
        };
        resolver.set_challenge(None);
        obtained = result.is_ok();
        match result {
            Ok(until) => {
                retry = FIRST_RETRY;
                next_try = None;
                let _ = std::fs::remove_file(retry_file(&files));
                tracing::info!(domain = %cfg.domain, fingerprint = %crate::tls::fingerprint(&resolver.current().cert[0]), "ACME certificate obtained, valid until {until}");
            }
            Err(e) => {
                // Kept on disk before it is announced, so whoever reads the log finds it there.
                next_try = Some(chrono::Utc::now() + retry);
                save_retry(&files, next_try, retry * 2);
                tracing::error!(domain = %cfg.domain, "could not obtain a certificate: {e}; retrying in {} s", retry.as_secs());
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

fn retry_file(files: &AcmeFiles) -> PathBuf {
    files.account.with_file_name("retry")
}

/// The next attempt after failures, and the pause after it, as saved.
fn load_retry(files: &AcmeFiles) -> (Option<chrono::DateTime<chrono::Utc>>, Duration) {
    let text = std::fs::read_to_string(retry_file(files)).unwrap_or_default();
    let mut parts = text.split_whitespace().map(|p| p.parse::<i64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(at), Some(secs)) => (
            chrono::DateTime::from_timestamp_millis(at),
            Duration::from_secs(secs.clamp(FIRST_RETRY.as_secs() as i64, MAX_RETRY.as_secs() as i64) as u64),
        ),
        _ => (None, FIRST_RETRY),
    }
}

fn save_retry(files: &AcmeFiles, at: Option<chrono::DateTime<chrono::Utc>>, next: Duration) {
    if let Some(at) = at {
        let text = format!("{} {}\n", at.timestamp_millis(), next.min(MAX_RETRY).as_secs());
        if let Err(e) = write_private(&retry_file(files), &text, "cannot write") {
            tracing::warn!("{e}");
        }
    }
}

/// Why a certificate could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with an error, or could not be reached.
    #[error("{step}: {source}")]
    Acme {
        /// What was being done.
        step: &'static str,
        /// The ACME client's error.
        source: instant_acme::Error,
    },
    /// The CA did not validate the challenge, or the order failed.
    #[error("the order for {domain} is {status:?}: {detail}")]
    Order {
        /// The domain.
        domain: String,
        /// Where the order ended.
        status: OrderStatus,
        /// The CA's problem document, if it gave one.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What failed.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The challenge certificate could not be made.
    #[error("the challenge certificate: {0}")]
    Challenge(String),
}

fn acme(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
    move |source| AcmeError::Acme { step, source }
}

async fn account(cfg: &AcmeConfig, files: &AcmeFiles) -> Result<Account, AcmeError> {
    let builder = || match &cfg.directory_ca {
        Some(ca) => Account::builder_with_root(ca).map_err(acme("reading tls.acme.directory_ca")),
        None => Account::builder().map_err(acme("setting up the ACME client")),
    };
    // An account belongs to one CA: after tls.acme.directory changes, a new one is made.
    let same_ca = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("directory").and_then(|d| d.as_str()).map(|d| d == cfg.directory))
            .unwrap_or(true)
    };
    if let Some(bytes) = std::fs::read(&files.account).ok().filter(|b| same_ca(b)) {
        match serde_json::from_slice::<AccountCredentials>(&bytes) {
            Ok(creds) => return builder()?.from_credentials(creds).await.map_err(acme("loading the ACME account")),
            Err(e) => {
                tracing::warn!(file = %files.account.display(), "ACME account file unreadable ({e}); creating a new account")
            }
        }
    }
    let contact: Vec<String> = cfg.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, creds) =
        builder()?.create(&new, cfg.directory.clone(), None).await.map_err(acme("creating the ACME account"))?;
    let json = serde_json::to_string(&creds).map_err(|e| AcmeError::Challenge(e.to_string()))?;
    write_private(&files.account, &json, "cannot write")?;
    tracing::info!(file = %files.account.display(), "ACME account created");
    Ok(account)
}

fn write_private(path: &Path, contents: &str, what: &'static str) -> Result<(), AcmeError> {
    if let Some(dir) = path.parent() {
        crate::store::create_private_dir(dir).map_err(|source| AcmeError::Io { what, path: dir.into(), source })?;
    }
    crate::config::write_private_replace(path, contents).map_err(|source| AcmeError::Io {
        what,
        path: path.into(),
        source,
    })
}

fn challenge_cert(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let bad = |e: &dyn std::fmt::Display| AcmeError::Challenge(e.to_string());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| bad(&e))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| bad(&e))?;
    let cert = params.self_signed(&key).map_err(|e| bad(&e))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::default_provider().key_provider.load_private_key(der).map_err(|e| bad(&e))?;
    // Not CertifiedKey::from_der: it parses the certificate and refuses the critical
    // acmeIdentifier extension that the challenge needs.
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

/// One order: account, challenge, finalize, download, write, swap in. Returns the new
/// certificate's expiry.
async fn obtain(cfg: &AcmeConfig, files: &AcmeFiles, resolver: &AcmeResolver) -> Result<String, AcmeError> {
    let account = account(cfg, files).await?;
    let ids = [Identifier::Dns(cfg.domain.clone())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(acme("creating the order"))?;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(acme("reading the authorization"))?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authz.challenge(ChallengeType::TlsAlpn01).ok_or_else(|| {
            AcmeError::Challenge("the CA does not offer the tls-alpn-01 challenge for this name".into())
        })?;
        let domain = challenge.identifier().to_string();
        let cert = challenge_cert(&domain, challenge.key_authorization().digest().as_ref())?;
        resolver.set_challenge(Some((domain, cert)));
        challenge.set_ready().await.map_err(acme("answering the challenge"))?;
    }
    let status =
        order.poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(180))).await.map_err(acme("validation"))?;
    if status != OrderStatus::Ready {
        let detail = order.state().error.as_ref().map(|p| format!("{p:?}")).unwrap_or_else(|| {
            "the CA could not reach this receiver on port 443 of the public host with TLS-ALPN-01: \
             the tunnel must pass TLS through (bore, ngrok tls/tcp)"
                .into()
        });
        return Err(AcmeError::Order { domain: cfg.domain.clone(), status, detail });
    }
    resolver.set_challenge(None);
    let key_pem = order.finalize().await.map_err(acme("finalizing the order"))?;
    let chain_pem =
        order.poll_certificate(&RetryPolicy::default()).await.map_err(acme("downloading the certificate"))?;
    // Key first, then the chain: the receiver reloads when the chain changes, and keeps the
    // old pair if a half-written one does not load.
    let (new_key, new_cert) = (files.key.with_extension("pem.new"), files.cert.with_extension("pem.new"));
    write_private(&new_key, &key_pem, "cannot write")?;
    write_private(&new_cert, &chain_pem, "cannot write")?;
    for (from, to) in [(&new_key, &files.key), (&new_cert, &files.cert)] {
        std::fs::rename(from, to).map_err(|source| AcmeError::Io {
            what: "cannot replace",
            path: to.clone(),
            source,
        })?;
    }
    resolver.current.reload_now();
    let until = crate::tls::leaf_facts(&files.cert)
        .and_then(|f| chrono::DateTime::from_timestamp(f.not_after, 0))
        .map_or_else(|| "(unknown)".into(), |t| t.to_rfc3339());
    Ok(until)
}
