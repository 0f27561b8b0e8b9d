//! Authentication of deliveries: the client certificate's names, the Authorization header
//! (Basic or Bearer), the extra headers, and the throttle that makes guessing impractical.
//!
//! Secrets are compared in constant time: both sides are hashed with SHA-256 first, so the
//! comparison takes the same time whatever the lengths, and the digests are compared with
//! `subtle`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, AuthMethod, ClientCertMode};
use crate::lock::MutexExt as _;

/// `true` when `given` equals `expected`, in time that does not depend on where they differ.
pub fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// 401 for credentials, 403 for the client certificate.
    pub status: StatusCode,
    /// A short reason for the client and the log; never holds a secret.
    pub reason: &'static str,
    /// The `WWW-Authenticate` value to send with a 401.
    pub www_authenticate: Option<&'static str>,
    /// `true` when a secret was presented and was wrong: a guess, which the throttle counts.
    /// A missing credential or certificate guesses nothing.
    pub guess: bool,
}

/// The TLS client certificate a connection presented, already verified against the roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// `true` when one was presented (and verified).
    pub presented: bool,
    /// Its subject CN and DNS SANs, lowercased: none when none was presented, and maybe none
    /// when one was (a certificate naming nobody).
    pub names: Vec<String>,
}

impl PeerCertificate {
    /// The certificate a client presented (its DER), named by [`crate::tls::client_cert_names`].
    pub fn from_der(der: Option<&[u8]>) -> PeerCertificate {
        match der {
            Some(der) => PeerCertificate { presented: true, names: crate::tls::client_cert_names(der) },
            None => PeerCertificate::default(),
        }
    }

    /// `true` when a certificate was presented.
    pub fn presented(&self) -> bool {
        self.presented
    }
}

/// Checks one request against the auth settings. On success, says how it authenticated
/// (e.g. `mtls:app.netdata.cloud+bearer+headers`), for the store.
pub fn check(cfg: &AuthConfig, cert: &PeerCertificate, headers: &HeaderMap) -> Result<String, AuthFailure> {
    let mut how = Vec::new();
    match cfg.client_certificate {
        ClientCertMode::Off => {}
        mode => {
            if cert.presented() {
                let Some(name) = cert.names.iter().find(|n| cfg.client_names.contains(n)) else {
                    return Err(AuthFailure {
                        status: StatusCode::FORBIDDEN,
                        reason: "the client certificate's name is not in auth.client_names",
                        www_authenticate: None,
                        guess: false,
                    });
                };
                how.push(format!("mtls:{name}"));
            } else if mode == ClientCertMode::Required {
                return Err(AuthFailure {
                    status: StatusCode::FORBIDDEN,
                    reason: "a client certificate is required",
                    www_authenticate: None,
                    guess: false,
                });
            }
        }
    }
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !matches!(cfg.method, AuthMethod::None) && headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        // Which one would count is up to each server; none does here.
        return Err(guessed("more than one Authorization header", challenge(&cfg.method)));
    }
    match &cfg.method {
        AuthMethod::None => {}
        AuthMethod::Basic { username, password } => {
            let Some(value) = authorization else {
                return Err(unauthorized("Basic credentials are required", challenge(&cfg.method)));
            };
            let ok = scheme_param(value, "basic")
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim_ascii()).ok())
                .is_some_and(|decoded| {
                    let (user, pass) = match decoded.iter().position(|b| *b == b':') {
                        Some(i) => (&decoded[..i], &decoded[i + 1..]),
                        None => (&decoded[..], &[][..]),
                    };
                    // Both compared, always, so timing does not tell which one was wrong.
                    secret_eq(user, username.as_bytes()) & secret_eq(pass, password.expose().as_bytes())
                });
            if !ok {
                return Err(guessed("the Basic credentials are wrong", challenge(&cfg.method)));
            }
            how.push("basic".into());
        }
        AuthMethod::Bearer { token } => {
            let Some(value) = authorization else {
                return Err(unauthorized("a Bearer token is required", challenge(&cfg.method)));
            };
            let ok =
                scheme_param(value, "bearer").is_some_and(|t| secret_eq(t.trim_ascii(), token.expose().as_bytes()));
            if !ok {
                return Err(guessed("the Bearer token is wrong", challenge(&cfg.method)));
            }
            how.push("bearer".into());
        }
    }
    if !cfg.headers.is_empty() {
        let (mut all, mut presented) = (true, false);
        for (name, expected) in &cfg.headers {
            // Without the spaces around it, which HTTP/1.1's parser drops and HTTP/2's keeps:
            // the same header passes or fails over both (a configured value has none).
            let given = headers.get(name).map(|v| v.as_bytes().trim_ascii()).unwrap_or_default();
            presented |= headers.contains_key(name);
            all &= headers.get_all(name).iter().count() <= 1 && secret_eq(given, expected.expose().as_bytes());
        }
        if !all {
            // A 401 names a scheme to answer with; with headers alone there is none to name.
            let failure = unauthorized("a required header is missing or wrong", challenge(&cfg.method));
            return Err(AuthFailure { guess: presented, ..failure });
        }
        how.push("headers".into());
    }
    if how.is_empty() {
        how.push("none".into());
    }
    Ok(how.join("+"))
}

