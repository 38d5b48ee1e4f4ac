//! A business system publishes the master data it owns (the seed's sales
//! system publishing `md`): erp owns `md.product` and publishes it to every
//! system; a changed or removed row reaches everyone; the hub's runs beside
//! it find no drift and touch none of it; a row of a set erp does not own
//! refuses the file, and a record of a set not the topic owner's, written
//! to the topics directly, is dead-lettered by every system. Three
//! `system` processes and `hub` runs, real broker.

use hr_testdata::{Dataset, GenerateOptions};
use rusqlite::Connection;
use std::time::{Duration, Instant};

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];

/// `(deleted, name)` of every `md.product` row in one system.
fn products(deployment: &Deployment, system: &str) -> Vec<(String, bool, Option<String>)> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut query = conn.prepare("SELECT id, deleted, json_extract(body, '$.name') FROM master_data WHERE id LIKE 'md.product:%' ORDER BY id").unwrap();
    let rows = query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0, r.get::<_, Option<String>>(2)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn catalogue(rows: &[(String, String)]) -> String {
    let mut text = String::from("set,code,name,unit\n");
    for (code, name) in rows {
        text.push_str(&format!("md.product,{code},{name},pcs\n"));
    }
    text
}

#[test]
fn erp_publishes_its_products_to_every_system_and_the_hub_leaves_them_alone() {
    let (deployment, mut systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(200));
    data.write(&deployment.input).unwrap();
    assert_clean(&deployment.run_hub(&[]), "after the first run");

    // erp restarts publishing 50 products.
    let mut rows: Vec<(String, String)> = (1..=50).map(|i| (format!("P{i:03}"), format!("product {i}"))).collect();
    let file = deployment.dir.path().join("products.csv");
    std::fs::write(&file, catalogue(&rows)).unwrap();
    let erp = systems.pop().unwrap();
    let url = erp.url.clone();
    stop(erp);
    systems.push(deployment.restart_with("erp", &url, &["--publish", file.to_str().unwrap()]));
    for name in NAMES {
        wait_until(&format!("{name} holds 50 products"), || products(&deployment, name).iter().filter(|(_, deleted, _)| !deleted).count() == 50);
    }
    let report = deployment.run_hub(&[]);
    assert_clean(&report, "with erp's products in every system");
    assert_eq!(report["repaired"], serde_json::json!({}), "the hub repaired nothing of erp's");
    assert_eq!(report["changes_sent"], 0);

    // A renamed and a removed product reach everyone at erp's next publish.
    rows[0].1 = "product 1 renamed".into();
    rows.pop();
    std::fs::write(&file, catalogue(&rows)).unwrap();
    let erp = systems.pop().unwrap();
    stop(erp);
    systems.push(deployment.restart_with("erp", &url, &["--publish", file.to_str().unwrap()]));
    for name in NAMES {
        wait_until(&format!("{name} holds the republished catalogue"), || {
            let held = products(&deployment, name);
            held.iter().any(|(id, deleted, product)| id == "md.product:P001" && !deleted && product.as_deref() == Some("product 1 renamed"))
                && held.iter().any(|(id, deleted, _)| id == "md.product:P050" && *deleted)
        });
    }
    let report = deployment.run_hub(&[]);
    assert_clean(&report, "after the republish");
    assert_eq!(report["repaired"], serde_json::json!({}));

    // A row of a set erp does not own refuses the whole file.
    let foreign = deployment.dir.path().join("foreign.csv");
    std::fs::write(&foreign, "set,code,name\nmd.product,P900,new product\nmd.category,C9,not erp's\n").unwrap();
    let output = program("system")
        .args(["--name", "erp", "--listen", "127.0.0.1:0", "--brokers", &deployment.brokers, "--config"])
        .arg(&deployment.system_config)
        .arg("--data-dir")
        .arg(deployment.dir.path().join("other"))
        .args(["--publish", foreign.to_str().unwrap()])
        .env("HR_SYSTEM_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("foreign.csv, line 3: set \"md.category\" is not one erp owns (it publishes md.product)"), "{stderr}");
    for name in ["payroll", "orgchart"] {
        assert!(products(&deployment, name).iter().all(|(id, _, _)| id != "md.product:P900"), "{name} got a row of a refused file");
    }

    // Written straight to the topics: a set erp does not own on erp's topic, and
    // erp's set on the hub's topic. Every system dead-letters both and keeps what it held.
    let config = std::fs::read_to_string(&deployment.system_config).unwrap();
    let prefix = config.lines().find_map(|l| l.strip_prefix("topic_prefix = \"")).unwrap().trim_end_matches('"').to_string();
    let envelope = |set: &str, code: &str, version: u64| {
        let md = hr_core::MasterData { set: set.into(), code: code.into(), name: "forged".into(), attributes: Default::default() };
        hr_core::ChangeEnvelope::upsert(hr_core::DataType::MasterData, md.key(), version, "forger", &md).unwrap()
    };
    let forged = [
        (format!("{prefix}master_data.from-erp"), envelope("md.category", "FORGED1", 1)),
        (format!("{prefix}master_data"), envelope("md.product", "P001", 1_000_000)),
    ];
    let dead_letters_before: Vec<usize> = systems.iter().map(|s| s.log.lock().unwrap().iter().filter(|l| l.contains("record dead-lettered")).count()).collect();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &deployment.brokers).create().unwrap();
        for (topic, change) in &forged {
            let payload = change.to_json();
            let record = rdkafka::producer::FutureRecord::to(topic).key(&change.key).payload(&payload);
            producer.send(record, Duration::from_secs(10)).await.unwrap();
        }
    });
    for (system, before) in systems.iter().zip(dead_letters_before) {
        wait_until(&format!("{} dead-lettered both forged records", system.name), || {
            system.log.lock().unwrap().iter().filter(|l| l.contains("record dead-lettered")).count() >= before + 2
        });
        let held = products(&deployment, &system.name);
        assert!(held.iter().any(|(id, _, name)| id == "md.product:P001" && name.as_deref() == Some("product 1 renamed")), "{}: {held:?}", system.name);
        assert_eq!(row(&deployment, &system.name, "master_data", "md.category:FORGED1"), None, "{} stored a set erp does not own", system.name);
    }
    assert_clean(&deployment.run_hub(&[]), "after the forged records");
    for system in systems {
        stop(system);
    }
}
