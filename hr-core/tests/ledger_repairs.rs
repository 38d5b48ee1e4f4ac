//! The ledger's bookkeeping that reconciliation and failed runs rely on:
//! repair versions, plan counts, reservations left in doubt, the delete
//! guard's setting and redaction in Debug output.
use hr_core::{ChangeEnvelope, DataType, Delta, HeldRecord, Ledger, MasterData, Operation, Quarantined, Reason, Repair};
use serde_json::value::{to_raw_value, RawValue};

fn md(code: &str, name: &str) -> (String, Box<RawValue>) {
    let md = MasterData { set: "grade".into(), code: code.into(), name: name.into(), attributes: Default::default() };
    (md.key(), to_raw_value(&md).unwrap())
}

/// Plans, reserves and commits `records` as one run.
fn run(ledger: &mut Ledger, records: Vec<(String, Box<RawValue>)>) -> Delta {
    let delta = ledger.plan(DataType::MasterData, records, "hub", true).unwrap();
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit(DataType::MasterData, &delta).unwrap();
    delta
}

fn change<'a>(delta: &'a Delta, key: &str) -> &'a ChangeEnvelope {
    delta.changes.iter().find(|c| c.key == key).unwrap_or_else(|| panic!("no change for {key}"))
}

/// A ledger holding grade:G1 live at version 3 and grade:G2 deleted at version 2.
fn ledger_with_history() -> Ledger {
    let mut ledger = Ledger::in_memory().unwrap();
    run(&mut ledger, vec![md("G1", "one"), md("G2", "two")]);
    run(&mut ledger, vec![md("G1", "one'")]);
    run(&mut ledger, vec![md("G1", "one''")]);
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G1").unwrap(), Some((3, false)));
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G2").unwrap(), Some((2, true)));
    ledger
}

#[test]
fn a_repair_goes_one_above_the_highest_version_anyone_holds() {
    let ledger = ledger_with_history();
    let (_, body) = md("G1", "one''");
    let below = Repair { key: "grade:G1".into(), payload: Some(body.clone()), above: 1 };
    let delta = ledger.plan_repairs(DataType::MasterData, [below], "hub").unwrap();
    assert_eq!(change(&delta, "grade:G1").version, 4, "the ledger's version 3 is the highest");

    let seen_higher = Repair { key: "grade:G1".into(), payload: Some(body), above: 9 };
    let delta = ledger.plan_repairs(DataType::MasterData, [seen_higher], "hub").unwrap();
    assert_eq!(change(&delta, "grade:G1").version, 10, "a version the caller trusts at 9 takes only 10");
}

#[test]
fn the_highest_version_issued_counts_what_was_committed_and_what_was_reserved() {
    let mut ledger = ledger_with_history();
    assert_eq!(ledger.highest_issued(DataType::MasterData, "grade:G1").unwrap(), 3);
    assert_eq!(ledger.highest_issued(DataType::MasterData, "grade:G2").unwrap(), 2, "a tombstone's version was issued too");
    assert_eq!(ledger.highest_issued(DataType::MasterData, "grade:G9").unwrap(), 0);
    let failed = ledger.plan(DataType::MasterData, vec![md("G1", "in doubt"), md("G2", "back")], "hub", true).unwrap();
    ledger.reserve(DataType::MasterData, &failed).unwrap();
    assert_eq!(ledger.highest_issued(DataType::MasterData, "grade:G1").unwrap(), 4, "a reserved version may have left");
}

#[test]
fn a_change_a_receiver_would_refuse_is_rejected_before_it_gets_a_version() {
    let mut ledger = Ledger::in_memory().unwrap();
    // A code set named with a ':' (the key would read as another set) and a code of 600 bytes, beside a good one.
    let bad_set = MasterData { set: "md:category".into(), code: "C1".into(), name: "x".into(), attributes: Default::default() };
    let long_code = MasterData { set: "md.category".into(), code: "c".repeat(600).into(), name: "x".into(), attributes: Default::default() };
    let mut records = vec![md("G1", "one"), (bad_set.key(), to_raw_value(&bad_set).unwrap()), (long_code.key(), to_raw_value(&long_code).unwrap())];
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let delta = ledger.plan(DataType::MasterData, records, "hub", true).unwrap();
    assert_eq!(delta.changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["grade:G1"]);
    assert_eq!((delta.created, delta.updated, delta.deleted), (1, 0, 0), "rejected changes are not counted as sent");
    assert_eq!(delta.rejected.len(), 2, "{:?}", delta.rejected);
    assert!(delta.rejected.iter().any(|r| r.problem.contains("code set's name")), "{:?}", delta.rejected);
    assert!(delta.rejected.iter().any(|r| r.problem.contains("1 to 128 bytes") || r.problem.contains("512 bytes")), "{:?}", delta.rejected);
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit(DataType::MasterData, &delta).unwrap();
    assert_eq!(ledger.highest_issued(DataType::MasterData, "grade:G1").unwrap(), 1);
    assert_eq!(ledger.version_of(DataType::MasterData, &long_code.key()).unwrap(), None, "a rejected change was recorded");
    assert_eq!(ledger.in_doubt(DataType::MasterData).unwrap(), 0, "a rejected change was reserved");
}

