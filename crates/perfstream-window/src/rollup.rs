//! Rollup types: what a closed (or corrected) window yields per key, and how two partial
//! rollups of the same window and key merge. The store uses the same merge for rows that already
//! exist, so the rule lives here, once.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use perfstream_events::{QueryType, TimestampUs};

use crate::counts::Counts;
use crate::hdr::{HdrLayout, MAX_SIGFIG, clamp_us};

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
    pub hist: LatencyHist,
}

impl Latency {
    /// An empty latency at `sigfig` significant digits (`1..=3`; panics outside).
    pub fn new(sigfig: u8) -> Self {
        Latency {
            count: 0,
            sum_us: 0,
            min_us: i64::MAX,
            max_us: i64::MIN,
            clamped: 0,
            hist: LatencyHist::new(sigfig),
        }
    }

    pub fn record(&mut self, v_us: i64) {
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(v_us);
        self.min_us = self.min_us.min(v_us);
        self.max_us = self.max_us.max(v_us);
        let (c, clamped) = clamp_us(v_us);
        if clamped {
            self.clamped += 1;
        }
        self.hist.record(c);
    }

    pub fn merge(&mut self, o: &Latency) {
        self.count += o.count;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
        self.clamped += o.clamped;
        self.hist.merge(&o.hist);
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
            .serialize(&self.hist.to_histogram(), &mut out)
            .expect("serializing to a Vec cannot fail");
        out
    }

    pub fn decode_hist(bytes: &[u8]) -> Result<Histogram<u64>, String> {
        Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("{e:?}"))
    }
}

/// The latency histogram of a rollup, compact: only its non-empty HDR buckets, as
/// `(bucket index, count)` sorted by index, so a rollup of a few values costs a few dozen bytes
/// instead of the 26 KiB of a dense `Histogram<u64>` over 1 µs..1 h.
///
/// It holds exactly the information of the standard histogram over
/// `HIST_LOW_US..=HIST_HIGH_US` at its precision ([`LatencyHist::to_histogram`] rebuilds it), and
/// reads percentiles with hdrhistogram's own rule, so every figure equals the dense path's.
/// Two values are equal when their histograms are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHist {
    sigfig: u8,
    /// Non-zero counts by bucket index, sorted, no index twice.
    buckets: Vec<(u16, u64)>,
}

/// Why a decoded histogram cannot become a [`LatencyHist`].
fn foreign(h: &Histogram<u64>) -> String {
    format!(
        "histogram bounds {}..={} at {} digits, expected {HIST_LOW_US}..={HIST_HIGH_US} at 1..={MAX_SIGFIG}",
        h.low(),
        h.high(),
        h.sigfig()
    )
}

impl LatencyHist {
    /// An empty histogram at `sigfig` significant digits (`1..=3`; panics outside).
    pub fn new(sigfig: u8) -> Self {
        assert!(
            (1..=MAX_SIGFIG).contains(&sigfig),
            "sigfig {sigfig} outside 1..={MAX_SIGFIG}"
        );
        LatencyHist {
            sigfig,
            buckets: Vec::new(),
        }
    }

    /// The engine's per-series counts, as a rollup histogram.
    pub(crate) fn from_counts(counts: &Counts, sigfig: u8) -> Self {
        let mut buckets: Vec<(u16, u64)> = Vec::new();
        match counts {
            Counts::Inline { len, idx } => {
                let mut idx = idx[..*len as usize].to_vec();
                idx.sort_unstable();
                for i in idx {
                    match buckets.last_mut() {
                        Some((j, n)) if *j == i => *n += 1,
                        _ => buckets.push((i, 1)),
                    }
                }
            }
            _ => {
                buckets.reserve_exact(counts.distinct());
                counts.for_each(|i, n| buckets.push((i, n)));
            }
        }
        buckets.shrink_to_fit();
        LatencyHist { sigfig, buckets }
    }

