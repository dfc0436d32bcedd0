//! The store handle: connection pool, migrations, partition claims.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use perfstream_events::TimestampUs;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, Row};

use crate::table::from_ts;
use crate::{ConnectSettings, StoreError};

/// A point between the statements of a flush transaction, where a test can inject a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// After the bulk insert into `table` (fast path).
    Inserted { table: &'static str },
    /// After the merged rows of `table` were updated (merge path).
    Merged { table: &'static str },
    /// After the query catalog upsert.
    Catalog,
    /// After the tier dirty marks.
    DirtyMarks,
    /// After the progress compare-and-set, just before COMMIT.
    BeforeCommit,
    /// Just after COMMIT returned.
    AfterCommit,
}

/// Called at every [`Stage`]; an `Err` aborts the flush there (the transaction rolls back, or,
/// at [`Stage::AfterCommit`], the caller sees the error although the flush committed). A hook
/// may also end the process to simulate a crash.
#[cfg(feature = "failpoints")]
pub type FaultHook = std::sync::Arc<dyn Fn(Stage) -> Result<(), StoreError> + Send + Sync>;

/// Handle to the rollup store. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: PgPool,
    /// What this process knows the query catalog holds (see `catalog.rs`).
    pub(crate) catalog: crate::catalog::Catalog,
    /// The client-side bound on a flush or a claim ([`ConnectSettings::operation_timeout`]).
    pub(crate) operation_timeout: Duration,
    #[cfg(feature = "failpoints")]
    hook: Option<FaultHook>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// The outcome of [`Store::claim_partition`]: the claim's generation, and where the previous
/// owner's last committed flush left the partition (all `None` for a partition never flushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Pass back in every [`crate::PartitionProgress`] for this partition.
    pub generation: i64,
    /// Seek here. `None`: no flush ever committed, start from the configured reset position.
    pub resume_offset: Option<i64>,
    pub applied_through_offset: Option<i64>,
    pub applied_watermark_us: Option<TimestampUs>,
}

impl Store {
    /// Connects a pool of at most `max_connections` with the default [`ConnectSettings`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Store::connect_with(url, max_connections, &ConnectSettings::default()).await
    }

    /// Connects a pool of at most `max_connections` whose every connection carries the
    /// deadlines and keepalives of `settings`. Connections made with the `connect_options()`
    /// of [`Store::pool`] carry the server-side ones too.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        settings: &ConnectSettings,
    ) -> Result<Store, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let pool = settings
            .pool_options()
            .max_connections(max_connections)
            .connect_with(settings.connect_options(options))
            .await
            .map_err(StoreError::Connect)?;
        Ok(Store {
            operation_timeout: settings.operation_timeout,
            ..Store::from_pool(pool)
        })
    }

    /// A store on a pool made elsewhere (tests, benches): its connections have whatever
    /// settings that pool gives them; the client-side operation deadline is the default one.
    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            catalog: crate::catalog::Catalog::default(),
            operation_timeout: ConnectSettings::default().operation_timeout,
            #[cfg(feature = "failpoints")]
            hook: None,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Installs a fault hook (tests only).
    #[cfg(feature = "failpoints")]
    pub fn with_fault_hook(mut self, hook: FaultHook) -> Store {
        self.hook = Some(hook);
        self
    }

    pub(crate) fn fault(&self, _stage: Stage) -> Result<(), StoreError> {
        #[cfg(feature = "failpoints")]
        if let Some(h) = &self.hook {
            return h(_stage);
        }
        Ok(())
    }

    /// Applies the embedded migrations (`migrations/` at the repository root). Idempotent:
    /// applied versions are recorded in `_sqlx_migrations` and skipped.
    ///
    /// Runs on a connection of its own without the statement and lock timeouts: building an
    /// index on a large table may take longer than any flush should, and a process waiting for
    /// another one's migrations (sqlx's advisory lock) must not give up. The connection is
    /// closed afterwards, not returned to the pool.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::Connect)?;
        sqlx::raw_sql("SET statement_timeout = 0; SET lock_timeout = 0")
            .execute(&mut *conn)
            .await
            .map_err(StoreError::db("lifting timeouts for migrations"))?;
        let result = MIGRATOR.run(&mut *conn).await.map_err(StoreError::Migrate);
        let _ = conn.close().await;
        result
    }

    /// Runs `op` within the client-side deadline; past it, `op` is dropped (its connection is
    /// abandoned) and the error is [`StoreError::DeadlineExceeded`].
    pub(crate) async fn within_deadline<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let deadline = self.operation_timeout;
        if deadline.is_zero() {
            return op.await;
        }
        tokio::time::timeout(deadline, op)
            .await
            .unwrap_or(Err(StoreError::DeadlineExceeded { op: what, deadline }))
    }

    /// Claims a partition for `owner` on assignment: inserts its progress row, or takes it over
    /// by bumping the generation, in one statement. Every later progress update of a previous
    /// claim (another process, or this one before a rebalance) is refused with
    /// [`StoreError::Fenced`]. The claim's flushes are numbered from 1
    /// ([`crate::PartitionProgress::flush_seq`]): the stored number starts at 0.
    pub async fn claim_partition(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
        owner: &str,
    ) -> Result<Claim, StoreError> {
        let claim = sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, owner, generation, flush_seq) \
             VALUES ($1, $2, $3, $4, 1, 0) \
             ON CONFLICT (group_id, topic, partition) DO UPDATE \
             SET owner = EXCLUDED.owner, generation = consumer_offsets.generation + 1, \
                 flush_seq = 0, updated_at = now() \
             RETURNING generation, resume_offset, applied_through_offset, applied_watermark",
        )
        .bind(group_id)
        .bind(topic)
        .bind(partition)
        .bind(owner)
        .fetch_one(&self.pool);
        let row = self
            .within_deadline("claiming a partition", async {
                claim.await.map_err(StoreError::db("claiming a partition"))
            })
            .await?;
        let claim = Claim {
            generation: row
                .try_get(0)
                .map_err(StoreError::db("claiming a partition"))?,
            resume_offset: row
                .try_get(1)
                .map_err(StoreError::db("claiming a partition"))?,
            applied_through_offset: row
                .try_get(2)
                .map_err(StoreError::db("claiming a partition"))?,
            applied_watermark_us: row
                .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(3)
                .map_err(StoreError::db("claiming a partition"))?
                .map(from_ts),
        };
        tracing::info!(
            group_id,
            topic,
            partition,
            owner,
            generation = claim.generation,
            resume_offset = claim.resume_offset,
            "Claimed partition."
        );
        Ok(claim)
    }
}

/// The migrations of `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
