//! Delivery guarantees against a real Apache Kafka broker.
//!
//! The broker address comes from `HR_KAFKA_BROKERS` (default 127.0.0.1:9092;
//! `scripts/kafka.sh start` runs one). These tests fail, never skip, when no
//! broker answers.

use async_trait::async_trait;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, DigestEntry, MemorySink, PropagateError, Propagator, Sink, SinkError, SqliteSink};
use hr_transport_kafka::{
    ensure_topics, group_lag, read_dead_letters, replay_dead_letters, wait_until_applied, KafkaConfig, KafkaPropagator, KafkaSubscriber, DLQ_ERROR_HEADER,
    DLQ_PAYLOAD_BYTES_HEADER,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::*;

/// A config with topics unique to one test, so tests can run in parallel.
async fn config(test: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(brokers());
    c.topic_prefix = format!("t.{test}.{}.", uuid_suffix());
    ensure_topics(&c, &DataType::ALL).await.unwrap();
    c
}

fn employees(n: usize) -> Vec<ChangeEnvelope> {
    (0..n)
        .map(|i| {
            let e = hr_core::Employee {
                id: format!("A-{i}").into(),
                source_ids: vec![format!("A-{i}").into()],
                company: hr_core::Company::A,
                name: "김민준".into(),
                name_en: Some("Minjun Kim".into()),
                email: Some(format!("m{i}@a.example").into()),
                phone: None,
                birth_date: None,
                org_unit: "A-D1".into(),
                grade: "staff".into(),
                status: hr_core::EmployeeStatus::Active,
                hire_date: chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
                termination_date: None,
                manager: None,
                updated_at: chrono::Utc::now(),
            };
            ChangeEnvelope::upsert(DataType::Employee, e.id.clone(), 1, "hub", &e).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_employees_reach_three_groups_with_equal_digests() {
    let config = config("fanout").await;
    let dir = tempfile::tempdir().unwrap();
    let systems = ["payroll", "orgchart", "erp"];
    let mut subs = vec![];
    let mut sinks = vec![];
    for s in systems {
        let sink = Arc::new(SqliteSink::open(dir.path().join(format!("{s}.sqlite3"))).unwrap());
        let group = format!("{}{s}", config.topic_prefix);
        subs.push(KafkaSubscriber::start(&config, &group, &[DataType::Employee], sink.clone()).unwrap());
        sinks.push(sink);
    }
    let changes = employees(10_000);
    let propagator = systems.iter().fold(KafkaPropagator::new(&config).unwrap(), |p, s| p.with_target(s, &[DataType::Employee]).unwrap());
    let receipt = propagator.propagate(&changes).await.unwrap();
    for s in systems {
        assert_eq!(receipt.delivered().total(s), 10_000, "the broker holds every record for {s}");
    }
    let applied = receipt.applied(Duration::from_secs(120)).await.unwrap();
    for s in systems {
        assert_eq!(applied.total(s), 10_000, "{s} applied every record");
    }
    let hub = digest_of(&changes);
    for sink in &sinks {
        assert_eq!(sink.digest(DataType::Employee).await.unwrap(), hub);
        assert_eq!(sink.count(DataType::Employee).unwrap(), 10_000);
    }
    for s in subs {
        s.shutdown().await.unwrap();
    }
}

/// A receipt is not applied until every target's group committed past the
/// batch: with erp's consumer stopped, `applied()` fails at its deadline
/// naming erp, and reports payroll as applied; once erp's consumer runs
/// again, the same receipt is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_names_the_target_whose_group_has_not_applied_the_batch() {
    let config = config("receipt").await;
    let payroll = Arc::new(MemorySink::default());
    let payroll_sub = KafkaSubscriber::start(&config, &config.group("payroll"), &[DataType::Employee], payroll.clone()).unwrap();
    let propagator = ["payroll", "erp"].iter().fold(KafkaPropagator::new(&config).unwrap(), |p, s| p.with_target(s, &[DataType::Employee]).unwrap());
    let receipt = propagator.propagate(&employees(200)).await.unwrap();
    assert!(!receipt.is_applied());

    let err = receipt.applied(Duration::from_secs(5)).await.unwrap_err();
    let PropagateError::Incomplete { delivered: applied, failures } = &err else { panic!("{err}") };
    assert_eq!(err.failed_targets(), vec!["erp"], "{err}");
    assert!(failures[0].cause.contains("200 employee record(s) not applied") && failures[0].retriable, "{err}");
    assert_eq!(applied.total("payroll"), 200);
    assert_eq!(applied.total("erp"), 0, "nothing reported as applied that was not");
    let (payroll_group, erp_group) = (config.group("payroll"), config.group("erp"));
    let lags = group_lag(&config, &[&payroll_group, &erp_group], &[DataType::Employee]).await.unwrap();
    let totals: Vec<(String, i64)> = lags.iter().map(|l| (l.group.clone(), l.total())).collect();
    assert_eq!(totals, vec![(payroll_group, 0), (erp_group.clone(), 200)], "the lag look agrees: erp has all 200 to go");

    let erp = Arc::new(MemorySink::default());
    let erp_sub = KafkaSubscriber::start(&config, &config.group("erp"), &[DataType::Employee], erp.clone()).unwrap();
    let applied = receipt.applied(Duration::from_secs(60)).await.unwrap();
    assert_eq!((applied.total("payroll"), applied.total("erp")), (200, 200));
    assert_eq!(erp.digest(DataType::Employee).await.unwrap(), payroll.digest(DataType::Employee).await.unwrap());
    payroll_sub.shutdown().await.unwrap();
    erp_sub.shutdown().await.unwrap();
}

/// A repair for some targets alone goes to their topics only: a target
/// reading another audience's topic receives nothing, one sharing the
/// topic receives it too, and the receipt names exactly who received it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_some_targets_goes_to_their_topics_and_the_receipt_names_every_reader() {
    let config = config("only").await;
    let narrowed = hr_core::FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).unwrap();
    let directory_config = KafkaConfig { fields: narrowed.clone(), ..config.clone() };
    ensure_topics(&directory_config, &[DataType::Employee]).await.unwrap();
    let mut sinks = BTreeMap::new();
    let mut subs = vec![];
    for (name, c) in [("payroll", &config), ("erp", &config), ("directory", &directory_config)] {
        let sink = Arc::new(MemorySink::default());
        subs.push(KafkaSubscriber::start(c, &config.group(name), &[DataType::Employee], sink.clone()).unwrap());
        sinks.insert(name, sink);
    }
    let propagator = KafkaPropagator::new(&config)
        .unwrap()
        .with_target("payroll", &[DataType::Employee])
        .unwrap()
        .with_target("erp", &[DataType::Employee])
        .unwrap()
        .with_scoped_target("directory", &[DataType::Employee], narrowed)
        .unwrap();
    let only = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<std::collections::BTreeSet<String>>();

    let changes = employees(20);
    let receipt = propagator.propagate_to(&changes[..10], &only(&["directory"])).await.unwrap();
    let named: Vec<&String> = receipt.delivered().delivered.keys().collect();
    assert_eq!(named, vec!["directory"], "only the directory's topic was written");
    receipt.applied(Duration::from_secs(60)).await.unwrap();
    let receipt = propagator.propagate_to(&changes[10..], &only(&["payroll"])).await.unwrap();
    let named: Vec<&String> = receipt.delivered().delivered.keys().collect();
    assert_eq!(named, vec!["erp", "payroll"], "erp reads payroll's topic: it receives the batch too, and is named");
    receipt.applied(Duration::from_secs(60)).await.unwrap();
    for (name, batch) in [("directory", &changes[..10]), ("payroll", &changes[10..]), ("erp", &changes[10..])] {
        let mut held: Vec<String> = sinks[name].entries(DataType::Employee).await.unwrap().into_iter().map(|e| e.key).collect();
        let mut sent: Vec<String> = batch.iter().map(|c| c.key.clone()).collect();
        held.sort();
        sent.sort();
        assert_eq!(held, sent, "{name} holds exactly the batch meant for it");
    }
    for s in subs {
        s.shutdown().await.unwrap();
    }
}

/// A batch many times the in-flight limit, to two audiences, arrives whole
/// at each: the producer waits for deliveries instead of queueing the
/// whole batch, and loses nothing doing so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_in_flight_limit_arrives_whole_at_every_audience() {
    let config = config("inflight").await;
    let narrowed = hr_core::FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).unwrap();
    let directory_config = KafkaConfig { fields: narrowed.clone(), ..config.clone() };
    ensure_topics(&directory_config, &[DataType::Employee]).await.unwrap();
    let mut sinks = BTreeMap::new();
    let mut subs = vec![];
    for (name, c) in [("payroll", &config), ("directory", &directory_config)] {
        let sink = Arc::new(MemorySink::default());
        subs.push(KafkaSubscriber::start(c, &config.group(name), &[DataType::Employee], sink.clone()).unwrap());
        sinks.insert(name, sink);
    }
    let propagator = KafkaPropagator::new(&config)
        .unwrap()
        .with_max_in_flight(7)
        .with_target("payroll", &[DataType::Employee])
        .unwrap()
        .with_scoped_target("directory", &[DataType::Employee], narrowed)
        .unwrap();
    let changes = employees(1000);
    let receipt = propagator.propagate(&changes).await.unwrap();
    for name in ["payroll", "directory"] {
        assert_eq!(receipt.delivered().total(name), 1000, "the broker acknowledged every record of {name}'s topic");
    }
    receipt.applied(Duration::from_secs(60)).await.unwrap();
    let mut sent: Vec<String> = changes.iter().map(|c| c.key.clone()).collect();
    sent.sort();
    for (name, sink) in &sinks {
        let mut held: Vec<String> = sink.entries(DataType::Employee).await.unwrap().into_iter().map(|e| e.key).collect();
        held.sort();
        assert_eq!(held, sent, "{name} holds every record of the batch");
    }
    for s in subs {
        s.shutdown().await.unwrap();
    }
}

