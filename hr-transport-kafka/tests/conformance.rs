//! The propagator conformance suite (`hr_core::conformance`) over Kafka:
//! three consumer groups, each applying into a store the suite can stop,
//! on librdkafka's embedded mock cluster and on the real broker
//! (`HR_KAFKA_BROKERS`, default 127.0.0.1:9092; fails without one).
use hr_core::conformance::{narrowed, run_all, GatedHarness, NARROWED};
use hr_core::DataType;
use hr_transport_kafka::{ensure_topics, EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use std::sync::Arc;

mod common;

/// Runs the suite with one consumer group per target. Each group also
/// consumes the compensation topic, so a producer publishing compensation
/// would show; the producer's targets list master data and org units
/// (orgchart's without the fields the suite narrows), and it may not
/// publish compensation.
async fn conforms(config: &KafkaConfig) {
    let stores = GatedHarness::stores();
    let mut subscribers = vec![];
    let mut propagator = KafkaPropagator::new(config).unwrap();
    for (name, store) in &stores {
        let fields = if *name == NARROWED { narrowed() } else { hr_core::FieldScope::full() };
        let reading = KafkaConfig { fields: fields.clone(), ..config.clone() };
        subscribers.push(KafkaSubscriber::start(&reading, &config.group(name), &TYPES, store.clone()).unwrap());
        propagator = propagator.with_scoped_target(name, &[DataType::MasterData, DataType::OrgUnit], fields).unwrap();
    }
    run_all(&GatedHarness::new(Arc::new(propagator), stores), "md.conformance.").await;
    for s in subscribers {
        s.shutdown().await.unwrap();
    }
}

/// What the groups read.
const TYPES: [DataType; 3] = [DataType::MasterData, DataType::OrgUnit, DataType::Compensation];

/// The configurations whose topics the suite needs: the full one and orgchart's narrowed audience.
fn audiences(config: &KafkaConfig) -> [KafkaConfig; 2] {
    [config.clone(), KafkaConfig { fields: narrowed(), ..config.clone() }]
}

fn config(brokers: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers);
    config.topic_prefix = format!("t.conformance.{}.", common::uuid_suffix());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_propagator_conforms_on_the_real_broker() {
    let config = config(&common::brokers());
    for audience in audiences(&config) {
        ensure_topics(&audience, &TYPES).await.unwrap();
    }
    conforms(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_propagator_conforms_on_the_embedded_cluster() {
    let mock = EmbeddedKafka::start().unwrap();
    let config = config(mock.bootstrap_servers());
    for audience in audiences(&config) {
        mock.create_topics(&audience, &TYPES).unwrap();
    }
    conforms(&config).await;
}
