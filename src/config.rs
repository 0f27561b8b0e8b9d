//! Configuration: a TOML file read in two stages, raw (every key optional, unknown keys
//! refused) and validated ([`Config`]), so that every mistake is reported with the key, the
//! bad value and what is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::http::{HeaderName, HeaderValue, Uri};
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A secret from the config: compared in constant time elsewhere, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret's value: call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A fresh random secret: 32 random bytes, URL-safe base64 (43 characters).
pub fn generate_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What went wrong reading the config.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("config file {path} is not valid: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message, which names the key and line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{key} = {value} is not accepted: {accepted}")]
    Invalid {
        /// The dotted key (`auth.method`).
        key: String,
        /// The bad value as written, or `(hidden)` for secrets.
        value: String,
        /// What would be accepted.
        accepted: String,
    },
    /// More than one setting is at fault: each is named, section by section.
    #[error("{} settings are not accepted:{}", .0.len(), .0.iter().map(|e| format!("\n  - {e}")).collect::<String>())]
    Several(Vec<ConfigError>),
    /// There is no file at the path.
    #[error("there is no config file {}; `alertray --config {} config init` writes one with fresh secrets", .path.display(), .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// `config init` found a file where it would write one.
    #[error("{} already exists and was left as it is: edit it, or move it aside to write a new one", .path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be written.
    #[error("cannot write config file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ConfigError {
    /// Reading `path` failed with `source`: a missing file says how to make one.
    pub(crate) fn reading(path: &Path, source: std::io::Error) -> ConfigError {
        match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing { path: path.to_path_buf() },
            _ => ConfigError::Read { path: path.to_path_buf(), source },
        }
    }

    fn invalid(key: &str, value: impl fmt::Display, accepted: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key: key.into(), value: value.to_string(), accepted: accepted.into() }
    }

    /// The dotted key this error is about, when it is about one (the first one's, for
    /// several).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Several(all) => all.first().and_then(ConfigError::key),
            _ => None,
        }
    }

    /// One error for what validation found: itself when it is one.
    fn from_problems(mut problems: Vec<ConfigError>) -> ConfigError {
        match problems.len() {
            1 => problems.remove(0),
            _ => ConfigError::Several(problems),
        }
    }
}

/// The config file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    #[serde(default)]
    pub server: RawServer,
    /// `[tls]`
    #[serde(default)]
    pub tls: RawTls,
    /// `[auth]`
    #[serde(default)]
    pub auth: RawAuth,
    /// `[notifications]`
    #[serde(default)]
    pub notifications: RawNotifications,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[tunnel]`
    #[serde(default)]
    pub tunnel: RawTunnel,
}

/// `[tunnel]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnel {
    pub command: Option<String>,
    pub url_pattern: Option<String>,
}

/// `[server]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub path: Option<String>,
    pub public_url: Option<String>,
    pub max_connections: Option<i64>,
    pub request_timeout_secs: Option<i64>,
}

/// `[tls]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub acme: Option<RawAcme>,
}

/// `[tls.acme]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub enabled: Option<bool>,
    pub email: Option<String>,
    pub domain: Option<String>,
    pub directory: Option<String>,
    pub directory_ca: Option<PathBuf>,
}

/// `[auth]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub client_certificate: Option<String>,
    pub client_ca: Option<String>,
    pub client_names: Option<Vec<String>>,
    pub method: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub challenge_secret: Option<Secret>,
    pub allow_unauthenticated: Option<bool>,
    pub max_failures_per_minute: Option<i64>,
    pub headers: Option<BTreeMap<String, Secret>>,
}

/// `[notifications]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    pub enabled: Option<bool>,
    pub max_popups_per_minute: Option<i64>,
    pub min_severity: Option<String>,
    pub quiet_hours: Option<String>,
    pub quiet_hours_allow_critical: Option<bool>,
}

/// `[store]` as written.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub retention_days: Option<i64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the receiver listens and what it serves.
    pub server: ServerConfig,
    /// The receiver's certificate.
    pub tls: TlsConfig,
    /// How deliveries authenticate.
    pub auth: AuthConfig,
    /// Desktop popups.
    pub notifications: NotificationsConfig,
    /// The store.
    pub store: StoreConfig,
    /// The tunnel Alertray runs, if any.
    pub tunnel: Option<crate::tunnel::TunnelConfig>,
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The socket address to listen on.
    pub listen: SocketAddr,
    /// The webhook's path, starting with `/`.
    pub path: String,
    /// The public URL Netdata posts to (through the user's tunnel), if set.
    pub public_url: Option<Uri>,
    /// At most this many connections at once; more wait for a slot (up to the request timeout).
    pub max_connections: usize,
    /// Time allowed for a TLS handshake, the request headers, or the request body.
    pub request_timeout: std::time::Duration,
}

impl ServerConfig {
    /// The URL to paste into Netdata Cloud: `public_url` joined with `path`.
    pub fn webhook_url(&self) -> Option<String> {
        let base = self.public_url.as_ref()?;
        let authority = base.authority()?;
        let prefix = base.path().trim_end_matches('/');
        Some(format!("https://{authority}{prefix}{}", self.path))
    }

    /// The URL to paste through a tunnel whose public base URL is `tunnel` (when it is up),
    /// else [`ServerConfig::webhook_url`].
    pub fn webhook_url_via(&self, tunnel: Option<&str>) -> Option<String> {
        match tunnel {
            Some(base) => Some(format!("{base}{}", self.path)),
            None => self.webhook_url(),
        }
    }
}

/// `[tls]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsConfig {
    /// Generate a self-signed certificate once and keep it in the data dir.
    SelfSigned,
    /// Use these PEM files, reloading them when they change.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// Obtain and renew a certificate with ACME (TLS-ALPN-01) and keep it in the data dir.
    Acme(crate::acme::AcmeConfig),
}

/// Whether a client certificate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertMode {
    /// Every POST must present an accepted certificate.
    Required,
    /// A certificate is asked for; if presented it must be accepted.
    Optional,
    /// No certificate is asked for (tunnels that end TLS at their edge).
    Off,
}

/// Which roots a client certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCa {
    /// The Netdata Root CA built into Alertray.
    Netdata,
    /// A PEM bundle.
    File(PathBuf),
}

/// How the Authorization header is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// No Authorization header is checked.
    None,
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
}

impl AuthMethod {
    /// The method's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Basic { .. } => "basic",
            AuthMethod::Bearer { .. } => "bearer",
        }
    }
}

/// `[auth]`, validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether a client certificate is asked for.
    pub client_certificate: ClientCertMode,
    /// Which roots it must chain to.
    pub client_ca: ClientCa,
    /// The names (subject CN or DNS SAN) a client certificate may carry.
    pub client_names: Vec<String>,
    /// The Authorization check.
    pub method: AuthMethod,
    /// The challenge secret, if set.
    pub challenge_secret: Option<Secret>,
    /// Headers every POST must carry, with their values.
    pub headers: Vec<(HeaderName, Secret)>,
    /// Authentication failures allowed per peer address per minute before it is throttled.
    pub max_failures_per_minute: u32,
}

impl AuthConfig {
    /// `true` when some check stands between the internet and the store.
    pub fn has_authentication(&self) -> bool {
        self.client_certificate == ClientCertMode::Required
            || self.method != AuthMethod::None
            || !self.headers.is_empty()
    }
}

/// `[notifications]`, validated.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// Whether desktop popups are shown at all.
    pub enabled: bool,
    /// Popups beyond this many a minute fold into one summary popup.
    pub max_popups_per_minute: u32,
    /// The least severe popup shown.
    pub min_severity: crate::policy::MinSeverity,
    /// Quiet hours, if set.
    pub quiet_hours: Option<crate::policy::QuietHours>,
}

/// `[store]`, validated.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Notifications older than this are pruned (0 keeps them forever).
    pub retention_days: u32,
}

/// The names Netdata's client certificate has been documented with.
pub const DEFAULT_CLIENT_NAMES: [&str; 2] = ["app.netdata.cloud", "api.netdata.cloud"];

fn int_in(key: &str, v: Option<i64>, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(ConfigError::invalid(key, v, format!("a whole number from {min} to {max}"))),
    }
}

fn required_secret(key: &str, v: Option<Secret>, method: &str) -> Result<Secret, ConfigError> {
    match v {
        Some(s) if !s.expose().trim().is_empty() => Ok(s),
        Some(_) => {
            Err(ConfigError::invalid(key, "\"\"", format!("a non-empty secret when auth.method = \"{method}\"")))
        }
        None => {
            Err(ConfigError::invalid(key, "(missing)", format!("a non-empty secret when auth.method = \"{method}\"")))
        }
    }
}

/// Whether a secret sent in a header starts or ends with white space, which HTTP drops from
/// what the client sends (and the receiver trims, as [`crate::auth`] does): such a secret
/// could never match.
fn padded(secret: &Secret) -> bool {
    let s = secret.expose();
    s.trim_ascii() != s
}

/// `url` fit to show: a user name and password replaced by "(hidden)" (everything between
/// the scheme and the last `@`: a password may hold `/`, `?` or `#`; hiding a path's text too
/// is harmless), and so are a query and a fragment, which may carry a key.
pub(crate) fn shown_url(url: &str) -> String {
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    let shown = match url[rest_at..].rfind('@') {
        Some(at) => format!("{}(hidden){}", &url[..rest_at], &url[rest_at + at..]),
        None => url.to_string(),
    };
    match shown.find(['?', '#']) {
        Some(i) => format!("{}{}(hidden)", &shown[..i], &shown[i..=i]),
        None => shown,
    }
}

const PADDED: &str = "a value without spaces, tabs or line breaks at either end (HTTP drops them from what \
     Netdata sends, so it could never match)";
