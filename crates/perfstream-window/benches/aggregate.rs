//! Events per second of `Engine::record` on one core (aggregation alone: no flush), Zipf keys.
//! Run: `cargo bench -p perfstream-window --bench aggregate -- --warm-up-time 1 --measurement-time 3`

mod workload;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perfstream_window::{Engine, PartitionId, ResumeState, WindowConfig};

const EVENTS: usize = 500_000;

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for n_keys in [1_000, 100_000, 1_000_000] {
        let keys = workload::Keys::new(n_keys);
        let events = workload::events(&keys, EVENTS, 42);
        drop(keys);
        let p = PartitionId {
            topic: 0,
            partition: 0,
        };
        let mut engine = Engine::new(WindowConfig {
            max_series: 2_000_000,
            ..WindowConfig::default()
        })
        .unwrap();
        engine.assign(p, ResumeState::default());
        // Steady state: the series exist; each iteration adds to them.
        let mut offset = 0;
        for e in &events {
            engine.record(p, offset, e, workload::T0).unwrap();
            offset += 1;
        }
        eprintln!(
            "zipf over {n_keys} keys: {} live series",
            engine.live_series()
        );
        group.bench_function(format!("zipf_{n_keys}_keys"), |b| {
            b.iter(|| {
                for e in &events {
                    black_box(engine.record(p, offset, e, workload::T0).unwrap());
                    offset += 1;
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
