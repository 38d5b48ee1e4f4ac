//! Last known good: which records a run must keep although the new export
//! lacks them, because their source row was quarantined rather than removed.

use crate::merge::{Identities, MergeReport};
use crate::quarantine::{Quarantined, Reason};
use crate::schema::DataType;
use std::collections::HashMap;

/// The records a run holds at their last good version, by data type and key.
///
/// A typo in one field (an email, a salary, a date) quarantines the row; the
/// person has not left. Identity products keep the last good state and flag
/// the object (Entra's escrow, midPoint's shadows); so does the hub: the
/// [`Ledger`](crate::Ledger) treats a held record as unchanged and lists it
/// in [`Delta::held_back`](crate::Delta::held_back). A quarantined org unit
/// quarantines its members (`unknown_org_unit`), which are held the same
/// way, so nothing cascades into deletes.
///
/// Only a row whose id could be read can be held: a line too garbled to
/// name its record is reported, and the delete guard stands between it and
/// a mass deletion. A permission row is never held by itself: a grant that
/// cannot be read, or whose holder left, is revoked (access fails closed);
/// the grants of a held person stay, and their revocations still apply.
/// More: a bad grant line that names its employee, system and role (any
/// text, an over-long role included) may have been
/// a revocation, so it *suspends* every grant of that person on that system
/// until a good line arrives ([`suspended`](Self::suspended)); a run sends
/// them revoked and reports them as `suspended_for_bad_line`.
#[derive(Debug, Clone, Default)]
pub struct HeldBack {
    /// Unified employee ids whose row was quarantined: their employee record,
    /// compensation and grants are held.
    employees: HashMap<String, Quarantined>,
    /// Other records whose row was quarantined, by data type and key.
    records: HashMap<(DataType, String), Quarantined>,
    /// (unified employee id, system) of each bad grant line, with the line.
    suspended: Vec<Suspension>,
}

/// A person's grants on one system, suspended because a line about them
/// could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suspension {
    /// The person's unified id.
    pub employee: String,
    /// The system.
    pub system: String,
    /// The file of the bad line.
    pub file: String,
    /// Its line.
    pub line: u64,
}

impl HeldBack {
    /// Reads a merge report: every quarantined row that names its record.
    /// Employee rows are resolved to the person's lifelong unified id.
    pub fn from_report(report: &MergeReport, identities: &Identities) -> Self {
        let mut held = HeldBack::default();
        // A duplicate row is quarantined while its winner is present: nothing to hold.
        // A row dated later holds its person as the systems have them until its day.
        for q in report.quarantined.iter().chain(&report.not_yet_effective).filter(|q| q.reason != Reason::DuplicateSourceId) {
            let Some(id) = &q.id else { continue };
            match source_kind(&q.file) {
                Some(DataType::Employee) => {
                    held.employees.entry(identities.unified(id).to_string()).or_insert_with(|| q.clone());
                }
                // A grant row that cannot be read (permissions.jsonl) is not held: access
                // fails closed, and the person's grants on that system are suspended.
                None => {
                    let mut parts = id.splitn(3, ':');
                    if let (Some(employee), Some(system)) = (parts.next(), parts.next()) {
                        let employee = identities.unified(employee).to_string();
                        held.suspended.push(Suspension { employee, system: system.to_string(), file: q.file.clone(), line: q.line });
                    }
                }
                Some(t) => {
                    held.records.entry((t, id.clone())).or_insert_with(|| q.clone());
                }
            }
        }
        held
    }

    /// Holds a person as the systems have them (their record, pay and
    /// grants), for `why`: a rehire dated ahead keeps the record the systems
    /// hold until the new hire date.
    pub fn hold_person(&mut self, employee: &str, why: Quarantined) {
        self.employees.entry(employee.to_string()).or_insert(why);
    }

    /// The grants suspended by bad lines (see [`HeldBack`]).
    pub fn suspended(&self) -> &[Suspension] {
        &self.suspended
    }

