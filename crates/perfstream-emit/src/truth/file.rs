//! The truth file's types: what `perfstream emit --truth` writes (`docs/truth-format.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::figures::{QUANTILES, exact_quantile};
use crate::scenario::{Episode, Scenario};

/// Format tag of the file.
pub const FORMAT: &str = "perfstream-truth/1";

/// The whole truth file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub format: String,
    pub params: Params,
    pub totals: Totals,
    pub malformed: Malformed,
    pub too_late: TooLate,
    pub episodes: Vec<Episode>,
    /// Sorted by window start, then key.
    pub query: Vec<QueryRow>,
    pub request: Vec<RequestRow>,
    pub resource: Vec<ResourceRow>,
}

/// The run's parameters that a checker needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub seed: u64,
    /// Scheduled time of the first regular event.
    pub start_us: i64,
    /// End of the regular events' scheduled span (`start_us + count / rate`).
    pub end_us: i64,
    pub window_us: i64,
    pub allowed_lateness_us: i64,
    pub correction_horizon_us: i64,
    pub rate: f64,
    pub count: u64,
    pub topics: BTreeMap<String, String>,
    pub quantiles: Vec<f64>,
    pub percentile_definition: String,
    /// The complete scenario, so the run can be reproduced.
    pub scenario: Scenario,
}

/// Message counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Acknowledged messages of every class (events and malformed).
    pub acknowledged: u64,
    /// Messages the broker did not acknowledge (delivery error or still pending at the end).
    pub failed: u64,
    /// Acknowledged, by class: on_time, out_of_order, late, too_late, malformed.
    pub by_class: BTreeMap<String, u64>,
    /// Acknowledged events that belong in the rollups (all but too-late), by kind.
    pub aggregated: BTreeMap<String, u64>,
}

/// Acknowledged malformed messages: expected in the dead-letter topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Malformed {
    pub count: u64,
    pub by_topic: BTreeMap<String, u64>,
    pub by_kind: BTreeMap<String, u64>,
}

/// Acknowledged events beyond the correction horizon: expected in the late topic, not in rollups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TooLate {
    pub count: u64,
    /// Sorted by topic, event time, key.
    pub events: Vec<TooLateEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TooLateEvent {
    pub topic: String,
    pub event_time_us: i64,
    /// The series key fields (as in the rollup rows).
    pub labels: BTreeMap<String, String>,
}

/// Exact figures of one latency distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    pub count: u64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    pub p50: i64,
    pub p90: i64,
    pub p95: i64,
    pub p99: i64,
    pub p999: i64,
}

impl Dist {
    /// From raw values (sorted in place).
    pub fn from_values(values: &mut [i64]) -> Dist {
        values.sort_unstable();
        let q = |q| exact_quantile(values, q);
        Dist {
            count: values.len() as u64,
            sum: values.iter().sum(),
            min: values.first().copied().unwrap_or(0),
            max: values.last().copied().unwrap_or(0),
            p50: q(QUANTILES[0]),
            p90: q(QUANTILES[1]),
            p95: q(QUANTILES[2]),
            p99: q(QUANTILES[3]),
            p999: q(QUANTILES[4]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRow {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub service: String,
    pub query_hash: String,
    pub query_type: String,
    pub execution_time_us: Dist,
    pub rows_affected_sum: i64,
    pub rows_affected_max: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub service: String,
    pub endpoint: String,
    pub method: String,
    pub response_time_us: Dist,
    /// Counts per status class: `1xx` .. `5xx`.
    pub status: BTreeMap<String, u64>,
}

/// A gauge over a window. `last` is the value at the latest event time, ties broken by the larger
/// value (so it does not depend on arrival order); `sum` adds the samples in canonical order
/// (event time, then offset), which matters only for floating-point gauges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge<T> {
    pub count: u64,
    pub min: T,
    pub max: T,
    pub last: T,
    pub sum: T,
}

impl<T: Copy + PartialOrd + std::ops::Add<Output = T>> Gauge<T> {
    /// From `(event time, value)` samples in canonical order.
    pub(crate) fn from_samples(mut it: impl Iterator<Item = (i64, T)>) -> Option<Gauge<T>> {
        let (t0, first) = it.next()?;
        let mut g = Gauge {
            count: 1,
            min: first,
            max: first,
            last: first,
            sum: first,
        };
        let mut last_at = t0;
        for (t, v) in it {
            g.count += 1;
            if v < g.min {
                g.min = v;
            }
            if v > g.max {
                g.max = v;
            }
            if t > last_at || (t == last_at && v > g.last) {
                g.last = v;
                last_at = t;
            }
            g.sum = g.sum + v;
        }
        Some(g)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheTotals {
    pub hits: i64,
    pub misses: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRow {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub service: String,
    pub instance: String,
    pub count: u64,
    pub cpu_utilization_ratio: Gauge<f64>,
    /// [`ratio_ppm`](super::ratio_ppm) of the CPU ratio per sample.
    pub cpu_utilization_ppm: Gauge<i64>,
    pub memory_used_bytes: Gauge<i64>,
    pub memory_limit_bytes: Gauge<i64>,
    /// `memory_used_bytes / memory_limit_bytes` per sample.
    pub memory_utilization_ratio: Gauge<f64>,
    /// [`ppm_of`](super::ppm_of)`(used, limit)` per sample (exact).
    pub memory_utilization_ppm: Gauge<i64>,
    /// `None` when no sample in the window had the field.
    pub heap_bytes: Option<Gauge<i64>>,
    pub gc_pause_us: Option<Gauge<i64>>,
    pub gc_count: Option<Gauge<i64>>,
    pub interval_us: Gauge<i64>,
    pub io_read_bytes: Gauge<i64>,
    pub io_write_bytes: Gauge<i64>,
    pub pool_active: Gauge<i64>,
    pub pool_idle: Gauge<i64>,
    pub pool_max: Gauge<i64>,
    /// `pool_active / pool_max` per sample.
    pub pool_utilization_ratio: Gauge<f64>,
    /// [`ppm_of`](super::ppm_of)`(active, max)` per sample (exact).
    pub pool_utilization_ppm: Gauge<i64>,
    pub pool_waiters: Gauge<i64>,
    pub pool_wait_us: Gauge<i64>,
    /// Hit and miss sums per cache name.
    pub caches: BTreeMap<String, CacheTotals>,
    /// Sums over all caches.
    pub cache_hits: i64,
    pub cache_misses: i64,
}
