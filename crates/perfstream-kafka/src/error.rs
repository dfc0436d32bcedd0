use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(#[source] RdError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "stored resume offset {resume_offset} of {topic}/{partition} is below the log start {log_start}: \
         {gap} messages expired in Kafka before they were aggregated; set kafka.allow_resume_from_log_start = true \
         to accept the gap and resume from the log start"
    )]
    OffsetGap {
        topic: String,
        partition: i32,
        resume_offset: i64,
        log_start: i64,
        gap: i64,
    },
    #[error("store: {0}")]
    Store(#[from] perfstream_store::StoreError),
    #[error(
        "the flush did not finish within {0:?} (pipeline.flush_deadline_ms, or pipeline.revoke_flush_deadline_ms on revoke)"
    )]
    FlushDeadline(std::time::Duration),
    #[error(
        "could not claim {topic}/{partition} in Postgres within pipeline.claim_deadline_ms = {deadline_ms}; \
         check that Postgres is reachable, or raise the deadline"
    )]
    ClaimDeadline {
        topic: String,
        partition: i32,
        deadline_ms: u64,
    },
    #[error("claiming a partition was interrupted by shutdown")]
    ClaimInterrupted,
    #[error("invalid [window] config: {0}")]
    Window(#[from] perfstream_window::ConfigError),
    #[error("decoding needs a service that is unavailable")]
    Decode(#[source] perfstream_events::DecodeError),
    #[error("routing to the dead-letter or late topic: {0}")]
    Routing(#[from] crate::routing::RoutingPending),
    #[error("pipeline thread panicked")]
    Panicked,
    #[error("cannot start the aggregation thread: {0}")]
    Worker(#[source] std::io::Error),
}
