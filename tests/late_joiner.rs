//! A system that joins with an empty store (new, or rebuilt after losing
//! its database) gets the full current state of everything it may hold at
//! the hub's next run, over both transports, and the other systems receive
//! nothing again. Three `system` processes and `hub` runs, real broker.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];
const TABLES: [&str; 5] = ["employee", "org_unit", "master_data", "permission", "compensation"];

/// Every row's version in one system, by table and key.
fn versions(deployment: &Deployment, system: &str) -> BTreeMap<(String, String), i64> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut all = BTreeMap::new();
    for table in TABLES {
        let mut query = conn.prepare(&format!("SELECT id, version FROM {table}")).unwrap();
        let rows = query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap();
        all.extend(rows.map(|r| r.unwrap()).map(|(id, version)| ((table.to_string(), id), version)));
    }
    all
}

#[test]
fn a_system_with_an_empty_store_gets_everything_at_the_next_run_grants_and_pay_included_and_the_others_nothing_again() {
    let (deployment, mut systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the first run");
    let before: BTreeMap<&str, _> = ["orgchart", "erp"].into_iter().map(|name| (name, versions(&deployment, name))).collect();

    // payroll loses its database and comes back empty, at the same address.
    let payroll = systems.remove(0);
    assert_eq!(payroll.name, "payroll");
    let url = payroll.url.clone();
    stop(payroll);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", deployment.database("payroll").display()));
    }
    systems.push(deployment.restart("payroll", &url));

    let report = deployment.run_hub(&[]);
    assert_all_match(&report, "after payroll rejoined"); // repaired on purpose: REST types reach a rejoined system only by repair
    for t in ["employee", "org_unit", "master_data", "permission", "compensation"] {
        assert_eq!(report["systems"]["payroll"][t]["records"], first["systems"]["payroll"][t]["records"], "payroll/{t}");
        assert!(report["systems"]["payroll"][t]["records"].as_u64().unwrap() > 0, "payroll/{t}");
    }
    // Kafka's types came from the (compacted) topics; payroll's grants and
    // compensation travelled again, over REST, to payroll only.
    assert_eq!(report["changes_sent"], 0, "the run had nothing new to send");
    let repaired = report["repaired"].as_object().unwrap();
    assert_eq!(repaired.keys().collect::<Vec<_>>(), ["compensation", "permission"], "{repaired:?}");
    assert_eq!(report["repaired_per_target"].as_object().unwrap().keys().collect::<Vec<_>>(), ["payroll"], "{}", report["repaired_per_target"]);
    for (name, held) in &before {
        assert_eq!(&versions(&deployment, name), held, "{name} received changes because payroll rejoined");
    }
    for system in systems {
        stop(system);
    }
}
