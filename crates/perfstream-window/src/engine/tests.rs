//! Edge cases of the engine, each driven by explicit timestamps.

use std::time::Duration;

use super::test_support::*;
use crate::{
    Engine, OVERFLOW_KEY, PartitionProgress, RecordOutcome, ResumeState, WindowConfig, WindowError,
};

fn cfg() -> WindowConfig {
    WindowConfig::default()
}

fn assigned(config: WindowConfig, partitions: &[i32]) -> Engine {
    let mut e = engine(config);
    for &p in partitions {
        e.assign(pid(p), ResumeState::default());
    }
    e
}

#[test]
fn unassigned_partition_is_an_error() {
    let mut e = engine(cfg());
    let err = e
        .record(pid(3), 0, &query("s", "h", T0, 5), T0)
        .unwrap_err();
    assert_eq!(err, WindowError::NotAssigned { partition: pid(3) });
}

#[test]
fn event_exactly_at_window_end_opens_the_next_window() {
    let mut e = assigned(
        WindowConfig {
            allowed_lateness: Duration::ZERO,
            ..cfg()
        },
        &[0],
    );
    e.record(pid(0), 0, &query("s", "h", T0 + MIN - 1, 10), T0)
        .unwrap();
    e.record(pid(0), 1, &query("s", "h", T0 + MIN, 20), T0)
        .unwrap();
    // Lateness 0: the watermark is the max event time, T0 + MIN, which closes [T0, T0 + MIN).
    assert_eq!(e.advance(T0), Some(T0 + MIN));
    let f = e.flush();
    assert_eq!(f.closed.query.len(), 1);
    let r = &f.closed.query[0];
    assert_eq!((r.window_start_us, r.window_end_us), (T0, T0 + MIN));
    assert_eq!((r.figures.latency.count, r.figures.latency.max_us), (1, 10));
    // The event at the boundary is in the next window, still open.
    assert_eq!(e.live_series(), 1);
    let f = drain(&mut e);
    assert_eq!(f.closed.query[0].window_start_us, T0 + MIN);
    assert_eq!(f.closed.query[0].figures.latency.sum_us, 20);
}

#[test]
fn lateness_zero_closes_on_the_next_window_and_later_events_are_corrections() {
    let mut e = assigned(
        WindowConfig {
            allowed_lateness: Duration::ZERO,
            ..cfg()
        },
        &[0],
    );
    e.record(pid(0), 0, &query("s", "h", T0 + 5 * S, 10), T0)
        .unwrap();
    e.record(pid(0), 1, &query("s", "h", T0 + MIN + 1, 10), T0)
        .unwrap();
    e.advance(T0);
    assert_eq!(e.flush().closed.query.len(), 1);
    // Any event for the closed window is now a correction.
    let out = e
        .record(pid(0), 2, &query("s", "h", T0 + 59 * S, 30), T0)
        .unwrap();
    assert_eq!(out, RecordOutcome::Correction);
    let f = e.flush();
    assert!(f.closed.is_empty());
    assert_eq!(f.corrections.query.len(), 1);
    assert_eq!(f.corrections.query[0].window_start_us, T0);
    assert_eq!(f.corrections.query[0].figures.latency.sum_us, 30);
    assert_eq!(f.counters.query.corrections, 1);
}

#[test]
fn allowed_lateness_keeps_the_window_open() {
    let mut e = assigned(cfg(), &[0]);
    e.record(pid(0), 0, &query("s", "h", T0 + 10 * S, 10), T0)
        .unwrap();
    e.record(pid(0), 1, &query("s", "h", T0 + MIN + 4 * S, 10), T0)
        .unwrap();
    e.advance(T0);
    assert!(
        e.flush().closed.is_empty(),
        "watermark T0+59s must not close [T0, T0+60s)"
    );
    let out = e
        .record(pid(0), 2, &query("s", "h", T0 + 59 * S, 10), T0)
        .unwrap();
    assert_eq!(out, RecordOutcome::Aggregated);
    e.record(pid(0), 3, &query("s", "h", T0 + MIN + 5 * S, 10), T0)
        .unwrap();
    e.advance(T0);
    let f = e.flush();
    assert_eq!(f.closed.query[0].figures.latency.count, 2);
}

