//! The shell's commands, invoked through Tauri's IPC on the mock runtime, over a real core
//! (real store in a temp dir, real receiver on a loopback port).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alertray::alerts::Event;
use alertray::app::{Alertray, Paths, ReceiverStatus};
use alertray::store::Delivery;
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::WebviewWindow;

struct Harness {
    core: Arc<Alertray>,
    window: WebviewWindow<MockRuntime>,
    _app: tauri::App<MockRuntime>,
    _dir: tempfile::TempDir,
}

const GOOD_CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nclient_certificate = \"off\"\nmethod = \"bearer\"\ntoken = \"tok\"\nchallenge_secret = \"sec\"\n";

fn harness() -> Harness {
    let h = harness_with(GOOD_CONFIG);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(h.core.status(), ReceiverStatus::Running { .. }) {
        assert!(Instant::now() < deadline, "the receiver did not start: {:?}", h.core.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    h
}

fn harness_with(config: &str) -> Harness {
    harness_in(tempfile::tempdir().unwrap(), config)
}

fn harness_in(dir: tempfile::TempDir, config: &str) -> Harness {
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    harness_at(dir)
}

/// The app started on `dir/config.toml` as it is (or is not) there.
fn harness_at(dir: tempfile::TempDir) -> Harness {
    let config_file = dir.path().join("config.toml");
    let paths = Paths { config_file, data_dir: dir.path().join("data") };
    let core = Arc::new(Alertray::open(paths));
    let mut app = alertray_app::build_app(
        mock_builder(),
        mock_context(noop_assets()),
        core.clone(),
        dir.path().join("logs"),
        alertray_app::ShellOptions { tray: false },
    )
    .unwrap();
    // The window the commands are invoked from, made before the app's setup runs: setup may
    // open a window of its own from another thread (Settings, for a bad config), and the mock
    // runtime cannot make two windows at once (its window table is a RefCell).
    let window = tauri::WebviewWindowBuilder::new(&app, "alerts", Default::default()).build().unwrap();
    // One turn of the (mock) event loop runs the app's setup, which starts the receiver.
    #[allow(deprecated)]
    app.run_iteration(|_, _| {});
    Harness { core, window, _app: app, _dir: dir }
}

impl Harness {
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        let req = InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        };
        tauri::test::get_ipc_response(&self.window, req).map(|b| b.deserialize::<Value>().unwrap())
    }

    fn deliver(&self, name: &str) {
        let body = std::fs::read(format!("{}/../tests/fixtures/captured/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let notification = alertray::payload::parse(&body).unwrap();
        let d = Delivery {
            body,
            notification,
            received_ms: alertray::store::now_ms(),
            peer: "test".into(),
            auth: "test".into(),
        };
        tauri::async_runtime::block_on(self.core.store.record(d)).unwrap();
    }
}

#[test]
fn alerts_acknowledge_and_history() {
    let h = harness();
    h.deliver("netdata-alert-critical.json");
    h.deliver("netdata-alert-warning.json");
    let active = h.invoke("active_alerts", json!({})).unwrap();
    assert_eq!(active.as_array().unwrap().len(), 2);
    assert_eq!(active[0]["level"], "critical");
    let key = active[0]["key"].as_str().unwrap().to_string();

    h.invoke("acknowledge", json!({"key": key, "acknowledged": true})).unwrap();
    let active = h.invoke("active_alerts", json!({})).unwrap();
    let acked = active.as_array().unwrap().iter().find(|a| a["key"] == key.as_str()).unwrap();
    assert_eq!(acked["acknowledged"], true);
    let status = h.invoke("status", json!({})).unwrap();
    assert_eq!(status["tray"]["icon"], "warning", "an acknowledged critical no longer counts: {status}");

    let err = h.invoke("acknowledge", json!({"key": "nope", "acknowledged": true})).unwrap_err();
    assert_eq!(err["code"], "not_found");

    // Dismissed: off the active list and the icon, still in history.
    h.invoke("dismiss", json!({"key": key})).unwrap();
    let active = h.invoke("active_alerts", json!({})).unwrap();
    assert!(active.as_array().unwrap().iter().all(|a| a["key"] != key.as_str()), "{active}");
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(h.invoke("dismiss", json!({"key": key})).unwrap_err()["code"], "not_found");

    let hist = h.invoke("history", json!({"query": {"status": "critical"}})).unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 1);
    let hist = h.invoke("history", json!({"query": {"text": "gn4", "limit": 10}})).unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 1);
    assert_eq!(hist[0]["host"], "gn4.node.garland.slvn.co");

    // The total of every page, whatever page and limit the query asks for.
    let count = |query: serde_json::Value| h.invoke("history_count", json!({ "query": query })).unwrap();
    assert_eq!(count(json!({})), 2);
    assert_eq!(count(json!({"limit": 1, "before_id": 2})), 2);
    assert_eq!(count(json!({"status": "critical"})), 1);
    assert_eq!(count(json!({"text": "gn4"})), 1);
    assert_eq!(count(json!({"host": "nowhere"})), 0);
}

