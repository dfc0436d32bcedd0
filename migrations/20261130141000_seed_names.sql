-- The seed's names, as a compatibility layer (issue 14, section 2), over two new tables of
-- samples (exemplars): the slowest events of each window and key, with their raw fields and
-- their Kafka position. See docs/analysts.md, "The seed's names" and "Samples".
--
-- The samples are written by the pipeline's flush, in the same transaction as the rollups they
-- belong to (issue 14, section 1), and deleted by the retention job with the same cutoffs as
-- the rollups of their resolution. Key columns mirror the rollup keys (query_rollups,
-- request_rollups) and compare bytewise (COLLATE "C"), like them.

-- The k slowest queries of a window and key (k configurable, default 5).
CREATE TABLE query_samples (
    resolution        text COLLATE "C" NOT NULL CHECK (resolution ~ '^[1-9][0-9]*(ms|s|m|h|d)$'),
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL CHECK (window_end > window_start),
    -- The query_rollups key the sample belongs to.
    service           text COLLATE "C" NOT NULL,
    query_hash        text COLLATE "C" NOT NULL,
    query_type        text COLLATE "C" NOT NULL
        CHECK (query_type IN ('select', 'insert', 'update', 'delete', 'other')),
    tenant_id         text COLLATE "C" NOT NULL DEFAULT '',
    -- Where the event was read: identifies it, so a replay writes the same row again.
    source_topic      text COLLATE "C" NOT NULL,
    source_partition  integer NOT NULL CHECK (source_partition >= 0),
    source_offset     bigint  NOT NULL CHECK (source_offset >= 0),
    -- 1 = the slowest of its window and key.
    rank              smallint NOT NULL CHECK (rank >= 1),
    execution_time_us bigint  NOT NULL CHECK (execution_time_us >= 0),
    rows_affected     bigint  NOT NULL,
    instance          text NOT NULL,
    -- As sent by the producer, NULL when it sent none.
    query_text        text,
    -- The event's executed_at.
    event_time        timestamptz NOT NULL,
    trace_id          text,
    PRIMARY KEY (resolution, window_start, service, query_hash, query_type, tenant_id,
                 source_topic, source_partition, source_offset)
);
CREATE INDEX query_samples_statement_time ON query_samples (service, query_hash, window_start);

-- The k slowest requests of a window and key.
CREATE TABLE request_samples (
    resolution        text COLLATE "C" NOT NULL CHECK (resolution ~ '^[1-9][0-9]*(ms|s|m|h|d)$'),
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL CHECK (window_end > window_start),
    -- The request_rollups key the sample belongs to.
    service           text COLLATE "C" NOT NULL,
    endpoint          text COLLATE "C" NOT NULL,
    method            text COLLATE "C" NOT NULL,
    source_topic      text COLLATE "C" NOT NULL,
    source_partition  integer NOT NULL CHECK (source_partition >= 0),
    source_offset     bigint  NOT NULL CHECK (source_offset >= 0),
    rank              smallint NOT NULL CHECK (rank >= 1),
    response_time_us  bigint  NOT NULL CHECK (response_time_us >= 0),
    status_code       integer NOT NULL,
    request_bytes     bigint,
    response_bytes    bigint,
    instance          text NOT NULL,
    -- The event's occurred_at.
    event_time        timestamptz NOT NULL,
    trace_id          text,
    PRIMARY KEY (resolution, window_start, service, endpoint, method,
                 source_topic, source_partition, source_offset)
);
CREATE INDEX request_samples_endpoint_time ON request_samples (service, endpoint, window_start);

-- The seed's table of individual executions, with its column names and units, over the
-- samples of the base tier (each execution once). Only the k slowest executions of each window
-- and statement are kept, not every execution.
CREATE VIEW query_performance_metrics AS
SELECT md5(s.source_topic || '/' || s.source_partition || '/' || s.source_offset)::uuid AS id,
       s.query_hash,
       s.query_type,
       round(s.execution_time_us / 1000.0, 3) AS execution_time_ms,
       s.rows_affected,
       NULLIF(s.tenant_id, '') AS campaign_id,
       s.event_time AS executed_at,
       -- perfstream's own columns
       s.service, s.instance, s.query_text, s.trace_id, s.rank,
       s.resolution, s.window_start, s.window_end,
       s.source_topic, s.source_partition, s.source_offset