const CONTROL: &str = "a non-empty value without control characters (HTTP cannot carry them)";

/// The settings whose values an error message may quote: those that can hold no secret.
/// Any other key's value (a secret, an extra header, `server.public_url` or
/// `tunnel.command`, which may carry credentials, a misspelled key, a whole inline table) is
/// shown as `(hidden)`.
const SHOWN_VALUES: &[&str] = &[
    "server.listen",
    "server.path",
    "server.max_connections",
    "server.request_timeout_secs",
    "tls.cert",
    "tls.key",
    "tls.acme.enabled",
    "tls.acme.email",
    "tls.acme.domain",
    "tls.acme.directory_ca",
    "auth.client_certificate",
    "auth.client_ca",
    "auth.client_names",
    "auth.method",
    "auth.username",
    "auth.allow_unauthenticated",
    "auth.max_failures_per_minute",
    "notifications.enabled",
    "notifications.max_popups_per_minute",
    "notifications.min_severity",
    "notifications.quiet_hours",
    "notifications.quiet_hours_allow_critical",
    "store.retention_days",
    "tunnel.url_pattern",
];

/// Where a TOML error is, to name it: the key on the line that holds it (`line_no` itself,
/// or the line where the multi-line string `line_no` is inside of begins), in full, and its
/// value as written when it may be shown ([`SHOWN_VALUES`]).
struct ErrorKey<'a> {
    full: String,
    value: Option<&'a str>,
}

fn error_key(text: &str, line_no: usize) -> Option<ErrorKey<'_>> {
    // Lines by their byte offsets in the text itself, whatever their line endings.
    let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let line = |i: usize| -> &str {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        text.get(starts[i]..end).unwrap_or_default().trim_end_matches(['\n', '\r'])
    };
    let mut at = line_no.checked_sub(1).filter(|&i| i < starts.len())?;
    // Inside a multi-line string, the key is where the string begins.
    let prefix = &text[..starts[at]];
    let inside = prefix.matches("\"\"\"").count() % 2 == 1 || prefix.matches("\'\'\'").count() % 2 == 1;
    if inside {
        at = (0..at).rev().find(|&i| line(i).contains("\"\"\"") || line(i).contains("\'\'\'"))?;
    }
    let (key, value) = line(at).trim().split_once('=')?;
    let written = key.trim();
    // Spaces only around the dots of a dotted key or inside quotes: `this is = 1` is no key,
    // and naming it `thisis` would send the reader after a key they never wrote.
    let whole_parts = written
        .split('.')
        .map(str::trim)
        .all(|part| !part.is_empty() && (part.starts_with(['"', '\'']) || !part.contains(char::is_whitespace)));
    if !whole_parts {
        return None;
    }
    let bare = written.replace(['"', '\'', ' '], "");
    if bare.is_empty() || !bare.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return None;
    }
    // The table it is in: `[name]` or `[[name]]`, quotes, spaces and a comment aside.
    let header = (0..at).rev().map(line).map(str::trim).find(|l| l.starts_with('[')).unwrap_or("");
    let table = header.trim_start_matches('[').split(']').next().unwrap_or_default().replace(['"', '\'', ' '], "");
    let full = if table.is_empty() { bare } else { format!("{table}.{bare}") };
    let shown = !inside && SHOWN_VALUES.contains(&full.to_ascii_lowercase().as_str());
    let value = if shown { first_value(value) } else { None };
    Some(ErrorKey { full, value })
}

/// The value a key's line begins with (`rest` is what follows its `=`): one quoted string,
/// one bare word or number, or a list of such on the line; `None` when it is none of these.
/// Nothing after it is ever part of it: on `method = "bearer" token = "..."`, the secret
/// after the value belongs to another key.
fn first_value(rest: &str) -> Option<&str> {
    let rest = rest.trim_start();
    let end = match rest.chars().next()? {
        '"' | '\'' => quoted_end(rest)?,
        '[' => {
            // A list: its items, quoted or bare, up to its closing bracket.
            let mut at = 1;
            loop {
                let tail = &rest[at..];
                let skipped = tail.len() - tail.trim_start_matches([' ', '\t', ',']).len();
                at += skipped;
                match rest[at..].chars().next()? {
                    ']' => break at + 1,
                    '"' | '\'' => at += quoted_end(&rest[at..])?,
                    _ => {
                        let word = bare_word(&rest[at..]);
                        if word == 0 {
                            return None;
                        }
                        at += word;
                    }
                }
            }
        }
        _ => bare_word(rest),
    };
    Some(&rest[..end]).filter(|v| !v.is_empty())
}

/// The length of the quoted string `text` begins with, its quotes included.
fn quoted_end(text: &str) -> Option<usize> {
    let quote = text.chars().next()?;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quote == '"' => escaped = true,
            c if c == quote => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The length of the bare word (`lots`, `12`, `true`, `1e3`) `text` begins with.
fn bare_word(text: &str) -> usize {
    text.find(|c: char| c.is_whitespace() || matches!(c, ',' | '#' | ']' | '[' | '=' | '"' | '\'' | '{' | '}'))
        .unwrap_or(text.len())
}

/// serde's words for what a setting takes, in the config reference's words.
fn plain_words(message: &str) -> String {
    let message = [
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list, like [\"a\", \"b\"]"),
        ("expected path string", "expected a path in quotes"),
        ("expected a boolean", "expected true or false"),
        ("expected a map", "expected a table"),
    ]
    .iter()
    .fold(message.trim().to_string(), |m, (from, to)| m.replace(from, to));
    // A section (`[server]`, `[auth]`...) given a value or a list: serde names its type.
    if message.contains("expected struct Raw") {
        return "of the wrong type, expected a table: a [section] line with its settings below it".to_string();
    }
    message
}

/// The sections of the config file, as written in their `[section]` lines.
const SECTIONS: &[&str] = &["server", "tls", "tls.acme", "auth", "auth.headers", "notifications", "store", "tunnel"];

/// `[[section]]` (an array of tables) for one of [`SECTIONS`] on line `line_no`: its message.
fn array_of_section(text: &str, line_no: usize) -> Option<String> {
    let line = text.lines().nth(line_no.checked_sub(1)?)?.trim();
    let name = line.strip_prefix("[[")?.split("]]").next()?.replace(['"', '\'', ' '], "");
    SECTIONS
        .contains(&name.as_str())
        .then(|| format!("line {line_no}: [[{name}]]: [{name}] is one table, written with single brackets: [{name}]"))
}

impl RawConfig {
    /// Parses TOML text.
    pub fn from_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // "line 5: server.max_connections = \"lots\": invalid type: string \"lots\",
            // expected a whole number". A line is never quoted whole: it may be a secret
            // pasted on a line of its own.
            let what = plain_words(e.message());
            let message = match e.span() {
                Some(span) => {
                    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    match error_key(text, line_no) {
                        // An unknown key (often a misspelled one, like `tokne = "..."`) is
                        // named without its value: the value may be the secret meant for it.
                        Some(k) if what.starts_with("unknown field") => format!("line {line_no}: {}: {what}", k.full),
                        Some(ErrorKey { full, value: Some(value), .. }) => {
                            format!("line {line_no}: {full} = {value}: {what}")
                        }
                        // A value that may be a secret is never shown, not even a mistyped
                        // one, and serde's message may quote it when it is of the wrong type.
                        Some(k) if what.starts_with("invalid type") => {
                            let expected = what.rsplit_once(", expected ").map_or("another type", |(_, e)| e);
                            format!("line {line_no}: {} = (hidden): of the wrong type, expected {expected}", k.full)
                        }
                        Some(k) => format!("line {line_no}: {} = (hidden): {what}", k.full),
                        None => array_of_section(text, line_no).unwrap_or_else(|| format!("line {line_no}: {what}")),
                    }
                }
                None => what,
            };
            ConfigError::Syntax { path: path.to_path_buf(), message }
        })
    }

    /// Validates every setting; relative paths are taken from `base_dir`. Every section is
    /// checked, so that one mistake does not hide the next: with several, the error is
    /// [`ConfigError::Several`], one per setting at fault, section by section.
    pub fn validate(self, base_dir: &Path) -> Result<Config, ConfigError> {
        let resolve = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
        let mut problems = Vec::new();
        // [tls.acme] takes its domain from server.public_url: checked when that one is right.
        let mut raw_server = self.server;
        let url = public_url(raw_server.public_url.take());
        let url_for_tls = url.as_ref().ok().cloned();
        let server = validate_server(raw_server, url).map_err(|e| problems.extend(e)).ok();
        // When server.public_url is wrong, and named as such, [tls] is still checked, but the
        // ACME domain it would have given is not missing by another mistake.
        let url_right = url_for_tls.is_some();
        let tls = validate_tls(self.tls, url_for_tls.flatten().as_ref(), &resolve)
            .map_err(|e| {
                let by_the_url = |e: &ConfigError| {
                    matches!(e, ConfigError::Invalid { key, value, .. } if key == "tls.acme.domain" && value == "(missing)")
                };
                problems.extend(e.into_iter().filter(|e| url_right || !by_the_url(e)));
            })
            .ok();
        let auth = validate_auth(self.auth, &resolve).map_err(|e| problems.extend(e)).ok();
        let notifications = validate_notifications(self.notifications).map_err(|e| problems.extend(e)).ok();
        let store = keep(
            &mut problems,
            int_in("store.retention_days", self.store.retention_days, 90, 0, 36_500)
                .map(|days| StoreConfig { retention_days: days as u32 }),
        );
        let tunnel = keep(&mut problems, validate_tunnel(self.tunnel));
        match (server, tls, auth, notifications, store, tunnel) {
            (Some(server), Some(tls), Some(auth), Some(notifications), Some(store), Some(tunnel)) => {
                Ok(Config { server, tls, auth, notifications, store, tunnel })
            }
            _ => Err(ConfigError::from_problems(problems)),
        }
    }
}

