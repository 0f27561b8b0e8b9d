//! A real tunnel: a `bore` server on loopback stands in for bore.pub, and `alertray serve`
//! runs `bore local` as the user's `tunnel.command`. The public URL is read from bore's
//! output, a challenge and a captured body go through the tunnel, and `alertray check`
//! reports the working path and each broken one (tunnel down, wrong secret, certificate for
//! the wrong name, TLS ended at the tunnel's edge).
//!
//! Needs the `bore` binary (`cargo install bore-cli`; `./dev test` installs it).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, https_client, run, Killed, Serve, TestCa};
use serde_json::Value;

/// bore's control port is fixed, so every scenario runs in this one test.
const BORE_CONTROL_PORT: u16 = 7835;

fn bore_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("bore"))
        .find(|p| p.is_file());
    found.expect("the `bore` binary is needed on PATH: `cargo install bore-cli --locked` (./dev test installs it)")
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A bore server on loopback handing out tunnel ports from a small range.
fn bore_server(bore: &Path) -> Killed {
    let low = free_port().saturating_sub(50).max(20_000);
    let child = Command::new(bore)
        .args(["server", "--bind-addr", "127.0.0.1", "--min-port"])
        .arg(low.to_string())
        .arg("--max-port")
        .arg((low + 200).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the bore server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", BORE_CONTROL_PORT)).is_ok()
    });
    Killed(child)
}

fn check(config: &Path, data: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "check", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args, &[]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, report)
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{report:#}"))
}

fn status(report: &Value, name: &str) -> String {
    step(report, name)["status"].as_str().unwrap().to_string()
}

/// The pids of running `bore local <port>` processes.
fn bore_clients(port: u16) -> Vec<String> {
    let want = format!("local\0{port}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            (String::from_utf8_lossy(&cmdline).contains(&want) && !stat.contains(") Z "))
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

fn config_text(port: u16, cert: &Path, extra_auth: &str, token: &str, secret: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[tls]\ncert = \"{c}\"\nkey = \"{c}\"\n\
         [auth]\nmethod = \"bearer\"\ntoken = \"{token}\"\nchallenge_secret = \"{secret}\"\n{extra_auth}\n\
         [tunnel]\ncommand = \"bore local {{port}} --to localhost\"\n",
        c = cert.display()
    )
}

/// A tunnel that ends TLS at its edge with its own certificate and opens a new TLS
/// connection to the receiver, like cloudflared or ngrok http.
fn edge_proxy(ca: &TestCa, dir: &Path, receiver_port: u16) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = ca.server_pem("edge", &["localhost"]);
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_file_iter(ca.write(dir)).unwrap().map(Result::unwrap));
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, connector) = (acceptor.clone(), connector.clone());
                tokio::spawn(async move {
                    let Ok(mut outside) = acceptor.accept(tcp).await else { return };
                    let up = tokio::net::TcpStream::connect(("127.0.0.1", receiver_port)).await.unwrap();
                    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                    let Ok(mut inside) = connector.connect(name, up).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                });
            }
        });
    });
    port
}

