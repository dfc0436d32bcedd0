//! perfstream-store: the Postgres side of perfstream.
//!
//! **Key design choice: rollups and consumer progress commit in one transaction.** A flush
//! ([`Store::write_flush`]) writes the closed windows and corrections of every partition in it
//! and each partition's progress row (`consumer_offsets`) together, and the progress update is
//! a compare-and-set on the claim's (owner, generation) ([`Store::claim_partition`]). The
//! pipeline resumes from that row, never from Kafka's committed offsets, which is what makes
//! its counts exactly-once. A process that lost a partition gets [`StoreError::Fenced`] and its
//! whole flush rolls back; a flush with rows but no progress is refused
//! ([`StoreError::MissingProgress`]), since nothing could fence it.
//!
//! **Retrying a flush is safe.** Each partition's flushes within a claim are numbered
//! ([`PartitionProgress::flush_seq`]) and the compare-and-set also requires the stored number to
//! be the one before. A flush whose COMMIT reply was lost (the caller saw a retriable error
//! although Postgres committed) is recognised when re-sent: it rolls back, so its merged rows
//! are not added twice, and reports [`FlushCommit::AlreadyApplied`].
//!
//! The write path, in one transaction:
//! 1. **fast path**: new rows by chunked bulk `INSERT ... SELECT * FROM UNNEST(...) ON CONFLICT
//!    DO NOTHING`, sorted by primary key (the global lock order); only when a chunk inserted
//!    fewer rows than it was given does a second statement ask which rows this transaction did
//!    not insert (by `xmin`);
//! 2. **merge path** for those (late corrections, or one key flushed by two processes):
//!    `SELECT ... FOR UPDATE` in the same key order, merge in Rust with
//!    [`perfstream_window::Merge`] (histograms merged, percentiles recomputed), bulk `UPDATE`;
//! 3. query catalog, tier dirty marks, progress compare-and-set, `COMMIT` (or, when the
//!    compare-and-set shows the flush already committed, `ROLLBACK`).
//!
//! Every writer takes row locks in one order (query, request, resource rows by key; catalog;
//! marks; progress), so concurrent writers on overlapping keys wait for each other but never
//! deadlock. Histograms are stored as HdrHistogram V2 compressed bytes, which any HdrHistogram
//! implementation reads (see `table/hist.rs`).
//!
//! **SQL:** runtime `sqlx::query` with binds, not the compile-time `query!` macros: those need a
//! live database or committed offline (`.sqlx`) data at build time, which this workspace does
//! not have. The bulk statements are built once from each table's static column list (schema,
//! never data); every value is a bind. Schema and analyst SQL live in `migrations/` at the
//! repository root, embedded in [`MIGRATOR`].
//!
//! # Layout
//! - `store.rs`: [`Store`], migrations, partition claims, test fault hook ([`Stage`]).
//! - `connect.rs`: [`ConnectSettings`], the deadlines and keepalives of every connection (and
//!   why they are set on the server side: sqlx sets no socket options).
//! - `flush.rs`: [`FlushWrite`] and the write path; `progress.rs`: the progress
//!   compare-and-set and its already-applied check; `catalog.rs`: `query_catalog` upkeep.
//! - `table/`: the three rollup tables (column lists, encode/decode, bulk statements) and the
//!   histogram encoding.
//! - `tiers.rs`: the '1h'/'1d' tier job; `retention.rs`: the retention job; `jobs.rs`: the
//!   periodic task running both ([`run_maintenance`], [`MaintenanceSettings`]).
//! - `report.rs`: exact-percentile slow-query report over a range, recommendations.
//!
//! # Architecture invariants
//! - This crate never aggregates events: it stores and merges the rollups `perfstream-window`
//!   produces, with that crate's merge.
//! - Nothing outside a flush transaction writes rollup rows of the base tier; the tiers job
//!   writes only '1h'/'1d' rows, the retention job only deletes.
//!
//! # Tests
//! Against a real Postgres; each test gets a fresh database (`#[sqlx::test]`), so the user in
//! `DATABASE_URL` must be allowed to create databases. Network faults (a lost COMMIT reply, a
//! silent peer) come from a TCP proxy in `tests/support/proxy.rs`, which other crates' tests
//! can include with `#[path]`:
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres cargo nextest run -p perfstream-store
//! ```
//! The independent histogram check (Python `hdrhistogram`) reads any populated database, e.g.
//! the one the write bench leaves behind:
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres cargo bench -p perfstream-store --bench write
//! .venv/bin/python tests/python/check_hist.py --database-url postgres://postgres@127.0.0.1:55432/perfstream_bench
//! ```

mod catalog;
mod connect;
mod error;
mod flush;
mod isolate;
mod jobs;
mod progress;
pub mod report;
mod retention;
mod samples;
mod store;
mod table;
mod tiers;

pub use connect::ConnectSettings;
pub use error::StoreError;
pub use flush::{FlushCommit, FlushWrite, PartitionProgress, base_resolution_label};
pub use isolate::Unwritable;
pub use jobs::{MaintenanceSettings, run_maintenance};
pub use report::{
    ApdexRow, Recommendation, SlowQueryOptions, SlowQueryRow, apdex_report, recommendations,
    slow_query_report,
};
pub use retention::{Retention, RetentionReport};
#[cfg(feature = "failpoints")]
pub use store::FaultHook;
pub use store::{Claim, MIGRATOR, Stage, Store};
pub use table::encode_hist;
pub use tiers::TierReport;
