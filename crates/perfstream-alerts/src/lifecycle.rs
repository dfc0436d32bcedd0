//! The lifecycle of one (rule, key): inactive -> pending -> firing -> resolved (inactive again).
//!
//! Transitions are decided from one observation per window, in window order, so replaying the
//! same windows from the same stored state yields the same transitions and the same ids.

use std::collections::BTreeMap;

use crate::rows::Window;
use crate::rule::{Rule, RuleId};

/// What a rule saw for one key in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The fire condition holds.
    pub breach: bool,
    /// The clear condition holds (past the clear threshold).
    pub clear: bool,
    /// No row, or too few events to judge: neither breach nor clear.
    pub no_data: bool,
    /// The figure compared, in the rule's unit.
    pub value: f64,
    /// Figures for the message.
    pub detail: Detail,
}

impl Observation {
    /// No row, or too few events to judge. A gap of a window or two (samples moved to other
    /// windows by their event time) changes nothing; a series silent for more than the rule's
    /// `no_data_windows` resolves (or drops its pending state) instead of firing forever.
    pub fn absent() -> Observation {
        Observation {
            breach: false,
            clear: false,
            no_data: true,
            value: 0.0,
            detail: Detail::NoData,
        }
    }
}

/// Extra figures some rules put in their message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detail {
    None,
    NoData,
    /// Trend rules: slope per minute (ratio of the limit), R², Kendall tau, fitted current
    /// level, predicted seconds to the limit (if rising).
    Trend {
        slope_per_min: f64,
        r2: f64,
        tau: f64,
        level: f64,
        time_to_limit_s: Option<f64>,
    },
    /// Baseline rules: the baseline value.
    Baseline {
        baseline: f64,
    },
    /// Burn rate: the factor of the pair the value belongs to; for the latency budget, the
    /// SLA threshold and whether the share over it is exact (the threshold is a bucket edge).
    Burn {
        factor: f64,
        exact: bool,
        threshold_ms: Option<f64>,
    },
}

/// Where a (rule, key) stands between windows. Inactive keys have no state.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Breaching for `count` consecutive windows with data, the first starting at `since_us`;
    /// `missing` consecutive windows without data since the last one with data.
    Pending {
        count: u32,
        since_us: i64,
        missing: u32,
    },
    /// Firing since the window starting at `since_us`; `clear_count` consecutive clear windows
    /// seen (resolves when it exceeds `keep_firing_for`), `missing` consecutive windows without
    /// data (resolves when it exceeds `no_data_windows`); `critical` once a window passed the
    /// rule's `critical_threshold` (escalation is one way: the episode stays critical).
    Firing {
        alert_id: String,
        since_us: i64,
        clear_count: u32,
        missing: u32,
        critical: bool,
    },
}

/// A transition decided by [`step`], with the alert's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    Fired(String),
    /// A firing alert passed its `critical_threshold`: the same alert, now critical.
    Escalated(String),
    Resolved(String, ResolveReason),
}

/// Whether a window with data is past the rule's critical threshold (issue 15, section 2).
/// Never for a rule that is critical already: there is nothing to escalate to.
pub fn is_critical(rule: &Rule, obs: &Observation) -> bool {
    match rule.critical_threshold {
        Some(c) if rule.severity != crate::Severity::Critical && !obs.no_data => {
            obs.value.is_finite()
                && if rule.id.fires_below() {
                    obs.value < c
                } else {
                    obs.value > c
                }
        }
        _ => false,
    }
}

/// Why an alert resolved (issue 15): a no-data resolve is not a recovery, and its
/// `observed_value` means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResolveReason {
    /// The figure came back past the clear threshold (for `absent`: the series reports again).
    Cleared,
    /// More than `no_data_windows` windows without data.
    NoData,
    /// The rule was disabled (config change) while the alert fired.
    RuleDisabled,
    /// A late correction changed a window already judged, and judging the windows again from
    /// there does not keep this alert firing (issue 15, section 5).
    Corrected,
}

impl ResolveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cleared => "cleared",
            Self::NoData => "no_data",
            Self::RuleDisabled => "rule_disabled",
            Self::Corrected => "corrected",
        }
    }
}

/// The step of a (rule, key) whose rule is now disabled: a firing alert resolves
/// ([`ResolveReason::RuleDisabled`]), a pending one is dropped.
pub fn disabled(phase: Option<&Phase>) -> (Option<Phase>, Option<Edge>) {
    match phase {
        Some(Phase::Firing { alert_id, .. }) => (
            None,
            Some(Edge::Resolved(
                alert_id.clone(),
                ResolveReason::RuleDisabled,
            )),
        ),
        _ => (None, None),
    }
}