#[test]
fn a_second_ledger_on_one_file_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let first = Ledger::open(&path).unwrap();
    let err = Ledger::open(&path).unwrap_err().to_string();
    assert!(err.contains("in use by process") && err.contains(&std::process::id().to_string()), "{err}");
    drop(first);
    Ledger::open(&path).expect("free once the first is dropped");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the ledger is readable by others");
    }
}

#[test]
fn a_repair_goes_above_a_reserved_version_that_never_committed() {
    let mut ledger = ledger_with_history();
    let failed = ledger.plan(DataType::MasterData, vec![md("G1", "in doubt")], "hub", true).unwrap();
    ledger.reserve(DataType::MasterData, &failed).unwrap();
    assert_eq!(change(&failed, "grade:G1").version, 4);
    let (_, body) = md("G1", "one''");
    let delta = ledger.plan_repairs(DataType::MasterData, [Repair { key: "grade:G1".into(), payload: Some(body), above: 0 }], "hub").unwrap();
    assert_eq!(change(&delta, "grade:G1").version, 5, "version 4 may carry other content somewhere");
}

#[test]
fn repairs_are_counted_as_updates_creations_and_deletions() {
    let ledger = ledger_with_history();
    let repairs = [
        Repair { key: "grade:G1".into(), payload: Some(md("G1", "one''").1), above: 3 },
        Repair { key: "grade:G2".into(), payload: Some(md("G2", "two").1), above: 0 },
        Repair { key: "grade:G3".into(), payload: Some(md("G3", "three").1), above: 0 },
        Repair { key: "grade:X".into(), payload: None, above: 3 },
    ];
    let delta = ledger.plan_repairs(DataType::MasterData, repairs, "hub").unwrap();
    assert_eq!((delta.updated, delta.created, delta.deleted), (1, 2, 1), "G1 is live: an update; G2 was deleted and G3 never sent: creations");
    assert_eq!(change(&delta, "grade:G2").version, 3);
    assert_eq!(change(&delta, "grade:G3").version, 1);
    let delete = change(&delta, "grade:X");
    assert_eq!((delete.op, delete.version), (Operation::Delete, 4), "one above the 3 the targets hold");
    assert_eq!(delta.changes.len(), 4);
    assert!(!delta.is_empty());
    let creates: Vec<bool> = (0..4).map(|i| delta.creates(i)).collect();
    assert_eq!(creates, [false, true, true, false], "each change says whether it creates its key: G1 updates, X deletes");
}

#[test]
fn a_committed_repair_is_what_the_ledger_then_holds() {
    let mut ledger = ledger_with_history();
    let (key, body) = md("G1", "one''");
    let delta = ledger.plan_repairs(DataType::MasterData, [Repair { key: key.clone(), payload: Some(body.clone()), above: 2 }], "hub").unwrap();
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit(DataType::MasterData, &delta).unwrap();
    assert_eq!(ledger.version_of(DataType::MasterData, &key).unwrap(), Some((4, false)));
    let next = ledger.plan(DataType::MasterData, vec![(key, body), md("G2", "two")], "hub", true).unwrap();
    assert_eq!(next.changes.len(), 1, "G1 is unchanged at its repaired content; only G2 comes back");
}

#[test]
fn an_empty_plan_is_empty_and_one_change_is_not() {
    let mut ledger = Ledger::in_memory().unwrap();
    let first = run(&mut ledger, vec![md("G1", "one")]);
    assert!(!first.is_empty());
    let again = ledger.plan(DataType::MasterData, vec![md("G1", "one")], "hub", true).unwrap();
    assert!(again.is_empty());
}

#[test]
fn the_delete_guard_limit_is_a_share_between_zero_and_one() {
    let ledger = Ledger::in_memory().unwrap();
    assert_eq!(ledger.max_delete_share(), hr_core::DEFAULT_MAX_DELETE_SHARE);
    assert_eq!(Ledger::in_memory().unwrap().with_max_delete_share(0.5).max_delete_share(), 0.5);
    assert_eq!(Ledger::in_memory().unwrap().with_max_delete_share(2.0).max_delete_share(), 1.0);
    assert_eq!(Ledger::in_memory().unwrap().with_max_delete_share(-1.0).max_delete_share(), 0.0);
}

