//! Reads: how far the committed rollups are complete, which windows to judge, their rows, and
//! the regression baselines.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use perfstream_alerts::{
    Bucket, Latency, QueryRow, RequestRow, ResourceRow, Sla, SlaTable, Statistic, Window,
    WindowRows,
};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use crate::error::{EvalError, db};

pub(crate) fn to_ts(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn from_ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The smallest `applied_watermark` over every partition of the group: windows ending at or
/// before it are complete (every partition's flush has passed them). `None` while any
/// partition has not flushed yet, or no partition is known.
pub(crate) async fn complete_until(
    conn: &mut PgConnection,
    group: &str,
) -> Result<Option<i64>, EvalError> {
    let row = sqlx::query(
        "SELECT min(applied_watermark), count(*), count(applied_watermark) \
         FROM consumer_offsets WHERE group_id = $1",
    )
    .bind(group)
    .fetch_one(&mut *conn)
    .await
    .map_err(db("reading the watermarks"))?;
    let (min, all, set): (Option<DateTime<Utc>>, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok(if all > 0 && all == set {
        min.map(from_ts)
    } else {
        None
    })
}

/// The base tier's resolution label (the pipeline's window, e.g. `1m`): any rollup row that is
/// not an `1h`/`1d` tier row.
pub(crate) async fn base_resolution(conn: &mut PgConnection) -> Result<Option<String>, EvalError> {
    let row = sqlx::query(
        "SELECT resolution FROM (
            (SELECT resolution FROM request_rollups WHERE resolution NOT IN ('1h', '1d') LIMIT 1)
            UNION ALL (SELECT resolution FROM query_rollups WHERE resolution NOT IN ('1h', '1d') LIMIT 1)
            UNION ALL (SELECT resolution FROM resource_rollups WHERE resolution NOT IN ('1h', '1d') LIMIT 1)
         ) r LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("finding the base resolution"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The distinct windows with any row, starting at or after `from_us` and ending at or before
/// `until_us`, oldest first, at most `limit`.
pub(crate) async fn windows(
    conn: &mut PgConnection,
    res: &str,
    from_us: i64,
    until_us: i64,
    limit: i64,
) -> Result<Vec<Window>, EvalError> {
    let rows = sqlx::query(
        "SELECT DISTINCT window_start, window_end FROM (
            SELECT window_start, window_end FROM request_rollups
             WHERE resolution = $1 AND window_start >= $2 AND window_end <= $3
            UNION SELECT window_start, window_end FROM query_rollups
             WHERE resolution = $1 AND window_start >= $2 AND window_end <= $3
            UNION SELECT window_start, window_end FROM resource_rollups
             WHERE resolution = $1 AND window_start >= $2 AND window_end <= $3
         ) w ORDER BY window_start LIMIT $4",
    )
    .bind(res)
    .bind(to_ts(from_us))
    .bind(to_ts(until_us))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("listing complete windows"))?;
    Ok(rows
        .iter()
        .map(|r| Window {
            start_us: from_ts(r.get(0)),
            end_us: from_ts(r.get(1)),
        })
        .collect())
}

fn latency(r: &sqlx::postgres::PgRow) -> Latency {
    Latency {
        count: r.get("count"),
        p50_us: r.get("p50_us"),
        p90_us: r.get("p90_us"),
        p95_us: r.get("p95_us"),
        p99_us: r.get("p99_us"),
        p999_us: r.get("p999_us"),
        max_us: r.get("max_us"),
        mean_us: r.get::<f64, _>("mean_us").round() as i64,
    }
}

/// The non-empty buckets of a rollup's histogram (HdrHistogram V2, as the store writes it),
/// ascending, each with its lowest and highest equivalent value.
pub(crate) fn buckets(bytes: &[u8]) -> Result<Vec<Bucket>, String> {
    let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))?;
    Ok(h.iter_recorded()
        .map(|v| {
            let high = v.value_iterated_to();
            Bucket {
                low_us: h.lowest_equivalent(high) as i64,
                high_us: h.highest_equivalent(high) as i64,
                count: i64::try_from(v.count_at_value()).unwrap_or(i64::MAX),
            }
        })
        .collect())
}

