//! Leadership and the main loop: take the group's advisory lock on a dedicated connection, then
//! judge and relay after every flush notification and timer tick, until shutdown or until the
//! connection fails (then try to lead again).

use std::future::Future;

use perfstream_alerts::{AlertSettings, Engine};
use perfstream_pipeline::KafkaSettings;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{EvalError, db};
use crate::evaluate::Evaluator;
use crate::relay::Relay;

/// The channel the migration's trigger on `consumer_offsets` notifies after every flush.
pub const FLUSH_CHANNEL: &str = "perfstream_flush";

/// Runs the alert evaluator of the pipeline group `kafka.group_id` until `shutdown` resolves.
///
/// Every process of a group may run it: one holds the group's advisory lock and evaluates, the
/// others wait and take over within `settings.lock_retry` when it dies. Returns `Ok` on
/// shutdown; an error only for what retrying cannot fix (invalid rules, a producer that cannot
/// be created, unreadable stored state). Postgres and broker failures are logged and retried.
pub async fn run_evaluator(
    settings: AlertSettings,
    pool: PgPool,
    kafka: &KafkaSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EvalError> {
    if !settings.enabled {
        shutdown.await;
        return Ok(());
    }
    Engine::new(&settings)?;
    let relay = Relay::new(kafka, settings.relay_batch)?;
    let owner = format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        std::process::id()
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let main = run_loop(&settings, &pool, &relay, &kafka.group_id, &owner, stop_rx);
    tokio::pin!(main);
    tokio::select! {
        r = &mut main => return r,
        _ = shutdown => {}
    }
    let _ = stop_tx.send(true);
    main.await
}

/// Waits `d`, or until stopped; true when stopped.
async fn pause(stop: &mut watch::Receiver<bool>, d: std::time::Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn run_loop(
    settings: &AlertSettings,
    pool: &PgPool,
    relay: &Relay,
    group: &str,
    owner: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<(), EvalError> {
    loop {
        match lead(settings, pool, relay, group, owner, &mut stop).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retriable() => {
                warn!(%error, group, "Alert evaluator stopped leading; retrying.");
                if pause(&mut stop, settings.lock_retry).await {
                    return Ok(());
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// The advisory lock key of a group's evaluator.
pub fn lock_name(group: &str) -> String {
    format!("perfstream-alerts/{group}")
}

/// Takes the lock (waiting as a stand-by), then leads until stopped (`Ok`) or an error.
async fn lead(
    settings: &AlertSettings,
    pool: &PgPool,
    relay: &Relay,
    group: &str,
    owner: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), EvalError> {
    // A dedicated connection: the session-level lock lives exactly as long as it, and every
    // write goes through it, so a leader whose connection died cannot commit anything. This
    // and the two pools below are made with the store pool's connect options, so they carry its
    // statement, lock and idle-in-transaction timeouts and keepalives
    // (`perfstream_store::ConnectSettings`): Postgres ends the session of a leader that
    // vanished, and with it the lock, within the peer timeout.
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .map_err(db("connecting the alert evaluator"))?;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(lock_name(group))
            .fetch_one(&mut conn)
            .await
            .map_err(db("taking the evaluator lock"))?;
        if got {
            break;
        }
        if pause(stop, settings.lock_retry).await {
            return Ok(());
        }
    }
    info!(group, owner, "Alert evaluator is active for the group.");
    // A private one-connection pool: the listener keeps its connection for good, and must not
    // take one from the pipeline's pool.
    let listen_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&listen_pool)
        .await
        .map_err(db("connecting the flush listener"))?;
    listener
        .listen(FLUSH_CHANNEL)
        .await
        .map_err(db("listening for flushes"))?;
    let reads = PgPoolOptions::new()
        .max_connections(3)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut ev = Evaluator::load(&mut conn, settings, group, owner, reads).await?;
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now = || chrono::Utc::now().timestamp_micros();
    loop {
        ev.round(&mut conn, now).await?;
        relay.publish(&mut conn).await?;
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            n = listener.recv() => {
                n.map_err(db("waiting for flush notifications"))?;
                // Many flushes may have been notified meanwhile; one round covers them all.
                while listener.next_buffered().is_some() {}
            }
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
    }
    // Leave cleanly: unlock by closing the session.
    let _ = conn.close().await;
    Ok(())
}
