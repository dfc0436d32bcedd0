//! Endpoint SLAs (issue 14, section 4): one objective per endpoint, from the `endpoint_slas`
//! table, which the caller reads and hands to [`crate::Engine::set_slas`]. An endpoint without a
//! row keeps the config's `endpoint_sla` rule (statistic, threshold) and the `latency_burn`
//! rule's `slo_target`.

use std::collections::HashMap;

use crate::rule::{Rule, RuleId, RuleSet};
use crate::settings::Statistic;

/// One endpoint's objective: `statistic` of its response time at or under `threshold_ms` per
/// window (rule `endpoint_sla`), and `slo_target` of its requests within `threshold_ms` (rule
/// `latency_burn`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sla {
    pub statistic: Statistic,
    pub threshold_ms: f64,
    pub slo_target: f64,
}

/// SLAs by (service, endpoint); every method of an endpoint shares its row.
pub type SlaTable = HashMap<(String, String), Sla>;

impl Sla {
    /// `rule` (of `id`, already patched by config and overrides) with this SLA: for
    /// `endpoint_sla` the statistic and threshold, the clear and critical thresholds kept in
    /// the same proportion to the threshold as configured; for `latency_burn` the objective.
    pub fn apply(&self, rule: &mut Rule) {
        match rule.id {
            RuleId::EndpointSla => {
                let old = rule.threshold;
                let scale = |v: f64| {
                    if old > 0.0 {
                        v / old * self.threshold_ms
                    } else {
                        self.threshold_ms
                    }
                };
                rule.statistic = self.statistic;
                rule.clear_threshold = scale(rule.clear_threshold);
                rule.critical_threshold = rule.critical_threshold.map(scale);
                rule.threshold = self.threshold_ms;
            }
            RuleId::LatencyBurn => rule.slo_target = self.slo_target,
            _ => {}
        }
    }

    /// Whether the values are usable (a bad row is ignored by the caller, with a log line).
    pub fn is_valid(&self) -> bool {
        self.threshold_ms.is_finite()
            && self.threshold_ms > 0.0
            && self.slo_target > 0.0
            && self.slo_target < 1.0
    }
}

impl Statistic {
    /// The name used in `endpoint_slas.statistic` and the config (`p95`, `avg`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::P50 => "p50",
            Statistic::P90 => "p90",
            Statistic::P95 => "p95",
            Statistic::P99 => "p99",
            Statistic::P999 => "p999",
            Statistic::Max => "max",
            Statistic::Avg => "avg",
        }
    }

    pub fn parse(s: &str) -> Option<Statistic> {
        [
            Statistic::P50,
            Statistic::P90,
            Statistic::P95,
            Statistic::P99,
            Statistic::P999,
            Statistic::Max,
            Statistic::Avg,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The rules with the endpoint SLAs applied: what every judgement asks for its rule.
pub(crate) struct Ctx<'a> {
    pub(crate) rules: &'a RuleSet,
    pub(crate) slas: &'a SlaTable,
}

impl Ctx<'_> {
    /// The rule of `id` for a key: config defaults, `[alerts.rules]`, overrides, then, for
    /// `endpoint_sla` and `latency_burn`, the endpoint's row of `endpoint_slas`.
    pub(crate) fn for_key(
        &self,
        id: RuleId,
        fields: &[(&str, &str)],
    ) -> std::borrow::Cow<'_, Rule> {
        let mut rule = self.rules.for_key(id, fields);
        if matches!(id, RuleId::EndpointSla | RuleId::LatencyBurn)
            && let Some(sla) = self.sla(fields)
        {
            sla.apply(rule.to_mut());
        }
        rule
    }

    fn sla(&self, fields: &[(&str, &str)]) -> Option<&Sla> {
        if self.slas.is_empty() {
            return None;
        }
        let get = |k: &str| fields.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
        let (service, endpoint) = (get("service")?, get("endpoint")?);
        self.slas.get(&(service.to_string(), endpoint.to_string()))
    }

    /// The endpoint's SLA threshold, µs: its `endpoint_slas` row, else the `endpoint_sla`
    /// rule's threshold for the key (config and overrides).
    pub(crate) fn sla_threshold_us(&self, fields: &[(&str, &str)]) -> i64 {
        (self.for_key(RuleId::EndpointSla, fields).threshold * 1000.0).round() as i64
    }
}
