//! The hub's configuration file: routing, targets (with where a separate
//! target process listens), the topic prefix and the mapping.
//!
//! ```
//! use hr_sync::config::HubConfig;
//! use hr_sync::hr_core::DataType;
//! let config = HubConfig::from_toml_str(r#"
//!     [routes]
//!     employee = "kafka"
//!     compensation = "rest"
//!     [targets.payroll]
//!     data_types = ["employee", "compensation"]
//!     url = "http://127.0.0.1:8081"
//!     token_env = "HR_TOKEN_PAYROLL"
//! "#, "hub.toml").unwrap();
//! assert_eq!(config.policy().targets_for(DataType::Compensation), vec!["payroll"]);
//! assert_eq!(config.topic_prefix, "hr.v1.");
//! ```

use hr_core::{DataType, Mapping, RoutingPolicy, TargetPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration file (see `config/hr-sync.example.toml`).
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
}

/// One target system.
#[derive(Debug, Clone, Deserialize)]
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
    #[error("configuration {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The mapping it names cannot be used.
    #[error(transparent)]
    Mapping(#[from] hr_core::MappingError),
}

impl Default for HubConfig {
    /// The seed's routing and targets ([`RoutingPolicy::default`]), no URLs.
    fn default() -> Self {
        let policy = RoutingPolicy::default();
        let targets = policy.targets.into_iter().map(|(name, t)| (name, TargetConfig { data_types: t.data_types, url: None, token_env: None })).collect();
        HubConfig { routes: policy.routes, targets, topic_prefix: default_prefix(), mapping: None, sensitive_on_kafka: false }
    }
}

impl HubConfig {
    /// Parses a configuration; `path` is only used in error messages.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            line: e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(0),
            message: e.message().to_string(),
        })
    }

    /// Reads `path`, or returns the default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: shown.clone(), source })?;
        Self::from_toml_str(&text, &shown)
    }

    /// The routing policy it describes.
    pub fn policy(&self) -> RoutingPolicy {
        let targets = self.targets.iter().map(|(n, t)| (n.clone(), TargetPolicy { data_types: t.data_types.clone() })).collect();
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

/// The consumer group of a target system under a topic prefix.
pub fn group_name(topic_prefix: &str, target: &str) -> String {
    format!("{topic_prefix}{target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_matches_the_default_routing() {
        let text = include_str!("../config/hr-sync.example.toml");
        let config = HubConfig::from_toml_str(text, "hr-sync.example.toml").unwrap();
        assert_eq!(config.policy(), RoutingPolicy::default());
    }

    #[test]
    fn an_unknown_key_names_the_line() {
        let err = HubConfig::from_toml_str("[routes]\nemployee = \"kafka\"\n[targets.erp]\ndata_types = []\nurll = \"x\"\n", "hub.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hub.toml, line 5") && text.contains("urll"), "{text}");
    }
}
