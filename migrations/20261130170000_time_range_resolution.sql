-- Issue 14, section 5 (part): an unknown resolution is an error, not an empty result, and
-- get_slow_queries takes an end bound.
--
-- A resolution is known when it is NULL (the base tier, whatever its window size), a tier
-- ('1h', '1d'), or a label that some rollup row carries (e.g. '10s' in the demo, '1m' with the
-- default windows). Anything else ('1m' when the windows are 10 s, 'hourly', '60m') used to
-- select no row and return an empty result that looked like "nothing is slow".

CREATE FUNCTION perfstream_check_resolution(p_resolution text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_resolution IS NULL OR p_resolution IN ('1h', '1d')
       OR EXISTS (SELECT 1 FROM query_rollups WHERE resolution = p_resolution)
       OR EXISTS (SELECT 1 FROM request_rollups WHERE resolution = p_resolution)
       OR EXISTS (SELECT 1 FROM resource_rollups WHERE resolution = p_resolution) THEN
        RETURN p_resolution;
    END IF;
    RAISE EXCEPTION 'unknown resolution "%"', p_resolution
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Pass NULL for the base tier (labelled by the window size, e.g. 10s or 1m), ''1h'' or ''1d''.';
END $$;

-- The statement of get_slow_queries (20261130160000), with windows starting in
-- [since, until) (until NULL: no end) for both the rollups and the samples.
CREATE FUNCTION perfstream_slow_queries(
    since        timestamptz,
    until        timestamptz,
    threshold_ms double precision,
    max_rows     integer,
    p_resolution text
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
        WHERE q.window_start >= since AND (until IS NULL OR q.window_start < until)
          AND perfstream_tier_matches(q.resolution, p_resolution)
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
          AND (until IS NULL OR x.window_start < until)
        ORDER BY x.execution_time_us DESC, x.event_time, x.source_topic, x.source_partition,
                 x.source_offset
        LIMIT 1
    ) smp ON true
    ORDER BY g.worst_p99_ms DESC, g.max_ms DESC, g.service, g.query_hash, g.query_type
$$;

-- The public function checks its resolution, then runs the statement above as a dynamic
-- statement so it is still inlined and planned with the actual bounds. `until` comes last so
-- every existing call keeps working; pass it by name: get_slow_queries(since => .., until => ..).
DROP FUNCTION get_slow_queries(timestamptz, double precision, integer, text);
CREATE FUNCTION get_slow_queries(
    since        timestamptz,
    threshold_ms double precision DEFAULT 1000,
    max_rows     integer DEFAULT 50,
    resolution   text DEFAULT NULL,
    until        timestamptz DEFAULT NULL
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
    sample_ms          double precision,
    sample_trace_id    text,
    sample_executed_at timestamptz,
    sample_instance    text,
    sample_query_text  text,
    sample_topic       text,
    sample_partition   integer,
    sample_offset      bigint
)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM perfstream_check_resolution(get_slow_queries.resolution);
    RETURN QUERY EXECUTE 'SELECT * FROM perfstream_slow_queries($1, $2, $3, $4, $5)'
        USING since, until, threshold_ms, max_rows, get_slow_queries.resolution;
END $$;

-- Same signature and statement as 20261130140000, with the resolution checked first.
CREATE OR REPLACE FUNCTION generate_optimization_recommendations(
    since      timestamptz,
    resolution text DEFAULT NULL
) RETURNS TABLE (
    target             text,
    kind               text,
    severity           text,
    evidence           text,
    recommendation     text,
    target_type        text,
    service            text,
    target_id          text,
    statement_text     text,
    metric             text,
    observed           double precision,
    threshold          double precision,
    unit               text,
    calls              bigint,
    windows            bigint,
    share              double precision,
    slope_per_hour     double precision,
    r2                 double precision,
    first_window_start timestamptz,
    last_window_end    timestamptz
)
LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    PERFORM perfstream_check_resolution(generate_optimization_recommendations.resolution);
    RETURN QUERY EXECUTE 'SELECT * FROM perfstream_recommendations($1, $2)'
        USING since, generate_optimization_recommendations.resolution;
END $$;