    /// The suspension that covers the grant of `employee` on `system`, if any.
    pub fn suspends(&self, employee: &str, system: &str) -> Option<&Suspension> {
        self.suspended.iter().find(|s| s.employee == employee && s.system == system)
    }

    /// The quarantined row that holds `key` back, if any.
    pub fn holds(&self, data_type: DataType, key: &str) -> Option<&Quarantined> {
        let person = match data_type {
            DataType::Employee | DataType::Compensation => Some(key),
            DataType::Permission => key.split(':').next(),
            DataType::OrgUnit | DataType::MasterData => None,
        };
        person.and_then(|p| self.employees.get(p)).or_else(|| self.records.get(&(data_type, key.to_string())))
    }
}

/// The data type a source file carries.
pub(crate) fn source_kind(file: &str) -> Option<DataType> {
    let name = file.rsplit('/').next().unwrap_or(file);
    match name {
        "employees.csv" | "employees.jsonl" => Some(DataType::Employee),
        "departments.csv" | "org_units.jsonl" => Some(DataType::OrgUnit),
        "master_data.csv" => Some(DataType::MasterData),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(file: &str, id: &str) -> Quarantined {
        Quarantined { file: file.into(), line: 7, id: Some(id.into()), reason: Reason::InvalidEmail, detail: String::new() }
    }

    #[test]
    fn a_quarantined_person_holds_their_record_pay_and_grants_under_the_lifelong_id() {
        let report = MergeReport { quarantined: vec![q("company_b/employees.jsonl", "B-9"), q("company_a/departments.csv", "A-D1")], ..Default::default() };
        let identities: Identities = [("B-9".to_string(), "A-1".to_string())].into_iter().collect();
        let held = HeldBack::from_report(&report, &identities);
        assert!(held.holds(DataType::Employee, "A-1").is_some());
        assert!(held.holds(DataType::Compensation, "A-1").is_some());
        assert!(held.holds(DataType::Permission, "A-1:erp:approver").is_some());
        assert!(held.holds(DataType::Employee, "B-9").is_none());
        assert!(held.holds(DataType::OrgUnit, "A-D1").is_some());
        assert!(held.holds(DataType::OrgUnit, "A-D2").is_none());
        assert!(held.holds(DataType::Permission, "A-10:erp:approver").is_none());
    }

    #[test]
    fn master_data_rows_are_held_and_grant_rows_never_are() {
        let report =
            MergeReport { quarantined: vec![q("master_data.csv", "md.category:C1"), q("permissions.jsonl", "A-1:erp:approver")], ..Default::default() };
        let held = HeldBack::from_report(&report, &Identities::default());
        assert!(held.holds(DataType::MasterData, "md.category:C1").is_some());
        assert!(held.holds(DataType::MasterData, "md.category:C2").is_none());
        assert!(held.holds(DataType::Permission, "A-1:erp:approver").is_none(), "access fails closed");
        assert!(held.holds(DataType::Employee, "A-1").is_none());
    }

    #[test]
    fn a_bad_grant_line_suspends_the_persons_grants_on_its_system_under_the_lifelong_id() {
        let report = MergeReport { quarantined: vec![q("permissions.jsonl", &format!("B-9:erp:{}", "r".repeat(600)))], ..Default::default() };
        let identities: Identities = [("B-9".to_string(), "A-1".to_string())].into_iter().collect();
        let held = HeldBack::from_report(&report, &identities);
        let suspension = held.suspends("A-1", "erp").expect("A-1's grants on erp are suspended");
        assert_eq!((suspension.file.as_str(), suspension.line), ("permissions.jsonl", 7));
        assert!(held.suspends("A-1", "payroll").is_none() && held.suspends("B-9", "erp").is_none());
        assert_eq!(held.suspended(), std::slice::from_ref(suspension));
    }
}
