//! The sending side: a [`Propagator`] delivers change batches to targets.

use crate::envelope::ChangeEnvelope;
use crate::schema::DataType;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What was delivered, per target and data type.
///
/// For Kafka the target is the broker (`kafka`): a record counts once the
/// broker durably accepted it. For REST a target is a system that applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationReport {
    /// target -> data type -> changes delivered.
    pub delivered: BTreeMap<String, BTreeMap<DataType, u64>>,
}

impl PropagationReport {
    /// Counts `n` changes of `data_type` delivered to `target`.
    pub fn add(&mut self, target: &str, data_type: DataType, n: u64) {
        *self.delivered.entry(target.to_string()).or_default().entry(data_type).or_default() += n;
    }

    /// Adds another report's counts.
    pub fn merge(&mut self, other: PropagationReport) {
        for (target, types) in other.delivered {
            for (t, n) in types {
                self.add(&target, t, n);
            }
        }
    }

    /// Total changes delivered to `target`.
    pub fn total(&self, target: &str) -> u64 {
        self.delivered.get(target).map(|m| m.values().sum()).unwrap_or(0)
    }
}

/// One target that did not receive everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFailure {
    /// The target (system name, or `kafka`).
    pub target: String,
    /// What went wrong, for a person to act on.
    pub cause: String,
    /// Whether retrying the same batch may succeed.
    pub retriable: bool,
}

/// A propagation that did not deliver everything to every target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropagateError {
    /// Some targets failed. `delivered` says exactly what did arrive
    /// (and nothing else did); re-sending the whole batch is safe.
    #[error("propagation incomplete: {}", describe(.failures))]
    Incomplete {
        /// What was delivered before and despite the failures.
        delivered: PropagationReport,
        /// Each failed target and why.
        failures: Vec<TargetFailure>,
    },
    /// The routing policy sends this data type nowhere.
    #[error("no route for data type {0}: add it to [routes] in the configuration")]
    NoRoute(DataType),
    /// The routing policy names a propagator that was not registered.
    #[error("route for {data_type} names propagator {name:?}, which is not registered")]
    UnknownPropagator {
        /// The data type.
        data_type: DataType,
        /// The missing propagator.
        name: String,
    },
}

fn describe(failures: &[TargetFailure]) -> String {
    failures.iter().map(|f| format!("{}: {}", f.target, f.cause)).collect::<Vec<_>>().join("; ")
}

impl PropagateError {
    /// Builds an [`Incomplete`](PropagateError::Incomplete) error.
    pub fn incomplete(delivered: PropagationReport, failures: Vec<TargetFailure>) -> Self {
        PropagateError::Incomplete { delivered, failures }
    }

    /// The failed targets' names.
    pub fn failed_targets(&self) -> Vec<&str> {
        match self {
            PropagateError::Incomplete { failures, .. } => failures.iter().map(|f| f.target.as_str()).collect(),
            _ => vec![],
        }
    }
}

impl fmt::Display for TargetFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.cause)
    }
}

/// Sends batches of changes to target systems.
///
/// `propagate` returns `Ok` only when every change reached every target the
/// implementation is responsible for (durably accepted by a broker, or
/// applied by each system); otherwise the error tells what arrived and what
/// did not. Re-sending a batch is always safe: receivers apply by version.
#[async_trait]
pub trait Propagator: Send + Sync {
    /// Delivers `batch`.
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<PropagationReport, PropagateError>;
}

#[async_trait]
impl<P: Propagator + ?Sized> Propagator for std::sync::Arc<P> {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<PropagationReport, PropagateError> {
        (**self).propagate(batch).await
    }
}
