//! The tiers job: '1h' rows rebuilt from the base rows of their hour, '1d' rows from the '1h'
//! rows of their day, whenever a dirty mark says a child changed and the period (plus the
//! correction horizon) is over.
//!
//! A rebuild reads every child, merges them with the window crate's [`Merge`] and overwrites
//! the tier rows, so running it twice gives the same rows, and a tier row's histogram has the
//! same bytes as aggregating the raw events directly (HDR merging is exact). Marks are claimed
//! with `FOR UPDATE SKIP LOCKED` and deleted in the rebuild's transaction: two jobs never
//! rebuild the same period at once, and a flush that marks a period while it is being rebuilt
//! waits for the rebuild and leaves a fresh mark (see `mark_hours_dirty`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use perfstream_events::TimestampUs;
use perfstream_window::{Merge, Rollup};
use sqlx::{PgConnection, Row};

use crate::table::{self, QueryTable, RequestTable, ResourceTable, Stored, Table, from_ts, to_ts};
use crate::{Store, StoreError};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// What one run of [`Store::rebuild_tiers`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierReport {
    /// '1h' periods rebuilt.
    pub hours: usize,
    /// '1d' periods rebuilt.
    pub days: usize,
    /// Tier rows written.
    pub rows: usize,
}

#[derive(Clone, Copy)]
enum Tier {
    Hour,
    Day,
}

impl Tier {
    fn label(self) -> &'static str {
        match self {
            Tier::Hour => "1h",
            Tier::Day => "1d",
        }
    }
    fn len_us(self) -> i64 {
        match self {
            Tier::Hour => HOUR_US,
            Tier::Day => DAY_US,
        }
    }
    /// The resolution of the children; `None` is the base tier.
    fn children(self) -> Option<&'static str> {
        match self {
            Tier::Hour => None,
            Tier::Day => Some("1h"),
        }
    }
}

impl Store {
    /// Rebuilds every dirty tier period that ended at least `horizon` before `now_us`, hours
    /// first (each rebuilt hour marks its day), then days. Works in transactions of at most
    /// `batch` periods. Time is a parameter: the caller passes the clock.
    ///
    /// A period whose children may already be gone under `retention` (an hour older than the
    /// base retention, a day older than the '1h' retention) is never rebuilt, since a rebuild
    /// from a partial set of children would overwrite a complete tier row with a smaller one:
    /// its mark is dropped with a warning (only a replay of very old data produces one).
    pub async fn rebuild_tiers(
        &self,
        now_us: TimestampUs,
        horizon: Duration,
        batch: usize,
        retention: &crate::Retention,
    ) -> Result<TierReport, StoreError> {
        let horizon_us = i64::try_from(horizon.as_micros()).unwrap_or(i64::MAX);
        let mut report = TierReport::default();
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        for tier in [Tier::Hour, Tier::Day] {
            // Periods that started at or before this ended at least `horizon` ago.
            let due = now_us
                .saturating_sub(horizon_us)
                .saturating_sub(tier.len_us());
            let children_kept = match tier {
                Tier::Hour => retention.base,
                Tier::Day => retention.hour,
            };
            let oldest = now_us.saturating_sub(micros(children_kept));
            self.drop_stale_marks(tier, oldest).await?;
            loop {
                let (periods, rows) = self.rebuild_batch(tier, due, batch.max(1)).await?;
                match tier {
                    Tier::Hour => report.hours += periods,
                    Tier::Day => report.days += periods,
                }
                report.rows += rows;
                if periods < batch.max(1) {
                    break;
                }
            }
        }
        if report.hours + report.days > 0 {
            tracing::info!(
                hours = report.hours,
                days = report.days,
                rows = report.rows,
                "Rebuilt tier rows."
            );
        }
        Ok(report)
    }

    /// Deletes marks of periods that start before `oldest` (children possibly expired).
    async fn drop_stale_marks(&self, tier: Tier, oldest: TimestampUs) -> Result<(), StoreError> {
        let dropped = sqlx::query("DELETE FROM tier_dirty WHERE tier = $1 AND period_start < $2")
            .bind(tier.label())
            .bind(to_ts(oldest))
            .execute(&self.pool)
            .await
            .map_err(StoreError::db("dropping stale tier marks"))?
            .rows_affected();
        if dropped > 0 {
            tracing::warn!(
                tier = tier.label(),
                dropped,
                "Dropped dirty marks of periods whose children may have expired; their tier rows were not rebuilt."
            );
        }
        Ok(())
    }

    async fn rebuild_batch(
        &self,
        tier: Tier,
        due: TimestampUs,
        batch: usize,
    ) -> Result<(usize, usize), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::db("beginning a tier rebuild"))?;
        let marks = sqlx::query(
            "DELETE FROM tier_dirty WHERE (tier, period_start) IN ( \
                 SELECT tier, period_start FROM tier_dirty \
                 WHERE tier = $1 AND period_start <= $2 \
                 ORDER BY period_start LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING period_start",
        )
        .bind(tier.label())
        .bind(to_ts(due))
        .bind(i64::try_from(batch).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("claiming tier dirty marks"))?;
        let mut periods = Vec::with_capacity(marks.len());
        for m in &marks {
            periods.push(from_ts(
                m.try_get(0)
                    .map_err(StoreError::db("claiming tier dirty marks"))?,
            ));
        }
        periods.sort_unstable();
        let mut rows = 0;
        for &start in &periods {
            rows += rebuild::<QueryTable>(&mut tx, tier, start).await?;
            rows += rebuild::<RequestTable>(&mut tx, tier, start).await?;
            rows += rebuild::<ResourceTable>(&mut tx, tier, start).await?;
        }
        if let Tier::Hour = tier {
            let days: Vec<_> = periods
                .iter()
                .map(|h| to_ts(h.div_euclid(DAY_US) * DAY_US))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            sqlx::query(
                "INSERT INTO tier_dirty (tier, period_start) SELECT '1d', p FROM UNNEST($1::timestamptz[]) AS p \
                 ON CONFLICT (tier, period_start) DO UPDATE SET marked_at = now()",
            )
            .bind(days)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("marking days dirty"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing a tier rebuild"))?;
        Ok((periods.len(), rows))
    }
}

/// Rebuilds one table's tier rows of one period from their children; returns the rows written.
async fn rebuild<T: Table>(
    conn: &mut PgConnection,
    tier: Tier,
    start: TimestampUs,
) -> Result<usize, StoreError> {
    let end = start + tier.len_us();
    let children = table::select_range::<T>(conn, tier.children(), start, end).await?;
    let mut by_key: BTreeMap<T::Key, T::Figures> = BTreeMap::new();
    for c in children {
        match by_key.get_mut(&c.rollup.key) {
            Some(f) => f.merge(&c.rollup.figures),
            None => {
                let r = c.rollup.into_owned();
                by_key.insert(r.key, r.figures);
            }
        }
    }
    let rows: Vec<Stored<'static, T::Key, T::Figures>> = by_key
        .into_iter()
        .map(|(key, figures)| Stored {
            resolution: tier.label().to_owned(),
            rollup: Cow::Owned(Rollup {
                window_start_us: start,
                window_end_us: end,
                key,
                figures,
            }),
        })
        .collect();
    table::delete_period::<T>(conn, tier.label(), start).await?;
    table::overwrite::<T>(conn, &rows.iter().collect::<Vec<_>>()).await?;
    Ok(rows.len())
}
