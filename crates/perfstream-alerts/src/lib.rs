//! Alert rules over committed rollup rows, and the lifecycle of their alerts. Pure: no I/O, no
//! clock, no async.
//!
//! Key design choice: the engine is fed one window's rows at a time, in window order, and
//! decides everything from those rows, a short per-series history and the stored phase of each
//! (rule, key). Time never comes from a clock, so replaying the same windows from the same
//! stored state gives the same transitions with the same ids: an evaluator that crashes after
//! its transaction, or before it, or hands over to another process, neither loses nor invents
//! a transition.
//!
//! # Use
//! ```
//! use perfstream_alerts::{AlertSettings, Engine, Latency, QueryRow, Window, WindowRows};
//!
//! let mut engine = Engine::new(&AlertSettings::default()).unwrap();
//! let row = |p99_ms: i64| QueryRow {
//!     service: "billing".into(), query_hash: "ab12".into(), query_type: "select".into(),
//!     latency: Latency { count: 10, p99_us: p99_ms * 1000, ..Latency::default() },
//!     baseline_us: None,
//! };
//! let window = |i: i64| Window { start_us: i * 60_000_000, end_us: (i + 1) * 60_000_000 };
//! let mut rows = WindowRows::empty(window(0));
//! rows.queries.push(row(1500)); // p99 over the 1000 ms default
//! let e = engine.evaluate(&rows).unwrap();
//! assert_eq!(e.transitions[0].rule.as_str(), "slow_query");
//! // Persist `e.changes` (the phases) and `e.transitions` in one transaction.
//! let mut rows = WindowRows::empty(window(1));
//! rows.queries.push(row(700)); // under the 800 ms clear threshold
//! let e = engine.evaluate(&rows).unwrap();
//! assert_eq!(e.transitions[0].state, perfstream_events::AlertState::Resolved);
//! ```
//!
//! # Layout
//! - `settings.rs`: [`AlertSettings`], the `[alerts]` config section (rule patches, overrides).
//! - `rule.rs`: [`RuleId`], each rule's defaults, [`RuleSet`] (overrides per key).
//! - `rows.rs`: the inputs ([`WindowRows`]). `observe.rs`: each rule's judgement of one row.
//! - `lifecycle.rs`: the pending -> firing -> resolved machine, alert ids.
//! - `engine.rs`: [`Engine`], history and phases per key; `engine/replay.rs`: the journal of
//!   judged windows and [`Engine::rewind`] for late corrections. `message.rs`: human messages.
//! - `sla.rs`: [`Sla`], an endpoint's objective from the `endpoint_slas` table.
//! - `stats.rs`: least-squares fit, Kendall tau, median.
//!
//! # Invariant
//! Nothing here reads a clock, a database or a socket; an [`Engine`] is restored from the
//! caller's stored [`StateRow`]s and history windows.

mod engine;
mod lifecycle;
mod message;
mod observe;
mod rows;
mod rule;
mod settings;
mod sla;
mod stats;

#[cfg(test)]
mod tests;

pub use engine::{Engine, Evaluation, Rewind, StateRow, Transition};
pub use lifecycle::{Phase, ResolveReason, alert_id};
pub use observe::BurnPoint;
pub use rows::{
    Bucket, Latency, QueryRow, RequestRow, ResourceRow, Window, WindowRows, over_threshold,
};
pub use rule::{Rule, RuleId, RuleSet};
pub use settings::{AlertSettings, BurnWindow, Override, RulePatch, Rules, Severity, Statistic};
pub use sla::{Sla, SlaTable};
pub use stats::{Fit, fit};

/// Errors of the alert engine.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlertError {
    #[error("alert rule {rule}: {reason}")]
    InvalidRule { rule: &'static str, reason: String },
    #[error("window starting at {start_us} evaluated after the window starting at {last_start_us}")]
    OutOfOrder { last_start_us: i64, start_us: i64 },
}

impl AlertError {
    /// None of these goes away by retrying.
    pub fn is_retriable(&self) -> bool {
        false
    }
}
