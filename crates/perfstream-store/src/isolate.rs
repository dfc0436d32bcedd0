//! The second line of defence against rows Postgres refuses.
//!
//! Events are validated so that every decoded event is writable; a flush can still fail with a
//! data error (SQLSTATE class 22, data exception, or 23, integrity constraint violation) when
//! the database enforces something the validation does not know, e.g. a constraint an operator
//! added. [`Store::find_unwritable`] then finds the refused series, so the pipeline can isolate
//! them and commit everything else.

use perfstream_window::{QueryRollup, SeriesKey};
use sqlx::{Connection, PgConnection};

use crate::flush::{FlushWrite, prepare};
use crate::table::{QueryTable, RequestTable, ResourceTable, Stored, Table};
use crate::{Store, StoreError};

/// One row of a flush that Postgres refuses, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritable {
    pub series: SeriesKey,
    pub window_start_us: i64,
    /// The database's message, with its SQLSTATE and constraint when it names one.
    pub reason: String,
}

impl StoreError {
    /// A data error: the rows are refused, not the connection or the transaction (SQLSTATE
    /// class 22 or 23). Retrying the same rows fails the same way.
    pub fn is_data_error(&self) -> bool {
        self.data_error_reason().is_some()
    }

    fn data_error_reason(&self) -> Option<String> {
        let StoreError::Db {
            source: sqlx::Error::Database(db),
            ..
        } = self
        else {
            return None;
        };
        let code = db.code()?;
        if !(code.starts_with("22") || code.starts_with("23")) {
            return None;
        }
        let mut reason = format!("SQLSTATE {code}: {}", db.message());
        if let Some(c) = db.constraint() {
            reason.push_str(&format!(" (constraint {c})"));
        }
        Some(reason)
    }
}

impl Store {
    /// Writes every row of `flush` on its own, inside one transaction that is always rolled
    /// back, and returns the rows Postgres refuses with a data error. Any other error (the
    /// connection, a deadline) is returned as is: the caller retries later.
    pub async fn find_unwritable(&self, flush: &FlushWrite) -> Result<Vec<Unwritable>, StoreError> {
        self.within_deadline("finding unwritable rows", async {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(StoreError::db("acquiring a connection"))?;
            let mut tx = conn
                .begin()
                .await
                .map_err(StoreError::db("beginning the unwritable-row probe"))?;
            let mut refused = Vec::new();
            self.probe::<QueryTable>(
                &mut tx,
                &prepare(&flush.rollups.query)?,
                &mut refused,
                |r| SeriesKey::Query(r.key.clone()),
            )
            .await?;
            self.probe::<RequestTable>(
                &mut tx,
                &prepare(&flush.rollups.request)?,
                &mut refused,
                |r| SeriesKey::Request(r.key.clone()),
            )
            .await?;
            self.probe::<ResourceTable>(
                &mut tx,
                &prepare(&flush.rollups.resource)?,
                &mut refused,
                |r| SeriesKey::Resource(r.key.clone()),
            )
            .await?;
            // The catalog keeps one text per query hash.
            for r in &flush.rollups.query {
                let key = SeriesKey::Query(r.key.clone());
                if refused.iter().any(|u: &Unwritable| u.series == key) {
                    continue;
                }
                let row: &QueryRollup = r;
                exec(&mut tx, "SAVEPOINT probe").await?;
                let upserted = self
                    .catalog
                    .upsert(&mut tx, std::slice::from_ref(row))
                    .await
                    .map(drop);
                let result = Self::settle(&mut tx, upserted).await?;
                if let Some(reason) = result {
                    refused.push(Unwritable {
                        series: key,
                        window_start_us: r.window_start_us,
                        reason,
                    });
                }
            }
            tx.rollback()
                .await
                .map_err(StoreError::db("rolling back the unwritable-row probe"))?;
            Ok(refused)
        })
        .await
    }

    async fn probe<T: Table>(
        &self,
        tx: &mut PgConnection,
        rows: &[Stored<'_, T::Key, T::Figures>],
        refused: &mut Vec<Unwritable>,
        key: impl Fn(&perfstream_window::Rollup<T::Key, T::Figures>) -> SeriesKey,
    ) -> Result<(), StoreError> {
        for row in rows {
            let one = std::slice::from_ref(row);
            exec(tx, "SAVEPOINT probe").await?;
            let r = self.write_table::<T>(tx, one).await.map(drop);
            let result = Self::settle(tx, r).await?;
            if let Some(reason) = result {
                refused.push(Unwritable {
                    series: key(&row.rollup),
                    window_start_us: row.rollup.window_start_us,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Ends a savepoint opened with `SAVEPOINT probe` around an operation that returned
    /// `result`: `Ok(None)` when it succeeded, `Ok(Some(reason))` when it failed with a data
    /// error (rolled back to the savepoint), `Err` otherwise.
    async fn settle(
        tx: &mut PgConnection,
        result: Result<(), StoreError>,
    ) -> Result<Option<String>, StoreError> {
        match result {
            Ok(()) => {
                exec(tx, "RELEASE SAVEPOINT probe").await?;
                Ok(None)
            }
            Err(e) => match e.data_error_reason() {
                Some(reason) => {
                    exec(tx, "ROLLBACK TO SAVEPOINT probe").await?;
                    Ok(Some(reason))
                }
                None => Err(e),
            },
        }
    }
}

async fn exec(tx: &mut PgConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(tx)
        .await
        .map(drop)
        .map_err(StoreError::db("managing a probe savepoint"))
}
