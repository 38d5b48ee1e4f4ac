//! `hr-sync dead-letters`: inspect and replay a dead-letter topic.
//!
//! A subscriber that cannot apply a record (not an envelope, an envelope on
//! the wrong topic, a record its sink calls invalid) sends it to
//! `<topic>.dlq` with the reason, and goes on. This lists a data type's dead
//! letters (partition/offset, key, data type, group, time, reason) and, once
//! the cause is fixed, replays all of them or those of chosen keys to the
//! data topic of their envelope's type, where every system applies them by
//! the usual rule (an older version than a system holds changes nothing).
//! `kept` lists the letters a system kept in its own store because its
//! dead-letter topic refused them (a missing ACL, a topic limit).
//!
//! ```text
//! hr-sync dead-letters list   --data-type master_data --config config/hub.local.toml
//! hr-sync dead-letters replay --data-type master_data --key md.category:C00001
//! hr-sync dead-letters replay --data-type master_data --all
//! hr-sync dead-letters kept --store out/systems/erp.sqlite3
//! ```
use clap::Subcommand;
use hr_core::{DataType, SqliteSink};
use hr_hub::HubConfig;
use hr_transport_kafka::{read_dead_letters, replay_dead_letters, DeadLetter, KafkaConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    brokers: String,
    /// The configuration whose topic prefix to use (default: the seed's).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The system whose topics to use: a system that goes without some
    /// fields reads, and dead-letters to, its audience's topics
    /// (default: the topics with every field).
    #[arg(long, global = true)]
    system: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the dead letters of a data type's topic.
    List {
        /// The data type whose dead-letter topic to read.
        #[arg(long)]
        data_type: DataType,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lists the letters a system kept in its own store (its dead-letter topic refused them).
    Kept {
        /// The system's store (`<data-dir>/<name>.sqlite3`).
        #[arg(long)]
        store: PathBuf,
    },
    /// Replays dead letters to the data topic of their envelope's type.
    Replay {
        /// The data type whose dead-letter topic to read.
        #[arg(long)]
        data_type: DataType,
        /// Replay the letters of this key (repeatable).
        #[arg(long = "key", required_unless_present = "all")]
        keys: Vec<String>,
        /// Replay every letter.
        #[arg(long, conflicts_with = "keys")]
        all: bool,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    hr_demo::console::init_logging();
    if let Command::Kept { store } = &args.command {
        anyhow::ensure!(store.is_file(), "{} is not a system's store", store.display());
        let letters = SqliteSink::open(store)?.kept_letters()?;
        println!("{:<40} {:<28} {:<26} {:>9} reason", "source (topic/partition/offset)", "key", "kept at", "bytes");
        for l in &letters {
            println!("{:<40} {:<28} {:<26} {:>9} {}", l.source, l.key.as_deref().unwrap_or("-"), l.kept_at.to_rfc3339(), l.payload.len(), l.reason);
        }
        println!("{} kept letters", letters.len());
        return Ok(());
    }
    let config = HubConfig::load(args.config.as_deref())?;
    let mut kafka = config.kafka(&args.brokers)?;
    if let Some(system) = &args.system {
        anyhow::ensure!(config.targets.contains_key(system), "{system} is not a system of the configuration");
        kafka.fields = config.policy().scope(system).fields().clone();
    }
    match args.command {
        Command::List { data_type, json } => {
            let letters = read(&kafka, data_type).await?;
            if json {
                letters.iter().for_each(|l| println!("{}", as_json(l)));
            } else {
                print_table(&letters);
            }
        }
        Command::Replay { data_type, keys, all } => {
            let letters = read(&kafka, data_type).await?;
            let chosen: Vec<&DeadLetter> = letters.iter().filter(|l| all || l.key.as_ref().is_some_and(|k| keys.contains(k))).collect();
            anyhow::ensure!(!chosen.is_empty(), "no dead letter of {data_type} matches; `list` shows what there is");
            let sent = replay_dead_letters(&kafka, &chosen).await?;
            println!("replayed {sent} dead letters of {data_type}; each system applies them unless it holds a newer version");
        }
        Command::Kept { .. } => unreachable!("listed before the brokers are needed"),
    }
    Ok(())
}

async fn read(kafka: &KafkaConfig, data_type: DataType) -> anyhow::Result<Vec<DeadLetter>> {
    let kafka = kafka.clone();
    Ok(tokio::task::spawn_blocking(move || read_dead_letters(&kafka, data_type, Duration::from_secs(60)).map_err(Box::new)).await??)
}

fn time_of(letter: &DeadLetter) -> String {
    letter.timestamp_ms.and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn as_json(letter: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "partition": letter.partition, "offset": letter.offset, "key": letter.key, "data_type": letter.data_type.map(|t| t.as_str()),
        "group": letter.group, "source": letter.source, "at": time_of(letter), "error": letter.error,
    })
}

fn print_table(letters: &[DeadLetter]) {
    println!("{:<12} {:<28} {:<13} {:<22} {:<26} error", "part/offset", "key", "data type", "group", "at");
    for l in letters {
        let data_type = l.data_type.map(|t| t.as_str()).unwrap_or("(not an envelope)");
        let position = format!("{}/{}", l.partition, l.offset);
        println!("{position:<12} {:<28} {data_type:<13} {:<22} {:<26} {}", l.key.as_deref().unwrap_or("-"), l.group, time_of(l), l.error);
    }
    println!("{} dead letters", letters.len());
}
