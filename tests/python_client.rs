//! The Python client (`clients/python`, issue 17) end to end: a small instrumented Python
//! service (`clients/python/tests/e2e_service.py`: an ASGI app and a WSGI app behind the
//! client's middleware, and direct `record_query_performance` calls) runs a traffic plan this
//! test writes, against a real Kafka-protocol broker (librdkafka's mock cluster over TCP); a
//! Rust `Emitter` of the same service records one more spelling of the same statement; the real
//! `perfstream run` aggregates into a real Postgres. The oracle is the plan: every request
//! series (template, method, status class) and every query series (count, sum, min, max) is
//! counted exactly, and three spellings in two languages are one series with one catalog text.
//!
//! Second test: the same service pointed at a closed port. Every call returns (the script
//! ends), nothing is acknowledged, the drop counter accounts for everything the bounded queue
//! and the producer's bounded queue could not hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use perfstream_e2e::*;
use perfstream_emit::{Emitter, EmitterConfig, fingerprint};
use perfstream_events::{QueryEvent, QueryType};
use perfstream_kafka::{DevBroker, Topics};
use serde_json::{Value, json};
use sqlx::Row;

const SERVICE: &str = "py-campaign-api";
const PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(180);

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let p = ["PY", "PERFSTREAM_PYTHON"]
        .iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python with confluent-kafka and fastavro not found at {} (scripts/test.sh creates .venv)",
        p.display()
    );
    p
}

/// Runs the instrumented Python service on `plan`; its result file.
fn run_service(bootstrap: &str, plan: &Value, dir: &Path) -> Value {
    let plan_path = dir.join("plan.json");
    let out_path = dir.join("result.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let out = Command::new(python())
        .arg(repo().join("clients/python/tests/e2e_service.py"))
        .args(["--bootstrap", bootstrap, "--plan"])
        .arg(&plan_path)
        .arg("--out")
        .arg(&out_path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the Python service failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out_path).unwrap()).unwrap()
}

fn counter(v: &Value, stage: &str, name: &str) -> u64 {
    v[stage][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{stage}.{name} in {v}"))
}

/// Per (endpoint, method): (count, 2xx, 4xx, 5xx).
type Requests = BTreeMap<(String, String), (i64, i64, i64, i64)>;
/// Per (query_hash, query_type): (count, sum, min, max) in µs.
type Queries = BTreeMap<(String, String), (i64, i64, i64, i64)>;

/// What the rollups hold for the service; `None` until `perfstream run` created the tables.
async fn stored(pool: &sqlx::PgPool) -> Option<(Requests, Queries, (i64, i64, i64, i64))> {
    let mut requests = Requests::new();
    for r in sqlx::query(
        "SELECT endpoint, method, sum(count)::int8, sum(status_2xx)::int8, sum(status_4xx)::int8, \
         sum(status_5xx)::int8 FROM request_rollups WHERE service = $1 AND resolution NOT IN ('1h','1d') \
         GROUP BY 1, 2",
    )
    .bind(SERVICE)
    .fetch_all(pool)
    .await
    .ok()?
    {
        requests.insert((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4), r.get(5)));
    }
    let mut queries = Queries::new();
    for r in sqlx::query(
        "SELECT query_hash, query_type, sum(count)::int8, sum(sum_us)::int8, min(min_us), max(max_us) \
         FROM query_rollups WHERE service = $1 AND resolution NOT IN ('1h','1d') GROUP BY 1, 2",
    )
    .bind(SERVICE)
    .fetch_all(pool)
    .await
    .ok()?
    {
        queries.insert((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4), r.get(5)));
    }
    let r = sqlx::query(
        "SELECT coalesce(sum(samples), 0)::int8, coalesce(sum(memory_used_bytes_sum), 0)::int8, \
         coalesce(min(memory_used_bytes_min), 0), coalesce(max(memory_used_bytes_max), 0) \
         FROM resource_rollups WHERE service = $1 AND instance = 'py-0' AND resolution NOT IN ('1h','1d')",
    )
    .bind(SERVICE)
    .fetch_one(pool)
    .await
    .ok()?;
    Some((requests, queries, (r.get(0), r.get(1), r.get(2), r.get(3))))
}

fn now_us() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_micros()).unwrap()
}

