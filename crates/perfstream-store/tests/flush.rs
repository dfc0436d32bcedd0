//! The write path against a real Postgres: one fresh database per test (`#[sqlx::test]`,
//! DATABASE_URL must point at a server where the user may create databases).

mod support;

use std::sync::Arc;

use perfstream_store::{FlushCommit, Stage, Store, StoreError};
use perfstream_window::{Latency, Merge, PERCENTILES, Rollups};
use sqlx::{PgPool, Row};
use support::*;

fn sample_rollups(ws: i64, salt: i64) -> Rollups {
    Rollups {
        query: vec![
            query(ws, "api", "h1", &[100 + salt, 2_000, 35_000], 3),
            query(ws, "api", "h2", &[7, 8, 9, 10_000_000], 1),
        ],
        request: vec![request(
            ws,
            "api",
            "/users",
            &[1_000, 2_000 + salt, 900_000],
            1,
        )],
        resource: vec![resource(
            ws,
            "api",
            "api-0",
            &[
                (0.5, 100, 1_000, 3, 10, 0),
                (0.7, 200 + salt, 1_000, 9, 10, 2),
            ],
            (90, 10),
        )],
    }
}

/// Reads a query row's figures back with the store's own SQL columns.
async fn stored_query(
    pool: &PgPool,
    ws: i64,
    hash: &str,
) -> Option<(i64, i64, i64, i64, Vec<i64>, Vec<u8>, i64)> {
    let row = sqlx::query(
        "SELECT count, sum_us, min_us, max_us, ARRAY[p50_us, p90_us, p95_us, p99_us, p999_us] AS p, \
                hist, rows_sum \
         FROM query_rollups WHERE resolution = '1m' AND window_start = to_timestamp($1::float8 / 1e6) \
           AND query_hash = $2",
    )
    .bind(ws as f64)
    .bind(hash)
    .fetch_optional(pool)
    .await
    .expect("select");
    row.map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    })
}

fn expect_latency(l: &Latency) -> (i64, i64, i64, i64, Vec<i64>, Vec<u8>) {
    (
        l.count as i64,
        l.sum_us,
        l.min_us,
        l.max_us,
        PERCENTILES.iter().map(|q| l.quantile_us(*q)).collect(),
        perfstream_store::encode_hist(&l.hist.to_histogram()),
    )
}

