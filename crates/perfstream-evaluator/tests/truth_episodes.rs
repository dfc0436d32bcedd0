//! The default rules against the load generator's episodes, without a broker or a database:
//! the generator's exact truth rows (what the pipeline must store) are fed window by window to
//! the pure engine. Every episode must give exactly one firing and one resolved transition of
//! each rule it lists, on its key, and nothing else may fire. This pins the 1:1 mapping the
//! end-to-end test (tests/alerts.rs) checks through the real pipeline.

use std::collections::BTreeMap;

use perfstream_alerts::{
    AlertSettings, Engine, Latency, QueryRow, RequestRow, ResourceRow, Window, WindowRows,
};
use perfstream_emit::truth::Truth;
use perfstream_emit::{Scenario, truth_of};
use perfstream_events::AlertState;

/// The truth's rows as the evaluator would read them from the tables, per window.
fn windows(t: &Truth) -> Vec<WindowRows> {
    let mut out: BTreeMap<i64, WindowRows> = BTreeMap::new();
    fn slot(out: &mut BTreeMap<i64, WindowRows>, s: i64, e: i64) -> &mut WindowRows {
        out.entry(s).or_insert_with(|| {
            WindowRows::empty(Window {
                start_us: s,
                end_us: e,
            })
        })
    }
    let lat = |d: &perfstream_emit::truth::Dist| Latency {
        count: d.count as i64,
        p50_us: d.p50,
        p90_us: d.p90,
        p95_us: d.p95,
        p99_us: d.p99,
        p999_us: d.p999,
        max_us: d.max,
        mean_us: (d.sum as f64 / d.count.max(1) as f64).round() as i64,
    };
    for q in &t.query {
        slot(&mut out, q.window_start_us, q.window_end_us)
            .queries
            .push(QueryRow {
                service: q.service.clone(),
                query_hash: q.query_hash.clone(),
                query_type: q.query_type.clone(),
                latency: lat(&q.execution_time_us),
                baseline_us: None,
            });
    }
    for r in &t.request {
        slot(&mut out, r.window_start_us, r.window_end_us)
            .requests
            .push(RequestRow {
                service: r.service.clone(),
                endpoint: r.endpoint.clone(),
                method: r.method.clone(),
                latency: lat(&r.response_time_us),
                status_5xx: r.status.get("5xx").copied().unwrap_or(0) as i64,
                baseline_us: None,
                buckets: Vec::new(),
            });
    }
    for r in &t.resource {
        let mean = |g: &perfstream_emit::truth::Gauge<i64>| g.sum as f64 / g.count as f64 / 1e6;
        let gc = r.gc_pause_us.as_ref();
        slot(&mut out, r.window_start_us, r.window_end_us)
            .resources
            .push(ResourceRow {
                service: r.service.clone(),
                instance: r.instance.clone(),
                cpu_mean: Some(mean(&r.cpu_utilization_ppm)),
                memory_utilization_mean: Some(mean(&r.memory_utilization_ppm)),
                memory_utilization_last: Some(r.memory_utilization_ppm.last as f64 / 1e6),
                pool_utilization_mean: Some(mean(&r.pool_utilization_ppm)),
                pool_utilization_max: Some(r.pool_utilization_ppm.max as f64 / 1e6),
                pool_waiters_max: Some(r.pool_waiters.max),
                gc_pause_us_sum: gc.map(|g| g.sum),
                gc_interval_us_sum: gc
                    .map(|g| r.interval_us.sum * g.count as i64 / r.interval_us.count as i64),
                cache_hits: r.cache_hits,
                cache_misses: r.cache_misses,
            });
    }
    out.into_values().collect()
}

/// (rule, key labels) -> states, in order, of every transition of the run.
/// (rule, key labels) -> (state, alert id) of each transition, in order.
type Transitions = BTreeMap<(String, BTreeMap<String, String>), Vec<(AlertState, String)>>;

fn run(t: &Truth) -> Transitions {
    let mut e = Engine::new(&AlertSettings::default()).expect("default rules");
    let mut out: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for w in windows(t) {
        for tr in e.evaluate(&w).expect("evaluate").transitions {
            out.entry((tr.rule.as_str().to_string(), tr.labels.clone()))
                .or_default()
                .push((tr.state, tr.alert_id));
        }
    }
    out
}

/// What must fire: per episode, each of its rules on its key. The generator labels the cache
/// episode with the cache name, which the rollups do not keep (hits and misses are summed over
/// caches), so the `cache` label is not part of the key.
pub fn expected(t: &Truth) -> BTreeMap<(String, BTreeMap<String, String>), ()> {
    let mut out = BTreeMap::new();
    for ep in &t.episodes {
        let mut labels = ep.labels.clone();
        labels.remove("cache");
        for rule in &ep.rules {
            out.insert((rule.clone(), labels.clone()), ());
        }
    }
    out
}

fn check(s: Scenario) {
    let t = truth_of(&s);
    let got = run(&t);
    let want = expected(&t);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let unexpected: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "window {} s, seed {}: missing {missing:?}, unexpected {unexpected:?}",
        s.window_us / 1_000_000,
        s.seed
    );
    for (k, v) in &got {
        let states: Vec<AlertState> = v.iter().map(|x| x.0).collect();
        assert_eq!(states, [AlertState::Firing, AlertState::Resolved], "{k:?}");
        assert_eq!(v[0].1, v[1].1, "{k:?}: one id");
    }
}

/// The end-to-end test's scenario (tests/alerts.rs passes the same arguments): 2 s windows, a
/// sample per second, 2 minutes at 1000 events/s, no too-late events; the start is not aligned
/// to a window (the end-to-end test starts at the current time).
fn e2e(seed: u64) -> Scenario {
    let base = Scenario::small(seed);
    Scenario {
        seed,
        start_us: base.start_us + seed as i64 * 333_333,
        count: 120_000,
        window_us: 2_000_000,
        resource_interval_us: 1_000_000,
        too_late: 0,
        ..base
    }
}

#[test]
fn episodes_map_one_to_one_with_two_second_windows() {
    for seed in 1..=6 {
        check(e2e(seed));
    }
}

#[test]
fn episodes_map_one_to_one_with_one_minute_windows() {
    // Production-like: 60 s windows, a sample every 10 s, 3 hours at 20 events/s.
    for seed in [5, 6, 7] {
        check(Scenario {
            count: 216_000,
            rate: 20.0,
            ..Scenario::small(seed)
        });
    }
}
