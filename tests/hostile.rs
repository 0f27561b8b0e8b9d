//! The receiver against hostile clients and scanners, run as a user runs it (`alertray serve`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn require_tool(tool: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("ALERTRAY_REQUIRE_DESKTOP").as_deref() == Ok("1") {
            panic!("{tool} is not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// TLS grade: only TLS 1.2 and 1.3, only forward-secret AEAD suites, no compression, no
/// insecure renegotiation, as sslscan sees it.
#[test]
fn sslscan_finds_only_modern_tls() {
    if !require_tool("sslscan") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    let serve = Serve::start(&cfg, &dir.path().join("data"), port, &[], &["--no-popups"]);
    let out = Command::new("sslscan").args(["--no-colour", &format!("127.0.0.1:{port}")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let enabled = |proto: &str| {
        text.lines().any(|l| l.trim_start().starts_with(proto) && l.contains("enabled") && !l.contains("disabled"))
    };
    for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"] {
        assert!(!enabled(old), "{old} is enabled:\n{text}");
    }
    assert!(enabled("TLSv1.2") && enabled("TLSv1.3"), "TLS 1.2 and 1.3 must both be enabled:\n{text}");
    // Debian's sslscan is built without zlib and then cannot probe compression; rustls has no
    // TLS compression at all, so the only failing answer is "Compression enabled".
    assert!(!text.contains("Compression enabled"), "{text}");
    assert!(text.contains("Compression disabled") || text.contains("does not support compression"), "{text}");
    assert!(
        text.contains("Session renegotiation not supported") || text.contains("Secure session renegotiation supported"),
        "{text}"
    );
    let suites: Vec<&str> = text.lines().filter(|l| l.starts_with("Preferred") || l.starts_with("Accepted")).collect();
    assert!(suites.len() >= 3, "{text}");
    for s in &suites {
        let name = s.split_whitespace().nth(4).unwrap_or_default();
        let aead = name.contains("GCM") || name.contains("CHACHA20");
        let forward_secret = name.starts_with("TLS_") || name.starts_with("ECDHE");
        assert!(aead && forward_secret, "weak suite accepted: {s}\n{text}");
    }
    eprintln!("sslscan: {} suites accepted, all TLS 1.2/1.3 AEAD with forward secrecy", suites.len());
    drop(serve);
}

/// Guessing the token: after the allowance, every attempt from that address is refused
/// with 429 before its token is even compared.
#[test]
fn a_thousand_guesses_mostly_meet_429() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "max_failures_per_minute = 10\n");
    let serve = Serve::start(&cfg, &dir.path().join("data"), port, &[], &["--no-popups"]);
    let client = serve.client();
    let started = Instant::now();
    let (mut unauthorized, mut throttled) = (0, 0);
    for i in 0..1000 {
        let st =
            client.post(serve.url()).bearer_auth(format!("guess-{i}")).body("{}").send().unwrap().status().as_u16();
        match st {
            401 => unauthorized += 1,
            429 => throttled += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    // The allowance plus what refills while the guesses run.
    let allowed = 10.0 + 10.0 * minutes + 1.0;
    assert!(f64::from(unauthorized) <= allowed, "{unauthorized} guesses were compared in {minutes:.2} min");
    assert_eq!(unauthorized + throttled, 1000);
    // The right token is refused too while the address is throttled.
    let st = client.post(serve.url()).bearer_auth("test-token").body("{}").send().unwrap().status().as_u16();
    assert_eq!(st, 429);
    eprintln!(
        "guessing: 1000 guesses in {:.1} s, {unauthorized} compared (401), {throttled} refused unread (429)",
        started.elapsed().as_secs_f64()
    );
}

/// Every auth path, with known secrets, at debug level: no secret reaches the log. Files
/// that hold secrets are readable by their owner only.
#[test]
fn secrets_never_reach_the_log_and_secret_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = ["Sup3r-Secret-Token-4711", "Basic-Pa55word-9876", "Header-Value-1234", "Challenge-Secret-5555"];
    let port = free_port();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nclient_certificate = \"off\"\nmethod = \"basic\"\nusername = \"netdata\"\npassword = \"{}\"\nchallenge_secret = \"{}\"\n[auth.headers]\nX-Api-Key = \"{}\"\n",
            secrets[1], secrets[3], secrets[2]
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&cfg, &data, port, &[("ALERTRAY_LOG", "alertray=trace,debug")], &["--no-popups"]);
    let c = serve.client();
    let body = captured("netdata-alert-critical.json");
    let send = |user: &str, pass: &str, header: &str| {
        c.post(serve.url())
            .basic_auth(user, Some(pass))
            .header("x-api-key", header)
            .body(body.clone())
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(send("netdata", secrets[1], secrets[2]).as_u16(), 200);
    assert_eq!(send("netdata", secrets[1], "wrong").as_u16(), 401);
    assert_eq!(send("netdata", "wrong", secrets[2]).as_u16(), 401);
    let st = c.post(serve.url()).bearer_auth(secrets[0]).body(body.clone()).send().unwrap().status();
    assert_eq!(st.as_u16(), 401);
    let st = c.get(format!("{}?crc_token=abc", serve.url())).send().unwrap().status();
    assert_eq!(st.as_u16(), 200);
    let mut serve = serve;
    let _ = Command::new("kill").arg("-TERM").arg(serve.child.id().to_string()).status();
    let _ = serve.child.wait();
    let mut log = Vec::new();
    while let Ok(l) = serve.lines.recv_timeout(Duration::from_millis(500)) {
        log.push(l);
    }
    let log = log.join("\n");
    assert!(log.contains("refused"), "the refusals are logged:\n{log}");
    for s in secrets {
        assert!(!log.contains(s), "secret {s} appears in the log:\n{log}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in [data.join("tls/key.pem"), data.join("alertray.db")] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the data dir");
    }
}
