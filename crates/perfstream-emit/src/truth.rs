//! The truth file: exact expected aggregates of the acknowledged events, computed here from the
//! raw values, independently of perfstream-window (the code under test). Format and definitions
//! in `docs/truth-format.md`.

use std::collections::BTreeMap;

use perfstream_events::{Event, ResourceEvent};
use serde::{Deserialize, Serialize};

use crate::generate::{self, Class, Record};
use crate::scenario::{Episode, Scenario, TopicKind};

/// Format tag of the file.
pub const FORMAT: &str = "perfstream-truth/1";

/// The quantiles reported, in the order of the `p50 .. p999` fields.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

/// How percentiles are defined (written into the file).
pub const PERCENTILE_DEFINITION: &str = "p(q) = v[r-1] where v are the raw values sorted ascending, n = len(v) and r = max(1, ceil(q * n)) computed in IEEE double (q * n as f64); the smallest value such that at least q of the values are <= it, HdrHistogram's value_at_quantile rank";

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

/// See [`PERCENTILE_DEFINITION`]. `sorted` must be sorted ascending; 0 when empty.
pub fn exact_quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
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
    fn from_samples(mut it: impl Iterator<Item = (i64, T)>) -> Option<Gauge<T>> {
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

/// `num / den` in parts per million, rounded half away from zero, computed exactly.
pub fn ppm_of(num: i64, den: i64) -> i64 {
    let (n, d) = (i128::from(num) * 1_000_000, i128::from(den));
    let q = (2 * n.abs() + d) / (2 * d);
    (q * n.signum()) as i64
}

/// A ratio in parts per million: `round_half_away_from_zero(r * 1e6)` in IEEE double.
pub fn ratio_ppm(r: f64) -> i64 {
    (r * 1e6).round() as i64
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
    /// [`ratio_ppm`] of the CPU ratio per sample.
    pub cpu_utilization_ppm: Gauge<i64>,
    pub memory_used_bytes: Gauge<i64>,
    pub memory_limit_bytes: Gauge<i64>,
    /// `memory_used_bytes / memory_limit_bytes` per sample.
    pub memory_utilization_ratio: Gauge<f64>,
    /// [`ppm_of`]`(used, limit)` per sample (exact).
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
    /// [`ppm_of`]`(active, max)` per sample (exact).
    pub pool_utilization_ppm: Gauge<i64>,
    pub pool_waiters: Gauge<i64>,
    pub pool_wait_us: Gauge<i64>,
    /// Hit and miss sums per cache name.
    pub caches: BTreeMap<String, CacheTotals>,
    /// Sums over all caches.
    pub cache_hits: i64,
    pub cache_misses: i64,
}

type QueryKey = (i64, String, String, &'static str);
type RequestKey = (i64, String, String, String);
type ResourceKey = (i64, String, String);

#[derive(Default)]
struct QueryAcc {
    values: Vec<i64>,
    rows_sum: i64,
    rows_max: i64,
}

#[derive(Default)]
struct RequestAcc {
    values: Vec<i64>,
    status: [u64; 5],
}

/// Accumulates acknowledged records into a [`Truth`]. Records may come in any order (delivery
/// reports are not ordered across partitions); the result only depends on the set.
pub struct TruthBuilder {
    scenario: Scenario,
    episodes: Vec<Episode>,
    totals: Totals,
    malformed: Malformed,
    too_late: TooLate,
    queries: BTreeMap<QueryKey, QueryAcc>,
    requests: BTreeMap<RequestKey, RequestAcc>,
    resources: BTreeMap<ResourceKey, Vec<(i64, u64, ResourceEvent)>>,
}

fn window_start(t: i64, w: i64) -> i64 {
    t.div_euclid(w) * w
}

/// The key fields of an event's series, as labels.
pub fn labels(e: &Event) -> BTreeMap<String, String> {
    let pairs: Vec<(&str, &str)> = match e {
        Event::Query(q) => vec![
            ("service", &q.service),
            ("query_hash", &q.query_hash),
            ("query_type", q.query_type.as_str()),
        ],
        Event::Request(r) => vec![
            ("service", &r.service),
            ("endpoint", &r.endpoint),
            ("method", &r.method),
        ],
        Event::Resource(r) => vec![("service", &r.service), ("instance", &r.instance)],
    };
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl TruthBuilder {
    pub fn new(scenario: &Scenario) -> TruthBuilder {
        TruthBuilder {
            scenario: scenario.clone(),
            episodes: generate::episodes(scenario),
            totals: Totals::default(),
            malformed: Malformed::default(),
            too_late: TooLate::default(),
            queries: BTreeMap::new(),
            requests: BTreeMap::new(),
            resources: BTreeMap::new(),
        }
    }

    /// Adds one record the broker acknowledged.
    pub fn add(&mut self, r: &Record) {
        self.totals.acknowledged += 1;
        *self
            .totals
            .by_class
            .entry(r.class.as_str().into())
            .or_default() += 1;
        let topic = self.scenario.topic(r.topic).to_string();
        if let Class::Malformed(kind) = r.class {
            self.malformed.count += 1;
            *self.malformed.by_topic.entry(topic).or_default() += 1;
            *self
                .malformed
                .by_kind
                .entry(kind.as_str().into())
                .or_default() += 1;
            return;
        }
        let Some(event) = &r.event else { return };
        if r.class == Class::TooLate {
            self.too_late.count += 1;
            self.too_late.events.push(TooLateEvent {
                topic,
                event_time_us: event.time_us(),
                labels: labels(event),
            });
            return;
        }
        *self
            .totals
            .aggregated
            .entry(event.kind().as_str().into())
            .or_default() += 1;
        let w = self.scenario.window_us;
        match event {
            Event::Query(q) => {
                let key = (
                    window_start(q.executed_at_us, w),
                    q.service.clone(),
                    q.query_hash.clone(),
                    q.query_type.as_str(),
                );
                let acc = self.queries.entry(key).or_default();
                acc.values.push(q.execution_time_us);
                acc.rows_sum += q.rows_affected;
                acc.rows_max = acc.rows_max.max(q.rows_affected);
            }
            Event::Request(e) => {
                let key = (
                    window_start(e.occurred_at_us, w),
                    e.service.clone(),
                    e.endpoint.clone(),
                    e.method.clone(),
                );
                let acc = self.requests.entry(key).or_default();
                acc.values.push(e.response_time_us);
                let class = (e.status_code / 100).clamp(1, 5) as usize;
                acc.status[class - 1] += 1;
            }
            Event::Resource(e) => {
                let key = (
                    window_start(e.observed_at_us, w),
                    e.service.clone(),
                    e.instance.clone(),
                );
                self.resources
                    .entry(key)
                    .or_default()
                    .push((e.observed_at_us, r.seq, e.clone()));
            }
        }
    }

    /// Records how many messages were not acknowledged.
    pub fn set_failed(&mut self, failed: u64) {
        self.totals.failed = failed;
    }

    pub fn finish(self) -> Truth {
        let s = &self.scenario;
        let w = s.window_us;
        let query = self
            .queries
            .into_iter()
            .map(|((ws, service, query_hash, qt), mut acc)| QueryRow {
                window_start_us: ws,
                window_end_us: ws + w,
                service,
                query_hash,
                query_type: qt.to_string(),
                execution_time_us: Dist::from_values(&mut acc.values),
                rows_affected_sum: acc.rows_sum,
                rows_affected_max: acc.rows_max,
            })
            .collect();
        let request = self
            .requests
            .into_iter()
            .map(|((ws, service, endpoint, method), mut acc)| RequestRow {
                window_start_us: ws,
                window_end_us: ws + w,
                service,
                endpoint,
                method,
                response_time_us: Dist::from_values(&mut acc.values),
                status: (1..=5)
                    .map(|c| (format!("{c}xx"), acc.status[c - 1]))
                    .collect(),
            })
            .collect();
        let resource = self
            .resources
            .into_iter()
            .map(|((ws, service, instance), samples)| {
                resource_row(ws, ws + w, service, instance, samples)
            })
            .collect();
        let mut too_late = self.too_late;
        too_late.events.sort();
        let topics = TopicKind::ALL
            .iter()
            .map(|&k| {
                let name = match k {
                    TopicKind::Query => "query",
                    TopicKind::Request => "request",
                    TopicKind::Resource => "resource",
                };
                (name.to_string(), s.topic(k).to_string())
            })
            .collect();
        Truth {
            format: FORMAT.into(),
            params: Params {
                seed: s.seed,
                start_us: s.start_us,
                end_us: s.start_us + s.span_us(),
                window_us: w,
                allowed_lateness_us: s.allowed_lateness_us,
                correction_horizon_us: s.correction_horizon_us,
                rate: s.rate,
                count: s.count,
                topics,
                quantiles: QUANTILES.to_vec(),
                percentile_definition: PERCENTILE_DEFINITION.into(),
                scenario: s.clone(),
            },
            totals: self.totals,
            malformed: self.malformed,
            too_late,
            episodes: self.episodes,
            query,
            request,
            resource,
        }
    }
}

fn resource_row(
    ws: i64,
    we: i64,
    service: String,
    instance: String,
    mut samples: Vec<(i64, u64, ResourceEvent)>,
) -> ResourceRow {
    samples.sort_by_key(|(t, seq, _)| (*t, *seq));
    let ev: Vec<&ResourceEvent> = samples.iter().map(|(_, _, e)| e).collect();
    let gi = |f: fn(&ResourceEvent) -> i64| {
        Gauge::from_samples(ev.iter().map(|e| (e.observed_at_us, f(e))))
            .expect("a row has at least one sample")
    };
    let go = |f: fn(&ResourceEvent) -> Option<i64>| {
        Gauge::from_samples(
            ev.iter()
                .filter_map(|e| f(e).map(|v| (e.observed_at_us, v))),
        )
    };
    let gf = |f: fn(&ResourceEvent) -> f64| {
        Gauge::from_samples(ev.iter().map(|e| (e.observed_at_us, f(e))))
            .expect("a row has at least one sample")
    };
    let mut caches: BTreeMap<String, CacheTotals> = BTreeMap::new();
    for e in &ev {
        for (name, c) in e.caches.iter().flatten() {
            let t = caches.entry(name.clone()).or_default();
            t.hits += c.hits;
            t.misses += c.misses;
        }
    }
    ResourceRow {
        window_start_us: ws,
        window_end_us: we,
        service,
        instance,
        count: ev.len() as u64,
        cpu_utilization_ratio: gf(|e| e.cpu_utilization_ratio),
        cpu_utilization_ppm: gi(|e| ratio_ppm(e.cpu_utilization_ratio)),
        memory_used_bytes: gi(|e| e.memory_used_bytes),
        memory_limit_bytes: gi(|e| e.memory_limit_bytes),
        memory_utilization_ratio: gf(|e| e.memory_used_bytes as f64 / e.memory_limit_bytes as f64),
        memory_utilization_ppm: gi(|e| ppm_of(e.memory_used_bytes, e.memory_limit_bytes)),
        heap_bytes: go(|e| e.heap_bytes),
        gc_pause_us: go(|e| e.gc_pause_us),
        gc_count: go(|e| e.gc_count),
        interval_us: gi(|e| e.interval_us),
        io_read_bytes: gi(|e| e.io_read_bytes),
        io_write_bytes: gi(|e| e.io_write_bytes),
        pool_active: gi(|e| e.pool_active as i64),
        pool_idle: gi(|e| e.pool_idle as i64),
        pool_max: gi(|e| e.pool_max as i64),
        pool_utilization_ratio: gf(|e| e.pool_active as f64 / e.pool_max as f64),
        pool_utilization_ppm: gi(|e| ppm_of(e.pool_active as i64, e.pool_max as i64)),
        pool_waiters: gi(|e| e.pool_waiters as i64),
        pool_wait_us: gi(|e| e.pool_wait_us),
        cache_hits: caches.values().map(|c| c.hits).sum(),
        cache_misses: caches.values().map(|c| c.misses).sum(),
        caches,
    }
}

/// The truth of a scenario if every message were acknowledged (pure; for tests and for
/// comparing against a run's truth).
pub fn truth_of(scenario: &Scenario) -> Truth {
    let mut b = TruthBuilder::new(scenario);
    for r in generate::generate(scenario) {
        b.add(&r);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_rank_matches_hdr_definition() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(exact_quantile(&v, 0.5), 5);
        assert_eq!(exact_quantile(&v, 0.9), 9);
        assert_eq!(exact_quantile(&v, 0.95), 10);
        assert_eq!(exact_quantile(&v, 0.0), 1);
        assert_eq!(exact_quantile(&[7], 0.999), 7);
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(exact_quantile(&v, 0.999), 999);
        assert_eq!(exact_quantile(&v, 0.99), 990);
        assert_eq!(exact_quantile(&[], 0.5), 0);
    }

    #[test]
    fn window_start_is_utc_aligned_for_negative_times_too() {
        assert_eq!(window_start(59_999_999, 60_000_000), 0);
        assert_eq!(window_start(60_000_000, 60_000_000), 60_000_000);
        assert_eq!(window_start(-1, 60_000_000), -60_000_000);
    }

    #[test]
    fn gauge_last_is_latest_then_largest() {
        let g = Gauge::from_samples([(1, 3i64), (2, 1), (3, 2)].into_iter()).unwrap();
        assert_eq!((g.count, g.min, g.max, g.last, g.sum), (3, 1, 3, 2, 6));
        let g = Gauge::from_samples([(5, 3i64), (5, 9), (5, 4), (1, 0)].into_iter()).unwrap();
        assert_eq!(g.last, 9);
        assert!(Gauge::<i64>::from_samples(std::iter::empty()).is_none());
    }

    #[test]
    fn ppm_rounds_half_away_from_zero_exactly() {
        assert_eq!(ppm_of(1, 3), 333_333);
        assert_eq!(ppm_of(2, 3), 666_667);
        assert_eq!(ppm_of(1, 2_000_000), 1); // 0.5 ppm rounds up
        assert_eq!(ppm_of(-1, 2_000_000), -1);
        assert_eq!(ppm_of(20, 20), 1_000_000);
        assert_eq!(ratio_ppm(0.2500005), 250_001);
        assert_eq!(ratio_ppm(0.1), 100_000);
    }
}
