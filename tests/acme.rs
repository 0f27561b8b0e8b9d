//! `[tls.acme]` against Pebble, Let's Encrypt's test CA (Debian package `pebble`), on
//! loopback: `pebble-challtestsrv` answers DNS with 127.0.0.1, Pebble validates TLS-ALPN-01 on
//! the receiver's own port, and the certificate is obtained, swapped in without a restart,
//! kept across restarts, and renewed.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, https_client, Killed, Serve, TestCa};

fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> Killed {
    let mut c = Command::new(program);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Killed(c.spawn().unwrap_or_else(|e| panic!("{program}: {e} (install the Debian package `pebble`)")))
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Pebble {
    directory: String,
    management: u16,
    listener_ca: TestCa,
    _dns: Killed,
    _pebble: Killed,
}

/// Pebble issuing certificates valid for `validity_secs`, validating TLS-ALPN-01 on `tls_port`.
fn pebble(dir: &Path, tls_port: u16, validity_secs: u64) -> Pebble {
    let listener_ca = TestCa::new("Pebble listener test CA");
    let pem = dir.join("pebble-listener.pem");
    std::fs::write(&pem, listener_ca.server_pem("pebble", &["127.0.0.1", "localhost"])).unwrap();
    let (api, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
    let config = dir.join("pebble.json");
    let json = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{api}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": pem, "privateKey": pem,
        "httpPort": free_port(), "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": false,
        "certificateValidityPeriod": validity_secs,
    }});
    std::fs::write(&config, json.to_string()).unwrap();
    let dns_addr = format!("127.0.0.1:{dns}");
    let dns_mgmt = format!("127.0.0.1:{dns_management}");
    let dns = spawn(
        "pebble-challtestsrv",
        &[
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &dns_addr,
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &dns_mgmt,
        ],
        &[],
    );
    let pebble = spawn(
        "pebble",
        &["-config", config.to_str().unwrap(), "-dnsserver", &dns_addr],
        &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0"), ("PEBBLE_AUTHZREUSE", "0")],
    );
    wait_listening(api);
    wait_listening(management);
    Pebble { directory: format!("https://127.0.0.1:{api}/dir"), management, listener_ca, _dns: dns, _pebble: pebble }
}

fn config(dir: &Path, port: u16, p: &Pebble, domain: &str) -> std::path::PathBuf {
    let ca = p.listener_ca.write(dir);
    let path = dir.join(format!("config-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://{domain}:{port}/\"\n\
             [tls.acme]\nemail = \"admin@example.org\"\ndirectory = \"{}\"\ndirectory_ca = \"{}\"\n\
             [auth]\nclient_certificate = \"required\"\nmethod = \"bearer\"\ntoken = \"t\"\nchallenge_secret = \"s\"\n",
            p.directory,
            ca.display()
        ),
    )
    .unwrap();
    path
}

/// Pebble's issuing root (made anew at each Pebble start).
fn pebble_root(p: &Pebble) -> String {
    https_client(p.listener_ca.pem().as_bytes())
        .get(format!("https://127.0.0.1:{}/roots/0", p.management))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The fingerprint of the certificate a new client (no pooled connection, no TLS session to
/// resume) trusting only Pebble's root is served for `domain`, after a challenge.
fn served(root: &str, domain: &str, port: u16) -> String {
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(domain, SocketAddr::from(([127, 0, 0, 1], port)))
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = client.get(format!("https://{domain}:{port}/?crc_token=acme")).send().unwrap();
    let leaf = resp.extensions().get::<reqwest::tls::TlsInfo>().unwrap().peer_certificate().unwrap().to_vec();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["response_token"].as_str().unwrap(), alertray::challenge::response_token(b"s", "acme"));
    alertray::tls::fingerprint(&leaf)
}

fn fingerprint_in(line: &str) -> String {
    line.split("fingerprint=").nth(1).unwrap().split_whitespace().next().unwrap().trim_matches('"').to_string()
}

#[test]
fn a_certificate_is_obtained_from_pebble_swapped_in_kept_and_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let domain = "alerts.alertray.test";
    // Certificates valid for 45 s are renewed when 15 s are left.
    let p = pebble(dir.path(), port, 45);
    let cfg = config(dir.path(), port, &p, domain);

    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    let first = fingerprint_in(&serve.wait_for_line("ACME certificate obtained", Duration::from_secs(60)));
    // Swapped in without a restart: a client trusting only Pebble's root connects.
    let c = pebble_root(&p);
    assert_eq!(served(&c, domain, port), first);
    #[cfg(unix)]
    for f in ["acme/key.pem", "acme/account.json"] {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(data.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(serve.terminate(), Some(0));

    // A restart serves the kept certificate and orders nothing.
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    assert_eq!(served(&c, domain, port), first, "the kept certificate is served after a restart");
    let kept = std::fs::read(data.join("acme/cert.pem")).unwrap();

    // Renewal, on time, swapped in without a restart.
    let second = fingerprint_in(&serve.wait_for_line("ACME certificate obtained", Duration::from_secs(60)));
    assert_ne!(second, first);
    assert_eq!(served(&c, domain, port), second);
    assert_ne!(std::fs::read(data.join("acme/cert.pem")).unwrap(), kept, "the renewed chain is kept");
    drop(serve);

    // When the CA cannot reach the receiver (a tunnel that does not pass TLS through, here: a
    // receiver on another port), the failure is explained and the receiver keeps serving.
    let elsewhere = free_port();
    let data2 = dir.path().join("data2");
    let serve = Serve::start(&config(dir.path(), elsewhere, &p, domain), &data2, elsewhere, &[], &["--no-popups"]);
    let line = serve.wait_for_line("could not obtain a certificate", Duration::from_secs(60));
    assert!(line.contains("retrying in"), "{line}");
    let status = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("https://127.0.0.1:{elsewhere}/?crc_token=x"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status, 200, "the receiver still serves with its bootstrap certificate");
    // The pause before the next attempt is kept on disk, so a restart (a Save in Settings)
    // does not order again at once.
    let retry = std::fs::read_to_string(data2.join("acme/retry")).unwrap();
    let next_ms: i64 = retry.split_whitespace().next().unwrap().parse().unwrap();
    assert!(next_ms > alertray::store::now_ms() + 60_000, "next attempt at least a minute away: {retry}");
}
