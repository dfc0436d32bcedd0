//! Samples (exemplars) of a flush's rollups: per window and key, the slowest events with their
//! raw fields and source offset, written in the flush's transaction (`query_samples`,
//! `request_samples`). A sample is identified by its source (topic, partition, offset), so a
//! replay or a re-sent flush writes nothing twice (`ON CONFLICT DO NOTHING`), and a flush that
//! rolls back takes its samples with it: samples follow the rollups' exactly-once rules.
//!
//! `rank` is the sample's place among those of its flush (1 = slowest); a window corrected by a
//! later flush may hold more than `window.samples_per_series` samples, each flush's ranked on
//! its own. Order by the duration for the window's own order.
//!
//! One writer serves both tables ([`write_samples`]): the columns every sample table has
//! ([`Shared`]) are filled here, and a [`SampleKind`] adds its key's and its sample's own
//! columns. The column lists are static schema, so the statement text is built from them; every
//! value goes through a bind.

use perfstream_window::{
    QueryFigures, QueryKey, QuerySample, RequestFigures, RequestKey, RequestSample, Rollup, Source,
};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres};

use crate::StoreError;
use crate::table::{Stored, to_ts};

type Ts = chrono::DateTime<chrono::Utc>;
type Q<'q> = Query<'q, Postgres, PgArguments>;

/// A rollup kind that keeps samples (implemented on its figures), and how its rows fill its
/// sample table.
pub(crate) trait SampleKind: Clone {
    type Key: Clone;
    type Sample;
    /// The kind's own columns (its key's, then its sample's), filled per sample.
    type Own<'a>: OwnColumns<'a>
    where
        Self: 'a;
    /// What a failed insert is reported as.
    const WHAT: &'static str;
    const TABLE: &'static str;
    /// The duration column (`execution_time_us`, `response_time_us`).
    const DURATION: &'static str;
    fn service(key: &Self::Key) -> &str;
    fn samples(&self) -> &[Self::Sample];
    fn fields(s: &Self::Sample) -> SampleFields<'_>;
    /// Appends the kind's own columns of sample `s` of `rollup`.
    fn push_own<'a>(
        own: &mut Self::Own<'a>,
        rollup: &'a Rollup<Self::Key, Self>,
        s: &'a Self::Sample,
    );
}

/// The fields every sample has.
pub(crate) struct SampleFields<'a> {
    duration_us: i64,
    instance: &'a str,
    event_time_us: i64,
    trace_id: Option<&'a str>,
    source: Source,
}

/// A kind's own columns: their names and array types, in bind order, and the binds.
pub(crate) trait OwnColumns<'a>: Default {
    const COLUMNS: &'static [(&'static str, &'static str)];
    fn bind(self, q: Q<'a>) -> Q<'a>;
}

/// The columns every sample table has, in bind order after which the kind's own follow.
#[derive(Default)]
struct Shared<'a> {
    resolution: Vec<&'a str>,
    window_start: Vec<Ts>,
    window_end: Vec<Ts>,
    service: Vec<&'a str>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    rank: Vec<i16>,
    duration: Vec<i64>,
    instance: Vec<&'a str>,
    event_time: Vec<Ts>,
    trace_id: Vec<Option<&'a str>>,
}

impl Shared<'_> {
    /// Names and array types; the duration column is the kind's.
    fn columns(duration: &'static str) -> [(&'static str, &'static str); 12] {
        [
            ("resolution", "text"),
            ("window_start", "timestamptz"),
            ("window_end", "timestamptz"),
            ("service", "text"),
            ("source_topic", "text"),
            ("source_partition", "int"),
            ("source_offset", "bigint"),
            ("rank", "smallint"),
            (duration, "bigint"),
            ("instance", "text"),
            ("event_time", "timestamptz"),
            ("trace_id", "text"),
        ]
    }
}

/// The statement inserting one kind's samples: `INSERT ... SELECT * FROM UNNEST($1::t[], ...)`.
fn insert_sql<K: SampleKind>() -> String {
    let columns: Vec<(&str, &str)> = Shared::columns(K::DURATION)
        .into_iter()
        .chain(<K::Own<'_> as OwnColumns<'_>>::COLUMNS.iter().copied())
        .collect();
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) ON CONFLICT DO NOTHING",
        K::TABLE,
        names.join(", "),
        arrays.join(", ")
    )
}

fn topic_name(topics: &[String], index: u32) -> String {
    topics
        .get(index as usize)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

/// Writes the samples of `rows` (one kind's rollups of a flush) in one statement.
pub(crate) async fn write_samples<K: SampleKind>(
    conn: &mut PgConnection,
    rows: &[Stored<'_, K::Key, K>],
    topics: &[String],
) -> Result<(), StoreError> {
    if rows.iter().all(|r| r.rollup.figures.samples().is_empty()) {
        return Ok(());
    }
    let mut c = Shared::default();
    let mut own = K::Own::default();
    for r in rows {
        let ro: &Rollup<K::Key, K> = &r.rollup;
        for (i, s) in ro.figures.samples().iter().enumerate() {
            let f = K::fields(s);
            c.resolution.push(r.resolution.as_str());
            c.window_start.push(to_ts(ro.window_start_us));
            c.window_end.push(to_ts(ro.window_end_us));
            c.service.push(K::service(&ro.key));
            c.topic.push(topic_name(topics, f.source.partition.topic));
            c.partition.push(f.source.partition.partition);
            c.offset.push(f.source.offset);
            c.rank.push(i16::try_from(i + 1).unwrap_or(i16::MAX));
            c.duration.push(f.duration_us);
            c.instance.push(f.instance);
            c.event_time.push(to_ts(f.event_time_us));
            c.trace_id.push(f.trace_id);
            K::push_own(&mut own, ro, s);
        }
    }
    let q = sqlx::query(AssertSqlSafe(insert_sql::<K>()))
        .bind(c.resolution)
        .bind(c.window_start)
        .bind(c.window_end)
        .bind(c.service)
        .bind(c.topic)
        .bind(c.partition)
        .bind(c.offset)
        .bind(c.rank)
        .bind(c.duration)
        .bind(c.instance)
        .bind(c.event_time)
        .bind(c.trace_id);
    own.bind(q)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db(K::WHAT))?;
    Ok(())
}

/// `query_samples`' own columns.
#[derive(Default)]
pub(crate) struct QueryColumns<'a> {
    query_hash: Vec<&'a str>,
    query_type: Vec<&'static str>,
    tenant_id: Vec<&'a str>,
    rows_affected: Vec<i64>,
    query_text: Vec<Option<&'a str>>,
}

