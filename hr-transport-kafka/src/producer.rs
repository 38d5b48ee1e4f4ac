use crate::confirm::{AppliedOffsets, LagMonitor};
use crate::{KafkaConfig, KafkaTransportError};
use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use hr_core::{ChangeEnvelope, DataType, FieldScope, PropagateError, PropagationReport, Propagator, Receipt, TargetFailure};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The name a report uses for the brokers when no target is registered
/// (a producer publishing for whoever reads the topics): failures and
/// deliveries otherwise name the targets.
const BROKER: &str = "kafka";

/// Sends change envelopes to one topic per data type, keyed by record key,
/// for the target systems registered with [`with_target`](Self::with_target).
///
/// A target that goes without some fields ([`with_scoped_target`](Self::with_scoped_target))
/// reads its audience's own topic ([`KafkaConfig::topic_for`]): each record
/// is produced once per audience, without the fields that audience omits,
/// so no consumer group can read a field its system may not hold.
///
/// The producer is idempotent with `acks=all` and lz4 compression; all
/// records of a batch are in flight at once. `propagate` returns `Ok` only
/// when the broker acknowledged every record; otherwise, once
/// [`KafkaConfig::delivery_timeout`] passed, an error counting what was
/// acknowledged and naming the cause of the rest. Sensitive data types are
/// refused, and nothing of the batch sent, unless [`KafkaConfig::allow_sensitive`].
///
/// The receipt's [`applied`](Receipt::applied) waits until each target's
/// consumer group ([`KafkaConfig::group`]) committed offsets past the
/// batch's records in every partition they went to; a subscriber commits
/// only what its sink applied.
pub struct KafkaPropagator {
    producer: FutureProducer,
    config: KafkaConfig,
    targets: BTreeMap<String, KafkaTarget>,
    monitor: Option<LagMonitor>,
    max_in_flight: usize,
}

/// What one target system consumes, and which fields it goes without.
struct KafkaTarget {
    data_types: Vec<DataType>,
    fields: FieldScope,
}

impl KafkaPropagator {
    /// Creates the producer (no connection is made until the first send).
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaTransportError> {
        let producer =
            Self::client_config(config).create().map_err(|source| KafkaTransportError::Client { role: "producer", brokers: config.brokers.clone(), source })?;
        Ok(KafkaPropagator { producer, config: config.clone(), targets: BTreeMap::new(), monitor: None, max_in_flight: Self::DEFAULT_MAX_IN_FLIGHT })
    }

    /// How many records a propagation keeps in flight by default.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 100_000;

    /// Keeps at most `records` records (one per change and audience) in
    /// flight: handed to the producer and not yet acknowledged. It bounds
    /// the payloads waiting in the producer's queue and the deliveries
    /// awaited, so a batch of millions costs the memory of this many; more
    /// keeps more requests going to the brokers at once. At least 1.
    pub fn with_max_in_flight(mut self, records: usize) -> Self {
        self.max_in_flight = records.max(1);
        self
    }

    /// Adds a target system that consumes `data_types` in its consumer
    /// group ([`KafkaConfig::group`]); receipts confirm it applied them.
    pub fn with_target(self, target: &str, data_types: &[DataType]) -> Result<Self, KafkaTransportError> {
        self.with_scoped_target(target, data_types, FieldScope::full())
    }

    /// [`with_target`](Self::with_target) for a target that goes without
    /// the fields `fields` omits: it reads its audience's topics.
    pub fn with_scoped_target(mut self, target: &str, data_types: &[DataType], fields: FieldScope) -> Result<Self, KafkaTransportError> {
        self.targets.insert(target.to_string(), KafkaTarget { data_types: data_types.to_vec(), fields });
        // One monitor for every target: each target adds its group's client only.
        let group = self.config.group(target);
        match &mut self.monitor {
            Some(monitor) => monitor.watch_group(&group)?,
            None => self.monitor = Some(LagMonitor::new(&self.config, &[&group])?),
        }
        Ok(self)
    }

