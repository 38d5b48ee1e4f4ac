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
    let pairs = plant_look_alikes(&deployment, 2);
    assert_eq!(pairs.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(), ["B-990001", "B-990002"]);
    let a_ids: Vec<String> = pairs.into_iter().map(|(a, _)| a).collect();

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

/// A system's record of one employee, as `(status, hire_date)`; `None`
/// when it holds none (or holds it deleted).
fn held_employee(deployment: &Deployment, system: &str, id: &str) -> Option<(String, String)> {
    let (_, deleted, body) = row(deployment, system, "employee", id)?;
    let body: Value = serde_json::from_str(&body?).unwrap();
    (!deleted).then(|| (body["status"].as_str().unwrap().to_string(), body["hire_date"].as_str().unwrap().to_string()))
}

/// Company A's export with a `termination_date` column, filled for `leaver`.
fn with_termination_date(csv: &str, leaver: u64, last_day: &str) -> String {
    let mut out = String::new();
    for (i, line) in csv.lines().enumerate() {
        let value = if i == 0 {
            "termination_date"
        } else if line.split(',').next() == Some(leaver.to_string().as_str()) {
            last_day
        } else {
            ""
        };
        out.push_str(&format!("{line},{value}\n"));
    }
    out
}

/// `value` as every system holds it.
fn everywhere<T: Clone>(value: T) -> [T; 3] {
    [value.clone(), value.clone(), value]
}

