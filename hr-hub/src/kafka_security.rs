//! `[kafka]`: how every program of a deployment (hub, system, publisher,
//! dead-letter tool) reaches the brokers, and the topic ACLs that give each
//! principal only what its role needs.
//!
//! The model: each program logs in as its own principal (`User:hub`,
//! `User:payroll`, ...), named with its password in environment variables
//! the file names, so one file serves every program and no secret is in it.
//! A broker address off loopback without TLS and SASL is refused unless
//! `allow_plaintext = true`: there anyone on the path reads the records
//! and can forge them.

use crate::config::{ConfigError, HubConfig};
use hr_core::DataType;
use hr_transport_kafka::{KafkaConfig, DEAD_LETTER_READER};
use serde::Deserialize;
use std::path::PathBuf;

/// `[kafka]` in the configuration file.
///
/// ```toml
/// [kafka]
/// security_protocol = "sasl_ssl"
/// sasl_mechanism = "SCRAM-SHA-512"
/// sasl_username_env = "HR_KAFKA_USER"       # each program's own principal
/// sasl_password_env = "HR_KAFKA_PASSWORD"
/// ca_file = "/etc/hr-sync/kafka-ca.pem"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a `sasl_*` protocol).
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// The principal's name, as written in the file.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// The environment variable holding the principal's name (instead of
    /// `sasl_username`, so one file serves programs of different principals).
    #[serde(default)]
    pub sasl_username_env: Option<String>,
    /// The environment variable holding the principal's password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require one.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of `certificate_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The environment variable holding the password of `key_file`, if encrypted.
    #[serde(default)]
    pub key_password_env: Option<String>,
    /// Lets a broker address off loopback be reached without TLS and SASL.
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// How a client talks to the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No encryption, no login: loopback only, unless `allow_plaintext`.
    #[default]
    Plaintext,
    /// TLS, no login (or a client certificate).
    Ssl,
    /// SASL login without encryption: the password is protected (SCRAM), the records are not.
    SaslPlaintext,
    /// TLS and SASL login.
    SaslSsl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// The password itself crosses the connection: only over TLS.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Whether every address of a `host:port[,host:port...]` list is a
