//! The smoke subset on the infra README's second broker, tansu (a separate process speaking the
//! Kafka protocol): topics created by `perfstream topics create`, a clean run and a crash with
//! restart, a second failover during a replay, all exact against the truth, and a series
//! Postgres refuses isolated while the rest commits.

use perfstream_e2e::setup::*;
use perfstream_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_clean_run_and_restart_are_exact() {
    let broker = Broker::tansu().await;
    let mut s = Setup::with(broker, TestDb::create("tansu").await, "tansu", 15_000, 21).await;
    let a = s.worker("a", None);
    s.progress_beyond(0).await;
    a.kill();
    let mut w = vec![s.worker("b", None)];
    s.assert_exact(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_second_failover_during_replay() {
    let broker = Broker::tansu().await;
    let db = TestDb::create("tansu_replay").await;
    let late = ["--allowed-lateness", REPLAY_LATENESS];
    let s = Setup::with_args(broker, db, "tansu_replay", 90_000, 22, &late).await;
    failover_during_replay(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_refused_series_is_isolated_and_the_rest_commits() {
    refused_series_is_isolated(Broker::tansu().await).await;
}
