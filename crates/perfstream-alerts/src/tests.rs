//! Engine tests on synthetic rollup sequences: explicit windows, no clock.

use perfstream_events::AlertState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::*;

const MIN: i64 = 60_000_000;

fn window(i: i64) -> Window {
    Window {
        start_us: i * MIN,
        end_us: (i + 1) * MIN,
    }
}

fn query(service: &str, p99_ms: f64) -> QueryRow {
    QueryRow {
        service: service.into(),
        query_hash: "q1".into(),
        query_type: "select".into(),
        latency: Latency {
            count: 50,
            p99_us: (p99_ms * 1000.0) as i64,
            ..Latency::default()
        },
        baseline_us: None,
    }
}

fn request(endpoint: &str, p95_ms: f64, count: i64) -> RequestRow {
    RequestRow {
        service: "shop".into(),
        endpoint: endpoint.into(),
        method: "GET".into(),
        latency: Latency {
            count,
            p95_us: (p95_ms * 1000.0) as i64,
            ..Latency::default()
        },
        status_5xx: 0,
        baseline_us: None,
        buckets: Vec::new(),
    }
}

fn resource(instance: &str) -> ResourceRow {
    ResourceRow {
        service: "shop".into(),
        instance: instance.into(),
        cpu_mean: Some(0.3),
        memory_utilization_mean: Some(0.45),
        memory_utilization_last: Some(0.45),
        pool_utilization_mean: Some(0.3),
        pool_utilization_max: Some(0.3),
        pool_waiters_max: Some(0),
        gc_pause_us_sum: Some(10_000),
        gc_interval_us_sum: Some(60_000_000),
        cache_hits: 9_500,
        cache_misses: 500,
    }
}

/// Runs `n` windows built by `f`, returning (window index, rule, state) of every transition.
fn run(
    engine: &mut Engine,
    range: std::ops::Range<i64>,
    mut f: impl FnMut(i64, &mut WindowRows),
) -> Vec<(i64, String, AlertState)> {
    let mut out = Vec::new();
    for i in range {
        let mut rows = WindowRows::empty(window(i));
        f(i, &mut rows);
        for t in engine.evaluate(&rows).unwrap().transitions {
            out.push((i, t.rule.as_str().to_string(), t.state));
        }
    }
    out
}

fn engine() -> Engine {
    Engine::new(&AlertSettings::default()).unwrap()
}

#[test]
fn threshold_crossing_waits_for_for() {
    let mut s = AlertSettings::default();
    s.rules.slow_query.for_windows = Some(3);
    let mut e = Engine::new(&s).unwrap();
    let p99 = [
        500.0, 1200.0, 1300.0, 700.0, 1200.0, 1100.0, 1500.0, 1400.0, 900.0, 700.0, 600.0,
    ];
    let got = run(&mut e, 0..p99.len() as i64, |i, r| {
        r.queries.push(query("a", p99[i as usize]))
    });
    assert_eq!(
        got,
        vec![
            (6, "slow_query".into(), AlertState::Firing),
            (9, "slow_query".into(), AlertState::Resolved)
        ],
        "fires at the third consecutive breach, stays firing at 900 ms (above the 800 ms clear), resolves at 700"
    );
}

#[test]
fn oscillation_around_the_threshold_fires_once_and_resolves_once() {
    let mut e = engine();
    let got = run(&mut e, 0..200, |i, r| {
        let v = if i < 190 {
            1000.0 + if i % 2 == 0 { 30.0 } else { -30.0 }
        } else {
            300.0
        };
        r.queries.push(query("a", v));
    });
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], (0, "slow_query".into(), AlertState::Firing));
    assert_eq!(got[1], (190, "slow_query".into(), AlertState::Resolved));
}

#[test]
fn transitions_share_a_deterministic_id() {
    let mut a = engine();
    let mut b = engine();
    let mut ids = Vec::new();
    for e in [&mut a, &mut b] {
        let mut got = Vec::new();
        for i in 0..6 {
            let mut rows = WindowRows::empty(window(i));
            rows.queries
                .push(query("a", if (2..4).contains(&i) { 2000.0 } else { 10.0 }));
            got.extend(
                e.evaluate(&rows)
                    .unwrap()
                    .transitions
                    .into_iter()
                    .map(|t| (t.alert_id, t.state)),
            );
        }
        ids.push(got);
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0].len(), 2);
    assert_eq!(ids[0][0].0, ids[0][1].0);
}

#[test]
fn keep_firing_for_holds_a_cleared_alert() {
    let mut s = AlertSettings::default();
    s.rules.endpoint_sla.keep_firing_for = Some(2);
    let mut e = Engine::new(&s).unwrap();
    let v = [900.0, 100.0, 100.0, 900.0, 100.0, 100.0, 100.0];
    let got = run(&mut e, 0..v.len() as i64, |i, r| {
        r.requests.push(request("/a", v[i as usize], 100))
    });
    assert_eq!(
        got,
        vec![
            (0, "endpoint_sla".into(), AlertState::Firing),
            (6, "endpoint_sla".into(), AlertState::Resolved)
        ]
    );
}

#[test]
fn a_series_that_stops_reporting_resolves() {
    let mut e = engine();
    let got = run(&mut e, 0..9, |i, r| {
        if i < 2 || i == 3 {
            r.queries.push(query("a", 5000.0));
        }
    });
    // A one-window gap (2) changes nothing; silence from window 4 on resolves after the
    // default 3 windows without data.
    assert_eq!(
        got,
        vec![
            (0, "slow_query".into(), AlertState::Firing),
            (7, "slow_query".into(), AlertState::Resolved)
        ]
    );
}

/// Memory ramps linearly from 45 % to 95 % of the limit over `ramp` windows, with noise.
fn memory_ramp(ramp: i64, seed: u64) -> (Vec<(i64, String, AlertState)>, Vec<Transition>) {
    let mut e = engine();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut all = Vec::new();
    let mut got = Vec::new();
    for i in 0..120 {
        let p = i - 30;
        let level = if (0..ramp).contains(&p) {
            0.45 + 0.5 * p as f64 / ramp as f64
        } else {
            0.45
        };
        let mut r = resource("i1");
        r.memory_utilization_mean = Some(level + rng.random_range(-0.01..0.01));
        let mut rows = WindowRows::empty(window(i));
        rows.resources.push(r);
        for t in e.evaluate(&rows).unwrap().transitions {
            got.push((i, t.rule.as_str().to_string(), t.state));
            all.push(t);
        }
    }
    (got, all)
}

