//! `/api/view/{view}`: the dashboard's charts, one answer per view and range.
//!
//! A view is a list of [`Chart`]s, each one fixed SQL statement that Postgres renders as JSON.
//! The answer carries each chart's SQL next to its data, so the page links every chart to the
//! statement that produced it and analysts can copy it. Answers are cached per (view, range,
//! service) in [`crate::cache::QueryCache`].

mod alerts;
mod handler;
mod overview;
mod queries;
mod service;

pub use handler::{meta, view};

/// One chart's statement. Binds: `$1` start, `$2` end (Unix seconds, float8), `$3` the
/// resolutions read (text[]: the base windows' labels, `{1h}` or `{1d}`), `$4` bucket seconds
/// (float8), and `$5` the service in the service view. A statement need not use them all
/// (the binds are typed).
pub struct Chart {
    /// The key of the chart's data in the answer (`charts[].id`).
    pub id: &'static str,
    /// Returns one row, one text column: the chart's data as JSON.
    pub sql: &'static str,
}
