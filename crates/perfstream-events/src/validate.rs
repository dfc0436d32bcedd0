//! Field rules that the Avro types cannot express: ranges, sizes, finiteness, clock skew, and
//! what Postgres can store.
//!
//! They run on the typed values, after either decoding path, so both paths accept and reject
//! exactly the same events with the same error. The per-field size limits are the ones the
//! schemas' docs state; `docs/producers.md` lists them all.
//!
//! # An event that decodes is always writable
//! A stored rollup must never fail for a value a message carried (issue 12): one bad producer
//! would otherwise stop the whole consumer group in a crash loop. So every constraint the
//! database enforces on what an event becomes is checked here, and refused (the message goes to
//! the dead-letter topic with the reason):
//! - **text**: no NUL byte in any text field (Postgres `text` cannot hold one), and the byte
//!   lengths below, which keep every index row on the rollup keys far under Postgres' limit;
//! - **numbers**: an upper limit per field ([`MAX_DURATION_US`], [`MAX_COUNT`], [`MAX_BYTES`],
//!   [`MAX_RATIO`], [`MAX_EVENT_TIME_US`]), chosen so that a rollup (one key and window, tiers
//!   included) summing up to [`exact_sums`]`(max)` events of the field at its maximum stays
//!   exact within bigint;
//! - **products**: the parts-per-million ratios the window crate stores (`cpu_utilization_ratio`,
//!   `memory_used_bytes / memory_limit_bytes`, `pool_active / pool_max`) are at most
//!   [`MAX_RATIO`], so at most 10^12 ppm;
//! - **the enum columns' CHECKs** hold by construction (the decoder yields only known symbols).
//!
//! Beyond those counts of events per rollup, the window crate saturates instead of failing:
//! sums at `i64::MAX`, the cache counters at `i64::MAX / 2` each (their sum is a generated
//! column). `tests/writable.rs` derives the columns, their limits and generated expressions from
//! `migrations/` and checks this module covers every one.

use std::borrow::Cow;

use crate::error::DecodeError;
use crate::types::*;

/// Longest `service`, `instance`, `tenant_id` and cache name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `query_hash`, in bytes.
pub const MAX_QUERY_HASH_BYTES: usize = 128;
/// Longest `query_text`, in bytes.
pub const MAX_QUERY_TEXT_BYTES: usize = 8192;
/// Longest `trace_id` (query and request events, version 2), in bytes: room for every common
/// format (W3C and B3 ids are 32 hex digits, X-Ray's 35 characters) with margin.
pub const MAX_TRACE_ID_BYTES: usize = 128;
/// Longest `endpoint` (route template), in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 512;
/// Longest `method`, in bytes.
pub const MAX_METHOD_BYTES: usize = 32;

/// Largest duration, in µs (4·10^12 µs, about 46 days): `execution_time_us`,
/// `response_time_us`, `interval_us`, `gc_pause_us`, `pool_wait_us`. Sums of 2^21 stay exact.
pub const MAX_DURATION_US: i64 = 4_000_000_000_000;
/// Largest count: `rows_affected`, `gc_count`, and the lookups of one resource sample (hits plus
/// misses over all its caches). Sums of 2^21 stay exact (2^20 for the cache counters, which
/// saturate at `i64::MAX / 2` each).
pub const MAX_COUNT: i64 = 4_000_000_000_000;
/// Largest byte figure (256 TB): `memory_*_bytes`, `heap_bytes`, `io_*_bytes`,
/// `request_bytes`, `response_bytes`. Sums of 2^15 stay exact.
pub const MAX_BYTES: i64 = 256_000_000_000_000;
/// Largest ratio: `cpu_utilization_ratio`, `memory_used_bytes / memory_limit_bytes` and
/// `pool_active / pool_max`, stored in parts per million (at most 10^12 ppm). Sums of 2^23
/// stay exact.
pub const MAX_RATIO: f64 = 1_000_000.0;
/// Latest event time: 9999-12-31T23:59:59.999999Z, in µs since the epoch. Far later times
/// cannot be stored: the store's timestamps end in year 262143, where a window's start and end
/// would clamp to the same instant and break `window_end > window_start`.
pub const MAX_EVENT_TIME_US: i64 = 253_402_300_799_999_999;

/// How many values of a field, each at most `max`, one bigint sum holds exactly: a rollup of
/// up to this many events never saturates that sum. `max` must be positive.
pub const fn exact_sums(max: i64) -> i64 {
    i64::MAX / max
}

type R = Result<(), DecodeError>;

fn name(field: &'static str, v: &str, max: usize) -> R {
    if v.is_empty() {
        return Err(DecodeError::EmptyString {
            field: Cow::Borrowed(field),
        });
    }
    len(field, v, max)
}

/// A text field: at most `max` bytes, and no NUL.
fn len(field: &'static str, v: &str, max: usize) -> R {
    if v.len() > max {
        return Err(DecodeError::StringTooLong {
            field: Cow::Borrowed(field),
            len: v.len() as u64,
            max,
        });
    }
    if let Some(at) = v.bytes().position(|b| b == 0) {
        return Err(DecodeError::ContainsNul {
            field: Cow::Borrowed(field),
            at,
        });
    }
    Ok(())
}

fn at_most(field: &'static str, v: i64, max: i64) -> R {
    if v > max {
        return Err(DecodeError::TooLarge {
            field: Cow::Borrowed(field),
            value: v,
            max,
        });
    }
    Ok(())
}