#[test]
fn a_closed_window_is_emitted_once() {
    let mut e = assigned(cfg(), &[0]);
    e.record(pid(0), 0, &query("s", "h", T0, 10), T0).unwrap();
    let f = drain(&mut e);
    assert_eq!(f.closed.len(), 1);
    let f = drain(&mut e);
    assert!(f.closed.is_empty() && f.corrections.is_empty());
    assert_eq!(e.live_series(), 0);
}

#[test]
fn partitions_merge_per_window_and_key() {
    let mut e = assigned(cfg(), &[0, 1]);
    e.record(pid(0), 0, &query("s", "h", T0 + S, 10), T0)
        .unwrap();
    e.record(pid(1), 0, &query("s", "h", T0 + 2 * S, 30), T0)
        .unwrap();
    e.record(pid(1), 1, &query("s", "other", T0 + 2 * S, 30), T0)
        .unwrap();
    let f = drain(&mut e);
    assert_eq!(f.closed.query.len(), 2);
    let h = &f.closed.query[0];
    assert_eq!(h.key.query_hash, "h");
    assert_eq!((h.figures.latency.count, h.figures.latency.sum_us), (2, 40));
    assert_eq!((h.figures.rows_sum, h.figures.rows_max), (6, 3));
}

#[test]
fn idle_partition_stops_holding_the_watermark_back() {
    let idle = Duration::from_secs(30);
    let mut e = assigned(
        WindowConfig {
            idle_timeout: idle,
            ..cfg()
        },
        &[0, 1],
    );
    // Partition 1 saw one early event, then nothing.
    e.record(pid(1), 0, &query("s", "quiet", T0 + S, 10), T0 + S)
        .unwrap();
    for i in 0..10 {
        let t = T0 + i * 20 * S;
        e.record(pid(0), i, &query("s", "busy", t, 10), t).unwrap();
    }
    // At T0 + 20 s partition 1 is not idle yet: it holds the watermark at T0 + 1 s - 5 s.
    assert_eq!(e.advance(T0 + 20 * S), Some(T0 - 4 * S));
    assert!(e.flush().closed.is_empty());
    // 30 s after its last arrival it is idle: partition 0 alone sets the watermark.
    assert_eq!(e.advance(T0 + 31 * S), Some(T0 + 180 * S - 5 * S));
    let f = e.flush();
    assert_eq!(
        f.closed.query.len(),
        3,
        "{:?}",
        f.closed
            .query
            .iter()
            .map(|r| (&r.key.query_hash, r.window_start_us))
            .collect::<Vec<_>>()
    );
    // A message wakes it; being behind, its event is a correction, not a stall.
    let out = e
        .record(
            pid(1),
            1,
            &query("s", "quiet", T0 + 2 * S, 10),
            T0 + 200 * S,
        )
        .unwrap();
    assert_eq!(out, RecordOutcome::Correction);
}

#[test]
fn partition_that_never_received_anything_goes_idle_after_the_timeout() {
    let mut e = assigned(cfg(), &[0, 1]);
    e.record(pid(0), 0, &query("s", "h", T0, 10), T0).unwrap();
    e.record(pid(0), 1, &query("s", "h", T0 + 2 * MIN, 10), T0)
        .unwrap();
    assert_eq!(
        e.advance(T0),
        None,
        "an empty partition holds back at first"
    );
    assert_eq!(e.advance(T0 + 29 * S), None);
    assert_eq!(e.advance(T0 + 30 * S), Some(T0 + 2 * MIN - 5 * S));
}

#[test]
fn empty_windows_give_no_rows() {
    let mut e = assigned(cfg(), &[0]);
    e.record(pid(0), 0, &request("s", "/a", 200, T0, 10), T0)
        .unwrap();
    e.record(pid(0), 1, &request("s", "/a", 503, T0 + 10 * MIN, 10), T0)
        .unwrap();
    let f = drain(&mut e);
    let starts: Vec<i64> = f.closed.request.iter().map(|r| r.window_start_us).collect();
    assert_eq!(starts, vec![T0, T0 + 10 * MIN]);
    assert_eq!(f.closed.request[1].figures.status_5xx, 1);
    assert_eq!(f.closed.request[0].figures.status_2xx, 1);
}

