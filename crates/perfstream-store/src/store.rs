//! The store handle: connection pool, migrations, partition claims.

use perfstream_events::TimestampUs;
use sqlx::PgPool;
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

use crate::StoreError;
use crate::table::from_ts;

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
    /// Connects a pool of at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // Fail fast when Postgres is down so the pipeline pauses, logs and backs off instead
            // of blocking for sqlx's default 30 s.
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect(url)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Store::from_pool(pool))
    }

    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            catalog: crate::catalog::Catalog::default(),
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
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// Claims a partition for `owner` on assignment: inserts its progress row, or takes it over
    /// by bumping the generation, in one statement. Every later progress update of a previous
    /// claim (another process, or this one before a rebalance) is refused with
    /// [`StoreError::Fenced`].
    pub async fn claim_partition(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
        owner: &str,
    ) -> Result<Claim, StoreError> {
        let row = sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, owner, generation) \
             VALUES ($1, $2, $3, $4, 1) \
             ON CONFLICT (group_id, topic, partition) DO UPDATE \
             SET owner = EXCLUDED.owner, generation = consumer_offsets.generation + 1, \
                 updated_at = now() \
             RETURNING generation, resume_offset, applied_through_offset, applied_watermark",
        )
        .bind(group_id)
        .bind(topic)
        .bind(partition)
        .bind(owner)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::db("claiming a partition"))?;
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
