//! One target system (payroll, orgchart, erp): its SQLite sink, the REST
//! receiver in front of it and the Kafka subscriber feeding it.

use crate::config::HubConfig;
use hr_core::{DataType, SqliteSink};
use hr_transport_kafka::{KafkaConfig, KafkaSubscriber, SubscriberStats};
use hr_transport_rest::{serve_receiver, ReceiverConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How to start a target system.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// Its name, as the configuration's `[targets.<name>]`.
    pub name: String,
    /// Where `<name>.sqlite3` goes.
    pub data_dir: PathBuf,
    /// Where the REST receiver listens (port 0: any free port).
    pub listen: SocketAddr,
    /// Bearer token the receiver requires. An empty one is refused; without
    /// one the receiver serves only on a loopback address.
    pub token: Option<String>,
    /// Start from an empty database (the demo) instead of resuming.
    pub fresh: bool,
}

/// A running target system.
pub struct TargetSystem {
    name: String,
    sink: Arc<SqliteSink>,
    url: String,
    subscriber: Option<KafkaSubscriber>,
    server: JoinHandle<()>,
}

impl TargetSystem {
    /// Opens the sink, starts the receiver for the data types `config`
    /// allows this system, and subscribes its consumer group
    /// (`<topic_prefix><name>`) to those of them routed over Kafka.
    /// The topics must exist.
    pub async fn start(options: &SystemOptions, config: &HubConfig, kafka: &KafkaConfig) -> anyhow::Result<Self> {
        let name = &options.name;
        let allowed = config
            .targets
            .get(name)
            .map(|t| t.data_types.clone())
            .ok_or_else(|| anyhow::anyhow!("no target named {name} in the configuration (known: {})", config.targets.keys().cloned().collect::<Vec<_>>().join(", ")))?;
        std::fs::create_dir_all(&options.data_dir)?;
        let path = options.data_dir.join(format!("{name}.sqlite3"));
        if options.fresh {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        let sink = Arc::new(SqliteSink::open(&path)?);
        let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|e| anyhow::anyhow!("{name}: cannot listen on {}: {e}", options.listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut receiver_config = ReceiverConfig::new(sink.clone(), allowed.clone());
        if let Some(token) = &options.token {
            receiver_config = receiver_config.with_token(token).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        }
        // serve_receiver, not axum::serve: it adds the header read timeout and
        // the connection cap, and refuses to serve without a token off loopback.
        let server = tokio::spawn(serve_receiver(listener, receiver_config).map_err(|e| anyhow::anyhow!("{name}: {e}"))?);
        let kafka_types: Vec<DataType> = config.policy().data_types_via("kafka").into_iter().filter(|t| allowed.contains(t)).collect();
        let subscriber = if kafka_types.is_empty() {
            None
        } else {
            Some(KafkaSubscriber::start(kafka, &kafka.group(name), &kafka_types, sink.clone())?)
        };
        Ok(TargetSystem { name: name.clone(), sink, url, subscriber, server })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Base URL of its REST receiver.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its sink.
    pub fn sink(&self) -> &Arc<SqliteSink> {
        &self.sink
    }

    /// The consumer group, if it subscribes to anything.
    pub fn group(&self) -> Option<&str> {
        self.subscriber.as_ref().map(KafkaSubscriber::group)
    }

    /// What its subscriber applied so far.
    pub fn kafka_stats(&self) -> SubscriberStats {
        self.subscriber.as_ref().map(KafkaSubscriber::stats).unwrap_or_default()
    }

    /// Commits the subscriber's offsets, leaves the group and stops the receiver.
    pub async fn shutdown(self) -> anyhow::Result<SubscriberStats> {
        let stats = match self.subscriber {
            Some(s) => s.shutdown().await?,
            None => SubscriberStats::default(),
        };
        self.server.abort();
        Ok(stats)
    }
}
