//! The outbox relay: publishes unsent `alert_outbox` rows in commit order, keyed by alert id
//! (so one alert's events share a partition and keep their order), with an idempotent
//! producer, and marks them sent only after the broker acknowledged them. A crash between the
//! acknowledgement and the mark publishes them again: at-least-once, `(alert_id, state,
//! severity)` is the dedup key.
//!
//! The two statements on the lock connection are bounded by the evaluator's [`Deadline`]; the
//! wait for the broker is not (librdkafka retries for as long as `message.timeout.ms` says): a
//! slow broker is no reason to hand the lead over, a silent Postgres is.

use std::time::Duration;

use perfstream_pipeline::KafkaSettings;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgConnection, Row};

use crate::deadline::Deadline;
use crate::error::{EvalError, db};

pub(crate) struct Relay {
    producer: FutureProducer,
    topic: String,
    batch: i64,
}

impl Relay {
    pub(crate) fn new(kafka: &KafkaSettings, batch: u32) -> Result<Relay, EvalError> {
        let mut cfg = rdkafka::ClientConfig::new();
        for (k, v) in kafka.producer_properties() {
            cfg.set(k, v);
        }
        // An alert should not wait for a batch to fill; keep the user's choice if given.
        if !kafka.librdkafka.contains_key("linger.ms") {
            cfg.set("linger.ms", "0");
        }
        let producer: FutureProducer = cfg.create().map_err(EvalError::Producer)?;
        Ok(Relay {
            producer,
            topic: kafka.topics.alerts.clone(),
            batch: i64::from(batch.max(1)),
        })
    }

    /// Publishes every unsent outbox row; returns how many were acknowledged and marked.
    pub(crate) async fn publish(
        &self,
        conn: &mut PgConnection,
        deadline: Deadline,
    ) -> Result<usize, EvalError> {
        let mut total = 0;
        loop {
            let unsent = sqlx::query(
                "SELECT seq, alert_id, payload FROM alert_outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
            )
            .bind(self.batch)
            .fetch_all(&mut *conn);
            let rows = deadline
                .run("reading the alert outbox", async {
                    unsent.await.map_err(db("reading the alert outbox"))
                })
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            let full = rows.len() as i64 == self.batch;
            let mut pending = Vec::with_capacity(rows.len());
            for r in &rows {
                let (seq, alert_id, payload): (i64, String, Vec<u8>) =
                    (r.get(0), r.get(1), r.get(2));
                let mut record = FutureRecord::to(&self.topic)
                    .key(alert_id.as_bytes())
                    .payload(&payload);
                let fut = loop {
                    match self.producer.send_result(record) {
                        Ok(f) => break f,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((source, _)) => {
                            return Err(EvalError::Publish {
                                seq,
                                alert_id,
                                source,
                            });
                        }
                    }
                };
                pending.push((seq, alert_id, fut));
            }
            // Await in order; mark the acknowledged prefix (a later row of the same alert must
            // never be marked sent while an earlier one is not).
            let mut acked = Vec::with_capacity(pending.len());
            let mut failure = None;
            for (seq, alert_id, fut) in pending {
                match fut.await {
                    Ok(Ok(_)) if failure.is_none() => acked.push(seq),
                    Ok(Ok(_)) => {}
                    Ok(Err((source, _))) => {
                        failure.get_or_insert(EvalError::Publish {
                            seq,
                            alert_id,
                            source,
                        });
                    }
                    Err(_) => {
                        failure.get_or_insert(EvalError::Publish {
                            seq,
                            alert_id,
                            source: KafkaError::Canceled,
                        });
                    }
                }
            }
            crate::failpoint::hit("alerts_after_publish");
            if !acked.is_empty() {
                let mark =
                    sqlx::query("UPDATE alert_outbox SET sent_at = now() WHERE seq = ANY($1)")
                        .bind(&acked)
                        .execute(&mut *conn);
                deadline
                    .run("marking alerts sent", async {
                        mark.await.map_err(db("marking alerts sent"))
                    })
                    .await?;
                total += acked.len();
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if !full {
                return Ok(total);
            }
        }
    }
}
