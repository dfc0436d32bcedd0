-- History for the dashboard's browser test and its benchmark: base windows for the last
-- :base_hours hours before :'until' and tier rows ('1h', '1d') for the last :tier_days days,
-- for the services already in request_rollups (a demo run) or, on an empty database,
-- :n_services generated ones. Histograms are a placeholder byte: the dashboard reads the
-- stored percentiles, never the histograms. Deterministic (no random()).
--
--   psql "$URL" -v base_hours=6 -v tier_days=7 -v n_services=3 -v base=1m \
--        -v until="$(date -u +%FT%TZ)" -f tests/browser/seed.sql
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE seed_services AS
SELECT service, row_number() OVER (ORDER BY service) AS n FROM (
  SELECT DISTINCT service FROM request_rollups
  UNION SELECT 'svc-' || lpad(i::text, 2, '0') FROM generate_series(1, :n_services) i
   WHERE NOT EXISTS (SELECT 1 FROM request_rollups)
) s;

-- Every window to write: (resolution, start, length), newest base window ending at :until.
CREATE TEMP TABLE seed_windows AS
SELECT :'base'::text AS resolution, t AS window_start, :'base'::interval AS len
FROM generate_series(date_trunc('minute', :'until'::timestamptz) - make_interval(hours => :base_hours),
                     date_trunc('minute', :'until'::timestamptz) - :'base'::interval, :'base'::interval) t
UNION ALL
SELECT '1h', t, interval '1 hour'
FROM generate_series(date_trunc('hour', :'until'::timestamptz) - make_interval(days => :tier_days),
                     date_trunc('hour', :'until'::timestamptz) - interval '1 hour', interval '1 hour') t
UNION ALL
SELECT '1d', t, interval '1 day'
FROM generate_series(date_trunc('day', :'until'::timestamptz) - make_interval(days => :tier_days),
                     date_trunc('day', :'until'::timestamptz) - interval '1 day', interval '1 day') t;

-- A daily wave, a per-series factor and a short spike every ~16 hours, in microseconds.
CREATE TEMP TABLE seed_shape AS
SELECT w.resolution, w.window_start, w.len, s.service, s.n, k.k,
       (extract(epoch FROM w.len) * (5 + s.n % 7 + k.k))::bigint AS count,
       ((15000 + 6000 * k.k + 1000 * (s.n % 5))
        * (1.3 + sin(extract(epoch FROM w.window_start) / 86400 * 2 * pi()))
        * CASE WHEN (extract(epoch FROM w.window_start)::bigint / 60) % 997 < 4 THEN 8 ELSE 1 END)::bigint AS p50
FROM seed_windows w CROSS JOIN seed_services s CROSS JOIN generate_series(1, 3) k(k);

INSERT INTO request_rollups (resolution, window_start, window_end, service, endpoint, method,
    count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us, hist,
    status_2xx, status_3xx, status_4xx, status_5xx, status_other)
SELECT resolution, window_start, window_start + len, service, '/api/v1/resource-' || k, 'GET',
       count, count * p50 * 13 / 10, p50 / 10, p50 * 9, p50, p50 * 2, p50 * 5 / 2, p50 * 4, p50 * 6,
       '\x00', count - count / 50 - count / 100, 0, count / 50, count / 100, 0
FROM seed_shape
ON CONFLICT DO NOTHING;

INSERT INTO query_rollups (resolution, window_start, window_end, service, query_hash, query_type,
    count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us, hist, rows_sum, rows_max)
SELECT resolution, window_start, window_start + len, service, substr(md5(service || k), 1, 16), 'select',
       count * 2, count * p50 / 5, p50 / 50, p50 * 6, p50 / 4, p50 / 2, p50 * 3 / 4, p50 * 2, p50 * 4,
       '\x00', count * 2 * (k * 10), k * 40
FROM seed_shape
ON CONFLICT DO NOTHING;

INSERT INTO query_catalog (query_hash, query_type, normalized_text, first_seen, last_seen)
SELECT DISTINCT substr(md5(service || k), 1, 16), 'select',
       'SELECT * FROM resource_' || k || ' WHERE tenant_id = ? AND id = ?', now(), now()
FROM seed_shape
ON CONFLICT DO NOTHING;

