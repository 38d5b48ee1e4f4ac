use crate::{KafkaConfig, KafkaTransportError};
use futures::FutureExt;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, KeptLetter, Sink, SinkError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Header of a dead letter sent without its payload (too large for the
/// dead-letter topic): the payload's size in bytes.
pub const DLQ_PAYLOAD_BYTES_HEADER: &str = "hr-payload-bytes";

/// Header of a dead-lettered record that says why it was rejected.
pub const DLQ_ERROR_HEADER: &str = "hr-error";

/// What a subscriber did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Per data type: applied and stale (duplicate or outdated) changes.
    pub applied: BTreeMap<DataType, ApplyOutcome>,
    /// Records sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Sink calls retried after a transient failure.
    pub retries: u64,
}

struct GroupContext {
    group: String,
}

impl ClientContext for GroupContext {
    /// librdkafka's statistics, every `statistics.interval.ms`: each
    /// assigned partition's lag behind the committed offset (what the sink
    /// applied) as the gauge `hr_consumer_lag{group,topic,partition}`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, partitions) in &statistics.topics {
            // Partition -1 is librdkafka's internal queue; a lag of -1 means not known yet.
            for (id, partition) in partitions.partitions.iter().filter(|(id, p)| **id >= 0 && p.consumer_lag >= 0) {
                self.report_lag(topic, *id, partition.consumer_lag as f64);
            }
        }
    }
}

impl GroupContext {
    fn report_lag(&self, topic: &str, partition: i32, lag: f64) {
        let labels = [("group", self.group.clone()), ("topic", topic.to_string()), ("partition", partition.to_string())];
        metrics::gauge!("hr_consumer_lag", &labels).set(lag);
    }

    /// Reports 0 for partitions this member gives up. Their statistics stop
    /// here, so the last lag would otherwise stand forever and keep an alert
    /// firing for a partition this process no longer reads; the new owner
    /// reports its own.
    fn forget_lag(&self, revoked: &TopicPartitionList) {
        for p in revoked.elements() {
            self.report_lag(p.topic(), p.partition(), 0.0);
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // With enable.auto.commit, librdkafka commits the stored offsets of
        // revoked partitions before giving them up; stored offsets only ever
        // cover applied records.
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(group = %self.group, partitions = tpl.count(), "partitions revoked");
            self.forget_lag(tpl);
        }
    }
    fn post_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Feeds one target system's [`Sink`] from Kafka.
///
/// The consumer group is the system's name. Records are decoded and
/// validated; valid ones go to the sink in batches (up to
/// [`KafkaConfig::max_batch`]); their offsets are stored only after the sink
/// applied them and committed in the background, on rebalance and at
/// shutdown. Records that cannot be decoded or validated go to
/// `<topic>.dlq` with the reason in the [`DLQ_ERROR_HEADER`] header.
/// Transient sink errors are retried with backoff, never skipped.
pub struct KafkaSubscriber {
    group: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), KafkaTransportError>>,
    stats: Arc<Mutex<SubscriberStats>>,
}

