//! The seed's scenario end to end: a hub, three target systems, routing per
//! data type, a periodic full sync, real-time changes and a delta run.

use crate::console::Console;
use hr_core::{DataType, Ledger, MasterData, MergeReport, MergedState, PermissionGrant, PropagationReport, Record, Sink};
use hr_hub::{load_and_merge, Hub, HubConfig, Publisher, SystemOptions, TargetSystem};
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
    /// An input directory laid out as docs/input-contract.md describes; `None` generates the seed's data.
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

/// One record's stored body in every system, by system name.
type Observed = BTreeMap<String, Option<serde_json::Value>>;

/// The stored body of one record in every system (in process).
fn observe(systems: &[TargetSystem], data_type: DataType, key: &str) -> anyhow::Result<Observed> {
    let mut seen = BTreeMap::new();
    for system in systems {
        let body = system.sink().get(data_type, key)?.and_then(|r| r.body).map(|b| serde_json::from_str(&b)).transpose()?;
        seen.insert(system.name().to_string(), body);
    }
    Ok(seen)
}

const TOKEN_ENV: &str = "HR_DEMO_TOKEN";
/// The master-data set a business system publishes in the scenario, and how many.
const PRODUCTS: &str = "md.product";
const PRODUCT_COUNT: usize = 1_000;
const CONFIRM_DEADLINE: Duration = Duration::from_secs(300);

/// Runs the scenario and returns its report.
pub async fn run(options: ScenarioOptions, console: &Console) -> anyhow::Result<ScenarioReport> {
    std::fs::create_dir_all(&options.data_dir)?;
    let mut config = options.config.clone();
    let mut timings = BTreeMap::new();
    let (mut dataset, input) = prepare_input(&options, console)?;
    let mapping = config.mapping_for(&input)?;
    let t = Instant::now();
    let outcome = {
        let _phase = console.phase("merging", None);
        load_and_merge(input.clone(), mapping.clone(), Default::default(), None).await?
    };
    timings.insert("merge".into(), ms(t));
    report_merge(&outcome.report, timings["merge"], console);

    let (embedded, kafka) = start_kafka(&options, &config, console).await?;
    let token = std::env::var(TOKEN_ENV).unwrap_or_else(|_| format!("demo-{:032x}", rand::random::<u128>()));
    let systems = start_systems(&options, &mut config, &kafka, &token, console).await?;
    let hub = start_hub(&options, &config, kafka.clone(), &token)?;
    let mut run = Run { hub, systems, config, console, timings, confirmed: PropagationReport::default(), changes_sent: vec![], publisher: None };

    run.full_sync(&outcome.state).await?;
    run.publish_products(&options, &kafka).await?;
    let mut state = outcome.state.clone();
    let (realtime_keys, realtime_seen) = run.real_time(&mut state).await?;
    if let Some(data) = dataset.as_mut() {
        // 1% changed and 0.2% leaving (20 of the seed's 10,000): a small demo stays under [safety]'s limits.
        data.evolve(0.01, (options.employees / 500).max(1));
        data.write(&input)?;
        let next = load_and_merge(input.clone(), mapping.clone(), run.hub.ledger().identities()?.into(), None).await?;
        let mut next_state = next.state;
        // Real-time changes stay part of the hub's truth.
        next_state
            .permissions
            .extend(state.permissions.iter().filter(|(k, _)| !outcome.state.permissions.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())));
        run.next_periodic_run(&next_state).await?;
    }
    let systems = run.reconcile().await?;
    // Producers first: the embedded cluster must outlive every client.
    drop(run.publisher.take());
    drop(run.hub);
    drop(embedded);
    Ok(ScenarioReport { merge: outcome.report, systems, timings_ms: run.timings, changes_sent: run.changes_sent, realtime_keys, realtime_seen })
}

/// The input directory: the one given, or the seed's data generated into the data directory.
fn prepare_input(options: &ScenarioOptions, console: &Console) -> anyhow::Result<(Option<Dataset>, PathBuf)> {
    if let Some(dir) = &options.input {
        return Ok((None, dir.clone()));
    }
    let dir = options.data_dir.join("input");
    let _phase = console.phase(&format!("generating {} employees", options.employees), None);
    let data = Dataset::generate(&GenerateOptions::scaled(options.employees));
    data.write(&dir)?;
    Ok((Some(data), dir))
}

fn report_merge(report: &MergeReport, merge_ms: f64, console: &Console) {
    console.line(&format!(
        "merged {} employees, {} org units, {} master data, {} permissions, {} compensation ({} matched persons, {} quarantined) in {merge_ms:.0} ms",
        report.counts[&DataType::Employee],
        report.counts[&DataType::OrgUnit],
        report.counts[&DataType::MasterData],
        report.counts[&DataType::Permission],
        report.counts[&DataType::Compensation],
        report.matched_persons,
        report.quarantined.len(),
    ));
}

