//! Exactly-once fault tests of `perfstream run` (issue 6): a real Kafka-protocol broker
//! (librdkafka's mock cluster, in this process, over TCP), a real Postgres, real `perfstream`
//! processes killed at failpoints, at random, stalled, scaled out; the generator's truth file is
//! the oracle. Every test waits on conditions with a deadline, never a fixed sleep.

use std::time::Duration;

use perfstream_e2e::*;
use perfstream_emit::truth::Truth;
use perfstream_kafka::{DevBroker, Topics};

const WINDOW: &str = "2s";
const RATE: &str = "1000";
const DEADLINE: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 3;

struct Setup {
    _broker: DevBroker,
    bootstrap: String,
    db: TestDb,
    generator: Option<tokio::task::JoinHandle<Truth>>,
    truth: Option<Truth>,
    dir: tempfile::TempDir,
    group: String,
}

impl Setup {
    /// A broker with 3 partitions per topic, a fresh database, and the load generator producing
    /// `events` events in the background, paced over about `events / RATE` seconds, with
    /// out-of-order, late, too-late and malformed ones, so workers are killed mid-stream.
    async fn new(tag: &str, events: u64, seed: u64) -> Setup {
        Self::with_db(TestDb::create(tag).await, tag, events, seed).await
    }

    async fn with_db(db: TestDb, tag: &str, events: u64, seed: u64) -> Setup {
        let broker = DevBroker::start(1, PARTITIONS, &Topics::default()).expect("mock cluster");
        let bootstrap = broker.bootstrap_servers();
        let dir = tempfile::tempdir().expect("tempdir");
        let truth_path = dir.path().join("truth.json");
        let (bs, seed) = (bootstrap.clone(), seed.to_string());
        let generator = tokio::spawn(async move {
            let count = events.to_string();
            let truth = generate(
                &bs,
                &truth_path,
                &[
                    "--count",
                    &count,
                    "--rate",
                    RATE,
                    "--seed",
                    &seed,
                    "--window",
                    WINDOW,
                    "--resource-interval",
                    "1s",
                    "--services",
                    "3",
                    "--query-hashes",
                    "40",
                    "--endpoints",
                    "8",
                    "--instances",
                    "2",
                    "--late",
                    "0.01",
                    "--out-of-order",
                    "0.05",
                    "--too-late",
                    "5",
                    "--malformed",
                    "0.002",
                ],
            )
            .await;
            assert!(
                truth.totals.acknowledged >= events,
                "generator acknowledged {} of {events}",
                truth.totals.acknowledged
            );
            truth
        });
        Setup {
            _broker: broker,
            bootstrap,
            db,
            generator: Some(generator),
            truth: None,
            dir,
            group: format!("g-{tag}"),
        }
    }

    /// The truth, once the generator has finished.
    async fn truth(&mut self) -> &Truth {
        if let Some(g) = self.generator.take() {
            self.truth = Some(g.await.expect("generator task"));
        }
        self.truth.as_ref().expect("generator ran")
    }

    fn worker(&self, name: &str, failpoint: Option<&str>) -> Worker {
        Worker::spawn(
            name,
            &WorkerConfig {
                bootstrap: &self.bootstrap,
                db_url: &self.db.url,
                group: &self.group,
                window: WINDOW,
                failpoint,
                log_dir: self.dir.path(),
            },
        )
    }

    async fn flushes(&self) -> i64 {
        use sqlx::Row;
        sqlx::query("SELECT coalesce(sum(applied_through_offset), 0)::bigint FROM consumer_offsets")
            .fetch_optional(&self.db.pool)
            .await
            .ok()
            .flatten()
            .map(|r| r.get::<i64, _>(0))
            .unwrap_or(0)
    }

    /// Waits until progress moved past `above` (some flush committed).
    async fn progress_beyond(&self, above: i64) -> i64 {
        eventually(DEADLINE, "a committed flush", || async {
            let p = self.flushes().await;
            (p > above).then_some(p)
        })
        .await
    }

    /// Waits until every partition's progress reached its end offset and the stored rollups of
    /// every closed window equal the truth exactly (read in one snapshot), then returns.
    async fn assert_exact(&mut self, workers: &mut [Worker]) {
        self.truth().await;
        let truth = self.truth.as_ref().expect("truth");
        let ends = end_offsets(
            &self.bootstrap,
            &["perf.query", "perf.request", "perf.resource"],
            PARTITIONS,
        );
        let expected_all = truth_totals(truth);
        let window_us = truth.params.window_us;
        assert!(!expected_all.is_empty());
        let mut last = String::from("no progress stored yet");
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let r = tokio::time::timeout(DEADLINE, async {
            loop {
                tick.tick().await;
                for w in workers.iter_mut() {
                    assert!(!w.exited(), "worker {} exited:\n{}", w.name, w.log_tail());
                }
                let mut tx = self.db.pool.begin().await.expect("begin");
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *tx)
                    .await
                    .expect("isolation");
                let progress = stored_progress(&mut tx).await;
                let caught_up = ends
                    .iter()
                    .all(|(k, end)| progress.get(k).is_some_and(|(through, _)| through == end));
                if caught_up {
                    let w = progress
                        .values()
                        .map(|(_, w)| *w)
                        .min()
                        .expect("progress rows");
                    let got = closed_by(&stored_totals(&mut tx).await, window_us, w);
                    let expected = closed_by(&expected_all, window_us, w);
                    last = diff(&expected, &got);
                    // Most of the stream must be covered, not just its start.
                    let covered = w >= truth.params.end_us - 4 * window_us;
                    if last.is_empty() && covered {
                        assert!(
                            expected.len() * 2 > expected_all.len(),
                            "only {} of {} rows closed",
                            expected.len(),
                            expected_all.len()
                        );
                        return;
                    }
                    if !covered {
                        last = format!(
                            "watermark {w} still before the end {} of the stream",
                            truth.params.end_us
                        );
                    }
                } else {
                    last = format!("progress {progress:?}\nends {ends:?}");
                }
                drop(tx);
            }
        })
        .await;
        if r.is_err() {
            let logs: Vec<String> = workers
                .iter()
                .map(|w| format!("--- {}\n{}", w.name, w.log_tail()))
                .collect();
            panic!(
                "rollups never matched the truth:\n{last}\n{}",
                logs.join("\n")
            );
        }
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

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
