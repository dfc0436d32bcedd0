//! What goes on the wire: Alertmanager's `postableAlerts` (API v2), the webhook body and its
//! signature. Pure functions of the transition and the time given.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use perfstream_events::{AlertEvent, AlertState};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The header carrying the webhook body's signature.
pub const SIGNATURE_HEADER: &str = "X-Perfstream-Signature";
/// The header carrying the dedup id (see [`dedup_id`]).
pub const DEDUP_HEADER: &str = "X-Perfstream-Dedup-Id";

/// What identifies a transition: `<alert_id>:<state>:<severity>` (an escalation is a second
/// `firing` of the same alert, at `critical`).
pub fn dedup_id(e: &AlertEvent) -> String {
    format!(
        "{}:{}:{}",
        e.alert_id,
        e.state.as_str(),
        e.severity.as_str()
    )
}

fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The labels routes match on and Alertmanager groups by: the alert's labels (key fields and the
/// rule's configured labels), plus `alertname` and `rule` (the rule), `service`, `severity`.
pub fn alert_labels(e: &AlertEvent) -> BTreeMap<String, String> {
    let mut l = e.labels.clone();
    l.insert("alertname".into(), e.rule.clone());
    l.insert("rule".into(), e.rule.clone());
    l.insert("service".into(), e.service.clone());
    l.insert("severity".into(), e.severity.as_str().into());
    l
}

/// Alertmanager label names are `[a-zA-Z_][a-zA-Z0-9_]*`: anything else becomes `_`.
fn label_name(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// The dashboard link of an alert, if a dashboard URL is configured.
pub fn dashboard_link(dashboard_url: &str, e: &AlertEvent) -> Option<String> {
    (!dashboard_url.is_empty()).then(|| {
        let sep = if dashboard_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{dashboard_url}{sep}service={}&alert_id={}",
            url_component(&e.service),
            e.alert_id
        )
    })
}

fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One element of Alertmanager's `POST /api/v2/alerts` body.
///
/// The alert id is a label, so each episode is its own Alertmanager alert (its fingerprint).
/// Firing: `startsAt` is the start of the window it fired in, `endsAt` four `resend` intervals
/// after `now_us` (re-sent every `resend` while firing, as Prometheus does, so Alertmanager keeps
/// it active exactly as long as perfstream vouches for it). `startsAt` is the start of the window
/// the alert first fired in (`fired_at_us`, when known). Resolved: `endsAt` is when the
/// evaluator recorded the resolve.
pub fn alertmanager_alert(
    e: &AlertEvent,
    resolve_reason: Option<&str>,
    fired_at_us: Option<i64>,
    now_us: i64,
    resend: Duration,
    dashboard_url: &str,
) -> Value {
    let labels: BTreeMap<String, String> = alert_labels(e)
        .into_iter()
        .map(|(k, v)| (label_name(&k), v))
        .chain([("alert_id".to_string(), e.alert_id.clone())])
        .collect();
    let starts = fired_at_us.unwrap_or(e.window_start_us);
    let ends = match e.state {
        AlertState::Firing => now_us + 4 * resend.as_micros() as i64,
        AlertState::Resolved => e.transitioned_at_us,
    }
    .max(starts + 1_000);
    let mut a = json!({
        "labels": labels,
        "annotations": {
            "summary": e.message,
            "observed_value": e.observed_value.to_string(),
            "threshold": e.threshold.to_string(),
            "clear_threshold": e.clear_threshold.to_string(),
            "window_start": rfc3339(e.window_start_us),
            "window_end": rfc3339(e.window_end_us),
        },
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
    });
    if let Some(link) = dashboard_link(dashboard_url, e) {
        a["generatorURL"] = Value::String(link);
    }
    if let Some(why) = resolve_reason {
        a["annotations"]["resolve_reason"] = Value::from(why);
    }
    a
}