impl KafkaSubscriber {
    /// Subscribes `group` to the topics of `data_types` and starts applying to `sink`.
    pub fn start(config: &KafkaConfig, group: &str, data_types: &[DataType], sink: Arc<dyn Sink>) -> Result<Self, KafkaTransportError> {
        let consumer: StreamConsumer<GroupContext> = config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "100")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "10")
            .set("statistics.interval.ms", "1000")
            // A group that subscribed before its topics were visible (just created, or the broker
            // still loading after a start) sees them at the next metadata refresh: within 10 s,
            // not librdkafka's default 5 minutes (a first demo right after the broker started
            // waited exactly that long).
            .set("topic.metadata.refresh.interval.ms", "10000")
            .create_with_context(GroupContext { group: group.to_string() })
            .map_err(|source| KafkaTransportError::Client { role: "consumer", brokers: config.brokers.clone(), source })?;
        let topics: Vec<String> = data_types.iter().flat_map(|t| config.topics_to_read(*t)).collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).map_err(|source| KafkaTransportError::Subscribe { group: group.into(), topics: topics.clone(), source })?;
        let dlq: FutureProducer = config
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|source| KafkaTransportError::Client { role: "dead-letter producer", brokers: config.brokers.clone(), source })?;
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::new(Mutex::new(SubscriberStats::default()));
        let worker = Worker { consumer, dlq, sink, config: config.clone(), group: group.to_string(), stats: stats.clone() };
        let task = tokio::spawn(worker.run(stopped));
        Ok(KafkaSubscriber { group: group.to_string(), stop, task, stats })
    }

    /// Sets `group`'s committed offsets on the topics of `data_types` back to
    /// the start of each partition, so its next subscriber reads every
    /// record the topics still hold. For a system whose store was lost or is
    /// new under an old name: the topics are compacted, so they hold the
    /// latest change of every key, and the sink's version rule makes
    /// re-reading harmless. A group that never committed is left alone (it
    /// starts from the beginning anyway). Blocking; no subscriber of the
    /// group may run. Transient broker errors (a topic just created, a
    /// coordinator loading) are retried for up to 30 s.
    pub fn rewind(config: &KafkaConfig, group: &str, data_types: &[DataType]) -> Result<(), KafkaTransportError> {
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Self::rewind_once(config, group, data_types) {
                Err(e) if std::time::Instant::now() < give_up => {
                    tracing::debug!(group, error = %e, "rewinding the consumer group failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                outcome => return outcome,
            }
        }
    }

    fn rewind_once(config: &KafkaConfig, group: &str, data_types: &[DataType]) -> Result<(), KafkaTransportError> {
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|source| KafkaTransportError::Client { role: "consumer", brokers: config.brokers.clone(), source })?;
        let timeout = Duration::from_secs(10);
        let mut starts = TopicPartitionList::new();
        for topic in data_types.iter().flat_map(|t| config.topics_to_read(*t)) {
            let offsets_error = |source| KafkaTransportError::Offsets { group: group.into(), topic: topic.clone(), source };
            let metadata = consumer.fetch_metadata(Some(&topic), timeout).map_err(offsets_error)?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (low, _) = consumer.fetch_watermarks(&topic, partition.id(), timeout).map_err(offsets_error)?;
                starts.add_partition_offset(&topic, partition.id(), Offset::Offset(low)).map_err(offsets_error)?;
            }
        }
        let group_error = |source| KafkaTransportError::Offsets { group: group.into(), topic: "*".into(), source };
        let committed = consumer.committed_offsets(starts.clone(), timeout).map_err(group_error)?;
        if committed.elements().iter().all(|e| !matches!(e.offset(), Offset::Offset(_))) {
            return Ok(());
        }
        consumer.commit(&starts, CommitMode::Sync).map_err(group_error)?;
        tracing::info!(group, partitions = starts.count(), "consumer group rewound to the start of its topics");
        Ok(())
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// A copy of the statistics so far.
    pub fn stats(&self) -> SubscriberStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops after the batch in hand, commits stored offsets and leaves the group.
    pub async fn shutdown(self) -> Result<SubscriberStats, KafkaTransportError> {
        let _ = self.stop.send(true);
        let stats = self.stats.clone();
        match self.task.await {
            Ok(result) => result.map(|_| stats.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            Err(e) => Err(KafkaTransportError::Subscriber { group: self.group, detail: e.to_string() }),
        }
    }

    /// Ends the subscriber abruptly, as a crash would: nothing more is
    /// applied and no offsets are committed (tests of at-least-once delivery).
    pub fn kill(self) {
        self.task.abort();
    }
}

struct Worker {
    consumer: StreamConsumer<GroupContext>,
    dlq: FutureProducer,
    sink: Arc<dyn Sink>,
    config: KafkaConfig,
    group: String,
    stats: Arc<Mutex<SubscriberStats>>,
}

/// A record taken from Kafka, decoded or not.
struct Taken {
    topic: String,
    partition: i32,
    offset: i64,
    decoded: Result<ChangeEnvelope, String>,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
}

