//! Kafka settings, part of the binary's typed config (`[kafka]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Topic names. Defaults: `perf.query`, `perf.request`, `perf.resource`, `perf.dlq`, `perf.late`,
/// `perf.alerts`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Query events in. Default `perf.query`.
    pub query: String,
    /// Request events in. Default `perf.request`.
    pub request: String,
    /// Resource events in. Default `perf.resource`.
    pub resource: String,
    /// Undecodable input, as `DeadLetter` envelopes keyed by source. Default `perf.dlq`.
    pub dlq: String,
    /// Events beyond the correction horizon, as `DeadLetter` envelopes. Default `perf.late`.
    pub late: String,
    /// Alert transitions out. Default `perf.alerts`.
    pub alerts: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            query: "perf.query".into(),
            request: "perf.request".into(),
            resource: "perf.resource".into(),
            dlq: "perf.dlq".into(),
            late: "perf.late".into(),
            alerts: "perf.alerts".into(),
        }
    }
}

impl Topics {
    /// The input topics, in the order of `EventKind::ALL`.
    pub fn inputs(&self) -> [&str; 3] {
        [&self.query, &self.request, &self.resource]
    }
}

/// How perfstream talks to Kafka.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// `bootstrap.servers`. Default `localhost:9092`.
    pub bootstrap_servers: String,
    /// Consumer group of the pipeline; also the key of its rows in `consumer_offsets`.
    /// Default `perfstream`.
    pub group_id: String,
    pub topics: Topics,
    /// `session.timeout.ms`: how long a silent member keeps its partitions. Default 10000.
    pub session_timeout_ms: u32,
    /// Create missing topics at `run` start-up. Default false (`perfstream topics create`).
    pub create_topics: bool,
    /// Partitions of topics created by perfstream. Default 6.
    pub partitions: i32,
    /// Replication factor of topics created by perfstream. Default 1.
    pub replication_factor: i32,
    /// `retention.ms` of topics created by perfstream. Must cover the correction horizon plus
    /// the longest time a window stays open; start-up warns when it does not. Default 7 days.
    pub retention_ms: i64,
    /// When a stored resume offset is below the partition's log start (data expired in Kafka),
    /// resume from the log start instead of failing. Default false: the gap is an error.
    pub allow_resume_from_log_start: bool,
    /// Largest dead-letter or late envelope sent, in bytes (key, value and framing). Set it to
    /// the `max.message.bytes` of the dead-letter and late topics when lower. A larger envelope
    /// has its `original_value` truncated to fit, with a `perfstream-truncated` header holding
    /// the original length. Default 1000000 (the producer's and Kafka's default limit).
    pub routed_max_message_bytes: usize,
    /// Bound of the producer's local queue for routed messages and alerts, in KiB
    /// (`queue.buffering.max.kbytes`). When it is full the pipeline stops fetching until the
    /// queue drains. Default 32768.
    pub producer_queue_max_kbytes: u32,
    /// Extra librdkafka properties passed through unchanged (SASL, TLS, tuning), e.g.
    /// `security.protocol = "SASL_SSL"`. Values of keys containing `password` or `secret` are
    /// redacted by `check-config`.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "perfstream".into(),
            topics: Topics::default(),
            session_timeout_ms: 10_000,
            create_topics: false,
            partitions: 6,
            replication_factor: 1,
            retention_ms: 7 * 24 * 3600 * 1000,
            allow_resume_from_log_start: false,
            routed_max_message_bytes: 1_000_000,
            producer_queue_max_kbytes: 32_768,
            librdkafka: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// Base client properties: bootstrap servers plus the pass-through properties.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        self.with_passthrough(vec![("bootstrap.servers", self.bootstrap_servers.clone())])
    }

    /// Consumer properties: auto-commit off (progress lives in Postgres), no auto offset store,
    /// read committed, fetch backoff lowered (librdkafka's 1 s default halves throughput), and
    /// metadata refreshed every 10 s, so an input topic created after start-up (producers
    /// deployed after perfstream) is consumed within seconds, not at librdkafka's 5 min refresh.
    pub fn consumer_properties(&self) -> Vec<(String, String)> {
        self.with_passthrough(vec![
            ("bootstrap.servers", self.bootstrap_servers.clone()),
            ("group.id", self.group_id.clone()),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            ("auto.offset.reset", "earliest".into()),
            ("session.timeout.ms", self.session_timeout_ms.to_string()),
            (
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 5).max(100).to_string(),
            ),
            ("fetch.queue.backoff.ms", "10".into()),
            ("topic.metadata.refresh.interval.ms", "10000".into()),
            ("isolation.level", "read_committed".into()),
            ("partition.assignment.strategy", "range,roundrobin".into()),
        ])
    }

    /// Producer properties for the dead-letter, late and alert topics: idempotent, retried until
    /// delivered (the flush that covers a routed message waits for its acknowledgement), with a
    /// bounded local queue.
    pub fn producer_properties(&self) -> Vec<(String, String)> {
        self.with_passthrough(vec![
            ("bootstrap.servers", self.bootstrap_servers.clone()),
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("message.timeout.ms", "0".into()),
            ("linger.ms", "5".into()),
            (
                "queue.buffering.max.kbytes",
                self.producer_queue_max_kbytes.max(1).to_string(),
            ),
            (
                "message.max.bytes",
                self.routed_max_message_bytes.max(1000).to_string(),
            ),
        ])
    }

    /// Ours first, then the user's `librdkafka` table, which wins on a clash.
    fn with_passthrough(&self, ours: Vec<(&str, String)>) -> Vec<(String, String)> {
        ours.into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(self.librdkafka.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }
}

/// Pipeline behaviour (`[pipeline]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// How often corrections and progress are written; a window that closes is written at once
    /// (the poll loop asks the core after every batch). Default 1000 ms.
    pub flush_interval_ms: u64,
    /// Messages handled per poll batch (one tracing span each). Default 5000.
    pub batch_max_messages: usize,
    /// First retry delay after a failed flush; doubles up to `retry_max_ms`, with jitter.
    /// Default 100 ms.
    pub retry_initial_ms: u64,
    /// Cap of the retry delay. Default 10000 ms.
    pub retry_max_ms: u64,
    /// Time a revoke may spend flushing closed windows before it gives up and lets the next
    /// owner replay them. Default 5000 ms.
    pub revoke_flush_deadline_ms: u64,
    /// Longest a flush may take (all its statements and the commit) before it is abandoned and
    /// retried; a lost reply is recognised on retry, so nothing is applied twice. Default 60000.
    pub flush_deadline_ms: u64,
    /// Longest the claim of a partition on assignment may retry an unreachable Postgres before
    /// the process gives up (exits non-zero). Default 60000.
    pub claim_deadline_ms: u64,
    /// Identity of this process in `consumer_offsets.owner`. Default: host name + pid.
    pub owner: Option<String>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            flush_interval_ms: 1000,
            batch_max_messages: 5000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            revoke_flush_deadline_ms: 5000,
            flush_deadline_ms: 60_000,
            claim_deadline_ms: 60_000,
            owner: None,
        }
    }
}
