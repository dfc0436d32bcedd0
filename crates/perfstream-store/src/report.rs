//! Reports for `perfstream report`: slow queries over a time range with exact percentiles
//! (the stored histograms of every window in the range merged, not an average of per-window
//! percentiles), the recommendations of the SQL rules, and Apdex per endpoint from the stored
//! histograms (Postgres cannot read the zlib-wrapped histograms, so Apdex is computed here, not
//! in a view). [`report`] gathers all three over one range `[from, to)` for `perfstream report`;
//! [`parse_time_bound`] reads its `--from` / `--to`.

use std::collections::{BTreeMap, HashMap};

use perfstream_events::TimestampUs;
use perfstream_window::{LatencyHist, Merge, QueryFigures};
use sqlx::Row;

use crate::table::{self, QueryTable, RequestTable, from_ts, to_ts};
use crate::{Store, StoreError};

/// What [`slow_query_report`] reads and keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowQueryOptions {
    /// Windows starting in `[from_us, to_us)`.
    pub from_us: TimestampUs,
    pub to_us: TimestampUs,
    /// A query is slow when its p99 or its max over the range exceeds this.
    pub threshold_ms: f64,
    pub max_rows: usize,
    /// Tier to read: `None` for the base tier, or "1h" / "1d" for ranges beyond its retention.
    pub resolution: Option<String>,
}

/// One statement of the report: all its windows (and tenants) in the range merged.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowQueryRow {
    pub service: String,
    pub query_hash: String,
    pub query_type: String,
    pub normalized_text: Option<String>,
    pub calls: u64,
    pub total_time_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub rows_per_call: f64,
}

/// One row of `generate_optimization_recommendations`: the text, and the numbers behind it
/// (docs/analysts.md lists what `observed` and `threshold` are for each kind).
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// `<service>/<target_id>` (`<service>` for a service target), e.g. `shop//checkout` for
    /// endpoint `/checkout`; `target_type` says what the id is.
    pub target: String,
    pub kind: String,
    pub severity: String,
    pub evidence: String,
    pub recommendation: String,
    /// `query`, `endpoint`, `instance` or `service`.
    pub target_type: String,
    pub service: String,
    /// The query hash, endpoint or instance; empty for a service target.
    pub target_id: String,
    /// The normalized statement of a query target, when the catalog has one.
    pub statement_text: Option<String>,
    /// What `observed` measures, compared with `threshold`, both in `unit`.
    pub metric: String,
    pub observed: f64,
    pub threshold: f64,
    pub unit: String,
    /// Events behind the finding (calls, requests, samples or lookups).
    pub calls: i64,
    /// Windows behind the finding.
    pub windows: i64,
    pub share: Option<f64>,
    /// Slope per hour and R² of the fit, for trend rules.
    pub slope_per_hour: Option<f64>,
    pub r2: Option<f64>,
    /// The windows behind the finding: start of the first, end (exclusive) of the last.
    pub first_window_start_us: TimestampUs,
    pub last_window_end_us: TimestampUs,
}

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

/// Fails on a resolution no rollup row carries (other than '1h', '1d'), which would otherwise
/// read no row and report an empty range (`perfstream_check_resolution`).
async fn check_resolution(
    conn: &mut sqlx::PgConnection,
    resolution: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT perfstream_check_resolution($1)")
        .bind(resolution)
        .execute(conn)
        .await
        .map_err(StoreError::db("checking the resolution"))?;
    Ok(())
}

