//! The crate's error type.

use std::path::PathBuf;

use rdkafka::error::KafkaError;

/// Everything that can go wrong in the emitter and the load generator.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// A generator argument is out of range or unparsable.
    #[error("invalid argument {arg}: {reason}")]
    InvalidArgs { arg: String, reason: String },

    /// Creating the Kafka producer failed (bad bootstrap address or property).
    #[error("creating the Kafka producer failed: {source}")]
    CreateProducer {
        #[source]
        source: KafkaError,
    },

    /// A message could not be handed to the producer for a reason other than a full queue.
    #[error("producing to topic {topic} failed: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },

    /// Writing the truth file failed.
    #[error("writing the truth file {path} failed: {source}")]
    WriteTruth {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Serializing the truth failed.
    #[error("serializing the truth failed: {0}")]
    SerializeTruth(#[from] serde_json::Error),

    /// The background sending thread panicked or was cancelled.
    #[error("the sending thread ended abnormally: {0}")]
    Join(String),
}

impl EmitError {
    /// Whether trying again later may succeed (broker trouble), as opposed to a usage error.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            EmitError::Produce { .. } | EmitError::CreateProducer { .. }
        )
    }
}