/// The `WWW-Authenticate` value of a 401 under `method`. Every 401 carries one (RFC 9110);
/// with no method, only the extra headers can be wrong, and the challenge says that much
/// without naming them.
fn challenge(method: &AuthMethod) -> Option<&'static str> {
    match method {
        AuthMethod::None => Some("Headers realm=\"alertray\""),
        AuthMethod::Basic { .. } => Some("Basic realm=\"alertray\", charset=\"UTF-8\""),
        AuthMethod::Bearer { .. } => Some("Bearer realm=\"alertray\""),
    }
}

fn unauthorized(reason: &'static str, challenge: Option<&'static str>) -> AuthFailure {
    AuthFailure { status: StatusCode::UNAUTHORIZED, reason, www_authenticate: challenge, guess: false }
}

/// A 401 for a secret that was presented and is wrong.
fn guessed(reason: &'static str, challenge: Option<&'static str>) -> AuthFailure {
    AuthFailure { guess: true, ..unauthorized(reason, challenge) }
}

/// The parameter of an Authorization value whose scheme is `scheme` (any case).
fn scheme_param<'a>(value: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let value = value.trim_ascii_start();
    let n = scheme.len();
    let (head, rest) = (value.get(..n)?, value.get(n..)?);
    (head.eq_ignore_ascii_case(scheme.as_bytes()) && rest.first() == Some(&b' ')).then(|| &rest[1..])
}

/// Estimated strength of a secret against guessing, in bits: the lower of two estimates.
///
/// - zxcvbn's, which knows common passwords, words, names, keyboard walks, sequences, dates
///   and l33t spellings, but stops counting at about 64 bits;
/// - the number of different pairs of neighbouring characters in it (plus one) times log2 of
///   the number of different characters. A repeated word or pattern counts once, so
///   "netdata-netdata-netdata-..." scores as little as "netdata-"; random text scores about
///   its length times log2 of its alphabet.
///
/// zxcvbn's estimate counts only when it is below its ceiling.
fn guess_bits(secret: &str) -> f64 {
    let chars: Vec<char> = secret.chars().collect();
    let distinct: std::collections::HashSet<char> = chars.iter().copied().collect();
    let pairs: std::collections::HashSet<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
    let varied = (pairs.len() + 1) as f64 * (distinct.len().max(1) as f64).log2();
    let patterns = zxcvbn::zxcvbn(secret, &[]).guesses_log10() * std::f64::consts::LOG2_10;
    if patterns < ZXCVBN_CEILING_BITS {
        varied.min(patterns)
    } else {
        varied
    }
}

