//! `resource_rollups`. Every gauge is stored whole (samples, sum, min, max, last and its time)
//! so stored rows merge exactly; `<gauge>_mean` is a generated column.

use std::sync::OnceLock;

use perfstream_events::TimestampUs;
use perfstream_window::{Gauge, ResourceFigures, ResourceKey};
use sqlx::postgres::PgRow;

use super::latency::{column, count_column};
use super::{ColType, Encoder, Table, TableSql, from_ts};
use crate::StoreError;

pub(crate) struct ResourceTable;

const NAME: &str = "resource_rollups";

macro_rules! gauges {
    ($($g:ident),* $(,)?) => {
        /// Gauge column prefixes, in [`gauges`] order.
        pub(crate) const GAUGE_NAMES: &[&str] = &[$(stringify!($g)),*];
        fn gauges(f: &ResourceFigures) -> Vec<&Gauge> {
            vec![$(&f.$g),*]
        }
        fn gauges_mut(f: &mut ResourceFigures) -> Vec<&mut Gauge> {
            vec![$(&mut f.$g),*]
        }
    };
}

gauges!(
    cpu_ppm,
    memory_used_bytes,
    memory_limit_bytes,
    memory_utilization_ppm,
    heap_bytes,
    gc_pause_us,
    gc_count,
    interval_us,
    pool_active,
    pool_max,
    pool_utilization_ppm,
    pool_waiters,
    pool_wait_us,
    io_read_bytes,
    io_write_bytes,
);

/// Per-gauge column suffixes, in encode order.
const GAUGE_COLS: [(&str, ColType); 6] = [
    ("samples", ColType::I64),
    ("sum", ColType::I64),
    ("min", ColType::OptI64),
    ("max", ColType::OptI64),
    ("last", ColType::OptI64),
    ("last_at", ColType::OptTs),
];

/// Column names of one gauge, `&'static` because tables' column lists live for the process.
fn gauge_cols() -> &'static [[String; 6]] {
    static C: OnceLock<Vec<[String; 6]>> = OnceLock::new();
    C.get_or_init(|| {
        GAUGE_NAMES
            .iter()
            .map(|g| GAUGE_COLS.map(|(s, _)| format!("{g}_{s}")))
            .collect()
    })
}

impl Table for ResourceTable {
    type Key = ResourceKey;
    type Figures = ResourceFigures;
    const NAME: &'static str = NAME;
    const KEY_COLS: usize = 2;

    fn columns() -> &'static [(String, ColType)] {
        static COLS: OnceLock<Vec<(String, ColType)>> = OnceLock::new();
        COLS.get_or_init(|| {
            let mut c: Vec<(String, ColType)> = [
                ("service", ColType::Text),
                ("instance", ColType::Text),
                ("samples", ColType::I64),
            ]
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t))
            .collect();
            for names in gauge_cols() {
                c.extend(
                    names
                        .iter()
                        .zip(GAUGE_COLS)
                        .map(|(n, (_, t))| (n.clone(), t)),
                );
            }
            c.push(("cache_hits".to_owned(), ColType::I64));
            c.push(("cache_misses".to_owned(), ColType::I64));
            c
        })
    }

    fn sql() -> &'static TableSql {
        static SQL: OnceLock<TableSql> = OnceLock::new();
        SQL.get_or_init(|| TableSql::build(NAME, Self::columns(), Self::KEY_COLS))
    }

    fn encode_key<'a>(enc: &mut Encoder<'a>, k: &'a ResourceKey) {
        enc.text(&k.service);
        enc.text(&k.instance);
    }

    fn encode_figures(enc: &mut Encoder<'_>, f: &ResourceFigures) {
        enc.count(f.samples);
        for g in gauges(f) {
            let some = g.count > 0;
            enc.count(g.count);
            enc.i64(g.sum);
            enc.opt_i64(some.then_some(g.min));
            enc.opt_i64(some.then_some(g.max));
            enc.opt_i64(some.then_some(g.last));
            enc.opt_ts(some.then_some(g.last_at_us));
        }
        enc.i64(f.cache_hits);
        enc.i64(f.cache_misses);
    }

    fn decode_key(row: &PgRow) -> Result<ResourceKey, StoreError> {
        Ok(ResourceKey {
            service: column(row, NAME, "service", 0)?,
            instance: column(row, NAME, "instance", 0)?,
        })
    }

    fn decode_figures(row: &PgRow, ws: TimestampUs) -> Result<ResourceFigures, StoreError> {
        let mut f = ResourceFigures {
            samples: count_column(row, NAME, "samples", ws)?,
            cache_hits: column(row, NAME, "cache_hits", ws)?,
            cache_misses: column(row, NAME, "cache_misses", ws)?,
            ..ResourceFigures::default()
        };
        for (g, names) in gauges_mut(&mut f).into_iter().zip(gauge_cols()) {
            let count = count_column(row, NAME, names[0].as_str(), ws)?;
            if count == 0 {
                *g = Gauge::default();
                continue;
            }
            let req = |i: usize| -> Result<i64, StoreError> {
                column::<Option<i64>>(row, NAME, names[i].as_str(), ws)?.ok_or(
                    StoreError::InvalidColumn {
                        table: NAME,
                        column: names[i].as_str(),
                        window_start_us: ws,
                    },
                )
            };
            let last_at =
                column::<Option<chrono::DateTime<chrono::Utc>>>(row, NAME, names[5].as_str(), ws)?
                    .ok_or(StoreError::InvalidColumn {
                        table: NAME,
                        column: names[5].as_str(),
                        window_start_us: ws,
                    })?;
            *g = Gauge {
                count,
                sum: column(row, NAME, names[1].as_str(), ws)?,
                min: req(2)?,
                max: req(3)?,
                last: req(4)?,
                last_at_us: from_ts(last_at),
            };
        }
        Ok(f)
    }
}
