//! [`Decoder`]: Confluent-framed bytes to perfstream's types.
//!
//! Our own schema ids (1..=7, `schemas/ids.json`) go through the specialised decoders (`fast.rs`),
//! which read exactly the binary layout of those schema versions. Any other id is looked up in the
//! schema registry (when one is configured) and decoded with apache-avro's schema resolution
//! against our reader schema (`resolve.rs`). Both paths end in the same checks (`validate.rs`).

use std::time::Duration;

use serde::Deserialize;

use crate::encode::MAGIC;
use crate::error::DecodeError;
use crate::fast::decode_body;
use crate::registry::Registry;
use crate::resolve::Resolver;
use crate::schema::SchemaId;
use crate::types::*;
use crate::validate;

/// Limits and sources for decoding. Every field has a default (`DecodeConfig::default()`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// How far an event's own timestamp may be ahead of its Kafka message timestamp, in
    /// microseconds. Clocks drift, but an event from the future would open windows that never
    /// close. Default 300 000 000 (5 minutes).
    pub max_future_skew_us: i64,
    /// Largest string accepted in any field, in bytes, checked before the string is read.
    /// Fields have tighter limits of their own (see `docs/producers.md`). Default 65 536.
    pub max_string_bytes: usize,
    /// Largest number of entries in any map (`ResourceEvent.caches`, `AlertEvent.labels`),
    /// checked before entries are read: it bounds the series a single event can create.
    /// Default 64.
    pub max_map_entries: usize,
    /// Base URL of a Confluent-compatible schema registry (`http://host:8081`), used for schema
    /// ids that are not perfstream's own. Plain HTTP only. Default: none, so only our own ids
    /// decode.
    pub registry_url: Option<String>,
    /// Timeout of one registry request. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
    /// Decode our own schema ids with the specialised decoders. `false` sends every message
    /// through apache-avro's schema resolution instead: slower, meant for cross-checking the two
    /// paths. Default true.
    pub fast_path: bool,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            max_future_skew_us: 300_000_000,
            max_string_bytes: 65_536,
            max_map_entries: 64,
            registry_url: None,
            registry_timeout: Duration::from_secs(5),
            fast_path: true,
        }
    }
}

impl DecodeConfig {
    /// Checks the settings, so the binary can refuse a bad configuration at start-up rather than
    /// fail on every message.
    pub fn check(&self) -> Result<(), String> {
        if self.max_future_skew_us < 0 {
            return Err(format!(
                "max_future_skew_us is {}, must be >= 0",
                self.max_future_skew_us
            ));
        }
        if let Some(url) = &self.registry_url
            && !url.starts_with("http://")
        {
            return Err(format!(
                "registry_url {url:?} must start with http:// (TLS is not supported)"
            ));
        }
        Ok(())
    }
}

/// Which record a caller wants; decides the reader schema on the resolution path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Input,
    Alert,
    DeadLetter,
}

impl Target {
    pub fn expected(self) -> &'static str {
        match self {
            Target::Input => "an input event (QueryEvent, RequestEvent or ResourceEvent)",
            Target::Alert => "AlertEvent",
            Target::DeadLetter => "DeadLetter",
        }
    }
}

/// The record kinds perfstream reads, one per reader schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Record {
    Query,
    Request,
    Resource,
    Alert,
    DeadLetter,
}

impl Record {
    pub const ALL: [Record; 5] = [
        Record::Query,
        Record::Request,
        Record::Resource,
        Record::Alert,
        Record::DeadLetter,
    ];

    /// The record name in the schemas (namespace aside).
    pub fn name(self) -> &'static str {
        match self {
            Record::Query => "QueryEvent",
            Record::Request => "RequestEvent",
            Record::Resource => "ResourceEvent",
            Record::Alert => "AlertEvent",
            Record::DeadLetter => "DeadLetter",
        }
    }

    pub fn from_name(name: &str) -> Option<Record> {
        Record::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn fits(self, target: Target) -> bool {
        match target {
            Target::Input => matches!(self, Record::Query | Record::Request | Record::Resource),
            Target::Alert => self == Record::Alert,
            Target::DeadLetter => self == Record::DeadLetter,
        }
    }
}

