//! perfstream's event contract: the Rust types of the Avro schemas in `schemas/`, their encoding
//! in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary body),
//! and validation of everything that comes from outside.
//!
//! Key design choice: our own schema versions are encoded and decoded by hand-written code for
//! speed; any other writer schema goes through apache-avro's schema resolution against our
//! reader schema. Both paths must give identical results (property-tested).

pub mod encode;
pub mod schema;
pub mod types;

pub use encode::{encode_event, series_key, source_key};
pub use schema::SchemaId;
pub use types::*;
