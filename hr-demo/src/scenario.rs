//! The seed's scenario end to end: a hub, three target systems, routing per
//! data type, a periodic full sync, real-time changes and a delta run.

use crate::console::Console;
use hr_core::{load_input_dir, merge, DataType, Ledger, MergeReport, PermissionGrant, PropagationReport, Sink};
use hr_hub::{Hub, HubConfig, SystemOptions, TargetSystem};
use hr_testdata::{Dataset, GenerateOptions};
use hr_transport_kafka::{ensure_topics, EmbeddedKafka, KafkaConfig};
use hr_transport_rest::{RestConfig, RestTarget};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// A real broker; `None` starts the embedded mock cluster.
    pub brokers: Option<String>,
    /// An input directory laid out as the README's "Input contract"; `None` generates the seed's data.
    pub input: Option<PathBuf>,
    /// Where the systems' SQLite files and the hub's ledger go.
    pub data_dir: PathBuf,
    /// Employees to generate (teams scale with it).
    pub employees: usize,
    /// Routing, targets, mapping and the topic prefix (tests use a unique
    /// prefix per run so several scenarios can share one broker).
    pub config: HubConfig,
}

/// One system's result per data type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemTypeResult {
    /// Live records held.
    pub records: u64,
    /// Changes applied over the whole run.
    pub applied: u64,
    /// Whether its digest equals the hub's.
    pub digest_matches: bool,
}

/// The scenario's outcome: the merge report plus per-system results.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// The first merge's report.
    #[serde(flatten)]
    pub merge: MergeReport,
    /// system -> data type -> result.
    pub systems: BTreeMap<String, BTreeMap<DataType, SystemTypeResult>>,
    /// Phase -> milliseconds.
    pub timings_ms: BTreeMap<String, f64>,
    /// Changes sent per periodic run.
    pub changes_sent: Vec<u64>,
    /// The keys the real-time changes touched: `permission` (granted, then
    /// revoked) and `employee` (transferred to the org unit `team`).
    pub realtime_keys: BTreeMap<String, String>,
    /// What every system held right after each real-time change was
    /// confirmed, before any later run could mask it: step (`grant`,
    /// `transfer`, `revoke`) -> system -> the record's stored body.
    pub realtime_seen: BTreeMap<String, BTreeMap<String, Option<serde_json::Value>>>,
}

/// The stored body of one record in every system (in process).
fn observe(systems: &[TargetSystem], data_type: DataType, key: &str) -> anyhow::Result<BTreeMap<String, Option<serde_json::Value>>> {
    let mut seen = BTreeMap::new();
    for system in systems {
        let body = system.sink().get(data_type, key)?.and_then(|r| r.body).map(|b| serde_json::from_str(&b)).transpose()?;
        seen.insert(system.name().to_string(), body);
    }
    Ok(seen)
}

const TOKEN_ENV: &str = "HR_DEMO_TOKEN";
const CONFIRM_DEADLINE: Duration = Duration::from_secs(300);

