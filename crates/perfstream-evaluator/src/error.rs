//! The evaluator's errors.

use std::time::Duration;

use perfstream_alerts::AlertError;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("invalid alert settings: {0}")]
    Settings(#[from] AlertError),
    #[error("postgres, {operation}: {source}")]
    Db {
        operation: &'static str,
        source: sqlx::Error,
    },
    /// No reply within the client-side deadline (`crate::deadline`): the server or the path
    /// to it may be gone. Handled like a lost connection: the leader steps down.
    #[error("postgres, {operation}: no reply within {deadline:?}")]
    Deadline {
        operation: &'static str,
        deadline: Duration,
    },
    #[error("creating the alert producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    #[error("publishing alert {alert_id} (outbox seq {seq}): {source}")]
    Publish {
        seq: i64,
        alert_id: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("stored alert state {rule}/{key} is invalid: {reason}")]
    BadState {
        rule: String,
        key: String,
        reason: String,
    },
}

impl EvalError {
    /// Errors a new leadership attempt can get past (Postgres or the broker came back).
    /// Settings and stored-state errors need a person.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            EvalError::Db { .. } | EvalError::Deadline { .. } | EvalError::Publish { .. }
        )
    }
}

/// `map_err` helper naming the operation.
pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> EvalError {
    move |source| EvalError::Db { operation, source }
}
