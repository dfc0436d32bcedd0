//! Event builders and helpers shared by the engine tests.

use std::collections::BTreeMap;

use perfstream_events::{CacheCounters, Event, QueryEvent, QueryType, RequestEvent, ResourceEvent};

use crate::rollup::{
    Merge, QueryFigures, QueryKey, RequestFigures, RequestKey, ResourceFigures, ResourceKey,
    Rollups,
};
use crate::{Engine, Flush, PartitionId, WindowConfig};

pub const S: i64 = 1_000_000;
pub const MIN: i64 = 60 * S;
/// 2026-01-01T00:00:00Z, a minute boundary.
pub const T0: i64 = 1_767_225_600 * S;

pub fn pid(partition: i32) -> PartitionId {
    PartitionId {
        topic: 0,
        partition,
    }
}

pub fn query(service: &str, hash: &str, t: i64, latency_us: i64) -> Event {
    Event::Query(QueryEvent {
        service: service.into(),
        instance: "i-1".into(),
        query_hash: hash.into(),
        query_type: QueryType::Select,
        query_text: Some(format!("select * from t where h = '{hash}'")),
        execution_time_us: latency_us,
        rows_affected: 3,
        tenant_id: None,
        trace_id: None,
        executed_at_us: t,
    })
}

pub fn request(service: &str, endpoint: &str, status: i32, t: i64, latency_us: i64) -> Event {
    Event::Request(RequestEvent {
        service: service.into(),
        instance: "i-1".into(),
        endpoint: endpoint.into(),
        method: "GET".into(),
        status_code: status,
        response_time_us: latency_us,
        request_bytes: None,
        response_bytes: Some(100),
        trace_id: None,
        occurred_at_us: t,
    })
}

pub fn resource(service: &str, instance: &str, t: i64, cpu: f64) -> Event {
    Event::Resource(ResourceEvent {
        service: service.into(),
        instance: instance.into(),
        observed_at_us: t,
        interval_us: 10 * S,
        cpu_utilization_ratio: cpu,
        memory_used_bytes: 300,
        memory_limit_bytes: 1000,
        heap_bytes: Some(200),
        gc_pause_us: None,
        gc_count: Some(1),
        io_read_bytes: 10,
        io_write_bytes: 20,
        pool_active: 3,
        pool_idle: 1,
        pool_max: 4,
        pool_waiters: 0,
        pool_wait_us: 0,
        caches: Some(BTreeMap::from([
            ("a".to_string(), CacheCounters { hits: 8, misses: 2 }),
            ("b".to_string(), CacheCounters { hits: 1, misses: 1 }),
        ])),
    })
}

pub fn engine(config: WindowConfig) -> Engine {
    Engine::new(config).expect("valid test config")
}

/// Closes every open window (as if the input ended) and flushes. Tests only: in production a
/// window closes only when event time passes it.
pub fn drain(e: &mut Engine) -> Flush {
    e.advance(i64::MAX / 2);
    e.watermark_us = e.watermark_us.max(Some(i64::MAX / 2));
    e.flush()
}

/// All figures per (window start, key), merged over every rollup given: what the store ends up
/// with after writing closed windows and merging corrections.
#[derive(Debug, Default, PartialEq)]
pub struct Stored {
    pub query: BTreeMap<(i64, QueryKey), QueryFigures>,
    pub request: BTreeMap<(i64, RequestKey), RequestFigures>,
    pub resource: BTreeMap<(i64, ResourceKey), ResourceFigures>,
}

impl Stored {
    pub fn add(&mut self, r: &Rollups) {
        fn add<K: Ord + Clone, F: Merge + Clone>(
            m: &mut BTreeMap<(i64, K), F>,
            rs: &[crate::Rollup<K, F>],
        ) {
            for r in rs {
                match m.entry((r.window_start_us, r.key.clone())) {
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        o.get_mut().merge(&r.figures)
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(r.figures.clone());
                    }
                }
            }
        }
        add(&mut self.query, &r.query);
        add(&mut self.request, &r.request);
        add(&mut self.resource, &r.resource);
    }

    pub fn add_flush(&mut self, f: &Flush) {
        self.add(&f.closed);
        self.add(&f.corrections);
    }
}
