//! A run before it happens: what it would change in each target, an id
//! that names exactly that, and whether the configuration's `[safety]`
//! holds it for a person's approval.

use super::{blocking, Hub, HubError, Reconciliation};
use crate::safety::{Guarded, HoldReason};
use hr_core::{ContentHasher, DataType, Delta, MergedState, NewerWins, Operation, RejectedChange, Repair};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Whether a plan counts what each target holds everywhere (a preview) or
/// only where a limit could be reached (a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counting {
    Always,
    WhereLimited,
}

/// How many sample keys a plan shows per target, data type and operation.
const SAMPLES: usize = 5;

/// What one run would send, computed without sending anything or changing
/// the ledger ([`Hub::plan`]); [`Hub::run_plan`] sends exactly it.
pub struct RunPlan {
    /// A hash of everything the run would send (data type, key, operation,
    /// version and content of each change): equal ids, equal runs.
    pub plan_id: String,
    /// Per target and data type, what the run would change there.
    pub targets: BTreeMap<String, BTreeMap<DataType, PlannedChanges>>,
    /// Why the run is held for approval (empty: it may go).
    pub hold: Vec<HoldReason>,
    /// Changes left out because a receiver would refuse them.
    pub rejected: Vec<RejectedChange>,
    /// Hires and departures the export dates after the run's day: not in
    /// this plan, applied by the first run on their day.
    pub scheduled: Vec<hr_core::Scheduled>,
    /// The id of the repairs alone, when the plan was made against a
    /// comparison of the targets: what an approval of this plan lets the
    /// run's repair step send.
    pub(super) repairs_id: Option<String>,
    pub(super) deltas: Vec<(DataType, Delta)>,
    /// Employees sent ahead to one target alone (`pre_start_days`), by target.
    pub(super) pre_hires: Vec<(String, Delta)>,
    pub(super) newer_wins: BTreeMap<DataType, NewerWins>,
    /// What the deltas were planned from where it is not the merged state
    /// given: the state as of the run's day, and per data type a state the
    /// hub derived (grants revoked, real-time changes put in). The deltas'
    /// payloads are made from them as they are sent.
    pub(super) dated: Option<MergedState>,
    pub(super) derived: BTreeMap<DataType, MergedState>,
}

impl std::fmt::Debug for RunPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPlan").field("plan_id", &self.plan_id).field("targets", &self.targets).field("hold", &self.hold).finish_non_exhaustive()
    }
}

impl RunPlan {
    /// A plan that sends nothing of its own (a run's repair step, after its changes went).
    pub(super) fn empty() -> Self {
        RunPlan {
            plan_id: String::new(),
            targets: BTreeMap::new(),
            hold: vec![],
            rejected: vec![],
            scheduled: vec![],
            repairs_id: None,
            deltas: vec![],
            pre_hires: vec![],
            newer_wins: BTreeMap::new(),
            dated: None,
            derived: BTreeMap::new(),
        }
    }

    /// How many changes the run would send (each once, whatever the fan-out),
    /// repairs not counted.
    pub fn changes(&self) -> usize {
        self.deltas.iter().map(|(_, d)| d).chain(self.pre_hires.iter().map(|(_, d)| d)).map(|d| d.changes.len()).sum()
    }

    /// Whether the run waits for a person's approval.
    pub fn is_held(&self) -> bool {
        !self.hold.is_empty()
    }

    /// The plan as JSON: its id, per target and data type what would change
    /// (with a few sample keys, sensitive ones redacted), and why it is held.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({"plan_id": self.plan_id, "changes": self.changes(), "targets": self.targets, "held": self.is_held(), "hold": self.hold, "rejected": self.rejected, "scheduled": self.scheduled})
    }

    /// What differs between `earlier` (a plan's `targets`, as
    /// [`summary`](Self::summary) and the audit log keep them) and this
    /// plan, per target, data type and operation (`erp/permission revoke: 40 -> 12`).
    pub fn differences_from(&self, earlier: &serde_json::Value) -> Vec<String> {
        let now = serde_json::to_value(&self.targets).unwrap_or_default();
        let count = |plan: &serde_json::Value, target: &str, t: &str, op: &str| plan[target][t][op].as_u64().unwrap_or(0);
        let mut places = std::collections::BTreeSet::new();
        for plan in [earlier, &now] {
            for (target, types) in plan.as_object().into_iter().flatten() {
                for t in types.as_object().into_iter().flatten().map(|(t, _)| t) {
                    places.insert((target.clone(), t.clone()));
                }
            }
        }
        let mut lines = vec![];
        for (target, t) in places {
            for op in OPERATIONS {
                let (before, after) = (count(earlier, &target, &t, op), count(&now, &target, &t, op));
                if before != after {
                    lines.push(format!("{target}/{t} {op}: {before} -> {after}"));
                }
            }
        }
        if lines.is_empty() {
            lines.push("the same counts, but other records or versions (the input or the systems changed since)".into());
        }
        lines
    }
}