#[test]
fn debug_output_names_no_ones_pay() {
    let quarantined = Quarantined { file: "company_a/employees.csv".into(), line: 7, id: None, reason: Reason::MalformedRow, detail: "salary".into() };
    let held = |data_type, key: &str| HeldRecord { data_type, key: key.into(), version: 4, quarantined: quarantined.clone() };
    let pay = format!("{:?}", held(DataType::Compensation, "A-100042"));
    assert!(!pay.contains("A-100042") && pay.contains("[redacted]") && pay.contains("version: 4"), "{pay}");
    let employee = format!("{:?}", held(DataType::Employee, "A-100042"));
    assert!(employee.contains("A-100042") && employee.contains("employees.csv"), "{employee}");

    let salary = RawValue::from_string(r#"{"employee_id":"A-100042","base_salary":98765432}"#.into()).unwrap();
    let repair = format!("{:?}", Repair { key: "A-100042".into(), payload: Some(salary), above: 3 });
    assert!(!repair.contains("98765432") && !repair.contains("A-100042") && repair.contains("upsert: true") && repair.contains("above: 3"), "{repair}");

    let ledger = format!("{:?}", Ledger::in_memory().unwrap().with_max_delete_share(0.3));
    assert!(ledger.contains(":memory:") && ledger.contains("0.3"), "{ledger}");
}

/// Every count a plan reports, over a run that creates, one that updates,
/// keeps and deletes, and one that changes nothing.
#[test]
fn a_plan_counts_each_key_once_by_what_happens_to_it() {
    let mut ledger = Ledger::in_memory().unwrap();
    let first = run(&mut ledger, vec![md("G1", "one"), md("G2", "two"), md("G3", "three")]);
    assert_eq!((first.created, first.updated, first.deleted, first.unchanged, first.retried), (3, 0, 0, 0, 0));
    let second = run(&mut ledger, vec![md("G1", "one'"), md("G2", "two")]);
    assert_eq!((second.created, second.updated, second.deleted, second.unchanged, second.retried), (0, 1, 1, 1, 0));
    let third = run(&mut ledger, vec![md("G1", "one'"), md("G2", "two")]);
    assert_eq!((third.created, third.updated, third.deleted, third.unchanged, third.retried), (0, 0, 0, 3, 0), "G3's tombstone counts as unchanged");
    assert!(third.is_empty());
}

#[test]
fn a_reserved_run_that_never_committed_leaves_its_keys_in_doubt_until_resent() {
    let mut ledger = Ledger::in_memory().unwrap();
    run(&mut ledger, vec![md("G1", "one"), md("G2", "two")]);
    assert_eq!(ledger.in_doubt(DataType::MasterData).unwrap(), 0);

    let failed = ledger.plan(DataType::MasterData, vec![md("G1", "one'"), md("G2", "two"), md("G3", "new")], "hub", true).unwrap();
    ledger.reserve(DataType::MasterData, &failed).unwrap();
    assert_eq!(ledger.in_doubt(DataType::MasterData).unwrap(), 2, "G1 and G3 may have left the hub");
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G3").unwrap(), None, "reserved is not committed");

    // The source went back: G1's content is the committed one and G3 is gone.
    let next = ledger.plan(DataType::MasterData, vec![md("G1", "one"), md("G2", "two")], "hub", true).unwrap();
    assert_eq!((next.updated, next.deleted, next.unchanged, next.retried), (1, 1, 1, 2), "both in-doubt keys are sent again");
    assert_eq!(change(&next, "grade:G1").version, 3, "above the reserved 2");
    let retraction = change(&next, "grade:G3");
    assert_eq!((retraction.op, retraction.version), (Operation::Delete, 2), "what the failed run may have created is retracted");
    ledger.reserve(DataType::MasterData, &next).unwrap();
    ledger.commit(DataType::MasterData, &next).unwrap();
    assert_eq!(ledger.in_doubt(DataType::MasterData).unwrap(), 0);
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G1").unwrap(), Some((3, false)));
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G3").unwrap(), Some((2, true)));
}

#[test]
fn a_real_time_change_goes_above_a_version_a_failed_run_reserved() {
    let mut ledger = Ledger::in_memory().unwrap();
    run(&mut ledger, vec![md("G1", "one")]);
    let failed = ledger.plan(DataType::MasterData, vec![md("G1", "one'")], "hub", true).unwrap();
    ledger.reserve(DataType::MasterData, &failed).unwrap();
    let (key, body) = md("G1", "one''");
    let delta = ledger.plan_changes(DataType::MasterData, [(key.clone(), Some(body))], "hub").unwrap();
    assert_eq!(change(&delta, &key).version, 3);
    assert_eq!(delta.retried, 1);
}

/// The delete guard allows deleting exactly its share of the live records,
/// and refuses one more.
#[test]
fn the_delete_guard_allows_exactly_its_share() {
    let ten: Vec<_> = (0..10).map(|i| md(&format!("G{i}"), "x")).collect();
    let mut ledger = Ledger::in_memory().unwrap().with_max_delete_share(0.2);
    run(&mut ledger, ten.clone());
    let two_gone = ledger.plan(DataType::MasterData, ten[2..].to_vec(), "hub", false).unwrap();
    assert_eq!(two_gone.deleted, 2, "2 of 10 is the 20% allowed");
    let err = ledger.plan(DataType::MasterData, ten[3..].to_vec(), "hub", false).unwrap_err();
    assert!(err.to_string().contains('3'), "3 of 10 is over the limit: {err}");
}

#[test]
fn a_merged_state_plans_as_its_serialized_records_do_across_many_chunks() {
    let mut state = hr_core::MergedState::default();
    for i in 0..10_000 {
        let m = MasterData { set: "grade".into(), code: format!("G{i:05}").into(), name: format!("grade {i}").into(), attributes: Default::default() };
        state.master_data.insert(m.key().into(), m);
    }
    let options = hr_core::PlanOptions::default();
    let mut ledger = Ledger::in_memory().unwrap();
    let first = ledger.plan_state(&state, DataType::MasterData, "hub", &options).unwrap();
    assert_eq!((first.created, first.changes.len()), (10_000, 10_000));
    ledger.reserve(DataType::MasterData, &first).unwrap();
    ledger.commit(DataType::MasterData, &first).unwrap();

    // Every 7th record changed, every 1000th gone, one new at the end: the same plan either way.
    for (i, m) in state.master_data.values_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
        m.name = format!("renamed {i}").into();
    }
    state.master_data.retain(|k, _| !k.ends_with("000"));
    state.master_data.insert("grade:Z".into(), MasterData { set: "grade".into(), code: "Z".into(), name: "z".into(), attributes: Default::default() });
    let streamed = ledger.plan_state(&state, DataType::MasterData, "hub", &options).unwrap();
    let records: Vec<(String, Box<RawValue>)> = state.master_data.iter().map(|(k, m)| (k.to_string(), to_raw_value(m).unwrap())).collect();
    let serialized = ledger.plan_with(DataType::MasterData, records, "hub", &options).unwrap();
    let summary = |d: &Delta| (d.created, d.updated, d.deleted, d.unchanged, d.changes.iter().map(|c| (c.key.clone(), c.version, c.op)).collect::<Vec<_>>());
    assert_eq!(summary(&streamed), summary(&serialized));
    assert_eq!((streamed.created, streamed.deleted), (1, 10));
    assert!(streamed.updated > 1_000);
}

