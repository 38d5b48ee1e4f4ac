//! The HR rules a run applies to the merged state before it is planned:
//! functions of the state, so the hub only plans, sends and compares.
//!
//! Each returns the records that change as a state of their own (only the
//! data type they touch), or `None` when the rule changes nothing, so the
//! caller plans the original state without copying it.
//!
//! - **Leavers lose access**: every grant in force of a terminated
//!   employee is revoked as of the termination ([`MergedState::with_leavers_grants_revoked`]).
//! - **Grants lapse**: a grant whose `expires` date has passed is revoked
//!   as of that day ([`MergedState::with_expired_grants_revoked`]).
//! - **A bad grant line fails closed**: the grants a quarantined line may
//!   have revoked are revoked until a good line arrives
//!   ([`MergedState::with_grants_suspended`], see [`Suspension`]).
//! - **A system's roles are its own**: a grant of a role its system does
//!   not list is left out and named ([`MergedState::with_unknown_roles_refused`]).
//! - **Owned sets are their owner's**: master-data sets a system publishes
//!   are not the hub's to send ([`MergedState::without_sets`]).
//! - **People change on their dates**: a hire takes effect on the hire date,
//!   a departure after the last day ([`MergedState::as_of`]).

use crate::holdback::Suspension;
use crate::ledger::RejectedChange;
use crate::merge::MergedState;
use crate::schema::{DataType, Employee, EmployeeStatus, MasterData, PermissionGrant};
use compact_str::CompactString;
use std::collections::{BTreeMap, BTreeSet};

/// The calendar day in each company, which its dates are judged by:
/// company A's by `mapping.toml`'s `utc_offset_hours`, company B's in UTC.
/// One fixed day in both for tests and backfills (`--today`).
///
/// ```
/// use hr_core::{Company, CompanyDays};
/// let day: chrono::NaiveDate = "2026-03-09".parse().unwrap();
/// assert_eq!(CompanyDays::at(9, Some(day)).of(Company::A), day);
/// let now = CompanyDays::now(9);
/// assert!(now.of(Company::A) >= now.of(Company::B), "east of UTC, company A's day starts first");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompanyDays {
    a: chrono::NaiveDate,
    b: chrono::NaiveDate,
}

impl CompanyDays {
    /// Each company's day now, company A's `a_utc_offset_hours` from UTC.
    pub fn now(a_utc_offset_hours: i32) -> Self {
        let now = chrono::Utc::now();
        CompanyDays { a: (now + chrono::Duration::hours(a_utc_offset_hours.into())).date_naive(), b: now.date_naive() }
    }

    /// Company A's day `a` and company B's `b`.
    pub fn new(a: chrono::NaiveDate, b: chrono::NaiveDate) -> Self {
        CompanyDays { a, b }
    }

    /// `fixed` in both companies, if given; else [`now`](Self::now).
    pub fn at(a_utc_offset_hours: i32, fixed: Option<chrono::NaiveDate>) -> Self {
        fixed.map_or_else(|| Self::now(a_utc_offset_hours), Self::from)
    }

    /// The day in `company`.
    pub fn of(&self, company: crate::schema::Company) -> chrono::NaiveDate {
        match company {
            crate::schema::Company::A => self.a,
            crate::schema::Company::B => self.b,
        }
    }

    /// The later of the two days: the first a change on a given day is due in.
    pub fn latest(&self) -> chrono::NaiveDate {
        self.a.max(self.b)
    }

    /// Both days one earlier (what they were yesterday).
    pub fn previous(&self) -> Self {
        CompanyDays { a: self.a.pred_opt().unwrap_or(self.a), b: self.b.pred_opt().unwrap_or(self.b) }
    }
}

impl From<chrono::NaiveDate> for CompanyDays {
    /// One day in both companies.
    fn from(day: chrono::NaiveDate) -> Self {
        CompanyDays { a: day, b: day }
    }
}