/// The endpoint SLAs (`endpoint_slas`): every row, by (service, endpoint). A row whose
/// statistic or objective this version does not know is left out, with a warning.
pub(crate) async fn slas(conn: &mut PgConnection) -> Result<SlaTable, EvalError> {
    let rows =
        sqlx::query("SELECT service, endpoint, statistic, p99_ms, slo_target FROM endpoint_slas")
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading endpoint SLAs"))?;
    let mut out = SlaTable::with_capacity(rows.len());
    for r in rows {
        let (service, endpoint, statistic): (String, String, String) =
            (r.get(0), r.get(1), r.get(2));
        let sla = Statistic::parse(&statistic).map(|statistic| Sla {
            statistic,
            threshold_ms: r.get(3),
            slo_target: r.get(4),
        });
        match sla {
            Some(sla) if sla.is_valid() => {
                out.insert((service, endpoint), sla);
            }
            _ => tracing::warn!(
                %service,
                %endpoint,
                %statistic,
                "Ignoring an endpoint_slas row this version cannot use; the config's SLA applies."
            ),
        }
    }
    Ok(out)
}

fn ppm(v: Option<f64>) -> Option<f64> {
    v.map(|v| v / 1e6)
}

/// The rows of every kind of the windows starting in `[from_us, to_us)`, per window start;
/// with `hists`, the request rows' histograms too (for the latency burn rate).
pub(crate) async fn rows(
    pool: &PgPool,
    res: &str,
    from_us: i64,
    to_us: i64,
    hists: bool,
) -> Result<BTreeMap<i64, WindowRows>, EvalError> {
    let mut out: BTreeMap<i64, WindowRows> = BTreeMap::new();
    let mut slot = |r: &sqlx::postgres::PgRow| -> i64 {
        let w = Window {
            start_us: from_ts(r.get("window_start")),
            end_us: from_ts(r.get("window_end")),
        };
        out.entry(w.start_us)
            .or_insert_with(|| WindowRows::empty(w));
        w.start_us
    };
    let (from, to) = (to_ts(from_us), to_ts(to_us));
    // The three kinds in parallel, each on its own connection of the read pool.
    let fetch = |sql: &'static str| {
        sqlx::query(sql)
            .bind(res)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
    };
    let (q_rows, r_rows, s_rows) = tokio::try_join!(
        fetch(
            "SELECT window_start, window_end, service, query_hash, query_type, count,
                p50_us, p90_us, p95_us, p99_us, p999_us, max_us, mean_us
         FROM query_rollups WHERE resolution = $1 AND window_start >= $2 AND window_start < $3"
        ),
        fetch(if hists {
            "SELECT window_start, window_end, service, endpoint, method, count,
                p50_us, p90_us, p95_us, p99_us, p999_us, max_us, mean_us, status_5xx, hist
         FROM request_rollups WHERE resolution = $1 AND window_start >= $2 AND window_start < $3"
        } else {
            "SELECT window_start, window_end, service, endpoint, method, count,
                p50_us, p90_us, p95_us, p99_us, p999_us, max_us, mean_us, status_5xx
         FROM request_rollups WHERE resolution = $1 AND window_start >= $2 AND window_start < $3"
        }),
        fetch(
            "SELECT window_start, window_end, service, instance,
                cpu_ppm_mean, memory_utilization_ppm_mean, memory_utilization_ppm_last,
                pool_utilization_ppm_mean, pool_utilization_ppm_max, pool_waiters_max,
                gc_pause_us_sum, gc_pause_us_samples, interval_us_sum, interval_us_samples,
                cache_hits, cache_misses
         FROM resource_rollups WHERE resolution = $1 AND window_start >= $2 AND window_start < $3"
        ),
    )
    .map_err(db("reading the rollups of a window"))?;
    let mut queries = Vec::with_capacity(q_rows.len());
    for r in &q_rows {
        let k = slot(r);
        queries.push((
            k,
            QueryRow {
                service: r.get("service"),
                query_hash: r.get("query_hash"),
                query_type: r.get("query_type"),
                latency: latency(r),
                baseline_us: None,
            },
        ));
    }
    let mut requests = Vec::with_capacity(r_rows.len());
    for r in &r_rows {
        let k = slot(r);
        let buckets = if hists {
            buckets(r.get::<&[u8], _>("hist")).unwrap_or_else(|error| {
                tracing::warn!(
                    %error,
                    service = r.get::<&str, _>("service"),
                    endpoint = r.get::<&str, _>("endpoint"),
                    "Unreadable request histogram; the latency burn counts none of its requests as slow."
                );
                Vec::new()
            })
        } else {
            Vec::new()
        };
        requests.push((
            k,
            RequestRow {
                service: r.get("service"),
                endpoint: r.get("endpoint"),
                method: r.get("method"),
                latency: latency(r),
                status_5xx: r.get("status_5xx"),
                baseline_us: None,
                buckets,
            },
        ));
    }
    let mut resources = Vec::with_capacity(s_rows.len());
    for r in &s_rows {
        let k = slot(r);
        let gc_samples: i64 = r.get("gc_pause_us_samples");
        let interval_samples: i64 = r.get("interval_us_samples");
        let interval_sum: i64 = r.get("interval_us_sum");
        // The wall time of the samples that reported GC pauses.
        let gc_interval = (gc_samples > 0 && interval_samples > 0)
            .then(|| (interval_sum as f64 * gc_samples as f64 / interval_samples as f64) as i64);
        resources.push((
            k,
            ResourceRow {
                service: r.get("service"),
                instance: r.get("instance"),
                cpu_mean: ppm(r.get("cpu_ppm_mean")),
                memory_utilization_mean: ppm(r.get("memory_utilization_ppm_mean")),
                memory_utilization_last: ppm(r
                    .get::<Option<i64>, _>("memory_utilization_ppm_last")
                    .map(|v| v as f64)),
                pool_utilization_mean: ppm(r.get("pool_utilization_ppm_mean")),
                pool_utilization_max: ppm(r
                    .get::<Option<i64>, _>("pool_utilization_ppm_max")
                    .map(|v| v as f64)),
                pool_waiters_max: r.get("pool_waiters_max"),
                gc_pause_us_sum: (gc_samples > 0).then(|| r.get("gc_pause_us_sum")),
                gc_interval_us_sum: gc_interval,
                cache_hits: r.get("cache_hits"),
                cache_misses: r.get("cache_misses"),
            },
        ));
    }
    for (k, q) in queries {
        if let Some(w) = out.get_mut(&k) {
            w.queries.push(q);
        }
    }
    for (k, q) in requests {
        if let Some(w) = out.get_mut(&k) {
            w.requests.push(q);
        }
    }
    for (k, q) in resources {
        if let Some(w) = out.get_mut(&k) {
            w.resources.push(q);
        }
    }
    Ok(out)
}

