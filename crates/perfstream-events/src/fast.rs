//! The specialised decoders: one hand-written function per record of our own schema versions
//! (ids 1..=7), reading exactly their binary layout (a version 2 appends `trace_id`) with the bounds-checked [`Cursor`]. They are
//! the fast path; `resolve.rs` is the general one, and both must agree (`tests/paths.rs`).

use std::collections::BTreeMap;

use crate::cursor::Cursor;
use crate::decode::{Decoded, Limits, Record, Version};
use crate::error::DecodeError;
use crate::types::*;

/// Decodes the body of one of our own schema versions with the specialised decoder.
pub(crate) fn decode_body(
    record: Record,
    version: Version,
    body: &[u8],
    lim: &Limits,
) -> Result<Decoded, DecodeError> {
    let mut c = Cursor::new(body);
    let d = match record {
        Record::Query => Decoded::Event(Event::Query(query(&mut c, lim, version)?)),
        Record::Request => Decoded::Event(Event::Request(request(&mut c, lim, version)?)),
        Record::Resource => Decoded::Event(Event::Resource(resource(&mut c, lim)?)),
        Record::Alert => Decoded::Alert(alert(&mut c, lim)?),
        Record::DeadLetter => Decoded::DeadLetter(dead_letter(&mut c, lim)?),
    };
    if c.remaining() > 0 {
        return Err(DecodeError::TrailingBytes {
            record: record.name(),
            count: c.remaining(),
        });
    }
    Ok(d)
}

fn opt_string(
    c: &mut Cursor,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    Ok(if c.present(field)? {
        Some(c.string(field, max)?)
    } else {
        None
    })
}

fn opt_long(c: &mut Cursor, field: &'static str) -> Result<Option<i64>, DecodeError> {
    Ok(if c.present(field)? {
        Some(c.long(field)?)
    } else {
        None
    })
}

fn opt_bytes(c: &mut Cursor, field: &'static str) -> Result<Option<Vec<u8>>, DecodeError> {
    Ok(if c.present(field)? {
        Some(c.bytes(field)?.to_vec())
    } else {
        None
    })
}

/// `trace_id`, the last field of version 2; version 1 has none.
fn trace_id(c: &mut Cursor, lim: &Limits, version: Version) -> Result<Option<String>, DecodeError> {
    match version {
        Version::V1 => Ok(None),
        Version::V2 => opt_string(c, "trace_id", lim.max_string),
    }
}

fn query(c: &mut Cursor, lim: &Limits, version: Version) -> Result<QueryEvent, DecodeError> {
    let s = lim.max_string;
    Ok(QueryEvent {
        service: c.string("service", s)?,
        instance: c.string("instance", s)?,
        query_hash: c.string("query_hash", s)?,
        query_type: QueryType::ALL[c.enum_index("query_type", QueryType::ALL.len())? as usize],
        query_text: opt_string(c, "query_text", s)?,
        execution_time_us: c.long("execution_time_us")?,
        rows_affected: c.long("rows_affected")?,
        tenant_id: opt_string(c, "tenant_id", s)?,
        executed_at_us: c.long("executed_at_us")?,
        trace_id: trace_id(c, lim, version)?,
    })
}

fn request(c: &mut Cursor, lim: &Limits, version: Version) -> Result<RequestEvent, DecodeError> {
    let s = lim.max_string;
    Ok(RequestEvent {
        service: c.string("service", s)?,
        instance: c.string("instance", s)?,
        endpoint: c.string("endpoint", s)?,
        method: c.string("method", s)?,
        status_code: c.int("status_code")?,
        response_time_us: c.long("response_time_us")?,
        request_bytes: opt_long(c, "request_bytes")?,
        response_bytes: opt_long(c, "response_bytes")?,
        occurred_at_us: c.long("occurred_at_us")?,
        trace_id: trace_id(c, lim, version)?,
    })
}

