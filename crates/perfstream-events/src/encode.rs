//! Hand-written Avro binary encoders for perfstream's own schema versions, with the Confluent
//! framing. Encoding is deterministic (maps are `BTreeMap`s), so the same event always gives the
//! same bytes; `tests` check the output against apache-avro's reader.

use crate::schema::SchemaId;
use crate::types::*;

/// Confluent wire format magic byte.
pub const MAGIC: u8 = 0;

pub(crate) fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn put_double(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `["null", T]` union: branch 0 is null, branch 1 the value.
fn put_opt<T>(out: &mut Vec<u8>, v: &Option<T>, f: impl FnOnce(&mut Vec<u8>, &T)) {
    match v {
        None => put_long(out, 0),
        Some(x) => {
            put_long(out, 1);
            f(out, x)
        }
    }
}

/// Writes the 5-byte Confluent header: magic byte 0 and the big-endian schema id.
pub fn put_header(out: &mut Vec<u8>, id: SchemaId) {
    out.push(MAGIC);
    out.extend_from_slice(&id.0.to_be_bytes());
}

/// The body of `QueryEvent` version 1 (id 1): everything but `trace_id`.
pub fn query_body_v1(out: &mut Vec<u8>, e: &QueryEvent) {
    put_str(out, &e.service);
    put_str(out, &e.instance);
    put_str(out, &e.query_hash);
    put_long(out, e.query_type.index() as i64);
    put_opt(out, &e.query_text, |o, s| put_str(o, s));
    put_long(out, e.execution_time_us);
    put_long(out, e.rows_affected);
    put_opt(out, &e.tenant_id, |o, s| put_str(o, s));
    put_long(out, e.executed_at_us);
}

/// The body of `QueryEvent` version 2 (id 6): version 1 then `trace_id`.
pub fn query_body(out: &mut Vec<u8>, e: &QueryEvent) {
    query_body_v1(out, e);
    put_opt(out, &e.trace_id, |o, s| put_str(o, s));
}

/// The body of `RequestEvent` version 1 (id 2): everything but `trace_id`.
pub fn request_body_v1(out: &mut Vec<u8>, e: &RequestEvent) {
    put_str(out, &e.service);
    put_str(out, &e.instance);
    put_str(out, &e.endpoint);
    put_str(out, &e.method);
    put_long(out, e.status_code as i64);
    put_long(out, e.response_time_us);
    put_opt(out, &e.request_bytes, |o, v| put_long(o, *v));
    put_opt(out, &e.response_bytes, |o, v| put_long(o, *v));
    put_long(out, e.occurred_at_us);
}

/// The body of `RequestEvent` version 2 (id 7): version 1 then `trace_id`.
pub fn request_body(out: &mut Vec<u8>, e: &RequestEvent) {
    request_body_v1(out, e);
    put_opt(out, &e.trace_id, |o, s| put_str(o, s));
}

pub fn resource_body(out: &mut Vec<u8>, e: &ResourceEvent) {
    put_str(out, &e.service);
    put_str(out, &e.instance);
    put_long(out, e.observed_at_us);
    put_long(out, e.interval_us);
    put_double(out, e.cpu_utilization_ratio);
    put_long(out, e.memory_used_bytes);
    put_long(out, e.memory_limit_bytes);
    put_opt(out, &e.heap_bytes, |o, v| put_long(o, *v));
    put_opt(out, &e.gc_pause_us, |o, v| put_long(o, *v));
    put_opt(out, &e.gc_count, |o, v| put_long(o, *v));
    put_long(out, e.io_read_bytes);
    put_long(out, e.io_write_bytes);
    put_long(out, e.pool_active as i64);
    put_long(out, e.pool_idle as i64);
    put_long(out, e.pool_max as i64);
    put_long(out, e.pool_waiters as i64);
    put_long(out, e.pool_wait_us);
    put_opt(out, &e.caches, |o, m| {
        if !m.is_empty() {
            put_long(o, m.len() as i64);
            for (name, c) in m {
                put_str(o, name);
                put_long(o, c.hits);
                put_long(o, c.misses);
            }
        }
        put_long(o, 0);
    });
}

pub fn alert_body(out: &mut Vec<u8>, e: &AlertEvent) {
    put_str(out, &e.alert_id);
    put_str(out, &e.rule);
    put_long(out, e.severity as i64);
    put_long(out, e.state as i64);
    put_str(out, &e.service);
    if !e.labels.is_empty() {
        put_long(out, e.labels.len() as i64);
        for (k, v) in &e.labels {
            put_str(out, k);
            put_str(out, v);
        }
    }
    put_long(out, 0);
    put_double(out, e.observed_value);
    put_double(out, e.threshold);
    put_double(out, e.clear_threshold);
    put_long(out, e.window_start_us);
    put_long(out, e.window_end_us);
    put_long(out, e.transitioned_at_us);
    put_str(out, &e.message);
}

pub fn dead_letter_body(out: &mut Vec<u8>, e: &DeadLetter) {
    put_str(out, &e.source_topic);
    put_long(out, e.source_partition as i64);
    put_long(out, e.source_offset);
    put_opt(out, &e.original_key, |o, b| put_bytes(o, b));
    put_opt(out, &e.original_value, |o, b| put_bytes(o, b));
    put_str(out, &e.error_kind);
    put_str(out, &e.reason);
    put_long(out, e.dead_at_us);
}

/// Appends the framed message (header + body) for an input event, in the oldest of our schema
/// versions that carries all of it: a query or request with a `trace_id` in version 2 (ids 6,
/// 7), any other event in version 1. So producers that send no trace ids keep writing bytes
/// every perfstream release reads (a rolling upgrade needs perfstream first only for traced
/// events), and the same event always gives the same bytes.
pub fn encode_event(out: &mut Vec<u8>, e: &Event) {
    match e {
        Event::Query(q) => encode_query(out, q),
        Event::Request(r) => encode_request(out, r),
        Event::Resource(r) => encode_resource(out, r),
    }
}

/// A query in version 1 without a trace id, else in version 2 (see [`encode_event`]).
pub fn encode_query(out: &mut Vec<u8>, e: &QueryEvent) {
    match e.trace_id {
        None => encode_query_v1(out, e),
        Some(_) => encode_query_v2(out, e),
    }
}

/// A query in version 1 (id 1); its `trace_id`, if any, is not written.
pub fn encode_query_v1(out: &mut Vec<u8>, e: &QueryEvent) {
    put_header(out, SchemaId::QUERY_V1);
    query_body_v1(out, e);
}

/// A query in version 2 (id 6), `trace_id` null or not.
pub fn encode_query_v2(out: &mut Vec<u8>, e: &QueryEvent) {
    put_header(out, SchemaId::QUERY_V2);
    query_body(out, e);
}

/// A request in version 1 without a trace id, else in version 2 (see [`encode_event`]).
pub fn encode_request(out: &mut Vec<u8>, e: &RequestEvent) {
    match e.trace_id {
        None => encode_request_v1(out, e),
        Some(_) => encode_request_v2(out, e),
    }
}

/// A request in version 1 (id 2); its `trace_id`, if any, is not written.
pub fn encode_request_v1(out: &mut Vec<u8>, e: &RequestEvent) {
    put_header(out, SchemaId::REQUEST_V1);
    request_body_v1(out, e);
}

/// A request in version 2 (id 7), `trace_id` null or not.
pub fn encode_request_v2(out: &mut Vec<u8>, e: &RequestEvent) {
    put_header(out, SchemaId::REQUEST_V2);
    request_body(out, e);
}

pub fn encode_resource(out: &mut Vec<u8>, e: &ResourceEvent) {
    put_header(out, SchemaId::RESOURCE_V1);
    resource_body(out, e);
}

pub fn encode_alert(out: &mut Vec<u8>, e: &AlertEvent) {
    put_header(out, SchemaId::ALERT_V1);
    alert_body(out, e);
}

pub fn encode_dead_letter(out: &mut Vec<u8>, e: &DeadLetter) {
    put_header(out, SchemaId::DEAD_LETTER_V1);
    dead_letter_body(out, e);
}

/// The Kafka message key of an input event, per the producer guide: the fields of its series
/// joined by NUL, so one series always lands in one partition.
///
/// - query: `service \0 query_hash`
/// - request: `service \0 endpoint \0 method`
/// - resource: `service \0 instance`
pub fn series_key(e: &Event) -> Vec<u8> {
    let parts: [&str; 3] = match e {
        Event::Query(q) => [&q.service, &q.query_hash, ""],
        Event::Request(r) => [&r.service, &r.endpoint, &r.method],
        Event::Resource(r) => [&r.service, &r.instance, ""],
    };
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i == 2 && p.is_empty() {
            break;
        }
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// Key for dead-letter and late messages: `topic/partition/offset`, the dedup key.
pub fn source_key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    format!("{topic}/{partition}/{offset}").into_bytes()
}
