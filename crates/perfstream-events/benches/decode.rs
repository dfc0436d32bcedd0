//! Decode throughput per record kind and per path, in events/s on one core.
//!
//! `fast`: the specialised decoder for our own schema ids. `resolution`: the same bytes through
//! apache-avro's schema resolution (`DecodeConfig { fast_path: false }`), the path any other
//! writer schema takes. Both include validation. Each iteration decodes a batch of 1000
//! distinct, realistic messages (services, endpoints and hashes vary).
//!
//! `cargo bench -p perfstream-events --bench decode -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perfstream_events::encode::{encode_alert, encode_dead_letter};
use perfstream_events::*;

const BATCH: usize = 1000;
const T0: i64 = 1_767_225_600_000_000;
/// The Kafka timestamp passed to `decode`: after every event time, so the skew check runs and
/// passes.
const KAFKA_TS: i64 = T0 + 86_400_000_000;

fn query(i: usize) -> Event {
    Event::Query(QueryEvent {
        service: format!("service-{}", i % 20),
        instance: format!("service-{}-pod-{}", i % 20, i % 7),
        query_hash: format!("{:016x}", (i % 500) as u64 * 0x9e37_79b9_7f4a_7c15),
        query_type: QueryType::ALL[i % 5],
        query_text: i
            .is_multiple_of(4)
            .then(|| "SELECT id, name FROM campaigns WHERE id = $1".into()),
        execution_time_us: 200 + (i as i64 * 37) % 50_000,
        rows_affected: (i % 100) as i64,
        tenant_id: i.is_multiple_of(3).then(|| format!("tenant-{}", i % 50)),
        trace_id: None,
        executed_at_us: T0 + i as i64 * 1_000,
    })
}

fn request(i: usize) -> Event {
    Event::Request(RequestEvent {
        service: format!("service-{}", i % 20),
        instance: format!("service-{}-pod-{}", i % 20, i % 7),
        endpoint: format!("/api/v1/resource-{}/{{id}}", i % 40),
        method: ["GET", "POST", "PUT", "DELETE"][i % 4].into(),
        status_code: [200, 201, 404, 500][i % 4],
        response_time_us: 1_000 + (i as i64 * 91) % 200_000,
        request_bytes: i.is_multiple_of(2).then_some(512),
        response_bytes: Some(2_048 + i as i64 % 1000),
        trace_id: None,
        occurred_at_us: T0 + i as i64 * 1_000,
    })
}

fn resource(i: usize) -> Event {
    Event::Resource(ResourceEvent {
        service: format!("service-{}", i % 20),
        instance: format!("service-{}-pod-{}", i % 20, i % 7),
        observed_at_us: T0 + i as i64 * 10_000_000,
        interval_us: 10_000_000,
        cpu_utilization_ratio: (i % 100) as f64 / 100.0,
        memory_used_bytes: 400 << 20,
        memory_limit_bytes: 1 << 30,
        heap_bytes: Some(200 << 20),
        gc_pause_us: Some(1_200),
        gc_count: Some(4),
        io_read_bytes: 10_000,
        io_write_bytes: 5_000,
        pool_active: 8,
        pool_idle: 2,
        pool_max: 20,
        pool_waiters: (i % 3) as i32,
        pool_wait_us: 100,
        caches: Some(BTreeMap::from([
            (
                "domains".into(),
                CacheCounters {
                    hits: 900,
                    misses: 100,
                },
            ),
            (
                "sessions".into(),
                CacheCounters {
                    hits: 50,
                    misses: 5,
                },
            ),
        ])),
    })
}

fn alert(i: usize) -> AlertEvent {
    AlertEvent {
        alert_id: format!("{:016x}", i as u64 * 0x9e37_79b9),
        rule: "slow_query".into(),
        severity: Severity::Warning,
        state: AlertState::ALL[i % 2],
        service: format!("service-{}", i % 20),
        labels: BTreeMap::from([
            ("service".into(), format!("service-{}", i % 20)),
            ("query_hash".into(), format!("{:016x}", i % 500)),
        ]),
        observed_value: 1_250.0,
        threshold: 1_000.0,
        clear_threshold: 800.0,
        window_start_us: T0,
        window_end_us: T0 + 60_000_000,
        transitioned_at_us: T0 + 61_000_000,
        message: "p95 execution time 1250 ms > 1000 ms".into(),
    }
}

fn dead_letter(i: usize) -> DeadLetter {
    DeadLetter {
        source_topic: "perf.query".into(),
        source_partition: (i % 8) as i32,
        source_offset: i as i64,
        original_key: Some(b"service-1\0abc".to_vec()),
        original_value: Some(vec![1; 80]),
        error_kind: "bad_magic".into(),
        reason: "wrong magic byte 0x01: expected 0x00 (Confluent wire format)".into(),
        dead_at_us: T0,
    }
}

fn batch(f: impl Fn(usize, &mut Vec<u8>)) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let mut out = Vec::new();
            f(i, &mut out);
            out
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let fast = Decoder::new(DecodeConfig::default());
    let resolution = Decoder::new(DecodeConfig {
        fast_path: false,
        ..DecodeConfig::default()
    });
    let inputs: [(&str, Vec<Vec<u8>>); 3] = [
        ("query", batch(|i, o| encode_event(o, &query(i)))),
        ("request", batch(|i, o| encode_event(o, &request(i)))),
        ("resource", batch(|i, o| encode_event(o, &resource(i)))),
    ];
    let alerts = batch(|i, o| encode_alert(o, &alert(i)));
    let dead = batch(|i, o| encode_dead_letter(o, &dead_letter(i)));

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (path, d) in [("fast", &fast), ("resolution", &resolution)] {
        for (kind, msgs) in &inputs {
            // every message must decode, or the numbers would measure error paths
            if let Some(Err(e)) = msgs
                .iter()
                .map(|m| d.decode(m, Some(KAFKA_TS)))
                .find(Result::is_err)
            {
                panic!("{kind} messages must decode: {e}");
            }
            g.bench_function(format!("{kind}/{path}"), |b| {
                b.iter(|| {
                    for m in msgs {
                        let _ = black_box(d.decode(black_box(m), Some(KAFKA_TS)));
                    }
                })
            });
        }
        assert!(alerts.iter().all(|m| d.decode_alert(m).is_ok()));
        g.bench_function(format!("alert/{path}"), |b| {
            b.iter(|| {
                for m in &alerts {
                    let _ = black_box(d.decode_alert(black_box(m)));
                }
            })
        });
        assert!(dead.iter().all(|m| d.decode_dead_letter(m).is_ok()));
        g.bench_function(format!("dead_letter/{path}"), |b| {
            b.iter(|| {
                for m in &dead {
                    let _ = black_box(d.decode_dead_letter(black_box(m)));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