/// The real broker, or the embedded mock cluster, with the topics of every data type routed to Kafka.
async fn start_kafka(options: &ScenarioOptions, config: &HubConfig, console: &Console) -> anyhow::Result<(Option<EmbeddedKafka>, KafkaConfig)> {
    let embedded = match &options.brokers {
        Some(_) => None,
        None => Some(EmbeddedKafka::start()?),
    };
    let brokers = options.brokers.clone().unwrap_or_else(|| embedded.as_ref().map(|e| e.bootstrap_servers().to_string()).unwrap_or_default());
    let mut kafka = KafkaConfig::new(&brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    let kafka_types = config.policy().data_types_via("kafka");
    for audience in config.kafka_audiences(&kafka) {
        match &embedded {
            Some(mock) => mock.create_topics(&audience, &kafka_types)?,
            None => ensure_topics(&audience, &kafka_types).await?,
        }
    }
    console.line(&format!("kafka: {} ({})", brokers, if embedded.is_some() { "embedded mock cluster" } else { "real broker" }));
    Ok((embedded, kafka))
}

/// Every configured system, each with a loopback REST receiver whose URL goes into `config`.
async fn start_systems(
    options: &ScenarioOptions,
    config: &mut HubConfig,
    kafka: &KafkaConfig,
    token: &str,
    console: &Console,
) -> anyhow::Result<Vec<TargetSystem>> {
    let mut systems = Vec::new();
    for name in config.targets.keys() {
        let mut system_options = SystemOptions::new(name.clone(), options.data_dir.clone());
        system_options.token = Some(token.into());
        system_options.fresh = true;
        let system = TargetSystem::start(&system_options, config, kafka).await?;
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
    Ok(systems)
}

/// The hub with a fresh ledger in the data directory.
fn start_hub(options: &ScenarioOptions, config: &HubConfig, kafka: KafkaConfig, token: &str) -> anyhow::Result<Hub> {
    let rest_targets: Vec<RestTarget> = Hub::rest_targets(config)?.into_iter().map(|t| t.with_token(token)).collect();
    let ledger_path = options.data_dir.join("hub-ledger.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", ledger_path.display()));
    }
    Ok(Hub::new(config, kafka, RestConfig::new(rest_targets), Ledger::open(&ledger_path)?)?)
}

/// The running deployment and what the steps have measured and confirmed.
struct Run<'a> {
    hub: Hub,
    systems: Vec<TargetSystem>,
    config: HubConfig,
    console: &'a Console,
    timings: BTreeMap<String, f64>,
    confirmed: PropagationReport,
    changes_sent: Vec<u64>,
    /// The system that published the products, once it did.
    publisher: Option<Publisher>,
}

