//! perfstream's Kafka edge: the long-running pipeline (`perfstream run`) that consumes the input
//! topics in a consumer group, decodes, aggregates with `perfstream-window`, and commits closed
//! windows together with its progress to Postgres through `perfstream-store`.
//!
//! # Exactly-once protocol
//!
//! Kafka offsets are never trusted for resuming; the truth of progress is the `consumer_offsets`
//! row of each partition, written in the same Postgres transaction as the rollups it covers:
//!
//! - `resume_offset`: the smallest offset that still contributes to an open window (or a pending
//!   correction) at the flush; `applied_through_offset`: the next offset after the last one the
//!   flush covers; `applied_watermark`: the watermark at which the flush closed windows.
//! - On assignment the partition is *claimed* (its `generation` bumped atomically) and the
//!   consumer is assigned at `resume_offset`. While replaying below `applied_through_offset` the
//!   engine skips events whose window ended at or before `applied_watermark` (they are in the
//!   tables already, as closed windows or corrections) and aggregates the rest.
//! - Dead-letter and late messages are produced by an idempotent producer, and every flush waits
//!   for their acknowledgements before its transaction commits. On replay, undecodable messages
//!   below `applied_through_offset` are not routed again.
//! - Progress updates are compare-and-set on `(owner, generation)`: a process that lost its
//!   partitions while stalled gets `Fenced`, its transaction rolls back, it drops all open state
//!   and re-seeks the partitions it still owns.
//! - On revoke, closed windows are flushed if possible before the rebalance completes; open state
//!   is dropped (the next owner replays it).
//! - Kafka-side commits are made after each flush, for lag tooling only.
//!
//! Limits: the dead-letter and late topics are at-least-once (keyed by `topic/partition/offset`
//! for de-duplication) when a crash falls between their acknowledgement and the commit. A stored
//! resume offset below the log start (data expired in Kafka) is a loud error unless
//! `allow_resume_from_log_start` is set.
//!
//! Layout: `pipeline` (the poll loop), `context` (the adapter around `perfstream_pipeline::Core`:
//! the per-message path; `context/flush.rs` the flush transaction, `context/rebalance.rs` the
//! rebalance callbacks), `routing` (dead-letter and late producer), `admin` (topics), `dev_broker` (mock
//! cluster for the demo and tests). The protocol itself (replay rules, progress,
//! flush plans) is the pure `perfstream_pipeline::Core`; settings and counters live there too.

mod admin;
mod context;
mod dev_broker;
mod error;
mod failpoint;
mod pipeline;
mod routing;

pub use admin::{check_retention, create_topics};
pub use dev_broker::DevBroker;
pub use error::KafkaError;
pub use perfstream_pipeline::{
    KafkaSettings, PipelineSettings, PipelineStats, StatsSnapshot, Topics,
};
pub use pipeline::run_pipeline;

/// An rdkafka client config from a property list of `perfstream-pipeline`'s settings.
pub fn client_config(properties: Vec<(String, String)>) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}
