//! The notifier against a real Postgres (a fresh database per test, `#[sqlx::test]`) and real
//! HTTP receivers on local ports: outbox rows are written with SQL as the evaluator would; what
//! the receivers got and `alert_deliveries` are checked. Every wait polls with a deadline.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perfstream_events::{AlertEvent, AlertState, Severity};
use perfstream_notify::{NotifySettings, NotifyStats, Route, TargetKind, TargetSettings};
use sqlx::{PgPool, Row};
use tokio::sync::oneshot;

type Log = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A blocking HTTP receiver on `addr` (a thread): answers 200, records (path, JSON body).
fn receiver(addr: SocketAddr, log: Log) {
    let listener = TcpListener::bind(addr).expect("bind receiver");
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match sock.read(&mut chunk) {
                    Ok(0) | Err(_) => break 0,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            if head_end == 0 {
                continue;
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            while buf.len() < head_end + len {
                match sock.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: serde_json::Value =
                serde_json::from_slice(&buf[head_end..head_end + len]).expect("json");
            // An alert named "bad" is refused for good, as a receiver refuses a payload.
            let refuse = body["alert_id"] == "bad";
            log.lock().unwrap().push((path, body));
            let answer: &[u8] = if refuse {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = sock.write_all(answer);
        }
    });
}

/// A free port never handed out before in this process: the tests run in parallel, and a port
/// left closed on purpose (a target that is down) must not be given to another test.
fn free_addr() -> SocketAddr {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

fn webhook(name: &str, addr: SocketAddr) -> TargetSettings {
    TargetSettings {
        name: name.into(),
        kind: TargetKind::Webhook,
        url: format!("http://{addr}/{name}"),
        secret: None,
        timeout: Duration::from_secs(2),
        rate_limit: 100.0,
        burst: 100,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(400),
        resend_interval: Duration::from_secs(60),
    }
}

fn settings(targets: Vec<TargetSettings>, routes: Vec<Route>) -> NotifySettings {
    NotifySettings {
        interval: Duration::from_millis(100),
        lock_retry: Duration::from_millis(100),
        targets,
        routes,
        ..NotifySettings::default()
    }
}

/// An outbox row (and its `alerts` row) as the evaluator writes them.
async fn transition(pool: &PgPool, id: &str, state: AlertState, severity: Severity) {
    let e = AlertEvent {
        alert_id: id.into(),
        rule: "cpu".into(),
        severity,
        state,
        service: "billing".into(),
        labels: [("service", "billing"), ("instance", "i-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        observed_value: 0.95,
        threshold: 0.9,
        clear_threshold: 0.8,
        window_start_us: 1_767_225_600_000_000,
        window_end_us: 1_767_225_660_000_000,
        transitioned_at_us: 1_767_225_665_000_000,
        message: format!("cpu {}", state.as_str()),
    };
    let mut payload = Vec::new();
    perfstream_events::encode::encode_alert(&mut payload, &e);
    sqlx::query("INSERT INTO alert_outbox (alert_id, state, payload) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(state.as_str())
        .bind(payload)
        .execute(pool)
        .await
        .expect("outbox row");
    sqlx::query(
        "INSERT INTO alerts (alert_id, state, rule, severity, service, alert_key, labels,
            observed_value, threshold, clear_threshold, window_start, window_end, transitioned_at,
            message, resolve_reason)
         VALUES ($1, $2, 'cpu', $3, 'billing', 'resource|billing|i-1', '{}', 0.95, 0.9, 0.8,
            now(), now(), now(), 'm', CASE WHEN $2 = 'resolved' THEN 'cleared' END)",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(severity.as_str())
    .execute(pool)
    .await
    .expect("alerts row");
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), perfstream_notify::NotifyError>>,
}

fn start(pool: &PgPool, s: NotifySettings, stats: NotifyStats) -> Running {
    // The notifier's warnings in the test output (shown when a test fails).
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (stop, rx) = oneshot::channel::<()>();
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        perfstream_notify::run_notifier(
            s,
            pool,
            "g1".into(),
            stats,
            Duration::from_secs(10),
            async {
                let _ = rx.await;
            },
        )
        .await
    });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("notifier");
    }
}

fn received(log: &Log, path: &str) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, b)| b["dedup_id"].as_str().unwrap().to_string())
        .collect()
}