    /// Refuses a batch holding a sensitive data type unless allowed; nothing of it is sent.
    fn refuse_sensitive(&self, batch: &[ChangeEnvelope], addressed: &[String]) -> Result<(), PropagateError> {
        let Some(c) = batch.iter().find(|c| c.data_type.is_sensitive() && !self.config.allow_sensitive) else { return Ok(()) };
        let cause = format!(
            "refusing to publish {} records to Kafka, where every consumer of the topic could read them; route them over REST, or set KafkaConfig::allow_sensitive",
            c.data_type
        );
        Err(PropagateError::incomplete(PropagationReport::default(), failed(addressed, &cause, false)))
    }

    /// The targets reading the topics a batch goes to (all of them, or
    /// those of `only`'s audiences): the ones a failure leaves without it.
    /// With no target registered, the brokers stand for them (named `kafka`).
    fn addressed(&self, batch: &[ChangeEnvelope], only: Option<&BTreeSet<String>>) -> Vec<String> {
        let types: BTreeSet<DataType> = batch.iter().map(|c| c.data_type).collect();
        let topics: BTreeSet<String> = types.iter().flat_map(|t| self.audiences(*t, only).into_iter().map(|(topic, _)| topic)).collect();
        let reads = |target: &KafkaTarget| target.data_types.iter().any(|t| types.contains(t) && topics.contains(&self.topic_of(target, *t)));
        let names: Vec<String> = self.targets.iter().filter(|(_, t)| reads(t)).map(|(name, _)| name.clone()).collect();
        if names.is_empty() {
            vec![BROKER.to_string()]
        } else {
            names
        }
    }

    /// Puts the records of `batch` in flight, at most
    /// [`max_in_flight`](Self::with_max_in_flight) at a time (waiting for deliveries while that many, or the producer
    /// queue, are full), and collects every acknowledgement or failure
    /// until the delivery timeout; to the topics of every audience, or of
    /// the audiences of `only`'s targets.
    async fn produce_all(&self, batch: &[ChangeEnvelope], only: Option<&BTreeSet<String>>) -> Acknowledged {
        let deadline = tokio::time::Instant::now() + self.config.delivery_timeout;
        let types: BTreeSet<DataType> = batch.iter().map(|c| c.data_type).collect();
        let audiences: BTreeMap<DataType, Vec<(String, &FieldScope)>> = types.into_iter().map(|t| (t, self.audiences(t, only))).collect();
        let mut in_flight = FuturesUnordered::new();
        let mut acknowledged = Acknowledged::default();
        // Each change once per audience; iterated, not collected, so nothing grows with the batch.
        for change in batch {
            for (topic, fields) in &audiences[&change.data_type] {
                let (topic, fields) = (topic.as_str(), *fields);
                acknowledged.records += 1;
                // The hub's payloads are canonical: no need to parse each record to drop its fields.
                let payload = match fields.apply_to_canonical(change) {
                    Ok(scoped) => scoped.to_json(),
                    Err(e) => {
                        acknowledged.fail(format!("could not leave out the fields {topic} goes without: {e}"), 1);
                        continue;
                    }
                };
                loop {
                    if in_flight.len() < self.max_in_flight {
                        let record = FutureRecord::to(topic).key(change.key.as_bytes()).payload(payload.as_bytes());
                        match self.producer.send_result(record) {
                            Ok(delivery) => {
                                in_flight.push(async move { (topic, delivery.await) });
                                break;
                            }
                            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
                            Err((e, _)) => {
                                acknowledged.fail(format!("could not queue the record: {e}"), 1);
                                break;
                            }
                        }
                    }
                    // Back-pressure (the limit, or a full producer queue): let one delivery finish before queueing more.
                    match tokio::time::timeout_at(deadline, in_flight.next()).await {
                        Ok(Some((t, result))) => acknowledged.settle(t, result),
                        Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                        Err(_) => {
                            acknowledged.fail("the producer queue stayed full until the deadline".into(), 1);
                            break;
                        }
                    }
                }
            }
        }
        loop {
            match tokio::time::timeout_at(deadline + std::time::Duration::from_secs(1), in_flight.next()).await {
                Ok(Some((t, result))) => acknowledged.settle(t, result),
                Ok(None) => break,
                Err(_) => {
                    acknowledged.fail("no acknowledgement from the broker before the deadline".into(), in_flight.len() as u64);
                    break;
                }
            }
        }
        acknowledged
    }