#[test]
fn clamped_values_keep_exact_figures() {
    let mut e = assigned(cfg(), &[0]);
    let values = [0, -3, 4_000_000_000, 7, 3_600_000_000];
    for (i, v) in values.into_iter().enumerate() {
        e.record(pid(0), i as i64, &query("s", "h", T0, v), T0)
            .unwrap();
    }
    let f = drain(&mut e);
    assert_eq!(f.counters.query.clamped, 3);
    let l = &f.closed.query[0].figures.latency;
    assert_eq!(
        (l.count, l.clamped, l.min_us, l.max_us),
        (5, 3, -3, 4_000_000_000)
    );
    assert_eq!(l.sum_us, values.iter().sum::<i64>());
    assert_eq!(l.hist.len(), 5);
    let h = l.hist.to_histogram();
    assert_eq!(h.count_at(1), 2);
    assert_eq!(h.max(), h.highest_equivalent(3_600_000_000));
}

#[test]
fn service_quota_routes_new_keys_to_the_services_overflow_with_exact_totals() {
    let cap = 5;
    let mut e = assigned(
        WindowConfig {
            max_series_per_service: cap,
            ..cfg()
        },
        &[0],
    );
    let mut expected = std::collections::BTreeMap::<&str, (u64, i64)>::new();
    for i in 0..100_i64 {
        let service = if i % 2 == 0 { "even" } else { "odd" };
        let latency = 100 + i;
        e.record(
            pid(0),
            i,
            &query(service, &format!("h{i}"), T0, latency),
            T0,
        )
        .unwrap();
        // Existing keys keep aggregating into their own series.
        e.record(pid(0), 1000 + i, &query(service, "h0", T0, 1), T0)
            .unwrap();
        let t = expected.entry(service).or_default();
        *t = (t.0 + 2, t.1 + latency + 1);
    }
    assert!(e.live_series() <= 2 * (cap + 1), "{}", e.live_series());
    let f = drain(&mut e);
    assert!(f.counters.query.overflow > 0);
    let mut totals = std::collections::BTreeMap::<&str, (u64, i64)>::new();
    for r in &f.closed.query {
        let t = totals
            .entry(if r.key.service == "even" {
                "even"
            } else {
                "odd"
            })
            .or_default();
        *t = (
            t.0 + r.figures.latency.count,
            t.1 + r.figures.latency.sum_us,
        );
    }
    assert_eq!(totals, expected);
    let overflow: Vec<_> = f
        .closed
        .query
        .iter()
        .filter(|r| r.key.query_hash == OVERFLOW_KEY)
        .collect();
    assert_eq!(overflow.len(), 2, "one overflow series per service");
    let routed: u64 = overflow.iter().map(|r| r.figures.latency.count).sum();
    assert_eq!(routed, f.counters.query.overflow);
}

#[test]
fn event_years_in_the_future_is_refused_without_opening_a_window() {
    let mut e = assigned(cfg(), &[0]);
    let years = 10 * 365 * 24 * 3600 * S;
    let out = e
        .record(pid(0), 0, &query("s", "h", T0 + years, 10), T0)
        .unwrap();
    assert_eq!(out, RecordOutcome::Future);
    assert_eq!(e.live_series(), 0);
    e.record(pid(0), 1, &query("s", "h", T0, 10), T0).unwrap();
    assert_eq!(
        e.advance(T0),
        Some(T0 - 5 * S),
        "the future event did not move the watermark"
    );
    let f = e.flush();
    assert_eq!(f.counters.query.future, 1);
    assert_eq!(f.progress[0].applied_through_offset, 2);
}

#[test]
fn partition_with_only_future_events_goes_idle() {
    let mut e = assigned(cfg(), &[0, 1]);
    let years = 10 * 365 * 24 * 3600 * S;
    e.record(pid(0), 0, &query("s", "h", T0 + 2 * MIN, 10), T0)
        .unwrap();
    for i in 0..40 {
        let now = T0 + i * S;
        e.record(pid(1), i, &query("s", "h", T0 + years, 10), now)
            .unwrap();
        e.advance(now);
    }
    // Partition 1 never had a usable event; it stopped holding back 30 s after the first advance.
    assert_eq!(e.watermark_us(), Some(T0 + 2 * MIN - 5 * S));
}