#[test]
fn a_repair_sent_to_some_targets_is_their_version_alone_until_a_change_reaches_every_target() {
    let mut ledger = ledger_with_history();
    let (_, body) = md("G1", "one''");
    assert!(ledger.holds(DataType::MasterData, "grade:G1", Some(hr_core::ContentHash::of(body.get()))).unwrap());
    assert!(!ledger.holds(DataType::MasterData, "grade:G1", Some(hr_core::ContentHash::of("{}"))).unwrap(), "other content");
    assert!(!ledger.holds(DataType::MasterData, "grade:G1", None).unwrap(), "a delete of a live record");
    assert!(ledger.holds(DataType::MasterData, "grade:G2", None).unwrap() && ledger.holds(DataType::MasterData, "grade:G9", None).unwrap());

    let repair = Repair { key: "grade:G1".into(), payload: Some(body.clone()), above: 0 };
    let delta = ledger.plan_repairs(DataType::MasterData, [repair], "hub").unwrap();
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit_to(DataType::MasterData, &delta, &["erp".into()]).unwrap();
    assert_eq!(version(&ledger, "erp", "grade:G1"), Some((4, true)), "erp was sent version 4");
    assert_eq!(version(&ledger, "payroll", "grade:G1"), Some((3, true)), "payroll keeps version 3");
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G1").unwrap(), Some((3, false)), "the ledger's own row stays");
    assert_eq!(ledger.in_doubt(DataType::MasterData).unwrap(), 0, "the reservation is settled");
    assert_eq!(ledger.highest_issued(DataType::MasterData, "grade:G1").unwrap(), 4);

    // A delete sent to orgchart alone under a key the ledger has no record of is orgchart's to hold.
    let stray = Repair { key: "grade:G9".into(), payload: None, above: 0 };
    let delta = ledger.plan_repairs(DataType::MasterData, [stray], "hub").unwrap();
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit_to(DataType::MasterData, &delta, &["orgchart".into()]).unwrap();
    assert_eq!(version(&ledger, "orgchart", "grade:G9"), Some((1, false)));
    assert_eq!(version(&ledger, "erp", "grade:G9"), None);

    // The next repair and the next change of the key go above what erp holds; the change reaches everyone.
    let next = Repair { key: "grade:G1".into(), payload: Some(body), above: 0 };
    assert_eq!(change(&ledger.plan_repairs(DataType::MasterData, [next], "hub").unwrap(), "grade:G1").version, 5);
    let delta = run(&mut ledger, vec![md("G1", "changed")]);
    assert_eq!(change(&delta, "grade:G1").version, 5, "a run's change went to version {}", change(&delta, "grade:G1").version);
    assert_eq!(version(&ledger, "erp", "grade:G1"), Some((5, true)), "erp's own version is superseded");
    assert_eq!(version(&ledger, "payroll", "grade:G1"), Some((5, true)));
    // A change planned one key at a time (real time) is numbered the same way.
    let delta = ledger.plan_repairs(DataType::MasterData, [Repair { key: "grade:G9".into(), payload: None, above: 0 }], "hub").unwrap();
    assert_eq!(change(&delta, "grade:G9").version, 2);
    let (key, body) = md("G9", "nine");
    let realtime = ledger.plan_changes(DataType::MasterData, [(key.as_str(), Some(body))], "hub").unwrap();
    assert_eq!(change(&realtime, "grade:G9").version, 2, "above the delete orgchart alone was sent");
}

