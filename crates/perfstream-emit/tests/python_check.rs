//! The independent Python recomputation (`tests/python/check_truth.py`) agrees with the truth
//! of a run against the mock cluster, and reports a diff when the truth is wrong.
//!
//! Needs the project's Python venv with confluent-kafka and fastavro (`.venv/bin/python`, or
//! `PERFSTREAM_PYTHON`); fails loudly when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use perfstream_emit::{GenerateArgs, Truth};
use rdkafka::mocking::MockCluster;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let p = std::env::var_os("PERFSTREAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python with confluent-kafka and fastavro not found at {} (set PERFSTREAM_PYTHON)",
        p.display()
    );
    p
}

fn check(bootstrap: &str, truth: &Path, window: &str) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("tests/python/check_truth.py"))
        .args(["--bootstrap", bootstrap, "--window", window, "--truth"])
        .arg(truth)
        .output()
        .expect("python runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_recomputation_agrees_with_the_truth_and_catches_a_wrong_one() {
    let cluster = MockCluster::new(1).expect("mock cluster starts");
    for t in ["perf.query", "perf.request", "perf.resource"] {
        cluster.create_topic(t, 4, 1).expect("topic created");
    }
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truth.json");
    let args = GenerateArgs::from_args([
        "--bootstrap",
        &bootstrap,
        "--rate",
        "400",
        "--count",
        "20000",
        "--window",
        "10s",
        "--resource-interval",
        "1s",
        "--late",
        "0.02",
        "--malformed",
        "0.01",
        "--too-late",
        "7",
        "--seed",
        "21",
        "--unpaced",
        "--truth",
        path.to_str().unwrap(),
    ])
    .unwrap();
    let summary = perfstream_emit::run(args).await.expect("run succeeds");
    assert_eq!(summary.failed, 0);

    let out = check(&bootstrap, &path, "10s");
    assert!(
        out.status.success(),
        "check_truth disagreed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A truth off by one in one row: the script must fail and name the row.
    let mut truth: Truth = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    truth.request[3].response_time_us.max += 1;
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&truth).unwrap()).unwrap();
    let out = check(&bootstrap, &bad, "10s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("response_time_us"), "{stderr}");
    assert!(stderr.contains(&truth.request[3].endpoint), "{stderr}");

    // The wrong window is refused, not silently compared.
    let out = check(&bootstrap, &path, "60s");
    assert_eq!(out.status.code(), Some(2));
}
