//! The periodic maintenance task: tier rebuilds, then retention, every `interval`.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use crate::{Retention, Store};

/// Settings of the tiers and retention jobs (`[store.maintenance]` or wherever the binary
/// nests them). Durations are humantime strings ("10m", "7days").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceSettings {
    /// How often the jobs run. Default 1m.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A tier period is rebuilt once it ended this long ago: set it to the pipeline's
    /// correction horizon so most corrections land before the first rebuild (later ones mark
    /// the period dirty and it is rebuilt again). Default 10m.
    #[serde(with = "humantime_serde")]
    pub tier_horizon: Duration,
    /// Tier periods per rebuild transaction. Default 20.
    pub tier_batch: usize,
    /// Base tier ('1m') retention. Default 7days.
    #[serde(with = "humantime_serde")]
    pub retention_base: Duration,
    /// '1h' tier retention. Default 90days.
    #[serde(with = "humantime_serde")]
    pub retention_hour: Duration,
    /// '1d' tier retention. Default 730days.
    #[serde(with = "humantime_serde")]
    pub retention_day: Duration,
    /// Rows per retention DELETE (short transactions). Default 5000.
    pub retention_batch: usize,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        let r = Retention::default();
        MaintenanceSettings {
            interval: Duration::from_secs(60),
            tier_horizon: Duration::from_secs(600),
            tier_batch: 20,
            retention_base: r.base,
            retention_hour: r.hour,
            retention_day: r.day,
            retention_batch: r.batch,
        }
    }
}

impl MaintenanceSettings {
    pub fn retention(&self) -> Retention {
        Retention {
            base: self.retention_base,
            hour: self.retention_hour,
            day: self.retention_day,
            batch: self.retention_batch,
        }
    }
}

/// Runs the tiers job and then the retention job every `settings.interval` until `shutdown`
/// completes. Failures are logged and retried at the next tick (both jobs are idempotent), so
/// a Postgres outage only delays them.
pub async fn run_maintenance(
    store: Store,
    settings: MaintenanceSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(settings.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let now = chrono::Utc::now().timestamp_micros();
        if let Err(error) = store
            .rebuild_tiers(
                now,
                settings.tier_horizon,
                settings.tier_batch,
                &settings.retention(),
            )
            .await
        {
            tracing::warn!(%error, retriable = error.is_retriable(), "Tier rebuild failed; retrying next interval.");
        }
        if let Err(error) = store.apply_retention(now, &settings.retention()).await {
            tracing::warn!(%error, retriable = error.is_retriable(), "Retention failed; retrying next interval.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_humantime_and_reject_unknown_keys() {
        let s: MaintenanceSettings =
            serde_json::from_str(r#"{"interval": "30s", "retention_base": "3days"}"#).unwrap();
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.retention().base, Duration::from_secs(3 * 86_400));
        assert_eq!(s.retention().hour, Duration::from_secs(90 * 86_400));
        assert!(serde_json::from_str::<MaintenanceSettings>(r#"{"intervall": "30s"}"#).is_err());
    }
}
