//! The program as a user runs it: `hr-sync --help` names every subcommand,
//! and `hr-sync demo` runs the seed's scenario on the embedded Kafka (at a
//! small scale), exits 0 and writes a report in which every system's digest
//! equals the hub's.

use std::process::Command;

fn hr_sync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hr-sync"))
}

#[test]
fn help_names_each_subcommand_with_an_example() {
    let out = hr_sync().arg("--help").output().unwrap();
    assert!(out.status.success());
    for (subcommand, flag) in [
        ("demo", "--brokers"),
        ("hub", "--watch"),
        ("system", "--listen"),
        ("dead-letters", "--data-type"),
        ("generate", "--employees"),
        ("merge", "--report"),
        ("schemas", "--out"),
    ] {
        assert!(String::from_utf8_lossy(&out.stdout).contains(subcommand), "{}", String::from_utf8_lossy(&out.stdout));
        let help = hr_sync().args([subcommand, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success() && text.contains("Example: `") && text.contains(&format!("hr-sync {subcommand}")) && text.contains(flag), "{text}");
    }
}

#[test]
fn the_demo_runs_the_seed_scenario_and_every_system_matches_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = hr_sync().args(["demo", "--employees", "300", "--data-dir"]).arg(dir.path().join("demo")).arg("--report").arg(&report).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let systems = report["systems"].as_object().expect("the report names the systems");
    assert_eq!(systems.len(), 3, "{systems:?}");
    for (name, types) in systems {
        for (t, r) in types.as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t}: {r}");
        }
    }
}

#[test]
fn generate_then_merge_writes_a_report_of_what_was_generated() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let out = hr_sync().args(["generate", "--employees", "60", "--out"]).arg(&input).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = dir.path().join("merge.json");
    let out = hr_sync().args(["merge", "--input"]).arg(&input).arg("--report").arg(&report).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let employees = report["counts"]["employee"].as_u64().unwrap();
    assert!((50..=60).contains(&employees), "{report}");
    let schemas = dir.path().join("schemas");
    let out = hr_sync().args(["schemas", "--out"]).arg(&schemas).output().unwrap();
    assert!(out.status.success() && schemas.join("envelope.schema.json").is_file(), "{}", String::from_utf8_lossy(&out.stderr));
}
