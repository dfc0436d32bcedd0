//! Helpers shared by the evaluator's Postgres tests: rollup rows and pipeline progress written
//! with SQL as the pipeline would, what the evaluator recorded, the alerts topic, and polling
//! with a deadline.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use perfstream_events::AlertEvent;
use perfstream_kafka::{DevBroker, KafkaSettings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::{PgPool, Row};

pub const MIN_US: i64 = 60_000_000;
/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000_000;
pub const GROUP: &str = "g1";

pub fn ts(us: i64) -> f64 {
    us as f64 / 1e6
}

/// A query rollup row of window `i` with the given p99.
pub async fn query_row(pool: &PgPool, i: i64, hash: &str, p99_ms: i64) {
    sqlx::query(
        "INSERT INTO query_rollups (resolution, window_start, window_end, service, query_hash, query_type,
            count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us, hist, rows_sum, rows_max)
         VALUES ('1m', to_timestamp($1), to_timestamp($2), 'billing', $3, 'select',
            20, 20000, 100, $4, 1000, 2000, 3000, $4, $4, '\\x00'::bytea, 0, 0)",
    )
    .bind(ts(T0 + i * MIN_US))
    .bind(ts(T0 + (i + 1) * MIN_US))
    .bind(hash)
    .bind(p99_ms * 1000)
    .execute(pool)
    .await
    .expect("insert query row");
}

/// Pipeline progress: every partition (two, to check the minimum is used) past `watermark`.
pub async fn watermark(pool: &PgPool, p0_us: i64, p1_us: i64) {
    for (p, w) in [(0, p0_us), (1, p1_us)] {
        sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, resume_offset, applied_through_offset,
                applied_watermark, owner, generation)
             VALUES ($1, 'perf.query', $2, 0, 0, to_timestamp($3), 'w', 1)
             ON CONFLICT (group_id, topic, partition) DO UPDATE SET applied_watermark = EXCLUDED.applied_watermark",
        )
        .bind(GROUP)
        .bind(p)
        .bind(ts(w))
        .execute(pool)
        .await
        .expect("progress");
    }
}

pub fn kafka(broker: &DevBroker) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        group_id: GROUP.into(),
        ..KafkaSettings::default()
    }
}

/// Polls `f` every 50 ms until it returns `Some`, panicking after 30 s.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(30), what, f).await
}

/// Polls `f` every 50 ms until it returns `Some`, panicking after `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// (alert_id, state, rule, window start) of every recorded transition, in window order.
pub async fn transitions(pool: &PgPool) -> Vec<(String, String, String, i64)> {
    sqlx::query(
        "SELECT alert_id, state, rule, (extract(epoch from window_start) * 1e6)::bigint FROM alerts
         ORDER BY window_start, state",
    )
    .fetch_all(pool)
    .await
    .expect("alerts")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

pub async fn unsent(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM alert_outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
        .expect("outbox")
}

/// Every message on the alerts topic, decoded, until `n` arrived (or 30 s passed).
pub fn read_topic(bootstrap: &str, n: usize) -> Vec<(String, AlertEvent)> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("perf.alerts", 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    drop(tpl);
    // Everything up to the current end of the topic (at least `n`): delivery is at-least-once,
    // so a duplicate may sit before the transition a test waits for.
    let (_, high) = c
        .fetch_watermarks("perf.alerts", 0, Duration::from_secs(10))
        .expect("watermarks");
    let n = n.max(high.max(0) as usize);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).expect("utf8 key");
            let e = perfstream_events::decode_alert(m.payload().unwrap_or_default())
                .expect("alert decodes");
            out.push((key, e));
        }
    }
    out
}

pub async fn leaders(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .expect("pg_locks")
}

/// Slow query episode on `h1` in windows 3..6 (p99 2 s), healthy elsewhere; `h2` always fine.
pub async fn episode_rows(pool: &PgPool, windows: std::ops::Range<i64>) {
    for i in windows {
        query_row(pool, i, "h1", if (3..6).contains(&i) { 2000 } else { 50 }).await;
        query_row(pool, i, "h2", 80).await;
    }
}

/// Which sessions (by `application_name`) hold an advisory lock in the test's database.
pub async fn lock_holders(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("pg_locks")
}

/// The address of the server behind `pool`, for a proxy in front of it.
pub async fn server_addr(pool: &PgPool) -> std::net::SocketAddr {
    let opts = pool.connect_options();
    tokio::net::lookup_host((opts.get_host(), opts.get_port()))
        .await
        .expect("resolve the database host")
        .next()
        .expect("an address for the database host")
}

/// A resource rollup row of window `i` for `instance` of service `billing`: one sample, 30 %
/// CPU, no other figure.
pub async fn resource_row(pool: &PgPool, i: i64, instance: &str) {
    resource_row_with_memory(pool, i, instance, None).await
}

/// [`resource_row`], with a memory utilisation (0..1) when given.
pub async fn resource_row_with_memory(pool: &PgPool, i: i64, instance: &str, memory: Option<f64>) {
    let (mem_samples, mem_ppm) = memory.map_or((0, 0), |m| (1i64, (m * 1e6) as i64));
    sqlx::query(
        "INSERT INTO resource_rollups (resolution, window_start, window_end, service, instance, samples,
            cpu_ppm_samples, cpu_ppm_sum, memory_used_bytes_samples, memory_used_bytes_sum,
            memory_limit_bytes_samples, memory_limit_bytes_sum, memory_utilization_ppm_samples,
            memory_utilization_ppm_sum, heap_bytes_samples, heap_bytes_sum, gc_pause_us_samples,
            gc_pause_us_sum, gc_count_samples, gc_count_sum, interval_us_samples, interval_us_sum,
            pool_active_samples, pool_active_sum, pool_max_samples, pool_max_sum,
            pool_utilization_ppm_samples, pool_utilization_ppm_sum, pool_waiters_samples,
            pool_waiters_sum, pool_wait_us_samples, pool_wait_us_sum, io_read_bytes_samples,
            io_read_bytes_sum, io_write_bytes_samples, io_write_bytes_sum, cache_hits, cache_misses)
         VALUES ('1m', to_timestamp($1), to_timestamp($2), 'billing', $3, 1,
            1, 300000, 0, 0, 0, 0, $4, $5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0)",
    )
    .bind(ts(T0 + i * MIN_US))
    .bind(ts(T0 + (i + 1) * MIN_US))
    .bind(instance)
    .bind(mem_samples)
    .bind(mem_ppm)
    .execute(pool)
    .await
    .expect("insert resource row");
}
