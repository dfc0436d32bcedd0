//! The tiers and retention jobs against a real Postgres.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use perfstream_store::{Retention, Store};
use perfstream_window::{Latency, Merge, PERCENTILES, QueryRollup, Rollups};
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use support::*;

const DAY_US: i64 = 24 * HOUR_US;
const HORIZON: Duration = Duration::from_secs(600);

/// Raw events: (time, key index, latency µs).
fn events(seed: u64, from: i64, to: i64, n: usize) -> Vec<(i64, usize, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (
                rng.random_range(from..to),
                rng.random_range(0..3usize),
                rng.random_range(1..2_000_000i64),
            )
        })
        .collect()
}

fn hash(k: usize) -> String {
    format!("q{k}")
}

/// Per-minute query rollups of `events`, as the window crate would produce them.
fn minute_rollups(events: &[(i64, usize, i64)]) -> Vec<QueryRollup> {
    let mut by: BTreeMap<(i64, usize), Vec<i64>> = BTreeMap::new();
    for (t, k, v) in events {
        by.entry((t.div_euclid(MIN_US) * MIN_US, *k))
            .or_default()
            .push(*v);
    }
    by.into_iter()
        .map(|((ws, k), vs)| query(ws, "api", &hash(k), &vs, 2))
        .collect()
}

/// The same events aggregated directly into one latency per (period, key).
fn direct(events: &[(i64, usize, i64)], period_us: i64) -> BTreeMap<(i64, String), Latency> {
    let mut out: BTreeMap<(i64, String), Latency> = BTreeMap::new();
    for (t, k, v) in events {
        out.entry((t.div_euclid(period_us) * period_us, hash(*k)))
            .or_insert_with(|| latency(&[]))
            .record(*v);
    }
    out
}

async fn write_all(store: &Store, owner: &str, rollups: Vec<QueryRollup>) {
    let claim = store.claim_partition(GROUP, TOPIC, 0, owner).await.unwrap();
    for (seq, chunk) in (1..).zip(rollups.chunks(100)) {
        let f = flush(
            owner,
            Rollups {
                query: chunk.to_vec(),
                ..Rollups::default()
            },
            vec![progress(&claim, 0, seq, 1, T0)],
        );
        commit(store, &f).await;
    }
}

/// (count, sum, min, max, percentiles, hist) of a stored row.
type Figures = (i64, i64, i64, i64, Vec<i64>, Vec<u8>);

/// Stored tier rows: (window_start µs, hash) -> figures.
async fn tier_rows(pool: &PgPool, resolution: &str) -> BTreeMap<(i64, String), Figures> {
    type Row = (i64, String, i64, i64, i64, i64, Vec<i64>, Vec<u8>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT (extract(epoch FROM window_start) * 1000000)::bigint, query_hash, count, sum_us, min_us, max_us, \
                ARRAY[p50_us, p90_us, p95_us, p99_us, p999_us], hist \
         FROM query_rollups WHERE resolution = $1",
    )
    .bind(resolution)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(ws, h, c, s, mn, mx, p, hist)| ((ws, h), (c, s, mn, mx, p, hist)))
        .collect()
}

fn expected(d: &BTreeMap<(i64, String), Latency>) -> BTreeMap<(i64, String), Figures> {
    d.iter()
        .map(|(k, l)| {
            (
                k.clone(),
                (
                    l.count as i64,
                    l.sum_us,
                    l.min_us,
                    l.max_us,
                    PERCENTILES.iter().map(|q| l.quantile_us(*q)).collect(),
                    perfstream_store::encode_hist(&l.hist.to_histogram()),
                ),
            )
        })
        .collect()
}

