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

/// Managers that name each other, in one batch: one of the two names the
/// other, and the one whose reference would close the cycle stays without
/// a manager; the batch goes through, in Bulk requests or one by one.
#[tokio::test]
async fn a_cycle_of_managers_is_refused() {
    for bulk in [true, false] {
        let url = tenant();
        let dir = tempfile::tempdir().unwrap();
        let scim = propagator(vec![directory("directory", &url).with_bulk(bulk)], &dir);
        let a = employee("A-1", Some("A-2"), "A-D1");
        let b = employee("A-2", Some("A-1"), "A-D1");
        scim.propagate(&[up(&a, 1), up(&b, 1)]).await.unwrap();
        let admin = Admin::of(&url);
        let (a, b) = (admin.user("A-1").await.unwrap(), admin.user("A-2").await.unwrap());
        let names = |u: &Value| u[ENTERPRISE]["manager"]["value"].as_str().map(str::to_string);
        let (a_names_b, b_names_a) = (names(&a) == b["id"].as_str().map(str::to_string), names(&b) == a["id"].as_str().map(str::to_string));
        assert!(a_names_b != b_names_a, "bulk {bulk}: exactly one of the two names the other: {a} {b}");
        assert!(names(&a).is_none() || names(&b).is_none(), "bulk {bulk}: a cycle of managers was written");
    }
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
    let targets = gates
        .iter()
        .map(|(name, gate)| {
            let target = ScimTarget::new(name, &gate.url, vec![DataType::OrgUnit]).with_token(&server().1);
            if *name == hr_core::conformance::NARROWED {
                target.with_fields(hr_core::conformance::narrowed())
            } else {
                target
            }
        })
        .collect();
    let scim = Arc::new(propagator(targets, &dir));
    run_all(&ScimHarness { scim, gates }, "OU-conformance").await;
}

/// What a [`Recorder`] saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// A Bulk request's operations.
    operations: usize,
    bytes: usize,
}

/// A proxy in front of one tenant that records every request it passes on,
/// and can announce other Bulk limits than the provider's, or refuse every
/// Bulk request (413), as directories set up otherwise would.
struct Recorder {
    url: String,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

#[derive(Clone)]
struct Relay {
    upstream: String,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    announce: Option<Value>,
    refuse_bulk: bool,
    http: reqwest::Client,
}

impl Recorder {
    async fn open(tenant: &str, announce: Option<Value>, refuse_bulk: bool) -> Self {
        let parsed = reqwest::Url::parse(tenant).unwrap();
        let upstream = format!("{}://{}:{}", parsed.scheme(), parsed.host_str().unwrap(), parsed.port().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{}", listener.local_addr().unwrap(), parsed.path());
        let seen = Arc::new(std::sync::Mutex::new(vec![]));
        let relay = Relay { upstream, seen: seen.clone(), announce, refuse_bulk, http: reqwest::Client::new() };
        let app = axum::Router::new().fallback(relay_request).with_state(relay);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn relay_request(
    axum::extract::State(relay): axum::extract::State<Relay>,
    method: reqwest::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let is_bulk = uri.path().ends_with("/Bulk");
    let operations = if is_bulk { serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["Operations"].as_array().map(Vec::len)).unwrap_or(0) } else { 0 };
    relay.seen.lock().unwrap().push(Seen { method: method.to_string(), path: path.clone(), operations, bytes: body.len() });
    let answer = |status: u16, body: Vec<u8>, etag: Option<axum::http::HeaderValue>| {
        let mut out = axum::response::Response::builder().status(status).header("content-type", "application/scim+json");
        if let Some(etag) = etag {
            out = out.header("etag", etag);
        }
        out.body(axum::body::Body::from(body)).unwrap()
    };
    if relay.refuse_bulk && is_bulk {
        let error = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "413", "detail": "no Bulk here"});
        return answer(413, error.to_string().into_bytes(), None);
    }
    let mut request = relay.http.request(method, format!("{}{path}", relay.upstream)).body(body.to_vec());
    for name in ["authorization", "content-type", "if-match", "accept"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.clone());
        }
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response.headers().get("etag").cloned();
    let mut bytes = response.bytes().await.unwrap().to_vec();
    if let (Some(announce), true) = (&relay.announce, uri.path().ends_with("/ServiceProviderConfig")) {
        let mut config: Value = serde_json::from_slice(&bytes).unwrap();
        config["bulk"] = announce.clone();
        bytes = config.to_string().into_bytes();
    }
    answer(status, bytes, etag)
}

