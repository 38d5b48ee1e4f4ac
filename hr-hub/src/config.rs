//! The hub's configuration file: routing, targets (with where a separate
//! target process listens), the topic prefix and the mapping.

use hr_core::{DataType, FieldScope, Mapping, RoutingError, RoutingPolicy, TargetPolicy};
use hr_transport_kafka::KafkaConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration file (see `config/hr-sync.example.toml`).
///
/// ```
/// use hr_core::DataType;
/// use hr_hub::HubConfig;
/// let config = HubConfig::from_toml_str(r#"
///     [routes]
///     employee = "kafka"
///     compensation = "rest"
///     [targets.payroll]
///     data_types = ["employee", "compensation"]
///     url = "http://127.0.0.1:8081"
///     token_env = "HR_TOKEN_PAYROLL"
/// "#, "hub.toml").unwrap();
/// assert_eq!(config.policy().targets_for(DataType::Compensation), vec!["payroll"]);
/// assert_eq!(config.topic_prefix, "hr.v1.");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// data type -> propagator (`kafka` or `rest`).
    pub routes: BTreeMap<DataType, String>,
    /// target system -> what it receives and where it listens.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// Prefix of the Kafka topics and consumer groups (default `hr.v1.`).
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// A `mapping.toml` to use instead of the input directory's or the default.
    #[serde(default)]
    pub mapping: Option<PathBuf>,
    /// Lets sensitive data types (compensation) be routed over Kafka, where
    /// every consumer of the topic can read them. Off by default: such a
    /// route is refused when the hub starts.
    #[serde(default)]
    pub sensitive_on_kafka: bool,
    /// How much one run may change before a person approves it (`[safety]`).
    #[serde(default)]
    pub safety: crate::SafetyConfig,
    /// The hub API's callers (`[api.callers.<name>]`).
    #[serde(default)]
    pub api: ApiSettings,
    /// How every program reaches the brokers (`[kafka]`; see [`HubConfig::kafka`]).
    #[serde(default)]
    pub kafka: crate::KafkaSettings,
    /// A PEM CA the hub trusts for `https://` targets besides the system's
    /// roots (a private PKI).
    #[serde(default)]
    pub rest_ca_file: Option<PathBuf>,
    /// What a bad line in `permissions.jsonl` that names its employee,
    /// system and role (any text) does: `suspend` (default) revokes that person's grants on
    /// that system until a good line arrives (it may have been a
    /// revocation: access fails closed); `keep` leaves them as they were.
    #[serde(default)]
    pub on_bad_grant_line: BadGrantLine,
    /// Where the settings came from, so errors name the file and line
    /// (filled by [`from_toml_str`](Self::from_toml_str); empty when the
    /// configuration is built in code).
    #[serde(skip)]
    pub origin: ConfigOrigin,
}

/// The file a configuration was read from and the lines of its routes and targets.
#[derive(Debug, Clone, Default)]
pub struct ConfigOrigin {
    path: String,
    routes: BTreeMap<DataType, usize>,
    targets: BTreeMap<String, usize>,
    kafka: usize,
}

impl ConfigOrigin {
    /// The line of `[kafka]` (0 when the file has none).
    pub(crate) fn kafka_line(&self) -> usize {
        self.kafka
    }
}

/// The spans of the settings errors point at, read beside the configuration.
#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    routes: BTreeMap<DataType, toml::Spanned<String>>,
    #[serde(default)]
    targets: BTreeMap<toml::Spanned<String>, toml::Value>,
    #[serde(default)]
    kafka: Option<toml::Spanned<toml::Value>>,
}

/// What a bad grant line does (`on_bad_grant_line`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadGrantLine {
    /// Revoke the person's grants on the line's system until a good line arrives.
    #[default]
    Suspend,
    /// Leave them as they were.
    Keep,
}

