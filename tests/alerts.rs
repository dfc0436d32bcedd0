//! Alerting end to end (issue 8): `perfstream run` workers (the real binary: pipeline plus the
//! alert evaluator it starts) on a real Kafka-protocol broker (librdkafka's mock cluster over
//! TCP) and a real Postgres, the load generator's truth file as the oracle. Two workers run in
//! one group, so one evaluator leads and one stands by; the leading process is SIGKILLed twice
//! mid-episode (after its first firing and after its first resolved transition committed) and
//! replaced. Every wait polls a condition with a deadline.
//!
//! Checked: each episode of the truth gives exactly one firing and one resolved transition of
//! each rule it lists, on its key, sharing one alert id, and nothing else fires; read from the
//! `alerts` table, from the topic in Rust, and from the topic by an independent Python consumer
//! (confluent-kafka + fastavro with `schemas/alert_event.avsc`). The crashes lose no transition
//! and invent no id: the topic holds exactly the table's (alert_id, state) pairs, possibly
//! repeated (at-least-once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use perfstream_e2e::*;
use perfstream_events::AlertState;
use perfstream_kafka::{DevBroker, Topics};
use sqlx::{PgPool, Row};

const WINDOW: &str = "2s";
const WINDOW_US: i64 = 2_000_000;
const PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(300);
const GROUP: &str = "g-alerts";

/// (rule, key labels): what identifies an expected alert.
type AlertKey = (String, BTreeMap<String, String>);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let p = std::env::var_os("PERFSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python with confluent-kafka and fastavro not found at {} (scripts/test.sh creates .venv)",
        p.display()
    );
    p
}

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(0)
}

/// Evaluators holding the group's advisory lock in this database.
async fn leaders(pool: &PgPool) -> i64 {
    scalar(
        pool,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
}

/// Every recorded transition: (rule, labels) -> [(state, alert_id, window start)] in window order.
async fn table_alerts(pool: &PgPool) -> BTreeMap<AlertKey, Vec<(String, String, i64)>> {
    let rows = sqlx::query(
        "SELECT rule, labels::text, state, alert_id, (extract(epoch from window_start) * 1e6)::bigint
         FROM alerts ORDER BY window_start, state",
    )
    .fetch_all(pool)
    .await
    .expect("read alerts");
    let mut out: BTreeMap<AlertKey, Vec<(String, String, i64)>> = BTreeMap::new();
    for r in rows {
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&r.get::<String, _>(1)).expect("labels json");
        out.entry((r.get(0), labels))
            .or_default()
            .push((r.get(2), r.get(3), r.get(4)));
    }
    out
}

/// Every message of the alerts topic (all partitions, to their current end), decoded in Rust.
fn topic_alerts(bootstrap: &str) -> Vec<perfstream_events::AlertEvent> {
    read_topic(bootstrap, "perf.alerts", PARTITIONS)
        .into_iter()
        .map(|(key, value)| {
            let e = perfstream_events::decode_alert(&value).expect("alert decodes");
            assert_eq!(
                key.as_deref(),
                Some(e.alert_id.as_bytes()),
                "keyed by alert id"
            );
            e
        })
        .collect()
}

/// The independent check: confluent-kafka reads the topic to its end, fastavro decodes each
/// payload with the schema file; prints `alert_id state rule` per message.
const PY_READER: &str = r#"
import io, json, sys, time
import fastavro
from confluent_kafka import Consumer, TopicPartition
bootstrap, schema_path, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema = fastavro.parse_schema(json.load(open(schema_path)))
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-alerts", "enable.auto.commit": False})
ends = {p: c.get_watermark_offsets(TopicPartition("perf.alerts", p), timeout=10)[1] for p in range(parts)}
c.assign([TopicPartition("perf.alerts", p, 0) for p in range(parts)])
left = {p for p, e in ends.items() if e > 0}
deadline = time.time() + 60
while left:
    if time.time() > deadline:
        sys.exit("timed out reading perf.alerts")
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        sys.exit(str(m.error()))
    v = m.value()
    if v[0] != 0:
        sys.exit("bad magic byte")
    rec = fastavro.schemaless_reader(io.BytesIO(v[5:]), schema)
    if m.key().decode() != rec["alert_id"]:
        sys.exit("key is not the alert id")
    print(rec["alert_id"], rec["state"], rec["rule"])
    if m.offset() + 1 >= ends[m.partition()]:
        left.discard(m.partition())
c.close()
"#;

fn python_alerts(bootstrap: &str) -> Vec<(String, String, String)> {
    let out = Command::new(python())
        .arg("-c")
        .arg(PY_READER)
        .arg(bootstrap)
        .arg(repo().join("schemas/alert_event.avsc"))
        .arg(PARTITIONS.to_string())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let mut p = l.split(' ');
            let mut next = || p.next().expect("three fields").to_string();
            (next(), next(), next())
        })
        .collect()
}

