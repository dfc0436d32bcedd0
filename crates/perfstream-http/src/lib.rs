//! perfstream's operations surface: one HTTP server for Prometheus, the orchestrator's probes
//! and people.
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | pipeline counters and side-task health (`perfstream_task_up`, `perfstream_task_failures_total`), OpenMetrics text, read from `PipelineStats` and `TaskHealth` at scrape time |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 503 naming the task when a side task failed (`TaskHealth`); else 200 when Postgres answers `SELECT 1` within 1 s, else 503 |
//! | `GET /` | the dashboard: one static page (`assets/dashboard.html`) charting with uPlot (`/assets/uplot.js`, vendored and embedded), no CDN |
//! | `GET /api/view/{view}`, `/api/meta` | the dashboard's charts per view and range, each with its SQL; the committed watermark |
//! | `GET /api/overview`, `/api/slow-queries`, `/api/recommendations`, `/api/alerts`, `/api/pipeline` | the earlier JSON endpoints, kept for scripts |
//!
//! Key design choice: the pipeline never pays for observability. It bumps plain atomics; the
//! metrics are a custom collector that snapshots them when scraped, and the dashboard reads
//! only committed rows through the analyst views and functions (`docs/analysts.md`), which
//! Postgres renders as JSON. This crate writes nothing.
//!
//! Layout: `settings.rs` (`HttpSettings`), `server.rs` (bind, router, probes), `metrics.rs`
//! (collectors), `health.rs` (`TaskHealth`: side-task states the binary's supervisor writes),
//! `api.rs` (the earlier JSON endpoints and their SQL), `views/` (one file of chart SQL per
//! view, `handler.rs` runs them), `range.rs` (range -> tier and bucket size, pure),
//! `cache.rs` (answers per view and range, dropped on `NOTIFY perfstream_flush`), `assets.rs`
//! (the embedded page and uPlot), `error.rs`.
//!
//! The server opens its own pools (two connections for the API, one for `/readyz`, one that
//! listens for flushes; 5 s statement timeout) from the settings of the pool it is given, so
//! dashboards never hold a connection a flush waits for.
//!
//! ```ignore
//! perfstream_http::serve(cfg.http, stats.clone(), store.pool().clone(), shutdown).await?;
//! ```

mod api;
mod assets;
mod cache;
mod error;
mod health;
mod metrics;
mod range;
mod server;
mod settings;
mod views;

pub use error::HttpError;
pub use health::{TaskHealth, TaskState, TaskStatus};
pub use server::{HttpServer, serve};
pub use settings::HttpSettings;
