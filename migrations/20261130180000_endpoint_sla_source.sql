-- One SLA per endpoint (issue 14, section 4). `endpoint_slas` is the single source of truth per
-- endpoint, editable at run time: the statistic compared (p50, p90, p95, p99, p999, max, avg),
-- its threshold (the column keeps its first name, p99_ms: it is the threshold in ms of
-- `statistic`), and the latency objective `slo_target` (share of requests within the threshold,
-- for the latency burn-rate alert). Endpoints without a row get `endpoint_sla_defaults`, which
-- the alert evaluator writes from the config (`[alerts.rules.endpoint_sla]` statistic and
-- threshold, `[alerts.rules.latency_burn]` slo_target) when it takes the lead. Used by the
-- evaluator's `endpoint_sla` and `latency_burn` rules, by the recommendations' `sla_breach`
-- (restated below) and by the dashboard's SLA line.

ALTER TABLE endpoint_slas
    ADD COLUMN statistic text NOT NULL DEFAULT 'p99'
        CHECK (statistic IN ('p50', 'p90', 'p95', 'p99', 'p999', 'max', 'avg')),
    ADD COLUMN slo_target double precision NOT NULL DEFAULT 0.99
        CHECK (slo_target > 0 AND slo_target < 1),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

COMMENT ON COLUMN endpoint_slas.p99_ms IS
    'SLA threshold in ms that the statistic column is compared with (named before the statistic column existed).';
COMMENT ON COLUMN endpoint_slas.statistic IS
    'Statistic of a window compared with the threshold: p50, p90, p95, p99, p999, max or avg.';
COMMENT ON COLUMN endpoint_slas.slo_target IS
    'Latency objective: share of requests within the threshold (latency_burn alert), e.g. 0.99.';

