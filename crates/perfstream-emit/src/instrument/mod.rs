//! Instrumentation helpers for Rust services: time a query, record every request.
//!
//! Both build events and hand them to an [`Emitter`](crate::Emitter), so they inherit its
//! guarantee: the service is never blocked, whatever the broker does.
//!
//! - [`QueryRecorder`] times any query future and records it with its text only; the emitter
//!   fingerprints the text ([`crate::fingerprint`]). With the `sqlx` feature, sqlx's Postgres
//!   results know their row count ([`RowCount`]).
//! - `RequestLayer` (feature `tower`) is a tower `Layer` recording each request's endpoint
//!   template (axum's `MatchedPath`), method, status and time.

mod query;
#[cfg(feature = "tower")]
mod request;

pub use query::{QueryRecorder, RowCount};
#[cfg(feature = "tower")]
pub use request::{
    EndpointFn, RequestLayer, RequestService, ResponseFuture, UNMATCHED, traceparent_trace_id,
};

/// Microseconds since the Unix epoch, now (the event time of what is about to run).
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Elapsed microseconds, capped at what perfstream accepts for a duration.
pub(crate) fn elapsed_us(start: std::time::Instant) -> i64 {
    const MAX_DURATION_US: i64 = 4_000_000_000_000;
    i64::try_from(start.elapsed().as_micros())
        .unwrap_or(i64::MAX)
        .min(MAX_DURATION_US)
}
