//! Which data type travels over which propagator, and which target may
//! receive which data type: configuration, not code.

use crate::envelope::ChangeEnvelope;
use crate::field_scope::FieldScope;
use crate::propagate::{PropagateError, PropagationReport, Propagator, Receipt, TargetFailure};
use crate::schema::DataType;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
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
    /// Whether it receives every grant (an access-review tool), not only the
    /// grants for itself; see [`RecordScope`].
    #[serde(default)]
    pub all_grants: bool,
    /// The fields it goes without, per data type (`omit.employee =
    /// ["phone", "birth_date"]`); see [`FieldScope`].
    #[serde(default)]
    pub omit: FieldScope,
    /// The transport every data type it receives travels over (`"scim"`
    /// for an identity directory), instead of each type's route.
    #[serde(default)]
    pub transport: Option<String>,
    /// How many days before their hire date a person reaches this target,
    /// as `pre_hire` (an identity directory preparing the account); `None`:
    /// from the hire date, as `active`. Only for a target reached alone (over
    /// `rest` or `scim`): a Kafka topic is read by every system of its audience.
    #[serde(default)]
    pub pre_start_days: Option<u32>,
}

impl TargetPolicy {
    /// A target receiving `data_types`, only its own grants, every field,
    /// over each type's route.
    pub fn new(data_types: Vec<DataType>) -> Self {
        TargetPolicy { data_types, all_grants: false, omit: FieldScope::full(), transport: None, pre_start_days: None }
    }
}

/// Which records of the data types it receives a target gets, and which
/// of their fields: all of them, except grants and the fields its
/// [`FieldScope`] omits. A grant goes only to the system it is for (its
/// `system` is the target's name), and to targets that see every grant
/// (`all_grants`): least privilege, as identity products provision an
/// application only its own assignments. Revocations and deletes of a
/// grant follow the grant.
///
/// ```
/// use hr_core::{DataType, RecordScope};
/// let erp = RecordScope::new("erp", false);
/// assert!(erp.admits(DataType::Permission, "A-1:erp:approver"));
/// assert!(!erp.admits(DataType::Permission, "A-1:payroll:viewer"));
/// assert!(erp.admits(DataType::Employee, "A-1"));
/// assert!(RecordScope::new("audit", true).admits(DataType::Permission, "A-1:payroll:viewer"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordScope {
    target: String,
    all_grants: bool,
    fields: FieldScope,
}

impl RecordScope {
    /// The scope of `target`, with every field; `all_grants` lets it see every grant.
    pub fn new(target: &str, all_grants: bool) -> Self {
        RecordScope { target: target.to_string(), all_grants, fields: FieldScope::full() }
    }

    /// This scope, without the fields `fields` omits.
    pub fn with_fields(mut self, fields: FieldScope) -> Self {
        self.fields = fields;
        self
    }

    /// The fields the target goes without.
    pub fn fields(&self) -> &FieldScope {
        &self.fields
    }

    /// The target it is the scope of.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the target gets the record `key` of `data_type`. A grant's
    /// key is `<employee>:<system>:<role>`, and ids hold no `:`.
    pub fn admits(&self, data_type: DataType, key: &str) -> bool {
        self.admits_all(data_type) || key.split(':').nth(1) == Some(self.target.as_str())
    }

    /// Whether the target gets every record of `data_type`.
    pub fn admits_all(&self, data_type: DataType) -> bool {
        data_type != DataType::Permission || self.all_grants
    }
}

impl Default for RoutingPolicy {
    /// Employees, org units and master data over `kafka`; compensation and
    /// permission grants over `rest`; targets `payroll`, `orgchart`, `erp`;
    /// only `payroll` receives compensation, and employees' phone numbers
    /// and birth dates.
    fn default() -> Self {
        use DataType::*;
        let routes = [(Employee, "kafka"), (OrgUnit, "kafka"), (MasterData, "kafka"), (Compensation, "rest"), (Permission, "rest")]
            .into_iter()
            .map(|(t, p)| (t, p.to_string()))
            .collect();
        let everything_but_pay = vec![Employee, OrgUnit, MasterData, Permission];
        let targets = [
            ("payroll", TargetPolicy::new(vec![Employee, OrgUnit, MasterData, Permission, Compensation])),
            ("orgchart", TargetPolicy { omit: no_personal_details(), ..TargetPolicy::new(everything_but_pay.clone()) }),
            ("erp", TargetPolicy { omit: no_personal_details(), ..TargetPolicy::new(everything_but_pay) }),
        ]
        .into_iter()
        .map(|(n, policy)| (n.to_string(), policy))
        .collect();
        RoutingPolicy { routes, targets }
    }
}

