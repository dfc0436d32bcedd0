-- Issue 14, section 1: samples are written with every flush (query_samples, request_samples).
-- A reported percentile is the highest value of its HDR bucket, which can lie above the largest
-- value recorded (by at most the histogram's precision). get_slow_queries reports each
-- percentile at most the window's exact max, so the slowest sample behind a row (the window's
-- max, kept first) is always at or above the p99 it reports.

CREATE OR REPLACE FUNCTION get_slow_queries(
    since        timestamptz,
    threshold_ms double precision DEFAULT 1000,
    max_rows     integer DEFAULT 50,
    resolution   text DEFAULT NULL
) RETURNS TABLE (
    service            text,
    query_hash         text,
    query_type         text,
    normalized_text    text,
    calls              bigint,
    total_time_ms      double precision,
    mean_ms            double precision,
    worst_p50_ms       double precision,
    worst_p95_ms       double precision,
    worst_p99_ms       double precision,
    max_ms             double precision,
    rows_per_call      double precision,
    first_window       timestamptz,
    last_window        timestamptz,
    -- the slowest sample kept for the statement since `since` (any resolution)
    sample_ms          double precision,
    sample_trace_id    text,
    sample_executed_at timestamptz,
    sample_instance    text,
    sample_query_text  text,
    sample_topic       text,
    sample_partition   integer,
    sample_offset      bigint
)
LANGUAGE sql STABLE AS $$
    SELECT g.*, smp.execution_time_us / 1000.0, smp.trace_id, smp.event_time,
           smp.instance, smp.query_text, smp.source_topic, smp.source_partition, smp.source_offset
    FROM (
        SELECT q.service, q.query_hash, q.query_type, c.normalized_text,
               sum(q.count)::bigint AS calls,
               sum(q.sum_us) / 1000.0 AS total_time_ms,
               sum(q.sum_us)::double precision / sum(q.count) / 1000.0 AS mean_ms,
               max(least(q.p50_us, q.max_us)) / 1000.0 AS worst_p50_ms,
               max(least(q.p95_us, q.max_us)) / 1000.0 AS worst_p95_ms,
               max(least(q.p99_us, q.max_us)) / 1000.0 AS worst_p99_ms,
               max(q.max_us) / 1000.0 AS max_ms,
               sum(q.rows_sum)::double precision / sum(q.count) AS rows_per_call,
               min(q.window_start) AS first_window, max(q.window_end) AS last_window
        FROM query_rollups q
        LEFT JOIN query_catalog c ON c.query_hash = q.query_hash
        WHERE q.window_start >= since
          AND perfstream_tier_matches(q.resolution, get_slow_queries.resolution)
        GROUP BY q.service, q.query_hash, q.query_type, c.normalized_text
        HAVING max(least(q.p99_us, q.max_us)) / 1000.0 > threshold_ms OR max(q.max_us) / 1000.0 > threshold_ms
        ORDER BY max(least(q.p99_us, q.max_us)) DESC, max(q.max_us) DESC, q.service, q.query_hash, q.query_type
        LIMIT max_rows
    ) g
    LEFT JOIN LATERAL (
        SELECT x.execution_time_us, x.trace_id, x.event_time, x.instance, x.query_text,
               x.source_topic, x.source_partition, x.source_offset
        FROM query_samples x
        WHERE x.service = g.service AND x.query_hash = g.query_hash
          AND x.query_type = g.query_type AND x.window_start >= since
        ORDER BY x.execution_time_us DESC, x.event_time, x.source_topic, x.source_partition,
                 x.source_offset
        LIMIT 1
    ) smp ON true
    ORDER BY g.worst_p99_ms DESC, g.max_ms DESC, g.service, g.query_hash, g.query_type
$$;
