//! Bad local state: a damaged database, a full disk, a corrupt config. Each gives a clear
//! message, nothing is deleted, and nothing is answered 2xx that was not stored.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_damaged_database_is_moved_aside_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let garbage: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("alertray.db"), &garbage).unwrap();
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    let aside: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("alertray.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept beside the new one");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), garbage, "byte for byte");
    assert_eq!(serve.post(captured("netdata-alert-critical.json")), 200);
    let conn = alertray::store::open_reader(&alertray::store::db_path(&data)).unwrap();
    assert_eq!(alertray::store::active(&conn).unwrap().len(), 1);
}

#[test]
fn a_corrupt_config_names_the_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let text = "[server\nlisten = 12\n";
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) =
        run(&["serve", "--config", cfg.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("config.toml is not valid: line 1"), "{err}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text, "left as it was");
}

/// A small tmpfs as the data dir (needs root to mount; CI runs as root).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            if std::env::var("ALERTRAY_REQUIRE_ROOT").as_deref() == Ok("1") {
                panic!("cannot mount a tmpfs (CI runs as root and must be able to)");
            }
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
            return None;
        }
        Some(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_gets_503_never_a_false_2xx_and_recovers() {
    let Some(disk) = SmallDisk::mount("4m") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    let data = disk.path.join("data");
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    // Fill the disk but for a little room.
    let filler = disk.path.join("filler");
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&disk.path).output().unwrap();
    let avail: usize = String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap();
    std::fs::write(&filler, vec![0u8; avail.saturating_sub(256 * 1024)]).unwrap();
    let (mut ok, mut unavailable) = (0, 0);
    for i in 0..400 {
        let body = serde_json::json!({
            "message": format!("Raised to Warning, load, on disk-{i}"),
            "node": {"id": format!("disk-{i}"), "hostname": format!("disk-{i}")},
            "alert": {"name": "load", "state": {"status": "Warning"}, "transition_id": format!("disk-{i}"), "padding": "x".repeat(2000)}
        });
        match serve.post(body.to_string()) {
            200 => ok += 1,
            503 => unavailable += 1,
            other => panic!("unexpected {other}"),
        }
        if unavailable >= 5 {
            break;
        }
    }
    assert!(unavailable >= 5, "the disk never filled ({ok} stored)");
    assert!(ok > 0, "some deliveries fit before the disk filled");
    serve.wait_for_line("could not store a notification", Duration::from_secs(5));
    // Room again: deliveries are stored again, and every 2xx so far is there.
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(serve.post(captured("netdata-alert-critical.json")), 200);
    let conn = alertray::store::open_reader(&alertray::store::db_path(&data)).unwrap();
    let stored = alertray::store::history(&conn, &Default::default()).unwrap();
    assert_eq!(stored.len(), ok + 1, "every 2xx is stored, nothing else");
    eprintln!("full disk: {ok} stored before it filled, then 503 with Retry-After; stored again once room was made");
}

fn challenge_and_post(serve: &Serve) -> (u16, u16, String) {
    let client = serve.client();
    let get = client.get(format!("{}?crc_token=t", serve.url())).send().unwrap().status().as_u16();
    let resp = client
        .post(serve.url())
        .bearer_auth("test-token")
        .body(captured("netdata-alert-critical.json"))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (get, status, resp.text().unwrap())
}

#[test]
fn a_read_only_database_degrades_to_503_and_keeps_the_file() {
    let Some(disk) = SmallDisk::mount("16m") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    // TLS files outside the read-only disk, so that only the store is affected.
    let data = disk.path.join("data");
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    assert_eq!(serve.post(captured("netdata-alert-warning.json")), 200);
    assert_eq!(serve.terminate(), Some(0));
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(data.join("tls").join(f), tls.join(f)).unwrap();
    }
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{cfg_text}\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n")).unwrap();
    let before = std::fs::read(data.join("alertray.db")).unwrap();
    let remount = |mode: &str| {
        let ok = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&disk.path).status().unwrap();
        assert!(ok.success(), "remount {mode}");
    };
    remount("ro");

    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    let line = serve.wait_for_line("Degraded:", Duration::from_secs(10));
    assert!(line.contains("cannot store alerts") && line.contains("alertray.db"), "{line}");
    let (get, post, body) = challenge_and_post(&serve);
    assert_eq!(get, 200, "the challenge is still answered");
    assert_eq!(post, 503, "nothing stored, so no 2xx: {body}");
    assert!(body.contains("could not be stored"), "{body}");
    assert_eq!(std::fs::read(data.join("alertray.db")).unwrap(), before, "the database is untouched");
    assert_eq!(serve.terminate(), Some(0));

    // Writable again: a restart stores again, and the earlier delivery is still there.
    remount("rw");
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    assert_eq!(serve.post(captured("netdata-alert-critical.json")), 200);
    let conn = alertray::store::open_reader(&alertray::store::db_path(&data)).unwrap();
    assert_eq!(alertray::store::history(&conn, &Default::default()).unwrap().len(), 2);
}

