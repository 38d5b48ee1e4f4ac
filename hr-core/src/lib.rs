//! # hr-core
//!
//! The core of the HR propagation library: the unified schema `hr.v1`, the
//! merge of two companies' exports into it, the change envelope, the
//! [`Propagator`] (send) and [`Sink`] (apply) traits, routing per data type,
//! the hub's [`Ledger`] that turns full loads into deltas, and [`Digest`]s
//! that prove a target holds exactly the hub's state.
//!
//! Transports live in their own crates (`hr-transport-kafka`,
//! `hr-transport-rest`); callers pick one per data type through a
//! [`RoutingPolicy`] without changing their code.
//!
//! ```
//! use hr_core::{DataType, Ledger, MemorySink, Sink, merge, SourceData};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // An empty input still yields the three org roots.
//! let outcome = merge(SourceData::default());
//! assert_eq!(outcome.report.counts[&DataType::OrgUnit], 3);
//!
//! // The ledger turns the merged state into changes...
//! let mut ledger = Ledger::in_memory().unwrap();
//! let records = outcome.state.records(DataType::OrgUnit).map(|(k, v)| (k, v.unwrap()));
//! let delta = ledger.plan(DataType::OrgUnit, records, "hr-hub", false).unwrap();
//! ledger.reserve(DataType::OrgUnit, &delta).unwrap(); // before sending
//! ledger.commit(DataType::OrgUnit, &delta).unwrap(); // once every target has it
//!
//! // ...a sink applies them, and digests prove it holds the hub's state.
//! let sink = MemorySink::default();
//! sink.apply(&delta.changes).await.unwrap();
//! assert_eq!(sink.digest(DataType::OrgUnit).await.unwrap(), ledger.digest(DataType::OrgUnit).unwrap());
//! # });
//! ```
#![warn(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod digest;
pub mod envelope;
pub mod holdback;
pub mod import;
#[cfg(feature = "sqlite")]
pub mod ledger;
pub mod mapping;
pub mod merge;
pub mod propagate;
pub mod quarantine;
pub mod records;
pub mod routing;
pub mod schema;
pub mod sensitive;
pub mod sink;
#[cfg(feature = "sqlite")]
pub mod sqlite_sink;

pub use digest::{bucket_of, ContentHash, Digest, DigestEntry, BUCKETS};
pub use envelope::{ChangeEnvelope, EnvelopeError, Operation};
pub use holdback::HeldBack;
pub use import::{load_input_dir, ImportError, SourceData};
#[cfg(feature = "sqlite")]
pub use ledger::{Delta, HeldRecord, Ledger, LedgerError, PlanOptions, Repair};
pub use mapping::{Mapping, MappingError};
pub use merge::{merge, merge_with_identities, Conflict, ConflictKind, Identities, MergeOutcome, MergeReport, MergedState, Warning, WarningKind};
pub use propagate::{Confirmation, PropagateError, PropagationReport, Propagator, PropagatorExt, Receipt, TargetFailure};
pub use quarantine::{Quarantined, Reason};
pub use routing::{Router, RoutingError, RoutingPolicy, TargetPolicy};
pub use schema::{Company, Compensation, DataType, Employee, EmployeeStatus, MasterData, OrgUnit, PermissionGrant, SCHEMA};
pub use sensitive::Sensitive;
pub use sink::{canonical_bodies, ApplyOutcome, MemorySink, Sink, SinkError, StoredRecord};
#[cfg(feature = "sqlite")]
pub use sqlite_sink::SqliteSink;
