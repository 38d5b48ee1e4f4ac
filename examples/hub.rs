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
//! changed; `--watch SECONDS` repeats the periodic sync on an interval.
use clap::Parser;
use hr_core::{load_input_dir, merge, DataType, Ledger, MergeReport};
use hr_sync::config::HubConfig;
use hr_sync::console::Console;
use hr_sync::hub::{Hub, Reconciled};
use hr_transport_kafka::{ensure_topics, KafkaConfig};
use hr_transport_rest::RestConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Merge, plan deltas, propagate to every target system and reconcile")]
struct Args {
    /// The input directory (the brief's input contract).
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
    /// Send deletions even when more than the ledger's guard allows.
    #[arg(long)]
    allow_mass_delete: bool,
}

/// What one run did.
#[derive(Serialize)]
struct RunReport {
    #[serde(flatten)]
    merge: MergeReport,
    changes_sent: u64,
    elapsed_ms: f64,
    systems: BTreeMap<String, BTreeMap<DataType, Reconciled>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hr_sync::console::init_logging();
    let args = Args::parse();
    let console = Console::detect();
    let config = HubConfig::load(Some(&args.config))?;
    let mut kafka = KafkaConfig::new(&args.brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    ensure_topics(&kafka, &config.policy().data_types_via("kafka")).await?;
    std::fs::create_dir_all(&args.data_dir)?;
    let ledger = Ledger::open(args.data_dir.join("hub-ledger.sqlite3"))?;
    let mut hub = Hub::new(&config, kafka, RestConfig::new(Hub::rest_targets(&config)?), ledger)?;
    hub.allow_mass_delete(args.allow_mass_delete);

    loop {
        let report = run_once(&args, &config, &mut hub, &console).await?;
        if let Some(path) = &args.report {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        }
        let mismatched: Vec<String> = report
            .systems
            .iter()
            .flat_map(|(s, types)| types.iter().filter(|(_, r)| !r.digest_matches).map(move |(t, _)| format!("{s}/{t}")))
            .collect();
        let Some(every) = args.watch else {
            anyhow::ensure!(mismatched.is_empty(), "digests differ from the hub's: {}", mismatched.join(", "));
            return Ok(());
        };
        if !mismatched.is_empty() {
            console.line(&format!("digests differ from the hub's: {} (the next run resends what is missing)", mismatched.join(", ")));
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
        }
    }
}

async fn run_once(args: &Args, config: &HubConfig, hub: &mut Hub, console: &Console) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let mapping = config.mapping_for(&args.input)?;
    let outcome = {
        let _phase = console.phase("merging", None);
        merge(load_input_dir(&args.input, &mapping)?)
    };
    console.line(&format!(
        "merged {} employees ({} matched persons, {} records quarantined)",
        outcome.report.counts.get(&DataType::Employee).copied().unwrap_or(0),
        outcome.report.matched_persons,
        outcome.report.quarantined.len()
    ));
    let sent = {
        let _phase = console.phase("propagating", None);
        hub.sync(&outcome.state).await?
    };
    console.line(&format!("sent {} changes; waiting until every system applied them", sent.sent));
    hub.confirm(console, "applying in every system", Duration::from_secs(args.deadline_secs)).await?;
    let systems = hub.reconcile(config).await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("{:<10} {:<13} {:>8} {:>8}  digest = hub", "system", "data type", "records", "hub");
    for (system, types) in &systems {
        for (t, r) in types {
            println!("{:<10} {:<13} {:>8} {:>8}  {}", system, t.as_str(), r.records, r.hub_records, if r.digest_matches { "yes" } else { "NO" });
        }
    }
    console.line(&format!("run done in {elapsed_ms:.0} ms"));
    Ok(RunReport { merge: outcome.report, changes_sent: sent.sent, elapsed_ms, systems })
}
