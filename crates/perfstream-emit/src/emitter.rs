//! The emitter services link: `record_*` never blocks the caller.
//!
//! Design: the caller's only work is a `try_send` of the event into a bounded channel; when the
//! channel is full the event is dropped and counted. One background thread (no async runtime
//! required, so sync and async services can both use it) drains the channel in batches,
//! encodes, and hands the messages to an idempotent librdkafka producer keyed by the series
//! key; the producer's own polling thread serves delivery reports as they arrive (they free
//! the producer's queue, so serving them late would throttle sending). When the broker is unreachable the producer's own queue fills, the thread waits on it,
//! the channel fills, and the caller keeps going while `dropped` grows. When the broker comes
//! back the producer drains and the thread resumes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perfstream_events::encode::{encode_event, series_key};
use perfstream_events::{Event, QueryEvent, RequestEvent, ResourceEvent};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tracing::warn;

use crate::error::EmitError;
use crate::query_fill::QueryFiller;
use crate::run::producer_config;
use crate::scenario::Topics;

/// Minimum time between two warnings about failing sends.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of an [`Emitter`].
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Topic names (defaults `perf.query`, `perf.request`, `perf.resource`).
    pub topics: Topics,
    /// Events held between the callers and the producer; beyond it, events are dropped.
    /// Default 10 000.
    pub buffer_capacity: usize,
    /// Events moved from the buffer to the producer per batch. Default 512.
    pub batch_size: usize,
    /// librdkafka properties applied after the emitter's defaults (idempotence on,
    /// `linger.ms=5`); e.g. `queue.buffering.max.messages`, `message.timeout.ms`.
    pub producer_properties: BTreeMap<String, String>,
}

impl EmitterConfig {
    pub fn new(bootstrap: impl Into<String>) -> EmitterConfig {
        EmitterConfig {
            bootstrap: bootstrap.into(),
            topics: Topics::default(),
            buffer_capacity: 10_000,
            batch_size: 512,
            producer_properties: BTreeMap::new(),
        }
    }
}

/// The emitter's own counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events taken into the buffer.
    pub accepted: u64,
    /// Events the broker acknowledged.
    pub sent: u64,
    /// Events dropped because the buffer was full, or still buffered at the shutdown deadline.
    pub dropped: u64,
    /// Events the producer could not deliver (delivery error, or purged at shutdown).
    pub failed: u64,
}

#[derive(Default)]
struct Shared {
    accepted: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Set by `shutdown`: the worker gives up waiting on the producer after it.
    deadline: Mutex<Option<Instant>>,
}

