//! The merge of company A and company B into the unified schema (docs/input-contract.md, with the merge rules).

use crate::digest::ContentHash;
use crate::import::{PermissionOp, PersonKey, SourceData, SourceEmployee, SourceOrgUnit};
use crate::quarantine::{Quarantined, Reason};
use crate::rules::Scheduled;
use crate::schema::{Company, Compensation, DataType, Employee, EmployeeStatus, MasterData, OrgUnit, PermissionGrant, Record, RecordVisitor};
use crate::sensitive::Sensitive;
use compact_str::CompactString;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// The group root org unit.
pub const GROUP_ROOT: &str = "GROUP";

/// One record serialized as the envelopes carry it (or why it could not be).
pub type RecordJson = Result<Box<serde_json::value::RawValue>, serde_json::Error>;

/// The merged state of every data type, keyed and ordered by record key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedState {
    /// Employees by unified id.
    pub employees: BTreeMap<CompactString, Employee>,
    /// Org units by unified id (including `GROUP`, `A`, `B`).
    pub org_units: BTreeMap<CompactString, OrgUnit>,
    /// Master data by `<set>:<code>`.
    pub master_data: BTreeMap<CompactString, MasterData>,
    /// Current permission state by `<employee>:<system>:<role>`.
    pub permissions: BTreeMap<CompactString, PermissionGrant>,
    /// Compensation by employee id.
    pub compensation: BTreeMap<CompactString, Compensation>,
    /// When the source exported the files this state was merged from (see
    /// [`input::MANIFEST`](crate::input::MANIFEST)); `None` for a state
    /// built in code, which counts as exported when it is synced.
    pub exported_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What the merge learned about identities: each source id, and each
    /// person key (as a domain-separated hash, never the key), whose unified
    /// id the [`Identities`] it merged with did not already remember as
    /// such. Remembering them (see
    /// [`Ledger::remember_identities`](crate::Ledger::remember_identities))
    /// is what lets a person who left and comes back under another employee
    /// number keep their id. `None` for a state built in code: the ledger
    /// then remembers every employee's source ids. Never sent; hidden from
    /// `Debug`.
    pub learned_identities: Option<Sensitive<Vec<(CompactString, CompactString)>>>,
    /// Changes the export dates after the day it was merged for (a row
    /// whose effective date is later), each on its day; see
    /// [`scheduled`](Self::scheduled).
    pub scheduled_changes: Vec<Scheduled>,
    /// Company A's offset from UTC in hours (`mapping.toml`), which its
    /// people's dates are judged in (see [`days`](Self::days)); 0 for a
    /// state built in code.
    pub company_a_utc_offset_hours: i32,
}

impl MergedState {
    /// Each company's day now by this state's offsets, or `fixed` in both
    /// (see [`as_of`](Self::as_of)).
    pub fn days(&self, fixed: Option<chrono::NaiveDate>) -> crate::CompanyDays {
        crate::CompanyDays::at(self.company_a_utc_offset_hours, fixed)
    }

    /// Number of records of a data type.
    pub fn count(&self, data_type: DataType) -> usize {
        struct Count<'a>(&'a MergedState);
        impl RecordVisitor for Count<'_> {
            type Output = usize;
            fn visit<R: Record>(self) -> usize {
                R::map(self.0).len()
            }
        }
        data_type.visit(Count(self))
    }

    /// Revokes every grant no longer in force on `today` because it expired,
    /// as of the instant it lapsed; returns the keys revoked.
    pub fn revoke_expired(&mut self, today: chrono::NaiveDate) -> Vec<String> {
        let mut revoked = vec![];
        for (key, grant) in &mut self.permissions {
            if grant.granted && !grant.in_force_on(today) {
                if let Some(lapsed) = grant.lapses_at() {
                    *grant = grant.revoked(lapsed);
                    revoked.push(key.to_string());
                }
            }
        }
        revoked
    }

    /// A state holding only `data_type`'s records, copied from this one.
    pub fn only(&self, data_type: DataType) -> MergedState {
        struct Copy<'a>(&'a MergedState);
        impl RecordVisitor for Copy<'_> {
            type Output = MergedState;
            fn visit<R: Record>(self) -> MergedState {
                let source = self.0;
                let mut only =
                    MergedState { exported_at: source.exported_at, company_a_utc_offset_hours: source.company_a_utc_offset_hours, ..MergedState::default() };
                *R::map_mut(&mut only) = R::map(self.0).clone();
                only
            }
        }
        data_type.visit(Copy(self))
    }

    /// One record as its JSON payload, if the state holds it.
    pub fn record(&self, data_type: DataType, key: &str) -> Option<RecordJson> {
        struct One<'a>(&'a MergedState, &'a str);
        impl RecordVisitor for One<'_> {
            type Output = Option<RecordJson>;
            fn visit<R: Record>(self) -> Option<RecordJson> {
                R::map(self.0).get(self.1).map(serde_json::value::to_raw_value)
            }
        }
        data_type.visit(One(self, key))
    }

    /// Calls `each` with every record's key and content hash, in key order,
    /// every record serialized into one reused buffer (no copy of it is
    /// made); stops when `each` breaks or at the first record that cannot
    /// be serialized.
    pub(crate) fn hash_each<'a>(&'a self, data_type: DataType, each: impl FnMut(&'a str, ContentHash) -> ControlFlow<()>) -> Result<(), serde_json::Error> {
        struct Hashes<'a, F>(&'a MergedState, F);
        impl<'a, F: FnMut(&'a str, ContentHash) -> ControlFlow<()>> RecordVisitor for Hashes<'a, F> {
            type Output = Result<(), serde_json::Error>;
            fn visit<R: Record>(self) -> Self::Output {
                let Hashes(state, mut each) = self;
                let mut buffer = Vec::with_capacity(4096);
                for (key, record) in R::map(state) {
                    buffer.clear();
                    serde_json::to_writer(&mut buffer, record)?;
                    if each(key, ContentHash::of_bytes(&buffer)).is_break() {
                        break;
                    }
                }
                Ok(())
            }
        }
        data_type.visit(Hashes(self, each))
    }

    /// The records of one data type as `(key, JSON payload)` in key order:
    /// what the ledger compares and the envelopes carry.
    pub fn records(&self, data_type: DataType) -> Box<dyn Iterator<Item = (&str, RecordJson)> + '_> {
        struct All<'a>(&'a MergedState);
        impl<'a> RecordVisitor for All<'a> {
            type Output = Box<dyn Iterator<Item = (&'a str, RecordJson)> + 'a>;
            fn visit<R: Record>(self) -> Self::Output {
                Box::new(R::map(self.0).iter().map(|(k, v)| (k.as_str(), serde_json::value::to_raw_value(v))))
            }
        }
        data_type.visit(All(self))
    }
}