/// Slow queries over a range, worst p99 first, with exact merged percentiles.
pub async fn slow_query_report(
    store: &Store,
    opts: &SlowQueryOptions,
) -> Result<Vec<SlowQueryRow>, StoreError> {
    let mut conn = store
        .pool
        .acquire()
        .await
        .map_err(StoreError::db("acquiring a connection for a report"))?;
    check_resolution(&mut conn, opts.resolution.as_deref()).await?;
    let rows = table::select_range::<QueryTable>(
        &mut conn,
        opts.resolution.as_deref(),
        opts.from_us,
        opts.to_us,
    )
    .await?;
    let mut merged: BTreeMap<(String, String, &'static str), QueryFigures> = BTreeMap::new();
    for r in rows {
        let r = r.rollup.into_owned();
        let k = r.key;
        let id = (k.service, k.query_hash, k.query_type.as_str());
        match merged.get_mut(&id) {
            Some(f) => f.merge(&r.figures),
            None => {
                merged.insert(id, r.figures);
            }
        }
    }
    let mut out: Vec<SlowQueryRow> = merged
        .into_iter()
        .filter_map(|((service, query_hash, query_type), f)| {
            let l = &f.latency;
            let p99 = ms(l.quantile_us(0.99));
            let max = ms(l.max_us);
            (l.count > 0 && (p99 > opts.threshold_ms || max > opts.threshold_ms)).then(|| {
                SlowQueryRow {
                    service,
                    query_hash,
                    query_type: query_type.to_owned(),
                    normalized_text: None,
                    calls: l.count,
                    total_time_ms: ms(l.sum_us),
                    mean_ms: l.mean_us() / 1000.0,
                    p50_ms: ms(l.quantile_us(0.50)),
                    p90_ms: ms(l.quantile_us(0.90)),
                    p95_ms: ms(l.quantile_us(0.95)),
                    p99_ms: p99,
                    p999_ms: ms(l.quantile_us(0.999)),
                    max_ms: max,
                    rows_per_call: f.rows_sum as f64 / l.count as f64,
                }
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.p99_ms
            .total_cmp(&a.p99_ms)
            .then(b.max_ms.total_cmp(&a.max_ms))
            .then_with(|| (&a.service, &a.query_hash).cmp(&(&b.service, &b.query_hash)))
    });
    out.truncate(opts.max_rows);

    let hashes: Vec<&str> = out.iter().map(|r| r.query_hash.as_str()).collect();
    let texts: HashMap<String, Option<String>> = sqlx::query(
        "SELECT query_hash, normalized_text FROM query_catalog WHERE query_hash = ANY($1)",
    )
    .bind(hashes)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db("reading the query catalog"))?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(StoreError::db("reading the query catalog"))?;
    for r in &mut out {
        r.normalized_text = texts.get(&r.query_hash).cloned().flatten();
    }
    Ok(out)
}

/// The rows of `generate_optimization_recommendations(since, resolution, until)`: critical
/// first. The rules read windows starting in `[since_us, until_us)`; `None` has no end.
pub async fn recommendations(
    store: &Store,
    since_us: TimestampUs,
    until_us: Option<TimestampUs>,
    resolution: Option<&str>,
) -> Result<Vec<Recommendation>, StoreError> {
    let rows = sqlx::query(
        "SELECT target, kind, severity, evidence, recommendation, target_type, service, \
         target_id, statement_text, metric, observed, threshold, unit, calls, windows, share, \
         slope_per_hour, r2, first_window_start, last_window_end \
         FROM generate_optimization_recommendations($1, $2, $3)",
    )
    .bind(to_ts(since_us))
    .bind(resolution)
    .bind(until_us.map(to_ts))
    .fetch_all(&store.pool)
    .await
    .map_err(StoreError::db("generating recommendations"))?;
    rows.iter()
        .map(|r| {
            let ts = |i: usize| r.try_get(i).map(from_ts);
            Ok(Recommendation {
                target: r.try_get(0)?,
                kind: r.try_get(1)?,
                severity: r.try_get(2)?,
                evidence: r.try_get(3)?,
                recommendation: r.try_get(4)?,
                target_type: r.try_get(5)?,
                service: r.try_get(6)?,
                target_id: r.try_get(7)?,
                statement_text: r.try_get(8)?,
                metric: r.try_get(9)?,
                observed: r.try_get(10)?,
                threshold: r.try_get(11)?,
                unit: r.try_get(12)?,
                calls: r.try_get(13)?,
                windows: r.try_get(14)?,
                share: r.try_get(15)?,
                slope_per_hour: r.try_get(16)?,
                r2: r.try_get(17)?,
                first_window_start_us: ts(18)?,
                last_window_end_us: ts(19)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::db("generating recommendations"))
}

/// Apdex of one endpoint (all its methods) over a range, with T from `endpoint_slas`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApdexRow {
    pub service: String,
    pub endpoint: String,
    /// T in ms: the endpoint's `endpoint_slas.p99_ms`, else the `sla_p99_ms` setting.
    pub t_ms: f64,
    pub requests: u64,
    /// Requests whose whole histogram bucket is at or below T.
    pub satisfied: u64,
    /// Requests whose whole bucket is above T and at or below 4T.
    pub tolerating: u64,
    /// `(satisfied + tolerating / 2) / requests`.
    pub apdex: f64,
    /// False when T or 4T falls inside a bucket (not at its top), so a bucket straddles the
    /// bound; its requests are then counted on the worse side, and the score is a lower bound
    /// within the histogram's precision (1 %).
    pub exact: bool,
}

/// Satisfied and tolerating counts of `hist` for T = `t_us` (4T tolerating), and whether no
/// bucket straddles T or 4T. A bucket counts on the good side of a bound only when its top is
/// at or below the bound.
pub fn apdex_counts(hist: &LatencyHist, t_us: u64) -> (u64, u64, bool) {
    let dense = hist.to_histogram();
    let (mut satisfied, mut tolerating, mut exact) = (0, 0, true);
    for (low, count) in hist.iter() {
        let high = dense.highest_equivalent(low);
        for bound in [t_us, 4 * t_us] {
            if low <= bound && bound < high {
                exact = false;
            }
        }
        if high <= t_us {
            satisfied += count;
        } else if high <= 4 * t_us {
            tolerating += count;
        }
    }
    (satisfied, tolerating, exact)
}

/// Apdex per endpoint of the request windows starting in `[from_us, to_us)` (`resolution` as
/// in [`SlowQueryOptions`]), worst first.
pub async fn apdex_report(
    store: &Store,
    from_us: TimestampUs,
    to_us: TimestampUs,
    resolution: Option<&str>,
) -> Result<Vec<ApdexRow>, StoreError> {
    let mut conn = store
        .pool
        .acquire()
        .await
        .map_err(StoreError::db("acquiring a connection for a report"))?;
    check_resolution(&mut conn, resolution).await?;
    let rows = table::select_range::<RequestTable>(&mut conn, resolution, from_us, to_us).await?;
    let mut merged: BTreeMap<(String, String), LatencyHist> = BTreeMap::new();
    for r in rows {
        let r = r.rollup.into_owned();
        let hist = &r.figures.latency.hist;
        match merged.get_mut(&(r.key.service.clone(), r.key.endpoint.clone())) {
            Some(h) => h.merge(hist),
            None => {
                merged.insert((r.key.service, r.key.endpoint), hist.clone());
            }
        }
    }
    let default_t: f64 =
        sqlx::query_scalar("SELECT value FROM recommendation_settings WHERE name = 'sla_p99_ms'")
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::db("reading the default SLA"))?;
    let slas: HashMap<(String, String), f64> =
        sqlx::query("SELECT service, endpoint, p99_ms FROM endpoint_slas")
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::db("reading endpoint SLAs"))?
            .iter()
            .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::db("reading endpoint SLAs"))?;
    let mut out: Vec<ApdexRow> = merged
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|((service, endpoint), h)| {
            let t_ms = slas
                .get(&(service.clone(), endpoint.clone()))
                .copied()
                .unwrap_or(default_t);
            let (satisfied, tolerating, exact) = apdex_counts(&h, (t_ms * 1000.0).round() as u64);
            let requests = h.len();
            ApdexRow {
                service,
                endpoint,
                t_ms,
                requests,
                satisfied,
                tolerating,
                apdex: (satisfied as f64 + tolerating as f64 / 2.0) / requests as f64,
                exact,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        a.apdex
            .total_cmp(&b.apdex)
            .then_with(|| (&a.service, &a.endpoint).cmp(&(&b.service, &b.endpoint)))
    });
    Ok(out)
}

/// Everything `perfstream report` prints, over windows starting in `[from_us, to_us)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub from_us: TimestampUs,
    pub to_us: TimestampUs,
    pub threshold_ms: f64,
    pub slow_queries: Vec<SlowQueryRow>,
    pub recommendations: Vec<Recommendation>,
    pub apdex: Vec<ApdexRow>,
}