impl Shared {
    fn counters(&self) -> Counters {
        Counters {
            accepted: self.accepted.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .lock()
            .map(|d| d.is_some_and(|d| Instant::now() >= d))
            .unwrap_or(true)
    }
}

struct CountingContext {
    shared: Arc<Shared>,
}

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.shared.sent,
            Err(_) => &self.shared.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends events to perfstream's topics without ever blocking the caller. Share it with an
/// `Arc`; `record_*` take `&self`.
///
/// Dropping it without [`Emitter::shutdown`] stops the background thread without waiting:
/// buffered events are dropped.
pub struct Emitter {
    /// `None` only after shutdown.
    tx: Option<SyncSender<Event>>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl Emitter {
    /// Creates the producer and starts the background thread. Fails only on invalid producer
    /// settings; an unreachable broker is not an error (events wait, then drop).
    pub fn new(config: EmitterConfig) -> Result<Emitter, EmitError> {
        let shared = Arc::new(Shared::default());
        let producer: ThreadedProducer<CountingContext> =
            producer_config(&config.bootstrap, &config.producer_properties)
                .create_with_context(CountingContext {
                    shared: shared.clone(),
                })
                .map_err(|source| EmitError::CreateProducer { source })?;
        let (tx, rx) = sync_channel(config.buffer_capacity.max(1));
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("perfstream-emitter".into())
            .spawn(move || worker(rx, producer, worker_shared, config))
            .map_err(|e| EmitError::Join(e.to_string()))?;
        Ok(Emitter {
            tx: Some(tx),
            shared,
            worker: Some(worker),
        })
    }

    /// Queues `event`; returns false (and counts it as dropped) when the buffer is full.
    pub fn record(&self, event: Event) -> bool {
        let sent = match &self.tx {
            Some(tx) => tx.try_send(event),
            None => Err(TrySendError::Disconnected(event)),
        };
        match sent {
            Ok(()) => {
                self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a query event. Leave `query_hash` empty and put the statement's text in
    /// `query_text` (raw, literals and all): the emitter's thread fills the hash with the
    /// shared fingerprint (`docs/producers.md`, "Query fingerprint"), replaces the text by its
    /// normalised form (sent once per hash every 5 minutes, no literal ever leaves), and sets
    /// `query_type` from the text when it is `Other`. An event with a hash is sent as given.
    pub fn record_query(&self, event: QueryEvent) -> bool {
        self.record(Event::Query(event))
    }

    pub fn record_request(&self, event: RequestEvent) -> bool {
        self.record(Event::Request(event))
    }

    pub fn record_resource(&self, event: ResourceEvent) -> bool {
        self.record(Event::Resource(event))
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Stops taking events, sends what is buffered and waits for acknowledgements, for at most
    /// `deadline`. Events still buffered then count as dropped, unacknowledged ones as failed.
    /// Returns the final counters. Blocks the calling thread up to `deadline` (plus the
    /// producer's own teardown); from async code call it in `spawn_blocking`.
    pub fn shutdown(mut self, deadline: Duration) -> Counters {
        self.stop(deadline);
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            warn!("The emitter thread panicked.");
        }
        self.shared.counters()
    }

    fn stop(&mut self, deadline: Duration) {
        if let Ok(mut d) = self.shared.deadline.lock() {
            d.get_or_insert(Instant::now() + deadline);
        }
        self.tx = None;
    }
}

impl Drop for Emitter {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

fn worker(
    rx: Receiver<Event>,
    producer: ThreadedProducer<CountingContext>,
    shared: Arc<Shared>,
    config: EmitterConfig,
) {
    let mut batch: Vec<Event> = Vec::with_capacity(config.batch_size);
    let mut payload = Vec::with_capacity(256);
    let mut disconnected = false;
    let mut filler = QueryFiller::default();
    // Produce errors other than a full queue, logged at most once per interval.
    let mut errors = 0u64;
    let mut last_warn: Option<Instant> = None;
    while !disconnected {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => batch.push(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        while batch.len() < config.batch_size {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        for mut event in batch.drain(..) {
            if let Event::Query(q) = &mut event {
                filler.fill(q, now);
            }
            let topic = match &event {
                Event::Query(_) => &config.topics.query,
                Event::Request(_) => &config.topics.request,
                Event::Resource(_) => &config.topics.resource,
            };
            let key = series_key(&event);
            payload.clear();
            encode_event(&mut payload, &event);
            loop {
                let record = BaseRecord::to(topic).key(&key).payload(&payload);
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        if shared.past_deadline() {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        // The broker is slow or away: wait on the producer, not the caller.
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((error, _)) => {
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                        errors += 1;
                        if last_warn.is_none_or(|t| t.elapsed() >= WARN_INTERVAL) {
                            warn!(%error, topic, errors, "Producing events failed; counted as failed.");
                            last_warn = Some(Instant::now());
                            errors = 0;
                        }
                        break;
                    }
                }
            }
        }
    }
    // Channel closed by shutdown: everything buffered has been handed over (or dropped past
    // the deadline); wait for acknowledgements until the deadline.
    let remaining = shared
        .deadline
        .lock()
        .ok()
        .and_then(|d| *d)
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::ZERO);
    if let Err(error) = producer.flush(remaining) {
        warn!(%error, in_flight = producer.in_flight_count(), "Emitter shutdown deadline passed with events in flight.");
    }
    // Dropping the producer purges what is left; the purge reports count as failed.
}
