//! The fast path (specialised decoders) and the resolution path (apache-avro) decode identically:
//! the same events, and the same errors, for encoded random events and for mutations of them.

mod common;

use common::*;
use perfstream_events::encode::{encode_alert, encode_dead_letter};
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

proptest! {
    #![proptest_config(cases(256))]

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