/// Employees without phone number and birth date.
fn no_personal_details() -> FieldScope {
    FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).expect("both are optional fields of an employee")
}

impl RoutingPolicy {
    /// The propagator a data type goes to, for targets without a transport of their own.
    pub fn route(&self, data_type: DataType) -> Option<&str> {
        self.routes.get(&data_type).map(String::as_str)
    }

    /// The propagator that carries `data_type` to `target`: the target's own
    /// transport if it names one, else the type's route.
    pub fn route_for(&self, target: &str, data_type: DataType) -> Option<&str> {
        match self.targets.get(target).and_then(|p| p.transport.as_deref()) {
            Some(own) => Some(own),
            None => self.route(data_type),
        }
    }

    /// The data types `target` receives over `transport`.
    pub fn types_via(&self, target: &str, transport: &str) -> Vec<DataType> {
        let Some(policy) = self.targets.get(target) else { return vec![] };
        policy.data_types.iter().copied().filter(|t| self.route_for(target, *t) == Some(transport)).collect()
    }

    /// Every transport a change of `data_type` travels over: its route, and
    /// the own transport of each target receiving it.
    pub fn transports_for(&self, data_type: DataType) -> BTreeSet<&str> {
        let own = self.targets.values().filter(|p| p.data_types.contains(&data_type)).filter_map(|p| p.transport.as_deref());
        self.route(data_type).into_iter().chain(own).collect()
    }

    /// The targets allowed to receive a data type, sorted.
    pub fn targets_for(&self, data_type: DataType) -> Vec<&str> {
        self.targets.iter().filter(|(_, p)| p.data_types.contains(&data_type)).map(|(n, _)| n.as_str()).collect()
    }

    /// Whether `target` may receive `data_type`.
    pub fn allows(&self, target: &str, data_type: DataType) -> bool {
        self.targets.get(target).is_some_and(|p| p.data_types.contains(&data_type))
    }

    /// Which records of its data types `target` gets, and which fields.
    pub fn scope(&self, target: &str) -> RecordScope {
        match self.targets.get(target) {
            Some(p) => RecordScope::new(target, p.all_grants).with_fields(p.omit.clone()),
            None => RecordScope::new(target, false),
        }
    }

    /// The data types routed to a propagator (by `[routes]`; a target's own
    /// transport is in [`types_via`](Self::types_via)).
    pub fn data_types_via(&self, propagator: &str) -> Vec<DataType> {
        self.routes.iter().filter(|(_, p)| *p == propagator).map(|(t, _)| *t).collect()
    }
}

/// A routing policy that the registered propagators cannot carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// A route names a transport nobody registered (a typo such as `kafak`).
    #[error("the route for {data_type} names transport {name:?}, which is not one of the registered transports ({registered})")]
    UnknownTransport {
        /// The data type.
        data_type: DataType,
        /// The name the route gives.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },
    /// A target names a transport of its own that nobody registered.
    #[error("target {target} names transport {name:?}, which is not one of the registered transports ({registered})")]
    UnknownTargetTransport {
        /// The target.
        target: String,
        /// The name it gives.
        name: String,
        /// The registered names, comma-separated.
        registered: String,
    },
    /// A transport would deliver to a target that names another transport of its own.
    #[error("transport {transport} delivers to {target}, which receives everything over its own transport {own}")]
    NotTheTargetsTransport {
        /// The transport.
        transport: String,
        /// The target.
        target: String,
        /// The target's own transport.
        own: String,
    },
    /// A transport would deliver a data type to a target the policy does not allow it.
    #[error("transport {transport} delivers {data_type} to {target}, which the policy does not allow to receive it")]
    NotAllowed {
        /// The transport.
        transport: String,
        /// The target.
        target: String,
        /// The data type.
        data_type: DataType,
    },
    /// A transport would deliver a target fields the policy omits for it.
    #[error(
        "transport {transport} would deliver {target} the {data_type} field(s) {fields}, which its policy omits; give the transport the target's field scope"
    )]
    FieldsNotOmitted {
        /// The transport.
        transport: String,
        /// The target.
        target: String,
        /// The data type.
        data_type: DataType,
        /// The fields, comma-separated.
        fields: String,
    },
    /// The policy says a target receives a data type, but the transport of
    /// that type's route cannot reach the target.
    #[error("{target} receives {data_type} over {transport}, but that transport has no way to reach {target} (a REST target needs a url)")]
    Unreachable {
        /// The transport.
        transport: String,
        /// The target.
        target: String,
        /// The data type.
        data_type: DataType,
    },
}

