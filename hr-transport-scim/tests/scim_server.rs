//! The SCIM transport against a real SCIM 2.0 service provider
//! (scim2-server, started by `scripts/scim.sh`; `HR_SCIM_URL` and
//! `HR_SCIM_TOKEN` say where and with what). Each test provisions tenants
//! of its own.

use async_trait::async_trait;
use hr_core::conformance::{run_all, Harness};
use hr_core::{ChangeEnvelope, Company, DataType, DigestEntry, Employee, EmployeeStatus, OrgUnit, Propagator, Sensitive, TargetReader};
use hr_transport_scim::{ScimConfig, ScimPropagator, ScimTarget};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn server() -> (String, String) {
    let url = std::env::var("HR_SCIM_URL").expect("HR_SCIM_URL: start the SCIM provider with `bash scripts/scim.sh start` (scripts/test.sh does)");
    let token = std::env::var("HR_SCIM_TOKEN").unwrap_or_else(|_| "hr-sync-test-token-for-the-scim-provider-0001".into());
    (url.trim_end_matches('/').to_string(), token)
}

/// A tenant of its own on the provider: a directory nobody else writes.
fn tenant() -> String {
    format!("{}/t{}", server().0, uuid::Uuid::new_v4().simple())
}

fn directory(name: &str, url: &str) -> ScimTarget {
    ScimTarget::new(name, url, vec![DataType::Employee, DataType::OrgUnit]).with_token(&server().1)
}

fn propagator(targets: Vec<ScimTarget>, dir: &tempfile::TempDir) -> ScimPropagator {
    ScimPropagator::new(ScimConfig::new(targets, dir.path().join("scim-ids.sqlite3"))).unwrap()
}

/// The directory itself, as an administrator sees it.
struct Admin {
    url: String,
    http: reqwest::Client,
}

