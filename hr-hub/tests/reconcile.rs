//! Reconciliation and repair in one process: three systems' stores held in
//! memory, written as receivers write them (a newer version wins, each
//! system only the records its scope admits) and read back as receivers
//! answer. Each test injects one kind of drift by editing a store, and
//! checks what the hub names, what it repairs, where, and what it refuses
//! to do. The multi-process forms against the real broker are the root
//! package's `trust.rs`, `trust_boundaries.rs` and `approval.rs`.

use hr_core::{
    ChangeEnvelope, ContentHash, DataType, Digest, DigestEntry, HeldBack, Ledger, MergedState, PropagateError, PropagationReport, Propagator, ReadBackError,
    Receipt, RoutingPolicy, TargetReader,
};
use hr_hub::{Hub, HubConfig, HubError, Reconciliation};
use hr_testdata::{Dataset, GenerateOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

const CONFIG: &str = r#"
[routes]
employee = "stores"
org_unit = "stores"
permission = "stores"
master_data = "stores"
compensation = "stores"

[targets.payroll]
data_types = ["employee", "compensation", "permission"]

[targets.orgchart]
data_types = ["employee", "org_unit", "permission"]

[targets.erp]
data_types = ["employee", "org_unit", "permission", "master_data"]
publishes = ["md.product"]
"#;

/// One stored row: version and body (`None`: a tombstone).
type Row = (u64, Option<String>);

/// One system's store, by data type and key.
type Store = BTreeMap<(DataType, String), Row>;

/// Every system's store, by system.
struct Stores {
    policy: RoutingPolicy,
    held: Mutex<BTreeMap<String, Store>>,
    received: Mutex<BTreeMap<String, u64>>,
    /// Every system reads one topic, as over Kafka: a batch for some reaches all, and the receipt names them.
    one_topic: std::sync::atomic::AtomicBool,
    /// A send to some targets alone fails, reaching none of them.
    refuse_alone: std::sync::atomic::AtomicBool,
    /// The systems asked to read everything they hold, in order.
    rescanned: Mutex<Vec<String>>,
    /// The systems that cannot be read (down, or refusing the hub).
    unreachable: Mutex<BTreeSet<String>>,
    /// The data types of each batch sent to every system, in order.
    batches: Mutex<Vec<BTreeSet<DataType>>>,
    /// How many changes each batch sent to every system held, in order.
    sizes: Mutex<Vec<usize>>,
}

impl Stores {
    fn new(policy: RoutingPolicy) -> Self {
        Stores {
            policy,
            held: Mutex::new(BTreeMap::new()),
            received: Mutex::new(BTreeMap::new()),
            one_topic: Default::default(),
            refuse_alone: Default::default(),
            rescanned: Default::default(),
            unreachable: Default::default(),
            batches: Default::default(),
            sizes: Default::default(),
        }
    }

    fn row(&self, system: &str, data_type: DataType, key: &str) -> Option<Row> {
        self.held.lock().unwrap().get(system).and_then(|rows| rows.get(&(data_type, key.to_string())).cloned())
    }

    fn set(&self, system: &str, data_type: DataType, key: &str, row: Option<Row>) {
        let mut held = self.held.lock().unwrap();
        let rows = held.entry(system.to_string()).or_default();
        match row {
            Some(row) => rows.insert((data_type, key.to_string()), row),
            None => rows.remove(&(data_type, key.to_string())),
        };
    }

    /// Keys of `data_type` a system holds live.
    fn live(&self, system: &str, data_type: DataType) -> Vec<String> {
        let held = self.held.lock().unwrap();
        held.get(system).into_iter().flatten().filter(|((t, _), (_, body))| *t == data_type && body.is_some()).map(|((_, k), _)| k.clone()).collect()
    }
}

impl Stores {
    /// Writes `batch` to every system that receives it, or to `only`'s, as
    /// receivers write (a newer version wins); the receipt names each
    /// system written to, and each system counts the changes it received.
    fn write(&self, batch: &[ChangeEnvelope], only: Option<&BTreeSet<String>>) -> Receipt {
        let mut held = self.held.lock().unwrap();
        let mut delivered = PropagationReport::default();
        for change in batch {
            change.validate().expect("a receiver takes only whole changes");
            for name in self.policy.targets_for(change.data_type) {
                if !self.policy.scope(name).admits(change.data_type, &change.key) || only.is_some_and(|only| !only.contains(name)) {
                    continue;
                }
                delivered.add(name, change.data_type, 1);
                *self.received.lock().unwrap().entry(name.to_string()).or_default() += 1;
                let row = held.entry(name.to_string()).or_default().entry((change.data_type, change.key.clone())).or_insert((0, None));
                if change.version > row.0 {
                    *row = (change.version, change.payload_json().map(str::to_string));
                }
            }
        }
        Receipt::applied_on_delivery(delivered)
    }

    /// How many changes `system` received so far.
    fn received(&self, system: &str) -> u64 {
        self.received.lock().unwrap().get(system).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl Propagator for Stores {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.batches.lock().unwrap().push(batch.iter().map(|c| c.data_type).collect());
        self.sizes.lock().unwrap().push(batch.len());
        Ok(self.write(batch, None))
    }

    async fn propagate_to(&self, batch: &[ChangeEnvelope], targets: &BTreeSet<String>) -> Result<Receipt, PropagateError> {
        if self.refuse_alone.load(std::sync::atomic::Ordering::SeqCst) {
            let failures = targets.iter().map(|t| hr_core::TargetFailure { target: t.clone(), cause: "refused".into(), retriable: true }).collect();
            return Err(PropagateError::incomplete(PropagationReport::default(), failures));
        }
        let one_topic = self.one_topic.load(std::sync::atomic::Ordering::SeqCst);
        Ok(self.write(batch, Some(targets).filter(|_| !one_topic)))
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        NAMES.iter().map(|n| (n.to_string(), self.policy.targets[*n].data_types.clone())).collect()
    }
}

#[async_trait::async_trait]
impl TargetReader for Stores {
    fn readable_targets(&self) -> Vec<String> {
        NAMES.iter().map(|n| n.to_string()).collect()
    }

    async fn entries(&self, target: &str, data_type: DataType, buckets: &[usize]) -> Result<Vec<DigestEntry>, ReadBackError> {
        if self.unreachable.lock().unwrap().contains(target) {
            return Err(ReadBackError::new(target, "connection refused"));
        }
        let held = self.held.lock().unwrap();
        let rows = held.get(target).into_iter().flatten().filter(|((t, _), _)| *t == data_type);
        let entries =
            rows.map(|((_, key), (version, body))| DigestEntry { key: key.clone(), version: *version, content: body.as_deref().map(ContentHash::of) });
        Ok(entries.filter(|e| buckets.contains(&e.bucket())).collect())
    }

    async fn rescanned_digests(&self, target: &str, data_types: &[DataType]) -> Result<BTreeMap<DataType, Digest>, ReadBackError> {
        self.rescanned.lock().unwrap().push(target.to_string());
        let mut out = BTreeMap::new();
        for t in data_types {
            out.insert(*t, Digest::of(&self.entries(target, *t, &hr_core::ALL_BUCKETS).await?));
        }
        Ok(out)
    }
}

/// A hub over three in-memory stores, after a first sync of 300 employees.
struct Fixture {
    hub: Hub,
    stores: Arc<Stores>,
    state: MergedState,
}

impl Fixture {
    async fn synced() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Dataset::generate(&GenerateOptions { permissions: 60, ..GenerateOptions::scaled(300) }).write(dir.path()).unwrap();
        let state = hr_core::merge(hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap()).state;
        let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
        let stores = Arc::new(Stores::new(config.policy()));
        let hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("stores", stores.clone() as Arc<dyn Propagator>)]).unwrap();
        let mut hub = hub.with_reader(stores.clone());
        hub.sync(&state).await.unwrap();
        Fixture { hub, stores, state }
    }

    async fn reconcile(&self) -> Reconciliation {
        self.hub.reconcile(&HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap()).await.unwrap()
    }

    fn employees(&self, n: usize) -> Vec<String> {
        self.stores.live("erp", DataType::Employee).into_iter().take(n).collect()
    }

    /// A grant erp holds in force.
    fn erp_grant(&self) -> String {
        let granted = |k: &String| self.stores.row("erp", DataType::Permission, k).and_then(|r| r.1).is_some_and(|b| b.contains(r#""granted":true"#));
        self.stores.live("erp", DataType::Permission).into_iter().find(granted).expect("erp holds a grant in force")
    }
}

/// Whether erp's stored grant `key` is in force.
fn granted_in_erp(stores: &Stores, key: &str) -> bool {
    let body = stores.row("erp", DataType::Permission, key).and_then(|r| r.1).expect("erp holds the grant");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["granted"].as_bool().unwrap()
}

fn assert_matches_everywhere(found: &Reconciliation, when: &str) {
    for (name, types) in found {
        for (t, r) in types {
            assert!(r.digest_matches && r.drift.is_empty(), "{name}/{t} differs {when}: {r:?}");
        }
    }
    assert_eq!(found.len(), NAMES.len(), "every system compared {when}");
}

fn drift_keys(found: &Reconciliation, system: &str, data_type: DataType) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let d = &found[system][&data_type].drift;
    let keys = |ks: &[hr_hub::DriftKey]| ks.iter().map(|k| k.key.clone()).collect::<Vec<_>>();
    (keys(&d.missing), keys(&d.edited), keys(&d.extra), keys(&d.foreign))
}

