//! "Check connection": goes through the public webhook URL the way Netdata Cloud would
//! (resolve, connect, TLS, the certificate the outside world sees, the challenge, the
//! credentials) and reports each step, with a plain-language fix for each failure.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::config::{AuthMethod, ClientCertMode, Config};
use crate::lock::MutexExt as _;

/// The request header that makes an authenticated POST a connection check: the receiver
/// answers it after authentication and stores nothing.
pub const CHECK_HEADER: &str = "x-alertray-check";

/// The webhook URL to check when none is given: the tunnel's URL while one is up (as the
/// running app or `alertray serve` recorded it), else `server.public_url`, with `server.path`.
pub fn current_webhook_url(cfg: &Config, data_dir: &std::path::Path) -> Option<String> {
    cfg.server.webhook_url_via(crate::tunnel::recorded_url(data_dir).as_deref())
}

/// Certificates expiring sooner than this are reported as a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// As Netdata needs it.
    Ok,
    /// Works, with a caveat.
    Warning,
    /// Netdata's deliveries will not get through.
    Failed,
    /// Could not be checked (an earlier step failed, or nothing to check).
    Skipped,
}

/// One step of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What was checked.
    pub name: &'static str,
    /// How it went.
    pub status: StepStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, when something is wrong.
    pub fix: Option<String>,
}

/// The whole check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The webhook URL checked.
    pub url: Option<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// `true` when no step failed.
    pub passed: bool,
}

impl Report {
    /// The step called `name`, if it ran.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The report as text, a step a line, fixes indented under failures.
    pub fn text(&self) -> String {
        let mut s = format!("Checking {}\n", self.url.as_deref().unwrap_or("(no public URL)"));
        for step in &self.steps {
            let mark = match step.status {
                StepStatus::Ok => "ok  ",
                StepStatus::Warning => "warn",
                StepStatus::Failed => "FAIL",
                StepStatus::Skipped => "skip",
            };
            s.push_str(&format!("[{mark}] {:<16} {}\n", step.name, step.detail));
            if let Some(fix) = &step.fix {
                s.push_str(&format!("       fix: {fix}\n"));
            }
        }
        let warned = self.steps.iter().any(|s| s.status == StepStatus::Warning);
        s.push_str(if self.passed && warned {
            "Nothing failed, but see the warnings above.\n"
        } else if self.passed {
            "Netdata Cloud can reach this receiver.\n"
        } else {
            "Netdata Cloud cannot deliver to this receiver yet; see the fixes above.\n"
        });
        s
    }
}

/// What the check needs besides the config.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The webhook URL to check (the tunnel's URL or `server.public_url`, with the path).
    pub webhook_url: Option<String>,
    /// The SHA-256 fingerprint of the receiver's own certificate, to tell whether the tunnel
    /// passes TLS through.
    pub local_fingerprint: Option<String>,
    /// Roots trusted besides the public ones (a private CA, or a test CA).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Time allowed for each network step.
    pub timeout: Option<Duration>,
}

struct Checker {
    steps: Vec<Step>,
}

impl Checker {
    fn push(&mut self, name: &'static str, status: StepStatus, detail: impl Into<String>, fix: Option<String>) {
        self.steps.push(Step { name, status, detail: detail.into(), fix });
    }
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, StepStatus::Ok, detail, None);
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, StepStatus::Failed, detail, Some(fix.into()));
    }
    fn skip_rest(&mut self, names: &[&'static str]) {
        for n in names {
            self.push(n, StepStatus::Skipped, "not checked: an earlier step failed", None);
        }
    }
}

/// The step names, in order.
pub const STEPS: [&str; 8] =
    ["Public URL", "DNS", "Connect", "TLS", "Certificate", "TLS passthrough", "Challenge", "Authentication"];

/// Whether `ip` can be reached from the internet at large: not loopback, private, link-local,
/// shared (carrier-grade NAT, Tailscale's 100.64/10), multicast, reserved, unique-local or
/// unspecified.
fn reachable_from_internet(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a >= 240
                || (a == 100 && (64..128).contains(&b)))
        }
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => reachable_from_internet(v4.into()),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// Runs the check against `opts.webhook_url` with `cfg`'s secrets.
pub async fn run(cfg: &Config, opts: CheckOptions) -> Report {
    let mut c = Checker { steps: Vec::new() };
    check(cfg, &opts, &mut c).await;
    let passed = !c.steps.iter().any(|s| s.status == StepStatus::Failed);
    let url = opts.webhook_url.as_deref().map(crate::config::shown_url);
    Report { url, steps: c.steps, passed }
}

