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

use perfstream_events::encode::{encode_event, series_key};
use perfstream_events::{CacheCounters, Event, QueryEvent, QueryType, RequestEvent, ResourceEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};

use crate::scenario::{Episode, EpisodeKind, Scenario, TopicKind};
use crate::topology::{self, Service};

/// How a message relates to the pipeline's event-time rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// At its scheduled time.
    OnTime,
    /// Earlier than scheduled, within the allowed lateness.
    OutOfOrder,
    /// Its window is closed; within the correction horizon (a correction).
    Late,
    /// Beyond the correction horizon: expected in the late topic, not in the rollups.
    TooLate,
    /// Undecodable bytes: expected in the dead-letter topic.
    Malformed(MalformedKind),
}

impl Class {
    /// Name used in the truth file and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::OnTime => "on_time",
            Class::OutOfOrder => "out_of_order",
            Class::Late => "late",
            Class::TooLate => "too_late",
            Class::Malformed(_) => "malformed",
        }
    }
}

/// The ways a generated malformed message is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Zero bytes.
    Empty,
    /// First byte is not the Confluent magic byte 0.
    BadMagic,
    /// Magic byte 0 with schema id 999 (no such schema).
    UnknownSchema,
    /// A valid event cut short (1 to len-1 bytes kept).
    Truncated,
}

impl MalformedKind {
    pub const ALL: [MalformedKind; 4] = [
        Self::Empty,
        Self::BadMagic,
        Self::UnknownSchema,
        Self::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::BadMagic => "bad_magic",
            Self::UnknownSchema => "unknown_schema",
            Self::Truncated => "truncated",
        }
    }
}

/// One message to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the generated sequence, from 0.
    pub seq: u64,
    /// Position on the timeline (scheduled time), for pacing; not the event time.
    pub sched_us: i64,
    pub topic: TopicKind,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub class: Class,
    /// The decoded event; `None` for malformed messages.
    pub event: Option<Event>,
}

