//! Crash consistency: `alertray serve` is killed with SIGKILL at random moments while a
//! client delivers, and restarted. Every delivery that got a 2xx must be in the store exactly
//! once, nothing that was not sent may be there, and the active state must be what the
//! stored stream implies.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::Rng;

const KEYS: usize = 8;
const STATUSES: [&str; 3] = ["Warning", "Critical", "Clear"];

struct Sent {
    host: String,
    status: &'static str,
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = write_config(dir.path(), "");
    let data = dir.path().join("data");
    let sent: Arc<Mutex<BTreeMap<u64, Sent>>> = Arc::default();
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut rng = rand::thread_rng();
    let mut seq = 0u64;
    let kills = 25;
    for _ in 0..kills {
        let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
        let client = serve.client();
        let url = serve.url();
        let stop = Arc::new(AtomicBool::new(false));
        // Four clients at once, so that kills land inside group commits too.
        let mut workers = Vec::new();
        for w in 0..4u64 {
            let (client, url, stop, sent, acked) =
                (client.clone(), url.clone(), stop.clone(), sent.clone(), acked.clone());
            let start = seq + w * 1_000_000;
            workers.push(std::thread::spawn(move || {
                let mut i = start;
                let mut local = rand::thread_rng();
                while !stop.load(Ordering::Relaxed) {
                    let host = format!("crash-node-{}", local.gen_range(0..KEYS));
                    let status = STATUSES[local.gen_range(0..STATUSES.len())];
                    let body = serde_json::json!({
                        "message": format!("{status} load, on {host}"),
                        "node": {"id": host, "hostname": host},
                        "alert": {
                            "name": "load", "state": {"status": status, "value_str": i.to_string()},
                            "transition_id": format!("crash-{i}"),
                            // Later deliveries are newer, so the last stored one per key wins.
                            "triggered_at": chrono::DateTime::from_timestamp(1_700_000_000 + (i % 1_000_000) as i64 * 10 + (i / 1_000_000) as i64, 0).unwrap().to_rfc3339(),
                        }
                    });
                    sent.lock().unwrap().insert(i, Sent { host: host.clone(), status });
                    let r = client.post(&url).bearer_auth("test-token").body(body.to_string()).send();
                    match r {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().insert(i);
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // killed mid-request: not acknowledged
                    }
                    i += 1;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..400)));
        let mut serve = serve;
        serve.child.kill().unwrap(); // SIGKILL
        serve.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        seq += 4_000_000;
    }

    // Read the store as the restarted receiver would.
    let serve = Serve::start(&cfg, &data, port, &[], &["--no-popups"]);
    let conn = rusqlite::Connection::open(alertray::store::db_path(&data)).unwrap();
    let mut stmt = conn.prepare("SELECT transition_id, COUNT(*) FROM notifications GROUP BY transition_id").unwrap();
    let stored: HashMap<u64, i64> = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .map(|(t, n)| (t.trim_start_matches("crash-").parse().unwrap(), n))
        .collect();
    let sent = sent.lock().unwrap();
    let acked = acked.lock().unwrap();
    for (tid, n) in &stored {
        assert_eq!(*n, 1, "crash-{tid} stored {n} times");
        assert!(sent.contains_key(tid), "crash-{tid} was never sent");
    }
    let lost: Vec<_> = acked.iter().filter(|t| !stored.contains_key(t)).collect();
    assert!(lost.is_empty(), "{} acknowledged deliveries lost: {lost:?}", lost.len());

    // The active state is what the stored stream implies: per node, the newest stored status.
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    let mut by_time: Vec<(i64, &Sent)> =
        stored.keys().map(|t| ((t % 1_000_000) as i64 * 10 + (t / 1_000_000) as i64, &sent[t])).collect();
    by_time.sort_by_key(|(at, _)| *at);
    for (_, s) in by_time {
        expected.insert(s.host.clone(), s.status);
    }
    expected.retain(|_, s| *s != "Clear");
    let active: BTreeMap<String, String> =
        alertray::store::active(&alertray::store::open_reader(&alertray::store::db_path(&data)).unwrap())
            .unwrap()
            .into_iter()
            .map(|a| (a.host, a.level.label().to_string()))
            .collect();
    let expected: BTreeMap<String, String> = expected.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    assert_eq!(active, expected);
    eprintln!(
        "crash consistency: {kills} SIGKILLs, {} sent, {} acknowledged, {} found in the store ({} stored without an answer)",
        sent.len(),
        acked.len(),
        stored.len(),
        stored.len() - acked.len()
    );
    drop(serve);
}