#[sqlx::test(migrations = "../../migrations")]
async fn fast_path_stores_exact_figures_and_progress(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    assert_eq!(claim.generation, 1);
    assert_eq!(claim.resume_offset, None);

    let rollups = sample_rollups(T0, 0);
    let f = flush(
        "p1",
        rollups.clone(),
        vec![progress(&claim, 0, 1, 100, T0 + MIN_US)],
    );
    commit(&store, &f).await;

    let (c, s, mn, mx, p, h, rows) = stored_query(&pool, T0, "h1").await.expect("row");
    let want = expect_latency(&rollups.query[0].figures.latency);
    assert_eq!((c, s, mn, mx, p, h), want);
    assert_eq!(rows, 9);
    for t in ["query_rollups", "request_rollups", "resource_rollups"] {
        assert_eq!(
            count_rows(&store, t).await,
            if t == "query_rollups" { 2 } else { 1 }
        );
    }
    let text: String =
        sqlx::query_scalar("SELECT normalized_text FROM query_catalog WHERE query_hash = 'h1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(text, "SELECT * FROM t_h1 WHERE id = ?");
    let r = sqlx::query("SELECT status_5xx, error_rate FROM request_rollups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(r.get::<i64, _>(0), 1);
    assert!((r.get::<f64, _>(1) - 1.0 / 3.0).abs() < 1e-12);
    let r = sqlx::query(
        "SELECT cpu_ppm_max, cpu_ppm_mean, memory_used_bytes_last, pool_waiters_max, cache_hit_ratio, heap_bytes_samples, heap_bytes_max \
         FROM resource_rollups",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(r.get::<i64, _>(0), 700_000);
    assert_eq!(r.get::<f64, _>(1), 600_000.0);
    assert_eq!(r.get::<i64, _>(2), 200);
    assert_eq!(r.get::<i64, _>(3), 2);
    assert_eq!(r.get::<f64, _>(4), 0.9);
    assert_eq!(r.get::<i64, _>(5), 0);
    assert_eq!(r.get::<Option<i64>, _>(6), None);

    // A new claim sees the progress; its generation moved on.
    let again = store.claim_partition(GROUP, TOPIC, 0, "p2").await.unwrap();
    assert_eq!(again.generation, 2);
    assert_eq!(again.resume_offset, Some(100));
    assert_eq!(again.applied_through_offset, Some(110));
    assert_eq!(again.applied_watermark_us, Some(T0 + MIN_US));
}

#[sqlx::test(migrations = "../../migrations")]
async fn existing_rows_merge_exactly_with_the_window_crate_merge(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let a = sample_rollups(T0, 0);
    let b = sample_rollups(T0, 5);
    commit(
        &store,
        &flush("p1", a.clone(), vec![progress(&claim, 0, 1, 1, T0)]),
    )
    .await;
    // The second flush also carries a duplicate of one key (closed window + correction).
    let mut b2 = b.clone();
    b2.query.push(query(T0, "api", "h1", &[1, 1_000_000], 7));
    commit(
        &store,
        &flush("p1", b2.clone(), vec![progress(&claim, 0, 2, 2, T0)]),
    )
    .await;

    let mut want = a.query[0].figures.clone();
    want.merge(&b.query[0].figures);
    want.merge(&b2.query[2].figures);
    let (c, s, mn, mx, p, h, rows) = stored_query(&pool, T0, "h1").await.expect("row");
    assert_eq!((c, s, mn, mx, p, h), expect_latency(&want.latency));
    assert_eq!(rows, want.rows_sum);

    let mut res = a.resource[0].figures.clone();
    res.merge(&b.resource[0].figures);
    let r = sqlx::query("SELECT samples, memory_used_bytes_sum, memory_used_bytes_last, cache_hits FROM resource_rollups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(r.get::<i64, _>(0), res.samples as i64);
    assert_eq!(r.get::<i64, _>(1), res.memory_used_bytes.sum);
    assert_eq!(r.get::<i64, _>(2), res.memory_used_bytes.last);
    assert_eq!(r.get::<i64, _>(3), 180);
    assert_eq!(count_rows(&store, "query_rollups").await, 2);
}

/// Every stage before COMMIT: a fault there leaves no trace, neither new rows, nor merged
/// figures, nor catalog, nor dirty marks, nor progress.
#[sqlx::test(migrations = "../../migrations")]
async fn a_flush_commits_or_rolls_back_whole(pool: PgPool) {
    let base = Store::from_pool(pool.clone());
    let claim = base.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    // Existing rows, so the merge path runs too.
    commit(
        &base,
        &flush(
            "p1",
            sample_rollups(T0, 0),
            vec![progress(&claim, 0, 1, 1, T0)],
        ),
    )
    .await;
    let snapshot = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT concat_ws('|', \
               (SELECT string_agg(concat_ws(',', window_start, query_hash, count, sum_us, md5(hist)), ';' ORDER BY window_start, query_hash) FROM query_rollups), \
               (SELECT string_agg(concat_ws(',', window_start, count, status_5xx), ';' ORDER BY window_start) FROM request_rollups), \
               (SELECT string_agg(concat_ws(',', window_start, samples, cpu_ppm_sum), ';' ORDER BY window_start) FROM resource_rollups), \
               (SELECT string_agg(concat_ws(',', query_hash, last_seen), ';' ORDER BY query_hash) FROM query_catalog), \
               (SELECT string_agg(concat_ws(',', tier, period_start), ';' ORDER BY period_start) FROM tier_dirty), \
               (SELECT string_agg(concat_ws(',', partition, resume_offset, applied_through_offset, applied_watermark), ';') FROM consumer_offsets))",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = snapshot().await;
    // Same window (merge path) and the next hour (fast path, new catalog range, new mark).
    let mut next = sample_rollups(T0, 3);
    let later = sample_rollups(T0 + HOUR_US, 1);
    next.query.extend(later.query);
    next.request.extend(later.request);
    next.resource.extend(later.resource);
    let f = flush("p1", next, vec![progress(&claim, 0, 2, 50, T0 + HOUR_US)]);

    let stages = [
        Stage::Inserted {
            table: "query_rollups",
        },
        Stage::Merged {
            table: "query_rollups",
        },
        Stage::Inserted {
            table: "request_rollups",
        },
        Stage::Merged {
            table: "request_rollups",
        },
        Stage::Inserted {
            table: "resource_rollups",
        },
        Stage::Merged {
            table: "resource_rollups",
        },
        Stage::Catalog,
        Stage::DirtyMarks,
        Stage::BeforeCommit,
    ];
    for stage in stages {
        let hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = hit.clone();
        let store = Store::from_pool(pool.clone()).with_fault_hook(Arc::new(move |s| {
            if s == stage {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                Err(StoreError::Injected { stage: s })
            } else {
                Ok(())
            }
        }));
        let err = store
            .write_flush(&f)
            .await
            .expect_err("fault must abort the flush");
        assert!(
            matches!(err, StoreError::Injected { .. }),
            "{stage:?}: {err}"
        );
        assert!(!err.is_retriable());
        assert!(
            hit.load(std::sync::atomic::Ordering::SeqCst),
            "{stage:?} never reached"
        );
        assert_eq!(
            snapshot().await,
            before,
            "partial flush visible after a fault at {stage:?}"
        );
    }
    // After COMMIT the fault is reported but the flush is in.
    let store = Store::from_pool(pool.clone()).with_fault_hook(Arc::new(|s| match s {
        Stage::AfterCommit => Err(StoreError::Injected { stage: s }),
        _ => Ok(()),
    }));
    store
        .write_flush(&f)
        .await
        .expect_err("after-commit fault is reported");
    let after = snapshot().await;
    assert_ne!(after, before);
    assert_eq!(count_rows(&store, "query_rollups").await, 4);
    let resume: i64 = sqlx::query_scalar("SELECT resume_offset FROM consumer_offsets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(resume, 50);
    // Re-sent after an error that came after COMMIT, it is recognised and changes nothing.
    assert_eq!(
        base.write_flush(&f).await.unwrap(),
        FlushCommit::AlreadyApplied
    );
    assert_eq!(snapshot().await, after);
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_stale_owner_is_fenced_and_its_whole_flush_refused(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let old = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let p1_other = store.claim_partition(GROUP, TOPIC, 1, "p1").await.unwrap();
    // p2 takes partition 0 over while p1 is stalled.
    let new = store.claim_partition(GROUP, TOPIC, 0, "p2").await.unwrap();
    assert_eq!(new.generation, old.generation + 1);

    // p1's flush covers partitions 0 (lost) and 1 (still its own): refused whole.
    let f = flush(
        "p1",
        sample_rollups(T0, 0),
        vec![
            progress(&old, 0, 1, 10, T0),
            progress(&p1_other, 1, 1, 10, T0),
        ],
    );
    let err = store.write_flush(&f).await.expect_err("stale owner");
    match &err {
        StoreError::Fenced { topic, partition } => {
            assert_eq!((topic.as_str(), *partition), (TOPIC, 0))
        }
        other => panic!("expected Fenced, got {other}"),
    }
    assert!(!err.is_retriable());
    assert_eq!(count_rows(&store, "query_rollups").await, 0);
    assert_eq!(count_rows(&store, "tier_dirty").await, 0);
    let p1_resume: Option<i64> =
        sqlx::query_scalar("SELECT resume_offset FROM consumer_offsets WHERE partition = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(p1_resume, None);

    // The right generation under the wrong owner name is refused too.
    let f = flush("p1", Rollups::default(), vec![progress(&new, 0, 1, 10, T0)]);
    assert!(matches!(
        store.write_flush(&f).await,
        Err(StoreError::Fenced { .. })
    ));

    // The successor's flush lands.
    let f = flush(
        "p2",
        sample_rollups(T0, 0),
        vec![progress(&new, 0, 1, 20, T0)],
    );
    commit(&store, &f).await;
    let (owner, resume): (String, i64) =
        sqlx::query_as("SELECT owner, resume_offset FROM consumer_offsets WHERE partition = 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((owner.as_str(), resume), ("p2", 20));

    // Rollups without any progress cannot be fenced: refused.
    let f = flush("p2", sample_rollups(T0, 0), vec![]);
    assert!(matches!(
        store.write_flush(&f).await,
        Err(StoreError::MissingProgress)
    ));

    // A partition never claimed is fenced as well.
    let ghost = perfstream_store::Claim {
        generation: 1,
        resume_offset: None,
        applied_through_offset: None,
        applied_watermark_us: None,
    };
    let f = flush(
        "p2",
        Rollups::default(),
        vec![progress(&ghost, 7, 1, 1, T0)],
    );
    assert!(matches!(
        store.write_flush(&f).await,
        Err(StoreError::Fenced { partition: 7, .. })
    ));
}

/// Several writers (own partitions, own connections) flush overlapping keys of the same
/// windows in different orders at once: every flush succeeds (no deadlock) and every count
/// lands exactly once.
#[sqlx::test(migrations = "../../migrations")]
async fn concurrent_writers_on_overlapping_keys_give_exact_totals(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    const WRITERS: i32 = 4;
    const FLUSHES: usize = 12;
    const KEYS: usize = 40;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let owner = format!("w{w}");
        let claim = store
            .claim_partition(GROUP, TOPIC, w, &owner)
            .await
            .unwrap();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for f in 0..FLUSHES {
                let mut rollups = Rollups::default();
                // Each writer covers 3/4 of the keys in two windows, rotated, and lists them in
                // its own order (reversed for odd writers).
                let mut keys: Vec<usize> = (0..KEYS * 3 / 4)
                    .map(|i| (i + w as usize * 10 + f) % KEYS)
                    .collect();
                if w % 2 == 1 {
                    keys.reverse();
                }
                for k in keys {
                    for ws in [T0, T0 + MIN_US] {
                        let v = 1_000 + (k as i64) * 10 + w as i64;
                        rollups
                            .query
                            .push(query(ws, "api", &format!("h{k:02}"), &[v, v * 2], 1));
                        rollups
                            .request
                            .push(request(ws, "api", &format!("/e{k:02}"), &[v], 0));
                    }
                }
                let write = flush(
                    &owner,
                    rollups.clone(),
                    vec![progress(&claim, w, f as i64 + 1, f as i64, T0)],
                );
                let done = store
                    .write_flush(&write)
                    .await
                    .map_err(|e| format!("{owner}: {e}"))?;
                assert_eq!(done, FlushCommit::Committed);
                sent.push(rollups);
            }
            Ok::<_, String>(sent)
        }));
    }
    let mut want_query = std::collections::BTreeMap::new();
    let mut want_request = std::collections::BTreeMap::new();
    for t in tasks {
        for rollups in t.await.unwrap().unwrap() {
            for r in rollups.query {
                want_query
                    .entry((r.window_start_us, r.key.query_hash.clone()))
                    .and_modify(|f: &mut perfstream_window::QueryFigures| f.merge(&r.figures))
                    .or_insert(r.figures);
            }
            for r in rollups.request {
                want_request
                    .entry((r.window_start_us, r.key.endpoint.clone()))
                    .and_modify(|f: &mut perfstream_window::RequestFigures| f.merge(&r.figures))
                    .or_insert(r.figures);
            }
        }
    }
    assert_eq!(
        count_rows(&store, "query_rollups").await,
        want_query.len() as i64
    );
    for ((ws, hash), f) in &want_query {
        let (c, s, mn, mx, p, h, _) = stored_query(&pool, *ws, hash).await.expect("row");
        assert_eq!(
            (c, s, mn, mx, p, h),
            expect_latency(&f.latency),
            "{hash} at {ws}"
        );
    }
    let stored: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT endpoint, count, sum_us FROM request_rollups ORDER BY window_start, endpoint",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let want: Vec<(String, i64, i64)> = want_request
        .iter()
        .map(|((_, e), f)| (e.clone(), f.latency.count as i64, f.latency.sum_us))
        .collect();
    assert_eq!(stored, want);
}

#[sqlx::test(migrations = "../../migrations")]
async fn windows_that_cannot_roll_up_into_hours_are_refused(pool: PgPool) {
    let store = Store::from_pool(pool);
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    for (start, len) in [
        (T0, 7 * 60_000_000),
        (T0 + 1, MIN_US),
        (T0, HOUR_US),
        (T0, 1_500),
        (T0, 0),
        (T0, -MIN_US),
    ] {
        let mut r = query(start, "api", "h1", &[1], 1);
        r.window_end_us = start + len;
        let f = flush(
            "p1",
            Rollups {
                query: vec![r],
                ..Rollups::default()
            },
            vec![progress(&claim, 0, 1, 1, T0)],
        );
        assert!(
            matches!(
                store.write_flush(&f).await,
                Err(StoreError::InvalidWindow { .. })
            ),
            "start {start} len {len}"
        );
    }
    // 30 s windows are fine and labelled by their size.
    let mut r = query(T0 + 30_000_000, "api", "h1", &[1], 1);
    r.window_end_us = r.window_start_us + 30_000_000;
    let f = flush(
        "p1",
        Rollups {
            query: vec![r],
            ..Rollups::default()
        },
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    commit(&store, &f).await;
    let res: String = sqlx::query_scalar("SELECT resolution FROM query_rollups")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(res, "30s");
    // 500 ms windows too.
    let mut r = query(T0 + 500_000, "api", "h2", &[1], 1);
    r.window_end_us = r.window_start_us + 500_000;
    let f = flush(
        "p1",
        Rollups {
            query: vec![r],
            ..Rollups::default()
        },
        vec![progress(&claim, 0, 2, 1, T0)],
    );
    commit(&store, &f).await;
    let res: String =
        sqlx::query_scalar("SELECT resolution FROM query_rollups WHERE query_hash = 'h2'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(res, "500ms");
    assert_eq!(
        perfstream_store::base_resolution_label(60_000_000).unwrap(),
        "1m"
    );
    assert_eq!(
        perfstream_store::base_resolution_label(2_000_000).unwrap(),
        "2s"
    );
    assert!(perfstream_store::base_resolution_label(7 * 60_000_000).is_err());
}

/// The catalog keeps the smallest text and the first window, and refreshes last_seen when it
/// moves on by more than an hour (not on every flush).
#[sqlx::test(migrations = "../../migrations")]
async fn query_catalog_tracks_text_and_first_and_last_seen(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let seq = std::cell::Cell::new(0);
    let write = |ws: i64, text: Option<&str>| {
        let mut r = query(ws, "api", "h1", &[5], 1);
        r.figures.query_text = text.map(str::to_owned);
        seq.set(seq.get() + 1);
        flush(
            "p1",
            Rollups {
                query: vec![r],
                ..Rollups::default()
            },
            vec![progress(&claim, 0, seq.get(), 1, T0)],
        )
    };
    let read = || async {
        sqlx::query_as::<_, (Option<String>, f64, f64)>(
            "SELECT normalized_text, extract(epoch FROM first_seen)::float8, extract(epoch FROM last_seen)::float8 \
             FROM query_catalog WHERE query_hash = 'h1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let secs = |us: i64| (us / 1_000_000) as f64;
    commit(&store, &write(T0, None)).await;
    assert_eq!(read().await, (None, secs(T0), secs(T0 + MIN_US)));
    commit(&store, &write(T0 + MIN_US, Some("SELECT b"))).await;
    // An update for another reason (a text) refreshes last_seen too.
    assert_eq!(
        read().await,
        (Some("SELECT b".into()), secs(T0), secs(T0 + 2 * MIN_US))
    );
    commit(&store, &write(T0 + 2 * MIN_US, Some("SELECT a"))).await;
    commit(&store, &write(T0 + 3 * MIN_US, Some("SELECT c"))).await;
    assert_eq!(
        read().await,
        (Some("SELECT a".into()), secs(T0), secs(T0 + 3 * MIN_US))
    );
    commit(&store, &write(T0 + 2 * HOUR_US, None)).await;
    commit(&store, &write(T0 - HOUR_US, None)).await;
    assert_eq!(
        read().await,
        (
            Some("SELECT a".into()),
            secs(T0 - HOUR_US),
            secs(T0 + 2 * HOUR_US + MIN_US)
        )
    );
}

/// Flushes larger than one bulk statement (they are sent in chunks, pipelined with encoding):
/// existing rows in every chunk are found and merged, new ones inserted.
#[sqlx::test(migrations = "../../migrations")]
async fn large_flushes_with_existing_rows_in_every_chunk_merge_exactly(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let keys = 2_600;
    let rows = |pick: &dyn Fn(usize) -> bool| Rollups {
        query: (0..keys)
            .filter(|k| pick(*k))
            .map(|k| query(T0, "api", &format!("h{k:05}"), &[k as i64 + 1], 1))
            .collect(),
        ..Rollups::default()
    };
    commit(
        &store,
        &flush(
            "p1",
            rows(&|k| k % 3 == 0),
            vec![progress(&claim, 0, 1, 1, T0)],
        ),
    )
    .await;
    commit(
        &store,
        &flush("p1", rows(&|_| true), vec![progress(&claim, 0, 2, 2, T0)]),
    )
    .await;
    let stored: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT query_hash, count, sum_us FROM query_rollups ORDER BY query_hash")
            .fetch_all(&pool)
            .await
            .unwrap();
    let want: Vec<(String, i64, i64)> = (0..keys)
        .map(|k| {
            let n = if k % 3 == 0 { 2 } else { 1 };
            (format!("h{k:05}"), n, n * (k as i64 + 1))
        })
        .collect();
    assert_eq!(stored, want);
}

/// Postgres unreachable or the pool exhausted: retriable, so the pipeline backs off and
/// retries; fencing and bad input are not.
#[sqlx::test(migrations = "../../migrations")]
async fn outages_are_retriable_and_fencing_is_not(pool: PgPool) {
    let err = Store::connect("postgres://postgres@127.0.0.1:1/nothing", 1)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_retriable(), "{err:?}");

    let opts = (*pool.connect_options()).clone();
    let tiny = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_millis(200))
        .connect_with(opts)
        .await
        .unwrap();
    let store = Store::from_pool(tiny.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let held = tiny.acquire().await.unwrap();
    let f = flush(
        "p1",
        sample_rollups(T0, 0),
        vec![progress(&claim, 0, 1, 1, T0)],
    );
    let err = store.write_flush(&f).await.expect_err("pool exhausted");
    assert!(err.is_retriable(), "{err:?}");
    drop(held);
    commit(&store, &f).await;

    assert!(
        !StoreError::Fenced {
            topic: TOPIC.into(),
            partition: 0
        }
        .is_retriable()
    );
    assert!(!StoreError::MissingProgress.is_retriable());
}