/// What a [`Conflict`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConflictKind {
    /// Same name and birth date, but no shared person key: maybe one person.
    PossibleDuplicatePerson,
}

/// What a [`Warning`] repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningKind {
    /// The manager is not a known employee; kept without manager.
    UnknownManager,
    /// The org unit's leader is not a known employee; kept without leader.
    UnknownLeader,
    /// The employee is their own manager; kept without manager.
    SelfManager,
}

/// Two records a person should look at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conflict {
    /// What it is about.
    pub kind: ConflictKind,
    /// The unified ids involved, sorted.
    pub ids: Vec<String>,
    /// Why.
    pub detail: String,
}

/// A record kept with a repair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Warning {
    /// What was repaired.
    pub kind: WarningKind,
    /// The record kept.
    pub id: String,
    /// What was repaired.
    pub detail: String,
}

/// What the merge did besides producing the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Records per data type after merge.
    pub counts: BTreeMap<DataType, usize>,
    /// Persons found in more than one source record (by person key).
    pub matched_persons: usize,
    /// Every record set aside, sorted by file and line.
    pub quarantined: Vec<Quarantined>,
    /// Every conflict for a person to review.
    pub conflicts: Vec<Conflict>,
    /// Grants revoked because their holder's status is terminated.
    #[serde(default)]
    pub revoked_for_leavers: usize,
    /// Every repair.
    pub warnings: Vec<Warning>,
    /// Rows that take effect on a later day, of people with no row in
    /// effect yet: what the systems hold of them stays until then.
    #[serde(default)]
    pub not_yet_effective: Vec<Quarantined>,
}

/// Merged state and report.
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    /// The unified records.
    pub state: MergedState,
    /// What happened.
    pub report: MergeReport,
}

/// Every person's lifelong unified id, by source id (`A-…`, `B-…`) and by
/// person key (a hash of it: a person who left and comes back under
/// another employee number is the same person).
///
/// A person keeps the unified id they were first given, whichever of their
/// records is primary later (a move from company A to company B is an update
/// of the same employee, not a departure and a joiner); the ids of their
/// other records stay aliases that references resolve through. The hub keeps
/// this map beside its ledger ([`Ledger::identities`](crate::Ledger::identities)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities(FxHashMap<String, String>);

impl Identities {
    /// The unified id of a source id: the remembered one, else the source id itself.
    pub fn unified<'a>(&'a self, source_id: &'a str) -> &'a str {
        self.0.get(source_id).map(String::as_str).unwrap_or(source_id)
    }

    /// The remembered unified id of a source id, if any.
    pub fn get(&self, source_id: &str) -> Option<&str> {
        self.0.get(source_id).map(String::as_str)
    }

    /// Every remembered id (a source id, or `key:` and a hash of a person
    /// key) with its unified id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The employee `unified` was decided to be the same person as (a
    /// review case decided `same`, see
    /// [`Ledger::decide_case`](crate::Ledger::decide_case)): the merge
    /// joins their records under that id.
    pub fn joined_into(&self, unified: &str) -> Option<&str> {
        self.get(&joined_identity(unified))
    }
}

/// The identity a `same` decision is remembered by: `same:` and the id of
/// the employee joined into another.
pub(crate) fn joined_identity(unified: &str) -> String {
    format!("same:{unified}")
}

impl FromIterator<(String, String)> for Identities {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Identities(iter.into_iter().collect())
    }
}

/// Merges what [`load_input_dir`](crate::load_input_dir) read, with no
/// remembered identities (a first run).
///
/// Deterministic: every choice is made on record content, never on input
/// order, so any row order gives the same state.
pub fn merge(source: SourceData) -> MergeOutcome {
    merge_with_identities(source, &Identities::default())
}

