//! Re-sent flushes: a flush whose COMMIT reply was lost is recognised when re-sent
//! ([`FlushCommit::AlreadyApplied`]) and changes nothing; a stale or misnumbered flush is
//! still fenced. Real Postgres, one fresh database per test; the lost reply is made by a TCP
//! proxy between the store and the server (`support/proxy.rs`).

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::BTreeMap;

use perfstream_store::{FlushCommit, FlushWrite, Store, StoreError};
use perfstream_window::Rollups;
use proxy::Proxy;
use sqlx::PgPool;
use support::*;

fn rollups(ws: i64, salt: i64) -> Rollups {
    Rollups {
        query: vec![
            query(ws, "api", "h1", &[100 + salt, 2_000, 35_000], 3),
            query(ws, "api", "h2", &[7, 8, 9], 1),
        ],
        request: vec![request(ws, "api", "/users", &[1_000, 2_000 + salt], 1)],
        resource: vec![resource(
            ws,
            "api",
            "api-0",
            &[(0.5, 100, 1_000, 3, 10, 0)],
            (90, 10),
        )],
    }
}

/// (table, key, window start) -> count (samples for resource rows).
type Counts = BTreeMap<(String, String, i64), i64>;

async fn stored_counts(pool: &PgPool) -> Counts {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT 'query', query_hash, (extract(epoch FROM window_start) * 1e6)::bigint, count FROM query_rollups \
         UNION ALL SELECT 'request', endpoint, (extract(epoch FROM window_start) * 1e6)::bigint, count FROM request_rollups \
         UNION ALL SELECT 'resource', instance, (extract(epoch FROM window_start) * 1e6)::bigint, samples FROM resource_rollups",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, k, ws, n)| ((t, k, ws), n))
        .collect()
}

/// What the tables hold after each of `flushes` applied once.
fn counts_of(flushes: &[&FlushWrite]) -> Counts {
    let mut out = Counts::new();
    for f in flushes {
        let r = &f.rollups;
        let rows = r
            .query
            .iter()
            .map(|q| {
                let key = ("query", q.key.query_hash.clone(), q.window_start_us);
                (key, q.figures.latency.count as i64)
            })
            .chain(r.request.iter().map(|q| {
                let key = ("request", q.key.endpoint.clone(), q.window_start_us);
                (key, q.figures.latency.count as i64)
            }))
            .chain(r.resource.iter().map(|q| {
                let key = ("resource", q.key.instance.clone(), q.window_start_us);
                (key, q.figures.samples as i64)
            }));
        for ((t, k, ws), n) in rows {
            *out.entry((t.to_owned(), k, ws)).or_default() += n;
        }
    }
    out
}

