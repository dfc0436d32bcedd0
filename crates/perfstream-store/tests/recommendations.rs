//! Each recommendation rule of `generate_optimization_recommendations`: a positive case and a
//! near miss (just under its threshold: no row of that kind), with the default settings. The
//! rules added by issue 14 and its defect reproductions are in `recommendation_evidence.rs`.

mod support;

use perfstream_store::Store;
use perfstream_window::{QueryRollup, RequestRollup, ResourceRollup, Rollups};
use sqlx::PgPool;
use support::*;

async fn write(
    pool: &PgPool,
    query: Vec<QueryRollup>,
    request: Vec<RequestRollup>,
    resource: Vec<ResourceRollup>,
) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush(
        "p1",
        Rollups {
            query,
            request,
            resource,
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
}

/// (target, severity, evidence) of the rows of one kind.
async fn recs(pool: &PgPool, kind: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT target, severity, evidence FROM generate_optimization_recommendations(to_timestamp($1::float8 / 1e6)) \
         WHERE kind = $2",
    )
    .bind(T0 as f64)
    .bind(kind)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn slow(ms: i64, calls: usize, rows: i64, hash: &str) -> QueryRollup {
    query(T0, "api", hash, &vec![ms * 1000; calls], rows)
}

#[sqlx::test(migrations = "../../migrations")]
async fn slow_query_many_rows_fires(pool: PgPool) {
    write(&pool, vec![slow(600, 20, 1000, "h1")], vec![], vec![]).await;
    let r = recs(&pool, "slow_query_many_rows").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "api/h1");
    assert!(r[0].2.contains("1000"), "{}", r[0].2);
}

#[sqlx::test(migrations = "../../migrations")]
async fn slow_query_many_rows_near_miss(pool: PgPool) {
    write(&pool, vec![slow(600, 20, 999, "h1")], vec![], vec![]).await;
    assert_eq!(recs(&pool, "slow_query_many_rows").await, vec![]);
}

#[sqlx::test(migrations = "../../migrations")]
async fn dominant_query_fires(pool: PgPool) {
    // h1 takes exactly half of the service's query time.
    write(
        &pool,
        vec![
            slow(20, 40, 1, "h1"),
            slow(20, 20, 1, "h2"),
            slow(20, 20, 1, "h3"),
        ],
        vec![],
        vec![],
    )
    .await;
    let r = recs(&pool, "dominant_query").await;
    assert_eq!(
        r.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["api/h1"]
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn dominant_query_near_miss(pool: PgPool) {
    let mut h3 = slow(20, 20, 1, "h3");
    h3.figures.latency.sum_us += 1; // h1 now just under half
    write(
        &pool,
        vec![slow(20, 40, 1, "h1"), slow(20, 20, 1, "h2"), h3],
        vec![],
        vec![],
    )
    .await;
    assert_eq!(recs(&pool, "dominant_query").await, vec![]);
}

fn pool_samples(active: i64, max: i64, waiters: i64) -> ResourceRollup {
    resource(
        T0,
        "api",
        "i0",
        &[
            (0.1, 1, 10, active, max, waiters),
            (0.1, 1, 10, active, max, 0),
        ],
        (0, 0),
    )
}

#[sqlx::test(migrations = "../../migrations")]
async fn pool_saturation_fires(pool: PgPool) {
    write(&pool, vec![], vec![], vec![pool_samples(900, 1000, 1)]).await;
    let r = recs(&pool, "pool_saturation").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "api/i0");
}

#[sqlx::test(migrations = "../../migrations")]
async fn pool_saturation_near_miss(pool: PgPool) {
    write(&pool, vec![], vec![], vec![pool_samples(899, 1000, 1)]).await;
    assert_eq!(recs(&pool, "pool_saturation").await, vec![]);
    // Full pool but nobody waiting is no finding either.
    let pool2 = pool.clone();
    sqlx::query("DELETE FROM resource_rollups")
        .execute(&pool2)
        .await
        .unwrap();
    write(&pool, vec![], vec![], vec![pool_samples(1000, 1000, 0)]).await;
    assert_eq!(recs(&pool, "pool_saturation").await, vec![]);
}

#[sqlx::test(migrations = "../../migrations")]
async fn low_cache_hit_ratio_fires(pool: PgPool) {
    write(
        &pool,
        vec![],
        vec![],
        vec![resource(
            T0,
            "api",
            "i0",
            &[(0.1, 1, 10, 1, 10, 0)],
            (799, 201),
        )],
    )
    .await;
    let r = recs(&pool, "low_cache_hit_ratio").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].2.contains("79.9"), "{}", r[0].2);
}

#[sqlx::test(migrations = "../../migrations")]
async fn low_cache_hit_ratio_near_miss(pool: PgPool) {
    write(
        &pool,
        vec![],
        vec![],
        vec![resource(
            T0,
            "api",
            "i0",
            &[(0.1, 1, 10, 1, 10, 0)],
            (800, 200),
        )],
    )
    .await;
    assert_eq!(recs(&pool, "low_cache_hit_ratio").await, vec![]);
    // Too few lookups to judge.
    sqlx::query("DELETE FROM resource_rollups")
        .execute(&pool)
        .await
        .unwrap();
    write(
        &pool,
        vec![],
        vec![],
        vec![resource(
            T0,
            "api",
            "i0",
            &[(0.1, 1, 10, 1, 10, 0)],
            (0, 999),
        )],
    )
    .await;
    assert_eq!(recs(&pool, "low_cache_hit_ratio").await, vec![]);
}

