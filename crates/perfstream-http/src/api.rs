//! `/api/*`: JSON for the dashboard, read from the analyst views, functions and alert tables.
//!
//! Postgres renders each answer as one JSON document (`json_agg`, `json_build_object`), so a
//! request is one round trip and column types (numeric sums, jsonb labels, timestamps) need no
//! Rust mirror. The SQL is fixed text; every value is a bind.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::server::AppState;

/// Endpoints listed in the overview (the worst by p99 of the last hour).
const TOP_ENDPOINTS: i64 = 20;
/// Base windows in each endpoint's p99 sparkline. The SQL looks back at most 31 hours: 30
/// windows of the largest base window allowed (one hour), so a week of retained rows is not
/// scanned for it.
const SPARKLINE_WINDOWS: i64 = 30;
/// Longest look-back the API accepts: the base tier's default retention.
const MAX_SINCE_MINUTES: i32 = 7 * 24 * 60;
/// Alert transitions listed, newest first.
const TRANSITIONS: i64 = 20;
/// Firing alerts listed at most.
const FIRING: i64 = 200;
/// Postgres' code for "relation does not exist".
const UNDEFINED_TABLE: &str = "42P01";

const OVERVIEW_SQL: &str = r#"
SELECT json_build_object(
  'services', COALESCE((SELECT json_agg(s ORDER BY s.service) FROM (
      SELECT l.service, l.window_start,
             l.requests::bigint AS requests,
             rq.worst_p95_us::float8 / 1000 AS request_p95_ms,
             l.worst_endpoint_p99_us::float8 / 1000 AS request_p99_ms,
             l.error_rate,
             l.queries::bigint AS queries,
             qy.worst_p99_us::float8 / 1000 AS query_p99_ms,
             l.query_time_us::float8 / 1000 AS query_time_ms,
             l.cpu_ppm_mean::float8 / 1e6 AS cpu,
             l.memory_utilization_ppm_max::float8 / 1e6 AS memory_utilization_max,
             l.pool_waiters_max
      FROM latest_window_per_service l
      LEFT JOIN LATERAL (
          SELECT max(r.p95_us) AS worst_p95_us FROM request_rollups r
          WHERE r.service = l.service AND r.window_start = l.window_start
            AND r.resolution NOT IN ('1h', '1d')) rq ON true
      LEFT JOIN LATERAL (
          SELECT max(q.p99_us) AS worst_p99_us FROM query_rollups q
          WHERE q.service = l.service AND q.window_start = l.window_start
            AND q.resolution NOT IN ('1h', '1d')) qy ON true
  ) s), '[]'::json),
  'top_endpoints', COALESCE((SELECT json_agg(e ORDER BY e.worst_p99_ms DESC, e.service, e.endpoint, e.method) FROM (
      SELECT t.service, t.endpoint, t.method,
             t.worst_p99_us::float8 / 1000 AS worst_p99_ms,
             t.requests::bigint AS requests,
             t.mean_us::float8 / 1000 AS mean_ms,
             t.error_rate,
             (SELECT COALESCE(json_agg(json_build_array(w.window_start, w.p99_us::float8 / 1000)
                                       ORDER BY w.window_start), '[]'::json)
              FROM (SELECT r.window_start, r.p99_us FROM request_rollups r
                    WHERE r.service = t.service AND r.endpoint = t.endpoint
                      AND r.method = t.method AND r.resolution NOT IN ('1h', '1d')
                      AND r.window_start >= now() - interval '31 hours'
                    ORDER BY r.window_start DESC LIMIT $2) w) AS p99_series
      FROM (SELECT * FROM top_endpoints_by_p99 LIMIT $1) t
  ) e), '[]'::json)
)::text
"#;

// No WITH ORDINALITY: it stops Postgres from inlining the SQL functions, and the inlined
// plans use the window_start indexes (slow queries 470 -> 150 ms, recommendations 530 ->
// 190 ms on 2M rows). The aggregates repeat the functions' own order instead.
const SLOW_QUERIES_SQL: &str = r#"
SELECT COALESCE(json_agg(s ORDER BY s.worst_p99_ms DESC, s.max_ms DESC, s.service, s.query_hash,
                         s.query_type), '[]'::json)::text
FROM get_slow_queries(now() - make_interval(mins => $1), $2, $3) AS s
"#;

const RECOMMENDATIONS_SQL: &str = r#"
SELECT COALESCE(json_agg(r ORDER BY r.severity, r.kind, r.target), '[]'::json)::text
FROM generate_optimization_recommendations(now() - make_interval(mins => $1)) AS r
"#;

