//! The HTTP surface against a real Postgres: one fresh, migrated database per test
//! (`#[sqlx::test]`; DATABASE_URL must let the user create databases), a server on port 0 and
//! plain HTTP/1.0 requests over a `TcpStream`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{DateTime, Utc};
use perfstream_http::{HttpSettings, TaskHealth, serve};
use perfstream_pipeline::PipelineStats;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod support;
use support::{get, insert_query, insert_request, start, start_with_collectors, this_minute};

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn serve_answers_probes_metrics_and_the_dashboard_then_stops(pool: PgPool) {
    let stats = Arc::new(PipelineStats::default());
    stats.messages_in.store(12_345, Relaxed);
    stats.events_aggregated.store(12_000, Relaxed);
    stats.dead_lettered.store(7, Relaxed);
    stats.too_late.store(3, Relaxed);
    stats.corrections.store(11, Relaxed);
    stats.flushes.store(42, Relaxed);
    stats.flush_failures.store(2, Relaxed);
    stats.fenced.store(1, Relaxed);
    stats.rows_written.store(999, Relaxed);
    stats.assigned_partitions.store(4, Relaxed);
    stats.watermark_us.store(1_767_225_660_250_000, Relaxed);
    stats.lag.store(1234, Relaxed);

    // `serve` takes an address, so find a free port first; a race for it would fail the test
    // loudly (bind error), never pass it wrongly.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let settings = HttpSettings {
        listen: addr.to_string(),
        enabled: true,
    };
    let (tx, rx) = oneshot::channel::<()>();
    let server: JoinHandle<_> = tokio::spawn(serve(settings, stats.clone(), pool, async move {
        let _ = rx.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(!server.is_finished(), "serve returned before listening");
        assert!(
            tokio::time::Instant::now() < deadline,
            "server not up in 10 s"
        );
        tokio::task::yield_now().await;
    }

    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.head.contains("application/openmetrics-text"),
        "{}",
        metrics.head
    );
    for line in [
        "perfstream_messages_in_total 12345",
        "perfstream_events_aggregated_total 12000",
        "perfstream_dead_lettered_total 7",
        "perfstream_too_late_total 3",
        "perfstream_corrections_total 11",
        "perfstream_flushes_total 42",
        "perfstream_flush_failures_total 2",
        "perfstream_fenced_total 1",
        "perfstream_rows_written_total 999",
        "perfstream_assigned_partitions 4",
        "perfstream_watermark_seconds 1767225660.25",
        "perfstream_consumer_lag_messages 1234",
        "# TYPE perfstream_flushes counter",
        "# TYPE perfstream_assigned_partitions gauge",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            metrics.body
        );
    }
    // Read at scrape time: a later change shows in the next scrape.
    stats.flushes.fetch_add(1, Relaxed);
    let metrics = get(addr, "/metrics").await;
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "perfstream_flushes_total 43")
    );

    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.head.contains("text/html"), "{}", page.head);
    assert!(page.body.contains("<title>perfstream</title>"));
    for path in [
        "/api/view/",
        "/api/meta",
        "/assets/uplot.js",
        "/assets/uplot.css",
    ] {
        assert!(page.body.contains(path), "dashboard does not load {path}");
    }
    // Offline machines: nothing is loaded from elsewhere (only this server's /assets/).
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(!page.body.contains(external), "dashboard loads {external}");
    }
    let js = get(addr, "/assets/uplot.js").await;
    assert_eq!(js.status, 200);
    assert!(js.head.contains("text/javascript"), "{}", js.head);
    assert!(js.body.contains("uPlot"), "not the vendored uPlot");
    let css = get(addr, "/assets/uplot.css").await;
    assert_eq!(css.status, 200);
    assert!(css.head.contains("text/css"), "{}", css.head);

    // A fresh database: empty lists, not errors.
    let empty = get(addr, "/api/overview").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(
        empty.json(),
        serde_json::json!({"services": [], "top_endpoints": []})
    );
    for path in ["/api/slow-queries", "/api/recommendations"] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.json(), serde_json::json!([]), "{path}");
    }

    let pipeline = get(addr, "/api/pipeline").await;
    assert_eq!(pipeline.status, 200);
    assert_eq!(pipeline.json()["flushes"], 43);
    assert_eq!(get(addr, "/nope").await.status, 404);

    tx.send(()).expect("server still running");
    server.await.expect("join").expect("serve ends cleanly");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn overview_shows_the_latest_window_per_service_and_top_endpoints(pool: PgPool) {
    let now = this_minute(&pool).await;
    let older = now - chrono::Duration::minutes(3);
    let latest = now - chrono::Duration::minutes(2);
    insert_request(
        &pool,
        older,
        ("checkout", "/pay"),
        (100, 0),
        (50_000, 80_000),
    )
    .await;
    insert_request(
        &pool,
        latest,
        ("checkout", "/pay"),
        (200, 10),
        (90_000, 120_000),
    )
    .await;
    insert_request(
        &pool,
        latest,
        ("checkout", "/cart"),
        (300, 0),
        (20_000, 30_000),
    )
    .await;
    insert_query(&pool, latest, ("checkout", "q1"), 50, 40_000, 1).await;
    insert_query(&pool, latest, ("checkout", "q2"), 10, 70_000, 1).await;
    insert_request(&pool, latest, ("search", "/find"), (10, 0), (5_000, 6_000)).await;
    let (addr, _stop) = start(pool, Arc::new(PipelineStats::default())).await;

    let reply = get(addr, "/api/overview").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.head.contains("application/json"));
    let o = reply.json();

    let services = o["services"].as_array().expect("services");
    assert_eq!(services.len(), 2, "{o}");
    let checkout = &services[0];
    assert_eq!(checkout["service"], "checkout");
    let ws: DateTime<Utc> = checkout["window_start"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .expect("window_start")
        .into();
    assert_eq!(ws, latest);
    // Worst endpoint of the latest window, never an average of percentiles.
    assert_eq!(checkout["requests"], 500);
    assert_eq!(checkout["request_p95_ms"].as_f64(), Some(90.0));
    assert_eq!(checkout["request_p99_ms"].as_f64(), Some(120.0));
    assert_eq!(checkout["error_rate"].as_f64(), Some(10.0 / 500.0));
    assert_eq!(checkout["queries"], 60);
    assert_eq!(checkout["query_p99_ms"].as_f64(), Some(70.0));
    assert_eq!(services[1]["service"], "search");
    assert_eq!(services[1]["queries"], Value::Null);

    let top = o["top_endpoints"].as_array().expect("top endpoints");
    let names: Vec<_> = top
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["/pay", "/cart", "/find"]);
    assert_eq!(top[0]["worst_p99_ms"].as_f64(), Some(120.0));
    assert_eq!(top[0]["requests"], 300);
    let series = top[0]["p99_series"].as_array().expect("series");
    let p99s: Vec<_> = series.iter().map(|p| p[1].as_f64()).collect();
    assert_eq!(p99s, [Some(80.0), Some(120.0)], "oldest first");
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn slow_queries_and_recommendations_come_from_the_analyst_functions(pool: PgPool) {
    let now = this_minute(&pool).await;
    let recent = now - chrono::Duration::minutes(5);
    let old = now - chrono::Duration::minutes(120);
    // 2 s p99 touching 5000 rows per call: slow, and slow_query_many_rows (critical: >= 1 s).
    insert_query(&pool, recent, ("orders", "scan"), 20, 2_000_000, 5000).await;
    insert_query(&pool, recent, ("orders", "fast"), 20, 3_000, 1).await;
    // Slow, but two hours ago.
    insert_query(&pool, old, ("orders", "ancient"), 20, 3_000_000, 1).await;
    let (addr, _stop) = start(pool, Arc::new(PipelineStats::default())).await;

    let slow = get(addr, "/api/slow-queries?since_minutes=60").await;
    assert_eq!(slow.status, 200, "{}", slow.body);
    let rows = slow.json();
    let rows = rows.as_array().expect("list");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["query_hash"], "scan");
    assert_eq!(rows[0]["worst_p99_ms"].as_f64(), Some(2000.0));
    assert_eq!(rows[0]["calls"], 20);
    assert_eq!(
        rows[0]["normalized_text"],
        "SELECT * FROM orders WHERE id = ?"
    );

    let wider = get(addr, "/api/slow-queries?since_minutes=180&threshold_ms=1").await;
    let hashes: Vec<_> = wider
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["query_hash"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(hashes, ["ancient", "scan", "fast"], "worst first");

    let recs = get(addr, "/api/recommendations?since_minutes=60").await;
    assert_eq!(recs.status, 200, "{}", recs.body);
    let recs = recs.json();
    let many_rows: Vec<_> = recs
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| r["kind"] == "slow_query_many_rows")
        .collect();
    assert_eq!(many_rows.len(), 1, "{recs}");
    let order: Vec<_> = recs
        .as_array()
        .expect("list")
        .iter()
        .map(|r| format!("{} {} {}", r["severity"], r["kind"], r["target"]))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "critical first, then kind and target");
    assert!(order.len() >= 2, "{order:?}");
    assert_eq!(many_rows[0]["target"], "orders/scan");
    assert_eq!(many_rows[0]["severity"], "critical");

    for bad in [
        "/api/slow-queries?since_minutes=0",
        "/api/recommendations?since_minutes=999999",
        "/api/slow-queries?threshold_ms=-1",
        "/api/slow-queries?since_minutes=abc",
    ] {
        assert_eq!(get(addr, bad).await.status, 400, "{bad}");
    }
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn alerts_lists_firing_ones_and_transitions_and_is_empty_without_the_table(pool: PgPool) {
    for (id, state, rule, at_min) in [
        ("a1", "firing", "slow_query", 10),
        ("a2", "firing", "endpoint_sla", 8),
        ("a2", "resolved", "endpoint_sla", 4),
    ] {
        sqlx::query(
            "INSERT INTO alerts (alert_id, state, rule, severity, service, alert_key, labels,
                 observed_value, threshold, clear_threshold, window_start, window_end,
                 transitioned_at, message)
             VALUES ($1, $2, $3, 'warning', 'checkout', 'k', '{\"service\": \"checkout\"}',
                 1500, 1000, 800, now() - make_interval(mins => $4),
                 now() - make_interval(mins => $4 - 1), now() - make_interval(mins => $4), 'm')",
        )
        .bind(id)
        .bind(state)
        .bind(rule)
        .bind(at_min)
        .execute(&pool)
        .await
        .expect("insert alert");
    }
    let (addr, _stop) = start(pool.clone(), Arc::new(PipelineStats::default())).await;

    let reply = get(addr, "/api/alerts").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let a = reply.json();
    let firing = a["firing"].as_array().expect("firing");
    assert_eq!(firing.len(), 1, "{a}");
    assert_eq!(firing[0]["alert_id"], "a1");
    assert_eq!(firing[0]["labels"]["service"], "checkout");
    let transitions: Vec<_> = a["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            format!(
                "{}/{}",
                t["alert_id"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        transitions,
        ["a2/resolved", "a2/firing", "a1/firing"],
        "newest first"
    );

    // A database migrated before alerting existed.
    sqlx::query("DROP TABLE alerts")
        .execute(&pool)
        .await
        .expect("drop");
    let reply = get(addr, "/api/alerts").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({"firing": [], "transitions": []})
    );
    // Other failures are errors, not empty lists.
    sqlx::query("DROP VIEW top_endpoints_by_p99")
        .execute(&pool)
        .await
        .expect("drop");
    let reply = get(addr, "/api/overview").await;
    assert_eq!(reply.status, 500);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("top_endpoints_by_p99")
    );
}