    /// The compact form of a histogram over our fixed range (as [`Latency::decode_hist`]
    /// returns); an error for any other bounds or precision.
    pub fn from_histogram(h: &Histogram<u64>) -> Result<Self, String> {
        if h.low() != HIST_LOW_US
            || h.high() != HIST_HIGH_US
            || !(1..=MAX_SIGFIG).contains(&h.sigfig())
        {
            return Err(foreign(h));
        }
        let mut out = LatencyHist::new(h.sigfig());
        let layout = HdrLayout::new(out.sigfig);
        for v in h.iter_recorded() {
            let lo = h.lowest_equivalent(v.value_iterated_to());
            let i = layout.index_of(lo);
            if lo > HIST_HIGH_US || layout.value_of(i) != lo {
                return Err(format!("value {lo} outside the histogram's buckets"));
            }
            out.buckets.push((i, v.count_at_value()));
        }
        out.buckets.shrink_to_fit();
        Ok(out)
    }

    /// The standard dense histogram with these counts (26 KiB at two digits): for
    /// serializing, or for APIs of `hdrhistogram`.
    pub fn to_histogram(&self) -> Histogram<u64> {
        let layout = HdrLayout::new(self.sigfig);
        let mut h = new_histogram(self.sigfig);
        for &(i, n) in &self.buckets {
            h.record_n(layout.value_of(i), n)
                .expect("bucket values lie inside the histogram range");
        }
        h
    }

    pub fn sigfig(&self) -> u8 {
        self.sigfig
    }

    /// Number of values recorded (saturating, like `Histogram::len`).
    pub fn len(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0_u64, |t, &(_, n)| t.saturating_add(n))
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Number of non-empty buckets (what this value's size is proportional to).
    pub fn distinct_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// `(lowest value of the bucket, count)` for every non-empty bucket, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let layout = HdrLayout::new(self.sigfig);
        self.buckets
            .iter()
            .map(move |&(i, n)| (layout.value_of(i), n))
    }

    /// Records one value, which must lie in `HIST_LOW_US..=HIST_HIGH_US` (panics otherwise).
    pub fn record(&mut self, v: u64) {
        assert!(
            (HIST_LOW_US..=HIST_HIGH_US).contains(&v),
            "value {v} outside the histogram range"
        );
        let i = HdrLayout::new(self.sigfig).index_of(v);
        match self.buckets.binary_search_by_key(&i, |&(j, _)| j) {
            Ok(p) => self.buckets[p].1 = self.buckets[p].1.saturating_add(1),
            Err(p) => self.buckets.insert(p, (i, 1)),
        }
    }

    /// Adds every count of `o` (as `Histogram::add` does).
    pub fn merge(&mut self, o: &LatencyHist) {
        if o.buckets.is_empty() {
            return;
        }
        if o.sigfig != self.sigfig {
            // Different bucket layouts: rebuild through hdrhistogram's own re-recording.
            let mut h = self.to_histogram();
            h.add(o.to_histogram()).expect("same histogram bounds");
            *self = LatencyHist::from_histogram(&h).expect("same bounds and precision");
            return;
        }
        let (a, b) = (&self.buckets, &o.buckets);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut x, mut y) = (0, 0);
        while x < a.len() && y < b.len() {
            let ((i, n), (j, m)) = (a[x], b[y]);
            if i < j {
                out.push((i, n));
                x += 1;
            } else if j < i {
                out.push((j, m));
                y += 1;
            } else {
                out.push((i, n.saturating_add(m)));
                x += 1;
                y += 1;
            }
        }
        out.extend_from_slice(&a[x..]);
        out.extend_from_slice(&b[y..]);
        out.shrink_to_fit();
        self.buckets = out;
    }

    /// Value at quantile `q`, by `Histogram::value_at_quantile`'s rule: the highest value
    /// equivalent to the bucket where the count reaches `ceil(q * len)` (at least 1), the lowest
    /// for `q == 0`, and 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.value_at_quantiles([q]).next().unwrap_or(0)
    }

    /// Values at several ascending quantiles in one pass, as `Histogram::value_at_quantiles`:
    /// one value per quantile, in order, stopping at the first quantile below its predecessor;
    /// an empty histogram yields 0 for every quantile, in any order (it never stops early, as
    /// only a value read from a bucket counts as a predecessor).
    pub fn value_at_quantiles<I: IntoIterator<Item = f64>>(
        &self,
        quantiles: I,
    ) -> impl Iterator<Item = u64> + use<'_, I> {
        let layout = HdrLayout::new(self.sigfig);
        let total = self.len();
        let mut quantiles = quantiles.into_iter();
        let mut buckets = self.buckets.iter();
        let mut at: u64 = 0;
        let mut index: u16 = 0;
        let mut previous: Option<f64> = None;
        std::iter::from_fn(move || {
            let q = quantiles.next()?;
            if previous.is_some_and(|p| p > q) {
                return None;
            }
            let target = ((q.clamp(0., 1.) * total as f64).ceil() as u64).max(1);
            while at < target {
                let Some(&(i, n)) = buckets.next() else {
                    // Only when empty (else the target is at most `total`, barring f64 rounding
                    // past 2^53 values). As in hdrhistogram, this quantile does not become the
                    // predecessor, so every later one yields 0 too, whatever its order.
                    return Some(0);
                };
                index = i;
                at = at.saturating_add(n);
            }
            previous = Some(q);
            Some(if q == 0.0 {
                layout.value_of(index)
            } else {
                layout.highest_equivalent(index)
            })
        })
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

