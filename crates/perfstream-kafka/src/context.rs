//! The consumer context: all pipeline state, and the rebalance callbacks that claim partitions
//! in Postgres, seek to their resume offsets, and flush before giving partitions up.
//! Layout: this file holds the state and the per-message path; `flush.rs` the flush
//! transaction; `rebalance.rs` the assignment and revocation callbacks.

mod flush;
mod rebalance;
mod worker;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use perfstream_events::{DeadLetter, Decoder};
use perfstream_pipeline::{Action, Core};
use perfstream_store::Store;
use perfstream_window::PartitionId;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use tokio::runtime::Handle;
use tracing::{error, warn};

use crate::pipeline::now_us;
use crate::routing::Router;
use crate::{KafkaError, KafkaSettings, PipelineSettings};
use perfstream_pipeline::PipelineStats;
use worker::{Batch, Pipe, Polled};

/// Everything behind the context's lock: the pure protocol core and the I/O pieces the
/// per-message path uses.
pub(crate) struct State {
    pub(crate) core: Core,
    decoder: Decoder,
    router: Router,
    fatal: Option<KafkaError>,
    /// The store's form of the core's pending plan, built once per plan.
    write: Option<Arc<perfstream_store::FlushWrite>>,
    /// Set when a flush was fenced: the process rejoins the group to get a fresh assignment.
    rejoin: bool,
}

impl State {
    pub(crate) fn new(core: Core, decoder: Decoder, router: Router) -> Self {
        State {
            core,
            decoder,
            router,
            fatal: None,
            write: None,
            rejoin: false,
        }
    }
}

pub(crate) struct FlushFailure {
    pub retriable: bool,
    pub source: KafkaError,
}

#[derive(Clone)]
pub(crate) struct PipelineContext(Arc<Inner>);

pub(crate) struct Inner {
    handle: Handle,
    store: Store,
    kafka: KafkaSettings,
    settings: PipelineSettings,
    owner: String,
    state: Mutex<State>,
    /// Set by shutdown: interrupts a claim that is retrying.
    stop: Arc<std::sync::atomic::AtomicBool>,
    stats: Arc<PipelineStats>,
    /// When a broker error was last logged, and how many occurred since.
    broker_errors: Mutex<(Option<std::time::Instant>, u64)>,
    /// The hand-over to the aggregation thread; taken by the poll thread only.
    pipe: Mutex<Pipe>,
    /// The flush whose transaction runs now (see `flush`); taken by the poll thread only.
    inflight: Mutex<Option<flush::Inflight>>,
}

impl std::ops::Deref for PipelineContext {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl PipelineContext {
    pub(crate) fn new(
        handle: Handle,
        store: Store,
        kafka: KafkaSettings,
        settings: PipelineSettings,
        state: State,
        stats: Arc<PipelineStats>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let settings_batch_max = settings.batch_max_messages;
        let owner = settings
            .owner
            .clone()
            .unwrap_or_else(crate::pipeline::default_owner);
        PipelineContext(Arc::new(Inner {
            handle,
            store,
            kafka,
            settings,
            owner,
            state: Mutex::new(state),
            stats,
            stop,
            broker_errors: Mutex::new((None, 0)),
            pipe: Mutex::new(Pipe::new(settings_batch_max)),
            inflight: Mutex::new(None),
        }))
    }

    /// Starts the aggregation thread (it holds a clone of the context until
    /// [`Inner::stop_worker`]).
    pub(crate) fn start_worker(&self) -> std::io::Result<()> {
        let ctx = self.clone();
        self.pipe().start(move |batch| ctx.apply_batch(batch))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn partition_id(&self, topic: &str, partition: i32) -> Option<PartitionId> {
        let ti = self
            .kafka
            .topics
            .inputs()
            .iter()
            .position(|t| *t == topic)?;
        Some(PartitionId {
            topic: ti as u32,
            partition,
        })
    }

    fn topic_name(&self, id: PartitionId) -> &str {
        self.kafka.topics.inputs()[id.topic as usize]
    }

    pub(crate) fn input_topics(&self) -> Vec<&str> {
        self.kafka.topics.inputs().to_vec()
    }

    pub(crate) fn take_fatal(&self) -> Option<KafkaError> {
        self.lock().fatal.take()
    }

    /// True when a window can close now: the poll loop flushes without waiting for its tick.
    pub(crate) fn close_due(&self) -> bool {
        self.lock().core.close_due(crate::pipeline::now_us())
    }

    /// True while routed envelopes wait for room in the producer's queue: stop fetching.
    pub(crate) fn routing_congested(&self) -> bool {
        self.lock().router.congested()
    }

    pub(crate) fn take_rejoin(&self) -> bool {
        std::mem::take(&mut self.lock().rejoin)
    }

    /// librdkafka reconnects and retries by itself; while the broker is away the error is
    /// logged once per interval with the number of occurrences, never once per poll.
    pub(crate) fn broker_error(&self, e: &RdError) {
        let mut last = self.broker_errors.lock().unwrap_or_else(|p| p.into_inner());
        last.1 += 1;
        if last
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            warn!(error = %e, occurrences = last.1, "Kafka consumer error; librdkafka keeps retrying.");
            *last = (Some(std::time::Instant::now()), 0);
        }
    }