/// The webhook body (documented in `docs/alerts.md`): the transition's fields, times in
/// RFC 3339 and in microseconds, `dedup_id` = `<alert_id>:<state>:<severity>`, and for a resolve its
/// `resolve_reason` (`cleared`, `no_data`, `rule_disabled`, `corrected`; null when unknown or firing).
pub fn webhook_body(e: &AlertEvent, resolve_reason: Option<&str>, dashboard_url: &str) -> Vec<u8> {
    let body = json!({
        "version": 1,
        "dedup_id": dedup_id(e),
        "alert_id": e.alert_id,
        "state": e.state.as_str(),
        "rule": e.rule,
        "severity": e.severity.as_str(),
        "service": e.service,
        "labels": e.labels,
        "observed_value": e.observed_value,
        "threshold": e.threshold,
        "clear_threshold": e.clear_threshold,
        "window_start": rfc3339(e.window_start_us),
        "window_end": rfc3339(e.window_end_us),
        "window_start_us": e.window_start_us,
        "window_end_us": e.window_end_us,
        "transitioned_at_us": e.transitioned_at_us,
        "message": e.message,
        "resolve_reason": resolve_reason,
        "dashboard_url": dashboard_link(dashboard_url, e),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// HMAC-SHA256 (RFC 2104) of `body` keyed with `secret`, as `sha256=<lowercase hex>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut key = [0u8; BLOCK];
    if secret.len() > BLOCK {
        key[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let pad = |b: u8| key.map(|k| k ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in outer {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfstream_events::Severity;

    fn event(state: AlertState) -> AlertEvent {
        AlertEvent {
            alert_id: "00ff".into(),
            rule: "cpu".into(),
            severity: Severity::Critical,
            state,
            service: "check out".into(),
            labels: [("instance".to_string(), "i-1".to_string())].into(),
            observed_value: 0.95,
            threshold: 0.9,
            clear_threshold: 0.8,
            window_start_us: 1_700_000_000_000_000,
            window_end_us: 1_700_000_060_000_000,
            transitioned_at_us: 1_700_000_065_000_000,
            message: "cpu firing".into(),
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            signature(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn alertmanager_firing_and_resolved() {
        let now = 1_700_000_070_000_000;
        let f = alertmanager_alert(
            &event(AlertState::Firing),
            None,
            None,
            now,
            Duration::from_secs(60),
            "http://ps:9100/",
        );
        assert_eq!(f["labels"]["alertname"], "cpu");
        assert_eq!(f["labels"]["severity"], "critical");
        assert_eq!(f["labels"]["alert_id"], "00ff");
        assert_eq!(f["labels"]["instance"], "i-1");
        assert_eq!(f["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(f["endsAt"], "2023-11-14T22:18:30.000Z"); // now + 4 min
        assert_eq!(
            f["generatorURL"],
            "http://ps:9100/?service=check%20out&alert_id=00ff"
        );
        let r = alertmanager_alert(
            &event(AlertState::Resolved),
            Some("no_data"),
            Some(1_699_999_000_000_000),
            now,
            Duration::from_secs(60),
            "",
        );
        assert_eq!(r["startsAt"], "2023-11-14T21:56:40.000Z");
        assert_eq!(r["endsAt"], "2023-11-14T22:14:25.000Z"); // transitioned_at
        assert!(r.get("generatorURL").is_none());
        assert_eq!(r["annotations"]["resolve_reason"], "no_data");
        assert!(f["annotations"].get("resolve_reason").is_none());
    }

    #[test]
    fn label_names_are_sanitised() {
        assert_eq!(label_name("a.b-c"), "a_b_c");
        assert_eq!(label_name("9x"), "_9x");
    }

    #[test]
    fn webhook_body_carries_the_dedup_id() {
        let b: Value = serde_json::from_slice(&webhook_body(
            &event(AlertState::Resolved),
            Some("cleared"),
            "",
        ))
        .expect("json");
        assert_eq!(b["dedup_id"], "00ff:resolved:critical");
        assert_eq!(b["severity"], "critical");
        assert_eq!(b["labels"]["instance"], "i-1");
        assert_eq!(b["dashboard_url"], Value::Null);
        assert_eq!(b["resolve_reason"], "cleared");
    }
}
