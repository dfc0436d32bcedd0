//! Property tests: the engine against an exact oracle, arrival-order independence within the
//! allowed lateness, and revoke + replay from the stored resume offset.

use std::collections::BTreeMap;
use std::time::Duration;

use perfstream_events::Event;
use proptest::prelude::*;

use super::test_support::*;
use crate::hdr::clamp_us;
use crate::rollup::{PERCENTILES, new_histogram};
use crate::{Engine, Flush, PartitionId, RecordOutcome, ResumeState, WindowConfig};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

/// A generated event: kind, key and service choices, event time offset from T0, latency.
#[derive(Debug, Clone)]
struct Gen {
    kind: u8,
    key: u8,
    service: u8,
    dt: i64,
    latency: i64,
    status: i32,
    partition: i32,
}

impl Gen {
    fn event(&self) -> Event {
        let service = ["checkout", "search"][self.service as usize];
        let key = format!("k{}", self.key);
        let t = T0 + self.dt;
        match self.kind {
            0 => query(service, &key, t, self.latency),
            1 => request(service, &key, self.status, t, self.latency),
            _ => resource(service, &key, t, (self.latency % 1000) as f64 / 1000.0),
        }
    }
}

fn latency() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1..2_000_i64,
        4 => 100..5_000_000_i64,
        1 => -10..1_i64,
        1 => 3_000_000_000..5_000_000_000_i64,
    ]
}

fn gen_event(span_us: i64) -> impl Strategy<Value = Gen> {
    (
        0..3_u8,
        0..4_u8,
        0..2_u8,
        0..span_us,
        latency(),
        prop_oneof![Just(200), Just(404), Just(503)],
        0..2_i32,
    )
        .prop_map(|(kind, key, service, dt, latency, status, partition)| Gen {
            kind,
            key,
            service,
            dt,
            latency,
            status,
            partition,
        })
}

fn config(sigfig: u8) -> WindowConfig {
    WindowConfig {
        window: Duration::from_secs(10),
        allowed_lateness: Duration::from_secs(2),
        significant_digits: sigfig,
        ..WindowConfig::default()
    }
}

/// Exact value at quantile `q` by the same rank rule HdrHistogram uses.
fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Records `events` (index = arrival order) into `e`, each partition's offsets counting up.
fn record_all(
    e: &mut Engine,
    events: &[Gen],
    flush_every: usize,
    out: &mut Stored,
) -> Vec<RecordOutcome> {
    let mut offsets = BTreeMap::<i32, i64>::new();
    let mut outcomes = Vec::new();
    for (i, g) in events.iter().enumerate() {
        let offset = offsets.entry(g.partition).or_insert(0);
        let arrival = T0 + g.dt;
        outcomes.push(
            e.record(pid(g.partition), *offset, &g.event(), arrival)
                .unwrap(),
        );
        *offset += 1;
        if (i + 1) % flush_every == 0 {
            e.advance(arrival);
            out.add_flush(&e.flush());
        }
    }
    outcomes
}

