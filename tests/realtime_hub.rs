//! Real time into a running deployment: `hub --watch --listen` with three
//! `system` processes on the real broker. A grant posted to the hub is in
//! erp when the 200 arrives, a transfer is in orgchart (over Kafka) when
//! its 200 arrives, and the periodic runs that follow, over the export made
//! before those calls, keep every real-time change ("newer wins"). A bad
//! line gets 400 and changes nothing; no token gets 401.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];
const HUB_TOKEN: &str = "realtime-hub-test-token-0123456789ab";

fn body_of(row: Option<(i64, bool, Option<String>)>) -> serde_json::Value {
    let (_, deleted, body) = row.expect("the system holds the key");
    assert!(!deleted, "the system holds a tombstone");
    serde_json::from_str(&body.unwrap()).unwrap()
}

/// A grant in force that erp holds from the export: its key and employee.
fn granted_in_erp(deployment: &Deployment) -> (String, String) {
    let conn = Connection::open(deployment.database("erp")).unwrap();
    conn.query_row("SELECT id, json_extract(body, '$.employee') FROM permission WHERE deleted = 0 AND json_extract(body, '$.granted') LIMIT 1", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .expect("erp holds a grant in force")
}

/// An active employee orgchart holds, and another unit of their company.
fn mover(deployment: &Deployment) -> (String, String) {
    let conn = Connection::open(deployment.database("orgchart")).unwrap();
    let (id, unit): (String, String) = conn
        .query_row(
            "SELECT id, json_extract(body, '$.org_unit') FROM employee WHERE deleted = 0 AND json_extract(body, '$.status') = 'active' AND id LIKE 'A-%' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let other: String = conn.query_row("SELECT id FROM org_unit WHERE deleted = 0 AND id LIKE 'A-%' AND id <> ?1 LIMIT 1", [&unit], |r| r.get(0)).unwrap();
    (id, other)
}

fn permission_rows(deployment: &Deployment) -> Vec<(String, i64)> {
    let conn = Connection::open(deployment.database("erp")).unwrap();
    let mut query = conn.prepare("SELECT id, version FROM permission ORDER BY id").unwrap();
    query.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn line(employee: &str, role: &str, op: &str, at: &str) -> String {
    serde_json::json!({"employee": employee, "system": "erp", "role": role, "op": op, "at": at}).to_string()
}

/// Waits for `n` more completed runs.
fn runs(lines: &mpsc::Receiver<String>, n: usize, seen: &mut Vec<String>) {
    for _ in 0..n {
        wait_for_line(lines, "run done", seen);
    }
}

#[test]
fn real_time_calls_reach_the_systems_before_their_answer_and_later_runs_over_an_older_export_keep_them() {
    let (deployment, _systems) = Deployment::start(&NAMES);
    Dataset::generate(&GenerateOptions::scaled(300)).write(&deployment.input).unwrap();
    let mut command = deployment.hub(&["--watch", "2", "--listen", "127.0.0.1:0"]);
    command.env("HR_HUB_TOKEN", HUB_TOKEN);
    let mut hub = start_listening(command);
    let (lines, seen, api) = (&hub.lines, &mut hub.seen, hub.api.clone());
    runs(lines, 1, seen);
    assert_clean(&deployment.last_report(), "after the first run");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let send = |request: reqwest::RequestBuilder| {
        rt.block_on(async {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        })
    };
    let post = |body: String, token: Option<&str>| {
        let request = client.post(format!("{api}/hr/v1/permissions")).body(body);
        send(match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    };
    let now = chrono::Utc::now().to_rfc3339();

    // No token, and a bad line: refused, erp unchanged.
    let before = permission_rows(&deployment);
    let (employee_key, employee) = granted_in_erp(&deployment);
    assert_eq!(post(line(&employee, "realtime-approver", "grant", &now), None).0, 401);
    let (status, answer) = post(
        format!(
            "{}\n{{\"employee\": \"{employee}\", \"system\": \"erp\", \"op\": \"grant\", \"at\": \"{now}\"}}",
            line(&employee, "realtime-approver", "grant", &now)
        ),
        Some(HUB_TOKEN),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("line 2") && answer.contains("`role`"), "{answer}");
    assert_eq!(permission_rows(&deployment), before, "a refused call changed erp");

    // A new grant and the revocation of one the export lists: in erp at the 200.
    let role = employee_key.rsplit(':').next().unwrap();
    let (status, answer) = post(format!("{}\n{}", line(&employee, "realtime-approver", "grant", &now), line(&employee, role, "revoke", &now)), Some(HUB_TOKEN));
    assert_eq!(status, 200, "{answer}");
    let created = format!("{employee}:erp:realtime-approver");
    assert_eq!(body_of(row(&deployment, "erp", "permission", &created))["granted"], true, "the new grant is in erp when the 200 arrives");
    assert_eq!(body_of(row(&deployment, "erp", "permission", &employee_key))["granted"], false, "the revocation is in erp when the 200 arrives");

    // A transfer, over Kafka: in orgchart at the 200.
    let (moved, unit) = mover(&deployment);
    let patch = client.patch(format!("{api}/hr/v1/employees/{moved}")).bearer_auth(HUB_TOKEN);
    let (status, answer) = send(patch.json(&serde_json::json!({"at": chrono::Utc::now().to_rfc3339(), "org_unit": unit})));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(body_of(row(&deployment, "orgchart", "employee", &moved))["org_unit"], unit.as_str(), "the transfer is in orgchart when the 200 arrives");

    // Two more periodic runs over the same, older export: nothing undone.
    runs(lines, 2, seen);
    let report = deployment.last_report();
    assert_clean(&report, "after the runs that followed the real-time calls");
    assert_eq!(body_of(row(&deployment, "erp", "permission", &employee_key))["granted"], false, "a run restored the revoked grant");
    assert_eq!(body_of(row(&deployment, "erp", "permission", &created))["granted"], true, "a run removed the real-time grant");
    assert_eq!(body_of(row(&deployment, "orgchart", "employee", &moved))["org_unit"], unit.as_str(), "a run undid the transfer");
    let older: Vec<&str> = report["source_older"]["permission"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(older.contains(&created.as_str()) && older.contains(&employee_key.as_str()), "{report}");
    assert_eq!(report["source_older"]["employee"][0], moved.as_str(), "{report}");
}
