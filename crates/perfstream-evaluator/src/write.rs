//! The evaluator's own tables: loading the stored state, and committing one batch of judged
//! windows (transitions, outbox rows, state, progress) in one transaction.

use std::collections::BTreeMap;

use perfstream_alerts::{Phase, RuleId, StateRow, Transition, Window};
use sqlx::{Connection, PgConnection, Row};

use crate::error::{EvalError, db};
use crate::read::{from_ts, to_ts};

/// Where the group's evaluator stopped.
pub(crate) async fn progress(
    conn: &mut PgConnection,
    group: &str,
) -> Result<Option<Window>, EvalError> {
    let row = sqlx::query(
        "SELECT last_window_start, last_window_end FROM alert_progress WHERE group_id = $1",
    )
    .bind(group)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading alert progress"))?;
    Ok(row.map(|r| Window {
        start_us: from_ts(r.get(0)),
        end_us: from_ts(r.get(1)),
    }))
}

/// The stored phases of the group.
pub(crate) async fn load_state(
    conn: &mut PgConnection,
    group: &str,
) -> Result<Vec<StateRow>, EvalError> {
    let rows = sqlx::query(
        "SELECT rule, alert_key, labels::text, phase, alert_id, since, window_count, missing_windows
         FROM alert_state WHERE group_id = $1",
    )
    .bind(group)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading alert state"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (rule, key): (String, String) = (r.get(0), r.get(1));
        let bad = |reason: &str| EvalError::BadState {
            rule: rule.clone(),
            key: key.clone(),
            reason: reason.into(),
        };
        let id = RuleId::parse(&rule).ok_or_else(|| bad("unknown rule"))?;
        let labels: BTreeMap<String, String> = serde_json::from_str(&r.get::<String, _>(2))
            .map_err(|e| bad(&format!("labels: {e}")))?;
        let since_us = from_ts(r.get(5));
        let count = u32::try_from(r.get::<i32, _>(6)).map_err(|_| bad("negative window_count"))?;
        let missing =
            u32::try_from(r.get::<i32, _>(7)).map_err(|_| bad("negative missing_windows"))?;
        let phase = match (
            r.get::<String, _>(3).as_str(),
            r.get::<Option<String>, _>(4),
        ) {
            ("pending", _) => Phase::Pending {
                count,
                since_us,
                missing,
            },
            ("firing", Some(alert_id)) => Phase::Firing {
                alert_id,
                since_us,
                clear_count: count,
                missing,
            },
            _ => return Err(bad("phase")),
        };
        out.push(StateRow {
            rule: id,
            key,
            labels,
            phase: Some(phase),
        });
    }
    Ok(out)
}

/// A transition with the bytes published for it.
pub(crate) struct Recorded {
    pub transition: Transition,
    pub transitioned_at_us: i64,
    pub payload: Vec<u8>,
}

/// Commits one batch: every transition into `alerts` (skipping any already recorded) and the
/// outbox, the changed phases into `alert_state`, and the last window into `alert_progress`.
/// Returns how many outbox rows were added.
pub(crate) async fn commit(
    conn: &mut PgConnection,
    group: &str,
    owner: &str,
    last: Window,
    transitions: &[Recorded],
    changes: &BTreeMap<(RuleId, String), StateRow>,
) -> Result<usize, EvalError> {
    let mut tx = conn
        .begin()
        .await
        .map_err(db("beginning the alert transaction"))?;
    let mut queued = 0;
    for t in transitions {
        let tr = &t.transition;
        let labels = serde_json::to_string(&tr.labels).unwrap_or_else(|_| "{}".into());
        let inserted = sqlx::query(
            "INSERT INTO alerts (alert_id, state, rule, severity, service, alert_key, labels,
                observed_value, threshold, clear_threshold, window_start, window_end, transitioned_at, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (alert_id, state) DO NOTHING",
        )
        .bind(&tr.alert_id)
        .bind(tr.state.as_str())
        .bind(tr.rule.as_str())
        .bind(tr.severity.to_event().as_str())
        .bind(&tr.service)
        .bind(&tr.key)
        .bind(labels)
        .bind(finite(tr.observed_value))
        .bind(finite(tr.threshold))
        .bind(finite(tr.clear_threshold))
        .bind(to_ts(tr.window.start_us))
        .bind(to_ts(tr.window.end_us))
        .bind(to_ts(t.transitioned_at_us))
        .bind(&tr.message)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a transition"))?
        .rows_affected();
        if inserted == 1 {
            sqlx::query("INSERT INTO alert_outbox (alert_id, state, payload) VALUES ($1, $2, $3)")
                .bind(&tr.alert_id)
                .bind(tr.state.as_str())
                .bind(&t.payload)
                .execute(&mut *tx)
                .await
                .map_err(db("queueing a transition"))?;
            queued += 1;
        }
    }
    for c in changes.values() {
        match &c.phase {
            None => {
                sqlx::query(
                    "DELETE FROM alert_state WHERE group_id = $1 AND rule = $2 AND alert_key = $3",
                )
                .bind(group)
                .bind(c.rule.as_str())
                .bind(&c.key)
                .execute(&mut *tx)
                .await
                .map_err(db("clearing alert state"))?;
            }
            Some(p) => {
                let (phase, alert_id, since_us, count, missing) = match p {
                    Phase::Pending {
                        count,
                        since_us,
                        missing,
                    } => ("pending", None, *since_us, *count, *missing),
                    Phase::Firing {
                        alert_id,
                        since_us,
                        clear_count,
                        missing,
                    } => (
                        "firing",
                        Some(alert_id.as_str()),
                        *since_us,
                        *clear_count,
                        *missing,
                    ),
                };
                sqlx::query(
                    "INSERT INTO alert_state (group_id, rule, alert_key, labels, phase, alert_id, since, window_count,
                        missing_windows)
                     VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)
                     ON CONFLICT (group_id, rule, alert_key) DO UPDATE SET
                        labels = EXCLUDED.labels, phase = EXCLUDED.phase, alert_id = EXCLUDED.alert_id,
                        since = EXCLUDED.since, window_count = EXCLUDED.window_count,
                        missing_windows = EXCLUDED.missing_windows, updated_at = now()",
                )
                .bind(group)
                .bind(c.rule.as_str())
                .bind(&c.key)
                .bind(serde_json::to_string(&c.labels).unwrap_or_else(|_| "{}".into()))
                .bind(phase)
                .bind(alert_id)
                .bind(to_ts(since_us))
                .bind(i32::try_from(count).unwrap_or(i32::MAX))
                .bind(i32::try_from(missing).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await
                .map_err(db("storing alert state"))?;
            }
        }
    }
    sqlx::query(
        "INSERT INTO alert_progress (group_id, last_window_start, last_window_end, evaluated_by)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id) DO UPDATE SET last_window_start = EXCLUDED.last_window_start,
            last_window_end = EXCLUDED.last_window_end, evaluated_by = EXCLUDED.evaluated_by, updated_at = now()",
    )
    .bind(group)
    .bind(to_ts(last.start_us))
    .bind(to_ts(last.end_us))
    .bind(owner)
    .execute(&mut *tx)
    .await
    .map_err(db("storing alert progress"))?;
    crate::failpoint::hit("alerts_before_commit");
    tx.commit()
        .await
        .map_err(db("committing the alert transaction"))?;
    crate::failpoint::hit("alerts_after_commit");
    Ok(queued)
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}