    /// The topics a change of `data_type` goes to, each with the fields
    /// its audience goes without: one per distinct field scope among the
    /// targets that receive it (the full topic alone without targets), or
    /// among `only`'s targets (then none without them).
    fn audiences(&self, data_type: DataType, only: Option<&BTreeSet<String>>) -> Vec<(String, &FieldScope)> {
        static FULL: std::sync::OnceLock<FieldScope> = std::sync::OnceLock::new();
        let full = FULL.get_or_init(FieldScope::full);
        let mut topics: BTreeMap<String, &FieldScope> = BTreeMap::new();
        let chosen = self.targets.iter().filter(|(name, _)| only.is_none_or(|only| only.contains(*name)));
        for (_, target) in chosen.filter(|(_, t)| t.data_types.contains(&data_type)) {
            topics.entry(self.config.topic_for(data_type, &target.fields)).or_insert(&target.fields);
        }
        if topics.is_empty() && only.is_none() {
            topics.insert(self.config.topic_for(data_type, full), full);
        }
        topics.into_iter().collect()
    }

    /// The topic `target` reads `data_type` from.
    fn topic_of(&self, target: &KafkaTarget, data_type: DataType) -> String {
        self.config.topic_for(data_type, &target.fields)
    }

    /// The receipt when the broker acknowledged everything, else what it did
    /// acknowledge and, for each target `addressed`, why the rest is missing.
    fn outcome(&self, acknowledged: Acknowledged, addressed: &[String]) -> Result<Receipt, PropagateError> {
        let records = acknowledged.records;
        if acknowledged.failures.is_empty() {
            tracing::debug!(records, "kafka propagation acknowledged");
            return Ok(self.receipt(&acknowledged.offsets));
        }
        let unacknowledged: u64 = acknowledged.failures.values().sum();
        let cause = acknowledged.failures.iter().map(|(c, n)| format!("{n} record(s): {c}")).collect::<Vec<_>>().join("; ");
        tracing::warn!(unacknowledged, brokers = %self.config.brokers, "kafka propagation incomplete");
        let cause = format!("{unacknowledged} of {records} records not acknowledged by {}: {cause}", self.config.brokers);
        Err(PropagateError::incomplete(self.delivered(&acknowledged.offsets), failed(addressed, &cause, true)))
    }

    /// What the broker holds of a batch acknowledged at `offsets`, per
    /// target and data type; with no target registered, under `kafka`.
    fn delivered(&self, offsets: &TopicOffsets) -> PropagationReport {
        let mut delivered = PropagationReport::default();
        let records = |topic: &str| offsets.get(topic).map(|partitions| partitions.values().map(|(_, n)| n).sum::<u64>());
        if self.targets.is_empty() {
            for topic in offsets.keys() {
                let data_type = self.config.data_type_of(topic).expect("every topic produced to is a data type's");
                delivered.add(BROKER, data_type, records(topic).unwrap_or(0));
            }
        }
        for (name, target) in &self.targets {
            target.data_types.iter().filter_map(|t| Some((t, records(&self.topic_of(target, *t))?))).for_each(|(t, n)| delivered.add(name, *t, n));
        }
        delivered
    }

