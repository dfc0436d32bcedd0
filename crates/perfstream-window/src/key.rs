//! Series keys as packed bytes: one allocation per series, and lookups by a key encoded into a
//! reused scratch buffer, so an event for an existing series allocates nothing.
//!
//! Layout: each string as its length (LEB128 varint, one byte below 128) and its UTF-8 bytes,
//! the query type as one byte (its Avro index). Keys up to [`INLINE_KEY`] bytes (a service name,
//! a 16-hex-digit query hash and no tenant take about 32) live inside the hash table slot, so a
//! lookup compares them without following a pointer. Keys are decoded back into [`QueryKey`]
//! and friends only when a window is emitted.

use perfstream_events::{QueryEvent, QueryType, RequestEvent, ResourceEvent};

use crate::rollup::{QueryKey, RequestKey, ResourceKey};

/// The stand-in for every key field but the service in an overflow series (queries also get
/// query type `other` and an empty tenant).
pub const OVERFLOW_KEY: &str = "__overflow__";

fn put(buf: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
    buf.extend_from_slice(s.as_bytes());
}

/// Longest key stored inline in the table slot.
pub const INLINE_KEY: usize = 38;

/// A packed key: inline when short, boxed otherwise. Hashes and compares as its bytes, so maps
/// keyed by it are looked up with a plain `&[u8]`.
#[derive(Clone)]
pub enum SmallKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl SmallKey {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            SmallKey::Inline { len, bytes } => &bytes[..*len as usize],
            SmallKey::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for SmallKey {
    fn from(s: &[u8]) -> Self {
        if s.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..s.len()].copy_from_slice(s);
            SmallKey::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            SmallKey::Heap(s.into())
        }
    }
}

impl std::borrow::Borrow<[u8]> for SmallKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::hash::Hash for SmallKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, which `Borrow<[u8]>` requires.
        self.as_slice().hash(state)
    }
}

impl PartialEq for SmallKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallKey {}

impl std::fmt::Debug for SmallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// Reads back what [`put`] wrote. Keys only ever come from this module, so a malformed one is
/// a bug, not bad input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn str(&mut self) -> &'a str {
        let (mut len, mut shift) = (0_usize, 0);
        loop {
            let b = self.byte();
            len |= usize::from(b & 0x7F) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).expect("keys are encoded from &str")
    }
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().expect("keys are complete");
        self.0 = rest;
        *b
    }
}

/// The service of a packed key (its first field, for every kind).
pub fn service_of(key: &[u8]) -> &str {
    Reader(key).str()
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
            trace_id: None,
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
    fn long_fields_use_multi_byte_lengths_and_heap_keys() {
        let mut buf = Vec::new();
        let long = "x".repeat(300);
        encode_query(&mut buf, &query(&long, "h", Some(&long)), true);
        let k = QueryKey::decode(&buf);
        assert_eq!((k.service.len(), k.tenant_id.len()), (300, 300));
        assert!(matches!(SmallKey::from(&buf[..]), SmallKey::Heap(_)));
        encode_query(
            &mut buf,
            &query("checkout-service", "0123456789abcdef", None),
            false,
        );
        assert!(buf.len() <= INLINE_KEY, "{}", buf.len());
        assert!(matches!(SmallKey::from(&buf[..]), SmallKey::Inline { .. }));
        assert_eq!(SmallKey::from(&buf[..]).as_slice(), &buf[..]);
    }

    #[test]
    fn small_key_hashes_like_its_bytes() {
        use std::hash::BuildHasher;
        let s = hashbrown::DefaultHashBuilder::default();
        for bytes in [&b"abc"[..], &[7; 100][..]] {
            assert_eq!(s.hash_one(SmallKey::from(bytes)), s.hash_one(bytes));
        }
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
