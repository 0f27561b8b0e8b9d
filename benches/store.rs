//! Store ingest benchmark: how fast, and at what CPU cost, the store records deliveries
//! durably, without TLS or HTTP in the way.
//!
//! `cargo bench --bench store` opens a fresh store in a temporary folder (on the same file
//! system as the system's temporary folder) and, for several numbers of concurrent callers,
//! records unique nested-shape alerts (like `bench/post_unique.lua` sends) from that many
//! tasks in a closed loop for a few seconds. Every call returns only once its delivery is
//! committed and flushed, exactly as the receiver awaits it. It prints deliveries per second,
//! the mean call latency, and on Linux the CPU time per delivery of the store's writer and
//! syncer threads (from `/proc/self/task`).
//!
//! Environment: `STORE_BENCH_SECS` (default 4) per run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alertray::payload;
use alertray::store::{self, Delivery, Store};

const HOSTS: usize = 50;
const ALERTS: &[(&str, &str, &str)] = &[
    ("used_swap", "mem.swap", "mem.swap"),
    ("ram_in_use", "system.ram", "system.ram"),
    ("10min_cpu_usage", "system.cpu", "system.cpu"),
    ("disk_space_usage", "disk_space._", "disk.space"),
    ("out_of_disk_space_time", "disk_space._", "disk.space"),
    ("1m_tcp_syn_queue_drops", "ip.tcp_syn_queue", "ip.tcp_syn_queue"),
];
const STATUSES: &[&str] = &["Critical", "Warning", "Clear"];

/// A small deterministic generator, so every run sends the same sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn body(seq: u64, rng: &mut Lcg) -> Vec<u8> {
    let host = rng.next(HOSTS);
    let (name, chart, context) = ALERTS[rng.next(ALERTS.len())];
    let status = STATUSES[rng.next(STATUSES.len())];
    let value = rng.next(10_000) as f64 / 100.0;
    let node = format!("e84d4453-cb1f-48b5-abfd-{host:012x}");
    let transition = format!("bench-{seq:012}");
    let url = format!(
        "https://app.netdata.cloud/spaces/bench/rooms/all-nodes/alerts/{context}.{name}:::{node}?chart={chart}&alarm={name}&transition={transition}"
    );
    serde_json::to_vec(&serde_json::json!({
        "message": format!("{status}, {name} = {value:.0}%, on node{host:02}.bench.example.net"),
        "space": {"id": "399a3ded-8276-429e-9c24-1e69f06efdd8", "name": "Bench", "slug": "bench"},
        "node": {
            "id": node,
            "hostname": format!("node{host:02}.bench.example.net"),
            "rooms": [{"id": "13662d82-19a5-401a-834d-e32b42a116c3", "name": "All nodes", "slug": "all-nodes",
                       "url": "https://app.netdata.cloud/spaces/bench/rooms/all-nodes"}]
        },
        "alert": {
            "name": name,
            "chart": {"id": chart, "name": chart},
            "context": context,
            "state": {"status": status, "value": value, "value_str": format!("{value:.0}%")},
            "prev_state": {"status": "Clear", "value": 0, "value_str": "0%"},
            "triggered_at": "2026-04-10T22:11:48-05:00",
            "transition_id": transition,
            "duration": {"value": seq, "value_str": format!("{seq} seconds"), "non_clear": 0},
            "location": {"timezone": "CDT", "utc_offset": -18000},
            "config": {"hash": "bde2cfa3-dbaa-42c4-bba2-5fd798142f2a", "classification": "Utilization",
                       "recipient": "sysadmin", "command": "sudo /etc/netdata/edit-config health.d/bench.conf",
                       "line": 20, "centralisation_point": {"hostname": "netdata.service.bench.example.net"}},
            "rendered": {"info": "System utilization", "summary": "System utilization is high"},
            "log": {"total": {"critical": 1, "warning": 2},
                    "entries": [{"name": "ram_available", "status": "Warning", "triggered_at": "2026-04-10T22:11:28-05:00"}]},
            "url": url
        }
    }))
    .expect("a json! value serialises")
}

/// CPU time (user + system, in clock ticks) of this process's threads, by thread id, with
/// their names.
fn thread_ticks() -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // The name is between the first '(' and the last ')'; fields follow.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let tid = task.file_name().to_string_lossy().into_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        out.insert(tid, (name, ticks));
    }
    out
}

/// Microseconds of CPU per delivery spent by threads named `name` between two readings
/// (threads started in between count from zero; a thread that ended is not counted).
fn per_delivery(
    before: &HashMap<String, (String, u64)>,
    after: &HashMap<String, (String, u64)>,
    name: &str,
    n: u64,
) -> f64 {
    let ticks: u64 = after
        .iter()
        .filter(|(_, (thread, _))| thread == name)
        .map(|(tid, (_, t))| t.saturating_sub(before.get(tid).map_or(0, |(_, b)| *b)))
        .sum();
    // Clock ticks are 1/100 s on Linux.
    ticks as f64 * 10_000.0 / n.max(1) as f64
}

fn run(callers: usize, secs: u64) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let store = Store::open(&store::db_path(dir.path()), events, 0).expect("open the store");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (count, elapsed, latency_sum, before, after) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let before = thread_ticks();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for caller in 0..callers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Lcg(caller as u64 + 1);
                let (mut n, mut waited) = (0u64, Duration::ZERO);
                while Instant::now() < deadline {
                    let seq = (caller as u64) << 40 | n;
                    let body = body(seq, &mut rng);
                    let notification = payload::parse(&body).expect("the bench body parses");
                    let delivery = Delivery {
                        body,
                        notification,
                        received_ms: store::now_ms(),
                        peer: "127.0.0.1:50000".into(),
                        auth: "bearer".into(),
                    };
                    let t = Instant::now();
                    let rec = store.record(delivery).await.expect("the delivery is stored");
                    waited += t.elapsed();
                    assert!(!rec.duplicate, "every bench body has its own transition id");
                    n += 1;
                }
                (n, waited)
            }));
        }
        let (mut count, mut waited) = (0u64, Duration::ZERO);
        for t in tasks {
            let (n, w) = t.await.expect("a caller finished");
            count += n;
            waited += w;
        }
        (count, started.elapsed(), waited, before, thread_ticks())
    });
    let rate = count as f64 / elapsed.as_secs_f64();
    let mean_ms = latency_sum.as_secs_f64() * 1000.0 / count.max(1) as f64;
    let writer = per_delivery(&before, &after, "alertray-store", count);
    let syncer = per_delivery(&before, &after, "alertray-sync", count);
    println!(
        "store/record callers={callers:<3} {rate:>9.0} deliveries/s  mean {mean_ms:>6.3} ms  writer {writer:>5.1} us  syncer {syncer:>4.1} us  per delivery"
    );
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = std::env::var("STORE_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(if quick { 1 } else { 4 });
    for callers in [1, 8, 24, 64] {
        run(callers, secs);
    }
}