impl Admin {
    fn of(url: &str) -> Self {
        Admin { url: url.to_string(), http: reqwest::Client::new() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(server().1);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/scim+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn all(&self, endpoint: &str) -> Vec<Value> {
        let (_, body) = self.send(reqwest::Method::GET, &format!("{endpoint}?count=1000"), None).await;
        body["Resources"].as_array().cloned().unwrap_or_default()
    }

    async fn user(&self, external_id: &str) -> Option<Value> {
        self.all("/Users").await.into_iter().find(|u| u["externalId"] == external_id)
    }

    async fn group(&self, external_id: &str) -> Option<Value> {
        self.all("/Groups").await.into_iter().find(|g| g["externalId"] == external_id)
    }
}

fn employee(id: &str, manager: Option<&str>, org_unit: &str) -> Employee {
    Employee {
        id: id.into(),
        source_ids: vec![id.into()],
        company: Company::A,
        name: format!("사원 {id}").into(),
        name_en: None,
        email: Some(format!("{}@a.example", id.to_lowercase()).into()),
        phone: Some(Sensitive::new("010-1234-5678".into())),
        birth_date: None,
        org_unit: org_unit.into(),
        grade: "staff".into(),
        status: EmployeeStatus::Active,
        hire_date: chrono::NaiveDate::from_ymd_opt(2020, 1, 2).unwrap(),
        termination_date: None,
        manager: manager.map(Into::into),
        updated_at: chrono::Utc::now(),
    }
}

fn unit(id: &str) -> OrgUnit {
    OrgUnit { id: id.into(), company: Some(Company::A), name: format!("부서 {id}").into(), parent: Some("A".into()), leader: None, updated_at: None }
}

fn up(e: &Employee, version: u64) -> ChangeEnvelope {
    ChangeEnvelope::upsert(DataType::Employee, e.id.to_string(), version, "test", e).unwrap()
}

fn up_unit(u: &OrgUnit, version: u64) -> ChangeEnvelope {
    ChangeEnvelope::upsert(DataType::OrgUnit, u.id.to_string(), version, "test", u).unwrap()
}

/// A manager written after their report, in one batch: every User names
/// the manager's SCIM id, carries the enterprise attributes, and is a
/// member of its org unit's Group; the phone goes only where the field
/// scope allows it.
#[tokio::test]
async fn employees_become_users_naming_their_managers_and_org_units_become_groups() {
    let url = tenant();
    let dir = tempfile::tempdir().unwrap();
    let no_phone = hr_core::FieldScope::full().omitting(DataType::Employee, ["phone"]).unwrap();
    let scim = propagator(vec![directory("directory", &url).with_fields(no_phone)], &dir);
    let report = employee("A-2", Some("A-1"), "A-D2");
    let boss = employee("A-1", None, "A-D1");
    let batch = vec![up(&report, 1), up(&boss, 1), up_unit(&unit("A-D1"), 1), up_unit(&unit("A-D2"), 1)];
    let applied = scim.propagate(&batch).await.unwrap().applied(std::time::Duration::from_secs(1)).await.unwrap();
    assert_eq!(applied.total("directory"), 4);

    let admin = Admin::of(&url);
    let boss_user = admin.user("A-1").await.expect("the manager is a User");
    let user = admin.user("A-2").await.expect("the report is a User");
    assert_eq!(user["userName"], "a-2@a.example");
    assert_eq!(user["active"], true);
    assert_eq!(user["displayName"], "사원 A-2");
    assert_eq!(user["emails"][0]["value"], "a-2@a.example");
    assert!(user.get("phoneNumbers").is_none(), "the field scope omits the phone: {user}");
    assert_eq!(user[ENTERPRISE]["employeeNumber"], "A-2");
    assert_eq!(user[ENTERPRISE]["department"], "A-D2");
    assert_eq!(user[ENTERPRISE]["organization"], "A");
    assert_eq!(user[ENTERPRISE]["manager"]["value"], boss_user["id"], "the manager is named by SCIM id");
    assert!(boss_user[ENTERPRISE].get("manager").is_none());
    let group = admin.group("A-D2").await.expect("the org unit is a Group");
    assert_eq!(group["displayName"], "부서 A-D2");
    let members: Vec<&Value> = group["members"].as_array().map(|m| m.iter().map(|m| &m["value"]).collect()).unwrap_or_default();
    assert_eq!(members, vec![&user["id"]], "{group}");
    assert_eq!(scim.scim_id("directory", DataType::Employee, "A-2").unwrap().as_ref(), user["id"].as_str().map(str::to_string).as_ref());

    // A move: the department changes and the User changes Group.
    let moved = Employee { org_unit: "A-D1".into(), ..report.clone() };
    scim.propagate(&[up(&moved, 2)]).await.unwrap();
    let user = admin.user("A-2").await.unwrap();
    assert_eq!(user[ENTERPRISE]["department"], "A-D1");
    let d1 = admin.group("A-D1").await.unwrap();
    let d2 = admin.group("A-D2").await.unwrap();
    assert!(d1["members"].as_array().is_some_and(|m| m.iter().any(|m| m["value"] == user["id"])), "{d1}");
    assert!(!d2["members"].as_array().is_some_and(|m| m.iter().any(|m| m["value"] == user["id"])), "{d2}");
}

/// A leaver is deactivated, never deleted; a target that deletes leavers deletes them.
#[tokio::test]
async fn a_leaver_is_deactivated_unless_the_directory_deletes_leavers() {
    let (keeps, deletes) = (tenant(), tenant());
    let dir = tempfile::tempdir().unwrap();
    let scim = propagator(vec![directory("keeps", &keeps), directory("deletes", &deletes).with_delete_leavers(true)], &dir);
    let people: Vec<Employee> = (1..=3).map(|i| employee(&format!("A-{i}"), None, "A-D1")).collect();
    scim.propagate(&people.iter().map(|e| up(e, 1)).collect::<Vec<_>>()).await.unwrap();
    let terminated = Employee { status: EmployeeStatus::Terminated, termination_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 30), ..people[0].clone() };
    let removed = ChangeEnvelope::delete(DataType::Employee, "A-2", 2, "test");
    scim.propagate(&[up(&terminated, 2), removed]).await.unwrap();

    let keeps = Admin::of(&keeps);
    for id in ["A-1", "A-2"] {
        let user = keeps.user(id).await.unwrap_or_else(|| panic!("{id} was deleted"));
        assert_eq!(user["active"], false, "{id} is deactivated: {user}");
    }
    assert_eq!(keeps.user("A-3").await.unwrap()["active"], true);
    let deletes = Admin::of(&deletes);
    assert!(deletes.user("A-1").await.is_none() && deletes.user("A-2").await.is_none(), "leavers deleted where the target says so");
    assert!(deletes.user("A-3").await.is_some());
}

/// A User an administrator created with the same userName is adopted: one
/// User, with the hub's externalId and attributes.
#[tokio::test]
async fn a_user_created_by_hand_with_the_same_user_name_is_adopted_not_duplicated() {
    let url = tenant();
    let admin = Admin::of(&url);
    let (status, _) = admin
        .send(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a-7@a.example", "displayName": "by hand"})),
        )
        .await;
    assert_eq!(status, 201);
    let dir = tempfile::tempdir().unwrap();
    let scim = propagator(vec![directory("directory", &url)], &dir);
    scim.propagate(&[up(&employee("A-7", None, "A-D1"), 1)]).await.unwrap();
    let users: Vec<Value> = admin.all("/Users").await.into_iter().filter(|u| u["userName"] == "a-7@a.example").collect();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["externalId"], "A-7");
    assert_eq!(users[0]["displayName"], "사원 A-7");
}

