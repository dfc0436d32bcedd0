//! Shared helpers of the end-to-end tests: a fresh Postgres database per test, an in-process
//! Kafka-protocol broker, pipeline worker processes (the real `perfstream` binary, built with
//! failpoints), the load generator's truth file as the oracle, and polling with a deadline.
//!
//! Required environment (set by `scripts/test.sh`; a missing one fails the test loudly):
//! `DATABASE_URL` (a superuser URL of a running Postgres) and `E2E_PERFSTREAM_BIN` (the binary).

pub mod setup;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perfstream_emit::truth::Truth;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

pub fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite through `bash scripts/test.sh`, which starts Postgres and the broker and sets it")
    })
}

/// A database created for one test and dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        Self::create_in(&require_env("DATABASE_URL"), tag).await
    }

    pub async fn create_in(admin_url: &str, tag: &str) -> TestDb {
        let admin_url = admin_url.to_string();
        let name = format!(
            "e2e_{tag}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("DATABASE_URL has no database part"),
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .expect("connect to test database");
        TestDb { url, pool }
    }
}

impl TestDb {
    /// A new pool on an existing test database (after a restart of its server).
    pub async fn reconnect(url: &str) -> TestDb {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .expect("reconnect to test database");
        TestDb {
            url: url.to_string(),
            pool,
        }
    }
}

