//! One leader's evaluation state: the engine restored from the stored phases, and the rounds
//! that judge newly complete windows and commit what they decided.

use std::collections::BTreeMap;

use perfstream_alerts::{AlertSettings, Engine, Rewind, RuleId, StateRow, Window, WindowRows};
use sqlx::{PgConnection, PgPool};
use tracing::{debug, info, warn};

use crate::deadline::Deadline;
use crate::error::EvalError;
use crate::read;
use crate::write::{self, Recorded};

/// Most windows judged (and committed) in one transaction, so catching up after a long outage
/// commits in steps.
const MAX_WINDOWS_PER_ROUND: i64 = 256;
/// Most `rollup_changes` rows consumed per round (a few per flush; the rest wait a round).
const MAX_CHANGES_PER_ROUND: i64 = 10_000;

pub(crate) struct Evaluator {
    engine: Engine,
    settings: AlertSettings,
    group: String,
    owner: String,
    progress: Option<Window>,
    resolution: Option<String>,
    warmed: bool,
    /// A small pool for the row reads, which run the three kinds in parallel (reads need no
    /// fencing; every write goes through the lock connection).
    reads: PgPool,
    /// Start of the oldest query or request row: baselines need `min_baseline_days` of history
    /// before a window, so until then the baseline statements are skipped. Read once per lead.
    oldest_us: Option<Option<i64>>,
    /// Bounds each read, statement and the commit of a round (see `deadline.rs`).
    deadline: Deadline,
    /// Whether a correction older than the engine's memory was logged at warning level already
    /// (once per lead; later ones at debug).
    warned_too_old: bool,
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    pub windows: usize,
    pub transitions: usize,
    pub queued: usize,
    /// Of `windows`, those judged again because a late correction changed them or an earlier
    /// window.
    pub rejudged: usize,
}

impl Evaluator {
    /// Rebuilds the state a previous leader of `group` committed.
    pub(crate) async fn load(
        conn: &mut PgConnection,
        settings: &AlertSettings,
        group: &str,
        owner: &str,
        reads: PgPool,
        deadline: Deadline,
    ) -> Result<Evaluator, EvalError> {
        let mut engine = Engine::new(settings)?;
        // The config's SLA, the default of endpoints without an `endpoint_slas` row, where the
        // analyst functions and the dashboard read it.
        let sla = engine.rules().base(RuleId::EndpointSla);
        let target = engine.rules().base(RuleId::LatencyBurn).slo_target;
        if sla.threshold > 0.0 {
            let defaults = write::sla_defaults(conn, sla.statistic, sla.threshold, target);
            deadline.run("writing the SLA defaults", defaults).await?;
        }
        let state = deadline
            .run("reading alert state", write::load_state(conn, group))
            .await?;
        let restored = state.len();
        engine.restore(state);
        let progress = deadline
            .run("reading alert progress", write::progress(conn, group))
            .await?;
        info!(
            group,
            restored,
            last_window_end_us = progress.map(|p| p.end_us),
            "Alert state restored."
        );
        Ok(Evaluator {
            engine,
            settings: settings.clone(),
            group: group.to_string(),
            owner: owner.to_string(),
            progress,
            resolution: None,
            warmed: false,
            reads,
            oldest_us: None,
            deadline,
            warned_too_old: false,
        })
    }

