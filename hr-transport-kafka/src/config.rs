use hr_core::{DataType, FieldScope};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::Duration;

/// How to reach Kafka and name topics.
///
/// `extra` passes librdkafka settings through unchanged: TLS
/// (`security.protocol=ssl`, `ssl.ca.location`, ...) and SASL
/// (`security.protocol=sasl_ssl`, `sasl.mechanism=SCRAM-SHA-512`,
/// `sasl.username`, `sasl.password`).
#[derive(Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic name prefix; a data type's topic is `<prefix><type>` (default `hr.v1.`).
    pub topic_prefix: String,
    /// Partitions of topics this library creates (default 6).
    pub partitions: i32,
    /// Replication factor of created topics (default 1, a single broker).
    pub replication: i32,
    /// How long `propagate` may take before it reports what is unacknowledged (default 30 s).
    pub delivery_timeout: Duration,
    /// Largest number of records a subscriber hands to its sink at once (default 2,000).
    pub max_batch: usize,
    /// Whether sensitive data types (compensation) may be published. Off by
    /// default: every consumer of a topic can read it, and a compacted topic
    /// keeps it, so [`KafkaPropagator`](crate::KafkaPropagator) refuses them.
    pub allow_sensitive: bool,
    /// The fields the system this client serves goes without. Its topics
    /// of those data types are its audience's (see [`topic_for`](Self::topic_for));
    /// the hub keeps every field and produces to every audience's topic.
    pub fields: FieldScope,
    /// librdkafka settings passed through to every client.
    pub extra: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passed-through settings may hold SASL passwords and key passwords.
        let extra: Vec<&String> = self.extra.keys().collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("allow_sensitive", &self.allow_sensitive)
            .field("fields", &self.fields)
            .field("extra_keys", &extra)
            .finish()
    }
}

impl KafkaConfig {
    /// Defaults for the given bootstrap servers.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic_prefix: "hr.v1.".into(),
            partitions: 6,
            replication: 1,
            delivery_timeout: Duration::from_secs(30),
            max_batch: 2_000,
            allow_sensitive: false,
            fields: FieldScope::full(),
            extra: BTreeMap::new(),
        }
    }

    /// Adds a librdkafka setting.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The topic of a data type this client reads or writes: its
    /// audience's, under [`fields`](Self::fields).
    pub fn topic(&self, data_type: DataType) -> String {
        self.topic_for(data_type, &self.fields)
    }

    /// The topic of a data type for an audience that goes without `fields`:
    /// `<prefix><type>` for the full records, `<prefix><type>.without-<field>-…`
    /// otherwise. Each consumer group reads only its audience's topic, and
    /// the full one can be closed to the others with topic ACLs.
    pub fn topic_for(&self, data_type: DataType, fields: &FieldScope) -> String {
        match fields.audience(data_type) {
            Some(audience) => format!("{}{}.{audience}", self.topic_prefix, data_type.as_str()),
            None => format!("{}{}", self.topic_prefix, data_type.as_str()),
        }
    }

    /// The consumer group of a target system: `<prefix><target>`.
    pub fn group(&self, target: &str) -> String {
        format!("{}{target}", self.topic_prefix)
    }

    /// The data type of a topic, if it is one of ours (an audience's or
    /// dead-letter topic included).
    pub fn data_type_of(&self, topic: &str) -> Option<DataType> {
        let name = topic.strip_prefix(&self.topic_prefix)?;
        name.split('.').next().and_then(|t| t.parse().ok())
    }

    /// The rdkafka configuration every client of ours starts from: the
    /// brokers plus the pass-through settings (TLS, SASL), for clients of
    /// your own on the same cluster.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use hr_core::{DataType, FieldScope};

    #[test]
    fn an_audience_has_its_own_topic_and_the_data_type_is_read_back_from_it() {
        let scope = FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).unwrap();
        let config = super::KafkaConfig { fields: scope, ..super::KafkaConfig::new("b:9092") };
        assert_eq!(config.topic(DataType::Employee), "hr.v1.employee.without-birth_date-phone");
        assert_eq!(config.topic(DataType::OrgUnit), "hr.v1.org_unit");
        assert_eq!(config.topic_for(DataType::Employee, &FieldScope::full()), "hr.v1.employee");
        for topic in ["hr.v1.employee", "hr.v1.employee.without-birth_date-phone", "hr.v1.employee.dlq"] {
            assert_eq!(config.data_type_of(topic), Some(DataType::Employee), "{topic}");
        }
        assert_eq!(config.data_type_of("other.employee"), None);
    }

    #[test]
    fn debug_shows_setting_names_but_not_their_values() {
        let c = super::KafkaConfig::new("broker:9093").set("sasl.password", "hunter2-secret").set("sasl.username", "hub");
        let text = format!("{c:?}");
        assert!(text.contains("sasl.password") && !text.contains("hunter2-secret") && !text.contains("\"hub\""), "{text}");
    }
}
