//! Cross-language fixtures for `tests/python/fastavro_roundtrip.py`.
//!
//! `fixtures write DIR`: writes Confluent-framed messages encoded by this crate, one file each,
//! and `DIR/manifest.json` with the expected field values (the JSON view of `perfstream_events::json`).
//! `fixtures check DIR`: reads a manifest and messages written by another encoder (fastavro),
//! decodes each on both paths (specialised and apache-avro resolution) and compares field by
//! field; where an entry has `key_hex`, also the series key. Prints
//! `fixtures check: N passed, M failed`; exits 1 if any failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use perfstream_events::encode::{
    encode_alert, encode_dead_letter, encode_query_v2, encode_request_v2,
};
use perfstream_events::json::{alert_to_json, dead_letter_to_json, event_to_json, hex};
use perfstream_events::*;
use serde_json::{Value, json};

const T0: i64 = 1_767_225_600_000_000;

/// A small deterministic generator, so the fixtures are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn name(&mut self, prefix: &str) -> String {
        const NAMES: [&str; 6] = [
            "campaign",
            "domäin",
            "user",
            "ингест",
            "billing",
            "🚀launch",
        ];
        format!(
            "{prefix}{}-{}",
            NAMES[self.below(6) as usize],
            self.below(1000)
        )
    }
}

/// A trace id for two events in three (version 2), none for the others (version 1); one of
/// them at the longest length validation accepts.
fn trace_id(g: &mut Lcg, i: usize) -> Option<String> {
    match i % 3 {
        0 => None,
        1 => Some(format!("{:016x}{:016x}", g.next(), g.next())),
        _ if i % 9 == 2 => Some("t".repeat(perfstream_events::validate::MAX_TRACE_ID_BYTES)),
        _ => Some(format!("1-{:08x}-{}", g.below(1 << 32), g.name(""))),
    }
}

enum Fixture {
    Event(Event),
    /// Written in version 2 whatever its trace id (a null `trace_id` is version 2 too).
    EventV2(Event),
    Alert(AlertEvent),
    DeadLetter(DeadLetter),
}