#[tokio::test]
async fn a_synced_deployment_matches_everywhere_and_a_repair_sends_nothing() {
    let mut f = Fixture::synced().await;
    let found = f.reconcile().await;
    assert_matches_everywhere(&found, "after the first sync");
    assert!(found["payroll"].contains_key(&DataType::Compensation) && !found["erp"].contains_key(&DataType::Compensation));
    let repaired = f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(repaired.sent.sent, 0);
    assert!(repaired.repaired.values().all(|n| *n == 0), "{repaired:?}");
}

/// A run sends each data type as a batch of its own, org units first: a
/// directory creates a team's group before it moves people into it.
#[tokio::test]
async fn a_run_sends_each_data_type_on_its_own_and_org_units_first() {
    let f = Fixture::synced().await;
    let batches = f.stores.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|types| types.len() == 1), "one data type per batch: {batches:?}");
    let sent: Vec<DataType> = batches.iter().flatten().copied().collect();
    assert_eq!(sent.first(), Some(&DataType::OrgUnit), "{sent:?}");
    assert_eq!(sent.len(), DataType::ALL.len(), "{sent:?}");
}

/// A plan names what each change does to the key it carries, from the
/// standing the plan took of the record and the one the ledger holds: a
/// leaver, a move, a revoked grant, and a plain update are told apart.
#[tokio::test]
async fn a_plan_tells_a_termination_a_transfer_and_a_revoke_from_a_plain_update() {
    let f = Fixture::synced().await;
    let mut state = f.state.clone();
    let mut people = state.employees.values_mut().filter(|e| e.status == hr_core::EmployeeStatus::Active);
    let leaver = people.next().unwrap();
    leaver.status = hr_core::EmployeeStatus::Terminated;
    leaver.termination_date = Some(leaver.hire_date);
    let mover = people.next().unwrap();
    let new_place = f.state.org_units.keys().find(|unit| **unit != mover.org_unit).unwrap().clone();
    mover.org_unit = new_place;
    people.next().unwrap().grade = "G9".into();
    let grant = state.permissions.values_mut().find(|g| g.granted).unwrap();
    grant.granted = false;
    let system = grant.system.to_string();
    let extended = state.permissions.values_mut().find(|g| g.granted && g.system == system && g.expires.is_none()).unwrap();
    extended.expires = Some("2099-01-01".parse().unwrap());

    let plan = f.hub.plan(&state, &HeldBack::default()).unwrap();
    let employees = &plan.targets["payroll"][&DataType::Employee];
    assert_eq!((employees.update, employees.terminate, employees.transfer), (3, 1, 1), "{employees:?}");
    let grants = &plan.targets[system.as_str()][&DataType::Permission];
    assert_eq!((grants.update, grants.revoke), (2, 1), "one revoked, one extended: {grants:?}");

    // The plan id names the content too: the same keys at the same versions with other content are another plan.
    assert_eq!(f.hub.plan(&state, &HeldBack::default()).unwrap().plan_id, plan.plan_id, "the same plan, the same id");
    let key = state.employees.values().find(|e| e.grade == "G9").unwrap().id.clone();
    state.employees.get_mut(&key).unwrap().grade = "G8".into();
    let other = f.hub.plan(&state, &HeldBack::default()).unwrap();
    assert_eq!(other.targets["payroll"][&DataType::Employee].update, 3);
    assert_ne!(other.plan_id, plan.plan_id, "other content, another plan");
}

