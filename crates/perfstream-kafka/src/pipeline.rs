//! The poll loop. It runs on a blocking thread: librdkafka's rebalance callbacks fire inside
//! `poll`, on that same thread, so all pipeline state lives behind one uncontended mutex in the
//! consumer context and the callbacks can flush, claim and seek synchronously. Postgres calls
//! run on the tokio runtime through `Handle::block_on`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use perfstream_events::{DecodeConfig, Decoder};
use perfstream_store::Store;
use perfstream_window::{Engine, WindowConfig};
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use tracing::{info, info_span, warn};

use crate::context::{PipelineContext, State};
use crate::routing::Router;
use crate::{KafkaError, KafkaSettings, PipelineSettings, PipelineStats};
use perfstream_pipeline::Core;

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub(crate) fn default_owner() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "host".into());
    format!(
        "{}:{}:{:08x}",
        host.trim(),
        std::process::id(),
        rand::rng().random::<u32>()
    )
}

/// Runs the pipeline until `shutdown` resolves: then stops fetching, flushes closed windows,
/// commits and closes the consumer. Open windows are replayed on restart, never written as if
/// complete.
pub async fn run_pipeline(
    kafka: KafkaSettings,
    settings: PipelineSettings,
    window: WindowConfig,
    decode: DecodeConfig,
    store: Store,
    stats: Arc<PipelineStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaError> {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = tokio::runtime::Handle::current();
    let router = Router::new(&kafka)?;
    let state = State::new(
        Core::new(Engine::new(window)?),
        Decoder::new(decode),
        router,
    );
    let ctx = PipelineContext::new(
        handle,
        store,
        kafka.clone(),
        settings.clone(),
        state,
        stats,
        stop.clone(),
    );
    let consumer: BaseConsumer<PipelineContext> = crate::client_config(kafka.consumer_properties())
        .create_with_context(ctx)
        .map_err(KafkaError::Client)?;
    consumer
        .subscribe(&kafka.topics.inputs())
        .map_err(KafkaError::Client)?;

    let stop2 = stop.clone();
    let worker = tokio::task::spawn_blocking(move || poll_loop(consumer, settings, &stop2));
    tokio::pin!(shutdown);
    tokio::pin!(worker);
    tokio::select! {
        r = &mut worker => return r.map_err(|_| KafkaError::Panicked)?,
        () = &mut shutdown => {}
    }
    info!("Shutdown requested; flushing closed windows.");
    stop.store(true, Ordering::SeqCst);
    worker.await.map_err(|_| KafkaError::Panicked)?
}

fn poll_loop(
    consumer: BaseConsumer<PipelineContext>,
    settings: PipelineSettings,
    stop: &AtomicBool,
) -> Result<(), KafkaError> {
    let ctx = consumer.context().clone();
    if let Err(e) = ctx.start_worker() {
        return Err(KafkaError::Worker(e));
    }
    warn_missing_topics(&consumer, &ctx.input_topics());
    let flush_every = Duration::from_millis(settings.flush_interval_ms);
    let mut next_flush = Instant::now() + flush_every;
    let mut next_lag = Instant::now();
    let mut backoff = Backoff::new(&settings);
    let mut paused = false;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            // Final flush: closed windows only; open ones are replayed by the next owner.
            break ctx
                .flush(&consumer, "shutdown")
                .map(|_| ())
                .map_err(|f| f.source);
        }
        // One span per polled batch.
        let mut n = 0usize;
        let span = info_span!("batch", messages = tracing::field::Empty);
        let _g = span.enter();
        // While a flush is in flight its outcome is looked at between batches: poll briefly,
        // but never for zero: the tick may be past while the flush runs (no new one begins
        // until it is settled), and a zero timeout there spun the thread through the whole
        // write (35 % of the process in clock reads, CPU taken from Postgres).
        let mut timeout = if ctx.flush_in_flight() {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(100).min(next_flush.saturating_duration_since(Instant::now()))
        };
        while n < settings.batch_max_messages {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    ctx.push_message(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.payload(),
                        m.timestamp().to_millis(),
                    );
                    n += 1;
                }
                Some(Err(e)) => {
                    ctx.broker_error(&e);
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        ctx.send_batch();
        span.record("messages", n);
        drop(_g);
        if let Some(e) = ctx.take_fatal() {
            break Err(e);
        }
        if !paused && ctx.routing_congested() {
            // The producer's queue is full (dead-letter/late topic slow or away): stop fetching
            // so the backlog stays bounded; the next flush drains it and resumes.
            ctx.set_paused(&consumer, true);
            paused = true;
            next_flush = Instant::now();
        }
        if ctx.take_rejoin() {
            // Fenced: leave and rejoin the group so the partitions we still own are claimed anew.
            consumer.unsubscribe();
            if let Err(e) = consumer.subscribe(&ctx.input_topics()) {
                break Err(KafkaError::Client(e));
            }
        }

        if Instant::now() >= next_lag {
            ctx.update_lag(&consumer);
            next_lag = Instant::now() + Duration::from_secs(5);
        }
        let failure = match ctx.settle_flush(&consumer) {
            Some(Ok(_)) => {
                backoff.reset();
                if paused && !ctx.routing_congested() {
                    ctx.set_paused(&consumer, false);
                    paused = false;
                }
                None
            }
            Some(Err(e)) => Some(e),
            None => None,
        };
        let failure = match failure {
            Some(e) => Some(e),
            // On the tick, or as soon as a window can close (freshness); while paused (a
            // failed flush waiting out its backoff, routing congested) only on the tick.
            None if !ctx.flush_in_flight() => {
                let reason = if Instant::now() >= next_flush {
                    Some("interval")
                } else if !paused && ctx.close_due() {
                    Some("window closed")
                } else {
                    None
                };
                reason.and_then(|reason| {
                    next_flush = Instant::now() + flush_every;
                    ctx.begin_flush(reason).err()
                })
            }
            None => None,
        };
        match failure {
            None => {}
            Some(e) if e.retriable => {
                // Postgres slow or down: stop fetching so memory stays bounded, keep polling so
                // the group membership stays alive, retry with capped exponential backoff.
                if !paused {
                    ctx.set_paused(&consumer, true);
                    paused = true;
                }
                let delay = backoff.next();
                warn!(error = %e.source, retry_in_ms = delay.as_millis() as u64, "Flush failed; partitions paused, will retry.");
                next_flush = Instant::now() + delay;
            }
            Some(e) => break Err(e.source),
        }
    };
    ctx.stop_worker();
    // Drop-order pitfall: nothing borrowed from the consumer may outlive it.
    consumer.unsubscribe();
    drop(consumer);
    result
}

