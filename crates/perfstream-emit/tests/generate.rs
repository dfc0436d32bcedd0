//! The pure generation core and the truth: determinism, classes, episodes, exact figures.

use perfstream_emit::truth::{QUANTILES, exact_quantile};
use perfstream_emit::{
    Class, EpisodeKind, MalformedKind, Record, Scenario, TopicKind, TruthBuilder, generate,
    truth_of,
};
use perfstream_events::{Event, QueryEvent, QueryType, RequestEvent};

fn bytes(s: &Scenario) -> Vec<(TopicKind, Vec<u8>, Vec<u8>)> {
    generate(s).map(|r| (r.topic, r.key, r.payload)).collect()
}

#[test]
fn same_seed_same_bytes_and_same_truth() {
    let s = Scenario::small(42);
    let a = bytes(&s);
    let b = bytes(&s);
    assert!(a.len() > s.count as usize);
    assert_eq!(a, b);
    let ta = serde_json::to_vec(&truth_of(&s)).unwrap();
    let tb = serde_json::to_vec(&truth_of(&s)).unwrap();
    assert_eq!(ta, tb);

    let other = bytes(&Scenario::small(43));
    assert_ne!(a, other);
}

#[test]
fn truth_file_round_trips_through_json() {
    let t = truth_of(&Scenario::small(5));
    let json = serde_json::to_string(&t).unwrap();
    let back: perfstream_emit::Truth = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
}

fn big() -> Scenario {
    let mut s = Scenario::small(7);
    s.count = 20_000;
    s.rate = 200.0; // 100 s of event time: several 60 s windows
    s.malformed = 0.01;
    s.too_late = 9;
    s
}

#[test]
fn classes_have_the_documented_event_times() {
    let s = big();
    let records: Vec<Record> = generate(&s).collect();
    let mut regular = 0u64;
    let mut too_late = 0u64;
    let mut malformed = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        let Some(e) = &r.event else {
            let Class::Malformed(kind) = r.class else {
                panic!("event-less record {r:?}")
            };
            malformed += 1;
            seen.insert(kind);
            match kind {
                MalformedKind::Empty => assert!(r.payload.is_empty()),
                MalformedKind::BadMagic => assert_ne!(r.payload[0], 0),
                MalformedKind::UnknownSchema => assert_eq!(r.payload[..5], [0, 0, 0, 3, 0xE7]),
                MalformedKind::Truncated => {
                    assert!(!r.payload.is_empty());
                    if r.payload.len() >= 5 {
                        let id = u32::from_be_bytes(r.payload[1..5].try_into().unwrap());
                        // Version 2 (ids 6, 7) when the event had a trace id.
                        let expected: &[u32] = match r.topic {
                            TopicKind::Query => &[1, 6],
                            TopicKind::Request => &[2, 7],
                            TopicKind::Resource => &[3],
                        };
                        assert!(expected.contains(&id), "{id}");
                    }
                }
            }
            continue;
        };
        let shift = r.sched_us - e.time_us();
        match r.class {
            Class::OnTime => assert_eq!(shift, 0),
            Class::OutOfOrder => assert!(shift > 0 && shift < s.allowed_lateness_us),
            Class::Late => {
                assert!(shift > s.window_us + s.allowed_lateness_us);
                assert!(shift <= s.correction_horizon_us / 2);
            }
            Class::TooLate => {
                too_late += 1;
                assert!(shift > s.correction_horizon_us + 2 * s.window_us + s.allowed_lateness_us);
                assert!(r.sched_us >= s.start_us + s.span_us() / 2);
            }
            Class::Malformed(_) => panic!("malformed with an event"),
        }
        if !matches!(e, Event::Resource(_)) && r.class != Class::TooLate {
            regular += 1;
        }
        // Key and payload are the series key and the encoding of the event.
        assert_eq!(r.key, perfstream_events::series_key(e));
        let mut enc = Vec::new();
        perfstream_events::encode_event(&mut enc, e);
        assert_eq!(r.payload, enc);
    }
    assert_eq!(regular, s.count);
    assert_eq!(too_late, s.too_late);
    // Issue 14: about one query or request in four carries a trace id (schema version 2).
    let (traced, sampled) = records
        .iter()
        .filter_map(|r| match &r.event {
            Some(Event::Query(q)) => Some(q.trace_id.is_some()),
            Some(Event::Request(q)) => Some(q.trace_id.is_some()),
            _ => None,
        })
        .fold((0, 0), |(t, n), x| (t + usize::from(x), n + 1));
    assert!(
        (0.15..0.35).contains(&(traced as f64 / sampled as f64)),
        "{traced} of {sampled} traced"
    );
    assert!((100..=300).contains(&malformed), "{malformed}");
    assert_eq!(seen.len(), 4, "every malformed kind appears: {seen:?}");
    // Scheduled times never go backwards: pacing follows them.
    assert!(records.windows(2).all(|w| w[0].sched_us <= w[1].sched_us));
}

