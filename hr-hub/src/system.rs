//! One target system (payroll, orgchart, erp): its SQLite sink, the REST
//! receiver in front of it and the Kafka subscriber feeding it.
//!
//! The receiver listens at once, whatever the brokers do; the subscriber
//! joins its group as soon as they answer. Until then `/healthz` answers
//! 503 naming why, and the log says when they stop and start answering.

use crate::config::HubConfig;
use crate::metered::MeteredSink;
use hr_core::{DataType, ScopedSink, Sink, SinkError, SqliteSink};
use hr_transport_kafka::{ensure_topics, BrokerStatus, BrokerWatch, KafkaConfig, KafkaSubscriber, KafkaTransportError, SubscriberStats};
use hr_transport_rest::{serve_receiver, HealthCheck, MetricsRender, ReceiverConfig, ReceiverError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often a system asks its brokers whether they answer.
const BROKER_CHECK: Duration = Duration::from_secs(2);
/// How long [`TargetSystem::start`] waits for its subscriber when the brokers answer.
const FIRST_SUBSCRIBE: Duration = Duration::from_secs(5);

/// How to start a target system.
#[derive(Clone)]
#[non_exhaustive]
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
    /// What the receiver serves at `GET /metrics` (the process's
    /// Prometheus text, with `hr_last_applied_timestamp_seconds` per data
    /// type read from the store at each scrape); `None`: no such route. The
    /// system counts what it applies, per data type and transport, through
    /// the `metrics` facade whatever this says.
    pub metrics: Option<MetricsRender>,
    /// A bearer token `GET /metrics` requires (a scraper's, not the
    /// receiver's); `None`: the metrics (counts only) are open.
    pub metrics_token: Option<String>,
    /// Serve the receiver over HTTPS with this certificate and key.
    pub tls: Option<hr_transport_rest::TlsIdentity>,
    /// How old the store's last full read of a data type may be before a
    /// digest reads it all again (see [`SqliteSink`]'s *Digests*).
    pub full_scan_every: std::time::Duration,
}

impl SystemOptions {
    /// A system `name` keeping its store in `data_dir`, its receiver on a
    /// free loopback port without a token, resuming its store, without
    /// metrics or TLS; set the fields to change any of it.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        SystemOptions {
            name: name.into(),
            data_dir: data_dir.into(),
            listen: ([127, 0, 0, 1], 0).into(),
            token: None,
            fresh: false,
            metrics: None,
            metrics_token: None,
            tls: None,
            full_scan_every: SqliteSink::DEFAULT_FULL_SCAN_EVERY,
        }
    }
}

// The token is a secret: Debug says whether there is one.
impl std::fmt::Debug for SystemOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemOptions")
            .field("name", &self.name)
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| hr_core::REDACTED))
            .field("fresh", &self.fresh)
            .field("metrics", &self.metrics.is_some())
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| hr_core::REDACTED))
            .field("tls", &self.tls.is_some())
            .field("full_scan_every", &self.full_scan_every)
            .finish()
    }
}

/// A running target system.
pub struct TargetSystem {
    name: String,
    sink: Arc<SqliteSink>,
    url: String,
    kafka: Option<KafkaSide>,
    server: JoinHandle<()>,
}