fn fixtures() -> Vec<Fixture> {
    let mut g = Lcg(42);
    let mut out = Vec::new();
    for i in 0..30 {
        let service = g.name("svc-");
        let instance = g.name("pod-");
        out.push(Fixture::Event(Event::Query(QueryEvent {
            service: service.clone(),
            instance: instance.clone(),
            query_hash: format!("{:016x}", g.next()),
            query_type: QueryType::ALL[i % 5],
            query_text: match i % 3 {
                0 => None,
                1 => Some("SELECT * FROM t WHERE a = $1 AND b = 'ü'".into()),
                _ => Some("x".repeat(8192)),
            },
            // The largest duration validation accepts (i64::MAX varints: the dead letters').
            execution_time_us: if i == 0 {
                4_000_000_000_000
            } else {
                g.below(10_000_000) as i64
            },
            rows_affected: g.below(1 << 40) as i64,
            tenant_id: (i % 2 == 0).then(|| g.name("tenant-")),
            executed_at_us: T0 + g.below(86_400_000_000) as i64,
            trace_id: trace_id(&mut g, i),
        })));
        out.push(Fixture::Event(Event::Request(RequestEvent {
            service: service.clone(),
            instance: instance.clone(),
            endpoint: format!("/api/{}/{{id}}", g.name("")),
            method: ["GET", "POST", "PUT", "DELETE", "Campaigns.List"][i % 5].into(),
            status_code: [100, 200, 404, 503, 599][i % 5],
            response_time_us: g.below(60_000_000) as i64,
            request_bytes: (i % 2 == 0).then(|| g.below(1 << 20) as i64),
            response_bytes: (i % 3 != 0).then(|| g.below(1 << 30) as i64),
            occurred_at_us: T0 + g.below(86_400_000_000) as i64,
            trace_id: trace_id(&mut g, i + 1),
        })));
        let caches = match i % 4 {
            0 => None,
            1 => Some(BTreeMap::new()),
            2 => Some(
                (0..64)
                    .map(|c| {
                        (
                            format!("cache-{c}"),
                            CacheCounters {
                                hits: c * 1000,
                                misses: c,
                            },
                        )
                    })
                    .collect(),
            ),
            _ => Some(BTreeMap::from([(
                g.name(""),
                CacheCounters {
                    hits: g.below(4_000_000_000_000) as i64,
                    misses: 0,
                },
            )])),
        };
        out.push(Fixture::Event(Event::Resource(ResourceEvent {
            service,
            instance,
            observed_at_us: T0 + g.below(86_400_000_000) as i64,
            interval_us: 10_000_000,
            cpu_utilization_ratio: [0.0, 0.123_456_789_012_345_67, 1.5, 1e-300, 0.999][i % 5],
            memory_used_bytes: g.below(1 << 34) as i64,
            memory_limit_bytes: 1 << 34,
            heap_bytes: (i % 2 == 0).then(|| g.below(1 << 33) as i64),
            gc_pause_us: (i % 2 == 1).then(|| g.below(100_000) as i64),
            gc_count: (i % 3 == 0).then_some(0),
            io_read_bytes: g.below(1 << 40) as i64,
            io_write_bytes: g.below(1 << 40) as i64,
            pool_active: g.below(100) as i32,
            pool_idle: g.below(100) as i32,
            pool_max: if i == 0 { i32::MAX } else { 100 },
            pool_waiters: g.below(10) as i32,
            pool_wait_us: g.below(1_000_000) as i64,
            caches,
        })));
    }
    let untraced: Vec<Event> = out
        .iter()
        .filter_map(|f| match f {
            Fixture::Event(e @ Event::Query(QueryEvent { trace_id: None, .. }))
            | Fixture::Event(e @ Event::Request(RequestEvent { trace_id: None, .. })) => {
                Some(e.clone())
            }
            _ => None,
        })
        .take(6)
        .collect();
    out.extend(untraced.into_iter().map(Fixture::EventV2));
    for i in 0..6 {
        out.push(Fixture::Alert(AlertEvent {
            alert_id: format!("{:016x}", g.next()),
            rule: ["slow_query", "pool_utilization", "memory_leak"][i % 3].into(),
            severity: Severity::ALL[i % 3],
            state: AlertState::ALL[i % 2],
            service: g.name("svc-"),
            labels: (0..i).map(|l| (format!("label-{l}"), g.name(""))).collect(),
            observed_value: [1250.5, -3.25, 0.0, 1e300, 0.1, 7.0][i],
            threshold: 1000.0,
            clear_threshold: [800.0, 0.0, -1.5, 1e-10, 0.05, 6.0][i],
            window_start_us: T0,
            window_end_us: T0 + 60_000_000,
            transitioned_at_us: T0 + 61_000_000 + i as i64,
            message: format!("rule {i} fired — ü"),
        }));
        out.push(Fixture::DeadLetter(DeadLetter {
            source_topic: "perf.query".into(),
            source_partition: i as i32,
            source_offset: if i == 0 {
                i64::MAX
            } else {
                g.below(1 << 40) as i64
            },
            original_key: (i % 2 == 0).then(|| b"svc\0hash".to_vec()),
            original_value: match i % 3 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some((0..=255u8).collect()),
            },
            error_kind: "bad_magic".into(),
            reason: "wrong magic byte 0x01: expected 0x00".into(),
            dead_at_us: T0 + i as i64,
        }));
    }
    out
}

fn write(dir: &Path) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut manifest = Vec::new();
    for (n, f) in fixtures().iter().enumerate() {
        let mut bytes = Vec::new();
        let (kind, value, key) = match f {
            Fixture::Event(e) | Fixture::EventV2(e) => {
                match (f, e) {
                    (Fixture::EventV2(_), Event::Query(q)) => encode_query_v2(&mut bytes, q),
                    (Fixture::EventV2(_), Event::Request(r)) => encode_request_v2(&mut bytes, r),
                    _ => encode_event(&mut bytes, e),
                }
                (
                    json::kind_name(e),
                    event_to_json(e),
                    Some(hex(&series_key(e))),
                )
            }
            Fixture::Alert(a) => {
                encode_alert(&mut bytes, a);
                ("alert", alert_to_json(a), None)
            }
            Fixture::DeadLetter(d) => {
                encode_dead_letter(&mut bytes, d);
                ("dead_letter", dead_letter_to_json(d), None)
            }
        };
        let file = format!("{n:03}-{kind}.bin");
        std::fs::write(dir.join(&file), &bytes).map_err(|e| format!("writing {file}: {e}"))?;
        manifest.push(json!({"file": file, "kind": kind, "key_hex": key, "value": value}));
    }
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("manifest.json"), text)
        .map_err(|e| format!("writing manifest: {e}"))?;
    Ok(manifest.len())
}

