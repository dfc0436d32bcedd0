//! Every way an input can be bad gives one exact error, on both decoding paths, with the
//! `kind()` that goes into `DeadLetter.error_kind` and a message naming the field.

mod common;

use std::borrow::Cow;

use common::*;
use perfstream_events::encode::{encode_alert, put_header};
use perfstream_events::*;

/// Zigzag varint, independent of the crate's encoder.
fn l(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

fn s(v: &str) -> Vec<u8> {
    let mut out = l(v.len() as i64);
    out.extend_from_slice(v.as_bytes());
    out
}

fn frame(id: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, SchemaId(id));
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A valid query body, field by field, for tests to replace one part of.
fn query_parts() -> Vec<Vec<u8>> {
    vec![
        s("svc"), // service
        s("i-1"), // instance
        s("h1"),  // query_hash
        l(0),     // query_type: select
        l(0),     // query_text: null
        l(1_000), // execution_time_us
        l(1),     // rows_affected
        l(0),     // tenant_id: null
        l(T0),    // executed_at_us
    ]
}

fn query_with(i: usize, part: Vec<u8>) -> Vec<u8> {
    let mut p = query_parts();
    p[i] = part;
    frame(1, &p)
}

/// Asserts the error, its kind and that the message names `needle`, on both paths.
fn check(bytes: &[u8], kafka_us: Option<i64>, want: DecodeError, kind: &str, needle: &str) {
    let (fast, slow) = both_paths();
    for (path, d) in [("fast", &fast), ("resolution", &slow)] {
        let got = d.decode(bytes, kafka_us);
        assert_eq!(got, Err(want.clone()), "{path} path");
    }
    assert_eq!(want.kind(), kind);
    let msg = want.to_string();
    assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
}

fn f(s: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(s)
}

#[test]
fn valid_hand_encoded_query_decodes() {
    let (fast, slow) = both_paths();
    let want = Event::Query(QueryEvent {
        service: "svc".into(),
        instance: "i-1".into(),
        query_hash: "h1".into(),
        query_type: QueryType::Select,
        query_text: None,
        execution_time_us: 1_000,
        rows_affected: 1,
        tenant_id: None,
        trace_id: None,
        executed_at_us: T0,
    });
    let bytes = frame(1, &query_parts());
    assert_eq!(fast.decode(&bytes, None), Ok(want.clone()));
    assert_eq!(slow.decode(&bytes, None), Ok(want));
}

#[test]
fn empty_buffer() {
    check(&[], None, DecodeError::Empty, "empty", "empty");
}

#[test]
fn short_buffer() {
    check(
        &[0, 0, 0],
        None,
        DecodeError::ShortHeader { len: 3 },
        "truncated",
        "3 bytes",
    );
}

#[test]
fn wrong_magic_byte() {
    check(
        b"{\"service\":1}",
        None,
        DecodeError::BadMagic { found: b'{' },
        "bad_magic",
        "0x7b",
    );
}

#[test]
fn unknown_schema_id_without_registry() {
    check(
        &frame(77, &query_parts()),
        None,
        DecodeError::UnknownSchema { id: 77 },
        "unknown_schema",
        "77",
    );
}

#[test]
fn alert_on_an_input_topic() {
    let mut bytes = Vec::new();
    encode_alert(&mut bytes, &alert());
    check(
        &bytes,
        None,
        DecodeError::WrongSchema {
            id: 4,
            found: "AlertEvent".into(),
            expected: "an input event (QueryEvent, RequestEvent or ResourceEvent)",
        },
        "wrong_schema",
        "AlertEvent",
    );
    // and the reverse
    let q = framed(&Event::Query(query()));
    assert_eq!(
        decode_alert(&q),
        Err(DecodeError::WrongSchema {
            id: 1,
            found: "QueryEvent".into(),
            expected: "AlertEvent"
        })
    );
}

#[test]
fn truncated_body() {
    let full = frame(1, &query_parts());
    // header + "svc" + "i-1" length prefix and one byte of it
    let cut = &full[..5 + 4 + 2];
    check(
        cut,
        None,
        DecodeError::Truncated {
            field: f("instance"),
            needed: 3,
            remaining: 1,
        },
        "truncated",
        "instance",
    );
    // cut inside the last varint's continuation bytes
    let cut = &full[..full.len() - 1];
    check(
        cut,
        None,
        DecodeError::Truncated {
            field: f("executed_at_us"),
            needed: 1,
            remaining: 0,
        },
        "truncated",
        "executed_at_us",
    );
    // header only
    check(
        &full[..5],
        None,
        DecodeError::Truncated {
            field: f("service"),
            needed: 1,
            remaining: 0,
        },
        "truncated",
        "service",
    );
}

#[test]
fn trailing_bytes() {
    let mut bytes = frame(1, &query_parts());
    bytes.extend_from_slice(&[0, 0]);
    check(
        &bytes,
        None,
        DecodeError::TrailingBytes {
            record: "QueryEvent",
            count: 2,
        },
        "trailing_bytes",
        "2 trailing bytes",
    );
}

#[test]
fn malformed_varint() {
    check(
        &query_with(5, vec![0xff; 11]),
        None,
        DecodeError::BadVarint {
            field: f("execution_time_us"),
        },
        "malformed",
        "execution_time_us",
    );
}

#[test]
fn invalid_enum_index() {
    check(
        &query_with(3, l(7)),
        None,
        DecodeError::InvalidEnumIndex {
            field: f("query_type"),
            index: 7,
            symbols: 5,
        },
        "malformed",
        "query_type",
    );
    check(
        &query_with(3, l(-1)),
        None,
        DecodeError::InvalidEnumIndex {
            field: f("query_type"),
            index: -1,
            symbols: 5,
        },
        "malformed",
        "query_type",
    );
}

#[test]
fn invalid_union_branch() {
    check(
        &query_with(4, l(2)),
        None,
        DecodeError::InvalidUnionBranch {
            field: f("query_text"),
            index: 2,
            branches: 2,
        },
        "malformed",
        "query_text",
    );
}

#[test]
fn negative_string_length() {
    check(
        &query_with(0, l(-3)),
        None,
        DecodeError::NegativeLength {
            field: f("service"),
            len: -3,
        },
        "malformed",
        "service",
    );
}

#[test]
fn invalid_utf8() {
    let mut bad = l(2);
    bad.extend_from_slice(&[0xc3, 0x28]);
    check(
        &query_with(1, bad),
        None,
        DecodeError::InvalidUtf8 {
            field: f("instance"),
        },
        "malformed",
        "instance",
    );
}

#[test]
fn hostile_string_length_is_rejected_before_allocating() {
    // a length prefix of 2^60 followed by nothing
    check(
        &query_with(0, l(1 << 60)),
        None,
        DecodeError::StringTooLong {
            field: f("service"),
            len: 1 << 60,
            max: 65_536,
        },
        "oversized",
        "service",
    );
    // within the configured limit but longer than the message
    check(
        &query_with(2, l(60_000)),
        None,
        DecodeError::Truncated {
            field: f("query_hash"),
            needed: 60_000,
            remaining: 1 + 1 + 2 + 1 + 1 + 8,
        },
        "truncated",
        "query_hash",
    );
}

#[test]
fn oversized_strings_per_field() {
    let long = "x".repeat(257);
    check(
        &query_with(0, s(&long)),
        None,
        DecodeError::StringTooLong {
            field: f("service"),
            len: 257,
            max: 256,
        },
        "oversized",
        "service",
    );
    check(
        &query_with(2, s(&"h".repeat(129))),
        None,
        DecodeError::StringTooLong {
            field: f("query_hash"),
            len: 129,
            max: 128,
        },
        "oversized",
        "query_hash",
    );
    let mut text = l(1);
    text.extend(s(&"q".repeat(8193)));
    check(
        &query_with(4, text),
        None,
        DecodeError::StringTooLong {
            field: f("query_text"),
            len: 8193,
            max: 8192,
        },
        "oversized",
        "query_text",
    );
    let mut r = request();
    r.method = "M".repeat(33);
    check(
        &framed(&Event::Request(r)),
        None,
        DecodeError::StringTooLong {
            field: f("method"),
            len: 33,
            max: 32,
        },
        "oversized",
        "method",
    );
    // the configured global limit applies before the field limits
    let small = Decoder::new(DecodeConfig {
        max_string_bytes: 8,
        ..DecodeConfig::default()
    });
    assert_eq!(
        small.decode(&framed(&Event::Query(query())), None),
        Err(DecodeError::StringTooLong {
            field: f("service"),
            len: 12,
            max: 8
        })
    );
}

#[test]
fn empty_names() {
    check(
        &query_with(2, s("")),
        None,
        DecodeError::EmptyString {
            field: f("query_hash"),
        },
        "invalid_field",
        "query_hash",
    );
}

#[test]
fn negative_duration_and_count() {
    check(
        &query_with(5, l(-1)),
        None,
        DecodeError::Negative {
            field: f("execution_time_us"),
            value: -1,
        },
        "invalid_field",
        "execution_time_us",
    );
    check(
        &query_with(6, l(-5)),
        None,
        DecodeError::Negative {
            field: f("rows_affected"),
            value: -5,
        },
        "invalid_field",
        "rows_affected",
    );
    let mut r = request();
    r.response_time_us = -2;
    check(
        &framed(&Event::Request(r)),
        None,
        DecodeError::Negative {
            field: f("response_time_us"),
            value: -2,
        },
        "invalid_field",
        "response_time_us",
    );
    let mut r = resource();
    r.pool_wait_us = -7;
    check(
        &framed(&Event::Resource(r)),
        None,
        DecodeError::Negative {
            field: f("pool_wait_us"),
            value: -7,
        },
        "invalid_field",
        "pool_wait_us",
    );
    let mut r = resource();
    r.caches.as_mut().unwrap().get_mut("users").unwrap().misses = -1;
    check(
        &framed(&Event::Resource(r)),
        None,
        DecodeError::Negative {
            field: f("caches.misses"),
            value: -1,
        },
        "invalid_field",
        "caches.misses",
    );
}

#[test]
fn negative_event_time() {
    check(
        &query_with(8, l(-1)),
        None,
        DecodeError::Negative {
            field: f("executed_at_us"),
            value: -1,
        },
        "invalid_field",
        "executed_at_us",
    );
}

#[test]
fn nan_and_infinite_figures() {
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut r = resource();
        r.cpu_utilization_ratio = v;
        let (fast, slow) = both_paths();
        for d in [&fast, &slow] {
            let err = d
                .decode(&framed(&Event::Resource(r.clone())), None)
                .unwrap_err();
            assert!(
                matches!(&err, DecodeError::NotFinite { field, value }
                    if field == "cpu_utilization_ratio" && value.to_bits() == v.to_bits()),
                "{err:?}"
            );
            assert_eq!(err.kind(), "invalid_field");
            assert!(err.to_string().contains("cpu_utilization_ratio"));
        }
    }
    let mut r = resource();
    r.cpu_utilization_ratio = -0.5;
    check(
        &framed(&Event::Resource(r)),
        None,
        DecodeError::NegativeFigure {
            field: f("cpu_utilization_ratio"),
            value: -0.5,
        },
        "invalid_field",
        "cpu_utilization_ratio",
    );
    let mut a = alert();
    a.threshold = f64::NAN;
    let mut bytes = Vec::new();
    encode_alert(&mut bytes, &a);
    let err = decode_alert(&bytes).unwrap_err();
    assert!(matches!(&err, DecodeError::NotFinite { field, .. } if field == "threshold"));
}

