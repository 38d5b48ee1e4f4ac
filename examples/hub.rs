//! The hub as its own process: merge the input, plan deltas against the
//! ledger, propagate (Kafka and REST per the routes), wait until every
//! system applied, and compare each system's digests with the hub's.
//!
//! ```text
//! HR_TOKEN_PAYROLL=s3cret HR_TOKEN_ORGCHART=s3cret HR_TOKEN_ERP=s3cret \
//! cargo run --release --example hub -- --input out/input --config config/hub.local.toml --brokers 127.0.0.1:9092
//! ```
//!
//! The ledger (`--data-dir`) persists, so a later run sends only what
//! changed; `--watch SECONDS` repeats the periodic sync on an interval
//! (revoking grants that expire in between every minute) and
//! keeps going when a run fails (the next one resends what is missing).
//! Every run compares each system's content digests with the hub's, finds
//! the keys that differ and repairs them (`--check-only`: report only); the
//! exit code is non-zero while any system differs.
//!
//! `--listen ADDR` also serves the HR side's real-time API
//! (`hr_hub::hub_api`: `POST /hr/v1/permissions`, `PATCH
//! /hr/v1/employees/{id}`) behind the bearer token in `HR_HUB_TOKEN`, and
//! keeps serving after the run until Ctrl-C. Calls and runs share the hub
//! behind one lock, so they never interleave; newer wins between them.
use clap::Parser;
use hr_core::{DataType, HeldBack, HeldRecord, Ledger, MergeReport};
use hr_demo::console::{Console, LogFormat};
use hr_sync::hr_hub::{hub_api, load_and_merge, ApiConfig, Hub, HubConfig, Reconciliation, RepairOutcome, SyncOutcome};
use hr_transport_kafka::{ensure_topics, group_lag, wait_until_applied, KafkaConfig};
use hr_transport_rest::{serve_with_limits, ConnectionLimits, RestConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tracing::Instrument;

// The library leaves the allocator to the program. Ours use mimalloc: a
// merge of 2 x 100k employees takes 0.24 s with it and 0.38 s with the
// system allocator (README, "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Merge, plan deltas, propagate to every target system and reconcile")]
struct Args {
    /// The input directory (laid out as the README's "Input contract").
    #[arg(long)]
    input: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Routing, targets with their `url` and `token_env`, topic prefix, mapping.
    #[arg(long)]
    config: PathBuf,
    /// Write the JSON report of each run here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the hub's ledger lives (kept across runs: it is what makes later runs deltas).
    #[arg(long, default_value = "out/hub")]
    data_dir: PathBuf,
    /// Re-run the periodic sync every this many seconds, until Ctrl-C.
    #[arg(long)]
    watch: Option<u64>,
    /// How long to wait for every system to apply a run.
    #[arg(long, default_value_t = 300)]
    deadline_secs: u64,
    /// How long one REST propagation may retry a system that does not answer.
    #[arg(long, default_value_t = 30)]
    rest_deadline_secs: u64,
    /// Send deletions even when more than the ledger's guard allows.
    #[arg(long)]
    allow_mass_delete: bool,
    /// Print, per system and data type, what it holds against the hub
    /// (records, hub records, digest equal, Kafka lag) and exit; sends nothing.
    #[arg(long, conflicts_with_all = ["watch", "check_only", "listen"])]
    status: bool,
    /// With --status: one JSON object per line instead of a table.
    #[arg(long, requires = "status")]
    json: bool,
    /// Log lines as `text` or as one JSON object per line (`json`); each
    /// run's lines carry its `run_id`, which its report repeats.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Compare the systems with the hub's ledger and report what differs:
    /// send nothing (no sync, no repair); exits non-zero if anything differs.
    #[arg(long)]
    check_only: bool,
    /// Serve the real-time API for the HR side on this address (token: HR_HUB_TOKEN).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve the hub's metrics (Prometheus text, GET /metrics) on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

/// What one run did.
#[derive(Serialize)]
struct RunReport {
    /// The id every log line of the run carries (its span's `run_id`).
    run_id: String,
    #[serde(flatten)]
    merge: MergeReport,
    changes_sent: u64,
    /// Changes sent again because an earlier run failed after they may have left.
    changes_retried: u64,
    /// Records kept at their last good version: their new source row is quarantined.
    held_back: Vec<HeldRecord>,
    elapsed_ms: f64,
    /// What each system held before repairs: digest equality and the differing keys.
    drift_found: Reconciliation,
    /// Keys sent again to repair the systems, per data type.
    repaired: BTreeMap<DataType, u64>,
    /// Per system and data type, how many of its differing keys were repaired.
    repaired_per_target: BTreeMap<String, BTreeMap<DataType, u64>>,
    /// Differing keys the hub could not repair (their record is held back this run).
    unrepairable: BTreeMap<DataType, Vec<String>>,
    /// Keys whose source was older than their last real-time change, which stands.
    source_older: BTreeMap<DataType, Vec<String>>,
    /// What each system holds at the end of the run.
    systems: Reconciliation,
    /// Per system and data type, keys held at versions the hub never gave
    /// (written by someone else): not repaired; remove those rows at the system.
    foreign_versions: BTreeMap<String, BTreeMap<DataType, Vec<String>>>,
    /// Changes left out because a receiver would refuse them (never given a version, never sent).
    rejected: Vec<hr_core::RejectedChange>,
}

impl RunReport {
    /// `system/data_type` of every system that still differs from the hub.
    fn mismatched(&self) -> Vec<String> {
        self.systems.iter().flat_map(|(s, types)| types.iter().filter(|(_, r)| !r.digest_matches).map(move |(t, _)| format!("{s}/{t}"))).collect()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    hr_demo::console::init_logging_as(args.log_format);
    let console = if args.log_format == LogFormat::Json { Console::events() } else { Console::detect() };
    let config = HubConfig::load(Some(&args.config))?;
    let mut rest = RestConfig::new(Hub::rest_targets(&config)?);
    rest.deadline = Duration::from_secs(args.rest_deadline_secs);
    std::fs::create_dir_all(&args.data_dir)?;
    // Read before anything runs: a --listen without a token is a mistake to report at once.
    let api_token =
        args.listen.map(|_| std::env::var("HR_HUB_TOKEN")).transpose().map_err(|_| anyhow::anyhow!("--listen needs the API's bearer token in HR_HUB_TOKEN"))?;

    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, &console).await?;
    }

    if args.status {
        let hub = connect(&args, &config, rest.clone()).await?;
        return print_status(&args, &config, &hub).await;
    }

    let mut hub: Option<Arc<Mutex<Hub>>> = None;
    let mut failures: u32 = 0;
    loop {
        let run_id = uuid::Uuid::new_v4().to_string();
        let run = async {
            let outcome = match connected(&mut hub, &args, &config, &rest).await {
                Ok((hub, new)) => {
                    if let (true, Some(addr), Some(token)) = (new, args.listen, &api_token) {
                        serve_api(hub.clone(), addr, token, &console).await?;
                    }
                    run_once(&args, &config, &hub, &console, &run_id).await
                }
                Err(e) => Err(e),
            };
            write_report(&args, &console, &outcome);
            count_run(&outcome);
            // After the report is written: whoever waits for this line may read it.
            if let Ok(report) = &outcome {
                console.line(&format!("run done in {:.0} ms", report.elapsed_ms));
            }
            anyhow::Ok(outcome)
        };
        let outcome = run.instrument(tracing::info_span!("run", run_id = %run_id)).await?;
        let mismatched = outcome.as_ref().map(RunReport::mismatched).unwrap_or_default();
        let Some(every) = args.watch else {
            if args.listen.is_some() && outcome.is_ok() {
                console.line("serving the real-time API until Ctrl-C");
                wait_enforcing_expiry(hub.as_deref(), Duration::MAX, &console).await;
            }
            outcome?;
            anyhow::ensure!(mismatched.is_empty(), "systems differ from the hub: {}", mismatched.join(", "));
            return Ok(());
        };
        let pause = match outcome {
            Ok(_) if mismatched.is_empty() => {
                failures = 0;
                Duration::from_secs(every)
            }
            Ok(_) => {
                console.line(&format!("systems still differ from the hub: {} (the next run repairs them)", mismatched.join(", ")));
                Duration::from_secs(every)
            }
            Err(e) => {
                failures += 1;
                let pause = retry_pause(every, failures);
                console.line(&format!("run failed: {e:#}; retrying in {} s (the next run resends what is missing)", pause.as_secs()));
                pause
            }
        };
        if !wait_enforcing_expiry(hub.as_deref(), pause, &console).await {
            return Ok(());
        }
    }
}

/// Serves the real-time API on `addr` for as long as the process runs,
/// closing connections that stall and capping how many are open.
async fn serve_api(hub: Arc<Mutex<Hub>>, addr: SocketAddr, token: &str, console: &Console) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = hub_api(hub, ApiConfig::new(token)?);
    tokio::spawn(serve_with_limits(listener, app, ConnectionLimits::default()));
    console.line(&format!("real-time API listening on http://{bound}"));
    Ok(())
}