/// [`merge`], keeping every person's remembered unified id (see [`Identities`]).
pub fn merge_with_identities(mut source: SourceData, identities: &Identities) -> MergeOutcome {
    let days = crate::CompanyDays::at(source.a_utc_offset_hours, source.today);
    let scheduled_rows = source.take_scheduled();
    let scheduled_grants = source.take_scheduled_grants();
    let mut quarantined = source.quarantined;
    let mut warnings = Vec::new();
    let (valid_units, employees) = latest_units_and_employees(source.org_units, source.employees, &mut quarantined);
    let placed = place_in_units(employees, &valid_units, &mut quarantined);

    let (persons, matched_persons) = match_persons(&placed);
    let key_identities: Vec<Option<CompactString>> = placed.iter().map(|r| r.person_key.as_ref().map(|k| person_key_identity(k.expose()))).collect();
    let persons = assign_unified_ids(persons, &placed, &key_identities, identities);
    let persons = join_decided(persons, &placed, identities);
    let (not_yet_effective, scheduled_changes) = scheduled_changes(&scheduled_rows, &scheduled_grants, &persons, &placed, identities);
    let mut held = held_persons(&quarantined, identities);
    // Someone the systems may hold is held as they have them; someone new does not exist until
    // their day, and neither do their grants.
    let (known, hires): (Vec<&str>, Vec<&str>) = not_yet_effective.iter().filter_map(|q| q.id.as_deref()).partition(|id| identities.get(id).is_some());
    held.extend(known.into_iter().map(|id| identities.unified(id).into()));
    let not_hired_yet: FxHashSet<&str> = hires.into_iter().collect();
    let mut state =
        MergedState { exported_at: source.exported_at, scheduled_changes, company_a_utc_offset_hours: source.a_utc_offset_hours, ..MergedState::default() };
    state.learned_identities = Some(Sensitive::new(learned_identities(&persons, &placed, &key_identities, identities)));
    // Every reference is resolved while the records are whole; then their text moves into the merged records.
    // Three independent steps once the references are known: duplicates, org units, and managers with grants.
    let (conflicts, managers) = std::thread::scope(|scope| {
        let conflicts = scope.spawn(|| possible_duplicates(&persons, &placed));
        let refs = References::new(&persons, &placed, &held, identities);
        let managers = std::thread::scope(|scope| {
            let org_units = scope.spawn(|| {
                let mut unit_warnings = Vec::new();
                (build_org_units(valid_units, &refs, &mut unit_warnings), unit_warnings)
            });
            let managers = resolve_managers(&persons, &placed, &held, &refs, &mut warnings);
            state.permissions = merge_permissions(source.permissions, &refs, &not_hired_yet, &mut quarantined);
            // A panic in a step is a bug, never caused by input (the fuzz tests hold that).
            let (org_units, unit_warnings) = org_units.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            state.org_units = org_units;
            warnings.extend(unit_warnings);
            managers
        });
        (conflicts.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), managers)
    });
    build_people(persons, placed, managers, &held, &mut state);
    state.master_data = merge_master_data(source.master_data, &mut quarantined);
    let revoked_for_leavers = revoke_grants_of_leavers(&state.employees, &mut state.permissions, days);

    quarantined.sort();
    warnings.sort();
    let counts = DataType::ALL.iter().map(|&t| (t, state.count(t))).collect();
    MergeOutcome { report: MergeReport { counts, matched_persons, quarantined, conflicts, revoked_for_leavers, warnings, not_yet_effective }, state }
}

/// The rows and grant lines set aside until their day (see
/// [`SourceData::take_scheduled`]), each as a change of its person on that
/// day, by day; and the rows of people with no row in effect, as entries
/// that hold the person back meanwhile.
fn scheduled_changes(
    rows: &[SourceEmployee],
    grants: &[crate::import::SourcePermission],
    persons: &[Person],
    records: &[SourceEmployee],
    identities: &Identities,
) -> (Vec<Quarantined>, Vec<Scheduled>) {
    if rows.is_empty() && grants.is_empty() {
        return (vec![], vec![]);
    }
    let unified_of: FxHashMap<&str, &str> = persons.iter().flat_map(|p| p.of(records).map(move |r| (r.source_id.as_str(), p.id.as_str()))).collect();
    let present: FxHashSet<&str> = persons.iter().map(|p| p.id.as_str()).collect();
    let (mut waiting, mut changes) = (vec![], vec![]);
    for row in rows {
        let Some(on) = row.effective_date else { continue };
        let in_effect = unified_of.get(row.source_id.as_str()).copied();
        let employee = in_effect.unwrap_or_else(|| identities.unified(&row.source_id));
        let change = match row.status {
            EmployeeStatus::Terminated => "departure",
            _ if in_effect.is_none() && identities.get(&row.source_id).is_none() => "hire",
            _ => "change",
        };
        changes.push(Scheduled { on, employee: employee.to_string(), change, grant: None, target: None });
        if !present.contains(employee) {
            waiting.push(row.origin.quarantine(Some(row.source_id.to_string()), Reason::NotYetEffective, format!("takes effect on {on}")));
        }
    }
    for line in grants {
        let Some(on) = line.effective else { continue };
        let employee = unified_of.get(line.employee.as_str()).copied().unwrap_or_else(|| identities.unified(&line.employee));
        let change = if line.op == PermissionOp::Grant { "grant" } else { "revocation" };
        changes.push(Scheduled { on, employee: employee.to_string(), change, grant: Some(format!("{}:{}", line.system, line.role)), target: None });
    }
    changes.sort();
    (waiting, changes)
}

/// The latest row of each org unit (with the tree checked) and of each
/// employee source id. The two are independent: one thread each.
fn latest_units_and_employees(
    org_units: Vec<SourceOrgUnit>,
    employees: Vec<SourceEmployee>,
    quarantined: &mut Vec<Quarantined>,
) -> (Vec<SourceOrgUnit>, Vec<SourceEmployee>) {
    let ((valid_units, unit_quarantine), employees) = std::thread::scope(|scope| {
        let units = scope.spawn(|| {
            let mut q = Vec::new();
            let org_units = keep_latest_per_id(org_units, |u| &u.id, |u| (u.updated_at, org_fingerprint(u)), &mut q);
            (validate_org_tree(org_units, &mut q), q)
        });
        let employees = keep_latest_per_id(employees, |e| &e.source_id, |e| (e.updated_at, employee_fingerprint(e)), quarantined);
        // A panic here is a bug, never caused by input (the fuzz tests hold that).
        (units.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), employees)
    });
    quarantined.extend(unit_quarantine);
    (valid_units, employees)
}

/// Employees whose org unit exists; the others are quarantined.
fn place_in_units(mut employees: Vec<SourceEmployee>, units: &[SourceOrgUnit], quarantined: &mut Vec<Quarantined>) -> Vec<SourceEmployee> {
    let unit_ids: FxHashSet<&str> = units.iter().map(|u| u.id.as_str()).collect();
    employees.retain(|e| {
        let placed = unit_ids.contains(e.org_unit.as_str());
        if !placed {
            let detail = format!("org unit {} does not exist or was quarantined", e.org_unit);
            quarantined.push(e.origin.quarantine(Some(e.source_id.to_string()), Reason::UnknownOrgUnit, detail));
        }
        placed
    });
    employees
}

/// Each person's manager, resolved to a unified id (`None` for a person
/// held back: no record is built for them).
fn resolve_managers(
    persons: &[Person],
    records: &[SourceEmployee],
    held: &FxHashSet<CompactString>,
    refs: &References<'_>,
    warnings: &mut Vec<Warning>,
) -> Vec<Option<CompactString>> {
    persons.iter().map(|person| if held.contains(&person.id) { None } else { resolve_manager(person, records, refs, warnings) }).collect()
}

