//! Event-time tumbling windows with watermarks and HDR rollups. Pure: no I/O, no clock, no async.

pub mod rollup;

pub use rollup::*;