/// Where zxcvbn stops counting (its guesses are a u64): 64 bits, less rounding.
const ZXCVBN_CEILING_BITS: f64 = 63.9;

/// Secrets scoring this many bits together cannot be guessed online, throttled or not: at
/// the receiver's top speed (tens of thousands of answers a second) 2^96 guesses take
/// longer than the age of the universe. The generated 43-character secrets score about 210.
pub const STRONG_BITS: f64 = 96.0;

/// `true` when the configured secrets (the password or token and every extra header's
/// value) together score at least [`STRONG_BITS`]: a guesser has to get all of them right.
pub fn secrets_are_strong(cfg: &AuthConfig) -> bool {
    let method = match &cfg.method {
        AuthMethod::None => 0.0,
        AuthMethod::Basic { password, .. } => guess_bits(password.expose()),
        AuthMethod::Bearer { token } => guess_bits(token.expose()),
    };
    let headers: f64 = cfg.headers.iter().map(|(_, v)| guess_bits(v.expose())).sum();
    method + headers >= STRONG_BITS
}

/// Counts authentication failures per peer address and refuses a peer that exceeds its
/// allowance until enough time has passed: a token bucket of `per_minute` failures that
/// refills continuously. While a peer is refused, its requests get 429 whether their
/// credentials are right or not, so that answers do not reveal a correct guess; the receiver
/// lets right credentials through only where a guess could never succeed anyway (see
/// [`secrets_are_strong`]).
#[derive(Debug)]
pub struct FailureThrottle {
    per_minute: u32,
    peers: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The most peers tracked at once; beyond it, full buckets are forgotten first, then the
/// one that failed longest ago.
const MAX_TRACKED_PEERS: usize = 10_000;

/// Who a bucket counts for: an IPv4 address (also when written as IPv4-mapped IPv6), or an
/// IPv6 /64, since one host usually holds a whole /64 and could guess from each address in
/// it.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl FailureThrottle {
    /// A throttle allowing `per_minute` failures a minute per peer (with that many in a burst).
    pub fn new(per_minute: u32) -> FailureThrottle {
        FailureThrottle { per_minute: per_minute.max(1), peers: Mutex::new(HashMap::new()) }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let rate = f64::from(self.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(f64::from(self.per_minute));
        b.at = now;
    }

    /// `Err(retry_after)` if `peer` is refused now.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut peers = self.peers.locked();
        let Some(b) = peers.get_mut(&peer_key(peer)) else {
            return Ok(());
        };
        self.refill(b, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else {
            let rate = f64::from(self.per_minute) / 60.0;
            Err(Duration::from_secs_f64(((1.0 - b.tokens) / rate).max(1.0)).min(Duration::from_secs(3600)))
        }
    }

    /// Records one failure from `peer`.
    pub fn failed(&self, peer: IpAddr, now: Instant) {
        let peer = peer_key(peer);
        let mut peers = self.peers.locked();
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            let full = f64::from(self.per_minute);
            let rate = full / 60.0;
            peers.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < full);
            // Every tracked peer still failing (a guesser spread over many addresses): the
            // one that failed longest ago makes room, so the map stays bounded.
            if peers.len() >= MAX_TRACKED_PEERS {
                if let Some(stalest) = peers.iter().min_by_key(|(_, b)| b.at).map(|(ip, _)| *ip) {
                    peers.remove(&stalest);
                }
            }
        }
        let per_minute = f64::from(self.per_minute);
        let b = peers.entry(peer).or_insert(Bucket { tokens: per_minute, at: now });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientCa, Secret};
    use axum::http::{HeaderName, HeaderValue};

    fn cfg(method: AuthMethod, mode: ClientCertMode) -> AuthConfig {
        AuthConfig {
            client_certificate: mode,
            client_ca: ClientCa::Netdata,
            client_names: vec!["app.netdata.cloud".into()],
            method,
            challenge_secret: None,
            headers: vec![],
            max_failures_per_minute: 10,
        }
    }

    #[test]
    fn strong_secrets_are_long_and_varied_together() {
        let bearer = |t: &str| cfg(AuthMethod::Bearer { token: Secret::new(t) }, ClientCertMode::Off);
        assert!(secrets_are_strong(&bearer(crate::config::generate_secret().expose())));
        assert!(secrets_are_strong(&bearer("Tr0ub4dor&3-correct-horse-battery-staple")));
        for weak in [
            "test-token",
            // Long and varied, but a keyboard walk and a famous password, spelled l33t.
            "qwertyuiopasdfghjklzxcvbnm",
            "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.",
            "P@ssw0rd123456789!P@ssw0rd123456789!",
            "hunter2",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababab",
            "netdata-netdata-netdata-netdata-netdata",
            "0123456789012345678901234567890123456789",
        ] {
            assert!(!secrets_are_strong(&bearer(weak)), "{weak}");
        }
        let basic = |p: &str| AuthMethod::Basic { username: "netdata".into(), password: Secret::new(p) };
        assert!(!secrets_are_strong(&cfg(basic("p4ss:word"), ClientCertMode::Required)));
        // A guesser needs every secret: a weak token and a strong header together are strong.
        let mut both = bearer("tok");
        both.headers = vec![(HeaderName::from_static("x-api-key"), crate::config::generate_secret())];
        assert!(secrets_are_strong(&both));
        assert!(!secrets_are_strong(&cfg(AuthMethod::None, ClientCertMode::Required)));
    }

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer() {
        let c = cfg(AuthMethod::Bearer { token: Secret::new("tok") }, ClientCertMode::Off);
        let none = PeerCertificate::default();
        assert_eq!(check(&c, &none, &with_auth("Bearer tok")).unwrap(), "bearer");
        assert_eq!(check(&c, &none, &with_auth("bearer tok")).unwrap(), "bearer");
        assert_eq!(check(&c, &none, &with_auth("Bearer tok2")).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(check(&c, &none, &with_auth("Bearertok")).unwrap_err().reason, "the Bearer token is wrong");
        let e = check(&c, &none, &HeaderMap::new()).unwrap_err();
        assert!(e.www_authenticate.unwrap().starts_with("Bearer"));
    }

    #[test]
    fn basic() {
        let c = cfg(AuthMethod::Basic { username: "u".into(), password: Secret::new("p:w") }, ClientCertMode::Off);
        let none = PeerCertificate::default();
        let ok = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        assert_eq!(check(&c, &none, &with_auth(&format!("Basic {ok}"))).unwrap(), "basic");
        let bad = base64::engine::general_purpose::STANDARD.encode("u:p");
        assert!(check(&c, &none, &with_auth(&format!("Basic {bad}"))).is_err());
        assert!(check(&c, &none, &with_auth("Basic !!!")).is_err());
        assert!(check(&c, &none, &with_auth(&format!("Bearer {ok}"))).is_err());
    }

    #[test]
    fn client_certificate_names() {
        let c = cfg(AuthMethod::None, ClientCertMode::Required);
        let good = PeerCertificate { presented: true, names: vec!["x".into(), "app.netdata.cloud".into()] };
        assert_eq!(check(&c, &good, &HeaderMap::new()).unwrap(), "mtls:app.netdata.cloud");
        let wrong = PeerCertificate { presented: true, names: vec!["evil.example".into()] };
        assert_eq!(check(&c, &wrong, &HeaderMap::new()).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(
            check(&c, &PeerCertificate::default(), &HeaderMap::new()).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let opt = cfg(AuthMethod::Bearer { token: Secret::new("t") }, ClientCertMode::Optional);
        assert_eq!(check(&opt, &PeerCertificate::default(), &with_auth("Bearer t")).unwrap(), "bearer");
        assert!(check(&opt, &wrong, &with_auth("Bearer t")).is_err());
        // A certificate naming nobody (no CN, no DNS SAN) was still presented: its name is
        // what is wrong, in either mode, not its absence.
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Netdata");
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let nameless = PeerCertificate::from_der(Some(&der));
        assert!(nameless.presented() && nameless.names.is_empty(), "{nameless:?}");
        for c in [&c, &opt] {
            let e = check(c, &nameless, &with_auth("Bearer t")).unwrap_err();
            assert_eq!(
                (e.status, e.reason),
                (StatusCode::FORBIDDEN, "the client certificate's name is not in auth.client_names")
            );
        }
        assert!(!PeerCertificate::from_der(None).presented());
    }

    #[test]
    fn extra_headers() {
        let mut c = cfg(AuthMethod::None, ClientCertMode::Off);
        c.headers = vec![("x-api-key".parse().unwrap(), Secret::new("k1"))];
        let none = PeerCertificate::default();
        let mut h = HeaderMap::new();
        let e = check(&c, &none, &h).unwrap_err();
        assert_eq!((e.status, e.www_authenticate), (StatusCode::UNAUTHORIZED, Some("Headers realm=\"alertray\"")));
        h.insert("x-api-key", HeaderValue::from_static("k2"));
        assert!(check(&c, &none, &h).is_err());
        h.insert("X-Api-Key", HeaderValue::from_static("k1"));
        assert_eq!(check(&c, &none, &h).unwrap(), "headers");
        // Spaces around it, as HTTP/2 keeps them: the same value.
        h.insert("X-Api-Key", HeaderValue::from_static(" \tk1 "));
        assert_eq!(check(&c, &none, &h).unwrap(), "headers");
        h.insert("X-Api-Key", HeaderValue::from_static("k 1"));
        assert!(check(&c, &none, &h).is_err(), "inner spaces are part of the value");
        h.insert("X-Api-Key", HeaderValue::from_static("k1"));
        h.append("x-api-key", HeaderValue::from_static("k1"));
        assert!(check(&c, &none, &h).is_err(), "a repeated header is refused");
    }

    #[test]
    fn throttle_refuses_after_the_allowance_and_refills() {
        let t = FailureThrottle::new(5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(t.check(ip, t0).is_ok());
            t.failed(ip, t0);
        }
        let retry = t.check(ip, t0).unwrap_err();
        assert!(retry >= Duration::from_secs(1) && retry <= Duration::from_secs(13), "{retry:?}");
        assert!(t.check(other, t0).is_ok());
        assert!(t.check(ip, t0 + Duration::from_secs(12)).is_ok());
    }

    #[test]
    fn an_ipv6_64_shares_one_allowance_and_a_mapped_ipv4_is_its_ipv4() {
        let t = FailureThrottle::new(3);
        let t0 = Instant::now();
        // Three failures, each from another address of one /64.
        for i in 1..=3 {
            t.failed(format!("2001:db8:1:2::{i:x}").parse().unwrap(), t0);
        }
        assert!(t.check("2001:db8:1:2:ffff::9".parse().unwrap(), t0).is_err(), "the same /64");
        assert!(t.check("2001:db8:1:3::1".parse().unwrap(), t0).is_ok(), "another /64");
        for _ in 0..3 {
            t.failed("::ffff:192.0.2.7".parse().unwrap(), t0);
        }
        assert!(t.check("192.0.2.7".parse().unwrap(), t0).is_err(), "IPv4-mapped is the IPv4 address");
    }

    #[test]
    fn the_tracked_peers_stay_bounded_however_many_keep_failing() {
        let t = FailureThrottle::new(1);
        let t0 = Instant::now();
        let n = MAX_TRACKED_PEERS as u32 + 500;
        for i in 0..n {
            t.failed(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.peers.locked().len(), MAX_TRACKED_PEERS);
        // The latest failures are still counted; the first ones made room.
        assert!(t
            .check(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n - 1)), t0 + Duration::from_secs(20))
            .is_err());
        assert!(t.check(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000)), t0 + Duration::from_secs(20)).is_ok());
    }
}