#[test]
fn memory_leak_fires_before_the_limit_with_a_sensible_prediction() {
    for (ramp, seed) in [(20, 1), (40, 2), (60, 3)] {
        let (got, all) = memory_ramp(ramp, seed);
        let leak: Vec<_> = got.iter().filter(|t| t.1 == "memory_leak").collect();
        assert_eq!(leak.len(), 2, "ramp {ramp}: {got:?}");
        let fired_at = leak[0].0 - 30;
        assert_eq!(leak[0].2, AlertState::Firing);
        // Before the memory_utilization alert (80 %), well before the limit.
        let util = got
            .iter()
            .find(|t| t.1 == "memory_utilization")
            .expect("utilisation fires too");
        assert!(
            leak[0].0 < util.0,
            "ramp {ramp}: leak at {} after utilisation at {}",
            leak[0].0,
            util.0
        );
        // The predicted time to the limit is close to the truth (the ramp reaches 95 %, the
        // prediction is for 100 %, so the truth is the time to the ramp's end plus 10 % of it).
        let t = all.iter().find(|t| t.rule == RuleId::MemoryLeak).unwrap();
        let msg = &t.message;
        let after = msg.split("reaches the limit in about ").nth(1).expect(msg);
        let mut parts = after.split(' ');
        let v: f64 = parts.next().unwrap().parse().unwrap();
        let predicted_s = match parts.next().unwrap() {
            "s" => v,
            "min" => v * 60.0,
            "h" => v * 3600.0,
            u => panic!("unit {u}"),
        };
        let truth_s = ((ramp - fired_at) as f64 + 0.1 * ramp as f64) * 60.0;
        assert!(
            (predicted_s - truth_s).abs() <= 0.25 * truth_s,
            "ramp {ramp}: predicted {predicted_s} s, truth {truth_s} s: {msg}"
        );
        assert!(
            fired_at < ramp / 2,
            "ramp {ramp}: fired {fired_at} windows in"
        );
        // Resolved once the ramp is over, exactly once per alert id.
        assert_eq!(leak[1].2, AlertState::Resolved);
        assert!(
            leak[1].0 >= 30 + ramp,
            "ramp {ramp}: resolved at {}",
            leak[1].0
        );
        let ids: Vec<_> = all
            .iter()
            .filter(|t| t.rule == RuleId::MemoryLeak)
            .map(|t| &t.alert_id)
            .collect();
        assert_eq!(ids[0], ids[1]);
    }
}

#[test]
fn flat_noisy_series_never_fire() {
    let mut e = engine();
    let mut rng = StdRng::seed_from_u64(7);
    let got = run(&mut e, 0..2000, |_, rows| {
        for inst in ["i1", "i2", "i3", "i4", "i5"] {
            let mut r = resource(inst);
            r.memory_utilization_mean = Some(0.45 + rng.random_range(-0.02..0.02));
            let pool_max = 20.0;
            r.pool_utilization_mean = Some((6.0 + rng.random_range(-1..=1) as f64) / pool_max);
            r.pool_utilization_max = Some(7.0 / pool_max);
            r.cpu_mean = Some(rng.random_range(0.15..0.45));
            let lookups = rng.random_range(2_500..7_500);
            r.cache_hits = (lookups as f64 * rng.random_range(0.93..0.97)) as i64;
            r.cache_misses = lookups - r.cache_hits;
            rows.resources.push(r);
        }
        let mut q = query("a", rng.random_range(10.0..900.0));
        q.latency.count = rng.random_range(1..200);
        rows.queries.push(q);
        let mut req = request(
            "/a",
            rng.random_range(10.0..450.0),
            rng.random_range(50..300),
        );
        req.status_5xx = (0..req.latency.count)
            .filter(|_| rng.random_bool(0.002))
            .count() as i64;
        rows.requests.push(req);
    });
    assert!(got.is_empty(), "{got:?}");
}

/// Pool use per window for `n` windows; `f(i)` is the level of window i.
fn pool_sequence(
    f: impl Fn(i64) -> f64,
    request_rate: impl Fn(i64) -> i64,
) -> Vec<(i64, String, AlertState)> {
    let mut e = engine();
    let mut rng = StdRng::seed_from_u64(11);
    run(&mut e, 0..80, |i, rows| {
        let mut r = resource("i1");
        let level = f(i) + rng.random_range(-0.03..0.03);
        r.pool_utilization_mean = Some(level);
        let full = f(i) >= 1.0;
        r.pool_utilization_max = Some(if full { 1.0 } else { level });
        if full {
            r.pool_waiters_max = Some(5);
        }
        rows.resources.push(r);
        rows.requests.push(request("/a", 20.0, request_rate(i)));
    })
}

#[test]
fn connection_leak_fires_on_a_ramp_with_flat_traffic() {
    let ramp = |i: i64| {
        if (20..45).contains(&i) {
            0.2 + 0.65 * (i - 20) as f64 / 25.0
        } else {
            0.3
        }
    };
    let got = pool_sequence(ramp, |_| 1000);
    let leak: Vec<_> = got.iter().filter(|t| t.1 == "connection_leak").collect();
    assert_eq!(leak.len(), 2, "{got:?}");
    assert!(leak[0].0 < 45 && leak[1].0 >= 45, "{got:?}");
    assert!(
        got.iter().all(|t| t.1 == "connection_leak"),
        "pool stays under 90 %: {got:?}"
    );
}

#[test]
fn connection_leak_needs_flat_traffic() {
    let ramp = |i: i64| {
        if (20..45).contains(&i) {
            0.2 + 0.65 * (i - 20) as f64 / 25.0
        } else {
            0.3
        }
    };
    // Traffic growing with the connections explains them: no leak.
    let got = pool_sequence(ramp, |i| {
        if (20..45).contains(&i) {
            1000 + (i - 20) * 100
        } else {
            1000
        }
    });
    assert!(got.iter().all(|t| t.1 != "connection_leak"), "{got:?}");
}

#[test]
fn a_pool_step_is_saturation_not_a_leak() {
    let got = pool_sequence(|i| if (20..45).contains(&i) { 1.0 } else { 0.3 }, |_| 1000);
    let rules: Vec<&str> = got.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(
        rules,
        [
            "pool_utilization",
            "pool_exhaustion",
            "pool_utilization",
            "pool_exhaustion"
        ],
        "{got:?}"
    );
    assert_eq!(got[0].0, 20);
    assert_eq!(got[2].0, 45);
}

