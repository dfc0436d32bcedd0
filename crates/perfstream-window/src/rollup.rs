//! Rollup types: what a closed (or corrected) window yields per key, and how two partial
//! rollups of the same window and key merge. The store uses the same merge for rows that already
//! exist, so the rule lives here, once.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use perfstream_events::{QueryType, TimestampUs};

/// Histogram range: 1 µs to 1 h. Values outside are clamped into it (and counted).
pub const HIST_LOW_US: u64 = 1;
pub const HIST_HIGH_US: u64 = 3_600_000_000;
/// Default significant digits (at most 1 % relative error).
pub const DEFAULT_SIGFIG: u8 = 2;

/// The percentiles stored with every latency rollup, as quantiles.
pub const PERCENTILES: [f64; 5] = [0.50, 0.90, 0.95, 0.99, 0.999];

pub fn new_histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, sigfig).expect("static bounds are valid")
}

/// Latency figures of one window and key. `count`, `sum_us`, `min_us`, `max_us` are exact (taken
/// before clamping); percentiles come from `hist`.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub sum_us: i64,
    pub min_us: i64,
    pub max_us: i64,
    /// Values recorded clamped into the histogram range.
    pub clamped: u64,
    pub hist: Histogram<u64>,
}

impl Latency {
    pub fn new(sigfig: u8) -> Self {
        Latency {
            count: 0,
            sum_us: 0,
            min_us: i64::MAX,
            max_us: i64::MIN,
            clamped: 0,
            hist: new_histogram(sigfig),
        }
    }

    pub fn record(&mut self, v_us: i64) {
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(v_us);
        self.min_us = self.min_us.min(v_us);
        self.max_us = self.max_us.max(v_us);
        let c = (v_us.max(0) as u64).clamp(HIST_LOW_US, HIST_HIGH_US);
        if c as i64 != v_us {
            self.clamped += 1;
        }
        self.hist.record(c).expect("value clamped into range");
    }

    pub fn merge(&mut self, o: &Latency) {
        self.count += o.count;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
        self.clamped += o.clamped;
        self.hist.add(&o.hist).expect("same histogram bounds");
    }

    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }

    /// HDR-equivalent value at quantile `q` (0..=1), in µs.
    pub fn quantile_us(&self, q: f64) -> i64 {
        self.hist.value_at_quantile(q) as i64
    }

    /// The histogram in the standard HdrHistogram V2 compressed format.
    pub fn hist_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut out)
            .expect("serializing to a Vec cannot fail");
        out
    }

    pub fn decode_hist(bytes: &[u8]) -> Result<Histogram<u64>, String> {
        Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("{e:?}"))
    }
}

/// Min/max/mean/last of a gauge. Values are integers in the gauge's unit (bytes, µs, counts, or
/// parts per million for ratios) so sums are exact and independent of event order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge {
    pub count: u64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    /// Value at the latest event time; ties broken by the larger value, so merge order never matters.
    pub last: i64,
    pub last_at_us: TimestampUs,
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
            last: 0,
            last_at_us: i64::MIN,
        }
    }
}

