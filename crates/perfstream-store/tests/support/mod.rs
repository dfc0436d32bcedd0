//! Fixtures for the store tests: rollups built from explicit values with the window crate's own
//! recording, so expected figures come from the same code the pipeline runs.
#![allow(dead_code)]

use perfstream_events::QueryType;
use perfstream_store::{Claim, FlushCommit, FlushWrite, PartitionProgress, Store};
use perfstream_window::{
    DEFAULT_SIGFIG, Latency, QueryFigures, QueryKey, QueryRollup, RequestFigures, RequestKey,
    RequestRollup, ResourceFigures, ResourceKey, ResourceRollup, Rollups,
};

pub const MIN_US: i64 = 60_000_000;
pub const HOUR_US: i64 = 3_600_000_000;
/// 2026-01-01T00:00:00Z, a base for test windows.
pub const T0: i64 = 1_767_225_600_000_000;

pub const GROUP: &str = "g";
pub const TOPIC: &str = "perf.query";

pub fn latency(values: &[i64]) -> Latency {
    let mut l = Latency::new(DEFAULT_SIGFIG);
    for v in values {
        l.record(*v);
    }
    l
}

pub fn query_key(service: &str, hash: &str) -> QueryKey {
    QueryKey {
        service: service.to_owned(),
        query_hash: hash.to_owned(),
        query_type: QueryType::Select,
        tenant_id: String::new(),
    }
}

pub fn query(ws: i64, service: &str, hash: &str, values: &[i64], rows: i64) -> QueryRollup {
    QueryRollup {
        window_start_us: ws,
        window_end_us: ws + MIN_US,
        key: query_key(service, hash),
        figures: QueryFigures {
            latency: latency(values),
            rows_sum: rows * values.len() as i64,
            rows_max: rows,
            query_text: Some(format!("SELECT * FROM t_{hash} WHERE id = ?")),
            samples: Vec::new(),
        },
    }
}

pub fn request(
    ws: i64,
    service: &str,
    endpoint: &str,
    values: &[i64],
    errors: u64,
) -> RequestRollup {
    let n = values.len() as u64;
    RequestRollup {
        window_start_us: ws,
        window_end_us: ws + MIN_US,
        key: RequestKey {
            service: service.to_owned(),
            endpoint: endpoint.to_owned(),
            method: "GET".to_owned(),
        },
        figures: RequestFigures {
            latency: latency(values),
            status_2xx: n - errors,
            status_3xx: 0,
            status_4xx: 0,
            status_5xx: errors,
            status_other: 0,
            samples: Vec::new(),
        },
    }
}

/// A resource rollup from samples of (cpu ratio, memory used, memory limit, pool active,
/// pool max, pool waiters), one per 10 s from `ws`.
pub fn resource(
    ws: i64,
    service: &str,
    instance: &str,
    samples: &[(f64, i64, i64, i64, i64, i64)],
    cache: (i64, i64),
) -> ResourceRollup {
    let mut f = ResourceFigures::default();
    for (i, (cpu, used, limit, active, max, waiters)) in samples.iter().enumerate() {
        let at = ws + i as i64 * 10_000_000;
        f.samples += 1;
        f.cpu_ppm.record(perfstream_window::ratio_to_ppm(*cpu), at);
        f.memory_used_bytes.record(*used, at);
        f.memory_limit_bytes.record(*limit, at);
        f.memory_utilization_ppm.record(
            perfstream_window::ratio_to_ppm(*used as f64 / *limit as f64),
            at,
        );
        f.interval_us.record(10_000_000, at);
        f.pool_active.record(*active, at);
        f.pool_max.record(*max, at);
        f.pool_utilization_ppm.record(
            perfstream_window::ratio_to_ppm(*active as f64 / *max as f64),
            at,
        );
        f.pool_waiters.record(*waiters, at);
        f.pool_wait_us.record(*waiters * 1000, at);
        f.io_read_bytes.record(4096, at);
        f.io_write_bytes.record(1024, at);
    }
    f.cache_hits = cache.0;
    f.cache_misses = cache.1;
    ResourceRollup {
        window_start_us: ws,
        window_end_us: ws + MIN_US,
        key: ResourceKey {
            service: service.to_owned(),
            instance: instance.to_owned(),
        },
        figures: f,
    }
}

/// Progress of flush number `seq` (1, 2, ... within the claim) of `partition`.
pub fn progress(
    claim: &Claim,
    partition: i32,
    seq: i64,
    offset: i64,
    watermark_us: i64,
) -> PartitionProgress {
    PartitionProgress {
        topic: TOPIC.to_owned(),
        partition,
        generation: claim.generation,
        flush_seq: seq,
        resume_offset: offset,
        applied_through_offset: offset + 10,
        applied_watermark_us: watermark_us,
    }
}

pub fn flush(owner: &str, rollups: Rollups, progress: Vec<PartitionProgress>) -> FlushWrite {
    FlushWrite {
        group_id: GROUP.to_owned(),
        owner: owner.to_owned(),
        rollups,
        progress,
        topics: vec![
            "perf.query".into(),
            "perf.request".into(),
            "perf.resource".into(),
        ],
    }
}

/// Writes `f`, which must commit: a new flush, not the repeat of one already applied.
pub async fn commit(store: &Store, f: &FlushWrite) {
    assert_eq!(
        store.write_flush(f).await.expect("flush"),
        FlushCommit::Committed
    );
}

/// `DATABASE_URL` with its database replaced by `database` (a `#[sqlx::test]` database).
pub fn database_url(database: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (scheme, rest) = base.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[end..].split_once('?').map(|(_, q)| q);
    let mut url = format!("{scheme}://{}/{database}", &rest[..end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// The address of the server behind `pool`, for a proxy in front of it.
pub async fn server_addr(pool: &sqlx::PgPool) -> std::net::SocketAddr {
    let opts = pool.connect_options();
    tokio::net::lookup_host((opts.get_host(), opts.get_port()))
        .await
        .expect("resolve the database host")
        .next()
        .expect("an address for the database host")
}

pub async fn count_rows(store: &Store, table: &str) -> i64 {
    let sql = match table {
        "query_rollups" => "SELECT count(*) FROM query_rollups",
        "request_rollups" => "SELECT count(*) FROM request_rollups",
        "resource_rollups" => "SELECT count(*) FROM resource_rollups",
        "query_catalog" => "SELECT count(*) FROM query_catalog",
        "tier_dirty" => "SELECT count(*) FROM tier_dirty",
        other => panic!("unknown table {other}"),
    };
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect("count query")
}
