//! Exactly-once fault tests of `perfstream run` (issue 6): a real Kafka-protocol broker
//! (librdkafka's mock cluster, in this process, over TCP), a real Postgres, real `perfstream`
//! processes killed at failpoints, at random, stalled, scaled out; the generator's truth file is
//! the oracle. Every test waits on conditions with a deadline, never a fixed sleep.

use std::time::Duration;

use perfstream_e2e::setup::*;
use perfstream_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_run_matches_truth_and_routes_bad_input() {
    let mut s = Setup::new("clean", 20_000, 1).await;
    let mut w = vec![s.worker("a", None)];
    s.assert_exact(&mut w).await;
    let st = w.pop().unwrap().stop();
    assert!(st.success(), "clean shutdown: {st:?}");
    // Every malformed message is in perf.dlq with its reason, every too-late event in perf.late,
    // once each (a clean run has no replays).
    let truth = s.truth().await.clone();
    let dlq = read_dead_letters(&s.bootstrap, "perf.dlq", PARTITIONS);
    assert_eq!(dlq.len() as u64, truth.malformed.count, "dead letters");
    assert!(
        dlq.iter().all(|d| !d.reason.is_empty()
            && !d.error_kind.is_empty()
            && d.original_value.is_some())
    );
    let late = read_dead_letters(&s.bootstrap, "perf.late", PARTITIONS);
    assert_eq!(late.len() as u64, truth.too_late.count, "late events");
    assert!(late.iter().all(|d| d.error_kind == "too_late"), "{late:?}");
    s.assert_samples().await;
}