/// The events of `scenario`, in order. An iterator, so long runs need no memory for them.
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
    s: Scenario,
    rng: StdRng,
    services: Vec<Service>,
    active: Vec<Active>,
    endpoint_zipf: Zipf<f64>,
    query_zipf: Zipf<f64>,
    query_fast: LogNormal<f64>,
    query_tail: LogNormal<f64>,
    request_fast: LogNormal<f64>,
    request_tail: LogNormal<f64>,
    rows: LogNormal<f64>,
    next_regular: u64,
    /// Next resource sample time per (service, instance) pair.
    resource_due: BinaryHeap<Reverse<(i64, usize)>>,
    /// Regular-event indices after which a too-late event follows, descending.
    too_late_at: Vec<u64>,
    pending: VecDeque<Record>,
    seq: u64,
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
    fn episode(&self, kind: EpisodeKind, service: usize, target: usize, t: i64) -> Option<f64> {
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

    fn push(
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

    fn push_event(&mut self, sched_us: i64, class: Class, event: Event) {
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

    fn regular(&mut self, t: i64) -> Event {
        let si = self.rng.random_range(0..self.services.len());
        let ii = self.rng.random_range(0..self.services[si].instances.len());
        if self.rng.random_bool(self.s.query_share) {
            Event::Query(self.query(si, ii, t))
        } else {
            Event::Request(self.request(si, ii, t))
        }
    }

    fn query(&mut self, si: usize, ii: usize, t: i64) -> QueryEvent {
        let qi = (self.query_zipf.sample(&mut self.rng) as usize).saturating_sub(1);
        let qi = qi.min(self.services[si].queries.len() - 1);
        let execution_time_us = if self.episode(EpisodeKind::SlowQuery, si, qi, t).is_some() {
            self.rng.random_range(1_200_000..=3_000_000)
        } else {
            let d = if self.rng.random_bool(0.015) {
                &self.query_tail
            } else {
                &self.query_fast
            };
            (d.sample(&mut self.rng) as i64).clamp(50, 900_000)
        };
        let q = &self.services[si].queries[qi];
        let query_type = q.query_type;
        let rows_affected = match query_type {
            QueryType::Select => (self.rows.sample(&mut self.rng) as i64).min(100_000),
            QueryType::Insert => self.rng.random_range(1..=5),
            QueryType::Update | QueryType::Delete => self.rng.random_range(0..=10),
            QueryType::Other => 0,
        };
        let tenant_id = self
            .rng
            .random_bool(0.5)
            .then(|| format!("tenant-{}", self.rng.random_range(0..20)));
        let svc = &self.services[si];
        let q = &svc.queries[qi];
        QueryEvent {
            service: svc.name.clone(),
            instance: svc.instances[ii].name.clone(),
            query_hash: q.hash.clone(),
            query_type,
            query_text: Some(q.text.clone()),
            execution_time_us,
            rows_affected,
            tenant_id,
            executed_at_us: t,
        }
    }

    fn request(&mut self, si: usize, ii: usize, t: i64) -> RequestEvent {
        let ei = (self.endpoint_zipf.sample(&mut self.rng) as usize).saturating_sub(1);
        let ei = ei.min(self.services[si].endpoints.len() - 1);
        let response_time_us = if self.episode(EpisodeKind::SlaBreach, si, ei, t).is_some() {
            self.rng.random_range(700_000..=1_800_000)
        } else {
            let d = if self.rng.random_bool(0.015) {
                &self.request_tail
            } else {
                &self.request_fast
            };
            (d.sample(&mut self.rng) as i64).clamp(200, 450_000)
        };
        let method = self.services[si].endpoints[ei].method;
        let u: f64 = self.rng.random();
        let e = self.s.error_rate;
        let status_code = if u < e {
            [500, 502, 503][self.rng.random_range(0..3)]
        } else if u < e + 0.03 {
            [400, 404, 409][self.rng.random_range(0..3)]
        } else if u < e + 0.05 {
            304
        } else {
            match method {
                "POST" => 201,
                "DELETE" => 204,
                _ => 200,
            }
        };
        let request_bytes =
            matches!(method, "POST" | "PUT").then(|| self.rng.random_range(64..=16_384));
        let response_bytes = Some(self.rng.random_range(0..=65_536));
        let svc = &self.services[si];
        RequestEvent {
            service: svc.name.clone(),
            instance: svc.instances[ii].name.clone(),
            endpoint: svc.endpoints[ei].route.clone(),
            method: method.to_string(),
            status_code,
            response_time_us,
            request_bytes,
            response_bytes,
            occurred_at_us: t,
        }
    }

    fn resource(&mut self, pair: usize, t: i64) -> ResourceEvent {
        let si = pair / self.s.instances as usize;
        let ii = pair % self.s.instances as usize;
        let inst = self.services[si].instances[ii].clone();
        let limit = inst.memory_limit_bytes;
        let r = &mut self.rng;
        let cpu_utilization_ratio = r.random_range(0.15..0.45);
        let mem_share = match self.episode(EpisodeKind::MemoryRamp, si, ii, t) {
            Some(p) => 0.45 + 0.5 * p + self.rng.random_range(-0.005..0.005),
            None => 0.45 + self.rng.random_range(-0.02..0.02),
        };
        let memory_used_bytes = (limit as f64 * mem_share) as i64;
        let max = inst.pool_max;
        let base_active = (max as f64 * 0.3).round() as i32;
        let (pool_active, pool_waiters, pool_wait_us) = if self
            .episode(EpisodeKind::PoolSaturation, si, ii, t)
            .is_some()
        {
            let w = self.rng.random_range(3..=15);
            (max, w, self.rng.random_range(2_000_000..=20_000_000))
        } else if let Some(p) = self.episode(EpisodeKind::ConnectionLeak, si, ii, t) {
            let a = (max as f64 * (0.2 + 0.65 * p)).round() as i32;
            (a.min(max), 0, self.rng.random_range(0..=2_000))
        } else {
            let a = base_active + self.rng.random_range(-1..=1);
            (a.clamp(0, max), 0, self.rng.random_range(0..=2_000))
        };
        let pool_idle = self.rng.random_range(0..=(max - pool_active));
        let query_ratio = if self.episode(EpisodeKind::CacheDrop, si, ii, t).is_some() {
            self.rng.random_range(0.35..0.45)
        } else {
            self.rng.random_range(0.93..0.97)
        };
        let mut caches = std::collections::BTreeMap::new();
        for (name, lookups, ratio) in [
            (
                "query_cache",
                self.rng.random_range(2_000..=6_000),
                query_ratio,
            ),
            (
                "session_cache",
                self.rng.random_range(500..=1_500),
                self.rng.random_range(0.96..0.99),
            ),
        ] {
            let hits = (lookups as f64 * ratio).round() as i64;
            caches.insert(
                name.to_string(),
                CacheCounters {
                    hits,
                    misses: lookups - hits,
                },
            );
        }
        let r = &mut self.rng;
        ResourceEvent {
            service: self.services[si].name.clone(),
            instance: inst.name,
            observed_at_us: t,
            interval_us: self.s.resource_interval_us,
            cpu_utilization_ratio,
            memory_used_bytes,
            memory_limit_bytes: limit,
            heap_bytes: Some(memory_used_bytes / 10 * 6),
            gc_pause_us: Some(r.random_range(500..=20_000)),
            gc_count: Some(r.random_range(1..=8)),
            io_read_bytes: r.random_range(100_000..=5_000_000),
            io_write_bytes: r.random_range(100_000..=5_000_000),
            pool_active,
            pool_idle,
            pool_max: max,
            pool_waiters,
            pool_wait_us,
            caches: Some(caches),
        }
    }

    fn malformed(&mut self, sched_us: i64) {
        let topic = TopicKind::ALL[self.rng.random_range(0..3)];
        let kind = MalformedKind::ALL[self.rng.random_range(0..4)];
        let mut payload = Vec::new();
        match kind {
            MalformedKind::Empty => {}
            MalformedKind::BadMagic => {
                payload.push(self.rng.random_range(1..=255u8));
                let n = self.rng.random_range(4..40);
                payload.extend((0..n).map(|_| self.rng.random::<u8>()));
            }
            MalformedKind::UnknownSchema => {
                payload.extend_from_slice(&[0, 0, 0, 0x03, 0xE7]);
                let n = self.rng.random_range(0..40);
                payload.extend((0..n).map(|_| self.rng.random::<u8>()));
            }
            MalformedKind::Truncated => {
                let si = self.rng.random_range(0..self.services.len());
                let event = match topic {
                    TopicKind::Query => Event::Query(self.query(si, 0, sched_us)),
                    TopicKind::Request => Event::Request(self.request(si, 0, sched_us)),
                    TopicKind::Resource => {
                        Event::Resource(self.resource(si * self.s.instances as usize, sched_us))
                    }
                };
                encode_event(&mut payload, &event);
                let keep = self.rng.random_range(1..payload.len());
                payload.truncate(keep);
            }
        }
        let key = format!("malformed/{}", self.seq).into_bytes();
        self.push(sched_us, topic, Class::Malformed(kind), None, key, payload);
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
