//! Accumulating acknowledged records into a [`Truth`].

use std::collections::BTreeMap;

use perfstream_events::{Event, ResourceEvent};

use super::figures::{PERCENTILE_DEFINITION, QUANTILES, ppm_of, ratio_ppm, window_start};
use super::file::*;
use crate::generate::{self, Class, Record};
use crate::scenario::{Episode, Scenario, TopicKind};

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
