//! Leader failover when the leader's path to Postgres goes silent (issue 11, section 5): the
//! leader's connections pass through a TCP proxy (perfstream-store's `tests/support/proxy.rs`)
//! that stops passing bytes both ways without closing anything, as when its host vanishes or
//! the network drops its packets; the stand-by connects directly. Both run the production
//! connection settings (`ConnectSettings::default()`), so the times printed are the real ones.
//!
//! What frees the lock here is not Postgres's keepalives (30 s `peer_timeout`): the proxy's
//! kernel still answers them for the silent leader, and the server would keep its session, and
//! the lock, as long as the proxy lives (measured: still held 75 s after the silence). It is
//! the old leader: its next round misses the client-side deadline (`operation_timeout`, 35 s),
//! it steps down and ends its abandoned session from a new connection (the proxy passes new
//! ones). Expected takeover: `interval` (0.2 s here) + 35 s + the stand-by's `lock_retry`
//! (0.1 s), about 35 s. A host that really vanished stops answering the keepalives too, and
//! Postgres frees the lock within 30 s, before that clean-up would.

#[path = "../../perfstream-store/tests/support/proxy.rs"]
mod proxy;
mod support;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use perfstream_evaluator::{AlertSettings, EvalError, Role, RunOptions, run_evaluator_with};
use perfstream_events::AlertState;
use perfstream_kafka::{DevBroker, KafkaSettings, Topics};
use perfstream_store::ConnectSettings;
use proxy::Proxy;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use support::*;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Rounds every 200 ms: the silent leader's next round starts at once.
const INTERVAL: Duration = Duration::from_millis(200);
/// The stand-by polls the lock often...
const STAND_BY_RETRY: Duration = Duration::from_millis(100);
/// ...and the old leader, once stepped down, comes back slowly, so that the stand-by takes the
/// lock it freed. Either winner would be correct (the old leader's new connections work); the
/// test is about the hand-over.
const OLD_LEADER_RETRY: Duration = Duration::from_secs(5);
/// The bound the issue asks for.
const TAKEOVER_BOUND: Duration = Duration::from_secs(60);

fn connection() -> ConnectSettings {
    ConnectSettings::default()
}

/// A pool with the store's connection settings, its sessions named `name` in
/// `pg_stat_activity`. Lazy: the evaluator only takes its connect options.
fn pool_on(options: PgConnectOptions, name: &str) -> PgPool {
    let c = connection();
    c.pool_options()
        .max_connections(2)
        .connect_lazy_with(c.connect_options(options.application_name(name)))
}

struct Evaluator {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), EvalError>>,
    role: watch::Receiver<Role>,
}

impl Evaluator {
    fn start(pool: PgPool, kafka: &KafkaSettings, lock_retry: Duration) -> Evaluator {
        let settings = AlertSettings {
            interval: INTERVAL,
            lock_retry,
            start_lookback: Duration::from_secs(24 * 3600),
            ..AlertSettings::default()
        };
        let (role_tx, role) = watch::channel(Role::StandBy);
        let options = RunOptions {
            connection: connection(),
            role: Some(role_tx),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let kafka = kafka.clone();
        let task = tokio::spawn(async move {
            run_evaluator_with(settings, pool, &kafka, options, async {
                let _ = rx.await;
            })
            .await
        });
        Evaluator {
            stop: Some(tx),
            task,
            role,
        }
    }

    /// Waits until the evaluator reports `role`, at most `limit`; returns when it did.
    async fn reaches(&mut self, role: Role, limit: Duration, what: &str) -> Instant {
        tokio::time::timeout(limit, self.role.wait_for(|r| *r == role))
            .await
            .unwrap_or_else(|_| panic!("{what}: not {role:?} within {limit:?}"))
            .expect("the evaluator is running");
        Instant::now()
    }

    /// Graceful shutdown, which every wait's deadline bounds even behind the silent proxy.
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the evaluator stops within its deadlines")
            .expect("join")
            .expect("evaluator result");
    }
}

