//! perfstream's own schemas, embedded from `schemas/`, and the static schema id map.

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
}

pub const QUERY_AVSC: &str = include_str!("../../../schemas/query_event.avsc");
pub const REQUEST_AVSC: &str = include_str!("../../../schemas/request_event.avsc");
pub const RESOURCE_AVSC: &str = include_str!("../../../schemas/resource_event.avsc");
pub const ALERT_AVSC: &str = include_str!("../../../schemas/alert_event.avsc");
pub const DEAD_LETTER_AVSC: &str = include_str!("../../../schemas/dead_letter.avsc");
pub const IDS_JSON: &str = include_str!("../../../schemas/ids.json");

/// The static id map: (id, schema text) of every schema version perfstream ships.
pub const STATIC_SCHEMAS: [(SchemaId, &str); 5] = [
    (SchemaId::QUERY_V1, QUERY_AVSC),
    (SchemaId::REQUEST_V1, REQUEST_AVSC),
    (SchemaId::RESOURCE_V1, RESOURCE_AVSC),
    (SchemaId::ALERT_V1, ALERT_AVSC),
    (SchemaId::DEAD_LETTER_V1, DEAD_LETTER_AVSC),
];

/// Parsed reader schemas (the current versions), parsed once.
pub struct Schemas {
    pub query: Schema,
    pub request: Schema,
    pub resource: Schema,
    pub alert: Schema,
    pub dead_letter: Schema,
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
        }
    })
}