#[test]
fn cache_drop_fires_on_absolute_and_relative_drops() {
    let mut e = engine();
    let ratio = |i: i64| match i {
        40..50 => 0.5,    // absolute: under 0.8
        70..80 => 0.62,   // relative: under 0.95 * 0.7 (and under 0.8 too)
        100..110 => 0.81, // over 0.8 and only 15 % under the baseline: nothing
        _ => 0.95,
    };
    let got = run(&mut e, 0..130, |i, rows| {
        let mut r = resource("i1");
        r.cache_hits = (10_000.0 * ratio(i)) as i64;
        r.cache_misses = 10_000 - r.cache_hits;
        rows.resources.push(r);
    });
    let starts: Vec<(i64, AlertState)> = got.iter().map(|t| (t.0, t.2)).collect();
    assert!(got.iter().all(|t| t.1 == "cache_hit_ratio"));
    assert_eq!(
        starts,
        [
            (40, AlertState::Firing),
            (50, AlertState::Resolved),
            (70, AlertState::Firing),
            (80, AlertState::Resolved)
        ]
    );

    // A relative drop alone: baseline 0.99, ratio 0.84 (above the absolute 0.8).
    let mut s = AlertSettings::default();
    s.rules.cache_hit_ratio.relative_drop = Some(0.1);
    s.rules.cache_hit_ratio.clear_relative_drop = Some(0.05);
    let mut e = Engine::new(&s).unwrap();
    let got = run(&mut e, 0..60, |i, rows| {
        let mut r = resource("i1");
        let v = if (40..45).contains(&i) { 0.84 } else { 0.99 };
        r.cache_hits = (10_000.0 * v) as i64;
        r.cache_misses = 10_000 - r.cache_hits;
        rows.resources.push(r);
    });
    assert_eq!(
        got.iter().map(|t| (t.0, t.2)).collect::<Vec<_>>(),
        [(40, AlertState::Firing), (45, AlertState::Resolved)]
    );
}

#[test]
fn overrides_apply_per_service_and_endpoint() {
    let s: AlertSettings = serde_json::from_value(serde_json::json!({
        "rules": { "endpoint_sla": { "threshold": 800.0, "clear_threshold": 600.0 } },
        "overrides": [
            { "rule": "endpoint_sla", "match": { "service": "shop", "endpoint": "/pay" },
              "set": { "threshold": 200.0, "clear_threshold": 150.0, "severity": "critical",
                       "labels": { "team": "payments" } } },
            { "rule": "endpoint_sla", "match": { "endpoint": "/health" }, "set": { "enabled": false } }
        ]
    }))
    .unwrap();
    let mut e = Engine::new(&s).unwrap();
    let mut rows = WindowRows::empty(window(0));
    rows.requests.push(request("/pay", 300.0, 100)); // over its 200 ms override
    rows.requests.push(request("/cart", 700.0, 100)); // under the patched 800 ms
    rows.requests.push(request("/search", 900.0, 100)); // over 800 ms
    rows.requests.push(request("/health", 5000.0, 100)); // disabled
    let t = e.evaluate(&rows).unwrap().transitions;
    let got: Vec<(&str, f64, Severity, Option<&String>)> = t
        .iter()
        .map(|t| {
            (
                t.labels["endpoint"].as_str(),
                t.threshold,
                t.severity,
                t.labels.get("team"),
            )
        })
        .collect();
    let team = "payments".to_string();
    assert_eq!(
        got,
        [
            ("/pay", 200.0, Severity::Critical, Some(&team)),
            ("/search", 800.0, Severity::Warning, None)
        ]
    );
}

#[test]
fn restored_state_neither_refires_nor_sticks() {
    // Evaluate windows 0..10 in one engine; in another, stop after 5, restore from its stored
    // changes and warm its history, then continue: same transitions, same ids.
    let rows = |i: i64| {
        let mut r = WindowRows::empty(window(i));
        r.queries
            .push(query("a", if (3..8).contains(&i) { 2000.0 } else { 10.0 }));
        r
    };
    let mut one = engine();
    let a: Vec<Transition> = (0..10)
        .flat_map(|i| one.evaluate(&rows(i)).unwrap().transitions)
        .collect();

    let mut first = engine();
    let mut stored: std::collections::BTreeMap<(RuleId, String), StateRow> = Default::default();
    let mut b: Vec<Transition> = Vec::new();
    for i in 0..5 {
        let e = first.evaluate(&rows(i)).unwrap();
        b.extend(e.transitions);
        for c in e.changes {
            stored.insert((c.rule, c.key.clone()), c);
        }
    }
    let mut second = engine();
    second.restore(stored.into_values());
    for i in 5 - second.history_windows() as i64..5 {
        second.warm(&rows(i)).unwrap();
    }
    for i in 5..10 {
        b.extend(second.evaluate(&rows(i)).unwrap().transitions);
    }
    assert_eq!(a.len(), 2);
    assert_eq!(a, b);
}

#[test]
fn windows_must_ascend() {
    let mut e = engine();
    e.evaluate(&WindowRows::empty(window(3))).unwrap();
    assert!(matches!(
        e.evaluate(&WindowRows::empty(window(3))),
        Err(AlertError::OutOfOrder { .. })
    ));
}

#[test]
fn config_rejects_unknown_keys_and_bad_hysteresis() {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    let ok: AlertSettings = Figment::from(Toml::string(
        "interval = \"2s\"\n[rules.slow_query]\nthreshold = 2000.0\nfor = 2\n[[overrides]]\nrule = \"cpu\"\nmatch = { service = \"x\" }\nset = { threshold = 0.95 }\n",
    ))
    .extract()
    .unwrap();
    assert_eq!(ok.rules.slow_query.threshold, Some(2000.0));
    assert_eq!(ok.rules.slow_query.for_windows, Some(2));
    assert_eq!(ok.interval, std::time::Duration::from_secs(2));
    let rs = RuleSet::new(&ok).unwrap();
    assert_eq!(
        rs.base(RuleId::SlowQuery).clear_threshold,
        800.0,
        "unpatched fields keep defaults"
    );
    let bad = Figment::from(Toml::string("[rules.slow_query]\ntreshold = 1.0\n"))
        .extract::<AlertSettings>();
    assert!(bad.unwrap_err().to_string().contains("treshold"));
    let bad = Figment::from(Toml::string("[rules.slow_querry]\n")).extract::<AlertSettings>();
    assert!(bad.is_err());
    let mut s = AlertSettings::default();
    s.rules.slow_query.clear_threshold = Some(1500.0);
    assert!(matches!(
        Engine::new(&s),
        Err(AlertError::InvalidRule {
            rule: "slow_query",
            ..
        })
    ));
    // check-config prints the settings: unset patch fields are left out, not null.
    let printed = serde_json::to_value(AlertSettings::default()).unwrap();
    assert_eq!(printed["rules"]["slow_query"], serde_json::json!({}));
    // Serialize round trip.
    let text = serde_json::to_string(&ok).unwrap();
    assert_eq!(serde_json::from_str::<AlertSettings>(&text).unwrap(), ok);
}

