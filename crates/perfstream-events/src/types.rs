//! The event types, one per Avro schema in `schemas/`. Field names and units match the schemas.

use std::collections::BTreeMap;

/// Microseconds since the Unix epoch, UTC (Avro `timestamp-micros`).
pub type TimestampUs = i64;

/// Statement kind of a [`QueryEvent`] (Avro enum `QueryType`, symbols in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryType {
    Select,
    Insert,
    Update,
    Delete,
    Other,
}

impl QueryType {
    pub const ALL: [QueryType; 5] = [
        Self::Select,
        Self::Insert,
        Self::Update,
        Self::Delete,
        Self::Other,
    ];

    /// The Avro symbol, also the value stored in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Other => "other",
        }
    }

    /// Index of the symbol in the Avro enum.
    pub fn index(self) -> u32 {
        self as u32
    }

    pub fn from_index(i: u32) -> Option<Self> {
        Self::ALL.get(i as usize).copied()
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One executed database query (schema `perfstream.v1.QueryEvent`, topic `perf.query`; version 1
/// or 2, see `schema.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryEvent {
    pub service: String,
    pub instance: String,
    pub query_hash: String,
    pub query_type: QueryType,
    pub query_text: Option<String>,
    pub execution_time_us: i64,
    pub rows_affected: i64,
    pub tenant_id: Option<String>,
    pub executed_at_us: TimestampUs,
    /// Distributed trace id (version 2 only; `None` from version 1). Kept with the event when
    /// it is one of its window's samples, so a slow execution links to its trace.
    pub trace_id: Option<String>,
}

/// One served request (schema `perfstream.v1.RequestEvent`, topic `perf.request`; version 1 or
/// 2, see `schema.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent {
    pub service: String,
    pub instance: String,
    pub endpoint: String,
    pub method: String,
    pub status_code: i32,
    pub response_time_us: i64,
    pub request_bytes: Option<i64>,
    pub response_bytes: Option<i64>,
    pub occurred_at_us: TimestampUs,
    /// Distributed trace id (version 2 only; `None` from version 1), kept with the samples.
    pub trace_id: Option<String>,
}

/// Hit and miss counts of one cache over a resource sample's interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheCounters {
    pub hits: i64,
    pub misses: i64,
}

/// A resource sample of one instance (schema `perfstream.v1.ResourceEvent`, topic `perf.resource`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceEvent {
    pub service: String,
    pub instance: String,
    pub observed_at_us: TimestampUs,
    pub interval_us: i64,
    pub cpu_utilization_ratio: f64,
    pub memory_used_bytes: i64,
    pub memory_limit_bytes: i64,
    pub heap_bytes: Option<i64>,
    pub gc_pause_us: Option<i64>,
    pub gc_count: Option<i64>,
    pub io_read_bytes: i64,
    pub io_write_bytes: i64,
    pub pool_active: i32,
    pub pool_idle: i32,
    pub pool_max: i32,
    pub pool_waiters: i32,
    pub pool_wait_us: i64,
    /// Per cache name; a `BTreeMap` so encoding is deterministic.
    pub caches: Option<BTreeMap<String, CacheCounters>>,
}

/// Alert severity (Avro enum `Severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Self::Info, Self::Warning, Self::Critical];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Alert state entered by a transition (Avro enum `AlertState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub const ALL: [AlertState; 2] = [Self::Firing, Self::Resolved];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One alert transition (schema `perfstream.v1.AlertEvent`, topic `perf.alerts`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub alert_id: String,
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    pub service: String,
    pub labels: BTreeMap<String, String>,
    pub observed_value: f64,
    pub threshold: f64,
    pub clear_threshold: f64,
    pub window_start_us: TimestampUs,
    pub window_end_us: TimestampUs,
    pub transitioned_at_us: TimestampUs,
    pub message: String,
}

/// Envelope for a message perfstream could not use (schema `perfstream.v1.DeadLetter`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub original_key: Option<Vec<u8>>,
    pub original_value: Option<Vec<u8>>,
    pub error_kind: String,
    pub reason: String,
    pub dead_at_us: TimestampUs,
}

/// Any input event, as decoded from one Kafka message.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Query(QueryEvent),
    Request(RequestEvent),
    Resource(ResourceEvent),
}

impl Event {
    /// The event time.
    pub fn time_us(&self) -> TimestampUs {
        match self {
            Event::Query(e) => e.executed_at_us,
            Event::Request(e) => e.occurred_at_us,
            Event::Resource(e) => e.observed_at_us,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Event::Query(_) => EventKind::Query,
            Event::Request(_) => EventKind::Request,
            Event::Resource(_) => EventKind::Resource,
        }
    }
}

/// The three input kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Query,
    Request,
    Resource,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [Self::Query, Self::Request, Self::Resource];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Request => "request",
            Self::Resource => "resource",
        }
    }
}
