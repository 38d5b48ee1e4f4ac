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
    /// The systems that publish master data, each on a topic of its own
    /// (`<master data topic>.from-<system>`), and the sets each owns. A
    /// subscriber reads those topics too and dead-letters a record of a set
    /// the topic's owner does not own, and a record of an owned set on the
    /// hub's topic: with topic ACLs, nobody can then write a set it does
    /// not own.
    pub owners: BTreeMap<String, Vec<String>>,
    /// The owner this client publishes master data as: its master-data
    /// topic is then its own (see [`owners`](Self::owners)).
    pub publishing_as: Option<String>,
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
            .field("owners", &self.owners)
            .field("publishing_as", &self.publishing_as)
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
            owners: BTreeMap::new(),
            publishing_as: None,
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
    ///
    /// A client [`publishing_as`](Self::publishing_as) an owner writes
    /// master data to that owner's topic, `<topic>.from-<owner>`.
    pub fn topic_for(&self, data_type: DataType, fields: &FieldScope) -> String {
        let topic = self.shared_topic_for(data_type, fields);
        match (&self.publishing_as, data_type) {
            (Some(owner), DataType::MasterData) => owner_topic(&topic, owner),
            _ => topic,
        }
    }

    fn shared_topic_for(&self, data_type: DataType, fields: &FieldScope) -> String {
        match fields.audience(data_type) {
            Some(audience) => format!("{}{}.{audience}", self.topic_prefix, data_type.as_str()),
            None => format!("{}{}", self.topic_prefix, data_type.as_str()),
        }
    }

    /// Every topic this client's audience reads `data_type` from: the
    /// hub's, and for master data each owner's (see [`owners`](Self::owners)).
    pub fn topics_to_read(&self, data_type: DataType) -> Vec<String> {
        let shared = self.shared_topic_for(data_type, &self.fields);
        let mut topics = vec![shared.clone()];
        if data_type == DataType::MasterData {
            topics.extend(self.owners.keys().map(|owner| owner_topic(&shared, owner)));
        }
        topics
    }

    /// Whether `change`, read from `topic`, came the way its set allows:
    /// on an owner's topic only sets that owner owns, on the hub's topic
    /// no owned set. `Err` says why not (for the dead letter).
    pub fn check_origin(&self, topic: &str, change: &hr_core::ChangeEnvelope) -> Result<(), String> {
        if change.data_type != DataType::MasterData || self.owners.is_empty() {
            return Ok(());
        }
        let set = change.key.split_once(':').map_or(change.key.as_str(), |(set, _)| set);
        let owner_of_set = self.owners.iter().find(|(_, sets)| sets.iter().any(|s| s == set)).map(|(owner, _)| owner.as_str());
        // Exactly an owner's topic of this audience: a suffix test would credit `z.from-erp`'s topic to erp.
        let shared = self.shared_topic_for(DataType::MasterData, &self.fields);
        let topic_owner = self.owners.keys().find(|owner| topic == owner_topic(&shared, owner)).map(String::as_str);
        match (topic_owner, owner_of_set) {
            (Some(writer), Some(owner)) if writer == owner => Ok(()),
            (Some(writer), _) => Err(format!("master-data set {set:?} is not one {writer} owns, but came on its topic {topic}")),
            (None, Some(owner)) => Err(format!("master-data set {set:?} is {owner}'s, but came on the hub's topic {topic}")),
            (None, None) => Ok(()),
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

/// The topic an owner publishes a shared topic's records on.
fn owner_topic(shared: &str, owner: &str) -> String {
    format!("{shared}.from-{owner}")
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
    fn an_owner_publishes_on_its_own_topic_and_only_its_sets_pass_there() {
        use hr_core::{ChangeEnvelope, MasterData};
        let owners = [("erp".to_string(), vec!["md.product".to_string()])].into();
        let reader = super::KafkaConfig { owners, ..super::KafkaConfig::new("b:9092") };
        assert_eq!(reader.topics_to_read(DataType::MasterData), ["hr.v1.master_data", "hr.v1.master_data.from-erp"]);
        assert_eq!(reader.topics_to_read(DataType::OrgUnit), ["hr.v1.org_unit"]);
        let erp = super::KafkaConfig { publishing_as: Some("erp".into()), ..reader.clone() };
        assert_eq!(erp.topic(DataType::MasterData), "hr.v1.master_data.from-erp");
        assert_eq!(erp.topic(DataType::OrgUnit), "hr.v1.org_unit");
        let change = |set: &str| {
            let md = MasterData { set: set.into(), code: "C1".into(), name: "n".into(), attributes: Default::default() };
            ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1, "x", &md).unwrap()
        };
        assert!(reader.check_origin("hr.v1.master_data.from-erp", &change("md.product")).is_ok());
        assert!(reader.check_origin("hr.v1.master_data", &change("md.category")).is_ok());
        let forged = reader.check_origin("hr.v1.master_data.from-erp", &change("md.category")).unwrap_err();
        assert!(forged.contains("not one erp owns"), "{forged}");
        let hub_forging = reader.check_origin("hr.v1.master_data", &change("md.product")).unwrap_err();
        assert!(hub_forging.contains("is erp's"), "{hub_forging}");
        // An owner whose name ends like another's topic is not that owner.
        let mut owners = reader.owners.clone();
        owners.insert("z.from-erp".into(), vec!["md.z".into()]);
        let tricky = super::KafkaConfig { owners, ..reader.clone() };
        assert!(tricky.check_origin("hr.v1.master_data.from-z.from-erp", &change("md.product")).is_err(), "z.from-erp published erp's set");
        assert!(tricky.check_origin("hr.v1.master_data.from-z.from-erp", &change("md.z")).is_ok());
    }

    #[test]
    fn debug_shows_setting_names_but_not_their_values() {
        let c = super::KafkaConfig::new("broker:9093").set("sasl.password", "hunter2-secret").set("sasl.username", "hub");
        let text = format!("{c:?}");
        assert!(text.contains("sasl.password") && !text.contains("hunter2-secret") && !text.contains("\"hub\""), "{text}");
    }
}
