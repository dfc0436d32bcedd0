//! The registry path and schema evolution.
//!
//! No Schema Registry implementation can run on these machines (Confluent's needs a JVM and
//! Maven Central; Karapace needs a Kafka broker it can keep its `_schemas` topic on), so a small
//! HTTP server in the test answers `GET /schemas/ids/{id}` with responses in the shape a
//! Confluent registry gives: `200 {"schema": "<escaped avsc>"}` (plus `schemaType` for
//! non-Avro schemas) and `404 {"error_code": 40403, "message": "Schema 99 not found"}`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apache_avro::Schema;
use apache_avro::types::{Record, Value};
use common::*;
use perfstream_events::encode::put_header;
use perfstream_events::schema::{ALERT_AVSC, QUERY_AVSC, QUERY_V1_AVSC, RESOURCE_AVSC};
use perfstream_events::*;
use serde_json::json;

/// A fake registry on a loopback port; counts the requests it answered.
struct FakeRegistry {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl FakeRegistry {
    fn start(routes: HashMap<u32, (u16, String)>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        // Serves until the test process exits; each connection gets one answer, then closes.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16_384 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                counter.fetch_add(1, Ordering::SeqCst);
                let id = path
                    .strip_prefix("/schemas/ids/")
                    .and_then(|i| i.parse::<u32>().ok());
                let (status, body) = match id.and_then(|i| routes.get(&i)) {
                    Some(r) => r.clone(),
                    None => (
                        404,
                        json!({"error_code": 40403, "message": format!("Schema {} not found", id.unwrap_or(0))})
                            .to_string(),
                    ),
                };
                let reason = match status {
                    200 => "OK",
                    404 => "Not Found",
                    _ => "Internal Server Error",
                };
                let resp = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes());
            }
        });
        FakeRegistry { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn decoder(&self) -> Decoder {
        Decoder::new(DecodeConfig {
            registry_url: Some(self.url.clone()),
            ..DecodeConfig::default()
        })
    }
}

/// The registry's answer for an Avro schema.
fn ok(schema: &serde_json::Value) -> (u16, String) {
    (200, json!({"schema": schema.to_string()}).to_string())
}