#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn readyz_is_503_when_postgres_fails_or_does_not_answer_within_a_second(pool: PgPool) {
    let (addr, _stop) = start(pool, Arc::new(PipelineStats::default())).await;
    assert_eq!(get(addr, "/readyz").await.status, 200);

    // Nothing listens.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let gone = PgPoolOptions::new()
        .connect_lazy(&format!("postgres://postgres@{refused}/postgres"))
        .expect("lazy pool");
    let (addr, _stop1) = start(gone, Arc::new(PipelineStats::default())).await;
    // (sqlx retries refused connections until the acquire deadline: the 1 s bound answers.)
    assert_eq!(get(addr, "/readyz").await.status, 503);
    assert_eq!(get(addr, "/healthz").await.status, 200);

    // A "server" that accepts connections and never answers: the 1 s timeout decides.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let hanging = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy(&format!("postgres://postgres@{silent_addr}/postgres"))
        .expect("lazy pool");
    let (addr, _stop2) = start(hanging, Arc::new(PipelineStats::default())).await;
    let started = std::time::Instant::now();
    let reply = get(addr, "/readyz").await;
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_disabled_server_returns_at_once_and_a_bad_address_is_an_error() {
    let pool = PgPoolOptions::new()
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    let stats = Arc::new(PipelineStats::default());
    let off = HttpSettings {
        enabled: false,
        ..HttpSettings::default()
    };
    serve(off, stats.clone(), pool.clone(), std::future::pending())
        .await
        .expect("disabled is fine");
    let bad = HttpSettings {
        listen: "not an address".to_owned(),
        enabled: true,
    };
    let err = serve(bad, stats, pool, std::future::pending())
        .await
        .expect_err("cannot bind");
    assert!(err.to_string().contains("not an address"), "{err}");
}

