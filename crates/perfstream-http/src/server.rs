//! The listener, the router and the probe handlers.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use perfstream_pipeline::PipelineStats;
use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

use crate::cache::{QueryCache, spawn_flush_listener};
use crate::{HttpError, HttpSettings, TaskHealth, api, assets, metrics, views};

/// How long `/readyz` waits for Postgres (pool acquire included) before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections of the server's own pool: dashboards poll a few light queries, and a pool of
/// its own means an open dashboard never takes a connection a flush is waiting for.
const POOL_CONNECTIONS: u32 = 2;
/// Longest an API query may run (Postgres `statement_timeout` on the server's connections).
const STATEMENT_TIMEOUT: &str = "5s";
/// Longest an API request waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every handler shares. Cloned per request (`Arc`s and pool handles).
#[derive(Clone)]
pub struct AppState {
    /// The pipeline's counters: read by `/metrics` (through `registry`) and `/api/pipeline`.
    pub stats: Arc<PipelineStats>,
    /// Postgres for the API: the server's own small pool (see [`own_pool`]).
    pub pool: PgPool,
    /// One connection for `/readyz` alone, so slow dashboard queries holding the API pool
    /// never make the process look unready.
    ready_pool: PgPool,
    /// Holds the collectors that read `stats` and `tasks` at scrape time.
    registry: Arc<Registry>,
    /// The side tasks' states: a failed task makes `/readyz` answer 503 naming it.
    tasks: TaskHealth,
    /// Chart answers per (view, range), dropped when a flush lands; hit ratio in `/metrics`.
    pub cache: Arc<QueryCache>,
    /// One connection for the flush notifications that invalidate `cache` (a `PgListener`
    /// holds its connection, which must not be one of the API's two).
    listen_pool: PgPool,
}

/// A bound, not yet running server: bind first to learn the address (port 0 in tests), then
/// [`HttpServer::run`].
pub struct HttpServer {
    listener: TcpListener,
    state: AppState,
    /// Collectors of other components (the notifier's delivery figures), added to the
    /// registry when the server runs.
    collectors: Vec<Box<dyn Collector>>,
}

impl HttpServer {
    /// Binds `settings.listen` (whatever `enabled` says). `pool` gives the connection
    /// settings only: the server opens its own pools (two connections for the API, one for
    /// `/readyz`), lazily, with a 5 s statement timeout, so it never competes with flushes.
    pub async fn bind(
        settings: &HttpSettings,
        stats: Arc<PipelineStats>,
        pool: PgPool,
    ) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(settings.listen.as_str())
            .await
            .map_err(|source| HttpError::Bind {
                listen: settings.listen.clone(),
                source,
            })?;
        let tasks = TaskHealth::default();
        let cache = Arc::new(QueryCache::default());
        let registry = Arc::new(metrics::registry(
            stats.clone(),
            tasks.clone(),
            cache.clone(),
        ));
        Ok(Self {
            listener,
            state: AppState {
                stats,
                pool: own_pool(&pool, POOL_CONNECTIONS),
                ready_pool: own_pool(&pool, 1),
                listen_pool: own_pool(&pool, 1),
                registry,
                tasks,
                cache,
            },
            collectors: Vec::new(),
        })
    }

    /// Adds a collector read at every scrape of `/metrics` (e.g.
    /// `perfstream_notify::NotifyStats::collector()`, the notifier's delivery figures).
    pub fn with_collector(mut self, collector: Box<dyn Collector>) -> Self {
        self.collectors.push(collector);
        self
    }

    /// Reports the side tasks of `tasks` in `/readyz` and `/metrics` (the supervisor of
    /// `perfstream run` keeps it up to date). Without it, no task is known.
    pub fn with_tasks(mut self, tasks: TaskHealth) -> Self {
        self.state.registry = Arc::new(metrics::registry(
            self.state.stats.clone(),
            tasks.clone(),
            self.state.cache.clone(),
        ));
        self.state.tasks = tasks;
        self
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, HttpError> {
        self.listener.local_addr().map_err(HttpError::Serve)
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        let addr = self.local_addr()?;
        if !self.collectors.is_empty() {
            let mut registry = metrics::registry(
                self.state.stats.clone(),
                self.state.tasks.clone(),
                self.state.cache.clone(),
            );
            for c in self.collectors.drain(..) {
                registry.register_collector(c);
            }
            self.state.registry = Arc::new(registry);
        }
        tracing::info!(%addr, "Serving metrics, probes and the dashboard.");
        let listener =
            spawn_flush_listener(self.state.listen_pool.clone(), self.state.cache.clone());
        let served = axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await;
        listener.abort();
        served.map_err(HttpError::Serve)?;
        tracing::info!(%addr, "HTTP server stopped.");
        Ok(())
    }
}

/// Binds `settings.listen` and serves until `shutdown` completes. Returns at once when
/// `settings.enabled` is false.
pub async fn serve(
    settings: HttpSettings,
    stats: Arc<PipelineStats>,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    if !settings.enabled {
        tracing::info!("HTTP server disabled (http.enabled = false).");
        return Ok(());
    }
    HttpServer::bind(&settings, stats, pool)
        .await?
        .run(shutdown)
        .await
}

/// A pool of the server's own, on the same database as `pool`, opening connections lazily.
/// Its connections keep the store's session settings (`perfstream_store::ConnectSettings`:
/// lock and idle-in-transaction timeouts, keepalives), with a tighter statement timeout.
fn own_pool(pool: &PgPool, connections: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .application_name("perfstream-http")
        .options([
            // Appended after the store's statement_timeout: the later value wins.
            ("statement_timeout", STATEMENT_TIMEOUT),
            // The planner JIT-compiles the views' aggregates over large tables; compiling
            // took longer than running them (1.2 s of 2 s for the overview on 2M rows).
            ("jit", "off"),
            // The chart statements branch on their tier bind ($3 = 'base' OR ...): a plan made
            // for the actual values keeps the (service, resolution, window_start) indexes.
            ("plan_cache_mode", "force_custom_plan"),
        ]);
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options)
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(assets::dashboard))
        .route("/assets/uplot.js", get(assets::uplot_js))
        .route("/assets/uplot.css", get(assets::uplot_css))
        .route("/api/view/{view}", get(views::view))
        .route("/api/meta", get(views::meta))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/overview", get(api::overview))
        .route("/api/slow-queries", get(api::slow_queries))
        .route("/api/recommendations", get(api::recommendations))
        .route("/api/alerts", get(api::alerts))
        .route("/api/pipeline", get(api::pipeline))
        .with_state(state)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match metrics::encode(&state.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: no side task failed, and Postgres answers `SELECT 1` within [`READY_TIMEOUT`].
/// A failed task answers at once, naming the task and the reason: the process is on its way
/// out (see `TaskHealth`), whatever Postgres says.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Cow<'static, str>) {
    if let Some(body) = state.tasks.not_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, body.into());
    }
    let ping = sqlx::query("SELECT 1").execute(&state.ready_pool);
    match tokio::time::timeout(READY_TIMEOUT, ping).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(error)) => {
            tracing::warn!(%error, "Readiness check: Postgres failed.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "postgres unavailable\n".into(),
            )
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_TIMEOUT.as_millis() as u64,
                "Readiness check: Postgres did not answer in time."
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "postgres timed out\n".into(),
            )
        }
    }
}
