//! The sending loop against librdkafka's mock cluster (a real Kafka protocol endpoint): the
//! truth covers exactly the acknowledged messages.

use std::collections::BTreeMap;
use std::time::Duration;

use perfstream_emit::{GenerateArgs, ProduceOptions, Scenario, produce, truth_of};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 4;

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster starts");
    for t in ["perf.query", "perf.request", "perf.resource"] {
        c.create_topic(t, PARTITIONS, 1).expect("topic created");
    }
    c
}

/// Sum of the high watermarks of a topic: the number of messages it holds.
fn messages_in(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "perfstream-emit-test")
        .create()
        .expect("consumer created");
    (0..PARTITIONS)
        .map(|p| {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            hi - lo
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truth_of_a_fully_acknowledged_run_equals_the_pure_truth() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let mut s = Scenario::small(11);
    s.count = 5_000;
    s.rate = 500.0;
    s.malformed = 0.01;
    let report = produce(s.clone(), ProduceOptions::new(&bootstrap))
        .await
        .expect("run succeeds");
    let sum = &report.summary;
    assert_eq!(sum.failed, 0);
    assert_eq!(sum.acknowledged, sum.attempted);
    let truth = report.truth.expect("truth collected");
    // The acknowledged set is the whole set, so the truth equals the pure one.
    assert_eq!(truth, truth_of(&s));
    assert!(truth.malformed.count > 0);

    // What the broker holds is what was acknowledged, per topic.
    let by_topic: BTreeMap<&str, i64> = ["perf.query", "perf.request", "perf.resource"]
        .into_iter()
        .map(|t| (t, messages_in(&bootstrap, t)))
        .collect();
    let total: i64 = by_topic.values().sum();
    assert_eq!(total as u64, sum.acknowledged);
    let expected_query = truth.totals.aggregated["query"] as i64
        + truth
            .malformed
            .by_topic
            .get("perf.query")
            .copied()
            .unwrap_or(0) as i64
        + truth
            .too_late
            .events
            .iter()
            .filter(|e| e.topic == "perf.query")
            .count() as i64;
    assert_eq!(by_topic["perf.query"], expected_query);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_stay_out_of_the_truth() {
    let cluster = cluster();
    cluster.broker_down(1).expect("broker down");
    let mut s = Scenario::small(12);
    s.count = 200;
    let mut opts = ProduceOptions::new(cluster.bootstrap_servers());
    opts.producer_properties
        .insert("message.timeout.ms".into(), "1500".into());
    let report = produce(s, opts).await.expect("run ends");
    let sum = &report.summary;
    assert!(sum.attempted > 200);
    assert_eq!(sum.acknowledged, 0);
    assert_eq!(sum.failed, sum.attempted);
    let truth = report.truth.expect("truth collected");
    assert!(truth.query.is_empty() && truth.request.is_empty() && truth.resource.is_empty());
    assert_eq!(truth.totals.failed, sum.attempted);
    assert_eq!(truth.totals.acknowledged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_the_truth_file() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truth.json");
    let args = GenerateArgs::from_args([
        "--bootstrap",
        &cluster.bootstrap_servers(),
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--seed",
        "3",
        "--start-time",
        "2026-01-01T00:00:00Z",
        "--truth",
        path.to_str().unwrap(),
    ])
    .unwrap();
    let scenario = args.scenario(0).unwrap();
    let summary = perfstream_emit::run(args).await.expect("run succeeds");
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.truth_path.as_deref(), Some(path.as_path()));
    let written: perfstream_emit::Truth =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written, truth_of(&scenario));
    // Paced at 2000/s, one second of schedule takes about that long.
    assert!(summary.elapsed >= Duration::from_millis(900));
    assert!(summary.to_string().contains("acknowledged"));
}

/// A paced run of a day stops at the stop flag: what was sent is flushed and counted, nothing
/// after it is sent (`perfstream demo` stops its generator this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_run_stops_at_the_flag_and_counts_what_it_sent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    let mut s = Scenario::small(12);
    s.count = 1_000_000;
    s.rate = 20.0;
    s.malformed = 0.0;
    let stop = Arc::new(AtomicBool::new(false));
    let mut opts = ProduceOptions::new(&bootstrap);
    opts.paced = true;
    opts.stop = Some(stop.clone());
    let run = tokio::spawn(produce(s, opts));
    // Wait (bounded) until the run has sent something, then stop it mid-pacing.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let sent = || {
        ["perf.query", "perf.request", "perf.resource"]
            .iter()
            .map(|t| messages_in(&bootstrap, t))
            .sum::<i64>()
    };
    while sent() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing sent within 60 s"
        );
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run stops within 60 s of the flag")
        .expect("task")
        .expect("run succeeds");
    let sum = &report.summary;
    assert!(sum.attempted >= 1 && sum.attempted < 1_000_000, "{sum:?}");
    assert_eq!(sum.acknowledged, sum.attempted, "{sum:?}");
    assert_eq!(
        sent(),
        sum.acknowledged as i64,
        "the broker holds what was counted"
    );
}
