//! perfstream's own schemas, embedded from `schemas/`, and the static schema id map.
//!
//! A published id never changes its schema: a new version of a record gets a new id, and every
//! older id stays readable (issue 14). Versions 2 of the query and request events (ids 6, 7)
//! append an optional `trace_id`; version 1 (ids 1, 2) decodes to the same types with none.

use std::sync::OnceLock;

use apache_avro::Schema;

/// A Confluent schema id (the 4 bytes after the magic byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(pub u32);

impl SchemaId {
    pub const QUERY_V1: SchemaId = SchemaId(1);
    pub const REQUEST_V1: SchemaId = SchemaId(2);
    pub const RESOURCE_V1: SchemaId = SchemaId(3);
    pub const ALERT_V1: SchemaId = SchemaId(4);
    pub const DEAD_LETTER_V1: SchemaId = SchemaId(5);
    /// `QueryEvent` version 2: version 1 plus `trace_id`.
    pub const QUERY_V2: SchemaId = SchemaId(6);
    /// `RequestEvent` version 2: version 1 plus `trace_id`.
    pub const REQUEST_V2: SchemaId = SchemaId(7);
}

/// `QueryEvent` version 1 (id 1), frozen.
pub const QUERY_V1_AVSC: &str = include_str!("../../../schemas/query_event.avsc");
/// `RequestEvent` version 1 (id 2), frozen.
pub const REQUEST_V1_AVSC: &str = include_str!("../../../schemas/request_event.avsc");
/// `QueryEvent`, current version (2, id 6): the reader schema of the resolution path.
pub const QUERY_AVSC: &str = include_str!("../../../schemas/query_event_v2.avsc");
/// `RequestEvent`, current version (2, id 7): the reader schema of the resolution path.
pub const REQUEST_AVSC: &str = include_str!("../../../schemas/request_event_v2.avsc");
pub const RESOURCE_AVSC: &str = include_str!("../../../schemas/resource_event.avsc");
pub const ALERT_AVSC: &str = include_str!("../../../schemas/alert_event.avsc");
pub const DEAD_LETTER_AVSC: &str = include_str!("../../../schemas/dead_letter.avsc");
pub const IDS_JSON: &str = include_str!("../../../schemas/ids.json");

/// The static id map: (id, schema text) of every schema version perfstream ships.
pub const STATIC_SCHEMAS: [(SchemaId, &str); 7] = [
    (SchemaId::QUERY_V1, QUERY_V1_AVSC),
    (SchemaId::REQUEST_V1, REQUEST_V1_AVSC),
    (SchemaId::RESOURCE_V1, RESOURCE_AVSC),
    (SchemaId::ALERT_V1, ALERT_AVSC),
    (SchemaId::DEAD_LETTER_V1, DEAD_LETTER_AVSC),
    (SchemaId::QUERY_V2, QUERY_AVSC),
    (SchemaId::REQUEST_V2, REQUEST_AVSC),
];

/// Parsed schemas, parsed once: the reader schemas (current versions) and the older versions
/// still accepted as writer schemas.
pub struct Schemas {
    pub query: Schema,
    pub request: Schema,
    pub resource: Schema,
    pub alert: Schema,
    pub dead_letter: Schema,
    pub query_v1: Schema,
    pub request_v1: Schema,
}

pub fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        let p = |s: &str| Schema::parse_str(s).expect("embedded schema parses (tested)");
        Schemas {
            query: p(QUERY_AVSC),
            request: p(REQUEST_AVSC),
            resource: p(RESOURCE_AVSC),
            alert: p(ALERT_AVSC),
            dead_letter: p(DEAD_LETTER_AVSC),
            query_v1: p(QUERY_V1_AVSC),
            request_v1: p(REQUEST_V1_AVSC),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_json_lists_the_static_map() {
        let ids: serde_json::Value = serde_json::from_str(IDS_JSON).expect("ids.json parses");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/");
        let mut listed = 0;
        for (id, text) in STATIC_SCHEMAS {
            let file = ids[id.0.to_string()]
                .as_str()
                .expect("id listed in ids.json");
            let on_disk = std::fs::read_to_string(format!("{dir}{file}")).expect("file exists");
            assert_eq!(on_disk, text, "id {} is {file}", id.0);
            listed += 1;
        }
        let entries = ids
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('_'));
        assert_eq!(entries.count(), listed);
    }

    #[test]
    fn version_2_is_version_1_plus_an_optional_trace_id() {
        // The evolution is compatible both ways: a V2 reader reads V1 (trace_id defaults to
        // null) and a V1 reader reads V2 (trace_id is skipped).
        use apache_avro::schema_compatibility::SchemaCompatibility;
        let s = schemas();
        for (v1, v2) in [(&s.query_v1, &s.query), (&s.request_v1, &s.request)] {
            SchemaCompatibility::can_read(v1, v2).expect("V2 reads V1");
            SchemaCompatibility::can_read(v2, v1).expect("V1 reads V2");
            let (Schema::Record(a), Schema::Record(b)) = (v1, v2) else {
                panic!("records");
            };
            assert_eq!(a.name, b.name);
            assert_eq!(b.fields.len(), a.fields.len() + 1);
            for (x, y) in a.fields.iter().zip(&b.fields) {
                assert_eq!((&x.name, &x.schema), (&y.name, &y.schema));
            }
            let last = b.fields.last().unwrap();
            assert_eq!(last.name, "trace_id");
            assert_eq!(last.default, Some(serde_json::Value::Null));
        }
    }
}
