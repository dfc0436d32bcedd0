//! The consumer context: all pipeline state, and the rebalance callbacks that claim partitions
//! in Postgres, seek to their resume offsets, and flush before giving partitions up.
//! Layout: this file holds the state and the per-message path; `flush.rs` the flush
//! transaction; `rebalance.rs` the assignment and revocation callbacks.

mod flush;
mod rebalance;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use perfstream_events::{DeadLetter, Decoder};
use perfstream_store::{FlushWrite, Store};
use perfstream_window::{Engine, PartitionId, RecordOutcome};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use tokio::runtime::Handle;
use tracing::{error, warn};

use crate::pipeline::{PipelineSettings, now_us};
use crate::routing::Router;
use crate::stats::PipelineStats;
use crate::{KafkaError, KafkaSettings};

/// What the pipeline knows of one assigned partition.
struct Part {
    topic: String,
    partition: i32,
    id: PartitionId,
    generation: i64,
    /// Next offset to read (after the last message seen, decodable or not).
    position: i64,
    /// From the claim: below it, undecodable messages were already routed.
    applied_through: i64,
    /// The watermark stored by the last committed flush (or the claim).
    applied_watermark_us: i64,
}

/// A flush computed from the engine but not yet committed (kept across retries).
struct Pending {
    write: FlushWrite,
    windows_closed: u64,
}

pub(crate) struct Core {
    engine: Engine,
    decoder: Decoder,
    router: Router,
    parts: HashMap<(usize, i32), Part>,
    pending: Option<Pending>,
    fatal: Option<KafkaError>,
    /// Set when a flush was fenced: the process rejoins the group to get a fresh assignment.
    rejoin: bool,
}

impl Core {
    pub(crate) fn new(engine: Engine, decoder: Decoder, router: Router) -> Self {
        Core {
            engine,
            decoder,
            router,
            parts: HashMap::new(),
            pending: None,
            fatal: None,
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
    core: Mutex<Core>,
    stats: Arc<PipelineStats>,
    /// When a broker error was last logged, and how many occurred since.
    broker_errors: Mutex<(Option<std::time::Instant>, u64)>,
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
        owner: String,
        core: Core,
        stats: Arc<PipelineStats>,
    ) -> Self {
        PipelineContext(Arc::new(Inner {
            handle,
            store,
            kafka,
            settings,
            owner,
            core: Mutex::new(core),
            stats,
            broker_errors: Mutex::new((None, 0)),
        }))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.kafka.topics.inputs().iter().position(|t| *t == topic)
    }

    pub(crate) fn input_topics(&self) -> Vec<&str> {
        self.kafka.topics.inputs().to_vec()
    }

    pub(crate) fn take_fatal(&self) -> Option<KafkaError> {
        self.lock().fatal.take()
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

    pub(crate) fn handle_message(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) {
        let Some(ti) = self.topic_index(topic) else {
            return;
        };
        let mut core = self.lock();
        let core = &mut *core;
        let Some(part) = core.parts.get_mut(&(ti, partition)) else {
            return;
        };
        PipelineStats::add(&self.stats.messages_in, 1);
        part.position = offset + 1;
        let now = now_us();
        let payload = payload.unwrap_or(&[]);
        match core
            .decoder
            .decode(payload, timestamp_ms.map(|ms| ms.saturating_mul(1000)))
        {
            Ok(event) => match core.engine.record(part.id, offset, &event, now) {
                Ok(RecordOutcome::Aggregated) => {
                    PipelineStats::add(&self.stats.events_aggregated, 1)
                }
                Ok(RecordOutcome::Skipped) => {
                    PipelineStats::add(&self.stats.events_skipped_replay, 1)
                }
                Ok(RecordOutcome::Correction) => PipelineStats::add(&self.stats.corrections, 1),
                Ok(outcome @ (RecordOutcome::TooLate | RecordOutcome::Future)) => {
                    if offset < part.applied_through {
                        return; // routed before the last committed flush
                    }
                    PipelineStats::add(&self.stats.too_late, 1);
                    let (kind, reason) = match outcome {
                        RecordOutcome::TooLate => (
                            "too_late",
                            "event time is before the correction horizon of its window",
                        ),
                        _ => (
                            "too_far_in_future",
                            "event time is further ahead of its arrival than window.max_future_skew",
                        ),
                    };
                    let dl =
                        dead_letter(topic, partition, offset, key, payload, kind, reason.into());
                    core.router.route(&self.kafka.topics.late, &dl);
                }
                Err(e) => error!(error = %e, "Engine refused an event of an assigned partition."),
            },
            Err(e) if e.is_retriable() => {
                // The schema registry is unreachable: the message is not bad, so it must not be
                // dead-lettered. Stop; a restart replays from the last committed flush.
                error!(error = %e, topic, partition, offset, "Cannot decode for now; stopping the pipeline.");
                core.fatal = Some(KafkaError::Decode(e));
            }
            Err(e) => {
                if offset < part.applied_through {
                    return; // routed before the last committed flush
                }
                PipelineStats::add(&self.stats.dead_lettered, 1);
                let dl = dead_letter(
                    topic,
                    partition,
                    offset,
                    key,
                    payload,
                    e.kind(),
                    e.to_string(),
                );
                core.router.route(&self.kafka.topics.dlq, &dl);
            }
        }
    }

    /// Refreshes the lag gauge: high watermark minus position, summed over the assigned
    /// partitions. The broker round trips happen outside the state lock.
    pub(crate) fn update_lag(&self, consumer: &BaseConsumer<PipelineContext>) {
        let positions: Vec<(String, i32, i64)> = self
            .lock()
            .parts
            .values()
            .map(|p| (p.topic.clone(), p.partition, p.position))
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