/// The Kafka half of a system: the broker watch, and the subscriber once
/// the brokers answered.
struct KafkaSide {
    group: String,
    watch: BrokerWatch,
    subscriber: Arc<Mutex<Option<KafkaSubscriber>>>,
    joining: JoinHandle<()>,
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
    /// (`<topic_prefix><name>`) to those of them routed over Kafka, creating
    /// their topics where missing. Returns once the group is joined, or after
    /// at most about 5 s while the brokers do not answer: the receiver
    /// listens meanwhile, and the group is joined as soon as they do.
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
        let sink = SqliteSink::open(&path).map_err(|source| SystemError::Store { system: system(), path: path.clone(), source })?;
        let sink = Arc::new(sink.full_scan_every(options.full_scan_every));
        let listen_error = |source| SystemError::Listen { system: system(), address: options.listen, source };
        let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(listen_error)?;
        let address = listener.local_addr().map_err(listen_error)?;
        let url = format!("{}://{address}", if options.tls.is_some() { "https" } else { "http" });
        let receiver_error = |source| SystemError::Receiver { system: system(), address, source };
        // Grants for other systems are never stored, whichever way they come,
        // and none stays from before the system's scope narrowed.
        let scope = config.policy().scope(name);
        // Its consumer group reads the topics of its audience, whose records lack the fields it goes without.
        // It also reads each owner's master-data topic, and only the owner's sets there.
        let kafka = &KafkaConfig { fields: scope.fields().clone(), owners: config.owners_by_system(), ..kafka.clone() };
        let removed = sink.retain(DataType::Permission, |key| scope.admits(DataType::Permission, key));
        removed.map_err(|source| SystemError::Store { system: system(), path: path.clone(), source })?;
        let scoped: Arc<dyn Sink> = Arc::new(ScopedSink::new(sink.clone(), scope));
        let kafka_types = config.kafka_types_of(name);
        let watch = if kafka_types.is_empty() {
            None
        } else {
            let group = kafka.group(name);
            Some(BrokerWatch::start(kafka, BROKER_CHECK).map_err(|source| SystemError::Subscriber { system: system(), group, source })?)
        };
        let not_joined = Arc::new(Mutex::new(Some("joining the consumer group".to_string())));
        let mut receiver_config = ReceiverConfig::new(Arc::new(MeteredSink::new(scoped.clone(), "rest")), allowed.clone());
        if let Some(render) = &options.metrics {
            receiver_config = receiver_config.with_metrics(with_last_applied(render.clone(), sink.clone(), allowed.clone()));
        }
        if let Some(watch) = &watch {
            receiver_config = receiver_config.with_health(kafka_health(watch, not_joined.clone()));
        }
        if let Some(token) = &options.token {
            receiver_config = receiver_config.with_token(token).map_err(receiver_error)?;
        }
        if let Some(token) = &options.metrics_token {
            receiver_config = receiver_config.with_metrics_token(token).map_err(receiver_error)?;
        }
        if let Some(tls) = &options.tls {
            receiver_config = receiver_config.with_tls(tls.clone());
        }
        // serve_receiver, not axum::serve: it adds the header read timeout and
        // the connection cap, and refuses to serve without a token off loopback.
        let server = tokio::spawn(serve_receiver(listener, receiver_config).map_err(receiver_error)?);
        let kafka = watch.map(|watch| {
            let joiner = Joiner { name: name.clone(), kafka: kafka.clone(), group: kafka.group(name), data_types: kafka_types, sink: sink.clone(), scoped };
            KafkaSide::start(joiner, watch, not_joined)
        });
        let system = TargetSystem { name: name.clone(), sink, url, kafka, server };
        system.wait_until_subscribed(FIRST_SUBSCRIBE).await;
        Ok(system)
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
        self.kafka.as_ref().map(|k| k.group.as_str())
    }

    /// Whether its brokers answer; `None` when it takes nothing over Kafka.
    pub fn broker_status(&self) -> Option<BrokerStatus> {
        self.kafka.as_ref().map(|k| k.watch.status())
    }

    /// Waits at most `deadline` until its subscriber has joined its group
    /// (at once when it takes nothing over Kafka); whether it has. The
    /// wait ends early while the brokers do not answer.
    pub async fn wait_until_subscribed(&self, deadline: Duration) -> bool {
        let Some(kafka) = &self.kafka else { return true };
        let until = Instant::now() + deadline;
        loop {
            if kafka.subscribed() {
                return true;
            }
            if Instant::now() >= until || matches!(kafka.watch.status(), BrokerStatus::Unreachable(_)) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What its subscriber applied so far.
    pub fn kafka_stats(&self) -> SubscriberStats {
        self.kafka.as_ref().and_then(|k| k.locked().as_ref().map(KafkaSubscriber::stats)).unwrap_or_default()
    }

    /// Commits the subscriber's offsets, leaves the group and stops the receiver.
    pub async fn shutdown(self) -> Result<SubscriberStats, SystemError> {
        let stats = match self.kafka {
            Some(mut kafka) => {
                kafka.joining.abort();
                // Aborted while it was setting the subscriber, it may still do so: wait until it has stopped.
                let _ = (&mut kafka.joining).await;
                let subscriber = kafka.locked().take();
                match subscriber {
                    Some(s) => s.shutdown().await.map_err(|source| SystemError::Subscriber { system: self.name, group: kafka.group, source })?,
                    None => SubscriberStats::default(),
                }
            }
            None => SubscriberStats::default(),
        };
        self.server.abort();
        Ok(stats)
    }
}

/// `render`, after setting `hr_last_applied_timestamp_seconds{data_type}`
/// from the store: when the system last applied a change of each type, by
/// either transport and across restarts (absent if it never did).
fn with_last_applied(render: MetricsRender, sink: Arc<SqliteSink>, data_types: Vec<DataType>) -> MetricsRender {
    Arc::new(move || {
        for t in &data_types {
            match crate::hub::blocking(|| sink.last_applied(*t)) {
                Ok(Some(at)) => metrics::gauge!("hr_last_applied_timestamp_seconds", "data_type" => t.as_str()).set(at.timestamp_millis() as f64 / 1000.0),
                Ok(None) => {}
                Err(e) => tracing::warn!(data_type = %t, error = %e, "cannot read when the store last applied a change"),
            }
        }
        render()
    })
}

/// `/healthz`: 503 while the brokers do not answer or the group is not
/// joined, saying which; the cause is in the log, not in an answer anyone
/// who reaches the port can read.
fn kafka_health(watch: &BrokerWatch, not_joined: Arc<Mutex<Option<String>>>) -> HealthCheck {
    let status = watch.subscribe();
    Arc::new(move || match &*status.borrow() {
        BrokerStatus::Unknown => Err("Kafka brokers not asked yet".into()),
        BrokerStatus::Unreachable(_) => Err("Kafka brokers unreachable (the system's log says why)".into()),
        BrokerStatus::Reachable => match &*not_joined.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(_) => Err("Kafka brokers answer, but the consumer group is not joined (the system's log says why)".into()),
        },
    })
}

