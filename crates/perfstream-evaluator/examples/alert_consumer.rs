//! Prints the alerts of the alerts topic, one line per transition.
//!
//! Delivery is at-least-once: a transition can arrive twice (after an evaluator crash between
//! the broker's acknowledgement and marking the outbox row sent). `(alert_id, state, severity)`
//! identifies a transition (an escalation is a second firing at critical), so this consumer
//! drops repeats it has seen. Messages are keyed by `alert_id`,
//! so one alert's firing always precedes its resolved event within its partition.
//!
//! ```text
//! cargo run -p perfstream-evaluator --example alert_consumer -- --bootstrap localhost:9092
//! ```
//! Other languages need only `schemas/alert_event.avsc` (Confluent wire format: magic byte 0, a
//! 4-byte schema id, then the Avro binary body).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};

#[derive(Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "localhost:9092")]
    bootstrap: String,
    /// The alerts topic.
    #[arg(long, default_value = "perf.alerts")]
    topic: String,
    /// Consumer group (offsets are committed, so a restart resumes).
    #[arg(long, default_value = "alert-printer")]
    group: String,
    /// Exit after this many new transitions (default: run until killed).
    #[arg(long)]
    max: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&args.topic]).context("subscribing")?;
    // Transitions printed so far. A consumer that runs for months would bound this set (by age
    // of the window, say); repeats arrive within minutes of the original.
    let mut seen: HashSet<(
        String,
        perfstream_events::AlertState,
        perfstream_events::Severity,
    )> = HashSet::new();
    let mut printed = 0usize;
    while args.max.is_none_or(|m| printed < m) {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.context("consuming")?;
        let payload = m.payload().unwrap_or_default();
        let a = match perfstream_events::decode_alert(payload) {
            Ok(a) => a,
            Err(e) => {
                eprintln!(
                    "skipping undecodable message at {}/{}: {e}",
                    m.partition(),
                    m.offset()
                );
                continue;
            }
        };
        if !seen.insert((a.alert_id.clone(), a.state, a.severity)) {
            continue; // a repeat of a transition already printed
        }
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{state:<8} {severity:<8} {rule:<18} {id} window {start} [{labels}] {message}",
            state = a.state.as_str().to_uppercase(),
            severity = a.severity.as_str(),
            rule = a.rule,
            id = &a.alert_id[..12.min(a.alert_id.len())],
            start = chrono::DateTime::from_timestamp_micros(a.window_start_us)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            labels = labels.join(" "),
            message = a.message,
        );
        printed += 1;
    }
    Ok(())
}
