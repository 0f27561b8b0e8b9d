//! Without a display the app says so and runs as the headless receiver instead of panicking.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn no_display_runs_the_headless_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nmethod = \"bearer\"\ntoken = \"t\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_alertray-app"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("ALERTRAY_CONFIG", &cfg)
        .env("ALERTRAY_DATA_DIR", dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l: &String| l.contains("Listening on https://127.0.0.1")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no listening line; stderr:\n{}", seen.join("\n")),
        }
    }
    assert!(seen.iter().any(|l| l.contains("no display")), "{seen:?}");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM ends it cleanly");
}

/// The command line says what it takes: --help and --version answer, anything else is
/// refused with the usage, before anything starts.
#[test]
fn the_command_line_is_checked_before_anything_starts() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_alertray-app"))
            .args(args)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("ALERTRAY_DATA_DIR", "/nonexistent/alertray-test")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("Usage: alertray-app [--show alerts|settings|guide]"), "{out}");
    let (code, out, _) = run(&["--version"]);
    assert_eq!((code, out.trim()), (Some(0), concat!("alertray-app ", env!("CARGO_PKG_VERSION"))));
    for (args, said) in [
        (&["--bogus"][..], "unknown argument \"--bogus\""),
        (&["--show", "nowhere"][..], "--show takes alerts, settings or guide, not \"nowhere\""),
        (&["--show"][..], "--show takes alerts, settings or guide, not nothing"),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(err.contains(said) && err.contains("Usage:"), "{args:?}: {err}");
    }
}
