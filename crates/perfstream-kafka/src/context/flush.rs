//! The flush: closed windows, corrections and every assigned partition's progress in one
//! transaction, after the routed messages they cover are acknowledged.

use std::time::Duration;

use perfstream_store::{FlushWrite, PartitionProgress as ProgressUpdate, StoreError};
use perfstream_window::{Merge, Rollup, Rollups};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info_span, warn};

use super::{Core, FlushFailure, Inner, Pending, PipelineContext};
use crate::KafkaError;
use crate::failpoint;
use crate::pipeline::now_us;
use crate::stats::PipelineStats;

impl Inner {
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

    pub(super) fn flush_locked(
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

    pub(super) fn drop_all(&self, core: &mut Core) {
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