impl KafkaSide {
    /// Joins the group in the background, as soon as the brokers answer.
    fn start(joiner: Joiner, watch: BrokerWatch, not_joined: Arc<Mutex<Option<String>>>) -> KafkaSide {
        let subscriber = Arc::new(Mutex::new(None));
        let group = joiner.group.clone();
        let joining = tokio::spawn(joiner.run(watch.subscribe(), subscriber.clone(), not_joined));
        KafkaSide { group, watch, subscriber, joining }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Option<KafkaSubscriber>> {
        // Only ever set or taken whole: a poisoned lock still holds a consistent value.
        self.subscriber.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subscribed(&self) -> bool {
        self.locked().is_some()
    }
}

/// What it takes to join a system's consumer group.
struct Joiner {
    name: String,
    kafka: KafkaConfig,
    group: String,
    data_types: Vec<DataType>,
    sink: Arc<SqliteSink>,
    scoped: Arc<dyn Sink>,
}

impl Joiner {
    /// Waits until the brokers answer, then creates the topics, rewinds the
    /// group of an empty store and subscribes; retried until it succeeds.
    async fn run(
        self,
        mut status: tokio::sync::watch::Receiver<BrokerStatus>,
        slot: Arc<Mutex<Option<KafkaSubscriber>>>,
        not_joined: Arc<Mutex<Option<String>>>,
    ) {
        let why = |reason: Option<String>| *not_joined.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        loop {
            if status.wait_for(|s| *s == BrokerStatus::Reachable).await.is_err() {
                return; // the watch stopped: the system is shutting down
            }
            match self.subscribe().await {
                Ok(subscriber) => {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(subscriber);
                    why(None);
                    return;
                }
                Err(e) => {
                    why(Some(e.to_string()));
                    tracing::warn!(system = %self.name, group = %self.group, error = %e, "cannot join the consumer group yet; retrying");
                    tokio::time::sleep(BROKER_CHECK).await;
                }
            }
        }
    }

    async fn subscribe(&self) -> Result<KafkaSubscriber, KafkaTransportError> {
        // Subscribing to a topic that does not exist yet would wait for a metadata refresh.
        ensure_topics(&self.kafka, &self.data_types).await?;
        match holds_nothing(&self.sink, &self.data_types) {
            // Not fatal: what the group then skips, the hub's reconciliation finds missing and resends.
            Ok(true) => {
                if let Err(e) = rewind(&self.kafka, &self.group, &self.data_types).await {
                    tracing::warn!(system = %self.name, group = %self.group, error = %e, "cannot rewind the consumer group of an empty store");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(system = %self.name, error = %e, "cannot tell whether the store is empty; not rewinding"),
        }
        KafkaSubscriber::start(&self.kafka, &self.group, &self.data_types, Arc::new(MeteredSink::new(self.scoped.clone(), "kafka")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use hr_core::{ChangeEnvelope, PermissionGrant, Sink};

    fn grant(system: &str) -> ChangeEnvelope {
        let grant = PermissionGrant {
            employee: "A-1".into(),
            system: system.into(),
            role: "viewer".into(),
            granted: true,
            expires: None,
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
        };
        ChangeEnvelope::of(&grant, 1, "hub").unwrap()
    }

    /// A store holding another system's grant (left from a broader scope, or
    /// written by hand) loses it when the system starts: it must not hold it
    /// at all, not even as a tombstone that names it.
    #[tokio::test]
    async fn a_grant_for_another_system_left_in_the_store_is_purged_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSink::open(dir.path().join("erp.sqlite3")).unwrap();
        store.apply(&[grant("erp"), grant("payroll")]).await.unwrap();
        drop(store);
        // Every route over REST: the system starts without brokers.
        let mut config = HubConfig::default();
        for route in config.routes.values_mut() {
            *route = "rest".into();
        }
        let system = TargetSystem::start(&SystemOptions::new("erp", dir.path()), &config, &KafkaConfig::new("127.0.0.1:9")).await.unwrap();
        assert!(system.sink().get(DataType::Permission, &grant("erp").key).unwrap().is_some(), "its own grant stays");
        assert_eq!(system.sink().get(DataType::Permission, &grant("payroll").key).unwrap(), None, "payroll's grant is gone from erp's store");
        system.shutdown().await.unwrap();
    }
}
