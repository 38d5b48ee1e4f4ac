//! # hr-sync
//!
//! Facade over the workspace: [`hr_core`] (schema, merge, ledger, traits),
//! [`hr_transport_kafka`] and [`hr_transport_rest`], plus the synthetic
//! dataset generator the examples, tests and benchmarks share, and the
//! pieces a deployment is made of: a [`hub::Hub`], [`system::TargetSystem`]s
//! and the [`config::HubConfig`] that routes between them.
//!
//! Merge a generated input, start the three target systems of the default
//! configuration on loopback, propagate (Kafka for employees, org units and
//! master data; REST for compensation and permissions), wait until every
//! system applied it, and compare their digests with the hub's:
//!
//! ```
//! use hr_sync::config::HubConfig;
//! use hr_sync::generate::{Dataset, GenerateOptions};
//! use hr_sync::hr_core::{load_input_dir, merge, Ledger, Mapping};
//! use hr_sync::hr_transport_kafka::{EmbeddedKafka, KafkaConfig};
//! use hr_sync::hr_transport_rest::RestConfig;
//! use hr_sync::hub::Hub;
//! use hr_sync::system::{SystemOptions, TargetSystem};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("input");
//! Dataset::generate(&GenerateOptions::scaled(200)).write(&input).unwrap();
//! let state = merge(load_input_dir(&input, &Mapping::default()).unwrap()).state;
//!
//! let cluster = EmbeddedKafka::start().unwrap(); // or KafkaConfig::new("broker:9092")
//! let kafka = KafkaConfig::new(cluster.bootstrap_servers());
//! let mut config = HubConfig::default();
//! cluster.create_topics(&kafka, &config.policy().data_types_via("kafka")).unwrap();
//! let mut systems = vec![];
//! for name in ["payroll", "orgchart", "erp"] {
//!     let options = SystemOptions { name: name.into(), data_dir: dir.path().into(), listen: ([127, 0, 0, 1], 0).into(), token: None, fresh: true };
//!     let system = TargetSystem::start(&options, &config, &kafka).await.unwrap();
//!     config.targets.get_mut(name).unwrap().url = Some(system.url().to_string());
//!     systems.push(system);
//! }
//!
//! let rest = RestConfig::new(Hub::rest_targets(&config).unwrap());
//! let mut hub = Hub::new(&config, kafka, rest, Ledger::in_memory().unwrap()).unwrap();
//! let sent = hub.sync(&state).await.unwrap();
//! assert!(sent.sent > 500);
//! // Every system applied it: REST targets before sync returned, Kafka
//! // targets once their consumer groups committed past it.
//! let applied = sent.receipt.applied(std::time::Duration::from_secs(60)).await.unwrap();
//! assert_eq!(applied.total("erp"), sent.receipt.delivered().total("erp"));
//! let reconciled = hub.reconcile(&config).await.unwrap();
//! assert!(reconciled.values().flat_map(|types| types.values()).all(|r| r.digest_matches));
//! for system in systems {
//!     system.shutdown().await.unwrap();
//! }
//! drop(hub); // producers before the embedded cluster
//! # });
//! ```
#![warn(missing_docs)]

pub use hr_core;
pub use hr_transport_kafka;
pub use hr_transport_rest;

pub mod config;
pub mod console;
pub mod generate;
pub mod hub;
pub mod scenario;
pub mod system;

pub(crate) const A_EMP: &str = hr_core::import::A_EMPLOYEES;
pub(crate) const A_DEPT: &str = hr_core::import::A_DEPARTMENTS;
pub(crate) const B_EMP: &str = hr_core::import::B_EMPLOYEES;
pub(crate) const B_ORG: &str = hr_core::import::B_ORG_UNITS;
