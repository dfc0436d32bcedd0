//! Human messages of transitions: what, where, the figure and the threshold.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::lifecycle::{Detail, Observation, ResolveReason};
use crate::rule::{Rule, RuleId};

fn target(labels: &BTreeMap<String, String>) -> String {
    let g = |k: &str| labels.get(k).map(String::as_str).unwrap_or("?");
    if labels.contains_key("query_hash") {
        format!(
            "query {} ({}) of {}",
            g("query_hash"),
            g("query_type"),
            g("service")
        )
    } else if labels.contains_key("endpoint") {
        format!("{} {} of {}", g("method"), g("endpoint"), g("service"))
    } else {
        format!("{} instance {}", g("service"), g("instance"))
    }
}

/// An objective as a percentage with the digits it needs (99 %, 99.9 %, 99.95 %).
fn target_pct(v: f64) -> String {
    let p = v * 100.0;
    let mut t = format!("{p:.3}");
    while t.ends_with('0') {
        t.pop();
    }
    if t.ends_with('.') {
        t.pop();
    }
    format!("{t} %")
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The message of a transition (`reason` `None`: firing; else resolved, and why).
pub fn message(
    id: RuleId,
    reason: Option<ResolveReason>,
    labels: &BTreeMap<String, String>,
    o: &Observation,
    r: &Rule,
) -> String {
    let fired = reason.is_none();
    let who = target(labels);
    let mut m = String::new();
    match reason {
        Some(ResolveReason::NoData) => {
            let _ = write!(m, "{id} resolved for {who}: no data in the window");
            return m;
        }
        Some(ResolveReason::Corrected) => {
            let _ = write!(
                m,
                "{id} resolved for {who}: late data corrected the windows it was judged on, and the corrected data does not keep it firing"
            );
            return m;
        }
        Some(ResolveReason::RuleDisabled) => {
            let _ = write!(m, "{id} resolved for {who}: the rule was disabled");
            return m;
        }
        _ => {}
    }
    if matches!(id, RuleId::ErrorBudgetBurn | RuleId::LatencyBurn) {
        let (factor, exact, threshold_ms) = match o.detail {
            Detail::Burn {
                factor,
                exact,
                threshold_ms,
            } => (factor, exact, threshold_ms),
            _ => (r.threshold, true, None),
        };
        let objective = match threshold_ms {
            Some(t) => format!(
                "latency budget of the {} within {t:.0} ms objective",
                target_pct(r.slo_target)
            ),
            None => format!("error budget of the {} objective", target_pct(r.slo_target)),
        };
        if fired {
            let _ = write!(
                m,
                "{id} firing for {who}: {objective} burning at {:.1}x (pair threshold {factor:.1}x)",
                o.value
            );
        } else {
            let _ = write!(
                m,
                "{id} resolved for {who}: burn rate {:.1}x, under {factor:.1}x",
                o.value
            );
        }
        if threshold_ms.is_some() {
            m.push_str(if exact {
                "; exact (the threshold is a histogram bucket edge)"
            } else {
                "; approximate (the threshold falls inside a histogram bucket, whose requests count as over it)"
            });
        }
        return m;
    }
    if id == RuleId::Absent {
        if fired {
            let _ = write!(
                m,
                "{id} firing for {who}: no samples for {:.0} windows",
                o.value
            );
        } else {
            let _ = write!(m, "{id} resolved for {who}: reporting again");
        }
        return m;
    }
    let stat = format!("{:?}", r.statistic).to_lowercase();
    let (figure, limit, clear) = match id {
        RuleId::SlowQuery | RuleId::EndpointSla => (
            format!("{stat} {:.1} ms", o.value),
            format!("{:.0} ms", r.threshold),
            format!("{:.0} ms", r.clear_threshold),
        ),
        RuleId::Regression => {
            let base = match o.detail {
                Detail::Baseline { baseline } => format!(" (baseline {baseline:.1} ms)"),
                _ => String::new(),
            };
            (
                format!("{stat} at {:.2}x its baseline{base}", o.value),
                format!("{:.2}x", r.threshold),
                format!("{:.2}x", r.clear_threshold),
            )
        }
        RuleId::PoolExhaustion => (
            format!("{:.0} waiters", o.value),
            format!("{:.0} waiters at 100 % pool use", r.threshold),
            format!("{:.0}", r.clear_threshold),
        ),
        RuleId::CacheHitRatio => {
            let base = match o.detail {
                Detail::Baseline { baseline } => format!(", baseline {}", pct(baseline)),
                _ => String::new(),
            };
            (
                format!("hit ratio {}{base}", pct(o.value)),
                format!(
                    "{} or {:.0} % under baseline",
                    pct(r.threshold),
                    r.relative_drop * 100.0
                ),
                pct(r.clear_threshold),
            )
        }
        RuleId::ConnectionLeak | RuleId::MemoryLeak => {
            let what = if id == RuleId::MemoryLeak {
                "memory"
            } else {
                "pool use"
            };
            let mut f = format!("{what} rose {} of its limit over the fit", pct(o.value));
            if let Detail::Trend {
                slope_per_min,
                r2,
                tau,
                level,
                time_to_limit_s,
            } = o.detail
            {
                let _ = write!(
                    f,
                    " ({}/min, R² {r2:.2}, tau {tau:.2}), now at {}",
                    pct(slope_per_min),
                    pct(level)
                );
                if let Some(t) = time_to_limit_s.filter(|_| fired) {
                    let _ = write!(f, ", reaches the limit in about {}", duration(t));
                }
            }
            (f, pct(r.threshold), pct(r.clear_threshold))
        }
        _ => (pct(o.value), pct(r.threshold), pct(r.clear_threshold)),
    };
    if fired {
        let side = if id.fires_below() { "under" } else { "over" };
        let _ = write!(m, "{id} firing for {who}: {figure} {side} {limit}");
    } else {
        let side = if id.fires_below() { "above" } else { "under" };
        let _ = write!(m, "{id} resolved for {who}: {figure}, back {side} {clear}");
    }
    m
}
