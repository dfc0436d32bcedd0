//! The notifier's SQL: routing new outbox rows into `alert_deliveries` (with the progress, in one
//! transaction), reading a target's pending deliveries, recording attempts, the firing set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use perfstream_events::AlertEvent;
use sqlx::{Connection, PgConnection, Row};
use tracing::warn;

use crate::NotifyError;
use crate::payload::alert_labels;
use crate::route::targets_for;
use crate::settings::NotifySettings;

fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> NotifyError {
    move |source| NotifyError::Db { operation, source }
}

/// Creates the group's progress row on the first start: transitions recorded within
/// `lookback` are still routed, older ones never are.
pub(crate) async fn init_progress(
    conn: &mut PgConnection,
    group: &str,
    lookback: Duration,
) -> Result<(), NotifyError> {
    sqlx::query(
        "INSERT INTO alert_notify_progress (group_id, last_seq)
         SELECT $1, coalesce(max(seq), 0) FROM alert_outbox
         WHERE created_at < now() - make_interval(secs => $2)
         ON CONFLICT (group_id) DO NOTHING",
    )
    .bind(group)
    .bind(lookback.as_secs_f64())
    .execute(conn)
    .await
    .map_err(db("initialising notify progress"))?;
    Ok(())
}

/// Routes up to `batch` outbox rows after the group's progress into deliveries, and moves the
/// progress past them, in one transaction. A resolved transition also goes to every target its
/// firing went to (a route on severity must not strand a firing alert). Returns the rows
/// routed and the deliveries created.
pub(crate) async fn route_new(
    conn: &mut PgConnection,
    s: &NotifySettings,
    group: &str,
    batch: i64,
) -> Result<(usize, usize), NotifyError> {
    let mut tx = conn.begin().await.map_err(db("beginning routing"))?;
    let last: i64 = sqlx::query_scalar(
        "SELECT last_seq FROM alert_notify_progress WHERE group_id = $1 FOR UPDATE",
    )
    .bind(group)
    .fetch_one(&mut *tx)
    .await
    .map_err(db("reading notify progress"))?;
    let rows = sqlx::query(
        "SELECT seq, alert_id, state, payload FROM alert_outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(last)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .map_err(db("reading the outbox for notification"))?;
    let Some(max) = rows.last().map(|r| r.get::<i64, _>(0)) else {
        return Ok((0, 0));
    };
    let resolved: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<String, _>(2) == "resolved")
        .map(|r| r.get(1))
        .collect();
    let mut fired_to: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if !resolved.is_empty() {
        for r in sqlx::query(
            "SELECT alert_id, target FROM alert_deliveries WHERE alert_id = ANY($1) AND state = 'firing'",
        )
        .bind(&resolved)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading firing deliveries"))?
        {
            fired_to.entry(r.get(0)).or_default().insert(r.get(1));
        }
    }
    let (mut targets, mut seqs, mut ids, mut states, mut sevs) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in &rows {
        let (seq, alert_id, state): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
        let event = match perfstream_events::decode_alert(&r.get::<Vec<u8>, _>(3)) {
            Ok(e) => e,
            Err(error) => {
                warn!(%error, seq, alert_id, "Not notifying an outbox row that does not decode.");
                continue;
            }
        };
        let mut to = targets_for(s, &alert_labels(&event));
        if let Some(t) = fired_to.get(&alert_id) {
            // Only targets still configured.
            to.extend(
                t.iter()
                    .filter(|t| s.targets.iter().any(|c| &c.name == *t))
                    .cloned(),
            );
        }
        for t in to {
            targets.push(t);
            seqs.push(seq);
            ids.push(alert_id.clone());
            states.push(state.clone());
            sevs.push(event.severity.as_str());
        }
    }
    let created = sqlx::query(
        "INSERT INTO alert_deliveries (target, seq, alert_id, state, severity)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&targets)
    .bind(&seqs)
    .bind(&ids)
    .bind(&states)
    .bind(&sevs)
    .execute(&mut *tx)
    .await
    .map_err(db("creating deliveries"))?
    .rows_affected() as usize;
    sqlx::query(
        "UPDATE alert_notify_progress SET last_seq = $2, updated_at = now() WHERE group_id = $1",
    )
    .bind(group)
    .bind(max)
    .execute(&mut *tx)
    .await
    .map_err(db("moving notify progress"))?;
    tx.commit().await.map_err(db("committing routing"))?;
    Ok((rows.len(), created))
}

/// A delivery waiting for its target.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub seq: i64,
    pub event: AlertEvent,
    /// The start of the window its alert first fired in (from `alerts`), if recorded.
    pub fired_at_us: Option<i64>,
    /// For an escalation: the severities this target already has the alert firing at
    /// (Alertmanager gets them resolved: the severity is in its labels).
    pub superseded: Vec<String>,
    /// For a resolved transition: why (`alerts.resolve_reason`).
    pub reason: Option<String>,
}

