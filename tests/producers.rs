//! The producer guide's Python example (`tests/python/producer_example.py`, confluent-kafka +
//! fastavro) against a real Kafka-protocol broker, decoded field for field by the Rust codec.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use perfstream_events::{DecodeConfig, Decoder, json::event_to_json};
use perfstream_kafka::{DevBroker, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let p = std::env::var_os("PERFSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python with confluent-kafka and fastavro not found at {} (scripts/test.sh creates .venv)",
        p.display()
    );
    p
}

#[test]
fn python_producer_example_decodes_field_for_field_in_rust() {
    let broker = DevBroker::start(1, 3, &Topics::default()).expect("mock cluster");
    let bootstrap = broker.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.jsonl");
    let out = Command::new(python())
        .arg(repo().join("tests/python/producer_example.py"))
        .args(["--bootstrap", &bootstrap, "--count", "300", "--manifest"])
        .arg(&manifest)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "producer example failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let expected: BTreeSet<String> = std::fs::read_to_string(&manifest)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::json!({"topic": v["topic"], "key_hex": v["key_hex"], "value": v["value"]})
                .to_string()
        })
        .collect();
    assert_eq!(expected.len(), 300);

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "producer-example-check")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in ["perf.query", "perf.request", "perf.resource"] {
        for p in 0..3 {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    drop(tpl);
    let decoder = Decoder::new(DecodeConfig::default());
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {} events",
            got.len(),
            expected.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let ts = m.timestamp().to_millis().map(|ms| ms * 1000);
        let event = decoder
            .decode(m.payload().unwrap_or_default(), ts)
            .unwrap_or_else(|e| panic!("Rust cannot decode a Python-produced event: {e}"));
        let key_hex = perfstream_events::json::hex(m.key().unwrap_or_default());
        assert_eq!(
            m.key().unwrap_or_default(),
            perfstream_events::series_key(&event),
            "the key is the series key"
        );
        got.insert(serde_json::json!({"topic": m.topic(), "key_hex": key_hex, "value": event_to_json(&event)}).to_string());
    }
    let missing: Vec<_> = expected.difference(&got).take(3).collect();
    assert!(
        missing.is_empty(),
        "decoded differently from what Python sent, e.g. {missing:?}\ngot e.g. {:?}",
        got.iter().take(2).collect::<Vec<_>>()
    );
}