fn resolve_manager(person: &Person, records: &[SourceEmployee], refs: &References<'_>, warnings: &mut Vec<Warning>) -> Option<CompactString> {
    let id = &person.id;
    let written = person.records.iter().find_map(|&r| records[r].manager_source_id.as_deref())?;
    match refs.resolve(written) {
        None => {
            warnings.push(Warning {
                kind: WarningKind::UnknownManager,
                id: id.to_string(),
                detail: format!("manager {written} is not a known employee; kept without manager"),
            });
            None
        }
        Some(resolved) if resolved == *id => {
            warnings.push(Warning {
                kind: WarningKind::SelfManager,
                id: id.to_string(),
                detail: format!("manager {written} is the employee; kept without manager"),
            });
            None
        }
        Some(resolved) => Some(resolved),
    }
}

/// Each person's employee record and pay into `state` (a person with a
/// quarantined row keeps their last good record: none is built from the
/// rest), moving the records' text rather than copying it.
fn build_people(
    persons: Vec<Person>,
    mut records: Vec<SourceEmployee>,
    managers: Vec<Option<CompactString>>,
    held: &FxHashSet<CompactString>,
    state: &mut MergedState,
) {
    // Persons are sorted by unified id, so both maps are built in one pass.
    let mut employees = Vec::with_capacity(persons.len());
    let mut compensation = Vec::with_capacity(persons.len());
    for (person, manager) in persons.into_iter().zip(managers).filter(|(p, _)| !held.contains(&p.id)) {
        let (employee, pay) = build_employee(person, &mut records, manager);
        if let Some(c) = pay {
            compensation.push((c.employee_id.clone(), c));
        }
        employees.push((employee.id.clone(), employee));
    }
    // What is left of the source records (their shells, manager ids) is not needed for the maps.
    drop(records);
    // Two maps of a million records each take a while to build: one on each core.
    std::thread::scope(|scope| {
        let built = scope.spawn(|| compensation.into_iter().collect());
        state.employees = employees.into_iter().collect();
        state.compensation = built.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

/// The three roots and every valid unit, its leader resolved to a unified id.
fn build_org_units(mut valid_units: Vec<SourceOrgUnit>, refs: &References<'_>, warnings: &mut Vec<Warning>) -> BTreeMap<CompactString, OrgUnit> {
    // In id order, so that the map is built in one pass; the units' text moves out rather than being copied.
    let order = positions_in_order(&valid_units, |u| &u.id);
    let mut out: Vec<(CompactString, OrgUnit)> = Vec::with_capacity(valid_units.len() + 3);
    for i in order {
        let unit = &mut valid_units[i];
        let id = std::mem::take(&mut unit.id);
        let leader = unit.leader_source_id.as_ref().and_then(|l| {
            let resolved = refs.resolve(l);
            if resolved.is_none() {
                warnings.push(Warning {
                    kind: WarningKind::UnknownLeader,
                    id: id.to_string(),
                    detail: format!("leader {l} is not a known employee; kept without leader"),
                });
            }
            resolved
        });
        let parent = unit.parent.take().unwrap_or_else(|| unit.company.as_str().into());
        let name = std::mem::take(&mut unit.name);
        out.push((id.clone(), OrgUnit { id, company: Some(unit.company), name, parent: Some(parent), leader, updated_at: Some(unit.updated_at) }));
    }
    // Sorted but for the roots at the end (unit ids are prefixed, `A-`/`B-`,
    // so none is a root's id): collecting sorts by merging the two runs and
    // builds the map in one pass, without a search per key.
    out.extend(roots().map(|root| (root.id.clone(), root)));
    out.into_iter().collect()
}

/// One row per `<set>:<code>`. `master_data.csv` has no timestamps, so the
/// content-greatest row wins and row order never matters; the others are
/// quarantined as duplicates.
fn merge_master_data(rows: Vec<crate::import::SourceMasterData>, quarantined: &mut Vec<Quarantined>) -> BTreeMap<CompactString, MasterData> {
    let mut by_key: BTreeMap<CompactString, Vec<crate::import::SourceMasterData>> = BTreeMap::new();
    for md in rows {
        by_key.entry(compact_str::format_compact!("{}:{}", md.set, md.code)).or_default().push(md);
    }
    let mut out = BTreeMap::new();
    for (key, mut rows) in by_key {
        rows.sort_by(|a, b| (&b.name, &b.attributes, &b.origin).cmp(&(&a.name, &a.attributes, &a.origin)));
        let mut rows = rows.into_iter();
        let Some(winner) = rows.next() else { continue };
        for loser in rows {
            quarantined.push(loser.origin.quarantine(
                Some(key.to_string()),
                Reason::DuplicateSourceId,
                format!("another row of {}:{} is kept", winner.set, winner.code),
            ));
        }
        out.insert(key, MasterData { set: winner.set, code: winner.code, name: winner.name, attributes: winner.attributes });
    }
    out
}

/// The current grant state per `<employee>:<system>:<role>`: the latest
/// event wins, and at the same instant a revocation beats a grant. An event
/// for an unknown employee is quarantined, except one for a new hire whose
/// row takes effect later (`not_hired_yet`): it waits with them.
fn merge_permissions(
    events: Vec<crate::import::SourcePermission>,
    refs: &References<'_>,
    not_hired_yet: &FxHashSet<&str>,
    quarantined: &mut Vec<Quarantined>,
) -> BTreeMap<CompactString, PermissionGrant> {
    let mut out: BTreeMap<CompactString, PermissionGrant> = BTreeMap::new();
    for p in events {
        let Some(employee) = refs.resolve(&p.employee) else {
            // A new hire whose row takes effect later: their grants wait with them (listed as the hire).
            if not_hired_yet.contains(p.employee.as_str()) {
                continue;
            }
            quarantined.push(p.origin.quarantine(
                Some(format!("{}:{}:{}", p.employee, p.system, p.role)),
                Reason::MalformedRow,
                format!("field `employee`: {} is not a known employee", p.employee),
            ));
            continue;
        };
        let grant = PermissionGrant { employee, system: p.system, role: p.role, granted: p.op == PermissionOp::Grant, expires: p.expires, at: p.at };
        let key = CompactString::from(grant.key());
        if out.get(&key).is_none_or(|held| grant.supersedes(held)) {
            out.insert(key, grant);
        }
    }
    out
}

/// A leaver holds no access: every grant of a terminated employee is
/// revoked, as of when the termination was recorded. Returns how many.
/// A leaver whose last day is their company's day or later keeps access
/// through it: the first run after it revokes ([`MergedState::as_of`]).
fn revoke_grants_of_leavers(
    employees: &BTreeMap<CompactString, Employee>,
    permissions: &mut BTreeMap<CompactString, PermissionGrant>,
    days: crate::CompanyDays,
) -> usize {
    let mut revoked = 0;
    for grant in permissions.values_mut() {
        let Some(holder) = employees.get(&grant.employee) else { continue };
        if grant.granted && holder.status == EmployeeStatus::Terminated && holder.termination_date.is_none_or(|last| last < days.of(holder.company)) {
            *grant = grant.revoked(holder.updated_at);
            revoked += 1;
        }
    }
    revoked
}

fn roots() -> [OrgUnit; 3] {
    let root = |id: &str, company, name: &str, parent: Option<&str>| OrgUnit {
        id: id.into(),
        company,
        name: name.into(),
        parent: parent.map(CompactString::from),
        leader: None,
        updated_at: None,
    };
    [
        root(GROUP_ROOT, None, "Group", None),
        root("A", Some(Company::A), "Company A", Some(GROUP_ROOT)),
        root("B", Some(Company::B), "Company B", Some(GROUP_ROOT)),
    ]
}

/// Keeps, per id, the record with the greatest `rank`; quarantines the
/// rest. The records kept stay in their order, in place.
fn keep_latest_per_id<T, R: Ord>(mut records: Vec<T>, id: impl Fn(&T) -> &str, rank: impl Fn(&T) -> R, quarantined: &mut Vec<Quarantined>) -> Vec<T>
where
    T: HasOrigin,
{
    // Sort positions, not records (records are large), and rank only within
    // a shared id (ranking builds a fingerprint).
    let mut order: Vec<(ByteOrder<'_>, usize)> = records.iter().enumerate().map(|(i, r)| (ByteOrder::of(id(r)), i)).collect();
    // Of two rows alike in every field, the earlier one is kept.
    order.sort_unstable_by(|(a_id, a), (b_id, b)| a_id.cmp(b_id).then_with(|| rank(&records[*b]).cmp(&rank(&records[*a]))).then(a.cmp(b)));
    let mut dropped = vec![false; records.len()];
    // Ranked best first within an id: the first of each run of equal ids wins.
    for same_id in order.chunk_by(|(a, _), (b, _)| a == b) {
        let winner = &records[same_id[0].1];
        for &(_, index) in &same_id[1..] {
            let key = id(&records[index]);
            quarantined.push(records[index].origin().quarantine(
                Some(key.to_string()),
                Reason::DuplicateSourceId,
                format!("{key} appears again at {} line {}, which is kept (latest updated_at)", winner.origin().file, winner.origin().line),
            ));
            dropped[index] = true;
        }
    }
    drop(order);
    let mut position = 0;
    records.retain(|_| {
        position += 1;
        !dropped[position - 1]
    });
    records
}

/// A string's position in byte order: its first eight bytes as a
/// big-endian integer, then the whole string. Sorting by it orders exactly
/// as by the string, and most comparisons end at the integer, held in the
/// sorted element itself, without reading the string's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ByteOrder<'a>(u64, &'a str);

impl<'a> ByteOrder<'a> {
    fn of(s: &'a str) -> Self {
        let mut head = [0u8; 8];
        let n = s.len().min(8);
        head[..n].copy_from_slice(&s.as_bytes()[..n]);
        ByteOrder(u64::from_be_bytes(head), s)
    }
}

trait HasOrigin {
    fn origin(&self) -> &crate::quarantine::Origin;
}
impl HasOrigin for SourceEmployee {
    fn origin(&self) -> &crate::quarantine::Origin {
        &self.origin
    }
}
impl HasOrigin for SourceOrgUnit {
    fn origin(&self) -> &crate::quarantine::Origin {
        &self.origin
    }
}

fn org_fingerprint(u: &SourceOrgUnit) -> (CompactString, Option<CompactString>, Option<CompactString>) {
    (u.name.clone(), u.parent.clone(), u.leader_source_id.clone())
}

/// Every field's content, sensitive ones included, so ties never depend on row order.
fn employee_fingerprint(e: &SourceEmployee) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{}|{:?}|{:?}",
        e.name,
        e.name_en,
        e.email,
        e.phone.as_ref().map(|p| p.expose()),
        e.birth_date.as_ref().map(|b| *b.expose()),
        e.person_key.as_ref().map(|k| const_hex::encode(k.expose())),
        e.org_unit,
        e.grade,
        e.status,
        e.hire_date,
        e.manager_source_id,
        e.salary.as_ref().map(|(a, c)| (*a.expose(), c)),
    )
}

/// Removes dangling parents and cycles until the tree is sound.
fn validate_org_tree(mut units: Vec<SourceOrgUnit>, quarantined: &mut Vec<Quarantined>) -> Vec<SourceOrgUnit> {
    loop {
        let tree = UnitTree::of(&units);
        // Dangling parents first, repeated because removing one orphans its children.
        let (reason, removed) = match tree.dangling.is_empty() {
            true => (Reason::OrgCycle, tree.in_cycles()),
            false => (Reason::DanglingParent, tree.dangling),
        };
        if removed.is_empty() {
            return units;
        }
        let mut remove = vec![false; units.len()];
        removed.into_iter().for_each(|position| remove[position] = true);
        let mut position = 0;
        units.retain_mut(|u| {
            position += 1;
            if !remove[position - 1] {
                return true;
            }
            let detail = match reason {
                Reason::DanglingParent => format!("parent {} does not exist or was quarantined", unit_parent(u)),
                _ => "the unit's parent chain loops back to itself".to_string(),
            };
            quarantined.push(u.origin.quarantine(Some(std::mem::take(&mut u.id).into()), reason, detail));
            false
        });
    }
}

/// The unit's parent id, or its company's root (no unit has a root's id:
/// unit ids are prefixed, `A-`/`B-`).
fn unit_parent(u: &SourceOrgUnit) -> &str {
    u.parent.as_deref().unwrap_or(u.company.as_str())
}

/// The org units as their positions in a slice, each with its parent's
/// position: one hash lookup per unit, so the walks in
/// [`in_cycles`](Self::in_cycles) touch only vectors, which a million
/// teams walk far faster than string-keyed maps.
struct UnitTree {
    /// `None`: the unit hangs under its company's root (or its parent dangles).
    parents: Vec<Option<usize>>,
    /// Units whose parent is neither a unit nor their company's root.
    dangling: Vec<usize>,
}

impl UnitTree {
    fn of(units: &[SourceOrgUnit]) -> Self {
        let position: FxHashMap<&str, usize> = units.iter().enumerate().map(|(i, u)| (u.id.as_str(), i)).collect();
        let mut dangling = Vec::new();
        let parents = units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let parent = unit_parent(u);
                if parent == u.company.as_str() {
                    return None;
                }
                let found = position.get(parent).copied();
                if found.is_none() {
                    dangling.push(i);
                }
                found
            })
            .collect();
        UnitTree { parents, dangling }
    }

    /// The positions of the units on a cycle: a walk up from every unit
    /// that revisits a unit of its own path found one; a walk ends at a
    /// company root or at a unit already known to reach one.
    fn in_cycles(&self) -> Vec<usize> {
        const ON_PATH: u8 = 1;
        const REACHES_ROOT: u8 = 2;
        let mut state = vec![0u8; self.parents.len()];
        let mut path: Vec<usize> = Vec::new();
        let mut in_cycle = Vec::new();
        for start in 0..self.parents.len() {
            path.clear();
            let mut current = Some(start);
            while let Some(unit) = current {
                if state[unit] == REACHES_ROOT {
                    break;
                }
                if state[unit] == ON_PATH {
                    let from = path.iter().position(|&p| p == unit).unwrap_or(0);
                    in_cycle.extend_from_slice(&path[from..]);
                    break;
                }
                state[unit] = ON_PATH;
                path.push(unit);
                current = self.parents[unit];
            }
            for &unit in &path {
                state[unit] = REACHES_ROOT;
            }
        }
        in_cycle
    }
}