/// The key of one series of any kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKey {
    Query(QueryKey),
    Request(RequestKey),
    Resource(ResourceKey),
}

impl SeriesKey {
    pub fn service(&self) -> &str {
        match self {
            SeriesKey::Query(k) => &k.service,
            SeriesKey::Request(k) => &k.service,
            SeriesKey::Resource(k) => &k.service,
        }
    }

    /// The overflow series of its service (every event of a new key beyond the series cap).
    pub fn is_overflow(&self) -> bool {
        match self {
            SeriesKey::Query(k) => k.query_hash == crate::OVERFLOW_KEY,
            SeriesKey::Request(k) => k.endpoint == crate::OVERFLOW_KEY,
            SeriesKey::Resource(k) => k.instance == crate::OVERFLOW_KEY,
        }
    }

    /// The key `event` is aggregated under (before any overflow), with the tenant dimension
    /// on or off as configured.
    pub fn of(event: &perfstream_events::Event, tenant_dimension: bool) -> SeriesKey {
        use perfstream_events::Event;
        match event {
            Event::Query(e) => SeriesKey::Query(QueryKey {
                service: e.service.clone(),
                query_hash: e.query_hash.clone(),
                query_type: e.query_type,
                tenant_id: if tenant_dimension {
                    e.tenant_id.clone().unwrap_or_default()
                } else {
                    String::new()
                },
            }),
            Event::Request(e) => SeriesKey::Request(RequestKey {
                service: e.service.clone(),
                endpoint: e.endpoint.clone(),
                method: e.method.clone(),
            }),
            Event::Resource(e) => SeriesKey::Resource(ResourceKey {
                service: e.service.clone(),
                instance: e.instance.clone(),
            }),
        }
    }

    /// Whether it is a query, request or resource series.
    pub fn kind(&self) -> perfstream_events::EventKind {
        use perfstream_events::EventKind;
        match self {
            SeriesKey::Query(_) => EventKind::Query,
            SeriesKey::Request(_) => EventKind::Request,
            SeriesKey::Resource(_) => EventKind::Resource,
        }
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeriesKey::Query(k) => write!(
                f,
                "query series service={:?} query_hash={:?} query_type={} tenant_id={:?}",
                k.service,
                k.query_hash,
                k.query_type.as_str(),
                k.tenant_id
            ),
            SeriesKey::Request(k) => write!(
                f,
                "request series service={:?} endpoint={:?} method={:?}",
                k.service, k.endpoint, k.method
            ),
            SeriesKey::Resource(k) => write!(
                f,
                "resource series service={:?} instance={:?}",
                k.service, k.instance
            ),
        }
    }
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
    /// The slowest executions of the window, slowest first (`window.samples_per_series`).
    pub samples: Vec<crate::QuerySample>,
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
    /// The slowest requests of the window, slowest first (`window.samples_per_series`).
    pub samples: Vec<crate::RequestSample>,
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
    /// Cache hits over all caches, saturating at [`CACHE_COUNTER_MAX`].
    pub cache_hits: i64,
    /// Cache misses over all caches, saturating at [`CACHE_COUNTER_MAX`].
    pub cache_misses: i64,
}

