//! The notifier task: one per group (a session-level advisory lock, like the evaluator's), a
//! round every `notify.interval`: route new outbox rows, then deliver to each target that is not
//! backing off, all targets at once, each in seq order.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::join_all;
use perfstream_events::{AlertEvent, AlertState, Severity};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::NotifyError;
use crate::backoff::{Bucket, backoff};
use crate::payload::{
    DEDUP_HEADER, SIGNATURE_HEADER, alertmanager_alert, dedup_id, signature, webhook_body,
};
use crate::send::post;
use crate::settings::{NotifySettings, TargetKind, TargetSettings};
use crate::stats::NotifyStats;
use crate::store::{self, Pending};

/// Outbox rows routed per transaction.
const ROUTE_BATCH: i64 = 500;
/// Alerts per Alertmanager request.
const AM_BATCH: usize = 64;

/// The advisory lock key of a group's notifier.
pub fn notify_lock_name(group: &str) -> String {
    format!("perfstream-notify/{group}")
}

/// Runs the notifier of `group` until `shutdown` resolves. Every process of a group may run it;
/// the one holding the group's lock delivers. `operation_timeout` bounds every wait on
/// Postgres. Returns an error only for invalid settings; Postgres failures are logged and
/// retried, and a target that fails is retried with backoff, never blocking the others, the
/// evaluator or the alerts topic (the notifier only reads the outbox).
pub async fn run_notifier(
    settings: NotifySettings,
    pool: PgPool,
    group: String,
    stats: NotifyStats,
    operation_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NotifyError> {
    settings.validate()?;
    if !settings.enabled || settings.targets.is_empty() {
        shutdown.await;
        return Ok(());
    }
    for t in &settings.targets {
        stats.update(&t.name, |_| {});
    }
    let (stop_tx, mut stop) = watch::channel(false);
    let n = Notifier {
        settings: &settings,
        connect: (*pool.connect_options()).clone(),
        group: &group,
        stats: &stats,
        deadline: operation_timeout,
    };
    let main = async {
        loop {
            match n.lead(&mut stop).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retriable() => {
                    warn!(%error, group = %group, "Alert notifier stopped leading; retrying.");
                    if pause(&mut stop, settings.lock_retry).await {
                        return Ok(());
                    }
                }
                Err(error) => return Err(error),
            }
        }
    };
    tokio::pin!(main);
    tokio::select! {
        r = &mut main => return r,
        _ = shutdown => {}
    }
    let _ = stop_tx.send(true);
    main.await
}

/// Waits `d`, or until stopped; true when stopped.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

struct Notifier<'a> {
    settings: &'a NotifySettings,
    connect: PgConnectOptions,
    group: &'a str,
    stats: &'a NotifyStats,
    deadline: Duration,
}

/// A target's pacing between rounds (in memory: a new leader starts fresh, which at worst
/// retries a little early).
struct Target<'a> {
    cfg: &'a TargetSettings,
    failures: u32,
    retry_at: Option<Instant>,
    bucket: Bucket,
    /// Alertmanager: when the firing set was last sent in full; `None` sends it next round
    /// (at the start, and after a failure: the receiver may have restarted empty).
    refreshed: Option<Instant>,
}

/// What one target's round did, to be recorded.
#[derive(Default)]
struct Outcome {
    delivered: Vec<i64>,
    /// Refused for good by the target (a 4xx): closed with the error, the queue moves on.
    rejected: Vec<(Vec<i64>, String)>,
    failed: Option<(Vec<i64>, String)>,
    resent: u64,
    refresh_failed: Option<String>,
}

