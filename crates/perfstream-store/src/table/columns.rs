//! Column-major encoding of rows into the arrays bound to an `UNNEST(...)` statement.

use chrono::{DateTime, Utc};
use perfstream_events::TimestampUs;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

/// Microseconds since the epoch as a timestamptz value. Out-of-range values (beyond chrono's
/// range, hundreds of thousands of years) clamp, and Postgres rejects them.
pub(crate) fn to_ts(us: TimestampUs) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(if us < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

pub(crate) fn from_ts(t: DateTime<Utc>) -> TimestampUs {
    t.timestamp_micros()
}

/// The Postgres type of a column, as bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    Text,
    Ts,
    OptTs,
    I64,
    OptI64,
    Bytes,
}

impl ColType {
    pub fn pg_type(self) -> &'static str {
        match self {
            ColType::Text => "text",
            ColType::Ts | ColType::OptTs => "timestamptz",
            ColType::I64 | ColType::OptI64 => "bigint",
            ColType::Bytes => "bytea",
        }
    }
}

enum ColVec<'a> {
    Text(Vec<&'a str>),
    Ts(Vec<DateTime<Utc>>),
    OptTs(Vec<Option<DateTime<Utc>>>),
    I64(Vec<i64>),
    OptI64(Vec<Option<i64>>),
    Bytes(Vec<Vec<u8>>),
}

/// Collects rows column by column. Each `push` fills the next column of the current row; the
/// column order and types are the table's static schema, so a mismatch is a bug in this crate
/// (caught by every store test), never a data error.
pub(crate) struct Encoder<'a> {
    cols: Vec<ColVec<'a>>,
    at: usize,
    hist: super::hist::HistEncoder,
}

impl<'a> Encoder<'a> {
    pub fn new(types: impl Iterator<Item = ColType>, rows: usize) -> Encoder<'a> {
        let cols = types
            .map(|t| match t {
                ColType::Text => ColVec::Text(Vec::with_capacity(rows)),
                ColType::Ts => ColVec::Ts(Vec::with_capacity(rows)),
                ColType::OptTs => ColVec::OptTs(Vec::with_capacity(rows)),
                ColType::I64 => ColVec::I64(Vec::with_capacity(rows)),
                ColType::OptI64 => ColVec::OptI64(Vec::with_capacity(rows)),
                ColType::Bytes => ColVec::Bytes(Vec::with_capacity(rows)),
            })
            .collect();
        Encoder {
            cols,
            at: 0,
            hist: super::hist::HistEncoder::new(),
        }
    }

    fn next(&mut self) -> &mut ColVec<'a> {
        let c = &mut self.cols[self.at];
        self.at += 1;
        c
    }

    pub fn end_row(&mut self) {
        assert_eq!(
            self.at,
            self.cols.len(),
            "row encoded with a wrong column count"
        );
        self.at = 0;
    }

    pub fn text(&mut self, v: &'a str) {
        match self.next() {
            ColVec::Text(c) => c.push(v),
            _ => panic!("column type mismatch: text"),
        }
    }

    pub fn ts(&mut self, us: TimestampUs) {
        match self.next() {
            ColVec::Ts(c) => c.push(to_ts(us)),
            _ => panic!("column type mismatch: timestamptz"),
        }
    }

    pub fn opt_ts(&mut self, us: Option<TimestampUs>) {
        match self.next() {
            ColVec::OptTs(c) => c.push(us.map(to_ts)),
            _ => panic!("column type mismatch: nullable timestamptz"),
        }
    }

    pub fn i64(&mut self, v: i64) {
        match self.next() {
            ColVec::I64(c) => c.push(v),
            _ => panic!("column type mismatch: bigint"),
        }
    }

    /// A count: u64 in Rust, bigint in Postgres (counts never reach 2^63).
    pub fn count(&mut self, v: u64) {
        self.i64(i64::try_from(v).unwrap_or(i64::MAX));
    }

    pub fn opt_i64(&mut self, v: Option<i64>) {
        match self.next() {
            ColVec::OptI64(c) => c.push(v),
            _ => panic!("column type mismatch: nullable bigint"),
        }
    }

    /// A histogram, V2 compressed.
    pub fn hist(&mut self, h: &hdrhistogram::Histogram<u64>) {
        let v = self.hist.encode(h);
        self.bytes(v);
    }

    pub fn bytes(&mut self, v: Vec<u8>) {
        match self.next() {
            ColVec::Bytes(c) => c.push(v),
            _ => panic!("column type mismatch: bytea"),
        }
    }

    /// Binds every column, in order, as $1, $2, ...
    pub fn bind_all<'q>(
        self,
        mut q: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        for col in self.cols {
            q = match col {
                ColVec::Text(v) => q.bind(v),
                ColVec::Ts(v) => q.bind(v),
                ColVec::OptTs(v) => q.bind(v),
                ColVec::I64(v) => q.bind(v),
                ColVec::OptI64(v) => q.bind(v),
                ColVec::Bytes(v) => q.bind(v),
            };
        }
        q
    }
}
