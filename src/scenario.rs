//! The seed's scenario end to end: a hub, three target systems, routing per
//! data type, a periodic full sync, real-time changes and a delta run.

use crate::generate::{Dataset, GenerateOptions};
use hr_core::{
    load_input_dir, merge, ChangeEnvelope, DataType, Ledger, Mapping, MergeReport, MergedState, PermissionGrant, Propagator, Router,
    RoutingPolicy, Sink, SqliteSink,
};
use hr_transport_kafka::{ensure_topics, wait_until_applied, EmbeddedKafka, KafkaConfig, KafkaPropagator, KafkaSubscriber};
use hr_transport_rest::{receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// A real broker; `None` starts the embedded mock cluster.
    pub brokers: Option<String>,
    /// The brief's input directory; `None` generates the seed's data.
    pub input: Option<PathBuf>,
    /// Where the systems' SQLite files and the hub's ledger go.
    pub data_dir: PathBuf,
    /// Employees to generate (teams scale with it).
    pub employees: usize,
    /// Routing and targets.
    pub policy: RoutingPolicy,
    /// Unique topic prefix (tests run several scenarios on one broker).
    pub topic_prefix: String,
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
}

struct System {
    name: String,
    sink: Arc<SqliteSink>,
    subscriber: Option<KafkaSubscriber>,
    rest_applied: BTreeMap<DataType, u64>,
}

const TOKEN_ENV: &str = "HR_DEMO_TOKEN";

