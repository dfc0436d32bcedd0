//! Where each column of the tables a flush writes gets its value from, and the validation rule
//! that keeps it writable. A column missing here fails `every_column_is_covered`: whoever adds
//! one says which event field feeds it, and the tests check the rule exists.

use perfstream_events::validate::*;
use perfstream_events::*;
use perfstream_window::CACHE_COUNTER_MAX;

use crate::common::{query, request, resource};

/// The tables event values are written to (by the flush and the query catalog).
pub const TABLES: [&str; 4] = [
    "query_rollups",
    "request_rollups",
    "resource_rollups",
    "query_catalog",
];

/// A text field of an event, settable on a valid sample event.
#[derive(Clone, Copy)]
pub struct TextField {
    pub name: &'static str,
    pub max: usize,
    pub set: fn(String) -> Event,
}

/// A number of an event (or a ratio of two, as its numerator over a denominator of 1), settable
/// on a valid sample event. `wire_max`: the type cannot carry a larger value, so there is no
/// larger value to refuse.
#[derive(Clone, Copy)]
pub struct NumField {
    pub name: &'static str,
    pub max: i64,
    pub set: fn(i64) -> Event,
    pub wire_max: bool,
}

/// What a column holds.
#[derive(Clone)]
pub enum Src {
    /// Written by perfstream from no event value (window label, histogram, row times); for
    /// text, its longest value in bytes.
    Internal { text_bytes: usize },
    /// An event text field, as is.
    Text(Vec<TextField>),
    /// A symbol of an event enum.
    Enum(Vec<&'static str>),
    /// An event time, or a window bound computed from one.
    Time(Vec<NumField>),
    /// A number of events: never near 2^63 (the store clamps a u64 count to bigint).
    Count,
    /// One event's figure (min, max, last, a percentile) times `scale` (10^6 for ppm).
    Value(Vec<NumField>, i64),
    /// A sum of figures times `scale` over a rollup's events: exact up to
    /// `exact_sums(max * scale)` events, saturating at `i64::MAX` beyond.
    Sum(Vec<NumField>, i64),
    /// `cache_hits` / `cache_misses`: sums saturating at `CACHE_COUNTER_MAX`.
    CacheCounter(Vec<NumField>),
    /// `GENERATED ALWAYS AS`: its arithmetic is checked.
    Generated,
}

impl Src {
    /// The largest value the column can hold, for the arithmetic check.
    pub fn bound(&self) -> Option<i128> {
        Some(match self {
            Src::Count | Src::Sum(..) => i64::MAX.into(),
            Src::Value(f, scale) => i128::from(max_of(f)) * i128::from(*scale),
            Src::CacheCounter(_) => CACHE_COUNTER_MAX.into(),
            _ => return None,
        })
    }