#[test]
fn huge_timestamps_do_not_hang_or_allocate_per_window() {
    // Even if the caller's clock agrees with a far-future event, the engine opens exactly one
    // window for it and never walks the windows in between.
    let mut e = assigned(cfg(), &[0]);
    e.record(pid(0), 0, &query("s", "h", T0, 10), T0).unwrap();
    for (i, t) in [T0 + 100 * 365 * 24 * 3600 * S, i64::MAX - 1, i64::MAX]
        .into_iter()
        .enumerate()
    {
        e.record(pid(0), 1 + i as i64, &query("s", "h", t, 10), t)
            .unwrap();
    }
    assert_eq!(e.live_series(), 3);
    let f = drain(&mut e);
    // The window at the end of time saturates at i64::MAX and never closes; it must not panic.
    assert_eq!(f.closed.query.len(), 2);
    assert_eq!(f.closed.query[0].window_start_us, T0);
    assert_eq!(e.live_series(), 1);
}

#[test]
fn late_events_beyond_the_horizon_are_too_late() {
    let mut e = assigned(cfg(), &[0]);
    e.record(
        pid(0),
        0,
        &query("s", "h", T0 + 3 * 3600 * S, 10),
        T0 + 3 * 3600 * S,
    )
    .unwrap();
    e.advance(T0);
    e.flush();
    let t = T0 + 3 * 3600 * S;
    // Window [T0+1h58m, T0+1h59m) ended more than the 1 h horizon before the watermark.
    let out = e
        .record(pid(0), 1, &query("s", "h", T0 + 118 * MIN, 10), t)
        .unwrap();
    assert_eq!(out, RecordOutcome::TooLate);
    let out = e
        .record(pid(0), 2, &query("s", "h", T0 + 2 * 3600 * S, 10), t)
        .unwrap();
    assert_eq!(out, RecordOutcome::Correction);
    let f = e.flush();
    assert_eq!(
        (f.counters.query.too_late, f.counters.query.corrections),
        (1, 1)
    );
    assert_eq!(f.corrections.query.len(), 1);
}

#[test]
fn too_late_is_judged_against_the_partitions_own_watermark_too() {
    // Partition 1 has no event yet and holds the operator watermark back; an event hours
    // behind partition 0's own stream is too late all the same, whatever the other's timing.
    let mut e = assigned(cfg(), &[0, 1]);
    let now = T0 + 3 * 3600 * S;
    let at = |t| query("s", "h", t, 10);
    e.record(pid(0), 0, &at(now), now).unwrap();
    assert_eq!(e.advance(now), None);
    assert_eq!(
        e.record(pid(0), 1, &at(T0), now).unwrap(),
        RecordOutcome::TooLate
    );
    let out = e.record(pid(0), 2, &at(T0 + 2 * 3600 * S), now).unwrap();
    assert_eq!(
        out,
        RecordOutcome::Aggregated,
        "within the horizon, window open"
    );
}

#[test]
fn progress_reports_resume_and_applied_offsets() {
    let mut e = assigned(cfg(), &[0, 1]);
    e.record(pid(0), 10, &query("s", "h", T0, 10), T0).unwrap();
    e.record(pid(0), 11, &query("s", "h", T0 + MIN + 30 * S, 10), T0)
        .unwrap();
    e.record(pid(0), 12, &query("s", "h", T0 + 2 * MIN, 10), T0)
        .unwrap();
    e.record(pid(1), 5, &query("s", "h", T0 + 2 * MIN, 10), T0)
        .unwrap();
    e.advance(T0);
    let f = e.flush();
    assert_eq!(f.watermark_us, Some(T0 + 2 * MIN - 5 * S));
    assert_eq!(
        f.progress,
        vec![
            PartitionProgress {
                partition: pid(0),
                resume_offset: 11,
                applied_through_offset: 13,
                applied_watermark_us: Some(T0 + 2 * MIN - 5 * S),
            },
            PartitionProgress {
                partition: pid(1),
                resume_offset: 5,
                applied_through_offset: 6,
                applied_watermark_us: Some(T0 + 2 * MIN - 5 * S),
            },
        ]
    );
    let f = drain(&mut e);
    assert_eq!(
        f.progress[0].resume_offset, 13,
        "nothing open: the next offset"
    );
}

