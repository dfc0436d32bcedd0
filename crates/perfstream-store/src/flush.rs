//! The write path: one transaction per flush, rollups and consumer progress together.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use perfstream_events::TimestampUs;
use perfstream_window::{Merge, Rollup, Rollups};
use sqlx::PgConnection;
use tracing::Instrument;

use crate::table::{self, QueryTable, RequestTable, ResourceTable, RowId, Stored, Table, to_ts};
use crate::{Stage, Store, StoreError, progress};

const HOUR_US: i64 = 3_600_000_000;

/// Everything one pipeline flush commits: closed windows and corrections of every partition in
/// it, and each partition's new progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushWrite {
    pub group_id: String,
    /// The process identity passed to [`Store::claim_partition`].
    pub owner: String,
    pub rollups: Rollups,
    /// One entry per partition whose events the rollups cover (and partitions whose position
    /// moved without producing rows).
    pub progress: Vec<PartitionProgress>,
    /// Topic names by the index in the samples' sources (`PartitionId::topic`).
    pub topics: Vec<String>,
}

/// A partition's progress as of this flush (see `consumer_offsets` in the migrations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: i32,
    /// From the [`crate::Claim`] of this partition; the compare-and-set checks it.
    pub generation: i64,
    /// The number of this flush for this partition within the claim: 1 for the first flush
    /// that carries the partition after [`Store::claim_partition`], then 2, 3, ... A retry
    /// re-sends the same number (with the same content). The compare-and-set requires the
    /// stored number to be one less and stores this one, so a flush that already committed
    /// (its COMMIT reply was lost) is recognised when re-sent: [`FlushCommit::AlreadyApplied`].
    pub flush_seq: i64,
    /// Smallest offset still in an open window.
    pub resume_offset: i64,
    /// The partition's position at the flush.
    pub applied_through_offset: i64,
    pub applied_watermark_us: TimestampUs,
}

/// What [`Store::write_flush`] did. Either way the flush's content is in the store exactly
/// once and the partitions' progress is the one it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum FlushCommit {
    /// This call committed the flush.
    Committed,
    /// An earlier attempt of this same flush (same owner, generation and `flush_seq` for every
    /// partition) had already committed, typically one whose COMMIT reply was lost to a broken
    /// connection so that the caller saw a retriable error. This call rolled back and changed
    /// nothing; the caller proceeds as after [`FlushCommit::Committed`].
    AlreadyApplied,
}

/// A decoded (owned) row of table `T`.
type Owned<T> = Stored<'static, <T as Table>::Key, <T as Table>::Figures>;

/// Row counts of one table in one flush.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    inserted: usize,
    merged: usize,
}

impl Store {
    /// Writes one flush in one transaction: new rows by bulk insert, existing rows (late
    /// corrections, or the same key flushed by another process) merged under row locks taken in
    /// key order, the query catalog, the tier dirty marks, then a compare-and-set of every
    /// partition's progress on (owner, generation, flush_seq - 1). Either all of it commits or
    /// none of it.
    ///
    /// **Retries are idempotent.** A retriable error can come after Postgres committed (the
    /// connection broke before the COMMIT reply arrived, or the client deadline passed, see
    /// [`crate::ConnectSettings::operation_timeout`]). Re-send the same `FlushWrite`: if the
    /// first attempt committed, the compare-and-set finds this claim's `flush_seq` already at
    /// the sent number, the whole transaction (with its second merge of the rows) rolls back,
    /// and the result is [`FlushCommit::AlreadyApplied`].
    ///
    /// [`StoreError::Fenced`] means this process no longer owns a partition of the flush (or
    /// its `flush_seq` does not follow the stored one): the transaction rolled back, and the
    /// caller must re-seek or drop the partition.
    pub async fn write_flush(&self, flush: &FlushWrite) -> Result<FlushCommit, StoreError> {
        let span = tracing::info_span!(
            "write_flush",
            group_id = %flush.group_id,
            rows = flush.rollups.len(),
            partitions = flush.progress.len(),
        );
        self.within_deadline("writing a flush", self.write_flush_inner(flush))
            .instrument(span)
            .await
    }