/// The version `target` must hold of `key`, and whether live.
fn version(ledger: &Ledger, target: &str, key: &str) -> Option<(u64, bool)> {
    let entries = ledger.entries_for_target(DataType::MasterData, None, target).unwrap();
    assert_streamed_digest_is_of(ledger, target, &entries);
    entries.into_iter().find(|e| e.key == key).map(|e| (e.version, e.content.is_some()))
}

/// The digest the ledger computes as it reads its rows is that of `entries`
/// (`target`'s), whole and with a key left out.
fn assert_streamed_digest_is_of(ledger: &Ledger, target: &str, entries: &[hr_core::DigestEntry]) {
    let streamed = |admits: &dyn Fn(&str) -> bool| ledger.digest_for_target(DataType::MasterData, None, target, admits).unwrap();
    assert_eq!(streamed(&|_| true), hr_core::Digest::of(entries), "{target}");
    let without_g1 = hr_core::Digest::of(entries.iter().filter(|e| e.key != "grade:G1"));
    assert_eq!(streamed(&|key| key != "grade:G1"), without_g1, "{target}, G1 left out");
}

/// What one target holds alone (a pre-hire): planned against what it was
/// sent, expected of it alone, versioned above everything issued for the
/// key, and superseded by the change every target receives.
#[test]
fn content_one_target_holds_alone_is_expected_of_it_only_and_ends_when_every_target_receives_the_key() {
    let mut ledger = ledger_with_history();
    let full = hr_core::FieldScope::full();
    let own = |ledger: &Ledger, records: Vec<(String, Box<RawValue>)>, keep: &dyn Fn(&str) -> bool| {
        ledger.plan_own(DataType::MasterData, "directory", &full, records, keep, &mut Default::default()).unwrap()
    };
    let expected = |ledger: &Ledger, target: &str| -> Vec<(String, u64, bool)> {
        let held = ledger.entries_for_target(DataType::MasterData, None, target).unwrap();
        assert_streamed_digest_is_of(ledger, target, &held);
        let mut entries: Vec<(String, u64, bool)> = held.into_iter().map(|e| (e.key, e.version, e.content.is_some())).collect();
        entries.sort();
        entries
    };
    let before = expected(&ledger, "directory");

    // Sent ahead under a key the ledger holds deleted (G2, version 2) and one it never held (G3).
    let ahead = own(&ledger, vec![md("G2", "early"), md("G3", "early")], &|_| false);
    assert_eq!((ahead.created, ahead.updated, ahead.deleted), (2, 0, 0));
    assert_eq!((change(&ahead, "grade:G2").version, change(&ahead, "grade:G3").version), (3, 1), "above every version issued for the key");
    ledger.reserve_own(DataType::MasterData, &ahead, "directory").unwrap();
    ledger.commit_own(DataType::MasterData, &ahead, "directory").unwrap();
    let held = expected(&ledger, "directory");
    assert!(held.contains(&("grade:G2".into(), 3, true)) && held.contains(&("grade:G3".into(), 1, true)), "{held:?}");
    assert_eq!(expected(&ledger, "payroll"), before, "no other target is expected to hold it");
    assert!(ledger.holds_own(DataType::MasterData, "directory", "grade:G3").unwrap());
    assert!(
        !ledger.holds_own(DataType::MasterData, "payroll", "grade:G3").unwrap() && !ledger.holds_own(DataType::MasterData, "directory", "grade:G1").unwrap()
    );
    ledger.forget_own(DataType::MasterData, "directory", &["grade:G3".to_string()]).unwrap();
    assert!(!ledger.holds_own(DataType::MasterData, "directory", "grade:G3").unwrap(), "forgotten: the next plan sends it again");
    let resent = own(&ledger, vec![md("G2", "early"), md("G3", "early")], &|_| false);
    assert_eq!((resent.created, resent.unchanged), (1, 1));
    ledger.reserve_own(DataType::MasterData, &resent, "directory").unwrap();
    ledger.commit_own(DataType::MasterData, &resent, "directory").unwrap();

    // The same content again plans nothing; new content is an update; a key gone is a delete, unless kept.
    let again = own(&ledger, vec![md("G2", "early"), md("G3", "early")], &|_| false);
    assert!(again.changes.is_empty() && again.unchanged == 2, "{:?}", again.changes);
    let moved = own(&ledger, vec![md("G3", "moved")], &|key| key == "grade:G2");
    assert_eq!((moved.created, moved.updated, moved.deleted), (0, 1, 0), "G2 is kept: another change takes it over");
    let cancelled = own(&ledger, vec![md("G3", "early")], &|_| false);
    assert_eq!((cancelled.updated, cancelled.deleted), (0, 1));
    ledger.reserve_own(DataType::MasterData, &cancelled, "directory").unwrap();
    ledger.commit_own(DataType::MasterData, &cancelled, "directory").unwrap();
    assert!(expected(&ledger, "directory").contains(&("grade:G2".into(), 4, false)), "deleted where it was sent");

    // The day comes: every target receives G3, above the version the directory alone holds.
    let every = run(&mut ledger, vec![md("G1", "one''"), md("G3", "hired")]);
    assert_eq!(change(&every, "grade:G3").version, 3, "above the versions sent ahead");
    let after = own(&ledger, vec![], &|_| false);
    assert!(after.changes.is_empty(), "nothing of its own is left to delete: {:?}", after.changes);
    assert_eq!(expected(&ledger, "directory").iter().find(|e| e.0 == "grade:G3"), Some(&("grade:G3".into(), 3, true)));
}

