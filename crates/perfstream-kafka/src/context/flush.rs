//! The flush: closed windows, corrections and every assigned partition's progress in one
//! transaction, after the routed messages they cover are acknowledged.
//!
//! The write runs on the runtime while the poll thread and the aggregation thread go on: the
//! core keeps aggregating while its plan is pending (events after the plan belong to the next
//! one), exactly as when a write fails and is retried. One flush is in flight at most. Its
//! outcome is settled on the poll thread; a fenced or refused write drops or rewinds state, so
//! every polled message is applied before (`worker`). The rebalance callbacks and shutdown
//! settle the flush in flight before they do anything else.

use std::sync::Arc;
use std::time::Duration;

use perfstream_pipeline::FlushPlan;
use perfstream_store::{FlushCommit, FlushWrite, PartitionProgress, StoreError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::{JoinError, JoinHandle};
use tracing::{Instrument, debug, info_span, warn};

/// Longest one flush attempt waits for routed messages to be acknowledged before it counts as
/// failed and is retried with backoff (the poll thread stays responsive meanwhile).
const ROUTING_WAIT: Duration = Duration::from_secs(5);

use super::{FlushFailure, Inner, PipelineContext, State};
use crate::KafkaError;
use crate::failpoint;
use crate::pipeline::now_us;
use perfstream_pipeline::PipelineStats;

type WriteOutcome = Result<Result<FlushCommit, StoreError>, tokio::time::error::Elapsed>;

/// A flush whose transaction runs on the runtime.
pub(crate) struct Inflight {
    task: JoinHandle<WriteOutcome>,
    begun: Begun,
}

/// What settling a flush needs to know of how it began.
struct Begun {
    write: Arc<FlushWrite>,
    replay_held: bool,
    deadline: Duration,
    span: tracing::Span,
    started: std::time::Instant,
}

impl Inflight {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

fn fatal(source: KafkaError) -> FlushFailure {
    FlushFailure {
        retriable: false,
        source,
    }
}

impl Inner {
    /// A flush from start to outcome (shutdown): settles the one in flight, then writes what is
    /// closed now and waits for it.
    pub(crate) fn flush(
        &self,
        consumer: &BaseConsumer<PipelineContext>,
        reason: &'static str,
    ) -> Result<u64, FlushFailure> {
        self.drain().map_err(fatal)?;
        let mut state = self.lock();
        if let Some(e) = state.fatal.take() {
            return Err(fatal(e));
        }
        if let Err(e) = self.settle_waiting(&mut state, consumer) {
            if !e.retriable {
                return Err(e);
            }
            warn!(error = %e.source, "Flush in flight failed; trying again.");
        }
        let deadline = Duration::from_millis(self.settings.flush_deadline_ms);
        self.flush_locked(&mut state, consumer, reason, deadline)
    }

    pub(crate) fn flush_in_flight(&self) -> bool {
        self.inflight().is_some()
    }

    /// Starts a flush of what is closed now, unless one is in flight.
    pub(crate) fn begin_flush(&self, reason: &'static str) -> Result<(), FlushFailure> {
        if self.flush_in_flight() {
            return Ok(());
        }
        let mut state = self.lock();
        if let Some(e) = state.fatal.take() {
            return Err(fatal(e));
        }
        let deadline = Duration::from_millis(self.settings.flush_deadline_ms);
        self.begin_locked(&mut state, reason, deadline)
    }

    /// Handles the outcome of the flush in flight once it has finished; `None` while it runs or
    /// when none is in flight.
    pub(crate) fn settle_flush(
        &self,
        consumer: &BaseConsumer<PipelineContext>,
    ) -> Option<Result<u64, FlushFailure>> {
        let flight = {
            let mut g = self.inflight();
            if !g.as_ref()?.is_finished() {
                return None;
            }
            g.take()?
        };
        // Finished: returns at once.
        let outcome = self.handle.block_on(flight.task);
        let rewinds = matches!(&outcome, Ok(Ok(Err(e))) if e.is_data_error() || matches!(e, StoreError::Fenced { .. }));
        if rewinds {
            // The outcome drops or rewinds the state: every polled message is applied first.
            if let Err(e) = self.drain() {
                return Some(Err(fatal(e)));
            }
        }
        let mut state = self.lock();
        Some(self.settle_locked(&mut state, consumer, outcome, &flight.begun))
    }

    /// One flush within `deadline`, waited for. A write that times out, or whose reply is
    /// lost, is retried with the same plan; the store recognises a plan it already applied
    /// (`flush_seq`). The caller has drained the aggregation thread and settled any flush in
    /// flight.
    pub(super) fn flush_locked(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<PipelineContext>,
        reason: &'static str,
        deadline: Duration,
    ) -> Result<u64, FlushFailure> {
        self.begin_locked(state, reason, deadline)?;
        self.settle_waiting(state, consumer)
    }

    /// Waits for the flush in flight, if any, and handles its outcome. The caller has drained
    /// the aggregation thread (the outcome may drop or rewind state).
    pub(super) fn settle_waiting(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<PipelineContext>,
    ) -> Result<u64, FlushFailure> {
        let Some(flight) = self.inflight().take() else {
            return Ok(0);
        };
        let outcome = self.handle.block_on(flight.task);
        self.settle_locked(state, consumer, outcome, &flight.begun)
    }

    /// Computes (or takes up again) the plan, waits for the routed messages it covers, and
    /// starts its transaction.
    fn begin_locked(
        &self,
        state: &mut State,
        reason: &'static str,
        deadline: Duration,
    ) -> Result<(), FlushFailure> {
        let fresh = !state.core.has_pending();
        let Some(plan) = state.core.prepare_flush(now_us()) else {
            return Ok(());
        };
        if fresh {
            let c = &plan.counters;
            let overflow = (c.query.overflow, c.request.overflow, c.resource.overflow);
            if overflow != (0, 0, 0) {
                // Once per flush, never per event: totals stay exact in the overflow series.
                warn!(
                    query = overflow.0,
                    request = overflow.1,
                    resource = overflow.2,
                    live_series = plan.live_series,
                    series_bytes = plan.series_bytes,
                    "Cardinality budget reached (window.max_series, max_series_per_service or max_memory_mb): events of new keys went to overflow series."
                );
            }
            let s = &self.stats;
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            s.live_series.store(plan.live_series as u64, relaxed);
            s.series_bytes.store(plan.series_bytes as u64, relaxed);
        }
        // The store's form of the plan is built once per plan, not once per attempt.
        let write = match (&state.write, fresh) {
            (Some(w), false) => w.clone(),
            _ => {
                let w = Arc::new(self.flush_write(plan));
                state.write = Some(w.clone());
                w
            }
        };
        let replay_held = fresh && plan.replay_held;
        let span = info_span!(
            "flush",
            reason,
            rows = write.rollups.len(),
            partitions = write.progress.len()
        );
        let _g = span.enter();

        // A routing outage is an outage like Postgres's: the flush is retried with backoff, with
        // the partitions paused, and never commits past an unacknowledged envelope.
        let routed = state.router.await_acks(deadline.min(ROUTING_WAIT));
        self.stats
            .routed_truncated
            .store(state.router.truncated, std::sync::atomic::Ordering::Relaxed);
        self.stats.routing_redeliveries.store(
            state.router.redelivered,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Err(e) = routed {
            PipelineStats::add(&self.stats.flush_failures, 1);
            return Err(FlushFailure {
                retriable: true,
                source: KafkaError::Routing(e),
            });
        }
        failpoint::hit("after_dlq_ack");
        failpoint::hit("before_commit");
        let store = self.store.clone();
        let w = write.clone();
        let task = self.handle.spawn(
            async move { tokio::time::timeout(deadline, store.write_flush(&w)).await }
                .instrument(span.clone()),
        );
        drop(_g);
        *self.inflight() = Some(Inflight {
            task,
            begun: Begun {
                write,
                replay_held,
                deadline,
                span,
                started: std::time::Instant::now(),
            },
        });
        Ok(())
    }

    fn settle_locked(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<PipelineContext>,
        outcome: Result<WriteOutcome, JoinError>,
        begun: &Begun,
    ) -> Result<u64, FlushFailure> {
        let Begun {
            ref write,
            replay_held,
            deadline,
            ref span,
            started,
        } = *begun;
        let _g = span.enter();
        let rows = write.rollups.len() as u64;
        let result = match outcome {
            Err(_) => return Err(fatal(KafkaError::Panicked)),
            Ok(Err(_)) => {
                PipelineStats::add(&self.stats.flush_failures, 1);
                return Err(FlushFailure {
                    retriable: true,
                    source: KafkaError::FlushDeadline(deadline),
                });
            }
            Ok(Ok(r)) => r,
        };
        match result {
            Ok(commit) => {
                failpoint::hit("after_commit");
                if replay_held {
                    failpoint::hit("after_replay_commit");
                }
                if commit == FlushCommit::AlreadyApplied {
                    warn!(
                        "The store had already applied this flush (its reply was lost); not applying it again."
                    );
                }
                let plan = state.core.committed().expect("a plan was pending");
                state.write = None;
                PipelineStats::add(&self.stats.flushes, 1);
                PipelineStats::add(&self.stats.rows_written, rows);
                PipelineStats::add(&self.stats.windows_closed, plan.windows_closed);
                self.stats.watermark_us.store(
                    plan.watermark_us.unwrap_or(0).max(0) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                self.commit_for_lag_tools(consumer, &write.progress);
                debug!(
                    rows,
                    windows_closed = plan.windows_closed,
                    watermark_us = plan.watermark_us,
                    write_ms = started.elapsed().as_secs_f64() * 1e3,
                    "Flush committed."
                );
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
                state.core.fenced();
                state.write = None;
                self.set_assigned(state);
                state.rejoin = true;
                Ok(0)
            }
            Err(e) if e.is_data_error() => {
                PipelineStats::add(&self.stats.flush_failures, 1);
                state.write = None;
                self.isolate_unwritable(state, consumer, write, deadline, e)
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

    /// Postgres refused rows of the flush (a data error, SQLSTATE class 22 or 23): finds which
    /// series, isolates them in the core, and rewinds every partition to its stored progress,
    /// so the replay commits everything else and routes the isolated series' events to the
    /// dead-letter topic with the database's reason. Nothing was committed, so nothing is lost
    /// or counted twice. When no single row is refused the error is returned as it is.
    fn isolate_unwritable(
        &self,
        state: &mut State,
        consumer: &BaseConsumer<PipelineContext>,
        write: &FlushWrite,
        deadline: Duration,
        error: StoreError,
    ) -> Result<u64, FlushFailure> {
        let probe = self.handle.block_on(async {
            tokio::time::timeout(deadline, self.store.find_unwritable(write)).await
        });
        let refused = match probe {
            Ok(Ok(refused)) if !refused.is_empty() => refused,
            Ok(Ok(_)) => {
                return Err(FlushFailure {
                    retriable: false,
                    source: KafkaError::Store(error),
                });
            }
            Ok(Err(e)) => {
                return Err(FlushFailure {
                    retriable: e.is_retriable(),
                    source: KafkaError::Store(e),
                });
            }
            Err(_) => {
                return Err(FlushFailure {
                    retriable: true,
                    source: KafkaError::FlushDeadline(deadline),
                });
            }
        };
        for u in &refused {
            warn!(
                series = %u.series,
                window_start_us = u.window_start_us,
                reason = %u.reason,
                "Postgres refused a series; isolating it: its events go to the dead-letter topic, everything else is committed."
            );
        }
        let rewind = state
            .core
            .isolate(refused.into_iter().map(|u| (u.series, u.reason)));
        self.stats.isolated_series.store(
            state.core.isolated_series() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut tpl = TopicPartitionList::new();
        for (id, offset) in rewind {
            let _ =
                tpl.add_partition_offset(self.topic_name(id), id.partition, Offset::Offset(offset));
        }
        let sought = consumer
            .seek_partitions(tpl, Duration::from_secs(10))
            .and_then(
                |tpl| match tpl.elements().iter().find_map(|e| e.error().err()) {
                    Some(e) => Err(e),
                    None => Ok(()),
                },
            );
        if let Err(e) = sought {
            // The core already rewound; a consumer left ahead of it would skip events. Exit:
            // the restart replays from the stored progress.
            return Err(FlushFailure {
                retriable: false,
                source: KafkaError::Client(e),
            });
        }
        Ok(0)
    }

    /// The store's form of a plan (topic names instead of indexes).
    fn flush_write(&self, plan: &FlushPlan) -> FlushWrite {
        FlushWrite {
            group_id: self.kafka.group_id.clone(),
            owner: self.owner.clone(),
            rollups: plan.rollups.clone(),
            topics: self
                .kafka
                .topics
                .inputs()
                .iter()
                .map(|t| t.to_string())
                .collect(),
            progress: plan
                .progress
                .iter()
                .map(|p| PartitionProgress {
                    topic: self.topic_name(p.partition).to_string(),
                    partition: p.partition.partition,
                    generation: p.generation,
                    flush_seq: p.flush_seq,
                    resume_offset: p.resume_offset,
                    applied_through_offset: p.applied_through_offset,
                    applied_watermark_us: p.applied_watermark_us,
                })
                .collect(),
        }
    }

    pub(super) fn set_assigned(&self, state: &State) {
        self.stats.assigned_partitions.store(
            state.core.assigned().count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn commit_for_lag_tools(
        &self,
        consumer: &BaseConsumer<PipelineContext>,
        progress: &[PartitionProgress],
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
}