/// The tray's "Resume notifications" lifts the snooze of every popup, and only that one: a
/// snooze of one alert or node set in the window stays.
#[test]
fn the_tray_resume_lifts_only_the_snooze_of_every_popup() {
    use tauri::Manager as _;
    let h = harness();
    h.invoke("snooze", json!({"snooze": {"scope": "all", "minutes": 15}})).unwrap();
    h.invoke("snooze", json!({"snooze": {"scope": "node", "target": "web1", "minutes": 60}})).unwrap();
    assert_eq!(h.core.policy.get().snoozes.len(), 2);
    alertray_app::tray_menu_click(h.window.app_handle(), "resume");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.core.policy.get().snoozes.len() != 1 {
        assert!(Instant::now() < deadline, "{:?}", h.core.policy.get().snoozes);
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = h.core.policy.get().snoozes;
    assert_eq!(left[0].scope, alertray::policy::SnoozeScope::Node("web1".into()));
}

#[test]
fn snooze_and_resume() {
    let h = harness();
    let until = h.invoke("snooze", json!({"snooze": {"scope": "all", "minutes": 15}})).unwrap();
    assert!(until.as_i64().unwrap() > alertray::store::now_ms());
    let status = h.invoke("status", json!({})).unwrap();
    assert_eq!(status["tray"]["icon"], "snoozed");
    assert_eq!(status["tray"]["snoozed"], true, "the tray's Resume is enabled");
    assert_eq!(status["snoozes"][0]["scope"], "all");
    h.invoke("snooze", json!({"snooze": {"scope": "node", "target": "web1", "until_tomorrow": true}})).unwrap();
    assert_eq!(h.core.policy.get().snoozes.len(), 2);
    let err = h.invoke("snooze", json!({"snooze": {"scope": "all", "minutes": 0}})).unwrap_err();
    assert_eq!(err["code"], "refused");
    h.invoke("resume", json!({})).unwrap();
    assert!(h.core.policy.get().snoozes.is_empty());
    let tray = &h.invoke("status", json!({})).unwrap()["tray"];
    assert_eq!((&tray["icon"], &tray["snoozed"]), (&json!("all_clear"), &json!(false)));
    // A snooze that has run out is not shown as one in force.
    h.core.policy.update(|p| {
        p.snoozes.push(alertray::policy::Snooze {
            scope: alertray::policy::SnoozeScope::Node("web2".into()),
            until_ms: alertray::store::now_ms() - 1,
        })
    });
    assert_eq!(h.invoke("status", json!({})).unwrap()["snoozes"], json!([]));
}

#[test]
fn settings_validate_inline_and_save_applies_without_restart() {
    let h = harness();
    let s = h.invoke("settings", json!({})).unwrap();
    assert_eq!(s["raw"]["auth"]["token"], "tok");
    let mut raw = s["raw"].clone();
    raw["auth"]["method"] = json!("digest");
    let err = h.invoke("validate_settings", json!({"raw": raw})).unwrap_err();
    assert_eq!(err["code"], "invalid_config");
    assert_eq!(err["key"], "auth.method");
    assert_eq!(err["message"], "auth.method = \"digest\" is not accepted: \"none\", \"basic\" or \"bearer\"");
    let err = h.invoke("save_settings", json!({"raw": raw})).unwrap_err();
    assert_eq!(err["key"], "auth.method");

    raw["auth"]["method"] = json!("basic");
    raw["auth"]["username"] = json!("netdata");
    raw["auth"]["password"] = json!("pw");
    h.invoke("validate_settings", json!({"raw": raw})).unwrap();
    let status = h.invoke("save_settings", json!({"raw": raw})).unwrap();
    assert_eq!(status["state"], "running", "{status}");
    let guide = h.invoke("guide", json!({})).unwrap();
    assert_eq!(guide["guide"]["method"], "basic");
    assert_eq!(guide["guide"]["username"], "netdata");
    let written = std::fs::read_to_string(&h.core.paths.config_file).unwrap();
    assert!(written.contains("method = \"basic\""), "{written}");

    // Turning popups off (and on again) applies at once, like every other setting.
    assert!(!h.core.policy.get().off);
    raw["notifications"]["enabled"] = json!(false);
    h.invoke("save_settings", json!({"raw": raw})).unwrap();
    assert!(h.core.policy.get().off, "popups stay on after notifications.enabled = false");
    raw["notifications"]["enabled"] = json!(true);
    h.invoke("save_settings", json!({"raw": raw})).unwrap();
    assert!(!h.core.policy.get().off);

    let secret = h.invoke("generate_secret", json!({})).unwrap();
    assert_eq!(secret.as_str().unwrap().len(), 43);
}

/// A config file with one bad value still shows the rest of its settings in the form.
#[test]
fn settings_show_what_a_file_with_a_bad_value_holds() {
    let h = harness_with(&format!("{GOOD_CONFIG}[notifications]\nmax_popups_per_minute = \"lots\"\n"));
    let s = h.invoke("settings", json!({})).unwrap();
    assert!(s["load_error"]["message"].as_str().unwrap().contains("notifications.max_popups_per_minute"), "{s}");
    assert_eq!((&s["raw"]["auth"]["method"], &s["raw"]["auth"]["token"]), (&json!("bearer"), &json!("tok")), "{s}");
    assert_eq!(s["raw"]["notifications"]["max_popups_per_minute"], json!(null));
}

/// Saving a listen address another program holds is refused at its field, and the receiver
/// that works keeps working: nothing is saved, nothing stopped.
#[test]
fn a_listen_address_in_use_is_refused_before_the_receiver_stops() {
    let h = harness();
    let before = h.core.status();
    let file_before = std::fs::read_to_string(&h.core.paths.config_file).unwrap();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let mut raw = h.invoke("settings", json!({})).unwrap()["raw"].clone();
    raw["server"]["listen"] = json!(taken);
    let err = h.invoke("save_settings", json!({"raw": raw})).unwrap_err();
    assert_eq!(err["key"], "server.listen", "{err}");
    assert!(err["message"].as_str().unwrap().contains("the receiver keeps listening"), "{err}");
    assert_eq!(h.core.status(), before);
    assert!(matches!(before, ReceiverStatus::Running { .. }));
    assert_eq!(std::fs::read_to_string(&h.core.paths.config_file).unwrap(), file_before);
    // A free one is saved and taken up.
    drop(holder);
    let st = h.invoke("save_settings", json!({"raw": raw})).unwrap();
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["addr"], taken);
}