    /// Judges every window that became complete since the last round, and commits. Its first
    /// statement, on the lock connection, is also the leader's check that it still holds the
    /// lock: a session-level lock lives exactly as long as the session.
    pub(crate) async fn round(
        &mut self,
        conn: &mut PgConnection,
        now_us: impl Fn() -> i64,
    ) -> Result<RoundStats, EvalError> {
        let t_start = std::time::Instant::now();
        let d = self.deadline;
        let complete = read::complete_until(conn, &self.group);
        let Some(until) = d.run("reading the watermarks", complete).await? else {
            return Ok(RoundStats::default());
        };
        if self.resolution.is_none() {
            let found = read::base_resolution(conn);
            self.resolution = d.run("finding the base resolution", found).await?;
        }
        let Some(res) = self.resolution.clone() else {
            return Ok(RoundStats::default());
        };
        // The SLA table is edited at run time: read every round (a few rows).
        let slas = d.run("reading endpoint SLAs", read::slas(conn)).await?;
        self.engine.set_slas(slas);
        let hists = self.engine.rules().enabled_anywhere(RuleId::LatencyBurn);
        // Late corrections (issue 15, section 5): the windows rollup writes touched since the
        // last round, read before any row, so that a change committed after this read stays in
        // `rollup_changes` for the next round. The rows read are deleted with this round's
        // commit. The oldest window already judged is judged again, and every window after it.
        let changes = read::changes(conn, &res, MAX_CHANGES_PER_ROUND);
        let changes = d.run("reading changed windows", changes).await?;
        let consumed: Vec<i64> = changes.iter().map(|c| c.0).collect();
        let mut replay = None;
        if let Some(p) = self.progress {
            let oldest = changes
                .iter()
                .filter(|(_, w, base)| *base && w.end_us <= p.end_us)
                .map(|(_, w, _)| w.start_us)
                .min();
            if let Some(start) = oldest {
                match self.engine.rewind(start) {
                    Rewind::Rewound => replay = Some((start, p.end_us)),
                    Rewind::NotJudged => {}
                    Rewind::TooOld { oldest_us } if !self.warned_too_old => {
                        self.warned_too_old = true;
                        warn!(
                            group = %self.group,
                            window_start_us = start,
                            oldest_us,
                            "A late correction changed a window judged before this evaluator's memory (judged by a previous leader, or beyond alerts.rejudge_horizon); it is not judged again. Later ones are logged at debug level."
                        );
                    }
                    Rewind::TooOld { oldest_us } => debug!(
                        group = %self.group,
                        window_start_us = start,
                        oldest_us,
                        "A late correction changed a window too old to judge again."
                    ),
                }
            }
        }
        let from = match self.progress {
            Some(p) => p.end_us,
            None => until - self.settings.start_lookback.as_micros() as i64,
        };
        let mut wins = Vec::new();
        if let Some((start, end)) = replay {
            // Every window of the replay in this round: the state is committed only once the
            // replay is complete.
            let again = read::windows(conn, &res, start, end, i64::MAX);
            wins = d.run("listing windows to judge again", again).await?;
        }
        let rejudged = wins.len();
        let new = read::windows(conn, &res, from, until, MAX_WINDOWS_PER_ROUND);
        wins.extend(d.run("listing complete windows", new).await?);
        let (Some(first), Some(last)) = (wins.first().copied(), wins.last().copied()) else {
            if !consumed.is_empty() {
                let done = write::consume_changes(conn, &consumed);
                d.run("consuming changed windows", done).await?;
            }
            return Ok(RoundStats::default());
        };
        if !self.warmed {
            let len = first.end_us - first.start_us;
            // The trend rules' windows, or the burn-rate rule's longest window if longer.
            let span = (len * self.engine.history_windows() as i64)
                .max(self.engine.history_span().as_micros() as i64);
            let hist_from = first.start_us - span;
            let history = read::rows(&self.reads, &res, hist_from, first.start_us, hists);
            for rows in d.run("reading history", history).await?.values() {
                self.engine.warm(rows)?;
            }
            self.warmed = true;
        }
        let t_read0 = std::time::Instant::now();
        let rows = read::rows(&self.reads, &res, first.start_us, last.start_us + 1, hists);
        let mut all = d.run("reading the rollups of a window", rows).await?;
        let t_read = t_read0.elapsed();
        let mut t_base = std::time::Duration::ZERO;
        let mut t_eval = std::time::Duration::ZERO;
        let regression = self.engine.rules().base(RuleId::Regression).clone();
        if regression.enabled && self.oldest_us.is_none() {
            let oldest = read::oldest_latency_row(conn, &res);
            self.oldest_us = Some(d.run("finding the oldest row", oldest).await?);
        }
        let history_needed_us = i64::from(regression.min_baseline_days.max(1)) * 86_400_000_000;
        let mut recorded = Vec::new();
        let mut changes: BTreeMap<(RuleId, String), StateRow> = BTreeMap::new();
        for w in &wins {
            let mut rows = all
                .remove(&w.start_us)
                .unwrap_or_else(|| WindowRows::empty(*w));
            let t0 = std::time::Instant::now();
            let history = self
                .oldest_us
                .flatten()
                .is_some_and(|o| o <= w.start_us - history_needed_us);
            if regression.enabled && history {
                let baselines = read::baselines(
                    conn,
                    &res,
                    &mut rows,
                    regression.statistic,
                    regression.baseline_days,
                    regression.min_baseline_days,
                );
                d.run("computing baselines", baselines).await?;
            }
            t_base += t0.elapsed();
            let t0 = std::time::Instant::now();
            let ev = self.engine.evaluate(&rows)?;
            t_eval += t0.elapsed();
            for t in ev.transitions {
                let at = now_us();
                let event = t.to_event(at);
                let mut payload = Vec::with_capacity(256);
                perfstream_events::encode::encode_alert(&mut payload, &event);
                recorded.push(Recorded {
                    transition: t,
                    transitioned_at_us: at,
                    payload,
                });
            }
            for c in ev.changes {
                changes.insert((c.rule, c.key.clone()), c);
            }
        }
        let t0 = std::time::Instant::now();
        // One transaction, one bound (like a flush of the store): abandoned at the deadline, it
        // rolls back with its session.
        let commit = write::commit(
            conn,
            &self.group,
            &self.owner,
            last,
            &recorded,
            &changes,
            &consumed,
        );
        let queued = d.run("committing judged windows", commit).await?;
        let t_commit = t0.elapsed();
        self.progress = Some(match self.progress {
            Some(p) if p.start_us > last.start_us => p,
            _ => last,
        });
        let stats = RoundStats {
            windows: wins.len(),
            transitions: recorded.len(),
            queued,
            rejudged,
        };
        for r in &recorded {
            let t = &r.transition;
            info!(
                alert_id = %t.alert_id,
                rule = t.rule.as_str(),
                state = t.state.as_str(),
                service = %t.service,
                window_start = t.window.start_us,
                "{}",
                t.message
            );
        }
        debug!(
            group = %self.group,
            windows = stats.windows,
            rejudged = stats.rejudged,
            transitions = stats.transitions,
            last_window_end = last.end_us,
            total_ms = t_start.elapsed().as_secs_f64() * 1e3,
            read_ms = t_read.as_secs_f64() * 1e3,
            baselines_ms = t_base.as_secs_f64() * 1e3,
            rules_ms = t_eval.as_secs_f64() * 1e3,
            commit_ms = t_commit.as_secs_f64() * 1e3,
            "Alert windows evaluated."
        );
        Ok(stats)
    }
}
