//! The sending loop of the load generator: paces the generated records, produces them with an
//! idempotent producer, and feeds the truth from delivery reports (acknowledged records only).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tracing::{info, warn};

use crate::args::GenerateArgs;
use crate::error::EmitError;
use crate::generate::{Record, generate};
use crate::scenario::Scenario;
use crate::truth::{Truth, TruthBuilder};

/// How to send a scenario (everything that is not part of the generated content).
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Pace sends at the scenario's rate (wall clock follows the schedule); otherwise send as
    /// fast as the producer takes them.
    pub paced: bool,
    /// Build the truth from delivery reports (memory grows with the number of events).
    pub collect_truth: bool,
    /// Interval between progress log lines.
    pub progress_interval: Duration,
    /// How long to wait for outstanding acknowledgements at the end.
    pub flush_timeout: Duration,
    /// librdkafka properties, applied after the defaults (so they can override them).
    pub producer_properties: BTreeMap<String, String>,
    /// Set to stop early: no message is sent after it is seen (checked before each send and
    /// while paced); those sent are still flushed and counted.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ProduceOptions {
    /// Unpaced, with truth: what in-process tests want.
    pub fn new(bootstrap: impl Into<String>) -> ProduceOptions {
        ProduceOptions {
            bootstrap: bootstrap.into(),
            paced: false,
            collect_truth: true,
            progress_interval: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(60),
            producer_properties: BTreeMap::new(),
            stop: None,
        }
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub bootstrap: String,
    /// Messages handed to the producer.
    pub attempted: u64,
    /// Messages the broker acknowledged.
    pub acknowledged: u64,
    /// Messages not acknowledged (delivery error, or still pending after the flush timeout).
    pub failed: u64,
    /// Acknowledged messages per class (`on_time`, `out_of_order`, `late`, `too_late`,
    /// `malformed`).
    pub acknowledged_by_class: BTreeMap<String, u64>,
    /// Event time of the first regular event and end of the schedule, µs.
    pub start_us: i64,
    pub end_us: i64,
    pub elapsed: Duration,
    /// Where the truth was written, if asked.
    pub truth_path: Option<PathBuf>,
}

impl Summary {
    /// Acknowledged messages per second of wall time.
    pub fn acknowledged_per_sec(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "perfstream emit summary")?;
        writeln!(f, "  bootstrap     {}", self.bootstrap)?;
        writeln!(f, "  attempted     {}", self.attempted)?;
        writeln!(
            f,
            "  acknowledged  {} ({:.0}/s over {:.1} s)",
            self.acknowledged,
            self.acknowledged_per_sec(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  failed        {}", self.failed)?;
        for (class, n) in &self.acknowledged_by_class {
            writeln!(f, "    {class:<13} {n}")?;
        }
        writeln!(
            f,
            "  event time    {} .. {}",
            rfc3339(self.start_us),
            rfc3339(self.end_us)
        )?;
        if let Some(p) = &self.truth_path {
            writeln!(f, "  truth         {}", p.display())?;
        }
        Ok(())
    }
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| format!("{us} µs"))
}

/// The result of [`produce`]: the summary and, when collected, the truth.
#[derive(Debug, Clone)]
pub struct Report {
    pub summary: Summary,
    pub truth: Option<Truth>,
}

/// Runs `perfstream emit`: generates, sends, writes the truth file, returns the summary.
pub async fn run(args: GenerateArgs) -> Result<Summary, EmitError> {
    run_until(args, None).await
}

/// [`run`], stopping early once `stop` is set (what was sent is flushed and counted; the truth
/// covers exactly the acknowledged messages, as always).
pub async fn run_until(
    args: GenerateArgs,
    stop: Option<Arc<AtomicBool>>,
) -> Result<Summary, EmitError> {
    let scenario = args.scenario(chrono::Utc::now().timestamp_micros())?;
    let opts = ProduceOptions {
        bootstrap: args.bootstrap.clone(),
        paced: !args.unpaced,
        collect_truth: args.truth.is_some(),
        progress_interval: args.progress_interval,
        flush_timeout: args.flush_timeout,
        producer_properties: args.producer_properties(),
        stop,
    };
    let report = produce(scenario, opts).await?;
    let mut summary = report.summary;
    if let (Some(path), Some(truth)) = (&args.truth, &report.truth) {
        write_truth(path, truth)?;
        summary.truth_path = Some(path.clone());
    }
    if summary.failed > 0 {
        warn!(
            failed = summary.failed,
            "Some messages were not acknowledged; the truth leaves them out."
        );
    }
    info!(
        attempted = summary.attempted,
        acknowledged = summary.acknowledged,
        failed = summary.failed,
        elapsed_s = summary.elapsed.as_secs_f64(),
        "Emit finished."
    );
    Ok(summary)
}

/// Writes `truth` as pretty JSON to `path`.
pub fn write_truth(path: &std::path::Path, truth: &Truth) -> Result<(), EmitError> {
    let bytes = serde_json::to_vec_pretty(truth)?;
    std::fs::write(path, bytes).map_err(|source| EmitError::WriteTruth {
        path: path.to_path_buf(),
        source,
    })
}

/// Produces `scenario` on a blocking thread; see [`produce_blocking`].
pub async fn produce(scenario: Scenario, opts: ProduceOptions) -> Result<Report, EmitError> {
    tokio::task::spawn_blocking(move || produce_blocking(&scenario, &opts))
        .await
        .map_err(|e| EmitError::Join(e.to_string()))?
}

/// Collects delivery reports; called on the sending thread from `poll`.
struct AckContext {
    acks: Mutex<Vec<(u64, bool)>>,
}

