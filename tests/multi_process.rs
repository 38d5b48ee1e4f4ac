//! The multi-process form: three `system` processes and the `hub` on
//! loopback against the real broker (`HR_KAFKA_BROKERS`, default
//! 127.0.0.1:9092; fails when none answers). The examples are built by
//! `cargo test` before tests run; this builds them too in case it runs alone.

use hr_core::{DataType, Ledger, Sink, SqliteSink};
use hr_sync::generate::{Dataset, GenerateOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "multi-process-test-token";

fn example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO")).args(["build", "--quiet", "--example", "hub", "--example", "system"]).status().expect("cargo runs");
    assert!(status.success(), "building the examples failed");
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join(name)
}

struct SystemProcess {
    child: Child,
    url: String,
}

fn start_system(name: &str, config: &Path, data_dir: &Path, brokers: &str) -> SystemProcess {
    let mut child = Command::new(example("system"))
        .args(["--name", name, "--listen", "127.0.0.1:0", "--brokers", brokers, "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("HR_SYSTEM_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("system starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{name} printed {line:?}");
    SystemProcess { child, url }
}

fn stop(system: SystemProcess) {
    let pid = system.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut child = system.child;
    let status = child.wait().unwrap();
    assert!(status.success(), "a system did not stop cleanly: {status}");
}

fn run_hub(input: &Path, config: &Path, data_dir: &Path, report: &Path, brokers: &str) -> serde_json::Value {
    let output = Command::new(example("hub"))
        .arg("--input")
        .arg(input)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--report")
        .arg(report)
        .args(["--brokers", brokers, "--deadline-secs", "120"])
        .env("HR_TEST_TOKEN", TOKEN)
        .output()
        .expect("hub runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hub failed:\n{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    assert!(!stderr.contains(TOKEN), "the hub logged a token");
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

#[test]
fn hub_and_three_system_processes_converge() {
    let brokers = std::env::var("HR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let addr = brokers.split(',').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).is_ok(), "no Kafka broker at {brokers}: run scripts/kafka.sh start");
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("t.multi.{:x}.", rand::random::<u64>());
    let base = std::fs::read_to_string("config/hr-sync.example.toml").unwrap().replace("topic_prefix = \"hr.v1.\"", &format!("topic_prefix = \"{prefix}\""));
    let system_config = dir.path().join("systems.toml");
    std::fs::write(&system_config, &base).unwrap();

    let systems_dir = dir.path().join("systems");
    let names = ["payroll", "orgchart", "erp"];
    let systems: Vec<SystemProcess> = names.iter().map(|n| start_system(n, &system_config, &systems_dir, &brokers)).collect();

    let mut hub_config = base.clone();
    for (name, system) in names.iter().zip(&systems) {
        let header = format!("[targets.{name}]\n");
        hub_config = hub_config.replace(&header, &format!("{header}url = \"{}\"\ntoken_env = \"HR_TEST_TOKEN\"\n", system.url));
    }
    let hub_config_path = dir.path().join("hub.toml");
    std::fs::write(&hub_config_path, hub_config).unwrap();

    let mut data = Dataset::generate(&GenerateOptions::scaled(1_000));
    let input = dir.path().join("input");
    data.write(&input).unwrap();
    let hub_dir = dir.path().join("hub");
    let report = dir.path().join("report.json");

    let first = run_hub(&input, &hub_config_path, &hub_dir, &report, &brokers);
    let sent_first = first["changes_sent"].as_u64().unwrap();
    assert!(sent_first > 2_500, "{first}");
    for name in names {
        for (t, r) in first["systems"][name].as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t}: {r}");
        }
    }
    assert!(first["systems"]["orgchart"].get("compensation").is_none());

    // A second run of a separate hub process: only the deltas travel.
    data.evolve(0.01, 5);
    data.write(&input).unwrap();
    let second = run_hub(&input, &hub_config_path, &hub_dir, &report, &brokers);
    let sent_second = second["changes_sent"].as_u64().unwrap();
    assert!((5..sent_first / 10).contains(&sent_second), "second run sent {sent_second}");
    for name in names {
        for (t, r) in second["systems"][name].as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t} after the delta run: {r}");
        }
    }

    // --watch re-runs the periodic sync: the first pass sends the next change, the second nothing.
    data.evolve(0.01, 0);
    data.write(&input).unwrap();
    let mut watching = Command::new(example("hub"))
        .arg("--input")
        .arg(&input)
        .arg("--config")
        .arg(&hub_config_path)
        .arg("--data-dir")
        .arg(&hub_dir)
        .arg("--report")
        .arg(&report)
        .args(["--brokers", &brokers, "--watch", "1"])
        .env("HR_TEST_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hub --watch runs");
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
    let last: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    for name in names {
        for (t, r) in last["systems"][name].as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t} after the watch runs: {r}");
        }
    }

    for system in systems {
        stop(system);
    }
    // The files on disk hold exactly what the hub's ledger says it sent.
    let ledger = Ledger::open(hub_dir.join("hub-ledger.sqlite3")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for name in names {
        let sink = SqliteSink::open(systems_dir.join(format!("{name}.sqlite3"))).unwrap();
        for t in [DataType::Employee, DataType::OrgUnit, DataType::Permission] {
            assert_eq!(rt.block_on(sink.digest(t)).unwrap(), ledger.digest(t).unwrap(), "{name}/{t} on disk");
        }
        assert_eq!(sink.count(DataType::Compensation).unwrap() > 0, name == "payroll");
    }
}
