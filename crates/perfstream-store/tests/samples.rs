//! Samples written with the flush (issue 14, section 1): same transaction, same replay rules,
//! and every row `get_slow_queries` returns has a sample at or above the p99 it reports.

mod support;

use perfstream_store::{FlushCommit, Store};
use perfstream_window::{PartitionId, QuerySample, RequestSample, Rollups, Source};
use sqlx::{PgPool, Row};
use support::*;

fn sample(us: i64, offset: i64) -> QuerySample {
    QuerySample {
        duration_us: us,
        rows_affected: 1,
        instance: "i-1".into(),
        tenant_id: None,
        event_time_us: T0 + offset,
        trace_id: None,
        source: Source {
            partition: PartitionId {
                topic: 0,
                partition: 0,
            },
            offset,
        },
    }
}

async fn samples(pool: &PgPool) -> Vec<(i64, i64, i16, String)> {
    sqlx::query(
        "SELECT source_offset, execution_time_us, rank, source_topic FROM query_samples ORDER BY rank",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn samples_commit_with_their_flush_once(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    // 100 executions, 1.00 s to 1.99 s: the three slowest kept.
    let values: Vec<i64> = (0..100).map(|i| 1_000_000 + i * 10_000).collect();
    let mut q = query(T0, "api", "h1", &values, 1);
    q.figures.samples = vec![
        sample(1_990_000, 99),
        sample(1_980_000, 98),
        sample(1_970_000, 97),
    ];
    let f = flush(
        "p1",
        Rollups {
            query: vec![q],
            ..Rollups::default()
        },
        vec![progress(&claim, 0, 1, 0, T0 + MIN_US)],
    );
    commit(&store, &f).await;
    let want = vec![
        (99, 1_990_000, 1, "perf.query".to_string()),
        (98, 1_980_000, 2, "perf.query".to_string()),
        (97, 1_970_000, 3, "perf.query".to_string()),
    ];
    assert_eq!(samples(&pool).await, want);
    // The same flush again (its reply was lost): already applied, nothing written twice.
    assert_eq!(
        store.write_flush(&f).await.unwrap(),
        FlushCommit::AlreadyApplied
    );
    assert_eq!(samples(&pool).await, want);

    // Every row get_slow_queries returns has a sample at or above the p99 it reports (the p99
    // is the top of its HDR bucket, reported at most the exact max).
    let rows = sqlx::query(
        "SELECT worst_p99_ms, max_ms, sample_ms, sample_offset, sample_topic FROM get_slow_queries(to_timestamp(0), 1000)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let (p99, max, sample_ms): (f64, f64, f64) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert!(p99 <= max, "p99 {p99} above max {max}");
    assert!(sample_ms >= p99, "sample {sample_ms} below p99 {p99}");
    assert_eq!(sample_ms, 1990.0);
    assert_eq!(rows[0].get::<i64, _>(3), 99);
    assert_eq!(rows[0].get::<String, _>(4), "perf.query");
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn a_fenced_flush_writes_no_sample(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let old = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    // Another owner claims the partition: p1's flush rolls back, samples included.
    store.claim_partition(GROUP, TOPIC, 0, "p2").await.unwrap();
    let mut q = query(T0, "api", "h1", &[5_000_000], 1);
    q.figures.samples = vec![sample(5_000_000, 7)];
    let f = flush(
        "p1",
        Rollups {
            query: vec![q],
            ..Rollups::default()
        },
        vec![progress(&old, 0, 1, 0, T0 + MIN_US)],
    );
    assert!(store.write_flush(&f).await.is_err());
    assert!(samples(&pool).await.is_empty());
}

/// Issue 14: every field of a sample reaches its column, in both tables (one writer serves
/// both), the trace id included; a sample without one stores NULL.
#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn every_sample_field_reaches_its_column(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut q = query(T0, "api", "h1", &[2_000_000, 1_000_000], 4);
    q.key.tenant_id = "t-9".into();
    q.figures.query_text = Some("SELECT $1".into());
    q.figures.samples = vec![
        QuerySample {
            trace_id: Some(trace.into()),
            rows_affected: 7,
            instance: "i-2".into(),
            ..sample(2_000_000, 11)
        },
        sample(1_000_000, 12),
    ];
    let mut r = request(T0, "api", "/pay", &[3_000_000], 0);
    r.figures.samples = vec![RequestSample {
        duration_us: 3_000_000,
        status_code: 503,
        request_bytes: Some(10),
        response_bytes: None,
        instance: "i-3".into(),
        event_time_us: T0 + 5,
        trace_id: Some(trace.into()),
        source: Source {
            partition: PartitionId {
                topic: 1,
                partition: 2,
            },
            offset: 40,
        },
    }];
    let mut f = flush(
        "p1",
        Rollups {
            query: vec![q],
            request: vec![r],
            ..Rollups::default()
        },
        vec![progress(&claim, 0, 1, 0, T0 + MIN_US)],
    );
    f.topics = vec!["perf.query".into(), "perf.request".into()];
    commit(&store, &f).await;

    let rows = sqlx::query(
        "SELECT resolution, window_start = to_timestamp($1 / 1e6), \
         window_end = to_timestamp($2 / 1e6), service, query_hash, query_type, tenant_id, \
         source_topic, source_partition, source_offset, rank, execution_time_us, rows_affected, \
         instance, query_text, event_time = to_timestamp($3 / 1e6), trace_id \
         FROM query_samples ORDER BY rank",
    )
    .bind(T0 as f64)
    .bind((T0 + MIN_US) as f64)
    .bind((T0 + 11) as f64)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    let r0 = &rows[0];
    assert_eq!(r0.get::<String, _>(0), "1m");
    assert!(r0.get::<bool, _>(1) && r0.get::<bool, _>(2) && r0.get::<bool, _>(15));
    assert_eq!(
        (
            r0.get::<String, _>(3),
            r0.get::<String, _>(4),
            r0.get::<String, _>(5),
            r0.get::<String, _>(6),
            r0.get::<String, _>(7),
        ),
        (
            "api".into(),
            "h1".into(),
            "select".into(),
            "t-9".into(),
            "perf.query".into()
        )
    );
    assert_eq!(
        (
            r0.get::<i32, _>(8),
            r0.get::<i64, _>(9),
            r0.get::<i16, _>(10),
            r0.get::<i64, _>(11),
            r0.get::<i64, _>(12),
        ),
        (0, 11, 1, 2_000_000, 7)
    );
    assert_eq!(r0.get::<String, _>(13), "i-2");
    assert_eq!(
        r0.get::<Option<String>, _>(14).as_deref(),
        Some("SELECT $1")
    );
    assert_eq!(r0.get::<Option<String>, _>(16).as_deref(), Some(trace));
    assert_eq!(rows[1].get::<i16, _>(10), 2);
    assert_eq!(rows[1].get::<Option<String>, _>(16), None);

    let r = sqlx::query(
        "SELECT resolution, service, endpoint, method, source_topic, source_partition, \
         source_offset, rank, response_time_us, status_code, request_bytes, response_bytes, \
         instance, event_time = to_timestamp($1 / 1e6), trace_id FROM request_samples",
    )
    .bind((T0 + 5) as f64)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (
            r.get::<String, _>(0),
            r.get::<String, _>(1),
            r.get::<String, _>(2),
            r.get::<String, _>(3),
            r.get::<String, _>(4),
        ),
        (
            "1m".into(),
            "api".into(),
            "/pay".into(),
            "GET".into(),
            "perf.request".into()
        )
    );
    assert_eq!(
        (
            r.get::<i32, _>(5),
            r.get::<i64, _>(6),
            r.get::<i16, _>(7),
            r.get::<i64, _>(8),
            r.get::<i32, _>(9),
            r.get::<Option<i64>, _>(10),
            r.get::<Option<i64>, _>(11),
        ),
        (2, 40, 1, 3_000_000, 503, Some(10), None)
    );
    assert_eq!(r.get::<String, _>(12), "i-3");
    assert!(r.get::<bool, _>(13));
    assert_eq!(r.get::<Option<String>, _>(14).as_deref(), Some(trace));
    // The seed's view shows the trace id.
    let seen: Option<String> = sqlx::query_scalar(
        "SELECT trace_id FROM query_performance_metrics WHERE execution_time_ms = 2000",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some(trace));
}