#[test]
fn messages_say_which_side_of_the_threshold() {
    let mut e = engine();
    let mut transitions = Vec::new();
    for i in 0..3 {
        let mut rows = WindowRows::empty(window(i));
        let mut r = resource("i1");
        r.cache_hits = if i == 1 { 5_000 } else { 9_500 };
        r.cache_misses = 10_000 - r.cache_hits;
        rows.resources.push(r);
        rows.queries
            .push(query("a", if i == 1 { 1500.0 } else { 10.0 }));
        transitions.extend(e.evaluate(&rows).unwrap().transitions);
    }
    let m: Vec<&str> = transitions.iter().map(|t| t.message.as_str()).collect();
    assert_eq!(
        m,
        [
            "slow_query firing for query q1 (select) of a: p99 1500.0 ms over 1000 ms",
            "cache_hit_ratio firing for shop instance i1: hit ratio 50.0 % under 80.0 % or 30 % under baseline",
            "slow_query resolved for query q1 (select) of a: p99 10.0 ms, back under 800 ms",
            "cache_hit_ratio resolved for shop instance i1: hit ratio 95.0 %, back above 85.0 %",
        ]
    );
}

fn absent_settings(windows: u32) -> AlertSettings {
    let mut s = AlertSettings::default();
    s.rules.absent = RulePatch {
        enabled: Some(true),
        windows: Some(windows),
        ..RulePatch::default()
    };
    s
}

/// Issue 15, section 3: an instance that stops reporting fires after `windows` complete windows
/// without a sample, and resolves (reason: cleared) when it reports again; the other instance,
/// reporting throughout, never fires.
#[test]
fn absent_fires_after_n_silent_windows_and_resolves_on_return() {
    let mut e = Engine::new(&absent_settings(3)).unwrap();
    let mut all = Vec::new();
    for i in 0..14 {
        let mut r = WindowRows::empty(window(i));
        r.resources.push(resource("i-1"));
        if !(4..10).contains(&i) {
            r.resources.push(resource("i-2"));
        }
        for t in e.evaluate(&r).unwrap().transitions {
            all.push((i, t));
        }
    }
    let got: Vec<(i64, &str, AlertState, Option<ResolveReason>)> = all
        .iter()
        .map(|(i, t)| (*i, t.labels["instance"].as_str(), t.state, t.reason))
        .collect();
    // Last sample in window 3; windows 4, 5, 6 silent: fires at 6. Back in window 10.
    assert_eq!(
        got,
        vec![
            (6, "i-2", AlertState::Firing, None),
            (
                10,
                "i-2",
                AlertState::Resolved,
                Some(ResolveReason::Cleared)
            ),
        ]
    );
    assert_eq!(all[0].1.rule, RuleId::Absent);
    assert_eq!(all[0].1.observed_value, 3.0);
    assert!(
        all[0].1.message.contains("no samples for 3 windows"),
        "{}",
        all[0].1.message
    );
    assert_eq!(all[0].1.alert_id, all[1].1.alert_id);
    assert!(all[1].1.message.contains("reporting again"));
}

/// Absent is off by default: nothing fires when instances stop (every stream ends).
#[test]
fn absent_is_off_by_default() {
    let mut e = engine();
    let got = run(&mut e, 0..10, |i, r| {
        if i < 2 {
            r.resources.push(resource("i-1"));
        }
    });
    assert!(got.is_empty(), "{got:?}");
}

/// A firing absent alert survives a restart whose warmed history no longer holds the series.
#[test]
fn absent_keeps_firing_across_a_restart_and_resolves_on_return() {
    let s = absent_settings(3);
    let mut first = Engine::new(&s).unwrap();
    let mut stored: std::collections::BTreeMap<(RuleId, String), StateRow> = Default::default();
    for i in 0..8 {
        let mut r = WindowRows::empty(window(i));
        r.resources.push(resource("i-1"));
        if i < 2 {
            r.resources.push(resource("i-2"));
        }
        for c in first.evaluate(&r).unwrap().changes {
            stored.insert((c.rule, c.key.clone()), c);
        }
    }
    assert!(
        stored
            .values()
            .any(|c| c.rule == RuleId::Absent && c.phase.is_some())
    );
    // Restart far later: the warmed history holds only i-1.
    let mut second = Engine::new(&s).unwrap();
    second.restore(stored.into_values());
    let start = 100;
    for i in start - second.history_windows() as i64..start {
        let mut r = WindowRows::empty(window(i));
        r.resources.push(resource("i-1"));
        second.warm(&r).unwrap();
    }
    let mut r = WindowRows::empty(window(start));
    r.resources.push(resource("i-1"));
    assert!(
        second.evaluate(&r).unwrap().transitions.is_empty(),
        "still firing, no repeat"
    );
    // Many windows later it is still firing (not resolved for lack of data) ...
    for i in start + 1..start + 10 {
        let mut r = WindowRows::empty(window(i));
        r.resources.push(resource("i-1"));
        assert!(second.evaluate(&r).unwrap().transitions.is_empty());
    }
    // ... and resolves when it reports again.
    let mut r = WindowRows::empty(window(start + 10));
    r.resources.push(resource("i-1"));
    r.resources.push(resource("i-2"));
    let t = second.evaluate(&r).unwrap().transitions;
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].state, t[0].reason),
        (AlertState::Resolved, Some(ResolveReason::Cleared))
    );
}

