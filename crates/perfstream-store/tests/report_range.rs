//! Issue 14, section 5: `perfstream report --from --to`. Every part of the report (slow
//! queries, recommendations, Apdex per endpoint) reads the windows starting in `[from, to)`
//! and nothing else; an empty range is an error.

mod support;

use perfstream_store::report::{parse_time_bound, report};
use perfstream_store::{SlowQueryOptions, Store, StoreError};
use perfstream_window::{QueryRollup, RequestRollup, Rollups};
use sqlx::PgPool;
use support::*;

async fn write(pool: &PgPool, query: Vec<QueryRollup>, request: Vec<RequestRollup>) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush(
        "p1",
        Rollups {
            query,
            request,
            resource: vec![],
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
}

fn opts(from_us: i64, to_us: i64) -> SlowQueryOptions {
    SlowQueryOptions {
        from_us,
        to_us,
        threshold_ms: 1000.0,
        max_rows: 10,
        resolution: None,
    }
}

/// Three windows: the one in the range is the only one whose figures the report shows; the
/// windows either side (one µs out) are much slower and would change every figure.
#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn every_part_of_the_report_reads_only_the_range(pool: PgPool) {
    let (w0, w1, w2) = (T0, T0 + MIN_US, T0 + 2 * MIN_US);
    write(
        &pool,
        vec![
            query(w0, "api", "h1", &[2_000_000; 40], 1),
            query(w0, "api", "h2", &[1_000; 40], 1),
            query(w1, "api", "h1", &[1_500_000; 20], 1),
            query(w1, "api", "h2", &[1_000; 20], 1),
            query(w2, "api", "h1", &[3_000_000; 30], 1),
            query(w2, "api", "h2", &[1_000; 30], 1),
        ],
        vec![
            request(w0, "shop", "/pay", &[5_000_000; 10], 0),
            request(w1, "shop", "/pay", &[50_000; 12], 0),
            request(w2, "shop", "/pay", &[5_000_000; 10], 0),
        ],
    )
    .await;
    let store = Store::from_pool(pool.clone());

    let r = report(&store, &opts(w1, w2)).await.unwrap();
    assert_eq!(r.slow_queries.len(), 1, "{:?}", r.slow_queries);
    let slow = &r.slow_queries[0];
    assert_eq!((slow.query_hash.as_str(), slow.calls), ("h1", 20));
    assert_eq!(slow.max_ms, 1500.0);
    assert_eq!(r.apdex.len(), 1, "{:?}", r.apdex);
    assert_eq!((r.apdex[0].requests, r.apdex[0].apdex), (12, 1.0));
    let dominant: Vec<_> = r
        .recommendations
        .iter()
        .filter(|x| x.kind == "dominant_query")
        .collect();
    assert_eq!(dominant.len(), 1, "{:?}", r.recommendations);
    assert_eq!(dominant[0].target, "api/h1");
    assert_eq!(dominant[0].calls, 20);
    for x in &r.recommendations {
        assert!(
            x.first_window_start_us >= w1 && x.last_window_end_us <= w2,
            "{x:?} outside the range"
        );
    }

    // One µs either side takes in a neighbour: the windows' starts decide.
    let wider = report(&store, &opts(w1 - 1, w2 + 1)).await.unwrap();
    assert_eq!(wider.slow_queries[0].calls, 20 + 30);
    assert_eq!(wider.apdex[0].requests, 22);
    let earlier = report(&store, &opts(w0, w1)).await.unwrap();
    assert_eq!(earlier.slow_queries[0].calls, 40);
    assert_eq!(
        (earlier.apdex[0].requests, earlier.apdex[0].apdex),
        (10, 0.0)
    );

    // The rendered report names its range.
    let text = r.render();
    assert!(
        text.contains("windows starting in [2026-01-01T00:01:00Z, 2026-01-01T00:02:00Z)"),
        "{text}"
    );
    for heading in ["Slow queries", "Recommendations", "Apdex per endpoint"] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    assert!(text.contains("/pay"), "{text}");

    // The bounds as the CLI reads them.
    let from = parse_time_bound("2026-01-01T00:01:00Z", 0).unwrap();
    let to = parse_time_bound("-1m", w2 + MIN_US).unwrap();
    assert_eq!((from, to), (w1, w2));
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn an_empty_or_backwards_range_is_an_error(pool: PgPool) {
    let store = Store::from_pool(pool);
    for (from, to) in [(T0, T0), (T0 + 1, T0)] {
        let err = report(&store, &opts(from, to)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidRange { from_us, to_us } if (from_us, to_us) == (from, to)),
            "{err:?}"
        );
    }
    // An unknown resolution is an error too, not an empty report.
    let err = report(
        &store,
        &SlowQueryOptions {
            resolution: Some("5m".into()),
            ..opts(T0, T0 + MIN_US)
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
}
