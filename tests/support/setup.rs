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
    /// Samples behind every rollup (issue 14), after any number of replays: each base query and
    /// request row has its exact max as a sample (none lost), no event is more than one sample
    /// (none duplicated), and every slow query `get_slow_queries` reports has a sample at or
    /// above its p99.
    pub async fn assert_samples(&self) {
        use sqlx::Row;
        let pool = &self.db.pool;
        let scalar = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .unwrap()
        };
        let missing = scalar(
            "SELECT count(*) FROM query_rollups r WHERE r.resolution = '2s' AND NOT EXISTS ( \
             SELECT 1 FROM query_samples x WHERE (x.resolution, x.window_start, x.service, \
             x.query_hash, x.query_type, x.tenant_id) = (r.resolution, r.window_start, r.service, \
             r.query_hash, r.query_type, r.tenant_id) AND x.execution_time_us = r.max_us)",
        )
        .await;
        assert_eq!(
            missing, 0,
            "query rows without their slowest execution as a sample"
        );
        let missing = scalar(
            "SELECT count(*) FROM request_rollups r WHERE r.resolution = '2s' AND NOT EXISTS ( \
             SELECT 1 FROM request_samples x WHERE (x.resolution, x.window_start, x.service, \
             x.endpoint, x.method) = (r.resolution, r.window_start, r.service, r.endpoint, \
             r.method) AND x.response_time_us = r.max_us)",
        )
        .await;
        assert_eq!(
            missing, 0,
            "request rows without their slowest request as a sample"
        );
        // An event is one sample at most: a replay writes its samples again under the same
        // source (a conflict, nothing written), never a second copy.
        let twice = scalar(
            "SELECT count(*) FROM (SELECT 1 FROM query_samples WHERE resolution = '2s' \
             GROUP BY source_topic, source_partition, source_offset HAVING count(*) > 1 \
             UNION ALL SELECT 1 FROM request_samples WHERE resolution = '2s' \
             GROUP BY source_topic, source_partition, source_offset HAVING count(*) > 1) d",
        )
        .await;
        assert_eq!(twice, 0, "events stored as more than one sample");
        let slow =
            sqlx::query("SELECT worst_p99_ms, sample_ms FROM get_slow_queries(to_timestamp(0), 0)")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(!slow.is_empty());
        for r in &slow {
            let (p99, sample): (f64, Option<f64>) = (r.get(0), r.get(1));
            assert!(
                sample.is_some_and(|x| x >= p99),
                "p99 {p99} ms, slowest sample {sample:?}"
            );
        }
    }

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
            let progress = stored_progress(&mut s.db.pool.acquire().await.expect("conn")).await;
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

/// Second line of defence (issue 12): a row Postgres refuses (here a CHECK constraint an
/// operator added, SQLSTATE 23514) never stops the pipeline. The refused series is isolated:
/// its events go to the dead-letter topic with the database's reason, once each; every other
/// series is counted exactly, including the ones in the same flush and the same windows.
pub async fn refused_series_is_isolated(broker: Broker) {
    use perfstream_events::{Event, QueryEvent, QueryType, encode_event, series_key};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use sqlx::Row;

    let bootstrap = broker.bootstrap();
    let db = TestDb::create("isolate").await;
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::spawn(
        "a",
        &WorkerConfig {
            bootstrap: &bootstrap,
            db_url: &db.url,
            group: "g-isolate",
            window: WINDOW,
            failpoint: None,
            log_dir: dir.path(),
            env: &[],
        },
    );
    eventually(DEADLINE, "migrations applied", || {
        let pool = db.pool.clone();
        async move {
            sqlx::query("SELECT to_regclass('query_rollups') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .ok()?
                .get::<bool, _>(0)
                .then_some(())
        }
    })
    .await;
    sqlx::query("ALTER TABLE query_rollups ADD CONSTRAINT no_evil CHECK (service <> 'evil')")
        .execute(&db.pool)
        .await
        .unwrap();

    // 3 services x 2 statements x 100 executions over 10 s of event time, ending now.
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let services = ["good", "evil", "fine"];
    let mut buf = Vec::new();
    for i in 0..100i64 {
        for service in services {
            for hash in ["aaaa000000000001", "bbbb000000000002"] {
                let e = Event::Query(QueryEvent {
                    service: service.into(),
                    instance: "i-1".into(),
                    query_hash: hash.into(),
                    query_type: QueryType::Select,
                    query_text: Some("SELECT 1".into()),
                    execution_time_us: 1_000 + i,
                    rows_affected: 1,
                    tenant_id: None,
                    trace_id: None,
                    executed_at_us: now_us - 10_000_000 + i * 100_000,
                });
                buf.clear();
                encode_event(&mut buf, &e);
                let key = series_key(&e);
                producer
                    .send(BaseRecord::to("perf.query").key(&key).payload(&buf))
                    .unwrap();
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    // Every good event counted, and every evil one in the dead-letter topic.
    let counts = eventually(DEADLINE, "good services counted", || {
        let pool = db.pool.clone();
        async move {
            let rows = sqlx::query(
                "SELECT service, sum(count)::bigint FROM query_rollups GROUP BY service ORDER BY service",
            )
            .fetch_all(&pool)
            .await
            .ok()?;
            let counts: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            (counts.iter().map(|c| c.1).sum::<i64>() >= 400).then_some(counts)
        }
    })
    .await;
    assert_eq!(
        counts,
        vec![("fine".to_string(), 200), ("good".to_string(), 200)],
        "only the refused service is missing, the others are exact"
    );
    // Read by count, not up to the end offsets: tansu reports a log end below the last record
    // of a multi-record batch.
    let dlq: Vec<perfstream_events::DeadLetter> =
        read_at_least(&bootstrap, "perf.dlq", PARTITIONS, 200)
            .iter()
            .map(|(_, v)| perfstream_events::decode_dead_letter(v).expect("dead letter decodes"))
            .collect();
    let mut offsets: Vec<_> = dlq
        .iter()
        .map(|d| (d.source_partition, d.source_offset))
        .collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), 200, "each refused event once");
    assert_eq!(dlq.len(), 200, "no refused event twice");
    for d in &dlq {
        assert_eq!(d.error_kind, "unwritable");
        assert!(
            d.reason.contains("23514") && d.reason.contains("no_evil"),
            "{}",
            d.reason
        );
        let event = perfstream_events::Decoder::default()
            .decode(d.original_value.as_deref().unwrap(), None)
            .expect("the original event, unchanged");
        assert!(matches!(event, Event::Query(q) if q.service == "evil"));
    }
    assert!(!w.exited(), "worker exited:\n{}", w.log_tail());
    assert!(w.log_contains("isolating it"), "{}", w.log_tail());
}