/// A run of more changes than the hub hands its transports at once sends
/// them in parts, each part's payloads made from the merged state as it
/// goes (the plan holds none), and every system holds what the ledger says.
#[tokio::test]
async fn a_run_larger_than_one_part_goes_in_parts_each_made_with_its_payloads() {
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    let stores = Arc::new(Stores::new(config.policy()));
    let hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("stores", stores.clone() as Arc<dyn Propagator>)]).unwrap();
    let mut hub = hub.with_reader(stores.clone());
    let mut state = MergedState::default();
    for i in 0..45_000 {
        let grade =
            hr_core::MasterData { set: "grade".into(), code: format!("G{i:05}").into(), name: format!("grade {i}").into(), attributes: Default::default() };
        state.master_data.insert(hr_core::Record::key(&grade).into(), grade);
    }
    let outcome = hub.sync(&state).await.unwrap();
    assert_eq!(outcome.sent, 45_000);
    assert_eq!(*stores.sizes.lock().unwrap(), [20_000, 20_000, 5_000]);
    assert_eq!(stores.live("erp", DataType::MasterData).len(), 45_000);
    let found = hub.reconcile(&config).await.unwrap();
    assert!(found["erp"][&DataType::MasterData].digest_matches, "{:?}", found["erp"]);
}

#[tokio::test]
async fn a_check_has_every_system_read_all_it_holds_and_a_runs_comparison_does_not() {
    let f = Fixture::synced().await;
    assert_matches_everywhere(&f.reconcile().await, "a run's comparison");
    assert!(f.stores.rescanned.lock().unwrap().is_empty(), "a run's comparison reads the digests the systems maintain");
    let checked = f.hub.reconcile_rescanned(&HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap()).await.unwrap();
    assert_matches_everywhere(&checked, "a check");
    let mut rescanned = f.stores.rescanned.lock().unwrap().clone();
    rescanned.sort();
    assert_eq!(rescanned, ["erp", "orgchart", "payroll"]);
}

/// A run's comparison takes the hub's side from the digests the ledger
/// remembers (nothing was sent since), so a wrong one remembered shows; a
/// check computes them again from the ledger's rows and remembers those.
#[tokio::test]
async fn a_runs_comparison_reads_the_digests_the_ledger_remembers_and_a_check_computes_them_again() {
    let f = Fixture::synced().await;
    assert_matches_everywhere(&f.reconcile().await, "the first comparison");
    let remembered = f.hub.ledger().remembered_digest(DataType::OrgUnit, "audience *").unwrap();
    assert_eq!(remembered, Some(f.hub.expected_digest("erp", DataType::OrgUnit).unwrap()), "a comparison remembers what it computed");
    // The digest every system with all org units must match, as the hub names it.
    f.hub.ledger().remember_digests(&[(DataType::OrgUnit, "audience *".into(), Digest::default())]).unwrap();
    let found = f.reconcile().await;
    for system in ["orgchart", "erp"] {
        let org_units = &found[system][&DataType::OrgUnit];
        assert!(!org_units.digest_matches && org_units.drift.is_empty(), "{system}: the remembered digest is the one compared: {org_units:?}");
    }
    assert!(found["erp"][&DataType::Employee].digest_matches, "other types keep theirs");
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    assert_matches_everywhere(&f.hub.reconcile_rescanned(&config).await.unwrap(), "a check");
    assert_matches_everywhere(&f.reconcile().await, "the comparison after a check");
}

/// A system that cannot be read is shown as such, not as the last
/// comparison found it; the others are compared all the same, and the
/// system is compared again once it can be read.
#[tokio::test]
async fn a_system_that_cannot_be_read_is_not_shown_as_it_last_was() {
    let f = Fixture::synced().await;
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    f.reconcile().await;
    let before = f.hub.last_comparison().unwrap();
    assert!(before.systems.contains_key("orgchart") && before.unreadable.is_empty());
    let keys = f.employees(1);
    f.stores.set("payroll", DataType::Employee, &keys[0], None);
    f.stores.unreachable.lock().unwrap().insert("orgchart".to_string());

    let failed = f.hub.reconcile(&config).await.unwrap_err();
    assert!(failed.to_string().contains("connection refused"), "{failed}");
    let now = f.hub.last_comparison().unwrap();
    assert!(now.at > before.at);
    assert!(!now.systems.contains_key("orgchart"), "orgchart's earlier findings are gone");
    assert!(now.unreadable["orgchart"].contains("connection refused"), "{:?}", now.unreadable);
    assert!(!now.systems["payroll"][&DataType::Employee].digest_matches, "payroll was compared all the same, and its missing key seen");
    assert!(now.systems["erp"][&DataType::Employee].digest_matches);

    f.stores.unreachable.lock().unwrap().clear();
    f.reconcile().await;
    let again = f.hub.last_comparison().unwrap();
    assert!(again.unreadable.is_empty() && again.systems.contains_key("orgchart"), "{:?}", again.unreadable);
}