/// One target system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The data types it may receive.
    pub data_types: Vec<DataType>,
    /// Base URL of its REST receiver (`hub` only; the demo starts its own).
    #[serde(default)]
    pub url: Option<String>,
    /// Name of the environment variable that holds its bearer token, so the
    /// token is in neither the file nor the command line.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Whether it receives every grant (an access-review tool) instead of
    /// only the grants for itself.
    #[serde(default)]
    pub all_grants: bool,
    /// The fields it goes without, per data type (`omit.employee =
    /// ["phone", "birth_date"]`): no path carries them to it.
    #[serde(default)]
    pub omit: FieldScope,
    /// The master-data sets this system owns and publishes to the others
    /// (for example `["md.product"]`); the hub never sends, deletes or
    /// repairs their records.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// The roles a grant for this system may carry (`roles = ["viewer",
    /// "approver"]`); a grant with any other is refused (400 over the API,
    /// left out and reported as `rejected` in a periodic run). Empty: any role.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Lets `url` be plain `http://` to a host that is not loopback, so its
    /// token and records cross the network in clear. Off: such a URL is a
    /// configuration error naming its line.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The transport everything it receives travels over, instead of each
    /// data type's route: `"scim"` for an identity directory (its `url` is
    /// then the SCIM base URL).
    #[serde(default)]
    pub transport: Option<String>,
    /// A directory (`transport = "scim"`) deletes leavers' Users instead of
    /// deactivating them.
    #[serde(default)]
    pub delete_leavers: bool,
    /// A directory (`transport = "scim"`) is sent changes in SCIM Bulk
    /// requests where it announces them (default); `false`: one request
    /// per change.
    #[serde(default = "default_true")]
    pub bulk: bool,
    /// Sends a person hired ahead this many days before their hire date,
    /// as `pre_hire` (without grants or pay, which wait for the day), where
    /// the others receive them on the day. Only for a target whose
    /// employees travel over `rest` or `scim`, which reach it alone.
    #[serde(default)]
    pub pre_start_days: Option<u32>,
}

fn default_true() -> bool {
    true
}

/// `[api]`: who may call the hub's API, each with a token of its own.
///
/// ```toml
/// [api.callers.hr-portal]
/// token_env = "HR_API_TOKEN_PORTAL"
/// may = ["permissions", "employees"]
///
/// [api.callers.hr-lead]
/// token_env = "HR_API_TOKEN_LEAD"
/// may = ["read", "approve", "review"]
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Callers by name (the audit log's and the changes' origin).
    #[serde(default)]
    pub callers: BTreeMap<String, CallerSettings>,
}

/// One caller of the hub API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerSettings {
    /// The environment variable holding its bearer token.
    pub token_env: String,
    /// What it may do: `permissions`, `employees`, `approve`, `review`, `read`.
    pub may: Vec<crate::CallerRight>,
}

fn default_prefix() -> String {
    "hr.v1.".into()
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("configuration {path}{}: {message}", at_line(*.line))]
    Parse {
        /// The file.
        path: String,
        /// 1-based line of the problem; 0 when the problem is a table or
        /// key the file lacks.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The mapping it names cannot be used.
    #[error(transparent)]
    Mapping(#[from] hr_core::MappingError),
    /// The routes cannot be carried out by the registered transports.
    #[error("configuration {path}, line {line}: {source}")]
    Routing {
        /// The file (`<default>` for the built-in configuration).
        path: String,
        /// 1-based line of the route or target concerned (0 if unknown).
        line: usize,
        /// What is wrong.
        source: RoutingError,
    },
    /// A sensitive data type is routed over Kafka without `sensitive_on_kafka = true`.
    #[error(
        "configuration {path}, line {line}: the route sends {data_type} over Kafka, where every consumer of the topic can read it; \
         route it over rest, or set sensitive_on_kafka = true"
    )]
    SensitiveOnKafka {
        /// The file.
        path: String,
        /// 1-based line of the route.
        line: usize,
        /// The data type.
        data_type: DataType,
    },
    /// An API caller cannot be configured (its token variable unset, blank or shared).
    #[error("[api.callers]: {0}")]
    Caller(String),
    /// A target's token variable is not set.
    #[error("target {target}: environment variable {variable} (its token, named by token_env) is not set")]
    MissingToken {
        /// The target.
        target: String,
        /// The environment variable.
        variable: String,
    },
}

