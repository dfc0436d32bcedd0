//! The emitter library against librdkafka's mock cluster: callers never wait on the broker,
//! drops are counted, sending resumes when the broker comes back.

use std::time::{Duration, Instant};

use perfstream_emit::{Class, Counters, Emitter, EmitterConfig, Scenario, generate};
use perfstream_events::Event;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 2;
const BUFFER: usize = 64;
const BATCH: usize = 16;
const PRODUCER_QUEUE: usize = 100;

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster starts");
    for t in ["perf.query", "perf.request", "perf.resource"] {
        c.create_topic(t, PARTITIONS, 1).expect("topic created");
    }
    c
}

fn config(bootstrap: String) -> EmitterConfig {
    let mut cfg = EmitterConfig::new(bootstrap);
    cfg.buffer_capacity = BUFFER;
    cfg.batch_size = BATCH;
    for (k, v) in [
        ("queue.buffering.max.messages", PRODUCER_QUEUE.to_string()),
        ("message.timeout.ms", "300000".to_string()),
        ("reconnect.backoff.ms", "50".to_string()),
        ("reconnect.backoff.max.ms", "200".to_string()),
    ] {
        cfg.producer_properties.insert(k.into(), v);
    }
    cfg
}

fn events(n: usize) -> Vec<Event> {
    let mut s = Scenario::small(9);
    s.count = n as u64 * 2;
    generate(&s)
        .filter(|r| r.class != Class::TooLate)
        .filter_map(|r| r.event)
        .take(n)
        .collect()
}

/// Polls `cond` on the counters until it holds or `limit` passes; returns the last counters.
fn wait_for(emitter: &Emitter, limit: Duration, cond: impl Fn(&Counters) -> bool) -> Counters {
    let until = Instant::now() + limit;
    loop {
        let c = emitter.counters();
        if cond(&c) || Instant::now() >= until {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every message of the three topics as (topic, key, payload), sorted.
fn read_back(bootstrap: &str, expected: usize) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "perfstream-emitter-readback")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer created");
    {
        // Dropped before the consumer (librdkafka hangs otherwise; infra README).
        let mut tpl = TopicPartitionList::new();
        for t in ["perf.query", "perf.request", "perf.resource"] {
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(t, p, Offset::Beginning)
                    .expect("partition added");
            }
        }
        consumer.assign(&tpl).expect("assigned");
    }
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while out.len() < expected && Instant::now() < until {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            out.push((
                m.topic().to_string(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out.sort();
    out
}

fn messages_in_topics(bootstrap: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "perfstream-emitter-test")
        .create()
        .expect("consumer created");
    let mut total = 0;
    for t in ["perf.query", "perf.request", "perf.resource"] {
        for p in 0..PARTITIONS {
            let (lo, hi) = consumer
                .fetch_watermarks(t, p, Duration::from_secs(10))
                .expect("watermarks");
            total += hi - lo;
        }
    }
    total
}

#[test]
fn callers_never_wait_on_a_down_broker_and_sending_resumes_after() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).expect("broker down");
    let emitter = Emitter::new(config(bootstrap.clone())).expect("emitter starts");

    // 3000 calls while nothing can be delivered: every call returns (this loop ends) although
    // the producer behind the buffer is stuck; what does not fit is dropped and counted.
    let calls = 3_000u64;
    let mut accepted = 0u64;
    let mut kept = Vec::new();
    for e in events(calls as usize) {
        if emitter.record(e.clone()) {
            accepted += 1;
            kept.push(e);
        }
    }
    let c = emitter.counters();
    assert_eq!(
        c.sent, 0,
        "nothing can be acknowledged while the broker is down"
    );
    assert_eq!(c.accepted, accepted);
    assert_eq!(c.accepted + c.dropped, calls);
    // At most: the buffer, one batch in the worker's hands, the producer's queue.
    let bound = (BUFFER + BATCH + PRODUCER_QUEUE + 1) as u64;
    assert!(c.accepted <= bound, "{c:?}");
    assert!(c.dropped >= calls - bound, "{c:?}");

    // Recovery: everything accepted so far is delivered, then new events flow again.
    cluster.broker_up(1).expect("broker up");
    let c = wait_for(&emitter, Duration::from_secs(60), |c| c.sent == c.accepted);
    assert_eq!(c.sent, c.accepted, "resumed sending after recovery: {c:?}");
    assert_eq!(c.failed, 0);
    let more = events(50);
    for e in more {
        assert!(emitter.record(e.clone()), "the buffer has room again");
        kept.push(e);
    }
    let c = wait_for(&emitter, Duration::from_secs(60), |c| c.sent == c.accepted);
    assert_eq!(c.sent, accepted + 50, "{c:?}");

    let last = emitter.shutdown(Duration::from_secs(10));
    assert_eq!(last.sent, last.accepted);
    assert_eq!(last.failed, 0);
    assert_eq!(messages_in_topics(&bootstrap), last.sent as i64);

    // Exactly the accepted events, once each, keyed by their series, encoded as the codec does.
    let mut expected: Vec<(String, Vec<u8>, Vec<u8>)> = kept
        .iter()
        .map(|e| {
            let topic = match e {
                Event::Query(_) => "perf.query",
                Event::Request(_) => "perf.request",
                Event::Resource(_) => "perf.resource",
            };
            let mut payload = Vec::new();
            perfstream_events::encode_event(&mut payload, e);
            (topic.to_string(), perfstream_events::series_key(e), payload)
        })
        .collect();
    expected.sort();
    assert_eq!(read_back(&bootstrap, expected.len()), expected);
}

#[test]
fn shutdown_keeps_its_deadline_with_the_broker_down_and_accounts_for_everything() {
    let cluster = cluster();
    cluster.broker_down(1).expect("broker down");
    let emitter = Emitter::new(config(cluster.bootstrap_servers())).expect("emitter starts");
    let calls = 500u64;
    for e in events(calls as usize) {
        emitter.record(e);
    }
    // Returns (the deadline bounds the wait on the producer); every event is accounted for:
    // never acknowledged, so either dropped (buffer full or still buffered at the deadline)
    // or failed (purged from the producer).
    let c = emitter.shutdown(Duration::from_millis(300));
    assert_eq!(c.sent, 0);
    assert_eq!(c.failed + c.dropped, calls, "{c:?}");
    assert!(c.failed > 0, "the producer's queue was purged: {c:?}");
}

#[test]
fn an_unreachable_bootstrap_address_is_not_an_error_and_does_not_block() {
    // A closed port: connection refused forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let emitter = Emitter::new(config(addr)).expect("creating needs no broker");
    let calls = 1_000u64;
    for e in events(calls as usize) {
        emitter.record(e);
    }
    let c = emitter.counters();
    assert_eq!(c.sent, 0);
    assert!(c.dropped > 0, "{c:?}");
    let c = emitter.shutdown(Duration::ZERO);
    assert_eq!(c.failed + c.dropped, calls, "{c:?}");
}
