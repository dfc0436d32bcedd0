//! Issue 14, section 6: Apdex per endpoint from the stored histograms, T from `endpoint_slas`
//! (else the `sla_p99_ms` setting): satisfied <= T, tolerating <= 4T, exact when no recorded
//! histogram bucket straddles T or 4T. Hand-written windows with known answers.

mod support;

use perfstream_store::report::{apdex_counts, render_apdex};
use perfstream_store::{ApdexRow, Store, apdex_report};
use perfstream_window::{RequestRollup, Rollups};
use sqlx::PgPool;
use support::*;

fn with_method(mut r: RequestRollup, method: &str) -> RequestRollup {
    r.key.method = method.to_owned();
    r
}

async fn write(pool: &PgPool, request: Vec<RequestRollup>) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush(
        "p1",
        Rollups {
            query: vec![],
            request,
            resource: vec![],
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
}

/// At two significant digits, values in [65 536, 131 072) µs share buckets of 512 µs:
/// 100 351 µs is the top of [99 840, 100 351], and 100 352 the bottom of the next bucket.
const EDGE_T_US: i64 = 100_351;

#[test]
fn a_bucket_edge_t_is_exact_and_the_next_value_is_tolerating() {
    let l = latency(&[50_000, EDGE_T_US, EDGE_T_US + 1, 300_000, 500_000]);
    assert_eq!(apdex_counts(&l.hist, EDGE_T_US as u64), (2, 2, true));
    // One µs lower, T falls inside the bucket of 100 351: that request is no longer satisfied
    // and the count is flagged as a lower bound.
    assert_eq!(apdex_counts(&l.hist, EDGE_T_US as u64 - 1), (1, 3, false));
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn apdex_per_endpoint_over_windows_and_methods(pool: PgPool) {
    write(
        &pool,
        vec![
            // /pay: T = 100.351 ms from endpoint_slas, two windows and two methods merged.
            request(T0, "shop", "/pay", &[50_000, 50_000, EDGE_T_US, 500_000], 0),
            with_method(
                request(
                    T0 + MIN_US,
                    "shop",
                    "/pay",
                    &[50_000, EDGE_T_US + 1, 300_000, 2_000_000],
                    0,
                ),
                "POST",
            ),
            // /browse: no SLA row, so T = sla_p99_ms (1000 ms), which falls inside the 4096 µs
            // bucket [999 424, 1 003 519]: 999 500 counts as tolerating, and the row is inexact.
            request(
                T0,
                "shop",
                "/browse",
                &[200_000, 999_500, 3_000_000, 5_000_000],
                0,
            ),
            // Outside the range: must not count.
            request(T0 + 10 * MIN_US, "shop", "/pay", &[9_000_000], 0),
        ],
    )
    .await;
    sqlx::query("INSERT INTO endpoint_slas VALUES ('shop', '/pay', 100.351)")
        .execute(&pool)
        .await
        .unwrap();

    let store = Store::from_pool(pool.clone());
    let rows = apdex_report(&store, T0, T0 + 2 * MIN_US, None)
        .await
        .unwrap();
    let row = |endpoint: &str, t_ms, requests, satisfied, tolerating, apdex, exact| ApdexRow {
        service: "shop".into(),
        endpoint: String::from(endpoint),
        t_ms,
        requests,
        satisfied,
        tolerating,
        apdex,
        exact,
    };
    assert_eq!(
        rows,
        vec![
            // (1 + 2 / 2) / 4, worst first
            row("/browse", 1000.0, 4, 1, 2, 0.5, false),
            // (4 + 2 / 2) / 8
            row("/pay", 100.351, 8, 4, 2, 0.625, true),
        ]
    );
    let table = render_apdex(&rows);
    assert!(
        table.contains("0.625") && table.contains("lower bound"),
        "{table}"
    );

    // The SLA table is read at run time: /pay at T = 1 s.
    sqlx::query("UPDATE endpoint_slas SET p99_ms = 1000 WHERE endpoint = '/pay'")
        .execute(&pool)
        .await
        .unwrap();
    let rows = apdex_report(&store, T0, T0 + 2 * MIN_US, None)
        .await
        .unwrap();
    let pay = rows.iter().find(|r| r.endpoint == "/pay").unwrap();
    // <= 1 s: 50 000 x3, 100 351, 100 352, 300 000, 500 000; <= 4 s: 2 000 000.
    assert_eq!((pay.satisfied, pay.tolerating), (7, 1));
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn an_empty_range_has_no_rows(pool: PgPool) {
    write(&pool, vec![request(T0, "shop", "/pay", &[1_000], 0)]).await;
    let store = Store::from_pool(pool.clone());
    let rows = apdex_report(&store, T0 + MIN_US, T0 + 2 * MIN_US, None)
        .await
        .unwrap();
    assert_eq!(rows, vec![]);
}
