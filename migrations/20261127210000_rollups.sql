-- perfstream rollup schema. Units are in column names: *_us microseconds, *_bytes bytes,
-- *_ppm parts per million (1e6 = 100 %). Times are timestamptz (UTC). See docs/analysts.md.
--
-- resolution: the base tier is labelled by the pipeline's real window size ('1m' by default,
-- '30s' or '5m' when configured so); '1h' and '1d' are tiers derived by the tiers job.
-- window_end is exclusive.

CREATE TABLE query_rollups (
    resolution      text        NOT NULL CHECK (resolution ~ '^[1-9][0-9]*(s|m|h|d)$'),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL CHECK (window_end > window_start),
    service         text NOT NULL,
    query_hash      text NOT NULL,
    query_type      text NOT NULL CHECK (query_type IN ('select', 'insert', 'update', 'delete', 'other')),
    tenant_id       text NOT NULL DEFAULT '',
    count           bigint NOT NULL CHECK (count > 0),
    sum_us          bigint NOT NULL,
    min_us          bigint NOT NULL,
    max_us          bigint NOT NULL,
    mean_us         double precision GENERATED ALWAYS AS (sum_us::double precision / count) STORED,
    p50_us          bigint NOT NULL,
    p90_us          bigint NOT NULL,
    p95_us          bigint NOT NULL,
    p99_us          bigint NOT NULL,
    p999_us         bigint NOT NULL,
    clamped_count   bigint NOT NULL DEFAULT 0,
    hist            bytea  NOT NULL,
    rows_sum        bigint NOT NULL,
    rows_max        bigint NOT NULL,
    rows_per_call   double precision GENERATED ALWAYS AS (rows_sum::double precision / count) STORED,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resolution, window_start, service, query_hash, query_type, tenant_id)
);
CREATE INDEX query_rollups_service_time ON query_rollups (service, resolution, window_start);
CREATE INDEX query_rollups_hash_time ON query_rollups (query_hash, resolution, window_start);

CREATE TABLE request_rollups (
    resolution      text        NOT NULL CHECK (resolution ~ '^[1-9][0-9]*(s|m|h|d)$'),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL CHECK (window_end > window_start),
    service         text NOT NULL,
    endpoint        text NOT NULL,
    method          text NOT NULL,
    count           bigint NOT NULL CHECK (count > 0),
    sum_us          bigint NOT NULL,
    min_us          bigint NOT NULL,
    max_us          bigint NOT NULL,
    mean_us         double precision GENERATED ALWAYS AS (sum_us::double precision / count) STORED,
    p50_us          bigint NOT NULL,
    p90_us          bigint NOT NULL,
    p95_us          bigint NOT NULL,
    p99_us          bigint NOT NULL,
    p999_us         bigint NOT NULL,
    clamped_count   bigint NOT NULL DEFAULT 0,
    hist            bytea  NOT NULL,
    status_2xx      bigint NOT NULL,
    status_3xx      bigint NOT NULL,
    status_4xx      bigint NOT NULL,
    status_5xx      bigint NOT NULL,
    status_other    bigint NOT NULL,
    error_rate      double precision GENERATED ALWAYS AS (status_5xx::double precision / count) STORED,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resolution, window_start, service, endpoint, method)
);
CREATE INDEX request_rollups_service_time ON request_rollups (service, resolution, window_start);
CREATE INDEX request_rollups_endpoint_time ON request_rollups (service, endpoint, resolution, window_start);

