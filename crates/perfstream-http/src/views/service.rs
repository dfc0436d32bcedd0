//! One service: its endpoints, statements and instances over time (the drill-down).
//!
//! Parameters: `$1`..`$4` as in `overview.rs`, `$5` the service. Each series carries its
//! points as `[t, v1, v2, ...]` rows, so one answer feeds several charts (p99 by endpoint, and
//! p50/p95/p99, throughput and 5xx rate of the endpoint picked).

use super::Chart;

pub const CHARTS: &[Chart] = &[
    Chart {
        id: "endpoints",
        // points: [t, p50 ms, p95 ms, p99 ms, requests/s, 5xx rate]
        sql: r#"WITH b AS (
  SELECT r.endpoint, r.method, date_bin(make_interval(secs => $4), r.window_start, TIMESTAMPTZ 'epoch') AS t,
         max(r.p50_us) / 1000.0 AS p50_ms, max(r.p95_us) / 1000.0 AS p95_ms, max(r.p99_us) / 1000.0 AS p99_ms,
         round((sum(r.count)::float8 / extract(epoch FROM max(r.window_end) - min(r.window_start))::float8)::numeric, 3) AS rps,
         sum(r.status_5xx)::float8 / sum(r.count) AS error_rate,
         sum(r.count)::bigint AS n
  FROM request_rollups r
  WHERE r.service = $5
    AND r.resolution = ANY($3)
    AND r.window_start >= to_timestamp($1) AND r.window_start < to_timestamp($2)
  GROUP BY 1, 2, 3
),
top AS (
  SELECT endpoint, method, max(p99_ms) AS worst_p99_ms, sum(n) AS requests
  FROM b GROUP BY 1, 2 ORDER BY worst_p99_ms DESC, endpoint, method LIMIT 12
)
SELECT COALESCE(json_agg(json_build_object(
         'name', t.method || ' ' || t.endpoint, 'endpoint', t.endpoint, 'method', t.method,
         'worst_p99_ms', t.worst_p99_ms, 'requests', t.requests,
         'sla_statistic', sla.statistic, 'sla_ms', sla.threshold_ms, 'sla_source', sla.source,
         'points', (SELECT json_agg(json_build_array(extract(epoch FROM b.t), b.p50_ms, b.p95_ms, b.p99_ms, b.rps, b.error_rate) ORDER BY b.t)
                    FROM b WHERE b.endpoint = t.endpoint AND b.method = t.method))
       ORDER BY t.worst_p99_ms DESC, t.endpoint, t.method), '[]')::text
FROM top t
-- The endpoint's SLA (endpoint_slas, else the config's default): the line on its latency chart.
LEFT JOIN LATERAL perfstream_endpoint_sla($5, t.endpoint) sla ON true"#,
    },
    Chart {
        id: "queries",
        // points: [t, p99 ms, calls/s, rows per call]
        sql: r#"WITH b AS (
  SELECT q.query_hash, q.query_type, date_bin(make_interval(secs => $4), q.window_start, TIMESTAMPTZ 'epoch') AS t,
         max(q.p99_us) / 1000.0 AS p99_ms,
         round((sum(q.count)::float8 / extract(epoch FROM max(q.window_end) - min(q.window_start))::float8)::numeric, 3) AS calls_per_s,
         round((sum(q.rows_sum)::float8 / sum(q.count))::numeric, 2) AS rows_per_call,
         sum(q.count)::bigint AS calls, sum(q.sum_us) AS time_us
  FROM query_rollups q
  WHERE q.service = $5
    AND q.resolution = ANY($3)
    AND q.window_start >= to_timestamp($1) AND q.window_start < to_timestamp($2)
  GROUP BY 1, 2, 3
),
top AS (
  SELECT query_hash, query_type, max(p99_ms) AS worst_p99_ms, sum(calls) AS calls,
         sum(time_us) / 1000.0 AS total_time_ms
  FROM b GROUP BY 1, 2 ORDER BY total_time_ms DESC, query_hash, query_type LIMIT 10
)
SELECT COALESCE(json_agg(json_build_object(
         'name', t.query_type || ' ' || t.query_hash, 'query_hash', t.query_hash, 'query_type', t.query_type,
         'normalized_text', c.normalized_text, 'worst_p99_ms', t.worst_p99_ms, 'calls', t.calls,
         'total_time_ms', t.total_time_ms,
         'points', (SELECT json_agg(json_build_array(extract(epoch FROM b.t), b.p99_ms, b.calls_per_s, b.rows_per_call) ORDER BY b.t)
                    FROM b WHERE b.query_hash = t.query_hash AND b.query_type = t.query_type))
       ORDER BY t.total_time_ms DESC, t.query_hash, t.query_type), '[]')::text
