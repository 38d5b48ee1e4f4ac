//! One bad party harms only itself: an export line the receivers would
//! refuse, a grant dated in the future, a system whose store claims a huge
//! version, and a second hub on the same ledger, each injected against the
//! real broker and three `system` processes. The other records and systems
//! stay right, and the next run is clean.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use serde_json::json;
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

/// The highest version a receiver accepts, less one: what a tampered store claims.
const HUGE: i64 = (1 << 53) - 1;

fn grant_line(employee: &str, role: &str, at: &str) -> String {
    json!({"employee": employee, "system": "erp", "role": role, "op": "grant", "expires": null, "at": at}).to_string()
}

/// Appends `lines` to the export's `permissions.jsonl`.
fn add_grant_lines(deployment: &Deployment, lines: &[String]) {
    let path = deployment.input.join("permissions.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
}

/// The quarantine entries of a report with `reason`, as `id` strings.
fn quarantined_ids(report: &serde_json::Value, reason: &str) -> Vec<String> {
    report["quarantined"].as_array().unwrap().iter().filter(|q| q["reason"] == reason).map(|q| q["id"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn a_bad_line_a_future_date_a_lying_store_and_a_second_hub_harm_nobody_else() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let person = data.people.iter().find(|p| p.company == 0 && p.person_key.is_none() && p.status == 0).expect("a plain company A employee");
    let id = format!("A-{}", person.local_id);

    let other = data.people.iter().find(|p| p.company == 0 && p.person_key.is_none() && p.status == 0 && p.local_id != person.local_id).unwrap();
    let other = format!("A-{}", other.local_id);

    // An over-long role and a grant dated 2999 for one person, beside normal grants for them and another person:
    // the two are quarantined; either might have been a revocation, so the person's grants on erp are
    // suspended (sent revoked) until good lines come, and the other person's grant arrives.
    let long_role = "r".repeat(600);
    let bad_lines = [grant_line(&id, &long_role, "2026-10-01T09:00:00Z"), grant_line(&id, "future-approver", "2999-01-01T00:00:00Z")];
    let good_lines = [grant_line(&id, "trust-normal", "2026-10-01T09:00:00Z"), grant_line(&other, "trust-normal", "2026-10-01T09:00:00Z")];
    let exported = std::fs::read_to_string(deployment.input.join("permissions.jsonl")).unwrap_or_default();
    add_grant_lines(&deployment, &[bad_lines.as_slice(), good_lines.as_slice()].concat());
    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the run with the bad lines");
    assert_eq!(quarantined_ids(&first, "malformed_row").iter().filter(|q| q.contains(&long_role)).count(), 1, "{}", first["quarantined"]);
    assert!(quarantined_ids(&first, "implausible_time").contains(&format!("{id}:erp:future-approver")), "{}", first["quarantined"]);
    let granted = |system: &str, key: &str| row(&deployment, system, "permission", key).and_then(|r| r.2).is_some_and(|body| body.contains("\"granted\":true"));
    assert!(granted("erp", &format!("{other}:erp:trust-normal")), "another person's grant never reached erp");
    let suspended: Vec<(String, String)> = first["suspended_for_bad_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["employee"].as_str().unwrap().to_string(), s["system"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(suspended, vec![(id.clone(), "erp".to_string()); 2], "{}", first["suspended_for_bad_line"]);
    assert!(row(&deployment, "erp", "permission", &format!("{id}:erp:trust-normal")).is_some(), "the suspended grant is sent, revoked");
    assert!(!granted("erp", &format!("{id}:erp:trust-normal")), "a grant of a person with a bad line on erp stands (fails open)");
    assert!(row(&deployment, "erp", "permission", &format!("{id}:erp:future-approver")).is_none(), "a grant dated 2999 was sent");
    assert_eq!(first["rejected"], json!([]), "the importer, not the planner, catches what receivers refuse");
    let again = deployment.run_hub(&[]);
    assert_clean(&again, "in the run after the bad lines");
    assert_eq!(again["changes_sent"], 0, "the suspension holds without resending: {}", again["changes_sent"]);

    // The bad lines corrected: the suspension ends, and the person's grant on erp stands again.
    std::fs::write(deployment.input.join("permissions.jsonl"), exported).unwrap();
    add_grant_lines(&deployment, &good_lines);
    let fixed = deployment.run_hub(&[]);
    assert_clean(&fixed, "after the bad lines were corrected");
    assert_eq!(fixed["suspended_for_bad_line"], json!([]));
    assert!(granted("erp", &format!("{id}:erp:trust-normal")), "the grant did not stand again once the lines were good");

    // orgchart's store claims the person at 2^53-1: foreign, reported, never used to number what the others get.
    let (payroll_before, _, _) = row(&deployment, "payroll", "employee", &id).unwrap();
    {
        let conn = Connection::open(deployment.database("orgchart")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(conn.execute("UPDATE employee SET version = ?1 WHERE id = ?2", rusqlite::params![HUGE, id]).unwrap(), 1);
    }
    let check = deployment.run_hub_raw(&["--check-only"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "a foreign version must fail --check-only:\n{stdout}");
    assert!(stdout.contains("drift: orgchart/employee: 0 missing, 0 edited, 0 extra, 1 foreign"), "{stdout}");
    let lied = deployment.run_hub_raw(&[]);
    let report = deployment.last_report();
    assert!(!lied.status.success(), "orgchart still differs, so the run says so");
    assert_eq!(report["foreign_versions"], json!({"orgchart": {"employee": [id]}}));
    assert_eq!(report["repaired"], json!({}), "a foreign key is not repaired by outnumbering it");
    for name in ["payroll", "erp"] {
        let (version, _, _) = row(&deployment, name, "employee", &id).unwrap();
        assert_eq!(version, payroll_before, "{name} was renumbered after orgchart's claim");
        assert_eq!(report["systems"][name]["employee"]["digest_matches"], true, "{name}");
    }

    // A later change of the person reaches payroll and erp at the hub's own next version.
    let csv = deployment.input.join("company_a/employees.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let local = person.local_id.to_string();
    let changed: String = text
        .lines()
        .map(|l| {
            let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
            if fields[0] == local {
                fields[2] = "Renamed After Claim".into();
                fields[13] = "2026-11-30 10:00:00".into();
            }
            fields.join(",") + "\n"
        })
        .collect();
    std::fs::write(&csv, changed).unwrap();
    let _ = deployment.run_hub_raw(&[]);
    for name in ["payroll", "erp"] {
        let (version, _, body) = row(&deployment, name, "employee", &id).unwrap();
        assert_eq!(version, payroll_before + 1, "{name} got the change at the hub's next version");
        assert!(body.unwrap().contains("Renamed After Claim"), "{name}");
    }

    // The row removed at orgchart: the next run repairs it, and the one after is clean.
    {
        let conn = Connection::open(deployment.database("orgchart")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(conn.execute("DELETE FROM employee WHERE id = ?1", [&id]).unwrap(), 1);
    }
    let repaired = deployment.run_hub(&[]);
    assert_all_match(&repaired, "after the foreign row was removed");
    assert_clean(&deployment.run_hub(&[]), "the run after the repair");

    // A second hub on the same ledger stops at once, naming the holder.
    let holder = hr_core::Ledger::open(deployment.hub_dir.join("hub-ledger.sqlite3")).unwrap();
    let second = deployment.run_hub_raw(&[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second hub ran on a held ledger");
    assert!(stderr.contains("in use by process") && stderr.contains(&std::process::id().to_string()), "{stderr}");
    drop(holder);
    assert_clean(&deployment.run_hub(&[]), "once the other holder let go");

    // A lost ledger and an export missing company A: the repair would delete half the people; [safety],
    // measured against the ledger and not against what the systems claim, holds it and nothing is deleted.
    let held_before: Vec<serde_json::Value> = NAMES.iter().map(|n| deployment.last_report()["systems"][n]["employee"]["records"].clone()).collect();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(deployment.hub_dir.join(format!("hub-ledger.sqlite3{suffix}")));
    }
    let full_export = std::fs::read_to_string(&csv).unwrap();
    let header = full_export.lines().next().unwrap().to_string();
    std::fs::write(&csv, header + "\n").unwrap();
    let lost = deployment.run_hub_raw(&[]);
    let stdout = String::from_utf8_lossy(&lost.stdout);
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert_eq!(lost.status.code(), Some(3), "a repair deleting half the people ran:\n{stdout}\n{stderr}");
    let held = deployment.last_report()["held"].clone();
    assert!(held["reasons"].to_string().contains("deletes"), "{held}");
    // The preview shows those deletes as repairs, under the held plan's id.
    let preview = deployment.run_hub_raw(&["--plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(plan["plan_id"], held["plan_id"], "{}", String::from_utf8_lossy(&preview.stderr));
    assert!(plan["targets"]["payroll"]["employee"]["delete"].as_u64().unwrap() > 0, "{}", plan["targets"]);
    let payroll = &plan["targets"]["payroll"]["employee"];
    assert!(payroll["repair"].as_u64() >= payroll["delete"].as_u64(), "every delete is a repair: {payroll}");
    for (name, before) in NAMES.iter().zip(&held_before) {
        let conn = Connection::open(deployment.database(name)).unwrap();
        let live: i64 = conn.query_row("SELECT count(*) FROM employee WHERE deleted = 0", [], |r| r.get(0)).unwrap();
        assert_eq!(json!(live), *before, "{name} lost people to a repair from a lost ledger");
        assert!(row(&deployment, name, "employee", &id).is_some_and(|r| !r.1), "{name} no longer holds {id}");
    }

    // The whole export again: the lost ledger is rebuilt, every system is repaired above the versions
    // they all hold (a majority backs them: not foreign), and the run after that is clean.
    std::fs::write(&csv, full_export).unwrap();
    let rebuilt = deployment.run_hub(&[]);
    assert_all_match(&rebuilt, "after the lost ledger was rebuilt");
    assert_eq!(rebuilt["foreign_versions"], json!({}), "versions every system holds are not foreign");
    assert_clean(&deployment.run_hub(&[]), "the run after the rebuild");

    for system in systems {
        stop(system);
    }
}
