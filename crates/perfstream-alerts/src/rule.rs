//! Rule names, their built-in defaults, and the effective rule of one key (defaults, then the
//! `[alerts.rules]` patch, then matching overrides).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{AlertSettings, BurnWindow, RulePatch, Severity, Statistic};

/// The rules. The names are the `rule` of alert events and of the generator's truth file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    SlowQuery,
    EndpointSla,
    ErrorRate,
    PoolUtilization,
    PoolExhaustion,
    MemoryUtilization,
    GcPause,
    Cpu,
    CacheHitRatio,
    ConnectionLeak,
    MemoryLeak,
    Regression,
    Absent,
    ErrorBudgetBurn,
    LatencyBurn,
}

impl RuleId {
    pub const ALL: [RuleId; 15] = [
        Self::SlowQuery,
        Self::EndpointSla,
        Self::ErrorRate,
        Self::PoolUtilization,
        Self::PoolExhaustion,
        Self::MemoryUtilization,
        Self::GcPause,
        Self::Cpu,
        Self::CacheHitRatio,
        Self::ConnectionLeak,
        Self::MemoryLeak,
        Self::Regression,
        Self::Absent,
        Self::ErrorBudgetBurn,
        Self::LatencyBurn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlowQuery => "slow_query",
            Self::EndpointSla => "endpoint_sla",
            Self::ErrorRate => "error_rate",
            Self::PoolUtilization => "pool_utilization",
            Self::PoolExhaustion => "pool_exhaustion",
            Self::MemoryUtilization => "memory_utilization",
            Self::GcPause => "gc_pause",
            Self::Cpu => "cpu",
            Self::CacheHitRatio => "cache_hit_ratio",
            Self::ConnectionLeak => "connection_leak",
            Self::MemoryLeak => "memory_leak",
            Self::Regression => "regression",
            Self::Absent => "absent",
            Self::ErrorBudgetBurn => "error_budget_burn",
            Self::LatencyBurn => "latency_burn",
        }
    }

    pub fn parse(s: &str) -> Option<RuleId> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The seed's defaults (also the table in `docs/alerts.md`).
    pub fn defaults(self) -> Rule {
        let base = Rule {
            id: self,
            enabled: true,
            severity: Severity::Warning,
            threshold: 0.0,
            clear_threshold: 0.0,
            for_windows: 1,
            keep_firing_for: 0,
            no_data_windows: 3,
            labels: BTreeMap::new(),
            statistic: Statistic::P99,
            min_count: 1,
            windows: 10,
            min_r2: 0.8,
            clear_r2: 0.5,
            min_tau: 0.7,
            relative_drop: 0.3,
            clear_relative_drop: 0.15,
            max_time_to_limit: Duration::from_secs(24 * 3600),
            max_rate_growth: 0.1,
            baseline_days: 7,
            min_baseline_days: 3,
            critical_threshold: None,
            slo_target: 0.999,
            burn_windows: vec![
                BurnWindow {
                    long: Duration::from_secs(3600),
                    short: Duration::from_secs(300),
                    factor: 14.4,
                },
                BurnWindow {
                    long: Duration::from_secs(6 * 3600),
                    short: Duration::from_secs(1800),
                    factor: 6.0,
                },
            ],
        };
        match self {
            Self::SlowQuery => Rule {
                threshold: 1000.0,
                clear_threshold: 800.0,
                ..base
            },
            Self::EndpointSla => Rule {
                threshold: 500.0,
                clear_threshold: 400.0,
                statistic: Statistic::P95,
                ..base
            },
            Self::ErrorRate => Rule {
                threshold: 0.05,
                clear_threshold: 0.02,
                min_count: 100,
                for_windows: 2,
                ..base
            },
            Self::PoolUtilization => Rule {
                threshold: 0.9,
                clear_threshold: 0.8,
                ..base
            },
            Self::PoolExhaustion => Rule {
                severity: Severity::Critical,
                threshold: 0.0,
                clear_threshold: 0.0,
                ..base
            },
            Self::MemoryUtilization => Rule {
                threshold: 0.8,
                clear_threshold: 0.75,
                ..base
            },
            Self::GcPause => Rule {
                threshold: 0.1,
                clear_threshold: 0.05,
                for_windows: 2,
                ..base
            },
            Self::Cpu => Rule {
                threshold: 0.9,
                clear_threshold: 0.8,
                for_windows: 2,
                ..base
            },
            Self::CacheHitRatio => Rule {
                threshold: 0.8,
                clear_threshold: 0.85,
                min_count: 1000,
                windows: 30,
                ..base
            },
            Self::ConnectionLeak => Rule {
                threshold: 0.1,
                clear_threshold: 0.03,
                windows: 20,
                ..base
            },
            Self::MemoryLeak => Rule {
                threshold: 0.05,
                clear_threshold: 0.01,
                min_r2: 0.9,
                ..base
            },
            // Off by default: every series stops when its service is retired or scaled in.
            // Off by default: it needs an objective per endpoint (`slo_target`, overrides).
            Self::ErrorBudgetBurn => Rule {
                enabled: false,
                severity: Severity::Critical,
                threshold: 14.4,
                clear_threshold: 14.4,
                min_count: 100,
                ..base
            },
            // Off by default, like `error_budget_burn`. The objective: 99 % of requests within
            // the endpoint's SLA threshold, unless `endpoint_slas` says otherwise.
            Self::LatencyBurn => Rule {
                enabled: false,
                severity: Severity::Critical,
                threshold: 14.4,
                clear_threshold: 14.4,
                min_count: 100,
                slo_target: 0.99,
                ..base
            },
            Self::Absent => Rule {
                enabled: false,
                windows: 3,
                ..base
            },
            Self::Regression => Rule {
                threshold: 2.0,
                clear_threshold: 1.5,
                statistic: Statistic::P95,
                min_count: 20,
                for_windows: 2,
                ..base
            },
        }
    }

    /// True for rules where lower values are worse (fire under the threshold).
    pub fn fires_below(self) -> bool {
        matches!(self, Self::CacheHitRatio)
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule with every field decided, for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub enabled: bool,
    pub severity: Severity,
    pub threshold: f64,
    pub clear_threshold: f64,
    pub for_windows: u32,
    pub keep_firing_for: u32,
    pub no_data_windows: u32,
    pub labels: BTreeMap<String, String>,
    pub statistic: Statistic,
    pub min_count: u64,
    pub windows: u32,
    pub min_r2: f64,
    pub clear_r2: f64,
    pub min_tau: f64,
    pub relative_drop: f64,
    pub clear_relative_drop: f64,
    pub max_time_to_limit: Duration,
    pub max_rate_growth: f64,
    pub baseline_days: u32,
    pub min_baseline_days: u32,
    pub slo_target: f64,
    pub burn_windows: Vec<BurnWindow>,
    pub critical_threshold: Option<f64>,
}

