//! The alerts timeline: every episode (a firing transition and its resolved one, if any)
//! overlapping the range, with its severity and the labels that locate its series.
//!
//! Parameters: `$1` start and `$2` end (Unix seconds). On a database migrated before
//! alerting existed the table is missing and the handler answers an empty list.

use super::Chart;

pub const CHARTS: &[Chart] = &[Chart {
    id: "timeline",
    // One row per firing transition: it lasts until the alert's next firing row (an
    // escalation to critical, issue 15: `ended_by` 'escalated') or its resolution
    // ('resolved'); `until` is null while it fires.
    sql: r#"SELECT COALESCE(json_agg(json_build_object(
         'alert_id', e.alert_id, 'rule', e.rule, 'severity', e.severity, 'service', e.service,
         'labels', e.labels, 'message', e.message, 'observed_value', e.observed_value,
         'threshold', e.threshold, 'since', extract(epoch FROM e.since),
         'since_window_end', extract(epoch FROM e.since_window_end),
         'until', extract(epoch FROM e.until), 'ended_by', e.ended_by)
       ORDER BY e.since DESC, e.alert_id, e.severity), '[]')::text
FROM (
  SELECT f.alert_id, f.rule, f.severity, f.service, f.labels, f.message, f.observed_value, f.threshold,
         f.window_start AS since, f.window_end AS since_window_end,
         COALESCE(x.next_since, r.until) AS until,
         CASE WHEN x.next_since IS NOT NULL THEN 'escalated' WHEN r.until IS NOT NULL THEN 'resolved' END AS ended_by
  FROM alerts f
  LEFT JOIN LATERAL (SELECT min(n.window_start) AS next_since FROM alerts n
                     WHERE n.alert_id = f.alert_id AND n.state = 'firing' AND n.window_start > f.window_start) x ON true
  LEFT JOIN LATERAL (SELECT min(r.window_start) AS until FROM alerts r
                     WHERE r.alert_id = f.alert_id AND r.state = 'resolved') r ON true
  WHERE f.state = 'firing' AND f.window_start < to_timestamp($2)
    AND COALESCE(x.next_since, r.until, 'infinity') >= to_timestamp($1)
  ORDER BY f.window_start DESC, f.alert_id, f.severity
  LIMIT 300
) e"#,
}];
