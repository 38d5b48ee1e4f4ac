//! Least privilege for fields in the core: the ledger's per-audience
//! digests equal what a scoped target holds, a target that was sent a
//! field it goes without stores the record without it, and a router
//! refuses a transport that would deliver such a field.

use async_trait::async_trait;
use hr_core::{
    ChangeEnvelope, Company, DataType, Employee, EmployeeStatus, FieldScope, Ledger, LedgerError, MemorySink, MergedState, Operation, PermissionGrant,
    PlanOptions, PropagateError, Propagator, Receipt, RecordScope, Repair, Router, RoutingError, RoutingPolicy, ScopedSink, Sensitive, Sink, TargetPolicy,
    PAYLOADS_KEPT,
};
use std::collections::BTreeMap;
use std::sync::Arc;

fn employee(n: u32, phone: &str) -> Employee {
    Employee {
        id: format!("A-{n:03}").into(),
        source_ids: vec![format!("A-{n:03}").into()],
        company: Company::A,
        name: format!("직원 {n}").into(),
        name_en: None,
        email: Some(format!("e{n}@a.example").into()),
        phone: Some(Sensitive::new(phone.into())),
        birth_date: Some(Sensitive::new("1990-01-02".parse().unwrap())),
        org_unit: "A-D01".into(),
        grade: "G3".into(),
        status: EmployeeStatus::Active,
        hire_date: "2020-03-01".parse().unwrap(),
        termination_date: None,
        manager: None,
        updated_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
}

/// A viewer grant of A-1 on `system`.
fn grant(system: &str) -> PermissionGrant {
    PermissionGrant {
        employee: "A-1".into(),
        system: system.into(),
        role: "viewer".into(),
        granted: true,
        expires: None,
        at: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
}

fn no_personal_details() -> FieldScope {
    FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).unwrap()
}

/// Plans, reserves and commits `people` (sorted by id) as the hub does; the delta's changes.
fn commit(ledger: &mut Ledger, people: &[Employee]) -> Vec<ChangeEnvelope> {
    let records = people.iter().map(|e| (e.id.clone(), serde_json::value::to_raw_value(e).unwrap()));
    let delta = ledger.plan(DataType::Employee, records, "hub", true).unwrap();
    ledger.reserve(DataType::Employee, &delta).unwrap();
    ledger.commit(DataType::Employee, &delta).unwrap();
    delta.changes
}

fn erp(fields: FieldScope) -> ScopedSink<MemorySink> {
    ScopedSink::new(MemorySink::default(), RecordScope::new("erp", false).with_fields(fields))
}

/// A delta planned from a merged state holds the payloads of its first
/// changes only: the plan takes what the commit records (each audience's
/// hash, each person's standing) while the record is at hand, and the other
/// envelopes are made from the state as they are sent, exactly what a plan
/// of the serialized records sends.
#[tokio::test]
async fn a_delta_planned_from_a_merged_state_holds_few_payloads_and_its_envelopes_are_made_from_that_state() {
    let scope = no_personal_details();
    let audience = scope.audience(DataType::Employee);
    let count = PAYLOADS_KEPT as u32 + 30;
    let mut state = MergedState::default();
    for n in 1..=count {
        let mut person = employee(n, &format!("010-0000-{:04}", n % 10_000));
        if n % 10 == 0 {
            person.status = EmployeeStatus::Terminated;
            person.termination_date = Some("2026-01-01".parse().unwrap());
        }
        state.employees.insert(person.id.clone(), person);
    }
    let options = PlanOptions::default();
    let mut lean = Ledger::in_memory().unwrap();
    lean.keep_audiences([&scope]);
    let delta = lean.plan_state(&state, DataType::Employee, "hub", &options).unwrap();
    let all = delta.changes.len();
    assert_eq!(all, count as usize);
    let (kept, left) = delta.changes.split_at(PAYLOADS_KEPT);
    assert!(kept.iter().all(|c| c.payload.is_some() && !c.event_id.is_empty()), "the first changes keep theirs");
    assert!(left.iter().all(|c| c.op == Operation::Upsert && c.payload.is_none() && c.event_id.is_empty()), "the others hold no payload or event id");
    let leaver = PAYLOADS_KEPT + left.iter().position(|c| state.employees[c.key.as_str()].status == EmployeeStatus::Terminated).expect("a leaver among them");
    assert_eq!(delta.standing(leaver).map(|s| s.state.as_str()), Some("terminated"), "the standing is taken at plan time");
    let leaver = delta.changes[leaver].key.clone();

    let mut full = Ledger::in_memory().unwrap();
    full.keep_audiences([&scope]);
    let records = state.employees.values().map(|e| (e.id.clone(), serde_json::value::to_raw_value(e).unwrap()));
    let serialized = full.plan(DataType::Employee, records, "hub", true).unwrap();
    let made = delta.envelopes(0..all, &state).unwrap();
    let facts = |c: &ChangeEnvelope| (c.key.clone(), c.version, c.op, c.payload_json().map(str::to_string));
    assert!(made.iter().map(facts).eq(serialized.changes.iter().map(facts)), "the envelopes a plan of the serialized records sends");
    assert!(matches!(delta.envelopes(0..PAYLOADS_KEPT, &state).unwrap(), std::borrow::Cow::Borrowed(_)), "parts with their payloads are not copied");
    let event_ids: std::collections::BTreeSet<&str> = made[PAYLOADS_KEPT..].iter().map(|c| c.event_id.as_str()).collect();
    assert!(event_ids.len() == 30 && !event_ids.contains(""), "each made envelope has an event id of its own");
    assert!(made[PAYLOADS_KEPT..].iter().all(|c| c.validate().is_ok()));

    // Committed, both ledgers record the same: versions, hashes, each audience's hashes, standings.
    for (ledger, delta) in [(&mut lean, &delta), (&mut full, &serialized)] {
        ledger.reserve(DataType::Employee, delta).unwrap();
        ledger.commit(DataType::Employee, delta).unwrap();
    }
    assert_eq!(lean.digest(DataType::Employee).unwrap(), full.digest(DataType::Employee).unwrap());
    assert_eq!(lean.digest_for(DataType::Employee, audience.as_deref()).unwrap(), full.digest_for(DataType::Employee, audience.as_deref()).unwrap());
    assert_eq!(lean.standing(DataType::Employee, &leaver).unwrap().map(|s| s.state), Some("terminated".into()));
    let last = made.last().unwrap().key.clone();
    let streamed = lean.digest_for_target(DataType::Employee, audience.as_deref(), "erp", |_| true).unwrap();
    assert_eq!(streamed, lean.digest_for(DataType::Employee, audience.as_deref()).unwrap(), "read as the rows come, the audience's digest is the same");
    let target = erp(scope.clone());
    let scoped: Vec<ChangeEnvelope> = made.iter().map(|c| scope.apply(c).unwrap().into_owned()).collect();
    target.apply(&scoped).await.unwrap();
    assert_eq!(target.digest(DataType::Employee).await.unwrap(), lean.digest_for(DataType::Employee, audience.as_deref()).unwrap());

    // A state that no longer holds what was planned makes no envelope: a version never carries other content.
    let mut changed = state.clone();
    changed.employees.get_mut(last.as_str()).unwrap().grade = "G9".into();
    let refused = delta.envelopes(0..all, &changed).unwrap_err();
    assert!(matches!(refused, LedgerError::NotPlannedFrom { data_type: DataType::Employee, .. }), "{refused}");
    assert!(refused.to_string().contains(&last), "names the record: {refused}");
    changed.employees.remove(last.as_str());
    assert!(matches!(delta.envelopes(all - 1..all, &changed), Err(LedgerError::NotPlannedFrom { .. })));
    assert_eq!(delta.envelopes(all - 30..all - 1, &changed).unwrap().len(), 29, "the parts without it are made");
}

/// A delta cut down to some of its changes (`Delta::retain`) still records
/// each audience's hash of those it keeps.
#[tokio::test]
async fn a_delta_cut_down_still_records_each_audiences_hash_of_what_it_keeps() {
    let scope = no_personal_details();
    let audience = scope.audience(DataType::Employee);
    let mut ledger = Ledger::in_memory().unwrap();
    ledger.keep_audiences([&scope]);
    let people: Vec<Employee> = (1..=4).map(|n| employee(n, &format!("010-0000-{n:04}"))).collect();
    let records = people.iter().map(|e| (e.id.clone(), serde_json::value::to_raw_value(e).unwrap()));
    let mut delta = ledger.plan(DataType::Employee, records, "hub", true).unwrap();
    delta.retain(|c| c.key != "A-002");
    assert_eq!((delta.created, delta.changes.len()), (3, 3));
    ledger.reserve(DataType::Employee, &delta).unwrap();
    ledger.commit(DataType::Employee, &delta).unwrap();
    let target = erp(scope.clone());
    let scoped: Vec<ChangeEnvelope> = delta.changes.iter().map(|c| scope.apply(c).unwrap().into_owned()).collect();
    target.apply(&scoped).await.unwrap();
    assert_eq!(target.digest(DataType::Employee).await.unwrap(), ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap());
}

#[tokio::test]
async fn the_ledger_digest_of_an_audience_is_what_a_target_sent_the_scoped_copies_holds() {
    let scope = no_personal_details();
    let audience = scope.audience(DataType::Employee);
    let mut ledger = Ledger::in_memory().unwrap();
    ledger.keep_audiences([&scope]);
    let people: Vec<Employee> = (1..=20).map(|n| employee(n, &format!("010-0000-{n:04}"))).collect();
    let changes = commit(&mut ledger, &people);

    let target = erp(scope.clone());
    let scoped: Vec<ChangeEnvelope> = changes.iter().map(|c| scope.apply(c).unwrap().into_owned()).collect();
    assert!(scoped.iter().all(|c| !c.payload_json().unwrap().contains("010-")), "no copy carries a phone number");
    let outcome = target.apply(&scoped).await.unwrap();
    assert_eq!((outcome.applied, outcome.fields_dropped), (20, 0));
    let held = target.digest(DataType::Employee).await.unwrap();
    assert_eq!(held, ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap());
    assert_ne!(held, ledger.digest(DataType::Employee).unwrap(), "the full records' digest differs from the scoped one");

    // Copies that leave the omitted fields out altogether, rather than null, are held the same.
    let without_keys: Vec<ChangeEnvelope> = changes
        .iter()
        .map(|c| {
            let mut fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(c.payload_json().unwrap()).unwrap();
            fields.retain(|k, _| k != "phone" && k != "birth_date");
            ChangeEnvelope { payload: Some(serde_json::value::to_raw_value(&fields).unwrap()), ..c.clone() }
        })
        .collect();
    let other = erp(scope.clone());
    assert_eq!(other.apply(&without_keys).await.unwrap().applied, 20);
    assert_eq!(other.digest(DataType::Employee).await.unwrap(), held);

    // A phone change reaches the ledger and payroll; erp's copy is unchanged in content.
    let mut changed = people.clone();
    changed[0].phone = Some(Sensitive::new("010-9999-9999".into()));
    let second = commit(&mut ledger, &changed);
    target.apply(&[scope.apply(&second[0]).unwrap().into_owned()]).await.unwrap();
    assert_eq!(target.digest(DataType::Employee).await.unwrap(), ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap());
}

#[tokio::test]
async fn a_target_sent_fields_it_goes_without_stores_the_record_without_them_and_says_so() {
    let scope = no_personal_details();
    let mut ledger = Ledger::in_memory().unwrap();
    ledger.keep_audiences([&scope]);
    let changes = commit(&mut ledger, &[employee(1, "010-1234-5678"), employee(2, "010-8765-4321")]);

    let target = erp(scope.clone());
    let outcome = target.apply(&changes).await.unwrap();
    assert_eq!((outcome.applied, outcome.fields_dropped), (2, 2));
    let entries = target.inner().entries(DataType::Employee).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        target.digest(DataType::Employee).await.unwrap(),
        ledger.digest_for(DataType::Employee, scope.audience(DataType::Employee).as_deref()).unwrap(),
        "stored without the fields: the same content as a correctly scoped copy"
    );
}