/// loopback one (an empty list is not). An IPv6 address needs brackets, as
/// librdkafka reads `::1:9092` as a host without a port.
fn all_loopback(brokers: &str) -> bool {
    let brokers: Vec<&str> = brokers.split(',').map(str::trim).filter(|b| !b.is_empty()).collect();
    !brokers.is_empty()
        && brokers.iter().all(|broker| {
            let host = match broker.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or(rest),
                None if broker.matches(':').count() > 1 => return false,
                None => broker.rsplit_once(':').map_or(*broker, |(host, _)| host),
            };
            host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
}

impl HubConfig {
    /// The Kafka client settings of this deployment for `brokers`: the
    /// topic prefix and `[kafka]`'s security, with the secrets read from the
    /// environment variables it names. Refuses, naming `[kafka]`'s line, a
    /// broker off loopback without TLS and SASL (unless `allow_plaintext`),
    /// PLAIN without TLS, and a SASL protocol without a mechanism or
    /// credentials.
    ///
    /// ```
    /// use hr_hub::HubConfig;
    /// let plain = HubConfig::from_toml_str("[routes]\n", "hub.toml").unwrap();
    /// assert!(plain.kafka("127.0.0.1:9092").is_ok());
    /// let err = plain.kafka("kafka.internal:9092").unwrap_err().to_string();
    /// assert!(err.contains("kafka.internal:9092") && err.contains("allow_plaintext"), "{err}");
    /// ```
    pub fn kafka(&self, brokers: &str) -> Result<KafkaConfig, ConfigError> {
        let settings = &self.kafka;
        let refuse = |message: String| ConfigError::Parse { path: self.shown_path(), line: self.origin.kafka_line(), message };
        let protocol = settings.security_protocol;
        if !protocol.uses_tls() && !settings.allow_plaintext && !all_loopback(brokers) {
            return Err(refuse(format!(
                "[kafka]: the brokers {brokers} are not on loopback and security_protocol {} has no TLS, so anyone on the path reads every \
                 record (and without SASL can forge them); set security_protocol = \"sasl_ssl\" (with sasl_mechanism and credentials), or allow_plaintext = true",
                protocol.as_librdkafka()
            )));
        }
        let mut kafka = KafkaConfig::new(brokers);
        kafka.topic_prefix = self.topic_prefix.clone();
        kafka.owners = self.owners_by_system();
        if protocol == SecurityProtocol::Plaintext {
            return Ok(kafka);
        }
        kafka = kafka.set("security.protocol", protocol.as_librdkafka());
        if protocol.uses_sasl() {
            let mechanism =
                settings.sasl_mechanism.ok_or_else(|| refuse(format!("[kafka]: security_protocol {} needs sasl_mechanism", protocol.as_librdkafka())))?;
            if mechanism == SaslMechanism::Plain && !protocol.uses_tls() {
                return Err(refuse("[kafka]: sasl_mechanism PLAIN sends the password itself, so it needs security_protocol = \"sasl_ssl\"".into()));
            }
            let username = match (&settings.sasl_username, &settings.sasl_username_env) {
                (Some(name), None) => name.clone(),
                (None, Some(var)) => environment(var, "the Kafka principal's name").map_err(refuse)?,
                _ => return Err(refuse("[kafka]: set one of sasl_username and sasl_username_env".into())),
            };
            let var = settings.sasl_password_env.as_ref().ok_or_else(|| refuse("[kafka]: a SASL login needs sasl_password_env".into()))?;
            let password = environment(var, "the Kafka principal's password").map_err(refuse)?;
            kafka = kafka.set("sasl.mechanism", mechanism.as_str()).set("sasl.username", &username).set("sasl.password", &password);
        }
        for (key, file) in
            [("ssl.ca.location", &settings.ca_file), ("ssl.certificate.location", &settings.certificate_file), ("ssl.key.location", &settings.key_file)]
        {
            if let Some(file) = file {
                if !file.is_file() {
                    return Err(refuse(format!("[kafka]: {} is not a readable file", file.display())));
                }
                kafka = kafka.set(key, &file.display().to_string());
            }
        }
        if let Some(var) = &settings.key_password_env {
            kafka = kafka.set("ssl.key.password", &environment(var, "the password of key_file").map_err(refuse)?);
        }
        Ok(kafka)
    }

    /// The topic ACLs of this deployment, per principal (the hub's is
    /// `hub_principal`; each system's is its name): what each role needs
    /// and nothing else. See [`KafkaAcl`].
    pub fn kafka_acls(&self, hub_principal: &str) -> Vec<KafkaAcl> {
        let prefix = &self.topic_prefix;
        let kafka = &KafkaConfig { topic_prefix: prefix.clone(), owners: self.owners_by_system(), ..KafkaConfig::new("") };
        let kafka_types = self.policy().data_types_via("kafka");
        let hub = format!("User:{hub_principal}");
        // The hub creates every topic under the prefix and reads the groups' committed offsets to confirm delivery;
        // it writes only its own data topics (an owner's master-data topic is the owner's alone), and reads the
        // dead-letter topics for `dead_letters`, which runs as the hub.
        let mut acls = vec![
            KafkaAcl::prefixed(&hub, AclOperation::Create, AclResource::Topic, prefix),
            KafkaAcl::prefixed(&hub, AclOperation::Describe, AclResource::Topic, prefix),
            KafkaAcl::prefixed(&hub, AclOperation::Describe, AclResource::Group, prefix),
            KafkaAcl::literal(&hub, AclOperation::Read, AclResource::Group, &format!("{prefix}{DEAD_LETTER_READER}")),
        ];
        for audience in self.kafka_audiences(kafka) {
            for data_type in &kafka_types {
                acls.push(KafkaAcl::literal(&hub, AclOperation::Write, AclResource::Topic, &audience.topic(*data_type)));
                for topic in audience.topics_to_read(*data_type) {
                    acls.push(KafkaAcl::literal(&hub, AclOperation::Read, AclResource::Topic, &format!("{topic}.dlq")));
                }
            }
        }
        let owners = self.owned_sets();
        for (name, target) in &self.targets {
            let principal = format!("User:{name}");
            let audience = KafkaConfig { fields: target.omit.clone(), ..kafka.clone() };
            let types = self.kafka_types_of(name);
            // Its audience's topics only (a system without phone numbers cannot read the full employee topic), each owner's master data included.
            for topic in types.iter().flat_map(|t| audience.topics_to_read(*t)) {
                acls.push(KafkaAcl::literal(&principal, AclOperation::Write, AclResource::Topic, &format!("{topic}.dlq")));
                acls.push(KafkaAcl::literal(&principal, AclOperation::Read, AclResource::Topic, &topic));
            }
            if !types.is_empty() {
                acls.push(KafkaAcl::literal(&principal, AclOperation::Read, AclResource::Group, &kafka.group(name)));
            }
            if owners.values().any(|owner| owner == name) && kafka_types.contains(&DataType::MasterData) {
                // A publisher writes its own master-data topic of every audience and confirms that every group applied it.
                for audience in self.kafka_audiences(kafka) {
                    let publishing = KafkaConfig { publishing_as: Some(name.clone()), ..audience };
                    acls.push(KafkaAcl::literal(&principal, AclOperation::Write, AclResource::Topic, &publishing.topic(DataType::MasterData)));
                }
                acls.push(KafkaAcl::prefixed(&principal, AclOperation::Describe, AclResource::Group, prefix));
            }
        }
        acls.sort();
        acls.dedup();
        acls
    }
}

fn environment(var: &str, what: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("[kafka]: environment variable {var} ({what}) is not set")),
    }
}

