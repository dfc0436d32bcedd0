//! Sample events and proptest strategies shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use perfstream_events::*;
use proptest::prelude::*;

/// 2026-01-01T00:00:00Z in microseconds.
pub const T0: i64 = 1_767_225_600_000_000;

pub fn query() -> QueryEvent {
    QueryEvent {
        service: "campaign-api".into(),
        instance: "campaign-api-7d9f-x2".into(),
        query_hash: "9f86d081884c7d65".into(),
        query_type: QueryType::Select,
        query_text: Some("SELECT * FROM campaigns WHERE id = $1".into()),
        execution_time_us: 1_250,
        rows_affected: 1,
        tenant_id: Some("tenant-42".into()),
        executed_at_us: T0,
        trace_id: None,
    }
}

pub fn request() -> RequestEvent {
    RequestEvent {
        service: "campaign-api".into(),
        instance: "campaign-api-7d9f-x2".into(),
        endpoint: "/campaigns/{id}".into(),
        method: "GET".into(),
        status_code: 200,
        response_time_us: 12_000,
        request_bytes: None,
        response_bytes: Some(2_048),
        occurred_at_us: T0,
        trace_id: None,
    }
}

pub fn resource() -> ResourceEvent {
    ResourceEvent {
        service: "campaign-api".into(),
        instance: "campaign-api-7d9f-x2".into(),
        observed_at_us: T0,
        interval_us: 10_000_000,
        cpu_utilization_ratio: 0.42,
        memory_used_bytes: 512 << 20,
        memory_limit_bytes: 1 << 30,
        heap_bytes: Some(300 << 20),
        gc_pause_us: Some(1_500),
        gc_count: Some(3),
        io_read_bytes: 10_000,
        io_write_bytes: 20_000,
        pool_active: 5,
        pool_idle: 3,
        pool_max: 20,
        pool_waiters: 0,
        pool_wait_us: 0,
        caches: Some(BTreeMap::from([
            (
                "domains".to_string(),
                CacheCounters {
                    hits: 90,
                    misses: 10,
                },
            ),
            ("users".to_string(), CacheCounters { hits: 5, misses: 0 }),
        ])),
    }
}

pub fn alert() -> AlertEvent {
    AlertEvent {
        alert_id: "a1b2c3".into(),
        rule: "slow_query".into(),
        severity: Severity::Critical,
        state: AlertState::Firing,
        service: "campaign-api".into(),
        labels: BTreeMap::from([
            ("query_hash".to_string(), "9f86d081884c7d65".to_string()),
            ("service".to_string(), "campaign-api".to_string()),
        ]),
        observed_value: 1_250.5,
        threshold: 1_000.0,
        clear_threshold: 800.0,
        window_start_us: T0,
        window_end_us: T0 + 60_000_000,
        transitioned_at_us: T0 + 61_000_000,
        message: "p95 execution time 1250.5 ms > 1000 ms".into(),
    }
}

pub fn dead_letter() -> DeadLetter {
    DeadLetter {
        source_topic: "perf.query".into(),
        source_partition: 3,
        source_offset: 12_345,
        original_key: Some(b"campaign-api\0abc".to_vec()),
        original_value: Some(vec![1, 0, 0, 0, 1, 0xff]),
        error_kind: "bad_magic".into(),
        reason: "wrong magic byte 0x01".into(),
        dead_at_us: T0,
    }
}

pub fn framed(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    encode_event(&mut out, e);
    out
}

/// Two decoders with the same limits: the fast path and the resolution path for everything.
pub fn both_paths() -> (Decoder, Decoder) {
    let fast = Decoder::new(DecodeConfig::default());
    let slow = Decoder::new(DecodeConfig {
        fast_path: false,
        ..DecodeConfig::default()
    });
    (fast, slow)
}

// ---- strategies ----

/// Names as services use them, with some non-ASCII.
pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,30}",
        1 => "\\PC{1,12}",
    ]
}

/// Any string, including ones the validation rejects (empty, long).
pub fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        1 => Just(String::new()),
        1 => "[a-z]{250,300}",
    ]
}

/// Longs mostly in the valid range, sometimes anywhere.
pub fn long() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0..1_000_000_000i64,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

pub fn int() -> impl Strategy<Value = i32> {
    prop_oneof![6 => 0..1_000i32, 1 => any::<i32>()]
}

pub fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..2.0f64,
        1 => any::<f64>().prop_filter("NaN != NaN", |d| !d.is_nan()),
        1 => Just(f64::INFINITY),
    ]
}

pub fn time() -> impl Strategy<Value = i64> {
    prop_oneof![8 => T0..T0 + 86_400_000_000, 1 => any::<i64>()]
}

