//! Rebalance callbacks: claim partitions in Postgres and assign them at their resume offsets;
//! flush what is closed and drop all open state before giving them up.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use perfstream_pipeline::Claim;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, warn};

use super::{Inner, PipelineContext};
use crate::KafkaError;
use crate::failpoint;
use perfstream_pipeline::PipelineStats;

impl Inner {
    /// Claims a partition, retrying a Postgres that is away until `pipeline.claim_deadline_ms`
    /// passes or shutdown is requested; either is fatal (the process exits, an orchestrator
    /// restarts it), because a member that holds a partition it cannot claim stalls it.
    fn claim(&self, topic: &str, partition: i32) -> Result<Claim, KafkaError> {
        let deadline = Instant::now() + Duration::from_millis(self.settings.claim_deadline_ms);
        let mut delay = Duration::from_millis(self.settings.retry_initial_ms.max(1));
        loop {
            let attempt = self.handle.block_on(async {
                tokio::time::timeout(
                    deadline.saturating_duration_since(Instant::now()),
                    self.store
                        .claim_partition(&self.kafka.group_id, topic, partition, &self.owner),
                )
                .await
            });
            match attempt {
                Ok(Ok(c)) => {
                    return Ok(Claim {
                        generation: c.generation,
                        resume_offset: c.resume_offset,
                        applied_through_offset: c.applied_through_offset,
                        applied_watermark_us: c.applied_watermark_us,
                    });
                }
                Ok(Err(e)) if !e.is_retriable() => return Err(e.into()),
                Ok(Err(e)) => {
                    warn!(error = %e, topic, partition, "Claiming partition failed; retrying.")
                }
                Err(_) => {}
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(KafkaError::ClaimInterrupted);
            }
            if Instant::now() + delay >= deadline {
                return Err(KafkaError::ClaimDeadline {
                    topic: topic.to_string(),
                    partition,
                    deadline_ms: self.settings.claim_deadline_ms,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(self.settings.retry_max_ms));
        }
    }

    fn on_assign(&self, consumer: &BaseConsumer<PipelineContext>, tpl: &TopicPartitionList) {
        let drained = self.drain();
        let mut state = self.lock();
        if let Err(e) = drained {
            state.fatal = Some(e);
            return;
        }
        // A flush still in flight (an assignment without a revoke first) is settled before the
        // claims change the partitions' generations.
        match self.settle_waiting(&mut state, consumer) {
            Err(e) if !e.retriable => {
                state.fatal = Some(e.source);
                return;
            }
            Err(e) => {
                warn!(error = %e.source, "Flush in flight failed before an assignment; its plan is written again.")
            }
            Ok(_) => {}
        }
        let state = &mut *state;
        let mut assign = TopicPartitionList::new();
        for el in tpl.elements() {
            let (topic, partition) = (el.topic().to_string(), el.partition());
            let Some(id) = self.partition_id(&topic, partition) else {
                continue;
            };
            let claim = match self.claim(&topic, partition) {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, topic, partition, "Cannot claim partition.");
                    state.fatal = Some(e);
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
                            state.fatal = Some(KafkaError::OffsetGap {
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
            state.core.assign(id, &claim, start);
            let offset = if claim.resume_offset.is_some() {
                Offset::Offset(start)
            } else {
                Offset::Beginning
            };
            let _ = assign.add_partition_offset(&topic, partition, offset);
        }
        self.set_assigned(state);
        PipelineStats::add(&self.stats.rebalances, 1);
        if let Err(e) = consumer.assign(&assign) {
            error!(error = %e, "Assigning partitions failed.");
            state.fatal = Some(KafkaError::Client(e));
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<PipelineContext>) {
        // Messages polled before the revoke are applied first (see `worker`).
        let drained = self.drain();
        let mut state = self.lock();
        if state.core.assigned().next().is_some() {
            failpoint::hit("during_revoke");
        }
        let deadline = Duration::from_millis(self.settings.revoke_flush_deadline_ms);
        if let Err(e) = drained {
            // The aggregation thread died: nothing of this state is written.
            state.fatal = Some(e);
        } else {
            // The flush in flight first, then one last flush of what is closed now.
            let r = match self.settle_waiting(&mut state, consumer) {
                Err(e) if !e.retriable => Err(e),
                _ => self.flush_locked(&mut state, consumer, "revoke", deadline),
            };
            if let Err(e) = r {
                warn!(error = %e.source, "Flush before revoke failed; the next owner replays the partitions.");
            }
        }
        state.core.revoke();
        self.set_assigned(&state);
        drop(state);
        if let Err(e) = consumer.unassign() {
            warn!(error = %e, "Unassign failed.");
        }
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