#[test]
fn fractions_are_close_to_the_requested_ones() {
    let s = big();
    let t = truth_of(&s);
    let n = |c: &str| t.totals.by_class.get(c).copied().unwrap_or(0) as f64;
    let events = n("on_time") + n("out_of_order") + n("late");
    assert!((n("late") / events - s.late).abs() < 0.005, "{}", n("late"));
    assert!(
        (n("out_of_order") / events - s.out_of_order).abs() < 0.01,
        "{}",
        n("out_of_order")
    );
    assert_eq!(n("too_late") as u64, s.too_late);
    assert_eq!(t.too_late.events.len() as u64, s.too_late);
    assert_eq!(t.malformed.count as f64, n("malformed"));
}

#[test]
fn baseline_stays_under_alert_thresholds_and_episodes_cross_them() {
    let s = big();
    let eps = perfstream_emit::episodes(&s);
    assert_eq!(eps.len(), 6);
    let slow = eps
        .iter()
        .find(|e| e.kind == EpisodeKind::SlowQuery)
        .unwrap();
    let sla = eps
        .iter()
        .find(|e| e.kind == EpisodeKind::SlaBreach)
        .unwrap();
    let ramp = eps
        .iter()
        .find(|e| e.kind == EpisodeKind::MemoryRamp)
        .unwrap();
    let inside = |e: &perfstream_emit::Episode, t: i64| (e.start_us..e.end_us).contains(&t);
    let mut slow_hits = 0;
    let mut sla_hits = 0;
    let mut ramp_shares = Vec::new();
    for r in generate(&s) {
        match r.event {
            Some(Event::Query(q)) => {
                let target = q.service == slow.labels["service"]
                    && q.query_hash == slow.labels["query_hash"]
                    && inside(slow, q.executed_at_us);
                if target {
                    slow_hits += 1;
                    assert!(q.execution_time_us > 1_000_000);
                } else {
                    assert!(q.execution_time_us <= 900_000);
                }
            }
            Some(Event::Request(e)) => {
                let target = e.service == sla.labels["service"]
                    && e.endpoint == sla.labels["endpoint"]
                    && e.method == sla.labels["method"]
                    && inside(sla, e.occurred_at_us);
                if target {
                    sla_hits += 1;
                    assert!(e.response_time_us > 500_000);
                } else {
                    assert!(e.response_time_us <= 450_000);
                }
            }
            Some(Event::Resource(e)) => {
                let share = e.memory_used_bytes as f64 / e.memory_limit_bytes as f64;
                let target =
                    e.service == ramp.labels["service"] && e.instance == ramp.labels["instance"];
                if target && inside(ramp, e.observed_at_us) && r.class == Class::OnTime {
                    ramp_shares.push(share);
                } else if !(target && inside(ramp, e.observed_at_us)) {
                    assert!(share < 0.5, "{share}");
                }
                let pool = e.pool_active as f64 / e.pool_max as f64;
                if e.pool_waiters == 0 {
                    assert!(pool < 0.9, "{pool}");
                }
            }
            None => {}
        }
    }
    assert!(slow_hits > 10, "{slow_hits}");
    assert!(sla_hits > 10, "{sla_hits}");
    assert!(ramp_shares.len() >= 2);
    assert!(
        ramp_shares.windows(2).all(|w| w[0] < w[1]),
        "{ramp_shares:?}"
    );
    // Resource episodes are on distinct instances.
    let mut instances: Vec<_> = eps
        .iter()
        .filter_map(|e| {
            e.labels
                .get("instance")
                .map(|i| (e.labels["service"].clone(), i.clone()))
        })
        .collect();
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 4);
}