/// The value of a check that passed; a failed one's error is added to `problems`.
fn keep<T>(problems: &mut Vec<ConfigError>, checked: Result<T, ConfigError>) -> Option<T> {
    checked.map_err(|e| problems.push(e)).ok()
}

/// `[server]`, with its `public_url` already checked (by [`public_url`]).
fn validate_server(s: RawServer, url: Result<Option<Uri>, ConfigError>) -> Result<ServerConfig, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let listen = keep(&mut problems, listen_address(s.listen));
    let path = keep(&mut problems, webhook_path(s.path));
    let public_url = keep(&mut problems, url);
    let max_connections = keep(&mut problems, int_in("server.max_connections", s.max_connections, 256, 1, 100_000));
    let request_timeout =
        keep(&mut problems, int_in("server.request_timeout_secs", s.request_timeout_secs, 10, 1, 300));
    match (listen, path, public_url, max_connections, request_timeout) {
        (Some(listen), Some(path), Some(public_url), Some(max_connections), Some(request_timeout)) => {
            Ok(ServerConfig {
                listen,
                path,
                public_url,
                max_connections: max_connections as usize,
                request_timeout: std::time::Duration::from_secs(request_timeout as u64),
            })
        }
        _ => Err(problems),
    }
}

fn listen_address(v: Option<String>) -> Result<SocketAddr, ConfigError> {
    let text = v.unwrap_or_else(|| "127.0.0.1:8443".into());
    text.trim().parse().map_err(|_| {
        ConfigError::invalid(
            "server.listen",
            format!("{text:?}"),
            "an IP address and port, like \"127.0.0.1:8443\" or \"[::1]:8443\"",
        )
    })
}

fn webhook_path(v: Option<String>) -> Result<String, ConfigError> {
    let path = v.unwrap_or_else(|| "/".into());
    // Plain characters only: the router reads "{name}" and "*" as captures (and refuses a
    // segment starting with ":"), and a client sends "." and ".." segments resolved.
    let plain = path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'));
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    // Only the last may be empty: "/" itself, or a trailing slash.
    let segments_ok = segments
        .iter()
        .enumerate()
        .all(|(i, seg)| (!seg.is_empty() || i + 1 == segments.len()) && *seg != "." && *seg != "..");
    if !path.starts_with('/') || !plain || !segments_ok {
        return Err(ConfigError::invalid(
            "server.path",
            format!("{path:?}"),
            "a URL path starting with \"/\", of letters, digits, -, _, . and ~ between single slashes (no . or .. segments), like \"/\" or \"/netdata\"",
        ));
    }
    Ok(path)
}

fn public_url(v: Option<String>) -> Result<Option<Uri>, ConfigError> {
    let Some(u) = v.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        ConfigError::invalid(
            "server.public_url",
            format!("{:?}", shown_url(&u)),
            "an https:// URL with a host and no user name, password, query or #fragment, like \"https://name.ngrok.app/\" (Netdata only posts to HTTPS; Basic credentials go in auth.username and auth.password)",
        )
    };
    let uri: Uri = u.trim().parse().map_err(|_| bad())?;
    // No user name or password in it (it is shown and pasted into Netdata), and a port, if
    // any, that is one.
    let userinfo = uri.authority().is_some_and(|a| a.as_str().contains('@'));
    // Anything after the host is a ":port" (the user info is refused above).
    let port_text = uri.authority().is_some_and(|a| a.as_str().len() > a.host().len());
    let bad_port = port_text && uri.port_u16().is_none_or(|p| p == 0);
    if uri.scheme_str() != Some("https")
        || uri.host().is_none_or(str::is_empty)
        || uri.query().is_some()
        // http's URI parser drops a fragment: the URL shown would not be the one written.
        || u.contains('#')
        || userinfo
        || bad_port
    {
        return Err(bad());
    }
    Ok(Some(uri))
}

fn validate_tls(
    t: RawTls,
    public_url: Option<&Uri>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<TlsConfig, Vec<ConfigError>> {
    // [tls.acme] is on when it says so, or when anything in it is set: an empty table, or
    // keys left empty (as an editor or a cleared form field may leave them), turn nothing on.
    let acme_on = |a: &RawAcme| {
        let set = |v: Option<&str>| v.is_some_and(|v| !v.trim().is_empty());
        a.enabled.unwrap_or(
            set(a.email.as_deref())
                || set(a.domain.as_deref())
                || set(a.directory.as_deref())
                || set(a.directory_ca.as_deref().map(|p| p.to_str().unwrap_or("?"))),
        )
    };
    // An empty path is no path (as the Settings form leaves a field it clears).
    let given = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().to_string_lossy().trim().is_empty());
    let (cert, key) = (given(t.cert), given(t.key));
    let acme = match t.acme.filter(acme_on) {
        None => None,
        Some(a) => Some(validate_acme(a, public_url, resolve)?),
    };
    let one = |e: ConfigError| vec![e];
    Ok(match acme {
        Some(acme) if cert.is_none() && key.is_none() => TlsConfig::Acme(acme),
        Some(_) => return Err(one(ConfigError::invalid(
            "tls.acme",
            "(set with tls.cert/tls.key)",
            "either [tls.acme] (Alertray obtains the certificate) or tls.cert and tls.key (your own files), not both",
        ))),
        None => {
            match (cert, key) {
                (None, None) => TlsConfig::SelfSigned,
                (Some(cert), Some(key)) => TlsConfig::Files { cert: resolve(cert), key: resolve(key) },
                (Some(_), None) => {
                    return Err(one(ConfigError::invalid(
                        "tls.key",
                        "(missing)",
                        "a PEM private key path, since tls.cert is set (or neither, for a self-signed certificate)",
                    )))
                }
                (None, Some(_)) => return Err(one(ConfigError::invalid(
                    "tls.cert",
                    "(missing)",
                    "a PEM certificate chain path, since tls.key is set (or neither, for a self-signed certificate)",
                ))),
            }
        }
    })
}

/// `[auth]`: its parts are checked on their own, so each mistake in it is named.
fn validate_auth(a: RawAuth, resolve: &dyn Fn(PathBuf) -> PathBuf) -> Result<AuthConfig, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let client = keep(&mut problems, client_certificates(&a, resolve));
    let method = auth_method(&a).map_err(|e| problems.extend(e)).ok();
    let headers = extra_headers(&a).map_err(|e| problems.extend(e)).ok();
    let max_failures =
        keep(&mut problems, int_in("auth.max_failures_per_minute", a.max_failures_per_minute, 10, 1, 10_000));
    let (Some((client_certificate, client_ca, client_names)), Some(method), Some(headers), Some(max_failures)) =
        (client, method, headers, max_failures)
    else {
        return Err(problems);
    };
    let auth = AuthConfig {
        client_certificate,
        client_ca,
        client_names,
        method,
        challenge_secret: a.challenge_secret.filter(|s| !s.expose().is_empty()),
        headers,
        max_failures_per_minute: max_failures as u32,
    };
    if !auth.has_authentication() && !a.allow_unauthenticated.unwrap_or(false) {
        return Err(vec![ConfigError::invalid(
            "auth",
            "(no authentication)",
            "at least one of: auth.client_certificate = \"required\", auth.method = \"basic\" or \"bearer\", or an [auth.headers] entry. \
             The receiver faces the internet; set auth.allow_unauthenticated = true only if something else protects it",
        )]);
    }
    Ok(auth)
}