/// Slow queries, recommendations and Apdex per endpoint over the range of `opts`, every part
/// bounded the same way (windows starting in `[from_us, to_us)`, the same resolution).
pub async fn report(store: &Store, opts: &SlowQueryOptions) -> Result<Report, StoreError> {
    if opts.from_us >= opts.to_us {
        return Err(StoreError::InvalidRange {
            from_us: opts.from_us,
            to_us: opts.to_us,
        });
    }
    let resolution = opts.resolution.as_deref();
    Ok(Report {
        from_us: opts.from_us,
        to_us: opts.to_us,
        threshold_ms: opts.threshold_ms,
        slow_queries: slow_query_report(store, opts).await?,
        recommendations: recommendations(store, opts.from_us, Some(opts.to_us), resolution).await?,
        apdex: apdex_report(store, opts.from_us, opts.to_us, resolution).await?,
    })
}

impl Report {
    /// The three tables under headings that name the range (UTC, RFC 3339).
    pub fn render(&self) -> String {
        let ts = |us| to_ts(us).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let range = format!(
            "windows starting in [{}, {})",
            ts(self.from_us),
            ts(self.to_us)
        );
        format!(
            "Slow queries (p99 or max over {} ms), {range}:\n{}\n\
             Recommendations, {range}:\n{}\n\
             Apdex per endpoint, {range}:\n{}",
            self.threshold_ms,
            render_slow_queries(&self.slow_queries),
            render_recommendations(&self.recommendations),
            render_apdex(&self.apdex),
        )
    }
}

