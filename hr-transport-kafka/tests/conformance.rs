//! The propagator conformance suite (`hr_core::conformance`) over Kafka:
//! three consumer groups, each applying into a store the suite can stop,
//! on librdkafka's embedded mock cluster and on the real broker
//! (`HR_KAFKA_BROKERS`, default 127.0.0.1:9092; fails without one).
use hr_core::conformance::{run_all, GatedSink, Harness, TARGETS};
use hr_core::{DataType, Propagator, Sink};
use hr_transport_kafka::{ensure_topics, EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use std::collections::BTreeMap;
use std::sync::Arc;

mod common;

struct Groups {
    sinks: BTreeMap<&'static str, Arc<GatedSink>>,
    subscribers: Vec<KafkaSubscriber>,
    propagator: Arc<KafkaPropagator>,
}

impl Groups {
    /// Each group also consumes the compensation topic, so a producer
    /// publishing compensation would show; the producer's targets list only
    /// master data, and it may not publish compensation.
    fn start(config: &KafkaConfig) -> Self {
        let mut sinks = BTreeMap::new();
        let mut subscribers = vec![];
        let mut propagator = KafkaPropagator::new(config).unwrap();
        for name in TARGETS {
            let sink = Arc::new(GatedSink::default());
            subscribers.push(KafkaSubscriber::start(config, &config.group(name), &[DataType::MasterData, DataType::Compensation], sink.clone()).unwrap());
            propagator = propagator.with_target(name, &[DataType::MasterData]).unwrap();
            sinks.insert(name, sink);
        }
        Groups { sinks, subscribers, propagator: Arc::new(propagator) }
    }

    async fn shutdown(self) {
        for s in self.subscribers {
            s.shutdown().await.unwrap();
        }
    }
}

#[async_trait::async_trait]
impl Harness for Groups {
    fn propagator(&self) -> Arc<dyn Propagator> {
        self.propagator.clone()
    }

    fn sink(&self, target: &str) -> Arc<dyn Sink> {
        self.sinks[target].clone()
    }

    async fn stop(&self, target: &str) {
        self.sinks[target].set_down(true);
    }

    async fn start(&self, target: &str) {
        self.sinks[target].set_down(false);
    }
}

fn config(brokers: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers);
    config.topic_prefix = format!("t.conformance.{}.", common::uuid_suffix());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_propagator_conforms_on_the_real_broker() {
    let config = config(&common::brokers());
    ensure_topics(&config, &[DataType::MasterData, DataType::Compensation]).await.unwrap();
    let groups = Groups::start(&config);
    run_all(&groups, "md.conformance.").await;
    groups.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_propagator_conforms_on_the_embedded_cluster() {
    let mock = EmbeddedKafka::start().unwrap();
    let config = config(mock.bootstrap_servers());
    mock.create_topics(&config, &[DataType::MasterData, DataType::Compensation]).unwrap();
    let groups = Groups::start(&config);
    run_all(&groups, "md.conformance.").await;
    groups.shutdown().await;
}
