//! Routing of unusable input: undecodable messages to the dead-letter topic, events beyond the
//! correction horizon to the late topic, both as `DeadLetter` envelopes keyed by their source.
//!
//! The producer is idempotent and retries without a deadline; `await_acks` reports whether
//! every routed message is acknowledged, and the flush that covers their offsets commits only
//! after it. A topic that refuses or a broker that does not answer is an outage, not a crash:
//! - a failed delivery (unknown topic, authorization, ...) is kept and sent again by the next
//!   `await_acks`, which fails (retriable) until everything is acknowledged, so the pipeline
//!   pauses its partitions and retries the flush with backoff, as for a Postgres outage;
//! - the producer's queue is bounded (`queue.buffering.max.kbytes`, see
//!   [`crate::KafkaSettings::producer_properties`]); when it is full, envelopes wait in a
//!   backlog and [`Router::congested`] tells the poll loop to pause fetching, so the backlog
//!   holds at most what was already fetched;
//! - an envelope larger than `routed_max_message_bytes` has its `original_value` truncated to fit,
//!   with a `perfstream-truncated` header carrying the original length and a note in `reason`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use perfstream_events::{DeadLetter, encode::encode_dead_letter, source_key};
use rdkafka::ClientContext;
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaError, KafkaSettings};

/// Header of an envelope whose `original_value` was truncated: the original length, decimal.
pub const TRUNCATED_HEADER: &str = "perfstream-truncated";

/// Bytes of an envelope's record besides its key and value (record and batch framing); kept
/// free below the size limit.
const RECORD_OVERHEAD: usize = 512;

/// One envelope ready to send, kept until acknowledged when its first send failed.
#[derive(Debug, Clone)]
struct Envelope {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    truncated_from: Option<usize>,
}

#[derive(Default)]
pub struct RoutingContext {
    /// Deliveries that failed, with the error; sent again by the next `await_acks`.
    failed: Mutex<Vec<(Envelope, String)>>,
}

impl ClientContext for RoutingContext {}

impl ProducerContext for RoutingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let Err((e, m)) = r else { return };
        let truncated_from = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == TRUNCATED_HEADER)
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
        });
        let env = Envelope {
            topic: m.topic().to_string(),
            key: m.key().unwrap_or_default().to_vec(),
            payload: m.payload().unwrap_or_default().to_vec(),
            truncated_from,
        };
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((env, e.to_string()));
    }
}

/// Why routed messages are not all acknowledged yet. Retriable: the flush waits and retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{unacknowledged} routed message(s) not acknowledged yet (dead-letter/late topic unavailable){}",
    last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
)]
pub struct RoutingPending {
    pub unacknowledged: usize,
    pub last_error: Option<String>,
}

pub struct Router {
    producer: ThreadedProducer<RoutingContext>,
    max_message_bytes: usize,
    /// Envelopes not handed to the producer yet (its queue was full, or their delivery failed).
    backlog: VecDeque<Envelope>,
    buf: Vec<u8>,
    /// Envelopes truncated to fit the size limit, since the start.
    pub truncated: u64,
    /// Deliveries that failed and were queued again, since the start.
    pub redelivered: u64,
}

impl Router {
    pub fn new(s: &KafkaSettings) -> Result<Self, KafkaError> {
        let producer = crate::client_config(s.producer_properties())
            .create_with_context(RoutingContext::default())
            .map_err(KafkaError::Client)?;
        Ok(Router {
            producer,
            max_message_bytes: s.routed_max_message_bytes,
            backlog: VecDeque::new(),
            buf: Vec::new(),
            truncated: 0,
            redelivered: 0,
        })
    }

    /// Queues one envelope. Never blocks: when the producer's queue is full the envelope waits
    /// in the backlog (see [`Router::congested`]).
    pub fn route(&mut self, topic: &str, mut dl: DeadLetter) {
        let key = source_key(&dl.source_topic, dl.source_partition, dl.source_offset);
        let truncated_from = truncate_to_fit(&mut dl, self.max_message_bytes, key.len());
        if truncated_from.is_some() {
            self.truncated += 1;
        }
        self.buf.clear();
        encode_dead_letter(&mut self.buf, &dl);
        let env = Envelope {
            topic: topic.to_string(),
            key,
            payload: std::mem::take(&mut self.buf),
            truncated_from,
        };
        if self.backlog.is_empty() {
            if let Err(env) = self.send(env) {
                self.backlog.push_back(env);
            }
        } else {
            self.backlog.push_back(env);
        }
    }