/// A trace id or none: mostly W3C-like, sometimes empty, at the limit or over it, or with a NUL.
pub fn trace_id() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        4 => "[0-9a-f]{32}",
        1 => name(),
        1 => Just(String::new()),
        1 => "[a-z]{127,129}",
        1 => "[a-z]{0,4}\\x00[a-z]{0,4}",
    ])
}

pub fn query_event() -> impl Strategy<Value = QueryEvent> {
    (
        (any_string(), name(), any_string()),
        0..5u32,
        proptest::option::of("\\PC{0,40}"),
        (long(), long()),
        proptest::option::of(name()),
        time(),
        trace_id(),
    )
        .prop_map(
            |((service, instance, query_hash), t, text, (et, rows), tenant, at, trace_id)| {
                QueryEvent {
                    service,
                    instance,
                    query_hash,
                    query_type: QueryType::from_index(t).unwrap_or(QueryType::Other),
                    query_text: text,
                    execution_time_us: et,
                    rows_affected: rows,
                    tenant_id: tenant,
                    executed_at_us: at,
                    trace_id,
                }
            },
        )
}

pub fn request_event() -> impl Strategy<Value = RequestEvent> {
    (
        (name(), name(), any_string(), "[A-Z]{1,7}"),
        prop_oneof![4 => 100..600i32, 1 => any::<i32>()],
        long(),
        (proptest::option::of(long()), proptest::option::of(long())),
        time(),
        trace_id(),
    )
        .prop_map(
            |((service, instance, endpoint, method), status, rt, (rq, rs), at, trace_id)| {
                RequestEvent {
                    service,
                    instance,
                    endpoint,
                    method,
                    status_code: status,
                    response_time_us: rt,
                    request_bytes: rq,
                    response_bytes: rs,
                    occurred_at_us: at,
                    trace_id,
                }
            },
        )
}

pub fn caches() -> impl Strategy<Value = Option<BTreeMap<String, CacheCounters>>> {
    proptest::option::of(proptest::collection::btree_map(
        name(),
        (long(), long()).prop_map(|(hits, misses)| CacheCounters { hits, misses }),
        0..8,
    ))
}

pub fn resource_event() -> impl Strategy<Value = ResourceEvent> {
    (
        (name(), name(), time(), long(), double()),
        (long(), long(), proptest::option::of(long())),
        (
            proptest::option::of(long()),
            proptest::option::of(long()),
            long(),
            long(),
        ),
        (int(), int(), int(), int(), long()),
        caches(),
    )
        .prop_map(
            |(
                (service, instance, at, interval, cpu),
                (mem, limit, heap),
                (gcp, gcc, ior, iow),
                (pa, pi, pm, pw, pwu),
                caches,
            )| ResourceEvent {
                service,
                instance,
                observed_at_us: at,
                interval_us: interval,
                cpu_utilization_ratio: cpu,
                memory_used_bytes: mem,
                memory_limit_bytes: limit,
                heap_bytes: heap,
                gc_pause_us: gcp,
                gc_count: gcc,
                io_read_bytes: ior,
                io_write_bytes: iow,
                pool_active: pa,
                pool_idle: pi,
                pool_max: pm,
                pool_waiters: pw,
                pool_wait_us: pwu,
                caches,
            },
        )
}

pub fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        query_event().prop_map(Event::Query),
        request_event().prop_map(Event::Request),
        resource_event().prop_map(Event::Resource),
    ]
}

pub fn alert_event() -> impl Strategy<Value = AlertEvent> {
    (
        (name(), name(), 0..3usize, 0..2usize, name()),
        proptest::collection::btree_map(name(), any_string(), 0..6),
        (double(), double(), double()),
        (time(), time(), time()),
        "\\PC{0,60}",
    )
        .prop_map(
            |((id, rule, sev, st, service), labels, (o, t, c), (ws, we, tr), message)| AlertEvent {
                alert_id: id,
                rule,
                severity: Severity::ALL[sev],
                state: AlertState::ALL[st],
                service,
                labels,
                observed_value: o,
                threshold: t,
                clear_threshold: c,
                window_start_us: ws,
                window_end_us: we,
                transitioned_at_us: tr,
                message,
            },
        )
}

pub fn dead_letter_event() -> impl Strategy<Value = DeadLetter> {
    (
        (name(), any::<i32>(), any::<i64>()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        (name(), "\\PC{0,60}", time()),
    )
        .prop_map(
            |((topic, p, o), key, value, (kind, reason, at))| DeadLetter {
                source_topic: topic,
                source_partition: p,
                source_offset: o,
                original_key: key,
                original_value: value,
                error_kind: kind,
                reason,
                dead_at_us: at,
            },
        )
}

/// Proptest config: `PROPTEST_CASES` from the environment (proptest reads it), else `default`.
pub fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
