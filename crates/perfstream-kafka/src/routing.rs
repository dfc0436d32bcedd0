//! Routing of unusable input: undecodable messages to the dead-letter topic, events beyond the
//! correction horizon to the late topic, both as `DeadLetter` envelopes keyed by their source.
//! The producer is idempotent and retries forever; `await_acks` blocks until every routed
//! message is acknowledged, and the flush that covers their offsets commits only after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use perfstream_events::{DeadLetter, encode::encode_dead_letter, source_key};
use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use crate::{KafkaError, KafkaSettings};

#[derive(Default)]
pub struct RoutingContext {
    pub failed: AtomicU64,
}

impl ClientContext for RoutingContext {}

impl ProducerContext for RoutingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Router {
    producer: ThreadedProducer<RoutingContext>,
    buf: Vec<u8>,
}

impl Router {
    pub fn new(s: &KafkaSettings) -> Result<Self, KafkaError> {
        let producer = crate::client_config(s.producer_properties())
            .create_with_context(RoutingContext::default())
            .map_err(KafkaError::Client)?;
        Ok(Router {
            producer,
            buf: Vec::new(),
        })
    }

    /// Queues one envelope. Only fails when the local queue is full for longer than the
    /// producer can drain it, which then counts as a routing failure for the next flush.
    pub fn route(&mut self, topic: &str, dl: &DeadLetter) {
        self.buf.clear();
        encode_dead_letter(&mut self.buf, dl);
        let key = source_key(&dl.source_topic, dl.source_partition, dl.source_offset);
        let mut record = BaseRecord::to(topic).key(&key).payload(&self.buf);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err(_) => {
                    self.producer
                        .context()
                        .failed
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Blocks until everything routed so far is acknowledged. Returns false when a delivery
    /// failed (the flush must not commit past it).
    pub fn await_acks(&self, timeout: Duration) -> bool {
        let flushed = self.producer.flush(timeout).is_ok();
        flushed && self.producer.context().failed.swap(0, Ordering::Relaxed) == 0
    }
}
