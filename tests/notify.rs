//! Alert notifications end to end (issue 15): `perfstream run` (the real binary: pipeline,
//! evaluator, notifier) on a real Kafka-protocol broker and a real Postgres, the load
//! generator's truth episodes, a real Alertmanager (Debian's `prometheus-alertmanager`, started
//! here on a free port with a config written here) and a webhook receiver (a small HTTP server in
//! this test). Alertmanager's own notifications come back to a second receiver of this test, so
//! its grouping and the states it saw are checked too.
//!
//! Both receivers go down for 30 s after the first delivery (Alertmanager stopped, the webhook's
//! port closed); meanwhile evaluation and the Kafka topic must go on, and afterwards every
//! transition must reach both, the webhook exactly once per dedup id with a valid HMAC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perfstream_e2e::*;
use perfstream_kafka::{DevBroker, Topics};
use serde_json::Value;
use sqlx::{PgPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const WINDOW: &str = "2s";
const PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(300);
const OUTAGE: Duration = Duration::from_secs(30);
const SECRET: &str = "s3cret";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Alertmanager binary: `E2E_ALERTMANAGER_BIN`, else `alertmanager` on PATH, else Debian's
/// `/usr/bin/prometheus-alertmanager`. Fails loudly otherwise.
fn alertmanager_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_ALERTMANAGER_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("alertmanager"))
            .find(|p| p.exists())
    });
    let p = on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"));
    assert!(
        p.exists(),
        "Alertmanager not found (set E2E_ALERTMANAGER_BIN, or `apt-get install -y \
         prometheus-alertmanager`; scripts/test.sh installs it)"
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One request a receiver got: path, headers (lower-case names), body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A minimal HTTP/1.1 receiver: answers every request `200`, records it. Aborting the task
/// closes the port (connection refused), as a crashed receiver would.
async fn receiver(addr: SocketAddr, log: Log) -> JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.expect("bind receiver");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let path = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or("")
                    .to_string();
                let headers: BTreeMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .expect("requests carry a Content-Length");
                while buf.len() < head_end + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = buf[head_end..head_end + len].to_vec();
                log.lock().unwrap().push(Received {
                    path,
                    headers,
                    body,
                });
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    })
}

/// A real Alertmanager on `port`, notifying `notify_url`, grouping by alertname and service.
struct Alertmanager {
    child: Child,
    port: u16,
}

impl Alertmanager {
    fn start(dir: &Path, port: u16, notify_url: &str) -> Alertmanager {
        let cfg = dir.join("alertmanager.yml");
        std::fs::write(
            &cfg,
            format!(
                "route:\n  receiver: test\n  group_by: ['alertname', 'service']\n  group_wait: 1s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: test\n  webhook_configs:\n  \
                 - url: '{notify_url}'\n    send_resolved: true\n"
            ),
        )
        .expect("write alertmanager.yml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("alertmanager.log"))
            .expect("am log");
        let child = Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        Alertmanager { child, port }
    }

    async fn ready(&self) {
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(Duration::from_secs(30), "alertmanager to be ready", || {
            let addr = addr.clone();
            async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
                s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n").await.ok()?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.ok()?;
                out.starts_with(b"HTTP/1.0 200").then_some(())
            }
        })
        .await;
    }

    /// SIGTERM (Alertmanager saves its notification log) and wait.
    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        self.child.wait().expect("wait alertmanager");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
}

/// (rule, severity, service, resolve_reason) of a transition.
type Recorded = (String, String, String, Option<String>);

/// Every recorded transition: (alert_id, state) -> what the table says of it.
async fn transitions(pool: &PgPool) -> BTreeMap<(String, String), Recorded> {
    sqlx::query("SELECT alert_id, state, rule, severity, service, resolve_reason FROM alerts")
        .fetch_all(pool)
        .await
        .expect("read alerts")
        .into_iter()
        .map(|r| {
            (
                (r.get(0), r.get(1)),
                (r.get(2), r.get(3), r.get(4), r.get(5)),
            )
        })
        .collect()
}

