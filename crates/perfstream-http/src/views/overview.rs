//! The overview: events/s by kind, 5xx rate, active alerts by severity, the services with the
//! worst p99 and their trend, and every service of the range for the drill-down.
//!
//! Parameters of every statement: `$1` start and `$2` end (Unix seconds), `$3` the resolutions
//! read (the base windows' labels, or `{1h}`, or `{1d}`), `$4` bucket size in seconds (see
//! `range.rs`). `resolution = ANY($3)` keeps the primary key (resolution, window_start, ...)
//! usable for a time range over all services: `resolution NOT IN ('1h', '1d')` would not be
//! (95 ms against 17 ms for an hour of 50 services). Percentiles of a bucket are
//! its worst window's (never averaged: `docs/analysts.md`); rates divide a bucket's count by
//! the time its windows cover.

use super::Chart;

pub const CHARTS: &[Chart] = &[
    Chart {
        id: "events",
        sql: r#"WITH b AS (
  SELECT 'requests' AS kind, date_bin(make_interval(secs => $4), r.window_start, TIMESTAMPTZ 'epoch') AS t,
         sum(r.count)::float8 / extract(epoch FROM max(r.window_end) - min(r.window_start))::float8 AS v
  FROM request_rollups r
  WHERE r.resolution = ANY($3)
    AND r.window_start >= to_timestamp($1) AND r.window_start < to_timestamp($2)
  GROUP BY 2
  UNION ALL
  SELECT 'queries', date_bin(make_interval(secs => $4), q.window_start, TIMESTAMPTZ 'epoch'),
         sum(q.count)::float8 / extract(epoch FROM max(q.window_end) - min(q.window_start))::float8
  FROM query_rollups q
  WHERE q.resolution = ANY($3)
    AND q.window_start >= to_timestamp($1) AND q.window_start < to_timestamp($2)
  GROUP BY 2
  UNION ALL
  SELECT 'resource samples', date_bin(make_interval(secs => $4), s.window_start, TIMESTAMPTZ 'epoch'),
         sum(s.samples)::float8 / extract(epoch FROM max(s.window_end) - min(s.window_start))::float8
  FROM resource_rollups s
  WHERE s.resolution = ANY($3)
    AND s.window_start >= to_timestamp($1) AND s.window_start < to_timestamp($2)
  GROUP BY 2
)
SELECT COALESCE(json_agg(json_build_object('name', kind, 'points', points) ORDER BY kind), '[]')::text
FROM (SELECT kind, json_agg(json_build_array(extract(epoch FROM t), round(v::numeric, 3)) ORDER BY t) AS points
      FROM b GROUP BY kind) k"#,
    },
    Chart {
        id: "error_rate",
        sql: r#"SELECT COALESCE(json_agg(json_build_object('name', '5xx rate', 'points', points)), '[]')::text
FROM (SELECT json_agg(json_build_array(extract(epoch FROM t), v) ORDER BY t) AS points
      FROM (SELECT date_bin(make_interval(secs => $4), r.window_start, TIMESTAMPTZ 'epoch') AS t,
                   sum(r.status_5xx)::float8 / sum(r.count) AS v
            FROM request_rollups r
            WHERE r.resolution = ANY($3)
              AND r.window_start >= to_timestamp($1) AND r.window_start < to_timestamp($2)
            GROUP BY 1) b
      HAVING count(*) > 0) p"#,
    },
    Chart {
        id: "alerts",
        // A firing row lasts until the next firing row of its alert (an escalation to
        // critical, issue 15) or its resolution, so an escalated alert counts once at a time.
        sql: r#"WITH episodes AS (
  SELECT f.severity, f.window_start AS since, COALESCE(x.next_since, r.until) AS until
  FROM alerts f
  LEFT JOIN LATERAL (SELECT min(n.window_start) AS next_since FROM alerts n
                     WHERE n.alert_id = f.alert_id AND n.state = 'firing' AND n.window_start > f.window_start) x ON true
  LEFT JOIN LATERAL (SELECT min(r.window_start) AS until FROM alerts r
                     WHERE r.alert_id = f.alert_id AND r.state = 'resolved') r ON true
  WHERE f.state = 'firing' AND f.window_start < to_timestamp($2)
),
buckets AS (
  SELECT generate_series(date_bin(make_interval(secs => $4), to_timestamp($1), TIMESTAMPTZ 'epoch'),
                         to_timestamp($2), make_interval(secs => $4)) AS t
)
SELECT json_agg(json_build_object('name', sev, 'points',
         (SELECT json_agg(json_build_array(extract(epoch FROM b.t),
                   (SELECT count(*) FROM episodes e
                    WHERE e.severity = sev AND e.since < b.t + make_interval(secs => $4)
                      AND (e.until IS NULL OR e.until > b.t))) ORDER BY b.t)
          FROM buckets b)) ORDER BY ord)::text