    async fn write_flush_inner(&self, flush: &FlushWrite) -> Result<FlushCommit, StoreError> {
        let started = std::time::Instant::now();
        if flush.progress.is_empty() && !flush.rollups.is_empty() {
            // Without a progress row to compare-and-set, nothing fences this write.
            return Err(StoreError::MissingProgress);
        }
        if let Some(p) = flush.progress.iter().find(|p| p.flush_seq < 1) {
            // 0 is what a fresh claim stores: a flush numbered 0 would look already applied.
            return Err(StoreError::InvalidFlushSeq {
                topic: p.topic.clone(),
                partition: p.partition,
                flush_seq: p.flush_seq,
            });
        }
        let query = prepare(&flush.rollups.query)?;
        let request = prepare(&flush.rollups.request)?;
        let resource = prepare(&flush.rollups.resource)?;
        let hours: BTreeSet<TimestampUs> = query
            .iter()
            .map(|s| s.rollup.window_start_us)
            .chain(request.iter().map(|s| s.rollup.window_start_us))
            .chain(resource.iter().map(|s| s.rollup.window_start_us))
            .map(|t| t.div_euclid(HOUR_US) * HOUR_US)
            .collect();

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::db("beginning a flush transaction"))?;
        // Lock order, the same for every writer: query rows, request rows, resource rows (each
        // by primary key), catalog rows by hash, dirty marks by hour, progress rows by
        // partition. Nothing in a flush takes a lock out of that order, so writers never
        // deadlock.
        let t = std::time::Instant::now();
        let q = self.write_table::<QueryTable>(&mut tx, &query).await?;
        let r = self.write_table::<RequestTable>(&mut tx, &request).await?;
        let s = self
            .write_table::<ResourceTable>(&mut tx, &resource)
            .await?;
        // Samples follow their rollups: same transaction, same replay rules.
        crate::samples::write_samples(&mut tx, &query, &flush.topics).await?;
        crate::samples::write_samples(&mut tx, &request, &flush.topics).await?;
        let rollups_at = t.elapsed();
        let catalog = self.catalog.upsert(&mut tx, &flush.rollups.query).await?;
        self.fault(Stage::Catalog)?;
        let catalog_at = t.elapsed();
        mark_hours_dirty(&mut tx, &hours).await?;
        self.fault(Stage::DirtyMarks)?;
        if progress::compare_and_set(&mut tx, flush).await? == FlushCommit::AlreadyApplied {
            // Discards this attempt's rollup writes: they are in the tables already, once.
            tx.rollback()
                .await
                .map_err(StoreError::db("rolling back a flush already applied"))?;
            tracing::info!(
                group_id = %flush.group_id,
                owner = %flush.owner,
                "Flush was already committed by an earlier attempt (its COMMIT reply was lost); rolled back the repeat."
            );
            return Ok(FlushCommit::AlreadyApplied);
        }
        self.fault(Stage::BeforeCommit)?;
        let progress_at = t.elapsed();
        tx.commit()
            .await
            .map_err(StoreError::db("committing a flush"))?;
        self.catalog.committed(catalog);
        self.fault(Stage::AfterCommit)?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            inserted = q.inserted + r.inserted + s.inserted,
            merged = q.merged + r.merged + s.merged,
            prepare_ms = ms(started.elapsed() - t.elapsed()),
            rollups_ms = ms(rollups_at),
            catalog_ms = ms(catalog_at - rollups_at),
            progress_ms = ms(progress_at - catalog_at),
            commit_ms = ms(t.elapsed() - progress_at),
            "Flush committed."
        );
        Ok(FlushCommit::Committed)
    }

    /// Fast path, then merge path, for one table. `rows` are sorted by id, without duplicates.
    pub(crate) async fn write_table<T: Table>(
        &self,
        conn: &mut PgConnection,
        rows: &[Stored<'_, T::Key, T::Figures>],
    ) -> Result<Written, StoreError> {
        let mut written = Written::default();
        if rows.is_empty() {
            return Ok(written);
        }
        let refs: Vec<&Stored<'_, T::Key, T::Figures>> = rows.iter().collect();
        let existing = table::insert_new::<T>(conn, &refs).await?;
        written.inserted = refs.len() - existing.len();
        self.fault(Stage::Inserted { table: T::NAME })?;
        let mut pending: Vec<&Stored<'_, T::Key, T::Figures>> =
            existing.into_iter().map(|i| refs[i]).collect();
        // A row seen by the insert can be gone by the time it is locked (deleted by retention,
        // in theory): insert it again. Bounded, because each round needs a concurrent delete.
        for _ in 0..4 {
            if pending.is_empty() {
                break;
            }
            let locked = table::lock_existing::<T>(conn, &pending).await?;
            let mut by_id: HashMap<RowId<T::Key>, Owned<T>> =
                locked.into_iter().map(|s| (s.id(), s)).collect();
            let mut merged = Vec::with_capacity(by_id.len());
            let mut missing = Vec::new();
            for s in pending {
                match by_id.remove(&s.id()) {
                    Some(mut existing) => {
                        existing.rollup.to_mut().figures.merge(&s.rollup.figures);
                        merged.push(existing);
                    }
                    None => missing.push(s),
                }
            }
            table::update::<T>(conn, &merged.iter().collect::<Vec<_>>()).await?;
            written.merged += merged.len();
            let again = table::insert_new::<T>(conn, &missing).await?;
            written.inserted += missing.len() - again.len();
            pending = again.into_iter().map(|i| missing[i]).collect();
        }
        if !pending.is_empty() {
            return Err(StoreError::RowsVanishing { table: T::NAME });
        }
        self.fault(Stage::Merged { table: T::NAME })?;
        Ok(written)
    }
}

