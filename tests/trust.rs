//! Every system provably holds the source's content, or the hub says so
//! and repairs it: three `system` processes and `hub` runs against the real
//! broker, with the faults really injected (a system down during a run, rows
//! edited, deleted and planted in the systems' SQLite files, a typo in the
//! next export).

use hr_testdata::{Dataset, GenerateOptions, Person};
use rusqlite::Connection;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

/// An active person of company A with a salary and without a person key:
/// their unified id is `A-<local id>` for sure, and payroll holds their pay.
fn plain_person(data: &Dataset) -> usize {
    data.people.iter().position(|p| p.company == 0 && p.person_key.is_none() && p.status == 0 && p.salary.is_some()).expect("a plain company A employee")
}

fn unified_id(p: &Person) -> String {
    format!("A-{}", p.local_id)
}

fn grade_in(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["grade"].as_str().unwrap().to_string()
}

/// Waits until `system` holds `id` above `version`; returns its row.
fn wait_for_row_above(deployment: &Deployment, system: &str, id: &str, version: i64) -> (i64, bool, Option<String>) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = row(deployment, system, "employee", id).filter(|r| r.0 > version) {
            return r;
        }
        assert!(Instant::now() < until, "{system} never applied {id} above version {version}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_half_failed_run_then_a_source_change_ends_with_the_latest_content_everywhere() {
    let (deployment, mut systems) = Deployment::start(&NAMES);
    let mut data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    assert_all_match(&deployment.run_hub(&[]), "after the first run");
    let i = plain_person(&data);
    let id = unified_id(&data.people[i]);
    let (v1, _, body1) = row(&deployment, "orgchart", "employee", &id).expect("the person reached orgchart");

    // payroll goes down; the source changes the person (content X); the hub, watching, runs and fails
    // on payroll's REST routes after Kafka delivered X to orgchart and erp.
    let payroll = systems.remove(0);
    let payroll_url = payroll.url.clone();
    stop(payroll);
    data.people[i].grade = data.people[i].grade % 7 + 1;
    data.people[i].updated += 86_400;
    data.write(&deployment.input).unwrap();
    let mut watching = deployment.hub(&["--watch", "2", "--rest-deadline-secs", "2"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lines = lines_of(&mut watching);
    let mut seen = vec![];
    wait_for_line(&lines, "run failed", &mut seen);
    let (vx, _, body_x) = wait_for_row_above(&deployment, "orgchart", &id, v1);
    assert_ne!(grade_in(body_x.as_deref().unwrap()), grade_in(body1.as_deref().unwrap()), "orgchart holds content X");

    // The source changes the same person again (content Y), and payroll comes back: the hub keeps going.
    data.people[i].grade = data.people[i].grade % 7 + 1;
    data.people[i].updated += 86_400;
    data.write(&deployment.input).unwrap();
    systems.insert(0, deployment.restart("payroll", &payroll_url));
    wait_for_line(&lines, "run done", &mut seen);
    // The report is written just after the run's last line.
    let until = Instant::now() + Duration::from_secs(30);
    while deployment.last_report().get("systems").is_none() {
        assert!(Instant::now() < until, "no report of the good run");
        std::thread::sleep(Duration::from_millis(50));
    }
    watching.kill().unwrap();
    watching.wait().unwrap();
    assert!(seen.iter().any(|l| l.contains("retrying in")), "the failed run is retried:\n{}", seen.join("\n"));
    assert_all_match(&deployment.last_report(), "after the good run");

    let ledger = hr_core::Ledger::open(deployment.hub_dir.join("hub-ledger.sqlite3")).unwrap();
    let (hub_version, _) = ledger.version_of(hr_core::DataType::Employee, &id).unwrap().unwrap();
    assert!(hub_version as i64 > vx, "content Y travels at a version above X's ({vx}), not at a reused one");
    let mut grades = vec![];
    for name in NAMES {
        let (version, deleted, body) = row(&deployment, name, "employee", &id).unwrap();
        assert_eq!((version, deleted), (hub_version as i64, false), "{name}");
        grades.push(grade_in(body.as_deref().unwrap()));
    }
    assert!(grades.iter().all(|g| *g == grades[0]) && grades[0] != grade_in(body_x.as_deref().unwrap()), "every system holds Y: {grades:?}");

    for system in systems {
        stop(system);
    }
}

#[test]
fn drift_in_the_systems_is_found_named_and_repaired_in_one_run() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the first run");
    let id = unified_id(&data.people[plain_person(&data)]);
    let team = {
        let conn = Connection::open(deployment.database("orgchart")).unwrap();
        conn.query_row("SELECT id FROM org_unit WHERE id LIKE 'B-%' ORDER BY id LIMIT 1", [], |r| r.get::<_, String>(0)).unwrap()
    };
    let planted = format!("{id}:erp:superuser");

    // A hand edit in payroll, a deleted row in orgchart, a planted row in erp.
    let edit = |system: &str, sql: &str, args: &[&str]| {
        let conn = Connection::open(deployment.database(system)).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(conn.execute(sql, rusqlite::params_from_iter(args)).unwrap(), 1, "{sql}");
    };
    edit("payroll", "UPDATE employee SET body = json_set(body, '$.name', 'tampered') WHERE id = ?1", &[&id]);
    edit("orgchart", "DELETE FROM org_unit WHERE id = ?1", &[&team]);
    let grant =
        serde_json::json!({"employee": id, "system": "erp", "role": "superuser", "granted": true, "expires": null, "at": "2026-01-01T00:00:00Z"}).to_string();
    edit("erp", "INSERT INTO permission (id, version, deleted, body) VALUES (?1, 1, 0, ?2)", &[&planted, &grant]);

    // --check-only names every difference, repairs nothing and fails.
    let check = deployment.run_hub_raw(&["--check-only"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "a check that finds drift must fail:\n{stdout}");
    for expected in [
        "drift: payroll/employee: 0 missing, 1 edited, 0 extra",
        "drift: orgchart/org_unit: 1 missing, 0 edited, 0 extra",
        "drift: erp/permission: 0 missing, 0 edited, 1 extra",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    assert_eq!(stdout.matches("drift: ").count(), 3, "{stdout}");
    assert!(row(&deployment, "payroll", "employee", &id).unwrap().2.unwrap().contains("tampered"), "check-only repaired");

    // One normal run finds and repairs all three, each in the systems that differ.
    let version_in = |system: &str| row(&deployment, system, "employee", &id).unwrap().0;
    let (orgchart_before, erp_before, payroll_before) = (version_in("orgchart"), version_in("erp"), version_in("payroll"));
    let report = deployment.run_hub(&[]);
    assert_eq!(report["drift_found"]["payroll"]["employee"]["drift"]["edited"][0]["key"], id.as_str());
    assert_eq!(report["drift_found"]["orgchart"]["org_unit"]["drift"]["missing"][0]["key"], team.as_str());
    assert_eq!(report["drift_found"]["erp"]["permission"]["drift"]["extra"][0]["key"], planted.as_str());
    assert_eq!(report["repaired"], serde_json::json!({"employee": 1, "org_unit": 1, "permission": 1}));
    assert_all_match(&report, "after the repair");
    let repaired = row(&deployment, "payroll", "employee", &id).unwrap();
    assert!(!repaired.2.unwrap().contains("tampered"));
    assert!(repaired.0 > payroll_before, "payroll's row is repaired at a fresh version");
    // orgchart and erp read another topic (they go without phone and birth date): they keep their version.
    assert_eq!((version_in("orgchart"), version_in("erp")), (orgchart_before, erp_before), "a repair of payroll reached other systems");
    assert!(row(&deployment, "orgchart", "org_unit", &team).is_some_and(|r| !r.1));
    assert!(row(&deployment, "erp", "permission", &planted).is_some_and(|r| r.1), "the planted grant is deleted");
    let again = deployment.run_hub(&[]);
    assert_eq!(again["repaired"], serde_json::json!({}), "nothing left to repair");

    for system in systems {
        stop(system);
    }
}

#[test]
fn a_typo_in_the_next_export_deprovisions_nobody() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let first = deployment.run_hub(&[]);
    let id = unified_id(&data.people[plain_person(&data)]);
    let local = id.trim_start_matches("A-").to_string();

    // The person's email gets a typo in the next export: the row is quarantined.
    let csv = deployment.input.join("company_a/employees.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let typo: String = text
        .lines()
        .map(|l| {
            let mut fields: Vec<&str> = l.split(',').collect();
            if fields[0] == local {
                fields[3] = "not-an-email";
            }
            fields.join(",") + "\n"
        })
        .collect();
    assert_ne!(typo, text);
    std::fs::write(&csv, typo).unwrap();
    let report = deployment.run_hub(&[]);
    assert!(report["quarantined"].as_array().unwrap().iter().any(|q| q["id"] == id.as_str() && q["reason"] == "invalid_email"));
    let held: Vec<String> =
        report["held_back"].as_array().unwrap().iter().map(|h| format!("{}/{}", h["data_type"].as_str().unwrap(), h["key"].as_str().unwrap())).collect();
    assert!(held.contains(&format!("employee/{id}")), "{held:?}");
    assert_clean(&report, "after the typo run");
    for name in NAMES {
        assert_eq!(report["systems"][name]["employee"]["records"], first["systems"][name]["employee"]["records"], "{name} lost nobody");
        assert!(row(&deployment, name, "employee", &id).is_some_and(|r| !r.1), "{name} still holds {id}");
    }
    assert!(row(&deployment, "payroll", "compensation", &id).is_some_and(|r| !r.1), "pay is kept too");
    for system in systems {
        stop(system);
    }
}
