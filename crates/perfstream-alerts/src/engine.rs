//! [`Engine`]: feeds each window's rows through the rules and the lifecycle, in window order.
//!
//! State: per (rule, key) phases (persisted by the caller from [`Evaluation::changes`] and
//! given back with [`Engine::restore`]) and a short per-series history for the trend and
//! baseline rules (rebuilt by the caller with [`Engine::warm`] from the windows before the next
//! one to evaluate). With both restored, evaluating a window gives exactly what the previous
//! process would have.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::AlertError;
use crate::lifecycle::{self, Edge, Observation, Phase, ResolveReason};
use crate::message::message;
use crate::observe::{self, Budget, BurnPoint};
use crate::rows::{Window, WindowRows, over_threshold};
use crate::rule::{Rule, RuleId, RuleSet};
use crate::settings::{AlertSettings, Severity};

mod replay;
use crate::sla::{Ctx, SlaTable};
pub use replay::Rewind;
use replay::{Judged, Replay, Undo};

/// The stored state of one (rule, key); `phase: None` means inactive (delete the row).
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    pub rule: RuleId,
    /// Opaque key: kind, then the key fields, joined by `|`.
    pub key: String,
    /// The key's fields (`service`, `instance`, ...).
    pub labels: BTreeMap<String, String>,
    pub phase: Option<Phase>,
}

/// One alert transition, ready for the `alerts` table and the topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub rule: RuleId,
    pub key: String,
    pub alert_id: String,
    pub state: perfstream_events::AlertState,
    pub severity: Severity,
    pub service: String,
    /// Key fields plus the rule's configured labels.
    pub labels: BTreeMap<String, String>,
    pub observed_value: f64,
    pub threshold: f64,
    pub clear_threshold: f64,
    pub window: Window,
    pub message: String,
    /// Resolved transitions: why (cleared, no data, rule disabled). `None` for firing.
    pub reason: Option<ResolveReason>,
}

impl Transition {
    /// The event for the alerts topic; `transitioned_at_us` is when the caller records it.
    pub fn to_event(&self, transitioned_at_us: i64) -> perfstream_events::AlertEvent {
        perfstream_events::AlertEvent {
            alert_id: self.alert_id.clone(),
            rule: self.rule.as_str().to_string(),
            severity: self.severity.to_event(),
            state: self.state,
            service: self.service.clone(),
            labels: self.labels.clone(),
            observed_value: finite(self.observed_value),
            threshold: finite(self.threshold),
            clear_threshold: finite(self.clear_threshold),
            window_start_us: self.window.start_us,
            window_end_us: self.window.end_us,
            transitioned_at_us,
            message: self.message.clone(),
        }
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// The result of evaluating one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Transitions in a deterministic order (rule, key).
    pub transitions: Vec<Transition>,
    /// Every (rule, key) whose stored state changed.
    pub changes: Vec<StateRow>,
}

#[derive(Debug, Clone, Copy)]
struct ResPoint {
    start_us: i64,
    pool: Option<f64>,
    mem: Option<f64>,
    cache: Option<f64>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct KeyState {
    labels: BTreeMap<String, String>,
    phases: Vec<(RuleId, Phase)>,
}

/// The mutable part of the engine (split from the rules so rules can be borrowed while the
/// state changes).
#[derive(Debug, Default)]
struct State {
    resources: HashMap<String, VecDeque<ResPoint>>,
    rates: HashMap<String, VecDeque<(i64, f64)>>,
    keys: HashMap<String, KeyState>,
    /// Resource series (key text `resource|service|instance`): their labels and the start of
    /// the last window with a row, for the `absent` rule.
    series: HashMap<String, (BTreeMap<String, String>, i64)>,
    /// (key, rule) pairs judged in the current window.
    seen: HashSet<(String, RuleId)>,
    out: Evaluation,
    /// The phases the current window changed, as they were before it (for a rewind).
    undo: Vec<Undo>,
    /// Alert ids the current window resolved.
    resolved: Vec<String>,
}

/// The alert engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    history_windows: usize,
    /// The burn-rate rule's history, µs (its longest long window; 0 when disabled).
    burn_span_us: i64,
    /// Per request key (`request|service|endpoint|method`): requests, 5xx and requests over
    /// the SLA threshold per window of the last `burn_span_us`, for the burn-rate rules only.
    burn: HashMap<String, VecDeque<BurnPoint>>,
    /// Endpoint SLAs (`endpoint_slas`), by (service, endpoint).
    slas: SlaTable,
    state: State,
    last: Option<Window>,
    /// `rejudge_horizon`, µs: how long judged windows stay in `journal`, and the extra history
    /// kept for a replay.
    rejudge_us: i64,
    /// The windows judged within `rejudge_us`, oldest first.
    journal: VecDeque<Judged>,
    replay: Option<Replay>,
}

/// A key of one row: its kind-prefixed text and its fields.
struct RowKey<'a> {
    text: String,
    fields: [(&'static str, &'a str); 3],
    n: usize,
}