    /// The receipt of a batch the broker acknowledged at `offsets`: it waits
    /// until each target's group committed past them on its topics (nothing
    /// to wait for without targets).
    fn receipt(&self, offsets: &TopicOffsets) -> Receipt {
        let delivered = self.delivered(offsets);
        let mut goals = vec![];
        for (name, target) in &self.targets {
            for t in &target.data_types {
                let topic = self.topic_of(target, *t);
                let Some(partitions) = offsets.get(&topic) else { continue };
                let group = self.config.group(name);
                goals.extend(partitions.iter().map(|(p, (last, n))| AppliedOffsets::new(name, &group, *t, &topic, *p, *last, *n)));
            }
        }
        match &self.monitor {
            Some(monitor) if !goals.is_empty() => Receipt::awaiting(delivered, Arc::new(monitor.confirmation(goals))),
            _ => Receipt::applied_on_delivery(delivered),
        }
    }

    /// The producer's rdkafka settings: idempotent, `acks=all`, lz4, large
    /// batches, the delivery timeout; settings in [`KafkaConfig::extra`] win.
    ///
    /// `linger.ms` is 0: a real-time change leaves at once instead of
    /// waiting for company. A periodic run's burst still travels in large
    /// batches, filled while the first requests are in flight (the seed
    /// scenario measured the same with 2 ms of linger on one broker). A
    /// deployment that sends mostly large batches over slower links can
    /// set a linger of its own in [`KafkaConfig::extra`].
    pub fn client_config(config: &KafkaConfig) -> ClientConfig {
        let timeout_ms = config.delivery_timeout.as_millis().max(1000).to_string();
        let mut client = config.client_config();
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "0")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", &timeout_ms);
        // Again after the defaults above, so a deployer's own setting overrides them.
        for (k, v) in &config.extra {
            client.set(k, v);
        }
        client
    }

    /// Waits until every record handed to the producer was delivered or failed.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

#[async_trait]
impl Propagator for KafkaPropagator {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        let addressed = self.addressed(batch, None);
        self.refuse_sensitive(batch, &addressed)?;
        let acknowledged = self.produce_all(batch, None).await;
        self.outcome(acknowledged, &addressed)
    }

    /// Publishes to the topics the named targets read: every target
    /// reading one of them receives it too, and the receipt names them all.
    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        let addressed = self.addressed(batch, Some(targets));
        self.refuse_sensitive(batch, &addressed)?;
        let acknowledged = self.produce_all(batch, Some(targets)).await;
        self.outcome(acknowledged, &addressed)
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        self.targets.iter().map(|(name, t)| (name.clone(), t.data_types.clone())).collect()
    }

    fn field_scope(&self, target: &str) -> FieldScope {
        self.targets.get(target).map(|t| t.fields.clone()).unwrap_or_default()
    }
}

/// The same failure for each of `targets`.
fn failed(targets: &[String], cause: &str, retriable: bool) -> Vec<TargetFailure> {
    targets.iter().map(|target| TargetFailure { target: target.clone(), cause: cause.to_string(), retriable }).collect()
}

/// Per topic and partition, the highest acknowledged offset and how many
/// records were acknowledged there.
type TopicOffsets = BTreeMap<String, BTreeMap<i32, (i64, u64)>>;

/// What the broker acknowledged ([`TopicOffsets`]), and each failure's
/// cause with the records it hit.
#[derive(Default)]
struct Acknowledged {
    /// Records handed to the producer: one per change and audience.
    records: usize,
    offsets: TopicOffsets,
    failures: BTreeMap<String, u64>,
}

impl Acknowledged {
    fn settle(&mut self, topic: &str, result: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>) {
        match result {
            Ok(Ok(delivery)) => {
                if !self.offsets.contains_key(topic) {
                    self.offsets.insert(topic.to_string(), BTreeMap::new());
                }
                let partitions = self.offsets.get_mut(topic).expect("inserted above");
                let (last, count) = partitions.entry(delivery.partition).or_insert((-1, 0));
                *last = (*last).max(delivery.offset);
                *count += 1;
            }
            Ok(Err((e, _))) => self.fail(format!("delivery failed: {e}"), 1),
            Err(_) => self.fail("the producer was dropped before delivery".into(), 1),
        }
    }

    fn fail(&mut self, cause: String, records: u64) {
        *self.failures.entry(cause).or_default() += records;
    }
}
