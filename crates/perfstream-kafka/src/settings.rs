//! Kafka settings, part of the binary's typed config (`[kafka]`).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
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
            librdkafka: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// Base client config: bootstrap servers plus the pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        c
    }

    /// Consumer config: auto-commit off (progress lives in Postgres), no auto offset store,
    /// read committed, and fetch backoff lowered (librdkafka's 1 s default halves throughput).
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 5).max(100).to_string(),
            )
            .set("fetch.queue.backoff.ms", "10")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "range,roundrobin");
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        c
    }

    /// Producer config for the dead-letter, late and alert topics: idempotent, retried until
    /// delivered (the flush that covers a routed message waits for its acknowledgement).
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5");
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
        c
    }
}