    pub fn fields(&self) -> Vec<NumField> {
        match self {
            Src::Time(f) | Src::Value(f, _) | Src::Sum(f, _) | Src::CacheCounter(f) => f.clone(),
            _ => Vec::new(),
        }
    }
}

pub fn max_of(f: &[NumField]) -> i64 {
    f.iter().map(|f| f.max).max().unwrap_or(0)
}

const PPM: i64 = 1_000_000;
const RATIO: i64 = MAX_RATIO as i64;

fn q(f: impl FnOnce(&mut QueryEvent)) -> Event {
    let mut e = query();
    f(&mut e);
    Event::Query(e)
}
fn r(f: impl FnOnce(&mut RequestEvent)) -> Event {
    let mut e = request();
    f(&mut e);
    Event::Request(e)
}
fn s(f: impl FnOnce(&mut ResourceEvent)) -> Event {
    let mut e = resource();
    f(&mut e);
    Event::Resource(e)
}

fn text(name: &'static str, max: usize, set: fn(String) -> Event) -> TextField {
    TextField { name, max, set }
}
fn num(name: &'static str, max: i64, set: fn(i64) -> Event) -> NumField {
    NumField {
        name,
        max,
        set,
        wire_max: false,
    }
}
fn int(name: &'static str, set: fn(i64) -> Event) -> NumField {
    NumField {
        name,
        max: i32::MAX.into(),
        set,
        wire_max: true,
    }
}

pub fn service() -> Vec<TextField> {
    vec![
        text("service", MAX_NAME_BYTES, |v| q(|e| e.service = v)),
        text("service", MAX_NAME_BYTES, |v| r(|e| e.service = v)),
        text("service", MAX_NAME_BYTES, |v| s(|e| e.service = v)),
    ]
}

/// Text fields no column of [`TABLES`] stores (`trace_id` goes to the sample tables, issue
/// 14); the rule holds for them anyway.
pub fn unstored_text() -> Vec<TextField> {
    vec![
        text("trace_id", MAX_TRACE_ID_BYTES, |v| {
            q(|e| e.trace_id = Some(v))
        }),
        text("trace_id", MAX_TRACE_ID_BYTES, |v| {
            r(|e| e.trace_id = Some(v))
        }),
        text("instance", MAX_NAME_BYTES, |v| q(|e| e.instance = v)),
        text("instance", MAX_NAME_BYTES, |v| r(|e| e.instance = v)),
        text("caches", MAX_NAME_BYTES, |v| {
            s(|e| {
                e.caches
                    .get_or_insert_default()
                    .insert(v, CacheCounters::default());
            })
        }),
    ]
}

fn times() -> Vec<NumField> {
    vec![
        num("executed_at_us", MAX_EVENT_TIME_US, |v| {
            q(|e| e.executed_at_us = v)
        }),
        num("occurred_at_us", MAX_EVENT_TIME_US, |v| {
            r(|e| e.occurred_at_us = v)
        }),
        num("observed_at_us", MAX_EVENT_TIME_US, |v| {
            s(|e| e.observed_at_us = v)
        }),
    ]
}

fn execution_time() -> Vec<NumField> {
    vec![num("execution_time_us", MAX_DURATION_US, |v| {
        q(|e| e.execution_time_us = v)
    })]
}
fn response_time() -> Vec<NumField> {
    vec![num("response_time_us", MAX_DURATION_US, |v| {
        r(|e| e.response_time_us = v)
    })]
}
fn rows() -> Vec<NumField> {
    vec![num("rows_affected", MAX_COUNT, |v| {
        q(|e| e.rows_affected = v)
    })]
}

/// Event numbers no column stores today; the rules hold for them anyway.
pub fn unstored_numbers() -> Vec<NumField> {
    vec![
        num("request_bytes", MAX_BYTES, |v| {
            r(|e| e.request_bytes = Some(v))
        }),
        num("response_bytes", MAX_BYTES, |v| {
            r(|e| e.response_bytes = Some(v))
        }),
        int("pool_idle", |v| s(|e| e.pool_idle = v as i32)),
    ]
}

/// The resource gauge a column prefix names: the fields feeding it and its scale.
fn gauge(prefix: &str) -> Option<(Vec<NumField>, i64)> {
    let one = |f| Some((vec![f], 1));
    match prefix {
        "cpu_ppm" => Some((
            vec![num("cpu_utilization_ratio", RATIO, |v| {
                s(|e| e.cpu_utilization_ratio = v as f64)
            })],
            PPM,
        )),
        "memory_used_bytes" => one(num("memory_used_bytes", MAX_BYTES, |v| {
            s(|e| {
                e.memory_used_bytes = v;
                e.memory_limit_bytes = MAX_BYTES;
            })
        })),
        "memory_limit_bytes" => one(num("memory_limit_bytes", MAX_BYTES, |v| {
            s(|e| e.memory_limit_bytes = v)
        })),
        "memory_utilization_ppm" => Some((
            vec![num("memory_used_bytes / memory_limit_bytes", RATIO, |v| {
                s(|e| {
                    e.memory_used_bytes = v;
                    e.memory_limit_bytes = 1;
                })
            })],
            PPM,
        )),
        "heap_bytes" => one(num("heap_bytes", MAX_BYTES, |v| {
            s(|e| e.heap_bytes = Some(v))
        })),
        "gc_pause_us" => one(num("gc_pause_us", MAX_DURATION_US, |v| {
            s(|e| e.gc_pause_us = Some(v))
        })),
        "gc_count" => one(num("gc_count", MAX_COUNT, |v| s(|e| e.gc_count = Some(v)))),
        "interval_us" => one(num("interval_us", MAX_DURATION_US, |v| {
            s(|e| e.interval_us = v)
        })),
        "pool_active" => one(int("pool_active", |v| {
            s(|e| {
                e.pool_active = v as i32;
                e.pool_max = i32::MAX;
            })
        })),
        "pool_max" => one(int("pool_max", |v| s(|e| e.pool_max = v as i32))),
        "pool_utilization_ppm" => Some((
            vec![num("pool_active / pool_max", RATIO, |v| {
                s(|e| {
                    e.pool_active = v as i32;
                    e.pool_max = 1;
                })
            })],
            PPM,
        )),
        "pool_waiters" => one(int("pool_waiters", |v| s(|e| e.pool_waiters = v as i32))),
        "pool_wait_us" => one(num("pool_wait_us", MAX_DURATION_US, |v| {
            s(|e| e.pool_wait_us = v)
        })),
        "io_read_bytes" => one(num("io_read_bytes", MAX_BYTES, |v| {
            s(|e| e.io_read_bytes = v)
        })),
        "io_write_bytes" => one(num("io_write_bytes", MAX_BYTES, |v| {
            s(|e| e.io_write_bytes = v)
        })),
        _ => None,
    }
}

fn cache_lookups() -> Vec<NumField> {
    fn one(hits: i64, misses: i64) -> Event {
        s(|e| {
            e.caches = Some([("c".to_owned(), CacheCounters { hits, misses })].into());
        })
    }
    vec![
        num("caches.hits", MAX_COUNT, |v| one(v, 0)),
        num("caches.misses", MAX_COUNT, |v| one(0, v)),
        num("caches.hits + caches.misses (all caches)", MAX_COUNT, |v| {
            s(|e| {
                e.caches = Some(
                    [
                        (
                            "a".to_owned(),
                            CacheCounters {
                                hits: v / 2,
                                misses: 0,
                            },
                        ),
                        (
                            "b".to_owned(),
                            CacheCounters {
                                hits: 0,
                                misses: v - v / 2,
                            },
                        ),
                    ]
                    .into(),
                );
            })
        }),
    ]
}

/// Where `table.column` gets its value; `None` when this file does not say (a test failure).
pub fn classify(table: &str, column: &str) -> Option<Src> {
    let latency = |fields: Vec<NumField>| -> Option<Src> {
        Some(match column {
            "count" | "clamped_count" => Src::Count,
            "sum_us" => Src::Sum(fields, 1),
            "min_us" | "max_us" | "p50_us" | "p90_us" | "p95_us" | "p99_us" | "p999_us" => {
                Src::Value(fields, 1)
            }
            "mean_us" => Src::Generated,
            _ => return None,
        })
    };
    let common = match column {
        // '1m', '500ms', '1h', '1d': a few bytes
        "resolution" => Some(Src::Internal { text_bytes: 16 }),
        "window_start" | "window_end" => Some(Src::Time(times())),
        "updated_at" | "hist" => Some(Src::Internal { text_bytes: 0 }),
        _ => None,
    };
    let query_type = || Src::Enum(QueryType::ALL.iter().map(|t| t.as_str()).collect());
    let query_hash = || {
        Src::Text(vec![text("query_hash", MAX_QUERY_HASH_BYTES, |v| {
            q(|e| e.query_hash = v)
        })])
    };
    match table {
        "query_rollups" => common.or_else(|| match column {
            "service" => Some(Src::Text(service()[..1].to_vec())),
            "query_hash" => Some(query_hash()),
            "query_type" => Some(query_type()),
            "tenant_id" => Some(Src::Text(vec![text("tenant_id", MAX_NAME_BYTES, |v| {
                q(|e| e.tenant_id = Some(v))
            })])),
            "rows_sum" => Some(Src::Sum(rows(), 1)),
            "rows_max" => Some(Src::Value(rows(), 1)),
            "rows_per_call" => Some(Src::Generated),
            _ => latency(execution_time()),
        }),
        "request_rollups" => common.or_else(|| match column {
            "service" => Some(Src::Text(service()[1..2].to_vec())),
            "endpoint" => Some(Src::Text(vec![text("endpoint", MAX_ENDPOINT_BYTES, |v| {
                r(|e| e.endpoint = v)
            })])),
            "method" => Some(Src::Text(vec![text("method", MAX_METHOD_BYTES, |v| {
                r(|e| e.method = v)
            })])),
            "status_2xx" | "status_3xx" | "status_4xx" | "status_5xx" | "status_other" => {
                Some(Src::Count)
            }
            "error_rate" => Some(Src::Generated),
            _ => latency(response_time()),
        }),
        "resource_rollups" => common.or_else(|| match column {
            "service" => Some(Src::Text(service()[2..].to_vec())),
            "instance" => Some(Src::Text(vec![text("instance", MAX_NAME_BYTES, |v| {
                s(|e| e.instance = v)
            })])),
            "samples" => Some(Src::Count),
            "cache_hits" | "cache_misses" => Some(Src::CacheCounter(cache_lookups())),
            "cache_hit_ratio" => Some(Src::Generated),
            _ => {
                let (prefix, part) = column.rsplit_once('_')?;
                let (prefix, part) = match (prefix.strip_suffix("_last"), part) {
                    (Some(p), "at") => (p, "last_at"),
                    _ => (prefix, part),
                };
                let (fields, scale) = gauge(prefix)?;
                Some(match part {
                    "samples" => Src::Count,
                    "sum" => Src::Sum(fields, scale),
                    "min" | "max" | "last" => Src::Value(fields, scale),
                    "last_at" => Src::Time(times()[2..].to_vec()),
                    "mean" => Src::Generated,
                    _ => return None,
                })
            }
        }),
        "query_catalog" => match column {
            "query_hash" => Some(query_hash()),
            "query_type" => Some(query_type()),
            "normalized_text" => Some(Src::Text(vec![text(
                "query_text",
                MAX_QUERY_TEXT_BYTES,
                |v| q(|e| e.query_text = Some(v)),
            )])),
            // Issue 12, section 5 keys the catalog by (service, hash).
            "service" => Some(Src::Text(service()[..1].to_vec())),
            "first_seen" | "last_seen" => Some(Src::Time(times()[..1].to_vec())),
            _ => None,
        },
        _ => None,
    }
}