/// A change the dates of a state hold for later (see [`MergedState::scheduled`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Scheduled {
    /// The day it takes effect.
    pub on: chrono::NaiveDate,
    /// The employee's unified id.
    pub employee: String,
    /// `hire` (sent from that day on), `departure` (terminated, every grant
    /// revoked, that day), `change` (a row dated to take effect that day),
    /// `grant` or `revocation` (a grant line dated ahead), `pre_hire` (sent
    /// ahead to one target, as `pre_hire`; see [`MergedState::pre_hires`]).
    pub change: &'static str,
    /// For a grant line: `<system>:<role>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// For a pre-hire: the one target it goes to that day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl MergedState {
    /// This state as it stands on `days` (each person by their company's
    /// day; a plain date is that day in both), by the dates the source gives:
    /// - a person whose hire date is after `today` is not employed yet: left
    ///   out, with their grants and pay, until that day;
    /// - a person whose termination date is before `today` is terminated, as
    ///   of the end of that last day (and loses every grant, see
    ///   [`with_leavers_grants_revoked`](Self::with_leavers_grants_revoked));
    /// - a person marked terminated whose termination date is `today` or
    ///   later stays active through that day.
    ///
    /// `None` when no date changes anything today.
    pub fn as_of(&self, days: impl Into<CompanyDays>) -> Option<MergedState> {
        let days = days.into();
        let not_yet = |e: &Employee| e.hire_date > days.of(e.company);
        // Left at the end of the last day in their company: what the leaver's grants are revoked as of.
        let left_at = |e: &Employee, last: chrono::NaiveDate| {
            let offset = if e.company == crate::schema::Company::A { self.company_a_utc_offset_hours } else { 0 };
            last.succ_opt().unwrap_or(last).and_time(chrono::NaiveTime::MIN).and_utc() - chrono::Duration::hours(offset.into())
        };
        let effective = |e: &Employee| match e.termination_date {
            Some(last) if days.of(e.company) > last && (e.status != EmployeeStatus::Terminated || e.updated_at < left_at(e, last)) => {
                Some((EmployeeStatus::Terminated, last))
            }
            Some(last) if days.of(e.company) <= last && e.status == EmployeeStatus::Terminated => Some((EmployeeStatus::Active, last)),
            _ => None,
        };
        if !self.employees.values().any(|e| not_yet(e) || effective(e).is_some()) {
            return None;
        }
        let withheld: BTreeSet<CompactString> = self.employees.values().filter(|e| not_yet(e)).map(|e| e.id.clone()).collect();
        let mut state = self.clone();
        state.employees.retain(|id, _| !withheld.contains(id));
        state.permissions.retain(|_, g| !withheld.contains(&g.employee));
        state.compensation.retain(|id, _| !withheld.contains(id));
        for employee in state.employees.values_mut() {
            let Some((status, last)) = effective(employee) else { continue };
            employee.status = status;
            if status == EmployeeStatus::Terminated {
                employee.updated_at = employee.updated_at.max(left_at(employee, last));
            }
        }
        Some(state)
    }

    /// The people [`as_of`](Self::as_of) leaves out on `today` whose hire
    /// date is at most `days` away: what a target with `pre_start_days =
    /// days` receives ahead, as [`EmployeeStatus::PreHire`] (their grants
    /// and pay wait for the hire date). In key order.
    pub fn pre_hires(&self, today: impl Into<CompanyDays>, days: u32) -> Vec<Employee> {
        let today = today.into();
        let ahead = |e: &Employee| e.hire_date > today.of(e.company);
        let within = |e: &Employee| today.of(e.company).checked_add_days(chrono::Days::new(days.into())).is_none_or(|ends| e.hire_date <= ends);
        self.employees
            .values()
            // A hire withdrawn by marking the person terminated is nobody to prepare.
            .filter(|e| ahead(e) && within(e) && e.status != EmployeeStatus::Terminated)
            .map(|e| Employee { status: EmployeeStatus::PreHire, ..e.clone() })
            .collect()
    }

    /// The days after `today` on which a target with `pre_start_days =
    /// days` starts receiving someone ahead (see [`pre_hires`](Self::pre_hires)).
    pub fn pre_hire_windows(&self, today: impl Into<CompanyDays>, days: u32, target: &str) -> Vec<Scheduled> {
        let today = today.into();
        self.employees
            .values()
            .filter(|e| e.status != EmployeeStatus::Terminated)
            .filter_map(|e| Some((e, e.hire_date.checked_sub_days(chrono::Days::new(days.into()))?)))
            .filter(|(e, opens)| *opens > today.of(e.company))
            .map(|(e, on)| Scheduled { on, employee: e.id.to_string(), change: "pre_hire", grant: None, target: Some(target.to_string()) })
            .collect()
    }

    /// What this state's dates hold for after `today`, by day: hires (the
    /// person is sent from their hire date) and departures (terminated on
    /// the day after the last day), as [`as_of`](Self::as_of) will apply
    /// them, and the rows the export dates later
    /// ([`scheduled_changes`](Self::scheduled_changes)), which the first
    /// merge on or after their day applies.
    pub fn scheduled(&self, today: impl Into<CompanyDays>) -> Vec<Scheduled> {
        let days = today.into();
        // Set aside by the merge, so not in effect yet in their company's day, whatever `today` is here.
        let mut due: Vec<Scheduled> = self.scheduled_changes.clone();
        for e in self.employees.values() {
            let today = days.of(e.company);
            if e.hire_date > today {
                due.push(Scheduled { on: e.hire_date, employee: e.id.to_string(), change: "hire", grant: None, target: None });
            }
            if let Some(left) = e.termination_date.and_then(|last| last.succ_opt()).filter(|left| *left > today) {
                due.push(Scheduled { on: left, employee: e.id.to_string(), change: "departure", grant: None, target: None });
            }
        }
        due.sort();
        due
    }

    /// This state's grants with every grant in force of a terminated
    /// employee in `employees` (real-time terminations included, which this
    /// state may not know yet) revoked as of the termination.
    pub fn with_leavers_grants_revoked(&self, employees: &BTreeMap<CompactString, Employee>) -> Option<MergedState> {
        let left = |g: &PermissionGrant| employees.get(&g.employee).filter(|e| g.granted && e.status == EmployeeStatus::Terminated);
        if !self.permissions.values().any(|g| left(g).is_some()) {
            return None;
        }
        let mut revoked = MergedState { permissions: self.permissions.clone(), exported_at: self.exported_at, ..MergedState::default() };
        for grant in revoked.permissions.values_mut() {
            if let Some(holder) = left(grant) {
                *grant = grant.revoked(holder.updated_at);
            }
        }
        Some(revoked)
    }

    /// This state's grants with those expired by `today` revoked.
    pub fn with_expired_grants_revoked(&self, today: chrono::NaiveDate) -> Option<MergedState> {
        if self.permissions.values().all(|g| !g.granted || g.in_force_on(today)) {
            return None;
        }
        let mut grants = MergedState { permissions: self.permissions.clone(), ..MergedState::default() };
        grants.revoke_expired(today);
        Some(grants)
    }

    /// `grants` (or this state's grants, when `None`) with every grant a
    /// suspension covers revoked as of the export; `grants` itself when
    /// none does. A suspension may name a person by a source id not yet
    /// matched to them: this state's merge has matched it.
    pub fn with_grants_suspended(&self, grants: Option<MergedState>, suspensions: &[Suspension]) -> Option<MergedState> {
        if suspensions.is_empty() {
            return grants;
        }
        let person_of = |id: &str| -> String {
            if self.employees.contains_key(id) {
                return id.to_string();
            }
            self.employees.values().find(|e| e.source_ids.iter().any(|s| s == id)).map_or_else(|| id.to_string(), |e| e.id.to_string())
        };
        let suspended: Vec<(String, &str)> = suspensions.iter().map(|s| (person_of(&s.employee), s.system.as_str())).collect();
        let covered =
            |g: &PermissionGrant| g.granted && suspended.iter().any(|(employee, system)| employee == g.employee.as_str() && *system == g.system.as_str());
        if !grants.as_ref().unwrap_or(self).permissions.values().any(covered) {
            return grants;
        }
        let mut grants = grants.unwrap_or_else(|| MergedState { permissions: self.permissions.clone(), ..MergedState::default() });
        let at = self.exported_at.unwrap_or_else(chrono::Utc::now);
        for grant in grants.permissions.values_mut().filter(|g| covered(g)) {
            *grant = grant.revoked(at);
        }
        Some(grants)
    }

    /// This state's grants without those whose role their system does not
    /// list in `roles` (a system missing from `roles` allows any), and those
    /// as rejected changes; `None` when every role is allowed.
    pub fn with_unknown_roles_refused(&self, roles: &BTreeMap<String, Vec<String>>) -> Option<(MergedState, Vec<RejectedChange>)> {
        if roles.is_empty() {
            return None;
        }
        let refused: Vec<RejectedChange> = self
            .permissions
            .values()
            .filter_map(|g| role_problem(roles, g).map(|problem| RejectedChange { data_type: DataType::Permission, key: g.key(), problem }))
            .collect();
        if refused.is_empty() {
            return None;
        }
        let mut allowed = MergedState { permissions: self.permissions.clone(), exported_at: self.exported_at, ..MergedState::default() };
        allowed.permissions.retain(|_, g| role_problem(roles, g).is_none());
        Some((allowed, refused))
    }

    /// This state's master data without the sets in `owned` (set name to
    /// owner), as a state holding only master data; `None` when it has
    /// none of them.
    pub fn without_sets(&self, owned: &BTreeMap<String, String>) -> Option<MergedState> {
        let is_owned = |key: &str| owned.contains_key(MasterData::set_of_key(key));
        if !self.master_data.keys().any(|k| is_owned(k)) {
            return None;
        }
        let master_data = self.master_data.iter().filter(|(k, _)| !is_owned(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        Some(MergedState { master_data, ..MergedState::default() })
    }
}

/// Why `grant`'s role is not one its system lists in `roles`, if it is not.
pub fn role_problem(roles: &BTreeMap<String, Vec<String>>, grant: &PermissionGrant) -> Option<String> {
    let allowed = roles.get(grant.system.as_str())?;
    (!allowed.iter().any(|r| r == grant.role.as_str()))
        .then(|| format!("role {:?} is not one of {}'s roles ({})", grant.role.as_str(), grant.system, allowed.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Company;
    use chrono::{DateTime, NaiveDate, Utc};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn person(id: &str, source_id: &str, status: EmployeeStatus, updated_at: &str) -> Employee {
        Employee {
            id: id.into(),
            source_ids: vec![source_id.into()],
            company: Company::A,
            name: "김민준".into(),
            name_en: None,
            email: None,
            phone: None,
            birth_date: None,
            org_unit: "A-D1".into(),
            grade: "staff".into(),
            status,
            hire_date: NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
            termination_date: None,
            manager: None,
            updated_at: at(updated_at),
        }
    }

    fn grant(employee: &str, system: &str, role: &str, expires: Option<&str>) -> PermissionGrant {
        PermissionGrant {
            employee: employee.into(),
            system: system.into(),
            role: role.into(),
            granted: true,
            expires: expires.map(|d| d.parse().unwrap()),
            at: at("2026-01-01T00:00:00Z"),
        }
    }

    fn state(grants: Vec<PermissionGrant>) -> MergedState {
        let mut state = MergedState { exported_at: Some(at("2026-03-01T09:00:00Z")), ..MergedState::default() };
        state.permissions = grants.into_iter().map(|g| (g.key().into(), g)).collect();
        state
    }

    #[test]
    fn a_leavers_grants_are_revoked_as_of_their_termination_and_no_one_elses() {
        let employees: BTreeMap<CompactString, Employee> = [
            ("E-1".into(), person("E-1", "A-1", EmployeeStatus::Terminated, "2026-02-10T12:00:00Z")),
            ("E-2".into(), person("E-2", "A-2", EmployeeStatus::Active, "2026-02-10T12:00:00Z")),
        ]
        .into();
        let s = state(vec![grant("E-1", "erp", "viewer", None), grant("E-2", "erp", "viewer", None)]);
        let revoked = s.with_leavers_grants_revoked(&employees).unwrap();
        let leaver = &revoked.permissions["E-1:erp:viewer"];
        assert!(!leaver.granted && leaver.at == at("2026-02-10T12:00:00Z"), "{leaver:?}");
        assert!(revoked.permissions["E-2:erp:viewer"].granted);
        assert_eq!(revoked.exported_at, s.exported_at);
        let stayers: BTreeMap<CompactString, Employee> = [("E-1".into(), person("E-1", "A-1", EmployeeStatus::Active, "2026-02-10T12:00:00Z"))].into();
        assert!(s.with_leavers_grants_revoked(&stayers).is_none());
    }

    #[test]
    fn a_grant_past_its_expiry_is_revoked_and_one_in_force_is_not() {
        let s = state(vec![grant("E-1", "erp", "viewer", Some("2026-01-31")), grant("E-2", "erp", "viewer", Some("2026-12-31"))]);
        let today = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let revoked = s.with_expired_grants_revoked(today).unwrap();
        assert!(!revoked.permissions["E-1:erp:viewer"].granted);
        assert!(revoked.permissions["E-2:erp:viewer"].granted);
        assert!(s.with_expired_grants_revoked(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()).is_none(), "in force through its last day");
    }

    #[test]
    fn a_suspension_revokes_that_persons_grants_on_that_system_only_even_by_source_id() {
        let mut s = state(vec![grant("E-1", "erp", "viewer", None), grant("E-1", "payroll", "viewer", None), grant("E-2", "erp", "viewer", None)]);
        s.employees.insert("E-1".into(), person("E-1", "A-1", EmployeeStatus::Active, "2026-01-01T00:00:00Z"));
        let by_source_id = Suspension { employee: "A-1".into(), system: "erp".into(), file: "permissions.jsonl".into(), line: 3 };
        let suspended = s.with_grants_suspended(None, std::slice::from_ref(&by_source_id)).unwrap();
        let revoked = &suspended.permissions["E-1:erp:viewer"];
        assert!(!revoked.granted && Some(revoked.at) == s.exported_at, "{revoked:?}");
        assert!(suspended.permissions["E-1:payroll:viewer"].granted && suspended.permissions["E-2:erp:viewer"].granted);
        // Applied over grants another rule already changed, and not at all without suspensions.
        let expired = s.with_expired_grants_revoked(NaiveDate::from_ymd_opt(2030, 1, 1).unwrap());
        assert_eq!(s.with_grants_suspended(expired.clone(), &[]), expired);
        let other = Suspension { employee: "E-9".into(), ..by_source_id };
        assert!(s.with_grants_suspended(None, &[other]).is_none(), "a suspension covering no grant changes nothing");
    }

    #[test]
    fn a_role_its_system_does_not_list_is_refused_by_name_and_the_rest_pass() {
        let s = state(vec![grant("E-1", "erp", "admin", None), grant("E-1", "erp", "viewer", None), grant("E-1", "payroll", "anything", None)]);
        let roles: BTreeMap<String, Vec<String>> = [("erp".to_string(), vec!["viewer".to_string(), "approver".to_string()])].into();
        let (allowed, refused) = s.with_unknown_roles_refused(&roles).unwrap();
        assert_eq!(allowed.permissions.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["E-1:erp:viewer", "E-1:payroll:anything"]);
        assert_eq!(allowed.exported_at, s.exported_at, "the allowed grants keep the export's time");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].key, "E-1:erp:admin");
        assert_eq!(refused[0].problem, r#"role "admin" is not one of erp's roles (viewer, approver)"#);
        assert!(s.with_unknown_roles_refused(&BTreeMap::new()).is_none());
        let lenient: BTreeMap<String, Vec<String>> = [("erp".to_string(), vec!["admin".to_string(), "viewer".to_string()])].into();
        assert!(s.with_unknown_roles_refused(&lenient).is_none());
    }

    #[test]
    fn sets_a_system_owns_are_left_out_and_the_others_kept() {
        let mut s = MergedState::default();
        for (set, code) in [("md.product", "P1"), ("md.category", "C1")] {
            let md = MasterData { set: set.into(), code: code.into(), name: "x".into(), attributes: Default::default() };
            s.master_data.insert(md.key().into(), md);
        }
        let owned: BTreeMap<String, String> = [("md.product".to_string(), "erp".to_string())].into();
        let kept = s.without_sets(&owned).unwrap();
        assert_eq!(kept.master_data.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["md.category:C1"]);
        let none: BTreeMap<String, String> = [("md.grade".to_string(), "erp".to_string())].into();
        assert!(s.without_sets(&none).is_none());
    }

    #[test]
    fn a_hire_waits_for_its_day_and_a_departure_for_the_end_of_the_last_day() {
        let mut s = state(vec![grant("E-1", "erp", "viewer", None), grant("E-2", "erp", "viewer", None)]);
        let mut hire = person("E-1", "A-1", EmployeeStatus::Active, "2026-02-01T00:00:00Z");
        hire.hire_date = "2026-03-09".parse().unwrap();
        let mut leaver = person("E-2", "A-2", EmployeeStatus::Terminated, "2026-02-01T00:00:00Z");
        leaver.termination_date = Some("2026-03-15".parse().unwrap());
        s.employees.insert("E-1".into(), hire);
        s.employees.insert("E-2".into(), leaver);
        s.compensation.insert(
            "E-1".into(),
            crate::Compensation {
                employee_id: "E-1".into(),
                base_salary: crate::Sensitive::new(1),
                currency: "KRW".into(),
                effective_date: "2026-03-09".parse().unwrap(),
            },
        );
        let on = |day: &str| s.as_of(day.parse::<chrono::NaiveDate>().unwrap()).unwrap_or_else(|| s.clone());

        let before = on("2026-03-08");
        assert!(!before.employees.contains_key("E-1") && !before.compensation.contains_key("E-1"), "not employed yet");
        assert!(!before.permissions.contains_key("E-1:erp:viewer"), "the hire's grant waits too");
        assert_eq!(before.employees["E-2"].status, EmployeeStatus::Active, "marked terminated, but the last day is ahead");
        let hire_day = on("2026-03-09");
        assert!(hire_day.employees.contains_key("E-1") && hire_day.permissions.contains_key("E-1:erp:viewer"), "employed from the hire date itself");
        let last_day = on("2026-03-15");
        assert!(last_day.employees.contains_key("E-1") && last_day.permissions.contains_key("E-1:erp:viewer"));
        assert_eq!(last_day.employees["E-2"].status, EmployeeStatus::Active, "active through the last day");
        let after = on("2026-03-16");
        let left = &after.employees["E-2"];
        assert_eq!((left.status, left.updated_at), (EmployeeStatus::Terminated, at("2026-03-16T00:00:00Z")), "terminated as of the end of the last day");
        let revoked = after.with_leavers_grants_revoked(&after.employees).unwrap();
        assert!(!revoked.permissions["E-2:erp:viewer"].granted && revoked.permissions["E-1:erp:viewer"].granted);
        // Marked active with a last day passed: terminated all the same; no date that matters: nothing changes.
        let mut active = person("E-3", "A-3", EmployeeStatus::Active, "2026-02-01T00:00:00Z");
        active.termination_date = Some("2026-03-01".parse().unwrap());
        let plain = MergedState { employees: [("E-3".into(), active)].into(), ..MergedState::default() };
        assert_eq!(plain.as_of("2026-03-02".parse::<chrono::NaiveDate>().unwrap()).unwrap().employees["E-3"].status, EmployeeStatus::Terminated);
        assert!(plain.as_of("2026-03-01".parse::<chrono::NaiveDate>().unwrap()).is_none());
        // Marked active by a change made after the last day: terminated all the same.
        let mut late = person("E-4", "A-4", EmployeeStatus::Active, "2026-03-05T00:00:00Z");
        late.termination_date = Some("2026-03-01".parse().unwrap());
        let late = MergedState { employees: [("E-4".into(), late)].into(), ..MergedState::default() };
        assert_eq!(late.as_of("2026-03-09".parse::<chrono::NaiveDate>().unwrap()).unwrap().employees["E-4"].status, EmployeeStatus::Terminated);
        // Terminated as of the end of the last day already: nothing to change, nothing copied.
        let mut done = person("E-5", "A-5", EmployeeStatus::Terminated, "2026-03-02T00:00:00Z");
        done.termination_date = Some("2026-03-01".parse().unwrap());
        let done = MergedState { employees: [("E-5".into(), done)].into(), ..MergedState::default() };
        assert!(done.as_of("2026-03-09".parse::<chrono::NaiveDate>().unwrap()).is_none());
    }

    #[test]
    fn what_is_due_is_listed_by_day_from_the_day_after_today() {
        let mut hire = person("E-1", "A-1", EmployeeStatus::Active, "2026-02-01T00:00:00Z");
        hire.hire_date = "2026-03-10".parse().unwrap();
        let mut today_hire = person("E-2", "A-2", EmployeeStatus::Active, "2026-02-01T00:00:00Z");
        today_hire.hire_date = "2026-03-09".parse().unwrap();
        let mut leaving = person("E-3", "A-3", EmployeeStatus::Terminated, "2026-02-01T00:00:00Z");
        leaving.termination_date = Some("2026-03-09".parse().unwrap());
        let mut left = person("E-4", "A-4", EmployeeStatus::Terminated, "2026-02-01T00:00:00Z");
        left.termination_date = Some("2026-03-08".parse().unwrap());
        let s = MergedState { employees: [hire, today_hire, leaving, left].into_iter().map(|e| (e.id.clone(), e)).collect(), ..MergedState::default() };
        let scheduled = s.scheduled("2026-03-09".parse::<chrono::NaiveDate>().unwrap());
        let due: Vec<(String, &str, &str)> = scheduled.iter().map(|d| (d.on.to_string(), d.employee.as_str(), d.change)).collect();
        assert_eq!(
            due,
            vec![("2026-03-10".to_string(), "E-1", "hire"), ("2026-03-10".to_string(), "E-3", "departure")],
            "hired today and left yesterday are not due: they are applied"
        );
    }

    #[test]
    fn a_pre_hire_is_someone_not_hired_yet_whose_day_is_within_the_window() {
        let hire = |id: &str, day: &str| {
            let mut e = person(id, id, EmployeeStatus::Active, "2026-02-01T00:00:00Z");
            e.hire_date = day.parse().unwrap();
            e
        };
        let mut withdrawn = hire("E-5", "2026-03-12");
        withdrawn.status = EmployeeStatus::Terminated;
        let people = [hire("E-1", "2026-03-16"), hire("E-2", "2026-03-17"), hire("E-3", "2026-03-09"), hire("E-4", "2026-03-10"), withdrawn];
        let s = MergedState { employees: people.into_iter().map(|e| (e.id.clone(), e)).collect(), ..MergedState::default() };
        let ahead = s.pre_hires("2026-03-09".parse::<chrono::NaiveDate>().unwrap(), 7);
        let listed: Vec<(&str, EmployeeStatus)> = ahead.iter().map(|e| (e.id.as_str(), e.status)).collect();
        assert_eq!(listed, [("E-1", EmployeeStatus::PreHire), ("E-4", EmployeeStatus::PreHire)], "seven days ahead, not eight; hired today is active");
        assert!(s.pre_hires("2026-03-09".parse::<chrono::NaiveDate>().unwrap(), 0).is_empty());
        let windows: Vec<(String, String)> = s
            .pre_hire_windows("2026-03-09".parse::<chrono::NaiveDate>().unwrap(), 7, "directory")
            .iter()
            .map(|d| (d.on.to_string(), d.employee.clone()))
            .collect();
        assert_eq!(windows, [("2026-03-10".to_string(), "E-2".to_string())], "opened already or withdrawn are not due");
    }

    #[test]
    fn each_person_is_judged_by_their_own_companys_day() {
        let mut a_leaver = person("A-1", "A-1", EmployeeStatus::Terminated, "2026-02-01T00:00:00Z");
        a_leaver.termination_date = Some("2026-03-08".parse().unwrap());
        let mut b_leaver = person("B-1", "B-1", EmployeeStatus::Terminated, "2026-02-01T00:00:00Z");
        (b_leaver.company, b_leaver.termination_date) = (crate::schema::Company::B, Some("2026-03-08".parse().unwrap()));
        let mut a_hire = person("A-2", "A-2", EmployeeStatus::Active, "2026-02-01T00:00:00Z");
        a_hire.hire_date = "2026-03-09".parse().unwrap();
        let s = MergedState { employees: [a_leaver, b_leaver, a_hire].into_iter().map(|e| (e.id.clone(), e)).collect(), ..MergedState::default() };
        // 2026-03-09 00:30 in company A (UTC+9) is still 2026-03-08 in UTC.
        let days = CompanyDays::new("2026-03-09".parse().unwrap(), "2026-03-08".parse().unwrap());
        let s = MergedState { company_a_utc_offset_hours: 9, ..s };
        let on = s.as_of(days).unwrap();
        assert_eq!(on.employees["A-1"].status, EmployeeStatus::Terminated, "company A's last day is over");
        assert_eq!(on.employees["A-1"].updated_at, at("2026-03-08T15:00:00Z"), "as of midnight in company A, never ahead of the clock there");
        assert_eq!(on.employees["B-1"].status, EmployeeStatus::Active, "company B's is not");
        assert!(on.employees.contains_key("A-2"), "company A's hire day has come");
        assert_eq!(s.scheduled(days).iter().map(|d| d.employee.as_str()).collect::<Vec<_>>(), ["B-1"]);
        assert_eq!(days.latest(), "2026-03-09".parse::<chrono::NaiveDate>().unwrap(), "the day a change is due first");
        assert_eq!(days.previous(), CompanyDays::new("2026-03-08".parse().unwrap(), "2026-03-07".parse().unwrap()));
    }
}
