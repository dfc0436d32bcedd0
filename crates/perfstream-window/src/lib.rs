//! Event-time tumbling windows with watermarks and HDR rollups. Pure: no I/O, no clock, no async.
//!
//! Key design choice: state is kept per (source partition, window, key), and time only enters
//! as arguments (`record(.., arrival_us)`, `advance(now_us)`), so the engine is deterministic:
//! a revoked partition replayed by its next owner from the stored resume offset yields the same
//! rollups, and every edge case is a plain unit test.
//!
//! # Layout
//! - [`config`]: [`WindowConfig`], the user-facing settings.
//! - [`engine`]: [`Engine`] with `assign`, `revoke`, `record`, `advance`, `flush`.
//! - [`flush`]: [`Flush`], the output of a flush: rollups, corrections, progress, counters.
//! - `partition`, `window`, `watermark`: per-partition state, per-window series maps, the
//!   operator watermark rule.
//! - `series`, `counts`, `hdr`, `key`: per-series state. Latency histograms are kept as HDR
//!   bucket indices (inline, then sparse, then dense) and turned into standard
//!   `Histogram<u64>`s only on emit, so results equal the plain HDR path while a series with a
//!   few events costs about a hundred bytes instead of 26 KiB.
//! - [`rollup`]: the output types, shared with the store.
//!
//! # Architecture invariant
//! This crate never does I/O, never reads a clock, never logs per event, and depends on no
//! async runtime, Kafka client or database driver. The caller logs from [`Flush::counters`].

pub mod config;
pub mod engine;
pub mod flush;
pub mod rollup;

mod counts;
mod hdr;
mod key;
mod partition;
mod series;
mod watermark;
mod window;

pub use config::{ConfigError, WindowConfig};
pub use engine::{Engine, RecordOutcome, WindowError, window_of};
pub use flush::{Counters, Flush, KindCounters, PartitionId, PartitionProgress};
pub use key::OVERFLOW_KEY;
pub use partition::ResumeState;
pub use rollup::*;
