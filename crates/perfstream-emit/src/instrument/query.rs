//! [`QueryRecorder`]: times a query and records it by its text.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use perfstream_events::{QueryEvent, QueryType};

use super::{elapsed_us, now_us};
use crate::Emitter;

/// What a query's result says about the rows it returned or changed (`rows_affected`).
pub trait RowCount {
    fn row_count(&self) -> i64;
}

impl<T> RowCount for Vec<T> {
    fn row_count(&self) -> i64 {
        i64::try_from(self.len()).unwrap_or(i64::MAX)
    }
}

impl<T> RowCount for Option<T> {
    fn row_count(&self) -> i64 {
        i64::from(self.is_some())
    }
}

impl RowCount for u64 {
    fn row_count(&self) -> i64 {
        i64::try_from(*self).unwrap_or(i64::MAX)
    }
}

impl RowCount for () {
    fn row_count(&self) -> i64 {
        0
    }
}

#[cfg(feature = "sqlx")]
impl RowCount for sqlx::postgres::PgQueryResult {
    fn row_count(&self) -> i64 {
        self.rows_affected().row_count()
    }
}

#[cfg(feature = "sqlx")]
impl RowCount for sqlx::postgres::PgRow {
    fn row_count(&self) -> i64 {
        1
    }
}

/// Times queries and records them, for one service instance. Cheap to clone.
///
/// Wrap the query's future; with sqlx that is `sqlx::query(SQL).bind(x).fetch_all(&pool)`
/// (`crates/perfstream-emit/tests/instrument.rs` runs it against Postgres):
///
/// ```no_run
/// # async fn f(emitter: std::sync::Arc<perfstream_emit::Emitter>) -> Result<(), std::io::Error> {
/// # async fn fetch_all(_: i64) -> Result<Vec<(i64, String)>, std::io::Error> { Ok(vec![]) }
/// use perfstream_emit::instrument::QueryRecorder;
/// let queries = QueryRecorder::new(emitter, "campaign-api", "campaign-api-0");
/// const SQL: &str = "SELECT id, name FROM campaigns WHERE tenant_id = $1";
/// let rows = queries.time(SQL, fetch_all(42)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct QueryRecorder {
    emitter: Arc<Emitter>,
    service: Arc<str>,
    instance: Arc<str>,
}

impl QueryRecorder {
    pub fn new(emitter: Arc<Emitter>, service: &str, instance: &str) -> QueryRecorder {
        QueryRecorder {
            emitter,
            service: service.into(),
            instance: instance.into(),
        }
    }

    /// Awaits `query`, records it (`sql` fingerprinted by the emitter, the row count of a
    /// success, 0 rows for a failure) and returns its result unchanged.
    pub async fn time<T: RowCount, E>(
        &self,
        sql: &str,
        query: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.time_for(None, sql, query).await
    }

    /// Like [`QueryRecorder::time`], for a tenant (`tenant_id`, the seed's `campaign_id`).
    pub async fn time_for<T: RowCount, E>(
        &self,
        tenant: Option<&str>,
        sql: &str,
        query: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.time_traced(tenant, None, sql, query).await
    }

    /// Like [`QueryRecorder::time_for`], with the trace id of the request the query serves
    /// (`trace_id`, schema version 2): a sample of a slow execution then links to its trace.
    pub async fn time_traced<T: RowCount, E>(
        &self,
        tenant: Option<&str>,
        trace_id: Option<&str>,
        sql: &str,
        query: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let executed_at_us = now_us();
        let start = Instant::now();
        let result = query.await;
        let execution_time_us = elapsed_us(start);
        self.emitter.record_query(QueryEvent {
            service: self.service.to_string(),
            instance: self.instance.to_string(),
            query_hash: String::new(),
            query_type: QueryType::Other,
            query_text: Some(sql.to_string()),
            execution_time_us,
            rows_affected: result.as_ref().map_or(0, RowCount::row_count),
            tenant_id: tenant.map(str::to_string),
            executed_at_us,
            trace_id: trace_id.map(str::to_string),
        });
        result
    }
}