/// People over time on days chosen with `--today`, each run a new hub
/// process (so the days between are restarts): orgchart, a directory over
/// REST with `pre_start_days = 7`, receives hires a week ahead as
/// `pre_hire`; payroll and erp on the day, with their grants. A slipped
/// start date moves the pre-hire, a cancelled hire is deleted where it was
/// sent, a departure keeps access through the last day, and the leaver
/// rehired in the other company is the same person, under the same id,
/// everywhere. Every run is clean.
#[test]
fn hires_departures_and_rehires_take_effect_on_their_dates_and_pre_hires_reach_only_the_target_that_asks() {
    let directory = |config: String| config.replace("[targets.orgchart]\n", "[targets.orgchart]\ntransport = \"rest\"\npre_start_days = 7\n");
    let (deployment, systems) = Deployment::start_edited(&NAMES, brokers(), &[], &[], "", &directory);
    let mut data = Dataset::generate(&GenerateOptions::scaled(300));
    // Days in the past, so no row's time is ahead of the clock.
    let start = chrono::Utc::now().date_naive() - chrono::Days::new(40);
    let date = |n: u64| start + chrono::Days::new(n);
    let day = |n: u64| date(n).to_string();
    let seconds_at =
        |n: u64| (date(n).and_hms_opt(0, 0, 0).unwrap().and_utc() - "2026-01-01T00:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap()).num_seconds();
    let template = data.people.iter().find(|p| p.company == 0 && p.person_key.is_none() && p.status == 0).unwrap().clone();
    // A person key no other record has: the leaver is one person in one company, until rehired in the other.
    let alone = |p: &hr_testdata::Person| data.people.iter().filter(|q| q.person_key == p.person_key).count() == 1;
    let leaver = data
        .people
        .iter()
        .find(|p| p.company == 0 && p.person_key.is_some() && p.status == 0 && alone(p))
        .expect("an active company A employee with a person key")
        .clone();
    let next_id = data.people.iter().filter(|p| p.company == 0).map(|p| p.local_id).max().unwrap() + 1;
    let newcomer = |local_id: u64, hire: chrono::NaiveDate, given: usize| hr_testdata::Person {
        local_id,
        hire: (chrono::Datelike::year(&hire), chrono::Datelike::month(&hire), chrono::Datelike::day(&hire)),
        birth: (1950, 1, 1 + given as u32),
        given,
        person_key: None,
        updated: seconds_at(1),
        ..template.clone()
    };
    let (hire, cancelled) = (newcomer(next_id, date(20), 1), newcomer(next_id + 1, date(19), 2));
    let (hire_id, cancelled_id, leaver_id) = (format!("A-{}", hire.local_id), format!("A-{}", cancelled.local_id), format!("A-{}", leaver.local_id));
    for (system, role) in [("erp", "lifecycle-approver"), ("payroll", "lifecycle-viewer"), ("orgchart", "lifecycle-admin")] {
        data.permissions.push(grant_line(&leaver_id, system, role, None));
        data.permissions.push(grant_line(&hire_id, system, role, None));
    }
    let write = |data: &Dataset| {
        data.write(&deployment.input).unwrap();
        let csv = deployment.input.join("company_a/employees.csv");
        let text = std::fs::read_to_string(&csv).unwrap();
        std::fs::write(&csv, with_termination_date(&text, leaver.local_id, &day(15).replace('-', ""))).unwrap();
    };
    write(&data);
    assert_clean(&deployment.run_hub(&["--today", &day(0)]), "after the first run");

    // The export now holds two hires and the leaver's last day (day 15).
    data.people.extend([hire.clone(), cancelled.clone()]);
    let departing = data.people.iter_mut().find(|p| p.local_id == leaver.local_id && p.company == 0).unwrap();
    (departing.status, departing.updated) = (2, seconds_at(2));
    write(&data);
    let run = |today: u64| {
        let report = deployment.run_hub(&["--today", &day(today)]);
        assert_clean(&report, &format!("on day {today}"));
        report
    };
    let in_all = |id: &str| NAMES.map(|name| held_employee(&deployment, name, id));
    let grants_of = |id: &str, system: &str| grants(&deployment, system, &format!("{id}:{system}:lifecycle-"));

    let report = run(12);
    let due: Vec<(String, String, String, Option<String>)> = report["scheduled"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| [&hire_id, &cancelled_id, &leaver_id].iter().any(|id| s["employee"] == id.as_str()))
        .map(|s| {
            (
                s["on"].as_str().unwrap().into(),
                s["employee"].as_str().unwrap().into(),
                s["change"].as_str().unwrap().into(),
                s["target"].as_str().map(String::from),
            )
        })
        .collect();
    let orgchart = Some("orgchart".to_string());
    assert_eq!(
        due,
        [
            (day(13), hire_id.clone(), "pre_hire".into(), orgchart.clone()),
            (day(16), leaver_id.clone(), "departure".into(), None),
            (day(19), cancelled_id.clone(), "hire".into(), None),
            (day(20), hire_id.clone(), "hire".into(), None),
        ],
        "day 12"
    );
    assert_eq!(in_all(&hire_id), [None, None, None], "day 12: eight days ahead, nowhere");
    assert_eq!(in_all(&cancelled_id), [None, Some(("pre_hire".into(), day(19))), None], "day 12: seven days ahead, in orgchart only");

    run(13);
    assert_eq!(in_all(&hire_id), [None, Some(("pre_hire".into(), day(20))), None], "day 13");
    assert!(NAMES.iter().all(|name| grants_of(&hire_id, name).is_empty()), "day 13: a pre-hire's grants wait for the day");
    // Lost in the directory: the next run finds it missing there and sends the pre-hire again, to it alone.
    let conn = Connection::open(deployment.database("orgchart")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(conn.execute("DELETE FROM employee WHERE id = ?1", [&hire_id]).unwrap(), 1);
    drop(conn);
    let repaired = deployment.run_hub(&["--today", &day(13)]);
    assert_eq!(repaired["repaired"], json!({"employee": 1}), "{}", repaired["drift_found"]);
    assert_eq!(in_all(&hire_id), [None, Some(("pre_hire".into(), day(20))), None], "day 13, repaired");

    // The start date slips by a day.
    data.people.iter_mut().find(|p| p.local_id == hire.local_id).unwrap().hire =
        (chrono::Datelike::year(&date(21)), chrono::Datelike::month(&date(21)), chrono::Datelike::day(&date(21)));
    write(&data);
    run(14);
    assert_eq!(in_all(&hire_id), [None, Some(("pre_hire".into(), day(21))), None], "day 14: the slipped date moves the pre-hire");

    run(15);
    assert_eq!(in_all(&leaver_id).map(|r| r.map(|(status, _)| status)), everywhere(Some("active".to_string())), "day 15: active through the last day");
    for name in NAMES {
        assert!(grants_of(&leaver_id, name).iter().all(|(_, granted)| *granted) && grants_of(&leaver_id, name).len() == 1, "day 15: {name}");
    }

    // The second hire is cancelled.
    data.people.retain(|p| p.local_id != cancelled.local_id);
    write(&data);
    run(16);
    assert_eq!(in_all(&leaver_id).map(|r| r.map(|(status, _)| status)), everywhere(Some("terminated".to_string())), "day 16");
    for name in NAMES {
        assert_eq!(grants_of(&leaver_id, name).into_iter().map(|(_, granted)| granted).collect::<Vec<_>>(), [false], "day 16: {name} revoked");
    }
    assert_eq!(in_all(&cancelled_id), [None, None, None], "day 16: the cancelled hire is deleted where it was sent");
    assert!(row(&deployment, "orgchart", "employee", &cancelled_id).is_some_and(|r| r.1));

    // Rehired in company B with the same person key, from day 18: until then the systems keep the leaver as they hold them.
    let mut rehire = data.people.iter().find(|p| p.company == 1).unwrap().clone();
    rehire.local_id = data.people.iter().filter(|p| p.company == 1).map(|p| p.local_id).max().unwrap() + 1;
    (rehire.person_key, rehire.status, rehire.updated, rehire.birth, rehire.given, rehire.surname) =
        (leaver.person_key.clone(), 0, seconds_at(17), leaver.birth, leaver.given, leaver.surname);
    rehire.hire = (chrono::Datelike::year(&date(18)), chrono::Datelike::month(&date(18)), chrono::Datelike::day(&date(18)));
    data.people.push(rehire.clone());
    write(&data);
    run(17);
    assert_eq!(in_all(&leaver_id).map(|r| r.map(|(status, _)| status)), everywhere(Some("terminated".to_string())), "day 17: not deleted, not back yet");
    run(18);
    assert_eq!(in_all(&leaver_id).map(|r| r.map(|(status, _)| status)), everywhere(Some("active".to_string())), "day 18: rehired under the old id");
    assert_eq!(in_all(&format!("B-{}", rehire.local_id)), [None, None, None], "day 18: not created twice");

    run(20);
    assert_eq!(in_all(&hire_id), [None, Some(("pre_hire".into(), day(21))), None], "day 20");
    run(21);
    assert_eq!(in_all(&hire_id), everywhere(Some(("active".to_string(), day(21)))), "day 21: active everywhere");
    for name in NAMES {
        assert_eq!(grants_of(&hire_id, name).into_iter().map(|(_, granted)| granted).collect::<Vec<_>>(), [true], "day 21: {name} grants");
    }
    for system in systems {
        stop(system);
    }
}
