//! A deployment as docs/security.md ("Deploying securely") describes it: a real
//! broker with only a SASL_SSL client listener (SCRAM-SHA-512 users, TLS
//! with a certificate from a throwaway CA) and the StandardAuthorizer
//! denying what no ACL allows; the ACLs are the ones `hub --print-acls`
//! prints, added by `scripts/kafka.sh acls`. The hub and three `system`
//! processes each log in as their own principal, through `[kafka]` in the
//! configuration and their own environment; erp publishes its product
//! catalogue on its own master-data topic. Ports 19492 (unused
//! plaintext name), 19493 (controller), 19494 (SASL_SSL).

use hr_core::{ChangeEnvelope, DataType, MasterData};
use hr_testdata::{Dataset, GenerateOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::*;

const PORT: u16 = 19492;
const SECURE_PORT: u16 = 19494;
const SYSTEMS: [&str; 3] = ["payroll", "orgchart", "erp"];

/// (CA PEM, broker key + certificate PEM) for 127.0.0.1.
fn password(user: &str) -> String {
    format!("{user}-pw-{:x}", rand::random::<u64>())
}

/// A client of the secure listener logged in as `user`.
fn client(ca: &Path, user: &str, password: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", format!("127.0.0.1:{SECURE_PORT}"))
        .set("security.protocol", "sasl_ssl")
        .set("ssl.ca.location", ca.display().to_string())
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password);
    config
}

fn kafka_script(args: &[&str], env: &[(&str, String)]) {
    let status = Command::new("bash")
        .arg("scripts/kafka.sh")
        .args(args)
        .env("KAFKA_PORT", PORT.to_string())
        .env("KAFKA_CONTROLLER_PORT", (PORT + 1).to_string())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka.sh {args:?} failed");
}