/// One allow rule: `principal` may do `operation` on the resources named
/// `name` (exactly, or every name starting with it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KafkaAcl {
    /// `User:<name>`.
    pub principal: String,
    /// What it may do.
    pub operation: AclOperation,
    /// Topic or consumer group.
    pub resource: AclResource,
    /// Whether `name` is a prefix.
    pub prefixed: bool,
    /// The topic or group name (or prefix).
    pub name: String,
}

/// An operation an ACL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AclOperation {
    /// Consume (topics) or join and commit (groups).
    Read,
    /// Produce.
    Write,
    /// Create topics.
    Create,
    /// See metadata, offsets, committed offsets.
    Describe,
}

/// The kind of resource an ACL is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AclResource {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
}

impl KafkaAcl {
    fn literal(principal: &str, operation: AclOperation, resource: AclResource, name: &str) -> Self {
        KafkaAcl { principal: principal.into(), operation, resource, prefixed: false, name: name.into() }
    }

    fn prefixed(principal: &str, operation: AclOperation, resource: AclResource, name: &str) -> Self {
        KafkaAcl { prefixed: true, ..Self::literal(principal, operation, resource, name) }
    }
}

/// `acls` as arguments of Kafka's `kafka-acls.sh` (or `kafka.admin.AclCommand`):
/// one `--add` per principal, operation and kind of resource, naming
/// every resource it applies to, so a deployment's ACLs take a few calls.
///
/// ```
/// let acls = hr_hub::HubConfig::default().kafka_acls("hub");
/// let commands = hr_hub::acl_commands(&acls);
/// assert!(commands.len() < acls.len());
/// assert!(commands.iter().all(|args| args[0] == "--add" && args.contains(&"--allow-principal".to_string())));
/// ```
pub fn acl_commands(acls: &[KafkaAcl]) -> Vec<Vec<String>> {
    let mut grouped: std::collections::BTreeMap<(&str, AclOperation, AclResource, bool), Vec<&str>> = Default::default();
    for acl in acls {
        grouped.entry((&acl.principal, acl.operation, acl.resource, acl.prefixed)).or_default().push(&acl.name);
    }
    grouped
        .into_iter()
        .map(|((principal, operation, resource, prefixed), names)| {
            let flag = match resource {
                AclResource::Topic => "--topic",
                AclResource::Group => "--group",
            };
            let mut args = vec!["--add".to_string(), "--allow-principal".into(), principal.into(), "--operation".into(), format!("{operation:?}")];
            args.extend(["--resource-pattern-type".to_string(), if prefixed { "prefixed" } else { "literal" }.into()]);
            for name in names {
                args.extend([flag.to_string(), name.to_string()]);
            }
            args
        })
        .collect()
}

