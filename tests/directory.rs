//! An identity directory as a fourth target: a real SCIM 2.0 provider
//! (scim2-server, `scripts/scim.sh`) beside payroll, orgchart and erp (three
//! `system` processes on the real broker), all provisioned by `hub` runs of
//! the seed scenario.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The directory as its administrator sees it.
struct Directory {
    url: String,
    token: String,
}

impl Directory {
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.header("Content-Type", "application/scim+json").body(body.to_string());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null))
        })
    }

    /// Every resource of `endpoint`, by `externalId`.
    fn all(&self, endpoint: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut start = 1;
        loop {
            let (status, page) = self.request("GET", &format!("{endpoint}?startIndex={start}&count=500"), None);
            assert_eq!(status, 200, "{page}");
            let resources = page["Resources"].as_array().cloned().unwrap_or_default();
            start += resources.len();
            let done = resources.is_empty() || start as u64 > page["totalResults"].as_u64().unwrap();
            out.extend(resources.into_iter().filter_map(|r| Some((r["externalId"].as_str()?.to_string(), r))));
            if done {
                return out;
            }
        }
    }
}

/// Every live employee in a system's store: id -> record.
fn employees(deployment: &Deployment, system: &str) -> BTreeMap<String, Value> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    let mut query = conn.prepare("SELECT id, body FROM employee WHERE deleted = 0").unwrap();
    let rows = query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
    rows.map(|r| r.unwrap()).map(|(id, body)| (id, serde_json::from_str(&body).unwrap())).collect()
}

fn org_units(deployment: &Deployment, system: &str) -> Vec<String> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    let mut query = conn.prepare("SELECT id FROM org_unit WHERE deleted = 0").unwrap();
    query.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

fn run(deployment: &Deployment, token: &str, extra: &[&str]) -> Output {
    deployment.hub(extra).env("HR_SCIM_TOKEN", token).output().expect("hub runs")
}

fn run_ok(deployment: &Deployment, token: &str, extra: &[&str]) -> Value {
    let output = run(deployment, token, extra);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hub failed:\n{stderr}");
    assert!(!stderr.contains(token), "the hub logged the directory's token");
    deployment.last_report()
}

/// Every live employee is a User with the right attributes and manager,
/// every org unit a Group; a 1% termination export deactivates those
/// Users; a User deleted by hand and one edited by hand are found by
/// `--check-only` (non-zero exit) and written again by the next run.
#[test]
fn the_seed_scenario_provisions_a_directory_that_is_compared_and_repaired_like_every_system() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let (url, token) = scim_tenant();
    let section = format!(
        "\n[targets.directory]\ndata_types = [\"employee\", \"org_unit\"]\ntransport = \"scim\"\nurl = \"{url}\"\ntoken_env = \"HR_SCIM_TOKEN\"\nomit.employee = [\"phone\", \"birth_date\"]\n"
    );
    let mut config = std::fs::read_to_string(&deployment.hub_config).unwrap();
    config.push_str(&section);
    std::fs::write(&deployment.hub_config, config).unwrap();
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();

    let first = run_ok(&deployment, &token, &[]);
    assert_clean(&first, "after the first run");
    assert!(first["systems"]["directory"]["employee"]["digest_matches"] == true, "the directory is compared: {}", first["systems"]);
    let directory = Directory { url, token: token.clone() };
    let users = directory.all("/Users");
    let people = employees(&deployment, "payroll");
    assert_eq!(users.len(), people.len(), "one User per employee");
    for (id, person) in &people {
        let user = &users[id];
        assert_eq!(user["active"], person["status"] != "terminated", "{id}");
        assert_eq!(user[ENTERPRISE]["department"], person["org_unit"], "{id}");
        assert_eq!(user["displayName"], person["name"], "{id}");
        assert!(user.get("phoneNumbers").is_none(), "{id}: the directory's scope omits phones");
        match person["manager"].as_str() {
            Some(manager) => assert_eq!(user[ENTERPRISE]["manager"]["value"], users[manager]["id"], "{id}'s manager"),
            None => assert!(user[ENTERPRISE].get("manager").is_none(), "{id}"),
        }
    }
    let groups = directory.all("/Groups");
    let units = org_units(&deployment, "payroll");
    assert_eq!(groups.len(), units.len(), "one Group per org unit");
    assert!(units.iter().all(|u| groups.contains_key(u)));
    // Each team's Group exists before its people are moved into it, in the first run too.
    for (id, person) in people.iter().filter(|(_, p)| p["status"] != "terminated") {
        let unit = person["org_unit"].as_str().unwrap();
        let members = groups[unit]["members"].as_array().cloned().unwrap_or_default();
        assert!(members.iter().any(|m| m["value"] == users[id]["id"]), "{id} is a member of {unit}'s Group: {members:?}");
    }

    // 1% of the people leave.
    let leavers: Vec<String> =
        data.people.iter().filter(|p| p.company == 0 && p.person_key.is_none() && p.status == 0).take(3).map(|p| p.local_id.to_string()).collect();
    let csv = deployment.input.join("company_a/employees.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    for local in &leavers {
        text = with_status(&text, local, "퇴직", "2026-11-01 09:00:00");
    }
    std::fs::write(&csv, text).unwrap();
    assert_clean(&run_ok(&deployment, &token, &[]), "after the leavers' run");
    let users = directory.all("/Users");
    for local in &leavers {
        assert_eq!(users[&format!("A-{local}")]["active"], false, "A-{local} is deactivated, not deleted");
    }
    assert_eq!(users.len(), people.len(), "no User deleted");

    // An administrator deletes one User and edits another.
    let (deleted, edited) = {
        let mut active = users.iter().filter(|(_, u)| u["active"] == true);
        (active.next().unwrap().0.clone(), active.next().unwrap().0.clone())
    };
    assert_eq!(directory.request("DELETE", &format!("/Users/{}", users[&deleted]["id"].as_str().unwrap()), None).0, 204);
    let patch = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"displayName": "edited by hand"}}]});
    let (status, _) = directory.request("PATCH", &format!("/Users/{}", users[&edited]["id"].as_str().unwrap()), Some(patch));
    assert!(status == 200 || status == 204);

    let check = run(&deployment, &token, &["--check-only"]);
    assert!(!check.status.success(), "--check-only finds the directory's drift");
    let report = deployment.last_report();
    let drift = &report["drift_found"]["directory"]["employee"];
    assert_eq!(drift["digest_matches"], false, "{drift}");
    assert!(drift["drift"]["missing"].as_array().is_some_and(|m| m.len() == 1), "{drift}");
    assert!(drift["drift"]["edited"].as_array().is_some_and(|m| m.len() == 1), "{drift}");

    let repaired = run_ok(&deployment, &token, &[]);
    assert_all_match(&repaired, "after the repair");
    let users = directory.all("/Users");
    assert!(users.contains_key(&deleted), "the deleted User is created again");
    assert_eq!(users[&edited]["displayName"], people[&edited]["name"], "the edit is undone");
    assert_clean(&run_ok(&deployment, &token, &[]), "the run after the repair");
    for system in systems {
        stop(system);
    }
}