impl Default for HubConfig {
    /// The seed's routing and targets ([`RoutingPolicy::default`]), no URLs;
    /// erp, the business system, owns and publishes `md.product`.
    fn default() -> Self {
        let policy = RoutingPolicy::default();
        let publishes = |name: &str| if name == "erp" { vec!["md.product".to_string()] } else { vec![] };
        let targets = policy
            .targets
            .into_iter()
            .map(|(name, t)| {
                let publishes = publishes(&name);
                (
                    name,
                    TargetConfig {
                        data_types: t.data_types,
                        all_grants: t.all_grants,
                        omit: t.omit,
                        publishes,
                        transport: t.transport,
                        ..TargetConfig::default()
                    },
                )
            })
            .collect();
        let origin = ConfigOrigin { path: "<default configuration>".into(), ..ConfigOrigin::default() };
        HubConfig {
            routes: policy.routes,
            targets,
            topic_prefix: default_prefix(),
            mapping: None,
            sensitive_on_kafka: false,
            safety: Default::default(),
            api: Default::default(),
            kafka: Default::default(),
            rest_ca_file: None,
            on_bad_grant_line: BadGrantLine::Suspend,
            origin,
        }
    }
}

impl HubConfig {
    /// The hub API's configuration for the `[api.callers]`, each with the
    /// token its `token_env` holds; `None` when the file names no caller.
    pub fn api_config(&self) -> Result<Option<crate::ApiConfig>, ConfigError> {
        if self.api.callers.is_empty() {
            return Ok(None);
        }
        let mut callers = vec![];
        for (name, caller) in &self.api.callers {
            let token = std::env::var(&caller.token_env)
                .map_err(|_| ConfigError::Caller(format!("caller {name}: environment variable {} (its token) is not set", caller.token_env)))?;
            callers.push((name.clone(), token, caller.may.clone()));
        }
        crate::ApiConfig::for_callers(callers).map(Some).map_err(|e| ConfigError::Caller(e.to_string()))
    }

