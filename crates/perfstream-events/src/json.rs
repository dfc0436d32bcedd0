//! A JSON view of the records, field for field as in the Avro schemas, for cross-language checks:
//! the fixture manifests that `examples/fixtures.rs` and `tests/python/*.py` exchange, and the
//! manifest the Python producer example writes. Enums are their symbols, optional fields `null`,
//! timestamps integer microseconds, bytes lowercase hex. Not used on the hot path.

use serde_json::{Map, Value, json};

use crate::types::*;

/// Lowercase hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The JSON view of an input event (without a kind tag; see [`kind_name`]).
pub fn event_to_json(e: &Event) -> Value {
    match e {
        Event::Query(q) => json!({
            "service": q.service,
            "instance": q.instance,
            "query_hash": q.query_hash,
            "query_type": q.query_type.as_str(),
            "query_text": q.query_text,
            "execution_time_us": q.execution_time_us,
            "rows_affected": q.rows_affected,
            "tenant_id": q.tenant_id,
            "executed_at_us": q.executed_at_us,
            "trace_id": q.trace_id,
        }),
        Event::Request(r) => json!({
            "service": r.service,
            "instance": r.instance,
            "endpoint": r.endpoint,
            "method": r.method,
            "status_code": r.status_code,
            "response_time_us": r.response_time_us,
            "request_bytes": r.request_bytes,
            "response_bytes": r.response_bytes,
            "occurred_at_us": r.occurred_at_us,
            "trace_id": r.trace_id,
        }),
        Event::Resource(r) => json!({
            "service": r.service,
            "instance": r.instance,
            "observed_at_us": r.observed_at_us,
            "interval_us": r.interval_us,
            "cpu_utilization_ratio": r.cpu_utilization_ratio,
            "memory_used_bytes": r.memory_used_bytes,
            "memory_limit_bytes": r.memory_limit_bytes,
            "heap_bytes": r.heap_bytes,
            "gc_pause_us": r.gc_pause_us,
            "gc_count": r.gc_count,
            "io_read_bytes": r.io_read_bytes,
            "io_write_bytes": r.io_write_bytes,
            "pool_active": r.pool_active,
            "pool_idle": r.pool_idle,
            "pool_max": r.pool_max,
            "pool_waiters": r.pool_waiters,
            "pool_wait_us": r.pool_wait_us,
            "caches": r.caches.as_ref().map(|m| {
                m.iter()
                    .map(|(k, c)| (k.clone(), json!({"hits": c.hits, "misses": c.misses})))
                    .collect::<Map<_, _>>()
            }),
        }),
    }
}

/// The JSON view of an alert event.
pub fn alert_to_json(a: &AlertEvent) -> Value {
    json!({
        "alert_id": a.alert_id,
        "rule": a.rule,
        "severity": a.severity.as_str(),
        "state": a.state.as_str(),
        "service": a.service,
        "labels": a.labels,
        "observed_value": a.observed_value,
        "threshold": a.threshold,
        "clear_threshold": a.clear_threshold,
        "window_start_us": a.window_start_us,
        "window_end_us": a.window_end_us,
        "transitioned_at_us": a.transitioned_at_us,
        "message": a.message,
    })
}

/// The JSON view of a dead-letter envelope.
pub fn dead_letter_to_json(d: &DeadLetter) -> Value {
    json!({
        "source_topic": d.source_topic,
        "source_partition": d.source_partition,
        "source_offset": d.source_offset,
        "original_key": d.original_key.as_deref().map(hex),
        "original_value": d.original_value.as_deref().map(hex),
        "error_kind": d.error_kind,
        "reason": d.reason,
        "dead_at_us": d.dead_at_us,
    })
}

/// The kind names used in manifests: "query", "request", "resource", "alert", "dead_letter".
pub fn kind_name(e: &Event) -> &'static str {
    e.kind().as_str()
}