/// `windows` one-minute windows of /checkout with 10 requests each (`sla_min_window_calls`),
/// `slow` of them with p99 150 ms (SLA 100 ms).
fn checkout(windows: i64, slow: i64) -> Vec<RequestRollup> {
    (0..windows)
        .map(|m| {
            let v = if m < slow { 150_000 } else { 50_000 };
            request(T0 + m * MIN_US, "shop", "/checkout", &[v; 10], 0)
        })
        .collect()
}

async fn set_sla(pool: &PgPool) {
    sqlx::query("INSERT INTO endpoint_slas VALUES ('shop', '/checkout', 100)")
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../../migrations")]
async fn sla_breach_fires(pool: PgPool) {
    set_sla(&pool).await;
    write(&pool, vec![], checkout(10, 1), vec![]).await;
    let r = recs(&pool, "sla_breach").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, "shop//checkout");
    assert!(r[0].2.contains("1 of 10"), "{}", r[0].2);
}

#[sqlx::test(migrations = "../../migrations")]
async fn sla_breach_near_miss(pool: PgPool) {
    set_sla(&pool).await;
    write(&pool, vec![], checkout(11, 1), vec![]).await;
    assert_eq!(recs(&pool, "sla_breach").await, vec![]);
}

/// 12 one-minute windows of one instance, one every 10 minutes (a fit spans 110 min, over
/// `trend_min_span_hours`): cpu and memory utilisation in ppm as functions of the step.
fn trend(cpu: impl Fn(i64) -> i64, mem: impl Fn(i64) -> i64) -> Vec<ResourceRollup> {
    (0..12)
        .map(|m| {
            resource(
                T0 + m * 10 * MIN_US,
                "api",
                "i0",
                &[(cpu(m) as f64 / 1e6, mem(m), 1_000_000, 1, 10, 0)],
                (0, 0),
            )
        })
        .collect()
}

#[sqlx::test(migrations = "../../migrations")]
async fn memory_trend_up_fires(pool: PgPool) {
    // +4000 ppm a step = +2.4 % an hour (threshold 2 %).
    write(
        &pool,
        vec![],
        vec![],
        trend(|_| 100_000, |m| 300_000 + 4000 * m),
    )
    .await;
    let r = recs(&pool, "memory_trend_up").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].2.contains("2.4"), "{}", r[0].2);
}

#[sqlx::test(migrations = "../../migrations")]
async fn memory_trend_up_near_miss(pool: PgPool) {
    // +3330 ppm a step = +1.998 % an hour.
    write(
        &pool,
        vec![],
        vec![],
        trend(|_| 100_000, |m| 300_000 + 3330 * m),
    )
    .await;
    assert_eq!(recs(&pool, "memory_trend_up").await, vec![]);
}

#[sqlx::test(migrations = "../../migrations")]
async fn capacity_saturation_fires(pool: PgPool) {
    // CPU from 50 % up 3200 ppm a step (1.92 % an hour): 95 % in about 21.6 h (horizon 24 h).
    write(
        &pool,
        vec![],
        vec![],
        trend(|m| 500_000 + 3200 * m, |_| 300_000),
    )
    .await;
    let r = recs(&pool, "capacity_saturation").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].2.starts_with("cpu"), "{}", r[0].2);
}

#[sqlx::test(migrations = "../../migrations")]
async fn capacity_saturation_near_miss(pool: PgPool) {
    // 2850 ppm a step (1.71 % an hour): 95 % in about 24.5 h, beyond the horizon.
    write(
        &pool,
        vec![],
        vec![],
        trend(|m| 500_000 + 2850 * m, |_| 300_000),
    )
    .await;
    assert_eq!(recs(&pool, "capacity_saturation").await, vec![]);
}

