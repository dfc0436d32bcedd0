//! Latency benchmark (BENCHMARKS.md): from the pipeline's flush that moves the watermark past a
//! window's end, to the window's alerts arriving at a consumer of the alerts topic.
//!
//! A fresh database (migrated from `migrations/`) and librdkafka's mock cluster; per window,
//! `--series` rollup rows are written (40 % queries, 40 % requests, 20 % instances) of which a
//! rotating block of 40 queries is slow, so every window has 40 firing and 40 resolved
//! transitions; then the watermark is committed (the flush) and the clock starts. The evaluator
//! runs in this process with the default rules (regression baselines included).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres \
//!   cargo run --release -p perfstream-evaluator --example latency_bench -- --series 10000 --windows 200
//! ```

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use perfstream_evaluator::{AlertSettings, run_evaluator};
use perfstream_kafka::{DevBroker, KafkaSettings, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

#[derive(Parser)]
struct Args {
    /// Series per window (rows over the three rollup tables).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Windows measured.
    #[arg(long, default_value_t = 200)]
    windows: i64,
    /// Slow queries per window (each fires, and resolves in the next window).
    #[arg(long, default_value_t = 40)]
    slow: usize,
}

const W_US: i64 = 60_000_000;
const T0: i64 = 1_767_225_600_000_000;
const GROUP: &str = "bench";

fn ts(us: i64) -> f64 {
    us as f64 / 1e6
}

async fn write_window(pool: &PgPool, i: i64, series: usize, slow: usize) -> anyhow::Result<()> {
    let (nq, nr) = (series * 4 / 10, series * 4 / 10);
    let ni = series - nq - nr;
    let block = (i as usize * slow) % nq;
    let hashes: Vec<String> = (0..nq).map(|j| format!("q{j:06}")).collect();
    let services: Vec<String> = (0..nq).map(|j| format!("svc{:02}", j % 50)).collect();
    let p99: Vec<i64> = (0..nq)
        .map(|j| {
            if (block..block + slow).contains(&j) {
                2_000_000
            } else {
                50_000
            }
        })
        .collect();
    let (start, end) = (ts(T0 + i * W_US), ts(T0 + (i + 1) * W_US));
    sqlx::query(
        "INSERT INTO query_rollups (resolution, window_start, window_end, service, query_hash, query_type,
            count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us, hist, rows_sum, rows_max)
         SELECT '1m', to_timestamp($1), to_timestamp($2), s, h, 'select', 100, 100 * 1000, 10, p, 1000, 2000,
                3000, p, p, '\\x00'::bytea, 0, 0
         FROM unnest($3::text[], $4::text[], $5::bigint[]) AS t(s, h, p)",
    )
    .bind(start)
    .bind(end)
    .bind(&services)
    .bind(&hashes)
    .bind(&p99)
    .execute(pool)
    .await?;
    let endpoints: Vec<String> = (0..nr).map(|j| format!("/e{j:06}")).collect();
    let rservices: Vec<String> = (0..nr).map(|j| format!("svc{:02}", j % 50)).collect();
    sqlx::query(
        "INSERT INTO request_rollups (resolution, window_start, window_end, service, endpoint, method,
            count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us, hist,
            status_2xx, status_3xx, status_4xx, status_5xx, status_other)
         SELECT '1m', to_timestamp($1), to_timestamp($2), s, e, 'GET', 200, 200 * 20000, 100, 90000,
                20000, 40000, 60000, 80000, 90000, '\\x00'::bytea, 199, 0, 0, 1, 0
         FROM unnest($3::text[], $4::text[]) AS t(s, e)",
    )
    .bind(start)
    .bind(end)
    .bind(&rservices)
    .bind(&endpoints)
    .execute(pool)
    .await?;
    let instances: Vec<String> = (0..ni).map(|j| format!("i{j:06}")).collect();
    let iservices: Vec<String> = (0..ni).map(|j| format!("svc{:02}", j % 50)).collect();
    // Every gauge: one sample; the figures the rules read are realistic, the rest zero.
    let gauges = [
        ("cpu_ppm", "300000"),
        ("memory_used_bytes", "1000000"),
        ("memory_limit_bytes", "2000000"),
        ("memory_utilization_ppm", "450000"),
        ("heap_bytes", "0"),
        ("gc_pause_us", "5000"),
        ("gc_count", "1"),
        ("interval_us", "10000000"),
        ("io_read_bytes", "0"),
        ("io_write_bytes", "0"),
        ("pool_active", "6"),
        ("pool_max", "20"),
        ("pool_utilization_ppm", "300000"),
        ("pool_waiters", "0"),
        ("pool_wait_us", "0"),
    ];
    let mut cols = String::new();
    let mut vals = String::new();
    for (g, v) in gauges {
        cols.push_str(&format!(
            ", {g}_samples, {g}_sum, {g}_min, {g}_max, {g}_last"
        ));
        vals.push_str(&format!(", 1, {v}, {v}, {v}, {v}"));
    }
    let sql = format!(
        "INSERT INTO resource_rollups (resolution, window_start, window_end, service, instance, samples,
            cache_hits, cache_misses{cols})
         SELECT '1m', to_timestamp($1), to_timestamp($2), s, inst, 1, 9500, 500{vals}
         FROM unnest($3::text[], $4::text[]) AS t(s, inst)"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(start)
        .bind(end)
        .bind(&iservices)
        .bind(&instances)
        .execute(pool)
        .await?;
    Ok(())
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let r = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[r - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // RUST_LOG=perfstream_evaluator=debug prints each round's phase timings.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let admin_url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let name = format!("bench_alerts_{}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .context("database in DATABASE_URL")?
            .0
    );
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    sqlx::migrate::Migrator::new(migrations)
        .await?
        .run(&pool)
        .await?;

    let broker = DevBroker::start(1, 1, &Topics::default())?;
    let kafka = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        group_id: GROUP.into(),
        ..KafkaSettings::default()
    };
    let (tx, rx) = mpsc::channel::<(i64, Instant)>();
    let bootstrap = broker.bootstrap_servers();
    std::thread::spawn(move || {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "bench-reader")
            .set("fetch.wait.max.ms", "5")
            .set("fetch.queue.backoff.ms", "1")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("perf.alerts", 0, Offset::Beginning)
            .expect("tpl");
        c.assign(&tpl).expect("assign");
        drop(tpl);
        loop {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                let at = Instant::now();
                if let Ok(a) = perfstream_events::decode_alert(m.payload().unwrap_or_default())
                    && tx.send((a.window_start_us, at)).is_err()
                {
                    return;
                }
            }
        }
    });
    let settings = AlertSettings {
        interval: Duration::from_secs(5),
        ..AlertSettings::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (p, k) = (pool.clone(), kafka.clone());
    let ev = tokio::spawn(async move {
        run_evaluator(settings, p, &k, async {
            let _ = stop_rx.await;
        })
        .await
    });

    // Warm-up window (the first evaluation also reads the history).
    let mut last = Vec::new();
    let mut first = Vec::new();
    for i in 0..args.windows + 1 {
        write_window(&pool, i, args.series, args.slow).await?;
        let expect = if i == 0 { args.slow } else { 2 * args.slow };
        let t0 = Instant::now();
        sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, resume_offset, applied_through_offset,
                applied_watermark, owner, generation)
             VALUES ($1, 'perf.query', 0, 0, 0, to_timestamp($2), 'bench', 1)
             ON CONFLICT (group_id, topic, partition) DO UPDATE SET applied_watermark = EXCLUDED.applied_watermark",
        )
        .bind(GROUP)
        .bind(ts(T0 + (i + 1) * W_US))
        .execute(&pool)
        .await?;
        let mut got = 0;
        let mut first_at = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < expect {
            let (w, at) = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .context("alerts of a window")?;
            if w == T0 + i * W_US {
                got += 1;
                first_at.get_or_insert(at);
                if got == expect && i > 0 {
                    last.push(at.duration_since(t0).as_secs_f64() * 1e3);
                    first.push(first_at.map_or(0.0, |f| f.duration_since(t0).as_secs_f64() * 1e3));
                }
            }
        }
    }
    let _ = stop_tx.send(());
    ev.await??;
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin)
        .await?;
    for (what, v) in [
        ("first alert of the window", &mut first),
        ("last alert of the window", &mut last),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(0.0)
        );
    }
    println!(
        "series per window: {}, transitions per window: {}",
        args.series,
        2 * args.slow
    );
    Ok(())
}
