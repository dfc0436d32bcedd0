//! The values of the simulated estate: latencies (log-normal with a heavy tail), statuses,
//! resource gauges, and how episodes change them. Baseline values stay under every default
//! alert threshold; episode values cross them.

use perfstream_events::encode::encode_event;
use perfstream_events::{CacheCounters, Event, QueryEvent, QueryType, RequestEvent, ResourceEvent};
use rand::Rng;
use rand_distr::Distribution;

use super::generator::Generator;
use super::record::{Class, MalformedKind};
use crate::scenario::{EpisodeKind, TopicKind};

/// A W3C-style trace id for one event in four (schema version 2), derived from the event's own
/// figures rather than drawn from the generator's random stream, so adding trace ids left
/// every other generated value as it was.
fn trace_id(t: i64, duration_us: i64, salt: u64) -> Option<String> {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(t as u64 ^ mix(duration_us as u64 ^ salt));
    a.is_multiple_of(4)
        .then(|| format!("{:016x}{:016x}", a | 1, mix(a)))
}

impl Generator {
    pub(super) fn regular(&mut self, t: i64) -> Event {
        let si = self.rng.random_range(0..self.services.len());
        let ii = self.rng.random_range(0..self.services[si].instances.len());
        if self.rng.random_bool(self.s.query_share) {
            Event::Query(self.query(si, ii, t))
        } else {
            Event::Request(self.request(si, ii, t))
        }
    }

    pub(super) fn query(&mut self, si: usize, ii: usize, t: i64) -> QueryEvent {
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
            trace_id: trace_id(t, execution_time_us, si as u64),
            executed_at_us: t,
        }
    }

    pub(super) fn request(&mut self, si: usize, ii: usize, t: i64) -> RequestEvent {
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
            trace_id: trace_id(t, response_time_us, !(si as u64)),
            occurred_at_us: t,
        }
    }

    pub(super) fn resource(&mut self, pair: usize, t: i64) -> ResourceEvent {
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

    pub(super) fn malformed(&mut self, sched_us: i64) {
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
}
