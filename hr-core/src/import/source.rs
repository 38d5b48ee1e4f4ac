//! Records as read from the exports, validated field by field, before the merge.

use crate::quarantine::{Origin, Quarantined};
use crate::schema::{Company, EmployeeStatus};
use crate::Sensitive;
use chrono::{DateTime, NaiveDate, Utc};
use compact_str::CompactString;
use std::collections::BTreeMap;

/// A company A or B employee as read, validated field by field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceEmployee {
    /// Where it came from.
    pub origin: Origin,
    /// Its company.
    pub company: Company,
    /// `A-<emp_no>` / `B-<employeeId>`.
    pub source_id: CompactString,
    /// Korean name.
    pub name: CompactString,
    /// Latin-script name.
    pub name_en: Option<CompactString>,
    /// Email.
    pub email: Option<CompactString>,
    /// Phone.
    pub phone: Option<Sensitive<CompactString>>,
    /// Birth date.
    pub birth_date: Option<Sensitive<NaiveDate>>,
    /// SHA-256 of the national id, read from its hex digits in either case.
    pub person_key: Option<Sensitive<PersonKey>>,
    /// Unified org unit id it names.
    pub org_unit: CompactString,
    /// Unified grade.
    pub grade: CompactString,
    /// Status.
    pub status: EmployeeStatus,
    /// Hire date.
    pub hire_date: NaiveDate,
    /// Last day of employment, when known (a departure may be dated ahead).
    pub termination_date: Option<NaiveDate>,
    /// The day this row takes effect, when dated (a move or any change may
    /// be entered ahead of its day): before it, the row is scheduled.
    pub effective_date: Option<NaiveDate>,
    /// Manager's source id (`A-…` / `B-…`), unresolved.
    pub manager_source_id: Option<CompactString>,
    /// Salary and currency.
    pub salary: Option<(Sensitive<u64>, CompactString)>,
    /// Last change, UTC.
    pub updated_at: DateTime<Utc>,
}

/// A person key: the 32 bytes of a SHA-256, compared as bytes.
pub(crate) type PersonKey = [u8; 32];

/// A company A department or company B org unit as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceOrgUnit {
    /// Where it came from.
    pub origin: Origin,
    /// Its company.
    pub company: Company,
    /// `A-<dept_code>` / `B-<orgUnitId>`.
    pub id: CompactString,
    /// Name.
    pub name: CompactString,
    /// Parent's unified id; `None` = top level of its company.
    pub parent: Option<CompactString>,
    /// Leader's source id, unresolved.
    pub leader_source_id: Option<CompactString>,
    /// Last change, UTC.
    pub updated_at: DateTime<Utc>,
}

/// A master data row as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceMasterData {
    /// Where it came from.
    pub origin: Origin,
    /// Code set.
    pub set: CompactString,
    /// Code.
    pub code: CompactString,
    /// Name.
    pub name: CompactString,
    /// Extra columns.
    pub attributes: BTreeMap<CompactString, CompactString>,
}

/// Grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermissionOp {
    /// Grant the role.
    Grant,
    /// Revoke it.
    Revoke,
}

/// A permission event as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourcePermission {
    /// Where it came from.
    pub origin: Origin,
    /// Employee id as written (unified, or a source id of a merged person).
    pub employee: CompactString,
    /// System.
    pub system: CompactString,
    /// Role.
    pub role: CompactString,
    /// Grant or revoke.
    pub op: PermissionOp,
    /// Expiry.
    pub expires: Option<NaiveDate>,
    /// The day the line takes effect, when dated ahead.
    pub effective: Option<NaiveDate>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Everything read from one input directory: the records [`merge`](crate::merge)
/// takes, and those quarantined while reading.
#[derive(Debug, Default, Clone)]
pub struct SourceData {
    pub(crate) employees: Vec<SourceEmployee>,
    pub(crate) org_units: Vec<SourceOrgUnit>,
    pub(crate) master_data: Vec<SourceMasterData>,
    pub(crate) permissions: Vec<SourcePermission>,
    pub(crate) quarantined: Vec<Quarantined>,
    pub(crate) exported_at: Option<DateTime<Utc>>,
    /// The day rows' effective dates are judged by (see [`as_of`](Self::as_of)).
    pub(crate) today: Option<NaiveDate>,
    /// Company A's offset from UTC (`mapping.toml`): its rows take effect on
    /// its own calendar day.
    pub(crate) a_utc_offset_hours: i32,
}

impl SourceData {
    /// Employees read from both companies, before people are matched.
    pub fn employee_count(&self) -> usize {
        self.employees.len()
    }