impl<'a> OwnColumns<'a> for QueryColumns<'a> {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("query_hash", "text"),
        ("query_type", "text"),
        ("tenant_id", "text"),
        ("rows_affected", "bigint"),
        ("query_text", "text"),
    ];
    fn bind(self, q: Q<'a>) -> Q<'a> {
        q.bind(self.query_hash)
            .bind(self.query_type)
            .bind(self.tenant_id)
            .bind(self.rows_affected)
            .bind(self.query_text)
    }
}

impl SampleKind for QueryFigures {
    type Key = QueryKey;
    type Sample = QuerySample;
    type Own<'a> = QueryColumns<'a>;
    const WHAT: &'static str = "inserting query samples";
    const TABLE: &'static str = "query_samples";
    const DURATION: &'static str = "execution_time_us";

    fn service(key: &QueryKey) -> &str {
        &key.service
    }
    fn samples(&self) -> &[QuerySample] {
        &self.samples
    }
    fn fields(s: &QuerySample) -> SampleFields<'_> {
        SampleFields {
            duration_us: s.duration_us,
            instance: &s.instance,
            event_time_us: s.event_time_us,
            trace_id: s.trace_id.as_deref(),
            source: s.source,
        }
    }
    fn push_own<'a>(
        own: &mut QueryColumns<'a>,
        rollup: &'a Rollup<QueryKey, QueryFigures>,
        s: &'a QuerySample,
    ) {
        own.query_hash.push(&rollup.key.query_hash);
        own.query_type.push(rollup.key.query_type.as_str());
        own.tenant_id.push(&rollup.key.tenant_id);
        own.rows_affected.push(s.rows_affected);
        // The window's text (the statement's); a sample keeps none of its own.
        own.query_text.push(rollup.figures.query_text.as_deref());
    }
}

/// `request_samples`' own columns.
#[derive(Default)]
pub(crate) struct RequestColumns<'a> {
    endpoint: Vec<&'a str>,
    method: Vec<&'a str>,
    status_code: Vec<i32>,
    request_bytes: Vec<Option<i64>>,
    response_bytes: Vec<Option<i64>>,
}

impl<'a> OwnColumns<'a> for RequestColumns<'a> {
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("endpoint", "text"),
        ("method", "text"),
        ("status_code", "int"),
        ("request_bytes", "bigint"),
        ("response_bytes", "bigint"),
    ];
    fn bind(self, q: Q<'a>) -> Q<'a> {
        q.bind(self.endpoint)
            .bind(self.method)
            .bind(self.status_code)
            .bind(self.request_bytes)
            .bind(self.response_bytes)
    }
}

impl SampleKind for RequestFigures {
    type Key = RequestKey;
    type Sample = RequestSample;
    type Own<'a> = RequestColumns<'a>;
    const WHAT: &'static str = "inserting request samples";
    const TABLE: &'static str = "request_samples";
    const DURATION: &'static str = "response_time_us";

    fn service(key: &RequestKey) -> &str {
        &key.service
    }
    fn samples(&self) -> &[RequestSample] {
        &self.samples
    }
    fn fields(s: &RequestSample) -> SampleFields<'_> {
        SampleFields {
            duration_us: s.duration_us,
            instance: &s.instance,
            event_time_us: s.event_time_us,
            trace_id: s.trace_id.as_deref(),
            source: s.source,
        }
    }
    fn push_own<'a>(
        own: &mut RequestColumns<'a>,
        rollup: &'a Rollup<RequestKey, RequestFigures>,
        s: &'a RequestSample,
    ) {
        own.endpoint.push(&rollup.key.endpoint);
        own.method.push(&rollup.key.method);
        own.status_code.push(s.status_code);
        own.request_bytes.push(s.request_bytes);
        own.response_bytes.push(s.response_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_once_with_its_array() {
        assert_eq!(
            insert_sql::<QueryFigures>(),
            "INSERT INTO query_samples (resolution, window_start, window_end, service, \
             source_topic, source_partition, source_offset, rank, execution_time_us, instance, \
             event_time, trace_id, query_hash, query_type, tenant_id, rows_affected, query_text) \
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], \
             $5::text[], $6::int[], $7::bigint[], $8::smallint[], $9::bigint[], $10::text[], \
             $11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[], \
             $16::bigint[], $17::text[]) ON CONFLICT DO NOTHING"
        );
        let r = insert_sql::<RequestFigures>();
        assert!(
            r.starts_with("INSERT INTO request_samples (resolution, "),
            "{r}"
        );
        assert!(
            r.contains(
                "response_time_us, instance, event_time, trace_id, endpoint, method, \
                 status_code, request_bytes, response_bytes)"
            ),
            "{r}"
        );
        assert!(r.contains("$17::bigint[])"), "{r}");
    }
}