/// A target that is down holds only its own queue (head of line, retried with backoff); the
/// other target gets everything at once, and the first catches up in order once it is up.
#[sqlx::test(migrations = "../../migrations")]
async fn a_down_target_never_holds_up_another_and_catches_up_in_order(pool: PgPool) {
    let (down, up) = (free_addr(), free_addr());
    let log = Log::default();
    receiver(up, log.clone());
    transition(&pool, "x", AlertState::Firing, Severity::Warning).await;
    transition(&pool, "y", AlertState::Firing, Severity::Warning).await;
    transition(&pool, "x", AlertState::Resolved, Severity::Warning).await;
    let stats = NotifyStats::default();
    let n = start(
        &pool,
        settings(vec![webhook("a", down), webhook("b", up)], vec![]),
        stats.clone(),
    );
    let want = ["x:firing:warning", "y:firing:warning", "x:resolved:warning"];
    eventually("b to get everything", || async {
        (received(&log, "/b") == want).then_some(())
    })
    .await;
    let a: Vec<(i64, i32, bool, Option<String>)> = eventually("a to fail and retry", || async {
        let rows: Vec<(i64, i32, bool, Option<String>)> = sqlx::query(
            "SELECT seq, attempts, delivered_at IS NOT NULL, last_error FROM alert_deliveries
             WHERE target = 'a' ORDER BY seq",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
        (rows.first().is_some_and(|r| r.1 >= 2)).then_some(rows)
    })
    .await;
    assert_eq!(a.len(), 3);
    assert!(a[0].3.is_some(), "the error is recorded: {a:?}");
    assert!(a.iter().all(|r| !r.2), "nothing delivered to a: {a:?}");
    assert!(
        a[1..].iter().all(|r| r.1 == 0),
        "only the head of a's queue is attempted: {a:?}"
    );
    // a comes up on its port: it catches up, in seq order, once each.
    receiver(down, log.clone());
    eventually("a to catch up", || async {
        (received(&log, "/a") == want).then_some(())
    })
    .await;
    eventually("the stats to show it", || async {
        let s = stats.snapshot();
        (s["a"].delivered == 3 && s["b"].delivered == 3 && s["a"].pending == 0).then_some(())
    })
    .await;
    assert!(stats.snapshot()["a"].failed_attempts >= 2);
    assert_eq!(stats.snapshot()["b"].failed_attempts, 0);
    n.stop().await;
    assert_eq!(received(&log, "/b"), want, "no repeats");
    let reason: Vec<Option<String>> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/b")
        .map(|(_, b)| b["resolve_reason"].as_str().map(str::to_string))
        .collect();
    assert_eq!(reason, [None, None, Some("cleared".to_string())]);
}

/// Routes pick targets by severity and labels; a resolve also goes where its firing went, even
/// after the route that sent it there is gone.
#[sqlx::test(migrations = "../../migrations")]
async fn routes_match_severity_and_a_resolve_follows_its_firing(pool: PgPool) {
    let addr = free_addr();
    let log = Log::default();
    receiver(addr, log.clone());
    let targets = vec![webhook("pager", addr), webhook("chat", addr)];
    let route = |m: &[(&str, &str)], sev: &[&str], t: &str| Route {
        matches: m
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        severities: sev.iter().map(|s| s.to_string()).collect(),
        targets: vec![t.into()],
    };
    let first = settings(
        targets.clone(),
        vec![
            route(&[("service", "billing")], &["critical"], "pager"),
            route(&[("rule", "cpu")], &[], "chat"),
        ],
    );
    transition(&pool, "c", AlertState::Firing, Severity::Critical).await;
    transition(&pool, "w", AlertState::Firing, Severity::Warning).await;
    let n = start(&pool, first, NotifyStats::default());
    eventually("the firings", || async {
        (received(&log, "/chat").len() == 2 && received(&log, "/pager").len() == 1).then_some(())
    })
    .await;
    n.stop().await;
    assert_eq!(received(&log, "/pager"), ["c:firing:critical"]);
    assert_eq!(
        received(&log, "/chat"),
        ["c:firing:critical", "w:firing:warning"]
    );

    // The pager route is removed; c resolves: the pager still hears of it.
    let second = settings(targets, vec![route(&[], &[], "chat")]);
    transition(&pool, "c", AlertState::Resolved, Severity::Critical).await;
    let n = start(&pool, second, NotifyStats::default());
    eventually("the resolve", || async {
        (received(&log, "/chat").len() == 3 && received(&log, "/pager").len() == 2).then_some(())
    })
    .await;
    n.stop().await;
    assert_eq!(
        received(&log, "/pager"),
        ["c:firing:critical", "c:resolved:critical"]
    );
}

/// Issue 15, section 2: an escalation (a second firing of the same alert, critical) reaches a
/// critical-only route that never heard of the warning, every webhook once per dedup id, and
/// Alertmanager as the critical alert plus the warning one resolved in the same request (the
/// severity is one of its labels).
#[sqlx::test(migrations = "../../migrations")]
async fn an_escalation_reaches_critical_routes_and_replaces_the_warning_in_alertmanager(
    pool: PgPool,
) {
    let addr = free_addr();
    let log = Log::default();
    receiver(addr, log.clone());
    let mut am = webhook("am", addr);
    am.kind = TargetKind::Alertmanager;
    am.url = format!("http://{addr}/am");
    let routes = vec![
        Route {
            matches: BTreeMap::new(),
            severities: vec!["critical".into()],
            targets: vec!["pager".into()],
        },
        Route {
            matches: BTreeMap::new(),
            severities: vec![],
            targets: vec!["chat".into(), "am".into()],
        },
    ];
    transition(&pool, "x", AlertState::Firing, Severity::Warning).await;
    let n = start(
        &pool,
        settings(
            vec![webhook("pager", addr), webhook("chat", addr), am],
            routes,
        ),
        NotifyStats::default(),
    );
    eventually("the warning", || async {
        (received(&log, "/chat").len() == 1).then_some(())
    })
    .await;
    transition(&pool, "x", AlertState::Firing, Severity::Critical).await;
    transition(&pool, "x", AlertState::Resolved, Severity::Critical).await;
    eventually("the escalation and the resolve", || async {
        (received(&log, "/chat").len() == 3 && received(&log, "/pager").len() == 2).then_some(())
    })
    .await;
    // Alertmanager requests (JSON arrays): wait for the one with the resolve.
    let am_alerts = |log: &Log| -> Vec<(String, String, bool)> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with("/am/"))
            .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
            .map(|a| {
                let ends = a["endsAt"].as_str().unwrap().to_string();
                let past =
                    chrono::DateTime::parse_from_rfc3339(&ends).unwrap() <= chrono::Utc::now();
                (
                    a["labels"]["severity"].as_str().unwrap().to_string(),
                    a["annotations"]["resolve_reason"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    past,
                )
            })
            .collect()
    };
    eventually("alertmanager to get the resolve", || async {
        am_alerts(&log)
            .iter()
            .any(|a| a.1 == "cleared")
            .then_some(())
    })
    .await;
    n.stop().await;
    assert_eq!(
        received(&log, "/chat"),
        [
            "x:firing:warning",
            "x:firing:critical",
            "x:resolved:critical"
        ]
    );
    assert_eq!(
        received(&log, "/pager"),
        ["x:firing:critical", "x:resolved:critical"]
    );
    let am = am_alerts(&log);
    // The first delivery (and refreshes) fire the warning; the escalation resolves the warning
    // and fires the critical; the resolve ends the critical.
    let warning_ended = am.iter().position(|a| a.0 == "warning" && a.2);
    let critical_firing = am.iter().position(|a| a.0 == "critical" && !a.2);
    let critical_ended = am.iter().position(|a| a.0 == "critical" && a.2);
    assert!(
        warning_ended.is_some() && critical_firing.is_some() && critical_ended.is_some(),
        "{am:?}"
    );
    assert!(
        warning_ended < critical_ended && critical_firing < critical_ended,
        "{am:?}"
    );
}

