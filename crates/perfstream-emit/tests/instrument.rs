//! The instrumentation helpers end to end: an axum router behind `RequestLayer` and sqlx
//! queries timed by `QueryRecorder` against a real Postgres (`DATABASE_URL`), through the
//! `Emitter` to librdkafka's mock cluster, read back and decoded.
//!
//! Needs the `tower` and `sqlx` features (`cargo test -p perfstream-emit --features
//! tower,sqlx`; the workspace test run enables them through perfstream-e2e).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use perfstream_emit::instrument::{QueryRecorder, RequestLayer, UNMATCHED};
use perfstream_emit::{Emitter, EmitterConfig, fingerprint};
use perfstream_events::{DecodeConfig, Decoder, Event, QueryType};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use tower::ServiceExt;

/// Every event of the input topics, decoded (waits until `expected` arrived).
fn read_events(bootstrap: &str, expected: usize) -> Vec<Event> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "instrument-readback")
        .create()
        .expect("consumer");
    {
        let mut tpl = TopicPartitionList::new();
        for t in ["perf.query", "perf.request"] {
            tpl.add_partition_offset(t, 0, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
    }
    let decoder = Decoder::new(DecodeConfig::default());
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected} events",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let event = decoder
                .decode(m.payload().unwrap_or_default(), None)
                .expect("decodes");
            assert_eq!(
                m.key().unwrap_or_default(),
                perfstream_events::series_key(&event)
            );
            out.push(event);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_sqlx_queries_are_recorded_with_templates_and_one_fingerprint() {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: a running Postgres is needed (scripts/test.sh sets it)");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect to DATABASE_URL");

    let cluster = MockCluster::new(1).expect("mock cluster");
    for t in ["perf.query", "perf.request", "perf.resource"] {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let emitter = Arc::new(Emitter::new(EmitterConfig::new(bootstrap.clone())).unwrap());

    // Requests: three ids of one route, one path no route matches.
    let app = Router::new()
        .route("/campaigns/{id}", get(|| async { "campaign" }))
        .layer(RequestLayer::new(emitter.clone(), "campaign-api", "pod-0"));
    // Issue 14: /campaigns/1 carries a W3C traceparent, whose trace id the event keeps.
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    for path in ["/campaigns/1", "/campaigns/2", "/campaigns/3", "/nowhere"] {
        let mut req = Request::get(path);
        if path == "/campaigns/1" {
            req = req.header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"));
        }
        let req = req.body(axum::body::Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let want = if path == "/nowhere" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(res.status(), want, "{path}");
    }

    // Queries: one statement in two spellings, and an UPDATE through `execute`.
    let queries = QueryRecorder::new(emitter.clone(), "campaign-api", "pod-0");
    for sql in ["SELECT $1::int8 AS x", "select\n  $1::int8   as X -- again"] {
        let rows = queries
            .time(sql, sqlx::query(sql).bind(7_i64).fetch_all(&pool))
            .await
            .expect("query runs");
        assert_eq!(rows.len(), 1);
    }
    let sql = "WITH t(v) AS (VALUES (1), (2), (3)) SELECT v FROM t WHERE v IN (1, 2)";
    queries
        .time_traced(
            Some("tenant-9"),
            Some(TRACE),
            sql,
            sqlx::query(sql).execute(&pool),
        )
        .await
        .expect("query runs");

    drop((app, queries));
    let c = Arc::into_inner(emitter)
        .expect("the router and the recorder were the only other owners")
        .shutdown(Duration::from_secs(30));
    assert_eq!(
        (c.accepted, c.sent, c.dropped, c.failed),
        (7, 7, 0, 0),
        "{c:?}"
    );
    let events = read_events(&bootstrap, 7);

    let mut requests: Vec<(String, String, i32)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some((r.endpoint.clone(), r.method.clone(), r.status_code)),
            _ => None,
        })
        .collect();
    requests.sort();
    let traced: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => r.trace_id.as_deref(),
            Event::Query(q) => q.trace_id.as_deref(),
            Event::Resource(_) => None,
        })
        .collect();
    assert_eq!(
        traced,
        [TRACE, TRACE],
        "one request and one query carry the trace id"
    );
    let route = ("/campaigns/{id}".to_string(), "GET".to_string(), 200);
    let unmatched = (UNMATCHED.to_string(), "GET".to_string(), 404);
    assert_eq!(
        requests,
        vec![unmatched, route.clone(), route.clone(), route]
    );

    let q: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Query(q) => Some(q),
            _ => None,
        })
        .collect();
    assert_eq!(q.len(), 3);
    let select = fingerprint::fingerprint("select ?::int8 as x");
    assert_eq!(
        (q[0].query_hash.as_str(), q[1].query_hash.as_str()),
        (select.hash.as_str(), select.hash.as_str())
    );
    assert_eq!(
        q[0].query_text.as_deref(),
        Some(select.normalized.as_str()),
        "the text goes once"
    );
    assert_eq!(q[1].query_text, None, "the text goes once");
    assert_eq!(
        (q[0].query_type, q[0].rows_affected, q[1].rows_affected),
        (QueryType::Select, 1, 1)
    );
    let with = fingerprint::fingerprint(sql);
    assert_eq!(q[2].query_hash, with.hash);
    assert_eq!(
        q[2].query_text.as_deref(),
        Some("with t (v) as (values (?)) select v from t where v in (?)")
    );
    assert_eq!(q[2].query_type, QueryType::Select);
    assert_eq!(
        q[2].rows_affected, 2,
        "execute reports the rows the SELECT returned"
    );
    assert_eq!(q[2].tenant_id.as_deref(), Some("tenant-9"));
    assert!(
        q.iter()
            .all(|e| e.service == "campaign-api" && e.instance == "pod-0" && e.executed_at_us > 0)
    );
}