impl<'a> RowKey<'a> {
    fn new(kind: &str, fields: &[(&'static str, &'a str)]) -> RowKey<'a> {
        let mut text = String::with_capacity(64);
        text.push_str(kind);
        let mut f = [("", ""); 3];
        for (i, (k, v)) in fields.iter().enumerate() {
            text.push('|');
            text.push_str(v);
            f[i] = (k, v);
        }
        RowKey {
            text,
            fields: f,
            n: fields.len(),
        }
    }

    fn fields(&self) -> &[(&'static str, &'a str)] {
        &self.fields[..self.n]
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.fields()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Engine {
    pub fn new(settings: &AlertSettings) -> Result<Engine, AlertError> {
        let rules = RuleSet::new(settings)?;
        Ok(Engine {
            history_windows: rules.history_windows(),
            burn_span_us: rules.history_span().as_micros() as i64,
            burn: HashMap::new(),
            slas: SlaTable::new(),
            rules,
            state: State::default(),
            last: None,
            rejudge_us: settings.rejudge_horizon.as_micros() as i64,
            journal: VecDeque::new(),
            replay: None,
        })
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Sets the endpoint SLAs (the `endpoint_slas` table), used from the next window on by
    /// `endpoint_sla` (statistic, threshold) and `latency_burn` (threshold, objective). An
    /// endpoint without an entry keeps the config's rules.
    pub fn set_slas(&mut self, slas: SlaTable) {
        self.slas = slas;
    }

    pub fn slas(&self) -> &SlaTable {
        &self.slas
    }

    /// Windows of history the trend and baseline rules need before a window (what a restarted
    /// evaluator passes to [`Engine::warm`]).
    pub fn history_windows(&self) -> usize {
        self.history_windows
    }

    /// History the burn-rate rule needs before a window, as time (a restarted evaluator warms
    /// the larger of this and [`Engine::history_windows`] windows).
    pub fn history_span(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.burn_span_us as u64)
    }

    /// Restores stored phases (after a restart or a hand-over).
    pub fn restore(&mut self, rows: impl IntoIterator<Item = StateRow>) {
        for r in rows {
            let Some(phase) = r.phase else { continue };
            let k = self.state.keys.entry(r.key).or_default();
            k.labels = r.labels;
            k.phases.retain(|(id, _)| *id != r.rule);
            k.phases.push((r.rule, phase));
        }
    }

    /// Records a window's rows in the history only (no rules, no transitions): used to rebuild
    /// the history of the windows before the first one a restarted evaluator judges.
    pub fn warm(&mut self, rows: &WindowRows) -> Result<(), AlertError> {
        self.advance_to(rows.window)?;
        self.record_history(rows);
        Ok(())
    }

    /// Windows must come in ascending order.
    fn advance_to(&mut self, w: Window) -> Result<(), AlertError> {
        if let Some(last) = self.last
            && w.start_us <= last.start_us
        {
            return Err(AlertError::OutOfOrder {
                last_start_us: last.start_us,
                start_us: w.start_us,
            });
        }
        self.last = Some(w);
        Ok(())
    }

    fn record_history(&mut self, rows: &WindowRows) {
        let w = rows.window;
        if self.burn_span_us > 0 {
            let ctx = Ctx {
                rules: &self.rules,
                slas: &self.slas,
            };
            for r in &rows.requests {
                let fields = [
                    ("service", r.service.as_str()),
                    ("endpoint", r.endpoint.as_str()),
                    ("method", r.method.as_str()),
                ];
                let threshold_us = ctx.sla_threshold_us(&fields);
                let (slow, slow_exact) = over_threshold(&r.buckets, threshold_us);
                let key = format!("request|{}|{}|{}", r.service, r.endpoint, r.method);
                self.burn.entry(key).or_default().push_back(BurnPoint {
                    start_us: w.start_us,
                    requests: r.latency.count,
                    errors: r.status_5xx,
                    slow,
                    slow_exact,
                });
            }
            let from = w.end_us - self.burn_span_us - self.rejudge_us;
            self.burn.retain(|_, h| {
                while h.front().is_some_and(|p| p.start_us < from) {
                    h.pop_front();
                }
                !h.is_empty()
            });
        }
        let st = &mut self.state;
        let horizon =
            w.start_us - (w.end_us - w.start_us) * self.history_windows as i64 - self.rejudge_us;
        let mut per_service: HashMap<&str, f64> = HashMap::new();
        for r in &rows.requests {
            *per_service.entry(r.service.as_str()).or_default() += r.latency.count as f64;
        }
        for (svc, n) in per_service {
            st.rates
                .entry(svc.to_string())
                .or_default()
                .push_back((w.start_us, n));
        }
        for r in &rows.resources {
            let series = format!("resource|{}|{}", r.service, r.instance);
            match st.series.get_mut(&series) {
                Some((_, last)) => *last = (*last).max(w.start_us),
                None => {
                    let labels = [("service", &r.service), ("instance", &r.instance)]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    st.series.insert(series, (labels, w.start_us));
                }
            }
            let key = format!("{}|{}", r.service, r.instance);
            st.resources.entry(key).or_default().push_back(ResPoint {
                start_us: w.start_us,
                pool: r.pool_utilization_mean,
                mem: r.memory_utilization_mean,
                cache: observe::cache_ratio(r).map(|(v, _)| v),
            });
        }
        st.rates.retain(|_, h| {
            while h.front().is_some_and(|p| p.0 <= horizon) {
                h.pop_front();
            }
            !h.is_empty()
        });
        st.resources.retain(|_, h| {
            while h.front().is_some_and(|p| p.start_us <= horizon) {
                h.pop_front();
            }
            !h.is_empty()
        });
        // A series silent for the whole history is forgotten unless `absent` fires for it.
        let keys = &st.keys;
        st.series.retain(|k, (_, last)| {
            *last > horizon
                || keys
                    .get(k)
                    .is_some_and(|ks| ks.phases.iter().any(|(r, _)| *r == RuleId::Absent))
        });
    }

    /// Evaluates one window; windows must come in ascending order (gaps are fine).
    pub fn evaluate(&mut self, rows: &WindowRows) -> Result<Evaluation, AlertError> {
        let prev_last = self.last;
        self.advance_to(rows.window)?;
        self.record_history(rows);
        let w = rows.window;
        let len_us = (w.end_us - w.start_us).max(1);
        let rules = &Ctx {
            rules: &self.rules,
            slas: &self.slas,
        };
        let burn = &self.burn;
        let st = &mut self.state;
        st.seen.clear();

        for q in &rows.queries {
            let key = RowKey::new(
                "query",
                &[
                    ("service", &q.service),
                    ("query_hash", &q.query_hash),
                    ("query_type", &q.query_type),
                ],
            );
            st.judge(rules, w, &key, RuleId::SlowQuery, |r| {
                observe::latency(r, &q.latency)
            });
            st.judge(rules, w, &key, RuleId::Regression, |r| {
                observe::regression(r, &q.latency, q.baseline_us)
            });
        }
        for e in &rows.requests {
            let key = RowKey::new(
                "request",
                &[
                    ("service", &e.service),
                    ("endpoint", &e.endpoint),
                    ("method", &e.method),
                ],
            );
            st.judge(rules, w, &key, RuleId::EndpointSla, |r| {
                observe::latency(r, &e.latency)
            });
            st.judge(rules, w, &key, RuleId::ErrorRate, |r| {
                observe::error_rate(r, e)
            });
            st.judge(rules, w, &key, RuleId::ErrorBudgetBurn, |r| {
                observe::burn(r, burn.get(&key.text), w.end_us, Budget::Errors)
            });
            st.judge(rules, w, &key, RuleId::LatencyBurn, |r| {
                let threshold_ms = rules.sla_threshold_us(key.fields()) as f64 / 1000.0;
                let budget = Budget::Latency { threshold_ms };
                observe::burn(r, burn.get(&key.text), w.end_us, budget)
            });
            st.judge(rules, w, &key, RuleId::Regression, |r| {
                observe::regression(r, &e.latency, e.baseline_us)
            });
        }
        for s in &rows.resources {
            let key = RowKey::new(
                "resource",
                &[("service", &s.service), ("instance", &s.instance)],
            );
            let hist: Vec<ResPoint> = st
                .resources
                .get(&format!("{}|{}", s.service, s.instance))
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default();
            let rate: Vec<(i64, f64)> = st
                .rates
                .get(&s.service)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default();
            st.judge(rules, w, &key, RuleId::PoolUtilization, |r| {
                observe::gauge(r, s.pool_utilization_mean)
            });
            st.judge(rules, w, &key, RuleId::PoolExhaustion, |r| {
                observe::pool_exhaustion(r, s)
            });
            st.judge(rules, w, &key, RuleId::MemoryUtilization, |r| {
                observe::gauge(r, s.memory_utilization_mean)
            });
            st.judge(rules, w, &key, RuleId::GcPause, |r| {
                observe::gauge(r, observe::gc_share(s))
            });
            st.judge(rules, w, &key, RuleId::Cpu, |r| {
                observe::gauge(r, s.cpu_mean)
            });
            st.judge(rules, w, &key, RuleId::CacheHitRatio, |r| {
                let from = w.start_us - len_us * r.windows as i64;
                let mut prev: Vec<f64> = hist
                    .iter()
                    .filter(|p| p.start_us >= from && p.start_us < w.start_us)
                    .filter_map(|p| p.cache)
                    .collect();
                observe::cache_hit_ratio(r, observe::cache_ratio(s), &mut prev)
            });
            // The fit covers the rule's last `windows` windows, this one included; x in seconds.
            let series = |r: &Rule, f: fn(&ResPoint) -> Option<f64>| -> (Vec<f64>, Vec<f64>) {
                let from = w.start_us - len_us * (r.windows as i64 - 1);
                hist.iter()
                    .filter(|p| p.start_us >= from)
                    .filter_map(|p| f(p).map(|v| ((p.start_us - w.start_us) as f64 / 1e6, v)))
                    .unzip()
            };
            st.judge(rules, w, &key, RuleId::MemoryLeak, |r| {
                let (xs, ys) = series(r, |p| p.mem);
                observe::memory_leak(r, &xs, &ys)
            });
            st.judge(rules, w, &key, RuleId::ConnectionLeak, |r| {
                let (xs, ys) = series(r, |p| p.pool);
                let from = w.start_us - len_us * (r.windows as i64 - 1);
                let (rxs, rys): (Vec<f64>, Vec<f64>) = rate
                    .iter()
                    .filter(|p| p.0 >= from)
                    .map(|p| ((p.0 - w.start_us) as f64 / 1e6, p.1))
                    .unzip();
                observe::connection_leak(r, &xs, &ys, &rxs, &rys)
            });
        }

        // Absent: every known resource series, by the windows since its last row. A series
        // that fires and is then forgotten by a restart (older than the warmed history) still
        // counts as absent.
        let mut absent: Vec<(String, String, i64)> = st
            .series
            .values()
            .map(|(l, last)| (l["service"].clone(), l["instance"].clone(), *last))
            .collect();
        for (k, ks) in &st.keys {
            if !st.series.contains_key(k) && ks.phases.iter().any(|(r, _)| *r == RuleId::Absent) {
                let g = |f: &str| ks.labels.get(f).cloned().unwrap_or_default();
                absent.push((g("service"), g("instance"), i64::MIN));
            }
        }
        absent.sort();
        for (service, instance, last) in &absent {
            let key = RowKey::new("resource", &[("service", service), ("instance", instance)]);
            let missing = if *last == i64::MIN {
                u32::MAX
            } else {
                u32::try_from((w.start_us - last) / len_us).unwrap_or(u32::MAX)
            };
            st.judge(rules, w, &key, RuleId::Absent, |r| {
                observe::absent(r, missing)
            });
        }

        // Keys with state but no row (or too little data) this window: judged as no data.
        let mut missing: Vec<(String, RuleId)> = st
            .keys
            .iter()
            .flat_map(|(k, ks)| ks.phases.iter().map(move |(id, _)| (k.clone(), *id)))
            .filter(|p| !st.seen.contains(p))
            .collect();
        missing.sort();
        for (k, id) in missing {
            let labels = st.keys[&k].labels.clone();
            let fields: Vec<(&'static str, &str)> = labels
                .iter()
                .filter_map(|(lk, lv)| static_field(lk).map(|f| (f, lv.as_str())))
                .collect();
            let rule = rules.for_key(id, &fields);
            st.apply(w, &k, &labels, &rule, &Observation::absent());
        }
        let mut out = std::mem::take(&mut st.out);
        let undo = std::mem::take(&mut st.undo);
        let resolved = std::mem::take(&mut st.resolved);
        if self.rejudge_us > 0 {
            self.journal.push_back(Judged {
                window: w,
                prev_last,
                undo,
            });
            while self
                .journal
                .front()
                .is_some_and(|j| j.window.start_us < w.start_us - self.rejudge_us)
            {
                self.journal.pop_front();
            }
        }
        if let Some(r) = &mut self.replay {
            r.resolved.extend(resolved);
            if w.start_us >= r.through.start_us
                && let Some(r) = self.replay.take()
            {
                self.finish_replay(r, w, &mut out);
            }
        }
        out.transitions
            .sort_by(|a, b| (a.rule, &a.key).cmp(&(b.rule, &b.key)));
        out.changes
            .sort_by(|a, b| (a.rule, &a.key).cmp(&(b.rule, &b.key)));
        Ok(out)
    }

    /// The current phases (for tests and diagnostics), sorted.
    pub fn states(&self) -> Vec<StateRow> {
        let mut v: Vec<StateRow> = self
            .state
            .keys
            .iter()
            .flat_map(|(k, st)| {
                st.phases.iter().map(|(id, p)| StateRow {
                    rule: *id,
                    key: k.clone(),
                    labels: st.labels.clone(),
                    phase: Some(p.clone()),
                })
            })
            .collect();
        v.sort_by(|a, b| (a.rule, &a.key).cmp(&(b.rule, &b.key)));
        v
    }

    /// The last window evaluated or warmed.
    pub fn last_window(&self) -> Option<Window> {
        self.last
    }
}

impl State {
    fn judge(
        &mut self,
        rules: &Ctx<'_>,
        w: Window,
        key: &RowKey<'_>,
        id: RuleId,
        observe: impl FnOnce(&Rule) -> Observation,
    ) {
        let rule = rules.for_key(id, key.fields());
        if !rule.enabled {
            return;
        }
        let obs = observe(&rule);
        let has_state = self
            .keys
            .get(&key.text)
            .is_some_and(|k| k.phases.iter().any(|(r, _)| *r == id));
        if !obs.breach && !has_state {
            return;
        }
        self.seen.insert((key.text.clone(), id));
        self.apply(w, &key.text, &key.labels(), &rule, &obs);
    }

    fn apply(
        &mut self,
        w: Window,
        key: &str,
        labels: &BTreeMap<String, String>,
        rule: &Rule,
        obs: &Observation,
    ) {
        let id = rule.id;
        let prev = self
            .keys
            .get(key)
            .and_then(|k| k.phases.iter().find(|(r, _)| *r == id))
            .map(|(_, p)| p.clone());
        let (next, edge) = if rule.enabled {
            lifecycle::step(prev.as_ref(), obs, rule, w, || {
                lifecycle::alert_id(id, labels, w.start_us)
            })
        } else {
            lifecycle::disabled(prev.as_ref())
        };
        let edge_kept = edge.clone();
        if let Some(edge) = edge {
            let mut all = labels.clone();
            for (k, v) in &rule.labels {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let (alert_id, reason, escalated) = match edge {
                Edge::Fired(id) => (id, None, false),
                Edge::Escalated(id) => (id, None, true),
                Edge::Resolved(id, why) => (id, Some(why), false),
            };
            let fired = reason.is_none();
            // Critical: the phase after a fire or an escalation, the phase before a resolve.
            let phase = if fired { next.as_ref() } else { prev.as_ref() };
            let critical = matches!(phase, Some(Phase::Firing { critical: true, .. }));
            let severity = if critical {
                Severity::Critical
            } else {
                rule.severity
            };
            let threshold = match (obs.detail, rule.critical_threshold) {
                (lifecycle::Detail::Burn { factor, .. }, _) => factor,
                (_, Some(c)) if critical && fired => c,
                _ => rule.threshold,
            };
            let mut text = message(id, reason, labels, obs, rule);
            if escalated {
                text = format!("{text}; escalated to critical (past {threshold})");
            }
            self.out.transitions.push(Transition {
                rule: id,
                key: key.to_string(),
                alert_id,
                state: if fired {
                    perfstream_events::AlertState::Firing
                } else {
                    perfstream_events::AlertState::Resolved
                },
                severity,
                service: labels.get("service").cloned().unwrap_or_default(),
                message: text,
                labels: all,
                observed_value: obs.value,
                threshold,
                clear_threshold: match obs.detail {
                    lifecycle::Detail::Burn { factor, .. } => factor,
                    _ => rule.clear_threshold,
                },
                window: w,
                reason,
            });
        }
        if let Some(Edge::Resolved(a, _)) = &edge_kept {
            self.resolved.push(a.clone());
        }
        if next != prev {
            self.undo.push(Undo {
                key: key.to_string(),
                rule: id,
                labels: labels.clone(),
                prev: prev.clone(),
            });
            self.out.changes.push(StateRow {
                rule: id,
                key: key.to_string(),
                labels: labels.clone(),
                phase: next.clone(),
            });
            let st = self.keys.entry(key.to_string()).or_default();
            if st.labels.is_empty() {
                st.labels = labels.clone();
            }
            st.phases.retain(|(r, _)| *r != id);
            if let Some(p) = next {
                st.phases.push((id, p));
            }
            if st.phases.is_empty() {
                self.keys.remove(key);
            }
        }
    }
}

fn static_field(k: &str) -> Option<&'static str> {
    [
        "service",
        "instance",
        "endpoint",
        "method",
        "query_hash",
        "query_type",
    ]
    .into_iter()
    .find(|f| *f == k)
}
