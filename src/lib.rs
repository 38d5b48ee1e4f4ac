//! # hr-sync
//!
//! Merge two companies' HR data and propagate every change to downstream
//! systems over Kafka, REST or SCIM. This crate only re-exports the library
//! crates, so a service can depend on one name:
//!
//! * [`hr_core`]: the unified schema `hr.v1`, the merge, the change
//!   envelope, the `Propagator` and `Sink` traits, routing, the ledger and
//!   digests;
//! * [`hr_transport_kafka`], [`hr_transport_rest`] and [`hr_transport_scim`]:
//!   the three transports;
//! * [`hr_hub`]: the [`Hub`] (ledger-planned deltas, routing, reconciliation
//!   and repair), its [`HubConfig`] file and the [`TargetSystem`] runtime.
//!
//! None of them writes to the terminal or installs a `tracing` subscriber.
//!
//! ```
//! use hr_sync::hr_core::DataType;
//! use hr_sync::HubConfig;
//! let config = HubConfig::from_toml_str("[routes]\nemployee = \"kafka\"\npermission = \"rest\"\n", "hub.toml").unwrap();
//! assert_eq!(config.routes[&DataType::Permission], "rest");
//! ```
#![warn(missing_docs)]

pub use hr_core;
pub use hr_hub;
pub use hr_transport_kafka;
pub use hr_transport_rest;
pub use hr_transport_scim;

pub use hr_hub::{load_and_merge, ConfigError, Hub, HubConfig, HubError, Publisher, SystemError, SystemOptions, TargetSystem, SCIM_ID_STORE};
