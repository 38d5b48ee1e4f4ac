//! Every quarantine reason, conflict kind and merge rule, from files on disk.
// Each test reads as "the default input, with this file changed".
#![allow(clippy::field_reassign_with_default)]

mod common;
use common::*;
use hr_core::{DataType, EmployeeStatus, Reason};

fn reasons(outcome: &hr_core::MergeOutcome) -> Vec<(String, u64, Option<String>, Reason)> {
    outcome.report.quarantined.iter().map(|q| (q.file.clone(), q.line, q.id.clone(), q.reason)).collect()
}

#[test]
fn a_clean_input_merges_with_roots_and_namespaced_ids() {
    let out = Input::default().merge();
    assert!(out.report.quarantined.is_empty(), "{:?}", out.report.quarantined);
    assert_eq!(out.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-1"]);
    assert_eq!(out.state.org_units.keys().collect::<Vec<_>>(), ["A", "A-D1", "B", "B-10", "GROUP"]);
    assert_eq!(out.state.org_units["A-D1"].parent.as_deref(), Some("A"));
    assert_eq!(out.state.org_units["B-10"].parent.as_deref(), Some("B"));
    assert_eq!(out.state.org_units["A"].parent.as_deref(), Some("GROUP"));
    assert_eq!(out.state.org_units["A-D1"].leader.as_deref(), Some("A-1"));
    assert_eq!(out.report.counts[&DataType::OrgUnit], 5);
    assert_eq!(out.report.counts[&DataType::Compensation], 2);
    // 09:00 KST is 00:00 UTC.
    assert_eq!(out.state.employees["A-1"].updated_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
    assert_eq!(out.state.employees["A-1"].grade, "manager");
    assert_eq!(out.state.employees["B-1"].grade, "assistant_manager");
}

#[test]
fn each_field_problem_is_quarantined_with_file_line_id_and_reason() {
    let mut input = Input::default();
    input.a_employees = vec![
        a_row("1", "D1", "", "", "2026-01-01 09:00:00"),                                // line 2, fine
        "2,김,Kim,bad-email,D1,사원,20200101,재직,,,,,,2026-01-01 09:00:00".into(),     // 3 invalid_email
        "3,김,Kim,k@a.example,D1,사원,2020-01-01,재직,,,,,,2026-01-01 09:00:00".into(), // 4 invalid_date
        "4,김,Kim,k@a.example,D1,회장,20200101,재직,,,,,,2026-01-01 09:00:00".into(),   // 5 unknown_grade
        "5,김,Kim,k@a.example,NOPE,사원,20200101,재직,,,,,,2026-01-01 09:00:00".into(), // 6 unknown_org_unit
        "6,,Kim,k@a.example,D1,사원,20200101,재직,,,,,,2026-01-01 09:00:00".into(),     // 7 missing_field
        "8,김,Kim".into(),                                                              // 8 malformed_row (field count)
        "7,김,\"unterminated".into(),                                                   // 9 malformed_row (open quote)
    ];
    input.b_employees.push("{\"employeeId\": 9, ".into()); // line 2: truncated JSON
    let out = input.merge();
    let got = reasons(&out);
    let a = "company_a/employees.csv".to_string();
    let expect = vec![
        (a.clone(), 3, Some("A-2".into()), Reason::InvalidEmail),
        (a.clone(), 4, Some("A-3".into()), Reason::InvalidDate),
        (a.clone(), 5, Some("A-4".into()), Reason::UnknownGrade),
        (a.clone(), 6, Some("A-5".into()), Reason::UnknownOrgUnit),
        (a.clone(), 7, Some("A-6".into()), Reason::MissingField),
        (a.clone(), 8, Some("A-8".into()), Reason::MalformedRow),
        (a.clone(), 9, Some("A-7".into()), Reason::MalformedRow),
        ("company_b/employees.jsonl".into(), 2, None, Reason::MalformedRow),
    ];
    assert_eq!(got, expect);
    assert!(out.report.quarantined[4].detail.contains("`name`"));
    assert_eq!(out.state.employees.len(), 2, "the good rows proceed");
}

#[test]
fn b_unknown_grade_and_bad_types_name_the_field() {
    let mut input = Input::default();
    let mut bad_grade: serde_json::Value = serde_json::from_str(&b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z")).unwrap();
    bad_grade["grade"] = "G9".into();
    let mut bad_type = bad_grade.clone();
    bad_type["grade"] = "G1".into();
    bad_type["employeeId"] = 3.into();
    bad_type["active"] = "yes".into();
    input.b_employees.push(bad_grade.to_string());
    input.b_employees.push(bad_type.to_string());
    let out = input.merge();
    let q = &out.report.quarantined;
    assert_eq!((q[0].line, q[0].id.as_deref(), q[0].reason), (2, Some("B-2"), Reason::UnknownGrade));
    assert_eq!((q[1].line, q[1].id.as_deref(), q[1].reason), (3, Some("B-3"), Reason::MalformedRow));
    assert!(q[1].detail.contains("`active`"), "{}", q[1].detail);
}

#[test]
fn dangling_parents_and_cycles_are_quarantined_with_their_descendants() {
    let mut input = Input::default();
    input.a_departments = vec![
        "D1,본부,,1,2026-01-01 09:00:00".into(),
        "D2,고아,MISSING,,2026-01-01 09:00:00".into(), // line 3 dangling
        "D3,손자,D2,,2026-01-01 09:00:00".into(),      // line 4 dangling once D2 is gone
        "C1,순환1,C2,,2026-01-01 09:00:00".into(),     // line 5 cycle
        "C2,순환2,C1,,2026-01-01 09:00:00".into(),     // line 6 cycle
        "C3,순환아래,C1,,2026-01-01 09:00:00".into(),  // line 7 under the cycle
    ];
    let out = input.merge();
    let got = reasons(&out);
    let d = "company_a/departments.csv".to_string();
    assert_eq!(
        got,
        vec![
            (d.clone(), 3, Some("A-D2".into()), Reason::DanglingParent),
            (d.clone(), 4, Some("A-D3".into()), Reason::DanglingParent),
            (d.clone(), 5, Some("A-C1".into()), Reason::OrgCycle),
            (d.clone(), 6, Some("A-C2".into()), Reason::OrgCycle),
            (d.clone(), 7, Some("A-C3".into()), Reason::DanglingParent),
        ]
    );
    assert!(out.state.org_units.contains_key("A-D1"));
    let detail = |line: u64| out.report.quarantined.iter().find(|q| q.line == line && q.file == d).map(|q| q.detail.as_str());
    assert_eq!(detail(3), Some("parent A-MISSING does not exist or was quarantined"));
    assert_eq!(detail(5), Some("the unit's parent chain loops back to itself"));
}

#[test]
fn duplicate_source_ids_keep_the_latest_updated_at() {
    let mut input = Input::default();
    input.a_employees = vec![
        a_row("1", "D1", "", "", "2026-01-02 09:00:00"), // line 2, newer: kept
        a_row("1", "D1", "", "", "2026-01-01 09:00:00"), // line 3, older: quarantined
    ];
    input.b_org_units.push(unit_line(10, None, None)); // same timestamp: a deterministic winner
    let out = input.merge();
    let got = reasons(&out);
    assert_eq!(got[0], ("company_a/employees.csv".into(), 3, Some("A-1".into()), Reason::DuplicateSourceId));
    assert_eq!(got[1].3, Reason::DuplicateSourceId);
    assert_eq!(got.len(), 2);
    assert_eq!(out.state.employees["A-1"].updated_at.to_rfc3339(), "2026-01-02T00:00:00+00:00");
}

#[test]
fn of_rows_alike_in_every_field_the_first_is_kept() {
    let mut input = Input::default();
    // More rows than a small sort handles by insertion, so the order of equal elements is the sort's to choose.
    input.a_employees = (0..40).map(|_| a_row("1", "D1", "", "", "2026-01-01 09:00:00")).collect();
    let out = input.merge();
    let lines: Vec<u64> = out.report.quarantined.iter().filter(|q| q.reason == Reason::DuplicateSourceId).map(|q| q.line).collect();
    assert_eq!(lines, (3..=41).collect::<Vec<u64>>(), "line 2 is kept, every later copy quarantined");
    assert!(out.report.quarantined.iter().all(|q| q.detail.contains("line 2,") || q.reason != Reason::DuplicateSourceId));
}

#[test]
fn the_same_person_in_both_companies_becomes_one_employee() {
    let mut input = Input::default();
    // A-1 terminated (퇴직), B-1 active with the same person key: B-1 is primary.
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-03-01 09:00:00").replace("재직", "퇴직"), a_row("2", "D1", "1", "", "2026-01-01 09:00:00")];
    let mut b: serde_json::Value = serde_json::from_str(&b_line(1, 10, None, Some(KEY1), true, "2026-01-01T00:00:00Z")).unwrap();
    b["email"] = serde_json::Value::Null; // filled from A-1
    input.b_employees = vec![b.to_string(), b_line(2, 10, Some(1), None, true, "2026-01-01T00:00:00Z")];
    input.permissions =
        Some(vec![r#"{"employee": "A-1", "system": "erp", "role": "approver", "op": "grant", "expires": null, "at": "2026-01-01T00:00:00Z"}"#.into()]);
    let out = input.merge();
    assert_eq!(out.report.matched_persons, 1);
    let e = &out.state.employees["B-1"];
    assert!(!out.state.employees.contains_key("A-1"));
    assert_eq!(e.source_ids, ["A-1", "B-1"]);
    assert_eq!(e.status, EmployeeStatus::Active);
    assert_eq!(e.email.as_deref(), Some("m1@a.example"), "empty field filled from the other record");
    assert_eq!(e.phone.as_ref().map(|p| p.expose().as_str()), Some("010-1111-2222"));
    // References by either source id resolve to the merged employee.
    assert_eq!(out.state.employees["A-2"].manager.as_deref(), Some("B-1"));
    assert_eq!(out.state.employees["B-2"].manager.as_deref(), Some("B-1"));
    assert_eq!(out.state.org_units["A-D1"].leader.as_deref(), Some("B-1"));
    assert_eq!(out.state.org_units["B-10"].leader.as_deref(), Some("B-1"));
    assert!(out.state.permissions.contains_key("B-1:erp:approver"));
    assert_eq!(out.state.compensation.len(), 3);
}

#[test]
fn when_neither_is_active_the_last_updated_is_primary() {
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-03-01 09:00:00").replace("재직", "퇴직")];
    input.b_employees = vec![b_line(1, 10, None, Some(KEY1), false, "2026-02-01T00:00:00Z")];
    let out = input.merge();
    assert_eq!(out.state.employees.keys().collect::<Vec<_>>(), ["A-1"]);
}

#[test]
fn when_both_are_active_the_last_updated_is_primary_in_either_row_order() {
    for b_first in [false, true] {
        let mut input = Input::default();
        input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
        let mut b = vec![b_line(1, 10, None, Some(KEY1), true, "2026-02-01T00:00:00Z"), b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z")];
        if b_first {
            b.reverse();
        }
        input.b_employees = b;
        let out = input.merge();
        assert_eq!(out.state.employees.keys().collect::<Vec<_>>(), ["B-1", "B-2"], "B-1 was updated last");
        assert_eq!(out.state.employees["B-1"].company, hr_core::Company::B);
    }
}

#[test]
fn a_duplicate_id_with_the_same_timestamp_has_one_winner_whatever_the_row_order() {
    let mut winners = vec![];
    for swapped in [false, true] {
        let mut input = Input::default();
        let mut units = vec![unit_line(10, None, Some(1)), unit_line(10, None, None)];
        if swapped {
            units.reverse();
        }
        input.b_org_units = units;
        let out = input.merge();
        let lost = out.report.quarantined.iter().find(|q| q.reason == Reason::DuplicateSourceId).expect("one row is quarantined");
        winners.push((out.state.org_units["B-10"].leader.clone(), lost.line));
    }
    // The winner is chosen on content (the row with a leader), so it is the same row in both orders.
    assert_eq!(winners[0].0.as_deref(), Some("B-1"));
    assert_eq!(winners[0].0, winners[1].0);
    assert_eq!((winners[0].1, winners[1].1), (2, 1), "the other row is the one quarantined");
}

#[test]
fn same_name_and_birth_date_without_person_key_is_a_conflict() {
    let mut input = Input::default();
    // Same Korean name, same birth date written in both formats, no person keys.
    input.a_employees = vec![a_row("1", "D1", "", "", "2026-01-01 09:00:00").replace("김민준", "이서연").replace("19900101", "19920506")];
    let out = input.merge();
    assert_eq!(out.state.employees.len(), 2, "kept as two employees");
    assert_eq!(out.report.conflicts.len(), 1);
    assert_eq!(out.report.conflicts[0].kind, hr_core::ConflictKind::PossibleDuplicatePerson);
    assert_eq!(serde_json::to_value(&out.report.conflicts[0]).unwrap()["kind"], "possible_duplicate_person", "the report's JSON names it");
    assert_eq!(out.report.conflicts[0].ids, ["A-1", "B-1"]);
}

#[test]
fn an_unknown_manager_keeps_the_employee_with_a_warning() {
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "999", "", "2026-01-01 09:00:00")];
    let out = input.merge();
    assert_eq!(out.state.employees["A-1"].manager, None);
    assert_eq!(out.report.warnings.len(), 1);
    assert_eq!((out.report.warnings[0].kind, out.report.warnings[0].id.as_str()), (hr_core::WarningKind::UnknownManager, "A-1"));
}

#[test]
fn master_data_and_permissions_are_read_and_resolved() {
    let mut input = Input::default();
    input.master_data = Some(vec!["md.category,C1,식품", "md.category,C2,의류", "md.category,C1,식품", ",C3,빈집합"]);
    input.permissions = Some(vec![
        r#"{"employee": "A-1", "system": "erp", "role": "approver", "op": "grant", "expires": "2027-01-01", "at": "2026-01-01T00:00:00Z"}"#.into(),
        r#"{"employee": "A-1", "system": "erp", "role": "approver", "op": "revoke", "expires": null, "at": "2026-02-01T00:00:00Z"}"#.into(),
        r#"{"employee": "Z-1", "system": "erp", "role": "viewer", "op": "grant", "expires": null, "at": "2026-02-01T00:00:00Z"}"#.into(),
    ]);
    let out = input.merge();
    assert_eq!(out.state.master_data.len(), 2);
    assert!(!out.state.permissions["A-1:erp:approver"].granted, "the later revoke wins");
    let got = reasons(&out);
    assert!(
        got.contains(&("master_data.csv".into(), 4, Some("md.category:C1".into()), Reason::DuplicateSourceId))
            || got.contains(&("master_data.csv".into(), 2, Some("md.category:C1".into()), Reason::DuplicateSourceId))
    );
    assert!(got.contains(&("master_data.csv".into(), 5, None, Reason::MissingField)));
    assert!(got.contains(&("permissions.jsonl".into(), 3, Some("Z-1:erp:viewer".into()), Reason::MalformedRow)));
}

#[test]
fn master_data_columns_beyond_set_code_and_name_are_its_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("units.csv");
    std::fs::write(&path, "set,code,name,dimension,name_ko\nmd.uom,KG,kilogram,mass,킬로그램\nmd.uom,EA,each,,개\n").unwrap();
    let (rows, quarantined) = hr_core::read_master_data_file(&path).unwrap();
    assert!(quarantined.is_empty(), "{quarantined:?}");
    let attributes: Vec<Vec<(&str, &str)>> = rows.iter().map(|r| r.record.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).collect();
    assert_eq!(attributes, vec![vec![("dimension", "mass"), ("name_ko", "킬로그램")], vec![("name_ko", "개")]], "an empty cell is no attribute");
}

#[test]
fn sensitive_fields_never_show_in_debug_output() {
    let out = Input::default().merge();
    let text = format!("{:?} {:?}", out.state, out.report);
    for secret in ["010-1111-2222", "1990-01-01", "50000000", "60000000", "1992-05-06"] {
        assert!(!text.contains(secret), "{secret} leaked into Debug output");
    }
}

#[test]
fn records_match_only_on_an_equal_person_key() {
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00"), a_row("2", "D1", "", KEY2, "2026-01-01 09:00:00")];
    input.b_employees = vec![b_line(1, 10, None, Some(KEY1), false, "2025-01-01T00:00:00Z")];
    let out = input.merge();
    assert_eq!(out.state.employees.keys().collect::<Vec<_>>(), ["A-1", "A-2"]);
    assert_eq!(out.state.employees["A-1"].source_ids, ["A-1", "B-1"]);
    assert_eq!(out.state.employees["A-2"].source_ids, ["A-2"]);
    assert_eq!(out.report.matched_persons, 1);
}

#[test]
fn a_duplicate_employee_id_with_the_same_timestamp_has_one_winner_whatever_the_row_order() {
    let mut names = vec![];
    for swapped in [false, true] {
        let mut input = Input::default();
        let mut rows = vec![a_row("1", "D1", "", "", "2026-01-01 09:00:00"), a_row("1", "D1", "", "", "2026-01-01 09:00:00").replace("김민준", "박지훈")];
        if swapped {
            rows.reverse();
        }
        input.a_employees = rows;
        let out = input.merge();
        assert_eq!(out.report.quarantined.iter().filter(|q| q.reason == Reason::DuplicateSourceId).count(), 1);
        names.push(out.state.employees["A-1"].name.clone());
    }
    assert_eq!(names[0], names[1], "the winner is chosen on content, not on row order");
}

#[test]
fn at_the_same_instant_a_revocation_beats_a_grant_and_the_later_expiry_beats_the_earlier() {
    let event = |op: &str, expires: Option<&str>| {
        serde_json::json!({"employee": "A-1", "system": "erp", "role": "approver", "op": op, "expires": expires, "at": "2026-01-01T00:00:00Z"}).to_string()
    };
    for swapped in [false, true] {
        let mut revoke_and_grant = vec![event("grant", None), event("revoke", None)];
        let mut two_expiries = vec![event("grant", Some("2026-06-30")), event("grant", Some("2026-12-31"))];
        let mut lifelong_and_dated = vec![event("grant", None), event("grant", Some("2026-12-31"))];
        if swapped {
            revoke_and_grant.reverse();
            two_expiries.reverse();
            lifelong_and_dated.reverse();
        }
        let out = Input { permissions: Some(lifelong_and_dated), ..Input::default() }.merge();
        assert_eq!(out.state.permissions["A-1:erp:approver"].expires, None, "no expiry lasts longest; swapped: {swapped}");
        let out = Input { permissions: Some(revoke_and_grant), ..Input::default() }.merge();
        assert!(!out.state.permissions["A-1:erp:approver"].granted, "swapped: {swapped}");
        let out = Input { permissions: Some(two_expiries), ..Input::default() }.merge();
        assert_eq!(out.state.permissions["A-1:erp:approver"].expires.map(|d| d.to_string()).as_deref(), Some("2026-12-31"), "swapped: {swapped}");
    }
}

#[test]
fn a_merged_record_reads_back_as_the_payload_of_its_data_type() {
    let mut input = Input::default();
    input.master_data = Some(vec!["md.category,C1,식품"]);
    let out = input.merge();
    let json = out.state.record(DataType::Employee, "A-1").unwrap().unwrap();
    assert_eq!(serde_json::from_str::<hr_core::Employee>(json.get()).unwrap(), out.state.employees["A-1"]);
    assert!(out.state.record(DataType::Employee, "A-404").is_none());
    for t in DataType::ALL {
        for (key, record) in out.state.records(t) {
            assert_eq!(out.state.record(t, key).unwrap().unwrap().get(), record.unwrap().get(), "{t}/{key}");
        }
    }
}

#[test]
fn what_a_receiver_would_refuse_and_times_in_the_future_are_quarantined_at_the_line() {
    let long_role = "r".repeat(600);
    let grant =
        |role: &str, at: &str| serde_json::json!({"employee": "A-1", "system": "erp", "role": role, "op": "grant", "expires": null, "at": at}).to_string();
    let mut input = Input::default();
    input.master_data = Some(vec!["md:category,C1,콜론", "md.category,C2,의류"]);
    input.permissions = Some(vec![
        grant(&long_role, "2026-01-01T00:00:00Z"),
        grant("approver", "2999-01-01T00:00:00Z"),
        grant("viewer", "2026-01-01T00:00:00Z"),
        serde_json::json!({"employee": "А-1", "system": "erp", "role": "viewer", "op": "grant", "expires": null, "at": "2026-01-01T00:00:00Z"}).to_string(),
    ]);
    input.a_employees.push(a_row("9", "D1", "", "", "9999-01-01 09:00:00"));
    let out = input.merge();
    let got = reasons(&out);
    let at = |file: &str, line: u64| got.iter().find(|q| q.0 == file && q.1 == line).map(|q| q.3);
    assert_eq!(at("permissions.jsonl", 1), Some(Reason::MalformedRow), "a 600-byte role: {got:?}");
    assert_eq!(at("permissions.jsonl", 2), Some(Reason::ImplausibleTime), "a grant dated 2999: {got:?}");
    assert_eq!(at("permissions.jsonl", 4), Some(Reason::MalformedRow), "a Cyrillic А in an id: {got:?}");
    assert_eq!(at("master_data.csv", 2), Some(Reason::MalformedRow), "a ':' in a set: {got:?}");
    assert!(got.iter().any(|q| q.0 == "company_a/employees.csv" && q.3 == Reason::ImplausibleTime), "an updated_at in 9999: {got:?}");
    assert_eq!(out.state.permissions.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["A-1:erp:viewer"], "the good line still counts");
    assert!(out.state.master_data.contains_key("md.category:C2"));
    assert_eq!(Reason::ImplausibleTime.as_str(), "implausible_time");
}

#[test]
fn a_termination_date_is_read_from_either_company_and_a_bad_one_quarantined_by_field() {
    let dir = tempfile::tempdir().unwrap();
    Input::default().write(dir.path());
    let header = format!("{A_HEADER},termination_date");
    let rows = [
        format!("{},20261231", a_row("1", "D1", "", "", "2026-01-01 09:00:00")),
        format!("{},", a_row("2", "D1", "1", "", "2026-01-01 09:00:00")),
        format!("{},2026-12-31", a_row("3", "D1", "1", "", "2026-01-01 09:00:00")),
    ];
    std::fs::write(dir.path().join("company_a/employees.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let mut b: serde_json::Value = serde_json::from_str(&b_line(1, 10, None, None, true, "2026-01-01T00:00:00Z")).unwrap();
    b["endDate"] = "2027-01-15".into();
    std::fs::write(dir.path().join("company_b/employees.jsonl"), format!("{b}\n")).unwrap();
    let outcome = hr_core::merge(hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap());
    let day = |d: &str| Some(d.parse::<chrono::NaiveDate>().unwrap());
    assert_eq!(outcome.state.employees["A-1"].termination_date, day("2026-12-31"));
    assert_eq!(outcome.state.employees["A-2"].termination_date, None, "an empty cell: no date");
    assert_eq!(outcome.state.employees["B-1"].termination_date, day("2027-01-15"));
    let bad = reasons(&outcome);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].0.as_str(), bad[0].1, bad[0].2.as_deref()), ("company_a/employees.csv", 4, Some("A-3")));
    assert!(outcome.report.quarantined[0].detail.contains("termination_date"), "{:?}", outcome.report.quarantined[0]);
    // Company A's dates are judged in its own day: the merged state carries mapping.toml's offset.
    assert_eq!(outcome.state.company_a_utc_offset_hours, hr_core::Mapping::default().company_a.utc_offset_hours);
    let mut left = outcome.state.clone();
    left.employees.get_mut("A-1").unwrap().status = hr_core::EmployeeStatus::Terminated;
    let after = left.as_of("2027-01-01".parse::<chrono::NaiveDate>().unwrap()).unwrap();
    let end_of_day_in_company_a = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00+09:00").unwrap().to_utc();
    assert_eq!(after.employees["A-1"].updated_at, end_of_day_in_company_a, "terminated as of midnight in company A");
}

#[test]
fn a_row_dated_later_waits_for_its_day_in_either_company_and_then_replaces_the_one_before() {
    let mut input = Input::default();
    input.a_header = format!("{A_HEADER},effective_date");
    input.a_departments.push("D2,지원,D1,,2026-01-01 09:00:00".into());
    input.a_employees = vec![
        format!("{},", a_row("1", "D1", "", "", "2026-01-01 09:00:00")),
        // Entered in February, effective on 1 March: a move.
        format!("{},20260301", a_row("1", "D2", "", "", "2026-02-10 09:00:00")),
        format!("{},2026-03-01", a_row("2", "D1", "1", "", "2026-01-01 09:00:00")),
    ];
    input.b_org_units.push(unit_line(11, Some(10), None));
    let mut moved: serde_json::Value = serde_json::from_str(&b_line(1, 11, None, None, true, "2026-02-10T00:00:00Z")).unwrap();
    moved["effectiveDate"] = "2026-03-01".into();
    input.b_employees.push(moved.to_string());
    let dir = tempfile::tempdir().unwrap();
    input.write(dir.path());
    let on = |day: &str| {
        let source = hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap();
        hr_core::merge(source.as_of(day.parse().unwrap()))
    };
    let before = on("2026-02-28");
    assert_eq!((before.state.employees["A-1"].org_unit.as_str(), before.state.employees["B-1"].org_unit.as_str()), ("A-D1", "B-10"));
    let due: Vec<(String, &str, &str)> = before.state.scheduled_changes.iter().map(|s| (s.on.to_string(), s.employee.as_str(), s.change)).collect();
    assert_eq!(due, [("2026-03-01".to_string(), "A-1", "change"), ("2026-03-01".to_string(), "B-1", "change")]);
    assert!(before.report.not_yet_effective.is_empty(), "both have a row in effect");
    let bad = reasons(&before);
    assert_eq!((bad.len(), bad[0].2.as_deref()), (1, Some("A-2")), "{bad:?}");
    assert!(before.report.quarantined[0].detail.contains("effective_date"), "{:?}", before.report.quarantined[0]);

    let after = on("2026-03-01");
    assert_eq!((after.state.employees["A-1"].org_unit.as_str(), after.state.employees["B-1"].org_unit.as_str()), ("A-D2", "B-11"));
    assert!(after.state.scheduled_changes.is_empty());
    assert_eq!(reasons(&after).len(), 1, "the row the move replaced is history, not a duplicate: {:?}", reasons(&after));
}

#[test]
fn a_grant_line_dated_ahead_waits_for_its_day_and_a_call_cannot_date_one_ahead() {
    let line = |role: &str, op: &str, effective: &str| {
        serde_json::json!({"employee": "A-1", "system": "erp", "role": role, "op": op, "at": "2026-02-01T00:00:00Z", "expires": null, "effective": effective})
            .to_string()
    };
    let input = Input {
        permissions: Some(vec![
            serde_json::json!({"employee": "A-1", "system": "erp", "role": "viewer", "op": "grant", "at": "2026-01-01T00:00:00Z", "expires": null}).to_string(),
            line("viewer", "revoke", "2026-03-01"),
            line("approver", "grant", "2026-03-01"),
        ]),
        ..Input::default()
    };
    let dir = tempfile::tempdir().unwrap();
    input.write(dir.path());
    let on = |day: &str| hr_core::merge(hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap().as_of(day.parse().unwrap()));
    let before = on("2026-02-28");
    let grants = |o: &hr_core::MergeOutcome| o.state.permissions.values().map(|g| (g.role.to_string(), g.granted)).collect::<Vec<_>>();
    assert_eq!(grants(&before), [("viewer".to_string(), true)], "neither dated line applies before its day");
    let due: Vec<(String, &str, Option<&str>)> = before.state.scheduled_changes.iter().map(|s| (s.on.to_string(), s.change, s.grant.as_deref())).collect();
    assert_eq!(due, [("2026-03-01".into(), "grant", Some("erp:approver")), ("2026-03-01".into(), "revocation", Some("erp:viewer"))]);
    let after = on("2026-03-01");
    assert_eq!(grants(&after), [("approver".to_string(), true), ("viewer".to_string(), false)]);
    assert!(after.state.scheduled_changes.is_empty());

    // Over the API a change applies now: a line dated ahead is refused, naming the field.
    let ahead = (chrono::Utc::now().date_naive() + chrono::Days::new(2)).to_string();
    let (lines, refused) = hr_core::read_permission_lines(&line("approver", "grant", &ahead), "request");
    assert!(lines.is_empty());
    assert!(refused[0].detail.contains("`effective`"), "{refused:?}");
    let (lines, _) = hr_core::read_permission_lines(&line("approver", "grant", &chrono::Utc::now().date_naive().to_string()), "request");
    assert_eq!(lines.len(), 1, "a line effective today applies");
}

/// A leaver marked terminated ahead of their last day keeps their grants
/// through it, judged in their company's day; the merge revokes them from
/// the day after.
#[test]
fn a_leaver_keeps_their_grants_through_the_last_day_and_loses_them_after() {
    let mut input = Input { a_header: format!("{A_HEADER},termination_date"), ..Input::default() };
    input.a_employees = vec![format!("{},20260315", a_row("1", "D1", "", "", "2026-03-01 09:00:00").replace("재직", "퇴직"))];
    input.permissions =
        Some(vec![r#"{"employee": "A-1", "system": "erp", "role": "approver", "op": "grant", "expires": null, "at": "2026-01-01T00:00:00Z"}"#.into()]);
    let dir = tempfile::tempdir().unwrap();
    input.write(dir.path());
    let granted_on = |day: &str| {
        let source = hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap();
        let out = hr_core::merge(source.as_of(day.parse().unwrap()));
        (out.state.permissions["A-1:erp:approver"].granted, out.report.revoked_for_leavers)
    };
    assert_eq!(granted_on("2026-03-14"), (true, 0), "before the last day");
    assert_eq!(granted_on("2026-03-15"), (true, 0), "on the last day");
    assert_eq!(granted_on("2026-03-16"), (false, 1), "the day after");
}
