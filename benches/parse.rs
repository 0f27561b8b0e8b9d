//! Parser and challenge micro-benchmarks.
//!
//! `cargo bench --bench parse` measures `alertray::payload::parse` on every body captured from
//! Netdata Cloud (embedded at compile time from `tests/fixtures/captured/`), on a flat body
//! of the shape Netdata's 2023 doc describes, and `challenge::response_token`. Measurement
//! times are short so the whole run stays well under two minutes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use alertray::payload::{self, Notification};

/// Each captured body, by file name, embedded at compile time.
const CAPTURED: &[(&str, &[u8])] = &[
    ("netdata-alert-critical", include_bytes!("../tests/fixtures/captured/netdata-alert-critical.json")),
    ("netdata-alert-recovered", include_bytes!("../tests/fixtures/captured/netdata-alert-recovered.json")),
    ("netdata-alert-warning", include_bytes!("../tests/fixtures/captured/netdata-alert-warning.json")),
    (
        "netdata-reachability-reachable",
        include_bytes!("../tests/fixtures/captured/netdata-reachability-reachable.json"),
    ),
    (
        "netdata-reachability-unreachable",
        include_bytes!("../tests/fixtures/captured/netdata-reachability-unreachable.json"),
    ),
    ("netdata-token", include_bytes!("../tests/fixtures/captured/netdata-token.json")),
];

/// A flat alert body with the keys of Netdata's documented (2023) webhook shape.
fn flat_documented_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "message": "Raised to Critical, System swap memory utilization = 100%, on web1.example.com",
        "alarm": "used_swap",
        "info": "System swap memory utilization",
        "chart": "mem.swap",
        "context": "mem.swap",
        "space": "Example Space",
        "rooms": {
            "All nodes": "https://app.netdata.cloud/spaces/example-space/rooms/all-nodes",
            "Web": "https://app.netdata.cloud/spaces/example-space/rooms/web"
        },
        "family": "swap",
        "class": "Utilization",
        "severity": "critical",
        "date": "2026-04-10T22:11:48-05:00",
        "duration": "37 minutes",
        "additional_active_critical_alerts": 1,
        "additional_active_warning_alerts": 2,
        "alarm_url": "https://app.netdata.cloud/spaces/example-space/rooms/all-nodes/alerts/mem.swap.used_swap:::e84d4453-cb1f-48b5-abfd-0a82629712bd?chart=mem.swap&alarm=used_swap"
    }))
    .expect("a json! value serialises")
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(50);
    for (name, body) in CAPTURED {
        // Every captured body must parse; a bench of an error path would mislead.
        let n = payload::parse(body).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
        assert!(!matches!(n, Notification::Unknown(_)), "{name} parsed as an unknown shape");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("captured", name), body, |b, body| {
            b.iter(|| payload::parse(black_box(body)))
        });
    }
    let flat = flat_documented_body();
    let n = payload::parse(&flat).expect("the flat body parses");
    assert!(matches!(n, Notification::Alert(_)), "the flat body is an alert, got {}", n.kind());
    group.throughput(Throughput::Bytes(flat.len() as u64));
    group.bench_with_input(BenchmarkId::new("flat", "documented-shape"), &flat, |b, body| {
        b.iter(|| payload::parse(black_box(body)))
    });
    group.finish();
}

fn bench_challenge(c: &mut Criterion) {
    assert_eq!(
        alertray::challenge::response_token(b"secret", "abc123"),
        "sha256=WuWsgCoaXJT7aD4b+hIfn3AKJplSE/8vwcUD60PsccY="
    );
    let mut group = c.benchmark_group("challenge");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.sample_size(50);
    group.bench_function("response_token", |b| {
        b.iter(|| alertray::challenge::response_token(black_box(b"secret"), black_box("abc123")))
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_challenge);
criterion_main!(benches);