/// A send to one target alone that may have failed is sent to it again,
/// and to it only: what every target holds is not touched, and no version
/// goes to two contents, whichever targets the run sends ahead to.
#[test]
fn a_send_to_one_target_alone_left_in_doubt_is_sent_again_to_it_and_versions_stay_unique_across_targets() {
    let mut ledger = ledger_with_history();
    let full = hr_core::FieldScope::full();
    let mut given = Default::default();
    let failed = ledger.plan_own(DataType::MasterData, "directory", &full, vec![md("G3", "early")], |_| false, &mut given).unwrap();
    ledger.reserve_own(DataType::MasterData, &failed, "directory").unwrap();
    // Not committed: the send failed. The next run of every target plans nothing for G3.
    let every = ledger.plan(DataType::MasterData, vec![md("G1", "one''")], "hub", false).unwrap();
    assert!(every.changes.is_empty(), "a failed send to one target is not an orphan of every target's: {:?}", every.changes);
    // The directory gets it again, above the version in doubt; withdrawn, it gets a delete.
    let again = ledger.plan_own(DataType::MasterData, "directory", &full, vec![md("G3", "early")], |_| false, &mut Default::default()).unwrap();
    assert_eq!((again.created, again.changes.len(), change(&again, "grade:G3").version), (1, 1, 2), "sent again, not also deleted");
    let withdrawn = ledger.plan_own(DataType::MasterData, "directory", &full, vec![], |_| false, &mut Default::default()).unwrap();
    assert_eq!((withdrawn.deleted, change(&withdrawn, "grade:G3").version), (1, 2));
    // Held at a version, then an update to it left in doubt: the content it held is sent again above both.
    ledger.reserve_own(DataType::MasterData, &again, "directory").unwrap();
    ledger.commit_own(DataType::MasterData, &again, "directory").unwrap();
    let unchanged = ledger.plan_own(DataType::MasterData, "directory", &full, vec![md("G3", "early")], |_| false, &mut Default::default()).unwrap();
    assert!(unchanged.changes.is_empty(), "held as given, nothing in doubt");
    let update = ledger.plan_own(DataType::MasterData, "directory", &full, vec![md("G3", "moved")], |_| false, &mut Default::default()).unwrap();
    ledger.reserve_own(DataType::MasterData, &update, "directory").unwrap();
    let back = ledger.plan_own(DataType::MasterData, "directory", &full, vec![md("G3", "early")], |_| false, &mut Default::default()).unwrap();
    assert_eq!((back.updated, change(&back, "grade:G3").version), (1, 4), "the update may have reached it");
    // Two targets in one run: each version once.
    let mut given = Default::default();
    let first = ledger.plan_own(DataType::MasterData, "directory", &full, vec![md("G3", "early")], |_| false, &mut given).unwrap();
    let second = ledger.plan_own(DataType::MasterData, "badge-system", &full, vec![md("G3", "later")], |_| false, &mut given).unwrap();
    assert_ne!(change(&first, "grade:G3").version, change(&second, "grade:G3").version);
    assert_eq!(ledger.own_content_targets(DataType::MasterData).unwrap(), ["directory"], "a send in doubt counts");
}

