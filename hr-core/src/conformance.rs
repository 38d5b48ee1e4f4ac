//! One test suite every [`Propagator`] runs, so each transport keeps the
//! same contract (enable the `conformance` feature in dev-dependencies).
//!
//! A transport's test file builds a [`Harness`] (usually a [`GatedHarness`]
//! over [`GatedHarness::stores`]): the propagator under test,
//! serving the targets in [`TARGETS`] (each receiving the harness's
//! [`data_type`](Harness::data_type), master data unless it says otherwise),
//! a way to read what each target holds, and a way to take a target down
//! and bring it back. [`run_all`] then checks, in order:
//!
//! * delivery: a batch reaches every target, and its receipt reports each
//!   target applied every change;
//! * redelivery: the same batch again changes nothing;
//! * reordering: an older version arriving after a newer one is ignored;
//! * deletes: a delete wins over older upserts, before or after it;
//! * a target down: the failure names that target (from `propagate` or
//!   from the receipt within its deadline), the others still apply, and
//!   once the target is back, sending again converges;
//! * sensitive data: compensation, which no target of the harness may
//!   receive, reaches no sink;
//! * some targets alone ([`Propagator::propagate_to`]): a batch for
//!   orgchart reaches it, and reaches another target only if the receipt
//!   names it as a receiver;
//! * field scope: org units reach [`NARROWED`] without the fields
//!   [`narrowed`] omits, and the other targets whole (every target receives
//!   org units too, [`NARROWED`] in that field scope);
//! * record scope, for a transport that carries grants
//!   ([`Harness::carries_grants`]): a grant reaches only the system it names.
//!
//! Each check panics with what went wrong, as a test should.

use crate::{
    ApplyOutcome, ChangeEnvelope, Company, DataType, Digest, DigestEntry, FieldScope, MasterData, MemorySink, OrgUnit, PermissionGrant, PropagateError,
    PropagationReport, Propagator, PropagatorExt, Sink, SinkError,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The targets every harness serves.
pub const TARGETS: [&str; 3] = ["payroll", "orgchart", "erp"];

/// The target a harness sets up without the fields [`narrowed`] omits.
pub const NARROWED: &str = "orgchart";

/// The field scope of [`NARROWED`]: org units without their company.
pub fn narrowed() -> FieldScope {
    FieldScope::full().omitting(DataType::OrgUnit, ["company"]).expect("an org unit's company is optional")
}

/// A transport under test and the targets it serves.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The propagator under test, serving every target in [`TARGETS`] with
    /// [`data_type`](Self::data_type) and [`DataType::OrgUnit`] ([`NARROWED`]
    /// in the field scope [`narrowed`]), with [`DataType::Permission`] if it
    /// [`carries_grants`](Self::carries_grants), and none with
    /// [`DataType::Compensation`].
    fn propagator(&self) -> Arc<dyn Propagator>;

    /// Whether the transport carries grants (each target receiving only
    /// the grants for its own system); by default it does not.
    fn carries_grants(&self) -> bool {
        false
    }

    /// The data type the checks send: [`DataType::MasterData`] (any
    /// transport carries it) or [`DataType::OrgUnit`] (a directory's Groups).
    fn data_type(&self) -> DataType {
        DataType::MasterData
    }

    /// What `target` holds of `data_type`. Its target must be able to hold
    /// compensation if a transport delivered it (a Kafka consumer of the
    /// compensation topic, a receiver that accepts it), so a leak shows.
    async fn held(&self, target: &str, data_type: DataType) -> Vec<DigestEntry>;

    /// Makes `target` unreachable: it applies nothing until [`start`](Self::start).
    async fn stop(&self, target: &str);

    /// Makes `target` reachable again, with its store as it was.
    async fn start(&self, target: &str);

    /// How long a receipt may wait for targets that are up (default 60 s).
    fn deadline(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// How long to wait before declaring a stopped target behind (default 3 s).
    fn short_deadline(&self) -> Duration {
        Duration::from_secs(3)
    }
}

/// A target's store that can be taken down: while down, `apply` fails as
/// an unreachable store does (transiently), and nothing is applied. A
/// harness usually stops a target by stopping its store this way.
#[derive(Default)]
pub struct GatedSink {
    inner: MemorySink,
    down: AtomicBool,
}

impl GatedSink {
    /// Takes the store down (`true`) or brings it back (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl Sink for GatedSink {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError::Unavailable("the target is stopped by the conformance suite".into()));
        }
        self.inner.apply(batch).await
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.inner.entries(data_type).await
    }
}

/// The usual harness: a propagator whose targets apply into [`GatedSink`]s,
/// so stopping a target takes its store down.
pub struct GatedHarness {
    propagator: Arc<dyn Propagator>,
    sinks: BTreeMap<&'static str, Arc<GatedSink>>,
    grants: bool,
}

