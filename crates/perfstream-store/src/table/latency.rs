//! The latency columns shared by the query and request tables.

use perfstream_events::TimestampUs;
use perfstream_window::{Latency, LatencyHist, PERCENTILES};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{ColType, Encoder};
use crate::StoreError;

/// Column names in encode order. Percentile columns follow [`PERCENTILES`].
pub(crate) const LATENCY_COLS: [(&str, ColType); 11] = [
    ("count", ColType::I64),
    ("sum_us", ColType::I64),
    ("min_us", ColType::I64),
    ("max_us", ColType::I64),
    ("p50_us", ColType::I64),
    ("p90_us", ColType::I64),
    ("p95_us", ColType::I64),
    ("p99_us", ColType::I64),
    ("p999_us", ColType::I64),
    ("clamped_count", ColType::I64),
    ("hist", ColType::Bytes),
];

pub(crate) fn encode_latency(enc: &mut Encoder<'_>, l: &Latency) {
    enc.count(l.count);
    enc.i64(l.sum_us);
    enc.i64(l.min_us);
    enc.i64(l.max_us);
    // One pass over the counts for all five; equal to `quantile_us` for each (documented by
    // hdrhistogram, and pinned by the store tests, which compare with `quantile_us`).
    let mut values = l.hist.value_at_quantiles(PERCENTILES);
    for _ in PERCENTILES {
        enc.i64(values.next().map_or(0, |v| v as i64));
    }
    enc.count(l.clamped);
    enc.hist(&l.hist.to_histogram());
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    table: &'static str,
    column: &'static str,
    window_start_us: TimestampUs,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(|_| StoreError::InvalidColumn {
        table,
        column,
        window_start_us,
    })
}

/// A typed column of a stored row, with the table and window in the error.
pub(crate) fn column<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    table: &'static str,
    column: &'static str,
    window_start_us: TimestampUs,
) -> Result<T, StoreError> {
    get(row, table, column, window_start_us)
}

/// A bigint count column as u64 (negative values are corrupt).
pub(crate) fn count_column(
    row: &PgRow,
    table: &'static str,
    col: &'static str,
    ws: TimestampUs,
) -> Result<u64, StoreError> {
    let v: i64 = get(row, table, col, ws)?;
    u64::try_from(v).map_err(|_| StoreError::InvalidColumn {
        table,
        column: col,
        window_start_us: ws,
    })
}

pub(crate) fn decode_latency(
    row: &PgRow,
    table: &'static str,
    ws: TimestampUs,
) -> Result<Latency, StoreError> {
    let bytes: Vec<u8> = get(row, table, "hist", ws)?;
    let hist = Latency::decode_hist(&bytes)
        .and_then(|h| LatencyHist::from_histogram(&h))
        .map_err(|reason| StoreError::CorruptHistogram {
            table,
            window_start_us: ws,
            reason,
        })?;
    Ok(Latency {
        count: count_column(row, table, "count", ws)?,
        sum_us: get(row, table, "sum_us", ws)?,
        min_us: get(row, table, "min_us", ws)?,
        max_us: get(row, table, "max_us", ws)?,
        clamped: count_column(row, table, "clamped_count", ws)?,
        hist,
    })
}
