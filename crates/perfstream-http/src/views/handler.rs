//! The handler of `/api/view/{view}` and `/api/meta`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chart, alerts, overview, queries, service};
use crate::api::ApiError;
use crate::range::{RangeQuery, Tier, TimeRange};
use crate::server::AppState;

/// Postgres' code for "relation does not exist" (no alerts table before that migration).
const UNDEFINED_TABLE: &str = "42P01";
/// Longest service name accepted (a bound on cache keys; real names are short).
const MAX_SERVICE_LEN: usize = 200;

/// The base windows' resolution labels in the tables: a loose index scan over the primary
/// keys' leading column (a few index probes per table, whatever the row count).
const BASE_RESOLUTIONS_SQL: &str = r#"WITH RECURSIVE
rq(res) AS (SELECT min(resolution) FROM request_rollups
            UNION ALL SELECT (SELECT min(resolution) FROM request_rollups WHERE resolution > rq.res) FROM rq WHERE rq.res IS NOT NULL),
qy(res) AS (SELECT min(resolution) FROM query_rollups
            UNION ALL SELECT (SELECT min(resolution) FROM query_rollups WHERE resolution > qy.res) FROM qy WHERE qy.res IS NOT NULL),
rs(res) AS (SELECT min(resolution) FROM resource_rollups
            UNION ALL SELECT (SELECT min(resolution) FROM resource_rollups WHERE resolution > rs.res) FROM rs WHERE rs.res IS NOT NULL)
SELECT COALESCE(array_agg(res ORDER BY res), '{}')
FROM (SELECT res FROM rq UNION SELECT res FROM qy UNION SELECT res FROM rs) x
WHERE res IS NOT NULL AND res NOT IN ('1h', '1d')"#;

/// The recommendation settings, and the default endpoint SLA (`endpoint_sla_defaults`, the
/// alert config's) as `sla_ms` / `sla_statistic`: the dashboard's threshold lines.
const THRESHOLDS_SQL: &str =
    "SELECT (COALESCE((SELECT jsonb_object_agg(name, value) FROM recommendation_settings), '{}')
    || COALESCE((SELECT jsonb_build_object('sla_ms', threshold_ms, 'sla_statistic', statistic)
                 FROM endpoint_sla_defaults), '{}'))::text";

const META_SQL: &str = r#"SELECT json_build_object(
  'now_ms', (extract(epoch FROM now()) * 1000)::bigint,
  'watermark_ms', (SELECT (extract(epoch FROM max(applied_watermark)) * 1000)::bigint FROM consumer_offsets),
  'progress_updated_ms', (SELECT (extract(epoch FROM max(updated_at)) * 1000)::bigint FROM consumer_offsets)
)::text"#;

/// The dashboard's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    Overview,
    Service,
    Alerts,
    Queries,
}

impl View {
    fn charts(self) -> &'static [Chart] {
        match self {
            View::Overview => overview::CHARTS,
            View::Service => service::CHARTS,
            View::Alerts => alerts::CHARTS,
            View::Queries => queries::CHARTS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Service => "service",
            View::Alerts => "alerts",
            View::Queries => "queries",
        }
    }
}

