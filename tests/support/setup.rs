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
        let bootstrap = broker.bootstrap();
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
    pub async fn truth(&mut self) -> &Truth {
        if let Some(g) = self.generator.take() {
            self.truth = Some(g.await.expect("generator task"));
        }
        self.truth.as_ref().expect("generator ran")
    }

    pub fn worker(&self, name: &str, failpoint: Option<&str>) -> Worker {
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
                // `>=`: tansu reports high watermarks a few offsets below the offsets it hands out.
                let caught_up = ends
                    .iter()
                    .all(|(k, end)| progress.get(k).is_some_and(|(through, _)| through >= end));
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