/// A failure names the targets it leaves without the batch, not the
/// broker: compensation refused (it may not travel over Kafka) names payroll,
/// which would have read it, and not orgchart, which reads no compensation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_names_the_targets_it_was_for() {
    let config = config("named").await;
    let propagator = KafkaPropagator::new(&config)
        .unwrap()
        .with_target("payroll", &[DataType::Employee, DataType::Compensation])
        .unwrap()
        .with_target("orgchart", &[DataType::Employee])
        .unwrap();
    let pay = serde_json::json!({"employee_id": "A-1", "base_salary": 1, "currency": "KRW", "effective_date": "2026-01-01"});
    let change = ChangeEnvelope::upsert(DataType::Compensation, "A-1".to_string(), 1, "test", &pay).unwrap();
    let err = propagator.propagate(&[change]).await.unwrap_err();
    assert_eq!(err.failed_targets(), vec!["payroll"], "{err}");
    let err = propagator
        .propagate(&[employees(1).remove(0), ChangeEnvelope::upsert(DataType::Compensation, "A-2".to_string(), 1, "test", &pay).unwrap()])
        .await
        .unwrap_err();
    assert_eq!(err.failed_targets(), vec!["orgchart", "payroll"], "a batch with employees was for orgchart too: {err}");
}

/// Records the versions it sees per key, in arrival order.
#[derive(Default)]
struct OrderRecorder {
    seen: Mutex<BTreeMap<String, Vec<u64>>>,
    inner: MemorySink,
}

