//! The hub's real-time API and "newer wins", in one process over a
//! recording transport: what each call sends, what it refuses (and that a
//! refused call sends nothing), and what later periodic syncs do with keys
//! changed in real time. The multi-process form with the real broker is
//! `tests/realtime_hub.rs`.
use chrono::{DateTime, Utc};
use hr_sync::hr_core::{
    ChangeEnvelope, Company, DataType, Employee, EmployeeStatus, HeldBack, Ledger, MergedState, OrgUnit, PermissionGrant, PropagateError, Propagator, Receipt,
};
use hr_sync::hr_hub::{hub_api, ApiConfig, RealtimeError, SyncOutcome};
use hr_sync::hr_transport_rest::{serve_with_limits, ConnectionLimits};
use hr_sync::{Hub, HubConfig};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
[routes]
employee = "recorder"
org_unit = "recorder"
permission = "recorder"

[targets.erp]
data_types = ["employee", "org_unit", "permission"]
"#;

const TOKEN: &str = "realtime-api-test-token-0123456789ab";

/// A transport that keeps every change it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<ChangeEnvelope>>);

#[async_trait::async_trait]
impl Propagator for Recorder {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.0.lock().unwrap().extend(batch.iter().cloned());
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        BTreeMap::from([("erp".to_string(), vec![DataType::Employee, DataType::OrgUnit, DataType::Permission])])
    }
}

impl Recorder {
    /// The changes sent since the last call: (data type, key) -> payload (`None`: a delete).
    fn take(&self) -> BTreeMap<(DataType, String), Option<serde_json::Value>> {
        let sent = std::mem::take(&mut *self.0.lock().unwrap());
        sent.iter().map(|c| ((c.data_type, c.key.clone()), c.payload_json().map(|p| serde_json::from_str(p).unwrap()))).collect()
    }