#[test]
fn a_wal_that_cannot_be_flushed_stops_the_store_and_nothing_more_is_acknowledged() {
    // The WAL moved away under the running store: SQLite keeps writing its open file, but the
    // flush that must put each group on disk before its 2xx cannot reach it. To the store that
    // is a disk it can no longer trust, as when fdatasync reports an error.
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    let data = dir.path().join("data");
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    assert_eq!(serve.post(captured("netdata-alert-warning.json")), 200);
    let wal = data.join("alertray.db-wal");
    let moved = data.join("moved-wal");
    std::fs::rename(&wal, &moved).unwrap();

    let (get, post, body) = challenge_and_post(&serve);
    assert_eq!(get, 200, "the challenge is still answered");
    assert_eq!(post, 503, "not flushed, so no 2xx: {body}");
    assert!(body.contains("could not be stored"), "{body}");
    let line = serve.wait_for_line("the store stopped", Duration::from_secs(5));
    assert!(line.contains("alertray.db-wal") && line.contains("restart Alertray"), "{line}");
    // Stopped for good: with the file back, a later delivery is still refused, before any write.
    std::fs::rename(&moved, &wal).unwrap();
    let later = serde_json::json!({"message": "Raised to Critical, x, on later", "alert": {"name": "later", "transition_id": "later-1"}});
    assert_eq!(serve.post(later.to_string()), 503);
    let line = serve.wait_for_line("the store stopped after a disk error", Duration::from_secs(5));
    assert!(line.contains("status=503"), "{line}");
    // "Check connection" says so too, as a delivery would be answered.
    let check = serve
        .client()
        .post(serve.url())
        .bearer_auth("test-token")
        .header(alertray::check::CHECK_HEADER, "1")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(
        (check.status().as_u16(), check.headers().get("retry-after").map(|v| v.to_str().unwrap())),
        (503, Some("30"))
    );
    let line = serve.wait_for_line("connection check refused", Duration::from_secs(5));
    assert!(line.contains("status=503") && line.contains("alertray.db-wal"), "{line}");
    assert_eq!(serve.terminate(), Some(0));

    // The acknowledged delivery is there after a restart (the refused one may be too: Netdata's
    // retry is then taken as a duplicate), and the store works again.
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    assert_eq!(serve.post(later.to_string()), 200);
    let conn = alertray::store::open_reader(&alertray::store::db_path(&data)).unwrap();
    let stored = alertray::store::history(&conn, &Default::default()).unwrap();
    assert!(stored.iter().any(|h| h.status.as_deref() == Some("warning")), "{stored:?}");
    assert_eq!(stored.iter().filter(|h| h.name.as_deref() == Some("later")).count(), 1, "{stored:?}");
}

/// Runs `alertray serve` as the unprivileged user `nobody` (root ignores file permissions),
/// from a copy of the binary that user can reach.
#[cfg(unix)]
fn serve_as_nobody(dir: &std::path::Path, cfg: &std::path::Path, data: &std::path::Path) -> Option<Command> {
    if Command::new("setpriv").arg("--version").output().is_err() || !nix_is_root() {
        if std::env::var("ALERTRAY_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("this test needs root and setpriv (CI runs as root)");
        }
        eprintln!("SKIPPED: needs root and setpriv");
        return None;
    }
    let bin = dir.join("alertray");
    std::fs::copy(BIN, &bin).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["serve", "--no-popups", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .env("ALERTRAY_LOG", "alertray=info,warn");
    Some(c)
}

#[cfg(unix)]
fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[cfg(unix)]
#[test]
fn a_data_dir_without_permission_is_explained_and_nothing_is_stored_falsely() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A data dir that belongs to root, closed to everyone else.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let Some(mut cmd) = serve_as_nobody(dir.path(), &cfg, &data) else { return };

    // The self-signed certificate lives in the data dir too, so the receiver cannot start:
    // the message names the folder and the reason, and the exit code says it failed.
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(data.to_str().unwrap()) && err.contains("Permission denied"), "{err}");

    // With certificate files it can read, it runs degraded: challenges answered, deliveries 503.
    let ca = TestCa::new("bad-state CA");
    let pem = dir.path().join("server.pem");
    std::fs::write(&pem, ca.server_pem("localhost", &["localhost"])).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[tls]\ncert = \"{p}\"\nkey = \"{p}\"\n", p = pem.display())).unwrap();
    let mut child =
        serve_as_nobody(dir.path(), &cfg, &data).unwrap().stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep reading stderr to the end, so that the server never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let done = line.starts_with("Degraded:");
        seen.push(line);
        if done {
            break;
        }
    }
    let degraded = seen.last().cloned().unwrap_or_default();
    assert!(degraded.contains("Permission denied"), "{}", seen.join("\n"));
    let client = https_client(ca.pem().as_bytes());
    let url = format!("https://localhost:{port}/");
    assert_eq!(client.get(format!("{url}?crc_token=x")).send().unwrap().status(), 200);
    let resp =
        client.post(&url).bearer_auth("test-token").body(captured("netdata-alert-critical.json")).send().unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "nothing was written into the data dir");
}