fn assign_both(e: &mut Engine) {
    e.assign(pid(0), ResumeState::default());
    e.assign(pid(1), ResumeState::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Count, sum, min and max exact; every percentile the HDR-equivalent of the exact value
    /// (so within the HDR bound) and the histogram equal to recording the raw values directly.
    #[test]
    fn matches_exact_oracle(
        events in prop::collection::vec(gen_event(40 * S), 1..400),
        sigfig in 1..=3_u8,
    ) {
        let mut e = engine(config(sigfig));
        assign_both(&mut e);
        let mut stored = Stored::default();
        let outcomes = record_all(&mut e, &events, usize::MAX, &mut stored);
        prop_assert!(outcomes.iter().all(|o| *o == RecordOutcome::Aggregated));
        stored.add_flush(&drain(&mut e));
        prop_assert_eq!(e.live_series(), 0);

        // Oracle: raw latencies per (window, kind, service, key).
        let mut oracle = BTreeMap::<(i64, u8, String, String), Vec<i64>>::new();
        for g in &events {
            let ev = g.event();
            let (start, _) = crate::window_of(ev.time_us(), 10 * S);
            let service = ["checkout", "search"][g.service as usize].to_string();
            oracle.entry((start, g.kind, service, format!("k{}", g.key))).or_default().push(g.latency);
        }
        let mut seen = 0;
        let check = |start: i64, kind: u8, service: &str, key: &str, l: &crate::Latency| -> Result<(), TestCaseError> {
            let raw = &oracle[&(start, kind, service.to_string(), key.to_string())];
            prop_assert_eq!(l.count, raw.len() as u64);
            prop_assert_eq!(l.sum_us, raw.iter().sum::<i64>());
            prop_assert_eq!(l.min_us, *raw.iter().min().unwrap());
            prop_assert_eq!(l.max_us, *raw.iter().max().unwrap());
            let mut clamped: Vec<u64> = raw.iter().map(|v| clamp_us(*v).0).collect();
            clamped.sort_unstable();
            prop_assert_eq!(l.clamped, raw.iter().filter(|v| clamp_us(**v).1).count() as u64);
            let mut plain = new_histogram(sigfig);
            clamped.iter().for_each(|v| plain.record(*v).unwrap());
            for q in PERCENTILES {
                let exact = exact_quantile(&clamped, q);
                let got = l.quantile_us(q) as u64;
                prop_assert_eq!(got, plain.highest_equivalent(exact));
                prop_assert!((got - exact) as f64 <= exact as f64 * 10f64.powi(-i32::from(sigfig)),
                    "q {} exact {} got {}", q, exact, got);
                prop_assert_eq!(got, plain.value_at_quantile(q));
            }
            prop_assert_eq!(&l.hist.to_histogram(), &plain);
            prop_assert_eq!(&crate::LatencyHist::from_histogram(&plain).unwrap(), &l.hist);
            let mut bytes = Vec::new();
            V2DeflateSerializer::new().serialize(&plain, &mut bytes).unwrap();
            prop_assert_eq!(l.hist_bytes(), bytes);
            Ok(())
        };
        for ((start, k), f) in &stored.query {
            check(*start, 0, &k.service, &k.query_hash, &f.latency)?;
            seen += 1;
        }
        for ((start, k), f) in &stored.request {
            check(*start, 1, &k.service, &k.endpoint, &f.latency)?;
            let raw = &oracle[&(*start, 1, k.service.clone(), k.endpoint.clone())];
            prop_assert_eq!(f.status_2xx + f.status_4xx + f.status_5xx, raw.len() as u64);
            seen += 1;
        }
        for ((start, k), f) in &stored.resource {
            let raw = &oracle[&(*start, 2, k.service.clone(), k.instance.clone())];
            prop_assert_eq!(f.samples, raw.len() as u64);
            seen += 1;
        }
        prop_assert_eq!(seen, oracle.len(), "one row per non-empty (window, key)");
    }

    /// Whatever the series cap and the service quota, per window and kind the counts and sums
    /// are exact; per service they are exact as long as nothing went to the global overflow
    /// series, and never above the truth.
    #[test]
    fn totals_stay_exact_under_the_series_cap(
        events in prop::collection::vec(gen_event(40 * S), 1..300),
        cap in 1..40_usize,
        quota in 1..12_usize,
    ) {
        let mut e = engine(WindowConfig {
            max_series: cap,
            max_series_per_service: quota,
            ..config(2)
        });
        assign_both(&mut e);
        let mut stored = Stored::default();
        record_all(&mut e, &events, 17, &mut stored);
        let last = drain(&mut e);
        stored.add_flush(&last);
        let mut want = BTreeMap::<(i64, u8, String), (u64, i64)>::new();
        for g in &events {
            let (start, _) = crate::window_of(T0 + g.dt, 10 * S);
            let service = ["checkout", "search"][g.service as usize].to_string();
            let t = want.entry((start, g.kind, service)).or_default();
            *t = (t.0 + 1, t.1 + if g.kind == 2 { 0 } else { g.latency });
        }
        let mut got = BTreeMap::<(i64, u8, String), (u64, i64)>::new();
        let mut add = |start: i64, kind: u8, service: &str, n: u64, sum: i64| {
            let t = got.entry((start, kind, service.to_string())).or_default();
            *t = (t.0 + n, t.1 + sum);
        };
        for ((start, k), f) in &stored.query {
            add(*start, 0, &k.service, f.latency.count, f.latency.sum_us);
        }
        for ((start, k), f) in &stored.request {
            add(*start, 1, &k.service, f.latency.count, f.latency.sum_us);
        }
        for ((start, k), f) in &stored.resource {
            add(*start, 2, &k.service, f.samples, 0);
        }
        let by_kind = |m: &BTreeMap<(i64, u8, String), (u64, i64)>| {
            let mut out = BTreeMap::<(i64, u8), (u64, i64)>::new();
            for ((start, kind, _), (n, sum)) in m {
                let t = out.entry((*start, *kind)).or_default();
                *t = (t.0 + n, t.1 + sum);
            }
            out
        };
        prop_assert_eq!(by_kind(&got), by_kind(&want));
        let global = got.keys().any(|k| k.2 == crate::OVERFLOW_KEY);
        if global {
            // Counts only: generated latencies may be negative, so sums do not bound.
            for (k, (n, _)) in got.iter().filter(|(k, _)| k.2 != crate::OVERFLOW_KEY) {
                prop_assert!(*n <= want[k].0, "{:?} over the truth", k);
            }
        } else {
            prop_assert_eq!(got, want);
        }
    }

    /// `close_due` at any moment says exactly whether advancing to that moment and flushing
    /// closes a window: busy, idle and never-fed partitions, late events and clock jumps alike.
    #[test]
    fn close_due_predicts_whether_a_flush_closes_a_window(
        events in prop::collection::vec(gen_event(120 * S), 1..200),
        delays in prop::collection::vec(0..=20 * S, 200),
        checks in prop::collection::vec(prop::option::of(0..=40 * S), 200),
        sorted in any::<bool>(),
    ) {
        let mut events = events;
        if sorted {
            events.sort_by_key(|g| g.dt);
        }
        let mut e = engine(WindowConfig {
            idle_timeout: Duration::from_secs(5),
            ..config(2)
        });
        assign_both(&mut e);
        e.assign(pid(2), ResumeState::default()); // never fed: idle only by its timeout
        let mut offsets = BTreeMap::<i32, i64>::new();
        let mut now = T0;
        for ((g, delay), check) in events.iter().zip(&delays).zip(&checks) {
            let offset = offsets.entry(g.partition).or_insert(0);
            now = now.max(T0 + g.dt + delay);
            e.record(pid(g.partition), *offset, &g.event(), now).unwrap();
            *offset += 1;
            if let Some(after) = check {
                now += after;
                let due = e.close_due(now);
                e.advance(now);
                let closed = !e.flush().closed.is_empty();
                prop_assert_eq!(due, closed, "at {}", now - T0);
                prop_assert!(!e.close_due(now), "nothing is due right after a flush");
            }
        }
    }

    /// Any arrival order in which no event is older than the allowed lateness behind the newest
    /// gives the same rollups, with no corrections.
    #[test]
    fn arrival_order_within_lateness_does_not_matter(
        events in prop::collection::vec(gen_event(60 * S), 1..300),
        jitter in prop::collection::vec(0..=2 * S, 300),
        flush_every in 1..40_usize,
    ) {
        let mut in_order = events.clone();
        in_order.sort_by_key(|g| g.dt);
        let mut shuffled: Vec<(i64, Gen)> =
            events.iter().zip(&jitter).map(|(g, j)| (g.dt + j, g.clone())).collect();
        shuffled.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Gen> = shuffled.into_iter().map(|(_, g)| g).collect();

        let run = |evs: &[Gen]| {
            let mut e = engine(config(2));
            assign_both(&mut e);
            let mut stored = Stored::default();
            let outcomes = record_all(&mut e, evs, flush_every, &mut stored);
            let last = drain(&mut e);
            stored.add_flush(&last);
            (stored, outcomes)
        };
        let (mut a, oa) = run(&in_order);
        let (mut b, ob) = run(&shuffled);
        prop_assert!(oa.iter().chain(&ob).all(|o| *o == RecordOutcome::Aggregated));
        // Samples name the offset an event was read at, which the order changes: compare
        // their durations only (ties may pick different events of equal duration).
        for s in [&mut a, &mut b] {
            for f in s.query.values_mut() {
                f.samples.iter_mut().for_each(|x| x.source.offset = 0);
                f.samples.iter_mut().for_each(|x| x.event_time_us = 0);
                f.samples.iter_mut().for_each(|x| x.rows_affected = 0);
                f.samples.iter_mut().for_each(|x| x.source.partition.partition = 0);
            }
            for f in s.request.values_mut() {
                f.samples.iter_mut().for_each(|x| {
                    x.source.offset = 0;
                    x.source.partition.partition = 0;
                    x.event_time_us = 0;
                    x.status_code = 0;
                    x.response_bytes = None;
                });
            }
        }
        prop_assert_eq!(a, b);
    }

    /// Revoking a partition at any point and replaying it from the resume offset stored with
    /// the last flush gives the same stored rows as never revoking it.
    #[test]
    fn revoke_and_replay_gives_the_same_rollups(
        events in prop::collection::vec(gen_event(120 * S), 1..300),
        flush_every in 1..30_usize,
        revoke_at in 0..300_usize,
        revoked in 0..2_i32,
    ) {
        let mut reference = engine(config(2));
        assign_both(&mut reference);
        let mut expected = Stored::default();
        record_all(&mut reference, &events, flush_every, &mut expected);
        expected.add_flush(&drain(&mut reference));

        let mut e = engine(config(2));
        assign_both(&mut e);
        let mut got = Stored::default();
        let revoke_at = revoke_at.min(events.len());
        // The first part, remembering what a store would hold for the revoked partition.
        let mut offsets = BTreeMap::<i32, i64>::new();
        let mut stored_progress = ResumeState::default();
        let mut resume_offset = 0;
        let take = |f: Flush, got: &mut Stored, rs: &mut ResumeState, ro: &mut i64| {
            got.add_flush(&f);
            if let Some(p) = f.progress.iter().find(|p| p.partition == pid(revoked)) {
                *rs = ResumeState {
                    applied_watermark_us: p.applied_watermark_us,
                    applied_through_offset: Some(p.applied_through_offset),
                };
                *ro = p.resume_offset;
            }
        };
        let mut log: Vec<(i64, Gen)> = Vec::new();
        for (i, g) in events.iter().enumerate() {
            if i == revoke_at {
                e.revoke(pid(revoked));
                e.assign(pid(revoked), stored_progress);
                for (offset, old) in log.iter().filter(|(o, g)| g.partition == revoked && *o >= resume_offset) {
                    e.record(pid(revoked), *offset, &old.event(), T0 + old.dt).unwrap();
                }
            }
            let offset = offsets.entry(g.partition).or_insert(0);
            log.push((*offset, g.clone()));
            e.record(pid(g.partition), *offset, &g.event(), T0 + g.dt).unwrap();
            *offset += 1;
            if (i + 1) % flush_every == 0 {
                e.advance(T0 + g.dt);
                take(e.flush(), &mut got, &mut stored_progress, &mut resume_offset);
            }
        }
        got.add_flush(&drain(&mut e));
        prop_assert_eq!(e.live_series(), 0, "series accounting survives revoke and replay");
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn partition_ids_order_by_topic_then_partition() {
    let a = PartitionId {
        topic: 0,
        partition: 5,
    };
    let b = PartitionId {
        topic: 1,
        partition: 0,
    };
    assert!(a < b);
}
