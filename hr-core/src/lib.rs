//! # hr-core
//!
//! The core of the HR propagation library: two companies' exports merged
//! into one schema (`hr.v1`), and every change carried to the systems that
//! need it with proof that each holds exactly the hub's state.
//!
//! Transports live in their own crates (`hr-transport-kafka`,
//! `hr-transport-rest`, `hr-transport-scim`) and implement this crate's traits; the hub
//! (`hr-hub`) composes them.
//!
//! # Contents
//!
//! - [The flow](#the-flow): import, merge, ledger, propagate, apply, prove.
//! - [The traits](#the-traits): [`Propagator`] sends, [`Sink`] applies,
//!   [`TargetReader`] reads back.
//! - [Guarantees](#guarantees): what holds under duplicates, reordering,
//!   failed runs and bad input.
//! - [Features](#features).
//! - [Example](#example).
//!
//! # The flow
//!
//! 1. [`load_input_dir`] reads the input directory ([`input`] names its
//!    files) into [`SourceData`]; a bad record is [`Quarantined`] with file,
//!    line and field, and the rest proceed.
//! 2. [`merge`] builds the [`MergedState`] and a [`MergeReport`] (conflicts,
//!    warnings, quarantine); [`HeldBack`] lists what a run must keep at its
//!    last good version because its source row was quarantined.
//! 3. The [`Ledger`] turns a full load into a [`Delta`] of
//!    [`ChangeEnvelope`]s with per-key versions that are never reused.
//! 4. A [`Router`], built from a [`RoutingPolicy`], picks the
//!    [`Propagator`] per data type (or the target's own transport) and refuses a route that would send a
//!    target a type it may not receive ([`RoutingError`]).
//! 5. `propagate` returns a [`Receipt`]; [`Receipt::applied`] waits until
//!    every target applied the batch, naming each one still behind.
//! 6. Every target's [`Sink`] applies under the version rule, and equal
//!    [`Digest`]s prove a target holds the hub's state, content included.
//!
//! # The traits
//!
//! [`Propagator`] is kept small: send a batch, say which targets get which
//! data type. Conveniences (send and wait until applied) live in
//! [`PropagatorExt`]. [`Sink`] applies a batch atomically and lists what it
//! holds; its digest follows from that, or from digests it maintains as it
//! applies changes ([`SqliteSink`] does, so a comparison does not read every
//! body it holds). [`TargetReader`] reads back what a
//! target holds, so the hub compares it with its ledger; a transport whose
//! targets can be read supplies one (a target without one is reported as not
//! comparable, never skipped silently). The `conformance` feature exposes
//! one test suite every propagator runs, as every object store runs one.
//!
//! # Guarantees
//!
//! - A change applies only if its version is newer than what the sink holds;
//!   deletes leave tombstones. Duplicates, redelivery and reordering never
//!   change the result.
//! - A version that may have reached a target is never given to other
//!   content, across failed runs and restarts (see [`Ledger`]).
//! - A quarantined row does not deprovision its person; a mass deletion
//!   beyond [`DEFAULT_MAX_DELETE_SHARE`] is refused unless confirmed.
//! - [`Sensitive`] values never appear in `Debug` output or error messages.
//!
//! # Features
//!
//! - `sqlite` (default): the [`Ledger`] and [`SqliteSink`]. Without it the
//!   crate is the schema, merge, envelope, traits and digests only.
//! - `conformance`: the shared propagator test suite.
//!
//! # Example
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
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod digest;
mod envelope;
mod field_scope;
mod holdback;
mod import;
mod iso_text;
mod json_schema;
mod json_text;
#[cfg(feature = "sqlite")]
mod ledger;
mod mapping;
mod merge;
mod private_file;
mod propagate;
mod quarantine;
mod read_back;
mod realtime;
mod routing;
mod rules;
mod schema;
mod sensitive;
mod sink;
#[cfg(feature = "sqlite")]
mod sqlite_sink;

/// The schema's text type: a string kept inline up to 24 bytes (on 64-bit
/// targets), which nearly every id, name, code and phone fits, so a merged
/// record needs about one heap allocation instead of one per field. It
/// dereferences to `str`, converts from `&str` and `String` with `into()`,
/// and serializes and describes itself in JSON Schema exactly as `String`.
pub use compact_str::CompactString;
pub use digest::{bucket_of, ContentHash, ContentHasher, Digest, DigestEntry, BUCKETS};
pub use envelope::{describe_json_error, ChangeEnvelope, EnvelopeError, Operation, MAX_VERSION};
pub use field_scope::{FieldScope, FieldScopeError};
pub use holdback::{HeldBack, Suspension};
pub use import::{
    fits_in_memory, load_input_dir, read_master_data_file, read_permission_lines, ImportError, MasterDataRow, PermissionLine, SourceData, MEMORY_PER_INPUT_BYTE,
};
pub use json_schema::{envelope_schema, record_schema, schema_files, ENVELOPE_FILE};
#[cfg(feature = "sqlite")]
pub use ledger::{
    AuditEntry, CaseDecision, Delta, HeldRecord, Ledger, LedgerError, PlanOptions, RejectedChange, Repair, ReviewCase, Standing, DEFAULT_MAX_DELETE_SHARE,
    PAYLOADS_KEPT,
};
pub use mapping::{CompanyARules, GradeMaps, Mapping, MappingError, DEFAULT_MAPPING_TOML};
pub use merge::{
    merge, merge_with_identities, Conflict, ConflictKind, Identities, MergeOutcome, MergeReport, MergedState, RecordJson, Warning, WarningKind, GROUP_ROOT,
};
pub use private_file::{create_private, write_private};
pub use propagate::{Confirmation, PropagateError, PropagationReport, Propagator, PropagatorExt, Receipt, TargetFailure};
pub use quarantine::{Quarantined, Reason};
pub use read_back::{ReadBackError, TargetReader, ALL_BUCKETS};
pub use realtime::{apply_newer_wins, NewerWins, RealtimeChange};
pub use routing::{Delivery, RecordScope, Router, RoutingError, RoutingPolicy, TargetPolicy};
pub use rules::{role_problem, CompanyDays, Scheduled};
pub use schema::{
    is_id_char, is_valid_code, is_valid_id, Company, Compensation, DataType, Employee, EmployeeStatus, MasterData, OrgUnit, PermissionGrant, Record,
    RecordVisitor, UnknownDataType, MAX_CODE_BYTES, MAX_ID_BYTES, SCHEMA,
};
pub use sensitive::{Sensitive, REDACTED};
pub use sink::{validate_batch, ApplyOutcome, KeptLetter, MemorySink, ScopedSink, Sink, SinkError, StoredRecord};
#[cfg(feature = "sqlite")]
pub use sqlite_sink::SqliteSink;

/// The input directory's files and the columns their headers must name
/// (docs/input-contract.md).
pub mod input {
    pub use crate::import::{
        A_DEPARTMENTS, A_DEPARTMENT_COLUMNS, A_EMPLOYEES, A_EMPLOYEE_COLUMNS, B_EMPLOYEES, B_ORG_UNITS, MANIFEST, MASTER_DATA, MASTER_DATA_COLUMNS, PERMISSIONS,
    };
}