#[test]
fn status_code_out_of_range() {
    for code in [99, 600, -1] {
        let mut r = request();
        r.status_code = code;
        check(
            &framed(&Event::Request(r)),
            None,
            DecodeError::StatusOutOfRange { value: code },
            "invalid_field",
            "status_code",
        );
    }
    // an int field holding more than 32 bits
    let mut bytes = Vec::new();
    put_header(&mut bytes, SchemaId::REQUEST_V1);
    for p in [s("svc"), s("i"), s("/x"), s("GET"), l(1 << 40)] {
        bytes.extend(p);
    }
    check(
        &bytes,
        None,
        DecodeError::IntOutOfRange {
            field: f("status_code"),
            value: 1 << 40,
        },
        "malformed",
        "status_code",
    );
}

#[test]
fn pool_max_and_memory_limit_must_be_positive() {
    let mut r = resource();
    r.pool_max = 0;
    check(
        &framed(&Event::Resource(r)),
        None,
        DecodeError::NotPositive {
            field: f("pool_max"),
            value: 0,
        },
        "invalid_field",
        "pool_max",
    );
    let mut r = resource();
    r.memory_limit_bytes = -1;
    check(
        &framed(&Event::Resource(r)),
        None,
        DecodeError::NotPositive {
            field: f("memory_limit_bytes"),
            value: -1,
        },
        "invalid_field",
        "memory_limit_bytes",
    );
    let mut r = resource();
    r.interval_us = 0;
    check(
        &framed(&Event::Resource(r)),
        None,
        DecodeError::NotPositive {
            field: f("interval_us"),
            value: 0,
        },
        "invalid_field",
        "interval_us",
    );
}

