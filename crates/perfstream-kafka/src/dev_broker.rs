//! An in-process Kafka-protocol broker (librdkafka's mock cluster) for the demo and the tests.
//! It speaks the Kafka protocol on a loopback TCP port, so any client can attach. Data lives in
//! memory and librdkafka caps retention at about 5 MiB per partition.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::{KafkaError, Topics};

pub struct DevBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl DevBroker {
    /// Starts a mock cluster with `brokers` brokers and creates the perfstream topics.
    pub fn start(brokers: i32, partitions: i32, topics: &Topics) -> Result<Self, KafkaError> {
        let cluster = MockCluster::new(brokers).map_err(KafkaError::Client)?;
        let t = topics;
        for name in [
            &t.query,
            &t.request,
            &t.resource,
            &t.dlq,
            &t.late,
            &t.alerts,
        ] {
            cluster
                .create_topic(name, partitions, 1)
                .map_err(KafkaError::Client)?;
        }
        Ok(DevBroker { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates one more topic (tests use private topic names).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        self.cluster
            .create_topic(name, partitions, 1)
            .map_err(KafkaError::Client)
    }

    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
