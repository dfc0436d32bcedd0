//! The pure, deterministic generation core: a [`Scenario`] in, a sequence of Kafka messages out.
//! No I/O, no clock: the same scenario gives the same messages, byte for byte.
//!
//! The timeline: regular event `i` (a query or a request) is scheduled at
//! `start_us + floor(i * 1e6 / rate)`. Resource samples of every instance are interleaved at
//! their own times (one per `resource_interval_us`, phase-shifted per instance). Then each
//! event's *event time* is its scheduled time, or, for a drawn fraction, moved back:
//!
//! - out of order: by `1 ..= allowed_lateness - 1` µs (not late for any watermark);
//! - late: by `window + lateness + 1 s ..= max(that + 1 s, horizon / 2)` (its window is closed
//!   but within the correction horizon);
//! - too late (`too_late` extra events, placed in the second half of the run):
//!   by `horizon + 2 windows + lateness + 60 s ..= twice that` (beyond the correction horizon).
//!
//! Malformed messages (undecodable bytes) are extra messages between the events. Episodes act
//! on the values of their series for events whose *event time* falls within the episode.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use perfstream_events::Event;
use perfstream_events::encode::{encode_event, series_key};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{LogNormal, Zipf};

use super::record::{Class, Record};
use crate::scenario::{Episode, EpisodeKind, Scenario, TopicKind};
use crate::topology::{self, Service};

/// The events of `scenario`, in order. An iterator, so long runs need no memory for them.
///
/// Panics if the scenario is invalid; check it with [`Scenario::validate`] first when it
/// was not built by [`crate::GenerateArgs::scenario`].
pub fn generate(scenario: &Scenario) -> Generator {
    Generator::new(scenario.clone())
}

/// The scheduled episodes of `scenario`, with their targets and times.
pub fn episodes(scenario: &Scenario) -> Vec<Episode> {
    Generator::new(scenario.clone()).episodes()
}

#[derive(Debug, Clone)]
struct Active {
    kind: EpisodeKind,
    service: usize,
    /// Query index (slow_query), endpoint index (sla_breach) or instance index.
    target: usize,
    start_us: i64,
    end_us: i64,
}

/// Iterator over the [`Record`]s of a scenario; see the module docs for the timeline.
pub struct Generator {
    pub(super) s: Scenario,
    pub(super) rng: StdRng,
    pub(super) services: Vec<Service>,
    active: Vec<Active>,
    pub(super) endpoint_zipf: Zipf<f64>,
    pub(super) query_zipf: Zipf<f64>,
    pub(super) query_fast: LogNormal<f64>,
    pub(super) query_tail: LogNormal<f64>,
    pub(super) request_fast: LogNormal<f64>,
    pub(super) request_tail: LogNormal<f64>,
    pub(super) rows: LogNormal<f64>,
    next_regular: u64,
    /// Next resource sample time per (service, instance) pair.
    resource_due: BinaryHeap<Reverse<(i64, usize)>>,
    /// Regular-event indices after which a too-late event follows, descending.
    too_late_at: Vec<u64>,
    pending: VecDeque<Record>,
    pub(super) seq: u64,
}

fn zipf(n: u32, s: f64) -> Zipf<f64> {
    Zipf::new(n as f64, s).expect("n >= 1 and s >= 0 are validated")
}

fn lognormal(median: f64, sigma: f64) -> LogNormal<f64> {
    LogNormal::new(median.ln(), sigma).expect("constant parameters are valid")
}

impl Generator {
    fn new(s: Scenario) -> Generator {
        let mut rng = StdRng::seed_from_u64(s.seed);
        let services = topology::build(&s, &mut rng);
        let active = schedule(&s);
        let pairs = (s.services * s.instances) as usize;
        let resource_due = (0..pairs)
            .map(|p| {
                let phase = s.resource_interval_us * (p as i64 + 1) / (pairs as i64 + 1);
                Reverse((s.start_us + phase, p))
            })
            .collect();
        let mut too_late_at: Vec<u64> = (0..s.too_late)
            .map(|_| {
                if s.count < 2 {
                    0
                } else {
                    rng.random_range(s.count / 2..s.count)
                }
            })
            .collect();
        too_late_at.sort_unstable_by(|a, b| b.cmp(a));
        if s.count == 0 {
            too_late_at.clear();
        }
        Generator {
            endpoint_zipf: zipf(s.endpoints, s.zipf_exponent),
            query_zipf: zipf(s.query_hashes, s.zipf_exponent),
            query_fast: lognormal(2_000.0, 0.9),
            query_tail: lognormal(80_000.0, 0.8),
            request_fast: lognormal(15_000.0, 0.6),
            request_tail: lognormal(120_000.0, 0.5),
            rows: lognormal(20.0, 1.2),
            s,
            rng,
            services,
            active,
            next_regular: 0,
            resource_due,
            too_late_at,
            pending: VecDeque::new(),
            seq: 0,
        }
    }

    /// The scenario this generator follows.
    pub fn scenario(&self) -> &Scenario {
        &self.s
    }