#[async_trait]
impl Sink for OrderRecorder {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        {
            let mut seen = self.seen.lock().unwrap();
            for c in batch {
                seen.entry(c.key.clone()).or_default().push(c.version);
            }
        }
        self.inner.apply(batch).await
    }
    async fn entries(&self, t: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.inner.entries(t).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_six_partitions_under_concurrent_sends() {
    let config = config("order").await;
    let group = format!("{}g", config.topic_prefix);
    let recorder = Arc::new(OrderRecorder::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], recorder.clone()).unwrap();
    // Tiny produce requests: a key's versions then travel in several requests
    // in flight together (up to five per partition), not in one that cannot reorder.
    let producer_config = config.clone().set("batch.num.messages", "8");
    let propagator = Arc::new(KafkaPropagator::new(&producer_config).unwrap());
    // 8 concurrent calls, each with versions 1..=20 of its own 25 keys in one
    // batch: nothing waits for version v to be acknowledged before sending v+1.
    let (senders, keys, versions) = (8, 25, 20u64);
    let mut tasks = vec![];
    for sender in 0..senders {
        let p = propagator.clone();
        tasks.push(tokio::spawn(async move {
            let batch: Vec<_> = (1..=versions).flat_map(|v| (0..keys).map(move |k| md(sender * keys + k, v))).collect();
            p.propagate(&batch).await.unwrap().delivered().total("kafka")
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), keys as u64 * versions);
    }
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), senders * keys);
    for (key, arrived) in seen {
        assert_eq!(arrived, (1..=versions).collect::<Vec<u64>>(), "order broken for {key}");
    }
    sub.shutdown().await.unwrap();
}

