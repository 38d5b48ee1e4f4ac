//! The hub: turns a merged state into deltas with its [`Ledger`], reserves
//! their versions, sends them through the [`Router`], records them only once
//! every target has them, and reconciles and repairs what the target
//! systems hold.

use crate::config::{ConfigError, HubConfig};
use hr_core::{
    apply_newer_wins, CompactString, DataType, Delta, Digest, DigestEntry, Employee, HeldBack, HeldRecord, Ledger, LedgerError, MasterData, MergedState,
    NewerWins, Operation, PermissionGrant, PlanOptions, PropagateError, Propagator, ReadBackError, RealtimeChange, Receipt, Record, RejectedChange, Repair,
    Router, RoutingPolicy, TargetReader, ALL_BUCKETS,
};
use hr_transport_kafka::{KafkaConfig, KafkaPropagator, KafkaTransportError};
use hr_transport_rest::{RestConfig, RestPropagator, RestTarget, RestTransportError};
use hr_transport_scim::{ScimPropagator, ScimTransportError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod plan;
mod pre_hire;
mod realtime;
use plan::PlannedFrom;
pub(crate) use plan::OPERATIONS;
pub use plan::{PlannedChanges, RunPlan};
pub use realtime::{EmployeeChange, Problem, RealtimeError};

/// Why the hub cannot start or a run failed; each names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The configuration cannot be carried out.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ledger cannot be read or written, or refused a plan.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A propagation did not reach every target.
    #[error(transparent)]
    Propagate(#[from] PropagateError),
    /// The Kafka transport cannot be set up (boxed: rdkafka's error is large).
    #[error(transparent)]
    Kafka(Box<KafkaTransportError>),
    /// The REST transport cannot be set up.
    #[error(transparent)]
    Rest(#[from] RestTransportError),
    /// The SCIM transport cannot be set up.
    #[error(transparent)]
    Scim(#[from] ScimTransportError),
    /// A target's holdings cannot be read back for reconciliation.
    #[error(transparent)]
    ReadBack(#[from] ReadBackError),
    /// A real-time record cannot be serialized.
    #[error("cannot serialize a record: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A real-time change is not a valid record of its data type.
    #[error("{data_type} {key}: {detail}")]
    InvalidRecord {
        /// The data type.
        data_type: DataType,
        /// The key (`[redacted]` for sensitive data types).
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A real-time change says it happened in the future, or before 1900:
    /// kept, it would outrank every later change of its key.
    #[error("{data_type} {key}: `at` {at} is in the future or before 1900; send the time the change happened (UTC offset included)")]
    ImplausibleTime {
        /// The data type.
        data_type: DataType,
        /// The key (`[redacted]` for sensitive data types).
        key: String,
        /// The time given.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// A real-time change happened before the last one of its key: newer wins.
    #[error("{data_type} {key}: this change happened at {at}, before the one the hub already applied (at {current}); nothing was sent")]
    OlderThanCurrent {
        /// The data type.
        data_type: DataType,
        /// The key (`[redacted]` for sensitive data types).
        key: String,
        /// When the refused change happened.
        at: chrono::DateTime<chrono::Utc>,
        /// When the change the hub holds happened.
        current: chrono::DateTime<chrono::Utc>,
    },
    /// A system that owns no master-data set was asked to publish.
    #[error("{system} publishes no master-data set: list the sets it owns in its configuration, [targets.{system}] publishes = [\"md.product\"]")]
    NotAPublisher {
        /// The system.
        system: String,
    },
    /// A system tried to publish a record of a set it does not own.
    #[error("{system} does not own master-data set {set:?} (it publishes {owned}): nothing was published")]
    NotOwner {
        /// The system.
        system: String,
        /// The set of the refused record.
        set: String,
        /// The sets it owns, comma separated.
        owned: String,
    },
    /// The run would change more than `[safety]` allows in some target: nothing was sent.
    #[error(
        "run held for approval, nothing sent: {}; review it with `hub --plan`, then approve exactly this plan with `hub --approve {plan_id}`",
        .reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Held {
        /// The held plan's id.
        plan_id: String,
        /// Each limit it is over.
        reasons: Vec<crate::HoldReason>,
    },
    /// The approved plan is not the run the hub would make now.
    #[error("plan {approved} was approved, but the run the hub would make now is plan {now}: {}; nothing sent (review the new plan with `hub --plan`)", .differences.join("; "))]
    PlanChanged {
        /// The id that was approved.
        approved: String,
        /// The id of the plan now.
        now: String,
        /// What changed, per target, data type and operation.
        differences: Vec<String>,
    },
}

impl From<KafkaTransportError> for HubError {
    fn from(error: KafkaTransportError) -> Self {
        HubError::Kafka(Box::new(error))
    }
}

/// What one sync sent.
#[derive(Clone, Default)]
pub struct SyncOutcome {
    /// Changes planned and delivered (each counted once, whatever the fan-out).
    pub sent: u64,
    /// Of those, changes sent again because an earlier run failed after
    /// their versions may have left the hub.
    pub retried: u64,
    /// What was delivered, per target and data type, and the way to wait
    /// until every target applied it ([`Receipt::applied`]).
    pub receipt: Receipt,
    /// Records kept at their last good version because their new source
    /// row was quarantined.
    pub held_back: Vec<HeldRecord>,
    /// Keys, per data type, whose source record (or absence) was older than
    /// their last real-time change, which therefore stands ("newer wins").
    pub source_older: BTreeMap<DataType, Vec<String>>,
    /// Changes left out because the receivers would refuse them: never
    /// given a version, never sent; everything else went.
    pub rejected: Vec<RejectedChange>,
}

// Compensation keys say whose pay it is: Debug shows how many keys, not which.
impl std::fmt::Debug for SyncOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source_older: BTreeMap<&DataType, usize> = self.source_older.iter().map(|(t, keys)| (t, keys.len())).collect();
        f.debug_struct("SyncOutcome")
            .field("sent", &self.sent)
            .field("retried", &self.retried)
            .field("receipt", &self.receipt)
            .field("held_back", &self.held_back)
            .field("source_older", &source_older)
            .field("rejected", &self.rejected)
            .finish()
    }
}

/// One target's state of one data type compared with the hub's.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Live records the target holds.
    pub records: u64,
    /// Live records the hub sent.
    pub hub_records: u64,
    /// Whether the digests are equal (same keys, versions, deletions and content).
    pub digest_matches: bool,
    /// The keys that differ, when the digests do.
    #[serde(skip_serializing_if = "Drift::is_empty")]
    pub drift: Drift,
}

/// The keys in which a target differs from the hub, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// Keys the hub holds (a record or a tombstone) that the target lacks.
    pub missing: Vec<DriftKey>,
    /// Keys both hold, at another version or with other content.
    pub edited: Vec<DriftKey>,
    /// Keys the target holds that the hub never sent or has no record of.
    pub extra: Vec<DriftKey>,
    /// Keys the target holds at a version above any the hub ever gave the
    /// key, which no majority of the systems receiving it backs: written by
    /// someone else (a hand edit, a bug, an attacker). Reported, never
    /// repaired by outnumbering them (that would push the key towards the
    /// highest version in every system): remove the row at the target, and
    /// the next run repairs the key.
    pub foreign: Vec<DriftKey>,
}

/// One differing key, with the version the target holds (0 if none).
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftKey {
    /// The record key (`[redacted]` in `Debug` for sensitive data types).
    pub key: String,
    /// The version the target holds; 0 when it holds none.
    pub target_version: u64,
    #[serde(skip)]
    sensitive: bool,
}

impl std::fmt::Debug for DriftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = if self.sensitive { hr_core::REDACTED } else { &self.key };
        f.debug_struct("DriftKey").field("key", &key).field("target_version", &self.target_version).finish()
    }
}

impl Drift {
    /// Whether the target holds exactly the hub's keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys differ.
    pub fn len(&self) -> usize {
        self.missing.len() + self.edited.len() + self.extra.len() + self.foreign.len()
    }

    /// The keys a repair may send again (every kind but foreign).
    fn keys(&self) -> impl Iterator<Item = &DriftKey> {
        self.missing.iter().chain(&self.edited).chain(&self.extra)
    }
}

/// Every target's comparison, by target name and data type.
pub type Reconciliation = BTreeMap<String, BTreeMap<DataType, Reconciled>>;

/// The targets as last compared with the ledger ([`Hub::last_comparison`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// When the comparison ended.
    pub at: chrono::DateTime<chrono::Utc>,
    /// What it found, per target and data type.
    pub systems: Reconciliation,
    /// The targets it could not read, each with why: none of them is in
    /// [`systems`](Self::systems).
    pub unreadable: BTreeMap<String, String>,
}