fn query(t: i64, us: i64, rows: i64) -> Event {
    Event::Query(QueryEvent {
        service: "svc".into(),
        instance: "svc-0".into(),
        query_hash: "h1".into(),
        query_type: QueryType::Select,
        query_text: None,
        execution_time_us: us,
        rows_affected: rows,
        tenant_id: None,
        trace_id: None,
        executed_at_us: t,
    })
}

fn record(seq: u64, class: Class, e: Event) -> Record {
    let topic = match e {
        Event::Query(_) => TopicKind::Query,
        Event::Request(_) => TopicKind::Request,
        Event::Resource(_) => TopicKind::Resource,
    };
    Record {
        seq,
        sched_us: e.time_us(),
        topic,
        key: perfstream_events::series_key(&e),
        payload: Vec::new(),
        class,
        event: Some(e),
    }
}

#[test]
fn truth_figures_are_exact_on_a_hand_made_set() {
    let mut s = Scenario::small(1);
    s.start_us = 0;
    s.episodes.clear();
    let mut b = TruthBuilder::new(&s);
    // Window [0, 60 s): 10 queries 100..=1000 µs; one at exactly 60 s goes to the next window.
    for (i, us) in (1..=10).map(|k| k * 100).enumerate() {
        b.add(&record(
            i as u64,
            Class::OnTime,
            query(1_000 + i as i64, us, i as i64),
        ));
    }
    b.add(&record(10, Class::Late, query(60_000_000, 7, 3)));
    b.add(&record(11, Class::TooLate, query(-9_000_000_000, 5, 0)));
    b.add(&record(
        12,
        Class::OnTime,
        Event::Request(RequestEvent {
            service: "svc".into(),
            instance: "svc-0".into(),
            endpoint: "/a/{id}".into(),
            method: "GET".into(),
            status_code: 503,
            response_time_us: 42,
            request_bytes: None,
            response_bytes: None,
            trace_id: None,
            occurred_at_us: 5,
        }),
    ));
    let t = b.finish();
    assert_eq!(t.query.len(), 2);
    let w0 = &t.query[0];
    assert_eq!((w0.window_start_us, w0.window_end_us), (0, 60_000_000));
    let d = &w0.execution_time_us;
    assert_eq!((d.count, d.sum, d.min, d.max), (10, 5_500, 100, 1_000));
    assert_eq!(
        (d.p50, d.p90, d.p95, d.p99, d.p999),
        (500, 900, 1_000, 1_000, 1_000)
    );
    assert_eq!((w0.rows_affected_sum, w0.rows_affected_max), (45, 9));
    assert_eq!(t.query[1].window_start_us, 60_000_000);
    assert_eq!(t.query[1].execution_time_us.count, 1);
    assert_eq!(t.too_late.count, 1);
    assert_eq!(t.too_late.events[0].event_time_us, -9_000_000_000);
    assert_eq!(t.request[0].status["5xx"], 1);
    assert_eq!(t.request[0].status["2xx"], 0);
    assert_eq!(t.totals.aggregated["query"], 11);
    assert_eq!(t.totals.by_class["too_late"], 1);
}