/// Decodes one message as `kind` and returns its JSON view.
fn decode(d: &Decoder, kind: &str, bytes: &[u8]) -> Result<Value, String> {
    let r = match kind {
        "query" | "request" | "resource" => d.decode(bytes, None).map(|e| {
            if json::kind_name(&e) == kind {
                Ok(event_to_json(&e))
            } else {
                Err(format!("decoded a {} event", json::kind_name(&e)))
            }
        }),
        "alert" => d.decode_alert(bytes).map(|a| Ok(alert_to_json(&a))),
        "dead_letter" => d
            .decode_dead_letter(bytes)
            .map(|x| Ok(dead_letter_to_json(&x))),
        other => return Err(format!("unknown kind {other:?}")),
    };
    r.map_err(|e| format!("{} error: {e}", e.kind()))?
}

/// The fields of two JSON objects that differ, for the report.
fn diff(want: &Value, got: &Value) -> String {
    match (want.as_object(), got.as_object()) {
        (Some(w), Some(g)) => w
            .iter()
            .filter(|(k, v)| g.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: want {v}, got {}", g.get(k).unwrap_or(&Value::Null)))
            .collect::<Vec<_>>()
            .join("; "),
        _ => format!("want {want}, got {got}"),
    }
}

fn check(dir: &Path) -> Result<(usize, usize), String> {
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .map_err(|e| format!("reading {}/manifest.json: {e}", dir.display()))?;
    let manifest: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let fast = Decoder::new(DecodeConfig::default());
    let resolution = Decoder::new(DecodeConfig {
        fast_path: false,
        ..DecodeConfig::default()
    });
    let (mut passed, mut failed) = (0, 0);
    for entry in &manifest {
        let file = entry["file"]
            .as_str()
            .ok_or("manifest entry without file")?;
        let kind = entry["kind"]
            .as_str()
            .ok_or("manifest entry without kind")?;
        let bytes = std::fs::read(dir.join(file)).map_err(|e| format!("reading {file}: {e}"))?;
        if let Some(want_key) = entry["key_hex"].as_str() {
            // the series key a producer used must be the one `series_key` gives
            match fast.decode(&bytes, None) {
                Ok(e) if hex(&series_key(&e)) == want_key => passed += 1,
                Ok(e) => {
                    failed += 1;
                    eprintln!(
                        "{file}: key {want_key}, series_key gives {}",
                        hex(&series_key(&e))
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{file}: {e}");
                }
            }
        }
        for (path, d) in [("fast", &fast), ("resolution", &resolution)] {
            match decode(d, kind, &bytes) {
                Ok(got) if got == entry["value"] => passed += 1,
                Ok(got) => {
                    failed += 1;
                    eprintln!("{file} ({path} path): {}", diff(&entry["value"], &got));
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{file} ({path} path): {e}");
                }
            }
        }
    }
    Ok((passed, failed))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, dir) = match args.as_slice() {
        [cmd, dir] => (cmd.as_str(), PathBuf::from(dir)),
        _ => {
            eprintln!("usage: fixtures (write|check) DIR");
            return ExitCode::from(2);
        }
    };
    match cmd {
        "write" => match write(&dir) {
            Ok(n) => {
                println!("fixtures write: {n} messages in {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fixtures write: {e}");
                ExitCode::FAILURE
            }
        },
        "check" => match check(&dir) {
            Ok((passed, failed)) => {
                println!("fixtures check: {passed} passed, {failed} failed");
                if failed == 0 && passed > 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("fixtures check: {e}");
                ExitCode::FAILURE
            }
        },
        other => {
            eprintln!("unknown command {other:?}; usage: fixtures (write|check) DIR");
            ExitCode::from(2)
        }
    }
}
