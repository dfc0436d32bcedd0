//! Leadership and the main loop: take the group's advisory lock on a dedicated connection, then
//! judge and relay after every flush notification and timer tick, until shutdown, or until the
//! connection fails or misses its deadline (then step down and try to lead again).
//!
//! # How long a failed leader holds the group
//! With the defaults: `alerts.interval` 5 s, `alerts.lock_retry` 1 s, `peer_timeout` 30 s (the
//! server-side keepalives, from the pool's connect options) and `operation_timeout` 35 s (the
//! client-side deadline, from [`RunOptions::connection`]), both of
//! `perfstream_store::ConnectSettings`:
//! - **The leader's process dies** (crash, kill): its socket closes, Postgres ends the session
//!   and frees the lock at once; a stand-by leads within `lock_retry`.
//! - **The leader's host vanishes** (power, kernel, network gone; no FIN or RST): Postgres's
//!   keepalives, or `tcp_user_timeout` when it has a reply outstanding, end the session within
//!   `peer_timeout`; a stand-by leads within `peer_timeout + lock_retry` (about 31 s).
//! - **The leader lives but lost Postgres** (partition, a middlebox dropping the flow): its next
//!   wait on Postgres (a round every `interval` at the latest) misses `operation_timeout`, it
//!   abandons the connection, goes stand-by, and ends its old session from a new connection if
//!   Postgres is reachable again ([`end_session`]). It stops acting as the leader within
//!   `interval + operation_timeout` (about 40 s) and can commit nothing meanwhile: every write
//!   goes through the lock connection. A stand-by leads after whichever comes first: the
//!   server's keepalives (as above) or that clean-up (about 41 s).
//!
//! Not covered: a middlebox between the two that keeps answering the server's keepalives while
//! the leader cannot reach Postgres at all. Its session, and the lock, then live until either
//! recovers (a server-side `idle_session_timeout` on the lock connection, with a heartbeat,
//! would cover it).
//!
//! Architecture invariant: only a session holding the lock writes, so at most one evaluator of
//! a group commits at a time, whatever the network does; the deadlines only bound how long the
//! group may go without one.

use std::future::Future;

use chrono::{DateTime, Utc};
use perfstream_alerts::{AlertSettings, Engine};
use perfstream_pipeline::KafkaSettings;
use perfstream_store::ConnectSettings;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::deadline::Deadline;
use crate::error::{EvalError, db};
use crate::evaluate::Evaluator;
use crate::relay::Relay;

/// The channel the migration's trigger on `consumer_offsets` notifies after every flush.
pub const FLUSH_CHANNEL: &str = "perfstream_flush";

/// Whether an evaluator leads its group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Not holding the group's lock: starting, waiting for the lock, or stepped down.
    #[default]
    StandBy,
    /// Holding the lock: judging windows and relaying the outbox.
    Active,
}

/// What [`run_evaluator`] leaves at its defaults.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The client side of the connection settings the pool was made with
    /// (`postgres.connection`; their server-side part reaches the evaluator through the pool's
    /// connect options). `operation_timeout` bounds every wait of the evaluator on Postgres:
    /// connecting, each statement or read, each transaction; `pool_options()` makes its read
    /// and listen pools. Default: [`ConnectSettings::default`] (35 s).
    pub connection: ConnectSettings,
    /// Told the evaluator's [`Role`] each time it changes, for a status page or a test. `None`:
    /// not reported (the log says it either way).
    pub role: Option<watch::Sender<Role>>,
}