impl AckContext {
    fn len(&self) -> usize {
        self.acks.lock().map(|a| a.len()).unwrap_or(0)
    }
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        if let Ok(mut acks) = self.acks.lock() {
            acks.push((seq as u64, result.is_ok()));
        }
    }
}

/// Applies perfstream's producer defaults (idempotent, batched, lz4-compressed: telemetry
/// repeats names and hashes, and brokers such as librdkafka's mock cap partitions by bytes),
/// then `props`.
pub(crate) fn producer_config(bootstrap: &str, props: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000");
    for (k, v) in props {
        cfg.set(k, v);
    }
    cfg
}

struct Loop<'a> {
    producer: BaseProducer<AckContext>,
    pending: HashMap<u64, Record>,
    truth: Option<TruthBuilder>,
    by_class: BTreeMap<String, u64>,
    acknowledged: u64,
    failed: u64,
    scenario: &'a Scenario,
}

impl Loop<'_> {
    fn drain(&mut self) {
        let acks = match self.producer.context().acks.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(_) => return,
        };
        for (seq, ok) in acks {
            let Some(rec) = self.pending.remove(&seq) else {
                continue;
            };
            if ok {
                self.acknowledged += 1;
                *self.by_class.entry(rec.class.as_str().into()).or_default() += 1;
                if let Some(t) = &mut self.truth {
                    t.add(&rec);
                }
            } else {
                self.failed += 1;
            }
        }
    }

    /// Serves every delivery report that is ready. rdkafka's `poll(0)` serves at most one
    /// event, and unserved reports keep their messages in the producer's queue.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let before = self.producer.context().len();
            self.producer.poll(Duration::ZERO);
            if self.producer.context().len() == before {
                break;
            }
        }
        self.drain();
    }

    fn send(&mut self, rec: Record) -> Result<(), EmitError> {
        let topic = self.scenario.topic(rec.topic);
        loop {
            let br = BaseRecord::with_opaque_to(topic, rec.seq as usize)
                .key(&rec.key)
                .payload(&rec.payload);
            match self.producer.send(br) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(1));
                    self.pump();
                }
                Err((source, _)) => {
                    return Err(EmitError::Produce {
                        topic: topic.to_string(),
                        source,
                    });
                }
            }
        }
        self.pending.insert(rec.seq, rec);
        Ok(())
    }
}

/// Generates and sends `scenario`, blocking the thread until every message is acknowledged or
/// `flush_timeout` has passed. The truth covers exactly the acknowledged messages.
pub fn produce_blocking(scenario: &Scenario, opts: &ProduceOptions) -> Result<Report, EmitError> {
    scenario.validate()?;
    let producer: BaseProducer<AckContext> =
        producer_config(&opts.bootstrap, &opts.producer_properties)
            .create_with_context(AckContext {
                acks: Mutex::new(Vec::new()),
            })
            .map_err(|source| EmitError::CreateProducer { source })?;
    let mut lp = Loop {
        producer,
        pending: HashMap::new(),
        truth: opts.collect_truth.then(|| TruthBuilder::new(scenario)),
        by_class: BTreeMap::new(),
        acknowledged: 0,
        failed: 0,
        scenario,
    };
    let started = Instant::now();
    let mut attempted = 0u64;
    let mut next_progress = opts.progress_interval;
    for rec in generate(scenario) {
        if opts.stopped() {
            break;
        }
        if opts.paced {
            // Paced by whole milliseconds: the records of one millisecond go together (their
            // event times are fixed by the schedule), one wait per millisecond, not per record.
            let due_us = (rec.sched_us - scenario.start_us).max(0) as u64;
            let due = Duration::from_millis(due_us.div_ceil(1000));
            loop {
                let now = started.elapsed();
                if now >= due || opts.stopped() {
                    break;
                }
                // Delivery reports, then a plain sleep: rdkafka's `poll(timeout)` rounds the
                // time left down to whole milliseconds and spins through the last one (44 %
                // of the generator's CPU at 20 k events/s went to reading the clock).
                lp.pump();
                std::thread::sleep((due - now).min(Duration::from_millis(20)));
            }
        }
        if opts.stopped() {
            break;
        }
        lp.send(rec)?;
        attempted += 1;
        if attempted.is_multiple_of(1024) {
            lp.pump();
            let elapsed = started.elapsed();
            if elapsed >= next_progress {
                next_progress = elapsed + opts.progress_interval;
                info!(
                    attempted,
                    acknowledged = lp.acknowledged,
                    failed = lp.failed,
                    in_flight = lp.pending.len(),
                    per_sec = (lp.acknowledged as f64 / elapsed.as_secs_f64()) as u64,
                    "Emitting."
                );
            }
        }
    }
    if let Err(error) = lp.producer.flush(opts.flush_timeout) {
        warn!(%error, in_flight = lp.pending.len(), "Flush did not complete; counting the rest as failed.");
    }
    lp.pump();
    // Anything still pending was not acknowledged within the timeout.
    lp.failed += lp.pending.len() as u64;
    let mut truth = lp.truth.take();
    if let Some(t) = &mut truth {
        t.set_failed(lp.failed);
    }
    let summary = Summary {
        bootstrap: opts.bootstrap.clone(),
        attempted,
        acknowledged: lp.acknowledged,
        failed: lp.failed,
        acknowledged_by_class: std::mem::take(&mut lp.by_class),
        start_us: scenario.start_us,
        end_us: scenario.start_us + scenario.span_us(),
        elapsed: started.elapsed(),
        truth_path: None,
    };
    Ok(Report {
        summary,
        truth: truth.map(TruthBuilder::finish),
    })
}
