//! Hostile events (NUL bytes, lengths around every limit, numbers around every limit and
//! anywhere in i64, any double) and what an accepted one becomes: its text is storable, and its
//! rollup, built by the real window engine and merged with copies of itself, holds only values
//! Postgres accepts. Sums stay exact up to the counts `docs/producers.md` promises, and stay
//! writable (saturated) far beyond.

use std::collections::BTreeMap;

use perfstream_events::validate::*;
use perfstream_events::*;
use perfstream_window::{
    CACHE_COUNTER_MAX, Engine, Gauge, Latency, Merge, PartitionId, RecordOutcome, ResumeState,
    Rollups, WindowConfig,
};
use proptest::prelude::*;

use crate::common::T0;

const DAY_US: i64 = 86_400_000_000;
/// How many times a rollup is merged with itself: 2^40 copies, far past every promise.
const DOUBLINGS: u32 = 40;

/// A text field: mostly valid, sometimes empty, around `max` bytes, with a NUL, or any Unicode.
pub fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        24 => "[a-zA-Z0-9/{}._-]{1,24}",
        1 => Just(String::new()),
        1 => (max - 1..=max + 1).prop_map(|n| "x".repeat(n)),
        1 => (max / 2 - 1..=max / 2 + 1).prop_map(|n| "é".repeat(n)),
        1 => ("\\PC{0,8}", "\\PC{0,8}").prop_map(|(a, b)| format!("{a}\0{b}")),
        1 => "\\PC{1,16}",
    ]
    .boxed()
}

/// A non-negative figure bounded by `max`: mostly valid, around the limit, or any i64.
pub fn figure(max: i64) -> BoxedStrategy<i64> {
    prop_oneof![
        24 => 0..=1_000_000i64,
        2 => 0..=max,
        1 => Just(max),
        1 => Just(max + 1),
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(-1), Just(1 << 62)],
    ]
    .boxed()
}

pub fn time() -> BoxedStrategy<i64> {
    prop_oneof![
        24 => T0..T0 + DAY_US,
        1 => Just(MAX_EVENT_TIME_US),
        1 => Just(MAX_EVENT_TIME_US + 1),
        1 => 0..=MAX_EVENT_TIME_US,
        1 => any::<i64>(),
        1 => Just(0i64),
    ]
    .boxed()
}

pub fn int(typical: std::ops::Range<i32>) -> BoxedStrategy<i32> {
    prop_oneof![
        24 => typical,
        1 => Just(i32::MAX),
        1 => any::<i32>(),
        1 => Just(0),
    ]
    .boxed()
}

pub fn ratio() -> BoxedStrategy<f64> {
    prop_oneof![
        24 => 0.0..4.0f64,
        1 => Just(MAX_RATIO),
        1 => Just(MAX_RATIO * (1.0 + f64::EPSILON)),
        1 => any::<f64>(),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(f64::MAX)],
    ]
    .boxed()
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::weighted(0.8, s)
}

pub fn query() -> BoxedStrategy<QueryEvent> {
    (
        (
            text(MAX_NAME_BYTES),
            text(MAX_NAME_BYTES),
            text(MAX_QUERY_HASH_BYTES),
        ),
        (
            0..5u32,
            opt(text(MAX_QUERY_TEXT_BYTES)),
            opt(text(MAX_NAME_BYTES)),
        ),
        (figure(MAX_DURATION_US), figure(MAX_COUNT), time()),
        opt(text(MAX_TRACE_ID_BYTES)),
    )
        .prop_map(
            |((service, instance, hash), (t, text, tenant), (et, rows, at), trace_id)| QueryEvent {
                service,
                instance,
                query_hash: hash,
                query_type: QueryType::from_index(t).unwrap_or(QueryType::Other),
                query_text: text,
                execution_time_us: et,
                rows_affected: rows,
                tenant_id: tenant,
                executed_at_us: at,
                trace_id,
            },
        )
        .boxed()
}