    fn inflight(&self) -> MutexGuard<'_, Option<flush::Inflight>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pipe(&self) -> MutexGuard<'_, Pipe> {
        self.pipe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One polled message, queued for the aggregation thread (see `worker`).
    pub(crate) fn push_message(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) {
        let Some(id) = self.partition_id(topic, partition) else {
            return;
        };
        self.pipe()
            .push(id.topic, partition, offset, key, payload, timestamp_ms);
    }

    /// Hands the messages polled so far to the aggregation thread.
    pub(crate) fn send_batch(&self) {
        self.pipe().send();
    }

    /// Waits until every polled message is applied to the state. Called before anything else
    /// touches the state's partitions (flush, claim, revoke); an error means the aggregation
    /// thread died, and the state cannot be trusted.
    pub(crate) fn drain(&self) -> Result<(), KafkaError> {
        self.pipe().drain().map_err(|_| KafkaError::Panicked)
    }

    /// Applies what was polled, then stops the aggregation thread.
    pub(crate) fn stop_worker(&self) {
        self.pipe().close();
    }

    /// Decodes and aggregates one batch, under one lock; runs on the aggregation thread.
    fn apply_batch(&self, batch: &Batch) {
        let mut state = self.lock();
        let mut tally = Tally::default();
        for m in &batch.messages {
            if state.fatal.is_some() {
                // Decoding cannot go on (registry away): the poll thread stops the pipeline and
                // nothing after this message may count.
                break;
            }
            self.apply(&mut state, batch, m, &mut tally);
        }
        drop(state);
        let s = &self.stats;
        PipelineStats::add(&s.messages_in, tally.messages);
        PipelineStats::add(&s.events_aggregated, tally.aggregated);
        PipelineStats::add(&s.corrections, tally.corrections);
        PipelineStats::add(&s.events_skipped_replay, tally.skipped);
    }

    fn apply(&self, state: &mut State, batch: &Batch, m: &Polled, tally: &mut Tally) {
        let id = PartitionId {
            topic: m.topic,
            partition: m.partition,
        };
        let (partition, offset) = (m.partition, m.offset);
        let payload = batch.payload(m);
        let decoded = state
            .decoder
            .decode(payload, m.timestamp_ms.map(|ms| ms.saturating_mul(1000)));
        let mut isolated = None;
        let (action, error) = match decoded {
            Ok(event) => {
                let action = state.core.on_event(id, offset, &event, now_us());
                if action == Action::Unwritable {
                    isolated = state.core.isolated_reason(&event).map(str::to_string);
                }
                (action, None)
            }
            Err(e) if e.is_retriable() => {
                // The schema registry is unreachable: the message is not bad, so it must not be
                // dead-lettered. Stop; a restart replays from the last committed flush.
                let topic = self.topic_name(id);
                error!(error = %e, topic, partition, offset, "Cannot decode for now; stopping the pipeline.");
                state.fatal = Some(KafkaError::Decode(e));
                return;
            }
            Err(e) => (state.core.on_undecodable(id, offset), Some(e)),
        };
        let s = &self.stats;
        if action == Action::NotAssigned {
            return;
        }
        tally.messages += 1;
        let (route_to, kind, reason) = match action {
            Action::NotAssigned => return,
            Action::Aggregated => return tally.aggregated += 1,
            Action::Correction => return tally.corrections += 1,
            Action::Skipped => return tally.skipped += 1,
            Action::AlreadyRouted => return,
            Action::Late(late) => {
                PipelineStats::add(&s.too_late, 1);
                (
                    &self.kafka.topics.late,
                    late.kind(),
                    late.reason().to_string(),
                )
            }
            Action::Unwritable => {
                PipelineStats::add(&s.unwritable, 1);
                (
                    &self.kafka.topics.dlq,
                    "unwritable",
                    isolated.unwrap_or_default(),
                )
            }
            Action::DeadLetter => {
                PipelineStats::add(&s.dead_lettered, 1);
                let e = error.expect("dead letters come from decode errors");
                (&self.kafka.topics.dlq, e.kind(), e.to_string())
            }
        };
        let topic = self.topic_name(id);
        let dl = dead_letter(
            topic,
            partition,
            offset,
            batch.key(m),
            payload,
            kind,
            reason,
        );
        state.router.route(route_to, dl);
    }

    /// Refreshes the lag gauge: high watermark minus position, summed over the assigned
    /// partitions. The broker round trips happen outside the state lock.
    pub(crate) fn update_lag(&self, consumer: &BaseConsumer<PipelineContext>) {
        let positions: Vec<(String, i32, i64)> = self
            .lock()
            .core
            .positions()
            .into_iter()
            .map(|(id, position)| (self.topic_name(id).to_string(), id.partition, position))
            .collect();
        let mut lag = 0u64;
        for (topic, partition, position) in positions {
            match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(1)) {
                Ok((_, high)) => lag += (high - position).max(0) as u64,
                Err(_) => return, // broker away: keep the last value
            }
        }
        self.stats
            .lag
            .store(lag, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn set_paused(&self, consumer: &BaseConsumer<PipelineContext>, paused: bool) {
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let r = if paused {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
        drop(assignment);
        if let Err(e) = r {
            warn!(error = %e, paused, "Pausing/resuming partitions failed.");
        }
    }
}

/// Counters of one batch, added to the shared statistics once.
#[derive(Default)]
struct Tally {
    messages: u64,
    aggregated: u64,
    corrections: u64,
    skipped: u64,
}

fn dead_letter(
    topic: &str,
    partition: i32,
    offset: i64,
    key: Option<&[u8]>,
    payload: &[u8],
    kind: &str,
    reason: String,
) -> DeadLetter {
    DeadLetter {
        source_topic: topic.to_string(),
        source_partition: partition,
        source_offset: offset,
        original_key: key.map(<[u8]>::to_vec),
        original_value: Some(payload.to_vec()),
        error_kind: kind.to_string(),
        reason,
        dead_at_us: now_us(),
    }
}