/// A private Postgres cluster a test may stop and start (for outage tests). Binaries from
/// `PGBIN` (set by scripts/test.sh) or /usr/lib/postgresql/15/bin; runs as the `postgres` user
/// when the tests run as root (initdb refuses root).
pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = PathBuf::from(
            std::env::var("PGBIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        assert!(
            bin.join("initdb").exists(),
            "no initdb in {}: set PGBIN (scripts/test.sh does)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("pgcluster")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PgCluster { bin, dir, port };
        Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(c.dir.path())
            .status()
            .expect("chown");
        c.pg(
            "initdb",
            &[
                "-D",
                &c.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        c.up();
        c
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let root = is_root();
        let out = if root {
            Command::new("runuser")
                .arg("-u")
                .arg("postgres")
                .arg("--")
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .expect("run postgres tool");
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn up(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.pg(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        );
    }

    pub fn down(&self) {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(exe)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output()
        } else {
            Command::new(exe)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output()
        };
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// One `perfstream run` process.
pub struct Worker {
    pub name: String,
    child: Child,
    log: PathBuf,
}

pub struct WorkerConfig<'a> {
    pub bootstrap: &'a str,
    pub db_url: &'a str,
    pub group: &'a str,
    pub window: &'a str,
    pub failpoint: Option<&'a str>,
    pub log_dir: &'a Path,
    /// Extra environment, e.g. `PERFSTREAM_*` settings of one test.
    pub env: &'a [(&'a str, &'a str)],
}

impl Worker {
    pub fn spawn(name: &str, c: &WorkerConfig<'_>) -> Worker {
        let bin = require_env("E2E_PERFSTREAM_BIN");
        let log = c.log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open worker log");
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .env("PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS", c.bootstrap)
            .env("PERFSTREAM_KAFKA__GROUP_ID", c.group)
            .env("PERFSTREAM_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("PERFSTREAM_POSTGRES__URL", c.db_url)
            .env("PERFSTREAM_POSTGRES__MAX_CONNECTIONS", "4")
            .env("PERFSTREAM_WINDOW__WINDOW", c.window)
            .env("PERFSTREAM_WINDOW__IDLE_TIMEOUT", "2s")
            .env("PERFSTREAM_PIPELINE__FLUSH_INTERVAL_MS", "300")
            .env("PERFSTREAM_PIPELINE__OWNER", name)
            // Several workers run at once: each serves /metrics on a port of its own.
            .env("PERFSTREAM_HTTP__LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out);
        if let Some(fp) = c.failpoint {
            cmd.env("PERFSTREAM_FAILPOINT", fp);
        }
        cmd.envs(c.env.iter().copied());
        let child = cmd.spawn().expect("spawn perfstream run");
        Worker {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig} {} failed", self.name);
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True once the process has exited (e.g. at a failpoint).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().expect("wait worker")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(needle)
    }

    /// How many times `needle` occurs in the whole log.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(needle)
            .count()
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// Runs the load generator in-process against `bootstrap`, writing its truth file.
pub async fn generate(bootstrap: &str, truth: &Path, extra: &[&str]) -> Truth {
    let mut args: Vec<String> = ["--bootstrap", bootstrap, "--truth"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(truth.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args = perfstream_emit::GenerateArgs::from_args(args).expect("generator args");
    perfstream_emit::run(args).await.expect("generator run");
    let text = std::fs::read_to_string(truth).expect("read truth");
    serde_json::from_str(&text).expect("parse truth")
}

/// Per (kind, window start, key): (count, sum, min, max) as stored.
pub type Totals = BTreeMap<(String, i64, String), (i64, i64, i64, i64)>;

pub async fn stored_totals(tx: &mut sqlx::PgConnection) -> Totals {
    let mut out = Totals::new();
    let q = "SELECT 'query', (extract(epoch from window_start) * 1000000)::bigint, service || '/' || query_hash || '/' || query_type, count, sum_us, min_us, max_us FROM query_rollups WHERE resolution NOT IN ('1h','1d') \
             UNION ALL SELECT 'request', (extract(epoch from window_start) * 1000000)::bigint, service || '/' || endpoint || '/' || method, count, sum_us, min_us, max_us FROM request_rollups WHERE resolution NOT IN ('1h','1d') \
             UNION ALL SELECT 'resource', (extract(epoch from window_start) * 1000000)::bigint, service || '/' || instance, samples, memory_used_bytes_sum, memory_used_bytes_min, memory_used_bytes_max FROM resource_rollups WHERE resolution NOT IN ('1h','1d')";
    for r in sqlx::query(q)
        .fetch_all(&mut *tx)
        .await
        .expect("read rollups")
    {
        out.insert(
            (r.get(0), r.get(1), r.get(2)),
            (r.get(3), r.get(4), r.get(5), r.get(6)),
        );
    }
    out
}

pub fn truth_totals(t: &Truth) -> Totals {
    let mut out = Totals::new();
    for r in &t.query {
        let d = &r.execution_time_us;
        out.insert(
            (
                "query".into(),
                r.window_start_us,
                format!("{}/{}/{}", r.service, r.query_hash, r.query_type),
            ),
            (d.count as i64, d.sum, d.min, d.max),
        );
    }
    for r in &t.request {
        let d = &r.response_time_us;
        out.insert(
            (
                "request".into(),
                r.window_start_us,
                format!("{}/{}/{}", r.service, r.endpoint, r.method),
            ),
            (d.count as i64, d.sum, d.min, d.max),
        );
    }
    for r in &t.resource {
        let g = &r.memory_used_bytes;
        out.insert(
            (
                "resource".into(),
                r.window_start_us,
                format!("{}/{}", r.service, r.instance),
            ),
            (g.count as i64, g.sum, g.min, g.max),
        );
    }
    out
}

/// Stored progress per (topic, partition): (applied_through_offset, applied_watermark µs).
pub async fn stored_progress(tx: &mut sqlx::PgConnection) -> BTreeMap<(String, i32), (i64, i64)> {
    let q = "SELECT topic, partition, applied_through_offset, (extract(epoch from applied_watermark) * 1000000)::bigint \
             FROM consumer_offsets WHERE applied_through_offset IS NOT NULL";
    let mut out = BTreeMap::new();
    if let Ok(rows) = sqlx::query(q).fetch_all(&mut *tx).await {
        for r in rows {
            out.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
        }
    }
    out
}

/// End offsets of every partition of `topics` (after the generator finished producing).
pub fn end_offsets(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
) -> BTreeMap<(String, i32), i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let mut out = BTreeMap::new();
    for t in topics {
        for p in 0..partitions {
            let (_, high) = c
                .fetch_watermarks(t, p, Duration::from_secs(10))
                .expect("fetch watermarks");
            out.insert((t.to_string(), p), high);
        }
    }
    out
}

/// Every message of `topic` (all partitions, from the start to their current end) as
/// (key, payload).
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let ends = end_offsets(bootstrap, &[topic], partitions);
    let total: i64 = ends.values().sum();
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    drop(tpl);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < total {
        assert!(
            Instant::now() < deadline,
            "read {} of {total} messages of {topic}",
            out.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.expect("consume");
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Every message of `topic` decoded as a dead letter.
pub fn read_dead_letters(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<perfstream_events::DeadLetter> {
    read_topic(bootstrap, topic, partitions)
        .iter()
        .map(|(_, v)| perfstream_events::decode_dead_letter(v).expect("dead letter decodes"))
        .collect()
}

/// The first `n` messages of `topic` from the beginning of every partition, whatever the log
/// end offsets say; panics after [`DEADLINE`]-like 120 s.
pub fn read_at_least(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} messages of {topic}",
            out.len()
        );
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.expect("consume");
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Describes the differences between two totals maps (empty when equal).
pub fn diff(expected: &Totals, got: &Totals) -> String {
    let mut lines = Vec::new();
    for (k, v) in expected {
        match got.get(k) {
            None => lines.push(format!("missing {k:?}: expected {v:?}")),
            Some(g) if g != v => lines.push(format!("wrong {k:?}: expected {v:?}, got {g:?}")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !expected.contains_key(k) {
            lines.push(format!("unexpected {k:?}: {v:?}"));
        }
    }
    let n = lines.len();
    lines.truncate(20);
    if n > 20 {
        lines.push(format!("... {} more", n - 20));
    }
    lines.join("\n")
}