#[tokio::test]
async fn records_committed_before_their_audience_was_known_count_as_drift_until_sent_again() {
    let scope = no_personal_details();
    let audience = scope.audience(DataType::Employee);
    let mut ledger = Ledger::in_memory().unwrap();
    let people = [employee(1, "010-1234-5678")];
    let first = commit(&mut ledger, &people);
    let target = erp(scope.clone());
    target.apply(&[scope.apply(&first[0]).unwrap().into_owned()]).await.unwrap();

    ledger.keep_audiences([&scope]);
    let before = ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap();
    assert_eq!(before.count, 1, "the record is there, its scoped content unknown");
    assert_ne!(before, target.digest(DataType::Employee).await.unwrap(), "an unknown scoped hash matches no stored body");
    assert_ne!(before, ledger.digest(DataType::Employee).unwrap(), "nor the full record's");

    // A repair sends it again at a new version; then both sides agree.
    let repair = Repair { key: people[0].id.to_string(), above: first[0].version, payload: Some(serde_json::value::to_raw_value(&people[0]).unwrap()) };
    let delta = ledger.plan_repairs(DataType::Employee, [repair], "hub").unwrap();
    ledger.reserve(DataType::Employee, &delta).unwrap();
    ledger.commit(DataType::Employee, &delta).unwrap();
    target.apply(&[scope.apply(&delta.changes[0]).unwrap().into_owned()]).await.unwrap();
    assert_eq!(target.digest(DataType::Employee).await.unwrap(), ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap());
}