/// `auth.client_certificate`, `auth.client_ca` and `auth.client_names`.
fn client_certificates(
    a: &RawAuth,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<(ClientCertMode, ClientCa, Vec<String>), ConfigError> {
    let client_certificate = match a.client_certificate.as_deref().map(str::trim) {
        None => ClientCertMode::Optional,
        Some(w) => match w.to_ascii_lowercase().as_str() {
            "required" => ClientCertMode::Required,
            "optional" => ClientCertMode::Optional,
            "off" => ClientCertMode::Off,
            _ => {
                return Err(ConfigError::invalid(
                    "auth.client_certificate",
                    format!("{w:?}"),
                    "\"required\", \"optional\" or \"off\"",
                ))
            }
        },
    };
    let client_ca = match a.client_ca.as_deref().map(str::trim) {
        None => ClientCa::Netdata,
        Some(word) if word.eq_ignore_ascii_case("netdata") => ClientCa::Netdata,
        Some("") => {
            return Err(ConfigError::invalid(
                "auth.client_ca",
                "\"\"",
                "\"netdata\" (the built-in Netdata Root CA) or the path of a PEM bundle",
            ))
        }
        Some(p) => ClientCa::File(resolve(PathBuf::from(p))),
    };
    let client_names: Vec<String> = a
        .client_names
        .clone()
        .unwrap_or_else(|| DEFAULT_CLIENT_NAMES.iter().map(|s| s.to_string()).collect())
        .into_iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if client_certificate != ClientCertMode::Off
        && (client_names.is_empty() || client_names.iter().any(String::is_empty))
    {
        return Err(ConfigError::invalid(
            "auth.client_names",
            format!("{client_names:?}"),
            "a list of non-empty names, like [\"app.netdata.cloud\", \"api.netdata.cloud\"]",
        ));
    }
    Ok((client_certificate, client_ca, client_names))
}

/// `auth.method`, with the credentials it needs: each one missing or wrong is named.
fn auth_method(a: &RawAuth) -> Result<AuthMethod, Vec<ConfigError>> {
    let method_word = a.method.as_deref().map(str::trim).unwrap_or("none").to_ascii_lowercase();
    match method_word.as_str() {
        "none" => Ok(AuthMethod::None),
        "basic" => {
            let username = match a.username.clone().filter(|u| !u.is_empty()) {
                None => {
                    Err(ConfigError::invalid("auth.username", "(missing)", "a user name when auth.method = \"basic\""))
                }
                Some(u) if u.contains(':') => Err(ConfigError::invalid(
                    "auth.username",
                    format!("{u:?}"),
                    "a user name without \":\" (Basic auth cannot carry one)",
                )),
                Some(u) => Ok(u),
            };
            let password = required_secret("auth.password", a.password.clone(), "basic");
            match (username, password) {
                (Ok(username), Ok(password)) => Ok(AuthMethod::Basic { username, password }),
                (username, password) => Err(username.err().into_iter().chain(password.err()).collect()),
            }
        }
        "bearer" => {
            let token = required_secret("auth.token", a.token.clone(), "bearer").map_err(|e| vec![e])?;
            if padded(&token) {
                return Err(vec![ConfigError::invalid("auth.token", "(hidden)", PADDED)]);
            }
            if HeaderValue::from_str(token.expose()).is_err() {
                return Err(vec![ConfigError::invalid("auth.token", "(hidden)", CONTROL)]);
            }
            Ok(AuthMethod::Bearer { token })
        }
        other => {
            Err(vec![ConfigError::invalid("auth.method", format!("{other:?}"), "\"none\", \"basic\" or \"bearer\"")])
        }
    }
}

/// `[auth.headers]`.
fn extra_headers(a: &RawAuth) -> Result<Vec<(HeaderName, Secret)>, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let mut headers = Vec::new();
    for (name, value) in a.headers.clone().unwrap_or_default() {
        if let Some(h) = keep(&mut problems, extra_header(&name, value)) {
            // Header names are the same in any case: two such entries could never both match.
            if headers.iter().any(|(seen, _): &(HeaderName, Secret)| *seen == h.0) {
                problems.push(ConfigError::invalid(
                    &format!("auth.headers.{name}"),
                    header_name_shown(&name),
                    "one entry per header: names are the same in any case, and a request carries one value",
                ));
                continue;
            }
            headers.push(h);
        }
    }
    if problems.is_empty() {
        Ok(headers)
    } else {
        Err(problems)
    }
}

/// How an `[auth.headers]` entry refused for its name shows: the name, said to be one (the
/// entry's value is never shown).
fn header_name_shown(name: &str) -> String {
    format!("(the header name {name:?})")
}

/// One `[auth.headers]` entry.
fn extra_header(name: &str, value: Secret) -> Result<(HeaderName, Secret), ConfigError> {
    let key = format!("auth.headers.{name}");
    let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        ConfigError::invalid(&key, header_name_shown(name), "a valid HTTP header name (letters, digits, - and _)")
    })?;
    // Alertray's own "Check connection" probe is told by its header: a delivery carrying it
    // would be answered without being stored.
    if matches!(header.as_str(), "authorization" | "host" | "content-length" | "content-type" | "transfer-encoding")
        || header.as_str() == crate::check::CHECK_HEADER
    {
        return Err(ConfigError::invalid(
            &key,
            header_name_shown(name),
            "a header other than Authorization, Host, Content-Length, Content-Type, Transfer-Encoding or X-Alertray-Check",
        ));
    }
    if padded(&value) {
        return Err(ConfigError::invalid(&key, "(hidden)", PADDED));
    }
    if value.expose().is_empty() || HeaderValue::from_str(value.expose()).is_err() {
        return Err(ConfigError::invalid(&key, "(hidden)", CONTROL));
    }
    Ok((header, value))
}

fn validate_notifications(n: RawNotifications) -> Result<NotificationsConfig, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let max_popups =
        keep(&mut problems, int_in("notifications.max_popups_per_minute", n.max_popups_per_minute, 10, 1, 1000));
    let min_severity = keep(&mut problems, min_severity(n.min_severity));
    let quiet_hours = keep(&mut problems, quiet_hours(n.quiet_hours, n.quiet_hours_allow_critical));
    match (max_popups, min_severity, quiet_hours) {
        (Some(max_popups), Some(min_severity), Some(quiet_hours)) => Ok(NotificationsConfig {
            enabled: n.enabled.unwrap_or(true),
            max_popups_per_minute: max_popups as u32,
            min_severity,
            quiet_hours,
        }),
        _ => Err(problems),
    }
}

fn min_severity(v: Option<String>) -> Result<crate::policy::MinSeverity, ConfigError> {
    use crate::policy::MinSeverity;
    let Some(w) = v.map(|w| w.trim().to_ascii_lowercase()) else {
        return Ok(MinSeverity::Clear);
    };
    match w.as_str() {
        "clear" => Ok(MinSeverity::Clear),
        "warning" => Ok(MinSeverity::Warning),
        "critical" => Ok(MinSeverity::Critical),
        _ => Err(ConfigError::invalid(
            "notifications.min_severity",
            format!("{w:?}"),
            "\"clear\" (every popup), \"warning\" (no recovery popups) or \"critical\"",
        )),
    }
}

fn quiet_hours(
    v: Option<String>,
    allow_critical: Option<bool>,
) -> Result<Option<crate::policy::QuietHours>, ConfigError> {
    let Some(q) = v.as_deref().map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        ConfigError::invalid("notifications.quiet_hours", format!("{q:?}"), "two 24-hour times, like \"22:00-07:00\"")
    };
    let (from, to) = q.split_once('-').ok_or_else(bad)?;
    let t = |s: &str| chrono::NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
    Ok(Some(crate::policy::QuietHours { from: t(from)?, to: t(to)?, allow_critical: allow_critical.unwrap_or(true) }))
}

fn validate_acme(
    a: RawAcme,
    public_url: Option<&Uri>,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<crate::acme::AcmeConfig, Vec<ConfigError>> {
    let mut problems = Vec::new();
    let domain = match a.domain.map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()) {
        Some(d) => Some(d),
        None => public_url.and_then(|u| u.host()).map(str::to_ascii_lowercase),
    };
    let domain = match domain {
        None => Err(ConfigError::invalid(
            "tls.acme.domain",
            "(missing)",
            "the public host name to get a certificate for, like \"alerts.example.com\" (or set server.public_url)",
        )),
        Some(domain) => {
            let is_name = domain.parse::<std::net::IpAddr>().is_err()
                && domain.contains('.')
                && domain.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if is_name {
                Ok(domain)
            } else {
                Err(ConfigError::invalid(
                    "tls.acme.domain",
                    format!("{domain:?}"),
                    "a DNS host name with a dot, like \"alerts.example.com\" (ACME CAs do not certify IP addresses or bare names)",
                ))
            }
        }
    };
    let domain = keep(&mut problems, domain);
    let email = match a.email.map(|e| e.trim().to_string()).filter(|e| !e.is_empty()) {
        None => Ok(None),
        Some(e) if e.contains('@') && !e.contains(char::is_whitespace) && !e.starts_with('@') && !e.ends_with('@') => {
            Ok(Some(e))
        }
        Some(e) => {
            Err(ConfigError::invalid("tls.acme.email", format!("{e:?}"), "an e-mail address, like \"you@example.com\""))
        }
    };
    let email = keep(&mut problems, email);
    let directory = a
        .directory
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| crate::acme::LETS_ENCRYPT.to_string());
    let ok = directory.parse::<Uri>().is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
    if !ok {
        problems.push(ConfigError::invalid(
            "tls.acme.directory",
            format!("{:?}", shown_url(&directory)),
            format!("an https:// ACME directory URL, like \"{}\"", crate::acme::LETS_ENCRYPT),
        ));
    }
    let directory_ca = a.directory_ca.filter(|p| !p.as_os_str().to_string_lossy().trim().is_empty()).map(resolve);
    match (domain, email) {
        (Some(domain), Some(email)) if problems.is_empty() => {
            Ok(crate::acme::AcmeConfig { directory, email, domain, directory_ca })
        }
        _ => Err(problems),
    }
}

fn validate_tunnel(t: RawTunnel) -> Result<Option<crate::tunnel::TunnelConfig>, ConfigError> {
    // Checked with or without a command, so that one set later does not fail on it then.
    let url_pattern = match t.url_pattern.filter(|p| !p.trim().is_empty()) {
        None => None,
        Some(p) => {
            let re = regex::Regex::new(&p).ok().filter(|re| re.captures_len() >= 2).ok_or_else(|| {
                ConfigError::invalid(
                    "tunnel.url_pattern",
                    format!("{p:?}"),
                    "a regular expression whose first group captures the public address, like \"url=(https://\\\\S+)\"",
                )
            })?;
            Some(re)
        }
    };
    let Some(command) = t.command.map(|c| c.trim().to_string()).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let argv = shell_words::split(&command).map_err(|e| {
        // Only the program is shown, as in the tunnel's log lines: its arguments may hold a
        // token (ngrok --authtoken).
        let program = command.split_whitespace().find(|w| !w.contains('=')).unwrap_or_default();
        ConfigError::invalid(
            "tunnel.command",
            format!("{program:?} ..."),
            format!("a command line quoted like in a shell ({e}), like \"cloudflared tunnel --url https://localhost:{{port}} --no-tls-verify\""),
        )
    })?;
    Ok(Some(crate::tunnel::TunnelConfig { command, argv, url_pattern }))
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::reading(path, source))?;
        Config::from_file_bytes(path, &bytes)
    }

    /// Parses and validates what the config file at `path` holds (`bytes`, read already).
    pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
        RawConfig::from_toml(utf8_text(path, bytes)?, path)?.validate(config_base(path))
    }

    /// Parses and validates TOML text (relative paths are taken from the current directory).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        RawConfig::from_toml(text, Path::new("(text)"))?.validate(Path::new("."))
    }
}

