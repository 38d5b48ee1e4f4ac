//! One target system as its own process: a SQLite sink, the REST receiver in
//! front of it, and a Kafka subscriber (consumer group `<topic_prefix><name>`)
//! feeding it. Runs until Ctrl-C or SIGTERM, then commits and leaves the group.
//!
//! ```text
//! HR_SYSTEM_TOKEN=s3cret cargo run --release --example system -- \
//!     --name payroll --listen 127.0.0.1:8081 --brokers 127.0.0.1:9092 --data-dir out/systems
//! ```
//!
//! Prints `<name> listening on http://<addr>` on stdout once it accepts requests.
use clap::Parser;
use hr_sync::{HubConfig, SystemOptions, TargetSystem};
use hr_transport_kafka::{ensure_topics, KafkaConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "One target system: SQLite sink, REST receiver and Kafka subscriber")]
struct Args {
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
    /// Bearer token the receiver requires (better from the environment). An
    /// empty one is refused; without one the receiver listens only on loopback.
    #[arg(long, env = "HR_SYSTEM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Routing, targets and topic prefix (default: the seed's).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hr_demo::console::init_logging();
    let args = Args::parse();
    let config = HubConfig::load(args.config.as_deref())?;
    let mut kafka = KafkaConfig::new(&args.brokers);
    kafka.topic_prefix = config.topic_prefix.clone();
    // Subscribing to a topic that does not exist yet would wait for a metadata refresh.
    ensure_topics(&kafka, &config.policy().data_types_via("kafka")).await?;
    let options = SystemOptions { name: args.name.clone(), data_dir: args.data_dir, listen: args.listen, token: args.token, fresh: false };
    let system = TargetSystem::start(&options, &config, &kafka).await?;
    println!("{} listening on {}", system.name(), system.url());
    std::io::stdout().flush()?;
    eprintln!("{}: sqlite {}, kafka group {}", system.name(), system.sink().path().display(), system.group().unwrap_or("-"));

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
