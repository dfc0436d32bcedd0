//! The perfstream binary: CLI, config, tracing set-up, wiring and shutdown. All logic lives in
//! the library crates; this file only parses arguments, loads the config and calls them.

mod config;
mod demo;
mod embedded_pg;
mod supervise;
mod telemetry;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::Config;
use perfstream_kafka::PipelineStats;
use perfstream_store::Store;
use supervise::Supervisor;
use tracing::{info, warn};

/// perfstream: performance telemetry stream processor (Kafka -> event-time HDR rollups ->
/// Postgres, alerts -> Kafka).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Also `PERFSTREAM_CONFIG`. Env vars `PERFSTREAM_*` override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: consume, aggregate, write rollups to Postgres exactly once.
    Run,
    /// Apply the database migrations (idempotent).
    Migrate,
    /// Kafka topic administration.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Print the effective config (secrets redacted) and exit; non-zero on a bad config.
    CheckConfig,
    /// Run an in-process Kafka-protocol broker (librdkafka's mock cluster) until killed; prints
    /// its bootstrap address (and writes it to --bootstrap-file).
    DevBroker {
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long)]
        bootstrap_file: Option<PathBuf>,
    },
    /// Load generator: produce realistic events with episodes, optionally writing the truth.
    Emit(Box<perfstream_emit::GenerateArgs>),
    /// Slow queries (percentiles merged from the stored histograms, exact over the whole
    /// range), the optimisation recommendations and Apdex per endpoint, as tables, over the
    /// windows starting in [--from, --to).
    Report {
        /// Start of the range: RFC 3339 (`2026-11-30T12:00:00Z`), `now`, or relative to now
        /// (`-1h`, `-90m`, `-7d`; units s, m, h, d, w). Default: one hour ago.
        #[arg(long, allow_hyphen_values = true, conflicts_with = "since")]
        from: Option<String>,
        /// End of the range (exclusive), in the same forms as --from. Default: now.
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Shorthand for `--from -<since>` (`1h`, `24h`, `7d`).
        #[arg(long, value_parser = perfstream_emit::parse_duration)]
        since: Option<std::time::Duration>,
        /// A query is slow when its p99 or max over the range exceeds this.
        #[arg(long, default_value_t = 1000.0)]
        threshold_ms: f64,
        /// At most this many slow queries.
        #[arg(long, default_value_t = 20)]
        max_rows: usize,
        /// Tier to read: the base windows (default), `1h` or `1d`.
        #[arg(long)]
        resolution: Option<String>,
    },
    /// The whole system in one process, for a first look: in-process Kafka, a throwaway
    /// Postgres (or DATABASE_URL), the generator, the pipeline, a live summary.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create the input, dead-letter, late and alert topics (partitions, replication,
    /// retention from config).
    Create,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("perfstream: invalid configuration:\n{e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(&cfg.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perfstream: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command, cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perfstream: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command, cfg: Config) -> Result<()> {
    match cmd {
        Command::CheckConfig => {
            print!("{}", cfg.redacted_toml());
            Ok(())
        }
        Command::Migrate => {
            let store = connect(&cfg).await?;
            store.migrate().await.context("applying migrations")?;
            info!("Migrations applied.");
            Ok(())
        }
        Command::Topics {
            action: TopicsAction::Create,
        } => {
            let created = perfstream_kafka::create_topics(&cfg.kafka)
                .await
                .context("creating topics")?;
            println!("created: {created:?}");
            Ok(())
        }
        Command::DevBroker {
            brokers,
            partitions,
            bootstrap_file,
        } => {
            let broker = perfstream_kafka::DevBroker::start(brokers, partitions, &cfg.kafka.topics)
                .context("starting the mock cluster")?;
            let addr = broker.bootstrap_servers();
            println!("{addr}");
            if let Some(f) = bootstrap_file {
                std::fs::write(&f, &addr).with_context(|| format!("writing {}", f.display()))?;
            }
            shutdown_signal().await;
            Ok(())
        }
        Command::Emit(args) => {
            let summary = perfstream_emit::run(*args)
                .await
                .context("load generator")?;
            println!("{summary}");
            Ok(())
        }
        Command::Run => run(cfg).await,
        Command::Report {
            from,
            to,
            since,
            threshold_ms,
            max_rows,
            resolution,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_micros() as i64;
            let bound = |arg: &str, v: Option<String>, default: i64| match v {
                Some(s) => perfstream_store::report::parse_time_bound(&s, now)
                    .map_err(|e| anyhow::anyhow!("--{arg}: {e}")),
                None => Ok(default),
            };
            let since_us = since.map_or(3_600_000_000, |d| d.as_micros() as i64);
            let opts = perfstream_store::SlowQueryOptions {
                from_us: bound("from", from, now - since_us)?,
                to_us: bound("to", to, now)?,
                threshold_ms,
                max_rows,
                resolution,
            };
            // Checked before connecting, so a mistyped range fails at once.
            anyhow::ensure!(
                opts.from_us < opts.to_us,
                "--from must be before --to: {}",
                perfstream_store::StoreError::InvalidRange {
                    from_us: opts.from_us,
                    to_us: opts.to_us
                }
            );
            let store = connect(&cfg).await?;
            let report = perfstream_store::report::report(&store, &opts)
                .await
                .context("report")?;
            print!("{}", report.render());
            Ok(())
        }
        Command::Demo(args) => demo::run(args, cfg).await,
    }
}

