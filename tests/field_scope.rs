//! Phone numbers and birth dates reach only payroll, on every path, with
//! the seed's configuration (`omit.employee = ["phone", "birth_date"]` for
//! orgchart and erp): in the systems' stores, on the Kafka topics their
//! consumer groups read, and after a repair. Three `system` processes and
//! `hub` runs, real broker.

use hr_sync::HubConfig;
use hr_testdata::{Dataset, GenerateOptions};
use prometheus_parse::{Scrape, Value};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rusqlite::Connection;
use std::time::Duration;

mod common;
use common::*;

const NAMES: [&str; 3] = ["payroll", "orgchart", "erp"];
const PERSONAL: [&str; 2] = ["phone", "birth_date"];

/// How many of a system's employees carry each personal field.
fn personal_details_held(deployment: &Deployment, system: &str) -> [i64; 2] {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    PERSONAL.map(|field| {
        let sql = format!("SELECT count(*) FROM employee WHERE json_extract(body, '$.{field}') IS NOT NULL");
        conn.query_row(&sql, [], |r| r.get(0)).unwrap()
    })
}

/// Every payload on `topic`, read from the beginning of each partition to its end.
fn payloads_on(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "field-scope-probe")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "{topic} exists");
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout).unwrap();
        remaining += high - low;
        assignment.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut payloads = vec![];
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while remaining > 0 && std::time::Instant::now() < give_up {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            payloads.push(envelope["payload"].clone());
            remaining -= 1;
        }
    }
    assert_eq!(remaining, 0, "read all of {topic}");
    payloads
}

/// What a system's `hr_changes_fields_dropped_total` says: records it was
/// sent with a field it goes without (its `ScopedSink` dropped them).
fn fields_dropped(url: &str) -> Option<f64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let text = rt.block_on(async { reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap() });
    let samples = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap().samples;
    let dropped: Vec<f64> = samples
        .iter()
        .filter(|s| s.metric == "hr_changes_fields_dropped_total")
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .collect();
    (!dropped.is_empty()).then(|| dropped.iter().sum())
}

fn carries(payload: &serde_json::Value, field: &str) -> bool {
    payload.get(field).is_some_and(|v| !v.is_null())
}

#[test]
fn phone_and_birth_date_reach_only_payroll_on_every_path_and_a_planted_one_is_repaired_away() {
    let (deployment, systems) = Deployment::start(&NAMES);
    let data = Dataset::generate(&GenerateOptions::scaled(300));
    data.write(&deployment.input).unwrap();
    let first = deployment.run_hub(&[]);
    assert_clean(&first, "after the first run");

    let [phones, birth_dates] = personal_details_held(&deployment, "payroll");
    assert!(phones > 0 && birth_dates > 0, "payroll holds them: {phones} phones, {birth_dates} birth dates");
    for system in ["orgchart", "erp"] {
        assert_eq!(personal_details_held(&deployment, system), [0, 0], "{system} holds no phone number or birth date");
    }

    // On the broker: the topic orgchart's and erp's groups read never carried them.
    let prefix = HubConfig::load(Some(&deployment.system_config)).unwrap().topic_prefix;
    let full = payloads_on(&deployment.brokers, &format!("{prefix}employee"));
    let reduced = payloads_on(&deployment.brokers, &format!("{prefix}employee.without-birth_date-phone"));
    assert_eq!(full.len(), reduced.len(), "one copy per change on each audience's topic");
    assert!(full.iter().any(|p| carries(p, "phone")), "the full topic carries phone numbers (payroll's)");
    for field in PERSONAL {
        assert!(!reduced.iter().any(|p| carries(p, field)), "a message on the reduced topic carries {field}");
    }
    // The hub sent them none: no system had to drop a field on arrival.
    for system in &systems[1..] {
        assert_eq!(fields_dropped(&system.url), Some(0.0), "{} was sent fields it goes without", system.name);
    }

    // A phone number planted in erp by hand is drift; the repair takes it away.
    let id: String = {
        let conn = Connection::open(deployment.database("erp")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        let id = conn.query_row("SELECT id FROM employee WHERE deleted = 0 ORDER BY id LIMIT 1", [], |r| r.get(0)).unwrap();
        let planted = conn.execute("UPDATE employee SET body = json_set(body, '$.phone', '010-0000-0000') WHERE id = ?1", [&id]).unwrap();
        assert_eq!(planted, 1);
        id
    };
    let report = deployment.run_hub(&[]);
    assert_eq!(report["drift_found"]["erp"]["employee"]["drift"]["edited"][0]["key"], id.as_str(), "{}", report["drift_found"]);
    assert_eq!(report["repaired"]["employee"], 1, "{}", report["repaired"]);
    assert_all_match(&report, "after the repair");
    assert_eq!(personal_details_held(&deployment, "erp"), [0, 0], "the repair sent erp the record without the phone number");
    assert!(personal_details_held(&deployment, "payroll")[0] == phones, "payroll keeps its phone numbers");
    let reduced = payloads_on(&deployment.brokers, &format!("{prefix}employee.without-birth_date-phone"));
    assert!(!reduced.iter().any(|p| PERSONAL.iter().any(|f| carries(p, f))), "the repair went out with a personal field");
    for system in &systems[1..] {
        assert_eq!(fields_dropped(&system.url), Some(0.0), "{} was sent fields it goes without", system.name);
    }
    for system in systems {
        stop(system);
    }
}
