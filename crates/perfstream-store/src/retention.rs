//! The retention job: deletes rows whose window ended longer ago than their tier's retention,
//! in small batches (`DELETE ... WHERE ctid IN (SELECT ... LIMIT n)`), each its own short
//! transaction, so it never holds long locks on the tables the pipeline writes. The samples of
//! a window (`query_samples`, `request_samples`) go with the same cutoffs as its rollups.

use std::time::Duration;

use perfstream_events::TimestampUs;

use crate::table::{self, QueryTable, RequestTable, ResourceTable, Table, to_ts};
use crate::{Store, StoreError};

/// How long each tier is kept. A row expires when `window_end <= now - retention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Base tier ('1m' by default). Default 7 days.
    pub base: Duration,
    /// '1h' tier. Default 90 days.
    pub hour: Duration,
    /// '1d' tier. Default 2 years (730 days).
    pub day: Duration,
    /// Rows per DELETE statement. Default 5000.
    pub batch: usize,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            base: Duration::from_secs(7 * DAY),
            hour: Duration::from_secs(90 * DAY),
            day: Duration::from_secs(730 * DAY),
            batch: 5000,
        }
    }
}

/// Rows deleted by one run, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    pub query: u64,
    pub request: u64,
    pub resource: u64,
    pub query_samples: u64,
    pub request_samples: u64,
}

/// The sample tables: fixed statements per table, (tier, base tier), binds only.
const SAMPLE_DELETES: [(&str, &str); 2] = [
    (
        "DELETE FROM query_samples WHERE ctid IN (SELECT ctid FROM query_samples \
         WHERE resolution = $1 AND window_start < $2 AND window_end <= $2 LIMIT $3)",
        "DELETE FROM query_samples WHERE ctid IN (SELECT ctid FROM query_samples \
         WHERE resolution NOT IN ('1h', '1d') AND window_start < $1 AND window_end <= $1 LIMIT $2)",
    ),
    (
        "DELETE FROM request_samples WHERE ctid IN (SELECT ctid FROM request_samples \
         WHERE resolution = $1 AND window_start < $2 AND window_end <= $2 LIMIT $3)",
        "DELETE FROM request_samples WHERE ctid IN (SELECT ctid FROM request_samples \
         WHERE resolution NOT IN ('1h', '1d') AND window_start < $1 AND window_end <= $1 LIMIT $2)",
    ),
];

impl Store {
    /// Deletes every expired row as of `now_us`.
    pub async fn apply_retention(
        &self,
        now_us: TimestampUs,
        retention: &Retention,
    ) -> Result<RetentionReport, StoreError> {
        let cutoff =
            |d: Duration| now_us.saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let tiers = [
            (None, cutoff(retention.base)),
            (Some("1h"), cutoff(retention.hour)),
            (Some("1d"), cutoff(retention.day)),
        ];
        let batch = i64::try_from(retention.batch.max(1)).unwrap_or(i64::MAX);
        let report = RetentionReport {
            query: self.expire::<QueryTable>(&tiers, batch).await?,
            request: self.expire::<RequestTable>(&tiers, batch).await?,
            resource: self.expire::<ResourceTable>(&tiers, batch).await?,
            query_samples: self
                .expire_samples(SAMPLE_DELETES[0], &tiers, batch)
                .await?,
            request_samples: self
                .expire_samples(SAMPLE_DELETES[1], &tiers, batch)
                .await?,
        };
        if report.query + report.request + report.resource > 0 {
            tracing::info!(
                query = report.query,
                request = report.request,
                resource = report.resource,
                "Deleted expired rollups."
            );
        }
        if report.query_samples + report.request_samples > 0 {
            tracing::info!(
                query = report.query_samples,
                request = report.request_samples,
                "Deleted expired samples."
            );
        }
        Ok(report)
    }

    async fn expire_samples(
        &self,
        (tier_sql, base_sql): (&'static str, &'static str),
        tiers: &[(Option<&str>, TimestampUs)],
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        for (tier, cutoff) in tiers {
            loop {
                let q = match tier {
                    Some(t) => sqlx::query(tier_sql).bind(*t),
                    None => sqlx::query(base_sql),
                };
                let n = q
                    .bind(to_ts(*cutoff))
                    .bind(batch)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::db("deleting expired samples"))?
                    .rows_affected();
                total += n;
                if n < batch as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn expire<T: Table>(
        &self,
        tiers: &[(Option<&str>, TimestampUs)],
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        for (tier, cutoff) in tiers {
            loop {
                let n = table::delete_expired::<T>(&self.pool, *tier, *cutoff, batch).await?;
                total += n;
                if n < batch as u64 {
                    break;
                }
            }
        }
        Ok(total)
    }
}