/// One window's step of the state machine.
pub fn step(
    phase: Option<&Phase>,
    obs: &Observation,
    rule: &Rule,
    window: Window,
    alert_id: impl FnOnce() -> String,
) -> (Option<Phase>, Option<Edge>) {
    if obs.no_data {
        return match phase {
            None => (None, None),
            Some(Phase::Pending {
                count,
                since_us,
                missing,
            }) => {
                if missing + 1 > rule.no_data_windows {
                    (None, None)
                } else {
                    (
                        Some(Phase::Pending {
                            count: *count,
                            since_us: *since_us,
                            missing: missing + 1,
                        }),
                        None,
                    )
                }
            }
            Some(Phase::Firing {
                alert_id,
                since_us,
                clear_count,
                missing,
                critical,
            }) => {
                if missing + 1 > rule.no_data_windows {
                    (
                        None,
                        Some(Edge::Resolved(alert_id.clone(), ResolveReason::NoData)),
                    )
                } else {
                    let p = Phase::Firing {
                        alert_id: alert_id.clone(),
                        since_us: *since_us,
                        clear_count: *clear_count,
                        missing: missing + 1,
                        critical: *critical,
                    };
                    (Some(p), None)
                }
            }
        };
    }
    match phase {
        None | Some(Phase::Pending { .. }) if !obs.breach => (None, None),
        None | Some(Phase::Pending { .. }) => {
            let (count, since_us) = match phase {
                Some(Phase::Pending {
                    count, since_us, ..
                }) => (count + 1, *since_us),
                _ => (1, window.start_us),
            };
            if count >= rule.for_windows {
                let id = alert_id();
                let p = Phase::Firing {
                    alert_id: id.clone(),
                    since_us: window.start_us,
                    clear_count: 0,
                    missing: 0,
                    critical: is_critical(rule, obs),
                };
                (Some(p), Some(Edge::Fired(id)))
            } else {
                (
                    Some(Phase::Pending {
                        count,
                        since_us,
                        missing: 0,
                    }),
                    None,
                )
            }
        }
        Some(Phase::Firing {
            alert_id,
            since_us,
            clear_count,
            critical,
            ..
        }) => {
            let c = if obs.clear { clear_count + 1 } else { 0 };
            if c > rule.keep_firing_for {
                (
                    None,
                    Some(Edge::Resolved(alert_id.clone(), ResolveReason::Cleared)),
                )
            } else {
                let escalate = !critical && is_critical(rule, obs);
                let p = Phase::Firing {
                    alert_id: alert_id.clone(),
                    since_us: *since_us,
                    clear_count: c,
                    missing: 0,
                    critical: *critical || escalate,
                };
                (Some(p), escalate.then(|| Edge::Escalated(alert_id.clone())))
            }
        }
    }
}

/// The deterministic id of an alert: FNV-1a (128 bit) of the rule, the key's labels (sorted)
/// and the start of the window in which it fired, as 32 hex digits. The firing and the
/// resolved event of one episode share it; re-evaluating the same windows gives the same id.
pub fn alert_id(
    rule: RuleId,
    labels: &BTreeMap<String, String>,
    fired_window_start_us: i64,
) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u128::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(rule.as_str().as_bytes());
    for (k, v) in labels {
        eat(&[0]);
        eat(k.as_bytes());
        eat(&[1]);
        eat(v.as_bytes());
    }
    eat(&[2]);
    eat(&fired_window_start_us.to_be_bytes());
    format!("{h:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(breach: bool, clear: bool) -> Observation {
        Observation {
            breach,
            clear,
            no_data: false,
            value: 1.0,
            detail: Detail::None,
        }
    }

    fn run(rule: &Rule, seq: &[(bool, bool)]) -> Vec<(usize, bool)> {
        let mut phase = None;
        let mut out = Vec::new();
        for (i, (b, c)) in seq.iter().enumerate() {
            let w = Window {
                start_us: i as i64 * 60_000_000,
                end_us: (i as i64 + 1) * 60_000_000,
            };
            let (p, e) = step(phase.as_ref(), &obs(*b, *c), rule, w, || format!("id{i}"));
            phase = p;
            if let Some(e) = e {
                out.push((i, matches!(e, Edge::Fired(_))));
            }
        }
        out
    }

    #[test]
    fn for_and_keep_firing_for() {
        let mut r = RuleId::SlowQuery.defaults();
        r.for_windows = 3;
        r.keep_firing_for = 1;
        let b = (true, false);
        let c = (false, true);
        let between = (false, false);
        // Two breaches then a miss: no fire. Three: fires at the third.
        assert_eq!(run(&r, &[b, b, c, b, b, b]), vec![(5, true)]);
        // Clear once (kept), between resets the clear count, then two clears resolve.
        assert_eq!(
            run(&r, &[b, b, b, c, between, c, c, c]),
            vec![(2, true), (6, false)]
        );
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let mut l = BTreeMap::new();
        l.insert("service".to_string(), "a".to_string());
        let a = alert_id(RuleId::SlowQuery, &l, 60);
        assert_eq!(a, alert_id(RuleId::SlowQuery, &l, 60));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id(RuleId::SlowQuery, &l, 120));
        assert_ne!(a, alert_id(RuleId::Cpu, &l, 60));
        l.insert("instance".to_string(), "x".to_string());
        assert_ne!(a, alert_id(RuleId::SlowQuery, &l, 60));
    }
}