impl Gauge {
    pub fn record(&mut self, v: i64, at_us: TimestampUs) {
        self.count += 1;
        self.sum = self.sum.saturating_add(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if (at_us, v) > (self.last_at_us, self.last) {
            self.last = v;
            self.last_at_us = at_us;
        }
    }

    pub fn merge(&mut self, o: &Gauge) {
        if o.count == 0 {
            return;
        }
        self.count += o.count;
        self.sum = self.sum.saturating_add(o.sum);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if (o.last_at_us, o.last) > (self.last_at_us, self.last) {
            self.last = o.last;
            self.last_at_us = o.last_at_us;
        }
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// Parts per million: the fixed-point unit of ratio gauges.
pub const PPM: f64 = 1_000_000.0;

pub fn ratio_to_ppm(r: f64) -> i64 {
    (r * PPM).round() as i64
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryKey {
    pub service: String,
    pub query_hash: String,
    pub query_type: QueryType,
    /// Empty when the tenant dimension is off or the event had none; never NULL.
    pub tenant_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    pub service: String,
    pub endpoint: String,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub service: String,
    pub instance: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryFigures {
    pub latency: Latency,
    pub rows_sum: i64,
    pub rows_max: i64,
    /// Normalized text seen in the window (the lexicographically smallest, for determinism).
    pub query_text: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestFigures {
    /// Response time over all statuses.
    pub latency: Latency,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Statuses outside 200..=599 (1xx and anything odd).
    pub status_other: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceFigures {
    pub samples: u64,
    pub cpu_ppm: Gauge,
    pub memory_used_bytes: Gauge,
    pub memory_limit_bytes: Gauge,
    pub memory_utilization_ppm: Gauge,
    pub heap_bytes: Gauge,
    pub gc_pause_us: Gauge,
    pub gc_count: Gauge,
    pub interval_us: Gauge,
    pub pool_active: Gauge,
    pub pool_max: Gauge,
    pub pool_utilization_ppm: Gauge,
    pub pool_waiters: Gauge,
    pub pool_wait_us: Gauge,
    pub io_read_bytes: Gauge,
    pub io_write_bytes: Gauge,
    pub cache_hits: i64,
    pub cache_misses: i64,
}

impl ResourceFigures {
    /// Hit ratio over all caches, `None` when there were no lookups.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let total = self.cache_hits + self.cache_misses;
        (total > 0).then(|| self.cache_hits as f64 / total as f64)
    }
}

/// Merging two partial figures of the same window and key. Commutative and associative.
pub trait Merge {
    fn merge(&mut self, other: &Self);
}

impl Merge for QueryFigures {
    fn merge(&mut self, o: &Self) {
        self.latency.merge(&o.latency);
        self.rows_sum = self.rows_sum.saturating_add(o.rows_sum);
        self.rows_max = self.rows_max.max(o.rows_max);
        self.query_text = match (self.query_text.take(), &o.query_text) {
            (Some(a), Some(b)) => Some(if *b < a { b.clone() } else { a }),
            (a, b) => a.or_else(|| b.clone()),
        };
    }
}

impl Merge for RequestFigures {
    fn merge(&mut self, o: &Self) {
        self.latency.merge(&o.latency);
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.status_other += o.status_other;
    }
}

impl Merge for ResourceFigures {
    fn merge(&mut self, o: &Self) {
        self.samples += o.samples;
        for (a, b) in self.gauges_mut().into_iter().zip(o.gauges()) {
            a.merge(b);
        }
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
    }
}

impl ResourceFigures {
    fn gauges(&self) -> [&Gauge; 15] {
        [
            &self.cpu_ppm,
            &self.memory_used_bytes,
            &self.memory_limit_bytes,
            &self.memory_utilization_ppm,
            &self.heap_bytes,
            &self.gc_pause_us,
            &self.gc_count,
            &self.interval_us,
            &self.pool_active,
            &self.pool_max,
            &self.pool_utilization_ppm,
            &self.pool_waiters,
            &self.pool_wait_us,
            &self.io_read_bytes,
            &self.io_write_bytes,
        ]
    }
    fn gauges_mut(&mut self) -> [&mut Gauge; 15] {
        [
            &mut self.cpu_ppm,
            &mut self.memory_used_bytes,
            &mut self.memory_limit_bytes,
            &mut self.memory_utilization_ppm,
            &mut self.heap_bytes,
            &mut self.gc_pause_us,
            &mut self.gc_count,
            &mut self.interval_us,
            &mut self.pool_active,
            &mut self.pool_max,
            &mut self.pool_utilization_ppm,
            &mut self.pool_waiters,
            &mut self.pool_wait_us,
            &mut self.io_read_bytes,
            &mut self.io_write_bytes,
        ]
    }
}

/// One window's figures for one key. `window_end_us` is exclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup<K, F> {
    pub window_start_us: TimestampUs,
    pub window_end_us: TimestampUs,
    pub key: K,
    pub figures: F,
}

pub type QueryRollup = Rollup<QueryKey, QueryFigures>;
pub type RequestRollup = Rollup<RequestKey, RequestFigures>;
pub type ResourceRollup = Rollup<ResourceKey, ResourceFigures>;

/// Rollups of all three kinds, as produced by one flush (closed windows or corrections).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollups {
    pub query: Vec<QueryRollup>,
    pub request: Vec<RequestRollup>,
    pub resource: Vec<ResourceRollup>,
}

impl Rollups {
    pub fn len(&self) -> usize {
        self.query.len() + self.request.len() + self.resource.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
