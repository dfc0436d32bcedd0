//! Which targets a transition goes to. Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::settings::NotifySettings;

/// The targets of a transition with these labels ([`crate::payload::alert_labels`]): the union
/// of the targets of every route that matches; with no routes, every target.
pub fn targets_for(s: &NotifySettings, labels: &BTreeMap<String, String>) -> BTreeSet<String> {
    if s.routes.is_empty() {
        return s.targets.iter().map(|t| t.name.clone()).collect();
    }
    let severity = labels.get("severity").map(String::as_str).unwrap_or("");
    s.routes
        .iter()
        .filter(|r| r.matches.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .filter(|r| r.severities.is_empty() || r.severities.iter().any(|s| s == severity))
        .flat_map(|r| r.targets.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Route, TargetKind, TargetSettings};

    fn target(name: &str) -> TargetSettings {
        TargetSettings {
            name: name.into(),
            kind: TargetKind::Webhook,
            url: "http://x".into(),
            secret: None,
            timeout: std::time::Duration::from_secs(1),
            rate_limit: 1.0,
            burst: 1,
            initial_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(1),
            resend_interval: std::time::Duration::from_secs(1),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn routes_match_on_labels_and_severity() {
        let mut s = NotifySettings {
            targets: vec![target("pager"), target("chat")],
            ..NotifySettings::default()
        };
        let crit = labels(&[("service", "checkout"), ("severity", "critical")]);
        let warn = labels(&[("service", "checkout"), ("severity", "warning")]);
        let other = labels(&[("service", "search"), ("severity", "critical")]);
        // No routes: everything everywhere.
        assert_eq!(targets_for(&s, &warn).len(), 2);
        s.routes = vec![
            Route {
                matches: labels(&[("service", "checkout")]),
                severities: vec!["critical".into()],
                targets: vec!["pager".into()],
            },
            Route {
                matches: BTreeMap::new(),
                severities: vec![],
                targets: vec!["chat".into()],
            },
        ];
        let names = |s: &NotifySettings, l| targets_for(s, l).into_iter().collect::<Vec<_>>();
        assert_eq!(names(&s, &crit), ["chat", "pager"]);
        assert_eq!(names(&s, &warn), ["chat"]);
        assert_eq!(names(&s, &other), ["chat"]);
        s.routes.pop();
        assert!(names(&s, &other).is_empty());
    }
}
