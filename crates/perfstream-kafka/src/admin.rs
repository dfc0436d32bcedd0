//! `perfstream topics create`: the input, dead-letter, late and alert topics.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaError, KafkaSettings};

/// Creates every perfstream topic that does not exist yet; returns the names created.
pub async fn create_topics(s: &KafkaSettings) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = crate::client_config(s.client_properties())
        .create()
        .map_err(KafkaError::Client)?;
    let retention = s.retention_ms.to_string();
    let t = &s.topics;
    let names = [
        &t.query,
        &t.request,
        &t.resource,
        &t.dlq,
        &t.late,
        &t.alerts,
    ];
    let new: Vec<NewTopic> = names
        .iter()
        .map(|n| {
            NewTopic::new(
                n,
                s.partitions,
                TopicReplication::Fixed(s.replication_factor),
            )
            .set("retention.ms", &retention)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(KafkaError::Client)?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(KafkaError::CreateTopic { topic: name, code }),
        }
    }
    Ok(created)
}

/// Warns when topic retention does not cover the correction horizon plus the resume window.
pub fn check_retention(s: &KafkaSettings, needed: Duration) -> Option<String> {
    let have = Duration::from_millis(s.retention_ms.max(0) as u64);
    (s.retention_ms >= 0 && have < needed).then(|| {
        format!(
            "kafka.retention_ms = {} ms is shorter than the correction horizon plus the resume window ({} ms): \
             a restart after a long outage could find its resume offset expired",
            s.retention_ms,
            needed.as_millis()
        )
    })
}
