//! `perfstream demo`: the whole system in one process, for a first look. An in-process
//! Kafka-protocol broker (librdkafka's mock cluster), a throwaway Postgres from the installed
//! binaries (or `DATABASE_URL`), the load generator with its episodes, the pipeline with 10 s
//! windows, and a live summary line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use perfstream_kafka::{DevBroker, PipelineStats};
use perfstream_store::Store;
use sqlx::Row;
use tokio::sync::watch;

use crate::config::Config;
use crate::embedded_pg::EmbeddedPg;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stop after this long (`60s`, `5m`); default: run until Ctrl-C.
    #[arg(long, value_parser = perfstream_emit::parse_duration)]
    duration: Option<Duration>,
    /// Keep the throwaway database (and print how to reach it) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// Events per second the generator produces.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Port of the throwaway Postgres; 0 picks a free one. Ignored with DATABASE_URL.
    #[arg(long, default_value_t = 0)]
    pg_port: u16,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds between two summary lines.
    #[arg(long, default_value_t = 2)]
    summary_every: u64,
}

pub async fn run(args: DemoArgs, mut cfg: Config) -> Result<()> {
    let broker = DevBroker::start(1, 3, &cfg.kafka.topics)
        .context("starting the in-process Kafka broker")?;
    let bootstrap = broker.bootstrap_servers();
    let pg = match std::env::var("DATABASE_URL") {
        Ok(_) => None,
        Err(_) => Some(EmbeddedPg::start(args.pg_port, args.keep)?),
    };
    let db_url = pg
        .as_ref()
        .map(EmbeddedPg::url)
        .unwrap_or_else(|| cfg.postgres.url.clone());
    let store = Store::connect_with(
        &db_url,
        cfg.postgres.max_connections,
        &cfg.postgres.connection,
    )
    .await
    .with_context(|| format!("connecting to {}", crate::config::redact_url(&db_url)))?;
    store.migrate().await.context("applying migrations")?;

    cfg.kafka.bootstrap_servers = bootstrap.clone();
    cfg.kafka.group_id = "perfstream-demo".into();
    cfg.window.window = Duration::from_secs(10);
    cfg.window.idle_timeout = Duration::from_secs(3);
    cfg.pipeline.flush_interval_ms = 500;

    println!("perfstream demo");
    println!("  Kafka (in-process mock cluster): {bootstrap}");
    println!(
        "    e.g. kcat -b {bootstrap} -t {} -C -o beginning",
        cfg.kafka.topics.dlq
    );
    println!("  Postgres: psql '{}'", crate::config::redact_url(&db_url));
    println!("    e.g. SELECT * FROM get_slow_queries(now() - interval '1 hour');");
    println!(
        "  10 s windows; stop with Ctrl-C{}",
        args.duration
            .map(|d| format!(" or after {d:?}"))
            .unwrap_or_default()
    );
    println!();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(PipelineStats::default());
    let gen_args = perfstream_emit::GenerateArgs::from_args([
        "--bootstrap".to_string(),
        bootstrap.clone(),
        "--rate".into(),
        args.rate.to_string(),
        "--duration".into(),
        format!(
            "{}s",
            args.duration
                .unwrap_or(Duration::from_secs(24 * 3600))
                .as_secs()
                .max(10)
        ),
        "--window".into(),
        "10s".into(),
        "--seed".into(),
        args.seed.to_string(),
        "--progress-interval".into(),
        "24h".into(),
    ])
    .context("generator arguments")?;
    let gen_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = tokio::spawn(perfstream_emit::run_until(gen_args, Some(gen_stop.clone())));
    let pipeline = tokio::spawn(perfstream_kafka::run_pipeline(
        cfg.kafka.clone(),
        cfg.pipeline.clone(),
        cfg.window.clone(),
        cfg.decode.clone(),
        store.clone(),
        stats.clone(),
        wait_stop(stop_rx),
    ));

    let evaluator = tokio::spawn({
        let (alerts, pool, kafka, rx) = (
            cfg.alerts.clone(),
            store.pool().clone(),
            cfg.kafka.clone(),
            stop_tx.subscribe(),
        );
        let options = perfstream_evaluator::RunOptions {
            connection: cfg.postgres.connection.clone(),
            role: None,
        };
        async move {
            perfstream_evaluator::run_evaluator_with(alerts, pool, &kafka, options, wait_stop(rx))
                .await
        }
    });
    let http = if cfg.http.enabled {
        let server =
            perfstream_http::HttpServer::bind(&cfg.http, stats.clone(), store.pool().clone())
                .await
                .with_context(|| {
                    format!(
                        "config key `http.listen` = {} (set PERFSTREAM_HTTP__LISTEN)",
                        cfg.http.listen
                    )
                })?;
        let addr = server
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| cfg.http.listen.clone());
        println!("  Dashboard: http://{addr}/  (Prometheus metrics at /metrics)");
        Some(tokio::spawn(server.run(wait_stop(stop_tx.subscribe()))))
    } else {
        None
    };
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let mut tick = tokio::time::interval(Duration::from_secs(args.summary_every.max(1)));
    let mut last = (Instant::now(), 0u64);
    let ctrl_c = crate::shutdown_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut ctrl_c => break,
        }
        if pipeline.is_finished() {
            break;
        }
        let s = stats.snapshot();
        let rate = (s.messages_in - last.1) as f64 / last.0.elapsed().as_secs_f64().max(0.001);
        last = (Instant::now(), s.messages_in);
        let rows = row_counts(&store).await.unwrap_or_default();
        println!(
            "[{:>4}s] in {:>7.0} msg/s | aggregated {} | closed rollups {} | rows q/r/res {}/{}/{} | corrections {} | late {} | dead-lettered {} | flushes {} | lag {} | alerts {}",
            started.elapsed().as_secs(),
            rate,
            s.events_aggregated,
            s.windows_closed,
            rows.0,
            rows.1,
            rows.2,
            s.corrections,
            s.too_late,
            s.dead_lettered,
            s.flushes,
            s.lag,
            rows.3,
        );
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    println!("Stopping: flushing closed windows.");
    let _ = stop_tx.send(true);
    // The generator's sending thread cannot be aborted: it stops at its next message and
    // flushes what it sent while the broker is still up.
    gen_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Err(e) = generator.await.context("generator task")? {
        eprintln!("generator: {e:#}");
    }
    let result = pipeline.await.context("pipeline task")?;
    if let Some(h) = http
        && let Err(e) = h.await.context("http task")?
    {
        eprintln!("http server: {e:#}");
    }
    if let Err(e) = evaluator.await.context("alert evaluator task")? {
        eprintln!("alert evaluator: {e:#}");
    }
    drop(broker);
    let rows = row_counts(&store).await.unwrap_or_default();
    println!(
        "Done: {} query, {} request, {} resource rollup rows, {} alert transitions.",
        rows.0, rows.1, rows.2, rows.3
    );
    store.pool().close().await;
    drop(pg);
    result.context("pipeline")
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Rollup rows per kind, and alert transitions once the alerts tables exist.
async fn row_counts(store: &Store) -> Result<(i64, i64, i64, i64)> {
    let r = sqlx::query(
        "SELECT (SELECT count(*) FROM query_rollups), (SELECT count(*) FROM request_rollups), \
         (SELECT count(*) FROM resource_rollups), to_regclass('alerts') IS NOT NULL",
    )
    .fetch_one(store.pool())
    .await?;
    let alerts = if r.get::<bool, _>(3) {
        sqlx::query("SELECT count(*) FROM alerts")
            .fetch_one(store.pool())
            .await?
            .get(0)
    } else {
        0
    };
    Ok((r.get(0), r.get(1), r.get(2), alerts))
}