/// (count, sum, min, max) of durations in µs.
fn figures(us: &[i64]) -> (i64, i64, i64, i64) {
    let n = us.len() as i64;
    (
        n,
        us.iter().sum(),
        *us.iter().min().unwrap(),
        *us.iter().max().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_service_traffic_is_counted_exactly_and_spellings_are_one_series() {
    let broker = DevBroker::start(1, PARTITIONS, &Topics::default()).expect("mock cluster");
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::create("pyclient").await;
    let dir = tempfile::tempdir().unwrap();

    // The plan, and from it the truth.
    let mut asgi = Vec::new();
    let mut wsgi = Vec::new();
    for id in 1..=30 {
        asgi.push(json!(["GET", format!("/campaigns/{id}")]));
    }
    asgi.extend((0..8).map(|_| json!(["POST", "/campaigns"])));
    asgi.extend((0..3).map(|_| json!(["GET", "/boom"])));
    asgi.extend((0..4).map(|k| json!(["GET", format!("/nowhere/{k}")])));
    wsgi.extend((0..10).map(|k| json!(["GET", format!("/domains/d{k}.example")])));
    wsgi.extend((0..2).map(|_| json!(["DELETE", "/domains/x"])));
    let expected_requests: Requests = [
        (("/campaigns/{id}", "GET"), (30, 30, 0, 0)),
        (("/campaigns", "POST"), (8, 8, 0, 0)),
        (("/boom", "GET"), (3, 0, 0, 3)),
        (("(unmatched)", "GET"), (4, 0, 4, 0)),
        (("/domains/{name}", "GET"), (10, 10, 0, 0)),
        (("(unmatched)", "DELETE"), (2, 0, 2, 0)),
    ]
    .into_iter()
    .map(|((e, m), v)| ((e.to_string(), m.to_string()), v))
    .collect();

    // One statement, three spellings: two from Python, one from Rust (below).
    let by_id = fingerprint::fingerprint("select * from campaigns where id = ?");
    let spelling_a = "SELECT * FROM campaigns WHERE id = 42";
    let spelling_b = "select *\n  from campaigns\n where id = $1 -- by id";
    let spelling_rust = "SELECT * FROM \"campaigns\" WHERE id=7;";
    let a_ms = [1.25, 0.5, 12.0, 3.75, 2.0];
    let b_ms = [0.25, 40.5, 7.0];
    let rust_us = [900_i64, 1_100];
    let insert = fingerprint::fingerprint("insert into events (a, b) values (?, ?)");
    let insert_ms = [5.5, 6.5];
    let seed_ms = [2.5, 2.5, 10.0, 0.001];
    let mut queries = Vec::new();
    for ms in a_ms {
        queries.push(json!([null, null, ms, 1, "campaign-1", spelling_a]));
    }
    for ms in b_ms {
        queries.push(json!([null, null, ms, 1, null, spelling_b]));
    }
    queries.push(json!([
        null,
        null,
        insert_ms[0],
        2,
        null,
        "INSERT INTO events (a, b) VALUES (1, 'x'), (2, 'y')"
    ]));
    queries.push(json!([
        null,
        "insert",
        insert_ms[1],
        1,
        null,
        "insert into events (a,b) values ($1,$2)"
    ]));
    // The seed's call with a hash of its own: sent as given. The slowest carries a trace id
    // (issue 14: schema version 2), which its sample keeps.
    for ms in seed_ms {
        let trace = (ms == 10.0).then_some(TRACE);
        queries.push(json!([
            "seed-hash-0001",
            "update",
            ms,
            3,
            "campaign-2",
            null,
            trace
        ]));
    }
    let us = |ms: &[f64]| {
        ms.iter()
            .map(|m| (m * 1000.0).round() as i64)
            .collect::<Vec<_>>()
    };
    let mut by_id_us = us(&a_ms);
    by_id_us.extend(us(&b_ms));
    by_id_us.extend(rust_us);
    let expected_queries: Queries = [
        (
            (by_id.hash.clone(), "select".to_string()),
            figures(&by_id_us),
        ),
        (
            (insert.hash.clone(), "insert".to_string()),
            figures(&us(&insert_ms)),
        ),
        (
            ("seed-hash-0001".to_string(), "update".to_string()),
            figures(&us(&seed_ms)),
        ),
    ]
    .into_iter()
    .collect();
    let memory = [100_i64, 250, 175];
    let expected_resources = (3, memory.iter().sum(), 100, 250);

    let plan = json!({
        "service": SERVICE, "instance": "py-0", "asgi": asgi, "wsgi": wsgi, "queries": queries,
        "resources": memory, "queue_size": 10_000, "producer_config": {},
        "flush_timeout": 60, "close_timeout": 10,
    });
    let result = run_service(&bootstrap, &plan, dir.path());
    let calls = result["calls"].as_u64().unwrap();
    assert_eq!(
        calls,
        (asgi.len() + wsgi.len() + queries.len() + memory.len()) as u64
    );
    assert_eq!(result["flushed"], json!(true), "{result}");
    assert_eq!(
        (
            counter(&result, "final", "accepted"),
            counter(&result, "final", "sent")
        ),
        (calls, calls),
        "{result}"
    );
    assert_eq!(
        counter(&result, "final", "dropped") + counter(&result, "final", "failed"),
        0
    );
    assert_eq!(
        result["statuses"]["GET /boom"],
        json!(500),
        "the app's exception reached the caller"
    );

    // The Rust side of the same service: text only, the emitter fingerprints it.
    let emitter = Emitter::new(EmitterConfig::new(bootstrap.clone())).unwrap();
    for t in rust_us {
        assert!(emitter.record_query(QueryEvent {
            service: SERVICE.into(),
            instance: "rust-0".into(),
            query_hash: String::new(),
            query_type: QueryType::Other,
            query_text: Some(spelling_rust.into()),
            execution_time_us: t,
            rows_affected: 1,
            tenant_id: None,
            trace_id: None,
            executed_at_us: now_us(),
        }));
    }
    let c = emitter.shutdown(Duration::from_secs(30));
    assert_eq!((c.sent, c.dropped, c.failed), (2, 0, 0), "{c:?}");

    let worker = Worker::spawn(
        "py",
        &WorkerConfig {
            bootstrap: &bootstrap,
            db_url: &db.url,
            group: "g-pyclient",
            window: "2s",
            failpoint: None,
            log_dir: dir.path(),
            env: &[],
        },
    );
    // Poll until the rollups hold exactly the plan; on the deadline, show what they hold.
    let want = (expected_requests, expected_queries, expected_resources);
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let got = stored(&db.pool).await;
        if got.as_ref() == Some(&want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rollups do not hold the plan after {DEADLINE:?}\nwant {want:#?}\ngot  {got:#?}\n{}",
            worker.log_tail()
        );
    }

    let text: Option<String> =
        sqlx::query_scalar("SELECT normalized_text FROM query_catalog WHERE query_hash = $1")
            .bind(&by_id.hash)
            .fetch_one(&db.pool)
            .await
            .expect("the hash is in the catalog");
    assert_eq!(
        text.as_deref(),
        Some("select * from campaigns where id = ?"),
        "no literal reaches the catalog"
    );
    // Every window keeps up to 5 samples per statement, so each seed call is one; only the
    // traced one has a trace id.
    let traces: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT execution_time_us, trace_id FROM query_samples \
         WHERE query_hash = 'seed-hash-0001' ORDER BY execution_time_us",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        traces,
        [
            (1, None),
            (2_500, None),
            (2_500, None),
            (10_000, Some(TRACE.to_string()))
        ]
    );
    let dlq: i64 = end_offsets(&bootstrap, &["perf.dlq"], PARTITIONS)
        .values()
        .sum();
    assert_eq!(dlq, 0, "nothing the client sent was refused");
    worker.stop();
}

#[test]
fn with_the_broker_down_calls_return_and_drops_are_counted() {
    // A closed port: connection refused forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    const QUEUE: u64 = 4;
    const PRODUCER_QUEUE: u64 = 3;
    let asgi: Vec<Value> = (0..300)
        .map(|k| json!(["GET", format!("/campaigns/{k}")]))
        .collect();
    let queries: Vec<Value> = (0..300)
        .map(|k| {
            json!([
                null,
                null,
                1.5,
                1,
                null,
                format!("SELECT * FROM t WHERE id = {k}")
            ])
        })
        .collect();
    let plan = json!({
        "service": SERVICE, "instance": "py-0", "asgi": asgi, "wsgi": [], "queries": queries,
        "resources": [], "queue_size": QUEUE,
        "producer_config": {"queue.buffering.max.messages": PRODUCER_QUEUE},
        "flush_timeout": 0, "close_timeout": 0,
    });
    // Returns: every one of the 600 calls returned although nothing could be sent.
    let result = run_service(&addr, &plan, dir.path());
    let calls = result["calls"].as_u64().unwrap();
    assert_eq!(calls, 600);
    let accepted = counter(&result, "after_calls", "accepted");
    let dropped = counter(&result, "after_calls", "dropped");
    assert_eq!(counter(&result, "after_calls", "sent"), 0);
    assert_eq!(accepted + dropped, calls, "{result}");
    // At most: the queue, one event in the thread's hands, the producer's queue.
    assert!(accepted <= QUEUE + 1 + PRODUCER_QUEUE, "{result}");
    assert!(dropped >= calls - (QUEUE + 1 + PRODUCER_QUEUE), "{result}");
    // Closing with a zero deadline accounts for every call: dropped or failed, none sent.
    assert_eq!(counter(&result, "final", "sent"), 0);
    assert_eq!(
        counter(&result, "final", "dropped") + counter(&result, "final", "failed"),
        calls,
        "{result}"
    );
    assert_eq!(
        result["statuses"]["GET /campaigns/7"],
        json!(200),
        "the app answered all along"
    );
}
