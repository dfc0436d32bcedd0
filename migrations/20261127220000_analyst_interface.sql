-- Analyst interface: settings, SLA table, functions and views. See docs/analysts.md.
-- All functions read the base tier by default ('1m' unless the pipeline's window is configured
-- otherwise); pass a resolution ('1h', '1d') to read a tier instead, e.g. beyond the base
-- tier's retention. Percentiles over a range here are the worst window's; `perfstream report`
-- merges the stored histograms for exact percentiles over the whole range.

-- Named thresholds of generate_optimization_recommendations(). Analysts may UPDATE the values.
CREATE TABLE recommendation_settings (
    name        text PRIMARY KEY,
    value       double precision NOT NULL,
    unit        text NOT NULL,
    description text NOT NULL
);

INSERT INTO recommendation_settings (name, value, unit, description) VALUES
 ('slow_query_p99_ms', 500, 'ms',
  'A query is slow when its worst window p99 reaches this (rule slow_query_many_rows).'),
 ('many_rows_per_call', 1000, 'rows',
  'Rows affected per call from which a slow query looks like a scan or an unbounded write (rule slow_query_many_rows).'),
 ('dominant_query_share', 0.5, 'ratio',
  'Share of a service''s total query time one hash must take (rule dominant_query).'),
 ('dominant_query_min_mean_ms', 10, 'ms',
  'Mean time per call from which a dominant hash counts as slow (rule dominant_query).'),
 ('pool_utilization_high', 0.9, 'ratio',
  'Mean connection-pool utilisation (active / max) from which a pool is near its limit (rule pool_saturation).'),
 ('pool_waiters_min', 1, 'waiters',
  'Largest number of waiting callers seen from which pool pressure is real (rule pool_saturation).'),
 ('cache_hit_ratio_min', 0.8, 'ratio',
  'Hit ratio below which a cache is ineffective (rule low_cache_hit_ratio).'),
 ('cache_min_lookups', 1000, 'lookups',
  'Lookups (hits + misses) needed before the hit ratio is judged (rule low_cache_hit_ratio).'),
 ('sla_p99_ms', 1000, 'ms',
  'Default p99 SLA of an endpoint without a row in endpoint_slas (rule sla_breach).'),
 ('sla_breach_window_share', 0.1, 'ratio',
  'Share of an endpoint''s windows whose p99 exceeds its SLA from which it is breaching (rule sla_breach).'),
 ('memory_trend_per_hour', 0.02, 'ratio/hour',
  'Growth of mean memory utilisation per hour (least-squares slope) from which memory trends up (rule memory_trend_up).'),
 ('trend_min_windows', 10, 'windows',
  'Windows an instance needs before trends are fitted (rules memory_trend_up, capacity_saturation).'),
 ('saturation_level', 0.95, 'ratio',
  'Utilisation counted as saturated (rule capacity_saturation).'),
 ('saturation_horizon_hours', 24, 'hours',
  'Projected time to saturation within which to warn (rule capacity_saturation).');

-- Per-endpoint p99 SLAs; endpoints without a row use the setting sla_p99_ms.
CREATE TABLE endpoint_slas (
    service  text NOT NULL,
    endpoint text NOT NULL,
    p99_ms   double precision NOT NULL CHECK (p99_ms > 0),
    PRIMARY KEY (service, endpoint)
);

-- A setting's value; fails loudly when a setting was deleted.
CREATE FUNCTION perfstream_setting(p_name text) RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
DECLARE v double precision;
BEGIN
    SELECT value INTO v FROM recommendation_settings WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'recommendation setting % is missing', p_name;
    END IF;
    RETURN v;
END $$;

