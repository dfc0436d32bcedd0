//! The pure, deterministic generation core: a [`Scenario`](crate::Scenario) in, a sequence of
//! Kafka messages out. See `generator.rs` for the timeline, `values.rs` for the values.

mod generator;
mod record;
mod values;

pub use generator::{Generator, episodes, generate};
pub use record::{Class, MalformedKind, Record};