/// A [`Propagator`] that splits each batch by data type and hands each part
/// to the propagator its route names, all parts concurrently.
///
/// Build it with [`Router::new`], register each transport under the name
/// routes use with [`Router::with`], then [`Router::check`] that the
/// transports carry out the policy exactly: every route's transport is
/// registered, each reaches every target the policy gives that data type,
/// none delivers a type to a target the policy does not allow, and none
/// delivers a field the target's [`FieldScope`] omits.
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

    /// The names of the registered transports.
    pub fn transports(&self) -> impl Iterator<Item = &str> {
        self.propagators.keys().map(String::as_str)
    }

    /// The error for a change of `data_type` that would travel over `name`,
    /// which nobody registered: the route's name, or a target's own.
    fn unknown_transport(&self, data_type: DataType, name: &str) -> RoutingError {
        let registered = self.registered();
        match self.policy.targets.iter().find(|(_, p)| p.transport.as_deref() == Some(name) && self.policy.route(data_type) != Some(name)) {
            Some((target, _)) => RoutingError::UnknownTargetTransport { target: target.clone(), name: name.to_string(), registered },
            None => RoutingError::UnknownTransport { data_type, name: name.to_string(), registered },
        }
    }

    /// The registered transports' names, comma-separated (for errors).
    fn registered(&self) -> String {
        self.propagators.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Checks that the registered transports carry out the policy exactly
    /// (see the type's documentation); the first problem found.
    pub fn check(&self) -> Result<(), RoutingError> {
        let registered = || self.registered();
        for (data_type, name) in &self.policy.routes {
            if !self.propagators.contains_key(name) {
                return Err(RoutingError::UnknownTransport { data_type: *data_type, name: name.clone(), registered: registered() });
            }
        }
        for (target, policy) in &self.policy.targets {
            if let Some(name) = policy.transport.as_ref().filter(|n| !self.propagators.contains_key(*n)) {
                return Err(RoutingError::UnknownTargetTransport { target: target.clone(), name: name.clone(), registered: registered() });
            }
            for data_type in &policy.data_types {
                let Some((name, propagator)) = self.propagator_for(target, *data_type) else { continue };
                if !propagator.targets().get(target).is_some_and(|types| types.contains(data_type)) {
                    return Err(RoutingError::Unreachable { transport: name.into(), target: target.clone(), data_type: *data_type });
                }
            }
        }
        for (name, propagator) in &self.propagators {
            for (target, types) in propagator.targets() {
                if let Some(own) = self.policy.targets.get(&target).and_then(|p| p.transport.as_ref()).filter(|own| *own != name && !types.is_empty()) {
                    return Err(RoutingError::NotTheTargetsTransport { transport: name.clone(), target, own: own.clone() });
                }
                let routed_here: Vec<DataType> = types.into_iter().filter(|t| self.policy.route_for(&target, *t) == Some(name.as_str())).collect();
                if let Some(data_type) = routed_here.iter().find(|t| !self.policy.allows(&target, **t)) {
                    return Err(RoutingError::NotAllowed { transport: name.clone(), target, data_type: *data_type });
                }
                self.check_fields(name, propagator.as_ref(), &target, &routed_here)?;
            }
        }
        Ok(())
    }

    /// Checks that `propagator` omits for `target` every field of `types` the policy omits.
    fn check_fields(&self, name: &str, propagator: &dyn Propagator, target: &str, types: &[DataType]) -> Result<(), RoutingError> {
        let omitted_by_transport = propagator.field_scope(target);
        let wanted = self.policy.scope(target);
        for data_type in types {
            let delivered: Vec<&str> =
                wanted.fields().omitted(*data_type).iter().filter(|f| !omitted_by_transport.omitted(*data_type).contains(f)).map(String::as_str).collect();
            if !delivered.is_empty() {
                let fields = delivered.join(", ");
                return Err(RoutingError::FieldsNotOmitted { transport: name.into(), target: target.into(), data_type: *data_type, fields });
            }
        }
        Ok(())
    }

    /// The registered propagator that carries `data_type` to `target`, and its name.
    fn propagator_for(&self, target: &str, data_type: DataType) -> Option<(&str, &Arc<dyn Propagator>)> {
        let name = self.policy.route_for(target, data_type)?;
        self.propagators.get_key_value(name).map(|(n, p)| (n.as_str(), p))
    }
}