#[sqlx::test(migrations = "../../migrations")]
async fn tier_rows_equal_direct_aggregation_byte_for_byte(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    // Two hours across a day boundary; written in two halves so half the rows take the
    // merge path, as late corrections would.
    let evs = events(7, T0 - HOUR_US, T0 + HOUR_US, 6_000);
    let (first, second) = evs.split_at(3_000);
    write_all(&store, "p1", minute_rollups(first)).await;
    write_all(&store, "p1", minute_rollups(second)).await;

    // One hour and one day are over (plus the horizon), the next hour is not yet.
    let now = T0 + HOUR_US / 2 + HORIZON.as_micros() as i64;
    let r = store
        .rebuild_tiers(now, HORIZON, 1, &Retention::default())
        .await
        .unwrap();
    assert_eq!((r.hours, r.days), (1, 1));
    let hours = tier_rows(&pool, "1h").await;
    let want_hours = expected(&direct(&evs, HOUR_US));
    assert_eq!(hours.len(), 3);
    for (k, v) in &hours {
        assert_eq!(Some(v), want_hours.get(k), "1h row {k:?}");
    }

    // Later: everything is due.
    let now = T0 + 2 * DAY_US;
    let r = store
        .rebuild_tiers(now, HORIZON, 10, &Retention::default())
        .await
        .unwrap();
    assert_eq!((r.hours, r.days), (1, 1));
    assert_eq!(tier_rows(&pool, "1h").await, want_hours);
    assert_eq!(
        tier_rows(&pool, "1d").await,
        expected(&direct(&evs, DAY_US))
    );

    // Idempotent: nothing dirty, nothing done; marking everything dirty again changes no byte.
    assert_eq!(
        store
            .rebuild_tiers(now, HORIZON, 10, &Retention::default())
            .await
            .unwrap()
            .hours,
        0
    );
    sqlx::query(
        "INSERT INTO tier_dirty (tier, period_start) SELECT DISTINCT resolution, window_start \
         FROM query_rollups WHERE resolution IN ('1h', '1d')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let r = store
        .rebuild_tiers(now, HORIZON, 10, &Retention::default())
        .await
        .unwrap();
    assert_eq!((r.hours, r.days), (2, 2));
    assert_eq!(tier_rows(&pool, "1h").await, want_hours);
    assert_eq!(
        tier_rows(&pool, "1d").await,
        expected(&direct(&evs, DAY_US))
    );

    // A late correction to a child marks its hour and day again; the rebuild includes it.
    let late = vec![
        (T0 + 90_000_000, 1usize, 777_777i64),
        (T0 + 95_000_000, 1, 3),
    ];
    write_all(&store, "p1", minute_rollups(&late)).await;
    let r = store
        .rebuild_tiers(now, HORIZON, 10, &Retention::default())
        .await
        .unwrap();
    assert_eq!((r.hours, r.days), (1, 1));
    let all: Vec<_> = evs.iter().chain(&late).copied().collect();
    assert_eq!(
        tier_rows(&pool, "1h").await,
        expected(&direct(&all, HOUR_US))
    );
    assert_eq!(
        tier_rows(&pool, "1d").await,
        expected(&direct(&all, DAY_US))
    );
}

#[sqlx::test(migrations = "../../migrations")]
async fn tiers_merge_request_and_resource_rows_exactly(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let mut rollups = Rollups::default();
    let mut want_req = latency(&[]);
    let mut want_res = perfstream_window::ResourceFigures::default();
    for m in 0..60 {
        let ws = T0 + m * MIN_US;
        let vals = [1_000 + m, 50_000 - m];
        let r = request(ws, "api", "/x", &vals, (m % 2) as u64);
        want_req.merge(&r.figures.latency);
        rollups.request.push(r);
        let s = resource(
            ws,
            "api",
            "i0",
            &[(0.01 * m as f64, 100 + m, 1_000, m % 10, 10, m % 3)],
            (m, 1),
        );
        want_res.merge(&s.figures);
        rollups.resource.push(s);
    }
    commit(
        &store,
        &flush("p1", rollups, vec![progress(&claim, 0, 1, 1, T0)]),
    )
    .await;
    store
        .rebuild_tiers(T0 + 2 * DAY_US, HORIZON, 10, &Retention::default())
        .await
        .unwrap();
    let (count, hist, s5): (i64, Vec<u8>, i64) = sqlx::query_as(
        "SELECT count, hist, status_5xx FROM request_rollups WHERE resolution = '1h'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (count, hist, s5),
        (
            120,
            perfstream_store::encode_hist(&want_req.hist.to_histogram()),
            30
        )
    );
    for res in ["1h", "1d"] {
        let got: (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT samples, cpu_ppm_sum, cpu_ppm_max, memory_used_bytes_last, pool_waiters_sum, cache_hits \
             FROM resource_rollups WHERE resolution = $1",
        )
        .bind(res)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            got,
            (
                60,
                want_res.cpu_ppm.sum,
                want_res.cpu_ppm.max,
                want_res.memory_used_bytes.last,
                want_res.pool_waiters.sum,
                (0..60).sum::<i64>()
            ),
            "{res}"
        );
    }
}