/// Applies, then never returns: the process "dies" before storing offsets.
struct ApplyThenHang(Arc<SqliteSink>, Arc<tokio::sync::Notify>);

#[async_trait]
impl Sink for ApplyThenHang {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        self.0.apply(batch).await?;
        self.1.notify_one();
        std::future::pending().await
    }
    async fn entries(&self, t: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.0.entries(t).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_before_committing_is_replaced_and_the_state_is_exact() {
    let config = config("kill").await;
    let group = format!("{}g", config.topic_prefix);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteSink::open(dir.path().join("erp.sqlite3")).unwrap());
    let applied = Arc::new(tokio::sync::Notify::new());
    let doomed = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], Arc::new(ApplyThenHang(store.clone(), applied.clone()))).unwrap();
    let changes: Vec<_> = (0..500).map(|i| md(i, 1)).collect();
    KafkaPropagator::new(&config).unwrap().propagate(&changes).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), applied.notified()).await.expect("first batch applied");
    doomed.kill();
    let lag = hr_transport_kafka::group_lag(&config, &[&group], &[DataType::MasterData]).await.unwrap();
    assert_eq!(lag[0].total(), 500, "nothing was committed by the killed consumer");

    let replacement = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], store.clone()).unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(90)).await.unwrap();
    let stats = replacement.shutdown().await.unwrap();
    let outcome = stats.applied[&DataType::MasterData];
    assert_eq!(outcome.applied + outcome.stale, 500, "the replacement re-received every record");
    assert!(outcome.stale > 0, "the batch the killed consumer applied came again");
    assert_eq!(store.digest(DataType::MasterData).await.unwrap(), digest_of(&changes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_goes_to_the_dead_letter_topic_and_the_rest_is_applied() {
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let config = config("poison").await;
    let topic = config.topic(DataType::MasterData);
    let group = format!("{}g", config.topic_prefix);
    let sink = Arc::new(MemorySink::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &config.brokers).create().unwrap();
    // All on one key, so the poison sits between good records in one partition.
    let mut wrong_key = md(1, 3);
    wrong_key.key = "md.category:C00002".into();
    // Well-formed, but an employee change on the master data topic.
    let mut wrong_topic = md(1, 4);
    wrong_topic.data_type = DataType::Employee;
    let sends: Vec<(Vec<u8>, &str)> = vec![
        (md(1, 1).to_json().into_bytes(), "good"),
        (b"{not json".to_vec(), "garbage"),
        (wrong_key.to_json().into_bytes(), "invalid"),
        (wrong_topic.to_json().into_bytes(), "wrong topic"),
        (md(1, 2).to_json().into_bytes(), "good"),
    ];
    for (payload, _) in &sends {
        raw.send(FutureRecord::to(&topic).key("md.category:C00001").payload(payload), Duration::from_secs(10)).await.unwrap();
    }
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.unwrap();
    assert_eq!(sink.get(DataType::MasterData, "md.category:C00001").unwrap().version, 2, "the record after the poison was applied");
    let stats = sub.shutdown().await.unwrap();
    assert_eq!(stats.dead_lettered, 3);

    let dlq = dead_letter_reader(&config, &group, &topic);
    let mut errors = vec![];
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv()).await.unwrap().unwrap();
        let headers = m.headers().unwrap();
        let err = headers.iter().find(|h| h.key == DLQ_ERROR_HEADER).and_then(|h| h.value).unwrap();
        errors.push((String::from_utf8_lossy(m.payload().unwrap()).to_string(), String::from_utf8_lossy(err).to_string()));
    }
    let error_of = |payload_part: &str| errors.iter().find(|(payload, _)| payload.contains(payload_part)).map(|(_, e)| e.as_str()).unwrap_or_default();
    let garbage = error_of("{not json");
    assert!(garbage.contains("syntax error") || garbage.contains("end of input"), "{errors:?}");
    assert!(error_of("md.category:C00002").contains("key"), "{errors:?}");
    assert!(error_of(r#""data_type":"employee""#).contains("envelope of employee on topic"), "{errors:?}");
}

/// A consumer of `topic`'s dead letters from their start, in a group of its own.
fn dead_letter_reader(config: &KafkaConfig, group: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let dlq: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{group}-dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&[&format!("{topic}.dlq")]).unwrap();
    dlq
}

/// A sink that remembers the size of every batch it is handed.
#[derive(Default)]
struct BatchSizes(MemorySink, Mutex<Vec<usize>>);

#[async_trait]
impl Sink for BatchSizes {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        self.1.lock().unwrap().push(batch.len());
        self.0.apply(batch).await
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.0.entries(data_type).await
    }
}