/// Ceiling of [`ResourceFigures::cache_hits`] and `cache_misses`, each: `resource_rollups`
/// computes `cache_hits + cache_misses` in bigint (its generated `cache_hit_ratio`), so each
/// saturates at half the range and their sum always fits. Validation bounds the lookups of one
/// sample (`perfstream_events::validate::MAX_COUNT`), so only a rollup of more than 2^20
/// samples at that maximum ever reaches it (issue 12).
pub const CACHE_COUNTER_MAX: i64 = i64::MAX / 2;

/// Adds to a cache counter, saturating at [`CACHE_COUNTER_MAX`].
pub fn add_cache_counter(a: i64, b: i64) -> i64 {
    a.saturating_add(b).min(CACHE_COUNTER_MAX)
}

impl ResourceFigures {
    /// Hit ratio over all caches, `None` when there were no lookups.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let total = i128::from(self.cache_hits) + i128::from(self.cache_misses);
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
        crate::samples::merge(&mut self.samples, &o.samples, crate::MAX_SAMPLES);
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
        crate::samples::merge(&mut self.samples, &o.samples, crate::MAX_SAMPLES);
    }
}

impl Merge for ResourceFigures {
    fn merge(&mut self, o: &Self) {
        self.samples += o.samples;
        for (a, b) in self.gauges_mut().into_iter().zip(o.gauges()) {
            a.merge(b);
        }
        self.cache_hits = add_cache_counter(self.cache_hits, o.cache_hits);
        self.cache_misses = add_cache_counter(self.cache_misses, o.cache_misses);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(values: &[u64], sigfig: u8) -> Histogram<u64> {
        let mut h = new_histogram(sigfig);
        values.iter().for_each(|&v| h.record(v).unwrap());
        h
    }

    fn compact(values: &[u64], sigfig: u8) -> LatencyHist {
        let mut h = LatencyHist::new(sigfig);
        values.iter().for_each(|&v| h.record(v));
        h
    }

    fn dense_bytes(h: &Histogram<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        V2DeflateSerializer::new().serialize(h, &mut out).unwrap();
        out
    }

    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            1..200_u64,
            1..5_000_000_u64,
            Just(HIST_HIGH_US),
            Just(HIST_LOW_US),
        ]
    }

    #[test]
    fn size_follows_distinct_buckets_not_the_range() {
        let mut l = Latency::new(DEFAULT_SIGFIG);
        for v in [3, 3, 1_000, 2_000_000] {
            l.record(v);
        }
        assert_eq!(l.hist.distinct_buckets(), 3);
        assert_eq!(l.hist.len(), 4);
        assert!(l.hist.buckets.capacity() <= 4);
        assert!(std::mem::size_of::<LatencyHist>() <= 32);
    }

    #[test]
    fn empty_matches_the_dense_histogram() {
        let l = Latency::new(DEFAULT_SIGFIG);
        let h = new_histogram(DEFAULT_SIGFIG);
        assert_eq!(l.hist.to_histogram(), h);
        assert_eq!(l.hist_bytes(), dense_bytes(&h));
        for q in [0.0, 0.5, 1.0] {
            assert_eq!(l.quantile_us(q) as u64, h.value_at_quantile(q));
        }
        // One 0 per quantile even out of order (the proptest regression of sigfig 1, qs [1, 0]).
        let qs = [1.0, 0.0, 0.5];
        let got: Vec<u64> = l.hist.value_at_quantiles(qs).collect();
        let want: Vec<u64> = h.value_at_quantiles(qs).collect();
        assert_eq!(want, [0, 0, 0]);
        assert_eq!(got, want);
        assert_eq!(
            Latency::decode_hist(&l.hist_bytes()).map(|h| LatencyHist::from_histogram(&h)),
            Ok(Ok(l.hist))
        );
    }

    #[test]
    fn cache_counters_saturate_so_their_sum_fits() {
        // Issue 12: `resource_rollups.cache_hit_ratio` adds the two in bigint.
        let mut a = ResourceFigures {
            cache_hits: CACHE_COUNTER_MAX - 1,
            cache_misses: CACHE_COUNTER_MAX,
            ..ResourceFigures::default()
        };
        let b = ResourceFigures {
            cache_hits: i64::MAX,
            cache_misses: 1,
            ..ResourceFigures::default()
        };
        a.merge(&b);
        assert_eq!(
            (a.cache_hits, a.cache_misses),
            (CACHE_COUNTER_MAX, CACHE_COUNTER_MAX)
        );
        assert!(a.cache_hits.checked_add(a.cache_misses).is_some());
        assert_eq!(a.cache_hit_ratio(), Some(0.5));
    }

    #[test]
    fn foreign_histograms_are_refused() {
        let h = Histogram::<u64>::new_with_bounds(1, 1_000, 2).unwrap();
        assert!(LatencyHist::from_histogram(&h).is_err());
        let h = Histogram::<u64>::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, 4).unwrap();
        assert!(LatencyHist::from_histogram(&h).is_err());
    }

    proptest! {
        #[test]
        fn same_figures_as_the_dense_histogram(
            sigfig in 1..=MAX_SIGFIG,
            a in prop::collection::vec(value(), 0..400),
            b in prop::collection::vec(value(), 0..40),
            qs in prop::collection::vec(prop_oneof![-0.5..1.5_f64, Just(0.0), Just(1.0), Just(f64::NAN)], 1..8),
        ) {
            let (mut ca, cb) = (compact(&a, sigfig), compact(&b, sigfig));
            let (mut pa, pb) = (plain(&a, sigfig), plain(&b, sigfig));
            prop_assert_eq!(&ca.to_histogram(), &pa);
            prop_assert_eq!(&LatencyHist::from_histogram(&pa).unwrap(), &ca);
            ca.merge(&cb);
            pa.add(&pb).unwrap();
            prop_assert_eq!(&ca.to_histogram(), &pa);
            prop_assert_eq!(ca.len(), pa.len());
            for &q in &qs {
                prop_assert_eq!(ca.value_at_quantile(q), pa.value_at_quantile(q), "q {}", q);
            }
            let got: Vec<u64> = ca.value_at_quantiles(qs.iter().copied()).collect();
            let want: Vec<u64> = pa.value_at_quantiles(qs.iter().copied()).collect();
            prop_assert_eq!(got, want);
            let want: Vec<u64> = pa.value_at_quantiles(PERCENTILES).collect();
            let got: Vec<u64> = ca.value_at_quantiles(PERCENTILES).collect();
            prop_assert_eq!(got, want);
            let l = Latency { count: 0, sum_us: 0, min_us: 0, max_us: 0, clamped: 0, hist: ca.clone() };
            let bytes = l.hist_bytes();
            prop_assert_eq!(&bytes, &dense_bytes(&pa));
            let back = Latency::decode_hist(&bytes).unwrap();
            prop_assert_eq!(&back, &pa);
            prop_assert_eq!(LatencyHist::from_histogram(&back).unwrap(), ca);
        }

        #[test]
        fn merge_across_precisions_matches_histogram_add(
            a in prop::collection::vec(value(), 0..50),
            b in prop::collection::vec(value(), 1..50),
        ) {
            let mut ca = compact(&a, 2);
            ca.merge(&compact(&b, 3));
            let mut pa = plain(&a, 2);
            pa.add(plain(&b, 3)).unwrap();
            prop_assert_eq!(ca.to_histogram(), pa);
        }
    }
}
