//! [`DecodeError`]: every way a message can fail to decode, each variant naming what was wrong.
//!
//! `kind()` is the short machine-readable class written to `DeadLetter.error_kind`; `Display` is
//! the human-readable reason (`DeadLetter.reason`) and names the field.

use std::borrow::Cow;

/// A field name or dotted path (`caches.hits`), static on the fast path, built from the writer
/// schema on the resolution path.
pub type Field = Cow<'static, str>;

/// Why a message could not be decoded into one of perfstream's types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message: expected the 5-byte Confluent header (magic 0, schema id)")]
    Empty,

    #[error("message of {len} bytes is shorter than the 5-byte Confluent header")]
    ShortHeader { len: usize },

    #[error("wrong magic byte {found:#04x}: expected 0x00 (Confluent wire format)")]
    BadMagic { found: u8 },

    #[error(
        "unknown schema id {id}: not one of perfstream's own ids 1..=7, and no configured schema \
         registry knows it"
    )]
    UnknownSchema { id: u32 },

    #[error("schema id {id} is a {found} schema, expected {expected}")]
    WrongSchema {
        id: u32,
        found: String,
        expected: &'static str,
    },

    #[error("truncated body: {field} needs {needed} more bytes, {remaining} left")]
    Truncated {
        field: Field,
        needed: u64,
        remaining: usize,
    },

    #[error("{count} trailing bytes after the end of the {record} record")]
    TrailingBytes { record: &'static str, count: usize },

    #[error("{field}: malformed varint (more than 10 bytes or overflowing 64 bits)")]
    BadVarint { field: Field },

    #[error("{field}: value {value} does not fit an Avro int (32 bits)")]
    IntOutOfRange { field: Field, value: i64 },

    #[error("{field}: invalid enum index {index}, the enum has {symbols} symbols")]
    InvalidEnumIndex {
        field: Field,
        index: i64,
        symbols: usize,
    },

    #[error("{field}: invalid union branch {index}, the union has {branches} branches")]
    InvalidUnionBranch {
        field: Field,
        index: i64,
        branches: usize,
    },

    #[error("{field}: invalid boolean byte {byte:#04x}")]
    InvalidBoolean { field: Field, byte: u8 },

    #[error("writer schema refers to the undefined type {name}")]
    UnresolvedName { name: String },

    #[error("{field}: negative length or count {len}")]
    NegativeLength { field: Field, len: i64 },

    #[error("{field}: invalid UTF-8 in string")]
    InvalidUtf8 { field: Field },

    #[error("{field}: string of {len} bytes exceeds the limit of {max} bytes")]
    StringTooLong { field: Field, len: u64, max: usize },

    #[error("{field}: map with at least {count} entries exceeds the limit of {max} entries")]
    MapTooLong {
        field: Field,
        count: u64,
        max: usize,
    },

    #[error("{field}: nesting deeper than {max} levels")]
    TooDeep { field: Field, max: usize },

    #[error("{field} must not be empty")]
    EmptyString { field: Field },

    /// Postgres `text` cannot hold a NUL byte (`invalid byte sequence for encoding "UTF8":
    /// 0x00`), so such an event could never be written.
    #[error(
        "{field} contains a NUL byte at byte {at}: no text field may (Postgres cannot store it)"
    )]
    ContainsNul { field: Field, at: usize },

    /// Above perfstream's limit for the field (`validate.rs`), which keeps every stored figure
    /// and every sum a rollup computes from it within bigint.
    #[error("{field} is {value}, must be <= {max}")]
    TooLarge { field: Field, value: i64, max: i64 },

    /// A ratio (given, or computed from two fields) above perfstream's limit for it.
    #[error("{field} is {value}, must be <= {max}")]
    FigureTooLarge { field: Field, value: f64, max: f64 },

    #[error("{field} is {value}, must be >= 0")]
    Negative { field: Field, value: i64 },

    #[error("{field} is {value}, must be > 0")]
    NotPositive { field: Field, value: i64 },

    #[error("{field} is {value}, must be a finite number")]
    NotFinite { field: Field, value: f64 },

    #[error("{field} is {value}, must be >= 0")]
    NegativeFigure { field: Field, value: f64 },

    #[error("status_code is {value}, must be in 100..=599")]
    StatusOutOfRange { value: i32 },

    #[error(
        "{field} is {event_us} µs, {ahead_us} µs ahead of the Kafka timestamp {kafka_us} µs \
         (at most {max_skew_us} µs allowed)"
    )]
    TooFarInFuture {
        field: Field,
        event_us: i64,
        kafka_us: i64,
        ahead_us: i64,
        max_skew_us: i64,
    },

    #[error("schema id {id}: writer schema cannot be read as {reader}: {detail}")]
    IncompatibleSchema {
        id: u32,
        reader: &'static str,
        detail: String,
    },

    #[error("schema id {id}: {detail}")]
    Resolution { id: u32, detail: String },

    #[error("schema registry unavailable for schema id {id}: {detail}")]
    RegistryUnavailable { id: u32, detail: String },
}

impl DecodeError {
    /// Short machine-readable class of the error, used as `DeadLetter.error_kind`.
    pub fn kind(&self) -> &'static str {
        use DecodeError::*;
        match self {
            Empty => "empty",
            ShortHeader { .. } | Truncated { .. } => "truncated",
            BadMagic { .. } => "bad_magic",
            UnknownSchema { .. } => "unknown_schema",
            WrongSchema { .. } => "wrong_schema",
            TrailingBytes { .. } => "trailing_bytes",
            BadVarint { .. }
            | IntOutOfRange { .. }
            | InvalidEnumIndex { .. }
            | InvalidUnionBranch { .. }
            | InvalidBoolean { .. }
            | NegativeLength { .. }
            | InvalidUtf8 { .. }
            | TooDeep { .. }
            | Resolution { .. } => "malformed",
            StringTooLong { .. } | MapTooLong { .. } => "oversized",
            EmptyString { .. }
            | ContainsNul { .. }
            | Negative { .. }
            | NotPositive { .. }
            | NotFinite { .. }
            | NegativeFigure { .. }
            | StatusOutOfRange { .. } => "invalid_field",
            TooLarge { .. } | FigureTooLarge { .. } => "out_of_range",
            TooFarInFuture { .. } => "too_far_in_future",
            IncompatibleSchema { .. } | UnresolvedName { .. } => "incompatible_schema",
            RegistryUnavailable { .. } => "registry_unavailable",
        }
    }

    /// Whether retrying the same message later may succeed. Only a registry that could not be
    /// reached is such a case; every other error is a property of the bytes and belongs in the
    /// dead-letter topic.
    pub fn is_retriable(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }

    /// Prefixes the field path with `parent.` (used while unwinding nested decoding).
    pub(crate) fn in_field(mut self, parent: &str) -> Self {
        use DecodeError::*;
        let f = match &mut self {
            Truncated { field, .. }
            | BadVarint { field }
            | IntOutOfRange { field, .. }
            | InvalidEnumIndex { field, .. }
            | InvalidUnionBranch { field, .. }
            | InvalidBoolean { field, .. }
            | NegativeLength { field, .. }
            | InvalidUtf8 { field }
            | StringTooLong { field, .. }
            | MapTooLong { field, .. }
            | TooDeep { field, .. } => field,
            _ => return self,
        };
        *f = if f.is_empty() {
            Cow::Owned(parent.to_owned())
        } else {
            Cow::Owned(format!("{parent}.{f}"))
        };
        self
    }
}
