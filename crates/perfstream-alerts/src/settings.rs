//! The `[alerts]` section of the binary's config: evaluator timing, the rules, and overrides.
//!
//! Rules are given as *patches* over built-in defaults (`RuleId::defaults`, listed in
//! `docs/alerts.md`): a field left out keeps its default, so `[alerts.rules.slow_query]
//! threshold = 2000` changes only the threshold. Overrides patch a rule again for the keys whose
//! labels match, later overrides winning.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rule::RuleId;

/// Alerting settings. Every field has a default; an empty `[alerts]` section runs the seed's
/// rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Run the alert evaluator (and its outbox relay) in `perfstream run`. Default true.
    pub enabled: bool,
    /// Evaluate at least this often even when no flush notification arrives (a missed
    /// `NOTIFY`, or windows closed by idle partitions). Default `5s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a stand-by evaluator waits between attempts to take the advisory lock. Default
    /// `1s`: the hand-over delay after the active evaluator dies.
    #[serde(with = "humantime_serde")]
    pub lock_retry: Duration,
    /// Where evaluation starts when no window was evaluated yet: this far before the newest
    /// complete window. Default `15m` (long enough to warm the trend and baseline rules).
    #[serde(with = "humantime_serde")]
    pub start_lookback: Duration,
    /// Most outbox rows the relay publishes per round. Default 500.
    pub relay_batch: u32,
    /// How far back a late correction can make the evaluator judge windows again (issue 15,
    /// section 5): set it to at least `window.correction_horizon`. Default `1h` (that
    /// horizon's default). The evaluator keeps the alert phases and rule history of this span.
    #[serde(with = "humantime_serde")]
    pub rejudge_horizon: Duration,
    /// The rules, each a patch over its defaults.
    pub rules: Rules,
    /// Per-service, per-endpoint (or any label) changes to a rule, applied in order.
    pub overrides: Vec<Override>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            interval: Duration::from_secs(5),
            lock_retry: Duration::from_secs(1),
            start_lookback: Duration::from_secs(15 * 60),
            relay_batch: 500,
            rejudge_horizon: Duration::from_secs(3600),
            rules: Rules::default(),
            overrides: Vec::new(),
        }
    }
}

/// One patch per rule; see `docs/alerts.md` for each rule's defaults and units.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// A query's p99 (`statistic`) over `threshold` ms. Default 1000 ms, clears at 800 ms.
    pub slow_query: RulePatch,
    /// An endpoint's p95 over `threshold` ms: the default SLA of endpoints without a row in
    /// `endpoint_slas` (a row sets the statistic and threshold). Default 500 ms, clears at 400 ms.
    pub endpoint_sla: RulePatch,
    /// An endpoint's 5xx share over `threshold` with at least `min_count` requests. Default 5 %.
    pub error_rate: RulePatch,
    /// Mean pool utilisation (active / max) over `threshold`. Default 0.9, clears at 0.8.
    pub pool_utilization: RulePatch,
    /// Waiters over `threshold` (0) while the pool is at 100 %. Critical.
    pub pool_exhaustion: RulePatch,
    /// Mean memory utilisation over `threshold` of the limit. Default 0.8, clears at 0.75.
    pub memory_utilization: RulePatch,
    /// GC pause time as a share of wall time over `threshold`. Default 0.1.
    pub gc_pause: RulePatch,
    /// Mean CPU utilisation over `threshold`. Default 0.9.
    pub cpu: RulePatch,
    /// Cache hit ratio under `threshold` (0.8), or `relative_drop` (0.3) under its median of the
    /// previous `windows` windows.
    pub cache_hit_ratio: RulePatch,
    /// Pool utilisation rising by more than `threshold` (0.1) over `windows` (20) windows while the
    /// service's request rate is flat or falling.
    pub connection_leak: RulePatch,
    /// Memory utilisation rising by more than `threshold` (0.05) over `windows` windows, a good
    /// linear fit, and the limit reached within `max_time_to_limit`.
    pub memory_leak: RulePatch,
    /// An endpoint's or query's p95 over `threshold` (2) times its baseline: the median of the
    /// same window over the previous `baseline_days` (7) days.
    pub regression: RulePatch,
    /// An instance (service, instance of the resource samples) that was reporting has had no
    /// sample for `windows` (3) complete windows; resolves when it reports again. Off by
    /// default (`enabled = true` to use it).
    pub absent: RulePatch,
    /// Multi-window, multi-burn-rate alert on an endpoint's error budget (5xx / requests
    /// against `slo_target`): fires when both windows of any `burn_windows` pair burn faster
    /// than its factor. Off by default.
    pub error_budget_burn: RulePatch,
    /// The latency counterpart of `error_budget_burn`: the share of an endpoint's requests over
    /// its SLA threshold (`endpoint_slas`, else the `endpoint_sla` rule's threshold) against its
    /// `slo_target` (`endpoint_slas.slo_target`, else this rule's), from the window histograms.
    /// Off by default.
    pub latency_burn: RulePatch,
}