#[tokio::test]
async fn a_delete_leaves_a_tombstone_in_every_audience() {
    let scope = no_personal_details();
    let audience = scope.audience(DataType::Employee);
    let mut ledger = Ledger::in_memory().unwrap();
    ledger.keep_audiences([&scope]);
    let target = erp(scope.clone());
    for change in commit(&mut ledger, &[employee(1, "010-1"), employee(2, "010-2")]) {
        target.apply(&[scope.apply(&change).unwrap().into_owned()]).await.unwrap();
    }
    let deletes = commit(&mut ledger, &[employee(1, "010-1")]);
    assert_eq!(deletes.len(), 1);
    target.apply(&deletes).await.unwrap();
    let ours = ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap();
    assert_eq!((ours.count, ours.tombstones), (1, 1));
    assert_eq!(ours, target.digest(DataType::Employee).await.unwrap());
}

/// A transport that delivers employees to erp whole or scoped, as told.
struct Carrier(FieldScope);

#[async_trait]
impl Propagator for Carrier {
    async fn propagate(&self, _: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        [("erp".to_string(), vec![DataType::Employee])].into()
    }

    fn field_scope(&self, _: &str) -> FieldScope {
        self.0.clone()
    }
}

#[test]
fn a_router_refuses_a_transport_that_would_deliver_a_field_the_target_goes_without() {
    let policy = RoutingPolicy {
        routes: [(DataType::Employee, "kafka".to_string())].into(),
        targets: [("erp".to_string(), TargetPolicy { omit: no_personal_details(), ..TargetPolicy::new(vec![DataType::Employee]) })].into(),
    };
    let half = FieldScope::full().omitting(DataType::Employee, ["phone"]).unwrap();
    let err = Router::new(policy.clone()).with("kafka", Arc::new(Carrier(half))).check().unwrap_err();
    assert!(matches!(&err, RoutingError::FieldsNotOmitted { fields, .. } if fields == "birth_date"), "{err}");
    assert!(err.to_string().contains("erp") && err.to_string().contains("birth_date"), "{err}");
    let router = Router::new(policy).with("kafka", Arc::new(Carrier(no_personal_details())));
    router.check().unwrap();
    assert_eq!(router.field_scope("erp"), no_personal_details(), "the router reports its transports' scopes");
}

