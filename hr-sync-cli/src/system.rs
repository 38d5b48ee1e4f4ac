//! One target system as its own process: a SQLite sink, the REST receiver in
//! front of it, and a Kafka subscriber (consumer group `<topic_prefix><name>`)
//! feeding it. Runs until Ctrl-C or SIGTERM, then commits and leaves the group.
//!
//! ```text
//! HR_SYSTEM_TOKEN=$(openssl rand -hex 32) hr-sync system \
//!     --name payroll --listen 127.0.0.1:8081 --brokers 127.0.0.1:9092 --data-dir out/systems
//! ```
//!
//! Secrets come only from the environment, never from the command line:
//! `HR_SYSTEM_TOKEN`, the bearer token the receiver requires (at least 32
//! bytes; without one the receiver listens only on loopback), and
//! `HR_METRICS_TOKEN`, one `GET /metrics` requires (a scraper's own).
//!
//! `GET /metrics` on the receiver's address serves Prometheus text: changes
//! applied, stale, out of scope and invalid per data type and transport,
//! apply latency, when a change of each type was last applied (kept in the
//! store, so it survives a restart), dead letters and the receiver's
//! refusals by reason.
//!
//! Prints `<name> listening on http://<addr>` on stdout once it accepts
//! requests, within seconds even while the brokers are unreachable: then its
//! log says so (and again when they answer), `/healthz` answers 503 with the
//! reason, and the consumer group is joined as soon as they answer.
//!
//! `--publish FILE` (in `master_data.csv`'s format: `set,code,name[,attribute
//! columns]`) publishes those rows as this system, which must own their sets
//! (`[targets.<name>] publishes = [...]`), to every system that receives
//! master data, itself included. The file is the complete state of the sets
//! the system owns: a row absent from a later publish is a deletion. A row
//! of a set the system does not own, or a bad row, refuses the whole file.
use hr_core::{read_master_data_file, DataType, Ledger, MasterData};
use hr_hub::{HubConfig, Publisher, SystemOptions, TargetSystem};
use hr_transport_kafka::{ensure_topics, KafkaConfig};
use hr_transport_rest::{MetricsRender, TlsIdentity};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The environment variable holding the receiver's bearer token.
const TOKEN_ENV: &str = "HR_SYSTEM_TOKEN";
/// The environment variable holding the token `GET /metrics` requires.
const METRICS_TOKEN_ENV: &str = "HR_METRICS_TOKEN";

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The system's name, as in the configuration's [targets.<name>].
    #[arg(long)]
    name: String,
    /// Where <name>.sqlite3 lives (kept across restarts).
    #[arg(long, default_value = "out/systems")]
    data_dir: PathBuf,
    /// Address of the REST receiver (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Routing, targets and topic prefix (default: the seed's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log lines as `text` or as one JSON object per line (`json`).
    #[arg(long, default_value = "text")]
    log_format: hr_demo::console::LogFormat,
    /// Serve the receiver over HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Publish the master data in FILE (`set,code,name[,...]`) as this system once started.
    #[arg(long, value_name = "FILE")]
    publish: Option<PathBuf>,
    /// Digests are kept up to date as changes are applied; read the whole
    /// store for one at least this often (seconds; 0: for every digest), to
    /// see changes to the file SQLite cannot report. A commit by another
    /// connection (sqlite3) is seen at the next digest anyway.
    #[arg(long, value_name = "SECS", default_value_t = hr_core::SqliteSink::DEFAULT_FULL_SCAN_EVERY.as_secs())]
    full_scan_secs: u64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    hr_demo::console::init_logging_as(args.log_format);
    let config = HubConfig::load(args.config.as_deref())?;
    let kafka = config.kafka(&args.brokers)?;
    // The file is checked whole before the system starts: a bad one changes nothing.
    let catalogue = args.publish.as_deref().map(|file| read_catalogue(file, &args.name, &config)).transpose()?;
    // The process's metrics, served by the receiver at GET /metrics.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let metrics: MetricsRender = Arc::new(move || prometheus.render());
    let mut options = SystemOptions::new(args.name.clone(), args.data_dir);
    options.listen = args.listen;
    // Secrets only from the environment, never from the command line (where `ps` shows them).
    options.token = std::env::var(TOKEN_ENV).ok();
    options.metrics = Some(metrics);
    options.metrics_token = std::env::var(METRICS_TOKEN_ENV).ok();
    options.full_scan_every = Duration::from_secs(args.full_scan_secs);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        options.tls = Some(TlsIdentity::from_pem_files(cert, key)?);
    }
    let system = TargetSystem::start(&options, &config, &kafka).await?;
    println!("{} listening on {}", system.name(), system.url());
    std::io::stdout().flush()?;
    eprintln!("{}: sqlite {}, kafka group {}", system.name(), system.sink().path().display(), system.group().unwrap_or("-"));
    if let Some(records) = catalogue {
        // Publishing goes over Kafka: it waits for the brokers as the subscriber does.
        while !system.wait_until_subscribed(Duration::from_secs(5)).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // The hub creates every topic; a principal allowed only its own topics cannot, and need not.
        for audience in config.kafka_audiences(&kafka) {
            if let Err(e) = ensure_topics(&audience, &[DataType::MasterData]).await {
                eprintln!("{}: cannot create the master-data topics ({e}); publishing to those the hub created", system.name());
            }
        }
        publish(records, &args.name, &options.data_dir, &config, &kafka).await?;
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = ticker.tick() => {
                let stats = system.kafka_stats();
                let line = stats.applied.iter().map(|(t, o)| format!("{t} {}", o.applied)).collect::<Vec<_>>().join(", ");
                if line != last && !line.is_empty() {
                    eprintln!("{}: applied from kafka so far: {line}", system.name());
                    last = line;
                }
            }
        }
    }
    let name = system.name().to_string();
    let stats = system.shutdown().await?;
    eprintln!(
        "{name}: stopped after applying {} records from kafka ({} dead-lettered)",
        stats.applied.values().map(|o| o.applied).sum::<usize>(),
        stats.dead_lettered
    );
    Ok(())
}