#[test]
fn a_link_opens_another_window_without_turning_this_one_into_it() {
    use tauri::Manager as _;
    let h = harness();
    assert!(h._app.get_webview_window("settings").is_none());
    let before = h.window.url().unwrap();
    h.invoke("open_window", json!({"page": "settings", "anchor": "tunnel.command"})).unwrap();
    let settings = h._app.get_webview_window("settings").expect("the Settings window opened");
    assert_eq!(settings.url().unwrap().fragment(), Some("settings/tunnel.command"), "opened at the field");
    assert_eq!(h.window.url().unwrap(), before, "the window the link was in stays where it was");
    let err = h.invoke("open_window", json!({"page": "nowhere"})).unwrap_err();
    assert_eq!(err["code"], "not_found");
}

#[test]
fn guide_shows_the_latest_verification_token() {
    let h = harness();
    let g = h.invoke("guide", json!({})).unwrap();
    assert!(g["token"].is_null());
    assert_eq!(g["guide"]["challenge_secret"], "sec");
    h.deliver("netdata-token.json");
    let g = h.invoke("guide", json!({})).unwrap();
    assert_eq!(g["token"]["token"], "2b633082-34ec-4ec3-946c-5e81076c39af");
    let err = h.invoke("open_url", json!({"url": "file:///etc/passwd"})).unwrap_err();
    assert_eq!(err["code"], "refused");
}

