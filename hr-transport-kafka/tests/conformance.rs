//! The propagator conformance suite (`hr_core::conformance`) over Kafka:
//! three consumer groups, each applying into a store the suite can stop,
//! on librdkafka's embedded mock cluster and on the real broker
//! (`HR_KAFKA_BROKERS`, default 127.0.0.1:9092; fails without one).
use hr_core::conformance::{run_all, GatedHarness};
use hr_core::DataType;
use hr_transport_kafka::{ensure_topics, EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use std::sync::Arc;

mod common;

/// Runs the suite with one consumer group per target. Each group also
/// consumes the compensation topic, so a producer publishing compensation
/// would show; the producer's targets list only master data, and it may not
/// publish compensation.
async fn conforms(config: &KafkaConfig) {
    let stores = GatedHarness::stores();
    let mut subscribers = vec![];
    let mut propagator = KafkaPropagator::new(config).unwrap();
    for (name, store) in &stores {
        subscribers.push(KafkaSubscriber::start(config, &config.group(name), &[DataType::MasterData, DataType::Compensation], store.clone()).unwrap());
        propagator = propagator.with_target(name, &[DataType::MasterData]).unwrap();
    }
    run_all(&GatedHarness::new(Arc::new(propagator), stores), "md.conformance.").await;
    for s in subscribers {
        s.shutdown().await.unwrap();
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
    conforms(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_propagator_conforms_on_the_embedded_cluster() {
    let mock = EmbeddedKafka::start().unwrap();
    let config = config(mock.bootstrap_servers());
    mock.create_topics(&config, &[DataType::MasterData, DataType::Compensation]).unwrap();
    conforms(&config).await;
}
