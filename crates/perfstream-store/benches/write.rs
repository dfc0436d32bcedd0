//! Rollup write throughput against the Postgres at DATABASE_URL, in one run:
//! fast path (new rows: one bulk `UNNEST` insert per flush), merge path (every row exists:
//! lock, decode, merge, update) and a baseline of one `INSERT` statement per row.
//!
//! `cargo bench -p perfstream-store --bench write` (env: DATABASE_URL; BENCH_ROWS, default
//! 100000; BENCH_BATCH rows per flush, default 5000). Recreates the database
//! `perfstream_bench` on that server and leaves it for inspection (e.g. check_hist.py).

use std::str::FromStr;
use std::time::Instant;

use perfstream_events::QueryType;
use perfstream_store::{FlushCommit, FlushWrite, PartitionProgress, Store};
use perfstream_window::{
    DEFAULT_SIGFIG, Gauge, Latency, PERCENTILES, QueryFigures, QueryKey, QueryRollup,
    ResourceFigures, ResourceKey, ResourceRollup, Rollups,
};
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

const MIN_US: i64 = 60_000_000;
const T0: i64 = 1_767_225_600_000_000;
const DB: &str = "perfstream_bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn query_rollups(rng: &mut impl Rng, window: i64, n: usize) -> Vec<QueryRollup> {
    (0..n)
        .map(|i| {
            let mut l = Latency::new(DEFAULT_SIGFIG);
            for _ in 0..30 {
                // Log-uniform 100 µs .. 1 s.
                let v = 10f64.powf(rng.random_range(2.0..6.0)) as i64;
                l.record(v);
            }
            QueryRollup {
                window_start_us: T0 + window * MIN_US,
                window_end_us: T0 + (window + 1) * MIN_US,
                key: QueryKey {
                    service: format!("svc{:02}", i % 20),
                    query_hash: format!("{:016x}", i as u64 * 0x9e37_79b9_7f4a_7c15),
                    query_type: QueryType::Select,
                    tenant_id: String::new(),
                },
                figures: QueryFigures {
                    latency: l,
                    rows_sum: 30,
                    rows_max: 1,
                    query_text: Some(format!("SELECT * FROM t{i} WHERE id = ?")),
                    samples: Vec::new(),
                },
            }
        })
        .collect()
}

fn resource_rollups(window: i64, n: usize) -> Vec<ResourceRollup> {
    (0..n)
        .map(|i| {
            let mut f = ResourceFigures::default();
            let g = |v: i64| {
                let mut g = Gauge::default();
                for s in 0..6 {
                    g.record(v + s, T0 + window * MIN_US + s * 10_000_000);
                }
                g
            };
            f.samples = 6;
            f.cpu_ppm = g(400_000);
            f.memory_used_bytes = g(1 << 30);
            f.memory_limit_bytes = g(2 << 30);
            f.memory_utilization_ppm = g(500_000);
            f.pool_active = g(5);
            f.pool_max = g(10);
            f.pool_utilization_ppm = g(500_000);
            f.interval_us = g(10_000_000);
            f.cache_hits = 100;
            f.cache_misses = 5;
            ResourceRollup {
                window_start_us: T0 + window * MIN_US,
                window_end_us: T0 + (window + 1) * MIN_US,
                key: ResourceKey {
                    service: format!("svc{:02}", i % 20),
                    instance: format!("inst-{i}"),
                },
                figures: f,
            }
        })
        .collect()
}

struct Run {
    store: Store,
    generation: i64,
    offset: i64,
}

impl Run {
    async fn flush(&mut self, rollups: Rollups) {
        self.offset += 1;
        let f = FlushWrite {
            group_id: "bench".into(),
            owner: "bench".into(),
            rollups,
            progress: vec![PartitionProgress {
                topic: "perf.query".into(),
                partition: 0,
                generation: self.generation,
                // One flush per offset, from 1.
                flush_seq: self.offset,
                resume_offset: self.offset,
                applied_through_offset: self.offset,
                applied_watermark_us: T0,
            }],
            topics: Vec::new(),
        };
        let done = self.store.write_flush(&f).await.expect("flush");
        assert_eq!(done, FlushCommit::Committed);
    }
}

