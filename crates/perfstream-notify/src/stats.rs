//! Delivery telemetry: per-target counters and the backlog, updated once per round and read by
//! `/metrics` at scrape time through [`NotifyStats::collector`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One target's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetStats {
    /// Transitions the target accepted (2xx).
    pub delivered: u64,
    /// Attempts that failed (connection error, timeout, non-2xx); each is retried.
    pub failed_attempts: u64,
    /// Alertmanager: firing alerts sent again to keep them active.
    pub resent: u64,
    /// Deliveries waiting (from `alert_deliveries`, as of the last round).
    pub pending: i64,
    /// Age of the oldest waiting delivery, seconds (0 when none).
    pub oldest_pending_seconds: f64,
}

/// Shared between the notifier (writes) and the metrics endpoint (reads).
#[derive(Debug, Clone, Default)]
pub struct NotifyStats {
    inner: Arc<Mutex<BTreeMap<String, TargetStats>>>,
}

impl NotifyStats {
    /// Figures for `targets`, all zero: their series are in `/metrics` from the start (a
    /// target that never delivered shows 0 rather than nothing).
    pub fn for_targets<'a>(targets: impl IntoIterator<Item = &'a str>) -> NotifyStats {
        let stats = NotifyStats::default();
        for t in targets {
            stats.update(t, |_| {});
        }
        stats
    }

    /// A copy of every target's figures.
    pub fn snapshot(&self) -> BTreeMap<String, TargetStats> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub(crate) fn update(&self, target: &str, f: impl FnOnce(&mut TargetStats)) {
        if let Ok(mut m) = self.inner.lock() {
            f(m.entry(target.to_string()).or_default());
        }
    }

    /// A Prometheus collector reading these figures at scrape time.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(StatsCollector(self.clone()))
    }
}

#[derive(Debug)]
struct StatsCollector(NotifyStats);

/// Name, help, type, and the figure.
type Family = (
    &'static str,
    &'static str,
    MetricType,
    fn(&TargetStats) -> f64,
);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.0.snapshot();
        if snap.is_empty() {
            return Ok(());
        }
        let families: [Family; 5] = [
            (
                "perfstream_alert_notifications_delivered",
                "Alert transitions a notification target accepted.",
                MetricType::Counter,
                |s| s.delivered as f64,
            ),
            (
                "perfstream_alert_notification_failures",
                "Failed delivery attempts (retried with backoff).",
                MetricType::Counter,
                |s| s.failed_attempts as f64,
            ),
            (
                "perfstream_alert_notifications_resent",
                "Firing alerts re-sent to Alertmanager to keep them active.",
                MetricType::Counter,
                |s| s.resent as f64,
            ),
            (
                "perfstream_alert_notifications_pending",
                "Deliveries waiting for their target.",
                MetricType::Gauge,
                |s| s.pending as f64,
            ),
            (
                "perfstream_alert_notification_oldest_pending_seconds",
                "Age of the oldest delivery waiting for its target.",
                MetricType::Gauge,
                |s| s.oldest_pending_seconds,
            ),
        ];
        for (name, help, kind, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (target, s) in &snap {
                let labels = [("target", target.as_str())];
                let m = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(s) as u64).encode(m)?,
                    _ => ConstGauge::new(value(s)).encode(m)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn figures_are_labelled_by_target() {
        let stats = NotifyStats::default();
        stats.update("am", |s| {
            s.delivered = 3;
            s.pending = 2;
        });
        let mut r = Registry::default();
        r.register_collector(stats.collector());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("perfstream_alert_notifications_delivered_total{target=\"am\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("perfstream_alert_notifications_pending{target=\"am\"} 2"),
            "{out}"
        );
    }
}
