//! Access follows the person's life: the run that sees a termination
//! revokes every grant of that person in every system, and a grant whose
//! expiry date has passed is in force nowhere. Three `system` processes and
//! `hub` runs against the real broker.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

/// Every permission row whose key starts with `prefix`, in one system: key -> whether granted.
fn grants(deployment: &Deployment, system: &str, prefix: &str) -> Vec<(String, bool)> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut query = conn.prepare("SELECT id, body FROM permission WHERE id LIKE ?1 || '%' AND deleted = 0 ORDER BY id").unwrap();
    let rows = query.query_map([prefix], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
    rows.map(|r| {
        let (key, body) = r.unwrap();
        (key, serde_json::from_str::<Value>(&body).unwrap()["granted"].as_bool().unwrap())
    })
    .collect()
}

fn employee_status(deployment: &Deployment, system: &str, id: &str) -> String {
    let conn = Connection::open(deployment.database(system)).unwrap();
    let body: String = conn.query_row("SELECT body FROM employee WHERE id = ?1 AND deleted = 0", [id], |r| r.get(0)).unwrap();
    serde_json::from_str::<Value>(&body).unwrap()["status"].as_str().unwrap().to_string()
}

fn grant_line(employee: &str, system: &str, role: &str, expires: Option<&str>) -> String {
    json!({"employee": employee, "system": system, "role": role, "op": "grant", "expires": expires, "at": "2026-10-01T09:00:00Z"}).to_string()
}

#[test]
fn a_leaver_loses_every_grant_everywhere_in_the_run_that_sees_the_termination_and_expired_grants_are_nowhere() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let mut data = Dataset::generate(&GenerateOptions::scaled(300));
    let leaver = data.people.iter().find(|p| p.company == 0 && p.person_key.is_none() && p.status == 0).expect("an active company A employee");
    let (leaver_id, local_id) = (format!("A-{}", leaver.local_id), leaver.local_id.to_string());
    let other = data.people.iter().find(|p| p.company == 0 && p.status == 0 && p.local_id != leaver.local_id).unwrap();
    let other_id = format!("A-{}", other.local_id);
    for (system, role) in [("erp", "lifecycle-approver"), ("payroll", "lifecycle-viewer"), ("orgchart", "lifecycle-admin")] {
        data.permissions.push(grant_line(&leaver_id, system, role, None));
    }
    data.permissions.push(grant_line(&other_id, "erp", "lifecycle-expired", Some("2026-01-31")));
    data.permissions.push(grant_line(&other_id, "erp", "lifecycle-later", Some("2099-12-31")));
    data.write(&deployment.input).unwrap();

    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the first run");
    for (name, role) in [("erp", "lifecycle-approver"), ("payroll", "lifecycle-viewer"), ("orgchart", "lifecycle-admin")] {
        // Each system holds the leaver's grant for itself, and none for another.
        let held: Vec<(String, bool)> = grants(&deployment, name, &format!("{leaver_id}:")).into_iter().filter(|(k, _)| k.contains(":lifecycle-")).collect();
        assert_eq!(held, [(format!("{leaver_id}:{name}:{role}"), true)], "{name}");
        let expired = grants(&deployment, name, &format!("{other_id}:erp:lifecycle-expired"));
        let later = grants(&deployment, name, &format!("{other_id}:erp:lifecycle-later"));
        if name == "erp" {
            assert_eq!(expired, [(format!("{other_id}:erp:lifecycle-expired"), false)], "an expired grant is in force nowhere");
            assert_eq!(later, [(format!("{other_id}:erp:lifecycle-later"), true)], "a grant not yet expired stays");
        } else {
            assert!(expired.is_empty() && later.is_empty(), "{name} holds grants for erp");
        }
    }

    // The next export says the person left.
    let csv = deployment.input.join("company_a/employees.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let left = with_status(&text, &local_id, "퇴직", "2026-11-01 09:00:00");
    assert_ne!(left, text);
    std::fs::write(&csv, left).unwrap();
    let report = deployment.run_hub(&[]);
    assert_clean(&report, "after the leaver's run");
    assert!(report["revoked_for_leavers"].as_u64().unwrap() >= 3, "{}", report["revoked_for_leavers"]);
    for name in NAMES {
        let held = grants(&deployment, name, &format!("{leaver_id}:"));
        assert!(held.iter().any(|(k, _)| k.contains(":lifecycle-")), "{name}: {held:?}");
        assert!(held.iter().all(|(_, granted)| !granted), "{name} still grants the leaver access: {held:?}");
        assert_eq!(employee_status(&deployment, name, &leaver_id), "terminated", "{name} keeps the leaver's record, terminated");
    }
    for system in systems {
        stop(system);
    }
}