/// CPU time (user + system, clock ticks of 10 ms) of a thread or process from its
/// `/proc/.../stat`.
fn cpu_ticks(stat: &str) -> u64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Wall time, and CPU time of this thread (the client: encoding, sqlx) and of the one Postgres
/// backend serving the bench, accumulated over the timed regions only. The CPU figures do not
/// depend on how busy the shared machine is; wall time does.
#[derive(Default)]
struct Meter {
    wall: std::time::Duration,
    client_ticks: u64,
    server_ticks: u64,
    server_stat: String,
}

impl Meter {
    fn new(server_pid: i32) -> Meter {
        Meter {
            server_stat: format!("/proc/{server_pid}/stat"),
            ..Meter::default()
        }
    }
    fn start(&self) -> (Instant, u64, u64) {
        (
            Instant::now(),
            cpu_ticks("/proc/thread-self/stat"),
            cpu_ticks(&self.server_stat),
        )
    }
    fn stop(&mut self, (t, c, s): (Instant, u64, u64)) {
        self.wall += t.elapsed();
        self.client_ticks += cpu_ticks("/proc/thread-self/stat") - c;
        self.server_ticks += cpu_ticks(&self.server_stat) - s;
    }
    fn report(&mut self, label: &str, rows: usize) {
        let s = self.wall.as_secs_f64();
        let client_us = self.client_ticks as f64 * 10_000.0 / rows as f64;
        let server_us = self.server_ticks as f64 * 10_000.0 / rows as f64;
        println!(
            "{label:<42} {rows:>7} rows {s:>6.2} s {:>7.0} rows/s | CPU/row client {client_us:>5.1} us, \
             server {server_us:>5.1} us -> {:>7.0} rows/s per client+server core",
            rows as f64 / s,
            1e6 / (client_us + server_us)
        );
        *self = Meter::new(0).with_stat(std::mem::take(&mut self.server_stat));
    }
    fn with_stat(mut self, stat: String) -> Meter {
        self.server_stat = stat;
        self
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // RUST_LOG=perfstream_store=debug prints each flush's phase timings.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at a Postgres server");
    let rows = env_usize("BENCH_ROWS", 100_000);
    let batch = env_usize("BENCH_BATCH", 5_000);
    let flushes = rows.div_ceil(batch);
    let rows = flushes * batch;

    let admin = PgConnectOptions::from_str(&url).expect("DATABASE_URL");
    let mut c = admin.connect().await.expect("connect to DATABASE_URL");
    sqlx::query("DROP DATABASE IF EXISTS perfstream_bench WITH (FORCE)")
        .execute(&mut c)
        .await
        .expect("drop bench database");
    sqlx::query("CREATE DATABASE perfstream_bench")
        .execute(&mut c)
        .await
        .expect("create bench database");
    c.close().await.ok();
    let pool = PgPoolOptions::new()
        // One connection, so one backend whose CPU time the meter reads.
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(admin.database(DB))
        .await
        .expect("connect to bench database");
    let store = Store::from_pool(pool.clone());
    store.migrate().await.expect("migrate");
    let claim = store
        .claim_partition("bench", "perf.query", 0, "bench")
        .await
        .expect("claim");
    let server_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("backend pid");
    let mut meter = Meter::new(server_pid);
    let mut run = Run {
        store,
        generation: claim.generation,
        offset: 0,
    };

    // Rollups are generated per flush outside the timed region (a latency histogram is
    // ~25 KiB in memory; all of them at once would not fit comfortably).
    let make = |w: usize| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
        query_rollups(&mut rng, w as i64, batch)
    };
    println!(
        "{flushes} flushes x {batch} query rollups (30 values each), one transaction per flush"
    );

