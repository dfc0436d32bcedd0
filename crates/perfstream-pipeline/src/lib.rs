//! perfstream's pipeline protocol, as a pure state machine: [`Core`] owns the window engine,
//! the one record of each assigned partition's progress, the flush in flight and the replay
//! rules (what is skipped, what is routed again). It does no I/O and reads no clock: the Kafka
//! adapter (`perfstream-kafka`) performs the claims, the writes, the routing and the commits
//! that `Core` asks for, and passes the time in.
//!
//! Also here, so that crates which do not run the pipeline can use them without linking a Kafka
//! client: the pipeline's settings ([`KafkaSettings`], [`PipelineSettings`]) and its counters
//! ([`PipelineStats`]).

mod core;
mod quarantine;
mod settings;
mod stats;

pub use crate::core::{Action, Claim, Core, FlushPlan, LateKind, Progress};
pub use settings::{KafkaSettings, PipelineSettings, Topics};
pub use stats::{PipelineStats, StatsSnapshot};