/// HMAC-SHA256 of each body, computed independently by Python's `hmac` module.
fn python_hmacs(bodies: &[Vec<u8>]) -> Vec<String> {
    let py = std::env::var_os("PY")
        .or_else(|| std::env::var_os("PERFSTREAM_PYTHON"))
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    let hex: Vec<String> = bodies
        .iter()
        .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
        .collect();
    let out = Command::new(&py)
        .arg("-c")
        .arg(
            "import hmac,hashlib,sys\nfor h in sys.stdin.read().split():\n    \
             print('sha256='+hmac.new(sys.argv[1].encode(), bytes.fromhex(h), hashlib.sha256).hexdigest())",
        )
        .arg(SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(hex.join("\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("python at {} runs: {e}", py.display()));
    assert!(out.status.success(), "python hmac failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_reach_alertmanager_and_a_webhook_through_a_30s_outage() {
    let am_bin = alertmanager_bin();
    assert!(am_bin.exists());
    let broker = DevBroker::start(1, PARTITIONS, &Topics::default()).expect("mock cluster");
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::create("notify").await;
    let dir = tempfile::tempdir().expect("tempdir");

    // Receivers: the webhook target (goes down), Alertmanager's own notifications (stays up).
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let am_notes_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hook_log: Log = Log::default();
    let am_log: Log = Log::default();
    let hook = receiver(hook_addr, hook_log.clone()).await;
    let _am_notes = receiver(am_notes_addr, am_log.clone()).await;
    let am_port = free_port();
    let am_notify = format!("http://{am_notes_addr}/am");
    let am = Alertmanager::start(dir.path(), am_port, &am_notify);
    am.ready().await;

    // Routes: everything to Alertmanager and to the webhook; critical alerts also to /critical.
    let config = dir.path().join("perfstream.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[notify]
interval = "200ms"
dashboard_url = "http://127.0.0.1:9100/"

[[notify.targets]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:{am_port}"
resend_interval = "2s"
initial_backoff = "500ms"
max_backoff = "4s"

[[notify.targets]]
name = "hook"
kind = "webhook"
url = "http://{hook_addr}/hook"
secret = "{SECRET}"
initial_backoff = "500ms"
max_backoff = "4s"

[[notify.targets]]
name = "critical"
kind = "webhook"
url = "http://{hook_addr}/critical"
initial_backoff = "500ms"
max_backoff = "4s"

[[notify.routes]]
targets = ["am", "hook"]

[[notify.routes]]
severities = ["critical"]
targets = ["critical"]
"#
        ),
    )
    .expect("write config");
    let config_s = config.display().to_string();
    let worker = Worker::spawn(
        "w1",
        &WorkerConfig {
            bootstrap: &bootstrap,
            db_url: &db.url,
            group: "g-notify",
            window: WINDOW,
            failpoint: None,
            log_dir: dir.path(),
            env: &[("PERFSTREAM_CONFIG", config_s.as_str())],
        },
    );
    eventually(Duration::from_secs(60), "the notifier's tables", || async {
        let ok: Option<bool> =
            sqlx::query_scalar("SELECT to_regclass('alert_deliveries') IS NOT NULL")
                .fetch_one(&db.pool)
                .await
                .ok();
        ok.unwrap_or(false).then_some(())
    })
    .await;

    let truth_path = dir.path().join("truth.json");
    let bs = bootstrap.clone();
    let generator = tokio::spawn(async move {
        generate(
            &bs,
            &truth_path,
            &[
                "--count",
                "120000",
                "--rate",
                "1000",
                "--seed",
                "3",
                "--window",
                WINDOW,
                "--resource-interval",
                "1s",
                "--too-late",
                "0",
            ],
        )
        .await
    });

    // The first delivery reached each of am and hook: take both down.
    eventually(DEADLINE, "a first delivery to am and to hook", || async {
        let n = scalar(
            &db.pool,
            "SELECT count(DISTINCT target) FROM alert_deliveries
             WHERE delivered_at IS NOT NULL AND target IN ('am', 'hook')",
        )
        .await;
        (n == 2).then_some(())
    })
    .await;
    let outage_end = tokio::time::Instant::now() + OUTAGE;
    am.stop();
    hook.abort();
    let _ = hook.await;
    let outage_seq = scalar(&db.pool, "SELECT coalesce(max(seq), 0) FROM alert_outbox").await;
    let progress_at_outage = scalar(
        &db.pool,
        "SELECT (extract(epoch FROM last_window_end) * 1e6)::bigint FROM alert_progress",
    )
    .await;
    // While both are down: new transitions are judged and published to Kafka, and deliveries to
    // both targets fail and wait.
    eventually(
        OUTAGE,
        "a transition published to Kafka during the outage",
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM alert_outbox WHERE seq > $1 AND sent_at IS NOT NULL",
            )
            .bind(outage_seq)
            .fetch_one(&db.pool)
            .await
            .unwrap_or(0);
            (n > 0).then_some(())
        },
    )
    .await;
    eventually(
        OUTAGE,
        "failed, waiting deliveries to am and hook",
        || async {
            let n = scalar(
                &db.pool,
                "SELECT count(DISTINCT target) FROM alert_deliveries
             WHERE delivered_at IS NULL AND attempts > 0 AND last_error IS NOT NULL
               AND target IN ('am', 'hook')",
            )
            .await;
            (n == 2).then_some(())
        },
    )
    .await;
    let progress_in_outage = scalar(
        &db.pool,
        "SELECT (extract(epoch FROM last_window_end) * 1e6)::bigint FROM alert_progress",
    )
    .await;
    assert!(
        progress_in_outage > progress_at_outage,
        "evaluation stalled while the receivers were down"
    );
    assert!(
        tokio::time::Instant::now() < outage_end,
        "the outage checks took longer than the outage"
    );
    tokio::time::sleep_until(outage_end).await; // the outage lasts exactly OUTAGE
    let _hook = receiver(hook_addr, hook_log.clone()).await;
    let am = Alertmanager::start(dir.path(), am_port, &am_notify);
    am.ready().await;

    let truth = generator.await.expect("generator task");
    assert!(!truth.episodes.is_empty());
    let last_needed = truth.params.end_us - 4 * 2_000_000;
    eventually(DEADLINE, "evaluation to cover the stream", || async {
        let end = scalar(
            &db.pool,
            "SELECT (extract(epoch FROM last_window_end) * 1e6)::bigint FROM alert_progress",
        )
        .await;
        (end >= last_needed).then_some(())
    })
    .await;
    eventually(DEADLINE, "every delivery done", || async {
        let routed = scalar(
            &db.pool,
            "SELECT count(*) FROM alert_outbox o JOIN alert_notify_progress p ON o.seq <= p.last_seq",
        )
        .await;
        let all = scalar(&db.pool, "SELECT count(*) FROM alert_outbox").await;
        let waiting = scalar(
            &db.pool,
            "SELECT count(*) FROM alert_deliveries WHERE delivered_at IS NULL",
        )
        .await;
        (routed == all && waiting == 0).then_some(())
    })
    .await;

    let table = transitions(&db.pool).await;
    assert!(!table.is_empty());
    for (id, state) in table.keys() {
        assert!(
            table.contains_key(&(id.clone(), "firing".into()))
                && table.contains_key(&(id.clone(), "resolved".into())),
            "{id} {state}: every episode fires and resolves"
        );
    }
    let criticals: BTreeSet<(String, String)> = table
        .iter()
        .filter(|(_, (_, sev, _, _))| sev == "critical")
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !criticals.is_empty(),
        "the truth has pool exhaustion (critical)"
    );

    // Retries happened on both targets (the outage), and nothing failed for good.
    for target in ["am", "hook"] {
        let retried = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM alert_deliveries WHERE target = $1 AND attempts > 1",
        )
        .bind(target)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(retried > 0, "{target}: no delivery was retried");
    }

    // The webhook: each transition exactly once, by dedup id; signed; the body matches the table.
    let got = hook_log.lock().unwrap().clone();
    let hook_reqs: Vec<&Received> = got.iter().filter(|r| r.path == "/hook").collect();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &hook_reqs {
        let b: Value = serde_json::from_slice(&r.body).expect("webhook body is JSON");
        let key = (
            b["alert_id"].as_str().unwrap().to_string(),
            b["state"].as_str().unwrap().to_string(),
        );
        let (rule, severity, service, reason) = table.get(&key).expect("a transition of the table");
        let dedup = format!("{}:{}:{severity}", key.0, key.1);
        assert_eq!(
            r.headers.get("x-perfstream-dedup-id").map(String::as_str),
            Some(dedup.as_str())
        );
        assert_eq!(b["dedup_id"], dedup);
        // Resolves say why (issue 15, section 3); the episodes end by clearing or by silence.
        if key.1 == "resolved" {
            let why = reason.as_deref().expect("a resolve has a reason");
            assert!(why == "cleared" || why == "no_data", "{key:?}: {why}");
        }
        assert_eq!(b["resolve_reason"].as_str(), reason.as_deref(), "{key:?}");
        assert_eq!(
            (&b["rule"], &b["severity"], &b["service"]),
            (
                &Value::from(rule.as_str()),
                &Value::from(severity.as_str()),
                &Value::from(service.as_str())
            )
        );
        *seen.entry(key).or_default() += 1;
    }
    let want: BTreeSet<&(String, String)> = table.keys().collect();
    assert_eq!(
        seen.keys().collect::<BTreeSet<_>>(),
        want,
        "webhook vs table"
    );
    assert!(
        seen.values().all(|n| *n == 1),
        "webhook got a transition twice: {seen:?}"
    );
    let bodies: Vec<Vec<u8>> = hook_reqs.iter().map(|r| r.body.clone()).collect();
    let sigs = python_hmacs(&bodies);
    assert_eq!(sigs.len(), hook_reqs.len());
    for (r, sig) in hook_reqs.iter().zip(&sigs) {
        assert_eq!(r.headers.get("x-perfstream-signature"), Some(sig), "HMAC");
    }
    // The critical-only route.
    let crit: BTreeSet<(String, String)> = got
        .iter()
        .filter(|r| r.path == "/critical")
        .map(|r| {
            let b: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(
                !r.headers.contains_key("x-perfstream-signature"),
                "no secret, no signature"
            );
            (
                b["alert_id"].as_str().unwrap().into(),
                b["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(crit, criticals, "the critical route");

    // Alertmanager: its notifications, grouped by (alertname, service), with our severities;
    // every alert it notified as firing it later notified as resolved.
    let notes = am_log.lock().unwrap().clone();
    let mut am_states: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in notes.iter().filter(|r| r.path == "/am") {
        let b: Value = serde_json::from_slice(&n.body).expect("alertmanager webhook JSON");
        let group = b["groupLabels"].as_object().expect("groupLabels");
        let keys: BTreeSet<&str> = group.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["alertname", "service"]),
            "grouped by alertname and service"
        );
        for a in b["alerts"].as_array().expect("alerts") {
            let l = &a["labels"];
            assert_eq!(l["alertname"], group["alertname"]);
            assert_eq!(l["service"], group["service"]);
            let id = l["alert_id"].as_str().expect("alert_id label").to_string();
            let (rule, severity, _, _) = table
                .get(&(id.clone(), "firing".into()))
                .expect("an alert of the table");
            assert_eq!(l["alertname"], rule.as_str());
            assert_eq!(l["severity"], severity.as_str(), "{id}: severity");
            assert!(
                a["generatorURL"].as_str().unwrap_or("").contains(&id),
                "generatorURL links the alert"
            );
            am_states
                .entry(id)
                .or_default()
                .insert(a["status"].as_str().unwrap().to_string());
        }
    }
    assert!(!am_states.is_empty(), "alertmanager notified nothing");
    for (id, states) in &am_states {
        assert!(
            states.contains("firing") && states.contains("resolved"),
            "{id}: alertmanager saw {states:?}"
        );
    }
    // Alerts whose firing reached Alertmanager well before their resolve (it had time to notify
    // them as firing) were all notified.
    let long: Vec<String> = sqlx::query_scalar(
        "SELECT f.alert_id FROM alert_deliveries f JOIN alert_deliveries r
           ON r.target = f.target AND r.alert_id = f.alert_id AND r.state = 'resolved'
         WHERE f.target = 'am' AND f.state = 'firing'
           AND r.delivered_at > f.delivered_at + interval '5 seconds'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!long.is_empty());
    for id in &long {
        assert!(
            am_states.contains_key(id),
            "{id}: firing at alertmanager but never notified"
        );
    }
    eprintln!(
        "notify e2e: {} transitions, webhook {} requests, critical route {}, alertmanager \
         notified {} alerts ({} long enough to require it)",
        table.len(),
        hook_reqs.len(),
        crit.len(),
        am_states.len(),
        long.len()
    );
    assert!(worker.stop().success(), "worker exit status");
    drop(am);
}