impl std::fmt::Display for KafkaAcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pattern = if self.prefixed { "*" } else { "" };
        write!(f, "{} may {:?} {:?} {}{pattern}", self.principal, self.operation, self.resource, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_told_from_the_rest() {
        for local in ["127.0.0.1:9092", "localhost:9092", "[::1]:9092", "127.0.0.1:9092,127.0.0.2:9093"] {
            assert!(all_loopback(local), "{local}");
        }
        for remote in ["kafka:9092", "10.0.0.5:9092", "127.0.0.1:9092,kafka:9092", "[2001:db8::1]:9092", "::1:9092", "", " , "] {
            assert!(!all_loopback(remote), "{remote}");
        }
    }

    const SECURE: &str = "[routes]\n\n[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username_env = \"HR_TEST_KAFKA_USER\"\nsasl_password_env = \"HR_TEST_KAFKA_PASSWORD\"\n";

    #[test]
    fn sasl_settings_reach_the_client_with_secrets_from_the_environment_and_missing_ones_name_the_line() {
        let config = HubConfig::from_toml_str(SECURE, "hub.toml").unwrap();
        std::env::remove_var("HR_TEST_KAFKA_USER");
        let err = config.kafka("kafka.internal:9093").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml, line 3:") && err.contains("HR_TEST_KAFKA_USER"), "{err}");
        std::env::set_var("HR_TEST_KAFKA_USER", "erp");
        std::env::set_var("HR_TEST_KAFKA_PASSWORD", "pw-of-erp-0123");
        let kafka = config.kafka("kafka.internal:9093").unwrap();
        let settings = kafka.client_config();
        assert_eq!(settings.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(settings.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(settings.get("sasl.username"), Some("erp"));
        assert_eq!(settings.get("sasl.password"), Some("pw-of-erp-0123"));
        assert!(!format!("{kafka:?}").contains("pw-of-erp-0123"));
    }

    #[test]
    fn plain_without_tls_and_plaintext_off_loopback_are_refused_unless_allowed() {
        // Variables of its own: tests run in parallel, and the test above removes its user variable.
        let secure = SECURE.replace("HR_TEST_KAFKA_", "HR_TEST_PLAIN_KAFKA_");
        let plain = secure.replace("sasl_ssl", "sasl_plaintext").replace("SCRAM-SHA-512", "PLAIN");
        let err = HubConfig::from_toml_str(&plain, "hub.toml").unwrap().kafka("127.0.0.1:9092").unwrap_err().to_string();
        assert!(err.contains("PLAIN") && err.contains("sasl_ssl"), "{err}");
        std::env::set_var("HR_TEST_PLAIN_KAFKA_USER", "erp");
        std::env::set_var("HR_TEST_PLAIN_KAFKA_PASSWORD", "pw-of-erp-0123");
        let scram_in_clear = secure.replace("sasl_ssl", "sasl_plaintext");
        let err = HubConfig::from_toml_str(&scram_in_clear, "hub.toml").unwrap().kafka("kafka.internal:9092").unwrap_err().to_string();
        assert!(err.contains("no TLS"), "{err}");
        let open = HubConfig::from_toml_str("[routes]\n[kafka]\nallow_plaintext = true\n", "hub.toml").unwrap();
        assert!(open.kafka("kafka.internal:9092").is_ok());
        let closed = HubConfig::from_toml_str("[routes]\n[kafka]\nallow_plaintext = false\n", "hub.toml").unwrap();
        let err = closed.kafka("kafka.internal:9092").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml, line 2:"), "{err}");
        // Without a [kafka] table there is no line to name: the message says what to add.
        let err = HubConfig::from_toml_str("[routes]\n", "hub.toml").unwrap().kafka("kafka.internal:9092").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml: [kafka]:") && err.contains("allow_plaintext"), "{err}");
    }

    #[test]
    fn each_system_reads_only_its_audiences_topics_and_its_group() {
        let config = HubConfig::default();
        let acls = config.kafka_acls("hub");
        let reads = |who: &str| -> Vec<String> {
            acls.iter()
                .filter(|a| a.principal == format!("User:{who}") && a.operation == AclOperation::Read && a.resource == AclResource::Topic)
                .map(|a| a.name.clone())
                .collect()
        };
        assert!(reads("payroll").contains(&"hr.v1.employee".to_string()), "{:?}", reads("payroll"));
        for other in ["orgchart", "erp"] {
            assert!(!reads(other).contains(&"hr.v1.employee".to_string()), "{other} may read the full employee topic");
            assert!(reads(other).iter().any(|t| t.starts_with("hr.v1.employee.without-")), "{other}: {:?}", reads(other));
        }
        // Only the hub writes the data topics; erp, an owner, writes master data only.
        let writes: Vec<&KafkaAcl> =
            acls.iter().filter(|a| a.operation == AclOperation::Write && !a.principal.ends_with(":hub") && !a.name.ends_with(".dlq")).collect();
        assert!(writes.iter().all(|a| a.principal == "User:erp" && a.name.starts_with("hr.v1.master_data")), "{writes:?}");
        let hub_writes: Vec<&str> = acls.iter().filter(|a| a.principal == "User:hub" && a.operation == AclOperation::Write).map(|a| a.name.as_str()).collect();
        assert!(hub_writes.contains(&"hr.v1.employee") && hub_writes.contains(&"hr.v1.master_data"), "{hub_writes:?}");
        assert!(!hub_writes.iter().any(|t| t.contains(".from-")), "the hub may write an owner's topic: {hub_writes:?}");
    }
}
