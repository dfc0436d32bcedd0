//! Slow queries and recommendations over the range, from the analyst functions
//! (`get_slow_queries`, `generate_optimization_recommendations`) at the range's tier, and the
//! p99 trend of the slowest statements of every service.
//!
//! Parameters as in `overview.rs`. The functions take a start only: the lists cover the
//! range's start until now, also for a custom range that ends earlier.

use super::Chart;

pub const CHARTS: &[Chart] = &[
    Chart {
        id: "slow_trend",
        // points: [t, p99 ms]
        sql: r#"WITH top AS (
  SELECT q.service, q.query_hash, q.query_type, max(q.p99_us) AS worst
  FROM query_rollups q
  WHERE q.resolution = ANY($3)
    AND q.window_start >= to_timestamp($1) AND q.window_start < to_timestamp($2)
  GROUP BY 1, 2, 3 ORDER BY worst DESC, 1, 2, 3 LIMIT 8
)
SELECT COALESCE(json_agg(json_build_object(
         'name', t.service || ' ' || t.query_type || ' ' || t.query_hash, 'service', t.service,
         'worst_p99_ms', t.worst / 1000.0,
         'points', (SELECT json_agg(json_build_array(extract(epoch FROM b.t), b.p99_ms) ORDER BY b.t) FROM (
                      SELECT date_bin(make_interval(secs => $4), q.window_start, TIMESTAMPTZ 'epoch') AS t,
                             max(q.p99_us) / 1000.0 AS p99_ms
                      FROM query_rollups q
                      WHERE q.service = t.service AND q.query_hash = t.query_hash AND q.query_type = t.query_type
                        AND q.resolution = ANY($3)
                        AND q.window_start >= to_timestamp($1) AND q.window_start < to_timestamp($2)
                      GROUP BY 1) b))
       ORDER BY t.worst DESC, t.service, t.query_hash), '[]')::text
FROM top t"#,
    },
    Chart {
        id: "slow_queries",
        sql: r#"SELECT COALESCE(json_agg(s ORDER BY s.worst_p99_ms DESC, s.max_ms DESC, s.service, s.query_hash,
                         s.query_type), '[]')::text
FROM get_slow_queries(to_timestamp($1), 1000, 50, CASE WHEN $3 = ARRAY['1h'] THEN '1h' WHEN $3 = ARRAY['1d'] THEN '1d' END) AS s"#,
    },
    Chart {
        id: "recommendations",
        sql: r#"SELECT COALESCE(json_agg(r ORDER BY r.severity, r.kind, r.target), '[]')::text
FROM generate_optimization_recommendations(to_timestamp($1), CASE WHEN $3 = ARRAY['1h'] THEN '1h' WHEN $3 = ARRAY['1d'] THEN '1d' END) AS r"#,
    },
];
