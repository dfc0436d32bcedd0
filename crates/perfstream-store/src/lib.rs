//! perfstream-store: the Postgres side of perfstream.
//!
//! **Key design choice: rollups and consumer progress commit in one transaction.** A flush
//! ([`Store::write_flush`]) writes the closed windows of every partition in it and each
//! partition's progress row (`consumer_offsets`) together, and the progress update is a
//! compare-and-set on the claim's (owner, generation) ([`Store::claim_partition`]). The
//! pipeline resumes from that row, never from Kafka's committed offsets, which is what makes
//! its counts exactly-once. A process that lost a partition gets [`StoreError::Fenced`] and
//! its whole flush rolls back.
//!
//! Rows that already exist (late corrections, or a window of one key flushed by two
//! processes) are merged in Rust with [`perfstream_window::Merge`] under `SELECT ... FOR
//! UPDATE`, locked in one global key order so concurrent writers never deadlock. Histograms are
//! stored in the standard HdrHistogram V2 compressed format, so any HdrHistogram
//! implementation reads them.
//!
//! **SQL:** runtime `sqlx::query` with binds, not the compile-time `query!` macros: those need
//! a live database or committed offline data at build time, which this workspace does not have.
//! The bulk statements are built once from each table's static column list (schema, never
//! data); every value is a bind. Schema and analyst SQL live in `migrations/` (embedded).
//!
//! # Layout
//! - `store.rs`: [`Store`], migrations, partition claims, test fault hook.
//! - `flush.rs`: [`FlushWrite`] and the write path.
//! - `table/`: the three rollup tables: column lists, encode/decode, bulk statements.
//! - `tiers.rs`: the '1h'/'1d' tier job; `retention.rs`: the retention job; `jobs.rs`: the
//!   periodic task running both ([`run_maintenance`]).
//! - `report.rs`: exact-percentile reports over a time range, and recommendations.
//!
//! Architecture invariant: this crate never aggregates events; it stores and merges the
//! rollups `perfstream-window` produces, with that crate's merge.

mod error;
mod flush;
mod jobs;
pub mod report;
mod retention;
mod store;
mod table;
mod tiers;

pub use error::StoreError;
pub use flush::{FlushWrite, PartitionProgress};
pub use jobs::{MaintenanceSettings, run_maintenance};
pub use report::{
    Recommendation, SlowQueryOptions, SlowQueryRow, recommendations, slow_query_report,
};
pub use retention::{Retention, RetentionReport};
#[cfg(feature = "failpoints")]
pub use store::FaultHook;
pub use store::{Claim, MIGRATOR, Stage, Store};
pub use table::encode_hist;
pub use tiers::TierReport;