impl GatedHarness {
    /// One store per name in [`TARGETS`], for the transport's targets to apply into.
    pub fn stores() -> BTreeMap<&'static str, Arc<GatedSink>> {
        TARGETS.iter().map(|t| (*t, Arc::new(GatedSink::default()))).collect()
    }

    /// `propagator` serving targets that apply into `stores` (from [`stores`](Self::stores)).
    pub fn new(propagator: Arc<dyn Propagator>, stores: BTreeMap<&'static str, Arc<GatedSink>>) -> Self {
        GatedHarness { propagator, sinks: stores, grants: false }
    }

    /// This harness for a transport that carries grants (see [`Harness::carries_grants`]).
    pub fn carrying_grants(mut self) -> Self {
        self.grants = true;
        self
    }
}

#[async_trait]
impl Harness for GatedHarness {
    fn propagator(&self) -> Arc<dyn Propagator> {
        self.propagator.clone()
    }

    fn carries_grants(&self) -> bool {
        self.grants
    }

    async fn held(&self, target: &str, data_type: DataType) -> Vec<DigestEntry> {
        self.sinks[target].entries(data_type).await.expect("the sink lists its entries")
    }

    async fn stop(&self, target: &str) {
        self.sinks[target].set_down(true);
    }

    async fn start(&self, target: &str) {
        self.sinks[target].set_down(false);
    }
}

/// Runs every check, each on its own keys (`prefix` keeps runs on a shared
/// broker or store apart; with org units it starts their ids).
pub async fn run_all(harness: &dyn Harness, prefix: &str) {
    delivers_to_every_target(harness, &format!("{prefix}deliver")).await;
    redelivery_changes_nothing(harness, &format!("{prefix}redeliver")).await;
    an_older_version_arriving_late_is_ignored(harness, &format!("{prefix}reorder")).await;
    a_delete_wins_over_older_upserts(harness, &format!("{prefix}delete")).await;
    a_target_down_is_named_and_catches_up_after_a_resend(harness, &format!("{prefix}down")).await;
    sensitive_data_reaches_no_target_not_allowed_it(harness, &format!("{prefix}pay")).await;
    a_batch_for_some_targets_reaches_only_those_the_receipt_names(harness, &format!("{prefix}some")).await;
    fields_a_target_goes_without_never_reach_it(harness, &format!("{prefix}scope")).await;
    if harness.carries_grants() {
        a_grant_reaches_only_the_system_it_names(harness, &format!("{prefix}grant")).await;
    }
}

fn record(set: &str, code: usize, name: &str) -> MasterData {
    MasterData { set: set.into(), code: compact_str::format_compact!("{code:05}"), name: name.into(), attributes: Default::default() }
}

/// `n` upserts of `data_type` (master data of set `set`, or org units whose
/// ids start with `set`) at `version`, named `name`.
pub fn upserts_of(data_type: DataType, set: &str, n: usize, version: u64, name: &str) -> Vec<ChangeEnvelope> {
    (0..n)
        .map(|i| match data_type {
            DataType::OrgUnit => {
                let unit = OrgUnit {
                    id: compact_str::format_compact!("{set}-{i:05}"),
                    company: Some(Company::A),
                    name: compact_str::format_compact!("{name} {i}"),
                    parent: Some("A".into()),
                    leader: None,
                    updated_at: None,
                };
                ChangeEnvelope::upsert(DataType::OrgUnit, unit.id.to_string(), version, "conformance", &unit).expect("an org unit serializes")
            }
            _ => {
                let md = record(set, i, name);
                ChangeEnvelope::upsert(DataType::MasterData, md.key(), version, "conformance", &md).expect("master data serializes")
            }
        })
        .collect()
}

/// Whether `key` of `data_type` is one of `set`'s.
fn in_set(data_type: DataType, set: &str, key: &str) -> bool {
    let separator = if data_type == DataType::OrgUnit { '-' } else { ':' };
    key.strip_prefix(set).is_some_and(|rest| rest.starts_with(separator))
}

/// The digest of `set`'s keys in `entries`.
fn digest_of_set(entries: Vec<DigestEntry>, data_type: DataType, set: &str) -> Digest {
    Digest::of(&entries.into_iter().filter(|e| in_set(data_type, set, &e.key)).collect::<Vec<_>>())
}

/// The digest of `set`'s keys as `target` holds them.
async fn held_of_set(harness: &dyn Harness, target: &str, set: &str) -> Digest {
    let data_type = harness.data_type();
    digest_of_set(harness.held(target, data_type).await, data_type, set)
}