async fn check(cfg: &Config, opts: &CheckOptions, c: &mut Checker) {
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
    let listen = cfg.server.listen;
    // Public URL
    let Some(url) = opts.webhook_url.as_deref() else {
        c.fail(
            "Public URL",
            "no public URL: no tunnel is up and server.public_url is not set",
            "Set tunnel.command so that Alertray starts your tunnel and learns its URL, or set \
             server.public_url to the https:// URL your tunnel gives you.",
        );
        return c.skip_rest(&STEPS[1..]);
    };
    let uri: Uri = match url.parse::<Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => u,
        _ => {
            c.fail(
                "Public URL",
                format!("{} is not an https:// URL", crate::config::shown_url(url)),
                "Netdata only posts to https:// URLs: use your tunnel's https:// address.",
            );
            return c.skip_rest(&STEPS[1..]);
        }
    };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        c.fail(
            "Public URL",
            format!("{} holds a user name or password", crate::config::shown_url(url)),
            "Netdata's webhook URL takes none: set auth.method = \"basic\" with auth.username and \
             auth.password, and paste them into Netdata Cloud's Basic fields.",
        );
        return c.skip_rest(&STEPS[1..]);
    }
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri.path().to_string();
    if path != cfg.server.path {
        c.push(
            "Public URL",
            StepStatus::Warning,
            format!("{url}: its path {path} is not server.path ({})", cfg.server.path),
            Some(format!(
                "Unless your tunnel rewrites paths, use a URL ending in {} in Netdata Cloud.",
                cfg.server.path
            )),
        );
    } else {
        c.ok("Public URL", url.to_string());
    }

    // DNS
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                c.fail(
                    "DNS",
                    format!("{host} does not resolve: {e}"),
                    "Check the host name. Tunnels such as bore and cloudflared quick tunnels give a new \
                 address at each start: paste the current one into Netdata Cloud.",
                );
                return c.skip_rest(&STEPS[2..]);
            }
            Err(_) => {
                c.fail("DNS", format!("resolving {host} took over {} s", timeout.as_secs()), "Check your DNS.");
                return c.skip_rest(&STEPS[2..]);
            }
        };
    let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    let what = if host.parse::<std::net::IpAddr>().is_ok() {
        format!("{host} is an IP address: nothing to resolve")
    } else {
        format!("{host} is {}", shown.join(", "))
    };
    // Tailscale's MagicDNS answers a tailnet name with the machine's tailnet address on the
    // machine itself; the world (Netdata Cloud included) gets Funnel's public addresses.
    let tailnet = host.to_ascii_lowercase().ends_with(".ts.net");
    if !tailnet && !addrs.is_empty() && addrs.iter().all(|a| !reachable_from_internet(a.ip())) {
        // The rest of the check still runs: it tells whether the receiver answers here.
        c.push(
            "DNS",
            StepStatus::Warning,
            format!("{what}: a loopback or private address, which Netdata Cloud cannot reach"),
            Some("Paste the public https:// URL your tunnel gives you into Netdata Cloud; the steps below only show that the receiver answers on this machine or network.".into()),
        );
    } else {
        c.ok("DNS", what);
    }

    // Connect
    let mut tcp = None;
    let mut last_err = String::from("no address");
    for addr in &addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some((s, *addr));
                break;
            }
            Ok(Err(e)) => last_err = format!("{addr}: {e}"),
            Err(_) => last_err = format!("{addr}: no answer within {} s", timeout.as_secs()),
        }
    }
    let Some((tcp, addr)) = tcp else {
        c.fail(
            "Connect",
            format!("cannot connect to {host}:{port} ({last_err})"),
            format!(
                "The tunnel is down or no longer has this address. Start it (tunnel.command starts it \
                 with Alertray), check that it forwards to {listen}, and paste its current URL into Netdata Cloud."
            ),
        );
        return c.skip_rest(&STEPS[3..]);
    };
    let _ = tcp.set_nodelay(true);
    c.ok("Connect", format!("connected to {addr}"));

    // TLS
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tls_config = client_config(seen.clone());
    let server_name = match ServerName::try_from(host.clone()) {
        Ok(n) => n,
        Err(_) => {
            c.fail("TLS", format!("{host} is not a valid TLS server name"), "Use a host name or IP address.");
            return c.skip_rest(&STEPS[4..]);
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    let tls = match tokio::time::timeout(timeout, connector.connect(server_name.clone(), tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            c.fail(
                "TLS",
                format!("the TLS handshake failed: {e}"),
                format!(
                    "Something that does not speak TLS answers at {host}:{port}. Point the tunnel at the \
                     receiver's HTTPS port ({listen}) and use its https:// address."
                ),
            );
            return c.skip_rest(&STEPS[4..]);
        }
        Err(_) => {
            c.fail(
                "TLS",
                format!("no TLS answer within {} s", timeout.as_secs()),
                format!(
                    "The tunnel accepts connections but nothing answers behind it: is Alertray listening on {listen}?"
                ),
            );
            return c.skip_rest(&STEPS[4..]);
        }
    };
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    let suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    c.ok("TLS", format!("{} with {}", version.replace('_', "."), suite));

    // Certificate
    let chain = seen.locked().clone();
    let leaf_fp = chain.first().map(|l| crate::tls::fingerprint(l));
    let trusted = certificate_step(c, &chain, &server_name, &host, &opts.extra_roots);

    // TLS passthrough
    let ends_at_edge = match (&opts.local_fingerprint, &leaf_fp) {
        (Some(local), Some(seen)) => Some(local != seen),
        _ => None,
    };
    match (ends_at_edge, cfg.auth.client_certificate) {
        (None, _) => c.push(
            "TLS passthrough",
            StepStatus::Skipped,
            "the receiver's own certificate is not known here, so this cannot be told",
            None,
        ),
        (Some(false), _) => c.ok(
            "TLS passthrough",
            "the tunnel passes TLS through: the outside world sees the receiver's own certificate, \
             so Netdata's client certificate reaches it",
        ),
        (Some(true), ClientCertMode::Required) => c.fail(
            "TLS passthrough",
            "the tunnel ends TLS at its edge (the certificate seen from outside is not the receiver's), \
             so Netdata's client certificate cannot reach you",
            "Switch auth.client_certificate to \"off\" and use a bearer token (auth.method = \"bearer\"), \
             or use a tunnel that passes TLS through (bore, ngrok tls/tcp, frp tcp).",
        ),
        (Some(true), ClientCertMode::Optional) => c.push(
            "TLS passthrough",
            StepStatus::Warning,
            "the tunnel ends TLS at its edge, so Netdata's client certificate cannot reach you; \
             only the Authorization header and extra headers protect the receiver",
            Some("Set auth.client_certificate = \"off\" to say so, and keep a bearer token or Basic password.".into()),
        ),
        (Some(true), ClientCertMode::Off) => c.ok(
            "TLS passthrough",
            "the tunnel ends TLS at its edge (fine: client certificates are off and the Authorization header is checked)",
        ),
    }

    // Challenge and Authentication, over the same connection.
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
        Ok(x) => x,
        Err(e) => {
            c.fail("Challenge", format!("HTTP failed: {e}"), "Check that the tunnel forwards HTTPS unchanged.");
            return c.skip_rest(&STEPS[7..]);
        }
    };
    let conn_task = tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_else(|| host.clone());
    challenge_step(c, cfg, &mut sender, &authority, &path, timeout, listen).await;
    // Credentials go only to a server that proved it is the real one: trusted for the name,
    // or holding the receiver's own key (TLS checked its signature over the handshake).
    if trusted || ends_at_edge == Some(false) {
        auth_step(c, cfg, &mut sender, &authority, &path, timeout).await;
    } else {
        c.push(
            "Authentication",
            StepStatus::Skipped,
            "credentials not sent: the server's certificate is neither trusted nor the receiver's own",
            None,
        );
    }
    conn_task.abort();
}