/// One person: the positions of their records among the employees read,
/// the primary record first.
struct Person {
    records: Vec<usize>,
    /// The unified id (see [`assign_unified_ids`]).
    id: CompactString,
}

impl Person {
    /// Their records, the primary first.
    fn of<'p, 'r>(&'p self, records: &'r [SourceEmployee]) -> impl Iterator<Item = &'r SourceEmployee> + use<'p, 'r> {
        self.records.iter().map(move |&r| &records[r])
    }

    fn primary<'r>(&self, records: &'r [SourceEmployee]) -> &'r SourceEmployee {
        &records[self.records[0]]
    }
}

/// The identity [`Identities`] and the ledger remember a person key by: a
/// domain-separated hash of it (`key:` and 32 hex digits), never the key,
/// so the ledger holds nothing that links to another system's hash of a
/// national id.
pub(crate) fn person_key_identity(key: &[u8; 32]) -> CompactString {
    use sha2::Digest as _;
    let hash = sha2::Sha256::new().chain_update(b"hr-sync person identity\0").chain_update(key).finalize();
    let mut identity = [0u8; 4 + 32];
    identity[..4].copy_from_slice(b"key:");
    // Cannot fail: the buffer holds exactly 16 bytes' hex digits.
    let _ = const_hex::encode_to_slice(&hash[..16], &mut identity[4..]);
    CompactString::from_utf8_lossy(&identity)
}

