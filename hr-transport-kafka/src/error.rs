use hr_core::DataType;

/// Errors of the Kafka transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaTransportError {
    /// A client could not be created from the configuration.
    #[error("cannot create Kafka {role} for brokers {brokers}: {source} (check bootstrap servers and the librdkafka settings passed through)")]
    Client {
        /// producer, consumer, admin.
        role: &'static str,
        /// The bootstrap servers.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Topic creation failed.
    #[error("cannot create topic {topic}: {detail}")]
    Topic {
        /// The topic.
        topic: String,
        /// Why.
        detail: String,
    },
    /// Subscribing failed.
    #[error("consumer group {group} cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        /// The group.
        group: String,
        /// The topics.
        topics: Vec<String>,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Offsets or watermarks could not be read.
    #[error("cannot read offsets of {topic} for group {group}: {source}")]
    Offsets {
        /// The group (or `-` for watermarks).
        group: String,
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Consumer groups did not catch up before the deadline.
    #[error("consumer groups still behind after {waited_ms} ms: {lag}")]
    NotCaughtUp {
        /// How long we waited.
        waited_ms: u128,
        /// Lag per group.
        lag: String,
    },
    /// The subscriber's task ended abnormally.
    #[error("subscriber for group {group} failed: {detail}")]
    Subscriber {
        /// The group.
        group: String,
        /// What happened.
        detail: String,
    },
    /// A dead-letter topic cannot be read, or a dead letter replayed.
    #[error("dead letters of {topic}: {detail}")]
    DeadLetters {
        /// The dead-letter topic.
        topic: String,
        /// What happened.
        detail: String,
    },
    /// The embedded mock cluster could not start.
    #[error("cannot start the embedded Kafka mock cluster: {0}")]
    Mock(String),
    /// A data type has no topic (never happens for known types).
    #[error("no topic for {0}")]
    NoTopic(DataType),
}