/// What [`Hub::repair`] did.
#[derive(Clone, Default)]
pub struct RepairOutcome {
    /// Keys sent again, per data type (each to the systems that differ; see [`Hub::repair`]).
    pub repaired: BTreeMap<DataType, u64>,
    /// Per system and data type, how many of its differing keys were repaired.
    pub repaired_per_target: BTreeMap<String, BTreeMap<DataType, u64>>,
    /// Keys left alone, per data type: held back this run, or held live by
    /// the ledger without a record in this run's input.
    pub unrepairable: BTreeMap<DataType, Vec<String>>,
    /// What the repairs sent.
    pub sent: SyncOutcome,
}

// Unrepairable compensation keys say whose pay it is: Debug shows counts.
impl std::fmt::Debug for RepairOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unrepairable: BTreeMap<&DataType, usize> = self.unrepairable.iter().map(|(t, keys)| (t, keys.len())).collect();
        f.debug_struct("RepairOutcome")
            .field("repaired", &self.repaired)
            .field("repaired_per_target", &self.repaired_per_target)
            .field("unrepairable", &unrepairable)
            .field("sent", &self.sent)
            .finish()
    }
}

/// The hub of one deployment.
pub struct Hub {
    ledger: Ledger,
    router: Router,
    /// Per target, what reads back what it holds.
    readers: BTreeMap<String, Arc<dyn TargetReader>>,
    allow_mass_delete: bool,
    safety: crate::SafetyConfig,
    policy: RoutingPolicy,
    /// Master-data sets owned by a system (set -> owner): never the hub's to send.
    owned: BTreeMap<String, String>,
    /// Per system, the roles its grants may carry (systems that limit them).
    roles: BTreeMap<String, Vec<String>>,
    /// What a bad grant line does to the person's grants on its system.
    on_bad_grant_line: crate::config::BadGrantLine,
    /// The summary of the last periodic run planned ([`RunPlan::summary`]).
    last_plan: Option<serde_json::Value>,
    /// A plan a person approved for the next run, and who.
    approved: Option<(String, String)>,
    /// The id of the repairs this run's approval covers
    /// ([`RunPlan`]'s repairs alone): the repair step may send exactly those.
    approved_repairs: Option<String>,
    /// Employees as last sent: what a real-time change edits.
    employees: BTreeMap<CompactString, Employee>,
    /// Grants as last sent: what [`enforce_expiry`](Hub::enforce_expiry)
    /// and a real-time termination revoke.
    grants: BTreeMap<CompactString, PermissionGrant>,
    /// The day runs take as today, when set ([`set_today`](Hub::set_today)).
    today: Option<chrono::NaiveDate>,
    /// The last comparison of the targets: comparing only reads, so it is
    /// kept behind its own lock rather than making every comparison `&mut`.
    last_comparison: std::sync::Mutex<Option<Comparison>>,
    /// The source records the last merge set aside ([`note_quarantine`](Hub::note_quarantine)).
    last_quarantine: Vec<hr_core::Quarantined>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("transports", &self.router.transports().collect::<Vec<_>>())
            .field("targets", &self.router.targets())
            .field("allow_mass_delete", &self.allow_mass_delete)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with the transports this library ships: routes named `kafka`
    /// go to `kafka` (whose topics must exist; each target's consumer group
    /// is [`KafkaConfig::group`]), routes named `rest` to the targets in
    /// `rest`, which also serve the reads of [`reconcile`](Self::reconcile),
    /// and targets with `transport = "scim"` to their directories (read back
    /// too; each resource's SCIM id is kept beside the ledger, in
    /// [`SCIM_ID_STORE`]). The configuration's `sensitive_on_kafka` decides
    /// whether compensation may go over Kafka.
    pub fn new(config: &HubConfig, mut kafka: KafkaConfig, rest: RestConfig, ledger: Ledger) -> Result<Self, HubError> {
        kafka.allow_sensitive = config.sensitive_on_kafka;
        let policy = config.policy();
        let mut producer = KafkaPropagator::new(&kafka)?;
        for (name, target) in &policy.targets {
            let types = policy.types_via(name, "kafka");
            if !types.is_empty() {
                producer = producer.with_scoped_target(name, &types, target.omit.clone())?;
            }
        }
        let rest = Arc::new(RestPropagator::new(rest)?);
        let mut transports: Vec<(&str, Arc<dyn Propagator>)> = vec![("kafka", Arc::new(producer)), ("rest", rest.clone())];
        let mut readers: Vec<Arc<dyn TargetReader>> = vec![rest];
        if let Some(scim) = config.scim_config(scim_id_store_beside(ledger.path()))? {
            let scim = Arc::new(ScimPropagator::new(scim)?);
            transports.push(("scim", scim.clone()));
            readers.push(scim);
        }
        Ok(readers.into_iter().fold(Self::with_transports(config, ledger, transports)?, Self::with_reader))
    }

    /// A hub with any set of transports, each registered under the name
    /// routes use. The configuration is checked against them: a route to
    /// an unregistered name, a target a route's transport cannot reach, or
    /// one it would send a type the configuration does not allow is a
    /// [`ConfigError::Routing`] naming the file and line. Sensitive data
    /// types routed over `kafka` are refused unless `sensitive_on_kafka`.
    pub fn with_transports<'a>(
        config: &HubConfig,
        ledger: Ledger,
        transports: impl IntoIterator<Item = (&'a str, Arc<dyn Propagator>)>,
    ) -> Result<Self, HubError> {
        config.check_sensitive_routes()?;
        let policy = config.policy();
        let router = transports.into_iter().fold(Router::new(policy.clone()), |router, (name, p)| router.with(name, p));
        router.check().map_err(|e| config.routing_error(e))?;
        let mut ledger = ledger;
        ledger.keep_audiences(policy.targets.values().map(|t| &t.omit));
        let owned = config.owned_sets().into_iter().map(|(set, owner)| (set.to_string(), owner.to_string())).collect();
        Ok(Hub {
            ledger,
            router,
            readers: BTreeMap::new(),
            allow_mass_delete: false,
            safety: config.safety.clone(),
            roles: config.targets.iter().filter(|(_, t)| !t.roles.is_empty()).map(|(name, t)| (name.clone(), t.roles.clone())).collect(),
            on_bad_grant_line: config.on_bad_grant_line,
            last_plan: None,
            approved: None,
            approved_repairs: None,
            policy,
            owned,
            employees: BTreeMap::new(),
            grants: BTreeMap::new(),
            today: None,
            last_comparison: std::sync::Mutex::new(None),
            last_quarantine: vec![],
        })
    }

    /// Reads back the targets `reader` can read in [`reconcile`](Self::reconcile)
    /// (a later reader of the same target replaces an earlier one).
    pub fn with_reader(mut self, reader: Arc<dyn TargetReader>) -> Self {
        for target in reader.readable_targets() {
            self.readers.insert(target, reader.clone());
        }
        self
    }

    /// The targets [`reconcile`](Self::reconcile) cannot compare: no
    /// transport reads back what they hold (a Kafka consumer without a REST
    /// receiver).
    pub fn not_comparable(&self) -> Vec<String> {
        self.policy.targets.keys().filter(|t| !self.readers.contains_key(*t)).cloned().collect()
    }

    /// REST targets from the configuration: each target's `url` and the
    /// token in its `token_env`, with the data types routed to REST that it
    /// receives. A target without a url is left out (the router then says
    /// which data type cannot reach it).
    pub fn rest_targets(config: &HubConfig) -> Result<Vec<RestTarget>, ConfigError> {
        let mut targets = config.rest_targets_without_tokens();
        for target in &mut targets {
            if let Some(token) = config.token_of(&target.name)? {
                *target = target.clone().with_token(&token);
            }
        }
        Ok(targets)
    }

    /// Runs as if today were `day` in both companies (`None`: the clock's
    /// day in each, company A's by its `utc_offset_hours`, see
    /// [`MergedState::days`]): hires, departures and pre-hires are judged by
    /// it (see [`MergedState::as_of`]), and grant expiry (in UTC). For tests
    /// and backfills; a deployment leaves it unset.
    pub fn set_today(&mut self, day: Option<chrono::NaiveDate>) {
        self.today = day;
    }

    /// The day [`set_today`](Self::set_today) set, if any.
    pub fn fixed_today(&self) -> Option<chrono::NaiveDate> {
        self.today
    }

    /// The day grant dates are judged by: [`set_today`](Self::set_today)'s,
    /// else today's date in UTC (people's dates: [`MergedState::days`]).
    pub fn today(&self) -> chrono::NaiveDate {
        self.today.unwrap_or_else(|| chrono::Utc::now().date_naive())
    }

