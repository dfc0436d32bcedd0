//! Samples written with the flush (issue 14, section 1): same transaction, same replay rules,
//! and every row `get_slow_queries` returns has a sample at or above the p99 it reports.

mod support;

use perfstream_store::{FlushCommit, Store};
use perfstream_window::{PartitionId, QuerySample, Rollups, Source};
use sqlx::{PgPool, Row};
use support::*;

fn sample(us: i64, offset: i64) -> QuerySample {
    QuerySample {
        duration_us: us,
        rows_affected: 1,
        instance: "i-1".into(),
        tenant_id: None,
        event_time_us: T0 + offset,
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
