use crate::support::*;
use alertray::alerts::{AlertKind, Change, Event, Level};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn kind_of(name: &str) -> &'static str {
    if name.contains("alert") {
        "alert"
    } else if name.contains("reachability") {
        "reachability"
    } else {
        "test"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_body_is_stored_raw_and_parsed() {
    let s = TestServer::start(BEARER).await;
    for name in CAPTURED {
        let r = s.post(captured(name)).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        let body = json(r).await;
        assert_eq!(body["duplicate"], false);
        let id = body["id"].as_i64().unwrap();
        let raw = alertray::store::raw_body(&s.reader(), id).unwrap().unwrap();
        assert_eq!(raw, captured(name), "{name}: the raw body is kept byte for byte");
        let entry = s.history().into_iter().find(|h| h.id == id).unwrap();
        assert_eq!(entry.kind, kind_of(name), "{name}");
    }
    // critical (swap), recovered (ram on la1: not active), warning (ram on gn4),
    // reachable then unreachable (sa1 unreachable).
    let active = s.active();
    let mut summary: Vec<(String, Level)> =
        active.iter().map(|a| (format!("{}/{}", a.host, a.name), a.level)).collect();
    summary.sort();
    assert_eq!(
        summary,
        vec![
            ("gn4.node.garland.slvn.co/ram_in_use".to_string(), Level::Warning),
            ("la1.node.garland.slvn.co/used_swap".to_string(), Level::Critical),
            ("sa1.node.garland.slvn.co/reachability".to_string(), Level::Unreachable),
        ]
    );
    let crit = active.iter().find(|a| a.level == Level::Critical).unwrap();
    assert_eq!(crit.value.as_deref(), Some("100%"));
    assert_eq!(crit.rooms[0].name, "All nodes");
    assert!(crit.url.as_deref().unwrap().contains("transition=ee19d16d"));
    assert_eq!(crit.triggered_at.unwrap().to_rfc3339(), "2026-04-10T22:11:48-05:00");
    let token = alertray::store::latest_token(&s.reader()).unwrap().unwrap();
    assert_eq!(token.token, "2b633082-34ec-4ec3-946c-5e81076c39af");
}

/// Flat bodies built from the seed doc's table, in the spellings Netdata has used.
fn flat(severity: &str, variant: usize) -> Value {
    let mut v = json!({
        "message": format!("{} disk space, on web{variant}", match severity.to_ascii_lowercase().as_str() {
            "clear" => "Recovered,", "critical" => "Raised to Critical,", _ => "Raised to Warning,"
        }),
        "info": "Disk space utilization",
        "chart": "disk_space._",
        "context": "disk.space",
        "space": "Ops",
        "family": "/",
        "class": "Utilization",
        "severity": severity,
        "date": "2024-05-01T10:00:00+02:00",
        "duration": "5 minutes",
    });
    let o = v.as_object_mut().unwrap();
    match variant % 4 {
        0 => {
            o.insert("alarm".into(), json!("disk_space_usage"));
            o.insert("alarm_url".into(), json!("https://app.netdata.cloud/a/disk.space.disk_space_usage:::node-0"));
            o.insert("rooms".into(), json!({"All nodes": "https://app.netdata.cloud/r/all"}));
            o.insert("additional_active_critical_alerts".into(), json!(1));
            o.insert("additional_active_warning_alerts".into(), json!(2));
        }
        1 => {
            o.insert("alert".into(), json!("disk_space_usage"));
            o.insert("alert_url".into(), json!("https://app.netdata.cloud/a/x"));
            o.insert("Rooms".into(), json!([{"name": "All nodes", "url": "https://app.netdata.cloud/r/all"}]));
            o.insert("additional_active_critical_alerts".into(), json!("1"));
            o.insert("additional_active_warning_alerts".into(), json!("2"));
        }
        2 => {
            o.insert("alarm".into(), json!("disk_space_usage"));
            o.insert("alarm_url".into(), json!("https://app.netdata.cloud/a/y"));
            o.insert("critical_count".into(), json!(1));
            o.insert("warning_count".into(), json!(2));
            o.insert("duration".into(), json!(300));
        }
        _ => {
            o.insert("alert".into(), json!("disk_space_usage"));
            o.insert("rooms".into(), json!([{"name": "All nodes"}]));
            o.insert("extra_key_from_the_future".into(), json!({"nested": [1, 2, 3]}));
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_documented_bodies_in_every_spelling() {
    let s = TestServer::start(BEARER).await;
    for variant in 0..4 {
        for (sev, level) in [("warning", Level::Warning), ("CRITICAL", Level::Critical), ("Critical", Level::Critical)]
        {
            let r = s.post(flat(sev, variant).to_string()).await;
            assert_eq!(r.status(), StatusCode::OK);
            let active = s.active();
            let a = active
                .iter()
                .find(|a| a.host == format!("web{variant}"))
                .unwrap_or_else(|| panic!("{variant} {sev}: {active:?}"));
            assert_eq!(a.level, level, "{variant} {sev}");
            assert_eq!(a.name, "disk_space_usage");
            assert_eq!(a.kind, AlertKind::Alert);
            assert_eq!(a.space.as_deref(), Some("Ops"));
            if variant < 2 {
                assert_eq!(a.rooms[0].url.as_deref(), Some("https://app.netdata.cloud/r/all"));
            }
            assert_eq!(a.triggered_at.unwrap().to_rfc3339(), "2024-05-01T10:00:00+02:00");
        }
        let r = s.post(flat("clear", variant).to_string()).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(s.active().iter().all(|a| a.host != format!("web{variant}")), "cleared {variant}");
    }
    let h = s.history();
    assert_eq!(h.len(), 16);
    assert!(h.iter().all(|e| e.kind == "alert"));
}

fn nested(status: &str, transition: &str, at: &str, host: &str) -> Value {
    json!({
        "message": format!("{status} x, on {host}"),
        "space": {"id": "s1", "name": "S", "slug": "s"},
        "node": {"id": format!("id-{host}"), "hostname": host, "rooms": [{"name": "R", "url": "https://r"}]},
        "alert": {
            "name": "load", "chart": {"id": "system.load", "name": "system.load"}, "context": "system.load",
            "state": {"status": status, "value": 3.5, "value_str": "3.5"},
            "triggered_at": at, "transition_id": transition,
            "url": "https://app.netdata.cloud/x"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_publish_events_after_the_store_commits() {
    let s = TestServer::start(BEARER).await;
    let mut events = s.events.subscribe();
    let next = |events: &mut tokio::sync::broadcast::Receiver<Event>| loop {
        match events.try_recv() {
            Ok(Event::Alert { change, alert, .. }) => return (change, alert),
            Ok(_) => continue,
            Err(e) => panic!("no alert event: {e:?}"),
        }
    };
    s.post(nested("Warning", "t1", "2026-04-10T10:00:00Z", "h1").to_string()).await;
    let (c, a) = next(&mut events);
    assert_eq!((c, a.level), (Change::Raised, Level::Warning));
    s.post(nested("Critical", "t2", "2026-04-10T10:01:00Z", "h1").to_string()).await;
    assert_eq!(next(&mut events).0, Change::Escalated);
    assert_eq!(s.active().len(), 1);
    s.post(nested("Clear", "t3", "2026-04-10T10:02:00Z", "h1").to_string()).await;
    let (c, a) = next(&mut events);
    assert_eq!((c, a.host.as_str()), (Change::Cleared, "h1"));
    assert!(s.active().is_empty());

    s.post(captured("netdata-reachability-unreachable.json")).await;
    assert_eq!(next(&mut events).0, Change::Unreachable);
    assert_eq!(s.active()[0].level, Level::Unreachable);
    s.post(captured("netdata-reachability-reachable.json")).await;
    assert_eq!(next(&mut events).0, Change::Reachable);
    assert!(s.active().is_empty());

    // Out of order: an older clear arriving after a newer raise changes nothing.
    s.post(nested("Critical", "t5", "2026-04-10T11:00:00Z", "h2").to_string()).await;
    s.post(nested("Clear", "t4", "2026-04-10T10:59:00Z", "h2").to_string()).await;
    assert_eq!(s.active().len(), 1);
    assert_eq!(s.history().len(), 7, "the late clear is still kept in history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_are_acknowledged_and_recorded_once() {
    let s = TestServer::start(BEARER).await;
    let body = captured("netdata-alert-critical.json");
    let first = json(s.post(body.clone()).await).await;
    let again = json(s.post(body.clone()).await).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    // Same transition id, different bytes (a repeat notification re-rendered): once.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["message"] = json!("Raised to Critical, repeated");
    let repeat = json(s.post(v.to_string()).await).await;
    assert_eq!(repeat["duplicate"], true);
    // No transition id: the same body within the window is a duplicate.
    let reach = captured("netdata-reachability-unreachable.json");
    assert_eq!(json(s.post(reach.clone()).await).await["duplicate"], false);
    assert_eq!(json(s.post(reach).await).await["duplicate"], true);
    let h = s.history();
    assert_eq!(h.len(), 2);
    assert_eq!(h.iter().find(|e| e.kind == "alert").unwrap().deliveries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_id_reused_for_another_alert_is_stored_not_folded() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(BEARER, dir.path()).await;
    let body: Value = serde_json::from_slice(&captured("netdata-alert-warning.json")).unwrap();
    let first = json(s.post(body.to_string()).await).await;
    // The same transition id on another node, and for another alert on the same node: each
    // is news, stored and active, not a repeat of the first.
    let mut other_node = body.clone();
    other_node["node"]["id"] = json!("bbbbbbbb-0000-4000-8000-000000000002");
    other_node["node"]["hostname"] = json!("otherhost.example");
    let mut other_alert = body.clone();
    other_alert["alert"]["name"] = json!("another_alert");
    for v in [&other_node, &other_alert] {
        let r = json(s.post(v.to_string()).await).await;
        assert_eq!(r["duplicate"], false, "{r}");
        assert_ne!(r["id"], first["id"]);
    }
    let names = |s: &TestServer| {
        let mut v: Vec<(String, String)> = s.active().into_iter().map(|a| (a.host, a.name)).collect();
        v.sort();
        v
    };
    let expected = names(&s);
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(s.history().len(), 3);
    // Retries of each are still folded, also after a restart.
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    for v in [&body, &other_node, &other_alert] {
        assert_eq!(json(s.post(v.to_string()).await).await["duplicate"], true);
    }
    assert_eq!(names(&s), expected);
    assert_eq!(s.history().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_seen_before_is_news_once_its_node_has_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(BEARER, dir.path()).await;
    let down = captured("netdata-reachability-unreachable.json");
    let up = captured("netdata-reachability-reachable.json");
    let is_down = |s: &TestServer| s.active().iter().any(|a| a.level == Level::Unreachable);
    // Down, up, down again within the window: the third body repeats the first byte for byte
    // (reachability bodies carry no time), and the node is down.
    assert_eq!(json(s.post(down.clone()).await).await["duplicate"], false);
    assert_eq!(json(s.post(up.clone()).await).await["duplicate"], false);
    assert!(!is_down(&s));
    let third = json(s.post(down.clone()).await).await;
    assert_eq!(third["duplicate"], false, "{third}");
    assert!(is_down(&s));
    // A retry of that delivery, with nothing in between, is still folded.
    let retry = json(s.post(down.clone()).await).await;
    assert_eq!((retry["duplicate"].clone(), retry["id"].clone()), (json!(true), third["id"].clone()));
    // Another node's news in between does not make a retry news.
    s.post(nested("Warning", "other-node", "2026-04-10T10:00:00Z", "elsewhere").to_string()).await;
    assert_eq!(json(s.post(down.clone()).await).await["duplicate"], true);
    // The writer learns what came last under each key from the database after a restart.
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    assert_eq!(json(s.post(down.clone()).await).await["duplicate"], true);
    assert_eq!(json(s.post(up).await).await["duplicate"], false);
    assert_eq!(json(s.post(down).await).await["duplicate"], false);
    assert!(is_down(&s));
    let deliveries: Vec<i64> = s.history().iter().filter(|e| e.kind == "reachability").map(|e| e.deliveries).collect();
    assert_eq!(deliveries, [1, 1, 4, 1, 1], "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_press_of_test_is_recorded_and_announced() {
    let s = TestServer::start(BEARER).await;
    let mut events = s.events.subscribe();
    let body = captured("netdata-token.json");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = json(s.post(body.clone()).await).await;
        assert_eq!(r["duplicate"], false, "{r}");
        ids.push(r["id"].as_i64().unwrap());
    }
    assert_ne!(ids[0], ids[1]);
    let mut announced = 0;
    while let Ok(e) = events.try_recv() {
        announced += usize::from(matches!(e, Event::TestReceived { .. }));
    }
    assert_eq!(announced, 2);
    let token = alertray::store::latest_token(&s.reader()).unwrap().unwrap();
    let second = s.history().into_iter().find(|e| e.id == ids[1]).unwrap();
    assert_eq!(token.received_ms, second.received_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_restores_exactly_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(BEARER, dir.path()).await;
    for name in CAPTURED {
        s.post(captured(name)).await;
    }
    for i in 0..20 {
        let status = ["Warning", "Critical", "Clear"][i % 3];
        s.post(
            nested(status, &format!("r{i}"), &format!("2026-04-10T10:{i:02}:00Z"), &format!("n{}", i % 7)).to_string(),
        )
        .await;
    }
    let alerts_before = s.active();
    assert!(alerts_before.len() >= 5, "{alerts_before:?}");
    let history_before = s.history();
    let token_before = alertray::store::latest_token(&s.reader()).unwrap();
    assert!(token_before.is_some());
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    assert_eq!(s.active(), alerts_before);
    assert_eq!(s.history(), history_before);
    assert_eq!(alertray::store::latest_token(&s.reader()).unwrap(), token_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_objects_are_kept_and_shown_by_their_message() {
    let s = TestServer::start(BEARER).await;
    let mut events = s.events.subscribe();
    let r = s.post(json!({"message": "Netdata invented a new thing", "foo": [1]}).to_string()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.post(json!({"zeta": 1, "alpha": {"b": 2}}).to_string()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = s.history();
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|e| e.kind == "unknown"));
    assert_eq!(h[1].message, "Netdata invented a new thing");
    assert_eq!(h[0].message, "a JSON object with keys: alpha, zeta");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Unknown { message, .. } = e {
            seen.push(message);
        }
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_the_right_status_and_the_server_keeps_serving() {
    let s = TestServer::start(BEARER).await;
    let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    let big = format!("{{\"message\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        ("not JSON", b"hello".to_vec(), StatusCode::BAD_REQUEST),
        ("truncated JSON", b"{\"message\": \"x".to_vec(), StatusCode::BAD_REQUEST),
        ("an array", b"[{\"message\": \"x\"}]".to_vec(), StatusCode::BAD_REQUEST),
        ("a string", b"\"x\"".to_vec(), StatusCode::BAD_REQUEST),
        ("empty", Vec::new(), StatusCode::BAD_REQUEST),
        ("deeply nested", deep.into_bytes(), StatusCode::BAD_REQUEST),
        ("2 MiB", big.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE),
        ("invalid UTF-8", b"{\"message\": \"\xff\"}".to_vec(), StatusCode::BAD_REQUEST),
    ];
    for (what, body, status) in cases {
        let r = s.post(body).await;
        assert_eq!(r.status(), status, "{what}");
        let j = json(r).await;
        assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {j}");
    }
    assert!(s.history().is_empty());
    let r = s.post(captured("netdata-alert-critical.json")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_gets_415_naming_its_coding_and_nothing_is_stored() {
    use std::io::Write as _;
    let s = TestServer::start(BEARER).await;
    let plain = captured("netdata-alert-critical.json");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gzipped = gz.finish().unwrap();
    for coding in ["gzip", "GZIP", "identity, gzip", "br"] {
        let r = s
            .client()
            .post(s.url("/"))
            .bearer_auth("test-token")
            .header("content-type", "application/json")
            .header("content-encoding", coding)
            .body(gzipped.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{coding}");
        assert_eq!(r.headers()["accept-encoding"], "identity", "{coding}");
        let j = json(r).await;
        let reason = j["error"].as_str().unwrap_or_default();
        let named = coding.rsplit(", ").next().unwrap();
        assert!(reason.contains(named) && reason.contains("uncompressed"), "{coding}: {j}");
    }
    // Without credentials the answer is still 401: the coding is looked at only after them.
    let r = s.client().post(s.url("/")).header("content-encoding", "gzip").body(gzipped).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(s.history().is_empty());
    // `identity` is no coding at all.
    let r = s
        .client()
        .post(s.url("/"))
        .bearer_auth("test-token")
        .header("content-encoding", "identity")
        .body(plain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.history().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_led_by_a_byte_order_mark_is_parsed_and_stored_as_it_came() {
    let s = TestServer::start(BEARER).await;
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(&captured("netdata-alert-warning.json"));
    let r = s.post(body.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let id = json(r).await["id"].as_i64().unwrap();
    assert_eq!(alertray::store::raw_body(&s.reader(), id).unwrap().unwrap(), body);
    let active = s.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].level, Level::Warning);
}

/// A reachability body as Netdata sends it (`captured/netdata-reachability-*.json`), naming
/// the given nodes (id, hostname) in its `nodes` list.
fn reachability_of(nodes: &[(&str, &str)], reachable: bool) -> String {
    let mut v: Value = serde_json::from_slice(&captured(if reachable {
        "netdata-reachability-reachable.json"
    } else {
        "netdata-reachability-unreachable.json"
    }))
    .unwrap();
    v["nodes"] = nodes.iter().map(|(id, host)| json!({"id": id, "hostname": host})).collect();
    v["message"] = json!(format!("{} nodes are {}", nodes.len(), if reachable { "reachable" } else { "unreachable" }));
    v["url"] = json!(format!("https://app.netdata.cloud/spaces/slvn-co/rooms/all-nodes/nodes/{}", nodes[0].0));
    v.to_string()
}

/// A parent that goes away can take the nodes behind it along, and one notification then
/// names them all: each is down until its own "reachable" arrives, across a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_a_reachability_notification_names_is_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(BEARER, dir.path()).await;
    let mut events = s.events.subscribe();
    let (a, b, c) = (("id-a", "parent.example"), ("id-b", "child-1.example"), ("id-c", "child-2.example"));
    let resp = json(s.post(reachability_of(&[a, b, c], false)).await).await;
    assert_eq!(resp["status"], "stored", "{resp}");
    let down = |s: &TestServer| {
        let mut v: Vec<(String, Option<String>)> =
            s.active().into_iter().filter(|x| x.level == Level::Unreachable).map(|x| (x.host, x.url)).collect();
        v.sort();
        v
    };
    let page = |id: &str| Some(format!("https://app.netdata.cloud/spaces/slvn-co/rooms/all-nodes/nodes/{id}"));
    assert_eq!(
        down(&s),
        [
            ("child-1.example".to_string(), page("id-b")),
            ("child-2.example".to_string(), page("id-c")),
            ("parent.example".to_string(), page("id-a")),
        ]
    );
    let mut announced = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Alert { change: Change::Unreachable, alert, .. } = e {
            announced.push(format!("{}: {}", alert.host, alert.message));
        }
    }
    assert_eq!(
        announced,
        [
            "parent.example: 3 nodes are unreachable",
            "child-1.example: Slvn.co/child-1.example is unreachable",
            "child-2.example: Slvn.co/child-2.example is unreachable"
        ]
    );
    assert_eq!(s.history().len(), 1, "one delivery, one history entry");
    // History lists it under every node it names, and finds it by any of them.
    assert_eq!(s.history()[0].host.as_deref(), Some("parent.example, child-1.example, child-2.example"));
    let by_host = |s: &TestServer, q: &str| {
        let q = alertray::store::HistoryQuery { host: Some(q.into()), ..Default::default() };
        alertray::store::history(&s.reader(), &q).unwrap().len()
    };
    for q in ["parent", "child-1.example", "CHILD-2"] {
        assert_eq!(by_host(&s, q), 1, "{q}");
    }
    for q in ["hild", "example", "child-3"] {
        assert_eq!(by_host(&s, q), 0, "{q} is no node's name or its beginning");
    }

    // One child comes back on its own; the others stay down, and an acknowledgement reaches
    // the right node.
    s.post(reachability_of(&[b], true)).await;
    let key_c = s.active().into_iter().find(|x| x.host == "child-2.example").unwrap().key;
    assert!(s.store().acknowledge(&key_c, true).await.unwrap());
    let hosts = |s: &TestServer| {
        let mut v: Vec<(String, bool)> = s.active().into_iter().map(|x| (x.host, x.acknowledged)).collect();
        v.sort();
        v
    };
    let expected = [("child-2.example".to_string(), true), ("parent.example".to_string(), false)];
    assert_eq!(hosts(&s), expected);

    // A restart restores exactly that.
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    assert_eq!(hosts(&s), expected);

    // The parent and the other child come back together.
    s.post(reachability_of(&[a, c], true)).await;
    assert!(s.active().is_empty(), "{:?}", s.active());
}

/// The flat documented shape for the alert of `captured/netdata-alert-critical.json` (used_swap
/// on la1.node.garland.slvn.co), as the seed doc's table describes it.
fn flat_used_swap(severity: &str, message: &str, date: &str) -> String {
    json!({
        "message": format!("{message}, System swap memory utilization = 0%, on la1.node.garland.slvn.co"),
        "alarm": "used_swap",
        "info": "System swap memory utilization",
        "chart": "mem.swap",
        "context": "mem.swap",
        "space": "Slvn.co",
        "family": "swap",
        "class": "Utilization",
        "severity": severity,
        "date": date,
        "duration": "5 minutes",
        "alarm_url": "https://app.netdata.cloud/spaces/slvn-co/rooms/all-nodes/alerts/mem.swap.used_swap:::e84d4453-cb1f-48b5-abfd-0a82629712bd?chart=mem.swap"
    })
    .to_string()
}

/// Netdata has changed shapes before; while it does, an alert raised in one shape can clear
/// in the other. Both name the same node, chart and alert, so they are the same alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_in_one_shape_clears_in_the_other() {
    let s = TestServer::start(BEARER).await;
    s.post(captured("netdata-alert-critical.json")).await;
    assert_eq!(s.active().len(), 1);
    let r = s.post(flat_used_swap("clear", "Recovered", "2026-04-10T23:00:00-05:00")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.active().is_empty(), "the flat clear left {:?}", s.active());

    s.post(flat_used_swap("warning", "Raised to Warning", "2026-04-11T00:00:00-05:00")).await;
    assert_eq!(s.active().iter().map(|a| a.level).collect::<Vec<_>>(), [Level::Warning]);
    let mut clear: Value = serde_json::from_slice(&captured("netdata-alert-critical.json")).unwrap();
    clear["alert"]["state"]["status"] = "Clear".into();
    clear["alert"]["transition_id"] = "5d0c1c1e-3f0a-4d7c-a7a3-2b9e8f6d4c21".into();
    clear["alert"]["triggered_at"] = "2026-04-11T00:10:00-05:00".into();
    s.post(clear.to_string()).await;
    assert!(s.active().is_empty(), "the nested clear left {:?}", s.active());
}

/// A flat notification that names its node by id only (no hostname anywhere in it) keeps the
/// hostname an earlier one gave: in the active list, after a restart, and in the recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_named_by_id_only_keeps_its_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(BEARER, dir.path()).await;
    let by_id = |severity: &str, message: &str, date: &str| {
        let mut v: Value = serde_json::from_str(&flat_used_swap(severity, message, date)).unwrap();
        v["message"] = json!(format!("{message}, System swap memory utilization"));
        v.to_string()
    };
    let hosts = |s: &TestServer| s.active().into_iter().map(|a| a.host).collect::<Vec<_>>();
    // Named by id alone from the start: the id is all there is.
    s.post(by_id("warning", "Raised to Warning", "2026-04-10T22:00:00-05:00")).await;
    assert_eq!(hosts(&s), ["e84d4453-cb1f-48b5-abfd-0a82629712bd"]);
    // The nested shape names it; a later flat update by id keeps that name, restart or not.
    s.post(captured("netdata-alert-critical.json")).await;
    s.post(by_id("warning", "Raised to Warning", "2026-04-10T23:50:00-05:00")).await;
    assert_eq!(hosts(&s), ["la1.node.garland.slvn.co"]);
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    let mut events_after = s.events.subscribe();
    assert_eq!(hosts(&s), ["la1.node.garland.slvn.co"]);
    s.post(by_id("clear", "Recovered", "2026-04-11T00:00:00-05:00")).await;
    assert!(s.active().is_empty());
    let mut cleared = Vec::new();
    while let Ok(e) = events_after.try_recv() {
        if let Event::Alert { change: Change::Cleared, alert, .. } = e {
            cleared.push(alert.host);
        }
    }
    assert_eq!(cleared, ["la1.node.garland.slvn.co"], "the recovery names the host");
}

/// What came last for every node a notification names is known after a restart too: a body
/// sent again is news when one of its nodes has changed since, even a node after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_naming_several_nodes_is_news_once_any_of_them_changed_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(BEARER, dir.path()).await;
    let (a, b, c) = (("id-a", "a.example"), ("id-b", "b.example"), ("id-c", "c.example"));
    let down = reachability_of(&[a, b], false);
    assert_eq!(json(s.post(down.clone()).await).await["duplicate"], false);
    // b (not the first node of that body) comes back with another node.
    assert_eq!(json(s.post(reachability_of(&[c, b], true)).await).await["duplicate"], false);
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    // The same body again: b went down again, which is news.
    let again = json(s.post(down.clone()).await).await;
    assert_eq!(again["duplicate"], false, "{again}");
    let mut hosts: Vec<String> = s.active().into_iter().map(|x| x.host).collect();
    hosts.sort();
    assert_eq!(hosts, ["a.example", "b.example"]);
    // And a retry of it, with nothing in between, is folded, after another restart too.
    s.stop().await;
    let s = TestServer::start_in(BEARER, dir.path()).await;
    assert_eq!(json(s.post(down).await).await["duplicate"], true);
}