const ALERTS_SQL: &str = r#"
SELECT json_build_object(
  'firing', COALESCE((SELECT json_agg(f ORDER BY f.since DESC, f.alert_id) FROM (
      SELECT a.alert_id, a.rule, a.severity, a.service, a.labels, a.observed_value,
             a.threshold, a.window_start AS since, a.transitioned_at, a.message
      FROM alerts a
      WHERE a.state = 'firing'
        AND NOT EXISTS (SELECT 1 FROM alerts r WHERE r.alert_id = a.alert_id AND r.state = 'resolved')
      ORDER BY a.window_start DESC, a.alert_id LIMIT $1) f), '[]'::json),
  'transitions', COALESCE((SELECT json_agg(t ORDER BY t.transitioned_at DESC, t.alert_id, t.state) FROM (
      SELECT alert_id, state, rule, severity, service, labels, observed_value, threshold,
             window_start, window_end, transitioned_at, message
      FROM alerts ORDER BY transitioned_at DESC, alert_id, state LIMIT $2) t), '[]'::json)
)::text
"#;

/// A JSON document rendered by Postgres, sent as is.
pub struct RawJson(String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// A failed API request: status and a message for the dashboard.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    pub(crate) fn query(endpoint: &'static str, error: sqlx::Error) -> Self {
        tracing::warn!(%error, endpoint, "Dashboard query failed.");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("query failed: {error}"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// Query parameters of the range endpoints.
#[derive(Debug, Deserialize)]
pub struct RangeParams {
    /// Look-back in minutes from now (60 when absent).
    since_minutes: Option<i32>,
    /// `get_slow_queries` threshold in ms (the function's own default, 1000, when absent).
    threshold_ms: Option<f64>,
    /// Most rows returned (50 when absent).
    limit: Option<i32>,
}

impl RangeParams {
    fn since_minutes(&self) -> Result<i32, ApiError> {
        let m = self.since_minutes.unwrap_or(60);
        if !(1..=MAX_SINCE_MINUTES).contains(&m) {
            return Err(ApiError::bad_request(format!(
                "since_minutes must be between 1 and {MAX_SINCE_MINUTES}, got {m}"
            )));
        }
        Ok(m)
    }
}

/// `GET /api/overview`: latest window per service and the top endpoints with sparklines.
pub async fn overview(State(state): State<AppState>) -> Result<RawJson, ApiError> {
    let json: String = sqlx::query_scalar(OVERVIEW_SQL)
        .bind(TOP_ENDPOINTS)
        .bind(SPARKLINE_WINDOWS)
        .fetch_one(&state.pool)
        .await
        .map_err(|e| ApiError::query("overview", e))?;
    Ok(RawJson(json))
}

/// `GET /api/slow-queries?since_minutes=60&threshold_ms=1000&limit=50`.
pub async fn slow_queries(
    State(state): State<AppState>,
    Query(params): Query<RangeParams>,
) -> Result<RawJson, ApiError> {
    let since = params.since_minutes()?;
    let threshold = params.threshold_ms.unwrap_or(1000.0);
    if !(threshold.is_finite() && threshold >= 0.0) {
        return Err(ApiError::bad_request(format!(
            "threshold_ms must be a non-negative number, got {threshold}"
        )));
    }
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let json: String = sqlx::query_scalar(SLOW_QUERIES_SQL)
        .bind(since)
        .bind(threshold)
        .bind(limit)
        .fetch_one(&state.pool)
        .await
        .map_err(|e| ApiError::query("slow-queries", e))?;
    Ok(RawJson(json))
}

/// `GET /api/recommendations?since_minutes=60`.
pub async fn recommendations(
    State(state): State<AppState>,
    Query(params): Query<RangeParams>,
) -> Result<RawJson, ApiError> {
    let since = params.since_minutes()?;
    let json: String = sqlx::query_scalar(RECOMMENDATIONS_SQL)
        .bind(since)
        .fetch_one(&state.pool)
        .await
        .map_err(|e| ApiError::query("recommendations", e))?;
    Ok(RawJson(json))
}

/// `GET /api/alerts`: firing alerts and the last transitions; empty lists on a database
/// migrated before alerting existed.
pub async fn alerts(State(state): State<AppState>) -> Result<RawJson, ApiError> {
    let result: Result<String, sqlx::Error> = sqlx::query_scalar(ALERTS_SQL)
        .bind(FIRING)
        .bind(TRANSITIONS)
        .fetch_one(&state.pool)
        .await;
    match result {
        Ok(json) => Ok(RawJson(json)),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => {
            Ok(RawJson(r#"{"firing":[],"transitions":[]}"#.to_owned()))
        }
        Err(e) => Err(ApiError::query("alerts", e)),
    }
}

/// `GET /api/pipeline`: this process's pipeline counters (the same figures as `/metrics`).
pub async fn pipeline(State(state): State<AppState>) -> Json<serde_json::Value> {
    let s = state.stats.snapshot();
    Json(serde_json::json!({
        "messages_in": s.messages_in,
        "events_aggregated": s.events_aggregated,
        "events_skipped_replay": s.events_skipped_replay,
        "dead_lettered": s.dead_lettered,
        "too_late": s.too_late,
        "corrections": s.corrections,
        "flushes": s.flushes,
        "flush_failures": s.flush_failures,
        "fenced": s.fenced,
        "rows_written": s.rows_written,
        "windows_closed": s.windows_closed,
        "rebalances": s.rebalances,
        "assigned_partitions": s.assigned_partitions,
        "watermark_us": s.watermark_us,
    }))
}