/// Judges the certificate seen; `true` when it is trusted for the host.
fn certificate_step(
    c: &mut Checker,
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'static>,
    host: &str,
    extra_roots: &[CertificateDer<'static>],
) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        c.fail("Certificate", "no certificate was presented", "Check what answers at this address.");
        return false;
    };
    let facts = crate::tls::cert_facts(leaf);
    let names = facts.as_ref().map(|f| f.names.clone()).unwrap_or_default();
    let expiry = facts.as_ref().and_then(|f| chrono::DateTime::from_timestamp(f.not_after, 0));
    let days_left = expiry.map(|e| (e - chrono::Utc::now()).num_days());
    let about = format!(
        "for {}; expires {}",
        if names.is_empty() { "no names".to_string() } else { names.join(", ") },
        match (expiry, days_left) {
            (Some(e), Some(d)) => format!("{} (in {d} days)", e.format("%Y-%m-%d")),
            _ => "(unknown)".into(),
        }
    );
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for r in extra_roots {
        let _ = roots.add(r.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verified = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
        .and_then(|v| v.verify_server_cert(leaf, intermediates, server_name, &[], UnixTime::now()));
    let not_trusted_fix = "Netdata checks the certificate like a browser. Get one for your public host name: \
        tls.acme (Alertray obtains and renews it), or your own files in tls.cert/tls.key; or use a tunnel that \
        ends TLS at its edge with a trusted certificate (cloudflared, ngrok http) with \
        auth.client_certificate = \"off\" and a bearer token.";
    let trusted = verified.is_ok();
    match verified {
        Ok(_) => match days_left {
            Some(d) if d < EXPIRY_WARNING_DAYS => c.push(
                "Certificate",
                StepStatus::Warning,
                format!("trusted, but {about}"),
                Some("Renew it soon (tls.acme renews automatically).".into()),
            ),
            _ => c.ok("Certificate", format!("trusted, {about}")),
        },
        Err(rustls::Error::InvalidCertificate(e)) => {
            let (what, fix) = match e {
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                    format!("not valid for {host}: it is {about}"),
                    format!(
                        "Netdata will refuse it. Use a certificate for {host} (tls.acme obtains one), or set \
                         server.public_url to a name the certificate covers."
                    ),
                ),
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    let self_signed = facts.as_ref().is_some_and(|f| f.self_signed);
                    (
                        format!(
                            "not trusted ({}): it is {about}",
                            if self_signed { "self-signed" } else { "signed by an unknown authority" }
                        ),
                        not_trusted_fix.to_string(),
                    )
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    (format!("expired: it is {about}"), "Renew it (tls.acme renews automatically).".to_string())
                }
                other => (format!("not accepted ({other:?}): it is {about}"), not_trusted_fix.to_string()),
            };
            c.fail("Certificate", what, fix);
        }
        Err(e) => c.fail("Certificate", format!("not accepted ({e}): it is {about}"), not_trusted_fix),
    }
    trusted
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, String), String> {
    let fut = async {
        sender.ready().await.map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
        Ok((status, text))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// The `error` of one of the receiver's JSON answers, if the body is one.
fn receiver_error(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?.get("error")?.as_str().map(str::to_string)
}

fn short(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 120 {
        format!("{}...", one_line.chars().take(120).collect::<String>())
    } else {
        one_line
    }
}

/// What a status from something other than the receiver (the tunnel's edge) means.
fn edge_answer(status: StatusCode, body: &str, listen: SocketAddr) -> (String, String) {
    (
        format!("the tunnel answered {status} instead of the receiver: {}", short(body)),
        if status.is_server_error() {
            format!(
                "The tunnel cannot reach the receiver: check that Alertray is running and that the \
                 tunnel forwards to {listen} over HTTPS."
            )
        } else {
            "The tunnel did not pass the request to the receiver: check its configuration.".to_string()
        },
    )
}

async fn challenge_step(
    c: &mut Checker,
    cfg: &Config,
    sender: &mut Sender,
    authority: &str,
    path: &str,
    timeout: Duration,
    listen: SocketAddr,
) {
    let Some(secret) = &cfg.auth.challenge_secret else {
        c.push(
            "Challenge",
            StepStatus::Failed,
            "auth.challenge_secret is not set, so Netdata's challenge cannot be answered",
            Some("Set auth.challenge_secret and paste the same value into Netdata Cloud's webhook form.".into()),
        );
        return;
    };
    let token = crate::config::generate_secret();
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("{path}?crc_token={}", token.expose()))
        .header("host", authority)
        .header("user-agent", "alertray-check")
        .body(Full::new(Bytes::new()));
    let Ok(req) = req else {
        return c.fail("Challenge", "could not build the request", "Check the URL.");
    };
    let (status, body) = match send(sender, req, timeout).await {
        Ok(x) => x,
        Err(e) => {
            return c.fail(
                "Challenge",
                format!("no HTTP answer: {e}"),
                format!(
                    "Something behind the tunnel accepted TLS but did not answer HTTP: check it forwards to {listen}."
                ),
            )
        }
    };
    let expected = crate::challenge::response_token(secret.expose().as_bytes(), token.expose());
    let answered = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("response_token").and_then(|t| t.as_str()).map(str::to_string));
    match (status, answered, receiver_error(&body)) {
        (StatusCode::OK, Some(t), _) if t == expected => {
            c.ok("Challenge", "the crc_token challenge was answered with this config's challenge secret")
        }
        (StatusCode::OK, Some(_), _) => c.fail(
            "Challenge",
            "the challenge was answered with a different secret than auth.challenge_secret in this config",
            "Another receiver, or Alertray with an older config, answers at this URL. Apply the config \
             (Save in Settings, or restart `alertray serve`) and check the tunnel points at this machine; \
             Netdata Cloud must have the same challenge secret.",
        ),
        (status, _, Some(reason)) => c.fail(
            "Challenge",
            format!("the receiver answered {status}: {reason}"),
            if status == StatusCode::NOT_FOUND {
                format!("Use the path of server.path ({}) in the URL.", cfg.server.path)
            } else {
                "Fix what the receiver says, then check again.".into()
            },
        ),
        (status, _, None) => {
            let (what, fix) = edge_answer(status, &body, listen);
            c.fail("Challenge", what, fix)
        }
    }
}

