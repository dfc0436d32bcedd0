//! The fast path (specialised decoders) and the resolution path (apache-avro) decode identically:
//! the same events, and the same errors, for encoded random events and for mutations of them.

mod common;

use common::*;
use perfstream_events::encode::{
    encode_alert, encode_dead_letter, encode_query_v1, encode_query_v2, encode_request_v1,
    encode_request_v2,
};
use perfstream_events::*;
use proptest::prelude::*;

#[test]
fn samples_round_trip_on_both_paths() {
    let (fast, slow) = both_paths();
    for e in [
        Event::Query(query()),
        Event::Request(request()),
        Event::Resource(resource()),
    ] {
        let bytes = framed(&e);
        assert_eq!(fast.decode(&bytes, Some(T0)), Ok(e.clone()));
        assert_eq!(slow.decode(&bytes, Some(T0)), Ok(e));
    }
    let mut a = Vec::new();
    encode_alert(&mut a, &alert());
    assert_eq!(fast.decode_alert(&a), Ok(alert()));
    assert_eq!(slow.decode_alert(&a), Ok(alert()));
    assert_eq!(decode_alert(&a), Ok(alert()));
    let mut d = Vec::new();
    encode_dead_letter(&mut d, &dead_letter());
    assert_eq!(fast.decode_dead_letter(&d), Ok(dead_letter()));
    assert_eq!(slow.decode_dead_letter(&d), Ok(dead_letter()));
    assert_eq!(decode_dead_letter(&d), Ok(dead_letter()));
}

#[test]
fn encoder_output_is_what_apache_avro_reads() {
    // An independent check of the hand-written encoder: apache-avro's own reader, with no
    // resolution, gives the same record as our decoders.
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(
        &schema::schemas().resource,
        &mut &framed(&Event::Resource(resource()))[5..],
        None,
    )
    .expect("apache-avro reads our encoding");
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("not a record: {value:?}");
    };
    assert_eq!(fields.len(), 18);
    assert_eq!(
        fields[0].1,
        apache_avro::types::Value::String("campaign-api".into())
    );
    assert_eq!(fields[4].1, apache_avro::types::Value::Double(0.42));
}

/// `e` framed in version 2 (ids 6, 7) whatever its trace id; `None` for a resource event.
fn framed_v2(e: &Event) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match e {
        Event::Query(q) => encode_query_v2(&mut out, q),
        Event::Request(r) => encode_request_v2(&mut out, r),
        Event::Resource(_) => return None,
    }
    Some(out)
}

/// Issue 14: a query and a request in both versions; version 1 has no trace id.
#[test]
fn both_versions_decode_on_both_paths() {
    let (fast, slow) = both_paths();
    let trace = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string());
    let q = QueryEvent {
        trace_id: trace.clone(),
        ..query()
    };
    let r = RequestEvent {
        trace_id: trace,
        ..request()
    };
    let untraced = |e: &Event| match e.clone() {
        Event::Query(q) => Event::Query(QueryEvent {
            trace_id: None,
            ..q
        }),
        Event::Request(r) => Event::Request(RequestEvent {
            trace_id: None,
            ..r
        }),
        other => other,
    };
    for e in [Event::Query(q.clone()), Event::Request(r.clone())] {
        // The encoder picks version 2 for a traced event.
        let auto = framed(&e);
        assert_eq!(
            auto[1..5],
            [0, 0, 0, if e.kind() == EventKind::Query { 6 } else { 7 }]
        );
        assert_eq!(Some(auto.clone()), framed_v2(&e));
        let mut v1 = Vec::new();
        match &e {
            Event::Query(q) => encode_query_v1(&mut v1, q),
            Event::Request(r) => encode_request_v1(&mut v1, r),
            Event::Resource(_) => unreachable!(),
        }
        assert_eq!(
            v1[1..5],
            [0, 0, 0, if e.kind() == EventKind::Query { 1 } else { 2 }]
        );
        for d in [&fast, &slow] {
            assert_eq!(d.decode(&auto, Some(T0)), Ok(e.clone()));
            assert_eq!(d.decode(&v1, Some(T0)), Ok(untraced(&e)));
            // Version 2 with a null trace id.
            let v2_null = framed_v2(&untraced(&e)).unwrap();
            assert_eq!(d.decode(&v2_null, Some(T0)), Ok(untraced(&e)));
        }
        // An untraced event is written in version 1, as before issue 14.
        assert_eq!(framed(&untraced(&e)), v1);
    }
}