fn employee_field(deployment: &Deployment, system: &str, id: &str, field: &str) -> String {
    let conn = Connection::open(deployment.database(system)).unwrap();
    let body: String = conn.query_row("SELECT body FROM employee WHERE id = ?1 AND deleted = 0", [id], |r| r.get(0)).unwrap();
    serde_json::from_str::<Value>(&body).unwrap()[field].as_str().unwrap().to_string()
}

/// A transfer entered ahead of its day: each run is a new hub process on a
/// chosen day (`--today`), so the days between are restarts too.
#[test]
fn a_move_dated_ahead_applies_on_its_day_in_every_system_and_not_before() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    let mover = data.people.iter().find(|p| p.company == 0 && p.person_key.is_none() && p.status == 0).expect("an active company A employee");
    let (mover_id, local_id) = (format!("A-{}", mover.local_id), mover.local_id.to_string());
    data.write(&deployment.input).unwrap();
    // Days in the past, so no row's time is ahead of the clock.
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(30);
    let day = |n: u64| (start + chrono::Days::new(n)).to_string();
    let first = deployment.run_hub(&["--today", &day(0)]);
    assert_clean(&first, "after the first run");
    let before = employee_field(&deployment, "orgchart", &mover_id, "org_unit");

    // The next export adds `effective_date` and the mover's row in another department, dated day 10.
    let csv = deployment.input.join("company_a/employees.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let departments = std::fs::read_to_string(deployment.input.join("company_a/departments.csv")).unwrap();
    let target = departments.lines().skip(1).map(|l| l.split(',').next().unwrap()).find(|d| format!("A-{d}") != before).unwrap().to_string();
    let mut lines: Vec<String> = text.lines().enumerate().map(|(i, l)| if i == 0 { format!("{l},effective_date") } else { format!("{l},") }).collect();
    let row = lines.iter().find(|l| l.split(',').next() == Some(local_id.as_str())).unwrap().clone();
    let mut moved: Vec<String> = row.split(',').map(str::to_string).collect();
    moved[4] = target.clone();
    moved[13] = format!("{} 09:00:00", day(1));
    moved[14] = day(10).replace('-', "");
    lines.push(moved.join(","));
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();

    for (today, moved) in [(5, false), (9, false), (10, true), (11, true)] {
        let report = deployment.run_hub(&["--today", &day(today)]);
        assert_clean(&report, &format!("on day {today}"));
        let want = if moved { format!("A-{target}") } else { before.clone() };
        for name in NAMES {
            assert_eq!(employee_field(&deployment, name, &mover_id, "org_unit"), want, "day {today}: {name}");
        }
        assert!(report["quarantined"].as_array().unwrap().iter().all(|q| q["id"] != mover_id.as_str()), "day {today}: {}", report["quarantined"]);
        let due = json!({"on": day(10), "employee": mover_id, "change": "change"});
        let listed: Vec<&Value> = report["scheduled"].as_array().unwrap().iter().filter(|s| s["employee"] == mover_id.as_str()).collect();
        assert_eq!(listed, if moved { vec![] } else { vec![&due] }, "day {today}");
        if !moved {
            // What is due stays listed by a hub that has not run since.
            let status = deployment.hub(&["--status"]).output().unwrap();
            let printed = String::from_utf8_lossy(&status.stdout);
            assert!(printed.contains(&format!("{} {mover_id} change", day(10))), "day {today}, --status:\n{printed}");
        }
    }
    for system in systems {
        stop(system);
    }
}