/// Connects to Postgres, retrying retriable failures (server starting, overloaded) for up to
/// about 30 s before giving up with the error.
async fn connect(cfg: &Config) -> Result<Store> {
    let mut attempt = 0;
    loop {
        match Store::connect_with(
            &cfg.postgres.url,
            cfg.postgres.max_connections,
            &cfg.postgres.connection,
        )
        .await
        {
            Ok(store) => return Ok(store),
            Err(e) if e.is_retriable() && attempt < 10 => {
                attempt += 1;
                warn!(error = %e, attempt, "Cannot connect to Postgres yet; retrying.");
                tokio::time::sleep(std::time::Duration::from_secs(attempt.min(5))).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "connecting to Postgres (postgres.url = {})",
                        config::redact_url(&cfg.postgres.url)
                    )
                });
            }
        }
    }
}

/// `perfstream run`: the pipeline, plus the alert evaluator, the HTTP server and the
/// maintenance job as supervised side tasks (`supervise.rs`). Returns `Ok` after an orderly
/// shutdown on SIGINT/SIGTERM. A side task that fails (error, panic, early return) fires that
/// same shutdown (the pipeline flushes and commits), shows in `/readyz` and `/metrics` until
/// the HTTP server stops last, and makes this return an error naming the task: the process
/// exits non-zero for its orchestrator to restart it. Nothing is restarted in process.
async fn run(cfg: Config) -> Result<()> {
    let label = perfstream_store::base_resolution_label(cfg.window.window.as_micros() as i64)
        .map_err(|e| anyhow::anyhow!("config key `window.window` = {:?} cannot be stored: {e}; use a size that divides one hour (e.g. 10s, 1m, 5m)", cfg.window.window))?;
    info!(resolution = %label, "Base tier resolution.");
    let store = connect(&cfg).await?;
    store.migrate().await.context("applying migrations")?;
    if cfg.kafka.create_topics {
        perfstream_kafka::create_topics(&cfg.kafka)
            .await
            .context("creating topics")?;
    }
    if let Some(w) = perfstream_kafka::check_retention(&cfg.kafka, retention_needed(&cfg.window)) {
        warn!("{w}");
    }
    let stats = Arc::new(PipelineStats::default());
    // One shutdown signal fans out to the pipeline, the alert evaluator and the maintenance
    // job; SIGTERM fires it, and so does a failed side task (see `supervise`).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
    }
    // The HTTP server stops last, so /readyz and /metrics show a failed task while the
    // pipeline drains.
    let (http_stop_tx, http_stop_rx) = tokio::sync::watch::channel(false);
    let health = perfstream_http::TaskHealth::default();
    // The notifier's delivery figures, read by `/metrics` at scrape time.
    let notify_stats = perfstream_notify::NotifyStats::for_targets(
        cfg.notify.targets.iter().map(|t| t.name.as_str()),
    );
    // Bound before anything starts, so a port in use fails start-up with a clear error.
    let http = if cfg.http.enabled {
        let server =
            perfstream_http::HttpServer::bind(&cfg.http, stats.clone(), store.pool().clone())
                .await
                .with_context(|| {
                    format!(
                        "starting side task `http`: config key `http.listen` = {}",
                        cfg.http.listen
                    )
                })?;
        info!(listen = %cfg.http.listen, "Serving /metrics, /healthz, /readyz and the dashboard.");
        Some(
            server
                .with_tasks(health.clone())
                .with_collector(notify_stats.collector()),
        )
    } else {
        None
    };
    let mut tasks = Supervisor::new(health, stop_tx.clone());
    tasks.spawn("evaluator", {
        let (alerts, pool, kafka, rx) = (
            cfg.alerts.clone(),
            store.pool().clone(),
            cfg.kafka.clone(),
            stop_rx.clone(),
        );
        let options = perfstream_evaluator::RunOptions {
            connection: cfg.postgres.connection.clone(),
            role: None,
        };
        async move {
            perfstream_evaluator::run_evaluator_with(alerts, pool, &kafka, options, wait_stop(rx))
                .await
                .context("alert evaluator")
        }
    });
    tasks.spawn("notifier", {
        let (notify, pool, group, timeout, shutdown) = (
            cfg.notify.clone(),
            store.pool().clone(),
            cfg.kafka.group_id.clone(),
            cfg.postgres.connection.operation_timeout,
            wait_stop(stop_rx.clone()),
        );
        // Delivery figures, in `/metrics`; the `alert_deliveries` table shows the same per
        // delivery.
        let stats = notify_stats.clone();
        async move {
            perfstream_notify::run_notifier(notify, pool, group, stats, timeout, shutdown)
                .await
                .context("alert notifier")
        }
    });
    if let Some(server) = http {
        let shutdown = wait_stop(http_stop_rx);
        tasks.spawn("http", async move {
            server.run(shutdown).await.context("http server")
        });
    }
    tasks.spawn("maintenance", {
        let (store, settings, shutdown) = (
            store.clone(),
            cfg.maintenance.clone(),
            wait_stop(stop_rx.clone()),
        );
        async move {
            perfstream_store::run_maintenance(store, settings, shutdown).await;
            Ok(())
        }
    });
    info!(bootstrap = %cfg.kafka.bootstrap_servers, group = %cfg.kafka.group_id, "Starting pipeline.");
    let pipeline = tasks
        .watch(perfstream_kafka::run_pipeline(
            cfg.kafka,
            cfg.pipeline,
            cfg.window,
            cfg.decode,
            store,
            stats,
            wait_stop(stop_rx),
        ))
        .await
        .context("pipeline");
    // The pipeline returns on shutdown or on a fatal error: stop the others either way.
    let _ = stop_tx.send(true);
    let _ = http_stop_tx.send(true);
    match (pipeline, tasks.finish().await) {
        (Ok(()), side) => side,
        (Err(pipeline), Ok(())) => Err(pipeline),
        (Err(pipeline), Err(side)) => Err(anyhow::anyhow!(
            "{side:#}; the pipeline failed too: {pipeline:#}"
        )),
    }
}

async fn wait_stop(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stopped| *stopped).await;
}

/// Kafka must keep data for the correction horizon plus the longest a window stays open
/// (window + allowed lateness + idle timeout), so a restart can always replay from its resume
/// offset.
fn retention_needed(w: &perfstream_window::WindowConfig) -> std::time::Duration {
    w.correction_horizon + w.window + w.allowed_lateness + w.idle_timeout
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
