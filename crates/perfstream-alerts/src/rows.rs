//! The rule inputs: one window's committed rollup rows of every kind, as plain values. The
//! evaluator fills them from the `*_rollups` tables; tests build them by hand.

/// A rollup window, `[start_us, end_us)`, microseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start_us: i64,
    pub end_us: i64,
}

/// Latency percentiles of a window, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: i64,
    pub p50_us: i64,
    pub p90_us: i64,
    pub p95_us: i64,
    pub p99_us: i64,
    pub p999_us: i64,
    pub max_us: i64,
    /// Mean, µs (the rollup's `sum_us / count`, rounded).
    pub mean_us: i64,
}

/// One non-empty bucket of a window's latency histogram: `count` requests whose durations lie
/// in `low_us..=high_us` (the HDR bucket's lowest and highest equivalent values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub low_us: i64,
    pub high_us: i64,
    pub count: i64,
}

/// Requests of `buckets` over `threshold_us`, and whether that count is exact: a bucket wholly
/// above the threshold counts; a bucket the threshold falls inside (`low <= t < high`) counts
/// too (the worse side), and makes the figure inexact. Exact when the threshold is a bucket
/// edge (or no bucket straddles it).
pub fn over_threshold(buckets: &[Bucket], threshold_us: i64) -> (i64, bool) {
    let mut over = 0i64;
    let mut exact = true;
    for b in buckets {
        if b.low_us > threshold_us {
            over = over.saturating_add(b.count);
        } else if b.high_us > threshold_us {
            over = over.saturating_add(b.count);
            exact = false;
        }
    }
    (over, exact)
}

/// One `query_rollups` row.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRow {
    pub service: String,
    pub query_hash: String,
    pub query_type: String,
    pub latency: Latency,
    /// The regression baseline of this key and window (same statistic as the rule), if known.
    pub baseline_us: Option<f64>,
}

/// One `request_rollups` row.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub service: String,
    pub endpoint: String,
    pub method: String,
    pub latency: Latency,
    pub status_5xx: i64,
    pub baseline_us: Option<f64>,
    /// The window's latency histogram, ascending (for the latency burn rate; empty when the
    /// caller did not read it).
    pub buckets: Vec<Bucket>,
}

/// One `resource_rollups` row; ratios are 0..1 (the tables' `*_ppm` / 1e6). `None` when no
/// sample of the window had the figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRow {
    pub service: String,
    pub instance: String,
    pub cpu_mean: Option<f64>,
    pub memory_utilization_mean: Option<f64>,
    pub memory_utilization_last: Option<f64>,
    pub pool_utilization_mean: Option<f64>,
    pub pool_utilization_max: Option<f64>,
    pub pool_waiters_max: Option<i64>,
    /// Sum of GC pause time over the window's samples, µs.
    pub gc_pause_us_sum: Option<i64>,
    /// Sum of the sample intervals of the samples that reported GC pauses, µs.
    pub gc_interval_us_sum: Option<i64>,
    pub cache_hits: i64,
    pub cache_misses: i64,
}

/// Everything committed for one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRows {
    pub window: Window,
    pub queries: Vec<QueryRow>,
    pub requests: Vec<RequestRow>,
    pub resources: Vec<ResourceRow>,
}

impl WindowRows {
    pub fn empty(window: Window) -> WindowRows {
        WindowRows {
            window,
            queries: Vec::new(),
            requests: Vec::new(),
            resources: Vec::new(),
        }
    }
}
