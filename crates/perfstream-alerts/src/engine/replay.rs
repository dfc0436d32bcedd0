//! Late corrections (issue 15, section 5): the journal of judged windows, [`Engine::rewind`]
//! back to the state before a corrected window, and the end of the replay that follows.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Engine, KeyState, static_field};
use crate::engine::{Evaluation, StateRow, Transition};
use crate::lifecycle::{Observation, Phase, ResolveReason};
use crate::message::message;
use crate::rows::Window;
use crate::rule::RuleId;
use crate::settings::Severity;
use crate::sla::Ctx;

/// A phase as it was before a window changed it.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    pub(super) key: String,
    pub(super) rule: RuleId,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) prev: Option<Phase>,
}

/// A judged window, with what undoes it.
#[derive(Debug)]
pub(super) struct Judged {
    pub(super) window: Window,
    /// The window judged or warmed before it.
    pub(super) prev_last: Option<Window>,
    pub(super) undo: Vec<Undo>,
}

/// A replay in progress: the windows from a rewind up to `through` are judged again.
#[derive(Debug)]
pub(super) struct Replay {
    /// The last window judged before the rewind.
    pub(super) through: Window,
    /// The phases before the rewind (what the caller has stored).
    pub(super) before: HashMap<String, KeyState>,
    /// Alert ids the replay resolved.
    pub(super) resolved: HashSet<String>,
}

/// What [`Engine::rewind`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewind {
    /// No window at or after it was judged: nothing to judge again.
    NotJudged,
    /// The engine is back at the state before the first judged window at or after it: evaluate
    /// the windows again from there (the replay ends with the last window judged before).
    Rewound,
    /// It lies before the windows the engine remembers (judged before this engine was
    /// restored, or beyond `rejudge_horizon`): it cannot be judged again.
    TooOld {
        /// Start of the oldest window that can be judged again, if any.
        oldest_us: Option<i64>,
    },
}

impl Engine {
    /// Goes back to the state before the first judged window starting at or after `start_us`
    /// (a window a late correction changed), so that the caller evaluates the windows again
    /// from there, in order, with their corrected rows (issue 15, section 5). The windows
    /// judged since keep their transitions: evaluating them again gives the same ids, which the
    /// caller's store drops as repeats, and new ones where the corrected data decides
    /// otherwise. The evaluation of the last window judged before the rewind (or of the first
    /// one after it) ends the replay: alerts that were firing before the rewind and that the
    /// replay neither keeps firing nor resolves are resolved there
    /// ([`ResolveReason::Corrected`]), and its `changes` hold every phase that differs from the
    /// phases before the rewind.
    pub fn rewind(&mut self, start_us: i64) -> Rewind {
        let Some(last) = self.last else {
            return Rewind::NotJudged;
        };
        if start_us > last.start_us {
            return Rewind::NotJudged;
        }
        let idx = self
            .journal
            .iter()
            .position(|j| j.window.start_us >= start_us);
        let usable = match idx {
            Some(0) => self.journal[0]
                .prev_last
                .is_none_or(|p| p.start_us < start_us),
            Some(_) => true,
            None => false,
        };
        let Some(idx) = idx.filter(|_| usable) else {
            return Rewind::TooOld {
                oldest_us: self
                    .journal
                    .front()
                    .map(|j| j.prev_last.map_or(i64::MIN, |p| p.start_us + 1)),
            };
        };
        let before = self.state.keys.clone();
        let entries: Vec<Judged> = self.journal.drain(idx..).collect();
        let from = entries[0].window.start_us;
        self.last = entries[0].prev_last;
        let keys = &mut self.state.keys;
        for u in entries.iter().rev().flat_map(|e| e.undo.iter().rev()) {
            let ks = keys.entry(u.key.clone()).or_default();
            if ks.labels.is_empty() {
                ks.labels = u.labels.clone();
            }
            ks.phases.retain(|(r, _)| *r != u.rule);
            if let Some(p) = &u.prev {
                ks.phases.push((u.rule, p.clone()));
            }
            if ks.phases.is_empty() {
                keys.remove(&u.key);
            }
        }
        // The history of the windows judged again is recorded again.
        self.burn.retain(|_, h| {
            while h.back().is_some_and(|p| p.start_us >= from) {
                h.pop_back();
            }
            !h.is_empty()
        });
        let st = &mut self.state;
        st.rates.retain(|_, h| {
            while h.back().is_some_and(|p| p.0 >= from) {
                h.pop_back();
            }
            !h.is_empty()
        });
        st.resources.retain(|_, h| {
            while h.back().is_some_and(|p| p.start_us >= from) {
                h.pop_back();
            }
            !h.is_empty()
        });
        let resources = &st.resources;
        st.series.retain(|k, (_, last)| {
            if *last < from {
                return true;
            }
            let points = k.strip_prefix("resource|").and_then(|k| resources.get(k));
            match points.and_then(|h| h.back()) {
                Some(p) => {
                    *last = p.start_us;
                    true
                }
                None => false,
            }
        });
        // A rewind during a replay goes further back; the stored phases are still those before
        // the first rewind.
        self.replay = Some(self.replay.take().unwrap_or(Replay {
            through: last,
            before,
            resolved: HashSet::new(),
        }));
        Rewind::Rewound
    }

