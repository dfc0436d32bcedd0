//! The cardinality budget under a hostile producer, against the default `[window]` config.
//! Run: `cargo bench -p perfstream-window --bench cardinality` (release; about a minute).
//!
//! Three scenarios (the second with a smaller budget, to show it binding), each in one window of one partition (the worst case: nothing is released
//! before the flush), each 1 M query events:
//! 1. a new service name per event (1 M services, one statement each);
//! 2. a new query hash per event in one service, with 8 KiB of query text each.
//!
//! Reported per scenario: live series and the budget's byte estimate before the flush, the
//! process's peak RSS (`VmHWM`, reset before each scenario through `/proc/self/clear_refs`),
//! the rows of the flush and their totals, which must equal the events recorded: the overflow
//! rows carry what the budget refused, exactly.

use std::time::Instant;

use perfstream_events::{Event, QueryEvent, QueryType};
use perfstream_window::{Engine, OVERFLOW_KEY, PartitionId, ResumeState, WindowConfig};

const EVENTS: i64 = 1_000_000;
const T0: i64 = 1_790_000_000_000_000;

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    // "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn run(name: &str, config: WindowConfig, event: impl Fn(i64) -> Event) {
    let budget_mib = config.max_memory_mb;
    let mut e = Engine::new(config).expect("default config");
    let p = PartitionId {
        topic: 0,
        partition: 0,
    };
    e.assign(p, ResumeState::default());
    reset_peak();
    let rss_before = status("VmRSS:");
    let t = Instant::now();
    for i in 0..EVENTS {
        e.record(p, i, &event(i), T0).expect("assigned");
    }
    let record_s = t.elapsed().as_secs_f64();
    let (live, bytes) = (e.live_series(), e.series_bytes());
    let peak_recording = status("VmHWM:");
    e.advance(T0 + 3_600_000_000);
    let f = e.flush();
    let rows = f.closed.query.len();
    let count: u64 = f.closed.query.iter().map(|r| r.figures.latency.count).sum();
    let overflow: u64 = f
        .closed
        .query
        .iter()
        .filter(|r| r.key.query_hash == OVERFLOW_KEY)
        .map(|r| r.figures.latency.count)
        .sum();
    let peak = status("VmHWM:");
    assert_eq!(count, EVENTS as u64, "{name}: totals must be exact");
    println!(
        "{name}: {EVENTS} events in {record_s:.2} s; live series {live}, budget estimate {:.0} MiB of {budget_mib} MiB; \
         RSS before {:.0} MiB, peak while recording {:.0} MiB, peak with the flush {:.0} MiB; \
         {rows} rows, total count {count} (exact), {overflow} in overflow rows",
        bytes as f64 / 1048576.0,
        rss_before as f64 / 1024.0,
        peak_recording as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
}

fn main() {
    let text = "SELECT ".to_string() + &"x".repeat(8192 - 7);
    let services = |i: i64| {
        Event::Query(QueryEvent {
            service: format!("svc-{i:08}"),
            instance: "i-1".into(),
            query_hash: "a1b2c3d4e5f60718".into(),
            query_type: QueryType::Select,
            query_text: None,
            execution_time_us: 1000 + i % 5000,
            rows_affected: 1,
            tenant_id: None,
            trace_id: None,
            executed_at_us: T0 + i % 1_000_000,
        })
    };
    run("1 M service names", WindowConfig::default(), services);
    run(
        "1 M service names, window.max_memory_mb = 128",
        WindowConfig {
            max_memory_mb: 128,
            ..WindowConfig::default()
        },
        services,
    );
    run(
        "1 M query hashes, 8 KiB text each",
        WindowConfig::default(),
        |i| {
            Event::Query(QueryEvent {
                service: "checkout".into(),
                instance: "i-1".into(),
                query_hash: format!("{i:016x}"),
                query_type: QueryType::Select,
                query_text: Some(text.clone()),
                execution_time_us: 1000 + i % 5000,
                rows_affected: 1,
                tenant_id: None,
                trace_id: None,
                executed_at_us: T0 + i % 1_000_000,
            })
        },
    );
}