CREATE TABLE resource_rollups (
    resolution      text        NOT NULL CHECK (resolution ~ '^[1-9][0-9]*(s|m|h|d)$'),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL CHECK (window_end > window_start),
    service         text NOT NULL,
    instance        text NOT NULL,
    samples         bigint NOT NULL CHECK (samples > 0),
    -- cpu_ppm: CPU utilisation, parts per million of one instance's capacity (1e6 = 100 %)
    cpu_ppm_samples bigint NOT NULL,
    cpu_ppm_sum bigint NOT NULL,
    cpu_ppm_min bigint,
    cpu_ppm_max bigint,
    cpu_ppm_mean double precision GENERATED ALWAYS AS (cpu_ppm_sum::double precision / NULLIF(cpu_ppm_samples, 0)) STORED,
    cpu_ppm_last bigint,
    cpu_ppm_last_at timestamptz,
    -- memory_used_bytes: memory in use, bytes
    memory_used_bytes_samples bigint NOT NULL,
    memory_used_bytes_sum bigint NOT NULL,
    memory_used_bytes_min bigint,
    memory_used_bytes_max bigint,
    memory_used_bytes_mean double precision GENERATED ALWAYS AS (memory_used_bytes_sum::double precision / NULLIF(memory_used_bytes_samples, 0)) STORED,
    memory_used_bytes_last bigint,
    memory_used_bytes_last_at timestamptz,
    -- memory_limit_bytes: memory limit, bytes
    memory_limit_bytes_samples bigint NOT NULL,
    memory_limit_bytes_sum bigint NOT NULL,
    memory_limit_bytes_min bigint,
    memory_limit_bytes_max bigint,
    memory_limit_bytes_mean double precision GENERATED ALWAYS AS (memory_limit_bytes_sum::double precision / NULLIF(memory_limit_bytes_samples, 0)) STORED,
    memory_limit_bytes_last bigint,
    memory_limit_bytes_last_at timestamptz,
    -- memory_utilization_ppm: memory_used / memory_limit, ppm
    memory_utilization_ppm_samples bigint NOT NULL,
    memory_utilization_ppm_sum bigint NOT NULL,
    memory_utilization_ppm_min bigint,
    memory_utilization_ppm_max bigint,
    memory_utilization_ppm_mean double precision GENERATED ALWAYS AS (memory_utilization_ppm_sum::double precision / NULLIF(memory_utilization_ppm_samples, 0)) STORED,
    memory_utilization_ppm_last bigint,
    memory_utilization_ppm_last_at timestamptz,
    -- heap_bytes: managed heap, bytes (only samples that reported it)
    heap_bytes_samples bigint NOT NULL,
    heap_bytes_sum bigint NOT NULL,
    heap_bytes_min bigint,
    heap_bytes_max bigint,
    heap_bytes_mean double precision GENERATED ALWAYS AS (heap_bytes_sum::double precision / NULLIF(heap_bytes_samples, 0)) STORED,
    heap_bytes_last bigint,
    heap_bytes_last_at timestamptz,
    -- gc_pause_us: GC pause time in the sample interval, microseconds
    gc_pause_us_samples bigint NOT NULL,
    gc_pause_us_sum bigint NOT NULL,
    gc_pause_us_min bigint,
    gc_pause_us_max bigint,
    gc_pause_us_mean double precision GENERATED ALWAYS AS (gc_pause_us_sum::double precision / NULLIF(gc_pause_us_samples, 0)) STORED,
    gc_pause_us_last bigint,
    gc_pause_us_last_at timestamptz,
    -- gc_count: GC runs in the sample interval
    gc_count_samples bigint NOT NULL,
    gc_count_sum bigint NOT NULL,
    gc_count_min bigint,
    gc_count_max bigint,
    gc_count_mean double precision GENERATED ALWAYS AS (gc_count_sum::double precision / NULLIF(gc_count_samples, 0)) STORED,
    gc_count_last bigint,
    gc_count_last_at timestamptz,
    -- interval_us: sample interval, microseconds
    interval_us_samples bigint NOT NULL,
    interval_us_sum bigint NOT NULL,
    interval_us_min bigint,
    interval_us_max bigint,
    interval_us_mean double precision GENERATED ALWAYS AS (interval_us_sum::double precision / NULLIF(interval_us_samples, 0)) STORED,
    interval_us_last bigint,
    interval_us_last_at timestamptz,
    -- pool_active: connection-pool connections in use
    pool_active_samples bigint NOT NULL,
    pool_active_sum bigint NOT NULL,
    pool_active_min bigint,
    pool_active_max bigint,
    pool_active_mean double precision GENERATED ALWAYS AS (pool_active_sum::double precision / NULLIF(pool_active_samples, 0)) STORED,
    pool_active_last bigint,
    pool_active_last_at timestamptz,
    -- pool_max: connection-pool size limit
    pool_max_samples bigint NOT NULL,
    pool_max_sum bigint NOT NULL,
    pool_max_min bigint,
    pool_max_max bigint,
    pool_max_mean double precision GENERATED ALWAYS AS (pool_max_sum::double precision / NULLIF(pool_max_samples, 0)) STORED,
    pool_max_last bigint,
    pool_max_last_at timestamptz,
    -- pool_utilization_ppm: pool_active / pool_max, ppm
    pool_utilization_ppm_samples bigint NOT NULL,
    pool_utilization_ppm_sum bigint NOT NULL,
    pool_utilization_ppm_min bigint,
    pool_utilization_ppm_max bigint,
    pool_utilization_ppm_mean double precision GENERATED ALWAYS AS (pool_utilization_ppm_sum::double precision / NULLIF(pool_utilization_ppm_samples, 0)) STORED,
    pool_utilization_ppm_last bigint,
    pool_utilization_ppm_last_at timestamptz,
    -- pool_waiters: callers waiting for a pool connection
    pool_waiters_samples bigint NOT NULL,
    pool_waiters_sum bigint NOT NULL,
    pool_waiters_min bigint,
    pool_waiters_max bigint,
    pool_waiters_mean double precision GENERATED ALWAYS AS (pool_waiters_sum::double precision / NULLIF(pool_waiters_samples, 0)) STORED,
    pool_waiters_last bigint,
    pool_waiters_last_at timestamptz,
    -- pool_wait_us: time spent waiting for a connection in the interval, microseconds
    pool_wait_us_samples bigint NOT NULL,
    pool_wait_us_sum bigint NOT NULL,
    pool_wait_us_min bigint,
    pool_wait_us_max bigint,
    pool_wait_us_mean double precision GENERATED ALWAYS AS (pool_wait_us_sum::double precision / NULLIF(pool_wait_us_samples, 0)) STORED,
    pool_wait_us_last bigint,
    pool_wait_us_last_at timestamptz,
    -- io_read_bytes: bytes read in the interval
    io_read_bytes_samples bigint NOT NULL,
    io_read_bytes_sum bigint NOT NULL,
    io_read_bytes_min bigint,
    io_read_bytes_max bigint,
    io_read_bytes_mean double precision GENERATED ALWAYS AS (io_read_bytes_sum::double precision / NULLIF(io_read_bytes_samples, 0)) STORED,
    io_read_bytes_last bigint,
    io_read_bytes_last_at timestamptz,
    -- io_write_bytes: bytes written in the interval
    io_write_bytes_samples bigint NOT NULL,
    io_write_bytes_sum bigint NOT NULL,
    io_write_bytes_min bigint,
    io_write_bytes_max bigint,
    io_write_bytes_mean double precision GENERATED ALWAYS AS (io_write_bytes_sum::double precision / NULLIF(io_write_bytes_samples, 0)) STORED,
    io_write_bytes_last bigint,
    io_write_bytes_last_at timestamptz,
    cache_hits      bigint NOT NULL,
    cache_misses    bigint NOT NULL,
    cache_hit_ratio double precision GENERATED ALWAYS AS
        (cache_hits::double precision / NULLIF(cache_hits + cache_misses, 0)) STORED,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resolution, window_start, service, instance)
);
CREATE INDEX resource_rollups_service_time ON resource_rollups (service, resolution, window_start);