/// Issue 15, section 3: a resolve says why. No data is not a recovery.
#[test]
fn resolutions_carry_a_structured_reason() {
    let mut e = engine();
    let mut reasons = Vec::new();
    for i in 0..9 {
        let mut r = WindowRows::empty(window(i));
        if i < 2 {
            r.queries.push(query("a", 5000.0));
        }
        for t in e.evaluate(&r).unwrap().transitions {
            reasons.push((i, t.state, t.reason));
        }
    }
    assert_eq!(
        reasons,
        vec![
            (0, AlertState::Firing, None),
            (5, AlertState::Resolved, Some(ResolveReason::NoData))
        ]
    );
    let mut e = engine();
    let got: Vec<Option<ResolveReason>> = (0..3)
        .flat_map(|i| {
            let mut r = WindowRows::empty(window(i));
            r.queries
                .push(query("a", if i == 0 { 5000.0 } else { 10.0 }));
            e.evaluate(&r).unwrap().transitions
        })
        .map(|t| t.reason)
        .collect();
    assert_eq!(got, vec![None, Some(ResolveReason::Cleared)]);
}

/// A firing alert whose rule is disabled by a config change resolves at once, reason
/// rule_disabled, instead of staying firing (or resolving later as "no data").
#[test]
fn disabling_a_rule_resolves_its_firing_alerts() {
    let mut first = engine();
    let mut r = WindowRows::empty(window(0));
    r.queries.push(query("a", 5000.0));
    let ev = first.evaluate(&r).unwrap();
    assert_eq!(ev.transitions.len(), 1);
    let mut s = AlertSettings::default();
    s.rules.slow_query.enabled = Some(false);
    let mut second = Engine::new(&s).unwrap();
    second.restore(ev.changes);
    let mut r = WindowRows::empty(window(1));
    r.queries.push(query("a", 5000.0));
    let ev2 = second.evaluate(&r).unwrap();
    assert_eq!(ev2.transitions.len(), 1, "{:?}", ev2.transitions);
    let t = &ev2.transitions[0];
    assert_eq!(t.state, AlertState::Resolved);
    assert_eq!(t.reason, Some(ResolveReason::RuleDisabled));
    assert_eq!(t.alert_id, ev.transitions[0].alert_id);
    assert!(t.message.contains("disabled"), "{}", t.message);
    assert!(second.states().is_empty());
}

fn burn_settings() -> AlertSettings {
    let mut s = AlertSettings::default();
    s.rules.error_budget_burn = RulePatch {
        enabled: Some(true),
        slo_target: Some(0.999),
        ..RulePatch::default()
    };
    s
}

/// Minute windows; 1000 requests each; `burn(i)` times the budget in 5xx (budget 0.1 %).
fn burn_run(
    e: &mut Engine,
    range: std::ops::Range<i64>,
    burn: impl Fn(i64) -> f64,
) -> Vec<(i64, Transition)> {
    let mut out = Vec::new();
    for i in range {
        let mut r = WindowRows::empty(window(i));
        let mut row = request("/pay", 10.0, 1000);
        row.status_5xx = (burn(i) * 1.0).round() as i64; // 1000 * 0.001 * burn
        r.requests.push(row);
        for t in e.evaluate(&r).unwrap().transitions {
            out.push((i, t));
        }
    }
    out
}

/// Issue 15, section 4: a 20x burn fires the fast pair (1 h / 5 min at 14.4x) once its long
/// window reaches 14.4x (0.72 h into the burn), and resolves within the short window after the
/// burn stops.
#[test]
fn a_20x_burn_fires_the_fast_pair_and_resolves_within_its_short_window() {
    let mut e = Engine::new(&burn_settings()).unwrap();
    assert_eq!(e.history_span(), std::time::Duration::from_secs(6 * 3600));
    // 6 h clean, then 20x for 90 min, then clean again.
    let start = 360;
    let stop = start + 90;
    let got = burn_run(&mut e, 0..stop + 60, |i| {
        if (start..stop).contains(&i) {
            20.0
        } else {
            0.0
        }
    });
    assert_eq!(got.len(), 2, "{got:#?}");
    let (fired_at, f) = &got[0];
    assert_eq!(f.state, AlertState::Firing);
    assert_eq!(f.rule, RuleId::ErrorBudgetBurn);
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.threshold, 14.4, "the fast pair");
    // 14.4 / 20 of an hour = 43.2 min: the window ending 44 min into the burn.
    assert_eq!(
        *fired_at,
        start + 43,
        "fired {} min into the burn",
        fired_at - start
    );
    assert!(f.observed_value >= 14.4 && f.observed_value <= 20.0);
    let (resolved_at, r) = &got[1];
    assert_eq!(
        (r.state, r.reason),
        (AlertState::Resolved, Some(ResolveReason::Cleared))
    );
    assert!(
        *resolved_at >= stop && *resolved_at < stop + 5,
        "resolved {} min after the burn stopped",
        resolved_at - stop
    );
    assert_eq!(r.alert_id, f.alert_id);
}

/// A 2x burn (budget gone in 15 days of a 30-day period) pages nobody: both pairs need more.
#[test]
fn a_2x_burn_fires_nothing() {
    let mut e = Engine::new(&burn_settings()).unwrap();
    let got = burn_run(&mut e, 0..12 * 60, |_| 2.0);
    assert!(got.is_empty(), "{got:#?}");
}

/// The slow pair (6 h / 30 min at 6x) catches a sustained 7x burn the fast pair misses.
#[test]
fn a_sustained_7x_burn_fires_the_slow_pair() {
    let mut e = Engine::new(&burn_settings()).unwrap();
    let got = burn_run(&mut e, 0..12 * 60, |i| if i >= 360 { 7.0 } else { 0.0 });
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].1.threshold, 6.0, "the slow pair");
    // After 6 h clean: 6 / 7 of 6 h = 308.6 min into the burn, the window ending at 309.
    assert_eq!(got[0].0, 360 + 308);
}

/// Off by default, and a bad objective is a config error naming the rule.
#[test]
fn burn_rate_is_off_by_default_and_checks_its_objective() {
    let mut e = engine();
    assert!(e.history_span().is_zero());
    assert!(
        burn_run(&mut e, 0..120, |_| 100.0)
            .iter()
            .all(|(_, t)| t.rule != RuleId::ErrorBudgetBurn)
    );
    let mut s = burn_settings();
    s.rules.error_budget_burn.slo_target = Some(1.0);
    let err = Engine::new(&s).unwrap_err();
    assert!(err.to_string().contains("error_budget_burn"), "{err}");
}

fn memory(instance: &str, used: f64) -> ResourceRow {
    ResourceRow {
        memory_utilization_mean: Some(used),
        memory_utilization_last: Some(used),
        ..resource(instance)
    }
}

