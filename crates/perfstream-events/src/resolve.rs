//! The resolution path: any writer schema, read through apache-avro's schema resolution against
//! our reader schema (the current `schemas/*.avsc`), then converted to our types (`convert.rs`).
//!
//! Writer schemas come from the static id map (ids 1..=7, when the fast path is off) or from the
//! schema registry. Each is checked once for compatibility with the reader schema of its record
//! and cached with a ready `GenericDatumReader`. The schemas are leaked to get the `'static`
//! lifetime that reader needs: one per schema id ever seen, so the leak is bounded by the number
//! of schemas in the registry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use crate::convert;
use crate::cursor::Cursor;
use crate::decode::{Decoded, Limits, OWN, Record, Target, Version};
use crate::error::DecodeError;
use crate::fast::decode_body;
use crate::registry::{Registry, RegistryError};
use crate::scan::scan;
use crate::schema::schemas;

/// At most this many failed ids are remembered, so a stream of random ids cannot grow the cache
/// without bound (and known-bad ids do not hit the registry on every message).
const MAX_CACHED_FAILURES: usize = 4096;

/// A writer schema, ready to decode with.
pub(crate) struct Writer {
    pub record: Record,
    /// The version of our own schema of `record` with the same Parsing Canonical Form (the same
    /// binary layout) as the writer schema, if any: a registry id under which a producer
    /// registered one of our exact schemas. Such bodies take the specialised decoder.
    pub same_as_own: Option<Version>,
    schema: &'static Schema,
    names: ResolvedSchema<'static>,
    reader: GenericDatumReader<'static>,
}

/// The reader schema (our current version) of a record.
pub(crate) fn reader_schema(record: Record) -> &'static Schema {
    let s = schemas();
    match record {
        Record::Query => &s.query,
        Record::Request => &s.request,
        Record::Resource => &s.resource,
        Record::Alert => &s.alert,
        Record::DeadLetter => &s.dead_letter,
    }
}

/// Our own schema of a record in one version (the reader schema is the current one).
pub(crate) fn own_schema(record: Record, version: Version) -> &'static Schema {
    let s = schemas();
    match (record, version) {
        (Record::Query, Version::V1) => &s.query_v1,
        (Record::Request, Version::V1) => &s.request_v1,
        _ => reader_schema(record),
    }
}

/// Which of our records a writer schema is, checked to be readable as our reader schema of that
/// record. Runs before the schema is leaked, so a rejected schema costs nothing lasting.
fn check(id: u32, schema: &Schema) -> Result<Record, DecodeError> {
    let Schema::Record(r) = schema else {
        return Err(DecodeError::WrongSchema {
            id,
            found: format!("{:?}", apache_avro::schema::SchemaKind::from(schema)),
            expected: "a record",
        });
    };
    let record = Record::from_name(r.name.name())
        .or_else(|| {
            r.aliases
                .iter()
                .flatten()
                .find_map(|a| Record::from_name(a.name()))
        })
        .ok_or_else(|| DecodeError::WrongSchema {
            id,
            found: r.name.to_string(),
            expected: "one of perfstream's records",
        })?;
    let incompatible = |detail: String| DecodeError::IncompatibleSchema {
        id,
        reader: record.name(),
        detail,
    };
    SchemaCompatibility::can_read(schema, reader_schema(record)).map_err(|e| {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        incompatible(detail)
    })?;
    ResolvedSchema::try_from(schema).map_err(|e| incompatible(e.to_string()))?;
    Ok(record)
}

impl Writer {
    /// Prepares a checked writer schema of our `record`.
    fn new(id: u32, record: Record, schema: &'static Schema) -> Result<Writer, DecodeError> {
        let incompatible = |detail: String| DecodeError::IncompatibleSchema {
            id,
            reader: record.name(),
            detail,
        };
        let names = ResolvedSchema::try_from(schema).map_err(|e| incompatible(e.to_string()))?;
        let reader = GenericDatumReader::builder(schema)
            .reader_schema(reader_schema(record))
            .build()
            .map_err(|e| incompatible(e.to_string()))?;
        let form = schema.canonical_form();
        let same_as_own = OWN
            .into_iter()
            .find(|&(_, r, v)| r == record && own_schema(r, v).canonical_form() == form)
            .map(|(.., v)| v);
        Ok(Writer {
            record,
            same_as_own,
            schema,
            names,
            reader,
        })
    }
}

/// Finds writer schemas by id and decodes bodies written with them.
pub(crate) struct Resolver {
    registry: Option<Registry>,
    limits: Limits,
    /// `DecodeConfig::fast_path`: registry schemas identical to ours take the specialised decoder.
    fast_path: bool,
    /// Our own schema versions, by id (used when the fast path is off).
    own: HashMap<u32, Arc<Writer>>,
    /// Registry schemas by id; permanent failures too (bounded, see `MAX_CACHED_FAILURES`).
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    found: HashMap<u32, Arc<Writer>>,
    failed: HashMap<u32, DecodeError>,
}