#[tokio::test]
async fn missing_edited_and_extra_keys_are_named_per_system_and_repaired_above_what_it_holds() {
    let mut f = Fixture::synced().await;
    let keys = f.employees(3);
    let (gone, edited, stale) = (&keys[0], &keys[1], &keys[2]);
    f.stores.set("erp", DataType::Employee, gone, None);
    let (version, _) = f.stores.row("erp", DataType::Employee, edited).unwrap();
    f.stores.set("erp", DataType::Employee, edited, Some((version, Some(r#"{"edited":"by hand"}"#.into()))));
    // The hub deletes `stale`; orgchart misses the delete (its store is restored to the row it had).
    let before = f.stores.row("orgchart", DataType::Employee, stale).unwrap();
    let mut state = f.state.clone();
    state.employees.remove(stale.as_str());
    f.hub.sync(&state).await.unwrap();
    f.stores.set("orgchart", DataType::Employee, stale, Some(before.clone()));

    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::Employee), (vec![gone.clone()], vec![edited.clone()], vec![], vec![]));
    // A tombstone the system holds live at an older version is an edited key, not a foreign one.
    assert_eq!(drift_keys(&found, "orgchart", DataType::Employee), (vec![], vec![stale.clone()], vec![], vec![]));
    assert!(found["payroll"][&DataType::Employee].digest_matches);
    assert_eq!(found["erp"][&DataType::Employee].drift.edited[0].target_version, version);

    let repaired = f.hub.repair(&state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(repaired.repaired[&DataType::Employee], 3);
    assert_eq!(repaired.repaired_per_target["erp"][&DataType::Employee], 2);
    assert_eq!(repaired.repaired_per_target["orgchart"][&DataType::Employee], 1);
    assert!(!repaired.repaired_per_target.contains_key("payroll"));
    let (v, body) = f.stores.row("erp", DataType::Employee, edited).unwrap();
    assert!(v > version && body.unwrap().contains(edited.as_str()), "the edited row is the hub's again, at a fresh version");
    assert!(f.stores.row("erp", DataType::Employee, gone).unwrap().1.is_some(), "the missing row is back");
    let (v, body) = f.stores.row("orgchart", DataType::Employee, stale).unwrap();
    assert!(body.is_none() && v > before.0, "the stale row is deleted above the version it held");
    assert_matches_everywhere(&f.reconcile().await, "after the repair");
}

#[tokio::test]
async fn a_repair_goes_only_to_the_systems_that_differ_and_every_later_version_is_above_it() {
    let mut f = Fixture::synced().await;
    let keys = f.employees(2);
    let (gone, edited) = (&keys[0], &keys[1]);
    let (version, _) = f.stores.row("payroll", DataType::Employee, gone).unwrap();
    f.stores.set("erp", DataType::Employee, gone, None);
    f.stores.set("orgchart", DataType::Employee, gone, None);
    f.stores.set("erp", DataType::Employee, edited, Some((version, Some(r#"{"edited":"by hand"}"#.into()))));
    let payroll_before = f.stores.received("payroll");

    let found = f.reconcile().await;
    let repaired = f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(repaired.repaired[&DataType::Employee], 2);
    assert_eq!(repaired.sent.sent, 2, "one change per key, whatever the systems it goes to");
    assert_eq!(f.stores.received("payroll"), payroll_before, "payroll, which differs in nothing, was sent repairs");
    assert_eq!(f.stores.row("payroll", DataType::Employee, gone).unwrap().0, version, "payroll's version moved");
    let (repaired_at, body) = f.stores.row("erp", DataType::Employee, gone).unwrap();
    assert!(repaired_at > version && body.is_some());
    assert_eq!(f.stores.row("orgchart", DataType::Employee, gone).unwrap().0, repaired_at, "both systems that lacked it get the one repair");
    assert!(f.stores.row("erp", DataType::Employee, edited).unwrap().1.unwrap().contains(edited.as_str()), "erp's edit is undone");
    // The ledger knows each system's version: nothing differs, and nothing is repaired again.
    let found = f.reconcile().await;
    assert_matches_everywhere(&found, "after repairs sent to some systems alone");
    let again = f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(again.sent.sent, 0);

    // payroll loses the key in turn: its repair is numbered above erp's, never reusing it.
    f.stores.set("payroll", DataType::Employee, gone, None);
    let found = f.reconcile().await;
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    let (payroll_at, _) = f.stores.row("payroll", DataType::Employee, gone).unwrap();
    assert!(payroll_at > repaired_at, "payroll's repair reused version {payroll_at}");
    assert_matches_everywhere(&f.reconcile().await, "after payroll's repair");

    // A repair of content the ledger does not hold yet (the source changed since the last run) goes to every system.
    let other = &keys[1];
    let mut changed = f.state.clone();
    changed.employees.get_mut(other.as_str()).unwrap().name = "renamed before the run".into();
    f.stores.set("erp", DataType::Employee, other, None);
    let found = f.reconcile().await;
    f.hub.repair(&changed, &HeldBack::default(), &found).await.unwrap();
    for name in NAMES {
        assert!(f.stores.row(name, DataType::Employee, other).unwrap().1.unwrap().contains("renamed before the run"), "{name}");
    }
    assert_matches_everywhere(&f.reconcile().await, "after a repair of content new to the ledger");

    // Over one topic every system reads (as over Kafka), a repair for erp reaches all three: the receipt names them, and the hub remembers each one's version.
    f.stores.one_topic.store(true, std::sync::atomic::Ordering::SeqCst);
    f.stores.set("erp", DataType::Employee, gone, None);
    let found = f.reconcile().await;
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    let (topic_at, _) = f.stores.row("erp", DataType::Employee, gone).unwrap();
    assert!(NAMES.iter().all(|n| f.stores.row(n, DataType::Employee, gone).unwrap().0 == topic_at), "every reader of the topic took the repair");
    assert_matches_everywhere(&f.reconcile().await, "after a repair every system read");
    f.stores.one_topic.store(false, std::sync::atomic::Ordering::SeqCst);

    // A change of the person reaches every system, above each one's version.
    let mut state = f.state.clone();
    state.employees.get_mut(gone.as_str()).unwrap().name = "a new name".into();
    f.hub.sync(&state).await.unwrap();
    for name in NAMES {
        let (v, body) = f.stores.row(name, DataType::Employee, gone).unwrap();
        assert!(v > payroll_at && body.unwrap().contains("a new name"), "{name} did not take the change (version {v})");
    }
    assert_matches_everywhere(&f.reconcile().await, "after a change every system received");
}

#[tokio::test]
async fn a_version_one_system_claims_alone_is_foreign_and_never_followed() {
    let mut f = Fixture::synced().await;
    let key = f.employees(1).remove(0);
    let (version, body) = f.stores.row("erp", DataType::Employee, &key).unwrap();
    const HUGE: u64 = (1 << 53) - 1;
    f.stores.set("erp", DataType::Employee, &key, Some((HUGE, body.clone())));
    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::Employee), (vec![], vec![], vec![], vec![key.clone()]));
    assert_eq!(found["erp"][&DataType::Employee].drift.foreign[0].target_version, HUGE);
    let repaired = f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(repaired.sent.sent, 0, "nothing is sent for a foreign version");
    for name in ["payroll", "orgchart"] {
        assert_eq!(f.stores.row(name, DataType::Employee, &key).unwrap().0, version, "{name} was renumbered after erp's claim");
    }

    // The same version in every system (a lost ledger: all of them ahead) is backed, and repaired above it.
    for name in NAMES {
        f.stores.set(name, DataType::Employee, &key, Some((HUGE - 1, body.clone())));
    }
    let found = f.reconcile().await;
    for name in NAMES {
        assert_eq!(drift_keys(&found, name, DataType::Employee), (vec![], vec![key.clone()], vec![], vec![]), "{name}");
    }
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    for name in NAMES {
        assert_eq!(f.stores.row(name, DataType::Employee, &key).unwrap().0, HUGE, "{name}");
    }
    assert_matches_everywhere(&f.reconcile().await, "after the backed repair");

    // Two of three backing a version is a majority; one of three is not.
    let other = f.employees(2).remove(1);
    let (_, body) = f.stores.row("erp", DataType::Employee, &other).unwrap();
    for name in ["orgchart", "erp"] {
        f.stores.set(name, DataType::Employee, &other, Some((1000, body.clone())));
    }
    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::Employee).1, vec![other.clone()]);
    assert!(found["erp"][&DataType::Employee].drift.foreign.is_empty());
}

#[tokio::test]
async fn a_key_held_back_or_without_a_record_is_left_alone_and_reported() {
    let mut f = Fixture::synced().await;
    let keys = f.employees(2);
    for key in &keys {
        f.stores.set("erp", DataType::Employee, key, None);
    }
    let found = f.reconcile().await;
    // The first key's new source row is quarantined (held back); the second is not in this run's input.
    let quarantined = hr_core::Quarantined {
        file: "company_a/employees.csv".into(),
        line: 2,
        id: Some(keys[0].clone()),
        reason: hr_core::Reason::MalformedRow,
        detail: "a bad row".into(),
    };
    let report = hr_core::MergeReport { quarantined: vec![quarantined], ..Default::default() };
    let held = HeldBack::from_report(&report, &hr_core::Identities::default());
    assert!(held.holds(DataType::Employee, &keys[0]).is_some());
    let mut state = f.state.clone();
    state.employees.remove(keys[1].as_str());
    let repaired = f.hub.repair(&state, &held, &found).await.unwrap();
    let mut unrepairable = repaired.unrepairable[&DataType::Employee].clone();
    unrepairable.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(unrepairable, expected);
    assert_eq!(repaired.sent.sent, 0);
    assert_eq!(repaired.repaired_per_target["erp"][&DataType::Employee], 0, "{:?}", repaired.repaired_per_target);
}

impl Fixture {
    /// A third of the people leave (approved), then erp's store is restored
    /// from a backup taken before: it holds them again. The state after
    /// they left, their keys, and the rows erp held.
    async fn erp_restored_after_a_third_left(&mut self) -> (MergedState, Vec<String>, Vec<(String, Row)>) {
        let leavers: Vec<String> = self.stores.live("erp", DataType::Employee).into_iter().step_by(3).collect();
        let rows: Vec<(String, Row)> = leavers.iter().map(|k| (k.clone(), self.stores.row("erp", DataType::Employee, k).unwrap())).collect();
        let mut state = self.state.clone();
        for key in &leavers {
            state.employees.remove(key.as_str());
        }
        self.hub.allow_mass_delete(true);
        self.hub.sync(&state).await.unwrap();
        self.hub.allow_mass_delete(false);
        for (key, row) in &rows {
            self.stores.set("erp", DataType::Employee, key, Some(row.clone()));
        }
        (state, leavers, rows)
    }
}

#[tokio::test]
async fn repairs_over_safety_are_held_previewed_and_go_only_as_the_approved_plan() {
    let mut f = Fixture::synced().await;
    let (state, leavers, rows) = f.erp_restored_after_a_third_left().await;

    let found = f.reconcile().await;
    let held = match f.hub.repair(&state, &HeldBack::default(), &found).await {
        Err(HubError::Held { plan_id, reasons }) => {
            let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
            assert!(reasons.iter().all(|r| r.target == "erp") && text.join(" ").contains("deletes"), "{text:?}");
            plan_id
        }
        other => panic!("repairs deleting a third of erp's people went: {other:?}"),
    };
    assert_eq!(f.stores.live("erp", DataType::Employee).len(), f.stores.live("payroll", DataType::Employee).len() + leavers.len(), "held repairs changed erp");

    let plan = f.hub.plan_reconciled(&state, &HeldBack::default(), &found).unwrap();
    assert_eq!(plan.plan_id, held, "the preview is the held repairs' plan");
    let erp = &plan.targets["erp"][&DataType::Employee];
    assert_eq!((erp.delete, erp.repair), (leavers.len() as u64, leavers.len() as u64));
    assert!(!plan.targets.contains_key("payroll"), "payroll differs in nothing: {:?}", plan.targets.get("payroll"));
    assert!(plan.is_held());

    // An approval of another plan does not let them go; the approved one does, once.
    assert!(matches!(f.hub.sync_approved(&state, &HeldBack::default(), "not-this-plan", "hr-lead").await, Err(HubError::PlanChanged { .. })));
    f.hub.sync_approved(&state, &HeldBack::default(), &held, "hr-lead").await.unwrap();
    let found = f.reconcile().await;
    let repaired = f.hub.repair(&state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(repaired.repaired_per_target["erp"][&DataType::Employee], leavers.len() as u64);
    assert_matches_everywhere(&f.reconcile().await, "after the approved repairs");
    for (key, row) in &rows {
        f.stores.set("erp", DataType::Employee, key, Some(row.clone()));
    }
    let found = f.reconcile().await;
    let again = match f.hub.repair(&state, &HeldBack::default(), &found).await {
        Err(HubError::Held { plan_id, .. }) => plan_id,
        other => panic!("an approval is for one plan, once: {other:?}"),
    };

    // Approved over the hub's API (for the next run): the next run's changes go, then exactly these repairs.
    assert!(f.hub.approve("not-the-held-plan", "hr-lead").is_err(), "an approval of a plan the hub did not make");
    f.hub.approve(&again, "hr-lead").unwrap();
    let before = f.hub.ledger().audit_entries(None).unwrap().last().map_or(0, |e| e.seq);
    f.hub.sync(&state).await.unwrap();
    let found = f.reconcile().await;
    let repaired = f.hub.repair(&state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(repaired.repaired_per_target["erp"][&DataType::Employee], leavers.len() as u64);
    assert_matches_everywhere(&f.reconcile().await, "after the repairs approved over the API");
    let audit = f.hub.ledger().audit_entries(None).unwrap();
    let approved_runs = audit.iter().filter(|e| e.seq > before && e.action == "run" && e.detail["plan_id"] == again.as_str() && e.detail["approved"] == true);
    assert_eq!(approved_runs.count(), 1, "the approved repairs are in the audit log once: {audit:#?}");

    // An approval that no run uses lapses, and the audit log says so.
    for (key, row) in &rows {
        f.stores.set("erp", DataType::Employee, key, Some(row.clone()));
    }
    let found = f.reconcile().await;
    let third = match f.hub.repair(&state, &HeldBack::default(), &found).await {
        Err(HubError::Held { plan_id, .. }) => plan_id,
        other => panic!("held again: {other:?}"),
    };
    f.hub.approve(&third, "hr-lead").unwrap();
    f.hub.sync(&state).await.unwrap();
    f.hub.sync(&state).await.unwrap();
    let audit = f.hub.ledger().audit_entries(None).unwrap();
    assert!(audit.iter().any(|e| e.action == "approve" && e.detail["plan_id"] == third.as_str() && e.detail["outcome"] == "refused"), "{audit:#?}");
}

#[tokio::test]
async fn an_approval_of_repairs_does_not_let_other_repairs_go() {
    let mut f = Fixture::synced().await;
    let (state, leavers, _) = f.erp_restored_after_a_third_left().await;
    let found = f.reconcile().await;
    let Err(HubError::Held { plan_id: approved, .. }) = f.hub.repair(&state, &HeldBack::default(), &found).await else { panic!("not held") };
    f.hub.approve(&approved, "hr-lead").unwrap();
    // Before the next run, erp loses another row: its repairs are others than the ones approved.
    let other = f.stores.live("erp", DataType::Employee).into_iter().find(|k| !leavers.contains(k)).unwrap();
    f.stores.set("erp", DataType::Employee, &other, None);
    f.hub.sync(&state).await.unwrap();
    let found = f.reconcile().await;
    match f.hub.repair(&state, &HeldBack::default(), &found).await {
        Err(HubError::Held { plan_id, .. }) => assert_ne!(plan_id, approved, "other repairs, another plan"),
        other => panic!("repairs went on the approval of other repairs: {other:?}"),
    }
    assert!(leavers.iter().all(|k| f.stores.row("erp", DataType::Employee, k).unwrap().1.is_some()), "held repairs deleted in erp");
    let audit = f.hub.ledger().audit_entries(None).unwrap();
    assert!(audit.iter().any(|e| e.action == "approve" && e.detail["plan_id"] == approved.as_str() && e.detail["outcome"] == "refused"), "{audit:#?}");
}

#[tokio::test]
async fn a_plan_counts_only_the_repairs_its_own_changes_leave() {
    let mut f = Fixture::synced().await;
    let keys = f.employees(2);
    let (edited, changed) = (&keys[0], &keys[1]);
    for key in &keys {
        let (version, _) = f.stores.row("erp", DataType::Employee, key).unwrap();
        f.stores.set("erp", DataType::Employee, key, Some((version, Some(r#"{"edited":"by hand"}"#.into()))));
    }
    // The run changes `changed` at a fresh version: it overwrites erp's edit, so no repair is planned for it.
    let mut state = f.state.clone();
    state.employees.get_mut(changed.as_str()).unwrap().name = "a new name".into();
    let found = f.reconcile().await;
    let plan = f.hub.plan_reconciled(&state, &HeldBack::default(), &found).unwrap();
    let erp = &plan.targets["erp"][&DataType::Employee];
    assert_eq!(erp.repair, 1, "{erp:?}");
    assert_eq!(erp.update, 2, "one change of the run and one repair: {erp:?}");
    assert_eq!(erp.samples["repair"], vec![edited.clone()]);
    assert_eq!(plan.targets["payroll"][&DataType::Employee].repair, 0);
    // The same plan without the comparison names other work: another id.
    assert_ne!(f.hub.plan(&state, &HeldBack::default()).unwrap().plan_id, plan.plan_id);

    // Sent, the run and its repair leave every system matching.
    f.hub.sync(&state).await.unwrap();
    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::Employee).1, vec![edited.clone()]);
    f.hub.repair(&state, &HeldBack::default(), &found).await.unwrap();
    assert_matches_everywhere(&f.reconcile().await, "after the run and its repair");
    let _ = f.hub.sync(&state).await.unwrap();
}

#[tokio::test]
async fn a_version_is_backed_by_a_majority_of_the_systems_that_receive_that_key() {
    let mut f = Fixture::synced().await;
    const HUGE: u64 = (1 << 53) - 1;
    // An org unit goes to orgchart and erp only: erp alone is half of them, not a majority.
    let unit = f.stores.live("erp", DataType::OrgUnit).remove(0);
    let (_, body) = f.stores.row("erp", DataType::OrgUnit, &unit).unwrap();
    f.stores.set("erp", DataType::OrgUnit, &unit, Some((HUGE, body)));
    // erp's own grant goes to erp alone (payroll and orgchart receive only their own grants): its word backs it.
    let grant = f.erp_grant();
    let (version, body) = f.stores.row("erp", DataType::Permission, &grant).unwrap();
    f.stores.set("erp", DataType::Permission, &grant, Some((version + 100, body)));
    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::OrgUnit), (vec![], vec![], vec![], vec![unit.clone()]));
    assert_eq!(drift_keys(&found, "erp", DataType::Permission), (vec![], vec![grant.clone()], vec![], vec![]));
    for name in ["payroll", "orgchart"] {
        assert!(found[name][&DataType::Permission].digest_matches, "{name} holds only its own grants");
    }
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert_eq!(f.stores.row("erp", DataType::Permission, &grant).unwrap().0, version + 101, "repaired above the version erp alone backs");
    assert_eq!(f.stores.row("erp", DataType::OrgUnit, &unit).unwrap().0, HUGE, "a foreign version is left for a person");
    assert!(f.stores.row("orgchart", DataType::OrgUnit, &unit).unwrap().0 < HUGE);
}

#[tokio::test]
async fn master_data_a_system_owns_and_publishes_is_not_the_hubs_to_compare() {
    let mut f = Fixture::synced().await;
    // erp owns md.product and publishes it itself: its rows are in erp's store, never in the hub's ledger.
    for code in ["P1", "P2"] {
        f.stores.set("erp", DataType::MasterData, &format!("md.product:{code}"), Some((1, Some(format!(r#"{{"set":"md.product","code":"{code}"}}"#)))));
    }
    let found = f.reconcile().await;
    assert_matches_everywhere(&found, "with erp's own master data");
    // A hub-owned row edited beside them is named alone, and repaired.
    let category = f.stores.live("erp", DataType::MasterData).into_iter().find(|k| k.starts_with("md.category:")).unwrap();
    let (version, _) = f.stores.row("erp", DataType::MasterData, &category).unwrap();
    f.stores.set("erp", DataType::MasterData, &category, Some((version, Some("{}".into()))));
    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::MasterData), (vec![], vec![category.clone()], vec![], vec![]));
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert_matches_everywhere(&f.reconcile().await, "after the repair");
    assert!(f.stores.row("erp", DataType::MasterData, "md.product:P1").unwrap().1.is_some(), "erp's own rows stay");
}

#[tokio::test]
async fn a_repair_sends_a_grant_as_a_run_would_revoked_in_real_time_or_suspended_by_a_bad_line() {
    let mut f = Fixture::synced().await;
    // Revoked in real time after the export granted it: the export is older, the revocation stands.
    let revoked = f.erp_grant();
    let parts: Vec<&str> = revoked.splitn(3, ':').collect();
    let at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let line = serde_json::json!({"employee": parts[0], "system": "erp", "role": parts[2], "op": "revoke", "at": at}).to_string();
    f.hub.apply_permission_lines(&line, "hr-portal").await.unwrap();
    assert!(!granted_in_erp(&f.stores, &revoked));
    // erp loses the row; the repair sends the revocation, not the export's older grant.
    f.stores.set("erp", DataType::Permission, &revoked, None);
    let found = f.reconcile().await;
    assert_eq!(drift_keys(&found, "erp", DataType::Permission).0, vec![revoked.clone()]);
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert!(!granted_in_erp(&f.stores, &revoked), "a repair re-sent the export's grant over a real-time revocation");

    // Granted in real time with an expiry already past: a repair sends it revoked, as a run would.
    let expired = f.stores.live("erp", DataType::Permission).into_iter().find(|k| *k != revoked && granted_in_erp(&f.stores, k)).unwrap();
    let parts: Vec<&str> = expired.splitn(3, ':').collect();
    let line = serde_json::json!({"employee": parts[0], "system": "erp", "role": parts[2], "op": "grant", "at": at, "expires": "2020-01-01"}).to_string();
    f.hub.apply_permission_lines(&line, "hr-portal").await.unwrap();
    f.stores.set("erp", DataType::Permission, &expired, None);
    let found = f.reconcile().await;
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert!(!granted_in_erp(&f.stores, &expired), "a repair sent a lapsed real-time grant in force");

    // Granted in the export with an expiry already past: the run sent it revoked, and so does a repair.
    let lapsed = f.stores.live("erp", DataType::Permission).into_iter().find(|k| ![&revoked, &expired].contains(&k) && granted_in_erp(&f.stores, k)).unwrap();
    let mut state = f.state.clone();
    state.permissions.get_mut(lapsed.as_str()).unwrap().expires = Some("2020-01-01".parse().unwrap());
    f.hub.sync(&state).await.unwrap();
    assert!(!granted_in_erp(&f.stores, &lapsed), "the run sent a lapsed grant in force");
    f.stores.set("erp", DataType::Permission, &lapsed, None);
    let found = f.reconcile().await;
    f.hub.repair(&state, &HeldBack::default(), &found).await.unwrap();
    assert!(!granted_in_erp(&f.stores, &lapsed), "a repair sent the export's lapsed grant in force");
    assert_matches_everywhere(&f.reconcile().await, "after repairing the lapsed grant");

    // A bad permissions line about a person on erp suspends their grants there: a repair sends them revoked.
    let suspended =
        f.stores.live("erp", DataType::Permission).into_iter().find(|k| ![&revoked, &expired, &lapsed].contains(&k) && granted_in_erp(&f.stores, k)).unwrap();
    let employee = suspended.split(':').next().unwrap().to_string();
    let quarantined = hr_core::Quarantined {
        file: "permissions.jsonl".into(),
        line: 7,
        id: Some(format!("{employee}:erp:{}", "x".repeat(600))),
        reason: hr_core::Reason::MalformedRow,
        detail: "role: over 128 bytes".into(),
    };
    let report = hr_core::MergeReport { quarantined: vec![quarantined], ..Default::default() };
    let held = HeldBack::from_report(&report, &hr_core::Identities::default());
    assert!(held.suspends(&employee, "erp").is_some());
    f.stores.set("erp", DataType::Permission, &suspended, None);
    let found = f.reconcile().await;
    f.hub.repair(&state, &held, &found).await.unwrap();
    assert!(!granted_in_erp(&f.stores, &suspended), "a repair granted what a bad line suspends");
}

/// People over time, with the hub's day set: a hire dated a week ahead
/// reaches no system before that day (nor their grant), then every system
/// that receives employees on it; a departure dated ahead keeps the person
/// and their access through the last day, and on the day after they are
/// terminated everywhere with every grant revoked. Each run leaves the
/// systems matching the hub.
#[tokio::test]
async fn hires_and_departures_take_effect_on_their_dates() {
    let mut f = Fixture::synced().await;
    // Days in the past, so the times a departure is revoked at are not ahead of the clock.
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(30);
    let day = |n: u64| start + chrono::Days::new(n);
    let mut state = f.state.clone();
    let template = state.employees.values().next().unwrap().clone();
    let newcomer = hr_core::Employee {
        id: "A-99001".into(),
        source_ids: vec!["A-99001".into()],
        email: Some("newcomer@a.example".into()),
        manager: None,
        hire_date: day(7),
        ..template
    };
    state.employees.insert(newcomer.id.clone(), newcomer.clone());
    let welcome = hr_core::PermissionGrant {
        employee: newcomer.id.clone(),
        system: "erp".into(),
        role: "viewer".into(),
        granted: true,
        expires: None,
        at: chrono::Utc::now() - chrono::Duration::days(40),
    };
    state.permissions.insert(welcome.key().into(), welcome.clone());
    let grant = f.erp_grant();
    let leaver = grant.split(':').next().unwrap().to_string();
    {
        let person = state.employees.get_mut(leaver.as_str()).unwrap();
        person.status = hr_core::EmployeeStatus::Terminated;
        person.termination_date = Some(day(14));
    }
    let status_in = |f: &Fixture, system: &str, id: &str| -> Option<String> {
        let body = f.stores.row(system, DataType::Employee, id)?.1?;
        Some(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"].as_str().unwrap().to_string())
    };

    f.hub.set_today(Some(day(0)));
    let plan = f.hub.plan(&state, &HeldBack::default()).unwrap();
    let scheduled: Vec<(chrono::NaiveDate, &str, &str)> = plan.scheduled.iter().map(|s| (s.on, s.employee.as_str(), s.change)).collect();
    assert_eq!(scheduled, vec![(day(7), "A-99001", "hire"), (day(15), leaver.as_str(), "departure")], "the plan lists what is due and when");
    for (today, hired, left) in [(0, false, false), (6, false, false), (7, true, false), (14, true, false), (15, true, true)] {
        f.hub.set_today(Some(day(today)));
        f.hub.sync(&state).await.unwrap();
        for system in NAMES {
            assert_eq!(status_in(&f, system, "A-99001").is_some(), hired, "day {today}: the hire in {system}");
            let want = if left { "terminated" } else { "active" };
            assert_eq!(status_in(&f, system, &leaver).as_deref(), Some(want), "day {today}: the leaver in {system}");
        }
        assert_eq!(f.stores.row("erp", DataType::Permission, &welcome.key()).is_some(), hired, "day {today}: the hire's grant");
        assert_eq!(granted_in_erp(&f.stores, &grant), !left, "day {today}: the leaver's grant");
        assert_matches_everywhere(&f.reconcile().await, &format!("on day {today}"));
    }
    assert!(f.stores.row("payroll", DataType::Employee, "A-99001").unwrap().1.unwrap().contains(&day(7).to_string()), "the hire date travels");
}

/// A grant made in real time that lapses before a repair re-sends it goes
/// out revoked, as a run would send it.
#[tokio::test]
async fn a_real_time_grant_that_lapsed_since_is_repaired_revoked() {
    let mut f = Fixture::synced().await;
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(10);
    f.hub.set_today(Some(day));
    let key = f.erp_grant();
    let parts: Vec<&str> = key.splitn(3, ':').collect();
    let at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let expires = (day + chrono::Days::new(1)).to_string();
    let line = serde_json::json!({"employee": parts[0], "system": "erp", "role": parts[2], "op": "grant", "at": at, "expires": expires}).to_string();
    f.hub.apply_permission_lines(&line, "hr-portal").await.unwrap();
    assert!(granted_in_erp(&f.stores, &key), "in force until tomorrow");
    // Two days later erp has lost the row: the repair sends the grant as it stands now, lapsed.
    f.hub.set_today(Some(day + chrono::Days::new(2)));
    f.stores.set("erp", DataType::Permission, &key, None);
    let found = f.reconcile().await;
    f.hub.repair(&f.state, &HeldBack::default(), &found).await.unwrap();
    assert!(!granted_in_erp(&f.stores, &key), "a repair re-sent a real-time grant that lapsed since");
}

/// A directory (`pre_start_days = 7`, reached alone) gets a hire a week
/// ahead as `pre_hire`. A send to it that fails deletes nothing anywhere:
/// the next run sends it to the directory again, alone, and every system
/// matches the hub after each good run. Someone the systems hold active
/// whose hire date moves ahead leaves the systems (fails closed).
/// The configuration over "rest" (which reaches each target alone), with
/// orgchart a directory that asks for hires `pre_start_days` ahead, if given.
fn directory_config(pre_start_days: Option<u32>) -> HubConfig {
    let asks = pre_start_days.map_or(String::new(), |days| format!("pre_start_days = {days}\n"));
    let text = CONFIG.replace("\"stores\"", "\"rest\"").replace("[targets.orgchart]\n", &format!("[targets.orgchart]\n{asks}"));
    HubConfig::from_toml_str(&text, "hub.toml").unwrap()
}

/// A hub of `config` over `stores` and `ledger`.
fn hub_over(config: &HubConfig, stores: &Arc<Stores>, ledger: Ledger) -> Hub {
    Hub::with_transports(config, ledger, [("rest", stores.clone() as Arc<dyn Propagator>)]).unwrap().with_reader(stores.clone())
}

/// A merged state of 300 employees with a newcomer, A-99001, hired on `hire_date`.
fn state_with_newcomer(hire_date: chrono::NaiveDate) -> MergedState {
    let dir = tempfile::tempdir().unwrap();
    Dataset::generate(&GenerateOptions::scaled(300)).write(dir.path()).unwrap();
    let mut state = hr_core::merge(hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap()).state;
    let template = state.employees.values().next().unwrap().clone();
    let newcomer = hr_core::Employee { id: "A-99001".into(), source_ids: vec!["A-99001".into()], manager: None, hire_date, ..template };
    state.employees.insert(newcomer.id.clone(), newcomer);
    state
}

/// The newcomer's status in `system` (`None`: not held, or deleted).
fn newcomer_status(stores: &Stores, system: &str) -> Option<String> {
    let body = stores.row(system, DataType::Employee, "A-99001")?.1?;
    Some(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_failed_send_ahead_is_sent_again_to_its_target_alone_and_deletes_nothing_elsewhere() {
    let config = directory_config(Some(7));
    let stores = Arc::new(Stores::new(config.policy()));
    let mut hub = hub_over(&config, &stores, Ledger::in_memory().unwrap());
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(30);
    let day = |n: u64| start + chrono::Days::new(n);
    let mut state = state_with_newcomer(day(10));
    let status_in = |system: &str| newcomer_status(&stores, system);
    let matches = |found: &Reconciliation, when: &str| assert_matches_everywhere(found, when);

    hub.set_today(Some(day(3)));
    stores.refuse_alone.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(hub.sync(&state).await.is_err(), "the send ahead failed");
    stores.refuse_alone.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(NAMES.map(status_in), [None, None, None]);
    let plan = hub.plan(&state, &HeldBack::default()).unwrap();
    assert_eq!(plan.targets.keys().collect::<Vec<_>>(), ["orgchart"], "only the directory is sent anything: {:?}", plan.targets);
    hub.sync(&state).await.unwrap();
    assert_eq!(NAMES.map(status_in), [None, Some("pre_hire".to_string()), None], "sent again, to it alone");
    matches(&hub.reconcile(&config).await.unwrap(), "after the send ahead");

    hub.set_today(Some(day(10)));
    hub.sync(&state).await.unwrap();
    assert_eq!(NAMES.map(status_in), [Some("active".to_string()), Some("active".to_string()), Some("active".to_string())], "hired");
    matches(&hub.reconcile(&config).await.unwrap(), "on the hire date");

    // The start moves a month ahead after all: not employed until then, in no system meanwhile.
    state.employees.get_mut("A-99001").unwrap().hire_date = day(40);
    hub.set_today(Some(day(11)));
    hub.sync(&state).await.unwrap();
    let deleted = NAMES.map(|system| stores.row(system, DataType::Employee, "A-99001").is_some_and(|(_, body)| body.is_none()));
    assert_eq!(deleted, [true; 3], "a hire moved ahead is not kept active");
    matches(&hub.reconcile(&config).await.unwrap(), "after the hire moved ahead");
}

/// A directory that stops asking for hires ahead has the ones it was sent
/// withdrawn by the next run, and matches the hub again.
#[tokio::test]
async fn a_target_that_stops_asking_for_hires_ahead_has_them_withdrawn() {
    let ledger_dir = tempfile::tempdir().unwrap();
    let ledger_path = ledger_dir.path().join("ledger.sqlite3");
    let asking = directory_config(Some(7));
    let stores = Arc::new(Stores::new(asking.policy()));
    let day = chrono::Utc::now().date_naive() - chrono::Days::new(30);
    let state = state_with_newcomer(day + chrono::Days::new(5));
    {
        let mut hub = hub_over(&asking, &stores, Ledger::open(&ledger_path).unwrap());
        hub.set_today(Some(day));
        hub.sync(&state).await.unwrap();
    }
    assert_eq!(NAMES.map(|s| newcomer_status(&stores, s)), [None, Some("pre_hire".to_string()), None]);
    let not_asking = directory_config(None);
    let mut hub = hub_over(&not_asking, &stores, Ledger::open(&ledger_path).unwrap());
    hub.set_today(Some(day));
    hub.sync(&state).await.unwrap();
    assert_eq!(NAMES.map(|s| newcomer_status(&stores, s)), [None, None, None], "withdrawn where it was sent");
    assert!(stores.row("orgchart", DataType::Employee, "A-99001").is_some_and(|(_, body)| body.is_none()));
    assert_matches_everywhere(&hub.reconcile(&not_asking).await.unwrap(), "after the directory stopped asking");
}