/// The unified ids remembered for `person`'s records: by each one's source
/// id, and by its person key's identity (`key_identities[r]` for record `r`).
fn remembered<'i, 'a>(
    identities: &'i Identities,
    records: &'a [SourceEmployee],
    key_identities: &'a [Option<CompactString>],
    person: &'a Person,
) -> impl Iterator<Item = &'i str> + use<'i, 'a> {
    person.records.iter().flat_map(move |&r| {
        let by_key = key_identities[r].as_deref().and_then(|k| identities.get(k));
        identities.get(&records[r].source_id).into_iter().chain(by_key)
    })
}

/// Each source id and person-key identity of `persons` whose unified id
/// `identities` does not already remember as such.
fn learned_identities(
    persons: &[Person],
    records: &[SourceEmployee],
    key_identities: &[Option<CompactString>],
    identities: &Identities,
) -> Vec<(CompactString, CompactString)> {
    let mut learned = Vec::new();
    for person in persons {
        for &r in &person.records {
            let ids = std::iter::once(&records[r].source_id).chain(key_identities[r].as_ref());
            learned.extend(ids.filter(|id| identities.get(id) != Some(person.id.as_str())).map(|id| (id.clone(), person.id.clone())));
        }
    }
    learned
}

/// Gives every person a unified id and sorts them by it. Without remembered
/// identities that is the primary record's source id. With them, a person
/// first takes the remembered id of one of their records that is itself one
/// of their source ids (the anchor of their identity), then a remembered id
/// whose own record is gone from the input, then their own source ids, the
/// first one free in that order. A source id present in the input is only
/// ever its own person's, so every person finds a free id, each id goes to
/// one person, and the choice depends on content, not on row order.
fn assign_unified_ids(mut persons: Vec<Person>, records: &[SourceEmployee], key_identities: &[Option<CompactString>], identities: &Identities) -> Vec<Person> {
    if identities.is_empty() {
        return persons;
    }
    let present: FxHashSet<&str> = records.iter().map(|r| r.source_id.as_str()).collect();
    let own = |p: &Person, id: &str| p.of(records).any(|r| r.source_id == id);
    let mut ids: Vec<Option<CompactString>> = vec![None; persons.len()];
    let mut taken: FxHashSet<CompactString> = FxHashSet::default();
    for (person, id) in persons.iter().zip(ids.iter_mut()) {
        if let Some(anchor) = remembered(identities, records, key_identities, person).find(|u| own(person, u)) {
            taken.insert(anchor.into());
            *id = Some(anchor.into());
        }
    }
    for (person, id) in persons.iter().zip(ids.iter_mut()).filter(|(_, id)| id.is_none()) {
        let remembered = remembered(identities, records, key_identities, person).filter(|u| !present.contains(u));
        let chosen = remembered
            .chain(person.of(records).map(|r| r.source_id.as_str()))
            .find(|c| !taken.contains(*c))
            .unwrap_or(person.primary(records).source_id.as_str());
        let chosen = CompactString::from(chosen);
        taken.insert(chosen.clone());
        *id = Some(chosen);
    }
    for (person, id) in persons.iter_mut().zip(ids) {
        person.id = id.unwrap_or_else(|| person.primary(records).source_id.clone());
    }
    sorted_by(persons, |p| &p.id)
}