/// The operations a plan counts, in the order it shows them.
pub(crate) const OPERATIONS: [&str; 7] = ["create", "update", "delete", "terminate", "transfer", "revoke", "repair"];

/// What a run would change in one target's records of one data type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlannedChanges {
    /// Live records of the type the target holds now (`None`: not counted,
    /// because no limit could be reached; a preview always counts).
    pub records: Option<u64>,
    /// Keys it would get that it does not hold.
    pub create: u64,
    /// Keys it holds that would change.
    pub update: u64,
    /// Keys it holds that would be deleted.
    pub delete: u64,
    /// Employees whose status would become `terminated`.
    pub terminate: u64,
    /// Employees who would move to another org unit.
    pub transfer: u64,
    /// Grants in force that would be revoked.
    pub revoke: u64,
    /// Keys the target holds otherwise than the hub sent them (missing,
    /// edited, or extra), which the run would send again; each is counted
    /// as a create, update or delete too.
    pub repair: u64,
    /// A few keys per operation (`[redacted]` for sensitive data types).
    pub samples: BTreeMap<&'static str, Vec<String>>,
}

impl PlannedChanges {
    /// Adds `other`'s counts and samples (the records held are the same target's).
    fn add(&mut self, other: PlannedChanges) {
        self.records = self.records.or(other.records);
        self.create += other.create;
        self.update += other.update;
        self.delete += other.delete;
        self.terminate += other.terminate;
        self.transfer += other.transfer;
        self.revoke += other.revoke;
        self.repair += other.repair;
        for (operation, keys) in other.samples {
            let samples = self.samples.entry(operation).or_default();
            samples.extend(keys.into_iter().take(SAMPLES.saturating_sub(samples.len())));
        }
    }

    fn count(&mut self, operation: &'static str, key: &str, sensitive: bool) {
        let counter = match operation {
            "create" => &mut self.create,
            "update" => &mut self.update,
            "delete" => &mut self.delete,
            "terminate" => &mut self.terminate,
            "transfer" => &mut self.transfer,
            "repair" => &mut self.repair,
            _ => &mut self.revoke,
        };
        *counter += 1;
        let samples = self.samples.entry(operation).or_default();
        if samples.len() < SAMPLES {
            samples.push(if sensitive { hr_core::REDACTED.into() } else { key.to_string() });
        }
    }
}

/// The merged states a run's deltas were planned from, by data type: what
/// their payloads are made from as they are sent (see [`Delta::envelopes`]).
#[derive(Clone, Copy)]
pub(super) struct PlannedFrom<'a> {
    derived: &'a BTreeMap<DataType, MergedState>,
    state: &'a MergedState,
}

impl<'a> PlannedFrom<'a> {
    /// `derived`'s state for the data types it has, `state` for the others.
    pub(super) fn new(derived: &'a BTreeMap<DataType, MergedState>, state: &'a MergedState) -> Self {
        PlannedFrom { derived, state }
    }

    /// The state `data_type`'s delta was planned from.
    pub(super) fn of(&self, data_type: DataType) -> &'a MergedState {
        self.derived.get(&data_type).unwrap_or(self.state)
    }
}

/// What the change `delta.changes[index]` does to the key it carries: its operations.
fn operations(hub: &Hub, data_type: DataType, delta: &Delta, index: usize) -> Result<Vec<&'static str>, HubError> {
    let change = &delta.changes[index];
    if change.op == Operation::Delete {
        return Ok(vec!["delete"]);
    }
    if delta.creates(index) {
        return Ok(vec!["create"]);
    }
    let mut ops = vec!["update"];
    if let (Some(now), Some(before)) = (delta.standing(index), hub.ledger.standing(data_type, &change.key)?) {
        match data_type {
            DataType::Employee => {
                if now.state == "terminated" && before.state != "terminated" {
                    ops.push("terminate");
                }
                if now.place != before.place {
                    ops.push("transfer");
                }
            }
            DataType::Permission if now.state == "revoked" && before.state == "granted" => ops.push("revoke"),
            _ => {}
        }
    }
    Ok(ops)
}

