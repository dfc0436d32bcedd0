//! The benchmark workload: query events whose keys follow a Zipf distribution (exponent 1.0)
//! over `n_keys` ranks, with log-normal latencies (median 2 ms, sigma 1), 20 services, a
//! 40-byte-ish normalized text per query hash and event times inside one 60 s window.

use perfstream_events::{Event, QueryEvent, QueryType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Zipf};

pub const T0: i64 = 1_767_225_600_000_000;

pub struct Keys {
    pub service: Vec<String>,
    pub hash: Vec<String>,
    pub text: Vec<String>,
}

impl Keys {
    pub fn new(n_keys: usize) -> Self {
        let service = (0..20).map(|s| format!("service-{s:02}")).collect();
        let hash = (0..n_keys)
            .map(|r| format!("{:016x}", (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        let text = (0..n_keys)
            .map(|r| format!("select * from table_{} where id = $1 and k = $2", r % 997))
            .collect();
        Keys {
            service,
            hash,
            text,
        }
    }
}

/// Draws (key rank, latency µs, event time) triples.
pub struct Draws {
    rng: StdRng,
    zipf: Zipf<f64>,
    latency: LogNormal<f64>,
    i: i64,
}

impl Draws {
    pub fn new(n_keys: usize, seed: u64) -> Self {
        Draws {
            rng: StdRng::seed_from_u64(seed),
            zipf: Zipf::new(n_keys as f64, 1.0).expect("valid zipf"),
            latency: LogNormal::new(2000_f64.ln(), 1.0).expect("valid lognormal"),
            i: 0,
        }
    }

    pub fn next(&mut self) -> (usize, i64, i64) {
        let rank = self.zipf.sample(&mut self.rng) as usize - 1;
        let latency = self.latency.sample(&mut self.rng).round() as i64;
        self.i += 1;
        (rank, latency, T0 + (self.i * 7_919) % 59_000_000)
    }
}

pub fn empty_query() -> QueryEvent {
    QueryEvent {
        service: String::new(),
        instance: "instance-1".into(),
        query_hash: String::new(),
        query_type: QueryType::Select,
        query_text: std::env::var_os("NO_TEXT").is_none().then(String::new),
        execution_time_us: 0,
        rows_affected: 1,
        tenant_id: None,
        trace_id: None,
        executed_at_us: 0,
    }
}

/// Overwrites `e` in place (no allocation once its strings have grown) with the event of `rank`.
pub fn fill(e: &mut QueryEvent, keys: &Keys, rank: usize, latency: i64, t: i64) {
    e.service.clear();
    e.service.push_str(&keys.service[rank % keys.service.len()]);
    e.query_hash.clear();
    e.query_hash.push_str(&keys.hash[rank]);
    if let Some(text) = &mut e.query_text {
        text.clear();
        text.push_str(&keys.text[rank]);
    }
    e.execution_time_us = latency;
    e.executed_at_us = t;
}

#[allow(dead_code)] // used by the aggregate bench only
pub fn events(keys: &Keys, n_events: usize, seed: u64) -> Vec<Event> {
    let mut d = Draws::new(keys.hash.len(), seed);
    (0..n_events)
        .map(|_| {
            let (rank, latency, t) = d.next();
            let mut q = empty_query();
            fill(&mut q, keys, rank, latency, t);
            Event::Query(q)
        })
        .collect()
}
