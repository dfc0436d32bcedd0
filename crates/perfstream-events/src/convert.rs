//! apache-avro `Value`s, already resolved against our reader schema, to our types.
//!
//! After resolution a record holds exactly the reader schema's fields, so a missing field or an
//! unexpected value type here would be a bug in resolution, not bad input; it is still an error
//! (a `String` the caller wraps), never a panic.

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;

use crate::decode::{Decoded, Record};
use crate::types::*;

type R<T> = Result<T, String>;

/// The fields of one record value, taken out by name.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(v: Value, what: &str) -> R<Fields> {
        match v {
            Value::Record(f) => Ok(Fields(f)),
            other => Err(format!("{what}: expected a record, found {other:?}")),
        }
    }

    fn take(&mut self, name: &str) -> R<Value> {
        match self.0.iter().position(|(n, _)| n == name) {
            Some(i) => Ok(std::mem::replace(&mut self.0[i].1, Value::Null)),
            None => Err(format!("{name}: missing after resolution")),
        }
    }

    fn string(&mut self, name: &str) -> R<String> {
        string(name, self.take(name)?)
    }

    fn long(&mut self, name: &str) -> R<i64> {
        long(name, self.take(name)?)
    }

    fn int(&mut self, name: &str) -> R<i32> {
        match self.take(name)? {
            Value::Int(i) => Ok(i),
            other => Err(format!("{name}: expected an int, found {other:?}")),
        }
    }

    fn double(&mut self, name: &str) -> R<f64> {
        match self.take(name)? {
            Value::Double(d) => Ok(d),
            other => Err(format!("{name}: expected a double, found {other:?}")),
        }
    }

    fn opt(&mut self, name: &str) -> R<Option<Value>> {
        Ok(match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => None,
                v => Some(v),
            },
            Value::Null => None,
            v => Some(v),
        })
    }

    fn opt_string(&mut self, name: &str) -> R<Option<String>> {
        self.opt(name)?.map(|v| string(name, v)).transpose()
    }

    fn opt_long(&mut self, name: &str) -> R<Option<i64>> {
        self.opt(name)?.map(|v| long(name, v)).transpose()
    }

    fn opt_bytes(&mut self, name: &str) -> R<Option<Vec<u8>>> {
        self.opt(name)?
            .map(|v| match v {
                Value::Bytes(b) => Ok(b),
                other => Err(format!("{name}: expected bytes, found {other:?}")),
            })
            .transpose()
    }

    fn symbol(&mut self, name: &str) -> R<String> {
        match self.take(name)? {
            Value::Enum(_, s) => Ok(s),
            other => Err(format!("{name}: expected an enum, found {other:?}")),
        }
    }

    fn map(&mut self, name: &str) -> R<HashMap<String, Value>> {
        map(name, self.take(name)?)
    }
}

fn string(name: &str, v: Value) -> R<String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("{name}: expected a string, found {other:?}")),
    }
}

fn long(name: &str, v: Value) -> R<i64> {
    match v {
        Value::Long(l) | Value::TimestampMicros(l) => Ok(l),
        Value::Int(i) => Ok(i.into()),
        other => Err(format!("{name}: expected a long, found {other:?}")),
    }
}

fn map(name: &str, v: Value) -> R<HashMap<String, Value>> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(format!("{name}: expected a map, found {other:?}")),
    }
}

fn parsed<T>(name: &str, symbol: String, parse: impl Fn(&str) -> Option<T>) -> R<T> {
    parse(&symbol).ok_or_else(|| format!("{name}: unknown symbol {symbol:?}"))
}

/// Converts a resolved record value of `record`.
pub(crate) fn record(record: Record, v: Value) -> R<Decoded> {
    let mut f = Fields::of(v, record.name())?;
    Ok(match record {
        Record::Query => Decoded::Event(Event::Query(QueryEvent {
            service: f.string("service")?,
            instance: f.string("instance")?,
            query_hash: f.string("query_hash")?,
            query_type: parsed("query_type", f.symbol("query_type")?, QueryType::parse)?,
            query_text: f.opt_string("query_text")?,
            execution_time_us: f.long("execution_time_us")?,
            rows_affected: f.long("rows_affected")?,
            tenant_id: f.opt_string("tenant_id")?,
            executed_at_us: f.long("executed_at_us")?,
            trace_id: f.opt_string("trace_id")?,
        })),
        Record::Request => Decoded::Event(Event::Request(RequestEvent {
            service: f.string("service")?,
            instance: f.string("instance")?,
            endpoint: f.string("endpoint")?,
            method: f.string("method")?,
            status_code: f.int("status_code")?,
            response_time_us: f.long("response_time_us")?,
            request_bytes: f.opt_long("request_bytes")?,
            response_bytes: f.opt_long("response_bytes")?,
            occurred_at_us: f.long("occurred_at_us")?,
            trace_id: f.opt_string("trace_id")?,
        })),
        Record::Resource => Decoded::Event(Event::Resource(ResourceEvent {
            service: f.string("service")?,
            instance: f.string("instance")?,
            observed_at_us: f.long("observed_at_us")?,
            interval_us: f.long("interval_us")?,
            cpu_utilization_ratio: f.double("cpu_utilization_ratio")?,
            memory_used_bytes: f.long("memory_used_bytes")?,
            memory_limit_bytes: f.long("memory_limit_bytes")?,
            heap_bytes: f.opt_long("heap_bytes")?,
            gc_pause_us: f.opt_long("gc_pause_us")?,
            gc_count: f.opt_long("gc_count")?,
            io_read_bytes: f.long("io_read_bytes")?,
            io_write_bytes: f.long("io_write_bytes")?,
            pool_active: f.int("pool_active")?,
            pool_idle: f.int("pool_idle")?,
            pool_max: f.int("pool_max")?,
            pool_waiters: f.int("pool_waiters")?,
            pool_wait_us: f.long("pool_wait_us")?,
            caches: f.opt("caches")?.map(caches).transpose()?,
        })),
        Record::Alert => Decoded::Alert(AlertEvent {
            alert_id: f.string("alert_id")?,
            rule: f.string("rule")?,
            severity: parsed("severity", f.symbol("severity")?, Severity::parse)?,
            state: parsed("state", f.symbol("state")?, AlertState::parse)?,
            service: f.string("service")?,
            labels: f
                .map("labels")?
                .into_iter()
                .map(|(k, v)| Ok((k, string("labels", v)?)))
                .collect::<R<_>>()?,
            observed_value: f.double("observed_value")?,
            threshold: f.double("threshold")?,
            clear_threshold: f.double("clear_threshold")?,
            window_start_us: f.long("window_start_us")?,
            window_end_us: f.long("window_end_us")?,
            transitioned_at_us: f.long("transitioned_at_us")?,
            message: f.string("message")?,
        }),
        Record::DeadLetter => Decoded::DeadLetter(DeadLetter {
            source_topic: f.string("source_topic")?,
            source_partition: f.int("source_partition")?,
            source_offset: f.long("source_offset")?,
            original_key: f.opt_bytes("original_key")?,
            original_value: f.opt_bytes("original_value")?,
            error_kind: f.string("error_kind")?,
            reason: f.string("reason")?,
            dead_at_us: f.long("dead_at_us")?,
        }),
    })
}

fn caches(v: Value) -> R<BTreeMap<String, CacheCounters>> {
    map("caches", v)?
        .into_iter()
        .map(|(name, c)| {
            let mut f = Fields::of(c, "caches")?;
            let counters = CacheCounters {
                hits: f.long("hits")?,
                misses: f.long("misses")?,
            };
            Ok((name, counters))
        })
        .collect()
}
