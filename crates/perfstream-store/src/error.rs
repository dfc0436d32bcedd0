//! The store's error type.

use std::time::Duration;

use perfstream_events::TimestampUs;

/// Everything a store operation can fail with. Variants name the operation and carry context.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("connecting to Postgres")]
    Connect(#[source] sqlx::Error),

    #[error("applying migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    #[error("{op} failed")]
    Db {
        /// What the store was doing, e.g. "merging query_rollups".
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// The progress compare-and-set found another owner or a newer generation: this process lost
    /// the partition (or the flush's `flush_seq` does not follow the stored one). The flush was
    /// rolled back whole; the caller must stop and re-seek (or drop the partition).
    #[error(
        "partition {topic}/{partition} is fenced: another owner or a newer generation holds it, or the flush number does not follow"
    )]
    Fenced { topic: String, partition: i32 },

    #[error(
        "stored histogram in {table} at window_start_us={window_start_us} does not decode: {reason}"
    )]
    CorruptHistogram {
        table: &'static str,
        window_start_us: TimestampUs,
        reason: String,
    },

    #[error("invalid {column} in {table} at window_start_us={window_start_us}")]
    InvalidColumn {
        table: &'static str,
        column: &'static str,
        window_start_us: TimestampUs,
    },

    /// A rollup's window cannot be stored: the base window must be whole milliseconds, shorter
    /// than an hour and divide it (so the '1h' tier is made of whole windows), and aligned to
    /// the epoch.
    #[error("rollup window {window_start_us}..{window_end_us} is not storable: {reason}")]
    InvalidWindow {
        window_start_us: TimestampUs,
        window_end_us: TimestampUs,
        reason: &'static str,
    },

    /// Rows existed at insert time but were gone when locked, again and again (concurrent
    /// deletes, e.g. retention racing a replay of old data). Retrying the flush resolves it.
    #[error("rows of {table} kept vanishing between insert and lock")]
    RowsVanishing { table: &'static str },

    /// A flush with rollups but no partition progress: it could not be fenced, so it is
    /// refused.
    #[error("flush has rollups but no partition progress to compare-and-set")]
    MissingProgress,

    /// The operation did not finish within the client-side deadline
    /// ([`crate::ConnectSettings::operation_timeout`]): Postgres is unreachable, silent or very
    /// slow. Its connection was abandoned; a transaction in flight rolled back, unless it was
    /// committing, in which case the re-sent flush is found already applied
    /// ([`crate::FlushCommit::AlreadyApplied`]). Retriable.
    #[error("{op} did not finish within {deadline:?}")]
    DeadlineExceeded {
        op: &'static str,
        deadline: Duration,
    },

    /// A flush numbered below 1: a claim's flushes are numbered from 1 (the stored number
    /// starts at 0, so a flush numbered 0 would look already applied).
    #[error("flush_seq {flush_seq} of {topic}/{partition} is not a flush number (1, 2, ...)")]
    InvalidFlushSeq {
        topic: String,
        partition: i32,
        flush_seq: i64,
    },

    /// A report's range is empty or backwards: its start is not before its end.
    #[error(
        "the range start {} is not before its end {}",
        rfc3339(*from_us),
        rfc3339(*to_us)
    )]
    InvalidRange {
        from_us: TimestampUs,
        to_us: TimestampUs,
    },

    /// A test-only fault injected between the statements of a flush (feature `failpoints`).
    #[error("fault injected at {stage:?}")]
    Injected { stage: crate::Stage },
}

/// A time for a message: RFC 3339, UTC.
fn rfc3339(us: TimestampUs) -> String {
    crate::table::to_ts(us).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl StoreError {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Db { op, source }
    }

    /// True when retrying the same operation later can succeed: the connection broke or the
    /// pool timed out (Postgres down or slow), a deadline passed (client side, or the server's
    /// statement, lock or idle-in-transaction timeout), the server is shutting down, or the
    /// transaction lost a serialization or deadlock race. Fencing, corrupt data and invalid
    /// input are not retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::Connect(e) | StoreError::Db { source: e, .. } => sqlx_retriable(e),
            StoreError::RowsVanishing { .. } | StoreError::DeadlineExceeded { .. } => true,
            _ => false,
        }
    }
}

fn sqlx_retriable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01..03: admin/crash shutdown, cannot connect now;
            // 40001 serialization failure; 40P01 deadlock detected; 53300 too many connections;
            // 57014 statement timeout (or cancel); 55P03 lock timeout; 25P03 idle in
            // transaction timeout.
            c.starts_with("08")
                || matches!(
                    &*c,
                    "57P01"
                        | "57P02"
                        | "57P03"
                        | "40001"
                        | "40P01"
                        | "53300"
                        | "57014"
                        | "55P03"
                        | "25P03"
                )
        }),
        _ => false,
    }
}
