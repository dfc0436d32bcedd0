//! Rebalance callbacks: claim partitions in Postgres and assign them at their resume offsets;
//! flush what is closed and drop all open state before giving them up.

use std::time::Duration;

use perfstream_store::Claim;
use perfstream_window::{PartitionId, ResumeState};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{error, warn};

use super::{Inner, Part, PipelineContext};
use crate::KafkaError;
use crate::failpoint;
use crate::stats::PipelineStats;

impl Inner {
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