impl Rules {
    pub fn get(&self, id: RuleId) -> &RulePatch {
        match id {
            RuleId::SlowQuery => &self.slow_query,
            RuleId::EndpointSla => &self.endpoint_sla,
            RuleId::ErrorRate => &self.error_rate,
            RuleId::PoolUtilization => &self.pool_utilization,
            RuleId::PoolExhaustion => &self.pool_exhaustion,
            RuleId::MemoryUtilization => &self.memory_utilization,
            RuleId::GcPause => &self.gc_pause,
            RuleId::Cpu => &self.cpu,
            RuleId::CacheHitRatio => &self.cache_hit_ratio,
            RuleId::ConnectionLeak => &self.connection_leak,
            RuleId::MemoryLeak => &self.memory_leak,
            RuleId::Regression => &self.regression,
            RuleId::Absent => &self.absent,
            RuleId::ErrorBudgetBurn => &self.error_budget_burn,
            RuleId::LatencyBurn => &self.latency_burn,
        }
    }
}

/// Severity of a rule's alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn to_event(self) -> perfstream_events::Severity {
        match self {
            Severity::Info => perfstream_events::Severity::Info,
            Severity::Warning => perfstream_events::Severity::Warning,
            Severity::Critical => perfstream_events::Severity::Critical,
        }
    }
}

/// Which latency figure of a window a latency rule compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    /// The mean.
    Avg,
}

/// Changes to a rule; a field left out keeps the value below it (the rule's default, then
/// `[alerts.rules.<rule>]`, then earlier overrides). Units are the rule's (see `docs/alerts.md`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulePatch {
    /// Evaluate the rule at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Fire threshold, in the rule's unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// A second, critical level beyond `threshold` (e.g. memory 0.8 warning, 0.9 critical): a
    /// firing alert whose figure passes it becomes critical (one more `firing` event, same
    /// alert id, severity `critical`) and stays critical until it resolves. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_threshold: Option<f64>,
    /// Clear threshold (hysteresis): a firing alert clears only past this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_threshold: Option<f64>,
    /// Consecutive breaching windows before the alert fires (1 = the first one).
    #[serde(skip_serializing_if = "Option::is_none", rename = "for")]
    pub for_windows: Option<u32>,
    /// Clear windows an alert stays firing before it resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<u32>,
    /// Windows without data (no row, or under `min_count`) a firing or pending key survives;
    /// one more resolves it (or drops the pending state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_data_windows: Option<u32>,
    /// Extra labels put on the rule's alerts (e.g. `team = "payments"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Latency rules: the figure compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<Statistic>,
    /// Least events (calls, requests, cache lookups) a window needs to be judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u64>,
    /// Trend rules: windows in the fit; cache rule: windows in the baseline median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<u32>,
    /// Trend rules: least R² of the least-squares fit to fire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_r2: Option<f64>,
    /// Trend rules: R² under which a firing trend clears.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_r2: Option<f64>,
    /// Trend rules: least Kendall rank correlation (monotonic rise; rejects steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_tau: Option<f64>,
    /// Cache rule: relative drop under the baseline that fires (0.3 = 30 % under).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_drop: Option<f64>,
    /// Cache rule: relative drop a firing alert must get back above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_relative_drop: Option<f64>,
    /// Memory leak: fire only when the fit reaches the limit within this time.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    pub max_time_to_limit: Option<Duration>,
    /// Connection leak: largest relative growth of the service's request rate over the fit
    /// that still counts as flat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rate_growth: Option<f64>,
    /// Regression: days of history in the baseline median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_days: Option<u32>,
    /// Regression: least days with a row before a baseline exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_baseline_days: Option<u32>,
    /// Burn rate: the availability objective (share of requests without a 5xx), e.g. 0.999;
    /// the error budget is `1 - slo_target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo_target: Option<f64>,
    /// Burn rate: the (long, short, factor) window pairs; default 1h/5m at 14.4x and 6h/30m at
    /// 6x (Google SRE workbook, chapter 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burn_windows: Option<Vec<BurnWindow>>,
}

/// One pair of a multi-window burn-rate rule: fires when the error budget burns at least
/// `factor` times as fast as the objective allows over both `long` and `short`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BurnWindow {
    #[serde(with = "humantime_serde")]
    pub long: Duration,
    #[serde(with = "humantime_serde")]
    pub short: Duration,
    pub factor: f64,
}

/// A rule change for the keys whose labels match.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The rule changed.
    pub rule: RuleId,
    /// Labels the key must have, e.g. `{ service = "checkout", endpoint = "/pay" }`. Empty
    /// matches every key.
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, String>,
    /// The changes.
    pub set: RulePatch,
}