/// Runs the scenario and returns its report.
pub async fn run(options: ScenarioOptions, console: &Console) -> anyhow::Result<ScenarioReport> {
    std::fs::create_dir_all(&options.data_dir)?;
    let mut config = options.config.clone();
    let mut timings = BTreeMap::new();

    // Input: given, or generated.
    let (mut dataset, input) = match &options.input {
        Some(dir) => (None, dir.clone()),
        None => {
            let dir = options.data_dir.join("input");
            let _phase = console.phase(&format!("generating {} employees", options.employees), None);
            let data = Dataset::generate(&GenerateOptions::scaled(options.employees));
            data.write(&dir)?;
            (Some(data), dir)
        }
    };
    let t = Instant::now();
    let mapping = config.mapping_for(&input)?;
    let outcome = {
        let _phase = console.phase("merging", None);
        merge(load_input_dir(&input, &mapping)?)
    };
    timings.insert("merge".into(), ms(t));
    console.line(&format!(
        "merged {} employees, {} org units, {} master data, {} permissions, {} compensation ({} matched persons, {} quarantined) in {:.0} ms",
        outcome.report.counts[&DataType::Employee],
        outcome.report.counts[&DataType::OrgUnit],
        outcome.report.counts[&DataType::MasterData],
        outcome.report.counts[&DataType::Permission],
        outcome.report.counts[&DataType::Compensation],
        outcome.report.matched_persons,
        outcome.report.quarantined.len(),
        timings["merge"]
    ));

    // Kafka: real or embedded.
    let embedded = match &options.brokers {
        Some(_) => None,
        None => Some(EmbeddedKafka::start()?),
    };
    let brokers = options.brokers.clone().unwrap_or_else(|| embedded.as_ref().map(|e| e.bootstrap_servers().to_string()).unwrap_or_default());
    let mut kafka = KafkaConfig::new(&brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    let kafka_types = config.policy().data_types_via("kafka");
    match &embedded {
        Some(mock) => mock.create_topics(&kafka, &kafka_types)?,
        None => ensure_topics(&kafka, &kafka_types).await?,
    }
    console.line(&format!("kafka: {} ({})", brokers, if embedded.is_some() { "embedded mock cluster" } else { "real broker" }));

    // The three systems, each with a loopback REST receiver.
    let token = std::env::var(TOKEN_ENV).unwrap_or_else(|_| format!("demo-{:x}", rand::random::<u64>()));
    let mut systems = Vec::new();
    for name in config.targets.keys() {
        let system_options = SystemOptions {
            name: name.clone(),
            data_dir: options.data_dir.clone(),
            listen: ([127, 0, 0, 1], 0).into(),
            token: Some(token.clone()),
            fresh: true,
        };
        let system = TargetSystem::start(&system_options, &config, &kafka).await?;
        console.line(&format!(
            "system {name}: sqlite {}, REST {}, kafka group {}",
            system.sink().path().display(),
            system.url(),
            system.group().unwrap_or("-")
        ));
        systems.push(system);
    }
    for system in &systems {
        if let Some(target) = config.targets.get_mut(system.name()) {
            target.url = Some(system.url().to_string());
        }
    }
    let rest_targets: Vec<RestTarget> = Hub::rest_targets(&config)?.into_iter().map(|t| t.with_token(&token)).collect();
    let ledger_path = options.data_dir.join("hub-ledger.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", ledger_path.display()));
    }
    let mut hub = Hub::new(&config, kafka, RestConfig::new(rest_targets), Ledger::open(&ledger_path)?)?;
    let mut confirmed = PropagationReport::default();
    let mut changes_sent = vec![];

    // 1. Periodic full sync.
    let t = Instant::now();
    // Receipts keep Kafka clients: none may outlive the embedded cluster, so each lives in its step.
    let initial = {
        let sent = {
            let _phase = console.phase("propagating the full load", None);
            hub.sync(&outcome.state).await?
        };
        confirmed.merge(console.confirm("applying in every system", &sent.receipt, CONFIRM_DEADLINE).await?);
        sent.sent
    };
    timings.insert("initial_sync".into(), ms(t));
    console.line(&format!("periodic sync: {initial} changes applied in all systems in {:.0} ms", timings["initial_sync"]));
    changes_sent.push(initial);

    // 2. Real time: a permission grant (REST) and a team transfer (Kafka). The
    // grant re-grants a revoked grant where there is one, and is revoked again
    // at the end, so record counts and the grant's state stay the input's.
    let mut state = outcome.state.clone();
    let mut realtime_keys = BTreeMap::new();
    let mut realtime_seen = BTreeMap::new();
    if let Some(employee) = state.employees.values().next().cloned() {
        let grant = match state.permissions.values().find(|g| !g.granted) {
            Some(existing) => PermissionGrant { granted: true, at: chrono::Utc::now(), ..existing.clone() },
            None => PermissionGrant {
                employee: employee.id.clone(),
                system: "erp".into(),
                role: "approver".into(),
                granted: true,
                expires: None,
                at: chrono::Utc::now(),
            },
        };
        realtime_keys.insert("permission".to_string(), grant.key());
        realtime_keys.insert("employee".to_string(), employee.id.clone());
        state.permissions.insert(grant.key(), grant.clone());
        let t = Instant::now();
        let sent = hub.sync_changes(DataType::Permission, &[(&grant.key(), Some(&grant))]).await?;
        confirmed.merge(sent.receipt.applied(CONFIRM_DEADLINE).await?);
        let grant_ms = ms(t);
        realtime_seen.insert("grant".to_string(), observe(&systems, DataType::Permission, &grant.key())?);
        timings.insert("realtime_permission_grant".into(), grant_ms);
        console.line(&format!(
            "real time: permission grant {} applied in all systems in {grant_ms:.1} ms ({})",
            grant.key(),
            route_of(&config, DataType::Permission)
        ));

        let new_team = state.org_units.keys().rfind(|k| k.starts_with(&format!("{}-", employee.company.as_str())) && **k != employee.org_unit).cloned();
        if let (Some(team), Some(e)) = (new_team, state.employees.get_mut(&employee.id)) {
            e.org_unit = team.clone();
            realtime_keys.insert("team".to_string(), team.clone());
            let moved = e.clone();
            let t = Instant::now();
            let sent = hub.sync_changes(DataType::Employee, &[(&moved.id, Some(&moved))]).await?;
            confirmed.merge(sent.receipt.applied(CONFIRM_DEADLINE).await?);
            let transfer_ms = ms(t);
            realtime_seen.insert("transfer".to_string(), observe(&systems, DataType::Employee, &moved.id)?);
            timings.insert("realtime_team_transfer".into(), transfer_ms);
            console.line(&format!(
                "real time: transfer of {} to {team} applied in all systems in {transfer_ms:.1} ms ({})",
                employee.id,
                route_of(&config, DataType::Employee)
            ));
        }
        // The grant is revoked again: a revocation reaches everyone too.
        let revoked = PermissionGrant { granted: false, at: chrono::Utc::now(), ..grant };
        let sent = hub.sync_changes(DataType::Permission, &[(&revoked.key(), Some(&revoked))]).await?;
        confirmed.merge(sent.receipt.applied(CONFIRM_DEADLINE).await?);
        realtime_seen.insert("revoke".to_string(), observe(&systems, DataType::Permission, &revoked.key())?);
        state.permissions.insert(revoked.key(), revoked);
    }

    // 3. The next periodic run: 1% changed, a few departures; only deltas travel.
    if let Some(data) = dataset.as_mut() {
        data.evolve(0.01, 20);
        data.write(&input)?;
        let next = merge(load_input_dir(&input, &mapping)?);
        let mut next_state = next.state;
        // Real-time changes stay part of the hub's truth.
        next_state
            .permissions
            .extend(state.permissions.iter().filter(|(k, _)| !outcome.state.permissions.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())));
        let t = Instant::now();
        let sent = hub.sync(&next_state).await?;
        confirmed.merge(console.confirm("applying the deltas", &sent.receipt, CONFIRM_DEADLINE).await?);
        timings.insert("delta_sync".into(), ms(t));
        console.line(&format!("second periodic run: only {} changed or vanished records sent, applied in {:.0} ms", sent.sent, timings["delta_sync"]));
        changes_sent.push(sent.sent);
    }

    // Reconciliation: each system's own digests against the ledger's.
    let mut results = BTreeMap::new();
    for system in systems {
        let name = system.name().to_string();
        let sink = system.sink().clone();
        system.shutdown().await?;
        let mut per_type = BTreeMap::new();
        for t in &config.targets[&name].data_types {
            let hub_digest = hub.ledger().digest(*t)?;
            let held = sink.digest(*t).await?;
            let applied = confirmed.delivered.get(&name).and_then(|m| m.get(t)).copied().unwrap_or(0);
            per_type.insert(*t, SystemTypeResult { records: held.count, applied, digest_matches: hub_digest == held });
        }
        results.insert(name, per_type);
    }
    // Producers first: the embedded cluster must outlive every client.
    drop(hub);
    drop(embedded);
    Ok(ScenarioReport { merge: outcome.report, systems: results, timings_ms: timings, changes_sent, realtime_keys, realtime_seen })
}

fn route_of(config: &HubConfig, t: DataType) -> String {
    match config.routes.get(&t).map(String::as_str) {
        Some("kafka") => "Kafka".into(),
        Some("rest") => "REST".into(),
        other => other.unwrap_or("unrouted").into(),
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
