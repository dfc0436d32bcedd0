//! Samples (exemplars) of a flush's rollups: per window and key, the slowest events with their
//! raw fields and source offset, written in the flush's transaction (`query_samples`,
//! `request_samples`). A sample is identified by its source (topic, partition, offset), so a
//! replay or a re-sent flush writes nothing twice (`ON CONFLICT DO NOTHING`), and a flush that
//! rolls back takes its samples with it: samples follow the rollups' exactly-once rules.
//!
//! `rank` is the sample's place among those of its flush (1 = slowest); a window corrected by a
//! later flush may hold more than `window.samples_per_series` samples, each flush's ranked on
//! its own. Order by the duration for the window's own order.

use perfstream_window::{QueryFigures, QueryKey, RequestFigures, RequestKey};
use sqlx::PgConnection;

use crate::StoreError;
use crate::table::{Stored, to_ts};

fn topic_name(topics: &[String], index: u32) -> String {
    topics
        .get(index as usize)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

pub(crate) async fn write_query_samples(
    conn: &mut PgConnection,
    rows: &[Stored<'_, QueryKey, QueryFigures>],
    topics: &[String],
) -> Result<(), StoreError> {
    let n: usize = rows.iter().map(|r| r.rollup.figures.samples.len()).sum();
    if n == 0 {
        return Ok(());
    }
    let mut c = QueryColumns::with_capacity(n);
    for r in rows {
        let ro = &r.rollup;
        for (i, s) in ro.figures.samples.iter().enumerate() {
            c.resolution.push(r.resolution.clone());
            c.window_start.push(to_ts(ro.window_start_us));
            c.window_end.push(to_ts(ro.window_end_us));
            c.service.push(ro.key.service.clone());
            c.query_hash.push(ro.key.query_hash.clone());
            c.query_type.push(ro.key.query_type.as_str().to_string());
            c.tenant_id.push(ro.key.tenant_id.clone());
            c.topic.push(topic_name(topics, s.source.partition.topic));
            c.partition.push(s.source.partition.partition);
            c.offset.push(s.source.offset);
            c.rank.push(i as i16 + 1);
            c.duration.push(s.duration_us);
            c.rows.push(s.rows_affected);
            c.instance.push(s.instance.clone());
            c.text.push(ro.figures.query_text.clone());
            c.event_time.push(to_ts(s.event_time_us));
        }
    }
    sqlx::query(
        "INSERT INTO query_samples (resolution, window_start, window_end, service, query_hash, \
         query_type, tenant_id, source_topic, source_partition, source_offset, rank, \
         execution_time_us, rows_affected, instance, query_text, event_time) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::int[], $10::bigint[], \
         $11::smallint[], $12::bigint[], $13::bigint[], $14::text[], $15::text[], \
         $16::timestamptz[]) ON CONFLICT DO NOTHING",
    )
    .bind(c.resolution)
    .bind(c.window_start)
    .bind(c.window_end)
    .bind(c.service)
    .bind(c.query_hash)
    .bind(c.query_type)
    .bind(c.tenant_id)
    .bind(c.topic)
    .bind(c.partition)
    .bind(c.offset)
    .bind(c.rank)
    .bind(c.duration)
    .bind(c.rows)
    .bind(c.instance)
    .bind(c.text)
    .bind(c.event_time)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::db("inserting query samples"))?;
    Ok(())
}

pub(crate) async fn write_request_samples(
    conn: &mut PgConnection,
    rows: &[Stored<'_, RequestKey, RequestFigures>],
    topics: &[String],
) -> Result<(), StoreError> {
    let n: usize = rows.iter().map(|r| r.rollup.figures.samples.len()).sum();
    if n == 0 {
        return Ok(());
    }
    let mut c = RequestColumns::with_capacity(n);
    for r in rows {
        let ro = &r.rollup;
        for (i, s) in ro.figures.samples.iter().enumerate() {
            c.resolution.push(r.resolution.clone());
            c.window_start.push(to_ts(ro.window_start_us));
            c.window_end.push(to_ts(ro.window_end_us));
            c.service.push(ro.key.service.clone());
            c.endpoint.push(ro.key.endpoint.clone());
            c.method.push(ro.key.method.clone());
            c.topic.push(topic_name(topics, s.source.partition.topic));
            c.partition.push(s.source.partition.partition);
            c.offset.push(s.source.offset);
            c.rank.push(i as i16 + 1);
            c.duration.push(s.duration_us);
            c.status.push(s.status_code);
            c.request_bytes.push(s.request_bytes);
            c.response_bytes.push(s.response_bytes);
            c.instance.push(s.instance.clone());
            c.event_time.push(to_ts(s.event_time_us));
        }
    }
    sqlx::query(
        "INSERT INTO request_samples (resolution, window_start, window_end, service, endpoint, \
         method, source_topic, source_partition, source_offset, rank, response_time_us, \
         status_code, request_bytes, response_bytes, instance, event_time) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[], $10::smallint[], \
         $11::bigint[], $12::int[], $13::bigint[], $14::bigint[], $15::text[], \
         $16::timestamptz[]) ON CONFLICT DO NOTHING",
    )
    .bind(c.resolution)
    .bind(c.window_start)
    .bind(c.window_end)
    .bind(c.service)
    .bind(c.endpoint)
    .bind(c.method)
    .bind(c.topic)
    .bind(c.partition)
    .bind(c.offset)
    .bind(c.rank)
    .bind(c.duration)
    .bind(c.status)
    .bind(c.request_bytes)
    .bind(c.response_bytes)
    .bind(c.instance)
    .bind(c.event_time)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::db("inserting request samples"))?;
    Ok(())
}

type Ts = chrono::DateTime<chrono::Utc>;

#[derive(Default)]
struct QueryColumns {
    resolution: Vec<String>,
    window_start: Vec<Ts>,
    window_end: Vec<Ts>,
    service: Vec<String>,
    query_hash: Vec<String>,
    query_type: Vec<String>,
    tenant_id: Vec<String>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    rank: Vec<i16>,
    duration: Vec<i64>,
    rows: Vec<i64>,
    instance: Vec<String>,
    text: Vec<Option<String>>,
    event_time: Vec<Ts>,
}

impl QueryColumns {
    fn with_capacity(n: usize) -> Self {
        let mut c = Self::default();
        c.resolution.reserve(n);
        c.offset.reserve(n);
        c
    }
}

#[derive(Default)]
struct RequestColumns {
    resolution: Vec<String>,
    window_start: Vec<Ts>,
    window_end: Vec<Ts>,
    service: Vec<String>,
    endpoint: Vec<String>,
    method: Vec<String>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    rank: Vec<i16>,
    duration: Vec<i64>,
    status: Vec<i32>,
    request_bytes: Vec<Option<i64>>,
    response_bytes: Vec<Option<i64>>,
    instance: Vec<String>,
    event_time: Vec<Ts>,
}

impl RequestColumns {
    fn with_capacity(n: usize) -> Self {
        let mut c = Self::default();
        c.resolution.reserve(n);
        c.offset.reserve(n);
        c
    }
}
