//! Counting-only consumer: the raw consume rate of the input topics.
//!
//! Subscribes (a fresh consumer group, so it starts from the beginning) with the pipeline's
//! consumer properties, polls one message at a time as the pipeline's poll loop does, counts
//! messages and folds each payload's bytes into a checksum. The clock starts when the group
//! assigns the partitions (the same moment `perfstream run` claims them) and stops at the last
//! message below the high watermarks read at start-up. Prints one JSON line:
//! `{"messages", "bytes", "checksum", "seconds", "messages_per_s"}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use perfstream_pipeline::KafkaSettings;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;

#[derive(Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long)]
    bootstrap: String,
    /// Topics to read, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "perf.query,perf.request,perf.resource"
    )]
    topics: Vec<String>,
    /// Consumer group (use a fresh one per run: offsets are never committed anyway).
    #[arg(long, default_value = "perfstream-bench-raw")]
    group: String,
    /// Give up (exit non-zero) when the topics are not read to their end within this.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

/// Records when the group hands us our partitions: the start of the measured interval.
#[derive(Default)]
struct Clock {
    assigned: Mutex<Option<Instant>>,
}

impl ClientContext for Clock {}

impl ConsumerContext for Clock {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            let mut at = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            at.get_or_insert_with(Instant::now);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = KafkaSettings {
        bootstrap_servers: args.bootstrap.clone(),
        group_id: args.group.clone(),
        ..KafkaSettings::default()
    };
    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in settings.consumer_properties() {
        config.set(k, v);
    }
    let consumer: BaseConsumer<Clock> = config
        .create_with_context(Clock::default())
        .context("creating the consumer")?;
    let timeout = Duration::from_secs(10);

    // End offsets, read before consuming: the topics are filled and no longer written.
    // Keyed by (index in `args.topics`, partition): no allocation per message.
    let mut remaining: HashMap<(usize, i32), i64> = HashMap::new();
    for (i, topic) in args.topics.iter().enumerate() {
        let meta = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("metadata of {topic}"))?;
        for t in meta.topics() {
            for p in t.partitions() {
                let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                if hi > lo {
                    remaining.insert((i, p.id()), hi);
                }
            }
        }
    }
    if remaining.is_empty() {
        bail!("the topics {:?} are empty", args.topics);
    }
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let (mut messages, mut bytes, mut checksum) = (0u64, 0u64, 0u64);
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            bail!("timed out; partitions left: {}", remaining.len());
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.context("consuming")?;
        messages += 1;
        if let Some(p) = m.payload() {
            bytes += p.len() as u64;
            checksum = p
                .iter()
                .fold(checksum, |c, &b| c.rotate_left(5) ^ u64::from(b));
        }
        let topic = args.topics.iter().position(|t| t == m.topic());
        if let Some(key) = topic.map(|i| (i, m.partition()))
            && remaining.get(&key).is_some_and(|&hi| m.offset() + 1 >= hi)
        {
            remaining.remove(&key);
        }
    }
    let end = Instant::now();
    let start = consumer
        .context()
        .assigned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .context("no assignment seen")?;
    let seconds = (end - start).as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "messages": messages,
            "bytes": bytes,
            "checksum": checksum,
            "seconds": seconds,
            "messages_per_s": messages as f64 / seconds,
        })
    );
    Ok(())
}
