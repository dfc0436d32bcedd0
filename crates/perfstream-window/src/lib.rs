//! Event-time tumbling windows with watermarks and HDR rollups. Pure: no I/O, no clock, no async.
//!
//! Key design choice: state is kept per (source partition, window, key), and time only enters
//! as arguments (`record(.., arrival_us)`, `advance(now_us)`), so the engine is deterministic:
//! a revoked partition replayed by its next owner from the stored resume offset yields the same
//! rollups, and every edge case is a plain unit test.
//!
//! # Use
//! ```
//! use perfstream_events::{Event, RequestEvent};
//! use perfstream_window::{Engine, PartitionId, RecordOutcome, ResumeState, WindowConfig};
//!
//! let mut engine = Engine::new(WindowConfig::default()).unwrap();
//! let p = PartitionId { topic: 1, partition: 0 };
//! // On assignment: the resume state stored with the last flush (all `None` the first time).
//! engine.assign(p, ResumeState::default());
//! let t0 = 1_767_225_600_000_000; // a UTC minute, in µs
//! let request = |t| Event::Request(RequestEvent {
//!     service: "checkout".into(), instance: "i-1".into(), endpoint: "/pay".into(),
//!     method: "POST".into(), status_code: 200, response_time_us: 1_500,
//!     request_bytes: None, response_bytes: None, occurred_at_us: t, trace_id: None,
//! });
//! // Per message: its offset, the decoded event and when it arrived.
//! assert_eq!(engine.record(p, 0, &request(t0 + 1), t0).unwrap(), RecordOutcome::Aggregated);
//! assert_eq!(engine.record(p, 1, &request(t0 + 70_000_000), t0).unwrap(), RecordOutcome::Aggregated);
//! // Periodically: advance the watermark to the caller's now, flush, and store the closed
//! // rollups, the corrections and the progress in one transaction.
//! engine.advance(t0 + 70_000_000);
//! let flush = engine.flush();
//! assert_eq!(flush.closed.request.len(), 1); // [t0, t0 + 60 s) closed at watermark t0 + 65 s
//! assert_eq!(flush.progress[0].resume_offset, 1); // offset 1 is still in an open window
//! ```
//!
//! # Layout
//! - [`config`]: [`WindowConfig`], the user-facing settings.
//! - [`engine`]: [`Engine`] with `assign`, `revoke`, `record`, `advance`, `flush`.
//! - [`flush`]: [`Flush`], the output of a flush: rollups, corrections, progress, counters.
//! - `partition`, `window`, `watermark`: per-partition state, per-window series maps, the
//!   operator watermark rule.
//! - `series`, `counts`, `hdr`, `key`: per-series state. Latency histograms are kept as HDR
//!   bucket indices (inline, then sparse, then dense), so results equal the plain HDR path while
//!   a series with a few events costs about a hundred bytes instead of 26 KiB.
//! - [`rollup`]: the output types, shared with the store. A rollup's histogram
//!   ([`LatencyHist`]) keeps only its non-empty buckets too; the dense `Histogram<u64>` is built
//!   only to serialize one (`Latency::hist_bytes`) or on request (`LatencyHist::to_histogram`).
//!
//! # Architecture invariant
//! This crate never does I/O, never reads a clock, never logs per event, and depends on no
//! async runtime, Kafka client or database driver. The caller logs from [`Flush::counters`].

pub mod budget;
pub mod config;
pub mod engine;
pub mod flush;
pub mod rollup;
pub mod samples;

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
pub use samples::{MAX_SAMPLES, QuerySample, RequestSample, Source};
