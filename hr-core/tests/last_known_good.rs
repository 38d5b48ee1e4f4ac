//! Last known good and lifelong identity, from files on disk through the
//! merge and the ledger's plan: a typo in the next export never sends a
//! delete, and a person moving between the companies stays one employee.
// Each test reads as "the default input, with this file changed".
#![allow(clippy::field_reassign_with_default)]

mod common;
use common::*;
use hr_core::{load_input_dir, merge_with_identities, DataType, Delta, HeldBack, Ledger, Mapping, MergeOutcome, Operation, PlanOptions};

/// One periodic run of the hub, without transport: merge with the
/// remembered identities, plan every data type, record it as sent.
fn run(ledger: &mut Ledger, input: &Input<'_>) -> (MergeOutcome, Vec<(DataType, Delta)>) {
    run_on(ledger, input, None)
}

/// [`run`], with rows' effective dates judged as if today were `today`.
fn run_on(ledger: &mut Ledger, input: &Input<'_>, today: Option<&str>) -> (MergeOutcome, Vec<(DataType, Delta)>) {
    let dir = tempfile::tempdir().unwrap();
    input.write(dir.path());
    let identities = ledger.identities().unwrap();
    let source = load_input_dir(dir.path(), &Mapping::default()).unwrap();
    let source = match today {
        Some(day) => source.as_of(day.parse::<chrono::NaiveDate>().unwrap()),
        None => source,
    };
    let outcome = merge_with_identities(source, &identities);
    let held = HeldBack::from_report(&outcome.report, &identities);
    ledger.remember_identities(&outcome.state).unwrap();
    let options = PlanOptions { allow_mass_delete: true, hold: Some(&held) };
    let deltas: Vec<(DataType, Delta)> = DataType::ALL.iter().map(|&t| (t, ledger.plan_state(&outcome.state, t, "hub", &options).unwrap())).collect();
    for (t, d) in &deltas {
        ledger.reserve(*t, d).unwrap();
        ledger.commit(*t, d).unwrap();
    }
    (outcome, deltas)
}

fn deletes(deltas: &[(DataType, Delta)]) -> Vec<String> {
    deltas.iter().flat_map(|(t, d)| d.changes.iter().filter(|c| c.op == Operation::Delete).map(move |c| format!("{t}/{}", c.key))).collect()
}

fn changed_keys(deltas: &[(DataType, Delta)]) -> Vec<String> {
    deltas.iter().flat_map(|(t, d)| d.changes.iter().map(move |c| format!("{t}/{}:{:?}", c.key, c.op))).collect()
}

fn with_grants(mut input: Input<'static>) -> Input<'static> {
    input.permissions = Some(vec![
        r#"{"employee": "A-1", "system": "erp", "role": "approver", "op": "grant", "expires": null, "at": "2026-01-02T00:00:00Z"}"#.into(),
        r#"{"employee": "B-1", "system": "erp", "role": "viewer", "op": "grant", "expires": null, "at": "2026-01-02T00:00:00Z"}"#.into(),
    ]);
    input
}

#[test]
fn a_typo_in_the_next_export_holds_the_person_back_and_sends_no_delete() {
    let mut ledger = Ledger::in_memory().unwrap();
    let good = with_grants(Input::default());
    run(&mut ledger, &good);

    for typo in [
        "1,김민준,Minjun Kim,not-an-email,D1,과장,20200102,재직,010-1111-2222,,19900101,,50000000,2026-02-01 09:00:00", // email
        "1,김민준,Minjun Kim,m1@a.example,D1,과장,20200102,재직,010-1111-2222,,19900101,,5000만,2026-02-01 09:00:00",   // salary
        "1,김민준,Minjun Kim,m1@a.example,D1,과장,20200102,재적,010-1111-2222,,19900101,,50000000,2026-02-01 09:00:00", // status
        "1,김민준,Minjun Kim,m1@a.example,D1,과장,20200102,재직,010-1111-2222,,19900101,xyz,50000000,2026-02-01 09:00:00", // person key
    ] {
        let mut next = with_grants(Input::default());
        next.a_employees = vec![typo.to_string()];
        let (outcome, deltas) = run(&mut ledger, &next);
        assert!(outcome.report.quarantined.iter().any(|q| q.id.as_deref() == Some("A-1")), "{typo}: {:?}", outcome.report.quarantined);
        assert_eq!(deletes(&deltas), Vec::<String>::new(), "{typo}");
        let held: Vec<String> = deltas.iter().flat_map(|(_, d)| d.held_back.iter().map(|h| format!("{}/{}", h.data_type, h.key))).collect();
        assert_eq!(held, ["employee/A-1", "compensation/A-1"], "{typo}");
        assert!(outcome.state.permissions["A-1:erp:approver"].granted, "{typo}: the held person's grant stays, unchanged");
        let q = &deltas[0].1.held_back[0].quarantined;
        assert_eq!((q.file.as_str(), q.line), ("company_a/employees.csv", 2));
    }
    // The fixed row is an ordinary update (or nothing): the person was never gone.
    let (_, deltas) = run(&mut ledger, &good);
    assert_eq!(deletes(&deltas), Vec::<String>::new());
    assert_eq!(ledger.version_of(DataType::Employee, "A-1").unwrap(), Some((1, false)));
}

#[test]
fn a_quarantined_org_unit_does_not_cascade_deletes_onto_its_members() {
    let mut ledger = Ledger::in_memory().unwrap();
    run(&mut ledger, &Input::default());
    let mut next = Input::default();
    // The department's parent is now a unit that does not exist: dangling_parent; A-1 then has no unit.
    next.a_departments = vec!["D1,본부,NOPE,1,2026-02-01 09:00:00".into()];
    let (outcome, deltas) = run(&mut ledger, &next);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["B-1"], "A-1 is quarantined with its unit");
    assert_eq!(deletes(&deltas), Vec::<String>::new());
    let held: Vec<String> = deltas.iter().flat_map(|(_, d)| d.held_back.iter().map(|h| format!("{}/{}", h.data_type, h.key))).collect();
    assert_eq!(held, ["employee/A-1", "org_unit/A-D1", "compensation/A-1"]);
}

