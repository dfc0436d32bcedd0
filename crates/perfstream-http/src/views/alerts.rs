//! The alerts timeline: every episode (a firing transition and its resolved one, if any)
//! overlapping the range, with its severity and the labels that locate its series.
//!
//! Parameters: `$1` start and `$2` end (Unix seconds). On a database migrated before
//! alerting existed the table is missing and the handler answers an empty list.

use super::Chart;

pub const CHARTS: &[Chart] = &[Chart {
    id: "timeline",
    sql: r#"SELECT COALESCE(json_agg(e ORDER BY e.since DESC, e.alert_id), '[]')::text FROM (
  SELECT f.alert_id, f.rule, f.severity, f.service, f.labels, f.message,
         f.observed_value, f.threshold,
         extract(epoch FROM f.window_start) AS since, extract(epoch FROM f.window_end) AS since_window_end,
         extract(epoch FROM r.window_start) AS until, r.message AS resolved_message
  FROM alerts f
  LEFT JOIN alerts r ON r.alert_id = f.alert_id AND r.state = 'resolved'
  WHERE f.state = 'firing' AND f.window_start < to_timestamp($2)
    AND (r.window_start IS NULL OR r.window_start >= to_timestamp($1))
  ORDER BY f.window_start DESC, f.alert_id
  LIMIT 300
) e"#,
}];