FROM top t LEFT JOIN query_catalog c ON c.query_hash = t.query_hash"#,
    },
    Chart {
        id: "instances",
        // points: [t, cpu %, memory %, heap MiB, GC pause max ms, pool %, waiters max,
        //          pool wait ms per sample, cache hit %]
        sql: r#"WITH b AS (
  SELECT s.instance, date_bin(make_interval(secs => $4), s.window_start, TIMESTAMPTZ 'epoch') AS t,
         round((sum(s.cpu_ppm_sum)::float8 / NULLIF(sum(s.cpu_ppm_samples), 0) / 1e4)::numeric, 2) AS cpu_pct,
         max(s.memory_utilization_ppm_max) / 1e4 AS memory_pct,
         round((max(s.heap_bytes_max) / 1048576.0)::numeric, 1) AS heap_mib,
         max(s.gc_pause_us_max) / 1000.0 AS gc_pause_max_ms,
         max(s.pool_utilization_ppm_max) / 1e4 AS pool_pct,
         max(s.pool_waiters_max) AS waiters_max,
         round((sum(s.pool_wait_us_sum)::float8 / NULLIF(sum(s.pool_wait_us_samples), 0) / 1000.0)::numeric, 3) AS pool_wait_ms,
         round((100.0 * sum(s.cache_hits) / NULLIF(sum(s.cache_hits) + sum(s.cache_misses), 0))::numeric, 2) AS cache_hit_pct
  FROM resource_rollups s
  WHERE s.service = $5
    AND s.resolution = ANY($3)
    AND s.window_start >= to_timestamp($1) AND s.window_start < to_timestamp($2)
  GROUP BY 1, 2
),
top AS (SELECT instance FROM b GROUP BY 1 ORDER BY max(cpu_pct) DESC NULLS LAST, instance LIMIT 8)
SELECT COALESCE(json_agg(json_build_object('name', t.instance,
         'points', (SELECT json_agg(json_build_array(extract(epoch FROM b.t), b.cpu_pct, b.memory_pct, b.heap_mib,
                            b.gc_pause_max_ms, b.pool_pct, b.waiters_max, b.pool_wait_ms, b.cache_hit_pct) ORDER BY b.t)
                    FROM b WHERE b.instance = t.instance))
       ORDER BY t.instance), '[]')::text
FROM top t"#,
    },
    Chart {
        id: "query_samples",
        // The slowest individual statements of the range, when the pipeline stores samples
        // (table query_samples, issue 14); without the table the handler answers [].
        sql: r#"SELECT COALESCE(json_agg(x ORDER BY x.execution_time_ms DESC, x.event_time), '[]')::text FROM (
  SELECT q.query_hash, q.query_type, q.instance, q.event_time,
         q.execution_time_us / 1000.0 AS execution_time_ms, q.rows_affected, q.query_text, q.trace_id
  FROM query_samples q
  WHERE q.service = $5
    AND q.resolution = ANY($3)
    AND q.window_start >= to_timestamp($1) AND q.window_start < to_timestamp($2)
  ORDER BY q.execution_time_us DESC
  LIMIT 20
) x"#,
    },
];