FROM unnest(ARRAY['critical', 'warning', 'info']) WITH ORDINALITY AS s(sev, ord)"#,
    },
    Chart {
        id: "top_services",
        sql: r#"WITH b AS (
  SELECT r.service, date_bin(make_interval(secs => $4), r.window_start, TIMESTAMPTZ 'epoch') AS t,
         max(r.p99_us) / 1000.0 AS p99_ms
  FROM request_rollups r
  WHERE r.resolution = ANY($3)
    AND r.window_start >= to_timestamp($1) AND r.window_start < to_timestamp($2)
  GROUP BY 1, 2
),
top AS (SELECT service, max(p99_ms) AS worst FROM b GROUP BY service ORDER BY worst DESC, service LIMIT 8)
SELECT COALESCE(json_agg(json_build_object('name', t.service, 'worst_p99_ms', t.worst, 'points',
         (SELECT json_agg(json_build_array(extract(epoch FROM b.t), b.p99_ms) ORDER BY b.t)
          FROM b WHERE b.service = t.service)) ORDER BY t.worst DESC, t.service), '[]')::text
FROM top t"#,
    },
    Chart {
        id: "services",
        sql: r#"WITH rq AS (
  SELECT r.service, sum(r.count)::bigint AS requests, max(r.p99_us) / 1000.0 AS worst_p99_ms,
         sum(r.status_5xx)::float8 / sum(r.count) AS error_rate
  FROM request_rollups r
  WHERE r.resolution = ANY($3)
    AND r.window_start >= to_timestamp($1) AND r.window_start < to_timestamp($2)
  GROUP BY 1
), qy AS (
  SELECT q.service, sum(q.count)::bigint AS queries, max(q.p99_us) / 1000.0 AS worst_query_p99_ms
  FROM query_rollups q
  WHERE q.resolution = ANY($3)
    AND q.window_start >= to_timestamp($1) AND q.window_start < to_timestamp($2)
  GROUP BY 1
), rs AS (
  SELECT s.service, count(DISTINCT s.instance) AS instances,
         max(s.cpu_ppm_max) / 1e4 AS cpu_max_pct,
         max(s.memory_utilization_ppm_max) / 1e4 AS memory_max_pct
  FROM resource_rollups s
  WHERE s.resolution = ANY($3)
    AND s.window_start >= to_timestamp($1) AND s.window_start < to_timestamp($2)
  GROUP BY 1
)
SELECT COALESCE(json_agg(x ORDER BY x.worst_p99_ms DESC NULLS LAST, x.service), '[]')::text FROM (
  SELECT service, rq.requests, rq.worst_p99_ms, rq.error_rate, qy.queries, qy.worst_query_p99_ms,
         rs.instances, rs.cpu_max_pct, rs.memory_max_pct
  FROM rq FULL JOIN qy USING (service) FULL JOIN rs USING (service)
) x"#,
    },
];