#[test]
fn timestamp_too_far_ahead_of_kafka_timestamp() {
    let bytes = framed(&Event::Query(query()));
    let kafka = T0 - 300_000_001;
    check(
        &bytes,
        Some(kafka),
        DecodeError::TooFarInFuture {
            field: f("executed_at_us"),
            event_us: T0,
            kafka_us: kafka,
            ahead_us: 300_000_001,
            max_skew_us: 300_000_000,
        },
        "too_far_in_future",
        "executed_at_us",
    );
    let (fast, slow) = both_paths();
    for d in [&fast, &slow] {
        // exactly at the limit, behind, or without a Kafka timestamp: accepted
        assert!(d.decode(&bytes, Some(T0 - 300_000_000)).is_ok());
        assert!(d.decode(&bytes, Some(T0 + 1)).is_ok());
        assert!(d.decode(&bytes, None).is_ok());
        assert!(d.decode(&bytes, Some(i64::MIN)).is_err());
    }
    // the skew is configurable
    let strict = Decoder::new(DecodeConfig {
        max_future_skew_us: 0,
        ..DecodeConfig::default()
    });
    assert_eq!(
        strict.decode(&bytes, Some(T0 - 1)).map_err(|e| e.kind()),
        Err("too_far_in_future")
    );
}