/// A binary layout of one of our records. Only the query and request events have a version 2:
/// version 1 plus an optional `trace_id` appended (issue 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Version {
    V1,
    V2,
}

/// Our own schema versions: the static id map of `schemas/ids.json`, each with the record it is
/// and the layout the specialised decoder reads.
pub(crate) const OWN: [(SchemaId, Record, Version); 7] = [
    (SchemaId::QUERY_V1, Record::Query, Version::V1),
    (SchemaId::REQUEST_V1, Record::Request, Version::V1),
    (SchemaId::RESOURCE_V1, Record::Resource, Version::V1),
    (SchemaId::ALERT_V1, Record::Alert, Version::V1),
    (SchemaId::DEAD_LETTER_V1, Record::DeadLetter, Version::V1),
    (SchemaId::QUERY_V2, Record::Query, Version::V2),
    (SchemaId::REQUEST_V2, Record::Request, Version::V2),
];

/// The record and layout of one of our own schema ids.
pub(crate) fn own(id: u32) -> Option<(Record, Version)> {
    OWN.into_iter()
        .find(|(own, ..)| own.0 == id)
        .map(|(_, r, v)| (r, v))
}

/// A decoded record of any kind, before it is narrowed to what the caller asked for.
pub(crate) enum Decoded {
    Event(Event),
    Alert(AlertEvent),
    DeadLetter(DeadLetter),
}

impl Decoded {
    /// The error for a record that does not fit the target. `decode_any` checks the target, so
    /// this is a safety net that keeps the decoder free of panics.
    fn mismatch(&self, payload: &[u8], target: Target) -> DecodeError {
        let found = match self {
            Decoded::Event(e) => match e {
                Event::Query(_) => Record::Query,
                Event::Request(_) => Record::Request,
                Event::Resource(_) => Record::Resource,
            },
            Decoded::Alert(_) => Record::Alert,
            Decoded::DeadLetter(_) => Record::DeadLetter,
        };
        DecodeError::WrongSchema {
            id: split_header(payload).map(|(id, _)| id).unwrap_or_default(),
            found: found.name().to_owned(),
            expected: target.expected(),
        }
    }
}

/// The limits the body decoders need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_string: usize,
    pub max_map: usize,
}

/// Splits the Confluent header off a message: returns the schema id and the Avro body. A wrong
/// first byte is reported as `BadMagic` even when the message is also too short.
pub fn split_header(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let Some(&magic) = payload.first() else {
        return Err(DecodeError::Empty);
    };
    if magic != MAGIC {
        return Err(DecodeError::BadMagic { found: magic });
    }
    match payload.split_first_chunk::<5>() {
        Some((head, body)) => Ok((
            u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
            body,
        )),
        None => Err(DecodeError::ShortHeader { len: payload.len() }),
    }
}

/// Decodes Confluent-framed messages into perfstream's types. Cheap to share between threads
/// (`&self` everywhere); the registry cache is internally locked.
///
/// Blocking: the first message with a registry schema id waits for one HTTP request (at most
/// `registry_timeout`); every later one with that id is served from the cache. Our own ids never
/// touch the network.
pub struct Decoder {
    config: DecodeConfig,
    limits: Limits,
    resolver: Resolver,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecodeConfig::default())
    }
}

impl Decoder {
    /// Builds a decoder; never fails (a bad `registry_url` shows up as `RegistryUnavailable` on
    /// the first registry id; call [`DecodeConfig::check`] at start-up to refuse it early).
    pub fn new(config: DecodeConfig) -> Self {
        let registry = config
            .registry_url
            .as_deref()
            .map(|url| Registry::new(url, config.registry_timeout));
        let limits = Limits {
            max_string: config.max_string_bytes,
            max_map: config.max_map_entries,
        };
        Decoder {
            resolver: Resolver::new(registry, limits, config.fast_path),
            limits,
            config,
        }
    }