/// Rows expire when their window ended at or before now - retention; a window ending one
/// minute later stays. Small batches delete all of them.
#[sqlx::test(migrations = "../../migrations")]
async fn retention_deletes_exactly_the_expired_rows(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let now = T0 + 400 * DAY_US;
    let retention = Retention {
        base: Duration::from_secs(7 * 86_400),
        hour: Duration::from_secs(90 * 86_400),
        day: Duration::from_secs(365 * 86_400),
        batch: 3,
    };
    // Base rows: 10 minutes around the 7-day cutoff, two keys each; and tier rows around theirs.
    let base_cut = now - 7 * DAY_US;
    let mut base = Vec::new();
    for m in -5..5 {
        // window_end = base_cut + m minutes
        let ws = base_cut + (m - 1) * MIN_US;
        base.push(query(ws, "api", "a", &[10], 1));
        base.push(query(ws, "api", "b", &[10], 1));
    }
    // Hours around the 90-day cutoff, days around the 365-day cutoff, made by the tiers job.
    let hour_cut = now - 90 * DAY_US;
    for h in -2..2 {
        base.push(query(hour_cut + h * HOUR_US, "api", "a", &[10], 1));
    }
    let day_cut = now - 365 * DAY_US;
    for d in -2..2 {
        base.push(query(day_cut + d * DAY_US, "api", "a", &[10], 1));
    }
    write_all(&store, "p1", base).await;
    // Tier rows made while their children were still kept.
    let keep_all = Retention {
        base: Duration::from_secs(1000 * 86_400),
        hour: Duration::from_secs(1000 * 86_400),
        ..Retention::default()
    };
    store
        .rebuild_tiers(now, HORIZON, 100, &keep_all)
        .await
        .unwrap();

    let report = store.apply_retention(now, &retention).await.unwrap();
    // Base: windows ending at cut-5..cut+4 min: 6 of them (m = -5..=0) expired, 2 keys each,
    // plus all 8 rows around the older cutoffs.
    let left_base: Vec<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM window_end) * 1000000)::bigint FROM query_rollups \
         WHERE resolution = '1m' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let want_base: Vec<i64> = (1..5).flat_map(|m| [base_cut + m * MIN_US; 2]).collect();
    assert_eq!(left_base, want_base);
    let left_hours: Vec<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM window_end) * 1000000)::bigint FROM query_rollups \
         WHERE resolution = '1h' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // Hours ending hour_cut - 1h, hour_cut (expired), hour_cut + 1h, + 2h (kept), plus the
    // hours of the base rows near the 7-day cutoff (kept).
    assert!(left_hours.iter().all(|e| *e > hour_cut));
    assert_eq!(
        left_hours
            .iter()
            .filter(|e| **e <= hour_cut + 2 * HOUR_US)
            .count(),
        2
    );
    let left_days: Vec<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM window_end) * 1000000)::bigint FROM query_rollups \
         WHERE resolution = '1d' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(left_days.iter().all(|e| *e > day_cut));
    assert_eq!(
        left_days
            .iter()
            .filter(|e| **e <= day_cut + 2 * DAY_US)
            .count(),
        2
    );
    let deleted_days = 2; // ending day_cut - 1d and day_cut
    let deleted_hours = 2 + 4; // near hour_cut, and the 4 hours of the day-cutoff base rows
    assert_eq!(report.query, 12 + 8 + deleted_hours + deleted_days);
    // Running again deletes nothing.
    assert_eq!(
        store.apply_retention(now, &retention).await.unwrap().query,
        0
    );
}