/// `caches` body with `entries` entries in one block.
fn resource_with_caches(block: Vec<u8>) -> Vec<u8> {
    let mut r = resource();
    r.caches = None;
    let mut bytes = framed(&Event::Resource(r));
    bytes.pop(); // the null branch of caches
    bytes.extend(l(1));
    bytes.extend(block);
    bytes
}

#[test]
fn over_long_maps() {
    let mut block = l(65);
    for i in 0..65 {
        block.extend(s(&format!("c{i}")));
        block.extend(l(1));
        block.extend(l(1));
    }
    block.extend(l(0));
    check(
        &resource_with_caches(block),
        None,
        DecodeError::MapTooLong {
            field: f("caches"),
            count: 65,
            max: 64,
        },
        "oversized",
        "caches",
    );
    // a hostile count is rejected before any entry is read
    check(
        &resource_with_caches(l(1 << 60)),
        None,
        DecodeError::MapTooLong {
            field: f("caches"),
            count: 1 << 60,
            max: 64,
        },
        "oversized",
        "caches",
    );
    // the limit counts entries over all blocks
    let mut block = Vec::new();
    for b in 0..2 {
        block.extend(l(40));
        for i in 0..40 {
            block.extend(s(&format!("c{b}-{i}")));
            block.extend(l(1));
            block.extend(l(1));
        }
    }
    block.extend(l(0));
    check(
        &resource_with_caches(block),
        None,
        DecodeError::MapTooLong {
            field: f("caches"),
            count: 80,
            max: 64,
        },
        "oversized",
        "caches",
    );
}

#[test]
fn map_blocks_with_negative_counts_decode() {
    // Block 1: count -2 with its byte size, block 2: count 1, then the end.
    let mut entries = Vec::new();
    for (name, h, m) in [("a", 1, 2), ("b", 3, 4)] {
        entries.extend(s(name));
        entries.extend(l(h));
        entries.extend(l(m));
    }
    let mut block = l(-2);
    block.extend(l(entries.len() as i64));
    block.extend(entries);
    block.extend(l(1));
    block.extend(s("c"));
    block.extend(l(5));
    block.extend(l(6));
    block.extend(l(0));
    let bytes = resource_with_caches(block);
    let (fast, slow) = both_paths();
    let mut want = resource();
    want.caches = Some(
        [("a", 1, 2), ("b", 3, 4), ("c", 5, 6)]
            .into_iter()
            .map(|(n, hits, misses)| (n.to_string(), CacheCounters { hits, misses }))
            .collect(),
    );
    assert_eq!(fast.decode(&bytes, None), Ok(Event::Resource(want.clone())));
    assert_eq!(slow.decode(&bytes, None), Ok(Event::Resource(want)));
    // A negative block count whose size is negative is malformed.
    let mut block = l(-1);
    block.extend(l(-5));
    check(
        &resource_with_caches(block),
        None,
        DecodeError::NegativeLength {
            field: f("caches"),
            len: -5,
        },
        "malformed",
        "caches",
    );
}

#[test]
fn error_kinds_are_stable() {
    // DeadLetter.error_kind values are a contract with DLQ consumers.
    let kinds = [
        (DecodeError::Empty, "empty"),
        (DecodeError::BadMagic { found: 1 }, "bad_magic"),
        (DecodeError::UnknownSchema { id: 9 }, "unknown_schema"),
        (
            DecodeError::RegistryUnavailable {
                id: 9,
                detail: String::new(),
            },
            "registry_unavailable",
        ),
    ];
    for (e, k) in kinds {
        assert_eq!(e.kind(), k);
        assert_eq!(e.is_retriable(), k == "registry_unavailable");
    }
}