/// What a plan id hashes of a change's content: its content hash (a
/// delete has none), which stands for the payload without holding it.
fn content_of(delta: &Delta, index: usize) -> String {
    delta.content_hash(index).map(|h| h.to_hex()).unwrap_or_default()
}

/// The repairs one comparison of the targets calls for, per data type:
/// what to send again, and the keys left alone.
#[derive(Default)]
pub(super) struct Repairs {
    pub(super) send: BTreeMap<DataType, Vec<Repair>>,
    pub(super) unrepairable: BTreeMap<DataType, Vec<String>>,
    /// Employees a target holds as its own (pre-hires) found differing
    /// there, by target: sent again to it alone.
    pub(super) pre_hires: BTreeMap<String, Vec<String>>,
}

impl Repairs {
    /// The text a plan id hashes for the repairs: each key's data type,
    /// key and content (not its version, which is given when it is sent).
    fn identity(&self) -> String {
        let mut identity = String::new();
        for (t, repairs) in &self.send {
            for r in repairs {
                identity.push_str(&format!("repair\t{t}\t{}\t{}\n", r.key, r.payload.as_ref().map_or("", |p| p.get())));
            }
        }
        for (target, keys) in &self.pre_hires {
            for key in keys {
                identity.push_str(&format!("repair\tpre_hire\t{target}\t{key}\n"));
            }
        }
        identity
    }

    /// The repair of `key`, if one is sent (each type's repairs are in key order).
    fn sends(&self, data_type: DataType, key: &str) -> Option<&Repair> {
        let repairs = self.send.get(&data_type)?;
        repairs.binary_search_by(|r| r.key.as_str().cmp(key)).ok().map(|i| &repairs[i])
    }
}

impl Hub {
    /// Classifies `plan`'s deltas, and the `repairs` a comparison of the
    /// targets (`found`) calls for, per target; names them with a plan id
    /// and checks them against `[safety]` (repairs count).
    ///
    /// The run's changes and its repairs are checked against the limits
    /// each on its own, as a run checks them: its changes before they are
    /// sent, its repairs once the systems are compared after.
    pub(super) fn describe(&self, plan: &mut RunPlan, count: Counting, repairs: Option<(&Reconciliation, &Repairs)>) -> Result<(), HubError> {
        let (mut targets, mut identity) = blocking(|| self.classify(&plan.deltas, &plan.pre_hires))?;
        blocking(|| self.count_records(&mut targets, count))?;
        let mut hold = self.hold_reasons(&targets);
        if let Some((found, repairs)) = repairs {
            let repair_identity = repairs.identity();
            let mut repaired = BTreeMap::new();
            blocking(|| classify_repairs(&mut repaired, found, repairs));
            blocking(|| self.count_records(&mut repaired, count))?;
            hold.extend(self.hold_reasons(&repaired));
            for (name, types) in repaired {
                for (t, changes) in types {
                    targets.entry(name.clone()).or_default().entry(t).or_default().add(changes);
                }
            }
            plan.repairs_id = (!repair_identity.is_empty()).then(|| hr_core::ContentHash::of(&repair_identity).to_hex());
            let _ = identity.write_str(&repair_identity);
        }
        plan.plan_id = identity.finish().to_hex();
        plan.hold = if self.allow_mass_delete { vec![] } else { hold };
        plan.targets = targets;
        Ok(())
    }

    /// Per target and data type what `deltas` change there, and the plan
    /// id's hash of every change's type, key, operation, version and content.
    #[allow(clippy::type_complexity)]
    fn classify(
        &self,
        deltas: &[(DataType, Delta)],
        pre_hires: &[(String, Delta)],
    ) -> Result<(BTreeMap<String, BTreeMap<DataType, PlannedChanges>>, ContentHasher), HubError> {
        let mut targets: BTreeMap<String, BTreeMap<DataType, PlannedChanges>> = BTreeMap::new();
        let mut identity = ContentHasher::default();
        for (t, delta) in deltas {
            let receivers: Vec<(&str, hr_core::RecordScope)> = self.policy.targets_for(*t).into_iter().map(|name| (name, self.policy.scope(name))).collect();
            for (i, change) in delta.changes.iter().enumerate() {
                let _ = writeln!(identity, "{t}\t{}\t{:?}\t{}\t{}", change.key, change.op, change.version, content_of(delta, i));
                let ops = operations(self, *t, delta, i)?;
                for (name, _) in receivers.iter().filter(|(_, scope)| scope.admits(*t, &change.key)) {
                    let planned = targets.entry(name.to_string()).or_default().entry(*t).or_default();
                    for op in &ops {
                        planned.count(op, &change.key, t.is_sensitive());
                    }
                }
            }
        }
        for (name, delta) in pre_hires {
            let t = DataType::Employee;
            for (i, change) in delta.changes.iter().enumerate() {
                let _ = writeln!(identity, "{name}\t{t}\t{}\t{:?}\t{}\t{}", change.key, change.op, change.version, content_of(delta, i));
                let op = match (change.op, delta.creates(i)) {
                    (Operation::Delete, _) => "delete",
                    (Operation::Upsert, true) => "create",
                    (Operation::Upsert, false) => "update",
                };
                targets.entry(name.clone()).or_default().entry(t).or_default().count(op, &change.key, t.is_sensitive());
            }
        }
        Ok((targets, identity))
    }