    /// Whether a replay (after [`Engine::rewind`]) has not reached its last window yet.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// The end of a replay, at window `w`: resolves what the replay dropped, and reports every
    /// phase that differs from the one stored before the rewind.
    pub(super) fn finish_replay(&mut self, r: Replay, w: Window, out: &mut Evaluation) {
        let ctx = Ctx {
            rules: &self.rules,
            slas: &self.slas,
        };
        let phase_of = |keys: &HashMap<String, KeyState>, key: &str, rule: RuleId| {
            keys.get(key)
                .and_then(|k| k.phases.iter().find(|(r, _)| *r == rule))
                .map(|(_, p)| p.clone())
        };
        let mut gone: Vec<(RuleId, String, bool, String)> = Vec::new();
        for (key, ks) in &r.before {
            for (rule, phase) in &ks.phases {
                let Phase::Firing {
                    alert_id, critical, ..
                } = phase
                else {
                    continue;
                };
                let kept = matches!(
                    phase_of(&self.state.keys, key, *rule),
                    Some(Phase::Firing { alert_id: a, .. }) if &a == alert_id
                );
                if !kept && !r.resolved.contains(alert_id) {
                    gone.push((*rule, key.clone(), *critical, alert_id.clone()));
                }
            }
        }
        gone.sort();
        for (id, key, critical, alert_id) in gone {
            let labels = r.before[&key].labels.clone();
            let fields: Vec<(&'static str, &str)> = labels
                .iter()
                .filter_map(|(lk, lv)| static_field(lk).map(|f| (f, lv.as_str())))
                .collect();
            let rule = ctx.for_key(id, &fields);
            let mut all = labels.clone();
            for (k, v) in &rule.labels {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let reason = ResolveReason::Corrected;
            out.transitions.push(Transition {
                rule: id,
                key,
                alert_id,
                state: perfstream_events::AlertState::Resolved,
                severity: if critical {
                    Severity::Critical
                } else {
                    rule.severity
                },
                service: labels.get("service").cloned().unwrap_or_default(),
                message: message(id, Some(reason), &labels, &Observation::absent(), &rule),
                labels: all,
                observed_value: 0.0,
                threshold: rule.threshold,
                clear_threshold: rule.clear_threshold,
                window: w,
                reason: Some(reason),
            });
        }
        let mut pairs: HashSet<(String, RuleId)> = HashSet::new();
        for keys in [&r.before, &self.state.keys] {
            for (k, ks) in keys {
                pairs.extend(ks.phases.iter().map(|(id, _)| (k.clone(), *id)));
            }
        }
        let mut pairs: Vec<(String, RuleId)> = pairs.into_iter().collect();
        pairs.sort();
        for (key, id) in pairs {
            let now = phase_of(&self.state.keys, &key, id);
            if now == phase_of(&r.before, &key, id) {
                continue;
            }
            let labels = self
                .state
                .keys
                .get(&key)
                .or_else(|| r.before.get(&key))
                .map(|k| k.labels.clone())
                .unwrap_or_default();
            out.changes.retain(|c| !(c.rule == id && c.key == key));
            out.changes.push(StateRow {
                rule: id,
                key,
                labels,
                phase: now,
            });
        }
    }
}
