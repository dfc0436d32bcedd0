//! Issue 11, section 4, end to end: a burst of slow queries, then silence. When every partition
//! of the worker has been idle for `idle_timeout`, its watermark follows the clock, so the
//! burst's window is written and its alert fires although no later event ever arrives. The
//! bound: window (2 s) + allowed lateness (1 s) + idle timeout (2 s) + flush interval (0.3 s)
//! after the burst, plus an evaluation; the test waits at most 30 s for each and prints what it
//! measured.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perfstream_e2e::setup::Broker;
use perfstream_e2e::*;
use perfstream_emit::{Emitter, EmitterConfig};
use perfstream_events::{QueryEvent, QueryType};

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap_or(0)
}

/// Events of `query_hash` in the query rollups.
async fn queries_counted(db: &TestDb, query_hash: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(count), 0)::bigint FROM query_rollups WHERE query_hash = $1",
    )
    .bind(query_hash)
    .fetch_one(&db.pool)
    .await
    .unwrap_or(0)
}

/// Sends 20 queries of `query_hash` timed now, `base_us + i` µs each, and waits until all are
/// acknowledged.
fn send_queries(emitter: Emitter, query_hash: &str, base_us: i64) {
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    for i in 0..20 {
        assert!(emitter.record_query(QueryEvent {
            service: "checkout".into(),
            instance: "i-1".into(),
            query_hash: query_hash.into(),
            query_type: QueryType::Select,
            query_text: None,
            execution_time_us: base_us + i,
            rows_affected: 1,
            tenant_id: None,
            trace_id: None,
            executed_at_us: now_us,
        }));
    }
    let sent = tokio::task::block_in_place(|| emitter.shutdown(Duration::from_secs(30)));
    assert_eq!(sent.sent, 20, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_then_silence_closes_its_window_and_fires_its_alert() {
    let broker = Broker::mock();
    let bootstrap = broker.bootstrap();
    let db = TestDb::create("quiet").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut worker = Worker::spawn(
        "q",
        &WorkerConfig {
            bootstrap: &bootstrap,
            db_url: &db.url,
            group: "g-quiet",
            window: "2s",
            failpoint: None,
            log_dir: dir.path(),
            env: &[("PERFSTREAM_WINDOW__ALLOWED_LATENESS", "1s")],
        },
    );
    // Every partition claimed (3 topics x 3 partitions), so the burst is read as it arrives.
    eventually(Duration::from_secs(60), "the worker's claims", || async {
        let n = count(&db, "SELECT count(*) FROM consumer_offsets").await;
        (n >= 9).then_some(())
    })
    .await;

    let emitter = Emitter::new(EmitterConfig::new(bootstrap.clone())).expect("emitter");
    send_queries(emitter, "quiet-slow", 1_500_000);
    let burst = Instant::now();

    eventually(
        Duration::from_secs(30),
        "the burst's window row",
        || async { (queries_counted(&db, "quiet-slow").await == 20).then_some(()) },
    )
    .await;
    let row_after = burst.elapsed();
    eventually(Duration::from_secs(30), "the slow-query alert", || async {
        let n = count(
            &db,
            "SELECT count(*) FROM alerts WHERE rule = 'slow_query' AND state = 'firing' \
               AND labels->>'query_hash' = 'quiet-slow'",
        )
        .await;
        (n == 1).then_some(())
    })
    .await;
    println!(
        "quiet stream: row visible {row_after:?} and alert {:?} after the burst",
        burst.elapsed()
    );
    assert!(!worker.exited(), "{}", worker.log_tail());
}

/// A pipeline started before its input topics exist (perfstream deployed before the producers)
/// says so at start-up and reads the topics within seconds of their creation: its consumer
/// refreshes metadata every 10 s, not at librdkafka's default 5 minutes (a benchmark run once
/// lost a whole topic that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_topics_created_after_start_up_are_read() {
    let broker = Broker::mock();
    let bootstrap = broker.bootstrap();
    let db = TestDb::create("late_topics").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut worker = Worker::spawn(
        "late",
        &WorkerConfig {
            bootstrap: &bootstrap,
            db_url: &db.url,
            group: "g-late-topics",
            window: "2s",
            failpoint: None,
            log_dir: dir.path(),
            env: &[
                ("PERFSTREAM_KAFKA__TOPICS__QUERY", "later.query"),
                ("PERFSTREAM_KAFKA__TOPICS__REQUEST", "later.request"),
                ("PERFSTREAM_KAFKA__TOPICS__RESOURCE", "later.resource"),
                ("PERFSTREAM_WINDOW__ALLOWED_LATENESS", "1s"),
                ("PERFSTREAM_WINDOW__IDLE_TIMEOUT", "1s"),
            ],
        },
    );
    let log = dir.path().join("late.log");
    eventually(
        Duration::from_secs(60),
        "the missing-topics warning",
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("Input topics do not exist yet").then_some(())
        },
    )
    .await;

    let config = EmitterConfig {
        topics: perfstream_emit::Topics {
            query: "later.query".into(),
            request: "later.request".into(),
            resource: "later.resource".into(),
        },
        ..EmitterConfig::new(bootstrap.clone())
    };
    let emitter = Emitter::new(config).expect("emitter");
    send_queries(emitter, "late-topic", 1_000);
    let created = Instant::now();
    // 10 s to see the topic, then window (2 s) + lateness (1 s) + idle timeout (1 s); far
    // below the 5 minutes of librdkafka's default refresh.
    eventually(
        Duration::from_secs(45),
        "the new topic's rollup",
        || async { (queries_counted(&db, "late-topic").await == 20).then_some(()) },
    )
    .await;
    println!(
        "topic created after start-up: rows after {:?}",
        created.elapsed()
    );
    assert!(!worker.exited(), "{}", worker.log_tail());
}