    /// Fills in what each target holds where a limit could be reached (a
    /// preview: everywhere); counting reads every row of the type.
    fn count_records(&self, targets: &mut BTreeMap<String, BTreeMap<DataType, PlannedChanges>>, count: Counting) -> Result<(), HubError> {
        let mut whole_types: BTreeMap<DataType, u64> = BTreeMap::new();
        for (name, types) in targets {
            for (t, planned) in types.iter_mut() {
                let guarded = [planned.delete, planned.terminate, planned.revoke, planned.create + planned.update + planned.delete];
                if count == Counting::Always || guarded.iter().any(|n| *n > self.safety.min_records(name)) {
                    planned.records = Some(self.held_records(name, *t, &mut whole_types)?);
                }
            }
        }
        Ok(())
    }

    /// Live records of `data_type` that `target` holds, as the ledger says
    /// (the count of a type every target holds whole is made once).
    fn held_records(&self, target: &str, data_type: DataType, whole_types: &mut BTreeMap<DataType, u64>) -> Result<u64, HubError> {
        if self.policy.scope(target).admits_all(data_type) {
            if let Some(n) = whole_types.get(&data_type) {
                return Ok(*n);
            }
            let n = self.ledger.live_records(data_type)?;
            whole_types.insert(data_type, n);
            return Ok(n);
        }
        Ok(self.expected_entries(target, data_type)?.iter().filter(|e| e.content.is_some()).count() as u64)
    }

    fn hold_reasons(&self, targets: &BTreeMap<String, BTreeMap<DataType, PlannedChanges>>) -> Vec<HoldReason> {
        let mut reasons = vec![];
        for (name, types) in targets {
            for (t, c) in types {
                let Some(records) = c.records else { continue };
                let mut check = |kind, count| reasons.extend(self.safety.check(name, *t, kind, count, records));
                check(Guarded::Deletes, c.delete);
                check(Guarded::Terminations, c.terminate);
                check(Guarded::Revocations, c.revoke);
                if *t == DataType::Compensation {
                    check(Guarded::CompensationChanges, c.create + c.update + c.delete);
                }
            }
        }
        reasons
    }
}

/// Counts each repair where it changes something: in the targets whose
/// comparison found its key differing (a missing key is created there, an
/// extra one deleted, an edited one updated or deleted).
fn classify_repairs(targets: &mut BTreeMap<String, BTreeMap<DataType, PlannedChanges>>, found: &Reconciliation, repairs: &Repairs) {
    for (name, types) in found {
        for (t, reconciled) in types {
            let drift = &reconciled.drift;
            let missing = drift.missing.iter().map(|k| (k, true));
            for (k, is_missing) in missing.chain(drift.edited.iter().chain(&drift.extra).map(|k| (k, false))) {
                let Some(repair) = repairs.sends(*t, &k.key) else { continue };
                // A tombstone the target lacks deletes nothing there.
                let operation = match (&repair.payload, is_missing) {
                    (None, true) => None,
                    (None, false) => Some("delete"),
                    (Some(_), true) => Some("create"),
                    (Some(_), false) => Some("update"),
                };
                let planned = targets.entry(name.clone()).or_default().entry(*t).or_default();
                if let Some(operation) = operation {
                    planned.count(operation, &k.key, t.is_sensitive());
                }
                planned.count("repair", &k.key, t.is_sensitive());
            }
        }
    }
    for (name, keys) in &repairs.pre_hires {
        let planned = targets.entry(name.clone()).or_default().entry(DataType::Employee).or_default();
        for key in keys {
            planned.count("update", key, false);
            planned.count("repair", key, false);
        }
    }
}
