//! Helpers shared by the real-broker test binaries.
#![allow(dead_code)]

use hr_core::{ChangeEnvelope, DataType, Digest, MasterData};
use std::collections::BTreeMap;
use std::time::Duration;

/// The broker from `HR_KAFKA_BROKERS` (default 127.0.0.1:9092); panics, so the test fails, when none answers.
pub fn brokers() -> String {
    let brokers = std::env::var("HR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap_or_default().to_string();
    if std::net::TcpStream::connect_timeout(&first.parse().expect("HR_KAFKA_BROKERS must be host:port with an IP"), Duration::from_secs(3)).is_err() {
        panic!("no Kafka broker at {brokers}: run `scripts/kafka.sh start` (or set HR_KAFKA_BROKERS)");
    }
    brokers
}

/// A random hex suffix for topic and group names.
pub fn uuid_suffix() -> String {
    format!("{:x}", rand::random::<u64>())
}

/// A master-data change (small, cheap to make in bulk).
pub fn md(i: usize, version: u64) -> ChangeEnvelope {
    let m = MasterData { set: "md.category".into(), code: format!("C{i:05}").into(), name: format!("v{version}").into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, m.key(), version, "test", &m).unwrap()
}

/// The digest a sink must end with after applying `changes`, in any order and with any duplicates.
pub fn digest_of(changes: &[ChangeEnvelope]) -> Digest {
    let mut latest: BTreeMap<&str, &ChangeEnvelope> = BTreeMap::new();
    for c in changes {
        if latest.get(c.key.as_str()).is_none_or(|held| c.version > held.version) {
            latest.insert(&c.key, c);
        }
    }
    let mut d = Digest::default();
    for c in latest.values() {
        let body = c.canonical_payload().expect("valid test change");
        d.add(&c.key, c.version, body.map(|b| hr_core::ContentHash::of(&b)));
    }
    d
}

/// Runs `scripts/kafka.sh <action>` for a broker on `port` (controller on `port + 1`).
pub fn broker_script(action: &str, port: u16) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/kafka.sh"))
        .arg(action)
        .env("KAFKA_PORT", port.to_string())
        .env("KAFKA_CONTROLLER_PORT", (port + 1).to_string())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka.sh {action} failed");
}

/// Stops the broker on `port` when dropped, so a failing test leaves no broker behind.
pub struct BrokerGuard(pub u16);

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let _ = std::process::Command::new("bash")
            .arg(root.join("scripts/kafka.sh"))
            .arg("stop")
            .env("KAFKA_PORT", self.0.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.0 + 1).to_string())
            .status();
    }
}