impl Rule {
    pub fn apply(&mut self, p: &RulePatch) {
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = &p.$f { self.$f = v.clone(); })* };
        }
        set!(
            enabled,
            severity,
            threshold,
            clear_threshold,
            for_windows,
            keep_firing_for,
            no_data_windows,
            labels,
            statistic,
            min_count,
            windows,
            min_r2,
            clear_r2,
            min_tau,
            relative_drop,
            clear_relative_drop,
            max_time_to_limit,
            max_rate_growth,
            baseline_days,
            min_baseline_days,
            slo_target,
            burn_windows
        );
        if let Some(c) = p.critical_threshold {
            self.critical_threshold = Some(c);
        }
        self.for_windows = self.for_windows.max(1);
        self.windows = self.windows.max(3);
    }
}

/// The effective rules: the base rule per id, and the overrides to check per key.
#[derive(Debug, Clone)]
pub struct RuleSet {
    base: Vec<Rule>,
    overrides: Vec<crate::settings::Override>,
}

impl RuleSet {
    pub fn new(s: &AlertSettings) -> Result<RuleSet, crate::AlertError> {
        let mut base = Vec::with_capacity(RuleId::ALL.len());
        for id in RuleId::ALL {
            let mut r = id.defaults();
            r.apply(s.rules.get(id));
            check(&r)?;
            base.push(r);
        }
        for o in &s.overrides {
            let mut r = base[o.rule as usize].clone();
            r.apply(&o.set);
            check(&r)?;
        }
        Ok(RuleSet {
            base,
            overrides: s.overrides.clone(),
        })
    }

