//! The evaluator's own tables: loading the stored state, and committing one batch of judged
//! windows (transitions, outbox rows, state, progress) in one transaction.

use std::collections::BTreeMap;

use perfstream_alerts::{Phase, RuleId, StateRow, Statistic, Transition, Window};
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

/// Writes the config's SLA (the `endpoint_sla` rule's statistic and threshold, the
/// `latency_burn` rule's objective) into `endpoint_sla_defaults`: what endpoints without an
/// `endpoint_slas` row get, for the analyst functions and the dashboard too.
pub(crate) async fn sla_defaults(
    conn: &mut PgConnection,
    statistic: Statistic,
    threshold_ms: f64,
    slo_target: f64,
) -> Result<(), EvalError> {
    sqlx::query(
        "INSERT INTO endpoint_sla_defaults (singleton, statistic, threshold_ms, slo_target, source)
         VALUES (true, $1, $2, $3, 'config')
         ON CONFLICT (singleton) DO UPDATE SET statistic = EXCLUDED.statistic,
            threshold_ms = EXCLUDED.threshold_ms, slo_target = EXCLUDED.slo_target,
            source = EXCLUDED.source, updated_at = now()
         WHERE (endpoint_sla_defaults.statistic, endpoint_sla_defaults.threshold_ms,
                endpoint_sla_defaults.slo_target, endpoint_sla_defaults.source)
            IS DISTINCT FROM (EXCLUDED.statistic, EXCLUDED.threshold_ms, EXCLUDED.slo_target,
                              EXCLUDED.source)",
    )
    .bind(statistic.as_str())
    .bind(threshold_ms)
    .bind(slo_target)
    .execute(&mut *conn)
    .await
    .map_err(db("writing the SLA defaults"))?;
    Ok(())
}

