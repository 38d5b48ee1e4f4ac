//! One target system (payroll, orgchart, erp): its SQLite sink, the REST
//! receiver in front of it and the Kafka subscriber feeding it.

use crate::config::HubConfig;
use hr_core::{DataType, ScopedSink, Sink, SinkError, SqliteSink};
use hr_transport_kafka::{KafkaConfig, KafkaSubscriber, KafkaTransportError, SubscriberStats};
use hr_transport_rest::{serve_receiver, ReceiverConfig, ReceiverError};
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

/// Why a target system cannot start or stop; each names the system and
/// what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// The configuration has no `[targets.<name>]` for this system.
    #[error("no target named {system} in the configuration {config} (known: {known}); add [targets.{system}] or start a known one")]
    UnknownTarget {
        /// The system asked for.
        system: String,
        /// The configuration's file.
        config: String,
        /// The targets it names, comma-separated.
        known: String,
    },
    /// The data directory cannot be created.
    #[error("{system}: cannot create the data directory {}: {source}", path.display())]
    DataDir {
        /// The system.
        system: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The SQLite store cannot be opened.
    #[error("{system}: cannot open its store {}: {source}", path.display())]
    Store {
        /// The system.
        system: String,
        /// The database file.
        path: PathBuf,
        /// Why.
        source: SinkError,
    },
    /// The REST receiver cannot listen on the address.
    #[error("{system}: cannot listen on {address} (in use, or not an address of this host?): {source}")]
    Listen {
        /// The system.
        system: String,
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The REST receiver refused its settings (an empty token, or no token
    /// on an address other than loopback).
    #[error("{system}: the receiver on {address} cannot start: {source}")]
    Receiver {
        /// The system.
        system: String,
        /// The address it listens on.
        address: SocketAddr,
        /// Why.
        source: ReceiverError,
    },
    /// The Kafka subscriber cannot start or stop cleanly.
    #[error("{system}: Kafka consumer group {group}: {source}")]
    Subscriber {
        /// The system.
        system: String,
        /// Its consumer group.
        group: String,
        /// Why.
        source: KafkaTransportError,
    },
}

impl std::fmt::Debug for TargetSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSystem")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("store", &self.sink.path())
            .field("group", &self.group())
            .finish_non_exhaustive()
    }
}

impl TargetSystem {
    /// Opens the sink, starts the receiver for the data types `config`
    /// allows this system, and subscribes its consumer group
    /// (`<topic_prefix><name>`) to those of them routed over Kafka.
    /// The topics must exist.
    pub async fn start(options: &SystemOptions, config: &HubConfig, kafka: &KafkaConfig) -> Result<Self, SystemError> {
        let name = &options.name;
        let system = || name.clone();
        let allowed = config.targets.get(name).map(|t| t.data_types.clone()).ok_or_else(|| SystemError::UnknownTarget {
            system: system(),
            config: config.shown_path(),
            known: config.targets.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        std::fs::create_dir_all(&options.data_dir).map_err(|source| SystemError::DataDir { system: system(), path: options.data_dir.clone(), source })?;
        let path = options.data_dir.join(format!("{name}.sqlite3"));
        if options.fresh {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        let sink = Arc::new(SqliteSink::open(&path).map_err(|source| SystemError::Store { system: system(), path: path.clone(), source })?);
        let listen_error = |source| SystemError::Listen { system: system(), address: options.listen, source };
        let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(listen_error)?;
        let address = listener.local_addr().map_err(listen_error)?;
        let url = format!("http://{address}");
        let receiver_error = |source| SystemError::Receiver { system: system(), address, source };
        // Grants for other systems are never stored, whichever way they come,
        // and none stays from before the system's scope narrowed.
        let scope = config.policy().scope(name);
        let removed = sink.retain(DataType::Permission, |key| scope.admits(DataType::Permission, key));
        removed.map_err(|source| SystemError::Store { system: system(), path: path.clone(), source })?;
        let scoped: Arc<dyn Sink> = Arc::new(ScopedSink::new(sink.clone(), scope));
        let mut receiver_config = ReceiverConfig::new(scoped.clone(), allowed.clone());
        if let Some(token) = &options.token {
            receiver_config = receiver_config.with_token(token).map_err(receiver_error)?;
        }
        // serve_receiver, not axum::serve: it adds the header read timeout and
        // the connection cap, and refuses to serve without a token off loopback.
        let server = tokio::spawn(serve_receiver(listener, receiver_config).map_err(receiver_error)?);
        let kafka_types: Vec<DataType> = config.policy().data_types_via("kafka").into_iter().filter(|t| allowed.contains(t)).collect();
        let subscriber = if kafka_types.is_empty() {
            None
        } else {
            let group = kafka.group(name);
            if holds_nothing(&sink, &kafka_types).map_err(|source| SystemError::Store { system: system(), path: path.clone(), source })? {
                // Not fatal: what the group then skips, the hub's reconciliation finds missing and resends.
                if let Err(e) = rewind(kafka, &group, &kafka_types).await {
                    tracing::warn!(system = %name, group = %group, error = %e, "cannot rewind the consumer group of an empty store");
                }
            }
            let subscriber = KafkaSubscriber::start(kafka, &group, &kafka_types, scoped);
            Some(subscriber.map_err(|source| SystemError::Subscriber { system: system(), group, source })?)
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
    pub async fn shutdown(self) -> Result<SubscriberStats, SystemError> {
        let stats = match self.subscriber {
            Some(s) => {
                let group = s.group().to_string();
                s.shutdown().await.map_err(|source| SystemError::Subscriber { system: self.name, group, source })?
            }
            None => SubscriberStats::default(),
        };
        self.server.abort();
        Ok(stats)
    }
}

/// Whether the store holds no row (not even a tombstone) of any of
/// `data_types`: a new system, or one whose store was lost.
fn holds_nothing(sink: &SqliteSink, data_types: &[DataType]) -> Result<bool, SinkError> {
    for t in data_types {
        if sink.holds_any(*t)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Rewinds the group on the blocking pool: an empty store reads everything
/// the (compacted) topics hold, instead of resuming where a lost store left off.
async fn rewind(kafka: &KafkaConfig, group: &str, data_types: &[DataType]) -> Result<(), KafkaTransportError> {
    let (kafka, group, data_types) = (kafka.clone(), group.to_string(), data_types.to_vec());
    // Boxed across the thread: the error is large.
    let rewound = tokio::task::spawn_blocking(move || KafkaSubscriber::rewind(&kafka, &group, &data_types).map_err(Box::new)).await;
    match rewound {
        Ok(rewound) => rewound.map_err(|e| *e),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(KafkaTransportError::Subscriber { group: "(rewind)".into(), detail: "the runtime shut down during the rewind".into() }),
    }
}
