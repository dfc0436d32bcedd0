//! The fault tests' fixture: a broker, a fresh database, the load generator producing in the
//! background (its truth file is the oracle), `perfstream run` workers, and the exactness check.

use std::process::{Child, Command};
use std::time::Duration;

use perfstream_emit::truth::Truth;
use perfstream_kafka::{DevBroker, Topics};

use crate::*;

/// The broker a test runs against: librdkafka's mock cluster in this process, or a tansu
/// process (the infra README's second broker), both real Kafka-protocol brokers over TCP.
pub enum Broker {
    Mock(DevBroker),
    Tansu { child: Child, bootstrap: String },
}

impl Broker {
    pub fn mock() -> Broker {
        Broker::Mock(DevBroker::start(1, PARTITIONS, &Topics::default()).expect("mock cluster"))
    }

    /// Starts tansu (binary from `TANSU_BIN`, installed by scripts/test.sh) on a free port and
    /// creates the topics with `perfstream topics create`.
    pub async fn tansu() -> Broker {
        let bin = require_env("TANSU_BIN");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        let bootstrap = format!("127.0.0.1:{port}");
        let broker = Broker::Tansu {
            child,
            bootstrap: bootstrap.clone(),
        };
        eventually(
            Duration::from_secs(60),
            "perfstream topics create on tansu",
            || {
                let bootstrap = bootstrap.clone();
                async move {
                    let st = Command::new(require_env("E2E_PERFSTREAM_BIN"))
                        .args(["topics", "create"])
                        .env("PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS", &bootstrap)
                        .env("PERFSTREAM_KAFKA__PARTITIONS", PARTITIONS.to_string())
                        .output()
                        .ok()?;
                    if !st.status.success() {
                        eprintln!("topics create: {}", String::from_utf8_lossy(&st.stderr));
                    }
                    st.status.success().then_some(())
                }
            },
        )
        .await;
        broker
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(b) => b.bootstrap_servers(),
            Broker::Tansu { bootstrap, .. } => bootstrap.clone(),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub const WINDOW: &str = "2s";
pub const RATE: &str = "1000";
pub const DEADLINE: Duration = Duration::from_secs(180);
pub const PARTITIONS: i32 = 3;

pub struct Setup {
    _broker: Broker,
    pub bootstrap: String,
    pub db: TestDb,
    generator: Option<tokio::task::JoinHandle<Truth>>,
    truth: Option<Truth>,
    pub dir: tempfile::TempDir,
    pub group: String,
}

impl Setup {
    /// A broker with 3 partitions per topic, a fresh database, and the load generator producing
    /// `events` events in the background, paced over about `events / RATE` seconds, with
    /// out-of-order, late, too-late and malformed ones, so workers are killed mid-stream.
    pub async fn new(tag: &str, events: u64, seed: u64) -> Setup {
        Self::with_db(TestDb::create(tag).await, tag, events, seed).await
    }

    pub async fn with_db(db: TestDb, tag: &str, events: u64, seed: u64) -> Setup {
        Self::with(Broker::mock(), db, tag, events, seed).await
    }

    /// Like [`Setup::new`] on the given broker.
    pub async fn with(broker: Broker, db: TestDb, tag: &str, events: u64, seed: u64) -> Setup {
        Self::with_args(broker, db, tag, events, seed, &[]).await
    }

    /// The broker, for tests that inject broker-side faults.
    pub fn broker(&self) -> &Broker {
        &self._broker
    }

    /// Like [`Setup::with`], with extra generator arguments.
    pub async fn with_args(
        broker: Broker,
        db: TestDb,
        tag: &str,
        events: u64,
        seed: u64,
        extra: &[&str],
    ) -> Setup {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let bootstrap = broker.bootstrap();
        let dir = tempfile::tempdir().expect("tempdir");
        let truth_path = dir.path().join("truth.json");
        let (bs, seed) = (bootstrap.clone(), seed.to_string());
        let generator = tokio::spawn(async move {
            let count = events.to_string();
            let mut args = vec![
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
            ];
            args.extend(extra.iter().map(String::as_str));
            let truth = generate(&bs, &truth_path, &args).await;
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

    /// Whether the generator is still producing.
    pub fn generating(&self) -> bool {
        self.generator.as_ref().is_some_and(|g| !g.is_finished())
    }

    /// The truth, once the generator has finished.
    pub async fn truth(&mut self) -> &Truth {
        if let Some(g) = self.generator.take() {
            self.truth = Some(g.await.expect("generator task"));
        }
        self.truth.as_ref().expect("generator ran")
    }

    pub fn worker(&self, name: &str, failpoint: Option<&str>) -> Worker {
        self.worker_with(name, failpoint, &[])
    }

    /// A worker with extra `PERFSTREAM_*` settings.
    pub fn worker_with(&self, name: &str, failpoint: Option<&str>, env: &[(&str, &str)]) -> Worker {
        Worker::spawn(
            name,
            &WorkerConfig {
                bootstrap: &self.bootstrap,
                db_url: &self.db.url,
                group: &self.group,
                window: WINDOW,
                failpoint,
                log_dir: self.dir.path(),
                env,
            },
        )
    }

    pub async fn flushes(&self) -> i64 {
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
    pub async fn progress_beyond(&self, above: i64) -> i64 {
        eventually(DEADLINE, "a committed flush", || async {
            let p = self.flushes().await;
            (p > above).then_some(p)
        })
        .await
    }

    /// Waits until every partition's progress reached its end offset and the stored rollups of
    /// every closed window equal the truth exactly (read in one snapshot), then returns.
    pub async fn assert_exact(&mut self, workers: &mut [Worker]) {
        self.truth().await;
        let truth = self.truth.as_ref().expect("truth");
        let ends = end_offsets(
            &self.bootstrap,
            &["perf.query", "perf.request", "perf.resource"],
            PARTITIONS,
        );
        let expected_all = truth_totals(truth);
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
                // `>=`: tansu reports high watermarks a few offsets below the offsets it hands out.
                let caught_up = ends
                    .iter()
                    .all(|(k, end)| progress.get(k).is_some_and(|(through, _)| through >= end));
                if caught_up {
                    // Every window, the last one included: once the stream stops, the quiet
                    // partitions close their windows by the clock (issue 11, section 4).
                    let got = stored_totals(&mut tx).await;
                    last = diff(&expected_all, &got);
                    if last.is_empty() {
                        return;
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

/// The allowed lateness of `failover_during_replay`'s first worker and its generator.
pub const REPLAY_LATENESS: &str = "15s";

/// Issue 11, section 2, with real processes. `a` runs with a long allowed lateness, so it
/// commits with its applied mark far ahead of its resume offset (and late events in between are
/// corrections of windows it had closed), and is killed. `b` runs with a short lateness (a
/// config change in a rolling deploy, or a partition whose neighbours lag less), so its
/// watermark passes `a`'s while it replays; it flushes after every small batch and is killed
/// right after the first commit made while it was still below `a`'s applied mark
/// with its watermark past `a`'s (before the fix, that flush stored a weakened mark; with
/// 40 000 events it double-counted 41 rows). `c` finishes. Every row must
/// be exact: `b`'s flush must not have weakened what the store says is applied. The setup's
/// generator must use `--allowed-lateness REPLAY_LATENESS`.
pub async fn failover_during_replay(mut s: Setup) {
    let lateness = [("PERFSTREAM_WINDOW__ALLOWED_LATENESS", REPLAY_LATENESS)];
    let a = s.worker_with("a", None, &lateness);
    // Until `a` has closed several windows (and so applied corrections of them).
    eventually(DEADLINE, "a to close windows 10 s into the stream", || async {
        use sqlx::Row;
        let r = sqlx::query(
            "SELECT extract(epoch FROM max(window_start) - min(window_start))::float8 FROM query_rollups",
        )
        .fetch_one(&s.db.pool)
        .await
        .ok()?;
        (r.get::<Option<f64>, _>(0)? >= 10.0).then_some(())
    })
    .await;
    // With the stream over, `a`'s quiet partitions would have closed every window: nothing left
    // to replay, and the scenario would test nothing.
    assert!(
        s.generating(),
        "the stream ended before a was killed; produce more events"
    );
    a.kill();
    let mut b = s.worker_with(
        "b",
        Some("after_replay_commit:1"),
        &[
            ("PERFSTREAM_WINDOW__ALLOWED_LATENESS", "1s"),
            // Sparse partitions (a resource partition gets an event every few seconds) must not
            // hold b's watermark at a's until b's replay is over.
            ("PERFSTREAM_WINDOW__IDLE_TIMEOUT", "200ms"),
            ("PERFSTREAM_PIPELINE__FLUSH_INTERVAL_MS", "1"),
            ("PERFSTREAM_PIPELINE__BATCH_MAX_MESSAGES", "20"),
        ],
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !b.exited() {
        if tokio::time::Instant::now() > deadline {
            let progress = stored_progress(&mut *s.db.pool.acquire().await.expect("conn")).await;
            panic!(
                "b never committed a flush during its replay with its watermark past a's\nprogress {progress:?}\n{}",
                b.log_tail()
            );
        }
        tick.tick().await;
    }
    assert!(
        b.log_tail().contains("failpoint after_replay_commit hit"),
        "{}",
        b.log_tail()
    );
    let mut w = vec![s.worker("c", None)];
    s.assert_exact(&mut w).await;
}