impl Worker {
    async fn run(self, mut stopped: watch::Receiver<bool>) -> Result<(), KafkaTransportError> {
        loop {
            if *stopped.borrow() {
                break;
            }
            let batch = tokio::select! {
                batch = self.next_batch() => batch,
                _ = stopped.changed() => break,
            };
            if batch.is_empty() {
                continue;
            }
            self.process(batch, &mut stopped).await;
        }
        // Commit what was applied before leaving, so a successor starts after it.
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // NoOffset: nothing stored since the last commit.
            if !matches!(e, rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(group = %self.group, error = %e, "final offset commit failed; records may be redelivered (harmless)");
            }
        }
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Waits for one record, then takes what else is ready, up to max_batch.
    async fn next_batch(&self) -> Vec<Taken> {
        let mut batch = Vec::new();
        match self.consumer.recv().await {
            Ok(m) => batch.push(take(&m)),
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "consume error; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return batch;
            }
        }
        let mut idle_polls = 0;
        while batch.len() < self.config.max_batch {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => {
                    batch.push(take(&m));
                    idle_polls = 0;
                }
                Some(Err(e)) => {
                    tracing::warn!(group = %self.group, error = %e, "consume error; applying the batch taken so far");
                    break;
                }
                // An event (a commit's result, statistics) takes a poll without
                // yielding a record: look again before calling the batch complete.
                None if idle_polls < 3 => idle_polls += 1,
                None => break,
            }
        }
        batch
    }

    async fn process(&self, batch: Vec<Taken>, stopped: &mut watch::Receiver<bool>) {
        let offsets = next_offsets(&batch);
        // Decoded envelopes per data type, each beside the record it came from.
        let mut by_type: BTreeMap<DataType, (Vec<ChangeEnvelope>, Vec<Taken>)> = BTreeMap::new();
        for mut taken in batch {
            match std::mem::replace(&mut taken.decoded, Err(String::new())) {
                Ok(c) if self.config.data_type_of(&taken.topic) == Some(c.data_type) => match self.config.check_origin(&taken.topic, &c) {
                    Ok(()) => {
                        let (changes, sources) = by_type.entry(c.data_type).or_default();
                        changes.push(c);
                        sources.push(taken);
                    }
                    Err(reason) => {
                        if !self.dead_letter(&taken, &reason, stopped).await {
                            return;
                        }
                    }
                },
                Ok(c) => {
                    if !self.dead_letter(&taken, &format!("envelope of {} on topic {}", c.data_type, taken.topic), stopped).await {
                        return; // stopping: nothing stored, so the batch is redelivered to whoever comes next
                    }
                }
                Err(reason) => {
                    if !self.dead_letter(&taken, &reason, stopped).await {
                        return;
                    }
                }
            }
        }
        for (data_type, (changes, sources)) in by_type {
            let Some(outcome) = self.apply_with_retry(changes, sources, stopped).await else {
                return; // stopping: nothing stored, so the batch is redelivered to whoever comes next
            };
            *self.stats.lock().unwrap_or_else(|p| p.into_inner()).applied.entry(data_type).or_default() += outcome;
        }
        // Applied (or dead-lettered): now, and only now, the offsets may be committed.
        if let Err(e) = self.consumer.store_offsets(&offsets) {
            // The partition was revoked meanwhile: its new owner re-applies (idempotent).
            tracing::info!(group = %self.group, error = %e, "offsets not stored (partition revoked?)");
        }
        // Commit now rather than at the next auto-commit tick: confirmation
        // of a real-time change waits for it. Auto-commit stays as a backstop.
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!(group = %self.group, error = %e, "asynchronous commit not started");
        }
    }

    /// Applies one data type's changes. The sink validates: a change it calls
    /// invalid is dead-lettered and the rest applied; a transient failure is
    /// retried with backoff until it succeeds or the subscriber stops (`None`).
    async fn apply_with_retry(&self, mut changes: Vec<ChangeEnvelope>, mut sources: Vec<Taken>, stopped: &mut watch::Receiver<bool>) -> Option<ApplyOutcome> {
        let mut backoff = Duration::from_millis(50);
        while !changes.is_empty() {
            match self.sink.apply(&changes).await {
                Ok(outcome) => return Some(outcome),
                Err(SinkError::Invalid { index, source }) if index < changes.len() => {
                    changes.remove(index);
                    let poison = sources.remove(index);
                    if !self.dead_letter(&poison, &source.to_string(), stopped).await {
                        return None;
                    }
                }
                Err(e) => {
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).retries += 1;
                    tracing::warn!(group = %self.group, error = %e, backoff_ms = backoff.as_millis() as u64, "sink unavailable; retrying the batch");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        Some(ApplyOutcome::default())
    }

    /// Sends `t` to its dead-letter topic; `false` if the subscriber was
    /// told to stop first (nothing is committed then, so the record comes
    /// back to whoever consumes next). A record the dead-letter topic cannot
    /// take whole (too large, or refused [`FULL_LETTER_ATTEMPTS`] times)
    /// goes without its payload: its key, where it was, its size and why.
    /// One the topic refuses even so [`BARE_LETTER_ATTEMPTS`] times for a
    /// reason that will not pass (an ACL, a size or policy limit; not a
    /// broker briefly away) is kept in the system's own store
    /// ([`Sink::keep_letter`]), so that the records after it still arrive;
    /// a sink that cannot keep it leaves the subscriber trying until stopped.
    async fn dead_letter(&self, t: &Taken, reason: &str, stopped: &mut watch::Receiver<bool>) -> bool {
        let topic = format!("{}.dlq", t.topic);
        // Bounded: a reason quotes nothing of the record, but its length is the sender's to choose.
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let source = format!("{}/{}/{}", t.topic, t.partition, t.offset);
        let size = t.payload.len().to_string();
        let mut with_payload = true;
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut headers = OwnedHeaders::new()
                .insert(Header { key: DLQ_ERROR_HEADER, value: Some(&reason) })
                .insert(Header { key: "hr-source", value: Some(&source) })
                .insert(Header { key: "hr-group", value: Some(&self.group) });
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&topic);
            if with_payload {
                record = record.payload(&t.payload);
            } else {
                headers = headers.insert(Header { key: DLQ_PAYLOAD_BYTES_HEADER, value: Some(&size) });
            }
            if let Some(k) = t.key.as_ref().filter(|k| with_payload || k.len() <= MAX_KEY_BYTES_WITHOUT_PAYLOAD) {
                record = record.key(k);
            }
            let sent = tokio::select! {
                sent = self.dlq.send(record.headers(headers), Duration::from_secs(10)) => sent,
                _ = stopped.changed() => return false,
            };
            let e = match sent {
                Ok(_) => break,
                Err((e, _)) => e,
            };
            attempts += 1;
            let too_large = matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::MessageSizeTooLarge));
            if with_payload && (too_large || attempts >= FULL_LETTER_ATTEMPTS) {
                tracing::warn!(group = %self.group, topic = %topic, error = %e, bytes = t.payload.len(), "dead letter not taken whole; sending it without its payload");
                metrics::counter!("hr_dead_letters_without_payload_total").increment(1);
                with_payload = false;
                attempts = 0;
                continue;
            }
            // Only a refusal that will not pass (an ACL, a size or policy limit): a broker briefly away is waited for.
            let lasting = matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                        | RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::PolicyViolation
                        | RDKafkaErrorCode::InvalidRecord
                        | RDKafkaErrorCode::InvalidTopic
                )
            );
            if !with_payload && lasting && attempts >= BARE_LETTER_ATTEMPTS && self.keep_locally(t, &reason, &topic, &e).await {
                return true;
            }
            // Never skip a poison record silently: keep trying until the DLQ has it, or until told to stop.
            tracing::warn!(group = %self.group, topic = %topic, error = %e, "dead-letter send failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped.changed() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::warn!(group = %self.group, topic = %t.topic, partition = t.partition, offset = t.offset, with_payload, "record dead-lettered");
        self.count_dead_letter(t);
        true
    }

    /// Keeps `t` in the sink's own store after its dead-letter topic
    /// refused it (`refused`); whether the sink kept it.
    async fn keep_locally(&self, t: &Taken, reason: &str, dlq: &str, refused: &rdkafka::error::KafkaError) -> bool {
        let letter = KeptLetter {
            source: format!("{}/{}/{}", t.topic, t.partition, t.offset),
            key: t.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            reason: reason.to_string(),
            payload: t.payload.clone(),
            kept_at: chrono::Utc::now(),
        };
        match self.sink.keep_letter(&letter).await {
            Ok(()) => {
                tracing::warn!(group = %self.group, topic = %t.topic, partition = t.partition, offset = t.offset, dead_letter_topic = %dlq, error = %refused,
                    "the dead-letter topic refuses this record; kept in the system's own store (dead_letters kept lists it)");
                metrics::counter!("hr_dead_letters_kept_locally_total").increment(1);
                self.count_dead_letter(t);
                true
            }
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "cannot keep the dead letter in the system's own store; retrying the dead-letter topic");
                false
            }
        }
    }

    fn count_dead_letter(&self, t: &Taken) {
        let data_type = self.config.data_type_of(&t.topic).map_or("unknown", DataType::as_str);
        metrics::counter!("hr_changes_dead_lettered_total", "data_type" => data_type).increment(1);
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).dead_lettered += 1;
    }
}