/// Reading back: the directory as written matches the hub's entries; a
/// User deleted by hand is missing, one edited by hand differs; sending the
/// two again at fresh versions creates the one and corrects the other.
#[tokio::test]
async fn a_user_deleted_or_edited_by_hand_is_found_and_written_again() {
    let url = tenant();
    let dir = tempfile::tempdir().unwrap();
    let scim = propagator(vec![directory("directory", &url)], &dir);
    let people: Vec<Employee> = (1..=5).map(|i| employee(&format!("A-{i}"), (i > 1).then_some("A-1"), "A-D1")).collect();
    let batch: Vec<ChangeEnvelope> = people.iter().map(|e| up(e, 1)).collect();
    scim.propagate(&batch).await.unwrap();
    let reference = hr_core::MemorySink::default();
    hr_core::Sink::apply(&reference, &batch).await.unwrap();
    let want = hr_core::Sink::entries(&reference, DataType::Employee).await.unwrap();
    assert_eq!(held(&scim).await, want, "the directory holds what was written");

    let admin = Admin::of(&url);
    let deleted = admin.user("A-3").await.unwrap();
    assert_eq!(admin.send(reqwest::Method::DELETE, &format!("/Users/{}", deleted["id"].as_str().unwrap()), None).await.0, 204);
    let edited = admin.user("A-4").await.unwrap();
    let patch =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"displayName": "edited by hand"}}]});
    assert!([200, 204].contains(&admin.send(reqwest::Method::PATCH, &format!("/Users/{}", edited["id"].as_str().unwrap()), Some(patch)).await.0));

    let found = held(&scim).await;
    assert_eq!(held(&scim).await, found, "reading back twice tells the same");
    assert!(!found.iter().any(|e| e.key == "A-3"), "a User deleted by hand is missing");
    let a4 = found.iter().find(|e| e.key == "A-4").unwrap();
    assert_ne!(Some(a4), want.iter().find(|e| e.key == "A-4"), "a User edited by hand differs");
    assert_eq!(found.iter().filter(|e| want.contains(e)).count(), 3, "the others match");

    scim.propagate(&[up(&people[2], 2), up(&people[3], 2)]).await.unwrap();
    assert_eq!(admin.user("A-4").await.unwrap()["displayName"], "사원 A-4", "the edit is undone");
    let recreated = admin.user("A-3").await.expect("the deleted User is created again");
    assert_eq!(recreated[ENTERPRISE]["manager"]["value"], admin.user("A-1").await.unwrap()["id"]);
    let again = held(&scim).await;
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|e| e.content.is_some()));
}