#[test]
fn the_default_policy_gives_phone_and_birth_date_only_to_payroll() {
    let policy = RoutingPolicy::default();
    assert!(policy.scope("payroll").fields().omitted(DataType::Employee).is_empty());
    for target in ["orgchart", "erp"] {
        assert_eq!(policy.scope(target).fields().omitted(DataType::Employee), ["birth_date", "phone"], "{target}");
    }
}

#[tokio::test]
async fn two_audiences_each_match_their_target_through_a_delete_and_a_re_creation() {
    let without_both = no_personal_details();
    let without_phone = FieldScope::full().omitting(DataType::Employee, ["phone"]).unwrap();
    let mut ledger = Ledger::in_memory().unwrap();
    ledger.keep_audiences([&without_both, &without_phone]);
    let targets = [(erp(without_both.clone()), without_both), (erp(without_phone.clone()), without_phone)];
    let people = [employee(1, "010-1"), employee(2, "010-2")];
    let runs: [&[Employee]; 3] = [&people, &people[..1], &people];
    for (run, state) in runs.iter().enumerate() {
        let changes = commit(&mut ledger, state);
        for (target, scope) in &targets {
            let copies: Vec<ChangeEnvelope> = changes.iter().map(|c| scope.apply(c).unwrap().into_owned()).collect();
            target.apply(&copies).await.unwrap();
            let audience = scope.audience(DataType::Employee);
            assert_eq!(
                target.digest(DataType::Employee).await.unwrap(),
                ledger.digest_for(DataType::Employee, audience.as_deref()).unwrap(),
                "run {run}, audience {audience:?}"
            );
        }
    }
    assert_ne!(
        targets[0].0.digest(DataType::Employee).await.unwrap(),
        targets[1].0.digest(DataType::Employee).await.unwrap(),
        "the audiences hold different content"
    );
}