/// Query string of `/api/view/{view}`: the range (see [`RangeQuery`]) and, for the service
/// view, the service. (Not `#[serde(flatten)]`: the query-string decoder then reads numbers
/// as strings.)
#[derive(Debug, Deserialize)]
pub struct ViewQuery {
    range: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    service: Option<String>,
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `GET /api/view/{view}?range=1h` (or `from`/`to` in Unix ms; `service` for the service
/// view): every chart of the view as `{id, sql, data}` (or `{id, sql, error}`), the resolved
/// range with its tier, and the recommendation thresholds the page draws.
pub async fn view(
    State(state): State<AppState>,
    Path(view): Path<View>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, ApiError> {
    let range = RangeQuery {
        range: q.range,
        from: q.from,
        to: q.to,
    }
    .resolve(now_s())
    .map_err(ApiError::bad_request)?;
    let service = match (view, q.service) {
        (View::Service, Some(s)) if !s.is_empty() && s.len() <= MAX_SERVICE_LEN => s,
        (View::Service, _) => {
            return Err(ApiError::bad_request(format!(
                "the service view needs `service` (1 to {MAX_SERVICE_LEN} bytes)"
            )));
        }
        (_, _) => String::new(),
    };
    let key = format!("{}|{}|{}", view.name(), range.key, service);
    if let Some(body) = state.cache.get(&key) {
        return Ok(json_response(body));
    }
    let generation = state.cache.generation();
    let (answer, complete) = run_view(&state, view, &range, &service).await;
    let body: Arc<str> = Arc::from(answer.to_string());
    if complete {
        state.cache.put(key, generation, body.clone());
    }
    Ok(json_response(body))
}

/// Runs every chart of `view`; `complete` is false when one failed (the answer is then not
/// cached, and the failed chart carries its error so the others still show).
async fn run_view(state: &AppState, view: View, range: &TimeRange, service: &str) -> (Value, bool) {
    let mut complete = true;
    let resolutions = match resolutions(state, range.tier).await {
        Ok(r) => r,
        Err(error) => {
            tracing::warn!(%error, "Dashboard could not list the base resolutions.");
            complete = false;
            Vec::new()
        }
    };
    let mut charts = Vec::new();
    for chart in view.charts() {
        let result: Result<String, sqlx::Error> = sqlx::query_scalar(chart.sql)
            .bind(range.from_s)
            .bind(range.to_s)
            .bind(&resolutions)
            .bind(range.step_s)
            .bind(service)
            .fetch_one(&state.pool)
            .await;
        let outcome = match result {
            Ok(text) => serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => {
                Ok(Value::Array(Vec::new()))
            }
            Err(error) => {
                tracing::warn!(%error, view = view.name(), chart = chart.id, "Dashboard chart query failed.");
                Err(format!("query failed: {error}"))
            }
        };
        charts.push(match outcome {
            Ok(data) => json!({ "id": chart.id, "sql": chart.sql, "data": data }),
            Err(error) => {
                complete = false;
                json!({ "id": chart.id, "sql": chart.sql, "error": error })
            }
        });
    }
    let thresholds = match sqlx::query_scalar::<_, String>(THRESHOLDS_SQL)
        .fetch_one(&state.pool)
        .await
    {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(error) => {
            tracing::warn!(%error, "Dashboard thresholds query failed.");
            complete = false;
            Value::Null
        }
    };
    let mut range_json = range.to_json();
    range_json["resolutions"] = json!(resolutions);
    let answer = json!({
        "view": view.name(),
        "service": service,
        "range": range_json,
        "thresholds": thresholds,
        "charts": charts,
    });
    (answer, complete)
}

/// The resolutions a tier reads (`$3` of the chart statements): the tier's label, or the
/// labels of the base windows stored (one, unless the window size was reconfigured).
async fn resolutions(state: &AppState, tier: Tier) -> Result<Vec<String>, sqlx::Error> {
    match tier {
        Tier::Base => {
            sqlx::query_scalar(BASE_RESOLUTIONS_SQL)
                .fetch_one(&state.pool)
                .await
        }
        Tier::Hour | Tier::Day => Ok(vec![tier.label().to_owned()]),
    }
}

fn json_response(body: Arc<str>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /api/meta`: the database clock and the committed watermark (the newest
/// `consumer_offsets.applied_watermark`), so the page shows how far the charts lag; never
/// cached.
pub async fn meta(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text: String = sqlx::query_scalar(META_SQL)
        .fetch_one(&state.pool)
        .await
        .map_err(|e| ApiError::query("meta", e))?;
    Ok(json_response(Arc::from(text)))
}