    /// Parses a configuration; `path` is only used in error messages.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Self, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.into(),
            line: e.span().map(|s| line_of(s.start)).unwrap_or(0),
            message: e.message().to_string(),
        };
        let mut config: HubConfig = toml::from_str(text).map_err(parse_error)?;
        let spans: Spans = toml::from_str(text).map_err(parse_error)?;
        config.origin = ConfigOrigin {
            path: path.into(),
            routes: spans.routes.iter().map(|(t, v)| (*t, line_of(v.span().start))).collect(),
            targets: spans.targets.keys().map(|k| (k.get_ref().clone(), line_of(k.span().start))).collect(),
            kafka: spans.kafka.map_or(0, |k| line_of(k.span().start)),
        };
        config.check_owners()?;
        config.check_target_urls()?;
        config.check_pre_start()?;
        Ok(config)
    }

    /// Each system that owns master-data sets, and its sets (for
    /// [`KafkaConfig::owners`]).
    pub fn owners_by_system(&self) -> BTreeMap<String, Vec<String>> {
        self.targets.iter().filter(|(_, t)| !t.publishes.is_empty()).map(|(name, t)| (name.clone(), t.publishes.clone())).collect()
    }

    /// Each master-data set a system owns, and its owner.
    pub fn owned_sets(&self) -> BTreeMap<&str, &str> {
        self.targets.iter().flat_map(|(name, t)| t.publishes.iter().map(move |set| (set.as_str(), name.as_str()))).collect()
    }

    /// A set has one owner.
    fn check_owners(&self) -> Result<(), ConfigError> {
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, target) in &self.targets {
            for set in &target.publishes {
                if let Some(first) = owners.insert(set, name) {
                    let message = format!("master-data set {set:?} is published by both {first} and {name}; a set has one owner");
                    return Err(ConfigError::Parse { path: self.shown_path(), line: self.line(None, Some(name)), message });
                }
            }
        }
        Ok(())
    }

    /// The REST client's settings: [`Hub::rest_targets`](crate::Hub::rest_targets)
    /// with their tokens, and `rest_ca_file`'s CA.
    pub fn rest_config(&self) -> Result<hr_transport_rest::RestConfig, ConfigError> {
        let mut rest = hr_transport_rest::RestConfig::new(crate::Hub::rest_targets(self)?);
        if let Some(file) = &self.rest_ca_file {
            rest.ca_pem = Some(std::fs::read(file).map_err(|source| ConfigError::Io { path: file.display().to_string(), source })?);
        }
        Ok(rest)
    }

    /// The token of target `name`, from the environment variable its `token_env` names.
    pub(crate) fn token_of(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let Some(variable) = self.targets.get(name).and_then(|t| t.token_env.as_ref()) else { return Ok(None) };
        std::env::var(variable).map(Some).map_err(|_| ConfigError::MissingToken { target: name.to_string(), variable: variable.clone() })
    }

    /// The SCIM transport's settings for the targets with `transport =
    /// "scim"` (each with its token, and `rest_ca_file`'s CA), keeping ids
    /// in `id_store`; `None` when no target is a directory.
    pub fn scim_config(&self, id_store: PathBuf) -> Result<Option<hr_transport_scim::ScimConfig>, ConfigError> {
        let mut targets = vec![];
        for (name, t) in self.targets.iter().filter(|(_, t)| t.transport.as_deref() == Some("scim")) {
            let Some(url) = &t.url else {
                let message = format!("target {name} has transport = \"scim\" but no url: give its SCIM base URL");
                return Err(ConfigError::Parse { path: self.shown_path(), line: self.line(None, Some(name)), message });
            };
            let mut target = hr_transport_scim::ScimTarget::new(name, url, t.data_types.clone())
                .with_fields(t.omit.clone())
                .with_delete_leavers(t.delete_leavers)
                .with_bulk(t.bulk)
                .with_insecure_http(t.allow_insecure_http);
            if let Some(token) = self.token_of(name)? {
                target = target.with_token(&token);
            }
            targets.push(target);
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let mut scim = hr_transport_scim::ScimConfig::new(targets, id_store);
        if let Some(file) = &self.rest_ca_file {
            scim.ca_pem = Some(std::fs::read(file).map_err(|source| ConfigError::Io { path: file.display().to_string(), source })?);
        }
        Ok(Some(scim))
    }

    /// Every target URL is usable, and plain http only on loopback unless allowed.
    fn check_target_urls(&self) -> Result<(), ConfigError> {
        for (name, t) in &self.targets {
            let Some(url) = &t.url else { continue };
            hr_http::check_target_url(url, t.allow_insecure_http).map_err(|problem| ConfigError::Parse {
                path: self.shown_path(),
                line: self.line(None, Some(name)),
                message: format!("target {name}: url {url:?}: {problem}"),
            })?;
        }
        Ok(())
    }

    /// The REST targets the configuration names (those with a `url`): the
    /// data types routed to REST that each receives, its scope and URL
    /// rules, without its token.
    pub(crate) fn rest_targets_without_tokens(&self) -> Vec<hr_transport_rest::RestTarget> {
        let policy = self.policy();
        let mut targets = vec![];
        for (name, t) in &self.targets {
            // A target of another transport (a SCIM directory) has a url that is not a receiver's.
            let Some(url) = t.url.as_ref().filter(|_| t.transport.as_deref().is_none_or(|own| own == "rest")) else { continue };
            let types = policy.types_via(name, "rest");
            targets.push(
                hr_transport_rest::RestTarget::new(name, url, types)
                    .with_all_grants(t.all_grants)
                    .with_fields(t.omit.clone())
                    .with_insecure_http(t.allow_insecure_http),
            );
        }
        targets
    }

    /// People sent ahead of their hire date reach only the targets that
    /// ask for them: never over a Kafka topic, which every system of its
    /// audience reads.
    fn check_pre_start(&self) -> Result<(), ConfigError> {
        let policy = self.policy();
        for (name, target) in self.targets.iter().filter(|(_, t)| t.pre_start_days.is_some()) {
            let route = policy.route_for(name, DataType::Employee);
            if !target.data_types.contains(&DataType::Employee) {
                let message = format!("target {name} sets pre_start_days but does not receive employees: remove pre_start_days or add employee to data_types");
                return Err(ConfigError::Parse { path: self.shown_path(), line: self.line(None, Some(name)), message });
            }
            if !matches!(route, Some("rest" | "scim")) {
                let message = format!(
                    "target {name} sets pre_start_days, but its employees do not travel over rest or scim (the route is {}): \
                     people sent ahead must reach this target alone; give it transport = \"rest\" or \"scim\", or remove pre_start_days",
                    route.unwrap_or("none")
                );
                return Err(ConfigError::Parse { path: self.shown_path(), line: self.line(None, Some(name)), message });
            }
        }
        Ok(())
    }

    /// The line of the route of `data_type`, or else of target `target` (0 if unknown).
    fn line(&self, data_type: Option<DataType>, target: Option<&str>) -> usize {
        let route = data_type.and_then(|t| self.origin.routes.get(&t));
        let target = target.and_then(|t| self.origin.targets.get(t));
        route.or(target).copied().unwrap_or(0)
    }

    pub(crate) fn shown_path(&self) -> String {
        if self.origin.path.is_empty() {
            "<built in code>".into()
        } else {
            self.origin.path.clone()
        }
    }

    /// `error` located in this configuration's file.
    pub fn routing_error(&self, error: RoutingError) -> ConfigError {
        let line = match &error {
            RoutingError::UnknownTransport { data_type, .. } => self.line(Some(*data_type), None),
            RoutingError::NotAllowed { target, .. }
            | RoutingError::UnknownTargetTransport { target, .. }
            | RoutingError::NotTheTargetsTransport { target, .. } => self.line(None, Some(target)),
            RoutingError::Unreachable { target, data_type, .. } => match self.line(None, Some(target)) {
                0 => self.line(Some(*data_type), None),
                line => line,
            },
            _ => 0,
        };
        ConfigError::Routing { path: self.shown_path(), line, source: error }
    }

    /// Refuses sensitive data types routed over Kafka unless `sensitive_on_kafka`.
    pub fn check_sensitive_routes(&self) -> Result<(), ConfigError> {
        let policy = self.policy();
        let own = policy.targets.keys().flat_map(|target| policy.types_via(target, "kafka"));
        match policy.data_types_via("kafka").into_iter().chain(own).find(|t| t.is_sensitive()) {
            Some(data_type) if !self.sensitive_on_kafka => {
                Err(ConfigError::SensitiveOnKafka { path: self.shown_path(), line: self.line(Some(data_type), None), data_type })
            }
            _ => Ok(()),
        }
    }

    /// Reads `path`, or returns the default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: shown.clone(), source })?;
        Self::from_toml_str(&text, &shown)
    }

    /// `kafka` once per audience of the data types routed to Kafka: the
    /// full records first, then each distinct field scope of the targets
    /// that receive them. Creating the topics of each creates every topic
    /// the hub produces to ([`KafkaConfig::topic_for`]).
    pub fn kafka_audiences(&self, kafka: &KafkaConfig) -> Vec<KafkaConfig> {
        let mut scopes = vec![FieldScope::full()];
        for (_, target) in self.targets.iter().filter(|(name, _)| !self.kafka_types_of(name).is_empty()) {
            if !scopes.contains(&target.omit) {
                scopes.push(target.omit.clone());
            }
        }
        scopes.into_iter().map(|fields| KafkaConfig { fields, owners: self.owners_by_system(), ..kafka.clone() }).collect()
    }

    /// The data types target `name` receives over Kafka (by its data types'
    /// routes, unless it names a transport of its own): what its consumer
    /// group reads.
    pub fn kafka_types_of(&self, name: &str) -> Vec<DataType> {
        self.policy().types_via(name, "kafka")
    }

    /// The routing policy it describes.
    pub fn policy(&self) -> RoutingPolicy {
        let targets = self
            .targets
            .iter()
            .map(|(n, t)| {
                let policy = TargetPolicy {
                    data_types: t.data_types.clone(),
                    all_grants: t.all_grants,
                    omit: t.omit.clone(),
                    transport: t.transport.clone(),
                    pre_start_days: t.pre_start_days,
                };
                (n.clone(), policy)
            })
            .collect();
        RoutingPolicy { routes: self.routes.clone(), targets }
    }

    /// The mapping: the configured file, else `<input>/mapping.toml`, else the default.
    pub fn mapping_for(&self, input: &Path) -> Result<Mapping, ConfigError> {
        Ok(match &self.mapping {
            Some(path) => Mapping::from_file(path)?,
            None => Mapping::for_input_dir(input)?,
        })
    }
}

