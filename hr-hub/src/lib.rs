//! # hr-hub
//!
//! The hub a service embeds to keep downstream systems (payroll, org chart,
//! ERP, ...) holding exactly what the merged HR data says.
//!
//! A [`Hub`] turns a merged state ([`hr_core::MergedState`]) into deltas
//! with its [`Ledger`](hr_core::Ledger), reserves their versions before
//! anything leaves, sends them through a [`Router`](hr_core::Router) that
//! picks Kafka or REST per data type, and records them only once every
//! target has them, so a failed run is sent again, at fresh versions, by
//! the next one. Each run returns a [`Receipt`](hr_core::Receipt) whose
//! `applied` waits until every target applied it.
//! [`Hub::reconcile`] compares each target's digests with the ledger's and
//! names the keys that differ; [`Hub::repair`] sends them again.
//!
//! A [`HubConfig`] (a TOML file: routes, targets with their URL and the
//! environment variable holding their token, topic prefix, mapping) says
//! where each data type goes; errors in it name the file and line.
//! A [`TargetSystem`] is the other end in one process: a SQLite sink, the
//! REST receiver in front of it and the Kafka subscriber feeding it.
//!
//! The library writes no output and installs no `tracing` subscriber; it
//! emits through whatever subscriber the embedding service set up. Every
//! error is a typed enum ([`HubError`], [`ConfigError`], [`SystemError`])
//! naming what to fix.
//!
//! # Reconciliation that repairs
//!
//! [`Hub::reconcile`] compares each system's digest of each data type with
//! the ledger's (content included, see [`hr_core::Digest`]), as each system
//! maintains it where it applies changes ([`Hub::reconcile_rescanned`]: read
//! from everything each holds now). Where they
//! differ it reads the system's 256 bucket digests, then only the entries of
//! the differing buckets, and names each differing key: `missing` (the hub
//! holds it, the system does not), `edited` (another version or content) or
//! `extra` (the system holds a key the hub never sent or deleted).
//! [`Hub::repair`] then sends each such key again at a fresh version above
//! anything the hub ever gave it (and above what a majority of the systems
//! hold): the hub's record, or a delete where the hub holds none. A repair
//! goes to the systems that differ, over the transport that feeds each (a
//! system fed over Kafka is repaired by a re-publish on its topic that its
//! consumer group applies); the ledger remembers their version of the key,
//! the other systems keep theirs, and the next change of the key reaches
//! every system above all of them.
//!
//! # The HR side's API and the operator console
//!
//! [`hub_api`] serves a running hub to the HR side (real-time grants and
//! employee changes, the plan, approvals, review cases) behind per-caller
//! tokens and rights ([`ApiConfig`]), and, under `/ui`, a console for the
//! people who run the hub: each system's state, the last runs, a held run
//! to approve, review cases to decide, the last merge's quarantine and the
//! audit log, in server-rendered pages a caller signs in to with its token.
//! [`ApiGate`] serves them from a program's first second.
//!
//! # Example
//!
//! Merge a generated input, start the three target systems of the default
//! configuration on loopback, propagate (Kafka for employees, org units and
//! master data; REST for compensation and permissions), wait until every
//! system applied it, and compare their digests with the hub's:
//!
//! ```
//! use hr_core::{load_input_dir, merge, Ledger, Mapping};
//! use hr_hub::{Hub, HubConfig, SystemOptions, TargetSystem};
//! use hr_testdata::{Dataset, GenerateOptions};
//! use hr_transport_kafka::{EmbeddedKafka, KafkaConfig};
//! use hr_transport_rest::RestConfig;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("input");
//! Dataset::generate(&GenerateOptions::scaled(200)).write(&input).unwrap();
//! let state = merge(load_input_dir(&input, &Mapping::default()).unwrap()).state;
//!
//! let cluster = EmbeddedKafka::start().unwrap(); // or KafkaConfig::new("broker:9092")
//! let kafka = KafkaConfig::new(cluster.bootstrap_servers());
//! let mut config = HubConfig::default();
//! // Every audience's topics: orgchart and erp read employees without phone and birth date.
//! for audience in config.kafka_audiences(&kafka) {
//!     cluster.create_topics(&audience, &config.policy().data_types_via("kafka")).unwrap();
//! }
//! let mut systems = vec![];
//! for name in ["payroll", "orgchart", "erp"] {
//!     let mut options = SystemOptions::new(name, dir.path());
//!     options.fresh = true;
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
#![warn(missing_docs, unreachable_pub, missing_debug_implementations, rust_2018_idioms)]

mod api;
mod config;
mod hub;
mod input;
mod kafka_security;
mod metered;
mod publisher;
mod safety;
mod system;

pub use api::{
    hub_api, ApiConfig, ApiConfigError, ApiGate, CallerRight, LiveStatus, SystemProbe, SystemsLive, APPROVE_PATH, CASES_PATH, CASE_PATH, EMPLOYEES_PATH,
    PERMISSIONS_PATH, PLAN_PATH,
};
pub use config::{ApiSettings, BadGrantLine, CallerSettings, ConfigError, ConfigOrigin, HubConfig, TargetConfig};
pub use hub::{
    Comparison, Drift, DriftKey, EmployeeChange, Hub, HubError, PlannedChanges, Problem, RealtimeError, Reconciled, Reconciliation, RepairOutcome, RunPlan,
    SyncOutcome, SCIM_ID_STORE,
};
pub use input::{load_and_merge, load_and_merge_reading};
pub use kafka_security::{acl_commands, AclOperation, AclResource, KafkaAcl, KafkaSettings, SaslMechanism, SecurityProtocol};
pub use publisher::Publisher;
pub use safety::{Guarded, HoldReason, Limit, Limits, SafetyConfig, DEFAULT_MIN_RECORDS, DEFAULT_SHARE};
pub use system::{SystemError, SystemOptions, TargetSystem};
