//! Series keys as packed bytes: one allocation per series, and lookups by a key encoded into a
//! reused scratch buffer, so an event for an existing series allocates nothing.
//!
//! Layout: each string as a little-endian `u32` length and its UTF-8 bytes, the query type as
//! one byte (its Avro index). Keys are decoded back into [`QueryKey`] and friends only when a
//! window is emitted.

use perfstream_events::{QueryEvent, QueryType, RequestEvent, ResourceEvent};

use crate::rollup::{QueryKey, RequestKey, ResourceKey};

/// The stand-in for every key field but the service in an overflow series (queries also get
/// query type `other` and an empty tenant).
pub const OVERFLOW_KEY: &str = "__overflow__";

fn put(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Reads back what [`put`] wrote. Keys only ever come from this module, so a malformed one is
/// a bug, not bad input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn str(&mut self) -> &'a str {
        let (len, rest) = self.0.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).expect("keys are encoded from &str")
    }
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().expect("key has a type byte");
        self.0 = rest;
        *b
    }
}

pub fn encode_query(buf: &mut Vec<u8>, e: &QueryEvent, tenant_dimension: bool) {
    buf.clear();
    put(buf, &e.service);
    put(buf, &e.query_hash);
    buf.push(e.query_type.index() as u8);
    let tenant = if tenant_dimension {
        e.tenant_id.as_deref().unwrap_or("")
    } else {
        ""
    };
    put(buf, tenant);
}

pub fn encode_request(buf: &mut Vec<u8>, e: &RequestEvent) {
    buf.clear();
    put(buf, &e.service);
    put(buf, &e.endpoint);
    put(buf, &e.method);
}

pub fn encode_resource(buf: &mut Vec<u8>, e: &ResourceEvent) {
    buf.clear();
    put(buf, &e.service);
    put(buf, &e.instance);
}

/// A key type that can be decoded from its packed form and has an overflow stand-in.
pub trait PackedKey: Ord + Sized {
    fn decode(bytes: &[u8]) -> Self;
    fn encode_overflow(buf: &mut Vec<u8>, service: &str);
}

impl PackedKey for QueryKey {
    fn decode(bytes: &[u8]) -> Self {
        let mut r = Reader(bytes);
        let service = r.str().to_owned();
        let query_hash = r.str().to_owned();
        let query_type =
            QueryType::from_index(u32::from(r.byte())).expect("type byte is a QueryType index");
        QueryKey {
            service,
            query_hash,
            query_type,
            tenant_id: r.str().to_owned(),
        }
    }
    fn encode_overflow(buf: &mut Vec<u8>, service: &str) {
        buf.clear();
        put(buf, service);
        put(buf, OVERFLOW_KEY);
        buf.push(QueryType::Other.index() as u8);
        put(buf, "");
    }
}

impl PackedKey for RequestKey {
    fn decode(bytes: &[u8]) -> Self {
        let mut r = Reader(bytes);
        RequestKey {
            service: r.str().to_owned(),
            endpoint: r.str().to_owned(),
            method: r.str().to_owned(),
        }
    }
    fn encode_overflow(buf: &mut Vec<u8>, service: &str) {
        buf.clear();
        put(buf, service);
        put(buf, OVERFLOW_KEY);
        put(buf, OVERFLOW_KEY);
    }
}

impl PackedKey for ResourceKey {
    fn decode(bytes: &[u8]) -> Self {
        let mut r = Reader(bytes);
        ResourceKey {
            service: r.str().to_owned(),
            instance: r.str().to_owned(),
        }
    }
    fn encode_overflow(buf: &mut Vec<u8>, service: &str) {
        buf.clear();
        put(buf, service);
        put(buf, OVERFLOW_KEY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(service: &str, hash: &str, tenant: Option<&str>) -> QueryEvent {
        QueryEvent {
            service: service.into(),
            instance: "i".into(),
            query_hash: hash.into(),
            query_type: QueryType::Update,
            query_text: None,
            execution_time_us: 1,
            rows_affected: 0,
            tenant_id: tenant.map(Into::into),
            executed_at_us: 0,
        }
    }

    #[test]
    fn query_key_round_trips_and_tenant_is_never_null() {
        let mut buf = Vec::new();
        encode_query(&mut buf, &query("svc", "ab\u{0}c", Some("t1")), true);
        let k = QueryKey::decode(&buf);
        assert_eq!(
            k,
            QueryKey {
                service: "svc".into(),
                query_hash: "ab\u{0}c".into(),
                query_type: QueryType::Update,
                tenant_id: "t1".into()
            }
        );
        encode_query(&mut buf, &query("svc", "h", Some("t1")), false);
        assert_eq!(QueryKey::decode(&buf).tenant_id, "");
        encode_query(&mut buf, &query("svc", "h", None), true);
        assert_eq!(QueryKey::decode(&buf).tenant_id, "");
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_query(&mut a, &query("ab", "c", None), false);
        encode_query(&mut b, &query("a", "bc", None), false);
        assert_ne!(a, b);
    }

    #[test]
    fn overflow_keys() {
        let mut buf = Vec::new();
        QueryKey::encode_overflow(&mut buf, "svc");
        let k = QueryKey::decode(&buf);
        assert_eq!(
            (k.service.as_str(), k.query_hash.as_str()),
            ("svc", OVERFLOW_KEY)
        );
        RequestKey::encode_overflow(&mut buf, "svc");
        assert_eq!(RequestKey::decode(&buf).endpoint, OVERFLOW_KEY);
        ResourceKey::encode_overflow(&mut buf, "svc");
        assert_eq!(ResourceKey::decode(&buf).instance, OVERFLOW_KEY);
    }
}