/// How many times a dead letter is offered whole before it goes without its payload.
const FULL_LETTER_ATTEMPTS: u32 = 3;

/// Refusals of a payload-less dead letter before it is kept in the system's own store instead.
const BARE_LETTER_ATTEMPTS: u32 = 5;

/// The longest reason a dead letter's header carries.
const MAX_REASON_CHARS: usize = 512;

/// The longest record key a dead letter without payload keeps (a longer one is left out too).
const MAX_KEY_BYTES_WITHOUT_PAYLOAD: usize = 1024;

/// The offset after the last record of each partition in the batch.
fn next_offsets(batch: &[Taken]) -> TopicPartitionList {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for t in batch {
        let e = next.entry((t.topic.as_str(), t.partition)).or_insert(0);
        *e = (*e).max(t.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        // Only fails for offsets librdkafka cannot represent, which Kafka never hands out.
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    tpl
}

fn take(m: &BorrowedMessage<'_>) -> Taken {
    let payload = m.payload().unwrap_or_default().to_vec();
    let decoded = if payload.is_empty() { Err("empty record value".to_string()) } else { ChangeEnvelope::from_json(&payload).map_err(|e| e.to_string()) };
    Taken { topic: m.topic().to_string(), partition: m.partition(), offset: m.offset(), decoded, payload, key: m.key().map(<[u8]>::to_vec) }
}

#[cfg(test)]
mod tests {
    use super::GroupContext;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use rdkafka::TopicPartitionList;

    #[test]
    fn a_revoked_partition_reports_no_lag_here_any_more() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let context = GroupContext { group: "hr-payroll".into() };
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("hr.employee", 2);
        metrics::with_local_recorder(&recorder, || {
            context.report_lag("hr.employee", 1, 7.0);
            context.report_lag("hr.employee", 2, 9.0);
            context.forget_lag(&revoked);
        });
        let mut lags: Vec<(String, f64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "hr_consumer_lag")
            .map(|(key, _, _, value)| {
                let partition = key.key().labels().find(|l| l.key() == "partition").map(|l| l.value().to_string()).unwrap_or_default();
                let DebugValue::Gauge(lag) = value else { panic!("hr_consumer_lag is a gauge") };
                (partition, lag.into_inner())
            })
            .collect();
        lags.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(lags, vec![("1".to_string(), 7.0), ("2".to_string(), 0.0)], "the partition still held keeps its lag");
    }
}
