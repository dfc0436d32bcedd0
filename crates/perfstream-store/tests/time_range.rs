//! Issue 14, section 5 (part): an unknown resolution is an error, not an empty result, and
//! get_slow_queries takes an end bound (windows starting in [since, until)).

mod support;

use perfstream_store::{SlowQueryOptions, Store, apdex_report, slow_query_report};
use perfstream_window::{QueryRollup, Rollups};
use sqlx::PgPool;
use support::*;

async fn write(pool: &PgPool, query: Vec<QueryRollup>) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush(
        "p1",
        Rollups {
            query,
            request: vec![],
            resource: vec![],
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
}

async fn sql_error(pool: &PgPool, sql: &'static str) -> String {
    match sqlx::query(sql).bind(T0).fetch_all(pool).await {
        Ok(rows) => panic!("{sql}: expected an error, got {} rows", rows.len()),
        Err(e) => e.to_string(),
    }
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn an_unknown_resolution_is_an_error(pool: PgPool) {
    // One-minute base windows: '1m' is known, '10s' (the demo's label) is not.
    write(&pool, vec![query(T0, "api", "q1", &[2_000_000], 1)]).await;
    for sql in [
        "SELECT * FROM get_slow_queries(to_timestamp($1::float8 / 1e6), 1000, 50, '10s')",
        "SELECT * FROM get_slow_queries(to_timestamp($1::float8 / 1e6), 1000, 50, 'hourly')",
        "SELECT * FROM generate_optimization_recommendations(to_timestamp($1::float8 / 1e6), '10s')",
    ] {
        let err = sql_error(&pool, sql).await;
        assert!(err.contains("unknown resolution"), "{sql}: {err}");
    }
    // Known resolutions still answer: the base label, the tiers (empty here) and NULL.
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .bind(T0)
                .fetch_all(&pool)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        count("SELECT * FROM get_slow_queries(to_timestamp($1::float8 / 1e6), 1000, 50, '1m')")
            .await,
        1
    );
    assert_eq!(
        count("SELECT * FROM get_slow_queries(to_timestamp($1::float8 / 1e6), 1000, 50, '1h')")
            .await,
        0
    );
    assert_eq!(
        count("SELECT * FROM get_slow_queries(to_timestamp($1::float8 / 1e6))").await,
        1
    );
    count(
        "SELECT * FROM generate_optimization_recommendations(to_timestamp($1::float8 / 1e6), '1d')",
    )
    .await;

    // The Rust reports check it too.
    let store = Store::from_pool(pool.clone());
    let opts = |resolution: &str| SlowQueryOptions {
        from_us: T0,
        to_us: T0 + HOUR_US,
        threshold_ms: 1000.0,
        max_rows: 10,
        resolution: Some(resolution.to_owned()),
    };
    let err = slow_query_report(&store, &opts("10s")).await.unwrap_err();
    assert!(format!("{err:?}").contains("unknown resolution"), "{err:?}");
    assert_eq!(
        slow_query_report(&store, &opts("1m")).await.unwrap().len(),
        1
    );
    let err = apdex_report(&store, T0, T0 + HOUR_US, Some("hourly"))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("unknown resolution"), "{err:?}");
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn get_slow_queries_takes_an_end_bound(pool: PgPool) {
    write(
        &pool,
        vec![
            query(T0, "api", "early", &[2_000_000], 1),
            query(T0 + 10 * MIN_US, "api", "late", &[3_000_000], 1),
        ],
    )
    .await;
    let hashes = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(sql)
                .bind(T0)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    // No end: both; until = the late window's start (exclusive): only the early one; until
    // one µs after it: both again.
    assert_eq!(
        hashes("SELECT query_hash FROM get_slow_queries(to_timestamp($1::float8 / 1e6))").await,
        ["late", "early"]
    );
    assert_eq!(
        hashes(
            "SELECT query_hash FROM get_slow_queries(since => to_timestamp($1::float8 / 1e6), \
             until => to_timestamp(($1 + 600000000)::float8 / 1e6))"
        )
        .await,
        ["early"]
    );
    assert_eq!(
        hashes(
            "SELECT query_hash FROM get_slow_queries(since => to_timestamp($1::float8 / 1e6), \
             until => to_timestamp(($1 + 600000001)::float8 / 1e6))"
        )
        .await,
        ["late", "early"]
    );
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn recommendations_take_an_end_bound(pool: PgPool) {
    // A slow statement returning many rows (slow_query_many_rows: >= 20 calls, p99 >= 500 ms,
    // >= 1000 rows per call), only in the window starting at T0 + 10 min.
    write(
        &pool,
        vec![
            query(T0, "api", "fast", &[1_000; 20], 1),
            query(T0 + 10 * MIN_US, "api", "slow", &[600_000; 20], 2_000),
        ],
    )
    .await;
    let kinds = |until_us: Option<i64>| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT kind || ' ' || target FROM generate_optimization_recommendations(\
                 since => to_timestamp($1::float8 / 1e6), \
                 until => to_timestamp($2::float8 / 1e6)) WHERE kind = 'slow_query_many_rows'",
            )
            .bind(T0)
            .bind(until_us)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(kinds(None).await, ["slow_query_many_rows api/slow"]);
    assert_eq!(kinds(Some(T0 + 10 * MIN_US)).await, Vec::<String>::new());
    assert_eq!(
        kinds(Some(T0 + 10 * MIN_US + 1)).await,
        ["slow_query_many_rows api/slow"]
    );
}
