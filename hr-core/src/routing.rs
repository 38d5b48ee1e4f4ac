//! Which data type travels over which propagator, and which target may
//! receive which data type: configuration, not code.

use crate::envelope::ChangeEnvelope;
use crate::propagate::{PropagateError, PropagationReport, Propagator, TargetFailure};
use crate::schema::DataType;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The routing policy, usually the `[routing]` part of a configuration file.
///
/// ```
/// use hr_core::{DataType, RoutingPolicy};
/// let policy: RoutingPolicy = toml::from_str(r#"
///     [routes]
///     employee = "kafka"
///     compensation = "rest"
///     [targets.payroll]
///     data_types = ["employee", "compensation"]
///     [targets.erp]
///     data_types = ["employee"]
/// "#).unwrap();
/// assert_eq!(policy.route(DataType::Compensation), Some("rest"));
/// assert_eq!(policy.targets_for(DataType::Compensation), vec!["payroll"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// data type -> propagator name.
    pub routes: BTreeMap<DataType, String>,
    /// target system -> what it may receive.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetPolicy>,
}

/// What one target system may receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    /// The data types it receives.
    pub data_types: Vec<DataType>,
}

impl Default for RoutingPolicy {
    /// Employees, org units and master data over `kafka`; compensation and
    /// permission grants over `rest`; targets `payroll`, `orgchart`, `erp`,
    /// and only `payroll` receives compensation.
    fn default() -> Self {
        use DataType::*;
        let routes = [(Employee, "kafka"), (OrgUnit, "kafka"), (MasterData, "kafka"), (Compensation, "rest"), (Permission, "rest")]
            .into_iter()
            .map(|(t, p)| (t, p.to_string()))
            .collect();
        let everything_but_pay = vec![Employee, OrgUnit, MasterData, Permission];
        let targets = [
            ("payroll", vec![Employee, OrgUnit, MasterData, Permission, Compensation]),
            ("orgchart", everything_but_pay.clone()),
            ("erp", everything_but_pay),
        ]
        .into_iter()
        .map(|(n, data_types)| (n.to_string(), TargetPolicy { data_types }))
        .collect();
        RoutingPolicy { routes, targets }
    }
}

impl RoutingPolicy {
    /// The propagator a data type goes to.
    pub fn route(&self, data_type: DataType) -> Option<&str> {
        self.routes.get(&data_type).map(String::as_str)
    }

    /// The targets allowed to receive a data type, sorted.
    pub fn targets_for(&self, data_type: DataType) -> Vec<&str> {
        self.targets.iter().filter(|(_, p)| p.data_types.contains(&data_type)).map(|(n, _)| n.as_str()).collect()
    }

    /// Whether `target` may receive `data_type`.
    pub fn allows(&self, target: &str, data_type: DataType) -> bool {
        self.targets.get(target).is_some_and(|p| p.data_types.contains(&data_type))
    }

    /// The data types routed to a propagator.
    pub fn data_types_via(&self, propagator: &str) -> Vec<DataType> {
        self.routes.iter().filter(|(_, p)| *p == propagator).map(|(t, _)| *t).collect()
    }
}

/// A [`Propagator`] that splits each batch by data type and hands each part
/// to the propagator its route names, all parts concurrently.
pub struct Router {
    policy: RoutingPolicy,
    propagators: BTreeMap<String, Arc<dyn Propagator>>,
}

impl Router {
    /// A router with no propagators yet.
    pub fn new(policy: RoutingPolicy) -> Self {
        Router { policy, propagators: BTreeMap::new() }
    }

    /// Registers the propagator that routes call `name`.
    pub fn with(mut self, name: &str, propagator: Arc<dyn Propagator>) -> Self {
        self.propagators.insert(name.to_string(), propagator);
        self
    }

    /// The policy.
    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }
}

#[async_trait]
impl Propagator for Router {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<PropagationReport, PropagateError> {
        let mut parts: BTreeMap<&str, Vec<ChangeEnvelope>> = BTreeMap::new();
        for change in batch {
            let name = self.policy.route(change.data_type).ok_or(PropagateError::NoRoute(change.data_type))?;
            if !self.propagators.contains_key(name) {
                return Err(PropagateError::UnknownPropagator { data_type: change.data_type, name: name.to_string() });
            }
            parts.entry(name).or_default().push(change.clone());
        }
        let sends = parts.iter().map(|(name, part)| async move { (*name, self.propagators[*name].propagate(part).await) });
        let results = futures::future::join_all(sends).await;
        let mut delivered = PropagationReport::default();
        let mut failures = Vec::new();
        for (name, result) in results {
            match result {
                Ok(report) => delivered.merge(report),
                Err(PropagateError::Incomplete { delivered: partial, failures: f }) => {
                    delivered.merge(partial);
                    failures.extend(f);
                }
                Err(other) => failures.push(TargetFailure { target: name.to_string(), cause: other.to_string(), retriable: false }),
            }
        }
        if failures.is_empty() {
            Ok(delivered)
        } else {
            Err(PropagateError::incomplete(delivered, failures))
        }
    }
}