#[test]
fn a_delta_narrowed_to_some_keys_counts_only_what_it_still_sends() {
    let mut ledger = ledger_with_history();
    let mut delta = ledger.plan(DataType::MasterData, vec![md("G1", "changed"), md("G3", "new")], "hub", true).unwrap();
    assert_eq!((delta.created, delta.updated, delta.deleted), (1, 1, 0));
    // What the plan held back and left out stays with it: retain sorts changes only.
    let quarantined = Quarantined { file: "md.csv".into(), line: 7, id: Some("grade:G2".into()), reason: Reason::MalformedRow, detail: "field `name`".into() };
    delta.held_back.push(HeldRecord { data_type: DataType::MasterData, key: "grade:G2".into(), version: 1, quarantined });
    delta.rejected.push(hr_core::RejectedChange { data_type: DataType::MasterData, key: "grade:G4".into(), problem: "field `code`".into() });
    delta.retain(|change| change.key == "grade:G3");
    assert_eq!((delta.created, delta.updated, delta.deleted, delta.changes.len()), (1, 0, 0, 1));
    assert_eq!((delta.held_back.len(), delta.rejected.len()), (1, 1), "retain dropped what the plan held back or left out");
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit(DataType::MasterData, &delta).unwrap();
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G3").unwrap(), Some((1, false)), "the kept change's content and version go together");
    assert_eq!(ledger.version_of(DataType::MasterData, "grade:G1").unwrap(), Some((3, false)), "the change left out is not recorded");
}