#[sqlx::test(migrations = "../../migrations")]
async fn a_stand_by_takes_over_when_the_leaders_postgres_goes_silent(pool: PgPool) {
    let broker = DevBroker::start(1, 1, &Topics::default()).expect("broker");
    let k = kafka(&broker);
    let proxy = Proxy::start(server_addr(&pool).await).await;
    let direct = (*pool.connect_options()).clone();
    let database = direct.get_database().expect("a database");
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let via_proxy = PgConnectOptions::from_str(&proxy.url(&base, database)).expect("proxy url");
    episode_rows(&pool, 0..10).await;
    watermark(&pool, T0 + 5 * MIN_US, T0 + 5 * MIN_US).await;

    // The first evaluator leads, through the proxy, and does its job there.
    let mut a = Evaluator::start(pool_on(via_proxy, "evaluator-a"), &k, OLD_LEADER_RETRY);
    a.reaches(Role::Active, Duration::from_secs(30), "the first evaluator")
        .await;
    assert_eq!(lock_holders(&pool).await, ["evaluator-a"]);
    eventually("the firing transition", || async {
        (transitions(&pool).await.len() == 1).then_some(())
    })
    .await;
    eventually("the outbox to drain", || async {
        (unsent(&pool).await == 0).then_some(())
    })
    .await;

    // The second one connects directly and waits.
    let mut b = Evaluator::start(pool_on(direct, "evaluator-b"), &k, STAND_BY_RETRY);
    eventually("the stand-by's session", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'evaluator-b'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity");
        (n > 0).then_some(())
    })
    .await;
    assert_eq!(*b.role.borrow(), Role::StandBy);
    assert_eq!(lock_holders(&pool).await, ["evaluator-a"]);

    // The leader's host vanishes: its connections pass no byte either way, and close nothing.
    proxy.silence_all();
    let silenced = Instant::now();
    let step_down_bound = INTERVAL + connection().operation_timeout + Duration::from_secs(5);
    let stepped_down = a
        .reaches(Role::StandBy, step_down_bound, "the silenced leader")
        .await;
    let took_over = b
        .reaches(Role::Active, TAKEOVER_BOUND, "the stand-by")
        .await;
    let (stepped_down, took_over) = (stepped_down - silenced, took_over - silenced);
    println!(
        "silenced leader stepped down after {:.1} s; stand-by active after {:.1} s",
        stepped_down.as_secs_f64(),
        took_over.as_secs_f64()
    );
    assert!(took_over < TAKEOVER_BOUND, "took over after {took_over:?}");
    assert_eq!(lock_holders(&pool).await, ["evaluator-b"]);

    // The new leader judges the rest; the old one stays a stand-by (it would have to take the
    // lock again to write anything, and the lock is taken).
    watermark(&pool, T0 + 10 * MIN_US, T0 + 10 * MIN_US).await;
    let t = eventually("the resolved transition from the new leader", || async {
        let t = transitions(&pool).await;
        (t.len() == 2).then_some(t)
    })
    .await;
    assert_eq!(
        (t[0].0.as_str(), t[1].1.as_str()),
        (t[1].0.as_str(), "resolved")
    );
    eventually("the outbox to drain", || async {
        (unsent(&pool).await == 0).then_some(())
    })
    .await;
    assert_eq!(*a.role.borrow(), Role::StandBy);
    assert!(
        !a.role.has_changed().expect("the old leader is running"),
        "the old leader never led again"
    );
    assert_eq!(lock_holders(&pool).await, ["evaluator-b"]);
    b.stop().await;
    a.stop().await;

    // At least once, with stable ids: both transitions, and nothing else.
    let got = read_topic(&broker.bootstrap_servers(), 2);
    let seen: BTreeSet<(String, AlertState)> = got
        .iter()
        .map(|(_, e)| (e.alert_id.clone(), e.state))
        .collect();
    assert_eq!(seen.len(), 2, "exactly the two transitions: {got:?}");
}