    /// True while envelopes wait for room in the producer's queue: the poll loop should stop
    /// fetching until a flush drains them.
    pub fn congested(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Hands one envelope to the producer; gives it back when the queue is full (or the send
    /// is refused at once, which `await_acks` retries).
    fn send(&self, env: Envelope) -> Result<(), Envelope> {
        let len = env.truncated_from.map(|n| n.to_string());
        let mut record = BaseRecord::to(&env.topic)
            .key(&env.key)
            .payload(&env.payload);
        if let Some(len) = &len {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: TRUNCATED_HEADER,
                value: Some(len.as_bytes()),
            }));
        }
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((e, _)) => {
                if !matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                ) {
                    tracing::warn!(error = %e, topic = %env.topic, "Routing a message was refused; it will be retried.");
                }
                Err(env)
            }
        }
    }

    /// Waits up to `timeout` until everything routed so far is acknowledged. On failure
    /// (retriable: the flush must not commit past unacknowledged envelopes) the envelopes whose
    /// delivery failed are queued again, to be sent by the next call.
    pub fn await_acks(&mut self, timeout: Duration) -> Result<(), RoutingPending> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            // Move the backlog into the producer as room frees up.
            while let Some(env) = self.backlog.pop_front() {
                if let Err(env) = self.send(env) {
                    self.backlog.push_front(env);
                    break;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let step = if self.backlog.is_empty() {
                left
            } else {
                left.min(Duration::from_millis(50))
            };
            let flushed = self.producer.flush(step).is_ok();
            let failed = std::mem::take(
                &mut *self
                    .producer
                    .context()
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            self.redelivered += failed.len() as u64;
            for (env, e) in failed {
                last_error = Some(e);
                self.backlog.push_back(env);
            }
            if flushed && self.backlog.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline || last_error.is_some() {
                return Err(RoutingPending {
                    unacknowledged: self.backlog.len()
                        + self.producer.in_flight_count().max(0) as usize,
                    last_error,
                });
            }
        }
    }
}

/// Cuts `original_value` so the encoded envelope with its key fits in `max` bytes; returns the
/// original length when it did, and says so in `reason`.
fn truncate_to_fit(dl: &mut DeadLetter, max: usize, key_len: usize) -> Option<usize> {
    let value_len = dl.original_value.as_ref().map_or(0, Vec::len);
    // Avro framing of the other fields: strings and bytes are length-prefixed (<= 10 bytes
    // each), numbers at most 10 bytes; plus the 5-byte schema header.
    let fixed = 5
        + 10 * 8
        + dl.source_topic.len()
        + dl.original_key.as_ref().map_or(0, Vec::len)
        + dl.error_kind.len()
        + dl.reason.len()
        + 200 // the truncation note added to `reason`
        + key_len
        + RECORD_OVERHEAD;
    if fixed + value_len <= max {
        return None;
    }
    let keep = max.saturating_sub(fixed);
    let value = dl.original_value.as_mut()?;
    value.truncate(keep);
    dl.reason = format!(
        "{} (original_value truncated to its first {keep} of {value_len} bytes to fit the routed topic's message size limit)",
        dl.reason
    );
    Some(value_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(value: usize) -> DeadLetter {
        DeadLetter {
            source_topic: "perf.query".into(),
            source_partition: 3,
            source_offset: 42,
            original_key: Some(b"svc".to_vec()),
            original_value: Some(vec![7; value]),
            error_kind: "bad_magic".into(),
            reason: "first byte is not 0".into(),
            dead_at_us: 1,
        }
    }

    #[test]
    fn small_envelopes_are_untouched() {
        let mut d = dl(1000);
        assert_eq!(truncate_to_fit(&mut d, 1_000_000, 20), None);
        assert_eq!(d, dl(1000));
    }

    #[test]
    fn large_envelopes_fit_after_truncation() {
        for size in [999_500, 1_000_000, 5_000_000] {
            let mut d = dl(size);
            let key = source_key(&d.source_topic, d.source_partition, d.source_offset);
            assert_eq!(truncate_to_fit(&mut d, 1_000_000, key.len()), Some(size));
            let mut buf = Vec::new();
            encode_dead_letter(&mut buf, &d);
            assert!(
                buf.len() + key.len() + RECORD_OVERHEAD <= 1_000_000,
                "{size}: {}",
                buf.len()
            );
            assert!(
                d.reason.contains(&format!("of {size} bytes")),
                "{}",
                d.reason
            );
            assert!(d.original_value.as_ref().unwrap().len() > 990_000);
        }
    }
}