/// Runs the alert evaluator of the pipeline group `kafka.group_id` until `shutdown` resolves,
/// with the default [`RunOptions`].
///
/// Every process of a group may run it: one holds the group's advisory lock and evaluates, the
/// others wait and take over when it fails (how fast: see the module docs of `run.rs`). Returns
/// `Ok` on shutdown; an error only for what retrying cannot fix (invalid rules, a producer that
/// cannot be created, unreadable stored state). Postgres and broker failures are logged and
/// retried.
pub async fn run_evaluator(
    settings: AlertSettings,
    pool: PgPool,
    kafka: &KafkaSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EvalError> {
    run_evaluator_with(settings, pool, kafka, RunOptions::default(), shutdown).await
}

/// [`run_evaluator`] with the deadlines of `options.connection`, reporting its role to
/// `options.role`.
pub async fn run_evaluator_with(
    settings: AlertSettings,
    pool: PgPool,
    kafka: &KafkaSettings,
    options: RunOptions,
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
    let leader = Leader {
        settings: &settings,
        connect: (*pool.connect_options()).clone(),
        connection: &options.connection,
        deadline: Deadline(options.connection.operation_timeout),
        relay: &relay,
        group: &kafka.group_id,
        owner: &owner,
        role: options.role.as_ref(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let main = run_loop(&leader, stop_rx);
    tokio::pin!(main);
    tokio::select! {
        r = &mut main => return r,
        _ = shutdown => {}
    }
    let _ = stop_tx.send(true);
    main.await
}

/// What every leadership attempt of one evaluator shares.
struct Leader<'a> {
    settings: &'a AlertSettings,
    /// The store pool's connect options: the server-side deadlines and keepalives of every
    /// connection (`perfstream_store::ConnectSettings::connect_options`).
    connect: PgConnectOptions,
    connection: &'a ConnectSettings,
    deadline: Deadline,
    relay: &'a Relay,
    group: &'a str,
    owner: &'a str,
    role: Option<&'a watch::Sender<Role>>,
}

impl Leader<'_> {
    fn set_role(&self, role: Role) {
        if let Some(tx) = self.role {
            tx.send_if_modified(|r| std::mem::replace(r, role) != role);
        }
    }
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

async fn run_loop(leader: &Leader<'_>, mut stop: watch::Receiver<bool>) -> Result<(), EvalError> {
    loop {
        match lead(leader, &mut stop).await {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retriable() => {
                warn!(%error, group = leader.group, "Alert evaluator stopped leading; retrying.");
                if pause(&mut stop, leader.settings.lock_retry).await {
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

/// The server session of a lock connection, identified so that another connection can end it:
/// a backend pid may be reused, a pid with its start time may not.
#[derive(Debug, Clone, Copy)]
struct Session {
    pid: i32,
    started: DateTime<Utc>,
}

/// One leadership attempt on a new dedicated connection: waits as a stand-by until it takes the
/// lock, then leads until stopped (`Ok`) or an error. Always ends as a stand-by, with the
/// connection closed; after a missed deadline, with its server session ended if possible.
async fn lead(leader: &Leader<'_>, stop: &mut watch::Receiver<bool>) -> Result<(), EvalError> {
    let d = leader.deadline;
    // A dedicated connection: the session-level lock lives exactly as long as it, and every
    // write goes through it, so a leader whose connection died cannot commit anything. This
    // and the two pools below are made with the store pool's connect options, so they carry its
    // statement, lock and idle-in-transaction timeouts and keepalives
    // (`perfstream_store::ConnectSettings`): Postgres ends the session of a leader that
    // vanished, and with it the lock, within the peer timeout.
    let mut conn = d
        .run("connecting the alert evaluator", async {
            PgConnection::connect_with(&leader.connect)
                .await
                .map_err(db("connecting the alert evaluator"))
        })
        .await?;
    // On an error here the session holds no lock yet: abandoning the connection is enough.
    let session = d
        .run("identifying the session", identify(&mut conn))
        .await?;
    let result = match take_lock(leader, &mut conn, stop).await {
        Ok(true) => {
            leader.set_role(Role::Active);
            info!(
                group = leader.group,
                owner = leader.owner,
                "Alert evaluator is active for the group."
            );
            let led = serve(leader, &mut conn, stop).await;
            leader.set_role(Role::StandBy);
            info!(
                group = leader.group,
                owner = leader.owner,
                "Alert evaluator is no longer active."
            );
            led
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    match &result {
        Err(EvalError::Deadline { .. }) => {
            // The socket's close may never reach the server (or reach only a middlebox that
            // keeps the server's side open), and the session holds the lock until it ends.
            drop(conn);
            end_session(leader, session).await;
        }
        _ => {
            // Leave cleanly: unlock by closing the session.
            let close = async { conn.close().await.map_err(db("closing")) };
            let _ = d.run("closing the lock connection", close).await;
        }
    }
    result
}

async fn identify(conn: &mut PgConnection) -> Result<Session, EvalError> {
    let row =
        sqlx::query("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .map_err(db("identifying the session"))?;
    Ok(Session {
        pid: row.get(0),
        started: row.get(1),
    })
}

/// Takes the lock, polling every `lock_retry` as a stand-by: true once taken, false when
/// stopped first.
async fn take_lock(
    leader: &Leader<'_>,
    conn: &mut PgConnection,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, EvalError> {
    let d = leader.deadline;
    loop {
        let attempt = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(lock_name(leader.group))
            .fetch_one(&mut *conn);
        let got: bool = d
            .run("taking the evaluator lock", async {
                attempt.await.map_err(db("taking the evaluator lock"))
            })
            .await?;
        if got {
            return Ok(true);
        }
        if pause(stop, leader.settings.lock_retry).await {
            return Ok(false);
        }
    }
}

/// Leads, holding the lock on `conn`: judges and relays after every flush notification and
/// tick, until stopped (`Ok`) or an error.
async fn serve(
    leader: &Leader<'_>,
    conn: &mut PgConnection,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), EvalError> {
    let (d, settings) = (leader.deadline, leader.settings);
    // A private one-connection pool: the listener keeps its connection for good, and must not
    // take one from the pipeline's pool. Both pools have the store's acquire timeout and release
    // check, so a connection abandoned at a deadline gives its slot back.
    let listen_pool = leader
        .connection
        .pool_options()
        .max_connections(1)
        .connect_lazy_with(leader.connect.clone());
    let mut listener = d
        .run("listening for flushes", async {
            let mut l = PgListener::connect_with(&listen_pool)
                .await
                .map_err(db("connecting the flush listener"))?;
            l.listen(FLUSH_CHANNEL)
                .await
                .map_err(db("listening for flushes"))?;
            Ok(l)
        })
        .await?;
    let reads = leader
        .connection
        .pool_options()
        .max_connections(3)
        .connect_lazy_with(leader.connect.clone());
    let mut ev = Evaluator::load(conn, settings, leader.group, leader.owner, reads, d).await?;
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now = || chrono::Utc::now().timestamp_micros();
    loop {
        // A round at every tick at the latest: its first statement is the check that the lock
        // connection (and with it the lock) is still there, within the deadline.
        ev.round(conn, now).await?;
        leader.relay.publish(conn, d).await?;
        if *stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            n = listener.recv() => {
                n.map_err(db("waiting for flush notifications"))?;
                // Many flushes may have been notified meanwhile; one round covers them all.
                while listener.next_buffered().is_some() {}
            }
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Ends the server session of a lock connection abandoned at a deadline, from a new connection,
/// so that a stand-by does not have to wait for Postgres to notice the old one is dead: behind
/// a middlebox that answers the server's keepalives (a TCP proxy, a NAT keeping the flow), it
/// would never notice. Best effort, within the deadline: when Postgres cannot be reached
/// either, its keepalives end the session (`peer_timeout`).
async fn end_session(leader: &Leader<'_>, session: Session) {
    let ended = leader
        .deadline
        .run("ending the abandoned lock session", async {
            let mut c = PgConnection::connect_with(&leader.connect)
                .await
                .map_err(db("connecting to end the abandoned lock session"))?;
            let ended: bool = sqlx::query_scalar(
                "SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
                 WHERE pid = $1 AND backend_start = $2",
            )
            .bind(session.pid)
            .bind(session.started)
            .fetch_one(&mut c)
            .await
            .map_err(db("ending the abandoned lock session"))?;
            let _ = c.close().await;
            Ok(ended)
        })
        .await;
    let (group, pid) = (leader.group, session.pid);
    match ended {
        Ok(true) => info!(group, pid, "Ended the abandoned lock session."),
        Ok(false) => debug!(group, pid, "The abandoned lock session had ended already."),
        Err(error) => warn!(
            %error,
            group,
            pid,
            "Could not end the abandoned lock session; Postgres ends it when its keepalives fail."
        ),
    }
}
