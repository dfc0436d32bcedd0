//! The `[notify]` section: targets (Alertmanager or webhook), routes, timing. Deserialize only;
//! the binary assembles it with figment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NotifyError;

/// Alert notifications. With no targets (the default) the notifier does nothing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Run the notifier in `perfstream run` when targets are configured. Default true.
    pub enabled: bool,
    /// How often the notifier looks for new transitions and due retries. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a stand-by notifier waits between attempts to take the group's lock. Default
    /// `1s`.
    #[serde(with = "humantime_serde")]
    pub lock_retry: Duration,
    /// On the first start (no `alert_notify_progress` row), transitions recorded this long ago
    /// or less are still delivered; older ones are not. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub start_lookback: Duration,
    /// The dashboard's base URL, for Alertmanager's `generatorURL` and the webhook body's
    /// `dashboard_url` (e.g. `http://perfstream:9100/`). Default empty: no link.
    pub dashboard_url: String,
    /// Where notifications go; each has a unique `name` that routes refer to.
    pub targets: Vec<TargetSettings>,
    /// Which transitions go to which targets. Every route that matches a transition adds its
    /// targets. No routes: every transition goes to every target.
    pub routes: Vec<Route>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            enabled: true,
            interval: Duration::from_secs(1),
            lock_retry: Duration::from_secs(1),
            start_lookback: Duration::from_secs(15 * 60),
            dashboard_url: String::new(),
            targets: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// What a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Prometheus Alertmanager: `POST <url>/api/v2/alerts`; firing alerts are re-sent every
    /// `resend_interval` so Alertmanager does not time them out.
    Alertmanager,
    /// A generic HTTP endpoint: `POST <url>` with the JSON body of `docs/alerts.md`.
    Webhook,
}

/// One receiver of notifications.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    /// Unique name; routes and the `alert_deliveries` table refer to it.
    pub name: String,
    pub kind: TargetKind,
    /// Alertmanager: its base URL (`http://am:9093`). Webhook: the URL posted to. `http` only
    /// (put a TLS-terminating proxy in front for `https`).
    pub url: String,
    /// Webhook: when set, each request carries `X-Perfstream-Signature: sha256=<hex>`, the
    /// HMAC-SHA256 of the body with this key. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Bound on one request (connect to last byte). Default `5s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Most requests per second to this target (a token bucket of `burst`). Default 10.
    #[serde(default = "default_rate")]
    pub rate_limit: f64,
    /// Requests the bucket allows at once. Default 20.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Wait after the first failed attempt; doubled per failure up to `max_backoff`. Default
    /// `1s`.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts. Deliveries are retried until they succeed. Default `1m`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Alertmanager: how often firing alerts are sent again; their `endsAt` is four of these
    /// ahead, so Alertmanager resolves them by itself if perfstream stops vouching for them.
    /// Default `1m` (Prometheus's `resend_delay`).
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_rate() -> f64 {
    10.0
}
fn default_burst() -> u32 {
    20
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}

/// Sends the transitions that match to `targets`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Labels the alert must have (`rule` and `service` included), e.g. `{ service =
    /// "checkout", rule = "error_rate" }`. Empty: every alert.
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, String>,
    /// Severities that match (`info`, `warning`, `critical`). Empty: all.
    #[serde(default)]
    pub severities: Vec<String>,
    /// Target names.
    pub targets: Vec<String>,
}

impl NotifySettings {
    /// Checks names, URLs and numbers; every error names the field.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let bad = |field: String, reason: &str| NotifyError::Settings {
            field,
            reason: reason.to_string(),
        };
        let mut names = BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let f = |k: &str| format!("notify.targets[{i}].{k}");
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                return Err(bad(f("name"), "must be present and unique"));
            }
            if !t.url.starts_with("http://") {
                return Err(bad(f("url"), "must start with http://"));
            }
            if t.secret.is_some() && t.kind != TargetKind::Webhook {
                return Err(bad(f("secret"), "only webhooks are signed"));
            }
            if !(t.rate_limit.is_finite() && t.rate_limit > 0.0) {
                return Err(bad(f("rate_limit"), "must be a positive number"));
            }
            if t.burst == 0 {
                return Err(bad(f("burst"), "must be at least 1"));
            }
            if t.timeout.is_zero() || t.initial_backoff.is_zero() || t.resend_interval.is_zero() {
                return Err(bad(
                    f("timeout"),
                    "timeout, initial_backoff and resend_interval must be positive",
                ));
            }
            if t.max_backoff < t.initial_backoff {
                return Err(bad(f("max_backoff"), "must be at least initial_backoff"));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            for s in &r.severities {
                if perfstream_events::Severity::parse(s).is_none() {
                    return Err(bad(
                        format!("notify.routes[{i}].severities"),
                        "each must be info, warning or critical",
                    ));
                }
            }
            if r.targets.is_empty() {
                return Err(bad(
                    format!("notify.routes[{i}].targets"),
                    "must not be empty",
                ));
            }
            if let Some(t) = r.targets.iter().find(|t| !names.contains(t.as_str())) {
                return Err(NotifyError::Settings {
                    field: format!("notify.routes[{i}].targets"),
                    reason: format!("no target is named {t:?}"),
                });
            }
        }
        if self.interval.is_zero() {
            return Err(bad("notify.interval".into(), "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    fn load(toml: &str) -> Result<NotifySettings, String> {
        let s: NotifySettings = Figment::from(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())?;
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn defaults_and_a_full_section() {
        assert_eq!(load("").unwrap(), NotifySettings::default());
        let s = load(
            r#"
            dashboard_url = "http://ps:9100/"
            [[targets]]
            name = "am"
            kind = "alertmanager"
            url = "http://am:9093"
            resend_interval = "30s"
            [[targets]]
            name = "hook"
            kind = "webhook"
            url = "http://hooks/x"
            secret = "k"
            [[routes]]
            match = { service = "checkout" }
            severities = ["critical"]
            targets = ["am", "hook"]
            "#,
        )
        .unwrap();
        assert_eq!(s.targets[0].resend_interval, Duration::from_secs(30));
        assert_eq!(s.targets[1].timeout, Duration::from_secs(5));
        assert_eq!(s.routes[0].targets, ["am", "hook"]);
    }

    #[test]
    fn errors_name_the_field() {
        let e = load(
            "[[targets]]\nname='a'\nkind='webhook'\nurl='http://x'\n[[routes]]\ntargets=['b']",
        )
        .unwrap_err();
        assert!(
            e.contains("notify.routes[0].targets") && e.contains("\"b\""),
            "{e}"
        );
        let e = load("[[targets]]\nname='a'\nkind='alertmanager'\nurl='http://x'\nsecret='s'")
            .unwrap_err();
        assert!(e.contains("notify.targets[0].secret"), "{e}");
        let e = load("[[targets]]\nname='a'\nkind='webhook'\nurl='https://x'").unwrap_err();
        assert!(e.contains("notify.targets[0].url"), "{e}");
        let e = load("[[targets]]\nname='a'\nkind='pager'\nurl='http://x'").unwrap_err();
        assert!(e.contains("pager"), "{e}");
        let e = load("bogus = 1").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
