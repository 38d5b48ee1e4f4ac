//! Joiners, movers, leavers in the merge: a terminated employee keeps the
//! record but no grant, and an expired grant is revoked as of when it lapsed.
mod common;

use chrono::NaiveDate;
use common::{a_row, Input};

fn grant(employee: &str, role: &str, expires: Option<&str>, at: &str) -> String {
    serde_json::json!({"employee": employee, "system": "erp", "role": role, "op": "grant", "expires": expires, "at": at}).to_string()
}

#[test]
fn a_terminated_employee_keeps_the_record_but_no_grant() {
    let mut input = Input::default();
    input.a_employees.push(a_row("2", "D1", "", "", "2026-03-01 09:00:00").replace("재직", "퇴직"));
    input.permissions = Some(vec![
        grant("A-2", "approver", None, "2026-01-01T00:00:00Z"),
        grant("A-2", "viewer", Some("2099-01-01"), "2026-04-01T00:00:00Z"),
        grant("A-1", "approver", None, "2026-01-01T00:00:00Z"),
    ]);
    let outcome = input.merge();
    assert_eq!(outcome.report.revoked_for_leavers, 2);
    assert_eq!(outcome.state.employees["A-2"].status, hr_core::EmployeeStatus::Terminated);
    let approver = &outcome.state.permissions["A-2:erp:approver"];
    // Company A's times are UTC+9: the termination was recorded at 00:00 UTC.
    assert_eq!((approver.granted, approver.at.to_rfc3339()), (false, "2026-03-01T00:00:00+00:00".to_string()));
    let viewer = &outcome.state.permissions["A-2:erp:viewer"];
    assert_eq!((viewer.granted, viewer.at.to_rfc3339()), (false, "2026-04-01T00:00:00+00:00".to_string()), "a revocation never predates its grant");
    assert!(outcome.state.permissions["A-1:erp:approver"].granted, "an active employee keeps access");
}

#[test]
fn a_grant_is_in_force_through_its_expiry_date_and_revoked_as_of_the_next_day() {
    let input = Input {
        permissions: Some(vec![grant("A-1", "approver", Some("2026-01-31"), "2026-01-01T00:00:00Z"), grant("A-1", "viewer", None, "2026-01-01T00:00:00Z")]),
        ..Input::default()
    };
    let mut state = input.merge().state;
    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    assert!(state.revoke_expired(day(1, 31)).is_empty(), "in force on its expiry date");
    assert!(state.permissions["A-1:erp:approver"].granted);
    assert_eq!(state.revoke_expired(day(2, 1)), ["A-1:erp:approver"]);
    let lapsed = &state.permissions["A-1:erp:approver"];
    assert_eq!((lapsed.granted, lapsed.at.to_rfc3339()), (false, "2026-02-01T00:00:00+00:00".to_string()));
    assert!(state.permissions["A-1:erp:viewer"].granted, "a grant without expiry never lapses");
    assert!(state.revoke_expired(day(3, 1)).is_empty(), "a revoked grant is not revoked again");
}