/// A record near the broker's size limit cannot be dead-lettered whole
/// (the dead letter's headers make it larger than the producer may send):
/// it goes without its payload, and the group goes on to the next record
/// of its key instead of retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_to_dead_letter_goes_without_its_payload_and_the_group_goes_on() {
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let config = config("oversized").await;
    let topic = config.topic(DataType::MasterData);
    let group = format!("{}g", config.topic_prefix);
    let sink = Arc::new(MemorySink::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &config.brokers).set("message.max.bytes", "2000000").create().unwrap();
    let huge = vec![b'x'; 1_010_000];
    let key = "md.category:C00001";
    raw.send(FutureRecord::to(&topic).key(key).payload(&huge), Duration::from_secs(10)).await.expect("the broker takes a record of 1,010,000 bytes");
    raw.send(FutureRecord::to(&topic).key(key).payload(&md(1, 1).to_json()), Duration::from_secs(10)).await.unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.expect("the group stalled on the oversized record");
    assert_eq!(sink.get(DataType::MasterData, key).unwrap().version, 1, "the record after the oversized one was applied");
    let stats = tokio::time::timeout(Duration::from_secs(10), sub.shutdown()).await.expect("the subscriber stops when asked").unwrap();
    assert_eq!(stats.dead_lettered, 1);

    let dlq = dead_letter_reader(&config, &group, &topic);
    let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv()).await.unwrap().unwrap();
    let header = |name: &str| m.headers().and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned()));
    assert_eq!(m.payload().map_or(0, <[u8]>::len), 0, "the dead letter carries no payload");
    assert_eq!(m.key(), Some(key.as_bytes()));
    assert_eq!(header(DLQ_PAYLOAD_BYTES_HEADER).as_deref(), Some("1010000"));
    assert!(header(DLQ_ERROR_HEADER).is_some_and(|e| e.contains("syntax error") && e.len() <= 512 * 4), "{:?}", header(DLQ_ERROR_HEADER));
    assert!(header("hr-source").is_some_and(|s| s.starts_with(&format!("{topic}/"))), "{:?}", header("hr-source"));
}