/// What a sink that applied `batch` by the version rule holds for `set`.
async fn expected(batch: &[ChangeEnvelope], set: &str) -> Digest {
    let reference = MemorySink::default();
    reference.apply(batch).await.expect("the reference sink applies");
    let data_type = batch.first().map_or(DataType::MasterData, |c| c.data_type);
    digest_of_set(reference.entries(data_type).await.expect("the reference sink lists its entries"), data_type, set)
}

async fn send_and_confirm(harness: &dyn Harness, batch: &[ChangeEnvelope]) -> PropagationReport {
    harness.propagator().propagate_applied(batch, harness.deadline()).await.unwrap_or_else(|e| panic!("propagate and apply: {e}"))
}

/// What `target` holds of `set` once it applied `batch` in its field scope.
async fn expected_in(target: &str, batch: &[ChangeEnvelope], set: &str) -> Digest {
    let scope = if target == NARROWED { narrowed() } else { FieldScope::full() };
    let scoped: Vec<ChangeEnvelope> = batch.iter().map(|c| scope.apply(c).expect("the suite omits optional fields only").into_owned()).collect();
    expected(&scoped, set).await
}

async fn assert_every_target_holds(harness: &dyn Harness, set: &str, batch: &[ChangeEnvelope], what: &str) {
    for target in TARGETS {
        let held = held_of_set(harness, target, set).await;
        assert_eq!(held, expected_in(target, batch, set).await, "{target} after {what}");
    }
}

/// A batch reaches every target, and the receipt says each applied all of it.
pub async fn delivers_to_every_target(harness: &dyn Harness, set: &str) {
    let batch = upserts_of(harness.data_type(), set, 300, 1, "first");
    let applied = send_and_confirm(harness, &batch).await;
    for target in TARGETS {
        assert_eq!(applied.total(target), 300, "{target} applied the whole batch: {applied:?}");
    }
    assert_every_target_holds(harness, set, &batch, "one batch").await;
}

/// Sending the same batch twice leaves every target as after once.
pub async fn redelivery_changes_nothing(harness: &dyn Harness, set: &str) {
    let batch = upserts_of(harness.data_type(), set, 50, 1, "once");
    send_and_confirm(harness, &batch).await;
    send_and_confirm(harness, &batch).await;
    assert_every_target_holds(harness, set, &batch, "the same batch twice").await;
}

/// Version 2 then version 1 of the same keys: every target keeps version 2.
pub async fn an_older_version_arriving_late_is_ignored(harness: &dyn Harness, set: &str) {
    let newer = upserts_of(harness.data_type(), set, 50, 2, "newer");
    let older = upserts_of(harness.data_type(), set, 50, 1, "older");
    send_and_confirm(harness, &newer).await;
    send_and_confirm(harness, &older).await;
    assert_every_target_holds(harness, set, &newer, "an older version arriving late").await;
}

/// Upsert at 1, delete at 2, the upsert at 1 again: the key stays deleted.
pub async fn a_delete_wins_over_older_upserts(harness: &dyn Harness, set: &str) {
    let created = upserts_of(harness.data_type(), set, 20, 1, "created");
    let deleted: Vec<ChangeEnvelope> = created.iter().map(|c| ChangeEnvelope::delete(c.data_type, c.key.clone(), 2, "conformance")).collect();
    send_and_confirm(harness, &created).await;
    send_and_confirm(harness, &deleted).await;
    send_and_confirm(harness, &created).await;
    let all = [created.clone(), deleted].concat();
    assert_eq!(expected(&all, set).await.count, 0, "the reference holds only tombstones");
    assert_every_target_holds(harness, set, &all, "a delete and a late upsert").await;
}

/// With erp down, the failure names erp and only erp; payroll and orgchart
/// apply the batch; once erp is back, sending again converges everywhere.
pub async fn a_target_down_is_named_and_catches_up_after_a_resend(harness: &dyn Harness, set: &str) {
    let batch = upserts_of(harness.data_type(), set, 100, 1, "while erp is down");
    harness.stop("erp").await;
    let failure = match harness.propagator().propagate(&batch).await {
        Err(e) => e,
        Ok(receipt) => receipt.applied(harness.short_deadline()).await.expect_err("erp is down: the receipt cannot be applied"),
    };
    let PropagateError::Incomplete { delivered, failures } = &failure else { panic!("expected an incomplete propagation, got {failure}") };
    assert_eq!(failure.failed_targets(), vec!["erp"], "{failure}");
    assert!(failures.iter().all(|f| f.retriable), "a target down is worth retrying: {failure}");
    assert_eq!(delivered.total("erp"), 0, "nothing reported for erp: {failure}");
    for target in ["payroll", "orgchart"] {
        assert_eq!(held_of_set(harness, target, set).await, expected_in(target, &batch, set).await, "{target} applies while erp is down");
    }
    harness.start("erp").await;
    send_and_confirm(harness, &batch).await;
    assert_every_target_holds(harness, set, &batch, "erp came back and the batch was sent again").await;
}

