//! Per-series aggregation state and its conversion to rollup figures.
//!
//! Exact figures (count, sum, min, max, status counts, gauges) are plain integers; the latency
//! distribution is a compact [`Counts`], turned into a standard histogram only on emit.

use perfstream_events::{QueryEvent, RequestEvent, ResourceEvent};

use crate::counts::Counts;
use crate::hdr::{HdrLayout, clamp_us};
use crate::key::PackedKey;
use crate::rollup::{
    Latency, LatencyHist, Merge, QueryFigures, QueryKey, RequestFigures, RequestKey,
    ResourceFigures, ResourceKey,
};
use crate::samples::{self, MAX_SAMPLES, QuerySample, RequestSample, Source};

/// What the engine needs of a series type, whatever its kind.
pub trait Series: Default {
    type Key: PackedKey;
    type Figures;
    fn merge(&mut self, other: &Self, layout: &HdrLayout);
    /// The figures of the window, with at most `samples` samples.
    fn into_figures(self, layout: &HdrLayout, sigfig: u8, samples: usize) -> Self::Figures;
    /// Heap bytes the series owns (histogram buckets, text), for the memory budget.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// Exact count/sum/min/max plus compact histogram counts of one latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyState {
    count: u64,
    sum_us: i64,
    min_us: i64,
    max_us: i64,
    clamped: u64,
    counts: Counts,
}

impl Default for LatencyState {
    fn default() -> Self {
        LatencyState {
            count: 0,
            sum_us: 0,
            min_us: i64::MAX,
            max_us: i64::MIN,
            clamped: 0,
            counts: Counts::default(),
        }
    }
}

impl LatencyState {
    /// Records one value; returns whether it had to be clamped into the histogram range.
    #[inline]
    pub fn record(&mut self, v_us: i64, layout: &HdrLayout) -> bool {
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(v_us);
        self.min_us = self.min_us.min(v_us);
        self.max_us = self.max_us.max(v_us);
        let (c, clamped) = clamp_us(v_us);
        self.clamped += u64::from(clamped);
        self.counts.record(layout, layout.index_of(c));
        clamped
    }

    pub fn merge(&mut self, o: &Self, layout: &HdrLayout) {
        self.count += o.count;
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
        self.clamped += o.clamped;
        self.counts.merge(layout, &o.counts);
    }

    pub fn heap_bytes(&self) -> usize {
        self.counts.heap_bytes()
    }