/// A dead-letter topic that refuses everything (here: records over 64
/// bytes, so even a letter without its payload; in a deployment, an ACL
/// missing): the poison record is kept in the system's own store, and the
/// records after it still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_topic_refuses_is_kept_in_the_systems_own_store_and_the_group_goes_on() {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let config = config("kept").await;
    let topic = config.topic(DataType::MasterData);
    let dlq = format!("{topic}.dlq");
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config.client_config().create().unwrap();
    let narrow = AlterConfig::new(ResourceSpecifier::Topic(&dlq)).set("max.message.bytes", "64");
    for result in admin.alter_configs(&[narrow], &AdminOptions::new()).await.unwrap() {
        result.unwrap();
    }
    // The controller accepts the change before the broker enforces it: wait until the broker reports it.
    let enforced = async {
        loop {
            let described = admin.describe_configs(&[ResourceSpecifier::Topic(&dlq)], &AdminOptions::new()).await.unwrap();
            let limit = described.into_iter().flatten().flat_map(|r| r.entries).find(|e| e.name == "max.message.bytes").and_then(|e| e.value);
            if limit.as_deref() == Some("64") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), enforced).await.expect("the broker takes the dead-letter topic's new limit");
    let group = format!("{}g", config.topic_prefix);
    let store = tempfile::tempdir().unwrap();
    let sink = Arc::new(SqliteSink::open(store.path().join("erp.sqlite3")).unwrap());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    let raw: FutureProducer = config.client_config().create().unwrap();
    let key = "md.category:C00001";
    raw.send(FutureRecord::to(&topic).key(key).payload("{not json"), Duration::from_secs(10)).await.unwrap();
    raw.send(FutureRecord::to(&topic).key(key).payload(&md(1, 1).to_json()), Duration::from_secs(10)).await.unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(90)).await.expect("the group stalled on the refused dead letter");
    assert_eq!(sink.get(DataType::MasterData, key).unwrap().unwrap().version, 1, "the record after the poison one was applied");
    let stats = tokio::time::timeout(Duration::from_secs(10), sub.shutdown()).await.expect("the subscriber stops when asked").unwrap();
    assert_eq!(stats.dead_lettered, 1);
    let kept = sink.kept_letters().unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].payload, b"{not json");
    assert_eq!(kept[0].key.as_deref(), Some(key));
    assert!(kept[0].source.starts_with(&format!("{topic}/")) && kept[0].reason.contains("not a valid"), "{:?}", kept[0]);
    assert!(!format!("{:?}", kept[0]).contains("not json"), "Debug shows the payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_ready_together_are_applied_in_batches_of_at_most_max_batch() {
    let mut config = config("batches").await;
    config.max_batch = 100;
    let changes: Vec<_> = (0..2_000).map(|i| md(i, 1)).collect();
    KafkaPropagator::new(&config).unwrap().propagate(&changes).await.unwrap();
    let group = format!("{}g", config.topic_prefix);
    let sink = Arc::new(BatchSizes::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.unwrap();
    sub.shutdown().await.unwrap();
    let sizes = sink.1.lock().unwrap().clone();
    assert_eq!(sizes.iter().sum::<usize>(), 2_000, "every record applied once");
    assert!(sizes.iter().all(|n| *n <= 100), "a batch over max_batch: {sizes:?}");
    assert!(sizes.iter().any(|n| *n > 1), "records that were all ready came one at a time: {sizes:?}");
}

/// A sink whose store is down for its first `n` batches; it notes when each batch came.
struct DownFirst(MemorySink, std::sync::atomic::AtomicUsize, Mutex<Vec<std::time::Instant>>);

#[async_trait]
impl Sink for DownFirst {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        self.2.lock().unwrap().push(std::time::Instant::now());
        let left = self.1.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.1.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err(SinkError::Unavailable("store down".into()));
        }
        self.0.apply(batch).await
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.0.entries(data_type).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_is_retried_with_growing_pauses_and_nothing_is_dead_lettered() {
    let config = config("storedown").await;
    let group = format!("{}g", config.topic_prefix);
    let sink = Arc::new(DownFirst(MemorySink::default(), std::sync::atomic::AtomicUsize::new(3), Mutex::default()));
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    KafkaPropagator::new(&config).unwrap().propagate(&[md(1, 1)]).await.unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.unwrap();
    // Pauses of at least 50, 100 and 200 ms (a sleep never ends early): each longer than the last allows.
    let tries = sink.2.lock().unwrap().clone();
    let pauses: Vec<Duration> = tries.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(pauses.len(), 3, "{pauses:?}");
    for (pause, least) in pauses.iter().zip([50, 100, 200]) {
        assert!(*pause >= Duration::from_millis(least), "pauses {pauses:?}");
    }
    let stats = sub.shutdown().await.unwrap();
    assert_eq!((stats.retries, stats.dead_lettered), (3, 0));
    assert_eq!(sink.0.get(DataType::MasterData, "md.category:C00001").map(|r| r.version), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_with_its_reason_and_applied_once_replayed_where_it_belongs() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let config = config("replay").await;
    let group = format!("{}g", config.topic_prefix);
    let sink = Arc::new(MemorySink::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData, DataType::Employee], sink.clone()).unwrap();
    // A good employee change published on the master-data topic by mistake: dead-lettered.
    let misrouted = employees(1).remove(0);
    let raw: FutureProducer = config.client_config().create().unwrap();
    raw.send(FutureRecord::to(&config.topic(DataType::MasterData)).key(&misrouted.key).payload(&misrouted.to_json()), Duration::from_secs(10)).await.unwrap();
    raw.send(FutureRecord::to(&config.topic(DataType::MasterData)).key("garbage").payload("{not json"), Duration::from_secs(10)).await.unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(60)).await.unwrap();
    assert!(sink.get(DataType::Employee, &misrouted.key).is_none());

    let reader = config.clone();
    let letters = tokio::task::spawn_blocking(move || read_dead_letters(&reader, DataType::MasterData, Duration::from_secs(30)).map_err(Box::new))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let employee = letters.iter().find(|l| l.key.as_deref() == Some(misrouted.key.as_str())).expect("the misrouted change is listed");
    assert_eq!(employee.data_type, Some(DataType::Employee));
    assert!(employee.error.contains("envelope of employee on topic"), "{employee:?}");
    assert_eq!((employee.group.as_str(), employee.source.starts_with(&config.topic(DataType::MasterData))), (group.as_str(), true), "{employee:?}");
    assert!(employee.timestamp_ms.is_some());
    let garbage = letters.iter().find(|l| l.key.as_deref() == Some("garbage")).unwrap();
    assert!(replay_dead_letters(&config, &[garbage, employee]).await.is_err(), "a letter that is no envelope refuses the replay");

    assert_eq!(replay_dead_letters(&config, &[employee]).await.unwrap(), 1);
    wait_until_applied(&config, &[&group], &[DataType::Employee], Duration::from_secs(60)).await.unwrap();
    assert_eq!(sink.get(DataType::Employee, &misrouted.key).map(|r| r.version), Some(misrouted.version), "the replayed change is applied");
    let stats = sub.shutdown().await.unwrap();
    assert_eq!(stats.dead_lettered, 2, "the replay is not dead-lettered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_are_plain_json_for_any_client() {
    // Kafka's own Java console consumer (from the jars scripts/kafka.sh fetched) reads them.
    let config = config("plain").await;
    let change = md(7, 1);
    KafkaPropagator::new(&config).unwrap().propagate(std::slice::from_ref(&change)).await.unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let libs = std::fs::read_dir(root.join(".kafka"))
        .expect(".kafka exists once scripts/kafka.sh start ran")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("libs-"))
        .expect("broker jars present")
        .path();
    let out = std::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .args(["org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", &config.brokers, "--topic", &config.topic(DataType::MasterData)])
        .args(["--from-beginning", "--max-messages", "1", "--timeout-ms", "30000", "--property", "print.key=true", "--property", "key.separator=|"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains('|')).unwrap_or_else(|| panic!("no record read: {}", String::from_utf8_lossy(&out.stderr)));
    let (key, value) = line.split_once('|').unwrap();
    assert_eq!(key, "md.category:C00007");
    let json: serde_json::Value = serde_json::from_str(value).unwrap();
    assert_eq!(json["schema"], "hr.v1");
    assert_eq!(json["version"], 1);
    assert_eq!(json["payload"]["name"], "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_propagation_loses_nothing_after_a_retry() {
    use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
    brokers(); // the shared broker's jars are in place
    let port = 19092;
    broker_script("start", port);
    let _broker = BrokerGuard(port);
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"));
    config.topic_prefix = format!("t.restart.{}.", uuid_suffix());
    // Shorter than the outage below, so the first attempt must give up and say so.
    config.delivery_timeout = Duration::from_secs(5);
    ensure_topics(&config, &[DataType::MasterData]).await.unwrap();
    let topic = config.topic(DataType::MasterData);
    let n = 30_000u64;
    let changes: Vec<_> = (0..n as usize).map(|i| md(i, 1)).collect();

    // The broker dies as soon as it has written the first record of the
    // batch, so the kill cannot land before the send began or after it ended.
    let reader: StreamConsumer = config
        .client_config()
        .set("group.id", format!("{}reader", config.topic_prefix))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .create()
        .unwrap();
    let mut all = rdkafka::TopicPartitionList::new();
    for p in 0..config.partitions {
        all.add_partition_offset(&topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    reader.assign(&all).unwrap();
    let first_written = tokio::spawn(async move { reader.recv().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await; // the reader has its partitions
    let propagator = Arc::new(KafkaPropagator::new(&config).unwrap());
    let sending = {
        let (p, c) = (propagator.clone(), changes.clone());
        tokio::spawn(async move { p.propagate(&c).await })
    };
    tokio::time::timeout(Duration::from_secs(60), first_written).await.expect("a first record written").unwrap().unwrap();
    broker_script("kill", port);

    // The broker stays down until propagate gives up: it must not claim success.
    let err = sending.await.unwrap().expect_err("propagate reported success with the broker dead mid-send");
    let PropagateError::Incomplete { delivered, failures } = &err else { panic!("{err}") };
    let acknowledged = delivered.total("kafka");
    let missing = n - acknowledged;
    assert!(missing > 0, "{err}");
    assert_eq!(failures.len(), 1, "{err}");
    assert!(failures[0].retriable, "{err}");
    assert!(failures[0].cause.starts_with(&format!("{missing} of {n} records not acknowledged")), "the error counts what is missing: {err}");

    broker_script("start", port);
    let retry = propagator.propagate(&changes).await.expect("the retry after the restart succeeds");
    assert_eq!(retry.delivered().total("kafka"), n);

    let group = format!("{}g", config.topic_prefix);
    let sink = Arc::new(MemorySink::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::MasterData], sink.clone()).unwrap();
    wait_until_applied(&config, &[&group], &[DataType::MasterData], Duration::from_secs(120)).await.unwrap();
    let stats = sub.shutdown().await.unwrap();
    let outcome = stats.applied[&DataType::MasterData];
    let watermarks: BaseConsumer = config.client_config().create().unwrap();
    let on_topic: i64 = (0..config.partitions)
        .map(|p| {
            let (low, high) = watermarks.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap();
            high - low
        })
        .sum();
    eprintln!(
        "first attempt: {acknowledged} of {n} acknowledged ({err}); retry: {n} acknowledged; topic holds {on_topic} records; subscriber applied {}, skipped {} duplicates",
        outcome.applied, outcome.stale
    );
    assert_eq!(outcome.applied as u64, n, "every record applied, each once");
    assert_eq!((outcome.applied + outcome.stale) as i64, on_topic, "every record on the topic was read");
    let digest = sink.digest(DataType::MasterData).await.unwrap();
    assert_eq!(digest, digest_of(&changes), "nothing lost, nothing applied twice in effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_topics_are_compacted_and_dead_letter_topics_are_not() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let config = config("compact").await;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new().set("bootstrap.servers", &config.brokers).create().unwrap();
    let data = config.topic(DataType::Employee);
    let dlq = format!("{data}.dlq");
    let specs = [ResourceSpecifier::Topic(&data), ResourceSpecifier::Topic(&dlq)];
    let results = admin.describe_configs(&specs, &AdminOptions::new()).await.unwrap();
    let policy = |i: usize| results[i].as_ref().unwrap().get("cleanup.policy").and_then(|e| e.value.clone()).unwrap();
    assert_eq!(policy(0), "compact", "a new system bootstraps the full state from {data}");
    assert_eq!(policy(1), "delete");
    // A group that joins late still reads every record from the beginning.
    KafkaPropagator::new(&config).unwrap().propagate(&employees(50)).await.unwrap();
    let group = format!("{}late", config.topic_prefix);
    let sink = Arc::new(MemorySink::default());
    let sub = KafkaSubscriber::start(&config, &group, &[DataType::Employee], sink.clone()).unwrap();
    wait_until_applied(&config, &[&group], &[DataType::Employee], Duration::from_secs(60)).await.unwrap();
    sub.shutdown().await.unwrap();
    assert_eq!(sink.digest(DataType::Employee).await.unwrap().count, 50);
}
