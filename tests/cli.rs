//! The `alertray` command line, run as a user would run it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[test]
fn config_init_writes_a_private_valid_file_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sub/config.toml");
    let cfg_s = cfg.to_str().unwrap();
    let (code, out, err) = run(&["config", "init", "--config", cfg_s], &[]);
    assert_eq!(code, 0, "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o600);
        let folder = cfg.parent().unwrap();
        assert_eq!(std::fs::metadata(folder).unwrap().permissions().mode() & 0o777, 0o700, "the folder it made");
    }
    let text = std::fs::read_to_string(&cfg).unwrap();
    let token = text.lines().find(|l| l.starts_with("token = ")).unwrap().to_string();
    assert!(token.len() > 40, "a fresh secret: {token}");
    let (code, out, _) = run(&["--config", cfg_s, "config", "check"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("is valid"));
    let (code, _, err) = run(&["config", "init", "--config", cfg_s], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("already exists and was left as it is: edit it, or move it aside"), "{err}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text, "not overwritten");
    // Two inits make two different secrets.
    let other = dir.path().join("other.toml");
    run(&["config", "init", "--config", other.to_str().unwrap()], &[]);
    let other_token =
        std::fs::read_to_string(&other).unwrap().lines().find(|l| l.starts_with("token = ")).unwrap().to_string();
    assert_ne!(other_token, token);
}

#[test]
fn a_bad_config_exits_2_naming_key_value_and_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[auth]\nmethod = \"oauth\"", "auth.method = \"oauth\"", "\"none\", \"basic\" or \"bearer\""),
        (
            "[server]\nlisten = \"8443\"\n[auth]\nallow_unauthenticated = true",
            "server.listen = \"8443\"",
            "IP address and port",
        ),
        (
            "[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n[store]\nretention_days = -1",
            "store.retention_days = -1",
            "from 0 to 36500",
        ),
        (
            "[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n[server]\nmax_connections = \"lots\"",
            "line 5: server.max_connections = \"lots\"",
            "expected a whole number",
        ),
        ("[auth]\nmethod = \"bearer\"\ntoken = \"t\"\nflavour = 1", "line 4: auth.flavour:", "unknown field `flavour`"),
        ("[auth]\nclient_certificate = \"optional\"", "allow_unauthenticated", "auth.method"),
        // Every mistake at once, not one per run.
        (
            "[server]\nlisten = \"nowhere\"\n[auth]\nmethod = \"digest\"\n[store]\nretention_days = -1",
            "3 settings are not accepted:\n  - server.listen = \"nowhere\"",
            "\n  - auth.method = \"digest\" is not accepted: \"none\", \"basic\" or \"bearer\"\n  - store.retention_days = -1",
        ),
    ];
    for (i, (toml, key, accepted)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, toml).unwrap();
        let (code, out, err) = run(&["config", "check", p.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{toml}: {out}{err}");
        assert!(err.contains(key) && err.contains(accepted), "{toml}: {err}");
        // serve refuses the same config the same way, before binding anything.
        let (code, _, err) =
            run(&["serve", "--config", p.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(key), "{err}");
    }
    // The files named for TLS are read by the check too, and named with what is wrong.
    let ca = TestCa::new("Test CA");
    let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    std::fs::write(&a, ca.server_pem("a", &["a.example"])).unwrap();
    std::fs::write(&b, ca.server_pem("b", &["b.example"])).unwrap();
    let auth = "[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n";
    let files = [
        (format!("[tls]\ncert = {a:?}\nkey = {a:?}\n{auth}"), &[][..]),
        (format!("[tls]\ncert = {a:?}\nkey = {b:?}\n{auth}"), &["is not the key of the certificate"]),
        (format!("[tls]\ncert = \"missing.pem\"\nkey = {a:?}\n{auth}"), &["missing.pem"]),
        // Both files wrong: both named.
        (
            format!("[tls]\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n{auth}"),
            &["tls.cert = ", "missing-cert.pem", "tls.key = ", "missing-key.pem"],
        ),
        (format!("{auth}client_certificate = \"required\"\nclient_ca = \"no-such-ca.pem\"\n"), &["auth.client_ca"]),
        (format!("{auth}client_certificate = \"required\"\nclient_ca = \"Netdata\"\n"), &[][..]),
        (
            format!(
                "[server]\npublic_url = \"https://alerts.example.com/\"\n[tls.acme]\nemail = \"me@example.com\"\n\
                 directory_ca = \"no-such-acme-ca.pem\"\n{auth}"
            ),
            &["tls.acme.directory_ca"],
        ),
    ];
    for (i, (toml, wrong)) in files.iter().enumerate() {
        let p = dir.path().join(format!("tls{i}.toml"));
        std::fs::write(&p, toml).unwrap();
        let (code, out, err) = run(&["config", "check", p.to_str().unwrap()], &[]);
        if wrong.is_empty() {
            assert_eq!(code, 0, "{toml}: {out}{err}");
            continue;
        }
        assert_eq!(code, 2, "{toml}: {out}{err}");
        assert!(wrong.iter().all(|w| err.contains(w)), "{toml}: {err}");
        let data = dir.path().join(format!("data{i}"));
        let (code, _, err) =
            run(&["serve", "--config", p.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], &[]);
        assert_eq!((code, wrong.iter().all(|w| err.contains(w))), (2, true), "{err}");
    }
}

/// A webhook URL with a user name and password in it is refused, and they are not shown.
#[test]
fn check_refuses_credentials_in_the_url_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = write_config(dir.path(), "");
    let data = dir.path().join("data");
    let args = ["--config", cfg.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "check"];
    for json in [true, false] {
        let extra: &[&str] = if json { &["--json"] } else { &[] };
        let (code, out, err) =
            run(&[&args[..], &["--url", "https://netdata:S3CRETPW@localhost:9/"], extra].concat(), &[]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(!out.contains("S3CRETPW") && !err.contains("S3CRETPW"), "{out}{err}");
        assert!(out.contains("holds a user name or password") && out.contains("(hidden)"), "{out}");
        let (code, out, err) =
            run(&[&args[..], &["--url", "http://netdata:S3CRETPW@localhost:9/"], extra].concat(), &[]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(!out.contains("S3CRETPW") && out.contains("is not an https:// URL"), "{out}");
    }
}

/// With a tunnel command set and no tunnel running yet, the guide says where the URL will
/// come from, rather than asking for the tunnel command that is already set.
#[test]
fn the_guide_waits_for_the_configured_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cfg, _) = write_config(dir.path(), "[tunnel]\ncommand = \"bore local {port} --to bore.pub\"\n");
    let (code, out, err) =
        run(&["guide", "--config", cfg.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Webhook URL:        (the tunnel's, once `alertray serve` or the app has started it)"),
        "{out}"
    );
    let (cfg, _) = write_config(dir.path(), "");
    let (_, out, _) = run(&["guide", "--config", cfg.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], &[]);
    assert!(out.contains("(set tunnel.command, or server.public_url"), "{out}");
    assert!(out.contains("Verification token: (press Test in Netdata's form"), "no Test notification yet: {out}");
}

/// What is missing is named, with how to make it.
#[test]
fn a_missing_config_or_store_says_how_to_make_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let m = missing.to_str().unwrap();
    for args in [&["--config", m, "serve"][..], &["--config", m, "config", "check"][..], &["config", "check", m][..]] {
        let (code, _, err) = run(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("there is no config file") && err.contains("config init"), "{args:?}: {err}");
    }
    let empty = dir.path().join("data");
    for args in [&["alerts"][..], &["token"][..], &["alerts", "--history"][..]] {
        let (code, _, err) = run(&[args, &["--data-dir", empty.to_str().unwrap()]].concat(), &[]);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("there is no store at") && err.contains("alertray serve"), "{args:?}: {err}");
        assert!(!err.contains("cannot create"), "{err}");
    }
    // A folder where the database should be, a file where the data dir should be.
    std::fs::create_dir_all(empty.join("alertray.db")).unwrap();
    let (code, _, err) = run(&["alerts", "--data-dir", empty.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("alertray.db is a folder, not a database file"), "{err}");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (cfg, _) = write_config(dir.path(), "");
    let (code, _, err) =
        run(&["serve", "--no-popups", "--config", cfg.to_str().unwrap(), "--data-dir", file.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("it is a file, not a folder"), "{err}");
    let (code, _, err) = run(&["alerts", "--data-dir", file.to_str().unwrap()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("the data dir") && err.contains("is a file, not a folder"), "{err}");
    // A wrong argument is named first, whether or not there is a store.
    let (code, _, err) = run(&["alerts", "--history", "--since", "5M", "--data-dir", empty.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--since \"5M\" is not accepted"), "{err}");
}

#[test]
fn serve_then_read_the_store_from_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::in_dir(dir.path(), "", &[]);
    let (cfg, data) = (serve.config.clone(), serve.data_dir.clone());
    for name in ["netdata-alert-critical.json", "netdata-alert-warning.json", "netdata-token.json"] {
        assert_eq!(serve.post(captured(name)), 200);
    }
    let d = data.to_str().unwrap();
    let c = cfg.to_str().unwrap();
    // Global options before or after the subcommand.
    let (code, out, err) = run(&["--data-dir", d, "alerts", "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let active: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(active.as_array().unwrap().len(), 2);
    assert_eq!(active[0]["level"], "critical");
    let (_, out, _) = run(&["alerts", "--data-dir", d], &[]);
    assert!(out.contains("1 critical, 1 warning") && out.contains("used_swap"), "{out}");
    let (_, out, _) = run(&["alerts", "--history", "--limit", "1", "--json", "--data-dir", d], &[]);
    let hist: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 1);
    assert_eq!(hist[0]["kind"], "test", "newest first");
    let (_, out, _) = run(&["alerts", "--history", "--status", "critical", "--json", "--data-dir", d], &[]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len(), 1);
    let (_, out, _) = run(&["alerts", "--history", "--search", "gn4", "--since", "1h", "--data-dir", d], &[]);
    assert!(out.contains("gn4") && !out.contains("la1"), "{out}");
    // --host: the node's name or its beginning, in any case; LIKE's wildcards are plain text.
    for (host, n) in [("LA1", 1), ("la1.node.garland.slvn.co", 1), ("a1", 0), ("la%", 0), ("_a1", 0)] {
        let (_, out, _) = run(&["alerts", "--history", "--host", host, "--json", "--data-dir", d], &[]);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len(), n, "{host}");
    }
    let (code, _, err) = run(&["alerts", "--history", "--since", "yesterday", "--data-dir", d], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
    // Longer ago than the epoch: everything, not an overflow.
    for since in ["99999999999999d", "999999999999999999999999s"] {
        let (code, out, err) = run(&["alerts", "--history", "--since", since, "--json", "--data-dir", d], &[]);
        assert_eq!(code, 0, "{since}: {err}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len(), 3, "{since}");
    }
    // Test notifications and bodies of no known shape can be listed on their own; a node with
    // no hostname is listed, and found, by its id, as the active list names it.
    assert_eq!(serve.post(r#"{"hello": "world"}"#), 200);
    let flat = r#"{"alarm": "load", "severity": "warning", "message": "load is high",
        "alarm_url": "https://app.netdata.cloud/spaces/s/rooms/r/alerts/x.load:::7d1e2c3b-aaaa-4bbb-8ccc-0123456789ab"}"#;
    assert_eq!(serve.post(flat), 200);
    let listed = |args: &[&str]| {
        let (code, out, err) = run(&[&["alerts", "--history", "--json", "--data-dir", d], args].concat(), &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().clone()
    };
    assert_eq!(listed(&["--status", "test"]).iter().map(|r| r["kind"].clone()).collect::<Vec<_>>(), ["test"]);
    assert_eq!(listed(&["--status", "unknown"]).iter().map(|r| r["kind"].clone()).collect::<Vec<_>>(), ["unknown"]);
    let (_, out, _) = run(&["alerts", "--history", "--host", "nope", "--data-dir", d], &[]);
    assert_eq!(out.trim(), "No stored notification matches.");
    let by_id = listed(&["--host", "7D1E2C3B"]);
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["host"], "7d1e2c3b-aaaa-4bbb-8ccc-0123456789ab");
    // Filters that cannot match, or that only apply to the history, are refused, not ignored.
    for (args, named) in [
        (&["alerts", "--history", "--status", "bogus"][..], "critical"),
        (&["alerts", "--history", "--limit", "0"][..], "--limit"),
        (&["alerts", "--since", "1h"][..], "--history"),
        (&["alerts", "--search", "gn4"][..], "--history"),
    ] {
        let (code, _, err) = run(&[args, &["--data-dir", d]].concat(), &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let (_, out, _) = run(&["token", "--data-dir", d], &[]);
    assert!(out.starts_with("2b633082-34ec-4ec3-946c-5e81076c39af"), "{out}");
    let (_, out, _) = run(&["token", "--json", "--data-dir", d], &[]);
    assert!(out.contains("\"received_ms\""));
    let (_, out, _) = run(&["guide", "--config", c, "--data-dir", d], &[]);
    assert!(
        out.contains("Bearer") && out.contains("test-token") && out.contains("Challenge secret:   secret"),
        "{out}"
    );
    assert!(out.contains("Verification token: 2b633082-34ec-4ec3-946c-5e81076c39af  (from the Test"), "{out}");
    assert_eq!(serve.terminate(), Some(0), "SIGTERM shuts down cleanly");
}

#[test]
fn text_from_a_sender_reaches_the_terminal_as_one_plain_line() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::in_dir(dir.path(), "", &[]);
    let data = serve.data_dir.clone();
    let body = r#"{"message": "ansi \u001b[31mRED\u001b[0m\n2026-11-29T10:00:00Z ERROR alertray: FORGED"}"#;
    assert_eq!(serve.post(body.as_bytes().to_vec()), 200);
    let test = r#"{"message": "Test notification", "token": "tok-\u001b[2J-en\nd"}"#;
    assert_eq!(serve.post(test.as_bytes().to_vec()), 200);
    let d = data.to_str().unwrap();
    let (_, out, _) = run(&["alerts", "--history", "--data-dir", d], &[]);
    let line = out.lines().find(|l| l.contains("RED")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("ansi [31mRED[0m 2026-11-29T10:00:00Z ERROR alertray: FORGED"), "{out}");
    assert!(!out.contains('\u{1b}') && !out.lines().any(|l| l.starts_with("2026-11-29T10:00:00Z")), "{out:?}");
    let (_, out, _) = run(&["token", "--data-dir", d], &[]);
    assert!(out.starts_with("tok-[2J-en d  (received"), "{out:?}");
    // Long text is shortened, in the terminal and in the log; a field's text cannot pass for
    // other fields of the log line.
    let spoof = format!("h alert=spoof level=\\\"Clear\\\" {}", "x".repeat(300));
    let long = format!(
        r#"{{"node": {{"id": "n-long", "hostname": "{spoof}"}}, "alert": {{"name": "name_{}", "state": {{"status": "Critical", "value_str": "{}"}}}}, "message": "{}"}}"#,
        "n".repeat(300),
        "9".repeat(100_000),
        "m".repeat(100_000)
    );
    assert_eq!(serve.post(long.into_bytes()), 200);
    for args in [&["alerts"][..], &["alerts", "--history"]] {
        let (_, out, _) = run(&[args, &["--data-dir", d]].concat(), &[]);
        let line = out.lines().find(|l| l.contains("alert=spoof")).unwrap_or_else(|| panic!("{out}"));
        assert!(line.chars().count() < 500 && line.contains("name_nnn"), "{args:?}: {line}");
    }
    let (_, out, _) = run(&["alerts", "--history", "--data-dir", d], &[]);
    let line = out.lines().find(|l| l.contains("RED")).unwrap();
    assert!(line.contains(" - "), "no alert name shows as -: {line}");
    let log = serve.terminate_and_read_log();
    let raised = log.iter().find(|l| l.contains("alert=spoof")).unwrap_or_else(|| panic!("{log:?}"));
    assert!(raised.contains(r#"host="h alert=spoof level=\"Clear\""#) && raised.len() < 1000, "{raised}");
    assert!(log.iter().all(|l| l.len() < 2000), "a log line of a sender's whole text: {log:?}");
    assert!(log.iter().any(|l| l.contains("unknown shape: \"ansi [31mRED[0m 2026-11-29T10:00:00Z ERROR")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains('\u{1b}')), "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("2026-11-29T10:00:00Z ERROR")), "a forged log line: {log:?}");
}

#[test]
fn first_run_creates_a_config_with_working_defaults() {
    let home = tempfile::tempdir().unwrap();
    let cfg_home = home.path().join("config");
    let data_home = home.path().join("data");
    let mut child = std::process::Command::new(BIN)
        .arg("serve")
        .arg("--no-popups")
        .env_remove("ALERTRAY_CONFIG")
        .env_remove("ALERTRAY_DATA_DIR")
        .env("XDG_CONFIG_HOME", &cfg_home)
        .env("XDG_DATA_HOME", &data_home)
        .env("HOME", home.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cfg = cfg_home.join("alertray/config.toml");
    for _ in 0..100 {
        if cfg.exists() && data_home.join("alertray/tls/cert.pem").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(cfg.exists(), "{err}");
    assert!(err.contains("First run"), "{err}");
    let (code, out, err) = run(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nmethod = \"bearer\"\ntoken = \"t\""))
        .unwrap();
    let (code, _, err) = run(
        &["serve", "--no-popups", "--config", p.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port} (server.listen)")), "{err}");
    // Said once, in plain words.
    assert_eq!(err.matches("cannot listen on").count(), 1, "{err}");
    assert!(err.contains("another program (or another Alertray) is already listening there"), "{err}");
    assert!(!err.contains("os error"), "{err}");
    // With the log turned off, the message is still said, once.
    let (code, _, err) = run(
        &["serve", "--no-popups", "--config", p.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()],
        &[("ALERTRAY_LOG", Path::new("off"))],
    );
    assert_eq!(code, 1);
    assert_eq!(err.matches("cannot listen on").count(), 1, "{err}");
    // A log filter that is none is named, and the default one still logs the failure.
    let (code, _, err) = run(
        &["serve", "--no-popups", "--config", p.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()],
        &[("ALERTRAY_LOG", Path::new("alertray=verbose"))],
    );
    assert_eq!(code, 1);
    assert!(err.contains("ALERTRAY_LOG = \"alertray=verbose\" is not accepted"), "{err}");
    assert_eq!(err.matches("cannot listen on").count(), 1, "{err}");
}

/// ALERTRAY_CONFIG and ALERTRAY_DATA_DIR name the files unless the command line does; set
/// but empty (`ALERTRAY_CONFIG= alertray ...`), they name nothing.
#[test]
fn the_environment_names_the_files_and_an_empty_variable_names_nothing() {
    let home = tempfile::tempdir().unwrap();
    let xdg = [("XDG_CONFIG_HOME", home.path().join("c")), ("XDG_DATA_HOME", home.path().join("d"))];
    let with = |vars: &[(&str, &str)], args: &[&str]| {
        let mut env: Vec<(&str, &Path)> = xdg.iter().map(|(k, v)| (*k, v.as_path())).collect();
        env.extend(vars.iter().map(|(k, v)| (*k, Path::new(v))));
        run(&[&["config", "path"], args].concat(), &env)
    };
    let (code, out, err) = with(&[("ALERTRAY_CONFIG", ""), ("ALERTRAY_DATA_DIR", "")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&home.path().join("c/alertray/config.toml").display().to_string()), "{out}");
    assert!(out.contains(&home.path().join("d/alertray").display().to_string()), "{out}");
    let (code, out, err) = with(&[("ALERTRAY_CONFIG", "/x/a.toml"), ("ALERTRAY_DATA_DIR", "/x/data")], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/x/a.toml") && out.contains("/x/data"), "{out}");
    let (_, out, _) = with(&[("ALERTRAY_CONFIG", "/x/a.toml")], &["--config", "/y/b.toml"]);
    assert!(out.contains("/y/b.toml") && !out.contains("/x/a.toml"), "the command line wins: {out}");
}

/// An edit of the config file by hand is applied while `serve` runs; an edit that does not
/// load, or names TLS files that do not, or a port another program holds, leaves the
/// receiver serving with its settings.
#[test]
fn an_edit_of_the_config_file_is_applied_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::in_dir(dir.path(), "", &[]);
    let body = captured("netdata-alert-critical.json");
    let post = |token: &str| {
        serve.client().post(serve.url()).bearer_auth(token).body(body.clone()).send().unwrap().status().as_u16()
    };
    let edit = |text: &str| save_as_an_editor_does(&serve.config, text);
    assert_eq!(post("test-token"), 200);
    let original = std::fs::read_to_string(&serve.config).unwrap();
    let edited = original.replace("test-token", "edited-token");
    edit(&edited);
    serve.wait_for_line("changed; applying it", Duration::from_secs(10));
    serve.wait_for_line("receiver listening", Duration::from_secs(10));
    assert_eq!(post("edited-token"), 200);
    assert_eq!(post("test-token"), 401);
    // A comment and a blank line: the settings are the same, nothing restarts.
    edit(&format!("# edited by hand\n\n{edited}"));
    serve.wait_for_line("changed, but not its settings", Duration::from_secs(10));
    // Another interface, the same port: applied (the receiver's own port is not "in use").
    let listen = format!("listen = \"127.0.0.1:{}\"", serve.port);
    let everywhere = edited.replace(&listen, &format!("listen = \"0.0.0.0:{}\"", serve.port));
    edit(&everywhere);
    serve.wait_for_line("changed; applying it", Duration::from_secs(10));
    let line = serve.wait_for_line("receiver listening", Duration::from_secs(10));
    assert!(line.contains(&format!("0.0.0.0:{}", serve.port)), "{line}");
    assert_eq!(post("edited-token"), 200);
    // Half-made edits: the receiver keeps serving with the last good settings, and says why.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let broken = [
        (everywhere.replace("method = \"bearer\"", "method = \"bearer"), "is not valid"),
        (everywhere.replace("edited-token", ""), "auth.token"),
        (format!("{everywhere}[tls]\ncert = \"missing.pem\"\nkey = \"missing-key.pem\"\n"), "missing.pem"),
        (everywhere.replace(&format!("0.0.0.0:{}", serve.port), &taken.to_string()), "another program"),
    ];
    for (text, why) in broken {
        edit(&text);
        let line = serve.wait_for_line("the receiver keeps its settings", Duration::from_secs(10));
        assert!(line.contains(why), "{why}: {line}");
        assert_eq!(post("edited-token"), 200, "still serving after {why}");
        // A comment added to an edit left unapplied does not make it "unchanged".
        edit(&format!("# still {why}\n{text}"));
        let line = serve.wait_for_line("the receiver keeps its settings", Duration::from_secs(10));
        assert!(line.contains(why), "{why}, commented: {line}");
    }
    // The last edit, left unapplied for the port another program held, is applied once the
    // port is free, with no edit needed.
    drop(holder);
    serve.wait_for_line("can be applied now; applying it", Duration::from_secs(10));
    let line = serve.wait_for_line("receiver listening", Duration::from_secs(10));
    assert!(line.contains(&taken.to_string()), "{line}");
    // A broken edit undone (a comment kept): the receiver was not restarted for it, nor is it now.
    let moved = everywhere.replace(&format!("0.0.0.0:{}", serve.port), &taken.to_string());
    edit(&moved.replace("edited-token", ""));
    let seen = serve.lines_until("the receiver keeps its settings", Duration::from_secs(10));
    edit(&format!("# put back\n{moved}"));
    let seen = [seen, serve.lines_until("is back to the settings in use", Duration::from_secs(10))].concat();
    assert!(!seen.iter().any(|l| l.contains("applying it") || l.contains("receiver listening")), "{seen:#?}");
    let client = serve.client();
    let at_taken = format!("https://localhost:{}/", taken.port());
    assert_eq!(client.post(&at_taken).bearer_auth("edited-token").body(body.clone()).send().unwrap().status(), 200);
    // Fixed, written in place this time: applied once the file is whole.
    std::fs::write(&serve.config, &original).unwrap();
    serve.wait_for_line("changed; applying it", Duration::from_secs(10));
    serve.wait_for_line("receiver listening", Duration::from_secs(10));
    assert_eq!(post("test-token"), 200);
    // A file that cannot be read is said once, and changes nothing.
    std::fs::remove_file(&serve.config).unwrap();
    serve.wait_for_line("cannot be read", Duration::from_secs(10));
    assert_eq!(post("test-token"), 200);
}

/// A client that holds a request unfinished cannot keep an edited config from being applied,
/// nor hold up the shutdown: the port is let go at once, and a connection with no request in
/// flight has nothing to finish.
#[test]
fn a_slow_client_holds_up_neither_an_edit_nor_the_shutdown() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (config, port) = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config).unwrap().replace("[server]\n", "[server]\nrequest_timeout_secs = 60\n");
    std::fs::write(&config, &text).unwrap();
    let serve = Serve::start(&config, &dir.path().join("data"), port, &[], &["--no-popups"]);
    let mut slow = serve.raw_tls(Duration::from_secs(60));
    slow.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    slow.flush().unwrap();
    // Let the receiver read that much.
    std::thread::sleep(Duration::from_millis(300));
    let edited = std::time::Instant::now();
    std::fs::write(&config, text.replace("token = \"test-token\"", "token = \"edited-token\"")).unwrap();
    serve.wait_for_line("receiver listening", Duration::from_secs(20));
    assert!(edited.elapsed() < Duration::from_secs(15), "the edit waited for the slow client: {:?}", edited.elapsed());
    let body = captured("netdata-alert-critical.json");
    let status = serve.client().post(serve.url()).bearer_auth("edited-token").body(body).send().unwrap().status();
    assert_eq!(status, 200);
    // Another unfinished request, then SIGTERM: the process ends long before the 60 s timeout.
    let mut slow2 = serve.raw_tls(Duration::from_secs(60));
    slow2.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").unwrap();
    slow2.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stopping = std::time::Instant::now();
    assert_eq!(serve.terminate(), Some(0), "SIGTERM ends it cleanly within 10 s");
    assert!(stopping.elapsed() < Duration::from_secs(10), "{:?}", stopping.elapsed());
    drop((slow, slow2));
}

/// The SHA-256 fingerprint `serve` prints at start is the one of the certificate it serves
/// (what the user compares with what their tunnel or client sees).
#[test]
fn the_fingerprint_printed_at_start_is_the_served_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::in_dir(dir.path(), "", &[]);
    let line = serve.wait_for_line("Certificate: ", Duration::from_secs(10));
    let printed = line.split("SHA-256 ").nth(1).unwrap_or_else(|| panic!("{line}")).trim().to_string();
    let pem = std::fs::read(serve.data_dir.join("tls/cert.pem")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_info(true)
        .build()
        .unwrap();
    let resp = client.get(format!("{}?crc_token=fp", serve.url())).send().unwrap();
    let leaf = resp.extensions().get::<reqwest::tls::TlsInfo>().unwrap().peer_certificate().unwrap().to_vec();
    assert_eq!(printed, alertray::tls::fingerprint(&leaf), "{line}");
}

/// One Alertray at a time uses a data dir: a second `serve` on it is refused, naming the
/// first, and can start once the first has stopped. Reading (`alerts`) is always allowed.
#[test]
fn a_second_serve_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Serve::in_dir(dir.path(), "", &[]);
    let other = tempfile::tempdir().unwrap();
    let (config, _) = write_config(other.path(), "");
    let data = first.data_dir.to_str().unwrap().to_string();
    // Killed after 15 s if it runs (the lock not working), so that the test fails, not hangs.
    let mut second = std::process::Command::new(BIN)
        .args(["serve", "--no-popups", "--config", config.to_str().unwrap(), "--data-dir", &data])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while second.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = second.kill();
    let out = second.wait_with_output().unwrap();
    let (code, err) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(code, Some(1), "{err}");
    let pid = first.pid().to_string();
    assert!(err.contains("already uses the data dir") && err.contains(&pid), "{err}");
    assert!(!err.contains("503"), "it stops, so it answers nothing: {err}");
    assert_eq!(first.post(captured("netdata-alert-critical.json")), 200, "the first one is untouched");
    let (code, out, err) = run(&["alerts", "--data-dir", &data], &[]);
    assert!(code == 0 && out.contains("1 critical"), "{out}{err}");
    assert_eq!(first.terminate(), Some(0));
    let port = std::fs::read_to_string(&config).unwrap();
    let port: u16 = port.split("127.0.0.1:").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    let again = Serve::start(&config, std::path::Path::new(&data), port, &[], &["--no-popups"]);
    assert_eq!(again.post(captured("netdata-alert-recovered.json")), 200, "free once the first stopped");
}

/// `alertray ... | head -1`: a reader that goes away ends the command quietly (exit 0), not
/// with a panic about a broken pipe.
#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = write_config(dir.path(), "");
    for args in [&["config", "path"][..], &["guide"], &["config", "check"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--config", cfg.to_str().unwrap(), "--data-dir", dir.path().join("data").to_str().unwrap()])
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
}