impl Notifier<'_> {
    async fn within<T>(
        &self,
        operation: &'static str,
        f: impl Future<Output = Result<T, NotifyError>>,
    ) -> Result<T, NotifyError> {
        tokio::time::timeout(self.deadline, f)
            .await
            .map_err(|_| NotifyError::Deadline {
                operation,
                deadline: self.deadline,
            })?
    }

    /// One leadership attempt on a dedicated connection (the lock lives with its session).
    async fn lead(&self, stop: &mut watch::Receiver<bool>) -> Result<(), NotifyError> {
        let mut conn = self
            .within("connecting the notifier", async {
                PgConnection::connect_with(&self.connect)
                    .await
                    .map_err(|source| NotifyError::Db {
                        operation: "connecting the notifier",
                        source,
                    })
            })
            .await?;
        loop {
            let got: bool = self
                .within("taking the notifier lock", async {
                    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                        .bind(notify_lock_name(self.group))
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|source| NotifyError::Db {
                            operation: "taking the notifier lock",
                            source,
                        })
                })
                .await?;
            if got {
                break;
            }
            if pause(stop, self.settings.lock_retry).await {
                return Ok(());
            }
        }
        info!(
            group = self.group,
            "Alert notifier is active for the group."
        );
        let result = self.serve(&mut conn, stop).await;
        let _ = tokio::time::timeout(self.deadline, conn.close()).await;
        result
    }

    async fn serve(
        &self,
        conn: &mut PgConnection,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), NotifyError> {
        self.within(
            "initialising notify progress",
            store::init_progress(conn, self.group, self.settings.start_lookback),
        )
        .await?;
        let start = Instant::now();
        let mut targets: Vec<Target> = self
            .settings
            .targets
            .iter()
            .map(|cfg| Target {
                cfg,
                failures: 0,
                retry_at: None,
                bucket: Bucket::new(cfg.rate_limit, cfg.burst, 0.0),
                refreshed: None,
            })
            .collect();
        loop {
            // A round runs to its end even when shutdown comes meanwhile (it is bounded by the
            // targets' timeouts and the Postgres deadline): cut between a 2xx and its record,
            // the next leader would send those transitions again.
            self.round(conn, &mut targets, start).await?;
            if pause(stop, self.settings.interval).await {
                return Ok(());
            }
        }
    }

    /// Routes everything new, then gives each target that is not backing off its pending
    /// deliveries (and Alertmanager its firing set when due), all targets concurrently.
    async fn round(
        &self,
        conn: &mut PgConnection,
        targets: &mut [Target<'_>],
        start: Instant,
    ) -> Result<(), NotifyError> {
        loop {
            let (rows, _) = self
                .within(
                    "routing new alerts",
                    store::route_new(conn, self.settings, self.group, ROUTE_BATCH),
                )
                .await?;
            if (rows as i64) < ROUTE_BATCH {
                break;
            }
        }
        let now = Instant::now();
        let now_s = (now - start).as_secs_f64();
        let now_us = chrono::Utc::now().timestamp_micros();
        let mut work = Vec::new();
        for t in targets.iter_mut() {
            if t.retry_at.is_some_and(|at| now < at) {
                continue;
            }
            let pending = self
                .within(
                    "reading pending deliveries",
                    store::pending(conn, &t.cfg.name, i64::from(t.cfg.burst) * AM_BATCH as i64),
                )
                .await?;
            let refresh_due = t.cfg.kind == TargetKind::Alertmanager
                && t.refreshed
                    .is_none_or(|at| now.duration_since(at) >= t.cfg.resend_interval);
            let firing = if refresh_due {
                Some(
                    self.within("reading firing alerts", store::firing(conn, &t.cfg.name))
                        .await?,
                )
            } else {
                None
            };
            work.push((t, pending, firing));
        }
        let dashboard = self.settings.dashboard_url.as_str();
        let outcomes = join_all(work.into_iter().map(|(t, pending, firing)| async move {
            let o = deliver(t, pending, firing, now_s, now_us, dashboard).await;
            (t, o)
        }))
        .await;
        for (t, o) in outcomes {
            let name = t.cfg.name.as_str();
            if !o.delivered.is_empty() {
                self.within(
                    "recording deliveries",
                    store::attempted(conn, name, &o.delivered, Ok(()), false, Duration::ZERO),
                )
                .await?;
            }
            for (seqs, error) in &o.rejected {
                warn!(
                    target = name,
                    %error,
                    deliveries = seqs.len(),
                    "Alert notification refused by the target; not retrying it."
                );
                self.within(
                    "recording a refused delivery",
                    store::attempted(conn, name, seqs, Err(error), true, Duration::ZERO),
                )
                .await?;
            }
            let failure = o
                .failed
                .as_ref()
                .map(|(_, e)| e)
                .or(o.refresh_failed.as_ref());
            if let Some(error) = failure {
                t.failures += 1;
                let wait = backoff(t.failures, t.cfg.initial_backoff, t.cfg.max_backoff);
                t.retry_at = Some(now + wait);
                t.refreshed = None;
                warn!(
                    target = name,
                    %error,
                    failures = t.failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "Alert notification failed; retrying with backoff."
                );
                if let Some((seqs, e)) = &o.failed {
                    self.within(
                        "recording a failed delivery",
                        store::attempted(conn, name, seqs, Err(e), false, wait),
                    )
                    .await?;
                }
            } else {
                if t.failures > 0 {
                    info!(
                        target = name,
                        failures = t.failures,
                        "Alert notification target is back."
                    );
                }
                t.failures = 0;
                t.retry_at = None;
            }
            let failed_attempts = u64::from(failure.is_some()) + o.rejected.len() as u64;
            self.stats.update(name, |s| {
                s.delivered += o.delivered.len() as u64;
                s.failed_attempts += failed_attempts;
                s.resent += o.resent;
            });
        }
        let backlog = self
            .within("reading the delivery backlog", store::backlog(conn))
            .await?;
        for t in targets.iter() {
            let (pending, age) = backlog.get(&t.cfg.name).copied().unwrap_or((0, 0.0));
            self.stats.update(&t.cfg.name, |s| {
                s.pending = pending;
                s.oldest_pending_seconds = age;
            });
        }
        Ok(())
    }
}

