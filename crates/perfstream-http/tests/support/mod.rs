//! Fixtures for the HTTP tests: a server on port 0, a plain HTTP/1.0 client over a
//! `TcpStream`, and rollup rows inserted with explicit figures.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use perfstream_http::{HttpServer, HttpSettings, TaskHealth};
use perfstream_pipeline::PipelineStats;
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One GET with HTTP/1.0, so the server closes the connection after the body.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// A server on a free port, stopped when the sender is dropped or fired.
pub async fn start(pool: PgPool, stats: Arc<PipelineStats>) -> (SocketAddr, oneshot::Sender<()>) {
    start_with_tasks(pool, stats, TaskHealth::default()).await
}

/// Like [`start`], reporting the side tasks of `tasks`.
pub async fn start_with_tasks(
    pool: PgPool,
    stats: Arc<PipelineStats>,
    tasks: TaskHealth,
) -> (SocketAddr, oneshot::Sender<()>) {
    start_with_collectors(pool, stats, tasks, Vec::new()).await
}

/// Like [`start_with_tasks`], with more collectors in `/metrics` (as `perfstream run` adds the
/// notifier's).
pub async fn start_with_collectors(
    pool: PgPool,
    stats: Arc<PipelineStats>,
    tasks: TaskHealth,
    collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
) -> (SocketAddr, oneshot::Sender<()>) {
    let settings = HttpSettings {
        listen: "127.0.0.1:0".to_owned(),
        enabled: true,
    };
    let mut server = HttpServer::bind(&settings, stats, pool)
        .await
        .expect("bind")
        .with_tasks(tasks);
    for c in collectors {
        server = server.with_collector(c);
    }
    let addr = server.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// The start of the current minute, from the database clock (the views compare with now()).
pub async fn this_minute(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT date_trunc('minute', now())")
        .fetch_one(pool)
        .await
        .expect("now")
}

pub async fn insert_request(
    pool: &PgPool,
    ws: DateTime<Utc>,
    (service, endpoint): (&str, &str),
    (count, errors): (i64, i64),
    (p95_us, p99_us): (i64, i64),
) {
    sqlx::query(
        "INSERT INTO request_rollups (resolution, window_start, window_end, service, endpoint,
             method, count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us,
             hist, status_2xx, status_3xx, status_4xx, status_5xx, status_other)
         VALUES ('1m', $1, $1 + interval '1 minute', $2, $3, 'GET', $4, $4 * 1000, 100,
             $6 * 2, 900, $5, $5, $6, $6 * 2, '\\x00', $4 - $7, 0, 0, $7, 0)",
    )
    .bind(ws)
    .bind(service)
    .bind(endpoint)
    .bind(count)
    .bind(p95_us)
    .bind(p99_us)
    .bind(errors)
    .execute(pool)
    .await
    .expect("insert request rollup");
}

pub async fn insert_query(
    pool: &PgPool,
    ws: DateTime<Utc>,
    (service, hash): (&str, &str),
    count: i64,
    p99_us: i64,
    rows_per_call: i64,
) {
    sqlx::query(
        "INSERT INTO query_rollups (resolution, window_start, window_end, service, query_hash,
             query_type, count, sum_us, min_us, max_us, p50_us, p90_us, p95_us, p99_us, p999_us,
             hist, rows_sum, rows_max)
         VALUES ('1m', $1, $1 + interval '1 minute', $2, $3, 'select', $4, $4 * $5 / 2, 10,
             $5, $5 / 4, $5 / 2, $5 / 2, $5, $5, '\\x00', $4 * $6, $6)",
    )
    .bind(ws)
    .bind(service)
    .bind(hash)
    .bind(count)
    .bind(p99_us)
    .bind(rows_per_call)
    .execute(pool)
    .await
    .expect("insert query rollup");
    sqlx::query(
        "INSERT INTO query_catalog VALUES ($1, 'select', 'SELECT * FROM orders WHERE id = ?', now(), now())
         ON CONFLICT DO NOTHING",
    )
    .bind(hash)
    .execute(pool)
    .await
    .expect("insert catalog");
}