    /// The episodes this generator injects, with their keys as labels.
    pub fn episodes(&self) -> Vec<Episode> {
        self.active
            .iter()
            .map(|a| {
                let svc = &self.services[a.service];
                let mut labels = std::collections::BTreeMap::new();
                labels.insert("service".to_string(), svc.name.clone());
                match a.kind {
                    EpisodeKind::SlowQuery => {
                        let q = &svc.queries[a.target];
                        labels.insert("query_hash".into(), q.hash.clone());
                        labels.insert("query_type".into(), q.query_type.as_str().into());
                    }
                    EpisodeKind::SlaBreach => {
                        let e = &svc.endpoints[a.target];
                        labels.insert("endpoint".into(), e.route.clone());
                        labels.insert("method".into(), e.method.into());
                    }
                    EpisodeKind::CacheDrop => {
                        labels.insert("instance".into(), svc.instances[a.target].name.clone());
                        labels.insert("cache".into(), "query_cache".into());
                    }
                    EpisodeKind::PoolSaturation
                    | EpisodeKind::MemoryRamp
                    | EpisodeKind::ConnectionLeak => {
                        labels.insert("instance".into(), svc.instances[a.target].name.clone());
                    }
                }
                Episode {
                    kind: a.kind,
                    rule: a.kind.rule().to_string(),
                    rules: a.kind.rules().iter().map(|r| r.to_string()).collect(),
                    labels,
                    start_us: a.start_us,
                    end_us: a.end_us,
                }
            })
            .collect()
    }

    /// Progress in `[0, 1)` of an episode of `kind` on (`service`, `target`) at `t`, if active.
    pub(super) fn episode(
        &self,
        kind: EpisodeKind,
        service: usize,
        target: usize,
        t: i64,
    ) -> Option<f64> {
        self.active
            .iter()
            .find(|a| {
                a.kind == kind
                    && a.service == service
                    && a.target == target
                    && (a.start_us..a.end_us).contains(&t)
            })
            .map(|a| (t - a.start_us) as f64 / (a.end_us - a.start_us) as f64)
    }

    pub(super) fn push(
        &mut self,
        sched_us: i64,
        topic: TopicKind,
        class: Class,
        event: Option<Event>,
        key: Vec<u8>,
        payload: Vec<u8>,
    ) {
        self.pending.push_back(Record {
            seq: self.seq,
            sched_us,
            topic,
            key,
            payload,
            class,
            event,
        });
        self.seq += 1;
    }

    pub(super) fn push_event(&mut self, sched_us: i64, class: Class, event: Event) {
        let topic = match event {
            Event::Query(_) => TopicKind::Query,
            Event::Request(_) => TopicKind::Request,
            Event::Resource(_) => TopicKind::Resource,
        };
        let key = series_key(&event);
        let mut payload = Vec::with_capacity(96);
        encode_event(&mut payload, &event);
        self.push(sched_us, topic, class, Some(event), key, payload);
    }

    /// Draws the class of a regular or resource event and its event time.
    fn draw_time(&mut self, sched_us: i64) -> (Class, i64) {
        let s = &self.s;
        let u: f64 = self.rng.random();
        if u < s.late {
            let lo = s.window_us + s.allowed_lateness_us + 1_000_000;
            let hi = (lo + 1_000_000).max(s.correction_horizon_us / 2);
            (Class::Late, sched_us - self.rng.random_range(lo..=hi))
        } else if u < s.late + s.out_of_order && s.allowed_lateness_us > 1 {
            let d = self.rng.random_range(1..s.allowed_lateness_us);
            (Class::OutOfOrder, sched_us - d)
        } else {
            (Class::OnTime, sched_us)
        }
    }

    fn too_late_shift(&mut self) -> i64 {
        let s = &self.s;
        let lo = s.correction_horizon_us + 2 * s.window_us + s.allowed_lateness_us + 60_000_000;
        self.rng.random_range(lo..=2 * lo)
    }

    /// Fills `pending` with the messages up to and including regular event `next_regular`.
    fn step(&mut self) {
        let i = self.next_regular;
        let sched = self.s.start_us + self.s.sched_offset_us(i);
        while let Some(&Reverse((due, pair))) = self.resource_due.peek() {
            if due > sched {
                break;
            }
            self.resource_due.pop();
            self.resource_due
                .push(Reverse((due + self.s.resource_interval_us, pair)));
            let (class, t) = self.draw_time(due);
            let ev = self.resource(pair, t);
            self.push_event(due, class, Event::Resource(ev));
        }
        if self.s.malformed > 0.0 && self.rng.random_bool(self.s.malformed) {
            self.malformed(sched);
        }
        let (class, t) = self.draw_time(sched);
        let ev = self.regular(t);
        self.push_event(sched, class, ev);
        while self.too_late_at.last() == Some(&i) {
            self.too_late_at.pop();
            let t = sched - self.too_late_shift();
            let ev = self.regular(t);
            self.push_event(sched, Class::TooLate, ev);
        }
        self.next_regular += 1;
    }
}

impl Iterator for Generator {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(r);
            }
            if self.next_regular >= self.s.count {
                return None;
            }
            self.step();
        }
    }
}

/// Places the scenario's episodes: all within `[episodes_from, episodes_to)` of the span, on
/// distinct series where the estate has enough of them.
fn schedule(s: &Scenario) -> Vec<Active> {
    let span = s.span_us();
    let start_us = s.start_us + (span as f64 * s.episodes_from) as i64;
    let end_us = (s.start_us + (span as f64 * s.episodes_to) as i64).max(start_us + 1);
    let services = s.services as usize;
    let pairs = services * s.instances as usize;
    let mut next_pair = 0usize;
    s.episodes
        .iter()
        .map(|&kind| {
            let (service, target) = match kind {
                EpisodeKind::SlowQuery => (0, 0),
                EpisodeKind::SlaBreach => (1 % services, 0),
                _ => {
                    // Spread instance episodes over services first, then instances.
                    let p = next_pair % pairs;
                    next_pair += 1;
                    (p % services, (p / services) % s.instances as usize)
                }
            };
            Active {
                kind,
                service,
                target,
                start_us,
                end_us,
            }
        })
        .collect()
}