#[test]
fn replay_skips_stored_windows_and_aggregates_open_ones() {
    let mut e = engine(cfg());
    let resume = ResumeState {
        applied_watermark_us: Some(T0 + MIN),
        applied_through_offset: Some(20),
    };
    e.assign(pid(0), resume);
    // Below applied_through, window stored: skip. Below, window open then: aggregate.
    assert_eq!(
        e.record(pid(0), 15, &query("s", "h", T0 + 30 * S, 1), T0)
            .unwrap(),
        RecordOutcome::Skipped
    );
    assert_eq!(
        e.record(pid(0), 16, &query("s", "h", T0 + MIN, 2), T0)
            .unwrap(),
        RecordOutcome::Aggregated
    );
    // At or past applied_through, a stored window takes a correction.
    assert_eq!(
        e.record(pid(0), 20, &query("s", "h", T0 + 30 * S, 4), T0)
            .unwrap(),
        RecordOutcome::Correction
    );
    // The partition's watermark starts at the stored one, not below.
    assert_eq!(e.advance(T0), Some(T0 + MIN));
    let f = e.flush();
    assert_eq!(f.counters.query.skipped, 1);
    assert_eq!(f.corrections.query[0].figures.latency.sum_us, 4);
    assert!(f.closed.is_empty());
    assert_eq!(f.progress[0].resume_offset, 16);
    assert_eq!(f.progress[0].applied_watermark_us, Some(T0 + MIN));
}

#[test]
fn revoke_drops_state_and_assign_replaces_it() {
    let mut e = assigned(cfg(), &[0, 1]);
    e.record(pid(0), 0, &query("s", "h", T0, 10), T0).unwrap();
    e.record(pid(1), 0, &query("s", "h", T0, 10), T0).unwrap();
    assert_eq!(e.live_series(), 2);
    assert!(e.revoke(pid(1)));
    assert!(!e.revoke(pid(1)));
    assert_eq!(e.live_series(), 1);
    e.assign(pid(0), ResumeState::default());
    assert_eq!(e.live_series(), 0);
    assert!(drain(&mut e).closed.is_empty());
}

#[test]
fn request_and_resource_figures() {
    let mut e = assigned(
        WindowConfig {
            tenant_dimension: true,
            ..cfg()
        },
        &[0],
    );
    for (i, status) in [200, 201, 304, 404, 500, 503, 101].into_iter().enumerate() {
        e.record(
            pid(0),
            i as i64,
            &request("s", "/a", status, T0 + i as i64, 1000),
            T0,
        )
        .unwrap();
    }
    e.record(pid(0), 10, &resource("s", "i-1", T0 + 2 * S, 0.25), T0)
        .unwrap();
    e.record(pid(0), 11, &resource("s", "i-1", T0 + S, 0.75), T0)
        .unwrap();
    let f = drain(&mut e);
    let r = &f.closed.request[0].figures;
    assert_eq!(
        (
            r.status_2xx,
            r.status_3xx,
            r.status_4xx,
            r.status_5xx,
            r.status_other
        ),
        (2, 1, 1, 2, 1)
    );
    assert_eq!(r.latency.count, 7);
    let g = &f.closed.resource[0].figures;
    assert_eq!(g.samples, 2);
    assert_eq!(
        (g.cpu_ppm.min, g.cpu_ppm.max, g.cpu_ppm.last),
        (250_000, 750_000, 250_000)
    );
    assert_eq!(g.memory_utilization_ppm.max, 300_000);
    assert_eq!(g.pool_utilization_ppm.max, 750_000);
    assert_eq!(
        g.gc_pause_us.count, 0,
        "absent optional gauges are not recorded"
    );
    assert_eq!((g.cache_hits, g.cache_misses), (18, 6));
    assert_eq!(g.cache_hit_ratio(), Some(0.75));
}