-- True for rows of the requested resolution: NULL means the base tier.
CREATE FUNCTION perfstream_tier_matches(p_row text, p_wanted text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_wanted IS NULL THEN p_row NOT IN ('1h', '1d') ELSE p_row = p_wanted END
$$;

CREATE FUNCTION get_slow_queries(
    since        timestamptz,
    threshold_ms double precision DEFAULT 1000,
    max_rows     integer DEFAULT 50,
    resolution   text DEFAULT NULL
) RETURNS TABLE (
    service         text,
    query_hash      text,
    query_type      text,
    normalized_text text,
    calls           bigint,
    total_time_ms   double precision,
    mean_ms         double precision,
    worst_p50_ms    double precision,
    worst_p95_ms    double precision,
    worst_p99_ms    double precision,
    max_ms          double precision,
    rows_per_call   double precision,
    first_window    timestamptz,
    last_window     timestamptz
)
LANGUAGE sql STABLE AS $$
    SELECT q.service, q.query_hash, q.query_type, c.normalized_text,
           sum(q.count)::bigint,
           sum(q.sum_us) / 1000.0,
           sum(q.sum_us)::double precision / sum(q.count) / 1000.0,
           max(q.p50_us) / 1000.0,
           max(q.p95_us) / 1000.0,
           max(q.p99_us) / 1000.0,
           max(q.max_us) / 1000.0,
           sum(q.rows_sum)::double precision / sum(q.count),
           min(q.window_start), max(q.window_end)
    FROM query_rollups q
    LEFT JOIN query_catalog c ON c.query_hash = q.query_hash
    WHERE q.window_start >= since
      AND perfstream_tier_matches(q.resolution, get_slow_queries.resolution)
    GROUP BY q.service, q.query_hash, q.query_type, c.normalized_text
    HAVING max(q.p99_us) / 1000.0 > threshold_ms OR max(q.max_us) / 1000.0 > threshold_ms
    ORDER BY max(q.p99_us) DESC, max(q.max_us) DESC, q.service, q.query_hash
    LIMIT max_rows
$$;

CREATE FUNCTION generate_optimization_recommendations(
    since      timestamptz,
    resolution text DEFAULT NULL
) RETURNS TABLE (target text, kind text, severity text, evidence text, recommendation text)
LANGUAGE sql STABLE AS $$
WITH q AS (
    SELECT service, query_hash,
           sum(count) AS calls, sum(sum_us) AS total_us, max(p99_us) AS worst_p99_us,
           sum(rows_sum)::double precision / sum(count) AS rows_per_call
    FROM query_rollups
    WHERE window_start >= since
      AND perfstream_tier_matches(query_rollups.resolution, generate_optimization_recommendations.resolution)
    GROUP BY service, query_hash
),
q_share AS (
    SELECT q.*, q.total_us::double precision / NULLIF(sum(q.total_us) OVER (PARTITION BY service), 0) AS share
    FROM q
),
r AS (
    SELECT service, instance, window_start, window_end, samples,
           pool_utilization_ppm_sum, pool_utilization_ppm_samples, pool_waiters_max,
           cache_hits, cache_misses,
           cpu_ppm_mean / 1e6 AS cpu, memory_utilization_ppm_mean / 1e6 AS mem
    FROM resource_rollups
    WHERE window_start >= since
      AND perfstream_tier_matches(resource_rollups.resolution, generate_optimization_recommendations.resolution)
),
r_inst AS (
    SELECT service, instance, count(*) AS windows, max(window_end) AS last_end,
           sum(pool_utilization_ppm_sum)::double precision / NULLIF(sum(pool_utilization_ppm_samples), 0) / 1e6 AS pool_util,
           max(pool_waiters_max) AS pool_waiters,
           sum(cache_hits) AS hits, sum(cache_misses) AS misses,
           -- least-squares fits of utilisation against time in hours
           regr_slope(mem, extract(epoch FROM window_start) / 3600.0) AS mem_slope,
           regr_intercept(mem, extract(epoch FROM window_start) / 3600.0) AS mem_icpt,
           regr_slope(cpu, extract(epoch FROM window_start) / 3600.0) AS cpu_slope,
           regr_intercept(cpu, extract(epoch FROM window_start) / 3600.0) AS cpu_icpt,
           extract(epoch FROM max(window_start)) / 3600.0 AS last_h
    FROM r GROUP BY service, instance
),
capacity AS (
    SELECT service, instance, windows, res, slope,
           -- hours from the last window until the fitted line reaches the saturation level
           (perfstream_setting('saturation_level') - (icpt + slope * last_h)) / slope AS hours_left,
           icpt + slope * last_h AS fitted_now
    FROM r_inst
    CROSS JOIN LATERAL (VALUES ('cpu', cpu_slope, cpu_icpt), ('memory', mem_slope, mem_icpt)) AS v(res, slope, icpt)
    WHERE windows >= perfstream_setting('trend_min_windows') AND slope > 0
),
e AS (
    SELECT rr.service, rr.endpoint,
           count(*) AS windows,
           count(*) FILTER (WHERE rr.p99_us / 1000.0 > COALESCE(s.p99_ms, perfstream_setting('sla_p99_ms'))) AS breaching,
           max(rr.p99_us) / 1000.0 AS worst_p99_ms,
           COALESCE(s.p99_ms, perfstream_setting('sla_p99_ms')) AS sla_ms
    FROM request_rollups rr
    LEFT JOIN endpoint_slas s ON s.service = rr.service AND s.endpoint = rr.endpoint
    WHERE rr.window_start >= since
      AND perfstream_tier_matches(rr.resolution, generate_optimization_recommendations.resolution)
    GROUP BY rr.service, rr.endpoint, s.p99_ms
)
SELECT service || '/' || query_hash, 'slow_query_many_rows',
       CASE WHEN worst_p99_us / 1000.0 >= 2 * perfstream_setting('slow_query_p99_ms') THEN 'critical' ELSE 'warning' END,
       format('worst p99 %s ms >= %s ms; %s rows per call >= %s over %s calls',
              round(worst_p99_us / 1000.0, 1), perfstream_setting('slow_query_p99_ms'),
              round(rows_per_call::numeric, 1), perfstream_setting('many_rows_per_call'), calls),
       'Slow and touching many rows per call: add an index for its predicate, or bound the statement (LIMIT, batching, narrower WHERE).'
FROM q
WHERE worst_p99_us / 1000.0 >= perfstream_setting('slow_query_p99_ms')
  AND rows_per_call >= perfstream_setting('many_rows_per_call')
UNION ALL
SELECT service || '/' || query_hash, 'dominant_query',
       CASE WHEN share >= 0.8 THEN 'critical' ELSE 'warning' END,
       format('%s %% of the service''s query time (>= %s %%), mean %s ms >= %s ms over %s calls',
              round((share * 100)::numeric, 1), perfstream_setting('dominant_query_share') * 100,
              round((total_us::double precision / calls / 1000.0)::numeric, 2),
              perfstream_setting('dominant_query_min_mean_ms'), calls),
       'One statement dominates the service''s database time: optimise it first (plan, index, caching its result, fewer calls).'
FROM q_share
WHERE share >= perfstream_setting('dominant_query_share')
  AND total_us::double precision / calls / 1000.0 >= perfstream_setting('dominant_query_min_mean_ms')
UNION ALL
SELECT service || '/' || instance, 'pool_saturation',
       CASE WHEN pool_util >= 0.98 THEN 'critical' ELSE 'warning' END,
       format('mean pool utilisation %s %% >= %s %%, up to %s waiters (>= %s)',
              round((pool_util * 100)::numeric, 1), perfstream_setting('pool_utilization_high') * 100,
              pool_waiters, perfstream_setting('pool_waiters_min')),
       'The connection pool runs near its maximum with callers waiting: raise the pool size (within the database''s connection budget) or shorten the time connections are held.'
FROM r_inst
WHERE pool_util >= perfstream_setting('pool_utilization_high')
  AND pool_waiters >= perfstream_setting('pool_waiters_min')
UNION ALL
SELECT service || '/' || instance, 'low_cache_hit_ratio',
       CASE WHEN hits::double precision / (hits + misses) < perfstream_setting('cache_hit_ratio_min') / 2 THEN 'critical' ELSE 'warning' END,
       format('cache hit ratio %s %% < %s %% over %s lookups',
              round((hits::double precision / (hits + misses) * 100)::numeric, 1),
              perfstream_setting('cache_hit_ratio_min') * 100, hits + misses),
       'Caches miss often: check key design and TTLs, size the cache to the working set, or warm it.'
FROM r_inst
WHERE hits + misses >= perfstream_setting('cache_min_lookups')
  AND hits::double precision / (hits + misses) < perfstream_setting('cache_hit_ratio_min')
UNION ALL
SELECT service || ' ' || endpoint, 'sla_breach',
       CASE WHEN breaching::double precision / windows >= 0.5 THEN 'critical' ELSE 'warning' END,
       format('p99 above the %s ms SLA in %s of %s windows (%s %% >= %s %%), worst p99 %s ms',
              sla_ms, breaching, windows, round((breaching * 100.0 / windows)::numeric, 1),
              perfstream_setting('sla_breach_window_share') * 100, round(worst_p99_ms::numeric, 1)),
       'The endpoint breaches its latency SLA: look at its slow queries and downstream calls in the same windows.'
FROM e
WHERE breaching > 0
  AND breaching::double precision / windows >= perfstream_setting('sla_breach_window_share')
UNION ALL
SELECT service || '/' || instance, 'memory_trend_up', 'warning',
       format('memory utilisation grows %s %% per hour (>= %s %%) over %s windows',
              round((mem_slope * 100)::numeric, 2), perfstream_setting('memory_trend_per_hour') * 100, windows),
       'Memory keeps growing: look for a leak or an unbounded cache before it reaches the limit.'
FROM r_inst
WHERE windows >= perfstream_setting('trend_min_windows')
  AND mem_slope >= perfstream_setting('memory_trend_per_hour')
UNION ALL
SELECT service || '/' || instance, 'capacity_saturation',
       CASE WHEN hours_left <= perfstream_setting('saturation_horizon_hours') / 4 THEN 'critical' ELSE 'warning' END,
       format('%s utilisation trend (%s %% now, +%s %% per hour) reaches %s %% in %s h (<= %s h)',
              res, round((fitted_now * 100)::numeric, 1), round((slope * 100)::numeric, 2),
              perfstream_setting('saturation_level') * 100, round(greatest(hours_left, 0)::numeric, 1),
              perfstream_setting('saturation_horizon_hours')),
       format('Add %s capacity (scale out or up) or reduce load before it saturates.', res)
FROM capacity
WHERE hours_left <= perfstream_setting('saturation_horizon_hours')
ORDER BY 3, 2, 1
$$;

-- The latest base window of each service, with its headline figures.
CREATE VIEW latest_window_per_service AS
WITH latest AS (
    SELECT service, max(window_start) AS window_start FROM (
        SELECT service, window_start FROM request_rollups WHERE resolution NOT IN ('1h', '1d')
        UNION ALL SELECT service, window_start FROM query_rollups WHERE resolution NOT IN ('1h', '1d')
        UNION ALL SELECT service, window_start FROM resource_rollups WHERE resolution NOT IN ('1h', '1d')
    ) w GROUP BY service
)
SELECT l.service, l.window_start,
       rq.requests, rq.worst_endpoint_p99_us, rq.error_rate,
       qy.queries, qy.query_time_us,
       rs.cpu_ppm_mean, rs.memory_utilization_ppm_max, rs.pool_waiters_max
FROM latest l
LEFT JOIN LATERAL (
    SELECT sum(count) AS requests, max(p99_us) AS worst_endpoint_p99_us,
           sum(status_5xx)::double precision / sum(count) AS error_rate
    FROM request_rollups r
    WHERE r.service = l.service AND r.window_start = l.window_start AND r.resolution NOT IN ('1h', '1d')
) rq ON true
LEFT JOIN LATERAL (
    SELECT sum(count) AS queries, sum(sum_us) AS query_time_us
    FROM query_rollups q
    WHERE q.service = l.service AND q.window_start = l.window_start AND q.resolution NOT IN ('1h', '1d')
) qy ON true
LEFT JOIN LATERAL (
    SELECT sum(cpu_ppm_sum)::double precision / NULLIF(sum(cpu_ppm_samples), 0) AS cpu_ppm_mean,
           max(memory_utilization_ppm_max) AS memory_utilization_ppm_max,
           max(pool_waiters_max) AS pool_waiters_max
    FROM resource_rollups s
    WHERE s.service = l.service AND s.window_start = l.window_start AND s.resolution NOT IN ('1h', '1d')
) rs ON true;

-- Endpoints of the last hour, worst window p99 first.
CREATE VIEW top_endpoints_by_p99 AS
SELECT service, endpoint, method,
       max(p99_us) AS worst_p99_us,
       sum(count) AS requests,
       sum(sum_us)::double precision / sum(count) AS mean_us,
       sum(status_5xx)::double precision / sum(count) AS error_rate
FROM request_rollups
WHERE resolution NOT IN ('1h', '1d') AND window_start >= now() - interval '1 hour'
GROUP BY service, endpoint, method
ORDER BY worst_p99_us DESC;

-- Statements of the last 24 hours by total execution time.
CREATE VIEW top_queries_by_total_time AS
SELECT q.service, q.query_hash, q.query_type, c.normalized_text,
       sum(q.sum_us) AS total_time_us,
       sum(q.count) AS calls,
       sum(q.sum_us)::double precision / sum(q.count) AS mean_us,
       max(q.p99_us) AS worst_p99_us,
       sum(q.rows_sum)::double precision / sum(q.count) AS rows_per_call
FROM query_rollups q
LEFT JOIN query_catalog c ON c.query_hash = q.query_hash
WHERE q.resolution NOT IN ('1h', '1d') AND q.window_start >= now() - interval '24 hours'
GROUP BY q.service, q.query_hash, q.query_type, c.normalized_text
ORDER BY total_time_us DESC;
