use crate::{KafkaConfig, KafkaTransportError};
use hr_core::DataType;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
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
    let config = config.clone();
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let data_types = data_types.to_vec();
    tokio::task::spawn_blocking(move || lag_blocking(&config, &groups, &data_types))
        .await
        .map_err(|e| KafkaTransportError::Subscriber { group: "-".into(), detail: e.to_string() })?
}

fn lag_blocking(config: &KafkaConfig, groups: &[String], data_types: &[DataType]) -> Result<Vec<GroupLag>, KafkaTransportError> {
    let timeout = Duration::from_secs(10);
    let probe: BaseConsumer = config
        .client_config()
        .create()
        .map_err(|source| KafkaTransportError::Client { role: "consumer", brokers: config.brokers.clone(), source })?;
    let mut high: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in data_types {
        let topic = config.topic(*t);
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
    for group in groups {
        // A consumer that never subscribes does not join the group; it only reads its offsets.
        let reader: BaseConsumer = config
            .client_config()
            .set("group.id", group)
            .create()
            .map_err(|source| KafkaTransportError::Client { role: "consumer", brokers: config.brokers.clone(), source })?;
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

/// Waits until every group committed everything produced to the topics of
/// `data_types` (its sink applied it), or fails with each group's lag.
pub async fn wait_until_applied(config: &KafkaConfig, groups: &[&str], data_types: &[DataType], deadline: Duration) -> Result<(), KafkaTransportError> {
    wait_until_applied_with(config, groups, data_types, deadline, |_| {}).await
}

/// [`wait_until_applied`], calling `on_lag` with the total lag over all
/// groups after each look (for a progress display).
pub async fn wait_until_applied_with(
    config: &KafkaConfig,
    groups: &[&str],
    data_types: &[DataType],
    deadline: Duration,
    mut on_lag: impl FnMut(i64),
) -> Result<(), KafkaTransportError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        let lags = match group_lag(config, groups, data_types).await {
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
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
