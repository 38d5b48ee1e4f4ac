//! The hub as its own process: merge the input, plan deltas against the
//! ledger, propagate (Kafka and REST per the routes), wait until every
//! system applied, and compare each system's digests with the hub's.
//!
//! ```text
//! # $T: each system's HR_SYSTEM_TOKEN (at least 32 bytes)
//! HR_TOKEN_PAYROLL=$T HR_TOKEN_ORGCHART=$T HR_TOKEN_ERP=$T \
//! hr-sync hub --input out/input --config config/hub.local.toml --brokers 127.0.0.1:9092
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
use hr_core::{CompanyDays, DataType, HeldBack, HeldRecord, Ledger, MergeReport, Sensitive};
use hr_demo::console::{Console, LogFormat};
use hr_hub::{
    acl_commands, hub_api, load_and_merge, load_and_merge_reading, ApiConfig, ApiGate, Hub, HubConfig, HubError, LiveStatus, Reconciliation, RepairOutcome,
    SyncOutcome, SystemProbe, SystemsLive,
};
use hr_transport_kafka::{ensure_topics, group_lag, BrokerStatus, BrokerWatch, KafkaConfig, LagMonitor};
use hr_transport_rest::{check_token_strength, metrics_endpoint, serve_tls_with_limits, ConnectionLimits, RestConfig, TlsIdentity};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tracing::Instrument;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The input directory (laid out as docs/input-contract.md describes).
    #[arg(long, required_unless_present_any = ["print_acls", "cases", "decide"])]
    input: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Routing, targets with their `url` and `token_env`, topic prefix, mapping.
    #[arg(long, required_unless_present_any = ["cases", "decide"])]
    config: Option<PathBuf>,
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
    /// Print, per system and data type, what it holds against the hub
    /// (records, hub records, digest equal, Kafka lag) and exit; sends nothing.
    #[arg(long, conflicts_with_all = ["watch", "check_only", "listen", "plan", "approve", "audit"])]
    status: bool,
    /// Print what a run would change, per system, data type and operation,
    /// with its plan id and whether `[safety]` holds it, and exit; sends
    /// nothing and changes neither the ledger nor any system.
    #[arg(long, conflicts_with_all = ["watch", "check_only", "listen", "approve", "audit"])]
    plan: bool,
    /// Run exactly the plan with this id (from a held run's report or
    /// --plan), whatever `[safety]` says; if the run now would be another
    /// plan, refuse and say what changed. Recorded in the audit log.
    #[arg(long, value_name = "PLAN_ID", conflicts_with_all = ["watch", "check_only"])]
    approve: Option<String>,
    /// Who approves (--approve) or decides (--decide), as the audit log names them (default: $USER).
    #[arg(long)]
    operator: Option<String>,
    /// Print the open review cases (employees that may be one person) and exit.
    #[arg(long, conflicts_with_all = ["watch", "check_only", "listen", "plan", "approve", "audit", "status"])]
    cases: bool,
    /// Decide review case CASE: `same` (one person from the next run on) or
    /// `different` (closed for good); recorded in the audit log, and exit.
    #[arg(long, num_args = 2, value_names = ["CASE", "DECISION"], conflicts_with_all = ["watch", "check_only", "listen", "plan", "approve", "audit", "status", "cases"])]
    decide: Option<Vec<String>>,
    /// Print the audit log (every run, real-time call and approval) and exit.
    #[arg(long, conflicts_with_all = ["watch", "check_only", "listen"])]
    audit: bool,
    /// With --audit: only entries at or after this time (RFC 3339).
    #[arg(long, requires = "audit")]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// With --status, --plan or --audit: JSON instead of a table.
    #[arg(long)]
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
    /// Serve the hub's metrics (Prometheus text, GET /metrics) on this
    /// address; with HR_METRICS_TOKEN set, only to that bearer token.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Print the Kafka ACLs of this deployment, one `kafka-acls.sh` argument
    /// list per line (the hub's principal is --hub-principal, each system's
    /// its name), and exit.
    #[arg(long)]
    print_acls: bool,
    /// The hub's Kafka principal, for --print-acls.
    #[arg(long, default_value = "hub")]
    hub_principal: String,
    /// Serve --listen and --metrics-listen over HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Judge hire dates, termination dates and grant expiry as if today
    /// were this day (YYYY-MM-DD): for tests and backfills; a deployment
    /// leaves it out and uses the clock's day (UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    today: Option<chrono::NaiveDate>,
}

/// The bearer token `/metrics` requires, here and (for --status) at the systems.
const METRICS_TOKEN_ENV: &str = "HR_METRICS_TOKEN";

impl Args {
    /// The input directory: clap requires it for everything but --print-acls.
    fn input(&self) -> &PathBuf {
        self.input.as_ref().expect("clap requires --input unless --print-acls")
    }
}

/// The exit code of a run held for approval (`[safety]`): nothing was sent.
const HELD_EXIT_CODE: i32 = 3;

/// The hub's ledger in its data directory.
const LEDGER_FILE: &str = "hub-ledger.sqlite3";

