//! The retention job: deletes rows whose window ended longer ago than their tier's retention,
//! in small batches (`DELETE ... WHERE ctid IN (SELECT ... LIMIT n)`), each its own short
//! transaction, so it never holds long locks on the tables the pipeline writes.

use std::time::Duration;

use perfstream_events::TimestampUs;

use crate::table::{self, QueryTable, RequestTable, ResourceTable, Table};
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
}

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
        };
        if report.query + report.request + report.resource > 0 {
            tracing::info!(
                query = report.query,
                request = report.request,
                resource = report.resource,
                "Deleted expired rollups."
            );
        }
        Ok(report)
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