async fn auth_step(c: &mut Checker, cfg: &Config, sender: &mut Sender, authority: &str, path: &str, timeout: Duration) {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", authority)
        .header("user-agent", "alertray-check")
        .header("content-type", "application/json")
        .header(CHECK_HEADER, "1");
    match &cfg.auth.method {
        AuthMethod::None => {}
        AuthMethod::Basic { username, password } => {
            use base64::Engine as _;
            let pair = format!("{username}:{}", password.expose());
            req = req
                .header("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
        }
        AuthMethod::Bearer { token } => req = req.header("authorization", format!("Bearer {}", token.expose())),
    }
    for (name, value) in &cfg.auth.headers {
        req = req.header(name, value.expose());
    }
    let Ok(req) = req.body(Full::new(Bytes::new())) else {
        return c.fail("Authentication", "could not build the request", "Check auth.headers.");
    };
    let what = match &cfg.auth.method {
        AuthMethod::None => "the extra headers".to_string(),
        m => format!(
            "{} authentication{}",
            m.name(),
            if cfg.auth.headers.is_empty() { "" } else { " and the extra headers" }
        ),
    };
    let (status, body) = match send(sender, req, timeout).await {
        Ok(x) => x,
        Err(e) => return c.fail("Authentication", format!("no HTTP answer: {e}"), "Check the tunnel."),
    };
    let reason = receiver_error(&body);
    match status {
        StatusCode::OK if body.contains("\"check\"") => {
            c.ok("Authentication", format!("the receiver accepted {what} (nothing was stored)"))
        }
        StatusCode::FORBIDDEN if cfg.auth.client_certificate == ClientCertMode::Required => c.push(
            "Authentication",
            StepStatus::Skipped,
            "only Netdata's client certificate passes (auth.client_certificate = \"required\"), and this \
             check cannot present it; the path up to the receiver works",
            None,
        ),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => c.fail(
            "Authentication",
            format!("the receiver refused this config's credentials ({status}: {})", reason.unwrap_or_default()),
            "The receiver behind this URL uses other credentials than this config: apply the config (Save in \
             Settings, or restart `alertray serve`), and paste the same token, password and headers into \
             Netdata Cloud.",
        ),
        StatusCode::TOO_MANY_REQUESTS => c.push(
            "Authentication",
            StepStatus::Warning,
            "throttled after too many failed attempts from this address",
            Some("Wait a minute and check again.".into()),
        ),
        status if reason.is_some() => c.fail(
            "Authentication",
            format!("the receiver answered {status}: {}", reason.unwrap_or_default()),
            "Fix what the receiver says, then check again.",
        ),
        status => {
            let (what, fix) = edge_answer(status, &body, SocketAddr::from(([127, 0, 0, 1], 0)));
            c.fail("Authentication", what, fix)
        }
    }
}

/// A client config that accepts any certificate and keeps the chain it was shown, so that
/// the certificate step can judge it and say why.
fn client_config(seen: Arc<Mutex<Vec<CertificateDer<'static>>>>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder { seen, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.locked() = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_on_the_internet_are_reachable_by_netdata_cloud() {
        for private in [
            "224.0.0.1",
            "240.0.0.1",
            "ff02::1",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.9",
            "169.254.1.1",
            "100.101.102.103",
            "0.0.0.0",
            "::1",
            "fd7a:115c:a1e0::1",
            "fe80::1",
            "::ffff:192.168.1.9",
        ] {
            assert!(!reachable_from_internet(private.parse().unwrap()), "{private}");
        }
        for public in ["104.16.1.1", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(reachable_from_internet(public.parse().unwrap()), "{public}");
        }
    }
}