#[tokio::test]
async fn a_scoped_sink_lists_only_the_grants_its_target_may_hold() {
    // Held from before the scope narrowed: written to the store directly.
    let inner = MemorySink::default();
    inner.apply(&[ChangeEnvelope::of(&grant("erp"), 1, "hub").unwrap(), ChangeEnvelope::of(&grant("payroll"), 1, "hub").unwrap()]).await.unwrap();
    let erp = ScopedSink::new(inner, RecordScope::new("erp", false));
    let keys: Vec<String> = erp.entries(DataType::Permission).await.unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["A-1:erp:viewer"]);
    assert_eq!(erp.digest(DataType::Permission).await.unwrap().count, 1);
    let shown = format!("{erp:?}");
    assert!(shown.starts_with("ScopedSink") && shown.contains("erp"), "{shown}");
}

#[tokio::test]
async fn a_letter_holding_fields_or_records_the_target_may_not_hold_is_kept_without_its_payload() {
    let store = Arc::new(hr_core::SqliteSink::in_memory().unwrap());
    let erp = ScopedSink::new(store.clone(), RecordScope::new("erp", false).with_fields(no_personal_details()));
    let letter = |change: &ChangeEnvelope| hr_core::KeptLetter {
        source: "hr.v1.employee/0/7".into(),
        key: Some(change.key.clone()),
        reason: "the store was down".into(),
        payload: change.to_json().into_bytes(),
        kept_at: chrono::Utc::now(),
    };
    let with_phone = ChangeEnvelope::upsert(DataType::Employee, "A-001", 1, "hub", &employee(1, "010-1234-5678")).unwrap();
    let grade = hr_core::MasterData { set: "grade".into(), code: "G1".into(), name: "Staff".into(), attributes: Default::default() };
    let master_data = ChangeEnvelope::upsert(DataType::MasterData, grade.key(), 1, "hub", &grade).unwrap();
    erp.keep_letter(&letter(&with_phone)).await.unwrap();
    erp.keep_letter(&letter(&master_data)).await.unwrap();
    let kept = store.kept_letters().unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept[0].payload.is_empty(), "a letter of a type whose fields erp goes without keeps no payload");
    assert_eq!(kept[0].key.as_deref(), Some("A-001"));
    assert_eq!(kept[1].payload, letter(&master_data).payload, "what erp may hold is kept whole");
}

/// A scoped sink passes on only what its target may hold, yet a bad change
/// refuses the whole batch naming its position in the batch as sent,
/// whether it is outside the scope (checked by the scope) or inside it
/// (checked by the store behind it); nothing is stored either way.
#[tokio::test]
async fn a_bad_change_refuses_a_scoped_batch_naming_its_place_in_the_batch_as_sent() {
    let bad = |system: &str| ChangeEnvelope { key: format!("A-9:{system}:viewer"), ..ChangeEnvelope::of(&grant(system), 1, "hub").unwrap() };
    let good = ChangeEnvelope::of(&grant("erp"), 1, "hub").unwrap();
    let elsewhere = ChangeEnvelope::of(&grant("payroll"), 1, "hub").unwrap();
    for (batch, index) in [
        (vec![elsewhere.clone(), bad("erp"), good.clone()], 1),
        (vec![elsewhere.clone(), good.clone(), bad("payroll")], 2),
        (vec![bad("erp"), elsewhere.clone(), good.clone()], 0),
    ] {
        let erp = ScopedSink::new(MemorySink::default(), RecordScope::new("erp", false));
        let refused = erp.apply(&batch).await.unwrap_err();
        assert!(matches!(refused, hr_core::SinkError::Invalid { index: i, .. } if i == index), "expected position {index}: {refused}");
        assert_eq!(erp.digest(DataType::Permission).await.unwrap().count, 0, "nothing stored");
    }
    let erp = ScopedSink::new(MemorySink::default(), RecordScope::new("erp", false));
    let outcome = erp.apply(&[elsewhere, good]).await.unwrap();
    assert_eq!((outcome.applied, outcome.out_of_scope), (1, 1));
}
