//! TLS and SASL through `KafkaConfig`'s pass-through settings, against a real
//! broker with a SASL_SSL listener (TLS with a certificate from a throwaway
//! CA, SASL/PLAIN users), started here on ports 19292 (plaintext, unused by
//! clients), 19293 (controller) and 19294 (SASL_SSL).
//! Every client goes through SASL_SSL: topics, producer, subscriber, its
//! dead-letter producer, and the confirmation.

use hr_core::{DataType, MemorySink, PropagateError, Propagator, Sink};
use hr_transport_kafka::{ensure_topics, wait_until_applied, KafkaConfig, KafkaPropagator, KafkaSubscriber, DLQ_ERROR_HEADER};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

mod common;
use common::*;

const PORT: u16 = 19292;
const SECURE_PORT: u16 = 19294;

/// (CA PEM, broker key + certificate PEM) for 127.0.0.1.
fn pki() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (librdkafka) takes a certificate whose issuer equals its subject for self-signed.
    ca_params.distinguished_name.push(DnType::CommonName, "hr-sync test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), format!("{}{}", key.serialize_pem(), cert.pem()))
}

fn secure(ca: &std::path::Path, password: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(format!("127.0.0.1:{SECURE_PORT}"))
        .set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", &ca.display().to_string())
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "hr-hub")
        .set("sasl.password", password);
    config.topic_prefix = format!("t.secure.{}.", uuid_suffix());
    config.delivery_timeout = Duration::from_secs(5);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_sasl_settings_pass_through_to_every_client() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, broker_pem) = pki();
    let ca = dir.path().join("ca.pem");
    let broker = dir.path().join("broker.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&broker, broker_pem).unwrap();
    std::env::set_var("KAFKA_SASL_SSL_PORT", SECURE_PORT.to_string());
    std::env::set_var("KAFKA_SSL_PEM", &broker);
    std::env::set_var("KAFKA_SASL_USERS", "hr-hub:hub-secret-42");
    // A broker left by an earlier run has another certificate: start afresh.
    broker_script("stop", PORT);
    broker_script("start", PORT);
    let _broker = BrokerGuard(PORT);

    // The right CA and password: topics, propagation, a subscriber and the confirmation all work.
    let config = secure(&ca, "hub-secret-42");
    ensure_topics(&config, &[DataType::MasterData]).await.unwrap();
    let changes: Vec<_> = (0..100).map(|i| md(i, 1)).collect();
    let producer = KafkaPropagator::new(&config).unwrap();
    assert_eq!(producer.propagate(&changes).await.unwrap().delivered().total("kafka"), 100);
    let group = format!("{}g", config.topic_prefix);
    let sink = std::sync::Arc::new(MemorySink::default());
    let subscriber = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    // A poison record: the subscriber's own dead-letter producer must reach the
    // broker over SASL_SSL too, or the record stays unacknowledged forever.
    let topic = config.topic(DataType::MasterData);
    let raw: FutureProducer = config.client_config().create().unwrap();
    raw.send(FutureRecord::to(&topic).key("md.category:C00001").payload("{not json"), Duration::from_secs(10)).await.unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.unwrap();
    let stats = subscriber.shutdown().await.unwrap();
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), digest_of(&changes));
    let dlq: StreamConsumer = config.client_config().set("group.id", format!("{group}-dlq-reader")).set("auto.offset.reset", "earliest").create().unwrap();
    dlq.subscribe(&[&format!("{topic}.dlq")]).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv()).await.expect("a record on the dead-letter topic").unwrap();
    assert_eq!(m.payload(), Some(&b"{not json"[..]));
    let error = m.headers().and_then(|h| h.iter().find(|h| h.key == DLQ_ERROR_HEADER)).and_then(|h| h.value).expect("an hr-error header");
    assert!(String::from_utf8_lossy(error).contains("not a valid hr.v1 change envelope"), "{}", String::from_utf8_lossy(error));

    // A wrong password: the producer fails within its deadline and reports nothing as delivered.
    let wrong = KafkaConfig { topic_prefix: config.topic_prefix.clone(), ..secure(&ca, "not-the-password") };
    let err = KafkaPropagator::new(&wrong).unwrap().propagate(&changes[..1]).await.unwrap_err();
    let PropagateError::Incomplete { delivered, .. } = &err else { panic!("{err}") };
    assert_eq!(delivered.total("kafka"), 0, "{err}");
    assert!(!err.to_string().contains("not-the-password"), "the error quotes the password: {err}");
}