/// The oldest `rollup_changes` rows, at most `limit`: (seq, window, whether the window is of
/// the base resolution `res`; rows of another one are consumed and ignored).
pub(crate) async fn changes(
    conn: &mut PgConnection,
    res: &str,
    limit: i64,
) -> Result<Vec<(i64, Window, bool)>, EvalError> {
    let rows = sqlx::query(
        "SELECT seq, window_start, window_end, resolution = $1 FROM rollup_changes
         ORDER BY seq LIMIT $2",
    )
    .bind(res)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading changed windows"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let w = Window {
                start_us: from_ts(r.get(1)),
                end_us: from_ts(r.get(2)),
            };
            (r.get(0), w, r.get(3))
        })
        .collect())
}

/// Start of the oldest base-tier query or request row, if any.
pub(crate) async fn oldest_latency_row(
    conn: &mut PgConnection,
    res: &str,
) -> Result<Option<i64>, EvalError> {
    let t: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT least((SELECT min(window_start) FROM query_rollups WHERE resolution = $1),
                      (SELECT min(window_start) FROM request_rollups WHERE resolution = $1))",
    )
    .bind(res)
    .fetch_one(&mut *conn)
    .await
    .map_err(db("finding the oldest rollup"))?;
    Ok(t.map(from_ts))
}