fn two_levels() -> AlertSettings {
    let mut s = AlertSettings::default();
    s.rules.memory_utilization = RulePatch {
        threshold: Some(0.8),
        critical_threshold: Some(0.9),
        ..RulePatch::default()
    };
    s
}

/// Issue 15, section 2: memory at 80 % warns, at 90 % the same alert becomes critical (one
/// more firing event, same id), and it resolves once, critical.
#[test]
fn one_alert_escalates_from_warning_to_critical() {
    let mut e = Engine::new(&two_levels()).unwrap();
    let levels = [0.5, 0.85, 0.87, 0.95, 0.85, 0.97, 0.7, 0.5];
    let mut got = Vec::new();
    for (i, v) in levels.iter().enumerate() {
        let mut r = WindowRows::empty(window(i as i64));
        r.resources.push(memory("i-1", *v));
        for t in e.evaluate(&r).unwrap().transitions {
            got.push((i, t));
        }
    }
    let summary: Vec<(usize, AlertState, Severity, f64)> = got
        .iter()
        .filter(|(_, t)| t.rule == RuleId::MemoryUtilization)
        .map(|(i, t)| (*i, t.state, t.severity, t.threshold))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, AlertState::Firing, Severity::Warning, 0.8),
            (3, AlertState::Firing, Severity::Critical, 0.9),
            (6, AlertState::Resolved, Severity::Critical, 0.8),
        ],
        "no second escalation at 0.97, no de-escalation at 0.85"
    );
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|(_, t)| t.alert_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one alert");
    assert!(
        got[1].1.message.contains("escalated to critical"),
        "{}",
        got[1].1.message
    );
}

/// Past the critical level at once: one firing event, critical. A restart keeps the level.
#[test]
fn a_jump_past_critical_fires_critical_and_a_restart_keeps_it() {
    let s = two_levels();
    let mut first = Engine::new(&s).unwrap();
    let mut r = WindowRows::empty(window(0));
    r.resources.push(memory("i-1", 0.95));
    let ev = first.evaluate(&r).unwrap();
    let t: Vec<_> = ev
        .transitions
        .iter()
        .filter(|t| t.rule == RuleId::MemoryUtilization)
        .collect();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].state, t[0].severity),
        (AlertState::Firing, Severity::Critical)
    );
    let mut second = Engine::new(&s).unwrap();
    second.restore(ev.changes);
    let mut r = WindowRows::empty(window(1));
    r.resources.push(memory("i-1", 0.96));
    assert!(
        second.evaluate(&r).unwrap().transitions.is_empty(),
        "no repeat"
    );
    let mut r = WindowRows::empty(window(2));
    r.resources.push(memory("i-1", 0.5));
    let t = second.evaluate(&r).unwrap().transitions;
    assert_eq!(
        (t[0].state, t[0].severity),
        (AlertState::Resolved, Severity::Critical)
    );
}

#[test]
fn a_critical_threshold_on_the_wrong_side_is_rejected() {
    let mut s = AlertSettings::default();
    s.rules.memory_utilization.critical_threshold = Some(0.7);
    let e = Engine::new(&s).unwrap_err().to_string();
    assert!(
        e.contains("memory_utilization") && e.contains("critical_threshold"),
        "{e}"
    );
    let mut s = AlertSettings::default();
    s.rules.cache_hit_ratio.critical_threshold = Some(0.5); // fires below 0.8: 0.5 is beyond
    assert!(Engine::new(&s).is_ok());
}

// ---- Endpoint SLAs from the table (issue 14, section 4) and the latency burn (issue 15, 4).

fn sla_table(endpoint: &str, sla: Sla) -> SlaTable {
    let mut t = SlaTable::new();
    t.insert(("shop".to_string(), endpoint.to_string()), sla);
    t
}

/// A row of `endpoint_slas` sets the statistic and threshold of `endpoint_sla` for its endpoint
/// (clear threshold in the configured proportion); other endpoints keep the config's p95 500 ms.
#[test]
fn endpoint_sla_takes_statistic_and_threshold_from_the_sla_table() {
    let mut e = engine();
    e.set_slas(sla_table(
        "/pay",
        Sla {
            statistic: Statistic::P99,
            threshold_ms: 200.0,
            slo_target: 0.99,
        },
    ));
    let row = |endpoint: &str, p95_ms: f64, p99_ms: f64| {
        let mut r = request(endpoint, p95_ms, 100);
        r.latency.p99_us = (p99_ms * 1000.0) as i64;
        r
    };
    let mut rows = WindowRows::empty(window(0));
    // /pay: p99 300 > 200 (its row), p95 well under the config's 500.
    rows.requests.push(row("/pay", 100.0, 300.0));
    // /cart: no row, p99 300 but p95 450 <= 500: nothing.
    rows.requests.push(row("/cart", 450.0, 300.0));
    let ev = e.evaluate(&rows).unwrap();
    assert_eq!(ev.transitions.len(), 1, "{:#?}", ev.transitions);
    let t = &ev.transitions[0];
    assert_eq!(t.rule, RuleId::EndpointSla);
    assert_eq!(t.labels["endpoint"], "/pay");
    assert_eq!((t.threshold, t.clear_threshold), (200.0, 160.0));
    assert_eq!(t.observed_value, 300.0);
    assert!(
        t.message.contains("p99 300.0 ms over 200 ms"),
        "{}",
        t.message
    );
    // /pay at p99 170: between clear (160) and fire: still firing. /cart at p95 600: fires
    // on the config default.
    let mut rows = WindowRows::empty(window(1));
    rows.requests.push(row("/pay", 100.0, 170.0));
    rows.requests.push(row("/cart", 600.0, 700.0));
    let ev = e.evaluate(&rows).unwrap();
    assert_eq!(ev.transitions.len(), 1, "{:#?}", ev.transitions);
    assert_eq!(ev.transitions[0].labels["endpoint"], "/cart");
    assert_eq!(ev.transitions[0].threshold, 500.0);
    // The mean as the statistic.
    e.set_slas(sla_table(
        "/pay",
        Sla {
            statistic: Statistic::Avg,
            threshold_ms: 50.0,
            slo_target: 0.99,
        },
    ));
    let mut rows = WindowRows::empty(window(2));
    let mut r = row("/pay", 100.0, 170.0);
    r.latency.mean_us = 40_000;
    rows.requests.push(r);
    let ev = e.evaluate(&rows).unwrap();
    // /pay resolves (mean 40 <= clear 40); /cart has no data (no resolve yet).
    assert_eq!(ev.transitions.len(), 1, "{:#?}", ev.transitions);
    assert_eq!(ev.transitions[0].state, AlertState::Resolved);
    assert!(
        ev.transitions[0].message.contains("avg 40.0 ms"),
        "{}",
        ev.transitions[0].message
    );
}