/// SIGKILLs the process whose evaluator committed last (`alert_progress.evaluated_by` is
/// `host:pid`): the leader.
async fn kill_leader(pool: &PgPool) {
    let owner: String = sqlx::query_scalar("SELECT evaluated_by FROM alert_progress")
        .fetch_one(pool)
        .await
        .expect("alert progress");
    let pid = owner
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no pid in evaluated_by {owner:?}"));
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -KILL {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_episode_fires_and_resolves_once_through_evaluator_crashes() {
    let broker = DevBroker::start(1, PARTITIONS, &Topics::default()).expect("mock cluster");
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::create("alerts").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spawn = |name: &str| {
        Worker::spawn(
            name,
            &WorkerConfig {
                bootstrap: &bootstrap,
                db_url: &db.url,
                group: GROUP,
                window: WINDOW,
                failpoint: None,
                log_dir: dir.path(),
                env: &[],
            },
        )
    };
    let mut workers = vec![spawn("w1")];
    eventually(
        Duration::from_secs(60),
        "the pipeline's migrations (alerts tables)",
        || async {
            let ok: Option<bool> =
                sqlx::query_scalar("SELECT to_regclass('alert_outbox') IS NOT NULL")
                    .fetch_one(&db.pool)
                    .await
                    .ok();
            ok.unwrap_or(false).then_some(())
        },
    )
    .await;
    workers.push(spawn("w2"));

    // The generator, paced (2 minutes of event time at 1000 events/s, episodes from 30 s to
    // 72 s), with the arguments crates/perfstream-evaluator/tests/truth_episodes.rs checks.
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
    eventually(DEADLINE, "one leading evaluator", || async {
        (leaders(&db.pool).await == 1).then_some(())
    })
    .await;

    // Kill the leading process right after its first firing transition committed (mid-episode),
    // then the next leader after its first resolved one; start a replacement each time.
    for (i, (what, sql)) in [
        (
            "the first firing transition",
            "SELECT count(*) FROM alerts WHERE state = 'firing'",
        ),
        (
            "the first resolved transition",
            "SELECT count(*) FROM alerts WHERE state = 'resolved'",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        eventually(DEADLINE, what, || async {
            (scalar(&db.pool, sql).await > 0).then_some(())
        })
        .await;
        if i == 0 {
            let resolved = scalar(
                &db.pool,
                "SELECT count(*) FROM alerts WHERE state = 'resolved'",
            )
            .await;
            assert_eq!(resolved, 0, "the first crash must fall inside the episodes");
        }
        kill_leader(&db.pool).await;
        let dead = eventually(Duration::from_secs(30), "the killed worker to exit", || {
            let i = workers.iter_mut().position(|w| w.exited());
            async move { i }
        })
        .await;
        workers.remove(dead);
        workers.push(spawn(&format!("w{}", 3 + i)));
    }

    let truth = generator.await.expect("generator task");
    assert!(!truth.episodes.is_empty());
    // Everything the pipeline could close was judged (the last windows stay open: no event
    // after them moves the watermark).
    let last_needed = truth.params.end_us - 4 * WINDOW_US;
    eventually(DEADLINE, "evaluation to cover the stream", || async {
        let end: Option<i64> = sqlx::query_scalar(
            "SELECT (extract(epoch from last_window_end) * 1e6)::bigint FROM alert_progress",
        )
        .fetch_optional(&db.pool)
        .await
        .ok()
        .flatten();
        (end.is_some_and(|e| e >= last_needed)).then_some(())
    })
    .await;
    eventually(DEADLINE, "the outbox to drain", || async {
        (scalar(
            &db.pool,
            "SELECT count(*) FROM alert_outbox WHERE sent_at IS NULL",
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    for w in workers {
        assert!(w.stop().success(), "worker exit status");
    }

    // Expected: each episode's rules on its key. The rollups sum cache hits over caches, so the
    // generator's `cache` label is not part of a key.
    let mut expected: BTreeMap<AlertKey, (i64, i64)> = BTreeMap::new();
    for ep in &truth.episodes {
        let mut labels = ep.labels.clone();
        labels.remove("cache");
        for rule in &ep.rules {
            expected.insert((rule.clone(), labels.clone()), (ep.start_us, ep.end_us));
        }
    }
    let table = table_alerts(&db.pool).await;
    let got: BTreeSet<&AlertKey> = table.keys().collect();
    let want: BTreeSet<&AlertKey> = expected.keys().collect();
    assert_eq!(got, want, "alerts by rule and key:\n{table:#?}");
    let mut transitions = BTreeSet::new();
    for (k, v) in &table {
        let states: Vec<&str> = v.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(states, ["firing", "resolved"], "{k:?}: {v:?}");
        assert_eq!(v[0].1, v[1].1, "{k:?}: one id per episode");
        let (start, end) = expected[k];
        assert!(
            v[0].2 + WINDOW_US > start && v[0].2 < end,
            "{k:?} fired in the window at {}, episode [{start}, {end})",
            v[0].2
        );
        assert!(
            v[1].2 + WINDOW_US >= end,
            "{k:?} resolved at {} before the episode ended at {end}",
            v[1].2
        );
        transitions.insert((v[0].1.clone(), "firing".to_string(), k.0.clone()));
        transitions.insert((v[1].1.clone(), "resolved".to_string(), k.0.clone()));
    }

    // The topic, in Rust: exactly the table's transitions (repeats allowed), a firing before its
    // resolved (one partition per alert id).
    let events = topic_alerts(&bootstrap);
    let mut seen_rust = BTreeSet::new();
    let mut first_state: BTreeMap<String, AlertState> = BTreeMap::new();
    for e in &events {
        first_state.entry(e.alert_id.clone()).or_insert(e.state);
        seen_rust.insert((
            e.alert_id.clone(),
            e.state.as_str().to_string(),
            e.rule.clone(),
        ));
    }
    assert_eq!(seen_rust, transitions, "topic (Rust) vs table");
    assert!(
        first_state.values().all(|s| *s == AlertState::Firing),
        "a resolved before its firing: {first_state:?}"
    );

    // The topic, read independently in Python.
    let py: BTreeSet<(String, String, String)> = python_alerts(&bootstrap).into_iter().collect();
    assert_eq!(py, transitions, "topic (Python) vs table");
}
