-- Key columns are identifiers: compare them bytewise (COLLATE "C"). B-tree maintenance on
-- every insert then uses memcmp instead of the locale's strcoll, ORDER BY on keys is the same
-- byte order the writers lock in, and results do not depend on the server's locale.
-- The views reading these columns are dropped and recreated around the change.
DROP VIEW latest_window_per_service;
DROP VIEW top_endpoints_by_p99;
DROP VIEW top_queries_by_total_time;

ALTER TABLE query_rollups
    ALTER COLUMN resolution TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN query_hash TYPE text COLLATE "C",
    ALTER COLUMN query_type TYPE text COLLATE "C",
    ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE request_rollups
    ALTER COLUMN resolution TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN endpoint TYPE text COLLATE "C",
    ALTER COLUMN method TYPE text COLLATE "C";
ALTER TABLE resource_rollups
    ALTER COLUMN resolution TYPE text COLLATE "C",
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN instance TYPE text COLLATE "C";
ALTER TABLE query_catalog
    ALTER COLUMN query_hash TYPE text COLLATE "C";
ALTER TABLE endpoint_slas
    ALTER COLUMN service TYPE text COLLATE "C",
    ALTER COLUMN endpoint TYPE text COLLATE "C";

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
