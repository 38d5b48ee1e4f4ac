//! Company B's ids may be written as numbers or as strings: `42` and
//! `"42"` name the same record, `"OU-42"` is an id of its own, and only an
//! id that cannot be one (a fraction, a negative number, a `:`) is quarantined.
mod common;

use common::{b_line, unit_line, Input};
use hr_core::{DataType, Reason};
use serde_json::{json, Value};

fn with(line: &str, field: &str, value: Value) -> String {
    let mut object: Value = serde_json::from_str(line).unwrap();
    object[field] = value;
    object.to_string()
}

/// `line` with the numeric ids in `fields` written as strings.
fn ids_as_strings(line: &str, fields: &[&str]) -> String {
    let mut object: Value = serde_json::from_str(line).unwrap();
    for field in fields {
        if let Some(n) = object[*field].as_u64() {
            object[*field] = json!(n.to_string());
        }
    }
    object.to_string()
}

#[test]
fn string_and_number_ids_import_to_the_same_unified_ids() {
    let numbers = Input {
        b_employees: vec![b_line(1, 10, None, None, true, "2026-01-01T00:00:00Z"), b_line(2, 11, Some(1), None, true, "2026-01-01T00:00:00Z")],
        b_org_units: vec![unit_line(10, None, Some(1)), unit_line(11, Some(10), Some(2))],
        ..Input::default()
    };
    let strings = Input {
        b_employees: numbers.b_employees.iter().map(|l| ids_as_strings(l, &["employeeId", "orgUnitId", "managerId"])).collect(),
        b_org_units: numbers.b_org_units.iter().map(|l| ids_as_strings(l, &["orgUnitId", "parentId", "headId"])).collect(),
        ..Input::default()
    };
    let (mut from_numbers, mut from_strings) = (numbers.merge(), strings.merge());
    // Two directories written moments apart: only their export times may differ.
    (from_numbers.state.exported_at, from_strings.state.exported_at) = (None, None);
    assert!(from_strings.report.quarantined.is_empty(), "{:?}", from_strings.report.quarantined);
    assert_eq!(from_numbers.state, from_strings.state);
    let b2 = &from_strings.state.employees["B-2"];
    assert_eq!((b2.org_unit.as_str(), b2.manager.as_deref()), ("B-11", Some("B-1")));
    assert_eq!(from_strings.state.org_units["B-11"].parent.as_deref(), Some("B-10"));
}

#[test]
fn an_id_of_letters_keeps_its_text() {
    let input = Input {
        b_employees: vec![with(&b_line(7, 10, None, None, true, "2026-01-01T00:00:00Z"), "orgUnitId", json!("OU-42"))],
        b_org_units: vec![with(&unit_line(10, None, None), "orgUnitId", json!("OU-42"))],
        ..Input::default()
    };
    let outcome = input.merge();
    assert!(outcome.report.quarantined.is_empty(), "{:?}", outcome.report.quarantined);
    assert_eq!(outcome.state.employees["B-7"].org_unit, "B-OU-42");
    assert!(outcome.state.org_units.contains_key("B-OU-42"));
}

#[test]
fn only_ids_that_cannot_be_ids_are_quarantined_naming_the_field() {
    let line = b_line(3, 10, None, None, true, "2026-01-01T00:00:00Z");
    let input = Input {
        b_employees: vec![
            with(&line, "employeeId", json!(3.5)),
            with(&line, "employeeId", json!(-3)),
            with(&line, "employeeId", json!("B:3")),
            with(&line, "employeeId", json!(true)),
            with(&line, "managerId", json!("has space")),
        ],
        ..Input::default()
    };
    let outcome = input.merge();
    let found: Vec<(u64, Reason, &str)> =
        outcome.report.quarantined.iter().filter(|q| q.file.ends_with("employees.jsonl")).map(|q| (q.line, q.reason, q.detail.as_str())).collect();
    assert_eq!(found.len(), 5, "{found:?}");
    assert!(found[0].2.contains("`employeeId` is a number but not a whole non-negative one"), "{found:?}");
    assert!(found[1].2.contains("`employeeId` is a number but not a whole non-negative one"), "{found:?}");
    assert!(found[2].2.contains("`employeeId` holds characters an id may not"), "{found:?}");
    assert!(found[3].2.contains("`employeeId` is neither a number nor a string"), "{found:?}");
    assert!(found[4].2.contains("`managerId` holds characters an id may not"), "{found:?}");
    assert!(found.iter().all(|(_, reason, _)| *reason == Reason::MalformedRow));
    assert_eq!(outcome.report.counts[&DataType::Employee], 1, "only A-1 is left");
}

#[test]
fn without_a_korean_display_name_an_employee_is_named_last_name_then_first_name() {
    let line = b_line(3, 10, None, None, true, "2026-01-01T00:00:00Z");
    let mut nameless: Value = serde_json::from_str(&line).unwrap();
    nameless.as_object_mut().unwrap().remove("displayNameKo");
    let only_first = with(&nameless.to_string(), "lastName", Value::Null);
    let input = Input { b_employees: vec![nameless.to_string(), with(&only_first, "employeeId", json!(4))], ..Input::default() };
    let outcome = input.merge();
    assert_eq!(outcome.state.employees["B-3"].name, "LeeSeoyeon");
    assert_eq!(outcome.state.employees["B-3"].name_en.as_deref(), Some("Seoyeon Lee"));
    let found: Vec<(u64, Reason, &str)> =
        outcome.report.quarantined.iter().filter(|q| q.file.ends_with("employees.jsonl")).map(|q| (q.line, q.reason, q.detail.as_str())).collect();
    assert_eq!(found, vec![(2, Reason::MissingField, "field `displayNameKo` is empty or absent")], "one name alone is not enough");
}

#[test]
fn a_salary_currency_must_be_three_upper_case_letters() {
    let line = b_line(3, 10, None, None, true, "2026-01-01T00:00:00Z");
    let currency = |id: u64, code: &str| with(&with(&line, "employeeId", json!(id)), "salary", json!({"amount": 1, "currency": code}));
    let input = Input { b_employees: vec![currency(3, "krw"), currency(4, "KRWX"), currency(5, "KR"), currency(6, "USD")], ..Input::default() };
    let outcome = input.merge();
    let lines: Vec<u64> = outcome.report.quarantined.iter().filter(|q| q.detail.contains("salary.currency")).map(|q| q.line).collect();
    assert_eq!(lines, vec![1, 2, 3]);
    assert_eq!(outcome.state.compensation["B-6"].currency, "USD");
}
