//! The consumer context: all pipeline state, and the rebalance callbacks that claim partitions
//! in Postgres, seek to their resume offsets, and flush before giving partitions up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use perfstream_events::{DeadLetter, Decoder};
use perfstream_store::{Claim, FlushWrite, PartitionProgress as ProgressUpdate, Store, StoreError};
use perfstream_window::{Engine, Merge, PartitionId, RecordOutcome, ResumeState, Rollup, Rollups};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tracing::{error, info_span, warn};

use crate::failpoint;
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

    /// Writes closed windows, corrections and the progress of every assigned partition in one
    /// transaction, after the routed messages they cover are acknowledged.
    pub(crate) fn flush(
        &self,
        consumer: &BaseConsumer<PipelineContext>,
        reason: &'static str,
    ) -> Result<u64, FlushFailure> {
        let mut core = self.lock();
        if let Some(e) = core.fatal.take() {
            return Err(FlushFailure {
                retriable: false,
                source: e,
            });
        }
        self.flush_locked(&mut core, consumer, reason, None)
    }

    fn flush_locked(
        &self,
        core: &mut Core,
        consumer: &BaseConsumer<PipelineContext>,
        reason: &'static str,
        deadline: Option<Duration>,
    ) -> Result<u64, FlushFailure> {
        if core.pending.is_none() {
            if core.parts.is_empty() {
                return Ok(0);
            }
            core.engine.advance(now_us());
            let out = core.engine.flush();
            let c = &out.counters;
            let overflow = (c.query.overflow, c.request.overflow, c.resource.overflow);
            if overflow != (0, 0, 0) {
                // Once per flush, never per event: totals stay exact in the overflow series.
                warn!(
                    query = overflow.0,
                    request = overflow.1,
                    resource = overflow.2,
                    live_series = out.live_series,
                    "Series cap (window.max_series) reached: events of new keys went to the overflow series."
                );
            }
            let op_watermark = out.watermark_us;
            let progress = core
                .parts
                .values()
                .map(|p| {
                    let engine = out.progress.iter().find(|e| e.partition == p.id);
                    ProgressUpdate {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        generation: p.generation,
                        resume_offset: engine
                            .map_or(p.position, |e| e.resume_offset.min(p.position)),
                        applied_through_offset: p.position,
                        applied_watermark_us: engine
                            .and_then(|e| e.applied_watermark_us)
                            .or(op_watermark)
                            .unwrap_or(p.applied_watermark_us)
                            .max(p.applied_watermark_us),
                    }
                })
                .collect();
            let windows_closed = out.closed.len() as u64;
            core.pending = Some(Pending {
                write: FlushWrite {
                    group_id: self.kafka.group_id.clone(),
                    owner: self.owner.clone(),
                    rollups: combine(out.closed, out.corrections),
                    progress,
                },
                windows_closed,
            });
        }
        let pending = core.pending.as_ref().expect("set above");
        let rows = pending.write.rollups.len() as u64;
        let span = info_span!(
            "flush",
            reason,
            rows,
            partitions = pending.write.progress.len()
        );
        let _g = span.enter();

        if !core.router.await_acks(Duration::from_secs(60)) {
            return Err(FlushFailure {
                retriable: false,
                source: KafkaError::Client(RdError::Canceled),
            });
        }
        failpoint::hit("after_dlq_ack");
        failpoint::hit("before_commit");
        let write = self.store.write_flush(&pending.write);
        let result = match deadline {
            None => self.handle.block_on(write),
            Some(d) => match self
                .handle
                .block_on(async { tokio::time::timeout(d, write).await })
            {
                Ok(r) => r,
                Err(_) => {
                    return Err(FlushFailure {
                        retriable: true,
                        source: KafkaError::RevokeDeadline,
                    });
                }
            },
        };
        match result {
            Ok(()) => {
                failpoint::hit("after_commit");
                let pending = core.pending.take().expect("set above");
                PipelineStats::add(&self.stats.flushes, 1);
                PipelineStats::add(&self.stats.rows_written, rows);
                PipelineStats::add(&self.stats.windows_closed, pending.windows_closed);
                self.stats.watermark_us.store(
                    pending
                        .write
                        .progress
                        .first()
                        .map(|p| p.applied_watermark_us.max(0) as u64)
                        .unwrap_or(0),
                    std::sync::atomic::Ordering::Relaxed,
                );
                for p in &pending.write.progress {
                    if let Some(ti) = self.topic_index(&p.topic)
                        && let Some(part) = core.parts.get_mut(&(ti, p.partition))
                    {
                        part.applied_through = part.applied_through.max(p.applied_through_offset);
                        part.applied_watermark_us =
                            part.applied_watermark_us.max(p.applied_watermark_us);
                    }
                }
                self.commit_for_lag_tools(consumer, &pending.write.progress);
                Ok(rows)
            }
            Err(StoreError::Fenced { topic, partition }) => {
                // Another process owns a partition we thought was ours: everything not committed
                // is dropped and replayed by the rightful owners; we rejoin the group.
                warn!(
                    topic,
                    partition, "Flush fenced by a newer owner; dropping open state and rejoining."
                );
                PipelineStats::add(&self.stats.fenced, 1);
                self.drop_all(core);
                core.rejoin = true;
                Ok(0)
            }
            Err(e) => {
                PipelineStats::add(&self.stats.flush_failures, 1);
                Err(FlushFailure {
                    retriable: e.is_retriable(),
                    source: KafkaError::Store(e),
                })
            }
        }
    }

    fn drop_all(&self, core: &mut Core) {
        for p in core.parts.values() {
            core.engine.revoke(p.id);
        }
        core.parts.clear();
        core.pending = None;
        self.stats
            .assigned_partitions
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn commit_for_lag_tools(
        &self,
        consumer: &BaseConsumer<PipelineContext>,
        progress: &[ProgressUpdate],
    ) {
        let mut tpl = TopicPartitionList::new();
        for p in progress {
            let _ =
                tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.resume_offset));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            warn!(error = %e, "Kafka offset commit (for lag tools only) failed.");
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

    fn claim(&self, topic: &str, partition: i32) -> Result<Claim, KafkaError> {
        let mut delay = Duration::from_millis(self.settings.retry_initial_ms.max(1));
        loop {
            let r = self.handle.block_on(self.store.claim_partition(
                &self.kafka.group_id,
                topic,
                partition,
                &self.owner,
            ));
            match r {
                Ok(c) => return Ok(c),
                Err(e) if e.is_retriable() => {
                    warn!(error = %e, topic, partition, "Claiming partition failed; retrying.");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(self.settings.retry_max_ms));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn on_assign(&self, consumer: &BaseConsumer<PipelineContext>, tpl: &TopicPartitionList) {
        let mut core = self.lock();
        let core = &mut *core;
        let mut assign = TopicPartitionList::new();
        for el in tpl.elements() {
            let (topic, partition) = (el.topic().to_string(), el.partition());
            let Some(ti) = self.topic_index(&topic) else {
                continue;
            };
            let claim = match self.claim(&topic, partition) {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, topic, partition, "Cannot claim partition.");
                    core.fatal = Some(e);
                    continue;
                }
            };
            let mut start = claim.resume_offset.unwrap_or(0);
            if claim.resume_offset.is_some() {
                match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)) {
                    Ok((low, _high)) if start < low => {
                        let gap = low - start;
                        error!(
                            topic,
                            partition,
                            resume_offset = start,
                            log_start = low,
                            gap,
                            "Resume offset expired in Kafka: data loss."
                        );
                        if self.kafka.allow_resume_from_log_start {
                            start = low;
                        } else {
                            core.fatal = Some(KafkaError::OffsetGap {
                                topic: topic.clone(),
                                partition,
                                resume_offset: start,
                                log_start: low,
                                gap,
                            });
                            continue;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, topic, partition, "Cannot read the partition's log start; assuming the resume offset is valid.")
                    }
                }
            }
            let id = PartitionId {
                topic: ti as u32,
                partition,
            };
            core.engine.assign(
                id,
                ResumeState {
                    applied_watermark_us: claim.applied_watermark_us,
                    applied_through_offset: claim.applied_through_offset,
                },
            );
            let offset = if claim.resume_offset.is_some() {
                Offset::Offset(start)
            } else {
                Offset::Beginning
            };
            let _ = assign.add_partition_offset(&topic, partition, offset);
            core.parts.insert(
                (ti, partition),
                Part {
                    topic,
                    partition,
                    id,
                    generation: claim.generation,
                    position: start,
                    applied_through: claim.applied_through_offset.unwrap_or(0),
                    applied_watermark_us: claim.applied_watermark_us.unwrap_or(0),
                },
            );
        }
        self.stats.assigned_partitions.store(
            core.parts.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        PipelineStats::add(&self.stats.rebalances, 1);
        if let Err(e) = consumer.assign(&assign) {
            error!(error = %e, "Assigning partitions failed.");
            core.fatal = Some(KafkaError::Client(e));
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<PipelineContext>) {
        let mut core = self.lock();
        if !core.parts.is_empty() {
            failpoint::hit("during_revoke");
        }
        let deadline = Duration::from_millis(self.settings.revoke_flush_deadline_ms);
        if let Err(e) = self.flush_locked(&mut core, consumer, "revoke", Some(deadline)) {
            warn!(error = %e.source, "Flush before revoke failed; the next owner replays the partitions.");
        }
        self.drop_all(&mut core);
        drop(core);
        if let Err(e) = consumer.unassign() {
            warn!(error = %e, "Unassign failed.");
        }
    }
}

/// Closed windows and corrections as one set of rollups, one per (window, key): the store
/// inserts new keys and merges existing ones either way.
fn combine(closed: Rollups, corrections: Rollups) -> Rollups {
    fn kind<K: Ord + Clone, F: Merge>(
        mut a: Vec<Rollup<K, F>>,
        b: Vec<Rollup<K, F>>,
    ) -> Vec<Rollup<K, F>> {
        if b.is_empty() {
            return a;
        }
        a.extend(b);
        a.sort_by(|x, y| (x.window_start_us, &x.key).cmp(&(y.window_start_us, &y.key)));
        let mut out: Vec<Rollup<K, F>> = Vec::with_capacity(a.len());
        for r in a {
            match out.last_mut() {
                Some(l) if l.window_start_us == r.window_start_us && l.key == r.key => {
                    l.figures.merge(&r.figures)
                }
                _ => out.push(r),
            }
        }
        out
    }
    Rollups {
        query: kind(closed.query, corrections.query),
        request: kind(closed.request, corrections.request),
        resource: kind(closed.resource, corrections.resource),
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

impl ClientContext for PipelineContext {}

impl ConsumerContext for PipelineContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer),
            other => {
                error!(error = ?other, "Rebalance error; dropping the assignment.");
                self.on_revoke(consumer);
            }
        }
    }
}
