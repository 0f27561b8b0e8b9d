//! The running core as the desktop shell drives it: reloading the config, acknowledging,
//! snoozing, and what survives a restart.

use std::sync::Arc;

use alertray::alerts::Level;
use alertray::app::{Alertray, Paths, ReceiverStatus};
use alertray::config::Config;
use alertray::policy::{Snooze, SnoozeScope};
use alertray::store::{self, SnoozeChange};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

fn cfg(extra: &str) -> Config {
    Config::from_toml(&format!("[server]\nlisten = \"127.0.0.1:0\"\n{BEARER}{extra}")).unwrap()
}

fn client_for(core_dir: &std::path::Path, addr: &str) -> (reqwest::Client, String) {
    let pem = std::fs::read(core_dir.join("tls/cert.pem")).unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let c = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    (c, format!("https://localhost:{}/", addr.port()))
}

fn addr_of(s: &ReceiverStatus) -> String {
    match s {
        ReceiverStatus::Running { addr, .. } => addr.clone(),
        other => panic!("not running: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_stops_the_receiver_with_the_key_and_a_good_one_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths { config_file: dir.path().join("c.toml"), data_dir: dir.path().join("data") };
    let core = Alertray::open(paths);
    let mut failures = core.events.subscribe();
    let addr = addr_of(&core.apply(Ok(cfg(""))).await);
    let (c, url) = client_for(&dir.path().join("data"), &addr);
    let r = c.post(&url).bearer_auth("test-token").body(captured("netdata-alert-critical.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let bad = Config::from_toml("[auth]\nmethod = \"bearer\"");
    let status = core.apply(bad).await;
    match &status {
        ReceiverStatus::Stopped { key, reason } => {
            assert_eq!(key.as_deref(), Some("auth.token"));
            assert!(reason.contains("auth.token"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(core.status(), status);
    // A new connection (the pooled one closes on its own time, as its task gets to it).
    let (fresh, _) = client_for(&dir.path().join("data"), &addr);
    assert!(fresh.post(&url).body("{}").send().await.is_err(), "nothing listens any more");
    let mut saw_failure = false;
    while let Ok(e) = failures.try_recv() {
        saw_failure |= matches!(e, alertray::alerts::Event::ReceiverFailed { .. });
    }
    assert!(saw_failure);

    // A good config again: a new port, the same store.
    let addr = addr_of(&core.apply(Ok(cfg(""))).await);
    let (c, url) = client_for(&dir.path().join("data"), &addr);
    let r = c.post(&url).bearer_auth("test-token").body(captured("netdata-alert-warning.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let active = store::active(&core.reader().unwrap()).unwrap();
    assert_eq!(active.len(), 2);
    core.stop().await;
}

/// The shell redraws the tray when the receiver's events arrive, reading the status then:
/// each event must find the status it announces already in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_events_find_the_status_they_announce() {
    use alertray::alerts::Event;
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths { config_file: dir.path().join("c.toml"), data_dir: dir.path().join("data") };
    let core = Arc::new(Alertray::open(paths));
    let mut events = core.events.subscribe();
    // A subscriber on another thread reads the status the moment each event wakes it.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let watcher = {
        let core = core.clone();
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(Event::Listening { addr, .. }) => Some(addr),
                    Ok(Event::ReceiverFailed { .. }) => None,
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if seen_tx.send((event, core.status())).is_err() {
                    break;
                }
            }
        })
    };
    for _ in 0..25 {
        // One change at a time, so the status read is this change's.
        core.apply(Ok(cfg(""))).await;
        let (listening, status) = seen.recv().await.unwrap();
        match (listening, &status) {
            (Some(addr), ReceiverStatus::Running { addr: now, .. }) => assert_eq!(&addr, now),
            other => panic!("after a start: {other:?}"),
        }
        core.apply(Config::from_toml("[auth]\nmethod = \"bearer\"")).await;
        let (listening, status) = seen.recv().await.unwrap();
        assert!(listening.is_none() && matches!(status, ReceiverStatus::Stopped { .. }), "{listening:?} {status:?}");
    }
    core.stop().await;
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_and_snoozes_survive_a_restart_and_escalation_drops_the_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths { config_file: dir.path().join("c.toml"), data_dir: dir.path().join("data") };
    let warning: Value = serde_json::from_slice(&captured("netdata-alert-warning.json")).unwrap();
    let key;
    {
        let core = Alertray::open(paths.clone());
        let addr = addr_of(&core.apply(Ok(cfg(""))).await);
        let (c, url) = client_for(&paths.data_dir, &addr);
        c.post(&url).bearer_auth("test-token").body(warning.to_string()).send().await.unwrap();
        key = store::active(&core.reader().unwrap()).unwrap()[0].key.clone();
        assert!(core.store.acknowledge(&key, true).await.unwrap());
        assert!(!core.store.acknowledge("no such key", true).await.unwrap());
        let until = store::now_ms() + 3_600_000;
        core.snooze(SnoozeChange::Set(Snooze {
            scope: SnoozeScope::Node("gn4.node.garland.slvn.co".into()),
            until_ms: until,
        }))
        .await
        .unwrap();
        core.snooze(SnoozeChange::Set(Snooze { scope: SnoozeScope::All, until_ms: until })).await.unwrap();
        core.snooze(SnoozeChange::Clear(SnoozeScope::All)).await.unwrap();
        assert_eq!(core.policy.get().snoozes.len(), 1);
        core.stop().await;
    }
    let core = Arc::new(Alertray::open(paths.clone()));
    let snoozes = core.policy.get().snoozes;
    assert_eq!(snoozes.len(), 1, "{snoozes:?}");
    assert_eq!(snoozes[0].scope, SnoozeScope::Node("gn4.node.garland.slvn.co".into()));
    let active = store::active(&core.reader().unwrap()).unwrap();
    assert!(active[0].acknowledged, "the acknowledgement survived");

    // Escalation to Critical drops it.
    let addr = addr_of(&core.apply(Ok(cfg(""))).await);
    let (c, url) = client_for(&paths.data_dir, &addr);
    let mut escalated = warning.clone();
    escalated["alert"]["state"]["status"] = "Critical".into();
    escalated["alert"]["transition_id"] = "escalation".into();
    escalated["alert"]["triggered_at"] = "2026-04-10T20:30:00-06:00".into();
    c.post(&url).bearer_auth("test-token").body(escalated.to_string()).send().await.unwrap();
    let active = store::active(&core.reader().unwrap()).unwrap();
    assert_eq!(active[0].key, key);
    assert_eq!(active[0].level, Level::Critical);
    assert!(!active[0].acknowledged, "escalation dropped the acknowledgement");
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_alert_leaves_the_active_list_for_good_until_raised_again() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths { config_file: dir.path().join("c.toml"), data_dir: dir.path().join("data") };
    let unreachable = captured("netdata-reachability-unreachable.json");
    let key;
    {
        let core = Alertray::open(paths.clone());
        let addr = addr_of(&core.apply(Ok(cfg(""))).await);
        let (c, url) = client_for(&paths.data_dir, &addr);
        c.post(&url).bearer_auth("test-token").body(unreachable.clone()).send().await.unwrap();
        c.post(&url).bearer_auth("test-token").body(captured("netdata-alert-warning.json")).send().await.unwrap();
        let active = store::active(&core.reader().unwrap()).unwrap();
        assert_eq!(active.len(), 2);
        key = active.iter().find(|a| a.level == Level::Unreachable).unwrap().key.clone();
        assert!(core.store.dismiss(&key).await.unwrap());
        assert!(!core.store.dismiss(&key).await.unwrap(), "no longer active");
        assert!(!core.store.dismiss("no such key").await.unwrap());
        let active = store::active(&core.reader().unwrap()).unwrap();
        assert_eq!(active.len(), 1);
        assert_ne!(active[0].key, key);
        core.stop().await;
    }
    // After a restart it is still gone, and still in history.
    let core = Alertray::open(paths.clone());
    let active = store::active(&core.reader().unwrap()).unwrap();
    assert!(active.iter().all(|a| a.key != key), "{active:?}");
    let history = store::history(&core.reader().unwrap(), &Default::default()).unwrap();
    assert_eq!(history.len(), 2);
    // The node going down again (a new transition) makes it active again.
    let addr = addr_of(&core.apply(Ok(cfg(""))).await);
    let (c, url) = client_for(&paths.data_dir, &addr);
    c.post(&url).bearer_auth("test-token").body(captured("netdata-reachability-reachable.json")).send().await.unwrap();
    c.post(&url).bearer_auth("test-token").body(unreachable).send().await.unwrap();
    let active = store::active(&core.reader().unwrap()).unwrap();
    assert!(active.iter().any(|a| a.key == key && a.level == Level::Unreachable), "{active:?}");
    core.stop().await;
}

/// A delivery of `body` received at `received_ms`, as the receiver hands it to the store.
fn delivery_at(body: Vec<u8>, received_ms: i64) -> store::Delivery {
    let notification = alertray::payload::parse(&body).unwrap();
    store::Delivery { body, notification, received_ms, peer: "t".into(), auth: "t".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_retention_is_pruned_but_active_alerts_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let day = 86_400_000;
    let now = store::now_ms();
    {
        let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
        // 100 days old: a recovery (history only) and a critical that is still active.
        s.record(delivery_at(captured("netdata-alert-recovered.json"), now - 100 * day)).await.unwrap();
        s.record(delivery_at(captured("netdata-alert-critical.json"), now - 100 * day)).await.unwrap();
        s.record(delivery_at(captured("netdata-alert-warning.json"), now - day)).await.unwrap();
    }
    // Reopening with 90 days of retention prunes at start.
    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 90).unwrap();
    let conn = store::open_reader(&db).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let kinds: Vec<_> = store::history(&conn, &Default::default()).unwrap().into_iter().map(|h| h.status).collect();
        if kinds.len() == 2 {
            assert!(!kinds.contains(&Some("clear".to_string())), "{kinds:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not pruned: {kinds:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(store::active(&conn).unwrap().len(), 2, "active alerts are never pruned");
    drop(s);
}

/// A node's clock ahead of ours (or a date in the far future) dates an alert after its
/// arrival: its later changes still apply, before a restart and after one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_dated_in_the_future_still_clears() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let body = |status: &str, name: &str, at: serde_json::Value| {
        serde_json::json!({
            "node": {"id": "n-fut", "hostname": "h-fut"},
            "alert": {"name": name, "state": {"status": status}, "triggered_at": at}
        })
        .to_string()
        .into_bytes()
    };
    let now = store::now_ms();
    let active = |s: &store::Store| store::active(&store::open_reader(s.path()).unwrap()).unwrap();
    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    for (name, at) in [("far", serde_json::json!("2099-01-01T00:00:00Z")), ("ms", serde_json::json!(now + 3_600_000))] {
        s.record(delivery_at(body("Critical", name, at), now)).await.unwrap();
        assert!(active(&s).iter().any(|a| a.name == name), "{name} raised");
        // Dated by our clock, received a second later.
        let clear = body("Clear", name, serde_json::json!((now + 500) as f64 / 1000.0));
        s.record(delivery_at(clear, now + 1000)).await.unwrap();
        assert!(!active(&s).iter().any(|a| a.name == name), "{name} cleared: {:?}", active(&s));
    }
    // The same across a restart, which reads the order back from the stored notifications.
    s.record(delivery_at(body("Warning", "restart", serde_json::json!("2099-01-01T00:00:00Z")), now)).await.unwrap();
    drop(s);
    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    assert!(active(&s).iter().any(|a| a.name == "restart"));
    s.record(delivery_at(body("Clear", "restart", serde_json::json!((now + 500) as f64 / 1000.0)), now + 1000))
        .await
        .unwrap();
    assert!(!active(&s).iter().any(|a| a.name == "restart"), "{:?}", active(&s));
    // A node a minute ahead of us keeps the order it gives: its older clear, arriving after
    // the raise, changes nothing.
    s.record(delivery_at(body("Critical", "ahead", serde_json::json!((now + 60_000) as f64 / 1000.0)), now))
        .await
        .unwrap();
    s.record(delivery_at(body("Clear", "ahead", serde_json::json!((now + 30_000) as f64 / 1000.0)), now + 1000))
        .await
        .unwrap();
    assert!(active(&s).iter().any(|a| a.name == "ahead"), "an older clear from a node slightly ahead applied");
    // Still, a clear dated before the raise is older than it and changes nothing.
    s.record(delivery_at(body("Critical", "order", serde_json::json!(now / 1000)), now)).await.unwrap();
    s.record(delivery_at(body("Clear", "order", serde_json::json!(now / 1000 - 60)), now + 1000)).await.unwrap();
    assert!(active(&s).iter().any(|a| a.name == "order"), "an older clear left it active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_deliveries_pause_the_database_file_alone_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    for name in ["netdata-alert-critical.json", "netdata-reachability-unreachable.json"] {
        s.record(delivery_at(captured(name), store::now_ms())).await.unwrap();
    }
    // The WAL is emptied about a second after the last write; a copy of the database file
    // without it (a naive backup) then holds everything.
    let wal = dir.path().join("alertray.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0 {
        assert!(std::time::Instant::now() < deadline, "the WAL was never emptied");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&db, copy.path().join("alertray.db")).unwrap();
    let conn = store::open_reader(&copy.path().join("alertray.db")).unwrap();
    assert_eq!(store::history(&conn, &Default::default()).unwrap().len(), 2);
    assert_eq!(store::active(&conn).unwrap().len(), 2, "the alert and the unreachable node");
    drop(s);
}

/// A database written by the previous release (schema 2, the active set under alert keys)
/// is updated in place when opened: every active alert, with its start and its
/// acknowledgement, is still active, and later deliveries clear and acknowledge them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_2_database_is_updated_and_keeps_its_active_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let before = {
        let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
        for name in
            ["netdata-alert-critical.json", "netdata-alert-warning.json", "netdata-reachability-unreachable.json"]
        {
            s.record(delivery_at(captured(name), store::now_ms())).await.unwrap();
        }
        let conn = store::open_reader(&db).unwrap();
        let active = store::active(&conn).unwrap();
        assert_eq!(active.len(), 3);
        assert!(s.acknowledge(&active[1].key, true).await.unwrap());
        store::active(&conn).unwrap()
    };
    // Rewrite the active set the way schema 2 stored it, as the previous release left it.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE active_v2 (
                 key TEXT PRIMARY KEY, notification_id INTEGER NOT NULL, since_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL, acknowledged INTEGER NOT NULL DEFAULT 0
             ) WITHOUT ROWID;",
        )
        .unwrap();
        for a in &before {
            conn.execute(
                "INSERT INTO active_v2 SELECT ?1, notification_id, since_ms, updated_ms, acknowledged
                 FROM active WHERE notification_id = ?2",
                rusqlite::params![a.key, a.notification_id],
            )
            .unwrap();
        }
        conn.execute_batch("DROP TABLE active; ALTER TABLE active_v2 RENAME TO active; PRAGMA user_version = 2;")
            .unwrap();
    }

    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    let conn = store::open_reader(&db).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 5);
    let after = store::active(&conn).unwrap();
    let summary = |v: &[alertray::alerts::Alert]| {
        v.iter().map(|a| (a.key.clone(), a.notification_id, a.since_ms, a.acknowledged)).collect::<Vec<_>>()
    };
    assert_eq!(summary(&after), summary(&before));

    // The critical alert recovers: its entry, found by the notification that set it, goes.
    let mut clear: Value = serde_json::from_slice(&captured("netdata-alert-critical.json")).unwrap();
    clear["alert"]["state"]["status"] = "Clear".into();
    clear["alert"]["transition_id"] = "2f5b3d9e-0b7e-4d59-9a51-6a3c1f0e7d11".into();
    clear["alert"]["triggered_at"] = "2026-04-10T23:11:48-05:00".into();
    let critical = before.iter().find(|a| a.level == Level::Critical).unwrap().key.clone();
    s.record(delivery_at(serde_json::to_vec(&clear).unwrap(), store::now_ms())).await.unwrap();
    // Acknowledging another one still reaches its row.
    let other = after.iter().find(|a| a.key != critical && !a.acknowledged).unwrap().key.clone();
    assert!(s.acknowledge(&other, true).await.unwrap());
    let now = store::active(&conn).unwrap();
    assert_eq!(now.len(), 2, "{:?}", summary(&now));
    assert!(now.iter().all(|a| a.key != critical));
    assert!(now.iter().all(|a| a.acknowledged), "{:?}", summary(&now));
    drop(s);

    // And a restart restores exactly that.
    let _s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    assert_eq!(summary(&store::active(&conn).unwrap()), summary(&now));
}

