//! The dead-letter topics: what a subscriber could not apply, read back for
//! an operator, and replayed to the data topics once the cause is fixed.
//!
//! A record lands in `<data topic>.dlq` with headers saying why
//! ([`DLQ_ERROR_HEADER`](crate::DLQ_ERROR_HEADER)), where from (`hr-source`:
//! topic/partition/offset) and which group gave up on it (`hr-group`).
//! [`read_dead_letters`] lists a topic's dead letters; [`replay_dead_letters`]
//! sends chosen ones to the topic of their envelope's data type, where every
//! subscriber applies them by the usual rule (a version older than what a
//! system holds changes nothing there).

use crate::{KafkaConfig, KafkaTransportError, DLQ_ERROR_HEADER};
use hr_core::{ChangeEnvelope, DataType};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// One record of a dead-letter topic.
#[derive(Clone)]
pub struct DeadLetter {
    /// The dead-letter topic it is in.
    pub topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The record key, as text.
    pub key: Option<String>,
    /// The data type its envelope names, when it decodes as one.
    pub data_type: Option<DataType>,
    /// The data type of the topic it was dead-lettered from.
    pub topic_data_type: DataType,
    /// Why the subscriber gave up on it.
    pub error: String,
    /// Where it was read from: `topic/partition/offset`.
    pub source: String,
    /// The consumer group that dead-lettered it.
    pub group: String,
    /// When it was dead-lettered (ms since the Unix epoch), if the broker says.
    pub timestamp_ms: Option<i64>,
    payload: Vec<u8>,
}

// The payload is a record (maybe someone's pay), and a compensation key names a person.
impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sensitive = self.topic_data_type.is_sensitive() || self.data_type.is_some_and(DataType::is_sensitive);
        let key = if sensitive { Some(hr_core::REDACTED) } else { self.key.as_deref() };
        f.debug_struct("DeadLetter")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("key", &key)
            .field("data_type", &self.data_type)
            .field("error", &self.error)
            .field("source", &self.source)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DeadLetter {
    /// The envelope it holds, if it decodes as one.
    pub fn envelope(&self) -> Option<ChangeEnvelope> {
        ChangeEnvelope::from_json(&self.payload).ok()
    }
}

/// The consumer group (after the topic prefix) that reads dead letters.
pub const DEAD_LETTER_READER: &str = "dead-letter-reader";

/// Every record in the dead-letter topics of `data_type` (those of every
/// topic the audience reads it from, each owner's master-data topic
/// included), topic by topic and partition by partition in offset order:
/// read from the start to the end each had when asked, waiting at most
/// `timeout` in all. Blocking: call it from a thread that may block
/// (`spawn_blocking` in async code).
pub fn read_dead_letters(config: &KafkaConfig, data_type: DataType, timeout: Duration) -> Result<Vec<DeadLetter>, KafkaTransportError> {
    let until = Instant::now() + timeout;
    let mut letters = vec![];
    for topic in config.topics_to_read(data_type) {
        letters.extend(read_topic(config, &format!("{topic}.dlq"), data_type, until)?);
    }
    Ok(letters)
}

fn read_topic(config: &KafkaConfig, topic: &str, data_type: DataType, until: Instant) -> Result<Vec<DeadLetter>, KafkaTransportError> {
    let timeout = until.saturating_duration_since(Instant::now());
    let failed = |detail: String| KafkaTransportError::DeadLetters { topic: topic.to_string(), detail };
    let consumer: BaseConsumer = config
        .client_config()
        .set("group.id", format!("{}{DEAD_LETTER_READER}", config.topic_prefix))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|source| KafkaTransportError::Client { role: "dead-letter reader", brokers: config.brokers.clone(), source })?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| failed(e.to_string()))?;
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    let mut ends = std::collections::BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout).map_err(|e| failed(e.to_string()))?;
        if high > low {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Offset(low)).map_err(|e| failed(e.to_string()))?;
        }
    }
    consumer.assign(&assignment).map_err(|e| failed(e.to_string()))?;
    let mut letters = vec![];
    while !ends.is_empty() {
        let left = until.checked_duration_since(Instant::now()).ok_or_else(|| failed("not read to its end in the time given".to_string()))?;
        let Some(message) = consumer.poll(left.min(Duration::from_millis(500))) else { continue };
        let message = message.map_err(|e| failed(e.to_string()))?;
        if ends.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            ends.remove(&message.partition());
        }
        letters.push(letter_of(&message, data_type));
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

fn letter_of(message: &rdkafka::message::BorrowedMessage<'_>, topic_data_type: DataType) -> DeadLetter {
    let header =
        |name: &str| message.headers().and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned()));
    let payload = message.payload().unwrap_or_default().to_vec();
    DeadLetter {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        data_type: ChangeEnvelope::from_json(&payload).ok().map(|e| e.data_type),
        topic_data_type,
        error: header(DLQ_ERROR_HEADER).unwrap_or_default(),
        source: header("hr-source").unwrap_or_default(),
        group: header("hr-group").unwrap_or_default(),
        timestamp_ms: message.timestamp().to_millis(),
        payload,
    }
}

/// Sends each of `letters` to the data topic of its envelope's data type
/// for `config`'s audience ([`KafkaConfig::fields`]), without the fields that
/// audience goes without, with its key, and returns how many were sent. A letter that does not
/// decode as an envelope cannot be replayed, nor can a sensitive one
/// (compensation) unless `config.allow_sensitive`: the call refuses the
/// whole list, naming it, and sends nothing.
pub async fn replay_dead_letters(config: &KafkaConfig, letters: &[&DeadLetter]) -> Result<usize, KafkaTransportError> {
    let mut sends = Vec::with_capacity(letters.len());
    for letter in letters {
        let envelope = letter.envelope().ok_or_else(|| KafkaTransportError::DeadLetters {
            topic: letter.topic.clone(),
            detail: format!(
                "dead letter at partition {} offset {} is not a change envelope ({}); it cannot be replayed",
                letter.partition, letter.offset, letter.error
            ),
        })?;
        if envelope.data_type.is_sensitive() && !config.allow_sensitive {
            return Err(KafkaTransportError::DeadLetters {
                topic: letter.topic.clone(),
                detail: format!(
                    "the dead letter at partition {} offset {} is {}, which this configuration does not send over Kafka (allow_sensitive is off)",
                    letter.partition, letter.offset, envelope.data_type
                ),
            });
        }
        // A letter from another audience's topic may carry fields this audience goes without.
        let scoped = config.fields.apply(&envelope).map_err(|e| KafkaTransportError::DeadLetters {
            topic: letter.topic.clone(),
            detail: format!("the dead letter at partition {} offset {} cannot be reduced to this audience's fields: {e}", letter.partition, letter.offset),
        })?;
        let payload = match scoped {
            std::borrow::Cow::Borrowed(_) => letter.payload.clone(),
            std::borrow::Cow::Owned(reduced) => reduced.to_json().into_bytes(),
        };
        sends.push((config.topic(envelope.data_type), payload, *letter));
    }
    let producer: FutureProducer = config
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|source| KafkaTransportError::Client { role: "dead-letter replay", brokers: config.brokers.clone(), source })?;
    for (topic, payload, letter) in &sends {
        let mut record = FutureRecord::to(topic).payload(payload);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| KafkaTransportError::DeadLetters {
            topic: letter.topic.clone(),
            detail: format!("replaying the dead letter at partition {} offset {} to {topic} failed: {e}", letter.partition, letter.offset),
        })?;
    }
    Ok(sends.len())
}
