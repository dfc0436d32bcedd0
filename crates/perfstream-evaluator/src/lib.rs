//! The alert evaluator: the I/O side of alerting. It judges the rollups the pipeline has
//! committed with the pure rules of `perfstream-alerts`, records every transition and an
//! outbox row in the same Postgres transaction as its new state, and relays the outbox to the
//! alerts topic.
//!
//! Key design choice: everything the evaluator decides is derived from committed rows plus its
//! own committed state, and committed in one transaction with the progress that says which
//! windows were judged. A leader that dies before its commit leaves nothing; its successor
//! judges the same windows from the same state and reaches the same transitions with the same
//! ids. A leader that dies after its commit leaves outbox rows that the successor's relay
//! publishes. Consumers therefore see every transition at least once; `(alert_id, state,
//! severity)` identifies it.
//!
//! # Protocol
//! - **Trigger**: `LISTEN perfstream_flush` (a statement trigger on `consumer_offsets`, which
//!   every flush updates, notifies at commit) plus a timer (`alerts.interval`).
//! - **Completeness**: a window is judged once every partition's `applied_watermark` of the
//!   group in `consumer_offsets` has passed its end.
//! - **Late corrections**: triggers record every window a rollup write touched in
//!   `rollup_changes` (same transaction as the write); a round reads them before any row,
//!   rewinds the engine to the oldest window it had judged, judges from there again and deletes
//!   the rows it read in its commit (issue 15, section 5).
//! - **SLAs**: `endpoint_slas` is read every round; the config's SLA is written to
//!   `endpoint_sla_defaults` on taking the lead.
//! - **One leader per group**: a session-level advisory lock (`pg_try_advisory_lock` of
//!   `perfstream-alerts/<group>`) on a dedicated connection that also carries every write of
//!   the leader (rollup rows are read on a small read pool, the three kinds in parallel).
//!   Stand-bys retry every `alerts.lock_retry`; when the leader's session ends, the lock is
//!   free and a stand-by takes over. Every wait on Postgres has a client-side deadline (the
//!   `operation_timeout` of [`RunOptions::connection`]); a leader that misses one steps down as
//!   if its connection were lost, and ends its abandoned session itself if it can. Bounds per
//!   kind of failure (crash: `lock_retry`; vanished host: ~31 s; cut-off leader: ~41 s): see
//!   `run.rs`.
//! - **State**: `alert_state` (pending/firing phase per rule and key), `alert_progress` (last
//!   judged window), both rebuilt into the engine on taking the lead; the trend and baseline
//!   history is re-read from the rollups of the windows before the next one.
//! - **Relay**: unsent `alert_outbox` rows in `seq` order, produced idempotently keyed by
//!   `alert_id`, marked sent after the acknowledgement.
//!
//! # Layout
//! `run.rs` (entry points [`run_evaluator`] and [`run_evaluator_with`], leadership, loop,
//! failover bounds), `deadline.rs` (the client-side bound on every wait on Postgres),
//! `evaluate.rs` (a round), `read.rs` (rollups, completeness, baselines), `write.rs` (state
//! and the transaction), `relay.rs` (outbox to Kafka), `failpoint.rs` (test crash points),
//! `error.rs`.
//!
//! # Does not
//! Write rollups, or publish anything that is not in the outbox.

mod deadline;
mod error;
mod evaluate;
mod failpoint;
mod read;
mod relay;
mod run;
mod write;

pub use error::EvalError;
pub use evaluate::RoundStats;
pub use perfstream_alerts::AlertSettings;
pub use run::{FLUSH_CHANNEL, Role, RunOptions, lock_name, run_evaluator, run_evaluator_with};