#[test]
fn every_principal_reaches_only_its_own_topics_and_the_seed_scenario_converges() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki("hr-sync secure deployment test CA");
    let (ca_pem, broker_pem) = (pki.ca, format!("{}{}", pki.key, pki.cert));
    let (ca, broker) = (dir.path().join("ca.pem"), dir.path().join("broker.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&broker, broker_pem).unwrap();
    let users: Vec<(&str, String)> = ["admin", "hub"].into_iter().chain(SYSTEMS).map(|u| (u, password(u))).collect();
    let password_of = |user: &str| users.iter().find(|(u, _)| *u == user).unwrap().1.clone();
    let broker_env = vec![
        ("KAFKA_SASL_SSL_PORT", SECURE_PORT.to_string()),
        ("KAFKA_SSL_PEM", broker.display().to_string()),
        ("KAFKA_SSL_CA", ca.display().to_string()),
        ("KAFKA_SASL_USERS", users.iter().map(|(u, p)| format!("{u}:{p}")).collect::<Vec<_>>().join(",")),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_string()),
        ("KAFKA_ACLS", "1".to_string()),
    ];
    // A broker left by an earlier run has other users and another certificate: start afresh.
    kafka_script(&["stop"], &broker_env);
    let _ = std::fs::remove_dir_all(format!(".kafka/data-{PORT}"));
    kafka_script(&["start"], &broker_env);
    let _broker = BrokerGuard(PORT);

    // One configuration for every program; each has its own principal in its environment.
    let prefix = format!("t.secure.{:x}.", rand::random::<u32>());
    let security = format!(
        "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username_env = \"HR_KAFKA_USER\"\n\
         sasl_password_env = \"HR_KAFKA_PASSWORD\"\nca_file = \"{}\"\n",
        ca.display()
    );
    // payroll owns a set too, so that erp's principal meets another owner's topic.
    let base = std::fs::read_to_string("config/hr-sync.example.toml")
        .unwrap()
        .replace("topic_prefix = \"hr.v1.\"", &format!("topic_prefix = \"{prefix}\""))
        .replace("[targets.payroll]\n", "[targets.payroll]\npublishes = [\"md.paygrade\"]\n");
    let system_config = dir.path().join("systems.toml");
    std::fs::write(&system_config, format!("{base}\n{security}")).unwrap();

    // The ACLs, as the hub prints them for this configuration.
    let printed = program("hub").arg("--config").arg(&system_config).arg("--print-acls").output().unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let acl_file = dir.path().join("acls.txt");
    std::fs::write(&acl_file, &printed.stdout).unwrap();
    kafka_script(&["acls", &acl_file.display().to_string()], &broker_env);

    // The systems, then the hub, each as itself.
    let brokers = format!("127.0.0.1:{SECURE_PORT}");
    let systems_dir = dir.path().join("systems");
    let mut systems: Vec<SystemProcess> = SYSTEMS
        .iter()
        .map(|name| {
            let password = password_of(name);
            let env = [("HR_KAFKA_USER", *name), ("HR_KAFKA_PASSWORD", password.as_str())];
            start_system_env(name, "127.0.0.1:0", &system_config, &systems_dir, &brokers, &[], &env)
        })
        .collect();
    let mut hub_config = format!("{base}\n{security}");
    for system in &systems {
        let header = format!("[targets.{}]\n", system.name);
        hub_config = hub_config.replace(&header, &format!("{header}url = \"{}\"\ntoken_env = \"HR_TEST_TOKEN\"\n", system.url));
    }
    let hub_config_path = dir.path().join("hub.toml");
    std::fs::write(&hub_config_path, hub_config).unwrap();
    let input = dir.path().join("input");
    Dataset::generate(&GenerateOptions::scaled(300)).write(&input).unwrap();
    let report = dir.path().join("report.json");
    let hub_password = password_of("hub");
    let run_hub = || {
        let output = program("hub")
            .arg("--input")
            .arg(&input)
            .arg("--config")
            .arg(&hub_config_path)
            .arg("--data-dir")
            .arg(dir.path().join("hub"))
            .arg("--report")
            .arg(&report)
            .args(["--brokers", &brokers, "--deadline-secs", "120"])
            .env("HR_TEST_TOKEN", TOKEN)
            .env("HR_KAFKA_USER", "hub")
            .env("HR_KAFKA_PASSWORD", &hub_password)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "hub failed:\n{stderr}");
        for (_, secret) in &users {
            assert!(!stderr.contains(secret.as_str()), "the hub logged a Kafka password");
        }
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&report).unwrap()).unwrap()
    };
    let first = run_hub();
    assert!(first["changes_sent"].as_u64().unwrap() > 500, "{first}");
    assert_clean(&first, "after the first run over SASL_SSL with ACLs");
    let second = run_hub();
    assert_eq!(second["changes_sent"], 0, "{second}");
    assert_clean(&second, "after the second run");
    // erp, the owner of md.product, publishes on its own master-data topic as itself; every system applies it.
    let catalogue = dir.path().join("products.csv");
    std::fs::write(&catalogue, "set,code,name\nmd.product,P001,product one\nmd.product,P002,product two\n").unwrap();
    let erp = systems.pop().unwrap();
    let erp_listen = erp.url.trim_start_matches("http://").to_string();
    stop(erp);
    let erp_password = password_of("erp");
    let env = [("HR_KAFKA_USER", "erp"), ("HR_KAFKA_PASSWORD", erp_password.as_str())];
    let publish = ["--publish", catalogue.to_str().unwrap()];
    systems.push(start_system_env("erp", &erp_listen, &system_config, &systems_dir, &brokers, &publish, &env));
    systems.last().unwrap().wait_for_log("applied in every system", Duration::from_secs(120));
    let status = program("hub")
        .args(["--input", input.to_str().unwrap(), "--config", hub_config_path.to_str().unwrap(), "--data-dir", dir.path().join("hub").to_str().unwrap()])
        .args(["--brokers", &brokers, "--status"])
        .env("HR_TEST_TOKEN", TOKEN)
        .env("HR_KAFKA_USER", "hub")
        .env("HR_KAFKA_PASSWORD", &hub_password)
        .output()
        .unwrap();
    let shown = format!("{}{}", String::from_utf8_lossy(&status.stdout), String::from_utf8_lossy(&status.stderr));
    assert!(status.status.success() && shown.contains("payroll"), "{shown}");
    assert!(!shown.contains(&hub_password) && !shown.contains(TOKEN), "--status shows a secret");
    let third = run_hub();
    assert_eq!(third["changes_sent"], 0, "{third}");
    assert_clean(&third, "after erp published over its own topic");

    for system in &systems {
        let log = system.log.lock().unwrap().join("\n");
        for (_, secret) in &users {
            assert!(!log.contains(secret.as_str()), "{} logged a Kafka password", system.name);
        }
    }

    // erp's principal: the full employee topic is closed to it (its audience's is not).
    let full_employee = format!("{prefix}employee");
    let erp = client(&ca, "erp", &password_of("erp"));
    let reader: BaseConsumer = erp.clone().set("group.id", format!("{prefix}erp")).set("enable.auto.commit", "false").create().unwrap();
    let metadata = reader.fetch_metadata(Some(&full_employee), Duration::from_secs(20)).unwrap();
    assert_eq!(metadata.topics()[0].error().map(RDKafkaErrorCode::from), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "erp sees the full employee topic");
    reader.subscribe(&[&full_employee]).unwrap();
    match reader.poll(Duration::from_secs(10)) {
        Some(Err(e)) => assert!(e.to_string().contains("authoriz") || e.to_string().contains("Authoriz"), "{e}"),
        Some(Ok(message)) => panic!("erp read a record of the full employee topic at offset {}", rdkafka::Message::offset(&message)),
        None => panic!("erp's read of the full employee topic was neither refused nor empty-handed with an error"),
    }
    let audience = metadata_error(&erp, &format!("{prefix}employee.without-birth_date-phone"));
    assert_eq!(audience, None, "erp reads its own audience's topic");

    // erp can produce on no data topic, its own audience's, the hub's master data and another owner's included (only on its own master-data topic).
    let producer: FutureProducer = erp.clone().set("message.timeout.ms", "10000").create().unwrap();
    let forged = forged_master_data();
    let others = [format!("{prefix}org_unit"), format!("{prefix}employee.without-birth_date-phone"), full_employee.clone(), format!("{prefix}master_data")];
    for topic in others.into_iter().chain([format!("{prefix}master_data.from-payroll")]) {
        let sent = futures_block(producer.send(FutureRecord::to(&topic).key("forged").payload(&forged), Duration::from_secs(10)));
        let code = sent.err().map(|(e, _)| e.rdkafka_error_code());
        assert_eq!(code, Some(Some(RDKafkaErrorCode::TopicAuthorizationFailed)), "erp produced on {topic}");
    }

    // The dead-letter tool runs as the hub: it reads every dead-letter topic of master data, each owner's included.
    let listed = program("dead-letters")
        .args(["list", "--data-type", "master_data", "--brokers", &brokers, "--config"])
        .arg(&system_config)
        .env("HR_KAFKA_USER", "hub")
        .env("HR_KAFKA_PASSWORD", &hub_password)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "dead_letters as the hub: {}{shown}", String::from_utf8_lossy(&listed.stderr));
    assert!(shown.contains("0 dead letters"), "{shown}");

    // A plaintext client gets nothing from the broker: no metadata, no topic.
    let plain: BaseConsumer = ClientConfig::new().set("bootstrap.servers", format!("127.0.0.1:{SECURE_PORT}")).set("group.id", "plain").create().unwrap();
    assert!(plain.fetch_metadata(None, Duration::from_secs(10)).is_err(), "a plaintext client got metadata from the secure listener");

    for system in systems {
        stop(system);
    }
}

fn metadata_error(client: &ClientConfig, topic: &str) -> Option<RDKafkaErrorCode> {
    let consumer: BaseConsumer = client.clone().set("group.id", "metadata-probe").create().unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(20)).unwrap();
    metadata.topics()[0].error().map(RDKafkaErrorCode::from)
}

fn forged_master_data() -> String {
    let md = MasterData { set: "md.category".into(), code: "FORGED".into(), name: "forged".into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1_000_000, "erp", &md).unwrap().to_json()
}

fn futures_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}
