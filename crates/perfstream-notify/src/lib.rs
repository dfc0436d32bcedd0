//! The alert notifier: delivers the transitions of the alert outbox to Prometheus Alertmanager
//! and to generic webhooks, per route, with per-target retries, backoff and a rate limit.
//!
//! Key design choice: the notifier is a second, independent reader of `alert_outbox` (the
//! evaluator's relay to Kafka is the first). It copies each new outbox row into
//! `alert_deliveries`, one row per target its routes pick, in one transaction with its position
//! (`alert_notify_progress`), and then works off each target's rows in seq order, marking a row
//! delivered only after a 2xx. So a receiver that is down delays only its own rows: evaluation
//! and the alerts topic never wait for it, and nothing is lost while it is down. Delivery is
//! at-least-once with the topic's dedup id, `(alert_id, state)` (the webhook's `dedup_id`,
//! Alertmanager's `alert_id` label).
//!
//! # Layout
//! - `settings.rs`: [`NotifySettings`], the `[notify]` section (targets, routes).
//! - `route.rs`: which targets a transition goes to. `payload.rs`: Alertmanager's and the
//!   webhook's JSON, the HMAC signature. `backoff.rs`: backoff and the token bucket. All pure.
//! - `store.rs`: the SQL. `send.rs`: one HTTP POST. `run.rs`: leadership and the rounds.
//! - `stats.rs`: [`NotifyStats`], the figures `/metrics` shows.
//!
//! # Does not
//! Write the outbox, the alerts or the evaluator's state; talk to Kafka.

mod backoff;
mod payload;
mod route;
mod run;
mod send;
mod settings;
mod stats;
mod store;

use std::time::Duration;

pub use backoff::{Bucket, backoff};
pub use payload::{
    DEDUP_HEADER, SIGNATURE_HEADER, alert_labels, alertmanager_alert, dedup_id, signature,
    webhook_body,
};
pub use route::targets_for;
pub use run::{notify_lock_name, run_notifier};
pub use settings::{NotifySettings, Route, TargetKind, TargetSettings};
pub use stats::{NotifyStats, TargetStats};

/// Errors of the notifier. Delivery failures are not errors: they are retried and recorded.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("config key `{field}`: {reason}")]
    Settings { field: String, reason: String },
    #[error("postgres, {operation}: {source}")]
    Db {
        operation: &'static str,
        source: sqlx::Error,
    },
    #[error("postgres, {operation}: no reply within {deadline:?}")]
    Deadline {
        operation: &'static str,
        deadline: Duration,
    },
}

impl NotifyError {
    /// Postgres failures go away by leading again; settings need a person.
    pub fn is_retriable(&self) -> bool {
        matches!(self, NotifyError::Db { .. } | NotifyError::Deadline { .. })
    }
}