/// The rows of `file`, once every row is valid, of a set `name` owns, and
/// the only row of its key.
fn read_catalogue(file: &Path, name: &str, config: &HubConfig) -> anyhow::Result<Vec<MasterData>> {
    let (rows, quarantined) = read_master_data_file(file)?;
    if let Some(bad) = quarantined.first() {
        anyhow::bail!("{}, line {}: {} ({}); nothing was published", file.display(), bad.line, bad.detail, bad.reason.as_str());
    }
    let owned = config.targets.get(name).map(|t| t.publishes.clone()).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for row in &rows {
        if !owned.iter().any(|set| *set == row.record.set) {
            let owns = if owned.is_empty() { "none".to_string() } else { owned.join(", ") };
            anyhow::bail!(
                "{}, line {}: set {:?} is not one {name} owns (it publishes {owns}); nothing was published",
                file.display(),
                row.line,
                row.record.set
            );
        }
        if let Some(first) = seen.insert(row.record.key(), row.line) {
            anyhow::bail!("{}, line {}: {} is already on line {first}; nothing was published", file.display(), row.line, row.record.key());
        }
    }
    Ok(rows.into_iter().map(|row| row.record).collect())
}

/// Publishes `records` as `name` and waits until every system applied them.
async fn publish(records: Vec<MasterData>, name: &str, data_dir: &Path, config: &HubConfig, kafka: &KafkaConfig) -> anyhow::Result<()> {
    let mut publisher = Publisher::over_kafka(config, name, Ledger::open(data_dir.join(format!("{name}-published.sqlite3")))?, kafka)?;
    let sent = publisher.publish(&records).await?;
    sent.receipt.applied(Duration::from_secs(120)).await?;
    eprintln!("{name}: published {} changes of {} ({} records), applied in every system", sent.sent, publisher.owned_sets().join(", "), records.len());
    Ok(())
}