/// A directory as a comparable picture: per User's `externalId`, what it
/// holds (its manager and Group by `externalId`, not by the directory's own ids).
async fn picture(admin: &Admin) -> std::collections::BTreeMap<String, Value> {
    let users = admin.all("/Users").await;
    let groups = admin.all("/Groups").await;
    let external = |id: &Value| users.iter().find(|u| u["id"] == *id).map(|u| u["externalId"].clone()).unwrap_or(Value::Null);
    let mut out = std::collections::BTreeMap::new();
    for user in &users {
        let member_of: Vec<&Value> =
            groups.iter().filter(|g| g["members"].as_array().is_some_and(|m| m.iter().any(|m| m["value"] == user["id"]))).map(|g| &g["externalId"]).collect();
        let picture = json!({
            "userName": user["userName"], "displayName": user["displayName"], "active": user["active"],
            "department": user[ENTERPRISE]["department"], "manager": external(&user[ENTERPRISE]["manager"]["value"]), "groups": member_of,
        });
        out.insert(user["externalId"].as_str().unwrap_or("(by hand)").to_string(), picture);
    }
    out
}

/// 120 people whose managers mostly come after them in the batch, and six
/// org units: a directory announcing Bulk (here at most 25 operations and
/// 20,000 bytes a request) gets them in Bulk requests within those limits,
/// and ends exactly as one written a request at a time. Then a User deleted
/// by hand is written again (found gone by reading back, or answered 404
/// in Bulk), a hand-made User with a new person's userName (409 in Bulk)
/// is adopted, and moves reach both alike.
#[tokio::test]
async fn a_batch_travels_in_bulk_requests_within_the_directorys_limits_and_lands_as_one_written_one_by_one() {
    let limits = json!({"supported": true, "maxOperations": 25, "maxPayloadSize": 20000});
    let (bulk_tenant, single_tenant) = (tenant(), tenant());
    let bulk = Recorder::open(&bulk_tenant, Some(limits), false).await;
    let single = Recorder::open(&single_tenant, None, false).await;
    let dir = tempfile::tempdir().unwrap();
    let scim = propagator(vec![directory("bulk", &bulk.url), directory("single", &single.url).with_bulk(false)], &dir);
    let units: Vec<OrgUnit> = (1..=6).map(|i| unit(&format!("A-D{i}"))).collect();
    let people: Vec<Employee> = (1..=120)
        .map(|i| employee(&format!("A-{i:03}"), (i < 120).then(|| format!("A-{:03}", 120 - (120 - i) / 10)).as_deref(), &format!("A-D{}", i % 6 + 1)))
        .collect();
    let mut batch: Vec<ChangeEnvelope> = people.iter().map(|e| up(e, 1)).collect();
    batch.extend(units.iter().map(|u| up_unit(u, 1)));
    let applied = scim.propagate(&batch).await.unwrap().applied(std::time::Duration::from_secs(1)).await.unwrap();
    assert_eq!((applied.total("bulk"), applied.total("single")), (126, 126));

    let (bulk_admin, single_admin) = (Admin::of(&bulk_tenant), Admin::of(&single_tenant));
    let written = picture(&bulk_admin).await;
    assert_eq!(written.len(), 120);
    assert_eq!(written, picture(&single_admin).await, "Bulk and one-by-one directories differ");
    assert_eq!(written["A-001"]["manager"], "A-109", "{:?}", written["A-001"]);
    let bulk_seen = bulk.seen();
    let bulk_requests: Vec<&Seen> = bulk_seen.iter().filter(|s| s.path.ends_with("/Bulk")).collect();
    assert!(bulk_requests.iter().all(|s| s.operations <= 25 && s.bytes <= 20000), "{bulk_requests:?}");
    assert_eq!(bulk_requests.iter().map(|s| s.operations).sum::<usize>(), 126 + 119 + 6, "creates, then managers, then one PATCH per Group");
    assert_eq!(bulk_seen.len(), 1 + bulk_requests.len(), "all but /ServiceProviderConfig in Bulk: {bulk_seen:?}");
    let single_seen = single.seen();
    assert!(single_seen.iter().all(|s| !s.path.ends_with("/Bulk")) && single_seen.len() > 250, "{} requests", single_seen.len());

    // The same hand edits in both directories, then the same changes.
    let newcomer = employee("A-200", Some("A-001"), "A-D1");
    for admin in [&bulk_admin, &single_admin] {
        let gone = admin.user("A-050").await.unwrap();
        assert_eq!(admin.send(reqwest::Method::DELETE, &format!("/Users/{}", gone["id"].as_str().unwrap()), None).await.0, 204);
        let by_hand = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a-200@a.example", "displayName": "by hand"});
        assert_eq!(admin.send(reqwest::Method::POST, "/Users", Some(by_hand)).await.0, 201);
    }
    // Read back, as the hub does before it repairs: the deleted User is found gone.
    for target in ["bulk", "single"] {
        assert_eq!(held_in(&scim, target).await.len(), 119, "{target}");
    }
    // Deleted after that: its change (a move) is a PATCH the directory answers 404 in Bulk, then a create.
    for admin in [&bulk_admin, &single_admin] {
        let gone = admin.user("A-003").await.unwrap();
        assert_eq!(admin.send(reqwest::Method::DELETE, &format!("/Users/{}", gone["id"].as_str().unwrap()), None).await.0, 204);
    }
    let moved: Vec<Employee> = people[..10].iter().map(|e| Employee { org_unit: "A-D6".into(), ..e.clone() }).collect();
    let mut changes: Vec<ChangeEnvelope> = moved.iter().map(|e| up(e, 2)).collect();
    changes.push(up(&people[49], 2));
    changes.push(up(&newcomer, 1));
    scim.propagate(&changes).await.unwrap();
    let written = picture(&bulk_admin).await;
    assert_eq!(written.len(), 121, "the hand-made User is adopted, not duplicated");
    assert_eq!(written["A-050"]["displayName"], "사원 A-050", "the User deleted by hand is written again");
    assert_eq!(written["A-200"]["manager"], "A-001");
    assert_eq!(written["A-001"]["groups"], json!(["A-D6"]));
    assert_eq!(written["A-003"]["groups"], json!(["A-D6"]), "the User deleted before its move is written again, in its new Group");
    assert_eq!(written, picture(&single_admin).await, "Bulk and one-by-one directories differ after the changes");
    assert_eq!(held_in(&scim, "bulk").await, held_in(&scim, "single").await, "reading back tells the same of both");
}

/// A directory that announces Bulk but refuses the requests (413) gets
/// every change on its own instead.
#[tokio::test]
async fn a_directory_refusing_bulk_requests_gets_each_change_on_its_own() {
    let url = tenant();
    let refusing = Recorder::open(&url, None, true).await;
    let dir = tempfile::tempdir().unwrap();
    let scim = propagator(vec![directory("directory", &refusing.url)], &dir);
    let people: Vec<Employee> = (1..=5).map(|i| employee(&format!("A-{i}"), None, "A-D1")).collect();
    scim.propagate(&people.iter().map(|e| up(e, 1)).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(picture(&Admin::of(&url)).await.len(), 5);
    let seen = refusing.seen();
    assert!(seen.iter().any(|s| s.path.ends_with("/Bulk")), "Bulk was tried: {seen:?}");
    assert_eq!(seen.iter().filter(|s| s.method == "POST" && s.path.ends_with("/Users")).count(), 5, "{seen:?}");
}

async fn held_in(scim: &ScimPropagator, target: &str) -> Vec<DigestEntry> {
    let mut entries = scim.entries(target, DataType::Employee, &hr_core::ALL_BUCKETS).await.unwrap();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries
}