/// The oldest `limit` pending deliveries of a target, in seq order. A row whose payload does not
/// decode is closed with its error (it would otherwise block the target for good).
pub(crate) async fn pending(
    conn: &mut PgConnection,
    target: &str,
    limit: i64,
) -> Result<Vec<Pending>, NotifyError> {
    let rows = sqlx::query(
        "SELECT d.seq, o.payload,
                (SELECT (extract(epoch FROM min(f.window_start)) * 1e6)::bigint FROM alerts f
                 WHERE f.alert_id = d.alert_id AND f.state = 'firing'),
                t.resolve_reason,
                CASE WHEN d.state = 'firing' THEN ARRAY(
                    SELECT p.severity FROM alert_deliveries p
                    WHERE p.target = d.target AND p.alert_id = d.alert_id AND p.state = 'firing'
                      AND p.seq < d.seq AND p.severity <> d.severity) END
         FROM alert_deliveries d
         JOIN alert_outbox o ON o.seq = d.seq
         LEFT JOIN alerts t ON t.alert_id = d.alert_id AND t.state = d.state
             AND t.severity = d.severity
         WHERE d.target = $1 AND d.delivered_at IS NULL
         ORDER BY d.seq LIMIT $2",
    )
    .bind(target)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading pending deliveries"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.get(0);
        match perfstream_events::decode_alert(&r.get::<Vec<u8>, _>(1)) {
            Ok(event) => out.push(Pending {
                seq,
                fired_at_us: r.get(2),
                reason: r.get(3),
                superseded: r.get::<Option<Vec<String>>, _>(4).unwrap_or_default(),
                event,
            }),
            Err(error) => {
                warn!(%error, seq, target, "Dropping a delivery whose payload does not decode.");
                let e = format!("undecodable: {error}");
                attempted(conn, target, &[seq], Err(&e), true, Duration::ZERO).await?;
            }
        }
    }
    Ok(out)
}

/// Records one attempt for `seqs`: delivered (`Ok`), or failed with the error and the next
/// attempt time `retry_in` from now. `give_up` marks a failure final (delivered_at set, the
/// error kept) so it never blocks the target again.
pub(crate) async fn attempted(
    conn: &mut PgConnection,
    target: &str,
    seqs: &[i64],
    outcome: Result<(), &str>,
    give_up: bool,
    retry_in: Duration,
) -> Result<(), NotifyError> {
    let q = match outcome {
        Ok(()) => sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, delivered_at = now()
             WHERE target = $1 AND seq = ANY($2)",
        )
        .bind(target)
        .bind(seqs),
        Err(e) => sqlx::query(
            "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $3,
                 next_attempt_at = now() + make_interval(secs => $4),
                 delivered_at = CASE WHEN $5 THEN now() END
             WHERE target = $1 AND seq = ANY($2)",
        )
        .bind(target)
        .bind(seqs)
        .bind(e)
        .bind(retry_in.as_secs_f64())
        .bind(give_up),
    };
    q.execute(conn)
        .await
        .map_err(db("recording a delivery attempt"))?;
    Ok(())
}

/// The alerts firing at a target: the latest firing (severity) delivered there, no resolved
/// routed there yet.
pub(crate) async fn firing(
    conn: &mut PgConnection,
    target: &str,
) -> Result<Vec<AlertEvent>, NotifyError> {
    let rows = sqlx::query(
        "SELECT o.payload FROM alert_deliveries d JOIN alert_outbox o ON o.seq = d.seq
         WHERE d.target = $1 AND d.state = 'firing' AND d.delivered_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM alert_deliveries r
                           WHERE r.target = d.target AND r.alert_id = d.alert_id
                             AND (r.state = 'resolved' OR r.seq > d.seq))
         ORDER BY d.seq",
    )
    .bind(target)
    .fetch_all(conn)
    .await
    .map_err(db("reading firing alerts"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| perfstream_events::decode_alert(&r.get::<Vec<u8>, _>(0)).ok())
        .collect())
}

/// Pending deliveries and the age of the oldest, per target (for the metrics).
pub(crate) async fn backlog(
    conn: &mut PgConnection,
) -> Result<BTreeMap<String, (i64, f64)>, NotifyError> {
    let rows = sqlx::query(
        "SELECT target, count(*), extract(epoch FROM now() - min(created_at))::float8
         FROM alert_deliveries WHERE delivered_at IS NULL GROUP BY target",
    )
    .fetch_all(conn)
    .await
    .map_err(db("reading the delivery backlog"))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}