/// Compensation, which no target of the harness may receive, reaches none.
pub async fn sensitive_data_reaches_no_target_not_allowed_it(harness: &dyn Harness, set: &str) {
    let pay = serde_json::json!({"employee_id": format!("{set}-1"), "base_salary": 55_000_000u64, "currency": "KRW", "effective_date": "2026-01-01"});
    let change = ChangeEnvelope::upsert(DataType::Compensation, format!("{set}-1"), 1, "conformance", &pay).expect("serializes");
    if let Ok(receipt) = harness.propagator().propagate(&[change]).await {
        let applied = receipt.applied(harness.short_deadline()).await.unwrap_or_default();
        for target in TARGETS {
            assert_eq!(applied.total(target), 0, "{target} was reported to hold compensation");
        }
    }
    // A transport that leaked it regardless would have it applied by now.
    tokio::time::sleep(harness.short_deadline()).await;
    for target in TARGETS {
        let entries = harness.held(target, DataType::Compensation).await;
        assert!(entries.is_empty(), "{target} holds compensation it may not receive");
    }
}

/// A batch for orgchart alone reaches orgchart; payroll and erp hold it if
/// and only if the receipt names them as receivers (a Kafka topic they
/// share with orgchart reaches them too, and says so).
pub async fn a_batch_for_some_targets_reaches_only_those_the_receipt_names(harness: &dyn Harness, set: &str) {
    let batch = upserts_of(harness.data_type(), set, 30, 1, "for orgchart");
    let only: BTreeSet<String> = BTreeSet::from(["orgchart".to_string()]);
    let receipt = harness.propagator().propagate_to(&batch, &only).await.unwrap_or_else(|e| panic!("propagate to orgchart: {e}"));
    let applied = receipt.applied(harness.deadline()).await.unwrap_or_else(|e| panic!("applied by the receivers: {e}"));
    assert_eq!(applied.total("orgchart"), 30, "orgchart applied the batch meant for it: {applied:?}");
    // A transport that leaked the batch to a target it did not name would have it applied by now.
    tokio::time::sleep(harness.short_deadline()).await;
    assert_eq!(held_of_set(harness, "orgchart", set).await, expected_in("orgchart", &batch, set).await, "orgchart after a batch for it alone");
    for target in ["payroll", "erp"] {
        let named = receipt.delivered().total(target) > 0;
        let held = held_of_set(harness, target, set).await;
        if named {
            assert_eq!(held, expected_in(target, &batch, set).await, "{target} is named as a receiver of orgchart's batch but does not hold it");
        } else {
            assert_eq!(held, Digest::default(), "{target} holds a batch meant for orgchart, and the receipt does not say so");
        }
    }
}

/// Org units reach [`NARROWED`] without the fields [`narrowed`] omits, and
/// every other target whole.
pub async fn fields_a_target_goes_without_never_reach_it(harness: &dyn Harness, set: &str) {
    let batch = upserts_of(DataType::OrgUnit, set, 20, 1, "scoped");
    assert!(batch.iter().all(|c| c.payload_json().is_some_and(|p| p.contains("\"company\""))), "the org units carry the field to leave out");
    send_and_confirm(harness, &batch).await;
    for target in TARGETS {
        let held = digest_of_set(harness.held(target, DataType::OrgUnit).await, DataType::OrgUnit, set);
        assert_eq!(held, expected_in(target, &batch, set).await, "{target} does not hold the org units as its field scope says");
    }
    // Had the field reached the narrowed target, it would hold what the others do.
    assert_ne!(expected_in(NARROWED, &batch, set).await, expected(&batch, set).await, "the suite's field scope leaves something out");
}

/// A grant for each system, sent to all: each system holds its own only.
pub async fn a_grant_reaches_only_the_system_it_names(harness: &dyn Harness, set: &str) {
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("a time").with_timezone(&chrono::Utc);
    let grants: Vec<ChangeEnvelope> = TARGETS
        .iter()
        .map(|system| {
            let grant = PermissionGrant { employee: set.into(), system: (*system).into(), role: "viewer".into(), granted: true, expires: None, at };
            ChangeEnvelope::upsert(DataType::Permission, grant.key(), 1, "conformance", &grant).expect("a grant serializes")
        })
        .collect();
    send_and_confirm(harness, &grants).await;
    for target in TARGETS {
        let held: Vec<String> = harness.held(target, DataType::Permission).await.into_iter().map(|e| e.key).filter(|k| k.starts_with(set)).collect();
        assert_eq!(held, vec![format!("{set}:{target}:viewer")], "{target} holds grants of other systems");
    }
}