impl Run<'_> {
    /// Step 1, the periodic full sync, confirmed applied in every system.
    async fn full_sync(&mut self, state: &MergedState) -> anyhow::Result<()> {
        let t = Instant::now();
        // Receipts keep Kafka clients: none may outlive the embedded cluster, so each lives in its step.
        let sent = {
            let _phase = self.console.phase("propagating the full load", None);
            self.hub.sync(state).await?
        };
        self.confirmed.merge(self.console.confirm("applying in every system", &sent.receipt, CONFIRM_DEADLINE).await?);
        self.timings.insert("initial_sync".into(), ms(t));
        self.console.line(&format!("periodic sync: {} changes applied in all systems in {:.0} ms", sent.sent, self.timings["initial_sync"]));
        self.changes_sent.push(sent.sent);
        Ok(())
    }

    /// The seed's master data from a business system: the system that owns
    /// `md.product` (erp in the default configuration) publishes its
    /// catalogue to every system, in parallel with the hub.
    async fn publish_products(&mut self, options: &ScenarioOptions, kafka: &KafkaConfig) -> anyhow::Result<()> {
        let Some((&set, &owner)) = self.config.owned_sets().iter().find(|(set, _)| **set == PRODUCTS) else { return Ok(()) };
        let (set, owner) = (set.to_string(), owner.to_string());
        let ledger_path = options.data_dir.join(format!("{owner}-published.sqlite3"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", ledger_path.display()));
        }
        let mut publisher = Publisher::over_kafka(&self.config, &owner, Ledger::open(&ledger_path)?, kafka)?;
        let catalogue: Vec<MasterData> = (1..=PRODUCT_COUNT)
            .map(|i| MasterData {
                set: set.as_str().into(),
                code: format!("P{i:05}").into(),
                name: format!("상품 {i}").into(),
                attributes: BTreeMap::from([("unit".into(), "pcs".into())]),
            })
            .collect();
        let t = Instant::now();
        let sent = publisher.publish(&catalogue).await?;
        self.confirmed.merge(self.console.confirm("applying the published products", &sent.receipt, CONFIRM_DEADLINE).await?);
        self.timings.insert("publish_products".into(), ms(t));
        self.console.line(&format!("{owner} published {} {set} records, applied in every system in {:.0} ms", sent.sent, self.timings["publish_products"]));
        self.publisher = Some(publisher);
        Ok(())
    }

    /// Step 2, real time: a permission grant (REST) and a team transfer (Kafka),
    /// each observed in every system once confirmed. The grant re-grants a
    /// revoked grant where there is one, and is revoked again at the end, so
    /// record counts and the grant's state stay the input's. Returns the
    /// keys touched and what every system held after each step.
    async fn real_time(&mut self, state: &mut MergedState) -> anyhow::Result<(BTreeMap<String, String>, BTreeMap<String, Observed>)> {
        let mut keys = BTreeMap::new();
        let mut seen = BTreeMap::new();
        let Some(employee) = state.employees.values().next().cloned() else { return Ok((keys, seen)) };
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
        keys.insert("permission".to_string(), grant.key());
        keys.insert("employee".to_string(), employee.id.to_string());
        state.permissions.insert(grant.key().into(), grant.clone());
        let (grant_ms, observed) = self.send_now(DataType::Permission, &grant.key(), &grant).await?;
        seen.insert("grant".to_string(), observed);
        self.timings.insert("realtime_permission_grant".into(), grant_ms);
        let route = route_of(&self.config, DataType::Permission);
        self.console.line(&format!("real time: permission grant {} applied in all systems in {grant_ms:.1} ms ({route})", grant.key()));

        let prefix = format!("{}-", employee.company.as_str());
        let new_team = state.org_units.keys().rfind(|k| k.starts_with(&prefix) && **k != employee.org_unit).cloned();
        if let (Some(team), Some(e)) = (new_team, state.employees.get_mut(&employee.id)) {
            e.org_unit = team.clone();
            keys.insert("team".to_string(), team.to_string());
            let moved = e.clone();
            let (transfer_ms, observed) = self.send_now(DataType::Employee, &moved.id, &moved).await?;
            seen.insert("transfer".to_string(), observed);
            self.timings.insert("realtime_team_transfer".into(), transfer_ms);
            let route = route_of(&self.config, DataType::Employee);
            self.console.line(&format!("real time: transfer of {} to {team} applied in all systems in {transfer_ms:.1} ms ({route})", employee.id));
        }
        // The grant is revoked again: a revocation reaches everyone too.
        let revoked = PermissionGrant { granted: false, at: chrono::Utc::now(), ..grant };
        let (_, observed) = self.send_now(DataType::Permission, &revoked.key(), &revoked).await?;
        seen.insert("revoke".to_string(), observed);
        state.permissions.insert(revoked.key().into(), revoked);
        Ok((keys, seen))
    }

    /// Sends one record in real time, waits until every system applied it,
    /// and reads what each holds: the milliseconds it took and the bodies.
    async fn send_now<R: Record>(&mut self, data_type: DataType, key: &str, record: &R) -> anyhow::Result<(f64, Observed)> {
        let t = Instant::now();
        let sent = self.hub.sync_changes(&[(key, Some(record))]).await?;
        self.confirmed.merge(sent.receipt.applied(CONFIRM_DEADLINE).await?);
        let took = ms(t);
        Ok((took, observe(&self.systems, data_type, key)?))
    }

    /// Step 3, the next periodic run: only the deltas travel.
    async fn next_periodic_run(&mut self, state: &MergedState) -> anyhow::Result<()> {
        let t = Instant::now();
        let sent = self.hub.sync(state).await?;
        self.confirmed.merge(self.console.confirm("applying the deltas", &sent.receipt, CONFIRM_DEADLINE).await?);
        self.timings.insert("delta_sync".into(), ms(t));
        self.console
            .line(&format!("second periodic run: only {} changed or vanished records sent, applied in {:.0} ms", sent.sent, self.timings["delta_sync"]));
        self.changes_sent.push(sent.sent);
        Ok(())
    }

    /// Stops every system and compares each one's own digests with the ledger's.
    async fn reconcile(&mut self) -> anyhow::Result<BTreeMap<String, BTreeMap<DataType, SystemTypeResult>>> {
        let mut results = BTreeMap::new();
        for system in std::mem::take(&mut self.systems) {
            let name = system.name().to_string();
            let sink = system.sink().clone();
            system.shutdown().await?;
            let mut per_type = BTreeMap::new();
            for t in &self.config.targets[&name].data_types {
                let mut hub_digest = self.hub.expected_digest(&name, *t)?;
                if let (DataType::MasterData, Some(publisher)) = (*t, &self.publisher) {
                    // What the hub sent and what the owner published, together.
                    hub_digest += publisher.digest()?;
                }
                let held = sink.digest(*t).await?;
                let applied = self.confirmed.delivered.get(&name).and_then(|m| m.get(t)).copied().unwrap_or(0);
                per_type.insert(*t, SystemTypeResult { records: held.count, applied, digest_matches: hub_digest == held });
            }
            results.insert(name, per_type);
        }
        Ok(results)
    }
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
