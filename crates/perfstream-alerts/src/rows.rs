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