/// A version 1 reader (a consumer not upgraded) reads version 2 bytes, skipping `trace_id`.
#[test]
fn version_2_bytes_read_with_the_version_1_schema() {
    use apache_avro::types::Value;
    let s = schema::schemas();
    let q = QueryEvent {
        trace_id: Some("trace-1".into()),
        ..query()
    };
    let mut v2 = Vec::new();
    encode_query_v2(&mut v2, &q);
    let mut v1 = Vec::new();
    encode_query_v1(&mut v1, &q);
    let read = |writer, reader, body: &[u8]| {
        let r = apache_avro::reader::datum::GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()
            .expect("reader");
        r.read_value(&mut &body[5..]).expect("reads")
    };
    let old_reader = read(&s.query, &s.query_v1, &v2);
    let plain = read(&s.query_v1, &s.query_v1, &v1);
    assert_eq!(old_reader, plain);
    let Value::Record(fields) = old_reader else {
        panic!("a record");
    };
    assert!(fields.iter().all(|(n, _)| n != "trace_id"));
}

proptest! {
    #![proptest_config(cases(256))]

    /// Issue 14: the specialised version 2 decoders agree with apache-avro's resolution, for
    /// events with and without a trace id, and for mutations of them.
    #[test]
    fn version_2_decodes_identically(
        e in event(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (fast, slow) = both_paths();
        let Some(mut bytes) = framed_v2(&e) else {
            return Ok(());
        };
        let intact = edits.is_empty() && !truncate;
        for (i, b) in edits {
            let i = 5 + i.index(bytes.len() - 5);
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let a = fast.decode(&bytes, Some(T0));
        prop_assert_eq!(format!("{a:?}"), format!("{:?}", slow.decode(&bytes, Some(T0))));
        if intact && let Ok(d) = a {
            prop_assert_eq!(d, e);
        }
    }

    #[test]
    fn input_events_decode_identically(e in event(), skew in prop_oneof![Just(None), Just(Some(T0))]) {
        let (fast, slow) = both_paths();
        let bytes = framed(&e);
        let a = fast.decode(&bytes, skew);
        let b = slow.decode(&bytes, skew);
        prop_assert_eq!(&a, &b);
        // Whatever is accepted is exactly what was encoded.
        if let Ok(d) = a {
            prop_assert_eq!(d, e);
        }
    }

    #[test]
    fn alerts_and_dead_letters_decode_identically(a in alert_event(), d in dead_letter_event()) {
        let (fast, slow) = both_paths();
        let mut ab = Vec::new();
        encode_alert(&mut ab, &a);
        let r = fast.decode_alert(&ab);
        prop_assert_eq!(&r, &slow.decode_alert(&ab));
        if let Ok(x) = r {
            prop_assert_eq!(x, a);
        }
        let mut db = Vec::new();
        encode_dead_letter(&mut db, &d);
        prop_assert_eq!(fast.decode_dead_letter(&db), Ok(d.clone()));
        prop_assert_eq!(slow.decode_dead_letter(&db), Ok(d));
    }

    #[test]
    fn mutated_events_fail_identically(
        e in event(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (fast, slow) = both_paths();
        let mut bytes = framed(&e);
        for (i, b) in edits {
            let i = 5 + i.index(bytes.len() - 5);
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        // Compared as Debug text: a mutated double can be NaN, and NaN != NaN.
        prop_assert_eq!(
            format!("{:?}", fast.decode(&bytes, Some(T0))),
            format!("{:?}", slow.decode(&bytes, Some(T0)))
        );
    }
}