    /// Lets every later run go whatever it changes: no plan is held by
    /// `[safety]` and repairs may delete beyond the guard (tests and
    /// benchmarks; an operator approves one plan instead, see
    /// [`run_plan`](Self::run_plan)).
    pub fn allow_mass_delete(&mut self, allow: bool) {
        self.allow_mass_delete = allow;
    }

    /// The ledger (digests of what was sent).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Each target and the data types it receives, over whichever transport.
    pub fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        self.router.targets()
    }

    /// Sends the deltas of every data type.
    pub async fn sync(&mut self, state: &MergedState) -> Result<SyncOutcome, HubError> {
        self.sync_with(state, &HeldBack::default()).await
    }

    /// Sends the deltas of every data type, keeping the `held` records at
    /// their last good version, and remembers every person's unified id.
    pub async fn sync_with(&mut self, state: &MergedState, held: &HeldBack) -> Result<SyncOutcome, HubError> {
        blocking(|| self.ledger.remember_identities(state))?;
        self.sync_types(state, &DataType::ALL, held).await
    }

    /// Plans the deltas of `types`, reserves their versions, propagates them
    /// in one call, and records them in the ledger only once every target
    /// has them, so a failed call is sent again, at fresh versions, by the
    /// next sync.
    ///
    /// Newer wins: a key changed in real time keeps that change unless
    /// `state`'s record of it changed later (see [`hr_core::apply_newer_wins`];
    /// `state.exported_at` dates records without a time of their own, and
    /// keys `state` lacks); such keys are listed in
    /// [`SyncOutcome::source_older`]. A grant whose `expires` date has passed
    /// is sent revoked (see [`MergedState::revoke_expired`]), whatever `state` says.
    pub async fn sync_types(&mut self, state: &MergedState, types: &[DataType], held: &HeldBack) -> Result<SyncOutcome, HubError> {
        let mut plan = self.plan_counting(state, types, held, plan::Counting::WhereLimited)?;
        if plan.is_held() && types.len() == DataType::ALL.len() {
            // A held plan names the repairs too: the plan a person reviews (`hub --plan`) and approves.
            match self.reconcile_targets(&self.targets(), false).await {
                Ok(found) => plan = self.plan_reconciled(state, held, &found)?,
                Err(error) => tracing::warn!(%error, "cannot compare the targets: the held plan leaves out the repairs"),
            }
        }
        self.run_plan(plan, state, None).await
    }

    /// The summary of the last periodic run this hub planned (sent or held):
    /// what `GET /hr/v1/plan` answers.
    pub fn last_plan(&self) -> Option<&serde_json::Value> {
        self.last_plan.as_ref()
    }

    /// The last periodic run's audit log entry (its detail: plan id, counts
    /// per target, what it scheduled, and why it was held, if it was), read
    /// from the ledger: it outlives a restart.
    pub fn last_run(&self) -> Result<Option<hr_core::AuditEntry>, HubError> {
        Ok(blocking(|| self.ledger.latest_audit_entries(1, Some("run")))?.pop())
    }

    /// [`last_run`](Self::last_run), if it was held for approval.
    pub fn held_run(&self) -> Result<Option<hr_core::AuditEntry>, HubError> {
        Ok(self.last_run()?.filter(|run| run.detail["outcome"] == "held"))
    }

    /// The plan approved for the next run ([`approve`](Self::approve)) and
    /// who approved it, until that run uses it up.
    pub fn pending_approval(&self) -> Option<(&str, &str)> {
        self.approved.as_ref().map(|(plan, by)| (plan.as_str(), by.as_str()))
    }

    /// Opens a review case for each possible duplicate person in a merge's
    /// `conflicts` that has none (see [`Ledger::open_cases`]); returns how
    /// many opened.
    pub fn open_cases(&mut self, conflicts: &[hr_core::Conflict], state: &MergedState) -> Result<usize, HubError> {
        Ok(blocking(|| self.ledger.open_cases(conflicts, state))?)
    }

    /// Every review case, open ones first.
    pub fn cases(&self) -> Result<Vec<hr_core::ReviewCase>, HubError> {
        Ok(blocking(|| self.ledger.cases())?)
    }

    /// Decides review case `id` for `actor` (see [`Ledger::decide_case`]):
    /// it takes effect from the next periodic run.
    pub fn decide_case(&mut self, id: &str, decision: hr_core::CaseDecision, actor: &str) -> Result<hr_core::ReviewCase, HubError> {
        Ok(blocking(|| self.ledger.decide_case(id, decision, actor))?)
    }

    /// Approves plan `plan_id` for the next periodic run (the hub API's
    /// approval): that run goes even if `[safety]` holds it, if it is still
    /// that plan; otherwise the approval lapses and the audit log says so.
    /// An approval of a plan other than the last one planned is refused.
    pub fn approve(&mut self, plan_id: &str, approver: &str) -> Result<(), HubError> {
        let last = match self.last_plan.as_ref() {
            Some(plan) => plan["plan_id"].as_str().unwrap_or_default().to_string(),
            // A hub restarted since: the held run the audit log holds is what a person saw and approves.
            None => self.held_run()?.and_then(|run| run.detail["plan_id"].as_str().map(str::to_string)).unwrap_or_default(),
        };
        if last != plan_id {
            let detail = serde_json::json!({"plan_id": plan_id, "outcome": "refused", "now": last});
            blocking(|| self.ledger.audit(approver, "approve", &detail))?;
            let differences = vec![format!("the last run planned was plan {}", if last.is_empty() { "none" } else { &last })];
            return Err(HubError::PlanChanged { approved: plan_id.to_string(), now: last, differences });
        }
        blocking(|| self.ledger.audit(approver, "approve", &serde_json::json!({"plan_id": plan_id, "outcome": "approved"})))?;
        self.approved = Some((plan_id.to_string(), approver.to_string()));
        Ok(())
    }

    /// Plans a sync of every data type of `state`, with the repairs a
    /// comparison of the targets calls for, and sends it if its id is
    /// `plan_id`, which `approver` approved, held or not (the run's repair
    /// step may then send exactly the repairs planned); otherwise sends
    /// nothing and says what changed since that plan was made
    /// ([`HubError::PlanChanged`]). An approval is for one plan: the next
    /// run is checked against `[safety]` again. The approval is in the audit log.
    pub async fn sync_approved(&mut self, state: &MergedState, held: &HeldBack, plan_id: &str, approver: &str) -> Result<SyncOutcome, HubError> {
        blocking(|| self.ledger.remember_identities(state))?;
        let found = self.reconcile_targets(&self.targets(), false).await?;
        let plan = self.plan_reconciled(state, held, &found)?;
        if plan.plan_id != plan_id {
            let earlier = blocking(|| self.ledger.audit_entries(None))?
                .into_iter()
                .rev()
                .find(|e| e.action == "run" && e.detail["plan_id"] == plan_id)
                .map(|e| e.detail["targets"].clone());
            let differences = match earlier {
                Some(earlier) => plan.differences_from(&earlier),
                None => vec![format!("no run with plan {plan_id} is in the audit log")],
            };
            let detail = serde_json::json!({"plan_id": plan_id, "outcome": "refused", "now": plan.plan_id});
            blocking(|| self.ledger.audit(approver, "approve", &detail))?;
            return Err(HubError::PlanChanged { approved: plan_id.to_string(), now: plan.plan_id, differences });
        }
        blocking(|| self.ledger.audit(approver, "approve", &serde_json::json!({"plan_id": plan_id, "outcome": "approved"})))?;
        self.run_plan(plan, state, Some(plan_id)).await
    }

    /// What a sync of every data type of `state` would send, per target,
    /// data type and operation, with its plan id and whether `[safety]`
    /// holds it: everything a run does up to sending (held-back records,
    /// expiry, leavers, newer wins), without sending anything or changing
    /// the ledger.
    pub fn plan(&self, state: &MergedState, held: &HeldBack) -> Result<RunPlan, HubError> {
        self.plan_types(state, &DataType::ALL, held)
    }

    /// [`plan`](Self::plan) with the repairs the run would make after
    /// sending: the keys that `found` (from [`reconcile`](Self::reconcile),
    /// made now) shows differing and that the run's own changes do not
    /// overwrite. They are counted per target, checked against `[safety]`
    /// with the rest, and part of the plan id: what `hub --plan` shows and
    /// `hub --approve` runs.
    pub fn plan_reconciled(&self, state: &MergedState, held: &HeldBack, found: &Reconciliation) -> Result<RunPlan, HubError> {
        let mut plan = self.plan(state, held)?;
        let (found, pre_hires) = self.without_pre_hire_drift(found)?;
        let mut repairs = self.repairs_for(state, held, &found, &plan.deltas)?;
        repairs.pre_hires = pre_hires;
        self.describe(&mut plan, plan::Counting::Always, Some((&found, &repairs)))?;
        Ok(plan)
    }

    /// [`plan`](Self::plan) for `types` only.
    pub fn plan_types(&self, state: &MergedState, types: &[DataType], held: &HeldBack) -> Result<RunPlan, HubError> {
        self.plan_counting(state, types, held, plan::Counting::Always)
    }

    fn plan_counting(&self, state: &MergedState, types: &[DataType], held: &HeldBack, count: plan::Counting) -> Result<RunPlan, HubError> {
        let (days, held) = self.dated_hold(state, held)?;
        let held = held.as_ref();
        let scheduled = if types.contains(&DataType::Employee) { self.scheduled_on(state, days) } else { vec![] };
        let undated = state;
        let dated = state.as_of(days);
        let state = dated.as_ref().unwrap_or(state);
        // Every delete is planned: `[safety]` decides whether the run may go.
        let options = PlanOptions { allow_mass_delete: true, hold: Some(held) };
        let mut sources = BTreeMap::new();
        let mut newer_wins = BTreeMap::new();
        for &t in types {
            let (source, wins) = self.source_of(state, t, held)?;
            if let Some(source) = source {
                sources.insert(t, source);
            }
            newer_wins.insert(t, wins);
        }
        if types.contains(&DataType::Permission) {
            // The employees this sync leaves the systems with: real-time terminations included.
            let employees = match sources.get(&DataType::Employee) {
                Some(source) => &source.employees,
                None if types.contains(&DataType::Employee) => &state.employees,
                None => &self.employees,
            };
            let grants = sources.get(&DataType::Permission).unwrap_or(state);
            if let Some(revoked) = grants.with_leavers_grants_revoked(employees) {
                sources.insert(DataType::Permission, revoked);
            }
        }
        let mut rejected = vec![];
        if types.contains(&DataType::Permission) {
            let grants = sources.get(&DataType::Permission).unwrap_or(state);
            if let Some((allowed, refused)) = grants.with_unknown_roles_refused(&self.roles) {
                rejected.extend(refused);
                sources.insert(DataType::Permission, allowed);
            }
        }
        let source = |t: DataType| sources.get(&t).unwrap_or(state);
        let ledger = &self.ledger;
        let deltas = blocking(|| types.iter().map(|t| Ok((*t, ledger.plan_state(source(*t), *t, "hr-hub", &options)?))).collect::<Result<Vec<_>, HubError>>())?;
        rejected.extend(deltas.iter().flat_map(|(_, d)| d.rejected.iter().cloned()));
        let pre_hires = if types.contains(&DataType::Employee) { self.plan_pre_hires(undated, &deltas, held, days)? } else { vec![] };
        rejected.extend(pre_hires.iter().flat_map(|(_, d)| d.rejected.iter().cloned()));
        let mut plan = RunPlan {
            plan_id: String::new(),
            targets: BTreeMap::new(),
            hold: vec![],
            rejected,
            scheduled,
            repairs_id: None,
            deltas,
            pre_hires,
            newer_wins,
            dated,
            derived: sources,
        };
        self.describe(&mut plan, count, None)?;
        Ok(plan)
    }

    /// Sends `plan` (from [`plan`](Self::plan) of `state` on this hub, with
    /// nothing sent in between), unless `[safety]` holds it and `approved`
    /// is not its id: then nothing is sent and the error says why
    /// ([`HubError::Held`]). Every run is written to the audit log.
    ///
    /// The plan holds no records: they are made from `state` as they are
    /// sent, and one that is not what was planned stops the run
    /// ([`LedgerError::NotPlannedFrom`](hr_core::LedgerError::NotPlannedFrom)).
    pub async fn run_plan(&mut self, plan: RunPlan, state: &MergedState, approved: Option<&str>) -> Result<SyncOutcome, HubError> {
        // An approval given ahead (Hub::approve) counts for this plan only, and is used up either way;
        // one for other repairs than this plan's waits for this run's repair step.
        let pending = self.approved.take();
        self.lapse_approved_repairs(&plan.plan_id)?;
        let approved = match (approved, &pending) {
            (Some(id), _) => Some(id.to_string()),
            (None, Some((id, _))) if *id == plan.plan_id => Some(id.clone()),
            (None, Some((id, _))) if !plan.is_held() => {
                self.approved_repairs = Some(id.clone());
                None
            }
            (None, Some((id, by))) => {
                let detail = serde_json::json!({"plan_id": id, "outcome": "refused", "now": plan.plan_id, "approved_by": by});
                blocking(|| self.ledger.audit("hub", "approve", &detail))?;
                None
            }
            (None, None) => None,
        };
        let approved = approved.as_deref();
        if approved == Some(plan.plan_id.as_str()) && plan.repairs_id.is_some() {
            self.approved_repairs = plan.repairs_id.clone();
        }
        self.last_plan = Some(plan.summary());
        let counts = serde_json::to_value(&plan.targets).unwrap_or_default();
        if plan.is_held() && approved != Some(plan.plan_id.as_str()) {
            let detail = serde_json::json!({"plan_id": plan.plan_id, "outcome": "held", "targets": counts, "hold": plan.hold, "scheduled": plan.scheduled});
            blocking(|| self.ledger.audit("hub", "run", &detail))?;
            return Err(HubError::Held { plan_id: plan.plan_id, reasons: plan.hold });
        }
        let RunPlan { plan_id, deltas, pre_hires, newer_wins, rejected, scheduled, dated, derived, .. } = plan;
        let planned: BTreeSet<DataType> = deltas.iter().map(|(t, _)| *t).collect();
        let source = PlannedFrom::new(&derived, dated.as_ref().unwrap_or(state));
        let sent = self.send(deltas, &[], Some(source)).await;
        let audit = |hub: &mut Self, sent: bool| {
            // What is due later stays in the ledger: `hub --status` lists it, whatever happens to this process.
            let outcome = if sent { "sent" } else { "failed" };
            let detail = serde_json::json!({"plan_id": plan_id, "outcome": outcome, "approved": approved.is_some(), "targets": counts, "scheduled": scheduled});
            blocking(|| hub.ledger.audit("hub", "run", &detail))
        };
        let mut outcome = match sent {
            Ok(outcome) => outcome,
            Err(e) => {
                audit(self, false)?;
                return Err(e);
            }
        };
        // The plan's list: the deltas' own rejections and those made before planning (roles a system does not list).
        outcome.rejected = rejected;
        metrics::gauge!("hr_hub_held_back_records").set(outcome.held_back.len() as f64);
        for (t, wins) in newer_wins {
            blocking(|| self.ledger.settle_realtime(t, &wins.settled))?;
            metrics::counter!("hr_hub_source_older_total", "data_type" => t.as_str()).increment(wins.source_older.len() as u64);
            if !wins.source_older.is_empty() {
                outcome.source_older.insert(t, wins.source_older);
            }
        }
        // Copied once the run's changes are sent and dropped, not held beside them.
        if planned.contains(&DataType::Employee) {
            self.employees = source.of(DataType::Employee).employees.clone();
        }
        if planned.contains(&DataType::Permission) {
            self.grants = source.of(DataType::Permission).permissions.clone();
        }
        drop((dated, derived));
        // What every target holds is settled above, whatever becomes of what some are sent ahead.
        let ahead = self.send_pre_hires(pre_hires).await;
        audit(self, ahead.is_ok())?;
        let (sent, receipt) = ahead?;
        outcome.sent += sent;
        outcome.receipt.merge(receipt);
        Ok(outcome)
    }

    /// The records of `data_type` a sync of `state` sends, when they are not
    /// `state`'s own: expired grants revoked, real-time changes that stand
    /// put in (keys `held` back are left to the hold), sets systems own left out.
    fn source_of(&self, state: &MergedState, data_type: DataType, held: &HeldBack) -> Result<(Option<MergedState>, NewerWins), HubError> {
        let mut changes = blocking(|| self.ledger.realtime_changes(data_type))?;
        changes.retain(|c| held.holds(data_type, &c.key).is_none());
        let mut source = match data_type {
            DataType::Permission => state.with_grants_suspended(state.with_expired_grants_revoked(self.today()), self.suspensions(held)),
            DataType::MasterData => state.without_sets(&self.owned),
            _ => None,
        };
        let mut wins = NewerWins::default();
        if !changes.is_empty() {
            let mut only = source.take().unwrap_or_else(|| state.only(data_type));
            only.exported_at = state.exported_at;
            wins = apply_newer_wins(&mut only, data_type, &changes, state.exported_at.unwrap_or_else(chrono::Utc::now))?;
            if data_type == DataType::Permission {
                only.revoke_expired(self.today());
            }
            source = Some(only);
        }
        Ok((source, wins))
    }

    /// The suspensions a run applies: every bad grant line's, unless the
    /// configuration says `on_bad_grant_line = "keep"`.
    pub fn suspensions<'a>(&self, held: &'a HeldBack) -> &'a [hr_core::Suspension] {
        match self.on_bad_grant_line {
            crate::config::BadGrantLine::Suspend => held.suspended(),
            crate::config::BadGrantLine::Keep => &[],
        }
    }

    /// Revokes, in real time, every grant sent by the last sync whose
    /// `expires` date is before `today`, so access lapses on time between
    /// periodic runs (`hr-sync hub --watch` calls it each tick).
    pub async fn enforce_expiry(&mut self, today: chrono::NaiveDate) -> Result<SyncOutcome, HubError> {
        let lapsed: Vec<PermissionGrant> = self
            .grants
            .values()
            .filter(|g| g.granted && g.expires.is_some() && !g.in_force_on(today))
            .filter_map(|g| g.lapses_at().map(|at| g.revoked(at)))
            .collect();
        if lapsed.is_empty() {
            return Ok(SyncOutcome::default());
        }
        let keys: Vec<String> = lapsed.iter().map(PermissionGrant::key).collect();
        let changes: Vec<(&str, Option<&PermissionGrant>)> = keys.iter().map(String::as_str).zip(lapsed.iter().map(Some)).collect();
        self.sync_changes(&changes).await
    }

    /// Sends individual changes at once (real time): `Some(record)` upserts,
    /// `None` deletes. Only the named keys are looked at, so the cost does not
    /// grow with the data type's size. Each change counts as made at its
    /// record's [`Record::changed_at`] (a delete, or a record without one:
    /// now), and periodic syncs keep it until the source changes the key
    /// later ("newer wins", see [`sync_types`](Self::sync_types)).
    pub async fn sync_changes<R: Record>(&mut self, changes: &[(&str, Option<&R>)]) -> Result<SyncOutcome, HubError> {
        let now = chrono::Utc::now();
        let mut realtime = Vec::with_capacity(changes.len());
        for (key, record) in changes {
            let payload = record.map(serde_json::value::to_raw_value).transpose()?;
            let at = record.and_then(|r| r.changed_at()).unwrap_or(now);
            realtime.push(RealtimeChange { data_type: R::DATA_TYPE, key: key.to_string(), at, payload });
        }
        self.apply_realtime(realtime, "hr-hub").await
    }

    /// Reserves, propagates and commits `deltas`; `realtime` are the changes
    /// they carry when made in real time, committed with them. The deltas
    /// of a plan have their payloads made from what they were planned from;
    /// the others (`None`) carry theirs.
    async fn send(
        &mut self,
        deltas: Vec<(DataType, Delta)>,
        realtime: &[RealtimeChange],
        planned_from: Option<PlannedFrom<'_>>,
    ) -> Result<SyncOutcome, HubError> {
        let held_back: Vec<HeldRecord> = deltas.iter().flat_map(|(_, d)| d.held_back.iter().cloned()).collect();
        let rejected: Vec<RejectedChange> = deltas.iter().flat_map(|(_, d)| d.rejected.iter().cloned()).collect();
        for r in &rejected {
            metrics::counter!("hr_hub_rejected_changes_total", "data_type" => r.data_type.as_str()).increment(1);
        }
        // A real-time call is all or nothing: one change a receiver would refuse refuses the call.
        if let (false, Some(r)) = (realtime.is_empty(), rejected.first()) {
            return Err(HubError::InvalidRecord { data_type: r.data_type, key: r.key.clone(), detail: r.problem.clone() });
        }
        let retried = deltas.iter().map(|(_, d)| d.retried).sum();
        let changes: usize = deltas.iter().map(|(_, d)| d.changes.len()).sum();
        if changes == 0 {
            // Nothing to send (the targets hold it already), but a real-time change is still remembered.
            if !realtime.is_empty() {
                blocking(|| deltas.iter().try_for_each(|(t, delta)| self.ledger.commit_realtime(*t, delta, realtime)))?;
            }
            return Ok(SyncOutcome { held_back, rejected, ..SyncOutcome::default() });
        }
        // Durable before anything leaves: a failure below never lets these versions carry other content.
        blocking(|| deltas.iter().try_for_each(|(t, delta)| self.ledger.reserve(*t, delta)))?;
        let receipt = propagate_deltas(&self.router, &deltas, None, planned_from).await?;
        blocking(|| deltas.iter().try_for_each(|(t, delta)| self.ledger.commit_realtime(*t, delta, realtime)))?;
        count_sent(&deltas, &receipt);
        Ok(SyncOutcome { sent: changes as u64, retried, receipt, held_back, rejected, ..SyncOutcome::default() })
    }

    /// The digest `target` should have for `data_type`: the ledger's, over
    /// the records the target's [`RecordScope`](hr_core::RecordScope) admits (a system holds only
    /// its own grants).
    pub fn expected_digest(&self, target: &str, data_type: DataType) -> Result<Digest, HubError> {
        let scope = self.policy.scope(target);
        let audience = scope.fields().audience(data_type);
        // Computed as the ledger's rows are read: a million entries are never held at once.
        let admits = |key: &str| scope.admits(data_type, key);
        Ok(blocking(|| self.ledger.digest_for_target(data_type, audience.as_deref(), target, admits))?)
    }

    /// [`expected_digest`](Self::expected_digest) for a comparison: computed
    /// once per audience and data type for the targets that must hold the
    /// same records (those whose scope admits every key of the type and that
    /// were sent no version of their own), and read from the digests the
    /// ledger remembers unless `expected` is a full comparison's.
    fn expected_digest_for(&self, target: &str, data_type: DataType, expected: &mut ExpectedDigests) -> Result<Digest, HubError> {
        let scope = self.policy.scope(target);
        let shared = scope.admits_all(data_type) && !blocking(|| self.ledger.holds_own_versions(data_type, target))?;
        // The name says what the digest covers: a change of configuration is a new name.
        let name = match shared {
            true => format!("audience {}", scope.fields().audience(data_type).as_deref().unwrap_or("*")),
            false => format!("target {}", hr_core::ContentHash::of(&format!("{scope:?}")).to_hex()),
        };
        if let Some(digest) = expected.computed.get(&(data_type, name.clone())) {
            return Ok(*digest);
        }
        let remembered = match expected.rescan {
            false => blocking(|| self.ledger.remembered_digest(data_type, &name))?,
            true => None,
        };
        let digest = match remembered {
            Some(digest) => digest,
            None => {
                let digest = self.expected_digest(target, data_type)?;
                expected.fresh.push((data_type, name.clone(), digest));
                digest
            }
        };
        expected.computed.insert((data_type, name), digest);
        Ok(digest)
    }

    /// The ledger's entries of `data_type` that `target` should hold, with
    /// the hashes of its audience's content, at the versions repairs sent
    /// it alone.
    fn expected_entries(&self, target: &str, data_type: DataType) -> Result<Vec<DigestEntry>, HubError> {
        let scope = self.policy.scope(target);
        let audience = scope.fields().audience(data_type);
        let mut entries = blocking(|| self.ledger.entries_for_target(data_type, audience.as_deref(), target))?;
        entries.retain(|e| scope.admits(data_type, &e.key));
        Ok(entries)
    }

    /// Compares the digests of each target a [`TargetReader`] can read with
    /// the ledger's and, where they differ, finds the differing keys (see
    /// the crate docs, *Reconciliation that repairs*). Targets no reader
    /// reads are left out and named by [`not_comparable`](Self::not_comparable).
    ///
    /// Targets answer from the digests they maintain where they apply
    /// changes (see [`Sink::rescan`](hr_core::Sink::rescan));
    /// [`reconcile_rescanned`](Self::reconcile_rescanned) makes them read everything.
    pub async fn reconcile(&self, config: &HubConfig) -> Result<Reconciliation, HubError> {
        self.reconcile_targets(&Self::compared(config), false).await
    }

    /// [`reconcile`](Self::reconcile), every target reading and hashing
    /// everything it holds now: a check that sees any edit of a store,
    /// whenever its system's own scheduled full read comes.
    pub async fn reconcile_rescanned(&self, config: &HubConfig) -> Result<Reconciliation, HubError> {
        self.reconcile_targets(&Self::compared(config), true).await
    }

    /// The targets a comparison reads, with their data types.
    fn compared(config: &HubConfig) -> BTreeMap<String, Vec<DataType>> {
        config.targets.iter().map(|(name, target)| (name.clone(), target.data_types.clone())).collect()
    }

    /// [`reconcile`](Self::reconcile) of `targets` (name and data types),
    /// each read from everything it holds if `rescan`.
    async fn reconcile_targets(&self, targets: &BTreeMap<String, Vec<DataType>>, rescan: bool) -> Result<Reconciliation, HubError> {
        let mut out = BTreeMap::new();
        let mut expected = ExpectedDigests { rescan, ..ExpectedDigests::default() };
        for name in self.not_comparable() {
            tracing::warn!(target_system = %name, "nothing reads back what this target holds (no REST receiver, no reading transport): not compared");
        }
        // Every target is asked for its digests at once (each answers from what it maintains, or reads all it holds if `rescan`).
        let readable: Vec<_> = targets.iter().filter_map(|(name, types)| Some((name, types, self.readers.get(name)?))).collect();
        let held_by_each = futures::future::join_all(readable.iter().map(|(name, types, reader)| async move {
            if rescan {
                reader.rescanned_digests(name, types).await
            } else {
                reader.digests(name, types).await
            }
        }))
        .await;
        // Every target is compared, and what each showed (or why it could not be read) remembered, before an error is returned:
        // the console must not show a target that cannot be read now as it was the last time it could.
        let mut unreadable = BTreeMap::new();
        let mut first_error = None;
        for ((name, data_types, reader), held) in readable.into_iter().zip(held_by_each) {
            let compared = match held {
                Ok(held) => self.compare_target(name, data_types, reader.as_ref(), &held, &mut expected).await,
                Err(e) => Err(e.into()),
            };
            match compared {
                Ok(per_type) => {
                    out.insert(name.clone(), per_type);
                }
                Err(e) => {
                    unreadable.insert(name.clone(), e.to_string());
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Err(error) = blocking(|| self.ledger.remember_digests(&expected.fresh)) {
            tracing::warn!(%error, "cannot remember the ledger's digests: the next comparison computes them again");
        }
        let marked = self.mark_foreign(&mut out);
        self.remember_comparison(targets, &out, unreadable);
        match first_error {
            Some(e) => Err(e),
            None => marked.map(|()| out),
        }
    }

    /// What `target` holds of each of `data_types` (its digests `held`),
    /// compared with the ledger; the differing keys found where a digest differs.
    async fn compare_target(
        &self,
        target: &str,
        data_types: &[DataType],
        reader: &dyn TargetReader,
        held: &BTreeMap<DataType, Digest>,
        expected: &mut ExpectedDigests,
    ) -> Result<BTreeMap<DataType, Reconciled>, HubError> {
        let mut per_type = BTreeMap::new();
        for t in data_types {
            let mut theirs = held.get(t).copied().unwrap_or_else(Digest::default);
            if self.holds_owned_sets(*t) {
                theirs = Digest::of(&self.without_owned(reader.entries(target, *t, &ALL_BUCKETS).await?));
            }
            let ours = self.expected_digest_for(target, *t, expected)?;
            let digest_matches = ours == theirs;
            let drift = if digest_matches { Drift::default() } else { self.find_drift(reader, target, *t).await? };
            let labels = [("target", target.to_string()), ("data_type", t.as_str().to_string())];
            metrics::gauge!("hr_hub_drift_keys", &labels).set(drift.len() as f64);
            metrics::gauge!("hr_hub_digest_matches", &labels).set(f64::from(u8::from(digest_matches)));
            per_type.insert(*t, Reconciled { records: theirs.count, hub_records: ours.count, digest_matches, drift });
        }
        Ok(per_type)
    }

    /// Keeps what a comparison of `targets` found: each compared target's
    /// findings, or why it could not be read, replace what the one before
    /// said of it; a target left out keeps what the one before said.
    fn remember_comparison(&self, targets: &BTreeMap<String, Vec<DataType>>, found: &Reconciliation, unreadable: BTreeMap<String, String>) {
        let mut last = self.last_comparison.lock().unwrap_or_else(|p| p.into_inner());
        let (mut systems, mut was_unreadable) = last.take().map(|c| (c.systems, c.unreadable)).unwrap_or_default();
        for name in targets.keys() {
            systems.remove(name);
            was_unreadable.remove(name);
        }
        systems.extend(found.clone());
        was_unreadable.extend(unreadable);
        *last = Some(Comparison { at: chrono::Utc::now(), systems, unreadable: was_unreadable });
    }

    /// What the last [`reconcile`](Self::reconcile) found of each target
    /// (a target left out of it keeps what the one before found), if any ran.
    pub fn last_comparison(&self) -> Option<Comparison> {
        self.last_comparison.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps what the last merge set aside (its report's `quarantined`), for
    /// the operator console; the hub does not merge, the program does.
    pub fn note_quarantine(&mut self, quarantined: Vec<hr_core::Quarantined>) {
        self.last_quarantine = quarantined;
    }

    /// What the last merge set aside, as [`note_quarantine`](Self::note_quarantine) was given it.
    pub fn last_quarantine(&self) -> &[hr_core::Quarantined] {
        &self.last_quarantine
    }

    /// Whether targets may hold records of `data_type` that systems own and publish.
    fn holds_owned_sets(&self, data_type: DataType) -> bool {
        data_type == DataType::MasterData && !self.owned.is_empty()
    }

    /// `entries` without the records of sets systems own: those are the owner's to compare.
    fn without_owned(&self, mut entries: Vec<DigestEntry>) -> Vec<DigestEntry> {
        entries.retain(|e| !self.owned.contains_key(MasterData::set_of_key(&e.key)));
        entries
    }

    /// Narrows a differing digest down to keys: bucket digests first, then
    /// the entries of the differing buckets only.
    async fn find_drift(&self, reader: &dyn TargetReader, target: &str, data_type: DataType) -> Result<Drift, HubError> {
        let ours = self.expected_entries(target, data_type)?;
        let our_buckets = Digest::buckets(&ours);
        let their_buckets = reader.bucket_digests(target, data_type).await?;
        let differing: Vec<usize> = (0..our_buckets.len()).filter(|&b| our_buckets[b] != their_buckets[b]).collect();
        if differing.is_empty() {
            return Ok(Drift::default());
        }
        let theirs = reader.entries(target, data_type, &differing).await?;
        let theirs = if self.holds_owned_sets(data_type) { self.without_owned(theirs) } else { theirs };
        let theirs: BTreeMap<String, DigestEntry> = theirs.into_iter().map(|e| (e.key.clone(), e)).collect();
        let mut wanted = [false; hr_core::BUCKETS];
        differing.iter().for_each(|&b| wanted[b] = true);
        let ours: BTreeMap<&str, &DigestEntry> = ours.iter().filter(|e| wanted[e.bucket()]).map(|e| (e.key.as_str(), e)).collect();
        let sensitive = data_type.is_sensitive();
        let key = |key: &str, target_version| DriftKey { key: key.to_string(), target_version, sensitive };
        let mut drift = Drift::default();
        for (k, mine) in &ours {
            match theirs.get(*k) {
                None => drift.missing.push(key(k, 0)),
                Some(held) if held != *mine => drift.edited.push(key(k, held.version)),
                Some(_) => {}
            }
        }
        for (k, held) in &theirs {
            if !ours.contains_key(k.as_str()) {
                drift.extra.push(key(k, held.version));
            }
        }
        Ok(drift)
    }

    /// Moves every claim no majority backs into [`Drift::foreign`]: a key a
    /// target holds at a version above the highest the hub ever gave that
    /// key ([`Ledger::highest_issued`]) counts only if more than half of the
    /// compared targets that receive the key hold at least that version.
    /// A lost ledger (every system ahead of it) is repaired above their
    /// versions; one system claiming a huge version is not followed.
    fn mark_foreign(&self, found: &mut Reconciliation) -> Result<(), HubError> {
        let mut claims: BTreeMap<(DataType, String), Vec<u64>> = BTreeMap::new();
        for types in found.values() {
            for (t, reconciled) in types {
                for k in reconciled.drift.edited.iter().chain(&reconciled.drift.extra) {
                    claims.entry((*t, k.key.clone())).or_default().push(k.target_version);
                }
            }
        }
        let mut foreign: std::collections::BTreeSet<(DataType, String, u64)> = std::collections::BTreeSet::new();
        for ((t, key), versions) in &claims {
            let issued = blocking(|| self.ledger.highest_issued(*t, key))?;
            let receivers = found.iter().filter(|(name, types)| types.contains_key(t) && self.policy.scope(name).admits(*t, key)).count();
            for &v in versions.iter().filter(|&&v| v > issued) {
                let backing = versions.iter().filter(|&&held| held >= v).count();
                if backing * 2 <= receivers {
                    foreign.insert((*t, key.clone(), v));
                }
            }
        }
        for (target, types) in found.iter_mut() {
            for (t, reconciled) in types.iter_mut() {
                let drift = &mut reconciled.drift;
                let is_foreign = |k: &DriftKey| foreign.contains(&(*t, k.key.clone(), k.target_version));
                let (mut moved, kept): (Vec<DriftKey>, Vec<DriftKey>) = drift.edited.drain(..).partition(|k| is_foreign(k));
                drift.edited = kept;
                let (extra_moved, kept): (Vec<DriftKey>, Vec<DriftKey>) = drift.extra.drain(..).partition(|k| is_foreign(k));
                drift.extra = kept;
                moved.extend(extra_moved);
                if !moved.is_empty() {
                    tracing::warn!(target = %target, data_type = %t, keys = moved.len(), "target holds versions the hub never gave and no other system backs; not repaired, remove those rows at the target");
                }
                drift.foreign = moved;
                metrics::gauge!("hr_hub_foreign_versions", "target" => target.clone(), "data_type" => t.as_str()).set(drift.foreign.len() as f64);
            }
        }
        Ok(())
    }

    /// Sends every differing key found by [`reconcile`](Self::reconcile)
    /// again at a fresh version: the record `state` holds for it, or a
    /// delete where the hub holds no live record. It goes to the systems
    /// that differ in it (over Kafka: their topics, read by others too),
    /// which the ledger remembers at that version while the others keep
    /// theirs; a record the ledger does not hold yet goes to every system.
    /// A key `held` back this run
    /// is left alone, and so is one the ledger holds live that `state` lacks:
    /// both are reported as unrepairable. Repairs are checked against
    /// `[safety]` as a run is (a lost or restored ledger makes every key
    /// look extra): over a limit, nothing is sent and the error names the
    /// repairs' plan ([`HubError::Held`]), unless this run's approval covers
    /// exactly these repairs.
    pub async fn repair(&mut self, state: &MergedState, held: &HeldBack, found: &Reconciliation) -> Result<RepairOutcome, HubError> {
        let (found, pre_hires) = self.without_pre_hire_drift(found)?;
        let found = &found;
        let mut repairs = self.repairs_for(state, held, found, &[])?;
        repairs.pre_hires = pre_hires;
        let mut plan = RunPlan::empty();
        self.describe(&mut plan, plan::Counting::WhereLimited, Some((found, &repairs)))?;
        // An approval of exactly these repairs is used up here, needed or not; one of others lapses.
        let covered = self.approved_repairs.is_some() && self.approved_repairs == plan.repairs_id;
        if covered {
            self.approved_repairs = None;
        }
        self.lapse_approved_repairs(&plan.plan_id)?;
        let approved = covered && plan.is_held();
        if plan.is_held() && !approved {
            self.last_plan = Some(plan.summary());
            let detail = serde_json::json!({"plan_id": plan.plan_id, "outcome": "held", "targets": plan.targets, "hold": plan.hold, "repairs": true});
            blocking(|| self.ledger.audit("hub", "run", &detail))?;
            return Err(HubError::Held { plan_id: plan.plan_id, reasons: plan.hold });
        }
        if approved {
            let detail = serde_json::json!({"plan_id": plan.plan_id, "outcome": "sent", "approved": true, "targets": plan.targets, "repairs": true});
            blocking(|| self.ledger.audit("hub", "run", &detail))?;
        }
        let pre_hires = std::mem::take(&mut repairs.pre_hires);
        let mut outcome = RepairOutcome { unrepairable: repairs.unrepairable, ..RepairOutcome::default() };
        let differing = differing_targets(found);
        let mut everywhere = vec![];
        let mut alone: ByReceivers<Vec<(DataType, Delta)>> = BTreeMap::new();
        for (t, send) in repairs.send {
            outcome.repaired.insert(t, send.len() as u64);
            metrics::counter!("hr_hub_repaired_total", "data_type" => t.as_str()).increment(send.len() as u64);
            let (to_all, to_some) = blocking(|| self.receivers_of(t, send, &differing))?;
            everywhere.push((t, blocking(|| self.ledger.plan_repairs(t, to_all, "hr-hub"))?));
            for (targets, send) in to_some {
                alone.entry(targets).or_default().push((t, blocking(|| self.ledger.plan_repairs(t, send, "hr-hub"))?));
            }
        }
        outcome.repaired_per_target = repaired_per_target(found, &outcome.unrepairable);
        outcome.sent = self.send(everywhere, &[], None).await?;
        for (targets, deltas) in alone {
            let (sent, receipt) = self.send_to(deltas, &targets).await?;
            outcome.sent.sent += sent;
            outcome.sent.receipt.merge(receipt);
        }
        self.repair_pre_hires(state, held, pre_hires, &mut outcome).await?;
        Ok(outcome)
    }

    /// Which targets each repair of `t` goes to: the ones that differ
    /// (grouped by the set of them), where it carries what the ledger
    /// holds, so the others keep their version; the rest, whose content is
    /// new to the ledger (a grant lapsed since), to every target.
    fn receivers_of(
        &self,
        t: DataType,
        repairs: Vec<Repair>,
        differing: &BTreeMap<(DataType, String), BTreeSet<String>>,
    ) -> Result<(Vec<Repair>, ByReceivers<Vec<Repair>>), HubError> {
        let mut to_all = vec![];
        let mut to_some: ByReceivers<Vec<Repair>> = BTreeMap::new();
        for repair in repairs {
            let content = repair.payload.as_ref().map(|p| hr_core::ContentHash::of(p.get()));
            match differing.get(&(t, repair.key.clone())) {
                Some(targets) if self.ledger.holds(t, &repair.key, content)? => to_some.entry(targets.clone()).or_default().push(repair),
                _ => to_all.push(repair),
            }
        }
        Ok((to_all, to_some))
    }

    /// Reserves repairs, sends them to `targets` alone and records each
    /// receiver's version ([`Ledger::commit_to`]): every target allowed the
    /// data type that the receipt names too (a Kafka topic's other readers).
    async fn send_to(&mut self, deltas: Vec<(DataType, Delta)>, targets: &BTreeSet<String>) -> Result<(u64, Receipt), HubError> {
        let changes: usize = deltas.iter().map(|(_, d)| d.changes.len()).sum();
        if changes == 0 {
            return Ok((0, Receipt::default()));
        }
        blocking(|| deltas.iter().try_for_each(|(t, delta)| self.ledger.reserve(*t, delta)))?;
        let receipt = propagate_deltas(&self.router, &deltas, Some(targets), None).await?;
        let policy = self.router.policy();
        let receivers = |t: DataType| -> Vec<String> {
            let named = receipt.delivered().delivered.iter().filter(|(_, types)| types.get(&t).is_some_and(|n| *n > 0)).map(|(name, _)| name);
            let all: BTreeSet<&String> = targets.iter().chain(named).filter(|name| policy.allows(name, t)).collect();
            all.into_iter().cloned().collect()
        };
        blocking(|| deltas.iter().try_for_each(|(t, delta)| self.ledger.commit_to(*t, delta, &receivers(*t))))?;
        count_sent(&deltas, &receipt);
        Ok((changes as u64, receipt))
    }

    /// Writes in the audit log that an approval of repairs was not used
    /// (the run's repairs were others, or none were needed), and forgets it.
    fn lapse_approved_repairs(&mut self, now: &str) -> Result<(), HubError> {
        if let Some(id) = self.approved_repairs.take() {
            let detail = serde_json::json!({"plan_id": id, "outcome": "refused", "now": now});
            blocking(|| self.ledger.audit("hub", "approve", &detail))?;
        }
        Ok(())
    }

    /// The repairs `found` calls for once `sending` (changes a run sends
    /// first) is applied: a key it sends above every version a target holds
    /// needs no repair, and a key it sends is live or not as it says.
    fn repairs_for(&self, state: &MergedState, held: &HeldBack, found: &Reconciliation, sending: &[(DataType, Delta)]) -> Result<plan::Repairs, HubError> {
        let (days, held) = self.dated_hold(state, held)?;
        let held = held.as_ref();
        let dated = state.as_of(days);
        let state = dated.as_ref().unwrap_or(state);
        let mut repairs = plan::Repairs::default();
        // A repair sends what a run would: expired and suspended grants revoked.
        let grants = state.with_grants_suspended(state.with_expired_grants_revoked(self.today()), self.suspensions(held));
        for (t, mut keys) in highest_versions(found) {
            let sent: BTreeMap<&str, (u64, bool)> = sending
                .iter()
                .filter(|(st, _)| *st == t)
                .flat_map(|(_, d)| d.changes.iter().map(|c| (c.key.as_str(), (c.version, c.op == Operation::Upsert))))
                .collect();
            keys.retain(|key, above| sent.get(key.as_str()).is_none_or(|(version, _)| version <= above));
            let source = if t == DataType::Permission { grants.as_ref().unwrap_or(state) } else { state };
            let live_after = |key: &str| sent.get(key).map(|(_, live)| *live);
            let (send, unrepairable) = blocking(|| self.choose_repairs(t, keys, source, held, live_after))?;
            if !unrepairable.is_empty() {
                repairs.unrepairable.insert(t, unrepairable);
            }
            repairs.send.insert(t, send);
        }
        Ok(repairs)
    }

    /// What to send for each differing key of one data type, and the keys
    /// left alone; `live_after` overrides the ledger's word on whether a
    /// key is live (for keys a run sends before repairing).
    fn choose_repairs(
        &self,
        t: DataType,
        keys: BTreeMap<String, u64>,
        state: &MergedState,
        held: &HeldBack,
        live_after: impl Fn(&str) -> Option<bool>,
    ) -> Result<(Vec<Repair>, Vec<String>), HubError> {
        let mut repairs = vec![];
        let mut unrepairable = vec![];
        for (key, above) in keys {
            let live = match live_after(&key) {
                Some(live) => live,
                None => self.ledger.version_of(t, &key)?.is_some_and(|(_, deleted)| !deleted),
            };
            // A real-time change that stands is what the ledger holds, not `state`'s record.
            let record = match self.ledger.realtime_change(t, &key)? {
                Some(mut change @ RealtimeChange { payload: Some(_), .. }) => {
                    if t == DataType::Permission {
                        realtime::revoke_if_expired(&mut change, self.today())?;
                    }
                    change.payload.map(Ok)
                }
                _ => state.record(t, &key),
            };
            let payload = match (live, record) {
                _ if held.holds(t, &key).is_some() => None,
                (true, None) => None,
                (true, Some(record)) => Some(Some(record?)),
                (false, _) => Some(None),
            };
            match payload {
                Some(payload) => repairs.push(Repair { key, payload, above }),
                None => unrepairable.push(key),
            }
        }
        Ok((repairs, unrepairable))
    }
}

/// The file beside the ledger where the SCIM transport keeps each
/// resource's id in each directory.
pub const SCIM_ID_STORE: &str = "scim-ids.sqlite3";

/// Where the SCIM ids of the hub whose ledger is at `ledger` are kept (in
/// memory beside a ledger in memory).
fn scim_id_store_beside(ledger: &str) -> std::path::PathBuf {
    if ledger == ":memory:" {
        return ledger.into();
    }
    std::path::Path::new(ledger).with_file_name(SCIM_ID_STORE)
}

/// Sends each delta's changes in parts of at most [`SEND_PART`], one data
/// type after another: a part of a plan's delta has its payloads made from
/// the state it was planned from just before it goes, so a run never holds
/// every change's payload at once. One data type's changes travel over the
/// same transports, so a part that carries its payloads is not copied on
/// the way. Org units go first: a directory creates a team's group before
/// it moves the team's people into it. Data types that share no transport
/// go concurrently (grants over REST while employees go over Kafka).
async fn propagate_deltas(
    router: &Router,
    deltas: &[(DataType, Delta)],
    targets: Option<&BTreeSet<String>>,
    planned_from: Option<PlannedFrom<'_>>,
) -> Result<Receipt, HubError> {
    let mut ordered: Vec<&(DataType, Delta)> = deltas.iter().filter(|(_, d)| !d.is_empty()).collect();
    ordered.sort_by_key(|(t, _)| *t != DataType::OrgUnit);
    let types: BTreeSet<DataType> = ordered.iter().map(|(t, _)| *t).collect();
    // Deltas that carry their payloads never look into it.
    let carried = MergedState::default();
    let state_of = |t: DataType| planned_from.map_or(&carried, |p| p.of(t));
    let groups = router.independent_groups(&types, targets)?;
    let sends = groups.iter().map(|group| {
        let deltas: Vec<&(DataType, Delta)> = ordered.iter().copied().filter(|(t, _)| group.contains(t)).collect();
        send_in_parts(router, group, deltas, targets, state_of)
    });
    let mut all: Option<hr_core::Delivery<'_>> = None;
    for sent in futures::future::join_all(sends).await {
        let sent = sent?;
        match &mut all {
            Some(all) => all.absorb(sent),
            None => all = Some(sent),
        }
    }
    Ok(all.map(hr_core::Delivery::finish).transpose()?.unwrap_or_default())
}

/// One delivery of `deltas`, of the data types `types`, in parts of at most [`SEND_PART`].
async fn send_in_parts<'r, 's>(
    router: &'r Router,
    types: &BTreeSet<DataType>,
    deltas: Vec<&(DataType, Delta)>,
    targets: Option<&'r BTreeSet<String>>,
    state_of: impl Fn(DataType) -> &'s MergedState,
) -> Result<hr_core::Delivery<'r>, HubError> {
    let mut delivery = router.delivery(types, targets)?;
    for (t, delta) in deltas {
        for start in (0..delta.changes.len()).step_by(SEND_PART) {
            let part = blocking(|| delta.envelopes(start..delta.changes.len().min(start + SEND_PART), state_of(*t)))?;
            delivery.send(&part).await?;
        }
    }
    Ok(delivery)
}

/// The most changes [`propagate_deltas`] hands the transports at once: a
/// part of employees with their payloads is about 12 MB.
const SEND_PART: usize = 20_000;

/// The ledger's digests one comparison has found, by data type and name
/// (see [`Hub::expected_digest_for`]).
#[derive(Default)]
struct ExpectedDigests {
    /// A full comparison trusts no remembered digest.
    rescan: bool,
    computed: BTreeMap<(DataType, String), Digest>,
    /// Those computed from the ledger's rows, for it to remember.
    fresh: Vec<(DataType, String, Digest)>,
}

/// `hr_hub_changes_sent_total` per data type and
/// `hr_hub_changes_delivered_total` per target and data type.
fn count_sent(deltas: &[(DataType, Delta)], receipt: &Receipt) {
    for (t, delta) in deltas {
        metrics::counter!("hr_hub_changes_sent_total", "data_type" => t.as_str()).increment(delta.changes.len() as u64);
    }
    for (target, types) in &receipt.delivered().delivered {
        for (t, n) in types {
            metrics::counter!("hr_hub_changes_delivered_total", "target" => target.clone(), "data_type" => t.as_str()).increment(*n);
        }
    }
}

/// Runs blocking work (ledger writes with fsync, plans over a million keys,
/// a store read waiting for a batch) without stalling the runtime's other
/// tasks: on a multi-threaded runtime the worker hands its queued tasks to
/// another thread first. A current-thread runtime has no other thread, so
/// there the work runs in place, as any blocking call would.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Per data type, each differing key a repair may send, with the highest
/// version any system holds (which [`Ledger::plan_repairs`] trusts only up
/// to what the hub ever issued).
fn highest_versions(found: &Reconciliation) -> BTreeMap<DataType, BTreeMap<String, u64>> {
    let mut above: BTreeMap<DataType, BTreeMap<String, u64>> = BTreeMap::new();
    for per_type in found.values() {
        for (t, reconciled) in per_type {
            for k in reconciled.drift.keys() {
                let highest = above.entry(*t).or_default().entry(k.key.clone()).or_default();
                *highest = (*highest).max(k.target_version);
            }
        }
    }
    above
}

/// Repairs grouped by the set of systems they go to.
type ByReceivers<T> = BTreeMap<BTreeSet<String>, T>;

/// Per data type and key, the systems whose copy differs (foreign claims
/// are not differences a repair mends).
fn differing_targets(found: &Reconciliation) -> BTreeMap<(DataType, String), BTreeSet<String>> {
    let mut out: BTreeMap<(DataType, String), BTreeSet<String>> = BTreeMap::new();
    for (target, per_type) in found {
        for (t, reconciled) in per_type {
            for k in reconciled.drift.keys() {
                out.entry((*t, k.key.clone())).or_default().insert(target.clone());
            }
        }
    }
    out
}

/// Keys repaired in each system: its differing keys, less the unrepairable.
fn repaired_per_target(found: &Reconciliation, unrepairable: &BTreeMap<DataType, Vec<String>>) -> BTreeMap<String, BTreeMap<DataType, u64>> {
    let mut out: BTreeMap<String, BTreeMap<DataType, u64>> = BTreeMap::new();
    for (target, types) in found {
        for (t, reconciled) in types.iter().filter(|(_, r)| !r.drift.is_empty()) {
            let skipped = unrepairable.get(t);
            let n = reconciled.drift.keys().filter(|k| !skipped.is_some_and(|s| s.contains(&k.key))).count() as u64;
            out.entry(target.clone()).or_default().insert(*t, n);
        }
    }
    out
}