pub fn request() -> BoxedStrategy<RequestEvent> {
    (
        (text(MAX_NAME_BYTES), text(MAX_NAME_BYTES)),
        (text(MAX_ENDPOINT_BYTES), text(MAX_METHOD_BYTES)),
        (int(100..600), figure(MAX_DURATION_US), time()),
        (opt(figure(MAX_BYTES)), opt(figure(MAX_BYTES))),
        opt(text(MAX_TRACE_ID_BYTES)),
    )
        .prop_map(
            |((service, instance), (endpoint, method), (status, rt, at), (rq, rs), trace_id)| {
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
        .boxed()
}

pub fn caches() -> BoxedStrategy<Option<BTreeMap<String, CacheCounters>>> {
    opt(proptest::collection::btree_map(
        text(MAX_NAME_BYTES),
        (figure(MAX_COUNT), figure(MAX_COUNT))
            .prop_map(|(hits, misses)| CacheCounters { hits, misses }),
        0..5,
    ))
    .boxed()
}

pub fn resource() -> BoxedStrategy<ResourceEvent> {
    (
        (text(MAX_NAME_BYTES), text(MAX_NAME_BYTES), time()),
        (figure(MAX_DURATION_US), ratio()),
        (figure(MAX_BYTES), figure(MAX_BYTES), opt(figure(MAX_BYTES))),
        (opt(figure(MAX_DURATION_US)), opt(figure(MAX_COUNT))),
        (figure(MAX_BYTES), figure(MAX_BYTES)),
        (int(0..100), int(0..100), int(1..200), int(0..100)),
        (figure(MAX_DURATION_US), caches()),
    )
        .prop_map(
            |(
                (service, instance, at),
                (interval, cpu),
                (mem, limit, heap),
                (gcp, gcc),
                (ior, iow),
                (pa, pi, pm, pw),
                (pwu, caches),
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
        .boxed()
}

pub fn event() -> BoxedStrategy<Event> {
    prop_oneof![
        query().prop_map(Event::Query),
        request().prop_map(Event::Request),
        resource().prop_map(Event::Resource),
    ]
    .boxed()
}

/// The Kafka timestamp a message may carry.
pub fn kafka_timestamp() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        Just(Some(T0 + DAY_US)),
        any::<i64>().prop_map(Some)
    ]
}

type R = Result<(), TestCaseError>;

fn storable_text(field: &str, v: &str, max: usize) -> R {
    prop_assert!(!v.contains('\0'), "{field} holds a NUL: {v:?}");
    prop_assert!(v.len() <= max, "{field} has {} bytes > {max}", v.len());
    Ok(())
}

/// Every text field of an accepted event can be stored as is.
pub fn text_is_storable(e: &Event) -> R {
    match e {
        Event::Query(q) => {
            storable_text("service", &q.service, MAX_NAME_BYTES)?;
            storable_text("instance", &q.instance, MAX_NAME_BYTES)?;
            storable_text("query_hash", &q.query_hash, MAX_QUERY_HASH_BYTES)?;
            if let Some(t) = &q.query_text {
                storable_text("query_text", t, MAX_QUERY_TEXT_BYTES)?;
            }
            if let Some(t) = &q.tenant_id {
                storable_text("tenant_id", t, MAX_NAME_BYTES)?;
            }
        }
        Event::Request(r) => {
            storable_text("service", &r.service, MAX_NAME_BYTES)?;
            storable_text("instance", &r.instance, MAX_NAME_BYTES)?;
            storable_text("endpoint", &r.endpoint, MAX_ENDPOINT_BYTES)?;
            storable_text("method", &r.method, MAX_METHOD_BYTES)?;
        }
        Event::Resource(r) => {
            storable_text("service", &r.service, MAX_NAME_BYTES)?;
            storable_text("instance", &r.instance, MAX_NAME_BYTES)?;
            for name in r.caches.iter().flat_map(|c| c.keys()) {
                storable_text("caches", name, MAX_NAME_BYTES)?;
            }
        }
    }
    Ok(())
}

/// The rollups of `e` alone, from the real engine (default settings).
pub fn rollups_of(e: &Event) -> Result<Rollups, TestCaseError> {
    let mut engine = Engine::new(WindowConfig::default()).expect("default config");
    let p = PartitionId {
        topic: 0,
        partition: 0,
    };
    engine.assign(p, ResumeState::default());
    let t = e.time_us();
    let outcome = engine.record(p, 0, e, t).expect("assigned");
    prop_assert_eq!(outcome, RecordOutcome::Aggregated);
    // Idle long enough: the watermark follows the clock to the end of the event's window.
    engine.advance(t + DAY_US);
    let closed = engine.flush().closed;
    prop_assert_eq!(closed.len(), 1);
    Ok(closed)
}

fn window(start: i64, end: i64) -> R {
    prop_assert!(0 <= start && start < end, "window [{start}, {end})");
    prop_assert!(end <= MAX_EVENT_TIME_US + DAY_US, "window end {end}");
    Ok(())
}

/// `sum` of `n` copies of `v`: exact, or saturated at `ceiling` (never wrapped, never beyond);
/// and exact whenever `n <= promised`, the documented count.
fn summed(what: &str, sum: i64, v: i64, n: i128, promised: i128, ceiling: i64) -> R {
    let exact = i128::from(v) * n;
    prop_assert_eq!(
        i128::from(sum),
        exact.min(ceiling.into()),
        "{} of {} copies of {}",
        what,
        n,
        v
    );
    prop_assert!(
        n > promised || exact <= i128::from(ceiling),
        "{what}: {n} copies of {v} saturate, but {promised} are promised exact"
    );
    Ok(())
}

fn latency(l: &Latency, one: &Latency, n: i128) -> R {
    prop_assert_eq!(i128::from(l.count), n);
    summed("sum_us", l.sum_us, one.sum_us, n, 1 << 21, i64::MAX)?;
    prop_assert!(0 <= l.min_us && l.max_us <= MAX_DURATION_US);
    Ok(())
}

/// The documented count of a resource gauge (docs/producers.md), in gauge order.
const GAUGE_PROMISES: [(&str, i128); 15] = [
    ("cpu_ppm", 1 << 23),
    ("memory_used_bytes", 1 << 15),
    ("memory_limit_bytes", 1 << 15),
    ("memory_utilization_ppm", 1 << 23),
    ("heap_bytes", 1 << 15),
    ("gc_pause_us", 1 << 21),
    ("gc_count", 1 << 21),
    ("interval_us", 1 << 21),
    ("pool_active", 1 << 32),
    ("pool_max", 1 << 32),
    ("pool_utilization_ppm", 1 << 23),
    ("pool_waiters", 1 << 32),
    ("pool_wait_us", 1 << 21),
    ("io_read_bytes", 1 << 15),
    ("io_write_bytes", 1 << 15),
];

fn gauges(f: &perfstream_window::ResourceFigures) -> [&Gauge; 15] {
    [
        &f.cpu_ppm,
        &f.memory_used_bytes,
        &f.memory_limit_bytes,
        &f.memory_utilization_ppm,
        &f.heap_bytes,
        &f.gc_pause_us,
        &f.gc_count,
        &f.interval_us,
        &f.pool_active,
        &f.pool_max,
        &f.pool_utilization_ppm,
        &f.pool_waiters,
        &f.pool_wait_us,
        &f.io_read_bytes,
        &f.io_write_bytes,
    ]
}

/// Merges `one` with copies of itself up to 2^DOUBLINGS and checks every step with `check(acc,
/// n)`.
fn doubled<F: Merge + Clone>(one: &F, mut check: impl FnMut(&F, i128) -> R) -> R {
    let mut acc = one.clone();
    check(&acc, 1)?;
    for j in 1..=DOUBLINGS {
        let copy = acc.clone();
        acc.merge(&copy);
        check(&acc, 1 << j)?;
    }
    Ok(())
}

/// The rollup of an accepted event, and that rollup merged with up to 2^40 copies of itself,
/// hold only values the tables accept: text as checked, integers in bigint (counts below 2^63),
/// `cache_hits + cache_misses` in bigint, window bounds in timestamptz range, and sums exact up
/// to the documented counts.
pub fn rollups_are_writable(e: &Event) -> R {
    let r = rollups_of(e)?;
    for q in &r.query {
        window(q.window_start_us, q.window_end_us)?;
        storable_text("service", &q.key.service, MAX_NAME_BYTES)?;
        storable_text("query_hash", &q.key.query_hash, MAX_QUERY_HASH_BYTES)?;
        storable_text("tenant_id", &q.key.tenant_id, MAX_NAME_BYTES)?;
        if let Some(t) = &q.figures.query_text {
            storable_text("query_text", t, MAX_QUERY_TEXT_BYTES)?;
        }
        let one = &q.figures;
        doubled(one, |f, n| {
            latency(&f.latency, &one.latency, n)?;
            summed("rows_sum", f.rows_sum, one.rows_sum, n, 1 << 21, i64::MAX)?;
            prop_assert!(f.rows_max <= MAX_COUNT);
            Ok(())
        })?;
    }
    for q in &r.request {
        window(q.window_start_us, q.window_end_us)?;
        storable_text("service", &q.key.service, MAX_NAME_BYTES)?;
        storable_text("endpoint", &q.key.endpoint, MAX_ENDPOINT_BYTES)?;
        storable_text("method", &q.key.method, MAX_METHOD_BYTES)?;
        let one = &q.figures;
        doubled(one, |f, n| {
            latency(&f.latency, &one.latency, n)?;
            let statuses = f.status_2xx + f.status_3xx + f.status_4xx + f.status_5xx;
            prop_assert_eq!(i128::from(statuses + f.status_other), n);
            Ok(())
        })?;
    }
    for q in &r.resource {
        window(q.window_start_us, q.window_end_us)?;
        storable_text("service", &q.key.service, MAX_NAME_BYTES)?;
        storable_text("instance", &q.key.instance, MAX_NAME_BYTES)?;
        let one = &q.figures;
        for g in gauges(one) {
            if g.count > 0 {
                window(g.last_at_us, g.last_at_us + 1)?;
            }
        }
        doubled(one, |f, n| {
            prop_assert_eq!(i128::from(f.samples), n);
            for ((g, o), (name, promised)) in gauges(f).iter().zip(gauges(one)).zip(GAUGE_PROMISES)
            {
                if o.count > 0 {
                    summed(name, g.sum, o.sum, n, promised, i64::MAX)?;
                }
            }
            summed(
                "cache_hits",
                f.cache_hits,
                one.cache_hits,
                n,
                1 << 20,
                CACHE_COUNTER_MAX,
            )?;
            summed(
                "cache_misses",
                f.cache_misses,
                one.cache_misses,
                n,
                1 << 20,
                CACHE_COUNTER_MAX,
            )?;
            prop_assert!(f.cache_hits.checked_add(f.cache_misses).is_some());
            Ok(())
        })?;
    }
    Ok(())
}
