//! Desktop notifications received by a real notification server (dunst) on a private D-Bus
//! session bus, from the real `alertray serve` binary.
//!
//! Needs `dbus-daemon`, `dunst`, `dunstctl` and an X display (Xvfb in CI). Without them the
//! tests say so and pass, unless `ALERTRAY_REQUIRE_DESKTOP=1` (set by `.ci/run`), where a
//! missing piece fails them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A private session bus with dunst on it, both stopped when dropped.
struct Desktop {
    bus: String,
    dbus: Child,
    dunst: Option<Child>,
    dir: tempfile::TempDir,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn desktop(with_server: bool) -> Option<Desktop> {
    let missing: Vec<&str> = ["dbus-daemon", "dunst", "dunstctl"].into_iter().filter(|c| !have(c)).collect();
    let no_display = std::env::var_os("DISPLAY").is_none();
    if !missing.is_empty() || no_display {
        let why = format!("missing {missing:?}{}", if no_display { " and DISPLAY" } else { "" });
        if std::env::var("ALERTRAY_REQUIRE_DESKTOP").as_deref() == Ok("1") {
            panic!("desktop test environment incomplete: {why}");
        }
        eprintln!("SKIPPED: desktop notification test needs {why}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    // A bus of our own with no service activation, so only the server we start answers.
    let conf = dir.path().join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\
             <busconfig><type>session</type><listen>unix:dir={}</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
             <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut dbus = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .arg("--nofork")
        .arg("--print-address=1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut bus = String::new();
    BufReader::new(dbus.stdout.take().unwrap()).read_line(&mut bus).unwrap();
    let bus = bus.trim().to_string();
    assert!(bus.starts_with("unix:"), "{bus}");
    let mut d = Desktop { bus, dbus, dunst: None, dir };
    if with_server {
        // Rules tag each popup with its urgency as dunst understood it, so the history shows it.
        // Bodies are read as markup, as in dunst's own default config.
        let rc = d.dir.path().join("dunstrc");
        std::fs::write(
            &rc,
            "[global]\n    history_length = 200\n    markup = full\n    notification_limit = 0\n\
             [urgency_low]\n    timeout = 0\n[urgency_normal]\n    timeout = 0\n[urgency_critical]\n    timeout = 0\n\
             [tag_low]\n    msg_urgency = low\n    set_category = urgency-low\n\
             [tag_normal]\n    msg_urgency = normal\n    set_category = urgency-normal\n\
             [tag_critical]\n    msg_urgency = critical\n    set_category = urgency-critical\n",
        )
        .unwrap();
        d.dunst = Some(
            Command::new("dunst")
                .arg("-config")
                .arg(&rc)
                .env("DBUS_SESSION_BUS_ADDRESS", &d.bus)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !d.dunstctl(&["is-paused"]).0 {
            assert!(Instant::now() < deadline, "dunst did not come up on the private bus");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Some(d)
}

/// One popup as dunst keeps it in its history.
#[derive(Debug, Clone)]
struct Shown {
    id: i64,
    summary: String,
    body: String,
    urgency: String,
}

impl Desktop {
    fn dunstctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("dunstctl").args(args).env("DBUS_SESSION_BUS_ADDRESS", &self.bus).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Closes what is displayed (moving it to history) and returns the whole history.
    fn history(&self) -> Vec<Shown> {
        self.dunstctl(&["close-all"]);
        let (_, out) = self.dunstctl(&["history"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let s = |n: &Value, k: &str| n[k]["data"].as_str().unwrap_or_default().to_string();
        let mut shown: Vec<Shown> = v["data"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| Shown {
                id: n["id"]["data"].as_i64().unwrap(),
                summary: s(n, "summary"),
                body: s(n, "body"),
                urgency: s(n, "category").trim_start_matches("urgency-").to_string(),
            })
            .collect();
        shown.sort_by_key(|n| n.id);
        shown
    }

    /// Polls the history until `pred` holds.
    fn wait_for(&self, what: &str, pred: impl Fn(&[Shown]) -> bool) -> Vec<Shown> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h = self.history();
            if pred(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "never saw {what}; dunst history: {h:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// dbus-send on the private bus; returns whether the call was answered, and the reply.
    fn dbus_send(&self, dest: &str, path: &str, method: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("dbus-send")
            .args(["--session", "--print-reply", "--reply-timeout=5000", &format!("--dest={dest}"), path, method])
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text.into_owned())
    }

    /// The unique names of the bus connections of process `pid`.
    fn connections_of(&self, pid: u32) -> Vec<String> {
        let (_, names) =
            self.dbus_send("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames", &[]);
        names
            .lines()
            .filter_map(|l| l.trim().strip_prefix("string \"").and_then(|n| n.strip_suffix('"')))
            .filter(|n| n.starts_with(':'))
            .filter(|n| {
                let (_, reply) = self.dbus_send(
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.GetConnectionUnixProcessID",
                    &[&format!("string:{n}")],
                );
                reply.trim_end().ends_with(&format!("uint32 {pid}"))
            })
            .map(String::from)
            .collect()
    }

    fn displayed(&self) -> usize {
        self.dunstctl(&["count", "displayed"]).1.trim().parse().unwrap_or(0)
    }

    fn serve(&self, extra_config: &str, path_prefix: Option<&Path>) -> Serve {
        let (cfg, port) = write_config(self.dir.path(), extra_config);
        let path = match path_prefix {
            Some(p) => format!("{}:{}", p.display(), std::env::var("PATH").unwrap_or_default()),
            None => std::env::var("PATH").unwrap_or_default(),
        };
        Serve::start(
            &cfg,
            &self.dir.path().join("data"),
            port,
            &[("DBUS_SESSION_BUS_ADDRESS", &self.bus), ("PATH", &path)],
            &[],
        )
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        if let Some(d) = &mut self.dunst {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

fn with_status(name: &str, status: &str, transition: &str, message: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&captured(name)).unwrap();
    v["alert"]["state"]["status"] = status.into();
    v["alert"]["transition_id"] = transition.into();
    v["message"] = message.into();
    serde_json::to_vec(&v).unwrap()
}

/// A stand-in for the browser: xdg-open that writes the URL it was given to a file. (No
/// browser can run here; the click itself goes through the real notification server.)
fn fake_browser(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = dir.join("opened.txt");
    let script = bin.join("xdg-open");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", opened.display())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (bin, opened)
}

#[test]
fn popups_have_the_right_summary_urgency_and_click_action() {
    let Some(d) = desktop(true) else { return };
    let (bin, opened) = fake_browser(d.dir.path());
    let serve = d.serve("", Some(&bin));

    assert_eq!(serve.post(captured("netdata-alert-critical.json")), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.displayed() == 0 {
        assert!(Instant::now() < deadline, "no popup displayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Click it at once (dunst's default action on the first popup): the alert opens in the
    // browser.
    d.dunstctl(&["action", "0"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&opened).unwrap_or_default();
        if text.contains("https://app.netdata.cloud/spaces/slvn-co/rooms/all-nodes/alerts/mem.swap.used_swap") {
            break;
        }
        assert!(Instant::now() < deadline, "the click did not open the alert URL; opened: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = d.wait_for("the critical popup", |h| {
        h.iter().any(|n| n.summary == "la1.node.garland.slvn.co: used_swap is Critical")
    });
    let crit = h.iter().find(|n| n.summary.contains("used_swap is Critical")).unwrap();
    assert_eq!(crit.urgency, "critical");
    assert_eq!(crit.body, "Value: 100%\nSystem swap memory utilization\nRooms: All nodes");

    // Warning, then Critical for the same alert while the first popup is up: replaced in place.
    assert_eq!(serve.post(captured("netdata-alert-warning.json")), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.displayed() == 0 {
        assert!(Instant::now() < deadline, "no warning popup displayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let escalated =
        with_status("netdata-alert-warning.json", "Critical", "escalation-1", "Raised to Critical, ram, on gn4");
    assert_eq!(serve.post(escalated), 200);
    // Reading dunst's history closes what is displayed, so first wait until dunst has answered
    // the replacing call: closing the warning popup before it would make the critical one a
    // new popup instead of a replacement.
    serve
        .wait_for_line("popup shown summary=gn4.node.garland.slvn.co: ram_in_use is Critical", Duration::from_secs(20));
    let h = d.wait_for("the escalated popup", |h| {
        h.iter().any(|n| n.summary == "gn4.node.garland.slvn.co: ram_in_use is Critical")
    });
    assert!(
        !h.iter().any(|n| n.summary == "gn4.node.garland.slvn.co: ram_in_use is Warning"),
        "the warning popup was replaced, not stacked: {h:#?}"
    );

    // Recovery and reachability: low urgency; unreachable: critical.
    let clear = with_status("netdata-alert-warning.json", "Clear", "recovery-1", "Recovered, ram, on gn4");
    assert_eq!(serve.post(clear), 200);
    assert_eq!(serve.post(captured("netdata-reachability-unreachable.json")), 200);
    // Reachable replaces the unreachable popup of the same node, so see that one first.
    d.wait_for("the unreachable popup", |h| h.iter().any(|n| n.summary.contains("is unreachable")));
    assert_eq!(serve.post(captured("netdata-reachability-reachable.json")), 200);
    assert_eq!(serve.post(captured("netdata-token.json")), 200);
    let h = d.wait_for("recovery, reachability and test popups", |h| {
        ["ram_in_use recovered", "is unreachable", "is reachable again", "test notification"]
            .iter()
            .all(|s| h.iter().any(|n| n.summary.contains(s)))
    });
    let urgency = |s: &str| h.iter().rev().find(|n| n.summary.contains(s)).unwrap().urgency.clone();
    assert_eq!(urgency("ram_in_use recovered"), "low");
    assert_eq!(urgency("sa1.node.garland.slvn.co is unreachable"), "critical");
    assert_eq!(urgency("sa1.node.garland.slvn.co is reachable again"), "low");
    let test = h.iter().find(|n| n.summary.contains("test notification")).unwrap();
    assert!(test.body.contains("2b633082-34ec-4ec3-946c-5e81076c39af"), "{test:?}");
}

#[test]
fn a_click_on_a_replaced_popup_opens_the_newest_alert_once() {
    let Some(d) = desktop(true) else { return };
    let (bin, opened) = fake_browser(d.dir.path());
    let serve = d.serve("", Some(&bin));
    assert_eq!(serve.post(captured("netdata-alert-warning.json")), 200);
    serve.wait_for_line("popup shown summary=gn4.node.garland.slvn.co: ram_in_use is Warning", Duration::from_secs(20));
    let mut escalated: Value = serde_json::from_slice(&with_status(
        "netdata-alert-warning.json",
        "Critical",
        "escalation-click",
        "Raised to Critical, ram, on gn4",
    ))
    .unwrap();
    let newest = "https://app.netdata.cloud/spaces/slvn-co/rooms/all-nodes/alerts/ram?transition=escalation-click";
    escalated["alert"]["url"] = newest.into();
    assert_eq!(serve.post(serde_json::to_vec(&escalated).unwrap()), 200);
    serve
        .wait_for_line("popup shown summary=gn4.node.garland.slvn.co: ram_in_use is Critical", Duration::from_secs(20));
    assert_eq!(d.displayed(), 1, "the critical popup replaced the warning one");
    d.dunstctl(&["action", "0"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&opened).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "the click opened nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every listener of the popup hears the same click at once; give a second one time to act.
    std::thread::sleep(Duration::from_secs(1));
    let opened = std::fs::read_to_string(&opened).unwrap();
    assert_eq!(opened.lines().collect::<Vec<_>>(), [newest], "one click, one tab, the newest alert");
}

/// However many popups are up, a click on any of them opens its own alert: 40 of them,
/// clicked one after the other, open 40 different alerts.
#[test]
fn every_popup_up_opens_its_own_alert() {
    let Some(d) = desktop(true) else { return };
    let (bin, opened) = fake_browser(d.dir.path());
    let serve = d.serve("[notifications]\nmax_popups_per_minute = 100\n", Some(&bin));
    let count = 40;
    let mut urls = Vec::new();
    for i in 0..count {
        let mut v: Value = serde_json::from_slice(&captured("netdata-alert-critical.json")).unwrap();
        v["alert"]["name"] = format!("alert_{i}").into();
        v["alert"]["transition_id"] = format!("many-{i}").into();
        let url = format!("https://app.netdata.cloud/spaces/s/rooms/r/alerts/many-{i}");
        v["alert"]["url"] = url.clone().into();
        urls.push(url);
        assert_eq!(serve.post(serde_json::to_vec(&v).unwrap()), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.displayed() < count {
        assert!(Instant::now() < deadline, "{} of {count} popups displayed", d.displayed());
        std::thread::sleep(Duration::from_millis(100));
    }
    // dunst leaves a popup up after its action: close each one clicked.
    for _ in 0..count {
        d.dunstctl(&["action", "0"]);
        d.dunstctl(&["close"]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen: Vec<String> =
            std::fs::read_to_string(&opened).unwrap_or_default().lines().map(String::from).collect();
        if seen.len() >= count {
            seen.sort();
            urls.sort();
            assert_eq!(seen, urls, "each click opened its own popup's alert, once");
            break;
        }
        assert!(Instant::now() < deadline, "{} of {count} clicks opened an alert", seen.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The connection Alertray keeps to the notification server answers the calls any peer may
/// make (a tool going through the bus's connections must not wait on it for its timeout).
#[test]
fn the_popup_connection_answers_calls_like_any_peer() {
    let Some(d) = desktop(true) else { return };
    let serve = d.serve("", None);
    assert_eq!(serve.post(captured("netdata-alert-critical.json")), 200);
    serve.wait_for_line("popup shown", Duration::from_secs(20));
    let names = d.connections_of(serve.pid());
    assert!(!names.is_empty(), "alertray serve has no connection on the bus");
    for n in names {
        let (answered, reply) = d.dbus_send(&n, "/", "org.freedesktop.DBus.Peer.Ping", &[]);
        assert!(answered, "{n} did not answer a Ping: {reply}");
        let (answered, reply) = d.dbus_send(&n, "/", "org.freedesktop.DBus.Introspectable.Introspect", &[]);
        assert!(answered, "{n} did not answer Introspect: {reply}");
    }
}

#[test]
fn popup_text_from_a_notification_is_shown_as_written() {
    let Some(d) = desktop(true) else { return };
    let serve = d.serve("", None);
    let mut v: Value = serde_json::from_slice(&captured("netdata-alert-warning.json")).unwrap();
    let written = "<b>free</b> < 10% & falling, see <a href=\"smb://files/x\">here</a>";
    v["alert"]["rendered"]["summary"] = written.into();
    assert_eq!(serve.post(serde_json::to_vec(&v).unwrap()), 200);
    let h = d.wait_for("the popup", |h| h.iter().any(|n| n.summary.contains("ram_in_use is Warning")));
    let body = &h.iter().find(|n| n.summary.contains("ram_in_use is Warning")).unwrap().body;
    // dunst reads bodies as markup (and says so): escaped, the text shows as written and
    // nothing is a link. dunst's history keeps the body as it was sent.
    let escaped = "&lt;b&gt;free&lt;/b&gt; &lt; 10% &amp; falling, see &lt;a href=\"smb://files/x\"&gt;here&lt;/a&gt;";
    assert!(body.contains(escaped), "{body:?}");
}

#[test]
fn a_storm_folds_into_one_summary_popup() {
    let Some(d) = desktop(true) else { return };
    let serve = d.serve("[notifications]\nmax_popups_per_minute = 3\n", None);
    for i in 0..9 {
        let body = serde_json::json!({
            "message": format!("Raised to Warning, load, on storm-{i}"),
            "node": {"id": format!("storm-{i}"), "hostname": format!("storm-{i}")},
            "alert": {"name": "load", "state": {"status": "Warning", "value_str": "9"}, "transition_id": format!("storm-t{i}")}
        });
        assert_eq!(serve.post(body.to_string()), 200);
    }
    let h = d.wait_for("the storm summary", |h| h.iter().any(|n| n.summary == "6 more alerts: 6 warning"));
    let individual = h.iter().filter(|n| n.summary.starts_with("storm-")).count();
    assert_eq!(individual, 3, "{h:#?}");
    let conn = alertray::store::open_reader(&alertray::store::db_path(&serve.data_dir)).unwrap();
    assert_eq!(alertray::store::active(&conn).unwrap().len(), 9, "everything is still stored and active");
}

/// `serve` started with popups off shows them once an edit of the config file turns them on.
#[test]
fn popups_turned_on_by_an_edit_of_the_config_file_show_from_then_on() {
    let Some(d) = desktop(true) else { return };
    let serve = d.serve("[notifications]\nenabled = false\n", None);
    let alert = |host: &str| {
        serde_json::json!({
            "message": format!("Raised to Warning, load, on {host}"),
            "node": {"id": host, "hostname": host},
            "alert": {"name": "load", "state": {"status": "Warning", "value_str": "9"}, "transition_id": host}
        })
        .to_string()
    };
    assert_eq!(serve.post(alert("while-off")), 200);
    let text = std::fs::read_to_string(&serve.config).unwrap().replace("enabled = false", "enabled = true");
    save_as_an_editor_does(&serve.config, &text);
    serve.wait_for_line("the edited config file is in use", Duration::from_secs(20));
    assert_eq!(serve.post(alert("once-on")), 200);
    // Popups go out in the order of their events: the first was decided before this one.
    let h = d.wait_for("the popup after the edit", |h| h.iter().any(|n| n.summary.starts_with("once-on")));
    assert!(!h.iter().any(|n| n.summary.starts_with("while-off")), "{h:#?}");
}

#[test]
fn no_notification_server_is_a_log_line_not_a_failure() {
    let Some(d) = desktop(false) else { return };
    let serve = d.serve("", None);
    assert_eq!(serve.post(captured("netdata-alert-critical.json")), 200);
    serve.wait_for_line("desktop notification failed", Duration::from_secs(20));
    assert_eq!(serve.post(captured("netdata-alert-warning.json")), 200);
    let conn = alertray::store::open_reader(&alertray::store::db_path(&serve.data_dir)).unwrap();
    assert_eq!(alertray::store::active(&conn).unwrap().len(), 2);
}