    let sample = make(0);
    let t = Instant::now();
    let bytes: Vec<Vec<u8>> = sample
        .iter()
        .map(|r| perfstream_store::encode_hist(&r.figures.latency.hist.to_histogram()))
        .collect();
    let enc_us = t.elapsed().as_secs_f64() * 1e6 / batch as f64;
    let t = Instant::now();
    for b in &bytes {
        Latency::decode_hist(b).expect("decodes");
    }
    let dec_us = t.elapsed().as_secs_f64() * 1e6 / batch as f64;
    let avg = bytes.iter().map(Vec::len).sum::<usize>() / batch;
    println!(
        "histogram: {avg} B stored, encode {enc_us:.1} us/row, decode {dec_us:.1} us/row (CPU, client side)"
    );

    for w in 0..flushes {
        let q = make(w);
        let m = meter.start();
        run.flush(Rollups {
            query: q,
            ..Rollups::default()
        })
        .await;
        meter.stop(m);
    }
    meter.report("fast path (bulk insert, new rows)", rows);

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "fast") {
        return;
    }

    // What autovacuum would have done by now: without statistics on the fresh table the planner
    // may probe the per-service index instead of the primary key when locking rows.
    sqlx::query("ANALYZE query_rollups")
        .execute(&pool)
        .await
        .expect("analyze");

    for w in 0..flushes {
        let q = make(w);
        let m = meter.start();
        run.flush(Rollups {
            query: q,
            ..Rollups::default()
        })
        .await;
        meter.stop(m);
    }
    meter.report("merge path (every row exists: lock+merge)", rows);

    // Resource rows are the widest (90+ columns).
    let res: Vec<Vec<ResourceRollup>> = (0..flushes.min(10))
        .map(|w| resource_rollups(w as i64, batch))
        .collect();
    let n = res.len() * batch;
    for r in res {
        let m = meter.start();
        run.flush(Rollups {
            resource: r,
            ..Rollups::default()
        })
        .await;
        meter.stop(m);
    }
    meter.report("fast path, resource rows", n);

    // Baseline: the same query rows (new windows), one INSERT statement per row, one
    // transaction per flush-sized batch.
    let single_rows = (rows / 5).max(batch);
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let single: Vec<Vec<QueryRollup>> = (0..(single_rows / batch).min(4))
        .map(|w| query_rollups(&mut rng, 100_000 + w as i64, batch))
        .collect();
    for b in &single {
        let m = meter.start();
        let mut tx = pool.begin().await.expect("begin");
        for r in b {
            let l = &r.figures.latency;
            let ts = |us: i64| chrono::DateTime::from_timestamp_micros(us).expect("in range");
            let mut q = sqlx::query(
                "INSERT INTO query_rollups (resolution, window_start, window_end, service, query_hash, \
                 query_type, tenant_id, count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, \
                 p999_us, clamped_count, hist, rows_sum, rows_max) \
                 VALUES ('1m', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            )
            .bind(ts(r.window_start_us))
            .bind(ts(r.window_end_us))
            .bind(&r.key.service)
            .bind(&r.key.query_hash)
            .bind(r.key.query_type.as_str())
            .bind(&r.key.tenant_id)
            .bind(l.count as i64)
            .bind(l.sum_us)
            .bind(l.min_us)
            .bind(l.max_us);
            for p in PERCENTILES {
                q = q.bind(l.quantile_us(p));
            }
            q.bind(l.clamped as i64)
                .bind(l.hist_bytes())
                .bind(r.figures.rows_sum)
                .bind(r.figures.rows_max)
                .execute(&mut *tx)
                .await
                .expect("single insert");
        }
        tx.commit().await.expect("commit");
        meter.stop(m);
    }
    meter.report("one INSERT per row (baseline)", single.len() * batch);
}
