//! perfstream's event contract: the Rust types of the Avro schemas in `schemas/`, their encoding
//! in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary body),
//! and validation of everything that comes from outside.
//!
//! Key design choice: our own schema versions are encoded and decoded by hand-written code for
//! speed; any other writer schema goes through apache-avro's schema resolution against our
//! reader schema. Both paths must give identical results (property-tested).
//!
//! # Layout
//! - `types.rs`: the event types. `schema.rs`: the embedded schemas and static id map.
//! - `encode.rs`: hand-written encoders and the Kafka keys.
//! - `decode.rs`: [`Decoder`] and [`DecodeConfig`]; `fast.rs`: the specialised decoders for our
//!   own schema ids (the fast path).
//! - `cursor.rs`: bounds-checked reading of Avro primitives, shared by both paths.
//! - `resolve.rs`, `scan.rs`, `convert.rs`: the resolution path (apache-avro) for other writer
//!   schemas; `registry.rs`: the schema registry client it fetches them with.
//! - `validate.rs`: field rules (ranges, sizes, clock skew) applied after either path; they make
//!   every event that decodes writable to Postgres (no NUL, bounded lengths and figures).
//! - `error.rs`: [`DecodeError`]. `json.rs`: a JSON view of the records for cross-language checks.
//!
//! # Invariant
//! Decoding never panics and never allocates more than the message's own size on any input: every
//! length and count is checked against the bytes left before use.

mod convert;
mod cursor;
pub mod decode;
pub mod encode;
pub mod error;
mod fast;
pub mod json;
pub mod registry;
mod resolve;
mod scan;
pub mod schema;
pub mod types;
pub mod validate;

pub use decode::{DecodeConfig, Decoder, decode_alert, decode_dead_letter, split_header};
pub use encode::{encode_event, series_key, source_key};
pub use error::DecodeError;
pub use schema::SchemaId;
pub use types::*;