FROM query_samples s
WHERE s.resolution NOT IN ('1h', '1d');

-- The seed's connection-pool and database figures: one row per service and window (every
-- resolution; filter on it), the pool gauges of its instances added up and its query figures.
-- The aggregation is over a UNION ALL so that filters on resolution, recorded_at and service
-- reach both tables' indexes.
CREATE VIEW database_performance_metrics AS
SELECT md5(u.resolution || '/' || (extract(epoch FROM u.window_start) * 1000000)::bigint
           || '/' || u.service)::uuid AS id,
       u.service,
       u.resolution,
       u.window_start AS recorded_at,
       max(u.window_end) AS window_end,
       count(*) FILTER (WHERE u.is_pool) AS instances,
       sum(u.pool_active_mean) AS active_connections,
       sum(u.pool_max_mean) - sum(u.pool_active_mean) AS idle_connections,
       sum(u.pool_max_mean) AS max_connections,
       sum(u.pool_utilization_ppm_sum)::double precision
           / NULLIF(sum(u.pool_utilization_ppm_samples), 0) / 1e6 AS pool_utilization,
       sum(u.pool_waiters_mean) AS waiting_connections,
       max(u.pool_waiters_max) AS max_waiting_connections,
       sum(u.pool_wait_us_sum)::double precision / 1000.0 AS connection_wait_time_ms,
       sum(u.pool_wait_us_sum)::double precision / 1000.0 / NULLIF(sum(u.query_count), 0) AS avg_connection_wait_ms,
       sum(u.query_count)::bigint AS query_count,
       sum(u.query_sum_us)::double precision / 1000.0 AS total_query_time_ms,
       sum(u.query_sum_us)::double precision / 1000.0 / NULLIF(sum(u.query_count), 0) AS avg_query_time_ms,
       max(u.query_max_us)::double precision / 1000.0 AS max_query_time_ms,
       max(u.query_p99_us)::double precision / 1000.0 AS worst_query_p99_ms,
       sum(u.cache_hits)::double precision / NULLIF(sum(u.cache_hits) + sum(u.cache_misses), 0) AS cache_hit_ratio
FROM (
    SELECT r.resolution, r.window_start, r.window_end, r.service, true AS is_pool,
           r.pool_active_mean, r.pool_max_mean, r.pool_utilization_ppm_sum,
           r.pool_utilization_ppm_samples, r.pool_waiters_mean, r.pool_waiters_max,
           r.pool_wait_us_sum, r.cache_hits, r.cache_misses,
           NULL::bigint AS query_count, NULL::bigint AS query_sum_us, NULL::bigint AS query_max_us,
           NULL::bigint AS query_p99_us
    FROM resource_rollups r
    UNION ALL
    SELECT q.resolution, q.window_start, q.window_end, q.service, false,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           q.count, q.sum_us, q.max_us, q.p99_us
    FROM query_rollups q
) u
GROUP BY u.resolution, u.window_start, u.service;

-- get_slow_queries, plus the slowest sample behind each row (NULL columns when no sample was
-- kept): its duration, trace id, time, instance and Kafka position. The return type changes:
-- drop and create.
DROP FUNCTION get_slow_queries(timestamptz, double precision, integer, text);

CREATE FUNCTION get_slow_queries(
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
               max(q.p50_us) / 1000.0 AS worst_p50_ms,
               max(q.p95_us) / 1000.0 AS worst_p95_ms,
               max(q.p99_us) / 1000.0 AS worst_p99_ms,
               max(q.max_us) / 1000.0 AS max_ms,
               sum(q.rows_sum)::double precision / sum(q.count) AS rows_per_call,
               min(q.window_start) AS first_window, max(q.window_end) AS last_window
        FROM query_rollups q
        LEFT JOIN query_catalog c ON c.query_hash = q.query_hash
        WHERE q.window_start >= since
          AND perfstream_tier_matches(q.resolution, get_slow_queries.resolution)
        GROUP BY q.service, q.query_hash, q.query_type, c.normalized_text
        HAVING max(q.p99_us) / 1000.0 > threshold_ms OR max(q.max_us) / 1000.0 > threshold_ms
        ORDER BY max(q.p99_us) DESC, max(q.max_us) DESC, q.service, q.query_hash, q.query_type
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
