//! Nothing large happens unseen: against the real broker and three
//! `system` processes, an export that terminates a third of company A is
//! held (nothing changes in any system), `--plan` shows it with the same
//! plan id and changes nothing, a stale id is refused naming what changed,
//! the right id applies exactly that plan, an export that drops a third of
//! company B is held too, repairs that would delete beyond `[safety]` (a
//! system restored from a backup) are held, previewed and approved the same
//! way, and the audit log names each run and approval.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use serde_json::json;
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

/// Live employees a system holds with `status`.
fn with_status(deployment: &Deployment, system: &str, status: &str) -> i64 {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("SELECT count(*) FROM employee WHERE deleted = 0 AND json_extract(body, '$.status') = ?1", [status], |r| r.get(0)).unwrap()
}

/// A system's live employees: id, version and body.
fn live_rows(deployment: &Deployment, system: &str) -> Vec<(String, i64, Option<String>)> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut query = conn.prepare("SELECT id, version, body FROM employee WHERE deleted = 0").unwrap();
    query.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// Every system's count of live employees with `status`.
fn everywhere(deployment: &Deployment, status: &str) -> Vec<i64> {
    NAMES.iter().map(|n| with_status(deployment, n, status)).collect()
}

#[test]
fn a_mass_termination_is_held_previewed_and_applied_only_as_the_approved_plan() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the first run");
    assert!(first["held"].is_null(), "a first run creates, it terminates nobody: {}", first["held"]);

    // Every third active company A employee terminated (status 퇴직), with a later updated_at.
    let terminated = terminate_every_third(&deployment) as i64;
    let before = everywhere(&deployment, "terminated");

    // Held: exit code 3, nothing sent, the report names the plan and why.
    let held_run = deployment.run_hub_raw(&[]);
    assert_eq!(held_run.status.code(), Some(3), "{}", String::from_utf8_lossy(&held_run.stderr));
    let report = deployment.last_report();
    let plan_id = report["held"]["plan_id"].as_str().expect("a held report names its plan").to_string();
    let reasons = report["held"]["reasons"].to_string();
    assert!(reasons.contains("terminations") && reasons.contains("payroll/employee"), "{reasons}");
    assert_eq!(report["changes_sent"], 0);
    assert_eq!(everywhere(&deployment, "terminated"), before, "a held run changed a system");

    // The preview: the same plan id, the terminations per system, and nothing changes.
    let preview = deployment.run_hub_raw(&["--plan", "--json"]);
    assert!(preview.status.success(), "{}", String::from_utf8_lossy(&preview.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(plan["plan_id"], plan_id.as_str(), "the preview is the held plan");
    assert_eq!(plan["held"], true);
    for name in NAMES {
        assert_eq!(plan["targets"][name]["employee"]["terminate"], terminated, "{name}: {}", plan["targets"][name]);
        assert_eq!(plan["targets"][name]["employee"]["samples"]["terminate"].as_array().map(Vec::len), Some(5));
    }
    let revoked: u64 = NAMES.iter().filter_map(|n| plan["targets"][n]["permission"]["revoke"].as_u64()).sum();
    assert!(revoked > 0, "leavers' grants are revoked too, and counted: {}", plan["targets"]);
    assert_eq!(deployment.run_hub_raw(&["--plan"]).status.code(), Some(0));
    assert_eq!(everywhere(&deployment, "terminated"), before, "a preview changed a system");

    // A stale id is refused, naming what changed; the approved id applies exactly the plan.
    let stale = deployment.run_hub_raw(&["--approve", "0123456789abcdef0123456789abcdef", "--operator", "hr-lead"]);
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success() && stderr.contains("was approved, but the run the hub would make now is plan"), "{stderr}");
    assert_eq!(everywhere(&deployment, "terminated"), before, "a refused approval changed a system");
    let approved = deployment.run_hub(&["--approve", &plan_id, "--operator", "hr-lead"]);
    assert_clean(&approved, "after the approved run");
    assert_eq!(approved["repaired"], json!({}), "the approved run was delivered, not repaired");
    for (name, (now, was)) in NAMES.iter().zip(everywhere(&deployment, "terminated").into_iter().zip(&before)) {
        assert_eq!(now, was + terminated, "{name} holds the approved terminations");
    }
    // An approval is for one plan: the next run is checked again, and is clean.
    let next = deployment.run_hub(&[]);
    assert!(next["held"].is_null());
    assert_eq!(next["changes_sent"], 0);

    // A third of company B's people missing from the export: held for deletes; the corrected export runs on its own.
    let jsonl = deployment.input.join("company_b/employees.jsonl");
    let full = std::fs::read_to_string(&jsonl).unwrap();
    let truncated: String = full.lines().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&jsonl, truncated).unwrap();
    let truncated_run = deployment.run_hub_raw(&[]);
    assert_eq!(truncated_run.status.code(), Some(3));
    let truncated_plan = deployment.last_report()["held"]["plan_id"].as_str().unwrap().to_string();
    assert!(deployment.last_report()["held"]["reasons"].to_string().contains("deletes"), "{}", deployment.last_report()["held"]);
    // --status names the held run, its reasons and how to approve it.
    let status = deployment.run_hub_raw(&["--status"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("HELD for approval") && stdout.contains(&format!("--approve {truncated_plan}")) && stdout.contains("deletes"), "{stdout}");

    // Approved, the deletes reach every system. Then erp's store is restored from a backup taken
    // before: it holds those people again, at the versions it had. Repairing erp deletes them again,
    // more than [safety] allows: the repairs are held, previewed and approved as a run is.
    let erp_rows = live_rows(&deployment, "erp");
    assert_clean(&deployment.run_hub(&["--approve", &truncated_plan, "--operator", "hr-lead"]), "after the approved deletes");
    let conn = Connection::open(deployment.database("erp")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut restored = 0;
    for (id, version, body) in &erp_rows {
        restored += conn
            .execute("UPDATE employee SET version = ?1, deleted = 0, body = ?2 WHERE id = ?3 AND deleted = 1", rusqlite::params![version, body, id])
            .unwrap();
    }
    drop(conn);
    assert!(restored > 10, "only {restored} deleted people restored in erp");
    let held_repairs = deployment.run_hub_raw(&[]);
    assert_eq!(held_repairs.status.code(), Some(3), "{}", String::from_utf8_lossy(&held_repairs.stderr));
    let report = deployment.last_report();
    let repair_plan = report["held"]["plan_id"].as_str().expect("held repairs name their plan").to_string();
    let reasons = report["held"]["reasons"].to_string();
    assert!(reasons.contains("erp/employee") && reasons.contains("deletes") && !reasons.contains("payroll"), "{reasons}");
    assert_eq!(live_rows(&deployment, "erp").len(), erp_rows.len(), "held repairs deleted people in erp");
    let preview = deployment.run_hub_raw(&["--plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&preview.stdout).unwrap();
    assert_eq!(plan["plan_id"], repair_plan.as_str(), "the preview is the held repairs' plan");
    assert_eq!(plan["targets"]["erp"]["employee"]["repair"], restored, "{}", plan["targets"]);
    assert_eq!(plan["targets"]["erp"]["employee"]["delete"], restored, "{}", plan["targets"]);
    assert!(plan["targets"]["payroll"]["employee"]["repair"].as_u64().unwrap_or(0) == 0, "payroll differs in nothing: {}", plan["targets"]);
    let approved = deployment.run_hub(&["--approve", &repair_plan, "--operator", "hr-lead"]);
    assert_all_match(&approved, "after the approved repairs");
    assert_eq!(approved["repaired_per_target"]["erp"]["employee"], restored);
    assert!(approved["held"].is_null(), "the approved repairs were held: {}", approved["held"]);
    assert_eq!(live_rows(&deployment, "erp").len() as u64 + restored as u64, erp_rows.len() as u64);
    assert_clean(&deployment.run_hub(&[]), "the run after the approved repairs");

    std::fs::write(&jsonl, full).unwrap();
    let corrected = deployment.run_hub(&[]);
    assert!(corrected["held"].is_null(), "creating the people again is not held: {}", corrected["held"]);

    // The audit log: each run with its outcome, the refused and the granted approval by name.
    let audit = deployment.run_hub_raw(&["--audit", "--json"]);
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stderr));
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&audit.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |action: &str, outcome: &str| entries.iter().filter(|e| e["action"] == action && e["detail"]["outcome"] == outcome).count();
    assert_eq!(of("run", "held"), 3, "{entries:#?}");
    assert_eq!(of("approve", "refused"), 1);
    assert!(entries.iter().any(|e| e["action"] == "approve" && e["actor"] == "hr-lead" && e["detail"]["plan_id"] == plan_id.as_str()));
    assert!(entries.iter().any(|e| e["action"] == "run" && e["detail"]["plan_id"] == plan_id.as_str() && e["detail"]["approved"] == true));
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(!text.contains("person_key") && !text.contains("base_salary") && !text.contains("birth_date"), "the audit log holds record content");

    for system in systems {
        stop(system);
    }
}