/// The app follows edits of its config file by hand: a fix starts a stopped receiver, and a
/// broken edit while it runs is announced (a popup says why) and left unapplied.
#[test]
fn the_app_follows_the_config_file_edited_by_hand() {
    let h = harness_with("[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nmethod = \"bearer\"\n");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: {:?}", h.core.status());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(
        "stopped for the missing token",
        &|| matches!(h.core.status(), ReceiverStatus::Stopped { key: Some(ref k), .. } if k == "auth.token"),
    );
    // As an editor saves: a new file put in place (written in place, a loaded machine could
    // leave the watcher an empty file for a while).
    let edit = |text: &str| {
        let tmp = h.core.paths.config_file.with_extension("toml.edit");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &h.core.paths.config_file).unwrap();
    };
    let mut events = h.core.events.subscribe();
    edit(GOOD_CONFIG);
    wait("running once fixed by hand", &|| matches!(h.core.status(), ReceiverStatus::Running { .. }));
    let before = h.core.status();
    edit(&GOOD_CONFIG.replace("token = \"tok\"\n", ""));
    let deadline = Instant::now() + Duration::from_secs(15);
    let reason = loop {
        match events.try_recv() {
            Ok(Event::ConfigFileRejected { reason }) => break reason,
            Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => {
                assert!(Instant::now() < deadline, "no ConfigFileRejected event");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(reason.contains("auth.token"), "{reason}");
    let popup = alertray::notify::popup_for(&Event::ConfigFileRejected { reason }).expect("a popup says so");
    assert!(popup.body.contains("auth.token"), "{}", popup.body);
    assert_eq!(h.core.status(), before, "the receiver runs on as it was");
    // Settings says so for as long as the edit is left unapplied.
    let refused = h.invoke("settings", json!({})).unwrap()["refused"].clone();
    assert!(refused.as_str().is_some_and(|r| r.contains("auth.token")), "{refused}");
    // The edit undone (a comment kept): the rejection is over, and nothing restarts (a restart
    // on port 0 would listen on another port).
    edit(&format!("# put back\n{GOOD_CONFIG}"));
    wait("the rejection over", &|| h.invoke("settings", json!({})).unwrap()["refused"].is_null());
    assert_eq!(h.core.status(), before, "nothing restarted");
}

/// A click on the tray's status line, while the receiver is not running, opens Settings at
/// the setting at fault.
#[test]
fn the_tray_status_line_leads_to_the_setting_at_fault() {
    use tauri::Manager as _;
    let h = harness();
    assert!(h._app.get_webview_window("settings").is_none());
    let bad = alertray::config::Config::from_toml("[auth]\nmethod = \"bearer\"\n");
    assert!(bad.is_err());
    tauri::async_runtime::block_on(h.core.apply(bad));
    assert!(matches!(h.core.status(), ReceiverStatus::Stopped { key: Some(ref k), .. } if k == "auth.token"));
    alertray_app::on_menu(h._app.handle(), "status");
    let url = h._app.get_webview_window("settings").expect("Settings opened by the status line").url().unwrap();
    assert_eq!(url.fragment(), Some("settings/auth.token"), "{url}");
}

/// A config file that cannot be read at start stops the receiver; once it can be read, it is
/// applied, as an edit would be.
#[test]
fn a_config_file_unreadable_at_start_is_applied_once_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("config.toml");
    // A folder where the file should be: unreadable as a file, for root too.
    std::fs::create_dir(&config_file).unwrap();
    let h = harness_at(dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(h.core.status(), ReceiverStatus::Stopped { ref reason, .. } if reason.contains("directory")) {
        assert!(Instant::now() < deadline, "{:?}", h.core.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir(&config_file).unwrap();
    std::fs::write(&config_file, GOOD_CONFIG).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(h.core.status(), ReceiverStatus::Running { .. }) {
        assert!(Instant::now() < deadline, "not applied once readable: {:?}", h.core.status());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_config_starts_stopped_and_opens_settings_at_the_problem() {
    use tauri::Manager as _;
    let h = harness_with("[server]\nlisten = \"127.0.0.1:0\"\n[auth]\nmethod = \"bearer\"\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while h._app.get_webview_window("settings").is_none() {
        assert!(Instant::now() < deadline, "Settings did not open; status {:?}", h.core.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    match h.core.status() {
        ReceiverStatus::Stopped { key, .. } => assert_eq!(key.as_deref(), Some("auth.token")),
        other => panic!("{other:?}"),
    }
    let url = h._app.get_webview_window("settings").unwrap().url().unwrap();
    assert_eq!(url.fragment(), Some("settings/auth.token"), "{url}");
    let status = h.invoke("status", json!({})).unwrap();
    assert_eq!(status["tray"]["icon"], "not_running");
    assert!(status["tray"]["status_line"].as_str().unwrap().starts_with("Receiver not running: auth.token"));
    // Fixing it in Settings starts the receiver without a restart.
    let mut raw = h.invoke("settings", json!({})).unwrap()["raw"].clone();
    raw["auth"]["token"] = json!("now-set");
    let st = h.invoke("save_settings", json!({"raw": raw})).unwrap();
    assert_eq!(st["state"], "running");
}

#[cfg(unix)]
#[test]
fn the_tunnel_shows_in_the_tray_and_guide_and_check_connection_goes_through_it() {
    // A stand-in tunnel that announces the receiver's own address as its public one, so the
    // check goes over a real socket to the real receiver.
    let h = harness_with(&format!(
        "{GOOD_CONFIG}[tunnel]\ncommand = 'sh -c \"echo listening at localhost:{{port}}; exec sleep 600\"'\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.core.tunnel_status().phase != alertray::tunnel::TunnelPhase::Up {
        assert!(Instant::now() < deadline, "the tunnel did not come up: {:?}", h.core.tunnel_status());
        std::thread::sleep(Duration::from_millis(20));
    }
    let g = h.invoke("guide", json!({})).unwrap();
    assert_eq!(g["tunnel"]["phase"], "up");
    let url = g["tunnel"]["url"].as_str().unwrap().to_string();
    let ReceiverStatus::Running { addr, .. } = h.core.status() else { panic!() };
    let port = addr.rsplit(':').next().unwrap();
    assert_eq!(url, format!("https://localhost:{port}"));
    assert_eq!(g["guide"]["webhook_url"], format!("{url}/"), "the tunnel's URL is the one to paste");
    let status = h.invoke("status", json!({})).unwrap();
    assert_eq!(status["tray"]["tunnel_line"], format!("Tunnel: up at {url}"));

    let r = h.invoke("check_connection", json!({})).unwrap();
    let step = |name: &str| r["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(r["url"], format!("{url}/"));
    assert_eq!(step("Challenge")["status"], "ok", "{r:#}");
    assert_eq!(step("Authentication")["status"], "ok", "{r:#}");
    assert_eq!(step("TLS passthrough")["status"], "ok", "{r:#}");
    assert_eq!(step("Certificate")["status"], "failed", "a self-signed certificate is not trusted: {r:#}");
    assert!(step("Certificate")["detail"].as_str().unwrap().contains("self-signed"));
    assert_eq!(r["passed"], false);
}

#[test]
fn a_store_that_cannot_open_leaves_the_app_running_degraded() {
    // A folder where the database file should be: SQLite cannot open it, even as root.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data/alertray.db")).unwrap();
    let h = harness_in(dir, GOOD_CONFIG);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(h.core.status(), ReceiverStatus::Running { .. }) {
        assert!(Instant::now() < deadline, "the receiver did not start: {:?}", h.core.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = h.invoke("status", json!({})).unwrap();
    assert_eq!(status["tray"]["icon"], "not_running");
    let line = status["tray"]["status_line"].as_str().unwrap();
    assert!(line.starts_with("Degraded: cannot store alerts") && line.contains("alertray.db"), "{line}");
    assert!(line.contains("directory"), "the system's reason is given: {line}");
    let g = h.invoke("guide", json!({})).unwrap();
    assert_eq!(g["guide"]["challenge_secret"], "sec", "the guide still shows what to paste");
    let err = h.invoke("active_alerts", json!({})).unwrap_err();
    assert!(err["message"].as_str().is_some(), "{err}");
    assert!(h._dir.path().join("data/alertray.db").is_dir(), "nothing was moved or deleted");
}
