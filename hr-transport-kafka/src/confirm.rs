use crate::{KafkaConfig, KafkaTransportError};
use hr_core::DataType;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
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
/// (creating them made each look cost tens of milliseconds), so a hub
/// confirming real-time changes should keep one.
#[derive(Clone)]
pub struct LagMonitor {
    config: KafkaConfig,
    inner: Arc<(BaseConsumer, Vec<(String, BaseConsumer)>)>,
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
        Ok(LagMonitor { config: config.clone(), inner: Arc::new((client(None)?, readers)) })
    }

    /// Each group's lag on the topics of `data_types`.
    pub async fn lag(&self, data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
        let probe = self.clone();
        let data_types = data_types.to_vec();
        tokio::task::spawn_blocking(move || probe.lag_blocking(&data_types))
            .await
            .map_err(|e| KafkaTransportError::Subscriber { group: "-".into(), detail: e.to_string() })?
    }

    fn lag_blocking(&self, data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
        let timeout = Duration::from_secs(10);
        let (probe, readers) = &*self.inner;
        let mut high: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for t in data_types {
            let topic = self.config.topic(*t);
            let metadata = probe
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|source| KafkaTransportError::Offsets { group: "-".into(), topic: topic.clone(), source })?;
            for m in metadata.topics() {
                for p in m.partitions() {
                    let (_, hi) = probe
                        .fetch_watermarks(&topic, p.id(), timeout)
                        .map_err(|source| KafkaTransportError::Offsets { group: "-".into(), topic: topic.clone(), source })?;
                    high.insert((topic.clone(), p.id()), hi);
                }
            }
        }
        let mut out = Vec::new();
        for (group, reader) in readers {
            let mut tpl = TopicPartitionList::new();
            for (topic, partition) in high.keys() {
                tpl.add_partition(topic, *partition);
            }
            let committed = reader
                .committed_offsets(tpl, timeout)
                .map_err(|source| KafkaTransportError::Offsets { group: group.clone(), topic: "*".into(), source })?;
            let mut lag: BTreeMap<String, i64> = BTreeMap::new();
            for ((topic, partition), hi) in &high {
                let done = match committed.find_partition(topic, *partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                *lag.entry(topic.clone()).or_default() += (hi - done).max(0);
            }
            out.push(GroupLag { group: group.clone(), lag });
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
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// Waits until every group committed everything produced to the topics of
/// `data_types` (its sink applied it), or fails with each group's lag.
pub async fn wait_until_applied(config: &KafkaConfig, groups: &[&str], data_types: &[DataType], deadline: Duration) -> Result<(), KafkaTransportError> {
    LagMonitor::new(config, groups)?.wait(data_types, deadline, |_| {}).await
}