/// What one run did.
#[derive(Serialize)]
struct RunReport {
    /// Set when the run was held for approval: its plan id and each reason. Nothing was sent, or,
    /// when only its repairs were held, the run's own changes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<serde_json::Value>,
    /// The id every log line of the run carries (its span's `run_id`).
    run_id: String,
    #[serde(flatten)]
    merge: MergeReport,
    /// What the export dates after the run's day, by day (hires, departures, rows dated later).
    scheduled: Vec<hr_core::Scheduled>,
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
    /// Targets nothing reads back (a Kafka consumer without a REST
    /// receiver): not compared, so not in `systems`.
    not_comparable: Vec<String>,
    /// Per system and data type, keys held at versions the hub never gave
    /// (written by someone else): not repaired; remove those rows at the system.
    foreign_versions: BTreeMap<String, BTreeMap<DataType, Vec<String>>>,
    /// Changes left out because a receiver would refuse them (never given a version, never sent).
    rejected: Vec<hr_core::RejectedChange>,
    /// People whose grants on a system are suspended (sent revoked) because
    /// a line of permissions.jsonl about them could not be read.
    suspended_for_bad_line: Vec<hr_core::Suspension>,
}

impl RunReport {
    /// The report of a run held for approval: nothing sent, nothing compared.
    fn held(run_id: &str, merge: MergeReport, held: serde_json::Value, started: Instant) -> Self {
        RunReport {
            held: Some(held),
            run_id: run_id.to_string(),
            merge,
            scheduled: vec![],
            changes_sent: 0,
            changes_retried: 0,
            held_back: vec![],
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            drift_found: Reconciliation::new(),
            repaired: BTreeMap::new(),
            repaired_per_target: BTreeMap::new(),
            unrepairable: BTreeMap::new(),
            source_older: BTreeMap::new(),
            systems: Reconciliation::new(),
            not_comparable: vec![],
            foreign_versions: BTreeMap::new(),
            rejected: vec![],
            suspended_for_bad_line: vec![],
        }
    }

    /// `system/data_type` of every system that still differs from the hub.
    fn mismatched(&self) -> Vec<String> {
        self.systems.iter().flat_map(|(s, types)| types.iter().filter(|(_, r)| !r.digest_matches).map(move |(t, _)| format!("{s}/{t}"))).collect()
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    hr_demo::console::init_logging_as(args.log_format);
    let console = if args.log_format == LogFormat::Json { Console::events() } else { Console::detect() };
    // Review cases live in the ledger alone: no configuration, no input.
    if args.cases {
        let ledger = Ledger::open_read_only(args.data_dir.join(LEDGER_FILE))?;
        return print_cases(&args, &ledger);
    }
    if let Some([case, decision]) = args.decide.as_deref() {
        return decide(&args, case, decision);
    }
    let config = HubConfig::load(args.config.as_deref())?;
    if args.print_acls {
        for args in acl_commands(&config.kafka_acls(&args.hub_principal)) {
            println!("{}", args.join(" "));
        }
        return Ok(());
    }
    let mut rest = config.rest_config()?;
    rest.deadline = Duration::from_secs(args.rest_deadline_secs);
    std::fs::create_dir_all(&args.data_dir)?;
    // Read before anything runs: a --listen without a token is a mistake to report at once.
    // Callers named in [api.callers] each have a token of their own; otherwise HR_HUB_TOKEN is the one caller.
    let api_config = match (args.listen, config.api_config()?) {
        (None, _) => None,
        (Some(_), Some(callers)) => Some(callers),
        (Some(_), None) => {
            let token = std::env::var("HR_HUB_TOKEN").map_err(|_| anyhow::anyhow!("--listen needs [api.callers] or the API's bearer token in HR_HUB_TOKEN"))?;
            Some(ApiConfig::new(token)?)
        }
    };

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsIdentity::from_pem_files(cert, key)?),
        _ => None,
    };
    // The console under --listen: a Secure session cookie over HTTPS, and the systems' lag and last applied times.
    let api_config = api_config.map(|mut api| {
        api.secure_cookies = tls.is_some();
        api.with_probe(Arc::new(SystemsProbe { config: config.clone(), brokers: args.brokers.clone(), last: tokio::sync::Mutex::new(None) }))
    });
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, tls.clone(), &console).await?;
    }

    if args.status {
        let hub = connect(&args, &config, rest.clone(), Access::ReadOnly).await?;
        return print_status(&args, &config, &hub).await;
    }
    if args.audit {
        let ledger = Ledger::open_read_only(args.data_dir.join(LEDGER_FILE))?;
        return print_audit(&args, &ledger);
    }
    if args.plan {
        let hub = connect(&args, &config, rest.clone(), Access::ReadOnly).await?;
        return print_plan(&args, &config, &hub).await;
    }

    // The API listens from the start: until the hub is connected, and while the
    // brokers do not answer, it says so (503) instead of refusing connections.
    let gate = match (args.listen, &api_config) {
        (Some(addr), Some(_)) => Some(serve_gate(addr, &args.brokers, tls.clone(), &console).await?),
        _ => None,
    };
    let brokers = if args.watch.is_some() || gate.is_some() { Some(watch_brokers(&config.kafka(&args.brokers)?, gate.clone()).await?) } else { None };
    if let Some(gate) = &gate {
        watch_targets(&config, gate.clone())?;
    }

    // Connected now, while the input is read and merged: the first wait then finds its connections open.
    let waits = ConsumerWaits::connect(&args, &config);
    let mut hub: Option<Arc<Mutex<Hub>>> = None;
    let mut failures: u32 = 0;
    loop {
        let run_id = uuid::Uuid::new_v4().to_string();
        let a_offset = config.mapping_for(args.input()).map_or(0, |m| m.company_a.utc_offset_hours);
        let days_at_run = CompanyDays::at(a_offset, args.today);
        let run = async {
            let outcome = match connected(&mut hub, &args, &config, &rest, brokers.as_ref()).await {
                Ok((hub, new)) => {
                    if let (true, Some(gate), Some(api_config)) = (new, &gate, &api_config) {
                        gate.open(hub_api(hub.clone(), api_config.clone()));
                        console.line("real-time API ready");
                    }
                    run_once(&args, &config, &hub, &waits, &console, &run_id).await
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
                wait_enforcing_expiry(hub.as_deref(), Duration::MAX, None, None, &console).await;
            }
            let held = outcome.as_ref().ok().and_then(|r| r.held.clone().map(|held| (held, r.changes_sent)));
            outcome?;
            if let Some((held, sent)) = held {
                let what = if sent == 0 { "nothing sent".to_string() } else { format!("its {sent} changes sent, its repairs held") };
                console.line(&format!("run held for approval (plan {}); {what}", held["plan_id"].as_str().unwrap_or_default()));
                std::process::exit(HELD_EXIT_CODE);
            }
            anyhow::ensure!(mismatched.is_empty(), "systems differ from the hub: {}", mismatched.join(", "));
            return Ok(());
        };
        let pause = match outcome {
            Ok(_) if mismatched.is_empty() => {
                failures = 0;
                Duration::from_secs(every)
            }
            Ok(report) if report.held.is_some() => {
                console.line(&format!("systems still differ from the hub: {} (held for approval: hub --plan, hub --approve)", mismatched.join(", ")));
                Duration::from_secs(every)
            }
            Ok(_) => {
                console.line(&format!("systems still differ from the hub: {} (the next run repairs them)", mismatched.join(", ")));
                Duration::from_secs(every)
            }
            // Another hub writes this ledger: waiting would only run two hubs once it lets go.
            Err(e) if matches!(e.downcast_ref::<hr_core::LedgerError>(), Some(hr_core::LedgerError::Locked { .. })) => return Err(e),
            Err(e) => {
                failures += 1;
                let pause = retry_pause(every, failures);
                console.line(&format!("run failed: {e:#}; retrying in {} s (the next run resends what is missing)", pause.as_secs()));
                pause
            }
        };
        // Not connected yet: the brokers answering again ends the pause.
        let reconnect = brokers.clone().filter(|_| hub.is_none());
        let due = match &hub {
            Some(hub) => hub.lock().await.last_plan().and_then(first_due).map(|next| DueWatch { next, days_at_run, a_offset, fixed: args.today }),
            None => None,
        };
        if !wait_enforcing_expiry(hub.as_deref(), pause, reconnect, due, &console).await {
            return Ok(());
        }
    }
}