/// Our schema with `edit` applied to its field list.
fn variant(avsc: &str, edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> serde_json::Value {
    let mut s: serde_json::Value = serde_json::from_str(avsc).expect("our schema is JSON");
    let fields = s["fields"].as_array_mut().expect("fields");
    edit(fields);
    s
}

fn without(avsc: &str, field: &str) -> serde_json::Value {
    variant(avsc, |f| f.retain(|x| x["name"] != field))
}

fn retype(avsc: &str, field: &str, ty: serde_json::Value) -> serde_json::Value {
    variant(avsc, |f| {
        for x in f.iter_mut().filter(|x| x["name"] == field) {
            x["type"] = ty.clone();
        }
    })
}

/// Encodes `fields` (by name) with `schema` as apache-avro writes it, framed with `id`.
fn write(id: u32, schema: &serde_json::Value, fields: &[(&str, Value)]) -> Vec<u8> {
    let schema = Schema::parse_str(&schema.to_string()).expect("test schema parses");
    let mut rec = Record::new(&schema).expect("a record schema");
    for (name, v) in fields {
        rec.put(name, v.clone());
    }
    #[allow(deprecated)] // GenericDatumWriter's builder is the new spelling; same bytes
    let body = apache_avro::to_avro_datum(&schema, rec).expect("test record matches its schema");
    let mut out = Vec::new();
    put_header(&mut out, SchemaId(id));
    out.extend(body);
    out
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// The fields of `common::query()` as a v1 writer writes them.
fn query_fields() -> Vec<(&'static str, Value)> {
    let q = query();
    vec![
        ("service", s(&q.service)),
        ("instance", s(&q.instance)),
        ("query_hash", s(&q.query_hash)),
        ("query_type", Value::Enum(0, "select".into())),
        (
            "query_text",
            Value::Union(1, Box::new(s(q.query_text.as_deref().unwrap()))),
        ),
        ("execution_time_us", Value::Long(q.execution_time_us)),
        ("rows_affected", Value::Long(q.rows_affected)),
        (
            "tenant_id",
            Value::Union(1, Box::new(s(q.tenant_id.as_deref().unwrap()))),
        ),
        ("executed_at_us", Value::TimestampMicros(q.executed_at_us)),
    ]
}

fn fields_without(name: &str) -> Vec<(&'static str, Value)> {
    query_fields()
        .into_iter()
        .filter(|(n, _)| *n != name)
        .collect()
}

#[test]
fn old_writer_without_an_optional_field_reads_with_the_default() {
    // v0 of QueryEvent had no tenant_id; our reader adds it with default null.
    let v0 = without(QUERY_AVSC, "tenant_id");
    let reg = FakeRegistry::start(HashMap::from([(101, ok(&v0))]));
    let d = reg.decoder();
    let bytes = write(101, &v0, &fields_without("tenant_id"));
    let want = QueryEvent {
        tenant_id: None,
        ..query()
    };
    assert_eq!(d.decode(&bytes, Some(T0)), Ok(Event::Query(want)));
}

#[test]
fn added_field_with_default_fills_in() {
    // An alert writer from before clear_threshold existed: the reader's default 0.0 applies.
    let v0 = without(ALERT_AVSC, "clear_threshold");
    let reg = FakeRegistry::start(HashMap::from([(104, ok(&v0))]));
    let a = alert();
    let bytes = write(
        104,
        &v0,
        &[
            ("alert_id", s(&a.alert_id)),
            ("rule", s(&a.rule)),
            ("severity", Value::Enum(2, "critical".into())),
            ("state", Value::Enum(0, "firing".into())),
            ("service", s(&a.service)),
            (
                "labels",
                Value::Map(a.labels.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
            ),
            ("observed_value", Value::Double(a.observed_value)),
            ("threshold", Value::Double(a.threshold)),
            ("window_start_us", Value::TimestampMicros(a.window_start_us)),
            ("window_end_us", Value::TimestampMicros(a.window_end_us)),
            (
                "transitioned_at_us",
                Value::TimestampMicros(a.transitioned_at_us),
            ),
            ("message", s(&a.message)),
        ],
    );
    let got = reg.decoder().decode_alert(&bytes).expect("decodes");
    assert_eq!(
        got,
        AlertEvent {
            clear_threshold: 0.0,
            ..a
        }
    );
}

#[test]
fn removed_optional_field_reads_as_none() {
    // A producer that dropped query_text from its schema.
    let w = without(QUERY_AVSC, "query_text");
    let reg = FakeRegistry::start(HashMap::from([(102, ok(&w))]));
    let bytes = write(102, &w, &fields_without("query_text"));
    let want = QueryEvent {
        query_text: None,
        ..query()
    };
    assert_eq!(reg.decoder().decode(&bytes, None), Ok(Event::Query(want)));
}

#[test]
fn newer_writer_with_extra_field_and_enum_symbol() {
    // A newer producer: an extra field we don't know (skipped), an enum symbol we don't know
    // (the reader enum's default "other"), and an int where we read a long (promoted).
    let w = variant(QUERY_AVSC, |f| {
        f.insert(
            3,
            json!({"name": "db_system", "type": "string", "default": "postgres"}),
        );
        for x in f.iter_mut() {
            if x["name"] == "query_type" {
                x["type"]["symbols"] =
                    json!(["select", "insert", "update", "delete", "other", "merge"]);
            }
            if x["name"] == "rows_affected" {
                x["type"] = json!("int");
            }
        }
    });
    let reg = FakeRegistry::start(HashMap::from([(103, ok(&w))]));
    let mut fields = query_fields();
    fields.push(("db_system", s("mysql")));
    for (n, v) in fields.iter_mut() {
        if *n == "query_type" {
            *v = Value::Enum(5, "merge".into());
        }
        if *n == "rows_affected" {
            *v = Value::Int(1);
        }
    }
    let bytes = write(103, &w, &fields);
    let want = QueryEvent {
        query_type: QueryType::Other,
        ..query()
    };
    assert_eq!(reg.decoder().decode(&bytes, None), Ok(Event::Query(want)));
}

#[test]
fn writer_schema_with_named_type_references() {
    // An extra map field whose values refer to the CacheCounters record by name.
    let w = variant(RESOURCE_AVSC, |f| {
        f.push(json!({"name": "prev_caches", "type": ["null", {"type": "map", "values": "CacheCounters"}], "default": null}));
    });
    let r = resource();
    // Our v1 encoding is a prefix of this writer's encoding; append the extra field.
    let mut bytes = Vec::new();
    put_header(&mut bytes, SchemaId(105));
    let mut v1 = framed(&Event::Resource(r.clone()));
    bytes.extend(v1.split_off(5));
    bytes.extend([2, 2, 2, 0x78, 4, 6, 0]); // branch 1, 1 entry: "x" -> {hits 2, misses 3}, end
    let reg = FakeRegistry::start(HashMap::from([(105, ok(&w))]));
    assert_eq!(reg.decoder().decode(&bytes, None), Ok(Event::Resource(r)));
    // a truncated extra field is named by its path
    bytes.truncate(bytes.len() - 2);
    assert_eq!(
        reg.decoder().decode(&bytes, None),
        Err(DecodeError::Truncated {
            field: "prev_caches.misses".into(),
            needed: 1,
            remaining: 0
        })
    );
}

#[test]
fn wrong_types_are_incompatible_and_name_the_field() {
    let w = retype(QUERY_AVSC, "execution_time_us", json!("string"));
    let missing = without(QUERY_AVSC, "service");
    let reg = FakeRegistry::start(HashMap::from([(106, ok(&w)), (107, ok(&missing))]));
    let d = reg.decoder();
    let mut fields = query_fields();
    fields[5].1 = s("1250");
    let err = d.decode(&write(106, &w, &fields), None).unwrap_err();
    assert_eq!(err.kind(), "incompatible_schema");
    assert!(
        matches!(&err, DecodeError::IncompatibleSchema { id: 106, reader: "QueryEvent", detail } if detail.contains("execution_time_us")),
        "{err}"
    );
    let err = d
        .decode(&write(107, &missing, &fields_without("service")), None)
        .unwrap_err();
    assert!(
        matches!(&err, DecodeError::IncompatibleSchema { id: 107, detail, .. } if detail.contains("service")),
        "{err}"
    );
}

#[test]
fn other_records_and_formats_are_wrong_schemas() {
    let foo = json!({"type": "record", "name": "Foo", "fields": [{"name": "a", "type": "long"}]});
    let proto = (
        200,
        json!({"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\"; message Foo { int64 a = 1; }"})
            .to_string(),
    );
    let reg = FakeRegistry::start(HashMap::from([(108, ok(&foo)), (109, proto)]));
    let d = reg.decoder();
    let frame = |id: u32| {
        let mut b = Vec::new();
        put_header(&mut b, SchemaId(id));
        b.push(2);
        b
    };
    assert_eq!(
        d.decode(&frame(108), None),
        Err(DecodeError::WrongSchema {
            id: 108,
            found: "Foo".into(),
            expected: "one of perfstream's records"
        })
    );
    assert_eq!(
        d.decode(&frame(109), None),
        Err(DecodeError::WrongSchema {
            id: 109,
            found: "PROTOBUF".into(),
            expected: "an Avro schema"
        })
    );
}

#[test]
fn schemas_are_fetched_once_and_our_ids_never() {
    let v0 = without(QUERY_AVSC, "tenant_id");
    let reg = FakeRegistry::start(HashMap::from([(101, ok(&v0))]));
    let d = reg.decoder();
    let bytes = write(101, &v0, &fields_without("tenant_id"));
    for _ in 0..50 {
        assert!(d.decode(&bytes, None).is_ok());
    }
    assert_eq!(reg.hits(), 1);
    // our own ids come from the static map
    assert!(d.decode(&framed(&Event::Query(query())), None).is_ok());
    assert_eq!(reg.hits(), 1);
    // an unknown id: one request, then remembered
    let mut unknown = bytes.clone();
    unknown[1..5].copy_from_slice(&99u32.to_be_bytes());
    for _ in 0..3 {
        assert_eq!(
            d.decode(&unknown, None),
            Err(DecodeError::UnknownSchema { id: 99 })
        );
    }
    assert_eq!(reg.hits(), 2);
}

#[test]
fn registry_errors_are_retriable_and_not_cached() {
    let reg = FakeRegistry::start(HashMap::from([(
        110,
        (
            500,
            json!({"error_code": 50001, "message": "Error in the backend data store"}).to_string(),
        ),
    )]));
    let d = reg.decoder();
    let mut bytes = Vec::new();
    put_header(&mut bytes, SchemaId(110));
    for n in 1..=2 {
        let err = d.decode(&bytes, None).unwrap_err();
        assert!(
            matches!(&err, DecodeError::RegistryUnavailable { id: 110, detail } if detail.contains("500")),
            "{err}"
        );
        assert!(err.is_retriable());
        assert_eq!(err.kind(), "registry_unavailable");
        assert_eq!(reg.hits(), n);
    }
    // nothing listening
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let d = Decoder::new(DecodeConfig {
        registry_url: Some(format!("http://{closed}")),
        ..DecodeConfig::default()
    });
    let err = d.decode(&bytes, None).unwrap_err();
    assert!(err.is_retriable(), "{err}");
}

#[test]
fn validation_applies_on_the_registry_path() {
    let v0 = without(QUERY_AVSC, "tenant_id");
    let reg = FakeRegistry::start(HashMap::from([(101, ok(&v0))]));
    let mut fields = fields_without("tenant_id");
    fields[5].1 = Value::Long(-3);
    assert_eq!(
        reg.decoder().decode(&write(101, &v0, &fields), None),
        Err(DecodeError::Negative {
            field: "execution_time_us".into(),
            value: -3
        })
    );
}

#[test]
fn config_check_rejects_https_and_negative_skew() {
    let mut c = DecodeConfig {
        registry_url: Some("https://registry:8081".into()),
        ..DecodeConfig::default()
    };
    assert!(c.check().unwrap_err().contains("http://"));
    c.registry_url = Some("http://registry:8081".into());
    assert_eq!(c.check(), Ok(()));
    c.max_future_skew_us = -1;
    assert!(c.check().is_err());
}

#[test]
fn registered_copies_of_our_schemas_decode_like_ids_1_and_6() {
    // A Java producer with KafkaAvroSerializer registers our schema and gets its own id: the
    // version 1 (no trace id) or the version 2 (issue 14).
    let traced = QueryEvent {
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        ..query()
    };
    for (avsc, id, event) in [
        (QUERY_V1_AVSC, 120u32, query()),
        (QUERY_AVSC, 121, traced.clone()),
        (QUERY_AVSC, 122, query()),
    ] {
        let copy: serde_json::Value = serde_json::from_str(avsc).expect("json");
        let reg = FakeRegistry::start(HashMap::from([(id, ok(&copy))]));
        let slow = Decoder::new(DecodeConfig {
            registry_url: Some(reg.url.clone()),
            fast_path: false,
            ..DecodeConfig::default()
        });
        let fast = reg.decoder();
        let mut bytes = Vec::new();
        if avsc == QUERY_AVSC {
            encode::encode_query_v2(&mut bytes, &event);
        } else {
            encode::encode_query_v1(&mut bytes, &event);
        }
        bytes[1..5].copy_from_slice(&id.to_be_bytes());
        assert_eq!(fast.decode(&bytes, None), Ok(Event::Query(event.clone())));
        assert_eq!(slow.decode(&bytes, None), Ok(Event::Query(event)));
        // and bad bodies fail the same way on both
        for cut in 5..bytes.len() {
            assert_eq!(
                fast.decode(&bytes[..cut], None),
                slow.decode(&bytes[..cut], None)
            );
        }
    }
}