async fn crash_then_recover(tag: &str, failpoint: &str, seed: u64) {
    let mut s = Setup::new(tag, 20_000, seed).await;
    let mut a = s.worker("a", Some(failpoint));
    eventually(DEADLINE, "the worker to hit its failpoint", || {
        let exited = a.exited();
        async move { exited.then_some(()) }
    })
    .await;
    let point = failpoint.split(':').next().unwrap_or_default();
    assert!(
        a.log_tail().contains(&format!("failpoint {point} hit")),
        "{}",
        a.log_tail()
    );
    let mut w = vec![s.worker("b", None)];
    s.assert_exact(&mut w).await;
    // The replay after the crash neither loses nor duplicates a sample.
    s.assert_samples().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_commit() {
    crash_then_recover("fp_before", "before_commit:4", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit() {
    crash_then_recover("fp_after", "after_commit:4", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_dlq_ack() {
    crash_then_recover("fp_dlq", "after_dlq_ack:3", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_revoke() {
    let mut s = Setup::new("fp_revoke", 20_000, 5).await;
    let mut a = s.worker("a", Some("during_revoke:1"));
    // Let `a` own everything (or crash in an early rebalance of its own).
    eventually(DEADLINE, "a to flush or crash", || {
        let exited = a.exited();
        let db = s.db.pool.clone();
        async move {
            use sqlx::Row;
            let flushed = sqlx::query(
                "SELECT count(*) FROM consumer_offsets WHERE applied_through_offset IS NOT NULL",
            )
            .fetch_one(&db)
            .await
            .map(|r| r.get::<i64, _>(0) > 0)
            .unwrap_or(false);
            (exited || flushed).then_some(())
        }
    })
    .await;
    // A second member joining makes the group rebalance: `a` crashes inside its revoke.
    let b = s.worker("b", None);
    eventually(DEADLINE, "worker a to crash in revoke", || {
        let exited = a.exited();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(
        a.log_tail().contains("failpoint during_revoke hit"),
        "{}",
        a.log_tail()
    );
    let mut w = vec![b];
    s.assert_exact(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_failover_during_replay() {
    let db = TestDb::create("replay_failover").await;
    let late = ["--allowed-lateness", REPLAY_LATENESS];
    let s = Setup::with_args(Broker::mock(), db, "replay_failover", 90_000, 10, &late).await;
    failover_during_replay(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills() {
    let mut s = Setup::new("sigkill", 30_000, 6).await;
    let mut progress = 0;
    for i in 0..3 {
        let w = s.worker(&format!("k{i}"), None);
        progress = s.progress_beyond(progress).await;
        w.kill();
    }
    let mut w = vec![s.worker("final", None)];
    s.assert_exact(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_kill_one_add_one() {
    let mut s = Setup::new("scale", 30_000, 7).await;
    let a = s.worker("a", None);
    let b = s.worker("b", None);
    let c = s.worker("c", None);
    s.progress_beyond(0).await;
    b.kill();
    let d = s.worker("d", None);
    let mut w = vec![a, c, d];
    s.assert_exact(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_owner_is_fenced() {
    let mut s = Setup::new("stall", 20_000, 8).await;
    let a = s.worker("a", None);
    let p = s.progress_beyond(0).await;
    a.signal("STOP");
    // Past the 6 s session timeout the group gives a's partitions to b, which claims them.
    let b = s.worker("b", None);
    eventually(DEADLINE, "b to claim partitions", || async {
        use sqlx::Row;
        let r = sqlx::query("SELECT count(*) FROM consumer_offsets WHERE owner = 'b'")
            .fetch_one(&s.db.pool)
            .await
            .ok()?;
        (r.get::<i64, _>(0) > 0).then_some(())
    })
    .await;
    s.progress_beyond(p).await;
    a.signal("CONT");
    // The stalled owner's late progress update is refused (compare-and-set on the generation).
    eventually(DEADLINE, "the stalled owner to be fenced", || {
        let fenced = a.log_contains("fenced");
        async move { fenced.then_some(()) }
    })
    .await;
    let mut w = vec![a, b];
    s.assert_exact(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_pauses_and_resumes() {
    let pg = PgCluster::start();
    let mut s = Setup::with_db(
        TestDb::create_in(&pg.url(), "outage").await,
        "outage",
        30_000,
        9,
    )
    .await;
    let mut a = s.worker("a", None);
    s.progress_beyond(0).await;
    s.db.pool.close().await;
    pg.down();
    // Twenty seconds without Postgres, mid-stream: the worker must stay up (paused, retrying).
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..20 {
        tick.tick().await;
        assert!(
            !a.exited(),
            "worker died during the outage:\n{}",
            a.log_tail()
        );
    }
    pg.up();
    s.db = TestDb::reconnect(&s.db.url).await;
    let mut w = vec![a];
    s.assert_exact(&mut w).await;
    assert!(
        w[0].log_tail().contains("Flush failed") || w[0].log_tail().contains("retry"),
        "no retry logged:\n{}",
        w[0].log_tail()
    );
}

/// The dead-letter topic refuses every message (the broker answers its metadata with an
/// authorization error) for a while, mid-stream: the worker must not exit or commit past an
/// unacknowledged envelope; it pauses, retries with backoff, and once the topic accepts again
/// every malformed message is in it exactly once and the rollups are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_topic_outage_pauses_and_resumes() {
    use rdkafka::types::RDKafkaRespErr;
    let mut s = Setup::new("dlq_outage", 20_000, 12).await;
    let Broker::Mock(broker) = s.broker() else {
        unreachable!()
    };
    broker
        .cluster()
        .topic_error(
            "perf.dlq",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let mut a = s.worker("a", None);
    eventually(DEADLINE, "routing failures logged twice", || {
        let n = a.log_count("routing to the dead-letter");
        async move { (n >= 2).then_some(()) }
    })
    .await;
    assert!(
        !a.exited(),
        "worker died during the outage:\n{}",
        a.log_tail()
    );
    let Broker::Mock(broker) = s.broker() else {
        unreachable!()
    };
    broker
        .cluster()
        .topic_error("perf.dlq", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    let mut w = vec![a];
    s.assert_exact(&mut w).await;
    let truth = s.truth().await.clone();
    let dlq = read_dead_letters(&s.bootstrap, "perf.dlq", PARTITIONS);
    let mut offsets: Vec<_> = dlq
        .iter()
        .map(|d| (d.source_topic.clone(), d.source_partition, d.source_offset))
        .collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(
        offsets.len() as u64,
        truth.malformed.count,
        "every dead letter, once"
    );
    assert_eq!(dlq.len(), offsets.len(), "no dead letter twice");
}

/// Second line of defence (issue 12): see [`refused_series_is_isolated`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_series_is_isolated_and_the_rest_commits() {
    refused_series_is_isolated(Broker::mock()).await;
}