#[test]
fn truth_rows_add_up_and_percentiles_are_ordered() {
    let s = big();
    let t = truth_of(&s);
    let q: u64 = t.query.iter().map(|r| r.execution_time_us.count).sum();
    let r: u64 = t.request.iter().map(|r| r.response_time_us.count).sum();
    let res: u64 = t.resource.iter().map(|r| r.count).sum();
    assert_eq!(q, t.totals.aggregated["query"]);
    assert_eq!(r, t.totals.aggregated["request"]);
    assert_eq!(res, t.totals.aggregated["resource"]);
    assert_eq!(q + r, s.count);
    for d in t
        .query
        .iter()
        .map(|r| &r.execution_time_us)
        .chain(t.request.iter().map(|r| &r.response_time_us))
    {
        assert!(d.min <= d.p50 && d.p50 <= d.p90 && d.p90 <= d.p95);
        assert!(d.p95 <= d.p99 && d.p99 <= d.p999 && d.p999 <= d.max);
    }
    for row in &t.resource {
        assert!(row.memory_used_bytes.min <= row.memory_used_bytes.last);
        assert!(row.memory_used_bytes.last <= row.memory_used_bytes.max);
        assert_eq!(
            row.cache_hits,
            row.caches.values().map(|c| c.hits).sum::<i64>()
        );
    }
    // Windows are UTC-aligned.
    assert!(t.query.iter().all(|r| r.window_start_us % s.window_us == 0));
    assert_eq!(exact_quantile(&[1, 2, 3, 4], QUANTILES[0]), 2);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn scenario() -> impl Strategy<Value = Scenario> {
        (
            any::<u64>(),
            1u64..3_000,
            (1u32..5, 1u32..4, 1u32..10, 1u32..50),
            prop_oneof![Just(10_000_000i64), Just(60_000_000)],
            (0.0f64..0.2, 0.0f64..0.1, 0u64..10, 0.0f64..0.05),
            1.0f64..5_000.0,
        )
            .prop_map(
                |(seed, count, (services, instances, endpoints, hashes), window_us, fr, rate)| {
                    let mut s = Scenario::small(seed);
                    s.count = count;
                    s.services = services;
                    s.instances = instances;
                    s.endpoints = endpoints;
                    s.query_hashes = hashes;
                    s.window_us = window_us;
                    (s.out_of_order, s.late, s.too_late, s.malformed) = fr;
                    s.rate = rate;
                    s
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_scenario_is_deterministic_and_its_truth_adds_up(s in scenario()) {
            let a: Vec<Record> = generate(&s).collect();
            let b: Vec<Record> = generate(&s).collect();
            prop_assert_eq!(&a, &b);
            let t = truth_of(&s);
            let rows: u64 = t.query.iter().map(|r| r.execution_time_us.count).sum::<u64>()
                + t.request.iter().map(|r| r.response_time_us.count).sum::<u64>();
            prop_assert_eq!(rows, s.count);
            let resources: u64 = t.resource.iter().map(|r| r.count).sum();
            prop_assert_eq!(resources, t.totals.aggregated.get("resource").copied().unwrap_or(0));
            prop_assert_eq!(t.totals.acknowledged, a.len() as u64);
            prop_assert_eq!(t.too_late.count, s.too_late);
            for r in &a {
                if let Some(e) = &r.event {
                    let d = r.sched_us - e.time_us();
                    match r.class {
                        Class::OnTime => prop_assert_eq!(d, 0),
                        Class::OutOfOrder => prop_assert!(d > 0 && d < s.allowed_lateness_us),
                        Class::Late => prop_assert!(
                            d > s.window_us + s.allowed_lateness_us && d < s.correction_horizon_us
                        ),
                        Class::TooLate => prop_assert!(d > s.correction_horizon_us + s.window_us),
                        Class::Malformed(_) => prop_assert!(false, "malformed with an event"),
                    }
                }
            }
        }
    }
}

#[test]
fn hand_built_scenarios_are_validated_with_the_argument_named() {
    let mut s = Scenario::small(1);
    assert!(s.validate().is_ok());
    s.services = 0;
    assert!(s.validate().unwrap_err().to_string().contains("--services"));
    let mut s = Scenario::small(1);
    s.correction_horizon_us = s.window_us;
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("--correction-horizon")
    );
    let mut s = Scenario::small(1);
    s.rate = f64::NAN;
    assert!(s.validate().unwrap_err().to_string().contains("--rate"));
    // The sending loop refuses it before touching a broker.
    let err =
        perfstream_emit::produce_blocking(&s, &perfstream_emit::ProduceOptions::new("127.0.0.1:1"));
    assert!(matches!(
        err,
        Err(perfstream_emit::EmitError::InvalidArgs { .. })
    ));
}
