//! Issue 14, section 2: the seed's names over perfstream's tables. The sample tables are
//! filled by hand here (the capture that writes them with each flush is section 1); these tests
//! fix what that capture writes into (the columns documented in docs/analysts.md), what the
//! seed's views show of it, the sample `get_slow_queries` returns, and its retention.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use perfstream_store::{Retention, Store};
use perfstream_window::{QueryRollup, ResourceRollup, Rollups};
use sqlx::PgPool;
use support::*;

async fn write(pool: &PgPool, query: Vec<QueryRollup>, resource: Vec<ResourceRollup>) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush(
        "p1",
        Rollups {
            query,
            request: vec![],
            resource,
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
}

/// One query sample of statement `hash` (service "api", select, tenant `tenant`) in the
/// one-minute window starting at `ws`, read at `perf.query` partition 0, `offset`.
struct Sample<'a> {
    resolution: &'a str,
    ws: i64,
    hash: &'a str,
    tenant: &'a str,
    offset: i64,
    rank: i16,
    us: i64,
    trace: Option<&'a str>,
}

impl Default for Sample<'_> {
    fn default() -> Self {
        Sample {
            resolution: "1m",
            ws: T0,
            hash: "h1",
            tenant: "",
            offset: 0,
            rank: 1,
            us: 1_000,
            trace: None,
        }
    }
}

async fn insert_sample(pool: &PgPool, s: Sample<'_>) {
    let len = if s.resolution == "1h" {
        HOUR_US
    } else {
        MIN_US
    };
    sqlx::query(
        "INSERT INTO query_samples (resolution, window_start, window_end, service, query_hash, \
         query_type, tenant_id, source_topic, source_partition, source_offset, rank, \
         execution_time_us, rows_affected, instance, query_text, event_time, trace_id) \
         VALUES ($1, to_timestamp($2::float8 / 1e6), to_timestamp($3::float8 / 1e6), 'api', $4, \
         'select', $5, 'perf.query', 0, $6, $7, $8, 3, 'i-7', 'SELECT 1', \
         to_timestamp($9::float8 / 1e6), $10)",
    )
    .bind(s.resolution)
    .bind(s.ws as f64)
    .bind((s.ws + len) as f64)
    .bind(s.hash)
    .bind(s.tenant)
    .bind(s.offset)
    .bind(s.rank)
    .bind(s.us)
    .bind((s.ws + 1_000_000 + s.offset) as f64)
    .bind(s.trace)
    .execute(pool)
    .await
    .unwrap();
}

#[derive(Debug, sqlx::FromRow)]
struct SeedRow {
    id: String,
    query_hash: String,
    query_type: String,
    execution_time_ms: String,
    rows_affected: i64,
    campaign_id: Option<String>,
    executed_at: chrono::DateTime<chrono::Utc>,
    trace_id: Option<String>,
}