    pub fn config(&self) -> &DecodeConfig {
        &self.config
    }

    /// Decodes and validates an input event (query, request or resource). `kafka_timestamp_us`
    /// is the message's Kafka timestamp; when given, the event time may be at most
    /// `max_future_skew_us` ahead of it. Pass `None` for a message without a timestamp (not
    /// Kafka's `-1`).
    pub fn decode(
        &self,
        payload: &[u8],
        kafka_timestamp_us: Option<i64>,
    ) -> Result<Event, DecodeError> {
        match self.decode_any(payload, Target::Input)? {
            Decoded::Event(e) => {
                validate::event(&e, kafka_timestamp_us, self.config.max_future_skew_us)?;
                Ok(e)
            }
            other => Err(other.mismatch(payload, Target::Input)),
        }
    }

    /// Decodes and validates an alert event (topic `perf.alerts`).
    pub fn decode_alert(&self, payload: &[u8]) -> Result<AlertEvent, DecodeError> {
        match self.decode_any(payload, Target::Alert)? {
            Decoded::Alert(a) => {
                validate::alert(&a)?;
                Ok(a)
            }
            other => Err(other.mismatch(payload, Target::Alert)),
        }
    }

    /// Decodes a dead-letter envelope (topics `perf.dlq`, `perf.late`).
    pub fn decode_dead_letter(&self, payload: &[u8]) -> Result<DeadLetter, DecodeError> {
        match self.decode_any(payload, Target::DeadLetter)? {
            Decoded::DeadLetter(d) => Ok(d),
            other => Err(other.mismatch(payload, Target::DeadLetter)),
        }
    }

    fn decode_any(&self, payload: &[u8], target: Target) -> Result<Decoded, DecodeError> {
        let (id, body) = split_header(payload)?;
        if self.config.fast_path
            && let Some((record, version)) = own(id)
        {
            if !record.fits(target) {
                return Err(DecodeError::WrongSchema {
                    id,
                    found: record.name().to_owned(),
                    expected: target.expected(),
                });
            }
            return decode_body(record, version, body, &self.limits);
        }
        self.resolver.decode(id, body, target)
    }
}

/// A decoder with the default configuration (no registry), shared by the free functions below.
fn default_decoder() -> &'static Decoder {
    static D: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
    D.get_or_init(Decoder::default)
}

/// Decodes an alert event written with perfstream's own schema (default limits, no registry).
pub fn decode_alert(payload: &[u8]) -> Result<AlertEvent, DecodeError> {
    default_decoder().decode_alert(payload)
}

/// Decodes a dead-letter envelope written with perfstream's own schema (default limits, no
/// registry).
pub fn decode_dead_letter(payload: &[u8]) -> Result<DeadLetter, DecodeError> {
    default_decoder().decode_dead_letter(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
        let c: DecodeConfig = serde_json::from_str(
            r#"{"max_future_skew_us": 1000, "registry_url": "http://r:8081", "registry_timeout": "2s"}"#,
        )
        .expect("valid config");
        assert_eq!(
            c,
            DecodeConfig {
                max_future_skew_us: 1000,
                registry_url: Some("http://r:8081".into()),
                registry_timeout: Duration::from_secs(2),
                ..DecodeConfig::default()
            }
        );
        assert!(serde_json::from_str::<DecodeConfig>(r#"{"max_skew": 1}"#).is_err());
    }

    #[test]
    fn header_split() {
        assert_eq!(split_header(&[0, 0, 0, 1, 0, 9]), Ok((256, &[9u8][..])));
        assert_eq!(split_header(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
        assert_eq!(split_header(&[5]), Err(DecodeError::BadMagic { found: 5 }));
        assert_eq!(
            split_header(&[0, 1]),
            Err(DecodeError::ShortHeader { len: 2 })
        );
    }
}
