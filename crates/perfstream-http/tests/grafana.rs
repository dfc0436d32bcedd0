//! The Grafana dashboard (`grafana/dashboards/perfstream.json`, issue 16) runs on the real
//! schema: every panel's SQL and every variable's query, with Grafana's macros expanded as
//! its Postgres data source does, against a migrated database with rows of every kind, for a
//! range that reads the base windows and one that reads the '1h' tier.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::{PgPool, Row};

mod support;
use support::{insert_query, insert_request, this_minute};

const DASHBOARD: &str = include_str!("../../../grafana/dashboards/perfstream.json");
/// The service the `$service` variable is set to.
const SERVICE: &str = "shop";
/// Panels whose rows depend on thresholds the data may not reach.
const MAY_BE_EMPTY: &[&str] = &["Recommendations"];

/// Resource metrics with `_samples`, `_sum` and `_max` columns, and the value written.
const RESOURCE_METRICS: &[(&str, i64)] = &[
    ("cpu_ppm", 500_000),
    ("memory_used_bytes", 1 << 30),
    ("memory_limit_bytes", 1 << 31),
    ("memory_utilization_ppm", 500_000),
    ("heap_bytes", 1 << 29),
    ("gc_pause_us", 3_000),
    ("gc_count", 2),
    ("interval_us", 10_000_000),
    ("pool_active", 9),
    ("pool_max", 10),
    ("pool_utilization_ppm", 900_000),
    ("pool_waiters", 2),
    ("pool_wait_us", 5_000),
    ("io_read_bytes", 1000),
    ("io_write_bytes", 1000),
];

async fn insert_resource(pool: &PgPool, resolution: &str, ws: DateTime<Utc>, len: Duration) {
    let mut columns = String::new();
    let mut values = String::new();
    for (i, (name, _)) in RESOURCE_METRICS.iter().enumerate() {
        columns.push_str(&format!(", {name}_samples, {name}_sum, {name}_max"));
        values.push_str(&format!(", 1, ${0}, ${0}", i + 6));
    }
    let sql = format!(
        "INSERT INTO resource_rollups (resolution, window_start, window_end, service, instance,
             samples, cache_hits, cache_misses{columns})
         VALUES ($1, $2, $3, $4, $5, 1, 90, 10{values})"
    );
    // Audited: the text is column names and placeholders only; the values are binds.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(resolution)
        .bind(ws)
        .bind(ws + len)
        .bind(SERVICE)
        .bind("shop-0");
    for (_, v) in RESOURCE_METRICS {
        query = query.bind(v);
    }
    query.execute(pool).await.expect("insert resource rollup");
}

/// Grafana's Postgres macros for the range `from`..`to`, and the `$service` variable.
fn expand(sql: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (from, to) = (
        format!("'{}'", from.format("%Y-%m-%dT%H:%M:%SZ")),
        format!("'{}'", to.format("%Y-%m-%dT%H:%M:%SZ")),
    );
    let mut out = sql.to_owned();
    while let Some(start) = out.find("$__timeFilter(") {
        let arg_start = start + "$__timeFilter(".len();
        let end = arg_start + out[arg_start..].find(')').expect("closing parenthesis");
        let column = out[arg_start..end].to_owned();
        out.replace_range(start..=end, &format!("{column} BETWEEN {from} AND {to}"));
    }
    out.replace("$__timeFrom()", &from)
        .replace("$__timeTo()", &to)
        .replace("$__interval_ms", "60000")
        .replace("$service", SERVICE)
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn every_panel_and_variable_query_runs_on_the_schema(pool: PgPool) {
    let now = this_minute(&pool).await;
    for m in 1..=5 {
        let ws = now - Duration::minutes(m);
        insert_request(&pool, ws, (SERVICE, "/orders"), (60, 3), (4_000, 5_000)).await;
        insert_query(&pool, ws, (SERVICE, "abc"), 30, 2_000_000, 3).await;
        insert_resource(&pool, "1m", ws, Duration::minutes(1)).await;
    }
    for h in 2..=30 {
        insert_resource(&pool, "1h", now - Duration::hours(h), Duration::hours(1)).await;
    }
    sqlx::query(
        "INSERT INTO request_rollups (resolution, window_start, window_end, service, endpoint,
             method, count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us,
             hist, status_2xx, status_3xx, status_4xx, status_5xx, status_other)
         SELECT '1h', t, t + interval '1 hour', $1, '/orders', 'GET', 3600, 3600000, 1, 9, 5, 5,
                5, 5, 9, '\\x00', 3600, 0, 0, 0, 0
         FROM generate_series($2 - interval '30 hours', $2 - interval '2 hours', interval '1 hour') t",
    )
    .bind(SERVICE)
    .bind(now)
    .execute(&pool)
    .await
    .expect("hour rows");
    sqlx::query(
        "INSERT INTO query_rollups (resolution, window_start, window_end, service, query_hash,
             query_type, count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us,
             hist, rows_sum, rows_max)
         SELECT '1h', t, t + interval '1 hour', $1, 'abc', 'select', 100, 100000, 1, 2000000, 500,
                900, 900, 1500000, 2000000, '\\x00', 300, 3
         FROM generate_series($2 - interval '30 hours', $2 - interval '2 hours', interval '1 hour') t",
    )
    .bind(SERVICE)
    .bind(now)
    .execute(&pool)
    .await
    .expect("hour query rows");
    sqlx::query(
        "INSERT INTO alerts (alert_id, state, rule, severity, service, alert_key, labels,
             observed_value, threshold, clear_threshold, window_start, window_end,
             transitioned_at, message)
         VALUES ('a1', 'firing', 'p99', 'warning', $1, 'k', '{}', 2, 1, 0.8,
                 $2 - interval '3 minutes', $2 - interval '2 minutes', $2, 'p99 firing')",
    )
    .bind(SERVICE)
    .bind(now)
    .execute(&pool)
    .await
    .expect("alert");

    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut statements: Vec<(String, String)> = Vec::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let name = format!("variable {}", var["name"]);
        statements.push((name, var["query"].as_str().expect("query").to_owned()));
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        assert_eq!(panel["datasource"]["uid"], "perfstream-pg", "{title}");
        for target in panel["targets"].as_array().expect("targets") {
            let sql = target["rawSql"].as_str().expect("rawSql");
            statements.push((title.to_owned(), sql.to_owned()));
        }
    }

    // 1 h reads the base windows, 2 days the '1h' tier: both must find rows.
    for span in [Duration::hours(1), Duration::days(2)] {
        let (from, to) = (now - span, now + Duration::minutes(1));
        for (name, sql) in &statements {
            let sql = expand(sql, from, to);
            assert!(
                !sql.contains("$__") && !sql.contains("$service"),
                "{name}: {sql}"
            );
            // Audited: the dashboard's own SQL with the test's fixed range and service.
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{name} ({span}): {e}\n{sql}"));
            if !MAY_BE_EMPTY.contains(&name.as_str()) {
                assert!(!rows.is_empty(), "{name} ({span}): no rows\n{sql}");
            }
            if let Some(first) = rows.first()
                && first.try_get::<DateTime<Utc>, _>("time").is_err()
                && sql.contains(" AS time")
            {
                panic!("{name}: column `time` is not a timestamp");
            }
        }
    }
}
