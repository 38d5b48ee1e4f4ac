//! The sending side: a [`Propagator`] delivers change batches to targets
//! and hands back a [`Receipt`] that learns when each target applied them.

use crate::envelope::ChangeEnvelope;
use crate::field_scope::FieldScope;
use crate::schema::DataType;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
#[non_exhaustive]
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
    /// The routing policy cannot be carried out by the registered
    /// transports (the same error [`Router::check`](crate::Router::check)
    /// gives before anything is sent).
    #[error(transparent)]
    Routing(#[from] crate::RoutingError),
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
/// Every transport means the same by its answer:
/// - `Ok(receipt)`: every change of the batch is on its way to every target
///   the propagator serves (see [`targets`](Propagator::targets)) and will
///   be applied without being sent again: REST targets already applied it,
///   Kafka holds it durably for each target's consumer group.
///   [`Receipt::applied`] waits until each target *applied* it, and says so
///   per target and data type.
/// - `Err`: what did arrive and, per target, why the rest did not.
///
/// Re-sending a batch is always safe: targets apply by version, so a
/// duplicate or a late arrival changes nothing.
#[async_trait]
pub trait Propagator: Send + Sync {
    /// Delivers `batch`.
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError>;

    /// Delivers `batch` to `targets` only, as far as this transport can
    /// single them out: a Kafka topic reaches every target reading it. The
    /// receipt names every target that received it (the hub remembers each
    /// one's version). By default every target receives it, which is
    /// always safe: targets apply by version.
    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        let _ = targets;
        self.propagate(batch).await
    }

    /// The targets this propagator delivers to, and the data types each
    /// receives from it. A [`Router`](crate::Router) checks them against
    /// its policy, so no target receives a type the policy does not allow.
    fn targets(&self) -> BTreeMap<String, Vec<DataType>>;

    /// The fields `target` goes without in what this propagator delivers
    /// to it; by default none (whole records). A [`Router`](crate::Router)
    /// refuses a propagator that would deliver a field its policy omits.
    fn field_scope(&self, target: &str) -> FieldScope {
        let _ = target;
        FieldScope::full()
    }
}

#[async_trait]
impl<P: Propagator + ?Sized> Propagator for std::sync::Arc<P> {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        (**self).propagate(batch).await
    }

    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        (**self).propagate_to(batch, targets).await
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        (**self).targets()
    }

    fn field_scope(&self, target: &str) -> FieldScope {
        (**self).field_scope(target)
    }
}

/// Conveniences on every [`Propagator`].
#[async_trait]
pub trait PropagatorExt: Propagator {
    /// Delivers `batch` and waits until every target applied it, or fails
    /// with what was applied by `deadline` and who is behind.
    async fn propagate_applied(&self, batch: &[ChangeEnvelope], deadline: Duration) -> Result<PropagationReport, PropagateError> {
        self.propagate(batch).await?.applied(deadline).await
    }
}

impl<P: Propagator + ?Sized> PropagatorExt for P {}

/// Waits until targets applied what a propagator delivered; the part of a
/// [`Receipt`] a transport supplies when delivery and application differ
/// (Kafka: the broker holds the records, each target's consumer group
/// applies them later).
#[async_trait]
pub trait Confirmation: Send + Sync {
    /// Waits until every target applied its part or `deadline` passed,
    /// telling `progress` after each look how many target-records are still
    /// unapplied. Returns what was applied, per target and data type, or an
    /// [`Incomplete`](PropagateError::Incomplete) error naming who is behind.
    async fn wait(&self, deadline: Duration, progress: &mut (dyn FnMut(u64) + Send)) -> Result<PropagationReport, PropagateError>;
}

/// What a successful [`Propagator::propagate`] returns: what was delivered,
/// and the way to learn when every target applied it.
#[derive(Clone, Default)]
pub struct Receipt {
    delivered: PropagationReport,
    applied: PropagationReport,
    pending: Vec<Arc<dyn Confirmation>>,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt").field("delivered", &self.delivered).field("awaiting_confirmation", &self.pending.len()).finish()
    }
}

impl Receipt {
    /// A receipt for changes the targets applied before `propagate` returned
    /// (REST): [`applied`](Self::applied) answers at once.
    pub fn applied_on_delivery(delivered: PropagationReport) -> Self {
        Receipt { applied: delivered.clone(), delivered, pending: vec![] }
    }

    /// The answer of a transport whose targets apply on delivery, from
    /// each target's outcome (what it applied, and why not all, if so): a
    /// receipt applied on return when no target failed, else
    /// [`PropagateError::Incomplete`] with what did arrive. Each failure is
    /// logged once, naming `transport`.
    pub fn from_targets(transport: &str, outcomes: impl IntoIterator<Item = (PropagationReport, Option<TargetFailure>)>) -> Result<Self, PropagateError> {
        let mut report = PropagationReport::default();
        let mut failures = vec![];
        for (delivered, failure) in outcomes {
            report.merge(delivered);
            failures.extend(failure);
        }
        if failures.is_empty() {
            return Ok(Receipt::applied_on_delivery(report));
        }
        for f in &failures {
            tracing::warn!(target = %f.target, cause = %f.cause, transport, "propagation failed");
        }
        Err(PropagateError::incomplete(report, failures))
    }

    /// A receipt for changes the targets apply later; `confirmation` waits
    /// for them.
    pub fn awaiting(delivered: PropagationReport, confirmation: Arc<dyn Confirmation>) -> Self {
        Receipt { delivered, applied: PropagationReport::default(), pending: vec![confirmation] }
    }

    /// What was delivered, per target and data type.
    pub fn delivered(&self) -> &PropagationReport {
        &self.delivered
    }

    /// Whether every target already applied everything (nothing to wait for).
    pub fn is_applied(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds another receipt (of another part of the same batch).
    pub fn merge(&mut self, other: Receipt) {
        self.delivered.merge(other.delivered);
        self.applied.merge(other.applied);
        self.pending.extend(other.pending);
    }

    /// Waits until every target applied what was delivered; returns what
    /// was applied, per target and data type.
    pub async fn applied(&self, deadline: Duration) -> Result<PropagationReport, PropagateError> {
        self.applied_with_progress(deadline, &mut |_| {}).await
    }

    /// As [`applied`](Self::applied), telling `progress` how many
    /// target-records are still unapplied after each look.
    pub async fn applied_with_progress(&self, deadline: Duration, progress: &mut (dyn FnMut(u64) + Send)) -> Result<PropagationReport, PropagateError> {
        let mut applied = self.applied.clone();
        let mut failures = vec![];
        // One deadline for the whole receipt: a run sent in several batches waits no longer than one.
        let started = std::time::Instant::now();
        for confirmation in &self.pending {
            match confirmation.wait(deadline.saturating_sub(started.elapsed()), progress).await {
                Ok(report) => applied.merge(report),
                Err(PropagateError::Incomplete { delivered, failures: behind }) => {
                    applied.merge(delivered);
                    failures.extend(behind);
                }
                Err(other) => return Err(other),
            }
        }
        if failures.is_empty() {
            Ok(applied)
        } else {
            Err(PropagateError::incomplete(applied, failures))
        }
    }
}