/// Issue 11, section 5: a failed side task makes the process unready whatever Postgres says,
/// names the task and the reason, and shows in `/metrics` until the process exits.
#[sqlx::test(migrator = "perfstream_store::MIGRATOR")]
async fn a_failed_side_task_makes_readyz_503_naming_it_and_shows_in_metrics(pool: PgPool) {
    let tasks = TaskHealth::default();
    for task in ["evaluator", "http", "maintenance"] {
        tasks.running(task);
    }
    // The notifier's delivery figures, registered as `perfstream run` does.
    let notify = perfstream_notify::NotifyStats::for_targets(["am", "ops-hook"]);
    let (addr, _stop) = start_with_collectors(
        pool,
        Arc::new(PipelineStats::default()),
        tasks.clone(),
        vec![notify.collector()],
    )
    .await;
    let ready = get(addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let metrics = get(addr, "/metrics").await;
    for line in [
        "# TYPE perfstream_alert_notifications_delivered counter",
        "perfstream_alert_notifications_delivered_total{target=\"am\"} 0",
        "perfstream_alert_notification_failures_total{target=\"ops-hook\"} 0",
        "perfstream_alert_notifications_resent_total{target=\"am\"} 0",
        "perfstream_alert_notifications_pending{target=\"ops-hook\"} 0.0",
        "perfstream_alert_notification_oldest_pending_seconds{target=\"am\"} 0.0",
        "# TYPE perfstream_task_up gauge",
        "perfstream_task_up{task=\"evaluator\"} 1",
        "perfstream_task_up{task=\"maintenance\"} 1",
        "perfstream_task_failures_total{task=\"evaluator\"} 0",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            metrics.body
        );
    }

    tasks.failed(
        "evaluator",
        "alert evaluator: stored alert state x/k is invalid: unknown rule",
    );
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.body,
        "not ready\ntask evaluator failed: alert evaluator: stored alert state x/k is invalid: unknown rule\n"
    );
    assert_eq!(
        get(addr, "/healthz").await.status,
        200,
        "alive until it exits"
    );
    let metrics = get(addr, "/metrics").await;
    for line in [
        "perfstream_task_up{task=\"evaluator\"} 0",
        "perfstream_task_up{task=\"http\"} 1",
        "perfstream_task_failures_total{task=\"evaluator\"} 1",
        "perfstream_task_failures_total{task=\"maintenance\"} 0",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            metrics.body
        );
    }
}