/// Reads a bound of `perfstream report --from` / `--to`: an RFC 3339 time
/// (`2026-11-30T12:00:00Z`, `2026-11-30T13:00:00+01:00`), `now`, or a time relative to
/// `now_us`: a minus sign and a duration in whole `s`, `m`, `h`, `d` or `w` (`-90m`, `-1h`,
/// `-7d`). Relative times are always in the past; a bare duration without the sign is refused,
/// so `--from 1h` cannot be read as a point in the future by mistake.
pub fn parse_time_bound(s: &str, now_us: TimestampUs) -> Result<TimestampUs, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_us);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
        let (n, unit) = rel.split_at(split);
        let unit_us: i64 = match unit {
            "s" => 1_000_000,
            "m" => 60_000_000,
            "h" => 3_600_000_000,
            "d" => 86_400_000_000,
            "w" => 604_800_000_000,
            _ => {
                return Err(format!(
                    "{s:?}: a relative time is a minus sign, a whole number and one of s, m, h, d, w (-90m, -1h, -7d)"
                ));
            }
        };
        let n: i64 = n
            .parse()
            .map_err(|_| format!("{s:?}: expected a whole number before {unit:?}"))?;
        return n
            .checked_mul(unit_us)
            .and_then(|d| now_us.checked_sub(d))
            .ok_or_else(|| format!("{s:?} is too far back"));
    }
    if s.ends_with(['s', 'm', 'h', 'd', 'w']) && s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{s:?}: a relative time is in the past and starts with a minus sign: -{s}"
        ));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            format!("{s:?}: expected RFC 3339 (2026-11-30T12:00:00Z), `now` or a relative time (-1h): {e}")
        })
}