impl Resolver {
    pub fn new(registry: Option<Registry>, limits: Limits, fast_path: bool) -> Self {
        // Our own schema versions read as the current ones (tested), so none is dropped here.
        let own = OWN
            .into_iter()
            .filter_map(|(id, record, version)| {
                let w = Writer::new(id.0, record, own_schema(record, version)).ok()?;
                Some((id.0, Arc::new(w)))
            })
            .collect();
        Resolver {
            registry,
            limits,
            fast_path,
            own,
            cache: RwLock::new(Cache::default()),
        }
    }

    /// The writer schema of an id: one of ours, or from the registry (cached).
    pub fn writer(&self, id: u32) -> Result<Arc<Writer>, DecodeError> {
        if let Some(w) = self.own.get(&id) {
            return Ok(w.clone());
        }
        let Some(registry) = &self.registry else {
            return Err(DecodeError::UnknownSchema { id });
        };
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = cache.found.get(&id) {
                return Ok(w.clone());
            }
            if let Some(e) = cache.failed.get(&id) {
                return Err(e.clone());
            }
        }
        // Fetched without holding the lock: two threads may fetch the same id once each.
        let result = fetch(registry, id);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(w) => {
                let w = cache.found.entry(id).or_insert_with(|| Arc::new(w)).clone();
                tracing::info!(
                    schema_id = id,
                    record = w.record.name(),
                    "Loaded writer schema from the registry."
                );
                Ok(w)
            }
            Err(e) => {
                if !e.is_retriable() && cache.failed.len() < MAX_CACHED_FAILURES {
                    cache.failed.insert(id, e.clone());
                }
                Err(e)
            }
        }
    }

    /// Decodes a body written with schema `id` into the record `target` asks for.
    pub fn decode(&self, id: u32, body: &[u8], target: Target) -> Result<Decoded, DecodeError> {
        let w = self.writer(id)?;
        if !w.record.fits(target) {
            return Err(DecodeError::WrongSchema {
                id,
                found: w.record.name().to_owned(),
                expected: target.expected(),
            });
        }
        if self.fast_path
            && let Some(version) = w.same_as_own
        {
            return decode_body(w.record, version, body, &self.limits);
        }
        let mut c = Cursor::new(body);
        scan(w.schema, w.names.get_names(), &mut c, &self.limits, 0)?;
        if c.remaining() > 0 {
            return Err(DecodeError::TrailingBytes {
                record: w.record.name(),
                count: c.remaining(),
            });
        }
        let value = w
            .reader
            .read_value(&mut &body[..])
            .map_err(|e| DecodeError::Resolution {
                id,
                detail: e.to_string(),
            })?;
        convert::record(w.record, value).map_err(|detail| DecodeError::Resolution { id, detail })
    }
}

fn fetch(registry: &Registry, id: u32) -> Result<Writer, DecodeError> {
    let text = registry.fetch(id).map_err(|e| match e {
        RegistryError::NotFound { id } => DecodeError::UnknownSchema { id },
        RegistryError::NotAvro { id, schema_type } => DecodeError::WrongSchema {
            id,
            found: schema_type,
            expected: "an Avro schema",
        },
        e @ (RegistryError::Unavailable { .. } | RegistryError::BadResponse { .. }) => {
            DecodeError::RegistryUnavailable {
                id,
                detail: e.to_string(),
            }
        }
    })?;
    let schema = Schema::parse_str(&text).map_err(|e| DecodeError::IncompatibleSchema {
        id,
        reader: "any perfstream record",
        detail: format!("the registry's schema does not parse: {e}"),
    })?;
    let record = check(id, &schema)?;
    let schema: &'static Schema = Box::leak(Box::new(schema));
    Writer::new(id, record, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_own_schema_reads_as_itself() {
        let r = Resolver::new(
            None,
            Limits {
                max_string: 1024,
                max_map: 64,
            },
            false,
        );
        assert_eq!(r.own.len(), OWN.len());
        for (id, record, version) in OWN {
            let w = r.writer(id.0).expect("own schema");
            assert_eq!(w.record, record);
            assert_eq!(w.same_as_own, Some(version));
        }
    }

    fn writer(text: &str) -> Writer {
        let schema = Schema::parse_str(text).expect("parses");
        let record = check(900, &schema).expect("compatible");
        Writer::new(900, record, Box::leak(Box::new(schema))).expect("builds")
    }

    #[test]
    fn registry_copies_of_our_schemas_are_recognised() {
        // Docs and defaults differ, the binary layout does not: same Parsing Canonical Form.
        let copy = crate::schema::QUERY_AVSC.replace("Stable hash", "A hash");
        assert_eq!(writer(&copy).same_as_own, Some(Version::V2));
        let copy = crate::schema::QUERY_V1_AVSC.replace("Stable hash", "A hash");
        assert_eq!(writer(&copy).same_as_own, Some(Version::V1));
        // One field less: a different layout.
        let mut v: serde_json::Value = serde_json::from_str(crate::schema::QUERY_AVSC).unwrap();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "tenant_id");
        assert_eq!(writer(&v.to_string()).same_as_own, None);
    }

    #[test]
    fn decoder_is_shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Decoder>();
    }
}
