//! Field rules that the Avro types cannot express: ranges, sizes, finiteness, clock skew.
//!
//! They run on the typed values, after either decoding path, so both paths accept and reject
//! exactly the same events with the same error. The per-field size limits are the ones the
//! schemas' docs state; `docs/producers.md` lists them all.

use std::borrow::Cow;

use crate::error::DecodeError;
use crate::types::*;

/// Longest `service`, `instance`, `tenant_id` and cache name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `query_hash`, in bytes.
pub const MAX_QUERY_HASH_BYTES: usize = 128;
/// Longest `query_text`, in bytes.
pub const MAX_QUERY_TEXT_BYTES: usize = 8192;
/// Longest `endpoint` (route template), in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 512;
/// Longest `method`, in bytes.
pub const MAX_METHOD_BYTES: usize = 32;

type R = Result<(), DecodeError>;

fn name(field: &'static str, v: &str, max: usize) -> R {
    if v.is_empty() {
        return Err(DecodeError::EmptyString {
            field: Cow::Borrowed(field),
        });
    }
    len(field, v, max)
}

fn len(field: &'static str, v: &str, max: usize) -> R {
    if v.len() > max {
        return Err(DecodeError::StringTooLong {
            field: Cow::Borrowed(field),
            len: v.len() as u64,
            max,
        });
    }
    Ok(())
}

fn non_negative(field: &'static str, v: i64) -> R {
    if v < 0 {
        return Err(DecodeError::Negative {
            field: Cow::Borrowed(field),
            value: v,
        });
    }
    Ok(())
}

fn positive(field: &'static str, v: i64) -> R {
    if v <= 0 {
        return Err(DecodeError::NotPositive {
            field: Cow::Borrowed(field),
            value: v,
        });
    }
    Ok(())
}

fn opt_non_negative(field: &'static str, v: Option<i64>) -> R {
    v.map_or(Ok(()), |v| non_negative(field, v))
}

fn finite(field: &'static str, v: f64) -> R {
    if !v.is_finite() {
        return Err(DecodeError::NotFinite {
            field: Cow::Borrowed(field),
            value: v,
        });
    }
    Ok(())
}

/// An event time: not before 1970, and at most `max_skew_us` ahead of the Kafka timestamp.
fn event_time(field: &'static str, t: i64, kafka_us: Option<i64>, max_skew_us: i64) -> R {
    non_negative(field, t)?;
    if let Some(k) = kafka_us {
        let ahead_us = t.saturating_sub(k);
        if ahead_us > max_skew_us {
            return Err(DecodeError::TooFarInFuture {
                field: Cow::Borrowed(field),
                event_us: t,
                kafka_us: k,
                ahead_us,
                max_skew_us,
            });
        }
    }
    Ok(())
}

/// Checks an input event; `kafka_us` is its message's Kafka timestamp, if known.
pub fn event(e: &Event, kafka_us: Option<i64>, max_skew_us: i64) -> R {
    match e {
        Event::Query(q) => query(q, kafka_us, max_skew_us),
        Event::Request(r) => request(r, kafka_us, max_skew_us),
        Event::Resource(r) => resource(r, kafka_us, max_skew_us),
    }
}

pub fn query(e: &QueryEvent, kafka_us: Option<i64>, max_skew_us: i64) -> R {
    name("service", &e.service, MAX_NAME_BYTES)?;
    name("instance", &e.instance, MAX_NAME_BYTES)?;
    name("query_hash", &e.query_hash, MAX_QUERY_HASH_BYTES)?;
    if let Some(t) = &e.query_text {
        len("query_text", t, MAX_QUERY_TEXT_BYTES)?;
    }
    non_negative("execution_time_us", e.execution_time_us)?;
    non_negative("rows_affected", e.rows_affected)?;
    if let Some(t) = &e.tenant_id {
        len("tenant_id", t, MAX_NAME_BYTES)?;
    }
    event_time("executed_at_us", e.executed_at_us, kafka_us, max_skew_us)
}

pub fn request(e: &RequestEvent, kafka_us: Option<i64>, max_skew_us: i64) -> R {
    name("service", &e.service, MAX_NAME_BYTES)?;
    name("instance", &e.instance, MAX_NAME_BYTES)?;
    name("endpoint", &e.endpoint, MAX_ENDPOINT_BYTES)?;
    name("method", &e.method, MAX_METHOD_BYTES)?;
    if !(100..=599).contains(&e.status_code) {
        return Err(DecodeError::StatusOutOfRange {
            value: e.status_code,
        });
    }
    non_negative("response_time_us", e.response_time_us)?;
    opt_non_negative("request_bytes", e.request_bytes)?;
    opt_non_negative("response_bytes", e.response_bytes)?;
    event_time("occurred_at_us", e.occurred_at_us, kafka_us, max_skew_us)
}

pub fn resource(e: &ResourceEvent, kafka_us: Option<i64>, max_skew_us: i64) -> R {
    name("service", &e.service, MAX_NAME_BYTES)?;
    name("instance", &e.instance, MAX_NAME_BYTES)?;
    event_time("observed_at_us", e.observed_at_us, kafka_us, max_skew_us)?;
    positive("interval_us", e.interval_us)?;
    finite("cpu_utilization_ratio", e.cpu_utilization_ratio)?;
    if e.cpu_utilization_ratio < 0.0 {
        return Err(DecodeError::NegativeFigure {
            field: Cow::Borrowed("cpu_utilization_ratio"),
            value: e.cpu_utilization_ratio,
        });
    }
    non_negative("memory_used_bytes", e.memory_used_bytes)?;
    positive("memory_limit_bytes", e.memory_limit_bytes)?;
    opt_non_negative("heap_bytes", e.heap_bytes)?;
    opt_non_negative("gc_pause_us", e.gc_pause_us)?;
    opt_non_negative("gc_count", e.gc_count)?;
    non_negative("io_read_bytes", e.io_read_bytes)?;
    non_negative("io_write_bytes", e.io_write_bytes)?;
    non_negative("pool_active", e.pool_active.into())?;
    non_negative("pool_idle", e.pool_idle.into())?;
    positive("pool_max", e.pool_max.into())?;
    non_negative("pool_waiters", e.pool_waiters.into())?;
    non_negative("pool_wait_us", e.pool_wait_us)?;
    for (cache, c) in e.caches.iter().flatten() {
        len("caches", cache, MAX_NAME_BYTES)?;
        non_negative("caches.hits", c.hits)?;
        non_negative("caches.misses", c.misses)?;
    }
    Ok(())
}

/// Checks an alert event: its figures must be finite (alert consumers compare them).
pub fn alert(e: &AlertEvent) -> R {
    finite("observed_value", e.observed_value)?;
    finite("threshold", e.threshold)?;
    finite("clear_threshold", e.clear_threshold)
}
