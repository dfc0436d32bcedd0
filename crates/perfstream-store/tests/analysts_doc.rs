//! Issue 14, section 7: every SQL example of `docs/analysts.md` runs against a migrated
//! database, and none reads the base tier by a literal label (the demo's windows are 10 s, so
//! `resolution = '1m'` returned nothing there).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use perfstream_store::Store;
use perfstream_window::Rollups;
use sqlx::{PgPool, Row};
use support::*;

const DOC: &str = include_str!("../../../docs/analysts.md");

/// The statements of every fenced ```sql block, in order, each with its leading comment.
fn sql_examples() -> Vec<String> {
    let mut out = Vec::new();
    let (mut in_sql, mut current) = (false, String::new());
    for line in DOC.lines() {
        if !in_sql {
            in_sql = line.trim() == "```sql";
            continue;
        }
        if line.trim() == "```" {
            in_sql = false;
            assert!(
                current.trim().is_empty(),
                "unterminated statement: {current}"
            );
            current.clear();
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// Two 10 s base windows of `checkout /api/pay` in the last minutes, as the demo writes them.
async fn ten_second_windows(pool: &PgPool) {
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let ws = now_us - now_us % 10_000_000 - 60_000_000;
    let rows = (0..2)
        .map(|i| {
            let mut r = request(
                ws + i * 10_000_000,
                "checkout",
                "/api/pay",
                &[1_000, 2_000],
                1,
            );
            r.window_end_us = r.window_start_us + 10_000_000;
            r
        })
        .collect();
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush(
        "p1",
        Rollups {
            query: vec![],
            request: rows,
            resource: vec![],
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
}

#[test]
fn the_doc_has_sql_examples() {
    let examples = sql_examples();
    assert!(examples.len() >= 15, "{} statements found", examples.len());
}

#[test]
fn no_example_reads_the_base_tier_by_label() {
    for sql in sql_examples() {
        for label in ["'1m'", "'10s'", "'30s'", "'5m'"] {
            assert!(
                !sql.contains(&format!("resolution = {label}")),
                "hard-coded base tier in:\n{sql}"
            );
        }
    }
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn every_sql_example_runs(pool: PgPool) {
    ten_second_windows(&pool).await;
    let mut error_rate_rows = None;
    for sql in sql_examples() {
        // The SQL is the checked-in doc, not input.
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("example failed: {e}\n{sql}"));
        if sql.contains("error rate per base window") {
            let rates: Vec<f64> = rows.iter().map(|r| r.get("error_rate")).collect();
            error_rate_rows = Some(rates);
        }
    }
    // The per-window example sees the demo's 10 s windows: 2 windows, 1 error in 2 requests.
    assert_eq!(error_rate_rows, Some(vec![0.5, 0.5]));
}