async fn held(scim: &ScimPropagator) -> Vec<DigestEntry> {
    let mut entries = scim.entries("directory", DataType::Employee, &hr_core::ALL_BUCKETS).await.unwrap();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries
}

/// Managers that name each other: A-1 is written first, before its manager
/// exists; A-2 then names A-1; A-1 naming A-2 would close the cycle, so A-1
/// stays without a manager, and the batch goes through.
#[tokio::test]
async fn a_cycle_of_managers_is_refused() {
    let url = tenant();
    let dir = tempfile::tempdir().unwrap();
    let scim = propagator(vec![directory("directory", &url)], &dir);
    let a = employee("A-1", Some("A-2"), "A-D1");
    let b = employee("A-2", Some("A-1"), "A-D1");
    scim.propagate(&[up(&a, 1), up(&b, 1)]).await.unwrap();
    let admin = Admin::of(&url);
    let (a, b) = (admin.user("A-1").await.unwrap(), admin.user("A-2").await.unwrap());
    let names = |u: &Value| u[ENTERPRISE]["manager"]["value"].as_str().map(str::to_string);
    assert_eq!(names(&b), a["id"].as_str().map(str::to_string), "A-2 names A-1");
    assert_eq!(names(&a), None, "A-1 naming A-2 would close the cycle");
}

/// A directory that is down (here: a port nobody listens on) fails the
/// batch for that target only, as retriable.
#[tokio::test]
async fn a_directory_that_does_not_answer_is_named_and_retriable() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let scim = propagator(vec![directory("up", &tenant()), directory("down", &closed)], &dir);
    let err = scim.propagate(&[up(&employee("A-1", None, "A-D1"), 1)]).await.unwrap_err();
    assert_eq!(err.failed_targets(), vec!["down"], "{err}");
    let hr_core::PropagateError::Incomplete { delivered, failures } = err else { panic!() };
    assert!(failures[0].retriable);
    assert_eq!(delivered.total("up"), 1);
}

/// A proxy in front of one tenant that can refuse every connection: a
/// directory that goes down and comes back with what it held.
struct Gate {
    down: Arc<AtomicBool>,
    url: String,
}

impl Gate {
    async fn open(upstream: &str) -> Self {
        let upstream = reqwest::Url::parse(upstream).unwrap();
        let addr = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{}", listener.local_addr().unwrap(), upstream.path());
        let down = Arc::new(AtomicBool::new(false));
        let gate = down.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if gate.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed unanswered
                }
                let addr = addr.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Gate { down, url }
    }
}

struct ScimHarness {
    scim: Arc<ScimPropagator>,
    gates: std::collections::BTreeMap<&'static str, Gate>,
}

#[async_trait]
impl Harness for ScimHarness {
    fn propagator(&self) -> Arc<dyn Propagator> {
        self.scim.clone()
    }

    fn data_type(&self) -> DataType {
        DataType::OrgUnit
    }

    async fn held(&self, target: &str, data_type: DataType) -> Vec<DigestEntry> {
        self.scim.entries(target, data_type, &hr_core::ALL_BUCKETS).await.unwrap()
    }

    async fn stop(&self, target: &str) {
        self.gates[target].down.store(true, Ordering::SeqCst);
    }

    async fn start(&self, target: &str) {
        self.gates[target].down.store(false, Ordering::SeqCst);
    }
}

/// The contract every transport keeps, with three directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let mut gates = std::collections::BTreeMap::new();
    for name in hr_core::conformance::TARGETS {
        gates.insert(name, Gate::open(&tenant()).await);
    }
    let targets = gates.iter().map(|(name, gate)| ScimTarget::new(name, &gate.url, vec![DataType::OrgUnit]).with_token(&server().1)).collect();
    let scim = Arc::new(propagator(targets, &dir));
    run_all(&ScimHarness { scim, gates }, "OU-conformance").await;
}