/// Serves the real-time API's gate on `addr` for as long as the process
/// runs (closing connections that stall, capping how many are open); the
/// hub's routes go behind it once it is connected.
async fn serve_gate(addr: SocketAddr, brokers: &str, tls: Option<TlsIdentity>, console: &Console) -> anyhow::Result<ApiGate> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let gate = ApiGate::new(format!("connecting to the Kafka brokers at {brokers}"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(serve_tls_with_limits(listener, gate.router(), ConnectionLimits::default(), tls));
    console.line(&format!("real-time API listening on {scheme}://{bound}"));
    Ok(gate)
}

/// Asks each REST target's `/healthz` every few seconds for as long as the
/// process runs: one that does not answer at all is logged and named by the
/// gate's 503 until it answers again (an answer of any status counts: a
/// system whose own brokers are down still takes REST calls).
fn watch_targets(config: &HubConfig, gate: ApiGate) -> anyhow::Result<()> {
    let client = target_client(config, Duration::from_secs(3))?;
    let targets: Vec<(String, String)> = config.targets.iter().filter_map(|(name, t)| t.url.clone().map(|url| (name.clone(), url))).collect();
    tokio::spawn(async move {
        let mut down = std::collections::BTreeSet::new();
        loop {
            for (name, url) in &targets {
                let answers = client.get(format!("{}/healthz", url.trim_end_matches('/'))).send().await.is_ok();
                if !answers && down.insert(name.clone()) {
                    tracing::warn!(target_system = %name, url = %url, "REST target does not answer");
                    gate.set_down(&format!("target:{name}"), Some(format!("target {name} at {url} does not answer")));
                } else if answers && down.remove(name) {
                    tracing::warn!(target_system = %name, url = %url, "REST target answers again");
                    gate.set_down(&format!("target:{name}"), None);
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    Ok(())
}

/// Watches the brokers for as long as the process runs: the watch logs when
/// they stop answering and when they answer again, and the gate (if any)
/// answers 503 naming them meanwhile. Returns once the first answer (or
/// its absence) is known, at most a few seconds.
async fn watch_brokers(kafka: &KafkaConfig, gate: Option<ApiGate>) -> anyhow::Result<tokio::sync::watch::Receiver<BrokerStatus>> {
    let watch = BrokerWatch::start(kafka, Duration::from_secs(2))?;
    let brokers = kafka.brokers.as_str();
    let mut status = watch.subscribe();
    let first = status.clone();
    let brokers = brokers.to_string();
    tokio::spawn(async move {
        let _watch = watch; // dropping it would stop the watch
        while status.changed().await.is_ok() {
            let down = match &*status.borrow() {
                // What is down, not why: the cause (in the log) may name internals a caller need not see.
                BrokerStatus::Unreachable(_) => Some(format!("the Kafka brokers at {brokers} do not answer")),
                _ => None,
            };
            if let Some(gate) = &gate {
                gate.set_down("kafka", down);
            }
        }
    });
    let mut known = first.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), known.wait_for(|s| *s != BrokerStatus::Unknown)).await;
    Ok(first)
}

/// Installs the Prometheus recorder and serves it on `addr` for as long as the process runs.
async fn serve_metrics(addr: SocketAddr, tls: Option<TlsIdentity>, console: &Console) -> anyhow::Result<()> {
    let token = metrics_token()?;
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = metrics_endpoint(Some(Arc::new(move || prometheus.render())), token.map(Sensitive::new));
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(serve_tls_with_limits(listener, app, ConnectionLimits::default(), tls));
    console.line(&format!("metrics on {scheme}://{bound}/metrics"));
    Ok(())
}

/// The token in HR_METRICS_TOKEN, once it is strong enough; `None` when unset.
fn metrics_token() -> anyhow::Result<Option<String>> {
    let Ok(token) = std::env::var(METRICS_TOKEN_ENV) else { return Ok(None) };
    check_token_strength(&format!("the metrics endpoint's ({METRICS_TOKEN_ENV})"), &token)?;
    Ok(Some(token))
}

/// Says why a run (or its repairs) waits for approval; the report's `held`.
fn held_for_approval(console: &Console, plan_id: &str, reasons: &[hr_hub::HoldReason]) -> serde_json::Value {
    for reason in reasons {
        console.line(&format!("held: {reason}"));
    }
    let reasons_text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    serde_json::json!({"plan_id": plan_id, "reasons": reasons_text, "hold": reasons, "approve": format!("hub --approve {plan_id}")})
}

/// The run's own metrics: duration, outcome, what the merge set aside, when it last succeeded.
fn count_run(outcome: &anyhow::Result<RunReport>) {
    match outcome {
        Ok(report) if report.held.is_some() => metrics::counter!("hr_hub_runs_total", "outcome" => "held").increment(1),
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

/// The first day a change the last plan scheduled takes effect on.
fn first_due(plan: &serde_json::Value) -> Option<chrono::NaiveDate> {
    plan["scheduled"].as_array()?.iter().filter_map(|due| due["on"].as_str()?.parse().ok()).min()
}

/// When a scheduled change comes due: the first day one does, and the
/// companies' days when the last run started.
struct DueWatch {
    next: chrono::NaiveDate,
    days_at_run: CompanyDays,
    a_offset: i32,
    fixed: Option<chrono::NaiveDate>,
}

impl DueWatch {
    /// Whether a company's day changed since the last run to one on or
    /// after the first due day: once per change of day, so a run that
    /// failed before planning does not wake every check.
    fn due(&self) -> bool {
        let days = CompanyDays::at(self.a_offset, self.fixed);
        days != self.days_at_run && days.latest() >= self.next
    }
}

/// Waits `pause` between runs, revoking lapsed grants every minute; `false`
/// on Ctrl-C. With `reconnect`, the brokers answering ends the wait early;
/// so does a scheduled change coming due (`due`: hires, departures, rows and
/// grants dated ahead), so it applies on its company's day however long the
/// interval.
async fn wait_enforcing_expiry(
    hub: Option<&Mutex<Hub>>,
    pause: Duration,
    mut reconnect: Option<tokio::sync::watch::Receiver<BrokerStatus>>,
    due: Option<DueWatch>,
    console: &Console,
) -> bool {
    let until = Instant::now().checked_add(pause);
    let answering = async {
        match &mut reconnect {
            Some(status) => drop(status.wait_for(|s| *s == BrokerStatus::Reachable).await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(answering);
    loop {
        let left = until.map_or(EXPIRY_CHECK, |u| u.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return false,
            _ = &mut answering => return true,
            _ = tokio::time::sleep(left.min(EXPIRY_CHECK)) => {}
        }
        let Some(hub) = hub else { continue };
        let mut hub = hub.lock().await;
        let today = hub.today();
        match hub.enforce_expiry(today).await {
            Ok(revoked) if revoked.sent > 0 => console.line(&format!("revoked {} grants that expired since the last run", revoked.sent)),
            Ok(_) => {}
            Err(e) => console.line(&format!("revoking expired grants failed: {e} (the next run revokes them)")),
        }
        if due.as_ref().is_some_and(DueWatch::due) {
            console.line("scheduled changes take effect today; running now");
            return true;
        }
    }
}

/// The hub, connected on first use; `true` when it was connected just now.
/// While the watched brokers do not answer, it does not try (creating topics
/// would wait a minute for them) and says why.
async fn connected(
    hub: &mut Option<Arc<Mutex<Hub>>>,
    args: &Args,
    config: &HubConfig,
    rest: &RestConfig,
    brokers: Option<&tokio::sync::watch::Receiver<BrokerStatus>>,
) -> anyhow::Result<(Arc<Mutex<Hub>>, bool)> {
    if let Some(hub) = hub {
        return Ok((hub.clone(), false));
    }
    if let Some(BrokerStatus::Unreachable(why)) = brokers.map(|b| b.borrow().clone()) {
        anyhow::bail!("the Kafka brokers at {} do not answer ({why})", args.brokers);
    }
    let new = Arc::new(Mutex::new(connect(args, config, rest.clone(), Access::Write).await?));
    *hub = Some(new.clone());
    Ok((new, true))
}

/// Creates the topics and the hub: retried by `--watch` while the broker is unreachable.
async fn connect(args: &Args, config: &HubConfig, rest: RestConfig, access: Access) -> anyhow::Result<Hub> {
    // First: a ledger another hub holds stops this one before it touches anything.
    let path = args.data_dir.join(LEDGER_FILE);
    let ledger = match access {
        Access::Write => Ledger::open(path)?,
        Access::ReadOnly => Ledger::open_read_only(path)?,
    };
    let kafka = config.kafka(&args.brokers)?;
    // Every audience's topics at once: each check opens its own Kafka clients, which take most of its time.
    let kafka_types = config.policy().data_types_via("kafka");
    futures::future::try_join_all(config.kafka_audiences(&kafka).iter().map(|audience| ensure_topics(audience, &kafka_types))).await?;
    let mut hub = Hub::new(config, kafka, rest, ledger)?;
    hub.set_today(args.today);
    Ok(hub)
}

/// How the hub program opens its ledger.
#[derive(Clone, Copy)]
enum Access {
    /// Locked for this process: it runs.
    Write,
    /// Read beside the hub that runs (status, plan preview).
    ReadOnly,
}

/// Who approves, as the audit log names them.
fn operator(args: &Args) -> String {
    args.operator.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into())
}

/// `--plan`: merges the input and prints what a run would change, sending nothing.
async fn print_plan(args: &Args, config: &HubConfig, hub: &Hub) -> anyhow::Result<()> {
    let mapping = config.mapping_for(args.input())?;
    let identities = Arc::new(hub.ledger().identities()?);
    let outcome = load_and_merge(args.input().clone(), mapping, identities.clone(), hub.fixed_today()).await?;
    let held = HeldBack::from_report(&outcome.report, &identities);
    let found = hub.reconcile(config).await?;
    let plan = hub.plan_reconciled(&outcome.state, &held, &found)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan.summary())?);
        return Ok(());
    }
    let verdict = if plan.is_held() { "HELD for approval" } else { "may run" };
    println!("plan {}: {} changes; {verdict}", plan.plan_id, plan.changes());
    for (target, types) in &plan.targets {
        for (t, c) in types {
            let samples: Vec<String> = c.samples.iter().map(|(op, keys)| format!("{op} {}", keys.join(", "))).collect();
            println!(
                "  {target}/{t}: create {}, update {}, delete {}, terminate {}, transfer {}, revoke {}, of which repairs {} (holds {}); e.g. {}",
                c.create,
                c.update,
                c.delete,
                c.terminate,
                c.transfer,
                c.revoke,
                c.repair,
                c.records.map_or_else(|| "?".to_string(), |n| n.to_string()),
                samples.join("; ")
            );
        }
    }
    for reason in &plan.hold {
        println!("  held: {reason}");
    }
    if plan.is_held() {
        println!("approve exactly this plan with: hub --approve {}", plan.plan_id);
    }
    for due in &plan.scheduled {
        let to = due.target.as_ref().map_or(String::new(), |t| format!(" to {t}"));
        println!("  scheduled: {} {}{to} on {} (the first run that day)", due.employee, due.change, due.on);
    }
    Ok(())
}

/// `--audit`: the audit log, oldest first.
/// `--decide CASE DECISION`: decides a review case, in the ledger and its audit log.
fn decide(args: &Args, case: &str, decision: &str) -> anyhow::Result<()> {
    let decision: hr_core::CaseDecision = decision.parse().map_err(anyhow::Error::msg)?;
    let mut ledger = Ledger::open(args.data_dir.join(LEDGER_FILE))?;
    let case = ledger.decide_case(case, decision, &operator(args))?;
    println!("{} decided {}: {}", case.id, decision.as_str(), case.employees.join(", "));
    if let (hr_core::CaseDecision::Same, Some(survivor)) = (decision, case.employees.first()) {
        println!("from the next run on they are one person, {survivor}");
    }
    Ok(())
}

/// `--cases`: the open review cases.
fn print_cases(args: &Args, ledger: &Ledger) -> anyhow::Result<()> {
    let open: Vec<hr_core::ReviewCase> = ledger.cases()?.into_iter().filter(|c| c.decision.is_none()).collect();
    for case in &open {
        if args.json {
            println!("{}", serde_json::to_string(case)?);
            continue;
        }
        println!("{} (opened {}): {}", case.id, case.opened_at, case.why);
        for record in &case.records {
            let text = |field: &str| record[field].as_str().unwrap_or("-").to_string();
            println!("  {:<12} {:<16} {:<28} {:<10} {:<10} {}", text("id"), text("name"), text("email"), text("org_unit"), text("grade"), text("status"));
        }
    }
    if !args.json {
        match open.first() {
            Some(case) => println!("decide each with: hub --decide {} same|different", case.id),
            None => println!("no open review cases"),
        }
    }
    Ok(())
}

fn print_audit(args: &Args, ledger: &Ledger) -> anyhow::Result<()> {
    for entry in ledger.audit_entries(args.since)? {
        if args.json {
            println!("{}", serde_json::to_string(&entry)?);
        } else {
            println!("{} {:<8} {:<9} {}", entry.at, entry.actor, entry.action, entry.detail);
        }
    }
    Ok(())
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
async fn run_once(args: &Args, config: &HubConfig, hub: &Mutex<Hub>, waits: &ConsumerWaits, console: &Console, run_id: &str) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mapping = config.mapping_for(args.input())?;
    let fixed_today = hub.lock().await.fixed_today();
    let mut identities = Arc::default();
    let outcome = {
        let _phase = console.phase("merging", None);
        // The ledger's identities are read while the input files are.
        let reading = async {
            identities = Arc::new(hub.lock().await.ledger().identities()?);
            anyhow::Ok(identities.clone())
        };
        load_and_merge_reading(args.input().clone(), mapping, reading, fixed_today).await?
    };
    console.line(&format!(
        "merged {} employees ({} matched persons, {} records quarantined)",
        outcome.report.counts.get(&DataType::Employee).copied().unwrap_or(0),
        outcome.report.matched_persons,
        outcome.report.quarantined.len()
    ));
    let held = HeldBack::from_report(&outcome.report, &identities);
    hub.lock().await.note_quarantine(outcome.report.quarantined.clone());
    let scheduled = hub.lock().await.scheduled(&outcome.state);
    if !args.check_only {
        let opened = hub.lock().await.open_cases(&outcome.report.conflicts, &outcome.state)?;
        if opened > 0 {
            console.line(&format!("{opened} new review cases: employees that may be one person (hub --cases)"));
        }
    }
    // The hub's lock is held while it plans, sends and compares, never while
    // it waits for systems: real-time calls go through meanwhile.
    let deadline = Duration::from_secs(args.deadline_secs);
    let sent = if args.check_only {
        SyncOutcome::default()
    } else {
        let sent = {
            let _phase = console.phase("propagating", None);
            let mut hub = hub.lock().await;
            match &args.approve {
                Some(plan_id) => hub.sync_approved(&outcome.state, &held, plan_id, &operator(args)).await,
                None => hub.sync_with(&outcome.state, &held).await,
            }
        };
        let sent = match sent {
            Err(HubError::Held { plan_id, reasons }) => {
                let held = held_for_approval(console, &plan_id, &reasons);
                let mut report = RunReport::held(run_id, outcome.report, held, started);
                report.scheduled = scheduled;
                return Ok(report);
            }
            other => other?,
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
    waits.wait(deadline, console).await;
    let (drift_found, repair) = {
        let mut hub = hub.lock().await;
        // A check reads everything each system holds: it must see any edit, not only those the systems' digests could.
        let drift_found = if args.check_only { hub.reconcile_rescanned(config).await? } else { hub.reconcile(config).await? };
        let any_drift = drift_found.values().flat_map(|t| t.values()).any(|r| !r.digest_matches);
        // An approved run's repairs go if they are the ones its plan showed; others are checked against [safety].
        let repair = if any_drift && !args.check_only { Some(hub.repair(&outcome.state, &held, &drift_found).await) } else { None };
        (drift_found, repair.transpose())
    };
    print_drift(&drift_found);
    let repair = match repair {
        Err(HubError::Held { plan_id, reasons }) => {
            // The run's own changes went; the repairs wait for a person: the systems still differ.
            let held = held_for_approval(console, &plan_id, &reasons);
            let mut report = RunReport::held(run_id, outcome.report, held, started);
            report.scheduled = scheduled;
            report.changes_sent = sent.sent;
            report.changes_retried = sent.retried;
            report.held_back = sent.held_back;
            report.source_older = sent.source_older;
            report.rejected = sent.rejected;
            report.foreign_versions = foreign_versions(&drift_found);
            report.systems = drift_found.clone();
            report.drift_found = drift_found;
            return Ok(report);
        }
        other => other?,
    };
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
    // One lock, released before the report is built: a second `lock().await` in the same
    // expression would wait for the first guard, which lives until the statement ends.
    let (suspended_for_bad_line, not_comparable) = {
        let hub = hub.lock().await;
        (hub.suspensions(&held).to_vec(), hub.not_comparable())
    };
    Ok(RunReport {
        held: None,
        foreign_versions: foreign_versions(&drift_found),
        run_id: run_id.to_string(),
        merge: outcome.report,
        scheduled,
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
        suspended_for_bad_line,
        not_comparable,
        systems,
    })
}

/// Waits, at most a deadline, until every system's consumer group has read
/// all its topics hold: a system still catching up (one rebuilt from an
/// empty store reads the topics from their start) is not drift to repair.
/// One that does not catch up in time is left to the comparison.
///
/// Each system's Kafka clients are made once and kept: opening one
/// (connections, the group's coordinator) takes most of a wait's time.
struct ConsumerWaits {
    systems: Vec<WaitedSystem>,
}

impl Drop for ConsumerWaits {
    fn drop(&mut self) {
        // Each monitor's Kafka clients take about 100 ms to close: every system's at once.
        std::thread::scope(|scope| {
            for system in self.systems.drain(..) {
                scope.spawn(move || drop(system));
            }
        });
    }
}

/// A system that reads Kafka, as [`ConsumerWaits`] waits for it.
struct WaitedSystem {
    name: String,
    /// The data types it reads from Kafka.
    types: Vec<DataType>,
    /// Its audience's settings: the topics lacking the fields it goes without.
    audience: KafkaConfig,
    /// A monitor of its group, once one could be made.
    monitor: std::sync::Mutex<Option<LagMonitor>>,
}

impl ConsumerWaits {
    /// Monitors of every system's group, warming up in the background.
    fn connect(args: &Args, config: &HubConfig) -> ConsumerWaits {
        // The settings were checked when the configuration loaded.
        let Ok(kafka) = config.kafka(&args.brokers) else { return ConsumerWaits { systems: vec![] } };
        let mut systems = vec![];
        for (name, target) in &config.targets {
            let types = config.kafka_types_of(name);
            if types.is_empty() {
                continue;
            }
            // Each group reads its audience's topics: those lacking the fields its system goes without.
            let audience = KafkaConfig { fields: target.omit.clone(), ..kafka.clone() };
            let monitor = LagMonitor::new(&audience, &[&kafka.group(name)]).ok();
            if let Some(warming) = monitor.clone() {
                let warm_types = types.clone();
                tokio::spawn(async move {
                    warming.lag(&warm_types).await.map(drop).unwrap_or_else(|e| tracing::debug!(error = %e, "consumer lag not readable yet"))
                });
            }
            systems.push(WaitedSystem { name: name.clone(), types, audience, monitor: std::sync::Mutex::new(monitor) });
        }
        ConsumerWaits { systems }
    }

    /// Waits, every system at once, until each group committed everything
    /// on its topics or `deadline` passed; then says which did not, and the
    /// comparison goes ahead.
    async fn wait(&self, deadline: Duration, console: &Console) {
        let waits = self.systems.iter().map(|system| async move {
            // A monitor that could not be made is tried again each run, as each run made its own before.
            let monitor = {
                let mut kept = system.monitor.lock().unwrap_or_else(|p| p.into_inner());
                let monitor = match kept.clone() {
                    Some(monitor) => Ok(monitor),
                    None => LagMonitor::new(&system.audience, &[&system.audience.group(&system.name)]),
                };
                if let Ok(made) = &monitor {
                    *kept = Some(made.clone());
                }
                monitor
            };
            let waited = match monitor {
                Ok(monitor) => {
                    monitor.forget_partitions();
                    monitor.wait(&system.types, deadline, |_| {}).await
                }
                Err(e) => Err(e),
            };
            (&system.name, waited)
        });
        for (name, waited) in futures::future::join_all(waits).await {
            if let Err(e) = waited {
                console.line(&format!("{name} has not caught up with its Kafka topics ({e}); comparing anyway"));
            }
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
    let mut rows = vec![];
    for (name, types) in &found {
        let live = live_status(config, &args.brokers, name).await?;
        for (t, r) in types {
            let now = live.get(t).copied().unwrap_or_default();
            rows.push(StatusRow {
                system: name.clone(),
                data_type: *t,
                records: r.records,
                hub_records: r.hub_records,
                digest_matches: r.digest_matches,
                kafka_lag: now.kafka_lag,
                last_applied: now.last_applied,
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
    let last_run = hub.last_run()?;
    let scheduled = last_run.as_ref().and_then(|r| r.detail["scheduled"].as_array().cloned()).unwrap_or_default();
    if !scheduled.is_empty() {
        println!("\nscheduled by the last run's export (each applied by the first run on its day):");
        for due in &scheduled {
            let text = |field: &str| due[field].as_str().unwrap_or_default().to_string();
            let to = due["target"].as_str().map_or(String::new(), |t| format!(" to {t}"));
            println!("  {} {} {}{to}", text("on"), text("employee"), text("change"));
        }
    }
    // The last run, if a person must approve it.
    if let Some(run) = last_run.filter(|r| r.detail["outcome"] == "held") {
        let plan_id = run.detail["plan_id"].as_str().unwrap_or_default();
        println!("\nthe last run ({}) is HELD for approval, plan {plan_id}:", run.at);
        for reason in run.detail["hold"].as_array().into_iter().flatten() {
            let text = |field: &str| reason[field].as_str().unwrap_or_default().to_string();
            println!(
                "  {}/{}: {} {} of {} records, over {}",
                text("target"),
                text("data_type"),
                reason["count"],
                text("kind"),
                reason["records"],
                text("limit")
            );
        }
        println!("review it with --plan, approve it with --approve {plan_id}");
    }
    Ok(())
}

/// What system `name` says of itself now: its consumer group's lag on each
/// type it reads from Kafka, and when its receiver last applied each type
/// (a directory has no such page; a receiver that does not answer is
/// reported and left out).
async fn live_status(config: &HubConfig, brokers: &str, name: &str) -> anyhow::Result<BTreeMap<DataType, LiveStatus>> {
    let kafka = config.kafka(brokers)?;
    let target = &config.targets[name];
    let kafka_types = config.kafka_types_of(name);
    let audience = KafkaConfig { fields: target.omit.clone(), ..kafka.clone() };
    let lags = if kafka_types.is_empty() { vec![] } else { group_lag(&audience, &[&kafka.group(name)], &kafka_types).await? };
    let lag_of = |t: DataType| lags.iter().flat_map(|g| &g.lag).filter(|(topic, _)| kafka.data_type_of(topic) == Some(t)).map(|(_, n)| *n).sum();
    let last_applied = match target.url.as_ref().filter(|_| target.transport.is_none()) {
        Some(url) => last_applied(config, url).await.unwrap_or_else(|e| {
            tracing::warn!(system = %name, error = %e, "no last-applied times");
            BTreeMap::new()
        }),
        None => BTreeMap::new(),
    };
    Ok(target
        .data_types
        .iter()
        .map(|t| (*t, LiveStatus { kafka_lag: kafka_types.contains(t).then(|| lag_of(*t)), last_applied: last_applied.get(t).copied() }))
        .collect())
}

/// The console's live view of the systems: [`live_status`] of each, all at
/// once, each within [`PROBE_TARGET_DEADLINE`]. One probe runs at a time and
/// its answer serves every page drawn in the next [`PROBE_FRESH_FOR`]: each
/// probe opens Kafka clients, and a page reloaded in a loop (or a script
/// polling it) must not open more.
struct SystemsProbe {
    config: HubConfig,
    brokers: String,
    last: tokio::sync::Mutex<Option<(Instant, SystemsLive)>>,
}

/// How long the console waits for one system's lag and last-applied times.
const PROBE_TARGET_DEADLINE: Duration = Duration::from_secs(3);
/// How long one probe's answer is shown before the systems are asked again.
const PROBE_FRESH_FOR: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl SystemProbe for SystemsProbe {
    async fn live(&self) -> SystemsLive {
        let mut last = self.last.lock().await;
        if let Some((at, live)) = last.as_ref().filter(|(at, _)| at.elapsed() < PROBE_FRESH_FOR) {
            tracing::trace!(age_ms = at.elapsed().as_millis() as u64, "console probe answered from the last one");
            return live.clone();
        }
        let probes = self.config.targets.keys().map(|name| async move {
            match tokio::time::timeout(PROBE_TARGET_DEADLINE, live_status(&self.config, &self.brokers, name)).await {
                Ok(Ok(live)) => Some((name.clone(), live)),
                Ok(Err(e)) => {
                    tracing::warn!(system = %name, error = %e, "the console cannot read this system's lag");
                    None
                }
                Err(_) => {
                    tracing::warn!(system = %name, "the console's read of this system's lag took over {} s", PROBE_TARGET_DEADLINE.as_secs());
                    None
                }
            }
        });
        let live: SystemsLive = futures::future::join_all(probes).await.into_iter().flatten().collect();
        *last = Some((Instant::now(), live.clone()));
        live
    }
}

/// A client for the targets' own endpoints (`/healthz`, `/metrics`): trusts
/// `rest_ca_file`'s CA as the transport does, and follows no redirect (one
/// could carry the metrics token elsewhere).
fn target_client(config: &HubConfig, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut client = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = config.rest_config()?.ca_pem {
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&ca)?);
    }
    Ok(client.build()?)
}

/// When the system at `url` last applied a change of each data type:
/// `hr_last_applied_timestamp_seconds` on its `/metrics`.
async fn last_applied(config: &HubConfig, url: &str) -> anyhow::Result<BTreeMap<DataType, chrono::DateTime<chrono::Utc>>> {
    let client = target_client(config, Duration::from_secs(5))?;
    let mut request = client.get(format!("{}/metrics", url.trim_end_matches('/')));
    if let Ok(token) = std::env::var(METRICS_TOKEN_ENV) {
        request = request.bearer_auth(token);
    }
    let text = request.send().await?.error_for_status()?.text().await?;
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
            let keys = r.drift.foreign.iter().map(|k| t.shown_key(&k.key).to_string()).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_due_day_is_the_earliest_scheduled() {
        let plan = serde_json::json!({"scheduled": [{"on": "2026-03-09", "employee": "A-1", "change": "hire"}, {"on": "2026-03-01", "employee": "B-2", "change": "change"}]});
        assert_eq!(first_due(&plan), "2026-03-01".parse().ok());
        assert_eq!(first_due(&serde_json::json!({"scheduled": []})), None);
        assert_eq!(first_due(&serde_json::json!({})), None);
    }

    #[test]
    fn a_scheduled_change_wakes_the_hub_once_when_a_companys_day_reaches_it() {
        let today = CompanyDays::now(9);
        let yesterday = today.previous();
        let a_day = today.of(hr_core::Company::A);
        let watch = |days_at_run, next| DueWatch { next, days_at_run, a_offset: 9, fixed: None };
        assert!(watch(yesterday, a_day).due(), "company A's day reached the due day since the last run");
        assert!(!watch(today, a_day).due(), "a run already started on this day: no second wake");
        assert!(!watch(yesterday, a_day.succ_opt().unwrap().succ_opt().unwrap()).due(), "not due yet");
        let fixed = "2026-03-01".parse().ok();
        let frozen = DueWatch { next: "2026-03-01".parse().unwrap(), days_at_run: CompanyDays::at(9, fixed), a_offset: 9, fixed };
        assert!(!frozen.due(), "under --today the day never changes");
    }
}