/// Joins each person a review case decided is the same as another into
/// that other, under the survivor's id, the records ranked again as a
/// person-key match ranks them (an active record is primary, so a leaver of
/// one company who joined the other is active); one whose survivor has no
/// record this run takes the survivor's id. Decisions chain (a joined into
/// b joined into c ends in c).
fn join_decided(mut persons: Vec<Person>, records: &[SourceEmployee], identities: &Identities) -> Vec<Person> {
    if !identities.iter().any(|(id, _)| id.starts_with("same:")) {
        return persons;
    }
    let survivor_of = |id: &str| {
        let mut current = id.to_string();
        // At most one step per person: a cycle cannot loop.
        for _ in 0..=persons.len() {
            match identities.joined_into(&current) {
                Some(next) if next != current => current = next.to_string(),
                _ => break,
            }
        }
        current
    };
    let survivors: Vec<String> = persons.iter().map(|p| survivor_of(&p.id)).collect();
    let index: FxHashMap<&str, usize> = persons.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
    let mut moves: Vec<(usize, usize)> = vec![];
    let mut renames: Vec<(usize, CompactString)> = vec![];
    for (i, survivor) in survivors.iter().enumerate().filter(|(i, s)| **s != persons[*i].id) {
        match index.get(survivor.as_str()) {
            Some(&into) => moves.push((i, into)),
            None => renames.push((i, survivor.into())),
        }
    }
    // Two persons joined into one absent survivor: the first (by id) takes its id, the others join it.
    renames.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| persons[a.0].id.cmp(&persons[b.0].id)));
    let mut taken: FxHashMap<CompactString, usize> = FxHashMap::default();
    for (i, id) in renames {
        match taken.get(&id) {
            Some(&into) => moves.push((i, into)),
            None => {
                taken.insert(id, i);
            }
        }
    }
    let renamed: Vec<(usize, CompactString)> = taken.into_iter().map(|(id, i)| (i, id)).collect();
    for (i, id) in renamed {
        persons[i].id = id;
    }
    moves.sort_unstable();
    for &(from, into) in &moves {
        let moved = std::mem::take(&mut persons[from].records);
        persons[into].records.extend(moved);
    }
    for &(_, into) in &moves {
        primary_first(&mut persons[into].records, records);
    }
    persons.retain(|p| !p.records.is_empty());
    sorted_by(persons, |p| &p.id)
}