#[test]
fn a_real_bore_tunnel_carries_deliveries_and_the_self_test_names_each_broken_path() {
    let bore = bore_binary();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = TestCa::new("Test public CA");
    let ca_file = ca.write(dir.path());
    let cert = dir.path().join("receiver.pem");
    std::fs::write(&cert, ca.server_pem("receiver", &["localhost"])).unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(port, &cert, "", "tunnel-token", "tunnel-secret")).unwrap();

    let server = bore_server(&bore);
    let serve = Serve::start(&config, &data, port, &[], &["--no-popups"]);
    serve.wait_for_line("tunnel is up", Duration::from_secs(30));
    let base = alertray::tunnel::recorded_url(&data).unwrap();
    assert!(base.starts_with("https://localhost:"), "{base}");
    let public_port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(public_port, port, "the URL is the tunnel's, not the receiver's");
    let line = serve.wait_for_line("through the tunnel", Duration::from_secs(5));
    assert!(line.ends_with(&format!("{base}/")), "serve prints the URL to paste: {line}");
    assert_eq!(bore_clients(port).len(), 1, "one bore client runs");

    // Netdata's challenge and a captured body, through the tunnel.
    let client = https_client(ca.pem().as_bytes());
    let answer: Value = client.get(format!("{base}/?crc_token=through-bore")).send().unwrap().json().unwrap();
    assert_eq!(
        answer["response_token"].as_str().unwrap(),
        alertray::challenge::response_token(b"tunnel-secret", "through-bore")
    );
    let body = common::captured("netdata-alert-critical.json");
    let resp = client.post(format!("{base}/")).bearer_auth("tunnel-token").body(body).send().unwrap();
    assert_eq!(resp.status(), 200);
    let cfg_arg = config.to_str().unwrap();
    let data_arg = data.to_str().unwrap();
    let (code, out, _) = run(&["--config", cfg_arg, "--data-dir", data_arg, "alerts", "--json"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("used_swap"), "the alert delivered through the tunnel is active: {out}");

    // The working path: every step passes (the test CA stands in for a public one), but for
    // the warning that this bore server's address is one Netdata Cloud could never reach.
    let (code, report) = check(&config, &data, &["--ca", ca_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["url"].as_str().unwrap(), format!("{base}/"));
    for name in alertray::check::STEPS {
        let expected = if name == "DNS" { "warning" } else { "ok" };
        assert_eq!(status(&report, name), expected, "{name}: {report:#}");
    }
    let dns = step(&report, "DNS")["detail"].as_str().unwrap();
    assert!(dns.contains("127.0.0.1") && dns.contains("which Netdata Cloud cannot reach"), "{dns}");
    let (_, text, _) =
        run(&["--config", cfg_arg, "--data-dir", data_arg, "check", "--ca", ca_file.to_str().unwrap()], &[]);
    assert!(text.ends_with("Nothing failed, but see the warnings above.\n"), "{text}");

    // Without the test CA the certificate is untrusted, and the fix says how to get one.
    let (code, report) = check(&config, &data, &[]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "Certificate"), "failed");
    assert!(step(&report, "Certificate")["fix"].as_str().unwrap().contains("tls.acme"), "{report:#}");

    // Wrong secrets: a config whose token and challenge secret differ from the receiver's.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(&wrong, config_text(port, &cert, "", "old-token", "old-secret")).unwrap();
    let (code, report) = check(&wrong, &data, &["--ca", ca_file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "Challenge"), "failed");
    assert!(step(&report, "Challenge")["detail"].as_str().unwrap().contains("different secret"), "{report:#}");
    assert_eq!(status(&report, "Authentication"), "failed");
    assert!(step(&report, "Authentication")["detail"].as_str().unwrap().contains("401"), "{report:#}");

    // A certificate for the wrong name: the same tunnel reached by IP address.
    let by_ip = format!("https://127.0.0.1:{public_port}/");
    let (code, report) = check(&config, &data, &["--ca", ca_file.to_str().unwrap(), "--url", &by_ip]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "Certificate"), "failed");
    let detail = step(&report, "Certificate")["detail"].as_str().unwrap();
    assert!(detail.contains("not valid for 127.0.0.1") && detail.contains("localhost"), "{detail}");
    assert_eq!(status(&report, "Challenge"), "ok", "only the certificate is wrong");

    // TLS ended at the edge: with client certificates required, the fix says to switch them off.
    let edge = format!("https://localhost:{}/", edge_proxy(&ca, dir.path(), port));
    let required = dir.path().join("required.toml");
    std::fs::write(
        &required,
        config_text(port, &cert, "client_certificate = \"required\"", "tunnel-token", "tunnel-secret"),
    )
    .unwrap();
    let (code, report) = check(&required, &data, &["--ca", ca_file.to_str().unwrap(), "--url", &edge]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "TLS passthrough"), "failed", "{report:#}");
    let fix = step(&report, "TLS passthrough")["fix"].as_str().unwrap();
    assert!(fix.contains("client_certificate") && fix.contains("bearer"), "{fix}");
    assert_eq!(status(&report, "Challenge"), "ok", "the edge forwards the challenge");
    let (code, report) = check(&config, &data, &["--ca", ca_file.to_str().unwrap(), "--url", &edge]);
    assert_eq!(code, 0, "with optional client certificates an edge tunnel works, with a warning: {report:#}");
    assert_eq!(status(&report, "TLS passthrough"), "warning");

    // The tunnel goes down: the bore server stops, the client exits, Alertray restarts it
    // with backoff, and the check says what is wrong.
    drop(server);
    serve.wait_for_line("restarting in", Duration::from_secs(20));
    let (code, report) = check(&config, &data, &["--ca", ca_file.to_str().unwrap(), "--url", &format!("{base}/")]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "Connect"), "failed");
    assert!(step(&report, "Connect")["fix"].as_str().unwrap().contains("tunnel is down"), "{report:#}");
    let (_, report) = check(&config, &data, &[]);
    assert_eq!(status(&report, "Public URL"), "failed", "no URL while the tunnel is down: {report:#}");

    // The server comes back; so does the tunnel, on its own, at the next retry (the backoff
    // grows to a minute while the checks above run on a slow machine).
    let _server = bore_server(&bore);
    serve.wait_for_line("tunnel is up", Duration::from_secs(75));
    let (code, report) = check(&config, &data, &["--ca", ca_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{report:#}");

    // Quitting stops the tunnel process.
    assert_eq!(serve.terminate(), Some(0));
    wait_until("the bore client to exit", Duration::from_secs(5), || bore_clients(port).is_empty());
    assert!(!data.join("tunnel-url").exists());
}