/// A plain-text table of Apdex per endpoint, for a terminal.
pub fn render_apdex(rows: &[ApdexRow]) -> String {
    let mut t = vec![
        [
            "service",
            "endpoint",
            "apdex",
            "T ms",
            "requests",
            "satisfied",
            "tolerating",
            "exact",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        t.push(vec![
            r.service.clone(),
            r.endpoint.clone(),
            format!("{:.3}", r.apdex),
            format!("{}", r.t_ms),
            r.requests.to_string(),
            r.satisfied.to_string(),
            r.tolerating.to_string(),
            if r.exact { "yes" } else { "lower bound" }.to_owned(),
        ]);
    }
    render(&t)
}

/// A plain-text table of the slow queries, for a terminal.
pub fn render_slow_queries(rows: &[SlowQueryRow]) -> String {
    let mut t = vec![
        [
            "service",
            "query_hash",
            "type",
            "calls",
            "total_ms",
            "mean_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "rows/call",
            "text",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in rows {
        let f = |v: f64| format!("{v:.1}");
        t.push(vec![
            r.service.clone(),
            r.query_hash.clone(),
            r.query_type.clone(),
            r.calls.to_string(),
            f(r.total_time_ms),
            f(r.mean_ms),
            f(r.p50_ms),
            f(r.p95_ms),
            f(r.p99_ms),
            f(r.p999_ms),
            f(r.max_ms),
            f(r.rows_per_call),
            r.normalized_text.clone().unwrap_or_default(),
        ]);
    }
    render(&t)
}

/// A plain-text table of recommendations, for a terminal: the finding's numbers beside its
/// text.
pub fn render_recommendations(rows: &[Recommendation]) -> String {
    let mut t = vec![
        [
            "severity",
            "kind",
            "target",
            "observed",
            "threshold",
            "calls",
            "windows",
            "evidence",
            "recommendation",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in rows {
        let f = |v: f64| format!("{v:.3} {}", r.unit);
        t.push(vec![
            r.severity.clone(),
            r.kind.clone(),
            r.target.clone(),
            f(r.observed),
            f(r.threshold),
            r.calls.to_string(),
            r.windows.to_string(),
            r.evidence.clone(),
            r.recommendation.clone(),
        ]);
    }
    render(&t)
}

fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: TimestampUs = 1_796_126_400_000_000; // 2026-12-01T12:00:00Z

    #[test]
    fn time_bounds_are_rfc3339_now_or_relative_to_now() {
        let p = |s| parse_time_bound(s, NOW);
        assert_eq!(p("now"), Ok(NOW));
        assert_eq!(p("-1h"), Ok(NOW - 3_600_000_000));
        assert_eq!(p("-90m"), Ok(NOW - 5_400_000_000));
        assert_eq!(p("-7d"), Ok(NOW - 7 * 86_400_000_000));
        assert_eq!(p("-2w"), Ok(NOW - 14 * 86_400_000_000));
        assert_eq!(p("-30s"), Ok(NOW - 30_000_000));
        assert_eq!(p("2026-12-01T12:00:00Z"), Ok(NOW));
        assert_eq!(p("2026-12-01T13:00:00+01:00"), Ok(NOW));
        assert_eq!(p("2026-12-01T11:59:59.5Z"), Ok(NOW - 500_000));
        assert!(p("1h").unwrap_err().contains("-1h"), "{:?}", p("1h"));
        for bad in [
            "1h",
            "-1",
            "-h",
            "-1.5h",
            "-1y",
            "yesterday",
            "2026-12-01",
            "-99999999999999w",
        ] {
            assert!(p(bad).is_err(), "{bad} accepted: {:?}", p(bad));
        }
    }
}