/// The console's view of the audit log: the last entries, oldest first,
/// of one action or of all, however long the log.
#[test]
fn the_latest_audit_entries_are_the_last_ones_in_order_of_one_action_or_all() {
    let mut ledger = Ledger::in_memory().unwrap();
    for i in 0..30 {
        let action = if i % 3 == 0 { "run" } else { "realtime" };
        ledger.audit("hub", action, &serde_json::json!({"n": i})).unwrap();
    }
    let numbers = |entries: Vec<hr_core::AuditEntry>| entries.iter().map(|e| e.detail["n"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(numbers(ledger.latest_audit_entries(4, None).unwrap()), [26, 27, 28, 29]);
    assert_eq!(numbers(ledger.latest_audit_entries(3, Some("run")).unwrap()), [21, 24, 27]);
    assert_eq!(ledger.latest_audit_entries(100, Some("run")).unwrap().len(), 10);
    assert!(ledger.latest_audit_entries(5, Some("approve")).unwrap().is_empty());
    assert_eq!(numbers(ledger.latest_audit_entries(100, None).unwrap()), (0..30).collect::<Vec<_>>(), "the whole log when it is shorter");
}

/// What a plan knows of each employee's standing (status and org unit,
/// for movers and leavers) follows every commit: set by an upsert, changed
/// by the next, gone with a delete. A commit remembers the real-time
/// changes of its own data type only.
#[test]
fn a_commit_keeps_each_employees_standing_and_only_its_own_types_real_time_changes() {
    let person = |status: hr_core::EmployeeStatus, unit: &str| hr_core::Employee {
        id: "A-001".into(),
        source_ids: vec!["A-001".into()],
        company: hr_core::Company::A,
        name: "직원".into(),
        name_en: None,
        email: None,
        phone: None,
        birth_date: None,
        org_unit: unit.into(),
        grade: "G3".into(),
        status,
        hire_date: "2020-03-01".parse().unwrap(),
        termination_date: None,
        manager: None,
        updated_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    };
    let realtime = |data_type: DataType, key: &str| hr_core::RealtimeChange { data_type, key: key.into(), at: chrono::Utc::now(), payload: None };
    let mut ledger = Ledger::in_memory().unwrap();
    let mut commit = |records: Vec<(String, Box<RawValue>)>, changes: &[hr_core::RealtimeChange]| {
        let delta = ledger.plan(DataType::Employee, records, "hub", true).unwrap();
        ledger.reserve(DataType::Employee, &delta).unwrap();
        ledger.commit_realtime(DataType::Employee, &delta, changes).unwrap();
        ledger.standing(DataType::Employee, "A-001").unwrap().map(|s| (s.state, s.place))
    };
    let record = |e: hr_core::Employee| vec![(e.id.to_string(), to_raw_value(&e).unwrap())];
    let both = [realtime(DataType::Employee, "A-001"), realtime(DataType::Permission, "A-001:erp:viewer")];
    assert_eq!(commit(record(person(hr_core::EmployeeStatus::Active, "A-D01")), &both), Some(("active".into(), Some("A-D01".into()))));
    assert_eq!(commit(record(person(hr_core::EmployeeStatus::Terminated, "A-D02")), &[]), Some(("terminated".into(), Some("A-D02".into()))));
    assert_eq!(commit(vec![], &[]), None, "a delete ends the standing");
    let remembered = |data_type| ledger.realtime_changes(data_type).unwrap().into_iter().map(|c| c.key).collect::<Vec<_>>();
    assert_eq!(remembered(DataType::Employee), ["A-001"]);
    assert!(remembered(DataType::Permission).is_empty(), "a grant's real-time change is its own commit's to remember");
}

#[test]
fn a_remembered_digest_is_forgotten_by_every_write_of_its_data_type_and_only_of_its_own() {
    let mut ledger = ledger_with_history();
    let digest = hr_core::Digest { count: 7, ..hr_core::Digest::default() };
    let remember = |ledger: &Ledger| {
        ledger.remember_digests(&[(DataType::MasterData, "all".into(), digest), (DataType::OrgUnit, "all".into(), digest)]).unwrap();
    };
    let remembered = |ledger: &Ledger, t: DataType| ledger.remembered_digest(t, "all").unwrap();

    remember(&ledger);
    assert_eq!((remembered(&ledger, DataType::MasterData), remembered(&ledger, DataType::OrgUnit)), (Some(digest), Some(digest)));
    assert_eq!(ledger.remembered_digest(DataType::MasterData, "other").unwrap(), None, "a name is what the digest covers");
    ledger.commit(DataType::MasterData, &Delta::default()).unwrap();
    assert_eq!(remembered(&ledger, DataType::MasterData), Some(digest), "a commit of nothing changes nothing");

    run(&mut ledger, vec![md("G1", "one'''")]);
    assert_eq!(remembered(&ledger, DataType::MasterData), None, "a run's commit forgets its type's digests");
    assert_eq!(remembered(&ledger, DataType::OrgUnit), Some(digest), "and no other type's");

    remember(&ledger);
    let repair = Repair { key: "grade:G1".into(), payload: Some(md("G1", "one'''").1), above: 0 };
    let delta = ledger.plan_repairs(DataType::MasterData, [repair], "hub").unwrap();
    ledger.reserve(DataType::MasterData, &delta).unwrap();
    ledger.commit_to(DataType::MasterData, &delta, &["erp".into()]).unwrap();
    assert_eq!(remembered(&ledger, DataType::MasterData), None, "a repair sent to one target forgets them");

    remember(&ledger);
    ledger.forget_own(DataType::MasterData, "directory", &["grade:G3".to_string()]).unwrap();
    assert_eq!(remembered(&ledger, DataType::MasterData), None, "forgetting a target's own content forgets them");
    assert_eq!(remembered(&ledger, DataType::OrgUnit), Some(digest));
}

#[test]
fn a_checkpoint_empties_the_log_and_a_ledger_read_beside_remembers_no_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let mut ledger = Ledger::open(&path).unwrap();
    run(&mut ledger, vec![md("G1", "one")]);
    let log = || std::fs::metadata(dir.path().join("ledger.sqlite3-wal")).map_or(0, |m| m.len());
    assert!(log() > 0, "a commit goes to the log first");
    // A reader in the middle of a read holds the log: it cannot be emptied, and the checkpoint says so.
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    reader.query_row("SELECT count(*) FROM ledger", [], |r| r.get::<_, i64>(0)).unwrap();
    let kept = ledger.checkpoint().unwrap_err();
    assert!(matches!(kept, hr_core::LedgerError::LogKept { .. }), "{kept}");
    reader.execute_batch("COMMIT").unwrap();
    ledger.checkpoint().unwrap();
    assert_eq!(log(), 0, "a checkpoint moves the log into the file");

    let beside = Ledger::open_read_only(&path).unwrap();
    let digest = hr_core::Digest { count: 1, ..hr_core::Digest::default() };
    beside.remember_digests(&[(DataType::MasterData, "all".into(), digest)]).unwrap();
    assert_eq!(ledger.remembered_digest(DataType::MasterData, "all").unwrap(), None);
}