fn latency_burn_settings() -> AlertSettings {
    let mut s = AlertSettings::default();
    s.rules.latency_burn = RulePatch {
        enabled: Some(true),
        ..RulePatch::default()
    };
    s
}

/// A 10 ms bucket and a 400 ms bucket (HDR bucket bounds at 2 significant digits).
fn latency_buckets(requests: i64, slow: i64) -> Vec<Bucket> {
    vec![
        Bucket {
            low_us: 10_000,
            high_us: 10_063,
            count: requests - slow,
        },
        Bucket {
            low_us: 399_360,
            high_us: 401_407,
            count: slow,
        },
    ]
    .into_iter()
    .filter(|b| b.count > 0)
    .collect()
}

/// Minute windows of 1000 requests; `burn(i)` times the budget of a 99 % objective over the SLA
/// threshold (10 requests = 1x), at 400 ms.
fn latency_burn_run(
    e: &mut Engine,
    range: std::ops::Range<i64>,
    burn: impl Fn(i64) -> f64,
) -> Vec<(i64, Transition)> {
    let mut out = Vec::new();
    for i in range {
        let mut r = WindowRows::empty(window(i));
        let mut row = request("/pay", 10.0, 1000);
        row.buckets = latency_buckets(1000, (burn(i) * 10.0).round() as i64);
        r.requests.push(row);
        for t in e.evaluate(&r).unwrap().transitions {
            if t.rule == RuleId::LatencyBurn {
                out.push((i, t));
            }
        }
    }
    out
}

fn sla_300ms() -> SlaTable {
    sla_table(
        "/pay",
        Sla {
            statistic: Statistic::P99,
            threshold_ms: 300.0,
            slo_target: 0.99,
        },
    )
}

/// Issue 15, section 4, latency: a 20x burn of the latency budget fires the fast pair 44 min
/// in and resolves within the short window after it stops; the share is exact (300 ms is not
/// inside a bucket).
#[test]
fn a_20x_latency_burn_fires_the_fast_pair_and_resolves() {
    let mut e = Engine::new(&latency_burn_settings()).unwrap();
    assert_eq!(e.history_span(), std::time::Duration::from_secs(6 * 3600));
    e.set_slas(sla_300ms());
    let (start, stop) = (360, 450);
    let got = latency_burn_run(&mut e, 0..stop + 60, |i| {
        if (start..stop).contains(&i) {
            20.0
        } else {
            0.0
        }
    });
    assert_eq!(got.len(), 2, "{got:#?}");
    let (fired_at, f) = &got[0];
    assert_eq!(
        (f.state, f.severity),
        (AlertState::Firing, Severity::Critical)
    );
    assert_eq!(f.threshold, 14.4, "the fast pair");
    assert_eq!(*fired_at, start + 43);
    assert!(
        f.message
            .contains("latency budget of the 99 % within 300 ms objective")
            && f.message.contains("; exact"),
        "{}",
        f.message
    );
    let (resolved_at, r) = &got[1];
    assert_eq!(
        (r.state, r.reason, &r.alert_id),
        (
            AlertState::Resolved,
            Some(ResolveReason::Cleared),
            &f.alert_id
        )
    );
    assert!((stop..stop + 5).contains(resolved_at), "{resolved_at}");
}

/// A sustained 7x latency burn fires the slow pair only; 2x for 12 h fires nothing.
#[test]
fn latency_burn_slow_pair_and_low_burn() {
    let mut e = Engine::new(&latency_burn_settings()).unwrap();
    e.set_slas(sla_300ms());
    let got = latency_burn_run(&mut e, 0..12 * 60, |i| if i >= 360 { 7.0 } else { 0.0 });
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!((got[0].0, got[0].1.threshold), (360 + 308, 6.0));

    let mut e = Engine::new(&latency_burn_settings()).unwrap();
    e.set_slas(sla_300ms());
    assert!(latency_burn_run(&mut e, 0..12 * 60, |_| 2.0).is_empty());
}

/// The threshold and objective are the endpoint's: without a row, the `endpoint_sla` rule's
/// 500 ms (the 400 ms requests are within it: nothing fires); a row's `slo_target` of 0.98
/// halves the burn. A threshold inside a bucket is counted on the worse side and said so.
#[test]
fn latency_burn_uses_the_endpoint_threshold_and_objective() {
    let mut e = Engine::new(&latency_burn_settings()).unwrap();
    assert!(latency_burn_run(&mut e, 0..120, |_| 50.0).is_empty());

    let mut e = Engine::new(&latency_burn_settings()).unwrap();
    e.set_slas(sla_table(
        "/pay",
        Sla {
            statistic: Statistic::P99,
            threshold_ms: 300.0,
            slo_target: 0.98,
        },
    ));
    // 20x of a 1 % budget is 10x of a 2 % one: under 14.4, fires the slow pair (6x) later.
    let got = latency_burn_run(&mut e, 0..120, |_| 20.0);
    assert!(
        !got.is_empty() && got.iter().all(|(_, t)| t.threshold == 6.0),
        "{got:#?}"
    );

    // 400 ms: inside the 399.36..=401.407 ms bucket.
    let mut e = Engine::new(&latency_burn_settings()).unwrap();
    e.set_slas(sla_table(
        "/pay",
        Sla {
            statistic: Statistic::P99,
            threshold_ms: 400.0,
            slo_target: 0.99,
        },
    ));
    let got = latency_burn_run(&mut e, 0..120, |_| 20.0);
    assert_eq!(got[0].1.state, AlertState::Firing);
    assert!(
        got[0].1.message.contains("approximate"),
        "{}",
        got[0].1.message
    );
    assert_eq!(
        over_threshold(&latency_buckets(1000, 200), 400_000),
        (200, false)
    );
    assert_eq!(
        over_threshold(&latency_buckets(1000, 200), 401_407),
        (0, true)
    );
    assert_eq!(
        over_threshold(&latency_buckets(1000, 200), 399_359),
        (200, true)
    );
}

// ---- Late corrections re-judge (issue 15, section 5).

