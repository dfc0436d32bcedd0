//! Supervision of `perfstream run`'s side tasks (issue 11, section 5), with the real binary on
//! a real Kafka-protocol broker (librdkafka's mock cluster over TCP) and a real Postgres.
//!
//! The failure is real: the alert evaluator finds an `alert_state` row it cannot read when it
//! takes the lead again after its connection was killed, an error retrying cannot fix. To see
//! `/readyz` and `/metrics` during the orderly shutdown that follows, the test holds a lock on
//! `consumer_offsets`, so the pipeline's flush waits (as it would behind a slow Postgres) until
//! the test lets it go. Every wait polls a condition with a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use perfstream_e2e::{TestDb, eventually, generate, require_env};
use perfstream_kafka::{DevBroker, Topics};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `pg_locks` query restricted to the test's database: other tests run next to this one.
macro_rules! in_this_db {
    ($sql:literal) => {
        concat!(
            $sql,
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    };
}

const GROUP: &str = "g-supervision";
const DEADLINE: Duration = Duration::from_secs(60);

/// One `perfstream run` process, its combined stdout/stderr in a file.
struct Run {
    child: Child,
    log: PathBuf,
}

impl Run {
    fn spawn(bootstrap: &str, db_url: &str, http_listen: &str, dir: &Path) -> Run {
        let log = dir.join("run.log");
        let out = std::fs::File::create(&log).expect("create log");
        let child = Command::new(require_env("E2E_PERFSTREAM_BIN"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .env("PERFSTREAM_LOG__FORMAT", "json")
            .env("PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
            .env("PERFSTREAM_KAFKA__GROUP_ID", GROUP)
            .env("PERFSTREAM_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("PERFSTREAM_POSTGRES__URL", db_url)
            .env("PERFSTREAM_POSTGRES__MAX_CONNECTIONS", "4")
            .env("PERFSTREAM_WINDOW__WINDOW", "1s")
            .env("PERFSTREAM_PIPELINE__FLUSH_INTERVAL_MS", "200")
            .env("PERFSTREAM_HTTP__LISTEN", http_listen)
            // The evaluator notices its dead connection and tries to lead again quickly.
            .env("PERFSTREAM_ALERTS__INTERVAL", "200ms")
            .env("PERFSTREAM_ALERTS__LOCK_RETRY", "100ms")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .expect("spawn perfstream run");
        Run { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    async fn exited(&mut self) -> ExitStatus {
        eventually(DEADLINE, "perfstream run to exit", || {
            let status = self.exit_status();
            async move { status }
        })
        .await
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now (the server binds it next; a race would fail loudly).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// One HTTP/1.0 GET: (status, body), or `None` when nothing answers.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The JSON log lines (`log.format = "json"`) of a run.
fn log_events(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
}

/// When the last committed flush began (µs): every flush sets `updated_at = now()` on the
/// progress rows it writes.
async fn last_progress_write(pool: &PgPool) -> i64 {
    scalar(
        pool,
        "SELECT (extract(epoch FROM max(updated_at)) * 1e6)::bigint FROM consumer_offsets",
    )
    .await
}

/// Issue 11, section 5: a side task failing after start is seen (log, `/readyz`, `/metrics`)
/// and ends the process non-zero, after the pipeline's orderly shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_evaluator_shows_in_probes_and_ends_the_run_after_the_flush() {
    let broker = DevBroker::start(1, 3, &Topics::default()).expect("mock cluster");
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::create("supervision").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let mut run = Run::spawn(&bootstrap, &db.url, &http.to_string(), dir.path());

    eventually(
        DEADLINE,
        "/readyz 200 and every partition claimed",
        || async {
            let ready = matches!(get(http, "/readyz").await, Some((200, _)));
            let claimed = scalar(&db.pool, "SELECT count(*) FROM consumer_offsets").await;
            (ready && claimed == 9).then_some(())
        },
    )
    .await;
    eventually(DEADLINE, "the evaluator to lead", || async {
        let leaders = scalar(
            &db.pool,
            in_this_db!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"),
        )
        .await;
        (leaders == 1).then_some(())
    })
    .await;

    // Events for the pipeline to hold, then every progress write held: the next flush waits
    // for this transaction, as it would behind a slow Postgres.
    let truth = generate(
        &bootstrap,
        &dir.path().join("truth.json"),
        &["--count", "300", "--rate", "3000", "--window", "1s"],
    )
    .await;
    let produced = truth.totals.acknowledged;
    eventually(DEADLINE, "the pipeline to poll every event", || async {
        let (_, metrics) = get(http, "/metrics").await?;
        let polled: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("perfstream_messages_in_total "))?
            .parse()
            .ok()?;
        (polled >= produced).then_some(())
    })
    .await;
    let mut hold = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE consumer_offsets IN EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .expect("lock consumer_offsets");
    eventually(DEADLINE, "a flush waiting for the test's lock", || async {
        let waiting = scalar(
            &db.pool,
            in_this_db!(
                "SELECT count(*) FROM pg_locks
                 WHERE relation = 'consumer_offsets'::regclass AND NOT granted"
            ),
        )
        .await;
        (waiting > 0).then_some(())
    })
    .await;
    let before = last_progress_write(&db.pool).await;

    // A state row no rule knows, then the leader's connection killed: it leads again, loads
    // the state and stops with an error that needs a person.
    sqlx::query(
        "INSERT INTO alert_state (group_id, rule, alert_key, labels, phase, since, window_count)
         VALUES ($1, 'no_such_rule', 'k', '{}', 'pending', now(), 1)",
    )
    .bind(GROUP)
    .execute(&db.pool)
    .await
    .expect("insert bad state");
    let killed = scalar(
        &db.pool,
        in_this_db!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
             WHERE locktype = 'advisory' AND granted"
        ),
    )
    .await;
    assert_eq!(killed, 1, "the evaluator's connection");

    let body = eventually(
        DEADLINE,
        "/readyz to report the failed evaluator",
        || async {
            match get(http, "/readyz").await {
                Some((503, body)) if body.contains("task evaluator failed") => Some(body),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        body.contains("unknown rule"),
        "the reason is in the body: {body}"
    );
    let (status, metrics) = get(http, "/metrics").await.expect("metrics while draining");
    assert_eq!(status, 200);
    for line in [
        "perfstream_task_up{task=\"evaluator\"} 0",
        "perfstream_task_failures_total{task=\"evaluator\"} 1",
        "perfstream_task_up{task=\"http\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    assert!(
        run.exit_status().is_none(),
        "the process waits for the pipeline's flush before exiting:\n{}",
        run.log()
    );

    hold.rollback().await.expect("release the lock");
    let status = run.exited().await;
    let log = run.log();
    assert!(!status.success(), "{status:?}\n{log}");
    let failure = log_events(&log)
        .into_iter()
        .find(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Side task failed"))
        })
        .unwrap_or_else(|| panic!("no failure event:\n{log}"));
    assert_eq!(failure["level"], "ERROR");
    assert_eq!(failure["fields"]["task"], "evaluator");
    assert_eq!(
        failure["fields"]["error"],
        "alert evaluator: stored alert state no_such_rule/k is invalid: unknown rule"
    );
    assert!(
        log.contains("side task `evaluator` failed: alert evaluator: stored alert state no_such_rule/k is invalid: unknown rule"),
        "the exit error names the task and the cause:\n{log}"
    );
    assert!(
        log.contains("Shutdown requested; flushing closed windows."),
        "{log}"
    );
    assert!(
        last_progress_write(&db.pool).await > before,
        "the held flush, or the final one, committed:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_http_port_fails_start_up_naming_the_http_task() {
    let broker = DevBroker::start(1, 3, &Topics::default()).expect("mock cluster");
    let db = TestDb::create("supervision_port").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut run = Run::spawn(
        &broker.bootstrap_servers(),
        &db.url,
        &addr.to_string(),
        dir.path(),
    );
    let status = run.exited().await;
    let log = run.log();
    assert!(!status.success(), "{status:?}\n{log}");
    assert!(
        log.contains(&format!(
            "starting side task `http`: config key `http.listen` = {addr}: cannot listen on {addr}"
        )),
        "{log}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_task_and_exits_zero() {
    let broker = DevBroker::start(1, 3, &Topics::default()).expect("mock cluster");
    let db = TestDb::create("supervision_term").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let mut run = Run::spawn(
        &broker.bootstrap_servers(),
        &db.url,
        &http.to_string(),
        dir.path(),
    );
    let metrics = eventually(DEADLINE, "/readyz 200", || async {
        match get(http, "/readyz").await {
            Some((200, _)) => get(http, "/metrics").await.map(|(_, m)| m),
            _ => None,
        }
    })
    .await;
    for task in ["evaluator", "http", "maintenance", "notifier"] {
        let line = format!("perfstream_task_up{{task=\"{task}\"}} 1");
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    let st = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = run.exited().await;
    let log = run.log();
    assert!(status.success(), "{status:?}\n{log}");
    let stopped: Vec<_> = log_events(&log)
        .into_iter()
        .filter(|e| e["fields"]["message"] == "Side task stopped.")
        .map(|e| e["fields"]["task"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(stopped.len(), 4, "{log}");
    assert!(!log.contains("Side task failed"), "{log}");
}