async fn stored_progress(pool: &PgPool, partition: i32) -> (String, i64, i64, Option<i64>) {
    sqlx::query_as(
        "SELECT owner, generation, flush_seq, resume_offset FROM consumer_offsets WHERE partition = $1",
    )
    .bind(partition)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Regression: a COMMIT whose reply was lost to a broken connection made the pipeline re-send
/// the flush, and its merged rows were added a second time (+44 % counts measured on the
/// pipeline). Now the re-sent flush is found already applied and rolls back.
#[sqlx::test(migrations = "../../migrations")]
async fn a_flush_whose_commit_reply_is_lost_is_not_applied_twice(pool: PgPool) {
    let proxy = Proxy::start(server_addr(&pool).await).await;
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let url = proxy.url(&std::env::var("DATABASE_URL").unwrap(), &database);
    let store = Store::connect(&url, 1).await.unwrap();
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let first = flush("p1", rollups(T0, 0), vec![progress(&claim, 0, 1, 10, T0)]);
    commit(&store, &first).await;
    // The same keys again (merge path) and a new window (fast path).
    let mut more = rollups(T0, 5);
    more.query.extend(rollups(T0 + MIN_US, 1).query);
    let second = flush("p1", more, vec![progress(&claim, 0, 2, 20, T0 + MIN_US)]);

    proxy.cut_after_next_commit();
    let err = store
        .write_flush(&second)
        .await
        .expect_err("the COMMIT reply was cut");
    proxy.commits_cut(1).await;
    assert!(err.is_retriable(), "{err:?}");
    // What went through as simple queries: sqlx's transaction control, COMMIT among it.
    let simple = proxy.simple_queries();
    eprintln!("simple queries through the proxy: {simple:?}");
    assert_eq!(simple.iter().filter(|q| *q == "COMMIT").count(), 2);
    // The server did commit: the tables hold both flushes once.
    let once = counts_of(&[&first, &second]);
    assert_eq!(stored_counts(&pool).await, once);

    // The pipeline retries the same flush; the pool opens a fresh connection.
    assert_eq!(proxy.connections_passed(), 1);
    assert_eq!(
        store.write_flush(&second).await.unwrap(),
        FlushCommit::AlreadyApplied
    );
    assert_eq!(proxy.connections_passed(), 2);
    assert_eq!(stored_counts(&pool).await, once);
    assert_eq!(
        stored_progress(&pool, 0).await,
        ("p1".to_owned(), claim.generation, 2, Some(20))
    );

    // The next flush goes on from there.
    let third = flush(
        "p1",
        rollups(T0 + MIN_US, 2),
        vec![progress(&claim, 0, 3, 30, T0 + 2 * MIN_US)],
    );
    commit(&store, &third).await;
    assert_eq!(
        stored_counts(&pool).await,
        counts_of(&[&first, &second, &third])
    );
}

/// A flush of an earlier claim is fenced even where its number is at or below the stored one:
/// only the same claim's number can mean "already applied".
#[sqlx::test(migrations = "../../migrations")]
async fn a_stale_flush_of_another_generation_is_fenced_not_taken_for_applied(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let old = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let a = flush("p1", rollups(T0, 0), vec![progress(&old, 0, 1, 10, T0)]);
    let b = flush("p1", rollups(T0, 1), vec![progress(&old, 0, 2, 20, T0)]);
    commit(&store, &a).await;
    commit(&store, &b).await;
    // A rebalance hands the partition back to the same process: a new generation, numbered
    // from 1 again.
    let new = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    assert_eq!(new.generation, old.generation + 1);
    assert_eq!(stored_progress(&pool, 0).await.2, 0);
    let c = flush("p1", rollups(T0, 2), vec![progress(&new, 0, 1, 30, T0)]);
    commit(&store, &c).await;
    let before = stored_counts(&pool).await;
    assert_eq!(before, counts_of(&[&a, &b, &c]));

    // Both flushes of the old claim, re-sent: the stored number (1) is at or past a's, and one
    // below b's, but the generation is not theirs.
    for stale in [&a, &b] {
        match store.write_flush(stale).await {
            Err(StoreError::Fenced { topic, partition }) => {
                assert_eq!((topic.as_str(), partition), (TOPIC, 0))
            }
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
    // Another owner takes over; the previous claim's last flush, re-sent, is fenced too.
    let other = store.claim_partition(GROUP, TOPIC, 0, "p2").await.unwrap();
    assert!(matches!(
        store.write_flush(&c).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(stored_counts(&pool).await, before);
    assert_eq!(
        stored_progress(&pool, 0).await,
        ("p2".to_owned(), other.generation, 0, Some(30))
    );
    let d = flush("p2", rollups(T0, 3), vec![progress(&other, 0, 1, 40, T0)]);
    commit(&store, &d).await;
    assert_eq!(stored_counts(&pool).await, counts_of(&[&a, &b, &c, &d]));
}

/// Numbers must follow the stored one: a gap is fenced (the caller lost track), 0 is refused
/// outright, a repeat is already applied, and a flush that repeats one partition's number but
/// is new for another is fenced whole (a retry never mixes).
#[sqlx::test(migrations = "../../migrations")]
async fn flush_numbers_must_follow_within_a_claim(pool: PgPool) {
    let store = Store::from_pool(pool.clone());
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let numbered = |seq: i64| {
        flush(
            "p1",
            rollups(T0, seq),
            vec![progress(&claim, 0, seq, seq, T0)],
        )
    };

    assert!(matches!(
        store.write_flush(&numbered(2)).await,
        Err(StoreError::Fenced { partition: 0, .. })
    ));
    let err = store
        .write_flush(&numbered(0))
        .await
        .expect_err("0 is not a flush number");
    assert!(
        matches!(err, StoreError::InvalidFlushSeq { flush_seq: 0, .. }),
        "{err:?}"
    );
    assert!(!err.is_retriable());
    assert!(stored_counts(&pool).await.is_empty());

    commit(&store, &numbered(1)).await;
    assert_eq!(
        store.write_flush(&numbered(1)).await.unwrap(),
        FlushCommit::AlreadyApplied
    );
    assert!(matches!(
        store.write_flush(&numbered(3)).await,
        Err(StoreError::Fenced { .. })
    ));
    commit(&store, &numbered(2)).await;
    // An older flush of the same claim re-sent after later ones: already applied as well.
    assert_eq!(
        store.write_flush(&numbered(1)).await.unwrap(),
        FlushCommit::AlreadyApplied
    );
    let want = counts_of(&[&numbered(1), &numbered(2)]);
    assert_eq!(stored_counts(&pool).await, want);

    let second = store.claim_partition(GROUP, TOPIC, 1, "p1").await.unwrap();
    let mixed = flush(
        "p1",
        rollups(T0, 9),
        vec![
            progress(&claim, 0, 2, 50, T0),
            progress(&second, 1, 1, 50, T0),
        ],
    );
    assert!(matches!(
        store.write_flush(&mixed).await,
        Err(StoreError::Fenced { partition: 0, .. })
    ));
    assert_eq!(stored_counts(&pool).await, want);
    assert_eq!(stored_progress(&pool, 1).await.2, 0);
}
