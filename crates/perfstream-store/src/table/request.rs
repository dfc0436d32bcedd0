//! `request_rollups`.

use std::sync::OnceLock;

use perfstream_events::TimestampUs;
use perfstream_window::{RequestFigures, RequestKey};
use sqlx::postgres::PgRow;

use super::latency::{LATENCY_COLS, column, count_column, decode_latency, encode_latency};
use super::{ColType, Encoder, Table, TableSql};
use crate::StoreError;

pub(crate) struct RequestTable;

const NAME: &str = "request_rollups";

impl Table for RequestTable {
    type Key = RequestKey;
    type Figures = RequestFigures;
    const NAME: &'static str = NAME;
    const KEY_COLS: usize = 3;

    fn columns() -> &'static [(String, ColType)] {
        static COLS: OnceLock<Vec<(String, ColType)>> = OnceLock::new();
        COLS.get_or_init(|| {
            [
                ("service", ColType::Text),
                ("endpoint", ColType::Text),
                ("method", ColType::Text),
            ]
            .into_iter()
            .chain(LATENCY_COLS)
            .chain([
                ("status_2xx", ColType::I64),
                ("status_3xx", ColType::I64),
                ("status_4xx", ColType::I64),
                ("status_5xx", ColType::I64),
                ("status_other", ColType::I64),
            ])
            .map(|(n, t)| (n.to_owned(), t))
            .collect()
        })
    }

    fn sql() -> &'static TableSql {
        static SQL: OnceLock<TableSql> = OnceLock::new();
        SQL.get_or_init(|| TableSql::build(NAME, Self::columns(), Self::KEY_COLS))
    }

    fn encode_key<'a>(enc: &mut Encoder<'a>, k: &'a RequestKey) {
        enc.text(&k.service);
        enc.text(&k.endpoint);
        enc.text(&k.method);
    }

    fn encode_figures(enc: &mut Encoder<'_>, f: &RequestFigures) {
        encode_latency(enc, &f.latency);
        for c in [
            f.status_2xx,
            f.status_3xx,
            f.status_4xx,
            f.status_5xx,
            f.status_other,
        ] {
            enc.count(c);
        }
    }

    fn decode_key(row: &PgRow) -> Result<RequestKey, StoreError> {
        Ok(RequestKey {
            service: column(row, NAME, "service", 0)?,
            endpoint: column(row, NAME, "endpoint", 0)?,
            method: column(row, NAME, "method", 0)?,
        })
    }

    fn decode_figures(row: &PgRow, ws: TimestampUs) -> Result<RequestFigures, StoreError> {
        Ok(RequestFigures {
            latency: decode_latency(row, NAME, ws)?,
            status_2xx: count_column(row, NAME, "status_2xx", ws)?,
            status_3xx: count_column(row, NAME, "status_3xx", ws)?,
            status_4xx: count_column(row, NAME, "status_4xx", ws)?,
            status_5xx: count_column(row, NAME, "status_5xx", ws)?,
            status_other: count_column(row, NAME, "status_other", ws)?,
            // Samples live in request_samples.
            samples: Vec::new(),
        })
    }
}
