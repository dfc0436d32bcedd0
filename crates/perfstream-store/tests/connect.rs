//! Connection settings against a real Postgres: every connection carries the deadlines and
//! keepalives of `ConnectSettings`, a held lock or a silent peer fails a flush within its
//! bound (retriable), and an abandoned connection gives its pool slot back.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use perfstream_store::{ConnectSettings, Stage, Store, StoreError};
use perfstream_window::Rollups;
use proxy::Proxy;
use sqlx::{Connection, PgConnection, PgPool};
use support::*;

fn rollups(ws: i64) -> Rollups {
    Rollups {
        query: vec![query(ws, "api", "h1", &[100, 2_000], 3)],
        request: vec![request(ws, "api", "/users", &[1_000], 0)],
        ..Rollups::default()
    }
}

async fn show(pool: &PgPool, names: &[&str]) -> Vec<String> {
    let mut conn = pool.acquire().await.unwrap();
    let mut out = Vec::new();
    for name in names {
        let v: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        out.push(v);
    }
    out
}

const SETTINGS: [&str; 7] = [
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
];

#[sqlx::test(migrations = "../../migrations")]
async fn every_connection_carries_the_deadlines_and_keepalives(pool: PgPool) {
    let url = database_url(pool.connect_options().get_database().unwrap());
    let store = Store::connect(&url, 2).await.unwrap();
    assert_eq!(
        show(store.pool(), &SETTINGS).await,
        ["30s", "10s", "30s", "10", "5", "4", "30000"]
    );

    let settings = ConnectSettings {
        statement_timeout: Duration::from_millis(1_500),
        lock_timeout: Duration::from_millis(250),
        idle_in_transaction_timeout: Duration::ZERO,
        peer_timeout: Duration::from_secs(12),
        ..ConnectSettings::default()
    };
    let store = Store::connect_with(&url, 2, &settings).await.unwrap();
    assert_eq!(
        show(store.pool(), &SETTINGS).await,
        ["1500ms", "250ms", "0", "4", "2", "4", "12000"]
    );

    // A pool made beside the store's (as the HTTP server and the evaluator do) inherits them;
    // a setting appended later wins.
    let options = (*store.pool().connect_options())
        .clone()
        .options([("statement_timeout", "5s")]);
    let beside = store
        .pool()
        .options()
        .clone()
        .max_connections(1)
        .connect_lazy_with(options);
    assert_eq!(
        show(&beside, &SETTINGS).await,
        ["5s", "250ms", "0", "4", "2", "4", "12000"]
    );
    assert_eq!(
        beside.options().get_acquire_timeout(),
        Duration::from_secs(3)
    );
    assert_eq!(beside.options().get_max_connections(), 1);

    // Migrations run without the statement and lock timeouts, and leave the pool's alone.
    store.migrate().await.unwrap();
    assert_eq!(
        show(store.pool(), &SETTINGS[..2]).await,
        ["1500ms", "250ms"]
    );
}

/// A transaction that stalls holding the partition's progress row (a process paused mid-flush)
/// makes the next flush fail after `lock_timeout`, retriably, instead of queueing it.
#[sqlx::test(migrations = "../../migrations")]
async fn a_lock_held_by_a_stalled_transaction_fails_the_flush_at_lock_timeout(pool: PgPool) {
    let url = database_url(pool.connect_options().get_database().unwrap());
    let settings = ConnectSettings {
        lock_timeout: Duration::from_millis(200),
        ..ConnectSettings::default()
    };
    let store = Store::connect_with(&url, 1, &settings).await.unwrap();
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush("p1", rollups(T0), vec![progress(&claim, 0, 1, 10, T0)]);

    let mut stalled = PgConnection::connect(&url).await.unwrap();
    let mut tx = stalled.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM consumer_offsets FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    let err = store
        .write_flush(&f)
        .await
        .expect_err("progress row locked");
    assert!(
        matches!(&err, StoreError::Db { source: sqlx::Error::Database(e), .. }
            if e.code().as_deref() == Some("55P03")),
        "{err:?}"
    );
    assert!(err.is_retriable());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(count_rows(&store, "query_rollups").await, 0);

    tx.rollback().await.unwrap();
    commit(&store, &f).await;
    assert_eq!(count_rows(&store, "query_rollups").await, 1);
}

/// The server vanishes mid-flush (no FIN, no RST: the proxy just stops passing bytes): the
/// flush fails at the client deadline, retriably; the abandoned connection is closed within
/// `peer_timeout` and its slot of the one-connection pool is free again; the server ends the
/// abandoned transaction (idle in transaction) so the retry is not blocked by its row locks;
/// the retry commits, once.
#[sqlx::test(migrations = "../../migrations")]
async fn a_silent_peer_fails_the_flush_at_the_deadline_and_frees_its_connection(pool: PgPool) {
    let proxy = Arc::new(Proxy::start(server_addr(&pool).await).await);
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let url = proxy.url(&std::env::var("DATABASE_URL").unwrap(), &database);
    let settings = ConnectSettings {
        operation_timeout: Duration::from_secs(2),
        peer_timeout: Duration::from_secs(1),
        idle_in_transaction_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(10),
        ..ConnectSettings::default()
    };
    let armed = Arc::new(AtomicBool::new(true));
    let store = Store::connect_with(&url, 1, &settings)
        .await
        .unwrap()
        .with_fault_hook({
            let (proxy, armed) = (proxy.clone(), armed.clone());
            Arc::new(move |stage| {
                // Mid-transaction: rows written and locked, the commit still to come.
                if stage == Stage::Catalog && armed.swap(false, Ordering::SeqCst) {
                    proxy.silence_all();
                }
                Ok(())
            })
        });
    let claim = store.claim_partition(GROUP, TOPIC, 0, "p1").await.unwrap();
    let f = flush("p1", rollups(T0), vec![progress(&claim, 0, 1, 10, T0)]);

    let started = Instant::now();
    let err = store
        .write_flush(&f)
        .await
        .expect_err("the peer went silent");
    assert!(
        matches!(err, StoreError::DeadlineExceeded { deadline, .. } if deadline == settings.operation_timeout),
        "{err:?}"
    );
    assert!(err.is_retriable());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!armed.load(Ordering::SeqCst), "the hook never ran");

    // Without the release check the only pool slot would stay with the silent connection
    // (sqlx pings a released connection without a bound) and this would time out.
    commit(&store, &f).await;
    assert_eq!(proxy.connections_passed(), 2);
    assert_eq!(count_rows(&store, "query_rollups").await, 1);
    let count: i64 = sqlx::query_scalar("SELECT count FROM query_rollups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}