    /// The base rule of `id` (defaults plus `[alerts.rules]`), before overrides.
    pub fn base(&self, id: RuleId) -> &Rule {
        &self.base[id as usize]
    }

    /// The rule of `id` for a key with `labels`: borrowed when no override matches.
    pub fn for_key(&self, id: RuleId, labels: &[(&str, &str)]) -> std::borrow::Cow<'_, Rule> {
        let mut out = std::borrow::Cow::Borrowed(&self.base[id as usize]);
        for o in &self.overrides {
            if o.rule == id
                && o.matches
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            {
                out.to_mut().apply(&o.set);
            }
        }
        out
    }

    /// Whether rule `id` is enabled for some key (its base rule, or an override turning it on).
    pub fn enabled_anywhere(&self, id: RuleId) -> bool {
        self.base(id).enabled
            || self
                .overrides
                .iter()
                .any(|o| o.rule == id && o.set.enabled == Some(true))
    }

    /// Largest trend or baseline history any rule needs, in windows.
    pub fn history_windows(&self) -> usize {
        [
            RuleId::ConnectionLeak,
            RuleId::MemoryLeak,
            RuleId::CacheHitRatio,
            RuleId::Absent,
        ]
        .iter()
        .map(|id| self.base(*id).windows as usize)
        .chain(
            self.overrides
                .iter()
                .filter_map(|o| o.set.windows.map(|w| w as usize)),
        )
        .max()
        .unwrap_or(10)
            + 1
    }
}

fn check(r: &Rule) -> Result<(), crate::AlertError> {
    let bad = |why: &str| crate::AlertError::InvalidRule {
        rule: r.id.as_str(),
        reason: why.into(),
    };
    if !r.threshold.is_finite() || !r.clear_threshold.is_finite() {
        return Err(bad("thresholds must be finite"));
    }
    let hysteresis_ok = if r.id.fires_below() {
        r.clear_threshold >= r.threshold
    } else {
        r.clear_threshold <= r.threshold
    };
    if !hysteresis_ok {
        return Err(bad(
            "clear_threshold must be on the healthy side of threshold",
        ));
    }
    if let Some(c) = r.critical_threshold {
        let beyond = if r.id.fires_below() {
            c <= r.threshold
        } else {
            c >= r.threshold
        };
        if !c.is_finite() || !beyond {
            return Err(bad(
                "critical_threshold must be finite and at or beyond threshold",
            ));
        }
    }
    if !(r.slo_target > 0.0 && r.slo_target < 1.0) {
        return Err(bad("slo_target must be between 0 and 1 (exclusive)"));
    }
    if r.burn_windows
        .iter()
        .any(|b| b.short.is_zero() || b.short > b.long || !b.factor.is_finite() || b.factor <= 0.0)
    {
        return Err(bad(
            "each burn window needs 0 < short <= long and a positive factor",
        ));
    }
    if r.clear_r2 > r.min_r2 {
        return Err(bad("clear_r2 must not exceed min_r2"));
    }
    if r.clear_relative_drop > r.relative_drop {
        return Err(bad("clear_relative_drop must not exceed relative_drop"));
    }
    Ok(())
}

impl RuleSet {
    /// The longest time of history the burn-rate rule needs (its longest `long` window, over
    /// the base rule and every override, of both burn-rate rules), zero when they are disabled
    /// everywhere.
    pub fn history_span(&self) -> Duration {
        let mut rules = Vec::new();
        for id in [RuleId::ErrorBudgetBurn, RuleId::LatencyBurn] {
            let base = self.base(id);
            rules.push(base.clone());
            for o in self.overrides.iter().filter(|o| o.rule == id) {
                let mut r = base.clone();
                r.apply(&o.set);
                rules.push(r);
            }
        }
        rules
            .iter()
            .filter(|r| r.enabled)
            .flat_map(|r| r.burn_windows.iter().map(|b| b.long))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}