#[sqlx::test(migrations = "../../migrations")]
async fn thresholds_come_from_the_settings_table(pool: PgPool) {
    write(
        &pool,
        vec![],
        vec![],
        vec![resource(
            T0,
            "api",
            "i0",
            &[(0.1, 1, 10, 1, 10, 0)],
            (800, 200),
        )],
    )
    .await;
    assert_eq!(recs(&pool, "low_cache_hit_ratio").await, vec![]);
    sqlx::query(
        "UPDATE recommendation_settings SET value = 0.85 WHERE name = 'cache_hit_ratio_min'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(recs(&pool, "low_cache_hit_ratio").await.len(), 1);
    sqlx::query("DELETE FROM recommendation_settings WHERE name = 'cache_hit_ratio_min'")
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query("SELECT * FROM generate_optimization_recommendations(now())")
        .fetch_all(&pool)
        .await
        .expect_err("a missing setting fails loudly");
    assert!(err.to_string().contains("cache_hit_ratio_min"), "{err}");
}

#[sqlx::test(migrations = "../../migrations")]
async fn slow_queries_worst_first_with_text(pool: PgPool) {
    write(
        &pool,
        vec![
            slow(2_000, 5, 1, "h1"),
            slow(900, 5, 1, "h2"),
            slow(5_000, 5, 1, "h3"),
        ],
        vec![],
        vec![],
    )
    .await;
    let rows: Vec<(String, Option<String>, i64, f64)> = sqlx::query_as(
        "SELECT query_hash, normalized_text, calls, worst_p99_ms FROM get_slow_queries(to_timestamp($1::float8 / 1e6))",
    )
    .bind(T0 as f64)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["h3", "h1"]
    );
    assert_eq!(
        rows[0].1.as_deref(),
        Some("SELECT * FROM t_h3 WHERE id = ?")
    );
    assert_eq!(rows[0].2, 5);
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT query_hash FROM get_slow_queries(to_timestamp($1::float8 / 1e6), 800, 1)",
    )
    .bind(T0 as f64)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows, [("h3".to_owned(),)]);
}

/// The report merges the stored histograms of every window in the range: its p99 is the p99
/// of all the values, which no per-window percentile shows.
#[sqlx::test(migrations = "../../migrations")]
async fn report_percentiles_are_exact_over_the_range(pool: PgPool) {
    // 60 windows of fast calls, one window of very slow ones: over the hour the p99 sits in the
    // slow values' bucket, while 59 window p99s are fast.
    let mut rollups = Vec::new();
    let mut all = Vec::new();
    for m in 0..60 {
        let vals: Vec<i64> = if m == 30 {
            vec![3_000_000; 20]
        } else {
            (1..=30).map(|i| i * 1000).collect()
        };
        all.extend(vals.iter().copied());
        rollups.push(query(T0 + m * MIN_US, "api", "h1", &vals, 1));
    }
    rollups.push(query(T0, "api", "fast", &[10], 1));
    write(&pool, rollups, vec![], vec![]).await;
    let store = Store::from_pool(pool.clone());
    let opts = perfstream_store::SlowQueryOptions {
        from_us: T0,
        to_us: T0 + HOUR_US,
        threshold_ms: 1000.0,
        max_rows: 10,
        resolution: None,
    };
    let rows = perfstream_store::slow_query_report(&store, &opts)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let want = latency(&all);
    let r = &rows[0];
    assert_eq!(r.calls, want.count);
    assert_eq!(r.p50_ms, want.quantile_us(0.5) as f64 / 1000.0);
    assert_eq!(r.p99_ms, want.quantile_us(0.99) as f64 / 1000.0);
    assert_eq!(r.max_ms, 3000.0);
    assert_eq!(
        r.normalized_text.as_deref(),
        Some("SELECT * FROM t_h1 WHERE id = ?")
    );
    let table = perfstream_store::report::render_slow_queries(&rows);
    assert!(
        table.lines().nth(2).is_some_and(|l| l.starts_with("api")),
        "{table}"
    );

    let recs = perfstream_store::recommendations(&store, T0, None, None)
        .await
        .unwrap();
    assert!(
        recs.iter()
            .any(|r| r.kind == "dominant_query" && r.target == "api/h1"),
        "{recs:?}"
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn views_show_recent_windows(pool: PgPool) {
    let now = chrono::Utc::now().timestamp_micros();
    let ws = (now - 5 * MIN_US).div_euclid(MIN_US) * MIN_US;
    let old = ws - 10 * MIN_US;
    write(
        &pool,
        vec![
            query(ws, "api", "hot", &[10_000; 50], 1),
            query(ws, "api", "cold", &[1_000; 5], 1),
            query(old, "api", "cold", &[1_000; 5], 1),
        ],
        vec![
            request(ws, "api", "/slow", &[900_000, 800_000], 1),
            request(ws, "api", "/fast", &[1_000], 0),
            request(old, "api", "/fast", &[5_000_000], 0),
        ],
        vec![resource(
            ws,
            "api",
            "i0",
            &[(0.25, 5, 10, 1, 10, 0)],
            (1, 1),
        )],
    )
    .await;
    let (service, start, requests, worst, queries): (
        String,
        chrono::DateTime<chrono::Utc>,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT service, window_start, requests::bigint, worst_endpoint_p99_us, queries::bigint \
             FROM latest_window_per_service",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(service, "api");
    assert_eq!(start.timestamp_micros(), ws);
    assert_eq!((requests, queries), (3, 55));
    assert!(worst >= 900_000, "{worst}");
    let endpoints: Vec<(String,)> = sqlx::query_as("SELECT endpoint FROM top_endpoints_by_p99")
        .fetch_all(&pool)
        .await
        .unwrap();
    // The old 5 s window of /fast is within the hour too, so it ranks first.
    assert_eq!(endpoints, [("/fast".to_owned(),), ("/slow".to_owned(),)]);
    let queries: Vec<(String, i64)> =
        sqlx::query_as("SELECT query_hash, calls::bigint FROM top_queries_by_total_time")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(queries, [("hot".to_owned(), 50), ("cold".to_owned(), 10)]);
}