/// Says once, at start-up, which input topics the broker does not know yet: nothing is read from
/// them until they appear (found at the next metadata refresh, within 10 s). A broker that does
/// not answer is left to the poll loop's error reporting.
fn warn_missing_topics(consumer: &BaseConsumer<PipelineContext>, topics: &[&str]) {
    let Ok(meta) = consumer.fetch_metadata(None, Duration::from_secs(5)) else {
        return;
    };
    let known: std::collections::HashSet<&str> = meta.topics().iter().map(|t| t.name()).collect();
    let missing: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| !known.contains(t))
        .collect();
    if !missing.is_empty() {
        warn!(
            topics = ?missing,
            "Input topics do not exist yet; they are read as soon as they appear (metadata is refreshed every 10 s). Create them with `perfstream topics create`, or check kafka.topics."
        );
    }
}

struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(s: &PipelineSettings) -> Self {
        let initial = Duration::from_millis(s.retry_initial_ms.max(1));
        Backoff {
            initial,
            max: Duration::from_millis(s.retry_max_ms.max(s.retry_initial_ms)),
            current: initial,
        }
    }
    fn reset(&mut self) {
        self.current = self.initial;
    }
    /// Full jitter: a random delay in [current/2, current], then doubles up to the cap.
    fn next(&mut self) -> Duration {
        let c = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = c / 2;
        half + Duration::from_micros(rand::rng().random_range(0..=half.as_micros().max(1) as u64))
    }
}