/// A delivery the receiver refuses for good (a 4xx) is closed with its error and does not hold up
/// the target's queue; the next transition is delivered.
#[sqlx::test(migrations = "../../migrations")]
async fn a_refused_delivery_is_closed_and_the_queue_moves_on(pool: PgPool) {
    let addr = free_addr();
    let log = Log::default();
    receiver(addr, log.clone());
    transition(&pool, "bad", AlertState::Firing, Severity::Warning).await;
    transition(&pool, "good", AlertState::Firing, Severity::Warning).await;
    let stats = NotifyStats::default();
    let n = start(
        &pool,
        settings(vec![webhook("w", addr)], vec![]),
        stats.clone(),
    );
    eventually("the next transition", || async {
        received(&log, "/w")
            .contains(&"good:firing:warning".to_string())
            .then_some(())
    })
    .await;
    n.stop().await;
    assert_eq!(
        received(&log, "/w"),
        ["bad:firing:warning", "good:firing:warning"],
        "once each"
    );
    let rows: Vec<(String, i32, bool, Option<String>)> = sqlx::query(
        "SELECT alert_id, attempts, delivered_at IS NOT NULL, last_error FROM alert_deliveries
         ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect();
    assert_eq!(
        rows,
        [
            ("bad".into(), 1, true, Some("HTTP 400: nope".into())),
            ("good".into(), 1, true, None)
        ]
    );
    assert_eq!(stats.snapshot()["w"].failed_attempts, 1);
}