/// `, line N` for a problem at a line of the file; nothing for one about
/// what the file lacks (a missing table has no line).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(", line {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hub;

    #[test]
    fn a_master_data_set_with_two_owners_is_refused_naming_the_line() {
        let text = "[routes]\nmaster_data = \"kafka\"\n\n[targets.erp]\ndata_types = [\"master_data\"]\npublishes = [\"md.product\"]\n\n[targets.sales]\ndata_types = [\"master_data\"]\npublishes = [\"md.product\"]\n";
        let err = HubConfig::from_toml_str(text, "hub.toml").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml, line 8:") && err.contains("published by both erp and sales"), "{err}");
        let one_owner = HubConfig::from_toml_str(&text.replace("publishes = [\"md.product\"]\n\n", "\n"), "hub.toml").unwrap();
        assert_eq!(one_owner.owned_sets(), BTreeMap::from([("md.product", "sales")]));
    }

    #[test]
    fn people_sent_ahead_only_go_to_a_target_reached_alone() {
        let text = "[routes]\nemployee = \"kafka\"\n\n[targets.directory]\ndata_types = [\"employee\"]\npre_start_days = 7\n";
        let err = HubConfig::from_toml_str(text, "hub.toml").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml, line 4:") && err.contains("route is kafka") && err.contains("transport = \"rest\""), "{err}");
        let alone = HubConfig::from_toml_str(&text.replace("pre_start_days", "transport = \"rest\"\npre_start_days"), "hub.toml").unwrap();
        assert_eq!(alone.policy().targets["directory"].pre_start_days, Some(7));
        let no_employees = text.replace("[\"employee\"]", "[\"org_unit\"]");
        let err = HubConfig::from_toml_str(&no_employees, "hub.toml").unwrap_err().to_string();
        assert!(err.contains("does not receive employees"), "{err}");
    }

    #[test]
    fn plain_http_to_a_host_off_loopback_is_refused_naming_the_line_unless_allowed() {
        let text = "[routes]\ncompensation = \"rest\"\n\n[targets.payroll]\ndata_types = [\"compensation\"]\nurl = \"http://payroll.internal:8081\"\n";
        let err = HubConfig::from_toml_str(text, "hub.toml").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml, line 4:") && err.contains("plain http") && err.contains("allow_insecure_http"), "{err}");
        for fine in ["https://payroll.internal:8443", "http://127.0.0.1:8081", "http://[::1]:8081", "http://localhost:8081"] {
            HubConfig::from_toml_str(&text.replace("http://payroll.internal:8081", fine), "hub.toml").unwrap();
        }
        let allowed = HubConfig::from_toml_str(&format!("{text}allow_insecure_http = true\n"), "hub.toml").unwrap();
        assert!(Hub::rest_targets(&allowed).unwrap()[0].allow_insecure_http);
        // A directory over SCIM carries its bearer token and people's records the same way.
        let scim = "[routes]\n\n[targets.directory]\ntransport = \"scim\"\ndata_types = [\"employee\"]\nurl = \"http://idp.example.com/scim/v2\"\n";
        let err = HubConfig::from_toml_str(scim, "hub.toml").unwrap_err().to_string();
        assert!(err.starts_with("configuration hub.toml, line 3:") && err.contains("allow_insecure_http"), "{err}");
        HubConfig::from_toml_str(&scim.replace("http://idp", "https://idp"), "hub.toml").unwrap();
    }

    #[test]
    fn the_example_file_parses_and_matches_the_default_routing() {
        let text = include_str!("../../config/hr-sync.example.toml");
        let config = HubConfig::from_toml_str(text, "hr-sync.example.toml").unwrap();
        assert_eq!(config.policy(), RoutingPolicy::default());
    }

    #[test]
    fn a_route_to_an_unregistered_transport_names_its_line() {
        let text = "topic_prefix = \"x.\"\n[routes]\norg_unit = \"kafak\"\n[targets.erp]\ndata_types = [\"org_unit\"]\n";
        let config = HubConfig::from_toml_str(text, "hub.toml").unwrap();
        let error = hr_core::Router::new(config.policy()).check().unwrap_err();
        let text = config.routing_error(error).to_string();
        assert!(text.starts_with("configuration hub.toml, line 3:") && text.contains("\"kafak\""), "{text}");
    }

    #[test]
    fn compensation_over_kafka_is_refused_naming_the_route_line() {
        let text = "[routes]\nemployee = \"kafka\"\ncompensation = \"kafka\"\n";
        let text = HubConfig::from_toml_str(text, "hub.toml").unwrap().check_sensitive_routes().unwrap_err().to_string();
        assert!(text.starts_with("configuration hub.toml, line 3:") && text.contains("sensitive_on_kafka = true"), "{text}");
        let allowed = "sensitive_on_kafka = true\n[routes]\ncompensation = \"kafka\"\n";
        assert!(HubConfig::from_toml_str(allowed, "hub.toml").unwrap().check_sensitive_routes().is_ok());
    }

    #[test]
    fn an_unknown_key_names_the_line() {
        let err = HubConfig::from_toml_str("[routes]\nemployee = \"kafka\"\n[targets.erp]\ndata_types = []\nurll = \"x\"\n", "hub.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hub.toml, line 5") && text.contains("urll"), "{text}");
    }
}