/// Installs the Prometheus recorder and serves it on `addr` for as long as the process runs.
async fn serve_metrics(addr: SocketAddr, console: &Console) -> anyhow::Result<()> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(prometheus.render())));
    tokio::spawn(serve_with_limits(listener, app, ConnectionLimits::default()));
    console.line(&format!("metrics on http://{bound}/metrics"));
    Ok(())
}

/// The run's own metrics: duration, outcome, what the merge set aside, when it last succeeded.
fn count_run(outcome: &anyhow::Result<RunReport>) {
    match outcome {
        Ok(report) => {
            metrics::counter!("hr_hub_runs_total", "outcome" => "ok").increment(1);
            metrics::histogram!("hr_hub_run_seconds").record(report.elapsed_ms / 1000.0);
            metrics::gauge!("hr_hub_quarantined_records").set(report.merge.quarantined.len() as f64);
            metrics::gauge!("hr_hub_last_success_timestamp_seconds").set(chrono::Utc::now().timestamp() as f64);
        }
        Err(_) => metrics::counter!("hr_hub_runs_total", "outcome" => "failed").increment(1),
    }
}

/// How often `--watch` revokes grants that expired since the last run.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// Waits `pause` between runs, revoking lapsed grants every minute; `false` on Ctrl-C.
async fn wait_enforcing_expiry(hub: Option<&Mutex<Hub>>, pause: Duration, console: &Console) -> bool {
    let until = Instant::now().checked_add(pause);
    loop {
        let left = until.map_or(EXPIRY_CHECK, |u| u.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return false,
            _ = tokio::time::sleep(left.min(EXPIRY_CHECK)) => {}
        }
        let Some(hub) = hub else { continue };
        match hub.lock().await.enforce_expiry(chrono::Utc::now().date_naive()).await {
            Ok(revoked) if revoked.sent > 0 => console.line(&format!("revoked {} grants that expired since the last run", revoked.sent)),
            Ok(_) => {}
            Err(e) => console.line(&format!("revoking expired grants failed: {e} (the next run revokes them)")),
        }
    }
}

