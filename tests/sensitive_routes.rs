//! Compensation only ever reaches the targets allowed to hold it, on every
//! path: routing to REST targets, the receiver's 403 (in
//! hr-transport-rest/tests/loopback.rs), the Kafka producer's refusal, and
//! the hub's refusal of a configuration that routes it over Kafka.

use chrono::NaiveDate;
use hr_core::{
    ChangeEnvelope, Compensation, DataType, MemorySink, PermissionGrant, PropagateError, Propagator, RecordScope, Router, ScopedSink, Sensitive, Sink,
};
use hr_sync::{Hub, HubConfig};
use hr_transport_kafka::{EmbeddedKafka, KafkaConfig, KafkaPropagator};
use hr_transport_rest::{receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::sync::Arc;

fn pay(employee: &str, version: u64) -> ChangeEnvelope {
    let c = Compensation {
        employee_id: employee.into(),
        base_salary: Sensitive::new(55_500_000),
        currency: "KRW".into(),
        effective_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    };
    ChangeEnvelope::upsert(DataType::Compensation, employee.to_string(), version, "hr", &c).unwrap()
}

fn grant(employee: &str) -> ChangeEnvelope {
    let g = PermissionGrant { employee: employee.into(), system: "erp".into(), role: "viewer".into(), granted: true, expires: None, at: chrono::Utc::now() };
    ChangeEnvelope::upsert(DataType::Permission, g.key(), 1, "hr", &g).unwrap()
}

/// Records on every partition of a data type's topic, read from the broker.
fn records_on_topic(config: &KafkaConfig, data_type: DataType) -> i64 {
    let consumer: BaseConsumer = config.client_config().set("group.id", "sensitive-routes-probe").create().unwrap();
    let topic = config.topic(data_type);
    let timeout = std::time::Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(&topic), timeout).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    assert!(partitions > 0, "{topic} has partitions");
    (0..partitions).map(|p| consumer.fetch_watermarks(&topic, p, timeout).map(|(low, high)| high - low).unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_producer_refuses_compensation_unless_allowed() {
    let mock = EmbeddedKafka::start().unwrap();
    let config = KafkaConfig::new(mock.bootstrap_servers());
    mock.create_topics(&config, &[DataType::Compensation, DataType::Permission]).unwrap();

    let producer = KafkaPropagator::new(&config).unwrap();
    let err = producer.propagate(&[grant("A-1"), pay("A-1", 1)]).await.unwrap_err();
    let PropagateError::Incomplete { delivered, failures } = &err else { panic!("{err}") };
    assert_eq!(delivered.total("kafka"), 0, "nothing of a refused batch is sent");
    assert!(failures[0].cause.contains("compensation") && !failures[0].retriable, "{err}");
    // Read from the broker, not from the report: the refused batch left nothing on either topic.
    assert_eq!(records_on_topic(&config, DataType::Compensation), 0);
    assert_eq!(records_on_topic(&config, DataType::Permission), 0, "nothing of a refused batch is sent");

    let allowed = KafkaPropagator::new(&KafkaConfig { allow_sensitive: true, ..config.clone() }).unwrap();
    assert_eq!(allowed.propagate(&[pay("A-1", 1)]).await.unwrap().delivered().total("kafka"), 1);
    assert_eq!(records_on_topic(&config, DataType::Compensation), 1, "the probe sees what an allowed producer sends");
    drop((producer, allowed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_a_configuration_routing_compensation_over_kafka() {
    let mock = EmbeddedKafka::start().unwrap();
    let kafka = KafkaConfig::new(mock.bootstrap_servers());
    let mut config = HubConfig::default();
    config.routes.insert(DataType::Compensation, "kafka".into());
    let ledger = || hr_core::Ledger::in_memory().unwrap();
    let err = Hub::new(&config, kafka.clone(), RestConfig::new(vec![]), ledger()).expect_err("refused");
    assert!(err.to_string().contains("compensation") && err.to_string().contains("sensitive_on_kafka"), "{err}");

    config.sensitive_on_kafka = true;
    // Everything over Kafka: no REST target needs a url.
    config.routes.values_mut().for_each(|route| *route = "kafka".into());
    Hub::new(&config, kafka, RestConfig::new(vec![]), ledger()).expect("allowed once sensitive_on_kafka is set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensation_reaches_payroll_only_and_a_grant_its_own_system_even_where_receivers_would_accept_them() {
    // Receivers that accept everything: only the sending side's policy keeps
    // compensation away from orgchart and erp here.
    let mut config = HubConfig::default();
    // orgchart stands in for an access-review tool: it sees every grant.
    config.targets.get_mut("orgchart").unwrap().all_grants = true;
    let mut sinks = vec![];
    for (name, target) in config.targets.iter_mut() {
        let sink = Arc::new(MemorySink::default());
        let app = receiver(ReceiverConfig::new(sink.clone(), DataType::ALL.to_vec()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        target.url = Some(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sinks.push((name.clone(), sink));
    }
    let rest = RestPropagator::new(RestConfig::new(Hub::rest_targets(&config).unwrap())).unwrap();
    let router = Router::new(config.policy()).with("rest", Arc::new(rest));
    let report = router.propagate(&[pay("A-1", 1), pay("B-7", 1), grant("A-1")]).await.unwrap();
    assert_eq!(report.delivered().delivered["payroll"][&DataType::Compensation], 2);
    for (name, sink) in &sinks {
        let held = sink.digest(DataType::Compensation).await.unwrap().count;
        assert_eq!(held, if name == "payroll" { 2 } else { 0 }, "{name}");
        let grants = sink.digest(DataType::Permission).await.unwrap().count;
        assert_eq!(grants, u64::from(name != "payroll"), "{name}: a grant for erp reaches erp and the all_grants target only");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_that_drops_grants_outside_its_scope_fails_the_propagation_naming_the_disagreement() {
    // The hub believes payroll sees every grant; payroll's own configuration says it does not.
    let sink = Arc::new(MemorySink::default());
    let scoped = Arc::new(ScopedSink::new(sink.clone(), RecordScope::new("payroll", false)));
    let app = receiver(ReceiverConfig::new(scoped, DataType::ALL.to_vec()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let target = RestTarget::new("payroll", &url, vec![DataType::Permission]).with_all_grants(true);
    let rest = RestPropagator::new(RestConfig::new(vec![target])).unwrap();
    let err = rest.propagate(&[grant("A-1")]).await.unwrap_err().to_string();
    assert!(err.contains("did not store 1 changes as outside its scope"), "{err}");
    assert_eq!(sink.digest(DataType::Permission).await.unwrap().count, 0, "the grant for erp is not stored in payroll");
}