/// Company B line for a look-alike of a company A row: the same name and
/// birth date, no person key.
fn look_alike_of(a_row: &str, employee_id: u64, org_unit: u64) -> String {
    let fields: Vec<&str> = a_row.split(',').collect();
    let birth = fields[10];
    let modified = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"employeeId": employee_id, "firstName": "Look", "lastName": "Alike", "displayNameKo": fields[1], "email": format!("look.{employee_id}@b.example"),
        "orgUnitId": org_unit, "grade": "G3", "startDate": "2024-03-01", "active": true, "leave": null, "managerId": null,
        "birthDate": format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..]), "personKey": null, "salary": null, "lastModified": modified})
    .to_string()
}

fn open_cases(deployment: &Deployment) -> Vec<Value> {
    let output = deployment.hub(&["--cases", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Two look-alike pairs: one decided the same person, one different, with
/// `hub --decide`; the next run ends with one record of the first in every
/// system and two of the second, and no open case.
#[test]
fn possible_duplicates_wait_for_a_decision_and_end_as_decided_in_every_system() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let a_csv = std::fs::read_to_string(deployment.input.join("company_a/employees.csv")).unwrap();
    // Active company A rows with a birth date (column 10) and without a person key (column 11).
    let usable = |l: &&str| {
        let fields: Vec<&str> = l.split(',').collect();
        fields[7] == "재직" && fields[10].len() == 8 && fields[11].is_empty()
    };
    let originals: Vec<&str> = a_csv.lines().skip(1).filter(usable).take(2).collect();
    assert_eq!(originals.len(), 2);
    let units = std::fs::read_to_string(deployment.input.join("company_b/org_units.jsonl")).unwrap();
    let unit = serde_json::from_str::<Value>(units.lines().next().unwrap()).unwrap()["orgUnitId"].as_u64().unwrap();
    let b_file = deployment.input.join("company_b/employees.jsonl");
    let mut b_lines = std::fs::read_to_string(&b_file).unwrap();
    for (i, original) in originals.iter().enumerate() {
        b_lines.push_str(&look_alike_of(original, 990_001 + i as u64, unit));
        b_lines.push('\n');
    }
    std::fs::write(&b_file, b_lines).unwrap();
    let a_ids: Vec<String> = originals.iter().map(|l| format!("A-{}", l.split(',').next().unwrap())).collect();

    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the first run");
    let cases = open_cases(&deployment);
    let case_of =
        |b: &str| cases.iter().find(|c| c["employees"].as_array().unwrap().iter().any(|e| e == b)).unwrap_or_else(|| panic!("no case for {b}: {cases:?}"));
    let (same, different) = (case_of("B-990001"), case_of("B-990002"));
    assert_eq!(same["employees"], json!([a_ids[0], "B-990001"]));
    for name in NAMES {
        assert!(row(&deployment, name, "employee", "B-990001").is_some_and(|r| !r.1), "{name}: before a decision both records stay");
    }
    for (case, decision) in [(same, "same"), (different, "different")] {
        let output = deployment.hub(&["--decide", case["id"].as_str().unwrap(), decision, "--operator", "hr-lead"]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    let report = deployment.run_hub(&[]);
    assert_clean(&report, "after the decisions");
    for name in NAMES {
        assert!(row(&deployment, name, "employee", "B-990001").is_some_and(|r| r.1), "{name}: the record decided the same person is deleted");
        assert!(row(&deployment, name, "employee", &a_ids[0]).is_some_and(|r| !r.1), "{name}: the survivor stays");
        assert!(row(&deployment, name, "employee", "B-990002").is_some_and(|r| !r.1), "{name}: different people stay two");
        assert!(row(&deployment, name, "employee", &a_ids[1]).is_some_and(|r| !r.1), "{name}");
    }
    assert!(open_cases(&deployment).is_empty(), "no case reopens");
    let audit = deployment.hub(&["--audit", "--json"]).output().unwrap();
    let decisions = String::from_utf8_lossy(&audit.stdout).lines().filter(|l| l.contains("\"decide\"") && l.contains("hr-lead")).count();
    assert_eq!(decisions, 2);
    for system in systems {
        stop(system);
    }
}