-- The SLA of endpoints without a row: one row, written by the alert evaluator from the config
-- when it takes the lead. Until an evaluator has run, it is what the recommendations used so
-- far: p99 over the sla_p99_ms setting (1000 ms).
CREATE TABLE endpoint_sla_defaults (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    statistic    text NOT NULL CHECK (statistic IN ('p50', 'p90', 'p95', 'p99', 'p999', 'max', 'avg')),
    threshold_ms double precision NOT NULL CHECK (threshold_ms > 0),
    slo_target   double precision NOT NULL CHECK (slo_target > 0 AND slo_target < 1),
    -- 'migration' (this file, from sla_p99_ms) or 'config' (written by the evaluator).
    source       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO endpoint_sla_defaults (statistic, threshold_ms, slo_target, source)
SELECT 'p99', COALESCE((SELECT value FROM recommendation_settings WHERE name = 'sla_p99_ms'), 1000),
       0.99, 'migration';

-- The SLA of one endpoint: its endpoint_slas row, else the defaults. `source` says which.
CREATE FUNCTION perfstream_endpoint_sla(p_service text, p_endpoint text)
RETURNS TABLE (statistic text, threshold_ms double precision, slo_target double precision, source text)
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(s.statistic, d.statistic), COALESCE(s.p99_ms, d.threshold_ms),
           COALESCE(s.slo_target, d.slo_target),
           CASE WHEN s.service IS NULL THEN 'default' ELSE 'endpoint_slas' END
    FROM endpoint_sla_defaults d
    LEFT JOIN endpoint_slas s ON s.service = p_service AND s.endpoint = p_endpoint
$$;

-- A window's value of an SLA statistic, µs.
CREATE FUNCTION perfstream_latency_statistic(
    p_statistic text, p50 bigint, p90 bigint, p95 bigint, p99 bigint, p999 bigint, max bigint,
    mean double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_statistic
        WHEN 'p50' THEN p50 WHEN 'p90' THEN p90 WHEN 'p95' THEN p95 WHEN 'p99' THEN p99
        WHEN 'p999' THEN p999 WHEN 'max' THEN max WHEN 'avg' THEN mean END::double precision
$$;

-- The SLA of every endpoint with a row and of the defaults, for the dashboard and analysts.
CREATE VIEW endpoint_sla_effective AS
SELECT s.service, s.endpoint, s.statistic, s.p99_ms AS threshold_ms, s.slo_target,
       'endpoint_slas'::text AS source
FROM endpoint_slas s
UNION ALL
SELECT NULL, NULL, d.statistic, d.threshold_ms, d.slo_target, 'default'
FROM endpoint_sla_defaults d;

-- The recommendations of 20261130171000 with sla_breach on each endpoint's SLA (statistic and
-- threshold from perfstream_endpoint_sla); everything else unchanged.
CREATE OR REPLACE FUNCTION perfstream_recommendations(
    since      timestamptz,
    until      timestamptz,
    resolution text
) RETURNS TABLE (
    -- '<service>/<target_id>' ('<service>' for a service target), e.g. 'api/9f2c...' (query),
    -- 'shop//checkout' (endpoint '/checkout'), 'api/i-0' (instance), 'api' (service).
    target             text,
    kind               text,
    severity           text,
    evidence           text,
    recommendation     text,
    -- 'query' (target_id: query_hash), 'endpoint' (endpoint, all methods), 'instance'
    -- (instance), 'service' (target_id '').
    target_type        text,
    service            text,
    target_id          text,
    -- Normalized statement text of a query target (query_catalog), else NULL.
    statement_text     text,
    -- What `observed` measures (e.g. 'p99_ms', 'cpu_utilization'), compared with `threshold`,
    -- both in `unit`.
    metric             text,
    observed           double precision,
    threshold          double precision,
    unit               text,
    -- Events behind the finding: query calls, requests, resource samples or cache lookups.
    calls              bigint,
    -- Distinct windows behind the finding (judged windows for sla_breach).
    windows            bigint,
    -- Share the rule judges (query-time share, breaching windows, GC time, pool wait), else NULL.
    share              double precision,
    -- Least-squares fit of trend rules: slope per hour and R², else NULL.
    slope_per_hour     double precision,
    r2                 double precision,
    first_window_start timestamptz,
    last_window_end    timestamptz
)
LANGUAGE sql STABLE AS $$
WITH s AS MATERIALIZED (
    SELECT perfstream_setting('critical_min_windows') AS critical_min_windows,
           perfstream_setting('slow_query_p99_ms') AS slow_query_p99_ms,
           perfstream_setting('many_rows_per_call') AS many_rows_per_call,
           perfstream_setting('slow_query_min_calls') AS slow_query_min_calls,
           perfstream_setting('dominant_query_share') AS dominant_query_share,
           perfstream_setting('dominant_query_critical_share') AS dominant_query_critical_share,
           perfstream_setting('dominant_query_min_mean_ms') AS dominant_query_min_mean_ms,
           perfstream_setting('dominant_query_min_calls') AS dominant_query_min_calls,
           perfstream_setting('dominant_query_min_statements') AS dominant_query_min_statements,
           perfstream_setting('pool_utilization_high') AS pool_utilization_high,
           perfstream_setting('pool_waiters_min') AS pool_waiters_min,
           perfstream_setting('cache_hit_ratio_min') AS cache_hit_ratio_min,
           perfstream_setting('cache_min_lookups') AS cache_min_lookups,
           perfstream_setting('sla_p99_ms') AS sla_p99_ms,
           perfstream_setting('sla_breach_window_share') AS sla_breach_window_share,
           perfstream_setting('sla_critical_window_share') AS sla_critical_window_share,
           perfstream_setting('sla_min_window_calls') AS sla_min_window_calls,
           perfstream_setting('sla_min_windows') AS sla_min_windows,
           perfstream_setting('memory_trend_per_hour') AS memory_trend_per_hour,
           perfstream_setting('trend_min_windows') AS trend_min_windows,
           perfstream_setting('trend_min_r2') AS trend_min_r2,
           perfstream_setting('trend_min_span_hours') AS trend_min_span_hours,
           perfstream_setting('trend_min_slope_per_hour') AS trend_min_slope_per_hour,
           perfstream_setting('saturation_level') AS saturation_level,
           perfstream_setting('saturation_horizon_hours') AS saturation_horizon_hours,
           perfstream_setting('high_utilization_level') AS high_utilization_level,
           perfstream_setting('resource_min_windows') AS resource_min_windows,
           perfstream_setting('gc_time_share_high') AS gc_time_share_high,
           perfstream_setting('pool_wait_share_high') AS pool_wait_share_high,
           perfstream_setting('pool_wait_min_calls') AS pool_wait_min_calls,
           perfstream_setting('io_bytes_per_second_high') AS io_bytes_per_second_high
),
q AS (
    SELECT service, query_hash,
           sum(count) AS calls, sum(sum_us) AS total_us, max(p99_us) AS worst_p99_us,
           sum(rows_sum)::double precision / sum(count) AS rows_per_call,
           min(window_start) AS first_start, max(window_end) AS last_end
    FROM query_rollups
    WHERE window_start >= since AND (until IS NULL OR window_start < until)
      AND perfstream_tier_matches(query_rollups.resolution, perfstream_recommendations.resolution)
    GROUP BY service, query_hash
),
q_share AS (
    SELECT q.*,
           q.total_us::double precision / NULLIF(sum(q.total_us) OVER (PARTITION BY q.service), 0) AS share,
           count(*) OVER (PARTITION BY q.service) AS statements
    FROM q
),
-- The statements the query rules retain (few: their windows are counted after this).
q_slow AS MATERIALIZED (
    SELECT q.* FROM q CROSS JOIN s
    WHERE q.calls >= s.slow_query_min_calls
      AND q.worst_p99_us / 1000.0 >= s.slow_query_p99_ms
      AND q.rows_per_call >= s.many_rows_per_call
),
q_dominant AS MATERIALIZED (
    SELECT q.* FROM q_share q CROSS JOIN s
    WHERE q.calls >= s.dominant_query_min_calls
      AND q.statements >= s.dominant_query_min_statements
      AND q.share >= s.dominant_query_share
      AND q.total_us::double precision / q.calls / 1000.0 >= s.dominant_query_min_mean_ms
),
r AS (
    SELECT rr.*,
           -- hours since `since`: a small, well-conditioned abscissa for the fits
           extract(epoch FROM rr.window_start - since) / 3600.0 AS h,
           rr.cpu_ppm_mean / 1e6 AS cpu, rr.memory_utilization_ppm_mean / 1e6 AS mem
    FROM resource_rollups rr
    WHERE rr.window_start >= since AND (until IS NULL OR rr.window_start < until)
      AND perfstream_tier_matches(rr.resolution, perfstream_recommendations.resolution)
),
r_inst AS (
    SELECT r.service, r.instance, count(*) AS windows, sum(r.samples) AS samples,
           min(r.window_start) AS first_start, max(r.window_end) AS last_end,
           extract(epoch FROM max(r.window_start) - min(r.window_start)) / 3600.0 AS span_h,
           max(r.h) AS last_h,
           sum(r.pool_utilization_ppm_sum)::double precision / NULLIF(sum(r.pool_utilization_ppm_samples), 0) / 1e6 AS pool_util,
           max(r.pool_waiters_max) AS pool_waiters,
           sum(r.pool_wait_us_sum) AS wait_us,
           sum(r.cache_hits) AS hits, sum(r.cache_misses) AS misses,
           sum(r.cpu_ppm_sum)::double precision / NULLIF(sum(r.cpu_ppm_samples), 0) / 1e6 AS cpu_mean,
           sum(r.memory_utilization_ppm_sum)::double precision / NULLIF(sum(r.memory_utilization_ppm_samples), 0) / 1e6 AS mem_mean,
           -- GC pause time per sample over the sample interval: the share of wall time in GC
           (sum(r.gc_pause_us_sum)::double precision / NULLIF(sum(r.gc_pause_us_samples), 0))
             / NULLIF(sum(r.interval_us_sum)::double precision / NULLIF(sum(r.interval_us_samples), 0), 0) AS gc_share,
           count(*) FILTER (WHERE r.gc_pause_us_samples > 0) AS gc_windows,
           sum(r.io_read_bytes_sum) / NULLIF(sum(r.interval_us_sum) / 1e6, 0) AS read_bps,
           sum(r.io_write_bytes_sum) / NULLIF(sum(r.interval_us_sum) / 1e6, 0) AS write_bps,
           -- least-squares fits of utilisation against time in hours
           regr_slope(r.mem, r.h) AS mem_slope, regr_intercept(r.mem, r.h) AS mem_icpt, regr_r2(r.mem, r.h) AS mem_r2,
           regr_slope(r.cpu, r.h) AS cpu_slope, regr_intercept(r.cpu, r.h) AS cpu_icpt, regr_r2(r.cpu, r.h) AS cpu_r2
    FROM r GROUP BY r.service, r.instance
),
-- One row per instance and resource (cpu, memory) with its fit.
fits AS (
    SELECT i.*, v.res, v.slope, v.r2, v.mean_level,
           v.icpt + v.slope * i.last_h AS fitted_now
    FROM r_inst i
    CROSS JOIN LATERAL (VALUES ('cpu', i.cpu_slope, i.cpu_icpt, i.cpu_r2, i.cpu_mean),
                               ('memory', i.mem_slope, i.mem_icpt, i.mem_r2, i.mem_mean))
        AS v(res, slope, icpt, r2, mean_level)
),
-- Fits good enough to extrapolate: enough windows over enough time, a line that explains the
-- series, and a real slope (not the float noise of a flat series).
capacity AS (
    SELECT f.*,
           -- hours from the last window until the fitted line reaches the saturation level
           (s.saturation_level - f.fitted_now) / f.slope AS hours_left
    FROM fits f CROSS JOIN s
    WHERE f.windows >= s.trend_min_windows
      AND f.span_h >= s.trend_min_span_hours
      AND f.r2 >= s.trend_min_r2
      AND f.slope >= s.trend_min_slope_per_hour
      AND f.fitted_now < s.saturation_level
),
-- Endpoint windows: the worst value of the endpoint's SLA statistic among the methods with
-- enough requests in the window (NULL when none has: the window is not judged). The SLA is the
-- endpoint's endpoint_slas row, else endpoint_sla_defaults (the alert config's).
e_win AS (
    SELECT rr.service, rr.endpoint, rr.window_start, max(rr.window_end) AS window_end,
           sum(rr.count) AS calls, sla.statistic, sla.threshold_ms,
           max(perfstream_latency_statistic(sla.statistic, rr.p50_us, rr.p90_us, rr.p95_us,
                                            rr.p99_us, rr.p999_us, rr.max_us, rr.mean_us))
               FILTER (WHERE rr.count >= s.sla_min_window_calls) AS stat_us
    FROM request_rollups rr CROSS JOIN s
    CROSS JOIN LATERAL perfstream_endpoint_sla(rr.service, rr.endpoint) sla
    WHERE rr.window_start >= since AND (until IS NULL OR rr.window_start < until)
      AND perfstream_tier_matches(rr.resolution, perfstream_recommendations.resolution)
    GROUP BY rr.service, rr.endpoint, rr.window_start, sla.statistic, sla.threshold_ms
),
e AS (
    SELECT w.service, w.endpoint, w.statistic,
           w.threshold_ms AS sla_ms,
           count(w.stat_us) AS windows,
           count(*) FILTER (WHERE w.stat_us / 1000.0 > w.threshold_ms) AS breaching,
           sum(w.calls) AS calls,
           max(w.stat_us) / 1000.0 AS worst_ms,
           min(w.window_start) AS first_start, max(w.window_end) AS last_end
    FROM e_win w
    GROUP BY w.service, w.endpoint, w.statistic, w.threshold_ms
),
-- Per service: time spent waiting for a pool connection against time spent executing queries.
pw AS (
    SELECT w.service, w.wait_us, rw.windows, w.samples, w.first_start, w.last_end,
           qs.calls, qs.total_us,
           w.wait_us::double precision / NULLIF(w.wait_us + qs.total_us, 0) AS share
    FROM (SELECT i.service, sum(i.wait_us) AS wait_us, sum(i.samples) AS samples,
                 min(i.first_start) AS first_start, max(i.last_end) AS last_end
          FROM r_inst i GROUP BY i.service) w
    JOIN (SELECT q.service, sum(q.calls) AS calls, sum(q.total_us) AS total_us FROM q GROUP BY q.service) qs
      ON qs.service = w.service
    JOIN (SELECT d.service, count(*) AS windows
          FROM (SELECT DISTINCT r.service, r.window_start FROM r) d GROUP BY d.service) rw
      ON rw.service = w.service
),
findings AS (
    SELECT 'query' AS target_type, q.service, q.query_hash AS target_id, 'slow_query_many_rows' AS kind,
           q.worst_p99_us / 1000.0 >= 2 * s.slow_query_p99_ms AS is_critical,
           format('worst window p99 %s ms >= %s ms; %s rows per call >= %s; over %s calls in %s windows',
                  round(q.worst_p99_us / 1000.0, 1), s.slow_query_p99_ms,
                  round(q.rows_per_call::numeric, 1), s.many_rows_per_call, q.calls, qw.windows) AS evidence,
           'Slow and touching many rows per call: add an index for its predicate, or bound the statement (LIMIT, batching, narrower WHERE).' AS recommendation,
           'p99_ms' AS metric, q.worst_p99_us / 1000.0 AS observed, s.slow_query_p99_ms AS threshold, 'ms' AS unit,
           q.calls::bigint AS calls, qw.windows AS windows, NULL::double precision AS share,
           NULL::double precision AS slope_per_hour, NULL::double precision AS r2,
           q.first_start, q.last_end
    FROM q_slow q CROSS JOIN s
    CROSS JOIN LATERAL perfstream_query_windows(q.service, q.query_hash, since, until,
                                                perfstream_recommendations.resolution) qw
    UNION ALL
    SELECT 'query', q.service, q.query_hash, 'dominant_query',
           q.share >= s.dominant_query_critical_share,
           format('%s %% of the service''s query time (>= %s %%) among %s statements, mean %s ms >= %s ms, over %s calls in %s windows',
                  round((q.share * 100)::numeric, 1), s.dominant_query_share * 100, q.statements,
                  round((q.total_us::double precision / q.calls / 1000.0)::numeric, 2),
                  s.dominant_query_min_mean_ms, q.calls, qw.windows),
           'One statement dominates the service''s database time: optimise it first (plan, index, caching its result, fewer calls).',
           'query_time_share', q.share, s.dominant_query_share, 'ratio',
           q.calls::bigint, qw.windows, q.share, NULL, NULL, q.first_start, q.last_end
    FROM q_dominant q CROSS JOIN s
    CROSS JOIN LATERAL perfstream_query_windows(q.service, q.query_hash, since, until,
                                                perfstream_recommendations.resolution) qw
    UNION ALL
    SELECT 'instance', i.service, i.instance, 'pool_saturation',
           i.pool_util >= 0.98,
           format('mean pool utilisation %s %% >= %s %%, up to %s waiters (>= %s), over %s samples in %s windows',
                  round((i.pool_util * 100)::numeric, 1), s.pool_utilization_high * 100,
                  i.pool_waiters, s.pool_waiters_min, i.samples, i.windows),
           'The connection pool runs near its maximum with callers waiting: raise the pool size (within the database''s connection budget) or shorten the time connections are held.',
           'pool_utilization', i.pool_util, s.pool_utilization_high, 'ratio',
           i.samples::bigint, i.windows, NULL, NULL, NULL, i.first_start, i.last_end
    FROM r_inst i CROSS JOIN s
    WHERE i.pool_util >= s.pool_utilization_high
      AND i.pool_waiters >= s.pool_waiters_min
    UNION ALL
    SELECT 'instance', i.service, i.instance, 'low_cache_hit_ratio',
           i.hits::double precision / (i.hits + i.misses) < s.cache_hit_ratio_min / 2,
           format('cache hit ratio %s %% < %s %% over %s lookups in %s windows',
                  round((i.hits::double precision / (i.hits + i.misses) * 100)::numeric, 1),
                  s.cache_hit_ratio_min * 100, i.hits + i.misses, i.windows),
           'Caches miss often: check key design and TTLs, size the cache to the working set, or warm it.',
           'cache_hit_ratio', i.hits::double precision / (i.hits + i.misses), s.cache_hit_ratio_min, 'ratio',
           (i.hits + i.misses)::bigint, i.windows, NULL, NULL, NULL, i.first_start, i.last_end
    FROM r_inst i CROSS JOIN s
    WHERE i.hits + i.misses >= s.cache_min_lookups
      AND i.hits::double precision / (i.hits + i.misses) < s.cache_hit_ratio_min
    UNION ALL
    SELECT 'endpoint', e.service, e.endpoint, 'sla_breach',
           e.breaching::double precision / e.windows >= s.sla_critical_window_share,
           format('%s above the %s ms SLA in %s of %s windows (%s %% >= %s %%), worst %s %s ms, over %s requests',
                  e.statistic, e.sla_ms, e.breaching, e.windows, round((e.breaching * 100.0 / e.windows)::numeric, 1),
                  s.sla_breach_window_share * 100, e.statistic, round(e.worst_ms::numeric, 1), e.calls),
           'The endpoint breaches its latency SLA: look at its slow queries and downstream calls in the same windows.',
           e.statistic || '_ms', e.worst_ms, e.sla_ms, 'ms',
           e.calls::bigint, e.windows, e.breaching::double precision / e.windows, NULL, NULL,
           e.first_start, e.last_end
    FROM e CROSS JOIN s
    WHERE e.windows >= s.sla_min_windows
      AND e.breaching > 0
      AND e.breaching::double precision / e.windows >= s.sla_breach_window_share
    UNION ALL
    SELECT 'instance', f.service, f.instance, 'memory_trend_up', false,
           format('memory utilisation grows %s %% per hour (>= %s %%), R² %s (>= %s), over %s windows spanning %s h',
                  round((f.slope * 100)::numeric, 2), s.memory_trend_per_hour * 100,
                  round(f.r2::numeric, 2), s.trend_min_r2, f.windows, round(f.span_h::numeric, 1)),
           'Memory keeps growing: look for a leak or an unbounded cache before it reaches the limit.',
           'memory_utilization_slope', f.slope, s.memory_trend_per_hour, 'ratio/hour',
           f.samples::bigint, f.windows, NULL, f.slope, f.r2, f.first_start, f.last_end
    FROM fits f CROSS JOIN s
    WHERE f.res = 'memory'
      AND f.windows >= s.trend_min_windows
      AND f.span_h >= s.trend_min_span_hours
      AND f.r2 >= s.trend_min_r2
      AND f.slope >= s.memory_trend_per_hour
    UNION ALL
    SELECT 'instance', c.service, c.instance, 'capacity_saturation',
           c.hours_left <= s.saturation_horizon_hours / 4,
           format('%s utilisation trend (%s %% now, +%s %% per hour, R² %s) reaches %s %% in %s h (<= %s h), over %s windows spanning %s h',
                  c.res, round((c.fitted_now * 100)::numeric, 1), round((c.slope * 100)::numeric, 2),
                  round(c.r2::numeric, 2), s.saturation_level * 100, round(c.hours_left::numeric, 1),
                  s.saturation_horizon_hours, c.windows, round(c.span_h::numeric, 1)),
           format('Add %s capacity (scale out or up) or reduce load before it saturates.', c.res),
           c.res || '_hours_to_saturation', c.hours_left, s.saturation_horizon_hours, 'hours',
           c.samples::bigint, c.windows, NULL, c.slope, c.r2, c.first_start, c.last_end
    FROM capacity c CROSS JOIN s
    WHERE c.hours_left <= s.saturation_horizon_hours
    UNION ALL
    SELECT 'instance', f.service, f.instance, 'high_utilization',
           f.mean_level >= s.saturation_level,
           format('mean %s utilisation %s %% >= %s %% over %s windows',
                  f.res, round((f.mean_level * 100)::numeric, 1), s.high_utilization_level * 100, f.windows),
           format('The instance runs near its %s limit: add capacity (scale out or up) or reduce load.', f.res),
           f.res || '_utilization', f.mean_level, s.high_utilization_level, 'ratio',
           f.samples::bigint, f.windows, NULL, NULL, NULL, f.first_start, f.last_end
    FROM fits f CROSS JOIN s
    WHERE f.windows >= s.resource_min_windows
      AND f.mean_level >= s.high_utilization_level
    UNION ALL
    SELECT 'instance', i.service, i.instance, 'gc_pressure',
           i.gc_share >= 2 * s.gc_time_share_high,
           format('%s %% of wall time in GC pauses (>= %s %%) over %s windows',
                  round((i.gc_share * 100)::numeric, 1), s.gc_time_share_high * 100, i.gc_windows),
           'Garbage collection takes a large share of the time: reduce allocation (pooling, fewer temporary objects), size the heap, or tune the collector.',
           'gc_time_share', i.gc_share, s.gc_time_share_high, 'ratio',
           i.samples::bigint, i.gc_windows, i.gc_share, NULL, NULL, i.first_start, i.last_end
    FROM r_inst i CROSS JOIN s
    WHERE i.gc_windows >= s.resource_min_windows
      AND i.gc_share >= s.gc_time_share_high
    UNION ALL
    SELECT 'service', p.service, '', 'pool_wait_share',
           p.share >= 2 * s.pool_wait_share_high,
           format('%s %% of database time waiting for a pool connection (>= %s %%): %s ms waiting, %s ms executing %s calls, over %s windows',
                  round((p.share * 100)::numeric, 1), s.pool_wait_share_high * 100,
                  round(p.wait_us / 1000.0, 1), round(p.total_us / 1000.0, 1), p.calls, p.windows),
           'Callers wait for connections longer than their queries run: raise the pool size (within the database''s connection budget), hold connections for less time, or cut the number of statements per request.',
           'pool_wait_share', p.share, s.pool_wait_share_high, 'ratio',
           p.calls::bigint, p.windows, p.share, NULL, NULL, p.first_start, p.last_end
    FROM pw p CROSS JOIN s
    WHERE p.calls >= s.pool_wait_min_calls
      AND p.share >= s.pool_wait_share_high
    UNION ALL
    SELECT 'instance', i.service, i.instance, 'high_io',
           v.bps >= 2 * s.io_bytes_per_second_high,
           format('mean %s throughput %s MB/s >= %s MB/s over %s windows',
                  v.dir, round((v.bps / 1e6)::numeric, 1), s.io_bytes_per_second_high / 1e6, i.windows),
           format('The instance %s a lot: check for scans, unbounded exports or logging, and cache what is %s repeatedly.',
                  CASE v.dir WHEN 'read' THEN 'reads' ELSE 'writes' END,
                  CASE v.dir WHEN 'read' THEN 'read' ELSE 'written' END),
           'io_' || v.dir || '_bytes_per_second', v.bps, s.io_bytes_per_second_high, 'bytes/s',
           i.samples::bigint, i.windows, NULL, NULL, NULL, i.first_start, i.last_end
    FROM r_inst i CROSS JOIN s
    CROSS JOIN LATERAL (VALUES ('read', i.read_bps), ('write', i.write_bps)) AS v(dir, bps)
    WHERE i.windows >= s.resource_min_windows
      AND v.bps >= s.io_bytes_per_second_high
)
SELECT f.service || CASE WHEN f.target_type = 'service' THEN '' ELSE '/' || f.target_id END,
       f.kind,
       -- critical needs its condition and evidence in enough windows
       CASE WHEN f.is_critical AND f.windows >= s.critical_min_windows THEN 'critical' ELSE 'warning' END,
       f.evidence, f.recommendation,
       f.target_type, f.service, f.target_id,
       CASE WHEN f.target_type = 'query' THEN c.normalized_text END,
       f.metric, f.observed, f.threshold, f.unit, f.calls, f.windows, f.share, f.slope_per_hour, f.r2,
       f.first_start, f.last_end
FROM findings f
CROSS JOIN s
LEFT JOIN query_catalog c ON f.target_type = 'query' AND c.query_hash = f.target_id
ORDER BY 3, 2, 1, 10
$$;