/// Issue 11, section 4: when every partition has gone quiet, the watermark follows the clock
/// (bounded by `now - lateness - idle`) up to the end of the window of the latest event, so the
/// last window closes; a later event of that window is a correction.
#[test]
fn quiet_partitions_close_their_last_window_by_the_clock() {
    let (lateness, idle) = (Duration::from_secs(5), Duration::from_secs(30));
    let mut e = assigned(
        WindowConfig {
            allowed_lateness: lateness,
            idle_timeout: idle,
            ..cfg()
        },
        &[0, 1],
    );
    let last = T0 + 10 * S;
    e.record(pid(0), 0, &query("s", "h", last, 7), last)
        .unwrap();
    e.record(pid(1), 0, &query("s", "h", T0, 7), T0).unwrap();
    let bound = |now: i64| now - 5 * S - 30 * S;
    // Not all idle yet: event time alone (T0 + 10 s - 5 s) holds the window open.
    assert_eq!(e.advance(last + 29 * S), Some(last - 5 * S));
    assert!(e.flush().closed.is_empty());
    // All idle, but the clock bound is still before the window's end.
    let end = T0 + MIN;
    assert!(bound(end + 35 * S - 1) < end);
    e.advance(end + 35 * S - 1);
    assert!(e.flush().closed.is_empty());
    // At end + lateness + idle the window closes, and the watermark stops at its end.
    assert_eq!(e.advance(end + 35 * S), Some(end));
    let f = e.flush();
    assert_eq!(f.closed.query.len(), 1);
    assert_eq!(f.closed.query[0].figures.latency.count, 2);
    assert_eq!(e.advance(end + 3600 * S), Some(end));
    // A straggler of that window is a correction; one of the next window is aggregated.
    assert_eq!(
        e.record(pid(0), 1, &query("s", "h", last, 7), end + 3600 * S),
        Ok(RecordOutcome::Correction)
    );
    assert_eq!(
        e.record(pid(0), 2, &query("s", "h", end, 7), end + 3600 * S),
        Ok(RecordOutcome::Aggregated)
    );
}

/// Issue 11, section 2: a partition replaying below its claimed `applied_through_offset` does
/// not close windows beyond its stored watermark, whatever the operator watermark, and its
/// progress never goes below the claimed marks.
#[test]
fn a_replaying_partition_holds_its_stored_marks() {
    let mut e = assigned(cfg(), &[1]);
    let stored = T0 + MIN;
    e.assign(
        pid(0),
        ResumeState {
            applied_watermark_us: Some(stored),
            applied_through_offset: Some(100),
        },
    );
    e.note_position(pid(0), 50).unwrap();
    // Partition 1 is far ahead; partition 0 replays an event of the window after `stored`.
    e.record(pid(1), 0, &query("s", "h", T0 + 10 * MIN, 7), T0)
        .unwrap();
    assert_eq!(
        e.record(pid(0), 50, &query("s", "h", stored + 1, 7), T0),
        Ok(RecordOutcome::Aggregated)
    );
    e.record(pid(0), 51, &query("s", "h", T0 + 9 * MIN, 7), T0)
        .unwrap();
    assert!(e.advance(T0).unwrap() > stored + MIN);
    let f = e.flush();
    assert!(
        f.closed.is_empty(),
        "closed while replaying: {:?}",
        f.closed
    );
    let p0 = f.progress.iter().find(|p| p.partition == pid(0)).unwrap();
    assert_eq!(
        (
            p0.resume_offset,
            p0.applied_through_offset,
            p0.applied_watermark_us
        ),
        (50, 100, Some(stored))
    );
    // Past the claimed mark, the partition follows the operator watermark again.
    e.note_position(pid(0), 100).unwrap();
    let f = e.flush();
    assert_eq!(f.closed.query.len(), 1);
    assert_eq!(f.closed.query[0].window_start_us, stored);
}

#[test]
fn global_cap_routes_new_keys_to_the_one_global_overflow_with_exact_totals() {
    // A producer inventing a service per event: the per-service quota never binds, the global
    // cap does, and everything past it lands in one series per kind and window.
    let mut e = assigned(
        WindowConfig {
            max_series: 10,
            ..cfg()
        },
        &[0],
    );
    let mut sum = 0;
    for i in 0..1000_i64 {
        e.record(pid(0), i, &query(&format!("svc-{i}"), "h", T0, 100 + i), T0)
            .unwrap();
        sum += 100 + i;
    }
    assert_eq!(
        e.live_series(),
        11,
        "ten keys and the global overflow series"
    );
    let f = drain(&mut e);
    assert_eq!(f.counters.query.overflow, 990);
    let count: u64 = f.closed.query.iter().map(|r| r.figures.latency.count).sum();
    let total: i64 = f
        .closed
        .query
        .iter()
        .map(|r| r.figures.latency.sum_us)
        .sum();
    assert_eq!((count, total), (1000, sum), "totals exact");
    let global: Vec<_> = f
        .closed
        .query
        .iter()
        .filter(|r| r.key.service == OVERFLOW_KEY)
        .collect();
    assert_eq!(global.len(), 1);
    assert_eq!(global[0].key.query_hash, OVERFLOW_KEY);
    assert_eq!(global[0].figures.latency.count, 990);
}

