//! Deadlines and dead-peer detection for every Postgres connection of perfstream.
//!
//! Nothing may wait on Postgres without a bound: a stalled statement, a lock held by a stalled
//! transaction, or a peer that vanished without closing its socket (host crash, network
//! partition) would otherwise hold a flush, and the partitions paused behind it, for as long as
//! TCP takes to give up (about 15 minutes with Linux defaults, forever on an idle socket).
//!
//! sqlx 0.9 sets no socket options on its TCP connections (no keepalive, no
//! `TCP_USER_TIMEOUT`), has no hook that reaches the socket, and ignores libpq's
//! `keepalives*` URL parameters (it logs "ignoring unrecognized connect parameter"). So the
//! bounds come from two sides:
//! - **Server side**, as startup options of every connection (no extra round trip):
//!   `statement_timeout`, `lock_timeout`, `idle_in_transaction_session_timeout`, and the
//!   server's TCP keepalives and `tcp_user_timeout`. Postgres then ends the session of a client
//!   that vanished within [`ConnectSettings::peer_timeout`], rolling back its transaction and
//!   releasing its locks, so the partition's next owner is not blocked behind it.
//! - **Client side**: [`ConnectSettings::operation_timeout`] bounds each flush and claim of
//!   [`crate::Store`] (the connection in use is abandoned, the error is retriable, and the
//!   retried flush is idempotent, see [`crate::FlushCommit`]); the pool's acquire timeout bounds
//!   connecting and the liveness ping of an idle connection; and a release check (a ping bounded
//!   by `peer_timeout`) closes an abandoned connection instead of letting sqlx's own unbounded
//!   release ping hold its pool slot until TCP gives up.
//!
//! Other pools on the same database (the HTTP server's, the alert evaluator's) are made with
//! the store pool's `connect_options()`, so the server-side settings are given in one place.
//! They do not have the release check: it comes with the pool options
//! ([`ConnectSettings::pool_options`]).

use std::time::Duration;

use serde::Deserialize;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Deadlines and keepalives of the connections to Postgres. Every duration is a humantime
/// string in config ("30s", "500ms"); zero disables that bound.
///
/// With the defaults, a vanished peer is detected within about 35 s on the client (the
/// operation deadline) and 30 s on the server (keepalives), and no lock is waited on for more
/// than 10 s.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSettings {
    /// Server-side bound on one statement (`statement_timeout`). A flush is several
    /// statements, each under this bound. Default 30s.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Server-side bound on waiting for one lock (`lock_timeout`), so a writer queued behind a
    /// stalled transaction gives up (retriable) instead of queueing others behind itself.
    /// Default 10s.
    #[serde(with = "humantime_serde")]
    pub lock_timeout: Duration,
    /// Server-side bound on a transaction left idle by its client
    /// (`idle_in_transaction_session_timeout`): a client that stalls mid-transaction loses its
    /// session and its locks. Default 30s.
    #[serde(with = "humantime_serde")]
    pub idle_in_transaction_timeout: Duration,
    /// How long a silent peer goes unnoticed. On the server: TCP keepalives after a third of it
    /// idle, then 4 probes a sixth of it apart (`tcp_keepalives_idle`/`_interval`/`_count`,
    /// whole seconds), and `tcp_user_timeout` equal to it for unacknowledged data. On the
    /// client: the bound on the ping that checks a released connection. Default 30s.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// Client-side bound on one store operation ([`crate::Store::write_flush`],
    /// [`crate::Store::claim_partition`]), the only bound that holds when the server vanished
    /// mid-statement. Keep it above `statement_timeout`, so a slow statement is ended by the
    /// server with a clear error first. Default 35s.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// How long taking a connection from the pool may wait, connecting included. Short, so
    /// that when Postgres is down the pipeline pauses, logs and backs off instead of blocking.
    /// Default 3s.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(30),
            peer_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(35),
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl ConnectSettings {
    /// `options` with the session settings above appended as startup options (`-c name=value`;
    /// where a name repeats, the later value wins, so callers may append stricter ones).
    pub fn connect_options(&self, options: PgConnectOptions) -> PgConnectOptions {
        options.options(self.session_settings())
    }

    /// The (name, value) pairs [`ConnectSettings::connect_options`] appends.
    pub fn session_settings(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut out = vec![
            ("statement_timeout", ms(self.statement_timeout)),
            ("lock_timeout", ms(self.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction_timeout),
            ),
        ];
        if !self.peer_timeout.is_zero() {
            let secs = self.peer_timeout.as_secs();
            out.extend([
                ("tcp_keepalives_idle", (secs / 3).max(1).to_string()),
                ("tcp_keepalives_interval", (secs / 6).max(1).to_string()),
                ("tcp_keepalives_count", "4".to_owned()),
                ("tcp_user_timeout", ms(self.peer_timeout)),
            ]);
        }
        out
    }

    /// Pool options with the acquire timeout and the release check; callers set the size.
    pub fn pool_options(&self) -> PgPoolOptions {
        let check = self.peer_timeout;
        let options = PgPoolOptions::new().acquire_timeout(self.acquire_timeout);
        if check.is_zero() {
            return options;
        }
        options.after_release(move |conn, _| {
            Box::pin(async move {
                // An operation abandoned mid-statement (deadline, cancelled task) leaves its
                // reply pending; on a dead peer sqlx's own release ping would wait for it until
                // TCP gives up. An error here closes the connection without a goodbye.
                match tokio::time::timeout(check, conn.ping()).await {
                    Ok(Ok(())) => Ok(true),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_humantime_and_reject_unknown_keys() {
        let s: ConnectSettings =
            serde_json::from_str(r#"{"statement_timeout": "2m", "peer_timeout": "0s"}"#).unwrap();
        assert_eq!(s.statement_timeout, Duration::from_secs(120));
        assert_eq!(s.lock_timeout, Duration::from_secs(10));
        assert!(serde_json::from_str::<ConnectSettings>(r#"{"lock_timout": "1s"}"#).is_err());
        // No peer timeout: the server's keepalive defaults stay.
        let names: Vec<_> = s.session_settings().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout"
            ]
        );
    }
}