/// The stored phases of the group.
pub(crate) async fn load_state(
    conn: &mut PgConnection,
    group: &str,
) -> Result<Vec<StateRow>, EvalError> {
    let rows = sqlx::query(
        "SELECT rule, alert_key, labels::text, phase, alert_id, since, window_count, missing_windows,
                critical
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
                critical: r.get(8),
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

/// Deletes the `rollup_changes` rows a round read (a round that judged nothing).
pub(crate) async fn consume_changes(
    conn: &mut PgConnection,
    seqs: &[i64],
) -> Result<(), EvalError> {
    sqlx::query("DELETE FROM rollup_changes WHERE seq = ANY($1)")
        .bind(seqs)
        .execute(&mut *conn)
        .await
        .map_err(db("consuming changed windows"))?;
    Ok(())
}

/// Commits one batch: every transition into `alerts` (skipping any already recorded) and, in
/// the same order, the outbox; the changed phases into `alert_state`; the last window into
/// `alert_progress`; the `rollup_changes` rows the round read (`consumed`) deleted. A few
/// set-based statements whatever the batch size. Returns how many outbox rows were added.
pub(crate) async fn commit(
    conn: &mut PgConnection,
    group: &str,
    owner: &str,
    last: Window,
    transitions: &[Recorded],
    changes: &BTreeMap<(RuleId, String), StateRow>,
    consumed: &[i64],
) -> Result<usize, EvalError> {
    let mut tx = conn
        .begin()
        .await
        .map_err(db("beginning the alert transaction"))?;
    if !consumed.is_empty() {
        sqlx::query("DELETE FROM rollup_changes WHERE seq = ANY($1)")
            .bind(consumed)
            .execute(&mut *tx)
            .await
            .map_err(db("consuming changed windows"))?;
    }
    let mut queued = 0;
    if !transitions.is_empty() {
        let n = transitions.len();
        let (mut ids, mut states, mut rules, mut sev, mut svc, mut keys, mut labels) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut reason: Vec<Option<&str>> = Vec::with_capacity(n);
        let (mut obs, mut thr, mut clr, mut ws, mut we, mut at, mut msg, mut payload) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for t in transitions {
            let tr = &t.transition;
            ids.push(tr.alert_id.as_str());
            states.push(tr.state.as_str());
            rules.push(tr.rule.as_str());
            sev.push(tr.severity.to_event().as_str());
            svc.push(tr.service.as_str());
            keys.push(tr.key.as_str());
            labels.push(serde_json::to_string(&tr.labels).unwrap_or_else(|_| "{}".into()));
            obs.push(finite(tr.observed_value));
            thr.push(finite(tr.threshold));
            clr.push(finite(tr.clear_threshold));
            ws.push(to_ts(tr.window.start_us));
            we.push(to_ts(tr.window.end_us));
            at.push(to_ts(t.transitioned_at_us));
            msg.push(tr.message.as_str());
            payload.push(t.payload.as_slice());
            reason.push(tr.reason.map(|r| r.as_str()));
        }
        let done = sqlx::query(
            "WITH t AS (
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::float8[], $9::float8[], $10::float8[], $11::timestamptz[],
                    $12::timestamptz[], $13::timestamptz[], $14::text[], $15::bytea[], $16::text[])
                    WITH ORDINALITY AS t(a, s, r, sev, svc, k, l, v, th, cth, ws, we, ta, m, p, why, ord)
             ),
             ins AS (
                INSERT INTO alerts (alert_id, state, rule, severity, service, alert_key, labels,
                    observed_value, threshold, clear_threshold, window_start, window_end, transitioned_at, message,
                    resolve_reason)
                SELECT a, s, r, sev, svc, k, l::jsonb, v, th, cth, ws, we, ta, m, why FROM t ORDER BY ord
                ON CONFLICT (alert_id, state, severity) DO NOTHING
                RETURNING alert_id, state, severity
             )
             INSERT INTO alert_outbox (alert_id, state, payload)
             SELECT t.a, t.s, t.p FROM t
             JOIN ins ON ins.alert_id = t.a AND ins.state = t.s AND ins.severity = t.sev
             ORDER BY t.ord",
        )
        .bind(&ids)
        .bind(&states)
        .bind(&rules)
        .bind(&sev)
        .bind(&svc)
        .bind(&keys)
        .bind(&labels)
        .bind(&obs)
        .bind(&thr)
        .bind(&clr)
        .bind(&ws)
        .bind(&we)
        .bind(&at)
        .bind(&msg)
        .bind(&payload)
        .bind(&reason)
        .execute(&mut *tx)
        .await
        .map_err(db("recording transitions"))?;
        queued = done.rows_affected() as usize;
    }
    let (mut del_rules, mut del_keys) = (Vec::new(), Vec::new());
    let mut up = StateColumns::default();
    for c in changes.values() {
        match &c.phase {
            None => {
                del_rules.push(c.rule.as_str());
                del_keys.push(c.key.as_str());
            }
            Some(p) => {
                let (phase, alert_id, since_us, count, missing, critical) = match p {
                    Phase::Pending {
                        count,
                        since_us,
                        missing,
                    } => ("pending", None, *since_us, *count, *missing, false),
                    Phase::Firing {
                        alert_id,
                        since_us,
                        clear_count,
                        missing,
                        critical,
                    } => (
                        "firing",
                        Some(alert_id.as_str()),
                        *since_us,
                        *clear_count,
                        *missing,
                        *critical,
                    ),
                };
                up.rules.push(c.rule.as_str());
                up.keys.push(c.key.as_str());
                up.labels
                    .push(serde_json::to_string(&c.labels).unwrap_or_else(|_| "{}".into()));
                up.phases.push(phase);
                up.alert_ids.push(alert_id);
                up.since.push(to_ts(since_us));
                up.counts.push(i32::try_from(count).unwrap_or(i32::MAX));
                up.missing.push(i32::try_from(missing).unwrap_or(i32::MAX));
                up.critical.push(critical);
            }
        }
    }
    if !del_rules.is_empty() {
        sqlx::query(
            "DELETE FROM alert_state s USING unnest($2::text[], $3::text[]) AS d(rule, k)
             WHERE s.group_id = $1 AND s.rule = d.rule AND s.alert_key = d.k",
        )
        .bind(group)
        .bind(&del_rules)
        .bind(&del_keys)
        .execute(&mut *tx)
        .await
        .map_err(db("clearing alert state"))?;
    }
    if !up.rules.is_empty() {
        sqlx::query(
            "INSERT INTO alert_state (group_id, rule, alert_key, labels, phase, alert_id, since, window_count,
                missing_windows, critical)
             SELECT $1, r, k, l::jsonb, p, a, s, c, m, cr
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
                $8::int4[], $9::int4[], $10::bool[]) AS t(r, k, l, p, a, s, c, m, cr)
             ON CONFLICT (group_id, rule, alert_key) DO UPDATE SET
                labels = EXCLUDED.labels, phase = EXCLUDED.phase, alert_id = EXCLUDED.alert_id,
                since = EXCLUDED.since, window_count = EXCLUDED.window_count,
                missing_windows = EXCLUDED.missing_windows, critical = EXCLUDED.critical,
                updated_at = now()",
        )
        .bind(group)
        .bind(&up.rules)
        .bind(&up.keys)
        .bind(&up.labels)
        .bind(&up.phases)
        .bind(&up.alert_ids)
        .bind(&up.since)
        .bind(&up.counts)
        .bind(&up.missing)
        .bind(&up.critical)
        .execute(&mut *tx)
        .await
        .map_err(db("storing alert state"))?;
    }
    sqlx::query(
        "INSERT INTO alert_progress (group_id, last_window_start, last_window_end, evaluated_by)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id) DO UPDATE SET
            last_window_start = greatest(alert_progress.last_window_start, EXCLUDED.last_window_start),
            last_window_end = greatest(alert_progress.last_window_end, EXCLUDED.last_window_end),
            evaluated_by = EXCLUDED.evaluated_by, updated_at = now()",
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

/// The `alert_state` upserts of a batch, one array per column (bound to `unnest`).
#[derive(Default)]
struct StateColumns<'a> {
    rules: Vec<&'a str>,
    keys: Vec<&'a str>,
    labels: Vec<String>,
    phases: Vec<&'static str>,
    alert_ids: Vec<Option<&'a str>>,
    since: Vec<chrono::DateTime<chrono::Utc>>,
    counts: Vec<i32>,
    missing: Vec<i32>,
    critical: Vec<bool>,
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}