/// The resolution label of a base window length: in minutes when whole ('1m', '5m'), else
/// seconds ('30s'), else milliseconds ('500ms'). The length must divide one hour (so the '1h'
/// tier is made of whole windows) and be shorter. Call it on the configured window at start-up
/// to refuse a window the store cannot roll up before any data flows.
pub fn base_resolution_label(window_us: i64) -> Result<String, StoreError> {
    let invalid = |reason| StoreError::InvalidWindow {
        window_start_us: 0,
        window_end_us: window_us,
        reason,
    };
    if window_us <= 0 {
        return Err(invalid("window length must be positive"));
    }
    if window_us % 1000 != 0 {
        return Err(invalid("window length must be whole milliseconds"));
    }
    if window_us >= HOUR_US || HOUR_US % window_us != 0 {
        return Err(invalid("window length must divide one hour and be shorter"));
    }
    let ms = window_us / 1000;
    Ok(if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

/// The label of one rollup's window, checking it is storable and aligned to the epoch.
fn base_resolution(start_us: TimestampUs, end_us: TimestampUs) -> Result<String, StoreError> {
    let with_window = |e: StoreError| match e {
        StoreError::InvalidWindow { reason, .. } => StoreError::InvalidWindow {
            window_start_us: start_us,
            window_end_us: end_us,
            reason,
        },
        other => other,
    };
    let len = end_us
        .checked_sub(start_us)
        .ok_or(StoreError::InvalidWindow {
            window_start_us: start_us,
            window_end_us: end_us,
            reason: "window_end must be after window_start",
        })?;
    let label = base_resolution_label(len).map_err(with_window)?;
    if start_us.rem_euclid(len) != 0 {
        return Err(StoreError::InvalidWindow {
            window_start_us: start_us,
            window_end_us: end_us,
            reason: "window must be aligned to the epoch",
        });
    }
    Ok(label)
}

/// Labels, sorts by primary key and merges duplicates (two rollups of the same window and key
/// in one flush), so every statement sees each key once, in the global lock order.
pub(crate) fn prepare<K, F>(rollups: &[Rollup<K, F>]) -> Result<Vec<Stored<'_, K, F>>, StoreError>
where
    K: Ord + Clone,
    F: Merge + Clone,
{
    // Every row of a flush usually has the same window length: label it once.
    let mut last: Option<(i64, String)> = None;
    let mut rows = Vec::with_capacity(rollups.len());
    for r in rollups {
        let len = r.window_end_us.wrapping_sub(r.window_start_us);
        let resolution = match &last {
            Some((l, label)) if *l == len && r.window_start_us.rem_euclid(len.max(1)) == 0 => {
                label.clone()
            }
            _ => {
                let label = base_resolution(r.window_start_us, r.window_end_us)?;
                last = Some((len, label.clone()));
                label
            }
        };
        rows.push(Stored {
            resolution,
            rollup: Cow::Borrowed(r),
        });
    }
    rows.sort_unstable_by(|a, b| {
        (&a.resolution, a.rollup.window_start_us, &a.rollup.key).cmp(&(
            &b.resolution,
            b.rollup.window_start_us,
            &b.rollup.key,
        ))
    });
    let mut out: Vec<Stored<'_, K, F>> = Vec::with_capacity(rows.len());
    for s in rows {
        match out.last_mut() {
            Some(prev)
                if prev.resolution == s.resolution
                    && prev.rollup.window_start_us == s.rollup.window_start_us
                    && prev.rollup.key == s.rollup.key =>
            {
                prev.rollup.to_mut().figures.merge(&s.rollup.figures);
            }
            _ => out.push(s),
        }
    }
    Ok(out)
}

/// Marks the hours whose base rows this flush touched, for the tiers job. `DO UPDATE` (not
/// `DO NOTHING`) so the mark row stays locked until commit: a tiers job that is about to clear
/// the mark waits for this flush, then rebuilds from rows that include it.
async fn mark_hours_dirty(
    conn: &mut PgConnection,
    hours: &BTreeSet<TimestampUs>,
) -> Result<(), StoreError> {
    if hours.is_empty() {
        return Ok(());
    }
    let starts: Vec<_> = hours.iter().map(|h| to_ts(*h)).collect();
    sqlx::query(
        "INSERT INTO tier_dirty (tier, period_start) SELECT '1h', p FROM UNNEST($1::timestamptz[]) AS p \
         ON CONFLICT (tier, period_start) DO UPDATE SET marked_at = now()",
    )
    .bind(starts)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::db("marking tier periods dirty"))?;
    Ok(())
}
