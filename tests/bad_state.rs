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
            if std::env::var("ALERTRAY_REQUIRE_DESKTOP").as_deref() == Ok("1") {
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