#[sqlx::test(migrations = "../../migrations")]
async fn query_performance_metrics_has_the_seeds_columns_and_units(pool: PgPool) {
    insert_sample(
        &pool,
        Sample {
            tenant: "campaign-42",
            us: 1_234_567,
            trace: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            ..Default::default()
        },
    )
    .await;
    insert_sample(
        &pool,
        Sample {
            offset: 1,
            rank: 2,
            us: 1_500,
            ..Default::default()
        },
    )
    .await;
    // The same execution, kept again as a sample of its hour: shown once.
    insert_sample(
        &pool,
        Sample {
            resolution: "1h",
            us: 1_234_567,
            ..Default::default()
        },
    )
    .await;
    let rows: Vec<SeedRow> = sqlx::query_as(
        "SELECT id::text AS id, query_hash, query_type, \
         execution_time_ms::text AS execution_time_ms, rows_affected, campaign_id, executed_at, \
         trace_id FROM query_performance_metrics \
         ORDER BY execution_time_ms DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let SeedRow {
        id,
        query_hash: hash,
        query_type: ty,
        execution_time_ms: ms,
        rows_affected: affected,
        campaign_id: campaign,
        executed_at: at,
        trace_id: trace,
    } = &rows[0];
    assert_eq!((hash.as_str(), ty.as_str(), *affected), ("h1", "select", 3));
    assert_eq!(ms, "1234.567");
    assert_eq!(campaign.as_deref(), Some("campaign-42"));
    assert_eq!(at.timestamp_micros(), T0 + 1_000_000);
    assert_eq!(trace.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(rows[1].execution_time_ms, "1.500");
    assert_eq!(rows[1].campaign_id, None, "no tenant: no campaign");
    assert_ne!(*id, rows[1].id);
    // The id is a function of the event's Kafka position: stable across reads.
    let again: String = sqlx::query_scalar(
        "SELECT id::text FROM query_performance_metrics WHERE source_offset = 0",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(again, *id);
}

#[derive(Debug, sqlx::FromRow)]
struct SlowRow {
    query_hash: String,
    worst_p99_ms: f64,
    sample_ms: Option<f64>,
    sample_trace_id: Option<String>,
    sample_instance: Option<String>,
    sample_topic: Option<String>,
    sample_partition: Option<i32>,
    sample_offset: Option<i64>,
}

#[sqlx::test(migrations = "../../migrations")]
async fn get_slow_queries_returns_the_slowest_sample(pool: PgPool) {
    write(
        &pool,
        vec![
            query(T0, "api", "h1", &[2_000_000; 10], 1),
            query(T0 + MIN_US, "api", "h1", &[2_500_000; 10], 1),
            query(T0, "api", "h2", &[1_200_000; 10], 1),
        ],
        vec![],
    )
    .await;
    for (offset, ws, us, trace) in [
        (10, T0, 2_000_000, None),
        (11, T0 + MIN_US, 2_500_000, Some("t-slowest")),
        (12, T0 + MIN_US, 2_400_000, Some("t-second")),
        // Before `since` below: not considered.
        (1, T0 - MIN_US, 9_000_000, Some("t-old")),
    ] {
        insert_sample(
            &pool,
            Sample {
                ws,
                offset,
                us,
                trace,
                ..Default::default()
            },
        )
        .await;
    }
    let rows: Vec<SlowRow> = sqlx::query_as(
        "SELECT query_hash, worst_p99_ms, sample_ms, sample_trace_id, sample_instance, \
         sample_topic, sample_partition, sample_offset \
         FROM get_slow_queries(to_timestamp($1::float8 / 1e6))",
    )
    .bind(T0 as f64)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let h1 = &rows[0];
    assert_eq!(h1.query_hash, "h1");
    assert!(h1.worst_p99_ms >= 2500.0, "{h1:?}");
    assert_eq!(h1.sample_ms, Some(2500.0));
    assert_eq!(h1.sample_trace_id.as_deref(), Some("t-slowest"));
    assert_eq!(h1.sample_instance.as_deref(), Some("i-7"));
    assert_eq!(
        (
            h1.sample_topic.as_deref(),
            h1.sample_partition,
            h1.sample_offset
        ),
        (Some("perf.query"), Some(0), Some(11))
    );
    // h2 has no sample kept: its row is still there, with NULL sample columns.
    let h2 = &rows[1];
    assert_eq!(h2.query_hash, "h2");
    assert_eq!(
        (
            h2.sample_ms,
            h2.sample_trace_id.as_deref(),
            h2.sample_offset
        ),
        (None, None, None)
    );
}

#[derive(Debug, sqlx::FromRow)]
struct DbRow {
    resolution: String,
    recorded_at_us: i64,
    active_connections: Option<f64>,
    idle_connections: Option<f64>,
    max_connections: Option<f64>,
    pool_utilization: Option<f64>,
    max_waiting_connections: Option<i64>,
    connection_wait_time_ms: Option<f64>,
    avg_connection_wait_ms: Option<f64>,
    query_count: Option<i64>,
    total_query_time_ms: Option<f64>,
    avg_query_time_ms: Option<f64>,
    max_query_time_ms: Option<f64>,
    cache_hit_ratio: Option<f64>,
}

#[sqlx::test(migrations = "../../migrations")]
async fn database_performance_metrics_adds_up_pools_and_queries(pool: PgPool) {
    write(
        &pool,
        vec![
            query(T0, "api", "h1", &[2_000, 4_000], 1),
            query(T0, "api", "h2", &[6_000], 1),
            query(T0 + MIN_US, "api", "h1", &[1_000], 1),
        ],
        vec![
            // i0: 8 of 10 connections, then 6 of 10 with 2 waiting (2 ms of waits).
            resource(
                T0,
                "api",
                "i0",
                &[(0.1, 1, 10, 8, 10, 0), (0.1, 1, 10, 6, 10, 2)],
                (90, 10),
            ),
            // i1: 5 of 20.
            resource(T0, "api", "i1", &[(0.1, 1, 10, 5, 20, 0)], (0, 0)),
        ],
    )
    .await;
    let rows: Vec<DbRow> = sqlx::query_as(
        "SELECT resolution, (extract(epoch FROM recorded_at) * 1e6)::bigint AS recorded_at_us, \
         active_connections, idle_connections, max_connections, pool_utilization, \
         max_waiting_connections, connection_wait_time_ms, avg_connection_wait_ms, \
         query_count, total_query_time_ms, avg_query_time_ms, max_query_time_ms, \
         cache_hit_ratio \
         FROM database_performance_metrics WHERE service = 'api' AND recorded_at >= $1 \
         ORDER BY recorded_at",
    )
    .bind(chrono::DateTime::from_timestamp_micros(T0).unwrap())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let w = &rows[0];
    assert_eq!((w.resolution.as_str(), w.recorded_at_us), ("1m", T0));
    // Active: mean 7 on i0 + 5 on i1; limits 10 + 20.
    assert_eq!(
        (w.active_connections, w.idle_connections, w.max_connections),
        (Some(12.0), Some(18.0), Some(30.0))
    );
    // Utilisation: mean of the samples' ratios (0.8, 0.6, 0.25).
    assert!(
        (w.pool_utilization.unwrap() - 1.65 / 3.0).abs() < 1e-9,
        "{w:?}"
    );
    assert_eq!(w.max_waiting_connections, Some(2));
    assert_eq!(
        (w.connection_wait_time_ms, w.avg_connection_wait_ms),
        (Some(2.0), Some(2.0 / 3.0))
    );
    assert_eq!(
        (
            w.query_count,
            w.total_query_time_ms,
            w.avg_query_time_ms,
            w.max_query_time_ms
        ),
        (Some(3), Some(12.0), Some(4.0), Some(6.0))
    );
    assert_eq!(w.cache_hit_ratio, Some(0.9));
    // The next window has queries and no pool figures.
    let n = &rows[1];
    assert_eq!(
        (
            n.recorded_at_us,
            n.active_connections,
            n.max_waiting_connections,
            n.query_count
        ),
        (T0 + MIN_US, None, None, Some(1))
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn retention_deletes_samples_with_their_windows(pool: PgPool) {
    let now = T0 + 30 * 86_400_000_000;
    let base_cut = now - 7 * 86_400_000_000;
    for (i, ws) in [
        base_cut - 2 * MIN_US,
        base_cut - MIN_US,
        base_cut,
        base_cut + MIN_US,
    ]
    .into_iter()
    .enumerate()
    {
        insert_sample(
            &pool,
            Sample {
                ws,
                offset: i as i64,
                ..Default::default()
            },
        )
        .await;
    }
    // An hour sample older than the base cutoff stays: hours are kept 90 days.
    insert_sample(
        &pool,
        Sample {
            resolution: "1h",
            ws: base_cut - 2 * HOUR_US,
            offset: 9,
            ..Default::default()
        },
    )
    .await;
    sqlx::query(
        "INSERT INTO request_samples (resolution, window_start, window_end, service, endpoint, \
         method, source_topic, source_partition, source_offset, rank, response_time_us, \
         status_code, request_bytes, response_bytes, instance, event_time, trace_id) \
         SELECT '1m', w, w + interval '1 minute', 'shop', '/checkout', 'GET', 'perf.request', 0, o, 1, \
         1000, 200, NULL, 512, 'i-1', w, NULL \
         FROM (VALUES (to_timestamp($1::float8 / 1e6), 1), (to_timestamp($2::float8 / 1e6), 2)) AS v(w, o)",
    )
    .bind((base_cut - 5 * MIN_US) as f64)
    .bind(base_cut as f64)
    .execute(&pool)
    .await
    .unwrap();
    let store = Store::from_pool(pool.clone());
    let retention = Retention {
        batch: 1,
        ..Retention::default()
    };
    let report = store.apply_retention(now, &retention).await.unwrap();
    // Windows ending at or before the cutoff: the two before it, and the one ending on it.
    assert_eq!((report.query_samples, report.request_samples), (2, 1));
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT resolution, source_offset FROM query_samples ORDER BY resolution, source_offset",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        [
            ("1h".to_owned(), 9),
            ("1m".to_owned(), 2),
            ("1m".to_owned(), 3)
        ]
    );
    let left: Vec<i64> = sqlx::query_scalar("SELECT source_offset FROM request_samples")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, [2]);
    // Everything goes once its tier's retention is over.
    let report = store
        .apply_retention(
            now + 365 * 86_400_000_000,
            &Retention {
                day: Duration::from_secs(1),
                ..retention
            },
        )
        .await
        .unwrap();
    assert_eq!((report.query_samples, report.request_samples), (3, 1));
}

/// The columns of `table` as docs/analysts.md lists them: the rows of the markdown table under
/// the heading "#### `table`", (column, type).
fn documented_columns(table: &str) -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/analysts.md"
    ))
    .unwrap();
    let heading = format!("#### `{table}`");
    let start = doc
        .lines()
        .position(|l| l.trim() == heading)
        .unwrap_or_else(|| panic!("docs/analysts.md has no heading {heading}"));
    doc.lines()
        .skip(start + 1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_owned(),
                cells[2].trim_matches('`').to_owned(),
            )
        })
        .collect()
}