#[test]
fn memory_budget_routes_new_keys_to_overflow_before_it_is_exceeded() {
    // 1 MiB of budget, 8 KiB texts cut to 1 KiB: about a thousand series fit.
    let mut e = assigned(
        WindowConfig {
            max_memory_mb: 1,
            max_query_text_bytes: 1024,
            ..cfg()
        },
        &[0],
    );
    let text = "x".repeat(8192);
    for i in 0..5000_i64 {
        let mut q = query("svc", &format!("h{i}"), T0, 100);
        if let perfstream_events::Event::Query(ref mut q) = q {
            q.query_text = Some(text.clone());
        }
        e.record(pid(0), i, &q, T0).unwrap();
        assert!(
            e.series_bytes() <= (1 << 20) + 4096,
            "budget passed at {i}: {}",
            e.series_bytes()
        );
    }
    let held = e.live_series();
    assert!((500..2000).contains(&held), "{held} series held");
    let f = drain(&mut e);
    let count: u64 = f.closed.query.iter().map(|r| r.figures.latency.count).sum();
    assert_eq!(count, 5000, "totals exact");
    assert!(
        f.closed.query.iter().all(|r| r
            .figures
            .query_text
            .as_ref()
            .is_none_or(|t| t.len() <= 1024)),
        "texts cut to window.max_query_text_bytes"
    );
    assert_eq!(e.series_bytes(), 0, "everything released after the flush");
}

/// Issue 14: a sample keeps its event's trace id (none for an empty one), and the trace id's
/// bytes count in the memory budget from the moment the series is created.
#[test]
fn trace_ids_reach_the_samples_and_count_in_the_memory_budget() {
    let traced = |e: perfstream_events::Event, id: &str| match e {
        perfstream_events::Event::Query(q) => {
            perfstream_events::Event::Query(perfstream_events::QueryEvent {
                trace_id: Some(id.into()),
                ..q
            })
        }
        perfstream_events::Event::Request(r) => {
            perfstream_events::Event::Request(perfstream_events::RequestEvent {
                trace_id: Some(id.into()),
                ..r
            })
        }
        other => other,
    };
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    for event in [query("s", "h", T0, 5), request("s", "/a", 200, T0, 5)] {
        let mut plain = assigned(cfg(), &[0]);
        plain.record(pid(0), 0, &event, T0).unwrap();
        let mut with = assigned(cfg(), &[0]);
        with.record(pid(0), 0, &traced(event.clone(), id), T0)
            .unwrap();
        assert_eq!(with.series_bytes(), plain.series_bytes() + id.len());
        // No samples kept: nothing charged for them.
        let mut none = assigned(
            WindowConfig {
                samples_per_series: 0,
                ..cfg()
            },
            &[0],
        );
        none.record(pid(0), 0, &traced(event.clone(), id), T0)
            .unwrap();
        assert!(none.series_bytes() < plain.series_bytes());
    }

    let mut e = assigned(cfg(), &[0]);
    e.record(pid(0), 0, &traced(query("s", "h", T0, 9), id), T0)
        .unwrap();
    e.record(pid(0), 1, &traced(query("s", "h", T0, 7), ""), T0)
        .unwrap();
    e.record(pid(0), 2, &query("s", "h", T0, 5), T0).unwrap();
    e.record(pid(0), 3, &traced(request("s", "/a", 200, T0, 5), id), T0)
        .unwrap();
    let f = drain(&mut e);
    let q: Vec<_> = f.closed.query[0]
        .figures
        .samples
        .iter()
        .map(|s| s.trace_id.as_deref())
        .collect();
    assert_eq!(q, [Some(id), None, None]);
    assert_eq!(
        f.closed.request[0].figures.samples[0].trace_id.as_deref(),
        Some(id)
    );
}