/// The hub, connected on first use; `true` when it was connected just now.
async fn connected(hub: &mut Option<Arc<Mutex<Hub>>>, args: &Args, config: &HubConfig, rest: &RestConfig) -> anyhow::Result<(Arc<Mutex<Hub>>, bool)> {
    if let Some(hub) = hub {
        return Ok((hub.clone(), false));
    }
    let new = Arc::new(Mutex::new(connect(args, config, rest.clone()).await?));
    *hub = Some(new.clone());
    Ok((new, true))
}

/// Creates the topics and the hub: retried by `--watch` while the broker is unreachable.
async fn connect(args: &Args, config: &HubConfig, rest: RestConfig) -> anyhow::Result<Hub> {
    let mut kafka = KafkaConfig::new(&args.brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    for audience in config.kafka_audiences(&kafka) {
        ensure_topics(&audience, &config.policy().data_types_via("kafka")).await?;
    }
    let ledger = Ledger::open(args.data_dir.join("hub-ledger.sqlite3"))?;
    let mut hub = Hub::new(config, kafka, rest, ledger)?;
    hub.allow_mass_delete(args.allow_mass_delete);
    Ok(hub)
}

/// Writes the run's report, or what made it fail; a write error is logged, not fatal.
fn write_report(args: &Args, console: &Console, outcome: &anyhow::Result<RunReport>) {
    let Some(path) = &args.report else { return };
    let json = match outcome {
        Ok(report) => serde_json::to_vec_pretty(report),
        Err(e) => serde_json::to_vec_pretty(&serde_json::json!({"failed": format!("{e:#}")})),
    };
    if let Err(e) = json.map_err(std::io::Error::other).and_then(|bytes| hr_core::write_private(path, &bytes)) {
        console.line(&format!("cannot write the report to {}: {e}", path.display()));
    }
}

/// Backoff after consecutive failed runs: a tenth of the interval, doubling,
/// never more than the interval (at least one second).
fn retry_pause(every: u64, failures: u32) -> Duration {
    let first = (every / 10).max(1);
    Duration::from_secs(first.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(every.max(1)))
}

/// One periodic run. The merge, and every wait for the systems, run
/// without the hub's lock; planning, sending and comparing hold it, so a
/// real-time call never interleaves with them.
async fn run_once(args: &Args, config: &HubConfig, hub: &Mutex<Hub>, console: &Console, run_id: &str) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mapping = config.mapping_for(&args.input)?;
    let identities = Arc::new(hub.lock().await.ledger().identities()?);
    let outcome = {
        let _phase = console.phase("merging", None);
        load_and_merge(args.input.clone(), mapping, identities.clone()).await?
    };
    console.line(&format!(
        "merged {} employees ({} matched persons, {} records quarantined)",
        outcome.report.counts.get(&DataType::Employee).copied().unwrap_or(0),
        outcome.report.matched_persons,
        outcome.report.quarantined.len()
    ));
    let held = HeldBack::from_report(&outcome.report, &identities);
    // The hub's lock is held while it plans, sends and compares, never while
    // it waits for systems: real-time calls go through meanwhile.
    let deadline = Duration::from_secs(args.deadline_secs);
    let sent = if args.check_only {
        SyncOutcome::default()
    } else {
        let sent = {
            let _phase = console.phase("propagating", None);
            hub.lock().await.sync_with(&outcome.state, &held).await?
        };
        console.line(&format!(
            "sent {} changes ({} resent after an earlier failure, {} records held back at their last good version); waiting until every system applied them",
            sent.sent,
            sent.retried,
            sent.held_back.len()
        ));
        console.confirm("applying in every system", &sent.receipt, deadline).await?;
        sent
    };
    wait_for_consumers(args, config, deadline, console).await;
    let (drift_found, repair) = {
        let mut hub = hub.lock().await;
        let drift_found = hub.reconcile(config).await?;
        let any_drift = drift_found.values().flat_map(|t| t.values()).any(|r| !r.digest_matches);
        let repair = if any_drift && !args.check_only { Some(hub.repair(&outcome.state, &held, &drift_found).await?) } else { None };
        (drift_found, repair)
    };
    print_drift(&drift_found);
    let (repair, systems) = match repair {
        Some(repair) => {
            console.confirm("applying the repairs", &repair.sent.receipt, deadline).await?;
            console.line(&format!("repaired {} keys", repair.repaired.values().sum::<u64>()));
            let systems = hub.lock().await.reconcile(config).await?;
            (repair, systems)
        }
        None => (RepairOutcome::default(), drift_found.clone()),
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    print_systems(&systems);
    Ok(RunReport {
        foreign_versions: foreign_versions(&drift_found),
        run_id: run_id.to_string(),
        merge: outcome.report,
        changes_sent: sent.sent,
        changes_retried: sent.retried,
        source_older: sent.source_older.clone(),
        held_back: sent.held_back,
        elapsed_ms,
        drift_found,
        repaired: repair.repaired,
        repaired_per_target: repair.repaired_per_target,
        unrepairable: repair.unrepairable,
        rejected: sent.rejected.clone(),
        systems,
    })
}

/// Waits, at most `deadline`, until every system's consumer group has read
/// all its topics hold: a system still catching up (one rebuilt from an
/// empty store reads the topics from their start) is not drift to repair.
/// One that does not catch up in time is left to the comparison.
async fn wait_for_consumers(args: &Args, config: &HubConfig, deadline: Duration, console: &Console) {
    let mut kafka = KafkaConfig::new(&args.brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    let routed = config.policy().data_types_via("kafka");
    for (name, target) in &config.targets {
        let types: Vec<DataType> = target.data_types.iter().copied().filter(|t| routed.contains(t)).collect();
        if types.is_empty() {
            continue;
        }
        // Each group reads its audience's topics: those lacking the fields its system goes without.
        let audience = KafkaConfig { fields: target.omit.clone(), ..kafka.clone() };
        if let Err(e) = wait_until_applied(&audience, &[&kafka.group(name)], &types, deadline).await {
            console.line(&format!("{name} has not caught up with its Kafka topics ({e}); comparing anyway"));
        }
    }
}

/// One line of `--status`.
#[derive(Serialize)]
struct StatusRow {
    system: String,
    data_type: DataType,
    /// Live records the system holds.
    records: u64,
    /// Live records the hub sent it.
    hub_records: u64,
    digest_matches: bool,
    /// Records on its Kafka topics its group has not committed; none for a type sent over REST.
    kafka_lag: Option<i64>,
    /// When the system last applied a change of this type (from its
    /// `/metrics`); none if it never did or exports no metrics.
    last_applied: Option<chrono::DateTime<chrono::Utc>>,
}

/// What each system holds against the hub's ledger, and how far its
/// consumer group is behind on its audience's topics.
async fn print_status(args: &Args, config: &HubConfig, hub: &Hub) -> anyhow::Result<()> {
    let found = hub.reconcile(config).await?;
    let mut kafka = KafkaConfig::new(&args.brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    let routed = config.policy().data_types_via("kafka");
    let mut rows = vec![];
    for (name, types) in &found {
        let target = &config.targets[name];
        let kafka_types: Vec<DataType> = target.data_types.iter().copied().filter(|t| routed.contains(t)).collect();
        let audience = KafkaConfig { fields: target.omit.clone(), ..kafka.clone() };
        let lags = if kafka_types.is_empty() { vec![] } else { group_lag(&audience, &[&kafka.group(name)], &kafka_types).await? };
        let lag_of = |t: DataType| lags.iter().flat_map(|g| &g.lag).filter(|(topic, _)| kafka.data_type_of(topic) == Some(t)).map(|(_, n)| *n).sum();
        let last_applied = match &target.url {
            Some(url) => last_applied(url).await.unwrap_or_else(|e| {
                eprintln!("{name}: no last-applied times: {e}");
                BTreeMap::new()
            }),
            None => BTreeMap::new(),
        };
        for (t, r) in types {
            let kafka_lag = kafka_types.contains(t).then(|| lag_of(*t));
            rows.push(StatusRow {
                system: name.clone(),
                data_type: *t,
                records: r.records,
                hub_records: r.hub_records,
                digest_matches: r.digest_matches,
                kafka_lag,
                last_applied: last_applied.get(t).copied(),
            });
        }
    }
    if args.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    println!("{:<10} {:<13} {:>8} {:>8} {:>9}  {:<12} {:<20}", "system", "data type", "records", "hub", "kafka lag", "digest = hub", "last applied (UTC)");
    for r in &rows {
        let lag = r.kafka_lag.map_or("-".to_string(), |n| n.to_string());
        let at = r.last_applied.map_or("-".to_string(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string());
        let equal = if r.digest_matches { "yes" } else { "NO" };
        println!("{:<10} {:<13} {:>8} {:>8} {:>9}  {:<12} {}", r.system, r.data_type, r.records, r.hub_records, lag, equal, at);
    }
    Ok(())
}

/// When the system at `url` last applied a change of each data type:
/// `hr_last_applied_timestamp_seconds` on its `/metrics`.
async fn last_applied(url: &str) -> anyhow::Result<BTreeMap<DataType, chrono::DateTime<chrono::Utc>>> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let text = client.get(format!("{}/metrics", url.trim_end_matches('/'))).send().await?.error_for_status()?.text().await?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))?;
    let mut out = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == "hr_last_applied_timestamp_seconds") {
        let (Some(t), prometheus_parse::Value::Gauge(seconds)) = (sample.labels.get("data_type").and_then(|t| t.parse().ok()), &sample.value) else { continue };
        if let Some(at) = chrono::DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64) {
            out.insert(t, at);
        }
    }
    Ok(out)
}