async fn actual_columns(pool: &PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 \
         AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The capture (section 1) writes what docs/analysts.md documents: the documented columns are
/// the tables' columns, in order, with their types.
#[sqlx::test(migrations = "../../migrations")]
async fn sample_tables_are_documented_exactly(pool: PgPool) {
    for table in [
        "query_samples",
        "request_samples",
        "query_performance_metrics",
        "database_performance_metrics",
    ] {
        assert_eq!(
            documented_columns(table),
            actual_columns(&pool, table).await,
            "docs/analysts.md, table {table}"
        );
    }
}

/// Every name of the seed exists in perfstream, as docs/analysts.md maps it.
#[sqlx::test(migrations = "../../migrations")]
async fn every_seed_name_exists(pool: PgPool) {
    let seed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "query_performance_metrics",
            &[
                "id",
                "query_hash",
                "query_type",
                "execution_time_ms",
                "rows_affected",
                "campaign_id",
                "executed_at",
            ][..],
        ),
        (
            "database_performance_metrics",
            &[
                "active_connections",
                "pool_utilization",
                "connection_wait_time_ms",
            ][..],
        ),
    ]);
    for (table, cols) in seed {
        let have: Vec<String> = actual_columns(&pool, table)
            .await
            .into_iter()
            .map(|c| c.0)
            .collect();
        for c in cols {
            assert!(have.iter().any(|h| h == c), "{table}.{c} missing: {have:?}");
        }
    }
    for f in ["get_slow_queries", "generate_optimization_recommendations"] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = $1")
            .bind(f)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "{f}");
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/analysts.md"
    ))
    .unwrap();
    for name in [
        "record_query_performance()",
        "get_slow_queries()",
        "generate_optimization_recommendations()",
        "query_performance_metrics",
        "database_performance_metrics",
        "Emitter::record_query",
    ] {
        assert!(doc.contains(name), "docs/analysts.md does not map {name}");
    }
}