COMMENT ON COLUMN resource_rollups.cpu_ppm_samples IS 'Samples that reported cpu_ppm (CPU utilisation, parts per million of one instance''s capacity (1e6 = 100 %)).';
COMMENT ON COLUMN resource_rollups.memory_used_bytes_samples IS 'Samples that reported memory_used_bytes (memory in use, bytes).';
COMMENT ON COLUMN resource_rollups.memory_limit_bytes_samples IS 'Samples that reported memory_limit_bytes (memory limit, bytes).';
COMMENT ON COLUMN resource_rollups.memory_utilization_ppm_samples IS 'Samples that reported memory_utilization_ppm (memory_used / memory_limit, ppm).';
COMMENT ON COLUMN resource_rollups.heap_bytes_samples IS 'Samples that reported heap_bytes (managed heap, bytes (only samples that reported it)).';
COMMENT ON COLUMN resource_rollups.gc_pause_us_samples IS 'Samples that reported gc_pause_us (GC pause time in the sample interval, microseconds).';
COMMENT ON COLUMN resource_rollups.gc_count_samples IS 'Samples that reported gc_count (GC runs in the sample interval).';
COMMENT ON COLUMN resource_rollups.interval_us_samples IS 'Samples that reported interval_us (sample interval, microseconds).';
COMMENT ON COLUMN resource_rollups.pool_active_samples IS 'Samples that reported pool_active (connection-pool connections in use).';
COMMENT ON COLUMN resource_rollups.pool_max_samples IS 'Samples that reported pool_max (connection-pool size limit).';
COMMENT ON COLUMN resource_rollups.pool_utilization_ppm_samples IS 'Samples that reported pool_utilization_ppm (pool_active / pool_max, ppm).';
COMMENT ON COLUMN resource_rollups.pool_waiters_samples IS 'Samples that reported pool_waiters (callers waiting for a pool connection).';
COMMENT ON COLUMN resource_rollups.pool_wait_us_samples IS 'Samples that reported pool_wait_us (time spent waiting for a connection in the interval, microseconds).';
COMMENT ON COLUMN resource_rollups.io_read_bytes_samples IS 'Samples that reported io_read_bytes (bytes read in the interval).';
COMMENT ON COLUMN resource_rollups.io_write_bytes_samples IS 'Samples that reported io_write_bytes (bytes written in the interval).';