/// The commented config `alertray config init` writes, with fresh secrets.
pub fn template(token: &Secret, challenge_secret: &Secret) -> String {
    format!(
        r#"# Alertray configuration. Every key is optional; the values shown are the defaults
# unless said otherwise. `alertray config check` validates this file.

[server]
# Where the HTTPS receiver listens. Expose this port through your tunnel.
listen = "127.0.0.1:8443"
# The webhook's path; every other path answers 404.
path = "/"
# The public HTTPS URL your tunnel gives you (shown in the connect guide).
# public_url = "https://example.ngrok.app/"
# At most this many connections at once.
max_connections = 256
# Seconds allowed for a TLS handshake, the request headers, or the body.
request_timeout_secs = 10

[tls]
# PEM certificate chain and key. Leave both out for a self-signed certificate,
# generated once and kept in the data dir. Renewed files are picked up without a restart.
# cert = "/path/fullchain.pem"
# key = "/path/privkey.pem"

# Or let Alertray obtain and renew a certificate for your public host name from Let's
# Encrypt (TLS-ALPN-01 on the receiver's own port: needs a tunnel that passes TLS through
# and forwards the public port 443 to server.listen).
# [tls.acme]
# email = "you@example.com"
# domain = "alerts.example.com"      # default: the host of server.public_url
# directory = "https://acme-v02.api.letsencrypt.org/directory"
# directory_ca = "/path/ca.pem"      # trust this CA for the directory (test CAs like Pebble)

[auth]
# Mutual TLS with Netdata's client certificate: "required", "optional" or "off".
# "optional" checks a certificate when one is presented. Use "off" behind tunnels that
# end TLS at their edge (cloudflared, ngrok http).
client_certificate = "optional"
# "netdata" (the built-in Netdata Root CA) or the path of a PEM bundle.
client_ca = "netdata"
# Names (subject CN or DNS SAN) the client certificate may carry.
client_names = ["app.netdata.cloud", "api.netdata.cloud"]
# "none", "basic" (username + password) or "bearer" (token).
method = "bearer"
# username = "netdata"
# password = ""
token = "{token}"
# Paste this into Netdata Cloud's "Challenge secret" field.
challenge_secret = "{challenge}"
# Start even with no authentication at all (not recommended).
allow_unauthenticated = false
# Wrong credentials allowed per peer address per minute before it gets 429.
max_failures_per_minute = 10

# Headers every POST must carry, as set in Netdata's "Extra headers".
[auth.headers]
# X-Api-Key = "..."

[notifications]
# Desktop popups on or off (alerts are stored and listed either way).
enabled = true
# Beyond this many popups a minute the rest fold into one summary popup.
max_popups_per_minute = 10
# The least severe popup: "clear" (everything), "warning" (no recovery popups) or "critical".
min_severity = "clear"
# No popups during these hours (local time), e.g. "22:00-07:00".
# quiet_hours = "22:00-07:00"
# During quiet hours, still pop up Critical alerts and unreachable nodes.
quiet_hours_allow_critical = true

[store]
# Days of history to keep (0 keeps everything).
retention_days = 90

[tunnel]
# A tunnel for Alertray to start with the receiver, restart when it exits and stop on quit.
# {{port}} is replaced by the port of server.listen. Its output is read for the public URL
# (bore, ngrok, cloudflared and Tailscale Funnel are recognised), which then replaces
# server.public_url.
# command = "cloudflared tunnel --url https://localhost:{{port}} --no-tls-verify"
# A regular expression whose first group captures the public address, for other tunnels.
# url_pattern = "forwarding to (\\S+)"
"#,
        token = token.expose(),
        challenge = challenge_secret.expose()
    )
}

/// Writes a file readable by its owner only (0600 on Unix), refusing to overwrite.
pub fn write_private_new(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        crate::store::create_private_dir(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Validates `raw` and writes it to `path` (mode 0600), replacing the file atomically.
/// Comments in the old file are not kept. An old file that does not load (the Settings form
/// then started from defaults, without its secrets) is kept beside it first, as
/// [`unreadable_backup`] names it.
pub fn save(path: &Path, raw: &RawConfig) -> Result<Config, ConfigError> {
    let cfg = raw.clone().validate(config_base(path))?;
    write(path, raw)?;
    Ok(cfg)
}

/// Whether two versions of a config file hold the same settings, whatever their comments,
/// spacing and order (`false` when either does not load as TOML).
pub fn same_settings(a: &[u8], b: &[u8]) -> bool {
    let settings = |text: &[u8]| {
        let raw: RawConfig = toml::from_str(std::str::from_utf8(text).ok()?).ok()?;
        toml::Value::try_from(raw).ok()
    };
    matches!((settings(a), settings(b)), (Some(a), Some(b)) if a == b)
}

/// The folder relative paths in the config file at `path` start from.
pub fn config_base(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Writes `raw`, already validated, as the config file at `path` (see [`save`]); returns
/// what the file holds now.
pub fn write(path: &Path, raw: &RawConfig) -> Result<String, ConfigError> {
    let text = toml::to_string_pretty(raw).map_err(|e| ConfigError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    if path.exists() && load_raw(path).is_err() {
        let backup = unreadable_backup(path);
        // A file that cannot even be read (its permissions) is not replaced either.
        let old = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let old = String::from_utf8_lossy(&old);
        write_private_replace(&backup, &old).map_err(|source| ConfigError::Write { path: backup.clone(), source })?;
        tracing::warn!("the config file did not load; kept it as {} before saving the new one", backup.display());
    }
    let text = format!("# Written by Alertray's Settings window.\n{text}");
    write_private_replace(path, &text).map_err(|source| ConfigError::Write { path: path.to_path_buf(), source })?;
    Ok(text)
}

/// Where [`save`] keeps a config file that did not load: `config.toml.unreadable`.
pub fn unreadable_backup(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".unreadable");
    PathBuf::from(name)
}

/// Writes a file readable by its owner only (0600 on Unix), replacing it atomically.
pub fn write_private_replace(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_private_new(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path))
}

/// Reads a config file as written, without validating it.
pub fn load_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::reading(path, source))?;
    RawConfig::from_toml(utf8_text(path, &bytes)?, path)
}

/// The text of the config file at `path` (`bytes`, read already); one that is not UTF-8 is
/// refused, named by its line and key, as a syntax error is (its bytes are never shown).
fn utf8_text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, ConfigError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = &bytes[..e.valid_up_to()];
        let line_no = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let lossy = String::from_utf8_lossy(bytes);
        let key = error_key(&lossy, line_no).map(|k| format!("{}: ", k.full)).unwrap_or_default();
        ConfigError::Syntax {
            path: path.to_path_buf(),
            message: format!("line {line_no}: {key}not UTF-8 text (save the file as UTF-8)"),
        }
    })
}

/// What can be read of a config file that [`load_raw`] refuses for a value of the wrong type
/// or an unknown key: every other setting, so that the Settings form shows them rather than
/// the defaults. `None` when the file is not TOML at all, or cannot be read.
pub fn salvage_raw(path: &Path) -> Option<RawConfig> {
    let mut text = std::fs::read_to_string(path).ok()?;
    let mut table: toml::Table = text.parse().ok()?;
    // One setting dropped per round, the one the error names; a file has few settings.
    for _ in 0..64 {
        let e = match RawConfig::from_toml(&text, path) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let ConfigError::Syntax { .. } = e else { return None };
        let toml_error = toml::from_str::<RawConfig>(&text).err()?;
        let line_no = text[..toml_error.span()?.start.min(text.len())].matches('\n').count() + 1;
        let key = error_key(&text, line_no)?.full;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop()?;
        let mut at = &mut table;
        for p in parts {
            at = at.get_mut(p)?.as_table_mut()?;
        }
        at.remove(last)?;
        text = toml::to_string(&table).ok()?;
    }
    None
}

/// Writes a commented config with fresh secrets to `path` unless a file is already there;
/// `true` when it wrote one (the first run).
pub fn init_if_missing(path: &Path) -> Result<bool, ConfigError> {
    if path.exists() {
        return Ok(false);
    }
    init(path).map(|()| true)
}