/// Runs the scenario and returns its report.
pub async fn run(options: ScenarioOptions, log: &dyn Fn(&str)) -> anyhow::Result<ScenarioReport> {
    std::fs::create_dir_all(&options.data_dir)?;
    let policy = options.policy.clone();
    let mut timings = BTreeMap::new();

    // Input: given, or generated.
    let (mut dataset, input) = match &options.input {
        Some(dir) => (None, dir.clone()),
        None => {
            let dir = options.data_dir.join("input");
            let data = Dataset::generate(&GenerateOptions::scaled(options.employees));
            data.write(&dir)?;
            (Some(data), dir)
        }
    };
    let t = Instant::now();
    let mapping = Mapping::for_input_dir(&input)?;
    let outcome = merge(load_input_dir(&input, &mapping)?);
    timings.insert("merge".into(), ms(t));
    log(&format!(
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
    kafka.topic_prefix = options.topic_prefix.clone();
    let kafka_types = policy.data_types_via("kafka");
    match &embedded {
        Some(mock) => mock.create_topics(&kafka, &kafka_types)?,
        None => ensure_topics(&kafka, &kafka_types).await?,
    }
    log(&format!("kafka: {} ({})", brokers, if embedded.is_some() { "embedded mock cluster" } else { "real broker" }));

    // The three systems: SQLite sink, REST receiver, Kafka subscriber.
    let token = std::env::var(TOKEN_ENV).unwrap_or_else(|_| format!("demo-{:x}", rand::random::<u64>()));
    let mut systems = Vec::new();
    let mut rest_targets = Vec::new();
    let rest_types = policy.data_types_via("rest");
    for (name, target) in &policy.targets {
        let path = options.data_dir.join(format!("{name}.sqlite3"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let sink = Arc::new(SqliteSink::open(&path)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = receiver(ReceiverConfig::new(sink.clone(), target.data_types.clone()).with_token(&token));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let rest_allowed: Vec<DataType> = target.data_types.iter().copied().filter(|t| rest_types.contains(t)).collect();
        rest_targets.push(RestTarget::new(name, &url, rest_allowed).with_token(&token));
        let kafka_allowed: Vec<DataType> = target.data_types.iter().copied().filter(|t| kafka_types.contains(t)).collect();
        let group = format!("{}{name}", options.topic_prefix);
        let subscriber = if kafka_allowed.is_empty() { None } else { Some(KafkaSubscriber::start(&kafka, &group, &kafka_allowed, sink.clone())?) };
        log(&format!("system {name}: sqlite {}, REST {url}, kafka group {group}", path.display()));
        systems.push(System { name: name.clone(), sink, subscriber, rest_applied: BTreeMap::new() });
    }
    let groups: Vec<String> = systems.iter().filter(|s| s.subscriber.is_some()).map(|s| format!("{}{}", options.topic_prefix, s.name)).collect();
    let group_refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let router = Router::new(policy.clone())
        .with("kafka", Arc::new(KafkaPropagator::new(&kafka)?))
        .with("rest", Arc::new(RestPropagator::new(RestConfig::new(rest_targets))?));

    let ledger_path = options.data_dir.join("hub-ledger.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", ledger_path.display()));
    }
    let mut ledger = Ledger::open(&ledger_path)?;
    let mut changes_sent = vec![];

    // 1. Periodic full sync.
    let t = Instant::now();
    let sent = sync(&mut ledger, &outcome.state, &router, &mut systems).await?;
    wait_until_applied(&kafka, &group_refs, &kafka_types, Duration::from_secs(300)).await?;
    timings.insert("initial_sync".into(), ms(t));
    log(&format!("periodic sync: {sent} changes applied in all systems in {:.0} ms", timings["initial_sync"]));
    changes_sent.push(sent);

    // 2. Real time: a permission grant (REST) and a team transfer (Kafka).
    let mut state = outcome.state.clone();
    if let Some(employee) = state.employees.values().next().cloned() {
        let grant = PermissionGrant { employee: employee.id.clone(), system: "erp".into(), role: "approver".into(), granted: true, expires: None, at: chrono::Utc::now() };
        state.permissions.insert(grant.key(), grant.clone());
        let t = Instant::now();
        sync_types(&mut ledger, &state, &router, &mut systems, &[DataType::Permission]).await?;
        let grant_ms = ms(t);
        timings.insert("realtime_permission_grant".into(), grant_ms);
        log(&format!("real time: permission grant {}:erp:approver applied in all systems in {grant_ms:.1} ms (REST)", employee.id));

        let new_team = state.org_units.keys().rfind(|k| k.starts_with(&format!("{}-", employee.company.as_str()))).cloned();
        if let (Some(team), Some(e)) = (new_team, state.employees.get_mut(&employee.id)) {
            e.org_unit = team.clone();
            let t = Instant::now();
            sync_types(&mut ledger, &state, &router, &mut systems, &[DataType::Employee]).await?;
            wait_until_applied(&kafka, &group_refs, &[DataType::Employee], Duration::from_secs(60)).await?;
            let transfer_ms = ms(t);
            timings.insert("realtime_team_transfer".into(), transfer_ms);
            log(&format!("real time: transfer of {} to {team} applied in all systems in {transfer_ms:.1} ms (Kafka)", employee.id));
        }
        // The grant is revoked again: a revocation reaches everyone too.
        let revoked = PermissionGrant { granted: false, at: chrono::Utc::now(), ..grant };
        state.permissions.insert(revoked.key(), revoked);
        sync_types(&mut ledger, &state, &router, &mut systems, &[DataType::Permission]).await?;
    }

    // 3. The next periodic run: 1% changed, a few departures; only deltas travel.
    if let Some(data) = dataset.as_mut() {
        data.evolve(0.01, 20);
        data.write(&input)?;
        let next = merge(load_input_dir(&input, &mapping)?);
        let mut next_state = next.state;
        // Real-time changes stay part of the hub's truth.
        next_state.permissions.extend(state.permissions.iter().filter(|(k, _)| !outcome.state.permissions.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())));
        let t = Instant::now();
        let sent = sync(&mut ledger, &next_state, &router, &mut systems).await?;
        wait_until_applied(&kafka, &group_refs, &kafka_types, Duration::from_secs(300)).await?;
        timings.insert("delta_sync".into(), ms(t));
        log(&format!("second periodic run: only {sent} changed or vanished records sent, applied in {:.0} ms", timings["delta_sync"]));
        changes_sent.push(sent);
    }

    // Reconciliation.
    let mut results = BTreeMap::new();
    for system in systems {
        let stats = match system.subscriber {
            Some(s) => s.shutdown().await?,
            None => Default::default(),
        };
        let mut per_type = BTreeMap::new();
        for t in &policy.targets[&system.name].data_types {
            let hub = ledger.digest(*t)?;
            let held = system.sink.digest(*t).await?;
            let applied = stats.applied.get(t).map(|o| o.applied as u64).unwrap_or(0) + system.rest_applied.get(t).copied().unwrap_or(0);
            per_type.insert(*t, SystemTypeResult { records: held.count, applied, digest_matches: hub == held });
        }
        results.insert(system.name, per_type);
    }
    // Producers first: the embedded cluster must outlive every client.
    drop(router);
    drop(embedded);
    Ok(ScenarioReport { merge: outcome.report, systems: results, timings_ms: timings, changes_sent })
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

async fn sync(ledger: &mut Ledger, state: &MergedState, router: &Router, systems: &mut [System]) -> anyhow::Result<u64> {
    sync_types(ledger, state, router, systems, &DataType::ALL).await
}

/// Plans the deltas of `types`, propagates them in one call, and records them
/// in the ledger only once every target has them.
async fn sync_types(ledger: &mut Ledger, state: &MergedState, router: &Router, systems: &mut [System], types: &[DataType]) -> anyhow::Result<u64> {
    let mut deltas = vec![];
    let mut batch: Vec<ChangeEnvelope> = vec![];
    for t in types {
        let records: Result<Vec<_>, _> = state.records(*t).map(|(k, v)| v.map(|v| (k, v))).collect();
        let delta = ledger.plan(*t, records?, "hr-hub", false)?;
        batch.extend(delta.changes.iter().cloned());
        deltas.push((*t, delta));
    }
    if batch.is_empty() {
        return Ok(0);
    }
    let report = router.propagate(&batch).await?;
    for system in systems.iter_mut() {
        if let Some(per_type) = report.delivered.get(&system.name) {
            for (t, n) in per_type {
                *system.rest_applied.entry(*t).or_default() += n;
            }
        }
    }
    for (t, delta) in &deltas {
        ledger.commit(*t, delta)?;
    }
    Ok(batch.len() as u64)
}