fn column(s: Statistic) -> &'static str {
    match s {
        Statistic::P50 => "p50_us",
        Statistic::P90 => "p90_us",
        Statistic::P95 => "p95_us",
        Statistic::P99 => "p99_us",
        Statistic::P999 => "p999_us",
        Statistic::Max => "max_us",
        Statistic::Avg => "mean_us",
    }
}

/// Regression baselines of `rows`' window: per series, the median of `statistic` in the same
/// window of each of the previous `days` days (at least `min_days` of them), stored in
/// `alert_baselines` and set on the rows.
pub(crate) async fn baselines(
    conn: &mut PgConnection,
    res: &str,
    rows: &mut WindowRows,
    statistic: Statistic,
    days: u32,
    min_days: u32,
) -> Result<(), EvalError> {
    let w = rows.window.start_us;
    let back: Vec<DateTime<Utc>> = (1..=i64::from(days))
        .map(|d| to_ts(w - d * 86_400_000_000))
        .collect();
    let col = column(statistic);
    let stat = col.trim_end_matches("_us");
    for (kind, table, target, variant) in [
        ("query", "query_rollups", "query_hash", "query_type"),
        ("request", "request_rollups", "endpoint", "method"),
    ] {
        // Identifiers come from the closed lists above, never from input.
        let sql = format!(
            "WITH b AS (
                SELECT service, {target} AS target, {variant} AS variant,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY {col}) AS baseline, count(*) AS days
                FROM {table} WHERE resolution = $1 AND window_start = ANY($2)
                GROUP BY 1, 2, 3 HAVING count(*) >= $3
             )
             INSERT INTO alert_baselines (kind, service, target, variant, window_start, statistic, baseline_us, days)
             SELECT '{kind}', service, target, variant, $4, $5, baseline, days FROM b
             ON CONFLICT (kind, service, target, variant, window_start) DO UPDATE
               SET statistic = EXCLUDED.statistic, baseline_us = EXCLUDED.baseline_us,
                   days = EXCLUDED.days, computed_at = now()
             RETURNING service, target, variant, baseline_us"
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(res)
            .bind(&back)
            .bind(i64::from(min_days))
            .bind(to_ts(w))
            .bind(stat)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("computing regression baselines"))?;
        if found.is_empty() {
            continue;
        }
        let map: HashMap<(String, String, String), f64> = found
            .iter()
            .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
            .collect();
        if kind == "query" {
            for q in &mut rows.queries {
                q.baseline_us = map
                    .get(&(
                        q.service.clone(),
                        q.query_hash.clone(),
                        q.query_type.clone(),
                    ))
                    .copied();
            }
        } else {
            for e in &mut rows.requests {
                e.baseline_us = map
                    .get(&(e.service.clone(), e.endpoint.clone(), e.method.clone()))
                    .copied();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfstream_alerts::over_threshold;

    /// The request histogram as the pipeline stores it (`Latency::hist_bytes`, two significant
    /// digits) decodes to buckets whose edges make the latency burn's share exact at a bucket
    /// top and conservative inside a bucket.
    #[test]
    fn stored_histograms_decode_to_buckets() {
        let mut l = perfstream_window::Latency::new(2);
        for v in [9_000, 10_000, 100_000, 100_300, 250_000, 250_000, 900_000] {
            l.record(v);
        }
        let b = buckets(&l.hist_bytes()).expect("decodes");
        assert_eq!(b.iter().map(|b| b.count).sum::<i64>(), 7);
        assert!(b.windows(2).all(|w| w[0].high_us < w[1].low_us), "{b:?}");
        // 100 000 and 100 300 share the bucket [99 840, 100 351] (1 % wide).
        let hundred = b
            .iter()
            .find(|b| b.low_us <= 100_000 && 100_000 <= b.high_us);
        assert_eq!(
            hundred.map(|b| (b.low_us, b.high_us, b.count)),
            Some((99_840, 100_351, 2))
        );
        // At a bucket top: exact; inside a bucket: its requests count as over, inexact.
        assert_eq!(over_threshold(&b, 100_351), (3, true));
        assert_eq!(over_threshold(&b, 100_000), (5, false));
        assert_eq!(over_threshold(&b, 1_000_000), (0, true));
        assert!(buckets(b"not a histogram").is_err());
    }
}
