//! The separate-process form for tests: `system` and `hub` example
//! processes on loopback against the real broker (`HR_KAFKA_BROKERS`,
//! default 127.0.0.1:9092; a test fails when none answers).
#![allow(dead_code)]

use rusqlite::{Connection, OptionalExtension};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "multi-process-test-token-0123456789a";

/// `hr-sync SUBCOMMAND`, the program a user installs; builds it in case the test runs alone.
pub fn program(subcommand: &str) -> Command {
    let status = Command::new(env!("CARGO")).args(["build", "--quiet", "-p", "hr-sync-cli"]).status().expect("cargo runs");
    assert!(status.success(), "building hr-sync failed");
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let mut command = Command::new(deps.parent().unwrap().join("hr-sync"));
    command.arg(subcommand);
    command
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost, as PEM.
pub struct TestPki {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A fresh [`TestPki`]; the CA's common name is `ca_name`.
pub fn test_pki(ca_name: &str) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: OpenSSL mistakes a self-signed CA named like its leaf for the leaf.
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    TestPki { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() }
}

/// The broker to use; panics when it does not answer.
pub fn brokers() -> String {
    let brokers = std::env::var("HR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let addr = brokers.split(',').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).is_ok(), "no Kafka broker at {brokers}: run scripts/kafka.sh start");
    brokers
}

pub struct SystemProcess {
    pub name: String,
    pub child: Child,
    pub url: String,
    /// Its stderr lines so far (also echoed to the test's stderr).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SystemProcess {
    /// Waits (at most `within`) for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) {
        let until = Instant::now() + within;
        while !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(Instant::now() < until, "{} never logged {needle:?}; it logged:\n{}", self.name, self.log.lock().unwrap().join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `hr-sync system` listening on `listen` (`127.0.0.1:0`: any port).
pub fn start_system(name: &str, listen: &str, config: &Path, data_dir: &Path, brokers: &str) -> SystemProcess {
    start_system_with(name, listen, config, data_dir, brokers, &[])
}

/// [`start_system`] with further arguments (e.g. `--publish FILE`).
pub fn start_system_with(name: &str, listen: &str, config: &Path, data_dir: &Path, brokers: &str, extra: &[&str]) -> SystemProcess {
    start_system_env(name, listen, config, data_dir, brokers, extra, &[])
}

/// [`start_system_with`] with further environment variables (e.g. its Kafka principal).
pub fn start_system_env(name: &str, listen: &str, config: &Path, data_dir: &Path, brokers: &str, extra: &[&str], env: &[(&str, &str)]) -> SystemProcess {
    let mut child = program("system")
        .args(["--name", name, "--listen", listen, "--brokers", brokers, "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .envs(env.iter().copied())
        .env("HR_SYSTEM_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("system starts");
    let log = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let (lines, kept) = (child.stderr.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(lines).lines().map_while(Result::ok) {
            eprintln!("{line}");
            kept.lock().unwrap().push(line);
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"), "{name} printed {line:?}");
    SystemProcess { name: name.to_string(), child, url, log }
}

/// SIGTERM, and the process must leave cleanly.
pub fn stop(mut system: SystemProcess) {
    let pid = system.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = system.child.wait().unwrap();
    assert!(status.success(), "a system did not stop cleanly: {status}");
}

/// A test that fails half way leaves no system running (it would hold the
/// test harness's output open).
impl Drop for SystemProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The real SCIM provider (`HR_SCIM_URL`, started by `scripts/scim.sh`) and
/// its token: a tenant of its own for each caller, so tests never share a directory.
pub fn scim_tenant() -> (String, String) {
    let url = std::env::var("HR_SCIM_URL").expect("HR_SCIM_URL: start the SCIM provider with `bash scripts/scim.sh start` (scripts/test.sh does)");
    let token = std::env::var("HR_SCIM_TOKEN").unwrap_or_else(|_| "hr-sync-test-token-for-the-scim-provider-0001".into());
    (format!("{}/t{:x}", url.trim_end_matches('/'), rand::random::<u64>()), token)
}

/// Company A's employees file with one person's `status` and `updated_at` changed.
pub fn with_status(csv: &str, local_id: &str, status: &str, updated_at: &str) -> String {
    csv.lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(',').collect();
            if fields[0] == local_id {
                fields[7] = status;
                fields[13] = updated_at;
            }
            fields.join(",") + "\n"
        })
        .collect()
}

/// A deployment on disk: the systems' configuration, the hub's (with their
/// URLs and token variable), the input, the hub's data directory.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub brokers: String,
    pub system_config: PathBuf,
    pub hub_config: PathBuf,
    pub systems_dir: PathBuf,
    pub input: PathBuf,
    pub hub_dir: PathBuf,
    pub report: PathBuf,
}

impl Deployment {
    /// Writes the configuration (fresh topic prefix) and starts the named systems.
    pub fn start(names: &[&str]) -> (Deployment, Vec<SystemProcess>) {
        Self::start_on(names, brokers())
    }

    /// [`start`](Self::start) against `brokers`, whether they answer or not.
    pub fn start_on(names: &[&str], brokers: String) -> (Deployment, Vec<SystemProcess>) {
        Self::start_configured(names, brokers, &[], &[], "")
    }

    /// [`start_on`](Self::start_on), each system started with `extra`
    /// arguments and `env`, and `hub_settings` at the top of the hub's configuration.
    pub fn start_configured(names: &[&str], brokers: String, extra: &[&str], env: &[(&str, &str)], hub_settings: &str) -> (Deployment, Vec<SystemProcess>) {
        Self::start_edited(names, brokers, extra, env, hub_settings, &|base| base)
    }

    /// [`start_configured`](Self::start_configured) with the configuration
    /// every program reads (the example's, with a fresh topic prefix) passed through `edit`.
    pub fn start_edited(
        names: &[&str],
        brokers: String,
        extra: &[&str],
        env: &[(&str, &str)],
        hub_settings: &str,
        edit: &dyn Fn(String) -> String,
    ) -> (Deployment, Vec<SystemProcess>) {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("t.multi.{:x}.", rand::random::<u64>());
        let base =
            edit(std::fs::read_to_string("config/hr-sync.example.toml").unwrap().replace("topic_prefix = \"hr.v1.\"", &format!("topic_prefix = \"{prefix}\"")));
        let system_config = dir.path().join("systems.toml");
        std::fs::write(&system_config, &base).unwrap();
        let systems_dir = dir.path().join("systems");
        let systems: Vec<SystemProcess> =
            names.iter().map(|n| start_system_env(n, "127.0.0.1:0", &system_config, &systems_dir, &brokers, extra, env)).collect();
        let mut hub_config = format!("{hub_settings}\n{base}");
        for system in &systems {
            let header = format!("[targets.{}]\n", system.name);
            hub_config = hub_config.replace(&header, &format!("{header}url = \"{}\"\ntoken_env = \"HR_TEST_TOKEN\"\n", system.url));
        }
        let hub_config_path = dir.path().join("hub.toml");
        std::fs::write(&hub_config_path, hub_config).unwrap();
        let deployment = Deployment {
            input: dir.path().join("input"),
            hub_dir: dir.path().join("hub"),
            report: dir.path().join("report.json"),
            dir,
            brokers,
            system_config,
            hub_config: hub_config_path,
            systems_dir,
        };
        (deployment, systems)
    }

    /// Starts a system again where it listened before (same URL, same database).
    pub fn restart(&self, name: &str, url: &str) -> SystemProcess {
        self.restart_with(name, url, &[])
    }

    /// [`restart`](Self::restart) with further arguments for the system.
    pub fn restart_with(&self, name: &str, url: &str, extra: &[&str]) -> SystemProcess {
        start_system_with(name, url.trim_start_matches("http://"), &self.system_config, &self.systems_dir, &self.brokers, extra)
    }

    /// The hub command for this deployment, plus `extra` arguments.
    pub fn hub(&self, extra: &[&str]) -> Command {
        let mut command = program("hub");
        command
            .arg("--input")
            .arg(&self.input)
            .arg("--config")
            .arg(&self.hub_config)
            .arg("--data-dir")
            .arg(&self.hub_dir)
            .arg("--report")
            .arg(&self.report)
            .args(["--brokers", &self.brokers, "--deadline-secs", "120"])
            .args(extra)
            .env("HR_TEST_TOKEN", TOKEN);
        command
    }

    /// Runs the hub once; it must succeed and not log the token. Returns its report.
    pub fn run_hub(&self, extra: &[&str]) -> serde_json::Value {
        let output = self.hub(extra).output().expect("hub runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "hub failed:\n{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
        assert!(!stderr.contains(TOKEN), "the hub logged a token");
        self.last_report()
    }

    /// Runs the hub once, whatever its exit status.
    pub fn run_hub_raw(&self, extra: &[&str]) -> Output {
        self.hub(extra).output().expect("hub runs")
    }

    /// The report last written (`null` while none or half written).
    pub fn last_report(&self) -> serde_json::Value {
        std::fs::read(&self.report).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    /// A system's database.
    pub fn database(&self, name: &str) -> PathBuf {
        self.systems_dir.join(format!("{name}.sqlite3"))
    }
}

/// Asserts every system's every data type in a hub report holds the hub's digest.
pub fn assert_all_match(report: &serde_json::Value, when: &str) {
    let systems = report["systems"].as_object().unwrap_or_else(|| panic!("no systems in the report {when}: {report}"));
    assert!(!systems.is_empty() && systems.values().all(|t| !t.as_object().unwrap().is_empty()), "nothing reconciled {when}: {report}");
    for (name, types) in systems {
        for (t, r) in types.as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{name}/{t} {when}: {r}");
        }
    }
}

/// Asserts a run meant to be clean was: every system matched the hub
/// *before* any repair, nothing was repaired, and every system matches
/// after. A delivery bug that the same run's repair heals fails here.
#[allow(dead_code)] // Not every test binary that includes this module calls it.
pub fn assert_clean(report: &serde_json::Value, when: &str) {
    assert_all_match(report, when);
    assert_eq!(report["repaired"], serde_json::json!({}), "{when}: a run meant to be clean repaired something: {}", report["drift_found"]);
    for (name, types) in report["drift_found"].as_object().unwrap_or_else(|| panic!("no drift_found in the report {when}")) {
        for (t, r) in types.as_object().unwrap() {
            assert_eq!(r["digest_matches"], true, "{when}: {name}/{t} differed before repair: {r}");
        }
    }
}

/// Runs `scripts/kafka.sh <action>` for a broker of its own on `port`.
pub fn broker_script(action: &str, port: u16) {
    let status = Command::new("bash")
        .arg("scripts/kafka.sh")
        .arg(action)
        .env("KAFKA_PORT", port.to_string())
        .env("KAFKA_CONTROLLER_PORT", (port + 1).to_string())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka.sh {action} on port {port} failed");
}

/// Stops the broker on its port when dropped, so a failing test leaves none behind.
pub struct BrokerGuard(pub u16);

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("scripts/kafka.sh")
            .arg("stop")
            .env("KAFKA_PORT", self.0.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.0 + 1).to_string())
            .status();
    }
}

/// `(version, deleted, body)` of a row in a system's database.
pub fn row(deployment: &Deployment, system: &str, table: &str, id: &str) -> Option<(i64, bool, Option<String>)> {
    let conn = Connection::open(deployment.database(system)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(&format!("SELECT version, deleted, body FROM {table} WHERE id = ?1"), [id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0, r.get(2)?)))
        .optional()
        .unwrap()
}

/// Reads a child's stderr lines on a thread.
pub fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A process (a watching hub, a browser driver) killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A hub process serving `--listen`: its log lines, those seen so far, and
/// the API's address; killed when dropped.
pub struct ListeningHub {
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub api: String,
    _process: Killed,
}

/// Starts `command` (a `hub ... --listen ADDR`) with its log piped, and
/// waits until its API listens.
pub fn start_listening(mut command: Command) -> ListeningHub {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lines = lines_of(&mut child);
    let process = Killed(child);
    let mut seen = vec![];
    let api = wait_for_line(&lines, "real-time API listening on ", &mut seen).rsplit(' ').next().unwrap().to_string();
    ListeningHub { lines, seen, api, _process: process }
}

/// Waits (at most 3 minutes) for a line containing `needle`; returns it.
pub fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let line = lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no line with {needle:?}; saw:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

/// Adds to company B's export a look-alike of each of the first `n` active
/// company A employees with a birth date and no person key: the same Korean
/// name and birth date, no person key, ids `B-990001`, `B-990002`, ...: a
/// possible duplicate person the merge opens a review case for. Returns
/// each (company A id, company B id).
pub fn plant_look_alikes(deployment: &Deployment, n: usize) -> Vec<(String, String)> {
    let a_csv = std::fs::read_to_string(deployment.input.join("company_a/employees.csv")).unwrap();
    // Active company A rows with a birth date (column 10) and without a person key (column 11).
    let usable = |l: &&str| {
        let fields: Vec<&str> = l.split(',').collect();
        fields[7] == "재직" && fields[10].len() == 8 && fields[11].is_empty()
    };
    let originals: Vec<&str> = a_csv.lines().skip(1).filter(usable).take(n).collect();
    assert_eq!(originals.len(), n, "the export has too few company A employees to copy");
    let units = std::fs::read_to_string(deployment.input.join("company_b/org_units.jsonl")).unwrap();
    let unit = serde_json::from_str::<serde_json::Value>(units.lines().next().unwrap()).unwrap()["orgUnitId"].as_u64().unwrap();
    let b_file = deployment.input.join("company_b/employees.jsonl");
    let mut b_lines = std::fs::read_to_string(&b_file).unwrap();
    let mut pairs = vec![];
    for (i, original) in originals.iter().enumerate() {
        let fields: Vec<&str> = original.split(',').collect();
        let (employee_id, birth) = (990_001 + i as u64, fields[10]);
        let modified = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let line = serde_json::json!({"employeeId": employee_id, "firstName": "Look", "lastName": "Alike", "displayNameKo": fields[1],
            "email": format!("look.{employee_id}@b.example"), "orgUnitId": unit, "grade": "G3", "startDate": "2024-03-01", "active": true, "leave": null,
            "managerId": null, "birthDate": format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..]), "personKey": null, "salary": null, "lastModified": modified});
        b_lines.push_str(&line.to_string());
        b_lines.push('\n');
        pairs.push((format!("A-{}", fields[0]), format!("B-{employee_id}")));
    }
    std::fs::write(&b_file, b_lines).unwrap();
    pairs
}

/// Terminates every third active company A employee in the export (status
/// 퇴직, a later `updated_at`): more than `[safety]` lets a run do unseen.
/// Returns how many.
pub fn terminate_every_third(deployment: &Deployment) -> usize {
    let csv = deployment.input.join("company_a/employees.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let mut terminated = 0;
    let edited: String = original
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
            if i > 0 && i % 3 == 0 && fields[7] == "재직" {
                fields[7] = "퇴직".into();
                fields[13] = "2026-11-30 10:00:00".into();
                terminated += 1;
            }
            fields.join(",") + "\n"
        })
        .collect();
    assert!(terminated > 20, "only {terminated} terminations planted");
    std::fs::write(&csv, edited).unwrap();
    terminated
}