    /// Org units read from both companies.
    pub fn org_unit_count(&self) -> usize {
        self.org_units.len()
    }

    /// Records rejected while reading, in file order.
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantined
    }

    /// Judges the rows' effective dates (company A `effective_date`,
    /// company B `effectiveDate`) as if `today` were the day in both
    /// companies. Without it, the merge takes each company's own day now
    /// (company A's by `mapping.toml`'s `utc_offset_hours`, company B's in
    /// UTC). For tests and backfills.
    pub fn as_of(mut self, today: NaiveDate) -> Self {
        self.today = Some(today);
        self
    }

    /// The day a row of `company` is judged by.
    pub(crate) fn today_in(&self, company: Company) -> NaiveDate {
        crate::CompanyDays::at(self.a_utc_offset_hours, self.today).of(company)
    }

    /// Sets aside every grant line dated to take effect after the day (in
    /// UTC, or [`as_of`](Self::as_of)'s) and returns them.
    pub(crate) fn take_scheduled_grants(&mut self) -> Vec<SourcePermission> {
        if self.permissions.iter().all(|p| p.effective.is_none()) {
            return vec![];
        }
        let today = self.today_in(Company::B);
        let (scheduled, in_force) = std::mem::take(&mut self.permissions).into_iter().partition(|p| p.effective.is_some_and(|d| d > today));
        self.permissions = in_force;
        scheduled
    }

    /// Sets aside every employee row dated to take effect after its
    /// company's day (see [`today_in`](Self::today_in)) and returns them.
    /// Of the rows left, a source id's row with the latest effective date
    /// (an undated row counts as in effect since always) supersedes the
    /// earlier-dated rows no newer than it: its history, dropped. A row
    /// changed after it stays, for the latest change to win as always.
    pub(crate) fn take_scheduled(&mut self) -> Vec<SourceEmployee> {
        if self.employees.iter().all(|e| e.effective_date.is_none()) {
            return vec![];
        }
        let days = [self.today_in(Company::A), self.today_in(Company::B)];
        let today = |e: &SourceEmployee| if e.company == Company::A { days[0] } else { days[1] };
        let (scheduled, mut in_force): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.employees).into_iter().partition(|e| e.effective_date.is_some_and(|d| d > today(e)));
        let dated = |e: &SourceEmployee| (e.effective_date.unwrap_or(NaiveDate::MIN), e.updated_at);
        let mut latest: rustc_hash::FxHashMap<CompactString, (NaiveDate, DateTime<Utc>)> = rustc_hash::FxHashMap::default();
        for e in in_force.iter().filter(|e| e.effective_date.is_some()) {
            let entry = latest.entry(e.source_id.clone()).or_insert(dated(e));
            *entry = (*entry).max(dated(e));
        }
        let history = |e: &SourceEmployee| latest.get(&e.source_id).is_some_and(|&(day, at)| dated(e).0 < day && e.updated_at <= at);
        in_force.retain(|e| !history(e));
        self.employees = in_force;
        scheduled
    }
}

impl SourceData {
    /// Moves every line number `lines` further down: for what was read from
    /// a part of a file that starts after `lines` lines.
    pub(crate) fn shift_lines(&mut self, lines: u64) {
        let origins = self.employees.iter_mut().map(|e| &mut e.origin);
        let origins = origins.chain(self.org_units.iter_mut().map(|u| &mut u.origin));
        let origins = origins.chain(self.master_data.iter_mut().map(|m| &mut m.origin));
        for origin in origins.chain(self.permissions.iter_mut().map(|p| &mut p.origin)) {
            origin.line += lines;
        }
        for entry in &mut self.quarantined {
            entry.line += lines;
        }
    }

    /// Makes room for appending all of `pieces` without growing again.
    pub(crate) fn reserve_for<'a>(&mut self, pieces: impl Iterator<Item = &'a SourceData> + Clone) {
        self.employees.reserve(pieces.clone().map(|p| p.employees.len()).sum());
        self.org_units.reserve(pieces.clone().map(|p| p.org_units.len()).sum());
        self.master_data.reserve(pieces.clone().map(|p| p.master_data.len()).sum());
        self.permissions.reserve(pieces.clone().map(|p| p.permissions.len()).sum());
        self.quarantined.reserve(pieces.map(|p| p.quarantined.len()).sum());
    }

    /// Appends everything `other` read, after what this one read.
    pub(crate) fn append(&mut self, other: SourceData) {
        self.employees.extend(other.employees);
        self.org_units.extend(other.org_units);
        self.master_data.extend(other.master_data);
        self.permissions.extend(other.permissions);
        self.quarantined.extend(other.quarantined);
    }
}