#[test]
fn a_record_absent_from_the_export_is_still_a_departure() {
    let mut ledger = Ledger::in_memory().unwrap();
    run(&mut ledger, &Input::default());
    let mut next = Input::default();
    next.b_employees = vec![];
    let (_, deltas) = run(&mut ledger, &next);
    assert_eq!(deletes(&deltas), ["employee/B-1", "compensation/B-1"]);
}

#[test]
fn a_move_between_the_companies_is_one_update_of_the_same_employee() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut before = Input::default();
    before.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
    before.b_employees = vec![b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z")];
    before.permissions =
        Some(vec![r#"{"employee": "A-1", "system": "erp", "role": "approver", "op": "grant", "expires": null, "at": "2026-01-02T00:00:00Z"}"#.into()]);
    let (first, _) = run(&mut ledger, &before);
    assert_eq!(first.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-2"]);

    // A-1 leaves company A (terminated) and joins company B as B-7, same person key.
    let mut after = Input::default();
    after.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-03-01 09:00:00").replace("재직", "퇴직")];
    after.b_employees = vec![b_line(2, 10, Some(7), None, true, "2026-01-01T00:00:00Z"), b_line(7, 10, None, Some(KEY1), true, "2026-03-01T00:00:00Z")];
    after.permissions =
        Some(vec![r#"{"employee": "B-7", "system": "erp", "role": "approver", "op": "grant", "expires": null, "at": "2026-03-02T00:00:00Z"}"#.into()]);
    let (outcome, deltas) = run(&mut ledger, &after);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-2"], "the mover keeps A-1");
    let mover = &outcome.state.employees["A-1"];
    assert_eq!(mover.company, hr_core::Company::B);
    assert_eq!(mover.source_ids, ["A-1", "B-7"]);
    assert_eq!(outcome.state.employees["B-2"].manager.as_deref(), Some("A-1"), "references to B-7 resolve to the lifelong id");
    let employee_changes: Vec<String> = changed_keys(&deltas).into_iter().filter(|c| c.starts_with("employee/")).collect();
    assert_eq!(employee_changes, ["employee/A-1:Upsert", "employee/B-2:Upsert"], "one update of the mover (and B-2's new manager), no delete, no create");
    assert_eq!(deltas[0].1.created, 0);
    assert_eq!(deletes(&deltas), Vec::<String>::new());
    assert!(outcome.state.permissions.contains_key("A-1:erp:approver"));

    // The next run keeps the identity.
    let (again, deltas) = run(&mut ledger, &after);
    assert_eq!(again.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-2"]);
    assert!(deltas.iter().all(|(_, d)| d.changes.is_empty()));
}

#[test]
fn remembered_identities_survive_reopening_the_ledger_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
    input.b_employees = vec![b_line(7, 10, None, Some(KEY1), false, "2025-01-01T00:00:00Z")];
    {
        let mut ledger = Ledger::open(&path).unwrap();
        let (outcome, _) = run(&mut ledger, &input);
        assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1"]);
    }
    let ledger = Ledger::open(&path).unwrap();
    let identities = ledger.identities().unwrap();
    assert_eq!((identities.get("A-1"), identities.get("B-7")), (Some("A-1"), Some("A-1")));
    assert_eq!((identities.len(), identities.is_empty()), (3, false), "two source ids and the person key's identity");
    assert!(Ledger::in_memory().unwrap().identities().unwrap().is_empty());
}

fn grant_line(employee: &str, role: &str, op: &str, at: &str) -> String {
    format!(r#"{{"employee": "{employee}", "system": "erp", "role": "{role}", "op": "{op}", "expires": null, "at": "{at}"}}"#)
}

#[test]
fn a_leaver_loses_their_grants_although_the_grant_rows_remain() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.permissions = Some(vec![grant_line("B-1", "approver", "grant", "2026-01-02T00:00:00Z")]);
    run(&mut ledger, &input);
    // B-1 leaves the export; permissions.jsonl is an event log and still has the grant.
    input.b_employees = vec![];
    let (outcome, deltas) = run(&mut ledger, &input);
    assert!(outcome.report.quarantined.iter().any(|q| q.id.as_deref() == Some("B-1:erp:approver")));
    assert!(deletes(&deltas).contains(&"permission/B-1:erp:approver".to_string()), "{:?}", deletes(&deltas));
    assert!(deltas.iter().all(|(_, d)| d.held_back.is_empty()));
}

#[test]
fn a_held_persons_grants_stay_and_their_revocations_still_apply() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = with_grants(Input::default());
    run(&mut ledger, &input);
    input.a_employees = vec![a_row("1", "D1", "", "", "2026-02-01 09:00:00").replace("m1@a.example", "not-an-email")];
    input.permissions.as_mut().unwrap().push(grant_line("A-1", "approver", "revoke", "2026-02-02T00:00:00Z"));
    let (outcome, deltas) = run(&mut ledger, &input);
    assert!(!outcome.state.employees.contains_key("A-1"), "held back, not rebuilt");
    assert!(!outcome.state.permissions["A-1:erp:approver"].granted, "the revocation applies to a held person");
    assert_eq!(deletes(&deltas), Vec::<String>::new());
    assert!(changed_keys(&deltas).contains(&"permission/A-1:erp:approver:Upsert".to_string()));
}

#[test]
fn a_typo_in_one_of_two_records_of_a_person_holds_the_whole_person() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
    input.b_employees = vec![b_line(9, 10, None, Some(KEY1), false, "2025-01-01T00:00:00Z")];
    let (first, _) = run(&mut ledger, &input);
    assert_eq!(first.state.employees["A-1"].source_ids, ["A-1", "B-9"]);
    // A-1's row gets a typo: the person must not be rebuilt from B-9 alone (another company, unit, grade).
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-02-01 09:00:00").replace("m1@a.example", "not-an-email")];
    let (outcome, deltas) = run(&mut ledger, &input);
    assert!(!outcome.state.employees.contains_key("A-1") && !outcome.state.employees.contains_key("B-9"));
    assert_eq!(
        changed_keys(&deltas).into_iter().filter(|c| c.starts_with("employee/") || c.starts_with("compensation/")).collect::<Vec<_>>(),
        Vec::<String>::new()
    );
    let held: Vec<String> = deltas.iter().flat_map(|(_, d)| d.held_back.iter().map(|h| format!("{}/{}", h.data_type, h.key))).collect();
    assert_eq!(held, ["employee/A-1", "compensation/A-1"]);
}

#[test]
fn the_lifelong_id_still_resolves_after_the_row_that_gave_it_leaves() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
    input.b_employees = vec![b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z"), b_line(7, 10, None, Some(KEY1), false, "2025-01-01T00:00:00Z")];
    run(&mut ledger, &input);
    // Company A drops the A-1 row for good; B-7 carries the person, grants and references still name A-1.
    input.a_employees = vec![];
    input.a_departments = vec!["D1,본부,,,2026-01-01 09:00:00".into()];
    input.b_employees = vec![b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z"), b_line(7, 10, None, Some(KEY1), true, "2026-03-01T00:00:00Z")];
    input.permissions = Some(vec![grant_line("A-1", "approver", "grant", "2026-03-02T00:00:00Z")]);
    let (outcome, deltas) = run(&mut ledger, &input);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-2"]);
    assert_eq!(outcome.state.employees["A-1"].source_ids, ["B-7"]);
    assert!(outcome.state.permissions["A-1:erp:approver"].granted, "a grant naming the lifelong id resolves");
    assert_eq!(deletes(&deltas), Vec::<String>::new());
}

#[test]
fn when_a_matched_pair_turns_out_to_be_two_people_the_id_stays_with_the_record_that_gave_it() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
    input.b_employees = vec![b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z"), b_line(7, 10, None, Some(KEY1), false, "2025-01-01T00:00:00Z")];
    let (first, _) = run(&mut ledger, &input);
    assert_eq!(first.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-2"], "A-1 and B-7 matched by person key");
    // The person key on B-7 was wrong: two people after all.
    input.b_employees[1] = b_line(7, 10, None, Some(KEY2), true, "2026-02-01T00:00:00Z");
    let (outcome, deltas) = run(&mut ledger, &input);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-2", "B-7"]);
    assert_eq!(outcome.state.employees["A-1"].source_ids, ["A-1"]);
    assert_eq!(outcome.state.employees["B-7"].source_ids, ["B-7"]);
    assert_eq!(deletes(&deltas), Vec::<String>::new());
}

#[test]
fn a_person_who_left_for_good_and_comes_back_under_another_number_keeps_their_id() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00")];
    run(&mut ledger, &input);
    // A-1 leaves; a later export no longer has the row at all.
    input.a_employees = vec![a_row("1", "D1", "", KEY1, "2026-02-01 09:00:00").replace("재직", "퇴직")];
    run(&mut ledger, &input);
    input.a_employees = vec![];
    input.a_departments = vec!["D1,본부,,,2026-01-01 09:00:00".into()];
    let (_, deltas) = run(&mut ledger, &input);
    assert!(deletes(&deltas).contains(&"employee/A-1".to_string()));
    // Rehired in company B as B-9, the same person key: the same person, the same lifelong id.
    input.b_employees.push(b_line(9, 10, None, Some(KEY1), true, "2026-06-01T00:00:00Z"));
    let (outcome, deltas) = run(&mut ledger, &input);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-1"], "the rehire is A-1 again, not B-9");
    assert_eq!(outcome.state.employees["A-1"].source_ids, ["B-9"]);
    let employee_changes: Vec<String> = changed_keys(&deltas).into_iter().filter(|c| c.starts_with("employee/")).collect();
    assert_eq!(employee_changes, ["employee/A-1:Upsert"], "reactivated under the old id, nobody created twice");
    let learned: Vec<(&str, &str)> = outcome.state.learned_identities.as_ref().unwrap().expose().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(learned, [("B-9", "A-1")], "only the new source id is learned; the key was remembered");
    let (again, _) = run(&mut ledger, &input);
    assert!(again.state.learned_identities.as_ref().unwrap().expose().is_empty(), "a run that changes nobody's identity rewrites none");
    assert_eq!(again.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-1"]);
    // The ledger remembers a hash of the key, never the key.
    let remembered: Vec<(String, String)> = ledger.identities().unwrap().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert!(remembered.iter().any(|(k, v)| k.starts_with("key:") && v == "A-1"), "{remembered:?}");
    assert!(!remembered.iter().any(|(k, _)| k.contains(&KEY1[..16])), "the person key itself is stored");
    assert!(!format!("{:?}", outcome.state).contains("key:"), "Debug shows a person's key identity");
}

#[test]
fn a_person_whose_only_row_is_dated_later_keeps_what_the_systems_hold_until_that_day() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = with_grants(Input::default());
    input.a_header = format!("{A_HEADER},effective_date");
    input.a_departments.push("D2,지원,D1,,2026-01-01 09:00:00".into());
    input.a_employees = vec![format!("{},", a_row("1", "D1", "", "", "2026-01-01 09:00:00"))];
    run_on(&mut ledger, &input, Some("2026-02-01"));
    // The next export has only the move, dated 1 March: A-1 is neither deleted nor moved, nor are their grants revoked.
    input.a_employees = vec![format!("{},20260301", a_row("1", "D2", "", "", "2026-02-10 09:00:00"))];
    let (outcome, deltas) = run_on(&mut ledger, &input, Some("2026-02-20"));
    assert_eq!(changed_keys(&deltas), Vec::<String>::new(), "nothing changes before the day");
    let waiting: Vec<(&str, Option<&str>)> = outcome.report.not_yet_effective.iter().map(|q| (q.file.as_str(), q.id.as_deref())).collect();
    assert_eq!(waiting, [("company_a/employees.csv", Some("A-1"))]);
    assert!(outcome.report.quarantined.is_empty(), "a row dated later is not an error: {:?}", outcome.report.quarantined);
    let due: Vec<(String, String)> =
        outcome.state.scheduled("2026-02-20".parse::<chrono::NaiveDate>().unwrap()).iter().map(|s| (s.on.to_string(), s.employee.clone())).collect();
    assert_eq!(due, [("2026-03-01".to_string(), "A-1".to_string())]);
    // On the day, the move applies: the record, and pay effective that day; grants untouched.
    let (outcome, deltas) = run_on(&mut ledger, &input, Some("2026-03-01"));
    assert_eq!(changed_keys(&deltas), ["employee/A-1:Upsert", "compensation/A-1:Upsert"]);
    assert_eq!(outcome.state.employees["A-1"].org_unit, "A-D2");
    assert_eq!(outcome.state.compensation["A-1"].effective_date.to_string(), "2026-03-01");
    // A later export that cancels the move: back in D1, nothing scheduled.
    input.a_employees = vec![format!("{},20260301", a_row("1", "D1", "", "", "2026-03-02 09:00:00"))];
    let (outcome, deltas) = run_on(&mut ledger, &input, Some("2026-03-02"));
    assert_eq!(changed_keys(&deltas), ["employee/A-1:Upsert"]);
    assert!(outcome.state.scheduled_changes.is_empty());
}

/// Company B's employee 1 with company A employee 1's name and birth date,
/// and no person key on either: a possible duplicate.
fn look_alikes() -> Input<'static> {
    let mut input = with_grants(Input::default());
    let mut b: serde_json::Value = serde_json::from_str(&b_line(1, 10, None, None, true, "2026-01-01T00:00:00Z")).unwrap();
    b["displayNameKo"] = "김민준".into();
    b["birthDate"] = "1990-01-01".into();
    input.b_employees = vec![b.to_string()];
    input
}

#[test]
fn a_possible_duplicate_decided_same_becomes_one_person_with_the_others_grants_and_pay() {
    let mut ledger = Ledger::in_memory().unwrap();
    let input = look_alikes();
    let (first, _) = run(&mut ledger, &input);
    assert_eq!(first.report.conflicts.len(), 1, "{:?}", first.report.conflicts);
    assert_eq!(ledger.open_cases(&first.report.conflicts, &first.state).unwrap(), 1);
    let case = ledger.cases().unwrap().remove(0);
    assert_eq!(case.employees, ["A-1", "B-1"]);
    ledger.decide_case(&case.id, hr_core::CaseDecision::Same, "hr-lead").unwrap();

    let (outcome, deltas) = run(&mut ledger, &input);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1"], "one person, under the first id");
    assert_eq!(outcome.state.employees["A-1"].source_ids, ["A-1", "B-1"]);
    assert!(outcome.report.conflicts.is_empty(), "{:?}", outcome.report.conflicts);
    let mut changes = changed_keys(&deltas);
    changes.sort();
    assert_eq!(
        changes,
        [
            "compensation/B-1:Delete",
            "employee/A-1:Upsert",
            "employee/B-1:Delete",
            "org_unit/B-10:Upsert",
            "permission/A-1:erp:viewer:Upsert",
            "permission/B-1:erp:viewer:Delete"
        ],
        "the other record is deleted where it was sent, its grant is the survivor's"
    );
    assert_eq!(outcome.state.org_units["B-10"].leader.as_deref(), Some("A-1"), "the unit B-1 led is led by the survivor");
    // The join holds in every later run, and the case stays decided.
    let (again, deltas) = run(&mut ledger, &input);
    assert_eq!(again.state.employees.keys().collect::<Vec<_>>(), ["A-1"]);
    assert_eq!(changed_keys(&deltas), Vec::<String>::new());
    assert_eq!(ledger.open_cases(&again.report.conflicts, &again.state).unwrap(), 0);
}

#[test]
fn a_possible_duplicate_decided_different_stays_two_people_and_the_case_closed() {
    let mut ledger = Ledger::in_memory().unwrap();
    let input = look_alikes();
    let (first, _) = run(&mut ledger, &input);
    ledger.open_cases(&first.report.conflicts, &first.state).unwrap();
    let case = ledger.cases().unwrap().remove(0);
    ledger.decide_case(&case.id, hr_core::CaseDecision::Different, "hr-lead").unwrap();
    let (outcome, deltas) = run(&mut ledger, &input);
    assert_eq!(outcome.state.employees.keys().collect::<Vec<_>>(), ["A-1", "B-1"]);
    assert_eq!(changed_keys(&deltas), Vec::<String>::new());
    assert_eq!(ledger.open_cases(&outcome.report.conflicts, &outcome.state).unwrap(), 0, "closed for good");
    assert!(ledger.cases().unwrap().iter().all(|c| c.decision.is_some()));
}

#[test]
fn a_leaver_of_one_company_decided_the_same_as_a_joiner_of_the_other_stays_active_with_their_access() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = look_alikes();
    // A-1 left company A; B-1, with the same name and birth date, works at company B.
    input.a_employees = vec![a_row("1", "D1", "", "", "2026-01-01 09:00:00").replace("재직", "퇴직")];
    let (first, _) = run(&mut ledger, &input);
    ledger.open_cases(&first.report.conflicts, &first.state).unwrap();
    let case = ledger.cases().unwrap().remove(0);
    ledger.decide_case(&case.id, hr_core::CaseDecision::Same, "hr-lead").unwrap();
    let (outcome, _) = run(&mut ledger, &input);
    let person = &outcome.state.employees["A-1"];
    assert_eq!(person.status, hr_core::EmployeeStatus::Active, "the active record is primary, whichever id survives");
    assert_eq!(person.org_unit, "B-10");
    assert!(outcome.state.permissions["A-1:erp:viewer"].granted, "B-1's grant is the survivor's, in force");
}

#[test]
fn a_new_hire_whose_only_row_is_dated_later_and_their_grants_wait_for_that_day() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.a_header = format!("{A_HEADER},effective_date");
    input.a_employees =
        vec![format!("{},", a_row("1", "D1", "", "", "2026-01-01 09:00:00")), format!("{},20260301", a_row("5", "D1", "1", "", "2026-02-10 09:00:00"))];
    input.permissions =
        Some(vec![r#"{"employee": "A-5", "system": "erp", "role": "approver", "op": "grant", "expires": null, "at": "2026-02-10T00:00:00Z"}"#.into()]);
    let (before, deltas) = run_on(&mut ledger, &input, Some("2026-02-20"));
    assert!(changed_keys(&deltas).iter().all(|k| !k.contains("A-5")), "the hire or their grant went out early: {:?}", changed_keys(&deltas));
    assert!(before.report.quarantined.is_empty(), "a grant waiting for its hire is not an error: {:?}", before.report.quarantined);
    let due: Vec<(String, &str)> = before.state.scheduled_changes.iter().map(|s| (s.employee.clone(), s.change)).collect();
    assert_eq!(due, [("A-5".to_string(), "hire")]);
    let (_, deltas) = run_on(&mut ledger, &input, Some("2026-03-01"));
    let changes = changed_keys(&deltas);
    assert!(changes.contains(&"employee/A-5:Upsert".to_string()) && changes.contains(&"permission/A-5:erp:approver:Upsert".to_string()), "{changes:?}");
}

#[test]
fn a_row_changed_after_a_dated_move_wins_over_it() {
    let mut ledger = Ledger::in_memory().unwrap();
    let mut input = Input::default();
    input.a_header = format!("{A_HEADER},effective_date");
    input.a_departments.push("D2,지원,D1,,2026-01-01 09:00:00".into());
    // The move took effect on 1 March; on 5 March the undated row says the person left.
    input.a_employees = vec![
        format!("{},20260301", a_row("1", "D2", "", "", "2026-02-10 09:00:00")),
        format!("{},", a_row("1", "D2", "", "", "2026-03-05 09:00:00").replace("재직", "퇴직")),
    ];
    let (outcome, _) = run_on(&mut ledger, &input, Some("2026-03-06"));
    assert_eq!(outcome.state.employees["A-1"].status, hr_core::EmployeeStatus::Terminated, "the later change is not history");
}