/// The periodic task rebuilds due tiers on its own and stops on shutdown.
#[sqlx::test(migrations = "../../migrations")]
async fn maintenance_task_rebuilds_due_tiers_and_stops_on_shutdown(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let now = chrono::Utc::now().timestamp_micros();
    let hour = (now - 3 * HOUR_US).div_euclid(HOUR_US) * HOUR_US;
    write_all(
        &store,
        "p1",
        minute_rollups(&events(3, hour, hour + HOUR_US, 500)),
    )
    .await;
    let settings = perfstream_store::MaintenanceSettings {
        interval: Duration::from_millis(20),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(perfstream_store::run_maintenance(
        store.clone(),
        settings,
        async {
            stopped.await.ok();
        },
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM query_rollups WHERE resolution = '1h'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if n == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tier rows never appeared"
        );
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("task stops on shutdown")
        .unwrap();
}

/// A mark for an hour whose base rows may have expired (a replay of very old data) must not
/// turn a complete '1h' row into a partial one.
#[sqlx::test(migrations = "../../migrations")]
async fn stale_marks_never_shrink_a_complete_tier_row(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let evs = events(5, T0, T0 + HOUR_US, 300);
    write_all(&store, "p1", minute_rollups(&evs)).await;
    store
        .rebuild_tiers(T0 + DAY_US, HORIZON, 10, &Retention::default())
        .await
        .unwrap();
    let full = tier_rows(&pool, "1h").await;
    assert_eq!(full, expected(&direct(&evs, HOUR_US)));
    // Ten days later the base rows are gone; a replayed event lands in the old hour.
    let later = T0 + 10 * DAY_US;
    store
        .apply_retention(later, &Retention::default())
        .await
        .unwrap();
    write_all(&store, "p1", minute_rollups(&[(T0 + 5, 0, 42)])).await;
    let r = store
        .rebuild_tiers(later, HORIZON, 10, &Retention::default())
        .await
        .unwrap();
    assert_eq!(r.hours, 0);
    assert_eq!(tier_rows(&pool, "1h").await, full);
    assert_eq!(count_rows(&store, "tier_dirty").await, 0);
}

/// Writers keep correcting hours while the tiers job keeps rebuilding them: no deadlock, no
/// error, and once the writers stop, one more run leaves every '1h' row equal to the direct
/// aggregation of everything written (no correction lost between a rebuild and its mark).
#[sqlx::test(migrations = "../../migrations")]
async fn tiers_job_racing_writers_loses_no_correction(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    // Every period is over, and within the base retention (older marks are dropped unbuilt).
    let far = T0 + 2 * DAY_US;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3i32 {
        let store = store.clone();
        let owner = format!("w{w}");
        let claim = store
            .claim_partition(GROUP, TOPIC, w, &owner)
            .await
            .unwrap();
        writers.push(tokio::spawn(async move {
            let mut all = Vec::new();
            for f in 0..15u64 {
                let evs = events(w as u64 * 100 + f, T0, T0 + 3 * HOUR_US, 200);
                let f = flush(
                    &owner,
                    Rollups {
                        query: minute_rollups(&evs),
                        ..Rollups::default()
                    },
                    vec![progress(&claim, w, f as i64 + 1, 1, T0)],
                );
                let done = store.write_flush(&f).await.map_err(|e| e.to_string())?;
                assert_eq!(done, perfstream_store::FlushCommit::Committed);
                all.extend(evs);
            }
            Ok::<_, String>(all)
        }));
    }
    let job = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut rebuilt = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                rebuilt += store
                    .rebuild_tiers(far, Duration::ZERO, 2, &Retention::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .hours;
                tokio::task::yield_now().await;
            }
            Ok::<_, String>(rebuilt)
        })
    };
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap().unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let rebuilt = job.await.unwrap().unwrap();
    assert!(
        rebuilt > 0,
        "the job never rebuilt an hour while the writers ran"
    );
    assert_eq!(
        tier_rows(&pool, "1m").await,
        expected(&direct(&all, MIN_US)),
        "base rows"
    );
    store
        .rebuild_tiers(far, Duration::ZERO, 10, &Retention::default())
        .await
        .unwrap();
    assert_eq!(
        tier_rows(&pool, "1h").await,
        expected(&direct(&all, HOUR_US))
    );
    assert_eq!(
        tier_rows(&pool, "1d").await,
        expected(&direct(&all, DAY_US))
    );
}