/// A schema 3 database (one active entry per notification, keys with the space's id in
/// them) reads as it is, and is updated in place when the writer opens it: every entry is
/// kept, keys and alert snoozes are recomputed, and two entries of one alert (raised once in
/// each shape, which schema 3 kept apart) become the newest one, with the longer snooze.
/// Schema 4 joined a key's parts without escaping the separators inside them, so alert `c`
/// on chart `a|b` and alert `b|c` on chart `a` shared a key: one raised, the other cleared it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_4_database_is_updated_to_keys_that_tell_such_alerts_apart() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let alert = |chart: &str, name: &str, status: &str, tid: &str| {
        let mut v: Value = serde_json::from_slice(&captured("netdata-alert-critical.json")).unwrap();
        v["alert"]["chart"]["id"] = chart.into();
        v["alert"]["name"] = name.into();
        v["alert"]["state"]["status"] = status.into();
        v["alert"]["transition_id"] = tid.into();
        delivery_at(serde_json::to_vec(&v).unwrap(), store::now_ms())
    };
    let until_ms = store::now_ms() + 3_600_000;
    let key = {
        let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
        s.record(alert("a|b", "c", "Critical", "t1")).await.unwrap();
        let key = store::active(&store::open_reader(&db).unwrap()).unwrap()[0].key.clone();
        assert!(key.ends_with(r"|a\|b|c"), "{key}");
        s.snooze(SnoozeChange::Set(Snooze { scope: SnoozeScope::Alert(key.clone()), until_ms })).await.unwrap();
        key
    };
    // As schema 4 left it: the parts joined as they are.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            r"UPDATE notifications SET alert_key = replace(alert_key, '\|', '|');
              UPDATE snoozes SET target = replace(target, '\|', '|');
              PRAGMA user_version = 4;",
        )
        .unwrap();
    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    let conn = store::open_reader(&db).unwrap();
    assert_eq!(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), 5);
    let stored: String = conn.query_row("SELECT alert_key FROM notifications", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, key);
    let snoozed: Vec<Snooze> = store::snoozes(&conn).unwrap();
    assert_eq!(snoozed, [Snooze { scope: SnoozeScope::Alert(key.clone()), until_ms }]);
    // The other alert is its own: raised beside the first, and cleared without it.
    s.record(alert("a", "b|c", "Warning", "t2")).await.unwrap();
    assert_eq!(store::active(&conn).unwrap().len(), 2);
    s.record(alert("a", "b|c", "Clear", "t3")).await.unwrap();
    let left: Vec<(String, String)> = store::active(&conn).unwrap().into_iter().map(|a| (a.key, a.name)).collect();
    assert_eq!(left, [(key, "c".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_3_database_is_updated_and_keeps_its_active_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    let flat_warning = serde_json::json!({
        "message": "Raised to Warning, System swap memory utilization = 80%, on la1.node.garland.slvn.co",
        "alarm": "used_swap", "chart": "mem.swap", "space": "Slvn.co", "severity": "warning",
        "date": "2026-04-10T23:30:00-05:00",
        "alarm_url": "https://app.netdata.cloud/spaces/slvn-co/rooms/all-nodes/alerts/mem.swap.used_swap:::e84d4453-cb1f-48b5-abfd-0a82629712bd"
    });
    let (nested_id, flat_id) = {
        let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
        let nested = s.record(delivery_at(captured("netdata-alert-critical.json"), store::now_ms())).await.unwrap();
        s.record(delivery_at(captured("netdata-reachability-unreachable.json"), store::now_ms())).await.unwrap();
        let flat = s.record(delivery_at(serde_json::to_vec(&flat_warning).unwrap(), store::now_ms())).await.unwrap();
        let node = store::active(&store::open_reader(&db).unwrap()).unwrap();
        let node = node.iter().find(|a| a.level == Level::Unreachable).unwrap().key.clone();
        assert!(s.acknowledge(&node, true).await.unwrap());
        (nested.id, flat.id)
    };
    // Schema 3 as the previous release left it: its own keys, and both raises of the alert
    // active, each under its own key, each with a snooze.
    let far = store::now_ms() + 3_600_000;
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE active_v3 (
                 notification_id INTEGER PRIMARY KEY, since_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL, acknowledged INTEGER NOT NULL DEFAULT 0
             );
             INSERT INTO active_v3 SELECT notification_id, since_ms, updated_ms, acknowledged FROM active;
             INSERT INTO active_v3 VALUES ({nested_id}, 1, 1, 0);
             DROP TABLE active; ALTER TABLE active_v3 RENAME TO active; PRAGMA user_version = 3;
             UPDATE notifications SET alert_key = 'v3|' || id WHERE alert_key IS NOT NULL;
             INSERT INTO snoozes VALUES ('alert', 'v3|{nested_id}', {far}), ('alert', 'v3|{flat_id}', {later});",
            later = far + 60_000
        ))
        .unwrap();
    let summary = |v: &[alertray::alerts::Alert]| {
        let mut v: Vec<_> = v.iter().map(|a| (a.key.clone(), a.notification_id, a.acknowledged)).collect();
        v.sort();
        v
    };

    // Before the writer updates it, the store reads as it is, one entry per alert.
    let conn = store::open_reader(&db).unwrap();
    let before = store::active(&conn).unwrap();
    assert_eq!(before.len(), 2, "{:?}", summary(&before));
    assert!(before.iter().any(|a| a.notification_id == flat_id && a.level == Level::Warning));
    assert!(before.iter().any(|a| a.level == Level::Unreachable && a.acknowledged));
    assert_eq!(store::history(&conn, &Default::default()).unwrap().len(), 3);

    let s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    assert_eq!(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), 5);
    assert_eq!(summary(&store::active(&conn).unwrap()), summary(&before));
    let rows: i64 = conn.query_row("SELECT count(*) FROM active", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 2, "the older entry of the alert is gone from the table");
    let swap = before.iter().find(|a| a.notification_id == flat_id).unwrap().key.clone();
    let snoozed: Vec<(String, String, i64)> = conn
        .prepare("SELECT scope, target, until_ms FROM snoozes")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(snoozed, [("alert".to_string(), swap.clone(), far + 60_000)], "one snooze, the longer");

    // The writer knows the newest stored transition under the recomputed key: a clear older
    // than the raises changes nothing; a newer one clears the alert, for good.
    let mut clear: Value = serde_json::from_slice(&captured("netdata-alert-critical.json")).unwrap();
    clear["alert"]["state"]["status"] = "Clear".into();
    clear["alert"]["transition_id"] = "0c6f3b1e-9d7a-4e0f-8a51-3b2c1d0e9f87".into();
    clear["alert"]["triggered_at"] = "2026-04-10T21:00:00-05:00".into();
    s.record(delivery_at(serde_json::to_vec(&clear).unwrap(), store::now_ms())).await.unwrap();
    assert!(store::active(&conn).unwrap().iter().any(|a| a.key == swap), "a late clear cleared the alert");
    clear["alert"]["transition_id"] = "7a1e2d3c-4b5a-4697-8877-665544332211".into();
    clear["alert"]["triggered_at"] = "2026-04-11T01:00:00-05:00".into();
    s.record(delivery_at(serde_json::to_vec(&clear).unwrap(), store::now_ms())).await.unwrap();
    assert!(store::active(&conn).unwrap().iter().all(|a| a.key != swap));
    drop(s);
    let _s = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap();
    let after: Vec<_> = store::active(&conn).unwrap().into_iter().map(|a| a.level).collect();
    assert_eq!(after, [Level::Unreachable], "the cleared alert stays cleared after a restart");
}