    pub fn to_latency(&self, sigfig: u8) -> Latency {
        Latency {
            count: self.count,
            sum_us: self.sum_us,
            min_us: self.min_us,
            max_us: self.max_us,
            clamped: self.clamped,
            hist: LatencyHist::from_counts(&self.counts, sigfig),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySeries {
    latency: LatencyState,
    rows_sum: i64,
    rows_max: i64,
    /// Smallest normalized text seen, boxed to keep the series small.
    text: Option<Box<str>>,
    /// [`text_hash`] of `text`: a text with the same hash is taken to be the same text, so the
    /// usual event (same text as before) never follows the `text` pointer. A 64-bit collision
    /// between two different texts of one key in one window could keep the larger one.
    text_hash: u64,
    /// The slowest executions, slowest first; allocated with the first one.
    samples: Vec<QuerySample>,
}

impl Default for QuerySeries {
    fn default() -> Self {
        QuerySeries {
            latency: LatencyState::default(),
            rows_sum: 0,
            rows_max: i64::MIN,
            text: None,
            text_hash: 0,
            samples: Vec::new(),
        }
    }
}

/// A fast deterministic 64-bit hash of a query text (FxHash-style over 8-byte words).
pub fn text_hash(s: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = (s.len() as u64).wrapping_mul(K);
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let mut last = [0_u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// `t` cut to at most `max` bytes, on a character boundary (`window.max_query_text_bytes`).
pub fn truncate_text(t: &str, max: usize) -> &str {
    if t.len() <= max {
        return t;
    }
    let mut end = max;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    &t[..end]
}

/// Keeps the smaller of the current text and `candidate`; returns whether it took `candidate`.
fn keep_smallest(slot: &mut Option<Box<str>>, candidate: &str) -> bool {
    match slot {
        Some(cur) if **cur <= *candidate => false,
        _ => {
            *slot = Some(candidate.into());
            true
        }
    }
}

impl QuerySeries {
    #[inline]
    pub fn record(
        &mut self,
        e: &QueryEvent,
        layout: &HdrLayout,
        max_text: usize,
        source: Source,
        k: usize,
    ) -> bool {
        samples::offer(&mut self.samples, k, e.execution_time_us, source, || {
            QuerySample {
                duration_us: e.execution_time_us,
                rows_affected: e.rows_affected,
                instance: e.instance.clone(),
                tenant_id: e.tenant_id.clone(),
                event_time_us: e.executed_at_us,
                trace_id: samples::trace_id(&e.trace_id),
                source,
            }
        });
        self.rows_sum = self.rows_sum.saturating_add(e.rows_affected);
        self.rows_max = self.rows_max.max(e.rows_affected);
        if let Some(t) = &e.query_text {
            let t = truncate_text(t, max_text);
            self.offer_text(t, text_hash(t));
        }
        self.latency.record(e.execution_time_us, layout)
    }

    #[inline]
    fn offer_text(&mut self, t: &str, hash: u64) {
        if (self.text.is_none() || hash != self.text_hash) && keep_smallest(&mut self.text, t) {
            self.text_hash = hash;
        }
    }
}

impl Series for QuerySeries {
    type Key = QueryKey;
    type Figures = QueryFigures;

    fn heap_bytes(&self) -> usize {
        self.latency.heap_bytes()
            + self.text.as_ref().map_or(0, |t| t.len())
            + samples::heap_bytes(&self.samples, self.samples.capacity())
    }

    fn merge(&mut self, o: &Self, layout: &HdrLayout) {
        self.latency.merge(&o.latency, layout);
        self.rows_sum = self.rows_sum.saturating_add(o.rows_sum);
        self.rows_max = self.rows_max.max(o.rows_max);
        if let Some(t) = &o.text {
            self.offer_text(t, o.text_hash);
        }
        samples::merge(&mut self.samples, &o.samples, MAX_SAMPLES);
    }

    fn into_figures(mut self, _: &HdrLayout, sigfig: u8, k: usize) -> QueryFigures {
        self.samples.truncate(k);
        QueryFigures {
            latency: self.latency.to_latency(sigfig),
            rows_sum: self.rows_sum,
            rows_max: self.rows_max,
            query_text: self.text.map(String::from),
            samples: self.samples,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSeries {
    latency: LatencyState,
    /// 2xx, 3xx, 4xx, 5xx, other.
    status: [u64; 5],
    /// The slowest requests, slowest first; allocated with the first one.
    samples: Vec<RequestSample>,
}

/// Index into [`RequestSeries::status`] of an HTTP status code.
fn status_class(code: i32) -> usize {
    match code {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    }
}

impl RequestSeries {
    #[inline]
    pub fn record(
        &mut self,
        e: &RequestEvent,
        layout: &HdrLayout,
        source: Source,
        k: usize,
    ) -> bool {
        samples::offer(&mut self.samples, k, e.response_time_us, source, || {
            RequestSample {
                duration_us: e.response_time_us,
                status_code: e.status_code,
                request_bytes: e.request_bytes,
                response_bytes: e.response_bytes,
                instance: e.instance.clone(),
                event_time_us: e.occurred_at_us,
                trace_id: samples::trace_id(&e.trace_id),
                source,
            }
        });
        self.status[status_class(e.status_code)] += 1;
        self.latency.record(e.response_time_us, layout)
    }
}

impl Series for RequestSeries {
    type Key = RequestKey;
    type Figures = RequestFigures;

    fn heap_bytes(&self) -> usize {
        self.latency.heap_bytes() + samples::heap_bytes(&self.samples, self.samples.capacity())
    }

    fn merge(&mut self, o: &Self, layout: &HdrLayout) {
        self.latency.merge(&o.latency, layout);
        for (a, b) in self.status.iter_mut().zip(o.status) {
            *a += b;
        }
        samples::merge(&mut self.samples, &o.samples, MAX_SAMPLES);
    }

    fn into_figures(mut self, _: &HdrLayout, sigfig: u8, k: usize) -> RequestFigures {
        self.samples.truncate(k);
        let [s2, s3, s4, s5, other] = self.status;
        RequestFigures {
            latency: self.latency.to_latency(sigfig),
            status_2xx: s2,
            status_3xx: s3,
            status_4xx: s4,
            status_5xx: s5,
            status_other: other,
            samples: self.samples,
        }
    }
}

/// `num / den` in parts per million, rounded half away from zero; `None` when `den <= 0`.
fn ppm(num: i64, den: i64) -> Option<i64> {
    if den <= 0 {
        return None;
    }
    let (n, d) = (i128::from(num) * 1_000_000, i128::from(den));
    let q = (2 * n + n.signum() * d) / (2 * d);
    Some(q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Resource samples are few per key (one per instance and interval), so their state is the
/// figures themselves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSeries(pub ResourceFigures);

impl ResourceSeries {
    pub fn record(&mut self, e: &ResourceEvent) {
        let f = &mut self.0;
        let at = e.observed_at_us;
        f.samples += 1;
        f.cpu_ppm
            .record(crate::rollup::ratio_to_ppm(e.cpu_utilization_ratio), at);
        f.memory_used_bytes.record(e.memory_used_bytes, at);
        f.memory_limit_bytes.record(e.memory_limit_bytes, at);
        if let Some(u) = ppm(e.memory_used_bytes, e.memory_limit_bytes) {
            f.memory_utilization_ppm.record(u, at);
        }
        if let Some(v) = e.heap_bytes {
            f.heap_bytes.record(v, at);
        }
        if let Some(v) = e.gc_pause_us {
            f.gc_pause_us.record(v, at);
        }
        if let Some(v) = e.gc_count {
            f.gc_count.record(v, at);
        }
        f.interval_us.record(e.interval_us, at);
        f.pool_active.record(i64::from(e.pool_active), at);
        f.pool_max.record(i64::from(e.pool_max), at);
        if let Some(u) = ppm(i64::from(e.pool_active), i64::from(e.pool_max)) {
            f.pool_utilization_ppm.record(u, at);
        }
        f.pool_waiters.record(i64::from(e.pool_waiters), at);
        f.pool_wait_us.record(e.pool_wait_us, at);
        f.io_read_bytes.record(e.io_read_bytes, at);
        f.io_write_bytes.record(e.io_write_bytes, at);
        for c in e.caches.iter().flat_map(|m| m.values()) {
            f.cache_hits = crate::rollup::add_cache_counter(f.cache_hits, c.hits);
            f.cache_misses = crate::rollup::add_cache_counter(f.cache_misses, c.misses);
        }
    }
}

impl Series for ResourceSeries {
    type Key = ResourceKey;
    type Figures = ResourceFigures;

    fn merge(&mut self, o: &Self, _: &HdrLayout) {
        self.0.merge(&o.0);
    }

    fn into_figures(self, _: &HdrLayout, _: u8, _: usize) -> ResourceFigures {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_rounds_and_refuses_zero_denominators() {
        assert_eq!(ppm(1, 3), Some(333_333));
        assert_eq!(ppm(2, 3), Some(666_667));
        assert_eq!(ppm(3, 3), Some(1_000_000));
        assert_eq!(ppm(5, 0), None);
        assert_eq!(ppm(5, -1), None);
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), 0);
        assert_eq!(status_class(302), 1);
        assert_eq!(status_class(404), 2);
        assert_eq!(status_class(599), 3);
        assert_eq!(status_class(101), 4);
        assert_eq!(status_class(600), 4);
    }

    #[test]
    fn smallest_query_text_wins_in_any_order() {
        let layout = HdrLayout::new(2);
        let mut merged = QuerySeries::default();
        for order in [
            ["select b", "select a", "select c"],
            ["select c", "select b", "select a"],
        ] {
            let mut s = QuerySeries::default();
            for t in order {
                let e = QueryEvent {
                    service: "s".into(),
                    instance: "i".into(),
                    query_hash: "h".into(),
                    query_type: perfstream_events::QueryType::Select,
                    query_text: Some(t.into()),
                    execution_time_us: 1,
                    rows_affected: 1,
                    tenant_id: None,
                    trace_id: None,
                    executed_at_us: 0,
                };
                s.record(
                    &e,
                    &layout,
                    usize::MAX,
                    Source {
                        partition: crate::PartitionId {
                            topic: 0,
                            partition: 0,
                        },
                        offset: 0,
                    },
                    0,
                );
            }
            assert_eq!(s.text.as_deref(), Some("select a"));
            assert_eq!(s.text_hash, text_hash("select a"));
            let mut other = QuerySeries::default();
            other.offer_text("select 0", text_hash("select 0"));
            merged.merge(&s, &layout);
            s.merge(&other, &layout);
            assert_eq!(s.text.as_deref(), Some("select 0"));
        }
        assert_eq!(merged.text.as_deref(), Some("select a"));
    }

    #[test]
    fn text_hash_sees_every_byte() {
        let a = "select * from t where id = $1";
        let hashes: std::collections::HashSet<u64> = (0..a.len())
            .map(|i| {
                let mut b = a.as_bytes().to_vec();
                b[i] ^= 1;
                text_hash(std::str::from_utf8(&b).unwrap())
            })
            .chain([text_hash(a), text_hash(&a[..a.len() - 1]), text_hash("")])
            .collect();
        assert_eq!(hashes.len(), a.len() + 3);
    }
}
