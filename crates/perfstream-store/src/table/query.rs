//! `query_rollups`.

use std::sync::OnceLock;

use perfstream_events::{QueryType, TimestampUs};
use perfstream_window::{QueryFigures, QueryKey};
use sqlx::postgres::PgRow;

use super::latency::{LATENCY_COLS, column, decode_latency, encode_latency};
use super::{ColType, Encoder, Table, TableSql};
use crate::StoreError;

pub(crate) struct QueryTable;

const NAME: &str = "query_rollups";

impl Table for QueryTable {
    type Key = QueryKey;
    type Figures = QueryFigures;
    const NAME: &'static str = NAME;
    const KEY_COLS: usize = 4;

    fn columns() -> &'static [(String, ColType)] {
        static COLS: OnceLock<Vec<(String, ColType)>> = OnceLock::new();
        COLS.get_or_init(|| {
            [
                ("service", ColType::Text),
                ("query_hash", ColType::Text),
                ("query_type", ColType::Text),
                ("tenant_id", ColType::Text),
            ]
            .into_iter()
            .chain(LATENCY_COLS)
            .chain([("rows_sum", ColType::I64), ("rows_max", ColType::I64)])
            .map(|(n, t)| (n.to_owned(), t))
            .collect()
        })
    }

    fn sql() -> &'static TableSql {
        static SQL: OnceLock<TableSql> = OnceLock::new();
        SQL.get_or_init(|| TableSql::build(NAME, Self::columns(), Self::KEY_COLS))
    }

    fn encode_key<'a>(enc: &mut Encoder<'a>, k: &'a QueryKey) {
        enc.text(&k.service);
        enc.text(&k.query_hash);
        enc.text(k.query_type.as_str());
        enc.text(&k.tenant_id);
    }

    fn encode_figures(enc: &mut Encoder<'_>, f: &QueryFigures) {
        encode_latency(enc, &f.latency);
        enc.i64(f.rows_sum);
        enc.i64(f.rows_max);
    }

    fn decode_key(row: &PgRow) -> Result<QueryKey, StoreError> {
        let ws = 0;
        let query_type: String = column(row, NAME, "query_type", ws)?;
        Ok(QueryKey {
            service: column(row, NAME, "service", ws)?,
            query_hash: column(row, NAME, "query_hash", ws)?,
            query_type: QueryType::parse(&query_type).ok_or(StoreError::InvalidColumn {
                table: NAME,
                column: "query_type",
                window_start_us: ws,
            })?,
            tenant_id: column(row, NAME, "tenant_id", ws)?,
        })
    }

    fn decode_figures(row: &PgRow, ws: TimestampUs) -> Result<QueryFigures, StoreError> {
        Ok(QueryFigures {
            latency: decode_latency(row, NAME, ws)?,
            rows_sum: column(row, NAME, "rows_sum", ws)?,
            rows_max: column(row, NAME, "rows_max", ws)?,
            // The text lives in query_catalog, not in the rollup rows.
            query_text: None,
            // Samples live in query_samples.
            samples: Vec::new(),
        })
    }
}