fn resource(c: &mut Cursor, lim: &Limits) -> Result<ResourceEvent, DecodeError> {
    let s = lim.max_string;
    Ok(ResourceEvent {
        service: c.string("service", s)?,
        instance: c.string("instance", s)?,
        observed_at_us: c.long("observed_at_us")?,
        interval_us: c.long("interval_us")?,
        cpu_utilization_ratio: c.double("cpu_utilization_ratio")?,
        memory_used_bytes: c.long("memory_used_bytes")?,
        memory_limit_bytes: c.long("memory_limit_bytes")?,
        heap_bytes: opt_long(c, "heap_bytes")?,
        gc_pause_us: opt_long(c, "gc_pause_us")?,
        gc_count: opt_long(c, "gc_count")?,
        io_read_bytes: c.long("io_read_bytes")?,
        io_write_bytes: c.long("io_write_bytes")?,
        pool_active: c.int("pool_active")?,
        pool_idle: c.int("pool_idle")?,
        pool_max: c.int("pool_max")?,
        pool_waiters: c.int("pool_waiters")?,
        pool_wait_us: c.long("pool_wait_us")?,
        caches: if c.present("caches")? {
            Some(caches(c, lim)?)
        } else {
            None
        },
    })
}

fn caches(c: &mut Cursor, lim: &Limits) -> Result<BTreeMap<String, CacheCounters>, DecodeError> {
    let mut m = BTreeMap::new();
    let mut total = 0;
    loop {
        let n = c.block("caches", total, lim.max_map)?;
        if n == 0 {
            return Ok(m);
        }
        total += n;
        for _ in 0..n {
            let name = c.string("caches", lim.max_string)?;
            let counters = CacheCounters {
                hits: c.long("caches.hits")?,
                misses: c.long("caches.misses")?,
            };
            // Duplicate keys: the last one wins, as in apache-avro.
            m.insert(name, counters);
        }
    }
}

fn alert(c: &mut Cursor, lim: &Limits) -> Result<AlertEvent, DecodeError> {
    let s = lim.max_string;
    Ok(AlertEvent {
        alert_id: c.string("alert_id", s)?,
        rule: c.string("rule", s)?,
        severity: Severity::ALL[c.enum_index("severity", Severity::ALL.len())? as usize],
        state: AlertState::ALL[c.enum_index("state", AlertState::ALL.len())? as usize],
        service: c.string("service", s)?,
        labels: labels(c, lim)?,
        observed_value: c.double("observed_value")?,
        threshold: c.double("threshold")?,
        clear_threshold: c.double("clear_threshold")?,
        window_start_us: c.long("window_start_us")?,
        window_end_us: c.long("window_end_us")?,
        transitioned_at_us: c.long("transitioned_at_us")?,
        message: c.string("message", s)?,
    })
}

fn labels(c: &mut Cursor, lim: &Limits) -> Result<BTreeMap<String, String>, DecodeError> {
    let mut m = BTreeMap::new();
    let mut total = 0;
    loop {
        let n = c.block("labels", total, lim.max_map)?;
        if n == 0 {
            return Ok(m);
        }
        total += n;
        for _ in 0..n {
            let k = c.string("labels", lim.max_string)?;
            let v = c.string("labels", lim.max_string)?;
            m.insert(k, v);
        }
    }
}

fn dead_letter(c: &mut Cursor, lim: &Limits) -> Result<DeadLetter, DecodeError> {
    let s = lim.max_string;
    Ok(DeadLetter {
        source_topic: c.string("source_topic", s)?,
        source_partition: c.int("source_partition")?,
        source_offset: c.long("source_offset")?,
        original_key: opt_bytes(c, "original_key")?,
        original_value: opt_bytes(c, "original_value")?,
        error_kind: c.string("error_kind", s)?,
        reason: c.string("reason", s)?,
        dead_at_us: c.long("dead_at_us")?,
    })
}