/// `items` in the byte order of `key`.
fn sorted_by<T>(items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
    let order = positions_in_order(&items, key);
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// The positions of `items` in the byte order of `key` (sorting positions
/// moves far less than sorting large records).
fn positions_in_order<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<usize> {
    let mut order: Vec<(ByteOrder<'_>, usize)> = items.iter().enumerate().map(|(i, item)| (ByteOrder::of(key(item)), i)).collect();
    order.sort_unstable();
    order.into_iter().map(|(_, i)| i).collect()
}

/// Orders one person's records primary first: the active one; if both or
/// neither are, the one updated last.
fn primary_first(records: &mut [usize], employees: &[SourceEmployee]) {
    records.sort_by(|&a, &b| {
        let rank = |e: &SourceEmployee| (e.status == EmployeeStatus::Active, e.updated_at);
        let (a, b) = (&employees[a], &employees[b]);
        rank(b).cmp(&rank(a)).then_with(|| a.source_id.cmp(&b.source_id))
    });
}

/// Groups records by person key; returns persons (sorted by unified id) and
/// the matched count.
fn match_persons(employees: &[SourceEmployee]) -> (Vec<Person>, usize) {
    let mut persons: Vec<Person> = Vec::with_capacity(employees.len());
    // Keys are sorted by their first eight bytes held inline, which decide
    // nearly every comparison, then by the whole key.
    let mut keyed: Vec<((u64, &PersonKey), usize)> = Vec::new();
    for (i, e) in employees.iter().enumerate() {
        match &e.person_key {
            Some(key) => keyed.push(((u64::from_be_bytes(std::array::from_fn(|b| key.expose()[b])), key.expose()), i)),
            None => persons.push(Person { records: vec![i], id: e.source_id.clone() }),
        }
    }
    keyed.sort_unstable_by_key(|(k, _)| *k);
    let mut matched = 0;
    for group in keyed.chunk_by(|(a, _), (b, _)| a == b) {
        if group.len() > 1 {
            matched += 1;
        }
        let mut records: Vec<usize> = group.iter().map(|(_, i)| *i).collect();
        primary_first(&mut records, employees);
        let id = employees[records[0]].source_id.clone();
        persons.push(Person { records, id });
    }
    (sorted_by(persons, |p| &p.id), matched)
}

/// Unified ids of the persons with a quarantined employee row this run
/// (a duplicate row whose winner is present does not count): they are held
/// at their last good record (see [`crate::holdback`]).
fn held_persons(quarantined: &[Quarantined], identities: &Identities) -> FxHashSet<CompactString> {
    quarantined
        .iter()
        .filter(|q| q.reason != Reason::DuplicateSourceId && crate::holdback::source_kind(&q.file) == Some(DataType::Employee))
        .filter_map(|q| q.id.as_deref())
        .map(|id| identities.unified(id).into())
        .collect()
}

/// Resolves a reference to an employee (a manager, a team leader, a
/// grant's holder) to a unified id: any source id of a person in this run,
/// a person's unified id, a remembered source id, or a person held back.
struct References<'a> {
    /// Borrowed from the persons: no copies of the 2 x n ids.
    alias: FxHashMap<&'a str, &'a str>,
    held: &'a FxHashSet<CompactString>,
    identities: &'a Identities,
}

impl<'a> References<'a> {
    fn new(persons: &'a [Person], records: &'a [SourceEmployee], held: &'a FxHashSet<CompactString>, identities: &'a Identities) -> Self {
        let mut alias: FxHashMap<&str, &str> = persons.iter().flat_map(|p| p.of(records).map(move |r| (r.source_id.as_str(), p.id.as_str()))).collect();
        for p in persons {
            alias.entry(p.id.as_str()).or_insert(p.id.as_str());
        }
        References { alias, held, identities }
    }

    fn resolve(&self, reference: &str) -> Option<CompactString> {
        let unified = self.identities.unified(reference);
        self.alias
            .get(reference)
            .or_else(|| self.alias.get(unified))
            .map(|&u| CompactString::from(u))
            .or_else(|| self.held.contains(unified).then(|| unified.into()))
    }
}

/// The person's employee record and pay, their fields taken out of their
/// records: each record is one person's, and no other step reads it after.
fn build_employee(person: Person, records: &mut [SourceEmployee], manager: Option<CompactString>) -> (Employee, Option<Compensation>) {
    /// The first record's value of a field, in the person's order (the primary first).
    fn first<T>(records: &mut [SourceEmployee], order: &[usize], field: impl Fn(&mut SourceEmployee) -> &mut Option<T>) -> Option<T> {
        order.iter().find_map(|&r| field(&mut records[r]).take())
    }
    let Person { records: order, id } = person;
    let compensation = order.iter().find_map(|&r| {
        let effective_date = records[r].effective_date.unwrap_or_else(|| records[r].updated_at.date_naive());
        let (base_salary, currency) = records[r].salary.take()?;
        Some(Compensation { employee_id: id.clone(), base_salary, currency, effective_date })
    });
    let name_en = first(records, &order, |r| &mut r.name_en);
    let email = first(records, &order, |r| &mut r.email);
    let phone = first(records, &order, |r| &mut r.phone);
    let birth_date = first(records, &order, |r| &mut r.birth_date);
    let mut source_ids: Vec<CompactString> = order.iter().map(|&r| std::mem::take(&mut records[r].source_id)).collect();
    source_ids.sort();
    let updated_at = order.iter().map(|&r| records[r].updated_at).max();
    let primary = &mut records[order[0]];
    let employee = Employee {
        id,
        source_ids,
        company: primary.company,
        name: std::mem::take(&mut primary.name),
        name_en,
        email,
        phone,
        birth_date,
        org_unit: std::mem::take(&mut primary.org_unit),
        grade: std::mem::take(&mut primary.grade),
        status: primary.status,
        hire_date: primary.hire_date,
        termination_date: primary.termination_date,
        manager,
        updated_at: updated_at.unwrap_or(primary.updated_at),
    };
    (employee, compensation)
}

/// Same name and birth date, not proven to be the same person by a person key.
fn possible_duplicates(persons: &[Person], records: &[SourceEmployee]) -> Vec<Conflict> {
    // The first person seen with a name and birth date, and the others after it; most have none.
    let mut first: FxHashMap<(std::borrow::Cow<'_, str>, chrono::NaiveDate), usize> = FxHashMap::default();
    let mut others: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    for (index, p) in persons.iter().enumerate() {
        let Some(birth) = p.of(records).find_map(|r| r.birth_date.as_ref().map(|b| *b.expose())) else { continue };
        let name = &p.primary(records).name;
        let name = match name.contains(char::is_whitespace) {
            true => std::borrow::Cow::Owned(name.split_whitespace().collect()),
            false => std::borrow::Cow::Borrowed(name.as_str()),
        };
        match first.entry((name, birth)) {
            std::collections::hash_map::Entry::Occupied(seen) => others.entry(*seen.get()).or_default().push(index),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
    }
    let mut conflicts = Vec::new();
    for (seen_first, rest) in others {
        let group: Vec<&Person> = std::iter::once(seen_first).chain(rest).map(|i| &persons[i]).collect();
        if group.iter().all(|p| p.primary(records).person_key.is_some()) {
            continue;
        }
        let mut ids: Vec<String> = group.iter().map(|p| p.id.to_string()).collect();
        ids.sort();
        conflicts.push(Conflict {
            kind: ConflictKind::PossibleDuplicatePerson,
            ids,
            detail: "same name and birth date but no shared person key; review whether they are one person".into(),
        });
    }
    conflicts.sort();
    conflicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn byte_order_orders_as_the_strings_do(a in "[\\x00-\\x02A-C가]{0,10}", b in "[\\x00-\\x02A-C가]{0,10}") {
            prop_assert_eq!(ByteOrder::of(&a).cmp(&ByteOrder::of(&b)), a.cmp(&b));
        }

        #[test]
        fn sorted_by_sorts_by_the_key(items in proptest::collection::vec("[A-C0-9-]{0,12}", 0..40)) {
            let mut expected = items.clone();
            expected.sort();
            prop_assert_eq!(sorted_by(items, |s| s.as_str()), expected);
        }
    }

    #[test]
    fn the_merged_state_and_each_type_copied_from_it_keep_the_export_time() {
        let exported_at = chrono::DateTime::parse_from_rfc3339("2026-11-26T09:00:00+09:00").unwrap().to_utc();
        let state = merge(SourceData { exported_at: Some(exported_at), ..SourceData::default() }).state;
        assert_eq!(state.exported_at, Some(exported_at));
        for data_type in DataType::ALL {
            assert_eq!(state.only(data_type).exported_at, Some(exported_at), "{data_type:?}");
        }
    }
}
