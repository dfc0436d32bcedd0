//! Emitter library throughput against librdkafka's in-process mock cluster: the cost of one
//! `record` call on the caller's thread, and events/s from the first `record` until the broker
//! acknowledged all of them. Broker, producer and caller share the machine, so pin the process
//! to one core: `taskset -c 0 cargo bench -p perfstream-emit --bench emitter`.
//!
//! Also measures the load generator's unpaced sending loop (generate, produce, truth from the
//! delivery reports) against the same broker.

use std::time::{Duration, Instant};

use perfstream_emit::{
    Class, Emitter, EmitterConfig, ProduceOptions, Scenario, generate, produce_blocking,
};
use perfstream_events::Event;
use rdkafka::mocking::MockCluster;

const N: usize = 400_000;

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let cluster = MockCluster::new(1).expect("mock cluster");
    for t in ["perf.query", "perf.request", "perf.resource"] {
        cluster.create_topic(t, 8, 1).expect("topic");
    }
    let mut s = Scenario::small(1);
    s.count = N as u64 + 1_000;
    s.malformed = 0.0;
    let events: Vec<Event> = generate(&s)
        .filter(|r| r.class != Class::TooLate)
        .filter_map(|r| r.event)
        .take(N)
        .collect();

    for round in 0..3 {
        let mut cfg = EmitterConfig::new(cluster.bootstrap_servers());
        cfg.buffer_capacity = N; // no drops: measure throughput, not the drop path
        let emitter = Emitter::new(cfg).expect("emitter");
        let batch = events.clone();
        let started = Instant::now();
        let mut call_time = Duration::ZERO;
        for e in batch {
            let t = Instant::now();
            let ok = emitter.record(e);
            call_time += t.elapsed();
            assert!(ok, "buffer sized to hold everything");
        }
        let recorded = started.elapsed();
        let until = Instant::now() + Duration::from_secs(120);
        while emitter.counters().sent < N as u64 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        let total = started.elapsed();
        let c = emitter.shutdown(Duration::from_secs(10));
        assert_eq!(c.sent, N as u64, "{c:?}");
        println!(
            "round {round}: {N} events; record() mean {:.0} ns/call ({:.2} M calls/s while the worker runs); \
             acknowledged {:.0} events/s end to end ({:.2} s; recording took {:.2} s)",
            call_time.as_nanos() as f64 / N as f64,
            N as f64 / call_time.as_secs_f64() / 1e6,
            N as f64 / total.as_secs_f64(),
            total.as_secs_f64(),
            recorded.as_secs_f64(),
        );
    }

    for round in 0..3 {
        let mut s = Scenario::small(100 + round);
        s.count = N as u64;
        let report =
            produce_blocking(&s, &ProduceOptions::new(cluster.bootstrap_servers())).expect("run");
        let sum = report.summary;
        assert_eq!(sum.failed, 0);
        println!(
            "generator round {round}: {} messages acknowledged unpaced with truth: {:.0} messages/s ({:.2} s)",
            sum.acknowledged,
            sum.acknowledged_per_sec(),
            sum.elapsed.as_secs_f64()
        );
    }
}