/// `0 <= v <= max`.
fn within(field: &'static str, v: i64, max: i64) -> R {
    non_negative(field, v)?;
    at_most(field, v, max)
}

fn opt_within(field: &'static str, v: Option<i64>, max: i64) -> R {
    v.map_or(Ok(()), |v| within(field, v, max))
}

/// `num / den <= MAX_RATIO`, for the ratios the window crate stores in ppm (`den > 0`).
fn ratio(field: &'static str, num: i64, den: i64) -> R {
    if i128::from(num) > i128::from(den) * MAX_RATIO as i128 {
        return Err(DecodeError::FigureTooLarge {
            field: Cow::Borrowed(field),
            value: num as f64 / den as f64,
            max: MAX_RATIO,
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

fn finite(field: &'static str, v: f64) -> R {
    if !v.is_finite() {
        return Err(DecodeError::NotFinite {
            field: Cow::Borrowed(field),
            value: v,
        });
    }
    Ok(())
}

/// An event time: not before 1970, at most `max_skew_us` ahead of the Kafka timestamp, and not
/// after [`MAX_EVENT_TIME_US`] (checked last: the skew is the likelier reason, and says more).
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
    at_most(field, t, MAX_EVENT_TIME_US)
}

/// A trace id: at most [`MAX_TRACE_ID_BYTES`], no NUL. An empty one is allowed (a producer
/// whose tracing is off may send `""`); the samples store it as none.
fn trace_id(t: &Option<String>) -> R {
    t.as_deref()
        .map_or(Ok(()), |t| len("trace_id", t, MAX_TRACE_ID_BYTES))
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
    within("execution_time_us", e.execution_time_us, MAX_DURATION_US)?;
    within("rows_affected", e.rows_affected, MAX_COUNT)?;
    if let Some(t) = &e.tenant_id {
        len("tenant_id", t, MAX_NAME_BYTES)?;
    }
    trace_id(&e.trace_id)?;
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
    within("response_time_us", e.response_time_us, MAX_DURATION_US)?;
    opt_within("request_bytes", e.request_bytes, MAX_BYTES)?;
    opt_within("response_bytes", e.response_bytes, MAX_BYTES)?;
    trace_id(&e.trace_id)?;
    event_time("occurred_at_us", e.occurred_at_us, kafka_us, max_skew_us)
}

pub fn resource(e: &ResourceEvent, kafka_us: Option<i64>, max_skew_us: i64) -> R {
    name("service", &e.service, MAX_NAME_BYTES)?;
    name("instance", &e.instance, MAX_NAME_BYTES)?;
    event_time("observed_at_us", e.observed_at_us, kafka_us, max_skew_us)?;
    positive("interval_us", e.interval_us)?;
    at_most("interval_us", e.interval_us, MAX_DURATION_US)?;
    finite("cpu_utilization_ratio", e.cpu_utilization_ratio)?;
    if e.cpu_utilization_ratio < 0.0 {
        return Err(DecodeError::NegativeFigure {
            field: Cow::Borrowed("cpu_utilization_ratio"),
            value: e.cpu_utilization_ratio,
        });
    }
    if e.cpu_utilization_ratio > MAX_RATIO {
        return Err(DecodeError::FigureTooLarge {
            field: Cow::Borrowed("cpu_utilization_ratio"),
            value: e.cpu_utilization_ratio,
            max: MAX_RATIO,
        });
    }
    within("memory_used_bytes", e.memory_used_bytes, MAX_BYTES)?;
    positive("memory_limit_bytes", e.memory_limit_bytes)?;
    at_most("memory_limit_bytes", e.memory_limit_bytes, MAX_BYTES)?;
    ratio(
        "memory_used_bytes / memory_limit_bytes",
        e.memory_used_bytes,
        e.memory_limit_bytes,
    )?;
    opt_within("heap_bytes", e.heap_bytes, MAX_BYTES)?;
    opt_within("gc_pause_us", e.gc_pause_us, MAX_DURATION_US)?;
    opt_within("gc_count", e.gc_count, MAX_COUNT)?;
    within("io_read_bytes", e.io_read_bytes, MAX_BYTES)?;
    within("io_write_bytes", e.io_write_bytes, MAX_BYTES)?;
    // The pool figures are 32-bit: any sum of 2^32 of them fits a bigint.
    non_negative("pool_active", e.pool_active.into())?;
    non_negative("pool_idle", e.pool_idle.into())?;
    positive("pool_max", e.pool_max.into())?;
    ratio(
        "pool_active / pool_max",
        e.pool_active.into(),
        e.pool_max.into(),
    )?;
    non_negative("pool_waiters", e.pool_waiters.into())?;
    within("pool_wait_us", e.pool_wait_us, MAX_DURATION_US)?;
    let mut lookups: i64 = 0;
    for (cache, c) in e.caches.iter().flatten() {
        len("caches", cache, MAX_NAME_BYTES)?;
        within("caches.hits", c.hits, MAX_COUNT)?;
        within("caches.misses", c.misses, MAX_COUNT)?;
        // At most 2 * MAX_COUNT per cache: no overflow before the check below fires.
        lookups += c.hits + c.misses;
        at_most(
            "caches.hits + caches.misses (all caches)",
            lookups,
            MAX_COUNT,
        )?;
    }
    Ok(())
}

/// Checks an alert event: its figures must be finite (alert consumers compare them).
pub fn alert(e: &AlertEvent) -> R {
    finite("observed_value", e.observed_value)?;
    finite("threshold", e.threshold)?;
    finite("clear_threshold", e.clear_threshold)
}
