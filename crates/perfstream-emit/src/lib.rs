//! perfstream-emit: how events get into perfstream's topics.
//!
//! Two users, one crate:
//!
//! - **Services** link the [`Emitter`]: `record_query`, `record_request`, `record_resource`
//!   never block the caller (a bounded buffer; full means dropped and counted), a background
//!   thread batches into an idempotent producer keyed by the series key.
//! - **Tests, demos and benchmarks** use the load generator (`perfstream emit`, [`run`]) and
//!   its truth file: the exact expected rollups of everything the broker acknowledged.
//!
//! Key design choice: generation is a pure function of a [`Scenario`] ([`generate`], no I/O, no
//! clock), so the same seed gives the same bytes; the sending loop ([`produce`]) only paces,
//! sends and feeds the [`TruthBuilder`] from delivery reports. The truth is computed here from
//! sorted raw values and never with perfstream-window's code, which it exists to check.
//!
//! # Layout
//! - `args.rs`: [`GenerateArgs`] (clap) and its translation into a [`Scenario`].
//! - `scenario.rs`: the pure run description and the episode kinds.
//! - `topology.rs`: services, instances, endpoints and queries drawn from the seed.
//! - `generate/`: the deterministic generation core: `generator.rs` the timeline and classes
//!   ([`Generator`]), `values.rs` latencies, statuses, gauges and episode effects, `record.rs`
//!   what it yields ([`Record`]).
//! - `truth/`: `file.rs` the file's types ([`Truth`]), `builder.rs` the accumulation
//!   ([`TruthBuilder`]), `figures.rs` the exact definitions (windows, percentile rank, ppm).
//! - `run.rs`: the sending loop ([`run`], [`produce`]) and the [`Summary`].
//! - `emitter.rs`: the non-blocking [`Emitter`] library.
//! - `instrument/`: [`instrument::QueryRecorder`] (times a query, e.g. sqlx) and, with the
//!   `tower` feature, `instrument::RequestLayer` (records requests, axum's `MatchedPath`).
//! - `query_fill.rs`: the emitter fills `query_hash` (and the normalised text, once per hash)
//!   when a service gives only the text.
//! - `fingerprint/`: the query fingerprint (normalised text and `query_hash`) shared with the
//!   Python client ([`fingerprint::fingerprint`]).

mod args;
mod emitter;
mod error;
pub mod fingerprint;
mod generate;
pub mod instrument;
mod query_fill;
mod run;
mod scenario;
mod topology;
pub mod truth;

pub use args::{GenerateArgs, parse_duration, parse_start_time};
pub use emitter::{Counters, Emitter, EmitterConfig};
pub use error::EmitError;
pub use generate::{Class, Generator, MalformedKind, Record, episodes, generate};
pub use run::{
    ProduceOptions, Report, Summary, produce, produce_blocking, run, run_until, write_truth,
};
pub use scenario::{Episode, EpisodeKind, Scenario, TopicKind, Topics};
pub use truth::{Truth, TruthBuilder, truth_of};