/// Judges windows `range` with query p99s from `p99(i)`, collecting every transition and the
/// final change per (rule, key).
fn judge_queries(
    e: &mut Engine,
    range: std::ops::Range<i64>,
    p99: impl Fn(i64) -> f64,
    changes: &mut std::collections::BTreeMap<(RuleId, String), StateRow>,
) -> Vec<(i64, Transition)> {
    let mut out = Vec::new();
    for i in range {
        let mut rows = WindowRows::empty(window(i));
        rows.queries.push(query("billing", p99(i)));
        let ev = e.evaluate(&rows).unwrap();
        out.extend(ev.transitions.into_iter().map(|t| (i, t)));
        for c in ev.changes {
            changes.insert((c.rule, c.key.clone()), c);
        }
    }
    out
}

/// A correction that makes an already judged window breach: judging again from it fires the
/// alert the corrected data fires (with the id of that window), and resolves it when the
/// later windows clear it; the stored phases end as a fresh evaluation's would.
#[test]
fn a_correction_that_breaches_fires_when_judged_again() {
    let mut e = engine();
    let mut changes = Default::default();
    assert!(judge_queries(&mut e, 0..10, |_| 500.0, &mut changes).is_empty());
    assert_eq!(e.rewind(3 * MIN), Rewind::Rewound);
    assert!(e.replaying());
    let corrected = |i: i64| if i == 3 { 2000.0 } else { 500.0 };
    let got = judge_queries(&mut e, 3..10, corrected, &mut changes);
    assert!(!e.replaying(), "the replay ends at window 9");
    let states: Vec<(i64, AlertState)> = got.iter().map(|(i, t)| (*i, t.state)).collect();
    assert_eq!(states, [(3, AlertState::Firing), (4, AlertState::Resolved)]);
    // Same ids as a fresh engine fed the corrected data.
    let mut fresh = engine();
    let want = judge_queries(&mut fresh, 0..10, corrected, &mut Default::default());
    assert_eq!(got[0].1.alert_id, want[0].1.alert_id);
    assert!(e.states().is_empty());
    // Windows after the replay go on as usual.
    assert!(judge_queries(&mut e, 10..12, |_| 500.0, &mut changes).is_empty());
}

/// A correction that takes the breach away: the alert fired on the old data no longer fires on
/// the corrected data, so it is resolved with reason `corrected` at the end of the replay, and
/// its stored phase is deleted.
#[test]
fn a_correction_that_clears_resolves_the_alert_with_a_reason() {
    let mut e = engine();
    let mut changes = Default::default();
    // Window 3 breaches (1200 ms), 4..9 hover at 900 (under fire, over clear): firing.
    let old = |i: i64| match i {
        3 => 1200.0,
        i if i > 3 => 900.0,
        _ => 500.0,
    };
    let got = judge_queries(&mut e, 0..10, old, &mut changes);
    assert_eq!(got.len(), 1);
    let fired = got[0].1.alert_id.clone();
    assert_eq!(e.states().len(), 1);
    changes.clear();
    assert_eq!(e.rewind(3 * MIN), Rewind::Rewound);
    let corrected = |i: i64| if i == 3 { 600.0 } else { old(i) };
    let got = judge_queries(&mut e, 3..10, corrected, &mut changes);
    assert_eq!(got.len(), 1, "{got:#?}");
    let (at, t) = &got[0];
    assert_eq!(*at, 9, "resolved at the end of the replay");
    assert_eq!(
        (t.state, t.reason, &t.alert_id),
        (AlertState::Resolved, Some(ResolveReason::Corrected), &fired)
    );
    assert!(t.message.contains("late data corrected"), "{}", t.message);
    assert!(e.states().is_empty());
    let stored: Vec<_> = changes.values().collect();
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(
        (stored[0].rule, &stored[0].phase),
        (RuleId::SlowQuery, &None)
    );
}

/// Windows not judged yet need no rewind; windows before the remembered span cannot be judged
/// again (the caller logs it); a zero horizon remembers nothing.
#[test]
fn rewind_limits() {
    let mut s = AlertSettings {
        rejudge_horizon: std::time::Duration::from_secs(5 * 60),
        ..AlertSettings::default()
    };
    let mut e = Engine::new(&s).unwrap();
    assert_eq!(e.rewind(0), Rewind::NotJudged);
    e.warm(&WindowRows::empty(window(0))).unwrap();
    judge_queries(&mut e, 1..20, |_| 500.0, &mut Default::default());
    assert_eq!(e.rewind(20 * MIN), Rewind::NotJudged);
    assert_eq!(
        e.rewind(3 * MIN),
        Rewind::TooOld {
            oldest_us: Some(13 * MIN + 1)
        }
    );
    assert!(!e.replaying());
    s.rejudge_horizon = std::time::Duration::ZERO;
    let mut e = Engine::new(&s).unwrap();
    judge_queries(&mut e, 1..5, |_| 500.0, &mut Default::default());
    assert_eq!(e.rewind(2 * MIN), Rewind::TooOld { oldest_us: None });
}

/// A correction that moves the window an episode fires in: the alert of the old window resolves
/// (`corrected`) and the one of the corrected window fires, so one alert stays firing.
#[test]
fn a_correction_that_moves_the_firing_window_swaps_the_alert() {
    let mut e = engine();
    let mut changes = Default::default();
    let old = |i: i64| if i >= 4 { 1200.0 } else { 500.0 };
    let got = judge_queries(&mut e, 0..10, old, &mut changes);
    assert_eq!(got.len(), 1);
    let old_id = got[0].1.alert_id.clone();
    assert_eq!(e.rewind(3 * MIN), Rewind::Rewound);
    let corrected = |i: i64| if i == 3 { 1200.0 } else { old(i) };
    let got = judge_queries(&mut e, 3..10, corrected, &mut changes);
    let seen: Vec<(i64, AlertState, Option<ResolveReason>, bool)> = got
        .iter()
        .map(|(i, t)| (*i, t.state, t.reason, t.alert_id == old_id))
        .collect();
    assert_eq!(
        seen,
        [
            (3, AlertState::Firing, None, false),
            (
                9,
                AlertState::Resolved,
                Some(ResolveReason::Corrected),
                true
            ),
        ]
    );
    let firing: Vec<_> = e.states();
    assert_eq!(firing.len(), 1);
    assert!(
        matches!(&firing[0].phase, Some(Phase::Firing { alert_id, .. }) if *alert_id == got[0].1.alert_id)
    );
}
