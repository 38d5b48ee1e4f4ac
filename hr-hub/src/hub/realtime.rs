//! Real-time changes through the hub: checked, refused when older than what
//! the hub already applied to their key, sent at once, and remembered by
//! the ledger so periodic runs keep them until the source says something
//! newer ("newer wins").

use super::{blocking, Hub, HubError, SyncOutcome};
use chrono::{DateTime, NaiveDate, Utc};
use hr_core::{
    describe_json_error, read_permission_lines, CompactString, DataType, Employee, EmployeeStatus, MasterData, PermissionGrant, RealtimeChange, Record,
    RecordVisitor,
};
use std::collections::BTreeMap;

/// What quarantine entries of a real-time request name as their file.
const REQUEST_BODY: &str = "request body";

/// One problem with a real-time request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The line of the body (permission lines), when the problem is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What is wrong, naming the field. Never holds a sensitive value.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

/// Why a real-time change was refused or did not reach every target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealtimeError {
    /// The request is not a valid change; nothing of it was sent.
    #[error("invalid change, nothing sent: {}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// No live employee has this id (unified, or a remembered source id).
    #[error("no employee {0}: neither a unified id nor a source id of a current employee")]
    UnknownEmployee(String),
    /// The hub holds no employees yet: its first periodic run has not completed.
    #[error("the hub has not completed its first periodic run, so it holds no employee to change; retry once it has")]
    NotReady,
    /// The hub refused the change or could not deliver it (see [`HubError`]).
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// A real-time change to one employee: the fields that changed, and when.
/// A termination revokes every grant the person holds, as a periodic run does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmployeeChange {
    /// When the change happened; older than the employee's current record is refused.
    pub at: DateTime<Utc>,
    /// A transfer: the unified id of the new org unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_unit: Option<String>,
    /// A grade change: the unified grade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<String>,
    /// A new employment status (`terminated` revokes every grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EmployeeStatus>,
    /// The last day of employment (a termination without one ends on the day of `at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_date: Option<NaiveDate>,
    /// A new manager: a unified or source id of a current employee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// A new work email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Hub {
    /// Applies grants and revocations written as `permissions.jsonl` lines
    /// (one or more): employees may be named by unified or source id. Every
    /// line is checked first: a malformed line, an unknown employee or a
    /// grant to a leaver refuses the whole request, naming each line and
    /// field. Several events of one grant keep the latest, as a merge does.
    /// `caller` names who made the call: the audit log records it, and it is
    /// the origin of the changes.
    pub async fn apply_permission_lines(&mut self, body: &str, caller: &str) -> Result<SyncOutcome, RealtimeError> {
        if self.employees.is_empty() {
            return Err(RealtimeError::NotReady);
        }
        let (lines, quarantined) = read_permission_lines(body, REQUEST_BODY);
        let mut problems: Vec<Problem> = quarantined.into_iter().map(|q| Problem { line: Some(q.line), detail: q.detail }).collect();
        let mut grants: BTreeMap<CompactString, PermissionGrant> = BTreeMap::new();
        for line in lines {
            let mut event = line.event;
            if let Some(problem) = hr_core::role_problem(&self.roles, &event) {
                problems.push(Problem { line: Some(line.line), detail: format!("field `role`: {problem}") });
                continue;
            }
            let problem = match self.current_employee(&event.employee)? {
                _ if !plausible(event.at) => format!("field `at`: {} is in the future or before 1900", event.at),
                _ if !self.policy.targets.contains_key(event.system.as_str()) => {
                    format!(
                        "field `system`: {} is not a target system of this hub (known: {})",
                        event.system,
                        self.policy.targets.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
                None => format!("field `employee`: {} is not a current employee", event.employee),
                Some(employee) if event.granted && employee.status == EmployeeStatus::Terminated => {
                    format!("field `employee`: {} has left; a leaver is granted nothing", event.employee)
                }
                Some(employee) => {
                    event.employee = employee.id.clone();
                    let key = CompactString::from(event.key());
                    if grants.get(&key).is_none_or(|held| event.supersedes(held)) {
                        grants.insert(key, event);
                    }
                    continue;
                }
            };
            problems.push(Problem { line: Some(line.line), detail: problem });
        }
        if grants.is_empty() && problems.is_empty() {
            problems.push(Problem { line: None, detail: "the body holds no permission line".into() });
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(RealtimeError::Invalid(problems));
        }
        let changes = grants.values().map(|g| change_of(g, g.at)).collect::<Result<Vec<_>, _>>()?;
        Ok(self.apply_realtime(changes, caller).await?)
    }

    /// Applies a change to one employee (a transfer, a grade change, a
    /// termination, ...). A termination also revokes, as of `at`, every
    /// grant the person holds.
    /// `caller` as for [`apply_permission_lines`](Self::apply_permission_lines).
    pub async fn change_employee(&mut self, id: &str, change: EmployeeChange, caller: &str) -> Result<SyncOutcome, RealtimeError> {
        if self.employees.is_empty() {
            return Err(RealtimeError::NotReady);
        }
        let current = self.current_employee(id)?.ok_or_else(|| RealtimeError::UnknownEmployee(id.to_string()))?.clone();
        if !plausible(change.at) {
            return Err(HubError::ImplausibleTime { data_type: DataType::Employee, key: current.id.into(), at: change.at }.into());
        }
        let updated = self.changed(current, &change)?;
        let mut changes = vec![change_of(&updated, change.at)?];
        if updated.status == EmployeeStatus::Terminated {
            for grant in self.grants.values().filter(|g| g.employee == updated.id && g.granted) {
                let revoked = grant.revoked(change.at);
                changes.push(change_of(&revoked, revoked.at)?);
            }
        }
        Ok(self.apply_realtime(changes, caller).await?)
    }

    /// `current` with `change` applied, or what in `change` is invalid.
    fn changed(&self, mut current: Employee, change: &EmployeeChange) -> Result<Employee, RealtimeError> {
        let mut problems = vec![];
        let mut problem = |detail: String| problems.push(Problem { line: None, detail });
        if let Some(unit) = &change.org_unit {
            match self.ledger.version_of(DataType::OrgUnit, unit).map_err(HubError::from)? {
                Some((_, false)) => current.org_unit = unit.as_str().into(),
                _ => problem(format!("field `org_unit`: {unit} is not a current org unit")),
            }
        }
        if let Some(manager) = &change.manager {
            match self.current_employee(manager)? {
                Some(m) if m.id != current.id => current.manager = Some(m.id.clone()),
                Some(_) => problem("field `manager`: an employee cannot be their own manager".into()),
                None => problem(format!("field `manager`: {manager} is not a current employee")),
            }
        }
        match change.grade.as_deref().map(str::trim) {
            Some("") => problem("field `grade` is empty".into()),
            Some(grade) => current.grade = grade.into(),
            None => {}
        }
        if let Some(email) = &change.email {
            current.email = Some(email.as_str().into());
        }
        if change.status == Some(EmployeeStatus::PreHire) {
            problem("field `status`: `pre_hire` is the hub's own, from the hire date in the export; give `active`, `on_leave` or `terminated`".into());
        } else if let Some(status) = change.status {
            current.status = status;
            current.termination_date = match status {
                EmployeeStatus::Terminated => Some(change.termination_date.unwrap_or_else(|| change.at.date_naive())),
                // Back from leave or rehired: no end date unless one is given.
                _ => change.termination_date,
            };
        } else if let Some(day) = change.termination_date {
            current.termination_date = Some(day);
        }
        if !problems.is_empty() {
            return Err(RealtimeError::Invalid(problems));
        }
        current.updated_at = change.at;
        Ok(current)
    }

    /// The current employee a reference (unified or source id) names.
    fn current_employee(&self, reference: &str) -> Result<Option<&Employee>, HubError> {
        if let Some(employee) = self.employees.get(reference) {
            return Ok(Some(employee));
        }
        Ok(self.ledger.unified_id(reference)?.and_then(|unified| self.employees.get(unified.as_str())))
    }

    /// Checks, plans, sends and commits real-time changes in one
    /// propagation; the ledger remembers them with their time.
    pub(super) async fn apply_realtime(&mut self, changes: Vec<RealtimeChange>, actor: &str) -> Result<SyncOutcome, HubError> {
        let keys: Vec<String> = changes.iter().take(AUDITED_KEYS).map(|c| format!("{}/{}", c.data_type, c.data_type.shown_key(&c.key))).collect();
        let count = changes.len();
        let result = self.apply_checked(changes, actor).await;
        let outcome = match &result {
            Ok(_) => "sent".to_string(),
            Err(e) => format!("refused or failed: {}", e.to_string().chars().take(200).collect::<String>()),
        };
        let detail = serde_json::json!({"changes": count, "keys": keys, "outcome": outcome});
        blocking(|| self.ledger.audit(actor, "realtime", &detail))?;
        result
    }

    async fn apply_checked(&mut self, mut changes: Vec<RealtimeChange>, origin: &str) -> Result<SyncOutcome, HubError> {
        let today = self.today();
        for change in &mut changes {
            self.check(change)?;
            if change.data_type == DataType::Permission {
                revoke_if_expired(change, today)?;
            }
        }
        let mut by_type: BTreeMap<DataType, Vec<&RealtimeChange>> = BTreeMap::new();
        for change in &changes {
            by_type.entry(change.data_type).or_default().push(change);
        }
        let deltas = {
            let ledger = &self.ledger;
            let plan = |(t, of_type): (DataType, Vec<&RealtimeChange>)| {
                Ok((t, ledger.plan_changes(t, of_type.into_iter().map(|c| (&c.key, c.payload.clone())), origin)?))
            };
            blocking(|| by_type.into_iter().map(plan).collect::<Result<Vec<_>, HubError>>())?
        };
        let outcome = self.send(deltas, &changes, None).await?;
        self.remember(&changes)?;
        Ok(outcome)
    }

    /// Refuses a change that is not a valid record of its type, targets a
    /// set a system owns, or happened before what the hub holds for its key.
    fn check(&self, change: &RealtimeChange) -> Result<(), HubError> {
        let (t, key) = (change.data_type, change.key.as_str());
        let invalid = |detail: String| HubError::InvalidRecord { data_type: t, key: shown(t, key), detail };
        t.visit(CheckRecord(change)).map_err(invalid)?;
        if t == DataType::MasterData {
            if let Some(owner) = self.owned.get(MasterData::set_of_key(key)) {
                return Err(invalid(format!("its set is owned and published by {owner}, not the hub")));
            }
        }
        let cached = match t {
            DataType::Employee => self.employees.get(key).map(|e| e.updated_at),
            DataType::Permission => self.grants.get(key).map(|g| g.at),
            _ => None,
        };
        let remembered = self.ledger.realtime_change(t, key)?.map(|c| c.at);
        match cached.max(remembered) {
            Some(current) if change.at < current => Err(HubError::OlderThanCurrent { data_type: t, key: shown(t, key), at: change.at, current }),
            _ => Ok(()),
        }
    }

    /// Keeps the hub's employees and grants as the changes left them.
    fn remember(&mut self, changes: &[RealtimeChange]) -> Result<(), HubError> {
        for change in changes {
            match change.data_type {
                DataType::Employee => remember_in(&mut self.employees, change)?,
                DataType::Permission => remember_in(&mut self.grants, change)?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn remember_in<R: Record>(records: &mut BTreeMap<CompactString, R>, change: &RealtimeChange) -> Result<(), HubError> {
    match &change.payload {
        Some(payload) => drop(records.insert(change.key.as_str().into(), serde_json::from_str(payload.get())?)),
        None => drop(records.remove(change.key.as_str())),
    }
    Ok(())
}

/// A real-time change upserting `record`, made at `at`.
fn change_of<R: Record>(record: &R, at: DateTime<Utc>) -> Result<RealtimeChange, HubError> {
    Ok(RealtimeChange { data_type: R::DATA_TYPE, key: record.key(), at, payload: Some(serde_json::value::to_raw_value(record)?) })
}

/// Whether an HR-side change's time can be true: not ahead of this clock by more than
/// a few minutes of skew, not before 1900. Kept, a time far ahead would
/// outrank every later change of its key.
fn plausible(at: DateTime<Utc>) -> bool {
    let earliest = DateTime::<Utc>::from_naive_utc_and_offset(NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default().and_time(chrono::NaiveTime::MIN), Utc);
    at >= earliest && at <= Utc::now() + chrono::Duration::minutes(5)
}

/// How many keys of one real-time call the audit log names.
const AUDITED_KEYS: usize = 20;

/// A key as errors may show it: sensitive data types' keys name a person.
fn shown(data_type: DataType, key: &str) -> String {
    data_type.shown_key(key).to_string()
}

/// Whether a change's payload is a valid record of its type with its key.
struct CheckRecord<'a>(&'a RealtimeChange);

impl RecordVisitor for CheckRecord<'_> {
    type Output = Result<(), String>;
    fn visit<R: Record>(self) -> Result<(), String> {
        let Some(payload) = &self.0.payload else { return Ok(()) };
        let record: R = serde_json::from_str(payload.get()).map_err(|e| format!("not a valid {} record: {}", R::NAME, describe_json_error(&e)))?;
        if record.key() != self.0.key {
            return Err(format!("the {} record's own key is not the key it was sent under", R::NAME));
        }
        record.check().map_err(str::to_string)
    }
}

/// A grant no longer in force on `today` because it expired goes out
/// revoked as of when it lapsed, as a periodic run sends it.
pub(super) fn revoke_if_expired(change: &mut RealtimeChange, today: NaiveDate) -> Result<(), HubError> {
    let Some(json) = &change.payload else { return Ok(()) };
    let grant: PermissionGrant = serde_json::from_str(json.get())?;
    if let Some(lapsed) = grant.lapses_at().filter(|_| grant.granted && !grant.in_force_on(today)) {
        let revoked = grant.revoked(lapsed);
        change.payload = Some(serde_json::value::to_raw_value(&revoked)?);
        change.at = change.at.max(revoked.at);
    }
    Ok(())
}
