//! The multi-process form: three `system` processes and the `hub` on
//! loopback against the real broker (`HR_KAFKA_BROKERS`, default
//! 127.0.0.1:9092; fails when none answers). The examples are built by
//! `cargo test` before tests run; this builds them too in case it runs alone.

use hr_core::{DataType, Digest, DigestEntry, Ledger, RecordScope, Sink, SqliteSink};
use hr_testdata::{Dataset, GenerateOptions};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

mod common;
use common::*;

#[test]
fn hub_and_three_system_processes_converge() {
    let names = ["payroll", "orgchart", "erp"];
    let started = chrono::Utc::now();
    let (deployment, systems) = Deployment::start(&names);
    let mut data = Dataset::generate(&GenerateOptions::scaled(1_000));
    let input = &deployment.input;
    data.write(input).unwrap();

    let first = deployment.run_hub(&[]);
    let sent_first = first["changes_sent"].as_u64().unwrap();
    assert!(sent_first > 2_500, "{first}");
    assert_clean(&first, "after the first run");
    for name in names {
        for (t, r) in first["systems"][name].as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t}: {r}");
        }
    }
    assert!(first["systems"]["orgchart"].get("compensation").is_none());

    // A second run of a separate hub process: only the deltas travel.
    data.evolve(0.01, 5);
    data.write(input).unwrap();
    let second = deployment.run_hub(&[]);
    let sent_second = second["changes_sent"].as_u64().unwrap();
    assert!((5..sent_first / 10).contains(&sent_second), "second run sent {sent_second}");
    assert_clean(&second, "after the second run");
    for name in names {
        for (t, r) in second["systems"][name].as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t} after the delta run: {r}");
        }
    }

    // --log-format json: every stderr line is one JSON object, and each line of the run carries its run_id.
    let output = deployment.hub(&["--log-format", "json"]).env("RUST_LOG", "info").output().expect("hub runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let run_id = deployment.last_report()["run_id"].as_str().expect("the report names its run").to_string();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let of_the_run: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("merged ") || m.starts_with("run done"))).collect();
    assert_eq!(of_the_run.len(), 2, "the run's first and last lines: {lines:?}");
    assert!(of_the_run.iter().all(|l| l["span"]["run_id"] == run_id.as_str()), "{of_the_run:?}");
    assert!(lines.len() >= 3 && lines.iter().all(|l| l["span"]["run_id"] == run_id.as_str()), "every line of a single run carries its id: {lines:?}");

    // The program checkpoints its ledger's log before it exits: a copy of the file alone holds every run.
    let log = std::fs::metadata(deployment.hub_dir.join("hub-ledger.sqlite3-wal")).map_or(0, |m| m.len());
    assert_eq!(log, 0, "the hub left {log} bytes in its ledger's write-ahead log");

    // --watch re-runs the periodic sync: the first pass sends the next change, the second nothing.
    data.evolve(0.01, 0);
    data.write(input).unwrap();
    let mut watching = deployment.hub(&["--watch", "1"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("hub --watch runs");
    let mut sent_per_run = vec![];
    for line in BufReader::new(watching.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("] sent ").nth(1) {
            sent_per_run.push(rest.split(' ').next().unwrap().parse::<u64>().unwrap());
        }
        if sent_per_run.len() == 2 && line.contains("run done") {
            break;
        }
    }
    watching.kill().unwrap();
    watching.wait().unwrap();
    assert!(sent_per_run[0] > 0 && sent_per_run[1] == 0, "sent per watch run: {sent_per_run:?}");
    let last = deployment.last_report();
    for name in names {
        for (t, r) in last["systems"][name].as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t} after the watch runs: {r}");
        }
    }

    // --status: per system and data type, what it holds against the hub, and its Kafka lag.
    let status = deployment.hub(&["--status", "--json"]).output().expect("hub --status runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&status.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let expected_rows: usize = last["systems"].as_object().unwrap().values().map(|types| types.as_object().unwrap().len()).sum();
    assert_eq!(rows.len(), expected_rows, "{rows:?}");
    for row in &rows {
        let (system, t) = (row["system"].as_str().unwrap(), row["data_type"].as_str().unwrap());
        assert_eq!(row["digest_matches"], true, "{row}");
        assert_eq!(row["records"], last["systems"][system][t]["records"], "{row}");
        let over_kafka = ["employee", "org_unit", "master_data"].contains(&t);
        assert_eq!(row["kafka_lag"], if over_kafka { serde_json::json!(0) } else { serde_json::Value::Null }, "{row}");
        // --status reads each system's hr_last_applied_timestamp_seconds gauge: a missing or wrong gauge fails here.
        let last_applied: chrono::DateTime<chrono::Utc> = serde_json::from_value(row["last_applied"].clone()).unwrap_or_else(|e| panic!("{e}: {row}"));
        assert!(last_applied >= started && last_applied <= chrono::Utc::now(), "{row}");
    }

    for system in systems {
        stop(system);
    }
    // The files on disk hold exactly what the hub's ledger says it sent.
    let ledger = Ledger::open(deployment.hub_dir.join("hub-ledger.sqlite3")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let policy = hr_sync::HubConfig::load(Some(&deployment.system_config)).unwrap().policy();
    for name in names {
        let sink = SqliteSink::open(deployment.database(name)).unwrap();
        for row in rows.iter().filter(|r| r["system"] == name) {
            let t: DataType = row["data_type"].as_str().unwrap().parse().unwrap();
            let stored = serde_json::to_value(sink.last_applied(t).unwrap()).unwrap();
            assert_eq!(row["last_applied"], stored, "{name}/{t}: --status shows when the store last applied a change");
        }
        for t in [DataType::Employee, DataType::OrgUnit] {
            // orgchart and erp hold employees without phone and birth date: the ledger's hashes of that audience.
            let audience = policy.scope(name).fields().audience(t);
            assert_eq!(rt.block_on(sink.digest(t)).unwrap(), ledger.digest_for(t, audience.as_deref()).unwrap(), "{name}/{t} on disk");
        }
        // Each system holds exactly the grants for itself, and no other.
        let scope = RecordScope::new(name, false);
        let own: Vec<DigestEntry> = ledger.entries(DataType::Permission).unwrap().into_iter().filter(|e| scope.admits(DataType::Permission, &e.key)).collect();
        assert!(!own.is_empty(), "{name} has grants of its own");
        assert_eq!(rt.block_on(sink.digest(DataType::Permission)).unwrap(), Digest::of(&own), "{name}/permission on disk");
        assert_eq!(sink.count(DataType::Compensation).unwrap() > 0, name == "payroll");
    }
}
