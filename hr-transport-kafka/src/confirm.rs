use crate::{KafkaConfig, KafkaTransportError};
use hr_core::DataType;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far one consumer group is behind the produced records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLag {
    /// The group.
    pub group: String,
    /// Records produced but not yet committed by the group, per topic.
    pub lag: BTreeMap<String, i64>,
}

impl GroupLag {
    /// Total lag over topics.
    pub fn total(&self) -> i64 {
        self.lag.values().sum()
    }
}

/// The lag of each group on the topics of `data_types`: produced (high
/// watermark) minus committed offsets.
pub async fn group_lag(config: &KafkaConfig, groups: &[&str], data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
    LagMonitor::new(config, groups)?.lag(data_types).await
}

/// Watches how far consumer groups are behind. It keeps its clients
/// (creating them made each look cost tens of milliseconds) and each topic's
/// partition list, and asks for all watermarks and committed offsets at
/// once, so a hub confirming real-time changes should keep one.
#[derive(Clone)]
pub struct LagMonitor {
    config: KafkaConfig,
    inner: Arc<Clients>,
}

struct Clients {
    probe: BaseConsumer,
    readers: Vec<(String, BaseConsumer)>,
    partitions: Mutex<BTreeMap<String, Vec<i32>>>,
}

impl LagMonitor {
    /// A monitor of `groups` on `config`'s broker and topics.
    pub fn new(config: &KafkaConfig, groups: &[&str]) -> Result<Self, KafkaTransportError> {
        let client = |group: Option<&str>| -> Result<BaseConsumer, KafkaTransportError> {
            let mut c = config.client_config();
            if let Some(g) = group {
                // A consumer that never subscribes does not join the group; it only reads its offsets.
                c.set("group.id", g);
            }
            c.create().map_err(|source| KafkaTransportError::Client { role: "consumer", brokers: config.brokers.clone(), source })
        };
        let readers = groups.iter().map(|g| Ok((g.to_string(), client(Some(g))?))).collect::<Result<Vec<_>, KafkaTransportError>>()?;
        let clients = Clients { probe: client(None)?, readers, partitions: Mutex::new(BTreeMap::new()) };
        Ok(LagMonitor { config: config.clone(), inner: Arc::new(clients) })
    }

    /// Each group's lag on the topics of `data_types`.
    pub async fn lag(&self, data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
        let probe = self.clone();
        let data_types = data_types.to_vec();
        tokio::task::spawn_blocking(move || probe.lag_blocking(&data_types))
            .await
            .map_err(|e| KafkaTransportError::Subscriber { group: "-".into(), detail: e.to_string() })?
    }

    /// A topic's partitions, from the cache or the broker (an empty answer is not cached).
    fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, KafkaTransportError> {
        if let Some(known) = self.inner.partitions.lock().unwrap_or_else(|p| p.into_inner()).get(topic) {
            return Ok(known.clone());
        }
        let metadata = self
            .inner
            .probe
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| KafkaTransportError::Offsets { group: "-".into(), topic: topic.to_string(), source })?;
        let ids: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if !ids.is_empty() {
            self.inner.partitions.lock().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string(), ids.clone());
        }
        Ok(ids)
    }

    fn lag_blocking(&self, data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
        let timeout = Duration::from_secs(10);
        let mut places: Vec<(String, i32)> = Vec::new();
        for t in data_types {
            let topic = self.config.topic(*t);
            places.extend(self.partitions(&topic, timeout)?.into_iter().map(|p| (topic.clone(), p)));
        }
        let clients = &*self.inner;
        // Every request at once: each is one round trip, and a look is as slow as its slowest.
        let (high, committed) = std::thread::scope(|scope| {
            let watermarks: Vec<_> = places
                .iter()
                .map(|(topic, partition)| {
                    scope.spawn(move || {
                        clients
                            .probe
                            .fetch_watermarks(topic, *partition, timeout)
                            .map(|(_, hi)| ((topic.clone(), *partition), hi))
                            .map_err(|source| KafkaTransportError::Offsets { group: "-".into(), topic: topic.clone(), source })
                    })
                })
                .collect();
            let offsets: Vec<_> = clients
                .readers
                .iter()
                .map(|(group, reader)| {
                    let places = &places;
                    scope.spawn(move || {
                        let mut tpl = TopicPartitionList::new();
                        for (topic, partition) in places {
                            tpl.add_partition(topic, *partition);
                        }
                        reader
                            .committed_offsets(tpl, timeout)
                            .map(|c| (group.clone(), c))
                            .map_err(|source| KafkaTransportError::Offsets { group: group.clone(), topic: "*".into(), source })
                    })
                })
                .collect();
            // A panic in a request thread is a bug in librdkafka's bindings, not a broker answer: re-raise it.
            let high: Result<BTreeMap<(String, i32), i64>, KafkaTransportError> =
                watermarks.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect();
            let committed: Result<Vec<(String, TopicPartitionList)>, KafkaTransportError> =
                offsets.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect();
            (high, committed)
        });
        let (high, committed) = (high?, committed?);
        let mut out = Vec::new();
        for (group, committed) in committed {
            let mut lag: BTreeMap<String, i64> = BTreeMap::new();
            for ((topic, partition), hi) in &high {
                let done = match committed.find_partition(topic, *partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                *lag.entry(topic.clone()).or_default() += (hi - done).max(0);
            }
            out.push(GroupLag { group, lag });
        }
        Ok(out)
    }

    /// Waits until every group committed everything produced to the topics
    /// of `data_types`, calling `on_lag` with the total lag after each look,
    /// or fails with each group's lag at the deadline.
    pub async fn wait(&self, data_types: &[DataType], deadline: Duration, mut on_lag: impl FnMut(i64)) -> Result<(), KafkaTransportError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let lags = match self.lag(data_types).await {
                Ok(lags) => lags,
                // Coordinator moves and metadata refreshes after a broker restart are transient.
                Err(e) if started.elapsed() < deadline => {
                    tracing::debug!(error = %e, "offsets not readable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            on_lag(lags.iter().map(GroupLag::total).sum());
            if lags.iter().all(|l| l.total() == 0) {
                return Ok(());
            }
            if started.elapsed() >= deadline {
                let lag = lags.iter().map(|l| format!("{}: {}", l.group, l.total())).collect::<Vec<_>>().join(", ");
                return Err(KafkaTransportError::NotCaughtUp { waited_ms: started.elapsed().as_millis(), lag });
            }
            tokio::time::sleep(pause).await;
            // Real-time changes land within milliseconds: look often at first, then back off.
            if started.elapsed() > Duration::from_millis(50) {
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }
}

/// Waits until every group committed everything produced to the topics of
/// `data_types` (its sink applied it), or fails with each group's lag.
pub async fn wait_until_applied(config: &KafkaConfig, groups: &[&str], data_types: &[DataType], deadline: Duration) -> Result<(), KafkaTransportError> {
    LagMonitor::new(config, groups)?.wait(data_types, deadline, |_| {}).await
}