impl Router {
    /// Delivers each of `batches` over the transports that carry it, as a
    /// batch of its own and in the order given: to every target, or with
    /// `only`, to those targets (over the transports that reach them). See
    /// [`Delivery`], which this is with every batch at hand.
    pub async fn propagate_batches(&self, batches: &[&[ChangeEnvelope]], only: Option<&BTreeSet<String>>) -> Result<Receipt, PropagateError> {
        let types: BTreeSet<DataType> = batches.iter().flat_map(|b| b.iter().map(|c| c.data_type)).collect();
        let mut delivery = self.delivery(&types, only)?;
        for batch in batches {
            delivery.send(batch).await?;
        }
        delivery.finish()
    }

    /// Starts a delivery of batches of `types` (to every target, or with
    /// `only`, to those targets), handed over one at a time with
    /// [`Delivery::send`]: a caller can make each batch just before it
    /// goes. Every type's route is checked first, so a type no transport
    /// carries stops the delivery before anything is sent.
    pub fn delivery<'r>(&'r self, types: &BTreeSet<DataType>, only: Option<&'r BTreeSet<String>>) -> Result<Delivery<'r>, PropagateError> {
        let routes = types.iter().map(|t| Ok((*t, self.transports_carrying(*t, only)?))).collect::<Result<Routes<'r>, PropagateError>>()?;
        Ok(Delivery {
            router: self,
            only,
            routes,
            stopped: BTreeSet::new(),
            receipt: Receipt::default(),
            partial: PropagationReport::default(),
            failures: vec![],
        })
    }

    /// `types` in groups no two of which share a transport (to every
    /// target, or to `only`'s): a delivery of each group can run
    /// concurrently with the others' ([`Delivery::absorb`] joins them), so
    /// one transport's slow batches do not hold back another's.
    pub fn independent_groups(&self, types: &BTreeSet<DataType>, only: Option<&BTreeSet<String>>) -> Result<Vec<BTreeSet<DataType>>, PropagateError> {
        let mut groups: Vec<(BTreeSet<DataType>, BTreeSet<&str>)> = vec![];
        for t in types {
            let transports = self.transports_carrying(*t, only)?;
            let (sharing, apart): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(_, used)| !used.is_disjoint(&transports));
            let mut group = (BTreeSet::from([*t]), transports);
            for (types, used) in sharing {
                group.0.extend(types);
                group.1.extend(used);
            }
            groups = apart;
            groups.push(group);
        }
        Ok(groups.into_iter().map(|(types, _)| types).collect())
    }

    /// The transports that carry `data_type` (to `only`'s targets, if given),
    /// checked to be registered.
    fn transports_carrying(&self, data_type: DataType, only: Option<&BTreeSet<String>>) -> Result<BTreeSet<&str>, PropagateError> {
        let transports: BTreeSet<&str> = match only {
            None => self.policy.transports_for(data_type),
            Some(targets) => targets.iter().filter(|t| self.policy.allows(t, data_type)).filter_map(|t| self.policy.route_for(t, data_type)).collect(),
        };
        if transports.is_empty() && only.is_none() {
            return Err(PropagateError::NoRoute(data_type));
        }
        if let Some(name) = transports.iter().find(|name| !self.propagators.contains_key(**name)) {
            return Err(self.unknown_transport(data_type, name).into());
        }
        Ok(transports)
    }
}

/// One delivery of several batches over a [`Router`]'s transports
/// ([`Router::delivery`]), each batch handed to every transport that
/// carries it before the next is taken, the transports concurrently.
///
/// A batch whose changes all travel over the same transports (one data
/// type's changes do) is handed to each of them as it is; only a batch
/// that mixes routes is copied, part by part. A batch some targets missed
/// does not stop the next (one batch would have been sent whole too); a
/// transport that fails otherwise is sent nothing more.
pub struct Delivery<'r> {
    router: &'r Router,
    only: Option<&'r BTreeSet<String>>,
    routes: Routes<'r>,
    /// Transports that failed whole.
    stopped: BTreeSet<&'r str>,
    receipt: Receipt,
    /// What arrived of the batches some targets missed.
    partial: PropagationReport,
    failures: Vec<TargetFailure>,
}

impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("stopped", &self.stopped).field("failures", &self.failures.len()).finish_non_exhaustive()
    }
}

