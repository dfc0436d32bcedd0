//! perfstream's operations surface: one HTTP server for Prometheus, the orchestrator's probes
//! and people.
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | pipeline counters and side-task health (`perfstream_task_up`, `perfstream_task_failures_total`), OpenMetrics text, read from `PipelineStats` and `TaskHealth` at scrape time |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 503 naming the task when a side task failed (`TaskHealth`); else 200 when Postgres answers `SELECT 1` within 1 s, else 503 |
//! | `GET /` | the dashboard: one static page (`assets/dashboard.html`), vanilla JS, no CDN |
//! | `GET /api/overview`, `/api/slow-queries`, `/api/recommendations`, `/api/alerts`, `/api/pipeline` | JSON the dashboard polls |
//!
//! Key design choice: the pipeline never pays for observability. It bumps plain atomics; the
//! metrics are a custom collector that snapshots them when scraped, and the dashboard reads
//! only committed rows through the analyst views and functions (`docs/analysts.md`), which
//! Postgres renders as JSON. This crate writes nothing.
//!
//! Layout: `settings.rs` (`HttpSettings`), `server.rs` (bind, router, probes), `metrics.rs`
//! (collectors), `health.rs` (`TaskHealth`: side-task states the binary's supervisor writes),
//! `api.rs` (the JSON endpoints and their SQL), `error.rs`.
//!
//! The server opens its own pools (two connections for the API, one for `/readyz`; 5 s
//! statement timeout) from the settings of the pool it is given, so dashboards never hold a
//! connection a flush waits for.
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