-- Two instances per service: instance k = 1, 2 of the shape; the second misses its cache
-- often (hit ratio 0.6), which the recommendations report.
INSERT INTO resource_rollups (resolution, window_start, window_end, service, instance, samples,
    cpu_ppm_samples, cpu_ppm_sum, cpu_ppm_min, cpu_ppm_max,
    memory_used_bytes_samples, memory_used_bytes_sum, memory_used_bytes_min, memory_used_bytes_max,
    memory_limit_bytes_samples, memory_limit_bytes_sum, memory_limit_bytes_min, memory_limit_bytes_max,
    memory_utilization_ppm_samples, memory_utilization_ppm_sum, memory_utilization_ppm_min, memory_utilization_ppm_max,
    heap_bytes_samples, heap_bytes_sum, heap_bytes_min, heap_bytes_max,
    gc_pause_us_samples, gc_pause_us_sum, gc_pause_us_min, gc_pause_us_max,
    gc_count_samples, gc_count_sum, gc_count_min, gc_count_max,
    interval_us_samples, interval_us_sum, interval_us_min, interval_us_max,
    pool_active_samples, pool_active_sum, pool_active_min, pool_active_max,
    pool_max_samples, pool_max_sum, pool_max_min, pool_max_max,
    pool_utilization_ppm_samples, pool_utilization_ppm_sum, pool_utilization_ppm_min, pool_utilization_ppm_max,
    pool_waiters_samples, pool_waiters_sum, pool_waiters_min, pool_waiters_max,
    pool_wait_us_samples, pool_wait_us_sum, pool_wait_us_min, pool_wait_us_max,
    io_read_bytes_samples, io_read_bytes_sum, io_read_bytes_min, io_read_bytes_max,
    io_write_bytes_samples, io_write_bytes_sum, io_write_bytes_min, io_write_bytes_max,
    cache_hits, cache_misses)
SELECT resolution, window_start, window_start + len, service, service || '-' || (k - 1), n_s,
       n_s, n_s * cpu, cpu / 2, least(cpu * 3 / 2, 1000000),
       n_s, n_s * mem, mem * 9 / 10, mem,
       n_s, n_s * 4294967296, 4294967296, 4294967296,
       n_s, n_s * (mem * 1000000 / 4294967296), mem * 900000 / 4294967296, mem * 1000000 / 4294967296,
       n_s, n_s * mem / 2, mem / 3, mem / 2,
       n_s, n_s * p50 / 10, 0, p50 / 4,
       n_s, n_s * 2, 0, 5,
       n_s, n_s * 10000000, 10000000, 10000000,
       n_s, n_s * 12, 2, 18,
       n_s, n_s * 20, 20, 20,
       n_s, n_s * 600000, 100000, 900000,
       n_s, n_s * (p50 / 40000), 0, p50 / 20000,
       n_s, n_s * p50 / 20, 0, p50 / 5,
       n_s, n_s * 100000, 0, 200000,
       n_s, n_s * 50000, 0, 100000,
       count * CASE k WHEN 1 THEN 9 ELSE 3 END, count * CASE k WHEN 1 THEN 1 ELSE 2 END
FROM (SELECT *, (extract(epoch FROM len) / 10)::bigint AS n_s,
             least(200000 + p50 * 10, 950000) AS cpu,
             (1073741824 + least(p50, 100000) * 20000)::bigint AS mem
      FROM seed_shape WHERE k <= 2) r
ON CONFLICT DO NOTHING;

-- Alert episodes in the history when the database has none yet (a short demo run may end
-- before its first alert fires): per service one resolved p99 episode on its first endpoint
-- and, for the first service, one still firing on an instance.
INSERT INTO alerts (alert_id, state, rule, severity, service, alert_key, labels, observed_value,
    threshold, clear_threshold, window_start, window_end, transitioned_at, message)
SELECT md5(s.service || e.state_rule), st.state, e.rule, e.severity, s.service,
       e.rule || '|' || s.service, e.labels || jsonb_build_object('service', s.service),
       e.observed, e.threshold, e.threshold * 0.8, st.ws, st.ws + interval '1 minute', st.ws + interval '70 seconds',
       e.rule || ' ' || st.state || ' for ' || s.service
FROM seed_services s
CROSS JOIN LATERAL (VALUES
    ('p99', 'endpoint_p99', 'warning', jsonb_build_object('endpoint', '/api/v1/resource-1', 'method', 'GET'), 1400.0, 1000.0,
     date_trunc('minute', :'until'::timestamptz) - make_interval(mins => 50 + 7 * s.n::int), interval '12 minutes'),
    ('cpu', 'cpu', 'critical', jsonb_build_object('instance', s.service || '-0'), 0.97, 0.9,
     date_trunc('minute', :'until'::timestamptz) - interval '20 minutes', NULL)
) AS e(state_rule, rule, severity, labels, observed, threshold, since, lasted)
CROSS JOIN LATERAL (VALUES ('firing', e.since), ('resolved', e.since + e.lasted)) AS st(state, ws)
WHERE NOT EXISTS (SELECT 1 FROM alerts)
  AND (e.state_rule = 'p99' OR s.n = 1)
  AND st.ws IS NOT NULL;
COMMIT;
SELECT (SELECT count(*) FROM request_rollups) AS request_rows,
       (SELECT count(*) FROM query_rollups) AS query_rows,
       (SELECT count(*) FROM resource_rollups) AS resource_rows;