impl<'r> Delivery<'r> {
    /// Hands `batch` to every transport that carries its changes, waiting
    /// for all of them. A failure to reach targets is kept for
    /// [`finish`](Self::finish); an error here means `batch` holds a data
    /// type the delivery was not started for.
    pub async fn send(&mut self, batch: &[ChangeEnvelope]) -> Result<(), PropagateError> {
        let parts = self.split(batch)?;
        let (router, only) = (self.router, self.only);
        let sends = parts.into_iter().filter(|(name, _)| !self.stopped.contains(name)).map(|(name, part)| async move {
            let propagator = &router.propagators[name];
            let result = match only {
                None => propagator.propagate(&part).await,
                Some(targets) => propagator.propagate_to(&part, targets).await,
            };
            (name, result)
        });
        for (name, result) in futures::future::join_all(sends).await {
            match result {
                Ok(receipt) => self.receipt.merge(receipt),
                Err(PropagateError::Incomplete { delivered, failures }) => {
                    self.partial.merge(delivered);
                    self.failures.extend(failures);
                }
                Err(other) => {
                    self.failures.push(TargetFailure { target: name.to_string(), cause: other.to_string(), retriable: false });
                    self.stopped.insert(name);
                }
            }
        }
        Ok(())
    }

    /// Takes in what `other`, a delivery of other batches over the same
    /// router, sent: its receipt, and what it failed to deliver.
    pub fn absorb(&mut self, other: Delivery<'r>) {
        self.receipt.merge(other.receipt);
        self.partial.merge(other.partial);
        self.failures.extend(other.failures);
        self.stopped.extend(other.stopped);
    }

    /// The receipt of every batch sent, or what was delivered and what failed.
    pub fn finish(self) -> Result<Receipt, PropagateError> {
        if self.failures.is_empty() {
            return Ok(self.receipt);
        }
        let mut delivered = self.partial;
        delivered.merge(self.receipt.delivered().clone());
        Err(PropagateError::incomplete(delivered, self.failures))
    }

    /// `batch` cut by transport: borrowed whole when all its changes travel
    /// over the same transports, else copied into one part per transport.
    fn split<'b>(&self, batch: &'b [ChangeEnvelope]) -> Result<Vec<Part<'r, 'b>>, PropagateError> {
        let Some(first) = batch.first() else { return Ok(vec![]) };
        let route = |t: DataType| self.routes.get(&t).ok_or(PropagateError::NoRoute(t));
        let first_route = route(first.data_type)?;
        let mut same_route = true;
        for change in batch {
            same_route &= route(change.data_type)? == first_route;
        }
        if same_route {
            return Ok(first_route.iter().map(|name| (*name, Cow::Borrowed(batch))).collect());
        }
        let mut parts: BTreeMap<&'r str, Vec<ChangeEnvelope>> = BTreeMap::new();
        for change in batch {
            for name in &self.routes[&change.data_type] {
                parts.entry(*name).or_default().push(change.clone());
            }
        }
        Ok(parts.into_iter().map(|(name, part)| (name, Cow::Owned(part))).collect())
    }
}

/// A transport's name and the changes of a batch it carries.
type Part<'r, 'b> = (&'r str, Cow<'b, [ChangeEnvelope]>);

/// Per data type, the transports that carry it, looked up once per delivery.
type Routes<'r> = BTreeMap<DataType, BTreeSet<&'r str>>;

#[async_trait]
impl Propagator for Router {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.propagate_batches(&[batch], None).await
    }

    /// Each change goes over the transports that carry its data type to
    /// those of `targets` allowed it, each asked to reach those targets only.
    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        self.propagate_batches(&[batch], Some(targets)).await
    }

    /// Each target with the data types routed to it, over whichever transport.
    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        let mut out: BTreeMap<String, Vec<DataType>> = BTreeMap::new();
        for (name, propagator) in &self.propagators {
            for (target, types) in propagator.targets() {
                let routed_here: Vec<DataType> = types.into_iter().filter(|t| self.policy.route_for(&target, *t) == Some(name.as_str())).collect();
                out.entry(target).or_default().extend(routed_here);
            }
        }
        out.values_mut().for_each(|types| types.sort());
        out
    }

    /// Per data type, what the propagator carrying it to `target` omits.
    fn field_scope(&self, target: &str) -> FieldScope {
        let mut scope = FieldScope::full();
        for data_type in self.policy.routes.keys().chain(self.policy.targets.get(target).map_or(&[][..], |p| &p.data_types)) {
            if let Some((_, propagator)) = self.propagator_for(target, *data_type) {
                let omitted = propagator.field_scope(target).omitted(*data_type).to_vec();
                scope = scope.omitting(*data_type, omitted).expect("a propagator's field scope holds only optional fields");
            }
        }
        scope
    }
}