/// Writes a commented config with fresh secrets to `path` (mode 0600).
pub fn init(path: &Path) -> Result<(), ConfigError> {
    let text = template(&generate_secret(), &generate_secret());
    write_private_new(path, &text).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists if path.symlink_metadata().is_ok() => {
            ConfigError::Exists { path: path.to_path_buf() }
        }
        _ => ConfigError::Write { path: path.to_path_buf(), source },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_settings_are_told_apart_from_comments_and_layout() {
        let a = b"[server]\nlisten = \"127.0.0.1:8443\"\n[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n";
        let reordered = b"# edited by hand\n[auth]\ntoken = 't'   # the token\nmethod = \"bearer\"\n\n[server]\nlisten = \"127.0.0.1:8443\"\n";
        assert!(super::same_settings(a, reordered));
        let other = b"[server]\nlisten = \"127.0.0.1:8443\"\n[auth]\nmethod = \"bearer\"\ntoken = \"u\"\n";
        assert!(!super::same_settings(a, other));
        assert!(!super::same_settings(a, b"[server\n"));
        assert!(!super::same_settings(b"[server\n", b"[server\n"), "what does not load is never the same");
    }

    #[test]
    fn saving_over_a_file_that_does_not_load_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let old = "[auth]\nmethod = \"bearer\"\ntoken = \"the-real-token\"\nlisen = 1\n";
        std::fs::write(&path, old).unwrap();
        assert!(load_raw(&path).is_err());
        let mut raw = RawConfig::default();
        raw.auth.method = Some("bearer".into());
        raw.auth.token = Some(Secret::new("new-token"));
        save(&path, &raw).unwrap();
        let backup = unreadable_backup(&path);
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(load_raw(&path).is_ok());
        // Saving over a file that loads keeps no copy.
        std::fs::remove_file(&backup).unwrap();
        save(&path, &raw).unwrap();
        assert!(!backup.exists());
    }

    #[test]
    fn the_settings_of_a_file_with_a_bad_value_are_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = "[server]\nlisten = \"127.0.0.1:9443\"\nmax_connections = \"lots\"\n\
                    [auth] # ours\nmethod = \"bearer\"\ntoken = \"keep-me\"\ntokne = \"typo\"\n\
                    [notifications]\nquiet_hours = 5\n";
        std::fs::write(&path, text).unwrap();
        assert!(load_raw(&path).is_err());
        let raw = salvage_raw(&path).expect("salvaged");
        assert_eq!(raw.server.listen.as_deref(), Some("127.0.0.1:9443"));
        assert_eq!(raw.server.max_connections, None, "the bad value is dropped");
        assert_eq!(raw.auth.method.as_deref(), Some("bearer"));
        assert_eq!(raw.auth.token.as_ref().map(|t| t.expose().to_string()).as_deref(), Some("keep-me"));
        assert_eq!(raw.notifications.quiet_hours, None);
        // Not TOML at all: nothing to salvage.
        std::fs::write(&path, "[server\nlisten = ").unwrap();
        assert!(salvage_raw(&path).is_none());
    }

    #[test]
    fn a_syntax_error_on_a_secret_line_does_not_show_the_secret() {
        for (text, secret, key) in [
            ("[auth]\nmethod = \"bearer\"\ntoken = \"hunter2-super-secret\n", "hunter2-super-secret", "token"),
            ("[auth]\nmethod = \"basic\"\npassword = 12345678\n", "12345678", "password"),
            ("[auth.headers]\nX-Api-Key = 987654321\n", "987654321", "X-Api-Key"),
            ("[auth]\nheaders.X-Key = 55555555\n", "55555555", "headers.X-Key"),
            ("auth.challenge_secret = 31337313\n", "31337313", "auth.challenge_secret"),
            ("[auth]\npassword = 12345678  # old pw\n", "12345678", "password"),
            ("[auth]\ntoken = 'abc-secret-77\n", "abc-secret-77", "token"),
            ("[auth]\nheaders = { X-Api-Key = 987654 }\n", "987654", "headers"),
            ("auth = { token = 123123123 }\n", "123123123", "auth"),
        ] {
            let err = RawConfig::from_toml(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains(&format!("{key} = (hidden)")), "{err}");
        }
        // A misspelled key is named without its value, which may be the secret meant for it.
        let err = RawConfig::from_toml("[auth]\ntokne = \"my-secret-value\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("line 2: auth.tokne: unknown field `tokne`"), "{err}");
        assert!(!err.to_string().contains("my-secret-value"), "{err}");
        // Other settings are named in full, with their value as written and what they take.
        let err = RawConfig::from_toml("[server]\nmax_connections = \"lots\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("line 2: server.max_connections = \"lots\": invalid type"), "{err}");
        assert!(err.to_string().contains("expected a whole number"), "{err}");
        // The rest of a multi-line secret, a URL's password, a tunnel's token, and a line that
        // is no setting at all (a token pasted on its own) are not quoted either.
        for (text, secret) in [
            ("[auth]\ntoken = \"\"\"SECRETMLC\nSECRETMLD\"\"\" junk\n", "SECRETML"),
            ("[server]\npublic_url = \"https://user:SECRETPW@x.example/\" junk\n", "SECRETPW"),
            ("[tunnel]\ncommand = \"ngrok http 8443 --authtoken SECRETTK\" junk\n", "SECRETTK"),
            ("[auth]\nmethod = \"bearer\"\nSECRETLN-pasted-alone\n", "SECRETLN"),
            // A comment or quotes in a table's header, an inline table, CRLF line ends, a
            // misspelled secret's key: none of them shows what may be a secret.
            ("[tunnel] # ngrok\ncommand = \"ngrok http 8443 --authtoken SECRETCM\" junk\n", "SECRETCM"),
            ("['tunnel']\ncommand = \"ngrok http 8443 --authtoken SECRETQT\" junk\n", "SECRETQT"),
            ("[server] # x\npublic_url = https://u:SECRETUQ@h/\n", "SECRETUQ"),
            ("[auth] # x\nheaders = { X-Key = 12345 }\n", "12345"),
            ("server = { public_url = \"https://u:SECRETIT@h/\", max_connections = \"lots\" }\n", "SECRETIT"),
            ("[server]\r\nlisten = \"x\"\r\n[tunnel]\r\ncommand = \"\"\"\r\nngrok --authtoken=SECRETCR\"\"\" junk\r\n", "SECRETCR"),
            ("[auth]\nbearer_token = SECRETMS\n", "SECRETMS"),
        ] {
            let err = RawConfig::from_toml(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains("line "), "{err}");
        }
        // A shown setting's value is shown alone: a secret written after it on its line (two
        // settings run together) stays out of the message.
        for (text, secret, shown) in [
            ("[auth]\nmethod = \"bearer\" token = \"SECRETRT\"\n", "SECRETRT", "auth.method = \"bearer\":"),
            (
                "[auth]\nclient_certificate = \"off\", token = \"SECRETCO\"\n",
                "SECRETCO",
                "client_certificate = \"off\":",
            ),
            (
                "[notifications]\nmin_severity = \"warning\"; password = \"SECRETSC\"\n",
                "SECRETSC",
                "min_severity = \"warning\":",
            ),
            ("[auth]\nmethod = 'basic' password = 'SECRETLQ'\n", "SECRETLQ", "auth.method = 'basic':"),
            ("[server]\nmax_connections = 12 token = SECRETBW\n", "SECRETBW", "server.max_connections = 12:"),
            ("[auth]\nclient_names = [\"a\", token = \"SECRETLI\"]\n", "SECRETLI", "auth.client_names = (hidden)"),
            (
                "[auth]\nclient_names = [\"a\", \"b\"] token = \"SECRETLT\"\n",
                "SECRETLT",
                "client_names = [\"a\", \"b\"]:",
            ),
        ] {
            let err = RawConfig::from_toml(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(!err.contains(secret), "{err}");
            assert!(err.contains(shown), "{err}");
        }
        assert_eq!(first_value(" \"a \\\" b\" x"), Some("\"a \\\" b\""));
        assert_eq!(first_value(" [1, 'x]', \"y\"] z"), Some("[1, 'x]', \"y\"]"));
        assert_eq!(first_value(" \"unclosed"), None);
        assert_eq!(first_value(" [\"a\", b = 1]"), None);
        // A line that is no `key = value` is not named after a key.
        let err = RawConfig::from_toml("[auth]\nthis is = = bad\n", Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("line 2: ") && !err.contains("thisis") && !err.contains("(hidden)"), "{err}");
        let err = RawConfig::from_toml("[ auth ]\nheaders . X-Key = 5\n", Path::new("c.toml")).unwrap_err().to_string();
        assert!(err.contains("auth.headers.X-Key = (hidden)"), "spaces around a dot are TOML: {err}");
        let err = RawConfig::from_toml("[auth]\ntoken = \"\"\"a\nb\"\"\" junk\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("line 3: auth.token = (hidden): "), "{err}");
        // Settings that hold no secret are shown, whatever the header looks like.
        let err = RawConfig::from_toml(
            "[ \"server\" ] # the receiver\r\nmax_connections = \"lots\"\r\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("line 2: server.max_connections = \"lots\": invalid type"), "{err}");
        let err = RawConfig::from_toml("[auth]\ntoken = 5\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("line 2: auth.token = (hidden): of the wrong type, expected"), "{err}");
    }

    use super::*;

    fn err(text: &str) -> ConfigError {
        Config::from_toml(text).unwrap_err()
    }

    #[test]
    fn template_is_valid_and_uses_its_secrets() {
        let t = Secret::new("tok");
        let c = Secret::new("chal");
        let cfg = Config::from_toml(&template(&t, &c)).unwrap();
        assert_eq!(cfg.auth.method, AuthMethod::Bearer { token: t });
        assert_eq!(cfg.auth.challenge_secret, Some(c));
        assert_eq!(cfg.server.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(cfg.auth.client_certificate, ClientCertMode::Optional);
        assert_eq!(cfg.tls, TlsConfig::SelfSigned);
    }

    #[test]
    fn no_authentication_is_refused_unless_allowed() {
        let e = err("");
        assert_eq!(e.key(), Some("auth"));
        assert!(e.to_string().contains("allow_unauthenticated"), "{e}");
        Config::from_toml("[auth]\nallow_unauthenticated = true").unwrap();
        Config::from_toml("[auth]\nclient_certificate = \"required\"").unwrap();
        Config::from_toml("[auth.headers]\nX-Key = \"v\"").unwrap();
    }

    #[test]
    fn a_secret_sent_in_a_header_has_no_spaces_at_its_ends() {
        for (toml, key) in [
            ("[auth]\nmethod = \"bearer\"\ntoken = \" tok3n-with-a-space \"", "auth.token"),
            ("[auth]\nmethod = \"bearer\"\ntoken = \"tok3n\\t\"", "auth.token"),
            ("[auth]\nmethod = \"bearer\"\ntoken = \"tok3n\\n\"", "auth.token"),
            ("[auth.headers]\nX-Key = \"v4lue \"", "auth.headers.X-Key"),
        ] {
            let e = err(toml);
            assert_eq!(e.key(), Some(key), "{toml}");
            let text = e.to_string();
            assert!(text.contains("(hidden)") && text.contains("either end"), "{text}");
            assert!(text.contains("line breaks"), "{text}");
            assert!(!text.contains("tok3n") && !text.contains("v4lue"), "{text}");
        }
        // Control characters inside cannot be sent at all; other characters, UTF-8 too, can.
        for (toml, key) in [
            ("[auth]\nmethod = \"bearer\"\ntoken = \"tok\\u00013n\"", "auth.token"),
            ("[auth.headers]\nX-Key = \"v4l\\u007fue\"", "auth.headers.X-Key"),
            ("[auth.headers]\nX-Key = \"\"", "auth.headers.X-Key"),
        ] {
            let e = err(toml);
            assert_eq!(e.key(), Some(key), "{toml}");
            assert!(e.to_string().contains("without control characters"), "{e}");
        }
        Config::from_toml("[auth.headers]\nX-Key = \"cl\u{e9}-\u{20ac}-v4lue\"").unwrap();
        // Two entries for one header (names differ only in case) could never both match.
        let e = err("[auth.headers]\nX-Api-Key = \"a-s3cr3t\"\nx-api-key = \"b-s3cr3t\"");
        assert!(e.key().is_some_and(|k| k.eq_ignore_ascii_case("auth.headers.x-api-key")), "{e}");
        assert!(e.to_string().contains("one entry per header") && !e.to_string().contains("s3cr3t"), "{e}");
        // A password in a URL or a token in a tunnel command is not quoted either.
        let e = err(
            "[server]\npublic_url = \"https://me:s3cr3t@alerts.example.com/\"\n[auth]\nallow_unauthenticated = true",
        );
        assert!(
            e.to_string().contains("\"https://(hidden)@alerts.example.com/\"") && !e.to_string().contains("s3cr3t"),
            "{e}"
        );
        // Nor a key in its query or fragment, nor a password in the ACME directory's URL.
        for (toml, shown) in [
            ("[server]\npublic_url = \"https://alerts.example.com/?key=s3cr3t\"", "\"https://alerts.example.com/?(hidden)\""),
            ("[server]\npublic_url = \"http://alerts.example.com/#s3cr3t\"", "\"http://alerts.example.com/#(hidden)\""),
            (
                "[server]\npublic_url = \"https://a.example/\"\n[tls.acme]\nemail = \"me@example.com\"\ndirectory = \"http://u:s3cr3t@ca.example/dir\"",
                "\"http://(hidden)@ca.example/dir\"",
            ),
        ] {
            let e = err(&format!("{toml}\n[auth]\nallow_unauthenticated = true"));
            assert!(e.to_string().contains(shown) && !e.to_string().contains("s3cr3t"), "{e}");
        }
        let e =
            err("[tunnel]\ncommand = \"ngrok http 8443 --authtoken 's3cr3t\"\n[auth]\nallow_unauthenticated = true");
        assert!(
            e.to_string().starts_with("tunnel.command = \"ngrok\" ...") && !e.to_string().contains("s3cr3t"),
            "{e}"
        );
        for url in ["https://me:s3/cr3t@alerts.example.com/", "https://me:s3#cr?3t@alerts.example.com/"] {
            let e = err(&format!("[server]\npublic_url = {url:?}\n[auth]\nallow_unauthenticated = true"));
            assert!(!e.to_string().contains("cr3t") && !e.to_string().contains("me:"), "{e}");
        }
        let e = err("[tunnel]\ncommand = \"NGROK_AUTHTOKEN=s3cr3t ngrok 'x\"\n[auth]\nallow_unauthenticated = true");
        assert!(
            e.to_string().starts_with("tunnel.command = \"ngrok\" ...") && !e.to_string().contains("s3cr3t"),
            "{e}"
        );
        // Inside, and in a Basic password (sent encoded), spaces are fine.
        Config::from_toml("[auth]\nmethod = \"bearer\"\ntoken = \"a b\"").unwrap();
        Config::from_toml("[auth]\nmethod = \"basic\"\nusername = \"u\"\npassword = \" p \"").unwrap();
    }

    #[test]
    fn webhook_paths_are_plain_and_every_accepted_one_makes_a_router() {
        let base = "[auth]\nallow_unauthenticated = true\n[server]\n";
        for good in ["/", "/netdata", "/hooks/netdata-alerts/", "/a.b_c~d-1", "/8f3a9c"] {
            let cfg = Config::from_toml(&format!("{base}path = \"{good}\"")).unwrap();
            assert_eq!(cfg.server.path, good);
            // As the receiver routes it (a path the router cannot take would panic here).
            let _ = axum::Router::<()>::new().route(&cfg.server.path, axum::routing::get(|| async {}));
        }
        // What the router would have panicked on, or read as a capture matching any path.
        assert!(std::panic::catch_unwind(|| axum::Router::<()>::new().route("/:x", axum::routing::get(|| async {})))
            .is_err());
        for bad in
            ["netdata", "/{x}", "/:x", "/*rest", "/a//b", "//", "/a b", "/a?b", "/a#b", "/./a", "/a/..", "/é", "/%41"]
        {
            assert_eq!(err(&format!("{base}path = \"{bad}\"")).key(), Some("server.path"), "{bad}");
        }
    }

    #[test]
    fn every_setting_at_fault_is_named_section_by_section() {
        let e = err("[server]\nlisten = \"nowhere\"\npath = \"no-slash\"\n[auth]\nmethod = \"digest\"\n\
             [auth.headers]\n\"Bad Name\" = \"v\"\nHost = \"v\"\n\
             [notifications]\nmax_popups_per_minute = 0\nquiet_hours = \"late\"\n[store]\nretention_days = -1\n\
             [tunnel]\ncommand = \"bore 'x\"");
        let ConfigError::Several(all) = &e else { panic!("one error only: {e}") };
        let keys: Vec<_> = all.iter().map(|p| p.key().unwrap_or("?")).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.path",
                "auth.method",
                "auth.headers.Bad Name",
                "auth.headers.Host",
                "notifications.max_popups_per_minute",
                "notifications.quiet_hours",
                "store.retention_days",
                "tunnel.command"
            ]
        );
        // A broken auth.method is one mistake, not also "no authentication".
        assert_eq!(e.key(), Some("server.listen"));
        let text = e.to_string();
        assert!(text.starts_with("9 settings are not accepted:\n  - server.listen = \"nowhere\""), "{text}");
        assert!(text.contains("\n  - auth.method = \"digest\" is not accepted"), "{text}");
        // One mistake is reported as itself.
        assert!(matches!(err("[auth]\nmethod = \"digest\""), ConfigError::Invalid { .. }));
        // A wrong public_url does not hide [tls]'s own mistakes, nor make a missing ACME domain one.
        let e = err("[server]\npublic_url = \"http://a.example/\"\n[tls]\ncert = \"c.pem\"\n[auth]\nallow_unauthenticated = true");
        assert_eq!(e.to_string().matches("\n  - ").count(), 2, "{e}");
        let e = err("[server]\npublic_url = \"http://a.example/\"\n[tls.acme]\nemail = \"me@a.example\"\n[auth]\nallow_unauthenticated = true");
        assert_eq!(e.key(), Some("server.public_url"), "{e}");
        assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        // A bad [server] does not hide [tls.acme], unless its public_url is what is wrong.
        let e = err("[server]\nlisten = \"x\"\npublic_url = \"https://a.example/\"\n[tls]\ncert = \"c.pem\"\n[tls.acme]\nemail = \"me@a.example\"\n[auth]\nallow_unauthenticated = true");
        assert_eq!(e.to_string().matches("\n  - ").count(), 2, "{e}");
        // Each credential a method needs, and each [tls.acme] value, is named on its own.
        let keys = |e: &ConfigError| match e {
            ConfigError::Several(all) => all.iter().map(|p| p.key().unwrap_or("?").to_string()).collect::<Vec<_>>(),
            one => vec![one.key().unwrap_or("?").to_string()],
        };
        assert_eq!(keys(&err("[auth]\nmethod = \"basic\"")), ["auth.username", "auth.password"]);
        assert_eq!(keys(&err("[auth]\nmethod = \"basic\"\nusername = \"a:b\"")), ["auth.username", "auth.password"]);
        assert_eq!(
            keys(&err(
                "[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n[tls.acme]\nemail = \"bad\"\ndirectory = \"http://x\""
            )),
            ["tls.acme.domain", "tls.acme.email", "tls.acme.directory"]
        );
    }

    #[test]
    fn sections_given_a_value_or_written_as_lists_say_what_a_section_is() {
        for (text, line) in [
            ("server = 5\n", "line 1: server = (hidden): of the wrong type, expected a table"),
            ("store = []\n", "line 1: store = (hidden): of the wrong type, expected a table"),
            ("[tls]\nacme = \"yes\"\n", "line 2: tls.acme = (hidden): of the wrong type, expected a table"),
            ("[[server]]\nlisten = \"x\"\n", "line 1: [[server]]: [server] is one table"),
            ("[server]\n[[ 'auth' ]]\nmethod = \"none\"\n", "line 2: [[auth]]: [auth] is one table"),
        ] {
            let e = RawConfig::from_toml(text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.contains(line), "{text}: {e}");
            assert!(!e.contains("Raw"), "no type of the code's: {e}");
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_is_named_by_line_and_key_without_its_bytes() {
        let e =
            Config::from_file_bytes(Path::new("c.toml"), b"[auth]\nmethod = \"bearer\"\ntoken = \"ab\xff\xfecd\"\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("line 3: auth.token: not UTF-8 text"), "{e}");
        assert!(!e.contains("ab") && !e.contains("index"), "{e}");
        let e = Config::from_file_bytes(Path::new("c.toml"), b"\xff").unwrap_err().to_string();
        assert!(e.contains("line 1: not UTF-8 text"), "{e}");
        // As the Settings window reads it, too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, b"[server]\nlisten = \"127.0.0.1:1\"\n[auth]\ntoken = \"\xfe\"\n").unwrap();
        let e = load_raw(&path).unwrap_err().to_string();
        assert!(e.contains("line 4: auth.token: not UTF-8 text"), "{e}");
    }

    #[test]
    fn an_extra_header_refused_for_its_name_says_so() {
        for name in ["Authorization", "host", "Bad Name", "", "X-Alertray-Check"] {
            let e = err(&format!("[auth.headers]\n\"{name}\" = \"SECRETHV\""));
            let text = e.to_string();
            assert!(text.contains(&format!("= (the header name {name:?}) is not accepted")), "{text}");
            assert!(!text.contains("SECRETHV"), "{text}");
        }
    }

    #[test]
    fn bad_values_name_key_value_and_accepted() {
        let e = err("[auth]\nmethod = \"digest\"");
        assert_eq!(e.to_string(), "auth.method = \"digest\" is not accepted: \"none\", \"basic\" or \"bearer\"");
        let e = err("[server]\nlisten = \"localhost\"\n[auth]\nallow_unauthenticated = true");
        assert_eq!(e.key(), Some("server.listen"));
        assert!(e.to_string().contains("\"localhost\""));
        for url in [
            "http://x",
            "https://a.example:99999/",
            "https://a.example:0/",
            "https://user:pw@a.example/",
            "https:///x",
            "https://a.example/#frag",
        ] {
            let e = err(&format!("[server]\npublic_url = \"{url}\"\n[auth]\nallow_unauthenticated = true"));
            assert_eq!(e.key(), Some("server.public_url"), "{url}");
        }
        for url in ["https://a.example:8443/", "https://[2001:db8::1]/", "https://[::1]:8443/x/"] {
            let ok = format!("[server]\npublic_url = \"{url}\"\n[auth]\nallow_unauthenticated = true");
            assert!(Config::from_toml(&ok).is_ok(), "{url}");
        }
        let e = err("[auth]\nmethod = \"bearer\"");
        assert_eq!(e.key(), Some("auth.token"));
        let e = err("[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n[notifications]\nmax_popups_per_minute = 0");
        assert!(e.to_string().contains("from 1 to 1000"), "{e}");
        let e = err("[auth]\nclient_certificate = \"maybe\"");
        assert_eq!(e.key(), Some("auth.client_certificate"));
    }

    #[test]
    fn secrets_are_never_echoed() {
        let e = err("[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n[auth.headers]\nX-Key = \"bad\nvalue\"");
        let _ = e; // a TOML syntax error; the next one is a validation error
        let e = err("[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n[auth.headers]\nX-Key = \"s3cr\\u0007t\"");
        assert!(!e.to_string().contains("s3cr"), "{e}");
        let cfg = Config::from_toml("[auth]\nmethod = \"bearer\"\ntoken = \"hunter2\"").unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn quiet_hours_and_min_severity() {
        let cfg = Config::from_toml("[auth]\nallow_unauthenticated = true\n[notifications]\nquiet_hours = \"22:30-06:15\"\nmin_severity = \"Warning\"").unwrap();
        let q = cfg.notifications.quiet_hours.unwrap();
        assert_eq!(q.from.format("%H:%M").to_string(), "22:30");
        assert!(q.allow_critical);
        assert_eq!(cfg.notifications.min_severity, crate::policy::MinSeverity::Warning);
        let e = err("[auth]\nallow_unauthenticated = true\n[notifications]\nquiet_hours = \"late\"");
        assert_eq!(e.key(), Some("notifications.quiet_hours"));
        let e = err("[auth]\nallow_unauthenticated = true\n[notifications]\nmin_severity = \"loud\"");
        assert_eq!(e.key(), Some("notifications.min_severity"));
    }

    #[test]
    fn save_validates_writes_privately_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let mut raw = RawConfig::default();
        raw.auth.method = Some("bearer".into());
        assert_eq!(save(&p, &raw).unwrap_err().key(), Some("auth.token"));
        assert!(!p.exists(), "nothing written for an invalid config");
        raw.auth.token = Some(Secret::new("tok"));
        raw.auth.headers = Some([("X-Key".to_string(), Secret::new("v"))].into());
        save(&p, &raw).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let back = Config::load(&p).unwrap();
        assert_eq!(back.auth.method, AuthMethod::Bearer { token: Secret::new("tok") });
        assert_eq!(back.auth.headers.len(), 1);
        assert_eq!(load_raw(&p).unwrap().auth.token, Some(Secret::new("tok")));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = err("[auth]\nmethd = \"bearer\"");
        assert!(e.to_string().contains("methd"), "{e}");
    }

    #[test]
    fn tunnel_and_acme_settings_are_validated() {
        let base = "[auth]\nallow_unauthenticated = true\n";
        let cfg =
            Config::from_toml(&format!("{base}[tunnel]\ncommand = \"bore local {{port}} --to 'bore.pub'\"")).unwrap();
        assert_eq!(cfg.tunnel.unwrap().argv, ["bore", "local", "{port}", "--to", "bore.pub"]);
        let e = err(&format!("{base}[tunnel]\ncommand = \"bore 'unclosed\""));
        assert_eq!(e.key(), Some("tunnel.command"));
        let e = err(&format!("{base}[tunnel]\ncommand = \"x\"\nurl_pattern = \"no group\""));
        assert_eq!(e.key(), Some("tunnel.url_pattern"));
        let e = err(&format!("{base}[tunnel]\ncommand = \"x\"\nurl_pattern = \"(unclosed\""));
        assert_eq!(e.key(), Some("tunnel.url_pattern"));
        // Without a command too: it would fail once one is set.
        let e = err(&format!("{base}[tunnel]\nurl_pattern = \"(\""));
        assert_eq!(e.key(), Some("tunnel.url_pattern"));

        let e = err(&format!("{base}[tls.acme]\nemail = \"a@b.c\""));
        assert_eq!(e.key(), Some("tls.acme.domain"), "no domain and no public URL");
        let cfg = Config::from_toml(&format!(
            "[server]\npublic_url = \"https://Alerts.Example.org/\"\n{base}[tls.acme]\nemail = \"a@b.c\""
        ))
        .unwrap();
        let TlsConfig::Acme(acme) = cfg.tls else { panic!("{:?}", cfg.tls) };
        assert_eq!(acme.domain, "alerts.example.org");
        assert_eq!(acme.directory, crate::acme::LETS_ENCRYPT);
        for (extra, key) in [
            ("domain = \"127.0.0.1\"", "tls.acme.domain"),
            ("domain = \"localhost\"", "tls.acme.domain"),
            ("domain = \"a.b\"\nemail = \"nobody\"", "tls.acme.email"),
            ("domain = \"a.b\"\ndirectory = \"http://ca.example/dir\"", "tls.acme.directory"),
        ] {
            assert_eq!(err(&format!("{base}[tls.acme]\n{extra}")).key(), Some(key), "{extra}");
        }
        let e = err(&format!("{base}[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[tls.acme]\ndomain = \"a.b\""));
        assert_eq!(e.key(), Some("tls.acme"));
        let cfg = Config::from_toml(&format!("{base}[tls.acme]\nenabled = false\ndomain = \"a.b\"")).unwrap();
        assert_eq!(cfg.tls, TlsConfig::SelfSigned, "a disabled [tls.acme] is ignored");
        let cfg = Config::from_toml(&format!("[server]\npublic_url = \"https://a.example.org/\"\n{base}[tls.acme]\n"))
            .unwrap();
        assert_eq!(cfg.tls, TlsConfig::SelfSigned, "an empty [tls.acme] turns nothing on");
        let cfg = Config::from_toml(&format!(
            "[server]\npublic_url = \"https://a.example.org/\"\n{base}[tls.acme]\nemail = \"\"\ndomain = \" \"\ndirectory = \"\"\ndirectory_ca = \"\""
        ))
        .unwrap();
        assert_eq!(cfg.tls, TlsConfig::SelfSigned, "keys left empty turn nothing on");
        let cfg = Config::from_toml(&format!(
            "{base}[tls.acme]\nenabled = true\ndomain = \"a.example.org\"\nemail = \"\"\ndirectory = \" \"\ndirectory_ca = \"\""
        ))
        .unwrap();
        let TlsConfig::Acme(acme) = cfg.tls else { panic!("{:?}", cfg.tls) };
        assert_eq!(
            (acme.email, acme.directory.as_str(), acme.directory_ca),
            (None, crate::acme::LETS_ENCRYPT, None),
            "keys left empty are unset"
        );
        // Empty TLS paths are no paths: none at all is a self-signed certificate, and one
        // alone names the other as missing (not "cannot read the folder").
        let cfg = Config::from_toml(&format!("{base}[tls]\ncert = \"\"\nkey = \" \"")).unwrap();
        assert_eq!(cfg.tls, TlsConfig::SelfSigned);
        let e = err(&format!("{base}[tls]\ncert = \"c.pem\"\nkey = \"\""));
        assert_eq!((e.key(), e.to_string().contains("(missing)")), (Some("tls.key"), true), "{e}");
    }

    #[test]
    fn webhook_url_joins_public_url_and_path() {
        let cfg = Config::from_toml(
            "[server]\npublic_url = \"https://a.example/base/\"\npath = \"/hook\"\n[auth]\nallow_unauthenticated = true",
        )
        .unwrap();
        assert_eq!(cfg.server.webhook_url().as_deref(), Some("https://a.example/base/hook"));
    }
}