/// A database from a newer Alertray is refused with the versions named, and left as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_release_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = store::db_path(dir.path());
    drop(store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).unwrap());
    rusqlite::Connection::open(&db).unwrap().execute_batch("PRAGMA user_version = 9;").unwrap();
    let err = store::Store::open(&db, tokio::sync::broadcast::channel(16).0, 0).err().expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("schema version 9") && msg.contains("version 5"), "{msg}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), 9);
}

/// A restart on the same address (an edit of the credentials, say) keeps the listening
/// socket, and lets the connections the old receiver had just accepted send their request: a
/// client connecting meanwhile is answered, by one receiver or the other, never refused or
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_address_answers_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths { config_file: dir.path().join("c.toml"), data_dir: dir.path().join("data") };
    let core = Alertray::open(paths);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let with_token = |token: &str| {
        let text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{BEARER}").replace("test-token", token);
        Config::from_toml(&text).unwrap()
    };
    let addr = addr_of(&core.apply(Ok(with_token("first-token"))).await);
    let (c, url) = client_for(&dir.path().join("data"), &addr);
    // A new connection for every request: the challenge, asked over and over while the
    // receiver restarts.
    let fresh = {
        let pem = std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .resolve("localhost", addr.parse().unwrap())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut askers = Vec::new();
    for _ in 0..2 {
        let (stop, fresh, url) = (stop.clone(), fresh.clone(), format!("{url}?crc_token=t"));
        askers.push(tokio::spawn(async move {
            let (mut answered, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match fresh.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => answered += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (answered, failed)
        }));
    }
    for round in 0..10 {
        let token = if round % 2 == 0 { "second-token" } else { "first-token" };
        assert_eq!(addr_of(&core.apply(Ok(with_token(token))).await), addr);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answered, mut failed) = (0, Vec::new());
    for asker in askers {
        let (a, f) = asker.await.unwrap();
        answered += a;
        failed.extend(f);
    }
    assert!(answered > 20, "{answered} answered");
    assert!(failed.is_empty(), "{} of {} failed: {:?}", failed.len(), answered + failed.len(), failed.first());
    // The last settings are the ones in use.
    let post =
        |token: &'static str| c.post(&url).bearer_auth(token).body(captured("netdata-alert-warning.json")).send();
    assert_eq!(post("second-token").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post("first-token").await.unwrap().status(), StatusCode::OK);
    // Stopping, the port is free at once, while a connection that has sent nothing yet
    // gets its moment to.
    let pem = std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap();
    let _open = connect(addr.parse().unwrap(), client_config(&pem)).await.unwrap();
    let stopping = core.stop();
    tokio::pin!(stopping);
    let freed = async {
        while std::net::TcpListener::bind(addr.as_str()).is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = &mut stopping => panic!("the port was still taken when the receiver had stopped"),
        _ = freed => {}
    }
    stopping.await;
}