/// The foreign keys of each system and data type that has any.
fn foreign_versions(found: &Reconciliation) -> BTreeMap<String, BTreeMap<DataType, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<DataType, Vec<String>>> = BTreeMap::new();
    for (system, types) in found {
        for (t, r) in types.iter().filter(|(_, r)| !r.drift.foreign.is_empty()) {
            let keys = r.drift.foreign.iter().map(|k| if t.is_sensitive() { "[redacted]".to_string() } else { k.key.clone() }).collect();
            out.entry(system.clone()).or_default().insert(*t, keys);
        }
    }
    out
}

fn print_drift(found: &Reconciliation) {
    for (system, types) in found {
        for (t, r) in types.iter().filter(|(_, r)| !r.digest_matches) {
            let d = &r.drift;
            println!("drift: {system}/{t}: {} missing, {} edited, {} extra, {} foreign", d.missing.len(), d.edited.len(), d.extra.len(), d.foreign.len());
        }
    }
}

fn print_systems(systems: &Reconciliation) {
    println!("{:<10} {:<13} {:>8} {:>8}  digest = hub", "system", "data type", "records", "hub");
    for (system, types) in systems {
        for (t, r) in types {
            println!("{:<10} {:<13} {:>8} {:>8}  {}", system, t.as_str(), r.records, r.hub_records, if r.digest_matches { "yes" } else { "NO" });
        }
    }
}
