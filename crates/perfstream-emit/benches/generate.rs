//! Generator core throughput: records (generated + encoded) per second on one core, and the
//! truth builder on top. Run: `taskset -c 0 cargo bench -p perfstream-emit --bench generate`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perfstream_emit::{Scenario, TruthBuilder, generate};

const N: u64 = 100_000;

fn scenario() -> Scenario {
    let mut s = Scenario::small(1);
    s.count = N;
    s.rate = 50_000.0;
    s
}

fn bench(c: &mut Criterion) {
    let s = scenario();
    let records = generate(&s).count() as u64;
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(records));
    g.sample_size(20);
    g.bench_function("records", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for r in generate(black_box(&s)) {
                bytes += r.payload.len();
            }
            bytes
        })
    });
    g.bench_function("records_and_truth", |b| {
        b.iter(|| {
            let mut t = TruthBuilder::new(&s);
            for r in generate(black_box(&s)) {
                t.add(&r);
            }
            t.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