    fn grants(&self) -> BTreeMap<String, bool> {
        self.take().into_iter().filter(|((t, _), _)| *t == DataType::Permission).map(|((_, k), p)| (k, p.unwrap()["granted"].as_bool().unwrap())).collect()
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn employee(id: &str, source_ids: &[&str], status: EmployeeStatus) -> Employee {
    Employee {
        id: id.into(),
        source_ids: source_ids.iter().map(|&s| s.into()).collect(),
        company: Company::A,
        name: format!("name of {id}").into(),
        name_en: None,
        email: None,
        phone: None,
        birth_date: None,
        org_unit: "A-OU1".into(),
        grade: "G3".into(),
        status,
        hire_date: "2020-01-01".parse().unwrap(),
        termination_date: None,
        manager: None,
        updated_at: at("2026-10-01T00:00:00Z"),
    }
}

fn unit(id: &str) -> OrgUnit {
    OrgUnit { id: id.into(), company: Some(Company::A), name: id.into(), parent: None, leader: None, updated_at: None }
}

fn grant(employee: &str, role: &str, granted: bool, when: &str) -> PermissionGrant {
    PermissionGrant { employee: employee.into(), system: "erp".into(), role: role.into(), granted, expires: None, at: at(when) }
}

/// The export, made at `exported`: two current employees (A-2 also known
/// as B-77), a leaver, two org units, ten standing grants of A-2's, and `grants`.
fn export(exported: &str, grants: &[PermissionGrant]) -> MergedState {
    let mut state = MergedState { exported_at: Some(at(exported)), ..MergedState::default() };
    for e in [
        employee("A-1", &["A-1"], EmployeeStatus::Active),
        employee("A-2", &["A-2", "B-77"], EmployeeStatus::Active),
        employee("A-3", &["A-3"], EmployeeStatus::Terminated),
    ] {
        state.employees.insert(e.id.clone(), e);
    }
    for u in [unit("A-OU1"), unit("A-OU2")] {
        state.org_units.insert(u.id.clone(), u);
    }
    // Grants every export lists: one the newer export drops stays under the delete guard's share.
    let standing = (0..10).map(|i| grant("A-2", &format!("standing-{i}"), true, "2026-10-01T00:00:00Z"));
    for g in grants.iter().cloned().chain(standing) {
        state.permissions.insert(g.key().into(), g);
    }
    state
}

struct Running {
    hub: Arc<tokio::sync::Mutex<Hub>>,
    recorder: Arc<Recorder>,
    url: String,
    client: reqwest::Client,
}

impl Running {
    async fn start() -> Running {
        Running::start_with(ApiConfig::new(TOKEN).unwrap()).await
    }

    async fn start_with(api: ApiConfig) -> Running {
        Running::start_configured(api, CONFIG).await
    }

    async fn start_configured(api: ApiConfig, config: &str) -> Running {
        let recorder = Arc::new(Recorder::default());
        let config = HubConfig::from_toml_str(config, "hub.toml").unwrap();
        let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", recorder.clone() as Arc<dyn Propagator>)]).unwrap();
        hub.sync_with(&export("2026-10-25T00:00:00Z", &[grant("A-1", "approver", true, "2026-10-20T00:00:00Z")]), &HeldBack::default()).await.unwrap();
        recorder.take();
        let hub = Arc::new(tokio::sync::Mutex::new(hub));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = hub_api(hub.clone(), api);
        tokio::spawn(serve_with_limits(listener, app, ConnectionLimits::default()));
        Running { hub, recorder, url, client: reqwest::Client::new() }
    }

    async fn post_permissions(&self, body: &str) -> (StatusCode, serde_json::Value) {
        let response = self.client.post(format!("{}/hr/v1/permissions", self.url)).bearer_auth(TOKEN).body(body.to_string()).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn patch_employee(&self, id: &str, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
        let response = self.client.patch(format!("{}/hr/v1/employees/{id}", self.url)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn sync(&self, state: &MergedState) -> SyncOutcome {
        self.hub.lock().await.sync_with(state, &HeldBack::default()).await.unwrap()
    }
}

fn line(employee: &str, role: &str, op: &str, when: &str) -> String {
    serde_json::json!({"employee": employee, "system": "erp", "role": role, "op": op, "at": when}).to_string()
}

#[tokio::test]
async fn a_call_without_the_token_gets_401_and_sends_nothing() {
    let hub = Running::start().await;
    for token in [None, Some("wrong")] {
        let mut request = hub.client.post(format!("{}/hr/v1/permissions", hub.url)).body(line("A-1", "viewer", "grant", "2026-10-26T10:00:00Z"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let response = hub.client.patch(format!("{}/hr/v1/employees/A-1", hub.url)).json(&serde_json::json!({"at": "2026-10-26T10:00:00Z"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(hub.recorder.take().is_empty());
    let openapi: serde_json::Value = hub.client.get(format!("{}/hr/v1/openapi.json", hub.url)).send().await.unwrap().json().await.unwrap();
    assert!(openapi["paths"]["/hr/v1/permissions"]["post"].is_object() && openapi["paths"]["/hr/v1/employees/{id}"]["patch"].is_object());
}

#[tokio::test]
async fn bad_lines_get_400_naming_line_and_field_and_nothing_of_the_request_is_sent() {
    let hub = Running::start().await;
    let body = [
        line("A-1", "viewer", "grant", "2026-10-26T10:00:00Z"),
        r#"{"employee": "A-1", "system": "erp", "role": "viewer", "op": "grant"}"#.to_string(),
        line("A-404", "viewer", "grant", "2026-10-26T10:00:00Z"),
        line("A-3", "viewer", "grant", "2026-10-26T10:00:00Z"),
        "not json".to_string(),
    ]
    .join("\n");
    let (status, answer) = hub.post_permissions(&body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let problems: Vec<(u64, String)> =
        answer["problems"].as_array().unwrap().iter().map(|p| (p["line"].as_u64().unwrap(), p["detail"].as_str().unwrap().to_string())).collect();
    assert_eq!(problems.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [2, 3, 4, 5], "{answer}");
    assert!(problems[0].1.contains("`at`"), "{problems:?}");
    assert!(problems[1].1.contains("`employee`") && problems[1].1.contains("A-404"), "{problems:?}");
    assert!(problems[2].1.contains("has left"), "{problems:?}");
    assert!(problems[3].1.contains("not valid JSON"), "{problems:?}");
    assert!(hub.recorder.take().is_empty(), "a refused request sent something");

    let (status, answer) = hub.post_permissions("\n\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // A time in the future would outrank every later change of the key; a system the hub does not serve receives nothing.
    let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let body = format!(
        "{}\n{}",
        line("A-1", "viewer", "grant", &future),
        serde_json::json!({"employee": "A-1", "system": "hrx", "role": "viewer", "op": "grant", "at": "2026-10-26T10:00:00Z"})
    );
    let (status, answer) = hub.post_permissions(&body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("line 1: field `at`") && message.contains("line 2: field `system`: hrx"), "{answer}");
    let (status, answer) = hub.patch_employee("A-1", serde_json::json!({"at": future, "grade": "G9"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(hub.recorder.take().is_empty(), "a refused request sent something");
}

#[tokio::test]
async fn the_api_refuses_a_blank_token_and_answers_503_until_the_first_run() {
    assert!(ApiConfig::new("").is_err() && ApiConfig::new("  ").is_err(), "a blank token would admit callers presenting none");
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    let recorder: Arc<dyn Propagator> = Arc::new(Recorder::default());
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", recorder)]).unwrap();
    let refused = hub.apply_permission_lines(&line("A-1", "viewer", "grant", "2026-10-26T10:00:00Z"), "test").await.unwrap_err();
    assert!(matches!(refused, RealtimeError::NotReady), "{refused}");
}

#[tokio::test]
async fn a_revocation_posted_in_real_time_stands_through_syncs_of_an_older_export_until_a_newer_one_says_otherwise() {
    let hub = Running::start().await;
    let listed = grant("A-1", "approver", true, "2026-10-20T00:00:00Z");
    let older_export = export("2026-10-25T00:00:00Z", std::slice::from_ref(&listed));

    // A revocation, and a grant to A-2 named by a source id, in one call.
    let body = format!("{}\n{}", line("A-1", "approver", "revoke", "2026-10-26T10:00:00Z"), line("B-77", "viewer", "grant", "2026-10-26T10:00:00Z"));
    let (status, answer) = hub.post_permissions(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["changes"], 2);
    assert_eq!(hub.recorder.grants(), BTreeMap::from([("A-1:erp:approver".into(), false), ("A-2:erp:viewer".into(), true)]));

    // Older than what the hub now holds for the key: refused.
    let (status, answer) = hub.post_permissions(&line("A-1", "approver", "grant", "2026-10-26T09:00:00Z")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(hub.recorder.take().is_empty());

    // Two periodic syncs of the export made before the calls: the revocation
    // and the real-time grant both stand, and are reported.
    for run in 0..2 {
        let outcome = hub.sync(&older_export).await;
        assert_eq!(hub.recorder.take(), BTreeMap::new(), "run {run} undid a real-time change");
        assert_eq!(outcome.source_older.get(&DataType::Permission).cloned().unwrap_or_default(), ["A-1:erp:approver", "A-2:erp:viewer"], "run {run}");
    }

    // A newer export grants A-1 again and no longer lists A-2's grant: it wins.
    let regranted = grant("A-1", "approver", true, "2026-10-27T08:00:00Z");
    let outcome = hub.sync(&export("2026-10-27T09:00:00Z", &[regranted])).await;
    assert!(outcome.source_older.is_empty(), "{outcome:?}");
    let sent = hub.recorder.take();
    assert_eq!(sent[&(DataType::Permission, "A-1:erp:approver".into())].as_ref().unwrap()["granted"], true);
    assert_eq!(sent[&(DataType::Permission, "A-2:erp:viewer".into())], None, "the newer export deletes the grant it no longer lists");
    let again = hub.sync(&export("2026-10-27T09:00:00Z", &[grant("A-1", "approver", true, "2026-10-27T08:00:00Z")])).await;
    assert_eq!(again.sent, 0, "the settled keys are the source's again");
}

#[tokio::test]
async fn an_employee_change_is_sent_at_once_and_a_termination_revokes_the_persons_grants() {
    let hub = Running::start().await;

    let (status, answer) = hub.patch_employee("A-2", serde_json::json!({"at": "2026-10-26T10:00:00Z", "org_unit": "A-OU2", "grade": "G4"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let sent = hub.recorder.take();
    let moved = sent[&(DataType::Employee, "A-2".into())].as_ref().unwrap();
    assert_eq!((moved["org_unit"].as_str(), moved["grade"].as_str(), moved["updated_at"].as_str()), (Some("A-OU2"), Some("G4"), Some("2026-10-26T10:00:00Z")));
    assert_eq!(sent.len(), 1);

    // The transfer stands through a sync of the export made before it.
    let outcome = hub.sync(&export("2026-10-25T00:00:00Z", &[grant("A-1", "approver", true, "2026-10-20T00:00:00Z")])).await;
    assert_eq!(outcome.sent, 0, "{:?}", hub.recorder.take());
    assert_eq!(outcome.source_older[&DataType::Employee], ["A-2"]);

    for (body, status, named) in [
        (serde_json::json!({"at": "2026-10-26T11:00:00Z", "org_unit": "A-OU404"}), StatusCode::BAD_REQUEST, "`org_unit`"),
        (serde_json::json!({"at": "2026-10-26T11:00:00Z", "manager": "A-2"}), StatusCode::BAD_REQUEST, "own manager"),
        (serde_json::json!({"at": "2026-10-26T11:00:00Z", "salary": 1}), StatusCode::BAD_REQUEST, "salary"),
        (serde_json::json!({"at": "2026-10-26T09:00:00Z", "grade": "G5"}), StatusCode::CONFLICT, "before the one"),
    ] {
        let (got, answer) = hub.patch_employee("B-77", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(named), "{body}: {answer}");
    }
    let (status, _) = hub.patch_employee("A-404", serde_json::json!({"at": "2026-10-26T11:00:00Z", "grade": "G5"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(hub.recorder.take().is_empty(), "a refused change sent something");

    // A leaver: the employee record says terminated and every grant is revoked.
    let (status, answer) = hub.patch_employee("A-1", serde_json::json!({"at": "2026-10-26T12:00:00Z", "status": "terminated"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let sent = hub.recorder.take();
    let left = sent[&(DataType::Employee, "A-1".into())].as_ref().unwrap();
    assert_eq!((left["status"].as_str(), left["termination_date"].as_str()), (Some("terminated"), Some("2026-10-26")));
    assert_eq!(sent[&(DataType::Permission, "A-1:erp:approver".into())].as_ref().unwrap()["granted"], false);
    assert_eq!(answer["changes"], 2);

    // And no grant reaches the leaver afterwards: not in real time, and not
    // from an export that still has them active and lists a grant made before
    // the termination.
    let (status, answer) = hub.post_permissions(&line("A-1", "viewer", "grant", "2026-10-26T13:00:00Z")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let late_grant = grant("A-1", "auditor", true, "2026-10-26T11:00:00Z");
    hub.sync(&export("2026-10-26T11:30:00Z", &[grant("A-1", "approver", true, "2026-10-20T00:00:00Z"), late_grant])).await;
    assert_eq!(hub.recorder.grants().get("A-1:erp:auditor"), Some(&false), "the export's grant to the leaver went out in force");
}

#[tokio::test]
async fn a_body_that_trickles_or_runs_over_the_limit_is_refused_and_nothing_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut api = ApiConfig::new(TOKEN).unwrap();
    api.body_limit = 1 << 10;
    api.body_read_timeout = std::time::Duration::from_millis(300);
    let hub = Running::start_with(api).await;
    let (status, body) = hub.post_permissions(&"x".repeat(2 << 10)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")), "{body}");

    // A head announcing 100 bytes, then 10 of them, then silence.
    let address = hub.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("POST /hr/v1/permissions HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"{\"employee").await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer)).await.expect("answered in time").unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains(r#""error":"request_timeout""#), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(hub.recorder.take().is_empty());
}

/// Each caller has a token of its own and may do only what it is given;
/// its name is the origin of its changes and is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_may_do_only_what_they_are_given_and_are_named_in_the_audit_log() {
    use hr_sync::hr_hub::CallerRight;
    let (portal, lead) = ("portal-token-0123456789abcdef0123456789", "lead-token-0123456789abcdef0123456789");
    let api = ApiConfig::for_callers([
        ("hr-portal", portal, vec![CallerRight::Permissions, CallerRight::Employees]),
        ("hr-lead", lead, vec![CallerRight::Read, CallerRight::Approve]),
    ])
    .unwrap();
    let running = Running::start_with(api).await;
    let call = |method: reqwest::Method, path: &str, token: &str, body: String| {
        let request = running.client.request(method, format!("{}{path}", running.url)).bearer_auth(token).body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let line = serde_json::json!({"employee": "A-1", "system": "erp", "role": "portal-viewer", "op": "grant", "expires": null, "at": Utc::now().to_rfc3339()})
        .to_string();

    // The lead may not grant; the portal may, and its change carries its name.
    let (status, body) = call(reqwest::Method::POST, "/hr/v1/permissions", lead, line.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("hr-lead") && body.contains("permissions"), "{body}");
    assert!(running.recorder.take().is_empty(), "a forbidden call sent something");
    let (status, body) = call(reqwest::Method::POST, "/hr/v1/permissions", portal, line).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = std::mem::take(&mut *running.recorder.0.lock().unwrap());
    assert_eq!(sent.iter().map(|c| c.origin.as_str()).collect::<Vec<_>>(), ["hr-portal"], "the change's origin is its caller");

    // The portal may neither read the plan nor approve it; the lead may, for the last plan only.
    let plan_id = running.hub.lock().await.last_plan().unwrap()["plan_id"].as_str().unwrap().to_string();
    assert_eq!(call(reqwest::Method::GET, "/hr/v1/plan", portal, String::new()).await.0, StatusCode::FORBIDDEN);
    let (status, body) = call(reqwest::Method::GET, "/hr/v1/plan", lead, String::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&plan_id), "{body}");
    let approve = |id: &str| format!("/hr/v1/plans/{id}/approve");
    assert_eq!(call(reqwest::Method::POST, &approve(&plan_id), portal, String::new()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(reqwest::Method::POST, &approve("0123456789abcdef0123456789abcdef"), lead, String::new()).await.0, StatusCode::CONFLICT);
    let (status, body) = call(reqwest::Method::POST, &approve(&plan_id), lead, String::new()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(call(reqwest::Method::POST, "/hr/v1/permissions", "no-such-token", String::new()).await.0, StatusCode::UNAUTHORIZED);

    let hub = running.hub.lock().await;
    let audit = hub.ledger().audit_entries(None).unwrap();
    let by =
        |actor: &str, action: &str| audit.iter().filter(|e| e.actor == actor && e.action == action).map(|e| e.detail["outcome"].clone()).collect::<Vec<_>>();
    assert_eq!(by("hr-portal", "realtime"), [serde_json::json!("sent")], "{audit:#?}");
    assert_eq!(by("hr-lead", "approve"), [serde_json::json!("refused"), serde_json::json!("approved")], "{audit:#?}");
    assert!(audit.iter().any(|e| e.actor == "hub" && e.action == "run" && e.detail["outcome"] == "sent"), "{audit:#?}");
}

/// A held run sends nothing; an approval given ahead (the API's) lets the
/// next run of exactly that plan go, once; an approval of another plan lapses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_goes_once_its_plan_is_approved_and_only_that_plan() {
    let recorder = Arc::new(Recorder::default());
    let config = HubConfig::from_toml_str(&format!("{CONFIG}\n[safety]\nmin_records = 0\n"), "hub.toml").unwrap();
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", recorder.clone() as Arc<dyn Propagator>)]).unwrap();
    hub.sync_with(&export("2026-10-25T00:00:00Z", &[]), &HeldBack::default()).await.unwrap();
    recorder.take();

    let mut leaving = export("2026-10-26T00:00:00Z", &[]);
    let a1 = leaving.employees.get_mut("A-1").unwrap();
    a1.status = EmployeeStatus::Terminated;
    a1.updated_at = at("2026-10-26T00:00:00Z");
    let held = match hub.sync_with(&leaving, &HeldBack::default()).await {
        Err(hr_sync::HubError::Held { plan_id, reasons }) => {
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert_eq!(reasons[0].to_string(), "erp/employee: 1 terminations of 3 records, over the limit of 5%");
            plan_id
        }
        other => panic!("a run terminating a third of erp's employees went: {other:?}"),
    };
    assert!(recorder.take().is_empty(), "a held run sent something");
    assert_eq!(hub.last_plan().unwrap()["plan_id"], held.as_str());

    // An approval of another plan is refused; of this one, the next run goes, once.
    assert!(hub.approve("0123456789abcdef0123456789abcdef", "hr-lead").is_err());
    hub.approve(&held, "hr-lead").unwrap();
    hub.sync_with(&leaving, &HeldBack::default()).await.expect("the approved plan goes");
    let sent = recorder.take();
    assert_eq!(sent[&(DataType::Employee, "A-1".to_string())].as_ref().unwrap()["status"], "terminated");

    // The approval is used up: another large change is held again; an approval of a plan that then changes lapses.
    let mut more = leaving.clone();
    let a2 = more.employees.get_mut("A-2").unwrap();
    a2.status = EmployeeStatus::Terminated;
    a2.updated_at = at("2026-10-27T00:00:00Z");
    let plan = match hub.sync_with(&more, &HeldBack::default()).await {
        Err(hr_sync::HubError::Held { plan_id, .. }) => plan_id,
        other => panic!("the next large run went: {other:?}"),
    };
    hub.approve(&plan, "hr-lead").unwrap();
    more.employees.get_mut("A-2").unwrap().grade = "G9".into();
    assert!(matches!(hub.sync_with(&more, &HeldBack::default()).await, Err(hr_sync::HubError::Held { .. })), "an approval of another plan let it go");
    assert!(recorder.take().is_empty());
    let audit = hub.ledger().audit_entries(None).unwrap();
    assert!(audit.iter().any(|e| e.action == "approve" && e.detail["outcome"] == "refused" && e.detail["plan_id"] == plan.as_str()), "{audit:#?}");
}

/// A system that lists its roles gets no grant of another: 400 over the
/// API, naming the line and field; left out of a periodic run and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_the_system_does_not_list_is_refused_on_every_path() {
    let recorder = Arc::new(Recorder::default());
    let config = HubConfig::from_toml_str(&CONFIG.replace("[targets.erp]", "[targets.erp]\nroles = [\"approver\", \"viewer\"]"), "hub.toml").unwrap();
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", recorder.clone() as Arc<dyn Propagator>)]).unwrap();
    let mut export =
        export("2026-10-25T00:00:00Z", &[grant("A-1", "approver", true, "2026-10-20T00:00:00Z"), grant("A-1", "superuser", true, "2026-10-20T00:00:00Z")]);
    export.permissions.retain(|k, _| !k.contains("standing"));
    let outcome = hub.sync_with(&export, &HeldBack::default()).await.unwrap();
    assert_eq!(outcome.rejected.len(), 1, "{:?}", outcome.rejected);
    assert_eq!(outcome.rejected[0].key, "A-1:erp:superuser");
    assert!(outcome.rejected[0].problem.contains("not one of erp's roles (approver, viewer)"), "{}", outcome.rejected[0].problem);
    assert_eq!(recorder.grants().into_keys().collect::<Vec<_>>(), ["A-1:erp:approver"], "the unlisted role was sent");

    let refused = hub.apply_permission_lines(&line("A-2", "superuser", "grant", "2026-10-26T10:00:00Z"), "test").await.unwrap_err();
    match refused {
        RealtimeError::Invalid(problems) => {
            assert_eq!(problems.len(), 1);
            assert!(problems[0].to_string().contains("line 1") && problems[0].to_string().contains("field `role`"), "{}", problems[0]);
        }
        other => panic!("an unlisted role over the API: {other:?}"),
    }
    assert!(recorder.take().is_empty(), "a refused call sent something");
}

/// A possible duplicate opens a case any reader may list; only a caller
/// with `review` decides it, once; "same" is remembered for the next merge
/// to join the two (the join itself: `hr-core/tests/last_known_good.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_case_is_listed_and_decided_over_the_api_by_a_reviewer_only() {
    use hr_sync::hr_core::{Conflict, ConflictKind};
    use hr_sync::hr_hub::CallerRight;
    let (reader, reviewer) = ("reader-token-0123456789abcdef0123456789", "reviewer-token-0123456789abcdef012345678");
    let api =
        ApiConfig::for_callers([("dashboard", reader, vec![CallerRight::Read]), ("hr-lead", reviewer, vec![CallerRight::Read, CallerRight::Review])]).unwrap();
    let running = Running::start_with(api).await;
    let state = export("2026-10-25T00:00:00Z", &[]);
    let pair = Conflict { kind: ConflictKind::PossibleDuplicatePerson, ids: vec!["A-2".into(), "A-1".into()], detail: "same name and birth date".into() };
    assert_eq!(running.hub.lock().await.open_cases(&[pair], &state).unwrap(), 1);
    let call = |method: reqwest::Method, path: String, token: &str, body: &str| {
        let request = running.client.request(method, format!("{}{path}", running.url)).bearer_auth(token).body(body.to_string());
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };

    let (status, cases) = call(reqwest::Method::GET, "/hr/v1/cases".into(), reader, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cases.as_array().unwrap().len(), 1, "{cases}");
    assert_eq!(cases[0]["employees"], serde_json::json!(["A-1", "A-2"]));
    assert_eq!(cases[0]["records"][1]["source_ids"], serde_json::json!(["A-2", "B-77"]));
    let case = format!("/hr/v1/cases/{}", cases[0]["id"].as_str().unwrap());
    let same = r#"{"decision": "same"}"#;
    assert_eq!(call(reqwest::Method::POST, case.clone(), reader, same).await.0, StatusCode::FORBIDDEN, "a reader decided");
    assert_eq!(call(reqwest::Method::POST, case.clone(), reviewer, r#"{"decision": "maybe"}"#).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(reqwest::Method::POST, "/hr/v1/cases/case-000000000000".into(), reviewer, same).await.0, StatusCode::NOT_FOUND);
    let (status, decided) = call(reqwest::Method::POST, case.clone(), reviewer, same).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!((decided["decision"].as_str(), decided["decided_by"].as_str()), (Some("same"), Some("hr-lead")));
    assert_eq!(call(reqwest::Method::POST, case, reviewer, r#"{"decision": "different"}"#).await.0, StatusCode::CONFLICT, "decided twice");
    let (_, open) = call(reqwest::Method::GET, "/hr/v1/cases".into(), reader, "").await;
    assert_eq!(open, serde_json::json!([]), "a decided case is not open");
    let (_, all) = call(reqwest::Method::GET, "/hr/v1/cases?all=true".into(), reader, "").await;
    assert_eq!(all.as_array().unwrap().len(), 1);

    let hub = running.hub.lock().await;
    assert_eq!(hub.ledger().identities().unwrap().joined_into("A-2"), Some("A-1"), "the next merge joins A-2 into A-1");
    let audit = hub.ledger().audit_entries(None).unwrap();
    assert!(audit.iter().any(|e| e.actor == "hr-lead" && e.action == "decide" && e.detail["decision"] == "same"), "{audit:#?}");
}

/// A console session: the cookie a sign-in set, and the CSRF token its pages carry.
struct ConsoleSession {
    cookie: String,
    csrf: String,
}

const LEAD: &str = "console-lead-token-0123456789abcdef0123";
const VIEWER: &str = "console-viewer-token-0123456789abcdef01";
const PORTAL: &str = "console-portal-token-0123456789abcdef01";

/// A hub whose last run is held (a third of the employees terminated), with
/// an open case whose name would be markup if not escaped; callers hr-lead
/// (read, approve, review), viewer (read) and hr-portal (permissions).
/// Returns it, a client that follows no redirect, the held plan and the export.
async fn held_console() -> (Running, reqwest::Client, String, MergedState) {
    use hr_sync::hr_core::{Conflict, ConflictKind};
    use hr_sync::hr_hub::CallerRight;
    let api = ApiConfig::for_callers([
        ("hr-lead", LEAD, vec![CallerRight::Read, CallerRight::Approve, CallerRight::Review]),
        ("viewer", VIEWER, vec![CallerRight::Read]),
        ("hr-portal", PORTAL, vec![CallerRight::Permissions]),
    ])
    .unwrap();
    let running = Running::start_configured(api, &format!("{CONFIG}\n[safety]\nmin_records = 0\n")).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut leaving = export("2026-10-26T00:00:00Z", &[]);
    let a1 = leaving.employees.get_mut("A-1").unwrap();
    a1.status = EmployeeStatus::Terminated;
    a1.updated_at = at("2026-10-26T00:00:00Z");
    leaving.employees.get_mut("A-2").unwrap().name = "<script>alert(1)</script>".into();
    let plan_id = {
        let mut hub = running.hub.lock().await;
        let plan_id = match hub.sync_with(&leaving, &HeldBack::default()).await {
            Err(hr_sync::HubError::Held { plan_id, .. }) => plan_id,
            other => panic!("the run terminating a third went: {other:?}"),
        };
        let pair = Conflict { kind: ConflictKind::PossibleDuplicatePerson, ids: vec!["A-1".into(), "A-2".into()], detail: "same name and birth date".into() };
        assert_eq!(hub.open_cases(&[pair], &leaving).unwrap(), 1);
        plan_id
    };
    running.recorder.take();
    (running, client, plan_id, leaving)
}

/// Signs in to the console at `base` with `token`; checks the cookie's and
/// the page's protections; returns the session and the page.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> (ConsoleSession, String) {
    let response = client.post(format!("{base}/ui/login")).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client.get(format!("{base}/ui")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let body = page.text().await.unwrap();
    let csrf = body.split("name=\"csrf\" value=\"").nth(1).expect("the page's forms carry the CSRF token").split('"').next().unwrap().to_string();
    (ConsoleSession { cookie, csrf }, body)
}

/// The operator console (`/ui`): a browser signs in with a caller's token
/// and gets an `HttpOnly`, `SameSite=Strict` session cookie; the page shows
/// the held plan, escaped; approving needs the session's CSRF token and
/// the `approve` right; a bearer token works without a session; signing
/// out ends the session. (The same in a real browser: `tests/console.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_approves_a_held_plan_only_for_a_signed_in_approver_with_the_sessions_csrf_token() {
    let (running, client, plan_id, leaving) = held_console().await;
    let url = |path: &str| format!("{}{path}", running.url);

    // No session: to the sign-in page; a wrong token, or a caller without `read`, does not sign in.
    let response = client.get(url("/ui")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/ui/login");
    let attempt = |token: &str| client.post(url("/ui/login")).form(&[("token", token)]).send();
    assert_eq!(attempt("console-wrong-token-0123456789abcdef012").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(attempt(PORTAL).await.unwrap().status(), StatusCode::FORBIDDEN);
    let (lead, viewer) = (LEAD, VIEWER);
    let open = |token: &'static str| sign_in(&client, &running.url, token);
    let (session, page) = open(lead).await;
    assert!(page.contains(&format!("Held for approval: plan <code>{plan_id}</code>")), "{page}");
    assert!(page.contains("erp") && page.contains("terminations") && page.contains("Approve this plan"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>"), "a name reached the page unescaped");
    assert!(page.contains("Same person") && page.contains("Different people"), "{page}");

    // A form without the session's CSRF token (another site's) does nothing, even with the cookie.
    let approve = format!("/ui/plans/{plan_id}/approve");
    let post = |path: &str, cookie: &str, fields: &[(&str, &str)]| client.post(url(path)).header("cookie", cookie).form(fields).send();
    assert_eq!(post(&approve, &session.cookie, &[]).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(post(&approve, &session.cookie, &[("csrf", "0".repeat(64).as_str())]).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(running.hub.lock().await.pending_approval(), None, "a forged form approved the plan");

    // A viewer sees the plan but may not approve it.
    let (viewing, page) = open(viewer).await;
    assert!(page.contains("may not approve") && !page.contains("Approve this plan"), "{page}");
    let refused = post(&approve, &viewing.cookie, &[("csrf", &viewing.csrf)]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    let page = client.get(url("/ui")).header("cookie", &viewing.cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Caller viewer may not approve; nothing was done."), "{page}");
    assert_eq!(running.hub.lock().await.pending_approval(), None);

    // The lead approves: the page says so once, and the next run sends exactly that plan.
    assert_eq!(post(&approve, &session.cookie, &[("csrf", &session.csrf)]).await.unwrap().status(), StatusCode::SEE_OTHER);
    let page = client.get(url("/ui")).header("cookie", &session.cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("Plan {plan_id} approved")) && page.contains("Approved by hr-lead"), "{page}");
    let again = client.get(url("/ui")).header("cookie", &session.cookie).send().await.unwrap().text().await.unwrap();
    assert!(!again.contains(&format!("Plan {plan_id} approved")), "the message shows once");
    assert_eq!(running.hub.lock().await.pending_approval(), Some((plan_id.as_str(), "hr-lead")));
    running.hub.lock().await.sync_with(&leaving, &HeldBack::default()).await.expect("the approved plan goes");
    assert_eq!(running.recorder.take()[&(DataType::Employee, "A-1".to_string())].as_ref().unwrap()["status"], "terminated");

    // A script signs in by header alone, with no session to forge.
    let scripted = client.get(url("/ui")).bearer_auth(lead).send().await.unwrap();
    assert_eq!(scripted.status(), StatusCode::OK);
    assert!(!scripted.text().await.unwrap().contains("name=\"csrf\""), "a header-signed page has no session");
    assert_eq!(client.get(url("/ui")).bearer_auth("console-wrong-token-0123456789abcdef012").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Signing out ends the session on the hub, not only in the browser.
    let out = post("/ui/logout", &session.cookie, &[("csrf", &session.csrf)]).await.unwrap();
    assert_eq!(out.headers()["location"], "/ui/login");
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let ended = client.get(url("/ui")).header("cookie", &session.cookie).send().await.unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    assert!(ended.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "the browser keeps a cookie naming no session");
    let audit = running.hub.lock().await.ledger().audit_entries(None).unwrap();
    assert!(audit.iter().any(|e| e.actor == "hr-lead" && e.action == "approve" && e.detail["outcome"] == "approved"), "{audit:#?}");
    assert!(!audit.iter().any(|e| e.actor == "viewer" && e.action == "approve"), "{audit:#?}");
}

/// What the console refuses: a form from another site (sign-in included),
/// a form of a session without its CSRF token (decide and sign out too), a
/// body before its sender is signed in, a decision by a caller without
/// `review`; and a script signed in by header gets a plain status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_forms_are_refused_from_other_sites_without_a_session_its_csrf_token_or_the_right() {
    let (running, client, plan_id, _) = held_console().await;
    let url = |path: &str| format!("{}{path}", running.url);
    let host = running.url.trim_start_matches("http://").to_string();

    // A path the console does not have: its own page, with its protections.
    let missing = client.get(url("/ui/no-such-page")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-frame-options"], "DENY");

    // Another site's page posting a sign-in, by what the browser says of it.
    let from = |header: &'static str, value: String| client.post(url("/ui/login")).header(header, value).form(&[("token", LEAD)]).send();
    assert_eq!(from("sec-fetch-site", "cross-site".into()).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(from("origin", "http://evil.example".into()).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(from("origin", format!("http://{host}")).await.unwrap().status(), StatusCode::SEE_OTHER, "the console's own origin signs in");

    // No session: refused before the body is read, however large; a session's body over 16 KiB: 413.
    let case = running.hub.lock().await.cases().unwrap().remove(0).id;
    let decide = format!("/ui/cases/{case}");
    // A head announcing 2 MiB, a few bytes, then silence: the answer comes without waiting for the rest.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!("POST {decide} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n", 2 << 20);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"decision=same&").await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer)).await.expect("answered before the body").unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let (lead, _) = sign_in(&client, &running.url, LEAD).await;
    let oversized = client.post(url(&decide)).header("cookie", &lead.cookie).body("x".repeat(17 * 1024)).send().await.unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Deciding and signing out need the session's CSRF token; deciding needs `review`.
    let post = |path: &str, cookie: &str, fields: &[(&str, &str)]| client.post(url(path)).header("cookie", cookie).form(fields).send();
    assert_eq!(post(&decide, &lead.cookie, &[("decision", "same")]).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(post("/ui/logout", &lead.cookie, &[]).await.unwrap().status(), StatusCode::FORBIDDEN);
    let (viewer, _) = sign_in(&client, &running.url, VIEWER).await;
    assert_eq!(post(&decide, &viewer.cookie, &[("csrf", &viewer.csrf), ("decision", "same")]).await.unwrap().status(), StatusCode::SEE_OTHER);
    let page = client.get(url("/ui")).header("cookie", &viewer.cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Caller viewer may not review; nothing was done."), "{page}");
    assert!(running.hub.lock().await.cases().unwrap()[0].decision.is_none(), "a forged or unentitled form decided the case");
    assert_eq!(client.get(url("/ui")).header("cookie", &lead.cookie).send().await.unwrap().status(), StatusCode::OK, "a refused sign-out ended the session");

    // A script signed in by header: a plain answer, no session to forge.
    let script = |token: &str, path: &str, fields: &[(&str, &str)]| client.post(url(path)).bearer_auth(token).form(fields).send();
    let refused = script(VIEWER, &decide, &[("decision", "different")]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("may not review"));
    let approved = script(LEAD, &format!("/ui/plans/{plan_id}/approve"), &[]).await.unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    assert_eq!(script(LEAD, "/ui/plans/0123456789abcdef0123456789abcdef/approve", &[]).await.unwrap().status(), StatusCode::CONFLICT);
    let decided = script(LEAD, &decide, &[("decision", "different")]).await.unwrap();
    assert_eq!(decided.status(), StatusCode::OK);
    assert_eq!(running.hub.lock().await.cases().unwrap()[0].decided_by.as_deref(), Some("hr-lead"));
}

/// A hub restarted after a held run knows no plan in memory; the console
/// shows the held run from the audit log, so approving it must work: the
/// approval is for the plan the audit log names, and the next run goes if
/// it is still that plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_is_approved_after_the_hub_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let config = HubConfig::from_toml_str(&format!("{CONFIG}\n[safety]\nmin_records = 0\n"), "hub.toml").unwrap();
    let recorder = Arc::new(Recorder::default());
    let start = || Hub::with_transports(&config, Ledger::open(&path).unwrap(), [("recorder", recorder.clone() as Arc<dyn Propagator>)]).unwrap();
    let mut leaving = export("2026-10-26T00:00:00Z", &[]);
    let a1 = leaving.employees.get_mut("A-1").unwrap();
    a1.status = EmployeeStatus::Terminated;
    a1.updated_at = at("2026-10-26T00:00:00Z");
    let held = {
        let mut hub = start();
        hub.sync_with(&export("2026-10-25T00:00:00Z", &[]), &HeldBack::default()).await.unwrap();
        match hub.sync_with(&leaving, &HeldBack::default()).await {
            Err(hr_sync::HubError::Held { plan_id, .. }) => plan_id,
            other => panic!("the run terminating a third went: {other:?}"),
        }
    };
    recorder.take();

    let mut hub = start();
    assert!(hub.last_plan().is_none(), "a restarted hub planned nothing yet");
    assert!(hub.approve("0123456789abcdef0123456789abcdef", "hr-lead").is_err(), "only the held run's plan is approved");
    hub.approve(&held, "hr-lead").expect("the held run the audit log names is approved");
    hub.sync_with(&leaving, &HeldBack::default()).await.expect("the approved plan goes");
    assert_eq!(recorder.take()[&(DataType::Employee, "A-1".to_string())].as_ref().unwrap()["status"], "terminated");
}