/// Sends one target's pending deliveries in order (stopping at the first failure or when the
/// rate limit runs out), then, for Alertmanager, the firing set when due.
async fn deliver(
    t: &mut Target<'_>,
    pending: Vec<Pending>,
    firing: Option<Vec<AlertEvent>>,
    now_s: f64,
    now_us: i64,
    dashboard: &str,
) -> Outcome {
    let mut o = Outcome::default();
    let cfg = t.cfg;
    match cfg.kind {
        TargetKind::Webhook => {
            for p in pending {
                if !t.bucket.try_take(now_s) {
                    break;
                }
                let body = webhook_body(&p.event, p.reason.as_deref(), dashboard);
                let mut headers = vec![(DEDUP_HEADER, dedup_id(&p.event))];
                if let Some(secret) = &cfg.secret {
                    headers.push((SIGNATURE_HEADER, signature(secret.as_bytes(), &body)));
                }
                match post(cfg.url.clone(), body, headers, cfg.timeout).await {
                    Ok(()) => o.delivered.push(p.seq),
                    Err(f) if f.permanent => o.rejected.push((vec![p.seq], f.text)),
                    Err(f) => {
                        o.failed = Some((vec![p.seq], f.text));
                        break;
                    }
                }
            }
        }
        TargetKind::Alertmanager => {
            let url = format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/'));
            for chunk in pending.chunks(AM_BATCH) {
                if !t.bucket.try_take(now_s) {
                    break;
                }
                let mut alerts = Vec::with_capacity(chunk.len());
                for p in chunk {
                    // An escalation changes the severity label, so the alert at the old
                    // severity is resolved in the same request.
                    for old in &p.superseded {
                        let mut e = p.event.clone();
                        e.severity = Severity::parse(old).unwrap_or(e.severity);
                        e.state = AlertState::Resolved;
                        e.transitioned_at_us = now_us;
                        alerts.push(alertmanager_alert(
                            &e,
                            None,
                            p.fired_at_us,
                            now_us,
                            cfg.resend_interval,
                            dashboard,
                        ));
                    }
                    alerts.push(alertmanager_alert(
                        &p.event,
                        p.reason.as_deref(),
                        p.fired_at_us,
                        now_us,
                        cfg.resend_interval,
                        dashboard,
                    ));
                }
                let body = serde_json::to_vec(&alerts).unwrap_or_default();
                let seqs: Vec<i64> = chunk.iter().map(|p| p.seq).collect();
                match post(url.clone(), body, Vec::new(), cfg.timeout).await {
                    Ok(()) => o.delivered.extend(seqs),
                    Err(f) if f.permanent => o.rejected.push((seqs, f.text)),
                    Err(f) => {
                        o.failed = Some((seqs, f.text));
                        break;
                    }
                }
            }
            if let (Some(firing), None) = (firing, &o.failed) {
                let mut ok = true;
                for chunk in firing.chunks(AM_BATCH) {
                    let alerts: Vec<serde_json::Value> = chunk
                        .iter()
                        .map(|e| {
                            alertmanager_alert(
                                e,
                                None,
                                None,
                                now_us,
                                cfg.resend_interval,
                                dashboard,
                            )
                        })
                        .collect();
                    let body = serde_json::to_vec(&alerts).unwrap_or_default();
                    if let Err(f) = post(url.clone(), body, Vec::new(), cfg.timeout).await {
                        o.refresh_failed = Some(f.text);
                        ok = false;
                        break;
                    }
                    o.resent += chunk.len() as u64;
                }
                if ok {
                    t.refreshed = Some(Instant::now());
                }
            }
        }
    }
    o
}
